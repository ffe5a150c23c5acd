"""node_exporter role: exporter up, textfile collector directory in use."""

from __future__ import annotations

from typing import Any

import pytest
import testinfra.host

from conftest import wait_for

pytestmark = pytest.mark.node_exporter


def test_exporter_serves_metrics_with_textfile_collector(
    host: testinfra.host.Host, hostvars: dict[str, Any]
) -> None:
    service = host.service("prometheus-node-exporter")
    assert service.is_enabled and service.is_running
    port = hostvars["ngd_node_exporter_port"]
    wait_for(lambda: host.socket(f"tcp://0.0.0.0:{port}").is_listening, "node exporter")
    metrics = host.check_output(f"curl -fsS http://127.0.0.1:{port}/metrics")
    assert "node_textfile_scrape_error 0" in metrics


def test_textfile_metric_is_exported(host: testinfra.host.Host, hostvars: dict[str, Any]) -> None:
    directory = "/var/lib/prometheus/node-exporter"
    port = hostvars["ngd_node_exporter_port"]
    host.run(f"printf 'ngd_infra_test_probe 42\\n' > {directory}/ngd_infra_test.prom")
    try:
        metrics = host.check_output(f"curl -fsS http://127.0.0.1:{port}/metrics")
        assert "ngd_infra_test_probe 42" in metrics
    finally:
        host.run(f"rm -f {directory}/ngd_infra_test.prom")
