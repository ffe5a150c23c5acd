#!/usr/bin/env bash
# Restore a backup made by scripts/backup.sh: checksums are verified first (nothing is touched
# when one does not match), then each server gets its parts back and the environment is checked
# end to end. `restore.sh --node` is the part that runs on a server (copied there by Ansible).
set -euo pipefail

usage() {
  cat <<USAGE
Usage: ${0##*/} ENV BACKUP [--host NAME]... [--identity FILE] [--verify-only] [--yes]
       ${0##*/} --node --from DIR [--vm-port P] [--prometheus-port P] [--alertmanager-port P]

BACKUP is the directory scripts/backup.sh wrote, or its encrypted archive (.tar.age / .tar.gpg,
with the .sha256 file next to it).
  --host NAME     restore only this server (repeatable; default: every server in the backup)
  --identity FILE age identity file: decrypts an .age archive and the servers' encrypted secrets
                  (secrets.tar.age), on this machine; without it the servers keep their secrets
  --verify-only   check the checksums and stop
  --yes           no typed confirmation
On a server, every part found is restored: gateway config and state, secrets when decrypted (the
gateway is stopped meanwhile), the VictoriaMetrics and Prometheus data (replaced by the snapshot; the old
data is kept beside it as *.before-restore), the Alertmanager silences still active.
USAGE
}

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
node_log() { printf '%s [restore %s] %s\n' "$(date -u +%H:%M:%S)" "$(hostname)" "$*"; }
node_die() { node_log "ERROR: $*" >&2; exit 1; }

wait_http() {  # wait_http URL SECONDS
  local i
  for ((i = 0; i < $2; i++)); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 1; done
  return 1
}

# replace_data SERVICE DIR ARCHIVE: stop SERVICE, keep DIR aside, unpack ARCHIVE as DIR, start.
replace_data() {
  local service="$1" dir="$2" archive="$3" owner
  owner=$(stat -c %U:%G "$dir" 2>/dev/null || echo root:root)
  systemctl stop "$service"
  rm -rf "$dir.before-restore"
  [[ -d "$dir" ]] && mv "$dir" "$dir.before-restore"
  mkdir -p "$dir"
  tar -C "$dir" -xzf "$archive"
  chown -R "$owner" "$dir"
  systemctl start "$service"
}

node_restore() {
  local from="$1" vm_port="$2" prom_port="$3" am_port="$4" done_parts=()
  [[ -f "$from/SHA256SUMS" ]] || node_die "$from has no SHA256SUMS: not a backup.sh folder"
  (cd "$from" && sha256sum --quiet -c SHA256SUMS) || node_die "checksums do not match in $from: nothing restored"
  if [[ -f "$from/gateway.tar.gz" ]]; then
    systemctl stop nanogridata-gateway 2>/dev/null || true
    rm -rf /var/lib/nanogridata.before-restore
    [[ -d /var/lib/nanogridata ]] && mv /var/lib/nanogridata /var/lib/nanogridata.before-restore
    tar -C / -xzpf "$from/gateway.tar.gz"
    # secrets.tar: decrypted by restore.sh ENV on the operator's machine (the age identity never
    # comes to a server). Without it the node keeps the secrets it has (deploy.sh renders them).
    if [[ -f "$from/secrets.tar" ]]; then
      tar -C / -xpf "$from/secrets.tar"
      rm -f "$from/secrets.tar"
      done_parts+=(secrets)
    elif [[ -f "$from/secrets.tar.age" ]]; then
      node_log "WARNING: the secrets in this backup are encrypted and were not decrypted (restore.sh ENV --identity FILE): kept the node's own" >&2
    fi
    if systemctl cat nanogridata-gateway >/dev/null 2>&1; then
      systemctl start nanogridata-gateway \
        || node_die "the gateway does not start after the restore (journalctl -u nanogridata-gateway; missing secrets? restore.sh ENV --identity FILE, or deploy.sh ENV renders them from the vault)"
    fi
    done_parts+=(gateway)
  fi
  if [[ -f "$from/victoriametrics-snapshot.tar.gz" ]]; then
    local data_dir
    data_dir=$(sed -nE 's/.*-storageDataPath=([^ "]+).*/\1/p' /etc/default/victoria-metrics 2>/dev/null | head -1)
    replace_data victoria-metrics "${data_dir:-/var/lib/victoria-metrics}" "$from/victoriametrics-snapshot.tar.gz"
    [[ -z "$vm_port" ]] || wait_http "http://127.0.0.1:$vm_port/health" 60 || node_die "VictoriaMetrics does not answer after the restore"
    done_parts+=(victoriametrics)
  fi
  if [[ -f "$from/prometheus-snapshot.tar.gz" ]]; then
    replace_data prometheus /var/lib/prometheus/metrics2 "$from/prometheus-snapshot.tar.gz"
    [[ -z "$prom_port" ]] || wait_http "http://127.0.0.1:$prom_port/-/ready" 120 || node_die "Prometheus is not ready after the restore"
    done_parts+=(prometheus)
  fi
  if [[ -f "$from/alertmanager-silences.json" && -n "$am_port" ]]; then
    wait_http "http://127.0.0.1:$am_port/-/ready" 60 || node_die "Alertmanager is not ready"
    python3 - "$from/alertmanager-silences.json" "http://127.0.0.1:$am_port/api/v2/silences" <<'PY' || node_die "re-creating silences failed"
import json, sys, urllib.request
silences, url = json.load(open(sys.argv[1])), sys.argv[2]
existing = json.load(urllib.request.urlopen(url, timeout=10))
def key(s): return (json.dumps(s["matchers"], sort_keys=True), s["endsAt"])
have = {key(s) for s in existing if s["status"]["state"] == "active"}
made = 0
for s in silences:
    if s["status"]["state"] != "active" or key(s) in have:
        continue
    body = {k: s[k] for k in ("matchers", "startsAt", "endsAt", "createdBy", "comment")}
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()
    made += 1
print(f"silences re-created: {made}")
PY
    done_parts+=(alertmanager)
  fi
  ((${#done_parts[@]})) || node_die "nothing in $from to restore"
  node_log "restored ${done_parts[*]} from $from"
}

if [[ "${1:-}" == --node ]]; then
  shift
  from="" vm_port="" prom_port="" am_port=""
  while (($#)); do
    case "$1" in
      --from) from="${2:?--from needs a directory}"; shift 2 ;;
      --vm-port) vm_port="$2"; shift 2 ;;
      --prometheus-port) prom_port="$2"; shift 2 ;;
      --alertmanager-port) am_port="$2"; shift 2 ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; node_die "unknown argument: $1" ;;
    esac
  done
  [[ -n "$from" ]] || node_die "--node needs --from DIR"
  node_restore "$from" "$vm_port" "$prom_port" "$am_port"
  exit 0
fi

# --- ENV mode: the operator's machine ---------------------------------------------------------
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$REPO_ROOT/scripts/lib/toolenv.sh"
source "$REPO_ROOT/scripts/ops/lib.sh"

ENV_NAME="" BACKUP="" IDENTITY="" VERIFY_ONLY=0 HOSTS=()
while (($#)); do
  case "$1" in
    --host) HOSTS+=("${2:?--host needs a server name}"); shift 2 ;;
    --identity) IDENTITY="${2:?--identity needs a file}"; shift 2 ;;
    --verify-only) VERIFY_ONLY=1; shift ;;
    --yes|-y) export ASSUME_YES=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *)
      if [[ -z "$ENV_NAME" ]]; then ENV_NAME=$1
      elif [[ -z "$BACKUP" ]]; then BACKUP=$1
      else die "unexpected argument: $1"; fi
      shift ;;
  esac
