/* linalg.c: linear (x @ weight^T + bias) and matmul (batched, broadcasting), both on
 * tg_gemm_*. Each op: its shape rule, forward kernel and backward kernel, then its tg_op_def.
 * Not here: conv (conv.c), attention; 1-D matmul operands (use a [1, k] or [k, 1] matrix).
 *
 * linear takes float32, or bfloat16 x and weight (mixed precision: the output and every
 * gradient computation are float32; bias is float32). matmul takes float32. */
#include <string.h>

#include "../export/onnx.h"
#include "gemm.h"
#include "op.h"

#define TG_LINALG_GRAIN 4096

static const char *const linear_inputs[] = {"x", "weight", "?bias", NULL};
static const char *const matmul_inputs[] = {"a", "b", NULL};

/* ---- shared pieces ---- */

typedef struct widen_ctx {
    const tg_bf16 *src;   /* [n] */
    float *dst;           /* [n] */
} widen_ctx;

static void widen_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const widen_ctx *c = arg;
    for (int64_t i = begin; i < end; i++) c->dst[i] = tg_bf16_to_f32(c->src[i]);
}

static void widen_bf16(const tg_bf16 *src, float *dst, int64_t n)
{
    widen_ctx c = {.src = src, .dst = dst};
    tg_parallel_for(n, TG_LINALG_GRAIN * 4, widen_range, &c);
}

typedef struct add_into_ctx {
    const float *src;     /* [n] */
    void *dst;            /* [n] float32 or bfloat16 */
    int dst_bf16;
} add_into_ctx;

static void add_into_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const add_into_ctx *c = arg;
    if (c->dst_bf16) {
        tg_bf16 *d = c->dst;
        for (int64_t i = begin; i < end; i++) d[i] = tg_bf16_from_f32(tg_bf16_to_f32(d[i]) + c->src[i]);
    } else {
        float *d = c->dst;
        for (int64_t i = begin; i < end; i++) d[i] += c->src[i];
    }
}

/* dst += src, dst float32 or bfloat16 (rounded once per element). */
static void add_into(const float *src, void *dst, int dst_bf16, int64_t n)
{
    add_into_ctx c = {.src = src, .dst = dst, .dst_bf16 = dst_bf16};
    tg_parallel_for(n, TG_LINALG_GRAIN * 4, add_into_range, &c);
}

/* ---- linear: y[..., out] = x[..., in] @ weight[out, in]^T + bias[out] ---- */

/* NOTE: bfloat16 inputs are widened to float32 in backward scratch once, so that the
 * three backward GEMMs run in float32 against a float32 grad_output; a bfloat16
 * gradient tensor is accumulated through a float32 scratch and rounded once. */
typedef struct linear_layout {
    int64_t rows, in, out;   /* x viewed as [rows, in] */
    int bf16;
    size_t x_f32, w_f32, grad_tmp;   /* byte offsets in backward scratch */
} linear_layout;

