/* test_loader.c: the loader's worker threads, ring, skip/stop policies and its batch
 * source, on NPY files written into a temporary folder (run under ASan+UBSan too). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../csrc/data/loader.h"
#include "check.h"

#define N_SAMPLES 23
#define BAD_SAMPLE 5
#define BATCH 4

static char root[64];

/* An NPY v1 file of a (3, height, width) uint8 array of a pattern that depends on `seed`. */
static void write_npy(const char *path, int height, int width, int seed)
{
    char header[128];
    int n = snprintf(header, sizeof header, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, %d, %d), }",
                     height, width);
    while ((10 + n + 1) % 64) header[n++] = ' ';
    header[n++] = '\n';
    FILE *f = fopen(path, "wb");
    unsigned char length[2] = {(unsigned char)(n & 0xff), (unsigned char)(n >> 8)};
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fwrite(length, 1, 2, f);
    fwrite(header, 1, (size_t)n, f);
    for (int i = 0; i < 3 * height * width; i++) fputc((i * 7 + seed * 31) & 0xff, f);
    fclose(f);
}

static char *relative_name(int i)
{
    char name[32];
    snprintf(name, sizeof name, "s%02d.npy", i);
    return strdup(name);
}

/* A classification manifest of N_SAMPLES images of assorted sizes; BAD_SAMPLE is not an image. */
static void make_manifest(tg_manifest *m)
{
    memset(m, 0, sizeof *m);
    m->version = TG_MANIFEST_VERSION;
    m->root = strdup(root);
    m->task = TG_TASK_CLASSIFICATION;
    m->n_classes = 2;
    m->classes = calloc(2, sizeof *m->classes);
    m->classes[0] = strdup("a");
    m->classes[1] = strdup("b");
    m->n_samples = N_SAMPLES;
    m->samples = calloc(N_SAMPLES, sizeof *m->samples);
    for (int i = 0; i < N_SAMPLES; i++) {
        tg_sample *s = &m->samples[i];
        s->path = relative_name(i);
        s->label = i % 2;
        s->split = TG_SPLIT_TRAIN;
        char full[128];
        snprintf(full, sizeof full, "%s/%s", root, s->path);
        if (i == BAD_SAMPLE) {
            FILE *f = fopen(full, "wb");
            fputs("\x93NUMPY but not really", f);
            fclose(f);
        } else {
            write_npy(full, 9 + i % 5, 11 + i % 3, i);
        }
    }
}

static void make_pipeline(tg_augment_pipeline *p, int fixed)
{
    tg_augment_pipeline_init(p);
    p->n = 2;
    double size[2] = {6, 7};
    tg_augment_transform_init(&p->transforms[0], TG_AUGMENT_KIND_HFLIP);
    tg_augment_transform_init(&p->transforms[1], fixed ? TG_AUGMENT_KIND_RANDOM_RESIZED_CROP : TG_AUGMENT_KIND_VFLIP);
    if (fixed) CHECK_OK(tg_augment_transform_set(&p->transforms[1], "size", size, 2));
}

typedef struct epoch_bytes {
    float images[N_SAMPLES + BATCH][3 * 6 * 7];
    int64_t labels[N_SAMPLES + BATCH];
    int64_t indices[N_SAMPLES + BATCH];
    int64_t total;
} epoch_bytes;

static tg_status run_epoch(tg_loader *loader, int64_t epoch, epoch_bytes *out)
{
    int64_t n_batches, count;
    memset(out, 0, sizeof *out);
    TG_TRY(tg_loader_start_epoch(loader, epoch, &n_batches));
    for (int64_t b = 0; b < n_batches; b++) {
        TG_TRY(tg_loader_next(loader, out->images[out->total], out->labels + out->total, out->indices + out->total,
                              &count));
        out->total += count;
    }
    TG_TRY(tg_loader_next(loader, out->images[0], out->labels, NULL, &count));
    return count == 0 ? TG_STATUS_OK : tg_error(TG_STATUS_INTERNAL, "a batch after the last");
}

static tg_loader_options options_with(int workers)
{
    return (tg_loader_options){.split = TG_SPLIT_TRAIN, .batch_size = BATCH, .workers = workers, .ring_depth = 2,
                               .sampler = TG_SAMPLER_KIND_SHUFFLED, .seed = 7};
}

static void test_determinism_and_skip(const tg_manifest *m, const tg_augment_pipeline *p)
{
    static epoch_bytes one, two, other;
    tg_loader *a = NULL, *b = NULL;
    tg_loader_options options = options_with(1);
    CHECK_OK(tg_loader_create(m, p, &options, &a));
    options = options_with(3);
    options.cache_bytes = 2000;
    CHECK_OK(tg_loader_create(m, p, &options, &b));
    if (!a || !b) return;
    int64_t shape[3];
    int segmentation;
    tg_loader_sample_shape(a, shape, &segmentation);
    CHECK(shape[0] == 3 && shape[1] == 6 && shape[2] == 7 && !segmentation);
    for (int epoch = 0; epoch < 2; epoch++) {
        CHECK_OK(run_epoch(a, epoch, &one));
        CHECK_OK(run_epoch(b, epoch, &two));
        CHECK(one.total == N_SAMPLES && two.total == N_SAMPLES);
        CHECK(memcmp(&one, &two, sizeof one) == 0);
        int bad_used = 0;
        for (int64_t i = 0; i < one.total; i++) {
            bad_used |= one.indices[i] == BAD_SAMPLE;
            CHECK(one.labels[i] == one.indices[i] % 2);
        }
        CHECK(!bad_used);
    }
    CHECK_OK(run_epoch(a, 0, &other));
    CHECK(memcmp(&other, &one, sizeof one) != 0);   /* epoch 1 (in `one`) differs from epoch 0 */
    const tg_loader_skip *skipped;
    CHECK(tg_loader_skipped(a, &skipped) == 1);
    CHECK(skipped[0].index == BAD_SAMPLE && strstr(skipped[0].path, "s05.npy") && strstr(skipped[0].message, "s05.npy"));
    tg_loader_stats stats;
    tg_loader_stats_get(b, &stats);
    CHECK(stats.ring_depth == 2 && stats.peak_slots_in_use >= 1 && stats.peak_slots_in_use <= 2);
    CHECK(stats.ring_bytes == 2 * stats.batch_bytes && stats.batch_bytes == BATCH * (3 * 6 * 7 * 4 + 8 + 8));
    CHECK(stats.cache_bytes_used > 0 && stats.cache_bytes_used <= 2000 && stats.cache_hits > 0);
    tg_loader_destroy(a);
    tg_loader_destroy(b);
}

