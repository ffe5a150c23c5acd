#!/usr/bin/env bash
# Unit hook of the failover drills: the sink count, the VIP timeline, the targets and drill.sh's
# command line (bad input fails with a message naming the option). No lab needed.
set -euo pipefail
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
help_from_header "$@"
cd "$REPO_ROOT"
pytest -q -p no:cacheprovider scripts/drills/tests || die "drills unit tests failed"
