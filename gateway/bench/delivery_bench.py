#!/usr/bin/env python3
"""Delivery benchmark: spool append throughput (group commit) vs an in-memory store, and backlog
drain rate from the spool into a real VictoriaMetrics.

    python gateway/bench/delivery_bench.py --records 200000 --drain-records 1000000

Bounded: every phase has a record count and a time limit. VictoriaMetrics (/usr/bin/victoria-metrics,
Debian package) is started on a free loopback port with a temporary directory and stopped at the
end. Prints one line per figure and the machine's load average (the CPU is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import cbor2
from memory_store import MemoryStore
from prometheus_client import CollectorRegistry
from serve_process import free_port, stop

from nanogridata_gateway.delivery import DeliveryStore, open_store
from nanogridata_gateway.delivery_config import parse_delivery_config
from nanogridata_gateway.records import Record

VM_BINARY = "/usr/bin/victoria-metrics"
PHASE_TIMEOUT_S = 600.0


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_records(count: int, devices: int) -> list[Record]:
    now = int(time.time() * 1000)
    base = now - 3_600_000  # distinct timestamps per device: VictoriaMetrics dedup is per ms
    out = []
    for i in range(count):
        payload = cbor2.dumps({"p": 1013.25 + i % 100, "t": 21.5, "bat": 3712})
        out.append(Record(0x10, 0x01, i % devices, i // devices + 1, base + i // devices, now, payload))
    return out


async def produce(store: Any, records: list[Record], producers: int) -> float:
    """`producers` concurrent appenders (like device connections); returns records/s."""

    async def producer(chunk: list[Record]) -> None:
        for record in chunk:
            await store.append(record)

    chunks = [records[i::producers] for i in range(producers)]
    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(producer(c) for c in chunks)), PHASE_TIMEOUT_S)
    return len(records) / (time.perf_counter() - start)


def store_for(tmp: Path, sink: dict[str, Any], commit_ms: float) -> tuple[DeliveryStore, CollectorRegistry]:
    raw = {
        "spool": {
            "path": str(tmp / "spool.db"),
            "dead_letter_dir": str(tmp / "dead"),
            "commit_interval_ms": commit_ms,
            "max_bytes": "8GiB",
        },
        "sinks": {"vm": sink},
        "routes": {"TELEMETRY": ["vm"], "EVENT": ["vm"], "CONFIG": ["vm"], "COMMAND": ["local"]},
    }
    registry = CollectorRegistry()
    return open_store(parse_delivery_config(raw, env={}), registry), registry


class VictoriaMetrics:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                VM_BINARY,
                f"-storageDataPath={tmp / 'vm'}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-dedup.minScrapeInterval=1ms",
                "-retentionPeriod=100y",
                "-loggerLevel=ERROR",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("victoria-metrics did not start")

    def count(self, name: str) -> int:
        urllib.request.urlopen(f"{self.base}/internal/force_flush", timeout=30).read()
        query = urllib.parse.urlencode({"match[]": f'{{__name__="{name}"}}'})
        with urllib.request.urlopen(f"{self.base}/api/v1/export?{query}", timeout=120) as response:
            return sum(len(json.loads(line)["values"]) for line in response if line.strip())

    def stop(self) -> None:
        stop(self.proc, signal.SIGINT, timeout_s=30)


async def bench_append(tmp: Path, records: list[Record], producers: int) -> float:
    cpu0 = time.process_time()
    rate_mem = await produce(MemoryStore(), records, producers)
    mem_us = (time.process_time() - cpu0) / len(records) * 1e6
    shape = f"{len(records):,} records, {producers} producers"
    print(f"in-memory store:        {rate_mem:>10,.0f} records/s, {mem_us:.1f} us CPU/record ({shape})")
    for commit_ms in (0.0, 10.0):  # the default (classic group commit), and a 10 ms minimum spacing
        directory = tmp / f"append-{commit_ms:g}"
        store, registry = store_for(directory, {"type": "jsonl", "path": str(directory / "x")}, commit_ms)
        cpu0 = time.process_time()
        rate = await produce(store, records, producers)
        cpu_us = (time.process_time() - cpu0) / len(records) * 1e6
        commits = registry.get_sample_value("nanogridata_spool_commit_seconds_count") or 1
        commit_sum = registry.get_sample_value("nanogridata_spool_commit_seconds_sum") or 0
        await store.spool.close()
        print(
            f"spool append(), commit {commit_ms:>4g} ms: {rate:>10,.0f} records/s, "
            f"{cpu_us:.1f} us CPU/record "
            f"(+{cpu_us - mem_us:.1f} us over in-memory), {commits:.0f} commits, "
            f"{len(records) / commits:,.0f} records/commit, mean commit {commit_sum / commits * 1000:.1f} ms"
        )
    return mem_us


async def produce_batches(store: DeliveryStore, records: list[Record], producers: int, batch: int) -> float:
    """Like produce(), but each producer hands over `batch` records per await (append_many), as
    a server does with the frames of one socket read."""

    async def producer(chunk: list[Record]) -> None:
        for i in range(0, len(chunk), batch):
            await store.append_many(chunk[i : i + batch])

    chunks = [records[i::producers] for i in range(producers)]
    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(producer(c) for c in chunks)), PHASE_TIMEOUT_S)
    return len(records) / (time.perf_counter() - start)


async def bench_append_many(tmp: Path, records: list[Record], producers: int, batch: int) -> None:
    directory = tmp / "append-many"
    store, registry = store_for(directory, {"type": "jsonl", "path": str(directory / "x")}, 0.0)
    cpu0 = time.process_time()
    rate = await produce_batches(store, records, producers, batch)
    cpu_us = (time.process_time() - cpu0) / len(records) * 1e6
    commits = registry.get_sample_value("nanogridata_spool_commit_seconds_count") or 1
    await store.spool.close()
    print(
        f"spool append_many({batch}), commit 0 ms: {rate:>10,.0f} records/s, {cpu_us:.1f} us CPU/record, "
        f"{commits:.0f} commits, {len(records) / commits:,.0f} records/commit"
    )


async def bench_drain(tmp: Path, count: int, devices: int, producers: int) -> None:
    if not shutil.which(VM_BINARY):
        print(f"drain: skipped ({VM_BINARY} missing: apt-get install victoria-metrics)")
        return
    vm = VictoriaMetrics(tmp)
    try:
        sink = {
            "type": "influx_line",
            "url": f"{vm.base}/write",
            "batch_size": 5000,
            "concurrency": 4,
            "timeout_s": 10,
        }
        directory = tmp / "drain"
        store, _ = store_for(directory, sink, 10.0)
        t0 = time.perf_counter()
        for start in range(0, count, 200_000):  # fill in slices: bounded memory
            await produce(store, make_records(min(200_000, count - start), devices), producers)
        fill_s = time.perf_counter() - t0
        await store.spool.close()
        print(f"backlog filled: {count:,} records in {fill_s:.1f}s ({count / fill_s:,.0f}/s); load {load()}")
        store, registry = store_for(directory, sink, 10.0)
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        await store.start()
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while store.spool.record_count > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        drain_s = time.perf_counter() - t0
        cpu_s = time.process_time() - cpu0
        delivered = registry.get_sample_value("nanogridata_sink_records_delivered_total", {"sink": "vm"})
        await store.close()
        print(
            f"drain into VictoriaMetrics: {count:,} records in {drain_s:.1f}s = "
            f"{count / drain_s:,.0f} records/s (gateway CPU {cpu_s:.1f}s; delivered {delivered:,.0f}); "
            f"load {load()}"
        )
        points = 0
        for _ in range(60):
            points = await asyncio.to_thread(vm.count, "nanogridata_0x10_p")
            if points >= count:
                break
            await asyncio.sleep(1)
        print(f"points queryable in VictoriaMetrics: {points:,} (expected {count:,})")
    finally:
        vm.stop()


# a throw-away benchmark secret
E2E_SECRET_HEX = "3f9c0a7e51b2d84c6e17f0a93b5d2c8e4a61f7b09d3e5c2a8f1b46d0e7c9a253"
HERE = Path(__file__).resolve().parent


def _pinned(cpu: int, argv: list[str]) -> list[str]:
    """Server on CPU 0, simulator on CPU 1, when taskset exists (as bench_ingest.py does)."""
    return ["taskset", "-c", str(cpu), *argv] if shutil.which("taskset") else argv


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def _simulate(port: int, tmp: Path, seconds: float, name: str) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "nanogridata_gateway.sim",
        "--port",
        str(port),
        "--devices",
        "1000",
        "--rate",
        "0",
        "--duration",
        str(seconds),
        "--max-frames",
        str(int(seconds * 200_000)),
        "--window",
        "32",
        "--drain",
        "30",
        "--secret-hex",
        E2E_SECRET_HEX,
        "--json",
        "--state-file",
        str(tmp / f"sim-{name}.json"),
        "--acked-out",
        str(tmp / f"acked-{name}.txt"),
    ]
    done = subprocess.run(
        _pinned(1, argv), check=False, capture_output=True, text=True, timeout=seconds + 120
    )
    if done.returncode != 0:
        raise RuntimeError(f"simulator failed: {done.stdout[-1500:]} {done.stderr[-1500:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process: unlike frames/s, comparable across machine loads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spool_records(http_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("nanogridata_spool_records "):
                return float(line.split()[1])
    return -1.0


def bench_e2e(tmp: Path, seconds: float, commit_ms: float | None) -> None:
    """Simulator (closed loop, 1,000 devices) -> gateway -> ACK, with the real spool and a
    VictoriaMetrics sink, then the same against the gateway with an in-memory Store."""
    if not shutil.which(VM_BINARY):
        print("end-to-end: skipped (victoria-metrics missing)")
        return
    env = dict(os.environ, NANOGRIDATA_SECRET_MODEL_10=E2E_SECRET_HEX)
    (tmp / "e2e").mkdir(exist_ok=True)
    vm = VictoriaMetrics(tmp / "e2e")  # its own storage: the drain phase's points are not counted
    data_port, http_port = free_port(), free_port()
    config = tmp / "e2e.toml"
    config.write_text(f"""
