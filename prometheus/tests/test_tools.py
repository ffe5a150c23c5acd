"""Tests of the monitoring files as the roles render them, and of the rules checker."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

PROM_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = PROM_DIR.parent
sys.path.insert(0, str(PROM_DIR / "tools"))

import check_rules  # noqa: E402

RENDER = REPO_ROOT / "ansible" / "ci" / "render" / "render.sh"
RUNBOOK = REPO_ROOT / "docs" / "runbooks" / "alerts.md"
PORTS: dict[str, Any] = yaml.safe_load(
    (REPO_ROOT / "ansible" / "group_vars" / "all" / "ports.yml").read_text()
)
BASE = "https://example.test/alerts.md"


def _render(out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Render with the roles (Ansible): ansible/ci/render/render.sh --out OUT OPTIONS..."""
    # Generous: ansible-playbook starts slowly on a CI machine shared with the labs.
    return subprocess.run(
        [str(RENDER), "--out", str(out), *options], capture_output=True, text=True, timeout=600, check=False
    )


def _rendered(out: Path, *options: str) -> Path:
    result = _render(out, *options)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's files, with the TLS probe on and an example runbook base URL."""
    out = tmp_path_factory.mktemp("lab")
    return _rendered(out, "-e", "ngd_device_tls_enabled=true", "-e", f"ngd_runbook_base_url={BASE}")


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _rendered(tmp_path_factory.mktemp("production"), "--env", "production")


@pytest.fixture
def lab_copy(lab: Path, tmp_path: Path) -> Path:
    """A copy of the lab's files that a test may change."""
    copy = tmp_path / "lab"
    shutil.copytree(lab, copy)
    return copy


def _jobs(out: Path) -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def _targets(job: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t, sc["labels"].get("instance", "")) for sc in job["static_configs"] for t in sc["targets"]]


def _ip(out: Path, host: str) -> str:
    """HOST's address in the inventory render.sh used (made from scripts/lab/hosts.tsv)."""
    inventory = yaml.safe_load((out / "inventory.yml").read_text())
    group = next(g for g in inventory["all"]["children"].values() if host in (g["hosts"] or {}))
    address: str = group["hosts"][host]["ngd_private_ip"]
    return address


def test_lab_scrapes_every_node_directly_never_the_vip(lab: Path) -> None:
    jobs = _jobs(lab)
    assert _targets(jobs["gateway"]) == [
        (f"{_ip(lab, 'gw-a')}:{PORTS['ngd_gateway_metrics_port']}", "gw-a"),
        (f"{_ip(lab, 'gw-b')}:{PORTS['ngd_gateway_metrics_port']}", "gw-b"),
    ]
    node = {instance for _, instance in _targets(jobs["node"])}
    assert node == {"gw-a", "gw-b", "mon", "collector"}  # devices run no node_exporter
    assert _targets(jobs["victoriametrics"]) == [
        (f"{_ip(lab, 'collector')}:{PORTS['ngd_victoriametrics_port']}", "collector")
    ]
    vip = _targets(jobs["blackbox_vip"])[0][0].rsplit(":", 1)[0]
    assert vip not in {_ip(lab, host) for host in ("gw-a", "gw-b", "mon", "collector", "sim")}
    for name, job in jobs.items():
        if not name.startswith("blackbox_vip"):
            assert all(not t.startswith(f"{vip}:") for t, _ in _targets(job)), name
    assert _targets(jobs["blackbox_vip"])[0][0] == f"{vip}:{PORTS['ngd_device_port']}"
    assert _targets(jobs["blackbox_vip_tls"])[0][0] == f"{vip}:{PORTS['ngd_device_tls_port']}"


