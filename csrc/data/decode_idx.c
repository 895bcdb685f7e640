/* decode_idx.c: IDX files as MNIST and Fashion-MNIST ship them, plain or gzip.
 *
 * An images file (3 dims: N, H, W) gives (N, H, W) uint8; a labels file (1 dim:
 * N) gives (N,) int64. The header is 00 00 <type> <ndim> then ndim big-endian
 * uint32 dims; only the type 0x08 (unsigned byte) is read.
 *
 * Not here: the other IDX types (int8, int16, int32, float32, float64) and
 * files of 2 or 4+ dims are refused with their name; gzip is the only
 * compression (a .gz holding something else than IDX is refused). */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "decode.h"

/* NOTE: deflate cannot expand data by more than about 1032:1, so a gzip file that
 * declares more than this many bytes per compressed byte is corrupt, and is
 * refused before its declared size is allocated. */
#define IDX_MAX_DEFLATE_RATIO 1032

static int is_gzip(const uint8_t *data, size_t size)
{
    return size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
}

int tg_idx_sniff(const uint8_t *data, size_t size)
{
    if (is_gzip(data, size)) return 1;
    return size >= 4 && data[0] == 0 && data[1] == 0 && data[2] >= 0x08 && data[2] <= 0x0e && data[3] >= 1 &&
           data[3] <= 4;
}

/* The bytes of the file, plain or inflated as they are asked for. */
typedef struct idx_source {
    const tg_decode_input *in;
    int gzip;
    int stream_open;
    z_stream z;
    size_t offset;      /* plain: bytes consumed */
} idx_source;

static tg_status source_open(idx_source *s, const tg_decode_input *in)
{
    memset(s, 0, sizeof *s);
    s->in = in;
    s->gzip = is_gzip(in->data, in->size);
    if (!s->gzip) return TG_STATUS_OK;
    s->z.next_in = (Bytef *)in->data;
    s->z.avail_in = in->size > UINT32_MAX ? UINT32_MAX : (uInt)in->size;
    if (in->size > UINT32_MAX)
        return tg_error(TG_STATUS_DECODE, "%s: gzip IDX file of %zu bytes is over the 4 GiB trugrade reads", in->name,
                        in->size);
    if (inflateInit2(&s->z, 16 + MAX_WBITS) != Z_OK)
        return tg_error(TG_STATUS_NOMEM, "%s: cannot start zlib to read the gzip IDX file", in->name);
    s->stream_open = 1;
    return TG_STATUS_OK;
}

static void source_close(idx_source *s)
{
    if (s->stream_open) inflateEnd(&s->z);
    s->stream_open = 0;
}

/* Exactly n bytes into dst; `what` names them in the error. */
static tg_status source_read(idx_source *s, uint8_t *dst, size_t n, const char *what)
{
    if (!s->gzip) {
        if (n > s->in->size - s->offset)
            return tg_error(TG_STATUS_DECODE, "%s: IDX file ends inside the %s: %zu bytes needed, %zu left (truncated)",
                            s->in->name, what, n, s->in->size - s->offset);
        memcpy(dst, s->in->data + s->offset, n);
        s->offset += n;
        return TG_STATUS_OK;
    }
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        s->z.next_out = dst;
        s->z.avail_out = chunk;
        int rc = inflate(&s->z, Z_NO_FLUSH);
        size_t got = chunk - s->z.avail_out;
        dst += got;
        n -= got;
        if (rc == Z_STREAM_END) {
            /* A gzip file may hold several members one after another. */
            if (n > 0 && s->z.avail_in >= 2 && s->z.next_in[0] == 0x1f && s->z.next_in[1] == 0x8b &&
                inflateReset(&s->z) == Z_OK)
                continue;
            if (n > 0)
                return tg_error(TG_STATUS_DECODE, "%s: gzip IDX data ends inside the %s: %zu bytes missing "
                                "(truncated)", s->in->name, what, n);
        } else if (rc == Z_BUF_ERROR || (rc == Z_OK && got == 0 && s->z.avail_in == 0)) {
            return tg_error(TG_STATUS_DECODE, "%s: gzip stream ends inside the %s (truncated file)", s->in->name, what);
        } else if (rc != Z_OK) {
            return tg_error(TG_STATUS_DECODE, "%s: corrupt gzip data in the %s: %s", s->in->name, what,
                            s->z.msg ? s->z.msg : "zlib error");
        }
    }
    return TG_STATUS_OK;
}

/* After the data the header declares, the file must end. */
static tg_status source_finish(idx_source *s)
{
    if (!s->gzip) {
        if (s->offset != s->in->size)
            return tg_error(TG_STATUS_DECODE, "%s: IDX file has %zu bytes after the data its header declares (corrupt "
                            "header?)", s->in->name, s->in->size - s->offset);
        return TG_STATUS_OK;
    }
    for (;;) {
        uint8_t extra[1];
        s->z.next_out = extra;
        s->z.avail_out = 1;
        int rc = inflate(&s->z, Z_NO_FLUSH);
        if (s->z.avail_out == 0)
            return tg_error(TG_STATUS_DECODE, "%s: gzip IDX data goes on after the data its header declares (corrupt "
                            "header?)", s->in->name);
        if (rc == Z_STREAM_END) {
            if (s->z.avail_in >= 2 && s->z.next_in[0] == 0x1f && s->z.next_in[1] == 0x8b && inflateReset(&s->z) == Z_OK)
                continue;
            return TG_STATUS_OK;
        }
        if (rc == Z_BUF_ERROR || rc == Z_OK)
            return tg_error(TG_STATUS_DECODE, "%s: gzip stream is cut before its end (truncated file)", s->in->name);
        return tg_error(TG_STATUS_DECODE, "%s: corrupt gzip data after the IDX data: %s", s->in->name,
                        s->z.msg ? s->z.msg : "zlib error");
    }
}

