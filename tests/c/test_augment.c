/* test_augment.c: augmentation without Python, under ASan+UBSan in make test: a flip and a
 * rot90 of image, mask and box; a letterbox's scale and padding; determinism and no heap
 * allocation per call (counted through alloc_count.c); config errors; a mosaic. */
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
    s->sample = (tg_augment_sample){&s->image, &s->mask, s->box, &s->label, 1};
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

int main(void)
{
    test_flip_and_rot90();
    test_letterbox_and_jitter();
    test_config_errors();
    test_mosaic();
    return check_report("test_augment");
}
