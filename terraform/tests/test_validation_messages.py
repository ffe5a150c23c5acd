"""The module's validation messages, as an operator sees them from `tofu`.

modules/gateway-pair/tests/validation.tftest.hcl proves each bad input is rejected
(expect_failures); it cannot see the wording. Here the same module runs under `tofu test` with
runs that are *meant* to fail, and the text tofu prints must carry the message that names the
variable and the fix.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from conftest import TERRAFORM_DIR

MODULE_DIR = TERRAFORM_DIR / "modules" / "gateway-pair"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeTestKeyNotASecret0000000000000000000 ops@test"

# name -> (HCL assignment that breaks one variable, text the operator must see)
CASES: dict[str, tuple[str, str]] = {
    "ssh_open_to_world": (
        'admin_cidrs = ["0.0.0.0/0"]',
        "admin_cidrs must not open SSH to the whole internet (0.0.0.0/0 or ::/0): list your admin networks.",
    ),
    "admin_cidr_typo": (
        'admin_cidrs = ["10.0.0.300/32"]',
        'admin_cidrs entries must be CIDRs such as "198.51.100.7/32"',
    ),
    "retired_server_type": (
        'gateway_server_type = "cx32"',
        "gateway_server_type cx32 is retired by Hetzner (deprecated 2025-10-16): use the successor of the "
        "same size (cx22 -> cx23, cx32 -> cx33, cx42 -> cx43, cx52 -> cx53) or another current type.",
    ),
    "lab_environment": ('environment = "lab"', 'environment must be "staging" or "production"'),
    "unknown_location": ('location = "mars1"', "location must be one of fsn1, nbg1, hel1, ash, hil, sin."),
    "private_key": (
        'ssh_public_keys = { ops = "-----BEGIN OPENSSH PRIVATE KEY-----" }',
        "ssh_public_keys values must be OpenSSH public keys",
    ),
    "ubuntu_image": (
        'image = "ubuntu-24.04"',
        'image must be "debian-12" or the numeric ID of a Debian 12 snapshot',
    ),
    "device_port": ("device_port = 0", "device_port must be an integer between 1 and 65535."),
    "subnet_outside_network": (
        'private_subnet_cidr = "10.54.1.0/24"',
        "private_subnet_cidr (10.54.1.0/24) must lie inside private_network_cidr (10.53.0.0/16).",
    ),
}


def normalise(text: str) -> str:
    """tofu frames and wraps diagnostics: drop the frame characters and join the lines."""
    return re.sub(r"\s+", " ", re.sub(r"[│╷╵]", " ", text))


@pytest.fixture(scope="module")
def tofu_test_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    tofu = shutil.which("tofu")
    assert tofu, (
        'tofu not on PATH: eval "$(terraform/tools/install-tofu.sh --print-env)" (the unit hook does)'
    )
    work = tmp_path_factory.mktemp("gateway-pair")
    for source in MODULE_DIR.iterdir():
        if source.is_file():
            shutil.copy2(source, work / source.name)
    tests = work / "tests"
    tests.mkdir()
    # One file per case: tofu stops a file's later runs after an error, not other files.
    for name, (assignment, _) in CASES.items():
        (tests / f"{name}.tftest.hcl").write_text(
            f"""
mock_provider "hcloud" {{
  mock_resource "hcloud_server" {{
    defaults = {{ id = "1001" }}
  }}
  mock_resource "hcloud_network" {{
    defaults = {{ id = "2001" }}
  }}
  mock_resource "hcloud_floating_ip" {{
    defaults = {{ id = "3001" }}
  }}
  mock_resource "hcloud_placement_group" {{
    defaults = {{ id = "4001" }}
  }}
  mock_resource "hcloud_firewall" {{
    defaults = {{ id = "5001" }}
  }}
}}
variables {{
  environment     = "production"
  ssh_public_keys = {{ ops = "{KEY}" }}
  admin_cidrs     = ["198.51.100.7/32"]
}}
run "{name}" {{
  command = plan
  variables {{
    {assignment}
  }}
}}
""",
            encoding="utf-8",
        )
    env = {**os.environ, "TF_DATA_DIR": str(work / ".terraform"), "NO_COLOR": "1"}
    init = subprocess.run(
        [tofu, "init", "-backend=false", "-input=false", "-no-color"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    result = subprocess.run(
        [tofu, "test", "-no-color"], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0, "runs with invalid input passed: " + result.stdout
    return normalise(result.stdout + result.stderr)


@pytest.mark.parametrize("name", sorted(CASES))
def test_invalid_input_message(tofu_test_output: str, name: str) -> None:
    _, message = CASES[name]
    assert f"tests/{name}.tftest.hcl... fail" in tofu_test_output
    assert normalise(message) in tofu_test_output


def test_every_case_failed_and_nothing_else(tofu_test_output: str) -> None:
    summary = re.search(r"(\d+) passed, (\d+) failed", tofu_test_output)
    assert summary, tofu_test_output[-2000:]
    assert (int(summary.group(1)), int(summary.group(2))) == (0, len(CASES))
