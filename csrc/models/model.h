/* model.h: a model is a graph with a named input, an output (logits), a target
 * input and a loss, built by an architecture of the zoo (zoo.c).
 * Parameter names and counts are torchvision's for the same configuration. */
#ifndef TG_MODEL_H
#define TG_MODEL_H

#include <stdint.h>

#include "../core/graph.h"
#include "builder.h"

#define TG_MODEL_MAX_CLASS_WEIGHTS 256

typedef enum tg_model_upsample {
    TG_MODEL_UPSAMPLE_TRANSPOSE = 0,   /* conv_transpose2d 2x2 stride 2 (the default) */
    TG_MODEL_UPSAMPLE_BILINEAR = 1,    /* bilinear x2 (align_corners) then a 1x1 conv */
} tg_model_upsample;

typedef struct tg_model_options {
    int64_t num_classes;   /* default 1000 */
    int64_t in_channels;   /* default 3 */
    int64_t input_size;    /* square H = W the graph is first shaped for; default 224 */
    double dropout;        /* head dropout where the architecture has one; < 0: its own default */
    int small_input;       /* ResNet, DenseNet: 3x3 stride-1 stem, no max-pool; -1: auto (input_size <= 64) */
    double drop_path;      /* EfficientNet stochastic depth (training only); < 0: its own default (0.2) */
    uint64_t seed;         /* parameter initialisation */
    /* segmentation architectures */
    char encoder[16];      /* deeplabv3plus, fpn: resnet18, resnet34 or resnet50; "": resnet34 */
    int upsample;          /* unet, unet_se: a tg_model_upsample */
    /* the loss: loss_ce * cross_entropy(class_weights) + loss_dice * dice_loss(smooth = dice_smooth)
     * + loss_focal * softmax_focal_loss(gamma = focal_gamma, alpha = focal_alpha); default 1, 0, 0
     * (plain cross-entropy), gamma 2, alpha -1 (none), smooth 1 */
    double loss_ce, loss_dice, loss_focal, focal_gamma, focal_alpha, dice_smooth;
    double label_smoothing;                            /* of the cross-entropy term, in [0, 1); default 0 */
    int64_t n_class_weights;                           /* 0: none; else num_classes */
    float class_weights[TG_MODEL_MAX_CLASS_WEIGHTS];   /* cross-entropy weights, buffer "loss.class_weight" */
} tg_model_options;

/* Defaults as documented on each field. */
void tg_model_options_default(tg_model_options *options);

typedef struct tg_model {
    tg_graph graph;
    tg_node_id input;      /* float32 [N, in_channels, H, W] */
    tg_node_id output;     /* float32 logits [N, classes] (or [N, classes, H, W]) */
    tg_node_id target;     /* int64 labels [N] (or masks [N, H, W]) */
    tg_node_id loss;       /* scalar */
    char arch[32];
    tg_model_options options;
} tg_model;

/* An architecture's body: from the input node, returns the logits node. */
typedef tg_node_id (*tg_arch_build_fn)(tg_builder *b, tg_node_id input, const tg_model_options *options);

typedef struct tg_arch {
    const char *name;
    tg_arch_build_fn build;
    const char *summary;
} tg_arch;

int tg_arch_count(void);
const tg_arch *tg_arch_at(int index);
const tg_arch *tg_arch_find(const char *name);

/* Builds `arch` into `model` (a batch of 2 at options->input_size), with the loss
 * the options describe (cross-entropy by default). The target is int64 labels [N]
 * for logits [N, classes], masks [N, H, W] for logits [N, classes, H, W]. TG_STATUS_VALUE naming the known architectures when the
 * name is unknown; on failure nothing stays allocated. */
tg_status tg_model_create(tg_model *model, const char *arch, const tg_model_options *options);
void tg_model_free(tg_model *model);

/* Trainable parameter count (buffers excluded), as torchvision counts. */
int64_t tg_model_parameter_count(const tg_model *model);

/* Freezes (frozen = 1) or unfreezes the parameters that `pattern` matches: an
 * fnmatch glob over names ("layer1.*", "*.bn*"), a module or stage prefix
 * ("layer1", "features.3", "features.denseblock1", "classifier"), or "stem" (the
 * architecture's first conv and norm). *matched (may be NULL) gets the count.
 * A batchnorm whose weight and bias are both frozen then runs in eval mode in
 * training steps too (tg_graph_set_force_eval): its running statistics stay
 * unchanged. The graph replans on its next run. (freeze.c) */
tg_status tg_model_freeze(tg_model *model, const char *pattern, int frozen, int *matched);

/* Architectures (resnet.c, efficientnet.c, densenet.c, vgg.c, mobilenet.c, small.c). */
tg_node_id tg_arch_resnet18(tg_builder *b, tg_node_id x, const tg_model_options *o);
tg_node_id tg_arch_resnet34(tg_builder *b, tg_node_id x, const tg_model_options *o);
tg_node_id tg_arch_resnet50(tg_builder *b, tg_node_id x, const tg_model_options *o);
tg_node_id tg_arch_efficientnet_b0(tg_builder *b, tg_node_id x, const tg_model_options *o);
tg_node_id tg_arch_densenet121(tg_builder *b, tg_node_id x, const tg_model_options *o);
tg_node_id tg_arch_vgg16(tg_builder *b, tg_node_id x, const tg_model_options *o);
tg_node_id tg_arch_vgg16_bn(tg_builder *b, tg_node_id x, const tg_model_options *o);
tg_node_id tg_arch_mobilenet_v3_small(tg_builder *b, tg_node_id x, const tg_model_options *o);
tg_node_id tg_arch_smallcnn(tg_builder *b, tg_node_id x, const tg_model_options *o);
tg_node_id tg_arch_fashioncnn(tg_builder *b, tg_node_id x, const tg_model_options *o);
/* Segmentation (unet.c, deeplab.c, fpn.c): logits [N, classes, H, W] at the input's size. */
tg_node_id tg_arch_unet(tg_builder *b, tg_node_id x, const tg_model_options *o);
tg_node_id tg_arch_unet_se(tg_builder *b, tg_node_id x, const tg_model_options *o);
tg_node_id tg_arch_deeplabv3plus(tg_builder *b, tg_node_id x, const tg_model_options *o);
tg_node_id tg_arch_fpn(tg_builder *b, tg_node_id x, const tg_model_options *o);

/* The ResNet trunk (resnet.c) as an encoder named "<prefix>conv1", "<prefix>layer1.0.conv1", ...
 * (torchvision's names under prefix): stages[i] and channels[i] are layer(i+1)'s output
 * (strides 4, 8, 16, 32; 16 for layer4 with dilate_last). encoder: resnet18, resnet34 or
 * resnet50. Returns 0, or -1 with the builder's status set. */
int tg_build_resnet_encoder(tg_builder *b, tg_node_id x, const char *encoder, const char *prefix, int dilate_last,
                            tg_node_id stages[4], int64_t channels[4]);

#endif
