/* train.c (binding): trugrade._C.Trainer, the C training loop over in-memory
 * arrays or a batch loader (trugrade.data.Loader's capsule), one epoch per call,
 * its progress readable from another thread. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <string.h>

#include "../core/threads.h"
#include "../data/augment.h"
#include "../data/loader.h"
#include "../ops/gemm.h"
#include "../train/trainer.h"
#include "binding.h"

typedef struct {
    PyObject_HEAD
    tg_trainer trainer;
    tg_tensor images, labels;
    tg_memory_source memory;
    int bound;           /* memory holds scratch from tg_memory_source_bind */
    PyObject *model;     /* keeps the model alive */
    PyObject *pipeline;  /* keeps the augment pipeline alive */
    PyObject *loader;    /* keeps the loader capsule alive, or NULL */
    int ready;
} TrainerObject;

static int parse_channels(PyObject *obj, float *out, int64_t channels, float fallback, const char *what)
{
    for (int64_t c = 0; c < TG_MAX_CHANNELS; c++) out[c] = fallback;
    if (!obj || obj == Py_None) return 0;
    PyObject *seq = PySequence_Fast(obj, "mean/std must be sequences of floats");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n != 1 && n != channels) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "%s has %zd values; the images have %lld channels", what, n, (long long)channels);
        return -1;
    }
    for (int64_t c = 0; c < channels; c++) out[c] = (float)PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, n == 1 ? 0 : c));
    Py_DECREF(seq);
    return PyErr_Occurred() ? -1 : 0;
}

static int parse_optimizer(PyObject *kwargs, tg_optim_config *c)
{
    const char *name = "sgd";
    PyObject *v = kwargs ? PyDict_GetItemString(kwargs, "optimizer") : NULL;
    if (v && !(name = PyUnicode_AsUTF8(v))) return -1;
    tg_optim_kind kind;
    if (strcmp(name, "sgd") == 0) kind = TG_OPTIM_KIND_SGD;
    else if (strcmp(name, "adam") == 0) kind = TG_OPTIM_KIND_ADAM;
    else if (strcmp(name, "adamw") == 0) kind = TG_OPTIM_KIND_ADAMW;
    else {
        PyErr_Format(PyExc_ValueError, "unknown optimizer '%s'; use sgd, adam or adamw", name);
        return -1;
    }
    tg_optim_config_default(c, kind);
    struct { const char *key; double *field; } doubles[] = {
        {"momentum", &c->momentum}, {"dampening", &c->dampening}, {"beta1", &c->beta1}, {"beta2", &c->beta2},
        {"eps", &c->eps}, {"weight_decay", &c->weight_decay},
    };
    for (size_t i = 0; i < sizeof doubles / sizeof *doubles; i++) {
        v = kwargs ? PyDict_GetItemString(kwargs, doubles[i].key) : NULL;
        if (v && (*doubles[i].field = PyFloat_AsDouble(v)) == -1.0 && PyErr_Occurred()) return -1;
    }
    v = kwargs ? PyDict_GetItemString(kwargs, "nesterov") : NULL;
    if (v) c->nesterov = PyObject_IsTrue(v);
    v = kwargs ? PyDict_GetItemString(kwargs, "decay_norm_and_bias") : NULL;
    if (v) c->decay_norm_and_bias = PyObject_IsTrue(v);
    return 0;
}

