/* augment_config.c: names, parameters, defaults and validation of augmentation transforms.
 *
 * Each kind has a table of the parameters it takes; tg_augment_transform_set fills
 * one from a list of numbers (what Python or YAML gives) and
 * tg_augment_pipeline_validate checks ranges. No pixels are touched here. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "augment.h"

typedef enum param_expand {
    PARAM_EXPAND_NONE,        /* exactly the given values */
    PARAM_EXPAND_DUP,         /* v -> (v, v) */
    PARAM_EXPAND_SYMMETRIC,   /* v -> (-v, v) */
    PARAM_EXPAND_JITTER,      /* v -> (max(0, 1 - v), 1 + v), torchvision's ColorJitter */
    PARAM_EXPAND_SHEAR,       /* v -> (-v, v, 0, 0); (a, b) -> (a, b, 0, 0); 4 values as given */
    PARAM_EXPAND_LIST,        /* 1..max values, count kept */
} param_expand;

typedef struct param_spec {
    const char *name;
    size_t offset;            /* of the double array in tg_augment_transform */
    size_t count_offset;      /* of the int count (PARAM_EXPAND_LIST only) */
    int max_values;
    param_expand expand;
} param_spec;

#define FIELD(f) offsetof(tg_augment_transform, f)
#define P_SCALAR(name, f) {name, FIELD(f), 0, 1, PARAM_EXPAND_NONE}
#define P_PAIR(name, f, expand) {name, FIELD(f), 0, 2, expand}
#define P_LIST(name, f, nf, max) {name, FIELD(f), FIELD(nf), max, PARAM_EXPAND_LIST}
#define P_END {NULL, 0, 0, 0, PARAM_EXPAND_NONE}
#define P_PROB P_SCALAR("p", p)

static const param_spec flip_params[] = {P_PROB, P_END};
static const param_spec rot90_params[] = {P_PROB, P_LIST("k", k, n_k, 3), P_END};
static const param_spec rrc_params[] = {P_PROB, P_PAIR("size", size, PARAM_EXPAND_DUP),
                                        P_PAIR("scale", scale, PARAM_EXPAND_NONE),
                                        P_PAIR("ratio", ratio, PARAM_EXPAND_NONE), P_END};
static const param_spec random_crop_params[] = {P_PROB, P_PAIR("size", size, PARAM_EXPAND_DUP),
                                                P_SCALAR("padding", padding),
                                                P_SCALAR("pad_if_needed", pad_if_needed), P_SCALAR("fill", fill),
                                                P_END};
static const param_spec size_params[] = {P_PROB, P_PAIR("size", size, PARAM_EXPAND_DUP), P_END};
static const param_spec affine_params[] = {
    P_PROB, P_PAIR("degrees", degrees, PARAM_EXPAND_SYMMETRIC), P_PAIR("translate", translate, PARAM_EXPAND_DUP),
    P_PAIR("scale", scale, PARAM_EXPAND_NONE), {"shear", FIELD(shear), 0, 4, PARAM_EXPAND_SHEAR},
    P_SCALAR("fill", fill), P_END};
static const param_spec letterbox_params[] = {P_PROB, P_PAIR("size", size, PARAM_EXPAND_DUP), P_SCALAR("fill", fill),
                                              P_END};
static const param_spec multi_scale_params[] = {P_PROB, P_LIST("sizes", sizes, n_sizes, TG_AUGMENT_MAX_SIZES),
                                                P_SCALAR("batch_size", batch_size), P_SCALAR("fill", fill), P_END};
static const param_spec jitter_params[] = {
    P_PROB, P_PAIR("brightness", brightness, PARAM_EXPAND_JITTER), P_PAIR("contrast", contrast, PARAM_EXPAND_JITTER),
    P_PAIR("saturation", saturation, PARAM_EXPAND_JITTER), P_PAIR("hue", hue, PARAM_EXPAND_SYMMETRIC), P_END};
static const param_spec blur_params[] = {P_PROB, P_PAIR("kernel_size", kernel_size, PARAM_EXPAND_DUP),
                                         P_PAIR("sigma", sigma, PARAM_EXPAND_DUP), P_END};
static const param_spec noise_params[] = {P_PROB, P_SCALAR("std", std_dev), P_SCALAR("clip", clip), P_END};
static const param_spec erasing_params[] = {P_PROB, P_PAIR("scale", scale, PARAM_EXPAND_NONE),
                                            P_PAIR("ratio", ratio, PARAM_EXPAND_NONE), P_SCALAR("value", value),
                                            P_SCALAR("random_value", random_value), P_END};
