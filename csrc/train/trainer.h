/* trainer.h: the training loop. Python calls one epoch at a time (checkpoints,
 * reports and early stopping sit between epochs); every step of an epoch runs
 * here: batch assembly, forward, backward, clipping, the optimizer and the
 * schedule, with no Python and no allocation per step.
 *
 * Determinism: the sample order of an epoch depends only on (seed, epoch), the
 * dropout randomness only on (seed, step), kernels not on the thread count, so
 * a run resumed from a checkpoint continues bit-identically. */
#ifndef TG_TRAINER_H
#define TG_TRAINER_H

#include <stdint.h>

#include "../data/augment.h"
#include "../models/model.h"
#include "../optim/optim.h"
#include "../optim/schedule.h"

#define TG_MAX_CHANNELS 16

/* Where batches come from: fills `count` samples (by dataset index) of `epoch`
 * (the augmentation draw) as float32 images [count, C, H, W], already normalised,
 * and int64 targets [count, target_elements_per_sample]: one class label per sample
 * (1) or a mask of class indices per sample (H * W). begin_epoch, when not NULL, is called as a training
 * epoch starts (or resumes) with its order [n] and batch size, before the fills of
 * batches first_batch... of that order, so that a source can prepare them ahead
 * (the loader, csrc/data/loader.h). */
typedef struct tg_batch_source {
    void *ctx;
    int64_t size;                          /* samples in the dataset */
    int64_t target_elements_per_sample;    /* 1: class labels; H * W: masks; 0 reads as 1 */
    tg_status (*fill)(void *ctx, int64_t epoch, const int64_t *indices, int64_t count, float *images,
                      int64_t *labels);
    tg_status (*begin_epoch)(void *ctx, int64_t epoch, const int64_t *order, int64_t n, int64_t batch_size,
                             int64_t first_batch);
} tg_batch_source;

/* An in-memory labelled image set (e.g. IDX). Without a pipeline each image is
 * scaled (uint8 to [0, 1]) and normalised per channel; with one, the pipeline
 * (which must end at the model's size and normalise) makes each sample from
 * (seed, epoch, index). */
typedef struct tg_memory_source {
    const tg_tensor *images;       /* uint8 or float32 [N, C, H, W] */
    const tg_tensor *labels;       /* int64 [N] class labels or [N, H, W] masks */
    float mean[TG_MAX_CHANNELS];   /* after scaling uint8 to [0, 1] */
    float std[TG_MAX_CHANNELS];
    const tg_augment_pipeline *pipeline; /* or NULL */
    uint64_t seed;                 /* the pipeline's draws */
    void *scratch;                 /* [n_scratch * scratch_bytes], made by bind: one slot per thread */
    size_t scratch_bytes;
    int n_scratch;
    int64_t output_elements;       /* C * H * W of one pipeline output */
    tg_status *statuses;           /* [max_batch] per-item results of a fill */
} tg_memory_source;

/* A batch source over a tg_memory_source (which must outlive it), for batches of
 * up to `max_batch` samples. TG_STATUS_SHAPE or DTYPE naming the array when
 * images/labels do not fit; TG_STATUS_UNSUPPORTED for masks with a pipeline (the
 * pipeline augments images only here: stream augmented masks through the loader).
 * tg_memory_source_free releases what bind made. */
tg_status tg_memory_source_bind(tg_memory_source *memory, int64_t max_batch, tg_batch_source *source);
void tg_memory_source_free(tg_memory_source *memory);

typedef struct tg_train_options {
    int64_t epochs;
    int64_t batch_size;
    uint64_t seed;
    int shuffle;                 /* 1: a new permutation per epoch */
    double grad_clip_norm;       /* > 0: clip the global norm */
    double grad_clip_value;      /* > 0: clamp each gradient */
    int64_t accumulate;          /* optimizer step every this many batches (>= 1), on their mean gradient;
                                  * windows restart each epoch (its last may be shorter) */
    double ema_decay;            /* in (0, 1): keep an EMA of the weights; 0: none */
    int bf16;                    /* 1: bfloat16 mixed precision (below) */
} tg_train_options;

