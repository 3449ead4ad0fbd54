#!/bin/bash
# boxbuild vs buildah inside a CI job container (issue 13): cold and cached builds of the
# bench Boxfile (the one bench/build.sh builds) in E1 — `podman run --user 1000:1000` with
# podman's default capabilities and seccomp profile, the job's root filesystem an overlay
# (`--rootfs DIR:O`), the network shared so the job reaches a local registry on 127.0.0.1 —
# against `buildah bud --isolation chroot --storage-driver vfs --layers` in the same kind of
# container, set up the way the official buildah-in-container images are (quay.io/buildah:
# buildah with /etc/containers/{registries.conf,policy.json,storage.conf}, vfs storage, chroot
# isolation, run as an unprivileged user).
#
# Scenarios, both tools in a fresh job container for every run:
#   cold     empty store on the container's root fs: pull the base from the registry mirror,
#            run every step
#   cached   the store restored into HOME (a volume seeded by one build, as a CI cache
#            directory is): every step a cache hit
#   regcache empty store, the cache imported from the registry (boxbuild --cache-from REF,
#            buildah --cache-from REPO, both exported by the seeding build with --cache-to):
#            the CI recipe of docs/ci.md
# The time is taken inside the job around the build alone (GNU date copied into the job
# root), so podman's own start (~0.3-0.5 s) is not in either figure. Runs are interleaved
# (boxbuild, buildah, then buildah, boxbuild, …), after WARMUP rounds; medians and ratios
# printed as a table.
#
#   bash bench/ci.sh           # both tools in E1 job containers
#   bash bench/ci.sh --host    # dry run: boxbuild on the host (as root, own store), buildah in
#                              # E1 — for while boxbuild cannot build in E1 yet
# Env: RUNS (default 5), WARMUP (default 1), BOXKIT_BIN (a directory with static box and
# boxbuild; default: scripts/build-release.sh's), KEEP=1 keeps the work dir.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=0
case "${1:-}" in
  --host) HOST=1 ;;
  "") ;;
  *) echo "usage: $0 [--host]" >&2; exit 2 ;;
esac
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
for t in podman buildah skopeo umoci docker-registry python3 ldd tar setcap; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root (podman with a private store, as the tests do)" >&2; exit 1; }
BOXKIT_BIN=${BOXKIT_BIN:-$(bash scripts/build-release.sh)}
. bench/busybox-image.sh
. bench/registry.sh

work=$(mktemp -d /tmp/boxkit-bench-ci.XXXXXX)
chmod 755 "$work"
REG_PID=""
cleanup() {
  [ -z "$REG_PID" ] || kill "$REG_PID" 2>/dev/null || true
  P rm --all --force --time 0 >/dev/null 2>&1 || true
  if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT

# --- podman, isolated from the host's: private root, vfs, cgroupfs; root lacks
# CAP_SYS_RESOURCE here, so pin the rlimits podman would raise (as tests/common/podman.rs).
nofile=$(awk '/Max open files/ {print $5}' /proc/self/limits)
[ "$nofile" -le 16384 ] 2>/dev/null || nofile=16384
mkdir -p "$work/podman"
cat > "$work/podman/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=16384:16384"]
[engine]
events_logger = "file"
cgroup_manager = "cgroupfs"
EOF
bash scripts/host-setup.sh >/dev/null
P() {
  CONTAINERS_CONF="$work/podman/containers.conf" podman --root "$work/podman/root" \
    --runroot "$work/podman/run" --storage-driver vfs --tmpdir "$work/podman/tmp" "$@"
}

# --- a local registry that mirrors docker.io, holding busybox (made by independent tools).
start_registry "$work/registry"
reg=$REG
busybox_image "$work/img"
skopeo copy -q --dest-tls-verify=false "oci:$work/img/layout:latest" \
  "docker://$reg/library/busybox:latest"
cat > "$work/registries.conf" <<EOF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "$reg"
insecure = true
[[registry]]
location = "$reg"
insecure = true
EOF

# --- the context and Boxfile of bench/build.sh.
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
cp "$ctx/Boxfile" "$ctx/Containerfile"
chmod -R a+rX "$ctx"

