/* conv_depthwise.c: direct kernels for depthwise convolution (groups == channels, each
 * input channel feeding o / c >= 1 output channels): forward, data gradient, weight
 * gradient. Not the general grouped conv: conv.c does that with im2col + GEMM, which is
 * slow here because every group would be a GEMM with K = kh * kw.
 *
 * Method: a plane is copied into a zero-padded "phase" buffer where padded column q lives
 * at [q % stride][q / stride]; for any stride and dilation the taps of 16 consecutive
 * outputs are then 16 consecutive floats. A kernel is a list of taps (offset into the
 * buffer, weight) applied to a list of jobs (16-wide output vectors); the AVX-512 engine
 * runs 8 jobs at once so that 8 independent FMA chains hide the latency.
 * NOTE: work is cut into TG_DW_SLOTS fixed slots, each with its own scratch and a fixed
 * set of planes, so results never depend on the thread count.
 * Channel counts that are a multiple of 16 (o == c) on AVX-512 CPUs take the
 * channel-blocked path further down instead (16 channels in one vector). */
#include <string.h>

#include <immintrin.h>

#include "conv.h"
#include "op.h"

#define TG_DW_SLOTS 16
#define TG_DW_BATCH 8   /* jobs run together by the engines */
#define TG_DW_LANES 16  /* floats per job */
#define TG_DW_MAX_TAPS 256

typedef struct dw_job {
    int64_t src;   /* offset of the job's first tap-0 input in the source buffer */
    int64_t dst;   /* offset of its first output */
    int len;       /* 1..16 outputs */
} dw_job;

/* Phase buffer of an input plane for the forward / weight pass. */
typedef struct dw_layout {
    int64_t rows;        /* padded rows kept */
    int64_t lanes;       /* floats per phase (multiple of 16) */
    int64_t row_stride;  /* sw * lanes */
    int64_t qcols;       /* padded columns kept */
} dw_layout;

