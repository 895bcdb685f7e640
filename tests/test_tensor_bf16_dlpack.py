"""bfloat16 tensors from Python (rounding like PyTorch, float32 and raw uint16 views) and
DLPack exchange with numpy and torch in both directions, with lifetimes that cannot dangle."""
import gc
import sys

import numpy as np
import pytest
import torch

import trugrade


def _churn():
    """Frees and reuses memory, so a dangling view would read garbage."""
    gc.collect()
    junk = [np.full(4096, 123.0, np.float32) for _ in range(64)]
    junk += [trugrade.ops.relu(np.full(4096, 9.0, np.float32)) for _ in range(16)]
    return len(junk)


def _c_owned(values):
    """A Tensor whose memory the C core allocated (an op's result), holding relu(values)."""
    tensor = trugrade.ops.relu(np.asarray(values, np.float32)).base.obj
    assert isinstance(tensor, trugrade.Tensor)
    return tensor


# ---- bfloat16 ----

def test_bfloat16_rounds_like_torch():
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.standard_normal(2000).astype(np.float32) * 10.0 ** rng.integers(-30, 30, 2000),
        np.array([0.0, -0.0, 1.0, np.inf, -np.inf, 3.4e38, 1e-40, 1.00390625, 1.01171875], np.float32),
    ]).astype(np.float32)
    tensor = trugrade.Tensor(values, dtype="bfloat16")
    assert tensor.dtype == "bfloat16" and tensor.shape == values.shape
    expected = torch.from_numpy(values).bfloat16().view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(tensor.numpy(raw=True), expected)
    np.testing.assert_array_equal(tensor.numpy(), torch.from_numpy(values).bfloat16().float().numpy())


def test_bfloat16_nan_stays_nan():
    tensor = trugrade.Tensor(np.array([np.nan, 1.0], np.float32), dtype="bfloat16")
    out = tensor.numpy()
    assert np.isnan(out[0]) and out[1] == 1.0


def test_bfloat16_raw_view_shares_memory_and_keeps_dtype():
    bits = np.array([[0x3F80, 0x4000], [0xC040, 0x0000]], np.uint16)   # 1, 2, -3, 0
    tensor = trugrade.Tensor(bits, dtype="bfloat16")
    assert tensor.dtype == "bfloat16"
    raw = tensor.numpy(raw=True)
    assert raw.dtype == np.uint16 and np.shares_memory(raw, bits)
    np.testing.assert_array_equal(tensor.numpy(), [[1.0, 2.0], [-3.0, 0.0]])
    raw[1, 1] = 0x4080   # 4.0, written through the view
    assert tensor.numpy()[1, 1] == 4.0 and tensor.dtype == "bfloat16"


def test_bfloat16_float32_view_is_a_copy():
    tensor = trugrade.Tensor(np.ones(3, np.float32), dtype="bfloat16")
    widened = tensor.numpy()
    widened[0] = 5.0
    assert tensor.numpy()[0] == 1.0


def test_bfloat16_from_a_non_uint16_tensor_is_refused_in_c():
    with pytest.raises(trugrade.DTypeError, match="bfloat16 takes uint16 bits"):
        trugrade._C.Tensor(np.zeros(3, np.float32), "bfloat16")


# ---- DLPack: trugrade as the producer ----

def test_numpy_from_dlpack_shares_and_outlives_the_tensor():
    tensor = _c_owned(np.arange(-3, 5))
    array = np.from_dlpack(tensor)
    assert np.shares_memory(array, tensor.numpy())
    del tensor
    _churn()
    np.testing.assert_array_equal(array, [0, 0, 0, 0, 1, 2, 3, 4])


def test_torch_from_dlpack_shares_and_outlives_the_tensor():
    tensor = _c_owned(np.arange(-4, 4).reshape(2, 4))
    view = torch.from_dlpack(tensor)
    assert view.shape == (2, 4) and view.dtype == torch.float32
    view[0, 0] = 42.0
    assert tensor.numpy()[0, 0] == 42.0
    del tensor
    _churn()
    np.testing.assert_array_equal(view.numpy(), [[42, 0, 0, 0], [0, 1, 2, 3]])


