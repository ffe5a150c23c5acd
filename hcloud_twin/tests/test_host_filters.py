"""The host backend's nftables rendering (pure): Hetzner's firewall semantics as rules."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hcloud_twin.hosts import address_pools, nft_ruleset


def rule(direction: str, protocol: str, port: str | None, ips: list[str]) -> dict[str, object]:
    key = "source_ips" if direction == "in" else "destination_ips"
    return {
        "direction": direction,
        "protocol": protocol,
        "port": port,
        key: ips,
        "source_ips" if key != "source_ips" else "destination_ips": [],
    }


def test_no_firewall_leaves_everything_open() -> None:
    text = nft_ruleset([], [])
    assert "drop" not in text and "policy accept" in text


def test_inbound_rules_then_drop_on_the_public_interface_only() -> None:
    firewall = {"rules": [rule("in", "tcp", "22", ["198.51.100.7/32", "2001:db8::/64"]), rule("in", "icmp", None, ["0.0.0.0/0"])]}
    text = nft_ruleset([firewall], [])
    assert 'iifname != "eth0" accept' in text  # private networks are not filtered
    assert "ct state established,related accept" in text
    assert "ip saddr { 198.51.100.7/32 } meta l4proto tcp tcp dport 22 accept" in text
    assert "ip6 saddr { 2001:db8::/64 } meta l4proto tcp tcp dport 22 accept" in text
    assert "ip saddr { 0.0.0.0/0 } meta l4proto icmp accept" in text
    assert text.index("dport 22 accept") < text.index('iifname "eth0" drop')
    assert 'oifname "eth0" drop' not in text  # no outbound rules: all may leave


def test_a_firewall_without_inbound_rules_blocks_all_inbound() -> None:
    text = nft_ruleset([{"rules": [rule("out", "udp", "53", ["0.0.0.0/0"])]}], [])
    assert 'iifname "eth0" drop' in text
    assert "ip daddr { 0.0.0.0/0 } meta l4proto udp udp dport 53 accept" in text and 'oifname "eth0" drop' in text


def test_floating_ips_of_others_get_no_arp_answer() -> None:
    text = nft_ruleset([], ["172.30.71.194", "172.30.71.195"])
    assert 'iifname "eth0" arp daddr ip { 172.30.71.194, 172.30.71.195 } drop' in text


def test_address_pools() -> None:
    assert address_pools("172.30.71.0/24") == {"public_ipv4_pool": "172.30.71.0/25", "floating_ipv4_pool": "172.30.71.192/26"}


def test_nft_accepts_the_ruleset(tmp_path: Path) -> None:
    """nft itself checks what the backend loads (-c: no change), in a network namespace of its own."""
    firewall = {"rules": [rule("in", "tcp", "80-85", ["10.0.0.0/8", "::/0"]), rule("out", "udp", "any", ["0.0.0.0/0"])]}
    ruleset = tmp_path / "rules.nft"
    ruleset.write_text(nft_ruleset([firewall], ["172.30.71.194"]))
    done = subprocess.run(
        ["unshare", "--net", "nft", "-c", "-f", str(ruleset)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
