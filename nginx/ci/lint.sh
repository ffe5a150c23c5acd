#!/usr/bin/env bash
# Lint stage of nginx/: shellcheck of the hooks, ruff and mypy of nginx/tests.
#   ./scripts/test.sh --component nginx --stage lint
set -euo pipefail
# shellcheck source=SCRIPTDIR/../../scripts/lib/common.sh
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"

case "${1:-}" in
  -h|--help) sed -n '2,3p' "$0"; exit 0 ;;
esac

ensure_apt shellcheck
cd "$REPO_ROOT/nginx"
shellcheck -x ci/*.sh || die "shellcheck found problems in nginx/ci (above)"
ruff check --config tests/ruff.toml tests || die "ruff found problems in nginx/tests"
ruff format --check --config tests/ruff.toml tests || die "nginx/tests needs ruff format"
(cd tests && mypy --strict --ignore-missing-imports --python-version 3.11 .) || die "mypy: nginx/tests"
ok "nginx lint clean"
