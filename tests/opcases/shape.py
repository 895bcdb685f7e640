"""Cases for csrc/ops/shape.c: reshape, flatten, permute, transpose, concat, slice, pad, cast."""
import numpy as np
import torch
import torch.nn.functional as F

from opcheck import Case, randint, randn


def _shape_id(shape):
    return "x".join(map(str, shape)) or "scalar"


def _reshape_cases():
    cases = []
    for k, (shape, new) in enumerate([((2, 3, 4), [6, 4]), ((2, 3, 4), [-1]), ((2, 3, 4), [4, -1, 2]),
                                      ((1, 7, 1), [7]), ((2, 3, 1, 4, 5), [5, 4, 3, 2, 1]), ((1,), []),
                                      ((64, 65), [-1, 13])]):
        cases.append(Case("reshape", [randn(*shape, seed=k)], lambda x, shape: x.reshape(shape), attrs={"shape": new},
                          id=f"{_shape_id(shape)}_to_{new}"))
    cases.append(Case("reshape", [randint(10, 3, 4, seed=1)], lambda x, shape: x.reshape(shape),
                      attrs={"shape": [2, 6]}, id="int64"))
    for k, (shape, start, end) in enumerate([((2, 3, 4, 5), 1, -1), ((2, 3, 4, 5), 0, -1), ((2, 3, 4, 5), 1, 2),
                                             ((2, 3, 4, 5), -3, -2), ((2, 1, 3, 1, 5), 2, 4), ((7,), 0, 0)]):
        cases.append(Case("flatten", [randn(*shape, seed=k)],
                          lambda x, start_dim, end_dim: torch.flatten(x, start_dim, end_dim),
                          attrs={"start_dim": start, "end_dim": end}, id=f"{_shape_id(shape)}_{start}_{end}"))
    cases.append(Case("flatten", [randn(2, 3, 4, seed=9)], lambda x: torch.flatten(x, 1), id="default"))
    return cases


def _permute_cases():
    cases = []
    perms = [((2, 3, 4, 5), [0, 2, 3, 1]), ((2, 4, 5, 3), [0, 3, 1, 2]), ((37, 53), [1, 0]),
             ((2, 3, 1, 4, 5), [4, 2, 0, 3, 1]), ((2, 3, 4), [0, 1, 2]), ((3, 1, 5), [-1, 0, 1]),
             ((1, 70, 1, 33), [3, 2, 1, 0]), ((3, 64, 7, 9), [0, 2, 3, 1]), ((2, 3, 4, 5, 6), [0, 3, 4, 1, 2])]
    for k, (shape, dims) in enumerate(perms):
        cases.append(Case("permute", [randn(*shape, seed=k)], lambda x, dims: x.permute(dims), attrs={"dims": dims},
                          id=f"{_shape_id(shape)}_{dims}"))
    cases.append(Case("permute", [randint(100, 3, 5, 7, seed=2, dtype=np.uint8)], lambda x, dims: x.permute(dims),
                      attrs={"dims": [2, 0, 1]}, id="uint8"))
    cases.append(Case("permute", [randint(100, 3, 5, 7, seed=2)], lambda x, dims: x.permute(dims),
                      attrs={"dims": [1, 2, 0]}, id="int64"))
    for k, (shape, d0, d1) in enumerate([((4, 5), 0, 1), ((2, 3, 4, 5), -1, -2), ((2, 3, 4, 5), 1, 3),
                                         ((3, 4), 1, 1), ((2, 1, 3, 1, 5), 0, 4), ((40, 50, 3), 0, 1)]):
        cases.append(Case("transpose", [randn(*shape, seed=k)], lambda x, dim0, dim1: x.transpose(dim0, dim1),
                          attrs={"dim0": d0, "dim1": d1}, id=f"{_shape_id(shape)}_{d0}_{d1}"))
    return cases


def _concat_cases():
    def cat(*xs, dim):
        return torch.cat(xs, dim)
    cases = []
    for k, (shapes, dim) in enumerate([([(2, 3), (2, 5)], 1), ([(2, 3), (4, 3)], 0), ([(2, 3, 4), (2, 1, 4), (2, 7, 4)], 1),
                                      ([(2, 3, 4), (2, 3, 1), (2, 3, 2)], -1), ([(1, 5)], 0),
                                      ([(2, 3, 1, 4, 5), (2, 3, 2, 4, 5)], 2), ([(2, 0, 3), (2, 2, 3)], 1),
                                      ([(4, 64, 9, 9), (4, 32, 9, 9)], 1)]):
        xs = [randn(*s, seed=10 * k + i) for i, s in enumerate(shapes)]
        cases.append(Case("concat", xs, cat, attrs={"dim": dim}, id=f"{len(xs)}in_dim{dim}_{_shape_id(shapes[0])}"))
    cases.append(Case("concat", [randint(5, 2, 3, seed=1), randint(5, 2, 2, seed=2)], cat, attrs={"dim": 1},
                      id="int64"))
    return cases


