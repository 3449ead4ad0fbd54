#!/usr/bin/env bash
# Everything the tests and benchmarks need: Debian packages and Rust components. Idempotent
# (installs only what is missing, so a warm machine costs ~1 s); needs root. No stdin needed.
set -euo pipefail

# docker-registry: the local registry (tests/common/registry.rs); skopeo, umoci, podman,
# buildah, crun: independent tools that make and check images; busybox-static, debootstrap,
# python3: fixture images (tests/fixtures/images/); uidmap: newuidmap/newgidmap for rootless;
# passt, slirp4netns, iptables, nftables: container networking; fuse-overlayfs: rootless
# overlay for podman; hyperfine: benchmarks; pigz: fast gzip for the Debian fixture;
# tmux: interactive (-it) tests; zstd: zstd layers; ca-certificates: https mirrors;
# curl: readiness probe of the registry in scripts/example.sh; git: ADD of a git repository;
# time: peak RSS in the benchmarks; jq: bench scripts; gcc, libc6-dev: the static syscall
# probe of tests/security/seccomp.rs; libcap2-bin: setcap for the newuidmap of the buildah job
# in bench/ci.sh; man-db, zsh, fish: `box man` pages rendered and completion scripts loaded
# (tests/install.rs); openssh-client: ssh-agent and ssh-add for boxbuild --ssh (tests/build_outputs.rs);
# qemu-user-static: emulated foreign-architecture RUN steps (scripts/host-setup.sh registers its
# binfmt_misc entries; tests/build_platform.rs).
pkgs=(docker-registry skopeo umoci busybox-static podman buildah crun hyperfine uidmap pigz
      debootstrap passt slirp4netns iptables nftables tmux fuse-overlayfs zstd python3
      ca-certificates curl git time jq gcc libc6-dev openssl libcap2-bin
      man-db zsh fish openssh-client qemu-user-static)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The arm64 busybox-static of the multi-arch fixture (tests/fixtures/images/get-busybox.sh adds
# the arm64 dpkg architecture and downloads the .deb; cached under /var/cache/boxkit-test).
bash "$(dirname "$0")/../tests/fixtures/images/get-busybox.sh" arm64 >/dev/null

# Rust: rustfmt and clippy for the lint stage of .ci/run.
if command -v rustup >/dev/null 2>&1; then
  installed="$(rustup component list --installed 2>/dev/null || true)"
  for c in rustfmt clippy; do
    grep -q "^$c" <<<"$installed" || rustup component add "$c"
  done
fi