static tg_status linear_layout_init(const tg_tensor *const *in, int n_in, linear_layout *l)
{
    const tg_tensor *x = in[0], *w = in[1], *bias = n_in > 2 ? in[2] : NULL;
    char xs[96], ws[96];
    if (x->dtype != TG_DTYPE_F32 && x->dtype != TG_DTYPE_BF16)
        return tg_error(TG_STATUS_DTYPE, "linear: x must be float32 or bfloat16, got %s", tg_dtype_name(x->dtype));
    if (w->dtype != x->dtype)
        return tg_error(TG_STATUS_DTYPE, "linear: weight must have x's dtype %s, got %s; convert one of them",
                        tg_dtype_name(x->dtype), tg_dtype_name(w->dtype));
    TG_TRY(tg_check_ndim(w, 2, "linear", "weight [out, in]"));
    if (x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
        return tg_error(TG_STATUS_SHAPE, "linear: x %s must end in weight's in-features %lld (weight %s)",
                        tg_shape_str(x, xs, sizeof xs), (long long)w->shape[1], tg_shape_str(w, ws, sizeof ws));
    if (bias) {
        TG_TRY(tg_check_dtype(bias, TG_DTYPE_F32, "linear", "bias"));
        if (bias->ndim != 1 || bias->shape[0] != w->shape[0])
            return tg_error(TG_STATUS_SHAPE, "linear: bias must have shape (%lld,) (weight's out-features), got %s",
                            (long long)w->shape[0], tg_shape_str(bias, xs, sizeof xs));
    }
    l->in = w->shape[1];
    l->out = w->shape[0];
    l->rows = l->in > 0 ? tg_tensor_numel(x) / l->in : 1;
    for (int d = 0; d < x->ndim - 1 && l->in == 0; d++) l->rows *= x->shape[d];
    l->bf16 = x->dtype == TG_DTYPE_BF16;
    size_t x_bytes = tg_align64(sizeof(float) * (size_t)(l->rows * l->in));
    size_t w_bytes = tg_align64(sizeof(float) * (size_t)(l->out * l->in));
    l->x_f32 = 0;
    l->w_f32 = x_bytes;
    l->grad_tmp = x_bytes + w_bytes;
    return TG_STATUS_OK;
}

static tg_status linear_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                              tg_op_sizes *sizes)
{
    (void)attrs;
    linear_layout l = {0};
    TG_TRY(linear_layout_init(in, n_in, &l));
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, in[0]->shape, sizeof shape);
    shape[in[0]->ndim - 1] = l.out;
    if (l.bf16) {
        size_t largest = l.rows * l.in > l.out * l.in ? (size_t)(l.rows * l.in) : (size_t)(l.out * l.in);
        sizes->scratch_backward = l.grad_tmp + tg_align64(sizeof(float) * largest);
    }
    return tg_tensor_set_shape(out, TG_DTYPE_F32, in[0]->ndim, shape);
}

typedef struct bias_ctx {
    const float *bias;    /* [out] */
    float *y;             /* [rows, out]: forward fills rows with bias */
    const float *gy;      /* [rows, out]: backward sums columns */
    float *grad_bias;     /* [out] (+=) */
    int64_t rows, out;
} bias_ctx;

static void bias_fill_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const bias_ctx *c = arg;
    for (int64_t r = begin; r < end; r++) memcpy(c->y + r * c->out, c->bias, sizeof(float) * (size_t)c->out);
}

/* Each thread owns a range of bias columns and adds every row's value in row order. */
static void bias_grad_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const bias_ctx *c = arg;
    float *restrict gb = c->grad_bias;
    for (int64_t r = 0; r < c->rows; r++) {
        const float *restrict row = c->gy + r * c->out;
        for (int64_t j = begin; j < end; j++) gb[j] += row[j];
    }
}

static tg_status linear_forward(const tg_op_io *io)
{
    linear_layout l = {0};
    TG_TRY(linear_layout_init(io->in, io->n_in, &l));
    const tg_tensor *bias = io->n_in > 2 ? io->in[2] : NULL;
    float *y = io->out->data;   /* [rows, out] */
    if (bias) {
        bias_ctx c = {.bias = bias->data, .y = y, .rows = l.rows, .out = l.out};
        tg_parallel_for(l.rows, TG_LINALG_GRAIN / (l.out + 1) + 1, bias_fill_range, &c);
    }
    float beta = bias ? 1.0f : 0.0f;
    if (l.bf16)
        tg_gemm_bf16(0, 1, l.rows, l.out, l.in, io->in[0]->data, l.in, io->in[1]->data, l.in, beta, y, l.out);
    else
        tg_gemm_f32(0, 1, l.rows, l.out, l.in, io->in[0]->data, l.in, io->in[1]->data, l.in, beta, y, l.out);
    return TG_STATUS_OK;
}

