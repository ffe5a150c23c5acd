"""The sink status matrix: every HTTP sink path against a real loopback collector answering each
class of outcome. Only a 2xx confirms a batch; a refusal (4xx) dead-letters; everything else
(redirect, 429, 5xx, no answer, connection reset) keeps the records in the spool and retries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from nanogridata_gateway.delivery import DeliveryStore, open_store
from nanogridata_gateway.delivery_config import parse_delivery_config

from conftest import Collector, delivery_raw, make_record, metric, wait_for

RECORDS = 12
ERROR_CLASSES = ("timeout", "connect", "http_3xx", "http_4xx", "http_5xx", "http_other", "internal")


def _store(raw: dict[str, object]) -> tuple[DeliveryStore, CollectorRegistry]:
    registry = CollectorRegistry()
    return open_store(parse_delivery_config(raw, env={}), registry), registry


def _answer(collector: Collector, answer: str) -> None:
    if answer in ("hang", "reset"):
        collector.mode = answer
    elif answer.startswith("3"):
        collector.redirect = int(answer)
    else:
        collector.status = int(answer)


def _normal(collector: Collector) -> None:
    collector.mode = None
    collector.redirect = None
    collector.status = 200


def _received(collector: Collector, sink_type: str) -> int:
    if sink_type == "http_json":
        return len({r["seq"] for r in collector.records})
    return len(set(collector.lines))


@pytest.mark.parametrize("sink_type", ["http_json", "influx_line"])
@pytest.mark.parametrize(
    ("answer", "error_class", "outcome"),
    [
        ("200", None, "delivered"),
        ("204", None, "delivered"),
        ("302", "http_3xx", "retried"),
        ("400", "http_4xx", "dead_letter"),
        ("429", "http_4xx", "retried"),
        ("500", "http_5xx", "retried"),
        ("503", "http_5xx", "retried"),
        ("hang", "timeout", "retried"),
        ("reset", "connect", "retried"),
    ],
)
def test_every_answer_class_has_its_outcome(
    tmp_path: Path,
    collector: Collector,
    sink_type: str,
    answer: str,
    error_class: str | None,
    outcome: str,
) -> None:
    _answer(collector, answer)
    sink = {
        "type": sink_type,
        "url": collector.url,
        # Short enough for a quick hang test, long enough for a starved loopback answer.
        "timeout_s": 1.0,
        "retry_initial_ms": 20,
        "retry_max_ms": 100,
    }
    raw = delivery_raw(tmp_path, {"alba": sink})

    async def run() -> None:
        store, registry = _store(raw)

        def counted(name: str, **labels: str) -> float:
            return metric(registry, name, sink="alba", **labels)

        await store.start()
        await asyncio.gather(*(store.append(make_record(seq)) for seq in range(RECORDS)))
        if outcome == "delivered":
            await wait_for(lambda: store.spool.record_count == 0, 30, "spool to drain")
            assert counted("nanogridata_sink_records_delivered_total") == RECORDS
            assert counted("nanogridata_sink_dead_letters_total") == 0
            assert sum(counted("nanogridata_sink_errors_total", **{"class": c}) for c in ERROR_CLASSES) == 0
        elif outcome == "dead_letter":
            await wait_for(lambda: store.spool.record_count == 0, 30, "refused records to be dead-lettered")
            assert counted("nanogridata_sink_dead_letters_total") == RECORDS
            assert counted("nanogridata_sink_records_delivered_total") == 0
            assert counted("nanogridata_sink_errors_total", **{"class": "http_4xx"}) >= 1
        else:
            assert error_class is not None
            await wait_for(
                lambda: counted("nanogridata_sink_errors_total", **{"class": error_class}) >= 2,
                30,
                f"{error_class} errors to be retried",
            )
            assert store.spool.record_count == RECORDS
            assert store.spool.cursors.get("alba", 0) == 0
            assert counted("nanogridata_sink_records_delivered_total") == 0
            assert counted("nanogridata_sink_dead_letters_total") == 0
            assert counted("nanogridata_sink_retries_total") >= 2
            _normal(collector)
            await wait_for(lambda: store.spool.record_count == 0, 30, "spool to drain after recovery")
            assert counted("nanogridata_sink_records_delivered_total") == RECORDS
        await store.close()

    asyncio.run(run())
    dead_file = tmp_path / "dead" / "alba.jsonl"
    if outcome == "dead_letter":
        dead = [json.loads(line) for line in dead_file.read_text().splitlines()]
        assert sorted(d["record"]["seq"] for d in dead) == list(range(RECORDS))
        assert all(d["reason"].startswith(f"HTTP {answer}") for d in dead)
        assert _received(collector, sink_type) == 0
    else:
        assert not dead_file.exists()
        assert _received(collector, sink_type) == RECORDS
