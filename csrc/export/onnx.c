/* onnx.c: the ONNX exporter (graph walk, file layout) and the emitter API of
 * onnx.h through which ops write their nodes. Field numbers are those of onnx.proto
 * (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto).
 * Not here: any op's mapping (each op's family file has its own `onnx` function).
 * NOTE: tensor data is written as raw_data in the machine's byte order, which ONNX
 * requires to be little-endian: trugrade runs on x86-64 and AArch64 little-endian. */
#include "onnx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protobuf.h"

/* onnx.proto field numbers */
enum {
    MODEL_IR_VERSION = 1, MODEL_PRODUCER_NAME = 2, MODEL_PRODUCER_VERSION = 3, MODEL_GRAPH = 7,
    MODEL_OPSET_IMPORT = 8, MODEL_METADATA_PROPS = 14,
    OPSET_DOMAIN = 1, OPSET_VERSION = 2,
    ENTRY_KEY = 1, ENTRY_VALUE = 2,
    GRAPH_NODE = 1, GRAPH_NAME = 2, GRAPH_INITIALIZER = 5, GRAPH_INPUT = 11, GRAPH_OUTPUT = 12,
    NODE_INPUT = 1, NODE_OUTPUT = 2, NODE_OP_TYPE = 4, NODE_ATTRIBUTE = 5,
    ATTR_NAME = 1, ATTR_F = 2, ATTR_I = 3, ATTR_S = 4, ATTR_INTS = 8, ATTR_TYPE = 20,
    TENSOR_DIMS = 1, TENSOR_DATA_TYPE = 2, TENSOR_NAME = 8, TENSOR_RAW_DATA = 9,
    VALUE_INFO_NAME = 1, VALUE_INFO_TYPE = 2,
    TYPE_TENSOR_TYPE = 1, TENSOR_TYPE_ELEM_TYPE = 1, TENSOR_TYPE_SHAPE = 2,
    SHAPE_DIM = 1, DIM_VALUE = 1, DIM_PARAM = 2,
};

/* AttributeProto.AttributeType */
enum { ATTR_TYPE_FLOAT = 1, ATTR_TYPE_INT = 2, ATTR_TYPE_STRING = 3, ATTR_TYPE_INTS = 7 };

#define TG_ONNX_PRODUCER "trugrade"
#define TG_ONNX_PRODUCER_VERSION "0.1"

struct tg_onnx_emitter {
    tg_pb_buf nodes;          /* GraphProto field 1 entries, in topological order */
    tg_pb_buf initializers;   /* GraphProto field 5 entries */
    tg_pb_buf message;        /* the NodeProto or TensorProto being built */
    tg_pb_buf part;           /* an AttributeProto being built */
    char **names;             /* [n_names] strings owned by the emitter */
    int n_names, cap_names;
    int64_t counter;          /* temp names made so far */
    int float16;
};

/* ---- emitter ---- */

static tg_status own_string(tg_onnx_emitter *e, char *text, const char **name)
{
    if (!text) return tg_error(TG_STATUS_NOMEM, "export_onnx: out of memory for a value name");
    if (e->n_names == e->cap_names) {
        int cap = e->cap_names ? 2 * e->cap_names : 256;
        char **names = realloc(e->names, sizeof *names * (size_t)cap);
        if (!names) {
            free(text);
            return tg_error(TG_STATUS_NOMEM, "export_onnx: out of memory for value names");
        }
        e->names = names;
        e->cap_names = cap;
    }
    e->names[e->n_names++] = text;
    *name = text;
    return TG_STATUS_OK;
}

static tg_status format_name(tg_onnx_emitter *e, const char **name, const char *fmt, const char *text, long long number)
{
    int n = snprintf(NULL, 0, fmt, text, number);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf) snprintf(buf, (size_t)n + 1, fmt, text, number);
    return own_string(e, buf, name);
}

tg_status tg_onnx_temp_name(tg_onnx_emitter *e, const char *hint, const char **name)
{
    /* NOTE: "__" never appears in op value names ("<op>_<id>") nor in torchvision
     * parameter names, so a temp name cannot collide with either */
    return format_name(e, name, "%s__%lld", hint, (long long)e->counter++);
}

