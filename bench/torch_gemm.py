"""PyTorch twin of trugrade.bench.gemm: GFLOPS of torch.matmul (float32, and bfloat16 inputs)
on the same shapes. Threads from TRUGRADE_BENCH_THREADS. Prints one JSON line."""
import json
import os
import sys
import time

import torch

SHAPES = [(256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048),
          (64, 3136, 576), (512, 49, 4608), (128, 784, 1152), (256, 196, 2304)]


def best_seconds(fn, repeat):
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    quick = "--quick" in sys.argv
    threads = int(os.environ.get("TRUGRADE_BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    result = {"threads": threads, "float32": {}, "bfloat16": {}}
    with torch.no_grad():
        for m, n, k in SHAPES:
            if quick and m * n * k > 1024 ** 3:
                continue
            key = f"{m}x{n}x{k}"
            repeat = 3 if m * n * k >= 1024 ** 3 else 7
            for dtype, name in ((torch.float32, "float32"), (torch.bfloat16, "bfloat16")):
                a = torch.rand(m, k).to(dtype)
                b = torch.rand(k, n).to(dtype)
                seconds = best_seconds(lambda: torch.matmul(a, b), repeat)
                result[name][key] = 2.0 * m * n * k / seconds / 1e9
    print(json.dumps(result))


if __name__ == "__main__":
    main()
