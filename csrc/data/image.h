/* image.h: reading image files into tensors (PNG, JPEG, DICOM, IDX, NPY).
 *
 * A decoded image is a tensor (C, H, W) in the file's own sample type: uint8,
 * uint16 or float32 (DICOM with a rescale, signed samples or a window, and NPY
 * float64, give float32). An IDX images file holds N images and gives (N, H, W)
 * uint8; an IDX labels file gives (N,) int64 through tg_idx_read_labels.
 *
 * The format is found from the content (magic bytes), never from the name's
 * extension. Every failure is TG_STATUS_DECODE (TG_STATUS_IO when the file
 * cannot be opened or read, TG_STATUS_NOMEM when memory runs out, TG_STATUS_VALUE
 * for bad options) with a message that names the file and the reason; nothing
 * is left allocated. An image with more pixels (width x height) than the limit
 * is refused from its header, before any large allocation.
 *
 * Not here: compressed DICOM (JPEG, JPEG 2000, RLE, ... are refused by name),
 * multi-frame DICOM, CMYK/YCCK JPEG, animated PNG (only the first frame exists
 * for libpng), colour management (ICC profiles and gAMA are ignored, as Pillow's
 * np.asarray does). */
#ifndef TG_IMAGE_H
#define TG_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../core/tensor.h"

/* Pillow's Image.MAX_IMAGE_PIXELS: 1024 * 1024 * 1024 // 4 // 3. */
#define TG_IMAGE_DEFAULT_MAX_PIXELS INT64_C(89478485)

typedef enum tg_image_format {
    TG_IMAGE_FORMAT_UNKNOWN = 0,
    TG_IMAGE_FORMAT_PNG,
    TG_IMAGE_FORMAT_JPEG,
    TG_IMAGE_FORMAT_DICOM,
    TG_IMAGE_FORMAT_IDX,
    TG_IMAGE_FORMAT_NPY,
} tg_image_format;

typedef struct tg_decode_options {
    int64_t max_pixels;        /* refuse images with more pixels (0: TG_IMAGE_DEFAULT_MAX_PIXELS; < 0 is an error) */
    int apply_window;          /* DICOM: apply window centre/width, giving float32 in [0, 1] */
} tg_decode_options;

typedef struct tg_image_info {
    tg_image_format format;            /* from the content */
    tg_image_format extension_format;  /* what the name's extension claims (UNKNOWN: none we know) */
    int extension_mismatch;            /* 1 when the extension names another format than the content */
    int64_t count;                     /* images in the file: N for IDX, 1 otherwise */
    int64_t width, height, channels;   /* of one image, after EXIF orientation; IDX labels: 0 */
    tg_dtype dtype;                    /* of the decoded tensor */
} tg_image_info;

/* "PNG", "JPEG", "DICOM", "IDX", "NPY", "unknown". */
const char *tg_image_format_name(tg_image_format format);

/* Opens path read-only and checks it is a regular file: *fd (the caller closes it) and
 * *size_bytes (also set, with *fd -1, when the path is not a regular file). On error
 * nothing stays open and the status names the file and the reason. */
tg_status tg_image_open_file(const char *path, int *fd, int64_t *size_bytes);

/* Reads the header only: format (by content, not extension), size, channels, dtype. */
tg_status tg_image_probe(const char *path, tg_image_info *info);

/* tg_image_probe of a file already in memory; `name` stands for the file in messages. */
tg_status tg_image_probe_memory(const uint8_t *data, size_t size, const char *name, tg_image_info *info);

/* Decodes the whole file into `out` (a new heap tensor). `options` may be NULL. */
tg_status tg_image_read(const char *path, const tg_decode_options *options, tg_tensor *out);

/* Decodes a file already in memory; `name` stands for the file in messages. */
tg_status tg_image_decode_memory(const uint8_t *data, size_t size, const char *name,
                                 const tg_decode_options *options, tg_tensor *out);

/* Picks the rectangle window = (x0, y0, x1, y1) of a (channels, height, width) image
 * to decode, once its header is read; an empty one (x1 <= x0) declines the file. */
typedef tg_status (*tg_image_window_choice)(void *ctx, int64_t channels, int64_t height, int64_t width,
                                           int64_t window[4]);

/* Part of an image, interleaved: what tg_image_read_window decoded. */
typedef struct tg_image_window {
    uint8_t *data;                     /* [rows, cols, channels]; the caller's, grown with realloc, freed with free */
    size_t capacity;                   /* bytes at data */
    int64_t channels, height, width;   /* the whole image */
    int64_t x0, y0, rows, cols;        /* the rectangle held; it contains the window chosen */
    int decoded;                       /* 0: this file is not for this path; decode it whole */
} tg_image_window;

/* Decodes only the rectangle `choose` picks, with the same pixels as a whole decode
 * there. Only baseline and progressive JPEG files that end with their end marker and
 * carry no EXIF rotation take this path; for any other file it returns TG_STATUS_OK
 * with out->decoded = 0 and the caller decodes the file whole (tg_image_read), as
 * when `choose` declines.
 * NOTE: the rows below the rectangle are not decoded, so damage there is not seen. */
tg_status tg_image_read_window(const char *path, const tg_decode_options *options, tg_image_window_choice choose,
                               void *ctx, tg_image_window *out);

/* An IDX labels file (1-D, plain or gzip) as (N,) int64. */
tg_status tg_idx_read_labels(const char *path, tg_tensor *out);

/* An IDX file of either kind: images (N, H, W) uint8 or labels (N,) int64. */
tg_status tg_idx_read(const char *path, const tg_decode_options *options, tg_tensor *out);

#endif
