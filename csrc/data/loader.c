/* loader.c: worker threads that decode and augment batches into a ring of slots.
 *
 * Batch b of an epoch lives in slot b % ring_depth. A worker claims the next batch
 * number only when its slot is free (the consumer took batch b - ring_depth), so at
 * most ring_depth batches exist at once, whatever the timing; it fills the slot with
 * no lock held and marks it ready. The consumer takes batches strictly in order,
 * copies one out and frees its slot. Starting an epoch bumps a generation: batches of
 * the old epoch still being filled are dropped when they finish, and the new order is
 * installed only once none is in flight, so a worker never reads a freed order.
 * Lock order: take_lock (consumers) before lock (everything shared with workers).
 * Not here: the decoders, the transforms, the epoch order (see loader.h). */
#include "loader.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "image.h"

typedef enum slot_state {
    SLOT_STATE_FREE = 0,
    SLOT_STATE_FILLING,
    SLOT_STATE_READY,
} slot_state;

typedef struct slot {
    slot_state state;
    int64_t number;             /* batch number in the epoch */
    int64_t count;              /* samples in it */
    float *images;              /* [batch, C, H, W] */
    int64_t *targets;           /* [batch] labels or [batch, H, W] masks */
    int64_t *indices;           /* [batch] samples used */
    tg_status status;
    char message[1024];         /* the error of a failed batch */
} slot;

typedef struct sample_files {
    char *image;                /* absolute path */
    char *mask;                 /* absolute path, or NULL */
    int32_t label;              /* class, or -1 */
} sample_files;

typedef struct worker {
    tg_loader *loader;
    pthread_t thread;
    void *scratch;              /* [scratch_bytes] tg_augment_apply's scratch */
    size_t scratch_bytes;
    void *mask_out;             /* [H, W] the augmented mask in its input dtype */
    tg_image_window window;     /* [rows, cols, C] the part of a JPEG a sample's crop reads */
} worker;

typedef struct cached_sample {
    int present;
    tg_tensor image;            /* (C, H, W) after channel conversion */
    tg_tensor mask;             /* (H, W) uint8 or int32; empty for classification */
} cached_sample;

struct tg_loader {
    tg_loader_options options;
    tg_augment_pipeline pipeline;
    int segmentation;
    int64_t n;                  /* samples in the split */
    sample_files *files;        /* [n] */
    int32_t *labels;            /* [n] class labels (classification) */
    int32_t n_classes;
    int64_t channels, height, width;
    int64_t per_image;          /* C * H * W floats */
    int64_t per_target;         /* 1 or H * W */

    int depth;
    slot *slots;                /* [depth] */
    size_t batch_bytes;
    worker *workers;            /* [n_workers] */
    int n_workers;

    pthread_mutex_t take_lock;  /* one consumer at a time */
    pthread_mutex_t lock;
    pthread_cond_t work;        /* workers: a slot was freed, an epoch started, or stop */
    pthread_cond_t ready;       /* consumers: a batch was filled */
    int stopping;

    /* the epoch (under lock; read by workers while they fill, never changed then) */
    int active;
    uint64_t generation;
    int64_t epoch;
    int64_t *order;             /* [n_order] sample indices */
    int64_t n_order;
    int64_t n_batches;
    int64_t next_claim;         /* next batch a worker fills */
    int64_t next_take;          /* next batch the consumer takes */
    int filling;                /* slots being filled */

    /* what the skip policy and the cache learned (under lock) */
    unsigned char *bad;         /* [n] 1: the sample's file is known bad */
    tg_loader_skip *skipped;    /* [n_skipped] */
    int64_t n_skipped, skipped_capacity;
    cached_sample *cache;       /* [n], or NULL without a cache */
    int64_t cache_used;
    int64_t cache_hits, decoded;
    int peak_in_use;
};

/* ---- setup ---- */

static char *join_path(const char *root, const char *relative)
{
    size_t a = strlen(root), b = strlen(relative);
    char *full = malloc(a + b + 2);
    if (!full) return NULL;
    memcpy(full, root, a);
    full[a] = '/';
    memcpy(full + a + 1, relative, b + 1);
    return full;
}

static tg_status copy_samples(tg_loader *L, const tg_manifest *m)
{
    int64_t n = 0;
    for (int64_t i = 0; i < m->n_samples; i++) n += L->options.split == TG_SPLIT_NONE || m->samples[i].split == L->options.split;
    if (n == 0)
        return tg_error(TG_STATUS_DATASET, "loader: the %s split of %s has no samples; scan with other split ratios or "
                        "use another split", L->options.split == TG_SPLIT_NONE ? "whole" : tg_split_name(L->options.split),
                        m->root);
    L->files = calloc((size_t)n, sizeof *L->files);
    L->labels = calloc((size_t)n, sizeof *L->labels);
    L->bad = calloc((size_t)n, 1);
    if (!L->files || !L->labels || !L->bad) return tg_error(TG_STATUS_NOMEM, "loader: no memory for %lld samples", (long long)n);
    L->n = n;
    int64_t k = 0;
    for (int64_t i = 0; i < m->n_samples; i++) {
        const tg_sample *s = &m->samples[i];
        if (L->options.split != TG_SPLIT_NONE && s->split != L->options.split) continue;
        L->files[k].image = join_path(m->root, s->path);
        L->files[k].mask = s->mask ? join_path(m->root, s->mask) : NULL;
        L->files[k].label = s->label;
        L->labels[k] = s->label < 0 ? 0 : s->label;
        if (!L->files[k].image || (s->mask && !L->files[k].mask))
            return tg_error(TG_STATUS_NOMEM, "loader: no memory for sample paths");
        if (L->segmentation && !s->mask)
            return tg_error(TG_STATUS_DATASET, "loader: sample %s of a segmentation manifest has no mask", s->path);
        k++;
    }
    return TG_STATUS_OK;
}

