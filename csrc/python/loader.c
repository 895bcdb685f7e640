/* loader.c (binding): the batch loader from Python. A loader lives in a PyCapsule; the
 * manifest crosses as JSON text (parsed and checked by the C core), the pipeline as
 * trugrade.augment's capsule. Waiting for batches runs without the GIL; each batch is
 * copied into new arrays that Python owns. No loading logic lives here. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "../data/loader.h"
#include "binding.h"

#define LOADER_CAPSULE "trugrade.data.loader"
#define PIPELINE_CAPSULE "trugrade.augment.pipeline"

static void loader_capsule_free(PyObject *capsule)
{
    tg_loader *loader = PyCapsule_GetPointer(capsule, LOADER_CAPSULE);
    Py_BEGIN_ALLOW_THREADS
    tg_loader_destroy(loader);
    Py_END_ALLOW_THREADS
}

tg_loader *tg_py_loader_of(PyObject *capsule)
{
    return PyCapsule_GetPointer(capsule, LOADER_CAPSULE);
}

static int parse_name(const char *name, const char *const *names, int n, const char *what, int *out)
{
    for (int i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = i;
            return 0;
        }
    tg_error(TG_STATUS_VALUE, "loader: %s \"%s\" is not one of the accepted names", what, name);
    tg_py_raise(TG_STATUS_VALUE);
    return -1;
}

PyObject *tg_py_loader_create(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"manifest_json", "pipeline", "split", "batch_size", "workers", "ring_depth", "sampler",
                               "seed", "cache_bytes", "on_bad_file", "channels", NULL};
    const char *json, *split = "train", *sampler = "shuffled", *on_bad_file = "skip";
    Py_ssize_t json_length;
    PyObject *pipeline_obj;
    long long batch_size, cache_bytes = 0, channels = 0;
    int workers = 2, ring_depth = 0;
    unsigned long long seed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s#OsL|iisKLsL", keywords, &json, &json_length, &pipeline_obj,
                                     &split, &batch_size, &workers, &ring_depth, &sampler, &seed, &cache_bytes,
                                     &on_bad_file, &channels))
        return NULL;
    tg_augment_pipeline empty, *pipeline = &empty;
    tg_augment_pipeline_init(&empty);
    if (pipeline_obj != Py_None && !(pipeline = PyCapsule_GetPointer(pipeline_obj, PIPELINE_CAPSULE))) return NULL;
    static const char *const splits[] = {"train", "val", "test", "all"};
    static const char *const samplers[] = {"sequential", "shuffled", "balanced"};
    static const char *const policies[] = {"skip", "stop"};
    int split_index, sampler_index, policy_index;
    if (parse_name(split, splits, 4, "split", &split_index) != 0 ||
        parse_name(sampler, samplers, 3, "sampler", &sampler_index) != 0 ||
        parse_name(on_bad_file, policies, 2, "on_bad_file", &policy_index) != 0)
        return NULL;
    tg_loader_options options = {
        .split = split_index == 3 ? TG_SPLIT_NONE : (tg_split)split_index, .batch_size = batch_size,
        .workers = workers, .ring_depth = ring_depth, .sampler = (tg_sampler_kind)sampler_index, .seed = seed,
        .cache_bytes = cache_bytes, .on_bad_file = (tg_bad_file_policy)policy_index, .channels = channels};
    tg_manifest manifest;
    tg_loader *loader = NULL;
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_manifest_parse(json, (size_t)json_length, "manifest", &manifest);
    if (status == TG_STATUS_OK) {
        status = tg_loader_create(&manifest, pipeline, &options, &loader);
        tg_manifest_free(&manifest);
    }
    Py_END_ALLOW_THREADS
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    PyObject *capsule = PyCapsule_New(loader, LOADER_CAPSULE, loader_capsule_free);
    if (!capsule) tg_loader_destroy(loader);
    return capsule;
}

PyObject *tg_py_loader_info(PyObject *self, PyObject *capsule)
{
    (void)self;
    tg_loader *loader = tg_py_loader_of(capsule);
    if (!loader) return NULL;
    int64_t shape[3];
    int segmentation;
    tg_loader_sample_shape(loader, shape, &segmentation);
    tg_loader_stats s;
    tg_loader_stats_get(loader, &s);
    return Py_BuildValue("{s:L,s:(LLL),s:O,s:i,s:n,s:n}", "size", (long long)tg_loader_size(loader), "shape",
                         (long long)shape[0], (long long)shape[1], (long long)shape[2], "segmentation",
                         segmentation ? Py_True : Py_False, "ring_depth", s.ring_depth, "batch_bytes",
                         (Py_ssize_t)s.batch_bytes, "ring_bytes", (Py_ssize_t)s.ring_bytes);
}

PyObject *tg_py_loader_stats(PyObject *self, PyObject *capsule)
{
    (void)self;
    tg_loader *loader = tg_py_loader_of(capsule);
    if (!loader) return NULL;
    tg_loader_stats s;
    tg_loader_stats_get(loader, &s);
    return Py_BuildValue("{s:i,s:n,s:n,s:i,s:L,s:L,s:L}", "ring_depth", s.ring_depth, "batch_bytes",
                         (Py_ssize_t)s.batch_bytes, "ring_bytes", (Py_ssize_t)s.ring_bytes, "peak_slots_in_use",
                         s.peak_slots_in_use, "cache_bytes_used", (long long)s.cache_bytes_used, "cache_hits",
                         (long long)s.cache_hits, "decoded", (long long)s.decoded);
}

PyObject *tg_py_loader_start_epoch(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *capsule;
    long long epoch;
    if (!PyArg_ParseTuple(args, "OL", &capsule, &epoch)) return NULL;
    tg_loader *loader = tg_py_loader_of(capsule);
    if (!loader) return NULL;
    int64_t n_batches = 0;
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_loader_start_epoch(loader, epoch, &n_batches);
    Py_END_ALLOW_THREADS
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    return PyLong_FromLongLong(n_batches);
}

/* A tensor for a batch, not zeroed: tg_loader_next overwrites the part it returns.
 * NOTE: tg_tensor_init would clear a batch (megabytes) only to have it overwritten. */
