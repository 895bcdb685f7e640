/* shape.c: ops that move elements without arithmetic: reshape, flatten, permute,
 * transpose, concat, slice, pad (constant, reflect, replicate, circular) and cast.
 *
 * Tensors are always contiguous, so every op here copies. Forward works on any
 * dtype by element size (pad: float32; cast converts); backward takes float32
 * gradients, except cast, whose gradient follows the float dtype it came from.
 * Copies run as contiguous runs (memcpy) wherever the layout allows; permute
 * falls back to 32x32 tiles when the innermost dim moves. Not here: views (there
 * are none), arithmetic (arith.c). */
#include <stddef.h>
#include <string.h>

#include "../export/onnx.h"
#include "op.h"
#include "vmath.h"

#define TG_SHAPE_GRAIN_BYTES 65536   /* bytes copied per parallel chunk, at least */
#define TG_PERMUTE_TILE 32
#define TG_SLICE_END_DEFAULT 1e18    /* "to the end", like Python's x[a:] */

static const char *const unary_inputs[] = {"x", NULL};
static const char *const concat_inputs[] = {"x", NULL};

/* Items of `bytes_each` bytes per parallel chunk so that a chunk moves >= 64 KiB. */
static int64_t grain_for(int64_t bytes_each)
{
    int64_t grain = TG_SHAPE_GRAIN_BYTES / (bytes_each > 0 ? bytes_each : 1);
    return grain > 1 ? grain : 1;
}

/* Wraps a Python-style dim into [0, rank); TG_STATUS_VALUE naming op and arg when out of range. */
static tg_status wrap_dim(int64_t dim, int rank, const tg_tensor *x, const char *op, const char *arg, int *out)
{
    *out = 0;
    if (rank == 0) rank = 1;
    if (dim < -rank || dim >= rank) {
        char buf[96];
        return tg_error(TG_STATUS_VALUE, "%s: %s %lld is out of range for shape %s; use -%d to %d", op, arg,
                        (long long)dim, tg_shape_str(x, buf, sizeof buf), rank, rank - 1);
    }
    *out = (int)(dim < 0 ? dim + rank : dim);
    return TG_STATUS_OK;
}

static tg_status check_grad_dtype(const tg_tensor *x, const char *op)
{
    if (x->dtype == TG_DTYPE_F32) return TG_STATUS_OK;
    return tg_error(TG_STATUS_DTYPE, "%s backward: gradients are float32 only, got input dtype %s; cast to float32 first",
                    op, tg_dtype_name(x->dtype));
}

/* ---- contiguous copy and accumulate ---- */

typedef struct flat_ctx {
    const char *src;
    char *dst;
    size_t elem;
} flat_ctx;

static void copy_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const flat_ctx *c = arg;
    if (c->dst == c->src) return;   /* in place: nothing to move */
    memcpy(c->dst + (size_t)begin * c->elem, c->src + (size_t)begin * c->elem, (size_t)(end - begin) * c->elem);
}

TG_SIMD_FUNCTION(accumulate_row, (float *restrict dst, const float *restrict src, int64_t n), (dst, src, n))
{
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

static void accumulate_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const flat_ctx *c = arg;
    accumulate_row((float *)c->dst + begin, (const float *)c->src + begin, end - begin);
}

/* Copies (or, float32, adds when accumulate) n elements of elem bytes. */
static void copy_or_accumulate(void *dst, const void *src, int64_t n, size_t elem, int accumulate)
{
    flat_ctx c = {.src = src, .dst = dst, .elem = elem};
    tg_parallel_for(n, grain_for((int64_t)elem), accumulate ? accumulate_range : copy_range, &c);
}

/* dx += dy (dx = dy when fresh) for the ops that only re-label dims (reshape, flatten). */
static tg_status relabel_backward(const tg_op_io *io)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    TG_TRY(check_grad_dtype(io->in[0], io->def->name));
    copy_or_accumulate(io->grad_in[0]->data, io->grad_out->data, tg_tensor_numel(io->out), sizeof(float),
                       !(io->grad_in_fresh & 1u));
    return TG_STATUS_OK;
}

/* The memory plan's view of reshape and flatten: backward reads no data, and in place
 * (the output given the input's memory) the forward copy is skipped: a free view. */
#define RELABEL_FACTS \
    .backward_skips_inputs = 1, .backward_skips_output = 1, .forward_in_place = 1, .backward_writes_fresh = 1

static tg_status relabel_forward(const tg_op_io *io)
{
    copy_or_accumulate(io->out->data, io->in[0]->data, tg_tensor_numel(io->out), tg_dtype_size(io->in[0]->dtype), 0);
    return TG_STATUS_OK;
}

/* ---- reshape: same elements, new shape; one -1 dim is inferred ---- */

typedef struct reshape_attrs {
    tg_int_list shape;
} reshape_attrs;

static const tg_attr_spec reshape_attr_specs[] = {
    {"shape", TG_ATTR_KIND_INT_LIST, offsetof(reshape_attrs, shape), 0, 1},
};

static tg_status reshape_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                               tg_op_sizes *sizes)
{
    (void)n_in; (void)sizes;
    const reshape_attrs *a = attrs;
    const tg_tensor *x = in[0];
    char buf[96];
    if (a->shape.count > TG_MAX_DIMS)
        return tg_error(TG_STATUS_SHAPE, "reshape: shape has %d dims; at most %d are supported", a->shape.count,
                        TG_MAX_DIMS);
    int64_t shape[TG_MAX_DIMS], known = 1;
    int inferred = -1;
    for (int d = 0; d < a->shape.count; d++) {
        shape[d] = a->shape.values[d];
        if (shape[d] == -1) {
            if (inferred >= 0) return tg_error(TG_STATUS_VALUE, "reshape: shape has more than one -1; give all but one dim");
            inferred = d;
        } else if (shape[d] < 0) {
            return tg_error(TG_STATUS_VALUE, "reshape: dim %d of shape is %lld; dims must be >= 0 or -1", d,
                            (long long)shape[d]);
        } else {
            known *= shape[d];
        }
    }
    int64_t numel = tg_tensor_numel(x);
    if (inferred >= 0) {
        if (known == 0 || numel % known != 0)
            return tg_error(TG_STATUS_SHAPE, "reshape: cannot infer the -1 dim of shape for input %s (%lld elements)",
                            tg_shape_str(x, buf, sizeof buf), (long long)numel);
        shape[inferred] = numel / known;
        known = numel;
    }
    if (known != numel)
        return tg_error(TG_STATUS_SHAPE, "reshape: input %s has %lld elements, the new shape has %lld",
                        tg_shape_str(x, buf, sizeof buf), (long long)numel, (long long)known);
    return tg_tensor_set_shape(out, x->dtype, a->shape.count, shape);
}

