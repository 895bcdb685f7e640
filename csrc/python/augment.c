/* augment.c (binding): building augmentation pipelines from Python lists and running them
 * on numpy arrays. A pipeline lives in a PyCapsule (read-only once validated); every
 * call allocates its outputs and scratch here, then runs the C core without the GIL.
 * No augmentation logic lives here. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "../core/threads.h"
#include "../data/augment.h"
#include "binding.h"

#define PIPELINE_CAPSULE "trugrade.augment.pipeline"

static void pipeline_capsule_free(PyObject *capsule)
{
    PyMem_Free(PyCapsule_GetPointer(capsule, PIPELINE_CAPSULE));
}

/* Re-records the last message with "transform N: " in front. */
static PyObject *raise_at(tg_status status, Py_ssize_t pos)
{
    char message[1024];
    snprintf(message, sizeof message, "%s", tg_error_message());
    tg_error(status, "transform %zd: %s", pos, message);
    return tg_py_raise(status);
}

/* A number, a bool or a sequence of numbers into values[]; -1 with ConfigError otherwise. */
static int read_values(PyObject *value, double *values, int capacity, int *n, Py_ssize_t pos, const char *kind,
                       const char *name)
{
    if (PyNumber_Check(value) && !PySequence_Check(value)) {
        values[0] = PyFloat_AsDouble(value);
        if (values[0] == -1.0 && PyErr_Occurred()) return -1;
        *n = 1;
        return 0;
    }
    PyObject *seq = PyUnicode_Check(value) ? NULL : PySequence_Fast(value, "");
    if (!seq || PySequence_Fast_GET_SIZE(seq) > capacity) {
        Py_XDECREF(seq);
        PyErr_Clear();
        tg_error(TG_STATUS_CONFIG, "transform %zd (%s): parameter '%s' must be a number or a list of at most %d numbers, got %.80s",
                 pos, kind, name, capacity, Py_TYPE(value)->tp_name);
        tg_py_raise(TG_STATUS_CONFIG);
        return -1;
    }
    *n = (int)PySequence_Fast_GET_SIZE(seq);
    for (int i = 0; i < *n; i++) {
        values[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (values[i] == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            Py_DECREF(seq);
            tg_error(TG_STATUS_CONFIG, "transform %zd (%s): parameter '%s' must hold numbers only", pos, kind, name);
            tg_py_raise(TG_STATUS_CONFIG);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

static int read_transform(PyObject *item, Py_ssize_t pos, tg_augment_transform *t)
{
    const char *name;
    PyObject *params;
    if (!PyArg_ParseTuple(item, "sO!", &name, &PyDict_Type, &params)) {
        PyErr_Clear();
        tg_error(TG_STATUS_CONFIG, "transform %zd: expected (name, params dict), got %.80s", pos, Py_TYPE(item)->tp_name);
        tg_py_raise(TG_STATUS_CONFIG);
        return -1;
    }
    tg_augment_kind kind;
    tg_status status = tg_augment_kind_from_name(name, &kind);
    if (status != TG_STATUS_OK) {
        raise_at(status, pos);
        return -1;
    }
    tg_augment_transform_init(t, kind);
    PyObject *key, *value;
    Py_ssize_t at = 0;
    while (PyDict_Next(params, &at, &key, &value)) {
        const char *param = PyUnicode_AsUTF8(key);
        if (!param) return -1;
        double values[TG_AUGMENT_MAX_CHANNELS];
        int n = 0;
        if (read_values(value, values, TG_AUGMENT_MAX_CHANNELS, &n, pos, name, param) != 0) return -1;
        status = tg_augment_transform_set(t, param, values, n);
        if (status != TG_STATUS_OK) {
            raise_at(status, pos);
            return -1;
        }
    }
    return 0;
}

PyObject *tg_py_augment_pipeline(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *list;
    double min_fraction = 0.0, mask_fill = 0.0;
    if (!PyArg_ParseTuple(args, "O|dd", &list, &min_fraction, &mask_fill)) return NULL;
    PyObject *seq = PySequence_Fast(list, "augment: the pipeline must be a list of transforms");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > TG_AUGMENT_MAX_TRANSFORMS) {
        Py_DECREF(seq);
        tg_error(TG_STATUS_CONFIG, "augment: a pipeline holds at most %d transforms, got %zd", TG_AUGMENT_MAX_TRANSFORMS, n);
        return tg_py_raise(TG_STATUS_CONFIG);
    }
    tg_augment_pipeline *pipeline = PyMem_Malloc(sizeof *pipeline);
    if (!pipeline) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    tg_augment_pipeline_init(pipeline);
    pipeline->min_box_area_fraction = min_fraction;
    pipeline->mask_fill = mask_fill;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (read_transform(PySequence_Fast_GET_ITEM(seq, i), i, &pipeline->transforms[i]) != 0) {
            Py_DECREF(seq);
            PyMem_Free(pipeline);
            return NULL;
        }
        pipeline->n = (int)i + 1;
    }
    Py_DECREF(seq);
    tg_status status = tg_augment_pipeline_validate(pipeline);
    if (status != TG_STATUS_OK) {
        PyMem_Free(pipeline);
        return tg_py_raise(status);
    }
    PyObject *capsule = PyCapsule_New(pipeline, PIPELINE_CAPSULE, pipeline_capsule_free);
    if (!capsule) PyMem_Free(pipeline);
    return capsule;
}

static const tg_augment_pipeline *pipeline_of(PyObject *capsule)
{
    return PyCapsule_GetPointer(capsule, PIPELINE_CAPSULE);
}

const tg_augment_pipeline *tg_py_augment_pipeline_of(PyObject *capsule)
{
    return pipeline_of(capsule);
}

/* ---- samples and outputs ---- */

typedef struct sample_tensors {
    tg_tensor image, mask, boxes, labels;
} sample_tensors;

static void sample_tensors_free(sample_tensors *s)
{
    tg_tensor_free(&s->image);
    tg_tensor_free(&s->mask);
    tg_tensor_free(&s->boxes);
    tg_tensor_free(&s->labels);
}

/* (image, mask or None, boxes float32 [N, 4] or None, labels int64 [N] or None). */
static int read_sample(PyObject *item, sample_tensors *t, tg_augment_sample *s)
{
    PyObject *image, *mask, *boxes, *labels;
    memset(t, 0, sizeof *t);
    memset(s, 0, sizeof *s);
    if (!PyArg_ParseTuple(item, "OOOO", &image, &mask, &boxes, &labels)) return -1;
    if (tg_py_tensor_from_object(image, &t->image, "image") != 0) return -1;
    s->image = &t->image;
    if (mask != Py_None) {
        if (tg_py_tensor_from_object(mask, &t->mask, "mask") != 0) return -1;
        s->mask = &t->mask;
    }
    if (boxes != Py_None) {
        if (tg_py_tensor_from_object(boxes, &t->boxes, "boxes") != 0) return -1;
        if (t->boxes.dtype != TG_DTYPE_F32 || t->boxes.ndim != 2 || t->boxes.shape[1] != 4) {
            PyErr_SetString(PyExc_ValueError, "boxes must be float32 [N, 4]");
            return -1;
        }
        s->boxes = t->boxes.data;
        s->n_boxes = t->boxes.shape[0];
    }
    if (labels != Py_None) {
        if (tg_py_tensor_from_object(labels, &t->labels, "labels") != 0) return -1;
        if (t->labels.dtype != TG_DTYPE_I64 || tg_tensor_numel(&t->labels) != s->n_boxes) {
            PyErr_SetString(PyExc_ValueError, "labels must be int64 [N], one per box");
            return -1;
        }
        s->labels = t->labels.data;
    }
    return 0;
}

typedef struct item_outputs {
    tg_tensor image, mask, boxes, labels;
    tg_augment_output out;
} item_outputs;

static void item_outputs_free(item_outputs *o)
{
    tg_tensor_free(&o->image);
    tg_tensor_free(&o->mask);
    tg_tensor_free(&o->boxes);
    tg_tensor_free(&o->labels);
}

static tg_status item_outputs_init(item_outputs *o, const tg_augment_pipeline *pipeline,
                                   const tg_augment_sample *samples, int n_samples, uint64_t seed, uint64_t epoch,
                                   uint64_t index)
{
    memset(o, 0, sizeof *o);
    const tg_tensor *image = samples[0].image;
    if (image->ndim != 3)
        return tg_error(TG_STATUS_SHAPE, "augment: the image must be (C, H, W), got %d dims", image->ndim);
    int64_t shape[3], total_boxes = 0;
    TG_TRY(tg_augment_output_shape(pipeline, image->shape[0], image->shape[1], image->shape[2], seed, epoch, index,
                                   shape));
    for (int i = 0; i < n_samples; i++) total_boxes += samples[i].n_boxes;
    TG_TRY(tg_tensor_init(&o->image, TG_DTYPE_F32, 3, shape));
    if (samples[0].mask) TG_TRY(tg_tensor_init(&o->mask, samples[0].mask->dtype, 2, shape + 1));
    int64_t box_shape[2] = {total_boxes, 4};
    TG_TRY(tg_tensor_init(&o->boxes, TG_DTYPE_F32, 2, box_shape));
    TG_TRY(tg_tensor_init(&o->labels, TG_DTYPE_I64, 1, box_shape));
    o->out = (tg_augment_output){.image = o->image.data, .image_capacity = tg_tensor_numel(&o->image),
                                 .mask = o->mask.data, .mask_capacity = o->mask.data ? tg_tensor_numel(&o->mask) : 0,
                                 .boxes = o->boxes.data, .labels = o->labels.data, .box_capacity = total_boxes};
    return TG_STATUS_OK;
}

/* {"image", "mask", "boxes", "labels", "transform"}; the tensors move into the dict. */
static PyObject *item_outputs_result(item_outputs *o)
{
    o->boxes.shape[0] = o->out.n_boxes;
    o->labels.shape[0] = o->out.n_boxes;
    const double *f = o->out.forward;
    PyObject *image = tg_py_tensor_wrap(&o->image);
    PyObject *mask = o->mask.data ? tg_py_tensor_wrap(&o->mask) : Py_NewRef(Py_None);
    PyObject *boxes = tg_py_tensor_wrap(&o->boxes);
    PyObject *labels = tg_py_tensor_wrap(&o->labels);
    if (!image || !mask || !boxes || !labels) {
        Py_XDECREF(image), Py_XDECREF(mask), Py_XDECREF(boxes), Py_XDECREF(labels);
        return NULL;
    }
    return Py_BuildValue("{s:N,s:N,s:N,s:N,s:((ddd)(ddd))}", "image", image, "mask", mask, "boxes", boxes, "labels",
                         labels, "transform", f[0], f[1], f[2], f[3], f[4], f[5]);
}

/* items: a list of lists of sample tuples (one list per item). */
PyObject *tg_py_augment_apply_many(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"pipeline", "items", "seed", "epoch", "first_index", NULL};
    PyObject *capsule, *items;
    unsigned long long seed = 0, epoch = 0, first_index = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|KKK", keywords, &capsule, &items, &seed, &epoch, &first_index))
        return NULL;
    const tg_augment_pipeline *pipeline = pipeline_of(capsule);
    if (!pipeline) return NULL;
    PyObject *seq = PySequence_Fast(items, "items must be a list of lists of samples");
    if (!seq) return NULL;
    Py_ssize_t n_items = PySequence_Fast_GET_SIZE(seq);
    int per_item = -1;
    PyObject *result = NULL;
    sample_tensors *tensors = NULL;
    tg_augment_sample *samples = NULL;
    item_outputs *outputs = NULL;
    void *scratch = NULL;
    Py_ssize_t n_read = 0, n_outputs = 0;
    for (Py_ssize_t i = 0; i < n_items; i++) {
        Py_ssize_t k = PySequence_Size(PySequence_Fast_GET_ITEM(seq, i));
        if (k < 1 || (per_item >= 0 && k != per_item)) {
            PyErr_SetString(PyExc_ValueError, "every item must have the same number (>= 1) of samples");
            goto done;
        }
        per_item = (int)k;
    }
    if (n_items == 0) {
        result = PyList_New(0);
        goto done;
    }
    tensors = PyMem_Calloc((size_t)(n_items * per_item), sizeof *tensors);
    samples = PyMem_Calloc((size_t)(n_items * per_item), sizeof *samples);
    outputs = PyMem_Calloc((size_t)n_items, sizeof *outputs);
    if (!tensors || !samples || !outputs) {
        PyErr_NoMemory();
        goto done;
    }
    size_t scratch_bytes = 0;
    for (Py_ssize_t i = 0; i < n_items; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        int64_t c = 1, h = 1, w = 1, boxes = 0;
        for (int k = 0; k < per_item; k++, n_read++) {
            PyObject *sample = PySequence_GetItem(item, k);
            int bad = !sample || read_sample(sample, &tensors[n_read], &samples[n_read]) != 0;
            Py_XDECREF(sample);
            if (bad) goto done;
            const tg_tensor *im = samples[n_read].image;
            if (im->ndim == 3) {
                c = im->shape[0] > c ? im->shape[0] : c;
                h = im->shape[1] > h ? im->shape[1] : h;
                w = im->shape[2] > w ? im->shape[2] : w;
            }
            boxes += samples[n_read].n_boxes;
        }
        size_t bytes = tg_augment_scratch_bytes(pipeline, c, h, w, boxes);
        scratch_bytes = bytes > scratch_bytes ? bytes : scratch_bytes;
        tg_status status = item_outputs_init(&outputs[i], pipeline, &samples[i * per_item], per_item, seed, epoch,
                                             first_index + (uint64_t)i);
        n_outputs = i + 1;
        if (status != TG_STATUS_OK) {
            tg_py_raise(status);
            goto done;
        }
    }
    int slots = tg_threads_count();
    scratch = tg_aligned_alloc(scratch_bytes * (size_t)slots);
    tg_augment_output *outs = PyMem_Calloc((size_t)n_items, sizeof *outs);
    if (!scratch || !outs) {
        PyMem_Free(outs);
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_items; i++) outs[i] = outputs[i].out;
    tg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = tg_augment_apply_batch(pipeline, samples, per_item, n_items, seed, epoch, first_index, scratch,
                                    scratch_bytes, slots, outs);
    Py_END_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n_items; i++) outputs[i].out = outs[i];
    PyMem_Free(outs);
    if (status != TG_STATUS_OK) {
        tg_py_raise(status);
        goto done;
    }
    result = PyList_New(n_items);
    for (Py_ssize_t i = 0; result && i < n_items; i++) {
        PyObject *entry = item_outputs_result(&outputs[i]);
        if (!entry) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, i, entry);
    }