/* Padded gy plane and phase-form gx plane for the data gradient. */
typedef struct dw_data_layout {
    int64_t top, left;   /* zero rows above / columns left of gy */
    int64_t rows, cols;  /* gyp [rows, cols] */
    int64_t tcols;       /* phase columns of gx computed: ceil((pw + w) / sw) */
    int64_t lanes;       /* floats per gx phase (multiple of 16) */
    int64_t row_stride;  /* sw * lanes */
} dw_data_layout;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round16(int64_t v) { return (v + 15) & ~(int64_t)15; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

int tg_conv_is_depthwise(const tg_conv_geom *g)
{
    return g->groups == g->c && g->c > 0 && g->kh * g->kw <= TG_DW_MAX_TAPS;
}

static dw_layout forward_layout(const tg_conv_geom *g)
{
    dw_layout l;
    l.rows = (g->ho - 1) * g->sh + (g->kh - 1) * g->dh + 1;
    l.qcols = (g->wo - 1) * g->sw + (g->kw - 1) * g->dw + 1;
    l.lanes = round16(ceil_div(l.qcols, g->sw));
    l.row_stride = g->sw * l.lanes;
    return l;
}

static dw_data_layout data_layout(const tg_conv_geom *g)
{
    dw_data_layout l;
    l.top = ceil_div((g->kh - 1) * g->dh, g->sh);
    l.left = ceil_div((g->kw - 1) * g->dw, g->sw);
    l.tcols = ceil_div(g->pw + g->w, g->sw);
    l.rows = l.top + max64(g->ho, (g->h - 1 + g->ph) / g->sh + 1);
    l.cols = round16(l.left + max64(l.tcols, g->wo));
    l.lanes = round16(l.tcols);
    l.row_stride = g->sw * l.lanes;
    return l;
}

static size_t forward_slot_floats(const tg_conv_geom *g)
{
    dw_layout l = forward_layout(g);
    return (size_t)tg_align64((size_t)(l.rows * l.row_stride) * sizeof(float)) / sizeof(float);
}

static size_t data_slot_floats(const tg_conv_geom *g)
{
    dw_data_layout l = data_layout(g);
    return (size_t)(tg_align64((size_t)(l.rows * l.cols) * sizeof(float)) +
                    tg_align64((size_t)((g->h + 1) * l.row_stride) * sizeof(float))) / sizeof(float);
}


/* dst[t] = src[stride * t] for t < count (the strided middle of a phase row). */
static inline __attribute__((always_inline)) void gather_strided(float *restrict dst, const float *restrict src,
                                                                 int64_t count, int64_t stride)
{
    if (stride == 2) for (int64_t t = 0; t < count; t++) dst[t] = src[2 * t];
    else for (int64_t t = 0; t < count; t++) dst[t] = src[stride * t];
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static void gather_strided_avx512(float *restrict dst, const float *restrict src, int64_t count, int64_t stride)
{
    int64_t t = 0;
    if (stride == 2) {
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        for (; t + 16 <= count; t += 16) {
            __m512 lo = _mm512_loadu_ps(src + 2 * t), hi = _mm512_maskz_loadu_ps(0x7fff, src + 2 * t + 16);
            _mm512_storeu_ps(dst + t, _mm512_permutex2var_ps(lo, even, hi));
        }
    }
    gather_strided(dst + t, src + stride * t, count - t, stride);
}

static int have_avx512(void)
{
    static int cached = -1;
    if (cached < 0) cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
    return cached;
}

/* Copies plane x [h, w] into buf [rows][sw][lanes] (layout l), zero outside the input. */
static void fill_phase(const tg_conv_geom *g, const dw_layout *l, const float *restrict x, float *restrict buf)
{
    int avx512 = have_avx512();
    for (int64_t r = 0; r < l->rows; r++) {
        float *row = buf + r * l->row_stride;
        int64_t ih = r - g->ph;
        if (ih < 0 || ih >= g->h) {
            memset(row, 0, (size_t)l->row_stride * sizeof(float));
            continue;
        }
        const float *xr = x + ih * g->w;
        for (int64_t phase = 0; phase < g->sw; phase++) {
            /* phase element t holds input column iw = phase + sw*t - pw */
            float *dst = row + phase * l->lanes;
            int64_t shift = g->pw - phase;
            int64_t lo = shift > 0 ? (shift + g->sw - 1) / g->sw : 0;
            int64_t hi = g->w + shift > 0 ? (g->w + shift + g->sw - 1) / g->sw : 0;
            lo = min64(lo, l->lanes);
            hi = max64(lo, min64(hi, l->lanes));
            memset(dst, 0, (size_t)lo * sizeof(float));
            const float *src = xr + (phase + g->sw * lo - g->pw);
            if (g->sw == 1) memcpy(dst + lo, src, (size_t)(hi - lo) * sizeof(float));
            else if (avx512) gather_strided_avx512(dst + lo, src, hi - lo, g->sw);
            else gather_strided(dst + lo, src, hi - lo, g->sw);
            memset(dst + hi, 0, (size_t)(l->lanes - hi) * sizeof(float));
        }
    }
}

/* ---- engines: portable and AVX-512 ---- */

/* dst[job] = (init ? *init : dst[job]) + sum_t w[t] * src[job.src + off[t] + i], i < job.len. */
static void apply_taps_portable(const float *src, float *dst, const dw_job *jobs, int n_jobs,
                                const int64_t *off, const float *w, int n_taps, const float *init)
{
    for (int j = 0; j < n_jobs; j++) {
        float *d = dst + jobs[j].dst;
        if (init)
            for (int i = 0; i < jobs[j].len; i++) d[i] = *init;
        for (int t = 0; t < n_taps; t++) {
            const float *s = src + jobs[j].src + off[t];
            for (int i = 0; i < jobs[j].len; i++) d[i] += w[t] * s[i];
        }
    }
}

/* acc[t][lane] += gy[job.dst + i] * src[job.src + off[t] + i] (lane = i). */
static void dot_taps_portable(const float *src, const float *gy, const dw_job *jobs, int n_jobs,
                              const int64_t *off, int n_taps, float *acc)
{
    for (int t = 0; t < n_taps; t++) {
        float *a = acc + t * TG_DW_LANES;
        for (int j = 0; j < n_jobs; j++) {
            const float *s = src + jobs[j].src + off[t], *d = gy + jobs[j].dst;
            for (int i = 0; i < jobs[j].len; i++) a[i] += d[i] * s[i];
        }
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static void apply_taps_avx512(const float *src, float *dst, const dw_job *jobs, int n_jobs,
                              const int64_t *off, const float *w, int n_taps, const float *init)
{
    __m512 acc[TG_DW_BATCH];
    __mmask16 mask[TG_DW_BATCH];
    const float *s[TG_DW_BATCH];
    for (int j = 0; j < TG_DW_BATCH; j++) {
        int jj = j < n_jobs ? j : 0;
        mask[j] = j < n_jobs ? (__mmask16)((1u << jobs[jj].len) - 1u) : 0;
        s[j] = src + jobs[jj].src;
        acc[j] = init ? _mm512_set1_ps(*init) : _mm512_maskz_loadu_ps(mask[j], dst + jobs[jj].dst);
    }
    for (int t = 0; t < n_taps; t++) {
        __m512 wv = _mm512_set1_ps(w[t]);
        int64_t o = off[t];
        for (int j = 0; j < TG_DW_BATCH; j++)
            acc[j] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(mask[j], s[j] + o), acc[j]);
    }
    for (int j = 0; j < n_jobs; j++) _mm512_mask_storeu_ps(dst + jobs[j].dst, mask[j], acc[j]);
}

/* NOTE: taps are independent chains here (8 jobs feed one accumulator per tap), so the
 * 9 or 25 chains of a 3x3 / 5x5 kernel hide the FMA latency. */
__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static void dot_taps_avx512(const float *src, const float *gy, const dw_job *jobs, int n_jobs,
                            const int64_t *off, int n_taps, float *acc)
{
    __m512 gv[TG_DW_BATCH];
    __mmask16 mask[TG_DW_BATCH];
    const float *s[TG_DW_BATCH];
    for (int j = 0; j < TG_DW_BATCH; j++) {
        int jj = j < n_jobs ? j : 0;
        mask[j] = j < n_jobs ? (__mmask16)((1u << jobs[jj].len) - 1u) : 0;
        s[j] = src + jobs[jj].src;
        gv[j] = _mm512_maskz_loadu_ps(mask[j], gy + jobs[jj].dst);
    }
    for (int t = 0; t < n_taps; t++) {
        __m512 a = _mm512_load_ps(acc + t * TG_DW_LANES);
        int64_t o = off[t];
        for (int j = 0; j < TG_DW_BATCH; j++)
            a = _mm512_fmadd_ps(gv[j], _mm512_maskz_loadu_ps(mask[j], s[j] + o), a);
        _mm512_store_ps(acc + t * TG_DW_LANES, a);
    }
}

static void apply_taps(const float *src, float *dst, const dw_job *jobs, int n_jobs,
                       const int64_t *off, const float *w, int n_taps, const float *init)
{
    if (have_avx512()) apply_taps_avx512(src, dst, jobs, n_jobs, off, w, n_taps, init);
    else apply_taps_portable(src, dst, jobs, n_jobs, off, w, n_taps, init);
}

static void dot_taps(const float *src, const float *gy, const dw_job *jobs, int n_jobs,
                     const int64_t *off, int n_taps, float *acc)
{
    if (have_avx512()) dot_taps_avx512(src, gy, jobs, n_jobs, off, n_taps, acc);
    else dot_taps_portable(src, gy, jobs, n_jobs, off, n_taps, acc);
}

/* Tap offsets of the forward / weight pass in layout l (tap index ki * kw + kj). */
static int forward_taps(const tg_conv_geom *g, const dw_layout *l, int64_t *off)
{
    int n = 0;
    for (int64_t ki = 0; ki < g->kh; ki++)
        for (int64_t kj = 0; kj < g->kw; kj++) {
            int64_t q = kj * g->dw;
            off[n++] = ki * g->dh * l->row_stride + (q % g->sw) * l->lanes + q / g->sw;
        }
    return n;
}

/* Visits the 16-wide output vectors of one [ho, wo] plane in batches of 8 jobs: src is the
 * tap-0 offset in layout l, dst the offset in the output plane. */
#define DW_FOR_FORWARD_JOBS(g, l, jobs, n_jobs, BODY)                                   \
    do {                                                                                \
        int n_jobs = 0;                                                                 \
        for (int64_t oh_ = 0; oh_ < (g)->ho; oh_++)                                     \
            for (int64_t ow_ = 0; ow_ < (g)->wo; ow_ += TG_DW_LANES) {                  \
                jobs[n_jobs].src = oh_ * (g)->sh * (l)->row_stride + ow_;               \
                jobs[n_jobs].dst = oh_ * (g)->wo + ow_;                                 \
                jobs[n_jobs].len = (int)min64(TG_DW_LANES, (g)->wo - ow_);              \
                if (++n_jobs == TG_DW_BATCH) { BODY; n_jobs = 0; }                      \
            }                                                                           \
        if (n_jobs) { BODY; }                                                           \
    } while (0)

/* ---- the channel-blocked path: 16 channels in one vector ----
 * For o == c with c a multiple of 16 on AVX-512 CPUs. Each block of 16 channels of one
 * image is transposed (tg_conv_transpose) to [pixel][16] with a zero border, so every tap
 * of every output pixel is one aligned FMA whatever the plane's size: small planes (7x7,
 * 14x14), where the plane-wise kernels above spend their time on edges and per-plane
 * set-up, run at full vector width. The results are transposed back. */

#define TG_DWB_SLOTS 4
#define TG_DWB_MAX_PLANE 4096   /* largest input plane (h * w) of the blocked path */

typedef struct dwb_layout {
    int64_t hp, wp;      /* padded input block [hp][wp][16] */
    int64_t in_plane;    /* h * w */
    int64_t out_plane;   /* ho * wo */
    int64_t big_plane;   /* max of the two */
    int gather;          /* data gradient as a stride-1 conv of padded gy (else a scatter) */
    tg_conv_geom dg;     /* that conv: output [h, w], stride 1 */
    int64_t gp_top, gp_left, gp_rows, gp_cols; /* its padded gy block [gp_rows][gp_cols][16] */
} dwb_layout;

static dwb_layout blocked_layout(const tg_conv_geom *g)
{
    dwb_layout l;
    l.hp = max64(g->h + 2 * g->ph, (g->ho - 1) * g->sh + (g->kh - 1) * g->dh + 1);
    l.wp = max64(g->w + 2 * g->pw, (g->wo - 1) * g->sw + (g->kw - 1) * g->dw + 1);
    l.in_plane = g->h * g->w;
    l.out_plane = g->ho * g->wo;
    l.big_plane = max64(l.in_plane, l.out_plane);
    l.gp_top = g->dh * (g->kh - 1) - g->ph;
    l.gp_left = g->dw * (g->kw - 1) - g->pw;
    l.gp_rows = g->h + g->dh * (g->kh - 1);
    l.gp_cols = g->w + g->dw * (g->kw - 1);
    l.gather = g->sh == 1 && g->sw == 1 && l.gp_top >= 0 && l.gp_left >= 0 && l.gp_rows == l.gp_top + g->ho + g->ph &&
               l.gp_cols == l.gp_left + g->wo + g->pw;
    l.dg = (tg_conv_geom){.n = g->n, .c = g->c, .h = g->ho, .w = g->wo, .o = g->c, .ho = g->h, .wo = g->w,
                          .kh = g->kh, .kw = g->kw, .sh = 1, .sw = 1, .dh = g->dh, .dw = g->dw, .groups = g->c};
    return l;
}

/* NOTE: on large planes (112 x 112) the plane-wise kernels measure faster: their rows are
 * long vectors already and the blocked path's transposes cost more than they save. */
static int blocked(const tg_conv_geom *g)
{
    return have_avx512() && g->o == g->c && g->c % 16 == 0 && g->h * g->w <= TG_DWB_MAX_PLANE;
}

/* Slot: two padded blocks (input; gy or gx), then two [big_plane][16] buffers. */
static size_t blocked_padded_floats(const dwb_layout *l)
{
    int64_t cells = max64(l->hp * l->wp, l->gp_rows * l->gp_cols);
    return (size_t)tg_align64((size_t)(cells * 16) * sizeof(float)) / sizeof(float);
}
static size_t blocked_plane_floats(const dwb_layout *l) { return (size_t)tg_align64((size_t)(l->big_plane * 16) * sizeof(float)) / sizeof(float); }
static size_t blocked_slot_floats(const tg_conv_geom *g)
{
    dwb_layout l = blocked_layout(g);
    return 2 * blocked_padded_floats(&l) + 2 * blocked_plane_floats(&l);
}

/* dst [prows][pcols][16] = the 16 planes src [16][rows * cols] (stride rows * cols) placed at
 * (top, left), zero elsewhere; t is a [rows * cols][16] temporary.
 * NOTE: vector stores, not memset / memcpy: the border pieces are one or two vectors. */
__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static void blocked_load(const float *src, int64_t rows, int64_t cols, int64_t top, int64_t left, int64_t prows,
                         int64_t pcols, float *t, float *dst)
{
    tg_conv_transpose(src, rows * cols, 16, rows * cols, t, 16, 0);
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t r = 0; r < prows; r++) {
        float *d = dst + r * pcols * 16;
        int64_t sr = r - top;
        if (sr < 0 || sr >= rows) {
            for (int64_t q = 0; q < pcols; q++) _mm512_storeu_ps(d + q * 16, zero);
            continue;
        }
        const float *s = t + sr * cols * 16;
        for (int64_t q = 0; q < left; q++) _mm512_storeu_ps(d + q * 16, zero);
        for (int64_t q = 0; q < cols; q++) _mm512_storeu_ps(d + (left + q) * 16, _mm512_loadu_ps(s + q * 16));
        for (int64_t q = left + cols; q < pcols; q++) _mm512_storeu_ps(d + q * 16, zero);
    }
}

/* y [out_plane][16] = bias + sum over taps of wv[tap] * xp at the tap. */
__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static void blocked_forward_kernel(const tg_conv_geom *g, int64_t wp, const float *xp, const float *wv,
                                   const float *bias16, float *y)
{
    const int64_t taps = g->kh * g->kw, step = g->sw * 16;
    __m512 b = bias16 ? _mm512_loadu_ps(bias16) : _mm512_setzero_ps();
    for (int64_t oh = 0; oh < g->ho; oh++) {
        const float *row = xp + oh * g->sh * wp * 16;
        float *out = y + oh * g->wo * 16;
        int64_t ow = 0;
        for (; ow + 8 <= g->wo; ow += 8) {
            __m512 a0 = b, a1 = b, a2 = b, a3 = b, a4 = b, a5 = b, a6 = b, a7 = b;
            for (int64_t t = 0; t < taps; t++) {
                int64_t ki = t / g->kw, kj = t % g->kw;
                const float *s = row + (ki * g->dh * wp + ow * g->sw + kj * g->dw) * 16;
                __m512 wt = _mm512_loadu_ps(wv + t * 16);
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(s), wt, a0);
                a1 = _mm512_fmadd_ps(_mm512_loadu_ps(s + step), wt, a1);
                a2 = _mm512_fmadd_ps(_mm512_loadu_ps(s + 2 * step), wt, a2);
                a3 = _mm512_fmadd_ps(_mm512_loadu_ps(s + 3 * step), wt, a3);
                a4 = _mm512_fmadd_ps(_mm512_loadu_ps(s + 4 * step), wt, a4);
                a5 = _mm512_fmadd_ps(_mm512_loadu_ps(s + 5 * step), wt, a5);
                a6 = _mm512_fmadd_ps(_mm512_loadu_ps(s + 6 * step), wt, a6);
                a7 = _mm512_fmadd_ps(_mm512_loadu_ps(s + 7 * step), wt, a7);
            }
            float *o = out + ow * 16;
            _mm512_storeu_ps(o, a0);
            _mm512_storeu_ps(o + 16, a1);
            _mm512_storeu_ps(o + 32, a2);
            _mm512_storeu_ps(o + 48, a3);
            _mm512_storeu_ps(o + 64, a4);
            _mm512_storeu_ps(o + 80, a5);
            _mm512_storeu_ps(o + 96, a6);
            _mm512_storeu_ps(o + 112, a7);
        }
        for (; ow < g->wo; ow++) {
            __m512 a = b;
            for (int64_t t = 0; t < taps; t++) {
                int64_t ki = t / g->kw, kj = t % g->kw;
                const float *s = row + (ki * g->dh * wp + ow * g->sw + kj * g->dw) * 16;
                a = _mm512_fmadd_ps(_mm512_loadu_ps(s), _mm512_loadu_ps(wv + t * 16), a);
            }
            _mm512_storeu_ps(out + ow * 16, a);
        }
    }
}

/* gxp [hp][wp][16] += the data adjoint of gy [out_plane][16] (scatter, tap by tap: within
 * one tap no two outputs touch the same element). */
__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static void blocked_data_kernel(const tg_conv_geom *g, const dwb_layout *l, const float *gy, const float *wv,
                                float *gxp)
{
    for (int64_t t = 0; t < g->kh * g->kw; t++) {
        int64_t ki = t / g->kw, kj = t % g->kw;
        __m512 wt = _mm512_loadu_ps(wv + t * 16);
        for (int64_t oh = 0; oh < g->ho; oh++) {
            float *d = gxp + ((oh * g->sh + ki * g->dh) * l->wp + kj * g->dw) * 16;
            const float *s = gy + oh * g->wo * 16;
            for (int64_t ow = 0; ow < g->wo; ow++) {
                float *p = d + ow * g->sw * 16;
                _mm512_storeu_ps(p, _mm512_fmadd_ps(_mm512_loadu_ps(s + ow * 16), wt, _mm512_loadu_ps(p)));
            }
        }
    }
}

/* acc[tap][16] += sum over outputs of gy * xp at the tap, an output row at a time (its
 * input rows stay in L1), four chains per tap and row summed in a fixed order. */
__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static void blocked_weight_kernel(const tg_conv_geom *g, const dwb_layout *l, const float *xp, const float *gy,
                                  float *acc)
{
    const int64_t step = g->sw * 16;
    for (int64_t oh = 0; oh < g->ho; oh++) {
        const float *d = gy + oh * g->wo * 16;
        for (int64_t t = 0; t < g->kh * g->kw; t++) {
            int64_t ki = t / g->kw, kj = t % g->kw;
            const float *s = xp + ((oh * g->sh + ki * g->dh) * l->wp + kj * g->dw) * 16;
            __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
            int64_t ow = 0;
            for (; ow + 4 <= g->wo; ow += 4) {
                c0 = _mm512_fmadd_ps(_mm512_loadu_ps(d + ow * 16), _mm512_loadu_ps(s + ow * step), c0);
                c1 = _mm512_fmadd_ps(_mm512_loadu_ps(d + ow * 16 + 16), _mm512_loadu_ps(s + (ow + 1) * step), c1);
                c2 = _mm512_fmadd_ps(_mm512_loadu_ps(d + ow * 16 + 32), _mm512_loadu_ps(s + (ow + 2) * step), c2);
                c3 = _mm512_fmadd_ps(_mm512_loadu_ps(d + ow * 16 + 48), _mm512_loadu_ps(s + (ow + 3) * step), c3);
            }
            for (; ow < g->wo; ow++)
                c0 = _mm512_fmadd_ps(_mm512_loadu_ps(d + ow * 16), _mm512_loadu_ps(s + ow * step), c0);
            __m512 sum = _mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3));
            _mm512_storeu_ps(acc + t * 16, _mm512_add_ps(_mm512_loadu_ps(acc + t * 16), sum));
        }
    }
}

