"""Command lines and preflight of the operator scripts: bad input fails early, naming the option
and the fix; nothing here needs Docker or a cloud (Alertmanager is a local HTTP stub speaking its
API v2, the one thing of a real environment the preflight asks)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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


TOFU_PINNED = re.search(
    r"^TOFU_VERSION=(\S+)$", (REPO / "terraform/tools/install-tofu.sh").read_text(), re.MULTILINE
)


@pytest.fixture
def fake_tools(tmp_path: Path) -> dict[str, str]:
    """An environment in which deploy.sh reaches `tofu plan` without touching anything shared: a
    fake `tofu` of the pinned version on PATH that records each call's argv (one JSON list a line)
    and fails at `plan`, but answers `console` with the real tofu (initialised in a data directory
    of its own, from the offline provider mirror) so that the module itself names the hosts; a
    cache of its own whose tool venv borrows the real one's tools (so the shared venv is not
    reinstalled); a vault password file and a token."""
    assert TOFU_PINNED is not None
    real = dict(
        line.removeprefix("export ").split("=", 1)
        for line in run("bash", "terraform/tools/install-tofu.sh", "--print-env").stdout.splitlines()
        if line.startswith("export ")
    )
    real_tofu = real["PATH"].split(":", 1)[0] + "/tofu"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "tofu-calls.jsonl"
    tofu = bin_dir / "tofu"
    tofu.write_text(
        f"#!{sys.executable}\n"
        "import json, os, subprocess, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "args = [a for a in sys.argv[1:] if not a.startswith('-chdir=')]\n"
        f"if args[:1] == ['version']: print('OpenTofu v{TOFU_PINNED.group(1)}')\n"
        "if args[:1] == ['console']:\n"
        f"    env = dict(os.environ, TF_CLI_CONFIG_FILE={real['TF_CLI_CONFIG_FILE']!r},\n"
        f"               TF_DATA_DIR={str(tmp_path / 'tofu-data')!r}, CHECKPOINT_DISABLE='1')\n"
        "    chdir = [a for a in sys.argv[1:] if a.startswith('-chdir=')]\n"
        f"    subprocess.run([{real_tofu!r}, *chdir, 'init', '-input=false'], env=env, check=True,\n"
        "                   stdout=subprocess.DEVNULL)\n"
        f"    os.execve({real_tofu!r}, [{real_tofu!r}, *sys.argv[1:]], env)\n"
        "for a in args:\n"
        "    if a.startswith('-var-file=') and a.endswith('.json'):\n"
        "        f = a[len('-var-file='):]\n"
        f"        open({str(calls)!r} + '.varfiles', 'a').write(json.dumps([f, json.load(open(f))]))\n"
        f"        open({str(calls)!r} + '.varfiles', 'a').write('\\n')\n"
        "if args[:1] == ['plan']: sys.exit('fake tofu: no plan here')\n"
    )
    tofu.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "NGD_CACHE": str(tmp_path / "cache")}
    key = run(
        "bash", "-c", "source scripts/lib/common.sh; source scripts/lib/toolenv.sh; toolenv_key", env=env
    ).stdout.strip()
    venv = tmp_path / "cache" / f"venv-{key}"
    (venv / "bin").mkdir(parents=True)
    (venv / ".complete").touch()
    (venv / "bin/pip").write_text("#!/bin/sh\nexit 0\n")
    (venv / "bin/pip").chmod(0o755)
    (venv / "bin/activate").write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    vault = tmp_path / "vault-password"
    vault.write_text("throw-away\n")
    return {
        **env,
        "NGD_VAULT_PASSWORD_FILE": str(vault),
        "HCLOUD_TOKEN": "x",
        "TOFU_CALLS": str(calls),
        # OpenTofu's data directory, where deploy.sh keeps the host keys of a plan not yet applied.
        "TF_DATA_DIR": str(tmp_path / "tofu-data"),
    }


def _tofu_calls(env: dict[str, str]) -> list[list[str]]:
    path = Path(env["TOFU_CALLS"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _filled_tfvars(path: Path, environment: str = "staging") -> Path:
    example = (REPO / f"terraform/environments/{environment}/{environment}.tfvars.example").read_text()
    filled = example.replace('"198.51.100.7/32"', '"85.10.20.30/32"')
    filled = re.sub(
        r'ops = "ssh-ed25519 [^"]*"', 'ops = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG7z ops@laptop"', filled
    )
    path.write_text(filled)
    return path


def test_infra_needs_the_tfvars_file_and_names_the_keys(tmp_path: Path, fake_tools: dict[str, str]) -> None:
    tfvars = tmp_path / "staging.tfvars"
    env = {**fake_tools, "NGD_TFVARS_FILE": str(tfvars)}
    result = run(REPO / "scripts/deploy.sh", "staging", "--version", "1.0.0", env=env)
    assert result.returncode != 0
    assert f"no {tfvars}: cp terraform/environments/staging/staging.tfvars.example {tfvars}" in result.stderr
    assert "fill in admin_cidrs, ssh_public_keys" in result.stderr
    assert not any("plan" in call for call in _tofu_calls(env))


def test_infra_refuses_the_placeholders_of_the_example(tmp_path: Path, fake_tools: dict[str, str]) -> None:
    tfvars = tmp_path / "staging.tfvars"
    tfvars.write_text((REPO / "terraform/environments/staging/staging.tfvars.example").read_text())
    env = {**fake_tools, "NGD_TFVARS_FILE": str(tfvars)}
    result = run(REPO / "scripts/deploy.sh", "staging", "--version", "1.0.0", env=env)
    assert result.returncode != 0
    assert f"{tfvars} is not filled in" in result.stderr
    assert "admin_cidrs (198.51.100.7/32 is in the documentation range 198.51.100.0/24)" in result.stderr
    assert "ssh_public_keys (still the example's value)" in result.stderr
    assert "device_cidrs" not in result.stderr.split("not filled in")[1]  # 0.0.0.0/0 is a real value
    assert not any("plan" in call for call in _tofu_calls(env))


def test_the_plan_reads_the_environment_tfvars(tmp_path: Path, fake_tools: dict[str, str]) -> None:
    tfvars = _filled_tfvars(tmp_path / "staging.tfvars")
    env = {**fake_tools, "NGD_TFVARS_FILE": str(tfvars)}
    result = run(REPO / "scripts/deploy.sh", "staging", "--version", "1.0.0", env=env)
    assert result.returncode != 0
    assert "tofu plan failed" in result.stderr, result.stderr
    plans = [call for call in _tofu_calls(env) if "plan" in call]
    assert len(plans) == 1, _tofu_calls(env)
    assert f"-var-file={tfvars}" in plans[0]
    assert "-input=false" in plans[0]


def test_the_plan_gets_fresh_host_keys_for_every_host(tmp_path: Path, fake_tools: dict[str, str]) -> None:
    """New hosts get their SSH host key from OpenTofu: deploy.sh generates one per host for the
    plan, in a variable file of its own that does not outlive the run."""
    tfvars = _filled_tfvars(tmp_path / "staging.tfvars")
    env = {**fake_tools, "NGD_TFVARS_FILE": str(tfvars)}
    result = run(REPO / "scripts/deploy.sh", "staging", "--version", "1.0.0", env=env)
    assert "tofu plan failed" in result.stderr, result.stderr
    varfiles = [json.loads(line) for line in Path(env["TOFU_CALLS"] + ".varfiles").read_text().splitlines()]
    assert len(varfiles) == 1
    path, values = varfiles[0]
    assert (
        set(values["host_public_keys"])
        == set(values["host_private_keys"])
        == {"gw-a", "gw-b", "mon", "collector"}
    )
    for host, public in values["host_public_keys"].items():
        assert public.startswith("ssh-ed25519 AAAA") and public.endswith(f"{host} host key")
        private = tmp_path / f"{host}.key"
        private.write_text(values["host_private_keys"][host])
        private.chmod(0o600)
        derived = subprocess.run(
            ["ssh-keygen", "-y", "-f", str(private)], capture_output=True, text=True, check=True
        )
        assert derived.stdout.split()[:2] == public.split()[:2]  # a real pair
    assert not Path(path).exists()  # the variable file is removed with the run


def test_the_host_keys_of_a_plan_not_applied_are_kept_for_the_rerun(
    tmp_path: Path, fake_tools: dict[str, str]
) -> None:
    """A deploy that stopped before its apply completed (killed: the servers it created run with
    the keys it gave them) hands the same host keys to the next plan, and only to OpenTofu: they
    stay in OpenTofu's data directory, readable by the operator alone."""
    tfvars = _filled_tfvars(tmp_path / "staging.tfvars")
    env = {**fake_tools, "NGD_TFVARS_FILE": str(tfvars)}
    for _ in range(2):
        result = run(REPO / "scripts/deploy.sh", "staging", "--version", "1.0.0", env=env)
        assert "tofu plan failed" in result.stderr, result.stderr
    first, second = (
        json.loads(line)[1] for line in Path(env["TOFU_CALLS"] + ".varfiles").read_text().splitlines()
    )
    assert first == second
    kept = Path(env["TF_DATA_DIR"]) / "pending-host-keys"
    assert kept.stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in kept.iterdir()) == sorted(
        [*first["host_public_keys"], *(f"{h}.pub" for h in first["host_public_keys"])]
    )


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


