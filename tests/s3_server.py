"""A local S3 endpoint for tests and demos: moto's ThreadedMotoServer on 127.0.0.1.

Tests talk real HTTP to it (never moto's in-process mock, which does not reliably intercept
aiobotocore); the fixtures in tests/conftest.py start one per session and give every test
a fresh bucket.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoEndpoint:
    """One moto server in a daemon thread, listening on 127.0.0.1 (port 0: any free port)."""

    def __init__(self, port: int = 0) -> None:
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request at INFO to stderr; keep test and demo output clean.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        host, bound_port = self._server.get_host_and_port()
        self.url = f"http://{host}:{bound_port}"
        self.client = make_client(self.url)

    def stop(self) -> None:
        self.client.close()
        self._server.stop()

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"bb-test-{secrets.token_hex(6)}"
        self.client.create_bucket(Bucket=name)
        return name

    def remove_bucket(self, name: str) -> None:
        """Delete a bucket with everything in it, including unfinished multipart uploads."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": entry["Key"]} for entry in page.get("Contents", ())]
            if keys:
                self.client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        uploads = self.client.list_multipart_uploads(Bucket=name).get("Uploads", ())
        for upload in uploads:
            self.client.abort_multipart_upload(
                Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        self.client.delete_bucket(Bucket=name)

    @contextlib.contextmanager
    def enforcing_credentials(self) -> Iterator[None]:
        """Make the server check signatures against IAM, so unknown access keys get 403.

        This is server-wide state: the session's tests run one at a time, and it is
        switched back off on the way out whatever happens.
        """
        self._reset_auth("0")
        try:
            yield
        finally:
            self._reset_auth("inf")

    def _reset_auth(self, count: str) -> None:
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth",
            data=count.encode(),
            # Not form-encoded, or Flask consumes the body as a form and moto reads b"".
            headers={"Content-Type": "text/plain"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


def make_client(endpoint: str) -> Any:
    """A boto3 S3 client for assertions and set-up, with the test credentials."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=TEST_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@dataclass(frozen=True)
class S3Bucket:
    """A fresh bucket on the session's moto server."""

    endpoint: str
    bucket: str
    client: Any  # boto3 S3 client, for assertions on what landed in the bucket

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/repo"

    def keys(self, prefix: str = "") -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        return sorted(
            entry["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for entry in page.get("Contents", ())
        )
