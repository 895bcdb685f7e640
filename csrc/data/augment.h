/* augment.h: image augmentation applied consistently to an image, its mask and its boxes.
 *
 * A pipeline is an ordered list of transforms, each with a probability and its
 * parameters, validated once (tg_augment_pipeline_validate) and then read-only:
 * any number of threads may call tg_augment_apply on the same pipeline at once.
 *
 * Data:
 *   image  (C, H, W) uint8, uint16 or float32, any C;
 *   mask   (H, W) uint8, int32 or int64 class indices, resampled nearest-neighbour only
 *          (the pixel containing the sample point; never interpolated);
 *   boxes  float32 [N, 4] (x1, y1, x2, y2) in pixel edge coordinates with int64 labels.
 *          After every geometric transform a box is the bounding box of its mapped
 *          corners, clipped to the output; it is dropped when its clipped area is
 *          below min_box_area_fraction of its unclipped area, or zero.
 * The output image is float32 (C, H', W'), in the source's value scale (uint8 0..255,
 * uint16 0..65535) unless a normalize transform maps it.
 *
 * Randomness: every draw comes from a counter-based generator keyed by (seed, epoch,
 * index, position of the transform in the pipeline) (see augment_random.h); there is
 * no global state, so results are identical whatever thread runs them.
 *
 * Memory: tg_augment_apply allocates nothing; it works inside a caller-provided
 * scratch buffer of tg_augment_scratch_bytes() bytes and writes into caller buffers.
 *
 * Not here: decoding (image.h), batching and worker threads (the loader). */
#ifndef TG_AUGMENT_H
#define TG_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../core/tensor.h"

#define TG_AUGMENT_MAX_TRANSFORMS 32
#define TG_AUGMENT_MAX_CHANNELS 64   /* normalize's mean/std lists */
#define TG_AUGMENT_MAX_SIZES 16      /* multi_scale's list of sizes */

typedef enum tg_augment_kind {
    TG_AUGMENT_KIND_HFLIP = 0,             /* p */
    TG_AUGMENT_KIND_VFLIP,                 /* p */
    TG_AUGMENT_KIND_ROT90,                 /* p, k (allowed quarter turns, counter-clockwise like numpy.rot90) */
    TG_AUGMENT_KIND_RANDOM_RESIZED_CROP,   /* size, scale, ratio */
    TG_AUGMENT_KIND_RANDOM_CROP,           /* size, padding, pad_if_needed, fill */
    TG_AUGMENT_KIND_CENTER_CROP,           /* size */
    TG_AUGMENT_KIND_AFFINE,                /* degrees, translate, scale, shear, fill */
    TG_AUGMENT_KIND_RESIZE,                /* size */
    TG_AUGMENT_KIND_LETTERBOX,             /* size, fill */
    TG_AUGMENT_KIND_MULTI_SCALE,           /* sizes, batch_size, fill: letterbox to a per-batch square size */
    TG_AUGMENT_KIND_MOSAIC,                /* size, fill: 4 samples into one; first transform only */
    TG_AUGMENT_KIND_COLOR_JITTER,          /* brightness, contrast, saturation, hue */
    TG_AUGMENT_KIND_GAUSSIAN_BLUR,         /* kernel_size, sigma */
    TG_AUGMENT_KIND_GAUSSIAN_NOISE,        /* std, clip */
    TG_AUGMENT_KIND_RANDOM_ERASING,        /* scale, ratio, value, random_value */
    TG_AUGMENT_KIND_NORMALIZE,             /* mean, std, value_scale */
    TG_AUGMENT_KIND_COUNT
} tg_augment_kind;

/* One transform: its kind, probability and every parameter any kind uses (each
 * kind reads its own; tg_augment_transform_init sets the defaults). Pairs are
 * (min, max) ranges unless said otherwise. */