def _slice_cases():
    def sliced(x, dim, start=0, end=None, step=1):
        index = [slice(None)] * x.dim()
        index[dim] = slice(start, end, step)
        return x[tuple(index)]
    cases = []
    for k, (shape, attrs) in enumerate([
        ((5, 7), dict(dim=1, start=1, end=4)),
        ((5, 7), dict(dim=0, start=-3)),
        ((5, 7), dict(dim=-1, start=0, end=-2, step=2)),
        ((2, 9, 4), dict(dim=1, start=1, end=100, step=3)),
        ((2, 9, 4), dict(dim=1, start=-100, end=-4)),
        ((2, 9, 4), dict(dim=1, start=6, end=2)),
        ((2, 3, 1, 4, 5), dict(dim=3, start=1, end=3)),
        ((2, 3, 1, 4, 5), dict(dim=-1, step=2)),
        ((3, 64, 20, 20), dict(dim=1, start=16, end=48)),
        ((1,), dict(dim=0, start=0, end=1)),
    ]):
        cases.append(Case("slice", [randn(*shape, seed=k)], sliced, attrs=attrs, id=f"{_shape_id(shape)}_{k}"))
    return cases


def _pad_cases():
    modes = {0: "constant", 1: "reflect", 2: "replicate", 3: "circular"}
    cases = []
    for k, (shape, pad, mode, value) in enumerate([
        ((2, 3, 4, 5), [1, 2], 0, 0.0),
        ((2, 3, 4, 5), [1, 1, 2, 0], 0, 1.5),
        ((2, 3, 4, 5), [0, 0, 1, 1, 2, 3], 0, -1.0),
        ((2, 3, 4, 5), [-1, 2, 1, -2], 0, 0.5),
        ((2, 3, 1, 4, 5), [1, 1, 0, 2, 1, 0], 0, 0.0),
        ((7,), [3, 0], 0, 2.0),
        ((2, 3, 4, 5), [1, 2, 3, 1], 1, 0.0),
        ((2, 3, 7), [3, 2], 1, 0.0),
        ((2, 3, 4, 5, 6), [1, 2, 0, 3, 2, 1], 1, 0.0),
        ((2, 3, 4, 5), [2, 3, 1, 4], 2, 0.0),
        ((1, 2, 3, 4, 5), [1, 1, 2, 2, 3, 3], 2, 0.0),
        ((2, 3, 4, 5), [1, 2, 3, 1], 3, 0.0),
        ((2, 3, 6), [6, 2], 3, 0.0),
        ((2, 16, 33, 31), [1, 1, 1, 1], 1, 0.0),
    ]):
        torch_fn = (lambda x, pad=pad, mode=modes[mode], value=value:
                    F.pad(x, pad, mode=mode, value=value) if mode == "constant" else F.pad(x, pad, mode=mode))
        cases.append(Case("pad", [randn(*shape, seed=k)], torch_fn, attrs={"pad": pad, "mode": mode, "value": value},
                          torch_attrs={}, id=f"{modes[mode]}_{_shape_id(shape)}_{pad}"))
    return cases


def _cast_cases():
    x = randn(3, 5, 7, seed=1) * 100
    cases = [
        Case("cast", [x], lambda x: x.to(torch.bfloat16).float(), attrs={"dtype": 1}, torch_attrs={},
             check_backward=False, id="f32_to_bf16"),
        Case("cast", [np.array([1.0, -2.5, 1e-40, 3.4e38, np.inf, -np.inf, 1.00390625, 1.01171875], np.float32)],
             lambda x: x.to(torch.bfloat16).float(), attrs={"dtype": 1}, torch_attrs={}, check_backward=False,
             id="f32_to_bf16_rounding"),
        Case("cast", [x], lambda x: x.float(), attrs={"dtype": 0}, torch_attrs={}, id="f32_to_f32"),
    ]
    for dtype in (np.uint8, np.int32, np.int64):
        cases.append(Case("cast", [randint(200, 4, 9, seed=2, dtype=dtype)], lambda x: x.float(), attrs={"dtype": 0},
                          torch_attrs={}, id=f"{np.dtype(dtype).name}_to_f32"))
    return cases


CASES = _reshape_cases() + _permute_cases() + _concat_cases() + _slice_cases() + _pad_cases() + _cast_cases()
