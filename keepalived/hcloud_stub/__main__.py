"""Run the stub as a process: python3 -m hcloud_stub --token-file F --server 42=gw-a ...

Prints one JSON line {"endpoint": ...} on stdout once listening, then serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from .server import HcloudStub


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m hcloud_stub", description=__doc__)
    parser.add_argument("--token-file", required=True, type=Path, help="file holding the accepted API token")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: ephemeral)")
    parser.add_argument("--server", action="append", default=[], metavar="ID=NAME", help="a server (repeatable)")
    parser.add_argument(
        "--floating-ip",
        action="append",
        default=[],
        metavar="ID=IP[@SERVER_ID]",
        help="a floating IP, optionally assigned (repeatable)",
    )
    parser.add_argument("--action-seconds", type=float, default=0.3, help="how long an assign action runs")
    parser.add_argument(
        "--private-namespace-address",
        metavar="ADDR",
        help="listen on ADDR instead of 127.0.0.1: only inside a network namespace the caller created",
    )
    args = parser.parse_args(argv)

    host = args.private_namespace_address or "127.0.0.1"
    stub = HcloudStub(
        args.token_file.read_text().strip(),
        host=host,
        port=args.port,
        private_namespace=bool(args.private_namespace_address),
    )
    stub.set_action_seconds(args.action_seconds)
    try:
        for spec in args.server:
            sid, name = spec.split("=", 1)
            stub.add_server(int(sid), name)
        for spec in args.floating_ip:
            fid, rest = spec.split("=", 1)
            ip, _, owner = rest.partition("@")
            stub.add_floating_ip(int(fid), ip, int(owner) if owner else None)
    except ValueError as exc:
        parser.error(f"bad --server/--floating-ip value: {exc}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with stub:
        print(json.dumps({"endpoint": stub.endpoint}), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
