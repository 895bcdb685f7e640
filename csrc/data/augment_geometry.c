/* augment_geometry.c: resampling of images (bilinear) and masks (nearest) through one
 * affine map, mapping of boxes through it, and fusion of exact maps (flips, rot90,
 * integer crops) into their neighbours.
 *
 * Bilinear sampling follows torch.nn.functional.interpolate(mode='bilinear',
 * align_corners=False) without antialiasing: output pixel centre x + 0.5 maps to the
 * source index s = m(x + 0.5) - 0.5; in clamp mode s is clamped to the window, so a
 * plain resize equals PyTorch's. NOTE: no antialias filter is applied when
 * downscaling (torchvision's Resize antialiases PIL and tensor inputs by default);
 * strong downscales therefore alias like interpolate(antialias=False).
 * Not here: choosing the maps (augment.c), pixel-value transforms (augment_color.c). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "augment_internal.h"

void tg_augment_geom_full(tg_augment_geom *g, int64_t h, int64_t w, int64_t out_h, int64_t out_w)
{
    memset(g, 0, sizeof *g);
    g->m[0] = (double)w / (double)out_w;
    g->m[4] = (double)h / (double)out_h;
    g->out_h = out_h, g->out_w = out_w;
    g->window = (tg_augment_rect){0, 0, w, h};
    g->region = g->content = (tg_augment_rect){0, 0, out_w, out_h};
}

/* ---- affine helpers ---- */

/* c = a o b: c(p) = a(b(p)). */
static void affine_compose(const double a[6], const double b[6], double c[6])
{
    double r[6] = {
        a[0] * b[0] + a[1] * b[3], a[0] * b[1] + a[1] * b[4], a[0] * b[2] + a[1] * b[5] + a[2],
        a[3] * b[0] + a[4] * b[3], a[3] * b[1] + a[4] * b[4], a[3] * b[2] + a[4] * b[5] + a[5],
    };
    memcpy(c, r, sizeof r);
}

static void affine_invert(const double m[6], double inv[6])
{
    double det = m[0] * m[4] - m[1] * m[3];
    double r[6];
    r[0] = m[4] / det, r[1] = -m[1] / det, r[3] = -m[3] / det, r[4] = m[0] / det;
    r[2] = -(r[0] * m[2] + r[1] * m[5]);
    r[5] = -(r[3] * m[2] + r[4] * m[5]);
    memcpy(inv, r, sizeof r);
}

void tg_augment_geom_forward(const tg_augment_geom *g, double forward[6]) { affine_invert(g->m, forward); }

/* Bounding rectangle (real) of rect mapped through m. */
static void map_rect(const double m[6], double x0, double y0, double x1, double y1, double out[4])
{
    double xs[4] = {x0, x1, x0, x1}, ys[4] = {y0, y0, y1, y1};
    out[0] = out[1] = INFINITY, out[2] = out[3] = -INFINITY;
    for (int i = 0; i < 4; i++) {
        double x = m[0] * xs[i] + m[1] * ys[i] + m[2], y = m[3] * xs[i] + m[4] * ys[i] + m[5];
        out[0] = fmin(out[0], x), out[1] = fmin(out[1], y), out[2] = fmax(out[2], x), out[3] = fmax(out[3], y);
    }
}

static tg_augment_rect rect_intersect(tg_augment_rect a, tg_augment_rect b)
{
    tg_augment_rect r = {a.x0 > b.x0 ? a.x0 : b.x0, a.y0 > b.y0 ? a.y0 : b.y0, a.x1 < b.x1 ? a.x1 : b.x1,
                         a.y1 < b.y1 ? a.y1 : b.y1};
    if (r.x1 < r.x0) r.x1 = r.x0;
    if (r.y1 < r.y0) r.y1 = r.y0;
    return r;
}

