#!/usr/bin/env python3
"""Paired, interleaved timing of commands that should differ by fractions of a millisecond.

    paired.py [--warmup N] RUNS NAME=COMMAND NAME=COMMAND ...

Each round runs every command once (the order reversed every other round, so that neither
side always follows the other), RUNS rounds after N warm-up rounds (default 10). Prints each
command's median wall time, its ratio to the first command's median, and the median of its
per-round difference against the first command: on a
shared machine whose load drifts, the paired difference is far steadier than the difference
of two medians taken at different times (hyperfine runs one command's runs back to back).
"""
import shlex
import statistics
import subprocess
import sys
import time


def main(argv):
    warmup = 10
    if argv[0] == "--warmup":
        warmup, argv = int(argv[1]), argv[2:]
    runs = int(argv[0])
    named = [a.split("=", 1) for a in argv[1:]]
    cmds = [shlex.split(c) for _, c in named]
    times = [[] for _ in cmds]
    for r in range(-warmup, runs):
        order = list(range(len(cmds)))
        if r % 2:
            order.reverse()
        for j in order:
            t = time.perf_counter()
            subprocess.run(cmds[j], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            if r >= 0:
                times[j].append(time.perf_counter() - t)
    ms = lambda s: f"{s * 1000:.3f} ms"
    for j, (name, _) in enumerate(named):
        diff = [a - b for a, b in zip(times[j], times[0])]
        line = f"  {name:16} median {ms(statistics.median(times[j]))}"
        if j:
            ratio = statistics.median(times[j]) / statistics.median(times[0])
            line += f"   ratio to {named[0][0]}: {ratio:.3f}"
            line += f"   paired difference: {statistics.median(diff) * 1000:+.3f} ms"
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
