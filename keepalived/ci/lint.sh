#!/usr/bin/env bash
# keepalived lint stage: ruff (lint + format check) and mypy --strict over notify.py, the provider
# hooks (ngd_vip/); ruff over the tests; shellcheck
# over these hooks.
set -euo pipefail
# shellcheck source=/dev/null  # common.sh lives at the repository root, checked on its own
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"

usage() { echo "Usage: ${0##*/}   (run by ./scripts/test.sh --component keepalived --stage lint)"; }
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

KA="$REPO_ROOT/keepalived"
require_cmd ruff "the tool venv provides it (scripts/requirements.txt)"
require_cmd mypy "the tool venv provides it (scripts/requirements.txt)"
ensure_apt shellcheck

log "ruff check"
ruff check --config "$KA/pyproject.toml" "$KA" || die "ruff check found problems"
log "ruff format --check"
ruff format --check --config "$KA/pyproject.toml" "$KA" || die "files need 'ruff format' (run it in keepalived/)"
log "mypy --strict (notify.py, ngd_vip)"
(cd "$KA" && mypy) || die "mypy --strict found problems"
log "shellcheck keepalived/ci/*.sh"
shellcheck -x "$KA"/ci/*.sh || die "shellcheck found problems"
ok "keepalived lint passed"
