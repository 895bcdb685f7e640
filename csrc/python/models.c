/* models.c (binding): trugrade._C.Model, an architecture of the zoo as a graph with
 * forward, loss-and-gradients and its named parameters and buffers. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "../models/model.h"
#include "../models/quantize.h"
#include "binding.h"

typedef struct {
    PyObject_HEAD
    tg_model model;
    int built;
    int planned_for;   /* 0: not planned; 1: forward only; 2: training step */
} ModelObject;

static tg_model *model_of(PyObject *self) { return &((ModelObject *)self)->model; }

tg_model *tg_py_model_of(PyObject *model_object) { return model_of(model_object); }

/* class_weights: None or a sequence of num_classes floats into the options. */
static int parse_class_weights(PyObject *weights, tg_model_options *options)
{
    if (!weights || weights == Py_None) return 0;
    PyObject *seq = PySequence_Fast(weights, "class_weights must be a sequence of floats (one per class) or None");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > TG_MODEL_MAX_CLASS_WEIGHTS) {
        PyErr_Format(PyExc_ValueError, "class_weights must have 1 to %d entries (one per class), got %zd",
                     TG_MODEL_MAX_CLASS_WEIGHTS, n);
        Py_DECREF(seq);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        double w = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (w == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        options->class_weights[i] = (float)w;
    }
    options->n_class_weights = n;
    Py_DECREF(seq);
    return 0;
}

static int model_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"arch", "num_classes", "in_channels", "input_size", "dropout", "small_input", "seed",
                               "drop_path", "encoder", "upsample", "loss_ce", "loss_dice", "loss_focal", "focal_gamma",
                               "class_weights", "focal_alpha", "dice_smooth", "label_smoothing", NULL};
    const char *arch, *encoder = "";
    PyObject *class_weights = NULL;
    tg_model_options options;
    tg_model_options_default(&options);
    long long num_classes = options.num_classes, in_channels = options.in_channels, input_size = options.input_size;
    int small_input = options.small_input;
    unsigned long long seed = 0;
    double dropout = options.dropout, drop_path = options.drop_path;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|LLLdiKdsiddddOddd", keywords, &arch, &num_classes, &in_channels,
                                     &input_size, &dropout, &small_input, &seed, &drop_path, &encoder,
                                     &options.upsample, &options.loss_ce, &options.loss_dice, &options.loss_focal,
                                     &options.focal_gamma, &class_weights, &options.focal_alpha,
                                     &options.dice_smooth, &options.label_smoothing))
        return -1;
    if (strlen(encoder) >= sizeof options.encoder) {
        PyErr_Format(PyExc_ValueError, "encoder '%s' is unknown; use resnet18, resnet34 or resnet50", encoder);
        return -1;
    }
    strcpy(options.encoder, encoder);
    if (parse_class_weights(class_weights, &options) != 0) return -1;
    options.num_classes = num_classes;
    options.in_channels = in_channels;
    options.input_size = input_size;
    options.dropout = dropout;
    options.small_input = small_input;
    options.seed = seed;
    options.drop_path = drop_path;
    ModelObject *m = (ModelObject *)self;
    if (m->built) tg_model_free(&m->model);
    m->built = 0;
    m->planned_for = 0;
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_model_create(&m->model, arch, &options);
    Py_END_ALLOW_THREADS
    if (status != TG_STATUS_OK) {
        tg_py_raise(status);
        return -1;
    }
    m->built = 1;
    return 0;
}

static void model_dealloc(PyObject *self)
{
    ModelObject *m = (ModelObject *)self;
    if (m->built) tg_model_free(&m->model);
    Py_TYPE(self)->tp_free(self);
}

static int ensure_plan(ModelObject *m, int training_step)
{
    int wanted = training_step ? 2 : 1;
    if (m->planned_for == wanted && m->model.graph.planned) return 0;
    tg_status status = tg_graph_plan(&m->model.graph, training_step ? m->model.loss : -1, NULL);
    if (status != TG_STATUS_OK) {
        tg_py_raise(status);
        return -1;
    }
    m->planned_for = wanted;
    return 0;
}

