"""Real parts for the delivery tests: a VictoriaMetrics process, an HTTP collector on loopback,
record factories and config builders.

VictoriaMetrics tests are marked `integration` (the unit hook deselects them). Without the
`victoria-metrics` binary they are skipped, unless NGD_REQUIRE_VM=1 (set by ci/integration.sh),
which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cbor2
import pytest
from prometheus_client import CollectorRegistry
from serve_process import free_port, stop

from nanogridata_gateway.records import Record

VM_BINARY = os.environ.get("NGD_VICTORIA_METRICS", "/usr/bin/victoria-metrics")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs real services (VictoriaMetrics); slower; ci/integration.sh"
    )


def make_record(
    seq: int,
    device_id: int = 1,
    model_id: int = 0x10,
    frame_type: int = 0x01,
    timestamp_ms: int | None = None,
    payload: dict[str, Any] | None = None,
) -> Record:
    now = int(time.time() * 1000)
    body = payload if payload is not None else {"pressure": 1000.0 + seq % 97, "ok": True}
    return Record(
        model_id=model_id,
        frame_type=frame_type,
        device_id=device_id,
        seq=seq,
        # Distinct per (device, seq): VictoriaMetrics' dedup collapses equal timestamps.
        timestamp_ms=timestamp_ms if timestamp_ms is not None else now - 3_600_000 + seq,
        received_ms=now,
        payload=cbor2.dumps(body),
    )


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float, what: str, step: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(step)


def delivery_raw(tmp: Path, sinks: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Raw config: every payload type routed to all given sinks (COMMAND to `local`)."""
    names = list(sinks)
    raw: dict[str, Any] = {
        "spool": {"path": str(tmp / "spool" / "spool.db"), "dead_letter_dir": str(tmp / "dead")},
        "sinks": sinks,
        "routes": {"TELEMETRY": names, "EVENT": names, "CONFIG": names, "COMMAND": ["local"]},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


# --- HTTP collector (a real server on loopback) ---------------------------------------------


class Collector:
    """JSON collector: answers `status` (200 by default); records whose deviceId is in
    `poison_devices` make the request fail with 400 (the sink must isolate them). With `redirect`
    set it answers that 3xx to every POST, pointing at a URL whose GET answers 200 (what a
    moved collector behind a load balancer does); `gets` counts those GETs. `mode = "hang"` reads
    each POST and never answers (until the mode changes or the collector closes); `mode = "reset"`
    reads it and resets the connection (TCP RST). A body that is not JSON (influx_line) is kept as
    text lines in `lines`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/telemetry/ingest"
        self.status = 200
        self.delay_s = 0.0
        self.poison_devices: set[int] = set()
        self.redirect: int | None = None
        self._mode: str | None = None
        self._unhang = threading.Event()
        self.gets = 0
        self.records: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.requests = 0
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                with collector._lock:
                    collector.gets += 1
                self._answer(200, b"ok")

            def _answer(self, status: int, payload: bytes, location: str | None = None) -> None:
                if status in (204, 304):
                    payload = b""  # these answers have no body
                self.send_response(status)
                if location is not None:
                    self.send_header("Location", location)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with collector._lock:
                    collector.requests += 1
                    collector.headers.append(dict(self.headers.items()))
                mode = collector._mode
                if mode == "hang":
                    collector._unhang.wait(120)
                    self.close_connection = True  # the client gave up long ago: no answer at all
                    return
                if mode == "reset":
                    # SO_LINGER 0: close() sends RST instead of FIN
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if collector.redirect is not None:
                    self._answer(collector.redirect, b"moved", f"http://127.0.0.1:{collector.port}/moved")
                    return
                if collector.delay_s:
                    time.sleep(collector.delay_s)
                status = collector.status
                if not self.headers.get("Content-Type", "").startswith("application/json"):
                    # influx_line: one line per record, kept as text
                    if 200 <= status < 300:
                        with collector._lock:
                            collector.lines.extend(body.decode().splitlines())
                    self._answer(status, b"ok")
                    return
                records = json.loads(body) if 200 <= status < 300 else []
                if any(r["deviceId"] in collector.poison_devices for r in records):
                    status = 400
                if 200 <= status < 300:
                    with collector._lock:
                        collector.records.extend(records)
                self._answer(status, b"bad record" if status == 400 else b"ok")

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def mode(self) -> str | None:
        return self._mode

    @mode.setter
    def mode(self, mode: str | None) -> None:
        """None (answer normally), "hang" or "reset"; leaving "hang" releases the hung requests."""
        if mode not in (None, "hang", "reset"):
            raise ValueError(f"unknown collector mode {mode!r}")
        if mode == "hang":
            self._unhang.clear()
        else:
            self._unhang.set()
        self._mode = mode

    def keys(self) -> list[str]:
        with self._lock:
            return [r["idempotencyKey"] for r in self.records]

    def close(self) -> None:
        self._unhang.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    yield server
    server.close()


# --- VictoriaMetrics --------------------------------------------------------------------


class VictoriaMetrics:
    """A real victoria-metrics process on loopback with a temporary storage directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.write_url = f"{self.base}/write"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / "victoria-metrics.log"

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [
                VM_BINARY,
                f"-storageDataPath={self.data_dir}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-dedup.minScrapeInterval=1ms",
                "-retentionPeriod=100y",
                "-search.disableCache",
                "-loggerLevel=ERROR",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("victoria-metrics did not become healthy within 30 s")

    def stop(self) -> None:
        stop(self.proc, signal.SIGINT)  # graceful: flushes in-memory parts to disk
        self.proc = None

    def _get(self, path: str, params: dict[str, str]) -> bytes:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as response:
            data: bytes = response.read()
            return data

    def flush(self) -> None:
        """Make just-ingested samples searchable now."""
        self._get("/internal/force_flush", {})

    def export(self, match: str) -> list[dict[str, Any]]:
        self.flush()
        lines = self._get("/api/v1/export", {"match[]": match}).splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def count_samples(self, match: str) -> int:
        return sum(len(series["values"]) for series in self.export(match))


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    if not shutil.which(VM_BINARY):
        if os.environ.get("NGD_REQUIRE_VM") == "1":
            pytest.fail(f"{VM_BINARY} missing (Debian package victoria-metrics)")
        pytest.skip(f"{VM_BINARY} missing (apt-get install victoria-metrics)")
    vm = VictoriaMetrics(tmp_path / "vm-data")
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()
