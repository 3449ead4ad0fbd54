#!/bin/sh
# Issue 14's start row: `boxrun --rm --network none busybox true` (image in the store, layers
# unpacked) against the floor `unshare -Urmpf --mount-proc chroot ROOTFS /bin/true`, and the
# floor with every namespace boxrun makes (`unshare -Urmpfn --ipc --uts --cgroup`), and the
# "same work" floor bench/floor/docker-floor.c (every namespace, the overlay, /proc, /sys, /dev,
# the /etc binds, docker's masks, pivot_root, a seccomp filter, in one static C process: the
# kernel work of a docker-default start with nothing else) and its `--tool` variant, the design
# floor (the same work behind a tool process in a user and mount namespace of its own, which
# relays the exit status: boxkit's process structure, with none of its code), in interleaved
# rounds of hyperfine
# (bench/interleave.py: BURST runs of each command a round, in a random order).
# Then the scaling rows: boxrun of images with 1, 10 and 100 layers. For reference, not a goal:
# `crun run` (the anchors' C runtime) on umoci's unpack of the same image with crun's own
# default spec (`crun spec`, `--rootless` for a user), as bench/boxrun.sh runs it: the fastest
# runtime of the field given a ready bundle, with no store and no image. And `/bin/true`, to
# compare passes on different boots: what a process start costs on the machine at the time.
# And the cost of a `cpuid` on this machine (bench/floor/cpuid.c), which a VM's hypervisor
# decides: glibc executes dozens in every process start, the floor starts one glibc program
# more than boxrun, so the pass also prints its ratio with those exits taken out.
#
# The binaries are what a user installs: `cargo build --release` (BOXRUN/BOX to override, e.g.
# with scripts/build-release.sh's static build). As root by default; ROOTLESS_USER=name runs
# every command as that user (one with a subordinate range). Prints medians, the ratios, the
# load average and the hypervisor's steal during the pass. Env: RUNS (default 40), BURST (runs
# of a command in a row, default 5), WARMUP (warm-up runs before each burst, default 1),
# LAYERS (default "1 10 100").
set -eu
cd "$(dirname "$0")/.."
if [ -z "${BOXRUN:-}" ] || [ -z "${BOX:-}" ]; then
  cargo build --release --quiet --bins
  BOXRUN=${BOXRUN:-$PWD/target/release/boxrun}
  BOX=${BOX:-$PWD/target/release/box}
fi
RUNS=${RUNS:-40}
WARMUP=${WARMUP:-1}
BURST=${BURST:-5}
LAYERS=${LAYERS:-1 10 100}
for t in hyperfine unshare jq busybox umoci skopeo cc crun; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] && bash scripts/host-setup.sh

