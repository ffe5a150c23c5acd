"""The delivery store: durable spool + routing + sink workers, behind the `records.Store`
interface the ingest server uses. (The pair's replay sync is not the store's: `peer.PeerSync`
wraps the replay guard where the gateway is assembled, `app.Gateway`.)

    store = open_store(parse_delivery_config(raw), registry)
    await store.start()
    await store.append(record)   # returns once durable; StoreFull -> answer BUSY
    await store.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry

from .delivery_config import LOCAL_SINK, DeliveryConfig, SinkConfig
from .records import Record
from .routing import Router, routed_sink_names
from .sinks import build_sink
from .sinks.base import DeadLetters, SinkMetrics, SinkWorker
from .spool import Spool, orphaned_sinks, refuse_orphans

log = logging.getLogger(__name__)

# How often confirmed records are deleted (and cursors persisted).
COLLECT_INTERVAL_S = 0.2
# On close: how long in-flight batches may take to finish before they are cancelled
# (cancelled batches stay in the spool and are re-sent after restart).
CLOSE_GRACE_S = 2.0


class DeliveryStore:
    """Implements records.Store."""

    def __init__(
        self,
        config: DeliveryConfig,
        registry: CollectorRegistry,
    ) -> None:
        self.config = config
        names = spool_sink_names(config)
        for unused in sorted(set(names) - set(routed_sink_names(config)) - {LOCAL_SINK}):
            log.warning("sink %r is defined but no route names it (it still delivers its backlog)", unused)
        spool_cfg = config.spool
        self.spool = Spool(
            spool_cfg.path,
            names,
            max_bytes=spool_cfg.max_bytes,
            max_age_s=spool_cfg.max_age_s,
            commit_interval_s=spool_cfg.commit_interval_ms / 1000,
            max_commit_records=spool_cfg.max_commit_records,
            registry=registry,
            drop_sinks=spool_cfg.drop_sinks,
        )
        self.router = Router(config, self.spool.bits)
        self._pool = ThreadPoolExecutor(max_workers=max(2, min(len(names), 4)), thread_name_prefix="sink-io")
        metrics = SinkMetrics.create(registry)
        self.workers: dict[str, SinkWorker] = {}
        for name in names:
            sink_cfg = config.sinks.get(name) or SinkConfig(
                name=LOCAL_SINK, type=LOCAL_SINK, batch_size=500, batch_interval_ms=0, concurrency=1
            )
            dead_letters = DeadLetters(os.path.join(spool_cfg.dead_letter_dir, f"{name}.jsonl"))
            self.workers[name] = SinkWorker(
                build_sink(name, config.sinks.get(name)),
                sink_cfg,
                self.spool,
                metrics,
                dead_letters,
                self._pool,
            )
        self._collector: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        for worker in self.workers.values():
            worker.start()
        self._collector = self.spool.supervisor.spawn("spool-collector", self._collect_loop)

    async def append(self, record: Record) -> None:
        """Durable once this returns (raises StoreFull at the spool's byte or age limit)."""
        await self.spool.append(record, self.router.mask_for(record.frame_type, record.model_id))

    async def append_many(self, records: Sequence[Record]) -> None:
        """Several records in one group commit (all or nothing): one await for a whole read
        batch instead of one task per frame. Raises StoreFull like append()."""
        mask_for = self.router.mask_for
        await self.spool.append_many((r, mask_for(r.frame_type, r.model_id)) for r in records)

    def is_ready(self) -> bool:
        return self.spool.is_ready()

    async def _collect_loop(self) -> None:
        while True:
            await asyncio.sleep(COLLECT_INTERVAL_S)
            try:
                await self.spool.collect()
            except Exception:
                log.exception("spool cleanup failed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
        await asyncio.gather(*(w.stop(CLOSE_GRACE_S) for w in self.workers.values()))
        for worker in self.workers.values():
            await worker.sink.close()
        await self.spool.close()
        self._pool.shutdown(wait=True)

    # --- for tests and /stats ------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        return {
            "spool_records": self.spool.record_count,
            "spool_bytes": self.spool.byte_count,
            "spool_full": self.spool.is_full(),
            "cursors": dict(self.spool.cursors),
        }


def spool_sink_names(config: DeliveryConfig) -> list[str]:
    """The sinks the spool keeps records for: every defined sink, routed or not (a route that
    stops naming a sink must not take the records already spooled for it), and `local`."""
    return sorted({*routed_sink_names(config), *config.sinks, LOCAL_SINK})


def check_spool(config: DeliveryConfig) -> None:
    """check-config: ConfigError when the existing spool owes records to a sink the config no
    longer has (serve would refuse to start)."""
    refuse_orphans(orphaned_sinks(config.spool.path, spool_sink_names(config)), config.spool.drop_sinks)


def open_store(config: DeliveryConfig, registry: CollectorRegistry) -> DeliveryStore:
    """Open (or recover) the spool; `await store.start()` starts the sinks."""
    return DeliveryStore(config, registry)
