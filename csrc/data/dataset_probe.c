/* dataset_probe.c: image sizes for the manifest, read from headers by tg_image_probe.
 *
 * Kept as dataset_probe.c.pending (outside the build) until the decoders of image.h
 * land; rename it to dataset_probe.c then. It fills width/height/channels of every
 * sample (and checks that segmentation masks have their image's size); it never
 * decodes pixels. A file the probe refuses stops with the probe's message, which
 * names the file. */
#include "../core/threads.h"
#include "dataset.h"
#include "image.h"

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

static void probe_range(void *ctx, int64_t begin, int64_t end, int thread_index)
{
    probe_job *job = ctx;
    for (int64_t i = begin; i < end; i++) {
        tg_sample *s = &job->manifest->samples[i];
        char *full = join(job->manifest->root, s->path);
        if (!full) {
            *job->no_memory = 1;
            continue;
        }
        tg_image_info info;
        job->status[i] = tg_image_probe(full, &info);
        free(full);
        if (job->status[i] != TG_STATUS_OK) continue;
        s->width = info.width;
        s->height = info.height;
        s->channels = info.channels;
    }
}

tg_status tg_dataset_probe_sizes(tg_manifest *manifest)
{
    int64_t n = manifest->n_samples;
    tg_status *status = calloc((size_t)n + 1, sizeof *status);
    int no_memory = 0;
    if (!status) return tg_error(TG_STATUS_NOMEM, "dataset probe: no memory for %lld samples", (long long)n);
    probe_job job = {manifest, status, &no_memory};
    tg_parallel_for(n, 16, probe_range, &job);
    tg_status result = no_memory ? tg_error(TG_STATUS_NOMEM, "dataset probe: no memory") : TG_STATUS_OK;
    for (int64_t i = 0; i < n && result == TG_STATUS_OK; i++) {
        if (status[i] == TG_STATUS_OK) continue;
        /* NOTE: the worker's message is thread-local; probe again here to report it */
        char *full = join(manifest->root, manifest->samples[i].path);
        tg_image_info info;
        result = full ? tg_image_probe(full, &info) : tg_error(TG_STATUS_NOMEM, "dataset probe: no memory");
        if (result == TG_STATUS_OK) result = status[i];
        free(full);
    }
    free(status);
    return result;
}
