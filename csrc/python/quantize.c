/* quantize.c (binding): trugrade._C.qgemm_u8s8, the integer GEMM of the quantized ops
 * exposed for exactness tests against numpy. The model's calibration and int8 rewrite
 * are Model methods (models.c). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "../ops/qgemm.h"
#include "binding.h"

/* qgemm_u8s8(a uint8 [m, k], b int8 [n, k], backend="auto" | "portable") -> int32 [m, n] */
PyObject *tg_py_qgemm_u8s8(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"a", "b", "backend", NULL};
    PyObject *a_object, *b_object;
    const char *backend_name = "auto";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|s", keywords, &a_object, &b_object, &backend_name)) return NULL;
    tg_qgemm_backend backend;
    if (strcmp(backend_name, "auto") == 0) backend = TG_QGEMM_BACKEND_AUTO;
    else if (strcmp(backend_name, "portable") == 0) backend = TG_QGEMM_BACKEND_PORTABLE;
    else return PyErr_Format(PyExc_ValueError, "qgemm_u8s8: backend must be 'auto' or 'portable', got '%s'", backend_name);
    tg_tensor a, b;
    if (tg_py_tensor_from_object(a_object, &a, "a") != 0) return NULL;
    if (tg_py_tensor_from_object(b_object, &b, "b") != 0) {
        tg_tensor_free(&a);
        return NULL;
    }
    PyObject *result = NULL;
    if (a.dtype != TG_DTYPE_U8 || b.dtype != TG_DTYPE_I8 || a.ndim != 2 || b.ndim != 2 || a.shape[1] != b.shape[1] ||
        a.shape[1] > TG_QGEMM_MAX_K) {
        PyErr_Format(PyExc_ValueError, "qgemm_u8s8: expected a uint8 [m, k] and b int8 [n, k] with k <= %d, got %s "
                     "%d-D and %s %d-D", TG_QGEMM_MAX_K, tg_dtype_name(a.dtype), a.ndim, tg_dtype_name(b.dtype), b.ndim);
        goto done;
    }
    int64_t m = a.shape[0], k = a.shape[1], n = b.shape[0], lda = tg_qgemm_lda(k);
    int64_t shape[2] = {m, n};
    tg_tensor c;
    tg_status status = tg_tensor_init(&c, TG_DTYPE_I32, 2, shape);
    if (status != TG_STATUS_OK) {
        tg_py_raise(status);
        goto done;
    }
    uint8_t *padded = calloc((size_t)(m * lda + 1), 1);                   /* [m, lda] */
    int8_t *packed = malloc(tg_qgemm_packed_bytes(n, k) + 1);              /* packed b */
    int32_t *sums = malloc(sizeof(int32_t) * (size_t)(n + 1));            /* [n] */
    if (!padded || !packed || !sums) {
        PyErr_NoMemory();
        tg_tensor_free(&c);
    } else {
        for (int64_t r = 0; r < m; r++) memcpy(padded + r * lda, (const uint8_t *)a.data + r * k, (size_t)k);
        Py_BEGIN_ALLOW_THREADS
        tg_qgemm_backend previous = tg_qgemm_backend_set(backend);
        tg_qgemm_pack_b(n, k, b.data, k, packed, sums);
        tg_qgemm_u8s8(m, n, k, padded, lda, packed, c.data, n);
        tg_qgemm_backend_set(previous);
        Py_END_ALLOW_THREADS
        result = tg_py_tensor_wrap(&c);
    }
    free(padded);
    free(packed);
    free(sums);
done:
    tg_tensor_free(&a);
    tg_tensor_free(&b);
    return result;
}

PyObject *tg_py_qgemm_kernel_name(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyUnicode_FromString(tg_qgemm_kernel_name());
}
