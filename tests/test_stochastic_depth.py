"""stochastic_depth beyond tests/opcases: each sample is kept whole (scaled by 1/(1-p))
or zeroed whole, about a fraction p is dropped, the same seed gives the same draw, and
the result is bit-identical at 1 and 2 threads."""
import numpy as np
import pytest

import trugrade
from trugrade import ops
from opcheck import randn


def test_samples_are_kept_whole_or_zeroed():
    x = randn(4000, 2, 3, 3, seed=1)
    p = 0.3
    y = ops.stochastic_depth(x, p=p, training=True, seed=17)
    kept = np.array([np.array_equal(y[n], (x[n] * np.float32(1 / (1 - p)))) for n in range(len(x))])
    dropped = np.array([not y[n].any() for n in range(len(x))])
    assert np.all(kept | dropped)
    assert abs(dropped.mean() - p) < 0.03


def test_same_seed_same_draw_other_seed_other_draw():
    x = randn(256, 8, seed=2)
    a = ops.stochastic_depth(x, p=0.5, training=True, seed=5)
    b = ops.stochastic_depth(x, p=0.5, training=True, seed=5)
    c = ops.stochastic_depth(x, p=0.5, training=True, seed=6)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_backward_uses_the_forward_draw():
    x = randn(64, 5, seed=3)
    g = np.ones_like(x)
    y = ops.stochastic_depth(x, p=0.5, training=True, seed=8)
    (gx,) = ops.stochastic_depth.backward(x, grad_output=g, p=0.5, training=True, seed=8)
    np.testing.assert_array_equal(gx != 0, y != 0)


@pytest.mark.parametrize("training", [True, False])
def test_bit_identical_at_1_and_2_threads(training):
    x = randn(16, 32, 33, 35, seed=4)
    before = trugrade.get_num_threads()
    try:
        trugrade.set_num_threads(1)
        one = ops.stochastic_depth(x, p=0.2, training=training, seed=5)
        trugrade.set_num_threads(2)
        two = ops.stochastic_depth(x, p=0.2, training=training, seed=5)
    finally:
        trugrade.set_num_threads(before)
    assert one.tobytes() == two.tobytes()
