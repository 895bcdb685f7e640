/* zoo.c: the table of architectures and model creation around them. */
#include <stdio.h>
#include <string.h>

#include "model.h"

static const tg_arch arch_table[] = {
    {"resnet18", tg_arch_resnet18, "ResNet-18 (torchvision names)"},
    {"resnet34", tg_arch_resnet34, "ResNet-34 (torchvision names)"},
    {"resnet50", tg_arch_resnet50, "ResNet-50 (torchvision names)"},
    {"efficientnet_b0", tg_arch_efficientnet_b0, "EfficientNet-B0 (torchvision names)"},
    {"densenet121", tg_arch_densenet121, "DenseNet-121 (torchvision names)"},
    {"vgg16", tg_arch_vgg16, "VGG-16 (torchvision names)"},
    {"vgg16_bn", tg_arch_vgg16_bn, "VGG-16 with BatchNorm (torchvision names)"},
    {"mobilenet_v3_small", tg_arch_mobilenet_v3_small, "MobileNetV3-Small (torchvision names)"},
    {"smallcnn", tg_arch_smallcnn, "conv32-relu-pool-conv64-relu-pool-fc128-fc: the speed reference"},
    {"fashioncnn", tg_arch_fashioncnn, "a small BatchNorm CNN for 28x28 gray images (Fashion-MNIST)"},
    {"unet", tg_arch_unet, "U-Net 64-128-256-512, bottleneck 1024 (segmentation)"},
    {"unet_se", tg_arch_unet_se, "U-Net with squeeze-excitation, BatchNorm and dropout 0.2 (segmentation)"},
    {"deeplabv3plus", tg_arch_deeplabv3plus, "DeepLabV3+ over a ResNet encoder 'backbone.' (segmentation)"},
    {"fpn", tg_arch_fpn, "feature pyramid network over a ResNet encoder 'backbone.' (segmentation)"},
};

int tg_arch_count(void) { return (int)(sizeof arch_table / sizeof arch_table[0]); }

const tg_arch *tg_arch_at(int index) { return index >= 0 && index < tg_arch_count() ? &arch_table[index] : NULL; }

const tg_arch *tg_arch_find(const char *name)
{
    for (int i = 0; i < tg_arch_count(); i++)
        if (strcmp(arch_table[i].name, name) == 0) return &arch_table[i];
    return NULL;
}

void tg_model_options_default(tg_model_options *options)
{
    options->num_classes = 1000;
    options->in_channels = 3;
    options->input_size = 224;
    options->dropout = -1.0;
    options->small_input = -1;
    options->drop_path = -1.0;
    options->seed = 0;
    options->encoder[0] = '\0';
    options->upsample = TG_MODEL_UPSAMPLE_TRANSPOSE;
    options->loss_ce = 1.0;
    options->loss_dice = 0.0;
    options->loss_focal = 0.0;
    options->focal_gamma = 2.0;
    options->focal_alpha = -1.0;
    options->dice_smooth = 1.0;
    options->label_smoothing = 0.0;
    options->n_class_weights = 0;
}

static tg_status check_loss_options(const char *arch, const tg_model_options *o)
{
    if (!(o->loss_ce >= 0.0 && o->loss_dice >= 0.0 && o->loss_focal >= 0.0) ||
        !(o->loss_ce + o->loss_dice + o->loss_focal > 0.0))
        return tg_error(TG_STATUS_VALUE, "%s: loss weights must be >= 0 with a positive sum, got ce %g, dice %g, focal %g",
                        arch, o->loss_ce, o->loss_dice, o->loss_focal);
    if (!(o->focal_gamma >= 0.0))
        return tg_error(TG_STATUS_VALUE, "%s: focal gamma must be >= 0, got %g", arch, o->focal_gamma);
    if (!(o->focal_alpha <= 1.0))
        return tg_error(TG_STATUS_VALUE, "%s: focal alpha must be in [0, 1] (the foreground classes' weight) or "
                        "negative for none, got %g", arch, o->focal_alpha);
    if (!(o->dice_smooth >= 0.0))
        return tg_error(TG_STATUS_VALUE, "%s: dice smooth must be >= 0, got %g", arch, o->dice_smooth);
    if (!(o->label_smoothing >= 0.0 && o->label_smoothing < 1.0))
        return tg_error(TG_STATUS_VALUE, "%s: label_smoothing must be in [0, 1), got %g", arch, o->label_smoothing);
    if (o->label_smoothing > 0.0 && !(o->loss_ce > 0.0))
        return tg_error(TG_STATUS_VALUE, "%s: label_smoothing %g applies to the cross-entropy term, which this loss "
                        "does not have; add a cross-entropy term or set label_smoothing 0", arch, o->label_smoothing);
    if (o->n_class_weights != 0 && o->n_class_weights != o->num_classes)
        return tg_error(TG_STATUS_VALUE, "%s: class_weights needs one weight per class (%lld), got %lld", arch,
                        (long long)o->num_classes, (long long)o->n_class_weights);
    if (o->n_class_weights > TG_MODEL_MAX_CLASS_WEIGHTS)
        return tg_error(TG_STATUS_VALUE, "%s: class_weights supports at most %d classes, got %lld", arch,
                        TG_MODEL_MAX_CLASS_WEIGHTS, (long long)o->n_class_weights);
    if (o->upsample != TG_MODEL_UPSAMPLE_TRANSPOSE && o->upsample != TG_MODEL_UPSAMPLE_BILINEAR)
        return tg_error(TG_STATUS_VALUE, "%s: upsample must be 0 (transposed conv) or 1 (bilinear), got %d", arch,
                        o->upsample);
    return TG_STATUS_OK;
}

