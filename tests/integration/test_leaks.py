"""Nothing the user backs up is readable in the repository without the password."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
from cli_harness import Cli

DIR_MARKER = "ZebraDirectoryMarker"
FILE_MARKER = "QuokkaFileNameMarker"
TEXT_MARKER = "CONFIDENTIAL-PAYROLL-RECORD "  # repeated: compresses extremely well
LINK_MARKER = "AxolotlLinkTargetMarker"
TAG_MARKER = "PangolinTagMarker"
HOST_MARKER = "OkapiHostMarker"
XATTR_MARKER = b"NarwhalXattrMarker"
#: What a key file may say in the clear (besides the wrapped key in "data").
KEY_FILE_FIELDS = {"version", "created", "hostname", "username", "kdf", "t", "m", "p", "salt"}


@pytest.mark.parametrize("compression", ["0", "3"])
def test_no_name_or_content_appears_in_any_stored_object(
    tmp_path: Path, cli: Cli, compression: str
) -> None:
    random_marker = os.urandom(64)
    src = tmp_path / f"source-{DIR_MARKER}-root"
    inner = src / f"{DIR_MARKER}-inner"
    inner.mkdir(parents=True)
    (inner / f"{FILE_MARKER}.txt").write_text(TEXT_MARKER * 40_000)
    (src / f"{FILE_MARKER}-random.bin").write_bytes(os.urandom(1000) + random_marker)
    (src / f"{FILE_MARKER}-tiny").write_bytes(random_marker)
    (src / "both.bin").write_bytes((TEXT_MARKER * 100).encode() + random_marker * 10)
    os.symlink(f"../{LINK_MARKER}/target", src / "link")
    with contextlib.suppress(OSError):  # a filesystem without user xattrs: nothing to leak
        os.setxattr(src / "both.bin", "user.marker", XATTR_MARKER)
    repo = tmp_path / "repo"
    assert cli("init", "-r", repo, "--compression", compression).exit_code == 0
    backup = cli("backup", "-r", repo, "--tag", TAG_MARKER, "--host", HOST_MARKER, src)
    assert backup.exit_code == 0, backup

    markers = {
        "directory name": DIR_MARKER.encode(),
        "file name": FILE_MARKER.encode(),
        "text content": TEXT_MARKER.encode(),
        "random content": random_marker,
        "random content (hex)": random_marker.hex().encode(),
        "symlink target": LINK_MARKER.encode(),
        "tag": TAG_MARKER.encode(),
        "host": HOST_MARKER.encode(),
        "xattr": XATTR_MARKER,
    }
    objects = sorted(p for p in repo.rglob("*") if p.is_file())
    assert any(p.relative_to(repo).parts[0] == "data" for p in objects)
    leaks = [
        f"{what} in {path.relative_to(repo)}"
        for path in objects
        for what, marker in markers.items()
        if marker in path.read_bytes() or marker in str(path.relative_to(repo)).encode()
    ]
    assert leaks == []

    key_files = list((repo / "keys").iterdir())
    assert len(key_files) == 1
    assert set(json.loads(key_files[0].read_bytes())) <= KEY_FILE_FIELDS | {"data"}
