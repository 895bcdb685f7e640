"""Data loading speed: images/second for JPEG decode + random-resized-crop 224 + flip +
normalise, trugrade's loader (2 worker threads) beside a Pillow + numpy pipeline (2
threads) and PyTorch's DataLoader (2 worker processes) on the same files: ~300 photo-like
JPEGs of about 500 x 375 (smooth random fields + noise, quality 90) written into a
temporary folder. The reference side (making the photos, the Pillow and PyTorch pipelines)
is bench/torch_data.py, since the product never imports Pillow or PyTorch. Each figure is
the best of a few epochs after a warm-up epoch (worker start-up and first reads excluded)."""
import os
import tempfile
import time

from .common import print_table, run_torch

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
SIZE = 224
BATCH = 32
WORKERS = 2


def trugrade_rate(root, epochs):
    from .. import data
    ds = data.scan(root, split=(1.0, 0.0, 0.0))
    loader = data.Loader(ds, batch_size=BATCH, workers=WORKERS, seed=0, pipeline=[
        {"name": "random_resized_crop", "size": SIZE}, {"name": "hflip"},
        {"name": "normalize", "mean": MEAN, "std": STD}])
    best = 0.0
    for epoch in range(epochs + 1):
        start = time.perf_counter()
        n = sum(len(y) for _, y in loader.epoch(epoch))
        if epoch:
            best = max(best, n / (time.perf_counter() - start))
    return best


def run(args):
    n = 120 if args.quick else 300
    epochs = 2 if args.quick else 3
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="trugrade_bench_data_") as root:
        if run_torch("torch_data.py", "photos", root, n) is None:
            print("  data: no photos could be made (Pillow and bench/ are needed); section skipped")
            return
        rows = [{"pipeline": f"trugrade Loader ({WORKERS} worker threads)", "rate": trugrade_rate(root, epochs)}]
        for mode, name in (("pillow", f"Pillow + numpy ({WORKERS} threads)"),
                           ("torch", f"PyTorch DataLoader ({WORKERS} worker processes)")):
            result = run_torch("torch_data.py", mode, root, BATCH, WORKERS, epochs)
            rows.append({"pipeline": name, "rate": result["images_per_second"] if result else None})
    others = [r["rate"] for r in rows[1:] if r["rate"]]
    for r in rows:
        r["ratio"] = r["rate"] / max(others) if r["rate"] and others else None
    print_table(f"data: JPEG ~500x375 -> decode + random_resized_crop {SIZE} + hflip + normalise, batch {BATCH}, "
                f"{n} files (load average before: {load[0]:.2f})", rows,
                [("pipeline", "pipeline", "{}"), ("rate", "images/s", "{:.0f}"),
                 ("ratio", "vs the faster other", "{:.2f}x")])
