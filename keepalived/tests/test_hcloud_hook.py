"""The hcloud provider hook end to end: notify.py MASTER against the twin, with faults."""

from __future__ import annotations

import threading
import time

from conftest import FIP_ID, GW_A, GW_B, VIP, ip_addrs
from hcloud_twin import HcloudTwin


def assigns(twin: HcloudTwin) -> list[int]:
    return [status for _, _, status in twin.requests("POST", r"/actions/assign$")]


def test_master_assigns_the_floating_ip_and_configures_the_interface(
    twin, make_env, run, ip_recorder
) -> None:
    env = make_env("hcloud", hcloud={"endpoint": twin.endpoint})
    result = run("INSTANCE", "VI_1", "MASTER", "150")
    assert result.code == 0, result.logs
    assert twin.assigned_server(FIP_ID) == GW_A
    assert assigns(twin) == [201]
    assert len(twin.requests("GET", r"/v1/actions/\d+$")) >= 1  # polled until success
    assert ip_addrs(ip_recorder) == [f"{VIP}/32 eth0"]
    m = env.metrics()
    assert (m.state, m.provider_errors) == (2, {"hcloud": 0})
    # the action takes 0.2 s in the twin: the notify cannot have finished sooner
    assert result.seconds >= 0.2


def test_second_master_is_idempotent(twin, make_env, run, ip_recorder) -> None:
    make_env("hcloud", hcloud={"endpoint": twin.endpoint})
    assert run("INSTANCE", "VI_1", "MASTER").code == 0
    assert run("INSTANCE", "VI_1", "MASTER").code == 0
    assert assigns(twin) == [201]  # the second run saw the IP already here
    assert ip_addrs(ip_recorder) == [f"{VIP}/32 eth0"]


def test_rate_limited_then_success(twin, make_env, run) -> None:
    env = make_env("hcloud", hcloud={"endpoint": twin.endpoint})
    twin.inject("assign_floating_ip", 429, times=3)
    result = run("INSTANCE", "VI_1", "MASTER")
    assert result.code == 0, result.logs
    assert assigns(twin) == [429, 429, 429, 201]
    assert twin.assigned_server(FIP_ID) == GW_A
    assert env.metrics().provider_errors == {"hcloud": 0}


def test_503_and_dropped_connections_are_retried_everywhere(twin, make_env, run) -> None:
    make_env("hcloud", hcloud={"endpoint": twin.endpoint})
    twin.inject("get_floating_ip", 503, times=2)
    twin.inject("assign_floating_ip", 503, times=2)
    twin.inject("get_action", 0, times=1)
    twin.inject("get_action", 500, times=1)
    result = run("INSTANCE", "VI_1", "MASTER")
    assert result.code == 0, result.logs
    assert twin.assigned_server(FIP_ID) == GW_A
    assert assigns(twin) == [503, 503, 201]


