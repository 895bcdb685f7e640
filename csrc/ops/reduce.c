/* reduce.c: sum and mean over a list of dims (keepdim or not), and the
 * deterministic sum (tg_reduce_sum_to) that also sums broadcast gradients.
 *
 * Dims are coalesced into alternating kept/summed runs. When the innermost run is
 * summed, each output sums contiguous rows with 16 lanes; when it is kept, each
 * output row accumulates whole input rows (vectorized across the kept dim). Every
 * output belongs to one thread and is summed in a fixed order, so results do not
 * depend on the thread count. Not here: softmax (elementwise.c), norms. */
#include <stddef.h>
#include <string.h>

#include "arith.h"
#include "op.h"
#include "reduce.h"
#include "vmath.h"

#define TG_REDUCE_GRAIN 32768     /* elements summed per parallel chunk, at least */
#define TG_REDUCE_LANES 16
#define TG_REDUCE_COLUMNS 256     /* kept elements accumulated at once on the stack */
#define TG_REDUCE_SEGMENTS 64     /* fixed segments of a full reduction */

/* ---- contiguous sums ---- */

/* *result = sum of x[0..n) in 16 lanes, combined by a fixed tree. */
TG_SIMD_FUNCTION(sum_contiguous, (const float *restrict x, int64_t n, float *restrict result), (x, n, result))
{
    float lane[TG_REDUCE_LANES] = {0};
    int64_t i = 0;
    for (; i + TG_REDUCE_LANES <= n; i += TG_REDUCE_LANES)
        for (int k = 0; k < TG_REDUCE_LANES; k++) lane[k] += x[i + k];
    for (int k = 0; i + k < n; k++) lane[k] += x[i + k];
    for (int width = TG_REDUCE_LANES / 2; width >= 1; width /= 2)
        for (int k = 0; k < width; k++) lane[k] += lane[k + width];
    *result = lane[0];
}

float tg_sum_contiguous(const float *x, int64_t n)
{
    float result;
    sum_contiguous(x, n, &result);
    return result;
}

/* acc[k] += x[k] for k < n. */
TG_SIMD_FUNCTION(add_row, (float *restrict acc, const float *restrict x, int64_t n), (acc, x, n))
{
    for (int64_t k = 0; k < n; k++) acc[k] += x[k];
}

/* dst[k] = scale * x[k], or += when accumulate. */
TG_SIMD_FUNCTION(scale_row, (float *restrict dst, const float *restrict x, float scale, int accumulate, int64_t n),
                 (dst, x, scale, accumulate, n))
{
    if (accumulate) for (int64_t k = 0; k < n; k++) dst[k] += scale * x[k];
    else for (int64_t k = 0; k < n; k++) dst[k] = scale * x[k];
}

/* ---- the plan: coalesced kept/summed runs ---- */

typedef struct reduce_plan {
    int ndim;                        /* coalesced dims */
    int64_t shape[TG_MAX_DIMS];
    int summed[TG_MAX_DIMS];         /* 1: a summed run, 0: a kept run */
    int64_t src_stride[TG_MAX_DIMS]; /* element strides of the contiguous source */
    int64_t dst_stride[TG_MAX_DIMS]; /* element strides of the destination; 0 on summed runs */
    int64_t n_out, n_sum;            /* outputs, and source elements per output */
    const float *src;
    float *dst;
    float scale;
    int accumulate;
} reduce_plan;

static void plan_init(reduce_plan *p, int ndim, const int64_t *shape, const int64_t *dst_shape)
{
    int n = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1) continue;
        int summed = dst_shape[d] == 1;
        if (n > 0 && p->summed[n - 1] == summed) {
            p->shape[n - 1] *= shape[d];
            continue;
        }
        p->shape[n] = shape[d];
        p->summed[n] = summed;
        n++;
    }
    p->ndim = n;
    int64_t src_stride = 1, dst_stride = 1;
    p->n_out = p->n_sum = 1;
    for (int d = n - 1; d >= 0; d--) {
        p->src_stride[d] = src_stride;
        src_stride *= p->shape[d];
        p->dst_stride[d] = p->summed[d] ? 0 : dst_stride;
        if (p->summed[d]) p->n_sum *= p->shape[d];
        else {
            dst_stride *= p->shape[d];
            p->n_out *= p->shape[d];
        }
    }
}

