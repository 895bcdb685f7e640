/* conv.h: the convolution engine shared by conv2d and conv_transpose2d (conv.c) and
 * the direct depthwise kernels (conv_depthwise.c). Internal to csrc/ops; not an op.
 *
 * Everything is phrased as one 2-D convolution described by a tg_conv_geom:
 *   y[n, o, oh, ow] = sum_{c in group(o), ki, kj} w[o, c', ki, kj] * x[n, c, oh*sh - ph + ki*dh, ow*sw - pw + kj*dw]
 * and its two adjoints (data and weight). conv_transpose2d is the data adjoint of the
 * conv whose input has the transposed conv's output shape, so it reuses all three.
 * NOTE: ho/wo are given, not recomputed: a transposed conv with output_padding >= stride
 * describes a conv whose output is shorter than the usual formula. */
#ifndef TG_CONV_H
#define TG_CONV_H

#include <stddef.h>
#include <stdint.h>

typedef struct tg_conv_geom {
    int64_t n, c, h, w;          /* input x [n, c, h, w] */
    int64_t o, ho, wo;           /* output y [n, o, ho, wo] */
    int64_t kh, kw;              /* weight [o, c / groups, kh, kw] */
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t groups;
} tg_conv_geom;

/* Scratch bytes of tg_conv_forward / of tg_conv_backward_data + tg_conv_backward_weight. */
size_t tg_conv_forward_scratch(const tg_conv_geom *g);
size_t tg_conv_backward_scratch(const tg_conv_geom *g);

/* y = conv(x, w) + bias, or y += ... when accumulate. bias [o] may be NULL. */
void tg_conv_forward(const tg_conv_geom *g, const float *x, const float *w, const float *bias,
                     float *y, int accumulate, void *scratch);

/* gx += conv_data_adjoint(gy, w) when gx is non-NULL; gw += conv_weight_adjoint(x, gy)
 * when gw is non-NULL. gx [n, c, h, w], gw [o, c / groups, kh, kw], gy [n, o, ho, wo]. */
void tg_conv_backward(const tg_conv_geom *g, const float *x, const float *w, const float *gy,
                      float *gx, float *gw, void *scratch);

/* gb[o] += sum over n, oh, ow of gy[n, o, oh, ow]; deterministic (one thread per o). */
void tg_conv_bias_grad(int64_t n, int64_t o, int64_t plane, const float *gy, float *gb);

/* dst[j * ldd + i] = src[i * lds + j] (or += when accumulate) for i < rows, j < cols
 * (AVX-512 16 x 16 blocks where the CPU has them). */
void tg_conv_transpose(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst, int64_t ldd,
                       int accumulate);

/* ---- direct depthwise kernels (conv_depthwise.c): groups == c, o a multiple of c ---- */

int tg_conv_is_depthwise(const tg_conv_geom *g);
size_t tg_conv_depthwise_forward_scratch(const tg_conv_geom *g);
size_t tg_conv_depthwise_backward_scratch(const tg_conv_geom *g);
void tg_conv_depthwise_forward(const tg_conv_geom *g, const float *x, const float *w, const float *bias,
                               float *y, int accumulate, void *scratch);
void tg_conv_depthwise_backward(const tg_conv_geom *g, const float *x, const float *w, const float *gy,
                                float *gx, float *gw, void *scratch);

#endif
