/* decode_jpeg.c: JPEG files through libjpeg-turbo, to (C, H, W) uint8.
 *
 * Gray gives 1 channel, YCbCr and RGB give 3 (RGB); baseline, extended and
 * progressive files. The EXIF orientation (APP1 "Exif", IFD0 tag 0x0112) is
 * applied, all 8 values, as Pillow's ImageOps.exif_transpose does. Decoding uses
 * libjpeg's defaults (islow IDCT, fancy upsampling), as Pillow does.
 *
 * tg_jpeg_decode_window decodes only the rectangle a caller picks from the image's
 * size (the loader's random crop), interleaved: rows above it are entropy-decoded and
 * skipped, rows below it are never read, columns outside it are not transformed.
 *
 * Not here: CMYK and YCCK files (refused: their inversion conventions differ
 * between writers), 12-bit JPEG, arithmetic-coded files beyond what the library
 * was built with, and colour management (ICC profiles are ignored). */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "decode.h"

/* Progressive files with more scans than this are refused: each scan makes the
 * library walk the whole coefficient buffer, so a file of tiny scans is a CPU bomb. */
#define JPEG_MAX_SCANS 1000

/* The narrowest band of columns tg_jpeg_decode_window decodes (see its NOTE): 8 chroma
 * columns at the widest subsampling, 4:1. */
#define JPEG_MIN_BAND 32

int tg_jpeg_sniff(const uint8_t *data, size_t size)
{
    return size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff;
}

typedef struct jpeg_failure {
    struct jpeg_error_mgr manager;   /* first: libjpeg sees only this part */
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX + 64];
} jpeg_failure;

static void on_jpeg_error(j_common_ptr cinfo)
{
    jpeg_failure *failure = (jpeg_failure *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, failure->message);
    longjmp(failure->jump, 1);
}

/* NOTE: libjpeg reports damaged data as warnings and goes on (a truncated file is
 * finished with gray), so every warning fails the decode, except "extraneous bytes
 * before marker": that one is common in files whose pixels are intact (bytes
 * padded between segments by some writers), and libjpeg resynchronises exactly. */
static void on_jpeg_message(j_common_ptr cinfo, int level)
{
    if (level >= 0) return; /* trace messages */
    if (cinfo->err->msg_code == JWRN_EXTRANEOUS_DATA) return;
    on_jpeg_error(cinfo);
}

static void on_jpeg_progress(j_common_ptr cinfo)
{
    if (!cinfo->is_decompressor) return;
    j_decompress_ptr dinfo = (j_decompress_ptr)cinfo;
    if (dinfo->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_failure *failure = (jpeg_failure *)cinfo->err;
        snprintf(failure->message, sizeof failure->message, "more than %d progressive scans (a CPU bomb?)",
                 JPEG_MAX_SCANS);
        longjmp(failure->jump, 1);
    }
}

/* ---- EXIF orientation ---- */

