/* image.c: the entry points of image decoding: reading the file, finding its
 * format from the content, enforcing the pixel limit, dispatching to a decoder.
 *
 * It does not decode pixels itself (decode_<format>.c do) and never trusts the
 * name's extension: a file named .png that holds a JPEG decodes as the JPEG it
 * is, and tg_image_probe reports the disagreement (extension_mismatch). */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "decode.h"

const char *tg_image_format_name(tg_image_format format)
{
    switch (format) {
    case TG_IMAGE_FORMAT_PNG: return "PNG";
    case TG_IMAGE_FORMAT_JPEG: return "JPEG";
    case TG_IMAGE_FORMAT_DICOM: return "DICOM";
    case TG_IMAGE_FORMAT_IDX: return "IDX";
    case TG_IMAGE_FORMAT_NPY: return "NPY";
    default: return "unknown";
    }
}

tg_status tg_image_check_pixels(const tg_decode_input *in, int64_t width, int64_t height)
{
    if (width <= 0 || height <= 0)
        return tg_error(TG_STATUS_DECODE, "%s: the header declares an empty image (%lld x %lld pixels)", in->name,
                        (long long)width, (long long)height);
    int64_t pixels;
    if (__builtin_mul_overflow(width, height, &pixels) || pixels > in->max_pixels)
        return tg_error(TG_STATUS_DECODE,
                        "%s: the header declares %lld x %lld pixels, over the limit of %lld pixels "
                        "(a decompression bomb?); pass a larger max_pixels only for a file you trust",
                        in->name, (long long)width, (long long)height, (long long)in->max_pixels);
    return TG_STATUS_OK;
}

void tg_image_hwc_to_chw(const void *src, void *dst, int64_t height, int64_t width, int64_t channels,
                         size_t elem_size)
{
    int64_t plane = height * width;
    for (int64_t c = 0; c < channels; c++) {
        if (elem_size == 1) {
            const uint8_t *s = (const uint8_t *)src + c;
            uint8_t *d = (uint8_t *)dst + c * plane;
            for (int64_t i = 0; i < plane; i++) d[i] = s[i * channels];
        } else if (elem_size == 2) {
            const uint16_t *s = (const uint16_t *)src + c;
            uint16_t *d = (uint16_t *)dst + c * plane;
            for (int64_t i = 0; i < plane; i++) d[i] = s[i * channels];
        } else {
            const uint32_t *s = (const uint32_t *)src + c;
            uint32_t *d = (uint32_t *)dst + c * plane;
            for (int64_t i = 0; i < plane; i++) d[i] = s[i * channels];
        }
    }
}

/* ---- format from content and from extension ---- */

static tg_image_format sniff_format(const uint8_t *data, size_t size)
{
    if (tg_png_sniff(data, size)) return TG_IMAGE_FORMAT_PNG;
    if (tg_jpeg_sniff(data, size)) return TG_IMAGE_FORMAT_JPEG;
    if (tg_npy_sniff(data, size)) return TG_IMAGE_FORMAT_NPY;
    if (tg_idx_sniff(data, size)) return TG_IMAGE_FORMAT_IDX;
    if (tg_dicom_sniff(data, size)) return TG_IMAGE_FORMAT_DICOM;
    return TG_IMAGE_FORMAT_UNKNOWN;
}

static int ends_with(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    return n >= s && strcasecmp(name + n - s, suffix) == 0;
}

static tg_image_format format_from_extension(const char *name)
{
    if (ends_with(name, ".png")) return TG_IMAGE_FORMAT_PNG;
    if (ends_with(name, ".jpg") || ends_with(name, ".jpeg") || ends_with(name, ".jpe") || ends_with(name, ".jfif"))
        return TG_IMAGE_FORMAT_JPEG;
    if (ends_with(name, ".dcm") || ends_with(name, ".dicom")) return TG_IMAGE_FORMAT_DICOM;
    if (ends_with(name, "-ubyte") || ends_with(name, "-ubyte.gz") || ends_with(name, ".idx") ||
        ends_with(name, ".idx.gz"))
        return TG_IMAGE_FORMAT_IDX;
    if (ends_with(name, ".npy")) return TG_IMAGE_FORMAT_NPY;
    return TG_IMAGE_FORMAT_UNKNOWN;
}

static tg_status not_an_image(const tg_decode_input *in)
{
    if (in->size == 0) return tg_error(TG_STATUS_DECODE, "%s: the file is empty (0 bytes), not an image", in->name);
    char head[64] = "";
    size_t used = 0;
    for (size_t i = 0; i < in->size && i < 8; i++)
        used += (size_t)snprintf(head + used, sizeof head - used, i ? " %02x" : "%02x", in->data[i]);
    tg_image_format claimed = format_from_extension(in->name);
    if (claimed != TG_IMAGE_FORMAT_UNKNOWN)
        return tg_error(TG_STATUS_DECODE,
                        "%s: named like a %s file but its content is not one, nor any image format trugrade reads "
                        "(PNG, JPEG, DICOM, IDX, NPY); it starts with bytes %s",
                        in->name, tg_image_format_name(claimed), head);
    return tg_error(TG_STATUS_DECODE,
                    "%s: not an image format trugrade reads (PNG, JPEG, DICOM, IDX, NPY); it starts with bytes %s",
                    in->name, head);
}

