#!/usr/bin/env python3
"""Servers for bench_ingest.py: a uvloop echo baseline, and the gateway with
--store memory    an in-memory Store (the protocol path alone)
--store spool     the durable SQLite spool (group commit; ACK OK only after the fsync), no sink
                  reading it back: the ingest path as a device sees it
--store delivery  the product's delivery store: the spool plus a jsonl sink in the state
                  directory, so the gateway also reads every record back and forwards it
"""

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
from memory_store import BatchMemoryStore

from nanogridata_gateway.app import Gateway, delivery_store_factory
from nanogridata_gateway.config import GatewayConfig, LogConfig, ProtocolConfig, ServerConfig
from nanogridata_gateway.delivery_config import SpoolConfig, parse_delivery_config
from nanogridata_gateway.records import Record
from nanogridata_gateway.spool import Spool
from nanogridata_gateway.verifier import ModelSpec

FRAME, ANSWER = 110, b"\x00" * 16


class Echo(asyncio.Protocol):
    """Answers 16 bytes per complete 110-byte frame (--frame, --answer change the sizes): the
    least a Python server can do per frame."""

    frame = FRAME
    answer = ANSWER

    def __init__(self) -> None:
        self.pending = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.pending += len(data)
        frames, self.pending = divmod(self.pending, self.frame)
        if frames:
            self.transport.write(self.answer * frames)


class SpoolStore:
    """The spool alone as the Store (records stay spooled: nothing forwards them)."""

    def __init__(self, state: Path, commit_interval_ms: float | None, registry: Any) -> None:
        defaults = SpoolConfig()
        interval = defaults.commit_interval_ms if commit_interval_ms is None else commit_interval_ms
        self.spool = Spool(
            str(state / "spool" / "spool.db"),
            ["file"],
            max_bytes=defaults.max_bytes,
            max_age_s=defaults.max_age_s,
            commit_interval_s=interval / 1000,
            max_commit_records=defaults.max_commit_records,
            registry=registry,
        )

    async def start(self) -> None:
        return None

    async def append(self, record: Record) -> None:
        await self.spool.append(record, 1)

    async def append_many(self, records: Sequence[Record]) -> None:
        await self.spool.append_many((record, 1) for record in records)

    def is_ready(self) -> bool:
        return self.spool.is_ready()

    async def close(self) -> None:
        await self.spool.close()


async def echo(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


def spool_config(state: Path, commit_interval_ms: float | None) -> Any:
    """A durable store in `state`: spool + one jsonl sink for every frame type."""
    spool: dict[str, Any] = {
        "path": str(state / "spool" / "spool.db"),
        "dead_letter_dir": str(state / "dead"),
    }
    if commit_interval_ms is not None:
        spool["commit_interval_ms"] = commit_interval_ms
    raw = {
        "spool": spool,
        "sinks": {"file": {"type": "jsonl", "path": str(state / "delivered.jsonl")}},
        "routes": {"TELEMETRY": ["file"], "EVENT": ["file"], "CONFIG": ["file"], "COMMAND": ["local"]},
    }
    return parse_delivery_config(raw, env={})


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
            max_connections_per_source=0,  # every simulated device comes from 127.0.0.1
        ),
        protocol=ProtocolConfig(),
        state_dir=str(args.state),
        log=LogConfig(level="warning"),
        models={0x10: ModelSpec(0x10, bytes.fromhex(args.secret_hex))},
    )
    if args.store == "delivery":
        cfg = replace(cfg, delivery=spool_config(args.state, args.commit_interval_ms))
        await Gateway(cfg, store_factory=delivery_store_factory).run()
    elif args.store == "spool":

        def spool_store(_c: GatewayConfig, registry: Any) -> SpoolStore:
            return SpoolStore(args.state, args.commit_interval_ms, registry)

        await Gateway(cfg, store_factory=spool_store).run()
    else:
        await Gateway(cfg, store_factory=lambda _c, _m: BatchMemoryStore(keep=False)).run()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("echo", "gateway"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--http-port", type=int, default=0)
    ap.add_argument("--state", type=Path, default=Path("/tmp"))
    ap.add_argument("--secret-hex", default="")
    ap.add_argument("--store", choices=("memory", "spool", "delivery"), default="memory")
    ap.add_argument(
        "--commit-interval-ms", type=float, help="spool.commit_interval_ms (default: the config default)"
    )
    ap.add_argument("--frame", type=int, default=FRAME, help="echo: bytes per frame")
    ap.add_argument("--answer", type=int, default=len(ANSWER), help="echo: bytes answered per frame")
    args = ap.parse_args()
    Echo.frame, Echo.answer = args.frame, b"\x00" * args.answer
    uvloop.install()
    asyncio.run(echo(args.port) if args.mode == "echo" else gateway(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