int tg_onnx_float_type(const tg_onnx_emitter *e) { return e->float16 ? TG_ONNX_DTYPE_FLOAT16 : TG_ONNX_DTYPE_FLOAT; }

static void write_attr(tg_pb_buf *part, const tg_onnx_attr *a)
{
    tg_pb_reset(part);
    tg_pb_field_string(part, ATTR_NAME, a->name);
    switch (a->kind) {
    case TG_ONNX_ATTR_KIND_INT:
        tg_pb_field_varint(part, ATTR_I, (uint64_t)a->i);
        tg_pb_field_varint(part, ATTR_TYPE, ATTR_TYPE_INT);
        break;
    case TG_ONNX_ATTR_KIND_INTS:
        for (int k = 0; k < a->n_ints; k++) tg_pb_field_varint(part, ATTR_INTS, (uint64_t)a->ints[k]);
        tg_pb_field_varint(part, ATTR_TYPE, ATTR_TYPE_INTS);
        break;
    case TG_ONNX_ATTR_KIND_FLOAT:
        tg_pb_field_float(part, ATTR_F, (float)a->f);
        tg_pb_field_varint(part, ATTR_TYPE, ATTR_TYPE_FLOAT);
        break;
    case TG_ONNX_ATTR_KIND_STRING:
        tg_pb_field_string(part, ATTR_S, a->s);
        tg_pb_field_varint(part, ATTR_TYPE, ATTR_TYPE_STRING);
        break;
    }
}

tg_status tg_onnx_node(tg_onnx_emitter *e, const char *op_type, const char *const *inputs, int n_in,
                       const char *output, const tg_onnx_attr *attrs, int n_attrs)
{
    tg_pb_buf *m = &e->message;
    tg_pb_reset(m);
    for (int i = 0; i < n_in; i++) tg_pb_field_string(m, NODE_INPUT, inputs[i] ? inputs[i] : "");
    tg_pb_field_string(m, NODE_OUTPUT, output);
    tg_pb_field_string(m, NODE_OP_TYPE, op_type);
    for (int i = 0; i < n_attrs; i++) {
        write_attr(&e->part, &attrs[i]);
        tg_pb_field_message(m, NODE_ATTRIBUTE, &e->part);
    }
    tg_pb_field_message(&e->nodes, GRAPH_NODE, m);
    return tg_pb_check(&e->nodes, "export_onnx");
}

tg_status tg_onnx_unary(tg_onnx_emitter *e, const tg_onnx_node_ctx *n, const char *op_type, const tg_onnx_attr *attrs,
                        int n_attrs)
{
    return tg_onnx_node(e, op_type, &n->input[0], 1, n->output, attrs, n_attrs);
}

