"""Real `tofu plan` of both environments with the real hcloud provider, offline.

Planning resources that do not exist yet needs no Hetzner API: the provider gets a dummy token and
an endpoint on the loopback where nothing listens (any API call would fail the plan, and no
packet leaves the machine). `-refresh=false` keeps it that way when a prior state is given.
This checks what `tofu test`'s mocks cannot: the provider's own schema and plan logic, which
server the VIP is assigned to, and that a failover (the floating IP moved by keepalived) is not
drift that the next apply would undo.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import TERRAFORM_DIR

REPO_ROOT = TERRAFORM_DIR.parent
PORTS = yaml.safe_load(
    (REPO_ROOT / "ansible" / "group_vars" / "all" / "ports.yml").read_text(encoding="utf-8")
)
ADMIN_CIDRS = ["198.51.100.7/32", "2001:db8:1::/48"]
TEST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeTestKeyNotASecret0000000000000000000 ops@test"
TFVARS = f"""
ssh_public_keys = {{ ops = "{TEST_KEY}" }}
admin_cidrs     = {json.dumps(ADMIN_CIDRS)}
"""
PROVIDER = 'provider["registry.opentofu.org/hetznercloud/hcloud"]'


@dataclass
class Workdir:
    """An environment (or a copy of one) initialised with its state and data outside the tree."""

    env_dir: Path
    tmp: Path
    env: dict[str, str]

    def tofu(self, *args: str) -> subprocess.CompletedProcess[str]:
        tofu = shutil.which("tofu")
        assert tofu, 'tofu not on PATH: eval "$(terraform/tools/install-tofu.sh --print-env)"'
        return subprocess.run(
            [tofu, f"-chdir={self.env_dir}", *args, "-no-color"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def plan(self, state: dict[str, Any] | None = None) -> dict[str, Any]:
        state_file = self.tmp / "terraform.tfstate"
        if state is not None:
            state_file.write_text(json.dumps(state), encoding="utf-8")
        init = self.tofu("init", "-input=false", "-reconfigure", f"-backend-config=path={state_file}")
        assert init.returncode == 0, init.stdout + init.stderr
        (self.tmp / "test.tfvars").write_text(TFVARS, encoding="utf-8")
        plan_file = self.tmp / "plan.bin"
        plan = self.tofu(
            "plan",
            "-input=false",
            "-refresh=false",
            f"-var-file={self.tmp / 'test.tfvars'}",
            f"-out={plan_file}",
        )
        assert plan.returncode == 0, plan.stdout + plan.stderr
        shown = self.tofu("show", "-json", str(plan_file))
        assert shown.returncode == 0, shown.stderr
        document: dict[str, Any] = json.loads(shown.stdout)
        return document


def make_workdir(env_dir: Path, tmp: Path) -> Workdir:
    env = {
        **os.environ,
        "TF_DATA_DIR": str(tmp / "data"),
        "HCLOUD_TOKEN": "x" * 64,
        # Loopback, discard port: nothing listens, so an API call fails instead of going out.
        "HCLOUD_ENDPOINT": "http://127.0.0.1:9/v1",
        "NO_COLOR": "1",
    }
    return Workdir(env_dir=env_dir, tmp=tmp, env=env)


def changes(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rc["address"]: rc for rc in plan["resource_changes"]}


@pytest.fixture(scope="module", params=["staging", "production"])
def env_plan(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, Any]]:
    name: str = request.param
    workdir = make_workdir(TERRAFORM_DIR / "environments" / name, tmp_path_factory.mktemp(f"plan-{name}"))
    return name, workdir.plan()


def test_the_vip_is_assigned_to_gw_a(env_plan: tuple[str, dict[str, Any]]) -> None:
    _, plan = env_plan
    module = plan["configuration"]["root_module"]["module_calls"]["gateway_pair"]["module"]
    assignment = next(r for r in module["resources"] if r["address"] == "hcloud_floating_ip_assignment.vip")
    references = assignment["expressions"]["server_id"]["references"]
    assert 'hcloud_server.node["gw-a"]' in references
    assert not any("gw-b" in ref for ref in references)


def test_two_gateways_with_fixed_private_ips_in_one_spread_group(
    env_plan: tuple[str, dict[str, Any]],
) -> None:
    name, plan = env_plan
    by_address = changes(plan)
    gateways = {
        a: rc for a, rc in by_address.items() if a.startswith('module.gateway_pair.hcloud_server.node["gw-')
    }
    assert sorted(gateways) == [
        'module.gateway_pair.hcloud_server.node["gw-a"]',
        'module.gateway_pair.hcloud_server.node["gw-b"]',
    ]
    ips = {a.split('"')[1]: [n["ip"] for n in rc["change"]["after"]["network"]] for a, rc in gateways.items()}
    assert ips == {"gw-a": ["10.53.1.11"], "gw-b": ["10.53.1.12"]}
    for rc in gateways.values():
        after = rc["change"]["after"]
        assert rc["change"]["actions"] == ["create"]
        assert after["image"] == "debian-12"
        assert after["name"].startswith(f"ngd-{name}-gw-")
        # Known only after apply, but planned: every gateway joins the placement group.
        assert rc["change"]["after_unknown"]["placement_group_id"] is True
    group = by_address["module.gateway_pair.hcloud_placement_group.gateways"]["change"]["after"]
    assert group["type"] == "spread"


def test_firewall_opens_ssh_to_admins_and_the_ports_yml_device_port(
    env_plan: tuple[str, dict[str, Any]],
) -> None:
    _, plan = env_plan
    firewall = changes(plan)["module.gateway_pair.hcloud_firewall.gateways"]["change"]["after"]
    rules = {(r["protocol"], r["port"]): sorted(r["source_ips"]) for r in firewall["rule"]}
    assert rules == {
        ("tcp", "22"): sorted(ADMIN_CIDRS),
        ("tcp", str(PORTS["ngd_device_port"])): ["0.0.0.0/0", "::/0"],
        ("icmp", ""): ["0.0.0.0/0", "::/0"],  # the provider plans port "" for icmp
    }


def test_delete_protection_only_in_production(env_plan: tuple[str, dict[str, Any]]) -> None:
    name, plan = env_plan
    protected = name == "production"
    by_address = changes(plan)
    assert (
        by_address["module.gateway_pair.hcloud_floating_ip.vip"]["change"]["after"]["delete_protection"]
        is protected
    )
    for address, rc in by_address.items():
        if ".hcloud_server." in address:
            assert rc["change"]["after"]["delete_protection"] is protected, address


def failed_over_state() -> dict[str, Any]:
    """State after an apply and a failover: keepalived moved the floating IP 3001 to gw-b (1002)."""

    def resource(kind: str, name: str, attributes: dict[str, Any]) -> dict[str, Any]:
        return {
            "module": "module.gateway_pair",
            "mode": "managed",
            "type": kind,
            "name": name,
            "provider": PROVIDER,
            "instances": [{"schema_version": 0, "attributes": attributes, "sensitive_attributes": []}],
        }

    return {
        "version": 4,
        "terraform_version": "1.10.6",
        "serial": 1,
        "lineage": str(uuid.uuid4()),
        "outputs": {},
        "resources": [
            resource(
                "hcloud_floating_ip",
                "vip",
                {
                    "id": "3001",
                    "type": "ipv4",
                    "name": "ngd-staging-vip",
                    "home_location": "fsn1",
                    "description": "Device-facing VIP of ngd-staging; keepalived moves it on failover",
                    "labels": {
                        "app.nanogridata.io/environment": "staging",
                        "app.nanogridata.io/managed-by": "opentofu",
                    },
                    "delete_protection": False,
                    "ip_address": "198.51.100.53",
                    "ip_network": None,
                    "server_id": 1002,
                },
            ),
            resource(
                "hcloud_floating_ip_assignment",
                "vip",
                {"id": "3001", "floating_ip_id": 3001, "server_id": 1002},
            ),
        ],
    }


def test_a_failover_is_not_drift(tmp_path: Path) -> None:
    workdir = make_workdir(TERRAFORM_DIR / "environments" / "staging", tmp_path)
    by_address = changes(workdir.plan(failed_over_state()))
    assignment = by_address["module.gateway_pair.hcloud_floating_ip_assignment.vip"]["change"]
    assert assignment["actions"] == ["no-op"]
    assert assignment["after"]["server_id"] == 1002
    assert by_address["module.gateway_pair.hcloud_floating_ip.vip"]["change"]["actions"] == ["no-op"]


def test_without_ignore_changes_the_failover_would_be_undone(tmp_path: Path) -> None:
    """Control experiment: the same plan on a copy of the module without ignore_changes."""
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR / "modules", copy / "modules")
    shutil.copytree(TERRAFORM_DIR / "environments" / "staging", copy / "environments" / "staging")
    # The environment reads ../../../ansible/group_vars/all/ports.yml.
    (tmp_path / "ansible" / "group_vars" / "all").mkdir(parents=True)
    shutil.copy2(
        REPO_ROOT / "ansible" / "group_vars" / "all" / "ports.yml",
        tmp_path / "ansible" / "group_vars" / "all",
    )
    main_tf = copy / "modules" / "gateway-pair" / "main.tf"
    text = main_tf.read_text(encoding="utf-8")
    stripped = re.sub(r"ignore_changes = \[server_id\]", "ignore_changes = []", text)
    assert stripped != text
    main_tf.write_text(stripped, encoding="utf-8")

    workdir = make_workdir(copy / "environments" / "staging", tmp_path)
    assignment = changes(workdir.plan(failed_over_state()))[
        "module.gateway_pair.hcloud_floating_ip_assignment.vip"
    ]
    assert assignment["change"]["actions"] != ["no-op"]


def test_servers_of_the_two_former_resources_move_to_the_one_node_resource(tmp_path: Path) -> None:
    """State written when gateways and support hosts were hcloud_server.gateway / .support: the
    moved blocks carry each server over to hcloud_server.node instead of deleting it."""
    state = failed_over_state()
    for name, key, server_id in (
        ("gateway", "gw-a", 1001),
        ("gateway", "gw-b", 1002),
        ("support", "mon", 1003),
    ):
        state["resources"].append(
            {
                "module": "module.gateway_pair",
                "mode": "managed",
                "type": "hcloud_server",
                "name": name,
                "provider": PROVIDER,
                "each": "map",
                "instances": [
                    {
                        "index_key": key,
                        "schema_version": 0,
                        "attributes": {"id": str(server_id), "name": f"ngd-staging-{key}"},
                        "sensitive_attributes": [],
                    }
                ],
            }
        )
    workdir = make_workdir(TERRAFORM_DIR / "environments" / "staging", tmp_path)
    by_address = changes(workdir.plan(state))
    for key in ("gw-a", "gw-b", "mon"):
        change = by_address[f'module.gateway_pair.hcloud_server.node["{key}"]']
        assert change["previous_address"].startswith("module.gateway_pair.hcloud_server."), change
        assert key in change["previous_address"]
    assert not any(
        a.startswith(
            ("module.gateway_pair.hcloud_server.gateway", "module.gateway_pair.hcloud_server.support")
        )
        for a in by_address
    )
