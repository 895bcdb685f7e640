/* dlpack.c (binding): DLPack exchange of trugrade._C.Tensor, both ways, on the CPU.
 *   Tensor.__dlpack__(...) -> a capsule "dltensor" or "dltensor_versioned" (DLPack 1.0)
 *   Tensor.__dlpack_device__() -> (1, 0): kDLCPU, device 0
 *   _C.tensor_from_dlpack(capsule) -> Tensor sharing the producer's memory
 * Ownership cannot dangle: an exported capsule holds a reference to the Tensor (so its C
 * memory lives until the consumer calls the deleter, or the capsule dies unconsumed); an
 * imported tensor calls the producer's deleter only when its last C reference goes.
 * Not a copying converter: non-contiguous or non-CPU producers are refused with a message
 * saying what to do. The DLPack structs are declared here (ABI of dlpack.h v1.0). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "../core/tensor.h"
#include "binding.h"

/* ---- the DLPack ABI (dlpack.h, v1.0) ---- */

enum { DL_CPU = 1 };
enum { DL_INT = 0, DL_UINT = 1, DL_FLOAT = 2, DL_BFLOAT = 4 };

typedef struct {
    int32_t device_type;
    int32_t device_id;
} dl_device;

typedef struct {
    uint8_t code;
    uint8_t bits;
    uint16_t lanes;
} dl_data_type;

typedef struct {
    void *data;
    dl_device device;
    int32_t ndim;
    dl_data_type dtype;
    int64_t *shape;
    int64_t *strides;   /* in elements; NULL: compact row-major */
    uint64_t byte_offset;
} dl_tensor;

typedef struct dl_managed_tensor {
    dl_tensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct dl_managed_tensor *self);
} dl_managed_tensor;

typedef struct {
    uint32_t major;
    uint32_t minor;
} dl_pack_version;

typedef struct dl_managed_tensor_versioned {
    dl_pack_version version;
    void *manager_ctx;
    void (*deleter)(struct dl_managed_tensor_versioned *self);
    uint64_t flags;
    dl_tensor dl_tensor;
} dl_managed_tensor_versioned;

static const char capsule_legacy[] = "dltensor", capsule_versioned[] = "dltensor_versioned";
static const char used_legacy[] = "used_dltensor", used_versioned[] = "used_dltensor_versioned";

static int dl_type_of(tg_dtype dtype, dl_data_type *out)
{
    switch (dtype) {
    case TG_DTYPE_F32: *out = (dl_data_type){DL_FLOAT, 32, 1}; return 0;
    case TG_DTYPE_BF16: *out = (dl_data_type){DL_BFLOAT, 16, 1}; return 0;
    case TG_DTYPE_U8: *out = (dl_data_type){DL_UINT, 8, 1}; return 0;
    case TG_DTYPE_U16: *out = (dl_data_type){DL_UINT, 16, 1}; return 0;
    case TG_DTYPE_I32: *out = (dl_data_type){DL_INT, 32, 1}; return 0;
    case TG_DTYPE_I64: *out = (dl_data_type){DL_INT, 64, 1}; return 0;
    default: return -1;
    }
}

static int tg_dtype_of(dl_data_type type, tg_dtype *out)
{
    if (type.lanes != 1) return -1;
    if (type.code == DL_FLOAT && type.bits == 32) *out = TG_DTYPE_F32;
    else if (type.code == DL_BFLOAT && type.bits == 16) *out = TG_DTYPE_BF16;
    else if (type.code == DL_UINT && type.bits == 8) *out = TG_DTYPE_U8;
    else if (type.code == DL_UINT && type.bits == 16) *out = TG_DTYPE_U16;
    else if (type.code == DL_INT && type.bits == 32) *out = TG_DTYPE_I32;
    else if (type.code == DL_INT && type.bits == 64) *out = TG_DTYPE_I64;
    else return -1;
    return 0;
}

/* ---- export ---- */

/* One allocation: the managed tensor (either flavour) and its shape and strides. */
typedef struct export_block {
    dl_managed_tensor legacy;
    dl_managed_tensor_versioned versioned;
    PyObject *tensor;                  /* the strong reference that keeps the memory alive */
    int64_t shape[TG_MAX_DIMS];
    int64_t strides[TG_MAX_DIMS];
} export_block;