/* Rect mapped through an exact map (whole pixels stay whole pixels). */
static tg_augment_rect map_rect_exact(const double m[6], tg_augment_rect r)
{
    double b[4];
    map_rect(m, (double)r.x0, (double)r.y0, (double)r.x1, (double)r.y1, b);
    return (tg_augment_rect){(int64_t)llround(b[0]), (int64_t)llround(b[1]), (int64_t)llround(b[2]),
                             (int64_t)llround(b[3])};
}

int tg_augment_geom_fuse(const tg_augment_geom *first, const tg_augment_geom *second, tg_augment_geom *out)
{
    if (!first->exact && !second->exact) return 0;
    tg_augment_rect full_a = {0, 0, first->out_w, first->out_h};
    if (memcmp(&first->region, &full_a, sizeof full_a) != 0) return 0;
    tg_augment_geom r = *second;
    affine_compose(first->m, second->m, r.m);
    double second_forward[6];
    affine_invert(second->m, second_forward);
    /* NOTE: one of the two maps is exact, so mapping rects through it is exact. */
    if (first->exact) {
        r.window = rect_intersect(first->window, map_rect_exact(first->m, second->window));
    } else {
        r.window = first->window;
    }
    tg_augment_rect first_content = second->exact ? map_rect_exact(second_forward, first->content)
                                                  : second->content;
    if (second->exact) r.content = rect_intersect(second->content, first_content);
    else if (first->content.x0 != 0 || first->content.y0 != 0 || first->content.x1 != first->out_w ||
             first->content.y1 != first->out_h)
        return 0;
    r.border_fill = first->border_fill | second->border_fill;
    r.fill = second->exact ? first->fill : second->fill;
    if (second->exact && second->border_fill) r.fill = second->fill;
    r.exact = first->exact && second->exact;
    *out = r;
    return 1;
}

/* ---- image resampling ---- */

typedef struct tap {
    int64_t o0, o1;    /* element offsets of the two taps along one axis */
    float w1;          /* weight of o1 */
} tap;

/* Taps of an axis: source index s = a * (i + 0.5) + b - 0.5 for i in [0, n), clamped to [lo, hi);
 * offsets count from source index `origin` (where the view's data starts).
 * NOTE: s and the weights are computed in whole-image indices whatever the origin, so
 * a part of an image resamples to the very bits of the whole image. */
static void axis_taps(tap *taps, int64_t n, double a, double b, int64_t lo, int64_t hi, int64_t origin,
                      int64_t stride)
{
    for (int64_t i = 0; i < n; i++) {
        double s = a * ((double)i + 0.5) + b - 0.5;
        if (s < (double)lo) s = (double)lo;
        if (s > (double)(hi - 1)) s = (double)(hi - 1);
        int64_t i0 = (int64_t)floor(s);
        int64_t i1 = i0 + 1 < hi ? i0 + 1 : hi - 1;
        taps[i].o0 = (i0 - origin) * stride, taps[i].o1 = (i1 - origin) * stride;
        taps[i].w1 = (float)(s - (double)i0);
    }
}

