/* gemm.c: the GEMM driver (BLIS-style): packing of A and B panels, cache blocking,
 * the split over threads, the runtime choice of micro-kernel, and OpenBLAS as the
 * reference path (TRUGRADE_GEMM=openblas, read once).
 * Not the micro-kernels' instructions: the AVX-512 one lives in gemm_avx512.c;
 * the portable one below serves CPUs without AVX-512.
 *
 * Loops (Goto's order), per thread, over its own part of C:
 *   for jc in blocks of nc columns:
 *     for pc in blocks of kc (K, in increasing order):     pack B[pc, jc] -> [nc/nr][kc][nr]
 *       for ic in blocks of mc rows:                       pack A[ic, pc] -> [mc/mr][kc][mr]
 *         for jr, ir over micro-tiles:                     micro-kernel on a tile of up to mr x nr
 * or, when the thread's whole packed A fits in L2 (small M: convolutions, linear layers),
 * A packed once and B walked in column chunks with all K blocks of a chunk in a row
 * (gemm_block). The thread split (choose_split) takes N or M by estimated cost.
 * NOTE: bit-identical results for any thread count: threads split only M or N (never K),
 * the K blocks depend on k alone, and every micro-tile sums its kc products from zero and
 * adds them to C once (gemm_kernel.h); so each C element sees the same operations in
 * the same order wherever the thread and tile boundaries fall. */
#include "gemm.h"

#include <cblas.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../core/tensor.h"
#include "../core/threads.h"
#include "gemm_kernel.h"

#define TG_GEMM_WHOLE_A_BYTES (384 << 10)   /* a thread's packed A up to this is packed once (L2) */
#define TG_GEMM_B_CHUNK_BYTES (256 << 10)   /* the packed B chunk of that loop order (L2) */
#define TG_GEMM_PARALLEL_MIN (1 << 20)  /* m*n*k below this runs on the calling thread */
#define TG_GEMM_MAX_PARTS 256           /* one part per thread (tg_threads_set allows 256) */

/* ---- the portable micro-kernel (4 x 16; compilers vectorize the j loop) ---- */

static void micro_portable(int64_t kc, const float *restrict a, const float *restrict b, float *restrict c,
                           int64_t ldc, int accumulate, int rows, int cols)
{
    float acc[4][16] = {{0}};
    for (int64_t p = 0; p < kc; p++) {
        for (int r = 0; r < 4; r++) {
            float ar = a[r];
            for (int j = 0; j < 16; j++) acc[r][j] += ar * b[j];
        }
        a += 4;
        b += 16;
    }
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) c[r * ldc + j] = accumulate ? c[r * ldc + j] + acc[r][j] : acc[r][j];
}

static const tg_gemm_kernel kernel_portable = {
    .name = "portable-4x16", .mr = 4, .nr = 16, .mc = 128, .kc = 256, .nc = 2048, .micro = micro_portable,
};

/* ---- one-time choices: kernel and backend ---- */

static pthread_once_t choice_once = PTHREAD_ONCE_INIT;
static int round_operands_bf16;               /* tg_gemm_set_bf16_operands */
static void round_to_bf16_portable(float *restrict x, int64_t n);
static void round_to_bf16_avx512(float *restrict x, int64_t n);
static void (*round_to_bf16)(float *restrict x, int64_t n) = round_to_bf16_portable;   /* of this CPU */
static const tg_gemm_kernel *best_kernel;     /* of this CPU */
static const tg_gemm_kernel *chosen_kernel;   /* best_kernel, or the portable one on request */
static int use_openblas;
static pthread_key_t buffers_key;
static int buffers_key_ok;

typedef struct gemm_buffers {
    float *a;          /* packed A block  [mc/mr][kc][mr] */
    size_t a_floats;
    float *b;          /* packed B block  [nc/nr][kc][nr] */
    size_t b_floats;
} gemm_buffers;

static void free_buffers(void *ptr)
{
    gemm_buffers *buffers = ptr;
    tg_aligned_free(buffers->a);
    tg_aligned_free(buffers->b);
    free(buffers);
}

