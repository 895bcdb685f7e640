/* test_gemm.c: tg_gemm_f32 and tg_gemm_bf16 against a naive triple loop (double sums)
 * over many shapes, transposes, leading dimensions and betas, for each backend; OpenBLAS
 * as a second oracle; and bit-identical results for 1 and 2 threads.
 * Built plain and with ASan+UBSan by make test (sizes kept small for the latter). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "../../csrc/core/dtype.h"
#include "../../csrc/core/tensor.h"
#include "../../csrc/core/threads.h"
#include "../../csrc/ops/gemm.h"
#include "../../csrc/ops/op.h"
#include "check.h"

static uint64_t rng_state = 88172645463325252ull;

static float uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

typedef struct problem {
    int trans_a, trans_b;
    int64_t m, n, k, lda, ldb, ldc;
    float *a, *b, *c;       /* as stored: a [m|k rows, lda], b [k|n rows, ldb], c [m, ldc] */
    tg_bf16 *a16, *b16;     /* a and b rounded to bfloat16 */
} problem;

static void problem_init(problem *p, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, int64_t pad)
{
    p->trans_a = trans_a;
    p->trans_b = trans_b;
    p->m = m;
    p->n = n;
    p->k = k;
    p->lda = (trans_a ? m : k) + pad;
    p->ldb = (trans_b ? k : n) + pad;
    p->ldc = n + pad;
    int64_t a_count = (trans_a ? k : m) * p->lda + 1, b_count = (trans_b ? n : k) * p->ldb + 1;
    p->a = malloc(sizeof(float) * (size_t)a_count);
    p->b = malloc(sizeof(float) * (size_t)b_count);
    p->c = malloc(sizeof(float) * (size_t)(m * p->ldc + 1));
    p->a16 = malloc(sizeof(tg_bf16) * (size_t)a_count);
    p->b16 = malloc(sizeof(tg_bf16) * (size_t)b_count);
    for (int64_t i = 0; i < a_count; i++) p->a16[i] = tg_bf16_from_f32(p->a[i] = uniform());
    for (int64_t i = 0; i < b_count; i++) p->b16[i] = tg_bf16_from_f32(p->b[i] = uniform());
}

static void problem_free(problem *p)
{
    free(p->a);
    free(p->b);
    free(p->c);
    free(p->a16);
    free(p->b16);
}

static float a_at(const problem *p, int bf16, int64_t i, int64_t q)
{
    int64_t o = p->trans_a ? q * p->lda + i : i * p->lda + q;
    return bf16 ? tg_bf16_to_f32(p->a16[o]) : p->a[o];
}

static float b_at(const problem *p, int bf16, int64_t q, int64_t j)
{
    int64_t o = p->trans_b ? j * p->ldb + q : q * p->ldb + j;
    return bf16 ? tg_bf16_to_f32(p->b16[o]) : p->b[o];
}

/* Fills c with `start` (value for beta 1, NaN for beta 0) and runs the GEMM. */
static void run(const problem *p, int bf16, float beta, float *c)
{
    for (int64_t i = 0; i < p->m * p->ldc + 1; i++) c[i] = beta == 0.0f ? NAN : (float)(i % 7) * 0.25f;
    if (bf16)
        tg_gemm_bf16(p->trans_a, p->trans_b, p->m, p->n, p->k, p->a16, p->lda, p->b16, p->ldb, beta, c, p->ldc);
    else
        tg_gemm_f32(p->trans_a, p->trans_b, p->m, p->n, p->k, p->a, p->lda, p->b, p->ldb, beta, c, p->ldc);
}

/* Worst |error| / (k * 1e-6 + 1e-6) against double sums, padding of C untouched. */
static int matches_naive(const problem *p, int bf16, float beta, const float *c)
{
    for (int64_t i = 0; i < p->m; i++) {
        for (int64_t j = 0; j < p->ldc; j++) {
            int64_t o = i * p->ldc + j;
            double start = beta == 0.0f ? 0.0 : (double)((float)(o % 7) * 0.25f);
            if (j >= p->n) {
                if (beta == 0.0f ? !isnan(c[o]) : c[o] != (float)start) return 0;   /* padding untouched */
                continue;
            }
            double sum = start;
            for (int64_t q = 0; q < p->k; q++) sum += (double)a_at(p, bf16, i, q) * (double)b_at(p, bf16, q, j);
            if (!(fabs(c[o] - sum) <= 2e-6 * (double)(p->k + 1) + 1e-6)) return 0;
        }
    }
    return 1;
}

