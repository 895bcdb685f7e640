/* vgg.c: VGG-16 and VGG-16-BN with torchvision's layout and names: features.N
 * (conv3x3 with bias [, batchnorm], relu; 2x2 max-pools between the five stages,
 * numbered as torchvision's nn.Sequential), adaptive average pool to 7x7,
 * classifier.0 (linear 4096), relu, dropout, classifier.3 (linear 4096), relu,
 * dropout, classifier.6 (linear). Dropout 0.5 unless options->dropout says.
 *
 * NOTE: the 7x7 pool makes the classifier's 25088 inputs independent of the input
 * size; inputs smaller than 224 are pooled up (PyTorch's adaptive windows repeat).
 *
 * Not here: VGG-11/13/19. */
#include <stdio.h>

#include "model.h"

#define VGG_DROPOUT 0.5
#define VGG_POOL (-1)

static tg_node_id vgg16(tg_builder *b, tg_node_id x, const tg_model_options *o, int batch_norm)
{
    static const int config[18] = {64, 64, VGG_POOL, 128, 128, VGG_POOL, 256, 256, 256, VGG_POOL,
                                   512, 512, 512, VGG_POOL, 512, 512, 512, VGG_POOL};
    int index = 0;
    for (int i = 0; i < 18; i++) {
        char name[32];
        if (config[i] == VGG_POOL) {
            x = tg_build_max_pool2d(b, x, 2, 2, 0);
            index++;
            continue;
        }
        snprintf(name, sizeof name, "features.%d", index++);
        x = tg_build_conv2d(b, name, x, config[i], 3, 1, 1, 1, 1);
        char bias[48];
        snprintf(bias, sizeof bias, "%s.bias", name);
        tg_build_reinit(b, bias, 0.0, 0.0); /* torchvision: zero conv biases */
        if (batch_norm) {
            snprintf(name, sizeof name, "features.%d", index++);
            x = tg_build_batchnorm2d(b, name, x, 1e-5, 0.1);
        }
        x = tg_build_unary(b, "relu", x);
        index++;
    }
    double p = o->dropout < 0 ? VGG_DROPOUT : o->dropout;
    x = tg_build_unary(b, "flatten", tg_build_adaptive_avg_pool2d(b, x, 7));
    /* torchvision: linear weights normal(0, 0.01), zero biases */
    x = tg_build_dropout(b, tg_build_unary(b, "relu", tg_build_linear_init(b, "classifier.0", x, 4096, 0.0, 0.01)), p);
    x = tg_build_dropout(b, tg_build_unary(b, "relu", tg_build_linear_init(b, "classifier.3", x, 4096, 0.0, 0.01)), p);
    x = tg_build_linear_init(b, "classifier.6", x, o->num_classes, 0.0, 0.01);
    return x;
}

tg_node_id tg_arch_vgg16(tg_builder *b, tg_node_id x, const tg_model_options *o) { return vgg16(b, x, o, 0); }

tg_node_id tg_arch_vgg16_bn(tg_builder *b, tg_node_id x, const tg_model_options *o) { return vgg16(b, x, o, 1); }
