"""trugrade.ops: every op of the C engine, callable on numpy arrays.

Each op of the C table appears here under its own name, built from the table
(adding an op in C adds it here). Forward:

    y = trugrade.ops.conv2d(x, w, b, stride=2, padding=1)

Backward (the vector-Jacobian product: the gradients of every input for a given
gradient of the output, None for inputs that get none):

    gx, gw, gb = trugrade.ops.conv2d.backward(x, w, b, grad_output=gy, stride=2, padding=1)

Inputs are numpy arrays (float64 is taken as float32); results are numpy arrays
viewing C memory. `training=True` selects training behaviour (batchnorm, dropout)
and `seed=` the randomness of dropout.
"""
import builtins

import numpy as np

from . import _C
from .tensor import Tensor


def _as_input(value):
    if value is None or isinstance(value, _C.Tensor):
        return value
    # NOTE: np.asarray(order="C"), not np.ascontiguousarray, which turns a 0-d array
    # (the gradient of a scalar loss) into shape (1,).
    array = np.asarray(value, order="C")
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8)
    return array


def _to_numpy(tensor):
    return None if tensor is None else Tensor.numpy(tensor)


class Op:
    """One op of the engine: call it for the forward, `.backward` for the input gradients."""

    def __init__(self, description):
        self.name = description["name"]
        self.inputs = description["inputs"]
        self.attrs = {name: (kind, default, required) for name, kind, default, required in description["attrs"]}
        self.variadic = bool(description["variadic"])
        self.differentiable = description["differentiable"]
        self.__name__ = self.name
        self.__doc__ = self._doc()

    def _doc(self):
        names = ", ".join(n.lstrip("?") + ("=None" if n.startswith("?") else "") for n in self.inputs)
        if self.variadic:
            names = f"*{self.inputs[0]}"
        attrs = ", ".join(f"{n}" + ("" if req else f"={_default(kind, d)}") for n, (kind, d, req) in self.attrs.items())
        return f"{self.name}({names}{', ' if attrs else ''}{attrs}, training=False, seed=0)"

    def __repr__(self):
        return f"<trugrade op {self._doc()}>"

    def _inputs(self, args):
        if self.variadic and len(args) == 1 and isinstance(args[0], (list, tuple)):
            args = args[0]
        return [_as_input(a) for a in args]

    def __call__(self, *args, training=False, seed=0, **attrs):
        out = _C.op_forward(self.name, self._inputs(args), attrs, training=training, seed=seed)
        return _to_numpy(out)

    def backward(self, *args, grad_output, training=False, seed=0, **attrs):
        grads = _C.op_backward(self.name, self._inputs(args), _as_input(grad_output), attrs,
                               training=training, seed=seed)
        return tuple(_to_numpy(g) for g in grads)


def _default(kind, value):
    if kind == "float":
        return value
    if kind == "bool":
        return bool(value)
    if kind in ("int_list",):
        return "()"
    return int(value)


OPS = {d["name"]: Op(d) for d in _C.op_table()}
globals().update(OPS)


def names():
    """Names of every op in the engine's table."""
    return sorted(OPS)


def split(x, split_size_or_sections, dim=0):
    """torch.split on the slice op: pieces of `split_size_or_sections` along dim (the
    last one shorter when it does not divide), or pieces of the listed sizes (which
    must add up to the dim). Returns a tuple of arrays."""
    x = _as_input(x)
    shape = x.shape
    if not shape:
        raise ValueError("split: x is a scalar; split needs at least 1 dim")
    if not -len(shape) <= dim < len(shape):
        raise ValueError(f"split: dim {dim} is out of range for shape {tuple(shape)}; "
                         f"use {-len(shape)} to {len(shape) - 1}")
    length = shape[dim]
    if isinstance(split_size_or_sections, (int, np.integer)):
        size = int(split_size_or_sections)
        if size <= 0 and length > 0:
            raise ValueError(f"split: split_size must be > 0, got {size}")
        sizes = [min(size, length - start) for start in range(0, length, size)] if length else [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        # NOTE: builtins.sum, since this module's `sum` is the op
        if builtins.sum(sizes) != length or any(s < 0 for s in sizes):
            raise ValueError(f"split: sections {sizes} do not add up to dim {dim} of size {length}; "
                             f"give sizes >= 0 that sum to {length}")
    pieces, start = [], 0
    for size in sizes:
        pieces.append(OPS["slice"](x, dim=dim, start=start, end=start + size))
        start += size
    return tuple(pieces)


__all__ = ["Op", "OPS", "names", "split"] + sorted(OPS)
