"""Benchmark of the dataset validator: files per second of the full validation (every check that
reads pixels) of the Fashion-MNIST test set written out as PNG class folders (10,000 files of
28x28 grey), with 1 and 2 threads in alternation. The PNG files are written once into a temporary folder.
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


def add_arguments(parser):
    parser.add_argument("--rounds", type=int, default=3,
                        help="validations per thread count, alternating 1 and 2 threads (the best is kept)")


def run(args):
    if not os.path.isdir(FASHION):
        print(f"\n== validate: {FASHION} not found; skipped")
        return
    rounds = max(1, getattr(args, "rounds", 3) or 1)
    with tempfile.TemporaryDirectory(prefix="trugrade-bench-validate-") as root:
        n = write_png_folders(root, limit=2000 if args.quick else None)
        validate_dataset(root, threads=1, checks=["format"])  # warm the page cache
        # NOTE: 1 and 2 threads alternate so that a busy machine slows both alike; cpu is the
        # process's CPU seconds (user + system): equal figures mean the threads add no overhead.
        best = {}
        for _ in range(rounds):
            for threads in (1, 2):
                cpu, start = time.process_time(), time.perf_counter()
                report = validate_dataset(root, threads=threads)
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
                if threads not in best or seconds < best[threads]["seconds"]:
                    best[threads] = {"threads": threads, "files": n, "seconds": seconds, "cpu": cpu,
                                     "fps": n / seconds, "findings": len(report.findings),
                                     "fatal": len(report.fatal)}
        rows = [best[1], best[2]]
        rows[1]["speedup"] = rows[0]["seconds"] / rows[1]["seconds"]
        rows[0]["speedup"] = 1.0
        print_table(f"validate: full validation of Fashion-MNIST t10k as PNG folders (scan, decode, quality, "
                    f"duplicates), best of {rounds} alternating rounds", rows,
                    [("threads", "threads", "{}"), ("files", "files", "{}"), ("seconds", "seconds", "{:.2f}"),
                     ("cpu", "cpu s", "{:.2f}"), ("fps", "files/s", "{:.0f}"), ("speedup", "x 1 thread", "{:.2f}"),
                     ("findings", "findings", "{}"), ("fatal", "fatal", "{}")])
