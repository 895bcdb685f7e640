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

/* The C tensor inside a trugrade._C.Tensor; NULL with TypeError for anything else. */
tg_tensor *tg_py_tensor_of(PyObject *obj);

/* DLPack (dlpack.c): Tensor.__dlpack__, Tensor.__dlpack_device__, _C.tensor_from_dlpack. */
PyObject *tg_py_tensor_dlpack(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *tg_py_tensor_dlpack_device(PyObject *self, PyObject *unused);
PyObject *tg_py_tensor_from_dlpack(PyObject *self, PyObject *capsule);
extern PyTypeObject tg_py_graph_type;
extern PyTypeObject tg_py_model_type;
extern PyMethodDef tg_py_models_methods[];
extern PyTypeObject tg_py_optimizer_type;
extern PyTypeObject tg_py_trainer_type;
extern PyMethodDef tg_py_train_methods[];

/* The pipeline inside a capsule made by augment_pipeline(); NULL with an exception otherwise. */
struct tg_augment_pipeline;
const struct tg_augment_pipeline *tg_py_augment_pipeline_of(PyObject *capsule);

/* set_lr_scale(glob, scale) -> parameters matched, for any binding that owns an optimizer. */
struct tg_optimizer;
PyObject *tg_py_optimizer_set_lr_scale(struct tg_optimizer *opt, PyObject *args);

/* The model of a trugrade._C.Model (no type check). */
struct tg_model;
struct tg_model *tg_py_model_of(PyObject *model_object);
extern PyTypeObject tg_py_schedule_type;

/* The graph inside a trugrade._C.Graph or trugrade._C.Model; NULL with TypeError otherwise. */
struct tg_graph;
struct tg_graph *tg_py_graph_from(PyObject *obj);
/* The graph of a trugrade._C.Graph (no type check). */
struct tg_graph *tg_py_graph_of(PyObject *graph_object);

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

PyObject *tg_py_gemm_bench(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *tg_py_fma_peak_gflops(PyObject *self, PyObject *args);
#define TG_PY_GEMM_BENCH_METHODS                                                                  \
    {"gemm_bench", (PyCFunction)(void (*)(void))tg_py_gemm_bench, METH_VARARGS | METH_KEYWORDS,   \
     "gemm_bench(m, n, k, dtype='float32', backend='auto', repeat=5) -> best seconds per GEMM"},  \
    {"fma_peak_gflops", tg_py_fma_peak_gflops, METH_VARARGS,                                      \
     "fma_peak_gflops(seconds=0.2) -> float32 GFLOPS of 512-bit FMAs on one core"},
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
PyObject *tg_py_read_image(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *tg_py_read_idx(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *tg_py_probe_image(PyObject *self, PyObject *arg);
#define TG_PY_IMAGE_METHODS                                                                     \
    {"read_image", (PyCFunction)(void (*)(void))tg_py_read_image, METH_VARARGS | METH_KEYWORDS,  \
     "read_image(path, max_pixels=0, window=False) -> Tensor (C, H, W)"},                       \
    {"read_idx", (PyCFunction)(void (*)(void))tg_py_read_idx, METH_VARARGS | METH_KEYWORDS,      \
     "read_idx(path, max_pixels=0) -> Tensor (N, H, W) uint8 or (N,) int64"},                   \
    {"probe_image", tg_py_probe_image, METH_O, "probe_image(path) -> dict of the header"},
/* The dataset validator's per-file measurements (validate.c). */
PyObject *tg_py_validate_images(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *tg_py_validate_masks(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *tg_py_near_duplicate_pairs(PyObject *self, PyObject *args);
#define TG_PY_VALIDATE_METHODS                                                                          \
    {"validate_images", (PyCFunction)(void (*)(void))tg_py_validate_images, METH_VARARGS | METH_KEYWORDS, \
     "validate_images(paths, mode='decode', max_pixels=0) -> dict of columns"},                          \
    {"validate_masks", (PyCFunction)(void (*)(void))tg_py_validate_masks, METH_VARARGS | METH_KEYWORDS,   \
     "validate_masks(paths, max_pixels=0) -> dict of columns"},                                          \
    {"near_duplicate_pairs", tg_py_near_duplicate_pairs, METH_VARARGS,                                   \
     "near_duplicate_pairs(hashes int64 [n], max_distance) -> Tensor int64 [pairs, 3] of (i, j, bits)"},
/* The batch loader (loader.c). */
struct tg_loader;
struct tg_loader *tg_py_loader_of(PyObject *capsule);   /* NULL with an exception when not a loader */
PyObject *tg_py_loader_create(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *tg_py_loader_info(PyObject *self, PyObject *capsule);
PyObject *tg_py_loader_stats(PyObject *self, PyObject *capsule);
PyObject *tg_py_loader_start_epoch(PyObject *self, PyObject *args);
PyObject *tg_py_loader_next(PyObject *self, PyObject *capsule);
PyObject *tg_py_loader_skipped(PyObject *self, PyObject *capsule);
#define TG_PY_LOADER_METHODS                                                                              \
    {"loader_create", (PyCFunction)(void (*)(void))tg_py_loader_create, METH_VARARGS | METH_KEYWORDS,     \
     "loader_create(manifest_json, pipeline, split, batch_size, workers=2, ring_depth=0, sampler, seed, "  \
     "cache_bytes, on_bad_file, channels) -> loader capsule"},                                            \
    {"loader_info", tg_py_loader_info, METH_O, "loader_info(loader) -> dict of size, shape, ring"},      \
    {"loader_stats", tg_py_loader_stats, METH_O, "loader_stats(loader) -> dict of ring, cache, decoded"}, \
    {"loader_start_epoch", tg_py_loader_start_epoch, METH_VARARGS,                                        \
     "loader_start_epoch(loader, epoch) -> number of batches"},                                           \
    {"loader_next", tg_py_loader_next, METH_O, "loader_next(loader) -> (images, targets, indices) or None"}, \
    {"loader_skipped", tg_py_loader_skipped, METH_O, "loader_skipped(loader) -> [{index, path, message}]"},
/* The ONNX export (export.c). */
PyObject *tg_py_export_onnx(PyObject *self, PyObject *args, PyObject *kwargs);
#define TG_PY_EXPORT_METHODS                                                                         \
    {"export_onnx", (PyCFunction)(void (*)(void))tg_py_export_onnx, METH_VARARGS | METH_KEYWORDS,    \
     "export_onnx(model, path, metadata=None, input=-1, output=-1, float16=False): writes ONNX opset 17"},
/* The integer GEMM of the quantized ops (quantize.c). */
PyObject *tg_py_qgemm_u8s8(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *tg_py_qgemm_s8u8_cols(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *tg_py_qgemm_kernel_name(PyObject *self, PyObject *unused);
#define TG_PY_QUANTIZE_METHODS                                                                  \
    {"qgemm_u8s8", (PyCFunction)(void (*)(void))tg_py_qgemm_u8s8, METH_VARARGS | METH_KEYWORDS, \
     "qgemm_u8s8(a uint8 [m, k], b int8 [n, k], backend='auto', form='packed') -> int32 [m, n]"}, \
    {"qgemm_s8u8_cols", (PyCFunction)(void (*)(void))tg_py_qgemm_s8u8_cols, METH_VARARGS | METH_KEYWORDS, \
     "qgemm_s8u8_cols(w int8 [o, k], x uint8 [k, p], backend='auto') -> int32 [o, p]"},       \
    {"qgemm_kernel_name", tg_py_qgemm_kernel_name, METH_NOARGS, "the int8 GEMM kernel of this CPU"},

#endif