/* The input size of sample k for the fixed-size check: the manifest's, or a probe's. */
static void sample_size(const tg_manifest *m, const tg_sample *s, int64_t *channels, int64_t *height, int64_t *width)
{
    *channels = s->channels, *height = s->height, *width = s->width;
    if (s->width > 0) return;
    char *full = join_path(m->root, s->path);
    tg_image_info info;
    if (full && tg_image_probe(full, &info) == TG_STATUS_OK)
        *channels = info.channels, *height = info.height, *width = info.width;
    free(full);
}

/* Output shape, and the check that every input size of the split gives it. */
static tg_status fixed_output_shape(tg_loader *L, const tg_manifest *m)
{
    const tg_augment_pipeline *p = &L->pipeline;
    if (p->n > 0 && p->transforms[0].kind == TG_AUGMENT_KIND_MOSAIC)
        return tg_error(TG_STATUS_UNSUPPORTED, "loader: mosaic combines 4 samples into one and the loader makes one "
                        "output per sample; remove mosaic from the pipeline");
    int64_t first[3] = {0, 0, 0}, first_in[2] = {0, 0}, any_unknown = 0, k = 0;
    L->channels = L->options.channels;
    for (int64_t i = 0; i < m->n_samples; i++) {
        const tg_sample *s = &m->samples[i];
        if (L->options.split != TG_SPLIT_NONE && s->split != L->options.split) continue;
        int64_t c, h, w;
        sample_size(m, s, &c, &h, &w);
        if (w <= 0) {
            any_unknown = 1;
            k++;
            continue;
        }
        if (L->channels == 0) L->channels = c;
        int64_t shape[3];
        TG_TRY(tg_augment_output_shape(p, L->channels, h, w, L->options.seed, 0, (uint64_t)k, shape));
        if (first[0] == 0) {
            memcpy(first, shape, sizeof first);
            first_in[0] = h, first_in[1] = w;
        } else if (shape[1] != first[1] || shape[2] != first[2]) {
            return tg_error(TG_STATUS_CONFIG, "loader: the pipeline gives %lld x %lld for %s (%lld x %lld) but %lld x "
                            "%lld for a %lld x %lld image; batches need one size: end the pipeline with resize, "
                            "center_crop, random_resized_crop or letterbox to a fixed size",
                            (long long)shape[1], (long long)shape[2], s->path, (long long)h, (long long)w,
                            (long long)first[1], (long long)first[2], (long long)first_in[0], (long long)first_in[1]);
        }
        k++;
    }
    if (L->channels == 0)
        return tg_error(TG_STATUS_DATASET, "loader: no image header of %s can be read; check the files", m->root);
    if (first[0] == 0 || any_unknown) {
        /* NOTE: sizes the manifest does not know: the output must not depend on the input size at all */
        int64_t a[3], b[3];
        int64_t h = first[0] ? first_in[0] : 480, w = first[0] ? first_in[1] : 640;
        TG_TRY(tg_augment_output_shape(p, L->channels, h, w, L->options.seed, 0, 0, a));
        TG_TRY(tg_augment_output_shape(p, L->channels, h * 2 + 17, w + 41, L->options.seed, 0, 1, b));
        if (a[1] != b[1] || a[2] != b[2])
            return tg_error(TG_STATUS_CONFIG, "loader: the pipeline's output size follows the input size (%lld x %lld "
                            "from %lld x %lld, %lld x %lld from %lld x %lld) and some images of %s have no size in "
                            "the manifest; end the pipeline with resize, center_crop, random_resized_crop or letterbox "
                            "to a fixed size", (long long)a[1], (long long)a[2], (long long)h, (long long)w,
                            (long long)b[1], (long long)b[2], (long long)(h * 2 + 17), (long long)(w + 41), m->root);
        if (first[0] == 0) memcpy(first, a, sizeof first);
    }
    L->height = first[1];
    L->width = first[2];
    return TG_STATUS_OK;
}