static void choose_once(void)
{
    best_kernel = __builtin_cpu_supports("avx512f") ? tg_gemm_kernel_avx512() : &kernel_portable;
    round_to_bf16 = __builtin_cpu_supports("avx512f") ? round_to_bf16_avx512 : round_to_bf16_portable;
    const char *env = getenv("TRUGRADE_GEMM");
    use_openblas = env && strcmp(env, "openblas") == 0;
    chosen_kernel = env && strcmp(env, "portable") == 0 ? &kernel_portable : best_kernel;
    buffers_key_ok = pthread_key_create(&buffers_key, free_buffers) == 0;
}

/* NOTE: packing buffers are cached per thread (a pthread key, freed when the thread
 * exits) and only grow, so a steady state of same-sized calls never allocates. Per
 * thread rather than per call site because conv and linear call the GEMM from inside
 * parallel loops too. */
static float *grow(float **buffer, size_t *have, size_t need)
{
    if (*have >= need) return *buffer;
    tg_aligned_free(*buffer);
    *buffer = tg_aligned_alloc(need * sizeof(float));
    *have = *buffer ? need : 0;
    return *buffer;
}

static gemm_buffers *thread_buffers(void)
{
    if (!buffers_key_ok) return NULL;
    gemm_buffers *buffers = pthread_getspecific(buffers_key);
    if (buffers) return buffers;
    buffers = calloc(1, sizeof *buffers);
    if (buffers && pthread_setspecific(buffers_key, buffers) != 0) {
        free(buffers);
        return NULL;
    }
    return buffers;
}

/* ---- the problem after transposes: element (i, j) of X at data[i*rs + j*cs] ---- */

typedef struct gemm_matrix {
    const void *data;   /* float or tg_bf16 */
    int64_t rs, cs;
} gemm_matrix;

typedef struct gemm_job {
    const tg_gemm_kernel *kernel;
    int bf16;              /* A and B hold tg_bf16 */
    int round_bf16;        /* float32 A and B: round each element to bfloat16 as it is packed */
    int64_t m, n, k;
    gemm_matrix a;         /* [m, k] */
    gemm_matrix b;         /* [k, n] */
    float *c;              /* [m, n] at c[i*ldc + j] */
    int64_t ldc;
    int beta_zero;
    int64_t kc;            /* K block, from k alone */
    int split_n;           /* parts are column (1) or row (0) ranges */
    int64_t bounds[TG_GEMM_MAX_PARTS + 1];   /* part t: [bounds[t], bounds[t+1]) of those */
} gemm_job;

static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

static inline float element(const gemm_matrix *x, int bf16, int64_t offset)
{
    return bf16 ? tg_bf16_to_f32(((const tg_bf16 *)x->data)[offset]) : ((const float *)x->data)[offset];
}

/* Rounds n float32 values in place to bfloat16 precision (round-to-nearest-even, NaN
 * kept quiet: the bits of tg_bf16_from_f32 widened back), in a form compilers vectorize. */
static void round_to_bf16_portable(float *restrict x, int64_t n)
{
    uint32_t *restrict bits = (uint32_t *)x;
    for (int64_t i = 0; i < n; i++) {
        uint32_t b = bits[i];
        uint32_t rounded = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;
        uint32_t nan = (b & 0xffff0000u) | 0x00400000u;
        bits[i] = (b & 0x7fffffffu) > 0x7f800000u ? nan : rounded;
    }
}

/* The same 16 lanes at a time (AVX-512 CPUs only; chosen in choose_once). */
__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) static void round_to_bf16_avx512(float *restrict x, int64_t n)
{
    const __m512i low_bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
    const __m512i high = _mm512_set1_epi32((int)0xffff0000u), magnitude = _mm512_set1_epi32(0x7fffffff);
    const __m512i infinity = _mm512_set1_epi32(0x7f800000), quiet = _mm512_set1_epi32(0x00400000);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i b = _mm512_loadu_si512((const void *)(x + i));
        __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), one);
        __m512i rounded = _mm512_and_si512(_mm512_add_epi32(_mm512_add_epi32(b, low_bias), lsb), high);
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, magnitude), infinity);
        __m512i quieted = _mm512_or_si512(_mm512_and_si512(b, high), quiet);
        _mm512_storeu_si512((void *)(x + i), _mm512_mask_blend_epi32(nan, rounded, quieted));
    }
    round_to_bf16_portable(x + i, n - i);
}

