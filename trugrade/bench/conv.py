"""Benchmark of conv2d forward + backward (input, weight and bias gradients) against PyTorch.

Shapes (N, C, H, W, O, k, stride, padding, groups), every distinct conv layer of:
  - ResNet-18 on ImageNet, batch 16 at 224x224 (7x7 stem, 3x3 blocks, 1x1 stride-2 shortcuts);
  - ResNet-18 for CIFAR, batch 128 at 32x32 (3x3 stem, no max-pool);
  - EfficientNet-B0's depthwise convs, batch 8 at 224x224 (3x3 and 5x5, stride 1 and 2).
One trugrade call of `conv2d.backward` runs the forward and the backward, as does one PyTorch
step (conv2d, then .backward) in bench/torch_conv.py (channels_last, 2 threads).
"""
import json
import os

import numpy as np

from .. import ops, set_num_threads
from .common import best_time, print_table, run_torch


def _resnet18_imagenet(n=16):
    return [
        ("r18-224 stem 7x7/2", (n, 3, 224, 224, 64, 7, 2, 3, 1)),
        ("r18-224 l1 3x3", (n, 64, 56, 56, 64, 3, 1, 1, 1)),
        ("r18-224 l2 3x3/2", (n, 64, 56, 56, 128, 3, 2, 1, 1)),
        ("r18-224 l2 3x3", (n, 128, 28, 28, 128, 3, 1, 1, 1)),
        ("r18-224 l2 1x1/2", (n, 64, 56, 56, 128, 1, 2, 0, 1)),
        ("r18-224 l3 3x3/2", (n, 128, 28, 28, 256, 3, 2, 1, 1)),
        ("r18-224 l3 3x3", (n, 256, 14, 14, 256, 3, 1, 1, 1)),
        ("r18-224 l3 1x1/2", (n, 128, 28, 28, 256, 1, 2, 0, 1)),
        ("r18-224 l4 3x3/2", (n, 256, 14, 14, 512, 3, 2, 1, 1)),
        ("r18-224 l4 3x3", (n, 512, 7, 7, 512, 3, 1, 1, 1)),
        ("r18-224 l4 1x1/2", (n, 256, 14, 14, 512, 1, 2, 0, 1)),
    ]


def _resnet18_cifar(n=128):
    return [
        ("r18-32 stem 3x3", (n, 3, 32, 32, 64, 3, 1, 1, 1)),
        ("r18-32 l1 3x3", (n, 64, 32, 32, 64, 3, 1, 1, 1)),
        ("r18-32 l2 3x3/2", (n, 64, 32, 32, 128, 3, 2, 1, 1)),
        ("r18-32 l2 3x3", (n, 128, 16, 16, 128, 3, 1, 1, 1)),
        ("r18-32 l2 1x1/2", (n, 64, 32, 32, 128, 1, 2, 0, 1)),
        ("r18-32 l3 3x3/2", (n, 128, 16, 16, 256, 3, 2, 1, 1)),
        ("r18-32 l3 3x3", (n, 256, 8, 8, 256, 3, 1, 1, 1)),
        ("r18-32 l3 1x1/2", (n, 128, 16, 16, 256, 1, 2, 0, 1)),
        ("r18-32 l4 3x3/2", (n, 256, 8, 8, 512, 3, 2, 1, 1)),
        ("r18-32 l4 3x3", (n, 512, 4, 4, 512, 3, 1, 1, 1)),
        ("r18-32 l4 1x1/2", (n, 256, 8, 8, 512, 1, 2, 0, 1)),
    ]


def _efficientnet_b0_depthwise(n=8):
    rows = []
    for c, size, k, s in [(32, 112, 3, 1), (96, 112, 3, 2), (144, 56, 3, 1), (144, 56, 5, 2),
                          (240, 28, 5, 1), (240, 28, 3, 2), (480, 14, 3, 1), (480, 14, 5, 1),
                          (672, 14, 5, 1), (672, 14, 5, 2), (1152, 7, 5, 1), (1152, 7, 3, 1)]:
        rows.append((f"effb0 dw{k}x{k}{'/2' if s == 2 else ''} {c}@{size}", (n, c, size, size, c, k, s, k // 2, c)))
    return rows


QUICK = ["r18-224 l1 3x3", "r18-224 l4 3x3", "r18-32 l3 3x3", "r18-32 l4 3x3", "effb0 dw3x3/2 96@112",
         "effb0 dw5x5 672@14"]


def shapes(quick=False):
    rows = _resnet18_imagenet() + _resnet18_cifar() + _efficientnet_b0_depthwise()
    return [r for r in rows if r[0] in QUICK] if quick else rows


def _time_trugrade(shape, repeat, min_time):
    n, c, h, w, o, k, s, p, g = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((o, c // g, k, k), dtype=np.float32) * 0.1
    b = rng.standard_normal(o, dtype=np.float32)
    y = ops.conv2d(x, wt, b, stride=s, padding=p, groups=g)
    gy = rng.standard_normal(y.shape, dtype=np.float32)
    return best_time(lambda: ops.conv2d.backward(x, wt, b, grad_output=gy, stride=s, padding=p, groups=g),
                     repeat=repeat, min_time=min_time)


def run(args):
    threads = int(os.environ.get("TRUGRADE_BENCH_THREADS", "2"))
    quick = getattr(args, "quick", False)
    repeat, min_time = (2, 0.05) if quick else (3, 0.3)
    rows = shapes(quick)
    set_num_threads(threads)
    torch = run_torch("torch_conv.py", json.dumps({"shapes": [s for _, s in rows], "repeat": repeat,
                                                   "min_time": min_time}), threads=threads)
    table = []
    for i, (name, shape) in enumerate(rows):
        ours = _time_trugrade(shape, repeat, min_time)
        theirs = torch["times"][i] if torch else None
        table.append({"shape": name, "ours": ours * 1e3, "torch": theirs * 1e3 if theirs else None,
                      "ratio": ours / theirs if theirs else None})
    print_table(f"conv2d forward+backward, {threads} threads (ms; ratio = trugrade / PyTorch, < 1 is faster)",
                table, [("shape", "shape", "{}"), ("ours", "trugrade", "{:.2f}"), ("torch", "pytorch", "{:.2f}"),
                        ("ratio", "ratio", "{:.2f}")])
    ratios = [r["ratio"] for r in table if r["ratio"]]
    if ratios:
        print(f"  geometric mean ratio: {float(np.exp(np.mean(np.log(ratios)))):.2f}")
    return table
