#!/usr/bin/env bash
# Back up what cannot be rebuilt from git, as checksummed archives:
#   gateways:   /etc/nanogridata (config; secrets only encrypted, see below), /var/lib/nanogridata
#               (replay state, spool: an SQLite online-backup snapshot, integrity-checked)
#   monitoring: Prometheus TSDB snapshot (admin API), Alertmanager silences (API v2)
#   collectors: VictoriaMetrics snapshot (/snapshot/create)
# Three modes: `backup.sh ENV` on the operator's machine runs the node mode on every server through
# Ansible, fetches the results, seals them and copies them off-host; `backup.sh --node` runs on one
# server (what the backup role's systemd timer runs, with NGD_BACKUP_DIR set); `backup.sh --store`
# runs on the off-host store after a copy (checks it, prunes, exports its freshness). The node and
# store modes need nothing from the repository.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: ${0##*/} ENV [--out DIR] [--age-recipient R]...
       ${0##*/} --node [--out DIR] [--keep N] [--age-recipient R]... [--textfile-dir D]
                       [--vm-port P] [--prometheus-port P] [--alertmanager-port P]
       ${0##*/} --store --dir DIR --env ENV --keep N [--textfile-dir D]

ENV mode (lab, staging, production): every server's state into DIR (default
\${NGD_BACKUP_ROOT:-~/.local/share/nanogridata/backups}/ENV/<UTC time>/), one folder per host,
each with a SHA256SUMS file; then a copy to the off-host store (ngd_backup_store_group in
ansible/group_vars/all/backup.yml), pruned to ngd_backup_keep there. With --age-recipient (or
ngd_backup_age_recipients in the inventory) the secrets are encrypted on each server; with
--age-recipient the whole backup also becomes one .tar.age archive plus its .sha256.
--node mode: this server's state into DIR (default \$NGD_BACKUP_DIR/<UTC time>, else
/var/backups/nanogridata/<UTC time>). A part whose service is not on this server is skipped.
  --keep N          then delete all but the newest N backups beside DIR (the timer's retention)
  --age-recipient R encrypt the gateway's secrets to this age public key (repeatable); without
                    one, secrets are left out of the backup (deploy.sh renders them from the vault)
  --textfile-dir D  write ngd_backup_*{kind="node"} metrics for node_exporter's textfile collector
--store mode: check the backups under DIR (one environment's off-host folder), keep the newest N,
write ngd_backup_*{kind="offhost"} metrics.
Exit codes: 0 done, 1 a backup step failed, 2 bad arguments or configuration.

Restore with scripts/restore.sh ENV BACKUP (it checks the checksums first).
USAGE
}

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
# Before any mode: on a server (no repository beside the script) --help must still answer.
case "${1:-}" in -h|--help) usage; exit 0 ;; esac

# --- node and store modes: self-contained (copied to the servers; no repository there) ----------
node_log() { printf '%s [backup %s] %s\n' "$(date -u +%H:%M:%S)" "$(hostname)" "$*"; }
node_die() { node_log "ERROR: $*" >&2; exit 1; }
node_bad() { node_log "ERROR: $*" >&2; exit 2; }  # bad arguments or configuration
# Tests stand a directory in for / (the gateway's paths below it); on a server it is /.
FS_ROOT="${NGD_BACKUP_FS_ROOT:-}"
STAMP_RE='^[0-9]{8}T[0-9]{6}Z$'

check_keep() { [[ "$1" =~ ^[1-9][0-9]*$ ]] || node_bad "--keep '$1': want a whole number >= 1 (backups to keep)"; }