static inline float element_rounded(const gemm_job *job, const gemm_matrix *x, int64_t offset)
{
    float v = element(x, job->bf16, offset);
    return job->round_bf16 ? tg_bf16_to_f32(tg_bf16_from_f32(v)) : v;
}

static inline const void *element_address(const gemm_matrix *x, int bf16, int64_t offset)
{
    return bf16 ? (const void *)((const tg_bf16 *)x->data + offset) : (const void *)((const float *)x->data + offset);
}

/* Packs A[i0 : i0+mc, p0 : p0+kc] as micro-panels [kc][mr], rows past mc zero. */
static void pack_a(const gemm_job *job, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float *restrict dst)
{
    const int mr = job->kernel->mr;
    const int64_t rs = job->a.rs, cs = job->a.cs;
    if (job->kernel->pack_a &&
        job->kernel->pack_a(element_address(&job->a, job->bf16, i0 * rs + p0 * cs), job->bf16, rs, cs, mc, kc, dst)) {
        if (job->round_bf16) round_to_bf16(dst, round_up(mc, mr) * kc);
        return;
    }
    for (int64_t ir = 0; ir < mc; ir += mr) {
        int64_t rows = mc - ir < mr ? mc - ir : mr;
        float *restrict panel = dst + ir * kc;   /* [kc][mr] */
        int64_t origin = (i0 + ir) * rs + p0 * cs;
        if (rows < mr) memset(panel, 0, sizeof(float) * (size_t)(kc * mr));
        if (!job->bf16 && rs == 1) {
            const float *src = (const float *)job->a.data + origin;
            for (int64_t p = 0; p < kc; p++)
                for (int64_t r = 0; r < rows; r++) panel[p * mr + r] = src[p * cs + r];
        } else if (!job->bf16 && cs == 1) {
            const float *src = (const float *)job->a.data + origin;
            for (int64_t r = 0; r < rows; r++)
                for (int64_t p = 0; p < kc; p++) panel[p * mr + r] = src[r * rs + p];
        } else {
            for (int64_t r = 0; r < rows; r++)
                for (int64_t p = 0; p < kc; p++) panel[p * mr + r] = element(&job->a, job->bf16, origin + r * rs + p * cs);
        }
        if (job->round_bf16) round_to_bf16(panel, kc * mr);
    }
}

/* Packs B[p0 : p0+kc, j0 : j0+nc] as micro-panels [kc][nr], columns past nc zero. */
static void pack_b(const gemm_job *job, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float *restrict dst)
{
    const int nr = job->kernel->nr;
    const int64_t rs = job->b.rs, cs = job->b.cs;
    if (job->kernel->pack_b &&
        job->kernel->pack_b(element_address(&job->b, job->bf16, p0 * rs + j0 * cs), job->bf16, cs, rs, nc, kc, dst)) {
        if (job->round_bf16) round_to_bf16(dst, round_up(nc, nr) * kc);
        return;
    }
    for (int64_t jr = 0; jr < nc; jr += nr) {
        int64_t cols = nc - jr < nr ? nc - jr : nr;
        float *restrict panel = dst + jr * kc;   /* [kc][nr] */
        int64_t origin = p0 * rs + (j0 + jr) * cs;
        if (cols < nr) memset(panel, 0, sizeof(float) * (size_t)(kc * nr));
        if (!job->bf16 && cs == 1) {
            const float *src = (const float *)job->b.data + origin;
            for (int64_t p = 0; p < kc; p++)
                for (int64_t j = 0; j < cols; j++) panel[p * nr + j] = src[p * rs + j];
        } else if (!job->bf16 && rs == 1) {
            const float *src = (const float *)job->b.data + origin;
            for (int64_t j = 0; j < cols; j++)
                for (int64_t p = 0; p < kc; p++) panel[p * nr + j] = src[j * cs + p];
        } else if (cs == 1) {
            const tg_bf16 *src = (const tg_bf16 *)job->b.data + origin;
            for (int64_t p = 0; p < kc; p++)
                for (int64_t j = 0; j < cols; j++) panel[p * nr + j] = tg_bf16_to_f32(src[p * rs + j]);
        } else {
            for (int64_t j = 0; j < cols; j++)
                for (int64_t p = 0; p < kc; p++) panel[p * nr + j] = element(&job->b, job->bf16, origin + j * cs + p * rs);
        }
        if (job->round_bf16) round_to_bf16(panel, kc * nr);
    }
}