static void test_against_naive(tg_gemm_backend backend)
{
    static const int64_t sizes[] = {0, 1, 2, 7, 13, 14, 15, 17, 31, 32, 33, 47, 65};
    const int count = (int)(sizeof sizes / sizeof sizes[0]);
    tg_gemm_backend_set(backend);
    int failures = 0, runs = 0;
    for (int trial = 0; trial < 260; trial++) {
        int64_t m = sizes[(trial * 7 + 3) % count], n = sizes[(trial * 5 + 1) % count];
        int64_t k = sizes[(trial * 11 + trial / count) % count];
        int trans_a = trial & 1, trans_b = (trial >> 1) & 1, bf16 = (trial >> 2) % 3 == 0;
        float beta = (trial >> 3) & 1 ? 1.0f : 0.0f;
        problem p;
        problem_init(&p, trans_a, trans_b, m, n, k, trial % 3);
        run(&p, bf16, beta, p.c);
        if (!matches_naive(&p, bf16, beta, p.c)) {
            failures++;
            fprintf(stderr, "gemm %s: m=%lld n=%lld k=%lld ta=%d tb=%d bf16=%d beta=%g differs from the naive loop\n",
                    tg_gemm_kernel_name(), (long long)m, (long long)n, (long long)k, trans_a, trans_b, bf16, beta);
        }
        runs++;
        problem_free(&p);
    }
    /* larger shapes: several K blocks, several mc blocks, both loop orders, thin matrices */
    static const int64_t big[][3] = {{300, 70, 600}, {40, 400, 300}, {129, 33, 520}, {512, 9, 100}, {600, 50, 300}};
    for (int s = 0; s < 5; s++)
        for (int t = 0; t < 4; t++) {
            problem p;
            problem_init(&p, t & 1, t >> 1, big[s][0], big[s][1], big[s][2], 1);
            run(&p, t == 3, t == 2 ? 0.0f : 1.0f, p.c);
            if (!matches_naive(&p, t == 3, t == 2 ? 0.0f : 1.0f, p.c)) failures++;
            runs++;
            problem_free(&p);
        }
    CHECK(failures == 0);
    CHECK(runs == 280);
    tg_gemm_backend_set(TG_GEMM_BACKEND_AUTO);
}

/* Our GEMM and cblas_sgemm agree to float32 rounding. */
static void test_against_openblas(void)
{
    int ok = 1;
    for (int t = 0; t < 4; t++) {
        problem p;
        problem_init(&p, t & 1, t >> 1, 97, 130, 257, 2);
        float *ours = malloc(sizeof(float) * (size_t)(p.m * p.ldc + 1));
        run(&p, 0, 1.0f, ours);
        for (int64_t i = 0; i < p.m * p.ldc + 1; i++) p.c[i] = (float)(i % 7) * 0.25f;
        cblas_sgemm(CblasRowMajor, t & 1 ? CblasTrans : CblasNoTrans, t >> 1 ? CblasTrans : CblasNoTrans, (int)p.m,
                    (int)p.n, (int)p.k, 1.0f, p.a, (int)p.lda, p.b, (int)p.ldb, 1.0f, p.c, (int)p.ldc);
        for (int64_t i = 0; i < p.m * p.ldc; i++) ok &= fabsf(ours[i] - p.c[i]) <= 1e-4f * (1.0f + fabsf(p.c[i]));
        free(ours);
        problem_free(&p);
    }
    CHECK(ok);
}

/* Same bits with 1 and 2 threads (shapes above the parallel threshold, split on M and N;
 * 300 x 20 x 600 takes Goto's loop order on one thread and the whole-A order on two). */
