"""HTTP control plane on the metrics port: /health, /ready, /metrics, /stats, POST /drain.

A deliberately small HTTP/1.1 server on asyncio streams (one request per connection): the
endpoints are few, and no web framework is needed for them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("nanogridata.http")
MAX_REQUEST_HEAD = 8192
# Connections held at once. Prometheus, a load balancer's health check and an operator's curl
# need a handful; beyond this a new connection is closed at once, so a client that opens many
# and sends nothing cannot hold more than this many sockets (and each for at most IO_TIMEOUT_S).
MAX_CONNECTIONS = 32
# Reading the request head, and writing the answer to a reader that does not read.
IO_TIMEOUT_S = 5.0
# At most one warning per this many seconds about connections refused at the limit.
REFUSED_LOG_INTERVAL_S = 60.0


class ControlTarget(Protocol):
    """What the control plane needs from the ingest server."""

    def is_alive(self) -> bool: ...

    def is_ready(self) -> bool: ...

    def stats(self) -> dict[str, Any]: ...

    def request_drain(self) -> bool: ...

    @property
    def metrics_registry(self) -> Any: ...


Response = tuple[int, str, bytes]
_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


class ControlServer:
    def __init__(
        self,
        target: ControlTarget,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        drain_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128"),
    ) -> None:
        self.target = target
        self.drain_allow = tuple(ipaddress.ip_network(n, strict=False) for n in drain_allow)
        self.host = host
        self.port = port
        self.reuse_port = reuse_port
        self._server: asyncio.Server | None = None
        self._open = 0
        self.refused = 0  # connections closed unanswered at MAX_CONNECTIONS
        self._refused_logged_at = -REFUSED_LOG_INTERVAL_S

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, reuse_port=self.reuse_port or None
        )
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def connections(self) -> int:
        """Connections held now (at most MAX_CONNECTIONS)."""
        return self._open

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def route(self, method: str, path: str, client: str = "127.0.0.1") -> Response:
        path = path.split("?", 1)[0]
        if path == "/drain" and method == "POST" and not self._may_drain(client):
            return _json(403, {"error": "POST /drain is allowed only from server.drain_allow"})
        handlers: dict[str, tuple[str, Callable[[], Response]]] = {
            "/health": ("GET", self._health),
            "/ready": ("GET", self._ready),
            "/metrics": ("GET", self._metrics),
            "/stats": ("GET", self._stats),
            "/drain": ("POST", self._drain),
        }
        if path not in handlers:
            return _json(404, {"error": "not found", "endpoints": sorted(handlers)})
        allowed, handler = handlers[path]
        if method != allowed and not (method == "HEAD" and allowed == "GET"):
            return _json(405, {"error": f"use {allowed}"})
        return handler()

    def _may_drain(self, client: str) -> bool:
        try:
            address = ipaddress.ip_address(client.split("%", 1)[0])
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        address = mapped or address
        return any(address in net for net in self.drain_allow)

    def _health(self) -> Response:
        alive = self.target.is_alive()
        return _json(200 if alive else 503, {"alive": alive})

    def _ready(self) -> Response:
        ready = self.target.is_ready()
        return _json(200 if ready else 503, {"ready": ready})

    def _metrics(self) -> Response:
        self.target.is_ready()  # refreshes nanogridata_ready
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.target.metrics_registry)

    def _stats(self) -> Response:
        return _json(200, self.target.stats())

    def _drain(self) -> Response:
        started = self.target.request_drain()
        return _json(202, {"draining": True, "started_now": started})

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            self._refuse(writer)
            return
        self._open += 1
        try:
            await self._answer(reader, writer)
        finally:
            self._open -= 1

    def _refuse(self, writer: asyncio.StreamWriter) -> None:
        self.refused += 1
        now = asyncio.get_running_loop().time()
        if now - self._refused_logged_at >= REFUSED_LOG_INTERVAL_S:
            self._refused_logged_at = now
            log.warning(
                "control port: %d connections open, closing new ones unanswered (%d so far)",
                MAX_CONNECTIONS,
                self.refused,
            )
        writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=IO_TIMEOUT_S)
            if len(head) > MAX_REQUEST_HEAD:
                raise ValueError("request head too large")
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            if len(parts) != 3:
                status, ctype, body = _json(400, {"error": "bad request line"})
            else:
                peer = writer.get_extra_info("peername")
                client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
                status, ctype, body = self.route(parts[0], parts[1], client)
            body_out = b"" if parts[0] == "HEAD" else body
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
                + body_out
            )
            await asyncio.wait_for(writer.drain(), timeout=IO_TIMEOUT_S)
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            ConnectionError,
        ):
            pass  # a client that went away or sent garbage gets no answer
        except Exception:  # a bug here must not kill the control plane
            log.exception("control request failed")
        finally:
            writer.close()


def _json(status: int, payload: dict[str, Any]) -> Response:
    return status, "application/json", (json.dumps(payload) + "\n").encode()
