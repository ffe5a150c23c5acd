#!/usr/bin/env python3
"""CPU per frame of the gateway's ingest path without sockets: a steadier figure than bench_ingest.

Drives the real IngestServer (stream splitter, verifier, CBOR limits, schema, persisted replay
window, metrics, store batching, ACK building) through DeviceConnection.data_received with
in-memory transports: `--devices` connections each deliver `--per-read` frames per read (as the
closed-loop simulator of bench_ingest (b) does), then the loop runs the store batch and the ACKs.
Prints process CPU time / frames; socket syscalls and uvloop's reads are NOT included, so the
figure is lower than bench_ingest's (which measures the whole process). --profile adds cProfile.

    python3 gateway/bench/bench_hotpath.py [--frames 200000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvloop
from memory_store import BatchMemoryStore
from serve_process import SECRET_HEX, loadavg

from nanogridata_gateway import app as app_module
from nanogridata_gateway import server as server_module
from nanogridata_gateway.codec import build_frame, verify_ack
from nanogridata_gateway.config import ServerConfig
from nanogridata_gateway.keys import derive_device_key
from nanogridata_gateway.metrics import IngestMetrics
from nanogridata_gateway.protocol import AckStatus, FrameType
from nanogridata_gateway.replay import PersistentReplayGuard
from nanogridata_gateway.server import DeviceConnection, IngestServer
from nanogridata_gateway.sim import make_payload
from nanogridata_gateway.verifier import ModelSpec, Verifier

MODEL = 0x10


class MemoryTransport:
    """The transport calls DeviceConnection makes; keeps what is written."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def build_reads(devices: int, per_read: int, rounds: int, payload_size: int) -> list[list[bytes]]:
    """rounds x devices reads of `per_read` frames each (distinct sequence numbers)."""
    secret = bytes.fromhex(SECRET_HEX)
    now_ms = time.time_ns() // 1_000_000
    keys = [derive_device_key(secret, MODEL, dev) for dev in range(1, devices + 1)]
    payloads = [make_payload(f"bytes:{payload_size}", dev) for dev in range(1, devices + 1)]
    reads: list[list[bytes]] = []
    for r in range(rounds):
        batch = []
        for i in range(devices):
            seq0 = 1 + r * per_read
            frames = [
                build_frame(keys[i], MODEL, FrameType.TELEMETRY, i + 1, seq, now_ms, payloads[i])
                for seq in range(seq0, seq0 + per_read)
            ]
            batch.append(b"".join(frames))
        reads.append(batch)
    return reads


async def drive(args: argparse.Namespace, reads: list[list[bytes]], state: Path) -> dict[str, Any]:
    secret = bytes.fromhex(SECRET_HEX)
    replay = PersistentReplayGuard(state)
    verifier = Verifier({MODEL: ModelSpec(MODEL, secret)}, replay)
    config = replace(ServerConfig(), rate_limit_per_s=0, max_inflight=1024)
    store = BatchMemoryStore(keep=False)
    server = IngestServer(config, verifier, store, IngestMetrics())
    # as Gateway.run() does after start-up (older trees had it in the server module: A/B runs)
    tune_gc = getattr(app_module, "tune_gc", None) or getattr(server_module, "tune_gc", None)
    if tune_gc is not None and not args.default_gc:
        tune_gc()
    conns = []
    for _ in range(args.devices):
        conn = DeviceConnection(server)
        conn.connection_made(MemoryTransport())  # type: ignore[arg-type]
        conns.append(conn)
    profiler = cProfile.Profile() if args.profile else None
    cpu0 = time.process_time()
    if profiler:
        profiler.enable()
    for batch in reads:
        for conn, data in zip(conns, batch, strict=True):
            conn.data_received(data)
        while server._pending or server._tasks:  # let the store batch and the ACKs run
            await asyncio.sleep(0)
    if profiler:
        profiler.disable()
    cpu = time.process_time() - cpu0
    frames = sum(len(batch) for batch in reads) * args.per_read
    if store.count != frames:
        raise SystemExit(f"stored {store.count} of {frames} frames: the path is broken")
    # every connection got one ACK OK per frame, each a valid ACK for its device
    sample = conns[0].transport
    assert isinstance(sample, MemoryTransport)
    acks = b"".join(sample.written)
    ack_len = len(acks) // (len(reads) * args.per_read)
    key = derive_device_key(secret, MODEL, 1)
    last = verify_ack(key, acks[-ack_len:])
    if last.status != AckStatus.OK or last.device_id != 1:
        raise SystemExit(f"unexpected ACK {last}")
    replay.close()
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
    return {"frames": frames, "cpu_us_per_frame": cpu / frames * 1e6, "frames_per_cpu_s": frames / cpu}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200_000, help="frames to process (bounded: max 2,000,000)")
    ap.add_argument("--devices", type=int, default=1000, help="connections, one device each")
    ap.add_argument("--per-read", type=int, default=8, help="frames per read per connection")
    ap.add_argument("--payload", type=int, default=100, help="CBOR payload bytes")
    ap.add_argument("--repeat", type=int, default=3, help="runs; the best (least disturbed) is printed")
    ap.add_argument("--default-gc", action="store_true", help="keep the default GC thresholds")
    ap.add_argument("--profile", action="store_true", help="run under cProfile and print the top functions")
    ap.add_argument("--top", type=int, default=30, help="functions to print with --profile")
    args = ap.parse_args()
    rounds = max(1, min(args.frames, 2_000_000) // (args.devices * args.per_read))
    reads = build_reads(args.devices, args.per_read, rounds, args.payload)
    uvloop.install()
    results = []
    for _ in range(1 if args.profile else args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(asyncio.run(drive(args, reads, Path(tmp))))
    best = min(results, key=lambda r: r["cpu_us_per_frame"])
    runs = ", ".join(f"{r['cpu_us_per_frame']:.2f}" for r in results)
    print(
        f"hot path: {best['cpu_us_per_frame']:.2f} µs CPU/frame (runs: {runs}) = "
        f"{best['frames_per_cpu_s']:.0f} frames per CPU-second, {best['frames']} frames  [load {loadavg()}]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
