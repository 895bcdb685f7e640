/* test_augment.c: augmentation without Python, under ASan+UBSan in make test: a flip and a
 * rot90 of image, mask and box; a letterbox's scale and padding; determinism and no heap
 * allocation per call (counted through alloc_count.c); config errors; a mosaic; a part of
 * an image (planar or interleaved) holding the source window gives the whole image's bits. */
#include <string.h>

#include "../../csrc/data/augment.h"
#include "alloc_count.h"
#include "check.h"

static void add(tg_augment_pipeline *p, const char *name)
{
    tg_augment_kind kind;
    CHECK_OK(tg_augment_kind_from_name(name, &kind));
    tg_augment_transform_init(&p->transforms[p->n++], kind);
}

static void set(tg_augment_pipeline *p, const char *name, double a, double b, int n)
{
    double values[2] = {a, b};
    CHECK_OK(tg_augment_transform_set(&p->transforms[p->n - 1], name, values, n));
}

/* (1, 6, 8) uint8 with a rectangle x 2..5, y 1..3 of 200; mask 1 there; its box. */
typedef struct sample_data {
    tg_tensor image, mask;
    float box[4];
    int64_t label;
    tg_augment_sample sample;
} sample_data;

static void sample_init(sample_data *s, int64_t h, int64_t w)
{
    int64_t shape[3] = {1, h, w};
    CHECK_OK(tg_tensor_init(&s->image, TG_DTYPE_U8, 3, shape));
    CHECK_OK(tg_tensor_init(&s->mask, TG_DTYPE_U8, 2, shape + 1));
    uint8_t *im = s->image.data, *m = s->mask.data;
    for (int64_t y = 1; y < 4; y++)
        for (int64_t x = 2; x < 6; x++) im[y * w + x] = 200, m[y * w + x] = 1;
    float box[4] = {2, 1, 6, 4};
    memcpy(s->box, box, sizeof box);
    s->label = 5;
    s->sample = (tg_augment_sample){.image = &s->image, .mask = &s->mask, .boxes = s->box, .labels = &s->label,
                                    .n_boxes = 1};
}

static void sample_free(sample_data *s)
{
    tg_tensor_free(&s->image);
    tg_tensor_free(&s->mask);
}

typedef struct result {
    float image[4096];
    uint8_t mask[4096];
    float boxes[16];
    int64_t labels[4];
    tg_augment_output out;
} result;

static tg_status run(const tg_augment_pipeline *p, const tg_augment_sample *samples, int n, uint64_t index,
                     result *r, void *scratch, size_t bytes)
{
    memset(r, 0, sizeof *r);
    r->out = (tg_augment_output){.image = r->image, .image_capacity = 4096, .mask = r->mask, .mask_capacity = 4096,
                                 .boxes = r->boxes, .labels = r->labels, .box_capacity = 4};
    return tg_augment_apply(p, samples, n, 7, 1, index, scratch, bytes, &r->out);
}

static void test_flip_and_rot90(void)
{
    sample_data s;
    sample_init(&s, 6, 8);
    static tg_augment_pipeline p;
    tg_augment_pipeline_init(&p);
    add(&p, "hflip");
    set(&p, "p", 1, 0, 1);
    add(&p, "rot90");
    set(&p, "p", 1, 0, 1);
    set(&p, "k", 1, 0, 1);
    CHECK_OK(tg_augment_pipeline_validate(&p));
    size_t bytes = tg_augment_scratch_bytes(&p, 1, 6, 8, 1);
    void *scratch = tg_aligned_alloc(bytes);
    static result r, again;
    CHECK_OK(run(&p, &s.sample, 1, 0, &r, scratch, bytes));
    CHECK(r.out.height == 8 && r.out.width == 6 && r.out.n_boxes == 1 && r.labels[0] == 5);
    /* hflip then rot90 (counter-clockwise) is a transpose: out[y][x] = in[x][y]. */
    const uint8_t *im = s.image.data;
    int same = 1;
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 6; x++) same &= r.image[y * 6 + x] == (float)im[x * 8 + y] && r.mask[y * 6 + x] == (im[x * 8 + y] ? 1 : 0);
    CHECK(same);
    CHECK_NEAR(r.boxes[0], 1, 1e-5);
    CHECK_NEAR(r.boxes[1], 2, 1e-5);
    CHECK_NEAR(r.boxes[2], 4, 1e-5);
    CHECK_NEAR(r.boxes[3], 6, 1e-5);
    long before = alloc_count();
    CHECK_OK(run(&p, &s.sample, 1, 0, &again, scratch, bytes));
    CHECK(alloc_count() == before);
    CHECK(memcmp(r.image, again.image, sizeof r.image) == 0);
    CHECK(run(&p, &s.sample, 1, 0, &again, scratch, bytes / 4) == TG_STATUS_VALUE);
    tg_aligned_free(scratch);
    sample_free(&s);
}

