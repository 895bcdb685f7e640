/* unet.c: U-Net (Ronneberger et al.) for segmentation, and unet_se, the same with
 * squeeze-excitation, dropout and an extra conv before the output.
 *
 * unet: encoder levels enc1..enc4 of 64-128-256-512 channels, each two 3x3 conv (no bias)
 * + BatchNorm + ReLU, 2x2 max-pool between levels, a 1024-channel bottleneck, and decoder
 * levels dec1..dec4 (512..64) that upsample by 2 ("decN.up": conv_transpose2d 2x2 stride 2
 * by default, or bilinear x2 with align_corners then a 1x1 conv), concatenate the encoder's
 * skip [skip, upsampled] and apply the same double conv; "outc" is a 1x1 conv with bias
 * to the classes. Logits [N, classes, H, W] at the input's size; H and W must be
 * divisible by 16.
 *
 * unet_se adds a squeeze-excitation block "<level>.se" (global average pool, 1x1 conv
 * C -> C/16 + ReLU, 1x1 conv C/16 -> C + sigmoid, channel product; both convs with bias)
 * after the double conv of every encoder level, of the bottleneck and of dec1; dropout
 * (0.2 unless options->dropout >= 0) after every level's block; and "head.conv" (3x3,
 * 64 -> 64, no bias) + "head.bn" + ReLU before "outc".
 * Names are trugrade's own (no torchvision counterpart); tests/torch_seg_models.py has the
 * same module tree in PyTorch. */
#include <stdio.h>

#include "model.h"

#define UNET_BN_EPS 1e-5
#define UNET_BN_MOMENTUM 0.1
#define UNET_SE_REDUCTION 16
#define UNET_SE_DROPOUT 0.2

typedef struct unet_config {
    int se;            /* squeeze-excitation, dropout and the head conv (unet_se) */
    double dropout;    /* after each level's block; 0: none */
    int bilinear;      /* decoder upsampling: bilinear + 1x1 conv instead of a transposed conv */
} unet_config;

static tg_node_id conv_bn_relu(tg_builder *b, const char *level, const char *conv, const char *bn, tg_node_id x,
                               int64_t out)
{
    char conv_name[96], bn_name[96];
    snprintf(conv_name, sizeof conv_name, "%s.%s", level, conv);
    snprintf(bn_name, sizeof bn_name, "%s.%s", level, bn);
    x = tg_build_conv2d(b, conv_name, x, out, 3, 1, 1, 1, 0);
    x = tg_build_batchnorm2d(b, bn_name, x, UNET_BN_EPS, UNET_BN_MOMENTUM);
    return tg_build_unary(b, "relu", x);
}

/* x * sigmoid(fc2(relu(fc1(mean_hw(x))))), the gate [N, C, 1, 1] broadcast over H, W. */
static tg_node_id squeeze_excitation(tg_builder *b, const char *level, tg_node_id x)
{
    int64_t channels = tg_build_dim(b, x, 1);
    int64_t hidden = channels / UNET_SE_REDUCTION > 0 ? channels / UNET_SE_REDUCTION : 1;
    char fc1[96], fc2[96];
    snprintf(fc1, sizeof fc1, "%s.se.fc1", level);
    snprintf(fc2, sizeof fc2, "%s.se.fc2", level);
    static const char *const pool_keys[] = {"output_size"};
    static const double pool_values[] = {1};
    tg_node_id gate = tg_build_op(b, "adaptive_avg_pool2d", &x, 1, 1, pool_keys, pool_values);
    gate = tg_build_unary(b, "relu", tg_build_conv2d(b, fc1, gate, hidden, 1, 1, 0, 1, 1));
    gate = tg_build_unary(b, "sigmoid", tg_build_conv2d(b, fc2, gate, channels, 1, 1, 0, 1, 1));
    return tg_build_binary(b, "mul", x, gate);
}

