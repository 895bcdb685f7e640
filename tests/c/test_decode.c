/* test_decode.c: the image decoders without Python, on files built in memory:
 * NPY, IDX and DICOM decode to the expected tensors; every truncation, an empty
 * buffer, garbage and an oversized header fail with TG_STATUS_DECODE and a message
 * naming the file. Built plain and with ASan+UBSan by make test (the Python tests
 * compare against Pillow, pydicom and numpy). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

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
    test_bad_inputs();
    return check_report("test_decode");
}
