"""Data loading speed: images/second for JPEG decode + random-resized-crop 224 + flip +
normalise, trugrade's loader (2 worker threads) beside a Pillow + numpy pipeline (2
threads) and PyTorch's DataLoader (2 worker processes, bench/torch_data.py) on the same
files: ~300 photo-like JPEGs of about 500 x 375 (smooth random fields + noise, quality 90)
written into a temporary folder. Each figure is the best of a few epochs after a warm-up
epoch (worker start-up and the first reads excluded)."""
import concurrent.futures
import math
import os
import random
import tempfile
import time

import numpy as np

from .common import print_table, run_torch

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SIZE = 224
BATCH = 32
WORKERS = 2


def make_photos(root, n, seed=0):
    """n JPEGs (quality 90) of about 500 x 375, half portrait, in two class folders."""
    from PIL import Image
    rng = np.random.RandomState(seed)
    for i in range(n):
        w, h = (500, 375) if i % 2 == 0 else (375, 500)
        w += int(rng.randint(-40, 41))
        h += int(rng.randint(-30, 31))
        coarse = rng.rand(h // 25 + 2, w // 25 + 2, 3).astype(np.float32)
        field = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float32)
        pixels = np.clip(field + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        folder = os.path.join(root, f"class{i % 2}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:04d}.jpg"), quality=90)


def crop_box(width, height, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision's RandomResizedCrop draw: (left, top, right, bottom)."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = rng.randint(0, width - w)
            top = rng.randint(0, height - h)
            return left, top, left + w, top + h
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2


def pillow_sample(path, rng):
    """Pillow decode + crop-resize (one bilinear pass), numpy flip + normalise -> float32 (3, 224, 224)."""
    from PIL import Image
    with Image.open(path) as image:
        image = image.convert("RGB")
        image = image.resize((SIZE, SIZE), Image.BILINEAR, box=crop_box(image.width, image.height, rng))
    x = np.asarray(image, np.float32)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    x = (x * (1 / 255) - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def pillow_rate(paths, threads, epochs):
    def batch(chunk, seed):
        rng = random.Random(seed)
        return np.stack([pillow_sample(p, rng) for p in chunk])

    best = 0.0
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for epoch in range(epochs + 1):
            order = list(paths)
            random.Random(epoch).shuffle(order)
            chunks = [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
            start = time.perf_counter()
            for _ in pool.map(batch, chunks, range(len(chunks))):
                pass
            if epoch:
                best = max(best, len(paths) / (time.perf_counter() - start))
    return best


def trugrade_rate(root, epochs):
    from .. import data
    ds = data.scan(root, split=(1.0, 0.0, 0.0))
    loader = data.Loader(ds, batch_size=BATCH, workers=WORKERS, seed=0, pipeline=[
        {"name": "random_resized_crop", "size": SIZE}, {"name": "hflip"},
        {"name": "normalize", "mean": MEAN.tolist(), "std": STD.tolist()}])
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
        make_photos(root, n)
        paths = sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)
        rows = [{"pipeline": f"trugrade Loader ({WORKERS} worker threads)", "rate": trugrade_rate(root, epochs)},
                {"pipeline": f"Pillow + numpy ({WORKERS} threads)", "rate": pillow_rate(paths, WORKERS, epochs)}]
        torch = run_torch("torch_data.py", root, BATCH, WORKERS, epochs)
        rows.append({"pipeline": f"PyTorch DataLoader ({WORKERS} worker processes)",
                     "rate": torch["images_per_second"] if torch else None})
    fastest_other = max(r["rate"] for r in rows[1:] if r["rate"])
    for r in rows:
        r["ratio"] = r["rate"] / fastest_other if r["rate"] else None
    print_table(f"data: JPEG ~500x375 -> decode + random_resized_crop {SIZE} + hflip + normalise, batch {BATCH}, "
                f"{n} files (load average before: {load[0]:.2f})", rows,
                [("pipeline", "pipeline", "{}"), ("rate", "images/s", "{:.0f}"),
                 ("ratio", "vs the faster other", "{:.2f}x")])
