#!/usr/bin/env bash
# Lint stage of prometheus/: promtool check rules on the rendered rules, ruff + mypy on the tools,
# and shellcheck of the hooks. (yamllint runs repo-wide elsewhere.)
set -euo pipefail
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
source "$REPO_ROOT/prometheus/ci/lib.sh"
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  echo "Usage: ${0##*/}   (promtool check rules, ruff, mypy --strict, shellcheck on prometheus/)"; exit 0
fi
cd "$REPO_ROOT"
prom_tools
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT

prom_render "$out"
log "promtool check rules ($(find "$out/rules" -name '*.yml' | wc -l) files)"
promtool check rules "$out"/rules/*.yml >/dev/null || die "promtool check rules failed: run it on the rendered rules for details"

log "ruff and mypy --strict on prometheus/tools and prometheus/tests"
ruff check prometheus/tools prometheus/tests || die "ruff check failed"
ruff format --check prometheus/tools prometheus/tests || die "ruff format: run 'ruff format prometheus/tools prometheus/tests'"
mypy --strict prometheus/tools prometheus/tests/test_tools.py || die "mypy --strict failed"

ensure_apt shellcheck
log "shellcheck prometheus/ci"
shellcheck -x prometheus/ci/*.sh || die "shellcheck failed"
ok "prometheus lint passed"
