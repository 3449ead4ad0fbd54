#!/usr/bin/env bash
# Install every test dependency (Debian packages, Rust components) and run the whole test suite.
# Run as root on a fresh Debian machine: `sudo bash scripts/test.sh`. CI calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

export BOX_TEST_STRICT="${BOX_TEST_STRICT:-1}"
cargo test --all-targets --no-fail-fast
