/* quantize.c (binding): trugrade._C.qgemm_u8s8 and qgemm_s8u8_cols, the integer GEMMs of
 * the quantized ops (rows form for linear, columns form for conv) exposed for exactness
 * tests against numpy. The model's calibration and int8 rewrite
 * are Model methods (models.c). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "../ops/qgemm.h"
#include "binding.h"

static int parse_backend(const char *name, tg_qgemm_backend *backend)
{
    if (strcmp(name, "auto") == 0) *backend = TG_QGEMM_BACKEND_AUTO;
    else if (strcmp(name, "portable") == 0) *backend = TG_QGEMM_BACKEND_PORTABLE;
    else {
        PyErr_Format(PyExc_ValueError, "qgemm: backend must be 'auto' or 'portable', got '%s'", name);
        return -1;
    }
    return 0;
}

/* qgemm_u8s8(a uint8 [m, k], b int8 [n, k], backend="auto" | "portable", form="packed" | "dot")
 * -> int32 [m, n] */
PyObject *tg_py_qgemm_u8s8(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"a", "b", "backend", "form", NULL};
    PyObject *a_object, *b_object;
    const char *backend_name = "auto", *form = "packed";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|ss", keywords, &a_object, &b_object, &backend_name, &form))
        return NULL;
    int dot = strcmp(form, "dot") == 0;
    if (!dot && strcmp(form, "packed") != 0)
        return PyErr_Format(PyExc_ValueError, "qgemm_u8s8: form must be 'packed' or 'dot', got '%s'", form);
    tg_qgemm_backend backend;
    if (parse_backend(backend_name, &backend) != 0) return NULL;
    tg_tensor a, b;
    if (tg_py_tensor_from_object(a_object, &a, "a") != 0) return NULL;
    if (tg_py_tensor_from_object(b_object, &b, "b") != 0) {
        tg_tensor_free(&a);
        return NULL;
    }
    PyObject *result = NULL;
    if (a.dtype != TG_DTYPE_U8 || b.dtype != TG_DTYPE_I8 || a.ndim != 2 || b.ndim != 2 || a.shape[1] != b.shape[1] ||
        a.shape[1] > TG_QGEMM_MAX_K || (dot && a.shape[0] > TG_QGEMM_DOT_MAX_ROWS)) {
        PyErr_Format(PyExc_ValueError, "qgemm_u8s8: expected a uint8 [m, k] and b int8 [n, k] with k <= %d (and m <= %d "
                     "for the dot form), got %s %d-D and %s %d-D", TG_QGEMM_MAX_K, TG_QGEMM_DOT_MAX_ROWS, tg_dtype_name(a.dtype), a.ndim, tg_dtype_name(b.dtype), b.ndim);
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
        if (dot) {
            tg_qgemm_u8s8_dot(m, n, k, padded, lda, b.data, k, c.data, n, sums);
        } else {
            tg_qgemm_pack_b(n, k, b.data, k, packed, sums);
            tg_qgemm_u8s8(m, n, k, padded, lda, packed, c.data, n);
        }
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

/* qgemm_s8u8_cols(w int8 [o, k], x uint8 [k, p], backend="auto" | "portable") -> int32 [o, p] */
PyObject *tg_py_qgemm_s8u8_cols(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"w", "x", "backend", NULL};
    PyObject *w_object, *x_object;
    const char *backend_name = "auto";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|s", keywords, &w_object, &x_object, &backend_name)) return NULL;
    tg_qgemm_backend backend;
    if (parse_backend(backend_name, &backend) != 0) return NULL;
    tg_tensor w, x;
    if (tg_py_tensor_from_object(w_object, &w, "w") != 0) return NULL;
    if (tg_py_tensor_from_object(x_object, &x, "x") != 0) {
        tg_tensor_free(&w);
        return NULL;
    }
    PyObject *result = NULL;
    if (w.dtype != TG_DTYPE_I8 || x.dtype != TG_DTYPE_U8 || w.ndim != 2 || x.ndim != 2 || w.shape[1] != x.shape[0] ||
        x.shape[0] > TG_QGEMM_MAX_K) {
        PyErr_Format(PyExc_ValueError, "qgemm_s8u8_cols: expected w int8 [o, k] and x uint8 [k, p] with k <= %d, got %s "
                     "%d-D and %s %d-D", TG_QGEMM_MAX_K, tg_dtype_name(w.dtype), w.ndim, tg_dtype_name(x.dtype), x.ndim);
        goto done;
    }
    int64_t o = w.shape[0], k = w.shape[1], p = x.shape[1], ldw = tg_qgemm_lda(k);
    int64_t shape[2] = {o, p};
    tg_tensor c;
    tg_status status = tg_tensor_init(&c, TG_DTYPE_I32, 2, shape);
    if (status != TG_STATUS_OK) {
        tg_py_raise(status);
        goto done;
    }
    int8_t *padded = calloc((size_t)(o * ldw + 1), 1);                                  /* [o, ldw] */
    uint8_t *packed = malloc((size_t)(ldw * tg_qgemm_cols_stride(p)) + 1);             /* [ldw / 4][stride][4] */
    if (!padded || !packed) {
        PyErr_NoMemory();
        tg_tensor_free(&c);
    } else {
        for (int64_t r = 0; r < o; r++) memcpy(padded + r * ldw, (const int8_t *)w.data + r * k, (size_t)k);
        Py_BEGIN_ALLOW_THREADS
        tg_qgemm_backend previous = tg_qgemm_backend_set(backend);
        tg_qgemm_pack_cols(k, p, x.data, p, packed);
        tg_qgemm_s8u8_cols(o, p, k, padded, ldw, packed, NULL, c.data, p);
        tg_qgemm_backend_set(previous);
        Py_END_ALLOW_THREADS
        result = tg_py_tensor_wrap(&c);
    }
    free(padded);
    free(packed);
done:
    tg_tensor_free(&w);
    tg_tensor_free(&x);
    return result;
}

PyObject *tg_py_qgemm_kernel_name(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyUnicode_FromString(tg_qgemm_kernel_name());
}
