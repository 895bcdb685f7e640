/* op.h: how an op is defined, registered and called. The manual for csrc/ops/.
 *
 * An op is one tg_op_def, defined in the file of its family (elementwise.c,
 * conv.c, ...) next to its kernels:
 *   - attrs: a plain struct of the op's parameters plus a tg_attr_spec table
 *     naming each field, so that Python keywords and graph builders fill it
 *     without per-op glue;
 *   - infer: the shape rule. Checks inputs and attrs, fills the output's
 *     dtype/ndim/shape, and says how many bytes of aux (state kept from forward to
 *     backward: pool argmax, batch statistics, dropout mask) and scratch it needs;
 *   - forward: computes io->out from io->in;
 *   - backward: given io->grad_out, ACCUMULATES (+=) into io->grad_in[i] for every
 *     input whose grad_in[i] is non-NULL. NOTE: accumulating, not overwriting,
 *     lets a tensor used twice sum its gradients, and lets parameter gradients
 *     accumulate across steps, with no extra buffers;
 *   - onnx (optional): the op in inference mode as ONNX nodes, written through the
 *     exporter's emitter (export/onnx.h); without it a model using the op cannot
 *     be exported.
 * Then one row in op_list.h registers it. Ops compute in float32 unless their
 * infer says otherwise; every kernel splits its work with tg_parallel_for. */
#ifndef TG_OP_H
#define TG_OP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../core/status.h"
#include "../core/tensor.h"
#include "../core/threads.h"

#define TG_MAX_INPUTS 64        /* concat of a DenseNet block takes many */
#define TG_MAX_ATTR_BYTES 256
#define TG_MAX_INT_LIST 8

typedef enum tg_attr_kind {
    TG_ATTR_KIND_INT,        /* int64_t */
    TG_ATTR_KIND_FLOAT,      /* double */
    TG_ATTR_KIND_BOOL,       /* int (0/1) */
    TG_ATTR_KIND_INT_PAIR,   /* int64_t[2]; one int means both (stride=2 -> (2, 2)) */
    TG_ATTR_KIND_INT_LIST,   /* tg_int_list */
} tg_attr_kind;

typedef struct tg_int_list {
    int count;
    int64_t values[TG_MAX_INT_LIST];
} tg_int_list;

typedef struct tg_attr_spec {
    const char *name;       /* the keyword users write */
    tg_attr_kind kind;
    size_t offset;          /* offsetof(the op's attrs struct, field) */
    double default_value;   /* for INT, FLOAT, BOOL, INT_PAIR (both); lists default to empty */
    int required;           /* 1: the caller must give it */
} tg_attr_spec;

typedef struct tg_op_sizes {
    size_t aux_bytes;        /* kept from forward to backward */
    size_t scratch_forward;  /* temporary, valid during forward only */
    size_t scratch_backward; /* temporary, valid during backward only */
} tg_op_sizes;

typedef struct tg_op_def tg_op_def;

/* The ONNX exporter's emitter and a node's view of it (export/onnx.h). */
typedef struct tg_onnx_emitter tg_onnx_emitter;
typedef struct tg_onnx_node_ctx tg_onnx_node_ctx;

/* Everything a kernel sees. Buffers are 64-byte aligned. */
typedef struct tg_op_io {
    const tg_op_def *def;
    const void *attrs;               /* the op's attrs struct */
    const tg_tensor *const *in;      /* [n_in]; in[i] NULL for an absent optional input */
    int n_in;
    tg_tensor *out;                  /* allocated by the caller from infer's shape */
    void *aux;                       /* [sizes.aux_bytes] */
    void *scratch;                   /* [sizes.scratch_forward or scratch_backward] */
    int training;                    /* 1 in a training step (batchnorm, dropout) */
    uint64_t seed;                   /* randomness of this call (dropout) */
    const tg_tensor *grad_out;       /* backward: same shape as out */
    tg_tensor *const *grad_in;       /* backward: [n_in]; NULL where not wanted; += into these */
    /* backward, for ops with backward_writes_fresh only: bit i set means grad_in[i] holds
     * garbage, not a gradient: write it whole (=, as if += into zeros) instead of adding. */
    uint64_t grad_in_fresh;
} tg_op_io;

typedef tg_status (*tg_op_infer_fn)(const tg_tensor *const *in, int n_in, const void *attrs,
                                    tg_tensor *out, tg_op_sizes *sizes);
typedef tg_status (*tg_op_kernel_fn)(const tg_op_io *io);