static tg_status allocate_ring(tg_loader *L)
{
    int64_t batch = L->options.batch_size;
    size_t images = sizeof(float) * (size_t)(batch * L->per_image);
    size_t targets = sizeof(int64_t) * (size_t)(batch * L->per_target);
    size_t indices = sizeof(int64_t) * (size_t)batch;
    L->batch_bytes = images + targets + indices;
    L->slots = calloc((size_t)L->depth, sizeof *L->slots);
    if (!L->slots) return tg_error(TG_STATUS_NOMEM, "loader: no memory for %d ring slots", L->depth);
    for (int i = 0; i < L->depth; i++) {
        slot *s = &L->slots[i];
        s->images = tg_aligned_alloc(images);
        s->targets = tg_aligned_alloc(targets);
        s->indices = tg_aligned_alloc(indices);
        if (!s->images || !s->targets || !s->indices)
            return tg_error(TG_STATUS_NOMEM, "loader: no memory for the ring: %d batches of %zu bytes", L->depth,
                            L->batch_bytes);
    }
    return TG_STATUS_OK;
}

/* ---- making one sample ---- */

static int is_bad_file(tg_status status)
{
    return status == TG_STATUS_DECODE || status == TG_STATUS_IO || status == TG_STATUS_DATASET;
}

/* Converts a decoded (C, H, W) image to the loader's channel count. */
static tg_status convert_channels(tg_tensor *image, int64_t want, const char *path)
{
    if (image->ndim != 3)
        return tg_error(TG_STATUS_DATASET, "%s: a file of %d-D images; the loader reads one image per file", path,
                        image->ndim);
    int64_t have = image->shape[0];
    if (have == want) return TG_STATUS_OK;
    if (!((have == 1 && want == 3) || (have == 4 && want == 3) || (have == 2 && want == 1)))
        return tg_error(TG_STATUS_DATASET, "%s: the image has %lld channels and the loader makes %lld; pass channels= "
                        "to the loader, or convert the file", path, (long long)have, (long long)want);
    tg_tensor out;
    int64_t shape[3] = {want, image->shape[1], image->shape[2]};
    TG_TRY(tg_tensor_init(&out, image->dtype, 3, shape));
    size_t plane = (size_t)(shape[1] * shape[2]) * tg_dtype_size(image->dtype);
    for (int64_t c = 0; c < want; c++)
        memcpy((char *)out.data + (size_t)c * plane, (const char *)image->data + (size_t)(have == 1 ? 0 : c) * plane,
               plane);
    tg_tensor_free(image);
    *image = out;
    return TG_STATUS_OK;
}

/* A decoded mask (1, H, W) as (H, W) uint8 or int32 class indices of an (H, W) image. */
static tg_status mask_plane(tg_tensor *mask, const tg_tensor *image, const char *path)
{
    if (mask->ndim != 3 || mask->shape[0] != 1)
        return tg_error(TG_STATUS_DATASET, "%s: a mask must have one channel of class indices, got %d-D with %lld "
                        "channels", path, mask->ndim, (long long)mask->shape[0]);
    if (mask->shape[1] != image->shape[1] || mask->shape[2] != image->shape[2])
        return tg_error(TG_STATUS_DATASET, "%s: the mask is %lld x %lld but its image is %lld x %lld", path,
                        (long long)mask->shape[1], (long long)mask->shape[2], (long long)image->shape[1],
                        (long long)image->shape[2]);
    int64_t shape[2] = {mask->shape[1], mask->shape[2]};
    if (mask->dtype == TG_DTYPE_U8) return tg_tensor_set_shape(mask, TG_DTYPE_U8, 2, shape);
    if (mask->dtype != TG_DTYPE_U16)
        return tg_error(TG_STATUS_DATASET, "%s: a mask must hold integer class indices (uint8 or uint16), got %s", path,
                        tg_dtype_name(mask->dtype));
    tg_tensor wide;
    TG_TRY(tg_tensor_init(&wide, TG_DTYPE_I32, 2, shape));
    const uint16_t *src = mask->data;   /* [H * W] */
    int32_t *dst = wide.data;           /* [H * W] */
    for (int64_t i = 0; i < shape[0] * shape[1]; i++) dst[i] = src[i];
    tg_tensor_free(mask);
    *mask = wide;
    return TG_STATUS_OK;
}

/* Decodes sample k (image, and mask for segmentation); *failed names the file at fault. */
static tg_status decode_sample(tg_loader *L, int64_t k, tg_tensor *image, tg_tensor *mask, const char **failed)
{
    const sample_files *f = &L->files[k];
    *failed = f->image;
    TG_TRY(tg_image_read(f->image, NULL, image));
    TG_TRY(convert_channels(image, L->channels, f->image));
    if (!L->segmentation) return TG_STATUS_OK;
    *failed = f->mask;
    TG_TRY(tg_image_read(f->mask, NULL, mask));
    return mask_plane(mask, image, f->mask);
}

/* Keeps a decoded sample in the cache when the budget has room; 1: the cache owns it now. */
static int cache_keep(tg_loader *L, int64_t k, tg_tensor *image, tg_tensor *mask)
{
    if (!L->cache) return 0;
    int64_t bytes = (int64_t)tg_tensor_nbytes(image) + (mask->data ? (int64_t)tg_tensor_nbytes(mask) : 0);
    int kept = 0;
    pthread_mutex_lock(&L->lock);
    if (!L->cache[k].present && L->cache_used + bytes <= L->options.cache_bytes) {
        L->cache[k].image = *image;
        L->cache[k].mask = *mask;
        L->cache[k].present = 1;
        L->cache_used += bytes;
        kept = 1;
    }
    pthread_mutex_unlock(&L->lock);
    return kept;
}

