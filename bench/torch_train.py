"""PyTorch twin of trugrade/bench/train.py: full training steps (forward, cross-entropy,
backward, SGD momentum 0.9) of one architecture on synthetic in-memory data, PyTorch at its
best on this machine: torch.set_num_threads from TRUGRADE_BENCH_THREADS (2), channels_last
model and batches, OPENBLAS settings from trugrade.bench.common.run_torch's environment;
--bf16 runs forward and loss under torch.autocast("cpu", dtype=torch.bfloat16).

  torch_train.py ARCH IN_CHANNELS SIZE BATCH STEPS [--classes 10] [--bf16]

The data is batch * steps random images held in memory (float32, as on the trugrade side),
with random class labels, or random per-pixel masks (N, SIZE, SIZE) for the segmentation
architectures (unet, unet_se: per-pixel cross-entropy).
The first step (batch 0, timed on its own: lazy allocations and kernel set-up) runs before
the timed epoch of `steps` batches. Prints one JSON line: images_per_second, step_seconds,
first_step_seconds, peak_rss_mb (ru_maxrss of this process, which runs one measurement)."""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models_bench  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("arch")
    parser.add_argument("in_channels", type=int)
    parser.add_argument("size", type=int)
    parser.add_argument("batch", type=int)
    parser.add_argument("steps", type=int)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args()
    threads = int(os.environ.get("TRUGRADE_BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    images = torch.from_numpy(rng.standard_normal((n, args.in_channels, args.size, args.size), dtype=np.float32))
    segmentation = args.arch in torch_models_bench.SEGMENTATION
    labels = torch.from_numpy(rng.integers(0, args.classes, (n, args.size, args.size) if segmentation else n,
                                           dtype=np.int64))
    model = torch_models_bench.build(args.arch, args.classes, args.in_channels, args.size)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(i):
        x = images[i * args.batch:(i + 1) * args.batch].contiguous(memory_format=torch.channels_last)
        y = labels[i * args.batch:(i + 1) * args.batch]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    start = time.perf_counter()
    step(0)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(args.steps):
        loss = step(i)
    float(loss)
    elapsed = time.perf_counter() - start
    print(json.dumps({"arch": args.arch, "in_channels": args.in_channels, "size": args.size, "batch": args.batch,
                      "steps": args.steps, "bf16": args.bf16, "threads": threads,
                      "images_per_second": n / elapsed, "step_seconds": elapsed / args.steps,
                      "first_step_seconds": first, "loss": float(loss),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
