"""The release a plain rollback.sh returns to, from the gateways' release history
(scripts/ops/release_target.py), over sequences of deploys and rollbacks as the gateway role
records them: a release directory per install (its time), the current link, PREVIOUS_RELEASE
written at every switch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import release_target

SCRIPT = Path(release_target.__file__)


class Pair:
    """Two gateways' release state, changed the way deploy.yml and rollback.yml change it."""

    def __init__(self) -> None:
        self.clock = 0
        self.nodes: dict[str, dict[str, Any]] = {
            host: {"current": "", "previous": "", "releases": []} for host in ("gw-a", "gw-b")
        }

    def _switch(self, host: str, release: str) -> None:
        node = self.nodes[host]
        if node["current"] != release:
            node["previous"] = node["current"]
        node["current"] = release

    def install(self, host: str, release: str) -> None:
        node = self.nodes[host]
        if not any(r["name"] == release for r in node["releases"]):
            self.clock += 1
            node["releases"].append(
                {"name": release, "installed": True, "time": f"2026-12-07T00:00:{self.clock:02d}Z"}
            )

    def deploy(self, release: str, hosts: tuple[str, ...] = ("gw-a", "gw-b")) -> None:
        for host in hosts:
            self.install(host, release)
            self._switch(host, release)

    def rollback(self) -> release_target.Target:
        target = release_target.choose(self.status())
        for host in self.nodes:
            self._switch(host, target.release)
        return target

    def status(self) -> dict[str, dict[str, Any]]:
        copy: dict[str, dict[str, Any]] = json.loads(json.dumps(self.nodes))
        return copy


def test_rollback_returns_to_the_release_before_the_deploy() -> None:
    pair = Pair()
    for release in ("1.0.0", "1.1.0", "1.2.0"):
        pair.deploy(release)
    target = pair.rollback()
    assert target == release_target.Target("1.1.0", already_current=False)


def test_a_second_rollback_stays_on_the_good_release() -> None:
    pair = Pair()
    for release in ("1.0.0", "1.1.0", "1.2.0"):
        pair.deploy(release)
    pair.rollback()
    # PREVIOUS_RELEASE now names 1.2.0, the release rolled back from: it must not come back.
    assert pair.nodes["gw-a"]["previous"] == "1.2.0"
    target = pair.rollback()
    assert target == release_target.Target("1.1.0", already_current=True)
    assert {n["current"] for n in pair.nodes.values()} == {"1.1.0"}


def test_after_a_rollback_and_a_new_deploy_the_bad_release_is_skipped() -> None:
    pair = Pair()
    for release in ("1.0.0", "1.1.0", "1.2.0"):
        pair.deploy(release)
    pair.rollback()  # 1.2.0 was bad
    pair.deploy("1.2.1")
    assert pair.rollback().release == "1.1.0"


def test_a_roll_out_stopped_half_way_returns_both_nodes_to_the_old_release() -> None:
    pair = Pair()
    pair.deploy("1.0.0")
    pair.deploy("1.1.0", hosts=("gw-b",))
    pair.install("gw-a", "1.1.0")  # installed beside 1.0.0, the gate failed before the switch
    assert pair.rollback() == release_target.Target("1.0.0", already_current=False)


def test_without_previous_release_the_newest_older_install_is_the_target() -> None:
    pair = Pair()
    for release in ("1.0.0", "1.1.0"):
        pair.deploy(release)
    status = pair.status()
    for node in status.values():
        node["previous"] = ""
    assert release_target.choose(status).release == "1.0.0"


def test_nodes_that_disagree_are_named() -> None:
    pair = Pair()
    pair.deploy("1.0.0", hosts=("gw-a",))
    pair.deploy("0.9.0", hosts=("gw-b",))
    pair.deploy("1.1.0")
    status = pair.status()
    status["gw-b"]["previous"] = "0.9.0"
    with pytest.raises(
        release_target.NoTargetError, match=r"\(gw-a -> 1.0.0, gw-b -> 0.9.0\): name one with --to"
    ):
        release_target.choose(status)


def test_a_first_release_has_nothing_to_roll_back_to() -> None:
    pair = Pair()
    pair.deploy("1.0.0")
    with pytest.raises(release_target.NoTargetError, match=r"no release installed before 1.0.0"):
        release_target.choose(pair.status())


def _cli(tmp_path: Path, status: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "status.json"
    path.write_text(json.dumps(status))
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, check=False, timeout=60
    )


def test_cli_exit_codes(tmp_path: Path) -> None:
    pair = Pair()
    pair.deploy("1.0.0")
    pair.deploy("1.1.0")
    result = _cli(tmp_path, pair.status())
    assert (result.returncode, result.stdout) == (0, "1.0.0\n")
    pair.rollback()
    result = _cli(tmp_path, pair.status())
    assert (result.returncode, result.stdout) == (release_target.NOTHING_TO_DO, "1.0.0\n")
    first = Pair()
    first.deploy("1.0.0")
    result = _cli(tmp_path, first.status())
    assert result.returncode == 2 and "nothing to roll back to" in result.stderr
