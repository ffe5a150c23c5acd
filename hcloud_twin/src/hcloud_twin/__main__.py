"""Run the twin as a process: python3 -m hcloud_twin --token-file F [--server 42=gw-a ...]

Prints one JSON line {"endpoint": ...} on stdout once listening, then serves until SIGTERM/SIGINT.
Bad arguments exit 2 with a message naming the option.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from .service import HcloudTwin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m hcloud_twin", description=__doc__)
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
    parser.add_argument(
        "--state-file",
        type=Path,
        help="keep the project's state in this JSON file: loaded at start, rewritten after every change",
    )
    parser.add_argument(
        "--docker-hosts",
        metavar="LAB",
        help="make every server a lab container (lab name LAB; see hcloud_twin/README.md); needs --public-subnet",
    )
    parser.add_argument(
        "--public-subnet",
        metavar="CIDR",
        help="with --docker-hosts: the /24 of the docker network standing for the internet (servers get its"
        " lower half, floating IPs its top quarter)",
    )
    parser.add_argument("--action-seconds", type=float, default=0.2, help="how long every action runs")
    parser.add_argument(
        "--private-namespace-address",
        metavar="ADDR",
        help="listen on ADDR instead of 127.0.0.1: only inside a network namespace the caller created",
    )
    args = parser.parse_args(argv)
    try:
        token = args.token_file.read_text().strip()
    except OSError as exc:
        parser.error(f"--token-file: cannot read {args.token_file}: {exc.strerror}")
    if not token:
        parser.error(f"--token-file: {args.token_file} is empty; write the token the clients will send")
    if args.action_seconds < 0:
        parser.error("--action-seconds must be >= 0")
    pools: dict[str, str] = {}
    host = args.private_namespace_address or "127.0.0.1"
    hosts = None
    if args.docker_hosts:
        if not args.public_subnet:
            parser.error("--docker-hosts needs --public-subnet, a /24 such as 172.30.71.0/24")
        from .hosts import DockerHosts, HostError, address_pools

        try:
            pools = address_pools(args.public_subnet)
        except ValueError as exc:
            parser.error(f"--public-subnet: {exc}")
        hosts = DockerHosts(Path(__file__).resolve().parents[3], args.docker_hosts, args.public_subnet)
        try:
            host = hosts.prepare()  # the API listens where the hosts reach it: the docker host's address
        except (HostError, OSError) as exc:
            hosts.close()
            print(f"error: --docker-hosts: {exc}", file=sys.stderr)
            return 1
    try:
        twin = HcloudTwin(
            token,
            host=host,
            port=args.port,
            own_network=host != "127.0.0.1",
            state_file=args.state_file,
            **pools,
        )
    except (ValueError, KeyError, TypeError) as exc:
        parser.error(f"--state-file: {args.state_file} is not a state file of this twin ({exc}); move it away to start empty")
    except OSError as exc:
        parser.error(f"cannot listen on {host}:{args.port}: {exc.strerror}")
    twin.set_action_seconds(args.action_seconds)
    try:
        for spec in args.server:
            sid, name = spec.split("=", 1)
            twin.add_server(int(sid), name)
        for spec in args.floating_ip:
            fid, rest = spec.split("=", 1)
            ip, _, owner = rest.partition("@")
            twin.add_floating_ip(int(fid), ip, int(owner) if owner else None)
    except ValueError as exc:
        parser.error(f"--server/--floating-ip: bad value ({exc}); use ID=NAME and ID=IP[@SERVER_ID]")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with twin:
            if hosts is not None:
                hosts.attach(twin)
            print(json.dumps({"endpoint": twin.endpoint}), flush=True)
            stop.wait()
    finally:
        if hosts is not None:
            hosts.close()  # its containers and networks go with the twin
    return 0


if __name__ == "__main__":
    sys.exit(main())
