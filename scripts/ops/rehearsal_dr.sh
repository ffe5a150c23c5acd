#!/usr/bin/env bash
# Disaster recovery, rehearsed on production deployed to the Hetzner Cloud twin (a step of
# scripts/rehearsal.sh): the operator's own commands, from the operator's checkout, timed.
#   1. frames only the lost gateway holds: its sink blocked (a reject rule of its own nft table on
#      the gateway), a fresh device sends N frames to that gateway's device port; all acknowledged,
#      so they sit in its spool and nowhere else
#   2. `scripts/backup.sh production` as the runbook says (the secrets encrypted to the operator's
#      age key from ngd_backup_age_recipients; the off-host copy on the store host): the gateway's
#      MANIFEST shows an integrity-checked spool holding the frames and its secrets encrypted, the
#      off-host copy matches, and no secret of the vault is anywhere in the backup in clear
#      then M more frames to that gateway: acknowledged after the backup, they are the RPO window
#   3. the gateway's server is lost (its container and disk removed); from here the RTO runs:
#      docs/runbooks/disaster-recovery.md step by step: its alerts silenced on the monitoring
#      host, the server's delete protection lifted, `tofu apply -replace` makes a new server,
#      `deploy.sh production --version <the survivor's release>` configures it (the bridge's new
#      address, the host key OpenTofu kept), `restore.sh production BACKUP --host GW --identity KEY
#      --yes` restores it; the RTO ends when both gateways answer /ready
#   4. checks: the N frames reach the collector from the restored spool (0 lost), sent again to the
#      restored gateway they are refused as duplicates (replay state back), its secrets are the
#      backed-up ones (decrypted from the backup); then the silence is expired
# Prints its step timings, the RTO, the RPO window (how many of the M frames came back: none is
# expected, they were only on the lost server) and the backup's figures; writes the timings to
# WORK/timings.txt.
#
# Usage: scripts/ops/rehearsal_dr.sh --checkout DIR --lab NAME --identity FILE --work DIR [--host GW]
#   --checkout  the operator's checkout the rehearsal deployed production from
#   --lab       the rehearsal's lab name (the twin's containers carry label io.nanogridata.lab=NAME)
#   --identity  the operator's age identity (its public key is in ngd_backup_age_recipients)
#   --work      where the backups and reports go
#   --host      the gateway to lose (default gw-b)
# Environment (as scripts/rehearsal.sh sets it): HCLOUD_ENDPOINT, HCLOUD_TOKEN,
# NGD_VAULT_PASSWORD_FILE, PATH with the operator's ssh and OpenTofu's environment.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/lib/common.sh"
help_from_header "$@"
source "$REPO_ROOT/scripts/ops/backup_checks.sh"

OP="" LAB="" IDENTITY="" WORK="" GW="gw-b"
while (($#)); do
  case "$1" in
    --checkout) OP="${2:?--checkout needs a directory}"; shift 2 ;;
    --lab) LAB="${2:?--lab needs a name}"; shift 2 ;;
    --identity) IDENTITY="${2:?--identity needs a file}"; shift 2 ;;
    --work) WORK="${2:?--work needs a directory}"; shift 2 ;;
    --host) GW="${2:?--host needs a gateway name}"; shift 2 ;;
    *) echo "ERROR: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n "$OP" && -n "$LAB" && -n "$IDENTITY" && -n "$WORK" ]] \
  || { echo "ERROR: --checkout, --lab, --identity and --work are required (see --help)" >&2; exit 2; }
[[ -d "$OP/.git" ]] || { echo "ERROR: --checkout $OP is not a git checkout" >&2; exit 2; }
[[ -f "$IDENTITY" ]] || { echo "ERROR: --identity $IDENTITY does not exist" >&2; exit 2; }
[[ "$GW" =~ ^gw-[a-z0-9]+$ ]] || { echo "ERROR: --host $GW: want a gateway name such as gw-b" >&2; exit 2; }
[[ -n "${NGD_VAULT_PASSWORD_FILE:-}" ]] || { echo "ERROR: NGD_VAULT_PASSWORD_FILE is not set" >&2; exit 2; }
mkdir -p "$WORK"