static const param_spec normalize_params[] = {P_PROB, P_LIST("mean", mean, n_mean, TG_AUGMENT_MAX_CHANNELS),
                                              P_LIST("std", std, n_std, TG_AUGMENT_MAX_CHANNELS),
                                              P_SCALAR("value_scale", value_scale), P_END};

typedef struct kind_info {
    const char *name;
    const param_spec *params;
    const char *const *param_names;
} kind_info;

#define NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})

static const kind_info kinds[TG_AUGMENT_KIND_COUNT] = {
    [TG_AUGMENT_KIND_HFLIP] = {"hflip", flip_params, NAMES("p")},
    [TG_AUGMENT_KIND_VFLIP] = {"vflip", flip_params, NAMES("p")},
    [TG_AUGMENT_KIND_ROT90] = {"rot90", rot90_params, NAMES("p", "k")},
    [TG_AUGMENT_KIND_RANDOM_RESIZED_CROP] = {"random_resized_crop", rrc_params, NAMES("p", "size", "scale", "ratio")},
    [TG_AUGMENT_KIND_RANDOM_CROP] = {"random_crop", random_crop_params, NAMES("p", "size", "padding", "pad_if_needed", "fill")},
    [TG_AUGMENT_KIND_CENTER_CROP] = {"center_crop", size_params, NAMES("p", "size")},
    [TG_AUGMENT_KIND_AFFINE] = {"affine", affine_params,
                                NAMES("p", "degrees", "translate", "scale", "shear", "fill")},
    [TG_AUGMENT_KIND_RESIZE] = {"resize", size_params, NAMES("p", "size")},
    [TG_AUGMENT_KIND_LETTERBOX] = {"letterbox", letterbox_params, NAMES("p", "size", "fill")},
    [TG_AUGMENT_KIND_MULTI_SCALE] = {"multi_scale", multi_scale_params, NAMES("p", "sizes", "batch_size", "fill")},
    [TG_AUGMENT_KIND_MOSAIC] = {"mosaic", letterbox_params, NAMES("p", "size", "fill")},
    [TG_AUGMENT_KIND_COLOR_JITTER] = {"color_jitter", jitter_params,
                                      NAMES("p", "brightness", "contrast", "saturation", "hue")},
    [TG_AUGMENT_KIND_GAUSSIAN_BLUR] = {"gaussian_blur", blur_params, NAMES("p", "kernel_size", "sigma")},
    [TG_AUGMENT_KIND_GAUSSIAN_NOISE] = {"gaussian_noise", noise_params, NAMES("p", "std", "clip")},
    [TG_AUGMENT_KIND_RANDOM_ERASING] = {"random_erasing", erasing_params,
                                        NAMES("p", "scale", "ratio", "value", "random_value")},
    [TG_AUGMENT_KIND_NORMALIZE] = {"normalize", normalize_params, NAMES("p", "mean", "std", "value_scale")},
};

const char *tg_augment_kind_name(tg_augment_kind kind)
{
    return ((int)kind >= 0 && kind < TG_AUGMENT_KIND_COUNT) ? kinds[kind].name : NULL;
}

const char *const *tg_augment_param_names(tg_augment_kind kind)
{
    return ((int)kind >= 0 && kind < TG_AUGMENT_KIND_COUNT) ? kinds[kind].param_names : NULL;
}

/* "a, b, c" into buf, for messages listing what is known. */
static const char *join_names(const char *const *names, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; names[i] && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", names[i]);
    return buf;
}

tg_status tg_augment_kind_from_name(const char *name, tg_augment_kind *kind)
{
    const char *all[TG_AUGMENT_KIND_COUNT + 1];
    for (int k = 0; k < TG_AUGMENT_KIND_COUNT; k++) {
        all[k] = kinds[k].name;
        if (name && strcmp(name, kinds[k].name) == 0) {
            *kind = (tg_augment_kind)k;
            return TG_STATUS_OK;
        }
    }
    all[TG_AUGMENT_KIND_COUNT] = NULL;
    char known[512];
    return tg_error(TG_STATUS_CONFIG, "augment: unknown transform '%s'; the known transforms are %s",
                    name ? name : "(null)", join_names(all, known, sizeof known));
}