typedef struct tg_augment_transform {
    tg_augment_kind kind;
    double p;                            /* probability the transform runs, 0..1 */
    double size[2];                      /* output (height, width) in pixels */
    double scale[2];                     /* rrc/erasing: area fraction; affine: zoom */
    double ratio[2];                     /* aspect ratio w/h range */
    double degrees[2];                   /* affine rotation, counter-clockwise */
    double translate[2];                 /* affine: max shift as a fraction of (width, height) */
    double shear[4];                     /* affine: x range, y range, degrees */
    double fill;                         /* image value outside the source */
    double pad_if_needed;                /* random_crop: 1 pads a small image instead of failing */
    double padding;                      /* random_crop: pixels of fill added on every side first */
    double k[3];                         /* rot90: allowed quarter turns (1..3) */
    int n_k;
    double brightness[2], contrast[2], saturation[2], hue[2];   /* jitter factor ranges */
    double kernel_size[2];               /* blur (height, width), odd */
    double sigma[2];                     /* blur sigma range */
    double std_dev;                      /* noise std, as a fraction of the value range */
    double clip;                         /* noise: 1 clamps to the value range */
    double value;                        /* erasing fill value */
    double random_value;                 /* erasing: 1 fills with standard normal noise */
    double mean[TG_AUGMENT_MAX_CHANNELS], std[TG_AUGMENT_MAX_CHANNELS];
    int n_mean, n_std;
    double value_scale;                  /* normalize: x*value_scale first; 0 means 1/255, 1/65535, 1 by dtype */
    double sizes[TG_AUGMENT_MAX_SIZES];  /* multi_scale square sizes */
    int n_sizes;
    double batch_size;                   /* multi_scale: samples sharing one size */
} tg_augment_transform;

typedef struct tg_augment_pipeline {
    int n;
    tg_augment_transform transforms[TG_AUGMENT_MAX_TRANSFORMS];
    double min_box_area_fraction;        /* boxes keeping less of their area are dropped */
    double mask_fill;                    /* mask value outside the source */
} tg_augment_pipeline;

/* Names ("hflip", "random_resized_crop", ...); NULL for an invalid kind. */
const char *tg_augment_kind_name(tg_augment_kind kind);

/* The kind named `name`; TG_STATUS_CONFIG naming it and the known names otherwise. */
tg_status tg_augment_kind_from_name(const char *name, tg_augment_kind *kind);

/* Names of the parameters `kind` takes, NULL-terminated ("p" included). */
const char *const *tg_augment_param_names(tg_augment_kind kind);

/* Sets the defaults of `kind` (p = 1 except flips and rot90: 0.5). */
void tg_augment_transform_init(tg_augment_transform *t, tg_augment_kind kind);

/* Sets parameter `name` from n values (one number where the parameter takes a
 * range expands as torchvision does: degrees=30 -> (-30, 30), brightness=0.4 ->
 * (0.6, 1.4), size=224 -> (224, 224)). TG_STATUS_CONFIG names the transform, the
 * parameter and what it takes. */
tg_status tg_augment_transform_set(tg_augment_transform *t, const char *name, const double *values, int n);

/* Empties the pipeline (min_box_area_fraction 0, mask_fill 0). */
void tg_augment_pipeline_init(tg_augment_pipeline *pipeline);

/* Checks every transform's values; TG_STATUS_CONFIG names the transform (position and
 * kind), the parameter, its value and the allowed range. */
tg_status tg_augment_pipeline_validate(const tg_augment_pipeline *pipeline);

/* How a sample's image tensor holds the image; all zero: the whole image, (C, H, W).
 * A decoder can hand over only the pixels the draws read (tg_augment_source_window),
 * in the interleaved order it decodes them: the result is the whole image's, bit for
 * bit. Only for a single sample without a mask (no mosaic). */
typedef struct tg_augment_part {
    int64_t height, width;       /* the whole image; 0: the tensor is the whole image */
    int64_t x0, y0;              /* where the tensor's pixels lie in the whole image */
    int interleaved;             /* 1: the tensor is (rows, cols, C) instead of (C, rows, cols) */
} tg_augment_part;

