#!/usr/bin/env bash
# Turns a debootstrapped Debian 12 tree into a host that boots systemd as PID 1 in a container.
# Usage: setup-rootfs.sh ROOTFS  (environment: NGD_APT_SOURCES = the apt sources to install)
# Part of the image recipe: any change here changes the image tag (see build-image.sh).
set -euo pipefail
rootfs="${1:?usage: setup-rootfs.sh ROOTFS}"
[[ -x "$rootfs/lib/systemd/systemd" ]] || { echo "ERROR: $rootfs has no systemd" >&2; exit 1; }

# apt: the same mirrors the build machine uses, including security updates, like a cloud host.
rm -f "$rootfs/etc/apt/sources.list"
printf '%s\n' "${NGD_APT_SOURCES:?NGD_APT_SOURCES is empty}" >"$rootfs/etc/apt/sources.list.d/debian.sources"
# Keep images small and apt quiet about the missing dialog frontend.
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
  >"$rootfs/etc/apt/apt.conf.d/90ngd-no-recommends"

# Every container gets its own machine-id at boot (systemd fills an empty file).
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"

# Units that need a real machine (consoles, kernel filesystems, udev) fail in a container and
# would leave systemd "degraded" instead of "running".
for unit in \
  getty.target console-getty.service getty@tty1.service serial-getty@.service \
  systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
  systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount \
  sys-kernel-tracing.mount sys-fs-fuse-connections.mount dev-hugepages.mount \
  systemd-remount-fs.service systemd-firstboot.service proc-sys-fs-binfmt_misc.automount \
  systemd-binfmt.service systemd-sysusers.service systemd-hwdb-update.service \
  systemd-random-seed.service systemd-timesyncd.service systemd-logind.service; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done

# A blank host has no cached package lists or downloaded packages.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs/etc/hostname"
# ...and lists that look old, so apt's cache_valid_time (Ansible) refreshes them on first use.
rm -f "$rootfs/var/lib/apt/periodic/update-success-stamp"
touch -d @0 "$rootfs/var/lib/apt/lists"
