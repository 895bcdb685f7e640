"""Per-op overhead: a chain of 100 tiny elementwise ops (8 floats each), run by the
graph executor in C (forward, and forward + backward), against the same chain in
PyTorch eager mode (bench/torch_overhead.py)."""
import numpy as np

import trugrade
from trugrade.bench.common import best_time, print_table, run_torch

CHAIN = 100
SIZE = 8


def build_chain():
    g = trugrade.Graph()
    x = g.input("x", (SIZE,))
    w = g.param("w", (SIZE,))
    node = g.op("add", [x, w])
    for i in range(CHAIN - 1):
        node = g.op("relu" if i % 2 else "add", [node, w] if i % 2 == 0 else [node])
    return g, x, node


def run(args):
    trugrade.set_num_threads(2)
    g, x, out = build_chain()
    g.plan(loss=out)
    g.feed(x, np.ones(SIZE, np.float32))
    forward = best_time(lambda: g.run(training=True), repeat=7, min_time=0.5) / CHAIN
    both = best_time(lambda: g.run(training=True, backward=True), repeat=7, min_time=0.5) / CHAIN
    eager_x = np.ones(SIZE, np.float32)

    def eager():
        y = eager_x
        for i in range(CHAIN):
            y = trugrade.ops.relu(y) if i % 2 else trugrade.ops.add(y, eager_x)
    eager_time = best_time(eager, repeat=5, min_time=0.5) / CHAIN
    ref = run_torch("torch_overhead.py", CHAIN, SIZE) or {}
    rows = [
        {"what": "graph forward (C executor)", "tg": forward * 1e6, "torch": ref.get("forward_us")},
        {"what": "graph forward + backward", "tg": both * 1e6, "torch": ref.get("forward_backward_us")},
        {"what": "eager from Python (trugrade.ops)", "tg": eager_time * 1e6, "torch": ref.get("forward_us")},
    ]
    for r in rows:
        r["ratio"] = r["torch"] / r["tg"] if r["torch"] else None
    print_table(f"per-op overhead: chain of {CHAIN} ops on {SIZE} floats, microseconds per op "
                "(ratio = PyTorch time / trugrade time; target: graph under 5 us)", rows,
                [("what", "path", "{}"), ("tg", "trugrade us/op", "{:.3f}"), ("torch", "PyTorch eager us/op", "{:.3f}"),
                 ("ratio", "speed-up", "{:.1f}x")])
    return rows
