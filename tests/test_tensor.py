"""trugrade.Tensor and numpy: zero-copy in both directions, lifetimes that cannot dangle,
dtypes, and errors mapped to exceptions that are also builtins."""
import gc
import sys

import numpy as np
import pytest

import trugrade


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.uint16, np.int32, np.int64])
def test_numpy_to_tensor_shares_memory(dtype):
    array = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    tensor = trugrade.Tensor(array)
    assert tensor.shape == (2, 3, 4)
    assert tensor.dtype == np.dtype(dtype).name
    view = tensor.numpy()
    assert np.shares_memory(view, array)
    array[0, 0, 0] = 7
    assert view[0, 0, 0] == 7


def test_tensor_keeps_numpy_memory_alive():
    array = np.arange(1000, dtype=np.float32)
    tensor = trugrade.Tensor(array)
    before = sys.getrefcount(array)
    del array
    gc.collect()
    np.testing.assert_array_equal(tensor.numpy(), np.arange(1000, dtype=np.float32))
    assert before >= 2


def test_numpy_view_keeps_c_memory_alive():
    out = trugrade.ops.relu(np.arange(-5, 5, dtype=np.float32))
    base = out.base
    while getattr(base, "base", None) is not None and not isinstance(base, trugrade.Tensor):
        base = base.base
    del base
    gc.collect()
    junk = [trugrade.ops.relu(np.full(10, 9.0, np.float32)) for _ in range(50)]
    np.testing.assert_array_equal(out, [0, 0, 0, 0, 0, 0, 1, 2, 3, 4])
    assert len(junk) == 50


def test_up_to_five_dims_and_no_more():
    trugrade.Tensor(np.zeros((1, 2, 1, 2, 1), np.float32))
    with pytest.raises(trugrade.ShapeError, match="at most 5"):
        trugrade.Tensor(np.zeros((1,) * 6, np.float32))


def test_unsupported_dtype_is_a_type_error():
    with pytest.raises(trugrade.DTypeError) as info:
        trugrade.Tensor(np.zeros(3, np.complex64))
    assert isinstance(info.value, TypeError)


def test_non_contiguous_input_is_copied_not_misread():
    array = np.arange(12, dtype=np.float32).reshape(3, 4).T
    np.testing.assert_array_equal(trugrade.Tensor(array).numpy(), array)
    np.testing.assert_array_equal(trugrade.ops.relu(array), array)


def test_every_error_is_a_trugrade_error_and_a_builtin():
    pairs = {
        trugrade.ShapeError: ValueError, trugrade.DTypeError: TypeError, trugrade.ConfigError: ValueError,
        trugrade.DatasetError: ValueError, trugrade.DecodeError: ValueError, trugrade.TrugradeIOError: OSError,
        trugrade.OutOfMemoryError: MemoryError, trugrade.UnsupportedError: NotImplementedError,
        trugrade.TrugradeValueError: ValueError,
    }
    for cls, builtin in pairs.items():
        assert issubclass(cls, trugrade.TrugradeError) and issubclass(cls, builtin), cls
    assert issubclass(trugrade.DecodeError, trugrade.DatasetError)


def test_op_errors_name_the_problem():
    with pytest.raises(trugrade.ShapeError, match=r"\(2, 3\) and \(4,\)"):
        trugrade.ops.add(np.zeros((2, 3), np.float32), np.zeros(4, np.float32))
    with pytest.raises(trugrade.DTypeError, match="float32"):
        trugrade.ops.relu(np.zeros(3, np.int32))
    with pytest.raises(TypeError, match="unexpected keyword"):
        trugrade.ops.relu(np.zeros(3, np.float32), nonsense=1)
    with pytest.raises(trugrade.TrugradeValueError):
        trugrade.set_num_threads(0)


def test_op_table_is_exposed_with_signatures():
    names = trugrade.ops.names()
    assert "relu" in names and "add" in names
    assert "relu(x" in trugrade.ops.relu.__doc__