/* A level's double conv, then (unet_se, where `se`) squeeze-excitation, then dropout. */
static tg_node_id level_block(tg_builder *b, const unet_config *c, const char *level, tg_node_id x, int64_t out,
                              int se)
{
    x = conv_bn_relu(b, level, "conv1", "bn1", x, out);
    x = conv_bn_relu(b, level, "conv2", "bn2", x, out);
    if (c->se && se) x = squeeze_excitation(b, level, x);
    if (c->dropout > 0) {
        static const char *const keys[] = {"p"};
        x = tg_build_op(b, "dropout", &x, 1, 1, keys, &c->dropout);
    }
    return x;
}

static tg_node_id upsample2(tg_builder *b, const unet_config *c, const char *level, tg_node_id x)
{
    char name[96];
    snprintf(name, sizeof name, "%s.up", level);
    int64_t half = tg_build_dim(b, x, 1) / 2;
    if (!c->bilinear) return tg_build_conv_transpose2d(b, name, x, half, 2, 2, 1);
    static const char *const keys[] = {"scale_factor", "align_corners"};
    static const double values[] = {2, 1};
    x = tg_build_op(b, "upsample_bilinear", &x, 1, 2, keys, values);
    return tg_build_conv2d(b, name, x, half, 1, 1, 0, 1, 1);
}

static tg_node_id unet(tg_builder *b, tg_node_id x, const tg_model_options *o, const unet_config *c)
{
    if (b->status != TG_STATUS_OK) return -1;
    if (tg_build_dim(b, x, 2) % 16 != 0 || tg_build_dim(b, x, 3) % 16 != 0) {
        b->status = tg_error(TG_STATUS_SHAPE, "unet: input height and width must be divisible by 16 (four 2x "
                             "poolings), got %lld x %lld; pad or crop the tiles", (long long)tg_build_dim(b, x, 2),
                             (long long)tg_build_dim(b, x, 3));
        return -1;
    }
    static const char *const pool_keys[] = {"kernel_size", "stride"};
    static const double pool_values[] = {2, 2};
    tg_node_id skips[4];
    for (int level = 0; level < 4; level++) {
        char name[16];
        snprintf(name, sizeof name, "enc%d", level + 1);
        skips[level] = level_block(b, c, name, x, 64 << level, 1);
        x = tg_build_op(b, "max_pool2d", &skips[level], 1, 2, pool_keys, pool_values);
    }
    x = level_block(b, c, "bottleneck", x, 1024, 1);
    for (int level = 0; level < 4; level++) {
        char name[16];
        snprintf(name, sizeof name, "dec%d", level + 1);
        tg_node_id in[2] = {skips[3 - level], upsample2(b, c, name, x)};
        static const char *const cat_keys[] = {"dim"};
        static const double cat_values[] = {1};
        x = tg_build_op(b, "concat", in, 2, 1, cat_keys, cat_values);
        x = level_block(b, c, name, x, 512 >> level, level == 0);
    }
    if (c->se) x = conv_bn_relu(b, "head", "conv", "bn", x, 64);
    return tg_build_conv2d(b, "outc", x, o->num_classes, 1, 1, 0, 1, 1);
}

tg_node_id tg_arch_unet(tg_builder *b, tg_node_id x, const tg_model_options *o)
{
    unet_config c = {.se = 0, .dropout = o->dropout > 0 ? o->dropout : 0.0,
                     .bilinear = o->upsample == TG_MODEL_UPSAMPLE_BILINEAR};
    return unet(b, x, o, &c);
}

tg_node_id tg_arch_unet_se(tg_builder *b, tg_node_id x, const tg_model_options *o)
{
    unet_config c = {.se = 1, .dropout = o->dropout >= 0 ? o->dropout : UNET_SE_DROPOUT,
                     .bilinear = o->upsample == TG_MODEL_UPSAMPLE_BILINEAR};
    return unet(b, x, o, &c);
}