# prune DIR N: delete all but the newest N backups in DIR. Only entries named by a UTC stamp (a
# folder with a MANIFEST, or a sealed .tar.age with its .sha256) are candidates.
prune() {
  local dir="$1" keep="$2" entries=() e n
  mapfile -t entries < <(find "$dir" -mindepth 1 -maxdepth 1 -printf '%f\n' | LC_ALL=C sort)
  local backups=()
  for e in "${entries[@]}"; do
    if [[ -d "$dir/$e" && -f "$dir/$e/MANIFEST" && "$e" =~ $STAMP_RE ]]; then backups+=("$e")
    elif [[ "$e" =~ ^[0-9]{8}T[0-9]{6}Z\.tar\.age$ ]]; then backups+=("$e"); fi
  done
  n=${#backups[@]}
  ((n > keep)) || return 0
  for e in "${backups[@]:0:n-keep}"; do
    rm -rf "${dir:?}/$e" "$dir/$e.sha256"
    node_log "retention (keep $keep): removed $e"
  done
}

# write_metrics DIR KIND NAME LABELS TIME SIZE SECONDS KEPT: node_exporter textfile, atomically
# (the collector must never read half a file).
write_metrics() {
  local dir="$1" kind="$2" name="$3" labels="kind=\"$2\"${4:+,$4}" tmp
  [[ -d "$dir" ]] || { node_log "WARNING: textfile directory $dir does not exist: no backup metrics written" >&2; return 0; }
  tmp=$(mktemp "$dir/.$name.XXXXXX")
  cat >"$tmp" <<PROM
# HELP ngd_backup_last_success_timestamp_seconds When the newest complete, verified backup finished (Unix time).
# TYPE ngd_backup_last_success_timestamp_seconds gauge
ngd_backup_last_success_timestamp_seconds{$labels} $5
# HELP ngd_backup_last_size_bytes Size of the newest backup.
# TYPE ngd_backup_last_size_bytes gauge
ngd_backup_last_size_bytes{$labels} $6
# HELP ngd_backup_last_duration_seconds How long the newest backup took ($kind).
# TYPE ngd_backup_last_duration_seconds gauge
ngd_backup_last_duration_seconds{$labels} $7
# HELP ngd_backup_kept Backups kept in this place after retention.
# TYPE ngd_backup_kept gauge
ngd_backup_kept{$labels} $8
PROM
  chmod 0644 "$tmp"
  mv -f "$tmp" "$dir/$name.prom"
}

# is_secret FILE: a file of the gateway's config directory that holds key material.
is_secret() {
  local base
  base=$(basename "$1")
  [[ "$base" == *secret* || "$base" == *token* || "$base" == *.key ]] && return 0
  # Readable by its owner only: whoever wrote it meant it to be private.
  [[ -z "$(find "$1" -maxdepth 0 -perm /044 2>/dev/null)" ]]
}

# spool_path: the spool database the gateway's config names ([spool] path), under FS_ROOT.
spool_path() {
  local cfg="$FS_ROOT/etc/nanogridata/gateway.toml" p=""
  if [[ -f "$cfg" ]]; then
    p=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb")).get("spool", {}).get("path", ""))' "$cfg") \
      || node_die "cannot read [spool] path from $cfg"
  fi
  printf '%s\n' "$FS_ROOT${p:-/var/lib/nanogridata/spool.db}"
}

# snapshot_spool SRC DST: a transactionally consistent copy with SQLite's online backup API (one
# step: one read transaction, so the copy is the database as of one commit, while the gateway
# keeps writing through WAL), accepted only if PRAGMA integrity_check says ok. Prints
# "records=N bytes=B seconds=S".
snapshot_spool() {
  python3 - "$1" "$2" <<'PY'
import os, sqlite3, sys, time
src, dst = sys.argv[1], sys.argv[2]
t0 = time.monotonic()
# Read-write open: a read-only connection cannot use a WAL database whose -shm is not there.
source = sqlite3.connect(src, timeout=60)
target = sqlite3.connect(dst)
try:
    source.backup(target)  # pages=-1: everything in one step
finally:
    source.close()
check = target.execute("PRAGMA integrity_check").fetchall()
if check != [("ok",)]:
    sys.exit(f"integrity_check of the spool snapshot failed: {check[:5]}")
records = target.execute("SELECT count(*) FROM records").fetchone()[0]
target.close()
print(f"records={records} bytes={os.path.getsize(dst)} seconds={time.monotonic() - t0:.2f}")
PY
}

# backup_gateway OUT RECIPIENTS...: gateway.tar.gz (config without secrets, state with a consistent
# spool and replay state), secrets.tar.age when there are recipients. Sets GW_INFO for MANIFEST.
backup_gateway() {
  local out="$1" stage
  shift
  local recipients=("$@") etc="$FS_ROOT/etc/nanogridata" state="$FS_ROOT/var/lib/nanogridata" spool
  stage="$out/.stage"
  rm -rf "$stage"
  mkdir -p "$stage/root"
  GW_INFO=()
  # Config: the secrets are never copied in clear, not even into the staging directory.
  local f rel secrets=()
  if [[ -d "$etc" ]]; then
    while IFS= read -r -d '' f; do
      rel=${f#"$FS_ROOT"/}
      is_secret "$f" && secrets+=("$rel")
    done < <(find "$etc" -type f -print0)
    : >"$stage/secrets.list"
    ((${#secrets[@]} == 0)) || printf '%s\n' "${secrets[@]}" >"$stage/secrets.list"
    tar -C "${FS_ROOT:-/}" --exclude-from="$stage/secrets.list" -cf - etc/nanogridata \
      | tar -C "$stage/root" -xpf - || node_die "copying $etc failed"
  fi
  # State: everything but the files that need a consistent copy, as it is (the archive sink's
  # file is append-only: a copy is a prefix of it, at worst with a torn last line).
  spool=$(spool_path)
  if [[ -d "$state" ]]; then
    mkdir -p "$stage/root/var/lib"
    tar -C "$FS_ROOT/var/lib" --exclude='nanogridata/replay.*' --exclude="nanogridata/$(basename "$spool")*" \
      -cf - nanogridata | tar -C "$stage/root/var/lib" -xpf - \
      || node_die "copying $state failed"
    # Replay state: the journal first, then the snapshot. Marks only accumulate, and a compaction
    # writes a complete new snapshot before it empties the journal: an older journal with a newer
    # snapshot loses nothing; the other order could pair an old snapshot with an emptied journal.
    for f in replay.journal replay.snapshot; do
      [[ -f "$state/$f" ]] && cp -p "$state/$f" "$stage/root/var/lib/nanogridata/$f"
    done
  fi
  local rel_spool=""
  if [[ -f "$spool" ]]; then
    local info
    rel_spool="${spool#"$FS_ROOT"/}"
    mkdir -p "$stage/root/$(dirname "$rel_spool")"
    GW_INFO+=("spool_snapshot_unix=$(date +%s.%N)")
    info=$(snapshot_spool "$spool" "$stage/root/$rel_spool") || node_die "spool snapshot of $spool failed: $info"
    chown --reference="$spool" "$stage/root/$rel_spool"
    chmod --reference="$spool" "$stage/root/$rel_spool"
    # Our connection may have created the -wal/-shm files (gateway stopped): the gateway's own.
    for f in "$spool-wal" "$spool-shm"; do [[ -e "$f" ]] && chown --reference="$spool" "$f"; done
    local kv
    for kv in $info; do GW_INFO+=("spool_$kv"); done
    GW_INFO+=("spool_integrity=ok")
    node_log "spool snapshot: $info (integrity_check ok)"
  fi
  # Named paths, not ".": unpacked at / by restore.sh, the staging directories' own modes must
  # not land on /, /etc or /var/lib.
  local packed=()
  for f in etc/nanogridata var/lib/nanogridata; do [[ -e "$stage/root/$f" ]] && packed+=("$f"); done
  # A spool configured outside the state directory.
  [[ -z "$rel_spool" || "$rel_spool" == var/lib/nanogridata/* ]] || packed+=("$rel_spool")
  tar -C "$stage/root" -czf "$out/gateway.tar.gz" "${packed[@]}" || node_die "packing the gateway state failed"
  if ((${#secrets[@]})); then
    if ((${#recipients[@]})); then
      # Only where there are secrets: the other servers need no age.
      command -v age >/dev/null \
        || node_bad "an age recipient is configured but age is not installed on $(hostname): apt-get install age (the backup role installs it)"
      local args=() r
      for r in "${recipients[@]}"; do args+=(-r "$r"); done
      tar -C "${FS_ROOT:-/}" -cf - "${secrets[@]}" | age "${args[@]}" -o "$out/secrets.tar.age" \
        || node_die "age could not encrypt the secrets"
      GW_INFO+=("secrets=encrypted(age):${secrets[*]}")
    else
      GW_INFO+=("secrets=left-out(no age recipient):${secrets[*]}")
      node_log "secrets NOT in this backup (no age recipient configured): ${secrets[*]}"
    fi
  fi
  rm -rf "$stage"
}

node_backup() {
  local out="$1" vm_port="$2" prom_port="$3" am_port="$4" keep="$5" textfile_dir="$6" parts=() skipped=()
  shift 6
  local recipients=("$@") t0=$SECONDS
  mkdir -p "$out"
  chmod 700 "$out"
  GW_INFO=()
  if [[ -d "$FS_ROOT/etc/nanogridata" || -d "$FS_ROOT/var/lib/nanogridata" ]]; then
    backup_gateway "$out" "${recipients[@]}"
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
  {
    printf 'host=%s\ntime=%s\nparts=%s\nskipped=%s\n' "$(hostname)" "$STAMP" "${parts[*]}" "${skipped[*]}"
    ((${#GW_INFO[@]} == 0)) || printf '%s\n' "${GW_INFO[@]}"
  } >"$out/MANIFEST"
  (cd "$out" && sha256sum -- * | grep -v ' SHA256SUMS$' >SHA256SUMS)
  node_log "backed up ${parts[*]} to $out ($(du -sh "$out" | cut -f1) in $((SECONDS - t0))s)"
  local kept=""
  if [[ -n "$keep" ]]; then
    prune "$(dirname "$out")" "$keep"
    kept=$(find "$(dirname "$out")" -mindepth 2 -maxdepth 2 -name MANIFEST | wc -l)
  fi
  [[ -z "$textfile_dir" ]] || write_metrics "$textfile_dir" node ngd_backup "" "$(date +%s)" \
    "$(du -sb "$out" | cut -f1)" "$((SECONDS - t0))" "${kept:-1}"
}

# store_check DIR ENV KEEP TEXTFILE_DIR: on the off-host store, after a copy: verify the newest
# backup's checksums, prune, export freshness.
store_check() {
  local dir="$1" env="$2" keep="$3" textfile_dir="$4" newest
  [[ -d "$dir" ]] || node_bad "--dir $dir does not exist"
  newest=$(find "$dir" -mindepth 1 -maxdepth 1 \( -type d -o -name '*.tar.age' \) -printf '%f\n' \
    | grep -E '^[0-9]{8}T[0-9]{6}Z(\.tar\.age)?$' | LC_ALL=C sort | tail -1)
  [[ -n "$newest" ]] || node_die "no backup in $dir"
  if [[ -d "$dir/$newest" ]]; then
    (cd "$dir/$newest" && sha256sum --quiet -c SHA256SUMS) || node_die "checksums of $dir/$newest do not match after the copy"
    # Marks a complete copy: prune counts only folders with a MANIFEST.
    printf 'offhost_verified=%s\n' "$(date -u +%Y%m%dT%H%M%SZ)" >"$dir/$newest/MANIFEST"
  else
    (cd "$dir" && sha256sum --quiet -c "$newest.sha256") || node_die "$dir/$newest does not match its .sha256 after the copy"
  fi
  prune "$dir" "$keep"
  local kept
  kept=$(find "$dir" -mindepth 1 -maxdepth 1 -printf '%f\n' | grep -cE '^[0-9]{8}T[0-9]{6}Z(\.tar\.age)?$' || true)
  [[ -z "$textfile_dir" ]] || write_metrics "$textfile_dir" offhost "ngd_backup_offhost_$env" "env=\"$env\"" \
    "$(date +%s)" "$(du -sb "$dir/$newest" | cut -f1)" 0 "$kept"
  node_log "off-host copy $dir/$newest verified; $kept kept"
}

if [[ "${1:-}" == --store ]]; then
  shift
  dir="" env="" keep="" textfile_dir=""
  while (($#)); do
    case "$1" in
      --dir) dir="${2:?--dir needs a directory}"; shift 2 ;;
      --env) env="${2:?--env needs a name}"; shift 2 ;;
      --keep) keep="${2:?--keep needs a number}"; shift 2 ;;
      --textfile-dir) textfile_dir="${2?--textfile-dir needs a directory}"; shift 2 ;;
      *) usage >&2; node_bad "unknown argument: $1" ;;
    esac
  done
  [[ -n "$dir" && -n "$env" && -n "$keep" ]] || node_bad "--store needs --dir, --env and --keep"
  [[ "$env" =~ ^[a-z][a-z0-9-]*$ ]] || node_bad "--env '$env': want a lower-case environment name"
  check_keep "$keep"
  store_check "$dir" "$env" "$keep" "$textfile_dir"
  exit 0
fi

if [[ "${1:-}" == --node || ( $# == 0 && -n "${NGD_BACKUP_DIR:-}" ) ]]; then
  [[ "${1:-}" == --node ]] && shift
  out="${NGD_BACKUP_DIR:-/var/backups/nanogridata}/$STAMP" vm_port="" prom_port="" am_port="" keep="" textfile_dir=""
  recipients=()
  while (($#)); do
    case "$1" in
      --out) out="${2:?--out needs a directory}"; shift 2 ;;
      --keep) keep="${2:?--keep needs a number}"; check_keep "$keep"; shift 2 ;;
      --age-recipient)
        [[ "${2:-}" =~ ^age1[0-9a-z]{58}$ ]] || node_bad "--age-recipient '${2:-}': want an age public key (age1..., from age-keygen)"
        recipients+=("$2"); shift 2 ;;
      --textfile-dir) textfile_dir="${2?--textfile-dir needs a directory}"; shift 2 ;;
      --vm-port) vm_port="$2"; shift 2 ;;
      --prometheus-port) prom_port="$2"; shift 2 ;;
      --alertmanager-port) am_port="$2"; shift 2 ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; node_bad "unknown argument: $1" ;;
    esac
  done
  node_backup "$out" "$vm_port" "$prom_port" "$am_port" "$keep" "$textfile_dir" "${recipients[@]}"
  exit 0
fi

# --- ENV mode: the operator's machine ---------------------------------------------------------
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$REPO_ROOT/scripts/lib/toolenv.sh"
source "$REPO_ROOT/scripts/ops/lib.sh"

ENV_NAME="" OUT="" RECIPIENTS=()
while (($#)); do
  case "$1" in
    --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
    --age-recipient)
      [[ "${2:-}" =~ ^age1[0-9a-z]{58}$ ]] || { usage >&2; echo "ERROR: --age-recipient '${2:-}': want an age public key (age1..., from age-keygen)" >&2; exit 2; }
      RECIPIENTS+=("$2"); shift 2 ;;
    --gpg-recipient)
      echo "ERROR: --gpg-recipient: backups are encrypted with age only: --age-recipient age1... (docs/operations.md)" >&2; exit 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; echo "ERROR: unknown option: $1" >&2; exit 2 ;;
    *) [[ -z "$ENV_NAME" ]] || die "one environment only (got '$ENV_NAME' and '$1')"; ENV_NAME=$1; shift ;;
  esac
done
[[ -n "$ENV_NAME" ]] || { usage >&2; die "missing ENV (lab, staging or production)"; }
ops_check_env "$ENV_NAME"
((${#RECIPIENTS[@]} == 0)) || require_cmd age "install it: apt-get install age"
# Backups hold state (and, encrypted, secrets): by default outside the checkout, never where git
# could pick them up.
OUT=${OUT:-${NGD_BACKUP_ROOT:-${XDG_DATA_HOME:-$HOME/.local/share}/nanogridata/backups}/$ENV_NAME/$STAMP}
[[ ! -e "$OUT" ]] || die "$OUT exists: choose another --out"
[[ "$(basename "$OUT")" =~ $STAMP_RE ]] || die "--out $OUT: the last component must be a UTC stamp like $STAMP (retention on the store sorts by it)"
T_START=$SECONDS

toolenv_activate
[[ -f "$(ops_inventory "$ENV_NAME")" ]] || die "no inventory for $ENV_NAME: deploy first (scripts/deploy.sh $ENV_NAME)"
ops_log_start backup "$ENV_NAME"
ops_steps 4
recipients_json=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "${RECIPIENTS[@]}")

step "back up every server (node mode through Ansible)"
mkdir -p "$OUT"
chmod 700 "$OUT"
ops_playbook "$ENV_NAME" "$OPS_DIR/backup.yml" -e "ngd_backup_stamp=$STAMP" -e "ngd_backup_local_dir=$OUT" \
  -e "ngd_backup_script=$REPO_ROOT/scripts/backup.sh" -e "{\"ngd_backup_cli_recipients\": $recipients_json}" \
  || die "backup failed on a server (above)"

step "check what was fetched"
for dir in "$OUT"/*/; do
  (cd "$dir" && sha256sum --quiet -c SHA256SUMS) || die "checksums of ${dir#"$OUT"/} do not match after the copy"
  log "$(basename "$dir"): $(sed -n 's/^parts=//p' "$dir/MANIFEST")"
  not_backed_up=$(sed -n 's/^skipped=//p' "$dir/MANIFEST")
  [[ -z "$not_backed_up" ]] || warn "$(basename "$dir"): NOT backed up: $not_backed_up (see the log above)"
  secret_note=$(sed -n 's/^secrets=//p' "$dir/MANIFEST")
  [[ -z "$secret_note" ]] || log "$(basename "$dir"): secrets $secret_note"
done
sums=$(cd "$OUT" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
printf '%s\n' "$sums" >"$OUT/SHA256SUMS"

step "seal"
final="$OUT"
if ((${#RECIPIENTS[@]})); then
  archive="$OUT.tar"
  tar -C "$(dirname "$OUT")" -cf "$archive" "$(basename "$OUT")"
  age_args=()
  for r in "${RECIPIENTS[@]}"; do age_args+=(-r "$r"); done
  age "${age_args[@]}" -o "$archive.age" "$archive"
  final="$archive.age"
  rm -rf "$archive" "$OUT"
  (cd "$(dirname "$final")" && sha256sum "$(basename "$final")" >"$(basename "$final").sha256")
  log "encrypted: $final (+ .sha256)"
else
  log "not sealed (no --age-recipient): secrets are in it only where the servers encrypted them"
fi

step "copy off-host"
ops_playbook "$ENV_NAME" "$OPS_DIR/backup_store.yml" -e "ngd_backup_artifact=$final" -e "ngd_backup_env=$ENV_NAME" \
  -e "ngd_backup_script=$REPO_ROOT/scripts/backup.sh" || die "the off-host copy failed (above); the local one is $final"
steps_done
ops_timings
ok "backup of $ENV_NAME: $final ($(du -sh "$final" | cut -f1)) in $((SECONDS - T_START))s, copied off-host"
