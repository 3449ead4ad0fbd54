#!/bin/bash
# boxbuild vs `buildah bud --layers` on a large build context (issue 14): N small files,
# a Boxfile `FROM busybox` + `COPY . /app` + one RUN. One pass per scenario: WARMUP rounds,
# then RUNS rounds, each running every command once in a random order (bench/interleave.py,
# hyperfine -N timing), so that boxkit and buildah are measured in the same phases of the
# machine and its disk; prints medians, the ratio and the load average:
#   cold     base image present, no build cache (both with --no-cache)
#   cached   fully cached rebuild
# plus, in the same pass as `cached`, the stat() floor: an lstat of every entry of the
# context (GNU find printing each file's mtime and size, which it must lstat to know).
#
# Env: N (files, default 50000; 100 per directory), ROOTLESS_USER=name (run both tools as
# that user, as bench/build.sh does), RUNS (default 5), WARMUP (default 1), BOXBUILD, BOX
# (default target/release/…), SKIP_BUILDAH=1 (boxkit and the floor only: for sizes where
# buildah takes minutes), SKIP_COLD=1 / SKIP_CACHED=1.
set -euo pipefail
cd "$(dirname "$0")/.."
BOXBUILD=${BOXBUILD:-$PWD/target/release/boxbuild}
BOX=${BOX:-$PWD/target/release/box}
N=${N:-50000}
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
[ -x "$BOXBUILD" ] && [ -x "$BOX" ] || cargo build --release --bins
for t in hyperfine buildah skopeo jq python3; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done

work=$(mktemp -d /tmp/boxkit-bench-context.XXXXXX)
chmod 755 "$work"
as=""
cleanup() {
  $as buildah --root "$work/buildah" --runroot "$work/buildah-run" rm --all >/dev/null 2>&1 || true
  $as buildah --root "$work/buildah" --runroot "$work/buildah-run" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

# The base image, made by independent tools (the test fixture generator + skopeo).
python3 tests/fixtures/images/build.py small "$work/images" --busybox /bin/busybox >/dev/null
skopeo copy -q "oci:$work/images/busybox:latest" "oci-archive:$work/busybox.tar:busybox:latest"

ctx="$work/ctx"
python3 - "$ctx" "$N" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = f"{root}/src/d{i // 100:04d}"
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i % 100:03d}.txt", "w") as f:
        f.write(f"small file {i}\n")
with open(f"{root}/Boxfile", "w") as f:
    f.write("FROM busybox\nCOPY . /app\nRUN test -f /app/src/d0000/f000.txt\n")
PY

. bench/rootless.sh
rootless_setup "$work"
B="$as buildah --root $work/buildah --runroot $work/buildah-run"
$as "$BOX" --root "$work/store" load -q -i "$work/busybox.tar" >/dev/null
if [ -z "${SKIP_BUILDAH:-}" ]; then
  $B pull -q "oci-archive:$work/busybox.tar" >/dev/null
  $B tag busybox:latest docker.io/library/busybox:latest
fi

boxbuild="$as $BOXBUILD --root $work/store -q -t bench"
buildah="$B bud -q --layers --isolation chroot -t bench -f $ctx/Boxfile"
floor="$as find $ctx -printf %T@%s"

# Seed both caches, quietly. boxbuild twice: files changed within two seconds of a build are
# hashed again by the next one (racy timestamps), as a fresh checkout would be.
sleep 2
$boxbuild "$ctx" >/dev/null 2>&1
$boxbuild "$ctx" >/dev/null 2>&1
[ -n "${SKIP_BUILDAH:-}" ] || $buildah "$ctx" >/dev/null

run() { # name, extra boxbuild/buildah flags, 1 to add the stat floor
  local name=$1 extra=$2 with_floor=$3
  local args=(-n boxbuild "$boxbuild $extra $ctx")
  [ -n "${SKIP_BUILDAH:-}" ] || args+=(-n buildah "$buildah $extra $ctx")
  [ "$with_floor" = 1 ] && args+=(-n floor "$floor")
  local load0; load0=$(cut -d' ' -f1-3 /proc/loadavg)
  [ "$WARMUP" = 0 ] || python3 bench/interleave.py --rounds "$WARMUP" --runs 1 --warmup 0 \
    --export-json "$work/$name-warmup.json" "${args[@]}" 2>/dev/null
  python3 bench/interleave.py --rounds "$RUNS" --runs 1 --warmup 0 \
    --export-json "$work/$name.json" "${args[@]}" >&2
  jq -r '.results[] | "  \(.command): \([.times[] | .*1000 | round] | join(" ")) ms"' "$work/$name.json" >&2
  jq -r --arg n "$name" --arg load "$load0 → $(cut -d' ' -f1-3 /proc/loadavg)" '.results as $r
    | def med(c): ([$r[] | select(.command==c) | .median] | first);
    (med("boxbuild")) as $a | (med("buildah")) as $b | (med("floor")) as $f
    | "| \($n) | \($a*1000|round) | \(if $b then ($b*1000|round) else "—" end) | \(if $b then ($a/$b*1000|round/1000) else "—" end) | \(if $f then ($f*1000|round) else "" end) | \($load) |"' \
    "$work/$name.json" >> "$work/table"
}

echo "| scenario | boxbuild ms | buildah ms | ratio | stat floor ms | load (before → after) |" > "$work/table"
echo "| --- | ---: | ---: | ---: | ---: | --- |" >> "$work/table"
[ -n "${SKIP_CACHED:-}" ] || run cached "" 1
[ -n "${SKIP_COLD:-}" ] || run cold --no-cache 0

echo "context of $N files, $label, median of $RUNS interleaved rounds (ratio = boxbuild/buildah):"
cat "$work/table"