/* NOTE: consumers may call the deleter from any thread, with or without the GIL. */
static void export_release(export_block *block)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    Py_XDECREF(block->tensor);
    PyGILState_Release(gil);
    PyMem_RawFree(block);
}

static void delete_legacy(dl_managed_tensor *self) { export_release(self->manager_ctx); }
static void delete_versioned(dl_managed_tensor_versioned *self) { export_release(self->manager_ctx); }

/* A capsule that dies unconsumed (still named "dltensor...") releases its tensor. */
static void capsule_destructor(PyObject *capsule)
{
    if (PyCapsule_IsValid(capsule, capsule_versioned)) {
        dl_managed_tensor_versioned *managed = PyCapsule_GetPointer(capsule, capsule_versioned);
        if (managed->deleter) managed->deleter(managed);
    } else if (PyCapsule_IsValid(capsule, capsule_legacy)) {
        dl_managed_tensor *managed = PyCapsule_GetPointer(capsule, capsule_legacy);
        if (managed->deleter) managed->deleter(managed);
    }
    PyErr_Clear();
}

/* __dlpack__(*, stream=None, max_version=None, dl_device=None, copy=None) */
PyObject *tg_py_tensor_dlpack(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"stream", "max_version", "dl_device", "copy", NULL};
    PyObject *stream = Py_None, *max_version = Py_None, *dl_device_obj = Py_None, *copy = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$OOOO", keywords, &stream, &max_version, &dl_device_obj, &copy))
        return NULL;
    if (stream != Py_None)
        return PyErr_Format(PyExc_BufferError, "Tensor.__dlpack__: trugrade tensors live on the CPU; stream must be "
                                               "None (got %R)", stream);
    if (copy == Py_True)
        return PyErr_Format(PyExc_BufferError, "Tensor.__dlpack__: copy=True is not supported (trugrade exports "
                                               "its memory without copying); copy with numpy after import");
    if (dl_device_obj != Py_None) {
        int type = 0, id = 0;
        if (!PyArg_ParseTuple(dl_device_obj, "ii", &type, &id) || type != DL_CPU)
            return PyErr_Format(PyExc_BufferError, "Tensor.__dlpack__: dl_device must be (1, 0), the CPU (got %R)",
                                dl_device_obj);
    }
    int versioned = 0;
    if (max_version != Py_None) {
        int major = 0, minor = 0;
        if (!PyArg_ParseTuple(max_version, "ii", &major, &minor))
            return PyErr_Format(PyExc_TypeError, "Tensor.__dlpack__: max_version must be a (major, minor) tuple");
        versioned = major >= 1;
    }
    const tg_tensor *tensor = tg_py_tensor_of(self);
    if (!tensor) return NULL;
    dl_data_type type;
    if (dl_type_of(tensor->dtype, &type) != 0)
        return PyErr_Format(PyExc_BufferError, "Tensor.__dlpack__: dtype %s has no DLPack code",
                            tg_dtype_name(tensor->dtype));
    export_block *block = PyMem_RawCalloc(1, sizeof *block);
    if (!block) return PyErr_NoMemory();
    int64_t stride = 1;
    for (int d = tensor->ndim - 1; d >= 0; d--) {
        block->shape[d] = tensor->shape[d];
        block->strides[d] = stride;
        stride *= tensor->shape[d];
    }
    dl_tensor described = {
        .data = tensor->data, .device = {DL_CPU, 0}, .ndim = tensor->ndim, .dtype = type,
        .shape = block->shape, .strides = block->strides, .byte_offset = 0,
    };
    block->tensor = Py_NewRef(self);
    void *managed;
    if (versioned) {
        block->versioned = (dl_managed_tensor_versioned){
            .version = {1, 0}, .manager_ctx = block, .deleter = delete_versioned, .flags = 0, .dl_tensor = described,
        };
        managed = &block->versioned;
    } else {
        block->legacy = (dl_managed_tensor){.dl_tensor = described, .manager_ctx = block, .deleter = delete_legacy};
        managed = &block->legacy;
    }
    PyObject *capsule = PyCapsule_New(managed, versioned ? capsule_versioned : capsule_legacy, capsule_destructor);
    if (!capsule) export_release(block);
    return capsule;
}

