"""seg_loss.c beyond the PyTorch comparisons of tests/opcases/seg_loss.py: bit-identical
results at 1 and 2 threads, focal alpha as per-class factors, and softmax_focal_loss with
gamma 0 equals cross_entropy."""
import numpy as np

import trugrade
from trugrade import ops
from opcheck import randint, randn


def _at_threads(count, fn):
    before = trugrade.get_num_threads()
    trugrade.set_num_threads(count)
    try:
        return [np.array(r, copy=True) for r in fn() if r is not None]
    finally:
        trugrade.set_num_threads(before)


def test_bit_identical_at_1_and_2_threads():
    x, t = randn(4, 3, 67, 61, seed=1) * 3, randint(3, 4, 67, 61, seed=2)
    w = np.array([0.2, 1.0, 1.8], np.float32)
    cases = [
        lambda: (ops.softmax_focal_loss(x, t, w),),
        lambda: (ops.softmax_focal_loss(x, t, reduction=0),),
        lambda: ops.softmax_focal_loss.backward(x, t, w, grad_output=np.float32(1.0), gamma=1.5),
        lambda: ops.softmax_focal_loss.backward(x, t, grad_output=np.float32(1.0), alpha=0.25),
        lambda: (ops.scale(x, factor=0.4), ops.scale.backward(x, grad_output=x, factor=0.4)[0]),
    ]
    for fn in cases:
        one, two = _at_threads(1, fn), _at_threads(2, fn)
        for a, b in zip(one, two):
            assert a.tobytes() == b.tobytes()


def test_alpha_weighs_foreground_by_alpha_and_background_by_its_complement():
    x, t = randn(2, 3, 9, 7, seed=5), randint(3, 2, 9, 7, seed=6)
    w = np.array([0.75, 0.25, 0.25], np.float32)   # alpha 0.25: class 0 gets 0.75, the others 0.25
    np.testing.assert_allclose(ops.softmax_focal_loss(x, t, alpha=0.25), ops.softmax_focal_loss(x, t, w), rtol=1e-6)
    np.testing.assert_allclose(ops.softmax_focal_loss(x, t, w, alpha=0.5), ops.softmax_focal_loss(x, t, w * 0.5),
                               rtol=1e-6)


def test_gamma0_is_cross_entropy():
    x, t = randn(2, 4, 9, 7, seed=3), randint(4, 2, 9, 7, seed=4)
    np.testing.assert_allclose(ops.softmax_focal_loss(x, t, gamma=0.0), ops.cross_entropy(x, t), rtol=1e-6)
