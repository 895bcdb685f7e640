/* tensor.c: tensor shapes, heap and foreign storage, reference counting. */
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t tg_dtype_size(tg_dtype dtype)
{
    switch (dtype) {
    case TG_DTYPE_F32: return 4;
    case TG_DTYPE_BF16: return 2;
    case TG_DTYPE_U8: return 1;
    case TG_DTYPE_U16: return 2;
    case TG_DTYPE_I32: return 4;
    case TG_DTYPE_I64: return 8;
    case TG_DTYPE_I8: return 1;
    default: return 0;
    }
}

const char *tg_dtype_name(tg_dtype dtype)
{
    switch (dtype) {
    case TG_DTYPE_F32: return "float32";
    case TG_DTYPE_BF16: return "bfloat16";
    case TG_DTYPE_U8: return "uint8";
    case TG_DTYPE_U16: return "uint16";
    case TG_DTYPE_I32: return "int32";
    case TG_DTYPE_I64: return "int64";
    case TG_DTYPE_I8: return "int8";
    default: return "invalid";
    }
}

void *tg_aligned_alloc(size_t nbytes)
{
    void *ptr = NULL;
    if (posix_memalign(&ptr, 64, nbytes ? nbytes : 64) != 0) return NULL;
    return ptr;
}

void tg_aligned_free(void *ptr) { free(ptr); }

int64_t tg_tensor_numel(const tg_tensor *tensor)
{
    int64_t n = 1;
    for (int i = 0; i < tensor->ndim; i++) n *= tensor->shape[i];
    return n;
}

size_t tg_tensor_nbytes(const tg_tensor *tensor)
{
    return (size_t)tg_tensor_numel(tensor) * tg_dtype_size(tensor->dtype);
}

tg_status tg_tensor_set_shape(tg_tensor *tensor, tg_dtype dtype, int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > TG_MAX_DIMS)
        return tg_error(TG_STATUS_SHAPE, "tensor has %d dims; trugrade supports 0 to %d", ndim, TG_MAX_DIMS);
    if (tg_dtype_size(dtype) == 0) return tg_error(TG_STATUS_DTYPE, "invalid dtype code %d", (int)dtype);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return tg_error(TG_STATUS_SHAPE, "dim %d of a tensor is negative (%lld)", i, (long long)shape[i]);
    tensor->dtype = dtype;
    tensor->ndim = ndim;
    for (int i = 0; i < TG_MAX_DIMS; i++) tensor->shape[i] = i < ndim ? shape[i] : 1;
    return TG_STATUS_OK;
}

static tg_status storage_new(tg_storage **out, void *data, size_t nbytes, void (*release)(void *, void *), void *owner)
{
    tg_storage *storage = malloc(sizeof *storage);
    if (!storage) return tg_error(TG_STATUS_NOMEM, "out of memory allocating a tensor storage");
    storage->refcount = 1;
    storage->data = data;
    storage->nbytes = nbytes;
    storage->release = release;
    storage->owner = owner;
    *out = storage;
    return TG_STATUS_OK;
}

tg_status tg_tensor_init(tg_tensor *tensor, tg_dtype dtype, int ndim, const int64_t *shape)
{
    memset(tensor, 0, sizeof *tensor);
    TG_TRY(tg_tensor_set_shape(tensor, dtype, ndim, shape));
    size_t nbytes = tg_tensor_nbytes(tensor);
    void *data = tg_aligned_alloc(nbytes);
    if (!data) {
        char buf[96];
        return tg_error(TG_STATUS_NOMEM, "out of memory allocating %zu bytes for a %s tensor of shape %s",
                        nbytes, tg_dtype_name(dtype), tg_shape_str(tensor, buf, sizeof buf));
    }
    memset(data, 0, nbytes);
    tg_status status = storage_new(&tensor->storage, data, nbytes, NULL, NULL);
    if (status != TG_STATUS_OK) {
        tg_aligned_free(data);
        return status;
    }
    tensor->data = data;
    return TG_STATUS_OK;
}

tg_status tg_tensor_init_foreign(tg_tensor *tensor, tg_dtype dtype, int ndim, const int64_t *shape,
                                 void *data, void (*release)(void *, void *), void *owner)
{
    memset(tensor, 0, sizeof *tensor);
    TG_TRY(tg_tensor_set_shape(tensor, dtype, ndim, shape));
    TG_TRY(storage_new(&tensor->storage, data, tg_tensor_nbytes(tensor), release, owner));
    tensor->data = data;
    return TG_STATUS_OK;
}

tg_storage *tg_storage_retain(tg_storage *storage)
{
    if (storage) __atomic_add_fetch(&storage->refcount, 1, __ATOMIC_RELAXED);
    return storage;
}

void tg_storage_release(tg_storage *storage)
{
    if (!storage) return;
    if (__atomic_sub_fetch(&storage->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
    if (storage->release) storage->release(storage->data, storage->owner);
    else tg_aligned_free(storage->data);
    free(storage);
}

void tg_tensor_free(tg_tensor *tensor)
{
    if (!tensor) return;
    tg_storage_release(tensor->storage);
    memset(tensor, 0, sizeof *tensor);
}

tg_status tg_tensor_share(tg_tensor *dst, const tg_tensor *src, int ndim, const int64_t *shape)
{
    tg_tensor view;
    memset(&view, 0, sizeof view);
    TG_TRY(tg_tensor_set_shape(&view, src->dtype, ndim, shape));
    if (tg_tensor_numel(&view) != tg_tensor_numel(src)) {
        char a[96], b[96];
        return tg_error(TG_STATUS_SHAPE, "cannot view a tensor of shape %s as shape %s: element counts differ",
                        tg_shape_str(src, a, sizeof a), tg_shape_str(&view, b, sizeof b));
    }
    view.data = src->data;
    view.storage = tg_storage_retain(src->storage);
    *dst = view;
    return TG_STATUS_OK;
}

int tg_shape_equal(const tg_tensor *a, const tg_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

const char *tg_shape_str(const tg_tensor *tensor, char *buf, size_t size)
{
    size_t used = 0;
    used += (size_t)snprintf(buf + used, size - used, "(");
    for (int i = 0; i < tensor->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)tensor->shape[i]);
    if (used < size) snprintf(buf + used, size - used, tensor->ndim == 1 ? ",)" : ")");
    return buf;
}