/* What Python polls from another thread while an epoch runs. */
typedef struct tg_train_progress {
    int64_t epoch;               /* 0-based, the epoch running */
    int64_t step_in_epoch;       /* batches done in this epoch */
    int64_t steps_per_epoch;
    int64_t global_step;         /* batches done in the run */
    int64_t samples_done;        /* samples done in this epoch */
    double last_loss, last_lr;
    double loss_sum;             /* of this epoch's batches */
} tg_train_progress;

/* One tensor the weight EMA averages: a float32 parameter or buffer (batchnorm running
 * statistics; not the constant loss.* buffers). */
typedef struct tg_ema_slot {
    tg_tensor *value;            /* [numel] the graph's live tensor */
    float *average;              /* [numel] its EMA */
    const char *name;
} tg_ema_slot;

typedef struct tg_trainer {
    tg_model *model;
    tg_optimizer optimizer;
    tg_schedule schedule;
    tg_train_options options;
    tg_batch_source train;
    int64_t *order;              /* [train.size] this epoch's sample order */
    float *batch_images;         /* [batch, C, H, W] */
    int64_t *batch_labels;       /* [batch, target_elements] labels or masks */
    int64_t target_elements;     /* per sample: 1 (labels [N]) or H * W (masks [N, H, W]) */
    int64_t *batch_indices;      /* [batch] evaluation's sample indices */
    float *step_losses;          /* [steps_per_epoch] loss of each batch of the current epoch */
    float *step_lrs;             /* [steps_per_epoch] learning rate of each batch */
    tg_train_progress progress;  /* written by the loop, read by pollers */
    int64_t optimizer_steps;     /* updates applied */
    tg_ema_slot *ema;            /* [n_ema] when options.ema_decay > 0, else NULL */
    int n_ema;
    float *ema_block;            /* one allocation holding every average */
    int ema_eval;                /* 1 (default with EMA): evaluation runs on the EMA weights */
} tg_trainer;

/* Prepares a trainer for `model` (which must outlive it). The model's target node
 * decides the target: labels [N] or masks [N, H, W]; TG_STATUS_SHAPE when the
 * source's target_elements_per_sample is not the model's. */
tg_status tg_trainer_init(tg_trainer *trainer, tg_model *model, const tg_optim_config *optim,
                          const tg_schedule_config *schedule, const tg_train_options *options,
                          const tg_batch_source *train);
void tg_trainer_free(tg_trainer *trainer);

/* bfloat16 mixed precision (options.bf16): the weights, gradients, optimizer state, loss
 * and norms stay float32; during training steps and evaluation every GEMM (conv, linear,
 * matmul, forward and backward) rounds its operands to bfloat16 and accumulates in
 * float32 (tg_gemm_set_bf16_operands), as PyTorch's bfloat16 autocast computes them.
 * NOTE: activations are stored as float32 (no memory saving). */

/* Runs the rest of the current epoch (from progress.step_in_epoch), then moves to
 * the next. TG_STATUS_INTERRUPTED at an optimizer-step boundary when interrupted (the state
 * is consistent and the epoch can be continued); TG_STATUS_VALUE naming the step
 * and the first parameter when the loss or a gradient is not finite (the update
 * of that step is not applied). */
tg_status tg_trainer_run_epoch(tg_trainer *trainer);

/* Logits [source.size, classes] (or [source.size, classes, H, W] for a segmentation
 * model) and the mean loss of `source` in eval mode; with an EMA and ema_eval set, on
 * the EMA weights (swapped in for the evaluation and back after it). */
tg_status tg_trainer_evaluate(tg_trainer *trainer, const tg_batch_source *source, float *logits, double *mean_loss);

/* Weight EMA (options.ema_decay = d > 0): before the first optimizer step every
 * average is set to its tensor's value (w_0), and after each optimizer step
 *     average += (1 - d) * (value - average)
 * (so a tensor that does not change keeps its average exactly). Swapping exchanges the
 * live tensors with their averages, element by element, so two swaps restore them. */
void tg_trainer_ema_reset(tg_trainer *trainer);
void tg_trainer_ema_swap(tg_trainer *trainer);

/* The permutation of [0, n) for (seed, epoch): splitmix64-keyed Fisher-Yates. */
void tg_epoch_order(uint64_t seed, int64_t epoch, int64_t n, int shuffle, int64_t *order);

#endif
