#!/usr/bin/env bash
# Lint hook of the failover drills (scripts/drills): ruff and mypy --strict over their Python.
# ShellCheck of scripts/drill.sh and scripts/ci/*-drills.sh is done by scripts/ci/lint.sh.
set -euo pipefail
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
help_from_header "$@"
cd "$REPO_ROOT"

# settings: the root ruff.toml
ruff check --quiet scripts/drills || die "ruff check found problems in scripts/drills (above)"
ruff format --check --quiet scripts/drills || die "ruff format: run 'ruff format scripts/drills'"
mypy --strict --python-version 3.11 --no-error-summary --ignore-missing-imports \
  --cache-dir "$NGD_CACHE/mypy-drills" scripts/drills/ngd_drills scripts/drills/tests \
  || die "mypy found problems in scripts/drills (above)"
ok "drills lint passed: ruff, mypy"
