#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR/../..
# Config stage of terraform/: every environment initialised (offline, from the mirror) and loaded by
# `tofu validate`, then the static security scan (checkov) of all of terraform/.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/scripts/lib/common.sh"
# shellcheck source=terraform/ci/lib.sh
source "$REPO_ROOT/terraform/ci/lib.sh"
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  echo "Usage: ${0##*/}   (tofu init -backend=false + validate per environment; checkov on terraform/)"; exit 0
fi
cd "$REPO_ROOT"
tofu_env

for env_dir in terraform/environments/*/; do
  env_dir=${env_dir%/}
  # A root has its tfvars example; environments/common holds the files the roots link to.
  compgen -G "$env_dir/*.tfvars.example" >/dev/null || continue
  log "tofu init + validate: $env_dir"
  tofu_init "$env_dir"
  tofu -chdir="$env_dir" validate -no-color || die "tofu validate failed in $env_dir"
  rm -rf "$TF_DATA_DIR"
done

# cloud-init user data: rendered by tofu's own templatefile(), loaded by cloud-init's schema check
# (Debian 12's cloud-init, as on the servers' image).
ensure_apt cloud-init
log "cloud-init schema of modules/gateway-pair/cloud-init.yaml.tftpl"
tofu_init terraform/modules/gateway-pair
# Two variants: a host without a key from OpenTofu (it makes its own), and one with a real key pair:
# cloud-init must get the private key byte for byte (YAML indentation), matching the public key.
keydir="$TF_DATA_DIR/hostkey"
mkdir -m 700 "$keydir"
ssh-keygen -q -t ed25519 -N '' -C gw-a -f "$keydir/key" || die "ssh-keygen failed"
for variant in none key; do
  rendered="$TF_DATA_DIR/user-data-$variant.yaml"
  host_key=null
  [[ $variant == key ]] && host_key="{ public = file(\"$keydir/key.pub\"), private = file(\"$keydir/key\") }"
  # tofu console prints a multi-line string as a heredoc: drop the <<EOT / EOT lines.
  echo "templatefile(\"cloud-init.yaml.tftpl\", { hostname = \"gw-a\", host_key = $host_key })" \
    | tofu -chdir=terraform/modules/gateway-pair console | sed '1d;$d' >"$rendered" \
    || die "rendering cloud-init.yaml.tftpl ($variant) with tofu console failed"
  grep -q '^hostname: gw-a$' "$rendered" || die "rendered user data lacks the hostname: $(head -c 300 "$rendered")"
  cloud-init schema --config-file "$rendered" || die "cloud-init rejects the rendered user data ($variant)"
  python3 - "$rendered" "$keydir/key" "$variant" <<'PY' || die "the rendered user data ($variant) does not carry the host key intact"
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
if sys.argv[3] == "none":
    assert "ssh_keys" not in doc and "ssh_genkeytypes" not in doc, doc
else:
    private = open(sys.argv[2]).read()
    public = open(sys.argv[2] + ".pub").read().strip()
    assert doc["ssh_keys"]["ed25519_private"].strip() == private.strip(), "private key altered"
    assert doc["ssh_keys"]["ed25519_public"] == public, "public key altered"
    assert doc["ssh_genkeytypes"] == ["ed25519"] and doc["ssh_deletekeys"] is True, doc
PY
done
rm -rf "$TF_DATA_DIR"

# checkov lives in a venv of its own: its many exact pins must not constrain the shared tool venv.
reqs="$REPO_ROOT/terraform/requirements-checkov.txt"
venv="$NGD_CACHE/checkov-$( (cat "$reqs"; python3 --version) | sha256sum | cut -c1-12)"
if [[ ! -f "$venv/.complete" ]]; then
  log "creating checkov venv $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed"
  "$venv/bin/pip" install -q -r "$reqs" || die "pip install -r $reqs failed"
  touch "$venv/.complete"
fi
checkov() {
  # No Prisma Cloud mappings download, no update check: CI reaches nothing but the registries.
  BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=TRUE \
    "$venv/bin/checkov" --config-file terraform/.checkov.yaml \
    --external-checks-dir terraform/checkov_checks "$@"
}
log "checkov on terraform/ (built-in + project hcloud policies; skips explained in terraform/.checkov.yaml)"
checkov -d terraform --skip-path tests/fixtures/insecure \
  || die "checkov reported failed checks (fix them or explain a skip in terraform/.checkov.yaml)"

# The project policies must really fire: the deliberately insecure fixture has to fail exactly them.
log "checkov project policies reject terraform/tests/fixtures/insecure"
report=$(checkov -d terraform/tests/fixtures/insecure -o json || true)
python3 - "$report" <<'CHECK' || die "checkov's project policies did not reject the insecure fixture as expected"
import json, sys
report = json.loads(sys.argv[1])
failed = sorted((r["check_id"], r["resource"]) for r in report["results"]["failed_checks"])
expected = [
    ("CKV_NGD_1", "hcloud_firewall.open_range"),
    ("CKV_NGD_1", "hcloud_firewall.open_ssh"),
    ("CKV_NGD_2", "hcloud_server.bare"),
    ("CKV_NGD_3", "hcloud_server.bare"),
]
if failed != expected:
    sys.exit(f"expected failures {expected}, got {failed}")
CHECK
ok "terraform config checks passed"