/* Reshape to the node's inferred shape, with dim 0 written as 0 ("as the input's")
 * when it is the input's batch and as -1 otherwise, so that the file's batch stays
 * dynamic. NOTE: a shape that moves the batch to another dim keeps its fixed size. */
static tg_status reshape_to_output_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    int64_t shape[TG_MAX_DIMS];
    for (int d = 0; d < n->out->ndim; d++) shape[d] = n->out->shape[d];
    if (n->out->ndim > 0 && n->in[0]->ndim > 0) shape[0] = n->out->shape[0] == n->in[0]->shape[0] ? 0 : -1;
    const char *shape_name;
    TG_TRY(tg_onnx_const_i64(e, n->output, n->out->ndim, shape, &shape_name));
    const char *inputs[2] = {n->input[0], shape_name};
    return tg_onnx_node(e, "Reshape", inputs, 2, n->output, NULL, 0);
}

const tg_op_def tg_op_reshape = {
    .name = "reshape", .input_names = unary_inputs,
    .attr_specs = reshape_attr_specs, .n_attrs = 1, .attrs_size = sizeof(reshape_attrs),
    .infer = reshape_infer, .forward = relabel_forward, .backward = relabel_backward, .onnx = reshape_to_output_onnx,
    RELABEL_FACTS,
};

/* ---- flatten: dims start_dim..end_dim merged into one ---- */

typedef struct flatten_attrs {
    int64_t start_dim, end_dim;
} flatten_attrs;

static const tg_attr_spec flatten_attr_specs[] = {
    {"start_dim", TG_ATTR_KIND_INT, offsetof(flatten_attrs, start_dim), 1, 0},
    {"end_dim", TG_ATTR_KIND_INT, offsetof(flatten_attrs, end_dim), -1, 0},
};

static tg_status flatten_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                               tg_op_sizes *sizes)
{
    (void)n_in; (void)sizes;
    const flatten_attrs *a = attrs;
    const tg_tensor *x = in[0];
    if (x->ndim == 0) {
        int64_t one = 1;
        return tg_tensor_set_shape(out, x->dtype, 1, &one);
    }
    int start, end;
    TG_TRY(wrap_dim(a->start_dim, x->ndim, x, "flatten", "start_dim", &start));
    TG_TRY(wrap_dim(a->end_dim, x->ndim, x, "flatten", "end_dim", &end));
    if (start > end)
        return tg_error(TG_STATUS_VALUE, "flatten: start_dim %lld comes after end_dim %lld; give start_dim <= end_dim",
                        (long long)a->start_dim, (long long)a->end_dim);
    int64_t shape[TG_MAX_DIMS];
    int ndim = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d <= start || d > end) shape[ndim++] = x->shape[d];
        else shape[ndim - 1] *= x->shape[d];
    }
    return tg_tensor_set_shape(out, x->dtype, ndim, shape);
}

/* Flatten(axis = 1) for the classifier's [N, ...] -> [N, features]; other dims a Reshape. */
static tg_status flatten_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    if (n->out->ndim == 2 && n->in[0]->ndim >= 2 && n->out->shape[0] == n->in[0]->shape[0]) {
        tg_onnx_attr axis = tg_onnx_attr_int("axis", 1);
        return tg_onnx_unary(e, n, "Flatten", &axis, 1);
    }
    return reshape_to_output_onnx(e, n);
}

const tg_op_def tg_op_flatten = {
    .name = "flatten", .input_names = unary_inputs,
    .attr_specs = flatten_attr_specs, .n_attrs = 2, .attrs_size = sizeof(flatten_attrs),
    .infer = flatten_infer, .forward = relabel_forward, .backward = relabel_backward, .onnx = flatten_onnx,
    RELABEL_FACTS,
};

/* ---- the permuted copy shared by permute and transpose ---- */

typedef struct permute_ctx {
    int ndim;                         /* coalesced output dims */
    int64_t shape[TG_MAX_DIMS];       /* coalesced output shape */
    int64_t src_stride[TG_MAX_DIMS];  /* source element stride of each output dim */
    int64_t dst_stride[TG_MAX_DIMS];  /* contiguous output strides */
    int inner;                        /* the output dim that walks the source contiguously */
    int64_t tiles;                    /* tiles along dim `inner` */
    const char *src;
    char *dst;
    size_t elem;
    int accumulate;                   /* float32 dst += src */
} permute_ctx;

/* dst[a * dst_row + b] = src[a + b * src_col] for a < rows, b < cols. */
#define TILE_LOOP(T)                                                                               \
    for (int64_t a = 0; a < rows; a++)                                                             \
        for (int64_t b = 0; b < cols; b++) ((T *)dst)[a * dst_row + b] = ((const T *)src)[a + b * src_col]

static void copy_tile(char *dst, int64_t dst_row, const char *src, int64_t src_col, int64_t rows, int64_t cols,
                      size_t elem, int accumulate)
{
    if (accumulate) {
        float *d = (float *)dst;
        const float *s = (const float *)src;
        for (int64_t a = 0; a < rows; a++)
            for (int64_t b = 0; b < cols; b++) d[a * dst_row + b] += s[a + b * src_col];
        return;
    }
    switch (elem) {
    case 1: TILE_LOOP(uint8_t); break;
    case 2: TILE_LOOP(uint16_t); break;
    case 4: TILE_LOOP(uint32_t); break;
    default: TILE_LOOP(uint64_t); break;
    }
}

/* Source and destination offsets of the `index`-th combination of the output
 * dims other than `skip_a` and `skip_b` (-1: none). */
static void permute_offsets(const permute_ctx *c, int64_t index, int skip_a, int skip_b, int64_t *src, int64_t *dst)
{
    *src = *dst = 0;
    for (int d = c->ndim - 1; d >= 0; d--) {
        if (d == skip_a || d == skip_b) continue;
        int64_t i = index % c->shape[d];
        index /= c->shape[d];
        *src += i * c->src_stride[d];
        *dst += i * c->dst_stride[d];
    }
}