INV="$OP/ansible/inventories/production/hosts.yml"
TFDIR="$OP/terraform/environments/production"
TFVARS="$TFDIR/production.tfvars"
GV="$OP/ansible/inventories/production/group_vars/all"
SERVER="module.gateway_pair.hcloud_server.node[\"$GW\"]"
port() { python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))[sys.argv[2]])' "$OP/ansible/group_vars/all/ports.yml" "$1"; }
DEVICE_PORT=$(port ngd_device_port)
VM_PORT=$(port ngd_victoriametrics_port)
METRICS_PORT=$(port ngd_gateway_metrics_port)
AM_PORT=$(port ngd_alertmanager_port)
SIM=/opt/nanogridata/gateway/current/venv/bin/nanogridata-sim
FRAMES=20 LATE_FRAMES=5

declare -a TIMINGS=()
step_t0=0
begin() { step_t0=$SECONDS; log "-- $1"; }
done_step() {
  TIMINGS+=("$(printf '  %-50s %5ds' "$1" "$((SECONDS - step_t0))")")
  printf '%s\n' "${TIMINGS[-1]}" >>"$WORK/timings.txt"
}
: >"$WORK/timings.txt"

# on HOST CMD: CMD as root on one host of the inventory (the deploy's SSH and host keys); its output
# (ansible appends CMD's stderr to its stdout: keep stderr out of what is parsed).
on() {
  local out
  out=$(cd "$OP/ansible" && ANSIBLE_CONFIG="$OP/ansible/ansible.cfg" ANSIBLE_VAULT_PASSWORD_FILE="$NGD_VAULT_PASSWORD_FILE" \
    ansible "$1" -i "$INV" -b -m ansible.builtin.shell -a "$2" 2>"$WORK/on.err") \
    || { printf '%s\n' "$out" >&2; cat "$WORK/on.err" >&2; return 1; }
  sed 1d <<<"$out"  # the "host | CHANGED | rc=0 >>" line
}
# sim HOST ARGS...: the release's simulator on HOST, to its own device port (nginx, local gateway
# first), the model secret read from the gateway's config there; its JSON report.
sim() {
  local host=$1
  shift
  local out
  out=$(on "$host" "$SIM -c /etc/nanogridata/gateway.toml --host 127.0.0.1 --port $DEVICE_PORT --model 0x10 --json $* 2>>/var/tmp/ngd-rehearsal-sim.err") || return 1
  sim_report "$out"
}
vm_points() {  # vm_points DEVICE START: the collector's pressure points of DEVICE since START
  local query
  query=$(python3 -c 'import sys, urllib.parse as u; print(u.urlencode({"match[]": "{__name__=~\".*_p\",device=\"%s\"}" % sys.argv[1], "start": sys.argv[2]}))' "$1" "$2")
  on collector "curl -fsS --max-time 20 'http://127.0.0.1:$VM_PORT/api/v1/export?$query'" \
    | python3 -c 'import json, sys
print(len({t for line in sys.stdin if line.startswith("{") for t in json.loads(line)["timestamps"]}))'
}
both_ready() {  # every gateway's /ready answers 200
  on gateways "python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:$METRICS_PORT/ready', timeout=5)\"" >/dev/null 2>&1
}
gw_container() {
  docker ps -a --filter "label=io.nanogridata.lab=$LAB" --format '{{.Names}}' | grep -E -- "-$GW\$" || true
}

T0=$(date +%s)
DEVICE=$((1000000 + T0 % 1000000)) SEQ=$((T0 % 1000000000))

# --- 1. frames only the gateway holds ---------------------------------------------------------------
begin "frames in $GW's spool only (its sink blocked)"
on "$GW" "nft add table inet ngd_rehearsal && nft add chain inet ngd_rehearsal out '{ type filter hook output priority 0; }' \
  && nft add rule inet ngd_rehearsal out tcp dport $VM_PORT reject" >/dev/null || die "could not block $GW's sink"
sent=$(sim "$GW" --devices 1 --device-base "$DEVICE" --seq-start "$SEQ" --max-frames "$FRAMES" --rate 20 --duration 10 --drain 10) \
  || die "the simulator on $GW failed"
sim_all_acked "$sent" "$FRAMES" || die "frames to $GW: $sent"
ok "$FRAMES frames of device $DEVICE acknowledged by $GW (spooled: its sink is blocked)"
SECRETS_SUM=$(on "$GW" "sha256sum /etc/nanogridata/secrets.toml" | cut -d' ' -f1)
done_step "$FRAMES frames acknowledged by $GW, sink blocked"

