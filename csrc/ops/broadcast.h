/* broadcast.h: numpy broadcasting for binary elementwise ops.
 * A tg_broadcast maps each output index to an offset in each input, and each
 * input index to the output positions that read it (for summing gradients). */
#ifndef TG_BROADCAST_H
#define TG_BROADCAST_H

#include "op.h"

typedef struct tg_broadcast {
    int ndim;                       /* of the output */
    int64_t shape[TG_MAX_DIMS];     /* output shape */
    int64_t stride[2][TG_MAX_DIMS]; /* element strides of inputs a, b in output dims; 0 where broadcast */
    int same;                       /* 1: both inputs already have the output shape */
} tg_broadcast;

/* Fills `bc` and the output shape for inputs a, b; TG_STATUS_SHAPE naming both
 * shapes when they do not broadcast. */
tg_status tg_broadcast_init(tg_broadcast *bc, const tg_tensor *a, const tg_tensor *b, const char *op);

/* Offset into input `which` (0: a, 1: b) of output element `index`. */
static inline int64_t tg_broadcast_offset(const tg_broadcast *bc, int which, int64_t index)
{
    int64_t offset = 0;
    for (int d = bc->ndim - 1; d >= 0; d--) {
        int64_t i = index % bc->shape[d];
        index /= bc->shape[d];
        offset += i * bc->stride[which][d];
    }
    return offset;
}

/* Sums, for every element j of input `which`, g(i) over the output elements i that
 * read j, and adds the sum to grad[j]. g(i) = grad_out[i] * (factor ? factor[i] : 1).
 * Deterministic: each input element is summed by one thread in output order. */
void tg_broadcast_reduce_grad(const tg_broadcast *bc, int which, const tg_tensor *input,
                              const float *grad_out, const float *factor, float *grad);

#endif
