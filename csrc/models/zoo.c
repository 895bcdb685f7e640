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
        int64_t target_shape[1] = {2};
        status = tg_graph_input(&model->graph, "target", TG_DTYPE_I64, 1, target_shape, &model->target);
    }
    if (status == TG_STATUS_OK) {
        model->loss = tg_build_binary(&b, "cross_entropy", model->output, model->target);
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
