/* dataset.c (binding): scanning folders, manifests and samplers from Python.
 * Manifests cross the boundary as JSON text written by the C core (Python parses
 * it into a dict); nothing here interprets datasets. The GIL is released around
 * scans and file I/O. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "../data/dataset.h"
#include "../data/sampler.h"
#include "binding.h"

static PyObject *text_to_str(tg_text *text)
{
    PyObject *result = PyUnicode_DecodeUTF8(text->data, (Py_ssize_t)text->length, "strict");
    tg_text_free(text);
    return result;
}

PyObject *tg_py_dataset_scan(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"root", "ratios", "seed", NULL};
    const char *root;
    tg_scan_options options = {{0}, 0};
    unsigned long long seed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s(ddd)K", keywords, &root, &options.split_ratios[0],
                                     &options.split_ratios[1], &options.split_ratios[2], &seed))
        return NULL;
    options.seed = seed;
    tg_manifest manifest;
    tg_text text = {0};
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_dataset_scan(root, &options, &manifest);
    if (status == TG_STATUS_OK) {
        status = tg_manifest_to_json(&manifest, &text);
        tg_manifest_free(&manifest);
    }
    Py_END_ALLOW_THREADS
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    return text_to_str(&text);
}

PyObject *tg_py_manifest_load(PyObject *self, PyObject *args)
{
    (void)self;
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path)) return NULL;
    tg_manifest manifest;
    tg_text text = {0};
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_manifest_read(path, &manifest);
    if (status == TG_STATUS_OK) {
        status = tg_manifest_to_json(&manifest, &text);
        tg_manifest_free(&manifest);
    }
    Py_END_ALLOW_THREADS
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    return text_to_str(&text);
}

PyObject *tg_py_manifest_save(PyObject *self, PyObject *args)
{
    (void)self;
    const char *json, *path, *name;
    Py_ssize_t length;
    if (!PyArg_ParseTuple(args, "s#ss", &json, &length, &path, &name)) return NULL;
    tg_manifest manifest;
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_manifest_parse(json, (size_t)length, name, &manifest);
    if (status == TG_STATUS_OK) {
        status = tg_manifest_write(&manifest, path);
        tg_manifest_free(&manifest);
    }
    Py_END_ALLOW_THREADS
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    Py_RETURN_NONE;
}

/* A list of ints into a new int32 array; -1 with an exception set. */
static int int32_list(PyObject *obj, const char *what, int32_t **out, Py_ssize_t *count)
{
    PyObject *seq = PySequence_Fast(obj, what);
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int32_t *values = PyMem_RawMalloc((size_t)(n ? n : 1) * sizeof *values);
    if (!values) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            PyMem_RawFree(values);
            return -1;
        }
        values[i] = (int32_t)v;
    }
    Py_DECREF(seq);
    *out = values;
    *count = n;
    return 0;
}

PyObject *tg_py_sampler_indices(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"labels", "n_classes", "kind", "seed", "epoch", "factors", "length", NULL};
    PyObject *labels_obj, *factors_obj = Py_None;
    int n_classes;
    const char *kind;
    unsigned long long seed;
    long long epoch, length = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OisKL|OL", keywords, &labels_obj, &n_classes, &kind, &seed, &epoch,
                                     &factors_obj, &length))
        return NULL;
    tg_sampler_options options = {.seed = seed, .epoch = epoch, .length = length};
    if (strcmp(kind, "sequential") == 0) options.kind = TG_SAMPLER_KIND_SEQUENTIAL;
    else if (strcmp(kind, "shuffled") == 0) options.kind = TG_SAMPLER_KIND_SHUFFLED;
    else if (strcmp(kind, "balanced") == 0) options.kind = TG_SAMPLER_KIND_BALANCED;
    else {
        tg_error(TG_STATUS_VALUE, "sampler: kind \"%s\" is not one of sequential, shuffled, balanced", kind);
        return tg_py_raise(TG_STATUS_VALUE);
    }
    int32_t *labels = NULL, *factors = NULL;
    Py_ssize_t n = 0, n_factors = 0;
    if (int32_list(labels_obj, "labels must be a sequence of ints", &labels, &n) != 0) return NULL;
    if (factors_obj != Py_None) {
        if (int32_list(factors_obj, "factors must be a sequence of ints", &factors, &n_factors) != 0) {
            PyMem_RawFree(labels);
            return NULL;
        }
        if (n_factors != n_classes) {
            PyMem_RawFree(labels);
            PyMem_RawFree(factors);
            tg_error(TG_STATUS_VALUE, "sampler: %zd factors for %d classes", n_factors, n_classes);
            return tg_py_raise(TG_STATUS_VALUE);
        }
        options.class_factors = factors;
    }
    int64_t *indices = NULL, count = 0;
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_sampler_epoch(labels, n, n_classes, &options, &indices, &count);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(labels);
    PyMem_RawFree(factors);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    tg_tensor tensor;
    int64_t shape[1] = {count};
    status = tg_tensor_init(&tensor, TG_DTYPE_I64, 1, shape);
    if (status != TG_STATUS_OK) {
        free(indices);
        return tg_py_raise(status);
    }
    if (count) memcpy(tensor.data, indices, (size_t)count * sizeof *indices);
    free(indices);
    return tg_py_tensor_wrap(&tensor);
}