static uint32_t read_u16(const uint8_t *p, int big_endian)
{
    return big_endian ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

static uint32_t read_u32(const uint8_t *p, int big_endian)
{
    return big_endian ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                      : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* The orientation 1..8 of an APP1 Exif segment's IFD0, or 1 when absent or invalid.
 * NOTE: a damaged Exif block is not a damaged image: it leaves the pixels as stored. */
static int exif_orientation(const uint8_t *segment, size_t length)
{
    if (length < 14 || memcmp(segment, "Exif\0\0", 6) != 0) return 1;
    const uint8_t *tiff = segment + 6; /* [tiff_size] */
    size_t tiff_size = length - 6;
    int big_endian;
    if (tiff[0] == 'I' && tiff[1] == 'I') big_endian = 0;
    else if (tiff[0] == 'M' && tiff[1] == 'M') big_endian = 1;
    else return 1;
    if (read_u16(tiff + 2, big_endian) != 42) return 1;
    uint32_t ifd = read_u32(tiff + 4, big_endian);
    if (ifd > tiff_size || tiff_size - ifd < 2) return 1;
    uint32_t entries = read_u16(tiff + ifd, big_endian);
    for (uint32_t i = 0; i < entries; i++) {
        size_t at = (size_t)ifd + 2 + (size_t)i * 12;
        if (at + 12 > tiff_size) return 1;
        const uint8_t *entry = tiff + at;
        if (read_u16(entry, big_endian) != 0x0112) continue;
        uint32_t type = read_u16(entry + 2, big_endian);
        uint32_t value = type == 3 ? read_u16(entry + 8, big_endian) : type == 4 ? read_u32(entry + 8, big_endian) : 0;
        return value >= 1 && value <= 8 ? (int)value : 1;
    }
    return 1;
}

/* Source pixel (row, column) for output pixel (r, c) under an EXIF orientation;
 * the input is height x width. */
static void oriented_source(int orientation, int64_t r, int64_t c, int64_t height, int64_t width, int64_t *row,
                            int64_t *col)
{
    switch (orientation) {
    case 2: *row = r; *col = width - 1 - c; break;                 /* mirror left-right */
    case 3: *row = height - 1 - r; *col = width - 1 - c; break;    /* rotate 180 */
    case 4: *row = height - 1 - r; *col = c; break;                /* mirror top-bottom */
    case 5: *row = c; *col = r; break;                             /* transpose */
    case 6: *row = height - 1 - c; *col = r; break;                /* rotate 90 clockwise */
    case 7: *row = height - 1 - c; *col = width - 1 - r; break;    /* transverse */
    case 8: *row = c; *col = width - 1 - r; break;                 /* rotate 90 counter-clockwise */
    default: *row = r; *col = c; break;
    }
}

/* Interleaved [H, W, C] decoded samples to the oriented planar output [C, H', W']. */
static void orient_to_chw(const uint8_t *src, uint8_t *dst, int64_t height, int64_t width, int64_t channels,
                          int orientation)
{
    int swap = orientation >= 5;
    int64_t out_h = swap ? width : height, out_w = swap ? height : width;
    for (int64_t r = 0; r < out_h; r++)
        for (int64_t c = 0; c < out_w; c++) {
            int64_t row, col;
            oriented_source(orientation, r, c, height, width, &row, &col);
            const uint8_t *s = src + (row * width + col) * channels;
            for (int64_t k = 0; k < channels; k++) dst[(k * out_h + r) * out_w + c] = s[k];
        }
}

/* ---- decoding ---- */

typedef struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr progress;
    jpeg_failure failure;
    uint8_t *interleaved;   /* [H, W, C] decoded rows */
    tg_tensor *out;
} jpeg_job;

/* Creates the decompressor and reads the header: the checks and sizes every decode
 * shares. Runs under the caller's setjmp. */
static tg_status read_header(const tg_decode_input *in, tg_image_info *info, jpeg_job *job, int *orientation_out)
{
    struct jpeg_decompress_struct *cinfo = &job->cinfo;
    jpeg_create_decompress(cinfo);
    job->progress.progress_monitor = on_jpeg_progress;
    cinfo->progress = &job->progress;
    jpeg_mem_src(cinfo, in->data, (unsigned long)in->size);
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(cinfo, TRUE);

    int orientation = 1;
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
            orientation = exif_orientation(m->data, m->data_length);
            break;
        }

    int channels;
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE: channels = 1; cinfo->out_color_space = JCS_GRAYSCALE; break;
    case JCS_YCbCr:
    case JCS_RGB: channels = 3; cinfo->out_color_space = JCS_RGB; break;
    case JCS_CMYK:
    case JCS_YCCK:
        return tg_error(TG_STATUS_DECODE, "%s: %s JPEG is not supported (only gray, YCbCr and RGB); convert it "
                        "to RGB first", in->name, cinfo->jpeg_color_space == JCS_CMYK ? "CMYK" : "YCCK");
    default:
        return tg_error(TG_STATUS_DECODE, "%s: JPEG with %d components in an unknown colour space is not supported",
                        in->name, cinfo->num_components);
    }
    int64_t height = cinfo->image_height, width = cinfo->image_width;
    TG_TRY(tg_image_check_pixels(in, width, height));
    int swap = orientation >= 5;
    info->width = swap ? height : width;
    info->height = swap ? width : height;
    info->channels = channels;
    info->dtype = TG_DTYPE_U8;
    *orientation_out = orientation;
    return TG_STATUS_OK;
}