/* grad += op(A) @ op(B) for a float32 or bfloat16 gradient tensor (tmp: float32 scratch). */
static void gemm_into_grad(tg_tensor *grad, float *tmp, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                           const float *a, int64_t lda, const float *b, int64_t ldb)
{
    if (grad->dtype == TG_DTYPE_F32) {
        tg_gemm_f32(trans_a, trans_b, m, n, k, a, lda, b, ldb, 1.0f, grad->data, n);
        return;
    }
    tg_gemm_f32(trans_a, trans_b, m, n, k, a, lda, b, ldb, 0.0f, tmp, n);
    add_into(tmp, grad->data, 1, m * n);
}

static tg_status linear_backward(const tg_op_io *io)
{
    linear_layout l = {0};
    TG_TRY(linear_layout_init(io->in, io->n_in, &l));
    const float *gy = io->grad_out->data;   /* [rows, out] */
    const float *x = io->in[0]->data;       /* [rows, in] */
    const float *w = io->in[1]->data;       /* [out, in] */
    float *tmp = NULL;                      /* [max(rows, out) * in] */
    if (l.bf16) {
        char *scratch = io->scratch;
        float *x_f32 = (float *)(scratch + l.x_f32), *w_f32 = (float *)(scratch + l.w_f32);
        tmp = (float *)(scratch + l.grad_tmp);
        if (io->grad_in[1]) widen_bf16(io->in[0]->data, x_f32, l.rows * l.in);
        if (io->grad_in[0]) widen_bf16(io->in[1]->data, w_f32, l.out * l.in);
        x = x_f32;
        w = w_f32;
    }
    if (io->grad_in[0]) gemm_into_grad(io->grad_in[0], tmp, 0, 0, l.rows, l.in, l.out, gy, l.out, w, l.in);
    if (io->grad_in[1]) gemm_into_grad(io->grad_in[1], tmp, 1, 0, l.out, l.in, l.rows, gy, l.out, x, l.in);
    if (io->n_in > 2 && io->grad_in[2]) {
        bias_ctx c = {.gy = gy, .grad_bias = io->grad_in[2]->data, .rows = l.rows, .out = l.out};
        tg_parallel_for(l.out, 64, bias_grad_range, &c);
    }
    return TG_STATUS_OK;
}

/* [N, in] x: Gemm(x, weight, bias, transB = 1); more dims: MatMul(x, Transpose(weight)) + bias. */
static tg_status linear_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    int has_bias = n->n_in > 2 && n->input[2];
    if (n->in[0]->ndim == 2) {
        tg_onnx_attr trans_b = tg_onnx_attr_int("transB", 1);
        return tg_onnx_node(e, "Gemm", n->input, has_bias ? 3 : 2, n->output, &trans_b, 1);
    }
    const char *weight_t, *product = n->output;
    static const int64_t perm[2] = {1, 0};
    tg_onnx_attr transpose = tg_onnx_attr_ints("perm", perm, 2);
    TG_TRY(tg_onnx_temp_name(e, n->output, &weight_t));
    TG_TRY(tg_onnx_node(e, "Transpose", &n->input[1], 1, weight_t, &transpose, 1));
    if (has_bias) TG_TRY(tg_onnx_temp_name(e, n->output, &product));
    const char *operands[2] = {n->input[0], weight_t};
    TG_TRY(tg_onnx_node(e, "MatMul", operands, 2, product, NULL, 0));
    if (!has_bias) return TG_STATUS_OK;
    const char *sum[2] = {product, n->input[2]};
    return tg_onnx_node(e, "Add", sum, 2, n->output, NULL, 0);
}

const tg_op_def tg_op_linear = {
    .name = "linear", .input_names = linear_inputs,
    .infer = linear_infer, .forward = linear_forward, .backward = linear_backward, .onnx = linear_onnx,
};

/* ---- matmul: out[batch..., m, n] = a[batch..., m, k] @ b[batch..., k, n] ----
 * Batch dims (all but the last two) broadcast like numpy; both operands need 2+ dims. */