typedef struct dwb_ctx {
    const tg_conv_geom *g;
    const float *x, *w, *bias, *gy;  /* x [n, c, h, w]; w [c, 1, kh, kw]; bias [c]; gy [n, c, ho, wo] */
    float *y, *gx, *gw;              /* y [n, c, ho, wo]; gx [n, c, h, w]; gw [c, 1, kh, kw] */
    int accumulate;
    float *scratch;                  /* [TG_DWB_SLOTS][slot_floats] */
    size_t slot_floats;
    int64_t items;
} dwb_ctx;

/* wv[tap][lane] = w[(c0 + lane) * taps + tap]. */
static void blocked_weights(const tg_conv_geom *g, const float *w, int64_t c0, float *wv)
{
    int64_t taps = g->kh * g->kw;
    for (int64_t t = 0; t < taps; t++)
        for (int64_t lane = 0; lane < 16; lane++) wv[t * 16 + lane] = w[(c0 + lane) * taps + t];
}

/* One item: image n, channels [16 * cb, 16 * cb + 16). */
static void blocked_forward_slots(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const dwb_ctx *c = arg;
    const tg_conv_geom *g = c->g;
    dwb_layout l = blocked_layout(g);
    float wv[TG_DW_MAX_TAPS * 16];
    for (int64_t s = begin; s < end; s++) {
        float *xp = c->scratch + (size_t)s * c->slot_floats;  /* [hp][wp][16] */
        float *t0 = xp + 2 * blocked_padded_floats(&l);        /* [big_plane][16] */
        for (int64_t item = c->items * s / TG_DWB_SLOTS; item < c->items * (s + 1) / TG_DWB_SLOTS; item++) {
            int64_t n = item / (g->c / 16), c0 = item % (g->c / 16) * 16;
            blocked_weights(g, c->w, c0, wv);
            blocked_load(c->x + (n * g->c + c0) * l.in_plane, g->h, g->w, g->ph, g->pw, l.hp, l.wp, t0, xp);
            blocked_forward_kernel(g, l.wp, xp, wv, c->bias ? c->bias + c0 : NULL, t0);
            tg_conv_transpose(t0, 16, l.out_plane, 16, c->y + (n * g->c + c0) * l.out_plane, l.out_plane, c->accumulate);
        }
    }
}

