/* sampler.h: the order in which an epoch visits a dataset's samples.
 *
 * An epoch's order depends only on (seed, epoch) and the labels: the same pair
 * gives the same indices on any machine and thread count. Indices are positions in
 * the `labels` array the caller passes (one split of a manifest, usually train). */
#ifndef TG_SAMPLER_H
#define TG_SAMPLER_H

#include <stdint.h>

#include "../core/status.h"

typedef enum tg_sampler_kind {
    TG_SAMPLER_KIND_SEQUENTIAL = 0, /* 0, 1, ..., n-1 (each repeated by its class factor) */
    TG_SAMPLER_KIND_SHUFFLED,       /* a permutation (of the repeated list when factors are given) */
    TG_SAMPLER_KIND_BALANCED,       /* draws with replacement: a class uniformly, then a sample of it */
} tg_sampler_kind;

typedef struct tg_sampler_options {
    tg_sampler_kind kind;
    uint64_t seed;
    int64_t epoch;
    int64_t length;                 /* BALANCED: draws per epoch (0: the number of samples) */
    const int32_t *class_factors;   /* SEQUENTIAL/SHUFFLED: [n_classes] times each sample of
                                       a class appears per epoch (0 drops it); NULL: 1 each */
} tg_sampler_options;

/* Writes the epoch's order into a new array *indices ([*count], free() it).
 * labels: [n] class indices in [0, n_classes) (may be NULL for SEQUENTIAL/SHUFFLED
 * without factors). TG_STATUS_VALUE for a label out of range, a negative factor, or a
 * balanced sampler without labels. */
tg_status tg_sampler_epoch(const int32_t *labels, int64_t n, int32_t n_classes, const tg_sampler_options *options,
                           int64_t **indices, int64_t *count);

#endif