/* One input: an image and optionally its mask and boxes. */
typedef struct tg_augment_sample {
    const tg_tensor *image;      /* (C, H, W) uint8 / uint16 / float32; see part */
    const tg_tensor *mask;       /* (H, W) uint8 / int32 / int64, or NULL */
    const float *boxes;          /* [n_boxes, 4], or NULL when n_boxes is 0 */
    const int64_t *labels;       /* [n_boxes], or NULL (labels read as 0) */
    int64_t n_boxes;
    tg_augment_part part;        /* zero: image is the whole (C, H, W) image */
} tg_augment_sample;

/* The rectangle window = (x0, y0, x1, y1) of a (channels, height, width) image that
 * tg_augment_apply reads with these (seed, epoch, index): the first geometric step's
 * source window (a random_resized_crop's box, say) when the pipeline starts with one,
 * else the whole image. */
tg_status tg_augment_source_window(const tg_augment_pipeline *pipeline, int64_t channels, int64_t height,
                                   int64_t width, uint64_t seed, uint64_t epoch, uint64_t index, int64_t window[4]);

/* Where the result goes, and what the call reports. */
typedef struct tg_augment_output {
    float *image;                /* [C, height, width] */
    int64_t image_capacity;      /* elements */
    void *mask;                  /* [height, width] of the input mask's dtype, or NULL */
    int64_t mask_capacity;       /* elements */
    float *boxes;                /* [box_capacity, 4] */
    int64_t *labels;             /* [box_capacity] */
    int64_t box_capacity;
    /* filled by tg_augment_apply: */
    int64_t channels, height, width, n_boxes;
    double forward[6];           /* output (x, y) = (f0*x + f1*y + f2, f3*x + f4*y + f5) of input (x, y);
                                    for letterbox: scale f0, f4 and offsets f2, f5 */
} tg_augment_output;

/* Output shape (channels, height, width) for an input of (channels, height, width)
 * with these (seed, epoch, index): fixed-size pipelines always give the same, rot90
 * and multi_scale depend on the draw. */
tg_status tg_augment_output_shape(const tg_augment_pipeline *pipeline, int64_t channels, int64_t height,
                                  int64_t width, uint64_t seed, uint64_t epoch, uint64_t index, int64_t shape[3]);

/* Scratch bytes tg_augment_apply needs for inputs up to (channels, height, width)
 * and n_boxes boxes in all (the sum over the four samples of a mosaic). */
size_t tg_augment_scratch_bytes(const tg_augment_pipeline *pipeline, int64_t channels, int64_t height,
                                int64_t width, int64_t n_boxes);

/* Applies the pipeline to samples[0] (samples[0..3] when it starts with mosaic:
 * n_samples must then be 4). Deterministic in (pipeline, samples, seed, epoch,
 * index); thread-safe; no allocation. Fails with TG_STATUS_SHAPE/DTYPE on bad
 * inputs, TG_STATUS_CONFIG when a transform cannot apply to this input (a crop larger
 * than the image, normalize's mean of the wrong length), TG_STATUS_VALUE when the
 * scratch or an output buffer is too small. */
tg_status tg_augment_apply(const tg_augment_pipeline *pipeline, const tg_augment_sample *samples, int n_samples,
                           uint64_t seed, uint64_t epoch, uint64_t index, void *scratch, size_t scratch_bytes,
                           tg_augment_output *out);

/* Applies the pipeline to n_items items in parallel (tg_parallel_for): item i takes
 * samples[i*samples_per_item ..], index first_index + i, outputs[i], and scratch
 * slot t (of scratch_bytes each) on thread t; n_scratch must cover tg_threads_count().
 * Results equal n_items calls of tg_augment_apply. On failure, reports the first
 * failing item's error. */
tg_status tg_augment_apply_batch(const tg_augment_pipeline *pipeline, const tg_augment_sample *samples,
                                 int samples_per_item, int64_t n_items, uint64_t seed, uint64_t epoch,
                                 uint64_t first_index, void *scratch, size_t scratch_bytes, int n_scratch,
                                 tg_augment_output *outputs);

/* Multi-scale training: the size for batch `batch_index`, one of sizes[0..n), drawn
 * from (seed, batch_index) only. */
int64_t tg_augment_multiscale_size(const double *sizes, int n, uint64_t seed, uint64_t batch_index);

#endif
