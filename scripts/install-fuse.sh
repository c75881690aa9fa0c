#!/usr/bin/env bash
# Installs what `bbackup mount` needs from the system: libfuse (libfuse3.so.3, which
# mfusepy loads through ctypes) and fusermount3 (which unmounts without root). Debian and
# Ubuntu only; needs root. Prints what it did, or why it did nothing; exits 0 when
# libfuse is present afterwards.
set -euo pipefail

have_libfuse() {
  ldconfig -p 2>/dev/null | grep -qE 'libfuse3?\.so\.[23]'
}

if have_libfuse && command -v fusermount3 >/dev/null 2>&1; then
  echo "install-fuse: libfuse and fusermount3 are present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-fuse: not root: run 'sudo apt-get install -y fuse3 libfuse3-3'" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-fuse: no apt-get: install libfuse3 and fusermount3 with this system's packages" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends fuse3 libfuse3-3 >/dev/null
have_libfuse
echo "install-fuse: installed fuse3 and libfuse3-3"
