/* ops.c (binding): calling any op of the table from Python, forward and backward.
 * Attrs are read generically from each op's tg_attr_spec table. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "../ops/op.h"
#include "binding.h"

static const char *attr_kind_name(tg_attr_kind kind)
{
    switch (kind) {
    case TG_ATTR_KIND_INT: return "int";
    case TG_ATTR_KIND_FLOAT: return "float";
    case TG_ATTR_KIND_BOOL: return "bool";
    case TG_ATTR_KIND_INT_PAIR: return "int_pair";
    case TG_ATTR_KIND_INT_LIST: return "int_list";
    }
    return "?";
}

PyObject *tg_py_op_table(PyObject *self, PyObject *unused)
{
    (void)self; (void)unused;
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    for (int i = 0; i < tg_op_count(); i++) {
        const tg_op_def *def = tg_op_at(i);
        PyObject *inputs = PyList_New(0), *attrs = PyList_New(0);
        for (int k = 0; inputs && def->input_names[k]; k++) {
            PyObject *name = PyUnicode_FromString(def->input_names[k]);
            PyList_Append(inputs, name);
            Py_XDECREF(name);
        }
        for (int k = 0; attrs && k < def->n_attrs; k++) {
            const tg_attr_spec *s = &def->attr_specs[k];
            PyObject *row = Py_BuildValue("(ssdi)", s->name, attr_kind_name(s->kind), s->default_value, s->required);
            PyList_Append(attrs, row);
            Py_XDECREF(row);
        }
        PyObject *entry = Py_BuildValue("{s:s,s:N,s:N,s:i,s:K,s:O}", "name", def->name, "inputs", inputs, "attrs",
                                        attrs, "variadic", def->variadic, "no_grad_inputs",
                                        (unsigned long long)def->no_grad_inputs, "differentiable",
                                        def->backward ? Py_True : Py_False);
        if (!entry || PyList_Append(list, entry) != 0) {
            Py_XDECREF(entry);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(entry);
    }
    return list;
}

static int read_int(PyObject *value, int64_t *out, const char *op, const char *name)
{
    if (PyBool_Check(value) || !PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be an int, got %.80R", op, name, value);
        return -1;
    }
    long long v = PyLong_AsLongLong(value);
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

static int read_attr(const tg_op_def *def, const tg_attr_spec *spec, PyObject *value, void *attrs)
{
    char *field = (char *)attrs + spec->offset;
    switch (spec->kind) {
    case TG_ATTR_KIND_INT: return read_int(value, (int64_t *)field, def->name, spec->name);
    case TG_ATTR_KIND_FLOAT: {
        double v = PyFloat_AsDouble(value);
        if (v == -1.0 && PyErr_Occurred()) return -1;
        *(double *)field = v;
        return 0;
    }
    case TG_ATTR_KIND_BOOL: {
        int v = PyObject_IsTrue(value);
        if (v < 0) return -1;
        *(int *)field = v;
        return 0;
    }
    case TG_ATTR_KIND_INT_PAIR:
    case TG_ATTR_KIND_INT_LIST: {
        int64_t *values = spec->kind == TG_ATTR_KIND_INT_PAIR ? (int64_t *)field : ((tg_int_list *)field)->values;
        int capacity = spec->kind == TG_ATTR_KIND_INT_PAIR ? 2 : TG_MAX_INT_LIST;
        if (PyLong_Check(value)) {
            if (read_int(value, &values[0], def->name, spec->name) != 0) return -1;
            if (spec->kind == TG_ATTR_KIND_INT_PAIR) values[1] = values[0];
            else ((tg_int_list *)field)->count = 1;
            return 0;
        }
        PyObject *seq = PySequence_Fast(value, "");
        if (!seq) {
            PyErr_Format(PyExc_TypeError, "%s: %s must be an int or a sequence of ints, got %.80R", def->name,
                         spec->name, value);
            return -1;
        }
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        if ((spec->kind == TG_ATTR_KIND_INT_PAIR && n != 2) || n > capacity) {
            PyErr_Format(PyExc_ValueError, "%s: %s takes %s ints, got %zd", def->name, spec->name,
                         spec->kind == TG_ATTR_KIND_INT_PAIR ? "1 or 2" : "at most 8", n);
            Py_DECREF(seq);
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++)
            if (read_int(PySequence_Fast_GET_ITEM(seq, i), &values[i], def->name, spec->name) != 0) {
                Py_DECREF(seq);
                return -1;
            }
        if (spec->kind == TG_ATTR_KIND_INT_LIST) ((tg_int_list *)field)->count = (int)n;
        Py_DECREF(seq);
        return 0;
    }
    }
    return 0;
}

/* Fills attrs from a dict of keywords: defaults first, then each given value;
 * an unknown keyword or a missing required one is a TypeError naming it. */
