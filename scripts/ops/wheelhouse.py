#!/usr/bin/env python3
"""The gateway's wheelhouse for the hosts' platform, whatever the operator's machine runs.

    scripts/ops/wheelhouse.py target < ANSIBLE_ONELINE_OUTPUT
    scripts/ops/wheelhouse.py deps --dest DIR --arch ARCH --python X.Y --glibc X.Y

The hosts install the gateway with `pip install --no-index` from the wheelhouse, so every wheel in
it must run on *their* CPython and glibc: wheels built by the workstation's own Python (another
version, another CPU, macOS) would install nowhere or, worse, be refused only on the host.

`target` reads what each host reported (`ansible -o ... python3 -c ...`, one line a host:
"HOST | CHANGED | rc=0 | (stdout) ARCH X.Y GLIBC") and prints the one target they share, or exits
2 naming the hosts that differ.

`deps` takes the pure-Python gateway wheel already in DIR (built once, it runs anywhere) and
downloads its dependencies as binary wheels for the target (`pip download --only-binary=:all:
--platform ... --python-version ... --implementation cp`): a dependency without a wheel for the
target fails here, on the workstation, naming the dependency. Every wheel of the resolution is then
checked against the target's tags. Several targets may share one DIR (a release deployed to
x86_64 staging and aarch64 production): pip on each host picks its own wheels.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

# manylinux_2_17 is the oldest glibc aarch64 wheels were ever built for; x86_64 ones go back to
# manylinux1 (glibc 2.5).
OLDEST_GLIBC_MINOR = {"x86_64": 5, "aarch64": 17}
LEGACY_MANYLINUX = {(2, 5): "manylinux1", (2, 12): "manylinux2010", (2, 17): "manylinux2014"}
GATEWAY_WHEEL = "nanogridata_gateway-*.whl"


class WheelhouseError(Exception):
    """The wheelhouse cannot be made for this target; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    arch: str
    python: str  # "3.11"
    glibc: str  # "2.36"

    def __post_init__(self) -> None:
        if self.arch not in OLDEST_GLIBC_MINOR:
            raise WheelhouseError(
                f"host architecture {self.arch!r} is not supported: the gateway's wheels are made for "
                f"{' and '.join(sorted(OLDEST_GLIBC_MINOR))} (Hetzner cx/cpx/ccx and cax server types)"
            )
        for name, value in (("python", self.python), ("glibc", self.glibc)):
            if not re.fullmatch(r"[0-9]+\.[0-9]+", value):
                raise WheelhouseError(f"{name} version {value!r} is not MAJOR.MINOR (e.g. 3.11, 2.36)")
        if not self.glibc.startswith("2."):
            raise WheelhouseError(f"glibc {self.glibc} is not a glibc 2.x: manylinux wheels need one")

    @property
    def python_tuple(self) -> tuple[int, int]:
        major, minor = self.python.split(".")
        return int(major), int(minor)

    @property
    def interpreter(self) -> str:
        return "cp{}{}".format(*self.python_tuple)

    def platforms(self) -> list[str]:
        """The manylinux platform tags this host accepts, newest first (pip's --platform does not
        expand one manylinux tag to the older ones, so every one is named)."""
        newest = int(self.glibc.split(".")[1])
        tags: list[str] = []
        for minor in range(newest, OLDEST_GLIBC_MINOR[self.arch] - 1, -1):
            tags.append(f"manylinux_2_{minor}_{self.arch}")
            legacy = LEGACY_MANYLINUX.get((2, minor))
            if legacy and not (legacy != "manylinux2014" and self.arch == "aarch64"):
                tags.append(f"{legacy}_{self.arch}")
        return tags

    def tags(self) -> set[Tag]:
        platforms = self.platforms()
        return set(cpython_tags(self.python_tuple, abis=[self.interpreter], platforms=platforms)) | set(
            compatible_tags(self.python_tuple, interpreter=self.interpreter, platforms=platforms)
        )

    def describe(self) -> str:
        return f"CPython {self.python} on manylinux {self.arch} (glibc {self.glibc})"

    def key(self) -> str:
        return f"{self.arch}-{self.interpreter}-glibc{self.glibc}"


_REPORT = re.compile(r"^(?P<host>\S+) \| (?P<state>[A-Z]+)(?: \| rc=(?P<rc>-?\d+))? \| (?P<rest>.*)$")


