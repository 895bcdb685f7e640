/* module.c: trugrade._C, the only code that includes Python.h.
 *
 * It converts Python objects to C tensors and attrs, releases the GIL around C
 * work, and turns a (status, message) from the core into an exception in one
 * place: tg_py_raise. No numerics live here. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <signal.h>
#include <string.h>

#include "../core/status.h"
#include "../core/tensor.h"
#include "../core/threads.h"
#include "../ops/op.h"
#include "binding.h"

/* ---- errors: the one mapping from status to exception ---- */

static PyObject *exception_for_status[TG_STATUS_COUNT];

static const char *const exception_names[TG_STATUS_COUNT] = {
    [TG_STATUS_SHAPE] = "ShapeError",       [TG_STATUS_DTYPE] = "DTypeError",
    [TG_STATUS_VALUE] = "TrugradeValueError", [TG_STATUS_CONFIG] = "ConfigError",
    [TG_STATUS_DATASET] = "DatasetError",   [TG_STATUS_DECODE] = "DecodeError",
    [TG_STATUS_IO] = "TrugradeIOError",     [TG_STATUS_NOMEM] = "OutOfMemoryError",
    [TG_STATUS_UNSUPPORTED] = "UnsupportedError", [TG_STATUS_INTERNAL] = "TrugradeError",
};

PyObject *tg_py_raise(tg_status status)
{
    /* NOTE: a message may quote bytes of a file or a path that are not UTF-8. */
    const char *text = tg_error_message();
    PyObject *message = PyUnicode_DecodeUTF8(text, (Py_ssize_t)strlen(text), "backslashreplace");
    if (!message) return NULL;
    PyObject *type = (status > 0 && status < TG_STATUS_COUNT) ? exception_for_status[status] : NULL;
    if (!type) type = exception_for_status[TG_STATUS_INTERNAL];
    if (status == TG_STATUS_INTERRUPTED) type = PyExc_KeyboardInterrupt;
    PyErr_SetObject(type ? type : PyExc_RuntimeError, message);
    Py_DECREF(message);
    return NULL;
}

static int load_exceptions(void)
{
    PyObject *errors = PyImport_ImportModule("trugrade.errors");
    if (!errors) return -1;
    for (int s = 1; s < TG_STATUS_COUNT; s++) {
        if (!exception_names[s]) continue;
        exception_for_status[s] = PyObject_GetAttrString(errors, exception_names[s]);
        if (!exception_for_status[s]) {
            Py_DECREF(errors);
            return -1;
        }
    }
    Py_DECREF(errors);
    return 0;
}

/* ---- Ctrl-C during C work ---- */

static void on_sigint(int signo)
{
    (void)signo;
    tg_interrupt_request();
}

void tg_py_interruptible_begin(tg_py_sigint_state *state)
{
    tg_interrupt_clear();
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_sigint;
    sigemptyset(&action.sa_mask);
    state->installed = PyGILState_Check() && sigaction(SIGINT, &action, &state->previous) == 0;
}

void tg_py_interruptible_end(tg_py_sigint_state *state)
{
    if (state->installed) sigaction(SIGINT, &state->previous, NULL);
}

/* ---- tensors from Python buffers ---- */

static int dtype_from_format(const Py_buffer *view, tg_dtype *out)
{
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    char c = f[0];
    if (f[1] != '\0') c = 0;
    switch (c) {
    case 'f': *out = TG_DTYPE_F32; return 0;
    case 'B': *out = TG_DTYPE_U8; return 0;
    case 'b': *out = TG_DTYPE_I8; return 0;
    case 'H': *out = TG_DTYPE_U16; return 0;
    case 'i': *out = TG_DTYPE_I32; return view->itemsize == 4 ? 0 : -1;
    case 'l': case 'q': *out = TG_DTYPE_I64; return view->itemsize == 8 ? 0 : -1;
    default: return -1;
    }
}

typedef struct foreign_owner {
    Py_buffer view;
} foreign_owner;

static void release_foreign(void *data, void *owner)
{
    (void)data;
    foreign_owner *o = owner;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyBuffer_Release(&o->view);
    PyGILState_Release(gil);
    PyMem_RawFree(o);
}

