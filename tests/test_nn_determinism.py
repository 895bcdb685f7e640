"""The nn ops give bit-identical results with 1 and 2 threads (forward and backward).
Shapes are large enough that every kernel splits its work across both threads."""
import numpy as np
import pytest

import trugrade
from opcheck import rand, randint, randn

SEG_LOGITS = randn(2, 5, 48, 40, seed=1)
SEG_TARGET = randint(5, 2, 48, 40, seed=2)
SEG_TARGET[0, ::3, ::7] = -100

CALLS = [
    ("batchnorm2d", [randn(8, 6, 20, 20, seed=3) * 2 + 1, randn(6, seed=4), randn(6, seed=5),
                     np.zeros(6, np.float32), np.ones(6, np.float32)], {}, True),
    ("batchnorm2d", [randn(8, 6, 20, 20, seed=3), randn(6, seed=4), randn(6, seed=5),
                     randn(6, seed=6), rand(6, seed=7, low=0.5, high=2)], {}, False),
    ("layernorm", [randn(64, 384, seed=8), randn(384, seed=9), randn(384, seed=10)], {"normalized_shape": [384]}, False),
    ("groupnorm", [randn(4, 16, 24, 24, seed=11), randn(16, seed=12), randn(16, seed=13)], {"num_groups": 4}, False),
    ("max_pool2d", [randn(4, 16, 33, 33, seed=14)], {"kernel_size": 3, "stride": 2, "padding": 1}, False),
    ("avg_pool2d", [randn(4, 16, 33, 33, seed=15)], {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, False),
    ("adaptive_avg_pool2d", [randn(4, 16, 33, 31, seed=16)], {"output_size": (5, 7)}, False),
    ("global_avg_pool", [randn(8, 64, 14, 14, seed=17)], {}, False),
    ("upsample_nearest", [randn(2, 8, 40, 40, seed=18)], {"scale_factor": 2.0}, False),
    ("upsample_bilinear", [randn(2, 8, 40, 40, seed=19)], {"size": (97, 61), "align_corners": False}, False),
    ("mse_loss", [randn(64, 3000, seed=20), randn(64, 3000, seed=21)], {}, False),
    ("l1_loss", [randn(64, 3000, seed=22), randn(64, 3000, seed=23)], {"reduction": 2}, False),
    ("smooth_l1_loss", [randn(64, 3000, seed=24), randn(64, 3000, seed=25)], {}, False),
    ("binary_cross_entropy_with_logits", [randn(64, 3000, seed=26), rand(64, 3000, seed=27, low=0, high=1),
                                          rand(3000, seed=28, low=0.5, high=2)], {}, False),
    ("sigmoid_focal_loss", [randn(64, 3000, seed=29), randint(2, 64, 3000, seed=30).astype(np.float32)], {}, False),
    ("cross_entropy", [SEG_LOGITS, SEG_TARGET, rand(5, seed=31, low=0.5, high=2)], {"label_smoothing": 0.1}, False),
    ("cross_entropy", [randn(4096, 10, seed=32), randint(10, 4096, seed=33)], {}, False),
    ("dice_loss", [SEG_LOGITS, SEG_TARGET], {}, False),
]


def _run(name, inputs, attrs, training, threads):
    trugrade.set_num_threads(threads)
    inputs = [x.copy() for x in inputs]           # batchnorm training updates its running stats in place
    op = trugrade.ops.OPS[name]
    out = np.array(op(*inputs, training=training, **attrs))
    rng = np.random.default_rng(0)
    grad_out = rng.standard_normal(size=out.shape).astype(np.float32)
    grads = op.backward(*[x.copy() for x in inputs], grad_output=grad_out, training=training, **attrs)
    return [out] + [np.array(g) for g in grads if g is not None] + [inputs[i] for i in range(len(inputs))]


@pytest.mark.parametrize("name,inputs,attrs,training", CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(CALLS)])
def test_one_and_two_threads_bit_identical(name, inputs, attrs, training):
    before = trugrade.get_num_threads()
    try:
        one = _run(name, inputs, attrs, training, 1)
        two = _run(name, inputs, attrs, training, 2)
    finally:
        trugrade.set_num_threads(before)
    assert len(one) == len(two)
    for a, b in zip(one, two):
        assert a.tobytes() == b.tobytes(), f"{name}: results differ between 1 and 2 threads"
