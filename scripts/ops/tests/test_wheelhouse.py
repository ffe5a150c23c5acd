"""The wheelhouse is made for the hosts' platform, not the workstation's (scripts/ops/wheelhouse.py
and ops_build_wheelhouse in scripts/ops/lib.sh): an aarch64 wheelhouse built on this x86_64
machine holds only wheels an aarch64 Debian 12 CPython 3.11 installs; a dependency without a wheel
for the target fails on the workstation, naming it; the hosts' own reports decide the target."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.tags import Tag
from packaging.utils import parse_wheel_filename

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wheelhouse

REPO = Path(__file__).resolve().parents[3]
SCRIPT = Path(wheelhouse.__file__)


def run(
    *args: str | Path, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        timeout=600,
        check=False,
    )


def make_wheel(directory: Path, name: str, version: str, tag: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal but valid wheel (METADATA, WHEEL, RECORD), written by hand: no build, no index."""
    dist = name.replace("-", "_")
    path = directory / f"{dist}-{version}-{tag}.whl"
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": "",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
            name, version, "".join(f"Requires-Dist: {r}\n" for r in requires)
        ),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n",
    }
    record = []
    with zipfile.ZipFile(path, "w") as archive:
        for arcname, text in files.items():
            data = text.encode()
            archive.writestr(arcname, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arcname},sha256={digest},{len(data)}")
        archive.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    return path


@pytest.fixture
def local_index(tmp_path: Path) -> dict[str, str]:
    """pip sees only a local folder (no index): one dependency with an x86_64-only binary wheel
    for glibc 2.17, one pure dependency."""
    index = tmp_path / "index"
    index.mkdir()
    make_wheel(index, "ngd-native", "1.0", "cp311-cp311-manylinux_2_17_x86_64")
    make_wheel(index, "ngd-pure", "2.0", "py3-none-any")
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index)}


def gateway_dest(tmp_path: Path, requires: tuple[str, ...]) -> Path:
    dest = tmp_path / "wheelhouse"
    dest.mkdir()
    make_wheel(dest, "nanogridata-gateway", "1.2.0", "py3-none-any", requires)
    return dest


def test_dependencies_are_those_of_the_target(tmp_path: Path, local_index: dict[str, str]) -> None:
    dest = gateway_dest(tmp_path, ("ngd-native", "ngd-pure"))
    result = run(sys.executable, SCRIPT, "deps", "--dest", dest, "--arch", "x86_64", env=local_index)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in dest.glob("*.whl"))
    assert names == [
        "nanogridata_gateway-1.2.0-py3-none-any.whl",
        "ngd_native-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "ngd_pure-2.0-py3-none-any.whl",
    ]
    assert (dest / ".target-x86_64-cp311-glibc2.36").read_text().splitlines() == names


def test_a_dependency_without_a_wheel_for_the_target_is_named(
    tmp_path: Path, local_index: dict[str, str]
) -> None:
    dest = gateway_dest(tmp_path, ("ngd-native", "ngd-pure"))
    result = run(sys.executable, SCRIPT, "deps", "--dest", dest, "--arch", "aarch64", env=local_index)
    assert result.returncode == 2
    assert (
        "dependency ngd-native has no wheel for CPython 3.11 on manylinux aarch64 (glibc 2.36)"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not list(dest.glob(".target-*"))


def test_a_wheel_for_a_newer_glibc_than_the_hosts_is_not_taken(tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.mkdir()
    make_wheel(index, "ngd-native", "1.0", "cp311-cp311-manylinux_2_38_x86_64")
    dest = gateway_dest(tmp_path, ("ngd-native",))
    env = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index)}
    result = run(
        sys.executable, SCRIPT, "deps", "--dest", dest, "--arch", "x86_64", "--glibc", "2.36", env=env
    )
    assert result.returncode == 2
    assert "dependency ngd-native has no wheel" in result.stderr


def test_a_gateway_wheel_that_is_not_pure_python_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "wheelhouse"
    dest.mkdir()
    make_wheel(dest, "nanogridata-gateway", "1.2.0", "cp312-cp312-macosx_14_0_arm64")
    result = run(sys.executable, SCRIPT, "deps", "--dest", dest, "--arch", "x86_64")
    assert result.returncode == 2
    assert "is not a pure-Python wheel (py3-none-any)" in result.stderr