static int parse_schedule(PyObject *kwargs, tg_schedule_config *c, double lr, int64_t steps_per_epoch, int64_t epochs)
{
    static const char *const names[] = {"constant", "step", "multistep", "cosine", "warmup_cosine", "onecycle", "plateau"};
    const char *name = "constant";
    PyObject *v = kwargs ? PyDict_GetItemString(kwargs, "schedule") : NULL;
    if (v && !(name = PyUnicode_AsUTF8(v))) return -1;
    int kind = -1;
    for (int i = 0; i < (int)(sizeof names / sizeof *names); i++)
        if (strcmp(name, names[i]) == 0) kind = i;
    if (kind < 0) {
        PyErr_Format(PyExc_ValueError, "unknown schedule '%s'", name);
        return -1;
    }
    tg_schedule_config_default(c, (tg_schedule_kind)kind, lr);
    c->steps_per_epoch = steps_per_epoch;
    c->total_steps = steps_per_epoch * epochs;
    v = kwargs ? PyDict_GetItemString(kwargs, "warmup_epochs") : NULL;
    if (v) c->warmup_steps = (int64_t)(PyFloat_AsDouble(v) * (double)steps_per_epoch);
    struct { const char *key; double *field; } doubles[] = {
        {"gamma", &c->gamma}, {"min_lr", &c->min_lr}, {"pct_start", &c->pct_start}, {"factor", &c->factor},
        {"max_lr", &c->lr},
    };
    for (size_t i = 0; i < sizeof doubles / sizeof *doubles; i++) {
        v = kwargs ? PyDict_GetItemString(kwargs, doubles[i].key) : NULL;
        if (v && (*doubles[i].field = PyFloat_AsDouble(v)) == -1.0 && PyErr_Occurred()) return -1;
    }
    v = kwargs ? PyDict_GetItemString(kwargs, "step_size") : NULL;
    if (v) c->step_size = PyLong_AsLongLong(v);
    v = kwargs ? PyDict_GetItemString(kwargs, "patience") : NULL;
    if (v) c->patience = (int)PyLong_AsLong(v);
    v = kwargs ? PyDict_GetItemString(kwargs, "milestones") : NULL;
    if (v) {
        PyObject *seq = PySequence_Fast(v, "milestones must be a list of epochs");
        if (!seq) return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        for (Py_ssize_t i = 0; i < n && i < TG_MAX_MILESTONES; i++)
            c->milestones[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        c->n_milestones = (int)(n < TG_MAX_MILESTONES ? n : TG_MAX_MILESTONES);
        Py_DECREF(seq);
    }
    return PyErr_Occurred() ? -1 : 0;
}

static double dict_double(PyObject *kwargs, const char *key, double fallback)
{
    PyObject *v = kwargs ? PyDict_GetItemString(kwargs, key) : NULL;
    return v ? PyFloat_AsDouble(v) : fallback;
}

static int trainer_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    TrainerObject *t = (TrainerObject *)self;
    PyObject *model, *images, *labels, *v0;
    long long max_batch = 64;
    if (!PyArg_ParseTuple(args, "OOO", &model, &images, &labels)) return -1;
    if (!PyObject_TypeCheck(model, &tg_py_model_type)) {
        PyErr_SetString(PyExc_TypeError, "Trainer(model, ...): model must be a trugrade._C.Model");
        return -1;
    }
    if (t->ready) {
        PyErr_SetString(PyExc_RuntimeError, "a Trainer is initialised once");
        return -1;
    }
    tg_batch_source source;
    tg_status status;
    PyObject *pipeline = NULL;
    tg_train_options options = {.epochs = 1, .batch_size = 64, .shuffle = 1, .accumulate = 1};
    if (labels == Py_None && PyCapsule_CheckExact(images)) {
        /* Trainer(model, loader, None): batches from the loader, which normalises them itself */
        struct tg_loader *loader = tg_py_loader_of(images);
        if (!loader) return -1;
        int64_t shape[3];
        int segmentation;
        tg_loader_sample_shape(loader, shape, &segmentation);
        if (parse_channels(NULL, t->memory.mean, shape[0], 0.0f, "mean") != 0 ||
            parse_channels(NULL, t->memory.std, shape[0], 1.0f, "std") != 0)
            return -1;
        status = tg_loader_source(loader, &source);
        options.batch_size = tg_loader_batch_size(loader);
        t->loader = Py_NewRef(images);
    } else {
        if (tg_py_tensor_from_object(images, &t->images, "images") != 0) return -1;
        if (tg_py_tensor_from_object(labels, &t->labels, "labels") != 0) return -1;
        t->memory.images = &t->images;
        t->memory.labels = &t->labels;
        int64_t channels = t->images.ndim == 4 ? t->images.shape[1] : 1;
        if (parse_channels(kwargs ? PyDict_GetItemString(kwargs, "mean") : NULL, t->memory.mean, channels, 0.0f,
                           "mean") != 0 ||
            parse_channels(kwargs ? PyDict_GetItemString(kwargs, "std") : NULL, t->memory.std, channels, 1.0f,
                           "std") != 0)
            return -1;
        pipeline = kwargs ? PyDict_GetItemString(kwargs, "pipeline") : NULL;
        if (pipeline && pipeline != Py_None && !(t->memory.pipeline = tg_py_augment_pipeline_of(pipeline))) return -1;
        if (kwargs && (v0 = PyDict_GetItemString(kwargs, "seed"))) t->memory.seed = PyLong_AsUnsignedLongLong(v0);
        if (kwargs && (v0 = PyDict_GetItemString(kwargs, "batch_size"))) max_batch = PyLong_AsLongLong(v0);
        if (PyErr_Occurred()) return -1;
        status = tg_memory_source_bind(&t->memory, max_batch, &source);
        t->bound = status == TG_STATUS_OK;
    }
    if (status != TG_STATUS_OK) {
        tg_py_raise(status);
        return -1;
    }
    const tg_tensor *input = &tg_py_model_of(model)->graph.nodes[tg_py_model_of(model)->input].value;
    int64_t wanted = input->shape[1] * input->shape[2] * input->shape[3];
    int64_t given = t->loader ? wanted
                    : t->memory.pipeline ? t->memory.output_elements
                                         : t->images.shape[1] * t->images.shape[2] * t->images.shape[3];
    if (given != wanted) {
        tg_py_raise(tg_error(TG_STATUS_SHAPE, "the model takes %lld x %lld x %lld inputs but the %s gives %lld values "
                             "per image; resize in the augment pipeline", (long long)input->shape[1],
                             (long long)input->shape[2], (long long)input->shape[3],
                             t->memory.pipeline ? "augment pipeline" : "data", (long long)given));
        return -1;
    }
    PyObject *v;
    if (kwargs && (v = PyDict_GetItemString(kwargs, "epochs"))) options.epochs = PyLong_AsLongLong(v);
    if (kwargs && (v = PyDict_GetItemString(kwargs, "batch_size"))) options.batch_size = PyLong_AsLongLong(v);
    if (kwargs && (v = PyDict_GetItemString(kwargs, "seed"))) options.seed = PyLong_AsUnsignedLongLong(v);
    if (kwargs && (v = PyDict_GetItemString(kwargs, "shuffle"))) options.shuffle = PyObject_IsTrue(v);
    if (kwargs && (v = PyDict_GetItemString(kwargs, "accumulate"))) options.accumulate = PyLong_AsLongLong(v);
    options.grad_clip_norm = dict_double(kwargs, "grad_clip_norm", 0.0);
    options.grad_clip_value = dict_double(kwargs, "grad_clip_value", 0.0);
    if (kwargs && (v = PyDict_GetItemString(kwargs, "ema_decay")) && v != Py_None) options.ema_decay = PyFloat_AsDouble(v);
    if (kwargs && (v = PyDict_GetItemString(kwargs, "bf16"))) options.bf16 = PyObject_IsTrue(v);
    double lr = dict_double(kwargs, "lr", 0.01);
    if (PyErr_Occurred()) return -1;
    tg_optim_config optim;
    tg_schedule_config schedule;
    int64_t steps = options.batch_size > 0 ? (source.size + options.batch_size - 1) / options.batch_size : 1;
    /* the schedule counts optimizer steps: one per accumulation window (windows restart each epoch) */
    if (options.accumulate > 1) steps = (steps + options.accumulate - 1) / options.accumulate;
    if (parse_optimizer(kwargs, &optim) != 0 || parse_schedule(kwargs, &schedule, lr, steps, options.epochs) != 0)
        return -1;
    tg_model *m = tg_py_model_of(model);
    status = tg_trainer_init(&t->trainer, m, &optim, &schedule, &options, &source);
    if (status != TG_STATUS_OK) {
        tg_py_raise(status);
        return -1;
    }
    t->model = Py_NewRef(model);
    t->pipeline = pipeline && pipeline != Py_None ? Py_NewRef(pipeline) : NULL;
    t->ready = 1;
    return 0;
}

