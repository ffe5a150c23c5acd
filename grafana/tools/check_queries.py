#!/usr/bin/env python3
"""Run every dashboard panel query against a real Prometheus and VictoriaMetrics.

    grafana/tools/check_queries.py --prometheus "http://$(scripts/lab.sh ip mon):9090" \
        --victoriametrics "http://$(scripts/lab.sh ip collector):8428"

No Grafana server can run on the project's machines, so this stands in for "open every
dashboard": each target of grafana/dashboards/*.json is sent, with the dashboard variables
substituted ("All"), to the /api/v1/query endpoint of the datasource it names. Fails when a
query errors or returns no data (run it after traffic has flowed, e.g. after a lab drill).

--allow-empty-file FILE (e.g. grafana/ci/empty-in-healthy-lab.txt) names single panel queries,
as "<dashboard uid> <panel title> / <refId>", that legitimately return nothing in a healthy lab
(an error counter that never counted): an empty result of those passes, marked "(allowed: ...)";
an error does not. Every line needs a reason, and a listed query that does not exist fails.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboards"
PROMETHEUS_UID = "ngd-prometheus"
VICTORIAMETRICS_UID = "ngd-victoriametrics"
# Grafana's built-in variables, at values a 6-hour dashboard would use.
BUILTINS = {"__rate_interval": "1m", "__interval": "30s", "__range": "6h"}


@dataclass(frozen=True)
class Target:
    dashboard: str
    panel: str
    datasource: str
    expr: str
    uid: str = ""
    ref_id: str = ""

    @property
    def key(self) -> str:
        """How the allow-list names this query: "<dashboard uid> <panel title> / <refId>"."""
        return " ".join(f"{self.uid} {self.panel} / {self.ref_id}".split())


def load_allow_list(path: Path) -> dict[str, str]:
    """Lines "<dashboard uid> <panel title> / <refId>  # reason"; '#' lines are comments."""
    allowed: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, reason = line.partition("#")
        if not sep or not reason.strip():
            raise SystemExit(f"{path}:{number}: every allowed-empty query needs '# reason'")
        allowed[" ".join(key.split())] = reason.strip()
    return allowed


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace $var, ${var} and [[var]] the way Grafana does for the "All" (regex) value."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name in variables:
            return variables[name]
        raise KeyError(f"unknown dashboard variable ${name} in: {expr}")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)|\[\[(\w+)\]\]", value, expr)


def targets(dashboard: dict[str, Any]) -> list[Target]:
    variables = dict(BUILTINS)
    for variable in dashboard.get("templating", {}).get("list", []):
        variables[variable["name"]] = variable.get("allValue") or ".+"
    found = []
    panels = list(dashboard.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))  # collapsed rows
        for target in panel.get("targets", []):
            datasource = (target.get("datasource") or panel.get("datasource") or {}).get("uid", "")
            found.append(
                Target(
                    dashboard["title"],
                    panel.get("title", ""),
                    datasource,
                    substitute(target["expr"], variables),
                    dashboard.get("uid", ""),
                    target.get("refId", ""),
                )
            )
    return found


def run_query(base_url: str, expr: str, timeout: float) -> tuple[bool, str]:
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - operator-given URL
            body = json.load(resp)
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}: {exc.read()[:200].decode(errors='replace')}"
    except (OSError, ValueError) as exc:
        return False, f"request failed: {exc}"
    if body.get("status") != "success":
        return False, f"error: {body.get('error', body)}"
    result = body.get("data", {}).get("result")
    if not result:
        return False, "empty result"
    return True, f"{len(result) if isinstance(result, list) else 1} series"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--victoriametrics", required=True, help="VictoriaMetrics base URL")
    parser.add_argument("--dashboards", type=Path, default=DASHBOARD_DIR)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument(
        "--allow-empty",
        action="append",
        default=[],
        metavar="UID",
        help="accept empty results from this datasource uid (syntax-only check, e.g. an empty TSDB)",
    )
    parser.add_argument(
        "--allow-empty-file",
        type=Path,
        metavar="FILE",
        help="panel queries allowed to return no data, with the reason (see above)",
    )
    args = parser.parse_args(argv)
    urls = {PROMETHEUS_UID: args.prometheus, VICTORIAMETRICS_UID: args.victoriametrics}
    allowed = load_allow_list(args.allow_empty_file) if args.allow_empty_file else {}
    failures = 0
    total = 0
    seen: set[str] = set()
    for path in sorted(args.dashboards.glob("*.json")):
        for target in targets(json.loads(path.read_text())):
            total += 1
            seen.add(target.key)
            if target.datasource not in urls:
                ok, detail = False, f"unknown datasource uid '{target.datasource}'"
            else:
                ok, detail = run_query(urls[target.datasource], target.expr, args.timeout)
                if not ok and detail == "empty result" and target.datasource in args.allow_empty:
                    ok, detail = True, "no data (allowed)"
                elif not ok and detail == "empty result" and target.key in allowed:
                    ok, detail = True, f"no data (allowed: {allowed[target.key]})"
            if not ok:
                failures += 1
            print(
                f"{'ok  ' if ok else 'FAIL'} {target.dashboard} / {target.panel} / {target.ref_id}: "
                f"{detail}" + ("" if ok else f"\n     {target.expr}")
            )
    for key in sorted(set(allowed) - seen):
        failures += 1
        print(f"FAIL allow-list names a query that no dashboard has: {key}")
    print(f"check_queries: {total - failures}/{total} panel queries passed")
    return 1 if failures or not total else 0


if __name__ == "__main__":
    sys.exit(main())