/* Innermost output dim reads the source contiguously: whole rows. */
static void permute_rows_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const permute_ctx *c = arg;
    int last = c->ndim - 1;
    int64_t len = c->shape[last];
    for (int64_t r = begin; r < end; r++) {
        int64_t src, dst;
        permute_offsets(c, r, last, -1, &src, &dst);
        if (c->accumulate) accumulate_row((float *)c->dst + dst, (const float *)c->src + src, len);
        else memcpy(c->dst + (size_t)dst * c->elem, c->src + (size_t)src * c->elem, (size_t)len * c->elem);
    }
}

/* Otherwise: unit = (combination of the other dims, tile of dim `inner`), all
 * tiles of the last dim. */
static void permute_tiles_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const permute_ctx *c = arg;
    int last = c->ndim - 1, j = c->inner;
    for (int64_t u = begin; u < end; u++) {
        int64_t src, dst;
        permute_offsets(c, u / c->tiles, j, last, &src, &dst);
        int64_t a0 = (u % c->tiles) * TG_PERMUTE_TILE;
        int64_t rows = c->shape[j] - a0 < TG_PERMUTE_TILE ? c->shape[j] - a0 : TG_PERMUTE_TILE;
        for (int64_t b0 = 0; b0 < c->shape[last]; b0 += TG_PERMUTE_TILE) {
            int64_t cols = c->shape[last] - b0 < TG_PERMUTE_TILE ? c->shape[last] - b0 : TG_PERMUTE_TILE;
            int64_t s = src + a0 + b0 * c->src_stride[last];
            int64_t d = dst + a0 * c->dst_stride[j] + b0;
            copy_tile(c->dst + (size_t)d * c->elem, c->dst_stride[j], c->src + (size_t)s * c->elem,
                      c->src_stride[last], rows, cols, c->elem, c->accumulate);
        }
    }
}

/* dst[i] = src[perm(i)]: output dim d is source dim perm[d]; src has `shape`. */
static void permuted_copy(void *dst, const void *src, int ndim, const int64_t *shape, const int *perm, size_t elem,
                          int accumulate)
{
    permute_ctx c = {.src = src, .dst = dst, .elem = elem, .accumulate = accumulate};
    int64_t in_stride[TG_MAX_DIMS], stride = 1, numel = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        in_stride[d] = stride;
        stride *= shape[d];
    }
    int n = 0;
    for (int d = 0; d < ndim; d++) {
        int64_t len = shape[perm[d]], s = in_stride[perm[d]];
        numel *= len;
        if (len == 1) continue;
        if (n > 0 && c.src_stride[n - 1] == s * len) {
            c.shape[n - 1] *= len;
            c.src_stride[n - 1] = s;
            continue;
        }
        c.shape[n] = len;
        c.src_stride[n] = s;
        n++;
    }
    if (numel == 0) return;
    if (n == 0) {
        c.shape[0] = 1;
        c.src_stride[0] = 1;
        n = 1;
    }
    c.ndim = n;
    stride = 1;
    for (int d = n - 1; d >= 0; d--) {
        c.dst_stride[d] = stride;
        stride *= c.shape[d];
        if (c.src_stride[d] == 1) c.inner = d;
    }
    int last = n - 1;
    if (c.inner == last) {
        tg_parallel_for(numel / c.shape[last], grain_for(c.shape[last] * (int64_t)elem), permute_rows_range, &c);
    } else {
        c.tiles = (c.shape[c.inner] + TG_PERMUTE_TILE - 1) / TG_PERMUTE_TILE;
        int64_t units = numel / (c.shape[c.inner] * c.shape[last]) * c.tiles;
        tg_parallel_for(units, grain_for(TG_PERMUTE_TILE * c.shape[last] * (int64_t)elem), permute_tiles_range, &c);
    }
}

/* Checks that dims is a permutation of 0..ndim-1 (negatives wrapped). */
static tg_status read_permutation(const tg_tensor *x, const tg_int_list *dims, const char *op, int *perm)
{
    char buf[96];
    if (dims->count != x->ndim)
        return tg_error(TG_STATUS_VALUE, "%s: dims has %d entries for input %s; give one per dim", op, dims->count,
                        tg_shape_str(x, buf, sizeof buf));
    int seen[TG_MAX_DIMS] = {0};
    for (int d = 0; d < x->ndim; d++) {
        TG_TRY(wrap_dim(dims->values[d], x->ndim, x, op, "dims entry", &perm[d]));
        if (seen[perm[d]]++)
            return tg_error(TG_STATUS_VALUE, "%s: dim %d appears twice in dims; give a permutation", op, perm[d]);
    }
    return TG_STATUS_OK;
}

static tg_status permuted_infer(const tg_tensor *x, const int *perm, tg_tensor *out)
{
    int64_t shape[TG_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[perm[d]];
    return tg_tensor_set_shape(out, x->dtype, x->ndim, shape);
}

static tg_status permuted_backward(const tg_op_io *io, const int *perm)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    TG_TRY(check_grad_dtype(io->in[0], io->def->name));
    int inverse[TG_MAX_DIMS];
    for (int d = 0; d < io->in[0]->ndim; d++) inverse[perm[d]] = d;
    permuted_copy(io->grad_in[0]->data, io->grad_out->data, io->out->ndim, io->out->shape, inverse, sizeof(float), 1);
    return TG_STATUS_OK;
}

/* ---- permute: output dim d is input dim dims[d] ---- */

typedef struct permute_attrs {
    tg_int_list dims;
} permute_attrs;

static const tg_attr_spec permute_attr_specs[] = {
    {"dims", TG_ATTR_KIND_INT_LIST, offsetof(permute_attrs, dims), 0, 1},
};

static tg_status permute_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                               tg_op_sizes *sizes)
{
    (void)n_in; (void)sizes;
    int perm[TG_MAX_DIMS];
    TG_TRY(read_permutation(in[0], &((const permute_attrs *)attrs)->dims, "permute", perm));
    return permuted_infer(in[0], perm, out);
}

static tg_status permute_forward(const tg_op_io *io)
{
    const tg_tensor *x = io->in[0];
    int perm[TG_MAX_DIMS];
    TG_TRY(read_permutation(x, &((const permute_attrs *)io->attrs)->dims, "permute", perm));
    permuted_copy(io->out->data, x->data, x->ndim, x->shape, perm, tg_dtype_size(x->dtype), 0);
    return TG_STATUS_OK;
}

static tg_status permute_backward(const tg_op_io *io)
{
    int perm[TG_MAX_DIMS];
    TG_TRY(read_permutation(io->in[0], &((const permute_attrs *)io->attrs)->dims, "permute", perm));
    return permuted_backward(io, perm);
}

