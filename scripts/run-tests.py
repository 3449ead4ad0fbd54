#!/usr/bin/env python3
"""Run the suite's test binaries, several at once.

`cargo test` runs one test binary after the other. Most of this suite's time is spent waiting
(containers starting and stopping, registries, timeouts that a test provokes on purpose), so
with two cores idle much of the time, running two binaries at once finishes sooner. Each test
binary is already written to share the machine with others (private stores and registries,
flocks around the shared fixtures and test users, free ports picked at run time).

    scripts/run-tests.py [--jobs N] [--skip NAME]... [-- ARGS for every test binary]

The binaries come from `cargo test --all-targets --no-run --message-format=json` (which also
builds them). The longest ones (by the table below, measured on a CI run) start first. Each
binary's output is printed whole when it ends, with its time; a summary and the totals come
last. The exit code is 1 if any binary failed. BOX_TEST_JOBS sets the default for --jobs.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

# Seconds per binary in a sequential CI run (rounded): the order in which to start them, the
# longest first, so that the last one to end is a short one. Binaries not named here start
# after these, in name order.
WEIGHTS = {
    "security": 165,
    "build_owners": 93,
    "ci_jobs": 57,
    "build_progress": 51,
    "ctl": 48,
    "install": 44,
    "pull_unpack": 36,
    "build_basic": 29,
    "sandbox_network": 29,
    "registry_auth": 26,
    "boxrun_detached": 25,
    "build_multiplatform": 21,
    "boxrun_ports": 20,
    "cp_top_stats": 18,
    "manifest": 18,
    "build_outputs": 16,
    "harness_registry": 16,
    "build_platform": 16,
}

RESULT = re.compile(
    rb"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored; (\d+) measured"
)


def binaries(root):
    """(name, path) of every test executable, built on the way."""
    cmd = ["cargo", "test", "--all-targets", "--no-run", "--message-format=json"]
    out = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, check=True).stdout
    found = []
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg["profile"]["test"]:
            continue
        target = msg["target"]
        name = target["name"]
        if target["kind"] != ["test"]:
            name = f"{name} ({target['kind'][0]} unit tests)"
        found.append((name, msg["executable"]))
    return found


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=int(os.environ.get("BOX_TEST_JOBS", "2")))
    p.add_argument("--skip", action="append", default=[], help="a test binary not to run")
    p.add_argument("args", nargs="*", help="arguments for every test binary")
    opts = p.parse_args()

    todo = [b for b in binaries(root) if b[0] not in opts.skip]
    todo.sort(key=lambda b: (-WEIGHTS.get(b[0], 0), b[0]))
    env = dict(os.environ, CARGO_MANIFEST_DIR=root)
    lock = threading.Lock()
    results = []  # (name, seconds, exit code, counts)
    start = time.monotonic()

    def run(name, exe):
        with tempfile.TemporaryFile() as log:
            t0 = time.monotonic()
            with lock:
                print(f"=== [tests] start {name}", flush=True)
            code = subprocess.run(
                [exe, *opts.args], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT
            ).returncode
            took = time.monotonic() - t0
            log.seek(0)
            text = log.read()
        counts = [0, 0, 0, 0]
        for m in RESULT.finditer(text):
            counts = [a + int(b) for a, b in zip(counts, m.groups())]
        with lock:
            verdict = "ok" if code == 0 else f"FAILED (exit {code})"
            print(f"=== [tests] {name}: {verdict} in {took:.1f}s", flush=True)
            sys.stdout.buffer.write(text)
            sys.stdout.flush()
            results.append((name, took, code, counts))

    pending = list(todo)
    running = []
    while pending or running:
        while pending and len(running) < max(1, opts.jobs):
            t = threading.Thread(target=run, args=pending.pop(0))
            t.start()
            running.append(t)
        time.sleep(0.2)
        running = [t for t in running if t.is_alive()]

    total = [sum(r[3][i] for r in results) for i in range(4)]
    failed = [r for r in results if r[2] != 0]
    print(f"\n=== [tests] {len(results)} binaries, {opts.jobs} at once, "
          f"{time.monotonic() - start:.0f}s: {total[0]} passed, {total[1]} failed, "
          f"{total[2]} ignored")
    for name, took, code, _ in sorted(results, key=lambda r: -r[1])[:8]:
        print(f"  {took:6.1f}s  {name}")
    for name, _, code, _ in failed:
        print(f"  FAILED: {name} (exit {code})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
