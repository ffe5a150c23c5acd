"""Unit tests of the drills' pure parts: the sink count, the VIP timeline, the targets, the
command line. The drills themselves run against the lab (scripts/ci/integration-drills.sh)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ngd_drills import scenarios
from ngd_drills.cli import ScenarioResult, evaluate, parse_args
from ngd_drills.env import DrillError, Result
from ngd_drills.observe import device_regex, parse_export
from ngd_drills.scenarios import SCENARIOS, Roles
from ngd_drills.vip import VipEvent, VipWatcher

DRILL_SH = Path(__file__).resolve().parents[2] / "drill.sh"


def test_parse_export_counts_distinct_frames_and_duplicate_points() -> None:
    rows = [
        {
            "metric": {"__name__": "m_p", "device": "7"},
            "values": [1, 1, 1],
            "timestamps": [10, 20, 20],
        },
        {"metric": {"__name__": "m_p", "device": "8"}, "values": [1], "timestamps": [10]},
    ]
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    assert parse_export(text) == (3, 1)
    assert parse_export("") == (0, 0)


def test_device_regex_matches_exactly_the_block() -> None:
    assert device_regex(5000, 3) == "5000|5001|5002"
    with pytest.raises(ValueError):
        device_regex(5001, 3)
    with pytest.raises(ValueError):
        device_regex(5000, 1001)


class _NoExec:
    supports_host_power = True

    def run(self, host: str, command: str, timeout: float = 30.0) -> Result:
        return Result(0, "")


def _watcher(events: list[VipEvent]) -> VipWatcher:
    w = VipWatcher(_NoExec(), ["gw-a", "gw-b"], "10.0.0.100", "eth0")  # type: ignore[arg-type]
    w.events = events
    return w


def test_vip_timeline_sees_split_brain_and_first_move() -> None:
    w = _watcher(
        [
            VipEvent(0.0, "gw-a", True, "initial"),
            VipEvent(0.0, "gw-b", False, "initial"),
            VipEvent(5.4, "gw-b", True, "monitor"),
            VipEvent(9.0, "gw-a", False, "monitor"),
        ]
    )
    assert w.max_holders_since(5.0) == 2
    assert w.max_holders_since(9.5) == 1
    assert w.first_hold_after("gw-b", 5.0) == 5.4
    assert w.first_hold_after("gw-a", 5.0) is None


def _result(name: str, **kw: object) -> ScenarioResult:
    r = ScenarioResult(name, "lab", "t", "gw-a", "gw-b", "f", ["gw-a"], ["gw-b"])
    r.sim = {
        "devices": 10,
        "connect_failures": 0,
        "acked": 100,
        "lost": 0,
        "bad_acks": 0,
        "reconnect_ms": {"count": 50, "p99": 400.0},
    }
    r.stored, r.acked_missing = 100, 0
    r.vrrp_states_after = {"gw-a": 1, "gw-b": 2}
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_master_stop_target_is_one_second() -> None:
    fast = _result("master-stop", vip_move_s=0.7, vip_moved=True)
    slow = _result("master-stop", vip_move_s=1.3, vip_moved=True)
    assert fast.__class__ and all(t.ok for t in evaluate(SCENARIOS["master-stop"], fast))
    missed = [t.name for t in evaluate(SCENARIOS["master-stop"], slow) if not t.ok]
    assert missed == ["VIP on the backup <= 1.0 s"]


def test_acked_but_missing_fails_every_scenario() -> None:
    for name, scenario in SCENARIOS.items():
        r = _result(name, stored=99, acked_missing=1, vip_moved=scenario.vip_moves)
        assert not all(t.ok for t in evaluate(scenario, r)), name


def test_no_traffic_is_a_failure_not_a_pass() -> None:
    r = _result("backup-stop", max_vip_holders=1, stored=0, acked_missing=0)
    r.sim.update(acked=0, sent=0, connect_failures=20)
    assert [t.name for t in evaluate(SCENARIOS["backup-stop"], r) if not t.ok] == [
        "traffic flowed (frames acked)"
    ]


def test_gateway_kill_fails_when_the_vip_moves_or_reconnects_are_slow() -> None:
    ok = _result("gateway-kill", vip_holder_after=["gw-a"], max_vip_holders=1)
    assert all(t.ok for t in evaluate(SCENARIOS["gateway-kill"], ok))
    moved = _result("gateway-kill", vip_moved=True, max_vip_holders=1)
    assert not all(t.ok for t in evaluate(SCENARIOS["gateway-kill"], moved))
    slow = _result("gateway-kill", max_vip_holders=1)
    slow.sim["reconnect_ms"] = {"count": 50, "p99": 1500.0}
    assert not all(t.ok for t in evaluate(SCENARIOS["gateway-kill"], slow))


class _Recorder:
    """Records commands; `systemctl is-active` answers with is_active_rc."""

    supports_host_power = False

    def __init__(self, is_active_rc: int = 0) -> None:
        self.commands: list[tuple[str, str]] = []
        self.is_active_rc = is_active_rc

    def run(self, host: str, command: str, timeout: float = 30.0) -> Result:
        self.commands.append((host, command))
        return Result(self.is_active_rc if "is-active" in command else 0, "")


def test_nginx_kill_is_a_crash_of_the_master_process_not_an_operator_stop() -> None:
    ex = _Recorder()
    SCENARIOS["nginx-kill"].inject(ex, Roles(master="gw-a", backup="gw-b"))  # type: ignore[arg-type]
    assert [h for h, _ in ex.commands] == ["gw-a"]
    command = ex.commands[0][1]
    # Only a process dying on its own makes systemd apply Restart=; a stop is never restarted.
    assert "kill -KILL" in command and "MainPID" in command
    assert "systemctl stop" not in command and "systemctl kill" not in command


def test_nginx_kill_heal_expects_systemd_to_have_restarted_nginx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    roles = Roles(master="gw-a", backup="gw-b")
    back = _Recorder(is_active_rc=0)
    SCENARIOS["nginx-kill"].heal(back, roles)  # type: ignore[arg-type]
    assert not any("systemctl start" in c for _, c in back.commands)
    monkeypatch.setattr(scenarios, "NGINX_RESTART_LIMIT_S", 0.0)
    down = _Recorder(is_active_rc=3)
    with pytest.raises(DrillError, match="systemd did not restart it"):
        SCENARIOS["nginx-kill"].heal(down, roles)  # type: ignore[arg-type]
    # The fault is never left behind, even when the drill fails.
    assert ("gw-a", "systemctl start nginx") in down.commands


def test_nginx_kill_fails_when_the_vip_moves_or_reconnects_are_slow() -> None:
    ok = _result("nginx-kill", vip_holder_after=["gw-a"], max_vip_holders=1)
    ok.sim["reconnect_ms"] = {"count": 200, "p99": 640.0}
    assert all(t.ok for t in evaluate(SCENARIOS["nginx-kill"], ok))
    moved = _result("nginx-kill", vip_moved=True, max_vip_holders=1)
    assert [t.name for t in evaluate(SCENARIOS["nginx-kill"], moved) if not t.ok] == ["VIP unchanged"]
    slow = _result("nginx-kill", max_vip_holders=1)
    slow.sim["reconnect_ms"] = {"count": 200, "p99": 4000.0}
    assert [t.name for t in evaluate(SCENARIOS["nginx-kill"], slow) if not t.ok] == [
        "devices reconnected <= 1000 ms p99"
    ]


def test_nginx_stop_must_move_the_vip_in_time() -> None:
    ex = _Recorder()
    SCENARIOS["nginx-stop"].inject(ex, Roles(master="gw-a", backup="gw-b"))  # type: ignore[arg-type]
    assert ex.commands == [("gw-a", "systemctl stop nginx")]
    fast = _result("nginx-stop", vip_move_s=2.1, vip_moved=True)
    assert all(t.ok for t in evaluate(SCENARIOS["nginx-stop"], fast))
    slow = _result("nginx-stop", vip_move_s=4.5, vip_moved=True)
    assert [t.name for t in evaluate(SCENARIOS["nginx-stop"], slow) if not t.ok] == [
        "VIP on the backup <= 3.0 s"
    ]


def test_partition_needs_split_brain_and_a_timely_alert() -> None:
    late = _result("partition", max_vip_holders=2, split_brain_alert_s=75.0)
    assert not all(t.ok for t in evaluate(SCENARIOS["partition"], late))
    good = _result("partition", max_vip_holders=2, split_brain_alert_s=42.0)
    good.sim["reconnect_ms"] = {"count": 400, "p99": 2300.0}
    assert all(t.ok for t in evaluate(SCENARIOS["partition"], good))
    # Devices left behind the node that let go of the VIP (stale ARP) for 13 s: a miss.
    stale = _result("partition", max_vip_holders=2, split_brain_alert_s=42.0)
    stale.sim["reconnect_ms"] = {"count": 400, "p99": 13722.7}
    missed = [t.name for t in evaluate(SCENARIOS["partition"], stale) if not t.ok]
    assert missed == ["devices served again <= 10 s p99"]


def test_healing_must_leave_exactly_one_master() -> None:
    for states in ({"gw-a": 2, "gw-b": 2}, {"gw-a": 1, "gw-b": 1}, {"gw-a": 3, "gw-b": 2}, {}):
        r = _result("keepalived-stop", vip_moved=True, vrrp_states_after=states)
        missed = [t.name for t in evaluate(SCENARIOS["keepalived-stop"], r) if not t.ok]
        assert missed == ["exactly one MASTER after healing (the other BACKUP)"], states


def test_gateway_kill_without_measured_reconnects_is_a_failure() -> None:
    r = _result("gateway-kill", max_vip_holders=1)
    r.sim["reconnect_ms"] = {"count": 0, "p99": None}
    missed = [t.name for t in evaluate(SCENARIOS["gateway-kill"], r) if not t.ok]
    assert missed == ["devices reconnected <= 1000 ms p99"]


def test_cli_bounds() -> None:
    with pytest.raises(SystemExit):
        parse_args(["master-stop", "--devices", "5000"])
    with pytest.raises(SystemExit):
        parse_args(["no-such-scenario"])
    assert parse_args(["all"]).duration == 20.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "missing SCENARIO"),
        (["explode"], "unknown scenario 'explode'"),
        (["partition", "--env", "moon"], "unknown --env 'moon'"),
        (["partition", "--frobnicate"], "unknown option '--frobnicate'"),
        (["partition", "backup-stop"], "one scenario at a time"),
    ],
)
def test_drill_sh_rejects_bad_input(args: list[str], message: str) -> None:
    out = subprocess.run([str(DRILL_SH), *args], capture_output=True, text=True, check=False)
    assert out.returncode != 0
    assert message in out.stderr


def test_drill_sh_help() -> None:
    out = subprocess.run([str(DRILL_SH), "--help"], capture_output=True, text=True, check=False)
    assert out.returncode == 0
    for name in SCENARIOS:
        assert name in out.stdout


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ("    collectors:\n      hosts: {}\n", "group 'collectors' has no host: the drill counts"),
        ("", "group 'collectors' has no host: the drill counts"),  # no such group at all
    ],
)
def test_an_inventory_without_a_collector_is_refused_with_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    groups: str,
    message: str,
) -> None:
    """A production without a collector (collector_enabled = false) must get a clear error, not a
    traceback: the inventory is a real file read by ansible-inventory, as the drill reads it."""
    from ngd_drills import cli
    from ngd_drills.env import REPO_ROOT

    name = f"drilltest-{os.getpid()}"
    inventory = REPO_ROOT / ".lab" / name / "inventory" / "hosts.yml"
    inventory.parent.mkdir(parents=True)
    try:
        inventory.write_text(
            "all:\n  children:\n"
            "    gateways:\n"
            "      hosts: {gw-a: {ngd_vip: 10.0.0.100}, gw-b: {ngd_vip: 10.0.0.100}}\n"
            "    monitoring:\n      hosts: {mon: {}}\n" + groups
        )
        monkeypatch.setenv("NGD_LAB", name)
        rc = cli.main(["keepalived-stop", "--env", "lab", "--out", str(tmp_path)])
    finally:
        shutil.rmtree(REPO_ROOT / ".lab" / name)
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "collector_enabled = true" in err


def test_ssh_drills_check_host_keys_as_ansible_does(tmp_path: Path) -> None:
    from ngd_drills.env import pyinfra_host_data

    (tmp_path / "known_hosts").write_text("203.0.113.11 ssh-ed25519 AAAAfromopentofu\n")
    (tmp_path / "known_hosts.tofu").write_text("203.0.113.20 ssh-ed25519 AAAAfirstuse\n")
    args = (
        f"-o 'UserKnownHostsFile={tmp_path}/known_hosts {tmp_path}/known_hosts.tofu' "
        "-o StrictHostKeyChecking=yes"
    )
    data = pyinfra_host_data("gw-a", {"ansible_host": "203.0.113.11", "ansible_ssh_common_args": args})
    assert data["ssh_strict_host_key_checking"] == "yes"
    joined = Path(data["ssh_known_hosts_file"]).read_text()
    assert "AAAAfromopentofu" in joined and "AAAAfirstuse" in joined
    assert "ssh_known_hosts_file" not in pyinfra_host_data("x", {"ansible_host": "192.0.2.1"})


def test_outside_the_lab_the_simulator_gets_the_secret_from_the_inventorys_vault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production keeps the model secrets in an encrypted vault beside the inventory: read with the
    vault password (drill.sh exports it as deploy.sh does), they reach the simulator."""
    from ngd_drills.cli import Drill, TrafficPlan
    from ngd_drills.env import REPO_ROOT, Inventory, load_inventory

    if shutil.which("ansible-vault") is None:
        pytest.skip("ansible-vault is not installed (the tool venv has it)")
    name = f"drillvault-{os.getpid()}"
    inventory = REPO_ROOT / ".lab" / name / "inventory" / "hosts.yml"
    vault = inventory.parent / "group_vars" / "all" / "vault.yml"
    vault.parent.mkdir(parents=True)
    password = tmp_path / "vault-password"
    password.write_text("rehearsed\n")
    secret = "ab" * 32
    try:
        inventory.write_text(
            "all:\n  children:\n"
            "    gateways:\n"
            "      hosts: {gw-a: {ngd_vip: 10.0.0.100, ngd_vip_interface: eth1},"
            " gw-b: {ngd_vip: 10.0.0.100}}\n"
            "    monitoring:\n      hosts: {mon: {}}\n"
            "    collectors:\n      hosts: {collector: {}}\n"
        )
        vault.write_text(f'vault_gateway_model_secrets:\n  "0x10": "{secret}"\n')
        subprocess.run(
            ["ansible-vault", "encrypt", "--vault-password-file", str(password), str(vault)],
            check=True,
            capture_output=True,
        )
        monkeypatch.setenv("NGD_LAB", name)
        monkeypatch.delenv("NANOGRIDATA_SECRET_MODEL_10", raising=False)
        monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
        with pytest.raises(DrillError, match="ansible-inventory failed"):
            load_inventory("lab")  # without the password the vault cannot be read
        monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(password))
        loaded = load_inventory("lab")
    finally:
        shutil.rmtree(REPO_ROOT / ".lab" / name)
    production = Inventory("production", loaded.hostvars, loaded.groups, loaded.ports)
    plan = TrafficPlan(devices=1, rate=1.0, duration_s=1.0)
    drill = Drill(production, executor=None, plan=plan)  # type: ignore[arg-type]
    assert drill.secret_env()["NANOGRIDATA_SECRET_MODEL_10"] == secret


def test_the_watchdog_does_not_count_as_an_active_alert() -> None:
    """Watchdog fires all the time by design: a drill gate counting it would never let a drill run."""
    from ngd_drills.observe import active_alerts

    class Alertmanager:
        def run(self, host: str, command: str, timeout: float = 30.0) -> Result:
            alerts = [
                {"labels": {"alertname": "Watchdog", "severity": "info"}},
                {"labels": {"alertname": "GatewayDown", "severity": "critical"}},
            ]
            return Result(0, json.dumps(alerts))

    active = active_alerts(Alertmanager(), "mon", 9093)  # type: ignore[arg-type]
    assert [a["labels"]["alertname"] for a in active or []] == ["GatewayDown"]
