/* reduce.h: the deterministic float32 sum of reduce.c, shared with the gradients
 * of broadcasting arithmetic (arith.c), which sum over the broadcast dims. */
#ifndef TG_REDUCE_H
#define TG_REDUCE_H

#include <stdint.h>

/* dst = scale * (sum of src over the dims d where dst_shape[d] == 1 and shape[d] != 1),
 * or dst += that when accumulate. src is contiguous with `shape` (ndim dims); dst is
 * contiguous with dst_shape (same ndim, each dim equal to shape's or 1).
 * NOTE: deterministic: each output is summed by one thread in a fixed order (16
 * lanes over contiguous runs, lanes combined in a fixed tree), except a full
 * reduction, which sums 64 fixed segments in parallel and adds them in order. */
void tg_reduce_sum_to(const float *src, int ndim, const int64_t *shape, const int64_t *dst_shape, float scale,
                      int accumulate, float *dst);

/* The sum of x[0..n) in 16 lanes combined by a fixed tree: the row sum used above,
 * for other kernels' row reductions (softmax). */
float tg_sum_contiguous(const float *x, int64_t n);

#endif
