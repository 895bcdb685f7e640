"""Cases for csrc/ops/elementwise.c (activations, softmax, dropout) and csrc/ops/arith.c."""
import numpy as np
import torch
import torch.nn.functional as F

from opcheck import Case, rand, randn

# Shapes for unary ops: odd sizes, size-1 dims, 5-D, a scalar-like 1-element tensor, and
# one large enough to split across threads and to run the vector main loop and its tail.
UNARY_SHAPES = [(2, 3, 5, 7), (1,), (1, 1, 17), (2, 1, 3, 1, 5), (33, 1031)]

ACTIVATIONS = {
    "relu": (lambda x: torch.relu(x), {}),
    "leaky_relu": (lambda x, negative_slope=0.01: F.leaky_relu(x, negative_slope), {}),
    "sigmoid": (lambda x: torch.sigmoid(x), {}),
    "tanh": (lambda x: torch.tanh(x), {}),
    "silu": (lambda x: F.silu(x), {}),
    "gelu": (lambda x, approximate=False: F.gelu(x, approximate="tanh" if approximate else "none"), {}),
    "hardswish": (lambda x: F.hardswish(x), {}),
    "hardsigmoid": (lambda x: F.hardsigmoid(x), {}),
}


def _activation_cases():
    cases = []
    for name, (fn, attrs) in ACTIVATIONS.items():
        for k, shape in enumerate(UNARY_SHAPES):
            x = randn(*shape, seed=10 + k) * 3
            cases.append(Case(name, [x], fn, attrs=dict(attrs), id=f"{'x'.join(map(str, shape))}"))
    cases += [
        Case("leaky_relu", [randn(4, 9, seed=3)], lambda x, negative_slope: F.leaky_relu(x, negative_slope),
             attrs={"negative_slope": 0.2}, id="slope0.2"),
        Case("gelu", [randn(3, 5, 7, seed=4) * 3], ACTIVATIONS["gelu"][0], attrs={"approximate": True}, id="tanh"),
        Case("gelu", [randn(40, 999, seed=5) * 4], ACTIVATIONS["gelu"][0], attrs={"approximate": True}, id="tanh_big"),
        # the kinks and the far tails
        Case("hardswish", [np.array([-4, -3, -1, 0, 1, 3, 4], np.float32)], ACTIVATIONS["hardswish"][0], id="kinks"),
        Case("hardsigmoid", [np.array([-4, -3.5, -1, 0, 1, 2.5, 4], np.float32)], ACTIVATIONS["hardsigmoid"][0],
             id="kinks"),
        Case("sigmoid", [np.linspace(-100, 100, 401, dtype=np.float32)], ACTIVATIONS["sigmoid"][0], id="tails"),
        Case("tanh", [np.linspace(-20, 20, 401, dtype=np.float32)], ACTIVATIONS["tanh"][0], id="tails"),
        Case("tanh", [np.linspace(-0.5, 0.5, 1001, dtype=np.float32)], ACTIVATIONS["tanh"][0], id="near0",
             rtol=2e-6, atol=1e-8),
        Case("silu", [np.linspace(-90, 90, 401, dtype=np.float32)], ACTIVATIONS["silu"][0], id="tails"),
        Case("gelu", [np.linspace(-10, 10, 401, dtype=np.float32)], ACTIVATIONS["gelu"][0], id="tails"),
    ]
    return cases


def _softmax_cases():
    cases = []
    for op, fn in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
        for k, (shape, dim) in enumerate([((4, 10), -1), ((2, 3, 5, 7), 1), ((2, 3, 5, 7), -1), ((3, 70, 5), 0),
                                          ((1,), 0), ((2, 1, 3), 1), ((2, 3, 4, 5, 6), 2), ((8, 1000), 1),
                                          ((2, 5, 130), 1)]):
            x = randn(*shape, seed=20 + k) * 4
            cases.append(Case(op, [x], lambda x, dim, fn=fn: fn(x, dim), attrs={"dim": dim},
                              id=f"{'x'.join(map(str, shape))}_dim{dim}"))
        cases.append(Case(op, [np.array([[1000.0, 0.0, -1000.0], [88.0, 89.0, 90.0]], np.float32)],
                          lambda x, dim, fn=fn: fn(x, dim), attrs={"dim": 1}, id="stable"))
    return cases


def _arith_cases():
    fns = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "div": lambda a, b: a / b}
    pairs = [
        ("same", (4, 5), (4, 5)),
        ("same_big", (3, 64, 33, 17), (3, 64, 33, 17)),
        ("channel", (2, 6, 5, 7), (6, 1, 1)),
        ("channel_left", (6, 1, 1), (2, 6, 5, 7)),
        ("nc11", (2, 6, 5, 7), (2, 6, 1, 1)),
        ("row", (3, 4, 9), (9,)),
        ("row_left", (9,), (3, 4, 9)),
        ("scalar", (2, 3, 5), (1,)),
        ("scalar_left", (1,), (2, 3, 5)),
        ("zero_dim", (3, 4), ()),
        ("both_ways", (3, 1, 5), (1, 4, 1)),
        ("5d", (2, 1, 3, 1, 5), (4, 3, 1, 5)),
        ("broadcast", (2, 3, 4, 5), (3, 1, 5)),
        ("col", (7, 1), (7, 11)),
        ("big_channel", (2, 32, 40, 41), (32, 1, 1)),
    ]
    cases = []
    for op, fn in fns.items():
        for k, (name, sa, sb) in enumerate(pairs):
            a = randn(*sa, seed=30 + k)
            b = randn(*sb, seed=60 + k)
            if op == "div":
                b = (np.sign(b) * (np.abs(b) + 0.5)).astype(np.float32)
            cases.append(Case(op, [a, b], fn, id=name))
    return cases


def _dropout_cases():
    # The mask is trugrade's own (not PyTorch's RNG): eval is checked against the identity,
    # training by finite differences with a fixed seed (the mask depends on the seed only).
    x = rand(3, 5, 7, seed=40)
    return [
        Case("dropout", [x], lambda x, p: x, attrs={"p": 0.3}, id="eval"),
        Case("dropout", [x], None, attrs={"p": 0.3}, training=True, seed=11, id="train_fd"),
        Case("dropout", [x], lambda x, p: x, attrs={"p": 0.0}, training=True, id="p0"),
        Case("dropout", [x], lambda x, p: x * 0, attrs={"p": 1.0}, training=True, id="p1"),
    ]


CASES = _activation_cases() + _softmax_cases() + _arith_cases() + _dropout_cases()

# NaN and infinities pass through activations as they do in PyTorch (a NaN must never vanish).
_SPECIAL = np.array([np.nan, -np.inf, np.inf, -1.0, 0.0, 2.0], dtype=np.float32)
CASES += [Case(name, [_SPECIAL], fn, id="nan_inf", check_backward=False)
          for name, fn in [("relu", torch.relu), ("leaky_relu", torch.nn.functional.leaky_relu),
                           ("sigmoid", torch.sigmoid), ("tanh", torch.tanh), ("hardswish", torch.nn.functional.hardswish),
                           ("silu", torch.nn.functional.silu)]]
