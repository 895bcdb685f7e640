/* resnet.c: ResNet-18/34 (basic blocks) and ResNet-50 (bottlenecks), torchvision's
 * layout and names; optional small-input stem (3x3 stride 1, no max-pool); and the
 * same trunk as a segmentation encoder (tg_build_resnet_encoder). */
#include <stdio.h>
#include <string.h>

#include "model.h"

#define BN_EPS 1e-5
#define BN_MOMENTUM 0.1

static tg_node_id conv_bn(tg_builder *b, const char *prefix, const char *conv, const char *bn, tg_node_id x,
                          int64_t out, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation)
{
    char conv_name[160], bn_name[160];
    snprintf(conv_name, sizeof conv_name, "%s%s", prefix, conv);
    snprintf(bn_name, sizeof bn_name, "%s%s", prefix, bn);
    x = tg_build_conv2d_dilated(b, conv_name, x, out, kernel, stride, padding, dilation, 1, 0);
    return tg_build_batchnorm2d(b, bn_name, x, BN_EPS, BN_MOMENTUM);
}

/* The shortcut: identity, or conv1x1 + bn ("downsample.0", "downsample.1") when the shape changes. */
static tg_node_id shortcut(tg_builder *b, const char *prefix, tg_node_id x, int64_t out, int64_t stride)
{
    if (stride == 1 && tg_build_dim(b, x, 1) == out) return x;
    return conv_bn(b, prefix, "downsample.0", "downsample.1", x, out, 1, stride, 0, 1);
}

/* NOTE: dilation > 1 dilates every 3x3 conv of the block (segmentation_models_pytorch's
 * replace_strides_with_dilation); torchvision's BasicBlock has no dilation. */
static tg_node_id basic_block(tg_builder *b, const char *prefix, tg_node_id x, int64_t planes, int64_t stride,
                              int64_t dilation)
{
    tg_node_id y = conv_bn(b, prefix, "conv1", "bn1", x, planes, 3, stride, dilation, dilation);
    y = tg_build_unary(b, "relu", y);
    y = conv_bn(b, prefix, "conv2", "bn2", y, planes, 3, 1, dilation, dilation);
    y = tg_build_binary(b, "add", y, shortcut(b, prefix, x, planes, stride));
    return tg_build_unary(b, "relu", y);
}

static tg_node_id bottleneck(tg_builder *b, const char *prefix, tg_node_id x, int64_t planes, int64_t stride,
                             int64_t dilation)
{
    tg_node_id y = tg_build_unary(b, "relu", conv_bn(b, prefix, "conv1", "bn1", x, planes, 1, 1, 0, 1));
    y = tg_build_unary(b, "relu", conv_bn(b, prefix, "conv2", "bn2", y, planes, 3, stride, dilation, dilation));
    y = conv_bn(b, prefix, "conv3", "bn3", y, planes * 4, 1, 1, 0, 1);
    y = tg_build_binary(b, "add", y, shortcut(b, prefix, x, planes * 4, stride));
    return tg_build_unary(b, "relu", y);
}

typedef tg_node_id (*block_fn)(tg_builder *, const char *, tg_node_id, int64_t, int64_t, int64_t);

/* Stem and layer1..layer4 under `prefix`; stages[i] gets layer(i+1)'s output. With
 * dilate_last, layer4 keeps stride 1 and dilates its 3x3 convs by 2 (output stride 16). */
static tg_node_id resnet_trunk(tg_builder *b, tg_node_id x, const char *prefix, int small, block_fn block,
                               const int *depths, int dilate_last, tg_node_id *stages)
{
    if (small) {
        x = conv_bn(b, prefix, "conv1", "bn1", x, 64, 3, 1, 1, 1);
        x = tg_build_unary(b, "relu", x);
    } else {
        x = conv_bn(b, prefix, "conv1", "bn1", x, 64, 7, 2, 3, 1);
        x = tg_build_unary(b, "relu", x);
        static const char *const keys[] = {"kernel_size", "stride", "padding"};
        static const double values[] = {3, 2, 1};
        x = tg_build_op(b, "max_pool2d", &x, 1, 3, keys, values);
    }
    for (int stage = 0; stage < 4; stage++) {
        int64_t planes = 64 << stage;
        int dilated = dilate_last && stage == 3;
        for (int i = 0; i < depths[stage]; i++) {
            char block_prefix[96];
            snprintf(block_prefix, sizeof block_prefix, "%slayer%d.%d.", prefix, stage + 1, i);
            int64_t stride = (stage > 0 && i == 0 && !dilated) ? 2 : 1;
            x = block(b, block_prefix, x, planes, stride, dilated ? 2 : 1);
        }
        if (stages) stages[stage] = x;
    }
    return x;
}

static tg_node_id resnet(tg_builder *b, tg_node_id x, const tg_model_options *o, block_fn block, const int *depths)
{
    int small = o->small_input < 0 ? o->input_size <= 64 : o->small_input;
    x = resnet_trunk(b, x, "", small, block, depths, 0, NULL);
    static const char *const pool_keys[] = {"output_size"};
    static const double pool_values[] = {1};
    x = tg_build_op(b, "adaptive_avg_pool2d", &x, 1, 1, pool_keys, pool_values);
    x = tg_build_unary(b, "flatten", x);
    if (o->dropout > 0) {
        static const char *const keys[] = {"p"};
        x = tg_build_op(b, "dropout", &x, 1, 1, keys, &o->dropout);
    }
    return tg_build_linear(b, "fc", x, o->num_classes, 1);
}

static const int resnet18_depths[4] = {2, 2, 2, 2};
static const int resnet34_depths[4] = {3, 4, 6, 3};

int tg_build_resnet_encoder(tg_builder *b, tg_node_id x, const char *encoder, const char *prefix, int dilate_last,
                            tg_node_id stages[4], int64_t channels[4])
{
    block_fn block = basic_block;
    const int *depths = resnet18_depths;
    int64_t expansion = 1;
    if (strcmp(encoder, "resnet34") == 0) {
        depths = resnet34_depths;
    } else if (strcmp(encoder, "resnet50") == 0) {
        depths = resnet34_depths;
        block = bottleneck;
        expansion = 4;
    } else if (strcmp(encoder, "resnet18") != 0) {
        if (b->status == TG_STATUS_OK)
            b->status = tg_error(TG_STATUS_VALUE, "segmentation encoder '%s' is unknown; use resnet18, resnet34 or "
                                 "resnet50", encoder);
        return -1;
    }
    for (int i = 0; i < 4; i++) channels[i] = (64 << i) * expansion;
    resnet_trunk(b, x, prefix, 0, block, depths, dilate_last, stages);
    return b->status == TG_STATUS_OK ? 0 : -1;
}

tg_node_id tg_arch_resnet18(tg_builder *b, tg_node_id x, const tg_model_options *o)
{
    return resnet(b, x, o, basic_block, resnet18_depths);
}

tg_node_id tg_arch_resnet34(tg_builder *b, tg_node_id x, const tg_model_options *o)
{
    return resnet(b, x, o, basic_block, resnet34_depths);
}

tg_node_id tg_arch_resnet50(tg_builder *b, tg_node_id x, const tg_model_options *o)
{
    return resnet(b, x, o, bottleneck, resnet34_depths);
}