def _production_env(tmp_path: Path, url: str, fake_tools: dict[str, str]) -> dict[str, str]:
    tfvars = _filled_tfvars(tmp_path / "production.tfvars", "production")
    return {**fake_tools, "NGD_ALERTMANAGER_URL": url, "NGD_TFVARS_FILE": str(tfvars)}


def test_production_refuses_while_a_critical_alert_fires(
    tmp_path: Path, alertmanager: str, fake_tools: dict[str, str]
) -> None:
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
        env=_production_env(tmp_path, alertmanager, fake_tools),
    )
    assert result.returncode != 0
    assert "FIRING GatewayDown" in result.stderr
    assert "SpoolGrowing" not in result.stderr
    assert "a critical alert is firing" in result.stderr


def test_production_needs_typed_confirmation(
    tmp_path: Path, alertmanager: str, fake_tools: dict[str, str]
) -> None:
    _Alertmanager.alerts = [{"labels": {"alertname": "SpoolGrowing", "severity": "warning"}}]
    result = run(
        REPO / "scripts/deploy.sh",
        "production",
        "--version",
        "1.0.0",
        env=_production_env(tmp_path, alertmanager, fake_tools),
    )
    assert result.returncode != 0
    assert "confirmation needed ('production'); re-run with --yes" in result.stderr


