# shellcheck shell=bash
# The lab host image: Debian 12 built offline (debootstrap from the mirror apt already uses),
# imported into Docker, booting systemd as PID 1. Sourced by scripts/lab.sh (after common.sh).
# The tag is a hash of the recipe (this file, image/), so the image is rebuilt only when the
# recipe changes and a fresh clone reuses the cached one.

LAB_IMAGE_REPO="${NGD_LAB_IMAGE_REPO:-ngd-host}"   # override only to test a cold build aside
LAB_SUITE=bookworm
_LAB_IMAGE_DIR="$REPO_ROOT/scripts/lab/image"

# The recipe's hash: what goes into the image, and nothing else (not the mirror's address, not
# comments here: bash prints the build function without them).
lab_image_ref() {
  local hash
  hash=$( (declare -f _lab_image_build; echo "$LAB_SUITE"
    cat "$_LAB_IMAGE_DIR/packages.txt" "$_LAB_IMAGE_DIR/setup-rootfs.sh") | sha256sum | cut -c1-12)
  printf '%s:%s\n' "$LAB_IMAGE_REPO" "$hash"
}

# lab_image_ensure: build the image unless it is cached; prints nothing on success.
lab_image_ensure() {
  local ref
  ref=$(lab_image_ref)
  "$DOCKER" image inspect "$ref" >/dev/null 2>&1 && return 0
  # One build at a time on a machine: a parallel `up` waits and then finds the image.
  exec {_lab_build_lock}>"$NGD_CACHE/.image-build.lock"
  flock -w 1200 "$_lab_build_lock" || die "timed out waiting for another build of $ref"
  if ! "$DOCKER" image inspect "$ref" >/dev/null 2>&1; then
    _lab_image_build "$ref"
  fi
  exec {_lab_build_lock}>&-
}

_lab_image_build() {
  local ref="$1" t0=$SECONDS mirrors debian_mirror security_mirror packages rootfs
  ensure_apt debootstrap
  mirrors=$("$REPO_ROOT/scripts/lab/host_apt_mirrors.py" --suite "$LAB_SUITE") || die "cannot read apt mirrors"
  debian_mirror="${LAB_MIRROR:-$(sed -n 's/^debian=//p' <<<"$mirrors")}"
  security_mirror="${LAB_SECURITY_MIRROR:-$(sed -n 's/^security=//p' <<<"$mirrors")}"
  packages=$(grep -v '^[[:space:]]*\(#\|$\)' "$_LAB_IMAGE_DIR/packages.txt" | paste -sd, -)
  rootfs="$NGD_CACHE/build/rootfs-${ref#*:}"
  log "building image $ref: debootstrap $LAB_SUITE from $debian_mirror (about 2-4 min, once)"
  as_root rm -rf "$rootfs"
  mkdir -p "$(dirname "$rootfs")"
  if ! as_root debootstrap --variant=minbase --include="$packages" "$LAB_SUITE" "$rootfs" \
      "$debian_mirror" >"$rootfs.log" 2>&1; then
    tail -n 20 "$rootfs.log" >&2
    die "debootstrap failed (full log: $rootfs.log)"
  fi
  local sources
  sources=$(printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: %s\n\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: %s\n' \
    "$debian_mirror" "$LAB_SUITE" "$LAB_SUITE" /usr/share/keyrings/debian-archive-keyring.gpg \
    "$security_mirror" "$LAB_SUITE" /usr/share/keyrings/debian-archive-keyring.gpg)
  as_root env NGD_APT_SOURCES="$sources" "$_LAB_IMAGE_DIR/setup-rootfs.sh" "$rootfs" \
    || die "setup-rootfs.sh failed on $rootfs"
  log "importing $rootfs into Docker as $ref"
  as_root tar -C "$rootfs" --numeric-owner -c . \
    | "$DOCKER" import --change 'ENV container=docker' --change 'CMD ["/lib/systemd/systemd"]' \
        --message "nanogridata lab host, recipe ${ref#*:}" - "$ref" >/dev/null \
    || die "docker import of $rootfs failed"
  as_root rm -rf "$rootfs" "$rootfs.log"
  # Older recipes' images are dead weight; keep any still used by a container.
  local old
  for old in $("$DOCKER" image ls --format '{{.Repository}}:{{.Tag}}' "$LAB_IMAGE_REPO"); do
    [[ "$old" == "$ref" ]] || "$DOCKER" image rm "$old" >/dev/null 2>&1 || true
  done
  ok "image $ref built in $((SECONDS - t0))s"
}
