/* broadcast.c: shape rule and gradient reduction of numpy broadcasting. */
#include "broadcast.h"

#include <string.h>

tg_status tg_broadcast_init(tg_broadcast *bc, const tg_tensor *a, const tg_tensor *b, const char *op)
{
    memset(bc, 0, sizeof *bc);
    int ndim = a->ndim > b->ndim ? a->ndim : b->ndim;
    bc->ndim = ndim;
    const tg_tensor *inputs[2] = {a, b};
    for (int d = 0; d < ndim; d++) {
        int64_t dims[2];
        for (int k = 0; k < 2; k++) {
            int src = d - (ndim - inputs[k]->ndim);
            dims[k] = src >= 0 ? inputs[k]->shape[src] : 1;
        }
        if (dims[0] != dims[1] && dims[0] != 1 && dims[1] != 1) {
            char sa[96], sb[96];
            return tg_error(TG_STATUS_SHAPE, "%s: shapes %s and %s do not broadcast (dim %d: %lld vs %lld)", op,
                            tg_shape_str(a, sa, sizeof sa), tg_shape_str(b, sb, sizeof sb), d,
                            (long long)dims[0], (long long)dims[1]);
        }
        bc->shape[d] = dims[0] == 1 ? dims[1] : dims[0];
    }
    for (int k = 0; k < 2; k++) {
        int64_t stride = 1;
        for (int d = ndim - 1; d >= 0; d--) {
            int src = d - (ndim - inputs[k]->ndim);
            int64_t dim = src >= 0 ? inputs[k]->shape[src] : 1;
            bc->stride[k][d] = (dim == 1 && bc->shape[d] != 1) ? 0 : stride;
            stride *= dim;
        }
    }
    bc->same = tg_shape_equal(a, b);
    return TG_STATUS_OK;
}

typedef struct reduce_ctx {
    const tg_broadcast *bc;
    int which;
    int64_t in_shape[TG_MAX_DIMS];   /* input's dims aligned to the output's ndim */
    const float *grad_out, *factor;
    float *grad;
} reduce_ctx;

static void reduce_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const reduce_ctx *c = arg;
    const tg_broadcast *bc = c->bc;
    int ndim = bc->ndim;
    int64_t out_stride[TG_MAX_DIMS];
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) { out_stride[d] = s; s *= bc->shape[d]; }
    /* reduced dims: those broadcast for this input */
    int red[TG_MAX_DIMS], n_red = 0;
    int64_t red_count = 1;
    for (int d = 0; d < ndim; d++)
        if (bc->stride[c->which][d] == 0 && bc->shape[d] != 1) { red[n_red++] = d; red_count *= bc->shape[d]; }
    for (int64_t j = begin; j < end; j++) {
        /* output offset of input element j with reduced dims at 0 */
        int64_t rem = j, base = 0;
        for (int d = ndim - 1; d >= 0; d--) {
            int64_t i = rem % c->in_shape[d];
            rem /= c->in_shape[d];
            base += i * out_stride[d];
        }
        float sum = 0.0f;
        for (int64_t r = 0; r < red_count; r++) {
            int64_t rr = r, off = base;
            for (int k = n_red - 1; k >= 0; k--) {
                int d = red[k];
                off += (rr % bc->shape[d]) * out_stride[d];
                rr /= bc->shape[d];
            }
            sum += c->factor ? c->grad_out[off] * c->factor[off] : c->grad_out[off];
        }
        c->grad[j] += sum;
    }
}

void tg_broadcast_reduce_grad(const tg_broadcast *bc, int which, const tg_tensor *input,
                              const float *grad_out, const float *factor, float *grad)
{
    reduce_ctx c = {.bc = bc, .which = which, .grad_out = grad_out, .factor = factor, .grad = grad};
    for (int d = 0; d < bc->ndim; d++) {
        int src = d - (bc->ndim - input->ndim);
        c.in_shape[d] = src >= 0 ? input->shape[src] : 1;
    }
    tg_parallel_for(tg_tensor_numel(input), 256, reduce_range, &c);
}