static tg_status ensure_scratch(worker *w, size_t bytes)
{
    if (bytes <= w->scratch_bytes) return TG_STATUS_OK;
    tg_aligned_free(w->scratch);
    w->scratch_bytes = 0;
    w->scratch = tg_aligned_alloc(bytes);
    if (!w->scratch) return tg_error(TG_STATUS_NOMEM, "loader: no memory for %zu bytes of augmentation scratch", bytes);
    w->scratch_bytes = bytes;
    return TG_STATUS_OK;
}

/* Augments one decoded sample (k) into image_out [C, H, W] and target_out ([1] label
 * or [H, W] mask); the worker's scratch fits the image already. */
static tg_status augment_into(worker *w, int64_t k, int64_t epoch, const tg_augment_sample *sample, float *image_out,
                              int64_t *target_out)
{
    tg_loader *L = w->loader;
    const tg_tensor *mk = sample->mask;
    tg_augment_output out = {.image = image_out, .image_capacity = L->per_image, .mask = mk ? w->mask_out : NULL,
                             .mask_capacity = mk ? L->height * L->width : 0};
    TG_TRY(tg_augment_apply(&L->pipeline, sample, 1, L->options.seed, (uint64_t)epoch, (uint64_t)k, w->scratch,
                            w->scratch_bytes, &out));
    if (out.channels != L->channels || out.height != L->height || out.width != L->width)
        return tg_error(TG_STATUS_CONFIG, "loader: the pipeline gave (%lld, %lld, %lld) for %s but batches are "
                        "(%lld, %lld, %lld); end the pipeline with a fixed-size resize or crop",
                        (long long)out.channels, (long long)out.height, (long long)out.width, L->files[k].image,
                        (long long)L->channels, (long long)L->height, (long long)L->width);
    if (!mk) {
        target_out[0] = L->files[k].label;
        return TG_STATUS_OK;
    }
    int64_t plane = L->height * L->width;
    if (mk->dtype == TG_DTYPE_U8) {
        const uint8_t *src = w->mask_out;   /* [H * W] */
        for (int64_t i = 0; i < plane; i++) target_out[i] = src[i];
    } else {
        const int32_t *src = w->mask_out;   /* [H * W] */
        for (int64_t i = 0; i < plane; i++) target_out[i] = src[i];
    }
    return TG_STATUS_OK;
}

typedef struct window_choice {
    const tg_loader *loader;
    int64_t epoch, k;
} window_choice;

/* The source window of sample k's draws; declines an image whose channels need converting. */
static tg_status choose_window(void *ctx, int64_t channels, int64_t height, int64_t width, int64_t window[4])
{
    const window_choice *choice = ctx;
    const tg_loader *L = choice->loader;
    if (channels != L->channels) {
        memset(window, 0, 4 * sizeof *window);
        return TG_STATUS_OK;
    }
    return tg_augment_source_window(&L->pipeline, channels, height, width, L->options.seed, (uint64_t)choice->epoch,
                                    (uint64_t)choice->k, window);
}

/* NOTE: only files named like JPEGs try the window path: for others (a PNG dataset of
 * tiny images) the extra open would be pure cost. A JPEG under another name still
 * decodes, whole. */
static int named_like_jpeg(const char *path)
{
    static const char *const suffixes[] = {".jpg", ".jpeg", ".jpe", ".jfif"};
    size_t n = strlen(path);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t m = strlen(suffixes[i]);
        if (n >= m && strcasecmp(path + n - m, suffixes[i]) == 0) return 1;
    }
    return 0;
}

/* Sample k from the part of its file that its draws read (tg_image_read_window), for a
 * classification loader without a cache; *taken = 0 when the file is not for that path.
 * NOTE: the part's pixels are a whole decode's, so the batch is the same bytes either
 * way, and the same as with a cache. */
static tg_status sample_from_window(worker *w, int64_t k, int64_t epoch, float *image_out, int64_t *target_out,
                                    const char **failed, int *taken)
{
    tg_loader *L = w->loader;
    *taken = 0;
    *failed = L->files[k].image;
    window_choice choice = {L, epoch, k};
    TG_TRY(tg_image_read_window(L->files[k].image, NULL, choose_window, &choice, &w->window));
    if (!w->window.decoded) return TG_STATUS_OK;
    *taken = 1;
    *failed = NULL;
    pthread_mutex_lock(&L->lock);
    L->decoded++;
    pthread_mutex_unlock(&L->lock);
    const tg_image_window *win = &w->window;
    TG_TRY(ensure_scratch(w, tg_augment_scratch_bytes(&L->pipeline, win->channels, win->height, win->width, 0)));
    tg_tensor part;
    int64_t shape[3] = {win->rows, win->cols, win->channels};
    memset(&part, 0, sizeof part);
    TG_TRY(tg_tensor_set_shape(&part, TG_DTYPE_U8, 3, shape));
    part.data = win->data;   /* borrowed: the worker keeps the buffer */
    tg_augment_sample sample = {.image = &part,
                                .part = {.height = win->height, .width = win->width, .x0 = win->x0, .y0 = win->y0,
                                         .interleaved = 1}};
    return augment_into(w, k, epoch, &sample, image_out, target_out);
}

