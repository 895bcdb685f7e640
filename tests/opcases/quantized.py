"""Cases for csrc/ops/quantized.c: quantized_conv2d and quantized_linear against PyTorch
computing the same arithmetic in float64 (x quantized as ONNX QuantizeLinear does, integer
products, per-channel dequantisation): stride 2 with padding, groups, dilation, batch 1,
odd channel counts (not multiples of 4 or 32), absent bias, the fused relu. Inference-only ops: no backward."""
import numpy as np
import torch
import torch.nn.functional as F

from opcheck import Case, randn


def _int8(*shape, seed=0):
    return np.random.default_rng(seed).integers(-127, 128, size=shape).astype(np.int8)


def _scales(n, seed=0):
    return np.random.default_rng(seed).uniform(1e-3, 1e-2, size=n).astype(np.float32)


def _quantized_input(x, input_scale, input_zero_point):
    x = x.detach()
    q = torch.clamp(torch.round(x / torch.tensor(input_scale, dtype=torch.float32)) + input_zero_point, 0, 255)
    return (q - input_zero_point).double()


def _qconv(x, w, scale, b=None, stride=1, padding=0, dilation=1, groups=1, input_scale=1.0, input_zero_point=0,
           relu=False):
    acc = F.conv2d(_quantized_input(x, input_scale, input_zero_point), w.double(), stride=stride, padding=padding,
                   dilation=dilation, groups=groups)
    multiplier = (torch.tensor(input_scale, dtype=torch.float32) * scale.detach()).double()
    y = acc * multiplier[None, :, None, None]
    y = (y + b.detach().double()[None, :, None, None]) if b is not None else y
    return torch.relu(y) if relu else y


def _qlinear(x, w, scale, b=None, input_scale=1.0, input_zero_point=0, relu=False):
    acc = _quantized_input(x, input_scale, input_zero_point) @ w.double().T
    y = acc * (torch.tensor(input_scale, dtype=torch.float32) * scale.detach()).double()
    y = y + b.detach().double() if b is not None else y
    return torch.relu(y) if relu else y


def _case(op, inputs, fn, id, **attrs):
    return Case(op, inputs, fn, attrs=attrs, id=id, check_backward=False, rtol=1e-4, atol=1e-5)


CASES = [
    _case("quantized_conv2d", [randn(2, 3, 9, 9, seed=1), _int8(8, 3, 3, 3, seed=2), _scales(8, seed=3),
                               randn(8, seed=4)], _qconv, "3x3_pad", padding=1, input_scale=0.02,
          input_zero_point=128),
    _case("quantized_conv2d", [randn(1, 5, 11, 7, seed=1), _int8(33, 5, 3, 3, seed=2), _scales(33, seed=3)],
          _qconv, "stride2_batch1_nobias", stride=2, padding=1, input_scale=0.015, input_zero_point=100),
    _case("quantized_conv2d", [randn(2, 6, 8, 8, seed=1), _int8(4, 3, 3, 3, seed=2), _scales(4, seed=3),
                               randn(4, seed=4)], _qconv, "groups_dilation", padding=2, dilation=2, groups=2,
          input_scale=0.03, input_zero_point=7),
    _case("quantized_conv2d", [randn(3, 1, 28, 28, seed=1), _int8(32, 1, 3, 3, seed=2), _scales(32, seed=3),
                               randn(32, seed=4)], _qconv, "one_channel", padding=1, input_scale=0.01,
          input_zero_point=255),
    _case("quantized_conv2d", [randn(2, 64, 5, 5, seed=1), _int8(65, 64, 1, 1, seed=2), _scales(65, seed=3),
                               randn(65, seed=4)], _qconv, "1x1", input_scale=0.02, input_zero_point=0),
    _case("quantized_conv2d", [randn(2, 12, 9, 10, seed=1), _int8(40, 12, 3, 3, seed=2), _scales(40, seed=3),
                               randn(40, seed=4)], _qconv, "relu_stride2", stride=2, padding=1, relu=True,
          input_scale=0.02, input_zero_point=90),
    _case("quantized_linear", [randn(5, 37, seed=1), _int8(33, 37, seed=2), _scales(33, seed=3), randn(33, seed=4)],
          _qlinear, "odd", input_scale=0.02, input_zero_point=120),
    _case("quantized_linear", [randn(1, 300, seed=1), _int8(10, 300, seed=2), _scales(10, seed=3)], _qlinear,
          "batch1_nobias", input_scale=0.01, input_zero_point=3),
    _case("quantized_linear", [randn(130, 64, seed=1), _int8(65, 64, seed=2), _scales(65, seed=3), randn(65, seed=4)],
          _qlinear, "tall", input_scale=0.05, input_zero_point=60),
    _case("quantized_linear", [randn(9, 50, seed=1), _int8(20, 50, seed=2), _scales(20, seed=3), randn(20, seed=4)],
          _qlinear, "relu", relu=True, input_scale=0.02, input_zero_point=128),
]
