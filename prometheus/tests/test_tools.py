"""Tests of prometheus/tools: the renderer (inventory -> configs) and the rules checker."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

PROM_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = PROM_DIR.parent
sys.path.insert(0, str(PROM_DIR / "tools"))

import check_rules  # noqa: E402
import render  # noqa: E402

LAB = PROM_DIR / "tests" / "fixtures" / "lab-inventory.yml"
PROD = PROM_DIR / "tests" / "fixtures" / "production-inventory.yml"
RUNBOOK = REPO_ROOT / "docs" / "runbooks" / "alerts.md"
PORTS: dict[str, Any] = yaml.safe_load(
    (REPO_ROOT / "ansible" / "group_vars" / "all" / "ports.yml").read_text()
)


def _render(tmp_path: Path, inventory: Path, **overrides: Any) -> Path:
    out = tmp_path / "out"
    render.render_all(render.load_inventory(inventory, overrides), out)
    return out


def _jobs(out: Path) -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def _targets(job: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t, sc["labels"].get("instance", "")) for sc in job["static_configs"] for t in sc["targets"]]


def test_lab_scrapes_every_node_directly_never_the_vip(tmp_path: Path) -> None:
    jobs = _jobs(_render(tmp_path, LAB))
    assert _targets(jobs["gateway"]) == [
        (f"172.30.53.11:{PORTS['ngd_gateway_metrics_port']}", "gw-a"),
        (f"172.30.53.12:{PORTS['ngd_gateway_metrics_port']}", "gw-b"),
    ]
    node = {instance for _, instance in _targets(jobs["node"])}
    assert node == {"gw-a", "gw-b", "mon", "collector"}  # devices run no node_exporter
    assert _targets(jobs["victoriametrics"]) == [
        (f"172.30.53.30:{PORTS['ngd_victoriametrics_port']}", "collector")
    ]
    for name, job in jobs.items():
        if not name.startswith("blackbox_vip"):
            assert all(not t.startswith("172.30.53.100:") for t, _ in _targets(job)), name
    assert _targets(jobs["blackbox_vip"])[0][0] == f"172.30.53.100:{PORTS['ngd_device_port']}"
    assert _targets(jobs["blackbox_vip_tls"])[0][0] == f"172.30.53.100:{PORTS['ngd_device_tls_port']}"


def test_production_uses_default_intervals_and_no_tls_probe(tmp_path: Path) -> None:
    out = _render(tmp_path, PROD)
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == "15s"
    assert config["global"]["external_labels"] == {"env": "production"}
    assert "blackbox_vip_tls" not in _jobs(out)
    alertmanager = yaml.safe_load((out / "alertmanager.yml").read_text())
    receivers = {r["name"]: r for r in alertmanager["receivers"]}
    assert receivers["pager"]["webhook_configs"][0]["send_resolved"] is True
    assert receivers["deadman"]["webhook_configs"][0]["url"] == "http://127.0.0.1:9/deadman"


def test_production_without_pager_receiver_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        render.RenderError, match="ngd_alert_pagerduty_routing_key or ngd_alert_pager_webhook_url"
    ):
        _render(tmp_path, PROD, ngd_alert_pager_webhook_url="")


def test_missing_group_is_named(tmp_path: Path) -> None:
    inventory = yaml.safe_load(LAB.read_text())
    del inventory["all"]["children"]["collectors"]
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    with pytest.raises(render.RenderError, match="group 'collectors' is missing"):
        render.load_inventory(path, {})


def test_runbook_base_url_comes_from_one_variable(tmp_path: Path) -> None:
    out = _render(tmp_path, LAB, ngd_runbook_base_url="https://example.test/rb.md")
    urls = [
        rule["annotations"]["runbook_url"]
        for path in (out / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert urls
    assert all(url.startswith("https://example.test/rb.md#") for url in urls)


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [("GatewayDown", "gatewaydown"), ("Disk will fill: 24h!", "disk-will-fill-24h"), ("A_b-c d", "a_b-c-d")],
)
def test_github_anchor(heading: str, anchor: str) -> None:
    assert check_rules.github_anchor(heading) == anchor


def test_duplicate_headings_get_numbered_anchors() -> None:
    assert check_rules.heading_anchors("## X\n## X\n```\n## not a heading\n```\n") == {"x", "x-1"}


def _rendered_copy(tmp_path: Path) -> tuple[Path, str]:
    base = "https://example.test/alerts.md"
    return _render(tmp_path, LAB, ngd_runbook_base_url=base), base


def test_checker_passes_on_the_real_rules(tmp_path: Path) -> None:
    out, base = _rendered_copy(tmp_path)
    errors, alerts, _, cases = check_rules.check(out, RUNBOOK, base)
    assert errors == []
    assert alerts >= 25 and cases > alerts * 2


def test_checker_fails_when_a_runbook_section_is_missing(tmp_path: Path) -> None:
    out, base = _rendered_copy(tmp_path)
    runbook = tmp_path / "alerts.md"
    runbook.write_text(RUNBOOK.read_text().replace("## VrrpFlapping\n", "## Vrrp flapping\n"))
    errors, *_ = check_rules.check(out, runbook, base)
    assert any("VrrpFlapping" in e and "#vrrpflapping" in e for e in errors)


def test_checker_fails_without_a_non_firing_case(tmp_path: Path) -> None:
    out, base = _rendered_copy(tmp_path)
    path = out / "tests" / "gateway_test.yml"
    suite = yaml.safe_load(path.read_text())
    for test in suite["tests"]:
        test["alert_rule_test"] = [
            c
            for c in test.get("alert_rule_test", [])
            if c["alertname"] != "PeerSyncDown" or c.get("exp_alerts")
        ]
    path.write_text(yaml.safe_dump(suite))
    errors, *_ = check_rules.check(out, RUNBOOK, base)
    assert "PeerSyncDown: no non-firing test case (exp_alerts: [])" in errors
    assert any(e.startswith("PeerSyncDown: has `for:`") for e in errors)


def test_checker_fails_when_a_severity_variant_never_fires(tmp_path: Path) -> None:
    out, base = _rendered_copy(tmp_path)
    path = out / "tests" / "gateway_test.yml"
    path.write_text(
        path.read_text().replace("severity: critical, job: gateway", "severity: warning, job: gateway")
    )
    errors, *_ = check_rules.check(out, RUNBOOK, base)
    assert any(e.startswith("SpoolNearlyFull") and "critical" in e for e in errors)


def test_rule_metric_names_are_in_the_metrics_contract() -> None:
    contract = (REPO_ROOT / "docs" / "metrics.md").read_text()
    exprs = [
        rule["expr"]
        for path in (PROM_DIR / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
    metric = r"\b(?:nanogridata|keepalived|ngd_backup)_[a-z_]+\b"
    # [[ var ]]: a template variable (a threshold), not a metric.
    names = {m for expr in exprs for m in re.findall(metric, re.sub(r"\[\[.*?\]\]", "", expr))}
    assert names
    missing = {n for n in names if f"`{re.sub(r'_bucket$', '', n)}`" not in contract}
    assert not missing, f"not in docs/metrics.md: {sorted(missing)}"


def test_expect_alerts_builds_alerts_selectors() -> None:
    import expect_alerts  # noqa: PLC0415 - tools/ is on sys.path only from here

    assert expect_alerts.alert_query("GatewayDown") == 'ALERTS{alertname="GatewayDown"}'
    node_down = expect_alerts.alert_query('NodeDown{instance="gw-a"}')
    assert node_down == 'ALERTS{alertname="NodeDown",instance="gw-a"}'
    assert expect_alerts.satisfied([], "inactive")
    assert not expect_alerts.satisfied(["pending"], "inactive")
    assert expect_alerts.satisfied(["firing", "pending"], "firing")
    assert not expect_alerts.satisfied([], "firing")
    with pytest.raises(ValueError, match="--alert"):
        expect_alerts.alert_query("not an alert{")


def test_email_receiver_needs_a_smarthost(tmp_path: Path) -> None:
    with pytest.raises(render.RenderError, match="ngd_alert_email_smarthost"):
        _render(tmp_path, LAB, ngd_alert_email_to="oncall@example.test")


def test_inventory_group_vars_all_override_the_inventory_files_all_vars(tmp_path: Path) -> None:
    inventory_dir = tmp_path / "inv"
    (inventory_dir / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(LAB, inventory_dir / "hosts.yml")
    (inventory_dir / "group_vars" / "all" / "monitoring.yml").write_text(
        "ngd_prometheus_scrape_interval: 7s\n"
    )
    context = render.load_inventory(inventory_dir / "hosts.yml", {})
    assert context["ngd_prometheus_scrape_interval"] == "7s"  # the file itself says 5s
    assert context["ngd_prometheus_evaluation_interval"] == "5s"  # all.vars still beats defaults
