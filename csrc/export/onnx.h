/* onnx.h: export of a model graph to ONNX (opset 17), and the emitter API through
 * which each op writes its own ONNX nodes.
 *
 * "One op, one place": an op's ONNX mapping is its tg_op_def's `onnx` function, in
 * the op's family file beside its kernels. Export walks the graph from the input to
 * the output (never the loss) in eval mode and calls each op's `onnx` with its
 * value names (tg_onnx_node_ctx); the function adds ONNX nodes and constants
 * through the emitter. An op whose `onnx` is NULL makes the export fail naming it.
 *
 * The file written is an ONNX ModelProto: ir_version 8, opset "" 17, producer
 * "trugrade"; graph input "input" float32 [batch, C, H, W] with a dynamic batch
 * ("batch"), output "logits"; one initializer per parameter or buffer read, named
 * as the parameter (torchvision's names); metadata_props as given.
 * int8 parameters and buffers (quantized weights) are written as INT8 initializers;
 * the quantized ops (ops/quantized.c) write their QuantizeLinear / DequantizeLinear
 * nodes themselves, so a quantized model exports as a QDQ graph with no option here.
 * Not here: training graphs, choosing quantisation parameters (models/quantize.c).
 * The protobuf bytes are written by protobuf.c; no ONNX library is linked. */
#ifndef TG_ONNX_H
#define TG_ONNX_H

#include <stdint.h>

#include "../core/graph.h"
#include "../ops/op.h"

#define TG_ONNX_OPSET 17
#define TG_ONNX_IR_VERSION 8

/* ONNX TensorProto.DataType values used here. */
#define TG_ONNX_DTYPE_FLOAT 1
#define TG_ONNX_DTYPE_UINT8 2
#define TG_ONNX_DTYPE_INT8 3
#define TG_ONNX_DTYPE_INT64 7
#define TG_ONNX_DTYPE_FLOAT16 10

typedef enum tg_onnx_attr_kind {
    TG_ONNX_ATTR_KIND_INT,
    TG_ONNX_ATTR_KIND_INTS,
    TG_ONNX_ATTR_KIND_FLOAT,
    TG_ONNX_ATTR_KIND_STRING,
} tg_onnx_attr_kind;

/* One attribute of an ONNX node; build it with tg_onnx_attr_int and friends. */
typedef struct tg_onnx_attr {
    const char *name;
    tg_onnx_attr_kind kind;
    int64_t i;
    const int64_t *ints;   /* [n_ints], INTS */
    int n_ints;
    double f;
    const char *s;
} tg_onnx_attr;

static inline tg_onnx_attr tg_onnx_attr_int(const char *name, int64_t value)
{
    return (tg_onnx_attr){.name = name, .kind = TG_ONNX_ATTR_KIND_INT, .i = value};
}
static inline tg_onnx_attr tg_onnx_attr_ints(const char *name, const int64_t *values, int count)
{
    return (tg_onnx_attr){.name = name, .kind = TG_ONNX_ATTR_KIND_INTS, .ints = values, .n_ints = count};
}
static inline tg_onnx_attr tg_onnx_attr_float(const char *name, double value)
{
    return (tg_onnx_attr){.name = name, .kind = TG_ONNX_ATTR_KIND_FLOAT, .f = value};
}
static inline tg_onnx_attr tg_onnx_attr_string(const char *name, const char *value)
{
    return (tg_onnx_attr){.name = name, .kind = TG_ONNX_ATTR_KIND_STRING, .s = value};
}

/* The export in progress (onnx.c). */
typedef struct tg_onnx_emitter tg_onnx_emitter;

/* What an op's `onnx` function sees: its node's inputs and output by ONNX value
 * name, with their inferred shapes (the input's batch dim is dynamic in the file:
 * never write in[i]->shape[0] of an activation into a constant). */
