/* augment.c: running a pipeline on one sample (or four, for mosaic), and on a batch.
 *
 * A call has two phases. Planning draws every random parameter, transform by
 * transform, from that transform's own stream (seed, epoch, index, position) and
 * turns the transforms into steps: geometric steps (one affine map each) and pixel
 * steps. An exact map (flip, rot90, integer crop) is fused into its geometric
 * neighbour, so random_resized_crop + hflip is a single resampling pass that reads
 * the uint8 source and writes float32 output. Execution then runs the steps on the
 * image (bilinear), the mask (nearest) and the boxes, in the caller's scratch and
 * output buffers; the last geometric step writes straight into the output, and
 * later pixel steps work there in place.
 * Not here: the parameter tables (augment_config.c), kernels (augment_geometry.c,
 * augment_color.c). */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "../core/threads.h"
#include "augment.h"
#include "augment_internal.h"
#include "augment_random.h"

#define PI 3.14159265358979323846
#define MOSAIC_STREAM 0x6d6f73616963ull
#define MULTI_SCALE_STREAM 0x6d756c7469ull

typedef enum step_kind {
    STEP_KIND_GEOM,
    STEP_KIND_JITTER,
    STEP_KIND_BLUR,
    STEP_KIND_NOISE,
    STEP_KIND_ERASE,
    STEP_KIND_NORMALIZE,
} step_kind;

typedef struct step {
    step_kind kind;
    const tg_augment_transform *t;
    tg_augment_geom geom;          /* geom */
    double factors[4];             /* jitter: brightness, contrast, saturation, hue */
    int order[4];                  /* jitter: order of the four */
    double sigma;                  /* blur */
    uint64_t key;                  /* noise, erase: the per-pixel stream */
    tg_augment_rect rect;          /* erase */
    double value_scale;            /* normalize */
} step;

typedef struct plan {
    int n;
    step steps[2 * TG_AUGMENT_MAX_TRANSFORMS];
    int64_t c, h, w;               /* shape after the last step */
    double forward[6];             /* output point of an input point */
    int mosaic;                    /* 1: the steps run on a mosaic of the four samples */
    int64_t mosaic_size, mosaic_x, mosaic_y;
    double mosaic_fill;
} plan;

static float value_max_of(tg_dtype dtype)
{
    return dtype == TG_DTYPE_U8 ? 255.0f : dtype == TG_DTYPE_U16 ? 65535.0f : 1.0f;
}

/* ---- planning ---- */

static void compose_forward(double forward[6], const tg_augment_geom *g)
{
    double f[6], r[6];
    tg_augment_geom_forward(g, f);
    r[0] = f[0] * forward[0] + f[1] * forward[3], r[1] = f[0] * forward[1] + f[1] * forward[4];
    r[2] = f[0] * forward[2] + f[1] * forward[5] + f[2];
    r[3] = f[3] * forward[0] + f[4] * forward[3], r[4] = f[3] * forward[1] + f[4] * forward[4];
    r[5] = f[3] * forward[2] + f[4] * forward[5] + f[5];
    memcpy(forward, r, sizeof r);
}

static void add_geom(plan *p, const tg_augment_transform *t, const tg_augment_geom *g)
{
    compose_forward(p->forward, g);
    p->h = g->out_h, p->w = g->out_w;
    if (p->n > 0 && p->steps[p->n - 1].kind == STEP_KIND_GEOM) {
        tg_augment_geom fused;
        if (tg_augment_geom_fuse(&p->steps[p->n - 1].geom, g, &fused)) {
            p->steps[p->n - 1].geom = fused;
            return;
        }
    }
    step *s = &p->steps[p->n++];
    memset(s, 0, sizeof *s);
    s->kind = STEP_KIND_GEOM;
    s->t = t;
    s->geom = *g;
}