[server]
data_host = "127.0.0.1"
data_port = {data_port}
metrics_host = "127.0.0.1"
metrics_port = {http_port}
proxy_protocol = "off"
rate_limit_per_s = 0
max_connections_per_source = 0  # every simulated device connects from 127.0.0.1
[state]
dir = "{tmp / "e2e-state"}"
[log]
level = "warning"
[models."0x10"]
[spool]
path = "{tmp / "e2e-spool" / "spool.db"}"
dead_letter_dir = "{tmp / "e2e-dead"}"
{"" if commit_ms is None else f"commit_interval_ms = {commit_ms}"}
[sinks.vm]
type = "influx_line"
url = "{vm.base}/write"
batch_size = 5000
[routes]
TELEMETRY = ["vm"]
EVENT = ["vm"]
CONFIG = ["vm"]
COMMAND = ["local"]
""")
    gateway = subprocess.Popen(
        _pinned(0, [sys.executable, "-m", "nanogridata_gateway.cli", "serve", "-c", str(config)]),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"http://127.0.0.1:{http_port}/ready")
        cpu0 = _cpu_s(gateway.pid)
        report = _simulate(data_port, tmp, seconds, "spool")
        t0 = time.monotonic()
        while _spool_records(http_port) > 0 and time.monotonic() - t0 < 300:
            time.sleep(0.2)
        lag = time.monotonic() - t0
        # ingest + spool + forwarding to VictoriaMetrics, until the spool is empty
        cpu_spool = (_cpu_s(gateway.pid) - cpu0) / max(report["acked_ok"], 1) * 1e6
        points = 0
        for _ in range(60):
            points = vm.count("nanogridata_0x10_p")
            if points >= report["acked_ok"]:
                break
            time.sleep(1)
        rate_spool = report["acked_ok"] / report["duration_s"]
        print(
            f"end-to-end with spool + VictoriaMetrics: {rate_spool:,.0f} acked frames/s over "
            f"{report['duration_s']:.0f}s ({report['acked_ok']:,} acked, lost {report['lost']}, "
            f"p50/p99 ACK {report['latency_ms']['p50']}/{report['latency_ms']['p99']} ms); backlog "
            f"drained {lag:.1f}s after the load; points in VictoriaMetrics {points:,} (same-ms frames "
            f"of one device collapse); gateway CPU {cpu_spool:.1f} us/frame; load {load()}"
        )
    finally:
        stop(gateway, timeout_s=30)
        vm.stop()
    mem_port = free_port()
    server = subprocess.Popen(
        _pinned(
            0,
            [
                sys.executable,
                str(HERE / "ingest_server.py"),
                "gateway",
                "--port",
                str(mem_port),
                "--state",
                str(tmp / "mem-state"),
                "--secret-hex",
                E2E_SECRET_HEX,
            ],
        ),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", mem_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        cpu0 = _cpu_s(server.pid)
        report = _simulate(mem_port, tmp, seconds, "memory")
        cpu_mem = (_cpu_s(server.pid) - cpu0) / max(report["acked_ok"], 1) * 1e6
        rate_mem = report["acked_ok"] / report["duration_s"]
        print(
            f"end-to-end with in-memory store:         {rate_mem:,.0f} acked frames/s "
            f"(p50/p99 ACK {report['latency_ms']['p50']}/{report['latency_ms']['p99']} ms); "
            f"gateway CPU {cpu_mem:.1f} us/frame; load {load()}"
        )
        print(
            f"spool overhead: {(1 - rate_spool / rate_mem) * 100:.0f}% of throughput (wall clock: moves "
            f"with the machine's load), {(cpu_spool / cpu_mem - 1) * 100:.0f}% more gateway CPU per frame "
            f"(spool + forwarding to VictoriaMetrics)"
        )
    finally:
        stop(server, timeout_s=30)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000, help="records for the append benchmark")
    ap.add_argument("--producers", type=int, default=1000, help="concurrent appenders (connections)")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--drain-records", type=int, default=1_000_000, help="backlog size (0: skip)")
    ap.add_argument("--e2e-seconds", type=float, default=0, help="end-to-end run length (0: skip; max 120)")
    ap.add_argument(
        "--e2e-commit-ms", type=float, help="spool.commit_interval_ms for the end-to-end run (default: 0)"
    )
    args = ap.parse_args()
    if not 0 <= args.e2e_seconds <= 120:
        ap.error("--e2e-seconds is bounded to 120")
    if not 0 < args.records <= 5_000_000 or not 0 <= args.drain_records <= 5_000_000:
        ap.error("--records and --drain-records are bounded to 5,000,000")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load()}")
    with tempfile.TemporaryDirectory(prefix="ngd-delivery-bench-") as tmp_name:
        tmp = Path(tmp_name)
        records = make_records(args.records, args.devices)
        await bench_append(tmp, records, args.producers)
        await bench_append_many(tmp, records, max(1, args.producers // 32), 32)
        if args.drain_records:
            await bench_drain(tmp, args.drain_records, args.devices, args.producers)
        if args.e2e_seconds:
            await asyncio.to_thread(bench_e2e, tmp, args.e2e_seconds, args.e2e_commit_ms)
    print(f"load average at the end {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
