#!/usr/bin/env bash
# Gateway lint stage: ruff (lint + format check) over the package, tests, bench and tools;
# mypy --strict over src; go vet and gofmt over the benchmark's load generator; shellcheck over
# these hooks.
set -euo pipefail
# shellcheck source=/dev/null  # common.sh lives at the repository root, checked on its own
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"

usage() { echo "Usage: ${0##*/}   (run by ./scripts/test.sh --component gateway --stage lint)"; }
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

GW="$REPO_ROOT/gateway"
require_cmd ruff "the tool venv provides it (gateway[dev])"
require_cmd mypy "the tool venv provides it (gateway[dev])"
ensure_apt shellcheck

# from gateway/, so the paths in pyproject.toml's ruff settings resolve as written
cd "$GW"
log "ruff check"
ruff check . || die "ruff check found problems"
log "ruff format --check"
ruff format --check . || die "files need 'ruff format' (run it in gateway/)"
log "mypy --strict (src)"
mypy || die "mypy --strict found problems"
# The benchmark's load generator (Go): the module cache may be cold on a new machine, so fetch
# first (idempotent; -x prints every fetch, nothing is printed when the cache has them).
GO="$(command -v go || echo /usr/local/go/bin/go)"
[[ -x "$GO" ]] || die "Go not found (PATH or /usr/local/go/bin): gateway/bench/loadgen needs it"
log "go mod download (gateway/bench/loadgen)"
(cd bench/loadgen && "$GO" mod download -x) || die "go mod download failed for gateway/bench/loadgen"
log "go vet + gofmt -l (gateway/bench/loadgen)"
(cd bench/loadgen && "$GO" vet ./...) || die "go vet found problems in gateway/bench/loadgen"
unformatted="$("$("$GO" env GOROOT)/bin/gofmt" -l bench/loadgen)" || die "gofmt failed"
[[ -z "$unformatted" ]] || die "files need 'gofmt -w' (in gateway/bench/loadgen): $unformatted"
log "shellcheck gateway/ci/*.sh gateway/tools/*.sh"
shellcheck -x "$GW"/ci/*.sh "$GW"/tools/*.sh || die "shellcheck found problems"
ok "gateway lint passed"