/* One item: channels [16 * cb, 16 * cb + 16) of every image, images in order. */
static void blocked_backward_slots(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const dwb_ctx *c = arg;
    const tg_conv_geom *g = c->g;
    dwb_layout l = blocked_layout(g);
    int64_t taps = g->kh * g->kw;
    float wv[TG_DW_MAX_TAPS * 16], wf[TG_DW_MAX_TAPS * 16], acc[TG_DW_MAX_TAPS * 16];
    for (int64_t s = begin; s < end; s++) {
        float *xp = c->scratch + (size_t)s * c->slot_floats;   /* [hp][wp][16] */
        float *gp = xp + blocked_padded_floats(&l);             /* padded gy, or the scatter's gx [hp][wp][16] */
        float *t0 = gp + blocked_padded_floats(&l);             /* [big_plane][16] */
        float *t1 = t0 + blocked_plane_floats(&l);              /* [big_plane][16] */
        for (int64_t cb = c->items * s / TG_DWB_SLOTS; cb < c->items * (s + 1) / TG_DWB_SLOTS; cb++) {
            int64_t c0 = cb * 16;
            if (c->gx) {
                blocked_weights(g, c->w, c0, wv);
                for (int64_t t = 0; t < taps; t++) memcpy(wf + t * 16, wv + (taps - 1 - t) * 16, 16 * sizeof(float));
            }
            memset(acc, 0, (size_t)(taps * 16) * sizeof(float));
            for (int64_t n = 0; n < g->n; n++) {
                const float *gy = c->gy + (n * g->c + c0) * l.out_plane; /* [16][out_plane] */
                if (c->gw) {
                    blocked_load(c->x + (n * g->c + c0) * l.in_plane, g->h, g->w, g->ph, g->pw, l.hp, l.wp, t0, xp);
                    tg_conv_transpose(gy, l.out_plane, 16, l.out_plane, t1, 16, 0);
                    blocked_weight_kernel(g, &l, xp, t1, acc);
                }
                if (!c->gx) continue;
                float *gx = c->gx + (n * g->c + c0) * l.in_plane; /* [16][in_plane] */
                if (l.gather) {
                    blocked_load(gy, g->ho, g->wo, l.gp_top, l.gp_left, l.gp_rows, l.gp_cols, t1, gp);
                    blocked_forward_kernel(&l.dg, l.gp_cols, gp, wf, NULL, t0);
                } else {
                    if (!c->gw) tg_conv_transpose(gy, l.out_plane, 16, l.out_plane, t1, 16, 0);
                    memset(gp, 0, (size_t)(l.hp * l.wp * 16) * sizeof(float));
                    blocked_data_kernel(g, &l, t1, wv, gp);
                    for (int64_t ih = 0; ih < g->h; ih++)
                        memcpy(t0 + ih * g->w * 16, gp + ((ih + g->ph) * l.wp + g->pw) * 16,
                               (size_t)(g->w * 16) * sizeof(float));
                }
                tg_conv_transpose(t0, 16, l.in_plane, 16, gx, l.in_plane, 1);
            }
            if (c->gw)
                for (int64_t lane = 0; lane < 16; lane++)
                    for (int64_t t = 0; t < taps; t++) c->gw[(c0 + lane) * taps + t] += acc[t * 16 + lane];
        }
    }
}

