"""linear and matmul give bit-identical results (forward and backward) with 1 and 2 threads."""
import numpy as np
import pytest

import trugrade
from opcheck import randn

CASES = [
    ("linear", [randn(130, 97, seed=1), randn(100, 97, seed=2), randn(100, seed=3)]),
    ("linear", [randn(3, 7, 300, seed=1), randn(65, 300, seed=2)]),
    ("matmul", [randn(8, 49, 32, seed=1), randn(8, 32, 49, seed=2)]),
    ("matmul", [randn(2, 130, 200, seed=1), randn(200, 97, seed=2)]),
]


def _run(name, inputs):
    op = trugrade.ops.OPS[name]
    out = np.array(op(*inputs))
    grad = np.random.default_rng(5).standard_normal(out.shape).astype(np.float32)
    grads = [np.array(g) for g in op.backward(*inputs, grad_output=grad) if g is not None]
    return [out] + grads


@pytest.mark.parametrize("name,inputs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_same_bits_for_1_and_2_threads(name, inputs):
    before = trugrade.get_num_threads()
    try:
        trugrade.set_num_threads(1)
        one = _run(name, inputs)
        trugrade.set_num_threads(2)
        two = _run(name, inputs)
    finally:
        trugrade.set_num_threads(before)
    for a, b in zip(one, two):
        assert a.tobytes() == b.tobytes()