static tg_status decode_with_libjpeg(const tg_decode_input *in, tg_image_info *info, jpeg_job *job)
{
    struct jpeg_decompress_struct *cinfo = &job->cinfo;
    if (setjmp(job->failure.jump))
        return tg_error(TG_STATUS_DECODE, "%s: corrupt or truncated JPEG: %s", in->name, job->failure.message);
    int orientation;
    TG_TRY(read_header(in, info, job, &orientation));
    if (!job->out) return TG_STATUS_OK;
    int64_t height = cinfo->image_height, width = cinfo->image_width, channels = info->channels;

    jpeg_start_decompress(cinfo);
    if ((int64_t)cinfo->output_width != width || (int64_t)cinfo->output_height != height ||
        cinfo->output_components != channels)
        return tg_error(TG_STATUS_INTERNAL, "%s: libjpeg output %ux%ux%d differs from the header's %lldx%lldx%d",
                        in->name, cinfo->output_width, cinfo->output_height, cinfo->output_components,
                        (long long)width, (long long)height, (int)channels);
    int64_t shape[3] = {channels, info->height, info->width};
    TG_TRY(tg_tensor_init(job->out, TG_DTYPE_U8, 3, shape));
    size_t row_bytes = (size_t)width * (size_t)channels;
    int direct = channels == 1 && orientation == 1;
    if (!direct) {
        job->interleaved = malloc(row_bytes * (size_t)height);
        if (!job->interleaved)
            return tg_error(TG_STATUS_NOMEM, "%s: out of memory for %zu bytes of JPEG rows", in->name,
                            row_bytes * (size_t)height);
    }
    uint8_t *pixels = direct ? job->out->data : job->interleaved; /* [H, W, C] */
    while (cinfo->output_scanline < cinfo->output_height) {
        JSAMPROW row = pixels + (size_t)cinfo->output_scanline * row_bytes;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1)
            return tg_error(TG_STATUS_DECODE, "%s: corrupt or truncated JPEG: no data for row %u", in->name,
                            cinfo->output_scanline);
    }
    jpeg_finish_decompress(cinfo);
    if (!direct && orientation == 1) tg_image_hwc_to_chw(job->interleaved, job->out->data, height, width, channels, 1);
    else if (!direct) orient_to_chw(job->interleaved, job->out->data, height, width, channels, orientation);
    return TG_STATUS_OK;
}

static jpeg_job *new_job(void)
{
    jpeg_job *job = calloc(1, sizeof *job);
    if (!job) return NULL;
    job->cinfo.err = jpeg_std_error(&job->failure.manager);
    job->failure.manager.error_exit = on_jpeg_error;
    job->failure.manager.emit_message = on_jpeg_message;
    return job;
}

tg_status tg_jpeg_decode(const tg_decode_input *in, tg_image_info *info, tg_tensor *out)
{
    jpeg_job *job = new_job();
    if (!job) return tg_error(TG_STATUS_NOMEM, "%s: out of memory creating the JPEG decoder", in->name);
    job->out = out;
    tg_status status = decode_with_libjpeg(in, info, job);
    jpeg_destroy_decompress(&job->cinfo);
    free(job->interleaved);
    if (status != TG_STATUS_OK && out) tg_tensor_free(out);
    free(job);
    return status;
}

/* ---- a window of the image ---- */

