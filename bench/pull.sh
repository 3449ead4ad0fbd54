#!/bin/sh
# Pull benchmark: a ~130 MB (49 MB compressed) six-layer Debian image (the debootstrap fixture,
# split by bench/pull-image.py) from a local docker-registry on 127.0.0.1 into an empty store.
#
#   boxkit (download)   box pull --no-unpack          vs  skopeo copy docker://… oci:DIR
#   boxkit (ready)      box pull (unpacks as it goes)  vs  podman pull (overlay; unpacks too)
#
# and the same root filesystem as ONE layer (~49 MB gz, ~128 MB, ~7,000 files; as
# debian:bookworm on Docker Hub, bench/pull-image.py --single), issue 14's first row:
#
#   boxkit (1 layer)    box pull                       vs  podman pull
#   floor               tar -xzf of that layer blob into an empty dir (no pull, no store)
#
# hyperfine -N, one warm-up round, then RUNS (>= 5) interleaved rounds: each round runs every
# command once, in a random order (bench/interleave.py), each after a --prepare that gives it
# an empty destination. The previous round's destination is renamed into a trash directory,
# deleted when the pass ends: this VM's root filesystem is ext4 without a journal, where each
# new inode skips every inode of its block group freed in the last one to six minutes
# (`recently_deleted`), so deleting ~7,000 files before every command made each later create in
# that area slower, round after round, for every tool (bench/README.md, "Session 16"). Prints
# medians and ratios. Needs root (debootstrap fixture, podman storage), hyperfine, skopeo,
# podman, docker-registry, python3; builds target/release/box.
#
# Usage: bench/pull.sh [RUNS]
set -eu
cd "$(dirname "$0")/.."
RUNS=${1:-5}
OUT=$PWD/bench/out/pull
mkdir -p "$OUT"
chmod 755 "$PWD/bench/out" "$OUT"

