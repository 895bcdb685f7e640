"""Cases for csrc/ops/pool.c: max_pool2d, avg_pool2d, adaptive_avg_pool2d, global_avg_pool."""
import torch.nn.functional as F

from opcheck import Case, randn


def _max(x, kernel_size, stride=0, padding=0, dilation=1, ceil_mode=False):
    return F.max_pool2d(x, kernel_size, stride or None, padding, dilation, ceil_mode)


def _avg(x, kernel_size, stride=0, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=0):
    return F.avg_pool2d(x, kernel_size, stride or None, padding, ceil_mode, count_include_pad, divisor_override or None)


CASES = [
    Case("max_pool2d", [randn(2, 3, 8, 8, seed=1)], _max, attrs={"kernel_size": 2}, id="k2"),
    Case("max_pool2d", [randn(1, 4, 11, 9, seed=2)], _max, attrs={"kernel_size": 3, "stride": 2, "padding": 1},
         id="k3s2p1_odd"),
    Case("max_pool2d", [randn(2, 2, 10, 7, seed=3)], _max,
         attrs={"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, id="ceil"),
    Case("max_pool2d", [randn(1, 3, 6, 6, seed=4)], _max,
         attrs={"kernel_size": 2, "stride": 2, "ceil_mode": True}, id="ceil_exact"),
    Case("max_pool2d", [randn(2, 2, 13, 12, seed=5)], _max,
         attrs={"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 1), "dilation": (2, 3)}, id="dilation_rect"),
    Case("max_pool2d", [randn(1, 1, 5, 5, seed=6)], _max,
         attrs={"kernel_size": 4, "stride": 3, "padding": 2, "ceil_mode": True}, id="ceil_drop_last"),
    Case("avg_pool2d", [randn(2, 3, 8, 8, seed=1)], _avg, attrs={"kernel_size": 2}, id="k2"),
    Case("avg_pool2d", [randn(1, 4, 11, 9, seed=2)], _avg, attrs={"kernel_size": 3, "stride": 2, "padding": 1},
         id="k3s2p1_include_pad"),
    Case("avg_pool2d", [randn(1, 4, 11, 9, seed=3)], _avg,
         attrs={"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, id="k3s2p1_exclude_pad"),
    Case("avg_pool2d", [randn(2, 2, 10, 7, seed=4)], _avg,
         attrs={"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, id="ceil_include_pad"),
    Case("avg_pool2d", [randn(2, 2, 10, 7, seed=5)], _avg,
         attrs={"kernel_size": (4, 3), "stride": (3, 2), "padding": (2, 1), "ceil_mode": True,
                "count_include_pad": False}, id="ceil_exclude_pad_rect"),
    Case("avg_pool2d", [randn(1, 2, 7, 7, seed=6)], _avg,
         attrs={"kernel_size": 3, "stride": 2, "divisor_override": 5}, id="divisor_override"),
    Case("adaptive_avg_pool2d", [randn(2, 3, 10, 7, seed=1)], lambda x, output_size: F.adaptive_avg_pool2d(x, output_size),
         attrs={"output_size": (3, 4)}, id="overlapping"),
    Case("adaptive_avg_pool2d", [randn(1, 2, 5, 5, seed=2)], lambda x, output_size: F.adaptive_avg_pool2d(x, output_size),
         attrs={"output_size": 7}, id="upsampling"),
    Case("adaptive_avg_pool2d", [randn(2, 5, 9, 11, seed=3)], lambda x, output_size: F.adaptive_avg_pool2d(x, output_size),
         attrs={"output_size": 1}, id="one"),
    Case("global_avg_pool", [randn(2, 3, 7, 9, seed=1)], lambda x: F.adaptive_avg_pool2d(x, 1)),
    Case("global_avg_pool", [randn(1, 5, 1, 1, seed=2)], lambda x: F.adaptive_avg_pool2d(x, 1), id="1x1"),
    Case("global_avg_pool", [randn(1, 2, 33, 31, seed=3)], lambda x: F.adaptive_avg_pool2d(x, 1), id="odd_large"),
]