/* Decodes (or finds in the cache) and augments sample k into image_out [C, H, W] and
 * target_out ([1] label or [H, W] mask). */
static tg_status make_sample(worker *w, int64_t k, int64_t epoch, float *image_out, int64_t *target_out,
                             const char **failed)
{
    tg_loader *L = w->loader;
    if (!L->cache && !L->segmentation && named_like_jpeg(L->files[k].image)) {
        int taken;
        tg_status status = sample_from_window(w, k, epoch, image_out, target_out, failed, &taken);
        if (status != TG_STATUS_OK || taken) return status;
    }
    tg_tensor image = {0}, mask = {0};
    const tg_tensor *im = &image, *mk = L->segmentation ? &mask : NULL;
    int owned = 1;
    *failed = NULL;
    pthread_mutex_lock(&L->lock);
    int hit = L->cache && L->cache[k].present;
    if (hit) {
        im = &L->cache[k].image;
        mk = L->segmentation ? &L->cache[k].mask : NULL;
        L->cache_hits++;
        owned = 0;
    } else {
        L->decoded += 1 + L->segmentation;
    }
    pthread_mutex_unlock(&L->lock);
    tg_status status = TG_STATUS_OK;
    if (!hit) {
        status = decode_sample(L, k, &image, &mask, failed);
        if (status == TG_STATUS_OK && cache_keep(L, k, &image, &mask)) {
            owned = 0;
            im = &L->cache[k].image;
            mk = L->segmentation ? &L->cache[k].mask : NULL;
        }
    }
    if (status == TG_STATUS_OK) status = ensure_scratch(w, tg_augment_scratch_bytes(&L->pipeline, im->shape[0],
                                                                                   im->shape[1], im->shape[2], 0));
    if (status == TG_STATUS_OK) {
        *failed = NULL;
        tg_augment_sample sample = {.image = im, .mask = mk};
        status = augment_into(w, k, epoch, &sample, image_out, target_out);
    }
    if (owned) {
        tg_tensor_free(&image);
        tg_tensor_free(&mask);
    }
    return status;
}

/* ---- workers ---- */

static void record_bad(tg_loader *L, int64_t k, const char *path, const char *message)
{
    pthread_mutex_lock(&L->lock);
    if (!L->bad[k]) {
        L->bad[k] = 1;
        if (L->n_skipped == L->skipped_capacity) {
            int64_t capacity = L->skipped_capacity ? 2 * L->skipped_capacity : 8;
            tg_loader_skip *bigger = realloc(L->skipped, (size_t)capacity * sizeof *bigger);
            if (bigger) L->skipped = bigger, L->skipped_capacity = capacity;
        }
        if (L->n_skipped < L->skipped_capacity) {
            tg_loader_skip *s = &L->skipped[L->n_skipped];
            s->index = k;
            s->path = strdup(path ? path : L->files[k].image);
            s->message = strdup(message);
            if (s->path && s->message) L->n_skipped++;
            else free(s->path), free(s->message);
        }
    }
    pthread_mutex_unlock(&L->lock);
}

static int known_bad(tg_loader *L, int64_t k)
{
    pthread_mutex_lock(&L->lock);
    int bad = L->bad[k];
    pthread_mutex_unlock(&L->lock);
    return bad;
}

/* Fills slot s with batch b of the epoch (order and epoch are stable while it runs). */
static tg_status fill_batch(worker *w, slot *s, int64_t b, int64_t epoch, const int64_t *order, int64_t n_order)
{
    tg_loader *L = w->loader;
    int64_t batch = L->options.batch_size;
    int64_t start = b * batch;
    s->count = n_order - start < batch ? n_order - start : batch;
    for (int64_t i = 0; i < s->count; i++) {
        float *image = s->images + i * L->per_image;
        int64_t *target = s->targets + i * L->per_target;
        int64_t tries = 0;
        for (;; tries++) {
            if (tries == n_order)
                return tg_error(TG_STATUS_DATASET, "loader: none of the %lld samples of this epoch's order can be "
                                "read (see the loader's skipped files)", (long long)n_order);
            int64_t k = order[(start + i + tries) % n_order];
            if (L->options.on_bad_file == TG_BAD_FILE_POLICY_SKIP && known_bad(L, k)) continue;
            const char *failed;
            tg_status status = make_sample(w, k, epoch, image, target, &failed);
            if (status == TG_STATUS_OK) {
                s->indices[i] = k;
                break;
            }
            if (L->options.on_bad_file == TG_BAD_FILE_POLICY_STOP || !is_bad_file(status) || !failed) return status;
            record_bad(L, k, failed, tg_error_message());
        }
    }
    return TG_STATUS_OK;
}

