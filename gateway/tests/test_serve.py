"""`nanogridata-gateway serve` as a real process with the real delivery store: frames in, ACKs out,
records in the jsonl sink, SIGTERM drains and exits 0."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import cbor2
from serve_process import SECRET_HEX, free_port, serve_config, start_serve, stop

from nanogridata_gateway.codec import build_frame, verify_ack
from nanogridata_gateway.keys import derive_device_key
from nanogridata_gateway.protocol import AckStatus


def test_serve_acks_stores_and_drains_on_sigterm(tmp_path: Path) -> None:
    data_port, http_port = free_port(), free_port()
    out = tmp_path / "debug.jsonl"
    cfg = serve_config(tmp_path, data_port, http_port)
    proc = start_serve(cfg, http_port, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # Delivering only to a file, the gateway does not load the HTTP sinks' aiohttp (its
        # compiled parser would be mapped; ~8.5 MB resident with its dependencies).
        assert "/aiohttp/" not in Path(f"/proc/{proc.pid}/maps").read_text()
        key = derive_device_key(bytes.fromhex(SECRET_HEX), 0x10, 5)
        now = time.time_ns() // 1_000_000
        frames = b"".join(
            build_frame(key, 0x10, 1, 5, seq, now, cbor2.dumps({"p": seq}), 16) for seq in range(1, 11)
        )
        with socket.create_connection(("127.0.0.1", data_port), timeout=30) as sock:
            sock.sendall(frames)
            buf = b""
            while len(buf) < 10 * 42:
                chunk = sock.recv(4096)
                assert chunk, "connection closed before all ACKs"
                buf += chunk
        acks = [verify_ack(key, buf[i : i + 42]) for i in range(0, 420, 42)]
        assert {a.status for a in acks} == {AckStatus.OK} and sorted(a.seq for a in acks) == list(
            range(1, 11)
        )
        deadline = time.time() + 30  # the sink forwards from the spool asynchronously
        while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 10):
            time.sleep(0.1)
        assert stop(proc, timeout_s=60) == 0  # SIGTERM: drains and exits 0
    finally:
        stop(proc, signal.SIGKILL)
    logs = proc.stdout.read().decode() if proc.stdout else ""
    assert logs.count('"msg": "drain finished"') == 1, logs
    assert all(json.loads(line) for line in logs.splitlines() if line.startswith("{"))  # JSON logs
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["seq"] for r in records) == list(range(1, 11))
