"""A local, faithful stub of the Hetzner Cloud API endpoints the notify script uses.

The real API cannot be reached from CI, so the hcloud provider hook is tested against this.
What it reproduces (shapes checked against the public API reference and hcloud-python 2.x):

* ``GET  /v1/floating_ips/{id}``                 -> ``{"floating_ip": {...}}``
* ``POST /v1/floating_ips/{id}/actions/assign``  -> 201 ``{"action": {...}}`` (body ``{"server": id}``)
* ``GET  /v1/actions/{id}``                      -> ``{"action": {...}}``
* ``GET  /v1/servers?name=NAME``                 -> ``{"servers": [...], "meta": {"pagination": ...}}``

Actions are asynchronous: ``status`` is ``running`` (``progress`` grows) until ``action_seconds``
after ``started``, then ``success`` (the floating IP moves at that moment) or ``error`` with
``{"code": "action_failed", ...}`` when an action error was injected. While an assign action on a
floating IP runs, a second assign answers 423 ``locked``, as the real API does.

Errors use the real envelope ``{"error": {"code", "message", "details"}}`` with the real codes:
401 ``unauthorized``, 404 ``not_found``, 422 ``invalid_input`` / ``floating_ip_assigned``,
423 ``locked``, 429 ``rate_limit_exceeded``, 409 ``conflict``, 500 ``server_error``,
503 ``unavailable``, 504 ``timeout``. Every answer carries ``RateLimit-Limit``,
``RateLimit-Remaining``, ``RateLimit-Reset`` (UNIX time when the bucket is full again) and
``X-Correlation-Id``.

Faults are injected per endpoint with :meth:`HcloudStub.inject` (N times a status), or over HTTP
with ``POST /_stub/faults`` (same fields) so a lab drill can drive a stub running elsewhere.
It listens on 127.0.0.1 only, on an ephemeral port unless told otherwise.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

RATE_LIMIT = 3600  # requests per hour, refilled one per second (the real API's default)

# Status -> (code, message) for injected errors, as the real API spells them.
ERROR_BODIES: dict[int, tuple[str, str]] = {
    409: ("conflict", "The resource has changed during the request, please retry"),
    423: ("locked", "The item you are trying to access is locked (there is already an Action running)"),
    429: ("rate_limit_exceeded", "limit of 3600 requests per hour reached"),
    500: ("server_error", "Error within the API backend"),
    502: ("bad_gateway", "The request could not be answered by the API backend, please retry"),
    503: ("unavailable", "A service or product is currently not available"),
    504: ("timeout", "The request could not be answered in time, please retry"),
}

ENDPOINTS = ("get_floating_ip", "assign", "get_action", "list_servers")


def iso(ts: float) -> str:
    """The API's timestamp format: ISO 8601 with offset, second precision."""
    return datetime.fromtimestamp(ts, tz=UTC).replace(microsecond=0).isoformat()


@dataclass
class Fault:
    endpoint: str  # one of ENDPOINTS
    status: int  # an ERROR_BODIES key, or 0 to drop the connection without an answer
    times: int


@dataclass
class Action:
    id: int
    command: str
    resources: list[dict[str, Any]]
    started: float
    seconds: float
    fail: bool
    on_success: Any  # callable applied once when the action finishes successfully
    finished: float | None = None

    def refresh(self, now: float) -> None:
        if self.finished is None and now >= self.started + self.seconds:
            self.finished = self.started + self.seconds
            if not self.fail:
                self.on_success()

    @property
    def status(self) -> str:
        if self.finished is None:
            return "running"
        return "error" if self.fail else "success"

    def to_json(self, now: float) -> dict[str, Any]:
        if self.finished is not None:
            progress = 100
        else:
            progress = min(99, int(100 * (now - self.started) / self.seconds)) if self.seconds else 0
        return {
            "id": self.id,
            "command": self.command,
            "status": self.status,
            "progress": progress,
            "started": iso(self.started),
            "finished": iso(self.finished) if self.finished is not None else None,
            "resources": self.resources,
            "error": {"code": "action_failed", "message": "Action failed"} if self.status == "error" else None,
        }


