"""The twin over HTTP: an aiohttp server on its own event loop thread, around one core.Twin.

``with HcloudTwin(token) as twin: twin.endpoint`` -> ``http://127.0.0.1:PORT/v1``. It listens on
loopback only; the one exception (``own_network=True``) is for callers that created the network
the address is on: a network namespace with a veth (keepalived's two-node test), or the host
backend's public docker network, whose hosts call the API.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from .core import JSON, Twin

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class HcloudTwin:
    def __init__(
        self,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        own_network: bool = False,
        state_file: Path | None = None,
        **twin_options: Any,
    ) -> None:
        if host not in LOOPBACK and not own_network:
            raise ValueError(f"the twin listens on loopback only, not {host!r}")
        self.state = Twin(token, **twin_options)
        self.lock = threading.Lock()
        # Optional persistence: loaded now, rewritten (atomically) after every change.
        self.state_file = state_file
        if state_file is not None and state_file.exists():
            self.state.restore(json.loads(state_file.read_text()))
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        self.loop = asyncio.new_event_loop()
        self.thread: threading.Thread | None = None
        self.runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"

    def start(self) -> HcloudTwin:
        self.thread = threading.Thread(target=self.loop.run_forever, name="hcloud-twin", daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()

    def stop(self) -> None:
        with self.lock:
            if self.state_file is not None:
                self.state.refresh()
                if self.state.changed:
                    self._save()
        if self.thread is None:
            self.sock.close()
            return
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()
        self.sock.close()
        self.thread = None

    def __enter__(self) -> HcloudTwin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self.lock:
            answer = self.state.handle(
                request.method, request.path, request.query_string, body, request.headers.get("Authorization")
            )
            if self.state_file is not None and self.state.changed:
                self._save()
        if answer.status == 0:  # an injected connection drop: close without an answer
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        headers = {"X-Correlation-Id": uuid.uuid4().hex[:16], **answer.headers}
        if answer.status == 204:
            return web.Response(status=204, headers=headers)
        return web.json_response(answer.body, status=answer.status, headers=headers)

    def _save(self) -> None:
        """Write the state file (called with the lock held); a crash never leaves half a file."""
        assert self.state_file is not None
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(self.state.snapshot()))
        os.replace(tmp, self.state_file)
        self.state.changed = False

    # -- conveniences for tests and tools (thread-safe) ----------------------------------------
    def add_server(self, server_id: int, name: str) -> None:
        with self.lock:
            self.state.add_server(server_id, name)

    def add_floating_ip(self, fip_id: int, ip: str, server: int | None) -> None:
        with self.lock:
            self.state.add_floating_ip(fip_id, ip, server)

    def inject(self, endpoint: str, status: int, times: int = 1) -> None:
        with self.lock:
            self.state.inject(endpoint, status, times)

    def set_action_seconds(self, seconds: float) -> None:
        with self.lock:
            self.state.action_seconds = seconds

    def fail_next_actions(self, count: int = 1) -> None:
        with self.lock:
            self.state.fail_next_actions = count

    def assigned_server(self, fip_id: int) -> int | None:
        with self.lock:
            self.state.refresh()
            server: int | None = self.state.resources["floating_ips"][fip_id]["server"]
            return server

    def force_assign(self, fip_id: int, server: int | None) -> None:
        """Move the IP behind the API client's back (someone used the console)."""
        with self.lock:
            self.state.resources["floating_ips"][fip_id]["server"] = server

    def counts(self) -> dict[str, int]:
        with self.lock:
            self.state.refresh()
            return self.state.counts()

    def resource(self, collection: str, rid: int) -> JSON | None:
        with self.lock:
            self.state.refresh()
            record = self.state.resources[collection].get(rid)
            return self.state.render(collection, record) if record is not None else None

    def requests(self, method: str | None = None, path_re: str = "") -> list[tuple[str, str, int]]:
        with self.lock:
            return [r for r in self.state.requests if (method is None or r[0] == method) and re.search(path_re, r[1])]
