/* efficientnet.c: EfficientNet-B0 with torchvision's layout, names and defaults:
 * features.0 (3x3 stride-2 conv-bn-SiLU stem), features.1..7 (MBConv stages:
 * expand 1x1, depthwise kxk, squeeze-excitation with SiLU and sigmoid, project
 * 1x1), features.8 (1x1 conv-bn-SiLU to 1280), global average pool, then
 * classifier.0 (dropout 0.2) and classifier.1 (linear).
 *
 * NOTE: torchvision's efficientnet_b0 uses nn.BatchNorm2d's defaults (eps 1e-5,
 * momentum 0.1); only B5..B7 pass eps 1e-3 / momentum 0.01. We follow B0.
 *
 * Stochastic depth (torchvision's StochasticDepth "row" mode, probability
 * 0.2 * block / 16 on the residual branch) is the stochastic_depth op: per sample
 * in training, the identity in eval. options->drop_path sets the 0.2 (0 turns it off).
 *
 * Not here: B1..B7 width/depth scaling, EfficientNet-V2 (fused MBConv). */
#include <math.h>
#include <stdio.h>

#include "model.h"

#define EFFNET_BN_EPS 1e-5
#define EFFNET_BN_MOMENTUM 0.1
#define EFFNET_DROPOUT 0.2
#define EFFNET_DROP_PATH 0.2

typedef enum effnet_act {
    EFFNET_ACT_NONE,
    EFFNET_ACT_SILU,
} effnet_act;

/* Conv2dNormActivation: "<prefix>.0" conv (no bias), "<prefix>.1" batchnorm, then SiLU. */
static tg_node_id conv_bn_act(tg_builder *b, const char *prefix, tg_node_id x, int64_t out, int64_t kernel,
                              int64_t stride, int64_t groups, effnet_act act)
{
    char conv[192], bn[192];
    snprintf(conv, sizeof conv, "%s.0", prefix);
    snprintf(bn, sizeof bn, "%s.1", prefix);
    x = tg_build_conv2d(b, conv, x, out, kernel, stride, (kernel - 1) / 2, groups, 0);
    if (act == EFFNET_ACT_SILU) return tg_build_batchnorm2d_silu(b, bn, x, EFFNET_BN_EPS, EFFNET_BN_MOMENTUM);
    return tg_build_batchnorm2d(b, bn, x, EFFNET_BN_EPS, EFFNET_BN_MOMENTUM);
}

/* torchvision.ops.SqueezeExcitation: x * sigmoid(fc2(silu(fc1(avgpool(x))))), fc1/fc2 1x1 convs with bias. */
static tg_node_id squeeze_excitation(tg_builder *b, const char *prefix, tg_node_id x, int64_t squeeze)
{
    char fc1[192], fc2[192], bias[200];
    snprintf(fc1, sizeof fc1, "%s.fc1", prefix);
    snprintf(fc2, sizeof fc2, "%s.fc2", prefix);
    int64_t channels = tg_build_dim(b, x, 1);
    tg_node_id scale = tg_build_unary(b, "global_avg_pool", x);
    scale = tg_build_unary(b, "silu", tg_build_conv2d(b, fc1, scale, squeeze, 1, 1, 0, 1, 1));
    scale = tg_build_unary(b, "sigmoid", tg_build_conv2d(b, fc2, scale, channels, 1, 1, 0, 1, 1));
    snprintf(bias, sizeof bias, "%s.bias", fc1);
    tg_build_reinit(b, bias, 0.0, 0.0);
    snprintf(bias, sizeof bias, "%s.bias", fc2);
    tg_build_reinit(b, bias, 0.0, 0.0);
    return tg_build_binary(b, "mul", x, scale);
}

typedef struct mbconv_stage {
    int expand_ratio, kernel, stride;
    int64_t out_channels;
    int layers;
} mbconv_stage;

/* MBConv "<prefix>.block.N": expand (when the ratio is not 1), depthwise, SE, project;
 * a residual (through stochastic depth) when the shape is kept. */
static tg_node_id mbconv(tg_builder *b, const char *prefix, tg_node_id x, const mbconv_stage *s, int64_t stride,
                         double drop_path)
{
    int64_t in = tg_build_dim(b, x, 1);
    int64_t expanded = tg_make_divisible((double)in * s->expand_ratio, 8);
    char name[160];
    int index = 0;
    tg_node_id y = x;
    if (expanded != in) {
        snprintf(name, sizeof name, "%s.block.%d", prefix, index++);
        y = conv_bn_act(b, name, y, expanded, 1, 1, 1, EFFNET_ACT_SILU);
    }
    snprintf(name, sizeof name, "%s.block.%d", prefix, index++);
    y = conv_bn_act(b, name, y, expanded, s->kernel, stride, expanded, EFFNET_ACT_SILU);
    snprintf(name, sizeof name, "%s.block.%d", prefix, index++);
    y = squeeze_excitation(b, name, y, in / 4 > 1 ? in / 4 : 1);
    snprintf(name, sizeof name, "%s.block.%d", prefix, index++);
    y = conv_bn_act(b, name, y, s->out_channels, 1, 1, 1, EFFNET_ACT_NONE);
    if (stride != 1 || in != s->out_channels) return y;
    if (drop_path > 0.0) {
        static const char *const keys[] = {"p"};
        y = tg_build_op(b, "stochastic_depth", &y, 1, 1, keys, &drop_path);
    }
    return tg_build_binary(b, "add", y, x);
}

tg_node_id tg_arch_efficientnet_b0(tg_builder *b, tg_node_id x, const tg_model_options *o)
{
    static const mbconv_stage stages[7] = {
        {1, 3, 1, 16, 1}, {6, 3, 2, 24, 2}, {6, 5, 2, 40, 2}, {6, 3, 2, 80, 3},
        {6, 5, 1, 112, 3}, {6, 5, 2, 192, 4}, {6, 3, 1, 320, 1},
    };
    double drop_path = o->drop_path < 0 ? EFFNET_DROP_PATH : o->drop_path;
    int total_blocks = 0;
    for (int s = 0; s < 7; s++) total_blocks += stages[s].layers;
    x = conv_bn_act(b, "features.0", x, 32, 3, 2, 1, EFFNET_ACT_SILU);
    int block_id = 0;
    for (int s = 0; s < 7; s++) {
        for (int i = 0; i < stages[s].layers; i++, block_id++) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "features.%d.%d", s + 1, i);
            /* torchvision: probability grows linearly with the block's index, from 0 */
            double p = drop_path * (double)block_id / (double)total_blocks;
            x = mbconv(b, prefix, x, &stages[s], i == 0 ? stages[s].stride : 1, p);
        }
    }
    x = conv_bn_act(b, "features.8", x, 1280, 1, 1, 1, EFFNET_ACT_SILU);
    x = tg_build_unary(b, "flatten", tg_build_unary(b, "global_avg_pool", x));
    x = tg_build_dropout(b, x, o->dropout < 0 ? EFFNET_DROPOUT : o->dropout);
    /* torchvision: uniform(+-1/sqrt(out_features)) weights, zero bias */
    return tg_build_linear_init(b, "classifier.1", x, o->num_classes, 1.0 / sqrt((double)o->num_classes), 0.0);
}
