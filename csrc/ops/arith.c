/* arith.c: float32 arithmetic with numpy broadcasting: add, sub, mul, div.
 *
 * One strided loop (tg_arith_strided) serves all four ops, forward and backward:
 * dims are coalesced first, so the common cases (same shape, a [C, 1, 1] or row
 * vector operand, a scalar) run as long contiguous rows against a vector or a
 * constant. Gradients of broadcast inputs are summed by tg_reduce_sum_to.
 * Not here: activations (elementwise.c), reductions as ops (reduce.c). */
#include <stddef.h>
#include <string.h>

#include "../export/onnx.h"
#include "arith.h"
#include "op.h"
#include "reduce.h"
#include "vmath.h"

#define TG_ARITH_GRAIN 16384

static const char *const binary_inputs[] = {"a", "b", NULL};

/* ---- the strided loop ---- */

/* One contiguous output row: `sa`, `sb` are 1 (a vector) or 0 (a constant). */
#define ARITH_ROW_LOOPS(OP)                                                            \
    do {                                                                               \
        if (sa && sb) {                                                                \
            if (accumulate) for (int64_t i = 0; i < n; i++) out[i] += a[i] OP b[i];    \
            else for (int64_t i = 0; i < n; i++) out[i] = a[i] OP b[i];                \
        } else if (sa) {                                                               \
            const float bv = b[0];                                                     \
            if (accumulate) for (int64_t i = 0; i < n; i++) out[i] += a[i] OP bv;      \
            else for (int64_t i = 0; i < n; i++) out[i] = a[i] OP bv;                  \
        } else if (sb) {                                                               \
            const float av = a[0];                                                     \
            if (accumulate) for (int64_t i = 0; i < n; i++) out[i] += av OP b[i];      \
            else for (int64_t i = 0; i < n; i++) out[i] = av OP b[i];                  \
        } else {                                                                       \
            const float v = a[0] OP b[0];                                              \
            if (accumulate) for (int64_t i = 0; i < n; i++) out[i] += v;               \
            else for (int64_t i = 0; i < n; i++) out[i] = v;                           \
        }                                                                              \
    } while (0)

/* NOTE: a and out are not restrict: in place, out is a (add, sub). */
TG_SIMD_FUNCTION(arith_row,
                 (tg_arith_kind kind, int accumulate, const float *a, int64_t sa, const float *restrict b,
                  int64_t sb, float *out, int64_t n),
                 (kind, accumulate, a, sa, b, sb, out, n))
{
    switch (kind) {
    case TG_ARITH_KIND_ADD: ARITH_ROW_LOOPS(+); break;
    case TG_ARITH_KIND_SUB: ARITH_ROW_LOOPS(-); break;
    case TG_ARITH_KIND_MUL: ARITH_ROW_LOOPS(*); break;
    case TG_ARITH_KIND_DIV: ARITH_ROW_LOOPS(/); break;
    }
}

typedef struct arith_ctx {
    tg_arith_kind kind;
    int accumulate;
    int ndim;                         /* coalesced dims, >= 1 */
    int64_t shape[TG_MAX_DIMS];       /* coalesced output shape */
    int64_t stride[2][TG_MAX_DIMS];   /* element strides of a, b; the last is 0 or 1 */
    const float *a, *b;
    float *out;                       /* [prod(shape)] */
} arith_ctx;

/* Drops size-1 dims and merges neighbours that both inputs walk contiguously, so
 * that [N, C, H, W] + [C, 1, 1] becomes rows of H*W against one value. */
static void arith_coalesce(arith_ctx *c, const tg_broadcast *bc)
{
    int n = 0;
    for (int d = 0; d < bc->ndim; d++) {
        if (bc->shape[d] == 1) continue;
        if (n > 0 && c->stride[0][n - 1] == bc->stride[0][d] * bc->shape[d] &&
            c->stride[1][n - 1] == bc->stride[1][d] * bc->shape[d]) {
            c->shape[n - 1] *= bc->shape[d];
            c->stride[0][n - 1] = bc->stride[0][d];
            c->stride[1][n - 1] = bc->stride[1][d];
            continue;
        }
        c->shape[n] = bc->shape[d];
        c->stride[0][n] = bc->stride[0][d];
        c->stride[1][n] = bc->stride[1][d];
        n++;
    }
    if (n == 0) {
        c->shape[0] = 1;
        c->stride[0][0] = c->stride[1][0] = 0;
        n = 1;
    }
    c->ndim = n;
}

