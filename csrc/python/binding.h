/* binding.h: what the binding's files share. Python.h must come first. */
#ifndef TG_BINDING_H
#define TG_BINDING_H

#include <signal.h>

#include "../core/tensor.h"

/* Sets the Python exception for (status, tg_error_message()); returns NULL. */
PyObject *tg_py_raise(tg_status status);

/* Converts a C-contiguous buffer (numpy array) into a tensor sharing its memory;
 * the tensor keeps the buffer alive. Returns -1 with an exception set. */
int tg_py_tensor_from_object(PyObject *obj, tg_tensor *out, const char *what);

/* Moves `tensor` into a new trugrade._C.Tensor (tensor is left empty). */
PyObject *tg_py_tensor_wrap(tg_tensor *tensor);

extern PyTypeObject tg_py_tensor_type;
extern PyTypeObject tg_py_graph_type;

/* While C work runs without the GIL, SIGINT sets the core's interrupt flag. */
typedef struct tg_py_sigint_state {
    struct sigaction previous;
    int installed;
} tg_py_sigint_state;
void tg_py_interruptible_begin(tg_py_sigint_state *state);
void tg_py_interruptible_end(tg_py_sigint_state *state);

/* Fills an op's attrs struct from a dict of keywords (defaults for the rest);
 * -1 with TypeError/ValueError naming the op and keyword. */
struct tg_op_def;
int tg_py_read_attrs(const struct tg_op_def *def, PyObject *dict, void *attrs);

/* Method tables of the other binding files, spliced into the module's. */
PyObject *tg_py_op_table(PyObject *self, PyObject *unused);
PyObject *tg_py_op_forward(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *tg_py_op_backward(PyObject *self, PyObject *args, PyObject *kwargs);
#define TG_PY_OPS_METHODS                                                                       \
    {"op_table", tg_py_op_table, METH_NOARGS, "op_table() -> list of op descriptions"},         \
    {"op_forward", (PyCFunction)(void (*)(void))tg_py_op_forward, METH_VARARGS | METH_KEYWORDS, \
     "op_forward(name, inputs, attrs, training=False, seed=0) -> Tensor"},                      \
    {"op_backward", (PyCFunction)(void (*)(void))tg_py_op_backward, METH_VARARGS | METH_KEYWORDS, \
     "op_backward(name, inputs, grad_output, attrs, training=False, seed=0) -> tuple"},

/* Dataset scanning, manifests and samplers (dataset.c). */
PyObject *tg_py_dataset_scan(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *tg_py_manifest_load(PyObject *self, PyObject *args);
PyObject *tg_py_manifest_save(PyObject *self, PyObject *args);
PyObject *tg_py_sampler_indices(PyObject *self, PyObject *args, PyObject *kwargs);
#define TG_PY_DATASET_METHODS                                                                          \
    {"dataset_scan", (PyCFunction)(void (*)(void))tg_py_dataset_scan, METH_VARARGS | METH_KEYWORDS,    \
     "dataset_scan(root, ratios, seed) -> manifest JSON text"},                                       \
    {"manifest_load", tg_py_manifest_load, METH_VARARGS, "manifest_load(path) -> manifest JSON text"},  \
    {"manifest_save", tg_py_manifest_save, METH_VARARGS,                                               \
     "manifest_save(json_text, path, name): checks the manifest and writes it"},                       \
    {"sampler_indices", (PyCFunction)(void (*)(void))tg_py_sampler_indices, METH_VARARGS | METH_KEYWORDS, \
     "sampler_indices(labels, n_classes, kind, seed, epoch, factors=None, length=0) -> Tensor int64"},

#endif
