/* validate.c: reading and measuring every file of a dataset for the validator.
 *
 * One worker per thread takes batches of files from a shared counter; each file's
 * result goes to its own slot (files are independent, so results do not depend on
 * the thread count or the order). A file is read once into the worker's buffer,
 * then probed and its end marker checked (header mode) or decoded; from the
 * decoded pixels one gray image (0..255, float) gives every measurement.
 * Thresholds and verdicts are not here (trugrade/validator.py).
 * Not here either: hashing of file bytes (the scan's XXH64 is in the manifest). */
#include "validate.h"

#include <errno.h>
#include <fcntl.h>
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/tensor.h"
#include "../core/threads.h"

#define THUMB 32      /* side of the gray thumbnail the hash is taken from */
#define HASH_SIDE 8   /* low-frequency block of the DCT: 8 x 8 = 64 bits */
#define DARK_LEVEL 10.0
#define BRIGHT_LEVEL 245.0

static void record_failure(char *message, tg_status *status, tg_status failure)
{
    *status = failure;
    snprintf(message, TG_VALIDATE_MESSAGE_BYTES, "%s", tg_error_message());
}

/* ---- gray image ---- */

/* The sample (c, i) of a decoded image as a double. */
static double sample_at(const tg_tensor *t, int64_t c, int64_t i, int64_t plane)
{
    int64_t k = c * plane + i;
    switch (t->dtype) {
    case TG_DTYPE_U8: return ((const uint8_t *)t->data)[k];
    case TG_DTYPE_U16: return ((const uint16_t *)t->data)[k];
    default: return ((const float *)t->data)[k];
    }
}

/* Fills gray[h * w] with the luminance of `image` (C, H, W) scaled to 0..255.
 * NOTE: uint8 is taken as is; uint16 is scaled from 0..4095 when no sample is
 * above 4095 (12-bit medical and camera data stored in 16 bits would otherwise
 * all look black) and from 0..65535 otherwise; float32 within [0, 1] is scaled
 * by 255, any other float range is stretched from its min..max. */
static void to_gray(const tg_tensor *image, float *gray /* [H * W] */)
{
    int64_t channels = image->shape[0], plane = image->shape[1] * image->shape[2];
    if (image->dtype == TG_DTYPE_U8 && channels <= 2) { /* the common grey case: a plain copy */
        const uint8_t *restrict first = image->data; /* [H * W] */
        for (int64_t i = 0; i < plane; i++) gray[i] = (float)first[i];
        return;
    }
    if (image->dtype == TG_DTYPE_U8 && channels <= 4) { /* the common colour case, same sums as below */
        const uint8_t *restrict r = image->data, *restrict g = r + plane, *restrict b = g + plane; /* [H * W] each */
        for (int64_t i = 0; i < plane; i++) gray[i] = (float)(0.299 * r[i] + 0.587 * g[i] + 0.114 * b[i]);
        return;
    }
    for (int64_t i = 0; i < plane; i++) {
        double v;
        if (channels >= 3 && channels <= 4)
            v = 0.299 * sample_at(image, 0, i, plane) + 0.587 * sample_at(image, 1, i, plane) +
                0.114 * sample_at(image, 2, i, plane);
        else if (channels <= 2)
            v = sample_at(image, 0, i, plane);
        else {
            v = 0;
            for (int64_t c = 0; c < channels; c++) v += sample_at(image, c, i, plane);
            v /= (double)channels;
        }
        gray[i] = (float)v;
    }
    if (image->dtype == TG_DTYPE_U8) return;
    float lo = plane ? gray[0] : 0, hi = lo;
    for (int64_t i = 0; i < plane; i++) {
        lo = gray[i] < lo ? gray[i] : lo;
        hi = gray[i] > hi ? gray[i] : hi;
    }
    double offset = 0, scale;
    if (image->dtype == TG_DTYPE_U16) scale = hi <= 4095.0f ? 255.0 / 4095.0 : 255.0 / 65535.0;
    else if (lo >= 0.0f && hi <= 1.0f) scale = 255.0;
    else {
        offset = lo;
        scale = hi > lo ? 255.0 / ((double)hi - lo) : 0.0;
    }
    for (int64_t i = 0; i < plane; i++) gray[i] = (float)(((double)gray[i] - offset) * scale);
}