static tg_status permute_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    const tg_int_list *dims = &((const permute_attrs *)n->attrs)->dims;
    int64_t perm[TG_MAX_INT_LIST];
    for (int d = 0; d < dims->count; d++) perm[d] = dims->values[d] < 0 ? dims->values[d] + dims->count : dims->values[d];
    tg_onnx_attr attr = tg_onnx_attr_ints("perm", perm, dims->count);
    return tg_onnx_unary(e, n, "Transpose", &attr, 1);
}

const tg_op_def tg_op_permute = {
    .name = "permute", .input_names = unary_inputs,
    .attr_specs = permute_attr_specs, .n_attrs = 1, .attrs_size = sizeof(permute_attrs),
    .infer = permute_infer, .forward = permute_forward, .backward = permute_backward, .onnx = permute_onnx,
};

/* ---- transpose: dims dim0 and dim1 swapped ---- */

typedef struct transpose_attrs {
    int64_t dim0, dim1;
} transpose_attrs;

static const tg_attr_spec transpose_attr_specs[] = {
    {"dim0", TG_ATTR_KIND_INT, offsetof(transpose_attrs, dim0), 0, 1},
    {"dim1", TG_ATTR_KIND_INT, offsetof(transpose_attrs, dim1), 0, 1},
};

static tg_status transpose_permutation(const tg_tensor *x, const transpose_attrs *a, int *perm)
{
    int d0, d1;
    TG_TRY(wrap_dim(a->dim0, x->ndim, x, "transpose", "dim0", &d0));
    TG_TRY(wrap_dim(a->dim1, x->ndim, x, "transpose", "dim1", &d1));
    for (int d = 0; d < x->ndim; d++) perm[d] = d;
    if (x->ndim > 0) {
        perm[d0] = d1;
        perm[d1] = d0;
    }
    return TG_STATUS_OK;
}

static tg_status transpose_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                 tg_op_sizes *sizes)
{
    (void)n_in; (void)sizes;
    int perm[TG_MAX_DIMS];
    TG_TRY(transpose_permutation(in[0], attrs, perm));
    return permuted_infer(in[0], perm, out);
}

static tg_status transpose_forward(const tg_op_io *io)
{
    const tg_tensor *x = io->in[0];
    int perm[TG_MAX_DIMS];
    TG_TRY(transpose_permutation(x, io->attrs, perm));
    permuted_copy(io->out->data, x->data, x->ndim, x->shape, perm, tg_dtype_size(x->dtype), 0);
    return TG_STATUS_OK;
}

static tg_status transpose_backward(const tg_op_io *io)
{
    int perm[TG_MAX_DIMS];
    TG_TRY(transpose_permutation(io->in[0], io->attrs, perm));
    return permuted_backward(io, perm);
}

static tg_status transpose_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    const transpose_attrs *a = n->attrs;
    const int ndim = n->in[0]->ndim;
    int64_t perm[TG_MAX_DIMS];
    for (int d = 0; d < ndim; d++) perm[d] = d;
    int64_t d0 = a->dim0 < 0 ? a->dim0 + ndim : a->dim0, d1 = a->dim1 < 0 ? a->dim1 + ndim : a->dim1;
    perm[d0] = d1;
    perm[d1] = d0;
    tg_onnx_attr attr = tg_onnx_attr_ints("perm", perm, ndim);
    return tg_onnx_unary(e, n, "Transpose", &attr, 1);
}

const tg_op_def tg_op_transpose = {
    .name = "transpose", .input_names = unary_inputs,
    .attr_specs = transpose_attr_specs, .n_attrs = 2, .attrs_size = sizeof(transpose_attrs),
    .infer = transpose_infer, .forward = transpose_forward, .backward = transpose_backward, .onnx = transpose_onnx,
};

/* ---- concat: inputs joined along dim ---- */

typedef struct concat_attrs {
    int64_t dim;
} concat_attrs;

static const tg_attr_spec concat_attr_specs[] = {
    {"dim", TG_ATTR_KIND_INT, offsetof(concat_attrs, dim), 0, 0},
};

static tg_status concat_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                              tg_op_sizes *sizes)
{
    (void)sizes;
    const tg_tensor *x0 = in[0];
    char a[96], b[96];
    if (x0->ndim == 0) return tg_error(TG_STATUS_SHAPE, "concat: input 0 is a scalar; concat needs at least 1 dim");
    int dim;
    TG_TRY(wrap_dim(((const concat_attrs *)attrs)->dim, x0->ndim, x0, "concat", "dim", &dim));
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    for (int i = 1; i < n_in; i++) {
        const tg_tensor *x = in[i];
        if (x->dtype != x0->dtype)
            return tg_error(TG_STATUS_DTYPE, "concat: input %d is %s, input 0 is %s; give one dtype", i,
                            tg_dtype_name(x->dtype), tg_dtype_name(x0->dtype));
        int same = x->ndim == x0->ndim;
        for (int d = 0; same && d < x0->ndim; d++) same = d == dim || x->shape[d] == x0->shape[d];
        if (!same)
            return tg_error(TG_STATUS_SHAPE, "concat: input %d has shape %s, input 0 has %s; all dims but dim %d must match",
                            i, tg_shape_str(x, a, sizeof a), tg_shape_str(x0, b, sizeof b), dim);
        shape[dim] += x->shape[dim];
    }
    return tg_tensor_set_shape(out, x0->dtype, x0->ndim, shape);
}

typedef struct concat_ctx {
    const tg_op_io *io;
    int64_t outer, row;               /* output: [outer, row] with row = sum(run[i]) */
    int64_t run[TG_MAX_INPUTS];       /* elements of input i per outer index */
    int64_t offset[TG_MAX_INPUTS];    /* where input i starts in an output row */
    size_t elem;
    int backward;
} concat_ctx;

static tg_status concat_plan(const tg_op_io *io, concat_ctx *c)
{
    int dim;
    TG_TRY(wrap_dim(((const concat_attrs *)io->attrs)->dim, io->in[0]->ndim, io->in[0], "concat", "dim", &dim));
    c->io = io;
    c->elem = tg_dtype_size(io->in[0]->dtype);
    c->outer = 1;
    int64_t inner = 1;
    for (int d = 0; d < io->in[0]->ndim; d++) {
        if (d < dim) c->outer *= io->in[0]->shape[d];
        if (d > dim) inner *= io->in[0]->shape[d];
    }
    c->row = 0;
    for (int i = 0; i < io->n_in; i++) {
        c->run[i] = io->in[i]->shape[dim] * inner;
        c->offset[i] = c->row;
        c->row += c->run[i];
    }
    return TG_STATUS_OK;
}

