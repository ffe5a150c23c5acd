"""Ingest metrics, named exactly as in docs/metrics.md (the contract with prometheus/ rules).

The frame path updates plain Python integers (no lock, no label lookup per frame); a custom
collector turns them into Prometheus families at scrape time. Histograms keep their bucket
counts in a list indexed with bisect.
"""

from __future__ import annotations

import platform
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__
from .connection_limits import CLOSE_REASONS
from .protocol import REASONS, TYPE_NAMES, AckStatus

ACK_STATUS_LABELS = {int(s): s.name.lower() for s in AckStatus}
CONNECTION_REJECT_REASONS = ("max_connections", "max_connections_per_source", "proxy_header", "draining")
PROCESSING_BUCKETS = (5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 0.01)
ACK_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)


class FastHistogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # last slot: +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_many(self, value: float, count: int) -> None:
        self.counts[bisect_left(self.bounds, value)] += count
        self.sum += value * count

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.sum)


class JournalHealth(Protocol):
    """What the metrics read from the replay journal (replay.PersistentReplayGuard)."""

    writable: bool
    write_errors: int


def model_label(model_id: int) -> str:
    return f"0x{model_id:02x}"


class IngestMetrics(Collector):
    """All ingest metrics; register() adds them to `registry` (delivery adds its own there)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.ready = 0
        self.draining = 0
        self.connections_active = 0
        self.connections_total = 0
        self.connections_rejected = dict.fromkeys(CONNECTION_REJECT_REASONS, 0)
        self.connections_closed = dict.fromkeys(CLOSE_REASONS, 0)
        self.bytes_received = 0
        self.rejected = dict.fromkeys(REASONS, 0)
        # Totals for /stats (cheaper to read than summing the labelled counters)
        self.frames_total = 0  # frames read whole (rate-limited ones included)
        self.frames_acked_ok = 0
        self.frames_rejected_total = 0
        self.frames_received: dict[tuple[int, int], int] = {}  # (model, type)
        self.frames_acked: dict[tuple[int, int, int], int] = {}  # (model, type, status)
        self.mac_failures: dict[int, int] = {}
        self.replays: dict[int, int] = {}
        self.commands: dict[int, int] = {}
        self.processing = FastHistogram(PROCESSING_BUCKETS)
        self.ack_latency = FastHistogram(ACK_BUCKETS)
        self.ready_probe: Callable[[], bool] | None = None  # refreshes `ready` at scrape time
        self.replay_journal: JournalHealth | None = None  # set by the server when it has one
        self.registry.register(self)

    # --- frame path -------------------------------------------------------------------------------
    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1
        self.frames_rejected_total += 1

    def frame_acked(self, model_id: int, frame_type: int, status: int) -> None:
        key = (model_id, frame_type, status)
        self.frames_acked[key] = self.frames_acked.get(key, 0) + 1

    def mac_failure(self, model_id: int) -> None:
        self.mac_failures[model_id] = self.mac_failures.get(model_id, 0) + 1

    def replay(self, model_id: int) -> None:
        self.replays[model_id] = self.replays.get(model_id, 0) + 1

    def command(self, model_id: int) -> None:
        self.commands[model_id] = self.commands.get(model_id, 0) + 1

    def reject_connection(self, reason: str) -> None:
        self.connections_rejected[reason] += 1

    def close_connection(self, reason: str) -> None:
        self.connections_closed[reason] += 1

    # --- exposition -------------------------------------------------------------------------------
    def describe(self) -> Iterator[Metric]:
        return iter(())  # families are produced only at collect time

    def collect(self) -> Iterator[Metric]:
        if self.ready_probe is not None:
            self.ready = 1 if self.ready_probe() else 0
        info = GaugeMetricFamily("nanogridata_build_info", "Running build", labels=["version", "python"])
        info.add_metric([__version__, platform.python_version()], 1)
        yield info
        yield GaugeMetricFamily(
            "nanogridata_ready", "1 when the gateway can accept and durably store frames", value=self.ready
        )
        yield GaugeMetricFamily("nanogridata_draining", "1 while a drain is in progress", value=self.draining)
        journal = self.replay_journal
        if journal is not None:
            yield GaugeMetricFamily(
                "nanogridata_replay_journal_writable",
                "1 while replay marks reach the journal; 0 after a write/fsync error until repaired",
                value=1 if journal.writable else 0,
            )
            yield CounterMetricFamily(
                "nanogridata_replay_journal_errors",
                "Failed replay journal writes, fsyncs and snapshot attempts",
                value=journal.write_errors,
            )
        yield GaugeMetricFamily(
            "nanogridata_connections_active", "Open device connections", value=self.connections_active
        )
        yield CounterMetricFamily(
            "nanogridata_connections", "Accepted connections", value=self.connections_total
        )
        refused = CounterMetricFamily(
            "nanogridata_connections_rejected", "Refused connections", labels=["reason"]
        )
        for reason, count in self.connections_rejected.items():
            refused.add_metric([reason], count)
        yield refused
        expired = CounterMetricFamily(
            "nanogridata_connections_closed",
            "Accepted connections closed by the gateway when one of their deadlines passed",
            labels=["reason"],
        )
        for reason, count in self.connections_closed.items():
            expired.add_metric([reason], count)
        yield expired
        yield CounterMetricFamily(
            "nanogridata_bytes_received", "Bytes read from devices", value=self.bytes_received
        )
        received = CounterMetricFamily(
            "nanogridata_frames_received",
            "Frames that parsed and name a known model",
            labels=["model", "type"],
        )
        for (model, ftype), count in sorted(self.frames_received.items()):
            received.add_metric([model_label(model), TYPE_NAMES.get(ftype, "unknown")], count)
        yield received
        acked = CounterMetricFamily(
            "nanogridata_frames_acked", "ACKs sent", labels=["model", "type", "status"]
        )
        for (model, ftype, status), count in sorted(self.frames_acked.items()):
            acked.add_metric(
                [model_label(model), TYPE_NAMES.get(ftype, "unknown"), ACK_STATUS_LABELS[status]], count
            )
        yield acked
        rejected = CounterMetricFamily(
            "nanogridata_frames_rejected", "Dropped or non-OK frames, one reason each", labels=["reason"]
        )
        for reason, count in self.rejected.items():
            rejected.add_metric([reason], count)
        yield rejected
        for name, doc, values in (
            ("nanogridata_mac_failures", "Frames whose tag did not verify", self.mac_failures),
            ("nanogridata_replays", "Frames answered DUPLICATE", self.replays),
            ("nanogridata_commands", "COMMAND frames handled locally", self.commands),
        ):
            family = CounterMetricFamily(name, doc, labels=["model"])
            for model, count in sorted(values.items()):
                family.add_metric([model_label(model)], count)
            yield family
        yield self.processing.family(
            "nanogridata_frame_processing_seconds",
            "parse -> verify -> decode, per frame (timed per read: each frame counts the read's mean)",
        )
        yield self.ack_latency.family(
            "nanogridata_ack_latency_seconds", "frame fully read -> ACK written (includes durable store)"
        )
