/* loader.h: batches of decoded, augmented samples of a manifest, made ahead by worker threads.
 *
 * A loader holds one split of a manifest (classification: image + class label;
 * segmentation: image + mask, the mask augmented with the image's draws), a validated
 * augmentation pipeline that ends at a fixed size, and `workers` threads of its own.
 * An epoch is an order of samples (from the sampler of sampler.h, or given by a
 * trainer); the workers decode and augment its batches into a ring of `ring_depth`
 * batch slots while the consumer (the training step, or Python) takes them in order.
 *
 * Determinism: sample k of the split is augmented with the draws of (seed, epoch, k)
 * and a batch is a pure function of (seed, epoch, its batch number): which worker made
 * it, how many there are and when they ran change nothing, byte for byte.
 * NOTE: the key is the sample's index, not its position in the epoch, so a sample that
 * appears twice in one epoch (oversampling, the balanced sampler) gets the same
 * augmentation both times; the next epoch draws anew.
 *
 * Memory, declared up front (tg_loader_stats): the ring, ring_depth x (images
 * [batch, C, H, W] float32 + targets int64 + indices int64); per worker, the decoded
 * image (or the JPEG window below), its mask and the augmentation scratch of the
 * largest image seen so far; and
 * the cache, at most cache_bytes of decoded images (first come, first kept: an image is
 * kept while the budget has room and never evicted, so with a dataset larger than the
 * budget the same images stay cached every epoch; results never depend on it).
 *
 * JPEG windows: without a cache, a classification sample whose file is a JPEG has
 * only the window its draws read decoded (tg_image_read_window: rows above it are
 * entropy-decoded and skipped, rows below it never read, columns outside it not
 * transformed), and augmented from there. The pixels are a whole decode's, so batches
 * are the same bytes as through the cache. NOTE: damage below a sample's window goes
 * unseen in that epoch (a file cut short is still caught: it has no end marker).
 *
 * Bad files: a sample whose image or mask cannot be read or decoded (or has a channel
 * count that cannot be converted) is, with TG_BAD_FILE_POLICY_SKIP, replaced by the next
 * sample of the epoch's order that decodes (wrapping around), and recorded once with
 * its message (tg_loader_skipped, sorted by index); with TG_BAD_FILE_POLICY_STOP the
 * batch fails with the decoder's error, which names the file. Other failures (an
 * augmentation that does not fit the image, no memory) always stop.
 *
 * Threads: the workers are plain pthreads started by tg_loader_create and joined by
 * tg_loader_destroy; they never call tg_parallel_for, so they do not touch the kernel
 * pool of threads.h, which the training step keeps to itself. The two share the CPUs
 * through the OS scheduler: a worker sleeps when the ring is full, so the loader uses
 * CPU only when the step consumes batches. On a machine with few cores, workers plus
 * kernel threads above the core count trade some step speed for overlap.
 * No processes are forked.
 *
 * Not here: decoding (image.h), augmentation (augment.h), the epoch order (sampler.h). */
#ifndef TG_LOADER_H
#define TG_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../train/trainer.h"
#include "augment.h"
#include "dataset.h"
#include "sampler.h"

#define TG_LOADER_MAX_WORKERS 64

typedef enum tg_bad_file_policy {
    TG_BAD_FILE_POLICY_SKIP = 0,   /* replace by the next good sample in the order; record it */
    TG_BAD_FILE_POLICY_STOP,       /* the batch fails with the decoder's error */
} tg_bad_file_policy;

typedef struct tg_loader_options {
    tg_split split;                /* the samples of this split; TG_SPLIT_NONE: all */
    int64_t batch_size;            /* >= 1 */
    int workers;                   /* 1..TG_LOADER_MAX_WORKERS threads */
    int ring_depth;                /* batches made ahead; 0: 2 x workers */
    tg_sampler_kind sampler;       /* the order of tg_loader_start_epoch */
    uint64_t seed;                 /* sampler and augmentation */
    int64_t cache_bytes;           /* decoded images kept in memory; 0: no cache */
    tg_bad_file_policy on_bad_file;
    int64_t channels;              /* output channels; 0: the first sample's. 1 -> 3 repeats the
                                      plane, 4 -> 3 and 2 -> 1 drop alpha; others are bad files */
} tg_loader_options;

typedef struct tg_loader tg_loader;

/* A file the skip policy left out. */
typedef struct tg_loader_skip {
    int64_t index;                 /* sample index in the loader's split */
    char *path;                    /* the file at fault (absolute) */
    char *message;                 /* the decoder's error */
} tg_loader_skip;

typedef struct tg_loader_stats {
    int ring_depth;
    size_t batch_bytes;            /* one slot: images + targets + indices */
    size_t ring_bytes;             /* ring_depth x batch_bytes, allocated by tg_loader_create */
    int peak_slots_in_use;         /* most slots filling or ready at once (<= ring_depth) */
    int64_t cache_bytes_used;
    int64_t cache_hits;
    int64_t decoded;               /* files decoded (images and masks) */
} tg_loader_stats;

/* Copies what it needs of `manifest` and `pipeline` (neither must outlive it), checks
 * that the pipeline ends at a fixed size (TG_STATUS_CONFIG naming the sizes otherwise)
 * and starts the workers. TG_STATUS_DATASET for an empty split or a detection manifest. */
tg_status tg_loader_create(const tg_manifest *manifest, const tg_augment_pipeline *pipeline,
                           const tg_loader_options *options, tg_loader **out);

/* Stops and joins the workers and frees everything (NULL is fine). */
void tg_loader_destroy(tg_loader *loader);

/* Samples in the split; samples in a full batch. */
int64_t tg_loader_size(const tg_loader *loader);
int64_t tg_loader_batch_size(const tg_loader *loader);

/* Output image shape (C, H, W) and whether targets are masks [H, W] (1) or labels (0). */
void tg_loader_sample_shape(const tg_loader *loader, int64_t shape[3], int *segmentation);

/* Starts epoch `epoch` in the sampler's order (any epoch in progress is dropped) and
 * gives the number of batches in *n_batches (the last may be short). */
tg_status tg_loader_start_epoch(tg_loader *loader, int64_t epoch, int64_t *n_batches);

/* Starts an epoch in a given order of [n] sample indices, from batch first_batch on. */
tg_status tg_loader_start_order(tg_loader *loader, int64_t epoch, const int64_t *order, int64_t n,
                                int64_t first_batch);

/* Copies the next batch of the epoch into images [batch, C, H, W], targets ([batch] labels
 * or [batch, H, W] masks) and indices [batch] (may be NULL: the samples actually used)
 * and sets *count; *count = 0 once the epoch is done. Waits for the workers as needed. */
tg_status tg_loader_next(tg_loader *loader, float *images, int64_t *targets, int64_t *indices, int64_t *count);

/* The files skipped so far, sorted by index; valid until the next call on the loader. */
int64_t tg_loader_skipped(tg_loader *loader, const tg_loader_skip **skipped);

void tg_loader_stats_get(tg_loader *loader, tg_loader_stats *stats);

/* The loader as a trainer's batch source: class labels (1 target per sample) or masks
 * (H * W targets per sample, target_elements_per_sample). begin_epoch takes the trainer's order and batch size (which must be the
 * loader's) so the workers run ahead of the training step; a fill whose indices are not
 * the next batch of that order (evaluation) is made as a batch of its own. */
tg_status tg_loader_source(tg_loader *loader, tg_batch_source *source);

#endif
