#!/usr/bin/env bash
# Unit hook of the scripts component: the apt mirror reader and lab.sh's command line (bad
# input must fail early with a message naming the option and the fix). No Docker needed.
set -euo pipefail
source "$REPO_ROOT/scripts/lib/common.sh"
cd "$REPO_ROOT"
pytest -q -p no:cacheprovider scripts/tests || die "scripts unit tests failed"
