"""nanogridata-sim plus the one figure a drill needs that it does not report: per device, the time
from losing its connection to the first ACK after reconnecting (`reconnect_ms` p50/p99/max).
Same command line and JSON report as nanogridata-sim; run as `python -m ngd_drills.timed_sim`.

The gateway package's Simulator builds its devices from the module-level SimDevice class, so the
timed device is installed there for this process only. Once the simulator reports reconnect
times itself this wrapper goes away (asked for in the drills' report)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from nanogridata_gateway import sim as base


class TimedDevice(base.SimDevice):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        timed = self.sim
        if isinstance(timed, TimedSimulator) and self.device_id in timed.down_since:
            timed.tcp_reconnect_s.append(time.perf_counter() - timed.down_since[self.device_id])

    def connection_lost(self, exc: Exception | None) -> None:
        timed = self.sim
        if isinstance(timed, TimedSimulator) and not timed.stopping_now():
            timed.down_since.setdefault(self.device_id, time.perf_counter())
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        before = self.sim.stats.acked
        super().data_received(data)
        timed = self.sim
        if isinstance(timed, TimedSimulator) and self.sim.stats.acked > before:
            since = timed.down_since.pop(self.device_id, None)
            if since is not None:
                timed.reconnect_s.append(time.perf_counter() - since)


class TimedSimulator(base.Simulator):
    def __init__(self, cfg: base.SimConfig) -> None:
        super().__init__(cfg)
        self.down_since: dict[int, float] = {}
        self.reconnect_s: list[float] = []  # connection lost -> first ACK after reconnecting
        self.tcp_reconnect_s: list[float] = []  # connection lost -> TCP connected again

    def stopping_now(self) -> bool:
        return bool(self._stopping)

    def report(self, t0: float, t_send_end: float, t_end: float) -> dict[str, Any]:
        result = super().report(t0, t_send_end, t_end)

        def pct(samples: list[float], p: float) -> float | None:
            values = sorted(samples)
            if not values:
                return None
            return round(values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000, 1)

        result["reconnect_ms"] = {
            "count": len(self.reconnect_s),
            "p50": pct(self.reconnect_s, 50),
            "p99": pct(self.reconnect_s, 99),
            "max": pct(self.reconnect_s, 100),
            "never_reacked": len(self.down_since),
            "tcp_p50": pct(self.tcp_reconnect_s, 50),
            "tcp_p99": pct(self.tcp_reconnect_s, 99),
        }
        return result


def main(argv: list[str] | None = None) -> int:
    base.SimDevice = TimedDevice  # type: ignore[misc]
    base.Simulator = TimedSimulator  # type: ignore[misc]
    return base.main(argv)


if __name__ == "__main__":
    sys.exit(main())
