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

/* augment.c: augmentation pipelines. */
PyObject *tg_py_augment_pipeline(PyObject *self, PyObject *args);
PyObject *tg_py_augment_apply(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *tg_py_augment_apply_many(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *tg_py_augment_output_shape(PyObject *self, PyObject *args);
PyObject *tg_py_augment_scratch_bytes(PyObject *self, PyObject *args);
PyObject *tg_py_augment_multiscale_size(PyObject *self, PyObject *args);
PyObject *tg_py_augment_transforms(PyObject *self, PyObject *unused);
#define TG_PY_AUGMENT_METHODS                                                                             \
    {"augment_pipeline", tg_py_augment_pipeline, METH_VARARGS,                                            \
     "augment_pipeline([(name, params), ...], min_box_area_fraction=0, mask_fill=0) -> pipeline capsule"}, \
    {"augment_apply", (PyCFunction)(void (*)(void))tg_py_augment_apply, METH_VARARGS | METH_KEYWORDS,     \
     "augment_apply(pipeline, [(image, mask, boxes, labels)], seed, epoch, index) -> dict"},              \
    {"augment_apply_many", (PyCFunction)(void (*)(void))tg_py_augment_apply_many,                         \
     METH_VARARGS | METH_KEYWORDS,                                                                        \
     "augment_apply_many(pipeline, [[(image, mask, boxes, labels)], ...], seed, epoch, first_index)"},     \
    {"augment_output_shape", tg_py_augment_output_shape, METH_VARARGS,                                    \
     "augment_output_shape(pipeline, c, h, w, seed=0, epoch=0, index=0) -> (c, h, w)"},                   \
    {"augment_scratch_bytes", tg_py_augment_scratch_bytes, METH_VARARGS,                                  \
     "augment_scratch_bytes(pipeline, c, h, w, n_boxes=0) -> int"},                                       \
    {"augment_multiscale_size", tg_py_augment_multiscale_size, METH_VARARGS,                              \
     "augment_multiscale_size(sizes, seed, batch_index) -> int"},                                         \
    {"augment_transforms", tg_py_augment_transforms, METH_NOARGS, "augment_transforms() -> {name: [params]}"},

#endif
