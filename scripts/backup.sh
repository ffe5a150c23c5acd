#!/usr/bin/env bash
# Back up what cannot be rebuilt from git, as checksummed archives:
#   gateways:   /etc/nanogridata (config and secrets as deployed), /var/lib/nanogridata (replay
#               state, any non-empty spool)
#   monitoring: Prometheus TSDB snapshot (admin API), Alertmanager silences (API v2)
#   collectors: VictoriaMetrics snapshot (/snapshot/create)
# Two modes: `backup.sh ENV` on the operator's machine runs the node mode on every server through
# Ansible and fetches the results; `backup.sh --node` runs on one server (what the backup role's
# systemd timer runs, with NGD_BACKUP_DIR set). The node mode needs nothing from the repository.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: ${0##*/} ENV [--out DIR] [--age-recipient R | --gpg-recipient R]
       ${0##*/} --node [--out DIR] [--vm-port P] [--prometheus-port P] [--alertmanager-port P]

ENV mode (lab, staging, production): every server's state into DIR (default
\${NGD_BACKUP_ROOT:-~/.local/share/nanogridata/backups}/ENV/<UTC time>/), one folder per host, each with a SHA256SUMS file; with a recipient the
whole backup becomes one encrypted archive (age or GPG) plus its .sha256.
--node mode: this server's state into DIR (default \$NGD_BACKUP_DIR/<UTC time>, else
/var/backups/nanogridata/<UTC time>). A part whose service is not on this server is skipped.

Restore with scripts/restore.sh ENV BACKUP (it checks the checksums first).
USAGE
}

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
# Before either mode: on a server (no repository beside the script) --help must still answer.
case "${1:-}" in -h|--help) usage; exit 0 ;; esac

# --- node mode: self-contained (copied to the servers; no repository there) ---------------------
node_log() { printf '%s [backup %s] %s\n' "$(date -u +%H:%M:%S)" "$(hostname)" "$*"; }
node_die() { node_log "ERROR: $*" >&2; exit 1; }