/* ---- forward ---- */

typedef struct dw_ctx {
    const tg_conv_geom *g;
    const float *x, *w, *bias, *gy;  /* x [n, c, h, w]; w [o, 1, kh, kw]; bias [o]; gy [n, o, ho, wo] */
    float *y, *gx, *gw;              /* y [n, o, ho, wo]; gx [n, c, h, w]; gw [o, 1, kh, kw] */
    int accumulate;
    float *scratch;                  /* [TG_DW_SLOTS][slot_floats] */
    size_t slot_floats;
} dw_ctx;

static void forward_plane(const dw_ctx *c, int64_t plane, float *buf)
{
    const tg_conv_geom *g = c->g;
    int64_t mult = g->o / g->c, n = plane / g->c, ch = plane % g->c, out_plane = g->ho * g->wo;
    dw_layout l = forward_layout(g);
    int64_t off[TG_DW_MAX_TAPS];
    dw_job jobs[TG_DW_BATCH];
    int n_taps = forward_taps(g, &l, off);
    fill_phase(g, &l, c->x + plane * g->h * g->w, buf);
    for (int64_t m = 0; m < mult; m++) {
        int64_t o = ch * mult + m;
        float *y = c->y + (n * g->o + o) * out_plane; /* [ho, wo] */
        float b = c->bias ? c->bias[o] : 0.0f;
        if (c->accumulate && c->bias)
            for (int64_t i = 0; i < out_plane; i++) y[i] += b;
        const float *wo = c->w + o * n_taps, *init = c->accumulate ? NULL : &b;
        DW_FOR_FORWARD_JOBS(g, &l, jobs, n_jobs, apply_taps(buf, y, jobs, n_jobs, off, wo, n_taps, init));
    }
}

