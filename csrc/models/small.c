/* small.c: small CNNs for 28x28-class inputs: smallcnn (the speed reference, exactly
 * conv3x3(32)-relu-pool-conv3x3(64)-relu-pool-flatten-linear(128)-relu-linear) and
 * fashioncnn (trugrade's own design for accuracy on Fashion-MNIST). */
#include <stdio.h>

#include "model.h"

static tg_node_id pool2(tg_builder *b, tg_node_id x)
{
    static const char *const keys[] = {"kernel_size", "stride"};
    static const double values[] = {2, 2};
    return tg_build_op(b, "max_pool2d", &x, 1, 2, keys, values);
}

static tg_node_id dropout(tg_builder *b, tg_node_id x, double p)
{
    if (p <= 0) return x;
    static const char *const keys[] = {"p"};
    return tg_build_op(b, "dropout", &x, 1, 1, keys, &p);
}

tg_node_id tg_arch_smallcnn(tg_builder *b, tg_node_id x, const tg_model_options *o)
{
    x = pool2(b, tg_build_unary(b, "relu", tg_build_conv2d(b, "conv1", x, 32, 3, 1, 1, 1, 1)));
    x = pool2(b, tg_build_unary(b, "relu", tg_build_conv2d(b, "conv2", x, 64, 3, 1, 1, 1, 1)));
    x = tg_build_unary(b, "flatten", x);
    x = tg_build_unary(b, "relu", tg_build_linear(b, "fc1", x, 128, 1));
    x = dropout(b, x, o->dropout);
    return tg_build_linear(b, "fc2", x, o->num_classes, 1);
}

/* Two conv-bn-relu pairs per stage (32, then 64 channels), max-pool after each stage,
 * then a 256-unit head with dropout (0.3 by default). */
tg_node_id tg_arch_fashioncnn(tg_builder *b, tg_node_id x, const tg_model_options *o)
{
    static const int64_t widths[2] = {32, 64};
    int layer = 0;
    for (int stage = 0; stage < 2; stage++) {
        for (int i = 0; i < 2; i++, layer++) {
            char conv[32], bn[32];
            snprintf(conv, sizeof conv, "features.%d", 3 * layer);
            snprintf(bn, sizeof bn, "features.%d", 3 * layer + 1);
            x = tg_build_conv2d(b, conv, x, widths[stage], 3, 1, 1, 1, 0);
            x = tg_build_unary(b, "relu", tg_build_batchnorm2d(b, bn, x, 1e-5, 0.1));
        }
        x = pool2(b, x);
    }
    x = tg_build_unary(b, "flatten", x);
    x = tg_build_unary(b, "relu", tg_build_linear(b, "classifier.0", x, 256, 1));
    x = dropout(b, x, o->dropout < 0 ? 0.3 : o->dropout);
    return tg_build_linear(b, "classifier.3", x, o->num_classes, 1);
}
