#!/usr/bin/env python3
"""Servers for bench_ingest.py: a uvloop echo baseline, and the gateway with an in-memory Store."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvloop

from nanogridata_gateway.app import Gateway
from nanogridata_gateway.config import GatewayConfig, LogConfig, ProtocolConfig, ServerConfig
from nanogridata_gateway.records import Record
from nanogridata_gateway.verifier import ModelSpec

FRAME, ANSWER = 110, b"\x00" * 16


class Echo(asyncio.Protocol):
    """Answers 16 bytes per complete 110-byte frame: the least a Python server can do per frame."""

    def __init__(self) -> None:
        self.pending = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.pending += len(data)
        frames, self.pending = divmod(self.pending, FRAME)
        if frames:
            self.transport.write(ANSWER * frames)


class MemoryStore:
    """Durable enough for a CPU benchmark: keeps a count, never full."""

    def __init__(self) -> None:
        self.count = 0

    async def start(self) -> None:
        return None

    async def append(self, record: Record) -> None:
        self.count += 1

    async def append_many(self, records: Sequence[Record]) -> None:
        self.count += len(records)

    def is_ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


async def echo(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


async def gateway(args: argparse.Namespace) -> None:
    cfg = GatewayConfig(
        server=replace(
            ServerConfig(),
            data_host="127.0.0.1",
            data_port=args.port,
            metrics_host="127.0.0.1",
            metrics_port=args.http_port,
            rate_limit_per_s=0,
            max_inflight=1024,
        ),
        protocol=ProtocolConfig(),
        state_dir=str(args.state),
        log=LogConfig(level="warning"),
        models={0x10: ModelSpec(0x10, bytes.fromhex(args.secret_hex))},
    )
    await Gateway(cfg, store_factory=lambda _c, _r, _m: MemoryStore()).run()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("echo", "gateway"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--http-port", type=int, default=0)
    ap.add_argument("--state", type=Path, default=Path("/tmp"))
    ap.add_argument("--secret-hex", default="")
    args = ap.parse_args()
    uvloop.install()
    asyncio.run(echo(args.port) if args.mode == "echo" else gateway(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
