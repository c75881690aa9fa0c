"""S3 error translation: every botocore, aiohttp and socket error becomes a `bbackup.errors`
storage error (NotFound, AccessDenied, Archived, Transient, Permanent, ...) here, re-raised
`from` the original, so nothing above the S3 backend sees a botocore type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

import aiohttp
from botocore import exceptions as boto_errors

from bbackup.errors import (
    AccessDenied,
    Archived,
    BucketNotFound,
    NotFound,
    Permanent,
    StorageError,
    Transient,
    Unreachable,
)

NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
    "or ~/.aws/credentials"
)

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchUpload"})
_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "AccountProblem",
        "UnauthorizedAccess",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequests",
        "BandwidthLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
        # AWS: a concurrent conditional write raced ours; retrying either wins or gets 412.
        "ConditionalRequestConflict",
    }
)


class S3Place(Protocol):
    """Where the requests went, for the messages: the bucket, the repository's URL and the
    endpoint (which is known for sure only once the client is open)."""

    @property
    def bucket(self) -> str: ...

    @property
    def location(self) -> str: ...

    @property
    def endpoint(self) -> str: ...


@contextlib.contextmanager
def translate_errors(place: S3Place, name: str | None) -> Iterator[None]:
    """Re-raise lower-layer errors as bbackup storage errors, `from` the original.

    `name` is the object the request was about, for the message; None for bucket-wide
    requests.
    """
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        translated = _translate(place, exc, name)
        if translated is None:
            raise
        raise translated from exc


def _translate(place: S3Place, exc: Exception, name: str | None) -> StorageError | None:
    if isinstance(exc, boto_errors.ClientError):
        error = exc.response.get("Error", {})
        return _classify(
            place,
            str(error.get("Code", "")),
            http_status(exc),
            str(error.get("Message", "")),
            exc.operation_name,
            name,
        )
    if isinstance(exc, boto_errors.NoCredentialsError):
        return AccessDenied(NO_CREDENTIALS)
    if isinstance(
        exc,
        boto_errors.PartialCredentialsError
        | boto_errors.ProfileNotFound
        | boto_errors.CredentialRetrievalError,
    ):
        return AccessDenied(f"AWS credentials: {_one_line(exc)}")
    if isinstance(exc, boto_errors.EndpointConnectionError | boto_errors.ConnectTimeoutError):
        return Unreachable(f"cannot reach S3 endpoint {place.endpoint}: {_one_line(exc)}")
    if isinstance(
        exc,
        boto_errors.HTTPClientError
        | boto_errors.IncompleteReadError
        | aiohttp.ClientError
        | TimeoutError
        | OSError,
    ):
        what = f"{name}: " if name else ""
        return Transient(
            f"{what}connection to S3 endpoint {place.endpoint} failed: {_one_line(exc)}"
        )
    if isinstance(exc, boto_errors.BotoCoreError):
        return Permanent(f"S3 request to {place.endpoint} failed: {_one_line(exc)}")
    return None


def _classify(
    place: S3Place, code: str, status: int, message: str, operation: str, name: str | None
) -> StorageError:
    """The storage error for an S3 error response (code, HTTP status, message)."""
    message = " ".join(message.split())
    detail = f"{code}: {message}" if message else code or f"HTTP {status}"
    if code == "NoSuchBucket":
        return BucketNotFound(f"bucket {place.bucket!r} not found at {place.endpoint}")
    kind: type[StorageError] = Permanent
    if code == "InvalidObjectState":  # sent with HTTP 403: decide on the code first
        kind = Archived
    elif code in _NOT_FOUND_CODES:
        kind = NotFound
    elif code in _ACCESS_CODES:
        kind = AccessDenied
    elif code in _TRANSIENT_CODES:
        kind = Transient
    elif status == 404:
        kind = NotFound
    elif status == 403:
        kind = AccessDenied
    elif status >= 500 or status == 429:
        kind = Transient
    if kind is Archived:
        return Archived(
            f"{name}: object is in an archive storage class (GLACIER, DEEP_ARCHIVE) and not "
            "restored; restore it first (`bbackup restore` and `check --read-data` do)"
        )
    if kind is NotFound:
        return NotFound(f"{name}: not found" if name else f"not found: {detail}")
    if kind is AccessDenied:
        return AccessDenied(
            f"access denied to {place.location} at {place.endpoint} ({detail}): "
            "check the AWS credentials and their permissions"
        )
    if kind is Transient:
        return Transient(f"S3 endpoint {place.endpoint} failed {operation}: {detail}")
    subject = f" {name}" if name else ""
    return Permanent(f"S3 {operation}{subject} failed at {place.endpoint}: {detail}")


def error_code(exc: boto_errors.ClientError) -> str:
    """The S3 error code of a response, e.g. ``NoSuchKey``; empty if it has none."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: boto_errors.ClientError) -> int:
    """The HTTP status of an error response; 0 if unknown."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
