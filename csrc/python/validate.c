/* validate.c (binding): the validator's per-file measurements from Python.
 *
 * validate_images / validate_masks take a list of paths (str, bytes or
 * os.PathLike) and give a dict of columns: lists of str for statuses and
 * messages, Tensors for the numbers (numpy views them). near_duplicate_pairs
 * takes an int64 array of hashes. The GIL is released while files are read; no
 * judgement lives here (trugrade/validator.py). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "../data/validate.h"
#include "binding.h"

/* The paths as encoded bytes objects (kept alive in *holders) and their char pointers. */
static int path_list(PyObject *list_obj, PyObject **holders, const char ***paths, Py_ssize_t *count)
{
    PyObject *seq = PySequence_Fast(list_obj, "paths must be a sequence of str or os.PathLike");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *list = PyList_New(n);
    const char **pointers = PyMem_RawMalloc((size_t)(n ? n : 1) * sizeof *pointers);
    if (!list || !pointers) {
        Py_DECREF(seq);
        Py_XDECREF(list);
        PyMem_RawFree(pointers);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *encoded = NULL;
        if (!PyUnicode_FSConverter(PySequence_Fast_GET_ITEM(seq, i), &encoded)) {
            Py_DECREF(seq);
            Py_DECREF(list);
            PyMem_RawFree(pointers);
            return -1;
        }
        PyList_SET_ITEM(list, i, encoded);
        pointers[i] = PyBytes_AS_STRING(encoded);
    }
    Py_DECREF(seq);
    *holders = list;
    *paths = pointers;
    *count = n;
    return 0;
}

static int parse_mode(const char *mode, tg_validate_mode *out)
{
    if (strcmp(mode, "header") == 0) *out = TG_VALIDATE_MODE_HEADER;
    else if (strcmp(mode, "decode") == 0) *out = TG_VALIDATE_MODE_DECODE;
    else {
        PyErr_Format(PyExc_ValueError, "validate: mode '%s' is not 'header' or 'decode'", mode);
        return -1;
    }
    return 0;
}

/* A new Tensor of `columns` values per row (columns 0: shape [rows]). */
static PyObject *new_column(tg_dtype dtype, int64_t rows, int64_t columns, void **data)
{
    tg_tensor t;
    int64_t shape[2] = {rows, columns};
    tg_status status = tg_tensor_init(&t, dtype, columns ? 2 : 1, shape);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    *data = t.data;
    return tg_py_tensor_wrap(&t);
}

/* Sets dict[key] = value (a new reference is taken; the caller keeps its own); -1 on failure. */
static int put(PyObject *dict, const char *key, PyObject *value)
{
    return value ? PyDict_SetItemString(dict, key, value) : -1;
}

static PyObject *status_and_messages(PyObject *dict, Py_ssize_t n, const tg_status *status, size_t stride,
                                     const char *messages, size_t message_stride)
{
    PyObject *names = PyList_New(n), *texts = PyList_New(n);
    if (!names || !texts) {
        Py_XDECREF(names);
        Py_XDECREF(texts);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        tg_status s = *(const tg_status *)((const char *)status + (size_t)i * stride);
        const char *m = messages + (size_t)i * message_stride;
        PyList_SET_ITEM(names, i, PyUnicode_FromString(tg_status_name(s)));
        PyList_SET_ITEM(texts, i, PyUnicode_DecodeUTF8(m, (Py_ssize_t)strlen(m), "backslashreplace"));
    }
    int ok = put(dict, "status", names) == 0 && put(dict, "message", texts) == 0;
    Py_DECREF(names);
    Py_DECREF(texts);
    return ok ? dict : NULL;
}

PyObject *tg_py_validate_images(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"paths", "mode", "max_pixels", NULL};
    PyObject *paths_obj, *holders;
    const char *mode_name = "decode";
    long long max_pixels = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|sL", keywords, &paths_obj, &mode_name, &max_pixels)) return NULL;
    tg_validate_options options = {.max_pixels = max_pixels};
    if (parse_mode(mode_name, &options.mode) != 0) return NULL;
    const char **paths;
    Py_ssize_t n;
    if (path_list(paths_obj, &holders, &paths, &n) != 0) return NULL;
    tg_image_check *checks = PyMem_RawCalloc((size_t)(n ? n : 1), sizeof *checks); /* [n] */
    if (!checks) {
        Py_DECREF(holders);
        PyMem_RawFree(paths);
        return PyErr_NoMemory();
    }
    tg_status status;
    tg_py_sigint_state sigint;
    tg_py_interruptible_begin(&sigint);
    Py_BEGIN_ALLOW_THREADS
    status = tg_validate_images(paths, n, &options, checks);
    Py_END_ALLOW_THREADS
    tg_py_interruptible_end(&sigint);
    Py_DECREF(holders);
    PyMem_RawFree(paths);
    if (status != TG_STATUS_OK) {
        PyMem_RawFree(checks);
        return tg_py_raise(status);
    }
    PyObject *dict = PyDict_New();
    int64_t *ints = NULL, *hashes = NULL;
    float *floats = NULL;
    PyObject *formats = PyList_New(n), *dtypes = PyList_New(n);
    PyObject *ints_obj = new_column(TG_DTYPE_I64, n, 5, (void **)&ints);   /* [n, 5] */
    PyObject *floats_obj = new_column(TG_DTYPE_F32, n, 6, (void **)&floats); /* [n, 6] */
    PyObject *hashes_obj = new_column(TG_DTYPE_I64, n, 0, (void **)&hashes); /* [n] */
    int ok = dict && formats && dtypes && ints_obj && floats_obj && hashes_obj;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        const tg_image_check *c = &checks[i];
        PyList_SET_ITEM(formats, i, PyUnicode_FromString(tg_image_format_name(c->format)));
        PyList_SET_ITEM(dtypes, i, PyUnicode_FromString(c->status == TG_STATUS_OK ? tg_dtype_name(c->dtype) : ""));
        int64_t row_ints[5] = {c->size_bytes, c->extension_mismatch, c->width, c->height, c->channels};
        memcpy(ints + 5 * i, row_ints, sizeof row_ints);
        float row_floats[6] = {(float)c->laplacian_variance, (float)c->mean, (float)c->std,
                               (float)c->dark_fraction, (float)c->bright_fraction, (float)c->entropy};
        memcpy(floats + 6 * i, row_floats, sizeof row_floats);
        hashes[i] = (int64_t)c->phash;
    }
    ok = ok && status_and_messages(dict, n, &checks[0].status, sizeof *checks, checks[0].message, sizeof *checks);
    PyMem_RawFree(checks);
    ok = ok && put(dict, "format", formats) == 0 && put(dict, "dtype", dtypes) == 0;
    ok = ok && put(dict, "ints", ints_obj) == 0 && put(dict, "floats", floats_obj) == 0 &&
         put(dict, "phash", hashes_obj) == 0;
    Py_XDECREF(formats);
    Py_XDECREF(dtypes);
    Py_XDECREF(ints_obj);
    Py_XDECREF(floats_obj);
    Py_XDECREF(hashes_obj);
    if (!ok) {
        Py_XDECREF(dict);
        return NULL;
    }
    return dict;
}

