# shellcheck shell=bash
# Shared by terraform/ci/*.sh: puts the pinned tofu (built and cached by tools/install-tofu.sh) and
# its offline provider mirror on this shell's PATH / TF_CLI_CONFIG_FILE.
#   source "$REPO_ROOT/terraform/ci/lib.sh"; tofu_env

tofu_env() {
  local env_lines
  env_lines=$("$REPO_ROOT/terraform/tools/install-tofu.sh" --print-env) || die "installing tofu failed (terraform/tools/install-tofu.sh)"
  eval "$env_lines"
  require_cmd tofu "terraform/tools/install-tofu.sh did not put it on PATH"
}

# tofu_init DIR: init DIR from the mirror without a backend, keeping .terraform out of the tree
# (TF_DATA_DIR must stay set for the tofu commands that follow in DIR).
tofu_init() {
  local dir=$1
  TF_DATA_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ngd-tofu-data.XXXXXX")"
  export TF_DATA_DIR
  tofu -chdir="$dir" init -backend=false -input=false -no-color >"$TF_DATA_DIR/init.log" 2>&1 \
    || { cat "$TF_DATA_DIR/init.log" >&2; die "tofu init failed in $dir"; }
}
