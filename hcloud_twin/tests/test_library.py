"""The official hcloud Python library, unmodified, against the twin (only the endpoint differs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hcloud import APIException, Client
from hcloud.firewalls import FirewallResource, FirewallRule
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.networks import NetworkSubnet
from hcloud.placement_groups import PlacementGroup
from hcloud.server_types import ServerType
from hcloud.servers import ServerCreatePublicNetwork

from hcloud_twin import HcloudTwin

LABELS = {"app.nanogridata.io/environment": "test", "team": "sre"}


def make_pair(client: Client, public_key: str) -> dict[str, object]:
    key = client.ssh_keys.create(name="ops", public_key=public_key, labels=LABELS)
    group = client.placement_groups.create(name="gateways", type="spread", labels=LABELS).placement_group
    network = client.networks.create(
        name="private",
        ip_range="10.53.0.0/16",
        subnets=[NetworkSubnet(type="cloud", ip_range="10.53.1.0/24", network_zone="eu-central")],
        labels=LABELS,
    )
    firewall = client.firewalls.create(
        name="gateways",
        rules=[FirewallRule(direction="in", protocol="tcp", port="22", source_ips=["198.51.100.7/32"])],
        labels=LABELS,
    ).firewall
    servers = []
    for name in ("gw-a", "gw-b"):
        created = client.servers.create(
            name=name,
            server_type=ServerType(name="cx33"),
            image=Image(name="debian-12"),
            location=Location(name="fsn1"),
            ssh_keys=[key],
            placement_group=group,
            networks=[network],
            firewalls=[firewall],
            user_data="#cloud-config\nhostname: " + name + "\n",
            labels=LABELS | {"role": "gateway"},
            public_net=ServerCreatePublicNetwork(enable_ipv4=True, enable_ipv6=True),
        )
        created.action.wait_until_finished()
        servers.append(created.server)
    return {"key": key, "group": group, "network": network, "firewall": firewall, "servers": servers}


def test_a_gateway_pair_from_scratch(client: Client, twin: HcloudTwin, public_key: str) -> None:
    made = make_pair(client, public_key)
    gw_a = client.servers.get_by_name("gw-a")
    assert gw_a is not None and gw_a.status == "running"
    assert gw_a.server_type.name == "cx33" and gw_a.location.name == "fsn1"
    assert gw_a.placement_group is not None and gw_a.placement_group.name == "gateways"
    assert [n.ip for n in gw_a.private_net] == ["10.53.1.2"]
    assert gw_a.public_net.ipv4.ip.startswith("203.0.113.") and gw_a.public_net.ipv6.ip.startswith("2001:db8:")
    assert [f.firewall.id for f in gw_a.public_net.firewalls] == [made["firewall"].id]  # type: ignore[attr-defined]
    group = client.placement_groups.get_by_id(made["group"].id)  # type: ignore[attr-defined]
    assert sorted(group.servers) == sorted(s.id for s in made["servers"])  # type: ignore[attr-defined]
    assert twin.state.user_data[gw_a.id] == "#cloud-config\nhostname: gw-a\n"
    assert twin.state.server_keys[gw_a.id] == [public_key]
    assert [s.name for s in client.servers.get_all(label_selector="role=gateway,team=sre")] == ["gw-a", "gw-b"]


def test_floating_ip_follows_assign_and_unassign(client: Client, public_key: str) -> None:
    made = make_pair(client, public_key)
    gw_a, gw_b = made["servers"]  # type: ignore[misc]
    fip = client.floating_ips.create(type="ipv4", home_location=Location(name="fsn1"), name="vip").floating_ip
    client.floating_ips.assign(fip, gw_a).wait_until_finished()
    assert client.floating_ips.get_by_id(fip.id).server.id == gw_a.id
    assert client.servers.get_by_id(gw_a.id).public_net.floating_ips[0].id == fip.id
    client.floating_ips.assign(fip, gw_b).wait_until_finished()
    assert client.floating_ips.get_by_id(fip.id).server.id == gw_b.id
    with pytest.raises(APIException) as exc:
        client.floating_ips.assign(fip, gw_b)
    assert exc.value.code == "floating_ip_assigned"
    client.floating_ips.unassign(fip).wait_until_finished()
    assert client.floating_ips.get_by_id(fip.id).server is None


def test_power_actions(client: Client, public_key: str) -> None:
    gw_a = make_pair(client, public_key)["servers"][0]  # type: ignore[index]
    client.servers.shutdown(gw_a).wait_until_finished()
    assert client.servers.get_by_id(gw_a.id).status == "off"
    client.servers.power_on(gw_a).wait_until_finished()
    assert client.servers.get_by_id(gw_a.id).status == "running"
    client.servers.reboot(gw_a).wait_until_finished()
    actions = client.servers.get_actions_list(gw_a).actions
    assert [a.command for a in actions] == ["create_server", "shutdown_server", "start_server", "reboot_server"]


def test_placement_group_change_needs_a_stopped_server(client: Client, public_key: str) -> None:
    gw_a = make_pair(client, public_key)["servers"][0]  # type: ignore[index]
    other = client.placement_groups.create(name="other", type="spread").placement_group
    with pytest.raises(APIException) as exc:
        client.servers.add_to_placement_group(gw_a, PlacementGroup(id=other.id))
    assert exc.value.code == "server_not_stopped"


def test_firewall_rules_and_resources(client: Client, public_key: str) -> None:
    made = make_pair(client, public_key)
    firewall = made["firewall"]
    gw_a = made["servers"][0]  # type: ignore[index]
    actions = client.firewalls.set_rules(
        firewall,  # type: ignore[arg-type]
        [FirewallRule(direction="in", protocol="icmp", source_ips=["0.0.0.0/0", "::/0"], description="icmp")],
    )
    for action in actions:
        action.wait_until_finished()
    reread = client.firewalls.get_by_id(firewall.id)  # type: ignore[attr-defined]
    assert [(r.protocol, r.port, r.description) for r in reread.rules] == [("icmp", None, "icmp")]
    for action in client.firewalls.remove_from_resources(reread, [FirewallResource(type="server", server=gw_a)]):
        action.wait_until_finished()
    assert len(client.firewalls.get_by_id(firewall.id).applied_to) == 1  # type: ignore[attr-defined]
    assert client.servers.get_by_id(gw_a.id).public_net.firewalls == []


def test_delete_everything_leaves_an_empty_project(client: Client, twin: HcloudTwin, public_key: str) -> None:
    made = make_pair(client, public_key)
    for server in made["servers"]:  # type: ignore[attr-defined]
        client.servers.delete(server).wait_until_finished()
    client.firewalls.delete(made["firewall"])  # type: ignore[arg-type]
    client.networks.delete(made["network"])  # type: ignore[arg-type]
    client.placement_groups.delete(made["group"])  # type: ignore[arg-type]
    client.ssh_keys.delete(made["key"])  # type: ignore[arg-type]
    assert set(twin.counts().values()) == {0}  # auto-delete primary IPs went with their servers


def test_get_all_walks_every_page(client: Client) -> None:
    for i in range(60):  # more than one page of 50
        client.placement_groups.create(name=f"pg-{i:02d}", type="spread")
    assert [g.name for g in client.placement_groups.get_all()] == [f"pg-{i:02d}" for i in range(60)]


def test_errors_surface_as_api_exceptions(client: Client, twin: HcloudTwin, token: str) -> None:
    with pytest.raises(APIException) as exc:
        client.servers.create(name="old", server_type=ServerType(name="cx32"), image=Image(name="debian-12"))
    assert exc.value.code == "invalid_server_type"
    with pytest.raises(APIException) as exc:
        client.servers.create(name="bad_name!", server_type=ServerType(name="cx23"), image=Image(name="debian-12"))
    assert exc.value.code == "invalid_input"
    assert client.servers.get_by_name("nobody") is None
    with pytest.raises(APIException) as exc:
        Client(token="wrong", api_endpoint=twin.endpoint).servers.get_all()
    assert exc.value.code == "unauthorized"


def test_primary_ip_lifecycle(client: Client, public_key: str) -> None:
    primary = client.primary_ips.create(type="ipv4", name="spare", location=Location(name="fsn1")).primary_ip
    assert primary.assignee_id is None and primary.ip.startswith("203.0.113.")
    gw_a = make_pair(client, public_key)["servers"][0]  # type: ignore[index]
    with pytest.raises(APIException) as exc:
        client.primary_ips.assign(primary, assignee_id=gw_a.id, assignee_type="server")
    assert exc.value.code == "server_not_stopped"
    client.primary_ips.delete(primary)
    assert client.primary_ips.get_by_name("spare") is None


def test_state_file_survives_a_restart(tmp_path: Path, token: str, public_key: str) -> None:
    state = tmp_path / "twin.json"
    with HcloudTwin(token, action_seconds=0.05, state_file=state) as first:
        client = Client(token=token, api_endpoint=first.endpoint, poll_interval=0.05)
        made = make_pair(client, public_key)
        fip = client.floating_ips.create(type="ipv4", home_location=Location(name="fsn1"), name="vip").floating_ip
        client.floating_ips.assign(fip, made["servers"][0]).wait_until_finished()  # type: ignore[index]
        before = first.counts()
    with HcloudTwin(token, action_seconds=0.05, state_file=state) as second:
        client = Client(token=token, api_endpoint=second.endpoint, poll_interval=0.05)
        assert second.counts() == before
        gw_a = client.servers.get_by_name("gw-a")
        assert gw_a is not None and gw_a.status == "running" and gw_a.private_net[0].ip == "10.53.1.2"
        assert client.floating_ips.get_by_name("vip").server.id == gw_a.id
        assert second.state.user_data[gw_a.id].startswith("#cloud-config")
        created = client.servers.get_actions_list(gw_a).actions[0]
        assert (created.command, created.status) == ("create_server", "success")
        other = client.floating_ips.create(type="ipv4", home_location=Location(name="fsn1"), name="vip2").floating_ip
        assert other.id > fip.id and other.ip != fip.ip  # ids and addresses are not handed out twice
        client.servers.delete(gw_a).wait_until_finished()
    with HcloudTwin(token, state_file=state) as third:
        assert third.counts()["servers"] == 1


def test_a_broken_state_file_is_refused_with_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "token").write_text("tok\n")
    (tmp_path / "state.json").write_text("{not json")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hcloud_twin",
            "--token-file",
            str(tmp_path / "token"),
            "--state-file",
            str(tmp_path / "state.json"),
        ],
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "--state-file" in done.stderr and "Traceback" not in done.stderr
