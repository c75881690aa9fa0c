#!/usr/bin/env bash
# The main job, end to end on a fresh machine: set up a virtualenv, start an embedded
# S3 endpoint (moto) on 127.0.0.1, and run a real off-site round trip over HTTP:
# init → backup → change a file → backup → restore into an empty directory (no cache,
# another HOME: a new machine) → compare byte for byte → check --read-data.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
exec python scripts/s3_endpoint.py --bucket bbackup-demo --run -- bash scripts/demo_round_trip.sh "${1:-}"
