"""The checks the backup drills share (scripts/ops/backup_checks.sh) and the command line of the
rehearsal's disaster-recovery step: a check passes only on what a good backup or restore shows,
and says why otherwise; bad arguments fail with exit 2 before anything is touched."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CHECKS = REPO / "scripts/ops/backup_checks.sh"


def check(function: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f'source "{CHECKS}"; {function} "$@"', "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def report(**fields: int) -> str:
    return json.dumps(
        {"sent": 3, "acked": 3, "acked_ok": 0, "duplicates": 0, "stale": 0, "lost": 0, **fields}
    )


def test_sim_report_is_the_last_json_line() -> None:
    out = check("sim_report", "starting\n" + report(acked_ok=1) + "\n" + report(acked_ok=3) + "\ndone")
    assert out.returncode == 0
    assert json.loads(out.stdout)["acked_ok"] == 3


@pytest.mark.parametrize(
    ("fields", "ok"),
    [({"acked_ok": 3}, True), ({"acked_ok": 2}, False), ({"acked_ok": 3, "lost": 1}, False)],
)
def test_all_acked(fields: dict[str, int], ok: bool) -> None:
    out = check("sim_all_acked", report(**fields), "3")
    assert (out.returncode == 0) is ok
    if not ok:
        assert "not all 3 frames accepted" in out.stderr


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"duplicates": 3}, True),
        ({"duplicates": 2, "stale": 1}, True),
        ({"duplicates": 2, "acked_ok": 1}, False),
        ({"duplicates": 3, "acked_ok": 1}, False),
    ],
)
def test_all_refused(fields: dict[str, int], ok: bool) -> None:
    out = check("sim_all_refused", report(**fields), "3")
    assert (out.returncode == 0) is ok
    if not ok:
        assert "replay state not back" in out.stderr


@pytest.mark.parametrize(
    ("manifest", "why"),
    [
        ("spool_integrity=ok\nsecrets=encrypted(age):etc/nanogridata/secrets.toml\n", None),
        ("secrets=encrypted(age):etc/nanogridata/secrets.toml\n", "not integrity-checked"),
        (
            "spool_integrity=ok\nsecrets=left-out(no age recipient):etc/nanogridata/secrets.toml\n",
            "encrypted",
        ),
    ],
)
def test_manifest_gateway_ok(tmp_path: Path, manifest: str, why: str | None) -> None:
    (tmp_path / "MANIFEST").write_text("host=gw-b\n" + manifest)
    out = check("manifest_gateway_ok", str(tmp_path / "MANIFEST"))
    assert (out.returncode == 0) is (why is None)
    if why:
        assert why in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "are required"),
        (["--bogus"], "unknown argument: --bogus"),
        (
            ["--checkout", "/nonexistent", "--lab", "x", "--identity", "/dev/null", "--work", "/tmp"],
            "not a git checkout",
        ),
    ],
)
def test_rehearsal_dr_bad_arguments_exit_2(args: list[str], message: str) -> None:
    out = subprocess.run(
        [str(REPO / "scripts/ops/rehearsal_dr.sh"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