/* Source offset of the `index`-th combination of the dims whose `summed` flag is
 * `which`, among the first `ndim` coalesced dims (row-major order). */
static int64_t plan_offset(const reduce_plan *p, int ndim, int which, int64_t index)
{
    int64_t offset = 0;
    for (int d = ndim - 1; d >= 0; d--) {
        if (p->summed[d] != which) continue;
        offset += (index % p->shape[d]) * p->src_stride[d];
        index /= p->shape[d];
    }
    return offset;
}

/* Moves `offset` to the next combination of the summed dims among the first
 * `ndim` (an odometer over index[]). */
static int64_t plan_next_summed(const reduce_plan *p, int ndim, int64_t *index, int64_t offset)
{
    for (int d = ndim - 1; d >= 0; d--) {
        if (!p->summed[d]) continue;
        offset += p->src_stride[d];
        if (++index[d] < p->shape[d]) return offset;
        offset -= p->shape[d] * p->src_stride[d];
        index[d] = 0;
    }
    return offset;
}

static void store(const reduce_plan *p, float *dst, float sum)
{
    if (p->accumulate) *dst += p->scale * sum;
    else *dst = p->scale * sum;
}

/* Innermost run summed: output o adds, in order, the contiguous rows it owns. */
static void sum_rows_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const reduce_plan *p = arg;
    int last = p->ndim - 1;
    int64_t row_len = p->shape[last], rows = p->n_sum / row_len;
    for (int64_t o = begin; o < end; o++) {
        int64_t base = plan_offset(p, p->ndim, 0, o);
        int64_t index[TG_MAX_DIMS] = {0};
        int64_t offset = base;
        float total = 0.0f;
        for (int64_t r = 0; r < rows; r++) {
            float row_sum;
            sum_contiguous(p->src + offset, row_len, &row_sum);
            total += row_sum;
            offset = plan_next_summed(p, last, index, offset);
        }
        store(p, p->dst + o, total);
    }
}

/* Innermost run kept: unit u is a block of up to 256 outputs of one output row,
 * accumulated over every summed combination in order. */
static void sum_columns_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const reduce_plan *p = arg;
    int last = p->ndim - 1;
    int64_t row_len = p->shape[last];
    int64_t blocks = (row_len + TG_REDUCE_COLUMNS - 1) / TG_REDUCE_COLUMNS;
    float acc[TG_REDUCE_COLUMNS];
    for (int64_t u = begin; u < end; u++) {
        int64_t row = u / blocks, col = (u % blocks) * TG_REDUCE_COLUMNS;
        int64_t n = row_len - col < TG_REDUCE_COLUMNS ? row_len - col : TG_REDUCE_COLUMNS;
        int64_t offset = plan_offset(p, last, 0, row) + col;
        int64_t index[TG_MAX_DIMS] = {0};
        memset(acc, 0, sizeof acc);
        for (int64_t r = 0; r < p->n_sum; r++) {
            add_row(acc, p->src + offset, n);
            offset = plan_next_summed(p, last, index, offset);
        }
        scale_row(p->dst + row * row_len + col, acc, p->scale, p->accumulate, n);
    }
}

typedef struct segment_ctx {
    const float *src;
    int64_t n, segment_len;
    float partial[TG_REDUCE_SEGMENTS];
} segment_ctx;

static void sum_segments_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    segment_ctx *c = arg;
    for (int64_t s = begin; s < end; s++) {
        int64_t from = s * c->segment_len;
        int64_t len = c->n - from < c->segment_len ? c->n - from : c->segment_len;
        sum_contiguous(c->src + from, len > 0 ? len : 0, &c->partial[s]);
    }
}

static void scale_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const reduce_plan *p = arg;
    scale_row(p->dst + begin, p->src + begin, p->scale, p->accumulate, end - begin);
}

