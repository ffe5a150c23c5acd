# shellcheck shell=bash
# Checks shared by the backup/restore drills (scripts/ops/backup_drill.sh on the lab,
# scripts/ops/rehearsal_dr.sh on the production rehearsal): what a backup must hold and what a
# restore must bring back. Sourced; each check prints why it failed and returns 1.

# sim_report TEXT: the JSON report of `nanogridata-sim --json` (its last line starting with "{").
sim_report() { grep '^{' <<<"$1" | tail -1; }

# sim_all_acked REPORT N: every one of N frames acknowledged as accepted, none lost.
sim_all_acked() {
  python3 -c 'import json, sys
r = json.loads(sys.argv[1])
sys.exit(0 if r["acked_ok"] == int(sys.argv[2]) and r["lost"] == 0 else f"not all {sys.argv[2]} frames accepted: {r}")' "$1" "$2"
}

# sim_all_refused REPORT N: every one of N frames sent again refused (duplicate or stale), none
# accepted: the gateway's replay state knows them.
sim_all_refused() {
  python3 -c 'import json, sys
r = json.loads(sys.argv[1])
n = int(sys.argv[2])
sys.exit(0 if r["duplicates"] + r["stale"] == n and r["acked_ok"] == 0 else f"old frames not refused as duplicates (replay state not back): {r}")' "$1" "$2"
}

# manifest_gateway_ok MANIFEST: a gateway's backup has an integrity-checked spool snapshot and
# its secrets, encrypted with age.
manifest_gateway_ok() {
  grep -q '^spool_integrity=ok$' "$1" || { echo "$1: the spool snapshot is not integrity-checked" >&2; return 1; }
  grep -q '^secrets=encrypted(age):' "$1" || { echo "$1: the secrets are not in the backup, encrypted" >&2; return 1; }
}
