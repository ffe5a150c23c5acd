#!/usr/bin/env python3
"""The product benchmark: the deployed pipeline side by side with its floor and with Mosquitto.

In one run, one server after the other (each pinned to CPU 0 with `taskset`, the native load
generator gateway/bench/loadgen on CPU 1), every scenario against every server:

  echo           a uvloop echo server answering a 42-byte reply (an ACK's size) per 140-byte
                 frame: the floor for a Python server (syscalls and the event loop, no protocol)
  gateway        `nanogridata-gateway serve` as deployed: the durable SQLite spool (ACK OK only
                 once committed) and an influx_line sink to a real VictoriaMetrics on loopback
                 (-dedup.minScrapeInterval=1ms)
  gateway+jsonl  the same plus a jsonl sink (every record goes to both)
  mosquitto      Mosquitto 2.0 (Debian package), QoS 1, with a persistent QoS 1 subscriber
                 (mosquitto_sub -c); it acknowledges from memory (persistence on autosave), so it
                 is the bar a user compares with, not an equal durability guarantee

Scenarios (1,000 connections, 100-byte CBOR payloads, 16-byte tags; each cell gets a fresh server):
  closed-1   closed loop, 1 frame in flight per connection
  closed-8   closed loop, 8 in flight per connection
  open-10k   open loop, 10,000 frames/s in total, paced evenly over the connections
  open-2k    open loop, 2,000 frames/s
  idle-5k    5,000 idle connections held (RSS only)
  kill-10k   gateways only, a check rather than a figure: open loop 10,000 frames/s, the gateway
             killed with SIGKILL in the middle of the window and started again on its spool; once
             the spool has drained, every frame the load generator saw ACKed OK must be a point in
             VictoriaMetrics (device tag and timestamp). Prints acked / found / lost (0 expected)
             and the restart's time to /ready

Columns: conns = connections up in the cell; offered = frames in flight per connection (closed loop)
or the total rate (open loop); acked/s = ACKs (OK or DUPLICATE; PUBACK; echo reply) received inside
the measured window / its length; p50/p99/p99.9 = ACK latency in ms over every frame sent in the
window (closed loop: from the write of the frame; open loop: from its intended send time, so
queueing in the server shows instead of slowing the sender); srv µs/f = the server process' CPU
(utime+stime from /proc/PID/stat) over the window / the frames acked in it; srv core = that CPU /
the window; RSS = the server's VmRSS at the end of the window (idle-5k: with every connection up);
backlog = records in the gateway's spool at the end of the window (nanogridata_spool_records: what
the sinks had not delivered yet, work not in srv µs/f); down µs/f = CPU of the downstream process
per frame (VictoriaMetrics; the Mosquitto subscriber), not included in srv; lg core = the load
generator's own CPU (getrusage) / the window, to show it is not the bottleneck; errors = bad tags,
malformed or unexpected ACKs, BUSY, STALE, INVALID, unanswered after the drain, connection errors (0
expected).

Needs: Go (/usr/local/go/bin or PATH) to build the load generator; the Debian packages
victoria-metrics, mosquitto and mosquitto-clients (`source scripts/lib/common.sh && ensure_apt
victoria-metrics mosquitto mosquitto-clients`); a missing one skips its servers with a note.
Loopback only, every process bounded in time and stopped at the end.

    python3 gateway/bench/bench_pipeline.py [--duration 10] [--servers echo,gateway,...]
        [--scenarios closed-1,...] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from serve_process import cpu_seconds, free_port, loadavg, rss_mb, stop

HERE = Path(__file__).resolve().parent
LOADGEN_SRC = HERE / "loadgen"
PAYLOAD, TAG = 100, 16
FRAME, ACK = 24 + PAYLOAD + TAG, 24 + 2 + TAG
VM_BINARY = "/usr/bin/victoria-metrics"
MOSQUITTO = "/usr/sbin/mosquitto"
SERVERS = ("echo", "gateway", "gateway+jsonl", "mosquitto")
SCENARIOS = ("closed-1", "closed-8", "open-10k", "open-2k", "idle-5k", "kill-10k")
KILLED_METRIC = "nanogridata_0x10_p"  # influx_line: <prefix>_<model>_<field>; every payload has p
DRAIN_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Scale:
    duration: float
    conns: int
    rates: tuple[float, float]  # open-10k, open-2k
    idle: int
    drain: float


FULL = Scale(duration=10.0, conns=1000, rates=(10_000, 2_000), idle=5000, drain=10.0)
QUICK = Scale(duration=2.0, conns=20, rates=(1_000, 200), idle=100, drain=5.0)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def wait_until(
    what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not up within {timeout:.0f} s")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:
        return bool(response.status == 200)


class Pinning:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2

    def on(self, cpu: int, cmd: list[str]) -> list[str]:
        return ["taskset", "-c", str(cpu), *cmd] if self.enabled else cmd


def spawn(cmd: list[str], logfile: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(logfile, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)


def build_loadgen(out_dir: Path) -> Path:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise SystemExit("Go not found (PATH or /usr/local/go/bin): it builds gateway/bench/loadgen")
    binary = out_dir / "loadgen"
    log("building the load generator (go build; the first build downloads its modules)")
    subprocess.run([go, "build", "-o", str(binary), "."], cwd=LOADGEN_SRC, check=True)
    return binary


@dataclass
class Server:
    """A running server under test and its downstream process (collector, subscriber), if any."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    proto: str
    downstream: subprocess.Popen[bytes] | None = None
    metrics_url: str | None = None
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)
    restart: Callable[[], subprocess.Popen[bytes]] | None = None  # the same server, same state


