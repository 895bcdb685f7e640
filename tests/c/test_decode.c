/* test_decode.c: the image decoders without Python, on files built in memory:
 * NPY, IDX and DICOM decode to the expected tensors; every truncation, an empty
 * buffer, garbage and an oversized header fail with TG_STATUS_DECODE and a message
 * naming the file. Built plain and with ASan+UBSan by make test (the Python tests
 * compare against Pillow, pydicom and numpy). A window of a JPEG (tg_jpeg_decode_window)
 * holds exactly the whole decode's pixels, for every chroma subsampling, progressive
 * files and gray, with windows at the edges and inside. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "../../csrc/data/decode.h"
#include "../../csrc/data/image.h"
#include "check.h"

typedef struct buffer {
    uint8_t data[4096];
    size_t size;
} buffer;

static void put(buffer *b, const void *bytes, size_t n)
{
    memcpy(b->data + b->size, bytes, n);
    b->size += n;
}

static void put_u16le(buffer *b, uint32_t v)
{
    uint8_t bytes[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(b, bytes, 2);
}

static void put_u32le(buffer *b, uint32_t v)
{
    uint8_t bytes[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, bytes, 4);
}

static void put_u32be(buffer *b, uint32_t v)
{
    uint8_t bytes[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, bytes, 4);
}

/* An NPY v1 file of an (H, W, 3) uint16 big-endian array holding 0, 1, 2, ... */
static void make_npy(buffer *b, int height, int width)
{
    char header[128];
    int n = snprintf(header, sizeof header, "{'descr': '>u2', 'fortran_order': False, 'shape': (%d, %d, 3), }",
                     height, width);
    while ((10 + n + 1) % 64) header[n++] = ' ';
    header[n++] = '\n';
    b->size = 0;
    put(b, "\x93NUMPY\x01\x00", 8);
    put_u16le(b, (uint32_t)n);
    put(b, header, (size_t)n);
    for (int i = 0; i < height * width * 3; i++) {
        uint8_t bytes[2] = {(uint8_t)(i >> 8), (uint8_t)i};
        put(b, bytes, 2);
    }
}

static void make_idx(buffer *b, int count, int height, int width)
{
    b->size = 0;
    put(b, "\x00\x00\x08\x03", 4);
    put_u32be(b, (uint32_t)count);
    put_u32be(b, (uint32_t)height);
    put_u32be(b, (uint32_t)width);
    for (int i = 0; i < count * height * width; i++) b->data[b->size++] = (uint8_t)(i * 7);
}

/* Explicit VR little endian element with a short (2-byte) length. */
static void put_element(buffer *b, uint32_t group, uint32_t element, const char *vr, const void *value, uint32_t n)
{
    put_u16le(b, group);
    put_u16le(b, element);
    put(b, vr, 2);
    put_u16le(b, n);
    put(b, value, n);
}

