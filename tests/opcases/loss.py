"""Cases for csrc/ops/loss.c. reduction: 0 none, 1 mean (default), 2 sum.

sigmoid_focal_loss and dice_loss have no torch.nn.functional counterpart; their
references below are written out in torch (the formula is the specification)."""
import numpy as np
import torch
import torch.nn.functional as F

from opcheck import Case, rand, randint, randn

REDUCTIONS = {0: "none", 1: "mean", 2: "sum"}
NO_TARGET_GRAD = [True, False, False]


def _pointwise(fn):
    return lambda x, t, reduction=1, **kw: fn(x, t, reduction=REDUCTIONS[reduction], **kw)


def _bce(x, t, pos_weight=None, reduction=1):
    return F.binary_cross_entropy_with_logits(x, t, pos_weight=pos_weight, reduction=REDUCTIONS[reduction])


def sigmoid_focal_reference(inputs, targets, alpha=0.25, gamma=2.0, reduction=1):
    """torchvision.ops.sigmoid_focal_loss, verbatim in torch."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return {0: loss, 1: loss.mean(), 2: loss.sum()}[reduction]


def dice_reference(logits, target, smooth=1.0, ignore_index=-100):
    """Multi-class soft dice: p = softmax(logits, 1), t = one_hot(target); per class c,
    I_c = sum(p_c t_c), P_c = sum(p_c), T_c = sum(t_c) over the batch and all pixels whose
    target != ignore_index; loss = 1 - mean_c (2 I_c + smooth) / (P_c + T_c + smooth)."""
    classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1).to(logits.dtype)
    p = torch.softmax(logits, dim=1) * valid
    onehot = F.one_hot(target.clamp(min=0) * (target != ignore_index), classes).movedim(-1, 1).to(logits.dtype) * valid
    dims = [0] + list(range(2, logits.ndim))
    inter = (p * onehot).sum(dims)
    cardinality = p.sum(dims) + onehot.sum(dims)
    return 1 - ((2 * inter + smooth) / (cardinality + smooth)).mean()


def _ce(x, t, weight=None, ignore_index=-100, reduction=1, label_smoothing=0.0):
    return F.cross_entropy(x, t, weight=weight, ignore_index=ignore_index, reduction=REDUCTIONS[reduction],
                           label_smoothing=label_smoothing)


def _with_ignored(target, every, value=-100):
    t = target.copy()
    t.reshape(-1)[::every] = value
    return t


def _ties(x, t):
    """t with a few entries equal to x (the non-differentiable points of l1 / smooth_l1)."""
    t = t.copy()
    t.reshape(-1)[::5] = x.reshape(-1)[::5]
    return t


_x35 = randn(3, 5, seed=1)
_seg_logits = randn(2, 4, 5, 7, seed=20)
_seg_target = randint(4, 2, 5, 7, seed=21)

CASES = [
    Case("mse_loss", [randn(3, 5, seed=1), randn(3, 5, seed=2)], _pointwise(F.mse_loss), grad=[True, False], id="mean"),
    Case("mse_loss", [randn(2, 3, 4, 5, seed=3), randn(2, 3, 4, 5, seed=4)], _pointwise(F.mse_loss),
         attrs={"reduction": 2}, grad=[True, False], id="sum"),
    Case("mse_loss", [randn(1, 7, seed=5), randn(1, 7, seed=6)], _pointwise(F.mse_loss),
         attrs={"reduction": 0}, grad=[True, False], id="none"),
    Case("mse_loss", [randn(3001, seed=7), randn(3001, seed=8)], _pointwise(F.mse_loss), grad=[True, False],
         id="several_blocks"),
    Case("l1_loss", [_x35, _ties(_x35, randn(3, 5, seed=2))], _pointwise(F.l1_loss), grad=[True, False], id="mean_ties"),
    Case("l1_loss", [randn(2, 3, 7, seed=3), randn(2, 3, 7, seed=4)], _pointwise(F.l1_loss),
         attrs={"reduction": 2}, grad=[True, False], id="sum"),
    Case("l1_loss", [randn(4, 3, seed=5), randn(4, 3, seed=6)], _pointwise(F.l1_loss),
         attrs={"reduction": 0}, grad=[True, False], id="none"),
    Case("smooth_l1_loss", [_x35 * 2, _ties(_x35 * 2, randn(3, 5, seed=2))], _pointwise(F.smooth_l1_loss),
         grad=[True, False], id="mean_ties"),
    Case("smooth_l1_loss", [randn(2, 3, 4, 5, seed=3), randn(2, 3, 4, 5, seed=4)], _pointwise(F.smooth_l1_loss),
         attrs={"beta": 0.5, "reduction": 2}, grad=[True, False], id="beta0.5_sum"),
    Case("smooth_l1_loss", [randn(5, 3, seed=5), randn(5, 3, seed=6)], _pointwise(F.smooth_l1_loss),
         attrs={"beta": 0.0, "reduction": 0}, grad=[True, False], id="beta0_none"),
    Case("binary_cross_entropy_with_logits", [randn(4, 6, seed=1) * 4, rand(4, 6, seed=2, low=0, high=1)], _bce,
         grad=[True, False], id="mean_soft_targets"),
    Case("binary_cross_entropy_with_logits", [randn(2, 3, 4, 4, seed=3) * 10, randint(2, 2, 3, 4, 4, seed=4).astype(np.float32),
                                               rand(3, 1, 1, seed=5, low=0.5, high=3)],
         _bce, attrs={"reduction": 2}, grad=NO_TARGET_GRAD, id="sum_pos_weight_channels_large_logits"),
    Case("binary_cross_entropy_with_logits", [randn(5, 7, seed=6), rand(5, 7, seed=7, low=0, high=1),
                                               rand(7, seed=8, low=0.5, high=3)],
         _bce, attrs={"reduction": 0}, grad=NO_TARGET_GRAD, id="none_pos_weight"),
    Case("sigmoid_focal_loss", [randn(4, 6, seed=1) * 3, randint(2, 4, 6, seed=2).astype(np.float32)],
         sigmoid_focal_reference, grad=[True, False], id="default_mean"),
    Case("sigmoid_focal_loss", [randn(2, 3, 5, 5, seed=3) * 3, randint(2, 2, 3, 5, 5, seed=4).astype(np.float32)],
         sigmoid_focal_reference, attrs={"alpha": -1.0, "gamma": 1.5, "reduction": 2}, grad=[True, False],
         id="no_alpha_sum"),
    Case("sigmoid_focal_loss", [randn(3, 4, seed=5), rand(3, 4, seed=6, low=0, high=1)],
         sigmoid_focal_reference, attrs={"alpha": 0.6, "gamma": 0.0, "reduction": 0}, grad=[True, False],
         id="gamma0_none_soft"),
    Case("cross_entropy", [randn(6, 5, seed=1), randint(5, 6, seed=2)], _ce, id="mean"),
    Case("cross_entropy", [randn(1, 9, seed=3) * 5, randint(9, 1, seed=4)], _ce, id="batch1"),
    Case("cross_entropy", [randn(7, 4, seed=5), _with_ignored(randint(4, 7, seed=6), 3), rand(4, seed=7, low=0.2, high=2)],
         _ce, grad=NO_TARGET_GRAD, id="weight_ignore"),
    Case("cross_entropy", [randn(7, 4, seed=8), _with_ignored(randint(4, 7, seed=9), 2), rand(4, seed=10, low=0.2, high=2)],
         _ce, attrs={"label_smoothing": 0.2}, grad=NO_TARGET_GRAD, id="weight_smoothing_ignore"),
    Case("cross_entropy", [randn(5, 3, seed=11), randint(3, 5, seed=12)], _ce,
         attrs={"label_smoothing": 0.1, "reduction": 2}, id="smoothing_sum"),
    Case("cross_entropy", [randn(5, 3, seed=13), _with_ignored(randint(3, 5, seed=14), 2, value=1)], _ce,
         attrs={"ignore_index": 1, "reduction": 0, "label_smoothing": 0.3}, id="ignore_in_range_none"),
    Case("cross_entropy", [_seg_logits, _with_ignored(_seg_target, 4, value=255), rand(4, seed=22, low=0.5, high=2)],
         _ce, attrs={"ignore_index": 255, "label_smoothing": 0.05}, grad=NO_TARGET_GRAD, id="seg_weight_ignore"),
    Case("cross_entropy", [randn(1, 3, 17, 19, seed=23), randint(3, 1, 17, 19, seed=24)], _ce,
         attrs={"reduction": 0}, id="seg_none_odd"),
    Case("cross_entropy", [randn(2, 5, 300, seed=25), randint(5, 2, 300, seed=26)], _ce,
         attrs={"reduction": 2}, id="1d_several_chunks_sum"),
    Case("cross_entropy", [randn(3, 4, seed=27), np.full(3, -100, dtype=np.int64)], _ce, id="all_ignored_mean_nan"),
    Case("cross_entropy", [randn(3, 4, seed=28), np.full(3, -100, dtype=np.int64)], _ce,
         attrs={"reduction": 2, "label_smoothing": 0.1}, id="all_ignored_sum"),
    Case("cross_entropy", [randn(4, 2, 3, seed=29), np.array([[0, 1, -100], [-100, -100, -100], [1, 1, 0], [-100, 0, 1]])],
         _ce, attrs={"label_smoothing": 0.1}, id="ignored_rows"),
    Case("dice_loss", [_seg_logits, _seg_target], dice_reference, id="seg"),
    Case("dice_loss", [randn(1, 3, 9, 11, seed=30) * 3, randint(3, 1, 9, 11, seed=31)], dice_reference,
         attrs={"smooth": 0.5}, id="batch1_odd"),
    Case("dice_loss", [randn(2, 5, 6, 20, seed=32), _with_ignored(randint(5, 2, 6, 20, seed=33), 3, value=255)],
         dice_reference, attrs={"ignore_index": 255}, id="ignore"),
    Case("dice_loss", [randn(6, 4, seed=34), randint(2, 6, seed=35)], dice_reference, id="2d_absent_classes"),
]
