/* tensor.h: the dense tensor of the C core.
 *
 * A tensor is a dtype, a shape of up to TG_MAX_DIMS dims, and a pointer to
 * contiguous row-major data. The data belongs either to a reference-counted
 * tg_storage (heap memory, or foreign memory such as a numpy array, released
 * through its own callback), or to an arena planned by the graph (storage NULL;
 * the arena outlives the tensor). Tensors are always contiguous: views that are
 * not (permute, transpose) are ops that copy. */
#ifndef TG_TENSOR_H
#define TG_TENSOR_H

#include <stdint.h>

#include "dtype.h"
#include "status.h"

#define TG_MAX_DIMS 5

typedef struct tg_storage {
    int refcount;                                /* atomic; see tg_storage_retain */
    void *data;                                  /* [nbytes] */
    size_t nbytes;
    void (*release)(void *data, void *owner);    /* frees foreign memory; NULL: free(data) */
    void *owner;                                 /* passed to release (e.g. a PyObject) */
} tg_storage;

typedef struct tg_tensor {
    tg_dtype dtype;
    int ndim;                       /* 0 (scalar) .. TG_MAX_DIMS */
    int64_t shape[TG_MAX_DIMS];     /* shape[i] >= 0 for i < ndim; 1 beyond */
    void *data;                     /* contiguous, row-major */
    tg_storage *storage;            /* owner of data, or NULL (arena / borrowed) */
} tg_tensor;

/* Number of elements (1 for a scalar). */
int64_t tg_tensor_numel(const tg_tensor *tensor);

/* Bytes of data. */
size_t tg_tensor_nbytes(const tg_tensor *tensor);

/* Fills dtype/ndim/shape of `tensor` (data untouched). Fails with
 * TG_STATUS_SHAPE on ndim > TG_MAX_DIMS or a negative dim. */
tg_status tg_tensor_set_shape(tg_tensor *tensor, tg_dtype dtype, int ndim, const int64_t *shape);

/* Allocates a new heap-backed tensor of zeros (64-byte aligned). On failure the
 * tensor is left empty (data NULL) and TG_STATUS_NOMEM/SHAPE is returned. */
tg_status tg_tensor_init(tg_tensor *tensor, tg_dtype dtype, int ndim, const int64_t *shape);

/* Wraps foreign memory without copying; `release(data, owner)` runs when the last
 * reference goes. On failure nothing is retained and release is not called. */
tg_status tg_tensor_init_foreign(tg_tensor *tensor, tg_dtype dtype, int ndim, const int64_t *shape,
                                 void *data, void (*release)(void *, void *), void *owner);

/* Drops this tensor's reference to its storage and empties it. Safe on an
 * empty or borrowed tensor. */
void tg_tensor_free(tg_tensor *tensor);

/* Makes `dst` another reference to `src`'s data (shape may differ if numel agrees). */
tg_status tg_tensor_share(tg_tensor *dst, const tg_tensor *src, int ndim, const int64_t *shape);

tg_storage *tg_storage_retain(tg_storage *storage);
void tg_storage_release(tg_storage *storage);

/* True when both have the same ndim and dims. */
int tg_shape_equal(const tg_tensor *a, const tg_tensor *b);

/* Writes "(2, 3, 4)" into buf; returns buf. For error messages. */
const char *tg_shape_str(const tg_tensor *tensor, char *buf, size_t size);

/* 64-byte aligned allocation and its free, used by every heap buffer of the core. */
void *tg_aligned_alloc(size_t nbytes);
void tg_aligned_free(void *ptr);

#endif