# --- 2. the backup, as the runbook says --------------------------------------------------------------
begin "backup.sh production"
export NGD_BACKUP_ROOT="$WORK/backups"
(cd "$OP" && ./scripts/backup.sh production) | tee "$WORK/backup.log" || die "backup.sh production failed"
BACKUP=$(find "$NGD_BACKUP_ROOT/production" -mindepth 1 -maxdepth 1 -type d | head -1)
[[ -n "$BACKUP" ]] || die "backup.sh wrote no backup under $NGD_BACKUP_ROOT/production"
STAMP=$(basename "$BACKUP")
manifest_gateway_ok "$BACKUP/$GW/MANIFEST" || die "the backup of $GW is incomplete"
records=$(sed -n 's/^spool_records=//p' "$BACKUP/$GW/MANIFEST")
((records >= FRAMES)) || die "$GW's spool snapshot holds $records records, not the $FRAMES frames it could not deliver"
# The off-host copy on the store host is this backup.
store_sums=$(on mon "cat /var/backups/nanogridata-offhost/production/$STAMP/SHA256SUMS") \
  || die "no off-host copy of $STAMP on the store host (mon)"
[[ "$store_sums" == "$(cat "$BACKUP/SHA256SUMS")" ]] || die "the off-host copy of $STAMP differs from the local one"
# No secret of the vault anywhere in the backup in clear (gzip members read too).
ansible-vault view --vault-password-file "$NGD_VAULT_PASSWORD_FILE" "$GV/vault.yml" >"$WORK/vault.plain"
chmod 600 "$WORK/vault.plain"
python3 - "$WORK/vault.plain" "$BACKUP" <<'PY' || die "a secret of the vault is in the backup in clear (above)"
import gzip, pathlib, re, sys
secrets = set(re.findall(rb"\b[0-9a-f]{64}\b", pathlib.Path(sys.argv[1]).read_bytes()))
if len(secrets) < 2:
    sys.exit("the vault holds no 64-hex-character secrets: nothing to look for")
found = []
for path in pathlib.Path(sys.argv[2]).rglob("*"):
    if not path.is_file():
        continue
    data = path.read_bytes()
    if path.suffix == ".gz":
        data += gzip.decompress(data)
    found += [f"{path.relative_to(sys.argv[2])}" for s in secrets if s in data]
if found:
    sys.exit(f"in clear in: {sorted(set(found))}")
print(f"none of the vault's {len(secrets)} secrets is in the backup in clear")
PY
rm -f "$WORK/vault.plain"
ok "backup $STAMP: $(du -sh "$BACKUP" | cut -f1), $GW's spool snapshot holds $records records, secrets encrypted, off-host copy on mon"
done_step "backup.sh production (off-host copy on mon)"
# The RPO window: acknowledged after the backup and never delivered, these go with the server.
late=$(sim "$GW" --devices 1 --device-base "$((DEVICE + 1))" --seq-start "$SEQ" --max-frames "$LATE_FRAMES" --rate 20 --duration 10 --drain 10) \
  || die "the simulator on $GW failed"
sim_all_acked "$late" "$LATE_FRAMES" || die "frames to $GW after the backup: $late"

# --- 3. the server is lost; the runbook brings it back ------------------------------------------------
SURVIVOR=$(on gateways "readlink -f /opt/nanogridata/gateway/current" | sed -n "s|.*/||p" | sort -u)
[[ -n "$SURVIVOR" && "$SURVIVOR" != *$'\n'* ]] || die "the gateways do not run one release: $SURVIVOR"
container=$(gw_container)
[[ -n "$container" ]] || die "no container of $GW labelled io.nanogridata.lab=$LAB"
log "losing $GW: its server's host and disk ($container) go"
T_LOSS=$SECONDS
docker rm -f "$container" >/dev/null

begin "silence $GW's alerts (runbook step 1)"
on mon "amtool silence add --alertmanager.url=http://127.0.0.1:$AM_PORT --duration=2h \
  --comment='disaster recovery of $GW' instance=$GW" >"$WORK/silence.id" || die "amtool could not silence $GW's alerts"
done_step "runbook 1: $GW's alerts silenced"

begin "a new server for $GW (runbook step 2)"
eval "$(bash "$OP/terraform/tools/install-tofu.sh" --print-env)"
tofu -chdir="$TFDIR" apply -input=false -auto-approve -var-file="$TFVARS" -var delete_protection=false \
  -target="$SERVER" >"$WORK/unprotect.log" 2>&1 || { cat "$WORK/unprotect.log" >&2; die "lifting $GW's delete protection failed"; }
