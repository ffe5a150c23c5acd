"""What the drill reads from the monitoring and the sink: active alerts (Alertmanager on the
monitoring host) and the frames stored at the sink (VictoriaMetrics on the collector)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from .env import Executor, sh_quote

# Fires all the time by design (prometheus/rules/alerts-nodes.yml: the dead man's switch): it says
# the alerting works, not that something is wrong.
ALWAYS_FIRING = frozenset({"Watchdog"})


def active_alerts(executor: Executor, mon: str, port: int) -> list[dict[str, Any]] | None:
    """Alertmanager's active, unsilenced alerts (the always-firing Watchdog left out); None when
    Alertmanager does not answer."""
    url = f"http://127.0.0.1:{port}/api/v2/alerts?active=true&silenced=false&inhibited=false"
    result = executor.run(mon, sh_quote("curl", "-fsS", "--max-time", "5", url), timeout=15)
    if result.rc != 0:
        return None
    try:
        alerts = json.loads(result.stdout)
    except json.JSONDecodeError:
        return None
    return [
        a for a in alerts if isinstance(a, dict) and a.get("labels", {}).get("alertname") not in ALWAYS_FIRING
    ]


@dataclass
class AlertRecorder:
    """Polls Alertmanager during a scenario; remembers when each alert was first seen active and
    when it was no longer active after that (resolved)."""

    executor: Executor
    mon: str
    port: int
    interval_s: float = 1.0
    ignore: set[str] = field(default_factory=set)  # already firing before the fault
    first_seen: dict[str, float] = field(default_factory=dict)
    resolved: dict[str, float] = field(default_factory=dict)
    reachable: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            alerts = active_alerts(self.executor, self.mon, self.port)
            now = time.monotonic()
            if alerts is not None:
                self.reachable = True
                active = {str(a.get("labels", {}).get("alertname", "?")) for a in alerts}
                for name in active - self.ignore:
                    self.first_seen.setdefault(name, now)
                    self.resolved.pop(name, None)
                for name in set(self.first_seen) - active:
                    self.resolved.setdefault(name, now)
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=20)


def device_regex(base: int, count: int) -> str:
    """A label regex matching exactly the device ids base .. base+count-1 (base % 1000 == 0)."""
    if base % 1000 or not 0 < count <= 1000:
        raise ValueError("device base must be a multiple of 1000 and count in 1..1000")
    ids = [str(base + i) for i in range(count)]
    return "|".join(ids)


def count_stored(
    executor: Executor,
    collector: str,
    port: int,
    device_base: int,
    devices: int,
    field_name: str,
    start_unix: int,
) -> tuple[int, int] | None:
    """(distinct frames, duplicate points) of these devices at VictoriaMetrics: a frame is one
    (device, timestamp) point of the series named *_<field_name>. None when VM does not answer."""
    selector = f'{{__name__=~".*_{field_name}",device=~"{device_regex(device_base, devices)}"}}'
    query = urlencode(
        {
            "match[]": selector,
            "start": str(start_unix),
        }
    )
    result = executor.run(
        collector,
        sh_quote("curl", "-fsS", "--max-time", "20", f"http://127.0.0.1:{port}/api/v1/export?{query}"),
        timeout=30,
    )
    if result.rc != 0:
        return None
    return parse_export(result.stdout)


def parse_export(text: str) -> tuple[int, int]:
    seen: set[tuple[str, int]] = set()
    points = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        device = str(row["metric"].get("device", ""))
        for ts in row.get("timestamps", []):
            points += 1
            seen.add((device, int(ts)))
    return len(seen), points - len(seen)