typedef struct matmul_layout {
    int64_t m, k, n;
    int batch_ndim;
    int64_t batch_shape[TG_MAX_DIMS];      /* output batch dims */
    int64_t a_stride[TG_MAX_DIMS];         /* in matrices, per output batch dim; 0 where broadcast */
    int64_t b_stride[TG_MAX_DIMS];
    int64_t batch;                         /* product of batch_shape */
    int64_t a_batch, b_batch;              /* matrices in a and b */
} matmul_layout;

static tg_status matmul_layout_init(const tg_tensor *a, const tg_tensor *b, matmul_layout *l)
{
    char as[96], bs[96];
    TG_TRY(tg_check_dtype(a, TG_DTYPE_F32, "matmul", "a"));
    TG_TRY(tg_check_dtype(b, TG_DTYPE_F32, "matmul", "b"));
    if (a->ndim < 2 || b->ndim < 2)
        return tg_error(TG_STATUS_SHAPE, "matmul: a %s and b %s need at least 2 dims each; reshape a vector to [1, k] or [k, 1]",
                        tg_shape_str(a, as, sizeof as), tg_shape_str(b, bs, sizeof bs));
    l->m = a->shape[a->ndim - 2];
    l->k = a->shape[a->ndim - 1];
    l->n = b->shape[b->ndim - 1];
    if (b->shape[b->ndim - 2] != l->k)
        return tg_error(TG_STATUS_SHAPE, "matmul: a %s has %lld columns but b %s has %lld rows; they must agree",
                        tg_shape_str(a, as, sizeof as), (long long)l->k, tg_shape_str(b, bs, sizeof bs),
                        (long long)b->shape[b->ndim - 2]);
    int an = a->ndim - 2, bn = b->ndim - 2;
    l->batch_ndim = an > bn ? an : bn;
    l->batch = 1;
    l->a_batch = 1;
    l->b_batch = 1;
    int64_t a_step = 1, b_step = 1;
    for (int d = l->batch_ndim - 1; d >= 0; d--) {
        int ad = d - (l->batch_ndim - an), bd = d - (l->batch_ndim - bn);
        int64_t da = ad >= 0 ? a->shape[ad] : 1, db = bd >= 0 ? b->shape[bd] : 1;
        if (da != db && da != 1 && db != 1)
            return tg_error(TG_STATUS_SHAPE, "matmul: batch dims of a %s and b %s do not broadcast (%lld vs %lld)",
                            tg_shape_str(a, as, sizeof as), tg_shape_str(b, bs, sizeof bs), (long long)da, (long long)db);
        l->batch_shape[d] = da > db ? da : db;
        if (da == 0 || db == 0) l->batch_shape[d] = 0;
        l->a_stride[d] = da == 1 ? 0 : a_step;
        l->b_stride[d] = db == 1 ? 0 : b_step;
        a_step *= da;
        b_step *= db;
        l->batch *= l->batch_shape[d];
    }
    l->a_batch = a_step;
    l->b_batch = b_step;
    return TG_STATUS_OK;
}

static tg_status matmul_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                              tg_op_sizes *sizes)
{
    (void)n_in; (void)attrs; (void)sizes;
    matmul_layout l = {0};
    TG_TRY(matmul_layout_init(in[0], in[1], &l));
    int64_t shape[TG_MAX_DIMS];
    for (int d = 0; d < l.batch_ndim; d++) shape[d] = l.batch_shape[d];
    shape[l.batch_ndim] = l.m;
    shape[l.batch_ndim + 1] = l.n;
    return tg_tensor_set_shape(out, TG_DTYPE_F32, l.batch_ndim + 2, shape);
}

/* Matrix index in a (which 0) or b (which 1) of output batch `index`. */
static int64_t matmul_source(const matmul_layout *l, int which, int64_t index)
{
    int64_t offset = 0;
    for (int d = l->batch_ndim - 1; d >= 0; d--) {
        int64_t i = index % l->batch_shape[d];
        index /= l->batch_shape[d];
        offset += i * (which ? l->b_stride[d] : l->a_stride[d]);
    }
    return offset;
}