static void arith_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const arith_ctx *c = arg;
    int last = c->ndim - 1;
    int64_t len = c->shape[last], sa = c->stride[0][last], sb = c->stride[1][last];
    int64_t index[TG_MAX_DIMS];
    int64_t rest = begin / len, col = begin % len, off_a = 0, off_b = 0;
    for (int d = last - 1; d >= 0; d--) {
        index[d] = rest % c->shape[d];
        rest /= c->shape[d];
        off_a += index[d] * c->stride[0][d];
        off_b += index[d] * c->stride[1][d];
    }
    for (int64_t pos = begin; pos < end;) {
        int64_t n = len - col < end - pos ? len - col : end - pos;
        arith_row(c->kind, c->accumulate, c->a + off_a + col * sa, sa, c->b + off_b + col * sb, sb, c->out + pos, n);
        pos += n;
        col = 0;
        for (int d = last - 1; d >= 0; d--) {
            off_a += c->stride[0][d];
            off_b += c->stride[1][d];
            if (++index[d] < c->shape[d]) break;
            off_a -= c->shape[d] * c->stride[0][d];
            off_b -= c->shape[d] * c->stride[1][d];
            index[d] = 0;
        }
    }
}

void tg_arith_strided(tg_arith_kind kind, int accumulate, const tg_broadcast *bc, const float *a, const float *b,
                      float *out)
{
    arith_ctx c = {.kind = kind, .accumulate = accumulate, .a = a, .b = b, .out = out};
    arith_coalesce(&c, bc);
    int64_t numel = 1;
    for (int d = 0; d < bc->ndim; d++) numel *= bc->shape[d];
    tg_parallel_for(numel, TG_ARITH_GRAIN, arith_range, &c);
}

/* ---- shared by the four ops ---- */

static tg_status binary_infer(const tg_tensor *const *in, const char *op, tg_tensor *out)
{
    TG_TRY(tg_check_dtype(in[0], TG_DTYPE_F32, op, "a"));
    TG_TRY(tg_check_dtype(in[1], TG_DTYPE_F32, op, "b"));
    tg_broadcast bc;
    TG_TRY(tg_broadcast_init(&bc, in[0], in[1], op));
    return tg_tensor_set_shape(out, TG_DTYPE_F32, bc.ndim, bc.shape);
}

static tg_status binary_forward(const tg_op_io *io, tg_arith_kind kind)
{
    tg_broadcast bc;
    TG_TRY(tg_broadcast_init(&bc, io->in[0], io->in[1], io->def->name));
    tg_arith_strided(kind, 0, &bc, io->in[0]->data, io->in[1]->data, io->out->data);
    return TG_STATUS_OK;
}

/* The shape of input `which` with leading 1s up to the output's ndim. */
static void aligned_input_shape(const tg_broadcast *bc, const tg_tensor *input, int64_t *shape)
{
    for (int d = 0; d < bc->ndim; d++) {
        int src = d - (bc->ndim - input->ndim);
        shape[d] = src >= 0 ? input->shape[src] : 1;
    }
}

/* grad += scale * g summed over the dims that input `which` broadcasts (grad = that
 * when fresh); g has the output's shape. */
static void sum_into_input_grad(const tg_broadcast *bc, const tg_tensor *input, const float *g, float scale,
                                int fresh, float *grad)
{
    int64_t shape[TG_MAX_DIMS];
    aligned_input_shape(bc, input, shape);
    tg_reduce_sum_to(g, bc->ndim, bc->shape, shape, scale, !fresh, grad);
}

/* 1 when io->grad_in[k] is to be written, not added to (backward_writes_fresh). */
static int grad_fresh(const tg_op_io *io, int k) { return (int)(io->grad_in_fresh >> k & 1u); }

