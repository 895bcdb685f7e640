"""Cases for csrc/ops/seg_loss.c: softmax_focal_loss (no torch.nn.functional counterpart; the
reference below, written in torch, is the specification) and scale."""
import numpy as np
import torch
import torch.nn.functional as F

from opcheck import Case, randint, randn

NO_TARGET_GRAD = [True, False, False]


def softmax_focal_reference(logits, target, weight=None, gamma=2.0, ignore_index=-100, reduction=1, alpha=-1.0):
    """-a_y w_y (1 - p_y)^gamma log p_y per pixel (p = softmax over dim 1; a_y = alpha for
    y != 0, 1 - alpha for y = 0, 1 when alpha < 0); mean over the pixels whose target is not
    ignore_index, 0 at ignored pixels for reduction none."""
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    log_p = torch.log_softmax(logits, dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
    p = log_p.exp()
    loss = -((1 - p) ** gamma) * log_p
    if weight is not None:
        loss = loss * weight[safe]
    if alpha >= 0:
        loss = loss * torch.where(safe == 0, 1.0 - alpha, alpha).to(loss.dtype)
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if reduction == 0:
        return loss
    if reduction == 2:
        return loss.sum()
    return loss.sum() / valid.sum()


def _with_ignored(target, every, value=-100):
    t = target.copy()
    t.reshape(-1)[::every] = value
    return t


CASES = [
    Case("softmax_focal_loss", [randn(2, 3, 5, 7, seed=1) * 3, randint(3, 2, 5, 7, seed=2)], softmax_focal_reference,
         id="mean_2x3x5x7"),
    Case("softmax_focal_loss", [randn(6, 5, seed=3), randint(5, 6, seed=4)], softmax_focal_reference, id="rows"),
    Case("softmax_focal_loss", [randn(1, 2, 17, 19, seed=5) * 4, randint(2, 1, 17, 19, seed=6),
                                np.array([0.14, 1.86], np.float32)],
         softmax_focal_reference, grad=NO_TARGET_GRAD, id="batch1_binary_weight"),
    Case("softmax_focal_loss", [randn(2, 4, 9, 33, seed=7) * 2, _with_ignored(randint(4, 2, 9, 33, seed=8), 5)],
         softmax_focal_reference, attrs={"gamma": 1.5, "reduction": 2}, id="gamma1.5_sum_ignore"),
    Case("softmax_focal_loss", [randn(3, 3, 4, 4, seed=9), randint(3, 3, 4, 4, seed=10)], softmax_focal_reference,
         attrs={"gamma": 0.0, "reduction": 0}, id="gamma0_none"),
    Case("softmax_focal_loss", [randn(2, 3, 6, 5, seed=11) * 3, _with_ignored(randint(3, 2, 6, 5, seed=12), 4, 255),
                                np.array([0.5, 1.0, 2.0], np.float32)],
         softmax_focal_reference, attrs={"gamma": 1.0, "ignore_index": 255, "reduction": 0}, grad=NO_TARGET_GRAD,
         id="gamma1_none_ignore255_weight"),
    Case("softmax_focal_loss", [randn(2, 2, 40, 40, seed=13) * 5, randint(2, 2, 40, 40, seed=14)],
         softmax_focal_reference, attrs={"gamma": 2.5}, id="gamma2.5_multi_chunk"),
    Case("softmax_focal_loss", [np.array([[30.0, -30.0], [-30.0, 30.0], [0.0, 0.0]], np.float32),
                                np.array([0, 0, 1], np.int64)],
         softmax_focal_reference, id="saturated"),
    Case("softmax_focal_loss", [randn(2, 5, 3, 3, seed=17), randint(5, 2, 3, 3, seed=18)], softmax_focal_reference,
         attrs={"gamma": 0.5}, id="gamma0.5"),
    Case("softmax_focal_loss", [randn(2, 2, 9, 11, seed=19) * 3, randint(2, 2, 9, 11, seed=20)],
         softmax_focal_reference, attrs={"alpha": 0.25}, id="alpha0.25_binary"),
    Case("softmax_focal_loss", [randn(1, 4, 7, 5, seed=21) * 2, _with_ignored(randint(4, 1, 7, 5, seed=22), 3),
                                np.array([0.3, 1.0, 1.5, 2.0], np.float32)],
         softmax_focal_reference, attrs={"alpha": 0.75, "gamma": 1.5, "reduction": 0}, grad=NO_TARGET_GRAD,
         id="alpha0.75_multiclass_weight_none_ignore"),
    Case("softmax_focal_loss", [randn(2, 3, 4, 6, seed=23), randint(3, 2, 4, 6, seed=24)], softmax_focal_reference,
         attrs={"alpha": 0.0, "reduction": 2}, id="alpha0_sum"),
    Case("scale", [randn(2, 3, 5, 7, seed=15)], lambda x, factor: x * factor, attrs={"factor": 0.4}, id="0.4"),
    Case("scale", [randn(33, 1031, seed=16)], lambda x, factor: x * factor, attrs={"factor": -2.5}, id="big_negative"),
    Case("scale", [np.array(1.5, np.float32)], lambda x, factor: x * factor, attrs={"factor": 0.2}, id="scalar"),
]