def test_torch_from_dlpack_of_bfloat16():
    values = np.array([1.5, -2.25, 3.0e5, 7.0e-3], np.float32)
    tensor = trugrade.Tensor(values, dtype="bfloat16")
    view = torch.from_dlpack(tensor)
    assert view.dtype == torch.bfloat16
    torch.testing.assert_close(view, torch.from_numpy(values).bfloat16(), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.uint16, np.int32, np.int64])
def test_dlpack_round_trip_every_dtype(dtype):
    array = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    tensor = trugrade.Tensor(array)
    back = np.from_dlpack(tensor)
    assert back.dtype == dtype and np.shares_memory(back, array)
    again = trugrade.from_dlpack(torch.from_dlpack(tensor))
    assert again.dtype == tensor.dtype and np.shares_memory(again.numpy(), array)


def test_capsule_versions_and_single_use():
    tensor = trugrade.Tensor(np.arange(6, dtype=np.float32))
    assert tensor.__dlpack_device__() == (1, 0)
    for capsule in (tensor.__dlpack__(), tensor.__dlpack__(max_version=(1, 0))):
        imported = trugrade._C.tensor_from_dlpack(capsule)
        np.testing.assert_array_equal(imported.numpy(), np.arange(6))
        with pytest.raises(TypeError, match="imported once"):
            trugrade._C.tensor_from_dlpack(capsule)


def test_unconsumed_capsule_releases_the_tensor():
    tensor = trugrade.Tensor(np.arange(6, dtype=np.float32))
    before = sys.getrefcount(tensor)
    capsules = [tensor.__dlpack__(), tensor.__dlpack__(max_version=(1, 0))]
    assert sys.getrefcount(tensor) == before + 2
    del capsules
    gc.collect()
    assert sys.getrefcount(tensor) == before


def test_dlpack_refuses_a_stream_and_copy():
    tensor = trugrade.Tensor(np.zeros(3, np.float32))
    with pytest.raises(BufferError, match="stream"):
        tensor.__dlpack__(stream=1)
    with pytest.raises(BufferError, match="copy"):
        tensor.__dlpack__(copy=True)


# ---- DLPack: trugrade as the consumer ----

def test_from_dlpack_numpy_survives_deleting_the_producer():
    array = np.arange(1000, dtype=np.float32).reshape(10, 100)
    tensor = trugrade.from_dlpack(array)
    assert tensor.shape == (10, 100) and np.shares_memory(tensor.numpy(), array)
    del array
    _churn()
    np.testing.assert_array_equal(tensor.numpy(), np.arange(1000, dtype=np.float32).reshape(10, 100))


def test_from_dlpack_torch_survives_deleting_the_producer():
    source = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tensor = trugrade.from_dlpack(source)
    source[0, 0] = -1.0
    assert tensor.numpy()[0, 0] == -1.0
    del source
    _churn()
    view = tensor.numpy()
    del tensor
    _churn()
    np.testing.assert_array_equal(view.ravel()[1:], np.arange(1, 12, dtype=np.float32))


def test_from_dlpack_torch_bfloat16():
    source = torch.tensor([[1.0, -0.5], [3.25, 1024.0]]).bfloat16()
    tensor = trugrade.from_dlpack(source)
    assert tensor.dtype == "bfloat16"
    del source
    _churn()
    np.testing.assert_array_equal(tensor.numpy(), [[1.0, -0.5], [3.25, 1024.0]])


def test_from_dlpack_feeds_ops():
    out = trugrade.ops.relu(trugrade.from_dlpack(torch.linspace(-1, 1, 5)))
    np.testing.assert_allclose(np.asarray(out), [0, 0, 0, 0.5, 1])


def test_from_dlpack_refuses_non_contiguous_and_non_dlpack():
    with pytest.raises(BufferError, match="contiguous"):
        trugrade.from_dlpack(torch.arange(6.0).reshape(2, 3).T)
    with pytest.raises(TypeError, match="DLPack"):
        trugrade.from_dlpack([1.0, 2.0])
    with pytest.raises(BufferError, match="dtype"):
        trugrade.from_dlpack(torch.zeros(2, dtype=torch.float64))
