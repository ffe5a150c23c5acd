"""The opt-in host backend: servers the twin creates are lab containers one can SSH into, the
cloud firewall really filters their public interface, a floating IP reaches only its server.

Uses the lab "twin" and its subnets (public 172.30.71.0/24, private 172.30.70.0/24): networks
and containers this test creates and removes. Needs docker and the lab image (scripts/lab.sh).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hcloud import Client
from hcloud.firewalls import FirewallRule
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.networks import NetworkSubnet
from hcloud.server_types import ServerType

from hcloud_twin import HcloudTwin
from hcloud_twin.hosts import DockerHosts, address_pools

pytestmark = [pytest.mark.integration, pytest.mark.hosts]

REPO = Path(__file__).resolve().parents[3]
LAB = "twin"
PUBLIC = "172.30.71.0/24"
DOCKER_HOST = "172.30.71.1"  # the docker host's address on the public network: where we stand


@pytest.fixture()
def cloud(tmp_path: Path) -> Iterator[tuple[HcloudTwin, DockerHosts, Client]]:
    token = os.urandom(32).hex()
    hosts = DockerHosts(REPO, LAB, PUBLIC)
    try:
        gateway = hosts.prepare()
        assert gateway == DOCKER_HOST
        with HcloudTwin(token, host=gateway, own_network=True, action_seconds=0.2, **address_pools(PUBLIC)) as twin:
            hosts.attach(twin)
            yield twin, hosts, Client(token=token, api_endpoint=twin.endpoint, poll_interval=0.1)
    finally:
        hosts.close()


SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
SSH_OPTIONS += ["-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]


def ssh(key: Path, address: str, command: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", str(key), *SSH_OPTIONS, f"root@{address}", command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def until(what: str, check: object, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def test_servers_are_hosts(cloud: tuple[HcloudTwin, DockerHosts, Client], tmp_path: Path) -> None:
    twin, hosts, client = cloud
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops", "-f", str(key)], check=True)
    ssh_key = client.ssh_keys.create(name="ops", public_key=key.with_suffix(".pub").read_text())
    network = client.networks.create(
        name="private",
        ip_range="172.30.64.0/20",
        subnets=[NetworkSubnet(type="cloud", ip_range="172.30.70.0/24", network_zone="eu-central")],
    )
    admin = FirewallRule(direction="in", protocol="tcp", port="22", source_ips=[f"{DOCKER_HOST}/32"])
    icmp = FirewallRule(direction="in", protocol="icmp", source_ips=["0.0.0.0/0", "::/0"])
    firewall = client.firewalls.create(name="gateways", rules=[admin, icmp]).firewall
    servers = {}
    for name in ("gw-a", "gw-b"):
        created = client.servers.create(
            name=f"ngd-test-{name}",
            server_type=ServerType(name="cx23"),
            image=Image(name="debian-12"),
            location=Location(name="fsn1"),
            ssh_keys=[ssh_key],
            networks=[network],
            firewalls=[firewall],
            user_data=f"#cloud-config\nhostname: {name}\nssh_pwauth: false\npackages:\n  - python3\n",
        )
        created.action.wait_until_finished()
        servers[name] = client.servers.get_by_id(created.server.id)
    hosts.wait_idle(900)
    a, b = servers["gw-a"], servers["gw-b"]

    # sshd with the key from the API, the hostname from the user data, both addresses on the host.
    until("ssh to gw-a", lambda: ssh(key, a.public_net.ipv4.ip, "true").returncode == 0)
    assert ssh(key, a.public_net.ipv4.ip, "hostname").stdout.strip() == "gw-a"
    addresses = ssh(key, a.public_net.ipv4.ip, "ip -4 -o addr show").stdout
    assert a.public_net.ipv4.ip in addresses and a.private_net[0].ip in addresses
    assert ssh(key, a.public_net.ipv4.ip, f"ping -c1 -W2 {b.private_net[0].ip}").returncode == 0  # private: unfiltered
    # The hosts reach the API where it listens (keepalived's hook will call it from there).
    api = ssh(key, a.public_net.ipv4.ip, f"curl -sf -H 'Authorization: Bearer {twin.state.token}' {twin.endpoint}/servers/{a.id}")
    assert api.returncode == 0 and f'"name": "{a.name}"' in api.stdout, api.stderr

    # A firewall that does not admit where we stand locks us out; the right CIDR lets us back in.
    for action in client.firewalls.set_rules(
        firewall, [FirewallRule(direction="in", protocol="tcp", port="22", source_ips=["198.51.100.7/32"])]
    ):
        action.wait_until_finished()
    hosts.wait_idle(120)
    assert ssh(key, a.public_net.ipv4.ip, "true").returncode == 255
    for action in client.firewalls.set_rules(firewall, [admin, icmp]):
        action.wait_until_finished()
    hosts.wait_idle(120)
    assert ssh(key, a.public_net.ipv4.ip, "true").returncode == 0

    # Both hosts claim the floating IP (as in a split brain); it reaches only the assigned one.
    fip = client.floating_ips.create(type="ipv4", home_location=Location(name="fsn1"), name="vip").floating_ip
    for server in (a, b):
        assert ssh(key, server.public_net.ipv4.ip, f"ip addr add {fip.ip}/32 dev eth0").returncode == 0
    for holder in ("gw-a", "gw-b", "gw-a"):
        client.floating_ips.assign(fip, servers[holder]).wait_until_finished()
        hosts.wait_idle(120)
        until(f"the floating IP on {holder}", lambda h=holder: ssh(key, fip.ip, "hostname").stdout.strip() == h, timeout=60)

    for server in (a, b):
        client.servers.delete(server).wait_until_finished()
    hosts.wait_idle(120)
    names = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True, check=True).stdout
    assert f"ngd-{LAB}-ngd-test-gw-a" not in names and f"ngd-{LAB}-ngd-test-gw-b" not in names


def test_the_cli_serves_on_the_public_network_and_cleans_up(tmp_path: Path) -> None:
    import json
    import signal
    import sys

    (tmp_path / "token").write_text("tok\n")
    command = [sys.executable, "-m", "hcloud_twin", "--token-file", str(tmp_path / "token"), "--docker-hosts", LAB]
    with subprocess.Popen(
        [*command, "--public-subnet", PUBLIC],
        env=os.environ | {"PYTHONPATH": str(REPO / "hcloud_twin/src")},
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        endpoint = json.loads(proc.stdout.readline())["endpoint"]
        assert endpoint.startswith(f"http://{DOCKER_HOST}:")
        networks = subprocess.run(
            ["docker", "network", "ls", "--format", "{{.Name}}"], capture_output=True, text=True, check=True
        )
        assert f"ngd-{LAB}-public" in networks.stdout.split()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    networks = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"], capture_output=True, text=True, check=True)
    assert f"ngd-{LAB}-public" not in networks.stdout.split()
