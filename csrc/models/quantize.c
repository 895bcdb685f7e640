/* quantize.c: calibration and the int8 rewrite of a model (quantize.h).
 * Not here: the int8 kernels (ops/qgemm.c, ops/quantized.c). */
#include "quantize.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- reading and writing op attrs by keyword (the attrs structs are private to their ops) ---- */

static const tg_attr_spec *find_spec(const tg_op_def *def, const char *name)
{
    for (int i = 0; i < def->n_attrs; i++)
        if (strcmp(def->attr_specs[i].name, name) == 0) return &def->attr_specs[i];
    return NULL;
}

/* Copies an INT or INT_PAIR attr of a node into values[0..1]; 0 if the op has none. */
static int read_ints(const tg_node *node, const char *name, int64_t values[2])
{
    const tg_attr_spec *spec = find_spec(node->op, name);
    if (!spec) return 0;
    const int64_t *field = (const int64_t *)(node->attrs + spec->offset);
    values[0] = field[0];
    values[1] = spec->kind == TG_ATTR_KIND_INT_PAIR ? field[1] : field[0];
    return 1;
}

static double read_float(const tg_node *node, const char *name, double fallback)
{
    const tg_attr_spec *spec = find_spec(node->op, name);
    return spec && spec->kind == TG_ATTR_KIND_FLOAT ? *(const double *)(node->attrs + spec->offset) : fallback;
}

/* ---- which nodes ---- */

static int is_constant(const tg_graph *graph, tg_node_id id)
{
    return id >= 0 && (graph->nodes[id].kind == TG_NODE_KIND_PARAM || graph->nodes[id].kind == TG_NODE_KIND_BUFFER) &&
           graph->nodes[id].value.dtype == TG_DTYPE_F32;
}

int tg_quant_is_quantizable(const tg_graph *graph, tg_node_id id)
{
    if (id < 0 || id >= graph->n_nodes) return 0;
    const tg_node *node = &graph->nodes[id];
    if (node->kind != TG_NODE_KIND_OP || node->n_in < 2 || node->in[0] < 0) return 0;
    if (!is_constant(graph, node->in[1])) return 0;
    if (node->n_in > 2 && node->in[2] >= 0 && !is_constant(graph, node->in[2])) return 0;
    if (graph->nodes[node->in[0]].value.dtype != TG_DTYPE_F32) return 0;
    if (strcmp(node->op->name, "conv2d") == 0) return 1;
    return strcmp(node->op->name, "linear") == 0 && graph->nodes[node->in[0]].value.ndim == 2;
}

/* needed[id] = 1 for the nodes `last` depends on (itself included). */
static void mark_needed(const tg_graph *graph, tg_node_id last, unsigned char *needed)
{
    needed[last] = 1;
    for (tg_node_id id = last; id >= 0; id--) {
        const tg_node *node = &graph->nodes[id];
        if (!needed[id] || node->kind != TG_NODE_KIND_OP) continue;
        for (int i = 0; i < node->n_in; i++)
            if (node->in[i] >= 0) needed[node->in[i]] = 1;
    }
}

/* ---- calibration ---- */

/* Shapes the input for `images` and the target for a batch of the same size. */
static tg_status shape_for(tg_model *model, const tg_tensor *images)
{
    tg_graph *graph = &model->graph;
    const tg_tensor *target = &graph->nodes[model->target].value;
    int64_t shapes[2][TG_MAX_DIMS];
    memset(shapes, 0, sizeof shapes);
    int ndims[2] = {images->ndim, target->ndim};
    memcpy(shapes[0], images->shape, sizeof images->shape[0] * (size_t)images->ndim);
    memcpy(shapes[1], target->shape, sizeof target->shape[0] * (size_t)target->ndim);
    shapes[1][0] = images->shape[0];
    for (int d = 1; d < target->ndim && d + 1 < images->ndim; d++) shapes[1][d] = images->shape[d + 1];
    tg_node_id ids[2] = {model->input, model->target};
    return tg_graph_set_input_shapes(graph, 2, ids, ndims, (const int64_t (*)[TG_MAX_DIMS])shapes);
}

