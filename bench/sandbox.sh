#!/bin/sh
# Start-to-exit of `true` in a busybox rootfs: boxkit's sandbox vs `crun run` on the same
# rootfs vs the floor `unshare -Urmpf --mount-proc chroot ROOTFS /bin/true`, interleaved in
# one hyperfine pass. Prints the median of each and the ratios.
#
# As root (the default): boxkit remaps container root to root's /etc/subuid range, network
# none. crun runs the spec from `crun spec` (host ids, its own network namespace).
# With ROOTLESS_USER=name (a user with a subordinate range): every command runs as that
# user; crun uses `crun spec --rootless`.
#
# Env: BOX (default: the static release build of scripts/build-release.sh), RUNS (default 30), WARMUP (default 5), PRIO (default 1:
# run the pass at nice -20 when root).
set -eu
cd "$(dirname "$0")/.."
BOX=${BOX:-$(bash scripts/build-release.sh)/box}
RUNS=${RUNS:-30}
WARMUP=${WARMUP:-5}
for t in hyperfine crun unshare jq busybox; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done

work=$(mktemp -d /tmp/boxkit-bench.XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
root="$work/bundle/rootfs"
mkdir -p "$root/bin" "$root/etc" "$root/proc" "$root/dev" "$root/sys" "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
: > "$root/etc/hosts"; : > "$root/etc/hostname"; : > "$root/etc/resolv.conf"

as=""
if [ -n "${ROOTLESS_USER:-}" ]; then
  uid=$(id -u "$ROOTLESS_USER"); gid=$(id -g "$ROOTLESS_USER")
  chown -R "$uid:$gid" "$work"
  as="setpriv --reuid=$uid --regid=$gid --init-groups --"
  (cd "$work/bundle" && $as crun spec --rootless)
  label="rootless ($ROOTLESS_USER)"
else
  # Container root is root's subordinate range: own the rootfs by it, as an unpack would.
  # The entry boxkit itself picks (src/run/idmap.rs): "root" or "0" first, then "boxkit".
  base=$(awk -F: '($1=="root"||$1=="0")&&!r{r=$2} $1=="boxkit"&&!b{b=$2} END{print r?r:b}' /etc/subuid)
  [ -n "$base" ] || { echo "root needs an /etc/subuid range (see bench/README.md)" >&2; exit 1; }
  chown -R "$base:$base" "$root"
  (cd "$work/bundle" && crun spec)
  label="root"
fi
cfg="$work/bundle/config.json"
jq '.process.terminal=false | .process.args=["/bin/true"] | .root.path="rootfs" | .root.readonly=false' "$cfg" > "$cfg.new"
mv "$cfg.new" "$cfg"
chmod -R a+rX "$work"
[ -z "$as" ] || chown -R "$uid:$gid" "$work/bundle/config.json"

state="$work/crun-state"
mkdir -p "$state"; [ -z "$as" ] || chown "$uid:$gid" "$state"
# On a machine shared with builds, run the whole pass at nice -20 (root only; PRIO=0 turns it
# off): every command gets the same treatment, and the ratios stop swinging with other
# processes' load. (Not a real-time class: crun cannot move an RT task into a cpu cgroup.)
rt=""
if [ "${PRIO:-1}" = 1 ] && [ "$(id -u)" = 0 ]; then
  rt="nice -n -20"
fi
$rt hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$work/out.json" \
  -n boxkit "$as $BOX sandbox-run --rootfs $root -- /bin/true" \
  -n crun "$as crun --root $state run --bundle $work/bundle bench-$$" \
  -n floor "$as unshare -Urmpf --mount-proc chroot $root /bin/true" >&2

echo "sandbox start-to-exit of true, $label, median of $RUNS runs:"
jq -r '.results as $r
  | ($r[] | select(.command=="boxkit") | .median) as $b
  | ($r[] | select(.command=="crun") | .median) as $c
  | ($r[] | select(.command=="floor") | .median) as $f
  | "  boxkit \($b*1000|.*100|round/100) ms   crun \($c*1000|.*100|round/100) ms   floor \($f*1000|.*100|round/100) ms",
    "  boxkit/crun \($b/$c|.*100|round/100)   boxkit/floor \($b/$f|.*100|round/100)"' "$work/out.json"
