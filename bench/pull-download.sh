#!/bin/bash
# The download comparison of bench/pull.sh (`box pull --no-unpack` vs `skopeo copy … oci:`)
# outside a pull pass, with the disk in a known state before each run (bench/README.md,
# issue 14, session 26): both tools fsync every blob, so what the disk is writing back decides
# much of their time. Modes, each before every run:
#   quiet   sync, then 3 s idle
#   busy    800 MB written (not synced), then `sync &` running during the run
#   small   the one-layer Debian unpacked by `tar -xzf` (≈ 7,000 files), then `sync &`
#   aged    two such unpacks and 800 MB, then 31 s idle, so that the flusher writes them back
#           by age (vm.dirty_expire_centisecs), as in the later rounds of a bench/pull.sh pass
# Prints every run's time and the medians. Run bench/pull.sh once first (it makes the image).
# Env: ROUNDS (default 5), MODES (default "quiet busy small aged"), BOX (default
# target/release/box), BOX_OLD (a second box binary, e.g. an earlier commit's, timed too).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$PWD/bench/out/pull
[ -f "$OUT/image/index.json" ] && [ -f "$OUT/image1/index.json" ] ||
  { echo "run bench/pull.sh first: it makes $OUT/image and image1" >&2; exit 1; }
ROUNDS=${ROUNDS:-5}
MODES=${MODES:-quiet busy small aged}
BOX=${BOX:-$PWD/target/release/box}
[ -x "$BOX" ] || cargo build --release --quiet --bin box
LAYER1=$(ls -S "$OUT"/image1/blobs/sha256/* | head -n1)

W=$(mktemp -d /var/tmp/boxkit-bench-download.XXXXXX)
. bench/registry.sh
REG_PID=""
trap '[ -z "$REG_PID" ] || kill $REG_PID 2>/dev/null; rm -rf "$W"' EXIT
start_registry "$W/registry"
IMAGE=$REG/bench/debian:latest
skopeo copy -q --dest-tls-verify=false "oci:$OUT/image:latest" "docker://$IMAGE"
printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$REG" > "$W/registries.conf"
export BOX_REGISTRIES_CONF=$W/registries.conf

SYNC_PID=""
unpack() { mkdir -p "$1"; tar --no-same-owner -xzf "$LAYER1" -C "$1" --exclude='./dev/*'; }
prepare() { # MODE: empty the scratch space, then put the disk in MODE's state
  rm -rf "$W/dirty" "$W/dest"; sync; sleep 1
  case $1 in
  quiet) sleep 2 ;;
  busy) mkdir -p "$W/dirty"; dd if=/dev/urandom of="$W/dirty/big" bs=1M count=800 status=none
        sync & SYNC_PID=$! ;;
  small) unpack "$W/dirty"; sync & SYNC_PID=$! ;;
  aged) unpack "$W/dirty/a"; dd if=/dev/urandom of="$W/dirty/big" bs=1M count=800 status=none
        unpack "$W/dirty/b"; sleep 31 ;;
  esac
}
timed() { # NAME COMMAND…: print NAME and the command's wall time in seconds
  local s e; s=$(date +%s%N); "${@:2}" > /dev/null; e=$(date +%s%N)
  if [ -n "$SYNC_PID" ]; then wait "$SYNC_PID"; SYNC_PID=""; fi
  echo "$1 $(( (e - s) / 1000000 ))"
}
tools=(box)
[ -z "${BOX_OLD:-}" ] || tools+=(box-old)
tools+=(skopeo)
echo "load before: $(cat /proc/loadavg)"
for i in $(seq "$ROUNDS"); do
  for mode in $MODES; do
    for t in $(printf '%s\n' "${tools[@]}" | shuf); do
      prepare "$mode"
      case $t in
      box) timed "$mode box" "$BOX" --root "$W/dest" pull -q --no-unpack "$IMAGE" ;;
      box-old) timed "$mode box-old" "$BOX_OLD" --root "$W/dest" pull -q --no-unpack "$IMAGE" ;;
      skopeo) timed "$mode skopeo" skopeo copy -q --src-tls-verify=false "docker://$IMAGE" "oci:$W/dest:latest" ;;
      esac
    done
  done
done | tee "$W/times"
echo "load after: $(cat /proc/loadavg)"
python3 - "$W/times" <<'PY'
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    mode, tool, ms = line.split()
    t.setdefault(mode, {}).setdefault(tool, []).append(int(ms))
order = [k for k in ("box", "box-old", "skopeo") if k in next(iter(t.values()))]
print("| disk before each run | " + " | ".join(order) + " | skopeo / box |")
print("| --- |" + " ---: |" * (len(order) + 1))
for mode, tools in t.items():
    med = {k: statistics.median(v) for k, v in tools.items()}
    cells = " | ".join(f"{med[k]:.0f} ms ({min(tools[k])}–{max(tools[k])})" for k in order)
    print(f"| {mode} | {cells} | {med['skopeo'] / med['box']:.2f}x |")
PY
