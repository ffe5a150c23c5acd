#!/usr/bin/env python3
"""Check the alerting conventions, the runbook links and the test coverage of the rendered rules.

Run on the directory ansible/ci/render/render.sh wrote (it holds rules/ and tests/). Fails when:
  - an alert name is not CamelCase, or severity is not critical|warning|info, or summary,
    description or runbook_url is missing;
  - a runbook_url is not "<ngd_runbook_base_url>#<anchor>" with the anchor resolving to a heading
    of the runbook file (GitHub anchor rules);
  - an alert rule (each severity/label variant) has no firing test case, an alert has no
    non-firing case, or an alert with `for:` has no test group showing the pending -> firing
    edge (an empty expectation followed by a firing one). Watchdog (`vector(1)`) is exempt from
    the non-firing requirement: nothing can silence it.
Prints the alert and test-case counts on success.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

SEVERITIES = {"critical", "warning", "info"}
ALWAYS_FIRING = {"Watchdog"}
CAMEL = re.compile(r"^[A-Z][a-z0-9]+(?:[A-Z0-9][a-z0-9]*)*$")


def github_anchor(heading: str) -> str:
    """The anchor GitHub generates for a markdown heading (before de-duplication)."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def heading_anchors(markdown: str) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = defaultdict(int)
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        match = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = github_anchor(match.group(1))
            anchors.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
            seen[base] += 1
    return anchors


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: not a YAML mapping")
    return data


def _parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    total = 0.0
    for number, unit in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", str(text)):
        total += int(number) * units[unit]
    return total


def variant_key(labels: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def check(rendered: Path, runbook: Path, base_url: str) -> tuple[list[str], int, int, int]:
    errors: list[str] = []
    anchors = heading_anchors(runbook.read_text())
    # alertname -> list of static-label variants; alertname -> has `for`
    variants: dict[str, list[dict[str, Any]]] = defaultdict(list)
    has_for: dict[str, bool] = defaultdict(bool)
    rule_count = 0
    for path in sorted((rendered / "rules").glob("*.yml")):
        for group in _load(path).get("groups", []):
            for rule in group.get("rules", []):
                name = rule.get("alert")
                if not name:
                    continue
                rule_count += 1
                where = f"{path.name}: {name}"
                labels = rule.get("labels") or {}
                notes = rule.get("annotations") or {}
                if not CAMEL.match(name):
                    errors.append(f"{where}: alert name is not CamelCase")
                if labels.get("severity") not in SEVERITIES:
                    errors.append(f"{where}: labels.severity must be one of {sorted(SEVERITIES)}")
                for key in ("summary", "description", "runbook_url"):
                    if not notes.get(key):
                        errors.append(f"{where}: annotations.{key} is missing")
                url = str(notes.get("runbook_url", ""))
                prefix = f"{base_url}#"
                if not url.startswith(prefix):
                    errors.append(f"{where}: runbook_url '{url}' does not start with '{prefix}'")
                elif url[len(prefix) :] not in anchors:
                    errors.append(
                        f"{where}: runbook_url anchor '#{url[len(prefix) :]}' matches no heading in {runbook}"
                    )
                variants[name].append(labels)
                if _parse_duration(rule.get("for", "0s")) > 0:
                    has_for[name] = True

    fired: dict[str, set[tuple[tuple[str, str], ...]]] = defaultdict(set)
    silent: set[str] = set()
    edge: set[str] = set()
    case_count = 0
    for path in sorted((rendered / "tests").glob("*_test.yml")):
        for test in _load(path).get("tests", []):
            case_count += len(test.get("promql_expr_test") or [])
            timeline: dict[str, list[tuple[float, bool]]] = defaultdict(list)
            for case in test.get("alert_rule_test") or []:
                case_count += 1
                name = case["alertname"]
                expected = case.get("exp_alerts") or []
                timeline[name].append((_parse_duration(case["eval_time"]), bool(expected)))
                if not expected:
                    silent.add(name)
                for alert in expected:
                    fired[name].add(variant_key(alert.get("exp_labels") or {}))
            for name, points in timeline.items():
                points.sort()
                if any(not a[1] and b[1] for a, b in itertools.pairwise(points)):
                    edge.add(name)

    for name, rule_variants in sorted(variants.items()):
        for labels in rule_variants:
            wanted = set(variant_key(labels))
            if not any(wanted <= set(got) for got in fired[name]):
                errors.append(f"{name} {dict(sorted(labels.items()))}: no firing test case")
        if name not in silent and name not in ALWAYS_FIRING:
            errors.append(f"{name}: no non-firing test case (exp_alerts: [])")
        if has_for[name] and name not in edge:
            errors.append(f"{name}: has `for:` but no test shows the not-yet-firing -> firing edge")
    return errors, len(variants), rule_count, case_count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rendered", type=Path, help="output directory of ansible/ci/render/render.sh")
    parser.add_argument("--runbook", type=Path, required=True, help="the runbook markdown file")
    parser.add_argument("--base-url", required=True, help="ngd_runbook_base_url the rules were rendered with")
    args = parser.parse_args(argv)
    errors, alerts, rules, cases = check(args.rendered, args.runbook, args.base_url)
    for error in errors:
        print(f"check_rules: {error}", file=sys.stderr)
    if errors:
        print(f"check_rules: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print(
        f"check_rules: {alerts} alerts ({rules} alerting rules), {cases} test cases, "
        "every runbook link resolves"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