static void trainer_dealloc(PyObject *self)
{
    TrainerObject *t = (TrainerObject *)self;
    if (t->ready) tg_trainer_free(&t->trainer);
    if (t->bound) tg_memory_source_free(&t->memory);
    tg_tensor_free(&t->images);
    tg_tensor_free(&t->labels);
    Py_XDECREF(t->model);
    Py_XDECREF(t->pipeline);
    Py_XDECREF(t->loader);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *trainer_run_epoch(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"catch_sigint", NULL};
    int catch_sigint = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p", keywords, &catch_sigint)) return NULL;
    TrainerObject *t = (TrainerObject *)self;
    tg_py_sigint_state sigint = {0};
    if (catch_sigint) tg_py_interruptible_begin(&sigint);
    else tg_interrupt_clear();
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_trainer_run_epoch(&t->trainer);
    Py_END_ALLOW_THREADS
    if (catch_sigint) tg_py_interruptible_end(&sigint);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    const tg_train_progress *p = &t->trainer.progress;
    return PyFloat_FromDouble(p->loss_sum / (double)p->steps_per_epoch);
}

static PyObject *trainer_evaluate(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"images", "labels", "ema", NULL};
    TrainerObject *t = (TrainerObject *)self;
    PyObject *images_obj, *labels_obj, *ema = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O", keywords, &images_obj, &labels_obj, &ema)) return NULL;
    int ema_eval = t->trainer.ema_eval;
    if (ema != Py_None) t->trainer.ema_eval = PyObject_IsTrue(ema);
    tg_tensor images, labels, logits;
    if (tg_py_tensor_from_object(images_obj, &images, "images") != 0) return NULL;
    if (tg_py_tensor_from_object(labels_obj, &labels, "labels") != 0) {
        tg_tensor_free(&images);
        return NULL;
    }
    tg_memory_source memory = t->memory;
    memory.images = &images;
    memory.labels = &labels;
    memory.pipeline = NULL; /* evaluation images come at the model's size: normalised only */
    tg_batch_source source;
    tg_status status = tg_memory_source_bind(&memory, t->trainer.options.batch_size, &source);
    /* logits [N, classes] or [N, classes, H, W]: the model output's shape with N samples */
    const tg_model *m = t->trainer.model;
    const tg_tensor *output = &m->graph.nodes[m->output].value;
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, output->shape, sizeof shape);
    shape[0] = source.size;
    if (status == TG_STATUS_OK) status = tg_tensor_init(&logits, TG_DTYPE_F32, output->ndim, shape);
    double loss = 0.0;
    if (status == TG_STATUS_OK) {
        tg_py_sigint_state sigint;
        tg_py_interruptible_begin(&sigint);
        Py_BEGIN_ALLOW_THREADS
        status = tg_trainer_evaluate(&t->trainer, &source, logits.data, &loss);
        Py_END_ALLOW_THREADS
        t->trainer.ema_eval = ema_eval;
        tg_py_interruptible_end(&sigint);
        if (status != TG_STATUS_OK) tg_tensor_free(&logits);
    }
    tg_tensor_free(&images);
    tg_tensor_free(&labels);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    PyObject *wrapped = tg_py_tensor_wrap(&logits);
    return wrapped ? Py_BuildValue("(Nd)", wrapped, loss) : NULL;
}