/* ---- measurements ---- */

static void exposure_and_entropy(const float *gray /* [n] */, int64_t n, tg_image_check *out)
{
    int64_t histogram[256] = {0};
    double sum = 0, sum_sq = 0;
    int64_t dark = 0, bright = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = gray[i];
        sum += v;
        sum_sq += v * v;
        dark += v <= DARK_LEVEL;
        bright += v >= BRIGHT_LEVEL;
        int bin = (int)(v + 0.5);
        histogram[bin < 0 ? 0 : bin > 255 ? 255 : bin]++;
    }
    double mean = sum / (double)n, variance = sum_sq / (double)n - mean * mean;
    out->mean = mean;
    out->std = variance > 0 ? sqrt(variance) : 0.0;
    out->dark_fraction = (double)dark / (double)n;
    out->bright_fraction = (double)bright / (double)n;
    double entropy = 0;
    for (int b = 0; b < 256; b++) {
        if (!histogram[b]) continue;
        double p = (double)histogram[b] / (double)n;
        entropy -= p * log2(p);
    }
    out->entropy = entropy;
}

static double laplacian_variance(const float *gray /* [h, w] */, int64_t h, int64_t w)
{
    if (h < 3 || w < 3) return 0.0;
    double sum = 0, sum_sq = 0;
    for (int64_t y = 1; y < h - 1; y++) {
        const float *row = gray + y * w, *up = row - w, *down = row + w;
        for (int64_t x = 1; x < w - 1; x++) {
            double l = (double)up[x] + down[x] + row[x - 1] + row[x + 1] - 4.0 * row[x];
            sum += l;
            sum_sq += l * l;
        }
    }
    double n = (double)((h - 2) * (w - 2)), mean = sum / n, variance = sum_sq / n - mean * mean;
    return variance > 0 ? variance : 0.0;
}

/* The mean of each of THUMB x THUMB regions (images smaller than THUMB repeat pixels). */
static void thumbnail(const float *gray /* [h, w] */, int64_t h, int64_t w, double *thumb /* [THUMB, THUMB] */)
{
    for (int ty = 0; ty < THUMB; ty++) {
        int64_t y0 = ty * h / THUMB, y1 = (ty + 1) * h / THUMB;
        if (y1 <= y0) y1 = y0 + 1;
        for (int tx = 0; tx < THUMB; tx++) {
            int64_t x0 = tx * w / THUMB, x1 = (tx + 1) * w / THUMB;
            if (x1 <= x0) x1 = x0 + 1;
            double sum = 0;
            for (int64_t y = y0; y < y1; y++)
                for (int64_t x = x0; x < x1; x++) sum += gray[y * w + x];
            thumb[ty * THUMB + tx] = sum / (double)((y1 - y0) * (x1 - x0));
        }
    }
}

/* basis[x * HASH_SIDE + u] = cos((2x + 1) u pi / 2N): the DCT-II of the hash's frequencies,
 * one row of HASH_SIDE frequencies per thumbnail position. */
static void dct_basis(double *basis /* [THUMB, HASH_SIDE] */)
{
    for (int x = 0; x < THUMB; x++)
        for (int u = 0; u < HASH_SIDE; u++) basis[x * HASH_SIDE + u] = cos((2.0 * x + 1.0) * u * M_PI / (2.0 * THUMB));
}

/* pHash: the 8 x 8 lowest frequencies of the thumbnail's DCT-II, one bit each:
 * above their median or not (the DC term included, as the usual pHash does).
 * NOTE: the inner loops run over the 8 frequencies (independent sums, contiguous,
 * vectorized) rather than along a row (one long chain of dependent additions). */
