"""PyTorch twin of trugrade.bench.overhead: the same chain of tiny ops, eager mode.
Prints one JSON line: forward_us and forward_backward_us per op."""
import json
import os
import sys
import time

import torch


def best(fn, repeat=7, loops=200):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        times.append((time.perf_counter() - start) / loops)
    return min(times)


def main():
    chain, size = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(int(os.environ.get("TRUGRADE_BENCH_THREADS", "2")))
    x = torch.ones(size)
    w = torch.ones(size, requires_grad=True)

    def forward():
        y = x + w
        for i in range(chain - 1):
            y = torch.relu(y) if i % 2 else y + w
        return y

    def forward_backward():
        forward().sum().backward()

    with torch.no_grad():
        fwd = best(forward)
    both = best(forward_backward)
    print(json.dumps({"forward_us": fwd / chain * 1e6, "forward_backward_us": both / chain * 1e6}))


if __name__ == "__main__":
    main()
