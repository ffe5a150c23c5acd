"""prometheus, alertmanager and grafana roles on the monitoring host."""

from __future__ import annotations

import json
from typing import Any

import pytest
import testinfra.host
import yaml

from conftest import wait_for


def on_monitoring(name: str, groups: dict[str, list[str]]) -> None:
    if name not in groups["monitoring"]:
        pytest.skip("monitoring host only")


def api(host: testinfra.host.Host, url: str) -> Any:
    return json.loads(host.check_output(f"curl -fsS '{url}'"))


@pytest.mark.prometheus
def test_prometheus_config_and_rules_load(
    host: testinfra.host.Host, name: str, groups: dict[str, list[str]], hostvars: dict[str, Any]
) -> None:
    on_monitoring(name, groups)
    assert host.service("prometheus").is_running
    assert host.run("promtool check config /etc/prometheus/prometheus.yml").rc == 0
    base = f"http://127.0.0.1:{hostvars['ngd_prometheus_port']}"
    wait_for(lambda: host.run(f"curl -fsS -o /dev/null {base}/-/ready").rc == 0, "Prometheus ready")
    rule_groups = api(host, f"{base}/api/v1/rules")["data"]["groups"]
    names = {g["name"] for g in rule_groups}
    assert "nanogridata-ha" in names, names


@pytest.mark.prometheus
def test_prometheus_scrapes_every_node_exporter(
    host: testinfra.host.Host, name: str, groups: dict[str, list[str]], hostvars: dict[str, Any]
) -> None:
    on_monitoring(name, groups)
    base = f"http://127.0.0.1:{hostvars['ngd_prometheus_port']}"
    expected = {h for g in groups.values() for h in g}

    def up_nodes() -> set[str]:
        targets = api(host, f"{base}/api/v1/targets?state=active")["data"]["activeTargets"]
        return {
            t["labels"]["instance"] for t in targets if t["labels"]["job"] == "node" and t["health"] == "up"
        }

    wait_for(lambda: up_nodes() == expected, f"node targets up: {sorted(expected)}", timeout=60, step=2)


@pytest.mark.prometheus
def test_prometheus_admin_api_takes_the_backup_snapshot(
    host: testinfra.host.Host, name: str, groups: dict[str, list[str]], hostvars: dict[str, Any]
) -> None:
    """scripts/backup.sh snapshots the TSDB through the admin API (--web.enable-admin-api)."""
    on_monitoring(name, groups)
    assert "--web.enable-admin-api" in host.check_output("ps -o args= -C prometheus")
    base = f"http://127.0.0.1:{hostvars['ngd_prometheus_port']}"
    wait_for(lambda: host.run(f"curl -fsS -o /dev/null {base}/-/ready").rc == 0, "Prometheus ready")
    answer = json.loads(host.check_output(f"curl -fsS -XPOST {base}/api/v1/admin/tsdb/snapshot"))
    assert answer["status"] == "success", answer
    snapshot = answer["data"]["name"]
    found = host.check_output(f"find /var/lib/prometheus -maxdepth 3 -type d -path '*/snapshots/{snapshot}'")
    assert found, f"snapshot {snapshot} not under /var/lib/prometheus"
    host.run(f"rm -rf {found}")


@pytest.mark.alertmanager
def test_alertmanager_runs_and_prometheus_knows_it(
    host: testinfra.host.Host, name: str, groups: dict[str, list[str]], hostvars: dict[str, Any]
) -> None:
    on_monitoring(name, groups)
    assert host.service("prometheus-alertmanager").is_running
    assert host.run("amtool check-config /etc/prometheus/alertmanager.yml").rc == 0
    port = hostvars["ngd_alertmanager_port"]
    wait_for(
        lambda: host.run(f"curl -fsS -o /dev/null http://127.0.0.1:{port}/-/ready").rc == 0,
        "Alertmanager ready",
    )
    base = f"http://127.0.0.1:{hostvars['ngd_prometheus_port']}"
    wait_for(
        lambda: len(api(host, f"{base}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]) == 1,
        "Prometheus to discover Alertmanager",
        timeout=60,
        step=2,
    )


@pytest.mark.grafana
def test_grafana_provisioning_files(
    host: testinfra.host.Host,
    name: str,
    groups: dict[str, list[str]],
    inventory: Any,
    hostvars: dict[str, Any],
) -> None:
    on_monitoring(name, groups)
    provisioning = host.file("/etc/grafana/provisioning/datasources/nanogridata.yml")
    datasources = yaml.safe_load(provisioning.content_string)
    urls = {d["uid"]: d["url"] for d in datasources["datasources"]}
    collector_ip = inventory.get_variables(groups["collectors"][0])["ngd_private_ip"]
    assert urls["ngd-victoriametrics"] == f"http://{collector_ip}:{hostvars['ngd_victoriametrics_port']}"
    dashboards = host.run("ls /var/lib/grafana/dashboards/nanogridata/").stdout.split()
    assert dashboards and all(d.endswith(".json") for d in dashboards)
    for dashboard in dashboards:
        json.loads(host.file(f"/var/lib/grafana/dashboards/nanogridata/{dashboard}").content_string)
