/* decode_npy.c: NumPy .npy files (format versions 1, 2, 3) to (C, H, W).
 *
 * Element types: uint8 and uint16 stay as they are; float32 stays; float64 is
 * converted to float32 (NOTE: the engine computes in float32, and trugrade.Tensor
 * converts float64 arrays the same way). Either byte order, C or Fortran order.
 *
 * Shapes (the layout rule):
 *   (H, W)     -> (1, H, W)
 *   (C, H, W)  -> (C, H, W), unless the last dim is <= 4 and the first is > 4:
 *                 then the array is taken as (H, W, C) and transposed to (C, H, W).
 *   So an (11, 64, 64) 11-band image stays planar and a (64, 64, 3) photo becomes
 *   (3, 64, 64); a (3, 64, 4) array is planar (first dim <= 4).
 *
 * Not here: other element types (int8/16/32/64, bool, complex, structured and
 * object arrays are refused), pickled arrays, 1-D or 4-D+ arrays, empty arrays. */
#include <stdlib.h>
#include <string.h>

#include "decode.h"

int tg_npy_sniff(const uint8_t *data, size_t size)
{
    return size >= 6 && memcmp(data, "\x93NUMPY", 6) == 0;
}

typedef enum npy_type { NPY_TYPE_U8, NPY_TYPE_U16, NPY_TYPE_F32, NPY_TYPE_F64 } npy_type;

typedef struct npy_header {
    npy_type type;
    size_t itemsize;
    int big_endian;
    int fortran_order;
    int ndim;
    int64_t shape[3];
    size_t data_offset;
} npy_header;

/* ---- the header: a Python dict literal ---- */

typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_space(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int take(cursor *c, char ch)
{
    skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted string into buf (NUL-terminated); 0 on a malformed one. */
static int take_string(cursor *c, char *buf, size_t size)
{
    skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        if (n + 1 >= size) return 0;
        buf[n++] = *c->p++;
    }
    if (c->p >= c->end) return 0;
    c->p++;
    buf[n] = '\0';
    return 1;
}

static int take_word(cursor *c, const char *word)
{
    skip_space(c);
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return 0;
    c->p += n;
    return 1;
}

static tg_status header_error(const tg_decode_input *in, const char *what)
{
    return tg_error(TG_STATUS_DECODE, "%s: corrupt NPY header: %s", in->name, what);
}

static tg_status parse_descr(const tg_decode_input *in, const char *descr, npy_header *h)
{
    char order = descr[0];
    if (order != '<' && order != '>' && order != '|' && order != '=')
        return tg_error(TG_STATUS_DECODE, "%s: NPY dtype '%s' has no byte order; trugrade reads uint8, uint16, "
                        "float32 and float64", in->name, descr);
    h->big_endian = order == '>';
    const char *code = descr + 1;
    if (strcmp(code, "u1") == 0) h->type = NPY_TYPE_U8, h->itemsize = 1;
    else if (strcmp(code, "u2") == 0) h->type = NPY_TYPE_U16, h->itemsize = 2;
    else if (strcmp(code, "f4") == 0) h->type = NPY_TYPE_F32, h->itemsize = 4;
    else if (strcmp(code, "f8") == 0) h->type = NPY_TYPE_F64, h->itemsize = 8;
    else
        return tg_error(TG_STATUS_DECODE, "%s: NPY dtype '%s' is not supported; trugrade reads uint8, uint16, "
                        "float32 and float64 (converted to float32): convert the array with astype first",
                        in->name, descr);
    return TG_STATUS_OK;
}

static tg_status parse_shape(const tg_decode_input *in, cursor *c, npy_header *h)
{
    if (!take(c, '(')) return header_error(in, "'shape' is not a tuple");
    h->ndim = 0;
    while (!take(c, ')')) {
        skip_space(c);
        int64_t value = 0;
        int digits = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (value > (INT64_MAX - 9) / 10) return header_error(in, "a dim of 'shape' is too large");
            value = value * 10 + (*c->p++ - '0');
            digits++;
        }
        take(c, 'L');
        if (!digits) return header_error(in, "'shape' holds something other than integers");
        if (h->ndim == 3)
            return tg_error(TG_STATUS_DECODE, "%s: NPY array has more than 3 dims; trugrade reads (H, W), (C, H, W) "
                            "or (H, W, C) images", in->name);
        h->shape[h->ndim++] = value;
        if (!take(c, ',')) {
            if (!take(c, ')')) return header_error(in, "'shape' tuple is not closed");
            break;
        }
    }
    return TG_STATUS_OK;
}

