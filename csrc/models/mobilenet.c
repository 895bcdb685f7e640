/* mobilenet.c: MobileNetV3-Small with torchvision's layout, names and defaults:
 * features.0 (3x3 stride-2 conv-bn-hardswish stem), features.1..11 (inverted
 * residuals: expand 1x1, depthwise kxk, optional squeeze-excitation with ReLU and
 * hardsigmoid, project 1x1; ReLU or hardswish), features.12 (1x1 conv-bn-hardswish
 * to 576), global average pool, classifier.0 (linear 1024), hardswish,
 * classifier.2 (dropout 0.2), classifier.3 (linear). BatchNorm eps 1e-3, momentum 0.01.
 *
 * Not here: MobileNetV3-Large, width multipliers, the dilated / reduced-tail variants. */
#include <stdio.h>

#include "model.h"

#define MBV3_BN_EPS 1e-3
#define MBV3_BN_MOMENTUM 0.01
#define MBV3_DROPOUT 0.2

typedef enum mbv3_act {
    MBV3_ACT_NONE,
    MBV3_ACT_RELU,
    MBV3_ACT_HARDSWISH,
} mbv3_act;

static tg_node_id activation(tg_builder *b, tg_node_id x, mbv3_act act)
{
    if (act == MBV3_ACT_RELU) return tg_build_unary(b, "relu", x);
    if (act == MBV3_ACT_HARDSWISH) return tg_build_unary(b, "hardswish", x);
    return x;
}

/* Conv2dNormActivation: "<prefix>.0" conv (no bias), "<prefix>.1" batchnorm, then the activation. */
static tg_node_id conv_bn_act(tg_builder *b, const char *prefix, tg_node_id x, int64_t out, int64_t kernel,
                              int64_t stride, int64_t groups, mbv3_act act)
{
    char conv[192], bn[192];
    snprintf(conv, sizeof conv, "%s.0", prefix);
    snprintf(bn, sizeof bn, "%s.1", prefix);
    x = tg_build_conv2d(b, conv, x, out, kernel, stride, (kernel - 1) / 2, groups, 0);
    return activation(b, tg_build_batchnorm2d(b, bn, x, MBV3_BN_EPS, MBV3_BN_MOMENTUM), act);
}

/* SqueezeExcitation: x * hardsigmoid(fc2(relu(fc1(avgpool(x))))), squeeze = make_divisible(C / 4, 8). */
static tg_node_id squeeze_excitation(tg_builder *b, const char *prefix, tg_node_id x)
{
    char fc1[192], fc2[192], bias[200];
    snprintf(fc1, sizeof fc1, "%s.fc1", prefix);
    snprintf(fc2, sizeof fc2, "%s.fc2", prefix);
    int64_t channels = tg_build_dim(b, x, 1);
    int64_t squeeze = tg_make_divisible((double)(channels / 4), 8);
    tg_node_id scale = tg_build_unary(b, "global_avg_pool", x);
    scale = tg_build_unary(b, "relu", tg_build_conv2d(b, fc1, scale, squeeze, 1, 1, 0, 1, 1));
    scale = tg_build_unary(b, "hardsigmoid", tg_build_conv2d(b, fc2, scale, channels, 1, 1, 0, 1, 1));
    snprintf(bias, sizeof bias, "%s.bias", fc1);
    tg_build_reinit(b, bias, 0.0, 0.0);
    snprintf(bias, sizeof bias, "%s.bias", fc2);
    tg_build_reinit(b, bias, 0.0, 0.0);
    return tg_build_binary(b, "mul", x, scale);
}

typedef struct inverted_residual_config {
    int kernel;
    int64_t expanded, out;
    int use_se;
    mbv3_act act;
    int stride;
} inverted_residual_config;

/* InvertedResidual "<prefix>.block.N"; a residual when stride 1 keeps the channels. */
static tg_node_id inverted_residual(tg_builder *b, const char *prefix, tg_node_id x, const inverted_residual_config *c)
{
    int64_t in = tg_build_dim(b, x, 1);
    char name[160];
    int index = 0;
    tg_node_id y = x;
    if (c->expanded != in) {
        snprintf(name, sizeof name, "%s.block.%d", prefix, index++);
        y = conv_bn_act(b, name, y, c->expanded, 1, 1, 1, c->act);
    }
    snprintf(name, sizeof name, "%s.block.%d", prefix, index++);
    y = conv_bn_act(b, name, y, c->expanded, c->kernel, c->stride, c->expanded, c->act);
    if (c->use_se) {
        snprintf(name, sizeof name, "%s.block.%d", prefix, index++);
        y = squeeze_excitation(b, name, y);
    }
    snprintf(name, sizeof name, "%s.block.%d", prefix, index++);
    y = conv_bn_act(b, name, y, c->out, 1, 1, 1, MBV3_ACT_NONE);
    return c->stride == 1 && in == c->out ? tg_build_binary(b, "add", y, x) : y;
}

tg_node_id tg_arch_mobilenet_v3_small(tg_builder *b, tg_node_id x, const tg_model_options *o)
{
    static const inverted_residual_config blocks[11] = {
        {3, 16, 16, 1, MBV3_ACT_RELU, 2},       {3, 72, 24, 0, MBV3_ACT_RELU, 2},
        {3, 88, 24, 0, MBV3_ACT_RELU, 1},       {5, 96, 40, 1, MBV3_ACT_HARDSWISH, 2},
        {5, 240, 40, 1, MBV3_ACT_HARDSWISH, 1}, {5, 240, 40, 1, MBV3_ACT_HARDSWISH, 1},
        {5, 120, 48, 1, MBV3_ACT_HARDSWISH, 1}, {5, 144, 48, 1, MBV3_ACT_HARDSWISH, 1},
        {5, 288, 96, 1, MBV3_ACT_HARDSWISH, 2}, {5, 576, 96, 1, MBV3_ACT_HARDSWISH, 1},
        {5, 576, 96, 1, MBV3_ACT_HARDSWISH, 1},
    };
    x = conv_bn_act(b, "features.0", x, 16, 3, 2, 1, MBV3_ACT_HARDSWISH);
    for (int i = 0; i < 11; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "features.%d", i + 1);
        x = inverted_residual(b, prefix, x, &blocks[i]);
    }
    x = conv_bn_act(b, "features.12", x, 576, 1, 1, 1, MBV3_ACT_HARDSWISH);
    x = tg_build_unary(b, "flatten", tg_build_unary(b, "global_avg_pool", x));
    /* torchvision: linear weights normal(0, 0.01), zero biases */
    x = tg_build_unary(b, "hardswish", tg_build_linear_init(b, "classifier.0", x, 1024, 0.0, 0.01));
    x = tg_build_dropout(b, x, o->dropout < 0 ? MBV3_DROPOUT : o->dropout);
    x = tg_build_linear_init(b, "classifier.3", x, o->num_classes, 0.0, 0.01);
    return x;
}
