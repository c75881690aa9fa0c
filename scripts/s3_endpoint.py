"""A throw-away local S3 endpoint (moto) on 127.0.0.1 for demos and manual testing.

    python scripts/s3_endpoint.py [--port N] [--bucket NAME]
        prints the `export ...` line for bbackup, then "ready", and serves until SIGTERM/SIGINT
    python scripts/s3_endpoint.py [--bucket NAME] --run -- CMD [ARGS...]
        serves while CMD runs with those variables set, and exits with CMD's exit code

Data lives in memory only and is gone when the endpoint stops. Needs the dev extras
(`pip install -e '.[dev]'`: moto[server], boto3).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from types import FrameType

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    # argparse mishandles "--" before a REMAINDER argument, so the command is split off here.
    command: list[str] | None = None
    if "--run" in argv:
        at = argv.index("--run")
        argv, command = argv[:at], argv[at + 1 :]
        if command[:1] == ["--"]:
            command = command[1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any)")
    parser.add_argument("--bucket", help="create this bucket once the endpoint is up")
    parser.epilog = "--run -- CMD [ARGS...]: run CMD against the endpoint, exit with its code"
    args = parser.parse_args(argv)
    if command is not None and not command:
        parser.error("--run needs a command: --run -- CMD [ARGS...]")
    args.run = command
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        env = {**CREDENTIALS, "BBACKUP_S3_ENDPOINT": endpoint}
        if args.bucket:
            client = boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
                aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            )
            try:
                client.create_bucket(Bucket=args.bucket)
            except client.exceptions.ClientError as exc:
                print(f"s3_endpoint: cannot create bucket {args.bucket!r}: {exc}", file=sys.stderr)
                return 1
            finally:
                client.close()
        if args.run is not None:
            try:
                return subprocess.run(args.run, env={**os.environ, **env}, check=False).returncode
            except FileNotFoundError:
                print(f"s3_endpoint: command not found: {args.run[0]}", file=sys.stderr)
                return 127
        stop = stop_on_signals()
        exports = " ".join(f"{key}={value}" for key, value in env.items())
        print(f"export {exports}", flush=True)
        print("ready", flush=True)
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        server.stop()


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so the endpoint shuts down cleanly."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


if __name__ == "__main__":
    sys.exit(main())