static tg_status resolve_options(const char *name, const tg_decode_options *options, tg_decode_input *in)
{
    in->max_pixels = TG_IMAGE_DEFAULT_MAX_PIXELS;
    in->apply_window = 0;
    if (!options) return TG_STATUS_OK;
    if (options->max_pixels < 0)
        return tg_error(TG_STATUS_VALUE, "%s: max_pixels is %lld; it must be > 0 (or 0 for the default %lld)", name,
                        (long long)options->max_pixels, (long long)TG_IMAGE_DEFAULT_MAX_PIXELS);
    if (options->max_pixels > 0) in->max_pixels = options->max_pixels;
    in->apply_window = options->apply_window != 0;
    return TG_STATUS_OK;
}

static tg_status dispatch(const tg_decode_input *in, tg_image_info *info, tg_tensor *out)
{
    memset(info, 0, sizeof *info);
    info->count = 1;
    tg_image_format format = sniff_format(in->data, in->size);
    tg_status status;
    switch (format) {
    case TG_IMAGE_FORMAT_PNG: status = tg_png_decode(in, info, out); break;
    case TG_IMAGE_FORMAT_JPEG: status = tg_jpeg_decode(in, info, out); break;
    case TG_IMAGE_FORMAT_DICOM: status = tg_dicom_decode(in, info, out); break;
    case TG_IMAGE_FORMAT_NPY: status = tg_npy_decode(in, info, out); break;
    case TG_IMAGE_FORMAT_IDX:
        status = tg_idx_decode(in, out ? TG_IDX_KIND_IMAGES : TG_IDX_KIND_ANY, info, out);
        break;
    default: return not_an_image(in);
    }
    if (status != TG_STATUS_OK) return status;
    info->format = format;
    info->extension_format = format_from_extension(in->name);
    info->extension_mismatch = info->extension_format != TG_IMAGE_FORMAT_UNKNOWN && info->extension_format != format;
    return TG_STATUS_OK;
}

/* ---- files ---- */

typedef struct mapped_file {
    const uint8_t *data; /* [size] */
    size_t size;
    void *mapping;       /* NULL for an empty or a small (read) file */
    uint8_t *copy;       /* [size] the bytes of a small file, else NULL */
} mapped_file;

#define SMALL_FILE_BYTES (1 << 20)

tg_status tg_image_open_file(const char *path, int *fd, int64_t *size_bytes)
{
    *fd = -1;
    *size_bytes = -1;
    if (!path) return tg_error(TG_STATUS_VALUE, "image path is NULL");
    int opened = open(path, O_RDONLY | O_CLOEXEC);
    if (opened < 0) return tg_error(TG_STATUS_IO, "%s: cannot open the image: %s", path, strerror(errno));
    struct stat st;
    if (fstat(opened, &st) != 0) {
        int err = errno;
        close(opened);
        return tg_error(TG_STATUS_IO, "%s: cannot stat the image: %s", path, strerror(err));
    }
    *size_bytes = (int64_t)st.st_size;
    if (!S_ISREG(st.st_mode)) {
        close(opened);
        return tg_error(TG_STATUS_IO, "%s: not a regular file (a directory or device?)", path);
    }
    *fd = opened;
    return TG_STATUS_OK;
}

/* NOTE: a large file is mapped, not read: a probe touches only the header's pages,
 * and a large NPY or IDX is not held twice. A small file (up to SMALL_FILE_BYTES)
 * is read: mapping it costs more (page faults; and with several threads each
 * munmap interrupts the other cores to flush their TLBs, which kept scans and
 * validation of many small images from scaling with the thread count). */
static tg_status map_file(const char *path, mapped_file *file)
{
    static const uint8_t empty[1] = {0};
    memset(file, 0, sizeof *file);
    int fd;
    int64_t size_bytes;
    TG_TRY(tg_image_open_file(path, &fd, &size_bytes));
    file->size = (size_t)size_bytes;
    file->data = empty;
    if (file->size > 0 && file->size <= SMALL_FILE_BYTES) {
        file->copy = malloc(file->size);
        size_t done = 0;
        while (file->copy && done < file->size) {
            ssize_t got = read(fd, file->copy + done, file->size - done);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) break;
            done += (size_t)got;
        }
        int err = errno;
        close(fd);
        if (!file->copy) return tg_error(TG_STATUS_NOMEM, "%s: no memory to read the image (%zu bytes)", path,
                                         file->size);
        if (done < file->size) {
            free(file->copy);
            file->copy = NULL;
            return tg_error(TG_STATUS_IO, "%s: cannot read the image: %s", path,
                            done ? "it became shorter while being read" : strerror(err));
        }
        file->data = file->copy;
        return TG_STATUS_OK;
    }
    if (file->size > 0) {
        void *mapping = mmap(NULL, file->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (mapping == MAP_FAILED) {
            int err = errno;
            close(fd);
            return tg_error(TG_STATUS_IO, "%s: cannot map the image (%zu bytes) into memory: %s", path, file->size,
                            strerror(err));
        }
        file->mapping = mapping;
        file->data = mapping;
    }
    close(fd);
    return TG_STATUS_OK;
}

