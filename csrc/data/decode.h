/* decode.h: what the decoders of csrc/data share (internal; callers use image.h).
 *
 * Each decoder reads one whole file held in memory. Called with out == NULL it
 * reads the header only and fills `info`; otherwise it also decodes into `out`.
 * The fuzz harnesses (csrc/fuzz/) call these directly. */
#ifndef TG_DECODE_H
#define TG_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"

typedef struct tg_decode_input {
    const uint8_t *data;   /* [size] the whole file */
    size_t size;
    const char *name;      /* the path (or the caller's name) used in every message */
    int64_t max_pixels;    /* > 0 */
    int apply_window;
} tg_decode_input;

typedef enum tg_idx_kind {
    TG_IDX_KIND_IMAGES,    /* (N, H, W) uint8 */
    TG_IDX_KIND_LABELS,    /* (N,) int64 */
    TG_IDX_KIND_ANY,       /* whichever the header declares */
} tg_idx_kind;

tg_status tg_png_decode(const tg_decode_input *in, tg_image_info *info, tg_tensor *out);
tg_status tg_jpeg_decode(const tg_decode_input *in, tg_image_info *info, tg_tensor *out);
/* tg_image_read_window for a file in memory that is a JPEG. */
tg_status tg_jpeg_decode_window(const tg_decode_input *in, tg_image_window_choice choose, void *ctx,
                                tg_image_window *out);
tg_status tg_dicom_decode(const tg_decode_input *in, tg_image_info *info, tg_tensor *out);
tg_status tg_npy_decode(const tg_decode_input *in, tg_image_info *info, tg_tensor *out);
tg_status tg_idx_decode(const tg_decode_input *in, tg_idx_kind kind, tg_image_info *info, tg_tensor *out);

/* TG_STATUS_DECODE "<name>: image of W x H = N pixels is over the limit ..." when
 * width * height > in->max_pixels (or either is <= 0). */
tg_status tg_image_check_pixels(const tg_decode_input *in, int64_t width, int64_t height);

/* Interleaved [H, W, C] to planar [C, H, W]; elem_size 1, 2 or 4 bytes. */
void tg_image_hwc_to_chw(const void *src, void *dst, int64_t height, int64_t width, int64_t channels,
                         size_t elem_size);

/* True when data starts like the format (magic bytes). */
int tg_png_sniff(const uint8_t *data, size_t size);
int tg_jpeg_sniff(const uint8_t *data, size_t size);
int tg_dicom_sniff(const uint8_t *data, size_t size);
int tg_idx_sniff(const uint8_t *data, size_t size);
int tg_npy_sniff(const uint8_t *data, size_t size);

#endif
