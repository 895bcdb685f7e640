"""conv2d and conv_transpose2d give bit-identical results, forward and backward, with 1 and
2 threads (the weight gradient sums over the batch in a fixed order)."""
import numpy as np
import pytest

import trugrade
from opcheck import randn

SHAPES = [
    # (op, x shape, weight shape, attrs)
    ("conv2d", (6, 8, 20, 20), (16, 8, 3, 3), dict(padding=1)),
    ("conv2d", (2, 3, 40, 40), (8, 3, 7, 7), dict(stride=2, padding=3)),
    ("conv2d", (16, 32, 4, 4), (32, 32, 3, 3), dict(padding=1)),
    ("conv2d", (4, 16, 9, 9), (16, 4, 3, 3), dict(groups=4, stride=2, padding=1)),
    ("conv2d", (3, 24, 17, 17), (24, 1, 5, 5), dict(groups=24, stride=2, padding=2)),
    ("conv2d", (3, 12, 15, 15), (24, 1, 3, 3), dict(groups=12, padding=1)),
    ("conv2d", (4, 16, 12, 12), (8, 16, 1, 1), dict()),
    ("conv2d", (3, 32, 13, 13), (32, 1, 3, 3), dict(groups=32, padding=1)),
    ("conv2d", (2, 16, 21, 19), (16, 1, 5, 5), dict(groups=16, stride=2, padding=2)),
    ("conv2d", (2, 64, 30, 30), (32, 64, 3, 3), dict(padding=1)),
    ("conv2d", (9, 32, 6, 5), (16, 32, 3, 3), dict(padding=1)),
    ("conv_transpose2d", (4, 8, 7, 7), (8, 6, 4, 4), dict(stride=2, padding=1)),
]


def _run(op_name, x, w, b, gy, attrs):
    op = trugrade.ops.OPS[op_name]
    y = np.array(op(x, w, b, **attrs))
    grads = [np.array(g) for g in op.backward(x, w, b, grad_output=gy, **attrs)]
    return [y] + grads


@pytest.mark.parametrize("op_name,xs,ws,attrs", SHAPES, ids=[f"{s[0]}-{i}" for i, s in enumerate(SHAPES)])
def test_one_and_two_threads_bit_identical(op_name, xs, ws, attrs):
    x, w = randn(*xs, seed=1), randn(*ws, seed=2)
    out_c = ws[0] if op_name == "conv2d" else ws[1] * attrs.get("groups", 1)
    b = randn(out_c, seed=3)
    y = trugrade.ops.OPS[op_name](x, w, b, **attrs)
    gy = randn(*y.shape, seed=4)
    previous = trugrade.get_num_threads()
    try:
        trugrade.set_num_threads(1)
        one = _run(op_name, x, w, b, gy, attrs)
        trugrade.set_num_threads(2)
        two = _run(op_name, x, w, b, gy, attrs)
    finally:
        if previous:
            trugrade.set_num_threads(previous)
    for a, c, name in zip(one, two, ["output", "grad x", "grad weight", "grad bias"]):
        assert a.tobytes() == c.tobytes(), f"{op_name} {xs}: {name} differs between 1 and 2 threads"
