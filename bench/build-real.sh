#!/bin/bash
# A real build (issue 14): `boxbuild --no-cache` of `FROM debian` + one RUN that apt-get
# installs python3 (and perl, its dependencies: 30 packages, 17 MB of .deb, ~4,000 files) from
# a local file repository, against the same command under
# `boxrun --rm --network none -v REPO:/repo:ro debian sh -c …` — the RUN work itself. The
# ratio boxbuild/boxrun is what a build adds on top of running its step (goal ≤ 1.15). A
# third command, the same RUN in a detached container, writes to the store's disk as the
# build step does: the floor for the work the build cannot move to memory.
#
# The base image is the debootstrap fixture (tests/fixtures/images/make-debian.sh) split into
# gzip layers by bench/pull-image.py and loaded with `box load` from an oci-archive made by
# skopeo. The .deb files are fetched on the host with `apt-get download` (the host runs the
# fixture's release) and indexed with dpkg-scanpackages; the container has no network.
#
# The commands run in interleaved rounds (bench/paired.py); prints medians, the ratios, the
# load average, boxbuild's own per-step breakdown (--progress=plain) of one extra build, and
# how long ago the previous pass deleted its store (see the clean-up below).
# As root by default; ROOTLESS_USER=name runs both as that user (it needs a subordinate id
# range). Env: BOXBUILD, BOXRUN, BOX (default target/release/…), RUNS (default 5), WARMUP
# (default 1), BENCH_TMPDIR (default /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
BOXBUILD=${BOXBUILD:-$PWD/target/release/boxbuild}
BOXRUN=${BOXRUN:-$PWD/target/release/boxrun}
BOX=${BOX:-$PWD/target/release/box}
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
[ -x "$BOXBUILD" ] && [ -x "$BOXRUN" ] && [ -x "$BOX" ] || cargo build --release --bins
for t in skopeo python3 apt-get apt-cache dpkg-scanpackages; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done

# Inputs kept between runs: the image layout and the .deb repository.
OUT=$PWD/bench/out/build-real
mkdir -p "$OUT"
chmod 755 "$PWD/bench/out" "$OUT"
ROOTFS=$(bash tests/fixtures/images/make-debian.sh)
[ -f "$OUT/image/index.json" ] || python3 bench/pull-image.py "$ROOTFS" "$OUT/image"
[ -f "$OUT/debian.tar" ] ||
  skopeo copy -q "oci:$OUT/image:latest" "oci-archive:$OUT/debian.tar:debian:latest"
PKGS=${PKGS:-python3}
repo=$OUT/repo
if [ ! -f "$repo/Packages" ]; then
  rm -rf "$repo.tmp" && mkdir -p "$repo.tmp"
  # Every dependency the minbase image lacks (its dpkg status names what it has).
  tar -xOf "$ROOTFS" ./var/lib/dpkg/status | awk '/^Package:/ {print $2}' | sort -u \
    > "$repo.tmp/installed"
  # shellcheck disable=SC2086
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances $PKGS | grep '^[a-z0-9]' | sort -u \
    | comm -23 - "$repo.tmp/installed" > "$repo.tmp/need"
  (cd "$repo.tmp" && xargs apt-get download -q < need >/dev/null 2>&1)
  rm "$repo.tmp/installed" "$repo.tmp/need"
  (cd "$repo.tmp" && dpkg-scanpackages -m . > Packages 2>/dev/null)
  chmod -R a+rX "$repo.tmp"
  mv "$repo.tmp" "$repo"
fi

# BENCH_TMPDIR puts the store elsewhere, e.g. on a tmpfs (/dev/shm): boxrun's writable layer
# is always a tmpfs, a build's is in the store, so this shows what the store's filesystem
# costs the build's RUN.
work=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/boxkit-bench-real.XXXXXX")
chmod 755 "$work"
# The previous pass's clean-up deleted thousands of inodes. ext4 without a journal (this VM's
# root) skips inodes freed in the last 60 s (360 s while their table block is dirty) at every
# create, so a pass started sooner pays for it in the disk-backed commands only.
stamp=$OUT/last-cleanup
if [ -f "$stamp" ]; then
  echo "seconds since the previous pass deleted its store: $(($(date +%s) - $(cat "$stamp")))"
fi
trap '[ -n "${KEEP:-}" ] || { rm -rf "$work" 2>/dev/null; date +%s > "$stamp"; } || true' EXIT
ctx=$work/ctx
mkdir -p "$ctx"
cp -r "$repo" "$ctx/repo"
# The step: the file repository as the only source, then the install.
cmd="echo 'deb [trusted=yes] file:/repo ./' > /etc/apt/sources.list && rm -f /etc/apt/sources.list.d/* && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PKGS >/dev/null"
printf 'FROM debian\nRUN --mount=type=bind,source=repo,target=/repo %s\n' "$cmd" > "$ctx/Boxfile"

. bench/rootless.sh
rootless_setup "$work"
$as "$BOX" --root "$work/store" load -q -i "$OUT/debian.tar" >/dev/null
build="$as $BOXBUILD --root $work/store --no-cache -q -t real $ctx"
run="$as $BOXRUN --root $work/store --rm --network none -v $ctx/repo:/repo:ro debian sh -c \"$cmd\""
# The same-work floor: the same RUN in a detached container (`boxrun -d`, then `box wait`),
# whose writable layer is kept on the store's disk as a build step's is (a foreground boxrun
# writes to a tmpfs, --rm or not). Its containers stay until the end, as the build's
# set-aside layer trees do.
cat > "$work/disk.sh" <<DISK
#!/bin/sh
id=\$("$BOXRUN" --root "$work/store" -d --network none -v "$ctx/repo:/repo:ro" debian sh -c "$cmd") &&
  exec "$BOX" --root "$work/store" wait "\$id" >/dev/null
DISK
disk="$as sh $work/disk.sh"

# One build with the per-step breakdown (this also unpacks the base layers once).
$as "$BOXBUILD" --root "$work/store" --no-cache --progress=plain -t real "$ctx" 2>&1 \
  | grep -E 'run [0-9]+ms' || true

# Interleaved rounds (bench/paired.py: every command once per round, order reversed every
# other round): hyperfine runs one command's runs back to back, and the first block then
# absorbs whatever the set-up left the disk doing.
echo "real build ($PKGS from a file repo), $label, median of $RUNS interleaved rounds:"
python3 bench/paired.py --warmup "$WARMUP" "$RUNS" "boxrun-rm=$run" "boxbuild=$build" \
  "boxrun-disk=$disk"
echo "boxbuild/boxrun-rm is the goal's ratio (<= 1.15); boxrun-disk is the same RUN with its"
echo "writable layer on the store's disk, as a build step's is."
echo "load: $(cat /proc/loadavg)"
