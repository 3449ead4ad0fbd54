#!/bin/bash
# Issue 16's multi-platform row: a two-platform build (linux/amd64,linux/arm64) of a Boxfile
# with one native build stage (`FROM --platform=$BUILDPLATFORM`) and a final stage whose RUN
# runs under QEMU for arm64, by `boxbuild --platform … -t NAME` against
# `buildah bud --layers --platform … --manifest NAME`, interleaved in one hyperfine pass:
#   cold    no cache on either side: a fresh store (boxkit) / fresh storage (buildah) per run,
#           so the base image is pulled for both platforms each time;
#   cached  the same build again on a warm store / storage: every step from the cache.
# Goals (issue 16): boxkit ≤ 0.5× buildah cold, ≤ 0.1× cached.
#
# The base image is the test suite's multi-arch busybox (tests/fixtures/images/build.py
# multiarch: the host's busybox-static for amd64, Debian's arm64 busybox-static from
# tests/fixtures/images/get-busybox.sh), served by a local docker-registry that mirrors
# docker.io for both tools (BOX_REGISTRIES_CONF / CONTAINERS_REGISTRIES_CONF). Emulation needs
# qemu-user-static and its binfmt entry (scripts/host-setup.sh, run here as root).
#
# With AB=1 it also measures what building the two platforms in parallel gains: the cold
# build with BOX_BUILD_PLATFORM_JOBS=1 (one after the other) against the default (at once)
# (docs/internals.md, "Several platforms in one build").
#
# The binaries are what a user installs: `cargo build --release` (BOXBUILD to override). As
# root. Prints medians, the ratios and the load average. Env: RUNS (default 5), WARMUP
# (default 1), AB.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (buildah's storage, binfmt setup)" >&2; exit 1; }
BOXBUILD=${BOXBUILD:-$PWD/target/release/boxbuild}
[ -x "$BOXBUILD" ] || cargo build --release --quiet --bins
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
for t in hyperfine buildah skopeo jq python3 docker-registry; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
bash scripts/host-setup.sh
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
  { echo "no qemu-aarch64 binfmt entry (install qemu-user-static)" >&2; exit 1; }

work=$(mktemp -d /tmp/boxkit-bench-multi.XXXXXX)
chmod 755 "$work"
REG_PID=
cleanup() {
  [ -z "$REG_PID" ] || kill "$REG_PID" 2>/dev/null || true
  for r in "$work"/bh-*; do
    [ -d "$r/root" ] && buildah --root "$r/root" --runroot "$r/run" rm --all >/dev/null 2>&1
    [ -d "$r/root" ] && buildah --root "$r/root" --runroot "$r/run" rmi --all --force >/dev/null 2>&1
  done
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

# The multi-arch base image, pushed as library/busybox:multiarch.
arm64=$(bash tests/fixtures/images/get-busybox.sh arm64)
python3 tests/fixtures/images/build.py multiarch "$work/img" /bin/busybox "$arm64" >/dev/null
. bench/registry.sh
start_registry "$work/registry"
skopeo copy -q --all --dest-tls-verify=false "oci:$work/img/busybox-multiarch:latest" \
  "docker://$REG/library/busybox:multiarch"
conf=$work/registries.conf
cat > "$conf" <<CONF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "$REG"
insecure = true
CONF
export BOX_REGISTRIES_CONF=$conf CONTAINERS_REGISTRIES_CONF=$conf

ctx=$work/ctx
mkdir -p "$ctx"
cat > "$ctx/Containerfile" <<'BOXFILE'
FROM --platform=$BUILDPLATFORM busybox:multiarch AS build
RUN mkdir /out && seq 1 50000 | md5sum > /out/sum && uname -m > /out/build-arch
FROM busybox:multiarch
COPY --from=build /out /out
RUN uname -m > /arch && seq 1 20000 | md5sum > /check
CMD ["cat", "/arch"]
BOXFILE

plats=linux/amd64,linux/arm64
bb() { echo "$BOXBUILD --root $1 -q --platform $plats -t multi $ctx"; }
bh() {
  echo "buildah --root $1/root --runroot $1/run --storage-driver overlay bud -q --layers --platform $plats --manifest multi $ctx"
}
# Fresh storage for a cold run; for buildah, its containers and images are removed first so
# no overlay mount is left under the directory.
bh_reset() {
  echo "sh -c 'buildah --root $1/root --runroot $1/run rm --all >/dev/null 2>&1; buildah --root $1/root --runroot $1/run rmi --all --force >/dev/null 2>&1; rm -rf $1'"
}
# A cached run rebuilds into the manifest list: remove the list first, keep the layers.
bh_nolist() {
  echo "sh -c 'buildah --root $1/root --runroot $1/run manifest rm multi >/dev/null 2>&1 || true'"
}

# Warm stores for the cached runs, and one check that both tools build the same thing.
eval "$(bb "$work/box-warm")" >/dev/null
eval "$(bh "$work/bh-warm")" >/dev/null

load0=$(cut -d' ' -f1-3 /proc/loadavg)
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$work/out.json" \
  --prepare "rm -rf $work/box-cold" -n box-cold "$(bb "$work/box-cold")" \
  --prepare "$(bh_reset "$work/bh-cold")" -n buildah-cold "$(bh "$work/bh-cold")" \
  --prepare true -n box-cached "$(bb "$work/box-warm")" \
  --prepare "$(bh_nolist "$work/bh-warm")" -n buildah-cached "$(bh "$work/bh-warm")" >&2
load1=$(cut -d' ' -f1-3 /proc/loadavg)

echo "multi-platform build (linux/amd64,linux/arm64; arm64 RUN under QEMU), root, median of $RUNS runs"
echo "load average before: $load0, after: $load1"
jq -r '.results as $r
  | def m(n): ($r[] | select(.command==n) | .median);
  def ms(x): (x*1000|round|tostring) + " ms";
  def q(x): (x*1000|round/1000|tostring);
  "| case | boxbuild | buildah bud --manifest | ratio | goal |",
  "| --- | --- | --- | --- | --- |",
  "| cold | \(ms(m("box-cold"))) | \(ms(m("buildah-cold"))) | \(q(m("box-cold")/m("buildah-cold"))) | <= 0.5 |",
  "| cached | \(ms(m("box-cached"))) | \(ms(m("buildah-cached"))) | \(q(m("box-cached")/m("buildah-cached"))) | <= 0.1 |"' \
  "$work/out.json"

[ -n "${AB:-}" ] || exit 0
# Parallel platforms: the same cold two-platform build with its platforms one after the other
# (BOX_BUILD_PLATFORM_JOBS=1) and at once (the default), each in a fresh store.
seq_cmd="env BOX_BUILD_PLATFORM_JOBS=1 $(bb "$work/ab")"
par_cmd="$(bb "$work/ab")"
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$work/ab.json" \
  --prepare "rm -rf $work/ab" -n sequential "$seq_cmd" \
  --prepare "rm -rf $work/ab" -n parallel "$par_cmd" >&2
echo "two-platform build, cold, platforms one after the other vs at once (load now: $(cut -d' ' -f1-3 /proc/loadavg)):"
jq -r '.results as $r
  | def m(n): ($r[] | select(.command==n) | .median);
  "| sequential (BOX_BUILD_PLATFORM_JOBS=1) | \(m("sequential")*1000|round) ms |\n| parallel | \(m("parallel")*1000|round) ms |\n| parallel/sequential | \(m("parallel")/m("sequential")*1000|round/1000) |"' \
  "$work/ab.json"