/* One term of the loss times its weight (no scale node for weight 1), added to `sum` (-1: none yet). */
static tg_node_id add_loss_term(tg_builder *b, tg_node_id sum, tg_node_id term, double weight)
{
    if (weight != 1.0) {
        static const char *const keys[] = {"factor"};
        term = tg_build_op(b, "scale", &term, 1, 1, keys, &weight);
    }
    return sum < 0 ? term : tg_build_binary(b, "add", sum, term);
}

/* NOTE: the class weights weight the cross-entropy term only; dice is unweighted and
 * focal has its own alpha (foreground alpha, background 1 - alpha), so 0.4 dice + 0.4 focal + 0.2 wCE is the usual imbalance recipe. The
 * weights are the buffer "loss.class_weight" (saved and loaded with the model). */
static tg_node_id build_loss(tg_builder *b, tg_model *model, const tg_model_options *o)
{
    tg_node_id loss = -1;
    if (o->loss_ce > 0.0) {
        tg_node_id weight = -1;
        if (o->n_class_weights > 0) {
            tg_status status = tg_graph_buffer(b->graph, "loss.class_weight", TG_DTYPE_F32, 1, &o->n_class_weights,
                                               &weight);
            if (status != TG_STATUS_OK) {
                b->status = status;
                return -1;
            }
            float *data = b->graph->nodes[weight].value.data;
            for (int64_t k = 0; k < o->n_class_weights; k++) data[k] = o->class_weights[k];
        }
        tg_node_id in[3] = {model->output, model->target, weight};
        static const char *const keys[] = {"label_smoothing"};
        int n_attrs = o->label_smoothing > 0.0 ? 1 : 0;
        loss = add_loss_term(b, loss, tg_build_op(b, "cross_entropy", in, 3, n_attrs, keys, &o->label_smoothing),
                             o->loss_ce);
    }
    if (o->loss_dice > 0.0) {
        static const char *const keys[] = {"smooth"};
        tg_node_id in[2] = {model->output, model->target};
        loss = add_loss_term(b, loss, tg_build_op(b, "dice_loss", in, 2, 1, keys, &o->dice_smooth), o->loss_dice);
    }
    if (o->loss_focal > 0.0) {
        static const char *const keys[] = {"gamma", "alpha"};
        const double values[2] = {o->focal_gamma, o->focal_alpha < 0.0 ? -1.0 : o->focal_alpha};
        tg_node_id in[2] = {model->output, model->target};
        loss = add_loss_term(b, loss, tg_build_op(b, "softmax_focal_loss", in, 2, 2, keys, values), o->loss_focal);
    }
    return loss;
}

static tg_status unknown_arch(const char *name)
{
    char known[512] = "";
    for (int i = 0; i < tg_arch_count(); i++) {
        strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
        strncat(known, arch_table[i].name, sizeof known - strlen(known) - 1);
    }
    return tg_error(TG_STATUS_VALUE, "unknown architecture '%s'; known: %s", name, known);
}

tg_status tg_model_create(tg_model *model, const char *arch, const tg_model_options *options)
{
    memset(model, 0, sizeof *model);
    tg_graph_init(&model->graph);
    const tg_arch *entry = tg_arch_find(arch);
    if (!entry) return unknown_arch(arch);
    if (options->num_classes < 1 || options->in_channels < 1 || options->input_size < 1)
        return tg_error(TG_STATUS_VALUE, "%s: num_classes, in_channels and input_size must be >= 1 (got %lld, %lld, %lld)",
                        arch, (long long)options->num_classes, (long long)options->in_channels,
                        (long long)options->input_size);
    tg_status checked = check_loss_options(arch, options);
    if (checked != TG_STATUS_OK) return checked;
    model->options = *options;
    snprintf(model->arch, sizeof model->arch, "%s", arch);
    tg_builder b;
    tg_builder_init(&b, &model->graph, options->seed);
    int64_t shape[4] = {2, options->in_channels, options->input_size, options->input_size};
    tg_status status = tg_graph_input(&model->graph, "input", TG_DTYPE_F32, 4, shape, &model->input);
    if (status == TG_STATUS_OK) {
        model->output = entry->build(&b, model->input, options);
        status = tg_builder_finish(&b);
    }
    if (status == TG_STATUS_OK) {
        /* labels [N] for logits [N, C]; masks [N, H, W] for logits [N, C, H, W] */
        const tg_tensor *logits = &model->graph.nodes[model->output].value;
        int64_t target_shape[TG_MAX_DIMS] = {logits->shape[0]};
        for (int d = 2; d < logits->ndim; d++) target_shape[d - 1] = logits->shape[d];
        int target_ndim = logits->ndim > 1 ? logits->ndim - 1 : 1;
        status = tg_graph_input(&model->graph, "target", TG_DTYPE_I64, target_ndim, target_shape, &model->target);
    }
    if (status == TG_STATUS_OK) {
        model->loss = build_loss(&b, model, options);
        status = tg_builder_finish(&b);
    }
    if (status == TG_STATUS_OK) status = tg_graph_keep(&model->graph, model->output);
    if (status != TG_STATUS_OK) tg_graph_free(&model->graph);
    return status;
}

void tg_model_free(tg_model *model) { tg_graph_free(&model->graph); }

int64_t tg_model_parameter_count(const tg_model *model)
{
    int64_t total = 0;
    for (int i = 0; i < model->graph.n_nodes; i++)
        if (model->graph.nodes[i].kind == TG_NODE_KIND_PARAM) total += tg_tensor_numel(&model->graph.nodes[i].value);
    return total;
}