/* A broadcast that reads its first operand contiguously with the output's shape
 * (a gradient) and its second through input `which`'s strides. */
static tg_broadcast grad_times_input(const tg_broadcast *bc, int which)
{
    tg_broadcast g = *bc;
    int64_t stride = 1;
    for (int d = bc->ndim - 1; d >= 0; d--) {
        g.stride[0][d] = bc->shape[d] == 1 ? 0 : stride;
        g.stride[1][d] = bc->stride[which][d];
        stride *= bc->shape[d];
    }
    return g;
}

static int has_output_shape(const tg_broadcast *bc, const tg_tensor *input)
{
    int64_t shape[TG_MAX_DIMS];
    aligned_input_shape(bc, input, shape);
    for (int d = 0; d < bc->ndim; d++)
        if (shape[d] != bc->shape[d]) return 0;
    return 1;
}

/* ---- add: out = a + b ---- */

static tg_status add_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out, tg_op_sizes *sizes)
{
    (void)n_in; (void)attrs; (void)sizes;
    return binary_infer(in, "add", out);
}

static tg_status add_forward(const tg_op_io *io) { return binary_forward(io, TG_ARITH_KIND_ADD); }

static tg_status add_backward(const tg_op_io *io)
{
    tg_broadcast bc;
    TG_TRY(tg_broadcast_init(&bc, io->in[0], io->in[1], "add"));
    for (int k = 0; k < 2; k++)
        if (io->grad_in[k])
            sum_into_input_grad(&bc, io->in[k], io->grad_out->data, 1.0f, grad_fresh(io, k), io->grad_in[k]->data);
    return TG_STATUS_OK;
}

/* ONNX's Add broadcasts as numpy does, as this op does. */
static tg_status add_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    return tg_onnx_node(e, "Add", n->input, 2, n->output, NULL, 0);
}

/* NOTE: in place, out is a: the forward's loops read a[i] before writing out[i]. */
const tg_op_def tg_op_add = {
    .name = "add", .input_names = binary_inputs,
    .infer = add_infer, .forward = add_forward, .backward = add_backward, .onnx = add_onnx,
    .backward_skips_inputs = 3, .backward_skips_output = 1, .forward_in_place = 1, .backward_writes_fresh = 1,
};

/* ---- sub: out = a - b ---- */

static tg_status sub_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out, tg_op_sizes *sizes)
{
    (void)n_in; (void)attrs; (void)sizes;
    return binary_infer(in, "sub", out);
}

static tg_status sub_forward(const tg_op_io *io) { return binary_forward(io, TG_ARITH_KIND_SUB); }

static tg_status sub_backward(const tg_op_io *io)
{
    tg_broadcast bc;
    TG_TRY(tg_broadcast_init(&bc, io->in[0], io->in[1], "sub"));
    for (int k = 0; k < 2; k++)
        if (io->grad_in[k])
            sum_into_input_grad(&bc, io->in[k], io->grad_out->data, k == 0 ? 1.0f : -1.0f, grad_fresh(io, k),
                                io->grad_in[k]->data);
    return TG_STATUS_OK;
}

/* ONNX's Sub broadcasts as numpy does, as this op does. */
static tg_status sub_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    return tg_onnx_node(e, "Sub", n->input, 2, n->output, NULL, 0);
}

const tg_op_def tg_op_sub = {
    .name = "sub", .input_names = binary_inputs,
    .infer = sub_infer, .forward = sub_forward, .backward = sub_backward, .onnx = sub_onnx,
    .backward_skips_inputs = 3, .backward_skips_output = 1, .forward_in_place = 1, .backward_writes_fresh = 1,
};

/* ---- mul: out = a * b ---- */

static tg_status mul_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out, tg_op_sizes *sizes)
{
    (void)n_in; (void)attrs;
    TG_TRY(binary_infer(in, "mul", out));
    /* [out]: grad_out * other, before summing over a broadcast input's dims */
    if (!tg_shape_equal(in[0], out) || !tg_shape_equal(in[1], out))
        sizes->scratch_backward = tg_align64((size_t)tg_tensor_numel(out) * sizeof(float));
    return TG_STATUS_OK;
}