static tg_status batch_tensor(tg_dtype dtype, int ndim, const int64_t *shape, tg_tensor *out)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    void *data = tg_aligned_alloc((size_t)n * tg_dtype_size(dtype));
    if (!data) return tg_error(TG_STATUS_NOMEM, "loader: no memory for a batch of %lld values", (long long)n);
    tg_status status = tg_tensor_init_foreign(out, dtype, ndim, shape, data, NULL, NULL);
    if (status != TG_STATUS_OK) tg_aligned_free(data);
    return status;
}

/* (images [n, C, H, W] float32, targets [n] or [n, H, W] int64, indices [n] int64), or None at the end. */
PyObject *tg_py_loader_next(PyObject *self, PyObject *capsule)
{
    (void)self;
    tg_loader *loader = tg_py_loader_of(capsule);
    if (!loader) return NULL;
    int64_t shape[3];
    int segmentation;
    tg_loader_sample_shape(loader, shape, &segmentation);
    int64_t batch = tg_loader_batch_size(loader);
    int64_t image_shape[4] = {batch, shape[0], shape[1], shape[2]};
    int64_t target_shape[3] = {batch, shape[1], shape[2]};
    tg_tensor images = {0}, targets = {0}, indices = {0};
    tg_status status = batch_tensor(TG_DTYPE_F32, 4, image_shape, &images);
    if (status == TG_STATUS_OK) status = batch_tensor(TG_DTYPE_I64, segmentation ? 3 : 1, target_shape, &targets);
    if (status == TG_STATUS_OK) status = batch_tensor(TG_DTYPE_I64, 1, image_shape, &indices);
    if (status != TG_STATUS_OK) {
        tg_tensor_free(&images);
        tg_tensor_free(&targets);
        tg_tensor_free(&indices);
        return tg_py_raise(status);
    }
    int64_t count = 0;
    Py_BEGIN_ALLOW_THREADS
    status = tg_loader_next(loader, images.data, targets.data, indices.data, &count);
    Py_END_ALLOW_THREADS
    if (status != TG_STATUS_OK || count == 0) {
        tg_tensor_free(&images);
        tg_tensor_free(&targets);
        tg_tensor_free(&indices);
        if (status != TG_STATUS_OK) return tg_py_raise(status);
        Py_RETURN_NONE;
    }
    images.shape[0] = targets.shape[0] = indices.shape[0] = count;
    PyObject *a = tg_py_tensor_wrap(&images), *b = tg_py_tensor_wrap(&targets), *c = tg_py_tensor_wrap(&indices);
    if (!a || !b || !c) {
        Py_XDECREF(a), Py_XDECREF(b), Py_XDECREF(c);
        return NULL;
    }
    return Py_BuildValue("(NNN)", a, b, c);
}

PyObject *tg_py_loader_skipped(PyObject *self, PyObject *capsule)
{
    (void)self;
    tg_loader *loader = tg_py_loader_of(capsule);
    if (!loader) return NULL;
    const tg_loader_skip *skipped;
    int64_t n = tg_loader_skipped(loader, &skipped);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (int64_t i = 0; list && i < n; i++) {
        PyObject *entry = Py_BuildValue("{s:L,s:s,s:s}", "index", (long long)skipped[i].index, "path", skipped[i].path,
                                        "message", skipped[i].message);
        if (!entry) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, entry);
    }
    return list;
}
