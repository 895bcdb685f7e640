/* augment_internal.h: what the augmentation files share (not a public interface).
 *
 * Geometry is described by tg_augment_geom: an affine map from output points to
 * source points, both in pixel edge coordinates (pixel i covers [i, i + 1), its
 * centre is i + 0.5), plus the source window that may be read and the output
 * rectangle that is sampled (the rest is fill). Every geometric transform (flip,
 * rot90, crop, resize, letterbox, affine, a mosaic quadrant) is one such map. */
#ifndef TG_AUGMENT_INTERNAL_H
#define TG_AUGMENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "../core/dtype.h"
#include "augment.h"

/* An image being read: the caller's typed source or a float32 working buffer.
 * NOTE: the fields after w are zero for a whole planar image (every working buffer);
 * a caller's sample may hold only the part of the image at (x0, y0) of rows x cols,
 * planar [c, rows, cols] or interleaved [rows, cols, c]. Geometry always speaks of the
 * whole image; tg_augment_view_strides turns a pixel into an offset in data. */
typedef struct tg_augment_view {
    tg_dtype dtype;
    const void *data;          /* [c, h, w]; see the NOTE for parts and interleaving */
    int64_t c, h, w;           /* the whole image */
    int64_t x0, y0;            /* where data starts in the whole image */
    int64_t rows, cols;        /* the part held; 0: the whole image */
    int interleaved;           /* 1: data is [rows, cols, c] */
} tg_augment_view;

/* Element strides of a view between channels, rows and columns; the element count
 * of data in *extent. Pixel (ch, y, x) of the whole image is at
 * ch * plane + (y - y0) * row + (x - x0) * col. */
void tg_augment_view_strides(const tg_augment_view *v, int64_t *plane, int64_t *row, int64_t *col, int64_t *extent);

/* [x0, x1) x [y0, y1) in whole pixels. */
typedef struct tg_augment_rect {
    int64_t x0, y0, x1, y1;
} tg_augment_rect;

typedef struct tg_augment_geom {
    double m[6];               /* source (sx, sy) = (m0*x + m1*y + m2, m3*x + m4*y + m5) of output (x, y) */
    int64_t out_h, out_w;
    tg_augment_rect window;    /* source pixels that may be read */
    tg_augment_rect region;    /* output pixels written (a mosaic quadrant; else the whole output) */
    tg_augment_rect content;   /* output pixels sampled, inside region; the rest of region is fill */
    int border_fill;           /* 0: sample indices clamp to the window (resize semantics);
                                  1: taps outside the window read fill (affine semantics) */
    double fill;               /* image value for fill */
    int exact;                 /* maps pixel centres onto pixel centres (flip, rot90, integer crop) */
} tg_augment_geom;

/* A geometry mapping the whole source (h, w) onto the whole output (out_h, out_w). */
void tg_augment_geom_full(tg_augment_geom *g, int64_t h, int64_t w, int64_t out_h, int64_t out_w);

/* Composes `first` (source -> A) and `second` (A -> output) into one map when one of
 * them is exact; returns 0 (and leaves out alone) when they cannot fuse. */
int tg_augment_geom_fuse(const tg_augment_geom *first, const tg_augment_geom *second, tg_augment_geom *out);

/* The forward map (output of source) of g: the inverse of g->m. */
void tg_augment_geom_forward(const tg_augment_geom *g, double forward[6]);

/* Scratch bytes the resampling of one geometry needs (tables). */
size_t tg_augment_geom_scratch_bytes(int64_t out_h, int64_t out_w);

/* Bilinear resampling of src into dst [src->c, g->out_h, g->out_w] (g->region only). */
void tg_augment_resample_image(const tg_augment_geom *g, const tg_augment_view *src, float *dst, void *scratch);

/* Nearest resampling of a mask [h, w] into dst [g->out_h, g->out_w] (g->region only). */
void tg_augment_resample_mask(const tg_augment_geom *g, tg_dtype dtype, const void *src, int64_t h, int64_t w,
                              void *dst, int64_t fill);

/* Maps boxes [n, 4] (and labels [n]) through g in place, clipping to g's content
 * and dropping those left with less than min_fraction of their area; returns the
 * number kept. */
int64_t tg_augment_map_boxes(const tg_augment_geom *g, float *boxes, int64_t *labels, int64_t n,
                             double min_fraction);

/* Pixel transforms of a float32 image [c, h, w] in place (augment_color.c).
 * value_max is the top of the dtype's range: 255, 65535, or 1 for float32. */
void tg_augment_color_jitter(float *image, int64_t c, int64_t h, int64_t w, const double factors[4],
                             const int order[4], float value_max);
void tg_augment_gaussian_blur(float *image, int64_t c, int64_t h, int64_t w, int kernel_h, int kernel_w,
                              double sigma_y, double sigma_x, float *temp /* [h, w] */);
void tg_augment_gaussian_noise(float *image, int64_t n, float std, float value_max, int clip, uint64_t key);
void tg_augment_erase(float *image, int64_t c, int64_t h, int64_t w, const tg_augment_rect *rect, float value,
                      int random_value, uint64_t key);
void tg_augment_normalize(float *image, int64_t c, int64_t h, int64_t w, const double *mean, int n_mean,
                          const double *std, int n_std, double value_scale);

/* Converts a typed view to float32 dst [c, h, w]. */
void tg_augment_to_float(const tg_augment_view *src, float *dst);

#endif