/* Shapes the model's input for x, and its target for y (or, with y NULL, for a
 * batch of x's size), in one step; the graph replans on a new shape. */
static int shape_inputs(ModelObject *m, PyObject *x, PyObject *y)
{
    tg_tensor xs, ys;
    memset(&ys, 0, sizeof ys);
    if (tg_py_tensor_from_object(x, &xs, "x") != 0) return -1;
    if (y && tg_py_tensor_from_object(y, &ys, "y") != 0) {
        tg_tensor_free(&xs);
        return -1;
    }
    tg_graph *graph = &m->model.graph;
    const tg_tensor *target = &graph->nodes[m->model.target].value;
    int64_t shapes[2][TG_MAX_DIMS];
    int ndims[2] = {xs.ndim, y ? ys.ndim : target->ndim};
    memcpy(shapes[0], xs.shape, sizeof shapes[0]);
    memcpy(shapes[1], y ? ys.shape : target->shape, sizeof shapes[1]);
    if (!y) {
        shapes[1][0] = xs.ndim ? xs.shape[0] : 1;
        for (int d = 1; d < target->ndim && d + 1 < xs.ndim; d++) shapes[1][d] = xs.shape[d + 1];
    }
    tg_status status = TG_STATUS_OK;
    int changed = !tg_shape_equal(&xs, &graph->nodes[m->model.input].value) || ndims[1] != target->ndim;
    for (int d = 0; d < ndims[1] && !changed; d++) changed = shapes[1][d] != target->shape[d];
    if (changed) {
        tg_node_id ids[2] = {m->model.input, m->model.target};
        status = tg_graph_set_input_shapes(graph, 2, ids, ndims, (const int64_t (*)[TG_MAX_DIMS])shapes);
        m->planned_for = 0;
    }
    tg_tensor_free(&xs);
    tg_tensor_free(&ys);
    if (status != TG_STATUS_OK) {
        tg_py_raise(status);
        return -1;
    }
    return 0;
}

static int copy_in(ModelObject *m, tg_node_id input, PyObject *array, const char *what)
{
    tg_tensor src;
    if (tg_py_tensor_from_object(array, &src, what) != 0) return -1;
    tg_status status = tg_graph_feed(&m->model.graph, input, &src);
    tg_tensor_free(&src);
    if (status != TG_STATUS_OK) {
        tg_py_raise(status);
        return -1;
    }
    return 0;
}

static PyObject *run_graph(ModelObject *m, int training, int backward)
{
    tg_py_sigint_state sigint;
    tg_py_interruptible_begin(&sigint);
    tg_status status;
    tg_graph *graph = &m->model.graph;
    tg_node_id last = backward ? m->model.loss : m->model.output;
    Py_BEGIN_ALLOW_THREADS
    status = tg_graph_forward_to(graph, training, last);
    if (status == TG_STATUS_OK && backward) status = tg_graph_backward(graph);
    Py_END_ALLOW_THREADS
    tg_py_interruptible_end(&sigint);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    Py_RETURN_NONE;
}

static PyObject *copy_value(const tg_tensor *t)
{
    tg_tensor copy;
    tg_status status = tg_tensor_init(&copy, t->dtype, t->ndim, t->shape);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    memcpy(copy.data, t->data, tg_tensor_nbytes(t));
    return tg_py_tensor_wrap(&copy);
}

static PyObject *model_forward(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"x", "train", NULL};
    PyObject *x;
    int train = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|p", keywords, &x, &train)) return NULL;
    ModelObject *m = (ModelObject *)self;
    if (shape_inputs(m, x, NULL) != 0 || ensure_plan(m, 0) != 0 || copy_in(m, m->model.input, x, "x") != 0)
        return NULL;
    PyObject *ran = run_graph(m, train, 0);
    if (!ran) return NULL;
    Py_DECREF(ran);
    return copy_value(&m->model.graph.nodes[m->model.output].value);
}

/* One training step's forward and backward; returns the loss. Parameter gradients
 * accumulate unless zero_grad is set (default). */
