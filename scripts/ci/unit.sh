#!/usr/bin/env bash
# Unit hook of the scripts component: the apt mirror reader and lab.sh's command line (bad
# input must fail early with a message naming the option and the fix). No Docker needed.
set -euo pipefail
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
help_from_header "$@"
cd "$REPO_ROOT"
pytest -q -p no:cacheprovider scripts/tests || die "scripts unit tests failed"