#define DEFINE_SEPARABLE(NAME, T)                                                                             \
    static void NAME(const T *restrict src, int64_t plane, int64_t channels, float *restrict dst, int64_t out_h, \
                     int64_t out_w, const tg_augment_rect *content, const tap *rows, const tap *cols)          \
    {                                                                                                          \
        for (int64_t c = 0; c < channels; c++) {                                                               \
            const T *s = src + c * plane;                                                                      \
            for (int64_t y = content->y0; y < content->y1; y++) {                                              \
                const T *restrict r0 = s + rows[y].o0, *restrict r1 = s + rows[y].o1;                          \
                float wy1 = rows[y].w1, wy0 = 1.0f - wy1;                                                      \
                float *restrict d = dst + (c * out_h + y) * out_w;                                             \
                if (wy1 == 0.0f) {                                                                             \
                    for (int64_t x = content->x0; x < content->x1; x++) {                                      \
                        float w1 = cols[x].w1, w0 = 1.0f - w1;                                                 \
                        d[x] = wy0 * (w0 * (float)r0[cols[x].o0] + w1 * (float)r0[cols[x].o1]);                 \
                    }                                                                                          \
                } else {                                                                                       \
                    for (int64_t x = content->x0; x < content->x1; x++) {                                      \
                        float w1 = cols[x].w1, w0 = 1.0f - w1;                                                 \
                        d[x] = wy0 * (w0 * (float)r0[cols[x].o0] + w1 * (float)r0[cols[x].o1]) +                \
                               wy1 * (w0 * (float)r1[cols[x].o0] + w1 * (float)r1[cols[x].o1]);                 \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }

DEFINE_SEPARABLE(separable_u8, uint8_t)
DEFINE_SEPARABLE(separable_u16, uint16_t)
DEFINE_SEPARABLE(separable_f32, float)

/* One source row through the column taps: h[x] = w0 * r[o] + w1 * r[o + step] for x in
 * [x0, x1), in the scalar kernel's operations (separable_u8: same bits); the gathers need 4
 * readable bytes at r + o. */
__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) static void hrow_u8_avx512(
    const uint8_t *r, const int32_t *restrict col_offset, const float *restrict col_w1, float *restrict h, int64_t x0,
    int64_t x1, int step)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512i low = _mm512_set1_epi32(0xff);
    const __m128i shift = _mm_cvtsi32_si128(8 * step);
    int64_t x = x0;
    for (; x + 16 <= x1; x += 16) {
        __m512i offset = _mm512_loadu_si512((const void *)(col_offset + x));
        __m512 w1 = _mm512_loadu_ps(col_w1 + x), w0 = _mm512_sub_ps(one, w1);
        __m512i g = _mm512_i32gather_epi32(offset, (const void *)r, 1);
        __m512 a = _mm512_cvtepi32_ps(_mm512_and_si512(g, low));
        __m512 b = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srl_epi32(g, shift), low));
        _mm512_storeu_ps(h + x, _mm512_add_ps(_mm512_mul_ps(w0, a), _mm512_mul_ps(w1, b)));
    }
    for (; x < x1; x++) {
        float w1 = col_w1[x], w0 = 1.0f - w1;
        h[x] = w0 * (float)r[col_offset[x]] + w1 * (float)r[col_offset[x] + step];
    }
}

/* One output row from two filtered source rows: d = wy0 * h0, plus wy1 * h1 when wy1 != 0
 * (the scalar kernel's order of operations, without FMA). */
__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) static void vrow_avx512(
    const float *restrict h0, const float *restrict h1, float wy1f, float *restrict d, int64_t x0, int64_t x1)
{
    const float wy0f = 1.0f - wy1f;
    const __m512 wy0 = _mm512_set1_ps(wy0f), wy1 = _mm512_set1_ps(wy1f);
    int64_t x = x0;
    if (wy1f == 0.0f) {
        for (; x + 16 <= x1; x += 16) _mm512_storeu_ps(d + x, _mm512_mul_ps(wy0, _mm512_loadu_ps(h0 + x)));
        for (; x < x1; x++) d[x] = wy0f * h0[x];
        return;
    }
    for (; x + 16 <= x1; x += 16)
        _mm512_storeu_ps(d + x, _mm512_add_ps(_mm512_mul_ps(wy0, _mm512_loadu_ps(h0 + x)),
                                              _mm512_mul_ps(wy1, _mm512_loadu_ps(h1 + x))));
    for (; x < x1; x++) d[x] = wy0f * h0[x] + wy1f * h1[x];
}

/* The two most recent filtered source rows of one channel (a downscale reads each row
 * for up to two output rows, an upscale for many). */
typedef struct hrow_cache {
    int64_t offset[2];          /* source row offsets held, -1: none */
    float *row[2];              /* [out_w] each */
} hrow_cache;

