/* optim.c (binding): trugrade._C.Optimizer and trugrade._C.Schedule. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "../optim/optim.h"
#include "../optim/schedule.h"
#include "binding.h"

typedef struct {
    PyObject_HEAD
    tg_optimizer opt;
    PyObject *owner;    /* the Graph or Model whose parameters it updates */
    int ready;
} OptimizerObject;

static int optimizer_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"graph", "kind", "momentum", "dampening", "nesterov", "beta1", "beta2", "eps",
                               "weight_decay", "decay_norm_and_bias", NULL};
    PyObject *owner;
    const char *kind_name = "sgd";
    tg_optim_config config;
    tg_optim_config_default(&config, TG_OPTIM_KIND_SGD);
    double momentum = 0, dampening = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = -1;
    int nesterov = 0, decay_all = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|sddpddddp", keywords, &owner, &kind_name, &momentum, &dampening,
                                     &nesterov, &beta1, &beta2, &eps, &weight_decay, &decay_all))
        return -1;
    tg_optim_kind kind;
    if (strcmp(kind_name, "sgd") == 0) kind = TG_OPTIM_KIND_SGD;
    else if (strcmp(kind_name, "adam") == 0) kind = TG_OPTIM_KIND_ADAM;
    else if (strcmp(kind_name, "adamw") == 0) kind = TG_OPTIM_KIND_ADAMW;
    else {
        PyErr_Format(PyExc_ValueError, "unknown optimizer '%s'; use sgd, adam or adamw", kind_name);
        return -1;
    }
    tg_graph *graph = tg_py_graph_from(owner);
    if (!graph) return -1;
    tg_optim_config_default(&config, kind);
    config.momentum = momentum;
    config.dampening = dampening;
    config.nesterov = nesterov;
    config.beta1 = beta1;
    config.beta2 = beta2;
    config.eps = eps;
    if (weight_decay >= 0) config.weight_decay = weight_decay;
    config.decay_norm_and_bias = decay_all;
    OptimizerObject *o = (OptimizerObject *)self;
    if (o->ready) tg_optimizer_free(&o->opt);
    o->ready = 0;
    tg_status status = tg_optimizer_init(&o->opt, &config, graph);
    if (status != TG_STATUS_OK) {
        tg_py_raise(status);
        return -1;
    }
    Py_XSETREF(o->owner, Py_NewRef(owner));
    o->ready = 1;
    return 0;
}

