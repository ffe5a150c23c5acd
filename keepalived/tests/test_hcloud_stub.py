"""The stub answers like the real Hetzner Cloud API: raw HTTP shapes, and the official hcloud
library parses every answer (so the hook is tested against what the library really sends)."""

from __future__ import annotations

import time

import pytest
import requests
from hcloud import APIException, Client
from hcloud.floating_ips.domain import FloatingIP
from hcloud.servers.domain import Server

from conftest import FIP_ID, GW_A, GW_B, VIP
from hcloud_stub import HcloudStub


def get(stub: HcloudStub, path: str, token: str) -> requests.Response:
    return requests.get(stub.endpoint + path, headers={"Authorization": f"Bearer {token}"}, timeout=5)


def post(stub: HcloudStub, path: str, token: str, body: object) -> requests.Response:
    return requests.post(stub.endpoint + path, headers={"Authorization": f"Bearer {token}"}, json=body, timeout=5)


def test_listens_on_loopback_with_an_ephemeral_port(stub: HcloudStub) -> None:
    host, port = stub.httpd.server_address[:2]
    assert host == "127.0.0.1" and port > 0
    with pytest.raises(ValueError, match="loopback"):
        HcloudStub("t", host="0.0.0.0")


def test_bad_token_is_401_with_error_envelope(stub: HcloudStub) -> None:
    answer = get(stub, f"/floating_ips/{FIP_ID}", "wrong")
    assert answer.status_code == 401
    assert answer.json() == {"error": {"code": "unauthorized", "message": "unable to authenticate", "details": {}}}
    assert answer.headers["RateLimit-Limit"] == "3600"
    assert answer.headers["X-Correlation-Id"]
    assert requests.get(stub.endpoint + "/servers", timeout=5).status_code == 401  # no header at all


def test_floating_ip_shape(stub: HcloudStub, token: str) -> None:
    fip = get(stub, f"/floating_ips/{FIP_ID}", token).json()["floating_ip"]
    assert {
        "id",
        "name",
        "description",
        "ip",
        "type",
        "server",
        "dns_ptr",
        "home_location",
        "blocked",
        "protection",
        "labels",
        "created",
    } <= set(fip)
    assert (fip["id"], fip["ip"], fip["type"], fip["server"]) == (FIP_ID, VIP, "ipv4", GW_B)


def test_unknown_floating_ip_is_404_not_found(stub: HcloudStub, token: str) -> None:
    answer = get(stub, "/floating_ips/999", token)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_assign_action_is_asynchronous(stub: HcloudStub, token: str) -> None:
    stub.set_action_seconds(2.0)  # runs long enough for the checks below on a starved CI machine
    answer = post(stub, f"/floating_ips/{FIP_ID}/actions/assign", token, {"server": GW_A})
    assert answer.status_code == 201
    action = answer.json()["action"]
    assert action["command"] == "assign_floating_ip"
    assert action["status"] == "running" and action["finished"] is None and action["error"] is None
    assert {"id": GW_A, "type": "server"} in action["resources"]
    assert {"id": FIP_ID, "type": "floating_ip"} in action["resources"]
    assert stub.assigned_server(FIP_ID) == GW_B  # not moved while running
    # a second assign while the first runs: 423 locked
    second = post(stub, f"/floating_ips/{FIP_ID}/actions/assign", token, {"server": GW_A})
    assert second.status_code == 423 and second.json()["error"]["code"] == "locked"
    deadline = time.monotonic() + 10
    while (done := get(stub, f"/actions/{action['id']}", token).json()["action"])["status"] == "running":
        assert time.monotonic() < deadline, done
        time.sleep(0.1)
    assert done["status"] == "success" and done["progress"] == 100 and done["finished"] is not None
    assert stub.assigned_server(FIP_ID) == GW_A
    again = post(stub, f"/floating_ips/{FIP_ID}/actions/assign", token, {"server": GW_A})
    assert again.status_code == 422 and again.json()["error"]["code"] == "floating_ip_assigned"


