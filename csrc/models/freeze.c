/* freeze.c: freezing a model's parameters by name pattern or stage name, and
 * pinning the batchnorm layers whose parameters are all frozen to eval mode.
 * Not here: optimizer state (an optimizer takes the parameters trainable when it
 * is created; freeze before creating it). */
#include <fnmatch.h>
#include <string.h>

#include "model.h"

/* The parameter-name prefixes of each architecture's stem (its first conv and norm). */
typedef struct stem_prefixes {
    const char *arch;
    const char *prefixes[3];
} stem_prefixes;

static const stem_prefixes stems[] = {
    {"resnet18", {"conv1", "bn1", NULL}},
    {"resnet34", {"conv1", "bn1", NULL}},
    {"resnet50", {"conv1", "bn1", NULL}},
    {"efficientnet_b0", {"features.0", NULL, NULL}},
    {"mobilenet_v3_small", {"features.0", NULL, NULL}},
    {"densenet121", {"features.conv0", "features.norm0", NULL}},
    {"vgg16", {"features.0", NULL, NULL}},
    {"vgg16_bn", {"features.0", "features.1", NULL}},
    {"smallcnn", {"conv1", NULL, NULL}},
    {"fashioncnn", {"features.0", "features.1", NULL}},
};

/* 1 when `name` is `prefix` itself or lies under it ("layer1" covers "layer1.0.conv1.weight"). */
static int under_prefix(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(name, prefix, n) == 0 && (name[n] == '\0' || name[n] == '.');
}

static int pattern_matches(const tg_model *model, const char *pattern, const char *name)
{
    if (strcmp(pattern, "stem") == 0) {
        for (size_t i = 0; i < sizeof stems / sizeof stems[0]; i++) {
            if (strcmp(stems[i].arch, model->arch) != 0) continue;
            for (int k = 0; k < 3 && stems[i].prefixes[k]; k++)
                if (under_prefix(name, stems[i].prefixes[k])) return 1;
        }
        return 0;
    }
    return fnmatch(pattern, name, 0) == 0 || under_prefix(name, pattern);
}

/* A batchnorm runs in eval mode when it has parameters and none is trainable. */
static tg_status update_frozen_norms(tg_model *model)
{
    tg_graph *graph = &model->graph;
    for (int i = 0; i < graph->n_nodes; i++) {
        tg_node *node = &graph->nodes[i];
        if (node->kind != TG_NODE_KIND_OP || strncmp(node->op->name, "batchnorm2d", 11) != 0) continue;
        int params = 0, trainable = 0;
        for (int k = 1; k < node->n_in && k <= 2; k++) {
            if (node->in[k] < 0 || graph->nodes[node->in[k]].kind != TG_NODE_KIND_PARAM) continue;
            params++;
            trainable += graph->nodes[node->in[k]].requires_grad;
        }
        TG_TRY(tg_graph_set_force_eval(graph, i, params > 0 && trainable == 0));
    }
    return TG_STATUS_OK;
}

tg_status tg_model_freeze(tg_model *model, const char *pattern, int frozen, int *matched)
{
    tg_graph *graph = &model->graph;
    int count = 0;
    for (int i = 0; i < graph->n_nodes; i++) {
        tg_node *node = &graph->nodes[i];
        if (node->kind != TG_NODE_KIND_PARAM || !pattern_matches(model, pattern, node->name)) continue;
        TG_TRY(tg_graph_set_requires_grad(graph, i, !frozen));
        count++;
    }
    if (matched) *matched = count;
    return update_frozen_norms(model);
}
