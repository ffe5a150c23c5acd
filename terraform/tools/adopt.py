#!/usr/bin/env python3
"""Find the cloud resources an interrupted `tofu apply` created but never recorded.

    tofu show -json deploy.tfplan > plan.json
    terraform/tools/adopt.py plan.json        # prints "ADDRESS ID" lines for `tofu import`

A `tofu apply` killed mid-way (a lost SSH session, a crashed workstation) has created resources
whose IDs never reached the state: OpenTofu writes it at the end, and periodically only on long
applies. The next plan wants to create them again, and Hetzner refuses every one of them (names
are unique per project: 409 uniqueness_error), so the environment cannot be deployed until an
operator imports each by hand. scripts/deploy.sh runs this after every plan that creates
resources and imports what it prints.

A resource is adopted only when the plan would create it and the project already holds one of the
same type and name carrying every label the plan gives it (the environment's and managed-by
labels): what this configuration made, not a same-named object of someone else. Subnets and the
floating IP's assignment have no name: they are adopted with the network or floating IP they
belong to (one of each per module, as modules/gateway-pair has).

Environment: HCLOUD_TOKEN (required), HCLOUD_ENDPOINT (default https://api.hetzner.cloud/v1).
Exit status: 0 (lines printed, possibly none), 2 (bad input or the API cannot be asked).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from hcloud import Client, HCloudException

DEFAULT_ENDPOINT = "https://api.hetzner.cloud/v1"
# Resource types with a unique name, and the hcloud.Client attribute of their collection.
COLLECTIONS = {
    "hcloud_server": "servers",
    "hcloud_network": "networks",
    "hcloud_firewall": "firewalls",
    "hcloud_placement_group": "placement_groups",
    "hcloud_floating_ip": "floating_ips",
    "hcloud_ssh_key": "ssh_keys",
    "hcloud_primary_ip": "primary_ips",
}

Lookup = Callable[[str, str], list[dict[str, Any]]]


class AdoptError(Exception):
    """Input or API answer that makes adoption impossible; the message says which."""


def api_lookup(endpoint: str, token: str) -> Lookup:
    """The objects of that name in a collection (0 or 1: names are unique), through hcloud-python
    (the tool venv's, pinned in keepalived/requirements-ci.txt), as the fields adoptions() reads:
    id, name, labels, a network's subnets' ip_range, a floating IP's server."""
    client = Client(token=token, api_endpoint=endpoint, application_name="nanogridata-adopt", timeout=30)

    def lookup(collection: str, name: str) -> list[dict[str, Any]]:
        try:
            found = getattr(client, collection).get_by_name(name)
        except (HCloudException, requests.RequestException) as exc:
            raise AdoptError(f"{endpoint}: looking up {collection} named {name!r}: {exc}") from None
        if found is None:
            return []
        item: dict[str, Any] = {"id": found.id, "name": found.name, "labels": found.labels or {}}
        if collection == "networks":
            item["subnets"] = [{"ip_range": subnet.ip_range} for subnet in found.subnets or []]
        elif collection == "floating_ips":
            item["server"] = found.server.id if found.server is not None else None
        return [item]

    return lookup


def _module(address: str) -> str:
    """The module path of a resource address ('' for the root module)."""
    parts = address.split(".")
    return ".".join(parts[:-2])


def adoptions(plan: dict[str, Any], lookup: Lookup) -> list[tuple[str, str]]:
    """(address, import ID) of every resource the plan creates that already exists, as made by it."""
    changes = plan.get("resource_changes")
    if not isinstance(changes, list):
        raise AdoptError("not a plan in JSON (`tofu show -json PLANFILE`): no resource_changes")
    creates = [
        c
        for c in changes
        if isinstance(c, dict)
        and c.get("mode") == "managed"
        and (c.get("change") or {}).get("actions") == ["create"]
    ]
    found: list[tuple[str, str]] = []
    # Per module, the network and floating IP adopted: their subnet and assignment follow them.
    networks: dict[str, dict[str, Any]] = {}
    floating_ips: dict[str, dict[str, Any]] = {}
    for change in creates:
        collection = COLLECTIONS.get(str(change.get("type")))
        after = change["change"].get("after") or {}
        name = after.get("name")
        if not collection or not isinstance(name, str) or not name:
            continue
        labels = after.get("labels") or {}
        for item in lookup(collection, name):
            if item.get("name") != name:
                continue
            item_labels = item.get("labels") or {}
            if any(item_labels.get(k) != v for k, v in labels.items()):
                print(
                    f"adopt: {collection} '{name}' exists without the labels {labels}: not ours, not adopted",
                    file=sys.stderr,
                )
                continue
            address = str(change["address"])
            found.append((address, str(item["id"])))
            if change["type"] == "hcloud_network":
                networks[_module(address)] = item
            elif change["type"] == "hcloud_floating_ip":
                floating_ips[_module(address)] = item
    for change in creates:
        after = change["change"].get("after") or {}
        address = str(change["address"])
        module = _module(address)
        if change.get("type") == "hcloud_network_subnet" and module in networks:
            network = networks[module]
            ip_range = after.get("ip_range")
            if any(s.get("ip_range") == ip_range for s in network.get("subnets") or []):
                found.append((address, f"{network['id']}-{ip_range}"))
        elif change.get("type") == "hcloud_floating_ip_assignment" and module in floating_ips:
            fip = floating_ips[module]
            if fip.get("server"):
                found.append((address, str(fip["id"])))
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("plan_json", type=Path, help="`tofu show -json PLANFILE` output")
    args = ap.parse_args(argv)
    token = os.environ.get("HCLOUD_TOKEN", "")
    if not token:
        print("adopt: HCLOUD_TOKEN is not set", file=sys.stderr)
        return 2
    try:
        plan = json.loads(args.plan_json.read_text(encoding="utf-8"))
        if not isinstance(plan, dict):
            raise AdoptError("not a plan in JSON: the document is not an object")
        pairs = adoptions(plan, api_lookup(os.environ.get("HCLOUD_ENDPOINT") or DEFAULT_ENDPOINT, token))
    except (OSError, ValueError, AdoptError) as exc:
        print(f"adopt: {exc}", file=sys.stderr)
        return 2
    for address, resource_id in pairs:
        print(f"{address} {resource_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
