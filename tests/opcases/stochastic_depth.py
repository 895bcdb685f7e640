"""Cases for csrc/ops/stochastic_depth.c (EfficientNet's per-sample residual drop).

The per-sample draw is trugrade's own (not PyTorch's RNG): eval and p = 0 are checked
against the identity, p = 1 against zeros, training by finite differences with a fixed
seed; tests/test_stochastic_depth.py checks the draw's properties."""
from opcheck import Case, rand

_x4 = rand(5, 3, 4, 7, seed=50)
_x2 = rand(1, 9, seed=51)

CASES = [
    Case("stochastic_depth", [_x4], lambda x, p: x, attrs={"p": 0.3}, id="eval"),
    Case("stochastic_depth", [_x4], lambda x, p: x, attrs={"p": 0.0}, training=True, id="p0"),
    Case("stochastic_depth", [_x4], lambda x, p: x * 0, attrs={"p": 1.0}, training=True, id="p1"),
    Case("stochastic_depth", [_x4], None, attrs={"p": 0.4}, training=True, seed=9, id="train_fd"),
    Case("stochastic_depth", [_x2], None, attrs={"p": 0.5}, training=True, seed=3, id="batch1_fd"),
]