static int claimable(const tg_loader *L)
{
    return L->active && L->next_claim < L->n_batches && L->slots[L->next_claim % L->depth].state == SLOT_STATE_FREE;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    tg_loader *L = w->loader;
    pthread_mutex_lock(&L->lock);
    for (;;) {
        while (!L->stopping && !claimable(L)) pthread_cond_wait(&L->work, &L->lock);
        if (L->stopping) break;
        int64_t b = L->next_claim++;
        slot *s = &L->slots[b % L->depth];
        s->state = SLOT_STATE_FILLING;
        s->number = b;
        L->filling++;
        int in_use = 0;
        for (int i = 0; i < L->depth; i++) in_use += L->slots[i].state != SLOT_STATE_FREE;
        if (in_use > L->peak_in_use) L->peak_in_use = in_use;
        uint64_t generation = L->generation;
        int64_t epoch = L->epoch, n_order = L->n_order;
        const int64_t *order = L->order;
        pthread_mutex_unlock(&L->lock);

        tg_error_clear();
        s->status = fill_batch(w, s, b, epoch, order, n_order);
        if (s->status != TG_STATUS_OK) snprintf(s->message, sizeof s->message, "%s", tg_error_message());

        pthread_mutex_lock(&L->lock);
        L->filling--;
        s->state = generation == L->generation ? SLOT_STATE_READY : SLOT_STATE_FREE;
        pthread_cond_broadcast(&L->ready);
        if (s->state == SLOT_STATE_FREE) pthread_cond_broadcast(&L->work);
    }
    pthread_mutex_unlock(&L->lock);
    return NULL;
}

/* ---- lifetime ---- */

tg_status tg_loader_create(const tg_manifest *manifest, const tg_augment_pipeline *pipeline,
                           const tg_loader_options *options, tg_loader **out)
{
    *out = NULL;
    if (options->batch_size < 1)
        return tg_error(TG_STATUS_VALUE, "loader: batch_size must be >= 1, got %lld", (long long)options->batch_size);
    if (options->workers < 1 || options->workers > TG_LOADER_MAX_WORKERS)
        return tg_error(TG_STATUS_VALUE, "loader: workers must be 1 to %d, got %d", TG_LOADER_MAX_WORKERS,
                        options->workers);
    if (options->ring_depth < 0 || options->cache_bytes < 0 || options->channels < 0)
        return tg_error(TG_STATUS_VALUE, "loader: ring_depth, cache_bytes and channels must be >= 0 (got %d, %lld, %lld)",
                        options->ring_depth, (long long)options->cache_bytes, (long long)options->channels);
    if (manifest->task == TG_TASK_DETECTION)
        return tg_error(TG_STATUS_UNSUPPORTED, "loader: %s is a detection dataset; the loader makes classification "
                        "and segmentation batches", manifest->root);
    TG_TRY(tg_augment_pipeline_validate(pipeline));
    tg_loader *L = calloc(1, sizeof *L);
    if (!L) return tg_error(TG_STATUS_NOMEM, "loader: no memory");
    L->options = *options;
    L->pipeline = *pipeline;
    L->segmentation = manifest->task == TG_TASK_SEGMENTATION;
    L->n_classes = manifest->n_classes;
    L->depth = options->ring_depth ? options->ring_depth : 2 * options->workers;
    pthread_mutex_init(&L->take_lock, NULL);
    pthread_mutex_init(&L->lock, NULL);
    pthread_cond_init(&L->work, NULL);
    pthread_cond_init(&L->ready, NULL);
    tg_status status = copy_samples(L, manifest);
    if (status == TG_STATUS_OK) status = fixed_output_shape(L, manifest);
    if (status == TG_STATUS_OK) {
        L->per_image = L->channels * L->height * L->width;
        L->per_target = L->segmentation ? L->height * L->width : 1;
        status = allocate_ring(L);
    }
    if (status == TG_STATUS_OK && options->cache_bytes > 0) {
        L->cache = calloc((size_t)L->n, sizeof *L->cache);
        if (!L->cache) status = tg_error(TG_STATUS_NOMEM, "loader: no memory for the cache index");
    }
    if (status == TG_STATUS_OK) {
        L->workers = calloc((size_t)options->workers, sizeof *L->workers);
        if (!L->workers) status = tg_error(TG_STATUS_NOMEM, "loader: no memory for %d workers", options->workers);
    }
    for (int i = 0; status == TG_STATUS_OK && i < options->workers; i++) {
        worker *w = &L->workers[i];
        w->loader = L;
        if (L->segmentation && !(w->mask_out = tg_aligned_alloc(sizeof(int32_t) * (size_t)(L->height * L->width)))) {
            status = tg_error(TG_STATUS_NOMEM, "loader: no memory for a worker's mask");
            break;
        }
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            status = tg_error(TG_STATUS_NOMEM, "loader: cannot start worker thread %d of %d", i + 1, options->workers);
            break;
        }
        L->n_workers++;
    }
    if (status != TG_STATUS_OK) {
        tg_loader_destroy(L);
        return status;
    }
    *out = L;
    return TG_STATUS_OK;
}

