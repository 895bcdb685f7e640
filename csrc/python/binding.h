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

/* While C work runs without the GIL, SIGINT sets the core's interrupt flag. */
typedef struct tg_py_sigint_state {
    struct sigaction previous;
    int installed;
} tg_py_sigint_state;
void tg_py_interruptible_begin(tg_py_sigint_state *state);
void tg_py_interruptible_end(tg_py_sigint_state *state);

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

PyObject *tg_py_read_image(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *tg_py_read_idx(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *tg_py_probe_image(PyObject *self, PyObject *arg);
#define TG_PY_IMAGE_METHODS                                                                     \
    {"read_image", (PyCFunction)(void (*)(void))tg_py_read_image, METH_VARARGS | METH_KEYWORDS,  \
     "read_image(path, max_pixels=0, window=False) -> Tensor (C, H, W)"},                       \
    {"read_idx", (PyCFunction)(void (*)(void))tg_py_read_idx, METH_VARARGS | METH_KEYWORDS,      \
     "read_idx(path, max_pixels=0) -> Tensor (N, H, W) uint8 or (N,) int64"},                   \
    {"probe_image", tg_py_probe_image, METH_O, "probe_image(path) -> dict of the header"},

#endif
