#!/bin/sh
# `boxrun --rm busybox true` with the image present locally, vs `podman run --rm busybox true`
# vs `crun run` on the same rootfs, in one hyperfine pass; prints medians, ratios, and
# boxrun's peak RSS.
#
# The image is made here from /bin/busybox with umoci and skopeo (independent of boxkit) and
# loaded into a fresh boxkit store and a fresh podman store (vfs, its own --root/--runroot);
# `umoci unpack` of the same image gives crun's bundle. boxrun and podman run with their
# default network (bridge) and, as a second pair, with --network none; crun's default spec has
# its own network namespace with only lo (like --network none).
#
# As root (the default). With ROOTLESS_USER=name (a user with a subordinate range) every
# command runs as that user (crun with `crun spec --rootless`-style bundle from umoci
# --rootless).
#
# Env: BOXRUN/BOX (default: the static release build of scripts/build-release.sh), RUNS (default 20), WARMUP (default 3).
set -eu
cd "$(dirname "$0")/.."
if [ -z "${BOXRUN:-}" ] || [ -z "${BOX:-}" ]; then
  rel=$(bash scripts/build-release.sh)
  BOXRUN=${BOXRUN:-$rel/boxrun}
  BOX=${BOX:-$rel/box}
fi
RUNS=${RUNS:-20}
WARMUP=${WARMUP:-3}
for t in hyperfine crun podman umoci skopeo jq busybox; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] && bash scripts/host-setup.sh

work=$(mktemp -d /tmp/boxkit-bench-run.XXXXXX)
chmod 755 "$work"
. bench/rootless.sh
rootless_setup "$work" --user-env
pconf="$work/containers.conf"
cleanup() {
  CONTAINERS_CONF=$pconf $as podman --root "$work/p/root" --runroot "$work/p/run" \
    --storage-driver vfs rm -af >/dev/null 2>&1 || true
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

# The image: busybox and its applets, /etc/passwd, Cmd sh.
. bench/busybox-image.sh
busybox_image "$work"
busybox_crun_bundle "$work"
# Root's podman cannot raise rlimits here (see tests/common/podman.rs).
nofile=$(awk '/Max open files/{print $5}' /proc/self/limits)
[ "$nofile" -gt 16384 ] && nofile=16384
printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=16384:16384"]\n[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n' \
  "$nofile" "$nofile" > "$pconf"
mkdir -p "$work/store" "$work/p" "$work/crun-state"
[ -z "$as" ] || chown -R "$uid:$gid" "$work"

pm="env CONTAINERS_CONF=$pconf podman --root $work/p/root --runroot $work/p/run --storage-driver vfs"
$as "$BOX" --root "$work/store" load -q -i "$work/busybox.tar"
$as $pm load -q -i "$work/busybox.tar" >/dev/null
# First runs unpack (boxkit's layer cache, podman's vfs) outside the measurement.
$as "$BOXRUN" --root "$work/store" --rm busybox true
$as $pm run --rm busybox true

hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$work/out.json" \
  -n boxrun "$as $BOXRUN --root $work/store --rm busybox true" \
  -n podman "$as $pm run --rm busybox true" \
  -n boxrun-none "$as $BOXRUN --root $work/store --rm --network none busybox true" \
  -n podman-none "$as $pm run --rm --network none busybox true" \
  -n crun "$as crun --root $work/crun-state run --bundle $work/bundle bench-$$" >&2

# Peak RSS: the largest of the processes wait4() accounts for (boxrun, its agent/tool/container;
# rootless, the keeper and its pasta were started by the first runs above).
peak() {
  for i in 1 2 3; do
    $as /usr/bin/time -f '%M' "$BOXRUN" --root "$work/store" --rm "$@" busybox true 2>&1 >/dev/null | tail -1
  done | sort -n | tail -1
}
rss=$(peak)
rss_none=$(peak --network none)

echo "boxrun --rm busybox true, $label, median of $RUNS runs:"
jq -r --arg rss "$rss" --arg rssn "$rss_none" '.results as $r
  | def m(n): ($r[] | select(.command==n) | .median);
  def ms(x): (x*1000*100|round/100|tostring) + " ms";
  def q(x): (x*100|round/100|tostring);
  "  bridge:  boxrun \(ms(m("boxrun")))   podman \(ms(m("podman")))   podman/boxrun \(q(m("podman")/m("boxrun")))x",
  "  none:    boxrun \(ms(m("boxrun-none")))   podman \(ms(m("podman-none")))   podman/boxrun \(q(m("podman-none")/m("boxrun-none")))x",
  "  crun \(ms(m("crun")))   boxrun-none/crun \(q(m("boxrun-none")/m("crun")))   boxrun(bridge)/crun \(q(m("boxrun")/m("crun")))",
  "  boxrun peak RSS (largest process, /usr/bin/time): bridge \($rss) KiB, none \($rssn) KiB"' "$work/out.json"