static void unmap_file(mapped_file *file)
{
    if (file->mapping) munmap(file->mapping, file->size);
    free(file->copy);
    memset(file, 0, sizeof *file);
}

tg_status tg_image_probe_memory(const uint8_t *data, size_t size, const char *name, tg_image_info *info)
{
    memset(info, 0, sizeof *info);
    static const uint8_t empty[1] = {0};
    if (!name) name = "<memory>";
    if (!data && size > 0) return tg_error(TG_STATUS_VALUE, "%s: image buffer is NULL", name);
    /* NOTE: a probe reports the size of an image even past the pixel limit; the limit
     * guards allocation, which a probe does not do. */
    tg_decode_input in = {.data = data ? data : empty, .size = size, .name = name, .max_pixels = INT64_MAX};
    tg_image_info probed;
    tg_status status = dispatch(&in, &probed, NULL);
    if (status == TG_STATUS_OK) *info = probed;
    return status;
}

tg_status tg_image_probe(const char *path, tg_image_info *info)
{
    memset(info, 0, sizeof *info);
    mapped_file file;
    TG_TRY(map_file(path, &file));
    tg_status status = tg_image_probe_memory(file.data, file.size, path, info);
    unmap_file(&file);
    return status;
}

tg_status tg_image_decode_memory(const uint8_t *data, size_t size, const char *name,
                                 const tg_decode_options *options, tg_tensor *out)
{
    memset(out, 0, sizeof *out);
    if (!name) name = "<memory>";
    if (!data && size > 0) return tg_error(TG_STATUS_VALUE, "%s: image buffer is NULL", name);
    static const uint8_t empty[1] = {0};
    tg_decode_input in = {.data = data ? data : empty, .size = size, .name = name};
    TG_TRY(resolve_options(name, options, &in));
    tg_image_info info;
    tg_status status = dispatch(&in, &info, out);
    if (status != TG_STATUS_OK) tg_tensor_free(out);
    return status;
}

tg_status tg_image_read(const char *path, const tg_decode_options *options, tg_tensor *out)
{
    memset(out, 0, sizeof *out);
    mapped_file file;
    TG_TRY(map_file(path, &file));
    tg_status status = tg_image_decode_memory(file.data, file.size, path, options, out);
    unmap_file(&file);
    return status;
}

tg_status tg_image_read_window(const char *path, const tg_decode_options *options, tg_image_window_choice choose,
                               void *ctx, tg_image_window *out)
{
    out->decoded = 0;
    mapped_file file;
    TG_TRY(map_file(path, &file));
    tg_decode_input in = {.data = file.data, .size = file.size, .name = path};
    tg_status status = resolve_options(path, options, &in);
    if (status == TG_STATUS_OK && tg_jpeg_sniff(file.data, file.size))
        status = tg_jpeg_decode_window(&in, choose, ctx, out);
    unmap_file(&file);
    return status;
}

static tg_status read_idx_kind(const char *path, const tg_decode_options *options, tg_idx_kind kind, tg_tensor *out)
{
    memset(out, 0, sizeof *out);
    mapped_file file;
    TG_TRY(map_file(path, &file));
    tg_decode_input in = {.data = file.data, .size = file.size, .name = path};
    tg_status status = resolve_options(path, options, &in);
    tg_image_info info;
    if (status == TG_STATUS_OK) {
        if (tg_idx_sniff(file.data, file.size)) status = tg_idx_decode(&in, kind, &info, out);
        else if (file.size == 0) status = not_an_image(&in);
        else
            status = tg_error(TG_STATUS_DECODE, "%s: not an IDX file (MNIST format): it does not start with the IDX "
                              "magic 00 00 08 <dims> nor the gzip magic 1f 8b", path);
    }
    unmap_file(&file);
    if (status != TG_STATUS_OK) tg_tensor_free(out);
    return status;
}

tg_status tg_idx_read_labels(const char *path, tg_tensor *out)
{
    return read_idx_kind(path, NULL, TG_IDX_KIND_LABELS, out);
}

tg_status tg_idx_read(const char *path, const tg_decode_options *options, tg_tensor *out)
{
    return read_idx_kind(path, options, TG_IDX_KIND_ANY, out);
}