static const char *idx_type_name(int code)
{
    switch (code) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0b: return "int16";
    case 0x0c: return "int32";
    case 0x0d: return "float32";
    case 0x0e: return "float64";
    default: return "undefined";
    }
}

static tg_status decode_source(idx_source *src, tg_idx_kind kind, tg_image_info *info, tg_tensor *out)
{
    const tg_decode_input *in = src->in;
    uint8_t magic[4];
    TG_TRY(source_read(src, magic, 4, "header"));
    if (magic[0] != 0 || magic[1] != 0 || magic[3] < 1 || magic[3] > 4)
        return tg_error(TG_STATUS_DECODE, "%s: not an IDX file%s: it starts with %02x %02x %02x %02x, not 00 00 "
                        "<type> <1..4 dims>", in->name, src->gzip ? " inside the gzip" : "", magic[0], magic[1],
                        magic[2], magic[3]);
    if (magic[2] != 0x08)
        return tg_error(TG_STATUS_DECODE, "%s: IDX element type 0x%02x (%s) is not supported; trugrade reads unsigned "
                        "byte (0x08) files such as MNIST", in->name, magic[2], idx_type_name(magic[2]));
    int ndim = magic[3];
    uint8_t raw_dims[16];
    TG_TRY(source_read(src, raw_dims, (size_t)ndim * 4, "header"));
    int64_t dims[4];
    for (int i = 0; i < ndim; i++)
        dims[i] = (int64_t)raw_dims[4 * i] << 24 | raw_dims[4 * i + 1] << 16 | raw_dims[4 * i + 2] << 8 |
                  raw_dims[4 * i + 3];
    if (ndim != 1 && ndim != 3)
        return tg_error(TG_STATUS_DECODE, "%s: IDX file has %d dims; trugrade reads images (N, H, W) and labels (N)",
                        in->name, ndim);
    if (kind == TG_IDX_KIND_IMAGES && ndim != 3)
        return tg_error(TG_STATUS_DECODE, "%s: IDX file holds labels (1 dim), not images; read it with read_idx / "
                        "tg_idx_read_labels", in->name);
    if (kind == TG_IDX_KIND_LABELS && ndim != 1)
        return tg_error(TG_STATUS_DECODE, "%s: IDX file holds images (%d dims), not labels (1 dim)", in->name, ndim);
    int64_t count = dims[0], per_item = 1;
    if (ndim == 3) {
        TG_TRY(tg_image_check_pixels(in, dims[2], dims[1]));
        per_item = dims[1] * dims[2];
    }
    /* count < 2^32 and per_item <= max_pixels: fits when max_pixels < 2^31, checked anyway. */
    uint64_t data_bytes;
    if (__builtin_mul_overflow((uint64_t)count, (uint64_t)per_item, &data_bytes))
        return tg_error(TG_STATUS_DECODE, "%s: IDX header declares an impossible size", in->name);
    size_t header_bytes = 4 + (size_t)ndim * 4;
    if (!src->gzip && data_bytes > in->size - header_bytes)
        return tg_error(TG_STATUS_DECODE, "%s: IDX header declares %llu bytes of data but the file has %zu after the "
                        "header (truncated)", in->name, (unsigned long long)data_bytes, in->size - header_bytes);
    if (src->gzip && data_bytes / IDX_MAX_DEFLATE_RATIO > in->size)
        return tg_error(TG_STATUS_DECODE, "%s: IDX header declares %llu bytes of data, more than a %zu-byte gzip file "
                        "can hold (corrupt header)", in->name, (unsigned long long)data_bytes, in->size);
    info->count = count;
    info->channels = ndim == 3 ? 1 : 0;
    info->height = ndim == 3 ? dims[1] : 0;
    info->width = ndim == 3 ? dims[2] : 0;
    info->dtype = ndim == 3 ? TG_DTYPE_U8 : TG_DTYPE_I64;
    if (!out) return TG_STATUS_OK;

    if (ndim == 3) {
        TG_TRY(tg_tensor_init(out, TG_DTYPE_U8, 3, dims));
        TG_TRY(source_read(src, out->data, (size_t)data_bytes, "images"));
    } else {
        TG_TRY(tg_tensor_init(out, TG_DTYPE_I64, 1, dims));
        int64_t *labels = out->data; /* [N] */
        uint8_t *bytes = (uint8_t *)labels + (size_t)count * 7; /* the last N bytes, widened in place from the front */
        TG_TRY(source_read(src, bytes, (size_t)count, "labels"));
        for (int64_t i = 0; i < count; i++) labels[i] = bytes[i];
    }
    return source_finish(src);
}

tg_status tg_idx_decode(const tg_decode_input *in, tg_idx_kind kind, tg_image_info *info, tg_tensor *out)
{
    idx_source src;
    tg_status status = source_open(&src, in);
    if (status == TG_STATUS_OK) status = decode_source(&src, kind, info, out);
    source_close(&src);
    if (status != TG_STATUS_OK && out) tg_tensor_free(out);
    return status;
}
