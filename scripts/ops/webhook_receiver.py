#!/usr/bin/env python3
"""A webhook receiver that records what arrived: stands for the pager, the dead man's switch and
the chat where no real one may be called (the production rehearsal, tests).

    scripts/ops/webhook_receiver.py serve --listen ADDR:PORT --record FILE
    scripts/ops/webhook_receiver.py wait --record FILE --path /pager --status firing \\
        --label alertname=NodeDown [--label KEY=VALUE ...] [--timeout 600]

serve: an HTTP server on ADDR:PORT (PORT 0: any free port). Every POST is answered 200 `ok`
(text/plain: what Alertmanager's webhook and Slack integrations both accept) and appended to FILE
as one JSON line: {"time": unix seconds, "path": "/pager", "body": <the JSON body, or null>,
"text": <the body when it is not JSON>}. Other methods get 405; bodies over 1 MiB get 413. Once
listening it prints one JSON line {"url": "http://ADDR:PORT"} on stdout. SIGTERM/SIGINT stop it.

wait: polls FILE until a POST to --path carries an Alertmanager notification (webhook payload:
{"receiver", "status", "alerts": [{"status", "labels", "annotations", ...}]}) with an alert of
--status whose labels include every --label; prints {"receiver": ..., "alert": ...} as JSON and
exits 0. Exit 1 when none arrived within --timeout seconds. Exit 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

MAX_BODY = 1 << 20
POLL_S = 1.0


class Recorder:
    """Appends one JSON line per request to a file; one writer at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def record(self, path: str, raw: bytes) -> None:
        entry: dict[str, Any] = {"time": round(time.time(), 3), "path": path, "body": None}
        text = raw.decode("utf-8", errors="replace")
        try:
            entry["body"] = json.loads(text)
        except ValueError:
            entry["text"] = text
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line)


def make_handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ngd-webhook-receiver"

        def _answer(self, code: int, text: str) -> None:
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                self._answer(400, "bad Content-Length")
                return
            if length < 0 or length > MAX_BODY:
                self._answer(413, f"body over {MAX_BODY} bytes")
                return
            recorder.record(self.path, self.rfile.read(length))
            self._answer(200, "ok")

        def _refuse(self) -> None:
            self._answer(405, "POST only")

        do_GET = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            print(f"webhook_receiver: {self.address_string()} {format % args}", file=sys.stderr, flush=True)

    return Handler


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"'{value}' is not ADDR:PORT (PORT 0..65535)")
    return host, int(port)


def parse_label(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"'{value}' is not KEY=VALUE")
    return key, val


def serve(listen: tuple[str, int], record: Path) -> int:
    recorder = Recorder(record)
    try:
        server = ThreadingHTTPServer(listen, make_handler(recorder))
    except OSError as exc:
        print(f"webhook_receiver: cannot listen on {listen[0]}:{listen[1]}: {exc}", file=sys.stderr)
        return 1
    server.daemon_threads = True

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"url": f"http://{listen[0]}:{server.server_port}"}), flush=True)
    with server:
        server.serve_forever(poll_interval=0.5)
    return 0


def find_alert(record: Path, path: str, status: str, labels: dict[str, str]) -> dict[str, Any] | None:
    """The first alert of a notification POSTed to path with this status and these labels."""
    try:
        lines = record.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line being written
        body = entry.get("body")
        if entry.get("path") != path or not isinstance(body, dict):
            continue
        for alert in body.get("alerts") or []:
            if not isinstance(alert, dict) or alert.get("status") != status:
                continue
            have = alert.get("labels") or {}
            if all(have.get(k) == v for k, v in labels.items()):
                return {"receiver": body.get("receiver"), "time": entry.get("time"), "alert": alert}
    return None


def wait(record: Path, path: str, status: str, labels: dict[str, str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        found = find_alert(record, path, status, labels)
        if found is not None:
            print(json.dumps(found, sort_keys=True))
            return 0
        if time.monotonic() >= deadline:
            want = ", ".join(f"{k}={v}" for k, v in labels.items())
            print(
                f"webhook_receiver: no {status} alert ({want}) POSTed to {path} within {timeout:g} s",
                file=sys.stderr,
            )
            return 1
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="record every POST")
    s.add_argument("--listen", type=parse_listen, required=True, help="ADDR:PORT (PORT 0: any free port)")
    s.add_argument("--record", type=Path, required=True, help="JSON lines file to append to")
    w = sub.add_parser("wait", help="wait for an alert notification in a record")
    w.add_argument("--record", type=Path, required=True)
    w.add_argument("--path", required=True, help="the URL path it was POSTed to, e.g. /pager")
    w.add_argument("--status", choices=("firing", "resolved"), default="firing")
    w.add_argument("--label", type=parse_label, action="append", default=[], help="KEY=VALUE (repeatable)")
    w.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
    args = ap.parse_args(argv)
    if args.command == "serve":
        return serve(args.listen, args.record)
    if args.timeout <= 0:
        ap.error("--timeout must be positive")
    return wait(args.record, args.path, args.status, dict(args.label), args.timeout)


if __name__ == "__main__":
    sys.exit(main())
