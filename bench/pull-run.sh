#!/bin/sh
# Pull, then first run: what a user waits for between `docker run debian true` on a fresh
# machine and the container's exit. The image is the debootstrap Debian fixture as ONE layer
# (~49 MB gz, ~128 MB, ~7,000 files; bench/pull-image.py --single), served by a local
# docker-registry on 127.0.0.1.
#
#   boxkit   box pull IMAGE && boxrun --rm --network none IMAGE true
#   podman   podman pull IMAGE && podman run --rm --network none IMAGE true   (overlay)
#   floor    tar -xzf of the same layer blob into an empty directory (the file-creation work
#            both tools must do, with no pull and no container)
#
# Every round starts from empty stores (hyperfine --prepare), interleaved in one pass; prints
# medians, ratios and the load average. The previous round's stores are renamed into a trash
# directory and deleted when the pass ends, not before each command: on this VM's journal-less
# ext4 every create skips the inodes freed nearby in the last minutes, so a deletion before each
# command slowed every later one (bench/pull.sh says more). As root by default;
# ROOTLESS_USER=name runs both tools (and the floor) as that user (it needs a subordinate id
# range), as bench/build.sh does.
#
# PULL_ONLY=1 drops the runs (`box pull` against `podman pull`): issue 14's first row, for a
# rootless user too (bench/pull.sh runs as root only).
#
# Usage: bench/pull-run.sh [RUNS]          Env: BOX, BOXRUN (default target/release/…), PULL_ONLY
set -eu
cd "$(dirname "$0")/.."
RUNS=${1:-5}
ROOTFS=$(bash tests/fixtures/images/make-debian.sh)
[ -n "${BOX:-}" ] || cargo build --release --quiet --bin box --bin boxrun
BOX=${BOX:-$PWD/target/release/box}
BOXRUN=${BOXRUN:-$PWD/target/release/boxrun}
IMGDIR=$PWD/bench/out/pull-single/image
[ -f "$IMGDIR/index.json" ] || { mkdir -p "$(dirname "$IMGDIR")"; python3 bench/pull-image.py "$ROOTFS" "$IMGDIR" --single; }

work=$(mktemp -d /tmp/boxkit-bench-pullrun.XXXXXX)
chmod 755 "$work"
. bench/rootless.sh
rootless_setup "$work" "BOX_REGISTRIES_CONF=$work/registries.conf"
PODMAN="podman --root $work/podman/root --runroot $work/podman/run --storage-driver overlay --tmpdir $work/podman/tmp"
REG_PID=""
cleanup() {
  [ -z "$REG_PID" ] || kill "$REG_PID" 2>/dev/null || true
  $as $PODMAN rm -af >/dev/null 2>&1 || true
  $as $PODMAN rmi -af >/dev/null 2>&1 || true
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# A registry of our own on a free port.
. bench/registry.sh
start_registry "$work/registry"
IMAGE=$REG/bench/debian-single:latest
skopeo copy -q --dest-tls-verify=false "oci:$IMGDIR:latest" "docker://$IMAGE"
printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$REG" > "$work/registries.conf"
chmod 644 "$work/registries.conf"
export BOX_REGISTRIES_CONF=$work/registries.conf
# The floor's input: the layer blob itself (the largest blob of the layout).
LAYER=$(ls -S "$IMGDIR"/blobs/sha256/* | head -n1)
cp "$LAYER" "$work/layer.tar.gz"; chmod 644 "$work/layer.tar.gz"
mkdir -p "$work/trash"
[ -z "$as" ] || chown -R "$uid:$gid" "$work"

UL="--ulimit nofile=20000:20000 --ulimit nproc=16384:16384"
BOXK="$as sh -c '$BOX --root $work/box pull -q $IMAGE >/dev/null && $BOXRUN --root $work/box --rm --network none $IMAGE true'"
POD="$as sh -c '$PODMAN pull -q --tls-verify=false $IMAGE >/dev/null && $PODMAN run --rm --network none $UL $IMAGE true'"
what="pull + first run"
if [ "${PULL_ONLY:-0}" = 1 ]; then
  BOXK="$as sh -c '$BOX --root $work/box pull -q $IMAGE >/dev/null'"
  POD="$as sh -c '$PODMAN pull -q --tls-verify=false $IMAGE >/dev/null'"
  what="pull only"
fi
FLOOR="$as tar --no-same-owner -xzf $work/layer.tar.gz -C $work/floor --exclude=./dev/*"
# aside DIR [CMD]: rename DIR into the trash (under the renaming shell's pid), then run CMD
# (default: make DIR again, empty). podman's store is left as `podman run --rm` leaves it.
aside() { echo "$as sh -c 'if [ -e $1 ]; then mv $1 $work/trash/\$\$; fi; ${2:-mkdir -p $1}'"; }
fresh_box=$(aside "$work/box")
fresh_pod=$(aside "$work/podman" true)
fresh_floor=$(aside "$work/floor")

round() {
    hyperfine -N --runs 1 --style none "$@" \
        --prepare "$fresh_box" -n boxkit "$BOXK" \
        --prepare "$fresh_pod" -n podman "$POD" \
        --prepare "$fresh_floor" -n floor-tar-x "$FLOOR" \
        > /dev/null
}
echo "load before: $(cat /proc/loadavg)"
round # warm-up
i=1
while [ "$i" -le "$RUNS" ]; do
    round --export-json "$work/round-$i.json"
    i=$((i + 1))
done
echo "load after:  $(cat /proc/loadavg)"

python3 - "$work" "$RUNS" "$label" "$what" <<'PY'
import glob, json, statistics, sys
out, runs, label, what = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
t = {}
for f in sorted(glob.glob(out + "/round-*.json")):
    for r in json.load(open(f))["results"]:
        t.setdefault(r["command"], []).extend(r["times"])
med = {k: statistics.median(v) for k, v in t.items()}
print(f"{label}, {what}: {runs} interleaved rounds after 1 warm-up round, fresh stores each")
for k, v in t.items():
    print(f"{k:12} s: " + " ".join(f"{x:.2f}" for x in v))
b, p, f = med["boxkit"], med["podman"], med["floor-tar-x"]
print()
print(f"| {what}, one-layer Debian | boxkit s | podman s | boxkit/podman | floor tar -x s | floor/podman | goal <= 0.5 |")
print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
print(f"| {label} | {b:.2f} | {p:.2f} | {b/p:.2f} | {f:.2f} | {f/p:.2f} | {'met' if b/p <= 0.5 else 'MISSED'} |")
PY
