#!/usr/bin/env python3
"""hyperfine in interleaved rounds, for commands compared by a ratio (bench/start.sh).

    interleave.py --rounds R --runs K [--warmup W] --export-json FILE [-p PREPARE] -n NAME COMMAND ...

One hyperfine pass (`hyperfine -N`: no shell, hyperfine's own timing) runs every command's runs
back to back, one command after the other; a pass of many commands takes a minute, and on this
VM the machine's speed can change within one (bench/README.md: the floor measured 2.2 ms and
4.5 ms eleven minutes apart). Here each of R rounds runs hyperfine on every command with K runs
and W warm-up runs each, the commands in a random order every round, so that every command is
measured in every phase of the pass; each measured run still follows a run of the same command
at once, as in one hyperfine pass. FILE gets hyperfine's JSON format with every round's runs
merged per command (`times`, `median`, `mean`, `min`, `max`), so scripts read it as they read
hyperfine's, and `steal_percent` (below). `-p PREPARE` before a command's `-n` is hyperfine's
`--prepare` for that command alone (run before each of its runs; `true` for commands without).

Also measures the share of the machine's CPU time that its hypervisor gave to others (steal,
from /proc/stat) during the pass and prints it with the load average: a pass with much steal
is a slow phase of the host, not of the commands.
"""
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile


def cpu_times():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is counted in user)
    return sum(fields[:8]), fields[7]


def main(argv):
    rounds, runs, warmup, out, named, prepare = None, None, 1, None, [], None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--rounds":
            rounds = int(argv[i + 1])
        elif a == "--runs":
            runs = int(argv[i + 1])
        elif a == "--warmup":
            warmup = int(argv[i + 1])
        elif a == "--export-json":
            out = argv[i + 1]
        elif a == "-p":
            prepare = argv[i + 1]
        elif a == "-n":
            named.append((argv[i + 1], argv[i + 2], prepare))
            prepare = None
            i += 1
        else:
            sys.exit(f"interleave.py: unknown argument {a!r} (see the file's header)")
        i += 2
    if not rounds or not runs or not out or not named:
        sys.exit("usage: interleave.py --rounds R --runs K [--warmup W] --export-json FILE "
                 "[-p PREPARE] -n NAME COMMAND ...")
    times = {name: [] for name, _, _ in named}
    any_prepare = any(p is not None for _, _, p in named)
    total0, steal0 = cpu_times()
    with tempfile.TemporaryDirectory() as tmp:
        part = os.path.join(tmp, "round.json")
        for r in range(rounds):
            order = list(named)
            random.shuffle(order)
            args = ["hyperfine", "-N", "--style", "none", "--warmup", str(warmup),
                    "--runs", str(runs), "--export-json", part]
            for name, cmd, prep in order:
                if any_prepare:
                    args += ["--prepare", prep or "true"]
                args += ["-n", name, cmd]
            subprocess.run(args, stdout=subprocess.DEVNULL, check=True)
            with open(part) as f:
                for res in json.load(f)["results"]:
                    times[res["command"]] += res["times"]
            print(f"  round {r + 1}/{rounds} done", file=sys.stderr)
    total1, steal1 = cpu_times()
    results = []
    for name, cmd, _ in named:
        t = times[name]
        results.append({"command": name, "exec": cmd, "times": t,
                        "median": statistics.median(t), "mean": statistics.fmean(t),
                        "min": min(t), "max": max(t)})
    steal = 100.0 * (steal1 - steal0) / max(1, total1 - total0)
    with open(out, "w") as f:
        json.dump({"results": results, "steal_percent": round(steal, 1)}, f)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"  {rounds} rounds x {runs} runs per command; steal {steal:.1f}% of the machine's CPU "
          f"time during the pass; load average after: {load}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