static tg_status parse_header(const tg_decode_input *in, npy_header *h)
{
    memset(h, 0, sizeof *h);
    if (in->size < 10) return header_error(in, "the file ends inside the preamble (truncated)");
    int major = in->data[6];
    size_t header_len, prefix;
    if (major == 1) {
        header_len = (size_t)in->data[8] | (size_t)in->data[9] << 8;
        prefix = 10;
    } else if (major == 2 || major == 3) {
        if (in->size < 12) return header_error(in, "the file ends inside the preamble (truncated)");
        header_len = (size_t)in->data[8] | (size_t)in->data[9] << 8 | (size_t)in->data[10] << 16 |
                     (size_t)in->data[11] << 24;
        prefix = 12;
    } else {
        return tg_error(TG_STATUS_DECODE, "%s: NPY format version %d.%d is not supported (1, 2 and 3 are)", in->name,
                        major, in->data[7]);
    }
    if (header_len > in->size - prefix)
        return tg_error(TG_STATUS_DECODE, "%s: NPY header declares %zu bytes but the file has %zu after the preamble "
                        "(truncated)", in->name, header_len, in->size - prefix);
    h->data_offset = prefix + header_len;
    cursor c = {(const char *)in->data + prefix, (const char *)in->data + prefix + header_len};
    int have_descr = 0, have_order = 0, have_shape = 0;
    if (!take(&c, '{')) return header_error(in, "it is not a dict");
    while (!take(&c, '}')) {
        char key[32], descr[32];
        if (!take_string(&c, key, sizeof key)) return header_error(in, "expected a quoted key");
        if (!take(&c, ':')) return header_error(in, "expected ':' after a key");
        if (strcmp(key, "descr") == 0) {
            if (!take_string(&c, descr, sizeof descr))
                return tg_error(TG_STATUS_DECODE, "%s: NPY 'descr' is not a simple dtype string (a structured "
                                "array?); trugrade reads uint8, uint16, float32 and float64", in->name);
            TG_TRY(parse_descr(in, descr, h));
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (take_word(&c, "True")) h->fortran_order = 1;
            else if (take_word(&c, "False")) h->fortran_order = 0;
            else return header_error(in, "'fortran_order' is neither True nor False");
            have_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            TG_TRY(parse_shape(in, &c, h));
            have_shape = 1;
        } else {
            return tg_error(TG_STATUS_DECODE, "%s: corrupt NPY header: unknown key '%s'", in->name, key);
        }
        if (!take(&c, ',')) {
            if (!take(&c, '}')) return header_error(in, "expected ',' or '}' after a value");
            break;
        }
    }
    if (!have_descr || !have_order || !have_shape)
        return header_error(in, "it lacks one of 'descr', 'fortran_order' and 'shape'");
    return TG_STATUS_OK;
}

/* ---- pixels ---- */

/* One output row of `count` elements, taken from the file `step` elements apart. */
static void copy_row(const npy_header *h, const uint8_t *src, int64_t step, int64_t count, void *dst)
{
    size_t stride = (size_t)step * h->itemsize;
    switch (h->type) {
    case NPY_TYPE_U8: {
        uint8_t *d = dst;
        for (int64_t i = 0; i < count; i++) d[i] = src[(size_t)i * stride];
        break;
    }
    case NPY_TYPE_U16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < count; i++) {
            uint16_t v;
            memcpy(&v, src + (size_t)i * stride, 2);
            d[i] = h->big_endian ? __builtin_bswap16(v) : v;
        }
        break;
    }
    case NPY_TYPE_F32: {
        float *d = dst;
        for (int64_t i = 0; i < count; i++) {
            uint32_t v;
            memcpy(&v, src + (size_t)i * stride, 4);
            if (h->big_endian) v = __builtin_bswap32(v);
            memcpy(d + i, &v, 4);
        }
        break;
    }
    case NPY_TYPE_F64: {
        float *d = dst;
        for (int64_t i = 0; i < count; i++) {
            uint64_t v;
            double value;
            memcpy(&v, src + (size_t)i * stride, 8);
            if (h->big_endian) v = __builtin_bswap64(v);
            memcpy(&value, &v, 8);
            d[i] = (float)value;
        }
        break;
    }
    }
}