tg_status tg_quant_calibrate(tg_model *model, const tg_tensor *images, float *ranges)
{
    tg_graph *graph = &model->graph;
    TG_TRY(tg_check_dtype(images, TG_DTYPE_F32, "quantize", "calibration images"));
    const tg_tensor *x = &graph->nodes[model->input].value;
    if (images->ndim != x->ndim || images->shape[0] < 1)
        return tg_error(TG_STATUS_SHAPE, "quantize: calibration images must be a non-empty float32 batch of %d dims "
                        "like the model's input, got %d dims", x->ndim, images->ndim);
    TG_TRY(shape_for(model, images));
    unsigned char *needed = calloc((size_t)graph->n_nodes, 1);   /* [n_nodes] */
    unsigned char *kept = calloc((size_t)graph->n_nodes, 1);     /* [n_nodes] keep flags before */
    if (!needed || !kept) {
        free(needed);
        free(kept);
        return tg_error(TG_STATUS_NOMEM, "quantize: out of memory for %d nodes", graph->n_nodes);
    }
    mark_needed(graph, model->output, needed);
    for (tg_node_id id = 0; id < graph->n_nodes; id++) kept[id] = (unsigned char)graph->nodes[id].keep;
    /* NOTE: the inputs of the observed layers are kept (not overwritten by later ops)
     * for this run only; the flags are restored and the graph replans afterwards. */
    for (tg_node_id id = 0; id < graph->n_nodes; id++)
        if (needed[id] && tg_quant_is_quantizable(graph, id)) graph->nodes[graph->nodes[id].in[0]].keep = 1;
    graph->planned = 0;
    tg_status status = tg_graph_plan(graph, -1, NULL);
    if (status == TG_STATUS_OK) status = tg_graph_feed(graph, model->input, images);
    if (status == TG_STATUS_OK) status = tg_graph_forward_to(graph, 0, model->output);
    for (tg_node_id id = 0; id < graph->n_nodes && status == TG_STATUS_OK; id++) {
        if (!needed[id] || !tg_quant_is_quantizable(graph, id)) continue;
        const tg_tensor *value = &graph->nodes[graph->nodes[id].in[0]].value;
        const float *data = value->data;   /* [numel] */
        float lo = ranges[2 * id], hi = ranges[2 * id + 1];
        for (int64_t i = 0, n = tg_tensor_numel(value); i < n; i++) {
            lo = data[i] < lo ? data[i] : lo;
            hi = data[i] > hi ? data[i] : hi;
        }
        ranges[2 * id] = lo;
        ranges[2 * id + 1] = hi;
    }
    for (tg_node_id id = 0; id < graph->n_nodes; id++) graph->nodes[id].keep = kept[id];
    graph->planned = 0;
    free(needed);
    free(kept);
    return status;
}

void tg_quant_activation_params(float min, float max, float *scale, int32_t *zero_point)
{
    min = min < 0 ? min : 0;
    max = max > 0 ? max : 0;
    float s = (max - min) / 255.0f;
    if (!(s > 0) || !isfinite(s)) s = 1.0f;   /* an all-zero input: any scale is exact */
    float zp = nearbyintf(-min / s);
    *scale = s;
    *zero_point = (int32_t)(zp < 0 ? 0 : zp > 255 ? 255 : zp);
}

/* ---- the rewrite ---- */

typedef struct rewrite {
    const tg_graph *src;
    tg_graph *dst;
    tg_node_id *map;            /* [src n_nodes] new id, or -1 */
    int *consumers;             /* [src n_nodes] how many op inputs read each node */
    unsigned char *skip;        /* [src n_nodes] constants that only quantized layers read */
    tg_node_id *folded_bn;      /* [src n_nodes] conv id -> its batchnorm, or -1 */
    tg_node_id *fused_relu;     /* [src n_nodes] layer id -> the relu after it (or its batchnorm), or -1 */
    const float *ranges;        /* [src n_nodes, 2] */
} rewrite;

static int observed(const rewrite *r, tg_node_id id) { return r->ranges[2 * id] <= r->ranges[2 * id + 1]; }

/* The one op node reading `id` (once), or -1. */
static tg_node_id only_consumer(const rewrite *r, tg_node_id id)
{
    if (r->consumers[id] != 1) return -1;
    for (tg_node_id next = id + 1; next < r->src->n_nodes; next++) {
        const tg_node *node = &r->src->nodes[next];
        if (node->kind != TG_NODE_KIND_OP) continue;
        for (int i = 0; i < node->n_in; i++)
            if (node->in[i] == id) return next;
    }
    return -1;
}