def test_platforms_cover_every_older_manylinux() -> None:
    arm = wheelhouse.Target("aarch64", "3.11", "2.36").platforms()
    assert arm[0] == "manylinux_2_36_aarch64" and arm[-2:] == [
        "manylinux_2_17_aarch64",
        "manylinux2014_aarch64",
    ]
    assert "manylinux2014_aarch64" in arm and not any("manylinux1" in p or "2010" in p for p in arm)
    x86 = wheelhouse.Target("x86_64", "3.11", "2.36").platforms()
    assert {
        "manylinux1_x86_64",
        "manylinux2010_x86_64",
        "manylinux2014_x86_64",
        "manylinux_2_5_x86_64",
    } <= set(x86)
    assert "manylinux_2_37_x86_64" not in x86


def test_an_unsupported_architecture_is_refused() -> None:
    result = run(sys.executable, SCRIPT, "deps", "--dest", "/nonexistent", "--arch", "riscv64")
    assert result.returncode == 2
    assert "host architecture 'riscv64' is not supported" in result.stderr


REPORTS = """\
gw-a | CHANGED | rc=0 | (stdout) aarch64 3.11 2.36
gw-b | CHANGED | rc=0 | (stdout) aarch64 3.11 2.36
sim | CHANGED | rc=0 | (stdout) aarch64 3.11 2.31
"""


def test_the_target_is_what_the_hosts_report() -> None:
    result = run(sys.executable, SCRIPT, "target", stdin=REPORTS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["aarch64", "3.11", "2.31"]  # the oldest glibc of them


def test_hosts_of_different_platforms_are_refused() -> None:
    reports = REPORTS.replace(
        "gw-b | CHANGED | rc=0 | (stdout) aarch64", "gw-b | CHANGED | rc=0 | (stdout) x86_64"
    )
    result = run(sys.executable, SCRIPT, "target", stdin=reports)
    assert result.returncode == 2
    assert "gw-a aarch64 python 3.11, gw-b x86_64 python 3.11" in result.stderr


def test_a_host_that_cannot_report_is_named() -> None:
    reports = REPORTS + 'mon | UNREACHABLE! => {"msg": "ssh: connect to host"}\n'
    reports = reports.replace(
        "sim | CHANGED | rc=0 | (stdout) aarch64 3.11 2.31", "sim | FAILED | rc=127 | (stdout) "
    )
    result = run(sys.executable, SCRIPT, "target", stdin=reports)
    assert result.returncode == 2
    assert "could not read the platform of sim" in result.stderr


def test_deploy_builds_an_aarch64_wheelhouse_on_this_machine(tmp_path: Path) -> None:
    """The real gateway and its real dependencies (from the package index), for aarch64 Debian 12
    hosts, through the function deploy.sh calls."""
    cache = tmp_path / "cache"
    script = (
        f'source "{REPO}/scripts/lib/common.sh"; source "{REPO}/scripts/ops/lib.sh"; '
        "ops_build_wheelhouse 1.2.3 aarch64 3.11 2.36"
    )
    result = run("bash", "-c", script, env={"NGD_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr
    dest = cache / "wheelhouse/1.2.3"
    assert (dest / ".complete").exists()
    wheels = {
        str(parse_wheel_filename(p.name)[0]): parse_wheel_filename(p.name)[3] for p in dest.glob("*.whl")
    }
    assert wheels.pop("nanogridata-gateway") == {Tag("py3", "none", "any")}
    assert {"cbor2", "uvloop", "aiohttp", "prometheus-client"} <= set(wheels)
    for name, tags in wheels.items():
        for tag in tags:
            assert tag.platform == "any" or (
                tag.platform.endswith("_aarch64") and "manylinux" in tag.platform
            ), name
            assert tag.interpreter in {"py3", "cp311"} and tag.abi in {"none", "abi3", "cp311"}, name
    # Built once: the same sources and target again reuse it.
    again = run("bash", "-c", script, env={"NGD_CACHE": str(cache)})
    assert again.returncode == 0, again.stderr
    assert "already built from these sources" in again.stdout
