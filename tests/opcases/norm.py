"""Cases for csrc/ops/norm.c: batchnorm2d (training and eval), batchnorm2d_silu, layernorm, groupnorm."""
import torch.nn.functional as F

from opcheck import Case, rand, randn


def _stats(c, seed):
    """running_mean, running_var for c channels (variance positive)."""
    return [randn(c, seed=seed), rand(c, seed=seed + 1, low=0.5, high=2.0)]


def _bn(training):
    return lambda x, w=None, b=None, rm=None, rv=None, momentum=0.1, eps=1e-5: F.batch_norm(
        x, rm, rv, w, b, training=training or rm is None, momentum=momentum, eps=eps)


def _bn_silu(training):
    bn = _bn(training)
    return lambda *args, **kwargs: F.silu(bn(*args, **kwargs))


BN_GRAD = [True, True, True, False, False]

CASES = [
    Case("batchnorm2d", [randn(4, 3, 5, 7, seed=1), randn(3, seed=2), randn(3, seed=3)] + _stats(3, 4),
         _bn(True), training=True, grad=BN_GRAD, id="train"),
    Case("batchnorm2d", [randn(1, 5, 3, 3, seed=5), randn(5, seed=6), randn(5, seed=7)] + _stats(5, 8),
         _bn(True), training=True, grad=BN_GRAD, attrs={"momentum": 0.3, "eps": 1e-3}, id="train_batch1"),
    Case("batchnorm2d", [randn(2, 4, 1, 1, seed=9) * 3 + 5], _bn(True), training=True, id="train_no_affine_1x1"),
    Case("batchnorm2d", [randn(3, 2, 17, 9, seed=10) * 2 + 40, randn(2, seed=11), None] + _stats(2, 12),
         _bn(True), training=True, grad=[True, True, False, False, False], id="train_offset_no_bias"),
    Case("batchnorm2d", [randn(2, 3, 4, 5, seed=13), randn(3, seed=14), randn(3, seed=15)] + _stats(3, 16),
         _bn(False), grad=BN_GRAD, id="eval"),
    Case("batchnorm2d", [randn(2, 3, 4, 5, seed=17), None, randn(3, seed=18)] + _stats(3, 19),
         _bn(False), grad=[True, False, True, False, False], id="eval_no_weight"),
    Case("batchnorm2d", [randn(2, 3, 4, 5, seed=20)], _bn(False), id="eval_without_running_stats"),
    Case("batchnorm2d_silu", [randn(4, 3, 5, 7, seed=21), randn(3, seed=22), randn(3, seed=23)] + _stats(3, 24),
         _bn_silu(True), training=True, grad=BN_GRAD, id="train"),
    Case("batchnorm2d_silu", [randn(1, 5, 3, 3, seed=25) * 3, randn(5, seed=26), None] + _stats(5, 27),
         _bn_silu(True), training=True, grad=[True, True, False, False, False], attrs={"momentum": 0.3, "eps": 1e-3},
         id="train_batch1_no_bias"),
    Case("batchnorm2d_silu", [randn(2, 4, 1, 1, seed=28) * 3 + 5], _bn_silu(True), training=True,
         id="train_no_affine_1x1"),
    Case("batchnorm2d_silu", [randn(2, 3, 4, 5, seed=29), randn(3, seed=30), randn(3, seed=31)] + _stats(3, 32),
         _bn_silu(False), grad=BN_GRAD, id="eval"),
    Case("layernorm", [randn(2, 5, 7, seed=1), randn(7, seed=2), randn(7, seed=3)],
         lambda x, w, b, normalized_shape, eps=1e-5: F.layer_norm(x, normalized_shape, w, b, eps),
         attrs={"normalized_shape": [7]}, id="last"),
    Case("layernorm", [randn(3, 5, 6, seed=4) + 3, randn(5, 6, seed=5), randn(5, 6, seed=6)],
         lambda x, w, b, normalized_shape, eps=1e-5: F.layer_norm(x, normalized_shape, w, b, eps),
         attrs={"normalized_shape": [5, 6], "eps": 1e-3}, id="two_dims"),
    Case("layernorm", [randn(1, 33, seed=7)],
         lambda x, normalized_shape: F.layer_norm(x, normalized_shape),
         attrs={"normalized_shape": [33]}, id="no_affine_batch1"),
    Case("layernorm", [randn(4, 2, 3, 300, seed=8), None, randn(300, seed=9)],
         lambda x, w, b, normalized_shape: F.layer_norm(x, normalized_shape, w, b),
         attrs={"normalized_shape": [300]}, grad=[True, False, True], id="bias_only_long_rows"),
    Case("groupnorm", [randn(2, 6, 5, 5, seed=1), randn(6, seed=2), randn(6, seed=3)],
         lambda x, w, b, num_groups, eps=1e-5: F.group_norm(x, num_groups, w, b, eps),
         attrs={"num_groups": 3}, id="g3"),
    Case("groupnorm", [randn(1, 4, 7, seed=4) * 2 + 1],
         lambda x, num_groups: F.group_norm(x, num_groups), attrs={"num_groups": 2}, id="batch1_3d_no_affine"),
    Case("groupnorm", [randn(3, 8, 3, 5, seed=5), randn(8, seed=6), None],
         lambda x, w, b, num_groups: F.group_norm(x, num_groups, w, b),
         attrs={"num_groups": 1}, grad=[True, True, False], id="one_group"),
    Case("groupnorm", [randn(2, 5, 4, 3, seed=7), randn(5, seed=8), randn(5, seed=9)],
         lambda x, w, b, num_groups, eps=1e-5: F.group_norm(x, num_groups, w, b, eps),
         attrs={"num_groups": 5, "eps": 1e-2}, id="group_per_channel"),
    Case("groupnorm", [randn(4, 6, seed=10), randn(6, seed=11), randn(6, seed=12)],
         lambda x, w, b, num_groups: F.group_norm(x, num_groups, w, b),
         attrs={"num_groups": 2}, id="2d"),
]
