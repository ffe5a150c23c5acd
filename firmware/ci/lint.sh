#!/usr/bin/env bash
# Firmware lint: strict-warning builds (gcc and clang, -Werror), cppcheck on the library, and
# ShellCheck on the firmware scripts.
set -euo pipefail
# shellcheck source=../../scripts/lib/common.sh
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
help_from_header "$@"

ensure_apt cmake clang cppcheck shellcheck libmbedtls-dev
FW="$REPO_ROOT/firmware"
BUILD="$NGD_CHECKOUT_CACHE/firmware-build/lint"

for cc in gcc clang; do
  log "strict build with $cc (-Wall -Wextra -Wpedantic -Wconversion ... -Werror)"
  cmake -S "$FW" -B "$BUILD-$cc" -DCMAKE_C_COMPILER="$cc" -DNGD_WERROR=ON -DCMAKE_BUILD_TYPE=Release \
    >/dev/null || die "cmake configure failed ($cc)"
  cmake --build "$BUILD-$cc" -j2 >"$BUILD-$cc.log" 2>&1 || { cat "$BUILD-$cc.log" >&2; die "strict build failed with $cc"; }
done

log "cppcheck on the library, the portable example code and the interop client"
cppcheck --quiet --error-exitcode=1 --std=c99 --enable=warning,portability,performance \
  --inline-suppr -I "$FW/include" -I "$FW/port/builtin" -I "$FW/examples/common" \
  -I "$FW/examples/asic" -I "$FW/examples/esp-idf/main" -I "$FW/examples/stm32/Core/Inc" \
  "$FW/src" "$FW/port/builtin" "$FW/examples/common" "$FW/examples/asic" \
  "$FW/examples/esp-idf/main/pressure_sensor.c" "$FW/examples/stm32/Core/Src/gas_sensor.c" \
  "$FW/tests/interop" || die "cppcheck found problems"

log "shellcheck on firmware scripts"
shellcheck -x --source-path=SCRIPTDIR "$FW"/ci/*.sh "$FW"/scripts/*.sh "$FW"/tests/interop/*.sh || die "shellcheck found problems"

log "ruff + mypy on firmware/scripts"
require_cmd ruff "the tool venv provides it (scripts/test.sh activates it)"
ruff check --quiet --cache-dir "$NGD_CACHE/ruff-firmware" "$FW/scripts" || die "ruff found problems in firmware/scripts"
ruff format --check --quiet --cache-dir "$NGD_CACHE/ruff-firmware" "$FW/scripts" || die "firmware/scripts is not ruff-formatted (ruff format firmware/scripts)"
if command -v mypy >/dev/null 2>&1; then
  mypy --strict --cache-dir "$NGD_CACHE/mypy-firmware" "$FW/scripts/gen_vectors_header.py" >/dev/null || die "mypy --strict fails on gen_vectors_header.py"
fi
ok "firmware lint passed"