tg_status tg_npy_decode(const tg_decode_input *in, tg_image_info *info, tg_tensor *out)
{
    npy_header h;
    TG_TRY(parse_header(in, &h));
    if (h.ndim < 2)
        return tg_error(TG_STATUS_DECODE, "%s: NPY array has %d dim(s); an image is (H, W), (C, H, W) or (H, W, C)",
                        in->name, h.ndim);
    int64_t channels, height, width;
    int hwc = 0;
    if (h.ndim == 2) channels = 1, height = h.shape[0], width = h.shape[1];
    else if (h.shape[2] <= 4 && h.shape[0] > 4) hwc = 1, height = h.shape[0], width = h.shape[1], channels = h.shape[2];
    else channels = h.shape[0], height = h.shape[1], width = h.shape[2];
    TG_TRY(tg_image_check_pixels(in, width, height));
    if (channels <= 0)
        return tg_error(TG_STATUS_DECODE, "%s: NPY array of shape (%lld, %lld, %lld) has no channels", in->name,
                        (long long)h.shape[0], (long long)h.shape[1], (long long)h.shape[2]);
    /* pixels <= max_pixels (int64); channels is bounded by the file size below. */
    uint64_t count = (uint64_t)height * (uint64_t)width, nbytes = 0;
    size_t available = in->size - h.data_offset;
    int overflow = __builtin_mul_overflow(count, (uint64_t)channels, &count) ||
                   __builtin_mul_overflow(count, (uint64_t)h.itemsize, &nbytes);
    if (overflow || nbytes != available)
        return tg_error(TG_STATUS_DECODE, "%s: NPY header declares %lld x %lld x %lld elements of %zu bytes but the "
                        "file holds %zu bytes of data (%s)", in->name, (long long)channels, (long long)height,
                        (long long)width, h.itemsize, available,
                        overflow || available < nbytes ? "truncated" : "trailing bytes");
    tg_dtype dtype = h.type == NPY_TYPE_U8 ? TG_DTYPE_U8 : h.type == NPY_TYPE_U16 ? TG_DTYPE_U16 : TG_DTYPE_F32;
    info->width = width;
    info->height = height;
    info->channels = channels;
    info->dtype = dtype;
    if (!out) return TG_STATUS_OK;

    int64_t shape[3] = {channels, height, width};
    TG_TRY(tg_tensor_init(out, dtype, 3, shape));
    const uint8_t *src = in->data + h.data_offset; /* the file's array, in its dims d0, d1, d2 */
    /* Element strides of the file's dims, then of each output axis (c, h, w). */
    int64_t dims[3] = {h.shape[0], h.shape[1], h.ndim == 3 ? h.shape[2] : 1};
    int64_t stride[3];
    if (h.fortran_order) stride[0] = 1, stride[1] = dims[0], stride[2] = dims[0] * dims[1];
    else stride[2] = 1, stride[1] = dims[2], stride[0] = dims[1] * dims[2];
    int64_t sc, sh, sw;
    if (h.ndim == 2) sc = 0, sh = stride[0], sw = stride[1];
    else if (hwc) sc = stride[2], sh = stride[0], sw = stride[1];
    else sc = stride[0], sh = stride[1], sw = stride[2];
    int native_layout = !h.big_endian && sw == 1 && sh == width && (channels == 1 || sc == height * width);
    if (native_layout && h.type != NPY_TYPE_F64) {
        memcpy(out->data, src, (size_t)nbytes);
        return TG_STATUS_OK;
    }
    size_t out_item = tg_dtype_size(dtype);
    for (int64_t c = 0; c < channels; c++)
        for (int64_t y = 0; y < height; y++)
            copy_row(&h, src + (size_t)(c * sc + y * sh) * h.itemsize, sw, width,
                     (uint8_t *)out->data + (size_t)((c * height + y) * width) * out_item);
    return TG_STATUS_OK;
}
