"""trugrade: train, measure and ship image models, with the engine in C (trugrade._C)."""
from .errors import (ConfigError, DatasetError, DecodeError, DTypeError, OutOfMemoryError, RegistryError,
                     ShapeError, TrugradeError, TrugradeIOError, TrugradeValueError, UnsupportedError)
from . import _C
from . import config
from . import models
from . import ops
from . import data
from . import datasets
from ._C import Graph
from .data import probe_image, read_idx, read_image
from .tensor import Tensor, from_dlpack, get_num_threads, set_num_threads
from . import validator
from .predict import load_model
from . import export
from .export import export_onnx
from . import quantization
from .quantization import quantize
from .train import Run, train
from .validator import validate_dataset

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DatasetError", "DecodeError", "DTypeError", "OutOfMemoryError", "RegistryError", "ShapeError",
    "TrugradeError", "TrugradeIOError", "TrugradeValueError", "UnsupportedError",
    "Graph", "Tensor", "from_dlpack", "config", "data", "datasets", "export", "export_onnx", "models", "ops", "get_num_threads",
    "quantization", "quantize",
    "set_num_threads",
    "probe_image", "read_idx", "read_image", "validate_dataset", "validator",
]
