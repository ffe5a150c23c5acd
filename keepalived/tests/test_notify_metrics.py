"""notify.py with provider none: the textfile metrics of docs/metrics.md, atomicity, idempotence,
argument and configuration errors."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from conftest import KEEPALIVED_DIR, file_mode
from ngd_vip.metrics import InstanceMetrics, parse, render

EXPECTED_VALUE = {"STOP": 0, "BACKUP": 1, "MASTER": 2, "FAULT": 3, "MASTER_RX_LOWER_PRI": 2}


@pytest.mark.parametrize("state", sorted(EXPECTED_VALUE))
def test_each_state_writes_its_value(make_env, run, state: str) -> None:
    env = make_env()
    result = run("INSTANCE", "VI_1", state, "150")
    assert result.code == 0
    text = env.metrics_text()
    assert f'keepalived_vrrp_state{{instance="VI_1"}} {EXPECTED_VALUE[state]}\n' in text
    assert "# TYPE keepalived_vrrp_transitions_total counter" in text
    assert 'keepalived_vip_provider_errors_total{instance="VI_1",provider="none"} 0' in text
    # From the implicit initial state 0, every state but STOP is a transition.
    assert env.metrics().transitions == (0 if EXPECTED_VALUE[state] == 0 else 1)
    assert file_mode(env.metrics_dir / "keepalived_VI_1.prom") == 0o644
    leftovers = [p.name for p in env.metrics_dir.iterdir() if ".tmp." in p.name]
    assert leftovers == []


def test_transitions_and_timestamp(make_env, run) -> None:
    env = make_env()
    counts = []
    stamps = []
    for state in ("BACKUP", "MASTER", "MASTER", "MASTER_RX_LOWER_PRI", "FAULT", "BACKUP"):
        assert run("INSTANCE", "VI_1", state).code == 0
        m = env.metrics()
        counts.append(m.transitions)
        stamps.append(m.change_timestamp)
    assert counts == [1, 2, 2, 2, 3, 4]
    assert stamps[1] == stamps[2] == stamps[3]  # no transition, timestamp kept
    assert stamps[4] > stamps[3]


def test_same_state_twice_is_idempotent_but_refreshes_mtime(make_env, run) -> None:
    env = make_env()
    run("INSTANCE", "VI_1", "MASTER")
    path = env.metrics_dir / "keepalived_VI_1.prom"
    first = path.read_bytes()
    os.utime(path, (1_000_000, 1_000_000))
    assert run("INSTANCE", "VI_1", "MASTER").code == 0
    assert path.read_bytes() == first
    assert path.stat().st_mtime > 1_000_000  # node_textfile_mtime_seconds shows the script ran


def test_instances_get_separate_files(make_env, run) -> None:
    env = make_env()
    run("INSTANCE", "VI_1", "MASTER")
    run("INSTANCE", "VI_2", "BACKUP")
    assert env.metrics("VI_1").state == 2
    assert env.metrics("VI_2").state == 1


def test_group_notification_writes_nothing(make_env, run) -> None:
    env = make_env()
    result = run("GROUP", "G1", "MASTER")
    assert result.code == 0
    assert not env.metrics_dir.exists() or not list(env.metrics_dir.glob("*.prom"))
    assert result.logs[0]["group"] == "G1"


def test_readers_never_see_a_partial_file(make_env, run) -> None:
    env = make_env()
    run("INSTANCE", "VI_1", "BACKUP")
    path = env.metrics_dir / "keepalived_VI_1.prom"
    stop = threading.Event()
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            text = path.read_text()
            if text.count("\n") != 12 or not text.endswith(" 0\n"):
                bad.append(text)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(150):
            run("INSTANCE", "VI_1", "MASTER" if i % 2 == 0 else "BACKUP")
    finally:
        stop.set()
        thread.join()
    assert bad == []
    assert parse(path.read_text(), "VI_1").transitions == 151


def test_label_values_are_escaped_and_read_back() -> None:
    m = InstanceMetrics(
        'odd"name\\x', state=3, change_timestamp=5.0, transitions=7, provider_errors={"hcloud": 2}
    )
    again = parse(render(m), 'odd"name\\x')
    assert again == m


def test_log_lines_are_json(make_env, run) -> None:
    make_env()
    result = run("INSTANCE", "VI_1", "BACKUP", "100")
    assert result.logs[0]["msg"] == "VRRP state"
    assert result.logs[0]["state"] == "BACKUP"
    assert result.logs[0]["priority"] == "100"


def test_bad_state_is_a_usage_error(make_env, run) -> None:
    make_env()
    with pytest.raises(SystemExit) as exc:
        run("INSTANCE", "VI_1", "BOGUS")
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"provider": "gcp"}, "provider must be one of none, hcloud, aws"),
        ({"provider": "hcloud"}, "[hcloud] table"),
        ({"provider": "hcloud", "hcloud": {"floating_ip_id": None}}, "hcloud.floating_ip_id is required"),
        ({"provider": "hcloud", "hcloud": {"floating_ip_id": "7"}}, "hcloud.floating_ip_id must be a int"),
        ({"provider": "hcloud", "hcloud": {}, "token_mode": 0o644}, "chmod 600"),
        ({"provider": "hcloud", "hcloud": {}, "token_text": ""}, "hcloud.token_file"),
        ({"raw": "provider = \n"}, "not valid TOML"),
        ({"provider": "hcloud", "hcloud": {}, "vip_prefix": 0}, "vip_prefix must be 1..128"),
    ],
)
def test_configuration_errors_name_the_key(make_env, run, kwargs, expected: str) -> None:
    make_env(**kwargs)
    result = run("INSTANCE", "VI_1", "MASTER")
    assert result.code == 2
    assert expected in result.logs[-1]["error"]


def test_missing_config_file_says_how_to_fix(make_env, run, tmp_path: Path) -> None:
    make_env()
    result = run("--config", str(tmp_path / "nope.toml"), "INSTANCE", "VI_1", "MASTER")
    assert result.code == 2
    assert "NGD_VIP_CONFIG" in result.logs[-1]["error"]


def test_runs_as_a_script_like_keepalived_calls_it(make_env, tmp_path: Path) -> None:
    """The real entry point, in a child process, with --config before keepalived's arguments."""
    import subprocess
    import sys

    env = make_env()
    child_env = {k: v for k, v in os.environ.items() if k != "NGD_VIP_CONFIG"}
    done = subprocess.run(
        [
            sys.executable,
            str(KEEPALIVED_DIR / "notify.py"),
            "--config",
            str(env.config),
            "INSTANCE",
            "VI_1",
            "FAULT",
            "90",
        ],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert env.metrics().state == 3


def test_out_of_order_notifications_are_ignored(tmp_path: Path) -> None:
    from ngd_vip.metrics import MetricsFile

    metrics = MetricsFile(tmp_path, "VI_1", "none")
    assert metrics.record_state("MASTER", order=("boot-1", 100, 50))[2] is False
    m, changed, stale = metrics.record_state("BACKUP", order=("boot-1", 99, 60))  # forked earlier
    assert (stale, changed, m.state) == (True, False, 2)
    assert metrics.record_state("BACKUP", order=("boot-1", 100, 51))[2] is False  # same tick, newer pid
    assert metrics.current().state == 1
    # after a reboot the tick counter restarts: a new boot id is never stale
    m, changed, stale = metrics.record_state("MASTER", order=("boot-2", 5, 7))
    assert (stale, changed, m.state) == (False, True, 2)


def test_a_slow_older_notify_does_not_overwrite_a_newer_one(make_env, tmp_path: Path) -> None:
    """Two real processes as keepalived forks them: BACKUP first (but slow to get going), then
    MASTER. The metric must end at MASTER."""
    import subprocess
    import sys
    import time

    env = make_env()
    go = tmp_path / "go"
    late = (  # forked first, but records only once the newer one has finished (bounded wait)
        f"import sys, time, pathlib; sys.path.insert(0, {str(KEEPALIVED_DIR)!r}); import notify\n"
        f"for _ in range(400):\n    if pathlib.Path({str(go)!r}).exists(): break\n    time.sleep(0.05)\n"
        "sys.exit(notify.main(['INSTANCE', 'VI_1', 'BACKUP', '100']))"
    )
    older = subprocess.Popen(
        [sys.executable, "-c", late], env=dict(os.environ), stderr=subprocess.PIPE, text=True
    )
    time.sleep(0.05)  # the kernel records a later start time for the second process
    newer = subprocess.run(
        [sys.executable, str(KEEPALIVED_DIR / "notify.py"), "INSTANCE", "VI_1", "MASTER", "150"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert newer.returncode == 0, newer.stderr
    go.touch()
    _, err = older.communicate(timeout=30)
    assert older.returncode == 0, err
    assert "stale notification ignored" in err
    assert env.metrics().state == 2