@dataclass
class StubState:
    token: str
    floating_ips: dict[int, dict[str, Any]] = field(default_factory=dict)
    servers: dict[int, dict[str, Any]] = field(default_factory=dict)
    actions: dict[int, Action] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    action_seconds: float = 0.3
    fail_next_actions: int = 0
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status)
    rate_remaining: int = RATE_LIMIT
    next_action_id: int = 1000


class HcloudStub:
    """In-process stub server: ``with HcloudStub(token) as stub: stub.endpoint``."""

    def __init__(self, token: str, host: str = "127.0.0.1", port: int = 0, private_namespace: bool = False) -> None:
        # Loopback only. The one exception, private_namespace=True, is for tests that create a
        # network namespace of their own and need the stub on its veth address (two nodes).
        if host not in ("127.0.0.1", "::1", "localhost") and not private_namespace:
            raise ValueError(f"the stub listens on loopback only, not {host!r}")
        self.state = StubState(token=token)
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    # -- setup -------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def add_server(self, server_id: int, name: str) -> None:
        with self.lock:
            self.state.servers[server_id] = _server_json(server_id, name, time.time())

    def add_floating_ip(self, fip_id: int, ip: str, server: int | None) -> None:
        with self.lock:
            self.state.floating_ips[fip_id] = _floating_ip_json(fip_id, ip, server, time.time())

    def inject(self, endpoint: str, status: int, times: int = 1) -> None:
        """The next ``times`` requests to ``endpoint`` answer ``status`` (0: connection dropped)."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}, not {endpoint!r}")
        if status != 0 and status not in ERROR_BODIES:
            raise ValueError(f"status must be 0 or one of {sorted(ERROR_BODIES)}, not {status}")
        with self.lock:
            self.state.faults.append(Fault(endpoint, status, times))

    def set_action_seconds(self, seconds: float) -> None:
        with self.lock:
            self.state.action_seconds = seconds

    def fail_next_actions(self, count: int = 1) -> None:
        with self.lock:
            self.state.fail_next_actions = count

    def assigned_server(self, fip_id: int) -> int | None:
        with self.lock:
            self._refresh_actions()
            server: int | None = self.state.floating_ips[fip_id]["server"]
            return server

    def force_assign(self, fip_id: int, server: int | None) -> None:
        """Move the IP behind the notify script's back (someone used the console)."""
        with self.lock:
            self._set_fip_server(fip_id, server)

    def requests(self, method: str | None = None, path_re: str = "") -> list[tuple[str, str, int]]:
        with self.lock:
            return [r for r in self.state.requests if (method is None or r[0] == method) and re.search(path_re, r[1])]

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> HcloudStub:
        self.thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="hcloud-stub",
            daemon=True,
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> HcloudStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals (called with self.lock held) ----------------------------------------------
    def _refresh_actions(self) -> None:
        now = time.time()
        for action in self.state.actions.values():
            action.refresh(now)

    def _set_fip_server(self, fip_id: int, server: int | None) -> None:
        old = self.state.floating_ips[fip_id]["server"]
        if old is not None and old in self.state.servers:
            ips = self.state.servers[old]["public_net"]["floating_ips"]
            if fip_id in ips:
                ips.remove(fip_id)
        self.state.floating_ips[fip_id]["server"] = server
        if server is not None and server in self.state.servers:
            self.state.servers[server]["public_net"]["floating_ips"].append(fip_id)

    def take_fault(self, endpoint: str) -> Fault | None:
        for fault in self.state.faults:
            if fault.endpoint == endpoint and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def handle(self, method: str, raw_path: str, body: bytes, auth: str | None) -> tuple[int, dict[str, Any] | None]:
        """Route one request. Returns (status, JSON body); status 0 means drop the connection."""
        url = urlsplit(raw_path)
        path = url.path.rstrip("/")
        self._refresh_actions()

        if path == "/_stub/faults" and method == "POST":
            return self._control(body)

        if auth != f"Bearer {self.state.token}":
            return 401, _error("unauthorized", "unable to authenticate")

        routes: list[tuple[str, str, str]] = [
            ("GET", r"/v1/floating_ips/(\d+)", "get_floating_ip"),
            ("POST", r"/v1/floating_ips/(\d+)/actions/assign", "assign"),
            ("GET", r"/v1/actions/(\d+)", "get_action"),
            ("GET", r"/v1/servers", "list_servers"),
        ]
        for route_method, pattern, endpoint in routes:
            match = re.fullmatch(pattern, path)
            if not match:
                continue
            if route_method != method:
                return 405, _error("method_not_allowed", "method not allowed")
            fault = self.take_fault(endpoint)
            if fault is not None:
                if fault.status == 0:
                    return 0, None
                code, message = ERROR_BODIES[fault.status]
                return fault.status, _error(code, message)
            arg = int(match.group(1)) if match.groups() else 0
            if endpoint == "get_floating_ip":
                return self._get_floating_ip(arg)
            if endpoint == "assign":
                return self._assign(arg, body)
            if endpoint == "get_action":
                return self._get_action(arg)
            return self._list_servers(parse_qs(url.query))
        return 404, _error("not_found", f"no route for {method} {path}")

    def _get_floating_ip(self, fip_id: int) -> tuple[int, dict[str, Any]]:
        fip = self.state.floating_ips.get(fip_id)
        if fip is None:
            return 404, _error("not_found", f"Floating IP with ID {fip_id} not found")
        return 200, {"floating_ip": json.loads(json.dumps(fip))}

    def _assign(self, fip_id: int, body: bytes) -> tuple[int, dict[str, Any]]:
        fip = self.state.floating_ips.get(fip_id)
        if fip is None:
            return 404, _error("not_found", f"Floating IP with ID {fip_id} not found")
        try:
            request = json.loads(body or b"null")
        except ValueError:
            return 400, _error("json_error", "invalid JSON in request body")
        server = request.get("server") if isinstance(request, dict) else None
        if not isinstance(server, int) or isinstance(server, bool):
            return 422, _error(
                "invalid_input",
                "invalid input in field 'server'",
                {"fields": [{"name": "server", "messages": ["Missing data for required field."]}]},
            )
        if server not in self.state.servers:
            return 422, _error(
                "invalid_input",
                f"invalid input in field 'server': server {server} not found",
                {"fields": [{"name": "server", "messages": [f"server {server} not found"]}]},
            )
        running = [
            a
            for a in self.state.actions.values()
            if a.status == "running" and {"id": fip_id, "type": "floating_ip"} in a.resources
        ]
        if running:
            return 423, _error(*ERROR_BODIES[423])
        if fip["server"] == server:
            return 422, _error("floating_ip_assigned", "The Floating IP is already assigned")
        fail = self.state.fail_next_actions > 0
        if fail:
            self.state.fail_next_actions -= 1
        action_id = self.state.next_action_id
        self.state.next_action_id += 1
        action = Action(
            id=action_id,
            command="assign_floating_ip",
            resources=[{"id": server, "type": "server"}, {"id": fip_id, "type": "floating_ip"}],
            started=time.time(),
            seconds=self.state.action_seconds,
            fail=fail,
            on_success=lambda: self._set_fip_server(fip_id, server),
        )
        self.state.actions[action_id] = action
        action.refresh(time.time())  # a zero-second action finishes at once
        return 201, {"action": action.to_json(time.time())}

    def _get_action(self, action_id: int) -> tuple[int, dict[str, Any]]:
        action = self.state.actions.get(action_id)
        if action is None:
            return 404, _error("not_found", f"Action with ID {action_id} not found")
        return 200, {"action": action.to_json(time.time())}

    def _list_servers(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        servers = list(self.state.servers.values())
        if "name" in query:
            servers = [s for s in servers if s["name"] == query["name"][0]]
        pagination = {
            "page": 1,
            "per_page": 25,
            "previous_page": None,
            "next_page": None,
            "last_page": 1,
            "total_entries": len(servers),
        }
        return 200, {"servers": json.loads(json.dumps(servers)), "meta": {"pagination": pagination}}

    def _control(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """Fault control for out-of-process use: {"endpoint", "status", "times"} or
        {"action_seconds": s} or {"fail_next_actions": n}. No auth: loopback only, test tool."""
        try:
            request = json.loads(body)
            if "endpoint" in request:
                fault = Fault(str(request["endpoint"]), int(request["status"]), int(request.get("times", 1)))
                if fault.endpoint not in ENDPOINTS or (fault.status and fault.status not in ERROR_BODIES):
                    raise ValueError(f"bad fault {request}")
                self.state.faults.append(fault)
            if "action_seconds" in request:
                self.state.action_seconds = float(request["action_seconds"])
            if "fail_next_actions" in request:
                self.state.fail_next_actions = int(request["fail_next_actions"])
        except (ValueError, KeyError, TypeError) as exc:
            return 422, _error("invalid_input", str(exc))
        return 200, {"ok": True}

    def rate_headers(self, limited: bool) -> dict[str, str]:
        if limited:
            self.state.rate_remaining = 0
        else:
            self.state.rate_remaining = max(0, self.state.rate_remaining - 1)
        missing = RATE_LIMIT - self.state.rate_remaining
        return {
            "RateLimit-Limit": str(RATE_LIMIT),
            "RateLimit-Remaining": str(self.state.rate_remaining),
            "RateLimit-Reset": str(int(time.time()) + missing),
        }


def _error(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _location() -> dict[str, Any]:
    return {
        "id": 1,
        "name": "fsn1",
        "description": "Falkenstein DC Park 1",
        "country": "DE",
        "city": "Falkenstein",
        "latitude": 50.47612,
        "longitude": 12.370071,
        "network_zone": "eu-central",
    }


def _floating_ip_json(fip_id: int, ip: str, server: int | None, now: float) -> dict[str, Any]:
    return {
        "id": fip_id,
        "name": f"fip-{fip_id}",
        "description": "nanogridata VIP",
        "ip": ip,
        "type": "ipv6" if ":" in ip else "ipv4",
        "server": server,
        "dns_ptr": [{"ip": ip, "dns_ptr": "static.example.invalid"}],
        "home_location": _location(),
        "blocked": False,
        "protection": {"delete": False},
        "labels": {},
        "created": iso(now),
    }


def _server_json(server_id: int, name: str, now: float) -> dict[str, Any]:
    return {
        "id": server_id,
        "name": name,
        "status": "running",
        "created": iso(now),
        "public_net": {
            "ipv4": None,
            "ipv6": None,
            "floating_ips": [],
            "firewalls": [],
        },
        "private_net": [],
        "labels": {},
        "protection": {"delete": False, "rebuild": False},
        "volumes": [],
        "load_balancers": [],
        "rescue_enabled": False,
        "locked": False,
        "backup_window": None,
        "outgoing_traffic": 0,
        "ingoing_traffic": 0,
        "included_traffic": 21990232555520,
        "primary_disk_size": 40,
        "placement_group": None,
        "location": _location(),
    }


def _make_handler(stub: HcloudStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with stub.lock:
                status, payload = stub.handle(method, self.path, body, self.headers.get("Authorization"))
                stub.state.requests.append((method, urlsplit(self.path).path, status))
                headers = stub.rate_headers(limited=status == 429)
            if status == 0:  # injected connection drop: close without an answer
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Correlation-Id", uuid.uuid4().hex[:16])
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # the request log is kept in stub.state.requests

    return Handler