PyObject *tg_py_tensor_dlpack_device(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return Py_BuildValue("(ii)", DL_CPU, 0);
}

/* ---- import ---- */

typedef struct import_owner {
    dl_managed_tensor *legacy;               /* exactly one of the two is set */
    dl_managed_tensor_versioned *versioned;
} import_owner;

static void release_import(void *data, void *owner_ptr)
{
    (void)data;
    import_owner *owner = owner_ptr;
    PyGILState_STATE gil = PyGILState_Ensure();
    if (owner->versioned && owner->versioned->deleter) owner->versioned->deleter(owner->versioned);
    if (owner->legacy && owner->legacy->deleter) owner->legacy->deleter(owner->legacy);
    PyGILState_Release(gil);
    PyMem_RawFree(owner);
}

/* tensor_from_dlpack(capsule) -> Tensor over the producer's memory */
PyObject *tg_py_tensor_from_dlpack(PyObject *self, PyObject *capsule)
{
    (void)self;
    import_owner *owner = PyMem_RawCalloc(1, sizeof *owner);
    if (!owner) return PyErr_NoMemory();
    const dl_tensor *described;
    if (PyCapsule_IsValid(capsule, capsule_versioned)) {
        owner->versioned = PyCapsule_GetPointer(capsule, capsule_versioned);
        if (owner->versioned->version.major != 1) {
            unsigned major = owner->versioned->version.major;
            PyMem_RawFree(owner);
            return PyErr_Format(PyExc_BufferError, "from_dlpack: DLPack version %u.x is not supported (1.x is)", major);
        }
        described = &owner->versioned->dl_tensor;
    } else if (PyCapsule_IsValid(capsule, capsule_legacy)) {
        owner->legacy = PyCapsule_GetPointer(capsule, capsule_legacy);
        described = &owner->legacy->dl_tensor;
    } else {
        PyMem_RawFree(owner);
        return PyErr_Format(PyExc_TypeError, "from_dlpack: expected an unused 'dltensor' capsule (got %.100s); "
                                             "a capsule can be imported once", Py_TYPE(capsule)->tp_name);
    }
    const char *refusal = NULL;
    tg_dtype dtype = TG_DTYPE_F32;
    if (described->device.device_type != DL_CPU) refusal = "lives on a device other than the CPU; copy it to the CPU first";
    else if (described->ndim < 0 || described->ndim > TG_MAX_DIMS) refusal = "has more than 5 dims";
    else if (tg_dtype_of(described->dtype, &dtype) != 0)
        refusal = "has a dtype trugrade does not hold (float32, bfloat16, uint8, uint16, int32, int64)";
    if (!refusal && described->strides) {
        int64_t expected = 1;
        int contiguous = 1;
        for (int d = described->ndim - 1; d >= 0; d--) {
            if (described->shape[d] != 1 && described->strides[d] != expected) contiguous = 0;
            expected *= described->shape[d];
        }
        if (!contiguous && expected != 0)   /* an empty tensor's strides do not matter */
            refusal = "is not C-contiguous; call .contiguous() or numpy.ascontiguousarray first";
    }
    if (refusal) {
        PyMem_RawFree(owner);
        return PyErr_Format(PyExc_BufferError, "from_dlpack: the tensor %s", refusal);
    }
    tg_tensor tensor;
    tg_status status = tg_tensor_init_foreign(&tensor, dtype, described->ndim, described->shape,
                                              (char *)described->data + described->byte_offset, release_import, owner);
    if (status != TG_STATUS_OK) {
        PyMem_RawFree(owner);
        return tg_py_raise(status);
    }
    /* consumed: from here the tensor owns the deleter, not the capsule */
    if (PyCapsule_SetName(capsule, owner->versioned ? used_versioned : used_legacy) != 0) {
        owner->legacy = NULL;
        owner->versioned = NULL;
        tg_tensor_free(&tensor);
        return NULL;
    }
    return tg_py_tensor_wrap(&tensor);
}
