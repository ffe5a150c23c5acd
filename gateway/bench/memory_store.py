"""The in-memory Store of the tests and the benchmarks: the gateway's Store protocol
(records.Store) without a disk, so that what is measured or asserted is the ingest path alone.
The tests import it too (pyproject.toml puts bench/ on pytest's path)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nanogridata_gateway.records import Record, StoreFull


class MemoryStore:
    """Takes one record per call (the server's per-record path) and keeps it, or with
    `keep=False` only counts it (a long benchmark must not grow). `full` makes it refuse with
    StoreFull, `delay_s` makes every append that slow."""

    def __init__(self, *, keep: bool = True) -> None:
        self.keep = keep
        self.records: list[Record] = []
        self.count = 0
        self.full = False
        self.delay_s = 0.0
        self.started = False
        self.closed = False

    async def start(self) -> None:
        self.started = True

    async def admit(self) -> None:
        """What every append goes through first: the delay, then the refusal when full."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.full:
            raise StoreFull("test store is full")

    async def append(self, record: Record) -> None:
        await self.admit()
        self.count += 1
        if self.keep:
            self.records.append(record)

    def is_ready(self) -> bool:
        return not self.full

    async def close(self) -> None:
        self.closed = True


class BatchMemoryStore(MemoryStore):
    """Also takes a whole batch per call, as the durable spool does (one group commit): the
    server then takes its batched path."""

    async def append_many(self, records: Sequence[Record]) -> None:
        await self.admit()
        self.count += len(records)
        if self.keep:
            self.records.extend(records)
