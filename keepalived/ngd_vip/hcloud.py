"""Hetzner Cloud floating IP hook, using the official hcloud Python library.

MASTER: GET the floating IP; when it already points here, only make sure the interface carries it
(idempotent, one API call). Otherwise POST .../actions/assign and poll GET /v1/actions/{id} until
``success`` (or ``error``), then configure the interface.

Retries: every call is retried on 429 ``rate_limit_exceeded``, 5xx, 409 ``conflict``, 423
``locked`` (an assign is already running) and connection errors/timeouts, with exponential back-off
and full jitter, all inside one deadline (``hcloud.deadline_seconds``). The library's own retry
loop (1 s base, 60 s cap) is switched off so that this deadline really bounds the failover.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from hcloud import APIException, Client
from hcloud.floating_ips.domain import FloatingIP
from hcloud.servers.domain import Server

from .base import Deadline, ProviderError, SupersededError
from .config import HcloudConfig
from .interface import InterfaceManager

log = logging.getLogger("ngd-vip")
T = TypeVar("T")

RETRYABLE_CODES = {
    "rate_limit_exceeded",
    "conflict",
    "locked",
    "server_error",
    "unavailable",
    "bad_gateway",
    "timeout",
    "service_error",
    "maintenance",
}


def is_retryable(exc: Exception) -> bool:
    if isinstance(exc, APIException):
        if isinstance(exc.code, int):  # no JSON error body: judge by HTTP status
            return exc.code == 429 or exc.code >= 500
        return exc.code in RETRYABLE_CODES
    return isinstance(exc, requests.exceptions.RequestException)


def describe(exc: Exception) -> str:
    if isinstance(exc, APIException):
        if exc.code == "unauthorized":
            return "the API rejected the token (401 unauthorized): check the file named by hcloud.token_file"
        return f"{exc.message} ({exc.code})"
    return f"{type(exc).__name__}: {exc}"


class _TimeoutSession(requests.Session):
    """A session with a default timeout, for hcloud-python 1.x which cannot pass one."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(*args, **kwargs)


def make_client(config: HcloudConfig) -> Client:
    """hcloud-python 2.x (PyPI) or 1.18 (Debian bookworm's python3-hcloud)."""
    common: dict[str, Any] = {
        "token": config.token,
        "api_endpoint": config.endpoint,
        "application_name": "nanogridata-vip-notify",
    }
    client: Any
    try:
        client = Client(**common, timeout=config.request_timeout_seconds)
    except TypeError:  # 1.x: no timeout argument; it retries only 429, by itself, 4 times
        client = Client(**common)
        client._requests_session = _TimeoutSession(config.request_timeout_seconds)
        client._retry_wait_time = config.backoff_base_seconds
        return client  # type: ignore[no-any-return]
    # 2.x retries some errors itself for up to ~2 minutes: off, so our deadline rules.
    inner: Any = getattr(client, "_client", None)
    if inner is not None and hasattr(inner, "_retry_max_retries"):
        inner._retry_max_retries = 0
    return client  # type: ignore[no-any-return]


class HcloudProvider:
    name = "hcloud"

    def __init__(
        self,
        config: HcloudConfig,
        interface: InterfaceManager | None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.interface = interface
        self.sleep = sleep
        self.client = make_client(config)
        self._server_id = config.server_id
        self.api_calls = 0
        self.retries = 0

    # -- retrying call ---------------------------------------------------------------------------
    def call(self, what: str, deadline: Deadline, fn: Callable[[], T]) -> T:
        attempt = 0
        while True:
            self.api_calls += 1
            try:
                return fn()
            except (APIException, requests.exceptions.RequestException) as exc:
                if not is_retryable(exc):
                    raise ProviderError(f"{what}: {describe(exc)}") from exc
                backoff = min(self.config.backoff_cap_seconds, self.config.backoff_base_seconds * 2**attempt)
                delay = random.uniform(self.config.backoff_base_seconds / 2, backoff)
                if delay >= deadline.remaining():
                    raise ProviderError(
                        f"{what}: gave up after {attempt + 1} attempts in {deadline.elapsed():.1f}s"
                        f" (hcloud.deadline_seconds={self.config.deadline_seconds:g}): {describe(exc)}"
                    ) from exc
                log.warning(
                    "hcloud %s failed (%s), retry %d in %.2fs", what, describe(exc), attempt + 1, delay
                )
                self.retries += 1
                self.sleep(delay)
                attempt += 1

    def server_id(self, deadline: Deadline) -> int:
        if self._server_id is None:
            name = self.config.server_name
            server = self.call("look up this server", deadline, lambda: self.client.servers.get_by_name(name))
            if server is None or server.id is None:
                raise ProviderError(
                    f"no server named {name!r} in this project: set hcloud.server_id or hcloud.server_name"
                )
            self._server_id = int(server.id)
        return self._server_id

    def _assigned_server(self, deadline: Deadline) -> int | None:
        fip = self.call(
            "get floating IP",
            deadline,
            lambda: self.client.floating_ips.get_by_id(self.config.floating_ip_id),
        )
        server = fip.server
        return None if server is None or server.id is None else int(server.id)

    # -- Provider interface ----------------------------------------------------------------------
    def routed_here(self) -> bool:
        deadline = Deadline(self.config.deadline_seconds)
        return self._assigned_server(deadline) == self.server_id(deadline)

    def take_over(self, still_master: Callable[[], bool]) -> None:
        deadline = Deadline(self.config.deadline_seconds)
        me = self.server_id(deadline)
        current = self._assigned_server(deadline)
        if current == me:
            log.info("hcloud floating IP %d already assigned to server %d", self.config.floating_ip_id, me)
        else:
            log.info(
                "hcloud assigning floating IP %d: server %s -> %d", self.config.floating_ip_id, current, me
            )
            self._assign_and_wait(me, deadline, still_master)
        if self.interface is not None:
            self.interface.ensure_present()

    def _assign_and_wait(self, me: int, deadline: Deadline, still_master: Callable[[], bool]) -> None:
        fip = FloatingIP(id=self.config.floating_ip_id)

        def assign() -> Any:
            # Checked before every attempt: a retry must not steal the IP from a newer master.
            if not still_master():
                raise SupersededError("left MASTER before the floating IP was assigned here")
            return self.client.floating_ips.assign(fip, Server(id=me))

        try:
            action = self.call("assign floating IP", deadline, assign)
        except ProviderError as exc:
            cause = exc.__cause__
            # 422 floating_ip_assigned: already ours (e.g. a previous try succeeded late).
            already = isinstance(cause, APIException) and cause.code == "floating_ip_assigned"
            if already and self._assigned_server(deadline) == me:
                return
            raise
        action_id = action.id
        status, error = action.status, action.error
        while status == "running":
            if deadline.remaining() <= self.config.poll_interval_seconds:
                raise ProviderError(
                    f"assign action {action_id} still running after {deadline.elapsed():.1f}s"
                    f" (hcloud.deadline_seconds={self.config.deadline_seconds:g})"
                )
            self.sleep(self.config.poll_interval_seconds)
            polled = self.call(
                "poll assign action", deadline, lambda: self.client.actions.get_by_id(action_id)
            )
            status, error = polled.status, polled.error
        if status != "success":
            detail = (
                f"{error.get('message')} ({error.get('code')})" if isinstance(error, dict) else str(error)
            )
            raise ProviderError(f"assign action {action_id} ended with status {status}: {detail}")
        log.info("hcloud assign action %d succeeded in %.2fs", action_id, deadline.elapsed())