/* Unit u: input u % n_in at outer index u / n_in. */
static void concat_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const concat_ctx *c = arg;
    const tg_op_io *io = c->io;
    for (int64_t u = begin; u < end; u++) {
        int i = (int)(u % io->n_in);
        int64_t o = u / io->n_in;
        size_t out_at = (size_t)(o * c->row + c->offset[i]), in_at = (size_t)(o * c->run[i]);
        if (c->backward) {
            if (io->grad_in[i])
                accumulate_row((float *)io->grad_in[i]->data + in_at, (const float *)io->grad_out->data + out_at,
                               c->run[i]);
        } else {
            memcpy((char *)io->out->data + out_at * c->elem, (const char *)io->in[i]->data + in_at * c->elem,
                   (size_t)c->run[i] * c->elem);
        }
    }
}

static tg_status concat_run(const tg_op_io *io, int backward)
{
    concat_ctx c = {.backward = backward};
    TG_TRY(concat_plan(io, &c));
    tg_parallel_for(c.outer * io->n_in, grain_for(c.row * (int64_t)c.elem / io->n_in), concat_range, &c);
    return TG_STATUS_OK;
}

static tg_status concat_forward(const tg_op_io *io) { return concat_run(io, 0); }

static tg_status concat_backward(const tg_op_io *io)
{
    TG_TRY(check_grad_dtype(io->in[0], "concat"));
    return concat_run(io, 1);
}

static tg_status concat_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    tg_onnx_attr axis = tg_onnx_attr_int("axis", ((const concat_attrs *)n->attrs)->dim);
    return tg_onnx_node(e, "Concat", n->input, n->n_in, n->output, &axis, 1);
}

const tg_op_def tg_op_concat = {
    .name = "concat", .input_names = concat_inputs, .variadic = 1,
    .attr_specs = concat_attr_specs, .n_attrs = 1, .attrs_size = sizeof(concat_attrs),
    .infer = concat_infer, .forward = concat_forward, .backward = concat_backward, .onnx = concat_onnx,
};

/* ---- slice: x[..., start:end:step, ...] along dim, Python's rules ---- */

typedef struct slice_attrs {
    int64_t dim, start, end, step;
} slice_attrs;

static const tg_attr_spec slice_attr_specs[] = {
    {"dim", TG_ATTR_KIND_INT, offsetof(slice_attrs, dim), 0, 0},
    {"start", TG_ATTR_KIND_INT, offsetof(slice_attrs, start), 0, 0},
    {"end", TG_ATTR_KIND_INT, offsetof(slice_attrs, end), TG_SLICE_END_DEFAULT, 0},
    {"step", TG_ATTR_KIND_INT, offsetof(slice_attrs, step), 1, 0},
};

typedef struct slice_ctx {
    const char *src;     /* [outer, len, inner] */
    char *dst;           /* [outer, count, inner] */
    int64_t outer, len, inner, start, step, count;
    size_t elem;
    int accumulate;      /* backward: src is dy, dst is dx (+=) */
} slice_ctx;

/* Negative start/end count from the end; both clamp to [0, len] (Python's slice). */
static int64_t clamp_index(int64_t i, int64_t len)
{
    if (i < 0) i += len;
    if (i < 0) return 0;
    return i > len ? len : i;
}

static tg_status slice_plan(const tg_tensor *x, const slice_attrs *a, slice_ctx *c)
{
    if (x->ndim == 0) return tg_error(TG_STATUS_SHAPE, "slice: the input is a scalar; slice needs at least 1 dim");
    if (a->step < 1) return tg_error(TG_STATUS_VALUE, "slice: step must be >= 1, got %lld", (long long)a->step);
    int dim;
    TG_TRY(wrap_dim(a->dim, x->ndim, x, "slice", "dim", &dim));
    c->outer = c->inner = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (d < dim) c->outer *= x->shape[d];
        if (d > dim) c->inner *= x->shape[d];
    }
    c->len = x->shape[dim];
    c->start = clamp_index(a->start, c->len);
    int64_t end = clamp_index(a->end, c->len);
    c->step = a->step;
    c->count = end > c->start ? (end - c->start + a->step - 1) / a->step : 0;
    c->elem = tg_dtype_size(x->dtype);
    return TG_STATUS_OK;
}

static tg_status slice_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                             tg_op_sizes *sizes)
{
    (void)n_in; (void)sizes;
    slice_ctx c = {0};
    TG_TRY(slice_plan(in[0], attrs, &c));
    int dim;
    TG_TRY(wrap_dim(((const slice_attrs *)attrs)->dim, in[0]->ndim, in[0], "slice", "dim", &dim));
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, in[0]->shape, sizeof shape);
    shape[dim] = c.count;
    return tg_tensor_set_shape(out, in[0]->dtype, in[0]->ndim, shape);
}

/* dst[k] = src[k * step] (or += for float32 when accumulate, with dst and src swapped
 * in role: dx[k * step] += dy[k]) for k < count, elements of elem bytes. */
#define STRIDED_LOOP(T)                                                                              \
    for (int64_t k = 0; k < count; k++) ((T *)dst)[k] = ((const T *)src)[k * step]

static void strided_copy(char *dst, const char *src, int64_t count, int64_t step, size_t elem, int accumulate)
{
    if (accumulate) {
        float *d = (float *)dst;
        const float *s = (const float *)src;
        for (int64_t k = 0; k < count; k++) d[k * step] += s[k];
        return;
    }
    switch (elem) {
    case 1: STRIDED_LOOP(uint8_t); break;
    case 2: STRIDED_LOOP(uint16_t); break;
    case 4: STRIDED_LOOP(uint32_t); break;
    default: STRIDED_LOOP(uint64_t); break;
    }
}

/* Unit o: the `count` selected slabs of `inner` elements of outer index o. In
 * backward (accumulate) src is dy [outer, count, inner] and dst is dx [outer, len, inner]. */