node_backup() {
  local out="$1" vm_port="$2" prom_port="$3" am_port="$4" parts=() skipped=()
  mkdir -p "$out"
  chmod 700 "$out"
  if [[ -d /etc/nanogridata || -d /var/lib/nanogridata ]]; then
    local paths=()
    for p in /etc/nanogridata /var/lib/nanogridata; do [[ -d "$p" ]] && paths+=("${p#/}"); done
    # The replay state is written while the gateway runs: tar reads a file that changes as
    # exit code 1 ("file changed as we read it"); the copy is still usable, a later frame is newer.
    tar -C / -czf "$out/gateway.tar.gz" "${paths[@]}" || [[ $? == 1 ]] || node_die "tar of the gateway state failed"
    parts+=(gateway)
  fi
  if [[ -n "$prom_port" ]] && curl -fsS -o /dev/null "http://127.0.0.1:$prom_port/-/ready" 2>/dev/null; then
    local resp name dir
    resp=$(curl -sS -XPOST "http://127.0.0.1:$prom_port/api/v1/admin/tsdb/snapshot" || true)
    if [[ "$resp" == *'"admin APIs disabled"'* ]]; then
      # Not fatal: the other parts are still worth having. Said loudly, and recorded in MANIFEST.
      node_log "WARNING: Prometheus TSDB NOT backed up: its admin API is disabled (start it with --web.enable-admin-api)" >&2
      skipped+=("prometheus(admin-api-disabled)")
    else
      name=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["name"])' <<<"$resp") \
        || node_die "Prometheus snapshot failed: $resp"
      dir=$(find /var/lib/prometheus -maxdepth 3 -type d -path "*/snapshots/$name" | head -1)
      [[ -n "$dir" ]] || node_die "Prometheus snapshot $name not found under /var/lib/prometheus"
      tar -C "$dir" -czf "$out/prometheus-snapshot.tar.gz" .
      rm -rf "$dir"
      parts+=(prometheus)
    fi
  fi
  if [[ -n "$am_port" ]] && curl -fsS -o /dev/null "http://127.0.0.1:$am_port/-/ready" 2>/dev/null; then
    curl -fsS "http://127.0.0.1:$am_port/api/v2/silences" >"$out/alertmanager-silences.json" \
      || node_die "could not read Alertmanager's silences"
    parts+=(alertmanager)
  fi
  if [[ -n "$vm_port" ]] && curl -fsS -o /dev/null "http://127.0.0.1:$vm_port/health" 2>/dev/null; then
    local resp name data_dir
    resp=$(curl -fsS "http://127.0.0.1:$vm_port/snapshot/create") || node_die "VictoriaMetrics refused a snapshot"
    name=$(python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["status"]=="ok", d; print(d["snapshot"])' <<<"$resp") \
      || node_die "VictoriaMetrics snapshot failed: $resp"
    data_dir=$(sed -nE 's/.*-storageDataPath=([^ "]+).*/\1/p' /etc/default/victoria-metrics 2>/dev/null | head -1)
    data_dir=${data_dir:-/var/lib/victoria-metrics}
    [[ -d "$data_dir/snapshots/$name" ]] || node_die "VictoriaMetrics snapshot $name not in $data_dir/snapshots"
    # A snapshot is a tree of symlinks into the data directory's hard-linked parts: -h follows them.
    tar -C "$data_dir/snapshots/$name" -chzf "$out/victoriametrics-snapshot.tar.gz" .
    curl -fsS "http://127.0.0.1:$vm_port/snapshot/delete?snapshot=$name" >/dev/null || true
    parts+=(victoriametrics)
  fi
  ((${#parts[@]})) || node_die "nothing to back up on this server (no gateway, Prometheus, Alertmanager or VictoriaMetrics found)"
  printf 'host=%s\ntime=%s\nparts=%s\nskipped=%s\n' "$(hostname)" "$STAMP" "${parts[*]}" "${skipped[*]}" >"$out/MANIFEST"
  (cd "$out" && sha256sum -- * | grep -v ' SHA256SUMS$' >SHA256SUMS)
  node_log "backed up ${parts[*]} to $out"
}

if [[ "${1:-}" == --node || ( $# == 0 && -n "${NGD_BACKUP_DIR:-}" ) ]]; then
  [[ "${1:-}" == --node ]] && shift
  out="${NGD_BACKUP_DIR:-/var/backups/nanogridata}/$STAMP" vm_port="" prom_port="" am_port=""
  while (($#)); do
    case "$1" in
      --out) out="${2:?--out needs a directory}"; shift 2 ;;
      --vm-port) vm_port="$2"; shift 2 ;;
      --prometheus-port) prom_port="$2"; shift 2 ;;
      --alertmanager-port) am_port="$2"; shift 2 ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; node_die "unknown argument: $1" ;;
    esac
  done
  node_backup "$out" "$vm_port" "$prom_port" "$am_port"
  exit 0
fi

# --- ENV mode: the operator's machine ---------------------------------------------------------
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$REPO_ROOT/scripts/lib/toolenv.sh"
source "$REPO_ROOT/scripts/ops/lib.sh"

ENV_NAME="" OUT="" AGE_RECIPIENT="" GPG_RECIPIENT=""
while (($#)); do
  case "$1" in
    --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
    --age-recipient) AGE_RECIPIENT="${2:?--age-recipient needs a public key}"; shift 2 ;;
    --gpg-recipient) GPG_RECIPIENT="${2:?--gpg-recipient needs a key id}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) [[ -z "$ENV_NAME" ]] || die "one environment only (got '$ENV_NAME' and '$1')"; ENV_NAME=$1; shift ;;
  esac
done
[[ -n "$ENV_NAME" ]] || { usage >&2; die "missing ENV (lab, staging or production)"; }
ops_check_env "$ENV_NAME"
[[ -z "$AGE_RECIPIENT" || -z "$GPG_RECIPIENT" ]] || die "choose one of --age-recipient and --gpg-recipient"
[[ -z "$AGE_RECIPIENT" ]] || require_cmd age "install it: apt-get install age"
[[ -z "$GPG_RECIPIENT" ]] || require_cmd gpg "install it: apt-get install gnupg"
# Backups hold secrets: by default outside the checkout, never where git could pick them up.
OUT=${OUT:-${NGD_BACKUP_ROOT:-${XDG_DATA_HOME:-$HOME/.local/share}/nanogridata/backups}/$ENV_NAME/$STAMP}
[[ ! -e "$OUT" ]] || die "$OUT exists: choose another --out"
T_START=$SECONDS

toolenv_activate
[[ -f "$(ops_inventory "$ENV_NAME")" ]] || die "no inventory for $ENV_NAME: deploy first (scripts/deploy.sh $ENV_NAME)"
ops_log_start backup "$ENV_NAME"
ops_steps 3

step "back up every server (node mode through Ansible)"
mkdir -p "$OUT"
chmod 700 "$OUT"
ops_playbook "$ENV_NAME" "$OPS_DIR/backup.yml" -e "ngd_backup_stamp=$STAMP" -e "ngd_backup_local_dir=$OUT" \
  -e "ngd_backup_script=$REPO_ROOT/scripts/backup.sh" || die "backup failed on a server (above)"

step "check what was fetched"
for dir in "$OUT"/*/; do
  (cd "$dir" && sha256sum --quiet -c SHA256SUMS) || die "checksums of ${dir#"$OUT"/} do not match after the copy"
  log "$(basename "$dir"): $(sed -n 's/^parts=//p' "$dir/MANIFEST")"
  not_backed_up=$(sed -n 's/^skipped=//p' "$dir/MANIFEST")
  [[ -z "$not_backed_up" ]] || warn "$(basename "$dir"): NOT backed up: $not_backed_up (see the log above)"
done
sums=$(cd "$OUT" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
printf '%s\n' "$sums" >"$OUT/SHA256SUMS"

step "seal"
final="$OUT"
if [[ -n "$AGE_RECIPIENT$GPG_RECIPIENT" ]]; then
  archive="$OUT.tar"
  tar -C "$(dirname "$OUT")" -cf "$archive" "$(basename "$OUT")"
  if [[ -n "$AGE_RECIPIENT" ]]; then
    age -r "$AGE_RECIPIENT" -o "$archive.age" "$archive"; final="$archive.age"
  else
    gpg --batch --yes --trust-model always -r "$GPG_RECIPIENT" -o "$archive.gpg" -e "$archive"; final="$archive.gpg"
  fi
  rm -rf "$archive" "$OUT"
  (cd "$(dirname "$final")" && sha256sum "$(basename "$final")" >"$(basename "$final").sha256")
  log "encrypted: $final (+ .sha256)"
fi
steps_done
ops_timings
ok "backup of $ENV_NAME: $final ($(du -sh "$final" | cut -f1)) in $((SECONDS - T_START))s"
