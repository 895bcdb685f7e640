"""Cases for csrc/ops/linalg.c: linear and matmul, awkward sizes (1, 7, 33, 65, 129), batch 1,
bias absent, batch broadcasting."""
import torch
import torch.nn.functional as F

from opcheck import Case, randn


def _linear(x, w, b=None):
    return F.linear(x, w, b)


CASES = [
    Case("linear", [randn(4, 7, seed=1), randn(5, 7, seed=2), randn(5, seed=3)], _linear, id="small"),
    Case("linear", [randn(1, 33, seed=1), randn(65, 33, seed=2), randn(65, seed=3)], _linear, id="batch1"),
    Case("linear", [randn(3, 129, seed=1), randn(7, 129, seed=2)], _linear, id="no_bias"),
    Case("linear", [randn(2, 5, 65, seed=1), randn(33, 65, seed=2), randn(33, seed=3)], _linear, id="3d",
         rtol=2e-4, atol=5e-5),
    Case("linear", [randn(129, 1, seed=1), randn(1, 1, seed=2), randn(1, seed=3)], _linear, id="ones"),
    Case("linear", [randn(70, 300, seed=1), randn(129, 300, seed=2), randn(129, seed=3)], _linear, id="large",
         rtol=2e-4, atol=1e-4),
    Case("matmul", [randn(7, 33, seed=1), randn(33, 65, seed=2)], torch.matmul, id="2d"),
    Case("matmul", [randn(1, 1, seed=1), randn(1, 129, seed=2)], torch.matmul, id="ones"),
    Case("matmul", [randn(3, 7, 33, seed=1), randn(3, 33, 5, seed=2)], torch.matmul, id="3d"),
    Case("matmul", [randn(1, 65, 7, seed=1), randn(7, 33, seed=2)], torch.matmul, id="batch1_bcast_2d"),
    Case("matmul", [randn(2, 3, 5, 7, seed=1), randn(3, 7, 4, seed=2)], torch.matmul, id="4d_bcast"),
    Case("matmul", [randn(2, 1, 5, 7, seed=1), randn(1, 3, 7, 6, seed=2)], torch.matmul, id="4d_both_bcast"),
    Case("matmul", [randn(4, 129, 65, seed=1), randn(65, 33, seed=2)], torch.matmul, id="3d_shared_b",
         rtol=2e-4, atol=5e-5),
    Case("matmul", [randn(2, 130, 100, seed=1), randn(2, 100, 97, seed=2)], torch.matmul, id="large",
         rtol=2e-4, atol=1e-4),
]