int tg_py_tensor_from_object(PyObject *obj, tg_tensor *out, const char *what)
{
    foreign_owner *owner = PyMem_RawMalloc(sizeof *owner);
    if (!owner) {
        PyErr_NoMemory();
        return -1;
    }
    if (PyObject_GetBuffer(obj, &owner->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        PyMem_RawFree(owner);
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous numpy array (got %.100s); use numpy.ascontiguousarray",
                     what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    tg_dtype dtype;
    if (dtype_from_format(&owner->view, &dtype) != 0) {
        PyErr_Format(exception_for_status[TG_STATUS_DTYPE],
                     "%s has element format '%s'; trugrade takes float32, uint8, uint16, int32 or int64", what,
                     owner->view.format ? owner->view.format : "?");
        PyBuffer_Release(&owner->view);
        PyMem_RawFree(owner);
        return -1;
    }
    int64_t shape[TG_MAX_DIMS];
    if (owner->view.ndim > TG_MAX_DIMS) {
        PyErr_Format(exception_for_status[TG_STATUS_SHAPE], "%s has %d dims; trugrade supports at most %d", what,
                     owner->view.ndim, TG_MAX_DIMS);
        PyBuffer_Release(&owner->view);
        PyMem_RawFree(owner);
        return -1;
    }
    for (int i = 0; i < owner->view.ndim; i++) shape[i] = owner->view.shape ? owner->view.shape[i] : owner->view.len;
    tg_status status = tg_tensor_init_foreign(out, dtype, owner->view.ndim, shape, owner->view.buf, release_foreign, owner);
    if (status != TG_STATUS_OK) {
        PyBuffer_Release(&owner->view);
        PyMem_RawFree(owner);
        tg_py_raise(status);
        return -1;
    }
    return 0;
}

/* ---- trugrade._C.Tensor: a C tensor that numpy can view without copying ---- */

typedef struct {
    PyObject_HEAD
    tg_tensor tensor;
    Py_ssize_t shape[TG_MAX_DIMS];
    Py_ssize_t strides[TG_MAX_DIMS];
} TensorObject;

static const char *buffer_format(tg_dtype dtype)
{
    switch (dtype) {
    case TG_DTYPE_F32: return "f";
    case TG_DTYPE_BF16: return "H"; /* raw bfloat16 bits; Tensor.numpy() widens */
    case TG_DTYPE_U8: return "B";
    case TG_DTYPE_U16: return "H";
    case TG_DTYPE_I32: return "i";
    case TG_DTYPE_I64: return "q";
    case TG_DTYPE_I8: return "b";
    default: return "B";
    }
}

static int tensor_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    TensorObject *t = (TensorObject *)self;
    (void)flags;
    size_t item = tg_dtype_size(t->tensor.dtype);
    Py_ssize_t stride = (Py_ssize_t)item;
    for (int d = t->tensor.ndim - 1; d >= 0; d--) {
        t->shape[d] = (Py_ssize_t)t->tensor.shape[d];
        t->strides[d] = stride;
        stride *= t->shape[d];
    }
    view->buf = t->tensor.data;
    view->obj = Py_NewRef(self);
    view->len = (Py_ssize_t)tg_tensor_nbytes(&t->tensor);
    view->readonly = 0;
    view->itemsize = (Py_ssize_t)item;
    view->format = (char *)buffer_format(t->tensor.dtype);
    view->ndim = t->tensor.ndim;
    view->shape = t->shape;
    view->strides = t->strides;
    view->suboffsets = NULL;
    view->internal = NULL;
    return 0;
}

static PyBufferProcs tensor_as_buffer = {.bf_getbuffer = tensor_getbuffer};

static void tensor_dealloc(PyObject *self)
{
    tg_tensor_free(&((TensorObject *)self)->tensor);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *tensor_get_shape(PyObject *self, void *closure)
{
    (void)closure;
    const tg_tensor *t = &((TensorObject *)self)->tensor;
    PyObject *shape = PyTuple_New(t->ndim);
    if (!shape) return NULL;
    for (int i = 0; i < t->ndim; i++) PyTuple_SET_ITEM(shape, i, PyLong_FromLongLong(t->shape[i]));
    return shape;
}

static PyObject *tensor_get_dtype(PyObject *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(tg_dtype_name(((TensorObject *)self)->tensor.dtype));
}

static PyGetSetDef tensor_getset[] = {
    {"shape", tensor_get_shape, NULL, "tuple of dims", NULL},
    {"dtype", tensor_get_dtype, NULL, "element type name", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* NOTE: dtype="bfloat16" reinterprets a uint16 array as raw bfloat16 bits (sharing its
 * memory); rounding from float32 is trugrade.Tensor's job, before it gets here. */
static PyObject *tensor_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *source;
    const char *dtype = NULL;
    static char *keywords[] = {"array", "dtype", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|z", keywords, &source, &dtype)) return NULL;
    TensorObject *self = (TensorObject *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    if (tg_py_tensor_from_object(source, &self->tensor, "array") != 0) {
        Py_DECREF(self);
        return NULL;
    }
    if (dtype && strcmp(dtype, tg_dtype_name(self->tensor.dtype)) != 0) {
        if (strcmp(dtype, "bfloat16") == 0 && self->tensor.dtype == TG_DTYPE_U16) {
            self->tensor.dtype = TG_DTYPE_BF16;
        } else {
            PyErr_Format(exception_for_status[TG_STATUS_DTYPE],
                         "Tensor: array of %s cannot be taken as dtype '%s' (bfloat16 takes uint16 bits; "
                         "trugrade.Tensor(float_array, dtype='bfloat16') rounds floats)",
                         tg_dtype_name(self->tensor.dtype), dtype);
            Py_DECREF(self);
            return NULL;
        }
    }
    return (PyObject *)self;
}

tg_tensor *tg_py_tensor_of(PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, &tg_py_tensor_type)) {
        PyErr_Format(PyExc_TypeError, "expected a trugrade Tensor (got %.100s)", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return &((TensorObject *)obj)->tensor;
}

static PyMethodDef tensor_methods[] = {
    {"__dlpack__", (PyCFunction)(void (*)(void))tg_py_tensor_dlpack, METH_VARARGS | METH_KEYWORDS,
     "__dlpack__(*, stream=None, max_version=None, dl_device=None, copy=None) -> DLPack capsule (CPU, no copy)"},
    {"__dlpack_device__", tg_py_tensor_dlpack_device, METH_NOARGS, "__dlpack_device__() -> (1, 0): the CPU"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject tg_py_tensor_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "trugrade._C.Tensor",
    .tp_basicsize = sizeof(TensorObject),
    .tp_dealloc = tensor_dealloc,
    .tp_as_buffer = &tensor_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A C tensor. Tensor(array) shares a C-contiguous numpy array's memory; "
              "numpy.asarray(tensor) views the tensor's memory and keeps it alive.",
    .tp_getset = tensor_getset,
    .tp_methods = tensor_methods,
    .tp_new = tensor_new,
};

/* The type C results are wrapped in: trugrade.Tensor once the package registers it. */
static PyTypeObject *result_tensor_type = &tg_py_tensor_type;

PyObject *tg_py_tensor_wrap(tg_tensor *tensor)
{
    TensorObject *self = (TensorObject *)result_tensor_type->tp_alloc(result_tensor_type, 0);
    if (!self) {
        tg_tensor_free(tensor);
        return NULL;
    }
    self->tensor = *tensor;
    memset(tensor, 0, sizeof *tensor);
    return (PyObject *)self;
}

/* ---- module functions ---- */

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg)
{
    (void)self;
    long count = PyLong_AsLong(arg);
    if (count == -1 && PyErr_Occurred()) return NULL;
    tg_status status = tg_threads_set((int)count);
    if (status != TG_STATUS_OK) return tg_py_raise(status);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused)
{
    (void)self; (void)unused;
    return PyLong_FromLong(tg_threads_count());
}

static PyObject *py_set_result_type(PyObject *self, PyObject *type)
{
    (void)self;
    if (!PyType_Check(type) || !PyType_IsSubtype((PyTypeObject *)type, &tg_py_tensor_type))
        return PyErr_Format(PyExc_TypeError, "the result type must subclass trugrade._C.Tensor");
    Py_INCREF(type);
    result_tensor_type = (PyTypeObject *)type;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"_set_result_type", py_set_result_type, METH_O, "_set_result_type(cls): the Tensor subclass C results use"},
    {"set_num_threads", py_set_num_threads, METH_O, "set_num_threads(n): threads the kernels use."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "get_num_threads() -> int"},
    {"tensor_from_dlpack", tg_py_tensor_from_dlpack, METH_O,
     "tensor_from_dlpack(capsule) -> Tensor sharing the producer's memory (consumes the capsule)"},
    TG_PY_OPS_METHODS
    TG_PY_GEMM_BENCH_METHODS
    TG_PY_AUGMENT_METHODS
    TG_PY_DATASET_METHODS
    TG_PY_IMAGE_METHODS
    TG_PY_VALIDATE_METHODS
    TG_PY_LOADER_METHODS
    TG_PY_EXPORT_METHODS
    TG_PY_QUANTIZE_METHODS
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "trugrade._C", "The C core of trugrade.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__C(void)
{
    if (load_exceptions() != 0) return NULL;
    if (PyType_Ready(&tg_py_tensor_type) < 0 || PyType_Ready(&tg_py_graph_type) < 0 ||
        PyType_Ready(&tg_py_model_type) < 0 || PyType_Ready(&tg_py_optimizer_type) < 0 ||
        PyType_Ready(&tg_py_schedule_type) < 0 || PyType_Ready(&tg_py_trainer_type) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (!module) return NULL;
    if (PyModule_AddObjectRef(module, "Tensor", (PyObject *)&tg_py_tensor_type) < 0 ||
        PyModule_AddObjectRef(module, "Graph", (PyObject *)&tg_py_graph_type) < 0 ||
        PyModule_AddObjectRef(module, "Model", (PyObject *)&tg_py_model_type) < 0 ||
        PyModule_AddObjectRef(module, "Optimizer", (PyObject *)&tg_py_optimizer_type) < 0 ||
        PyModule_AddObjectRef(module, "Schedule", (PyObject *)&tg_py_schedule_type) < 0 ||
        PyModule_AddObjectRef(module, "Trainer", (PyObject *)&tg_py_trainer_type) < 0 ||
        PyModule_AddFunctions(module, tg_py_train_methods) < 0 ||
        PyModule_AddFunctions(module, tg_py_models_methods) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