static void forward_slots(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const dw_ctx *c = arg;
    int64_t planes = c->g->n * c->g->c;
    for (int64_t s = begin; s < end; s++) {
        float *buf = c->scratch + (size_t)s * c->slot_floats;
        for (int64_t p = planes * s / TG_DW_SLOTS; p < planes * (s + 1) / TG_DW_SLOTS; p++) forward_plane(c, p, buf);
    }
}

size_t tg_conv_depthwise_forward_scratch(const tg_conv_geom *g)
{
    if (blocked(g)) return TG_DWB_SLOTS * blocked_slot_floats(g) * sizeof(float);
    return TG_DW_SLOTS * forward_slot_floats(g) * sizeof(float);
}

size_t tg_conv_depthwise_backward_scratch(const tg_conv_geom *g)
{
    if (blocked(g)) return TG_DWB_SLOTS * blocked_slot_floats(g) * sizeof(float);
    size_t a = forward_slot_floats(g), b = data_slot_floats(g);
    return TG_DW_SLOTS * (a > b ? a : b) * sizeof(float);
}

void tg_conv_depthwise_forward(const tg_conv_geom *g, const float *x, const float *w, const float *bias,
                               float *y, int accumulate, void *scratch)
{
    if (blocked(g)) {
        dwb_ctx c = {.g = g, .x = x, .w = w, .bias = bias, .y = y, .accumulate = accumulate, .scratch = scratch,
                     .slot_floats = blocked_slot_floats(g), .items = g->n * (g->c / 16)};
        tg_parallel_for(TG_DWB_SLOTS, 1, blocked_forward_slots, &c);
        return;
    }
    dw_ctx c = {.g = g, .x = x, .w = w, .bias = bias, .y = y, .accumulate = accumulate,
                .scratch = scratch, .slot_floats = forward_slot_floats(g)};
    tg_parallel_for(TG_DW_SLOTS, 1, forward_slots, &c);
}

