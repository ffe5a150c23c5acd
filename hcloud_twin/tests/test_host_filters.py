"""The host backend's nftables rendering (pure): Hetzner's firewall semantics as rules."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hcloud_twin.hosts import address_pools, host_key_setup, nft_ruleset


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


def run_key_setup(config: dict[str, object], etc_ssh: Path) -> None:
    script = "\n".join(["set -e", *host_key_setup(config)]).replace("/etc/ssh/", f"{etc_ssh}/")
    subprocess.run(["sh", "-c", script], check=True, capture_output=True, text=True)


def test_host_keys_from_the_user_data_replace_the_image_keys(tmp_path: Path) -> None:
    given = tmp_path / "given"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gw-a host key", "-f", str(given)], check=True)
    etc_ssh = tmp_path / "etc-ssh"
    etc_ssh.mkdir()
    (etc_ssh / "ssh_host_rsa_key").write_text("the image's key\n")
    config = {
        "ssh_deletekeys": True,
        "ssh_genkeytypes": ["ed25519"],
        "ssh_keys": {"ed25519_private": given.read_text(), "ed25519_public": given.with_suffix(".pub").read_text().strip()},
    }
    run_key_setup(config, etc_ssh)
    assert sorted(p.name for p in etc_ssh.iterdir()) == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
    assert (etc_ssh / "ssh_host_ed25519_key").read_text() == given.read_text()
    # The private key written is the pair of the public key a client recorded.
    written = etc_ssh / "ssh_host_ed25519_key"
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(written)], capture_output=True, text=True, check=True)
    assert derived.stdout.split()[:2] == given.with_suffix(".pub").read_text().split()[:2]
    assert (etc_ssh / "ssh_host_ed25519_key").stat().st_mode & 0o777 == 0o600


def test_without_given_keys_the_host_makes_its_own(tmp_path: Path) -> None:
    etc_ssh = tmp_path / "etc-ssh"
    etc_ssh.mkdir()
    run_key_setup({"ssh_genkeytypes": ["ed25519"]}, etc_ssh)
    assert sorted(p.name for p in etc_ssh.iterdir()) == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
    assert len(host_key_setup({})) == 4  # delete, then rsa, ecdsa and ed25519 as cloud-init's defaults
