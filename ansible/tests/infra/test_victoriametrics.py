"""victoriametrics role: the collector stores what the gateways write, once per sample."""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

import pytest
import testinfra.host

from conftest import wait_for

pytestmark = pytest.mark.victoriametrics


def test_service_runs_with_dedup(host: testinfra.host.Host) -> None:
    service = host.service("victoria-metrics")
    assert service.is_enabled and service.is_running
    assert "-dedup.minScrapeInterval=1ms" in host.file("/etc/default/victoria-metrics").content_string


def test_line_protocol_write_is_stored_once(host: testinfra.host.Host, hostvars: dict[str, Any]) -> None:
    """The same point written three times (an at-least-once retry) is exported once."""
    base = f"http://127.0.0.1:{hostvars['ngd_victoriametrics_port']}"
    wait_for(lambda: host.run(f"curl -fsS -o /dev/null {base}/health").rc == 0, "VictoriaMetrics up")
    stamp_ns = time.time_ns()
    series = f"ngd_infra_test_{stamp_ns}"
    line = f"{series},device=0x1 value=41.5 {stamp_ns}"
    for _ in range(3):
        host.check_output(f"curl -fsS --data-binary {shlex.quote(line)} {base}/write")
    host.check_output(f"curl -fsS {base}/internal/force_flush")

    def exported() -> list[dict[str, Any]]:
        out = host.check_output(f"curl -fsS {base}/api/v1/export --data-urlencode 'match[]={series}_value'")
        return [json.loads(row) for row in out.splitlines() if row.strip()]

    wait_for(lambda: len(exported()) == 1, "the series to be exported")
    rows = exported()
    assert rows[0]["values"] == [41.5]
    assert rows[0]["metric"]["device"] == "0x1"