/* The filtered row at `offset` of channel data s, computed unless cached; the row at
 * `keep` stays cached. */
static const float *cached_hrow(hrow_cache *cache, const uint8_t *s, const uint8_t *end, int64_t offset, int64_t keep,
                                const tap *cols, const int32_t *col_offset, const float *col_w1, int64_t max_offset,
                                int64_t x0, int64_t x1, int step)
{
    if (cache->offset[0] == offset) return cache->row[0];
    if (cache->offset[1] == offset) return cache->row[1];
    int slot = cache->offset[0] == keep ? 1 : 0;
    float *h = cache->row[slot];
    const uint8_t *r = s + offset;
    if (r + max_offset + 4 > end) {
        for (int64_t x = x0; x < x1; x++) {
            float w1 = cols[x].w1, w0 = 1.0f - w1;
            h[x] = w0 * (float)r[cols[x].o0] + w1 * (float)r[cols[x].o1];
        }
    } else {
        hrow_u8_avx512(r, col_offset, col_w1, h, x0, x1, step);
    }
    cache->offset[slot] = offset;
    return h;
}

/* The straight uint8 case: each needed source row filtered once along x (hrow_u8_avx512),
 * then output rows blended from two filtered rows (vrow_avx512); the bits are those of
 * the scalar kernel. Returns 0 when it does not apply. */
static int separable_u8_fast(const tg_augment_view *src, float *dst, const tg_augment_geom *g, const tap *rows,
                             const tap *cols, int32_t *col_offset, float *col_w1, float *hrows)
{
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) return 0;
    const tg_augment_rect *c = &g->content;
    int64_t plane, row, step, extent, max_offset = 0;
    tg_augment_view_strides(src, &plane, &row, &step, &extent);
    if (extent > INT32_MAX - 4 || step > 3) return 0;
    for (int64_t x = c->x0; x < c->x1; x++) {
        /* NOTE: a clamped tap has o1 == o0 and weight 0, so reading o0 + step instead is harmless. */
        if (cols[x].o1 != cols[x].o0 + step && !(cols[x].o1 == cols[x].o0 && cols[x].w1 == 0.0f)) return 0;
        col_offset[x] = (int32_t)cols[x].o0;
        col_w1[x] = cols[x].w1;
        if (cols[x].o0 > max_offset) max_offset = cols[x].o0;
    }
    const uint8_t *base = src->data, *end = base + extent;
    for (int64_t ch = 0; ch < src->c; ch++) {
        const uint8_t *s = base + ch * plane;
        hrow_cache cache = {{-1, -1}, {hrows, hrows + g->out_w}};
        for (int64_t y = c->y0; y < c->y1; y++) {
            float wy1 = rows[y].w1;
            const float *h0 = cached_hrow(&cache, s, end, rows[y].o0, -1, cols, col_offset, col_w1, max_offset, c->x0,
                                          c->x1, (int)step);
            const float *h1 = wy1 == 0.0f ? h0
                                           : cached_hrow(&cache, s, end, rows[y].o1, rows[y].o0, cols, col_offset,
                                                         col_w1, max_offset, c->x0, c->x1, (int)step);
            vrow_avx512(h0, h1, wy1, dst + (ch * g->out_h + y) * g->out_w, c->x0, c->x1);
        }
    }
    return 1;
}

void tg_augment_view_strides(const tg_augment_view *v, int64_t *plane, int64_t *row, int64_t *col, int64_t *extent)
{
    int64_t rows = v->rows ? v->rows : v->h, cols = v->cols ? v->cols : v->w;
    *plane = v->interleaved ? 1 : rows * cols;
    *row = v->interleaved ? cols * v->c : cols;
    *col = v->interleaved ? v->c : 1;
    *extent = v->c * rows * cols;
}

