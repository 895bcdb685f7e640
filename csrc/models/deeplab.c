/* deeplab.c: DeepLabV3+ (Chen et al. 2018) over a ResNet encoder.
 *
 * Encoder: resnet18/34/50 (options->encoder, default resnet34) under "backbone." with
 * torchvision's names, so a torchvision ResNet state_dict loads once its keys get the
 * "backbone." prefix (its fc.* is not used); layer4 is dilated (stride 1, dilation 2),
 * giving output stride 16.
 * ASPP on layer4 ("aspp.*", torchvision's ASPP module names): a 1x1 branch, three 3x3
 * branches with dilation 6, 12, 18, and an image-pooling branch (global average pool,
 * 1x1 conv, BN, ReLU, broadcast back to the feature size), each 256 channels, concatenated
 * and projected by 1x1 conv + BN + ReLU + dropout (0.5 unless options->dropout >= 0).
 * Decoder: ASPP output upsampled x4 (bilinear) to the stride-4 stage (layer1), whose
 * features are reduced to 48 channels ("decoder.low_level": 1x1 conv + BN + ReLU),
 * concatenated [upsampled, low-level], two 3x3 conv + BN + ReLU of 256 ("decoder.fuse"),
 * a 1x1 conv with bias to the classes ("classifier") and a x4 bilinear upsampling to the
 * input size. Convs before a BN have no bias.
 * NOTE: the pooling branch is broadcast with upsample_bilinear to the feature size of
 * input_size, so the graph serves inputs of input_size only; other upsamplings use
 * scale factors. Input height and width must be divisible by 16. */
#include <stdio.h>

#include "model.h"

#define DEEPLAB_BN_EPS 1e-5
#define DEEPLAB_BN_MOMENTUM 0.1
#define DEEPLAB_ASPP_CHANNELS 256
#define DEEPLAB_LOW_LEVEL_CHANNELS 48
#define DEEPLAB_DROPOUT 0.5

/* conv (no bias) + BN + ReLU named "<name>.<conv_index>" and "<name>.<conv_index + 1>". */
static tg_node_id conv_bn_relu(tg_builder *b, const char *name, int conv_index, tg_node_id x, int64_t out,
                               int64_t kernel, int64_t dilation)
{
    char conv_name[96], bn_name[96];
    snprintf(conv_name, sizeof conv_name, "%s.%d", name, conv_index);
    snprintf(bn_name, sizeof bn_name, "%s.%d", name, conv_index + 1);
    x = tg_build_conv2d_dilated(b, conv_name, x, out, kernel, 1, kernel / 2 * dilation, dilation, 1, 0);
    x = tg_build_batchnorm2d(b, bn_name, x, DEEPLAB_BN_EPS, DEEPLAB_BN_MOMENTUM);
    return tg_build_unary(b, "relu", x);
}

static tg_node_id upsample_by(tg_builder *b, tg_node_id x, double factor)
{
    static const char *const keys[] = {"scale_factor"};
    return tg_build_op(b, "upsample_bilinear", &x, 1, 1, keys, &factor);
}

static tg_node_id concat(tg_builder *b, const tg_node_id *in, int n)
{
    static const char *const keys[] = {"dim"};
    static const double values[] = {1};
    return tg_build_op(b, "concat", in, n, 1, keys, values);
}

static tg_node_id aspp(tg_builder *b, tg_node_id x, double dropout)
{
    static const int64_t rates[3] = {6, 12, 18};
    tg_node_id branches[5];
    branches[0] = conv_bn_relu(b, "aspp.convs.0", 0, x, DEEPLAB_ASPP_CHANNELS, 1, 1);
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "aspp.convs.%d", i + 1);
        branches[i + 1] = conv_bn_relu(b, name, 0, x, DEEPLAB_ASPP_CHANNELS, 3, rates[i]);
    }
    static const char *const pool_keys[] = {"output_size"};
    static const double pool_values[] = {1};
    tg_node_id pooled = tg_build_op(b, "adaptive_avg_pool2d", &x, 1, 1, pool_keys, pool_values);
    pooled = conv_bn_relu(b, "aspp.convs.4", 1, pooled, DEEPLAB_ASPP_CHANNELS, 1, 1);
    static const char *const size_keys[] = {"size"};
    double size = (double)tg_build_dim(b, x, 2);
    branches[4] = tg_build_op(b, "upsample_bilinear", &pooled, 1, 1, size_keys, &size);
    x = conv_bn_relu(b, "aspp.project", 0, concat(b, branches, 5), DEEPLAB_ASPP_CHANNELS, 1, 1);
    if (dropout > 0) {
        static const char *const keys[] = {"p"};
        x = tg_build_op(b, "dropout", &x, 1, 1, keys, &dropout);
    }
    return x;
}

tg_node_id tg_arch_deeplabv3plus(tg_builder *b, tg_node_id x, const tg_model_options *o)
{
    if (b->status != TG_STATUS_OK) return -1;
    if (tg_build_dim(b, x, 2) % 16 != 0 || tg_build_dim(b, x, 3) % 16 != 0 || tg_build_dim(b, x, 2) != tg_build_dim(b, x, 3)) {
        b->status = tg_error(TG_STATUS_SHAPE, "deeplabv3plus: input must be square with a side divisible by 16 "
                             "(output stride 16), got %lld x %lld", (long long)tg_build_dim(b, x, 2),
                             (long long)tg_build_dim(b, x, 3));
        return -1;
    }
    tg_node_id stages[4];
    int64_t channels[4];
    if (tg_build_resnet_encoder(b, x, o->encoder[0] ? o->encoder : "resnet34", "backbone.", 1, stages, channels) != 0)
        return -1;
    tg_node_id high = aspp(b, stages[3], o->dropout >= 0 ? o->dropout : DEEPLAB_DROPOUT);
    tg_node_id low = conv_bn_relu(b, "decoder.low_level", 0, stages[0], DEEPLAB_LOW_LEVEL_CHANNELS, 1, 1);
    tg_node_id in[2] = {upsample_by(b, high, 4), low};
    x = concat(b, in, 2);
    x = conv_bn_relu(b, "decoder.fuse", 0, x, DEEPLAB_ASPP_CHANNELS, 3, 1);
    x = conv_bn_relu(b, "decoder.fuse", 3, x, DEEPLAB_ASPP_CHANNELS, 3, 1);
    x = tg_build_conv2d(b, "classifier", x, o->num_classes, 1, 1, 0, 1, 1);
    return upsample_by(b, x, 4);
}
