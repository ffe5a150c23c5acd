"""The twin's HTTP answers: envelopes, codes, pagination, label selectors, actions, faults."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from conftest import Api
from hcloud_twin import HcloudTwin


def wait_action(api: Api, action_id: int) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while (action := api.call("GET", f"/actions/{action_id}").json()["action"])["status"] == "running":
        assert time.monotonic() < deadline, action
        time.sleep(0.05)
    return action


def test_loopback_only(twin: HcloudTwin) -> None:
    assert twin.address[0] == "127.0.0.1" and twin.address[1] > 0
    with pytest.raises(ValueError, match="loopback"):
        HcloudTwin("t", host="0.0.0.0")


def test_bad_token_is_401_with_envelope_and_headers(twin: HcloudTwin) -> None:
    answer = requests.get(twin.endpoint + "/servers", headers={"Authorization": "Bearer wrong"}, timeout=5)
    assert answer.status_code == 401
    assert answer.json() == {"error": {"code": "unauthorized", "message": "unable to authenticate", "details": {}}}
    assert answer.headers["RateLimit-Limit"] == "3600" and answer.headers["X-Correlation-Id"]
    assert requests.get(twin.endpoint + "/servers", timeout=5).status_code == 401


def test_not_found_and_unknown_routes(api: Api) -> None:
    for path in ("/servers/999", "/networks/5", "/actions/77", "/server_types/1", "/nothing"):
        answer = api.call("GET", path)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "not_found"


def test_json_error_and_invalid_input_name_the_field(api: Api) -> None:
    broken = requests.post(api.base + "/ssh_keys", headers=api.headers, data=b"{nope", timeout=5)
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "json_error"
    bad = api.call("POST", "/networks", {"name": "n", "ip_range": "10.0.0.1/16"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_input"
    assert bad.json()["error"]["details"]["fields"][0]["name"] == "ip_range"
    key = api.call("POST", "/ssh_keys", {"name": "k", "public_key": "ssh-ed25519 not-base64!"})
    assert key.status_code == 400 and key.json()["error"]["details"]["fields"][0]["name"] == "public_key"


def test_names_are_unique_per_type(api: Api, public_key: str) -> None:
    assert api.call("POST", "/placement_groups", {"name": "pg", "type": "spread"}).status_code == 201
    again = api.call("POST", "/placement_groups", {"name": "pg", "type": "spread"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "uniqueness_error"
    assert api.call("POST", "/ssh_keys", {"name": "a", "public_key": public_key}).status_code == 201
    same_key = api.call("POST", "/ssh_keys", {"name": "b", "public_key": public_key})
    assert same_key.status_code == 409 and same_key.json()["error"]["code"] == "uniqueness_error"


def test_pagination(api: Api) -> None:
    for i in range(7):
        assert api.call("POST", "/placement_groups", {"name": f"pg-{i}", "type": "spread"}).status_code == 201
    first = api.call("GET", "/placement_groups?per_page=3").json()
    assert [g["name"] for g in first["placement_groups"]] == ["pg-0", "pg-1", "pg-2"]
    assert first["meta"]["pagination"] == {
        "page": 1,
        "per_page": 3,
        "previous_page": None,
        "next_page": 2,
        "last_page": 3,
        "total_entries": 7,
    }
    last = api.call("GET", "/placement_groups?per_page=3&page=3").json()
    assert [g["name"] for g in last["placement_groups"]] == ["pg-6"]
    assert last["meta"]["pagination"]["next_page"] is None
    assert api.call("GET", "/placement_groups?per_page=51").status_code == 400


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("env=prod", ["a", "b"]),
        ("env==prod", ["a", "b"]),
        ("env!=prod", ["c", "d"]),
        ("role", ["a", "c"]),
        ("!role", ["b", "d"]),
        ("env in (prod,staging)", ["a", "b", "c"]),
        ("env notin (prod)", ["c", "d"]),
        ("env=prod,role=gw", ["a"]),
        ("app.nanogridata.io/env=prod", ["b"]),
    ],
)
def test_label_selectors(api: Api, selector: str, names: list[str]) -> None:
    labels = {
        "a": {"env": "prod", "role": "gw"},
        "b": {"env": "prod", "app.nanogridata.io/env": "prod"},
        "c": {"env": "staging", "role": "mon"},
        "d": {},
    }
    for name, label_map in labels.items():
        assert api.call("POST", "/placement_groups", {"name": name, "type": "spread", "labels": label_map}).status_code == 201
    found = api.call("GET", f"/placement_groups?label_selector={requests.utils.quote(selector)}").json()
    assert [g["name"] for g in found["placement_groups"]] == names


def test_bad_labels_and_selectors_are_invalid_input(api: Api) -> None:
    bad = api.call("POST", "/placement_groups", {"name": "x", "type": "spread", "labels": {"-bad": "v"}})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["fields"][0]["name"] == "labels"
    assert api.call("GET", "/placement_groups?label_selector=a%3D%3D%3Db").status_code == 400


def test_catalog_current_and_retired_server_types(api: Api) -> None:
    types = {t["name"]: t for t in api.call("GET", "/server_types?per_page=50").json()["server_types"]}
    assert types["cx23"]["deprecation"] is None and types["cx33"]["cores"] == 4
    assert types["cx22"]["deprecated"] is True and types["cx22"]["deprecation"]["unavailable_after"].startswith("2026-01-01")
    assert types["cx32"]["deprecation"] is not None
    by_name = api.call("GET", "/server_types?name=cx33").json()["server_types"]
    assert [t["id"] for t in by_name] == [types["cx33"]["id"]]
    assert {loc["name"] for loc in api.call("GET", "/locations").json()["locations"]} >= {"fsn1", "nbg1", "hel1"}
    fsn = api.call("GET", "/datacenters?name=fsn1-dc14").json()["datacenters"][0]
    assert types["cx22"]["id"] not in fsn["server_types"]["available"]
    images = api.call("GET", "/images?name=debian-12&architecture=x86").json()["images"]
    assert len(images) == 1 and images[0]["os_flavor"] == "debian"


def test_retired_server_type_cannot_be_ordered(api: Api) -> None:
    answer = api.call("POST", "/servers", {"name": "old", "server_type": "cx22", "image": "debian-12", "location": "fsn1"})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_server_type"
    assert "cx22" in answer.json()["error"]["message"]
    assert api.call("GET", "/servers").json()["servers"] == []


def test_server_create_shape_and_async_action(api: Api, public_key: str) -> None:
    key = api.call("POST", "/ssh_keys", {"name": "ops", "public_key": public_key}).json()["ssh_key"]
    created = api.call(
        "POST",
        "/servers",
        {"name": "gw-a", "server_type": "cx33", "image": "debian-12", "location": "fsn1", "ssh_keys": [key["id"]]},
    )
    assert created.status_code == 201
    body = created.json()
    assert body["action"]["command"] == "create_server" and body["root_password"] is None
    server = body["server"]
    assert server["status"] == "initializing"
    assert server["server_type"]["name"] == "cx33" and server["image"]["name"] == "debian-12"
    assert server["datacenter"]["location"]["name"] == "fsn1"
    assert server["public_net"]["ipv4"]["ip"].startswith("203.0.113.")
    assert wait_action(api, body["action"]["id"])["status"] == "success"
    assert api.call("GET", f"/servers/{server['id']}").json()["server"]["status"] == "running"
    primaries = api.call("GET", "/primary_ips").json()["primary_ips"]
    assert {p["type"] for p in primaries} == {"ipv4", "ipv6"}
    assert all(p["assignee_id"] == server["id"] and p["auto_delete"] for p in primaries)


def test_locked_while_an_action_runs(twin: HcloudTwin, api: Api) -> None:
    twin.set_action_seconds(3.0)  # long enough for the second call on a starved CI machine
    server = api.call("POST", "/servers", {"name": "s", "server_type": "cx23", "image": "debian-12"}).json()
    locked = api.call("POST", f"/servers/{server['server']['id']}/actions/poweroff")
    assert locked.status_code == 423 and locked.json()["error"]["code"] == "locked"
    wait_action(api, server["action"]["id"])
    assert api.call("POST", f"/servers/{server['server']['id']}/actions/poweroff").status_code == 201


def test_delete_protection(twin: HcloudTwin, api: Api) -> None:
    twin.set_action_seconds(0)
    fip = api.call("POST", "/floating_ips", {"type": "ipv4", "home_location": "fsn1"}).json()["floating_ip"]
    assert api.call("POST", f"/floating_ips/{fip['id']}/actions/change_protection", {"delete": True}).status_code == 201
    refused = api.call("DELETE", f"/floating_ips/{fip['id']}")
    assert refused.status_code == 423 and refused.json()["error"]["code"] == "protected"
    api.call("POST", f"/floating_ips/{fip['id']}/actions/change_protection", {"delete": False})
    assert api.call("DELETE", f"/floating_ips/{fip['id']}").status_code == 204
    assert twin.counts()["floating_ips"] == 0


def test_firewall_in_use_cannot_be_deleted(twin: HcloudTwin, api: Api) -> None:
    twin.set_action_seconds(0)
    rule = {"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["198.51.100.0/24"]}
    firewall = api.call("POST", "/firewalls", {"name": "fw", "rules": [rule]}).json()["firewall"]
    server = api.call(
        "POST",
        "/servers",
        {"name": "s", "server_type": "cx23", "image": "debian-12", "firewalls": [{"firewall": firewall["id"]}]},
    ).json()["server"]
    assert server["public_net"]["firewalls"] == [{"id": firewall["id"], "status": "applied"}]
    in_use = api.call("DELETE", f"/firewalls/{firewall['id']}")
    assert in_use.status_code == 422 and in_use.json()["error"]["code"] == "resource_in_use"
    twice = api.call(
        "POST",
        f"/firewalls/{firewall['id']}/actions/apply_to_resources",
        {"apply_to": [{"type": "server", "server": {"id": server["id"]}}]},
    )
    assert twice.json()["error"]["code"] == "firewall_already_applied"
    assert api.call("DELETE", f"/servers/{server['id']}").status_code == 200
    assert api.call("GET", f"/firewalls/{firewall['id']}").json()["firewall"]["applied_to"] == []
    assert api.call("DELETE", f"/firewalls/{firewall['id']}").status_code == 204


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"direction": "in", "protocol": "tcp", "source_ips": ["0.0.0.0/0"]}, "rules.port"),
        ({"direction": "in", "protocol": "icmp", "port": "1", "source_ips": ["0.0.0.0/0"]}, "rules.port"),
        ({"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["10.0.0.1/8"]}, "rules.source_ips"),
        ({"direction": "in", "protocol": "tcp", "port": "70000", "source_ips": ["0.0.0.0/0"]}, "rules.port"),
        ({"direction": "sideways", "protocol": "tcp", "port": "22"}, "rules.direction"),
    ],
)
def test_firewall_rules_are_validated(api: Api, rule: dict[str, object], field: str) -> None:
    answer = api.call("POST", "/firewalls", {"name": "fw", "rules": [rule]})
    assert answer.status_code == 400
    assert answer.json()["error"]["details"]["fields"][0]["name"] == field


def test_subnets_must_fit_the_network(api: Api) -> None:
    net = api.call("POST", "/networks", {"name": "n", "ip_range": "10.0.0.0/16"}).json()["network"]
    outside = api.call(
        "POST",
        f"/networks/{net['id']}/actions/add_subnet",
        {"type": "cloud", "ip_range": "10.1.0.0/24", "network_zone": "eu-central"},
    )
    assert outside.status_code == 400 and outside.json()["error"]["details"]["fields"][0]["name"] == "ip_range"
    ok = api.call(
        "POST",
        f"/networks/{net['id']}/actions/add_subnet",
        {"type": "cloud", "ip_range": "10.0.1.0/24", "network_zone": "eu-central"},
    )
    assert ok.status_code == 201
    subnets = api.call("GET", f"/networks/{net['id']}").json()["network"]["subnets"]
    assert subnets == [{"type": "cloud", "ip_range": "10.0.1.0/24", "network_zone": "eu-central", "gateway": "10.0.0.1"}]


def test_fixed_private_ip_and_conflicts(twin: HcloudTwin, api: Api) -> None:
    twin.set_action_seconds(0)
    net = api.call(
        "POST",
        "/networks",
        {
            "name": "n",
            "ip_range": "10.0.0.0/16",
            "subnets": [{"type": "cloud", "ip_range": "10.0.1.0/24", "network_zone": "eu-central"}],
        },
    ).json()["network"]
    ids = []
    for name in ("a", "b"):
        ids.append(
            api.call("POST", "/servers", {"name": name, "server_type": "cx23", "image": "debian-12"}).json()["server"]["id"]
        )
    attach = api.call("POST", f"/servers/{ids[0]}/actions/attach_to_network", {"network": net["id"], "ip": "10.0.1.11"})
    assert attach.status_code == 201
    taken = api.call("POST", f"/servers/{ids[1]}/actions/attach_to_network", {"network": net["id"], "ip": "10.0.1.11"})
    assert taken.status_code == 422 and taken.json()["error"]["code"] == "ip_not_available"
    server = api.call("GET", f"/servers/{ids[0]}").json()["server"]
    assert server["private_net"][0]["ip"] == "10.0.1.11"
    assert api.call("GET", f"/networks/{net['id']}").json()["network"]["servers"] == [ids[0]]


def test_injected_faults_and_dropped_connections(twin: HcloudTwin, api: Api) -> None:
    twin.inject("list_servers", 503, times=2)
    assert [api.call("GET", "/servers").status_code for _ in range(3)] == [503, 503, 200]
    twin.inject("get_action", 0)
    with pytest.raises(requests.exceptions.ConnectionError):
        api.call("GET", "/actions/1")
    control = api.base.replace("/v1", "/_twin/faults")
    assert requests.post(control, json={"endpoint": "list_networks", "status": 429}, timeout=5).status_code == 200
    limited = api.call("GET", "/networks")
    assert limited.status_code == 429 and limited.headers["RateLimit-Remaining"] == "0"
    assert requests.post(control, json={"endpoint": "list_networks", "status": 418}, timeout=5).status_code == 400


def test_failed_action_leaves_state_unchanged(twin: HcloudTwin, api: Api) -> None:
    twin.set_action_seconds(0)
    twin.add_server(42, "gw-a")
    twin.add_floating_ip(7, "198.51.100.7", None)
    twin.fail_next_actions(1)
    action = api.call("POST", "/floating_ips/7/actions/assign", {"server": 42}).json()["action"]
    assert action["status"] == "error" and action["error"] == {"code": "action_failed", "message": "Action failed"}
    assert twin.assigned_server(7) is None


def test_counts_endpoint(twin: HcloudTwin, api: Api) -> None:
    api.call("POST", "/placement_groups", {"name": "pg", "type": "spread"})
    counts = requests.get(api.base.replace("/v1", "/_twin/counts"), timeout=5).json()["counts"]
    assert counts["placement_groups"] == 1 and counts["servers"] == 0


def test_floating_ip_assign_shows_at_once_and_locks_until_done(twin: HcloudTwin, api: Api) -> None:
    """The provider reads a floating IP's server right after the assign call without waiting for
    the action, so the API shows the new server at once; the action still runs (and locks)."""
    twin.add_server(42, "gw-a")
    twin.add_server(41, "gw-b")
    twin.add_floating_ip(7, "198.51.100.7", 41)
    twin.set_action_seconds(3.0)  # long enough for the checks below on a starved CI machine
    answer = api.call("POST", "/floating_ips/7/actions/assign", {"server": 42})
    assert answer.status_code == 201
    action = answer.json()["action"]
    assert action["command"] == "assign_floating_ip" and action["status"] == "running" and action["finished"] is None
    assert {"id": 42, "type": "server"} in action["resources"] and {"id": 7, "type": "floating_ip"} in action["resources"]
    assert api.call("GET", "/floating_ips/7").json()["floating_ip"]["server"] == 42
    second = api.call("POST", "/floating_ips/7/actions/assign", {"server": 41})
    assert second.status_code == 423 and second.json()["error"]["code"] == "locked"
    done = wait_action(api, action["id"])
    assert done["status"] == "success" and done["progress"] == 100 and done["finished"] is not None
    again = api.call("POST", "/floating_ips/7/actions/assign", {"server": 42})
    assert again.status_code == 422 and again.json()["error"]["code"] == "floating_ip_assigned"
    missing = api.call("POST", "/floating_ips/7/actions/assign", {})
    assert missing.status_code == 400 and missing.json()["error"]["details"]["fields"][0]["name"] == "server"
    assert api.call("POST", "/floating_ips/7/actions/assign", {"server": 5}).status_code == 400
    assert api.call("GET", "/servers?name=gw-a").json()["servers"][0]["public_net"]["floating_ips"] == [7]


def test_cli_serves_and_rejects_bad_arguments(tmp_path: Path) -> None:
    import json
    import signal
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[1] / "src")
    token_file = tmp_path / "token"
    token_file.write_text("")
    empty = subprocess.run(
        [sys.executable, "-m", "hcloud_twin", "--token-file", str(token_file)],
        env={"PYTHONPATH": src},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert empty.returncode == 2 and "--token-file" in empty.stderr and "Traceback" not in empty.stderr
    token_file.write_text("tok\n")
    bad = subprocess.run(
        [sys.executable, "-m", "hcloud_twin", "--token-file", str(token_file), "--server", "x"],
        env={"PYTHONPATH": src},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "--server" in bad.stderr and "Traceback" not in bad.stderr
    with subprocess.Popen(
        [sys.executable, "-m", "hcloud_twin", "--token-file", str(token_file), "--server", "42=gw-a"],
        env={"PYTHONPATH": src},
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        endpoint = json.loads(proc.stdout.readline())["endpoint"]
        servers = requests.get(endpoint + "/servers", headers={"Authorization": "Bearer tok"}, timeout=10).json()
        assert [s["name"] for s in servers["servers"]] == ["gw-a"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_listeners_see_each_action_succeed_with_the_state_already_updated(twin: HcloudTwin, api: Api) -> None:
    """The seam a host backend uses: one call per successful action, after its effect."""
    seen: list[tuple[str, object]] = []

    def listener(action: dict[str, object]) -> None:
        command = str(action["command"])
        server_id = next(r["id"] for r in action["resources"] if r["type"] == "server")  # type: ignore[attr-defined]
        server = twin.state.resources["servers"].get(server_id)
        seen.append((command, server["status"] if server else None))

    twin.state.listeners.append(listener)
    twin.set_action_seconds(0)
    rule = {"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["0.0.0.0/0"]}
    firewall = api.call("POST", "/firewalls", {"name": "fw", "rules": [rule]}).json()["firewall"]
    server = api.call("POST", "/servers", {"name": "s", "server_type": "cx23", "image": "debian-12"}).json()["server"]
    api.call(
        "POST",
        f"/firewalls/{firewall['id']}/actions/apply_to_resources",
        {"apply_to": [{"type": "server", "server": {"id": server["id"]}}]},
    )
    api.call("POST", f"/servers/{server['id']}/actions/poweroff")
    twin.fail_next_actions(1)
    api.call("POST", f"/servers/{server['id']}/actions/poweron")  # fails: no event
    api.call("DELETE", f"/servers/{server['id']}")
    assert seen == [("create_server", "running"), ("apply_firewall", "running"), ("stop_server", "off"), ("delete_server", None)]
