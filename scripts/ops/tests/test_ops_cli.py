"""Command lines and preflight of the operator scripts: bad input fails early, naming the option
and the fix; nothing here needs Docker or a cloud (Alertmanager is a local HTTP stub speaking its
API v2, the one thing of a real environment the preflight asks)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPTS = ("deploy.sh", "rollback.sh", "backup.sh", "restore.sh")


def run(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_exits_zero_and_shows_usage(script: str) -> None:
    result = run(REPO / "scripts" / script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage:")


@pytest.mark.parametrize("script", ("deploy.sh", "rollback.sh", "backup.sh"))
def test_missing_environment_is_named(script: str) -> None:
    result = run(REPO / "scripts" / script)
    assert result.returncode != 0
    assert "missing ENV" in result.stderr


@pytest.mark.parametrize("script", ("deploy.sh", "rollback.sh", "backup.sh"))
def test_unknown_environment_lists_the_valid_ones(script: str) -> None:
    result = run(REPO / "scripts" / script, "prod")
    assert result.returncode != 0
    assert "unknown environment 'prod' (one of: lab staging production)" in result.stderr


def test_unknown_option_is_named() -> None:
    result = run(REPO / "scripts/deploy.sh", "lab", "--fast")
    assert result.returncode != 0
    assert "unknown option: --fast" in result.stderr


def test_bad_version_is_refused_before_anything_runs() -> None:
    result = run(REPO / "scripts/deploy.sh", "lab", "--version", "not a version", "--no-infra")
    assert result.returncode != 0
    assert "--version 'not a version' is not a PEP 440 version" in result.stderr
    assert "FAILED" in result.stderr  # the one-line reason, with the log file


def test_infra_needs_the_cloud_token() -> None:
    env = {"HCLOUD_TOKEN": ""}
    result = run(REPO / "scripts/deploy.sh", "staging", "--version", "1.0.0", "--infra", env=env)
    assert result.returncode != 0
    assert "HCLOUD_TOKEN is not set" in result.stderr


def test_vault_password_file_is_required(tmp_path: Path) -> None:
    env = {"NGD_VAULT_PASSWORD_FILE": "", "XDG_CONFIG_HOME": str(tmp_path)}
    result = run(REPO / "scripts/deploy.sh", "staging", "--version", "1.0.0", "--no-infra", env=env)
    assert result.returncode != 0
    assert "no vault password file" in result.stderr


class _Alertmanager(BaseHTTPRequestHandler):
    alerts: ClassVar[list[dict[str, object]]] = []

    def do_GET(self) -> None:
        assert self.path.startswith("/api/v2/alerts?active=true&silenced=false")
        body = json.dumps(self.alerts).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def alertmanager() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Alertmanager)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _production_env(tmp_path: Path, url: str) -> dict[str, str]:
    vault = tmp_path / "vault-password"
    vault.write_text("throw-away\n")
    return {"NGD_VAULT_PASSWORD_FILE": str(vault), "NGD_ALERTMANAGER_URL": url, "HCLOUD_TOKEN": "x"}


def test_production_refuses_while_a_critical_alert_fires(tmp_path: Path, alertmanager: str) -> None:
    _Alertmanager.alerts = [
        {"labels": {"alertname": "GatewayDown", "severity": "critical"}},
        {"labels": {"alertname": "SpoolGrowing", "severity": "warning"}},
    ]
    result = run(
        REPO / "scripts/deploy.sh",
        "production",
        "--version",
        "1.0.0",
        "--yes",
        env=_production_env(tmp_path, alertmanager),
    )
    assert result.returncode != 0
    assert "FIRING GatewayDown" in result.stderr
    assert "SpoolGrowing" not in result.stderr
    assert "a critical alert is firing" in result.stderr


def test_production_needs_typed_confirmation(tmp_path: Path, alertmanager: str) -> None:
    _Alertmanager.alerts = [{"labels": {"alertname": "SpoolGrowing", "severity": "warning"}}]
    result = run(
        REPO / "scripts/deploy.sh",
        "production",
        "--version",
        "1.0.0",
        env=_production_env(tmp_path, alertmanager),
    )
    assert result.returncode != 0
    assert "confirmation needed ('production'); re-run with --yes" in result.stderr


def test_rollback_refuses_a_malformed_release_name() -> None:
    result = run(REPO / "scripts/rollback.sh", "lab", "--to", "../../etc")
    assert result.returncode != 0
    assert "not a release name" in result.stderr


def _backup_folder(root: Path) -> Path:
    host = root / "gw-b"
    host.mkdir(parents=True)
    (host / "gateway.tar.gz").write_bytes(b"state")
    (host / "MANIFEST").write_text("host=gw-b\n")
    subprocess.run("sha256sum gateway.tar.gz MANIFEST > SHA256SUMS", shell=True, cwd=host, check=True)
    subprocess.run(
        "sha256sum gw-b/gateway.tar.gz gw-b/MANIFEST gw-b/SHA256SUMS > SHA256SUMS",
        shell=True,
        cwd=root,
        check=True,
    )
    return root


def test_restore_verify_only_accepts_an_intact_backup(tmp_path: Path) -> None:
    backup = _backup_folder(tmp_path / "b")
    result = run(REPO / "scripts/restore.sh", "lab", backup, "--verify-only")
    assert result.returncode == 0, result.stderr
    assert "checksums match: gw-b" in result.stdout


def test_restore_refuses_a_corrupted_backup_before_touching_anything(tmp_path: Path) -> None:
    backup = _backup_folder(tmp_path / "b")
    with (backup / "gw-b/gateway.tar.gz").open("ab") as f:
        f.write(b"x")
    result = run(REPO / "scripts/restore.sh", "lab", backup, "--yes")
    assert result.returncode != 0
    assert "checksums do not match" in result.stderr
    assert "restore gw-b" not in result.stdout  # step 2 never started


def test_restore_refuses_an_archive_without_its_checksum(tmp_path: Path) -> None:
    archive = tmp_path / "backup.tar.age"
    archive.write_bytes(b"age-encrypted")
    result = run(REPO / "scripts/restore.sh", "lab", archive)
    assert result.returncode != 0
    assert "no " + str(archive) + ".sha256 next to the archive" in result.stderr


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


def _git_version(repo: Path) -> str:
    script = (
        f'source "{REPO}/scripts/lib/common.sh"; REPO_ROOT="{repo}"; '
        f'source "{REPO}/scripts/ops/lib.sh"; ops_git_version'
    )
    result = run("bash", "-c", script)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_git_describe_maps_to_pep440(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    (repo / "gateway/src").mkdir(parents=True)
    (repo / "gateway/pyproject.toml").write_text('[project]\nversion = "0.9.0"\n')
    (repo / "gateway/README.md").write_text("x\n")
    (repo / "gateway/src/a.py").write_text("A = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "one")
    assert _git_version(repo).startswith("0.9.0+g")  # no tag: the pyproject version
    _git(repo, "tag", "v1.2.0")
    assert _git_version(repo) == "1.2.0"
    (repo / "gateway/src/a.py").write_text("A = 2\n")
    dirty = _git_version(repo)
    assert dirty.startswith("1.2.0+dirty.") and len(dirty.split(".")[-1]) == 8
    (repo / "gateway/src/a.py").write_text("A = 3\n")
    assert _git_version(repo) != dirty  # another change, another release name
    _git(repo, "commit", "-qam", "two")
    version = _git_version(repo)
    assert version.startswith("1.2.0+1.g")
    from packaging.version import Version

    assert str(Version(version)) == version