static float read_value(const tg_augment_view *v, int64_t offset)
{
    switch (v->dtype) {
    case TG_DTYPE_U8: return (float)((const uint8_t *)v->data)[offset];
    case TG_DTYPE_U16: return (float)((const uint16_t *)v->data)[offset];
    default: return ((const float *)v->data)[offset];
    }
}

/* Per output column of one row: the two source taps in x and y, and their weights. */
typedef struct point_taps {
    int64_t x0, x1, y0, y1;    /* source indices; -1 marks a tap that reads fill */
    float wx1, wy1;
} point_taps;

static void row_point_taps(const tg_augment_geom *g, int64_t y, point_taps *taps)
{
    const double *m = g->m;
    const tg_augment_rect *win = &g->window;
    double cy = (double)y + 0.5;
    for (int64_t x = g->content.x0; x < g->content.x1; x++) {
        double cx = (double)x + 0.5;
        double sx = m[0] * cx + m[1] * cy + m[2] - 0.5, sy = m[3] * cx + m[4] * cy + m[5] - 0.5;
        point_taps *t = &taps[x - g->content.x0];
        if (!g->border_fill) {
            sx = fmin(fmax(sx, (double)win->x0), (double)(win->x1 - 1));
            sy = fmin(fmax(sy, (double)win->y0), (double)(win->y1 - 1));
        }
        double fx = floor(sx), fy = floor(sy);
        t->wx1 = (float)(sx - fx), t->wy1 = (float)(sy - fy);
        int64_t ix = (int64_t)fmax(fmin(fx, 1e15), -1e15), iy = (int64_t)fmax(fmin(fy, 1e15), -1e15);
        t->x0 = ix, t->x1 = ix + 1, t->y0 = iy, t->y1 = iy + 1;
        if (!g->border_fill) {
            if (t->x1 >= win->x1) t->x1 = win->x1 - 1;
            if (t->y1 >= win->y1) t->y1 = win->y1 - 1;
        } else {
            if (t->x0 < win->x0 || t->x0 >= win->x1) t->x0 = -1;
            if (t->x1 < win->x0 || t->x1 >= win->x1) t->x1 = -1;
            if (t->y0 < win->y0 || t->y0 >= win->y1) t->y0 = -1;
            if (t->y1 < win->y0 || t->y1 >= win->y1) t->y1 = -1;
        }
    }
}

static void resample_general(const tg_augment_geom *g, const tg_augment_view *src, float *dst, point_taps *taps)
{
    const int64_t out_plane = g->out_h * g->out_w;
    int64_t plane, row, col, extent;
    tg_augment_view_strides(src, &plane, &row, &col, &extent);
    const float fill = (float)g->fill;
    for (int64_t y = g->content.y0; y < g->content.y1; y++) {
        row_point_taps(g, y, taps);
        for (int64_t c = 0; c < src->c; c++) {
            float *d = dst + c * out_plane + y * g->out_w;
            int64_t base = c * plane - src->y0 * row - src->x0 * col;
            for (int64_t x = g->content.x0; x < g->content.x1; x++) {
                const point_taps *t = &taps[x - g->content.x0];
                float v00 = (t->x0 < 0 || t->y0 < 0) ? fill : read_value(src, base + t->y0 * row + t->x0 * col);
                float v01 = (t->x1 < 0 || t->y0 < 0) ? fill : read_value(src, base + t->y0 * row + t->x1 * col);
                float v10 = (t->x0 < 0 || t->y1 < 0) ? fill : read_value(src, base + t->y1 * row + t->x0 * col);
                float v11 = (t->x1 < 0 || t->y1 < 0) ? fill : read_value(src, base + t->y1 * row + t->x1 * col);
                float wx0 = 1.0f - t->wx1, wy0 = 1.0f - t->wy1;
                d[x] = wy0 * (wx0 * v00 + t->wx1 * v01) + t->wy1 * (wx0 * v10 + t->wx1 * v11);
            }
        }
    }
}