ROOTFS=$(bash tests/fixtures/images/make-debian.sh)
[ -f "$OUT/image/index.json" ] || python3 bench/pull-image.py "$ROOTFS" "$OUT/image"
[ -f "$OUT/image1/index.json" ] || python3 bench/pull-image.py "$ROOTFS" "$OUT/image1" --single
LAYER1=$(ls -S "$OUT"/image1/blobs/sha256/* | head -n1)
cargo build --release --quiet --bin box
BOX=$PWD/target/release/box

# A registry of our own on a free port; killed on exit.
rm -rf "$OUT/registry"
. bench/registry.sh
REG_PID=""
TRASH=$OUT/trash
rm -rf "$TRASH"
mkdir -p "$TRASH"
trap '[ -z "$REG_PID" ] || kill $REG_PID 2>/dev/null || true; rm -rf "$TRASH"' EXIT INT TERM
start_registry "$OUT/registry"
IMAGE=$REG/bench/debian:latest
skopeo copy -q --dest-tls-verify=false "oci:$OUT/image:latest" "docker://$IMAGE"
IMAGE1=$REG/bench/debian-single:latest
skopeo copy -q --dest-tls-verify=false "oci:$OUT/image1:latest" "docker://$IMAGE1"

printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$REG" > "$OUT/registries.conf"
chmod 644 "$OUT/registries.conf"
export BOX_REGISTRIES_CONF=$OUT/registries.conf

# aside DIR [CMD]: rename DIR into the trash (under the renaming shell's pid), then run CMD
# (default: make DIR again, empty).
aside() { echo "sh -c 'if [ -e $1 ]; then mv $1 $TRASH/\$\$; fi; ${2:-mkdir -p $1}'"; }
PODMAN="podman --root $OUT/podman/root --runroot $OUT/podman/run --storage-driver overlay --tmpdir $OUT/podman/tmp"

BOX_DL="$BOX --root $OUT/box-dl pull -q --no-unpack $IMAGE"
BOX_READY="$BOX --root $OUT/box-ready pull -q $IMAGE"
SKOPEO="skopeo copy -q --src-tls-verify=false docker://$IMAGE oci:$OUT/skopeo:latest"
PODMAN_PULL="$PODMAN pull -q --tls-verify=false $IMAGE"
BOX_ONE="$BOX --root $OUT/box-one pull -q $IMAGE1"
PODMAN_ONE="$PODMAN pull -q --tls-verify=false $IMAGE1"
FLOOR="tar --no-same-owner -xzf $LAYER1 -C $OUT/floor --exclude=./dev/*"

# The rounds: every command once a round, in a random order (bench/interleave.py), so that no
# command always runs right after the same other one and its writeback (boxkit's download
# followed the floor's tar -x until it did).
rounds() { # ROUNDS JSON
    python3 bench/interleave.py --rounds "$1" --runs 1 --warmup 0 --export-json "$2" \
        -p "$(aside "$OUT/box-dl")" -n boxkit-download "$BOX_DL" \
        -p "$(aside "$OUT/skopeo" true)" -n skopeo-copy "$SKOPEO" \
        -p "$(aside "$OUT/box-ready")" -n boxkit-ready "$BOX_READY" \
        -p "$(aside "$OUT/podman" true)" -n podman-pull "$PODMAN_PULL" \
        -p "$(aside "$OUT/box-one")" -n boxkit-one "$BOX_ONE" \
        -p "$(aside "$OUT/podman" true)" -n podman-one "$PODMAN_ONE" \
        -p "$(aside "$OUT/floor")" -n floor-tar-x "$FLOOR"
}
rm -f "$OUT"/round-*.json "$OUT"/rounds.json
echo "load before: $(cat /proc/loadavg)"
rounds 1 "$OUT/warmup.json"
rounds "$RUNS" "$OUT/rounds.json"
echo "load after:  $(cat /proc/loadavg)"

# The outputs are real: the same layers in boxkit's store as in skopeo's layout.
python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
def layers(root):
    idx = json.load(open(os.path.join(root, "index.json")))
    m = idx["manifests"][0]["digest"].split(":")[1]
    man = json.load(open(os.path.join(root, "blobs/sha256", m)))
    return [l["digest"] for l in man["layers"]]
assert layers(out + "/box-ready") == layers(out + "/skopeo"), "layer digests differ"
assert len(os.listdir(out + "/box-ready/layers")) >= len(layers(out + "/skopeo")), "not unpacked"
PY

python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
t = {}
for r in json.load(open(out + "/rounds.json"))["results"]:
    t[r["command"]] = r["times"]
med = {k: statistics.median(v) for k, v in t.items()}
print(f"runs: {runs} interleaved rounds after 1 warm-up round")
for k, v in t.items():
    print(f"{k:16} s: " + " ".join(f"{x:.2f}" for x in v))
print()
b, p, f = med["boxkit-one"], med["podman-one"], med["floor-tar-x"]
print("| one-layer Debian, pull + unpack | boxkit s | podman pull s | boxkit/podman | floor tar -x s | floor/podman | goal <= 0.5 |")
print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
print(f"| root | {b:.2f} | {p:.2f} | {b/p:.2f} | {f:.2f} | {f/p:.2f} | {'met' if b/p <= 0.5 else 'MISSED'} |")
print()
print("| comparison | boxkit median s | anchor median s | anchor / boxkit | goal: boxkit faster |")
print("| --- | ---: | ---: | ---: | --- |")
for name, b, a in [("download: box pull --no-unpack vs skopeo copy to oci:", "boxkit-download", "skopeo-copy"),
                   ("ready: box pull (unpack) vs podman pull (overlay)", "boxkit-ready", "podman-pull")]:
    r = med[a] / med[b]
    print(f"| {name} | {med[b]:.2f} | {med[a]:.2f} | {r:.2f}x | {'met' if r > 1 else 'MISSED'} |")
PY
