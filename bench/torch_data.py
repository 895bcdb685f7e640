"""PyTorch twin of trugrade.bench.data: a DataLoader with worker processes over a Dataset
doing Pillow decode + crop-resize, numpy flip + normalise -> torch tensor.
Usage: torch_data.py ROOT BATCH WORKERS EPOCHS. Prints one JSON line: images_per_second
(the best epoch after a warm-up epoch; persistent workers, so start-up is excluded)."""
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SIZE = 224


def crop_box(width, height, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
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


class Photos(torch.utils.data.Dataset):
    def __init__(self, root):
        self.paths = sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)
        self.epoch = 0

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        rng = random.Random(index * 1000003 + self.epoch)
        with Image.open(self.paths[index]) as image:
            image = image.convert("RGB")
            image = image.resize((SIZE, SIZE), Image.BILINEAR, box=crop_box(image.width, image.height, rng))
        x = np.asarray(image, np.float32)
        if rng.random() < 0.5:
            x = x[:, ::-1]
        x = (x * (1 / 255) - MEAN) / STD
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), index % 2


def main():
    root, batch, workers, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(int(os.environ.get("TRUGRADE_BENCH_THREADS", "2")))
    dataset = Photos(root)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                         persistent_workers=True)
    best = 0.0
    for epoch in range(epochs + 1):
        start = time.perf_counter()
        n = sum(len(y) for _, y in loader)
        if epoch:
            best = max(best, n / (time.perf_counter() - start))
    print(json.dumps({"images_per_second": best}))


if __name__ == "__main__":
    main()
