/* decode_dicom.c: uncompressed single-frame DICOM files, with its own parser.
 *
 * Transfer syntaxes: implicit VR little endian (1.2.840.10008.1.2), explicit VR
 * little endian (.1.2.1) and explicit VR big endian (.1.2.2); files without the
 * 128-byte preamble or without a meta header are read too (syntax guessed from
 * the first element). Photometric MONOCHROME1, MONOCHROME2 and RGB (planar
 * configuration 0 or 1); BitsAllocated 8 or 16 with any BitsStored up to it,
 * unsigned or signed (two's complement) samples.
 *
 * Output (C, H, W):
 *   - unsigned samples with an identity rescale: uint8 or uint16 as stored;
 *   - signed samples, or a rescale slope/intercept that is not (1, 0): float32
 *     holding slope * stored + intercept (the modality values, e.g. Hounsfield);
 *   - with apply_window: float32 in [0, 1] from the first WindowCenter/WindowWidth
 *     (DICOM's linear VOI function, PS3.3 C.11.2.1.2.1), or, when the file has no
 *     window, the full range of the modality values mapped linearly to [0, 1].
 *   - MONOCHROME1 (high values dark) is inverted so that high values are bright
 *     like MONOCHROME2: stored v becomes (min + max - v) of the BitsStored range,
 *     or, with a window, y becomes 1 - y.
 *
 * Not here: compressed transfer syntaxes (JPEG, JPEG-LS, JPEG 2000, RLE, deflate,
 * MPEG: refused with their UID and name), multi-frame files, palette colour and
 * YBR photometrics, BitsAllocated 1 or 32, VOI LUT sequences, overlays. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

#define DICOM_MAX_DEPTH 64
#define DICOM_UNDEFINED_LENGTH 0xffffffffu

#define TAG(group, element) ((uint32_t)(group) << 16 | (uint32_t)(element))
#define TAG_TRANSFER_SYNTAX TAG(0x0002, 0x0010)
#define TAG_SAMPLES_PER_PIXEL TAG(0x0028, 0x0002)
#define TAG_PHOTOMETRIC TAG(0x0028, 0x0004)
#define TAG_PLANAR_CONFIGURATION TAG(0x0028, 0x0006)
#define TAG_NUMBER_OF_FRAMES TAG(0x0028, 0x0008)
#define TAG_ROWS TAG(0x0028, 0x0010)
#define TAG_COLUMNS TAG(0x0028, 0x0011)
#define TAG_BITS_ALLOCATED TAG(0x0028, 0x0100)
#define TAG_BITS_STORED TAG(0x0028, 0x0101)
#define TAG_HIGH_BIT TAG(0x0028, 0x0102)
#define TAG_PIXEL_REPRESENTATION TAG(0x0028, 0x0103)
#define TAG_WINDOW_CENTER TAG(0x0028, 0x1050)
#define TAG_WINDOW_WIDTH TAG(0x0028, 0x1051)
#define TAG_RESCALE_INTERCEPT TAG(0x0028, 0x1052)
#define TAG_RESCALE_SLOPE TAG(0x0028, 0x1053)
#define TAG_PIXEL_DATA TAG(0x7fe0, 0x0010)
#define TAG_ITEM TAG(0xfffe, 0xe000)
#define TAG_ITEM_END TAG(0xfffe, 0xe00d)
#define TAG_SEQUENCE_END TAG(0xfffe, 0xe0dd)

static int is_vr_letter(uint8_t c) { return c >= 'A' && c <= 'Z'; }

int tg_dicom_sniff(const uint8_t *data, size_t size)
{
    if (size >= 132 && memcmp(data + 128, "DICM", 4) == 0) return 1;
    /* No preamble: the first element of group 0002 or 0008, little- or big-endian. */
    if (size < 8) return 0;
    int little = (data[0] == 0x02 || data[0] == 0x08) && data[1] == 0x00;
    int big = data[0] == 0x00 && (data[1] == 0x02 || data[1] == 0x08);
    if (!little && !big) return 0;
    if (is_vr_letter(data[4]) && is_vr_letter(data[5])) return 1;
    /* implicit VR little endian: a 4-byte length that fits the file */
    uint32_t length = (uint32_t)data[4] | (uint32_t)data[5] << 8 | (uint32_t)data[6] << 16 | (uint32_t)data[7] << 24;
    return little && length <= size - 8;
}

