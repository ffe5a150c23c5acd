"""Connection slots held by slow senders, against a real `nanogridata-gateway serve`.

`--slow` connections (as many as server.max_connections) each dribble the bytes of one frame,
one byte per second: every byte resets the idle timeout, so only a deadline for the frame itself
frees their slots. Reports, every second, how many slots they still hold, and then whether a
real device gets in and is answered. Prints one JSON line.

    PYTHONPATH=src python bench/slowloris_slots.py --slow 40 --seconds 35
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

from serve_process import SECRET_HEX, free_port, start_serve, stop
from slow_reader_rss import config

from nanogridata_gateway.codec import build_frame
from nanogridata_gateway.keys import derive_device_key


def frame(device: int) -> bytes:
    key = derive_device_key(bytes.fromhex(SECRET_HEX), 0x10, device)
    return build_frame(key, 0x10, 0x01, device, 1, time.time_ns() // 1_000_000, b"\xa1\x61p\x01", 16)


def dribble(port: int, device: int, stop: threading.Event, ended: list[int]) -> None:
    data = frame(device)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            for i in range(len(data) - 1):  # never the last byte
                if stop.wait(1.0):
                    return
                sock.sendall(data[i : i + 1])
    except OSError:
        ended.append(device)


def active(http_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/stats", timeout=30) as r:
        return int(json.loads(r.read())["connections_active"])


def real_device(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(frame(9999))
            return len(sock.recv(4096)) > 0
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slow", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=35.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        data_port, http_port = free_port(), free_port()
        cfg = config(tmp, data_port, http_port, f"max_connections = {args.slow}")
        proc = start_serve(cfg, http_port)
        halt = threading.Event()
        threads: list[threading.Thread] = []
        try:
            ended: list[int] = []
            threads = [
                threading.Thread(target=dribble, args=(data_port, 100 + i, halt, ended))
                for i in range(args.slow)
            ]
            for t in threads:
                t.start()
            start = time.monotonic()
            held: list[int] = []
            while time.monotonic() - start < args.seconds:
                time.sleep(1.0)
                held.append(active(http_port))
            print(
                json.dumps(
                    {
                        "slow_connections": args.slow,
                        "max_connections": args.slow,
                        "slots_held_each_second": held,
                        "slots_held_at_end": held[-1],
                        "real_device_answered": real_device(data_port),
                    }
                )
            )
        finally:
            halt.set()
            for t in threads:
                t.join()
            stop(proc, timeout_s=30)


if __name__ == "__main__":
    main()