static void put_us(buffer *b, uint32_t group, uint32_t element, uint32_t v)
{
    uint8_t bytes[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put_element(b, group, element, "US", bytes, 2);
}

/* A 3 x 4 MONOCHROME1 image of 12-bit samples in 16, with a rescale, explicit VR LE. */
static void make_dicom(buffer *b)
{
    b->size = 0;
    memset(b->data, 0, 128);
    b->size = 128;
    put(b, "DICM", 4);
    put_element(b, 0x0002, 0x0010, "UI", "1.2.840.10008.1.2.1\0", 20);
    put_us(b, 0x0028, 0x0002, 1);
    put_element(b, 0x0028, 0x0004, "CS", "MONOCHROME1 ", 12);
    put_us(b, 0x0028, 0x0010, 3);
    put_us(b, 0x0028, 0x0011, 4);
    put_us(b, 0x0028, 0x0100, 16);
    put_us(b, 0x0028, 0x0101, 12);
    put_us(b, 0x0028, 0x0102, 11);
    put_us(b, 0x0028, 0x0103, 0);
    put_element(b, 0x0028, 0x1052, "DS", "-1024 ", 6);
    put_element(b, 0x0028, 0x1053, "DS", "2 ", 2);
    put_u16le(b, 0x7fe0);
    put_u16le(b, 0x0010);
    put(b, "OW\0\0", 4);
    put_u32le(b, 24);
    for (uint32_t i = 0; i < 12; i++) put_u16le(b, 0xf000 | (i * 300)); /* high bits beyond BitsStored are junk */
}

static int message_names(const char *name)
{
    return strstr(tg_error_message(), name) != NULL;
}

static void check_every_truncation_fails(const buffer *b, const char *name)
{
    for (size_t size = 0; size < b->size; size++) {
        tg_tensor t;
        tg_status status = tg_image_decode_memory(b->data, size, name, NULL, &t);
        if (status != TG_STATUS_DECODE || !message_names(name) || t.data != NULL) {
            CHECK(!"a truncated file decoded or failed without naming the file");
            fprintf(stderr, "  %s cut to %zu bytes: status %s, message '%s'\n", name, size, tg_status_name(status),
                    tg_error_message());
            tg_tensor_free(&t);
            return;
        }
    }
    CHECK(1);
}

static void test_npy(void)
{
    buffer b;
    make_npy(&b, 5, 6);
    tg_tensor t;
    CHECK_OK(tg_image_decode_memory(b.data, b.size, "photo.npy", NULL, &t));
    CHECK(t.ndim == 3 && t.shape[0] == 3 && t.shape[1] == 5 && t.shape[2] == 6 && t.dtype == TG_DTYPE_U16);
    const uint16_t *v = t.data; /* [3, 5, 6] from an (5, 6, 3) array */
    CHECK(v[0] == 0 && v[1] == 3 && v[30] == 1 && v[2 * 30 + 29] == 89);
    tg_tensor_free(&t);
    check_every_truncation_fails(&b, "photo.npy");
    tg_decode_options small = {.max_pixels = 29};
    CHECK(tg_image_decode_memory(b.data, b.size, "photo.npy", &small, &t) == TG_STATUS_DECODE);
    CHECK(strstr(tg_error_message(), "limit") != NULL);
    tg_decode_options negative = {.max_pixels = -5};
    CHECK(tg_image_decode_memory(b.data, b.size, "photo.npy", &negative, &t) == TG_STATUS_VALUE);
}

static void test_idx(void)
{
    buffer b;
    make_idx(&b, 2, 3, 4);
    tg_tensor t;
    CHECK_OK(tg_image_decode_memory(b.data, b.size, "train-images-idx3-ubyte", NULL, &t));
    CHECK(t.ndim == 3 && t.shape[0] == 2 && t.shape[1] == 3 && t.shape[2] == 4 && t.dtype == TG_DTYPE_U8);
    CHECK(((uint8_t *)t.data)[23] == (uint8_t)(23 * 7));
    tg_tensor_free(&t);
    check_every_truncation_fails(&b, "train-images-idx3-ubyte");
    /* a header that declares 2^32 - 1 images of 28 x 28 over a 40-byte file */
    b.data[4] = b.data[5] = b.data[6] = b.data[7] = 0xff;
    CHECK(tg_image_decode_memory(b.data, b.size, "bomb-idx3-ubyte", NULL, &t) == TG_STATUS_DECODE);
}

static void test_dicom(void)
{
    buffer b;
    make_dicom(&b);
    tg_tensor t;
    CHECK_OK(tg_image_decode_memory(b.data, b.size, "chest.dcm", NULL, &t));
    CHECK(t.ndim == 3 && t.shape[0] == 1 && t.shape[1] == 3 && t.shape[2] == 4 && t.dtype == TG_DTYPE_F32);
    const float *v = t.data; /* [1, 3, 4]: (4095 - stored) * 2 - 1024 */
    CHECK(v[0] == 4095.0f * 2 - 1024 && v[11] == (4095.0f - 3300) * 2 - 1024);
    tg_tensor_free(&t);
    tg_decode_options window = {.apply_window = 1};
    CHECK_OK(tg_image_decode_memory(b.data, b.size, "chest.dcm", &window, &t));
    CHECK(((const float *)t.data)[0] == 1.0f); /* stored 0 is white in MONOCHROME1 */
    tg_tensor_free(&t);
    check_every_truncation_fails(&b, "chest.dcm");
}

/* A valid progressive 8 x 8 RGB JPEG made of `coefficients` x 11 scans per component:
 * each coefficient alone, first at Al = 10 (the most libjpeg allows) then refined bit by bit down to Al = 0. */
static void make_many_scan_jpeg(int coefficients, unsigned char **data, unsigned long *size)
{
    static jpeg_scan_info scans[3 * 64 * 11];
    int n = 0;
    for (int k = 0; k < coefficients; k++)
        for (int c = 0; c < 3; c++)
            for (int al = 10; al >= 0; al--) {
                jpeg_scan_info *s = &scans[n++];
                s->comps_in_scan = 1;
                s->component_index[0] = c;
                s->Ss = s->Se = k;
                s->Ah = al == 10 ? 0 : al + 1;
                s->Al = al;
            }
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    *data = NULL;
    *size = 0;
    jpeg_mem_dest(&cinfo, data, size);
    cinfo.image_width = cinfo.image_height = 8;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    cinfo.scan_info = scans;
    cinfo.num_scans = n;
    jpeg_start_compress(&cinfo, TRUE);
    unsigned char row[8 * 3];
    for (int i = 0; i < 24; i++) row[i] = (unsigned char)(i * 10);
    while (cinfo.next_scanline < 8) {
        JSAMPROW rows[1] = {row};
        jpeg_write_scanlines(&cinfo, rows, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
}

static void test_jpeg_scan_limit(void)
{
    unsigned char *data;
    unsigned long size;
    tg_tensor t;
    make_many_scan_jpeg(20, &data, &size); /* 660 scans: under the limit of 1000 */
    CHECK_OK(tg_image_decode_memory(data, size, "scans.jpg", NULL, &t));
    CHECK(t.ndim == 3 && t.shape[0] == 3 && t.shape[1] == 8 && t.shape[2] == 8);
    tg_tensor_free(&t);
    free(data);
    make_many_scan_jpeg(64, &data, &size); /* 2112 scans */
    CHECK(tg_image_decode_memory(data, size, "scans.jpg", NULL, &t) == TG_STATUS_DECODE);
    CHECK(message_names("scans.jpg") && strstr(tg_error_message(), "progressive scans") != NULL);
    free(data);
}

/* A width x height JPEG of smooth gradients plus noise (quality 90), sampled h x v
 * for luma (2 x 2 is 4:2:0), or gray; progressive on request. */
static void make_noise_jpeg(int width, int height, int h, int v, int gray, int progressive, unsigned char **data,
                            unsigned long *size)
{
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    *data = NULL;
    *size = 0;
    jpeg_mem_dest(&cinfo, data, size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = gray ? 1 : 3;
    cinfo.in_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 90, TRUE);
    if (!gray) cinfo.comp_info[0].h_samp_factor = h, cinfo.comp_info[0].v_samp_factor = v;
    if (progressive) jpeg_simple_progression(&cinfo);
    jpeg_start_compress(&cinfo, TRUE);
    unsigned char *row = malloc((size_t)width * 3); /* [width, C] */
    uint32_t seed = 12345;
    while (cinfo.next_scanline < (JDIMENSION)height) {
        int y = (int)cinfo.next_scanline;
        for (int i = 0; i < width * cinfo.input_components; i++) {
            seed = seed * 1103515245u + 12345u;
            int value = (i * 7 + y * 5) % 256 / 2 + 64 + (int)(seed >> 27);
            row[i] = (unsigned char)value;
        }
        JSAMPROW rows[1] = {row};
        jpeg_write_scanlines(&cinfo, rows, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    free(row);
}

typedef struct fixed_window {
    int64_t window[4];
    int64_t seen[3];   /* channels, height, width the decoder reported */
} fixed_window;

static tg_status choose_fixed(void *ctx, int64_t channels, int64_t height, int64_t width, int64_t window[4])
{
    fixed_window *f = ctx;
    f->seen[0] = channels, f->seen[1] = height, f->seen[2] = width;
    memcpy(window, f->window, sizeof f->window);
    return TG_STATUS_OK;
}

/* Every pixel of the asked window equals the whole decode's; 1 when all do. */
static int window_matches(const tg_image_window *w, const tg_tensor *whole, const int64_t want[4])
{
    if (w->x0 > want[0] || w->y0 > want[1] || w->x0 + w->cols < want[2] || w->y0 + w->rows < want[3]) return 0;
    int64_t c = whole->shape[0], h = whole->shape[1], wd = whole->shape[2];
    const uint8_t *full = whole->data; /* [C, H, W] */
    for (int64_t y = want[1]; y < want[3]; y++)
        for (int64_t x = want[0]; x < want[2]; x++)
            for (int64_t k = 0; k < c; k++)
                if (w->data[((y - w->y0) * w->cols + (x - w->x0)) * c + k] != full[(k * h + y) * wd + x]) return 0;
    return 1;
}

static void test_jpeg_window(void)
{
    static const int forms[][4] = {{2, 2, 0, 0}, {2, 1, 0, 0}, {1, 1, 0, 0}, {1, 2, 0, 0}, {2, 2, 0, 1}, {1, 1, 1, 0},
                                   {1, 1, 1, 1}};
    static const int sizes[][2] = {{61, 47}, {200, 33}, {16, 16}, {97, 130}, {18, 20}, {34, 9}};
    tg_image_window w = {0};
    uint32_t seed = 7;
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++)
        for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
            unsigned char *data;
            unsigned long size;
            int width = sizes[z][0], height = sizes[z][1];
            make_noise_jpeg(width, height, forms[f][0], forms[f][1], forms[f][2], forms[f][3], &data, &size);
            tg_tensor whole;
            CHECK_OK(tg_image_decode_memory(data, size, "noise.jpg", NULL, &whole));
            tg_decode_input in = {.data = data, .size = size, .name = "noise.jpg", .max_pixels = 1 << 30};
            int all = 1;
            for (int trial = 0; trial < 40; trial++) {
                fixed_window choice;
                int64_t *r = choice.window;
                seed = seed * 1103515245u + 12345u;
                r[0] = (seed >> 8) % (uint32_t)width;
                seed = seed * 1103515245u + 12345u;
                r[2] = r[0] + 1 + (seed >> 8) % (uint32_t)(width - r[0]);
                seed = seed * 1103515245u + 12345u;
                r[1] = (seed >> 8) % (uint32_t)height;
                seed = seed * 1103515245u + 12345u;
                r[3] = r[1] + 1 + (seed >> 8) % (uint32_t)(height - r[1]);
                if (trial == 0) r[0] = 0, r[1] = 0, r[2] = width, r[3] = height;
                if (trial == 1) r[0] = 0, r[2] = 1;                 /* one column at either edge */
                if (trial == 2) r[0] = width - 1, r[2] = width;
                tg_status status = tg_jpeg_decode_window(&in, choose_fixed, &choice, &w);
                all &= status == TG_STATUS_OK && w.decoded && w.channels == whole.shape[0] && w.height == height &&
                       w.width == width && choice.seen[1] == height && window_matches(&w, &whole, r);
            }
            CHECK(all);
            tg_tensor_free(&whole);
            free(data);
        }

    unsigned char *data;
    unsigned long size;
    make_noise_jpeg(40, 30, 2, 2, 0, 0, &data, &size);
    tg_decode_input in = {.data = data, .size = size, .name = "noise.jpg", .max_pixels = 1 << 30};
    fixed_window empty = {{5, 5, 5, 9}, {0}};
    CHECK_OK(tg_jpeg_decode_window(&in, choose_fixed, &empty, &w));   /* declined */
    CHECK(!w.decoded && empty.seen[0] == 3 && empty.seen[1] == 30 && empty.seen[2] == 40);
    fixed_window outside = {{0, 0, 41, 30}, {0}};
    CHECK(tg_jpeg_decode_window(&in, choose_fixed, &outside, &w) == TG_STATUS_VALUE && !w.decoded);
    CHECK(message_names("noise.jpg"));
    fixed_window inside = {{3, 4, 20, 11}, {0}};
    in.size = size - 1;   /* no end marker: for a whole decode to judge */
    CHECK_OK(tg_jpeg_decode_window(&in, choose_fixed, &inside, &w));
    CHECK(!w.decoded);
    in.size = size / 2;
    data[size / 2 - 2] = 0xff, data[size / 2 - 1] = 0xd9;   /* cut short but ended: the cut rows fail */
    fixed_window bottom = {{0, 20, 40, 30}, {0}};
    CHECK(tg_jpeg_decode_window(&in, choose_fixed, &bottom, &w) == TG_STATUS_DECODE && message_names("noise.jpg"));
    in.max_pixels = 100;
    CHECK(tg_jpeg_decode_window(&in, choose_fixed, &inside, &w) == TG_STATUS_DECODE);
    free(data);
    free(w.data);
}

static void test_bad_inputs(void)
{
    tg_tensor t;
    CHECK(tg_image_decode_memory(NULL, 0, "empty.png", NULL, &t) == TG_STATUS_DECODE);
    CHECK(message_names("empty.png") && strstr(tg_error_message(), "empty") != NULL);
    const char *text = "hello, not an image";
    CHECK(tg_image_decode_memory((const uint8_t *)text, strlen(text), "notes.png", NULL, &t) == TG_STATUS_DECODE);
    CHECK(message_names("notes.png"));
    CHECK(tg_image_read("/nonexistent/trugrade/image.png", NULL, &t) == TG_STATUS_IO);
    CHECK(message_names("/nonexistent/trugrade/image.png"));
    tg_image_info info;
    CHECK(tg_image_probe("/nonexistent/trugrade/image.png", &info) == TG_STATUS_IO);
}

int main(void)
{
    test_npy();
    test_idx();
    test_dicom();
    test_jpeg_scan_limit();
    test_jpeg_window();
    test_bad_inputs();
    return check_report("test_decode");
}