static PyObject *trainer_progress(PyObject *self, PyObject *unused)
{
    const tg_train_progress *p = &((TrainerObject *)self)->trainer.progress;
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:d,s:d}", "epoch",
                         (long long)__atomic_load_n(&p->epoch, __ATOMIC_ACQUIRE), "step_in_epoch",
                         (long long)__atomic_load_n(&p->step_in_epoch, __ATOMIC_ACQUIRE), "steps_per_epoch",
                         (long long)p->steps_per_epoch, "global_step",
                         (long long)__atomic_load_n(&p->global_step, __ATOMIC_ACQUIRE), "samples_done",
                         (long long)p->samples_done, "loss", p->last_loss, "lr", p->last_lr);
}

static PyObject *trainer_observe(PyObject *self, PyObject *arg)
{
    double metric = PyFloat_AsDouble(arg);
    if (metric == -1.0 && PyErr_Occurred()) return NULL;
    tg_schedule_observe(&((TrainerObject *)self)->trainer.schedule, metric);
    Py_RETURN_NONE;
}

static PyObject *float_array(const float *data, int64_t n)
{
    tg_tensor t;
    int64_t shape[1] = {n};
    tg_status status = tg_tensor_init(&t, TG_DTYPE_F32, 1, shape);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    if (n) memcpy(t.data, data, sizeof(float) * (size_t)n);
    return tg_py_tensor_wrap(&t);
}