/* ---- data gradient: gx[n, ch] += sum over its o of the adjoint, gathered per gx row ---- */

/* q[2t] = even[t], q[2t + 1] = odd[t] for t < count (count a multiple of 16). */
__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static void interleave2_avx512(float *restrict q, const float *restrict even, const float *restrict odd, int64_t count)
{
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (int64_t t = 0; t < count; t += 16) {
        __m512 e = _mm512_loadu_ps(even + t), o = _mm512_loadu_ps(odd + t);
        _mm512_storeu_ps(q + 2 * t, _mm512_permutex2var_ps(e, lo, o));
        _mm512_storeu_ps(q + 2 * t + 16, _mm512_permutex2var_ps(e, hi, o));
    }
}

/* NOTE: with sw == 1 every gx element belongs to one (row residue) class, so the taps
 * accumulate straight into gx; with sw > 1 they go to the phase buffer gxb first. */
static void data_plane(const dw_ctx *c, int64_t plane, float *buf)
{
    const tg_conv_geom *g = c->g;
    int64_t mult = g->o / g->c, n = plane / g->c, ch = plane % g->c, out_plane = g->ho * g->wo;
    dw_data_layout l = data_layout(g);
    float *gyp = buf;                                                              /* [rows, cols] */
    float *gxb = buf + tg_align64((size_t)(l.rows * l.cols) * sizeof(float)) / sizeof(float); /* [h + 1][sw][lanes] */
    float *gx = c->gx + plane * g->h * g->w;                                       /* [h, w] */
    int direct = g->sw == 1;
    int64_t off[TG_DW_MAX_TAPS];
    float tw[TG_DW_MAX_TAPS];
    dw_job jobs[TG_DW_BATCH];
    if (!direct) memset(gxb, 0, (size_t)(g->h * l.row_stride) * sizeof(float));
    memset(gyp, 0, (size_t)(l.top * l.cols) * sizeof(float));
    memset(gyp + (l.top + g->ho) * l.cols, 0, (size_t)((l.rows - l.top - g->ho) * l.cols) * sizeof(float));
    for (int64_t oh = 0; oh < g->ho; oh++) {
        float *row = gyp + (oh + l.top) * l.cols;
        memset(row, 0, (size_t)l.left * sizeof(float));
        memset(row + l.left + g->wo, 0, (size_t)(l.cols - l.left - g->wo) * sizeof(float));
    }
    for (int64_t m = 0; m < mult; m++) {
        int64_t o = ch * mult + m;
        const float *gy = c->gy + (n * g->o + o) * out_plane; /* [ho, wo] */
        const float *w = c->w + o * g->kh * g->kw;          /* [kh, kw] */
        for (int64_t oh = 0; oh < g->ho; oh++)
            memcpy(gyp + (oh + l.top) * l.cols + l.left, gy + oh * g->wo, (size_t)g->wo * sizeof(float));
        /* rows and columns split by residue mod stride; each class has a fixed tap list */
        for (int64_t res = 0; res < g->sh; res++)
            for (int64_t rq = 0; rq < g->sw; rq++) {
                int n_taps = 0;
                for (int64_t ki = 0; ki < g->kh; ki++) {
                    int64_t dr = res - ki * g->dh;
                    if (((dr % g->sh) + g->sh) % g->sh) continue;
                    for (int64_t kj = 0; kj < g->kw; kj++) {
                        int64_t dq = rq - kj * g->dw;
                        if (((dq % g->sw) + g->sw) % g->sw) continue;
                        off[n_taps] = (dr / g->sh) * l.cols + dq / g->sw;
                        tw[n_taps++] = w[ki * g->kw + kj];
                    }
                }
                if (n_taps == 0) continue;
                float *dst = direct ? gx : gxb;
                int64_t t0 = direct ? g->pw : 0, t1 = direct ? g->pw + g->w : l.tcols;
                int n_jobs = 0;
                for (int64_t ih = 0; ih < g->h; ih++) {
                    if ((ih + g->ph) % g->sh != res) continue;
                    int64_t src_row = ((ih + g->ph) / g->sh + l.top) * l.cols + l.left;
                    int64_t dst_row = direct ? ih * g->w - g->pw : ih * l.row_stride + rq * l.lanes;
                    for (int64_t t = t0; t < t1; t += TG_DW_LANES) {
                        jobs[n_jobs].src = src_row + t;
                        jobs[n_jobs].dst = dst_row + t;
                        jobs[n_jobs].len = (int)min64(TG_DW_LANES, t1 - t);
                        if (++n_jobs == TG_DW_BATCH) {
                            apply_taps(gyp, dst, jobs, n_jobs, off, tw, n_taps, NULL);
                            n_jobs = 0;
                        }
                    }
                }
                if (n_jobs) apply_taps(gyp, dst, jobs, n_jobs, off, tw, n_taps, NULL);
            }
    }
    if (direct) return;
    float *qrow = gxb + g->h * l.row_stride; /* [sw * lanes]: one gx row in padded columns */
    int avx512 = have_avx512();
    for (int64_t ih = 0; ih < g->h; ih++) {
        const float *row = gxb + ih * l.row_stride;
        if (g->sw == 2 && avx512) interleave2_avx512(qrow, row, row + l.lanes, l.lanes);
        else
            for (int64_t phase = 0; phase < g->sw; phase++)
                for (int64_t t = 0; t < l.lanes; t++) qrow[phase + g->sw * t] = row[phase * l.lanes + t];
        float *restrict dst = gx + ih * g->w;
        const float *restrict src = qrow + g->pw;
        for (int64_t iw = 0; iw < g->w; iw++) dst[iw] += src[iw];
    }
}