def target_from_reports(text: str) -> Target:
    """The one target of all hosts, from `ansible -o` output of the probe command."""
    seen: dict[str, tuple[str, str, str]] = {}
    failed: list[str] = []
    for line in text.splitlines():
        match = _REPORT.match(line.strip())
        if not match:
            continue
        host, rest = match["host"], match["rest"]
        fields = rest.removeprefix("(stdout)").split()
        if match["state"] not in {"CHANGED", "SUCCESS"} or match["rc"] not in {None, "0"} or len(fields) != 3:
            failed.append(f"{host}: {rest[:200]}")
            continue
        seen[host] = (fields[0], fields[1], fields[2])
    if failed:
        raise WheelhouseError("could not read the platform of " + "; ".join(failed))
    if not seen:
        raise WheelhouseError("no host reported its platform (is the inventory empty?)")
    if len({(arch, python) for arch, python, _ in seen.values()}) != 1:
        listed = ", ".join(f"{h} {a} python {p}" for h, (a, p, _) in sorted(seen.items()))
        raise WheelhouseError(
            f"the hosts run different architectures or Pythons ({listed}): one release's wheelhouse "
            "needs one platform; give them the same image and server type family"
        )
    arch, python, _ = next(iter(seen.values()))
    # The oldest glibc among them: a wheel for it runs on all of them.
    glibc = min((g for _, _, g in seen.values()), key=lambda g: tuple(int(p) for p in g.split(".")))
    return Target(arch=arch, python=python, glibc=glibc)


def gateway_wheel(dest: Path) -> Path:
    wheels = sorted(dest.glob(GATEWAY_WHEEL))
    if len(wheels) != 1:
        raise WheelhouseError(f"expected one {GATEWAY_WHEEL} in {dest}, found {len(wheels)}")
    _, _, _, tags = parse_wheel_filename(wheels[0].name)
    if {str(t) for t in tags} != {"py3-none-any"}:
        raise WheelhouseError(
            f"{wheels[0].name} is not a pure-Python wheel (py3-none-any): it runs only where it was built"
        )
    return wheels[0]


_SAVED = re.compile(r"^(?:Saved|File was already downloaded) (?P<path>\S+\.whl)\s*$")
_MISSING = re.compile(r"Could not find a version that satisfies the requirement (?P<req>\S+)")


def pip_download_args(target: Target, dest: Path, wheel: Path) -> list[str]:
    args = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest", str(dest)]
    for platform in target.platforms():
        args += ["--platform", platform]
    args += ["--python-version", target.python, "--implementation", "cp", "--abi", target.interpreter]
    return [*args, str(wheel)]


def incompatible(wheels: list[Path], target: Target) -> list[str]:
    accepted = target.tags()
    bad = []
    for wheel in wheels:
        _, _, _, tags = parse_wheel_filename(wheel.name)
        if not tags & accepted:
            bad.append(wheel.name)
    return bad


def download_deps(dest: Path, target: Target) -> list[Path]:
    """pip download the gateway wheel's dependencies for the target into dest; the wheels of the
    resolution, checked against the target's tags."""
    wheel = gateway_wheel(dest)
    result = subprocess.run(
        pip_download_args(target, dest, wheel), capture_output=True, text=True, check=False, timeout=1800
    )
    if result.returncode != 0:
        missing = _MISSING.search(result.stderr)
        if missing:
            raise WheelhouseError(
                f"dependency {missing['req']} has no wheel for {target.describe()} (pip download "
                "--only-binary=:all:): pin a version of it that publishes one in gateway/pyproject.toml, "
                f"or deploy to hosts of a platform it supports.\n{result.stderr.strip()}"
            )
        raise WheelhouseError(f"pip download failed for {target.describe()}:\n{result.stderr.strip()}")
    resolved = []
    for line in result.stdout.splitlines():
        match = _SAVED.match(line.strip())
        if match:
            path = Path(match["path"])
            resolved.append(path if path.is_absolute() else dest / path.name)
    if not any(p.name == wheel.name for p in resolved):
        raise WheelhouseError(f"pip download did not list {wheel.name}; output:\n{result.stdout}")
    bad = incompatible(resolved, target)
    if bad:
        raise WheelhouseError(f"wheels that do not run on {target.describe()}: {', '.join(bad)}")
    (dest / f".target-{target.key()}").write_text(
        "".join(f"{p.name}\n" for p in sorted(resolved)), encoding="utf-8"
    )
    return resolved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wheelhouse.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("target", help="the hosts' common target from `ansible -o` output on stdin")
    deps = sub.add_parser("deps", help="download the gateway wheel's dependencies for a target")
    deps.add_argument("--dest", type=Path, required=True)
    deps.add_argument("--arch", required=True, help="x86_64 or aarch64 (uname -m of the hosts)")
    deps.add_argument("--python", default="3.11", help="the hosts' CPython, MAJOR.MINOR")
    deps.add_argument("--glibc", default="2.36", help="the hosts' glibc, MAJOR.MINOR (Debian 12: 2.36)")
    args = parser.parse_args(argv)
    try:
        if args.command == "target":
            target = target_from_reports(sys.stdin.read())
            print(target.arch, target.python, target.glibc)
            return 0
        target = Target(arch=args.arch, python=args.python, glibc=args.glibc)
        resolved = download_deps(args.dest, target)
    except WheelhouseError as err:
        print(f"wheelhouse: {err}", file=sys.stderr)
        return 2
    print(f"{len(resolved)} wheels for {target.describe()} in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