/* (losses, lrs) of the batches of the current epoch done so far. */
static PyObject *trainer_step_log(PyObject *self, PyObject *unused)
{
    const tg_trainer *t = &((TrainerObject *)self)->trainer;
    int64_t n = t->progress.step_in_epoch ? t->progress.step_in_epoch : t->progress.steps_per_epoch;
    PyObject *losses = float_array(t->step_losses, n), *lrs = losses ? float_array(t->step_lrs, n) : NULL;
    if (!lrs) {
        Py_XDECREF(losses);
        return NULL;
    }
    return Py_BuildValue("(NN)", losses, lrs);
}

/* Everything beyond the model's own tensors that a bit-identical resume needs:
 * ({"optim.m.<param>": array, "optim.v.<param>": array, "ema.<tensor>": array with an
 * EMA}, {counter: value}). */
static PyObject *trainer_state(PyObject *self, PyObject *unused)
{
    tg_trainer *t = &((TrainerObject *)self)->trainer;
    PyObject *arrays = PyDict_New();
    for (int i = 0; arrays && i < t->n_ema; i++) {
        char key[300];
        snprintf(key, sizeof key, "ema.%s", t->ema[i].name);
        PyObject *array = float_array(t->ema[i].average, tg_tensor_numel(t->ema[i].value));
        if (!array || PyDict_SetItemString(arrays, key, array) != 0) {
            Py_XDECREF(array);
            Py_DECREF(arrays);
            return NULL;
        }
        Py_DECREF(array);
    }
    for (int i = 0; arrays && i < t->optimizer.n_slots; i++) {
        const tg_optim_slot *slot = &t->optimizer.slots[i];
        int64_t n = tg_tensor_numel(slot->param);
        const float *buffers[2] = {slot->m, slot->v};
        const char *kinds[2] = {"m", "v"};
        for (int k = 0; k < 2; k++) {
            if (!buffers[k]) continue;
            char key[300];
            snprintf(key, sizeof key, "optim.%s.%s", kinds[k], slot->name);
            PyObject *array = float_array(buffers[k], n);
            if (!array || PyDict_SetItemString(arrays, key, array) != 0) {
                Py_XDECREF(array);
                Py_DECREF(arrays);
                return NULL;
            }
            Py_DECREF(array);
        }
    }
    if (!arrays) return NULL;
    const tg_train_progress *p = &t->progress;
    const tg_schedule *sc = &t->schedule;
    return Py_BuildValue(
        "(N{s:L,s:L,s:L,s:d,s:L,s:L,s:i,s:K,s:K,s:d,s:d,s:i,s:i})", arrays, "epoch", (long long)p->epoch,
        "step_in_epoch", (long long)p->step_in_epoch, "global_step", (long long)p->global_step, "loss_sum",
        p->loss_sum, "optimizer_steps", (long long)t->optimizer_steps, "optim_step", (long long)t->optimizer.step,
        "momentum_started", t->optimizer.momentum_started, "graph_step", (unsigned long long)t->model->graph.step,
        "graph_seed", (unsigned long long)t->model->graph.seed, "plateau_lr", sc->plateau_lr, "plateau_best", sc->best,
        "plateau_bad_epochs", sc->bad_epochs, "plateau_seen", sc->seen);
}

