#!/bin/sh
# What the security hardening costs a container start: `boxrun --rm --network none busybox
# true` with this checkout's build vs the same command built from BASE_REV (default: the
# commit before the security work), on the same image and store layout, as paired rounds
# (bench/paired.py: each round runs every variant once, in alternating order; the median of
# the per-round differences is what counts on this shared machine). Issue 11 bounds the cost
# of the seccomp filter plus closing inherited descriptors at 0.3 ms; the `unconfined`
# variant shows the filter's own share; a second pass measures the filter alone.
#
# As root by default; ROOTLESS_USER=name runs every command as that user (with a subuid range).
# Env: BASE_REV (default 76eba1b), RUNS (default 300 rounds).
set -eu
cd "$(dirname "$0")/.."
BASE_REV=${BASE_REV:-76eba1b}
RUNS=${RUNS:-300}
for t in python3 umoci skopeo busybox git; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] && bash scripts/host-setup.sh

new=$(bash scripts/build-release.sh)
# The base build: a worktree of BASE_REV with its own target dir, kept between runs.
basewt=${BASE_WORKTREE:-/var/tmp/boxkit-bench-base-$BASE_REV}
if [ ! -d "$basewt" ]; then
  git worktree add -f --detach "$basewt" "$BASE_REV" >/dev/null
fi
old=$(bash "$basewt/scripts/build-release.sh")

work=$(mktemp -d /tmp/boxkit-bench-sec.XXXXXX)
chmod 755 "$work"
. bench/rootless.sh
rootless_setup "$work" --user-env
trap 'rm -rf "$work" 2>/dev/null || true' EXIT

# The image: busybox and its applets (umoci and skopeo, independent of boxkit).
. bench/busybox-image.sh
busybox_image "$work"
mkdir -p "$work/old" "$work/new"
[ -z "$as" ] || chown -R "$uid:$gid" "$work"
for v in old new; do
  eval bin=\$$v
  $as "$bin/box" --root "$work/$v" load -q -i "$work/busybox.tar"
  $as "$bin/boxrun" --root "$work/$v" --rm --network none busybox true
done

echo "boxrun --rm --network none busybox true, $label, $RUNS paired rounds:"
nice -n -20 python3 bench/paired.py "$RUNS" \
  "base=$as $old/boxrun --root $work/old --rm --network none busybox true" \
  "now=$as $new/boxrun --root $work/new --rm --network none busybox true" \
  "now-unconfined=$as $new/boxrun --root $work/new --rm --network none --security-opt seccomp=unconfined busybox true"

# The filter's own share, measured alone: this build with and without it on one store, plus
# an identical variant whose difference shows the noise of the pass.
echo "the seccomp filter alone, $label, $RUNS paired rounds (unconfined's difference = minus the filter's share):"
nice -n -20 python3 bench/paired.py "$RUNS" \
  "default=$as $new/boxrun --root $work/new --rm --network none busybox true" \
  "unconfined=$as $new/boxrun --root $work/new --rm --network none --security-opt seccomp=unconfined busybox true" \
  "default-again=$as $new/boxrun --root $work/new --rm --network none busybox true"
