#!/usr/bin/env bash
# Debian packages the tests and benchmarks use. Idempotent; needs root.
set -euo pipefail
pkgs=(docker-registry skopeo umoci busybox-static podman buildah crun hyperfine uidmap pigz
      debootstrap passt slirp4netns iptables nftables tmux fuse-overlayfs zstd python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
