"""Smoke checks of two lab hosts made by scripts/lab.sh through molecule/shared."""

from __future__ import annotations

import ipaddress

import pytest
import testinfra.host

PEERS = {"gw-a": "gw-b", "gw-b": "gw-a"}


def eth0_address(host: testinfra.host.Host) -> ipaddress.IPv4Interface:
    out = host.check_output("ip -4 -o addr show dev eth0")
    return ipaddress.IPv4Interface(out.split()[3])


def test_systemd_is_pid1_and_running(host: testinfra.host.Host) -> None:
    assert host.check_output("readlink /proc/1/exe") == "/usr/lib/systemd/systemd"
    state = host.run("systemctl is-system-running")
    assert state.stdout.strip() == "running", host.run("systemctl --failed --no-pager").stdout


def test_address_follows_the_lab_definition(host: testinfra.host.Host) -> None:
    hostname = host.check_output("hostname")
    octet = {"gw-a": 11, "gw-b": 12}[hostname]
    assert int(eth0_address(host).ip.packed[-1]) == octet


def test_peer_reachable_by_name_on_the_lab_network(host: testinfra.host.Host) -> None:
    peer = PEERS[host.check_output("hostname")]
    peer_ip = ipaddress.IPv4Address(host.check_output(f"getent hosts {peer}").split()[0])
    assert peer_ip in eth0_address(host).network
    result = host.run(f"ping -c 2 -W 2 {peer_ip}")
    assert result.rc == 0, result.stdout + result.stderr


def test_apt_installed_package_works(host: testinfra.host.Host) -> None:
    assert host.package("jq").is_installed
    assert host.check_output("echo '{\"a\": 41}' | jq '.a + 1'") == "42"


@pytest.mark.parametrize("product", ["nginx", "keepalived", "prometheus"])
def test_image_carries_no_product_package(host: testinfra.host.Host, product: str) -> None:
    assert not host.package(product).is_installed
