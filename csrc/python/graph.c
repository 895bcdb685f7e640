/* graph.c (binding): trugrade._C.Graph, the autograd graph from Python.
 * Node ids are ints; values of arena nodes are returned as copies (the arena is
 * reused by the next step), parameters as zero-copy views of their storage. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "../core/graph.h"
#include "binding.h"

typedef struct {
    PyObject_HEAD
    tg_graph graph;
} GraphObject;

static int parse_shape(PyObject *obj, int *ndim, int64_t *shape)
{
    PyObject *seq = PySequence_Fast(obj, "shape must be a sequence of ints");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > TG_MAX_DIMS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "shape has %zd dims; at most %d", n, TG_MAX_DIMS);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        shape[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (shape[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
    }
    *ndim = (int)n;
    Py_DECREF(seq);
    return 0;
}

static int parse_dtype(const char *name, tg_dtype *out)
{
    for (int d = 0; d < TG_DTYPE_COUNT; d++)
        if (strcmp(name, tg_dtype_name((tg_dtype)d)) == 0) {
            *out = (tg_dtype)d;
            return 0;
        }
    PyErr_Format(PyExc_ValueError, "unknown dtype '%s'", name);
    return -1;
}

static tg_graph *graph_of(PyObject *self) { return &((GraphObject *)self)->graph; }

tg_graph *tg_py_graph_of(PyObject *self) { return graph_of(self); }

static int check_node(tg_graph *graph, long id)
{
    if (id >= 0 && id < graph->n_nodes) return 0;
    PyErr_Format(PyExc_IndexError, "graph has no node %ld", id);
    return -1;
}

static PyObject *graph_input(PyObject *self, PyObject *args)
{
    const char *name, *dtype_name = "float32";
    PyObject *shape_obj;
    if (!PyArg_ParseTuple(args, "sO|s", &name, &shape_obj, &dtype_name)) return NULL;
    int ndim;
    int64_t shape[TG_MAX_DIMS];
    tg_dtype dtype;
    if (parse_shape(shape_obj, &ndim, shape) != 0 || parse_dtype(dtype_name, &dtype) != 0) return NULL;
    tg_node_id id;
    tg_status status = tg_graph_input(graph_of(self), name, dtype, ndim, shape, &id);
    return status == TG_STATUS_OK ? PyLong_FromLong(id) : tg_py_raise(status);
}

static PyObject *graph_param(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"name", "shape", "requires_grad", "buffer", "dtype", NULL};
    const char *name, *dtype_name = "float32";
    PyObject *shape_obj;
    int requires_grad = 1, buffer = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sO|pps", keywords, &name, &shape_obj, &requires_grad, &buffer,
                                     &dtype_name))
        return NULL;
    int ndim;
    int64_t shape[TG_MAX_DIMS];
    tg_dtype dtype;
    if (parse_shape(shape_obj, &ndim, shape) != 0 || parse_dtype(dtype_name, &dtype) != 0) return NULL;
    tg_node_id id;
    tg_status status = buffer ? tg_graph_buffer(graph_of(self), name, dtype, ndim, shape, &id)
                              : tg_graph_param(graph_of(self), name, ndim, shape, requires_grad, &id);
    return status == TG_STATUS_OK ? PyLong_FromLong(id) : tg_py_raise(status);
}

static PyObject *graph_op(PyObject *self, PyObject *args, PyObject *kwargs)
{
    const char *name;
    PyObject *inputs;
    if (!PyArg_ParseTuple(args, "sO", &name, &inputs)) return NULL;
    const tg_op_def *def = tg_op_find(name);
    if (!def) return PyErr_Format(PyExc_ValueError, "no op named '%s'", name);
    PyObject *seq = PySequence_Fast(inputs, "inputs must be a sequence of node ids");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > TG_MAX_INPUTS) {
        Py_DECREF(seq);
        return PyErr_Format(PyExc_ValueError, "%s: at most %d inputs", name, TG_MAX_INPUTS);
    }
    tg_node_id ids[TG_MAX_INPUTS];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        ids[i] = item == Py_None ? -1 : (tg_node_id)PyLong_AsLong(item);
        if (ids[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    _Alignas(64) unsigned char attrs[TG_MAX_ATTR_BYTES];
    if (tg_py_read_attrs(def, kwargs, attrs) != 0) return NULL;
    tg_node_id id;
    tg_status status = tg_graph_op(graph_of(self), def, ids, (int)n, attrs, &id);
    return status == TG_STATUS_OK ? PyLong_FromLong(id) : tg_py_raise(status);
}

static PyObject *graph_plan(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"loss", NULL};
    long loss = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|l", keywords, &loss)) return NULL;
    size_t peak = 0;
    tg_status status = tg_graph_plan(graph_of(self), (tg_node_id)loss, &peak);
    return status == TG_STATUS_OK ? PyLong_FromSize_t(peak) : tg_py_raise(status);
}

static PyObject *graph_feed(PyObject *self, PyObject *args)
{
    long id;
    PyObject *array;
    if (!PyArg_ParseTuple(args, "lO", &id, &array)) return NULL;
    tg_tensor src;
    if (tg_py_tensor_from_object(array, &src, "fed array") != 0) return NULL;
    tg_status status = tg_graph_feed(graph_of(self), (tg_node_id)id, &src);
    tg_tensor_free(&src);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    Py_RETURN_NONE;
}

/* Runs forward (and backward) without the GIL, Ctrl-C turning into KeyboardInterrupt. */
static PyObject *graph_run(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"training", "backward", NULL};
    int training = 0, backward = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|pp", keywords, &training, &backward)) return NULL;
    tg_graph *graph = graph_of(self);
    tg_py_sigint_state sigint;
    tg_py_interruptible_begin(&sigint);
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_graph_forward(graph, training);
    if (status == TG_STATUS_OK && backward) status = tg_graph_backward(graph);
    Py_END_ALLOW_THREADS
    tg_py_interruptible_end(&sigint);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    Py_RETURN_NONE;
}