done
[[ -n "$ENV_NAME" && -n "$BACKUP" ]] || { usage >&2; die "usage: ${0##*/} ENV BACKUP"; }
ops_check_env "$ENV_NAME"
[[ -e "$BACKUP" ]] || die "backup '$BACKUP' does not exist"
BACKUP=$(cd "$(dirname "$BACKUP")" && pwd)/$(basename "$BACKUP")
T_START=$SECONDS
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

ops_log_start restore "$ENV_NAME"
ops_steps 4

step "verify checksums"
DIR=$BACKUP
if [[ -f "$BACKUP" ]]; then
  [[ -f "$BACKUP.sha256" ]] || die "no $BACKUP.sha256 next to the archive: cannot verify it"
  (cd "$(dirname "$BACKUP")" && sha256sum --quiet -c "$(basename "$BACKUP").sha256") || die "the archive does not match its .sha256"
  case "$BACKUP" in
    *.age) require_cmd age "apt-get install age"; [[ -n "$IDENTITY" ]] || die "an .age archive needs --identity FILE"
      age -d -i "$IDENTITY" -o "$WORK/backup.tar" "$BACKUP" || die "age could not decrypt $BACKUP" ;;
    *.gpg) require_cmd gpg "apt-get install gnupg"; gpg --batch -o "$WORK/backup.tar" -d "$BACKUP" || die "gpg could not decrypt $BACKUP" ;;
    *) die "unknown archive type: $BACKUP (want a directory, .tar.age or .tar.gpg)" ;;
  esac
  tar -C "$WORK" -xf "$WORK/backup.tar"
  rm -f "$WORK/backup.tar"
  DIR=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d | head -1)