def test_locked_by_a_running_action_is_retried(twin, make_env, run, token) -> None:
    """Another assign is still running (423 locked): wait for it, then do ours."""
    make_env("hcloud", hcloud={"endpoint": twin.endpoint})
    import requests

    twin.set_action_seconds(4.0)  # long enough to still run when notify (slow start on a busy box) asks
    twin.force_assign(FIP_ID, None)
    first = requests.post(
        f"{twin.endpoint}/floating_ips/{FIP_ID}/actions/assign",
        json={"server": GW_B},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert first.status_code == 201
    result = run("INSTANCE", "VI_1", "MASTER")
    assert result.code == 0, result.logs
    assert 423 in assigns(twin)
    assert twin.assigned_server(FIP_ID) == GW_A


def test_retries_are_bounded_by_the_deadline(twin, make_env, run) -> None:
    env = make_env("hcloud", hcloud={"endpoint": twin.endpoint, "deadline_seconds": 1.5})
    twin.inject("assign_floating_ip", 503, times=10_000)
    result = run("INSTANCE", "VI_1", "MASTER")
    assert result.code == 1
    # deadline plus slack: CI runs this starved beside the lab deploy (unbounded would be ~10,000 tries)
    assert result.seconds < 1.5 + 5.0
    assert "gave up" in result.logs[-1]["error"] and "hcloud.deadline_seconds" in result.logs[-1]["error"]
    assert env.metrics().provider_errors == {"hcloud": 1}
    assert env.metrics().state == 2  # the state metric still says MASTER: keepalived decided that
    assert twin.assigned_server(FIP_ID) == GW_B


def test_action_error_fails_and_counts(twin, make_env, run, ip_recorder) -> None:
    env = make_env("hcloud", hcloud={"endpoint": twin.endpoint})
    twin.fail_next_actions(1)
    result = run("INSTANCE", "VI_1", "MASTER")
    assert result.code == 1
    assert "status error" in result.logs[-1]["error"] and "action_failed" in result.logs[-1]["error"]
    assert env.metrics().provider_errors == {"hcloud": 1}
    assert twin.assigned_server(FIP_ID) == GW_B
    assert ip_addrs(ip_recorder) == []  # not configured: the cloud does not route it here
    # the next try (e.g. reconcile) succeeds and the counter keeps its value
    assert run("INSTANCE", "VI_1", "MASTER_RX_LOWER_PRI").code == 0
    assert env.metrics().provider_errors == {"hcloud": 1}


def test_wrong_token_is_a_clear_error_without_retries(twin, make_env, run) -> None:
    env = make_env("hcloud", hcloud={"endpoint": twin.endpoint}, token_text="not-the-token")
    result = run("INSTANCE", "VI_1", "MASTER")
    assert result.code == 1
    error = result.logs[-1]["error"]
    assert "401 unauthorized" in error and "hcloud.token_file" in error
    assert len(twin.requests()) == 1
    assert env.metrics().provider_errors == {"hcloud": 1}


def test_unknown_floating_ip_is_not_retried(twin, make_env, run) -> None:
    make_env("hcloud", hcloud={"endpoint": twin.endpoint, "floating_ip_id": 999})
    result = run("INSTANCE", "VI_1", "MASTER")
    assert result.code == 1
    assert "not_found" in result.logs[-1]["error"]
    assert len(twin.requests()) == 1


def test_server_found_by_name(twin, make_env, run) -> None:
    make_env("hcloud", hcloud={"endpoint": twin.endpoint, "server_id": None, "server_name": "gw-a"})
    assert run("INSTANCE", "VI_1", "MASTER").code == 0
    assert twin.assigned_server(FIP_ID) == GW_A
    assert twin.requests("GET", r"/v1/servers$")


def test_unknown_server_name_names_the_keys(twin, make_env, run) -> None:
    make_env("hcloud", hcloud={"endpoint": twin.endpoint, "server_id": None, "server_name": "gw-x"})
    result = run("INSTANCE", "VI_1", "MASTER")
    assert result.code == 1
    assert "hcloud.server_id" in result.logs[-1]["error"]


def test_backup_removes_the_address_and_never_calls_the_api(twin, make_env, run, ip_recorder) -> None:
    make_env("hcloud", hcloud={"endpoint": twin.endpoint})
    assert run("INSTANCE", "VI_1", "MASTER").code == 0
    before = len(twin.requests())
    assert run("INSTANCE", "VI_1", "BACKUP").code == 0
    assert ip_addrs(ip_recorder) == []
    assert run("INSTANCE", "VI_1", "FAULT").code == 0  # deleting an absent address is fine
    assert len(twin.requests()) == before


def test_leaving_master_during_retries_abandons_the_move(twin, make_env, run) -> None:
    """A retrying MASTER notify must not steal the IP after keepalived moved us to BACKUP."""
    make_env(
        "hcloud", hcloud={"endpoint": twin.endpoint, "backoff_base_seconds": 0.2, "backoff_cap_seconds": 0.2}
    )
    twin.inject("assign_floating_ip", 503, times=50)
    import notify

    def demote() -> None:
        time.sleep(0.5)
        notify.main(["INSTANCE", "VI_1", "BACKUP"])

    thread = threading.Thread(target=demote)
    thread.start()
    result = run("INSTANCE", "VI_1", "MASTER")
    thread.join()
    assert result.code == 0
    assert any(entry["msg"].startswith("take-over abandoned") for entry in result.logs)
    assert twin.assigned_server(FIP_ID) == GW_B
    assert 201 not in assigns(twin)


def test_reconcile_moves_the_ip_back(twin, make_env, run, ip_recorder) -> None:
    env = make_env("hcloud", hcloud={"endpoint": twin.endpoint})
    assert run("INSTANCE", "VI_1", "MASTER").code == 0
    assert run("reconcile", "--instance", "VI_1").code == 0
    assert assigns(twin) == [201]  # in place: only a GET
    twin.force_assign(FIP_ID, GW_B)  # someone moved it in the console
    assert run("reconcile", "--instance", "VI_1", "--no-fix").code == 1
    assert twin.assigned_server(FIP_ID) == GW_B
    result = run("reconcile", "--instance", "VI_1")
    assert result.code == 0
    assert twin.assigned_server(FIP_ID) == GW_A
    assert any("elsewhere" in entry["msg"] for entry in result.logs)
    assert env.metrics().provider_errors == {"hcloud": 0}


def test_reconcile_fails_when_it_cannot_fix(twin, make_env, run) -> None:
    env = make_env("hcloud", hcloud={"endpoint": twin.endpoint, "deadline_seconds": 1})
    assert run("INSTANCE", "VI_1", "MASTER").code == 0
    twin.force_assign(FIP_ID, GW_B)
    twin.fail_next_actions(5)
    assert run("reconcile", "--instance", "VI_1").code == 1
    assert env.metrics().provider_errors == {"hcloud": 1}


def test_reconcile_on_backup_does_nothing(twin, make_env, run) -> None:
    env = make_env("hcloud", hcloud={"endpoint": twin.endpoint})
    assert run("INSTANCE", "VI_1", "BACKUP").code == 0
    twin.force_assign(FIP_ID, GW_B)
    assert run("reconcile", "--instance", "VI_1").code == 0
    assert twin.requests() == []
    assert env.metrics().state == 1


def test_reconcile_tolerates_an_unreadable_cloud(twin, make_env, run) -> None:
    """API down: keep the master (no FAULT flapping); the failure is logged."""
    make_env("hcloud", hcloud={"endpoint": twin.endpoint, "deadline_seconds": 0.5})
    assert run("INSTANCE", "VI_1", "MASTER").code == 0
    twin.inject("get_floating_ip", 503, times=1000)
    result = run("reconcile", "--instance", "VI_1")
    assert result.code == 0
    assert "could not read" in result.logs[-1]["msg"]


def test_leaving_master_is_fast_and_needs_no_cloud_library(twin, make_env, ip_recorder) -> None:
    """keepalived kills a STOP notify after 1 s: that path must not import hcloud (~0.7 s)."""
    import os
    import subprocess
    import sys

    from conftest import KEEPALIVED_DIR

    make_env("hcloud", hcloud={"endpoint": twin.endpoint})
    probe = (
        f"import sys; sys.path.insert(0, {str(KEEPALIVED_DIR)!r}); import notify;"
        " rc = notify.main(['INSTANCE', 'VI_1', 'STOP', '100']); print(rc, 'hcloud' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=30,
        check=False,
    )
    assert done.stdout.split() == ["0", "False"], done.stderr
    assert twin.requests() == []


def test_keepalived_owned_address_gates_the_take_over(twin, make_env, run, ip_recorder) -> None:
    """With manage_interface = false keepalived carries the VIP; its absence means keepalived has
    already left MASTER (a BACKUP notify may still be starting): do not assign."""
    make_env("hcloud", hcloud={"endpoint": twin.endpoint}, manage_interface=False)
    result = run("INSTANCE", "VI_1", "MASTER")
    assert result.code == 0
    assert any(entry["msg"].startswith("take-over abandoned") for entry in result.logs)
    assert assigns(twin) == []
    (ip_recorder.parent / "ip-addrs").write_text(f"{VIP}/32 eth0\n")  # keepalived added it
    assert run("INSTANCE", "VI_1", "MASTER_RX_LOWER_PRI").code == 0
    assert assigns(twin) == [201]
    assert twin.assigned_server(FIP_ID) == GW_A
