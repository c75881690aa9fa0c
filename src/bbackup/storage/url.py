"""The one parser of repository URLs: a plain path, `file://PATH` or `s3://BUCKET[/PREFIX]`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from bbackup.errors import InvalidRepositoryURL

# S3 bucket naming rules, loosened to what S3-compatible stores accept (dots, underscores).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RepositoryURL:
    """A parsed repository location."""

    scheme: str  # "local", "s3" or "memory"
    path: str = ""  # local: absolute directory
    bucket: str = ""
    prefix: str = ""  # s3: key prefix without leading or trailing '/'

    def __str__(self) -> str:
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        if self.scheme == "memory":
            return "memory:"
        return self.path


def parse_repository_url(url: str) -> RepositoryURL:
    """Parse a repository URL, or raise InvalidRepositoryURL with a one-line reason."""
    url = url.strip()
    if not url:
        raise InvalidRepositoryURL("repository URL is empty: pass --repo or set BBACKUP_REPOSITORY")
    if url == "memory:":
        return RepositoryURL("memory")
    if "://" not in url:
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url) and not os.path.exists(url):
            scheme = url.split(":", 1)[0]
            raise InvalidRepositoryURL(
                f"unsupported repository URL {url!r}: scheme {scheme!r} is not one of file, s3"
            )
        return RepositoryURL("local", path=os.path.abspath(os.path.expanduser(url)))
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidRepositoryURL(f"malformed file URL {url!r}: use file:///absolute/path")
        path = unquote(parts.path)
        if not path:
            raise InvalidRepositoryURL(f"malformed file URL {url!r}: no path")
        return RepositoryURL("local", path=os.path.abspath(path))
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not bucket:
            raise InvalidRepositoryURL(f"malformed S3 URL {url!r}: use s3://bucket[/prefix]")
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise InvalidRepositoryURL(f"malformed S3 URL {url!r}: {bucket!r} is not a bucket name")
        if parts.query or parts.fragment:
            raise InvalidRepositoryURL(f"malformed S3 URL {url!r}: unexpected query or fragment")
        path = unquote(parts.path)
        if "//" in path:
            raise InvalidRepositoryURL(f"malformed S3 URL {url!r}: empty path segment in prefix")
        prefix = path.strip("/")
        return RepositoryURL("s3", bucket=bucket, prefix=prefix)
    raise InvalidRepositoryURL(
        f"unsupported repository URL {url!r}: scheme {parts.scheme!r} is not one of file, s3"
    )
