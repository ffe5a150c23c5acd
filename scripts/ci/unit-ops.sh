#!/usr/bin/env bash
# Unit hook of the operator scripts (deploy/rollback/backup/restore): command lines, preflight
# refusals (dirty input, missing token/vault, unfilled tfvars, critical alert, production
# confirmation), the tfvars reaching `tofu plan` (a fake tofu), checksum refusal of restore,
# backup.sh's node and store modes (spool snapshot under write load, secrets left out or
# encrypted, retention, freshness metrics), git describe -> PEP 440, a reused --version refused
# for other sources, rollback's target from the release history, no diff of secret-bearing tasks,
# production's alert receivers (site.yml's check, run locally), production refused without a real
# sink, the probe's sink check (verify.yml against local "gateways"), the archive's rotation by
# the real logrotate under the real jsonl sink, the wheelhouse built for another platform than
# this machine's (pip download from the package index), the wait for new hosts
# (scripts/ops/wait_hosts.py) against Debian's sshd on loopback with host keys from known_hosts,
# first use, a changed key, cloud-init states. No Docker, no cloud. Also lints scripts/ops Python.
set -euo pipefail
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
help_from_header "$@"
cd "$REPO_ROOT"
ensure_apt logrotate openssh-client
py=(scripts/ops/*.py scripts/ops/tests/*.py)
# settings: the root ruff.toml
ruff format --check --quiet "${py[@]}" || die "ruff format: run ruff format scripts/ops"
ruff check --quiet "${py[@]}" || die "ruff found problems in scripts/ops (above)"
mypy --strict --python-version 3.11 --no-error-summary --ignore-missing-imports \
  --cache-dir "$NGD_CACHE/mypy-ops" "${py[@]}" || die "mypy found problems in scripts/ops (above)"
ensure_apt age  # backup.sh encrypts secrets with it (test_backup_node.py)
pytest -q -p no:cacheprovider scripts/ops/tests || die "operator script unit tests failed"
