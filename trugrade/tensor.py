"""trugrade.Tensor: a C tensor that exchanges memory with numpy without copying.

`Tensor(array)` shares a numpy array's memory (the tensor keeps the array alive);
`numpy.asarray(tensor)` or `tensor.numpy()` views the C memory (the view keeps the
tensor alive), so neither side can free memory the other still sees.
"""
import numpy as np

from . import _C

BFLOAT16 = "bfloat16"


class Tensor(_C.Tensor):
    """A dense C tensor (float32, bfloat16, uint8, uint16, int32 or int64, up to 5 dims)."""

    def __new__(cls, array):
        if not isinstance(array, _C.Tensor):
            array = np.ascontiguousarray(array)
            if array.dtype == np.float64:
                array = array.astype(np.float32)
        return super().__new__(cls, array)

    def numpy(self):
        """A numpy view of this tensor's memory (bfloat16 is widened to a float32 copy)."""
        view = np.asarray(self)
        if self.dtype == BFLOAT16:
            return (view.astype(np.uint32) << 16).view(np.float32)
        return view

    def __repr__(self):
        return f"trugrade.Tensor(shape={self.shape}, dtype={self.dtype})"


_C._set_result_type(Tensor)


def set_num_threads(count):
    """Sets how many threads trugrade's kernels use (OpenBLAS is set to match)."""
    _C.set_num_threads(int(count))


def get_num_threads():
    return _C.get_num_threads()
