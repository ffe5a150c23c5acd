#!/usr/bin/env python3
"""Exit 1 when an alert of the given severity is firing in the environment's Alertmanager.

Reads the monitoring host's address from the Ansible inventory (ngd_private_ip, else
ansible_host) and asks Alertmanager's API v2 for active, unsilenced, uninhibited alerts.
Exit 2 when Alertmanager cannot be asked (the deploy must not go ahead blind).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any


def monitoring_address(inventory: str) -> str:
    out = subprocess.run(
        ["ansible-inventory", "-i", inventory, "--list"], capture_output=True, text=True, check=True
    ).stdout
    inv: dict[str, Any] = json.loads(out)
    hosts = inv.get("monitoring", {}).get("hosts", [])
    if not hosts:
        raise SystemExit(f"alerts: no host in group 'monitoring' of {inventory}")
    hostvars = inv["_meta"]["hostvars"][hosts[0]]
    return str(hostvars.get("ngd_public_ip") or hostvars.get("ngd_private_ip") or hostvars["ansible_host"])


def firing(url: str, severity: str) -> list[dict[str, Any]]:
    query = f"{url}/api/v2/alerts?active=true&silenced=false&inhibited=false"
    with urllib.request.urlopen(query, timeout=10) as resp:
        alerts: list[dict[str, Any]] = json.load(resp)
    return [a for a in alerts if a.get("labels", {}).get("severity") == severity]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--inventory", required=True)
    ap.add_argument("--port", type=int, required=True, help="ngd_alertmanager_port")
    ap.add_argument("--severity", default="critical")
    ap.add_argument("--url", help="Alertmanager base URL (default: from the inventory)")
    args = ap.parse_args()
    url = args.url or f"http://{monitoring_address(args.inventory)}:{args.port}"
    try:
        alerts = firing(url, args.severity)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"alerts: cannot ask Alertmanager at {url}: {exc}", file=sys.stderr)
        return 2
    for alert in alerts:
        labels = alert.get("labels", {})
        print(f"FIRING {labels.get('alertname', '?')} {json.dumps(labels, sort_keys=True)}", file=sys.stderr)
    if alerts:
        return 1
    print(f"alerts: no {args.severity} alert firing at {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
