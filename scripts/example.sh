#!/usr/bin/env bash
# Build the tools and run examples/Boxfile end to end, on a fresh Debian machine, as root.
#
# This machine cannot reach Docker Hub, so the script does what a CI runner with a
# pull-through mirror does: it starts a local registry (Debian's docker-registry) on
# 127.0.0.1, seeds it with a busybox image made from Debian's busybox-static by an independent
# tool (tests/fixtures/images/build.py + skopeo), and points docker.io at it with a
# containers-registries.conf(5) mirror. `FROM busybox` then resolves exactly as it would
# against Docker Hub.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/install-deps.sh
# boxkit never runs container root as host root: as root it maps container ids onto root's
# /etc/subuid range (docker's userns-remap and podman's --userns=auto need the same). Give
# root one if it has none.
for f in subuid subgid; do
  grep -q '^root:' /etc/$f 2>/dev/null || usermod --add-${f}s 2000000-2065535 root
done
echo "== building boxkit (release)"
BIN=$(bash scripts/build-release.sh)

work=$(mktemp -d /tmp/boxkit-example.XXXXXX)
reg_pid=
cleanup() {
  if [ -n "$reg_pid" ]; then kill "$reg_pid" 2>/dev/null; wait "$reg_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 200); do
  curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  sleep 0.05
done
echo "== local registry on 127.0.0.1:$port, seeding library/busybox:latest"
python3 tests/fixtures/images/build.py small "$work/images" >/dev/null
skopeo copy -q --dest-tls-verify=false --format v2s2 \
  "oci:$work/images/busybox:latest" "docker://127.0.0.1:$port/library/busybox:latest"

cat > "$work/registries.conf" <<TOML
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "127.0.0.1:$port"
insecure = true
TOML
export BOX_REGISTRIES_CONF="$work/registries.conf"

echo "== boxbuild --check examples"
"$BIN/boxbuild" --check examples
echo "== boxbuild -t hello examples"
"$BIN/boxbuild" -t hello examples
echo "== boxrun --rm hello"
"$BIN/boxrun" --rm hello
