#!/usr/bin/env python3
"""Render prometheus/ templates from an Ansible YAML inventory, without Ansible.

The Ansible role renders the same files with the template module; this renderer lets the config
and unit tests run on a bare machine. It mimics what the templates need from Ansible: `groups`,
`hostvars`, the `bool` filter, trim_blocks, StrictUndefined, and Ansible's variable precedence
(lowest first): prometheus/defaults.yml (role defaults), the inventory file's `all.vars`, the
inventory's group_vars/all/*.yml, ansible/group_vars/all/*.yml (playbook group_vars), the other
groups' vars, host vars. (Inventory group_vars/<group> files are not read: the templates use none.)

Outputs (in --out): prometheus.yml, alertmanager.yml, blackbox.yml, rules/*.yml, tests/*.yml and
grafana-datasources.yml (from grafana/provisioning/datasources/datasources.yml.j2).
Rules and tests use `[[ var ]]` as Jinja variable delimiters (Prometheus owns `{{ }}` there);
the Ansible role must pass variable_start_string='[[' and variable_end_string=']]' for them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import jinja2
import yaml

PROM_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = PROM_DIR.parent
REQUIRED_GROUPS = ("gateways", "monitoring", "collectors")
# Receivers that must reach a human (or the dead man's switch) in production.
PRODUCTION_REQUIRED = {
    "pager": ("ngd_alert_pagerduty_routing_key", "ngd_alert_pager_webhook_url"),
    "dead man's switch": ("ngd_alert_deadman_url",),
    "chat (warnings)": ("ngd_alert_chat_webhook_url", "ngd_alert_email_to"),
}


class RenderError(Exception):
    """Bad input: the message names the key and the fix."""


def _load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise RenderError(f"{path}: expected a mapping at the top level")
    return data


def _load_var_dir(directory: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    if directory.is_dir():
        for path in sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")]):
            merged.update(_load_yaml(path))
    return merged


def _walk_group(
    name: str,
    node: dict[str, Any],
    inherited: dict[str, Any],
    groups: dict[str, list[str]],
    host_layers: dict[str, list[tuple[str, dict[str, Any]]]],
) -> None:
    group_vars = {**inherited, **(node.get("vars") or {})}
    members = groups.setdefault(name, [])
    for host, hvars in (node.get("hosts") or {}).items():
        if host not in members:
            members.append(host)
        host_layers.setdefault(host, []).append((name, {**group_vars, **(hvars or {})}))
    for child, child_node in (node.get("children") or {}).items():
        _walk_group(child, child_node or {}, group_vars, groups, host_layers)
        for host in groups[child]:
            if host not in members:
                members.append(host)


def load_inventory(inventory: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """Return the template context: global vars (as seen from the monitoring host) + groups/hostvars."""
    raw = _load_yaml(inventory)
    if "all" not in raw:
        raise RenderError(f"{inventory}: no 'all' group (expected the YAML inventory format)")
    root = dict(raw["all"] or {})
    # Ansible's order, lowest first: role defaults, the inventory file's all.vars, the inventory's
    # group_vars/all, the playbook directory's group_vars/all (ansible/group_vars/all), then the
    # other groups' vars and host vars.
    base: dict[str, Any] = {}
    base.update(_load_yaml(PROM_DIR / "defaults.yml"))
    base.update(root.pop("vars", None) or {})
    base.update(_load_var_dir(inventory.parent / "group_vars" / "all"))
    base.update(_load_var_dir(REPO_ROOT / "ansible" / "group_vars" / "all"))
    groups: dict[str, list[str]] = {}
    host_layers: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    _walk_group("all", root, base, groups, host_layers)
    for group in REQUIRED_GROUPS:
        if not groups.get(group):
            raise RenderError(
                f"{inventory}: group '{group}' is missing or empty "
                "(see the inventory contract: gateways, monitoring, collectors)"
            )
    if len(groups["gateways"]) != 2:
        raise RenderError(f"{inventory}: group 'gateways' must hold exactly two hosts (the HA pair)")
    hostvars: dict[str, dict[str, Any]] = {}
    for host, layers in host_layers.items():
        merged: dict[str, Any] = {}
        for _, layer in layers:
            merged.update(layer)
        merged.update(overrides)
        merged["inventory_hostname"] = host
        merged["group_names"] = sorted({g for g, _ in layers if g != "all"})
        hostvars[host] = merged
    # Templates run on the monitoring host: its variables are the global ones.
    context = dict(hostvars[groups["monitoring"][0]])
    context.update({"groups": groups, "hostvars": hostvars})
    _validate(context, inventory)
    return context


def _validate(context: dict[str, Any], inventory: Path) -> None:
    needed = ["ngd_env", "ngd_vip", "ngd_runbook_base_url", "ngd_device_port"]
    for key in needed:
        if not context.get(key):
            raise RenderError(
                f"{inventory}: variable '{key}' is not set (see docs and the inventory contract)"
            )
    if context.get("ngd_alert_email_to") and not (
        context.get("ngd_alert_email_smarthost") and context.get("ngd_alert_email_from")
    ):
        raise RenderError(
            f"{inventory}: ngd_alert_email_to is set: set ngd_alert_email_smarthost (host:port) and "
            "ngd_alert_email_from too"
        )
    if context["ngd_env"] == "production":
        for what, keys in PRODUCTION_REQUIRED.items():
            if not any(context.get(k) for k in keys):
                raise RenderError(
                    f"{inventory}: production needs a {what} receiver: set {' or '.join(keys)} "
                    "(in the inventory's group_vars, secrets in the vault)"
                )


def _to_bool(value: Any) -> bool:
    """Ansible's `bool` filter."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on", "y"}


def _environment(loader_dir: Path, square: bool) -> jinja2.Environment:
    kwargs: dict[str, Any] = {}
    if square:
        kwargs = {"variable_start_string": "[[", "variable_end_string": "]]"}
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(loader_dir)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - YAML, not HTML
        **kwargs,
    )
    env.filters["bool"] = _to_bool
    return env


def render_all(context: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    env = _environment(PROM_DIR, square=False)
    for name in ("prometheus.yml.j2", "alertmanager.yml.j2"):
        target = out / name.removesuffix(".j2")
        target.write_text(env.get_template(name).render(**context))
        written.append(target)
    datasources = _environment(REPO_ROOT / "grafana" / "provisioning" / "datasources", square=False)
    target = out / "grafana-datasources.yml"
    target.write_text(datasources.get_template("datasources.yml.j2").render(**context))
    written.append(target)
    shutil.copyfile(PROM_DIR / "blackbox.yml", out / "blackbox.yml")
    written.append(out / "blackbox.yml")
    square = _environment(PROM_DIR, square=True)
    for sub in ("rules", "tests"):
        (out / sub).mkdir(exist_ok=True)
        for src in sorted((PROM_DIR / sub).glob("*.yml")):
            target = out / sub / src.name
            target.write_text(square.get_template(f"{sub}/{src.name}").render(**context))
            written.append(target)
    return written


def _parse_set(items: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RenderError(f"--set '{item}': expected KEY=VALUE")
        result[key] = yaml.safe_load(value)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inventory", type=Path, required=True, help="YAML inventory (hosts.yml)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a variable (YAML value)"
    )
    args = parser.parse_args(argv)
    try:
        context = load_inventory(args.inventory, _parse_set(args.set))
        for path in render_all(context, args.out):
            print(path)
    except (RenderError, jinja2.TemplateError, yaml.YAMLError, OSError) as exc:
        print(f"render.py: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
