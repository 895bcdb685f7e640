"""Reference side of trugrade.bench.data (Pillow, numpy, PyTorch; the product imports none).

  torch_data.py photos ROOT N                  writes N photo-like JPEGs (quality 90, ~500 x 375)
  torch_data.py pillow ROOT BATCH THREADS EPOCHS   Pillow + numpy pipeline on a thread pool
  torch_data.py torch ROOT BATCH WORKERS EPOCHS    PyTorch DataLoader (worker processes) over a
                                                   Dataset doing the same Pillow + numpy work
Each prints one JSON line; the rates are the best epoch after a warm-up epoch (persistent
DataLoader workers, so their start-up is excluded)."""
import concurrent.futures
import json
import math
import os
import random
import sys
import time

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SIZE = 224


def make_photos(root, n, seed=0):
    """n JPEGs of about 500 x 375 (half portrait): a smooth random field plus noise, in two class folders."""
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
    with Image.open(path) as image:
        image = image.convert("RGB")
        image = image.resize((SIZE, SIZE), Image.BILINEAR, box=crop_box(image.width, image.height, rng))
    x = np.asarray(image, np.float32)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    x = (x * (1 / 255) - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def list_photos(root):
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def pillow_rate(root, batch, threads, epochs):
    paths = list_photos(root)

    def make_batch(chunk, seed):
        rng = random.Random(seed)
        return np.stack([pillow_sample(p, rng) for p in chunk])

    best = 0.0
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for epoch in range(epochs + 1):
            order = list(paths)
            random.Random(epoch).shuffle(order)
            chunks = [order[i:i + batch] for i in range(0, len(order), batch)]
            start = time.perf_counter()
            for _ in pool.map(make_batch, chunks, range(len(chunks))):
                pass
            if epoch:
                best = max(best, len(paths) / (time.perf_counter() - start))
    return best


def torch_rate(root, batch, workers, epochs):
    import torch

    class Photos(torch.utils.data.Dataset):
        def __init__(self):
            self.paths = list_photos(root)

        def __len__(self):
            return len(self.paths)

        def __getitem__(self, index):
            x = pillow_sample(self.paths[index], random.Random(index))
            return torch.from_numpy(x), index % 2

    torch.set_num_threads(int(os.environ.get("TRUGRADE_BENCH_THREADS", "2")))
    loader = torch.utils.data.DataLoader(Photos(), batch_size=batch, shuffle=True, num_workers=workers,
                                         persistent_workers=True)
    best = 0.0
    for epoch in range(epochs + 1):
        start = time.perf_counter()
        n = sum(len(y) for _, y in loader)
        if epoch:
            best = max(best, n / (time.perf_counter() - start))
    return best


def main():
    mode, root = sys.argv[1], sys.argv[2]
    if mode == "photos":
        make_photos(root, int(sys.argv[3]))
        print(json.dumps({"photos": int(sys.argv[3])}))
        return
    batch, workers, epochs = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    rate = pillow_rate(root, batch, workers, epochs) if mode == "pillow" else torch_rate(root, batch, workers, epochs)
    print(json.dumps({"images_per_second": rate}))


if __name__ == "__main__":
    main()
