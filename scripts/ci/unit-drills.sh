#!/usr/bin/env bash
# Unit hook of the failover drills: the sink count, the VIP timeline, the targets and drill.sh's
# command line (bad input fails with a message naming the option). No lab needed.
set -euo pipefail
source "$REPO_ROOT/scripts/lib/common.sh"
cd "$REPO_ROOT"
pytest -q -p no:cacheprovider scripts/drills/tests || die "drills unit tests failed"
