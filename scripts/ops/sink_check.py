#!/usr/bin/env python3
"""Preflight: does the environment deliver device data to a real sink?

    scripts/ops/sink_check.py ENV [--tfvars FILE --variables VARIABLES_TF] [--inventory HOSTS_YML]

A real sink is a collector host (OpenTofu's `collector_enabled = true`, or a host in the
inventory's group `collectors`) or a non-jsonl sink in `gateway_sinks` (the environment's
group_vars). Without one the gateways only append to a local JSON-lines archive on each gateway,
which nobody reads and which is rotated away: production refuses (exit 2, naming the variables to
set); other environments pass with a warning (exit 0). Prints what it found.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
BOOL_KEY = r"(?m)^\s*{key}\s*=\s*(true|false)\b"
VARIABLE_DEFAULT = r'(?ms)^variable\s+"{key}"\s*\{{.*?^\s*default\s*=\s*(true|false)\b.*?^\}}'


def collector_enabled(tfvars: str, variables_tf: str) -> bool:
    """collector_enabled as OpenTofu resolves it: the tfvars' value, else the variable's default."""
    match = re.search(BOOL_KEY.format(key="collector_enabled"), tfvars)
    if match is None:
        match = re.search(VARIABLE_DEFAULT.format(key="collector_enabled"), variables_tf)
    return match is not None and match.group(1) == "true"


def _yaml_files(group_vars: Path) -> list[Path]:
    files: list[Path] = []
    for group in ("all", "gateways"):
        files += [p for p in (group_vars / f"{group}.yml", group_vars / f"{group}.yaml") if p.is_file()]
        if (group_vars / group).is_dir():
            files += sorted(p for p in (group_vars / group).iterdir() if p.suffix in {".yml", ".yaml"})
    return files


def configured_sinks(group_vars: Path) -> dict[str, Any]:
    """gateway_sinks as the environment's group_vars (all, gateways) set it; vault files skipped."""
    sinks: dict[str, Any] = {}
    for path in _yaml_files(group_vars):
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("$ANSIBLE_VAULT"):
            continue
        data = yaml.safe_load(text) or {}
        if isinstance(data, dict) and data.get("gateway_sinks"):
            value = data["gateway_sinks"]
            # A template string is resolved only by Ansible: count it as configured.
            sinks = value if isinstance(value, dict) else {"(templated gateway_sinks)": {"type": "?"}}
    return sinks


def inventory_collectors(hosts_yml: Path) -> list[str]:
    """Hosts of group `collectors` in an inventory file (as written by the bridge or lab.sh)."""

    def walk(node: Any) -> list[str]:
        found: list[str] = []
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "collectors" and isinstance(value, dict):
                    found += list((value.get("hosts") or {}).keys())
                else:
                    found += walk(value)
        return found

    return walk(yaml.safe_load(hosts_yml.read_text(encoding="utf-8")))


def real_sinks(args: argparse.Namespace) -> list[str]:
    found: list[str] = []
    if args.tfvars:
        tfvars = Path(args.tfvars).read_text(encoding="utf-8") if Path(args.tfvars).is_file() else ""
        variables = Path(args.variables).read_text(encoding="utf-8") if args.variables else ""
        if collector_enabled(tfvars, variables):
            found.append(f"collector host (collector_enabled = true in {args.tfvars_name or args.tfvars})")
    elif args.inventory and Path(args.inventory).is_file():
        found += [f"collector host {h}" for h in inventory_collectors(Path(args.inventory))]
    group_vars = Path(args.group_vars or REPO / f"ansible/inventories/{args.env}/group_vars")
    for name, sink in configured_sinks(group_vars).items():
        kind = sink.get("type", "?") if isinstance(sink, dict) else "?"
        if kind != "jsonl":
            found.append(f"gateway_sinks.{name} ({kind})")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sink_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("env")
    parser.add_argument("--tfvars", help="the OpenTofu variable file (when tofu applies the hosts)")
    parser.add_argument("--tfvars-name", help="how to name the tfvars file in messages")
    parser.add_argument("--variables", help="the environment's variables.tf (defaults)")
    parser.add_argument("--inventory", help="the environment's hosts.yml (without --tfvars)")
    parser.add_argument("--group-vars", help="default: ansible/inventories/ENV/group_vars")
    args = parser.parse_args(argv)
    found = real_sinks(args)
    if found:
        print(f"sinks of {args.env}: {', '.join(found)}")
        return 0
    tfvars = args.tfvars_name or args.tfvars or f"terraform/environments/{args.env}/{args.env}.tfvars"
    message = (
        f"{args.env} has no real sink: the gateways would only append device data to a local archive "
        f"file on each gateway (rotated away, read by nobody). Set collector_enabled = true in {tfvars} "
        f"(a VictoriaMetrics collector host), or gateway_sinks in "
        f"ansible/inventories/{args.env}/group_vars/all/main.yml (your own collector: http_json or "
        "influx_line; docs/configuration.md)"
    )
    if args.env == "production":
        print(f"ERROR: {message}", file=sys.stderr)
        return 2
    print(f"WARNING: {message}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