static int read_counter(PyObject *dict, const char *key, double *out)
{
    PyObject *v = PyDict_GetItemString(dict, key);
    if (!v) {
        PyErr_Format(PyExc_ValueError, "trainer state is missing '%s' (a checkpoint from another version?)", key);
        return -1;
    }
    *out = PyFloat_AsDouble(v);
    return PyErr_Occurred() ? -1 : 0;
}

static PyObject *trainer_load_state(PyObject *self, PyObject *args)
{
    PyObject *arrays, *counters;
    if (!PyArg_ParseTuple(args, "O!O!", &PyDict_Type, &arrays, &PyDict_Type, &counters)) return NULL;
    tg_trainer *t = &((TrainerObject *)self)->trainer;
    static const char *const keys[] = {"epoch", "step_in_epoch", "global_step", "loss_sum", "optimizer_steps",
                                       "optim_step", "momentum_started", "plateau_lr", "plateau_best",
                                       "plateau_bad_epochs", "plateau_seen"};
    double values[11];
    for (int i = 0; i < 11; i++)
        if (read_counter(counters, keys[i], &values[i]) != 0) return NULL;
    PyObject *graph_step = PyDict_GetItemString(counters, "graph_step");
    PyObject *graph_seed = PyDict_GetItemString(counters, "graph_seed");
    if (!graph_step || !graph_seed)
        return PyErr_Format(PyExc_ValueError, "trainer state is missing the graph's step or seed");
    for (int i = 0; i < t->optimizer.n_slots; i++) {
        tg_optim_slot *slot = &t->optimizer.slots[i];
        float *buffers[2] = {slot->m, slot->v};
        const char *kinds[2] = {"m", "v"};
        for (int k = 0; k < 2; k++) {
            if (!buffers[k]) continue;
            char key[300];
            snprintf(key, sizeof key, "optim.%s.%s", kinds[k], slot->name);
            PyObject *value = PyDict_GetItemString(arrays, key);
            if (!value) return PyErr_Format(PyExc_ValueError, "optimizer state has no '%s'", key);
            tg_tensor src;
            if (tg_py_tensor_from_object(value, &src, key) != 0) return NULL;
            int ok = src.dtype == TG_DTYPE_F32 && tg_tensor_numel(&src) == tg_tensor_numel(slot->param);
            if (ok) memcpy(buffers[k], src.data, tg_tensor_nbytes(&src));
            tg_tensor_free(&src);
            if (!ok) return PyErr_Format(PyExc_ValueError, "optimizer state '%s' does not fit its parameter", key);
        }
    }
    for (int i = 0; i < t->n_ema; i++) {
        char key[300];
        snprintf(key, sizeof key, "ema.%s", t->ema[i].name);
        PyObject *value = PyDict_GetItemString(arrays, key);
        if (!value)
            return PyErr_Format(PyExc_ValueError, "trainer state has no '%s' (a checkpoint of a run without "
                                "train.ema_decay?)", key);
        tg_tensor src;
        if (tg_py_tensor_from_object(value, &src, key) != 0) return NULL;
        int ok = src.dtype == TG_DTYPE_F32 && tg_tensor_numel(&src) == tg_tensor_numel(t->ema[i].value);
        if (ok) memcpy(t->ema[i].average, src.data, tg_tensor_nbytes(&src));
        tg_tensor_free(&src);
        if (!ok) return PyErr_Format(PyExc_ValueError, "EMA state '%s' does not fit its tensor", key);
    }
    tg_train_progress *p = &t->progress;
    p->epoch = (int64_t)values[0];
    p->step_in_epoch = (int64_t)values[1];
    p->global_step = (int64_t)values[2];
    p->loss_sum = values[3];
    t->optimizer_steps = (int64_t)values[4];
    t->optimizer.step = (int64_t)values[5];
    t->optimizer.momentum_started = (int)values[6];
    t->schedule.plateau_lr = values[7];
    t->schedule.best = values[8];
    t->schedule.bad_epochs = (int)values[9];
    t->schedule.seen = (int)values[10];
    t->model->graph.step = PyLong_AsUnsignedLongLong(graph_step);
    t->model->graph.seed = PyLong_AsUnsignedLongLong(graph_seed);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyObject *trainer_set_ema_eval(PyObject *self, PyObject *flag)
{
    int value = PyObject_IsTrue(flag);
    if (value < 0) return NULL;
    ((TrainerObject *)self)->trainer.ema_eval = value;
    Py_RETURN_NONE;
}

static PyObject *trainer_set_lr_scale(PyObject *self, PyObject *args)
{
    return tg_py_optimizer_set_lr_scale(&((TrainerObject *)self)->trainer.optimizer, args);
}

/* {name: EMA array} (empty without an EMA). */
static PyObject *trainer_ema_weights(PyObject *self, PyObject *unused)
{
    tg_trainer *t = &((TrainerObject *)self)->trainer;
    PyObject *dict = PyDict_New();
    for (int i = 0; dict && i < t->n_ema; i++) {
        PyObject *array = float_array(t->ema[i].average, tg_tensor_numel(t->ema[i].value));
        if (!array || PyDict_SetItemString(dict, t->ema[i].name, array) != 0) {
            Py_XDECREF(array);
            Py_DECREF(dict);
            return NULL;
        }
        Py_DECREF(array);
    }
    return dict;
}

static PyMethodDef trainer_methods[] = {
    {"ema_weights", trainer_ema_weights, METH_NOARGS, "ema_weights() -> {name: flat float32 EMA array}"},
    {"set_lr_scale", trainer_set_lr_scale, METH_VARARGS, "set_lr_scale(glob, scale) -> parameters matched"},
    {"step_log", trainer_step_log, METH_NOARGS, "step_log() -> (losses, lrs) of this epoch's batches"},
    {"state", trainer_state, METH_NOARGS, "state() -> (optimizer arrays, counters) for checkpoints"},
    {"load_state", trainer_load_state, METH_VARARGS, "load_state(arrays, counters): resume"},
    {"run_epoch", (PyCFunction)(void (*)(void))trainer_run_epoch, METH_VARARGS | METH_KEYWORDS,
     "run_epoch(catch_sigint=True) -> mean training loss of the epoch"},
    {"evaluate", (PyCFunction)(void (*)(void))trainer_evaluate, METH_VARARGS | METH_KEYWORDS,
     "evaluate(images, labels or masks, ema=None) -> (logits [N, classes] or [N, classes, H, W], mean loss); "
     "ema: on the EMA weights (None: as set by set_ema_eval, True by default when the trainer keeps one)"},
    {"set_ema_eval", trainer_set_ema_eval, METH_O, "set_ema_eval(flag): evaluate on the EMA weights or the live ones"},
    {"progress", trainer_progress, METH_NOARGS, "progress() -> dict (safe while run_epoch runs in another thread)"},
    {"observe", trainer_observe, METH_O, "observe(metric): feed reduce-on-plateau"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject tg_py_trainer_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "trugrade._C.Trainer",
    .tp_basicsize = sizeof(TrainerObject),
    .tp_dealloc = trainer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Trainer(model, images, labels, **options): the C training loop over in-memory arrays; "
               "Trainer(model, loader, None, **options) takes its batches from a trugrade.data.Loader's _loader",
    .tp_methods = trainer_methods,
    .tp_init = trainer_init,
    .tp_new = PyType_GenericNew,
};

static PyObject *py_interrupt(PyObject *self, PyObject *unused)
{
    tg_interrupt_request();
    Py_RETURN_NONE;
}

static PyObject *py_set_bf16_operands(PyObject *self, PyObject *flag)
{
    int on = PyObject_IsTrue(flag);
    if (on < 0) return NULL;
    return PyBool_FromLong(tg_gemm_set_bf16_operands(on));
}

PyMethodDef tg_py_train_methods[] = {
    {"interrupt", py_interrupt, METH_NOARGS, "interrupt(): ask running C work to stop at the next step"},
    {"set_bf16_operands", py_set_bf16_operands, METH_O,
     "set_bf16_operands(flag) -> previous: conv/linear/matmul round their operands to bfloat16 and accumulate in "
     "float32 (the mixed precision of train.bf16; a Trainer with bf16=True sets it around its own steps)"},
    {NULL, NULL, 0, NULL},
};
