/* gemm_bench.c (binding): timing entry points for trugrade.bench.gemm: the GEMM on
 * internal buffers (no Python in the timed loop) and the FMA peak of one core.
 * Not a test of correctness (tests/c/test_gemm.c is). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <immintrin.h>
#include <string.h>
#include <time.h>

#include "../core/tensor.h"
#include "../ops/gemm.h"
#include "binding.h"

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* gemm_bench(m, n, k, dtype="float32", backend="auto", repeat=5) -> best seconds of one call
 * of C[m, n] = A[m, k] @ B[k, n] (beta 0), over `repeat` calls after one warm-up. */
PyObject *tg_py_gemm_bench(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"m", "n", "k", "dtype", "backend", "repeat", NULL};
    long long m, n, k;
    const char *dtype = "float32", *backend = "auto";
    int repeat = 5;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "LLL|ssi", keywords, &m, &n, &k, &dtype, &backend, &repeat))
        return NULL;
    int bf16 = strcmp(dtype, "bfloat16") == 0;
    tg_gemm_backend which = strcmp(backend, "openblas") == 0 ? TG_GEMM_BACKEND_OPENBLAS
                            : strcmp(backend, "portable") == 0 ? TG_GEMM_BACKEND_PORTABLE : TG_GEMM_BACKEND_AUTO;
    if (m < 1 || n < 1 || k < 1 || repeat < 1 || (!bf16 && strcmp(dtype, "float32") != 0)) {
        PyErr_Format(PyExc_ValueError, "gemm_bench: m, n, k, repeat must be >= 1 and dtype float32 or bfloat16 "
                                       "(got %lld, %lld, %lld, %d, '%s')", m, n, k, repeat, dtype);
        return NULL;
    }
    size_t elem = bf16 ? sizeof(tg_bf16) : sizeof(float);
    void *a = tg_aligned_alloc(elem * (size_t)(m * k));   /* [m, k] */
    void *b = tg_aligned_alloc(elem * (size_t)(k * n));   /* [k, n] */
    float *c = tg_aligned_alloc(sizeof(float) * (size_t)(m * n));   /* [m, n] */
    if (!a || !b || !c) {
        tg_aligned_free(a);
        tg_aligned_free(b);
        tg_aligned_free(c);
        return PyErr_NoMemory();
    }
    for (long long i = 0; i < m * k; i++) {
        float v = (float)(i % 13) * 0.01f;
        if (bf16) ((tg_bf16 *)a)[i] = tg_bf16_from_f32(v);
        else ((float *)a)[i] = v;
    }
    for (long long i = 0; i < k * n; i++) {
        float v = (float)(i % 7) * 0.01f;
        if (bf16) ((tg_bf16 *)b)[i] = tg_bf16_from_f32(v);
        else ((float *)b)[i] = v;
    }
    double best = 1e30;
    Py_BEGIN_ALLOW_THREADS
    tg_gemm_backend previous = tg_gemm_backend_set(which);
    for (int r = 0; r <= repeat; r++) {
        double start = seconds_now();
        if (bf16) tg_gemm_bf16(0, 0, m, n, k, a, k, b, n, 0.0f, c, n);
        else tg_gemm_f32(0, 0, m, n, k, a, k, b, n, 0.0f, c, n);
        double took = seconds_now() - start;
        if (r > 0 && took < best) best = took;
    }
    tg_gemm_backend_set(previous);
    Py_END_ALLOW_THREADS
    tg_aligned_free(a);
    tg_aligned_free(b);
    tg_aligned_free(c);
    return PyFloat_FromDouble(best);
}

/* 24 independent chains of 512-bit FMAs: enough to fill two FMA units of 4-cycle latency. */
__attribute__((target("avx512f,fma"))) static double fma_seconds(long iterations, float *sink)
{
    __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-7f);
    /* NOTE: every chain starts from its own value and passes an asm barrier each step, so the
     * compiler can neither merge identical chains nor drop any (it did, doubling the "peak") */
#define TG_INIT(r) __m512 c##r = _mm512_set1_ps(0.9f + 0.001f * r), d##r = _mm512_set1_ps(1e-7f * (r + 1));
    TG_INIT(0) TG_INIT(1) TG_INIT(2) TG_INIT(3) TG_INIT(4) TG_INIT(5)
    TG_INIT(6) TG_INIT(7) TG_INIT(8) TG_INIT(9) TG_INIT(10) TG_INIT(11)
#undef TG_INIT
    double start = seconds_now();
    for (long i = 0; i < iterations; i++) {
#define TG_FMA2(r) c##r = _mm512_fmadd_ps(c##r, x, y); d##r = _mm512_fmadd_ps(d##r, x, y);
        TG_FMA2(0) TG_FMA2(1) TG_FMA2(2) TG_FMA2(3) TG_FMA2(4) TG_FMA2(5)
        TG_FMA2(6) TG_FMA2(7) TG_FMA2(8) TG_FMA2(9) TG_FMA2(10) TG_FMA2(11)
#undef TG_FMA2
        __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5), "+v"(c6), "+v"(c7),
                         "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
        __asm__ volatile("" : "+v"(d0), "+v"(d1), "+v"(d2), "+v"(d3), "+v"(d4), "+v"(d5), "+v"(d6), "+v"(d7),
                         "+v"(d8), "+v"(d9), "+v"(d10), "+v"(d11));
    }
    double took = seconds_now() - start;
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(d0, d1), _mm512_add_ps(d2, d3)),
                                       _mm512_add_ps(_mm512_add_ps(d4, d5), _mm512_add_ps(d6, d7))));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(d8, d9), _mm512_add_ps(d10, d11)));
    *sink = _mm512_reduce_add_ps(s);
    return took;
}

/* fma_peak_gflops(seconds=0.2) -> best float32 GFLOPS of 512-bit FMAs on the calling
 * thread (0.0 without AVX-512); GFLOPS / 64 is the AVX-512 clock in GHz. */
PyObject *tg_py_fma_peak_gflops(PyObject *self, PyObject *args)
{
    (void)self;
    double budget = 0.2;
    if (!PyArg_ParseTuple(args, "|d", &budget)) return NULL;
    if (!__builtin_cpu_supports("avx512f")) return PyFloat_FromDouble(0.0);
    const long iterations = 200000;   /* about 1 ms: short windows, so a busy machine still shows its peak */
    double best = 1e30, spent = 0.0;
    float sink = 0.0f;
    Py_BEGIN_ALLOW_THREADS
    while (spent < budget) {
        double took = fma_seconds(iterations, &sink);
        spent += took;
        if (took < best) best = took;
    }
    Py_END_ALLOW_THREADS
    (void)sink;
    return PyFloat_FromDouble((double)iterations * 24.0 * 32.0 / best / 1e9);
}
