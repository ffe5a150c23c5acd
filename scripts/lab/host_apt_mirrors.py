#!/usr/bin/env python3
"""Print the Debian mirrors this machine's apt already uses, for building lab images offline.

Reads one-line (sources.list) and deb822 (*.sources) files and prints two lines:
  debian=<URL of the mirror carrying SUITE>
  security=<URL of the mirror carrying SUITE-security>
A missing security mirror falls back to the main mirror's host with /debian-security.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

APT_DIR = Path("/etc/apt")


def one_line_entries(text: str) -> list[tuple[str, list[str]]]:
    """(uri, suites) of every 'deb' line of a sources.list file."""
    entries: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        # Skip options like [arch=amd64 signed-by=...].
        rest = words[1:]
        if rest[0].startswith("["):
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        if len(rest) >= 2:
            entries.append((rest[0], [rest[1]]))
    return entries


def deb822_entries(text: str) -> list[tuple[str, list[str]]]:
    """(uri, suites) of every enabled 'Types: deb' stanza of a .sources file."""
    entries: list[tuple[str, list[str]]] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            entries.append((uri, fields.get("suites", "").split()))
    return entries


def find_mirrors(apt_dir: Path, suite: str) -> tuple[str, str]:
    entries: list[tuple[str, list[str]]] = []
    sources_list = apt_dir / "sources.list"
    if sources_list.is_file():
        entries += one_line_entries(sources_list.read_text())
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.glob("*.list")):
            entries += one_line_entries(path.read_text())
        for path in sorted(parts.glob("*.sources")):
            entries += deb822_entries(path.read_text())
    main = next((uri for uri, suites in entries if suite in suites), None)
    if main is None:
        raise LookupError(
            f"no apt source for suite '{suite}' in {apt_dir}/sources.list(.d): "
            "add a Debian mirror to apt's sources or set LAB_MIRROR for scripts/lab.sh"
        )
    security = next((uri for uri, suites in entries if f"{suite}-security" in suites), None)
    if security is None:
        security = main.rstrip("/").rsplit("/", 1)[0] + "/debian-security"
    return main.rstrip("/"), security.rstrip("/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="bookworm")
    parser.add_argument("--apt-dir", type=Path, default=APT_DIR)
    args = parser.parse_args(argv)
    try:
        main_uri, security_uri = find_mirrors(args.apt_dir, args.suite)
    except LookupError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    print(f"debian={main_uri}")
    print(f"security={security_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
