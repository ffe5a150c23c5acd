"""tools/install-tofu.sh on an operator's machine: an OpenTofu of the pinned version already on
PATH is used as it is (no Go, no build); another version is not."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "install-tofu.sh"
PINNED = re.search(r"^TOFU_VERSION=(\S+)$", TOOL.read_text(encoding="utf-8"), re.MULTILINE)


def _fake_tofu(bin_dir: Path, version: str) -> Path:
    bin_dir.mkdir(parents=True)
    tofu = bin_dir / "tofu"
    tofu.write_text(f'#!/bin/sh\necho "OpenTofu v{version}"\necho "on linux_amd64"\n', encoding="utf-8")
    tofu.chmod(0o755)
    return tofu


def _run(tmp_path: Path, bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # No Go on this PATH: a build attempt fails at once instead of compiling for minutes.
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "NGD_CACHE": str(tmp_path / "cache"),
        "NO_COLOR": "1",
    }
    return subprocess.run(
        ["bash", str(TOOL), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_an_installed_tofu_of_the_pinned_version_is_used_without_building(tmp_path: Path) -> None:
    assert PINNED is not None
    bin_dir = tmp_path / "opt-tofu" / "bin"
    _fake_tofu(bin_dir, PINNED.group(1))
    result = _run(tmp_path, bin_dir, "--print-env")
    assert result.returncode == 0, result.stderr
    assert "building" not in result.stderr
    assert f"export PATH={bin_dir}:" in result.stdout
    # No mirror was ever built here: `tofu init` goes to the registry, no CLI config points elsewhere.
    assert "TF_CLI_CONFIG_FILE" not in result.stdout
    assert not (tmp_path / "cache" / "tofu" / PINNED.group(1) / "bin" / "tofu").exists()


def test_an_installed_tofu_of_another_version_is_not_used(tmp_path: Path) -> None:
    bin_dir = tmp_path / "opt-tofu" / "bin"
    _fake_tofu(bin_dir, "1.6.0")
    result = _run(tmp_path, bin_dir, "--print-env")
    assert result.returncode != 0
    assert "it reports 'OpenTofu v1.6.0'" in result.stderr
    assert "'go' not found" in result.stderr  # it went on to build the pinned one
