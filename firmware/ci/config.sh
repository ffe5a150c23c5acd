#!/usr/bin/env bash
# Firmware config stage: cross builds (Cortex-M4 and RV32IMC, -Os) with the size report and the
# budget check (core <= 6 KB flash, <= 512 B static RAM).
set -euo pipefail
# shellcheck source=../../scripts/lib/common.sh
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
help_from_header "$@"

ensure_apt gcc-arm-none-eabi libnewlib-arm-none-eabi gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf libmbedtls-dev liblwip-dev
bash "$REPO_ROOT/firmware/scripts/cross-build.sh"