void tg_augment_transform_init(tg_augment_transform *t, tg_augment_kind kind)
{
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->p = (kind == TG_AUGMENT_KIND_HFLIP || kind == TG_AUGMENT_KIND_VFLIP || kind == TG_AUGMENT_KIND_ROT90 ||
            kind == TG_AUGMENT_KIND_RANDOM_ERASING) ? 0.5 : 1.0;
    t->k[0] = 1, t->k[1] = 2, t->k[2] = 3, t->n_k = 3;
    if (kind == TG_AUGMENT_KIND_RANDOM_ERASING) t->scale[0] = 0.02, t->scale[1] = 0.33, t->ratio[0] = 0.3, t->ratio[1] = 3.3;
    else if (kind == TG_AUGMENT_KIND_AFFINE) t->scale[0] = 1.0, t->scale[1] = 1.0;
    else t->scale[0] = 0.08, t->scale[1] = 1.0, t->ratio[0] = 3.0 / 4.0, t->ratio[1] = 4.0 / 3.0;
    t->brightness[0] = t->brightness[1] = 1.0;
    t->contrast[0] = t->contrast[1] = 1.0;
    t->saturation[0] = t->saturation[1] = 1.0;
    t->sigma[0] = 0.1, t->sigma[1] = 2.0;
    t->std_dev = 0.1;
    t->clip = 1.0;
    t->batch_size = 1.0;
}

tg_status tg_augment_transform_set(tg_augment_transform *t, const char *name, const double *values, int n)
{
    const kind_info *info = &kinds[t->kind];
    const param_spec *spec = NULL;
    for (const param_spec *s = info->params; s->name; s++)
        if (strcmp(s->name, name) == 0) spec = s;
    char known[256];
    if (!spec)
        return tg_error(TG_STATUS_CONFIG, "%s: unknown parameter '%s'; it takes %s", info->name, name,
                        join_names(info->param_names, known, sizeof known));
    for (int i = 0; i < n; i++)
        if (!isfinite(values[i]))
            return tg_error(TG_STATUS_CONFIG, "%s: parameter '%s' has a value that is not a finite number",
                            info->name, name);
    double *field = (double *)((char *)t + spec->offset);
    int ok_count = n >= 1 && n <= spec->max_values;
    if (spec->expand == PARAM_EXPAND_SHEAR) ok_count = n == 1 || n == 2 || n == 4;
    if (!ok_count)
        return tg_error(TG_STATUS_CONFIG, "%s: parameter '%s' takes %s, got %d values", info->name, name,
                        spec->expand == PARAM_EXPAND_SHEAR ? "1, 2 or 4 numbers"
                        : spec->max_values == 1        ? "one number"
                        : spec->max_values == 2        ? "one number or a pair"
                                                       : "a list of numbers",
                        n);
    if (n == 1 && spec->max_values >= 2) {
        switch (spec->expand) {
        case PARAM_EXPAND_DUP: field[0] = field[1] = values[0]; return TG_STATUS_OK;
        case PARAM_EXPAND_SYMMETRIC: field[0] = -fabs(values[0]), field[1] = fabs(values[0]); return TG_STATUS_OK;
        case PARAM_EXPAND_JITTER:
            if (values[0] < 0)
                return tg_error(TG_STATUS_CONFIG, "%s: parameter '%s' must be >= 0, got %g", info->name, name,
                                values[0]);
            field[0] = fmax(0.0, 1.0 - values[0]), field[1] = 1.0 + values[0];
            return TG_STATUS_OK;
        case PARAM_EXPAND_SHEAR:
            field[0] = -fabs(values[0]), field[1] = fabs(values[0]), field[2] = field[3] = 0.0;
            return TG_STATUS_OK;
        case PARAM_EXPAND_NONE:
            return tg_error(TG_STATUS_CONFIG, "%s: parameter '%s' takes a pair (min, max), got one number",
                            info->name, name);
        case PARAM_EXPAND_LIST: break;
        }
    }
    if (spec->expand == PARAM_EXPAND_SHEAR && n == 2) field[2] = field[3] = 0.0;
    for (int i = 0; i < n; i++) field[i] = values[i];
    if (spec->expand == PARAM_EXPAND_LIST) *(int *)((char *)t + spec->count_offset) = n;
    return TG_STATUS_OK;
}

void tg_augment_pipeline_init(tg_augment_pipeline *pipeline)
{
    memset(pipeline, 0, sizeof *pipeline);
}

/* ---- validation ---- */

static int is_integer(double v) { return v == floor(v); }