done:
    for (Py_ssize_t i = 0; i < n_outputs; i++) item_outputs_free(&outputs[i]);
    for (Py_ssize_t i = 0; tensors && i < n_items * per_item; i++) sample_tensors_free(&tensors[i]);
    tg_aligned_free(scratch);
    PyMem_Free(outputs);
    PyMem_Free(samples);
    PyMem_Free(tensors);
    Py_DECREF(seq);
    return result;
}

/* One item: runs on the calling thread only (no thread pool), for loaders calling from their own threads. */
PyObject *tg_py_augment_apply(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"pipeline", "samples", "seed", "epoch", "index", NULL};
    PyObject *capsule, *list;
    unsigned long long seed = 0, epoch = 0, index = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|KKK", keywords, &capsule, &list, &seed, &epoch, &index))
        return NULL;
    const tg_augment_pipeline *pipeline = pipeline_of(capsule);
    if (!pipeline) return NULL;
    PyObject *seq = PySequence_Fast(list, "samples must be a list of sample tuples");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > 4) {
        Py_DECREF(seq);
        return PyErr_Format(PyExc_ValueError, "augment: 1 sample (4 for mosaic) expected, got %zd", n);
    }
    sample_tensors tensors[4];
    tg_augment_sample samples[4];
    item_outputs outputs;
    memset(tensors, 0, sizeof tensors);
    memset(&outputs, 0, sizeof outputs);
    PyObject *result = NULL;
    void *scratch = NULL;
    int64_t c = 1, h = 1, w = 1, boxes = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (read_sample(PySequence_Fast_GET_ITEM(seq, i), &tensors[i], &samples[i]) != 0) goto done;
        const tg_tensor *im = samples[i].image;
        if (im->ndim == 3) {
            c = im->shape[0] > c ? im->shape[0] : c;
            h = im->shape[1] > h ? im->shape[1] : h;
            w = im->shape[2] > w ? im->shape[2] : w;
        }
        boxes += samples[i].n_boxes;
    }
    tg_status status = item_outputs_init(&outputs, pipeline, samples, (int)n, seed, epoch, index);
    if (status != TG_STATUS_OK) {
        tg_py_raise(status);
        goto done;
    }
    size_t scratch_bytes = tg_augment_scratch_bytes(pipeline, c, h, w, boxes);
    scratch = tg_aligned_alloc(scratch_bytes);
    if (!scratch) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    status = tg_augment_apply(pipeline, samples, (int)n, seed, epoch, index, scratch, scratch_bytes, &outputs.out);
    Py_END_ALLOW_THREADS
    if (status != TG_STATUS_OK) {
        tg_py_raise(status);
        goto done;
    }
    result = item_outputs_result(&outputs);
