#!/usr/bin/env python3
"""Exit 1 when an alert of the given severity is firing in the environment's Alertmanager.

Asks Alertmanager's API v2 for active, unsilenced, uninhibited alerts. By default the question
is asked on the monitoring host itself (Ansible, the connection every deploy already uses, to
127.0.0.1:PORT there): Alertmanager's port is closed to the outside by the cloud firewall and the
hosts' nftables, and must stay closed. --url asks that URL directly instead.
Exit 2 when Alertmanager cannot be asked (the deploy must not go ahead blind); exit 3 when the
monitoring host has no Alertmanager yet (a first deploy that stopped before the monitoring host
was configured: nothing to ask, the caller decides).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ANSIBLE_CFG = Path(__file__).resolve().parents[2] / "ansible" / "ansible.cfg"
QUERY = "/api/v2/alerts?active=true&silenced=false&inhibited=false"
UNIT = "prometheus-alertmanager.service"


class AskError(Exception):
    """Alertmanager could not be asked; the message says why."""


class NotInstalled(AskError):
    """The monitoring host has no Alertmanager unit yet."""


def _ansible_env(vault_file: str | None) -> dict[str, str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ANSIBLE_CFG))
    if vault_file:
        env["ANSIBLE_VAULT_PASSWORD_FILE"] = vault_file
    return env


def monitoring_host(inventory: str, vault_file: str | None) -> str:
    done = subprocess.run(
        ["ansible-inventory", "-i", inventory, "--list"],
        capture_output=True,
        text=True,
        check=False,
        env=_ansible_env(vault_file),
    )
    if done.returncode != 0:
        raise AskError(f"ansible-inventory -i {inventory} failed: {done.stderr.strip()[-400:]}")
    inv: dict[str, Any] = json.loads(done.stdout)
    hosts = inv.get("monitoring", {}).get("hosts", [])
    if not hosts:
        raise AskError(f"no host in group 'monitoring' of {inventory}")
    return str(hosts[0])


def _ad_hoc(
    inventory: str, host: str, vault_file: str | None, module: str, args: dict[str, Any]
) -> dict[str, Any]:
    """One module on one host; its result (Ansible's json callback)."""
    env = _ansible_env(vault_file) | {
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    }
    done = subprocess.run(
        ["ansible", host, "-i", inventory, "-m", module, "-a", json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )
    try:
        result: dict[str, Any] = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"][host]
    except (ValueError, KeyError, IndexError):
        raise AskError(
            f"ansible {host} -m {module} failed: {(done.stderr or done.stdout).strip()[-400:]}"
        ) from None
    if result.get("unreachable"):
        raise AskError(f"{host} is unreachable: {result.get('msg', '')}")
    return result


def alerts_on_host(inventory: str, port: int, vault_file: str | None) -> tuple[str, list[dict[str, Any]]]:
    host = monitoring_host(inventory, vault_file)
    where = f"{host}: 127.0.0.1:{port}"
    url = f"http://127.0.0.1:{port}{QUERY}"
    result = _ad_hoc(
        inventory,
        host,
        vault_file,
        "ansible.builtin.uri",
        {"url": url, "return_content": True, "timeout": 10},
    )
    if result.get("failed"):
        unit = _ad_hoc(
            inventory,
            host,
            vault_file,
            "ansible.builtin.stat",
            {"path": f"/etc/systemd/system/multi-user.target.wants/{UNIT}"},
        )
        if not unit.get("failed") and not unit.get("stat", {}).get("exists"):
            raise NotInstalled(f"no Alertmanager on {host} yet ({UNIT} is not enabled)")
        raise AskError(f"{where}: {result.get('msg', 'failed')}")
    alerts = result.get("json")
    if not isinstance(alerts, list):
        raise AskError(f"{where}: the answer is not a list of alerts")
    return where, alerts


def alerts_at(url: str) -> list[dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}{QUERY}", timeout=10) as resp:
            alerts: list[dict[str, Any]] = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise AskError(f"{url}: {exc}") from None
    return alerts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inventory", required=True)
    ap.add_argument("--port", type=int, required=True, help="ngd_alertmanager_port")
    ap.add_argument("--severity", default="critical")
    ap.add_argument(
        "--vault-password-file", help="the environment's vault password file (its group vars are read)"
    )
    ap.add_argument("--url", help="ask this Alertmanager base URL directly instead of on the monitoring host")
    args = ap.parse_args()
    try:
        if args.url:
            where, alerts = args.url, alerts_at(args.url)
        else:
            where, alerts = alerts_on_host(args.inventory, args.port, args.vault_password_file)
    except NotInstalled as exc:
        print(f"alerts: {exc}", file=sys.stderr)
        return 3
    except AskError as exc:
        print(f"alerts: cannot ask Alertmanager: {exc}", file=sys.stderr)
        return 2
    firing = [a for a in alerts if a.get("labels", {}).get("severity") == args.severity]
    for alert in firing:
        labels = alert.get("labels", {})
        print(f"FIRING {labels.get('alertname', '?')} {json.dumps(labels, sort_keys=True)}", file=sys.stderr)
    if firing:
        return 1
    print(f"alerts: no {args.severity} alert firing ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