/* float32 -> IEEE half, rounding to nearest even; overflow gives infinity. */
static uint16_t float_to_half(float value)
{
    uint32_t x;
    memcpy(&x, &value, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exponent = (x >> 23) & 0xffu;
    uint32_t mantissa = x & 0x7fffffu;
    if (exponent == 0xffu) return (uint16_t)(sign | 0x7c00u | (mantissa ? 0x200u : 0));
    int32_t e = (int32_t)exponent - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        mantissa |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = mantissa >> shift;
        uint32_t rest = mantissa & ((1u << shift) - 1);
        uint32_t halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | (uint32_t)e << 10 | mantissa >> 13;
    uint32_t rest = mantissa & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half++;   /* a carry into the exponent is right */
    return (uint16_t)half;
}

/* NOTE: the TensorProto is written in place (its header, then the data straight into
 * the initializer list) rather than built whole and copied: a VGG weight is 400 MB. */
static tg_status add_tensor(tg_onnx_emitter *e, const char *name, int dtype, int ndim, const int64_t *shape,
                            const void *data, size_t nbytes)
{
    tg_pb_buf *header = &e->message;
    tg_pb_reset(header);
    for (int d = 0; d < ndim; d++) tg_pb_field_varint(header, TENSOR_DIMS, (uint64_t)shape[d]);
    tg_pb_field_varint(header, TENSOR_DATA_TYPE, (uint64_t)dtype);
    tg_pb_field_string(header, TENSOR_NAME, name);
    tg_pb_varint(header, (uint64_t)TENSOR_RAW_DATA << 3 | TG_PB_WIRE_LENGTH);
    tg_pb_varint(header, nbytes);
    TG_TRY(tg_pb_check(header, "export_onnx"));
    tg_pb_buf *list = &e->initializers;
    tg_pb_varint(list, (uint64_t)GRAPH_INITIALIZER << 3 | TG_PB_WIRE_LENGTH);
    tg_pb_varint(list, header->len + nbytes);
    tg_pb_raw(list, header->data, header->len);
    tg_pb_raw(list, data, nbytes);
    return tg_pb_check(list, "export_onnx");
}

static int64_t shape_numel(int ndim, const int64_t *shape)
{
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= shape[d];
    return numel;
}

tg_status tg_onnx_initializer_f32(tg_onnx_emitter *e, const char *name, int ndim, const int64_t *shape,
                                  const float *data)
{
    int64_t numel = shape_numel(ndim, shape);
    if (!e->float16) return add_tensor(e, name, TG_ONNX_DTYPE_FLOAT, ndim, shape, data, sizeof(float) * (size_t)numel);
    uint16_t *half = malloc(sizeof *half * (size_t)(numel ? numel : 1));   /* [numel] */
    if (!half) return tg_error(TG_STATUS_NOMEM, "export_onnx: out of memory converting '%s' to float16", name);
    for (int64_t i = 0; i < numel; i++) half[i] = float_to_half(data[i]);
    tg_status status = add_tensor(e, name, TG_ONNX_DTYPE_FLOAT16, ndim, shape, half, sizeof *half * (size_t)numel);
    free(half);
    return status;
}

tg_status tg_onnx_initializer_i64(tg_onnx_emitter *e, const char *name, int ndim, const int64_t *shape,
                                  const int64_t *data)
{
    return add_tensor(e, name, TG_ONNX_DTYPE_INT64, ndim, shape, data, sizeof(int64_t) * (size_t)shape_numel(ndim, shape));
}

tg_status tg_onnx_const_f32(tg_onnx_emitter *e, const char *hint, int ndim, const int64_t *shape, const float *data,
                            const char **name)
{
    TG_TRY(tg_onnx_temp_name(e, hint, name));
    return tg_onnx_initializer_f32(e, *name, ndim, shape, data);
}

tg_status tg_onnx_const_scalar(tg_onnx_emitter *e, const char *hint, float value, const char **name)
{
    return tg_onnx_const_f32(e, hint, 0, NULL, &value, name);
}

tg_status tg_onnx_const_i64(tg_onnx_emitter *e, const char *hint, int count, const int64_t *values, const char **name)
{
    TG_TRY(tg_onnx_temp_name(e, hint, name));
    int64_t shape[1] = {count};
    return tg_onnx_initializer_i64(e, *name, 1, shape, values);
}

tg_status tg_onnx_const_float32(tg_onnx_emitter *e, const char *hint, int count, const float *values, const char **name)
{
    TG_TRY(tg_onnx_temp_name(e, hint, name));
    int64_t shape[1] = {count};
    return add_tensor(e, *name, TG_ONNX_DTYPE_FLOAT, 1, shape, values, sizeof(float) * (size_t)count);
}

tg_status tg_onnx_const_bytes(tg_onnx_emitter *e, const char *hint, int dtype, int ndim, int count,
                              const void *values, const char **name)
{
    TG_TRY(tg_onnx_temp_name(e, hint, name));
    int64_t shape[1] = {count};
    return add_tensor(e, *name, dtype, ndim ? 1 : 0, shape, values, (size_t)count);
}

static void emitter_free(tg_onnx_emitter *e)
{
    tg_pb_free(&e->nodes);
    tg_pb_free(&e->initializers);
    tg_pb_free(&e->message);
    tg_pb_free(&e->part);
    for (int i = 0; i < e->n_names; i++) free(e->names[i]);
    free(e->names);
}

/* ---- the file ---- */

/* ValueInfoProto of a float tensor whose dim 0 is "batch" when dynamic_batch. */
static void write_value_info(tg_pb_buf *out, int field, const char *name, const tg_tensor *t, int dynamic_batch)
{
    tg_pb_buf shape, tensor_type, type, info;
    tg_pb_init(&shape); tg_pb_init(&tensor_type); tg_pb_init(&type); tg_pb_init(&info);
    for (int d = 0; d < t->ndim; d++) {
        tg_pb_buf dim;
        tg_pb_init(&dim);
        if (d == 0 && dynamic_batch) tg_pb_field_string(&dim, DIM_PARAM, "batch");
        else tg_pb_field_varint(&dim, DIM_VALUE, (uint64_t)t->shape[d]);
        tg_pb_field_message(&shape, SHAPE_DIM, &dim);
        tg_pb_free(&dim);
    }
    tg_pb_field_varint(&tensor_type, TENSOR_TYPE_ELEM_TYPE, TG_ONNX_DTYPE_FLOAT);
    tg_pb_field_message(&tensor_type, TENSOR_TYPE_SHAPE, &shape);
    tg_pb_field_message(&type, TYPE_TENSOR_TYPE, &tensor_type);
    tg_pb_field_string(&info, VALUE_INFO_NAME, name);
    tg_pb_field_message(&info, VALUE_INFO_TYPE, &type);
    tg_pb_field_message(out, field, &info);
    tg_pb_free(&shape); tg_pb_free(&tensor_type); tg_pb_free(&type); tg_pb_free(&info);
}

/* Writes the concatenation of `parts` to path; on failure removes the file. */
static tg_status write_file(const char *path, const tg_pb_buf *const *parts, int n_parts)
{
    FILE *f = fopen(path, "wb");
    if (!f) return tg_error(TG_STATUS_IO, "export_onnx: cannot create '%s': %s", path, strerror(errno));
    size_t written = 0, total = 0;
    int failed = 0, saved_errno = 0;
    for (int i = 0; i < n_parts; i++) {
        total += parts[i]->len;
        if (failed || parts[i]->len == 0) continue;
        size_t n = fwrite(parts[i]->data, 1, parts[i]->len, f);
        written += n;
        if (n != parts[i]->len) {
            failed = 1;
            saved_errno = errno;
        }
    }
    if (fclose(f) != 0 && !failed) {
        failed = 1;
        saved_errno = errno;
    }
    if (failed) {
        remove(path);
        return tg_error(TG_STATUS_IO, "export_onnx: writing '%s' failed after %zu of %zu bytes: %s", path, written,
                        total, strerror(saved_errno));
    }
    return TG_STATUS_OK;
}

static tg_status write_model(tg_onnx_emitter *e, const tg_graph *graph, tg_node_id input, tg_node_id output,
                             const tg_onnx_options *options, const char *path)
{
    const tg_tensor *x = &graph->nodes[input].value, *y = &graph->nodes[output].value;
    int dynamic_output = y->ndim >= 1 && y->shape[0] == x->shape[0];
    /* NOTE: the GraphProto is streamed as [nodes][tail][initializers] after its tag and
     * length rather than assembled in memory: the initializers are the model's size. */
    tg_pb_buf tail, m, part;
    tg_pb_init(&tail); tg_pb_init(&m); tg_pb_init(&part);
    tg_pb_field_string(&tail, GRAPH_NAME, "trugrade");
    write_value_info(&tail, GRAPH_INPUT, "input", x, 1);
    write_value_info(&tail, GRAPH_OUTPUT, "logits", y, dynamic_output);

    tg_pb_field_varint(&m, MODEL_IR_VERSION, TG_ONNX_IR_VERSION);
    tg_pb_field_string(&m, MODEL_PRODUCER_NAME, TG_ONNX_PRODUCER);
    tg_pb_field_string(&m, MODEL_PRODUCER_VERSION, TG_ONNX_PRODUCER_VERSION);
    tg_pb_field_string(&part, OPSET_DOMAIN, "");
    tg_pb_field_varint(&part, OPSET_VERSION, TG_ONNX_OPSET);
    tg_pb_field_message(&m, MODEL_OPSET_IMPORT, &part);
    for (int i = 0; i < options->n_metadata; i++) {
        tg_pb_reset(&part);
        tg_pb_field_string(&part, ENTRY_KEY, options->metadata_keys[i]);
        tg_pb_field_string(&part, ENTRY_VALUE, options->metadata_values[i]);
        tg_pb_field_message(&m, MODEL_METADATA_PROPS, &part);
    }
    tg_pb_varint(&m, (uint64_t)MODEL_GRAPH << 3 | TG_PB_WIRE_LENGTH);
    tg_pb_varint(&m, e->nodes.len + tail.len + e->initializers.len);
    tg_status status = tg_pb_check(&m, "export_onnx");
    if (status == TG_STATUS_OK) status = tg_pb_check(&tail, "export_onnx");
    if (status == TG_STATUS_OK) {
        const tg_pb_buf *parts[4] = {&m, &e->nodes, &tail, &e->initializers};
        status = write_file(path, parts, 4);
    }
    tg_pb_free(&tail); tg_pb_free(&m); tg_pb_free(&part);
    return status;
}

/* ---- the graph walk ---- */

static tg_status emit_op(tg_onnx_emitter *e, const tg_graph *graph, tg_node_id id, const char *const *names)
{
    const tg_node *node = &graph->nodes[id];
    if (!node->op->onnx)
        return tg_error(TG_STATUS_UNSUPPORTED, "export_onnx: op '%s' (node %d, layer '%s') has no ONNX mapping; "
                        "give its tg_op_def an `onnx` function (csrc/export/onnx.h) or export a model without it",
                        node->op->name, (int)id, tg_graph_layer_name(graph, id));
    const char *input[TG_MAX_INPUTS];
    const tg_tensor *in[TG_MAX_INPUTS];
    int is_constant[TG_MAX_INPUTS];
    for (int i = 0; i < node->n_in; i++) {
        tg_node_id src = node->in[i];
        input[i] = src >= 0 ? names[src] : NULL;
        in[i] = src >= 0 ? &graph->nodes[src].value : NULL;
        is_constant[i] = src >= 0 && (graph->nodes[src].kind == TG_NODE_KIND_PARAM ||
                                      graph->nodes[src].kind == TG_NODE_KIND_BUFFER);
    }
    tg_onnx_node_ctx ctx = {
        .op = node->op, .attrs = node->attrs, .n_in = node->n_in, .input = input, .in = in,
        .in_is_constant = is_constant, .output = names[id], .out = &node->value,
        .layer = tg_graph_layer_name(graph, id),
    };
    return node->op->onnx(e, &ctx);
}

static tg_status emit_constant(tg_onnx_emitter *e, const tg_node *node)
{
    const tg_tensor *t = &node->value;
    if (t->dtype == TG_DTYPE_F32) return tg_onnx_initializer_f32(e, node->name, t->ndim, t->shape, t->data);
    if (t->dtype == TG_DTYPE_I64) return tg_onnx_initializer_i64(e, node->name, t->ndim, t->shape, t->data);
    if (t->dtype == TG_DTYPE_I8)
        return add_tensor(e, node->name, TG_ONNX_DTYPE_INT8, t->ndim, t->shape, t->data, (size_t)tg_tensor_numel(t));
    return tg_error(TG_STATUS_UNSUPPORTED, "export_onnx: '%s' is %s; only float32, int64 and int8 parameters and "
                    "buffers are exported", node->name, tg_dtype_name(t->dtype));
}

/* Names every needed node's value and emits the nodes in graph order. */
static tg_status emit_graph(tg_onnx_emitter *e, const tg_graph *graph, tg_node_id input, tg_node_id output,
                            const unsigned char *needed, const char **names)
{
    if (e->float16) {
        TG_TRY(own_string(e, strdup("input_float16"), &names[input]));
        tg_onnx_attr to = tg_onnx_attr_int("to", TG_ONNX_DTYPE_FLOAT16);
        const char *graph_input = "input";
        TG_TRY(tg_onnx_node(e, "Cast", &graph_input, 1, names[input], &to, 1));
    } else {
        names[input] = "input";
    }
    for (tg_node_id id = 0; id <= output; id++) {
        const tg_node *node = &graph->nodes[id];
        if (!needed[id] || id == input) continue;
        if (node->kind == TG_NODE_KIND_INPUT)
            return tg_error(TG_STATUS_UNSUPPORTED, "export_onnx: the output depends on the input '%s' besides '%s'; "
                            "export the inference part only (the logits, not the loss)", node->name,
                            graph->nodes[input].name);
        if (node->kind == TG_NODE_KIND_PARAM || node->kind == TG_NODE_KIND_BUFFER) {
            names[id] = node->name;
            TG_TRY(emit_constant(e, node));
            continue;
        }
        if (id == output) names[id] = e->float16 ? "logits_float16" : "logits";
        else TG_TRY(format_name(e, &names[id], "%s_%lld", node->op->name, (long long)id));
        TG_TRY(emit_op(e, graph, id, names));
    }
    if (e->float16) {
        tg_onnx_attr to = tg_onnx_attr_int("to", TG_ONNX_DTYPE_FLOAT);
        TG_TRY(tg_onnx_node(e, "Cast", &names[output], 1, "logits", &to, 1));
    }
    return TG_STATUS_OK;
}

tg_status tg_onnx_export_graph(const tg_graph *graph, tg_node_id input, tg_node_id output, const tg_onnx_options *options,
                               const char *path)
{
    if (input < 0 || input >= graph->n_nodes || graph->nodes[input].kind != TG_NODE_KIND_INPUT)
        return tg_error(TG_STATUS_VALUE, "export_onnx: node %d is not an input of the graph (%d nodes)", (int)input,
                        graph->n_nodes);
    if (output < 0 || output >= graph->n_nodes || graph->nodes[output].kind != TG_NODE_KIND_OP)
        return tg_error(TG_STATUS_VALUE, "export_onnx: node %d is not an op node of the graph (%d nodes)", (int)output,
                        graph->n_nodes);
    const tg_tensor *x = &graph->nodes[input].value;
    TG_TRY(tg_check_dtype(x, TG_DTYPE_F32, "export_onnx", "the input"));
    if (x->ndim < 1) return tg_error(TG_STATUS_SHAPE, "export_onnx: the input must have a batch dim, got a scalar");
    TG_TRY(tg_check_dtype(&graph->nodes[output].value, TG_DTYPE_F32, "export_onnx", "the output"));

    unsigned char *needed = calloc((size_t)graph->n_nodes, 1);         /* [n_nodes] */
    const char **names = calloc((size_t)graph->n_nodes, sizeof *names); /* [n_nodes] value names */
    if (!needed || !names) {
        free(needed);
        free(names);
        return tg_error(TG_STATUS_NOMEM, "export_onnx: out of memory for %d nodes", graph->n_nodes);
    }
    needed[output] = 1;
    for (tg_node_id id = output; id >= 0; id--) {
        const tg_node *node = &graph->nodes[id];
        if (!needed[id] || node->kind != TG_NODE_KIND_OP) continue;
        for (int i = 0; i < node->n_in; i++)
            if (node->in[i] >= 0) needed[node->in[i]] = 1;
    }
    tg_onnx_emitter e;
    memset(&e, 0, sizeof e);
    e.float16 = options->float16;
    tg_status status = emit_graph(&e, graph, input, output, needed, names);
    if (status == TG_STATUS_OK && !needed[input])
        status = tg_error(TG_STATUS_VALUE, "export_onnx: the output does not depend on the input '%s'",
                          graph->nodes[input].name);
    if (status == TG_STATUS_OK) status = write_model(&e, graph, input, output, options, path);
    emitter_free(&e);
    free(needed);
    free(names);
    return status;
}
