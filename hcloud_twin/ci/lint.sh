#!/usr/bin/env bash
# hcloud_twin lint stage: ruff (lint + format check) over the twin and its tests, mypy --strict
# over src/, shellcheck over these hooks.
set -euo pipefail
# shellcheck source=/dev/null  # common.sh lives at the repository root, checked on its own
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"

usage() { echo "Usage: ${0##*/}   (run by ./scripts/test.sh --component hcloud_twin --stage lint)"; }
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

TWIN="$REPO_ROOT/hcloud_twin"
require_cmd ruff "the tool venv provides it (scripts/requirements.txt)"
require_cmd mypy "the tool venv provides it (scripts/requirements.txt)"
ensure_apt shellcheck

log "ruff check"
ruff check --config "$TWIN/pyproject.toml" "$TWIN" || die "ruff check found problems"
log "ruff format --check"
ruff format --check --config "$TWIN/pyproject.toml" "$TWIN" || die "files need 'ruff format' (run it in hcloud_twin/)"
log "mypy --strict (src/hcloud_twin)"
(cd "$TWIN" && mypy) || die "mypy --strict found problems"
log "shellcheck hcloud_twin/ci/*.sh"
shellcheck -x "$TWIN"/ci/*.sh || die "shellcheck found problems"
ok "hcloud_twin lint passed"
