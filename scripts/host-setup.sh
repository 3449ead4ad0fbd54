#!/usr/bin/env bash
# Global host state the tests need, set up idempotently as root. scripts/test.sh runs it, and the
# podman test helper runs it too, so that a bare `cargo test` as root works. Each item is a
# quirk of this machine kind (Debian 12 VM, no udev, hybrid cgroups); see DESIGN.md §9.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "host-setup.sh: not root, nothing done" >&2
  exit 0
fi

# /dev/net/tun and /dev/fuse are 0600 here (no udev rule made them 0666), which breaks
# rootless pasta/slirp4netns (they open /dev/net/tun as the user) and fuse-overlayfs.
for dev in /dev/net/tun /dev/fuse; do
  [ -c "$dev" ] && chmod 0666 "$dev"
done

# The cgroup layout is hybrid: v1 controllers plus a v2 "unified" mount. hugetlb is attached to
# no v1 hierarchy, so it shows up as a controller of the v2 mount, and crun then refuses to run
# anything ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2").
# Mounting hugetlb as a v1 hierarchy takes it off the v2 mount.
if [ -f /sys/fs/cgroup/unified/cgroup.controllers ] &&
   grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers &&
   ! mountpoint -q /sys/fs/cgroup/hugetlb; then
  mkdir -p /sys/fs/cgroup/hugetlb
  mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
fi

# Unprivileged user namespaces: on by default in Debian 12's kernel; make sure nobody turned
# them off (the knobs exist only on some kernels).
if [ -w /proc/sys/kernel/unprivileged_userns_clone ]; then
  echo 1 > /proc/sys/kernel/unprivileged_userns_clone
fi
if [ -w /proc/sys/user/max_user_namespaces ] &&
   [ "$(cat /proc/sys/user/max_user_namespaces)" -lt 1000 ]; then
  echo 15000 > /proc/sys/user/max_user_namespaces
fi

# binfmt_misc entries for QEMU user emulation (qemu-user-static), so that foreign-architecture
# RUN steps and `podman run --platform` work. PID 1 is not systemd here, so nothing registers
# them at boot. The register lines come from the package's /usr/lib/binfmt.d/*.conf files. We
# write them ourselves instead of running systemd-binfmt, because systemd-binfmt first
# unregisters what it re-registers, which would break emulated processes of parallel tests.
# The F ("fix binary") flag makes the kernel open the interpreter at registration, so it works
# inside mount namespaces and chroots that don't have /usr/libexec/qemu-binfmt.
binfmt=/proc/sys/fs/binfmt_misc
if [ -d "$binfmt" ] && ! [ -e "$binfmt/register" ]; then
  mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null ||
    echo "host-setup.sh: cannot mount binfmt_misc on $binfmt" >&2
fi
if [ -w "$binfmt/register" ]; then
  for arch in aarch64 arm riscv64 ppc64le s390x; do
    conf=
    for c in {/usr/lib,/lib,/etc}/binfmt.d/qemu-"$arch"{,-static}.conf; do
      [ -f "$c" ] && { conf="$c"; break; }
    done
    [ -n "$conf" ] || continue
    line="$(grep -v -e '^[#;]' -e '^[[:space:]]*$' "$conf" | head -n1)"
    name="$(cut -d: -f2 <<<"$line")"
    flags="${line##*:}"
    [[ "$flags" == *F* ]] || line="${line}F"
    entry="$binfmt/$name"
    if [ -e "$entry" ]; then
      # Registered before (by us or another tool): keep it if it is enabled and has F.
      if grep -qx enabled "$entry" && grep -q '^flags:.*F' "$entry"; then
        continue
      fi
      echo -1 > "$entry" 2>/dev/null || true
    fi
    # Test processes may run this at the same time: losing the race (EEXIST) is success.
    if printf '%s' "$line" 2>/dev/null > "$binfmt/register"; then
      echo "host-setup.sh: registered binfmt entry $name from $conf" >&2
    elif ! [ -e "$entry" ]; then
      echo "host-setup.sh: could not register binfmt entry $name from $conf" >&2
      exit 1
    fi
  done
fi