static void optimizer_dealloc(PyObject *self)
{
    OptimizerObject *o = (OptimizerObject *)self;
    if (o->ready) tg_optimizer_free(&o->opt);
    Py_XDECREF(o->owner);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *optimizer_step(PyObject *self, PyObject *arg)
{
    double lr = PyFloat_AsDouble(arg);
    if (lr == -1.0 && PyErr_Occurred()) return NULL;
    tg_status status = tg_optimizer_step(&((OptimizerObject *)self)->opt, lr);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    Py_RETURN_NONE;
}

static PyObject *optimizer_clip_norm(PyObject *self, PyObject *arg)
{
    double max_norm = PyFloat_AsDouble(arg);
    if (max_norm == -1.0 && PyErr_Occurred()) return NULL;
    return PyFloat_FromDouble(tg_clip_grad_norm(&((OptimizerObject *)self)->opt, max_norm));
}

static PyObject *optimizer_clip_value(PyObject *self, PyObject *arg)
{
    double value = PyFloat_AsDouble(arg);
    if (value == -1.0 && PyErr_Occurred()) return NULL;
    tg_clip_grad_value(&((OptimizerObject *)self)->opt, value);
    Py_RETURN_NONE;
}

PyObject *tg_py_optimizer_set_lr_scale(struct tg_optimizer *opt, PyObject *args)
{
    const char *pattern;
    double scale;
    if (!PyArg_ParseTuple(args, "sd", &pattern, &scale)) return NULL;
    int matched = 0;
    tg_status status = tg_optimizer_set_lr_scale(opt, pattern, scale, &matched);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    return PyLong_FromLong(matched);
}

static PyObject *optimizer_set_lr_scale(PyObject *self, PyObject *args)
{
    return tg_py_optimizer_set_lr_scale(&((OptimizerObject *)self)->opt, args);
}

static PyObject *optimizer_nonfinite(PyObject *self, PyObject *unused)
{
    const char *name = tg_optimizer_first_nonfinite_grad(&((OptimizerObject *)self)->opt);
    if (!name) Py_RETURN_NONE;
    return PyUnicode_FromString(name);
}

static PyMethodDef optimizer_methods[] = {
    {"step", optimizer_step, METH_O, "step(lr): one update"},
    {"clip_grad_norm", optimizer_clip_norm, METH_O, "clip_grad_norm(max_norm) -> total norm before clipping"},
    {"clip_grad_value", optimizer_clip_value, METH_O, "clip_grad_value(value)"},
    {"set_lr_scale", optimizer_set_lr_scale, METH_VARARGS, "set_lr_scale(glob, scale) -> parameters matched"},
    {"first_nonfinite_grad", optimizer_nonfinite, METH_NOARGS, "name of the first parameter with a NaN/Inf gradient"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject tg_py_optimizer_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "trugrade._C.Optimizer",
    .tp_basicsize = sizeof(OptimizerObject),
    .tp_dealloc = optimizer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Optimizer(graph_or_model, kind='sgd'|'adam'|'adamw', momentum=0, dampening=0, nesterov=False, "
              "beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=(0, or 0.01 for adamw), decay_norm_and_bias=False)",
    .tp_methods = optimizer_methods,
    .tp_init = optimizer_init,
    .tp_new = PyType_GenericNew,
};

typedef struct {
    PyObject_HEAD
    tg_schedule schedule;
} ScheduleObject;

static const char *const schedule_names[] = {"constant", "step", "multistep", "cosine", "warmup_cosine", "onecycle",
                                             "plateau"};

static int schedule_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"kind", "lr", "gamma", "step_size", "milestones", "min_lr", "warmup_steps",
                               "total_steps", "steps_per_epoch", "pct_start", "div_factor", "final_div_factor",
                               "factor", "patience", "threshold", "mode", NULL};
    const char *kind_name, *mode = "min";
    double lr;
    tg_schedule_config c;
    tg_schedule_config_default(&c, TG_SCHEDULE_KIND_CONSTANT, 0);
    PyObject *milestones = NULL;
    long long step_size = c.step_size, warmup = 0, total = 0, per_epoch = 1;
    int patience = c.patience;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sd|dLOdLLLddddids", keywords, &kind_name, &lr, &c.gamma,
                                     &step_size, &milestones, &c.min_lr, &warmup, &total, &per_epoch, &c.pct_start,
                                     &c.div_factor, &c.final_div_factor, &c.factor, &patience, &c.threshold, &mode))
        return -1;
    int kind = -1;
    for (int i = 0; i < (int)(sizeof schedule_names / sizeof *schedule_names); i++)
        if (strcmp(kind_name, schedule_names[i]) == 0) kind = i;
    if (kind < 0) {
        PyErr_Format(PyExc_ValueError, "unknown schedule '%s'; use constant, step, multistep, cosine, warmup_cosine, "
                     "onecycle or plateau", kind_name);
        return -1;
    }
    c.kind = (tg_schedule_kind)kind;
    c.lr = lr;
    c.step_size = step_size;
    c.warmup_steps = warmup;
    c.total_steps = total;
    c.steps_per_epoch = per_epoch;
    c.patience = patience;
    c.mode_max = strcmp(mode, "max") == 0;
    if (milestones && milestones != Py_None) {
        PyObject *seq = PySequence_Fast(milestones, "milestones must be a sequence of ints");
        if (!seq) return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        if (n > TG_MAX_MILESTONES) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "at most %d milestones", TG_MAX_MILESTONES);
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) c.milestones[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        c.n_milestones = (int)n;
        Py_DECREF(seq);
        if (PyErr_Occurred()) return -1;
    }
    tg_status status = tg_schedule_init(&((ScheduleObject *)self)->schedule, &c);
    if (status != TG_STATUS_OK) {
        tg_py_raise(status);
        return -1;
    }
    return 0;
}

static PyObject *schedule_lr(PyObject *self, PyObject *arg)
{
    long long step = PyLong_AsLongLong(arg);
    if (step == -1 && PyErr_Occurred()) return NULL;
    return PyFloat_FromDouble(tg_schedule_lr(&((ScheduleObject *)self)->schedule, step));
}

static PyObject *schedule_observe(PyObject *self, PyObject *arg)
{
    double metric = PyFloat_AsDouble(arg);
    if (metric == -1.0 && PyErr_Occurred()) return NULL;
    tg_schedule_observe(&((ScheduleObject *)self)->schedule, metric);
    Py_RETURN_NONE;
}

static PyMethodDef schedule_methods[] = {
    {"lr", schedule_lr, METH_O, "lr(step) -> learning rate of that step"},
    {"observe", schedule_observe, METH_O, "observe(metric): reduce-on-plateau input"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject tg_py_schedule_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "trugrade._C.Schedule",
    .tp_basicsize = sizeof(ScheduleObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Schedule(kind, lr, ...): learning rate by step",
    .tp_methods = schedule_methods,
    .tp_init = schedule_init,
    .tp_new = PyType_GenericNew,
};