size_t tg_augment_geom_scratch_bytes(int64_t out_h, int64_t out_w)
{
    size_t separable = (size_t)(out_h + out_w) * sizeof(tap) + (size_t)out_w * (sizeof(int32_t) + 3 * sizeof(float)) + 64;
    size_t general = (size_t)out_w * sizeof(point_taps);
    return (separable > general ? separable : general) + 64;
}

/* Writes fill into region \ content of every channel. */
static void fill_span(float *d, int64_t x0, int64_t x1, float fill)
{
    for (int64_t x = x0; x < x1; x++) d[x] = fill;
}

static void fill_outside_content(const tg_augment_geom *g, int64_t channels, float *dst, float fill)
{
    const tg_augment_rect *r = &g->region, *c = &g->content;
    const int empty = c->x1 <= c->x0 || c->y1 <= c->y0;
    for (int64_t ch = 0; ch < channels; ch++)
        for (int64_t y = r->y0; y < r->y1; y++) {
            float *d = dst + (ch * g->out_h + y) * g->out_w;
            if (empty || y < c->y0 || y >= c->y1) {
                fill_span(d, r->x0, r->x1, fill);
            } else {
                fill_span(d, r->x0, c->x0, fill);
                fill_span(d, c->x1, r->x1, fill);
            }
        }
}

/* True when every bilinear tap of the content lies inside the window (no fill read). */
static int taps_inside_window(const tg_augment_geom *g)
{
    double b[4];
    map_rect(g->m, (double)g->content.x0 + 0.5, (double)g->content.y0 + 0.5, (double)g->content.x1 - 0.5,
             (double)g->content.y1 - 0.5, b);
    return b[0] - 0.5 >= (double)g->window.x0 - 1e-9 && b[1] - 0.5 >= (double)g->window.y0 - 1e-9 &&
           b[2] - 0.5 <= (double)(g->window.x1 - 1) + 1e-9 && b[3] - 0.5 <= (double)(g->window.y1 - 1) + 1e-9;
}

void tg_augment_resample_image(const tg_augment_geom *g, const tg_augment_view *src, float *dst, void *scratch)
{
    fill_outside_content(g, src->c, dst, (float)g->fill);
    if (g->content.x1 <= g->content.x0 || g->content.y1 <= g->content.y0) return;
    int straight = g->m[1] == 0.0 && g->m[3] == 0.0;
    int transposed = g->m[0] == 0.0 && g->m[4] == 0.0;
    if ((!straight && !transposed) || (g->border_fill && !taps_inside_window(g))) {
        resample_general(g, src, dst, scratch);
        return;
    }
    tap *rows = scratch, *cols = rows + g->out_h;
    const tg_augment_rect *win = &g->window;
    int64_t plane, row, col, extent;
    tg_augment_view_strides(src, &plane, &row, &col, &extent);
    if (straight) {
        axis_taps(rows, g->out_h, g->m[4], g->m[5], win->y0, win->y1, src->y0, row);
        axis_taps(cols, g->out_w, g->m[0], g->m[2], win->x0, win->x1, src->x0, col);
    } else {
        axis_taps(rows, g->out_h, g->m[1], g->m[2], win->x0, win->x1, src->x0, col);
        axis_taps(cols, g->out_w, g->m[3], g->m[5], win->y0, win->y1, src->y0, row);
    }
    int32_t *col_offset = (int32_t *)(cols + g->out_w);
    float *col_w1 = (float *)(col_offset + g->out_w), *hrows = col_w1 + g->out_w; /* [2, out_w] */
    if (straight && src->dtype == TG_DTYPE_U8 && separable_u8_fast(src, dst, g, rows, cols, col_offset, col_w1, hrows))
        return;
    switch (src->dtype) {
    case TG_DTYPE_U8: separable_u8(src->data, plane, src->c, dst, g->out_h, g->out_w, &g->content, rows, cols); break;
    case TG_DTYPE_U16: separable_u16(src->data, plane, src->c, dst, g->out_h, g->out_w, &g->content, rows, cols); break;
    default: separable_f32(src->data, plane, src->c, dst, g->out_h, g->out_w, &g->content, rows, cols); break;
    }
}

