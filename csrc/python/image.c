/* image.c (binding): reading image files from Python: read_image, read_idx,
 * probe_image. Paths are str, bytes or os.PathLike; the GIL is released while
 * the file is decoded. No decoding lives here (see csrc/data/). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../data/image.h"
#include "binding.h"

PyObject *tg_py_read_image(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"path", "max_pixels", "window", NULL};
    PyObject *path_bytes = NULL;
    long long max_pixels = 0;
    int window = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|Lp", keywords, PyUnicode_FSConverter, &path_bytes, &max_pixels,
                                     &window))
        return NULL;
    tg_decode_options options = {.max_pixels = max_pixels, .apply_window = window};
    tg_tensor tensor;
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_image_read(PyBytes_AS_STRING(path_bytes), &options, &tensor);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_bytes);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    return tg_py_tensor_wrap(&tensor);
}

PyObject *tg_py_read_idx(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"path", "max_pixels", NULL};
    PyObject *path_bytes = NULL;
    long long max_pixels = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|L", keywords, PyUnicode_FSConverter, &path_bytes, &max_pixels))
        return NULL;
    tg_decode_options options = {.max_pixels = max_pixels};
    tg_tensor tensor;
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_idx_read(PyBytes_AS_STRING(path_bytes), &options, &tensor);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_bytes);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    return tg_py_tensor_wrap(&tensor);
}

PyObject *tg_py_probe_image(PyObject *self, PyObject *arg)
{
    (void)self;
    PyObject *path_bytes = NULL;
    if (!PyUnicode_FSConverter(arg, &path_bytes)) return NULL;
    tg_image_info info;
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_image_probe(PyBytes_AS_STRING(path_bytes), &info);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_bytes);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    return Py_BuildValue("{s:s,s:s,s:O,s:L,s:L,s:L,s:L,s:s}", "format", tg_image_format_name(info.format),
                         "extension_format", tg_image_format_name(info.extension_format), "extension_mismatch",
                         info.extension_mismatch ? Py_True : Py_False, "count", (long long)info.count, "channels",
                         (long long)info.channels, "height", (long long)info.height, "width", (long long)info.width,
                         "dtype", tg_dtype_name(info.dtype));
}
