/* sampler.c: epoch orders (sequential, shuffled, class-balanced, oversampled).
 *
 * The generator of epoch e is splitmix64 from tg_rng_state(seed, e): shuffles are
 * Fisher-Yates from the last position down; a balanced draw takes a class uniformly
 * among the classes that have samples, then a sample of that class uniformly.
 * Oversampling repeats each sample of a class `factor` times (in index order) before
 * the shuffle, so a factor of 3 puts every such sample exactly 3 times in the epoch.
 * It keeps no state between epochs and does no I/O. */
#include "sampler.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

tg_status tg_sampler_epoch(const int32_t *labels, int64_t n, int32_t n_classes, const tg_sampler_options *options,
                           int64_t **indices, int64_t *count)
{
    *indices = NULL;
    *count = 0;
    if (n < 0) return tg_error(TG_STATUS_VALUE, "sampler: %lld samples", (long long)n);
    int needs_labels = options->kind == TG_SAMPLER_KIND_BALANCED || options->class_factors;
    if (needs_labels && (!labels || n_classes <= 0))
        return tg_error(TG_STATUS_VALUE, "sampler: class-balanced sampling and oversampling need class labels "
                        "(a classification manifest)");
    if (needs_labels) {
        for (int64_t i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] >= n_classes)
                return tg_error(TG_STATUS_VALUE, "sampler: label %d of sample %lld is outside [0, %d)", labels[i],
                                (long long)i, n_classes);
    }
    uint64_t rng = tg_rng_state(options->seed, (uint64_t)options->epoch);

    if (options->kind == TG_SAMPLER_KIND_BALANCED) {
        if (options->class_factors)
            return tg_error(TG_STATUS_VALUE, "sampler: the balanced sampler already equalises classes; "
                            "use oversampling factors with the shuffled sampler instead");
        int64_t length = options->length > 0 ? options->length : n;
        int64_t *class_count = calloc((size_t)n_classes, sizeof *class_count);   /* [n_classes] */
        int64_t *class_start = calloc((size_t)n_classes + 1, sizeof *class_start); /* [n_classes + 1] */
        int64_t *by_class = malloc((size_t)(n ? n : 1) * sizeof *by_class);       /* [n] grouped by class */
        int32_t *present = malloc((size_t)n_classes * sizeof *present);          /* [classes with samples] */
        int64_t *out = malloc((size_t)(length ? length : 1) * sizeof *out);       /* [length] */
        tg_status status = TG_STATUS_OK;
        if (!class_count || !class_start || !by_class || !present || !out) {
            status = tg_error(TG_STATUS_NOMEM, "sampler: no memory for an epoch of %lld", (long long)length);
            goto balanced_done;
        }
        for (int64_t i = 0; i < n; i++) class_count[labels[i]]++;
        int32_t n_present = 0;
        for (int32_t c = 0; c < n_classes; c++) {
            class_start[c + 1] = class_start[c] + class_count[c];
            if (class_count[c]) present[n_present++] = c;
        }
        if (n_present == 0) {
            status = tg_error(TG_STATUS_VALUE, "sampler: no samples to draw from (the split is empty)");
            goto balanced_done;
        }
        memset(class_count, 0, (size_t)n_classes * sizeof *class_count);
        for (int64_t i = 0; i < n; i++) by_class[class_start[labels[i]] + class_count[labels[i]]++] = i;
        for (int64_t k = 0; k < length; k++) {
            int32_t c = present[tg_rng_below(&rng, (uint64_t)n_present)];
            out[k] = by_class[class_start[c] + (int64_t)tg_rng_below(&rng, (uint64_t)class_count[c])];
        }
        *indices = out;
        *count = length;
        out = NULL;
    balanced_done:
        free(class_count);
        free(class_start);
        free(by_class);
        free(present);
        free(out);
        return status;
    }

    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t factor = 1;
        if (options->class_factors) {
            factor = options->class_factors[labels[i]];
            if (factor < 0)
                return tg_error(TG_STATUS_VALUE, "sampler: oversampling factor %lld for class %d is negative",
                                (long long)factor, labels[i]);
        }
        total += factor;
    }
    int64_t *out = malloc((size_t)(total ? total : 1) * sizeof *out); /* [total] */
    if (!out) return tg_error(TG_STATUS_NOMEM, "sampler: no memory for an epoch of %lld", (long long)total);
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t factor = options->class_factors ? options->class_factors[labels[i]] : 1;
        for (int64_t r = 0; r < factor; r++) out[k++] = i;
    }
    if (options->kind == TG_SAMPLER_KIND_SHUFFLED) {
        for (int64_t j = total - 1; j > 0; j--) {
            int64_t other = (int64_t)tg_rng_below(&rng, (uint64_t)j + 1);
            int64_t t = out[j];
            out[j] = out[other];
            out[other] = t;
        }
    }
    *indices = out;
    *count = total;
    return TG_STATUS_OK;
}