/* All micro-tiles of one packed A block against one packed B block (edge tiles included:
 * the micro-kernel writes only the rows and columns that exist). */
static void macro_kernel(const gemm_job *job, int64_t ic, int64_t mc, int64_t jc, int64_t nc, int64_t kc,
                         int accumulate, const float *a_packed, const float *b_packed)
{
    const tg_gemm_kernel *kernel = job->kernel;
    const int mr = kernel->mr, nr = kernel->nr;
    for (int64_t jr = 0; jr < nc; jr += nr) {
        int cols = nc - jr < nr ? (int)(nc - jr) : nr;
        const float *b_panel = b_packed + jr * kc;
        for (int64_t ir = 0; ir < mc; ir += mr) {
            int rows = mc - ir < mr ? (int)(mc - ir) : mr;
            kernel->micro(kc, a_packed + ir * kc, b_panel, job->c + (ic + ir) * job->ldc + jc + jr, job->ldc,
                          accumulate, rows, cols);
        }
    }
}

/* NOTE: only when the packing buffers cannot be allocated: a direct loop with the same
 * K blocks, deterministic too but rounding differently from the AVX-512 kernel (no FMA);
 * never used in a steady state. */
static void gemm_unpacked(const gemm_job *job, int64_t i0, int64_t i1, int64_t j0, int64_t j1)
{
    for (int64_t i = i0; i < i1; i++)
        for (int64_t j = j0; j < j1; j++) {
            float *out = job->c + i * job->ldc + j;
            for (int64_t pc = 0; pc < job->k; pc += job->kc) {
                int64_t kc = job->k - pc < job->kc ? job->k - pc : job->kc;
                float sum = 0.0f;
                for (int64_t p = pc; p < pc + kc; p++)
                    sum += element_rounded(job, &job->a, i * job->a.rs + p * job->a.cs) *
                           element_rounded(job, &job->b, p * job->b.rs + j * job->b.cs);
                *out = (job->beta_zero && pc == 0) ? sum : *out + sum;
            }
        }
}

/* NOTE: two loop orders. When the thread's whole packed A (all of K) fits in L2
 * (TG_GEMM_WHOLE_A_BYTES: the small-M shapes of convolutions and linear layers), A is packed
 * once and B is walked in column chunks, all K blocks of a chunk in a row, so the chunk of C
 * stays in cache between K blocks and B (often the largest operand, read once) is packed in
 * long contiguous runs. Otherwise Goto's order: B blocks kc x nc (L3), A blocks mc x kc (L2),
 * B micro-panels kc x nr (L1). Either way each C element sums the same K blocks in
 * increasing order, so the choice never changes a bit of the result. */