void tg_loader_destroy(tg_loader *L)
{
    if (!L) return;
    pthread_mutex_lock(&L->lock);
    L->stopping = 1;
    pthread_cond_broadcast(&L->work);
    pthread_mutex_unlock(&L->lock);
    for (int i = 0; i < L->n_workers; i++) pthread_join(L->workers[i].thread, NULL);
    for (int i = 0; L->workers && i < L->options.workers; i++) {
        tg_aligned_free(L->workers[i].scratch);
        tg_aligned_free(L->workers[i].mask_out);
        free(L->workers[i].window.data);
    }
    for (int i = 0; L->slots && i < L->depth; i++) {
        tg_aligned_free(L->slots[i].images);
        tg_aligned_free(L->slots[i].targets);
        tg_aligned_free(L->slots[i].indices);
    }
    for (int64_t k = 0; k < L->n; k++) {
        free(L->files[k].image);
        free(L->files[k].mask);
        if (L->cache && L->cache[k].present) {
            tg_tensor_free(&L->cache[k].image);
            tg_tensor_free(&L->cache[k].mask);
        }
    }
    for (int64_t i = 0; i < L->n_skipped; i++) {
        free(L->skipped[i].path);
        free(L->skipped[i].message);
    }
    free(L->skipped);
    free(L->cache);
    free(L->workers);
    free(L->slots);
    free(L->files);
    free(L->labels);
    free(L->bad);
    free(L->order);
    pthread_cond_destroy(&L->work);
    pthread_cond_destroy(&L->ready);
    pthread_mutex_destroy(&L->lock);
    pthread_mutex_destroy(&L->take_lock);
    free(L);
}

int64_t tg_loader_size(const tg_loader *L) { return L->n; }

int64_t tg_loader_batch_size(const tg_loader *L) { return L->options.batch_size; }

void tg_loader_sample_shape(const tg_loader *L, int64_t shape[3], int *segmentation)
{
    shape[0] = L->channels, shape[1] = L->height, shape[2] = L->width;
    *segmentation = L->segmentation;
}

/* ---- epochs ---- */

/* Installs `order` (owned from now on); the caller holds take_lock. */
static void install_order(tg_loader *L, int64_t epoch, int64_t *order, int64_t n, int64_t first_batch)
{
    pthread_mutex_lock(&L->lock);
    L->generation++;
    L->active = 0;
    while (L->filling > 0) pthread_cond_wait(&L->ready, &L->lock);
    for (int i = 0; i < L->depth; i++) L->slots[i].state = SLOT_STATE_FREE;
    free(L->order);
    L->order = order;
    L->n_order = n;
    L->epoch = epoch;
    L->n_batches = (n + L->options.batch_size - 1) / L->options.batch_size;
    L->next_claim = L->next_take = first_batch < L->n_batches ? first_batch : L->n_batches;
    L->active = 1;
    pthread_cond_broadcast(&L->work);
    pthread_mutex_unlock(&L->lock);
}

static tg_status check_order(const tg_loader *L, const int64_t *order, int64_t n, int64_t first_batch)
{
    if (n < 0 || first_batch < 0)
        return tg_error(TG_STATUS_VALUE, "loader: an order of %lld samples from batch %lld", (long long)n,
                        (long long)first_batch);
    for (int64_t i = 0; i < n; i++)
        if (order[i] < 0 || order[i] >= L->n)
            return tg_error(TG_STATUS_VALUE, "loader: sample index %lld at position %lld is outside [0, %lld)",
                            (long long)order[i], (long long)i, (long long)L->n);
    return TG_STATUS_OK;
}

static tg_status start_copy_locked(tg_loader *L, int64_t epoch, const int64_t *order, int64_t n, int64_t first_batch)
{
    TG_TRY(check_order(L, order, n, first_batch));
    int64_t *copy = malloc(sizeof *copy * (size_t)(n ? n : 1)); /* [n] */
    if (!copy) return tg_error(TG_STATUS_NOMEM, "loader: no memory for an order of %lld", (long long)n);
    if (n) memcpy(copy, order, sizeof *copy * (size_t)n);
    install_order(L, epoch, copy, n, first_batch);
    return TG_STATUS_OK;
}

tg_status tg_loader_start_order(tg_loader *L, int64_t epoch, const int64_t *order, int64_t n, int64_t first_batch)
{
    pthread_mutex_lock(&L->take_lock);
    tg_status status = start_copy_locked(L, epoch, order, n, first_batch);
    pthread_mutex_unlock(&L->take_lock);
    return status;
}

tg_status tg_loader_start_epoch(tg_loader *L, int64_t epoch, int64_t *n_batches)
{
    tg_sampler_options sampler = {.kind = L->options.sampler, .seed = L->options.seed, .epoch = epoch};
    int64_t *order = NULL, count = 0;
    int labelled = !L->segmentation && L->n_classes > 0;
    TG_TRY(tg_sampler_epoch(labelled ? L->labels : NULL, L->n, labelled ? L->n_classes : 0, &sampler, &order, &count));
    pthread_mutex_lock(&L->take_lock);
    install_order(L, epoch, order, count, 0);
    *n_batches = L->n_batches;
    pthread_mutex_unlock(&L->take_lock);
    return TG_STATUS_OK;
}