work=$(mktemp -d /tmp/boxkit-bench-start.XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
. bench/busybox-image.sh
busybox_image "$work"
mkdir -p "$work/src/proc" "$work/src/dev" "$work/src/sys" "$work/scratch"
cc -O2 -static -o "$work/docker-floor" bench/floor/docker-floor.c
cc -O2 -o "$work/cpuid" bench/floor/cpuid.c

# Images of N layers: the busybox layer, then N-1 layers of one small file each (GNU tar,
# umoci; independent of boxkit), each saved as an OCI archive tagged layersN:latest.
for n in $LAYERS; do
  [ "$n" -gt 1 ] || continue
  d="$work/l$n"
  mkdir -p "$d"
  cp -r "$work/layout" "$d/layout"
  i=1
  while [ "$i" -lt "$n" ]; do
    mkdir -p "$d/t$i/etc/layers"
    echo "$i" > "$d/t$i/etc/layers/$i"
    tar -C "$d/t$i" -cf "$d/t$i.tar" .
    umoci raw add-layer --image "$d/layout:latest" "$d/t$i.tar" >/dev/null
    i=$((i + 1))
  done
  skopeo copy -q "oci:$d/layout:latest" "oci-archive:$d/img.tar:layers$n:latest"
done

. bench/rootless.sh
rootless_setup "$work" --user-env
busybox_crun_bundle "$work"
mkdir -p "$work/crun-state"
[ -z "$as" ] || chown "$uid:$gid" "$work/crun-state"
store="$work/store"
$as "$BOX" --root "$store" load -q -i "$work/busybox.tar"
for n in $LAYERS; do
  [ "$n" -gt 1 ] && $as "$BOX" --root "$store" load -q -i "$work/l$n/img.tar"
done
# First runs unpack the layers (and write the probe's result) outside the measurement.
$as "$BOXRUN" --root "$store" --rm --network none busybox true
for n in $LAYERS; do
  [ "$n" -gt 1 ] && $as "$BOXRUN" --root "$store" --rm --network none "layers$n" true
done

set -- -n boxrun "$as $BOXRUN --root $store --rm --network none busybox true" \
  -n floor "$as unshare -Urmpf --mount-proc $(command -v chroot) $work/src /bin/true" \
  -n floor-allns "$as unshare -Urmpfn --ipc --uts --cgroup --mount-proc $(command -v chroot) $work/src /bin/true" \
  -n floor-docker "$as $work/docker-floor $work/src $work/scratch" \
  -n floor-design "$as $work/docker-floor --tool $work/src $work/scratch" \
  -n crun "$as crun --root $work/crun-state run --bundle $work/bundle bench-$$" \
  -n true "$as /bin/true"
for n in $LAYERS; do
  [ "$n" -gt 1 ] && set -- "$@" -n "layers$n" "$as $BOXRUN --root $store --rm --network none layers$n true"
done
load0=$(cut -d' ' -f1-3 /proc/loadavg)
cpuid0=$("$work/cpuid" cost)
# RUNS runs of each command in rounds of BURST, the commands in a random order each round
# (bench/interleave.py): every command is measured in every phase of the pass.
python3 bench/interleave.py --rounds "$(((RUNS + BURST - 1) / BURST))" --runs "$BURST" \
  --warmup "$WARMUP" --export-json "$work/out.json" "$@" >&2
load1=$(cut -d' ' -f1-3 /proc/loadavg)
cpuid1=$("$work/cpuid" cost)
# The cpuid instructions of one glibc process start (the container's busybox: static glibc;
# dynamic glibc programs execute as many), counted by single-stepping it.
glibc=$("$work/cpuid" count "$work/src/bin/busybox" true 2>/dev/null)
prefix=0
[ -z "$as" ] || prefix=1
rss=$(for i in 1 2 3; do
  $as /usr/bin/time -f '%M' "$BOXRUN" --root "$store" --rm --network none busybox true 2>&1 >/dev/null | tail -1
done | sort -n | tail -1)

echo "start, $label, $RUNS runs, load average before: $load0, after: $load1"
jq -r --arg rss "$rss" --argjson c0 "$cpuid0" --argjson c1 "$cpuid1" --argjson g "$glibc" \
  --argjson pfx "$prefix" '"  steal (CPU time the host gave to other guests) during the pass: \(.steal_percent) %",
  .results as $r
  | def m(n): ($r[] | select(.command==n) | .median);
  def ms(x): (x*1000*100|round/100|tostring) + " ms";
  def q(x): (x*100|round/100|tostring);
  # Seconds per cpuid, and a command without its cpuid exits: the glibc programs each command
  # starts (boxrun 2: itself and the container busybox, plus 3 cpuids of sha2 feature check in
  # its helper; the floors 3: unshare, chroot, busybox; the docker floors 2; setpriv, the
  # rootless prefix, 1 more each), counted whole in bench/README.md (session 18).
  def c: ($c0 + $c1) / 2 / 1000000;
  def starts: {"boxrun": 2, "floor": 3, "floor-docker": 2, "floor-design": 2};
  def x(n): m(n) - (((starts[n] + $pfx) * $g + (if n == "boxrun" then 3 else 0 end)) * c);
  "  boxrun --rm --network none busybox true: \(ms(m("boxrun")))",
  "  floor  unshare -Urmpf --mount-proc chroot: \(ms(m("floor")))   boxrun/floor \(q(m("boxrun")/m("floor")))x (goal <= 1.5x)",
  "  floor with every namespace boxrun makes: \(ms(m("floor-allns")))   boxrun/that \(q(m("boxrun")/m("floor-allns")))x",
  "  same-work floor (bench/floor/docker-floor.c): \(ms(m("floor-docker")))   that/floor \(q(m("floor-docker")/m("floor")))x   boxrun/that \(q(m("boxrun")/m("floor-docker")))x",
  "  design floor (the same work behind a tool process in its own user and mount namespace, docker-floor.c --tool): \(ms(m("floor-design")))   that/floor \(q(m("floor-design")/m("floor")))x   boxrun/that \(q(m("boxrun")/m("floor-design")))x",
  "  reference, crun run on a ready bundle (its default spec): \(ms(m("crun")))   crun/floor \(q(m("crun")/m("floor")))x   boxrun/crun \(q(m("boxrun")/m("crun")))x",
  "  reference, a process start on this machine (the same prefix, /bin/true): \(ms(m("true")))",
  ($r[] | select(.command|startswith("layers")) | "  \(.command): \(ms(.median))   per layer over busybox: \(((.median - m("boxrun"))*1000000/((.command|ltrimstr("layers")|tonumber)-1))|round) us"),
  "  boxrun peak RSS: \($rss) KiB (goal <= 16 MB)",
  "  cpuid exits: \($c0) us each before the pass, \($c1) after; a glibc process start executes \($g) of them (\(ms($g * c)))",
  "  with the cpuid exits taken out (an estimate of a host where they cost nothing): boxrun \(ms(x("boxrun"))), floor \(ms(x("floor"))), boxrun/floor \(q(x("boxrun") / x("floor")))x; design floor \(ms(x("floor-design"))), boxrun/that \(q(x("boxrun") / x("floor-design")))x"' "$work/out.json"