int tg_py_read_attrs(const tg_op_def *def, PyObject *dict, void *attrs)
{
    tg_attrs_set_defaults(def, attrs);
    Py_ssize_t used = 0;
    for (int k = 0; k < def->n_attrs; k++) {
        const tg_attr_spec *spec = &def->attr_specs[k];
        PyObject *value = dict ? PyDict_GetItemString(dict, spec->name) : NULL;
        if (!value || value == Py_None) {
            if (value) used++;
            if (spec->required) {
                PyErr_Format(PyExc_TypeError, "%s: missing required argument '%s'", def->name, spec->name);
                return -1;
            }
            continue;
        }
        used++;
        if (read_attr(def, spec, value, attrs) != 0) return -1;
    }
    if (dict && PyDict_Size(dict) != used) {
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        while (PyDict_Next(dict, &pos, &key, &value)) {
            const char *name = PyUnicode_AsUTF8(key);
            int known = 0;
            for (int k = 0; name && k < def->n_attrs; k++) known |= strcmp(def->attr_specs[k].name, name) == 0;
            if (!known) {
                PyErr_Format(PyExc_TypeError, "%s got an unexpected keyword argument %R", def->name, key);
                return -1;
            }
        }
    }
    return 0;
}

typedef struct call_args {
    const tg_op_def *def;
    _Alignas(64) unsigned char attrs[TG_MAX_ATTR_BYTES];
    tg_tensor tensors[TG_MAX_INPUTS];
    const tg_tensor *inputs[TG_MAX_INPUTS];
    int n_in;
} call_args;

static void call_args_free(call_args *a)
{
    for (int i = 0; i < a->n_in; i++) tg_tensor_free(&a->tensors[i]);
}

static int parse_call(call_args *a, const char *name, PyObject *inputs, PyObject *attrs)
{
    memset(a, 0, sizeof *a);
    a->def = tg_op_find(name);
    if (!a->def) {
        PyErr_Format(PyExc_ValueError, "no op named '%s'", name);
        return -1;
    }
    PyObject *seq = PySequence_Fast(inputs, "inputs must be a sequence of arrays");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > TG_MAX_INPUTS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "%s: at most %d inputs, got %zd", name, TG_MAX_INPUTS, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        a->n_in = (int)i + 1;
        if (item == Py_None) continue;
        char what[96];
        snprintf(what, sizeof what, "%s input %zd", name, i);
        if (tg_py_tensor_from_object(item, &a->tensors[i], what) != 0) {
            Py_DECREF(seq);
            call_args_free(a);
            return -1;
        }
        a->inputs[i] = &a->tensors[i];
    }
    a->n_in = (int)n;
    Py_DECREF(seq);
    if (tg_py_read_attrs(a->def, attrs == Py_None ? NULL : attrs, a->attrs) != 0) {
        call_args_free(a);
        return -1;
    }
    return 0;
}

PyObject *tg_py_op_forward(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"name", "inputs", "attrs", "training", "seed", NULL};
    const char *name;
    PyObject *inputs, *attrs = Py_None;
    int training = 0;
    unsigned long long seed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sO|OpK", keywords, &name, &inputs, &attrs, &training, &seed))
        return NULL;
    call_args a;
    if (parse_call(&a, name, inputs, attrs) != 0) return NULL;
    tg_op_call call = {.def = a.def, .attrs = a.attrs, .in = a.inputs, .n_in = a.n_in, .training = training, .seed = seed};
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_op_call_forward(&call);
    Py_END_ALLOW_THREADS
    call_args_free(&a);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    tg_aligned_free(call.aux);
    return tg_py_tensor_wrap(&call.out);
}

PyObject *tg_py_op_backward(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"name", "inputs", "grad_output", "attrs", "training", "seed", NULL};
    const char *name;
    PyObject *inputs, *grad_obj, *attrs = Py_None;
    int training = 0;
    unsigned long long seed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sOO|OpK", keywords, &name, &inputs, &grad_obj, &attrs, &training,
                                     &seed))
        return NULL;
    call_args a;
    if (parse_call(&a, name, inputs, attrs) != 0) return NULL;
    tg_tensor grad_out;
    if (tg_py_tensor_from_object(grad_obj, &grad_out, "grad_output") != 0) {
        call_args_free(&a);
        return NULL;
    }
    tg_op_call call = {.def = a.def, .attrs = a.attrs, .in = a.inputs, .n_in = a.n_in, .training = training, .seed = seed};
    tg_tensor grads[TG_MAX_INPUTS];
    int want[TG_MAX_INPUTS];
    for (int i = 0; i < a.n_in; i++) want[i] = 1;
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_op_call_forward(&call);
    if (status == TG_STATUS_OK) {
        status = tg_op_call_backward(&call, &grad_out, want, grads);
        tg_op_call_free(&call);
    }
    Py_END_ALLOW_THREADS
    tg_tensor_free(&grad_out);
    call_args_free(&a);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    PyObject *result = PyTuple_New(a.n_in);
    for (int i = 0; i < a.n_in; i++) {
        PyObject *item = grads[i].data ? tg_py_tensor_wrap(&grads[i]) : Py_NewRef(Py_None);
        if (!item || !result) {
            for (int k = i; k < a.n_in; k++) tg_tensor_free(&grads[k]);
            Py_XDECREF(item);
            Py_XDECREF(result);
            return NULL;
        }
        PyTuple_SET_ITEM(result, i, item);
    }
    return result;
}
