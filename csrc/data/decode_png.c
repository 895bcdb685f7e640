/* decode_png.c: PNG files through libpng, to (C, H, W) uint8 or uint16.
 *
 * Channels are the file's own: gray 1, gray+alpha 2, RGB 3, RGBA 4. A palette
 * image is expanded to its colours, RGB, or RGBA when it has a tRNS chunk (what
 * Pillow's convert('RGB') / convert('RGBA') give). Gray of 1, 2 or 4 bits is
 * scaled to 8 bits (0..255), as Pillow does. 16-bit files stay uint16.
 *
 * Not here: gamma, ICC or sBIT adjustments (np.asarray of a Pillow image makes
 * none either); the tRNS of a gray or RGB image (one transparent colour) does
 * not add an alpha channel, as Pillow's np.asarray adds none. */
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

int tg_png_sniff(const uint8_t *data, size_t size)
{
    static const uint8_t magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return size >= 8 && memcmp(data, magic, 8) == 0;
}

typedef struct png_reader {
    const tg_decode_input *in;
    size_t offset;
    int in_image_data;       /* set once the header is read: warnings from here on are errors */
    char message[256];       /* libpng's reason for the failure */
} png_reader;

static void on_png_error(png_structp png, png_const_charp message)
{
    png_reader *reader = png_get_error_ptr(png);
    snprintf(reader->message, sizeof reader->message, "%s", message);
    png_longjmp(png, 1);
}

/* NOTE: warnings while reading the header concern ancillary chunks (a bad iCCP or
 * tEXt) and leave the pixels intact, so they are ignored; a warning while reading
 * the pixels means damaged image data, so it fails the decode (no half-image). */
static void on_png_warning(png_structp png, png_const_charp message)
{
    png_reader *reader = png_get_error_ptr(png);
    if (reader->in_image_data) on_png_error(png, message);
}

static void read_from_memory(png_structp png, png_bytep data, png_size_t length)
{
    png_reader *reader = png_get_io_ptr(png);
    if (length > reader->in->size - reader->offset) {
        png_error(png, "the file ends early (truncated)");
    }
    memcpy(data, reader->in->data + reader->offset, length);
    reader->offset += length;
}

static tg_status png_failure(const png_reader *reader)
{
    return tg_error(TG_STATUS_DECODE, "%s: corrupt or truncated PNG: %s", reader->in->name,
                    reader->message[0] ? reader->message : "libpng failed");
}

/* Everything that setjmp may come back to lives in this struct (not in locals that
 * change after setjmp, whose values longjmp would leave undefined). */
typedef struct png_job {
    png_structp png;
    png_infop info;
    uint8_t *interleaved;    /* [H, W, C] samples before the planar copy, or NULL */
    png_bytep *rows;         /* [H] row pointers */
    tg_tensor *out;
} png_job;

static void png_job_free(png_job *job, int failed)
{
    png_destroy_read_struct(&job->png, &job->info, NULL);
    free(job->interleaved);
    free(job->rows);
    if (failed && job->out) tg_tensor_free(job->out);
}

static tg_status decode_with_libpng(const tg_decode_input *in, tg_image_info *info, png_job *job, png_reader *reader)
{
    if (setjmp(png_jmpbuf(job->png))) return png_failure(reader);
    png_set_read_fn(job->png, reader, read_from_memory);
    png_set_benign_errors(job->png, 0);
    uint32_t side_limit = in->max_pixels > 0x7fffffff ? 0x7fffffffu : (uint32_t)in->max_pixels;
    png_set_user_limits(job->png, side_limit, side_limit);
    png_set_chunk_cache_max(job->png, 1000);
    png_set_chunk_malloc_max(job->png, 64u << 20);
    png_read_info(job->png, job->info);

    png_uint_32 width = png_get_image_width(job->png, job->info);
    png_uint_32 height = png_get_image_height(job->png, job->info);
    int bit_depth = png_get_bit_depth(job->png, job->info);
    int color_type = png_get_color_type(job->png, job->info);
    TG_TRY(tg_image_check_pixels(in, width, height));

    int channels;
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY: channels = 1; break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: channels = 2; break;
    case PNG_COLOR_TYPE_RGB: channels = 3; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: channels = 4; break;
    case PNG_COLOR_TYPE_PALETTE:
        channels = png_get_valid(job->png, job->info, PNG_INFO_tRNS) ? 4 : 3;
        break;
    default:
        return tg_error(TG_STATUS_DECODE, "%s: PNG colour type %d is not defined by the PNG standard", in->name,
                        color_type);
    }
    int sixteen = bit_depth == 16;
    info->width = width;
    info->height = height;
    info->channels = channels;
    info->dtype = sixteen ? TG_DTYPE_U16 : TG_DTYPE_U8;
    if (!job->out) return TG_STATUS_OK;

    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_set_palette_to_rgb(job->png);
        if (channels == 4) png_set_tRNS_to_alpha(job->png);
    } else if (png_get_valid(job->png, job->info, PNG_INFO_tRNS)) {
        png_set_strip_alpha(job->png);
    }
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(job->png);
    if (sixteen) png_set_swap(job->png); /* PNG is big-endian; tensors are little-endian */
    png_set_interlace_handling(job->png);
    png_read_update_info(job->png, job->info);
    size_t row_bytes = png_get_rowbytes(job->png, job->info);
    size_t elem = sixteen ? 2 : 1;
    if (row_bytes != (size_t)width * (size_t)channels * elem)
        return tg_error(TG_STATUS_INTERNAL, "%s: libpng row of %zu bytes, expected %zu", in->name, row_bytes,
                        (size_t)width * (size_t)channels * elem);

    int64_t shape[3] = {channels, height, width};
    TG_TRY(tg_tensor_init(job->out, info->dtype, 3, shape));
    uint8_t *pixels = job->out->data; /* [H, W] when one channel, else [H, W, C] in `interleaved` */
    if (channels > 1) {
        job->interleaved = malloc(row_bytes * height);
        if (!job->interleaved)
            return tg_error(TG_STATUS_NOMEM, "%s: out of memory for %zu bytes of PNG rows", in->name,
                            row_bytes * height);
        pixels = job->interleaved;
    }
    job->rows = malloc(sizeof *job->rows * height);
    if (!job->rows) return tg_error(TG_STATUS_NOMEM, "%s: out of memory for PNG row pointers", in->name);
    for (png_uint_32 y = 0; y < height; y++) job->rows[y] = pixels + (size_t)y * row_bytes;
    reader->in_image_data = 1;
    png_read_image(job->png, job->rows);
    /* NOTE: reading up to IEND checks the chunks after the pixels too, so a file cut
     * anywhere, even after its last IDAT, is refused rather than half-trusted. */
    png_read_end(job->png, NULL);
    if (channels > 1) tg_image_hwc_to_chw(job->interleaved, job->out->data, height, width, channels, elem);
    return TG_STATUS_OK;
}

tg_status tg_png_decode(const tg_decode_input *in, tg_image_info *info, tg_tensor *out)
{
    png_reader reader;
    memset(&reader, 0, sizeof reader);
    reader.in = in;
    png_job job;
    memset(&job, 0, sizeof job);
    job.out = out;
    job.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, on_png_error, on_png_warning);
    if (job.png) job.info = png_create_info_struct(job.png);
    if (!job.png || !job.info) {
        png_job_free(&job, 1);
        return tg_error(TG_STATUS_NOMEM, "%s: out of memory creating the PNG decoder", in->name);
    }
    tg_status status = decode_with_libpng(in, info, &job, &reader);
    png_job_free(&job, status != TG_STATUS_OK);
    return status;
}
