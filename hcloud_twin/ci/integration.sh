#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR/../..
# hcloud_twin integration stage: the pinned OpenTofu and hcloud provider (terraform/tools/
# install-tofu.sh: built once and cached, no registry) run init/plan/apply/plan/destroy of
# terraform/environments/production against the twin; the twin must be empty afterwards.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
# shellcheck source=terraform/ci/lib.sh
source "$REPO_ROOT/terraform/ci/lib.sh"

usage() { echo "Usage: ${0##*/}   (run by ./scripts/test.sh --component hcloud_twin --stage integration)"; }
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

require_cmd ssh-keygen "install openssh-client"
tofu_env
# The provider must never reach the real API from here: the test sets HCLOUD_ENDPOINT to the twin,
# and nothing inherited may point elsewhere.
unset HCLOUD_TOKEN HCLOUD_ENDPOINT
basetemp="$(mktemp -d)"
trap 'rm -rf "$basetemp"' EXIT
cd "$REPO_ROOT/hcloud_twin"
log "pytest tests/integration ($(tofu version | head -1), hcloud provider from the local mirror)"
timeout 900 python -m pytest -s --basetemp "$basetemp" -m "integration and not hosts" tests/integration \
  || die "hcloud_twin integration tests failed (or timed out)"
ok "hcloud_twin integration tests passed"