static void test_thread_invariance(void)
{
    static const int64_t shapes[][3] = {{130, 97, 100}, {33, 300, 129}, {200, 45, 300}, {70, 70, 600}, {300, 20, 600}};
    int identical = 1;
    for (int s = 0; s < 5; s++)
        for (int bf16 = 0; bf16 < 2; bf16++) {
            problem p;
            problem_init(&p, s & 1, bf16, shapes[s][0], shapes[s][1], shapes[s][2], 0);
            float *two = malloc(sizeof(float) * (size_t)(p.m * p.ldc + 1));
            CHECK_OK(tg_threads_set(1));
            run(&p, bf16, s & 2 ? 1.0f : 0.0f, p.c);
            CHECK_OK(tg_threads_set(2));
            run(&p, bf16, s & 2 ? 1.0f : 0.0f, two);
            identical &= memcmp(two, p.c, sizeof(float) * (size_t)(p.m * p.ldc)) == 0;
            free(two);
            problem_free(&p);
        }
    CHECK(identical);
    tg_threads_shutdown();
}

/* linear with bfloat16 x and weight: float32 output equal to the float32 op on the
 * widened values; gradients (bfloat16 here, as the eager call makes them) close to those. */
static void test_linear_bf16(void)
{
    const tg_op_def *linear = tg_op_find("linear");
    CHECK(linear != NULL);
    if (!linear) return;
    int64_t xs[2] = {9, 33}, ws[2] = {17, 33};
    tg_tensor x16, w16, x32, w32, g;
    CHECK_OK(tg_tensor_init(&x16, TG_DTYPE_BF16, 2, xs));
    CHECK_OK(tg_tensor_init(&w16, TG_DTYPE_BF16, 2, ws));
    CHECK_OK(tg_tensor_init(&x32, TG_DTYPE_F32, 2, xs));
    CHECK_OK(tg_tensor_init(&w32, TG_DTYPE_F32, 2, ws));
    int64_t ys[2] = {9, 17};
    CHECK_OK(tg_tensor_init(&g, TG_DTYPE_F32, 2, ys));
    for (int i = 0; i < 9 * 33; i++)
        ((float *)x32.data)[i] = tg_bf16_to_f32(((tg_bf16 *)x16.data)[i] = tg_bf16_from_f32(uniform()));
    for (int i = 0; i < 17 * 33; i++)
        ((float *)w32.data)[i] = tg_bf16_to_f32(((tg_bf16 *)w16.data)[i] = tg_bf16_from_f32(uniform()));
    for (int i = 0; i < 9 * 17; i++) ((float *)g.data)[i] = uniform();
    const tg_tensor *in16[2] = {&x16, &w16}, *in32[2] = {&x32, &w32};
    tg_op_call c16 = {.def = linear, .in = in16, .n_in = 2}, c32 = {.def = linear, .in = in32, .n_in = 2};
    CHECK_OK(tg_op_call_forward(&c16));
    CHECK_OK(tg_op_call_forward(&c32));
    CHECK(c16.out.dtype == TG_DTYPE_F32);
    CHECK(memcmp(c16.out.data, c32.out.data, sizeof(float) * 9 * 17) == 0);
    int want[2] = {1, 1};
    tg_tensor g16[2], g32[2];
    CHECK_OK(tg_op_call_backward(&c16, &g, want, g16));
    CHECK_OK(tg_op_call_backward(&c32, &g, want, g32));
    int close = 1;
    for (int t = 0; t < 2; t++)
        for (int64_t i = 0; i < tg_tensor_numel(&g32[t]); i++) {
            float ref = ((float *)g32[t].data)[i], got = tg_bf16_to_f32(((tg_bf16 *)g16[t].data)[i]);
            close &= fabsf(ref - got) <= 1e-2f * (1.0f + fabsf(ref));
        }
    CHECK(close);
    for (int t = 0; t < 2; t++) {
        tg_tensor_free(&g16[t]);
        tg_tensor_free(&g32[t]);
    }
    tg_op_call_free(&c16);
    tg_op_call_free(&c32);
    tg_tensor_free(&x16);
    tg_tensor_free(&w16);
    tg_tensor_free(&x32);
    tg_tensor_free(&w32);
    tg_tensor_free(&g);
}

int main(void)
{
    test_against_naive(TG_GEMM_BACKEND_AUTO);
    test_against_naive(TG_GEMM_BACKEND_PORTABLE);
    test_against_naive(TG_GEMM_BACKEND_OPENBLAS);
    test_against_openblas();
    test_thread_invariance();
    test_linear_bf16();
    tg_threads_shutdown();
    return check_report("test_gemm");
}
