#!/usr/bin/env python3
"""Ingest benchmarks (issue "gateway core"): prints the figures, does not judge them.

  (a) a plain uvloop echo server answering 16 bytes per 110-byte frame (the ceiling for Python)
  (b) the gateway, 1,000 connections, 100-byte CBOR payloads, 16-byte tags, closed loop
  (c) the gateway at a steady 10,000 frames/s: ACK latency percentiles and gateway CPU per frame,
      first with the product's durable store (the SQLite spool, group commit, ACK OK only after
      the fsync; no sink reads it back: delivery_bench.py measures forwarding), then with an
      in-memory Store, then the echo server of (a) at the same rate (the floor: syscalls and the
      event loop, no protocol work). Latency is the simulator's (frame written -> ACK parsed)
      and the gateway's own histogram (frame read -> ACK written)
  (d) the gateway's RSS with 5,000 idle device connections

With --pin the server under test runs on CPU 0 and the simulator on CPU 1 (2-core machine). (b) and
(d) use an in-memory Store (delivery_bench.py measures the spool's throughput); every run uses the
real verifier, replay window (persisted), metrics and ACK path. The simulator paces open-loop
traffic every millisecond and measures from the write of a frame to the parsed ACK. Everything is
bounded in time and runs on loopback only. Other jobs share the CPU: the load average is printed
with the figures (CPU per frame moves less with the load than frames/s and latency do).

    python3 gateway/bench/bench_ingest.py [--duration 10] [--only a,b,c,d] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from serve_process import SECRET_HEX, cpu_seconds, loadavg, rss_mb, stop

HERE = Path(__file__).resolve().parent
ECHO_PORT, GW_PORT, GW_HTTP = 25801, 25802, 25803
# --pin: server on CPU 0, simulator on CPU 1. Off by default: on a machine shared with other jobs
# a pinned process waits for its one core while the other may be idle (measured: p50 300 ms
# pinned vs 1 ms unpinned at 2,000 frames/s under load 8).
PIN = False


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not come up")


def start(args: list[str], cpu: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if PIN:
        with contextlib.suppress(OSError):  # best effort
            os.sched_setaffinity(proc.pid, {cpu})
    return proc


def run_sim(extra: list[str], port: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "nanogridata_gateway.sim", "--port", str(port), "--secret-hex", SECRET_HEX]
    cmd += ["--state-file", "", "--ack-timeout", "60", "--json", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if PIN:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, {1})
    out, err = proc.communicate(timeout=timeout)
    if not out.strip():
        raise SystemExit(f"simulator failed: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    result["exit_code"] = proc.returncode
    return result


def gateway_cmd(state: Path, store: str = "memory") -> list[str]:
    server = [sys.executable, str(HERE / "ingest_server.py"), "gateway", "--port", str(GW_PORT)]
    server += ["--store", store]
    return [*server, "--http-port", str(GW_HTTP), "--state", str(state), "--secret-hex", SECRET_HEX]


def steady_sim(duration: float, rate: int, profile: str) -> list[str]:
    return [
        "--devices",
        "1000",
        "--rate",
        str(rate),
        "--window",
        "64",
        "--duration",
        str(duration),
        "--profile",
        profile,
        "--drain",
        "10",
    ]


def gateway_ack_latency_ms() -> dict[str, float | None]:
    """p50/p99 of the gateway's own ACK-latency histogram (frame read -> ACK written, durable
    store included), as bucket upper bounds: the gateway's share of the latency, without the
    simulator's scheduling delays (which dominate on a loaded machine)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{GW_HTTP}/metrics", timeout=5) as response:
        text = response.read().decode()
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith("nanogridata_ack_latency_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0.0

    def quantile(q: float) -> float | None:
        for bound, count in buckets:
            if total and count >= q * total:
                return bound * 1000
        return None

    return {"p50_le": quantile(0.5), "p99_le": quantile(0.99)}


def measured(
    server: list[str], port: int, sim_args: list[str], timeout: float, scrape: bool = False
) -> tuple[dict[str, Any], float]:
    """Run the simulator against a pinned server; the report and the server's CPU seconds.
    With `scrape`, the report also gets the gateway's own ACK-latency quantiles."""
    proc = start(server, 0)
    try:
        wait_port(port)
        time.sleep(0.5)
        if proc.poll() is not None:  # e.g. the port was taken by another process
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-1000:] if proc.stderr else ''}")
        cpu0 = cpu_seconds(proc.pid)
        report = run_sim(sim_args, port, timeout)
        cpu = cpu_seconds(proc.pid) - cpu0
        if scrape:
            report["gateway_ack_latency_ms"] = gateway_ack_latency_ms()
    finally:
        stop(proc)
    return report, cpu


