"""trugrade.Tensor: a C tensor that exchanges memory with numpy without copying.

`Tensor(array)` shares a numpy array's memory (the tensor keeps the array alive);
`numpy.asarray(tensor)` or `tensor.numpy()` views the C memory (the view keeps the
tensor alive), so neither side can free memory the other still sees.

bfloat16 (numpy has no such dtype): `Tensor(float_array, dtype="bfloat16")` rounds to
nearest even (as PyTorch does); `Tensor(uint16_array, dtype="bfloat16")` takes raw bits and
shares them; `tensor.numpy()` widens to a float32 copy, `tensor.numpy(raw=True)` is a uint16
view of the bits (the tensor stays bfloat16).

DLPack: `Tensor.__dlpack__` / `__dlpack_device__` let numpy.from_dlpack and torch.from_dlpack
view a tensor (the capsule keeps its C memory alive); `trugrade.from_dlpack(obj)` views any
CPU DLPack producer (numpy, torch, ...), keeping the producer's memory alive until the
trugrade tensor and every view of it are gone.
"""
import numpy as np

from . import _C

BFLOAT16 = "bfloat16"


def bfloat16_bits(array):
    """float32 values rounded to bfloat16 (nearest even; NaN stays a quiet NaN), as uint16 bits."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)
    return rounded


class Tensor(_C.Tensor):
    """A dense C tensor (float32, bfloat16, uint8, uint16, int32 or int64, up to 5 dims)."""

    def __new__(cls, array, dtype=None):
        if dtype is not None:
            dtype = np.dtype(dtype).name if dtype != BFLOAT16 else BFLOAT16
        if isinstance(array, _C.Tensor):
            if dtype not in (None, array.dtype):
                raise TypeError(f"Tensor: a {array.dtype} tensor cannot be taken as {dtype}; convert with numpy")
            return super().__new__(cls, array)
        array = np.ascontiguousarray(array)
        if dtype == BFLOAT16:
            if array.dtype != np.uint16:
                array = bfloat16_bits(array)
            return super().__new__(cls, array, BFLOAT16)
        if dtype is not None:
            array = np.ascontiguousarray(array, dtype=dtype)
        elif array.dtype == np.float64:
            array = array.astype(np.float32)
        return super().__new__(cls, array)

    def numpy(self, raw=False):
        """A numpy view of this tensor's memory. bfloat16: a float32 copy (widened exactly), or
        with raw=True a uint16 view of the bits, sharing the memory."""
        view = np.asarray(self)
        if self.dtype == BFLOAT16 and not raw:
            return (view.astype(np.uint32) << 16).view(np.float32)
        return view

    def __repr__(self):
        return f"trugrade.Tensor(shape={self.shape}, dtype={self.dtype})"


_C._set_result_type(Tensor)


def from_dlpack(obj):
    """A Tensor viewing the memory of any CPU DLPack producer (numpy array, torch tensor, ...),
    without copying; the producer's memory stays alive as long as the Tensor (or a view of it)
    does, even after the producer itself is deleted. Non-contiguous producers are refused."""
    if isinstance(obj, _C.Tensor):
        return obj if isinstance(obj, Tensor) else Tensor(obj)
    device = getattr(obj, "__dlpack_device__", None)
    if device is None or not hasattr(obj, "__dlpack__"):
        raise TypeError(f"from_dlpack: {type(obj).__name__} does not implement the DLPack protocol")
    device_type, _ = device()
    if int(device_type) != 1:
        raise BufferError(f"from_dlpack: the tensor is on DLPack device type {int(device_type)}, not the CPU (1); "
                          "copy it to the CPU first")
    try:
        capsule = obj.__dlpack__(max_version=(1, 0))
    except TypeError:
        capsule = obj.__dlpack__()
    return _C.tensor_from_dlpack(capsule)


def set_num_threads(count):
    """Sets how many threads trugrade's kernels use (OpenBLAS is set to match)."""
    _C.set_num_threads(int(count))


def get_num_threads():
    return _C.get_num_threads()
