"""The copy of an S3 repository's key file that the cache keeps, so the next command can
start deriving the key while it loads the S3 client (cli/early.py): it is the key file
that opened the repository, it is kept only with the cache, and a stale or wrong copy
never changes what a command does."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from cli_harness import CHEAPEST_KDF, PASSWORD, Cli, MakeTree, run_subprocess
from s3_harness import listed_prefixes, server_requests

from bbackup.cache_paths import unlock_hint
from s3_server import TEST_CREDENTIALS, S3Bucket

pytestmark = pytest.mark.s3


def subprocess_env(home: Path, bucket: S3Bucket, password: str = PASSWORD) -> dict[str, str]:
    return {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin",
        "HOME": str(home),
        **TEST_CREDENTIALS,
        "BBACKUP_S3_ENDPOINT": bucket.endpoint,
        "BBACKUP_PASSWORD": password,
    }


def test_init_and_open_remember_the_key_file_of_an_s3_repository(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket, isolated_env: Path
) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": "alpha\n"})
    assert cli("init", "-r", s3_bucket.url).exit_code == 0
    hint = Path(unlock_hint(isolated_env / ".cache" / "bbackup", s3_bucket.url))
    (key_name,) = s3_bucket.keys("repo/keys/")
    stored = s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key=key_name)["Body"].read()
    assert hint.read_bytes() == stored
    assert stat.S_IMODE(hint.stat().st_mode) == 0o600

    hint.unlink()  # a machine that did not create the repository learns it on first use
    assert cli("backup", "-r", s3_bucket.url, src).exit_code == 0
    assert hint.read_bytes() == stored

    other = tmp_path / "other-cache"
    assert cli("snapshots", "-r", s3_bucket.url, "--no-cache", "--cache-dir", other).exit_code == 0
    assert not other.exists(), "--no-cache wrote the key file copy"


def test_a_stale_copy_is_replaced_and_a_wrong_password_still_fails(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket
) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": "alpha\n"})
    home = tmp_path / "home"
    home.mkdir()
    env = subprocess_env(home, s3_bucket)
    assert run_subprocess("init", "-r", s3_bucket.url, *CHEAPEST_KDF, env=env).exit_code == 0
    hint = Path(unlock_hint(home / ".cache" / "bbackup", s3_bucket.url))
    # Another repository's key file under this URL (the bucket was recreated, say).
    other = tmp_path / "other"
    assert run_subprocess("init", "-r", other, *CHEAPEST_KDF, env=env).exit_code == 0
    (stale,) = (other / "keys").iterdir()
    hint.write_bytes(stale.read_bytes())

    backup = run_subprocess("backup", "-r", s3_bucket.url, "--json", src, env=env)
    assert backup.exit_code == 0, backup
    assert hint.read_bytes() != stale.read_bytes()  # now the key file that opened it

    wrong = run_subprocess("snapshots", "-r", s3_bucket.url, env={**env, "BBACKUP_PASSWORD": "no"})
    assert wrong.exit_code == 12, wrong
    assert "Traceback" not in wrong.stderr
    assert run_subprocess("snapshots", "-r", s3_bucket.url, env=env).exit_code == 0


def test_the_key_file_that_opened_it_last_is_read_by_name_and_a_removed_one_opens_nothing(
    tmp_path: Path,
    cli: Cli,
    s3_bucket: S3Bucket,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = s3_bucket.url
    assert cli("init", "-r", url).exit_code == 0
    (first_key,) = s3_bucket.keys("repo/keys/")
    first_bytes = s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key=first_key)["Body"].read()
    second_password = tmp_path / "second.pass"
    second_password.write_text("another password")
    assert cli("key", "add", "-r", url, "--new-password-file", second_password).exit_code == 0

    with server_requests(keep_query=True) as requests:
        warm = cli("snapshots", "-r", url)
    assert warm.exit_code == 0, warm
    # One GET of last time's key file, beside the config: no listing of keys/.
    listed = listed_prefixes(requests, s3_bucket)
    assert "repo/snapshots/" in listed and "repo/keys/" not in listed, listed
    key_reads = [(m, p) for m, p in requests if p.startswith(f"/{s3_bucket.bucket}/repo/keys/")]
    assert key_reads == [("GET", f"/{s3_bucket.bucket}/{first_key}")]

    # The other password opens the other key file, though the copy is of the first.
    monkeypatch.setenv("BBACKUP_PASSWORD", "another password")
    assert cli("snapshots", "-r", url).exit_code == 0
    first_id = first_key.rsplit("/", 1)[-1]
    assert cli("key", "remove", "-r", url, first_id[:12]).exit_code == 0

    # A copy of the removed key file opens nothing: it is read from the store, by name.
    hint = Path(unlock_hint(isolated_env / ".cache" / "bbackup", url))
    hint.write_bytes(first_bytes)
    monkeypatch.setenv("BBACKUP_PASSWORD", PASSWORD)
    removed = cli("snapshots", "-r", url)
    assert removed.exit_code == 12, removed
    assert "Traceback" not in removed.stderr
