/* augment_color.c: pixel-value transforms of a float32 image [c, h, w], in place:
 * colour jitter, gaussian blur, gaussian noise, random erasing, normalize.
 *
 * Values are in the source dtype's scale (0..255 for uint8, 0..65535 for uint16,
 * 0..1 assumed for float32: value_max is that top). Formulas follow torchvision's
 * tensor functional ops in float. Masks and boxes are never touched here. */
#include <math.h>
#include <string.h>

#include "augment_internal.h"
#include "augment_random.h"

/* ---- colour jitter ---- */

static inline float clampf(float v, float hi) { return v < 0.0f ? 0.0f : (v > hi ? hi : v); }

static void blend_constant(float *restrict x, int64_t n, float factor, float other, float value_max)
{
    const float rest = (1.0f - factor) * other;
    for (int64_t i = 0; i < n; i++) x[i] = clampf(factor * x[i] + rest, value_max);
}

/* Mean of the image's grayscale for 3 channels (ITU-R 601-2 weights, as torchvision's
 * rgb_to_grayscale), else of every value. NOTE: summed in double, in a fixed order. */
static float contrast_mean(const float *x, int64_t c, int64_t plane)
{
    double sum = 0.0;
    if (c == 3) {
        for (int64_t i = 0; i < plane; i++)
            sum += (double)(0.2989f * x[i] + 0.587f * x[plane + i] + 0.114f * x[2 * plane + i]);
        return (float)(sum / (double)plane);
    }
    for (int64_t i = 0; i < c * plane; i++) sum += (double)x[i];
    return (float)(sum / (double)(c * plane));
}

static void adjust_saturation(float *x, int64_t plane, float factor, float value_max)
{
    float *r = x, *g = x + plane, *b = x + 2 * plane;
    for (int64_t i = 0; i < plane; i++) {
        float gray = 0.2989f * r[i] + 0.587f * g[i] + 0.114f * b[i];
        float rest = (1.0f - factor) * gray;
        r[i] = clampf(factor * r[i] + rest, value_max);
        g[i] = clampf(factor * g[i] + rest, value_max);
        b[i] = clampf(factor * b[i] + rest, value_max);
    }
}

/* torchvision's _rgb2hsv, hue shift, _hsv2rgb on values scaled to [0, 1]. */
static void adjust_hue(float *x, int64_t plane, float shift, float value_max)
{
    float *rp = x, *gp = x + plane, *bp = x + 2 * plane;
    const float to_unit = 1.0f / value_max;
    for (int64_t i = 0; i < plane; i++) {
        float r = rp[i] * to_unit, g = gp[i] * to_unit, b = bp[i] * to_unit;
        float maxc = fmaxf(r, fmaxf(g, b)), minc = fminf(r, fminf(g, b));
        int equal = maxc == minc;
        float cr = maxc - minc;
        float s = cr / (equal ? 1.0f : maxc);
        float divisor = equal ? 1.0f : cr;
        float rc = (maxc - r) / divisor, gc = (maxc - g) / divisor, bc = (maxc - b) / divisor;
        float h;
        if (maxc == r) h = bc - gc;
        else if (maxc == g) h = 2.0f + rc - bc;
        else h = 4.0f + gc - rc;
        h = fmodf(h / 6.0f + 1.0f, 1.0f);
        h = fmodf(h + shift, 1.0f);
        if (h < 0.0f) h += 1.0f;
        float v = maxc;
        float h6 = h * 6.0f, fi = floorf(h6), f = h6 - fi;
        int sector = ((int)fi) % 6;
        float p = fminf(fmaxf(v * (1.0f - s), 0.0f), 1.0f);
        float q = fminf(fmaxf(v * (1.0f - s * f), 0.0f), 1.0f);
        float t = fminf(fmaxf(v * (1.0f - s * (1.0f - f)), 0.0f), 1.0f);
        float o[3];
        switch (sector) {
        case 0: o[0] = v, o[1] = t, o[2] = p; break;
        case 1: o[0] = q, o[1] = v, o[2] = p; break;
        case 2: o[0] = p, o[1] = v, o[2] = t; break;
        case 3: o[0] = p, o[1] = q, o[2] = v; break;
        case 4: o[0] = t, o[1] = p, o[2] = v; break;
        default: o[0] = v, o[1] = p, o[2] = q; break;
        }
        rp[i] = o[0] * value_max, gp[i] = o[1] * value_max, bp[i] = o[2] * value_max;
    }
}

void tg_augment_color_jitter(float *image, int64_t c, int64_t h, int64_t w, const double factors[4],
                             const int order[4], float value_max)
{
    const int64_t plane = h * w;
    for (int k = 0; k < 4; k++) {
        int which = order[k];
        float f = (float)factors[which];
        switch (which) {
        case 0:
            if (f != 1.0f) blend_constant(image, c * plane, f, 0.0f, value_max);
            break;
        case 1:
            if (f != 1.0f) blend_constant(image, c * plane, f, contrast_mean(image, c, plane), value_max);
            break;
        case 2:
            /* NOTE: saturation and hue are defined for RGB only; other channel counts skip them. */
            if (f != 1.0f && c == 3) adjust_saturation(image, plane, f, value_max);
            break;
        default:
            if (f != 0.0f && c == 3) adjust_hue(image, plane, f, value_max);
            break;
        }
    }
}

