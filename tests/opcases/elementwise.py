"""Cases for csrc/ops/elementwise.c."""
import torch

from opcheck import Case, randn

CASES = [
    Case("relu", [randn(2, 3, 5, 7, seed=1)], lambda x: torch.relu(x)),
    Case("relu", [randn(1, seed=2)], lambda x: torch.relu(x), id="single"),
    Case("add", [randn(4, 5, seed=1), randn(4, 5, seed=2)], lambda a, b: a + b, id="same"),
    Case("add", [randn(2, 3, 4, 5, seed=1), randn(3, 1, 5, seed=2)], lambda a, b: a + b, id="broadcast"),
    Case("add", [randn(1, seed=1), randn(2, 7, seed=2)], lambda a, b: a + b, id="scalar_like"),
]