static void slice_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const slice_ctx *c = arg;
    for (int64_t o = begin; o < end; o++) {
        size_t in_at = (size_t)((o * c->len + c->start) * c->inner);   /* in x (dx) */
        size_t out_at = (size_t)(o * c->count * c->inner);              /* in y (dy) */
        if (c->accumulate) {
            float *dx = (float *)c->dst + in_at;
            const float *dy = (const float *)c->src + out_at;
            if (c->step == 1) accumulate_row(dx, dy, c->count * c->inner);
            else if (c->inner == 1) strided_copy((char *)dx, (const char *)dy, c->count, c->step, sizeof(float), 1);
            else
                for (int64_t k = 0; k < c->count; k++) accumulate_row(dx + k * c->step * c->inner, dy + k * c->inner, c->inner);
            continue;
        }
        char *y = c->dst + out_at * c->elem;
        const char *x = c->src + in_at * c->elem;
        if (c->step == 1) memcpy(y, x, (size_t)(c->count * c->inner) * c->elem);
        else if (c->inner == 1) strided_copy(y, x, c->count, c->step, c->elem, 0);
        else
            for (int64_t k = 0; k < c->count; k++)
                memcpy(y + (size_t)(k * c->inner) * c->elem, x + (size_t)(k * c->step * c->inner) * c->elem,
                       (size_t)c->inner * c->elem);
    }
}

static void slice_run(slice_ctx *c)
{
    int64_t per_unit = c->count * c->inner;
    if (per_unit == 0) return;
    tg_parallel_for(c->outer, grain_for(per_unit * (int64_t)c->elem), slice_range, c);
}

static tg_status slice_forward(const tg_op_io *io)
{
    slice_ctx c = {.src = io->in[0]->data, .dst = io->out->data};
    TG_TRY(slice_plan(io->in[0], io->attrs, &c));
    slice_run(&c);
    return TG_STATUS_OK;
}

static tg_status slice_backward(const tg_op_io *io)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    TG_TRY(check_grad_dtype(io->in[0], "slice"));
    slice_ctx c = {.src = io->grad_out->data, .dst = io->grad_in[0]->data, .accumulate = 1};
    TG_TRY(slice_plan(io->in[0], io->attrs, &c));
    slice_run(&c);
    return TG_STATUS_OK;
}

/* Slice clamps start and end as Python's slicing does (the "to the end" default included). */
static tg_status slice_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    const slice_attrs *a = n->attrs;
    const char *inputs[5] = {n->input[0]};
    TG_TRY(tg_onnx_const_i64(e, n->output, 1, &a->start, &inputs[1]));
    TG_TRY(tg_onnx_const_i64(e, n->output, 1, &a->end, &inputs[2]));
    TG_TRY(tg_onnx_const_i64(e, n->output, 1, &a->dim, &inputs[3]));
    TG_TRY(tg_onnx_const_i64(e, n->output, 1, &a->step, &inputs[4]));
    return tg_onnx_node(e, "Slice", inputs, 5, n->output, NULL, 0);
}

const tg_op_def tg_op_slice = {
    .name = "slice", .input_names = unary_inputs,
    .attr_specs = slice_attr_specs, .n_attrs = 4, .attrs_size = sizeof(slice_attrs),
    .infer = slice_infer, .forward = slice_forward, .backward = slice_backward, .onnx = slice_onnx,
};

/* ---- pad: torch.nn.functional.pad; pad = (left, right) of the last dim, then of
 *      the one before, ...; mode 0 constant (value; negative pads crop),
 *      1 reflect, 2 replicate, 3 circular ---- */

typedef enum tg_pad_mode {
    TG_PAD_MODE_CONSTANT = 0,
    TG_PAD_MODE_REFLECT = 1,
    TG_PAD_MODE_REPLICATE = 2,
    TG_PAD_MODE_CIRCULAR = 3,
} tg_pad_mode;

typedef struct pad_attrs {
    tg_int_list pad;
    double value;
    int64_t mode;   /* a tg_pad_mode */
} pad_attrs;

static const tg_attr_spec pad_attr_specs[] = {
    {"pad", TG_ATTR_KIND_INT_LIST, offsetof(pad_attrs, pad), 0, 1},
    {"value", TG_ATTR_KIND_FLOAT, offsetof(pad_attrs, value), 0, 0},
    {"mode", TG_ATTR_KIND_INT, offsetof(pad_attrs, mode), 0, 0},
};

typedef struct pad_ctx {
    int ndim;
    int64_t in_shape[TG_MAX_DIMS], out_shape[TG_MAX_DIMS];
    int64_t before[TG_MAX_DIMS];   /* elements added before each dim (0 where not padded) */
    int first_padded;              /* dims before it are not padded */
    tg_pad_mode mode;
    float value;
    const float *src;              /* forward: x; backward: dy */
    float *dst;                    /* forward: y; backward: dx (+=) */
} pad_ctx;

static tg_status pad_plan(const tg_tensor *x, const pad_attrs *a, pad_ctx *c)
{
    char buf[96];
    int pairs = a->pad.count / 2;
    if (a->pad.count % 2 != 0 || pairs > x->ndim)
        return tg_error(TG_STATUS_VALUE, "pad: pad has %d entries for input %s; give an even count, 2 per dim at most",
                        a->pad.count, tg_shape_str(x, buf, sizeof buf));
    if (a->mode < TG_PAD_MODE_CONSTANT || a->mode > TG_PAD_MODE_CIRCULAR)
        return tg_error(TG_STATUS_VALUE, "pad: mode %lld is unknown; use 0 constant, 1 reflect, 2 replicate, 3 circular",
                        (long long)a->mode);
    c->ndim = x->ndim;
    c->mode = (tg_pad_mode)a->mode;
    c->value = (float)a->value;
    c->first_padded = x->ndim;
    for (int d = 0; d < x->ndim; d++) {
        c->in_shape[d] = c->out_shape[d] = x->shape[d];
        c->before[d] = 0;
    }
    for (int k = 0; k < pairs; k++) {
        int d = x->ndim - 1 - k;
        int64_t lo = a->pad.values[2 * k], hi = a->pad.values[2 * k + 1], n = x->shape[d];
        if (lo == 0 && hi == 0) continue;
        if (c->mode != TG_PAD_MODE_CONSTANT) {
            int64_t limit = c->mode == TG_PAD_MODE_REFLECT ? n - 1 : (c->mode == TG_PAD_MODE_CIRCULAR ? n : INT64_MAX);
            if (lo < 0 || hi < 0 || lo > limit || hi > limit || n == 0)
                return tg_error(TG_STATUS_VALUE, "pad: padding (%lld, %lld) of dim %d (size %lld) is out of range for "
                                "mode %lld; reflect needs pads < size, circular pads <= size, all >= 0",
                                (long long)lo, (long long)hi, d, (long long)n, (long long)a->mode);
        }
        c->out_shape[d] = n + lo + hi;
        if (c->out_shape[d] < 0)
            return tg_error(TG_STATUS_VALUE, "pad: padding (%lld, %lld) crops dim %d of size %lld below 0", (long long)lo,
                            (long long)hi, d, (long long)n);
        c->before[d] = lo;
        if (d < c->first_padded) c->first_padded = d;
    }
    return TG_STATUS_OK;
}

