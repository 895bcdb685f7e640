"""Cases for csrc/ops/conv.c and conv_depthwise.c: conv2d and conv_transpose2d against
torch.nn.functional, forward and every gradient."""
import torch.nn.functional as F

from opcheck import Case, randn


def conv(id, n, c, h, w, o, k, bias=True, seed=0, **attrs):
    kh, kw = (k, k) if isinstance(k, int) else k
    groups = attrs.get("groups", 1)
    inputs = [randn(n, c, h, w, seed=seed), randn(o, c // groups, kh, kw, seed=seed + 1) * 0.3,
              randn(o, seed=seed + 2) if bias else None]
    return Case("conv2d", inputs, lambda x, wt, b, **a: F.conv2d(x, wt, b, **a), attrs=attrs, id=id,
                rtol=2e-4, atol=5e-5)


def conv_t(id, n, c, h, w, o, k, bias=True, seed=0, **attrs):
    kh, kw = (k, k) if isinstance(k, int) else k
    groups = attrs.get("groups", 1)
    inputs = [randn(n, c, h, w, seed=seed), randn(c, o // groups, kh, kw, seed=seed + 1) * 0.3,
              randn(o, seed=seed + 2) if bias else None]
    return Case("conv_transpose2d", inputs, lambda x, wt, b, **a: F.conv_transpose2d(x, wt, b, **a),
                attrs=attrs, id=id, rtol=2e-4, atol=5e-5)


CASES = [
    conv("basic3x3", 2, 3, 8, 8, 4, 3, padding=1),
    conv("batch1", 1, 5, 6, 6, 7, 3),
    conv("odd7x9", 3, 4, 7, 9, 6, 3, padding=1),
    conv("stride2_pad1", 2, 6, 11, 10, 8, 3, stride=2, padding=1),
    conv("stride_pair", 2, 3, 9, 12, 5, (3, 2), stride=(2, 1), padding=(1, 0)),
    conv("dilation2", 2, 4, 12, 11, 5, 3, dilation=2, padding=2),
    conv("dilation_stride", 2, 4, 13, 13, 6, 3, dilation=(2, 3), stride=2, padding=(1, 3)),
    conv("groups2", 2, 8, 9, 9, 6, 3, groups=2, padding=1),
    conv("groups4_stride2", 3, 8, 10, 7, 12, 3, groups=4, stride=2, padding=1),
    conv("depthwise", 2, 6, 10, 9, 6, 3, groups=6, padding=1),
    conv("depthwise_mult2", 2, 5, 8, 11, 10, 3, groups=5, padding=1),
    conv("depthwise_stride2", 2, 7, 15, 13, 7, 3, groups=7, stride=2, padding=1),
    conv("depthwise5_stride2", 3, 4, 17, 20, 4, 5, groups=4, stride=2, padding=2),
    conv("depthwise_dilated", 2, 4, 12, 12, 8, 3, groups=4, dilation=2, padding=2),
    conv("depthwise_nopad_wide", 2, 3, 5, 40, 3, (3, 5), groups=3, stride=(1, 3)),
    conv("depthwise_big", 2, 3, 35, 37, 3, 3, groups=3, padding=1, bias=False),
    conv("pointwise", 2, 16, 5, 7, 8, 1),
    conv("pointwise_big", 1, 8, 40, 40, 8, 1),
    conv("pointwise_stride2", 2, 16, 9, 9, 12, 1, stride=2),
    conv("pointwise_groups", 2, 8, 6, 6, 4, 1, groups=2),
    conv("no_bias", 2, 3, 8, 8, 4, 3, bias=False, padding=1),
    conv("kernel5", 2, 3, 12, 11, 4, 5, padding=2),
    conv("kernel7_stem", 2, 3, 20, 21, 8, 7, stride=2, padding=3),
    conv("large_per_image", 2, 3, 36, 36, 4, 3, padding=1),
    conv("row_bands", 2, 256, 32, 33, 4, 3, padding=1, seed=3),
    conv("many_images", 20, 4, 4, 4, 6, 3, padding=1),
    conv("pad_larger", 1, 2, 3, 3, 3, 3, padding=2),
    # channel-blocked depthwise path (channels a multiple of 16)
    conv("depthwise16", 2, 16, 9, 11, 16, 3, groups=16, padding=1),
    conv("depthwise32_stride2", 3, 32, 15, 14, 32, 3, groups=32, stride=2, padding=1),
    conv("depthwise16_k5_stride2", 2, 16, 13, 17, 16, 5, groups=16, stride=2, padding=2),
    conv("depthwise16_dilated_nopad", 2, 16, 12, 10, 16, 3, groups=16, dilation=2, bias=False),
    conv("depthwise16_wide", 1, 16, 5, 37, 16, (3, 5), groups=16, stride=(1, 2), padding=(1, 2)),
    # tiled path: several row bands per image, several images per tile, groups
    conv("tiles_row_bands", 1, 64, 24, 24, 32, 3, padding=1),
    conv("tiles_images", 9, 32, 6, 5, 16, 3, padding=1),
    conv("tiles_groups_dilated", 2, 32, 19, 17, 16, 3, groups=4, dilation=2, padding=2),
    conv_t("basic", 2, 4, 5, 5, 3, 3),
    conv_t("stride2_pad1", 2, 6, 7, 6, 4, 3, stride=2, padding=1),
    conv_t("output_padding", 2, 4, 5, 6, 3, 3, stride=2, padding=1, output_padding=1),
    conv_t("output_padding_pair", 1, 3, 4, 5, 2, (3, 4), stride=(3, 2), padding=(0, 1), output_padding=(2, 1)),
    conv_t("dilation", 2, 4, 6, 6, 5, 3, dilation=2, padding=1),
    conv_t("dilation_output_padding", 2, 3, 5, 5, 2, 3, dilation=3, stride=2, output_padding=2),
    conv_t("groups2", 2, 6, 5, 5, 4, 3, groups=2, stride=2, padding=1),
    conv_t("depthwise", 2, 5, 6, 7, 5, 3, groups=5, stride=2, padding=1),
    conv_t("depthwise_mult", 2, 3, 6, 6, 6, 3, groups=3, padding=1),
    conv_t("depthwise16", 2, 16, 6, 7, 16, 3, groups=16, stride=2, padding=1),
    conv_t("depthwise16_s1", 2, 16, 6, 7, 16, 3, groups=16, padding=1),
    conv_t("no_bias_1x1", 3, 8, 4, 5, 6, 1, bias=False),
    conv_t("kernel4_stride2", 2, 8, 7, 7, 4, 4, stride=2, padding=1),
    conv_t("many_images", 24, 4, 3, 3, 5, 3, stride=2, padding=1, output_padding=1),
]
