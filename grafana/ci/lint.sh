#!/usr/bin/env bash
# Lint stage of grafana/: ruff + mypy --strict on the generator, checker and tests; shellcheck.
set -euo pipefail
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  echo "Usage: ${0##*/}   (ruff, mypy --strict, shellcheck on grafana/)"; exit 0
fi
cd "$REPO_ROOT"
ruff check grafana/tools grafana/tests || die "ruff check failed"
ruff format --check grafana/tools grafana/tests || die "ruff format: run 'ruff format grafana/tools grafana/tests'"
mypy --strict grafana/tools grafana/tests || die "mypy --strict failed"
ensure_apt shellcheck
shellcheck -x grafana/ci/*.sh || die "shellcheck failed"
ok "grafana lint passed"