class Bench:
    def __init__(
        self, work: Path, pin: Pinning, secret_hex: str, vm: subprocess.Popen[bytes] | None, vm_port: int
    ):
        self.work = work
        self.pin = pin
        self.secret_hex = secret_hex
        self.vm = vm
        self.vm_port = vm_port
        self.cell = 0
        self.secret_file = work / "secret.hex"  # for the load generator, not on its command line
        self.secret_file.touch(0o600)
        self.secret_file.write_text(secret_hex)

    @contextlib.contextmanager
    def server(self, name: str) -> Iterator[Server]:
        self.cell += 1
        cell = self.work / f"cell{self.cell}-{name.replace('+', '-')}"
        cell.mkdir()
        port = free_port()
        srv: Server
        if name == "echo":
            cmd = [sys.executable, str(HERE / "ingest_server.py"), "echo", "--port", str(port)]
            cmd += ["--frame", str(FRAME), "--answer", str(ACK)]
            proc = spawn(self.pin.on(0, cmd), cell / "server.log")
            srv = Server(name, port, proc, "echo")
            wait_until("echo server", lambda: port_open(port), proc)
        elif name.startswith("gateway"):
            srv = self._gateway(name, cell, port)
        else:
            srv = self._mosquitto(cell, port)
        try:
            yield srv
        finally:
            stop(srv.proc)
            for p in srv.extra:
                stop(p)

    def _gateway(self, name: str, cell: Path, port: int) -> Server:
        http_port = free_port()
        secrets = cell / "secrets.toml"
        secrets.write_text(f'[models."0x10"]\nmaster_secret = "{self.secret_hex}"\n')
        secrets.chmod(0o600)
        sinks = ["vm"]
        text = f"""
[server]
data_host = "127.0.0.1"
data_port = {port}
metrics_host = "127.0.0.1"
metrics_port = {http_port}
proxy_protocol = "off"
# the per-connection rate limit would cap a closed loop at 100 frames/s per connection
rate_limit_per_s = 0
# every simulated device connects from 127.0.0.1 (5,000 in the idle cell)
max_connections_per_source = 0
[state]
dir = "{cell / "state"}"
[log]
level = "warning"
[secrets]
file = "{secrets}"
[models."0x10"]
name = "esp32-pressure"
[spool]
path = "{cell / "spool" / "spool.db"}"
dead_letter_dir = "{cell / "dead-letters"}"
[sinks.vm]
type = "influx_line"
url = "http://127.0.0.1:{self.vm_port}/write"
"""
        if name == "gateway+jsonl":
            sinks.append("audit")
            text += f'[sinks.audit]\ntype = "jsonl"\npath = "{cell / "audit.jsonl"}"\n'
        routes = json.dumps(sinks)
        text += f'[routes]\nTELEMETRY = {routes}\nEVENT = {routes}\nCONFIG = {routes}\nCOMMAND = ["local"]\n'
        config = cell / "gateway.toml"
        config.write_text(text)
        cmd = [sys.executable, "-m", "nanogridata_gateway.cli", "serve", "-c", str(config)]
        url = f"http://127.0.0.1:{http_port}"

        def start() -> subprocess.Popen[bytes]:
            proc = spawn(self.pin.on(0, cmd), cell / "server.log")
            try:
                wait_until(f"{name} /ready", lambda: http_ok(f"{url}/ready"), proc)
            except RuntimeError as exc:
                stop(proc)
                raise RuntimeError(f"{exc}; log: {(cell / 'server.log').read_text()[-1500:]}") from exc
            return proc

        metrics_url = f"{url}/metrics"
        return Server(name, port, start(), "nanogridata", self.vm, metrics_url, restart=start)

    def _mosquitto(self, cell: Path, port: int) -> Server:
        (cell / "db").mkdir()
        conf = cell / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # Nagle would hold PUBACKs back; the gateway's and the echo's sockets run without it
            "set_tcp_nodelay true\n"
            "persistence true\n"
            f"persistence_location {cell / 'db'}/\n"
            # the subscriber's queue must not drop messages while it catches up
            "max_queued_messages 1000000\n"
            "user root\n"
            "log_dest stderr\n"
            "log_type error\n"
        )
        proc = spawn(self.pin.on(0, [MOSQUITTO, "-c", str(conf)]), cell / "server.log")
        wait_until("mosquitto", lambda: port_open(port), proc)
        sub_cmd = [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-q",
            "1",
            "-c",
            "-i",
            "ngd-bench-sub",
        ]
        sub_cmd += ["-t", "ngd/#"]
        with open(os.devnull, "wb") as devnull:
            sub = subprocess.Popen(self.pin.on(1, sub_cmd), stdout=devnull, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # the subscription is in place before the first publish
        if sub.poll() is not None:
            stop(proc)
            raise RuntimeError("mosquitto_sub exited at once")
        return Server("mosquitto", port, proc, "mqtt", downstream=sub, extra=[sub])


def loadgen_args(scenario: str, scale: Scale, proto: str, base: int) -> list[str]:
    args = ["-proto", proto, "-device-base", str(base), "-drain", str(scale.drain)]
    args += ["-payload", str(PAYLOAD), "-tag", str(TAG), "-echo-reply", str(ACK)]
    if scenario == "idle-5k":
        return [*args, "-mode", "idle", "-conns", str(scale.idle), "-duration", "3"]
    args += ["-conns", str(scale.conns), "-duration", str(scale.duration)]
    if scenario.startswith("closed-"):
        return [*args, "-mode", "closed", "-inflight", scenario.split("-")[1]]
    rate = scale.rates[0] if scenario == "open-10k" else scale.rates[1]
    return [*args, "-mode", "open", "-rate", str(rate)]


def spool_backlog(url: str | None) -> float | None:
    if url is None:
        return None
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("nanogridata_spool_records "):
                return float(line.split()[1])
    return None


def read_event(stream: IO[bytes]) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        raise RuntimeError("the load generator ended early")
    event: dict[str, Any] = json.loads(line)
    return event


def vm_timestamps(vm_port: int, metric: str, device_regex: str) -> dict[str, set[int]]:
    """{device: {timestamp ms}} of `metric` in VictoriaMetrics, after a flush of its buffers."""
    base = f"http://127.0.0.1:{vm_port}"
    urllib.request.urlopen(f"{base}/internal/force_flush", timeout=30).read()
    query = urllib.parse.urlencode({"match[]": f'{metric}{{device=~"{device_regex}"}}'})
    points: dict[str, set[int]] = {}
    with urllib.request.urlopen(f"{base}/api/v1/export?{query}", timeout=120) as response:
        for line in response:
            if line.strip():
                series = json.loads(line)
                points.setdefault(series["metric"]["device"], set()).update(series["timestamps"])
    return points


def kill_cell(bench: Bench, loadgen: Path, server: str, scale: Scale) -> dict[str, Any]:
    """kill-10k: SIGKILL in the middle of an open-loop 10,000/s window, a restart on the same
    spool, then every frame ACKed OK before the kill looked up in VictoriaMetrics."""
    prefix = bench.cell + 1  # this cell's number: its devices are <prefix>00001...
    base = prefix * 100_000 + 1
    acked_file = bench.work / f"acked{prefix}.json"
    with bench.server(server) as srv:
        assert srv.restart is not None and srv.metrics_url is not None
        cmd = [str(loadgen), "-addr", f"127.0.0.1:{srv.port}", "-secret-file", str(bench.secret_file)]
        cmd += loadgen_args("open-10k", scale, srv.proto, base)
        cmd += ["-drain", "1", "-acked-out", str(acked_file)]  # after the kill nothing more comes
        errlog = bench.work / f"loadgen{bench.cell}.err"
        with open(errlog, "wb") as err_out:
            gen = subprocess.Popen(bench.pin.on(1, cmd), stdout=subprocess.PIPE, stderr=err_out)
        assert gen.stdout is not None
        try:
            read_event(gen.stdout)
            time.sleep(scale.duration / 2)
            srv.proc.kill()
            srv.proc.wait()
            read_event(gen.stdout)
            out = gen.stdout.read()
            gen.wait(timeout=60)
        finally:
            stop(gen)
        report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        t0 = time.monotonic()
        srv.proc = srv.restart()
        ready_s = time.monotonic() - t0
        url = srv.metrics_url
        wait_until("the spool drained", lambda: spool_backlog(url) == 0, srv.proc, timeout=DRAIN_TIMEOUT_S)
        drained_s = time.monotonic() - t0
    acked: dict[str, list[int]] = json.loads(acked_file.read_text())
    found = vm_timestamps(bench.vm_port, KILLED_METRIC, f"{prefix}[0-9]{{5}}")
    total = sum(len(ts) for ts in acked.values())
    lost = sum(len(set(ts) - found.get(device, set())) for device, ts in acked.items())
    return {
        "server": server,
        "scenario": "kill-10k",
        "rate_per_s": scale.rates[0],
        "killed_after_s": scale.duration / 2,
        "acked_ok_before_kill": total,
        "found_in_collector": total - lost,
        "lost": lost,
        "restart_to_ready_s": round(ready_s, 2),
        "restart_to_spool_drained_s": round(drained_s, 2),
        "loadgen": report,
    }


def kill_line(cell: dict[str, Any]) -> str:
    return (
        f"{cell['server']} / kill-10k: SIGKILL after {cell['killed_after_s']:g} s of "
        f"{cell['rate_per_s']:,.0f} frames/s; "
        f"{cell['acked_ok_before_kill']:,} frames ACKed OK before it, {cell['found_in_collector']:,} of "
        f"them in VictoriaMetrics after the restart, lost {cell['lost']}; restart to /ready "
        f"{cell['restart_to_ready_s']} s, to an empty spool {cell['restart_to_spool_drained_s']} s"
    )


def run_cell(bench: Bench, loadgen: Path, server: str, scenario: str, scale: Scale) -> dict[str, Any]:
    base = (bench.cell + 1) * 100_000 + 1  # devices distinct across cells: no replay window or series overlap
    with bench.server(server) as srv:
        cmd = [str(loadgen), "-addr", f"127.0.0.1:{srv.port}", "-secret-file", str(bench.secret_file)]
        cmd += loadgen_args(scenario, scale, srv.proto, base)
        errlog = bench.work / f"loadgen{bench.cell}.err"
        with open(errlog, "wb") as err_out:
            gen = subprocess.Popen(bench.pin.on(1, cmd), stdout=subprocess.PIPE, stderr=err_out)
        assert gen.stdout is not None
        try:
            start = read_event(gen.stdout)
            t0 = time.monotonic()
            cpu0 = cpu_seconds(srv.proc.pid)
            down0 = cpu_seconds(srv.downstream.pid) if srv.downstream else 0.0
            if scenario == "idle-5k":
                time.sleep(1.5)  # every connection is up; let the server settle
                rss = rss_mb(srv.proc.pid)
                read_event(gen.stdout)
            else:
                read_event(gen.stdout)
                rss = rss_mb(srv.proc.pid)
            window = time.monotonic() - t0
            cpu = cpu_seconds(srv.proc.pid) - cpu0
            down = (cpu_seconds(srv.downstream.pid) - down0) if srv.downstream else None
            backlog = spool_backlog(srv.metrics_url)
            # read on through the buffered stream (the events above may have buffered the report);
            # the load generator ends by itself after its window and drain
            out = gen.stdout.read()
            gen.wait(timeout=60)
        finally:
            stop(gen)
        if not out.strip():
            raise RuntimeError(f"load generator failed: {errlog.read_text()[-1500:]}")
        report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    cell: dict[str, Any] = {
        "server": server,
        "scenario": scenario,
        "connections": start.get("connections"),
        "server_rss_mb": round(rss, 1),
        "server_cpu_s": round(cpu, 3),
        "window_s": round(window, 3),
        "server_core_share": round(cpu / window, 3) if window else None,
        "loadgen": report,
    }
    if scenario != "idle-5k":
        frames = report["acked_per_s"] * report["window_s"]
        cell["acked_per_s"] = round(report["acked_per_s"])
        cell["latency_ms"] = report["latency_ms"]
        cell["server_cpu_us_per_frame"] = round(cpu / frames * 1e6, 1) if frames else None
        cell["downstream_cpu_us_per_frame"] = (
            round(down / frames * 1e6, 1) if frames and down is not None else None
        )
        cell["spool_records_at_end"] = backlog
    return cell


def fmt(v: Any, spec: str = "") -> str:
    return "-" if v is None else format(v, spec)


def errors_of(cell: dict[str, Any]) -> str:
    rep = cell["loadgen"]
    errs = {k: v for k, v in rep.get("errors", {}).items() if v}
    status = rep.get("status", {})
    errs.update({k: status[k] for k in ("busy", "stale", "invalid") if status.get(k)})
    if rep.get("connect_failures"):
        errs["connect_failures"] = rep["connect_failures"]
    return ",".join(f"{k}={v}" for k, v in errs.items()) or "0"


def offered(report: dict[str, Any]) -> str:
    if report.get("mode") == "idle":
        return "idle"
    if "rate_target_per_s" in report:
        return f"{report['rate_target_per_s']:,.0f}/s"
    return f"{report.get('inflight_per_connection')} in flight"


def table(cells: list[dict[str, Any]]) -> str:
    head = [
        "scenario",
        "server",
        "conns",
        "offered",
        "acked/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "srv µs/f",
        "srv core",
    ]
    head += ["RSS MB", "backlog", "down µs/f", "lg core", "errors"]
    rows = [head]
    for c in cells:
        lat = c.get("latency_ms", {})
        rows.append(
            [
                c["scenario"],
                c["server"],
                fmt(c.get("connections")),
                offered(c["loadgen"]),
                fmt(c.get("acked_per_s"), ","),
                fmt(lat.get("p50")),
                fmt(lat.get("p99")),
                fmt(lat.get("p99.9")),
                fmt(c.get("server_cpu_us_per_frame")),
                fmt(c.get("server_core_share")),
                fmt(c["server_rss_mb"]),
                fmt(c.get("spool_records_at_end"), ",.0f"),
                fmt(c.get("downstream_cpu_us_per_frame")),
                fmt(c["loadgen"].get("loadgen_cpu_core_share"), ".2f"),
                errors_of(c),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def keygen() -> str:
    """A throw-away model master secret from the gateway's own `keygen`."""
    cmd = [sys.executable, "-m", "nanogridata_gateway.cli", "keygen"]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def start_vm(work: Path, pin: Pinning) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [
        VM_BINARY,
        f"-storageDataPath={work / 'vm'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-dedup.minScrapeInterval=1ms",
        "-retentionPeriod=100y",
        "-loggerLevel=ERROR",
    ]
    # The collector is downstream of the server under test: it runs beside the load generator.
    proc = spawn(pin.on(1, cmd), work / "victoria-metrics.log")
    wait_until("victoria-metrics", lambda: http_ok(f"http://127.0.0.1:{port}/health"), proc)
    return proc, port


def available(servers: list[str]) -> list[str]:
    keep = []
    for s in servers:
        missing = []
        if s.startswith("gateway") and not Path(VM_BINARY).exists():
            missing.append("victoria-metrics")
        if s == "mosquitto" and not Path(MOSQUITTO).exists():
            missing.append("mosquitto")
        if s == "mosquitto" and shutil.which("mosquitto_sub") is None:
            missing.append("mosquitto-clients")
        if missing:
            log(f"skipping {s}: Debian package(s) {', '.join(missing)} not installed (ensure_apt)")
        else:
            keep.append(s)
    return keep


def parse_list(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [v for v in value.split(",") if v]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise SystemExit(f"--{what}: unknown {', '.join(bad) or '(empty)'}; choose from {', '.join(allowed)}")
    return items


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, help="seconds per cell's measured window (default 10, max 120)")
    ap.add_argument("--servers", default=",".join(SERVERS), help=f"subset of {','.join(SERVERS)}")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"subset of {','.join(SCENARIOS)}")
    ap.add_argument("--quick", action="store_true", help="2 s cells, 20 connections, 1,000 and 200 frames/s")
    ap.add_argument("--no-pin", action="store_true", help="do not pin (server CPU 0, load generator CPU 1)")
    ap.add_argument("--loadgen", type=Path, help="a built load generator (default: go build it)")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args()
    scale = QUICK if args.quick else FULL
    if args.duration is not None:
        if not 0 < args.duration <= 120:
            raise SystemExit("--duration: more than 0, at most 120 seconds")
        scale = Scale(args.duration, scale.conns, scale.rates, scale.idle, scale.drain)
    servers = available(parse_list(args.servers, SERVERS, "servers"))
    scenarios = parse_list(args.scenarios, SCENARIOS, "scenarios")
    pin = Pinning(not args.no_pin)
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "pinned": pin.enabled,
        "scale": scale.__dict__,
        "loadavg_start": loadavg(),
    }
    cells: list[dict[str, Any]] = []
    kills: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ngd-bench-") as tmp:
        work = Path(tmp)
        loadgen = args.loadgen or build_loadgen(work)
        vm, vm_port = (None, 0)
        if any(s.startswith("gateway") for s in servers):
            vm, vm_port = start_vm(work, pin)
        try:
            bench = Bench(work, pin, keygen(), vm, vm_port)
            for server in servers:
                for scenario in scenarios:
                    if scenario == "kill-10k" and not server.startswith("gateway"):
                        continue
                    log(f"{server} / {scenario} [load {loadavg()}]")
                    try:
                        if scenario == "kill-10k":
                            kills.append(kill_cell(bench, loadgen, server, scale))
                            log(f"  {kill_line(kills[-1])}")
                        else:
                            cells.append(run_cell(bench, loadgen, server, scenario, scale))
                    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
                        log(f"  failed: {exc}")
                        results.setdefault("failed", []).append(f"{server}/{scenario}: {exc}")
        finally:
            stop(vm, signal.SIGINT)
    results["loadavg_end"] = loadavg()
    results["cells"] = cells
    results["kills"] = kills
    pinned = "server on CPU 0, load generator on CPU 1" if pin.enabled else "not pinned"
    print(
        f"{os.cpu_count()} CPUs, {pinned}; "
        f"load average {results['loadavg_start']} at the start, {results['loadavg_end']} at the end"
    )
    if cells:
        print(table(cells))
    for kill in kills:
        print(kill_line(kill))
    if any(kill["lost"] for kill in kills):
        results.setdefault("failed", []).append("acknowledged frames lost after a kill -9 (above)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if results.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
