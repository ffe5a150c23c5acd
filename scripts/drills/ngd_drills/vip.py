"""Which gateway holds the VIP, over time. In the lab each gateway streams `ip monitor address`
(event-driven: an address change is seen within milliseconds); where commands cannot be streamed
the watcher polls `ip -o addr` instead. Times are the drill host's monotonic clock."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from .env import Executor, sh_quote

POLL_INTERVAL_S = 0.2
MAX_WATCH_S = 1800  # every command left running on a host ends by itself after this


@dataclass
class VipEvent:
    t: float
    host: str
    holds: bool
    why: str


@dataclass
class VipWatcher:
    executor: Executor
    hosts: list[str]
    vip: str
    interface: str
    events: list[VipEvent] = field(default_factory=list)
    _holding: dict[str, bool] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _set(self, host: str, holds: bool, why: str, t: float | None = None) -> None:
        with self._lock:
            if self._holding.get(host) == holds:
                return
            self._holding[host] = holds
            self.events.append(VipEvent(t if t is not None else time.monotonic(), host, holds, why))

    def _has_vip(self, text: str) -> bool:
        return any(f" {self.vip}/" in line and not line.startswith("Deleted") for line in text.splitlines())

    def _poll_once(self, host: str) -> bool | None:
        result = self.executor.run(
            host, sh_quote("ip", "-o", "-4", "addr", "show", "dev", self.interface), timeout=5
        )
        if result.rc != 0:
            return None
        return self._has_vip(result.stdout)

    def _watch(self, host: str) -> None:
        monitor = (
            f"timeout {MAX_WATCH_S} ip -o -4 monitor address dev {self.interface} & "
            f"sleep 0.05; ip -o -4 addr show dev {self.interface} | sed 's/^/INIT /'; wait"
        )
        while not self._stop.is_set():
            proc = self.executor.stream(host, monitor)
            if proc is None:  # no streaming here: poll
                holds = self._poll_once(host)
                self._set(host, bool(holds), "poll" if holds is not None else "unreachable")
                self._stop.wait(POLL_INTERVAL_S)
                continue
            init_lines: list[str] = []
            assert proc.stdout is not None
            for line in proc.stdout:
                now = time.monotonic()
                if self._stop.is_set():
                    break
                if line.startswith("INIT "):
                    init_lines.append(line[5:])
                    self._set(host, self._has_vip("".join(init_lines)), "initial", now)
                elif f" {self.vip}/" in line:
                    self._set(host, not line.startswith("Deleted"), "monitor", now)
            proc.terminate()
            proc.wait(timeout=5)
            if self._stop.is_set():
                break
            # The stream ended: the host (or its network namespace) is gone. It holds nothing.
            self._set(host, False, "host down")
            self._stop.wait(POLL_INTERVAL_S)

    def start(self) -> None:
        for host in self.hosts:
            thread = threading.Thread(target=self._watch, args=(host,), daemon=True)
            thread.start()
            self._threads.append(thread)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(self._holding) < len(self.hosts):
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for host in self.hosts:  # end the in-host monitors now rather than at MAX_WATCH_S
            self.executor.run(host, "pkill -x -f 'ip -o -4 monitor address.*' || true", timeout=5)
        for thread in self._threads:
            thread.join(timeout=6)

    def holders(self) -> list[str]:
        with self._lock:
            return sorted(h for h, holds in self._holding.items() if holds)

    def first_hold_after(self, host: str, t0: float) -> float | None:
        with self._lock:
            for ev in self.events:
                if ev.host == host and ev.holds and ev.t >= t0:
                    return ev.t
        return None

    def max_holders_since(self, t0: float) -> int:
        """The largest number of simultaneous holders since t0 (2 = split brain)."""
        with self._lock:
            state = {h: False for h in self.hosts}
            for ev in self.events:
                if ev.t < t0:
                    state[ev.host] = ev.holds
            best = sum(state.values())
            for ev in self.events:
                if ev.t >= t0:
                    state[ev.host] = ev.holds
                    best = max(best, sum(state.values()))
            return best

    def wait_for(self, predicate_holders: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if set(self.holders()) == predicate_holders:
                return True
            time.sleep(0.05)
        return False
