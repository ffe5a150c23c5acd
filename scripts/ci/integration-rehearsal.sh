#!/usr/bin/env bash
# Integration hook: the production rehearsal (scripts/rehearsal.sh): ./scripts/deploy.sh production
# whole against the local Hetzner Cloud twin whose servers are lab containers (lab "reh",
# 172.30.74.0/24 private, 172.30.75.0/24 public; NGD_REHEARSAL_* move them), killed at a random
# moment and run again (it must converge), then a re-run that changes nothing, every runbook command
# on the production hosts over SSH, one drill in production mode with --yes, a real alert delivered
# to the webhook receiver standing for the pager (firing and resolved, with its runbook link),
# disaster recovery (backup.sh, a gateway's server lost and replaced by OpenTofu, deploy.sh,
# restore.sh: the RTO; scripts/ops/rehearsal_dr.sh), then tofu destroy to an empty twin. Prints
# per-step timings.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
help_from_header "$@"
timeout 3600 "$REPO_ROOT/scripts/rehearsal.sh" --clean || die "the production rehearsal failed (above), or timed out"
