"""Cases for csrc/ops/upsample.c against torch.nn.functional.interpolate."""
import torch.nn.functional as F

from opcheck import Case, randn


def _nearest(x, size=None, scale_factor=None):
    return F.interpolate(x, size=size, scale_factor=scale_factor, mode="nearest")


def _bilinear(x, size=None, scale_factor=None, align_corners=False):
    return F.interpolate(x, size=size, scale_factor=scale_factor, mode="bilinear", align_corners=align_corners)


CASES = [
    Case("upsample_nearest", [randn(2, 3, 4, 5, seed=1)], _nearest, attrs={"scale_factor": 2.0}, id="x2"),
    Case("upsample_nearest", [randn(1, 2, 5, 7, seed=2)], _nearest, attrs={"scale_factor": 1.7}, id="x1.7"),
    Case("upsample_nearest", [randn(1, 2, 5, 7, seed=3)], _nearest, attrs={"scale_factor": 0.6}, id="down0.6"),
    Case("upsample_nearest", [randn(2, 1, 5, 7, seed=4)], _nearest, attrs={"size": (9, 3)}, id="size_mixed"),
    Case("upsample_nearest", [randn(1, 3, 7, 6, seed=5)], _nearest, attrs={"size": (7, 13)}, id="size_same_h"),
    Case("upsample_nearest", [randn(1, 1, 3, 3, seed=6)], _nearest, attrs={"scale_factor": 3.0}, id="x3"),
    Case("upsample_bilinear", [randn(2, 3, 4, 5, seed=1)], _bilinear, attrs={"scale_factor": 2.0}, id="x2"),
    Case("upsample_bilinear", [randn(2, 3, 4, 5, seed=2)], _bilinear,
         attrs={"scale_factor": 2.0, "align_corners": True}, id="x2_align"),
    Case("upsample_bilinear", [randn(1, 2, 5, 7, seed=3)], _bilinear, attrs={"scale_factor": 1.7}, id="x1.7"),
    Case("upsample_bilinear", [randn(1, 2, 9, 7, seed=4)], _bilinear, attrs={"scale_factor": 0.45}, id="down"),
    Case("upsample_bilinear", [randn(1, 2, 9, 7, seed=5)], _bilinear,
         attrs={"scale_factor": 0.45, "align_corners": True}, id="down_align"),
    Case("upsample_bilinear", [randn(2, 2, 5, 7, seed=6)], _bilinear, attrs={"size": (11, 4)}, id="size_mixed"),
    Case("upsample_bilinear", [randn(2, 2, 5, 7, seed=7)], _bilinear,
         attrs={"size": (11, 4), "align_corners": True}, id="size_mixed_align"),
    Case("upsample_bilinear", [randn(1, 1, 1, 6, seed=8)], _bilinear,
         attrs={"size": (4, 6), "align_corners": True}, id="from_one_row_align"),
    Case("upsample_bilinear", [randn(1, 3, 6, 5, seed=9)], _bilinear, attrs={"size": (1, 1)}, id="to_1x1"),
    Case("upsample_bilinear", [randn(1, 3, 6, 5, seed=10)], _bilinear,
         attrs={"size": (1, 3), "align_corners": True}, id="to_1_align"),
]
