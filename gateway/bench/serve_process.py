"""A `nanogridata-gateway serve` process on loopback, for the benchmarks and the tests that need
the real process: free ports, its config (model 0x10, the durable spool, one jsonl sink), its
start up to a 200 on /ready, its stop, and what the benchmarks read of a process (CPU time, RSS,
load)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

# A throw-away secret as `nanogridata-gateway keygen` makes them (the loader refuses patterns).
SECRET_HEX = "c85e1b3a9f20d74e6b1c8a05f3d9e27b4a6c0f18e5b2d93a7c4f061e8b3d5a92"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_config(
    tmp: Path,
    data_port: int,
    http_port: int,
    *,
    state: Path | None = None,
    spool: Path | None = None,
    sink: str = "debug",
    server_extra: str = "",
) -> Path:
    """The config of a gateway on loopback: model 0x10 (its secret from the environment), the
    durable spool, one jsonl sink `sink` writing `<tmp>/<sink>.jsonl`."""
    cfg = tmp / f"gateway-{data_port}.toml"
    cfg.write_text(f"""
[server]
data_host = "127.0.0.1"
data_port = {data_port}
metrics_host = "127.0.0.1"
metrics_port = {http_port}
{server_extra}
[state]
dir = "{state or tmp / "state"}"
[models."0x10"]
[spool]
path = "{spool or tmp / "spool.db"}"
dead_letter_dir = "{tmp / "dead"}"
[sinks.{sink}]
type = "jsonl"
path = "{tmp / f"{sink}.jsonl"}"
[routes]
TELEMETRY = ["{sink}"]
EVENT = ["{sink}"]
CONFIG = ["{sink}"]
COMMAND = ["local"]
""")
    return cfg


def start_serve(
    cfg: Path, http_port: int, secret_hex: str = SECRET_HEX, timeout_s: float = 60.0, **popen: Any
) -> subprocess.Popen[bytes]:
    """Start `serve -c cfg` and return once /ready answers 200. The deadline is generous: tests
    run it starved beside a lab deploy. Raises RuntimeError (with the output, when captured) if
    the process exits or never gets ready; the process is killed then."""
    env = dict(os.environ, NANOGRIDATA_SECRET_MODEL_10=secret_hex)
    argv = [sys.executable, "-m", "nanogridata_gateway.cli", "serve", "-c", str(cfg)]
    proc = subprocess.Popen(argv, env=env, **popen)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/ready", timeout=1) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"the gateway did not become ready (exit {proc.poll()}): {output}")
        time.sleep(0.1)


def stop(
    proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout_s: float = 20.0
) -> int | None:
    """Stop a process with `sig` (SIGINT makes VictoriaMetrics flush) and return its exit code,
    killing it if it has not exited within `timeout_s` (the code is then -9). A process that has
    already exited is left as it is."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (utime + stime of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
