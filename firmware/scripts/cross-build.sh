#!/usr/bin/env bash
# Cross-compiles the firmware library for Cortex-M4 (arm-none-eabi-gcc) and RV32IMC
# (riscv64-unknown-elf-gcc, the ESP32-C3 class), links the bare ASIC example into a complete
# image for each, and prints .text/.data/.bss of the core and of the crypto port separately.
set -euo pipefail
# shellcheck source=../../scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"

FW="$REPO_ROOT/firmware"
OUT="${NGD_CHECKOUT_CACHE}/firmware-cross"
FLASH_BUDGET=6144 # core .text + .data (initialisers live in flash)
RAM_BUDGET=512    # core .data + .bss

usage() {
  cat <<USAGE
Usage: ${0##*/} [--out DIR] [--no-budget]

Cross builds of firmware/ with -Os for:
  arm    arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard
  riscv  riscv64-unknown-elf-gcc -march=rv32imc -mabi=ilp32
Prints the size report and fails when the core exceeds its budget
(flash ${FLASH_BUDGET} B = .text+.data, static RAM ${RAM_BUDGET} B = .data+.bss).

  --out DIR     build directory (default: \$NGD_CHECKOUT_CACHE/firmware-cross)
  --no-budget   report only, never fail on the budget
  -h, --help    this help
USAGE
}

check_budget=1
while (($#)); do
  case "$1" in
    --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
    --no-budget) check_budget=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

require_cmd arm-none-eabi-gcc "install the Debian package gcc-arm-none-eabi"
require_cmd riscv64-unknown-elf-gcc "install the Debian package gcc-riscv64-unknown-elf"

CORE_SRC=(src/ngd_frame.c src/ngd_cbor.c src/ngd_client.c)
CRYPTO_SRC=(port/builtin/ngd_sha256.c port/builtin/ngd_hmac_builtin.c)
WARN=(-std=c99 -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Werror)
COMMON=(-Os -ffunction-sections -fdata-sections -fstack-usage -I"$FW/include")

# mbedTLS port: compiled (not linked) against Debian's mbedTLS headers, isolated from /usr/include.
MBEDTLS_INC="$OUT/mbedtls-include"
mkdir -p "$MBEDTLS_INC"
[[ -d /usr/include/mbedtls ]] || die "mbedTLS headers missing: install libmbedtls-dev"
[[ -f /usr/include/lwip/lwip/sockets.h ]] || die "lwIP headers missing: install liblwip-dev"
ln -sfn /usr/include/mbedtls "$MBEDTLS_INC/mbedtls"

# sum_sizes TOOLPREFIX FILE...: prints "text data bss" summed over the files.
sum_sizes() {
  local prefix=$1; shift
  "${prefix}size" "$@" | awk 'NR > 1 { t += $1; d += $2; b += $3 } END { print t, d, b }'
}

# stack_of DIR FUNC...: sum of the static frames (-fstack-usage) along one call chain; a function
# the compiler inlined has no entry of its own and counts 0 (its caller's frame includes it).
stack_of() {
  local dir=$1 total=0 fn n; shift
  for fn in "$@"; do
    n=$(cat "$dir"/*.su | awk -F'\t' -v fn="$fn" '{ split($1, p, ":"); if (p[length(p)] == fn) print $2 }' | sort -n | tail -1)
    total=$((total + ${n:-0}))
  done
  echo "$total"
}

failures=0
report=()
for target in arm riscv; do
  case $target in
    arm)
      prefix=arm-none-eabi-
      arch=(-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard)
      link=(--specs=nano.specs --specs=nosys.specs)
      label="Cortex-M4 (arm-none-eabi-gcc $(arm-none-eabi-gcc -dumpversion))"
      ;;
    riscv)
      prefix=riscv64-unknown-elf-
      arch=(-march=rv32imc -mabi=ilp32 --specs=picolibc.specs) # picolibc: string.h, stdint.h
      # picolibc's linker script needs a memory map: an ESP32-C3-like 4 MB flash / 400 KB RAM.
      # shellcheck disable=SC2054 # commas belong to -Wl, options
      link=(-Wl,--defsym=__flash=0x42000000 -Wl,--defsym=__flash_size=0x400000
            -Wl,--defsym=__ram=0x3FC80000 -Wl,--defsym=__ram_size=0x60000 -Wl,--defsym=__stack_size=0x1000)
      label="RV32IMC (riscv64-unknown-elf-gcc $(riscv64-unknown-elf-gcc -dumpversion))"
      ;;
  esac
  dir="$OUT/$target"
  rm -rf "$dir"
  mkdir -p "$dir"
  cc="${prefix}gcc"
  core_objs=() crypto_objs=()
  for src in "${CORE_SRC[@]}"; do
    obj="$dir/$(basename "${src%.c}").o"
    "$cc" "${arch[@]}" "${COMMON[@]}" "${WARN[@]}" -c "$FW/$src" -o "$obj" || die "$target: $src does not compile"
    core_objs+=("$obj")
  done
  for src in "${CRYPTO_SRC[@]}"; do
    obj="$dir/$(basename "${src%.c}").o"
    "$cc" "${arch[@]}" "${COMMON[@]}" "${WARN[@]}" -I"$FW/port/builtin" -c "$FW/$src" -o "$obj" \
      || die "$target: $src does not compile"
    crypto_objs+=("$obj")
  done
  "$cc" "${arch[@]}" "${COMMON[@]}" "${WARN[@]}" -isystem "$MBEDTLS_INC" \
    -c "$FW/port/mbedtls/ngd_hmac_mbedtls.c" -o "$dir/ngd_hmac_mbedtls.o" \
    || die "$target: the mbedTLS port does not compile"
  # Portable parts of the ESP-IDF and STM32 examples (the SDK-specific files need the SDKs).
  for src in examples/esp-idf/main/pressure_sensor.c examples/stm32/Core/Src/gas_sensor.c; do
    "$cc" "${arch[@]}" "${COMMON[@]}" "${WARN[@]}" -I"$FW/$(dirname "$src")" -I"$FW/$(dirname "$src")/../Inc" \
      -c "$FW/$src" -o "$dir/$(basename "${src%.c}").o" || die "$target: $src does not compile"
  done
  # The socket transport's lwIP path (ESP-IDF / STM32 LwIP), against Debian's lwIP 2.1 headers and a
  # CubeMX-like lwipopts.h (tests/lwip-config: compile check only, nothing is linked).
  "$cc" "${arch[@]}" "${COMMON[@]}" "${WARN[@]}" -DNGD_BSD_LWIP -I"$FW/examples/common" \
    -I"$FW/tests/lwip-config" -isystem /usr/include/lwip -c "$FW/examples/common/ngd_bsd_transport.c" \
    -o "$dir/ngd_bsd_transport_lwip.o" || die "$target: ngd_bsd_transport.c (lwIP) does not compile"
  # sizeof(ngd_client_t) with the default configuration: the RAM the application allocates.
  printf '#include "nanogridata/ngd_client.h"\nngd_client_t ngd_probe_client;\n' >"$dir/probe.c"
  "$cc" "${arch[@]}" "${COMMON[@]}" -c "$dir/probe.c" -o "$dir/probe.o"
  client_bytes=$((16#$("${prefix}nm" -S "$dir/probe.o" | awk '/ngd_probe_client/ { print $2 }')))
  # The bare ASIC example, linked into a full image with dead-code elimination.
  "$cc" "${arch[@]}" "${COMMON[@]}" "${WARN[@]}" -I"$FW/examples/asic" \
    "$FW/examples/asic/main.c" "$FW/examples/asic/asic_port_template.c" \
    "${core_objs[@]}" "${crypto_objs[@]}" "${link[@]}" -Wl,--gc-sections \
    -Wl,-Map="$dir/asic_example.map" -o "$dir/asic_example.elf" || die "$target: the ASIC example does not link"

  stack_send=$(stack_of "$dir" ngd_client_queue ngd_frame_build ngd_hmac_sha256 ngd_sha256_update compress)
  stack_ack=$(stack_of "$dir" ngd_client_on_data ngd_ack_parse ngd_hmac_sha256 ngd_sha256_update compress)
  read -r ct cd cb < <(sum_sizes "$prefix" "${core_objs[@]}")
  read -r lt ld lb < <(sum_sizes "$prefix" "$dir/ngd_bsd_transport_lwip.o")
  read -r kt kd kb < <(sum_sizes "$prefix" "${crypto_objs[@]}")
  read -r mt md mb < <(sum_sizes "$prefix" "$dir/ngd_hmac_mbedtls.o")
  read -r et ed eb < <(sum_sizes "$prefix" "$dir/asic_example.elf")
  report+=("" "$label"
    "$(printf '  %-40s %7s %6s %6s' 'component' '.text' '.data' '.bss')"
    "$(printf '  %-40s %7d %6d %6d' 'core (frame+cbor+client)' "$ct" "$cd" "$cb")"
    "$(printf '  %-40s %7d %6d %6d' 'crypto: builtin sha256+hmac' "$kt" "$kd" "$kb")"
    "$(printf '  %-40s %7d %6d %6d' 'crypto: mbedTLS glue (+libmbedcrypto)' "$mt" "$md" "$mb")"
    "$(printf '  %-40s %7d %6d %6d' 'ASIC example image (all, linked)' "$et" "$ed" "$eb")"
    "$(printf '  %-40s %7d %6d %6d' 'socket transport, lwIP (not in core)' "$lt" "$ld" "$lb")"
    "$(printf '  %-40s %7d bytes (default NGD_CLIENT_RING_SLOTS / _MAX_PAYLOAD)' 'sizeof(ngd_client_t)' "$client_bytes")"
    "$(printf '  %-40s %7d bytes queue->build->HMAC, %d bytes on_data->parse->HMAC' 'worst stack (builtin crypto)' "$stack_send" "$stack_ack")")
  if ((check_budget)); then
    if ((ct + cd > FLASH_BUDGET)); then
      warn "$target: core flash $((ct + cd)) B exceeds the budget of $FLASH_BUDGET B"; failures=$((failures + 1))
    fi
    if ((cd + cb > RAM_BUDGET)); then
      warn "$target: core static RAM $((cd + cb)) B exceeds the budget of $RAM_BUDGET B"; failures=$((failures + 1))
    fi
  fi
done

banner "firmware size report (-Os; objects in $OUT)"
printf '%s\n' "${report[@]}"
printf '\nBudget: core flash (.text+.data) <= %d B, core static RAM (.data+.bss) <= %d B.\n' \
  "$FLASH_BUDGET" "$RAM_BUDGET"
printf 'The client state (sizeof(ngd_client_t)) is allocated by the application, not the library.\n'
((failures == 0)) || die "firmware size budget exceeded ($failures)"
ok "cross builds passed, core within budget"
