"""Supervised background tasks: none of them may die silently.

Every long-lived task of the gateway (the ingest sweep, the spool committer and collector, each
sink worker, peer sync) is started with `Supervisor.spawn`. When the task raises:

- the failure is logged once, with its traceback (never "Task exception was never retrieved");
- `nanogridata_task_failures_total{task}` counts it and `nanogridata_task_healthy{task}` drops
  to 0;
- the task is started again after a backoff (doubling up to `max_backoff_s`) when `restart` is
  set, and counts as healthy again once a restarted run survived `settle_s`;
- a `critical` task (one without which ACKs are no longer honest) makes `healthy()` false, which
  the ingest server turns into `/ready` 503.

A cancellation (shutdown) is not a failure, and a task that returns has simply finished.

One supervisor per metrics registry (`Supervisor.of(registry)`): the registry is what every
component of one gateway already shares, so the supervisor's metrics and the readiness it
reports always cover the same tasks, and tests that build several gateways in one process keep
them apart.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger("nanogridata.supervise")

INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
SETTLE_S = 1.0


@dataclass
class TaskState:
    """What the supervisor knows about one named task."""

    name: str
    critical: bool
    healthy: bool = True
    failures: int = 0
    last_error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Supervisor:
    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, Supervisor]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._failures = Counter(
            "nanogridata_task_failures",
            "Crashes of a supervised background task",
            ["task"],
            registry=registry,
        )
        self._healthy = Gauge(
            "nanogridata_task_healthy",
            "1 while a supervised background task runs; 0 after a crash until a restart settled",
            ["task"],
            registry=registry,
        )
        self.tasks: dict[str, TaskState] = {}

    @classmethod
    def of(cls, registry: CollectorRegistry) -> Supervisor:
        """The supervisor whose metrics live in `registry` (created on first use)."""
        supervisor = cls._by_registry.get(registry)
        if supervisor is None:
            supervisor = cls._by_registry[registry] = cls(registry)
        return supervisor

    def spawn(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        *,
        restart: bool = True,
        critical: bool = False,
        initial_backoff_s: float = INITIAL_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        settle_s: float = SETTLE_S,
    ) -> asyncio.Task[None]:
        """Run `run()` as task `name` under supervision; the returned task never raises (except
        CancelledError when it is cancelled)."""
        state = TaskState(name, critical)
        self.tasks[name] = state
        self._failures.labels(name)
        self._healthy.labels(name).set(1)
        coro = self._supervise(state, run, restart, initial_backoff_s, max_backoff_s, settle_s)
        state.task = asyncio.get_running_loop().create_task(coro, name=name)
        return state.task

    def healthy(self) -> bool:
        """False while a critical task is down (crashed, not yet restarted and settled)."""
        return all(s.healthy for s in self.tasks.values() if s.critical)

    def unhealthy(self) -> list[str]:
        return sorted(s.name for s in self.tasks.values() if not s.healthy)

    def _set_healthy(self, state: TaskState, healthy: bool) -> None:
        state.healthy = healthy
        self._healthy.labels(state.name).set(1 if healthy else 0)

    async def _supervise(
        self,
        state: TaskState,
        run: Callable[[], Awaitable[None]],
        restart: bool,
        initial_backoff_s: float,
        max_backoff_s: float,
        settle_s: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        delay = initial_backoff_s
        while True:
            started = loop.time()
            settle = None if state.healthy else loop.call_later(settle_s, self._set_healthy, state, True)
            try:
                await run()
            except asyncio.CancelledError:
                raise  # shutdown, not a failure
            except Exception as exc:
                state.failures += 1
                state.last_error = f"{type(exc).__name__}: {exc}"
                self._failures.labels(state.name).inc()
                self._set_healthy(state, False)
                if loop.time() - started >= max_backoff_s:
                    delay = initial_backoff_s  # it had run fine for a while: not a crash loop
                if not restart:
                    log.error("background task %s failed; not restarted", state.name, exc_info=exc)
                    return
                log.error("background task %s failed; restarting in %.1f s", state.name, delay, exc_info=exc)
                await asyncio.sleep(delay)
                delay = min(max_backoff_s, delay * 2)
            else:
                self._set_healthy(state, True)
                return  # finished on its own (e.g. a stop was requested)
            finally:
                if settle is not None:
                    settle.cancel()