static void test_letterbox_and_jitter(void)
{
    sample_data s;
    sample_init(&s, 6, 8);
    static tg_augment_pipeline p;
    tg_augment_pipeline_init(&p);
    add(&p, "letterbox");
    set(&p, "size", 16, 0, 1);
    set(&p, "fill", 9, 0, 1);
    add(&p, "color_jitter");
    set(&p, "brightness", 0.5, 0, 1);
    add(&p, "gaussian_blur");
    set(&p, "kernel_size", 3, 0, 1);
    add(&p, "normalize");
    set(&p, "mean", 0.5, 0, 1);
    set(&p, "std", 0.25, 0, 1);
    CHECK_OK(tg_augment_pipeline_validate(&p));
    size_t bytes = tg_augment_scratch_bytes(&p, 1, 6, 8, 1);
    void *scratch = tg_aligned_alloc(bytes);
    static result r;
    CHECK_OK(run(&p, &s.sample, 1, 3, &r, scratch, bytes));
    CHECK(r.out.height == 16 && r.out.width == 16);
    CHECK_NEAR(r.out.forward[0], 2.0, 1e-12);
    CHECK_NEAR(r.out.forward[5], 2.0, 1e-12);
    CHECK_NEAR(r.boxes[1], 4.0, 1e-5);
    CHECK_NEAR(r.boxes[3], 10.0, 1e-5);
    CHECK(r.mask[0] == 0 && r.mask[5 * 16 + 5] == 1);
    tg_aligned_free(scratch);
    sample_free(&s);
}

static void test_config_errors(void)
{
    static tg_augment_pipeline p;
    tg_augment_pipeline_init(&p);
    add(&p, "hflip");
    set(&p, "p", -1, 0, 1);
    CHECK(tg_augment_pipeline_validate(&p) == TG_STATUS_CONFIG);
    CHECK(strstr(tg_error_message(), "hflip") && strstr(tg_error_message(), "p must"));
    double v = 1;
    CHECK(tg_augment_transform_set(&p.transforms[0], "nope", &v, 1) == TG_STATUS_CONFIG);
    CHECK(strstr(tg_error_message(), "nope") != NULL);
    tg_augment_kind kind;
    CHECK(tg_augment_kind_from_name("sharpen", &kind) == TG_STATUS_CONFIG);
}

static void test_mosaic(void)
{
    sample_data s[4];
    tg_augment_sample samples[4];
    for (int i = 0; i < 4; i++) {
        sample_init(&s[i], 6 + i, 8);
        samples[i] = s[i].sample;
    }
    static tg_augment_pipeline p;
    tg_augment_pipeline_init(&p);
    add(&p, "mosaic");
    set(&p, "size", 32, 0, 1);
    add(&p, "vflip");
    CHECK_OK(tg_augment_pipeline_validate(&p));
    size_t bytes = tg_augment_scratch_bytes(&p, 1, 9, 8, 4);
    void *scratch = tg_aligned_alloc(bytes);
    static result r;
    for (uint64_t index = 0; index < 4; index++) {
        CHECK_OK(run(&p, samples, 4, index, &r, scratch, bytes));
        CHECK(r.out.height == 32 && r.out.n_boxes >= 1 && r.out.n_boxes <= 4);
        for (int64_t b = 0; b < r.out.n_boxes; b++) {
            int cx = (int)((r.boxes[4 * b] + r.boxes[4 * b + 2]) / 2), cy = (int)((r.boxes[4 * b + 1] + r.boxes[4 * b + 3]) / 2);
            /* NOTE: bilinear upscaling softens a thin clipped rectangle's edge, hence > 100 not 200. */
            CHECK(r.mask[cy * 32 + cx] == 1 && r.image[cy * 32 + cx] > 100.0f);
        }
    }
    CHECK(run(&p, samples, 1, 0, &r, scratch, bytes) == TG_STATUS_VALUE);
    tg_aligned_free(scratch);
    for (int i = 0; i < 4; i++) sample_free(&s[i]);
}

/* Copies the part [y0, y0 + rows) x [x0, x0 + cols) of a (C, H, W) uint8 image into dst,
 * planar (C, rows, cols) or interleaved (rows, cols, C). */
static void copy_part(const tg_tensor *whole, int64_t x0, int64_t y0, int64_t rows, int64_t cols, int interleaved,
                      tg_tensor *dst)
{
    int64_t c = whole->shape[0], h = whole->shape[1], w = whole->shape[2];
    int64_t shape[3] = {interleaved ? rows : c, interleaved ? cols : rows, interleaved ? c : cols};
    CHECK_OK(tg_tensor_init(dst, TG_DTYPE_U8, 3, shape));
    const uint8_t *src = whole->data; /* [C, H, W] */
    uint8_t *out = dst->data;
    for (int64_t k = 0; k < c; k++)
        for (int64_t y = 0; y < rows; y++)
            for (int64_t x = 0; x < cols; x++)
                out[interleaved ? (y * cols + x) * c + k : (k * rows + y) * cols + x] = src[(k * h + y0 + y) * w + x0 + x];
}