static tg_status decode_window_with_libjpeg(const tg_decode_input *in, tg_image_window_choice choose, void *ctx,
                                           tg_image_window *out, jpeg_job *job)
{
    struct jpeg_decompress_struct *cinfo = &job->cinfo;
    if (setjmp(job->failure.jump))
        return tg_error(TG_STATUS_DECODE, "%s: corrupt or truncated JPEG: %s", in->name, job->failure.message);
    tg_image_info info;
    int orientation;
    TG_TRY(read_header(in, &info, job, &orientation));
    if (orientation != 1) return TG_STATUS_OK;
    int64_t height = info.height, width = info.width, channels = info.channels;
    int64_t want[4];
    TG_TRY(choose(ctx, channels, height, width, want));
    if (want[2] <= want[0] || want[3] <= want[1]) return TG_STATUS_OK;
    if (want[0] < 0 || want[1] < 0 || want[2] > width || want[3] > height || want[0] >= want[2] || want[1] >= want[3])
        return tg_error(TG_STATUS_VALUE, "%s: window [%lld, %lld) x [%lld, %lld) is outside the %lld x %lld image",
                        in->name, (long long)want[0], (long long)want[2], (long long)want[1], (long long)want[3],
                        (long long)width, (long long)height);
    /* NOTE: fancy upsampling treats the edges of a cropped band like image edges, so
     * the band reaches one column past the window on each side: the window's own
     * columns then come out as in a whole decode. libjpeg-turbo upsamples a band of a
     * single chroma column differently again, so a band is at least MIN_BAND wide. */
    int64_t x0 = want[0] > 0 ? want[0] - 1 : 0, x1 = want[2] < width ? want[2] + 1 : width;
    if (x1 - x0 < JPEG_MIN_BAND) {
        x1 = x0 + JPEG_MIN_BAND < width ? x0 + JPEG_MIN_BAND : width;
        x0 = x1 - JPEG_MIN_BAND > 0 ? x1 - JPEG_MIN_BAND : 0;
    }
    jpeg_start_decompress(cinfo);
    JDIMENSION x_offset = (JDIMENSION)x0, band = (JDIMENSION)(x1 - x0);
    if (band < cinfo->output_width) jpeg_crop_scanline(cinfo, &x_offset, &band);
    int64_t y0 = want[1], rows = want[3] - want[1], cols = band;
    size_t row_bytes = (size_t)cols * (size_t)channels, need = row_bytes * (size_t)rows;
    if (need > out->capacity) {
        uint8_t *bigger = realloc(out->data, need);
        if (!bigger)
            return tg_error(TG_STATUS_NOMEM, "%s: out of memory for %zu bytes of JPEG rows", in->name, need);
        out->data = bigger;
        out->capacity = need;
    }
    if (y0 > 0 && jpeg_skip_scanlines(cinfo, (JDIMENSION)y0) != (JDIMENSION)y0)
        return tg_error(TG_STATUS_DECODE, "%s: corrupt or truncated JPEG: cannot skip to row %lld", in->name,
                        (long long)y0);
    for (int64_t r = 0; r < rows; r++) {
        JSAMPROW row = out->data + (size_t)r * row_bytes;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1)
            return tg_error(TG_STATUS_DECODE, "%s: corrupt or truncated JPEG: no data for row %lld", in->name,
                            (long long)(y0 + r));
    }
    /* NOTE: the rows below the window are never decoded, so damage there goes unseen. */
    jpeg_abort_decompress(cinfo);
    out->channels = channels, out->height = height, out->width = width;
    out->x0 = (int64_t)x_offset, out->y0 = y0, out->rows = rows, out->cols = cols;
    out->decoded = 1;
    return TG_STATUS_OK;
}

tg_status tg_jpeg_decode_window(const tg_decode_input *in, tg_image_window_choice choose, void *ctx,
                                tg_image_window *out)
{
    out->decoded = 0;
    /* NOTE: a file cut short keeps the rows above the cut; without its end marker it
     * is decoded whole, so the damage is reported whatever the window. */
    if (in->size < 4 || in->data[in->size - 2] != 0xff || in->data[in->size - 1] != 0xd9) return TG_STATUS_OK;
    jpeg_job *job = new_job();
    if (!job) return tg_error(TG_STATUS_NOMEM, "%s: out of memory creating the JPEG decoder", in->name);
    tg_status status = decode_window_with_libjpeg(in, choose, ctx, out, job);
    jpeg_destroy_decompress(&job->cinfo);
    if (status != TG_STATUS_OK) out->decoded = 0;
    free(job);
    return status;
}