static PyObject *model_step(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"x", "y", "zero_grad", "train", NULL};
    PyObject *x, *y;
    int zero_grad = 1, train = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|pp", keywords, &x, &y, &zero_grad, &train)) return NULL;
    ModelObject *m = (ModelObject *)self;
    if (shape_inputs(m, x, y) != 0 || ensure_plan(m, 1) != 0 ||
        copy_in(m, m->model.input, x, "x") != 0 || copy_in(m, m->model.target, y, "y") != 0)
        return NULL;
    if (zero_grad) tg_graph_zero_grad(&m->model.graph);
    PyObject *ran = run_graph(m, train, 1);
    if (!ran) return NULL;
    Py_DECREF(ran);
    const tg_tensor *loss = &m->model.graph.nodes[m->model.loss].value;
    return PyFloat_FromDouble(((const float *)loss->data)[0]);
}

/* {name: Tensor} of parameters and buffers (views sharing their storage), or of
 * parameter gradients (copies) when grads=True. */
static PyObject *model_tensors(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"grads", "buffers", NULL};
    int grads = 0, buffers = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|pp", keywords, &grads, &buffers)) return NULL;
    tg_graph *graph = &model_of(self)->graph;
    PyObject *dict = PyDict_New();
    for (int i = 0; dict && i < graph->n_nodes; i++) {
        tg_node *node = &graph->nodes[i];
        int is_param = node->kind == TG_NODE_KIND_PARAM;
        if (!is_param && !(node->kind == TG_NODE_KIND_BUFFER && buffers && !grads)) continue;
        PyObject *item;
        if (grads) {
            item = copy_value(&node->grad);
        } else {
            tg_tensor view;
            tg_status status = tg_tensor_share(&view, &node->value, node->value.ndim, node->value.shape);
            item = status == TG_STATUS_OK ? tg_py_tensor_wrap(&view) : tg_py_raise(status);
        }
        if (!item || PyDict_SetItemString(dict, node->name, item) != 0) {
            Py_XDECREF(item);
            Py_DECREF(dict);
            return NULL;
        }
        Py_DECREF(item);
    }
    return dict;
}

static PyObject *model_parameter_count(PyObject *self, PyObject *unused)
{
    return PyLong_FromLongLong(tg_model_parameter_count(model_of(self)));
}

static PyObject *model_memory(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"batch", "training", NULL};
    long long batch = 0;
    int training = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|Lp", keywords, &batch, &training)) return NULL;
    ModelObject *m = (ModelObject *)self;
    tg_graph *graph = &m->model.graph;
    if (batch > 0) {
        const tg_tensor *in = &graph->nodes[m->model.input].value, *target = &graph->nodes[m->model.target].value;
        int64_t shapes[2][TG_MAX_DIMS];
        memcpy(shapes[0], in->shape, sizeof shapes[0]);
        memcpy(shapes[1], target->shape, sizeof shapes[1]);
        shapes[0][0] = shapes[1][0] = batch;
        tg_node_id ids[2] = {m->model.input, m->model.target};
        int ndims[2] = {in->ndim, target->ndim};
        tg_status status = tg_graph_set_input_shapes(graph, 2, ids, ndims, (const int64_t (*)[TG_MAX_DIMS])shapes);
        if (status != TG_STATUS_OK) return tg_py_raise(status);
        m->planned_for = 0;
    }
    if (ensure_plan(m, training) != 0) return NULL;
    return Py_BuildValue("{s:n,s:n}", "arena_bytes", (Py_ssize_t)graph->arena_bytes, "persistent_bytes",
                         (Py_ssize_t)tg_graph_persistent_bytes(graph));
}

static PyObject *model_freeze(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"pattern", "frozen", NULL};
    const char *pattern;
    int frozen = 1, matched = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|p", keywords, &pattern, &frozen)) return NULL;
    tg_status status = tg_model_freeze(model_of(self), pattern, frozen, &matched);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    return PyLong_FromLong(matched);
}

