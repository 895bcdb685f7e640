/* fpn.c: a feature pyramid network (Lin et al. 2017) for semantic segmentation, with the
 * Panoptic-FPN style head of segmentation_models_pytorch's FPN.
 *
 * Encoder: resnet18/34/50 (options->encoder, default resnet34) under "backbone." with
 * torchvision's names (load a torchvision ResNet state_dict with the keys prefixed).
 * Pyramid ("fpn.*", torchvision.ops.FeaturePyramidNetwork's names): a lateral 1x1 conv
 * with bias to 256 channels on each of layer1..layer4 ("fpn.inner_blocks.i.0"), the
 * top-down path (nearest x2 upsampling of the coarser level added to the lateral), and a
 * 3x3 conv with bias on each sum ("fpn.layer_blocks.i.0"): P2..P5 at strides 4..32.
 * Head: each P_k goes through max(1, k - 2) blocks of 3x3 conv (256 -> 128 on the first,
 * 128 -> 128 after, no bias) + BN + ReLU, each block but P2's followed by a bilinear x2
 * upsampling, so that all reach stride 4 ("head.seg_blocks.i.j.0" conv, ".1" BN); the four
 * are summed, dropout (none unless options->dropout > 0), a 1x1 conv with bias to the
 * classes ("head.classifier"), and a bilinear x4 upsampling to the input size.
 * NOTE: BatchNorm replaces smp's GroupNorm in the head. Input height and width must be
 * divisible by 32. */
#include <stdio.h>

#include "model.h"

#define FPN_CHANNELS 256
#define FPN_HEAD_CHANNELS 128

static tg_node_id upsample(tg_builder *b, const char *op, tg_node_id x, double factor)
{
    static const char *const keys[] = {"scale_factor"};
    return tg_build_op(b, op, &x, 1, 1, keys, &factor);
}

tg_node_id tg_arch_fpn(tg_builder *b, tg_node_id x, const tg_model_options *o)
{
    if (b->status != TG_STATUS_OK) return -1;
    if (tg_build_dim(b, x, 2) % 32 != 0 || tg_build_dim(b, x, 3) % 32 != 0) {
        b->status = tg_error(TG_STATUS_SHAPE, "fpn: input height and width must be divisible by 32 (output stride "
                             "32), got %lld x %lld", (long long)tg_build_dim(b, x, 2), (long long)tg_build_dim(b, x, 3));
        return -1;
    }
    tg_node_id stages[4];
    int64_t channels[4];
    if (tg_build_resnet_encoder(b, x, o->encoder[0] ? o->encoder : "resnet34", "backbone.", 0, stages, channels) != 0)
        return -1;
    tg_node_id pyramid[4], last = -1;
    for (int level = 3; level >= 0; level--) {
        char inner[48], layer[48];
        snprintf(inner, sizeof inner, "fpn.inner_blocks.%d.0", level);
        snprintf(layer, sizeof layer, "fpn.layer_blocks.%d.0", level);
        tg_node_id lateral = tg_build_conv2d(b, inner, stages[level], FPN_CHANNELS, 1, 1, 0, 1, 1);
        last = level == 3 ? lateral : tg_build_binary(b, "add", lateral, upsample(b, "upsample_nearest", last, 2));
        pyramid[level] = tg_build_conv2d(b, layer, last, FPN_CHANNELS, 3, 1, 1, 1, 1);
    }
    tg_node_id merged = -1;
    for (int level = 0; level < 4; level++) {
        tg_node_id y = pyramid[level];
        int blocks = level > 1 ? level : 1;
        for (int j = 0; j < blocks; j++) {
            char conv[48], bn[48];
            snprintf(conv, sizeof conv, "head.seg_blocks.%d.%d.0", level, j);
            snprintf(bn, sizeof bn, "head.seg_blocks.%d.%d.1", level, j);
            y = tg_build_conv2d(b, conv, y, FPN_HEAD_CHANNELS, 3, 1, 1, 1, 0);
            y = tg_build_unary(b, "relu", tg_build_batchnorm2d(b, bn, y, 1e-5, 0.1));
            if (level > 0) y = upsample(b, "upsample_bilinear", y, 2);
        }
        merged = level == 0 ? y : tg_build_binary(b, "add", merged, y);
    }
    if (o->dropout > 0) {
        static const char *const keys[] = {"p"};
        merged = tg_build_op(b, "dropout", &merged, 1, 1, keys, &o->dropout);
    }
    x = tg_build_conv2d(b, "head.classifier", merged, o->num_classes, 1, 1, 0, 1, 1);
    return upsample(b, "upsample_bilinear", x, 4);
}