static step *add_pixel_step(plan *p, const tg_augment_transform *t, step_kind kind)
{
    step *s = &p->steps[p->n++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->t = t;
    return s;
}

/* An exact map given by its matrix and output size, over the whole source. */
static void exact_geom(tg_augment_geom *g, const double m[6], int64_t h, int64_t w, int64_t out_h, int64_t out_w)
{
    tg_augment_geom_full(g, h, w, out_h, out_w);
    memcpy(g->m, m, sizeof g->m);
    g->exact = 1;
}

/* A crop of (out_h, out_w) at (top, left); negative offsets or a small image pad with fill. */
static void crop_geom(tg_augment_geom *g, int64_t h, int64_t w, int64_t top, int64_t left, int64_t out_h,
                      int64_t out_w, double fill)
{
    double m[6] = {1, 0, (double)left, 0, 1, (double)top};
    exact_geom(g, m, h, w, out_h, out_w);
    tg_augment_rect image = {-left, -top, w - left, h - top};
    g->content = (tg_augment_rect){image.x0 > 0 ? image.x0 : 0, image.y0 > 0 ? image.y0 : 0,
                                   image.x1 < out_w ? image.x1 : out_w, image.y1 < out_h ? image.y1 : out_h};
    g->fill = fill;
}

/* The source region (top, left, height, width) resized into (out_h, out_w), clamping to it. */
static void resized_crop_geom(tg_augment_geom *g, int64_t h, int64_t w, int64_t top, int64_t left, int64_t ch,
                              int64_t cw, int64_t out_h, int64_t out_w)
{
    tg_augment_geom_full(g, h, w, out_h, out_w);
    g->m[0] = (double)cw / (double)out_w, g->m[2] = (double)left;
    g->m[4] = (double)ch / (double)out_h, g->m[5] = (double)top;
    g->window = (tg_augment_rect){left, top, left + cw, top + ch};
}

/* Keep-aspect resize of (h, w) into (out_h, out_w), centred, the rest fill. */
static void letterbox_geom(tg_augment_geom *g, int64_t h, int64_t w, int64_t out_h, int64_t out_w, double fill)
{
    double r = fmin((double)out_h / (double)h, (double)out_w / (double)w);
    int64_t nh = (int64_t)llround((double)h * r), nw = (int64_t)llround((double)w * r);
    if (nh < 1) nh = 1;
    if (nw < 1) nw = 1;
    if (nh > out_h) nh = out_h;
    if (nw > out_w) nw = out_w;
    int64_t top = (out_h - nh) / 2, left = (out_w - nw) / 2;
    tg_augment_geom_full(g, h, w, out_h, out_w);
    g->m[0] = (double)w / (double)nw, g->m[2] = -(double)left * (double)w / (double)nw;
    g->m[4] = (double)h / (double)nh, g->m[5] = -(double)top * (double)h / (double)nh;
    g->content = (tg_augment_rect){left, top, left + nw, top + nh};
    g->fill = fill;
}

/* torchvision RandomResizedCrop.get_params: 10 tries, then the centre crop fallback. */
static void rrc_params(tg_random *r, const tg_augment_transform *t, int64_t h, int64_t w, int64_t box[4])
{
    double area = (double)h * (double)w;
    double log_lo = log(t->ratio[0]), log_hi = log(t->ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * tg_random_uniform(r, t->scale[0], t->scale[1]);
        double aspect = exp(tg_random_uniform(r, log_lo, log_hi));
        int64_t cw = (int64_t)rint(sqrt(target * aspect)), ch = (int64_t)rint(sqrt(target / aspect));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            box[0] = tg_random_below(r, h - ch + 1), box[1] = tg_random_below(r, w - cw + 1);
            box[2] = ch, box[3] = cw;
            return;
        }
    }
    double in_ratio = (double)w / (double)h;
    int64_t cw = w, ch = h;
    if (in_ratio < t->ratio[0]) ch = (int64_t)rint((double)w / t->ratio[0]);
    else if (in_ratio > t->ratio[1]) cw = (int64_t)rint((double)h * t->ratio[1]);
    if (ch < 1) ch = 1;
    if (cw < 1) cw = 1;
    box[0] = (h - ch) / 2, box[1] = (w - cw) / 2, box[2] = ch, box[3] = cw;
}

/* Inverse of: out = c + t + R(angle) * Shy * Shx * scale * (in - c), angle counter-clockwise on screen. */
static void affine_geom(tg_augment_geom *g, tg_random *r, const tg_augment_transform *t, int64_t h, int64_t w)
{
    double angle = tg_random_uniform(r, t->degrees[0], t->degrees[1]) * PI / 180.0;
    double max_dx = t->translate[0] * (double)w, max_dy = t->translate[1] * (double)h;
    double tx = rint(tg_random_uniform(r, -max_dx, max_dx)), ty = rint(tg_random_uniform(r, -max_dy, max_dy));
    double scale = tg_random_uniform(r, t->scale[0], t->scale[1]);
    double shx = tan(tg_random_uniform(r, t->shear[0], t->shear[1]) * PI / 180.0);
    double shy = tan(tg_random_uniform(r, t->shear[2], t->shear[3]) * PI / 180.0);
    double cs = cos(angle), sn = sin(angle);
    /* shear matrix Shy * Shx = [1, shx; shy, 1 + shy*shx] */
    double s00 = scale, s01 = scale * shx, s10 = scale * shy, s11 = scale * (1.0 + shy * shx);
    double a = cs * s00 + sn * s10, b = cs * s01 + sn * s11, c = -sn * s00 + cs * s10, d = -sn * s01 + cs * s11;
    double det = a * d - b * c;
    double cx = (double)w * 0.5, cy = (double)h * 0.5;
    tg_augment_geom_full(g, h, w, h, w);
    g->m[0] = d / det, g->m[1] = -b / det, g->m[3] = -c / det, g->m[4] = a / det;
    double ox = cx + tx, oy = cy + ty;
    g->m[2] = cx - (g->m[0] * ox + g->m[1] * oy);
    g->m[5] = cy - (g->m[3] * ox + g->m[4] * oy);
    g->border_fill = 1;
    g->fill = t->fill;
}

/* torchvision RandomErasing.get_params; returns 0 when no try fits. */
static int erase_rect(tg_random *r, const tg_augment_transform *t, int64_t h, int64_t w, tg_augment_rect *rect)
{
    double area = (double)h * (double)w, log_lo = log(t->ratio[0]), log_hi = log(t->ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * tg_random_uniform(r, t->scale[0], t->scale[1]);
        double aspect = exp(tg_random_uniform(r, log_lo, log_hi));
        int64_t eh = (int64_t)rint(sqrt(target * aspect)), ew = (int64_t)rint(sqrt(target / aspect));
        if (!(eh < h && ew < w) || eh < 1 || ew < 1) continue;
        int64_t y = tg_random_below(r, h - eh + 1), x = tg_random_below(r, w - ew + 1);
        *rect = (tg_augment_rect){x, y, x + ew, y + eh};
        return 1;
    }
    return 0;
}

