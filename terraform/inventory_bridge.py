#!/usr/bin/env python3
"""Turn `tofu output -json` of an environment into its Ansible inventory.

    terraform/inventory_bridge.py production
        runs `tofu -chdir=terraform/environments/production output -json` and writes
        ansible/inventories/production/hosts.yml (what scripts/deploy.sh does after `tofu apply`)
    terraform/inventory_bridge.py staging --from-json recorded.json --out /tmp/hosts.yml
        converts a recorded output instead (tests, dry runs); --tofu-dir DIR reads another root module

The input is the provider-neutral `inventory` output of modules/gateway-pair; the result follows
the inventory contract (group names and host variables identical in every environment).

Beside hosts.yml it writes known_hosts: the hosts' SSH host keys as OpenTofu holds them (the module
generates them into cloud-init), so that SSH verifies every host from the first connection on.
hosts.yml makes ssh read that file and known_hosts.tofu (keys recorded on first use, only with
scripts/deploy.sh --trust-new-host-keys) and nothing else, with StrictHostKeyChecking=yes.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("staging", "production")
SCHEMA_VERSION = 2
GATEWAY_NAMES = ("gw-a", "gw-b")
# Inventory groups, identical in every environment (devices is populated in the lab only).
GROUPS = ("gateways", "monitoring", "collectors", "devices")
VIP_PROVIDERS = ("hcloud", "aws", "none")
HOST_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) [A-Za-z0-9+/]+={0,2}(?: \S.*)?$")
KNOWN_HOSTS = "known_hosts"
# Keys recorded on first use (deploy.sh --trust-new-host-keys), for hosts OpenTofu has no key of.
KNOWN_HOSTS_TOFU = "known_hosts.tofu"


class BridgeError(Exception):
    """Input that cannot become a valid inventory; the message names the key and the fix."""


@dataclass(frozen=True)
class Host:
    name: str
    group: str
    public_ip: str
    private_ip: str
    keepalived_priority: int | None
    server_id: str
    # "ssh-ed25519 AAAA...": the host key OpenTofu gave the host (None: it made its own).
    ssh_host_key: str | None = None


@dataclass(frozen=True)
class Vip:
    provider: str
    address: str
    prefix: int
    interface: str
    floating_ip_id: str


@dataclass(frozen=True)
class Networks:
    """Who may reach the hosts: the tfvars' admin_cidrs and device_cidrs, the only place they are set."""

    admin_cidrs: tuple[str, ...]
    device_cidrs: tuple[str, ...]


@dataclass(frozen=True)
class Inventory:
    environment: str
    ssh_user: str
    vip: Vip
    hosts: tuple[Host, ...]
    networks: Networks