struct tg_onnx_node_ctx {
    const tg_op_def *op;
    const void *attrs;                 /* the op's attrs struct */
    int n_in;
    const char *const *input;          /* [n_in] value names; NULL for an absent optional input */
    const tg_tensor *const *in;        /* [n_in] shapes; params and buffers also have their values */
    const int *in_is_constant;         /* [n_in] 1 for a parameter or buffer (an initializer) */
    const char *output;                /* the value name the op must define */
    const tg_tensor *out;              /* the output's inferred shape */
    const char *layer;                 /* the layer's parameter name, for messages */
};

/* Adds a node `op_type` (default domain) reading `inputs` ("" for a skipped
 * optional input) and defining `output`. Inputs must already be defined. */
tg_status tg_onnx_node(tg_onnx_emitter *e, const char *op_type, const char *const *inputs, int n_in,
                       const char *output, const tg_onnx_attr *attrs, int n_attrs);

/* The common case: op_type reading n->input[0] and defining n->output. */
tg_status tg_onnx_unary(tg_onnx_emitter *e, const tg_onnx_node_ctx *n, const char *op_type, const tg_onnx_attr *attrs,
                        int n_attrs);

/* A new value name unique in the file, from `hint` (e.g. n->output); the emitter
 * owns the string until the export ends. */
tg_status tg_onnx_temp_name(tg_onnx_emitter *e, const char *hint, const char **name);

/* Adds an initializer called exactly `name` (the caller keeps names unique: the
 * export uses parameter names, ops use tg_onnx_temp_name). f32 data is written as
 * float16 when the export is in float16 (tg_onnx_float_type). */
tg_status tg_onnx_initializer_f32(tg_onnx_emitter *e, const char *name, int ndim, const int64_t *shape,
                                  const float *data);
tg_status tg_onnx_initializer_i64(tg_onnx_emitter *e, const char *name, int ndim, const int64_t *shape,
                                  const int64_t *data);

/* Constants under fresh names derived from `hint`: a float tensor (in the export's
 * float type), int64 tensors (shapes, axes, pads). */
tg_status tg_onnx_const_f32(tg_onnx_emitter *e, const char *hint, int ndim, const int64_t *shape, const float *data,
                            const char **name);
tg_status tg_onnx_const_scalar(tg_onnx_emitter *e, const char *hint, float value, const char **name);
tg_status tg_onnx_const_i64(tg_onnx_emitter *e, const char *hint, int count, const int64_t *values,
                            const char **name);

/* A 1-D float32 constant whatever the export's float type (Resize's scales). */
tg_status tg_onnx_const_float32(tg_onnx_emitter *e, const char *hint, int count, const float *values,
                                const char **name);

/* A constant of 8-bit integers under a fresh name: dtype TG_ONNX_DTYPE_UINT8 or
 * TG_ONNX_DTYPE_INT8, ndim 0 (a scalar; count 1) or 1 ([count]); quantisation zero points. */
tg_status tg_onnx_const_bytes(tg_onnx_emitter *e, const char *hint, int dtype, int ndim, int count,
                              const void *values, const char **name);

/* ONNX's element type for float values in this export (float or float16). */
int tg_onnx_float_type(const tg_onnx_emitter *e);

/* ---- export ---- */

typedef struct tg_onnx_options {
    int n_metadata;
    const char *const *metadata_keys;     /* [n_metadata] */
    const char *const *metadata_values;   /* [n_metadata] */
    int float16;                          /* 1: float16 weights and compute; input and output stay float32 */
} tg_onnx_options;

/* Writes the part of `graph` that computes `output` from `input` (an input node,
 * float32 [N, ...]; N becomes the dynamic "batch") to `path`. Fails with
 * TG_STATUS_UNSUPPORTED naming the op when an op has no ONNX mapping, or when the
 * output depends on another input (a target); TG_STATUS_IO when the file cannot be
 * written (no partial file is left). */
tg_status tg_onnx_export_graph(const tg_graph *graph, tg_node_id input, tg_node_id output, const tg_onnx_options *options,
                               const char *path);

#endif
