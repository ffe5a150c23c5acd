"""The pinned OpenTofu and hcloud provider run terraform/environments/production against the twin.

Only the endpoint differs from a real project (HCLOUD_ENDPOINT); the configuration, the provider
binary and the tfvars (the committed example with a key generated here) are the real ones. Needs
tofu and the provider mirror on PATH / TF_CLI_CONFIG_FILE (ci/integration.sh sets them up).
Step durations are printed (pytest -s), not asserted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hcloud import Client

from hcloud_twin import HcloudTwin

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
ENV_DIR = "terraform/environments/production"


def prepare(tmp_path: Path, env_dir: str) -> Path:
    """A copy of what an environment reads, at the same relative paths (tofu writes its lock file
    and state beside the configuration; the repository stays clean), and its tfvars: the committed
    example with the operator key replaced by one generated here, as README has a user do."""
    name = env_dir.rsplit("/", 1)[1]
    root = tmp_path / "repo"
    shutil.copytree(
        REPO / env_dir, root / env_dir, ignore=shutil.ignore_patterns("tests", ".terraform*", "*.tfstate*", "*.tfvars")
    )
    shutil.copytree(REPO / "terraform/modules", root / "terraform/modules", ignore=shutil.ignore_patterns("tests"))
    (root / "ansible/group_vars/all").mkdir(parents=True)
    shutil.copy(REPO / "ansible/group_vars/all/ports.yml", root / "ansible/group_vars/all/ports.yml")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops", "-f", str(key)], check=True)
    example = (root / env_dir / f"{name}.tfvars.example").read_text()
    tfvars, replaced = re.subn(r'ops = "ssh-ed25519 [^"]*"', f'ops = "{key.with_suffix(".pub").read_text().strip()}"', example)
    assert replaced == 1, "the example's ops key line changed: update this test"
    (root / env_dir / f"{name}.tfvars").write_text(tfvars)
    return root / env_dir


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    return prepare(tmp_path, ENV_DIR)


@pytest.fixture()
def twin() -> Iterator[HcloudTwin]:
    token = os.urandom(32).hex()  # the provider insists on 64 characters
    with HcloudTwin(token, action_seconds=0.2) as server:
        yield server


class Tofu:
    def __init__(self, workdir: Path, twin: HcloudTwin) -> None:
        assert twin.endpoint.startswith("http://127.0.0.1:"), twin.endpoint  # never the real API
        self.workdir = workdir
        self.env = os.environ | {
            "HCLOUD_TOKEN": twin.state.token,
            "HCLOUD_ENDPOINT": twin.endpoint,
            "TF_DATA_DIR": str(workdir.parent / "tf-data"),
            "TF_IN_AUTOMATION": "1",
            "CHECKPOINT_DISABLE": "1",
        }
        self.timings: list[tuple[str, float]] = []

    def __call__(self, *args: str, expect: int = 0, timeout: float = 600) -> str:
        start = time.monotonic()
        done = subprocess.run(
            ["tofu", args[0], "-input=false", "-no-color", *args[1:]],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.timings.append((" ".join(args[:1]), time.monotonic() - start))
        output = done.stdout + done.stderr
        assert done.returncode == expect, f"tofu {' '.join(args)} exited {done.returncode}, expected {expect}:\n{output}"
        return output


def test_init_plan_apply_replan_destroy(workdir: Path, twin: HcloudTwin) -> None:
    tofu = Tofu(workdir, twin)
    tofu("init", f"-backend-config=path={workdir.parent / 'terraform.tfstate'}")
    tofu("plan", "-var-file=production.tfvars", f"-out={workdir.parent / 'plan'}")
    tofu("apply", str(workdir.parent / "plan"))

    client = Client(token=twin.state.token, api_endpoint=twin.endpoint, poll_interval=0.1)
    servers = {s.name: s for s in client.servers.get_all()}
    # The example tfvars has a collector: production refuses to deploy without a real sink.
    assert sorted(servers) == [
        "ngd-production-collector", "ngd-production-gw-a", "ngd-production-gw-b", "ngd-production-mon",
    ]  # fmt: skip
    assert {servers[n].server_type.name for n in ("ngd-production-gw-a", "ngd-production-gw-b")} == {"cx33"}
    assert {servers[n].server_type.name for n in ("ngd-production-mon", "ngd-production-collector")} == {"cx23"}
    assert all(s.status == "running" and s.protection["delete"] for s in servers.values())
    assert [n.ip.split(".")[-1] for n in servers["ngd-production-gw-a"].private_net] == ["11"]
    (vip,) = client.floating_ips.get_all()
    assert vip.server is not None and vip.server.id == servers["ngd-production-gw-a"].id
    firewalls = {f.name: f for f in client.firewalls.get_all()}
    ssh_rule = next(r for r in firewalls["ngd-production-gateways"].rules if r.port == "22")
    assert ssh_rule.source_ips == ["198.51.100.7/32"]
    assert len(firewalls["ngd-production-gateways"].applied_to) == 2
    assert twin.state.user_data[servers["ngd-production-gw-a"].id].startswith("#cloud-config")
    gateways = client.servers.get_all(label_selector="app.nanogridata.io/role=gateway")
    assert sorted(s.name for s in gateways) == ["ngd-production-gw-a", "ngd-production-gw-b"]

    # The inventory bridge reads tofu's outputs as deploy.sh has it do: the twin's addresses arrive.
    bridge = subprocess.run(
        [sys.executable, str(REPO / "terraform/inventory_bridge.py"), "production", "--tofu-dir", str(workdir), "--out", "-"],
        env=tofu.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bridge.returncode == 0, bridge.stderr
    inventory = yaml.safe_load(bridge.stdout)
    gateways = inventory["all"]["children"]["gateways"]["hosts"]
    for host in ("gw-a", "gw-b"):
        server = servers[f"ngd-production-{host}"]
        assert gateways[host]["ansible_host"] == server.public_net.ipv4.ip
        assert gateways[host]["ngd_private_ip"] == server.private_net[0].ip
    assert inventory["all"]["vars"]["ngd_vip"] == vip.ip
    assert str(inventory["all"]["vars"]["ngd_floating_ip_id"]) == str(vip.id)

    # A second plan against what was just built: nothing to change.
    tofu("plan", "-var-file=production.tfvars", "-detailed-exitcode")

    # Production's delete protection holds: destroy is refused by the API, as in a real project.
    refused = tofu("destroy", "-auto-approve", "-var-file=production.tfvars", expect=1)
    assert "delete protection" in refused and "protected" in refused
    for server in client.servers.get_all():
        client.servers.change_protection(server, delete=False, rebuild=False).wait_until_finished()
    for fip in client.floating_ips.get_all():
        client.floating_ips.change_protection(fip, delete=False).wait_until_finished()
    tofu("destroy", "-auto-approve", "-var-file=production.tfvars")
    assert twin.counts() == dict.fromkeys(twin.counts(), 0), twin.counts()
    print("\n" + "\n".join(f"tofu {step:8s} {seconds:6.1f} s" for step, seconds in tofu.timings))


def test_the_provider_refuses_a_retired_server_type(tmp_path: Path, twin: HcloudTwin) -> None:
    """Below the module's own validation: the provider reads the twin's deprecation of cx22 and
    refuses to order it, as it does against Hetzner today."""
    config = tmp_path / "retired"
    config.mkdir()
    (config / "main.tf").write_text(
        (REPO / "terraform/environments/production/main.tf").read_text().split('provider "hcloud"')[0].split("backend")[0]
        + "}\n}\n"
        + 'provider "hcloud" {}\n'
        + 'resource "hcloud_server" "old" {\n  name = "old"\n  server_type = "cx22"\n'
        + '  image = "debian-12"\n  location = "fsn1"\n}\n'
    )
    tofu = Tofu(config, twin)
    tofu("init", "-backend=false")
    out = tofu("apply", "-auto-approve", expect=1)
    assert 'server plan "cx22" is deprecated and can no longer be ordered' in out
    assert twin.counts()["servers"] == 0


def test_staging_with_the_tls_firewall_round_trips(tmp_path: Path, twin: HcloudTwin) -> None:
    """Staging: four servers (a collector), no delete protection, and the optional TLS firewall
    (a server with two firewalls); apply, an unchanged re-plan, destroy to an empty project."""
    workdir = prepare(tmp_path, "terraform/environments/staging")
    tofu = Tofu(workdir, twin)
    tofu("init", f"-backend-config=path={tmp_path / 'terraform.tfstate'}")
    args = ("-var-file=staging.tfvars", "-var=device_tls_enabled=true")
    tofu("apply", "-auto-approve", *args)
    client = Client(token=twin.state.token, api_endpoint=twin.endpoint, poll_interval=0.1)
    assert sorted(s.name for s in client.servers.get_all()) == [
        "ngd-staging-collector",
        "ngd-staging-gw-a",
        "ngd-staging-gw-b",
        "ngd-staging-mon",
    ]
    gw_a = client.servers.get_by_name("ngd-staging-gw-a")
    assert gw_a is not None and len(gw_a.public_net.firewalls) == 2
    tofu("plan", "-detailed-exitcode", *args)
    tofu("destroy", "-auto-approve", *args)
    assert twin.counts() == dict.fromkeys(twin.counts(), 0), twin.counts()
