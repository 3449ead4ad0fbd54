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
if [ $# -gt 0 ]; then
  exec cargo test --all-targets --no-fail-fast "$@"
fi

# tests/first_hour.rs installs boxkit as a user would, `cargo install --locked --path .`: a
# release build. It takes minutes on two cores, so it is started here in the background, at
# the lowest priority, in the target directory that test's install uses, while the rest of the
# suite runs (which leaves a core idle much of the time); the install then finds it done and
# only copies the binaries. first_hour therefore runs last. A failed background build is not
# an error here: the install then builds (and reports) itself.
cargo test --all-targets --no-run
install_target=/var/cache/boxkit-test/install-target
mkdir -p "$install_target"
(CARGO_TARGET_DIR="$install_target" nice -n 19 cargo build --release --locked --offline --bins \
   >"$install_target/prebuild.log" 2>&1 || true) &
prebuild=$!
# Every other test binary, two at once (scripts/run-tests.py says why), the longest first.
rc=0
python3 scripts/run-tests.py --skip first_hour || rc=$?
wait "$prebuild"
BOX_INSTALL_TARGET_DIR="$install_target" cargo test --no-fail-fast --test first_hour || rc=$?
# The suite makes hundreds of stores and deletes them with rm -rf; a store's tmpfs run
# directory (/dev/shm/boxkit-*, where a foreground --rm container keeps its state) is left
# behind by that until the next run directory's sweep. Remove the ones no container uses (no
# entry but the names/ directory and the .store back-reference).
for d in /dev/shm/boxkit-*/; do
  [ -d "$d" ] || continue
  rmdir "$d/names" 2>/dev/null || true
  if [ -z "$(ls -A "$d" | grep -vx .store)" ]; then
    rm -f "$d/.store"
    rmdir "$d" 2>/dev/null || true
  fi
done
exit $rc
