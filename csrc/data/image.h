/* image.h: reading image files into tensors (PNG, JPEG, DICOM, IDX, NPY).
 *
 * A decoded image is a tensor (C, H, W) in the file's own sample type: uint8,
 * uint16 or float32 (IDX files hold N images: (N, H, W) or (N, 1, H, W), see
 * tg_image_read). Every failure is TG_STATUS_DECODE (or TG_STATUS_IO when the
 * file cannot be opened, TG_STATUS_NOMEM past the pixel limit) with a message
 * that names the file and the reason; nothing is left allocated. */
#ifndef TG_IMAGE_H
#define TG_IMAGE_H

#include <stdint.h>

#include "../core/status.h"
#include "../core/tensor.h"

typedef enum tg_image_format {
    TG_IMAGE_FORMAT_UNKNOWN = 0,
    TG_IMAGE_FORMAT_PNG,
    TG_IMAGE_FORMAT_JPEG,
    TG_IMAGE_FORMAT_DICOM,
    TG_IMAGE_FORMAT_IDX,
    TG_IMAGE_FORMAT_NPY,
} tg_image_format;

typedef struct tg_decode_options {
    int64_t max_pixels;        /* refuse images with more pixels (0: the default, Pillow's bomb limit) */
    int apply_window;          /* DICOM: apply window centre/width to a float32 result */
} tg_decode_options;

typedef struct tg_image_info {
    tg_image_format format;
    int64_t width, height, channels;
    tg_dtype dtype;
} tg_image_info;

/* Reads the header only: format (by content, not extension), size, channels, dtype. */
tg_status tg_image_probe(const char *path, tg_image_info *info);

/* Decodes the whole file into `out` (a new heap tensor). */
tg_status tg_image_read(const char *path, const tg_decode_options *options, tg_tensor *out);

#endif
