"""The whole pair (ha-pair scenario, or a real environment after site.yml/deploy.yml)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

import pytest
import testinfra.host

from conftest import wait_for

pytestmark = pytest.mark.ha_pair

SIM = "/opt/nanogridata/gateway/current/venv/bin/nanogridata-sim"


def run_once(name: str, groups: dict[str, list[str]]) -> None:
    if not groups["gateways"] or name != groups["gateways"][-1]:
        pytest.skip("pair-wide check, run once (from the last gateway)")


def test_frames_through_the_vip_are_acked_and_stored(
    host: testinfra.host.Host,
    name: str,
    groups: dict[str, list[str]],
    hostvars: dict[str, Any],
    inventory: Any,
    other_host: Callable[[str], testinfra.host.Host],
) -> None:
    """Devices talk to the VIP; every frame is ACKed (0 lost) and lands in VictoriaMetrics."""
    run_once(name, groups)
    device_base = 0x7E000000 + (hash(name) & 0xFFFF) * 16
    sim = host.run(
        f"{SIM} --host {hostvars['ngd_vip']} --port {hostvars['ngd_device_port']} --devices 4 "
        f"--rate 20 --max-frames 40 --duration 20 --model 0x10 --device-base {device_base} "
        "--drain 10 -c /etc/nanogridata/gateway.toml --json"
    )
    assert sim.rc == 0, sim.stdout + sim.stderr
    report = json.loads(sim.stdout.strip().splitlines()[-1])
    assert report["acked"] >= 40 and report["lost"] == 0, report
    collector = groups["collectors"][0]
    vm = other_host(collector)
    base = f"http://127.0.0.1:{hostvars['ngd_victoriametrics_port']}"
    query = shlex.quote('match[]={__name__=~"nanogridata_0x10_.+"}')

    def stored_series() -> int:
        vm.run(f"curl -fsS {base}/internal/force_flush")
        # --data-urlencode: in a plain -d form body the regex's "+" would arrive as a space.
        out = vm.run(f"curl -fsS {base}/api/v1/export --data-urlencode {query}").stdout
        return len([row for row in out.splitlines() if row.strip()])

    wait_for(lambda: stored_series() > 0, "device telemetry in VictoriaMetrics", timeout=30, step=1)


def test_prometheus_has_every_target_up(
    name: str,
    groups: dict[str, list[str]],
    hostvars: dict[str, Any],
    other_host: Callable[[str], testinfra.host.Host],
) -> None:
    run_once(name, groups)
    mon = other_host(groups["monitoring"][0])
    base = f"http://127.0.0.1:{hostvars['ngd_prometheus_port']}"

    def down() -> list[str]:
        out = mon.check_output(f"curl -fsS '{base}/api/v1/targets?state=active'")
        targets = json.loads(out)["data"]["activeTargets"]
        return [
            f"{t['labels']['job']}/{t['labels'].get('instance')}: {t.get('lastError')}"
            for t in targets
            if t["health"] != "up"
        ]

    wait_for(lambda: not down(), "every Prometheus target up", timeout=90, step=3)