tofu -chdir="$TFDIR" apply -input=false -auto-approve -var-file="$TFVARS" -replace="$SERVER" >"$WORK/replace.log" 2>&1 \
  || { cat "$WORK/replace.log" >&2; die "tofu apply -replace=$SERVER failed"; }
grep -Eq "Resources: 1 added, [0-9]+ changed, 1 destroyed" "$WORK/replace.log" || { cat "$WORK/replace.log" >&2; die "the replace did not make exactly one new server"; }
[[ -n "$(gw_container)" ]] || die "the twin made no host for the new $GW"
done_step "runbook 2: tofu apply -replace (new server)"

begin "deploy.sh production --version $SURVIVOR (runbook step 2)"
(cd "$OP" && ./scripts/deploy.sh production --yes --version "$SURVIVOR") >"$WORK/dr-deploy.log" 2>&1 \
  || { tail -60 "$WORK/dr-deploy.log" >&2; die "deploy.sh production failed on the new $GW (log: $WORK/dr-deploy.log)"; }
grep -q "first deploy (gateway installed on 1 of 2 nodes)" "$WORK/dr-deploy.log" \
  || { tail -30 "$WORK/dr-deploy.log" >&2; die "deploy.sh did not see the new $GW as a gateway without a release"; }
done_step "runbook 2: deploy.sh production (new $GW)"

begin "restore.sh production $STAMP --host $GW (runbook step 3)"
(cd "$OP" && ./scripts/restore.sh production "$BACKUP" --host "$GW" --identity "$IDENTITY" --yes) >"$WORK/restore.log" 2>&1 \
  || { tail -60 "$WORK/restore.log" >&2; die "restore.sh production failed (log: $WORK/restore.log)"; }
grep -q "restored secrets gateway" "$WORK/restore.log" || { tail -30 "$WORK/restore.log" >&2; die "restore.sh did not restore $GW's secrets"; }
deadline=$((SECONDS + 300))
until both_ready; do
  ((SECONDS < deadline)) || die "the gateways are not both ready 300 s after the restore"
  sleep 2
done
RTO=$((SECONDS - T_LOSS))
done_step "runbook 3: restore.sh --host $GW, both ready"
ok "RTO: ${RTO}s from the loss of $GW to both gateways ready (restored)"

# --- 4. what came back ---------------------------------------------------------------------------------
begin "checks"
deadline=$((SECONDS + 180)) at_sink=0
until at_sink=$(vm_points "$DEVICE" "$((T0 - 600))") && ((at_sink >= FRAMES)); do
  ((SECONDS < deadline)) || die "only ${at_sink:-0} of the $FRAMES frames acknowledged by $GW before the backup reached the collector"
  sleep 3
done
ok "all $FRAMES frames acknowledged before the backup are at the collector (delivered by the restored spool)"
again=$(sim "$GW" --devices 1 --device-base "$DEVICE" --seq-start "$SEQ" --max-frames "$FRAMES" --rate 20 --duration 10 --drain 10) \
  || die "the simulator on the restored $GW failed"
sim_all_refused "$again" "$FRAMES" || die "after the restore of $GW"
ok "the old frames sent again to the restored $GW are refused as duplicates"
late_at_sink=$(vm_points "$((DEVICE + 1))" "$((T0 - 600))") || die "could not ask the collector"
[[ "$(on "$GW" "sha256sum /etc/nanogridata/secrets.toml" | cut -d' ' -f1)" == "$SECRETS_SUM" ]] \
  || die "$GW's secrets are not the backed-up ones"
# Runbook step 4: the silence goes.
on mon "amtool silence expire --alertmanager.url=http://127.0.0.1:$AM_PORT $(tr -d '[:space:]' <"$WORK/silence.id")" >/dev/null \
  || die "the silence of $GW could not be expired"
done_step "checks: frames at the sink, duplicates, secrets"

banner "disaster recovery of $GW"
printf '%s\n' "${TIMINGS[@]}"
printf '  %-50s %5ds  (from the loss to both gateways ready)\n' "RTO" "$RTO" | tee -a "$WORK/timings.txt"
printf '  RPO window: %d frames acknowledged by %s after the backup, its sink blocked: %d of them at the sink after the restore\n' \
  "$LATE_FRAMES" "$GW" "$late_at_sink"
printf '  backup %s: %s, %s records in %s'"'"'s spool snapshot\n' "$STAMP" "$(du -sh "$BACKUP" | cut -f1)" "$records" "$GW"
