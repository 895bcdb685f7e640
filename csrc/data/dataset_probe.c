/* dataset_probe.c: image sizes for the manifest, read from headers by tg_image_probe.
 *
 * Fills width/height/channels of every sample and checks that a segmentation mask
 * has its image's width and height; it never decodes pixels. tg_dataset_scan calls
 * it with drop_unreadable = 1: a sample whose image header cannot be read is left out
 * of the manifest and listed in `notes` with the probe's message; a sample whose mask
 * cannot be read or differs in size stays (the validator reports it) with a note. Called with 0 (on a manifest read from a file), the first such
 * sample stops the call with that message, which names the file. */
#include "../core/threads.h"
#include "dataset.h"
#include "image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct probe_job {
    tg_manifest *manifest;
    tg_status *status;      /* [n_samples] */
    int *no_memory;
} probe_job;

static char *join(const char *root, const char *relative)
{
    size_t a = strlen(root), b = strlen(relative);
    char *full = malloc(a + b + 2);
    if (!full) return NULL;
    memcpy(full, root, a);
    full[a] = '/';
    memcpy(full + a + 1, relative, b + 1);
    return full;
}

/* Probes one sample (and its mask); the message of a failure is recorded on this thread. */
static tg_status probe_sample(const char *root, tg_sample *s, int check_mask)
{
    char *full = join(root, s->path);
    if (!full) return tg_error(TG_STATUS_NOMEM, "dataset probe: no memory");
    tg_image_info info;
    tg_status status = tg_image_probe(full, &info);
    free(full);
    if (status != TG_STATUS_OK) return status;
    s->width = info.width;
    s->height = info.height;
    s->channels = info.channels;
    if (!s->mask || !check_mask) return TG_STATUS_OK;
    full = join(root, s->mask);
    if (!full) return tg_error(TG_STATUS_NOMEM, "dataset probe: no memory");
    tg_image_info mask;
    status = tg_image_probe(full, &mask);
    if (status == TG_STATUS_OK && (mask.width != info.width || mask.height != info.height))
        status = tg_error(TG_STATUS_DATASET, "%s: the mask is %lld x %lld but its image %s is %lld x %lld; a mask must "
                          "have its image's size", full, (long long)mask.width, (long long)mask.height, s->path,
                          (long long)info.width, (long long)info.height);
    free(full);
    return status;
}

static void probe_range(void *ctx, int64_t begin, int64_t end, int thread_index)
{
    probe_job *job = ctx;
    for (int64_t i = begin; i < end; i++) {
        job->status[i] = probe_sample(job->manifest->root, &job->manifest->samples[i], 1);
        if (job->status[i] == TG_STATUS_NOMEM) *job->no_memory = 1;
    }
}

static void free_sample(tg_sample *s)
{
    free(s->path);
    free(s->mask);
    free(s->annotation);
    free(s->boxes);
}

tg_status tg_dataset_probe_sizes(tg_manifest *manifest, int drop_unreadable)
{
    int64_t n = manifest->n_samples;
    tg_status *status = calloc((size_t)n + 1, sizeof *status); /* [n] */
    int no_memory = 0;
    if (!status) return tg_error(TG_STATUS_NOMEM, "dataset probe: no memory for %lld samples", (long long)n);
    probe_job job = {manifest, status, &no_memory};
    tg_parallel_for(n, 16, probe_range, &job);
    tg_status result = no_memory ? tg_error(TG_STATUS_NOMEM, "dataset probe: no memory") : TG_STATUS_OK;
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        tg_sample *s = &manifest->samples[i];
        if (result != TG_STATUS_OK || status[i] == TG_STATUS_OK) {
            manifest->samples[kept++] = *s;
            continue;
        }
        /* NOTE: the worker's message is thread-local; probe again here to read it */
        tg_status again = probe_sample(manifest->root, s, 1);
        if (again == TG_STATUS_OK || again == TG_STATUS_NOMEM || !drop_unreadable) {
            result = again;
            manifest->samples[kept++] = *s;
            continue;
        }
        char reason[1200];
        char message[1024];
        snprintf(message, sizeof message, "%s", tg_error_message());
        if (probe_sample(manifest->root, s, 0) == TG_STATUS_OK) {
            /* NOTE: the image is fine and only its mask is wrong: the sample stays so the
             * validator measures the mask; loading it for training fails with its reason */
            snprintf(reason, sizeof reason, "mask problem (sample kept for validation): %s", message);
            result = tg_manifest_add_note(manifest, s->mask, reason);
            manifest->samples[kept++] = *s;
            continue;
        }
        snprintf(reason, sizeof reason, "image header cannot be read (sample skipped): %s", message);
        result = tg_manifest_add_note(manifest, s->path, reason);
        free_sample(s);
    }
    manifest->n_samples = kept;
    free(status);
    return result;
}
