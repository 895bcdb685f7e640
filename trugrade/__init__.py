"""trugrade: train, measure and ship image models, with the engine in C (trugrade._C)."""
from .errors import (ConfigError, DatasetError, DecodeError, DTypeError, OutOfMemoryError, ShapeError,
                     TrugradeError, TrugradeIOError, TrugradeValueError, UnsupportedError)
from . import _C
from . import config
from . import ops
from . import data
from . import datasets
from ._C import Graph
from .data import probe_image, read_idx, read_image
from .tensor import Tensor, get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DatasetError", "DecodeError", "DTypeError", "OutOfMemoryError", "ShapeError",
    "TrugradeError", "TrugradeIOError", "TrugradeValueError", "UnsupportedError",
    "Graph", "Tensor", "data", "datasets", "ops", "get_num_threads", "set_num_threads", "probe_image", "read_idx",
    "read_image",
]