static void gemm_block(const gemm_job *job, int64_t i0, int64_t i1, int64_t j0, int64_t j1)
{
    const tg_gemm_kernel *kernel = job->kernel;
    const int64_t nr = kernel->nr;
    const int64_t m_pad = round_up(i1 - i0, kernel->mr);
    const int whole_a = m_pad * job->k * (int64_t)sizeof(float) <= TG_GEMM_WHOLE_A_BYTES;
    int64_t nc_max = whole_a ? TG_GEMM_B_CHUNK_BYTES / ((int64_t)sizeof(float) * job->kc) / nr * nr : kernel->nc;
    if (nc_max < nr) nc_max = nr;
    if (nc_max > round_up(j1 - j0, nr)) nc_max = round_up(j1 - j0, nr);
    size_t a_need = (size_t)(whole_a ? m_pad * job->k : (m_pad < kernel->mc ? m_pad : kernel->mc) * job->kc);
    gemm_buffers *buffers = thread_buffers();
    float *a_packed = buffers ? grow(&buffers->a, &buffers->a_floats, a_need) : NULL;
    float *b_packed = buffers ? grow(&buffers->b, &buffers->b_floats, (size_t)(nc_max * job->kc)) : NULL;
    if (!a_packed || !b_packed) {
        gemm_unpacked(job, i0, i1, j0, j1);
        return;
    }
    if (whole_a) {
        for (int64_t pc = 0; pc < job->k; pc += job->kc) {   /* [k blocks][m_pad/mr][kc][mr] */
            int64_t kc = job->k - pc < job->kc ? job->k - pc : job->kc;
            pack_a(job, i0, i1 - i0, pc, kc, a_packed + m_pad * pc);
        }
        for (int64_t jc = j0; jc < j1; jc += nc_max) {
            int64_t nc = j1 - jc < nc_max ? j1 - jc : nc_max;
            for (int64_t pc = 0; pc < job->k; pc += job->kc) {
                int64_t kc = job->k - pc < job->kc ? job->k - pc : job->kc;
                pack_b(job, pc, kc, jc, nc, b_packed);
                macro_kernel(job, i0, i1 - i0, jc, nc, kc, !(job->beta_zero && pc == 0), a_packed + m_pad * pc,
                             b_packed);
            }
        }
        return;
    }
    for (int64_t jc = j0; jc < j1; jc += nc_max) {
        int64_t nc = j1 - jc < nc_max ? j1 - jc : nc_max;
        for (int64_t pc = 0; pc < job->k; pc += job->kc) {
            int64_t kc = job->k - pc < job->kc ? job->k - pc : job->kc;
            pack_b(job, pc, kc, jc, nc, b_packed);
            for (int64_t ic = i0; ic < i1; ic += kernel->mc) {
                int64_t mc = i1 - ic < kernel->mc ? i1 - ic : kernel->mc;
                pack_a(job, ic, mc, pc, kc, a_packed);
                macro_kernel(job, ic, mc, jc, nc, kc, !(job->beta_zero && pc == 0), a_packed, b_packed);
            }
        }
    }
}

/* Parts [begin, end) are contiguous, so a caller running several of them inline (from
 * inside a worker) computes them as one block. */
static void gemm_range(void *ctx, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const gemm_job *job = ctx;
    if (job->bounds[begin] == job->bounds[end]) return;
    if (job->split_n) gemm_block(job, 0, job->m, job->bounds[begin], job->bounds[end]);
    else gemm_block(job, job->bounds[begin], job->bounds[end], 0, job->n);
}

/* Cuts [0, extent) into `parts` ranges of whole units (tiles) as equal as can be. */
static void cut(int64_t extent, int64_t unit, int64_t parts, int64_t *bounds)
{
    int64_t units = (extent + unit - 1) / unit;
    for (int64_t t = 0; t <= parts; t++) {
        int64_t at = (units * t + parts / 2) / parts * unit;
        bounds[t] = at < extent ? at : extent;
    }
}

/* Estimated cycles of the slowest part: its FMAs (one per row, 16 columns and k step, two
 * per cycle) and its packing (about half a cycle per element; the operand that is not
 * split is packed whole by every part). */
static double split_cost(const gemm_job *job, int split_n, const int64_t *bounds, int64_t parts)
{
    double worst = 0.0;
    for (int64_t t = 0; t < parts; t++) {
        double size = (double)(bounds[t + 1] - bounds[t]);
        double rows = split_n ? (double)job->m : size, cols = split_n ? size : (double)job->n;
        double fma = rows * (double)((int64_t)(cols + 15) / 16) * (double)job->k * 0.5;
        double pack = 0.5 * (double)job->k * (rows + cols);
        if (fma + pack > worst) worst = fma + pack;
    }
    return worst;
}

/* NOTE: the parts may fall anywhere without changing a bit of C: every element is one FMA
 * chain per K block whatever tile or part holds it. So the split is chosen for speed alone:
 * along N or M, whichever gives the cheaper slowest part (duplicated packing counted),
 * cut on tile boundaries into parts as equal as can be. */
static void choose_split(gemm_job *job, int64_t parts)
{
    int64_t by_n[TG_GEMM_MAX_PARTS + 1];
    cut(job->n, job->kernel->nr, parts, by_n);
    cut(job->m, job->kernel->mr, parts, job->bounds);
    job->split_n = split_cost(job, 1, by_n, parts) < split_cost(job, 0, job->bounds, parts);
    if (job->split_n) memcpy(job->bounds, by_n, sizeof(int64_t) * (size_t)(parts + 1));
}