done:
    item_outputs_free(&outputs);
    for (int i = 0; i < 4; i++) sample_tensors_free(&tensors[i]);
    tg_aligned_free(scratch);
    Py_DECREF(seq);
    return result;
}

PyObject *tg_py_augment_output_shape(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *capsule;
    long long c, h, w;
    unsigned long long seed = 0, epoch = 0, index = 0;
    if (!PyArg_ParseTuple(args, "OLLL|KKK", &capsule, &c, &h, &w, &seed, &epoch, &index)) return NULL;
    const tg_augment_pipeline *pipeline = pipeline_of(capsule);
    if (!pipeline) return NULL;
    int64_t shape[3];
    tg_status status = tg_augment_output_shape(pipeline, c, h, w, seed, epoch, index, shape);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    return Py_BuildValue("(LLL)", (long long)shape[0], (long long)shape[1], (long long)shape[2]);
}

PyObject *tg_py_augment_scratch_bytes(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *capsule;
    long long c, h, w, boxes = 0;
    if (!PyArg_ParseTuple(args, "OLLL|L", &capsule, &c, &h, &w, &boxes)) return NULL;
    const tg_augment_pipeline *pipeline = pipeline_of(capsule);
    if (!pipeline) return NULL;
    return PyLong_FromSize_t(tg_augment_scratch_bytes(pipeline, c, h, w, boxes));
}