static tg_status pad_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out, tg_op_sizes *sizes)
{
    (void)n_in; (void)sizes;
    TG_TRY(tg_check_dtype(in[0], TG_DTYPE_F32, "pad", "x"));
    pad_ctx c = {0};
    TG_TRY(pad_plan(in[0], attrs, &c));
    return tg_tensor_set_shape(out, TG_DTYPE_F32, in[0]->ndim, c.out_shape);
}

/* The input index that output index i of dim d reads; -1: the constant. */
static int64_t pad_source(const pad_ctx *c, int d, int64_t i)
{
    int64_t n = c->in_shape[d], j = i - c->before[d];
    if (j >= 0 && j < n) return j;
    switch (c->mode) {
    case TG_PAD_MODE_CONSTANT: return -1;
    case TG_PAD_MODE_REFLECT: return j < 0 ? -j : 2 * (n - 1) - j;
    case TG_PAD_MODE_REPLICATE: return j < 0 ? 0 : n - 1;
    case TG_PAD_MODE_CIRCULAR: return ((j % n) + n) % n;
    }
    return -1;
}

/* Source row (all dims but the last) of output row r; -1 when it is the constant. */
static int64_t pad_source_row(const pad_ctx *c, int64_t r)
{
    int64_t src = 0, stride = 1;
    for (int d = c->ndim - 2; d >= 0; d--) {
        int64_t j = pad_source(c, d, r % c->out_shape[d]);
        r /= c->out_shape[d];
        if (j < 0) return -1;
        src += j * stride;
        stride *= c->in_shape[d];
    }
    return src;
}

static void pad_forward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const pad_ctx *c = arg;
    int last = c->ndim - 1;
    int64_t out_len = c->out_shape[last], in_len = c->in_shape[last], lo = c->before[last];
    int64_t mid_begin = lo > 0 ? lo : 0, mid_end = lo + in_len < out_len ? lo + in_len : out_len;
    for (int64_t r = begin; r < end; r++) {
        float *y = c->dst + r * out_len; /* [out_len] */
        int64_t src_row = pad_source_row(c, r);
        if (src_row < 0) {
            for (int64_t i = 0; i < out_len; i++) y[i] = c->value;
            continue;
        }
        const float *x = c->src + src_row * in_len; /* [in_len] */
        for (int64_t i = 0; i < mid_begin && i < out_len; i++) {
            int64_t j = pad_source(c, last, i);
            y[i] = j < 0 ? c->value : x[j];
        }
        if (mid_end > mid_begin) memcpy(y + mid_begin, x + (mid_begin - lo), (size_t)(mid_end - mid_begin) * sizeof(float));
        for (int64_t i = mid_end > mid_begin ? mid_end : mid_begin; i < out_len; i++) {
            int64_t j = pad_source(c, last, i);
            y[i] = j < 0 ? c->value : x[j];
        }
    }
}

/* Unit u: one index of the unpadded leading dims; its output block is scattered
 * into dx in output order, so rows that several outputs read (reflect, replicate)
 * add up in a fixed order. */
static void pad_backward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const pad_ctx *c = arg;
    int last = c->ndim - 1;
    int64_t out_len = c->out_shape[last], in_len = c->in_shape[last];
    int64_t out_rows = 1;   /* output rows of one unit */
    for (int d = c->first_padded; d < last; d++) out_rows *= c->out_shape[d];
    for (int64_t u = begin; u < end; u++) {
        for (int64_t r = 0; r < out_rows; r++) {
            int64_t src_row = pad_source_row(c, u * out_rows + r);
            if (src_row < 0) continue;
            const float *gy = c->src + (u * out_rows + r) * out_len; /* [out_len] */
            float *gx = c->dst + src_row * in_len;                   /* [in_len] */
            for (int64_t i = 0; i < out_len; i++) {
                int64_t j = pad_source(c, last, i);
                if (j >= 0) gx[j] += gy[i];
            }
        }
    }
}

static tg_status pad_forward(const tg_op_io *io)
{
    pad_ctx c = {.src = io->in[0]->data, .dst = io->out->data};
    TG_TRY(pad_plan(io->in[0], io->attrs, &c));
    int64_t numel = tg_tensor_numel(io->out);
    if (numel == 0) return TG_STATUS_OK;
    if (c.ndim == 0) {
        c.dst[0] = c.src[0];
        return TG_STATUS_OK;
    }
    int64_t row = c.out_shape[c.ndim - 1];
    tg_parallel_for(numel / row, grain_for(row * (int64_t)sizeof(float)), pad_forward_range, &c);
    return TG_STATUS_OK;
}

static tg_status pad_backward(const tg_op_io *io)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    pad_ctx c = {.src = io->grad_out->data, .dst = io->grad_in[0]->data};
    TG_TRY(pad_plan(io->in[0], io->attrs, &c));
    if (tg_tensor_numel(io->out) == 0 || tg_tensor_numel(io->in[0]) == 0) return TG_STATUS_OK;
    if (c.ndim == 0) {
        c.dst[0] += c.src[0];
        return TG_STATUS_OK;
    }
    int64_t units = 1, per_unit = 1;
    for (int d = 0; d < c.ndim; d++) {
        if (d < c.first_padded && d < c.ndim - 1) units *= c.out_shape[d];
        else per_unit *= c.out_shape[d];
    }
    tg_parallel_for(units, grain_for(per_unit * (int64_t)sizeof(float)), pad_backward_range, &c);
    return TG_STATUS_OK;
}

/* Pad: PyTorch's (left, right) pairs from the last dim become ONNX's
 * [begin of each dim..., end of each dim...]; replicate is "edge". Circular padding
 * ("wrap") needs opset 19. */