typedef struct dicom_reader {
    const tg_decode_input *in;
    size_t pos;
    int explicit_vr;
    int big_endian;
} dicom_reader;

typedef struct dicom_element {
    uint32_t tag;
    char vr[3];          /* "" in implicit VR */
    uint32_t length;     /* DICOM_UNDEFINED_LENGTH or the value's bytes */
    size_t value;        /* offset of the value in the file */
} dicom_element;

static uint32_t get_u16(const dicom_reader *r, size_t at)
{
    const uint8_t *p = r->in->data + at;
    return r->big_endian ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

static uint32_t get_u32(const dicom_reader *r, size_t at)
{
    const uint8_t *p = r->in->data + at;
    return r->big_endian ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                         : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static tg_status truncated(const dicom_reader *r, const char *what)
{
    return tg_error(TG_STATUS_DECODE, "%s: DICOM file ends inside %s at byte %zu of %zu (truncated)", r->in->name,
                    what, r->pos, r->in->size);
}

static size_t remaining(const dicom_reader *r) { return r->in->size - r->pos; }

static int has_long_length(const char *vr)
{
    static const char *const long_vrs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
    for (size_t i = 0; i < sizeof long_vrs / sizeof *long_vrs; i++)
        if (memcmp(vr, long_vrs[i], 2) == 0) return 1;
    return 0;
}

/* Reads an element's header; leaves pos at its value. Item and delimiter tags
 * (group FFFE) have no VR in either syntax. */
static tg_status read_element_header(dicom_reader *r, dicom_element *e)
{
    if (remaining(r) < 8) return truncated(r, "an element header");
    e->tag = get_u16(r, r->pos) << 16 | get_u16(r, r->pos + 2);
    e->vr[0] = '\0';
    if (r->explicit_vr && (e->tag >> 16) != 0xfffe) {
        const uint8_t *vr = r->in->data + r->pos + 4;
        if (!is_vr_letter(vr[0]) || !is_vr_letter(vr[1]))
            return tg_error(TG_STATUS_DECODE, "%s: corrupt DICOM: element (%04x,%04x) at byte %zu has no valid VR "
                            "(bytes %02x %02x)", r->in->name, e->tag >> 16, e->tag & 0xffff, r->pos, vr[0], vr[1]);
        e->vr[0] = (char)vr[0];
        e->vr[1] = (char)vr[1];
        e->vr[2] = '\0';
        if (has_long_length(e->vr)) {
            if (remaining(r) < 12) return truncated(r, "an element header");
            e->length = get_u32(r, r->pos + 8);
            r->pos += 12;
        } else {
            e->length = get_u16(r, r->pos + 6);
            r->pos += 8;
        }
    } else {
        e->length = get_u32(r, r->pos + 4);
        r->pos += 8;
    }
    e->value = r->pos;
    if (e->length != DICOM_UNDEFINED_LENGTH && e->length > remaining(r))
        return tg_error(TG_STATUS_DECODE, "%s: DICOM element (%04x,%04x) declares %u bytes but only %zu are left "
                        "(truncated or corrupt)", r->in->name, e->tag >> 16, e->tag & 0xffff, e->length, remaining(r));
    return TG_STATUS_OK;
}

static tg_status skip_sequence(dicom_reader *r, int depth, const char *vr);

/* Skips the elements of an item of undefined length, up to its delimiter. */
static tg_status skip_item(dicom_reader *r, int depth)
{
    for (;;) {
        dicom_element e;
        TG_TRY(read_element_header(r, &e));
        if (e.tag == TAG_ITEM_END) return TG_STATUS_OK;
        if (e.length == DICOM_UNDEFINED_LENGTH) TG_TRY(skip_sequence(r, depth + 1, e.vr));
        else r->pos += e.length;
    }
}

/* Skips a sequence (or encapsulated pixel data) of undefined length: items up to
 * the sequence delimiter. `vr` is the sequence element's VR ("" when implicit).
 * NOTE: the items of a UN element of undefined length are implicit VR. */
static tg_status skip_sequence(dicom_reader *r, int depth, const char *vr)
{
    if (depth > DICOM_MAX_DEPTH)
        return tg_error(TG_STATUS_DECODE, "%s: corrupt DICOM: sequences nested more than %d deep", r->in->name,
                        DICOM_MAX_DEPTH);
    int saved_explicit = r->explicit_vr;
    if (strcmp(vr, "UN") == 0) r->explicit_vr = 0;
    tg_status status = TG_STATUS_OK;
    for (;;) {
        dicom_element e;
        status = read_element_header(r, &e);
        if (status != TG_STATUS_OK || e.tag == TAG_SEQUENCE_END) break;
        if (e.tag != TAG_ITEM) {
            status = tg_error(TG_STATUS_DECODE, "%s: corrupt DICOM: element (%04x,%04x) inside a sequence where an item "
                              "was expected (byte %zu)", r->in->name, e.tag >> 16, e.tag & 0xffff, e.value);
            break;
        }
        if (e.length == DICOM_UNDEFINED_LENGTH) status = skip_item(r, depth);
        else r->pos += e.length;
        if (status != TG_STATUS_OK) break;
    }
    r->explicit_vr = saved_explicit;
    return status;
}

/* ---- the attributes we need ---- */

typedef struct dicom_image {
    const char *transfer_syntax_name; /* of a syntax we do not decode, else NULL */
    char transfer_syntax[68];
    char photometric[20];
    uint32_t rows, columns, samples_per_pixel, planar_configuration, bits_allocated, bits_stored, high_bit;
    uint32_t pixel_representation;
    int has_rows, has_columns, has_bits_allocated, has_bits_stored, has_high_bit;
    long frames;
    double window_center, window_width, rescale_slope, rescale_intercept;
    int has_window;
    dicom_element pixel_data;
    int has_pixel_data;
} dicom_image;

/* A string value, without DICOM's space/NUL padding, cut at the first '\'. */
static void value_string(const dicom_reader *r, const dicom_element *e, char *buf, size_t size)
{
    size_t n = e->length < size - 1 ? e->length : size - 1;
    memcpy(buf, r->in->data + e->value, n);
    buf[n] = '\0';
    char *backslash = strchr(buf, '\\');
    if (backslash) *backslash = '\0';
    size_t end = strlen(buf);
    while (end > 0 && (buf[end - 1] == ' ' || buf[end - 1] == '\0')) buf[--end] = '\0';
    size_t start = 0;
    while (buf[start] == ' ') start++;
    memmove(buf, buf + start, end - start + 1);
}

static tg_status value_number(const dicom_reader *r, const dicom_element *e, const char *what, double *out)
{
    char buf[72], *end;
    value_string(r, e, buf, sizeof buf);
    double v = strtod(buf, &end);
    if (end == buf || *end != '\0' || !isfinite(v))
        return tg_error(TG_STATUS_DECODE, "%s: DICOM %s is '%s', not a number", r->in->name, what, buf);
    *out = v;
    return TG_STATUS_OK;
}

static tg_status value_us(const dicom_reader *r, const dicom_element *e, const char *what, uint32_t *out)
{
    if (e->length == 2) *out = get_u16(r, e->value);
    else if (e->length == 4) *out = get_u32(r, e->value);
    else
        return tg_error(TG_STATUS_DECODE, "%s: DICOM %s has a value of %u bytes; expected 2 (US)", r->in->name, what,
                        e->length);
    return TG_STATUS_OK;
}

static tg_status take_attribute(dicom_reader *r, const dicom_element *e, dicom_image *img)
{
    switch (e->tag) {
    case TAG_SAMPLES_PER_PIXEL: return value_us(r, e, "SamplesPerPixel", &img->samples_per_pixel);
    case TAG_PLANAR_CONFIGURATION: return value_us(r, e, "PlanarConfiguration", &img->planar_configuration);
    case TAG_ROWS: img->has_rows = 1; return value_us(r, e, "Rows", &img->rows);
    case TAG_COLUMNS: img->has_columns = 1; return value_us(r, e, "Columns", &img->columns);
    case TAG_BITS_ALLOCATED: img->has_bits_allocated = 1; return value_us(r, e, "BitsAllocated", &img->bits_allocated);
    case TAG_BITS_STORED: img->has_bits_stored = 1; return value_us(r, e, "BitsStored", &img->bits_stored);
    case TAG_HIGH_BIT: img->has_high_bit = 1; return value_us(r, e, "HighBit", &img->high_bit);
    case TAG_PIXEL_REPRESENTATION: return value_us(r, e, "PixelRepresentation", &img->pixel_representation);
    case TAG_PHOTOMETRIC: value_string(r, e, img->photometric, sizeof img->photometric); return TG_STATUS_OK;
    case TAG_NUMBER_OF_FRAMES: {
        double frames = 1.0;
        if (e->length == 0) return TG_STATUS_OK;
        TG_TRY(value_number(r, e, "NumberOfFrames", &frames));
        img->frames = frames < 0 || frames > 1e9 ? -1 : (long)frames;
        return TG_STATUS_OK;
    }
    case TAG_WINDOW_CENTER:
        if (e->length == 0) return TG_STATUS_OK;
        img->has_window |= 1;
        return value_number(r, e, "WindowCenter", &img->window_center);
    case TAG_WINDOW_WIDTH:
        if (e->length == 0) return TG_STATUS_OK;
        img->has_window |= 2;
        return value_number(r, e, "WindowWidth", &img->window_width);
    case TAG_RESCALE_INTERCEPT:
        if (e->length == 0) return TG_STATUS_OK;
        return value_number(r, e, "RescaleIntercept", &img->rescale_intercept);
    case TAG_RESCALE_SLOPE:
        if (e->length == 0) return TG_STATUS_OK;
        return value_number(r, e, "RescaleSlope", &img->rescale_slope);
    default: return TG_STATUS_OK;
    }
}

/* ---- transfer syntaxes ---- */

typedef struct transfer_syntax {
    const char *uid, *name;
    int decodable, explicit_vr, big_endian;
} transfer_syntax;

static const transfer_syntax transfer_syntaxes[] = {
    {"1.2.840.10008.1.2", "Implicit VR Little Endian", 1, 0, 0},
    {"1.2.840.10008.1.2.1", "Explicit VR Little Endian", 1, 1, 0},
    {"1.2.840.10008.1.2.2", "Explicit VR Big Endian", 1, 1, 1},
    {"1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian", 0, 1, 0},
    {"1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)", 0, 1, 0},
    {"1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)", 0, 1, 0},
    {"1.2.840.10008.1.2.4.57", "JPEG Lossless, Non-Hierarchical (Process 14)", 0, 1, 0},
    {"1.2.840.10008.1.2.4.70", "JPEG Lossless, Non-Hierarchical, First-Order Prediction", 0, 1, 0},
    {"1.2.840.10008.1.2.4.80", "JPEG-LS Lossless", 0, 1, 0},
    {"1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless)", 0, 1, 0},
    {"1.2.840.10008.1.2.4.90", "JPEG 2000 Image Compression (Lossless Only)", 0, 1, 0},
    {"1.2.840.10008.1.2.4.91", "JPEG 2000 Image Compression", 0, 1, 0},
    {"1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Multi-component (Lossless Only)", 0, 1, 0},
    {"1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2 Multi-component", 0, 1, 0},
    {"1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level", 0, 1, 0},
    {"1.2.840.10008.1.2.4.101", "MPEG2 Main Profile / High Level", 0, 1, 0},
    {"1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1", 0, 1, 0},
    {"1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1", 0, 1, 0},
    {"1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video", 0, 1, 0},
    {"1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video", 0, 1, 0},
    {"1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2", 0, 1, 0},
    {"1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile / Level 5.1", 0, 1, 0},
    {"1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile / Level 5.1", 0, 1, 0},
    {"1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 (Lossless Only)", 0, 1, 0},
    {"1.2.840.10008.1.2.4.202", "High-Throughput JPEG 2000 with RPCL Options (Lossless Only)", 0, 1, 0},
    {"1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000", 0, 1, 0},
    {"1.2.840.10008.1.2.5", "RLE Lossless", 0, 1, 0},
};

static tg_status choose_syntax(dicom_reader *r, const char *uid)
{
    for (size_t i = 0; i < sizeof transfer_syntaxes / sizeof *transfer_syntaxes; i++) {
        const transfer_syntax *ts = &transfer_syntaxes[i];
        if (strcmp(uid, ts->uid) != 0) continue;
        if (!ts->decodable)
            return tg_error(TG_STATUS_DECODE, "%s: DICOM transfer syntax %s (%s) is compressed; trugrade reads only "
                            "uncompressed DICOM (implicit/explicit VR little endian, explicit VR big endian): "
                            "decompress it first (e.g. dcmdjpeg, gdcmconv --raw)", r->in->name, uid, ts->name);
        r->explicit_vr = ts->explicit_vr;
        r->big_endian = ts->big_endian;
        return TG_STATUS_OK;
    }
    return tg_error(TG_STATUS_DECODE, "%s: unknown DICOM transfer syntax UID '%s'; trugrade reads implicit/explicit "
                    "VR little endian and explicit VR big endian", r->in->name, uid);
}

/* With no transfer syntax to go by: the encoding the first element shows. */
static void guess_syntax(dicom_reader *r)
{
    const uint8_t *p = r->in->data + r->pos;
    r->big_endian = remaining(r) >= 2 && p[0] == 0x00 && p[1] != 0x00;
    r->explicit_vr = remaining(r) >= 6 && is_vr_letter(p[4]) && is_vr_letter(p[5]);
}

/* ---- parsing the file ---- */

static tg_status parse(dicom_reader *r, dicom_image *img)
{
    memset(img, 0, sizeof *img);
    img->samples_per_pixel = 1;
    img->frames = 1;
    img->rescale_slope = 1.0;
    const tg_decode_input *in = r->in;
    r->pos = in->size >= 132 && memcmp(in->data + 128, "DICM", 4) == 0 ? 132 : 0;

    /* File meta information: group 0002, always explicit VR little endian. */
    int has_meta = remaining(r) >= 2 && in->data[r->pos] == 0x02 && in->data[r->pos + 1] == 0x00;
    if (has_meta) {
        r->explicit_vr = 1;
        r->big_endian = 0;
        while (remaining(r) >= 2 && in->data[r->pos] == 0x02 && in->data[r->pos + 1] == 0x00) {
            dicom_element e;
            TG_TRY(read_element_header(r, &e));
            if (e.length == DICOM_UNDEFINED_LENGTH)
                return tg_error(TG_STATUS_DECODE, "%s: corrupt DICOM meta header: element (0002,%04x) has an "
                                "undefined length", in->name, e.tag & 0xffff);
            if (e.tag == TAG_TRANSFER_SYNTAX) value_string(r, &e, img->transfer_syntax, sizeof img->transfer_syntax);
            r->pos += e.length;
        }
    }
    if (img->transfer_syntax[0]) TG_TRY(choose_syntax(r, img->transfer_syntax));
    else guess_syntax(r);

    while (remaining(r) > 0) {
        dicom_element e;
        TG_TRY(read_element_header(r, &e));
        if (e.tag == TAG_PIXEL_DATA) {
            if (e.length == DICOM_UNDEFINED_LENGTH)
                return tg_error(TG_STATUS_DECODE, "%s: DICOM pixel data is encapsulated (compressed) although the "
                                "transfer syntax '%s' is not a compressed one; the file is corrupt", in->name,
                                img->transfer_syntax[0] ? img->transfer_syntax : "(none)");
            /* NOTE: parsing goes on past the pixels (trailing padding, private tags) so
             * that a file cut anywhere is refused, not only one cut inside its pixels. */
            img->pixel_data = e;
            img->has_pixel_data = 1;
            r->pos += e.length;
            continue;
        }
        if (e.length == DICOM_UNDEFINED_LENGTH) {
            TG_TRY(skip_sequence(r, 0, e.vr));
            continue;
        }
        if ((e.tag >> 16) == 0x0028 && !img->has_pixel_data) TG_TRY(take_attribute(r, &e, img));
        r->pos += e.length;
    }
    return TG_STATUS_OK;
}

static tg_status check_image(const dicom_reader *r, const dicom_image *img)
{
    const char *name = r->in->name;
    if (!img->has_pixel_data)
        return tg_error(TG_STATUS_DECODE, "%s: DICOM file has no pixel data (7FE0,0010); it is not an image (a "
                        "structured report, RT plan, ...?)", name);
    if (!img->has_rows || !img->has_columns || !img->has_bits_allocated)
        return tg_error(TG_STATUS_DECODE, "%s: DICOM file lacks %s", name,
                        !img->has_rows ? "Rows (0028,0010)" : !img->has_columns ? "Columns (0028,0011)"
                                                                                : "BitsAllocated (0028,0100)");
    if (img->frames != 1)
        return tg_error(TG_STATUS_DECODE, "%s: DICOM file has %ld frames; trugrade reads single-frame images", name,
                        img->frames);
    int mono = strcmp(img->photometric, "MONOCHROME1") == 0 || strcmp(img->photometric, "MONOCHROME2") == 0;
    int rgb = strcmp(img->photometric, "RGB") == 0;
    if (!mono && !rgb)
        return tg_error(TG_STATUS_DECODE, "%s: DICOM photometric interpretation '%s' is not supported (MONOCHROME1, "
                        "MONOCHROME2 and RGB are)", name, img->photometric);
    if (img->samples_per_pixel != (rgb ? 3u : 1u))
        return tg_error(TG_STATUS_DECODE, "%s: DICOM %s image with SamplesPerPixel %u (expected %d)", name,
                        img->photometric, img->samples_per_pixel, rgb ? 3 : 1);
    if (rgb && img->planar_configuration > 1)
        return tg_error(TG_STATUS_DECODE, "%s: DICOM PlanarConfiguration %u (expected 0 or 1)", name,
                        img->planar_configuration);
    if (img->bits_allocated != 8 && img->bits_allocated != 16)
        return tg_error(TG_STATUS_DECODE, "%s: DICOM BitsAllocated %u is not supported (8 and 16 are)", name,
                        img->bits_allocated);
    uint32_t stored = img->has_bits_stored ? img->bits_stored : img->bits_allocated;
    if (stored < 1 || stored > img->bits_allocated)
        return tg_error(TG_STATUS_DECODE, "%s: DICOM BitsStored %u does not fit BitsAllocated %u", name, stored,
                        img->bits_allocated);
    if (img->has_high_bit && img->high_bit != stored - 1)
        return tg_error(TG_STATUS_DECODE, "%s: DICOM HighBit %u with BitsStored %u is not supported (HighBit must be "
                        "BitsStored - 1)", name, img->high_bit, stored);
    if (img->pixel_representation > 1)
        return tg_error(TG_STATUS_DECODE, "%s: DICOM PixelRepresentation %u (expected 0 or 1)", name,
                        img->pixel_representation);
    if (img->rescale_slope == 0.0)
        return tg_error(TG_STATUS_DECODE, "%s: DICOM RescaleSlope is 0", name);
    if (img->has_window == 3 && img->window_width < 1.0)
        return tg_error(TG_STATUS_DECODE, "%s: DICOM WindowWidth %g is below 1", name, img->window_width);
    return TG_STATUS_OK;
}

/* ---- pixels ---- */

typedef struct sample_layout {
    const uint8_t *bytes;  /* the pixel data */
    int bits_allocated, bits_stored, is_signed, big_endian, swap_bytes_of_words;
} sample_layout;

/* Stored sample i as an integer: masked to BitsStored, sign-extended when signed. */
static int32_t stored_sample(const sample_layout *s, size_t i)
{
    uint32_t v;
    if (s->bits_allocated == 8) {
        v = s->bytes[s->swap_bytes_of_words ? i ^ 1 : i];
    } else {
        const uint8_t *p = s->bytes + 2 * i;
        v = s->big_endian ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
    }
    uint32_t mask = (1u << s->bits_stored) - 1u;
    v &= mask;
    if (s->is_signed && (v >> (s->bits_stored - 1)) & 1u) return (int32_t)v - (int32_t)(1u << s->bits_stored);
    return (int32_t)v;
}

tg_status tg_dicom_decode(const tg_decode_input *in, tg_image_info *info, tg_tensor *out)
{
    dicom_reader r = {.in = in};
    dicom_image img;
    TG_TRY(parse(&r, &img));
    TG_TRY(check_image(&r, &img));
    int64_t height = img.rows, width = img.columns, channels = img.samples_per_pixel;
    TG_TRY(tg_image_check_pixels(in, width, height));
    uint64_t samples = (uint64_t)height * (uint64_t)width * (uint64_t)channels;
    uint64_t needed = samples * (img.bits_allocated / 8);
    if (img.pixel_data.length < needed)
        return tg_error(TG_STATUS_DECODE, "%s: DICOM pixel data holds %u bytes but %u x %u x %u samples of %u bits "
                        "need %llu (truncated or corrupt)", in->name, img.pixel_data.length, img.rows, img.columns,
                        img.samples_per_pixel, img.bits_allocated, (unsigned long long)needed);

    int mono1 = strcmp(img.photometric, "MONOCHROME1") == 0;
    int rgb = channels == 3;
    int is_signed = img.pixel_representation == 1;
    int window = in->apply_window && !rgb; /* NOTE: a window is defined for monochrome images only */
    int rescaled = !rgb && (img.rescale_slope != 1.0 || img.rescale_intercept != 0.0);
    tg_dtype dtype = window || rescaled || is_signed ? TG_DTYPE_F32
                                                     : img.bits_allocated == 8 ? TG_DTYPE_U8 : TG_DTYPE_U16;
    info->width = width;
    info->height = height;
    info->channels = channels;
    info->dtype = dtype;
    if (!out) return TG_STATUS_OK;

    int bits_stored = img.has_bits_stored ? (int)img.bits_stored : (int)img.bits_allocated;
    sample_layout layout = {
        .bytes = in->data + img.pixel_data.value,
        .bits_allocated = (int)img.bits_allocated,
        .bits_stored = bits_stored,
        .is_signed = is_signed,
        .big_endian = r.big_endian,
        /* NOTE: big-endian OW data of 8-bit samples is stored as swapped 16-bit words. */
        .swap_bytes_of_words = r.big_endian && img.bits_allocated == 8 && strcmp(img.pixel_data.vr, "OW") == 0,
    };
    /* The BitsStored range, and the modality (rescaled) values it maps to. */
    double stored_min = is_signed ? -ldexp(1.0, bits_stored - 1) : 0.0;
    double stored_max = is_signed ? ldexp(1.0, bits_stored - 1) - 1.0 : ldexp(1.0, bits_stored) - 1.0;
    double slope = rgb ? 1.0 : img.rescale_slope, intercept = rgb ? 0.0 : img.rescale_intercept;
    double low = fmin(stored_min * slope + intercept, stored_max * slope + intercept);
    double high = fmax(stored_min * slope + intercept, stored_max * slope + intercept);
    double center = img.has_window == 3 ? img.window_center : 0.5 * (low + high) + 0.5;
    double width_w = img.has_window == 3 ? img.window_width : high - low + 1.0;
    int32_t invert_sum = (int32_t)(stored_min + stored_max);

    int64_t shape[3] = {channels, height, width};
    TG_TRY(tg_tensor_init(out, dtype, 3, shape));
    int64_t plane = height * width;
    for (int64_t k = 0; k < channels; k++)
        for (int64_t i = 0; i < plane; i++) {
            size_t source = rgb && img.planar_configuration == 0 ? (size_t)(i * 3 + k) : (size_t)(k * plane + i);
            int32_t v = stored_sample(&layout, source);
            if (mono1 && !window) v = invert_sum - v;
            int64_t at = k * plane + i;
            if (dtype == TG_DTYPE_U8) {
                ((uint8_t *)out->data)[at] = (uint8_t)v;
            } else if (dtype == TG_DTYPE_U16) {
                ((uint16_t *)out->data)[at] = (uint16_t)v;
            } else if (!window) {
                ((float *)out->data)[at] = (float)(v * slope + intercept);
            } else {
                double x = v * slope + intercept, y;
                if (width_w <= 1.0) y = x > center - 0.5 ? 1.0 : 0.0;
                else if (x <= center - 0.5 - (width_w - 1.0) / 2.0) y = 0.0;
                else if (x > center - 0.5 + (width_w - 1.0) / 2.0) y = 1.0;
                else y = (x - (center - 0.5)) / (width_w - 1.0) + 0.5;
                ((float *)out->data)[at] = (float)(mono1 ? 1.0 - y : y);
            }
        }
    return TG_STATUS_OK;
}
