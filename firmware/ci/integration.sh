#!/usr/bin/env bash
# Firmware integration stage: the host-built C client against a live Python gateway on loopback.
set -euo pipefail
# shellcheck source=../../scripts/lib/common.sh
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
help_from_header "$@"

ensure_apt cmake
bash "$REPO_ROOT/firmware/tests/interop/run_interop.sh" --frames "${NGD_INTEROP_FRAMES:-10000}"