static void data_slots(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const dw_ctx *c = arg;
    int64_t planes = c->g->n * c->g->c;
    for (int64_t s = begin; s < end; s++) {
        float *buf = c->scratch + (size_t)s * c->slot_floats;
        for (int64_t p = planes * s / TG_DW_SLOTS; p < planes * (s + 1) / TG_DW_SLOTS; p++) data_plane(c, p, buf);
    }
}

/* ---- weight gradient: one output channel per item, images summed in order ---- */

static void weight_channel(const dw_ctx *c, int64_t o, float *buf)
{
    const tg_conv_geom *g = c->g;
    int64_t mult = g->o / g->c, ch = o / mult, out_plane = g->ho * g->wo;
    dw_layout l = forward_layout(g);
    int64_t off[TG_DW_MAX_TAPS];
    float acc[TG_DW_MAX_TAPS * TG_DW_LANES] __attribute__((aligned(64)));
    dw_job jobs[TG_DW_BATCH];
    int n_taps = forward_taps(g, &l, off);
    memset(acc, 0, (size_t)n_taps * TG_DW_LANES * sizeof(float));
    for (int64_t n = 0; n < g->n; n++) {
        fill_phase(g, &l, c->x + (n * g->c + ch) * g->h * g->w, buf);
        const float *gy = c->gy + (n * g->o + o) * out_plane; /* [ho, wo] */
        DW_FOR_FORWARD_JOBS(g, &l, jobs, n_jobs, dot_taps(buf, gy, jobs, n_jobs, off, n_taps, acc));
    }
    float *gw = c->gw + o * n_taps; /* [kh * kw] */
    for (int t = 0; t < n_taps; t++) {
        const float *a = acc + t * TG_DW_LANES;
        float s = 0.0f;
        for (int i = 0; i < TG_DW_LANES; i++) s += a[i];
        gw[t] += s;
    }
}

static void weight_slots(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const dw_ctx *c = arg;
    int64_t outs = c->g->o;
    for (int64_t s = begin; s < end; s++) {
        float *buf = c->scratch + (size_t)s * c->slot_floats;
        for (int64_t o = outs * s / TG_DW_SLOTS; o < outs * (s + 1) / TG_DW_SLOTS; o++) weight_channel(c, o, buf);
    }
}

void tg_conv_depthwise_backward(const tg_conv_geom *g, const float *x, const float *w, const float *gy,
                                float *gx, float *gw, void *scratch)
{
    if (blocked(g)) {
        dwb_ctx c = {.g = g, .x = x, .w = w, .gy = gy, .gx = gx, .gw = gw, .scratch = scratch,
                     .slot_floats = blocked_slot_floats(g), .items = g->c / 16};
        tg_parallel_for(TG_DWB_SLOTS, 1, blocked_backward_slots, &c);
        return;
    }
    size_t a = forward_slot_floats(g), b = data_slot_floats(g);
    dw_ctx c = {.g = g, .x = x, .w = w, .gy = gy, .gx = gx, .gw = gw,
                .scratch = scratch, .slot_floats = a > b ? a : b};
    if (gx) tg_parallel_for(TG_DW_SLOTS, 1, data_slots, &c);
    if (gw) tg_parallel_for(TG_DW_SLOTS, 1, weight_slots, &c);
}