static tg_status check_range(int pos, const char *kind, const char *name, const double *v, double lo, double hi,
                             int strictly_above_lo)
{
    int bad = v[0] > v[1] || v[0] < lo || v[1] > hi || (strictly_above_lo && v[0] <= lo);
    if (bad)
        return tg_error(TG_STATUS_CONFIG,
                        "transform %d (%s): %s must be a range (min, max) with %g %s min <= max <= %g, got (%g, %g)",
                        pos, kind, name, lo, strictly_above_lo ? "<" : "<=", hi, v[0], v[1]);
    return TG_STATUS_OK;
}

static tg_status check_size(int pos, const char *kind, const double *size)
{
    for (int i = 0; i < 2; i++)
        if (size[i] < 1 || size[i] > 1e6 || !is_integer(size[i]))
            return tg_error(TG_STATUS_CONFIG,
                            "transform %d (%s): size must be given as whole pixels >= 1 (height, width), got (%g, %g)",
                            pos, kind, size[0], size[1]);
    return TG_STATUS_OK;
}

static tg_status check_flag(int pos, const char *kind, const char *name, double v)
{
    if (v != 0.0 && v != 1.0)
        return tg_error(TG_STATUS_CONFIG, "transform %d (%s): %s must be true or false, got %g", pos, kind, name, v);
    return TG_STATUS_OK;
}