static void dct_coefficients_portable(const double *thumb /* [THUMB, THUMB] */,
                                      const double *basis /* [THUMB, HASH_SIDE] */,
                                      double *coefficients /* [HASH_SIDE, HASH_SIDE] */)
{
    double rows[THUMB][HASH_SIDE] = {{0}}; /* each thumbnail row against the column frequencies */
    for (int y = 0; y < THUMB; y++)
        for (int x = 0; x < THUMB; x++) {
            double t = thumb[y * THUMB + x];
            for (int v = 0; v < HASH_SIDE; v++) rows[y][v] += t * basis[x * HASH_SIDE + v];
        }
    for (int k = 0; k < HASH_SIDE * HASH_SIDE; k++) coefficients[k] = 0;
    for (int u = 0; u < HASH_SIDE; u++)
        for (int y = 0; y < THUMB; y++) {
            double b = basis[y * HASH_SIDE + u];
            for (int v = 0; v < HASH_SIDE; v++) coefficients[u * HASH_SIDE + v] += b * rows[y][v];
        }
}

/* The same sums, 8 frequencies per register. NOTE: multiply then add, never fused, so the
 * coefficients (and the hash) are the same bits as the portable version's. */
__attribute__((target("avx512f"))) static void dct_coefficients_avx512(const double *thumb /* [THUMB, THUMB] */,
                                                                       const double *basis /* [THUMB, HASH_SIDE] */,
                                                                       double *coefficients /* [8, 8] */)
{
    __m512d rows[THUMB];
    for (int y = 0; y < THUMB; y++) {
        __m512d sum = _mm512_setzero_pd();
        for (int x = 0; x < THUMB; x++)
            sum = _mm512_add_pd(sum, _mm512_mul_pd(_mm512_set1_pd(thumb[y * THUMB + x]),
                                                   _mm512_loadu_pd(basis + x * HASH_SIDE)));
        rows[y] = sum;
    }
    for (int u = 0; u < HASH_SIDE; u++) {
        __m512d sum = _mm512_setzero_pd();
        for (int y = 0; y < THUMB; y++)
            sum = _mm512_add_pd(sum, _mm512_mul_pd(_mm512_set1_pd(basis[y * HASH_SIDE + u]), rows[y]));
        _mm512_storeu_pd(coefficients + u * HASH_SIDE, sum);
    }
}

static uint64_t perceptual_hash(const double *thumb /* [THUMB, THUMB] */, const double *basis /* [THUMB, HASH_SIDE] */)
{
    double coefficients[HASH_SIDE * HASH_SIDE], sorted[HASH_SIDE * HASH_SIDE];
    if (HASH_SIDE == 8 && __builtin_cpu_supports("avx512f")) dct_coefficients_avx512(thumb, basis, coefficients);
    else dct_coefficients_portable(thumb, basis, coefficients);
    memcpy(sorted, coefficients, sizeof sorted);
    for (int k = 1; k < HASH_SIDE * HASH_SIDE; k++) { /* insertion sort: 64 values, no qsort call */
        double v = sorted[k];
        int j = k;
        for (; j > 0 && sorted[j - 1] > v; j--) sorted[j] = sorted[j - 1];
        sorted[j] = v;
    }
    double median = 0.5 * (sorted[31] + sorted[32]);
    uint64_t hash = 0;
    for (int k = 0; k < HASH_SIDE * HASH_SIDE; k++)
        if (coefficients[k] > median) hash |= UINT64_C(1) << k;
    return hash;
}

static void measure_pixels(const tg_tensor *image, float *gray, const double *basis, tg_image_check *out)
{
    int64_t h = image->shape[1], w = image->shape[2];
    to_gray(image, gray);
    exposure_and_entropy(gray, h * w, out);
    out->laplacian_variance = laplacian_variance(gray, h, w);
    double thumb[THUMB * THUMB];
    thumbnail(gray, h, w, thumb);
    out->phash = perceptual_hash(thumb, basis);
}

/* ---- reading files ---- */

/* A growing byte buffer a worker reuses for every file it reads. */
typedef struct file_buffer {
    uint8_t *data; /* [capacity] */
    size_t capacity;
} file_buffer;

