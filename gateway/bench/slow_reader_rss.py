"""RSS of a real `nanogridata-gateway serve` under clients that replay one frame and never read.

Each client sends one valid frame and reads its ACK, then sends the same bytes over and over as
fast as the socket takes them, and never reads again: every replay is answered DUPLICATE, so the
ACKs pile up on the gateway's side unless it stops reading (write-buffer flow control). The rate
limit is off so the run is not throttled by it. Prints one JSON line: RSS before and at the end
(kB), the peak, how many of the clients the gateway closed and how many ACKs it sent.

    PYTHONPATH=src python bench/slow_reader_rss.py --clients 4 --seconds 8
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from serve_process import SECRET_HEX, free_port, serve_config, start_serve, stop

from nanogridata_gateway.codec import build_frame
from nanogridata_gateway.keys import derive_device_key


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def config(tmp: Path, data_port: int, http_port: int, server_extra: str = "") -> Path:
    """The gateway under test: rate limit off (one client replays as fast as it can)."""
    return serve_config(tmp, data_port, http_port, server_extra=f"rate_limit_per_s = 0\n{server_extra}")


def replay_forever(port: int, device: int, stop: threading.Event, closed: list[int]) -> None:
    key = derive_device_key(bytes.fromhex(SECRET_HEX), 0x10, device)
    frame = build_frame(key, 0x10, 0x01, device, 1, time.time_ns() // 1_000_000, b"\xa1\x61p\x01", 16)
    burst = frame * 64
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(30)
    sock.sendall(frame)
    sock.recv(4096)  # its ACK OK: stored, so from now on every replay is answered DUPLICATE
    sock.settimeout(0.5)
    try:
        while not stop.is_set():
            try:
                sock.send(burst)
            except TimeoutError:
                continue  # the gateway stopped reading: its window is full
            except OSError:
                closed.append(device)
                return
    finally:
        sock.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        data_port, http_port = free_port(), free_port()
        cfg = config(tmp, data_port, http_port)
        proc = start_serve(cfg, http_port)
        try:
            before = rss_kb(proc.pid)
            halt = threading.Event()
            closed: list[int] = []
            threads = [
                threading.Thread(target=replay_forever, args=(data_port, 100 + i, halt, closed))
                for i in range(args.clients)
            ]
            for t in threads:
                t.start()
            peak = before
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                peak = max(peak, rss_kb(proc.pid))
                time.sleep(0.2)
            after = rss_kb(proc.pid)
            halt.set()
            for t in threads:
                t.join()
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=60) as r:
                metrics = r.read().decode()
            acked = sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("nanogridata_frames_acked_total{")
            )
            print(
                json.dumps(
                    {
                        "clients": args.clients,
                        "seconds": args.seconds,
                        "rss_before_kb": before,
                        "rss_peak_kb": max(peak, after),
                        "rss_end_kb": after,
                        "clients_closed_by_gateway": len(closed),
                        "acks_sent": int(acked),
                    }
                )
            )
        finally:
            stop(proc, timeout_s=30)


if __name__ == "__main__":
    main()
