"""Optimizers and learning-rate schedules against torch.optim over several steps."""
import math

import numpy as np
import pytest
import torch

import trugrade
from trugrade import _C


def graph_problem(seed=0):
    """loss = sum(relu(x + w) + b), with w [5, 7] (decayed) and b [7] (a bias: not decayed)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((5, 7)).astype(np.float32)
    w = rng.standard_normal((5, 7)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    g = trugrade.Graph()
    xi = g.input("x", (5, 7))
    wi = g.param("w", (5, 7))
    bi = g.param("b", (7,))
    out = g.op("add", [g.op("relu", [g.op("add", [xi, wi])]), bi])
    g.set_value(wi, w)
    g.set_value(bi, b)
    g.plan(loss=out)
    g.feed(xi, x)
    return g, (xi, wi, bi), (x, w, b)


def run_trugrade(kind, lrs, **kwargs):
    g, (xi, wi, bi), _ = graph_problem()
    opt = _C.Optimizer(g, kind, **kwargs)
    for lr in lrs:
        g.zero_grad()
        g.run(training=True, backward=True)
        opt.step(lr)
    return g.value(wi).numpy(), g.value(bi).numpy()


def run_torch(make, lrs):
    _, _, (x, w, b) = graph_problem()
    tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    opt = make([tw, tb])
    for lr in lrs:
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        (torch.relu(torch.from_numpy(x) + tw) + tb).sum().backward()
        opt.step()
    return tw.detach().numpy(), tb.detach().numpy()


LRS = [0.1, 0.05, 0.05, 0.02, 0.01, 0.01]
CASES = {
    "sgd": (dict(kind="sgd"), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd_momentum_wd": (dict(kind="sgd", momentum=0.9, weight_decay=0.01),
                        lambda p: torch.optim.SGD([{"params": p[:1], "weight_decay": 0.01},
                                                   {"params": p[1:], "weight_decay": 0.0}], lr=0.1, momentum=0.9)),
    "sgd_nesterov": (dict(kind="sgd", momentum=0.9, nesterov=True),
                     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    "sgd_dampening": (dict(kind="sgd", momentum=0.8, dampening=0.3),
                      lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.8, dampening=0.3)),
    "adam": (dict(kind="adam", weight_decay=0.05),
             lambda p: torch.optim.Adam([{"params": p[:1], "weight_decay": 0.05},
                                         {"params": p[1:], "weight_decay": 0.0}], lr=0.1)),
    "adamw": (dict(kind="adamw", weight_decay=0.1, beta1=0.8, beta2=0.99, eps=1e-6),
              lambda p: torch.optim.AdamW([{"params": p[:1], "weight_decay": 0.1},
                                           {"params": p[1:], "weight_decay": 0.0}], lr=0.1, betas=(0.8, 0.99),
                                          eps=1e-6)),
    "adamw_decay_all": (dict(kind="adamw", weight_decay=0.1, decay_norm_and_bias=True),
                        lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.1)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_optimizer_matches_torch(name):
    ours, make = CASES[name]
    w, b = run_trugrade(lrs=LRS, **ours)
    tw, tb = run_torch(make, LRS)
    np.testing.assert_allclose(w, tw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, tb, rtol=1e-5, atol=1e-6)


def test_per_group_learning_rate():
    g, (xi, wi, bi), (x, w, b) = graph_problem()
    opt = _C.Optimizer(g, "sgd")
    assert opt.set_lr_scale("b*", 0.0) == 1
    g.run(training=True, backward=True)
    opt.step(0.1)
    np.testing.assert_array_equal(g.value(bi).numpy(), b)
    assert not np.array_equal(g.value(wi).numpy(), w)


def test_clip_grad_norm_matches_torch():
    g, (xi, wi, bi), (x, w, b) = graph_problem()
    opt = _C.Optimizer(g, "sgd")
    g.run(training=True, backward=True)
    norm = opt.clip_grad_norm(1.0)
    tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    (torch.relu(torch.from_numpy(x) + tw) + tb).sum().backward()
    tnorm = torch.nn.utils.clip_grad_norm_([tw, tb], 1.0)
    assert math.isclose(norm, float(tnorm), rel_tol=1e-6)
    np.testing.assert_allclose(g.grad(wi).numpy(), tw.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(g.grad(bi).numpy(), tb.grad.numpy(), rtol=1e-6)


def test_bad_optimizer_settings_are_refused():
    g, _, _ = graph_problem()
    with pytest.raises(trugrade.TrugradeValueError, match="nesterov"):
        _C.Optimizer(g, "sgd", nesterov=True)
    with pytest.raises(ValueError, match="unknown optimizer"):
        _C.Optimizer(g, "lion")
    with pytest.raises(trugrade.TrugradeValueError, match="betas"):
        _C.Optimizer(g, "adam", beta1=1.0)


def torch_lrs(make, steps, lr=0.1, per_epoch=1, metrics=None):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    sched = make(opt)
    out = []
    for step in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if (step + 1) % per_epoch == 0:
            if metrics is not None:
                sched.step(metrics[(step + 1) // per_epoch - 1])
            else:
                sched.step()
    return out


SCHEDULES = {
    "step": (dict(kind="step", step_size=3, gamma=0.5, steps_per_epoch=4),
             lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5), 4),
    "multistep": (dict(kind="multistep", milestones=[2, 5], gamma=0.1, steps_per_epoch=3),
                  lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 5], 0.1), 3),
    "cosine": (dict(kind="cosine", total_steps=40, min_lr=0.001),
               lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 40, eta_min=0.001), 1),
    "onecycle": (dict(kind="onecycle", total_steps=40),
                 lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=40), 1),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_matches_torch(name):
    ours, make, per_epoch = SCHEDULES[name]
    schedule = _C.Schedule(lr=0.1, **ours)
    expected = torch_lrs(make, 40, per_epoch=per_epoch)
    np.testing.assert_allclose([schedule.lr(s) for s in range(40)], expected, rtol=1e-6)


def test_plateau_matches_torch():
    metrics = [1.0, 0.9, 0.9, 0.91, 0.9, 0.95, 0.8, 0.8, 0.8, 0.8]
    schedule = _C.Schedule("plateau", 0.1, patience=2, factor=0.5)
    ours = []
    for m in metrics:
        ours.append(schedule.lr(0))
        schedule.observe(m)
    expected = torch_lrs(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=2, factor=0.5), 10,
                         metrics=metrics)
    np.testing.assert_allclose(ours, expected, rtol=1e-9)


def test_warmup_cosine_shape():
    s = _C.Schedule("warmup_cosine", 1.0, warmup_steps=10, total_steps=110, min_lr=0.0)
    lrs = [s.lr(i) for i in range(110)]
    np.testing.assert_allclose(lrs[:10], np.arange(1, 11) / 10)
    assert lrs[10] == 1.0 and lrs[60] == pytest.approx(0.5) and lrs[109] < 0.001
    with pytest.raises(trugrade.ConfigError, match="warmup"):
        _C.Schedule("warmup_cosine", 1.0, warmup_steps=200, total_steps=100)
