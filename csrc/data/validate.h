/* validate.h: the per-file measurements of the dataset validator.
 *
 * tg_validate_images reads every image (its header and end marker, or a full
 * decode) in parallel, each file read once, and measures what the validator
 * judges: whether it decodes (and why not), its size, channels and format,
 * and from the pixels its sharpness (variance of the Laplacian), exposure
 * (mean, dark and bright fractions),
 * contrast (standard deviation), information (histogram entropy) and a 64-bit
 * DCT perceptual hash. tg_validate_masks reads segmentation masks: size and the
 * histogram of their values. tg_validate_near_pairs lists the pairs of hashes
 * within a Hamming distance.
 *
 * Not here: any judgement (thresholds, duplicates across splits, class balance,
 * label errors): trugrade/validator.py decides from these numbers. One file's
 * failure is recorded in its result (status and message), never returned: the
 * functions fail only on bad arguments, memory, or an interrupt (Ctrl-C). */
#ifndef TG_VALIDATE_H
#define TG_VALIDATE_H

#include <stdint.h>

#include "../core/status.h"
#include "image.h"

#define TG_VALIDATE_MESSAGE_BYTES 320
#define TG_VALIDATE_MASK_VALUES 256  /* mask histograms count values 0..255; above is counted apart */

typedef enum tg_validate_mode {
    TG_VALIDATE_MODE_HEADER = 0,   /* header and the end marker (PNG IEND, JPEG EOI): fast; finds truncated
                                      files, misses damaged pixel data in between */
    TG_VALIDATE_MODE_DECODE,       /* full decode and the pixel measurements */
} tg_validate_mode;

typedef struct tg_validate_options {
    tg_validate_mode mode;
    int64_t max_pixels;            /* as tg_decode_options.max_pixels (0: the default limit) */
} tg_validate_options;

/* What one image file gave. The pixel measurements are on the gray image scaled
 * to 0..255 (see validate.c for the scaling of uint16 and float images) and are
 * 0 in header mode or when the file failed. */
typedef struct tg_image_check {
    tg_status status;                  /* TG_STATUS_OK, or why the file failed (DECODE, IO, ...) */
    char message[TG_VALIDATE_MESSAGE_BYTES]; /* the failure's message ("" when OK) */
    int64_t size_bytes;                /* -1 when the file cannot be stat'ed */
    tg_image_format format;            /* from the content */
    int extension_mismatch;            /* the name's extension names another format */
    int64_t width, height, channels;
    tg_dtype dtype;
    double laplacian_variance;         /* sharpness: variance of the 4-neighbour Laplacian */
    double mean, std;                  /* brightness and contrast */
    double dark_fraction, bright_fraction; /* pixels <= 10 and >= 245 */
    double entropy;                    /* bits, of the 256-bin histogram */
    uint64_t phash;                    /* DCT hash of the 32x32 gray thumbnail's 8x8 low frequencies */
} tg_image_check;

typedef struct tg_mask_check {
    tg_status status;
    char message[TG_VALIDATE_MESSAGE_BYTES];
    int64_t width, height, channels;
    int64_t max_value;                 /* the largest value (first channel) */
    int64_t histogram[TG_VALIDATE_MASK_VALUES]; /* [256] pixels per value 0..255 */
    int64_t above;                     /* pixels of value > 255 (uint16 masks) or not an integer */
} tg_mask_check;

/* Checks paths[0..n) into out[0..n). TG_STATUS_INTERRUPTED after Ctrl-C. */
tg_status tg_validate_images(const char *const *paths, int64_t n, const tg_validate_options *options,
                             tg_image_check *out);

/* Decodes the masks paths[0..n) into out[0..n). */
tg_status tg_validate_masks(const char *const *paths, int64_t n, const tg_validate_options *options,
                            tg_mask_check *out);

/* The pairs (i < j) of hashes[0..n) within `max_distance` bits: *pairs is a new
 * malloc'ed [*count, 3] array of (i, j, distance), ordered by i then j. */
tg_status tg_validate_near_pairs(const uint64_t *hashes, int64_t n, int max_distance, int64_t **pairs,
                                 int64_t *count);

#endif