# --- the job roots. Both: busybox, a uid-1000 user, no CA bundle, GNU date for the timing.
# boxbuild's: the static box and boxbuild, the mirror config, nothing else (issue 13's E1: no
# subordinate ids). buildah's: the official buildah image's recipe — buildah and its libraries,
# /etc/containers/{registries.conf,policy.json,storage.conf} (vfs), newuidmap and newgidmap
# with file capabilities (cap_setuid/cap_setgid, as the Fedora-based image ships them) and a
# subordinate range for the user. Debian's setuid-root helpers fail there: a process whose
# euid is not the namespace's owner needs CAP_SYS_ADMIN to write its id map, and the job has
# none; with file capabilities the euid stays the user's. Without working helpers buildah
# falls back to mapping the user alone, and every RUN fails ("error setting supplemental
# groups list").
install_bin() { # ROOT FROM TO [MODE]: the binary and the libraries ldd names for it
  mkdir -p "$(dirname "$1$3")"
  install -m "${4:-755}" "$2" "$1$3"
  for lib in $(ldd "$2" 2>/dev/null | grep -o '/[^ ]*' || true); do
    [ -e "$1$lib" ] || { mkdir -p "$(dirname "$1$lib")"; cp "$lib" "$1$lib"; }
  done
}
make_root() { # DIR
  local r=$1
  mkdir -p "$r"/{bin,dev,proc,sys,run,root,etc/containers,usr/bin,usr/local/bin,home/user} \
    "$r/tmp" "$r/var/tmp"
  chmod 1777 "$r/tmp" "$r/var/tmp"
  chmod 700 "$r/root"
  cp /bin/busybox "$r/bin/busybox"
  for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:CI job:/home/user:/bin/sh\n' > "$r/etc/passwd"
  printf 'root:x:0:\nuser:x:1000:\n' > "$r/etc/group"
  chown 1000:1000 "$r/home/user"
  install_bin "$r" /bin/date /usr/bin/gdate
  cp "$work/registries.conf" "$r/etc/containers/registries.conf"
}
boxroot="$work/rootfs-boxbuild"
make_root "$boxroot"
install_bin "$boxroot" "$BOXKIT_BIN/boxbuild" /usr/local/bin/boxbuild
install_bin "$boxroot" "$BOXKIT_BIN/box" /usr/local/bin/box
budroot="$work/rootfs-buildah"
make_root "$budroot"
install_bin "$budroot" "$(command -v buildah)" /usr/bin/buildah
install_bin "$budroot" /usr/bin/newuidmap /usr/bin/newuidmap
install_bin "$budroot" /usr/bin/newgidmap /usr/bin/newgidmap
setcap cap_setuid+ep "$budroot/usr/bin/newuidmap"
setcap cap_setgid+ep "$budroot/usr/bin/newgidmap"
printf 'user:1:999\nuser:1001:64535\n' > "$budroot/etc/subuid"
cp "$budroot/etc/subuid" "$budroot/etc/subgid"
echo '{"default": [{"type": "insecureAcceptAnything"}]}' > "$budroot/etc/containers/policy.json"
# runroot: rootless buildah 1.28 refuses to start without one ("runroot must be set") when
# the job has no XDG_RUNTIME_DIR, as a bare CI job has none.
printf '%s\n' '[storage]' 'driver = "vfs"' 'runroot = "/tmp/buildah-run"' \
  'graphroot = "/var/lib/containers/storage"' \
  'rootless_storage_path = "$HOME/.local/share/containers/storage"' \
  '[storage.options.vfs]' 'ignore_chown_errors = "true"' \
  > "$budroot/etc/containers/storage.conf"

# --- timed runs.
E1=(--network host --user 1000:1000 -e BUILDAH_ISOLATION=chroot -v "$ctx:/ctx:ro" -w /ctx)
BUD="buildah bud --isolation chroot --storage-driver vfs --layers -t bench /ctx"
BOXBUILD="boxbuild -t bench /ctx"
# A fresh E1 job that prints the build's wall time in µs; $1 = job root, $2 = extra podman args.
job_time() {
  local root=$1 extra=$2; shift 2
  # shellcheck disable=SC2086
  P run --rm "${E1[@]}" $extra --rootfs "$root:O" /bin/sh -c '
    t0=$(gdate +%s%N)
    "$@" >/tmp/build.log 2>&1 || { cat /tmp/build.log >&2; exit 1; }
    t1=$(gdate +%s%N)
    echo $(( (t1 - t0) / 1000 ))' sh "$@"
}
host_time() { # STORE ARGS…: boxbuild on the host (--host): as root, its own store, the same mirror
  local store=$1; shift
  local t0 t1
  t0=$(date +%s%N)
  BOX_REGISTRIES_CONF="$work/registries.conf" "$BOXKIT_BIN/boxbuild" --root "$store" \
    -t bench "$@" "$ctx" >"$work/host-build.log" 2>&1 || { cat "$work/host-build.log" >&2; exit 1; }
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000 ))
}
# A HOME volume seeded with one build of each tool: the restored CI cache. The same builds
# export each tool's registry cache.
BOXCACHE="$reg/bench-cache:boxbuild"
BUDCACHE="$reg/bench-cache-buildah"
cache_home="$work/cache-home"
mkdir -p "$cache_home"; chown 1000:1000 "$cache_home"
job_time "$budroot" "-v $cache_home:/home/user" ${BUD% /ctx} --cache-to "$BUDCACHE" /ctx >/dev/null
if [ "$HOST" = 1 ]; then
  host_time "$work/host-cached" --cache-to "$BOXCACHE" >/dev/null
else
  job_time "$boxroot" "-v $cache_home:/home/user" ${BOXBUILD% /ctx} --cache-to "$BOXCACHE" /ctx >/dev/null
