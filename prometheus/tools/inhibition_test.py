#!/usr/bin/env python3
"""Inhibition rules tested against a real Alertmanager on loopback.

Starts `prometheus-alertmanager` with the rendered config on 127.0.0.1 (free port, temporary
storage, clustering off), posts alerts with `amtool alert add`, reads them back with
`amtool alert query -o json` and compares which ones are inhibited, and by which source alert,
with the expectation. Alertmanager is always stopped at the end (also on Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from loopback_daemon import Failure, alertmanager_argv, amtool, loopback_daemon

Labels = dict[str, str]

# name -> labels; posted in phase 1
PHASE1: dict[str, Labels] = {
    "node_down_a": {"alertname": "NodeDown", "instance": "gw-a", "severity": "critical"},
    "gw_down_a": {"alertname": "GatewayDown", "instance": "gw-a", "severity": "warning"},
    "gw_down_b": {"alertname": "GatewayDown", "instance": "gw-b", "severity": "warning"},
    "stale_a": {"alertname": "KeepalivedStateStale", "instance": "gw-a", "severity": "warning"},
    "spool_crit_b": {"alertname": "SpoolNearlyFull", "instance": "gw-b", "severity": "critical"},
    "spool_warn_b": {"alertname": "SpoolNearlyFull", "instance": "gw-b", "severity": "warning"},
    "disk_warn_b": {"alertname": "DiskWillFillIn24h", "instance": "gw-b", "severity": "warning"},
    "burn_crit": {"alertname": "IngestErrorBudgetBurn", "severity": "critical", "long_window": "1h"},
    "burn_warn": {"alertname": "IngestErrorBudgetBurn", "severity": "warning", "long_window": "1d"},
    "watchdog": {"alertname": "Watchdog", "severity": "info"},
}
# target -> sources expected to inhibit it, after phase 1
EXPECTED1: dict[str, set[str]] = {
    "gw_down_a": {"node_down_a"},  # NodeDown mutes that node's service alerts
    "stale_a": {"node_down_a"},
    "spool_warn_b": {"spool_crit_b"},  # critical mutes the same alert's warning
    "burn_warn": {"burn_crit"},
}
# phase 2 adds the pair-wide alert, which mutes the per-node GatewayDown of gw-b too
PHASE2: dict[str, Labels] = {"no_ready": {"alertname": "NoGatewayReady", "severity": "critical"}}
EXPECTED2: dict[str, set[str]] = {
    **EXPECTED1,
    # gw_down_a stays attributed to NodeDown: Alertmanager reports the first matching rule only
    "gw_down_b": {"no_ready"},
}


def post(url: str, alerts: dict[str, Labels]) -> None:
    for labels in alerts.values():
        amtool(
            url,
            "alert",
            "add",
            *(f"{k}={v}" for k, v in labels.items()),
            "--annotation=summary=inhibition test",
        )


def observed(url: str, posted: dict[str, Labels]) -> dict[str, set[str]]:
    """target name -> names of the alerts Alertmanager says inhibit it."""
    alerts: list[dict[str, Any]] = json.loads(
        amtool(url, "-o", "json", "alert", "query", "--active", "--inhibited")
    )
    by_labels = {json.dumps(a["labels"], sort_keys=True): a for a in alerts}
    names_by_fp: dict[str, str] = {}
    found: dict[str, dict[str, Any]] = {}
    for name, labels in posted.items():
        alert = by_labels.get(json.dumps(labels, sort_keys=True))
        if alert is None:
            raise Failure(f"alert {name} {labels} is not in Alertmanager's list")
        names_by_fp[alert["fingerprint"]] = name
        found[name] = alert
    result: dict[str, set[str]] = {}
    for name, alert in found.items():
        sources = alert["status"].get("inhibitedBy") or []
        if sources:
            result[name] = {names_by_fp.get(fp, fp) for fp in sources}
    return result


def check_phase(url: str, posted: dict[str, Labels], expected: dict[str, set[str]], label: str) -> None:
    deadline = time.monotonic() + 15  # the inhibitor sees new alerts asynchronously
    got: dict[str, set[str]] = {}
    while time.monotonic() < deadline:
        got = observed(url, posted)
        if got == expected:
            print(f"inhibition_test: {label}: {len(got)} of {len(posted)} alerts inhibited as expected")
            return
        time.sleep(0.5)
    lines = [f"{label}: inhibited alerts differ from the expectation"]
    for name in sorted(set(got) | set(expected)):
        if got.get(name) != expected.get(name):
            lines.append(
                f"  {name}: expected inhibited by {sorted(expected.get(name, set()))}, "
                f"got {sorted(got.get(name, set()))}"
            )
    raise Failure("\n".join(lines))


def run(config: Path, binary: str) -> None:
    with loopback_daemon("alertmanager", alertmanager_argv(binary, config)) as am:
        am.wait_ready(timeout=20)
        post(am.url, PHASE1)
        check_phase(am.url, PHASE1, EXPECTED1, "phase 1 (NodeDown, critical over warning)")
        post(am.url, PHASE2)
        check_phase(am.url, {**PHASE1, **PHASE2}, EXPECTED2, "phase 2 (+ NoGatewayReady)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", type=Path, help="rendered alertmanager.yml")
    parser.add_argument("--alertmanager", default="prometheus-alertmanager", help="Alertmanager binary")
    args = parser.parse_args(argv)
    try:
        run(args.config.resolve(), args.alertmanager)
    except Failure as exc:
        print(f"inhibition_test: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
