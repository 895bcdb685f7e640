/* export.c (binding): trugrade._C.export_onnx, the ONNX export of a model (or of a
 * graph between two nodes) written by csrc/export/onnx.c. Not the safetensors
 * export, which is plain Python (trugrade/export.py). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../export/onnx.h"
#include "../models/model.h"
#include "binding.h"

#define TG_PY_EXPORT_MAX_METADATA 64

/* Reads {str: str} into keys/values (borrowed UTF-8 of the dict's own strings). */
static int read_metadata(PyObject *dict, const char **keys, const char **values, int *count)
{
    *count = 0;
    if (!dict || dict == Py_None) return 0;
    if (!PyDict_Check(dict)) {
        PyErr_Format(PyExc_TypeError, "export_onnx: metadata must be a dict of str to str, got %s", Py_TYPE(dict)->tp_name);
        return -1;
    }
    if (PyDict_Size(dict) > TG_PY_EXPORT_MAX_METADATA) {
        PyErr_Format(PyExc_ValueError, "export_onnx: at most %d metadata entries, got %zd", TG_PY_EXPORT_MAX_METADATA,
                     PyDict_Size(dict));
        return -1;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(dict, &pos, &key, &value)) {
        if (!PyUnicode_Check(key) || !PyUnicode_Check(value)) {
            PyErr_Format(PyExc_TypeError, "export_onnx: metadata entries must be str: str, got %s: %s",
                         Py_TYPE(key)->tp_name, Py_TYPE(value)->tp_name);
            return -1;
        }
        keys[*count] = PyUnicode_AsUTF8(key);
        values[*count] = PyUnicode_AsUTF8(value);
        if (!keys[*count] || !values[*count]) return -1;
        (*count)++;
    }
    return 0;
}

PyObject *tg_py_export_onnx(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"model", "path", "metadata", "input", "output", "float16", NULL};
    PyObject *owner, *path_object, *metadata = Py_None;
    int input = -1, output = -1, float16 = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO&|Oiip", keywords, &owner, PyUnicode_FSConverter, &path_object,
                                     &metadata, &input, &output, &float16))
        return NULL;
    PyObject *result = NULL;
    const char *keys[TG_PY_EXPORT_MAX_METADATA], *values[TG_PY_EXPORT_MAX_METADATA];
    int n_metadata = 0;
    tg_graph *graph = tg_py_graph_from(owner);
    if (!graph || read_metadata(metadata, keys, values, &n_metadata) != 0) goto done;
    /* a trugrade.models.Model wraps its _C.Model in ._c (which tg_py_graph_from accepts too) */
    PyObject *model_object = PyObject_TypeCheck(owner, &tg_py_model_type) ? Py_NewRef(owner) : NULL;
    if (!model_object) {
        model_object = PyObject_GetAttrString(owner, "_c");
        if (!model_object) PyErr_Clear();
        else if (!PyObject_TypeCheck(model_object, &tg_py_model_type)) Py_CLEAR(model_object);
    }
    if (model_object) {
        const tg_model *model = tg_py_model_of(model_object);
        Py_DECREF(model_object);   /* the owner keeps it alive */
        if (input < 0) input = model->input;
        if (output < 0) output = model->output;
    } else if (input < 0 || output < 0) {
        PyErr_SetString(PyExc_ValueError, "export_onnx: a Graph needs input= and output= node ids");
        goto done;
    }
    tg_onnx_options options = {
        .n_metadata = n_metadata, .metadata_keys = keys, .metadata_values = values, .float16 = float16,
    };
    tg_status status = tg_onnx_export_graph(graph, input, output, &options, PyBytes_AS_STRING(path_object));
    if (status != TG_STATUS_OK) tg_py_raise(status);
    else result = Py_NewRef(Py_None);
done:
    Py_DECREF(path_object);
    return result;
}
