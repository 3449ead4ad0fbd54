#!/usr/bin/env python3
"""Generate the pack benchmark's input tree: ~1 GiB of mixed file sizes.

Usage: pack-tree.py DIR

Content is compressible but not trivially so: 4 KiB chunks of word-like text (about two
thirds) interleaved with random bytes (about one third), roughly what a layer of text files,
scripts and binaries looks like to deflate. The tree is generated from a fixed seed, so every
run builds the same bytes. Layout:
  small/  30000 files of 0.5-16 KiB in 300 directories (text-heavy, like /usr/share)
  mid/    200 files of 1-4 MiB
  big/    3 files of 100 MiB
"""
import os
import random
import sys

CHUNK = 4096


def make_pool(rng, size):
    vocab = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 10)))
             for _ in range(4000)]
    words = rng.choices(vocab, k=1_500_000)
    text = []
    for i, w in enumerate(words):
        text.append(w)
        text.append("\n" if i % 11 == 10 else " ")
    text = "".join(text).encode()
    pool = bytearray()
    while len(pool) < size:
        if rng.random() < 0.66:
            off = rng.randrange(0, len(text) - CHUNK)
            pool += text[off:off + CHUNK]
        else:
            pool += rng.randbytes(CHUNK)
    return bytes(pool)


def write(path, pool, rng, size):
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            off = rng.randrange(0, len(pool) - n)
            f.write(pool[off:off + n])
            left -= n


def main():
    root = sys.argv[1]
    rng = random.Random(20240611)
    pool = make_pool(rng, 96 << 20)
    tmp = root + ".partial"
    os.makedirs(tmp, exist_ok=True)
    for d in range(300):
        sub = os.path.join(tmp, "small", f"d{d:03}")
        os.makedirs(sub, exist_ok=True)
        for i in range(100):
            write(os.path.join(sub, f"f{i:03}.txt"), pool, rng, rng.randint(512, 16384))
    os.makedirs(os.path.join(tmp, "mid"), exist_ok=True)
    for i in range(200):
        write(os.path.join(tmp, "mid", f"m{i:03}.bin"), pool, rng, rng.randint(1 << 20, 4 << 20))
    os.makedirs(os.path.join(tmp, "big"), exist_ok=True)
    for i in range(3):
        write(os.path.join(tmp, "big", f"b{i}.bin"), pool, rng, 100 << 20)
    os.rename(tmp, root)


if __name__ == "__main__":
    main()
