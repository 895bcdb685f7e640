"""PyTorch twin of trugrade/bench/conv.py: times conv2d forward + backward (input, weight and
bias gradients) per shape in channels_last with torch.set_num_threads(N) and prints one JSON
line {"times": [seconds per step, ...]}. Argument: JSON {"shapes": [...], "repeat", "min_time"}."""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F


def best_time(fn, repeat, min_time):
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    loops = max(1, int(min_time / repeat / once))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - start) / loops)
    return best


def main():
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(int(os.environ.get("TRUGRADE_BENCH_THREADS", "2")))
    times = []
    for n, c, h, w, o, k, s, p, g in spec["shapes"]:
        x = torch.randn(n, c, h, w).to(memory_format=torch.channels_last).requires_grad_(True)
        wt = (torch.randn(o, c // g, k, k) * 0.1).to(memory_format=torch.channels_last).requires_grad_(True)
        b = torch.randn(o, requires_grad=True)
        with torch.no_grad():
            gy = torch.randn_like(F.conv2d(x, wt, b, stride=s, padding=p, groups=g))

        def step():
            x.grad = wt.grad = b.grad = None
            F.conv2d(x, wt, b, stride=s, padding=p, groups=g).backward(gy)

        times.append(best_time(step, spec["repeat"], spec["min_time"]))
    print(json.dumps({"times": times}))


if __name__ == "__main__":
    main()