static void test_stop_policy(const tg_manifest *m, const tg_augment_pipeline *p)
{
    tg_loader *loader = NULL;
    tg_loader_options options = options_with(2);
    options.on_bad_file = TG_BAD_FILE_POLICY_STOP;
    options.sampler = TG_SAMPLER_KIND_SEQUENTIAL;
    CHECK_OK(tg_loader_create(m, p, &options, &loader));
    if (!loader) return;
    static epoch_bytes out;
    tg_status status = run_epoch(loader, 0, &out);
    CHECK(status == TG_STATUS_DECODE && strstr(tg_error_message(), "s05.npy"));
    CHECK(out.total == BAD_SAMPLE / BATCH * BATCH);
    tg_loader_destroy(loader);
}

static void test_batch_source(const tg_manifest *m, const tg_augment_pipeline *p)
{
    tg_loader *loader = NULL, *reference = NULL;
    tg_loader_options options = options_with(2);
    CHECK_OK(tg_loader_create(m, p, &options, &loader));
    CHECK_OK(tg_loader_create(m, p, &options, &reference));
    if (!loader || !reference) return;
    tg_batch_source source;
    CHECK_OK(tg_loader_source(loader, &source));
    CHECK(source.size == N_SAMPLES && source.begin_epoch && source.fill);
    int64_t order[N_SAMPLES];
    for (int i = 0; i < N_SAMPLES; i++) order[i] = (i * 5 + 3) % N_SAMPLES;
    static float images[BATCH][3 * 6 * 7], expected[BATCH][3 * 6 * 7];
    int64_t labels[BATCH], expected_labels[BATCH], count;
    CHECK_OK(source.begin_epoch(source.ctx, 3, order, N_SAMPLES, BATCH, 1));
    CHECK_OK(tg_loader_start_order(reference, 3, order, N_SAMPLES, 1));
    for (int64_t start = BATCH; start < N_SAMPLES; start += BATCH) {
        int64_t n = N_SAMPLES - start < BATCH ? N_SAMPLES - start : BATCH;
        CHECK_OK(source.fill(source.ctx, 3, order + start, n, images[0], labels));
        CHECK_OK(tg_loader_next(reference, expected[0], expected_labels, NULL, &count));
        CHECK(count == n && memcmp(images, expected, sizeof(float) * (size_t)n * 3 * 6 * 7) == 0);
        CHECK(memcmp(labels, expected_labels, sizeof(int64_t) * (size_t)n) == 0);
    }
    int64_t evaluation[3] = {2, 0, 1};   /* not the next batch of the order: made on its own */
    CHECK_OK(source.fill(source.ctx, 3, evaluation, 3, images[0], labels));
    CHECK(labels[0] == 0 && labels[1] == 0 && labels[2] == 1);
    CHECK(source.begin_epoch(source.ctx, 0, order, N_SAMPLES, BATCH + 1, 0) == TG_STATUS_CONFIG);
    int64_t outside = N_SAMPLES;
    CHECK(source.fill(source.ctx, 3, &outside, 1, images[0], labels) == TG_STATUS_VALUE);
    /* an epoch abandoned halfway, workers busy: destroy must still join cleanly */
    CHECK_OK(source.begin_epoch(source.ctx, 4, order, N_SAMPLES, BATCH, 0));
    tg_loader_destroy(loader);
    tg_loader_destroy(reference);
}

static void test_config_errors(const tg_manifest *m)
{
    tg_augment_pipeline not_fixed;
    make_pipeline(&not_fixed, 0);
    tg_loader *loader = NULL;
    tg_loader_options options = options_with(1);
    CHECK(tg_loader_create(m, &not_fixed, &options, &loader) == TG_STATUS_CONFIG && !loader);
    CHECK(strstr(tg_error_message(), "fixed size") != NULL);
    options.workers = 0;
    CHECK(tg_loader_create(m, &not_fixed, &options, &loader) == TG_STATUS_VALUE);
    options = options_with(1);
    options.split = TG_SPLIT_TEST;
    tg_augment_pipeline fixed;
    make_pipeline(&fixed, 1);
    CHECK(tg_loader_create(m, &fixed, &options, &loader) == TG_STATUS_DATASET);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/tg_loader_XXXXXX");
    if (!mkdtemp(root)) return 1;
    tg_manifest m;
    make_manifest(&m);
    tg_augment_pipeline pipeline;
    make_pipeline(&pipeline, 1);
    test_determinism_and_skip(&m, &pipeline);
    test_stop_policy(&m, &pipeline);
    test_batch_source(&m, &pipeline);
    test_config_errors(&m);
    for (int i = 0; i < N_SAMPLES; i++) {
        char full[128];
        snprintf(full, sizeof full, "%s/%s", root, m.samples[i].path);
        unlink(full);
    }
    rmdir(root);
    tg_manifest_free(&m);
    return check_report("test_loader");
}