int64_t tg_augment_multiscale_size(const double *sizes, int n, uint64_t seed, uint64_t batch_index)
{
    tg_random r = {tg_random_key(seed, 0, batch_index, MULTI_SCALE_STREAM), 0};
    return (int64_t)sizes[tg_random_below(&r, n)];
}

static tg_status plan_transform(plan *p, int pos, const tg_augment_transform *t, tg_dtype dtype, uint64_t seed,
                                uint64_t epoch, uint64_t index)
{
    tg_random r = {tg_random_key(seed, epoch, index, (uint64_t)pos), 0};
    if (!(tg_random_unit(&r) < t->p)) return TG_STATUS_OK;
    const int64_t h = p->h, w = p->w, sh = (int64_t)t->size[0], sw = (int64_t)t->size[1];
    const char *name = tg_augment_kind_name(t->kind);
    tg_augment_geom g;
    switch (t->kind) {
    case TG_AUGMENT_KIND_HFLIP: {
        double m[6] = {-1, 0, (double)w, 0, 1, 0};
        exact_geom(&g, m, h, w, h, w);
        break;
    }
    case TG_AUGMENT_KIND_VFLIP: {
        double m[6] = {1, 0, 0, 0, -1, (double)h};
        exact_geom(&g, m, h, w, h, w);
        break;
    }
    case TG_AUGMENT_KIND_ROT90: {
        int k = (int)t->k[tg_random_below(&r, t->n_k)];
        if (k == 0) return TG_STATUS_OK;
        double m1[6] = {0, -1, (double)w, 1, 0, 0}, m2[6] = {-1, 0, (double)w, 0, -1, (double)h},
               m3[6] = {0, 1, 0, -1, 0, (double)h};
        if (k == 2) exact_geom(&g, m2, h, w, h, w);
        else exact_geom(&g, k == 1 ? m1 : m3, h, w, w, h);
        break;
    }
    case TG_AUGMENT_KIND_RANDOM_RESIZED_CROP: {
        int64_t box[4];
        rrc_params(&r, t, h, w, box);
        resized_crop_geom(&g, h, w, box[0], box[1], box[2], box[3], sh, sw);
        break;
    }
    case TG_AUGMENT_KIND_RANDOM_CROP: {
        /* NOTE: like torchvision's RandomCrop(padding=...), the image is first padded with
         * `fill` by `padding` pixels on every side (padded size ph, pw), then a window of
         * the output size is drawn uniformly inside it; offsets are in the unpadded image. */
        int64_t pad = (int64_t)t->padding, ph = h + 2 * pad, pw = w + 2 * pad;
        if ((sh > ph || sw > pw) && !t->pad_if_needed)
            return tg_error(TG_STATUS_CONFIG,
                            "transform %d (random_crop): size (%lld, %lld) is larger than the image (%lld, %lld) "
                            "with padding %lld and pad_if_needed is false; crop smaller or set pad_if_needed",
                            pos, (long long)sh, (long long)sw, (long long)h, (long long)w, (long long)pad);
        int64_t top = ph >= sh ? tg_random_below(&r, ph - sh + 1) : -tg_random_below(&r, sh - ph + 1);
        int64_t left = pw >= sw ? tg_random_below(&r, pw - sw + 1) : -tg_random_below(&r, sw - pw + 1);
        crop_geom(&g, h, w, top - pad, left - pad, sh, sw, t->fill);
        break;
    }
    case TG_AUGMENT_KIND_CENTER_CROP:
        /* NOTE: like torchvision, a crop larger than the image pads it with zeros. */
        crop_geom(&g, h, w, (int64_t)floor((double)(h - sh) / 2.0 + 0.5), (int64_t)floor((double)(w - sw) / 2.0 + 0.5),
                  sh, sw, 0.0);
        break;
    case TG_AUGMENT_KIND_AFFINE: affine_geom(&g, &r, t, h, w); break;
    case TG_AUGMENT_KIND_RESIZE: tg_augment_geom_full(&g, h, w, sh, sw); break;
    case TG_AUGMENT_KIND_LETTERBOX: letterbox_geom(&g, h, w, sh, sw, t->fill); break;
    case TG_AUGMENT_KIND_MULTI_SCALE: {
        uint64_t batch = index / (uint64_t)t->batch_size;
        int64_t size = tg_augment_multiscale_size(t->sizes, t->n_sizes, tg_random_key(seed, epoch, 0, MULTI_SCALE_STREAM),
                                                  batch);
        letterbox_geom(&g, h, w, size, size, t->fill);
        break;
    }
    case TG_AUGMENT_KIND_MOSAIC: {
        p->mosaic = 1;
        p->mosaic_size = sh;
        p->mosaic_x = (int64_t)floor(tg_random_uniform(&r, 0.25 * (double)sh, 0.75 * (double)sh));
        p->mosaic_y = (int64_t)floor(tg_random_uniform(&r, 0.25 * (double)sh, 0.75 * (double)sh));
        p->mosaic_fill = t->fill;
        p->h = p->w = sh;
        return TG_STATUS_OK;
    }
    case TG_AUGMENT_KIND_COLOR_JITTER: {
        step *s = add_pixel_step(p, t, STEP_KIND_JITTER);
        s->factors[0] = tg_random_uniform(&r, t->brightness[0], t->brightness[1]);
        s->factors[1] = tg_random_uniform(&r, t->contrast[0], t->contrast[1]);
        s->factors[2] = tg_random_uniform(&r, t->saturation[0], t->saturation[1]);
        s->factors[3] = tg_random_uniform(&r, t->hue[0], t->hue[1]);
        for (int i = 0; i < 4; i++) s->order[i] = i;
        for (int i = 3; i > 0; i--) {
            int j = (int)tg_random_below(&r, i + 1), tmp = s->order[i];
            s->order[i] = s->order[j], s->order[j] = tmp;
        }
        return TG_STATUS_OK;
    }
    case TG_AUGMENT_KIND_GAUSSIAN_BLUR:
        add_pixel_step(p, t, STEP_KIND_BLUR)->sigma = tg_random_uniform(&r, t->sigma[0], t->sigma[1]);
        return TG_STATUS_OK;
    case TG_AUGMENT_KIND_GAUSSIAN_NOISE:
        add_pixel_step(p, t, STEP_KIND_NOISE)->key = tg_random_next(&r);
        return TG_STATUS_OK;
    case TG_AUGMENT_KIND_RANDOM_ERASING: {
        tg_augment_rect rect;
        if (!erase_rect(&r, t, h, w, &rect)) return TG_STATUS_OK;
        step *s = add_pixel_step(p, t, STEP_KIND_ERASE);
        s->rect = rect;
        s->key = tg_random_next(&r);
        return TG_STATUS_OK;
    }
    case TG_AUGMENT_KIND_NORMALIZE: {
        if ((t->n_mean != 1 && t->n_mean != p->c) || (t->n_std != 1 && t->n_std != p->c))
            return tg_error(TG_STATUS_CONFIG,
                            "transform %d (normalize): mean has %d values and std %d but the image has %lld "
                            "channels; give one value per channel (or one for all)",
                            pos, t->n_mean, t->n_std, (long long)p->c);
        double scale = t->value_scale > 0 ? t->value_scale : 1.0 / (double)value_max_of(dtype);
        add_pixel_step(p, t, STEP_KIND_NORMALIZE)->value_scale = scale;
        return TG_STATUS_OK;
    }
    case TG_AUGMENT_KIND_COUNT:
        return tg_error(TG_STATUS_INTERNAL, "augment: transform %d has the invalid kind %s", pos, name ? name : "?");
    }
    add_geom(p, t, &g);
    return TG_STATUS_OK;
}

