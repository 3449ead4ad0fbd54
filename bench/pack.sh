#!/bin/sh
# Pack benchmark: `box layer pack` (tar + parallel gzip + both digests in one pass) against
# GNU `tar -c | gzip` (level 6, gzip's default) on the same ~1 GiB tree, in the same
# pass, in interleaved rounds (hyperfine -N, one warm-up round, RUNS >= 5 rounds). Both write to files on the same filesystem.
#
# Usage: bench/pack.sh [RUNS]     (needs hyperfine, python3; builds target/release/box)
# The tree is generated once by bench/pack-tree.py into bench/out/tree.
set -eu
cd "$(dirname "$0")/.."
RUNS=${1:-5}
OUT=bench/out
TREE=$OUT/tree
mkdir -p "$OUT"
[ -d "$TREE" ] || python3 bench/pack-tree.py "$TREE"
cargo build --release --quiet --bin box
BOX=$PWD/target/release/box

bytes=$(du -sb --apparent-size "$TREE" | cut -f1)
files=$(find "$TREE" -type f | wc -l)
echo "tree: $TREE, $files files, $bytes bytes; $(nproc) cores; gzip $(gzip --version | head -1)"

# hyperfine runs all of one command before the next, so drift on this shared machine would
# favour one side: run one round per hyperfine call instead, both commands each round.
BOX_CMD="$BOX layer pack $TREE --output $OUT/box.tar.gz"
GNU_CMD="sh -c 'tar -C $TREE -cf - . | gzip > $OUT/gnu.tar.gz'"
rm -f "$OUT"/pack-round-*.json
hyperfine -N --runs 1 --style basic -n boxkit "$BOX_CMD" -n tar-gzip "$GNU_CMD" > /dev/null # warm-up
i=1
while [ "$i" -le "$RUNS" ]; do
    hyperfine -N --runs 1 --style none --export-json "$OUT/pack-round-$i.json" \
        -n boxkit "$BOX_CMD" -n tar-gzip "$GNU_CMD" > /dev/null
    i=$((i + 1))
done

# Sizes and validity of the last run's outputs: both must be standard gzip'd tars.
gzip -t "$OUT/box.tar.gz"
tar -tzf "$OUT/box.tar.gz" > /dev/null
box_size=$(stat -c %s "$OUT/box.tar.gz")
gnu_size=$(stat -c %s "$OUT/gnu.tar.gz")

python3 - "$OUT" "$bytes" "$box_size" "$gnu_size" <<'PY'
import glob, json, statistics, sys
times = {"boxkit": [], "tar-gzip": []}
for f in sorted(glob.glob(sys.argv[1] + "/pack-round-*.json")):
    for r in json.load(open(f))["results"]:
        times[r["command"]] += r["times"]
n, box_size, gnu_size = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
b, g = statistics.median(times["boxkit"]), statistics.median(times["tar-gzip"])
print(f"runs: {len(times['boxkit'])} interleaved rounds after 1 warm-up round")
print("boxkit   s:", " ".join(f"{t:.2f}" for t in times["boxkit"]))
print("tar|gzip s:", " ".join(f"{t:.2f}" for t in times["tar-gzip"]))
print()
print("| tool | median s | MB/s (input) | compressed bytes | ratio to input |")
print("| --- | ---: | ---: | ---: | ---: |")
print(f"| boxkit layer pack (gzip) | {b:.2f} | {n / b / 1e6:.0f} | {box_size} | {box_size / n:.3f} |")
print(f"| tar -c \\| gzip -6 | {g:.2f} | {n / g / 1e6:.0f} | {gnu_size} | {gnu_size / n:.3f} |")
print()
print(f"speed-up (tar|gzip median / boxkit median): {g / b:.2f}x  (goal >= 2x: {'met' if g / b >= 2 else 'MISSED'})")
print(f"size: boxkit output is {100 * (box_size / gnu_size - 1):+.2f}% vs gzip -6")
PY
