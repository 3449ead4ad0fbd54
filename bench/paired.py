#!/usr/bin/env python3
"""Paired, interleaved timing of commands that should differ by fractions of a millisecond.

    paired.py [--warmup N] RUNS NAME=COMMAND NAME=COMMAND ...

Each round runs every command once (the order reversed every other round, so that neither
side always follows the other), RUNS rounds after N warm-up rounds (default 10). Prints each
command's median wall time, its ratio to the first command's median, and the median of its
per-round difference against the first command: on a
shared machine whose load drifts, the paired difference is far steadier than the difference
of two medians taken at different times (hyperfine runs one command's runs back to back).

    paired.py [--warmup N] --burst K RUNS NAME=COMMAND ...

With --burst, each round runs every command K times back to back (the commands in a random
order) and takes the median of its runs after the first: each measured run follows a run of the
same command at once, as in hyperfine, so work one run leaves behind (a teardown after the exit
status is out) weighs on its own command's next run, not on the other command's.
"""
import random
import shlex
import statistics
import subprocess
import sys
import time


def main(argv):
    warmup = 10
    burst = 1
    while argv[0] in ("--warmup", "--burst"):
        if argv[0] == "--warmup":
            warmup = int(argv[1])
        else:
            burst = int(argv[1])
        argv = argv[2:]
    runs = int(argv[0])
    named = [a.split("=", 1) for a in argv[1:]]
    cmds = [shlex.split(c) for _, c in named]
    times = [[] for _ in cmds]
    for r in range(-warmup, runs):
        order = list(range(len(cmds)))
        if burst > 1:
            random.shuffle(order)
        elif r % 2:
            order.reverse()
        for j in order:
            got = []
            for _ in range(burst):
                t = time.perf_counter()
                subprocess.run(
                    cmds[j], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
                )
                got.append(time.perf_counter() - t)
            if r >= 0:
                times[j].append(statistics.median(got[1:] if burst > 1 else got))
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