def test_assign_validates_input(stub: HcloudStub, token: str) -> None:
    missing = post(stub, f"/floating_ips/{FIP_ID}/actions/assign", token, {})
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "invalid_input"
    assert missing.json()["error"]["details"]["fields"][0]["name"] == "server"
    unknown = post(stub, f"/floating_ips/{FIP_ID}/actions/assign", token, {"server": 5})
    assert unknown.status_code == 422


def test_failed_action_reports_error_object(stub: HcloudStub, token: str) -> None:
    stub.set_action_seconds(0)
    stub.fail_next_actions(1)
    action = post(stub, f"/floating_ips/{FIP_ID}/actions/assign", token, {"server": GW_A}).json()["action"]
    assert action["status"] == "error"
    assert action["error"] == {"code": "action_failed", "message": "Action failed"}
    assert stub.assigned_server(FIP_ID) == GW_B


def test_injected_429_has_rate_limit_headers(stub: HcloudStub, token: str) -> None:
    stub.inject("get_floating_ip", 429, times=2)
    for _ in range(2):
        answer = get(stub, f"/floating_ips/{FIP_ID}", token)
        assert answer.status_code == 429
        assert answer.json()["error"]["code"] == "rate_limit_exceeded"
        assert answer.headers["RateLimit-Remaining"] == "0"
        assert int(answer.headers["RateLimit-Reset"]) > time.time()
    assert get(stub, f"/floating_ips/{FIP_ID}", token).status_code == 200


@pytest.mark.parametrize("status", [409, 500, 502, 503, 504])
def test_injected_errors_use_the_real_codes(stub: HcloudStub, token: str, status: int) -> None:
    stub.inject("assign", status)
    answer = post(stub, f"/floating_ips/{FIP_ID}/actions/assign", token, {"server": GW_A})
    assert answer.status_code == status
    assert answer.json()["error"]["code"] in {"conflict", "server_error", "bad_gateway", "unavailable", "timeout"}


def test_dropped_connection(stub: HcloudStub, token: str) -> None:
    stub.inject("get_action", 0)
    with pytest.raises(requests.exceptions.ConnectionError):
        get(stub, "/actions/1", token)


def test_servers_filter_by_name(stub: HcloudStub, token: str) -> None:
    body = get(stub, "/servers?name=gw-a", token).json()
    assert [s["id"] for s in body["servers"]] == [GW_A]
    assert body["meta"]["pagination"]["total_entries"] == 1


def test_control_endpoint_injects_faults(stub: HcloudStub, token: str) -> None:
    assert (
        requests.post(
            stub.endpoint.replace("/v1", "/_stub/faults"),
            json={"endpoint": "get_action", "status": 503, "times": 1},
            timeout=5,
        ).status_code
        == 200
    )
    assert get(stub, "/actions/1", token).status_code == 503
    assert (
        requests.post(
            stub.endpoint.replace("/v1", "/_stub/faults"), json={"endpoint": "nope", "status": 503}, timeout=5
        ).status_code
        == 422
    )


def test_the_hcloud_library_reads_the_stub(stub: HcloudStub, token: str) -> None:
    client = Client(token=token, api_endpoint=stub.endpoint, poll_interval=0.05)
    fip = client.floating_ips.get_by_id(FIP_ID)
    assert fip.ip == VIP and fip.server is not None and fip.server.id == GW_B
    server = client.servers.get_by_name("gw-a")
    assert server is not None and server.id == GW_A
    action = client.floating_ips.assign(FloatingIP(id=FIP_ID), Server(id=GW_A))
    assert action.status == "running"
    action.wait_until_finished()
    assert client.actions.get_by_id(action.id).status == "success"
    assert client.floating_ips.get_by_id(FIP_ID).server.id == GW_A
    with pytest.raises(APIException) as exc:
        Client(token="wrong", api_endpoint=stub.endpoint).floating_ips.get_by_id(FIP_ID)
    assert exc.value.code == "unauthorized"