PyObject *tg_py_augment_multiscale_size(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *list;
    unsigned long long seed, batch;
    if (!PyArg_ParseTuple(args, "OKK", &list, &seed, &batch)) return NULL;
    double sizes[TG_AUGMENT_MAX_SIZES];
    int n = 0;
    if (read_values(list, sizes, TG_AUGMENT_MAX_SIZES, &n, 0, "multi_scale", "sizes") != 0) return NULL;
    if (n < 1) {
        tg_error(TG_STATUS_CONFIG, "multi_scale: sizes must list at least one size");
        return tg_py_raise(TG_STATUS_CONFIG);
    }
    return PyLong_FromLongLong(tg_augment_multiscale_size(sizes, n, seed, batch));
}

PyObject *tg_py_augment_transforms(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    PyObject *dict = PyDict_New();
    for (int k = 0; dict && k < TG_AUGMENT_KIND_COUNT; k++) {
        const char *const *names = tg_augment_param_names((tg_augment_kind)k);
        PyObject *list = PyList_New(0);
        for (int i = 0; list && names[i]; i++) {
            PyObject *s = PyUnicode_FromString(names[i]);
            if (!s || PyList_Append(list, s) != 0) Py_CLEAR(list);
            Py_XDECREF(s);
        }
        if (!list || PyDict_SetItemString(dict, tg_augment_kind_name((tg_augment_kind)k), list) != 0) Py_CLEAR(dict);
        Py_XDECREF(list);
    }
    return dict;
}