static PyObject *copy_tensor(const tg_tensor *t)
{
    tg_tensor copy;
    tg_status status = tg_tensor_init(&copy, t->dtype, t->ndim, t->shape);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    if (t->data) memcpy(copy.data, t->data, tg_tensor_nbytes(t));
    return tg_py_tensor_wrap(&copy);
}

static PyObject *share_tensor(const tg_tensor *t)
{
    tg_tensor view;
    tg_status status = tg_tensor_share(&view, t, t->ndim, t->shape);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    return tg_py_tensor_wrap(&view);
}

static PyObject *graph_value(PyObject *self, PyObject *arg)
{
    long id = PyLong_AsLong(arg);
    tg_graph *graph = graph_of(self);
    if ((id == -1 && PyErr_Occurred()) || check_node(graph, id) != 0) return NULL;
    tg_node *node = &graph->nodes[id];
    if (node->value.storage) return share_tensor(&node->value);
    if (!tg_graph_value_valid(graph, (tg_node_id)id))
        return PyErr_Format(PyExc_ValueError,
                            "node %ld's value is not available: run the graph first, and call keep(%ld) before "
                            "running to read an intermediate value (its memory is reused otherwise)", id, id);
    return copy_tensor(&node->value);
}

static PyObject *graph_grad(PyObject *self, PyObject *arg)
{
    long id = PyLong_AsLong(arg);
    tg_graph *graph = graph_of(self);
    if ((id == -1 && PyErr_Occurred()) || check_node(graph, id) != 0) return NULL;
    tg_node *node = &graph->nodes[id];
    if (!node->grad.data) Py_RETURN_NONE;
    if (node->grad.storage) return share_tensor(&node->grad);
    return PyErr_Format(PyExc_ValueError, "node %ld's gradient is not kept after backward; only parameter "
                        "gradients can be read", id);
}

static PyObject *graph_set_value(PyObject *self, PyObject *args)
{
    long id;
    PyObject *array;
    if (!PyArg_ParseTuple(args, "lO", &id, &array)) return NULL;
    tg_graph *graph = graph_of(self);
    if (check_node(graph, id) != 0) return NULL;
    tg_node *node = &graph->nodes[id];
    if (!node->value.storage)
        return PyErr_Format(PyExc_ValueError, "node %ld is not a parameter or buffer; feed inputs with feed()", id);
    tg_tensor src;
    if (tg_py_tensor_from_object(array, &src, "value") != 0) return NULL;
    if (!tg_shape_equal(&src, &node->value) || src.dtype != node->value.dtype) {
        char a[96], b[96];
        tg_status status = tg_error(TG_STATUS_SHAPE, "'%s' has shape %s %s; got %s %s", node->name,
                                    tg_shape_str(&node->value, a, sizeof a), tg_dtype_name(node->value.dtype),
                                    tg_shape_str(&src, b, sizeof b), tg_dtype_name(src.dtype));
        tg_tensor_free(&src);
        return tg_py_raise(status);
    }
    memcpy(node->value.data, src.data, tg_tensor_nbytes(&src));
    tg_tensor_free(&src);
    Py_RETURN_NONE;
}

static PyObject *graph_keep(PyObject *self, PyObject *arg)
{
    long id = PyLong_AsLong(arg);
    if (id == -1 && PyErr_Occurred()) return NULL;
    tg_status status = tg_graph_keep(graph_of(self), (tg_node_id)id);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    Py_RETURN_NONE;
}

static PyObject *graph_zero_grad(PyObject *self, PyObject *unused)
{
    tg_graph_zero_grad(graph_of(self));
    Py_RETURN_NONE;
}

