"""`nanogridata-gateway serve` with its state directory on a really full disk: a 256 KiB tmpfs in
a private mount namespace (`unshare --user --mount`, no privileges needed), the spool elsewhere.

The frame the spool stored is ACKed OK while the replay journal cannot be written, its
retransmission gets DUPLICATE, /ready says 503 until the disk frees, SIGTERM exits 0, and after a
restart the frame is still a duplicate (not stored a second time).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import cbor2
import pytest
from serve_process import free_port, serve_config, stop

from nanogridata_gateway.codec import Ack, build_frame, verify_ack
from nanogridata_gateway.keys import derive_device_key
from nanogridata_gateway.protocol import AckStatus

SECRET_HEX = "9d41c2e07a5b3f68e1d02c94b7a6f35e08c1d7b24f9ea36150d8c7b2e4fa0913"
KEY = derive_device_key(bytes.fromhex(SECRET_HEX), 0x10, 5)
ENV = dict(os.environ, NANOGRIDATA_SECRET_MODEL_10=SECRET_HEX)
# Inside the namespace: mount the tmpfs on the state directory, run the gateway, keep its state
# (the tmpfs disappears with the namespace) and pass its exit code on.
NAMESPACE = ("unshare", "--user", "--map-root-user", "--mount")
NAMESPACE_SCRIPT = (
    'mount -t tmpfs -o size=256k tmpfs "$1" || exit 97; '
    '"$2" -m nanogridata_gateway.cli serve -c "$3"; rc=$?; cp -a "$1"/. "$4"/; exit $rc'
)


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        [*NAMESPACE, "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout  # generous: CI runs this starved beside the lab deploy
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def send(port: int, seq: int) -> Ack:
    frame = build_frame(KEY, 0x10, 1, 5, seq, time.time_ns() // 1_000_000, cbor2.dumps({"p": seq}), 16)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(frame)
        buf = b""
        while len(buf) < 42:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed without an ACK for seq {seq}"
            buf += chunk
    return verify_ack(KEY, buf[:42])


def write_config(tmp: Path, state: Path, data_port: int, http_port: int) -> Path:
    return serve_config(tmp, data_port, http_port, state=state, server_extra="idle_timeout_s = 30")


def fill(directory: Path) -> Path:
    """Write a file until the file system is full."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


@pytest.mark.skipif(not _unshare_works(), reason="unprivileged user + mount namespaces are not available")
def test_serve_with_a_full_state_disk_acks_honestly_and_recovers(tmp_path: Path) -> None:
    state, kept = tmp_path / "state", tmp_path / "state-kept"
    state.mkdir()
    kept.mkdir()
    data_port, http_port = free_port(), free_port()
    cfg = write_config(tmp_path, state, data_port, http_port)
    proc = subprocess.Popen(
        [*NAMESPACE, "sh", "-c", NAMESPACE_SCRIPT, "sh", str(state), sys.executable, str(cfg), str(kept)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=ENV,
    )
    try:
        wait(lambda: http(http_port, "/ready")[0] == 200 or proc.poll() is not None, "never ready")
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        inside = Path(f"/proc/{proc.pid}/root") / state.relative_to("/")  # the namespace's tmpfs
        filler = fill(inside)

        ack = send(data_port, 1)
        assert (ack.seq, ack.status) == (1, AckStatus.OK)  # stored in the spool: ACKed
        wait(lambda: http(http_port, "/ready")[0] == 503, "/ready stayed 200 with a full disk")
        _, metrics = http(http_port, "/metrics")
        assert "nanogridata_replay_journal_writable 0.0" in metrics
        ack = send(data_port, 1)  # the retransmission
        assert (ack.seq, ack.status) == (1, AckStatus.DUPLICATE)

        filler.unlink()  # the disk frees
        wait(lambda: http(http_port, "/ready")[0] == 200, "/ready never recovered")
        ack = send(data_port, 2)
        assert (ack.seq, ack.status) == (2, AckStatus.OK)
        _, stats = http(http_port, "/stats")
        assert json.loads(stats)["unhealthy_tasks"] == []
        gateway = int((Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split() or ["0"])[0])
        assert gateway > 0
        os.kill(gateway, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        stop(proc, signal.SIGKILL)
    logs = proc.stdout.read().decode() if proc.stdout else ""
    assert "replay journal write failed" in logs and "replay journal writable again" in logs, logs
    assert "Traceback" not in logs, logs

    # Restart on the state the first process left: the frame is still known.
    data_port, http_port = free_port(), free_port()
    cfg = write_config(tmp_path, kept, data_port, http_port)
    again = subprocess.Popen(
        [sys.executable, "-m", "nanogridata_gateway.cli", "serve", "-c", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    try:
        wait(lambda: http(http_port, "/ready")[0] == 200, "restarted gateway never ready")
        assert send(data_port, 1).status == AckStatus.DUPLICATE
        assert send(data_port, 2).status == AckStatus.DUPLICATE
        out = tmp_path / "debug.jsonl"
        wait(lambda: out.exists() and len(out.read_text().splitlines()) >= 2, "records not delivered")
        assert stop(again, timeout_s=60) == 0
    finally:
        stop(again, signal.SIGKILL)
    records = [json.loads(line) for line in (tmp_path / "debug.jsonl").read_text().splitlines()]
    assert sorted(r["seq"] for r in records) == [1, 2]  # each stored once
