"""The elementwise family beyond the PyTorch comparisons of tests/opcases: bit-identical
results at 1 and 2 threads (reductions, softmax, dropout, broadcast gradients), the
properties of dropout's mask, and trugrade.ops.split against torch.split."""
import numpy as np
import pytest
import torch

import trugrade
from trugrade import ops
from opcheck import randn


def _at_threads(count, fn):
    before = trugrade.get_num_threads()
    trugrade.set_num_threads(count)
    try:
        result = fn()
        return [np.array(r, copy=True) for r in (result if isinstance(result, tuple) else (result,)) if r is not None]
    finally:
        trugrade.set_num_threads(before)


DETERMINISM = [
    ("sum_all", lambda x: ops.sum(x), (300001,)),
    ("sum_rows", lambda x: ops.sum(x, dim=[1]), (7, 90001)),
    ("sum_columns", lambda x: ops.sum(x, dim=[0]), (5001, 67)),
    ("mean_nchw", lambda x: ops.mean(x, dim=[0, 2, 3], keepdim=True), (8, 16, 33, 35)),
    ("mean_backward", lambda x: ops.mean.backward(x, grad_output=np.ones((8, 1, 33, 1), np.float32), dim=[1, 3],
                                                  keepdim=True), (8, 16, 33, 35)),
    ("softmax_last", lambda x: ops.softmax(x, dim=-1), (64, 3001)),
    ("softmax_mid", lambda x: ops.log_softmax(x, dim=1), (4, 100, 37, 9)),
    ("softmax_backward", lambda x: ops.softmax.backward(x, grad_output=x, dim=1), (4, 100, 37, 9)),
    ("add_backward_channel", lambda x: ops.add.backward(x, x[0, :, :1, :1], grad_output=x), (8, 16, 33, 35)),
    ("mul_backward_row", lambda x: ops.mul.backward(x, x[0, 0, 0], grad_output=x), (8, 16, 33, 35)),
    ("div_backward_scalar", lambda x: ops.div.backward(x, np.float32(1.5), grad_output=x), (8, 16, 33, 35)),
    ("pad_reflect_backward", lambda x: ops.pad.backward(x, grad_output=np.ones((8, 16, 35, 37), np.float32),
                                                        pad=[1, 1, 1, 1], mode=1), (8, 16, 33, 35)),
    ("dropout", lambda x: ops.dropout(x, p=0.3, training=True, seed=5), (8, 16, 33, 35)),
    ("gelu", lambda x: ops.gelu(x), (8, 16, 33, 35)),
]


@pytest.mark.parametrize("name,fn,shape", DETERMINISM, ids=[d[0] for d in DETERMINISM])
def test_bit_identical_at_1_and_2_threads(name, fn, shape):
    x = randn(*shape, seed=3)
    one = _at_threads(1, lambda: fn(x))
    two = _at_threads(2, lambda: fn(x))
    for a, b in zip(one, two):
        assert a.tobytes() == b.tobytes(), f"{name}: 1 and 2 threads differ"


def test_dropout_eval_is_the_identity():
    x = randn(4, 5, 6, seed=1)
    np.testing.assert_array_equal(ops.dropout(x, p=0.5, training=False, seed=3), x)
    (g,) = ops.dropout.backward(x, grad_output=x * 2, p=0.5, training=False, seed=3)
    np.testing.assert_array_equal(g, x * 2)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_zero_fraction_and_scale(p):
    x = np.ones((200, 1000), np.float32)
    y = ops.dropout(x, p=p, training=True, seed=7)
    zeros = np.mean(y == 0)
    assert abs(zeros - p) < 0.005, f"fraction of zeros {zeros} for p={p}"
    kept = y[y != 0]
    np.testing.assert_allclose(kept, 1.0 / (1.0 - p), rtol=1e-6)


def test_dropout_mask_depends_on_seed_only():
    x = randn(3, 77, 101, seed=2)
    a = ops.dropout(x, p=0.5, training=True, seed=123)
    b = ops.dropout(x, p=0.5, training=True, seed=123)
    c = ops.dropout(x, p=0.5, training=True, seed=124)
    np.testing.assert_array_equal(a, b)
    assert np.mean((a == 0) != (c == 0)) > 0.4
    # the mask of an element does not depend on the tensor's shape either
    flat = ops.dropout(x.reshape(-1), p=0.5, training=True, seed=123)
    np.testing.assert_array_equal(flat.reshape(x.shape), a)


def test_dropout_backward_uses_the_forward_mask():
    x = randn(50, 60, seed=4) + 3.0   # no zeros in x, so y == 0 marks a dropped element
    y = ops.dropout(x, p=0.4, training=True, seed=99)
    gy = randn(50, 60, seed=5)
    (gx,) = ops.dropout.backward(x, grad_output=gy, p=0.4, training=True, seed=99)
    np.testing.assert_allclose(gx, np.where(y == 0, 0.0, gy / 0.6), rtol=1e-6)


def test_dropout_neighbouring_masks_are_uncorrelated():
    y = ops.dropout(np.ones(100000, np.float32), p=0.5, training=True, seed=1) == 0
    both = np.mean(y[1:] & y[:-1])
    assert abs(both - 0.25) < 0.01


SPLITS = [((10, 3), 3, 0), ((10, 3), [2, 3, 5], 0), ((2, 7, 4), 2, 1), ((2, 7, 4), [4, 0, 3], -2),
          ((2, 3, 1, 4, 5), 5, -1), ((6,), 6, 0), ((6,), 100, 0)]


@pytest.mark.parametrize("shape,sections,dim", SPLITS, ids=[str(i) for i in range(len(SPLITS))])
def test_split_matches_torch(shape, sections, dim):
    x = randn(*shape, seed=1)
    got = ops.split(x, sections, dim=dim)
    expected = torch.split(torch.from_numpy(x), sections, dim=dim)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e.numpy())


def test_split_rejects_bad_sections():
    with pytest.raises(ValueError, match="add up"):
        ops.split(np.zeros((5, 2), np.float32), [2, 2])
