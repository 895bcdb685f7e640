/* elementwise.c: activations (unary, float32) and broadcasting arithmetic.
 * Each op: its shape rule, forward kernel and backward kernel, then its tg_op_def. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "broadcast.h"
#include "op.h"

static const char *const unary_inputs[] = {"x", NULL};
static const char *const binary_inputs[] = {"a", "b", NULL};

#define TG_ELEMENTWISE_GRAIN 16384

/* Shape rule of every float32 unary op: the output is like x. */
static tg_status unary_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out, tg_op_sizes *sizes)
{
    (void)n_in; (void)attrs; (void)sizes;
    TG_TRY(tg_check_dtype(in[0], TG_DTYPE_F32, "activation", "x"));
    return tg_tensor_set_shape(out, TG_DTYPE_F32, in[0]->ndim, in[0]->shape);
}

/* ---- relu: y = max(x, 0) ---- */

typedef struct unary_ctx {
    const float *x, *y, *gy;   /* [n] */
    float *out;                /* [n]: y in forward, dx in backward (+=) */
    const void *attrs;
} unary_ctx;

static void relu_forward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const unary_ctx *c = arg;
    for (int64_t i = begin; i < end; i++) c->out[i] = c->x[i] > 0.0f ? c->x[i] : 0.0f;
}

static tg_status relu_forward(const tg_op_io *io)
{
    unary_ctx c = {.x = io->in[0]->data, .out = io->out->data};
    tg_parallel_for(tg_tensor_numel(io->out), TG_ELEMENTWISE_GRAIN, relu_forward_range, &c);
    return TG_STATUS_OK;
}

static void relu_backward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const unary_ctx *c = arg;
    for (int64_t i = begin; i < end; i++) c->out[i] += c->x[i] > 0.0f ? c->gy[i] : 0.0f;
}

static tg_status relu_backward(const tg_op_io *io)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    unary_ctx c = {.x = io->in[0]->data, .gy = io->grad_out->data, .out = io->grad_in[0]->data};
    tg_parallel_for(tg_tensor_numel(io->out), TG_ELEMENTWISE_GRAIN, relu_backward_range, &c);
    return TG_STATUS_OK;
}

const tg_op_def tg_op_relu = {
    .name = "relu", .input_names = unary_inputs,
    .infer = unary_infer, .forward = relu_forward, .backward = relu_backward,
};

/* ---- add: out = a + b, numpy broadcasting ---- */

static tg_status binary_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out, tg_op_sizes *sizes)
{
    (void)n_in; (void)attrs; (void)sizes;
    TG_TRY(tg_check_dtype(in[0], TG_DTYPE_F32, "elementwise op", "a"));
    TG_TRY(tg_check_dtype(in[1], TG_DTYPE_F32, "elementwise op", "b"));
    tg_broadcast bc;
    TG_TRY(tg_broadcast_init(&bc, in[0], in[1], "elementwise op"));
    return tg_tensor_set_shape(out, TG_DTYPE_F32, bc.ndim, bc.shape);
}

typedef struct binary_ctx {
    tg_broadcast bc;
    const float *a, *b;    /* inputs, broadcast by bc */
    float *out;            /* [numel(out)] */
} binary_ctx;

static void add_forward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const binary_ctx *c = arg;
    if (c->bc.same) {
        for (int64_t i = begin; i < end; i++) c->out[i] = c->a[i] + c->b[i];
        return;
    }
    for (int64_t i = begin; i < end; i++)
        c->out[i] = c->a[tg_broadcast_offset(&c->bc, 0, i)] + c->b[tg_broadcast_offset(&c->bc, 1, i)];
}

static tg_status add_forward(const tg_op_io *io)
{
    binary_ctx c = {.a = io->in[0]->data, .b = io->in[1]->data, .out = io->out->data};
    TG_TRY(tg_broadcast_init(&c.bc, io->in[0], io->in[1], "add"));
    tg_parallel_for(tg_tensor_numel(io->out), TG_ELEMENTWISE_GRAIN, add_forward_range, &c);
    return TG_STATUS_OK;
}

static tg_status add_backward(const tg_op_io *io)
{
    tg_broadcast bc;
    TG_TRY(tg_broadcast_init(&bc, io->in[0], io->in[1], "add"));
    for (int k = 0; k < 2; k++)
        if (io->grad_in[k]) tg_broadcast_reduce_grad(&bc, k, io->in[k], io->grad_out->data, NULL, io->grad_in[k]->data);
    return TG_STATUS_OK;
}

const tg_op_def tg_op_add = {
    .name = "add", .input_names = binary_inputs,
    .infer = binary_infer, .forward = add_forward, .backward = add_backward,
};
