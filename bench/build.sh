#!/bin/bash
# boxbuild vs `buildah bud --layers` on the same Boxfile and context, in one hyperfine pass per
# scenario (both tools interleaved), printing medians and ratios. Scenarios (issue 6):
#   cold     base image present, no build cache (both with --no-cache)
#   cached   fully cached rebuild
#   touch    rebuild after touching one file without changing it (every step must hit)
#   edit     rebuild after editing one small file (the COPY and the RUNs after it rerun)
# then boxbuild's peak RSS (GNU time) for a cold build of a context holding a 1 GiB file.
#
# Boxfile: busybox base, COPY of 200 small files plus a 20 MB file, three RUN steps (one
# writes 200 files, one deletes some), then ENV, WORKDIR and CMD.
#
# As root by default; ROOTLESS_USER=name runs both tools as that user (it needs a subordinate
# id range). Env: BOXBUILD, BOX (default target/release/…), RUNS (default 5), WARMUP
# (default 1), SKIP_RSS=1 to skip the 1 GiB RSS run.
set -euo pipefail
cd "$(dirname "$0")/.."
BOXBUILD=${BOXBUILD:-$PWD/target/release/boxbuild}
BOX=${BOX:-$PWD/target/release/box}
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
[ -x "$BOXBUILD" ] && [ -x "$BOX" ] || cargo build --release --bins
for t in hyperfine buildah skopeo jq python3 /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done

work=$(mktemp -d /tmp/boxkit-bench-build.XXXXXX)
chmod 755 "$work"
cleanup() {
  $as buildah --root "$work/buildah" --runroot "$work/buildah-run" rm --all >/dev/null 2>&1 || true
  $as buildah --root "$work/buildah" --runroot "$work/buildah-run" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$work" 2>/dev/null || true
}
as=""
trap cleanup EXIT

# The base image, made by independent tools (the test fixture generator + skopeo).
python3 tests/fixtures/images/build.py small "$work/images" --busybox /bin/busybox >/dev/null
skopeo copy -q "oci:$work/images/busybox:latest" "oci-archive:$work/busybox.tar:busybox:latest"

ctx="$work/ctx"
mkdir -p "$ctx/data"
for i in $(seq -w 1 200); do echo "small file $i" > "$ctx/data/f$i.txt"; done
head -c 20000000 /dev/urandom > "$ctx/data/big.bin"
cat > "$ctx/Boxfile" <<'EOF'
FROM busybox
COPY data/ /app/data/
RUN mkdir -p /gen && for i in $(seq 1 200); do echo "generated $i" > /gen/g$i; done
RUN rm /gen/g1* /app/data/f00*
RUN echo done > /app/done
ENV APP_MODE=bench
WORKDIR /app
CMD ["sh"]
EOF

. bench/rootless.sh
rootless_setup "$work"
B="$as buildah --root $work/buildah --runroot $work/buildah-run"
$as "$BOX" --root "$work/store" load -q -i "$work/busybox.tar" >/dev/null
$B pull -q "oci-archive:$work/busybox.tar" >/dev/null
$B tag busybox:latest docker.io/library/busybox:latest

boxbuild="$as $BOXBUILD --root $work/store -t bench"
buildah="$B bud --layers --isolation chroot -t bench -f $ctx/Boxfile"

# Seed both caches once, quietly, so the cached scenarios start warm.
$boxbuild "$ctx" >/dev/null 2>&1
$buildah "$ctx" >/dev/null

run() { # name, extra hyperfine args…
  local name=$1; shift
  hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$work/$name.json" "$@" >&2
  jq -r --arg n "$name" '.results as $r
    | ($r[] | select(.command=="boxbuild") | .median) as $a
    | ($r[] | select(.command=="buildah") | .median) as $b
    | "| \($n) | \($a*1000|round) | \($b*1000|round) | \($a/$b*1000|round/1000) |"' "$work/$name.json" \
    >> "$work/table"
}

echo "| scenario | boxbuild ms | buildah ms | ratio |" > "$work/table"
echo "| --- | ---: | ---: | ---: |" >> "$work/table"
run cold -n boxbuild "$boxbuild --no-cache $ctx" -n buildah "$buildah --no-cache $ctx"
run cached -n boxbuild "$boxbuild $ctx" -n buildah "$buildah $ctx"
run touch --prepare "touch $ctx/data/f100.txt" -n boxbuild "$boxbuild $ctx" -n buildah "$buildah $ctx"
run edit --prepare "sh -c 'date +%s%N > $ctx/data/f150.txt'" \
  -n boxbuild "$boxbuild $ctx" -n buildah "$buildah $ctx"

echo "boxbuild vs buildah bud --layers, $label, median of $RUNS runs (ratio = boxbuild/buildah):"
cat "$work/table"

if [ -z "${SKIP_RSS:-}" ]; then
  big="$work/bigctx"
  mkdir -p "$big"
  head -c 1073741824 /dev/zero > "$big/huge.bin"
  printf 'FROM busybox\nCOPY huge.bin /huge.bin\nRUN ls -l /huge.bin\n' > "$big/Boxfile"
  [ -z "${ROOTLESS_USER:-}" ] || chown -R "$uid:$gid" "$big"
  /usr/bin/time -f '%M' -o "$work/rss" $as "$BOXBUILD" --root "$work/store" --no-cache -q -t huge "$big" >/dev/null
  echo "boxbuild peak RSS, cold build of a context with a 1 GiB file: $(( $(cat "$work/rss") / 1024 )) MB"
fi