static tg_status pad_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    const pad_attrs *a = n->attrs;
    static const char *const modes[] = {"constant", "reflect", "edge"};
    if (a->mode < TG_PAD_MODE_CONSTANT || a->mode > TG_PAD_MODE_REPLICATE)
        return tg_error(TG_STATUS_UNSUPPORTED, "pad (layer '%s'): mode %lld (circular) has no opset-17 ONNX Pad; "
                        "use constant, reflect or replicate padding", n->layer, (long long)a->mode);
    const int ndim = n->in[0]->ndim;
    int64_t pads[2 * TG_MAX_DIMS] = {0};
    for (int k = 0; k < a->pad.count / 2; k++) {
        pads[ndim - 1 - k] = a->pad.values[2 * k];
        pads[2 * ndim - 1 - k] = a->pad.values[2 * k + 1];
    }
    const char *inputs[2] = {n->input[0]};
    TG_TRY(tg_onnx_const_i64(e, n->output, 2 * ndim, pads, &inputs[1]));
    tg_onnx_attr mode = tg_onnx_attr_string("mode", modes[a->mode]);
    if (a->mode != TG_PAD_MODE_CONSTANT) return tg_onnx_node(e, "Pad", inputs, 2, n->output, &mode, 1);
    const char *with_value[3] = {inputs[0], inputs[1]};
    TG_TRY(tg_onnx_const_scalar(e, n->output, (float)a->value, &with_value[2]));
    return tg_onnx_node(e, "Pad", with_value, 3, n->output, &mode, 1);
}

const tg_op_def tg_op_pad = {
    .name = "pad", .input_names = unary_inputs,
    .attr_specs = pad_attr_specs, .n_attrs = 3, .attrs_size = sizeof(pad_attrs),
    .infer = pad_infer, .forward = pad_forward, .backward = pad_backward, .onnx = pad_onnx,
};

/* ---- cast: to dtype (a tg_dtype: 0 float32, 1 bfloat16); float32 <-> bfloat16,
 *      and uint8 / uint16 / int32 / int64 -> float32. The gradient passes through
 *      to float inputs (rounded to bfloat16 for a bfloat16 input) ---- */

typedef struct cast_attrs {
    int64_t dtype;
} cast_attrs;

static const tg_attr_spec cast_attr_specs[] = {
    {"dtype", TG_ATTR_KIND_INT, offsetof(cast_attrs, dtype), TG_DTYPE_F32, 0},
};

static int is_float(tg_dtype dtype) { return dtype == TG_DTYPE_F32 || dtype == TG_DTYPE_BF16; }

static tg_status cast_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out, tg_op_sizes *sizes)
{
    (void)n_in; (void)sizes;
    int64_t to = ((const cast_attrs *)attrs)->dtype;
    tg_dtype from = in[0]->dtype;
    int supported = (to == TG_DTYPE_F32) || (to == TG_DTYPE_BF16 && is_float(from));
    if (!supported)
        return tg_error(TG_STATUS_UNSUPPORTED, "cast: %s to dtype %lld (%s) is not supported; cast goes to float32 "
                        "(dtype=0) from any dtype, or to bfloat16 (dtype=1) from float32",
                        tg_dtype_name(from), (long long)to, tg_dtype_name((tg_dtype)to));
    return tg_tensor_set_shape(out, (tg_dtype)to, in[0]->ndim, in[0]->shape);
}

typedef struct cast_ctx {
    tg_dtype from, to;
    const void *src;
    void *dst;
    int accumulate;   /* backward: dst (a gradient) += src */
} cast_ctx;

#define CAST_LOOP(T) for (int64_t i = begin; i < end; i++) dst[i] = (float)((const T *)c->src)[i]

static void cast_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const cast_ctx *c = arg;
    if (c->to == TG_DTYPE_BF16) {
        tg_bf16 *dst = c->dst;
        if (c->from == TG_DTYPE_BF16) {
            const tg_bf16 *src = c->src;
            for (int64_t i = begin; i < end; i++)
                dst[i] = c->accumulate ? tg_bf16_from_f32(tg_bf16_to_f32(dst[i]) + tg_bf16_to_f32(src[i])) : src[i];
        } else {
            const float *src = c->src;
            for (int64_t i = begin; i < end; i++)
                dst[i] = tg_bf16_from_f32(c->accumulate ? tg_bf16_to_f32(dst[i]) + src[i] : src[i]);
        }
        return;
    }
    float *dst = c->dst;
    if (c->accumulate) {
        if (c->from == TG_DTYPE_BF16)
            for (int64_t i = begin; i < end; i++) dst[i] += tg_bf16_to_f32(((const tg_bf16 *)c->src)[i]);
        else accumulate_row(dst + begin, (const float *)c->src + begin, end - begin);
        return;
    }
    switch (c->from) {
    case TG_DTYPE_F32: memcpy(dst + begin, (const float *)c->src + begin, (size_t)(end - begin) * sizeof(float)); break;
    case TG_DTYPE_BF16:
        for (int64_t i = begin; i < end; i++) dst[i] = tg_bf16_to_f32(((const tg_bf16 *)c->src)[i]);
        break;
    case TG_DTYPE_U8: CAST_LOOP(uint8_t); break;
    case TG_DTYPE_U16: CAST_LOOP(uint16_t); break;
    case TG_DTYPE_I32: CAST_LOOP(int32_t); break;
    case TG_DTYPE_I64: CAST_LOOP(int64_t); break;
    default: break;
    }
}

static tg_status cast_forward(const tg_op_io *io)
{
    cast_ctx c = {.from = io->in[0]->dtype, .to = io->out->dtype, .src = io->in[0]->data, .dst = io->out->data};
    tg_parallel_for(tg_tensor_numel(io->out), TG_SHAPE_GRAIN_BYTES / 4, cast_range, &c);
    return TG_STATUS_OK;
}

/* dx += dy converted to x's dtype; integer inputs get no gradient. */
static tg_status cast_backward(const tg_op_io *io)
{
    if (!io->grad_in[0] || !is_float(io->in[0]->dtype)) return TG_STATUS_OK;
    cast_ctx c = {.from = io->out->dtype, .to = io->in[0]->dtype, .src = io->grad_out->data,
                  .dst = io->grad_in[0]->data, .accumulate = 1};
    tg_parallel_for(tg_tensor_numel(io->out), TG_SHAPE_GRAIN_BYTES / 4, cast_range, &c);
    return TG_STATUS_OK;
}

const tg_op_def tg_op_cast = {
    .name = "cast", .input_names = unary_inputs,
    .attr_specs = cast_attr_specs, .n_attrs = 1, .attrs_size = sizeof(cast_attrs),
    .infer = cast_infer, .forward = cast_forward, .backward = cast_backward,
};
