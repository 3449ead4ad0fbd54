#!/usr/bin/env bash
# Install every test dependency (Debian packages, Rust components), set up the host state the
# tests need, and run the whole test suite. Run as root on a fresh Debian machine:
# `sudo bash scripts/test.sh`. CI calls exactly this (via .ci/run).
#   BOX_TEST_STRICT=1 (default here): a test that would skip for lack of a tool or capability
#   fails instead. Extra arguments go to `cargo test` (e.g. `--test harness_registry`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/install-deps.sh
bash scripts/host-setup.sh

export BOX_TEST_STRICT="${BOX_TEST_STRICT:-1}"
# The debootstrap Debian fixture takes ~1 min the first time on a machine (then cached in
# /var/cache/boxkit-test); make it here, visibly, rather than inside the first test needing it.
bash tests/fixtures/images/make-debian.sh >/dev/null
cargo test --all-targets --no-fail-fast "$@"
