/* arith.h: the strided float32 loop of broadcasting arithmetic (arith.c), shared
 * with the reductions (reduce.c) whose gradients broadcast. */
#ifndef TG_ARITH_H
#define TG_ARITH_H

#include "broadcast.h"

typedef enum tg_arith_kind {
    TG_ARITH_KIND_ADD,
    TG_ARITH_KIND_SUB,
    TG_ARITH_KIND_MUL,
    TG_ARITH_KIND_DIV,
} tg_arith_kind;

/* out[i] = a[.] op b[.] (or += when accumulate) for every element i of bc->shape,
 * out contiguous, a and b read through bc->stride (0 on broadcast dims). Parallel;
 * every element is computed once, so the result is the same at any thread count.
 * NOTE: bc->same is not read: the strides alone decide the fast paths. */
void tg_arith_strided(tg_arith_kind kind, int accumulate, const tg_broadcast *bc, const float *a, const float *b,
                      float *out);

#endif