/* Reads the whole file at `path` into buffer->data[0..*size). *size_bytes is the
 * file's size (-1 when it cannot be opened or stat'ed).
 * NOTE: read(), not mmap(): each mapping costs page faults, and with two threads
 * each munmap() also costs a TLB shootdown (an interrupt of the other core),
 * which kept validation from scaling with the thread count. */
static tg_status read_file(const char *path, file_buffer *buffer, size_t *size, int64_t *size_bytes)
{
    *size = 0;
    *size_bytes = -1;
    int fd;
    TG_TRY(tg_image_open_file(path, &fd, size_bytes));
    size_t want = (size_t)*size_bytes;
    if (want + 1 > buffer->capacity) {
        size_t capacity = want + 1 > 2 * buffer->capacity ? want + 1 : 2 * buffer->capacity;
        uint8_t *grown = realloc(buffer->data, capacity);
        if (!grown) {
            close(fd);
            return tg_error(TG_STATUS_NOMEM, "%s: no memory to read the file (%zu bytes)", path, want);
        }
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    size_t done = 0;
    while (done < want) {
        ssize_t got = read(fd, buffer->data + done, want - done);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            int err = errno;
            close(fd);
            return tg_error(TG_STATUS_IO, "%s: cannot read the image: %s", path, strerror(err));
        }
        if (got == 0) break; /* the file shrank while being read: what was read is judged */
        done += (size_t)got;
    }
    close(fd);
    *size = done;
    return TG_STATUS_OK;
}

/* ---- images ---- */

/* Whether `data` holds `needle` within its last `window` bytes. */
static int ends_with_within(const uint8_t *data, size_t size, const uint8_t *needle, size_t length, size_t window)
{
    size_t start = size > window ? size - window : 0;
    for (size_t i = size >= length ? size - length + 1 : 0; i-- > start;)
        if (memcmp(data + i, needle, length) == 0) return 1;
    return 0;
}

/* Header mode: a PNG or JPEG whose end marker is missing was cut short (an interrupted copy
 * or download), which the header alone does not show.
 * NOTE: the marker is looked for in the last TAIL_WINDOW bytes, not at the very end, so
 * bytes some writers append after the image (camera trailers) are no false alarm. A PNG's
 * IEND chunk and a JPEG's EOI marker cannot occur inside a cut file's remaining data: PNG
 * chunks carry their lengths and JPEG entropy-coded data escapes 0xFF bytes. */
#define TAIL_WINDOW 1024
#define HEADER_READ_BYTES (1 << 20) /* header mode reads files up to this size whole */

