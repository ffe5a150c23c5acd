"""terraform/tools/adopt.py against the Hetzner Cloud twin (hcloud_twin, in-process on loopback):
what an interrupted apply created is found by type, name and labels; what someone else made under
the same name is not; a subnet and a floating IP assignment follow their network and floating IP."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import TERRAFORM_DIR

sys.path.insert(0, str(TERRAFORM_DIR / "tools"))
sys.path.insert(0, str(TERRAFORM_DIR.parent / "hcloud_twin" / "src"))

import adopt
from hcloud_twin import HcloudTwin

LABELS = {"app.nanogridata.io/environment": "production", "app.nanogridata.io/managed-by": "opentofu"}
MODULE = "module.gateway_pair"


class Cloud:
    def __init__(self, endpoint: str, token: str) -> None:
        self.endpoint = endpoint
        self.token = token

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = requests.post(
            self.endpoint + path, json=body, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )
        assert resp.status_code < 300, resp.text
        answer: dict[str, Any] = resp.json()
        return answer


@pytest.fixture()
def cloud() -> Iterator[Cloud]:
    token = secrets.token_hex(32)
    with HcloudTwin(token, action_seconds=0.05) as twin:
        yield Cloud(twin.endpoint, token)


def create(address: str, rtype: str, after: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": address,
        "mode": "managed",
        "type": rtype,
        "change": {"actions": ["create"], "after": after},
    }


def plan() -> dict[str, Any]:
    return {
        "resource_changes": [
            create(
                f"{MODULE}.hcloud_network.private",
                "hcloud_network",
                {"name": "ngd-production", "labels": LABELS},
            ),
            create(
                f"{MODULE}.hcloud_network_subnet.hosts",
                "hcloud_network_subnet",
                {"ip_range": "10.0.1.0/24", "type": "cloud"},
            ),
            create(
                f"{MODULE}.hcloud_placement_group.gateways",
                "hcloud_placement_group",
                {"name": "ngd-production-gateways", "labels": LABELS},
            ),
            create(
                f"{MODULE}.hcloud_firewall.support[0]",
                "hcloud_firewall",
                {"name": "ngd-production-support", "labels": LABELS},
            ),
            create(f'{MODULE}.terraform_data.host_public_key["gw-a"]', "terraform_data", {"input": "x"}),
        ]
    }


def test_what_an_interrupted_apply_made_is_adopted(cloud: Cloud) -> None:
    network = cloud.post("/networks", {"name": "ngd-production", "ip_range": "10.0.0.0/16", "labels": LABELS})
    net_id = network["network"]["id"]
    cloud.post(
        f"/networks/{net_id}/actions/add_subnet",
        {"type": "cloud", "ip_range": "10.0.1.0/24", "network_zone": "eu-central"},
    )
    pg = cloud.post(
        "/placement_groups", {"name": "ngd-production-gateways", "type": "spread", "labels": LABELS}
    )
    pairs = adopt.adoptions(plan(), adopt.api_lookup(cloud.endpoint, cloud.token))
    assert pairs == [
        (f"{MODULE}.hcloud_network.private", str(net_id)),
        (f"{MODULE}.hcloud_placement_group.gateways", str(pg["placement_group"]["id"])),
        (f"{MODULE}.hcloud_network_subnet.hosts", f"{net_id}-10.0.1.0/24"),
    ]


def test_a_same_named_resource_without_our_labels_is_not_adopted(cloud: Cloud) -> None:
    cloud.post(
        "/placement_groups", {"name": "ngd-production-gateways", "type": "spread", "labels": {"team": "x"}}
    )
    assert adopt.adoptions(plan(), adopt.api_lookup(cloud.endpoint, cloud.token)) == []


def test_the_command_prints_import_pairs_and_refuses_bad_input(cloud: Cloud, tmp_path: Path) -> None:
    fw = cloud.post("/firewalls", {"name": "ngd-production-support", "labels": LABELS})
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan()), encoding="utf-8")
    env = {**os.environ, "HCLOUD_TOKEN": cloud.token, "HCLOUD_ENDPOINT": cloud.endpoint}
    tool = str(TERRAFORM_DIR / "tools" / "adopt.py")
    proc = subprocess.run(
        [sys.executable, tool, str(plan_file)], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{MODULE}.hcloud_firewall.support[0] {fw['firewall']['id']}\n"
    plan_file.write_text("[]", encoding="utf-8")
    bad = subprocess.run(
        [sys.executable, tool, str(plan_file)], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "not an object" in bad.stderr and "Traceback" not in bad.stderr
    no_token = {k: v for k, v in env.items() if k != "HCLOUD_TOKEN"}
    proc = subprocess.run(
        [sys.executable, tool, str(plan_file)], env=no_token, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "HCLOUD_TOKEN" in proc.stderr


def test_a_lost_apply_is_adopted_whole_by_import_blocks_and_converges(cloud: Cloud, tmp_path: Path) -> None:
    """The production environment applied against the twin, its state then lost (an apply killed
    before it wrote any): adopt.py finds every cloud resource, the servers among them; import blocks
    (what deploy.sh writes) bring them into one plan that creates nothing in the cloud, and the
    plan after it is clean."""
    tofu = shutil.which("tofu")
    assert tofu, 'tofu not on PATH: eval "$(terraform/tools/install-tofu.sh --print-env)"'
    repo = TERRAFORM_DIR.parent
    root = tmp_path / "checkout"
    shutil.copytree(TERRAFORM_DIR / "modules", root / "terraform" / "modules")
    env_dir = root / "terraform" / "environments" / "production"
    shutil.copytree(
        TERRAFORM_DIR / "environments" / "production", env_dir, ignore=shutil.ignore_patterns(".terraform*")
    )
    (root / "ansible" / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(
        repo / "ansible" / "group_vars" / "all" / "ports.yml", root / "ansible" / "group_vars" / "all"
    )
    key = tmp_path / "ops"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    hosts = ["gw-a", "gw-b", "mon", "collector"]
    for host in hosts:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / host)], check=True
        )
    tfvars = tmp_path / "test.tfvars"
    tfvars.write_text(
        f'ssh_public_keys = {{ ops = "{(tmp_path / "ops.pub").read_text().strip()}" }}\n'
        'admin_cidrs     = ["203.0.113.9/32"]\n',
        encoding="utf-8",
    )
    host_keys = tmp_path / "host-keys.tfvars.json"
    host_keys.write_text(
        json.dumps(
            {
                "host_public_keys": {h: (tmp_path / f"{h}.pub").read_text().strip() for h in hosts},
                "host_private_keys": {h: (tmp_path / h).read_text() for h in hosts},
            }
        ),
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "TF_DATA_DIR": str(tmp_path / "data"),
        "HCLOUD_TOKEN": cloud.token,
        "HCLOUD_ENDPOINT": cloud.endpoint,
        "NO_COLOR": "1",
    }
    variables = [f"-var-file={tfvars}", f"-var-file={host_keys}"]

    def run_tofu(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tofu, f"-chdir={env_dir}", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )

    def plan(out: Path) -> tuple[int, str]:
        proc = run_tofu("plan", "-input=false", "-detailed-exitcode", *variables, f"-out={out}")
        assert proc.returncode in (0, 2), proc.stdout + proc.stderr
        return proc.returncode, proc.stdout

    assert run_tofu("init", "-input=false").returncode == 0
    applied = run_tofu("apply", "-input=false", "-auto-approve", *variables)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    (env_dir / "terraform.tfstate").unlink()  # the state a killed apply never wrote

    rc, _ = plan(tmp_path / "lost.plan")
    assert rc == 2
    shown = run_tofu("show", "-json", str(tmp_path / "lost.plan"))
    lost = json.loads(shown.stdout)
    pairs = adopt.adoptions(lost, adopt.api_lookup(cloud.endpoint, cloud.token))
    cloud_objects = {c["address"] for c in lost["resource_changes"] if not c["type"].startswith("terraform_")}
    assert {address for address, _ in pairs} == cloud_objects
    assert sum('hcloud_server.node["' in address for address, _ in pairs) == 3  # gw-a, gw-b, mon
    (env_dir / "adopted_imports.tf").write_text(
        "".join(f'import {{\n  to = {address}\n  id = "{rid}"\n}}\n' for address, rid in pairs),
        encoding="utf-8",
    )
    rc, text = plan(tmp_path / "adopt.plan")
    assert rc == 2
    assert f"{len(pairs)} to import" in text and "0 to destroy" in text
    assert "hcloud_server" not in "".join(line for line in text.splitlines() if "will be created" in line)
    assert "public_net" not in text  # a change there powers the server off and on
    applied = run_tofu("apply", "-input=false", str(tmp_path / "adopt.plan"))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    (env_dir / "adopted_imports.tf").unlink()
    rc, text = plan(tmp_path / "after.plan")
    assert rc == 0, text
