# shellcheck shell=bash
# Shared helpers for every script in this repository. Source it; do not run it.
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# Repository root, whichever script sourced us.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export REPO_ROOT
# Cache for tool venvs, built binaries and images' recipes: survives fresh clones on one machine.
NGD_CACHE="${NGD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nanogridata}"
export NGD_CACHE
mkdir -p "$NGD_CACHE"

# A build directory under the cache that belongs to this checkout: build systems that record
# their source path (CMake) refuse a cache made from another clone.
NGD_CHECKOUT_CACHE="$NGD_CACHE/checkouts/$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)"
export NGD_CHECKOUT_CACHE

# Colour only on a TTY (and never when NO_COLOR is set).
if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
  C_RED=$'\e[31m' C_GRN=$'\e[32m' C_YEL=$'\e[33m' C_BLD=$'\e[1m' C_OFF=$'\e[0m'
else
  C_RED='' C_GRN='' C_YEL='' C_BLD='' C_OFF=''
fi

_NGD_T0=${_NGD_T0:-$SECONDS}
elapsed() { printf '%4ds' "$((SECONDS - _NGD_T0))"; }
log()  { printf '%s [%s] %s\n' "$(elapsed)" "${0##*/}" "$*"; }
ok()   { printf '%s [%s] %s%s%s\n' "$(elapsed)" "${0##*/}" "$C_GRN" "$*" "$C_OFF"; }
warn() { printf '%s [%s] %sWARNING:%s %s\n' "$(elapsed)" "${0##*/}" "$C_YEL" "$C_OFF" "$*" >&2; }
die()  { printf '%s [%s] %sERROR:%s %s\n' "$(elapsed)" "${0##*/}" "$C_RED" "$C_OFF" "$*" >&2; exit 1; }
banner() { printf '\n%s==== %s ====%s\n' "$C_BLD" "$*" "$C_OFF"; }

# `help_from_header "$@"`: on -h/--help, print the calling script's header comment (what it does
# and how it is run) and exit 0; otherwise do nothing. For the stage hooks, whose header is the doc.
help_from_header() {
  [[ "${1:-}" == -h || "${1:-}" == --help ]] || return 0
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 0
}

# Run a command as root: directly when we are root, through sudo otherwise.
as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# ensure_apt PKG...: install the Debian packages that are missing; idempotent, quiet when present.
_NGD_APT_UPDATED=""
ensure_apt() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing Debian packages: ${missing[*]}"
  # Several hooks may install at once on one machine. DPkg::Lock::Timeout makes apt wait for
  # dpkg's lock, but `apt-get update` fails at once on the package lists' lock: our own installs
  # take turns on a lock of ours.
  (
    flock -w 900 9 || die "timed out waiting for another apt-get of ours"
    if [[ -z "$_NGD_APT_UPDATED" ]]; then
      as_root apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null || die "apt-get update failed"
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
  ) 9>"$NGD_CACHE/.apt.lock" || die "could not install ${missing[*]} (above)"
  _NGD_APT_UPDATED=1
}

# require_cmd CMD [HINT]: fail with a clear reason when a command is missing.
require_cmd() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found${2:+: $2}"; }

# confirm PROMPT EXPECTED: typed confirmation for destructive actions; ASSUME_YES=1 skips it.
confirm() {
  [[ "${ASSUME_YES:-0}" == 1 ]] && return 0
  [[ -t 0 ]] || die "confirmation needed ('$2'); re-run with --yes for automation"
  local answer
  read -r -p "$1 Type '$2' to continue: " answer
  [[ "$answer" == "$2" ]] || die "not confirmed"
}

# ensure_docker: make sure a Docker engine answers. On a machine without one, install Debian's
# docker.io and start dockerd in the background (hosts here have no systemd), then wait for it.
# Prefers Debian's client /usr/bin/docker (same version as the engine) through $DOCKER; any
# newer client on PATH also works because the CLI negotiates the API version with the engine.
DOCKER="${DOCKER:-}"
ensure_docker() {
  if [[ -z "$DOCKER" ]]; then
    if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
  fi
  export DOCKER
  "$DOCKER" info >/dev/null 2>&1 && return 0
  ensure_apt docker.io
  DOCKER=/usr/bin/docker
  local log_file="${NGD_DOCKERD_LOG:-/var/log/dockerd.log}"
  # One starter at a time: parallel hooks must not race two dockerd onto one socket.
  (
    flock -w 120 9 || die "timed out waiting for the dockerd start lock"
    if ! "$DOCKER" info >/dev/null 2>&1 && ! pgrep -x dockerd >/dev/null; then
      log "starting dockerd in the background (log: $log_file)"
      as_root setsid nohup dockerd >>"$log_file" 2>&1 </dev/null &
    fi
  ) 9>"$NGD_CACHE/.dockerd.lock"
  local i
  for ((i = 0; i < 90; i++)); do
    "$DOCKER" info >/dev/null 2>&1 && return 0
    sleep 1
  done
  die "the Docker engine does not answer after 90 s; see $log_file"
}