/* {parameter name: requires_grad} */
static PyObject *model_requires_grad(PyObject *self, PyObject *unused)
{
    tg_graph *graph = &model_of(self)->graph;
    PyObject *dict = PyDict_New();
    for (int i = 0; dict && i < graph->n_nodes; i++) {
        tg_node *node = &graph->nodes[i];
        if (node->kind != TG_NODE_KIND_PARAM) continue;
        if (PyDict_SetItemString(dict, node->name, node->requires_grad ? Py_True : Py_False) != 0) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    return dict;
}

static PyObject *model_get_arch(PyObject *self, void *closure) { return PyUnicode_FromString(model_of(self)->arch); }

static PyObject *model_get_options(PyObject *self, void *closure)
{
    const tg_model_options *o = &model_of(self)->options;
    PyObject *weights = PyList_New((Py_ssize_t)o->n_class_weights);
    for (int64_t i = 0; weights && i < o->n_class_weights; i++) {
        PyObject *w = PyFloat_FromDouble(o->class_weights[i]);
        if (!w) {
            Py_CLEAR(weights);
            break;
        }
        PyList_SET_ITEM(weights, (Py_ssize_t)i, w);
    }
    if (!weights) return NULL;
    return Py_BuildValue("{s:L,s:L,s:L,s:d,s:i,s:K,s:d,s:s,s:i,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:N}", "num_classes",
                         (long long)o->num_classes, "in_channels", (long long)o->in_channels, "input_size",
                         (long long)o->input_size, "dropout", o->dropout, "small_input", o->small_input, "seed",
                         (unsigned long long)o->seed, "drop_path", o->drop_path, "encoder", o->encoder, "upsample",
                         o->upsample, "loss_ce", o->loss_ce, "loss_dice", o->loss_dice, "loss_focal", o->loss_focal,
                         "focal_gamma", o->focal_gamma, "focal_alpha", o->focal_alpha, "dice_smooth", o->dice_smooth,
                         "label_smoothing", o->label_smoothing, "class_weights", weights);
}

/* ranges: a writable float32 numpy array [n_nodes, 2]; -1 with an exception otherwise. */
static int ranges_buffer(PyObject *ranges, const tg_graph *graph, Py_buffer *view, int writable)
{
    if (PyObject_GetBuffer(ranges, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) != 0)
        return -1;
    if (view->itemsize != 4 || !view->format || strcmp(view->format, "f") != 0 ||
        view->len != (Py_ssize_t)sizeof(float) * 2 * graph->n_nodes) {
        PyErr_Format(PyExc_ValueError, "quantize: ranges must be a C-contiguous float32 array of shape (%d, 2) "
                     "(one (min, max) per graph node)", graph->n_nodes);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* calibrate(x, ranges): widens ranges [n_nodes, 2] (min, max) with the inputs of the
 * quantizable layers on the float32 batch x (quantize.h). */
static PyObject *model_calibrate(PyObject *self, PyObject *args)
{
    PyObject *x, *ranges;
    if (!PyArg_ParseTuple(args, "OO", &x, &ranges)) return NULL;
    ModelObject *m = (ModelObject *)self;
    Py_buffer view;
    tg_tensor images;
    if (ranges_buffer(ranges, &m->model.graph, &view, 1) != 0) return NULL;
    if (tg_py_tensor_from_object(x, &images, "x") != 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_quant_calibrate(&m->model, &images, view.buf);
    Py_END_ALLOW_THREADS
    m->planned_for = 0;
    tg_tensor_free(&images);
    PyBuffer_Release(&view);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    Py_RETURN_NONE;
}

/* quantize(ranges) -> (Model, layers quantized): the int8 model of the calibrated ranges. */
static PyObject *model_quantize(PyObject *self, PyObject *args)
{
    PyObject *ranges;
    if (!PyArg_ParseTuple(args, "O", &ranges)) return NULL;
    ModelObject *m = (ModelObject *)self;
    Py_buffer view;
    if (ranges_buffer(ranges, &m->model.graph, &view, 0) != 0) return NULL;
    ModelObject *q = (ModelObject *)tg_py_model_type.tp_alloc(&tg_py_model_type, 0);
    if (!q) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int count = 0;
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_model_quantize(&q->model, &m->model, view.buf, &count);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (status != TG_STATUS_OK) {
        Py_DECREF(q);
        return tg_py_raise(status);
    }
    q->built = 1;
    return Py_BuildValue("(Ni)", (PyObject *)q, count);
}

static PyObject *model_node_count(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(model_of(self)->graph.n_nodes);
}

static PyGetSetDef model_getset[] = {
    {"arch", model_get_arch, NULL, "architecture name", NULL},
    {"options", model_get_options, NULL, "creation options", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef model_methods[] = {
    {"forward", (PyCFunction)(void (*)(void))model_forward, METH_VARARGS | METH_KEYWORDS,
     "forward(x, train=False) -> logits"},
    {"step", (PyCFunction)(void (*)(void))model_step, METH_VARARGS | METH_KEYWORDS,
     "step(x, y, zero_grad=True, train=True) -> loss: forward and backward"},
    {"tensors", (PyCFunction)(void (*)(void))model_tensors, METH_VARARGS | METH_KEYWORDS,
     "tensors(grads=False, buffers=True) -> {name: Tensor}"},
    {"freeze", (PyCFunction)(void (*)(void))model_freeze, METH_VARARGS | METH_KEYWORDS,
     "freeze(pattern, frozen=True) -> parameters matched (glob, module prefix or 'stem')"},
    {"requires_grad", model_requires_grad, METH_NOARGS, "{parameter name: requires_grad}"},
    {"parameter_count", model_parameter_count, METH_NOARGS, "trainable parameters (buffers excluded)"},
    {"memory", (PyCFunction)(void (*)(void))model_memory, METH_VARARGS | METH_KEYWORDS,
     "memory(batch=0, training=True) -> planned bytes of one step, before running it"},
    {"calibrate", model_calibrate, METH_VARARGS,
     "calibrate(x, ranges): widens ranges float32 [node_count(), 2] with the quantizable layers' inputs on x"},
    {"quantize", model_quantize, METH_VARARGS, "quantize(ranges) -> (int8 Model, layers quantized)"},
    {"node_count", model_node_count, METH_NOARGS, "nodes in the graph"},
    {NULL, NULL, 0, NULL},
};

static PyObject *py_architectures(PyObject *self, PyObject *unused)
{
    PyObject *dict = PyDict_New();
    for (int i = 0; dict && i < tg_arch_count(); i++) {
        PyObject *summary = PyUnicode_FromString(tg_arch_at(i)->summary);
        if (!summary || PyDict_SetItemString(dict, tg_arch_at(i)->name, summary) != 0) {
            Py_XDECREF(summary);
            Py_DECREF(dict);
            return NULL;
        }
        Py_DECREF(summary);
    }
    return dict;
}

tg_graph *tg_py_graph_from(PyObject *obj)
{
    if (PyObject_TypeCheck(obj, &tg_py_model_type)) return &model_of(obj)->graph;
    if (PyObject_TypeCheck(obj, &tg_py_graph_type)) return tg_py_graph_of(obj);
    PyObject *inner = PyObject_GetAttrString(obj, "_c");
    if (inner) {
        tg_graph *graph = PyObject_TypeCheck(inner, &tg_py_model_type) ? &model_of(inner)->graph : NULL;
        Py_DECREF(inner);
        if (graph) return graph;
    }
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "expected a trugrade Graph or Model, got %.100s", Py_TYPE(obj)->tp_name);
    return NULL;
}

PyMethodDef tg_py_models_methods[] = {
    {"architectures", py_architectures, METH_NOARGS, "architectures() -> {name: summary}"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject tg_py_model_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "trugrade._C.Model",
    .tp_basicsize = sizeof(ModelObject),
    .tp_dealloc = model_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Model(arch, num_classes=1000, in_channels=3, input_size=224, dropout=-1, small_input=-1, seed=0, "
              "drop_path=-1, encoder='', upsample=0, loss_ce=1, loss_dice=0, loss_focal=0, focal_gamma=2, "
              "class_weights=None, focal_alpha=-1, dice_smooth=1, label_smoothing=0)",
    .tp_methods = model_methods,
    .tp_getset = model_getset,
    .tp_init = model_init,
    .tp_new = PyType_GenericNew,
};
