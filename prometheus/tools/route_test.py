#!/usr/bin/env python3
"""`amtool config routes test` for every route of the rendered Alertmanager config.

Two sets of cases, each checked with amtool's own route resolution (--verify.receivers):
  - fixed cases: one per route, plus the fallback (unknown severity -> chat);
  - one case per alerting rule in the rendered rules: its labels must reach the receiver its
    severity promises (Watchdog -> deadman, critical -> pager, warning -> chat, info -> null).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

SEVERITY_RECEIVER = {"critical": "pager", "warning": "chat", "info": "null"}
FIXED_CASES: list[tuple[str, dict[str, str]]] = [
    ("deadman", {"alertname": "Watchdog", "severity": "info"}),
    ("deadman", {"alertname": "Watchdog"}),  # matched by name, whatever the severity
    ("pager", {"alertname": "NoGatewayReady", "severity": "critical"}),
    ("chat", {"alertname": "GatewayDown", "severity": "warning", "instance": "gw-a"}),
    ("null", {"alertname": "SomethingInformational", "severity": "info"}),
    ("chat", {"alertname": "NoSeverityLabel"}),  # fallback: never dropped
    ("chat", {"alertname": "OddSeverity", "severity": "page"}),
]


def expected_receiver(labels: dict[str, str]) -> str:
    if labels.get("alertname") == "Watchdog":
        return "deadman"
    return SEVERITY_RECEIVER.get(labels.get("severity", ""), "chat")


def rule_cases(rules_dir: Path) -> list[tuple[str, dict[str, str]]]:
    cases = []
    for path in sorted(rules_dir.glob("*.yml")):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule:
                    labels = {
                        "alertname": rule["alert"],
                        **{k: str(v) for k, v in (rule.get("labels") or {}).items()},
                    }
                    labels.setdefault("instance", "gw-a")
                    cases.append((expected_receiver(labels), labels))
    return cases


def run_case(amtool: str, config: Path, receiver: str, labels: dict[str, str]) -> str | None:
    args = [amtool, "config", "routes", "test", f"--config.file={config}", f"--verify.receivers={receiver}"]
    args += [f"{k}={v}" for k, v in sorted(labels.items())]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        got = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else proc.stderr.strip()
        return f"{labels}: expected receiver '{receiver}', amtool resolved '{got}'"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", type=Path, help="rendered alertmanager.yml")
    parser.add_argument("rules_dir", type=Path, help="rendered rules directory")
    parser.add_argument("--amtool", default="amtool")
    args = parser.parse_args(argv)
    cases = FIXED_CASES + rule_cases(args.rules_dir)
    failures = [f for f in (run_case(args.amtool, args.config, r, labels) for r, labels in cases) if f]
    for failure in failures:
        print(f"route_test: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(
        f"route_test: {len(cases)} route cases resolved as expected ({len(FIXED_CASES)} fixed, "
        f"{len(cases) - len(FIXED_CASES)} from alerting rules)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
