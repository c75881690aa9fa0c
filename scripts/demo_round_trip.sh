#!/usr/bin/env bash
# Runs inside scripts/s3_endpoint.py --run, with the endpoint and credentials exported.
# Usage: demo_round_trip.sh [SOURCE_DIR]   (default: a generated sample tree)
set -euo pipefail
BB=bbackup  # scripts/demo.sh put the venv first on PATH
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export BBACKUP_REPOSITORY=s3://bbackup-demo/demo
export BBACKUP_PASSWORD=demo-password-change-me
export XDG_CACHE_HOME="$WORK/cache"

SRC=${1:-}
if [ -z "$SRC" ]; then
  SRC="$WORK/source"
  mkdir -p "$SRC/docs/empty" "$SRC/bin"
  head -c 5000000 /dev/urandom > "$SRC/bin/random.bin"
  seq 1 200000 > "$SRC/docs/numbers.txt"
  echo "hello, off-site world" > "$SRC/docs/hello.txt"
  ln -s docs/hello.txt "$SRC/link-to-hello"
  ln "$SRC/docs/hello.txt" "$SRC/docs/hardlink.txt"
fi
SRC=$(cd "$SRC" && pwd)

echo "== init";   "$BB" init
echo "== backup"; "$BB" backup "$SRC"
[ -z "${1:-}" ] && echo "changed" >> "$SRC/docs/hello.txt"
echo "== backup (incremental)"; "$BB" backup "$SRC"
"$BB" snapshots
echo "== restore on a 'new machine' (empty cache, another HOME)"
HOME="$WORK/newhome" XDG_CACHE_HOME="$WORK/newhome/.cache" "$BB" restore latest --target "$WORK/restore"
diff -r --no-dereference "$SRC" "$WORK/restore$SRC"
echo "restored tree is identical to the source"
echo "== check --read-data"; "$BB" check --read-data
echo "round trip OK"