def _require(mapping: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in mapping:
        raise BridgeError(
            f"{where}.{key} is missing: is the environment applied with the current modules/gateway-pair?"
        )
    value = mapping[key]
    # bool is an int in Python: never accept it where a number is meant.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BridgeError(f"{where}.{key} must be {_kind_name(kind)}, got {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", dict: "an object", list: "a list", type(None): "null"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _ipv4(value: str, where: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise BridgeError(f"{where} must be an IPv4 address, got {value!r}") from None


def _cidrs(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise BridgeError(
            f"{where} must be a non-empty list of CIDRs, got {value!r}: set it in "
            "terraform/environments/<environment>/<environment>.tfvars and `tofu apply`"
        )
    cidrs: list[str] = []
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except (TypeError, ValueError):
            raise BridgeError(
                f"{where} entries must be CIDRs such as 198.51.100.7/32, got {item!r}"
            ) from None
        cidrs.append(item)
    return tuple(cidrs)


def parse_output(document: Any, environment: str) -> Inventory:
    """Validate the decoded `tofu output -json` document and return the inventory it describes."""
    if not isinstance(document, dict):
        raise BridgeError("tofu output -json must be a JSON object of outputs")
    if "inventory" not in document:
        raise BridgeError(
            "no 'inventory' output: run `tofu apply` in terraform/environments/"
            f"{environment} first (tofu output shows nothing before the first apply)"
        )
    output = document["inventory"]
    value = output.get("value") if isinstance(output, dict) else None
    if not isinstance(value, dict):
        raise BridgeError(
            "inventory.value must be an object (is this `tofu output -json`, not `tofu output`?)"
        )

    where = "inventory"
    version = _require(value, "schema_version", where, int)
    if version != SCHEMA_VERSION:
        raise BridgeError(
            f"{where}.schema_version is {version}, this bridge reads {SCHEMA_VERSION}: update one of them"
        )
    env = _require(value, "environment", where, str)
    if env != environment:
        raise BridgeError(
            f"{where}.environment is {env!r} but the bridge was asked for {environment!r}: "
            "the output comes from another environment's state"
        )
    ssh_user = _require(value, "ssh_user", where, str)

    raw_vip = _require(value, "vip", where, dict)
    vip_where = f"{where}.vip"
    provider = _require(raw_vip, "provider", vip_where, str)
    if provider not in VIP_PROVIDERS:
        raise BridgeError(f"{vip_where}.provider must be one of {', '.join(VIP_PROVIDERS)}, got {provider!r}")
    prefix = _require(raw_vip, "prefix", vip_where, int)
    if not 0 < prefix <= 32:
        raise BridgeError(f"{vip_where}.prefix must be between 1 and 32, got {prefix}")
    floating_ip_id = _require(raw_vip, "floating_ip_id", vip_where, str)
    if provider == "hcloud" and not floating_ip_id.isdigit():
        raise BridgeError(
            f"{vip_where}.floating_ip_id must be the numeric hcloud floating IP id, got {floating_ip_id!r}"
        )
    vip = Vip(
        provider=provider,
        address=_ipv4(_require(raw_vip, "address", vip_where, str), f"{vip_where}.address"),
        prefix=prefix,
        interface=_require(raw_vip, "interface", vip_where, str),
        floating_ip_id=floating_ip_id,
    )

    raw_networks = _require(value, "networks", where, dict)
    networks = Networks(
        admin_cidrs=_cidrs(
            _require(raw_networks, "admin_cidrs", f"{where}.networks", list), f"{where}.networks.admin_cidrs"
        ),
        device_cidrs=_cidrs(
            _require(raw_networks, "device_cidrs", f"{where}.networks", list),
            f"{where}.networks.device_cidrs",
        ),
    )

    raw_hosts = _require(value, "hosts", where, dict)
    hosts = tuple(_parse_host(name, raw, f"{where}.hosts.{name}") for name, raw in sorted(raw_hosts.items()))
    _check_topology(hosts, vip)
    return Inventory(environment=env, ssh_user=ssh_user, vip=vip, hosts=hosts, networks=networks)


def _parse_host(name: str, raw: Any, where: str) -> Host:
    if not isinstance(raw, dict):
        raise BridgeError(f"{where} must be an object")
    group = _require(raw, "group", where, str)
    if group not in GROUPS:
        raise BridgeError(f"{where}.group must be one of {', '.join(GROUPS)}, got {group!r}")
    priority = _require(raw, "keepalived_priority", where, (int, type(None)))
    if group == "gateways" and not (isinstance(priority, int) and 1 <= priority <= 254):
        raise BridgeError(
            f"{where}.keepalived_priority must be an integer 1-254 for a gateway, got {priority!r}"
        )
    host_key = raw.get("ssh_host_key")
    if host_key is not None and (not isinstance(host_key, str) or not HOST_KEY.match(host_key.strip())):
        raise BridgeError(
            f"{where}.ssh_host_key must be a public key ('ssh-ed25519 AAAA...') or null, got {host_key!r}"
        )
    return Host(
        name=name,
        group=group,
        public_ip=_ipv4(_require(raw, "public_ipv4", where, str), f"{where}.public_ipv4"),
        private_ip=_ipv4(_require(raw, "private_ip", where, str), f"{where}.private_ip"),
        keepalived_priority=priority if group == "gateways" else None,
        ssh_host_key=host_key.strip() if host_key else None,
        server_id=_require(raw, "server_id", where, str),
    )


def _check_topology(hosts: tuple[Host, ...], vip: Vip) -> None:
    gateways = {h.name: h for h in hosts if h.group == "gateways"}
    if tuple(sorted(gateways)) != GATEWAY_NAMES:
        raise BridgeError(
            f"inventory.hosts must hold exactly the gateways {', '.join(GATEWAY_NAMES)} "
            f"(the HA pair), got {', '.join(sorted(gateways)) or 'none'}"
        )
    first, second = (gateways[name] for name in GATEWAY_NAMES)
    if first.keepalived_priority == second.keepalived_priority:
        raise BridgeError(
            "inventory.hosts gw-a and gw-b have the same keepalived_priority: VRRP needs distinct priorities"
        )
    for attr in ("public_ip", "private_ip"):
        seen: dict[str, str] = {}
        for host in hosts:
            address = getattr(host, attr)
            if address in seen:
                raise BridgeError(
                    f"inventory.hosts.{host.name} has the same {attr} as {seen[address]} ({address})"
                )
            seen[address] = host.name
    if any(h.public_ip == vip.address for h in hosts):
        raise BridgeError(
            f"inventory.vip.address {vip.address} is also a host's own address: the VIP must be separate"
        )


def ssh_args(known_hosts_dir: Path) -> str:
    """ssh options of every connection: the host keys of known_hosts (OpenTofu's) and
    known_hosts.tofu (recorded on first use), no other file, and never a key accepted unasked."""
    directory = known_hosts_dir.resolve()
    if re.search(r"[\s'\"]", str(directory)):
        raise BridgeError(
            f"the inventory directory {directory} contains a space or quote: ssh's UserKnownHostsFile "
            "cannot name it; use a checkout path without one"
        )
    files = f"{directory / KNOWN_HOSTS} {directory / KNOWN_HOSTS_TOFU}"
    return f"-o 'UserKnownHostsFile={files}' -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null"


def render_known_hosts(inventory: Inventory) -> str:
    """known_hosts lines (address, key) of the hosts OpenTofu gave a host key."""
    lines = [
        f"{host.public_ip} {' '.join(host.ssh_host_key.split()[:2])}"
        for host in inventory.hosts
        if host.ssh_host_key
    ]
    header = (
        f"# Generated by terraform/inventory_bridge.py from `tofu output -json` of {inventory.environment}:\n"
        "# the SSH host keys OpenTofu generated for the hosts. Do not edit; re-run the bridge.\n"
    )
    return header + "".join(f"{line}\n" for line in lines)


def render(
    inventory: Inventory, known_hosts_dir: Path | None = None, hcloud_endpoint: str | None = None
) -> str:
    """The YAML inventory of the contract, with a header saying where it comes from. With
    known_hosts_dir, ssh verifies the hosts against the known_hosts files there (ssh_args).

    hcloud_endpoint: the API endpoint tofu used (HCLOUD_ENDPOINT), when not Hetzner's default; the
    keepalived hooks on the gateways move the floating IP through the same API.
    """
    children: dict[str, Any] = {group: {} for group in GROUPS}
    for host in inventory.hosts:
        host_vars: dict[str, Any] = {
            "ansible_host": host.public_ip,
            "ngd_private_ip": host.private_ip,
            "ngd_public_ip": host.public_ip,
            # The cloud's id of the server: the floating IP hook assigns the VIP to it (the
            # inventory name gw-a is not the server's name in the project).
            "ngd_server_id": host.server_id,
        }
        if host.keepalived_priority is not None:
            host_vars["keepalived_priority"] = host.keepalived_priority
        children[host.group].setdefault("hosts", {})[host.name] = host_vars
    document = {
        "all": {
            "vars": {
                "ngd_env": inventory.environment,
                "ngd_vip": inventory.vip.address,
                "ngd_vip_prefix": inventory.vip.prefix,
                "ngd_vip_provider": inventory.vip.provider,
                "ngd_vip_interface": inventory.vip.interface,
                "ngd_floating_ip_id": inventory.vip.floating_ip_id,
                "ansible_user": inventory.ssh_user,
                # The same sources as the cloud firewall: the hosts' nftables admit SSH and the
                # monitoring ports from the admin networks, the device ports from the devices'.
                "ngd_admin_cidrs": list(inventory.networks.admin_cidrs),
                "ngd_device_cidrs": list(inventory.networks.device_cidrs),
            },
            "children": children,
        }
    }
    if known_hosts_dir is not None:
        document["all"]["vars"]["ansible_ssh_common_args"] = ssh_args(known_hosts_dir)
    if hcloud_endpoint and inventory.vip.provider == "hcloud":
        document["all"]["vars"]["ngd_hcloud_endpoint"] = hcloud_endpoint
    header = (
        f"# Generated by terraform/inventory_bridge.py from `tofu output -json` of {inventory.environment}.\n"
        "# Do not edit: re-run the bridge after every `tofu apply` (scripts/deploy.sh does).\n"
    )
    body = str(yaml.safe_dump(document, sort_keys=False, default_flow_style=False))
    return header + body


def tofu_output(env_dir: Path) -> Any:
    try:
        result = subprocess.run(
            ["tofu", f"-chdir={env_dir}", "output", "-json"],
            check=True,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        raise BridgeError(
            'tofu not found: eval "$(terraform/tools/install-tofu.sh --print-env)" or install OpenTofu'
        ) from None
    except subprocess.CalledProcessError as err:
        raise BridgeError(f"tofu output -json in {env_dir} failed: {err.stderr.strip()}") from None
    return json.loads(result.stdout)


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def inventory_path(environment: str) -> Path:
    """Where the bridge writes an environment's inventory by default (git-ignored: generated)."""
    return REPO_ROOT / "ansible" / "inventories" / environment / "hosts.yml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write ansible/inventories/<environment>/hosts.yml from `tofu output -json`.",
    )
    parser.add_argument("environment", choices=ENVIRONMENTS)
    parser.add_argument(
        "--from-json",
        metavar="FILE",
        help="read a recorded `tofu output -json` ('-' for stdin) instead of running tofu",
    )
    parser.add_argument(
        "--tofu-dir",
        metavar="DIR",
        type=Path,
        help="root module to run `tofu output -json` in (default: terraform/environments/<environment>)",
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        type=Path,
        help="inventory file to write (default: ansible/inventories/<environment>/hosts.yml; '-' for stdout)",
    )
    args = parser.parse_args(argv)

    try:
        if args.from_json == "-":
            document = json.load(sys.stdin)
        elif args.from_json:
            document = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        else:
            document = tofu_output(
                args.tofu_dir or REPO_ROOT / "terraform" / "environments" / args.environment
            )
        inventory = parse_output(document, args.environment)
        out = None if str(args.out) == "-" else (args.out or inventory_path(args.environment))
        # The endpoint tofu talked to (HCLOUD_ENDPOINT, as the provider reads it), for the hooks
        # on the hosts; a recorded output says nothing about it.
        endpoint = None if args.from_json else os.environ.get("HCLOUD_ENDPOINT") or None
        text = render(inventory, out.parent if out else None, hcloud_endpoint=endpoint)
    except json.JSONDecodeError as err:
        print(
            f"inventory_bridge: ERROR: the input is not JSON ({err}): pass `tofu output -json`",
            file=sys.stderr,
        )
        return 1
    except (BridgeError, OSError) as err:
        print(f"inventory_bridge: ERROR: {err}", file=sys.stderr)
        return 1

    if out is None:
        sys.stdout.write(text)
        return 0
    # known_hosts first: hosts.yml names it, and a host must never be reached without its key.
    write_atomically(out.parent / KNOWN_HOSTS, render_known_hosts(inventory))
    write_atomically(out, text)
    keys = sum(1 for host in inventory.hosts if host.ssh_host_key)
    print(
        f"inventory_bridge: wrote {out} and {out.parent / KNOWN_HOSTS} "
        f"({keys} of {len(inventory.hosts)} host keys from OpenTofu)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
