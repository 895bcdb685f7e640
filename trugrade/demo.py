"""`make demo`: a short tour of the engine until the training job lands: ops on numpy
arrays, their gradients, and the thread count."""
import time

import numpy as np

import trugrade


def main():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 64)).astype(np.float32)
    print(f"trugrade {trugrade.__version__}: {len(trugrade.ops.names())} ops, {trugrade.get_num_threads()} threads")
    print("ops:", ", ".join(trugrade.ops.names()))
    y = trugrade.ops.relu(trugrade.ops.add(x, x))
    (gx,) = trugrade.ops.relu.backward(x, grad_output=np.ones_like(x))
    print(f"relu(x + x): mean {y.mean():.4f}; d/dx relu at x>0: {gx[x > 0].mean():.1f}")
    start = time.perf_counter()
    for _ in range(1000):
        y = trugrade.ops.add(x, y)
    print(f"1000 eager adds from Python: {(time.perf_counter() - start) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