/* ---- gaussian blur (separable, reflect padding like torchvision) ---- */

static inline int64_t reflect(int64_t i, int64_t n)
{
    if (n == 1) return 0;
    const int64_t period = 2 * (n - 1);
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - i;
}

static void gaussian_kernel(float *kernel, int size, double sigma)
{
    double half = (size - 1) * 0.5, sum = 0.0, pdf[256];
    for (int i = 0; i < size; i++) {
        double x = -half + (double)i;
        pdf[i] = exp(-0.5 * (x / sigma) * (x / sigma));
        sum += pdf[i];
    }
    for (int i = 0; i < size; i++) kernel[i] = (float)(pdf[i] / sum);
}

void tg_augment_gaussian_blur(float *image, int64_t c, int64_t h, int64_t w, int kernel_h, int kernel_w,
                              double sigma_y, double sigma_x, float *temp)
{
    float kx[256], ky[256];
    gaussian_kernel(kx, kernel_w, sigma_x);
    gaussian_kernel(ky, kernel_h, sigma_y);
    const int half_x = kernel_w / 2, half_y = kernel_h / 2;
    for (int64_t ch = 0; ch < c; ch++) {
        float *restrict x = image + ch * h * w;
        for (int64_t y = 0; y < h; y++) {
            const float *row = x + y * w;
            float *restrict out = temp + y * w;
            for (int64_t i = 0; i < w; i++) {
                float acc = 0.0f;
                if (i >= half_x && i + half_x < w) {
                    for (int k = 0; k < kernel_w; k++) acc += kx[k] * row[i - half_x + k];
                } else {
                    for (int k = 0; k < kernel_w; k++) acc += kx[k] * row[reflect(i - half_x + k, w)];
                }
                out[i] = acc;
            }
        }
        for (int64_t y = 0; y < h; y++) {
            float *restrict out = x + y * w;
            for (int64_t i = 0; i < w; i++) out[i] = 0.0f;
            for (int k = 0; k < kernel_h; k++) {
                const float *restrict src = temp + reflect(y - half_y + k, h) * w;
                const float wk = ky[k];
                for (int64_t i = 0; i < w; i++) out[i] += wk * src[i];
            }
        }
    }
}

/* ---- noise, erasing, normalize ---- */

void tg_augment_gaussian_noise(float *image, int64_t n, float std, float value_max, int clip, uint64_t key)
{
    const float scale = std * value_max;
    for (int64_t i = 0; i < n; i++) {
        float v = image[i] + scale * tg_random_normal_at(key, (uint64_t)i);
        image[i] = clip ? clampf(v, value_max) : v;
    }
}

void tg_augment_erase(float *image, int64_t c, int64_t h, int64_t w, const tg_augment_rect *rect, float value,
                      int random_value, uint64_t key)
{
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t y = rect->y0; y < rect->y1; y++) {
            float *row = image + (ch * h + y) * w;
            for (int64_t x = rect->x0; x < rect->x1; x++)
                row[x] = random_value ? tg_random_normal_at(key, (uint64_t)((ch * h + y) * w + x)) : value;
        }
}

void tg_augment_normalize(float *image, int64_t c, int64_t h, int64_t w, const double *mean, int n_mean,
                          const double *std, int n_std, double value_scale)
{
    const int64_t plane = h * w;
    for (int64_t ch = 0; ch < c; ch++) {
        double m = mean[n_mean == 1 ? 0 : ch], s = std[n_std == 1 ? 0 : ch];
        const float a = (float)(value_scale / s), b = (float)(-m / s);
        float *restrict x = image + ch * plane;
        for (int64_t i = 0; i < plane; i++) x[i] = x[i] * a + b;
    }
}

void tg_augment_to_float(const tg_augment_view *src, float *dst)
{
    const int64_t n = src->c * src->h * src->w;
    if (src->interleaved || src->x0 || src->y0 || (src->rows && src->rows != src->h) ||
        (src->cols && src->cols != src->w)) {
        /* NOTE: a part reaches here only when it is the whole image (tg_augment_apply checks). */
        int64_t plane, row, col, extent;
        tg_augment_view_strides(src, &plane, &row, &col, &extent);
        for (int64_t c = 0; c < src->c; c++)
            for (int64_t y = 0; y < src->h; y++)
                for (int64_t x = 0; x < src->w; x++) {
                    int64_t at = c * plane + y * row + x * col;
                    dst[(c * src->h + y) * src->w + x] = src->dtype == TG_DTYPE_U8    ? (float)((const uint8_t *)src->data)[at]
                                                         : src->dtype == TG_DTYPE_U16 ? (float)((const uint16_t *)src->data)[at]
                                                                                      : ((const float *)src->data)[at];
                }
        return;
    }
    switch (src->dtype) {
    case TG_DTYPE_U8: {
        const uint8_t *restrict s = src->data;
        for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i];
        break;
    }
    case TG_DTYPE_U16: {
        const uint16_t *restrict s = src->data;
        for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i];
        break;
    }
    default:
        if ((const float *)src->data != dst) memmove(dst, src->data, (size_t)n * sizeof(float));
        break;
    }
}
