"""max_pool2d's vectorised paths (dilation 1, column stride 1 or 2) against PyTorch over many
geometries, with ties, -inf and NaN in the input: the output must be equal bit for bit and the
gradient must reach the same element of every window (the same argmax, NaN and ties
included). Gradients are small integers so sums of overlapping windows are exact."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import trugrade

GEOMETRIES = [
    # (n, c, h, w, kernel, stride, padding, ceil_mode)
    (2, 3, 28, 28, 2, 2, 0, False),
    (1, 4, 14, 14, 2, 2, 0, False),
    (1, 2, 7, 7, 2, 2, 0, True),
    (2, 2, 112, 112, 3, 2, 1, False),
    (1, 3, 33, 47, 3, 2, 1, True),
    (1, 2, 9, 40, (3, 2), (1, 2), (1, 1), False),
    (2, 2, 13, 35, 3, 1, 1, False),
    (1, 1, 5, 17, (2, 5), (2, 1), (0, 2), True),
    (1, 2, 1, 1, 1, 1, 0, False),
    (3, 1, 6, 70, 4, 2, 2, True),
]


def _input(shape, seed, specials):
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal(shape) * 2).astype(np.float32)   # many ties
    if specials:
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, max(1, flat.size // 50))] = -np.inf
        flat[rng.integers(0, flat.size, max(1, flat.size // 97))] = np.nan
    return x


@pytest.mark.parametrize("specials", [False, True])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[f"g{i}" for i in range(len(GEOMETRIES))])
def test_max_pool2d_matches_torch_exactly(geometry, specials):
    n, c, h, w, kernel, stride, padding, ceil_mode = geometry
    x = _input((n, c, h, w), 7, specials)
    attrs = {"kernel_size": kernel, "stride": stride, "padding": padding, "ceil_mode": ceil_mode}
    y = np.array(trugrade.ops.max_pool2d(x, **attrs))
    tx = torch.from_numpy(x).requires_grad_()
    ty = F.max_pool2d(tx, kernel, stride, padding, 1, ceil_mode)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    gy = np.random.default_rng(3).integers(1, 9, ty.shape).astype(np.float32)
    (gx,) = trugrade.ops.max_pool2d.backward(x, grad_output=gy, **attrs)
    ty.backward(torch.from_numpy(gy))
    np.testing.assert_array_equal(np.array(gx), tx.grad.numpy())


def test_max_pool2d_threads_bit_identical():
    x = _input((4, 8, 30, 30), 11, True)
    results = []
    before = trugrade.get_num_threads()
    try:
        for threads in (1, 2):
            trugrade.set_num_threads(threads)
            y = np.array(trugrade.ops.max_pool2d(x, kernel_size=2, stride=2))
            (gx,) = trugrade.ops.max_pool2d.backward(x, grad_output=np.ones_like(y), kernel_size=2, stride=2)
            results.append((y.tobytes(), np.array(gx).tobytes()))
    finally:
        trugrade.set_num_threads(before)
    assert results[0] == results[1]