def test_production_uses_default_intervals_and_no_tls_probe(production: Path) -> None:
    config = yaml.safe_load((production / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == "15s"
    assert config["global"]["external_labels"] == {"env": "production"}
    assert "blackbox_vip_tls" not in _jobs(production)
    alertmanager = yaml.safe_load((production / "alertmanager.yml").read_text())
    receivers = {r["name"]: r for r in alertmanager["receivers"]}
    assert receivers["pager"]["webhook_configs"][0]["send_resolved"] is True
    assert receivers["deadman"]["webhook_configs"][0]["url"] == "http://127.0.0.1:9/deadman"


def test_production_without_pager_receiver_is_refused(tmp_path: Path) -> None:
    result = _render(tmp_path, "--env", "production", "-e", "ngd_alert_pager_webhook_url=")
    assert result.returncode == 1
    assert "production needs a pager receiver" in result.stderr
    assert "vault_alert_pager_webhook_url" in result.stderr
    assert not (tmp_path / "alertmanager.yml").exists()


def test_runbook_base_url_comes_from_one_variable(lab: Path) -> None:
    urls = [
        rule["annotations"]["runbook_url"]
        for path in (lab / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert urls
    assert all(url.startswith(f"{BASE}#") for url in urls)


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [("GatewayDown", "gatewaydown"), ("Disk will fill: 24h!", "disk-will-fill-24h"), ("A_b-c d", "a_b-c-d")],
)
def test_github_anchor(heading: str, anchor: str) -> None:
    assert check_rules.github_anchor(heading) == anchor


def test_duplicate_headings_get_numbered_anchors() -> None:
    assert check_rules.heading_anchors("## X\n## X\n```\n## not a heading\n```\n") == {"x", "x-1"}


def test_checker_passes_on_the_real_rules(lab: Path) -> None:
    errors, alerts, _, cases = check_rules.check(lab, RUNBOOK, BASE)
    assert errors == []
    assert alerts >= 25 and cases > alerts * 2


def test_checker_fails_when_a_runbook_section_is_missing(lab: Path, tmp_path: Path) -> None:
    runbook = tmp_path / "alerts.md"
    runbook.write_text(RUNBOOK.read_text().replace("## VrrpFlapping\n", "## Vrrp flapping\n"))
    errors, *_ = check_rules.check(lab, runbook, BASE)
    assert any("VrrpFlapping" in e and "#vrrpflapping" in e for e in errors)


def test_checker_fails_without_a_non_firing_case(lab_copy: Path) -> None:
    path = lab_copy / "tests" / "gateway_test.yml"
    suite = yaml.safe_load(path.read_text())
    for test in suite["tests"]:
        test["alert_rule_test"] = [
            c
            for c in test.get("alert_rule_test", [])
            if c["alertname"] != "PeerSyncDown" or c.get("exp_alerts")
        ]
    path.write_text(yaml.safe_dump(suite))
    errors, *_ = check_rules.check(lab_copy, RUNBOOK, BASE)
    assert "PeerSyncDown: no non-firing test case (exp_alerts: [])" in errors
    assert any(e.startswith("PeerSyncDown: has `for:`") for e in errors)


def test_checker_fails_when_a_severity_variant_never_fires(lab_copy: Path) -> None:
    path = lab_copy / "tests" / "gateway_test.yml"
    path.write_text(
        path.read_text().replace("severity: critical, job: gateway", "severity: warning, job: gateway")
    )
    errors, *_ = check_rules.check(lab_copy, RUNBOOK, BASE)
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
    import expect_alerts  # tools/ is on sys.path only from here

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
    result = _render(tmp_path, "-e", "ngd_alert_email_to=oncall@example.test")
    assert result.returncode == 1
    assert "set ngd_alert_email_smarthost (host:port) and ngd_alert_email_from" in result.stderr


def test_runbooks_state_the_slo_and_thresholds_the_rules_use() -> None:
    """docs/runbooks/alerts.md quotes the numbers of prometheus/defaults.yml, their one place."""
    defaults = yaml.safe_load((PROM_DIR / "defaults.yml").read_text())
    runbook = " ".join(RUNBOOK.read_text().split())
    for phrase in (
        f"SLO ({defaults['ngd_slo_ingest_target'] * 100:g} % of valid frames",
        f"exceeds {defaults['ngd_alert_ack_latency_p99_s'] * 1000:g} ms",
        f"warning above {defaults['ngd_alert_spool_full_warning'] * 100:g} %",
        f"critical above {defaults['ngd_alert_spool_full_critical'] * 100:g} %",
    ):
        assert phrase in runbook, f"docs/runbooks/alerts.md should say {phrase!r} (prometheus/defaults.yml)"
    spool_percentages = set(re.findall(r"spool (?:reaches|passes) (\d+) %", runbook))
    assert spool_percentages == {f"{defaults['ngd_alert_spool_full_warning'] * 100:g}"}


def test_rules_take_the_thresholds_from_the_defaults(lab: Path) -> None:
    defaults = yaml.safe_load((PROM_DIR / "defaults.yml").read_text())
    rules = [
        (rule["alert"] + "/" + rule["labels"]["severity"], rule["expr"])
        for path in (lab / "rules").glob("alerts-*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
    exprs = dict(rules)
    assert f"> {defaults['ngd_alert_ack_latency_p99_s']}" in exprs["GatewayAckLatencyHigh/warning"]
    assert f"> {defaults['ngd_alert_spool_full_warning']}" in exprs["SpoolNearlyFull/warning"]
    assert f"> {defaults['ngd_alert_spool_full_critical']}" in exprs["SpoolNearlyFull/critical"]
    budget = f"{1 - defaults['ngd_slo_ingest_target']:g}"
    burns = [e for k, e in rules if k.startswith("IngestErrorBudgetBurn/")]
    assert len(burns) == 4 and all(budget in e for e in burns)
