#!/usr/bin/env python3
"""Which release a plain `rollback.sh ENV` (no --to) returns the gateways to.

    scripts/ops/release_target.py STATUS_JSON

STATUS_JSON is what scripts/ops/status.yml writes: per gateway its current release, the release
that ran before the last switch (PREVIOUS_RELEASE) and the installed releases with their install
time. Prints the target release and exits 0; exits 3 when there is nothing to roll back (every
gateway already runs the release it would return to); exits 2, saying why, when the gateways do
not agree or no earlier release is installed.

Per gateway:
- the current release is the newest installed one (the last switch was a deploy): the target is
  the release that ran before that deploy (PREVIOUS_RELEASE), or, without one, the newest
  installed release older than the current one;
- a newer release than the current one is installed (the last switch was a rollback, or the
  roll-out of that newer release stopped before this node): the node already runs the release
  to return to, and stays on it. PREVIOUS_RELEASE then names the release rolled back from, so
  following it would re-deploy the bad release; going further back takes an explicit --to.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

NOTHING_TO_DO = 3


class NoTargetError(Exception):
    """No single release to return to; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    release: str
    # True when every gateway already runs it: there is nothing to roll back.
    already_current: bool


def node_target(host: str, node: dict[str, Any]) -> str:
    current = str(node.get("current") or "")
    if not current:
        raise NoTargetError(f"{host} runs no release: deploy first (scripts/deploy.sh)")
    installed = [r for r in node.get("releases", []) if r.get("installed")]
    # Install time order (status.yml lists them oldest first); the name breaks ties.
    history = [str(r["name"]) for r in sorted(installed, key=lambda r: (str(r["time"]), str(r["name"])))]
    if current not in history:
        history.append(current)
    newer = history[history.index(current) + 1 :]
    if newer:
        return current
    previous = str(node.get("previous") or "")
    if previous and previous != current and previous in history:
        return previous
    older = history[: history.index(current)]
    if not older:
        raise NoTargetError(f"{host} has no release installed before {current}: nothing to roll back to")
    return older[-1]


def choose(status: dict[str, dict[str, Any]]) -> Target:
    if not status:
        raise NoTargetError("the status lists no gateway")
    targets = {host: node_target(host, node) for host, node in sorted(status.items())}
    if len(set(targets.values())) != 1:
        listed = ", ".join(f"{host} -> {release}" for host, release in targets.items())
        raise NoTargetError(f"the gateways would return to different releases ({listed}): name one with --to")
    release = next(iter(targets.values()))
    return Target(release=release, already_current=all(n.get("current") == release for n in status.values()))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: release_target.py STATUS_JSON", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as handle:
        status = json.load(handle)
    try:
        target = choose(status)
    except NoTargetError as err:
        print(str(err), file=sys.stderr)
        return 2
    print(target.release)
    return NOTHING_TO_DO if target.already_current else 0


if __name__ == "__main__":
    sys.exit(main())