static tg_status validate_transform(int pos, const tg_augment_transform *t)
{
    if ((int)t->kind < 0 || t->kind >= TG_AUGMENT_KIND_COUNT)
        return tg_error(TG_STATUS_CONFIG, "transform %d: invalid kind %d", pos, (int)t->kind);
    const char *kind = kinds[t->kind].name;
    if (!(t->p >= 0.0 && t->p <= 1.0))
        return tg_error(TG_STATUS_CONFIG, "transform %d (%s): p must be in [0, 1], got %g", pos, kind, t->p);
    const double inf = INFINITY;
    switch (t->kind) {
    case TG_AUGMENT_KIND_HFLIP:
    case TG_AUGMENT_KIND_VFLIP: return TG_STATUS_OK;
    case TG_AUGMENT_KIND_ROT90:
        for (int i = 0; i < t->n_k; i++)
            if (!is_integer(t->k[i]) || t->k[i] < 0 || t->k[i] > 3)
                return tg_error(TG_STATUS_CONFIG, "transform %d (%s): k lists quarter turns 0..3, got %g", pos, kind,
                                t->k[i]);
        return TG_STATUS_OK;
    case TG_AUGMENT_KIND_RANDOM_RESIZED_CROP:
        TG_TRY(check_size(pos, kind, t->size));
        TG_TRY(check_range(pos, kind, "scale", t->scale, 0.0, 1.0, 1));
        return check_range(pos, kind, "ratio", t->ratio, 0.0, inf, 1);
    case TG_AUGMENT_KIND_RANDOM_CROP:
        TG_TRY(check_size(pos, kind, t->size));
        if (!(t->padding >= 0 && t->padding <= 1024) || !is_integer(t->padding))
            return tg_error(TG_STATUS_CONFIG, "transform %d (%s): padding must be whole pixels in [0, 1024], got %g",
                            pos, kind, t->padding);
        return check_flag(pos, kind, "pad_if_needed", t->pad_if_needed);
    case TG_AUGMENT_KIND_CENTER_CROP:
    case TG_AUGMENT_KIND_RESIZE:
    case TG_AUGMENT_KIND_LETTERBOX: return check_size(pos, kind, t->size);
    case TG_AUGMENT_KIND_MOSAIC:
        if (pos != 0)
            return tg_error(TG_STATUS_CONFIG,
                            "transform %d (mosaic): mosaic combines the four input samples and must come first", pos);
        return check_size(pos, kind, t->size);
    case TG_AUGMENT_KIND_MULTI_SCALE:
        if (t->n_sizes < 1)
            return tg_error(TG_STATUS_CONFIG, "transform %d (%s): sizes must list at least one size", pos, kind);
        for (int i = 0; i < t->n_sizes; i++) {
            double pair[2] = {t->sizes[i], t->sizes[i]};
            TG_TRY(check_size(pos, kind, pair));
        }
        if (t->batch_size < 1 || !is_integer(t->batch_size))
            return tg_error(TG_STATUS_CONFIG, "transform %d (%s): batch_size must be a whole number >= 1, got %g",
                            pos, kind, t->batch_size);
        return TG_STATUS_OK;
    case TG_AUGMENT_KIND_AFFINE:
        TG_TRY(check_range(pos, kind, "degrees", t->degrees, -360.0, 360.0, 0));
        if (t->translate[0] < 0 || t->translate[0] > 1 || t->translate[1] < 0 || t->translate[1] > 1)
            return tg_error(TG_STATUS_CONFIG, "transform %d (%s): translate fractions must be in [0, 1], got (%g, %g)",
                            pos, kind, t->translate[0], t->translate[1]);
        TG_TRY(check_range(pos, kind, "scale", t->scale, 0.0, inf, 1));
        TG_TRY(check_range(pos, kind, "shear", t->shear, -89.0, 89.0, 0));
        return check_range(pos, kind, "shear (y)", t->shear + 2, -89.0, 89.0, 0);
    case TG_AUGMENT_KIND_COLOR_JITTER:
        TG_TRY(check_range(pos, kind, "brightness", t->brightness, 0.0, inf, 0));
        TG_TRY(check_range(pos, kind, "contrast", t->contrast, 0.0, inf, 0));
        TG_TRY(check_range(pos, kind, "saturation", t->saturation, 0.0, inf, 0));
        return check_range(pos, kind, "hue", t->hue, -0.5, 0.5, 0);
    case TG_AUGMENT_KIND_GAUSSIAN_BLUR:
        for (int i = 0; i < 2; i++)
            if (t->kernel_size[i] < 1 || !is_integer(t->kernel_size[i]) || fmod(t->kernel_size[i], 2.0) != 1.0 ||
                t->kernel_size[i] > 255)
                return tg_error(TG_STATUS_CONFIG,
                                "transform %d (%s): kernel_size must be odd whole numbers 1..255, got (%g, %g)", pos,
                                kind, t->kernel_size[0], t->kernel_size[1]);
        return check_range(pos, kind, "sigma", t->sigma, 0.0, inf, 1);
    case TG_AUGMENT_KIND_GAUSSIAN_NOISE:
        if (t->std_dev < 0)
            return tg_error(TG_STATUS_CONFIG, "transform %d (%s): std must be >= 0, got %g", pos, kind, t->std_dev);
        return check_flag(pos, kind, "clip", t->clip);
    case TG_AUGMENT_KIND_RANDOM_ERASING:
        TG_TRY(check_range(pos, kind, "scale", t->scale, 0.0, 1.0, 1));
        TG_TRY(check_range(pos, kind, "ratio", t->ratio, 0.0, inf, 1));
        return check_flag(pos, kind, "random_value", t->random_value);
    case TG_AUGMENT_KIND_NORMALIZE:
        if (t->n_mean < 1 || t->n_std < 1)
            return tg_error(TG_STATUS_CONFIG, "transform %d (%s): mean and std are required (one value per channel)",
                            pos, kind);
        for (int i = 0; i < t->n_std; i++)
            if (!(t->std[i] > 0))
                return tg_error(TG_STATUS_CONFIG, "transform %d (%s): std[%d] must be > 0, got %g", pos, kind, i,
                                t->std[i]);
        if (t->value_scale < 0)
            return tg_error(TG_STATUS_CONFIG, "transform %d (%s): value_scale must be >= 0 (0: by dtype), got %g",
                            pos, kind, t->value_scale);
        return TG_STATUS_OK;
    case TG_AUGMENT_KIND_COUNT: break;
    }
    return tg_error(TG_STATUS_CONFIG, "transform %d: invalid kind %d", pos, (int)t->kind);
}

tg_status tg_augment_pipeline_validate(const tg_augment_pipeline *pipeline)
{
    if (pipeline->n < 0 || pipeline->n > TG_AUGMENT_MAX_TRANSFORMS)
        return tg_error(TG_STATUS_CONFIG, "augment: a pipeline holds 0 to %d transforms, got %d",
                        TG_AUGMENT_MAX_TRANSFORMS, pipeline->n);
    if (!(pipeline->min_box_area_fraction >= 0.0 && pipeline->min_box_area_fraction <= 1.0))
        return tg_error(TG_STATUS_CONFIG, "augment: min_box_area_fraction must be in [0, 1], got %g",
                        pipeline->min_box_area_fraction);
    if (!isfinite(pipeline->mask_fill) || !is_integer(pipeline->mask_fill))
        return tg_error(TG_STATUS_CONFIG, "augment: mask_fill must be a whole number, got %g", pipeline->mask_fill);
    for (int i = 0; i < pipeline->n; i++) TG_TRY(validate_transform(i, &pipeline->transforms[i]));
    return TG_STATUS_OK;
}
