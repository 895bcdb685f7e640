"""PyTorch twin of trugrade/bench/fashion.py: the recipe of configs/fashion_mnist_cnn.yaml
(--recipe cnn) or configs/fashion_mnist_resnet18.yaml (--recipe resnet18) trained in
PyTorch on the same IDX files, PyTorch at its best on this machine (torch.set_num_threads
from TRUGRADE_BENCH_THREADS, channels_last).

  torch_fashion.py DATASET_FOLDER [--recipe cnn|resnet18] [--epochs N]

The cnn recipe: fashioncnn (csrc/models/small.c: two conv3x3-BN-ReLU per stage at 32 then 64
channels, max-pool after each stage, flatten, linear 256, relu, dropout 0.25, linear 10);
a seeded 90/10 train/val split of the training file; per epoch a new shuffle, batch 64 (the
last batch partial); hflip p=0.5 and normalise (0.2860, 0.3530) per batch; AdamW lr 1e-3,
weight decay 1e-4 on conv and linear weights only, betas (0.9, 0.999), eps 1e-8; cosine
per step down to 1e-5, 3 epochs.
The resnet18 recipe: resnet18 with the small-input stem (3x3 stride-1 conv, no max-pool);
batch 128; per sample a 28x28 crop of the image zero-padded by 2 and hflip p=0.5, then
normalise; SGD lr 0.1, momentum 0.9, nesterov, weight decay 5e-4 on conv and linear weights
only; one-cycle per step (pct_start 0.25, div 25, final div 1e4, cosine, momentum not
cycled: trugrade's schedule); cross-entropy with label smoothing 0.1; 10 epochs.
The test accuracy (t10k) is that of the epoch with the best
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


def random_crop(images, generator, padding=2):
    """uint8 [N, 28, 28] -> each image zero-padded by `padding` and cropped back to 28x28 at a
    random offset."""
    n, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator).tolist()
    return torch.stack([padded[i, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


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
    parser.add_argument("--recipe", choices=("cnn", "resnet18"), default="cnn")
    parser.add_argument("--epochs", type=int, default=0, help="0: the recipe's own (cnn 3, resnet18 10)")
    args = parser.parse_args()
    resnet = args.recipe == "resnet18"
    epochs = args.epochs or (10 if resnet else 3)
    batch = 128 if resnet else BATCH
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

    if resnet:
        model = torch_models_bench.build("resnet18", num_classes=10, in_channels=1, input_size=28)
    else:
        model = torch_models_bench.fashioncnn(num_classes=10, in_channels=1, dropout=0.25)
    model = model.to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    steps = math.ceil(len(train_x) / batch)
    if resnet:
        optimizer = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4},
                                     {"params": no_decay, "weight_decay": 0.0}],
                                    lr=0.1, momentum=0.9, nesterov=True)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=epochs * steps,
                                                       pct_start=0.25, div_factor=25.0, final_div_factor=1e4,
                                                       anneal_strategy="cos", cycle_momentum=False)
    else:
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-4},
                                       {"params": no_decay, "weight_decay": 0.0}],
                                      lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps, eta_min=1e-5)
    smoothing = 0.1 if resnet else 0.0
    generator = torch.Generator().manual_seed(0)
    epoch_seconds, val_accuracy = [], []
    best, best_state = -1.0, None
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        permutation = torch.randperm(len(train_x), generator=generator)
        for i in range(steps):
            index = permutation[i * batch:(i + 1) * batch]
            images = random_crop(train_x[index], generator) if resnet else train_x[index]
            x = prepare(images, torch.rand(len(index), generator=generator) < 0.5)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), train_y[index], label_smoothing=smoothing).backward()
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
