"""firewall role: default-drop inbound; each port open only to the sources it is meant for."""

from __future__ import annotations

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