typedef struct matmul_ctx {
    matmul_layout l;
    const float *a, *b;     /* [a_batch, m, k], [b_batch, k, n] */
    const float *gy;        /* [batch, m, n] (backward) */
    float *out;             /* forward: y [batch, m, n]; backward: da or db (+=) */
} matmul_ctx;

static void matmul_forward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const matmul_ctx *c = arg;
    const matmul_layout *l = &c->l;
    for (int64_t i = begin; i < end; i++)
        tg_gemm_f32(0, 0, l->m, l->n, l->k, c->a + matmul_source(l, 0, i) * l->m * l->k, l->k,
                    c->b + matmul_source(l, 1, i) * l->k * l->n, l->n, 0.0f, c->out + i * l->m * l->n, l->n);
}

/* NOTE: batches run one per thread when each GEMM is too small to split itself
 * (tg_gemm_f32 then runs inline in the worker); large GEMMs run one after another,
 * each split over the threads. Either way every output matrix is computed alone. */
static int64_t matmul_grain(const matmul_layout *l)
{
    return (double)l->m * (double)l->n * (double)l->k >= (double)(1 << 20) ? l->batch + 1 : 1;
}

static tg_status matmul_forward(const tg_op_io *io)
{
    matmul_ctx c = {.a = io->in[0]->data, .b = io->in[1]->data, .out = io->out->data};
    TG_TRY(matmul_layout_init(io->in[0], io->in[1], &c.l));
    tg_parallel_for(c.l.batch, matmul_grain(&c.l), matmul_forward_range, &c);
    return TG_STATUS_OK;
}

/* da[j] += sum over output batches i reading a[j], in increasing i, of gy[i] @ b[src(i)]^T. */
static void matmul_grad_a_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const matmul_ctx *c = arg;
    const matmul_layout *l = &c->l;
    for (int64_t j = begin; j < end; j++)
        for (int64_t i = 0; i < l->batch; i++) {
            if (matmul_source(l, 0, i) != j) continue;
            tg_gemm_f32(0, 1, l->m, l->k, l->n, c->gy + i * l->m * l->n, l->n,
                        c->b + matmul_source(l, 1, i) * l->k * l->n, l->n, 1.0f, c->out + j * l->m * l->k, l->k);
        }
}

/* db[j] += sum over output batches i reading b[j], in increasing i, of a[src(i)]^T @ gy[i]. */
static void matmul_grad_b_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const matmul_ctx *c = arg;
    const matmul_layout *l = &c->l;
    for (int64_t j = begin; j < end; j++)
        for (int64_t i = 0; i < l->batch; i++) {
            if (matmul_source(l, 1, i) != j) continue;
            tg_gemm_f32(1, 0, l->k, l->n, l->m, c->a + matmul_source(l, 0, i) * l->m * l->k, l->k,
                        c->gy + i * l->m * l->n, l->n, 1.0f, c->out + j * l->k * l->n, l->n);
        }
}

static tg_status matmul_backward(const tg_op_io *io)
{
    matmul_ctx c = {.a = io->in[0]->data, .b = io->in[1]->data, .gy = io->grad_out->data};
    TG_TRY(matmul_layout_init(io->in[0], io->in[1], &c.l));
    if (c.l.batch == 0) return TG_STATUS_OK;
    int64_t grain = matmul_grain(&c.l);
    if (io->grad_in[0]) {
        c.out = io->grad_in[0]->data;
        tg_parallel_for(c.l.a_batch, grain, matmul_grad_a_range, &c);
    }
    if (io->grad_in[1]) {
        c.out = io->grad_in[1]->data;
        tg_parallel_for(c.l.b_batch, grain, matmul_grad_b_range, &c);
    }
    return TG_STATUS_OK;
}

static tg_status matmul_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    return tg_onnx_node(e, "MatMul", n->input, 2, n->output, NULL, 0);
}

const tg_op_def tg_op_matmul = {
    .name = "matmul", .input_names = matmul_inputs,
    .infer = matmul_infer, .forward = matmul_forward, .backward = matmul_backward, .onnx = matmul_onnx,
};
