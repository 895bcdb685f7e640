/* split.c: train/val/test assignment of the samples a dataset's folders did not place.
 *
 * 1. Duplicates first: samples with the same content hash form a group that always
 *    lands in one split. A group with a member already placed by a split folder
 *    takes that split; folder splits that disagree inside a group cannot be fixed
 *    without re-splitting the user's folders, so they are reported as notes.
 * 2. Stratified: groups are split per class (the class of the group's first sample
 *    by path; segmentation and detection have one stratum).
 * 3. Counts per stratum, the rounding rule: with n samples, split s gets
 *    floor(n * ratio_s) and the samples left over go one each to the splits with the
 *    largest fractional parts (ties: train, then val, then test). So 10 samples at
 *    0.7/0.15/0.15 give 7/2/1, 5 give 3/1/1, 3 give 2/1/0.
 * 4. Order: the stratum's groups (in path order) are shuffled by Fisher-Yates with
 *    splitmix64 seeded by tg_rng_state(seed, class index); then train is filled to
 *    its count, then val, then test, group by group (a group larger than the room
 *    left overflows into its split; counts are exact when there are no duplicates).
 * It does not look at pixels; near-duplicates (resized copies) are not detected. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "hash.h"

typedef struct hash_index {
    uint64_t hash;
    int64_t index;
} hash_index;

static int compare_hash_index(const void *a, const void *b)
{
    const hash_index *x = a, *y = b;
    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Largest-remainder counts of n items over the ratios (see the rule above). */
static void split_counts(int64_t n, const double ratios[TG_SPLIT_COUNT], int64_t counts[TG_SPLIT_COUNT])
{
    double remainder[TG_SPLIT_COUNT];
    int64_t given = 0;
    for (int s = 0; s < TG_SPLIT_COUNT; s++) {
        /* NOTE: 1e-9 absorbs binary rounding (0.15 * 10 = 1.4999999999999998). */
        double exact = (double)n * ratios[s] + 1e-9;
        counts[s] = (int64_t)floor(exact);
        remainder[s] = exact - (double)counts[s];
        given += counts[s];
    }
    while (given < n) {
        int best = 0;
        for (int s = 1; s < TG_SPLIT_COUNT; s++)
            if (remainder[s] > remainder[best] + 1e-9) best = s;
        counts[best]++;
        remainder[best] = -1;
        given++;
    }
}

