/* resnet.c: ResNet-18/34 (basic blocks) and ResNet-50 (bottlenecks), torchvision's
 * layout and names; optional small-input stem (3x3 stride 1, no max-pool). */
#include <stdio.h>

#include "model.h"

#define BN_EPS 1e-5
#define BN_MOMENTUM 0.1

static tg_node_id conv_bn(tg_builder *b, const char *prefix, const char *conv, const char *bn, tg_node_id x,
                          int64_t out, int64_t kernel, int64_t stride, int64_t padding)
{
    char conv_name[160], bn_name[160];
    snprintf(conv_name, sizeof conv_name, "%s%s", prefix, conv);
    snprintf(bn_name, sizeof bn_name, "%s%s", prefix, bn);
    x = tg_build_conv2d(b, conv_name, x, out, kernel, stride, padding, 1, 0);
    return tg_build_batchnorm2d(b, bn_name, x, BN_EPS, BN_MOMENTUM);
}

/* The shortcut: identity, or conv1x1 + bn ("downsample.0", "downsample.1") when the shape changes. */
static tg_node_id shortcut(tg_builder *b, const char *prefix, tg_node_id x, int64_t out, int64_t stride)
{
    if (stride == 1 && tg_build_dim(b, x, 1) == out) return x;
    return conv_bn(b, prefix, "downsample.0", "downsample.1", x, out, 1, stride, 0);
}

static tg_node_id basic_block(tg_builder *b, const char *prefix, tg_node_id x, int64_t planes, int64_t stride)
{
    tg_node_id y = conv_bn(b, prefix, "conv1", "bn1", x, planes, 3, stride, 1);
    y = tg_build_unary(b, "relu", y);
    y = conv_bn(b, prefix, "conv2", "bn2", y, planes, 3, 1, 1);
    y = tg_build_binary(b, "add", y, shortcut(b, prefix, x, planes, stride));
    return tg_build_unary(b, "relu", y);
}

static tg_node_id bottleneck(tg_builder *b, const char *prefix, tg_node_id x, int64_t planes, int64_t stride)
{
    tg_node_id y = tg_build_unary(b, "relu", conv_bn(b, prefix, "conv1", "bn1", x, planes, 1, 1, 0));
    y = tg_build_unary(b, "relu", conv_bn(b, prefix, "conv2", "bn2", y, planes, 3, stride, 1));
    y = conv_bn(b, prefix, "conv3", "bn3", y, planes * 4, 1, 1, 0);
    y = tg_build_binary(b, "add", y, shortcut(b, prefix, x, planes * 4, stride));
    return tg_build_unary(b, "relu", y);
}

typedef tg_node_id (*block_fn)(tg_builder *, const char *, tg_node_id, int64_t, int64_t);

static tg_node_id resnet(tg_builder *b, tg_node_id x, const tg_model_options *o, block_fn block, const int *depths,
                         int64_t expansion)
{
    int small = o->small_input < 0 ? o->input_size <= 64 : o->small_input;
    if (small) {
        x = conv_bn(b, "", "conv1", "bn1", x, 64, 3, 1, 1);
        x = tg_build_unary(b, "relu", x);
    } else {
        x = conv_bn(b, "", "conv1", "bn1", x, 64, 7, 2, 3);
        x = tg_build_unary(b, "relu", x);
        static const char *const keys[] = {"kernel_size", "stride", "padding"};
        static const double values[] = {3, 2, 1};
        x = tg_build_op(b, "max_pool2d", &x, 1, 3, keys, values);
    }
    for (int stage = 0; stage < 4; stage++) {
        int64_t planes = 64 << stage;
        for (int i = 0; i < depths[stage]; i++) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "layer%d.%d.", stage + 1, i);
            x = block(b, prefix, x, planes, (stage > 0 && i == 0) ? 2 : 1);
        }
    }
    static const char *const pool_keys[] = {"output_size"};
    static const double pool_values[] = {1};
    x = tg_build_op(b, "adaptive_avg_pool2d", &x, 1, 1, pool_keys, pool_values);
    x = tg_build_unary(b, "flatten", x);
    if (o->dropout > 0) {
        static const char *const keys[] = {"p"};
        x = tg_build_op(b, "dropout", &x, 1, 1, keys, &o->dropout);
    }
    (void)expansion;
    return tg_build_linear(b, "fc", x, o->num_classes, 1);
}

tg_node_id tg_arch_resnet18(tg_builder *b, tg_node_id x, const tg_model_options *o)
{
    static const int depths[4] = {2, 2, 2, 2};
    return resnet(b, x, o, basic_block, depths, 1);
}

tg_node_id tg_arch_resnet34(tg_builder *b, tg_node_id x, const tg_model_options *o)
{
    static const int depths[4] = {3, 4, 6, 3};
    return resnet(b, x, o, basic_block, depths, 1);
}

tg_node_id tg_arch_resnet50(tg_builder *b, tg_node_id x, const tg_model_options *o)
{
    static const int depths[4] = {3, 4, 6, 3};
    return resnet(b, x, o, bottleneck, depths, 4);
}