struct tg_op_def {
    const char *name;                 /* "conv2d" */
    const char *const *input_names;   /* NULL-terminated; "?x" marks an optional input */
    int variadic;                     /* 1: any count >= 1 of the single named input (concat) */
    uint64_t no_grad_inputs;          /* bit i: input i never gets a gradient (targets, indices) */
    const tg_attr_spec *attr_specs;
    int n_attrs;
    size_t attrs_size;                /* sizeof the attrs struct (<= TG_MAX_ATTR_BYTES) */
    tg_op_infer_fn infer;
    tg_op_kernel_fn forward;
    tg_op_kernel_fn backward;         /* NULL: not differentiable (e.g. argmax) */
    /* Optional: writes the op as ONNX nodes in inference (eval) mode through the
     * emitter (export/onnx.h). NULL: a model using the op cannot be exported. */
    tg_status (*onnx)(tg_onnx_emitter *e, const tg_onnx_node_ctx *n);
    /* Optional facts for the graph's memory plan; 0, the default, is always safe.
     * backward_skips_inputs, bit i: backward never reads input i's data (shapes only);
     * backward_skips_output: backward never reads out's data. What backward does not
     * read is freed (reused) as soon as forward is done with it. */
    uint64_t backward_skips_inputs;
    int backward_skips_output;
    /* 1: forward is correct with out->data == in[0]->data (same shape; element i of out
     * depends only on element i of in[0] and on the other inputs), so the plan may give
     * the output the memory of an in[0] that nothing reads afterwards. */
    int forward_in_place;
    /* 1: backward honours io->grad_in_fresh, which spares the executor zeroing the
     * gradients this op is the first to write. */
    int backward_writes_fresh;
};

/* ---- registry (registry.c, rows in op_list.h) ---- */
int tg_op_count(void);
const tg_op_def *tg_op_at(int index);
/* NULL when no op has this name. */
const tg_op_def *tg_op_find(const char *name);

/* ---- helpers for op definitions (op.c) ---- */

/* Writes every attr's default into `attrs` (attrs_size bytes, zeroed first). */
void tg_attrs_set_defaults(const tg_op_def *def, void *attrs);

/* Sets one attr by its keyword, for graph builders that do not see the op's attrs
 * struct. INT_PAIR and INT_LIST take `count` values (one value fills a pair);
 * INT, BOOL and FLOAT take one. TG_STATUS_VALUE when the op has no such attr or
 * the count does not fit. */
tg_status tg_attrs_set_ints(const tg_op_def *def, void *attrs, const char *name, const int64_t *values, int count);
tg_status tg_attrs_set_float(const tg_op_def *def, void *attrs, const char *name, double value);

/* Checks the input count against def->input_names / variadic. */
tg_status tg_op_check_arity(const tg_op_def *def, int n_in, const tg_tensor *const *in);

/* Fails with TG_STATUS_DTYPE naming the op and argument unless t->dtype == dtype. */
tg_status tg_check_dtype(const tg_tensor *t, tg_dtype dtype, const char *op, const char *arg);

/* Fails with TG_STATUS_SHAPE unless t->ndim == ndim. */
tg_status tg_check_ndim(const tg_tensor *t, int ndim, const char *op, const char *arg);

/* For backward_writes_fresh ops: zeroes the fresh gradients the op does not write
 * itself (bits of io->grad_in_fresh outside `written`), so that it may += into them. */
static inline void tg_zero_fresh_grads(const tg_op_io *io, uint64_t written)
{
    uint64_t rest = io->grad_in_fresh & ~written;
    for (int k = 0; k < io->n_in && k < 64; k++)
        if ((rest >> k & 1u) && io->grad_in[k]) memset(io->grad_in[k]->data, 0, tg_tensor_nbytes(io->grad_in[k]));
}

/* Scratch sizes are rounded to this so several buffers can be carved from one. */
static inline size_t tg_align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* ---- calling one op alone (the Python ops module, tests) ---- */

/* One eager call: inputs and attrs in; output and aux owned by the call. */
typedef struct tg_op_call {
    const tg_op_def *def;
    const void *attrs;
    const tg_tensor *const *in;
    int n_in;
    int training;
    uint64_t seed;
    tg_tensor out;       /* set by tg_op_call_forward */
    void *aux;
    tg_op_sizes sizes;
} tg_op_call;

/* Infers, allocates and runs forward. On failure nothing stays allocated. */
tg_status tg_op_call_forward(tg_op_call *call);

/* Runs backward after tg_op_call_forward. grad_in[i] is initialised here with
 * zeros of in[i]'s shape when want[i] is set and the input is differentiable,
 * and left empty otherwise. On failure every grad_in is freed. */
tg_status tg_op_call_backward(tg_op_call *call, const tg_tensor *grad_out, const int *want, tg_tensor *grad_in);

void tg_op_call_free(tg_op_call *call);

#endif
