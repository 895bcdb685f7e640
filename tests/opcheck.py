"""The op test harness: a Case checks one op's forward and backward against PyTorch,
or, where PyTorch has no matching op, its backward against finite differences.

Cases live in tests/opcases/<family>.py as a list CASES; tests/test_ops.py runs them
all and fails when an op of the engine's table has no case.
"""
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np


@dataclass
class Case:
    op: str                                  # name in the engine's table
    inputs: Sequence                         # numpy arrays (or None for an absent optional input)
    torch_fn: Optional[Callable] = None      # f(*torch_tensors, **attrs) -> tensor; None: finite differences
    attrs: dict = field(default_factory=dict)
    id: str = ""
    grad: Optional[Sequence[bool]] = None    # which inputs get gradients (default: float inputs)
    training: bool = False
    seed: int = 0
    rtol: float = 1e-4
    atol: float = 1e-5
    check_backward: bool = True
    torch_attrs: Optional[dict] = None       # attrs for torch_fn when they differ from the engine's

    def name(self):
        return f"{self.op}-{self.id}" if self.id else self.op


def rand(*shape, seed=0, low=-1.0, high=1.0):
    """Reproducible float32 uniform in [low, high)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, size=shape).astype(np.float32)


def randn(*shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(size=shape).astype(np.float32)


def randint(high, *shape, seed=0, dtype=np.int64):
    rng = np.random.default_rng(seed)
    return rng.integers(0, high, size=shape).astype(dtype)


def _wants(case):
    if case.grad is not None:
        return list(case.grad)
    return [x is not None and np.asarray(x).dtype == np.float32 for x in case.inputs]


def run_case(case):
    import torch
    import trugrade

    op = trugrade.ops.OPS[case.op]
    out = op(*case.inputs, training=case.training, seed=case.seed, **case.attrs)
    wants = _wants(case)
    rng = np.random.default_rng(12345)
    grad_out = rng.standard_normal(size=out.shape).astype(np.float32) if out.dtype == np.float32 else None

    if case.torch_fn is not None:
        tensors = []
        for x, want in zip(case.inputs, wants):
            if x is None:
                tensors.append(None)
                continue
            t = torch.from_numpy(np.array(x))
            if want:
                t.requires_grad_(True)
            tensors.append(t)
        expected = case.torch_fn(*tensors, **(case.torch_attrs if case.torch_attrs is not None else case.attrs))
        np.testing.assert_allclose(out, expected.detach().numpy(), rtol=case.rtol, atol=case.atol,
                                   err_msg=f"{case.name()}: forward differs from PyTorch")
        if case.check_backward and grad_out is not None and any(wants):
            grads = op.backward(*case.inputs, grad_output=grad_out, training=case.training, seed=case.seed,
                                **case.attrs)
            expected.backward(torch.from_numpy(grad_out))
            for i, (t, want) in enumerate(zip(tensors, wants)):
                if not want:
                    continue
                assert grads[i] is not None, f"{case.name()}: no gradient for input {i}"
                ref = t.grad if t.grad is not None else torch.zeros_like(t)
                np.testing.assert_allclose(grads[i], ref.numpy(), rtol=case.rtol, atol=case.atol,
                                           err_msg=f"{case.name()}: gradient of input {i} differs from PyTorch")
    elif case.check_backward:
        check_finite_differences(case, op, out, grad_out, wants)


def check_finite_differences(case, op, out, grad_out, wants, eps=1e-2, samples=24):
    """Compares <grad_out, d out / d x_i> at sampled coordinates with central differences (float32,
    so the tolerance is loose: 2e-2 relative)."""
    grads = op.backward(*case.inputs, grad_output=grad_out, training=case.training, seed=case.seed, **case.attrs)
    rng = np.random.default_rng(7)
    for i, want in enumerate(wants):
        if not want:
            continue
        x = np.array(case.inputs[i], dtype=np.float32)
        flat = x.reshape(-1)
        for j in rng.choice(flat.size, size=min(samples, flat.size), replace=False):
            inputs = list(case.inputs)
            plus = flat.copy(); plus[j] += eps
            minus = flat.copy(); minus[j] -= eps
            inputs[i] = plus.reshape(x.shape)
            f_plus = float(np.sum(op(*inputs, training=case.training, seed=case.seed, **case.attrs).astype(np.float64) * grad_out))
            inputs[i] = minus.reshape(x.shape)
            f_minus = float(np.sum(op(*inputs, training=case.training, seed=case.seed, **case.attrs).astype(np.float64) * grad_out))
            numeric = (f_plus - f_minus) / (2 * eps)
            analytic = float(grads[i].reshape(-1)[j])
            assert abs(numeric - analytic) <= 2e-2 * max(1.0, abs(numeric)), (
                f"{case.name()}: input {i}[{j}] gradient {analytic} vs finite difference {numeric}")