static tg_status plan_build(const tg_augment_pipeline *pipeline, int64_t c, int64_t h, int64_t w, tg_dtype dtype,
                            uint64_t seed, uint64_t epoch, uint64_t index, plan *p)
{
    p->n = 0;
    p->c = c, p->h = h, p->w = w;
    p->mosaic = 0;
    double identity[6] = {1, 0, 0, 0, 1, 0};
    memcpy(p->forward, identity, sizeof identity);
    for (int i = 0; i < pipeline->n; i++)
        TG_TRY(plan_transform(p, i, &pipeline->transforms[i], dtype, seed, epoch, index));
    return TG_STATUS_OK;
}

tg_status tg_augment_output_shape(const tg_augment_pipeline *pipeline, int64_t channels, int64_t height,
                                  int64_t width, uint64_t seed, uint64_t epoch, uint64_t index, int64_t shape[3])
{
    plan p;
    TG_TRY(plan_build(pipeline, channels, height, width, TG_DTYPE_F32, seed, epoch, index, &p));
    shape[0] = p.c, shape[1] = p.h, shape[2] = p.w;
    return TG_STATUS_OK;
}

/* ---- scratch ---- */

typedef struct scratch_layout {
    size_t image_bytes;    /* each of two float32 buffers [c, h, w] */
    size_t mask_bytes;     /* each of two mask buffers [h, w] of int64 */
    size_t table_bytes;
    size_t temp_bytes;     /* blur's [h, w] */
} scratch_layout;

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Largest shapes any step can see, whatever the draws. */
static scratch_layout layout_for(const tg_augment_pipeline *pipeline, int64_t c, int64_t h, int64_t w)
{
    int64_t max_plane = h * w, max_dim = h > w ? h : w;
    for (int i = 0; i < pipeline->n; i++) {
        const tg_augment_transform *t = &pipeline->transforms[i];
        int64_t sh = (int64_t)t->size[0], sw = (int64_t)t->size[1];
        switch (t->kind) {
        case TG_AUGMENT_KIND_ROT90: h = w = (h > w ? h : w); break;
        case TG_AUGMENT_KIND_RANDOM_RESIZED_CROP:
        case TG_AUGMENT_KIND_RANDOM_CROP:
        case TG_AUGMENT_KIND_CENTER_CROP:
        case TG_AUGMENT_KIND_RESIZE:
        case TG_AUGMENT_KIND_LETTERBOX:
            if (t->p < 1.0) h = h > sh ? h : sh, w = w > sw ? w : sw;
            else h = sh, w = sw;
            break;
        case TG_AUGMENT_KIND_MOSAIC: h = h > sh ? h : sh, w = w > sw ? w : sw; break;
        case TG_AUGMENT_KIND_MULTI_SCALE:
            for (int k = 0; k < t->n_sizes; k++) {
                int64_t s = (int64_t)t->sizes[k];
                h = h > s ? h : s, w = w > s ? w : s;
            }
            break;
        default: break;
        }
        if (h * w > max_plane) max_plane = h * w;
        if (h > max_dim) max_dim = h;
        if (w > max_dim) max_dim = w;
    }
    scratch_layout l;
    l.image_bytes = round64((size_t)(c * max_plane) * sizeof(float));
    l.mask_bytes = round64((size_t)max_plane * sizeof(int64_t));
    l.table_bytes = round64(tg_augment_geom_scratch_bytes(max_dim, max_dim));
    l.temp_bytes = round64((size_t)max_plane * sizeof(float));
    return l;
}

