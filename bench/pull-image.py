#!/usr/bin/env python3
"""Make the pull benchmark's image: the debootstrap Debian root filesystem
(tests/fixtures/images/make-debian.sh) split into several gzip layers by top-level path, written
as an OCI image layout with the fixture builder's Layout class (independent of boxkit).

    pull-image.py ROOTFS.tar OUTDIR [--single]

With --single the whole root filesystem is one layer (as debian:bookworm on Docker Hub is).
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "images"))
import build  # noqa: E402

# Which layer a member goes to: the first prefix that matches, else the last layer.
SPLIT = ["usr/lib/x86_64-linux-gnu/", "usr/lib/", "usr/share/", "usr/", "var/"]


def layer_of(name):
    n = name[2:] if name.startswith("./") else name
    for i, p in enumerate(SPLIT):
        if n.startswith(p) or n + "/" == p:
            return i
    return len(SPLIT)


def main(rootfs, out, single=False):
    if single:
        SPLIT.clear()
    lay = build.Layout(out)
    tars = [os.path.join(out, f"layer{i}.tar") for i in range(len(SPLIT) + 1)]
    writers = [tarfile.open(p, "w", format=tarfile.PAX_FORMAT) for p in tars]
    with tarfile.open(rootfs) as src:
        for m in src:
            w = writers[layer_of(m.name)]
            if m.isfile():
                w.addfile(m, src.extractfile(m))
            else:
                w.addfile(m)
    for w in writers:
        w.close()
    descs, diff_ids = [], []
    for p in tars:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        diff_ids.append("sha256:" + h.hexdigest())
        gz = p + ".gz"
        with open(p, "rb") as s, open(gz, "wb") as d:
            if shutil.which("pigz"):
                subprocess.run(["pigz", "-n", "-6", "-c"], stdin=s, stdout=d, check=True)
            else:
                subprocess.run(["gzip", "-n", "-6", "-c"], stdin=s, stdout=d, check=True)
        os.remove(p)
        descs.append(dict(lay.blob_file(gz), mediaType=build.OCI_LAYER_GZIP))
    cfg = build.runnable_config(cmd=("bash",))
    lay.tag(lay.image_from_descs(descs, diff_ids, cfg, "debootstrap --variant=minbase" + ("" if single else ", split")))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--single" in sys.argv[3:])
