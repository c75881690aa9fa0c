"""docs/disaster-recovery.md, followed literally: its `bash` blocks, taken from the page,
run in one shell on a "new machine" (an empty home, no cache, no bbackup variables, a
host name other than the old machine's) against moto S3 over HTTP, with only the page's
example values replaced (and the imported key made the cheapest); the restored tree must
equal the old machine's byte for byte and metadata for metadata. A second run starts
with every key file deleted from the bucket, follows the page's key-import step and ends
once the snapshots list again (tests/integration/test_key_export.py restores after an
import)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cli_harness import CHEAPEST_KDF, PASSWORD, Cli, restored_path
from tree_metadata import tree_metadata

import bbackup
from s3_server import TEST_CREDENTIALS, S3Bucket

pytestmark = pytest.mark.s3

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "disaster-recovery.md"
SCENARIOS = ("main", "keys-lost")
#: When the test runs a block: the words after "bash" on its opening fence.
BLOCK_TAGS = {*SCENARIOS, "not-run"}
_FENCE = re.compile(r"^[ \t]*```bash(?P<tags>[^\n]*)\n(?P<body>.*?)^[ \t]*```", re.M | re.S)
OLD_HOST = "fileserver"
EXPORT_PASSWORD = "export password from the sealed envelope"


def runbook_blocks() -> list[tuple[set[str], str]]:
    """Every `bash` block of the runbook, in page order, with its tags."""
    text = RUNBOOK.read_text()
    return [(set(m.group("tags").split()), m.group("body")) for m in _FENCE.finditer(text)]


def test_every_runbook_block_says_when_the_test_runs_it() -> None:
    blocks = runbook_blocks()
    assert len(blocks) >= 8
    for tags, body in blocks:
        assert tags and tags <= BLOCK_TAGS, f"block tagged {sorted(tags)}:\n{body}"
    for scenario in SCENARIOS:
        assert any(scenario in tags for tags, _ in blocks)


def old_machine(root: Path) -> list[Path]:
    """The old machine's files: configuration, a home, data with a hard link, symlinks,
    an empty directory, a FIFO and a read-only file, owned by a user (as root), all with
    ns times; the paths its backups named."""
    (root / "etc" / "ssh").mkdir(parents=True)
    (root / "etc" / "fstab").write_text("UUID=0a1b / ext4 defaults 0 1\n")
    (root / "etc" / "hostname").write_text(f"{OLD_HOST}\n")
    (root / "etc" / "ssh" / "sshd_config").write_text("PermitRootLogin no\n")
    os.chmod(root / "etc" / "ssh" / "sshd_config", 0o600)
    home = root / "home" / "alice"
    home.mkdir(parents=True)
    (home / "notes.txt").write_text("buy milk\n" * 100)
    (home / ".profile").write_text("export EDITOR=vi\n")
    os.symlink("notes.txt", home / "todo")
    data = root / "srv" / "data"
    data.mkdir(parents=True)
    (data / "db.bin").write_bytes(os.urandom(1536 * 1024))
    os.link(data / "db.bin", data / "db.bin.hardlink")
    os.symlink("/srv/data/db.bin", data / "current")
    os.chmod(data / "db.bin", 0o440)
    (root / "srv" / "empty").mkdir()
    os.mkfifo(root / "srv" / "queue")
    if os.geteuid() == 0:
        for path in [home, *home.rglob("*")]:
            os.chown(path, 1001, 1001, follow_symlinks=False)
    for i, path in enumerate(sorted(root.rglob("*"), reverse=True)):
        mtime_ns = 1_700_000_000_123_456_789 + i
        os.utime(path, ns=(1_700_000_000_000_000_000, mtime_ns), follow_symlinks=False)
    return [root / "etc", root / "home", root / "srv"]


def bbackup_on_path(bin_dir: Path) -> None:
    """`bbackup` as the runbook's shell finds it: this interpreter, this source tree."""
    bin_dir.mkdir()
    source = Path(bbackup.__file__).resolve().parents[1]
    shim = bin_dir / "bbackup"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{source}" exec "{sys.executable}" -m bbackup "$@"\n')
    shim.chmod(0o755)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_disaster_recovery_runbook_restores_the_old_machine_exactly(
    tmp_path: Path,
    cli: Cli,
    s3_bucket: S3Bucket,
    monkeypatch: pytest.MonkeyPatch,
    scenario: str,
) -> None:
    assert socket.gethostname() != OLD_HOST  # the new machine has another host name
    old_root = tmp_path / "old-machine"
    backed_up = old_machine(old_root)
    url = s3_bucket.url
    assert cli("init", "-r", url).exit_code == 0
    backup = cli("backup", "-r", url, "--host", OLD_HOST, *backed_up)
    assert backup.exit_code == 0, backup
    usb = tmp_path / "usb"
    usb.mkdir()
    if scenario == "keys-lost":
        monkeypatch.setenv("BBACKUP_EXPORT_PASSWORD", EXPORT_PASSWORD)
        exported = cli("key", "export", "-r", url, "--out", usb / "bbackup-key.json")
        assert exported.exit_code == 0, exported
        for key in s3_bucket.keys("repo/keys/"):
            s3_bucket.client.delete_object(Bucket=s3_bucket.bucket, Key=key)
        assert s3_bucket.keys("repo/keys/") == []

    new_home, new_root, workdir = tmp_path / "new-home", tmp_path / "new-root", tmp_path / "cwd"
    for directory in (new_home, new_root, workdir):
        directory.mkdir()
    bbackup_on_path(tmp_path / "bin")
    examples = {
        "s3://acme-backups/fileserver": url,
        "AKIAIOSFODNN7EXAMPLE": TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY": TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "https://s3.eu-central-003.backblazeb2.com": s3_bucket.endpoint,
        "/mnt/newroot": str(new_root),
        "/media/usb": str(usb),
    }
    script = "\n".join(body for tags, body in runbook_blocks() if scenario in tags)
    for example, value in examples.items():
        if example == "/mnt/newroot" and scenario == "keys-lost":
            continue
        if example == "/media/usb" and scenario != "keys-lost":
            continue
        assert example in script, f"the runbook no longer uses the example {example!r}"
        script = script.replace(example, value)
    if scenario == "keys-lost":
        # The imported key's cost is not what this runs for: the cheapest key spares the
        # 0.5 s calibration and every later command a 0.5 s derivation (seconds of CPU).
        import_command = "bbackup key import "
        assert import_command in script, "the runbook no longer imports the key export"
        script = script.replace(import_command, f"{import_command}{' '.join(CHEAPEST_KDF)} ")
    # The old machine's own paths (/etc, ...) are where the test's old machine keeps them.
    script, replaced = re.subn(r"(?<=\s)/etc\b", f"{old_root}/etc", script)
    assert replaced >= 1, script
    answers = PASSWORD + "\n" + (EXPORT_PASSWORD + "\n" if scenario == "keys-lost" else "")

    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        input=answers,
        capture_output=True,
        text=True,
        cwd=workdir,
        env={"PATH": f"{tmp_path / 'bin'}{os.pathsep}/usr/bin:/bin", "HOME": str(new_home)},
        timeout=240,
    )

    shown = f"{script}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, shown
    assert OLD_HOST in result.stdout, shown  # `snapshots --host` listed the old snapshot
    assert f"{old_root}/etc/fstab" in result.stdout, shown  # `ls` showed the old /etc
    if scenario == "keys-lost":
        assert len(s3_bucket.keys("repo/keys/")) == 1  # the imported key, for the password
        return
    assert (workdir / "old-fstab").read_bytes() == (old_root / "etc" / "fstab").read_bytes()
    for path in backed_up:
        assert tree_metadata(restored_path(new_root, path)) == tree_metadata(path), path
