"""A many-small-files fidelity soak: N files (100 000 by default, 0-4 KiB each, varied
modes and ns mtimes, a few hard links and symlinks) backed up, backed up again unchanged,
and restored with the real CLI; then every restored entry is compared with its source
(type, mode, owner, size, mtime_ns, link target, bytes). Too slow for the test suite.

    python scripts/soak_many_files.py --files 100000 [--workdir DIR] [--keep]

Prints one JSON object with the timings; exits 1 if any entry differs (and keeps the
work directory for inspection).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PASSWORD = "soak password"
CHEAPEST_KDF = ("--kdf-memory", "8", "--kdf-time", "1")
FILES_PER_DIR = 1000


def build_source(src: Path, files: int, seed: int) -> int:
    """The source tree; returns the bytes of file content written."""
    rng = random.Random(seed)
    total = 0
    for i in range(files):
        directory = src / f"d{i // FILES_PER_DIR:04}"
        if i % FILES_PER_DIR == 0:
            directory.mkdir(parents=True)
        path = directory / f"f{i:06}"
        data = rng.randbytes(rng.randrange(0, 4096))
        path.write_bytes(data)
        total += len(data)
        os.chmod(path, rng.choice([0o644, 0o600, 0o755, 0o4755, 0o640]))
        mtime = 1_600_000_000_000_000_000 + rng.randrange(10**17)
        os.utime(path, ns=(mtime, mtime))
        if i % 997 == 0:
            os.link(path, directory / f"f{i:06}.link")
        if i % 991 == 0:
            os.symlink(f"f{i:06}", directory / f"f{i:06}.sym")
    return total


def entries(root: Path) -> dict[str, tuple[object, ...]]:
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            content: object = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            size = None if stat.S_ISDIR(st.st_mode) else st.st_size
            found[rel] = (st.st_mode, st.st_uid, st.st_gid, size, st.st_mtime_ns, content)
    return found


def bbackup(*args: str | Path) -> tuple[float, str]:
    """Run the CLI; (seconds, stdout). A failure stops the soak."""
    env = {**os.environ, "BBACKUP_PASSWORD": PASSWORD}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bbackup", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"bbackup {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}")
    return seconds, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bb-soak-files-", dir=args.workdir))
    src, repo, target = work / "src", work / "repo", work / "target"
    ok = False
    try:
        start = time.monotonic()
        content_bytes = build_source(src, args.files, args.seed)
        figures: dict[str, object] = {
            "files": args.files,
            "content_bytes": content_bytes,
            "build_seconds": round(time.monotonic() - start, 2),
        }
        bbackup("init", "-r", repo, *CHEAPEST_KDF)
        figures["backup_seconds"] = round(bbackup("backup", "-r", repo, src)[0], 2)
        figures["unchanged_backup_seconds"] = round(bbackup("backup", "-r", repo, src)[0], 2)
        figures["restore_seconds"] = round(
            bbackup("restore", "latest", "-r", repo, "--target", target)[0], 2
        )
        start = time.monotonic()
        before = entries(src)
        after = entries(target / str(src).lstrip("/"))
        figures["compare_seconds"] = round(time.monotonic() - start, 2)
        differing = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        figures["entries"] = len(before)
        figures["differing"] = len(differing)
        figures["first_differing"] = differing[:10]
        print(json.dumps(figures, indent=2))
        ok = not differing
        return 0 if ok else 1
    finally:
        if ok and not args.keep:
            shutil.rmtree(work)
        else:
            print(f"work directory kept: {work}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