void tg_reduce_sum_to(const float *src, int ndim, const int64_t *shape, const int64_t *dst_shape, float scale,
                      int accumulate, float *dst)
{
    reduce_plan p = {.src = src, .dst = dst, .scale = scale, .accumulate = accumulate};
    plan_init(&p, ndim, shape, dst_shape);
    if (p.n_out == 0) return;
    if (p.n_sum == 0) {
        for (int64_t o = 0; o < p.n_out; o++) store(&p, dst + o, 0.0f);
        return;
    }
    if (p.n_sum == 1) {
        tg_parallel_for(p.n_out, TG_REDUCE_GRAIN, scale_range, &p);
        return;
    }
    if (p.n_out == 1) {
        /* NOTE: segments depend on the size only, never on the thread count. */
        segment_ctx c = {.src = src, .n = p.n_sum};
        int64_t segments = (p.n_sum + 1023) / 1024;
        if (segments > TG_REDUCE_SEGMENTS) segments = TG_REDUCE_SEGMENTS;
        c.segment_len = (p.n_sum + segments - 1) / segments;
        int64_t grain = TG_REDUCE_GRAIN / c.segment_len;
        tg_parallel_for(segments, grain > 1 ? grain : 1, sum_segments_range, &c);
        float total = 0.0f;
        for (int64_t s = 0; s < segments; s++) total += c.partial[s];
        store(&p, dst, total);
        return;
    }
    int last = p.ndim - 1;
    if (p.summed[last]) {
        int64_t grain = TG_REDUCE_GRAIN / p.n_sum;
        tg_parallel_for(p.n_out, grain > 1 ? grain : 1, sum_rows_range, &p);
    } else {
        int64_t row_len = p.shape[last];
        int64_t blocks = (row_len + TG_REDUCE_COLUMNS - 1) / TG_REDUCE_COLUMNS;
        int64_t per_unit = p.n_sum * (row_len < TG_REDUCE_COLUMNS ? row_len : TG_REDUCE_COLUMNS);
        int64_t grain = TG_REDUCE_GRAIN / per_unit;
        tg_parallel_for(p.n_out / row_len * blocks, grain > 1 ? grain : 1, sum_columns_range, &p);
    }
}

/* ---- sum and mean: the ops ---- */

typedef struct reduce_attrs {
    tg_int_list dim;   /* dims to reduce, negative from the end; empty: all */
    int keepdim;
} reduce_attrs;

static const tg_attr_spec reduce_attr_specs[] = {
    {"dim", TG_ATTR_KIND_INT_LIST, offsetof(reduce_attrs, dim), 0, 0},
    {"keepdim", TG_ATTR_KIND_BOOL, offsetof(reduce_attrs, keepdim), 0, 0},
};

static const char *const reduce_inputs[] = {"x", NULL};

/* Marks reduced[d] for every dim of the list (all when empty); TG_STATUS_VALUE on a
 * dim out of range or given twice. */
static tg_status reduced_dims(const tg_tensor *x, const reduce_attrs *a, const char *op, int *reduced)
{
    for (int d = 0; d < TG_MAX_DIMS; d++) reduced[d] = a->dim.count == 0;
    int rank = x->ndim > 0 ? x->ndim : 1;
    for (int i = 0; i < a->dim.count; i++) {
        int64_t d = a->dim.values[i];
        if (d < -rank || d >= rank) {
            char buf[96];
            return tg_error(TG_STATUS_VALUE, "%s: dim %lld is out of range for shape %s; use -%d to %d", op,
                            (long long)d, tg_shape_str(x, buf, sizeof buf), rank, rank - 1);
        }
        if (d < 0) d += rank;
        if (reduced[d])
            return tg_error(TG_STATUS_VALUE, "%s: dim %lld appears twice in dim; give each dim once", op,
                            (long long)a->dim.values[i]);
        reduced[d] = 1;
    }
    return TG_STATUS_OK;
}