static PyObject *graph_names(PyObject *self, PyObject *unused)
{
    tg_graph *graph = graph_of(self);
    PyObject *dict = PyDict_New();
    for (int i = 0; dict && i < graph->n_nodes; i++) {
        if (!graph->nodes[i].name) continue;
        PyObject *id = PyLong_FromLong(i);
        if (!id || PyDict_SetItemString(dict, graph->nodes[i].name, id) != 0) {
            Py_XDECREF(id);
            Py_DECREF(dict);
            return NULL;
        }
        Py_DECREF(id);
    }
    return dict;
}

static PyObject *graph_node_info(PyObject *self, PyObject *arg)
{
    long id = PyLong_AsLong(arg);
    tg_graph *graph = graph_of(self);
    if ((id == -1 && PyErr_Occurred()) || check_node(graph, id) != 0) return NULL;
    tg_node *node = &graph->nodes[id];
    static const char *const kinds[] = {"input", "param", "buffer", "op"};
    PyObject *shape = PyTuple_New(node->value.ndim);
    for (int i = 0; shape && i < node->value.ndim; i++) PyTuple_SET_ITEM(shape, i, PyLong_FromLongLong(node->value.shape[i]));
    return Py_BuildValue("{s:s,s:s,s:N,s:s,s:i}", "kind", kinds[node->kind], "op", node->op ? node->op->name : "",
                         "shape", shape, "dtype", tg_dtype_name(node->value.dtype), "needs_grad", node->needs_grad);
}

static PyObject *graph_memory(PyObject *self, PyObject *unused)
{
    tg_graph *graph = graph_of(self);
    return Py_BuildValue("{s:n,s:n}", "arena_bytes", (Py_ssize_t)graph->arena_bytes, "persistent_bytes",
                         (Py_ssize_t)tg_graph_persistent_bytes(graph));
}

static PyObject *graph_set_seed(PyObject *self, PyObject *arg)
{
    unsigned long long seed = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) return NULL;
    graph_of(self)->seed = seed;
    graph_of(self)->step = 0;
    Py_RETURN_NONE;
}

static PyObject *graph_len(PyObject *self, PyObject *unused) { return PyLong_FromLong(graph_of(self)->n_nodes); }

static PyMethodDef graph_methods[] = {
    {"input", graph_input, METH_VARARGS, "input(name, shape, dtype='float32') -> id"},
    {"param", (PyCFunction)(void (*)(void))graph_param, METH_VARARGS | METH_KEYWORDS,
     "param(name, shape, requires_grad=True, buffer=False, dtype='float32') -> id"},
    {"op", (PyCFunction)(void (*)(void))graph_op, METH_VARARGS | METH_KEYWORDS, "op(name, inputs, **attrs) -> id"},
    {"plan", (PyCFunction)(void (*)(void))graph_plan, METH_VARARGS | METH_KEYWORDS,
     "plan(loss=-1) -> peak bytes of one step (activations, gradients, scratch)"},
    {"feed", graph_feed, METH_VARARGS, "feed(input_id, array)"},
    {"run", (PyCFunction)(void (*)(void))graph_run, METH_VARARGS | METH_KEYWORDS,
     "run(training=False, backward=False): forward, then backward from the planned loss"},
    {"value", graph_value, METH_O, "value(id) -> Tensor (params: a view; others: a copy)"},
    {"grad", graph_grad, METH_O, "grad(id) -> Tensor or None"},
    {"set_value", graph_set_value, METH_VARARGS, "set_value(param_id, array)"},
    {"keep", graph_keep, METH_O, "keep(id): keep this node's value readable after runs (an output)"},
    {"zero_grad", graph_zero_grad, METH_NOARGS, "zero every parameter gradient"},
    {"names", graph_names, METH_NOARGS, "names() -> {name: id}"},
    {"node", graph_node_info, METH_O, "node(id) -> dict"},
    {"memory", graph_memory, METH_NOARGS, "memory() -> {'arena_bytes', 'persistent_bytes'}"},
    {"set_seed", graph_set_seed, METH_O, "set_seed(seed): dropout randomness; resets the step counter"},
    {"__len__", graph_len, METH_NOARGS, "number of nodes"},
    {NULL, NULL, 0, NULL},
};

static PyObject *graph_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    GraphObject *self = (GraphObject *)type->tp_alloc(type, 0);
    if (self) tg_graph_init(&self->graph);
    return (PyObject *)self;
}

static void graph_dealloc(PyObject *self)
{
    tg_graph_free(graph_of(self));
    Py_TYPE(self)->tp_free(self);
}

PyTypeObject tg_py_graph_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "trugrade._C.Graph",
    .tp_basicsize = sizeof(GraphObject),
    .tp_dealloc = graph_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The autograd graph: add inputs, params and ops; plan; feed; run.",
    .tp_methods = graph_methods,
    .tp_new = graph_new,
};
