#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR/../..
# Lint stage of terraform/: formatting of every .tf/.tftest.hcl, the bridge's Python, the shell.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
# shellcheck source=terraform/ci/lib.sh
source "$REPO_ROOT/terraform/ci/lib.sh"
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  echo "Usage: ${0##*/}   (tofu fmt -check, ruff, mypy --strict, shellcheck on terraform/)"; exit 0
fi
cd "$REPO_ROOT"
tofu_env

log "tofu fmt -check -recursive terraform"
tofu fmt -check -recursive -diff terraform || die "tofu fmt found unformatted files: run 'tofu fmt -recursive terraform'"

python_files=(terraform/inventory_bridge.py terraform/tools/adopt.py terraform/tests terraform/checkov_checks)
log "ruff on the inventory bridge, its tests and the checkov policies; mypy --strict on the first two"
ruff check "${python_files[@]}" || die "ruff check failed"
ruff format --check "${python_files[@]}" || die "ruff format: run 'ruff format ${python_files[*]}'"
# checkov (imported by checkov_checks) lives in its own venv, not here: mypy skips those files.
MYPYPATH=terraform:terraform/tools:hcloud_twin/src mypy --strict terraform/inventory_bridge.py terraform/tools/adopt.py terraform/tests || die "mypy --strict failed"

ensure_apt shellcheck
log "shellcheck terraform/tools terraform/ci"
shellcheck -x terraform/tools/*.sh terraform/ci/*.sh || die "shellcheck failed"
ok "terraform lint passed"