/* The input's shape with reduced dims set to 1 (the keepdim shape), and their count. */
static tg_status keepdim_shape(const tg_tensor *x, const reduce_attrs *a, const char *op, int64_t *shape,
                               int64_t *count)
{
    int reduced[TG_MAX_DIMS];
    TG_TRY(reduced_dims(x, a, op, reduced));
    *count = 1;
    for (int d = 0; d < x->ndim; d++) {
        shape[d] = reduced[d] ? 1 : x->shape[d];
        if (reduced[d]) *count *= x->shape[d];
    }
    return TG_STATUS_OK;
}

static tg_status reduce_infer(const tg_tensor *const *in, const void *attrs, const char *op, tg_tensor *out)
{
    const reduce_attrs *a = attrs;
    TG_TRY(tg_check_dtype(in[0], TG_DTYPE_F32, op, "x"));
    int reduced[TG_MAX_DIMS];
    TG_TRY(reduced_dims(in[0], a, op, reduced));
    int64_t shape[TG_MAX_DIMS];
    int ndim = 0;
    for (int d = 0; d < in[0]->ndim; d++) {
        if (!reduced[d]) shape[ndim++] = in[0]->shape[d];
        else if (a->keepdim) shape[ndim++] = 1;
    }
    return tg_tensor_set_shape(out, TG_DTYPE_F32, ndim, shape);
}

/* out = scale * sum over the dims; scale 1 (sum) or 1 / count (mean). */
static tg_status reduce_forward(const tg_op_io *io, int mean)
{
    const tg_tensor *x = io->in[0];
    int64_t shape[TG_MAX_DIMS], count;
    TG_TRY(keepdim_shape(x, io->attrs, io->def->name, shape, &count));
    float scale = mean ? 1.0f / (float)count : 1.0f;
    tg_reduce_sum_to(x->data, x->ndim, x->shape, shape, scale, 0, io->out->data);
    return TG_STATUS_OK;
}

/* dx += scale * dy, dy broadcast back over the reduced dims. */
static tg_status reduce_backward(const tg_op_io *io, int mean)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    const tg_tensor *x = io->in[0];
    int64_t shape[TG_MAX_DIMS], count;
    TG_TRY(keepdim_shape(x, io->attrs, io->def->name, shape, &count));
    float scale = mean ? 1.0f / (float)count : 1.0f;
    tg_broadcast bc = {.ndim = x->ndim};
    int64_t stride = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        bc.shape[d] = x->shape[d];
        bc.stride[0][d] = shape[d] == 1 ? 0 : stride;   /* dy, [keepdim shape] */
        bc.stride[1][d] = 0;                             /* scale */
        stride *= shape[d];
    }
    tg_arith_strided(TG_ARITH_KIND_MUL, 1, &bc, io->grad_out->data, &scale, io->grad_in[0]->data);
    return TG_STATUS_OK;
}

/* ---- sum ---- */

static tg_status sum_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out, tg_op_sizes *sizes)
{
    (void)n_in; (void)sizes;
    return reduce_infer(in, attrs, "sum", out);
}

static tg_status sum_forward(const tg_op_io *io) { return reduce_forward(io, 0); }

static tg_status sum_backward(const tg_op_io *io) { return reduce_backward(io, 0); }

const tg_op_def tg_op_sum = {
    .name = "sum", .input_names = reduce_inputs,
    .attr_specs = reduce_attr_specs, .n_attrs = 2, .attrs_size = sizeof(reduce_attrs),
    .infer = sum_infer, .forward = sum_forward, .backward = sum_backward,
};

/* ---- mean ---- */

static tg_status mean_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out, tg_op_sizes *sizes)
{
    (void)n_in; (void)sizes;
    return reduce_infer(in, attrs, "mean", out);
}

static tg_status mean_forward(const tg_op_io *io) { return reduce_forward(io, 1); }

static tg_status mean_backward(const tg_op_io *io) { return reduce_backward(io, 1); }

const tg_op_def tg_op_mean = {
    .name = "mean", .input_names = reduce_inputs,
    .attr_specs = reduce_attr_specs, .n_attrs = 2, .attrs_size = sizeof(reduce_attrs),
    .infer = mean_infer, .forward = mean_forward, .backward = mean_backward,
};
