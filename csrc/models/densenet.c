/* densenet.c: DenseNet-121 with torchvision's layout and names: features.conv0 /
 * norm0 / pool0 stem, features.denseblockK.denselayerL (norm1-relu-conv1 1x1 to
 * 4 * growth, norm2-relu-conv2 3x3 to growth) on the concatenation of every
 * earlier feature map of the block, features.transitionK (norm-relu-conv 1x1
 * halving the channels, 2x2 average pool), features.norm5, relu, global average
 * pool, classifier (linear).
 *
 * Small inputs (options->small_input, or input_size <= 64 when it is -1): conv0 is
 * 3x3 stride 1 and pool0 is dropped, as for ResNet; names are unchanged.
 *
 * NOTE: each dense layer concatenates its block's features anew, as torchvision
 * does without memory_efficient; the graph's planner frees each concatenation
 * once its layer's backward has run.
 *
 * Not here: DenseNet-161/169/201, drop_rate inside dense layers. */
#include <math.h>
#include <stdio.h>

#include "model.h"

#define DENSENET_BN_EPS 1e-5
#define DENSENET_BN_MOMENTUM 0.1
#define DENSENET_GROWTH 32
#define DENSENET_BN_SIZE 4
#define DENSENET_MAX_LAYERS 24   /* per block; the concat takes at most this + 1 inputs */

/* A conv without bias, initialised as torchvision's DenseNet does (kaiming normal, fan-in). */
static tg_node_id conv(tg_builder *b, const char *name, tg_node_id x, int64_t out, int64_t kernel, int64_t stride,
                       int64_t padding)
{
    int64_t in = tg_build_dim(b, x, 1);
    x = tg_build_conv2d(b, name, x, out, kernel, stride, padding, 1, 0);
    char weight[200];
    snprintf(weight, sizeof weight, "%s.weight", name);
    tg_build_reinit(b, weight, 0.0, sqrt(2.0 / (double)(in * kernel * kernel)));
    return x;
}

static tg_node_id bn_relu(tg_builder *b, const char *name, tg_node_id x)
{
    return tg_build_unary(b, "relu", tg_build_batchnorm2d(b, name, x, DENSENET_BN_EPS, DENSENET_BN_MOMENTUM));
}

static tg_node_id concat(tg_builder *b, const tg_node_id *features, int count)
{
    if (count == 1) return features[0];
    static const char *const keys[] = {"dim"};
    static const double values[] = {1};
    return tg_build_op(b, "concat", features, count, 1, keys, values);
}

/* _DenseBlock "<prefix>": `layers` dense layers; returns the concatenation of the input and every layer's output. */
static tg_node_id dense_block(tg_builder *b, const char *prefix, tg_node_id x, int layers)
{
    tg_node_id features[DENSENET_MAX_LAYERS + 1];
    int count = 0;
    features[count++] = x;
    for (int l = 0; l < layers && l < DENSENET_MAX_LAYERS; l++) {
        char name[160];
        tg_node_id y = concat(b, features, count);
        snprintf(name, sizeof name, "%s.denselayer%d.norm1", prefix, l + 1);
        y = bn_relu(b, name, y);
        snprintf(name, sizeof name, "%s.denselayer%d.conv1", prefix, l + 1);
        y = conv(b, name, y, DENSENET_BN_SIZE * DENSENET_GROWTH, 1, 1, 0);
        snprintf(name, sizeof name, "%s.denselayer%d.norm2", prefix, l + 1);
        y = bn_relu(b, name, y);
        snprintf(name, sizeof name, "%s.denselayer%d.conv2", prefix, l + 1);
        features[count++] = conv(b, name, y, DENSENET_GROWTH, 3, 1, 1);
    }
    return concat(b, features, count);
}

tg_node_id tg_arch_densenet121(tg_builder *b, tg_node_id x, const tg_model_options *o)
{
    static const int block_layers[4] = {6, 12, 24, 16};
    int small = o->small_input < 0 ? o->input_size <= 64 : o->small_input;
    if (small) {
        x = bn_relu(b, "features.norm0", conv(b, "features.conv0", x, 64, 3, 1, 1));
    } else {
        x = bn_relu(b, "features.norm0", conv(b, "features.conv0", x, 64, 7, 2, 3));
        x = tg_build_max_pool2d(b, x, 3, 2, 1);
    }
    for (int k = 0; k < 4; k++) {
        char name[64];
        snprintf(name, sizeof name, "features.denseblock%d", k + 1);
        x = dense_block(b, name, x, block_layers[k]);
        if (k == 3) break;
        snprintf(name, sizeof name, "features.transition%d.norm", k + 1);
        x = bn_relu(b, name, x);
        snprintf(name, sizeof name, "features.transition%d.conv", k + 1);
        x = conv(b, name, x, tg_build_dim(b, x, 1) / 2, 1, 1, 0);
        x = tg_build_avg_pool2d(b, x, 2, 2);
    }
    x = bn_relu(b, "features.norm5", x);
    x = tg_build_unary(b, "flatten", tg_build_unary(b, "global_avg_pool", x));
    x = tg_build_dropout(b, x, o->dropout);
    x = tg_build_linear(b, "classifier", x, o->num_classes, 1);
    tg_build_reinit(b, "classifier.bias", 0.0, 0.0); /* torchvision: zero bias */
    return x;
}