size_t tg_augment_scratch_bytes(const tg_augment_pipeline *pipeline, int64_t channels, int64_t height,
                                int64_t width, int64_t n_boxes)
{
    (void)n_boxes;
    scratch_layout l = layout_for(pipeline, channels, height, width);
    return 2 * l.image_bytes + 2 * l.mask_bytes + l.table_bytes + l.temp_bytes + 64;
}

/* ---- execution ---- */

/* The view of a sample's image: the whole image's size, and the part its tensor holds. */
static tg_augment_view view_of_sample(const tg_augment_sample *s)
{
    const tg_tensor *im = s->image;
    const tg_augment_part *part = &s->part;
    int64_t c = part->interleaved ? im->shape[2] : im->shape[0];
    int64_t rows = part->interleaved ? im->shape[0] : im->shape[1], cols = part->interleaved ? im->shape[1] : im->shape[2];
    int whole = part->height == 0;
    return (tg_augment_view){im->dtype, im->data, c, whole ? rows : part->height, whole ? cols : part->width,
                             whole ? 0 : part->x0, whole ? 0 : part->y0, rows, cols, part->interleaved};
}

static tg_status check_sample(const tg_augment_sample *s, int i, const tg_augment_sample *first)
{
    char buf[64];
    const tg_tensor *im = s->image;
    const char *layout = s->part.interleaved ? "(H, W, C)" : "(C, H, W)";
    if (!im || im->ndim != 3 || im->shape[0] < 1 || im->shape[1] < 1 || im->shape[2] < 1)
        return tg_error(TG_STATUS_SHAPE, "augment: sample %d's image must be %s with every dim >= 1, got %s", i, layout,
                        im ? tg_shape_str(im, buf, sizeof buf) : "none");
    if (im->dtype != TG_DTYPE_U8 && im->dtype != TG_DTYPE_U16 && im->dtype != TG_DTYPE_F32)
        return tg_error(TG_STATUS_DTYPE, "augment: sample %d's image is %s; use uint8, uint16 or float32", i,
                        tg_dtype_name(im->dtype));
    if (s->part.interleaved || s->part.height) {
        tg_augment_view v = view_of_sample(s);
        if (s->mask || first != s)
            return tg_error(TG_STATUS_VALUE, "augment: sample %d is a part of an image or interleaved, which only a "
                            "single sample without a mask may be; pass the whole (C, H, W) image", i);
        if (v.x0 < 0 || v.y0 < 0 || v.h < 1 || v.w < 1 || v.x0 + v.cols > v.w || v.y0 + v.rows > v.h)
            return tg_error(TG_STATUS_VALUE, "augment: sample %d holds %lld x %lld pixels at (%lld, %lld), which is "
                            "not inside its whole image of %lld x %lld", i, (long long)v.cols, (long long)v.rows,
                            (long long)v.x0, (long long)v.y0, (long long)v.w, (long long)v.h);
    }
    if (s->mask) {
        const tg_tensor *m = s->mask;
        if (m->ndim != 2 || m->shape[0] != im->shape[1] || m->shape[1] != im->shape[2])
            return tg_error(TG_STATUS_SHAPE, "augment: sample %d's mask must be (H, W) = (%lld, %lld) like its image, got %s",
                            i, (long long)im->shape[1], (long long)im->shape[2], tg_shape_str(m, buf, sizeof buf));
        if (m->dtype != TG_DTYPE_U8 && m->dtype != TG_DTYPE_I32 && m->dtype != TG_DTYPE_I64)
            return tg_error(TG_STATUS_DTYPE, "augment: sample %d's mask is %s; use uint8, int32 or int64 class indices",
                            i, tg_dtype_name(m->dtype));
    }
    if (s->n_boxes < 0 || (s->n_boxes > 0 && !s->boxes))
        return tg_error(TG_STATUS_VALUE, "augment: sample %d has n_boxes %lld but no boxes", i, (long long)s->n_boxes);
    if (first && first != s) {
        if (im->shape[0] != first->image->shape[0] || im->dtype != first->image->dtype)
            return tg_error(TG_STATUS_SHAPE,
                            "augment: mosaic samples must share channels and dtype; sample %d is %lld x %s, sample 0 "
                            "is %lld x %s",
                            i, (long long)im->shape[0], tg_dtype_name(im->dtype), (long long)first->image->shape[0],
                            tg_dtype_name(first->image->dtype));
        if ((s->mask == NULL) != (first->mask == NULL) || (s->mask && s->mask->dtype != first->mask->dtype))
            return tg_error(TG_STATUS_SHAPE, "augment: mosaic samples must all have masks of one dtype, or none (sample %d differs)", i);
    }
    return TG_STATUS_OK;
}

static tg_augment_view view_of(const tg_tensor *image)
{
    return (tg_augment_view){.dtype = image->dtype, .data = image->data, .c = image->shape[0], .h = image->shape[1],
                             .w = image->shape[2]};
}

