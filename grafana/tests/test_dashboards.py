"""Dashboards as code: committed JSON == generator output, uids, datasources, metric names."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

GRAFANA_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = GRAFANA_DIR.parent
sys.path.insert(0, str(GRAFANA_DIR / "tools"))

import check_queries  # noqa: E402
import generate  # noqa: E402

RENDER = REPO_ROOT / "ansible" / "ci" / "render" / "render.sh"
DASHBOARDS = {
    path.stem: json.loads(path.read_text()) for path in sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's monitoring files as the roles render them (Ansible: ansible/ci/render/render.sh)."""
    out = tmp_path_factory.mktemp("rendered")
    # Generous: ansible-playbook starts slowly on a CI machine shared with the labs.
    result = subprocess.run(
        [str(RENDER), "--out", str(out)], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr
    return out


def _provisioned_datasources(rendered: Path) -> list[dict[str, Any]]:
    datasources: list[dict[str, Any]] = yaml.safe_load((rendered / "grafana-datasources.yml").read_text())[
        "datasources"
    ]
    return datasources


def _ip(rendered: Path, group: str) -> str:
    """The address of GROUP's first host in the inventory render.sh used (from scripts/lab/hosts.tsv)."""
    hosts = yaml.safe_load((rendered / "inventory.yml").read_text())["all"]["children"][group]["hosts"]
    address: str = next(iter(hosts.values()))["ngd_private_ip"]
    return address


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels, found = list(dashboard["panels"]), []
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        found.append(panel)
    return found


def test_committed_json_equals_generator_output() -> None:
    assert set(DASHBOARDS) == set(generate.DASHBOARDS), "run grafana/tools/generate.py"
    for name, factory in generate.DASHBOARDS.items():
        committed = (GRAFANA_DIR / "dashboards" / f"{name}.json").read_text()
        assert committed == generate.render(factory), f"{name}.json is stale: run grafana/tools/generate.py"


def test_dashboard_uids_and_titles_are_unique() -> None:
    uids = [d["uid"] for d in DASHBOARDS.values()]
    titles = [d["title"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids) == 4
    assert len(set(titles)) == len(titles)
    assert all(re.fullmatch(r"[a-z0-9-]{1,40}", uid) for uid in uids)


def test_provisioned_datasources_point_at_the_lab_hosts_with_fixed_uids(rendered: Path) -> None:
    by_uid = {d["uid"]: d for d in _provisioned_datasources(rendered)}
    ports = yaml.safe_load((REPO_ROOT / "ansible" / "group_vars" / "all" / "ports.yml").read_text())
    prometheus = f"http://{_ip(rendered, 'monitoring')}:{ports['ngd_prometheus_port']}"
    assert by_uid[generate.PROMETHEUS_UID]["url"] == prometheus
    victoriametrics = f"http://{_ip(rendered, 'collectors')}:{ports['ngd_victoriametrics_port']}"
    assert by_uid[generate.VICTORIAMETRICS_UID]["url"] == victoriametrics


def test_every_panel_and_target_uses_a_provisioned_datasource(rendered: Path) -> None:
    uids = {d["uid"] for d in _provisioned_datasources(rendered)}
    for name, dashboard in DASHBOARDS.items():
        for variable in dashboard.get("templating", {}).get("list", []):
            assert variable["datasource"]["uid"] in uids, f"{name}: variable {variable['name']}"
        for panel in _panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] in uids, f"{name}: {panel['title']}"
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids, f"{name}: {panel['title']}"
                assert target["expr"].strip()


def test_gateway_metric_names_exist_in_the_contract_and_rules() -> None:
    contract = (REPO_ROOT / "docs" / "metrics.md").read_text()
    recorded = {
        rule["record"]
        for group in yaml.safe_load((REPO_ROOT / "prometheus" / "rules" / "recording.yml").read_text())[
            "groups"
        ]
        for rule in group["rules"]
    }
    for name, dashboard in DASHBOARDS.items():
        for target in check_queries.targets(dashboard):
            for metric in re.findall(r"\b(nanogridata_[a-z_]+|keepalived_[a-z_]+)\b", target.expr):
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                if target.datasource == generate.VICTORIAMETRICS_UID:
                    continue  # device telemetry series, named by the sink
                assert f"`{base}`" in contract, f"{name}: {metric} is not in docs/metrics.md"
            for rule in re.findall(r"\b[a-z_]*:[a-z0-9_]+:[a-z0-9_]+\b", target.expr):
                assert rule in recorded, f"{name}: recording rule {rule} does not exist"


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('rate(x{instance=~"$instance"}[$__rate_interval])', 'rate(x{instance=~".+"}[1m])'),
        ('y{device=~"${device}"}', 'y{device=~".+"}'),
        ("z[[instance]]", "z.+"),
    ],
)
def test_variable_substitution(expr: str, expected: str) -> None:
    assert (
        check_queries.substitute(expr, {"instance": ".+", "device": ".+", "__rate_interval": "1m"})
        == expected
    )


def test_unknown_variable_is_an_error() -> None:
    with pytest.raises(KeyError, match=r"\$nope"):
        check_queries.substitute("x{a=~'$nope'}", {})


def test_targets_cover_every_panel_query_with_variables_substituted() -> None:
    for dashboard in DASHBOARDS.values():
        found = check_queries.targets(dashboard)
        expected = sum(len(p.get("targets", [])) for p in _panels(dashboard))
        assert len(found) == expected
        assert all("$" not in t.expr for t in found)