static void gemm_run(int bf16, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                     const void *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (beta == 0.0f)
            for (int64_t i = 0; i < m; i++) memset(c + i * ldc, 0, sizeof(float) * (size_t)n);
        return;
    }
    const tg_gemm_kernel *kernel = chosen_kernel;
    gemm_job job = {
        .kernel = kernel, .bf16 = bf16, .round_bf16 = !bf16 && round_operands_bf16, .m = m, .n = n, .k = k,
        .a = {a, trans_a ? 1 : lda, trans_a ? lda : 1},
        .b = {b, trans_b ? 1 : ldb, trans_b ? ldb : 1},
        .c = c, .ldc = ldc, .beta_zero = beta == 0.0f,
    };
    int64_t k_blocks = (k + kernel->kc - 1) / kernel->kc;
    job.kc = (k + k_blocks - 1) / k_blocks;
    int64_t parts = (double)m * (double)n * (double)k < TG_GEMM_PARALLEL_MIN ? 1 : tg_threads_count();
    if (parts > TG_GEMM_MAX_PARTS) parts = TG_GEMM_MAX_PARTS;
    if (parts < 1) parts = 1;
    choose_split(&job, parts);
    if (parts == 1) gemm_range(&job, 0, 1, 0);
    else tg_parallel_for(parts, 1, gemm_range, &job);
}

/* ---- the OpenBLAS reference path ---- */

static void openblas_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static void widen(const tg_bf16 *x, int64_t rows, int64_t cols, int64_t ld, float *restrict out /* [rows, cols] */)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) out[i * cols + j] = tg_bf16_to_f32(x[i * ld + j]);
}

static void openblas_bf16(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, const tg_bf16 *a,
                          int64_t lda, const tg_bf16 *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    gemm_buffers *buffers = thread_buffers();
    float *fa = buffers ? grow(&buffers->a, &buffers->a_floats, (size_t)(m * k)) : NULL;   /* op(A) as stored */
    float *fb = buffers ? grow(&buffers->b, &buffers->b_floats, (size_t)(k * n)) : NULL;
    if (!fa || !fb) {
        gemm_run(1, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    if (trans_a) widen(a, k, m, lda, fa);
    else widen(a, m, k, lda, fa);
    if (trans_b) widen(b, n, k, ldb, fb);
    else widen(b, k, n, ldb, fb);
    openblas_f32(trans_a, trans_b, m, n, k, fa, trans_a ? m : k, fb, trans_b ? k : n, beta, c, ldc);
}

/* ---- the entry points of gemm.h ---- */

tg_gemm_backend tg_gemm_backend_set(tg_gemm_backend backend)
{
    pthread_once(&choice_once, choose_once);
    tg_gemm_backend previous = use_openblas ? TG_GEMM_BACKEND_OPENBLAS
                               : chosen_kernel == &kernel_portable && best_kernel != &kernel_portable
                                   ? TG_GEMM_BACKEND_PORTABLE : TG_GEMM_BACKEND_AUTO;
    use_openblas = backend == TG_GEMM_BACKEND_OPENBLAS;
    chosen_kernel = backend == TG_GEMM_BACKEND_PORTABLE ? &kernel_portable : best_kernel;
    return previous;
}

int tg_gemm_set_bf16_operands(int on)
{
    int previous = round_operands_bf16;
    round_operands_bf16 = on != 0;
    return previous;
}

int tg_gemm_bf16_operands(void) { return round_operands_bf16; }

const char *tg_gemm_kernel_name(void)
{
    pthread_once(&choice_once, choose_once);
    return use_openblas ? "openblas" : chosen_kernel->name;
}

void tg_gemm_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                 const float *a, int64_t lda, const float *b, int64_t ldb,
                 float beta, float *c, int64_t ldc)
{
    pthread_once(&choice_once, choose_once);
    /* NOTE: operands rounded to bfloat16 take the packed path (OpenBLAS would see them unrounded) */
    if (use_openblas && !round_operands_bf16 && m > 0 && n > 0 && k > 0) {
        openblas_f32(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    gemm_run(0, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

void tg_gemm_bf16(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                  const tg_bf16 *a, int64_t lda, const tg_bf16 *b, int64_t ldb,
                  float beta, float *c, int64_t ldc)
{
    pthread_once(&choice_once, choose_once);
    if (use_openblas && m > 0 && n > 0 && k > 0) {
        openblas_bf16(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    gemm_run(1, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
}