static tg_status check_ending(const char *path, tg_image_format format, const uint8_t *data, size_t size)
{
    static const uint8_t iend[8] = {'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82}, eoi[2] = {0xFF, 0xD9};
    if (format == TG_IMAGE_FORMAT_PNG && !ends_with_within(data, size, iend, sizeof iend, TAIL_WINDOW))
        return tg_error(TG_STATUS_DECODE, "%s: truncated: the file ends early (no PNG IEND chunk at its end, "
                        "%zu bytes)", path, size);
    if (format == TG_IMAGE_FORMAT_JPEG && !ends_with_within(data, size, eoi, sizeof eoi, TAIL_WINDOW))
        return tg_error(TG_STATUS_DECODE, "%s: truncated: the file ends early (no JPEG end-of-image marker at "
                        "its end, %zu bytes)", path, size);
    return TG_STATUS_OK;
}

/* What one worker reuses from file to file. */
typedef struct worker_scratch {
    file_buffer file;
    float *gray;        /* [gray_capacity] */
    int64_t gray_capacity;
} worker_scratch;

/* Header mode for a large file: its header through tg_image_probe (which maps the file
 * and touches only the header's pages) and its last TAIL_WINDOW bytes for the end
 * marker, instead of reading it all. */
static tg_status probe_large(const char *path, int64_t size_bytes, file_buffer *buffer, tg_image_info *info)
{
    TG_TRY(tg_image_probe(path, info));
    size_t tail = size_bytes < TAIL_WINDOW ? (size_t)size_bytes : TAIL_WINDOW;
    if (tail + 1 > buffer->capacity) {
        uint8_t *grown = realloc(buffer->data, tail + 1);
        if (!grown) return tg_error(TG_STATUS_NOMEM, "%s: no memory to read the file's end", path);
        buffer->data = grown;
        buffer->capacity = tail + 1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tg_error(TG_STATUS_IO, "%s: cannot open the image: %s", path, strerror(errno));
    ssize_t got = pread(fd, buffer->data, tail, (off_t)(size_bytes - (int64_t)tail));
    int err = errno;
    close(fd);
    if (got < 0) return tg_error(TG_STATUS_IO, "%s: cannot read the image's end: %s", path, strerror(err));
    return check_ending(path, info->format, buffer->data, (size_t)got);
}

static void check_one_image(const char *path, const tg_validate_options *options, const double *basis,
                            worker_scratch *scratch, tg_image_check *out)
{
    memset(out, 0, sizeof *out);
    tg_image_info info;
    struct stat st;
    tg_status status;
    if (options->mode == TG_VALIDATE_MODE_HEADER && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
        st.st_size > HEADER_READ_BYTES) {
        out->size_bytes = (int64_t)st.st_size;
        status = probe_large(path, out->size_bytes, &scratch->file, &info);
        if (status != TG_STATUS_OK && info.format == TG_IMAGE_FORMAT_UNKNOWN) {
            record_failure(out->message, &out->status, status);
            return;
        }
        out->format = info.format;
        out->extension_mismatch = info.extension_mismatch;
        out->width = info.width;
        out->height = info.height;
        out->channels = info.channels;
        out->dtype = info.dtype;
        if (status != TG_STATUS_OK) record_failure(out->message, &out->status, status);
        return;
    }
    size_t size;
    status = read_file(path, &scratch->file, &size, &out->size_bytes);
    if (status != TG_STATUS_OK) {
        record_failure(out->message, &out->status, status);
        return;
    }
    status = tg_image_probe_memory(scratch->file.data, size, path, &info);
    if (status != TG_STATUS_OK) {
        if (out->size_bytes == 0)
            tg_error(TG_STATUS_DECODE, "%s: the file is empty (0 bytes)", path);
        record_failure(out->message, &out->status, status);
        return;
    }
    out->format = info.format;
    out->extension_mismatch = info.extension_mismatch;
    out->width = info.width;
    out->height = info.height;
    out->channels = info.channels;
    out->dtype = info.dtype;
    if (options->mode == TG_VALIDATE_MODE_HEADER) {
        status = check_ending(path, info.format, scratch->file.data, size);
        if (status != TG_STATUS_OK) record_failure(out->message, &out->status, status);
        return;
    }
    if (info.count != 1) {
        record_failure(out->message, &out->status,
                       tg_error(TG_STATUS_UNSUPPORTED, "%s: holds %lld images (an IDX file); a dataset sample "
                                "must be one image", path, (long long)info.count));
        return;
    }
    tg_decode_options decode = {.max_pixels = options->max_pixels};
    tg_tensor image;
    status = tg_image_decode_memory(scratch->file.data, size, path, &decode, &image);
    if (status != TG_STATUS_OK) {
        record_failure(out->message, &out->status, status);
        return;
    }
    int64_t plane = image.shape[1] * image.shape[2];
    if (plane > scratch->gray_capacity) {
        float *grown = realloc(scratch->gray, (size_t)plane * sizeof *grown); /* [H, W] */
        if (grown) {
            scratch->gray = grown;
            scratch->gray_capacity = plane;
        }
    }
    if (plane <= 0 || plane > scratch->gray_capacity) {
        status = plane > 0 ? tg_error(TG_STATUS_NOMEM, "%s: no memory for a %lld x %lld gray image", path,
                                      (long long)image.shape[1], (long long)image.shape[2])
                           : tg_error(TG_STATUS_DECODE, "%s: the image has no pixels", path);
        record_failure(out->message, &out->status, status);
    } else {
        measure_pixels(&image, scratch->gray, basis, out);
    }
    tg_tensor_free(&image);
}

/* NOTE: files are handed out in small batches from a shared counter, not in one
 * contiguous chunk per thread: file costs vary (a 4K JPEG next to thumbnails) and
 * on a busy machine one thread may be descheduled for a while; the other keeps
 * taking work. Each file's result lands in its own slot, so the results are the
 * same for any thread count and any order. */
#define FILES_PER_BATCH 8

typedef struct files_job {
    const char *const *paths;
    int64_t n;
    const tg_validate_options *options;
    const double *basis;      /* [THUMB, HASH_SIDE] DCT basis (images) */
    tg_image_check *images;   /* [n] results when checking images, else NULL */
    tg_mask_check *masks;     /* [n] results when checking masks, else NULL */
    int64_t next;             /* the next file not yet handed out (atomic) */
    int interrupted;          /* atomic */
} files_job;

static void check_one_mask(const char *path, const tg_validate_options *options, worker_scratch *scratch,
                           tg_mask_check *out);

/* One item per worker: each takes batches of files until none are left. */
static void files_worker(void *ctx, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    files_job *job = ctx;
    worker_scratch scratch = {{NULL, 0}, NULL, 0};
    for (int64_t w = begin; w < end; w++) {
        for (;;) {
            int64_t first = __atomic_fetch_add(&job->next, FILES_PER_BATCH, __ATOMIC_RELAXED);
            if (first >= job->n) break;
            if (tg_interrupt_pending()) {
                __atomic_store_n(&job->interrupted, 1, __ATOMIC_RELAXED);
                break;
            }
            int64_t last = first + FILES_PER_BATCH < job->n ? first + FILES_PER_BATCH : job->n;
            for (int64_t i = first; i < last; i++) {
                if (job->images) check_one_image(job->paths[i], job->options, job->basis, &scratch, &job->images[i]);
                else check_one_mask(job->paths[i], job->options, &scratch, &job->masks[i]);
            }
        }
    }
    free(scratch.file.data);
    free(scratch.gray);
}

static int64_t worker_count(int64_t n)
{
    int64_t batches = (n + FILES_PER_BATCH - 1) / FILES_PER_BATCH, threads = tg_threads_count();
    return batches < threads ? batches : threads;
}

static tg_status check_arguments(const char *what, const void *paths, int64_t n, const tg_validate_options *options,
                                 const void *out)
{
    if (n < 0 || (n > 0 && (!paths || !out)))
        return tg_error(TG_STATUS_VALUE, "%s: %lld paths with %s; pass n >= 0 and both arrays", what, (long long)n,
                        paths ? "no output array" : "no path array");
    if (!options || options->max_pixels < 0)
        return tg_error(TG_STATUS_VALUE, "%s: max_pixels must be >= 0 (0: the default), got %lld", what,
                        options ? (long long)options->max_pixels : -1LL);
    if (options->mode != TG_VALIDATE_MODE_HEADER && options->mode != TG_VALIDATE_MODE_DECODE)
        return tg_error(TG_STATUS_VALUE, "%s: mode %d is not header (0) or decode (1)", what, (int)options->mode);
    return TG_STATUS_OK;
}

tg_status tg_validate_images(const char *const *paths, int64_t n, const tg_validate_options *options,
                             tg_image_check *out)
{
    TG_TRY(check_arguments("validate images", paths, n, options, out));
    double basis[THUMB * HASH_SIDE]; /* [THUMB, HASH_SIDE] */
    dct_basis(basis);
    files_job job = {paths, n, options, basis, out, NULL, 0, 0};
    tg_parallel_for(worker_count(n), 1, files_worker, &job);
    if (job.interrupted) return tg_error(TG_STATUS_INTERRUPTED, "validate images: interrupted");
    return TG_STATUS_OK;
}

/* ---- masks ---- */

static void check_one_mask(const char *path, const tg_validate_options *options, worker_scratch *scratch,
                           tg_mask_check *out)
{
    memset(out, 0, sizeof *out);
    size_t size;
    int64_t size_bytes;
    tg_status status = read_file(path, &scratch->file, &size, &size_bytes);
    tg_decode_options decode = {.max_pixels = options->max_pixels};
    tg_tensor mask;
    if (status == TG_STATUS_OK) status = tg_image_decode_memory(scratch->file.data, size, path, &decode, &mask);
    if (status != TG_STATUS_OK) {
        record_failure(out->message, &out->status, status);
        return;
    }
    out->channels = mask.shape[0];
    out->height = mask.shape[1];
    out->width = mask.shape[2];
    int64_t plane = out->height * out->width; /* only the first channel holds class indices */
    for (int64_t i = 0; i < plane; i++) {
        double v = sample_at(&mask, 0, i, plane);
        int64_t value = (int64_t)v;
        if (v < 0 || v != (double)value || value >= TG_VALIDATE_MASK_VALUES) {
            out->above++;
            if (v > (double)out->max_value) out->max_value = (int64_t)ceil(v);
            continue;
        }
        out->histogram[value]++;
        if (value > out->max_value) out->max_value = value;
    }
    tg_tensor_free(&mask);
}

tg_status tg_validate_masks(const char *const *paths, int64_t n, const tg_validate_options *options,
                            tg_mask_check *out)
{
    TG_TRY(check_arguments("validate masks", paths, n, options, out));
    files_job job = {paths, n, options, NULL, NULL, out, 0, 0};
    tg_parallel_for(worker_count(n), 1, files_worker, &job);
    if (job.interrupted) return tg_error(TG_STATUS_INTERRUPTED, "validate masks: interrupted");
    return TG_STATUS_OK;
}

/* ---- near-duplicate pairs ---- */

typedef struct pairs_job {
    const uint64_t *hashes;   /* [n] */
    int64_t n;
    int max_distance;
    int64_t *counts;          /* [n] pairs (i, j > i) of row i */
    const int64_t *offsets;   /* [n] first pair of row i in pairs; NULL in the counting pass */
    int64_t *pairs;           /* [total, 3] */
    int avx512;               /* the CPU has AVX-512 VPOPCNTQ */
} pairs_job;

/* NOTE: without -mpopcnt __builtin_popcountll is a libgcc call (about 15 ns); the
 * POPCNT instruction is used behind a runtime check, with the portable count as fallback. */
__attribute__((target("popcnt"))) static int popcount_hw(uint64_t x) { return __builtin_popcountll(x); }

static int popcount_portable(uint64_t x)
{
    x = x - ((x >> 1) & UINT64_C(0x5555555555555555));
    x = (x & UINT64_C(0x3333333333333333)) + ((x >> 2) & UINT64_C(0x3333333333333333));
    x = (x + (x >> 4)) & UINT64_C(0x0f0f0f0f0f0f0f0f);
    return (int)((x * UINT64_C(0x0101010101010101)) >> 56);
}

/* Pairs (i, j) for j in [j, n) within max_distance, written from out[3 * found] on (out NULL:
 * counted only); returns found plus the pairs this call found. */
__attribute__((target("popcnt"))) static int64_t row_pairs_hw(const uint64_t *hashes, int64_t i, int64_t j, int64_t n,
                                                               int max_distance, int64_t *out /* [?, 3] */,
                                                               int64_t found)
{
    for (; j < n; j++) {
        int d = popcount_hw(hashes[i] ^ hashes[j]);
        if (d > max_distance) continue;
        if (out) {
            out[3 * found] = i;
            out[3 * found + 1] = j;
            out[3 * found + 2] = d;
        }
        found++;
    }
    return found;
}

/* NOTE: 8 hashes per step with VPOPCNTQ (Ice Lake and later); near pairs are rare, so
 * a step with no hit costs one compare, and the hits are taken in order of j. */
__attribute__((target("avx512f,avx512vpopcntdq,popcnt"))) static int64_t
row_pairs_avx512(const uint64_t *hashes, int64_t i, int64_t n, int max_distance, int64_t *out /* [?, 3] */)
{
    int64_t found = 0, j = i + 1;
    __m512i h = _mm512_set1_epi64((long long)hashes[i]), limit = _mm512_set1_epi64(max_distance);
    for (; j + 8 <= n; j += 8) {
        __m512i d = _mm512_popcnt_epi64(_mm512_xor_si512(h, _mm512_loadu_si512(hashes + j)));
        __mmask8 near = _mm512_cmple_epi64_mask(d, limit);
        while (near) {
            int k = __builtin_ctz(near);
            near &= (__mmask8)(near - 1);
            if (out) {
                out[3 * found] = i;
                out[3 * found + 1] = j + k;
                out[3 * found + 2] = __builtin_popcountll(hashes[i] ^ hashes[j + k]);
            }
            found++;
        }
    }
    return row_pairs_hw(hashes, i, j, n, max_distance, out, found);
}

static void pairs_of_row(pairs_job *job, int64_t i)
{
    if (job->avx512) {
        int64_t *out = job->offsets ? job->pairs + 3 * job->offsets[i] : NULL;
        job->counts[i] = row_pairs_avx512(job->hashes, i, job->n, job->max_distance, out);
        return;
    }
    if (__builtin_cpu_supports("popcnt")) {
        int64_t *out = job->offsets ? job->pairs + 3 * job->offsets[i] : NULL;
        job->counts[i] = row_pairs_hw(job->hashes, i, i + 1, job->n, job->max_distance, out, 0);
        return;
    }
    uint64_t h = job->hashes[i];
    int64_t found = 0;
    for (int64_t j = i + 1; j < job->n; j++) {
        int d = popcount_portable(h ^ job->hashes[j]);
        if (d > job->max_distance) continue;
        if (job->offsets) {
            int64_t *p = job->pairs + 3 * (job->offsets[i] + found);
            p[0] = i;
            p[1] = j;
            p[2] = d;
        }
        found++;
    }
    job->counts[i] = found;
}

/* NOTE: item k does rows k and n-1-k, so every item compares n-1 hashes and the
 * contiguous chunks of tg_parallel_for carry equal work. */
static void pairs_range(void *ctx, int64_t begin, int64_t end, int thread_index)
{
    pairs_job *job = ctx;
    for (int64_t k = begin; k < end; k++) {
        pairs_of_row(job, k);
        if (job->n - 1 - k != k) pairs_of_row(job, job->n - 1 - k);
    }
}

tg_status tg_validate_near_pairs(const uint64_t *hashes, int64_t n, int max_distance, int64_t **pairs,
                                 int64_t *count)
{
    *pairs = NULL;
    *count = 0;
    if (n < 0 || (n > 0 && !hashes))
        return tg_error(TG_STATUS_VALUE, "near duplicates: %lld hashes and %s array", (long long)n,
                        hashes ? "a" : "no");
    if (max_distance < 0 || max_distance > 64)
        return tg_error(TG_STATUS_VALUE, "near duplicates: max_distance must be 0..64 bits, got %d", max_distance);
    int64_t *counts = calloc((size_t)n + 1, sizeof *counts);  /* [n] */
    int64_t *offsets = calloc((size_t)n + 1, sizeof *offsets); /* [n] */
    if (!counts || !offsets) {
        free(counts);
        free(offsets);
        return tg_error(TG_STATUS_NOMEM, "near duplicates: no memory for %lld hashes", (long long)n);
    }
    pairs_job job = {hashes, n, max_distance, counts, NULL, NULL,
                     __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq")};
    tg_parallel_for((n + 1) / 2, 16, pairs_range, &job);
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        offsets[i] = total;
        total += counts[i];
    }
    int64_t *out = malloc((size_t)(3 * total + 1) * sizeof *out); /* [total, 3] */
    if (!out) {
        free(counts);
        free(offsets);
        return tg_error(TG_STATUS_NOMEM, "near duplicates: no memory for %lld pairs; lower max_distance",
                        (long long)total);
    }
    job.offsets = offsets;
    job.pairs = out;
    tg_parallel_for((n + 1) / 2, 16, pairs_range, &job);
    free(counts);
    free(offsets);
    *pairs = out;
    *count = total;
    return TG_STATUS_OK;
}