/* The next batch into the caller's buffers; the caller holds take_lock. */
static tg_status next_locked(tg_loader *L, float *images, int64_t *targets, int64_t *indices, int64_t *count)
{
    *count = 0;
    pthread_mutex_lock(&L->lock);
    if (!L->active || L->next_take >= L->n_batches) {
        pthread_mutex_unlock(&L->lock);
        return TG_STATUS_OK;
    }
    int64_t b = L->next_take;
    slot *s = &L->slots[b % L->depth];
    while (!(s->state == SLOT_STATE_READY && s->number == b)) pthread_cond_wait(&L->ready, &L->lock);
    pthread_mutex_unlock(&L->lock);
    /* NOTE: a READY slot is touched by no worker until the consumer frees it */
    tg_status status = s->status;
    char message[sizeof s->message];
    if (status == TG_STATUS_OK) {
        memcpy(images, s->images, sizeof(float) * (size_t)(s->count * L->per_image));
        memcpy(targets, s->targets, sizeof(int64_t) * (size_t)(s->count * L->per_target));
        if (indices) memcpy(indices, s->indices, sizeof(int64_t) * (size_t)s->count);
        *count = s->count;
    } else {
        memcpy(message, s->message, sizeof message);
    }
    pthread_mutex_lock(&L->lock);
    s->state = SLOT_STATE_FREE;
    L->next_take++;
    pthread_cond_broadcast(&L->work);
    pthread_mutex_unlock(&L->lock);
    return status == TG_STATUS_OK ? TG_STATUS_OK : tg_error(status, "%s", message);
}

tg_status tg_loader_next(tg_loader *L, float *images, int64_t *targets, int64_t *indices, int64_t *count)
{
    pthread_mutex_lock(&L->take_lock);
    tg_status status = next_locked(L, images, targets, indices, count);
    pthread_mutex_unlock(&L->take_lock);
    return status;
}

static int compare_skips(const void *a, const void *b)
{
    int64_t x = ((const tg_loader_skip *)a)->index, y = ((const tg_loader_skip *)b)->index;
    return (x > y) - (x < y);
}

int64_t tg_loader_skipped(tg_loader *L, const tg_loader_skip **skipped)
{
    pthread_mutex_lock(&L->lock);
    if (L->n_skipped > 1) qsort(L->skipped, (size_t)L->n_skipped, sizeof *L->skipped, compare_skips);
    int64_t n = L->n_skipped;
    *skipped = L->skipped;
    pthread_mutex_unlock(&L->lock);
    return n;
}

void tg_loader_stats_get(tg_loader *L, tg_loader_stats *stats)
{
    pthread_mutex_lock(&L->lock);
    stats->ring_depth = L->depth;
    stats->batch_bytes = L->batch_bytes;
    stats->ring_bytes = L->batch_bytes * (size_t)L->depth;
    stats->peak_slots_in_use = L->peak_in_use;
    stats->cache_bytes_used = L->cache_used;
    stats->cache_hits = L->cache_hits;
    stats->decoded = L->decoded;
    pthread_mutex_unlock(&L->lock);
}

/* ---- the trainer's batch source ---- */

static tg_status source_begin_epoch(void *ctx, int64_t epoch, const int64_t *order, int64_t n, int64_t batch_size,
                                    int64_t first_batch)
{
    tg_loader *L = ctx;
    if (batch_size != L->options.batch_size)
        return tg_error(TG_STATUS_CONFIG, "loader: the trainer's batch size %lld is not the loader's %lld; give both "
                        "the same batch_size", (long long)batch_size, (long long)L->options.batch_size);
    return tg_loader_start_order(L, epoch, order, n, first_batch);
}

static tg_status source_fill(void *ctx, int64_t fill_epoch, const int64_t *indices, int64_t count, float *images,
                             int64_t *labels)
{
    tg_loader *L = ctx;
    (void)fill_epoch; /* NOTE: the loader's epoch is the one begin_epoch started */
    if (count > L->options.batch_size)
        return tg_error(TG_STATUS_VALUE, "loader: a fill of %lld samples; the loader's batches hold %lld",
                        (long long)count, (long long)L->options.batch_size);
    pthread_mutex_lock(&L->take_lock);
    pthread_mutex_lock(&L->lock);
    int64_t start = L->next_take * L->options.batch_size;
    int expected = L->active && L->next_take < L->n_batches && start + count <= L->n_order &&
                   (start + count == L->n_order || count == L->options.batch_size) &&
                   memcmp(L->order + start, indices, sizeof *indices * (size_t)count) == 0;
    int64_t epoch = L->epoch;
    pthread_mutex_unlock(&L->lock);
    tg_status status = expected ? TG_STATUS_OK : start_copy_locked(L, epoch, indices, count, 0);
    int64_t got = 0;
    if (status == TG_STATUS_OK) status = next_locked(L, images, labels, NULL, &got);
    pthread_mutex_unlock(&L->take_lock);
    if (status == TG_STATUS_OK && got != count)
        status = tg_error(TG_STATUS_INTERNAL, "loader: a fill of %lld samples made %lld", (long long)count, (long long)got);
    return status;
}

tg_status tg_loader_source(tg_loader *L, tg_batch_source *source)
{
    source->ctx = L;
    source->size = L->n;
    source->target_elements_per_sample = L->per_target;
    source->fill = source_fill;
    source->begin_epoch = source_begin_epoch;
    return TG_STATUS_OK;
}