/* The rectangle of the input that a plan reads: its first step's window when that step
 * is geometric (it reads nothing else), else the whole (h, w). */
static tg_augment_rect plan_source_window(const plan *p, int64_t h, int64_t w)
{
    if (!p->mosaic && p->n > 0 && p->steps[0].kind == STEP_KIND_GEOM) return p->steps[0].geom.window;
    return (tg_augment_rect){0, 0, w, h};
}

tg_status tg_augment_source_window(const tg_augment_pipeline *pipeline, int64_t channels, int64_t height,
                                   int64_t width, uint64_t seed, uint64_t epoch, uint64_t index, int64_t window[4])
{
    plan p;
    TG_TRY(plan_build(pipeline, channels, height, width, TG_DTYPE_U8, seed, epoch, index, &p));
    tg_augment_rect r = plan_source_window(&p, height, width);
    window[0] = r.x0, window[1] = r.y0, window[2] = r.x1, window[3] = r.y1;
    return TG_STATUS_OK;
}

/* Copies a sample's boxes into out[at..] and returns how many. */
static int64_t copy_boxes(const tg_augment_sample *s, tg_augment_output *out, int64_t at)
{
    if (s->n_boxes > 0) memcpy(out->boxes + 4 * at, s->boxes, (size_t)s->n_boxes * 4 * sizeof(float));
    for (int64_t i = 0; i < s->n_boxes; i++) out->labels[at + i] = s->labels ? s->labels[i] : 0;
    return s->n_boxes;
}

/* Geometry of mosaic quadrant q (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right):
 * the image scaled to a long side of `size` with its corner at the centre. */
static void mosaic_geom(const plan *p, int q, int64_t h, int64_t w, tg_augment_geom *g)
{
    const int64_t s = p->mosaic_size, cx = p->mosaic_x, cy = p->mosaic_y;
    double r = (double)s / (double)(h > w ? h : w);
    int64_t nh = (int64_t)llround((double)h * r), nw = (int64_t)llround((double)w * r);
    if (nh < 1) nh = 1;
    if (nw < 1) nw = 1;
    int64_t px = (q & 1) ? cx : cx - nw, py = (q & 2) ? cy : cy - nh;
    tg_augment_geom_full(g, h, w, s, s);
    g->m[0] = (double)w / (double)nw, g->m[2] = -(double)px * (double)w / (double)nw;
    g->m[4] = (double)h / (double)nh, g->m[5] = -(double)py * (double)h / (double)nh;
    g->region = (tg_augment_rect){(q & 1) ? cx : 0, (q & 2) ? cy : 0, (q & 1) ? s : cx, (q & 2) ? s : cy};
    tg_augment_rect placed = {px, py, px + nw, py + nh};
    tg_augment_rect c = {placed.x0 > g->region.x0 ? placed.x0 : g->region.x0,
                         placed.y0 > g->region.y0 ? placed.y0 : g->region.y0,
                         placed.x1 < g->region.x1 ? placed.x1 : g->region.x1,
                         placed.y1 < g->region.y1 ? placed.y1 : g->region.y1};
    if (c.x1 < c.x0) c.x1 = c.x0;
    if (c.y1 < c.y0) c.y1 = c.y0;
    g->content = c;
    g->fill = p->mosaic_fill;
}

