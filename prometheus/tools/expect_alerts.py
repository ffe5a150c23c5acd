#!/usr/bin/env python3
"""Wait until alerts reach a state in a running Prometheus: the check the HA drills need.

    expect_alerts.py --prometheus "http://$(scripts/lab.sh ip mon):9090" \
        --alert 'GatewayDown{instance="gw-a"}' --state firing --timeout 150
    expect_alerts.py --prometheus "http://$(scripts/lab.sh ip mon):9090" --alert GatewayDown --state inactive

--state firing|pending: every --alert must have at least one matching ALERTS series in that state
(firing also accepts nothing else); inactive: none may be pending or firing. Exits 0 when the
condition holds within --timeout, 1 otherwise (printing what was seen last). Queries are bounded:
one request every --interval seconds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

SELECTOR = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<labels>\{.*\})?$")


def alert_query(spec: str) -> str:
    """`Name{a="b"}` -> `ALERTS{alertname="Name",a="b"}`."""
    match = SELECTOR.match(spec.strip())
    if not match:
        raise ValueError(f"--alert '{spec}': expected AlertName or AlertName{{label=\"value\",...}}")
    inner = (match.group("labels") or "{}")[1:-1].strip()
    return f'ALERTS{{alertname="{match.group("name")}"{"," + inner if inner else ""}}}'


def states(base_url: str, spec: str, timeout: float = 5.0) -> list[str]:
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': alert_query(spec)})}"
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - operator-given URL
        body: dict[str, Any] = json.load(resp)
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {body}")
    return sorted(series["metric"].get("alertstate", "?") for series in body["data"]["result"])


def satisfied(seen: list[str], state: str) -> bool:
    if state == "inactive":
        return not seen
    return state in seen


def wait(
    base_url: str, specs: list[str], state: str, timeout: float, interval: float
) -> dict[str, list[str]]:
    """Return the last observation; raise TimeoutError when the condition did not hold in time."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {spec: states(base_url, spec) for spec in specs}
        if all(satisfied(s, state) for s in seen.values()):
            return seen
        if time.monotonic() >= deadline:
            raise TimeoutError(f"after {timeout:.0f}s: {seen}")
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--alert", action="append", required=True, help='AlertName or AlertName{label="v"}')
    parser.add_argument("--state", choices=["firing", "pending", "inactive"], default="firing")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        seen = wait(args.prometheus, args.alert, args.state, args.timeout, args.interval)
    except ValueError as exc:
        print(f"expect_alerts: {exc}", file=sys.stderr)
        return 2
    except (TimeoutError, RuntimeError, OSError) as exc:
        print(f"expect_alerts: {', '.join(args.alert)} not {args.state}: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    print(f"expect_alerts: {', '.join(args.alert)} {args.state} after {elapsed:.1f}s ({seen})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
