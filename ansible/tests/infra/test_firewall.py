"""firewall role: default-drop inbound; each port open only to the sources it is meant for."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import pytest
import testinfra.host

from conftest import can_connect, private_ip

pytestmark = pytest.mark.firewall


def test_ruleset_loaded_with_default_drop(host: testinfra.host.Host) -> None:
    assert host.service("nftables").is_enabled
    table = host.check_output("nft list table inet ngd_filter")
    assert "hook input priority filter; policy drop;" in table
    assert 'iifname "lo" accept' in table


def test_ruleset_file_is_root_only(host: testinfra.host.Host) -> None:
    ruleset = host.file("/etc/nftables.conf")
    assert ruleset.user == "root"
    assert ruleset.mode == 0o600
    # The file on disk is what is loaded: a reload must not change the live table.
    assert host.run("nft -c -f /etc/nftables.conf").rc == 0


def test_only_our_table_is_replaced(host: testinfra.host.Host) -> None:
    """A foreign table (a container runtime's NAT, a cloud agent) survives our reload."""
    host.run("nft add table inet ngd_test_foreign")
    try:
        assert host.run("systemctl reload nftables").rc == 0
        assert host.run("nft list table inet ngd_test_foreign").rc == 0
    finally:
        host.run("nft delete table inet ngd_test_foreign")


def test_gateway_ports_open_only_to_their_sources(
    host: testinfra.host.Host,
    name: str,
    groups: dict[str, list[str]],
    inventory: Any,
    other_host: Callable[[str], testinfra.host.Host],
    tcp_listener: Callable[[int], None],
    hostvars: dict[str, Any],
) -> None:
    if name not in groups["gateways"] or not groups["monitoring"]:
        pytest.skip("needs a gateway under test, its peer and a monitoring host")
    peer = next(h for h in groups["gateways"] if h != name)
    monitor = groups["monitoring"][0]
    data_port = int(hostvars["ngd_gateway_data_port"])
    metrics_port = int(hostvars["ngd_gateway_metrics_port"])
    me = private_ip(inventory, name)
    tcp_listener(data_port)
    tcp_listener(metrics_port)
    # Data port (behind nginx): the peer's nginx may connect, the monitoring host may not.
    assert can_connect(other_host(peer), me, data_port)
    assert not can_connect(other_host(monitor), me, data_port)
    # Metrics: the monitoring host may scrape, the peer may not.
    assert can_connect(other_host(monitor), me, metrics_port)
    assert not can_connect(other_host(peer), me, metrics_port)
    # The node itself may always connect (local traffic goes over lo).
    assert can_connect(host, me, data_port)


def connects_from_here(address: str, port: int, timeout: float = 2.0) -> bool:
    """True when this machine (the one running the lab: .1 of the lab's bridge) reaches address:port."""
    try:
        socket.create_connection((address, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def test_lab_networks_are_derived_from_the_lab_subnet(
    host: testinfra.host.Host,
    name: str,
    groups: dict[str, list[str]],
    inventory: Any,
    other_host: Callable[[str], testinfra.host.Host],
    tcp_listener: Callable[[int], None],
    hostvars: dict[str, Any],
) -> None:
    """In a lab, ngd_admin_cidrs is the lab machine (.1 of ngd_lab_subnet) and ngd_device_cidrs the
    lab's subnet (group_vars/all/topology.yml): SSH from the machine only, devices from the subnet."""
    subnet = hostvars.get("ngd_lab_subnet")
    if not subnet:
        pytest.skip("not a lab: the networks come from the environment's inventory")
    others = [h for hosts in groups.values() for h in hosts if h != name]
    if not others:
        pytest.skip("needs a second host of the lab")
    me = private_ip(inventory, name)
    assert ipaddress.ip_address(me) in ipaddress.ip_network(subnet)
    ssh_port = 22  # the firewall role's firewall_ssh_port default
    tcp_listener(ssh_port)
    assert connects_from_here(me, ssh_port), "the lab machine (admin network) must reach SSH"
    assert not can_connect(other_host(others[0]), me, ssh_port), "SSH must be closed to other lab hosts"
    if name in groups["gateways"]:
        device_port = int(hostvars["ngd_device_port"])
        tcp_listener(device_port)
        assert can_connect(other_host(others[0]), me, device_port), "devices on the lab subnet must connect"
