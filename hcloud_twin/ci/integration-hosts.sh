#!/usr/bin/env bash
# hcloud_twin integration, host backend: servers created through the API become lab containers
# (lab "twin", networks 172.30.70.0/24 private and 172.30.71.0/24 public); SSH with the API's key,
# the cloud firewall locking out a wrong CIDR, a floating IP reaching only its server. Builds the
# lab image and the twin's host image (lab image + openssh-server + nftables) once, then cached.
set -euo pipefail
# shellcheck source=/dev/null  # common.sh lives at the repository root, checked on its own
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"

usage() { echo "Usage: ${0##*/}   (run by ./scripts/test.sh --component hcloud_twin --stage integration)"; }
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

require_cmd ssh "install openssh-client"
ensure_docker
basetemp="$(mktemp -d)"
trap 'rm -rf "$basetemp"' EXIT
cd "$REPO_ROOT/hcloud_twin"
log "pytest tests/integration/test_hosts.py (docker host backend)"
timeout 1800 python -m pytest --basetemp "$basetemp" -m hosts --durations=3 tests/integration \
  || die "hcloud_twin host backend tests failed (or timed out)"
ok "hcloud_twin host backend tests passed"