PyObject *tg_py_validate_masks(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"paths", "max_pixels", NULL};
    PyObject *paths_obj, *holders;
    long long max_pixels = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|L", keywords, &paths_obj, &max_pixels)) return NULL;
    tg_validate_options options = {.mode = TG_VALIDATE_MODE_DECODE, .max_pixels = max_pixels};
    const char **paths;
    Py_ssize_t n;
    if (path_list(paths_obj, &holders, &paths, &n) != 0) return NULL;
    tg_mask_check *checks = PyMem_RawCalloc((size_t)(n ? n : 1), sizeof *checks); /* [n] */
    if (!checks) {
        Py_DECREF(holders);
        PyMem_RawFree(paths);
        return PyErr_NoMemory();
    }
    tg_status status;
    tg_py_sigint_state sigint;
    tg_py_interruptible_begin(&sigint);
    Py_BEGIN_ALLOW_THREADS
    status = tg_validate_masks(paths, n, &options, checks);
    Py_END_ALLOW_THREADS
    tg_py_interruptible_end(&sigint);
    Py_DECREF(holders);
    PyMem_RawFree(paths);
    if (status != TG_STATUS_OK) {
        PyMem_RawFree(checks);
        return tg_py_raise(status);
    }
    PyObject *dict = PyDict_New();
    int64_t *ints = NULL, *histograms = NULL;
    PyObject *ints_obj = new_column(TG_DTYPE_I64, n, 5, (void **)&ints); /* [n, 5] */
    PyObject *hist_obj = new_column(TG_DTYPE_I64, n, TG_VALIDATE_MASK_VALUES, (void **)&histograms); /* [n, 256] */
    int ok = dict && ints_obj && hist_obj;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        const tg_mask_check *c = &checks[i];
        int64_t row[5] = {c->width, c->height, c->channels, c->max_value, c->above};
        memcpy(ints + 5 * i, row, sizeof row);
        memcpy(histograms + TG_VALIDATE_MASK_VALUES * i, c->histogram, sizeof c->histogram);
    }
    ok = ok && status_and_messages(dict, n, &checks[0].status, sizeof *checks, checks[0].message, sizeof *checks);
    PyMem_RawFree(checks);
    ok = ok && put(dict, "ints", ints_obj) == 0 && put(dict, "histogram", hist_obj) == 0;
    Py_XDECREF(ints_obj);
    Py_XDECREF(hist_obj);
    if (!ok) {
        Py_XDECREF(dict);
        return NULL;
    }
    return dict;
}

PyObject *tg_py_near_duplicate_pairs(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *hashes_obj;
    int max_distance;
    if (!PyArg_ParseTuple(args, "Oi", &hashes_obj, &max_distance)) return NULL;
    tg_tensor hashes;
    if (tg_py_tensor_from_object(hashes_obj, &hashes, "near_duplicate_pairs: hashes") != 0) return NULL;
    if (hashes.dtype != TG_DTYPE_I64 || hashes.ndim != 1) {
        tg_tensor_free(&hashes);
        return PyErr_Format(PyExc_TypeError, "near_duplicate_pairs: hashes must be a 1-D int64 array");
    }
    int64_t *pairs = NULL, count = 0;
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_validate_near_pairs((const uint64_t *)hashes.data, hashes.shape[0], max_distance, &pairs, &count);
    Py_END_ALLOW_THREADS
    tg_tensor_free(&hashes);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    int64_t *data = NULL;
    PyObject *result = new_column(TG_DTYPE_I64, count, 3, (void **)&data); /* [count, 3] */
    if (result && count) memcpy(data, pairs, (size_t)count * 3 * sizeof *pairs);
    free(pairs);
    return result;
}