/* The conv's only consumer when it is an eval-foldable batchnorm2d (running stats present). */
static tg_node_id foldable_batchnorm(const rewrite *r, tg_node_id conv)
{
    if (strcmp(r->src->nodes[conv].op->name, "conv2d") != 0) return -1;
    tg_node_id bn = only_consumer(r, conv);
    if (bn < 0) return -1;
    const tg_node *node = &r->src->nodes[bn];
    if (strcmp(node->op->name, "batchnorm2d") != 0 || node->in[0] != conv || node->n_in < 5) return -1;
    for (int i = 1; i < 5; i++)
        if (node->in[i] >= 0 && (!is_constant(r->src, node->in[i]) || r->consumers[node->in[i]] != 1)) return -1;
    return node->in[3] >= 0 && node->in[4] >= 0 ? bn : -1;
}

/* The relu that alone reads the layer's result (the conv, or its folded batchnorm), or -1. */
static tg_node_id fusable_relu(const rewrite *r, tg_node_id last)
{
    tg_node_id relu = only_consumer(r, last);
    if (relu < 0 || strcmp(r->src->nodes[relu].op->name, "relu") != 0) return -1;
    return relu;
}

static tg_status copy_constant(rewrite *r, tg_node_id id)
{
    const tg_node *node = &r->src->nodes[id];
    tg_node_id new_id;
    if (node->kind == TG_NODE_KIND_PARAM)
        TG_TRY(tg_graph_param(r->dst, node->name, node->value.ndim, node->value.shape, node->requires_grad, &new_id));
    else
        TG_TRY(tg_graph_buffer(r->dst, node->name, node->value.dtype, node->value.ndim, node->value.shape, &new_id));
    memcpy(r->dst->nodes[new_id].value.data, node->value.data, tg_tensor_nbytes(&node->value));
    r->map[id] = new_id;
    return TG_STATUS_OK;
}

static tg_status add_buffer(rewrite *r, const char *name, tg_dtype dtype, int ndim, const int64_t *shape,
                            const void *data, tg_node_id *id)
{
    TG_TRY(tg_graph_buffer(r->dst, name, dtype, ndim, shape, id));
    memcpy(r->dst->nodes[*id].value.data, data, tg_tensor_nbytes(&r->dst->nodes[*id].value));
    return TG_STATUS_OK;
}

/* One quantized layer: weights (folded with its batchnorm when there is one) quantized
 * per output channel, then the quantized op reading the mapped input. */
