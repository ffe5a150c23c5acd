#!/usr/bin/env python3
"""Preflight of an environment's OpenTofu variable file: it exists and is filled in.

    scripts/ops/tfvars_check.py terraform/environments/production/production.tfvars \\
        --variables terraform/environments/production

Exit 0 when the file sets every variable that has no default and none of its values is a
placeholder left from the .example (a documentation address such as 198.51.100.7/32 or
2001:db8::/32, an example SSH key); exit 2 otherwise, naming the file and the keys to fill.
A deploy with a placeholder admin network would lock the operator out of his own hosts.

Reads the subset of HCL a .tfvars holds (top-level `key = value`, values on one or more lines)
without an HCL parser: what is checked are the quoted strings under each top-level key.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from pathlib import Path

# RFC 5737 (IPv4) and RFC 3849 (IPv6): addresses for documentation, never a real network.
DOCUMENTATION_V4 = tuple(
    ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)
DOCUMENTATION_V6 = (ipaddress.IPv6Network("2001:db8::/32"),)
# The .example's SSH key and anything else marked to be replaced.
PLACEHOLDER_WORDS = re.compile(r"(?i)example|replace")
TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)\s*=")
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
VARIABLE_BLOCK = re.compile(r'(?ms)^variable\s+"([^"]+)"\s*\{(.*?)^\}')


def values_by_key(text: str) -> dict[str, list[str]]:
    """The quoted strings under each top-level key of a .tfvars (comment lines skipped)."""
    values: dict[str, list[str]] = {}
    key = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "//")):
            continue
        match = TOP_LEVEL_KEY.match(line)
        rest = line
        if match:
            key = match.group(1)
            values[key] = []
            rest = line[match.end() :]
        if key is not None:
            values[key].extend(QUOTED.findall(rest))
    return values


def required_variables(variables_tf: str) -> list[str]:
    """Variables of the root module without a default: the .tfvars must set them."""
    return sorted(
        name
        for name, body in VARIABLE_BLOCK.findall(variables_tf)
        if not re.search(r"(?m)^\s*default\s*=", body)
    )


def placeholder_reason(value: str) -> str | None:
    """Why a value is a placeholder, or None when it may be real."""
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        network = None
    if isinstance(network, ipaddress.IPv4Network):
        hits = [str(d) for d in DOCUMENTATION_V4 if network.subnet_of(d)]
    elif isinstance(network, ipaddress.IPv6Network):
        hits = [str(d) for d in DOCUMENTATION_V6 if network.subnet_of(d)]
    if network is not None:
        return f"{value} is in the documentation range {hits[0]}" if hits else None
    if PLACEHOLDER_WORDS.search(value):
        return "still the example's value"
    return None


def problems(tfvars: str, variables_tf: str) -> list[str]:
    values = values_by_key(tfvars)
    found = [
        f"{name} (not set; it has no default)"
        for name in required_variables(variables_tf)
        if name not in values
    ]
    for key, strings in values.items():
        reasons = [r for r in (placeholder_reason(v) for v in strings) if r]
        if reasons:
            found.append(f"{key} ({reasons[0]})")
    return found


def root_module_text(path: Path) -> str:
    """The text of a root module's .tf files (its variables may be split over several, some of
    them shared by every environment), or of one file."""
    if path.is_dir():
        return "\n".join(f.read_text(encoding="utf-8") for f in sorted(path.glob("*.tf")))
    return path.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check that an environment's .tfvars is filled in.")
    parser.add_argument("tfvars", type=Path)
    parser.add_argument(
        "--variables",
        type=Path,
        required=True,
        help="the root module's folder (its variables are read from every .tf in it), or one .tf file",
    )
    parser.add_argument("--example", help="the .example to copy from, as named in the error")
    parser.add_argument("--name", help="how to name the file in messages (default: as given)")
    args = parser.parse_args(argv)
    name = args.name or str(args.tfvars)
    variables_tf = root_module_text(args.variables)

    if not args.tfvars.is_file():
        example = args.example or f"{name}.example"
        print(
            f"no {name}: cp {example} {name} and fill in "
            f"{', '.join(required_variables(variables_tf))} (and device_cidrs, the networks your "
            "devices connect from)",
            file=sys.stderr,
        )
        return 2
    found = problems(args.tfvars.read_text(encoding="utf-8"), variables_tf)
    if found:
        print(f"{name} is not filled in; set: {'; '.join(found)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