static tg_status mul_forward(const tg_op_io *io) { return binary_forward(io, TG_ARITH_KIND_MUL); }

static tg_status mul_backward(const tg_op_io *io)
{
    tg_broadcast bc;
    TG_TRY(tg_broadcast_init(&bc, io->in[0], io->in[1], "mul"));
    for (int k = 0; k < 2; k++) {
        if (!io->grad_in[k]) continue;
        tg_broadcast g = grad_times_input(&bc, 1 - k);
        const float *other = io->in[1 - k]->data;
        if (has_output_shape(&bc, io->in[k])) {
            tg_arith_strided(TG_ARITH_KIND_MUL, !grad_fresh(io, k), &g, io->grad_out->data, other,
                             io->grad_in[k]->data);
        } else {
            float *product = io->scratch; /* [out] */
            tg_arith_strided(TG_ARITH_KIND_MUL, 0, &g, io->grad_out->data, other, product);
            sum_into_input_grad(&bc, io->in[k], product, 1.0f, grad_fresh(io, k), io->grad_in[k]->data);
        }
    }
    return TG_STATUS_OK;
}

/* ONNX's Mul broadcasts as numpy does, as this op does. */
static tg_status mul_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    return tg_onnx_node(e, "Mul", n->input, 2, n->output, NULL, 0);
}

const tg_op_def tg_op_mul = {
    .name = "mul", .input_names = binary_inputs,
    .infer = mul_infer, .forward = mul_forward, .backward = mul_backward, .onnx = mul_onnx,
    .backward_skips_output = 1, .backward_writes_fresh = 1,
};

/* ---- div: out = a / b ---- */

static tg_status div_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out, tg_op_sizes *sizes)
{
    (void)n_in; (void)attrs;
    TG_TRY(binary_infer(in, "div", out));
    /* [out] grad_out / b, then [out] grad_out / b * out */
    sizes->scratch_backward = 2 * tg_align64((size_t)tg_tensor_numel(out) * sizeof(float));
    return TG_STATUS_OK;
}

static tg_status div_forward(const tg_op_io *io) { return binary_forward(io, TG_ARITH_KIND_DIV); }

/* da = g / b; db = -g * a / b^2 = -(g / b) * out. */
static tg_status div_backward(const tg_op_io *io)
{
    tg_broadcast bc;
    TG_TRY(tg_broadcast_init(&bc, io->in[0], io->in[1], "div"));
    size_t numel = (size_t)tg_tensor_numel(io->out);
    float *grad_over_b = io->scratch;                                                     /* [out] */
    float *grad_over_b_times_out = (float *)((char *)io->scratch + tg_align64(numel * sizeof(float))); /* [out] */
    tg_broadcast g = grad_times_input(&bc, 1);
    tg_arith_strided(TG_ARITH_KIND_DIV, 0, &g, io->grad_out->data, io->in[1]->data, grad_over_b);
    if (io->grad_in[0]) sum_into_input_grad(&bc, io->in[0], grad_over_b, 1.0f, 0, io->grad_in[0]->data);
    if (io->grad_in[1]) {
        tg_broadcast same = grad_times_input(&bc, 0);
        for (int d = 0; d < bc.ndim; d++) same.stride[1][d] = same.stride[0][d];
        tg_arith_strided(TG_ARITH_KIND_MUL, 0, &same, grad_over_b, io->out->data, grad_over_b_times_out);
        sum_into_input_grad(&bc, io->in[1], grad_over_b_times_out, -1.0f, 0, io->grad_in[1]->data);
    }
    return TG_STATUS_OK;
}

/* ONNX's Div broadcasts as numpy does, as this op does. */
static tg_status div_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    return tg_onnx_node(e, "Div", n->input, 2, n->output, NULL, 0);
}

const tg_op_def tg_op_div = {
    .name = "div", .input_names = binary_inputs,
    .infer = div_infer, .forward = div_forward, .backward = div_backward, .onnx = div_onnx,
};
