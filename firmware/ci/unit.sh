#!/usr/bin/env bash
# Firmware unit stage: host build + CTest (both crypto backends, shared protocol vectors), the same
# under AddressSanitizer + UBSan, then a short bounded libFuzzer run of the ACK parser.
set -euo pipefail
# shellcheck source=../../scripts/lib/common.sh
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
help_from_header "$@"

ensure_apt cmake libmbedtls-dev clang libclang-rt-14-dev
FW="$REPO_ROOT/firmware"
BUILD="$NGD_CHECKOUT_CACHE/firmware-build"
FUZZ_SECONDS="${NGD_FUZZ_SECONDS:-25}"
[[ -f "$REPO_ROOT/docs/protocol-vectors.json" ]] || die "docs/protocol-vectors.json is missing: the firmware must reproduce the shared vectors"

run_ctest() { # run_ctest NAME BUILD_DIR CMAKE_ARGS...
  local name=$1 dir=$2; shift 2
  log "$name: configure + build"
  cmake -S "$FW" -B "$dir" "$@" >/dev/null || die "$name: cmake configure failed"
  cmake --build "$dir" -j2 >"$dir.log" 2>&1 || { cat "$dir.log" >&2; die "$name: build failed"; }
  log "$name: ctest"
  ctest --test-dir "$dir" --output-on-failure -j2 >"$dir.ctest.log" 2>&1 \
    || { cat "$dir.ctest.log" >&2; die "$name: ctest failed"; }
  grep -E 'tests passed' "$dir.ctest.log" | sed "s/^/  $name: /"
}

run_ctest host "$BUILD/host" -DCMAKE_BUILD_TYPE=Debug -DNGD_WERROR=ON
run_ctest asan+ubsan "$BUILD/sanitize" -DCMAKE_BUILD_TYPE=Debug -DNGD_SANITIZE=ON

log "libFuzzer: ACK parser + client stream, ${FUZZ_SECONDS}s"
cmake -S "$FW" -B "$BUILD/fuzz" -DCMAKE_C_COMPILER=clang -DNGD_FUZZ=ON -DNGD_BUILD_TESTS=OFF \
  -DNGD_WITH_MBEDTLS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || die "fuzz: cmake configure failed"
cmake --build "$BUILD/fuzz" -j2 >"$BUILD/fuzz.log" 2>&1 || { cat "$BUILD/fuzz.log" >&2; die "fuzz: build failed"; }
corpus="$NGD_CACHE/firmware-fuzz-corpus"
mkdir -p "$corpus"
cp -n "$FW"/fuzz/seeds/* "$corpus"/ 2>/dev/null || true
artifacts="$BUILD/fuzz-artifacts"
mkdir -p "$artifacts"
if ! timeout $((FUZZ_SECONDS + 30)) "$BUILD/fuzz/fuzz/fuzz_ack" -max_total_time="$FUZZ_SECONDS" -max_len=512 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$BUILD/fuzz.run.log" 2>&1; then
  tail -40 "$BUILD/fuzz.run.log" >&2
  die "fuzz_ack found a failure (artifacts in $artifacts; replay with fuzz_ack_replay FILE)"
fi
runs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$BUILD/fuzz.run.log")
cov=$(grep -oE 'cov: [0-9]+' "$BUILD/fuzz.run.log" | tail -1)
ok "firmware unit passed (fuzz: ${runs:-?} executions in ${FUZZ_SECONDS}s, ${cov:-cov: ?}, corpus $(find "$corpus" -type f | wc -l) inputs)"