/* ---- masks: nearest (the source pixel containing the sample point) ---- */

static int64_t read_mask(tg_dtype dtype, const void *src, int64_t offset)
{
    switch (dtype) {
    case TG_DTYPE_U8: return ((const uint8_t *)src)[offset];
    case TG_DTYPE_I32: return ((const int32_t *)src)[offset];
    default: return ((const int64_t *)src)[offset];
    }
}

static void write_mask(tg_dtype dtype, void *dst, int64_t offset, int64_t value)
{
    switch (dtype) {
    case TG_DTYPE_U8: ((uint8_t *)dst)[offset] = (uint8_t)value; break;
    case TG_DTYPE_I32: ((int32_t *)dst)[offset] = (int32_t)value; break;
    default: ((int64_t *)dst)[offset] = value; break;
    }
}

void tg_augment_resample_mask(const tg_augment_geom *g, tg_dtype dtype, const void *src, int64_t h, int64_t w,
                              void *dst, int64_t fill)
{
    (void)h;
    const double *m = g->m;
    const tg_augment_rect *win = &g->window, *c = &g->content;
    for (int64_t y = g->region.y0; y < g->region.y1; y++) {
        double cy = (double)y + 0.5;
        for (int64_t x = g->region.x0; x < g->region.x1; x++) {
            int64_t value = fill;
            if (y >= c->y0 && y < c->y1 && x >= c->x0 && x < c->x1) {
                double cx = (double)x + 0.5;
                double sx = floor(m[0] * cx + m[1] * cy + m[2]), sy = floor(m[3] * cx + m[4] * cy + m[5]);
                int inside = sx >= (double)win->x0 && sx < (double)win->x1 && sy >= (double)win->y0 &&
                             sy < (double)win->y1;
                if (!g->border_fill) {
                    sx = fmin(fmax(sx, (double)win->x0), (double)(win->x1 - 1));
                    sy = fmin(fmax(sy, (double)win->y0), (double)(win->y1 - 1));
                    inside = 1;
                }
                if (inside) value = read_mask(dtype, src, (int64_t)sy * w + (int64_t)sx);
            }
            write_mask(dtype, dst, y * g->out_w + x, value);
        }
    }
}

/* ---- boxes ---- */

int64_t tg_augment_map_boxes(const tg_augment_geom *g, float *boxes, int64_t *labels, int64_t n,
                             double min_fraction)
{
    double f[6], win[4];
    affine_invert(g->m, f);
    map_rect(f, (double)g->window.x0, (double)g->window.y0, (double)g->window.x1, (double)g->window.y1, win);
    double clip[4] = {fmax(win[0], (double)g->content.x0), fmax(win[1], (double)g->content.y0),
                      fmin(win[2], (double)g->content.x1), fmin(win[3], (double)g->content.y1)};
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *b = boxes + 4 * i;
        double r[4];
        map_rect(f, b[0], b[1], b[2], b[3], r);
        double area = (r[2] - r[0]) * (r[3] - r[1]);
        double c[4] = {fmax(r[0], clip[0]), fmax(r[1], clip[1]), fmin(r[2], clip[2]), fmin(r[3], clip[3])};
        double kept_area = (c[2] > c[0] && c[3] > c[1]) ? (c[2] - c[0]) * (c[3] - c[1]) : 0.0;
        if (!(kept_area > 0.0) || kept_area < min_fraction * area) continue;
        float *o = boxes + 4 * kept;
        o[0] = (float)c[0], o[1] = (float)c[1], o[2] = (float)c[2], o[3] = (float)c[3];
        labels[kept] = labels[i];
        kept++;
    }
    return kept;
}