static void test_parts(void)
{
    int64_t shape[3] = {3, 37, 53};
    tg_tensor whole;
    CHECK_OK(tg_tensor_init(&whole, TG_DTYPE_U8, 3, shape));
    uint8_t *px = whole.data;
    for (int64_t i = 0; i < 3 * 37 * 53; i++) px[i] = (uint8_t)((i * 2654435761u) >> 13);
    static tg_augment_pipeline pipelines[4];
    tg_augment_pipeline *p = pipelines;
    tg_augment_pipeline_init(&p[0]);
    add(&p[0], "random_resized_crop");
    set(&p[0], "size", 16, 0, 1);
    add(&p[0], "hflip");
    add(&p[0], "normalize");
    set(&p[0], "mean", 0.5, 0, 1);
    set(&p[0], "std", 0.25, 0, 1);
    tg_augment_pipeline_init(&p[1]);
    add(&p[1], "random_resized_crop");
    set(&p[1], "size", 13, 31, 2);
    set(&p[1], "scale", 0.01, 0.2, 2);
    add(&p[1], "vflip");
    tg_augment_pipeline_init(&p[2]);
    add(&p[2], "center_crop");
    set(&p[2], "size", 20, 0, 1);
    add(&p[2], "rot90");
    tg_augment_pipeline_init(&p[3]);
    add(&p[3], "color_jitter");
    set(&p[3], "brightness", 0.4, 0, 1);
    add(&p[3], "resize");
    set(&p[3], "size", 24, 0, 1);
    size_t bytes = tg_augment_scratch_bytes(&p[0], 3, 37, 53, 0);
    for (int i = 1; i < 4; i++) {
        size_t b = tg_augment_scratch_bytes(&p[i], 3, 37, 53, 0);
        bytes = b > bytes ? b : bytes;
    }
    void *scratch = tg_aligned_alloc(bytes);
    static result expected, got;
    int same = 1, refused = 1;
    for (int i = 0; i < 4; i++) {
        CHECK_OK(tg_augment_pipeline_validate(&p[i]));
        for (uint64_t index = 0; index < 12; index++) {
            tg_augment_sample sample = {.image = &whole};
            CHECK_OK(run(&p[i], &sample, 1, index, &expected, scratch, bytes));
            int64_t win[4];
            CHECK_OK(tg_augment_source_window(&p[i], 3, 37, 53, 7, 1, index, win));
            if (i == 3) same &= win[0] == 0 && win[1] == 0 && win[2] == 53 && win[3] == 37;
            int64_t margin = (int64_t)(index % 3), x0 = win[0] - margin > 0 ? win[0] - margin : 0;
            int64_t y0 = win[1] - margin > 0 ? win[1] - margin : 0;
            int64_t x1 = win[2] + margin < 53 ? win[2] + margin : 53, y1 = win[3] + margin < 37 ? win[3] + margin : 37;
            for (int interleaved = 0; interleaved < 2; interleaved++) {
                tg_tensor part;
                copy_part(&whole, x0, y0, y1 - y0, x1 - x0, interleaved, &part);
                tg_augment_sample piece = {.image = &part,
                                           .part = {.height = 37, .width = 53, .x0 = x0, .y0 = y0,
                                                    .interleaved = interleaved}};
                same &= run(&p[i], &piece, 1, index, &got, scratch, bytes) == TG_STATUS_OK &&
                        got.out.height == expected.out.height && got.out.width == expected.out.width &&
                        memcmp(got.image, expected.image, sizeof(float) * 3 * (size_t)(got.out.height * got.out.width)) == 0;
                if (x0 == win[0] && i < 3) {
                    piece.part.x0 += 1;   /* the part misses the window's first column */
                    if (piece.part.x0 + (interleaved ? part.shape[1] : part.shape[2]) <= 53)
                        refused &= run(&p[i], &piece, 1, index, &got, scratch, bytes) == TG_STATUS_VALUE;
                }
                tg_tensor_free(&part);
            }
        }
    }
    CHECK(same);
    CHECK(refused);
    sample_data s;
    sample_init(&s, 6, 8);
    s.sample.part = (tg_augment_part){.height = 6, .width = 8};
    CHECK(run(&p[0], &s.sample, 1, 0, &got, scratch, bytes) == TG_STATUS_VALUE);   /* no mask with a part */
    sample_free(&s);
    tg_aligned_free(scratch);
    tg_tensor_free(&whole);
}

int main(void)
{
    test_flip_and_rot90();
    test_letterbox_and_jitter();
    test_config_errors();
    test_mosaic();
    test_parts();
    return check_report("test_augment");
}
