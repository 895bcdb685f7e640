"""PyTorch twin of trugrade/bench/fashion.py: the recipe of configs/fashion_mnist_cnn.yaml
trained in PyTorch on the same IDX files, PyTorch at its best on this machine
(torch.set_num_threads from TRUGRADE_BENCH_THREADS, channels_last).

  torch_fashion.py DATASET_FOLDER [--epochs 3]

The recipe: fashioncnn (csrc/models/small.c: two conv3x3-BN-ReLU per stage at 32 then 64
channels, max-pool after each stage, flatten, linear 256, relu, dropout 0.25, linear 10);
a seeded 90/10 train/val split of the training file; per epoch a new shuffle, batch 64 (the
last batch partial); hflip p=0.5 and normalise (0.2860, 0.3530) per batch; AdamW lr 1e-3,
weight decay 1e-4 on conv and linear weights only, betas (0.9, 0.999), eps 1e-8; cosine
per step down to 1e-5. The test accuracy (t10k) is that of the epoch with the best
validation accuracy, as trugrade's best checkpoint. The seconds per epoch count the
training steps only (batch assembly and augmentation included), not the validation.
Prints one JSON line: test_accuracy, val_accuracy, epoch_seconds, seconds_per_epoch,
peak_rss_mb (ru_maxrss of this process)."""
import argparse
import copy
import gzip
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models_bench  # noqa: E402

MEAN, STD = 0.2860, 0.3530
BATCH = 64


def read_idx(path):
    """An IDX file (gzipped or not) as a uint8 array of its declared shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(folder, stem):
    for name in (f"{stem}.gz", stem):
        if os.path.exists(os.path.join(folder, name)):
            return read_idx(os.path.join(folder, name))
    raise SystemExit(f"torch_fashion.py: no {stem}[.gz] in {folder}")


def prepare(images, flip=None):
    """uint8 [N, 28, 28] -> normalised float32 [N, 1, 28, 28] channels_last, mirrored where flip."""
    x = images.unsqueeze(1).float().mul_(1 / 255)
    if flip is not None:
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return ((x - MEAN) / STD).contiguous(memory_format=torch.channels_last)


def accuracy(model, images, labels):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), 1000):
            correct += int((model(prepare(images[i:i + 1000])).argmax(1) == labels[i:i + 1000]).sum())
    return correct / len(images)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("TRUGRADE_BENCH_THREADS", "2")))
    torch.manual_seed(0)
    images = load(args.folder, "train-images-idx3-ubyte")
    labels = load(args.folder, "train-labels-idx1-ubyte").astype(np.int64)
    order = np.random.default_rng(0).permutation(len(images))
    n_val = len(images) // 10
    val_x, val_y = torch.from_numpy(images[order[:n_val]]), torch.from_numpy(labels[order[:n_val]])
    train_x, train_y = torch.from_numpy(images[order[n_val:]]), torch.from_numpy(labels[order[n_val:]])
    test_x = torch.from_numpy(load(args.folder, "t10k-images-idx3-ubyte").copy())
    test_y = torch.from_numpy(load(args.folder, "t10k-labels-idx1-ubyte").astype(np.int64))

    model = torch_models_bench.fashioncnn(num_classes=10, in_channels=1, dropout=0.25)
    model = model.to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-4},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    steps = math.ceil(len(train_x) / BATCH)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * steps, eta_min=1e-5)
    generator = torch.Generator().manual_seed(0)
    epoch_seconds, val_accuracy = [], []
    best, best_state = -1.0, None
    for _ in range(args.epochs):
        model.train()
        start = time.perf_counter()
        permutation = torch.randperm(len(train_x), generator=generator)
        for i in range(steps):
            index = permutation[i * BATCH:(i + 1) * BATCH]
            x = prepare(train_x[index], torch.rand(len(index), generator=generator) < 0.5)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), train_y[index]).backward()
            optimizer.step()
            schedule.step()
        epoch_seconds.append(time.perf_counter() - start)
        val_accuracy.append(accuracy(model, val_x, val_y))
        if val_accuracy[-1] > best:
            best, best_state = val_accuracy[-1], copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    print(json.dumps({"test_accuracy": accuracy(model, test_x, test_y), "val_accuracy": val_accuracy,
                      "epoch_seconds": epoch_seconds, "seconds_per_epoch": sum(epoch_seconds) / len(epoch_seconds),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
