"""S3 error translation without a server: each lower-layer error becomes the storage error
the retry wrapper and the CLI act on, chained `from` the original."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import pytest
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
from bbackup.storage.s3_errors import NO_CREDENTIALS, translate_errors


@dataclass
class Place:
    bucket: str = "bucket"
    location: str = "s3://bucket/repo"
    endpoint: str = "http://127.0.0.1:9"


def client_error(code: str, status: int, message: str = "") -> boto_errors.ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return boto_errors.ClientError(response, "GetObject")


def translated(exc: Exception, name: str | None = "data/aa/pack") -> StorageError:
    with pytest.raises(StorageError) as caught, translate_errors(Place(), name):
        raise exc
    assert caught.value.__cause__ is exc
    return caught.value


@pytest.mark.parametrize(
    ("exc", "kind", "needle"),
    [
        # GLACIER answers 403 InvalidObjectState: the code decides, not the status.
        (client_error("InvalidObjectState", 403), Archived, "restore it first"),
        (client_error("NoSuchBucket", 404), BucketNotFound, "bucket 'bucket' not found"),
        (client_error("NoSuchKey", 404), NotFound, "data/aa/pack: not found"),
        (client_error("", 404), NotFound, "not found"),
        (client_error("ExpiredToken", 400), AccessDenied, "s3://bucket/repo"),
        (client_error("", 403), AccessDenied, "check the AWS credentials"),
        (client_error("SlowDown", 503), Transient, "SlowDown"),
        (client_error("", 429), Transient, "HTTP 429"),
        (client_error("", 502), Transient, "HTTP 502"),
        (client_error("InvalidArgument", 400, "bad\n header"), Permanent, "bad header"),
        (boto_errors.NoCredentialsError(), AccessDenied, NO_CREDENTIALS),
        (boto_errors.ProfileNotFound(profile="x"), AccessDenied, "AWS credentials:"),
        (
            boto_errors.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
            Unreachable,
            "cannot reach S3 endpoint http://127.0.0.1:9",
        ),
        (aiohttp.ServerDisconnectedError(), Transient, "data/aa/pack: connection to S3"),
        (ConnectionResetError(104, "Connection reset by peer"), Transient, "reset"),
        (TimeoutError(), Transient, "TimeoutError"),
        (boto_errors.ParamValidationError(report="bad key"), Permanent, "bad key"),
    ],
)
def test_lower_layer_errors_become_storage_errors(
    exc: Exception, kind: type[StorageError], needle: str
) -> None:
    error = translated(exc)
    assert type(error) is kind
    assert needle in str(error)
    assert "\n" not in str(error)


def test_bbackup_errors_and_programming_errors_pass_through_unchanged() -> None:
    already = NotFound("config: not found")
    with pytest.raises(NotFound) as caught, translate_errors(Place(), "config"):
        raise already
    assert caught.value is already
    with pytest.raises(KeyError), translate_errors(Place(), "config"):
        raise KeyError("a bug, not a storage error")