def test_production_refuses_to_deploy_without_a_real_sink(
    tmp_path: Path, alertmanager: str, fake_tools: dict[str, str]
) -> None:
    _Alertmanager.alerts = []
    env = _production_env(tmp_path, alertmanager, fake_tools)
    tfvars = Path(env["NGD_TFVARS_FILE"])
    tfvars.write_text(tfvars.read_text().replace("collector_enabled  = true", "collector_enabled  = false"))
    result = run(REPO / "scripts/deploy.sh", "production", "--version", "1.0.0", "--yes", env=env)
    assert result.returncode == 2, result.stderr
    assert "production has no real sink" in result.stderr
    assert f"Set collector_enabled = true in {tfvars}" in result.stderr
    assert "or gateway_sinks in ansible/inventories/production/group_vars/all/main.yml" in result.stderr
    assert not any("plan" in call for call in _tofu_calls(env))


def test_the_example_production_tfvars_has_a_sink() -> None:
    """README's first step copies the example: what it copies must pass the sink preflight."""
    result = run(
        sys.executable,
        REPO / "scripts/ops/sink_check.py",
        "production",
        "--tfvars",
        REPO / "terraform/environments/production/production.tfvars.example",
        "--variables",
        REPO / "terraform/environments/production/variables.tf",
    )
    assert result.returncode == 0, result.stderr
    assert "collector host (collector_enabled = true" in result.stdout