fi
[[ -f "$DIR/SHA256SUMS" ]] || die "$DIR has no SHA256SUMS: not a backup made by scripts/backup.sh"
(cd "$DIR" && sha256sum --quiet -c SHA256SUMS) || die "checksums do not match in $DIR: nothing was restored"
mapfile -t in_backup < <(find "$DIR" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
((${#HOSTS[@]})) || HOSTS=("${in_backup[@]}")
for h in "${HOSTS[@]}"; do
  [[ " ${in_backup[*]} " == *" $h "* ]] || die "--host $h: not in this backup (it has: ${in_backup[*]})"
  (cd "$DIR/$h" && sha256sum --quiet -c SHA256SUMS) || die "checksums of $h do not match: nothing was restored"
done
ok "checksums match: ${HOSTS[*]}"
((VERIFY_ONLY)) && { steps_done; exit 0; }
# What goes to the servers: a private copy (decrypted secrets must never land in the backup).
if [[ "$DIR" != "$WORK"/* ]]; then
  mkdir -m 700 "$WORK/backup"
  for h in "${HOSTS[@]}"; do cp -a "$DIR/$h" "$WORK/backup/"; done
  DIR="$WORK/backup"
fi
for h in "${HOSTS[@]}"; do
  [[ -f "$DIR/$h/secrets.tar.age" ]] || continue
  if [[ -n "$IDENTITY" ]]; then
    require_cmd age "apt-get install age"
    age -d -i "$IDENTITY" -o "$DIR/$h/secrets.tar" "$DIR/$h/secrets.tar.age" \
      || die "age could not decrypt $h's secrets with $IDENTITY"
  else
    warn "$h: its secrets are encrypted and no --identity was given: $h keeps the secrets it has"
  fi
done
confirm "Restore ${HOSTS[*]} of $ENV_NAME from $(basename "$BACKUP") (their current state is replaced)." "$ENV_NAME"

step "restore ${HOSTS[*]}"
toolenv_activate
limit=$(IFS=,; echo "${HOSTS[*]}")
ops_playbook "$ENV_NAME" "$OPS_DIR/restore.yml" --limit "$limit" -e "ngd_restore_dir=$DIR" \
  -e "ngd_restore_stamp=$STAMP" -e "ngd_restore_script=$REPO_ROOT/scripts/restore.sh" || die "restore failed (above)"

step "verify end to end"
status_json="$WORK/status.json"
ops_status "$ENV_NAME" "$status_json" || die "could not read the gateways' release state"
release=$(ops_status_field "$status_json" "sorted(h['current'] for h in s.values())[0]")
probe_device=$((3000000000 + $(date +%s) % 1000000000))
ops_playbook "$ENV_NAME" "$OPS_DIR/verify.yml" -e "ngd_release=$release" -e "ngd_probe_device=$probe_device" \
  || die "restored, but the end-to-end probe failed (above)"
step "summary"
steps_done
ops_timings
ok "restore of ${HOSTS[*]} ($ENV_NAME) from $(basename "$BACKUP") done in $((SECONDS - T_START))s"