tg_status tg_augment_apply(const tg_augment_pipeline *pipeline, const tg_augment_sample *samples, int n_samples,
                           uint64_t seed, uint64_t epoch, uint64_t index, void *scratch, size_t scratch_bytes,
                           tg_augment_output *out)
{
    if (n_samples < 1 || !samples)
        return tg_error(TG_STATUS_VALUE, "augment: at least one sample is needed, got %d", n_samples);
    const int wants_mosaic = pipeline->n > 0 && pipeline->transforms[0].kind == TG_AUGMENT_KIND_MOSAIC;
    if (wants_mosaic && n_samples != 4)
        return tg_error(TG_STATUS_VALUE, "augment: the pipeline starts with mosaic, which takes 4 samples; got %d",
                        n_samples);
    int64_t max_h = 0, max_w = 0, total_boxes = 0;
    for (int i = 0; i < (wants_mosaic ? 4 : 1); i++) {
        TG_TRY(check_sample(&samples[i], i, &samples[0]));
        max_h = samples[i].image->shape[1] > max_h ? samples[i].image->shape[1] : max_h;
        max_w = samples[i].image->shape[2] > max_w ? samples[i].image->shape[2] : max_w;
        total_boxes += samples[i].n_boxes;
    }
    if (wants_mosaic && (samples[0].part.interleaved || samples[0].part.height))
        return tg_error(TG_STATUS_VALUE, "augment: mosaic takes whole (C, H, W) images; sample 0 is a part or "
                        "interleaved");
    const tg_augment_sample *first = &samples[0];
    const tg_tensor *image = first->image;
    const tg_augment_view source = view_of_sample(first);
    const int64_t c = source.c;
    plan p;
    TG_TRY(plan_build(pipeline, c, source.h, source.w, image->dtype, seed, epoch, index, &p));
    const int mosaic = p.mosaic;
    if (!mosaic) max_h = source.h, max_w = source.w, total_boxes = first->n_boxes;
    if (source.rows != source.h || source.cols != source.w) {
        tg_augment_rect need = plan_source_window(&p, source.h, source.w);
        if (need.x0 < source.x0 || need.y0 < source.y0 || need.x1 > source.x0 + source.cols ||
            need.y1 > source.y0 + source.rows)
            return tg_error(TG_STATUS_VALUE, "augment: the sample holds pixels [%lld, %lld) x [%lld, %lld) of its "
                            "image but these draws read [%lld, %lld) x [%lld, %lld); pass the part that "
                            "tg_augment_source_window gives", (long long)source.x0, (long long)(source.x0 + source.cols),
                            (long long)source.y0, (long long)(source.y0 + source.rows), (long long)need.x0,
                            (long long)need.x1, (long long)need.y0, (long long)need.y1);
    }

    scratch_layout l = layout_for(pipeline, c, max_h, max_w);
    size_t need = 2 * l.image_bytes + 2 * l.mask_bytes + l.table_bytes + l.temp_bytes + 64;
    if (scratch_bytes < need || !scratch)
        return tg_error(TG_STATUS_VALUE,
                        "augment: the scratch buffer has %zu bytes but this input (%lld, %lld, %lld) needs %zu; size it "
                        "with tg_augment_scratch_bytes",
                        scratch_bytes, (long long)c, (long long)max_h, (long long)max_w, need);
    const int64_t plane = p.h * p.w;
    if (!out->image || out->image_capacity < c * plane)
        return tg_error(TG_STATUS_VALUE, "augment: the output image holds %lld values but the result is (%lld, %lld, %lld)",
                        (long long)out->image_capacity, (long long)c, (long long)p.h, (long long)p.w);
    const int has_mask = first->mask != NULL;
    if (has_mask && (!out->mask || out->mask_capacity < plane))
        return tg_error(TG_STATUS_VALUE, "augment: the output mask holds %lld values but the result is (%lld, %lld)",
                        (long long)out->mask_capacity, (long long)p.h, (long long)p.w);
    if (total_boxes > 0 && (!out->boxes || !out->labels || out->box_capacity < total_boxes))
        return tg_error(TG_STATUS_VALUE, "augment: the output holds %lld boxes but the input has %lld",
                        (long long)out->box_capacity, (long long)total_boxes);

    uintptr_t base = ((uintptr_t)scratch + 63) & ~(uintptr_t)63;
    float *image_buffers[2] = {(float *)base, (float *)(base + l.image_bytes)};
    void *mask_buffers[2] = {(void *)(base + 2 * l.image_bytes), (void *)(base + 2 * l.image_bytes + l.mask_bytes)};
    void *tables = (void *)(base + 2 * l.image_bytes + 2 * l.mask_bytes);
    float *temp = (float *)(base + 2 * l.image_bytes + 2 * l.mask_bytes + l.table_bytes);

    int last_geom = -1;
    for (int i = 0; i < p.n; i++)
        if (p.steps[i].kind == STEP_KIND_GEOM) last_geom = i;

    const tg_dtype mask_dtype = has_mask ? first->mask->dtype : TG_DTYPE_U8;
    const int64_t mask_fill = (int64_t)pipeline->mask_fill;
    tg_augment_view cur = source;
    const void *cur_mask = has_mask ? first->mask->data : NULL;
    int64_t mh = source.h, mw = source.w;
    int writable = 0;
    int64_t n_boxes = 0;

    if (mosaic) {
        float *dst = last_geom < 0 ? out->image : image_buffers[0];
        void *mdst = last_geom < 0 ? out->mask : mask_buffers[0];
        for (int q = 0; q < 4; q++) {
            const tg_augment_sample *s = &samples[q];
            tg_augment_geom g;
            mosaic_geom(&p, q, s->image->shape[1], s->image->shape[2], &g);
            tg_augment_view v = view_of(s->image);
            tg_augment_resample_image(&g, &v, dst, tables);
            if (has_mask)
                tg_augment_resample_mask(&g, mask_dtype, s->mask->data, s->mask->shape[0], s->mask->shape[1], mdst,
                                         mask_fill);
            int64_t added = copy_boxes(s, out, n_boxes);
            n_boxes += tg_augment_map_boxes(&g, out->boxes + 4 * n_boxes, out->labels + n_boxes, added,
                                            pipeline->min_box_area_fraction);
            if (q == 0) {
                double identity[6] = {1, 0, 0, 0, 1, 0};
                memcpy(out->forward, identity, sizeof identity);
                compose_forward(out->forward, &g);
            }
        }
        cur = (tg_augment_view){.dtype = TG_DTYPE_F32, .data = dst, .c = c, .h = p.mosaic_size, .w = p.mosaic_size};
        cur_mask = mdst;
        mh = mw = p.mosaic_size;
        writable = 1;
    } else {
        n_boxes = copy_boxes(first, out, 0);
    }

    for (int i = 0; i < p.n; i++) {
        const step *s = &p.steps[i];
        if (s->kind == STEP_KIND_GEOM) {
            const tg_augment_geom *g = &s->geom;
            float *dst = i == last_geom ? out->image : (cur.data == image_buffers[0] ? image_buffers[1] : image_buffers[0]);
            tg_augment_resample_image(g, &cur, dst, tables);
            cur = (tg_augment_view){.dtype = TG_DTYPE_F32, .data = dst, .c = c, .h = g->out_h, .w = g->out_w};
            writable = 1;
            if (has_mask) {
                void *mdst = i == last_geom ? out->mask : (cur_mask == mask_buffers[0] ? mask_buffers[1] : mask_buffers[0]);
                tg_augment_resample_mask(g, mask_dtype, cur_mask, mh, mw, mdst, mask_fill);
                cur_mask = mdst;
            }
            mh = g->out_h, mw = g->out_w;
            n_boxes = tg_augment_map_boxes(g, out->boxes, out->labels, n_boxes, pipeline->min_box_area_fraction);
            continue;
        }
        if (!writable) {
            float *dst = i > last_geom ? out->image : image_buffers[0];
            tg_augment_to_float(&cur, dst);
            cur = (tg_augment_view){.dtype = TG_DTYPE_F32, .data = dst, .c = cur.c, .h = cur.h, .w = cur.w};
            writable = 1;
        }
        float *x = (float *)cur.data;
        const tg_augment_transform *t = s->t;
        switch (s->kind) {
        case STEP_KIND_JITTER:
            tg_augment_color_jitter(x, cur.c, cur.h, cur.w, s->factors, s->order, value_max_of(image->dtype));
            break;
        case STEP_KIND_BLUR:
            tg_augment_gaussian_blur(x, cur.c, cur.h, cur.w, (int)t->kernel_size[0], (int)t->kernel_size[1], s->sigma,
                                     s->sigma, temp);
            break;
        case STEP_KIND_NOISE:
            tg_augment_gaussian_noise(x, cur.c * cur.h * cur.w, (float)t->std_dev, value_max_of(image->dtype),
                                      t->clip != 0.0, s->key);
            break;
        case STEP_KIND_ERASE:
            tg_augment_erase(x, cur.c, cur.h, cur.w, &s->rect, (float)t->value, t->random_value != 0.0, s->key);
            break;
        case STEP_KIND_NORMALIZE:
            tg_augment_normalize(x, cur.c, cur.h, cur.w, t->mean, t->n_mean, t->std, t->n_std, s->value_scale);
            break;
        case STEP_KIND_GEOM: break;
        }
    }
    if (cur.data != out->image) tg_augment_to_float(&cur, out->image);
    if (has_mask && cur_mask != out->mask)
        memcpy(out->mask, cur_mask, (size_t)(mh * mw) * tg_dtype_size(mask_dtype));
    out->channels = c, out->height = p.h, out->width = p.w, out->n_boxes = n_boxes;
    if (mosaic) {
        /* p.forward starts after the mosaic: sample 0's quadrant map comes first. */
        double f[6];
        memcpy(f, out->forward, sizeof f);
        double r[6] = {p.forward[0] * f[0] + p.forward[1] * f[3], p.forward[0] * f[1] + p.forward[1] * f[4],
                       p.forward[0] * f[2] + p.forward[1] * f[5] + p.forward[2],
                       p.forward[3] * f[0] + p.forward[4] * f[3], p.forward[3] * f[1] + p.forward[4] * f[4],
                       p.forward[3] * f[2] + p.forward[4] * f[5] + p.forward[5]};
        memcpy(out->forward, r, sizeof r);
    } else {
        memcpy(out->forward, p.forward, sizeof p.forward);
    }
    return TG_STATUS_OK;
}

