"""batchnorm2d's running statistics: a training forward updates running_mean and
running_var in place exactly as torch.nn.functional.batch_norm does (unbiased variance
for the update), eval leaves them alone; and wrong arguments fail with clear errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import trugrade
from opcheck import rand, randn


@pytest.mark.parametrize("shape,momentum", [((4, 3, 5, 7), 0.1), ((1, 2, 3, 1), 0.5), ((2, 5, 1, 1), 1.0)])
def test_training_updates_running_stats_like_pytorch(shape, momentum):
    x = randn(*shape, seed=1) * 2 + 3
    c = shape[1]
    running_mean, running_var = randn(c, seed=2), rand(c, seed=3, low=0.5, high=2)
    ref_mean, ref_var = torch.from_numpy(running_mean.copy()), torch.from_numpy(running_var.copy())
    for _ in range(3):   # several steps accumulate
        trugrade.ops.batchnorm2d(x, None, None, running_mean, running_var, training=True, momentum=momentum)
        F.batch_norm(torch.from_numpy(x), ref_mean, ref_var, training=True, momentum=momentum)
    np.testing.assert_allclose(running_mean, ref_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(running_var, ref_var.numpy(), rtol=1e-5, atol=1e-6)


def test_eval_leaves_running_stats_alone():
    running_mean, running_var = randn(3, seed=2), rand(3, seed=3, low=0.5, high=2)
    before = running_mean.copy(), running_var.copy()
    trugrade.ops.batchnorm2d(randn(2, 3, 4, 4, seed=1), None, None, running_mean, running_var, training=False)
    assert np.array_equal(running_mean, before[0]) and np.array_equal(running_var, before[1])


def test_running_stats_get_no_gradient():
    x = randn(2, 3, 4, 4, seed=1)
    grads = trugrade.ops.batchnorm2d.backward(x, randn(3, seed=2), randn(3, seed=3), randn(3, seed=4),
                                              rand(3, seed=5, low=0.5, high=2), grad_output=randn(2, 3, 4, 4, seed=6),
                                              training=True)
    assert grads[0] is not None and grads[1] is not None and grads[2] is not None
    assert grads[3] is None and grads[4] is None


def test_errors_name_the_problem():
    with pytest.raises(trugrade.TrugradeValueError, match="more than 1 value per channel"):
        trugrade.ops.batchnorm2d(randn(1, 3, 1, 1, seed=1), training=True)
    with pytest.raises(trugrade.TrugradeValueError, match="running_var"):
        trugrade.ops.batchnorm2d(randn(2, 3, 2, 2, seed=1), None, None, randn(3, seed=2))
    with pytest.raises(trugrade.ShapeError, match="weight"):
        trugrade.ops.batchnorm2d(randn(2, 3, 2, 2, seed=1), randn(4, seed=2))
    with pytest.raises(trugrade.TrugradeValueError, match=r"target\[1\] = 7"):
        trugrade.ops.cross_entropy(randn(2, 5, seed=1), np.array([0, 7]))
    with pytest.raises(trugrade.ShapeError, match="too small"):
        trugrade.ops.max_pool2d(randn(1, 1, 2, 2, seed=1), kernel_size=3)
    with pytest.raises(trugrade.TrugradeValueError, match="exactly one of size and scale_factor"):
        trugrade.ops.upsample_bilinear(randn(1, 1, 2, 2, seed=1))
