"""Nothing acknowledged is dropped or stored twice by a configuration change: a sink that
disappears from the config while the spool still owes it records refuses the start (exit 2, naming
the sink, the count and `spool.drop_sinks`) until the operator brings it back or drops its records
explicitly; a route that stops naming a sink leaves the records already spooled for it to be
delivered; several worker processes, whose replay windows would not be shared, are refused."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from serve_process import serve_config

from nanogridata_gateway.delivery import DeliveryStore, open_store
from nanogridata_gateway.delivery_config import parse_delivery_config
from nanogridata_gateway.errors import ConfigError

from conftest import Collector, delivery_raw, free_port, make_record, wait_for

GATEWAY_SRC = Path(__file__).resolve().parents[2] / "src"


def _store(raw: dict[str, Any]) -> DeliveryStore:
    return open_store(parse_delivery_config(raw, env={}), CollectorRegistry())


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/nothing-listens-here"


def _spool_undelivered(tmp_path: Path, sinks: dict[str, dict[str, Any]], count: int, **extra: Any) -> None:
    raw = delivery_raw(tmp_path, sinks, **extra)

    async def run() -> None:
        store = _store(raw)
        await store.start()
        await asyncio.gather(*(store.append(make_record(seq)) for seq in range(count)))
        await store.close()

    asyncio.run(run())


def test_a_renamed_sink_refuses_the_start_until_its_records_are_dropped_explicitly(tmp_path: Path) -> None:
    _spool_undelivered(tmp_path, {"old": {"type": "http_json", "url": _dead_url()}}, 25)
    out = tmp_path / "new.jsonl"
    renamed = {"new": {"type": "jsonl", "path": str(out)}}

    with pytest.raises(ConfigError) as refused:
        _store(delivery_raw(tmp_path, renamed))
    message = str(refused.value)
    assert refused.value.key == "spool.drop_sinks"
    assert "'old'" in message and "25 records" in message and 'drop_sinks = ["old"]' in message
    # Refusing changed nothing: the old sink, configured again, still owes all 25.
    store = _store(delivery_raw(tmp_path, {"old": {"type": "http_json", "url": _dead_url()}}))
    assert store.spool.record_count == 25
    asyncio.run(store.close())

    async def drop() -> None:
        store = _store(delivery_raw(tmp_path, renamed, spool={"drop_sinks": ["old"]}))
        assert "old" not in store.spool.bits
        assert store.spool.record_count == 0  # owed to nobody else: gone, as asked
        await store.start()
        await store.append(make_record(100))
        await wait_for(lambda: store.spool.record_count == 0, 30, "the new sink to deliver")
        await store.close()

    asyncio.run(drop())
    assert [json.loads(line)["seq"] for line in out.read_text().splitlines()] == [100]
    # Once dropped, the key may stay in the config: the next start is a normal one.
    asyncio.run(_store(delivery_raw(tmp_path, renamed, spool={"drop_sinks": ["old"]})).close())


def test_a_removed_sink_that_owes_nothing_goes_quietly(tmp_path: Path, collector: Collector) -> None:
    sinks = {"alba": {"type": "http_json", "url": collector.url}}
    raw = delivery_raw(tmp_path, sinks)

    async def deliver_all() -> None:
        store = _store(raw)
        await store.start()
        await asyncio.gather(*(store.append(make_record(seq)) for seq in range(10)))
        await wait_for(lambda: store.spool.record_count == 0, 30, "delivery")
        await store.close()

    asyncio.run(deliver_all())
    store = _store(delivery_raw(tmp_path, {"vm": {"type": "influx_line", "url": collector.url}}))
    assert "alba" not in store.spool.bits
    asyncio.run(store.close())


def _gateway_toml(tmp_path: Path, server_extra: str = "") -> Path:
    return serve_config(
        tmp_path,
        free_port(),
        free_port(),
        spool=tmp_path / "spool" / "spool.db",
        sink="new",
        server_extra=server_extra,
    )


def _run_cli(command: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        PYTHONPATH=str(GATEWAY_SRC),
        NANOGRIDATA_SECRET_MODEL_10="6be2a0f4c91d58e3b7024fd6a1c83e9b50f7d2a46c1e89b3f0a5d7c2e94b6183",
    )
    return subprocess.run(
        [sys.executable, "-m", "nanogridata_gateway.cli", command, "-c", str(config)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_check_config_and_serve_exit_2_naming_the_orphaned_sink(tmp_path: Path) -> None:
    _spool_undelivered(tmp_path, {"old": {"type": "http_json", "url": _dead_url()}}, 7)
    config = _gateway_toml(tmp_path)
    for command in ("check-config", "serve"):
        done = _run_cli(command, config)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "'old'" in done.stderr and "7 records" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_several_workers_are_refused_because_their_replay_windows_are_not_shared(tmp_path: Path) -> None:
    # With per-process replay windows a retransmitted clockless frame that landed on another
    # worker was stored again with a new timestamp: a second point in an influx_line sink.
    config = _gateway_toml(tmp_path, "workers = 2\nreuse_port = true")
    for command in ("check-config", "serve"):
        done = _run_cli(command, config)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "server.workers" in done.stderr and "workers = 1" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_a_route_that_stops_naming_a_sink_keeps_its_spooled_records(
    tmp_path: Path, collector: Collector
) -> None:
    out = tmp_path / "cycle.jsonl"
    cycle_down = {"type": "http_json", "url": _dead_url()}
    _spool_undelivered(
        tmp_path, {"alba": {"type": "http_json", "url": collector.url}, "cycle": cycle_down}, 30
    )

    # cycle is still defined but no route names it any more; it comes back up (as a jsonl file).
    sinks = {
        "alba": {"type": "http_json", "url": collector.url},
        "cycle": {"type": "jsonl", "path": str(out)},
    }
    raw = delivery_raw(tmp_path, sinks)
    raw["routes"] = {"TELEMETRY": ["alba"], "EVENT": ["alba"], "CONFIG": ["alba"], "COMMAND": ["local"]}

    async def run() -> None:
        store = _store(raw)
        await store.start()
        await store.append(make_record(100))  # routed to alba only
        await wait_for(lambda: store.spool.record_count == 0, 30, "both sinks to drain the backlog")
        await store.close()

    asyncio.run(run())
    assert sorted(json.loads(line)["seq"] for line in out.read_text().splitlines()) == list(range(30))
    assert {r["seq"] for r in collector.records} == {*range(30), 100}
