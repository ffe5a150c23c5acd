#!/usr/bin/env bash
# hcloud_twin unit stage: the twin's HTTP answers and the unmodified hcloud library against it
# (pytest, integration-marked tests excluded: ci/integration.sh runs those with tofu).
set -euo pipefail
# shellcheck source=/dev/null  # common.sh lives at the repository root, checked on its own
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"

usage() { echo "Usage: ${0##*/}   (run by ./scripts/test.sh --component hcloud_twin --stage unit)"; }
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

require_cmd ssh-keygen "install openssh-client"
# nft and unshare: the host backend's rulesets are checked by nft itself, in a namespace of their own.
ensure_apt nftables util-linux
basetemp="$(mktemp -d)"
trap 'rm -rf "$basetemp"' EXIT
cd "$REPO_ROOT/hcloud_twin"
log "pytest (hcloud $(python -c 'import hcloud._version as v; print(v.__version__)'))"
timeout 600 python -m pytest --basetemp "$basetemp" -m "not integration" --durations=5 \
  || die "hcloud_twin unit tests failed (or timed out)"
ok "hcloud_twin unit tests passed"