def closed_loop(duration: float, profile: str) -> list[str]:
    return [
        "--devices",
        "1000",
        "--rate",
        "0",
        "--window",
        "8",
        "--duration",
        str(duration),
        "--profile",
        profile,
    ]


def bench_echo(duration: float) -> dict[str, Any]:
    server = [sys.executable, str(HERE / "ingest_server.py"), "echo", "--port", str(ECHO_PORT)]
    sim = [*closed_loop(duration, "bytes:70"), "--raw-ack-size", "16", "--drain", "5"]
    r, cpu = measured(server, ECHO_PORT, sim, duration + 60)
    acked = max(r["acked"], 1)
    return {
        "frames_per_s": r["throughput_send_phase_per_s"],
        "acked": r["acked"],
        "server_cpu_us_per_frame": round(cpu / acked * 1e6, 2),
        "sim": r,
    }


def bench_gateway_max(duration: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        sim = [*closed_loop(duration, "bytes:100"), "--drain", "10"]
        r, cpu = measured(gateway_cmd(Path(tmp)), GW_PORT, sim, duration + 60)
    acked = max(r["acked"], 1)
    return {
        "frames_per_s": r["throughput_send_phase_per_s"],
        "acked": r["acked"],
        "lost": r["lost"],
        "gateway_cpu_us_per_frame": round(cpu / acked * 1e6, 2),
        "sim": r,
    }


def bench_latency(duration: float, rate: int, store: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        sim = steady_sim(duration, rate, "bytes:100")
        r, cpu = measured(gateway_cmd(Path(tmp), store), GW_PORT, sim, duration + 60, scrape=True)
    acked = max(r["acked"], 1)
    return {
        "store": store,
        "rate": rate,
        "acked": r["acked"],
        "lost": r["lost"],
        "latency_ms": r["latency_ms"],
        "gateway_ack_latency_ms": r["gateway_ack_latency_ms"],
        "achieved_per_s": r["throughput_send_phase_per_s"],
        "gateway_cpu_us_per_frame": round(cpu / acked * 1e6, 2),
        "sim": r,
    }


def bench_echo_steady(duration: float, rate: int) -> dict[str, Any]:
    server = [sys.executable, str(HERE / "ingest_server.py"), "echo", "--port", str(ECHO_PORT)]
    sim = [*steady_sim(duration, rate, "bytes:70"), "--raw-ack-size", "16"]
    r, cpu = measured(server, ECHO_PORT, sim, duration + 60)
    return {
        "rate": rate,
        "latency_ms": r["latency_ms"],
        "achieved_per_s": r["throughput_send_phase_per_s"],
        "server_cpu_us_per_frame": round(cpu / max(r["acked"], 1) * 1e6, 2),
        "sim": r,
    }


async def _idle_clients(count: int, port: int) -> list[Any]:
    conns = []
    sem = asyncio.Semaphore(200)

    async def one() -> None:
        async with sem:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            conns.append(writer)

    await asyncio.gather(*(one() for _ in range(count)))
    return conns


def bench_idle_rss(count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        proc = start(gateway_cmd(Path(tmp)), 0)
        try:
            wait_port(GW_PORT)
            time.sleep(0.5)
            if proc.poll() is not None:
                raise SystemExit("gateway exited (port taken?)")
            before = rss_mb(proc.pid)

            async def hold() -> float:
                conns = await _idle_clients(count, GW_PORT)
                await asyncio.sleep(2)
                rss = rss_mb(proc.pid)
                for w in conns:
                    w.close()
                return rss

            during = asyncio.run(hold())
        finally:
            stop(proc)
    return {
        "connections": count,
        "rss_mb_before": round(before, 1),
        "rss_mb_with_connections": round(during, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per throughput run (max 120)")
    ap.add_argument("--rate", type=int, default=10_000, help="steady rate for the latency run")
    ap.add_argument("--idle", type=int, default=5_000, help="idle connections for the RSS run")
    ap.add_argument("--only", default="a,b,c,d")
    ap.add_argument("--pin", action="store_true", help="pin the server to CPU 0 and the simulator to CPU 1")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    duration = min(args.duration, 120.0)
    global PIN
    PIN = args.pin
    parts = set(args.only.split(","))
    results: dict[str, Any] = {"cpus": os.cpu_count(), "pinned": PIN, "loadavg_start": loadavg()}
    if "a" in parts:
        a = results["a_echo"] = bench_echo(duration)
        print(
            f"(a) uvloop echo baseline: {a['frames_per_s']:.0f} frames/s, server CPU "
            f"{a['server_cpu_us_per_frame']} µs/frame  [load {loadavg()}]"
        )
    if "b" in parts:
        b = results["b_gateway"] = bench_gateway_max(duration)
        per_core = 1e6 / max(b["gateway_cpu_us_per_frame"], 0.01)
        print(
            f"(b) gateway, 1000 conns, 100-byte payloads: {b['frames_per_s']:.0f} frames/s acked "
            f"(lost {b['lost']}); gateway CPU {b['gateway_cpu_us_per_frame']} µs/frame "
            f"(= {per_core:.0f} frames/s on a fully available core)  [load {loadavg()}]"
        )
        if "a_echo" in results:
            a = results["a_echo"]
            ratio = b["frames_per_s"] / max(a["frames_per_s"], 1)
            cpu_ratio = a["server_cpu_us_per_frame"] / max(b["gateway_cpu_us_per_frame"], 0.01)
            results["ratio_b_to_a"] = round(ratio, 3)
            results["cpu_ratio_b_to_a"] = round(cpu_ratio, 3)
            print(f"    (b)/(a): throughput {ratio:.2f}, CPU-per-frame ratio {cpu_ratio:.2f}")
    if "c" in parts:
        for store, label in (("spool", "durable spool"), ("memory", "in-memory Store")):
            c = results[f"c_latency_{store}"] = bench_latency(duration, args.rate, store)
            lat = c["latency_ms"]
            own = c["gateway_ack_latency_ms"]
            print(
                f"(c) steady {args.rate}/s, {label} (achieved {c['achieved_per_s']:.0f}/s): "
                f"p50 {lat['p50']} ms, p99 {lat['p99']} ms (gateway's own read->ACK: p50 <= "
                f"{own['p50_le']} ms, p99 <= {own['p99_le']} ms); gateway CPU "
                f"{c['gateway_cpu_us_per_frame']} µs/frame (lost {c['lost']})  [load {loadavg()}]"
            )
        e = results["c_echo_steady"] = bench_echo_steady(duration, args.rate)
        lat = e["latency_ms"]
        print(
            f"    floor: uvloop echo at {args.rate}/s: p50 {lat['p50']} ms, p99 {lat['p99']} ms; "
            f"server CPU {e['server_cpu_us_per_frame']} µs/frame  [load {loadavg()}]"
        )
    if "d" in parts:
        d = results["d_idle"] = bench_idle_rss(args.idle)
        print(
            f"(d) RSS with {d['connections']} idle connections: {d['rss_mb_with_connections']} MB "
            f"(idle gateway {d['rss_mb_before']} MB)  [load {loadavg()}]"
        )
    results["loadavg_end"] = loadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
