#!/bin/sh
# Parse speed: `boxbuild --check` on a generated 10,000-instruction Boxfile (goal: < 50 ms).
#
# There is no same-job anchor: buildah has no parse-only mode (`buildah bud` always resolves
# the base image). As a meaningful same-pass reference we time `python3 -c` reading and
# line-splitting the same file: the cost of merely loading and touching the text in a
# commonly used interpreter, so the ratio says how close parsing is to "free".
set -eu
cd "$(dirname "$0")/.."
cargo build --release --bin boxbuild >/dev/null
BIN=target/release/boxbuild
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

python3 - "$WORK/big.Boxfile" <<'PY'
import sys
out = ["# syntax=docker/dockerfile:1", "ARG BASE=debian:bookworm"]
n = 1  # the ARG; the syntax directive is not an instruction
stage = 0
while n < 10000:
    out.append(f"FROM ${{BASE}} AS stage{stage}")
    n += 1
    for i in range(40):
        k = n % 8
        if k == 0:
            out.append(f"RUN --mount=type=cache,target=/root/.cache/s{i} \\\n    apt-get update && \\\n    apt-get install -y pkg{i} \\\n      other{i}")
        elif k == 1:
            out.append(f'ENV VAR_{i}="value {i}" PATH_{i}=/opt/{i}/bin:$PATH')
        elif k == 2:
            out.append(f"COPY --chown=1000:1000 --chmod=0644 src/{i}/ /app/{i}/")
        elif k == 3:
            out.append(f"RUN <<EOF\nset -e\necho step {i}\nEOF")
        elif k == 4:
            out.append(f"ARG OPT_{i}=default-{i}")
        elif k == 5:
            out.append(f"LABEL org.example.step{i}=\"{i}\" stage={stage}")
        elif k == 6:
            out.append(f"WORKDIR /app/{i}")
        else:
            out.append(f'RUN ["sh", "-c", "echo {i} && true"]')
        n += 1
        if n >= 10000:
            break
    stage += 1
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY

$BIN --check -f "$WORK/big.Boxfile" "$WORK" 2>&1 | tail -1
hyperfine -N --warmup 3 --runs 20 --export-json "$WORK/h.json" \
  -n boxbuild-check "$BIN --check -f $WORK/big.Boxfile $WORK" \
  -n python-splitlines "python3 -c 'open(\"$WORK/big.Boxfile\").read().splitlines()'"
python3 - "$WORK/h.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
b, p = r["boxbuild-check"]["median"] * 1000, r["python-splitlines"]["median"] * 1000
print(f"median boxbuild --check: {b:.1f} ms (goal < 50 ms: {'PASS' if b < 50 else 'FAIL'})")
print(f"median python3 read+splitlines: {p:.1f} ms; ratio boxbuild/python = {b/p:.2f}")
PY
