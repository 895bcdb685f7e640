"""Benchmark of the dataset validator: files per second of the full validation (every check that
reads pixels) of the Fashion-MNIST test set written out as PNG class folders (10,000 files of
28x28 grey), with 1 and 2 threads. The PNG files are written once into a temporary folder.
"""
import os
import tempfile
import time

import numpy as np

from .. import read_idx
from ..validator import validate_dataset
from ..validator_html import png_bytes
from .common import print_table

FASHION = "/usr/share/datasets/fashion-mnist"
CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


def write_png_folders(root, limit=None):
    images = read_idx(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz"))
    labels = np.asarray(read_idx(os.path.join(FASHION, "t10k-labels-idx1-ubyte.gz")))
    n = len(labels) if limit is None else min(limit, len(labels))
    for name in CLASSES:
        os.makedirs(os.path.join(root, name), exist_ok=True)
    for i in range(n):
        with open(os.path.join(root, CLASSES[labels[i]], f"{i:05d}.png"), "wb") as f:
            f.write(png_bytes(images[i]))
    return n


def run(args):
    if not os.path.isdir(FASHION):
        print(f"\n== validate: {FASHION} not found; skipped")
        return
    with tempfile.TemporaryDirectory(prefix="trugrade-bench-validate-") as root:
        n = write_png_folders(root, limit=2000 if args.quick else None)
        rows = []
        for threads in (1, 2):
            validate_dataset(root, threads=threads, checks=["format"])  # warm the page cache
            start = time.perf_counter()
            report = validate_dataset(root, threads=threads)
            seconds = time.perf_counter() - start
            rows.append({"threads": threads, "files": n, "seconds": seconds, "fps": n / seconds,
                         "findings": len(report.findings), "fatal": len(report.fatal)})
        print_table("validate: full validation of Fashion-MNIST t10k as PNG folders (scan, decode, "
                    "quality, duplicates)", rows,
                    [("threads", "threads", "{}"), ("files", "files", "{}"), ("seconds", "seconds", "{:.2f}"),
                     ("fps", "files/s", "{:.0f}"), ("findings", "findings", "{}"), ("fatal", "fatal", "{}")])