fi
BUD_REG="${BUD% /ctx} --cache-from $BUDCACHE /ctx"
BOXBUILD_REG="${BOXBUILD% /ctx} --cache-from $BOXCACHE /ctx"

# Check that the cached scenario is one: every step of the seeded rebuild must hit.
job_log() { # ROOT EXTRA CMD…: the build's output
  local root=$1 extra=$2; shift 2
  # shellcheck disable=SC2086
  P run --rm "${E1[@]}" $extra --rootfs "$root:O" "$@" 2>&1
}
hits=$(job_log "$budroot" "-v $cache_home:/home/user" $BUD | grep -c 'Using cache' || true)
[ "$hits" -ge 4 ] || { echo "buildah's cached rebuild hit only $hits steps" >&2; exit 1; }
if [ "$HOST" = 0 ]; then
  job_log "$boxroot" "-v $cache_home:/home/user" $BOXBUILD > "$work/check.log" || true
  grep -q '(0 steps run' "$work/check.log" ||
    { cat "$work/check.log" >&2; echo "boxbuild's cached rebuild ran steps" >&2; exit 1; }
  job_log "$boxroot" "" $BOXBUILD_REG > "$work/check.log" || true
  grep -q '(0 steps run' "$work/check.log" ||
    { cat "$work/check.log" >&2; echo "boxbuild's rebuild with --cache-from ran steps" >&2; exit 1; }
fi
if [ "$HOST" = 1 ]; then
  rm -rf "$work/host-check"
  host_time "$work/host-check" --cache-from "$BOXCACHE" >/dev/null
  grep -q '(0 steps run' "$work/host-build.log" ||
    { echo "boxbuild's rebuild with --cache-from ran steps" >&2; exit 1; }
  host_time "$work/host-cached" >/dev/null
  grep -q '(0 steps run' "$work/host-build.log" ||
    { echo "boxbuild's cached rebuild ran steps" >&2; exit 1; }
  rm -rf "$work/host-check"
fi
# buildah's remote cache is reported, not required: what it hits is its own behaviour.
reg_hits=$(job_log "$budroot" "" $BUD_REG | grep -c -E 'Using cache|Cache pulled' || true)

boxbuild_run() { # scenario
  if [ "$HOST" = 1 ]; then
    case $1 in
      cold) rm -rf "$work/host-cold"; host_time "$work/host-cold" ;;
      cached) host_time "$work/host-cached" ;;
      regcache) rm -rf "$work/host-cold"; host_time "$work/host-cold" --cache-from "$BOXCACHE" ;;
    esac
  else
    case $1 in
      cold) job_time "$boxroot" "" $BOXBUILD ;;
      cached) job_time "$boxroot" "-v $cache_home:/home/user" $BOXBUILD ;;
      regcache) job_time "$boxroot" "" $BOXBUILD_REG ;;
    esac
  fi
}
buildah_run() { # scenario
  case $1 in
    cold) job_time "$budroot" "" $BUD ;;
    cached) job_time "$budroot" "-v $cache_home:/home/user" $BUD ;;
    regcache) job_time "$budroot" "" $BUD_REG ;;
  esac
}
: > "$work/times"
for scenario in cold cached regcache; do
  for r in $(seq $((-WARMUP)) $((RUNS - 1))); do
    if [ $(( (r + WARMUP) % 2 )) = 0 ]; then order="boxbuild buildah"; else order="buildah boxbuild"; fi
    for tool in $order; do
      us=$("${tool}_run" "$scenario")
      [ "$r" -lt 0 ] || echo "$scenario $tool $us" >> "$work/times"
      echo "  $scenario round $r $tool $((us / 1000)) ms" >&2
    done
  done
done

where="boxbuild in E1"
[ "$HOST" = 0 ] || where="boxbuild on the HOST (--host dry run, as root)"
echo "$where vs buildah bud --isolation chroot --storage-driver vfs --layers in E1"
echo "(podman run --user 1000:1000, default caps and seccomp), median of $RUNS interleaved runs,"
echo "time inside the job; load average $(cut -d' ' -f1-3 /proc/loadavg); buildah's registry cache"
echo "hit $reg_hits steps (boxbuild's: all, checked):"
python3 - "$work/times" <<'EOF'
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    s, tool, us = line.split()
    t.setdefault((s, tool), []).append(int(us) / 1000)
goal = {"cold": 0.3, "cached": 0.1, "regcache": 0.1}
print("| scenario | boxbuild ms | buildah ms | ratio | goal |")
print("| --- | ---: | ---: | ---: | ---: |")
for s in ["cold", "cached", "regcache"]:
    a, b = statistics.median(t[(s, "boxbuild")]), statistics.median(t[(s, "buildah")])
    print(f"| {s} | {a:.0f} | {b:.0f} | {a / b:.3f} | ≤ {goal[s]} |")
EOF