/* ---- batches ---- */

typedef struct batch_ctx {
    const tg_augment_pipeline *pipeline;
    const tg_augment_sample *samples;
    int samples_per_item;
    uint64_t seed, epoch, first_index;
    char *scratch;
    size_t scratch_bytes;
    tg_augment_output *outputs;
    _Atomic int64_t first_failed;   /* lowest failing item, or n_items */
} batch_ctx;

static void batch_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    batch_ctx *b = arg;
    void *scratch = b->scratch + (size_t)thread_index * b->scratch_bytes;
    for (int64_t i = begin; i < end; i++) {
        tg_status status = tg_augment_apply(b->pipeline, b->samples + i * b->samples_per_item, b->samples_per_item,
                                            b->seed, b->epoch, b->first_index + (uint64_t)i, scratch,
                                            b->scratch_bytes, &b->outputs[i]);
        if (status != TG_STATUS_OK) {
            int64_t seen = atomic_load(&b->first_failed);
            while (i < seen && !atomic_compare_exchange_weak(&b->first_failed, &seen, i)) {
            }
        }
    }
}

tg_status tg_augment_apply_batch(const tg_augment_pipeline *pipeline, const tg_augment_sample *samples,
                                 int samples_per_item, int64_t n_items, uint64_t seed, uint64_t epoch,
                                 uint64_t first_index, void *scratch, size_t scratch_bytes, int n_scratch,
                                 tg_augment_output *outputs)
{
    int threads = tg_threads_count();
    if (n_scratch < threads)
        return tg_error(TG_STATUS_VALUE, "augment: %d scratch slots for %d threads; give one per thread", n_scratch,
                        threads);
    batch_ctx b = {pipeline, samples, samples_per_item, seed, epoch, first_index, scratch, scratch_bytes, outputs,
                   n_items};
    tg_parallel_for(n_items, 1, batch_range, &b);
    int64_t failed = atomic_load(&b.first_failed);
    if (failed < n_items)
        return tg_augment_apply(pipeline, samples + failed * samples_per_item, samples_per_item, seed, epoch,
                                first_index + (uint64_t)failed, scratch, scratch_bytes, &outputs[failed]);
    return TG_STATUS_OK;
}