def test_sink_check_counts_gateway_sinks_and_the_inventory(tmp_path: Path) -> None:
    group_vars = tmp_path / "group_vars"
    (group_vars / "all").mkdir(parents=True)
    (group_vars / "all/vault.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    main = group_vars / "all/main.yml"
    main.write_text("gateway_sinks:\n  audit: {type: jsonl, path: /srv/a.jsonl}\n")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    gateways:\n      hosts: {gw-a: {}, gw-b: {}}\n")
    args: list[str | Path] = [
        sys.executable,
        REPO / "scripts/ops/sink_check.py",
        "production",
        "--group-vars",
        group_vars,
    ]
    only_jsonl = run(*args, "--inventory", inventory)
    assert only_jsonl.returncode == 2 and "production has no real sink" in only_jsonl.stderr
    staging = run(*[str(a).replace("production", "staging") for a in args], "--inventory", inventory)
    assert staging.returncode == 0 and "WARNING: staging has no real sink" in staging.stderr
    main.write_text("gateway_sinks:\n  central: {type: http_json, url: 'https://c.example/in'}\n")
    assert "gateway_sinks.central (http_json)" in run(*args, "--inventory", inventory).stdout
    main.write_text("---\n")
    inventory.write_text("all:\n  children:\n    collectors:\n      hosts: {collector: {}}\n")
    assert "collector host collector" in run(*args, "--inventory", inventory).stdout


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


def _build_wheelhouse(cache: Path, version: str) -> subprocess.CompletedProcess[str]:
    script = (
        f'source "{REPO}/scripts/lib/common.sh"; source "{REPO}/scripts/ops/lib.sh"; '
        f"ops_build_wheelhouse {version} x86_64 3.11 2.36"
    )
    return run("bash", "-c", script, env={"NGD_CACHE": str(cache)})


def _cached_wheelhouse(cache: Path, version: str, source: str) -> Path:
    dest = cache / "wheelhouse" / version
    dest.mkdir(parents=True)
    (dest / "nanogridata_gateway-1.0.0-py3-none-any.whl").write_bytes(b"old build")
    (dest / "SOURCE").write_text(source + "\n")
    (dest / ".target-x86_64-cp311-glibc2.36").touch()
    (dest / ".complete").touch()
    return dest


def _source_hash() -> str:
    script = f'source "{REPO}/scripts/lib/common.sh"; source "{REPO}/scripts/ops/lib.sh"; ops_source_hash'
    result = run("bash", "-c", script)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_reused_version_built_from_other_sources_is_refused(tmp_path: Path) -> None:
    """A wheelhouse cached under a release name must not ship as that name for other sources."""
    dest = _cached_wheelhouse(tmp_path / "cache", "1.0.0", "0badc0de")
    result = _build_wheelhouse(tmp_path / "cache", "1.0.0")
    assert result.returncode != 0
    assert (
        f"release 1.0.0 was built from other gateway sources (source hash 0badc0de, this checkout "
        f"{_source_hash()}): name this build with another --version" in result.stderr
    )
    assert (dest / "nanogridata_gateway-1.0.0-py3-none-any.whl").read_bytes() == b"old build"


def test_a_reused_version_of_the_same_sources_reuses_the_cache(tmp_path: Path) -> None:
    _cached_wheelhouse(tmp_path / "cache", "1.0.0", _source_hash())
    result = _build_wheelhouse(tmp_path / "cache", "1.0.0")
    assert result.returncode == 0, result.stderr
    assert "wheelhouse 1.0.0 already built from these sources" in result.stdout