static tg_status quantize_layer(rewrite *r, tg_node_id id)
{
    const tg_graph *src = r->src;
    const tg_node *node = &src->nodes[id];
    const tg_tensor *w = &src->nodes[node->in[1]].value;
    const char *weight_name = src->nodes[node->in[1]].name;
    int has_bias = node->n_in > 2 && node->in[2] >= 0;
    int64_t o = w->shape[0], per_channel = tg_tensor_numel(w) / (o ? o : 1);
    tg_node_id bn = r->folded_bn[id];
    float *folded = malloc(sizeof(float) * (size_t)(tg_tensor_numel(w) + 3 * o));   /* [O, per_channel] */
    int8_t *q = malloc((size_t)tg_tensor_numel(w) + 1);                              /* [O, per_channel] */
    if (!folded || !q) {
        free(folded);
        free(q);
        return tg_error(TG_STATUS_NOMEM, "quantize: out of memory for the weights of '%s'", weight_name);
    }
    float *bias = folded + tg_tensor_numel(w);   /* [O] */
    float *scale = bias + o;                     /* [O] */
    memcpy(folded, w->data, sizeof(float) * (size_t)tg_tensor_numel(w));
    for (int64_t c = 0; c < o; c++) bias[c] = has_bias ? ((const float *)src->nodes[node->in[2]].value.data)[c] : 0;
    if (bn >= 0) {
        /* eval-mode batchnorm: y = (x - mean) / sqrt(var + eps) * gamma + beta */
        const tg_node *b = &src->nodes[bn];
        const float *gamma = b->in[1] >= 0 ? src->nodes[b->in[1]].value.data : NULL;
        const float *beta = b->in[2] >= 0 ? src->nodes[b->in[2]].value.data : NULL;
        const float *mean = src->nodes[b->in[3]].value.data, *var = src->nodes[b->in[4]].value.data;
        double eps = read_float(b, "eps", 1e-5);
        for (int64_t c = 0; c < o; c++) {
            float factor = (float)((gamma ? gamma[c] : 1.0f) / sqrt((double)var[c] + eps));
            for (int64_t k = 0; k < per_channel; k++) folded[c * per_channel + k] *= factor;
            bias[c] = (bias[c] - mean[c]) * factor + (beta ? beta[c] : 0.0f);
        }
    }
    for (int64_t c = 0; c < o; c++) {
        const float *row = folded + c * per_channel;
        float amax = 0;
        for (int64_t k = 0; k < per_channel; k++) amax = fabsf(row[k]) > amax ? fabsf(row[k]) : amax;
        scale[c] = amax > 0 ? amax / 127.0f : 1.0f;
        for (int64_t k = 0; k < per_channel; k++) {
            float v = nearbyintf(row[k] / scale[c]);
            q[c * per_channel + k] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
    }
    /* names: "<layer>.weight" (int8), "<layer>.weight_scale", "<layer>.bias" */
    char prefix[256], name[300];
    size_t len = strlen(weight_name);
    size_t cut = len > 7 && strcmp(weight_name + len - 7, ".weight") == 0 ? len - 7 : len;
    snprintf(prefix, sizeof prefix, "%.*s", (int)cut, weight_name);
    tg_node_id inputs[4] = {r->map[node->in[0]], -1, -1, -1};
    tg_status status = add_buffer(r, weight_name, TG_DTYPE_I8, w->ndim, w->shape, q, &inputs[1]);
    snprintf(name, sizeof name, "%s.weight_scale", prefix);
    if (status == TG_STATUS_OK) status = add_buffer(r, name, TG_DTYPE_F32, 1, &o, scale, &inputs[2]);
    if (status == TG_STATUS_OK && (has_bias || bn >= 0)) {
        if (has_bias) snprintf(name, sizeof name, "%s", src->nodes[node->in[2]].name);
        else snprintf(name, sizeof name, "%s.bias", prefix);
        status = add_buffer(r, name, TG_DTYPE_F32, 1, &o, bias, &inputs[3]);
    }
    free(folded);
    free(q);
    TG_TRY(status);

    float input_scale;
    int32_t zero_point;
    tg_quant_activation_params(r->ranges[2 * id], r->ranges[2 * id + 1], &input_scale, &zero_point);
    int is_conv = strcmp(node->op->name, "conv2d") == 0;
    const tg_op_def *def = tg_op_find(is_conv ? "quantized_conv2d" : "quantized_linear");
    _Alignas(16) unsigned char attrs[TG_MAX_ATTR_BYTES];
    tg_attrs_set_defaults(def, attrs);
    if (is_conv) {
        static const char *const pairs[] = {"stride", "padding", "dilation", "groups"};
        for (int i = 0; i < 4; i++) {
            int64_t values[2];
            if (read_ints(node, pairs[i], values)) TG_TRY(tg_attrs_set_ints(def, attrs, pairs[i], values, i < 3 ? 2 : 1));
        }
    }
    TG_TRY(tg_attrs_set_float(def, attrs, "input_scale", input_scale));
    int64_t zp = zero_point;
    TG_TRY(tg_attrs_set_ints(def, attrs, "input_zero_point", &zp, 1));
    tg_node_id relu = r->fused_relu[id];
    int64_t fuse = relu >= 0;
    TG_TRY(tg_attrs_set_ints(def, attrs, "relu", &fuse, 1));
    tg_node_id new_id;
    TG_TRY(tg_graph_op(r->dst, def, inputs, inputs[3] >= 0 ? 4 : 3, attrs, &new_id));
    r->map[id] = new_id;
    if (bn >= 0) r->map[bn] = new_id;
    if (relu >= 0) r->map[relu] = new_id;
    return TG_STATUS_OK;
}

static tg_status copy_op(rewrite *r, tg_node_id id)
{
    const tg_node *node = &r->src->nodes[id];
    tg_node_id inputs[TG_MAX_INPUTS];
    for (int i = 0; i < node->n_in; i++) inputs[i] = node->in[i] >= 0 ? r->map[node->in[i]] : -1;
    TG_TRY(tg_graph_op(r->dst, node->op, inputs, node->n_in, node->attrs, &r->map[id]));
    r->dst->nodes[r->map[id]].force_eval = node->force_eval;
    return TG_STATUS_OK;
}

static tg_status run_rewrite(rewrite *r, tg_model *quantized, const tg_model *model, int *n_quantized)
{
    const tg_graph *src = r->src;
    int n = src->n_nodes;
    for (tg_node_id id = 0; id < n; id++) {
        r->map[id] = -1;
        r->folded_bn[id] = -1;
        r->fused_relu[id] = -1;
        const tg_node *node = &src->nodes[id];
        if (node->kind == TG_NODE_KIND_OP)
            for (int i = 0; i < node->n_in; i++)
                if (node->in[i] >= 0) r->consumers[node->in[i]]++;
    }
    int count = 0;
    for (tg_node_id id = 0; id < n; id++) {
        if (!tg_quant_is_quantizable(src, id) || !observed(r, id)) continue;
        const tg_node *node = &src->nodes[id];
        for (int i = 1; i < node->n_in && i < 3; i++)
            if (node->in[i] >= 0 && r->consumers[node->in[i]] == 1) r->skip[node->in[i]] = 1;
        tg_node_id bn = foldable_batchnorm(r, id);
        r->folded_bn[id] = bn;
        r->fused_relu[id] = fusable_relu(r, bn >= 0 ? bn : id);
        if (bn >= 0)
            for (int i = 1; i < 5; i++)
                if (src->nodes[bn].in[i] >= 0) r->skip[src->nodes[bn].in[i]] = 1;
        count++;
    }
    for (tg_node_id id = 0; id < n; id++) {
        const tg_node *node = &src->nodes[id];
        if (node->kind == TG_NODE_KIND_INPUT) {
            TG_TRY(tg_graph_input(r->dst, node->name, node->value.dtype, node->value.ndim, node->value.shape, &r->map[id]));
        } else if (node->kind != TG_NODE_KIND_OP) {
            if (!r->skip[id]) TG_TRY(copy_constant(r, id));
        } else if (r->map[id] >= 0) {
            continue;   /* a batchnorm or relu folded into its layer */
        } else if (tg_quant_is_quantizable(src, id) && observed(r, id)) {
            TG_TRY(quantize_layer(r, id));
        } else {
            TG_TRY(copy_op(r, id));
        }
    }
    quantized->input = r->map[model->input];
    quantized->output = r->map[model->output];
    quantized->target = r->map[model->target];
    quantized->loss = r->map[model->loss];
    memcpy(quantized->arch, model->arch, sizeof quantized->arch);
    quantized->options = model->options;
    if (n_quantized) *n_quantized = count;
    return tg_graph_keep(r->dst, quantized->output);
}

tg_status tg_model_quantize(tg_model *quantized, const tg_model *model, const float *ranges, int *n_quantized)
{
    memset(quantized, 0, sizeof *quantized);
    tg_graph_init(&quantized->graph);
    const tg_graph *src = &model->graph;
    size_t n = (size_t)src->n_nodes;
    rewrite r = {
        .src = src, .dst = &quantized->graph, .ranges = ranges,
        .map = malloc(sizeof(tg_node_id) * n), .consumers = calloc(n, sizeof(int)), .skip = calloc(n, 1),
        .folded_bn = malloc(sizeof(tg_node_id) * n), .fused_relu = malloc(sizeof(tg_node_id) * n),
    };
    tg_status status = r.map && r.consumers && r.skip && r.folded_bn && r.fused_relu
                           ? run_rewrite(&r, quantized, model, n_quantized)
                           : tg_error(TG_STATUS_NOMEM, "quantize: out of memory for %d nodes", src->n_nodes);
    free(r.map);
    free(r.consumers);
    free(r.skip);
    free(r.folded_bn);
    free(r.fused_relu);
    if (status != TG_STATUS_OK) tg_graph_free(&quantized->graph);
    return status;
}