tg_status tg_dataset_assign_splits(tg_manifest *m, const double ratios[TG_SPLIT_COUNT], uint64_t seed)
{
    double sum = 0;
    for (int s = 0; s < TG_SPLIT_COUNT; s++) {
        if (!(ratios[s] >= 0 && ratios[s] <= 1))
            return tg_error(TG_STATUS_VALUE, "dataset split: ratio %g for %s is outside [0, 1]", ratios[s],
                            tg_split_name((tg_split)s));
        sum += ratios[s];
    }
    if (fabs(sum - 1) > 1e-6)
        return tg_error(TG_STATUS_VALUE, "dataset split: the ratios (%g, %g, %g) sum to %g; they must sum to 1",
                        ratios[0], ratios[1], ratios[2], sum);
    memcpy(m->split_ratios, ratios, sizeof m->split_ratios);
    m->split_seed = seed;
    int64_t n = m->n_samples;
    if (n == 0) return TG_STATUS_OK;

    tg_status status = TG_STATUS_OK;
    hash_index *order = malloc((size_t)n * sizeof *order);
    int64_t *group_of = malloc((size_t)n * sizeof *group_of);     /* [n] sample -> group */
    int64_t *group_first = malloc((size_t)n * sizeof *group_first); /* [groups] lowest sample index */
    int64_t *group_size = calloc((size_t)n, sizeof *group_size);    /* [groups] */
    int *group_split = malloc((size_t)n * sizeof *group_split);     /* [groups] */
    int64_t *stratum_groups = malloc((size_t)n * sizeof *stratum_groups); /* [groups of one stratum] */
    if (!order || !group_of || !group_first || !group_size || !group_split || !stratum_groups) {
        status = tg_error(TG_STATUS_NOMEM, "dataset split: no memory for %lld samples", (long long)n);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) order[i] = (hash_index){m->samples[i].content_hash, i};
    qsort(order, (size_t)n, sizeof *order, compare_hash_index);
    int64_t n_groups = 0;
    for (int64_t k = 0; k < n; k++) {
        if (k == 0 || order[k].hash != order[k - 1].hash) {
            group_first[n_groups] = order[k].index;
            group_split[n_groups] = TG_SPLIT_NONE;
            n_groups++;
        }
        int64_t g = n_groups - 1, i = order[k].index;
        group_of[i] = g;
        group_size[g]++;
        const tg_sample *s = &m->samples[i], *first = &m->samples[group_first[g]];
        char reason[600];
        if (i != group_first[g] && s->label != first->label) {
            snprintf(reason, sizeof reason, "same content as \"%.250s\" but labelled differently; it keeps that "
                     "sample's split (remove one copy)", first->path);
            if ((status = tg_manifest_add_note(m, s->path, reason)) != TG_STATUS_OK) goto done;
        }
        if (s->split != TG_SPLIT_NONE) {
            if (group_split[g] != TG_SPLIT_NONE && group_split[g] != (int)s->split) {
                snprintf(reason, sizeof reason, "same content as \"%.250s\" but the dataset's folders put them in "
                         "different splits (%s and %s); remove one copy to keep the test split clean", first->path,
                         tg_split_name((tg_split)group_split[g]), tg_split_name(s->split));
                if ((status = tg_manifest_add_note(m, s->path, reason)) != TG_STATUS_OK) goto done;
            } else {
                group_split[g] = s->split;
            }
        }
    }
    /* groups placed by a folder pull their unplaced duplicates along */
    for (int64_t i = 0; i < n; i++)
        if (m->samples[i].split == TG_SPLIT_NONE && group_split[group_of[i]] != TG_SPLIT_NONE)
            m->samples[i].split = (tg_split)group_split[group_of[i]];

    int32_t n_strata = m->task == TG_TASK_CLASSIFICATION && m->n_classes > 0 ? m->n_classes : 1;
    for (int32_t stratum = 0; stratum < n_strata; stratum++) {
        /* the stratum's unplaced groups, in order of their first sample (path order) */
        int64_t count = 0, members = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t g = group_of[i];
            if (group_first[g] != i || group_split[g] != TG_SPLIT_NONE) continue;
            if (n_strata > 1 && m->samples[i].label != stratum) continue;
            stratum_groups[count++] = g;
            members += group_size[g];
        }
        uint64_t rng = tg_rng_state(seed, (uint64_t)stratum);
        for (int64_t k = count - 1; k > 0; k--) {
            int64_t j = (int64_t)tg_rng_below(&rng, (uint64_t)k + 1);
            int64_t t = stratum_groups[k];
            stratum_groups[k] = stratum_groups[j];
            stratum_groups[j] = t;
        }
        int64_t target[TG_SPLIT_COUNT], filled[TG_SPLIT_COUNT] = {0};
        split_counts(members, ratios, target);
        int current = TG_SPLIT_TRAIN;
        for (int64_t k = 0; k < count; k++) {
            while (current < TG_SPLIT_TEST && filled[current] >= target[current]) current++;
            group_split[stratum_groups[k]] = current;
            filled[current] += group_size[stratum_groups[k]];
        }
    }
    for (int64_t i = 0; i < n; i++)
        if (m->samples[i].split == TG_SPLIT_NONE) m->samples[i].split = (tg_split)group_split[group_of[i]];

done:
    free(order);
    free(group_of);
    free(group_first);
    free(group_size);
    free(group_split);
    free(stratum_groups);
    return status;
}
