/* test_qgemm.c: the int8 GEMMs of csrc/ops/qgemm.c (rows form and columns form) against
 * a naive int64 loop, for the VNNI and the portable kernels, over shapes with every tail
 * (m, n, p not multiples of 8 or 32, k not a multiple of 4); and tg_quantize_row_u8 against
 * the scalar tg_quantize_u8 (rounding ties, saturation, NaN); the dot form; and the op
 * quantized_conv2d (groups, stride, padding, odd sizes) against a naive loop, which under
 * ASan also checks that its im2col and GEMM stay inside the planned scratch. Built plain
 * and with ASan+UBSan by make test. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../csrc/core/tensor.h"
#include "../../csrc/core/threads.h"
#include "../../csrc/ops/op.h"
#include "../../csrc/ops/qgemm.h"
#include "check.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t next_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

/* Rows form: C[m, n] = A[m, k] . B[n, k] for both backends. */
static void check_rows(int64_t m, int64_t n, int64_t k)
{
    int64_t lda = tg_qgemm_lda(k);
    uint8_t *a = calloc((size_t)(m * lda + 1), 1);                  /* [m, lda] */
    int8_t *b = malloc((size_t)(n * k + 1));                        /* [n, k] */
    int8_t *packed = malloc(tg_qgemm_packed_bytes(n, k) + 1);
    int32_t *sums = malloc(sizeof(int32_t) * (size_t)n + 4);        /* [n] */
    int32_t *c = malloc(sizeof(int32_t) * (size_t)(m * n) + 4);     /* [m, n] */
    for (int64_t i = 0; i < m * lda; i++) a[i] = (uint8_t)next_u32();
    for (int64_t i = 0; i < n * k; i++) b[i] = (int8_t)next_u32();
    int all_equal[2] = {1, 1};
    for (int backend = 0; backend < 2; backend++) {
        tg_qgemm_backend_set(backend ? TG_QGEMM_BACKEND_PORTABLE : TG_QGEMM_BACKEND_AUTO);
        tg_qgemm_pack_b(n, k, b, k, packed, sums);
        tg_qgemm_u8s8(m, n, k, a, lda, packed, c, n);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                int64_t expected = 0;
                for (int64_t kk = 0; kk < k; kk++) expected += (int64_t)a[i * lda + kk] * b[j * k + kk];
                if (c[i * n + j] != expected) all_equal[backend] = 0;
            }
        for (int64_t j = 0; j < n; j++) {
            int64_t expected = 0;
            for (int64_t kk = 0; kk < k; kk++) expected += b[j * k + kk];
            if (sums[j] != expected) all_equal[backend] = 0;
        }
    }
    tg_qgemm_backend_set(TG_QGEMM_BACKEND_AUTO);
    CHECK(all_equal[0]);
    CHECK(all_equal[1]);
    free(a);
    free(b);
    free(packed);
    free(sums);
    free(c);
}

/* Columns form: C[o, p] = W[o, k] . X[k, p], int32 output and the dequantizing one. */
static void check_cols(int64_t o, int64_t p, int64_t k)
{
    int64_t ldw = tg_qgemm_lda(k), stride = tg_qgemm_cols_stride(p);
    int8_t *w = calloc((size_t)(o * ldw + 1), 1);                   /* [o, ldw] zero padded */
    uint8_t *x = malloc((size_t)(k * p + 1));                       /* [k, p] */
    uint8_t *packed = malloc((size_t)(ldw * stride + 1));
    int32_t *c = malloc(sizeof(int32_t) * (size_t)(o * p) + 4);     /* [o, p] */
    float *y = malloc(sizeof(float) * (size_t)(o * p) + 4);         /* [o, p] */
    int32_t *offset = malloc(sizeof(int32_t) * (size_t)o + 4);      /* [o] */
    float *scale = malloc(sizeof(float) * (size_t)o + 4), *bias = malloc(sizeof(float) * (size_t)o + 4);
    for (int64_t r = 0; r < o; r++) {
        for (int64_t kk = 0; kk < k; kk++) w[r * ldw + kk] = (int8_t)next_u32();
        offset[r] = (int32_t)(next_u32() % 100000);
        scale[r] = 1e-4f * (float)(1 + next_u32() % 100);
        bias[r] = (float)(next_u32() % 200) * 0.01f - 1.0f;
    }
    for (int64_t i = 0; i < k * p; i++) x[i] = (uint8_t)next_u32();
    tg_qgemm_pack_cols(k, p, x, p, packed);
    int equal[2] = {1, 1}, dequant_equal[2] = {1, 1};
    for (int backend = 0; backend < 2; backend++) {
        tg_qgemm_backend_set(backend ? TG_QGEMM_BACKEND_PORTABLE : TG_QGEMM_BACKEND_AUTO);
        tg_qgemm_s8u8_cols(o, p, k, w, ldw, packed, NULL, c, p);
        tg_qgemm_dequant dequant = {.offset = offset, .scale = scale, .bias = bias, .relu = 1};
        tg_qgemm_s8u8_cols(o, p, k, w, ldw, packed, &dequant, y, p);
        for (int64_t r = 0; r < o; r++)
            for (int64_t j = 0; j < p; j++) {
                int64_t expected = 0;
                for (int64_t kk = 0; kk < k; kk++) expected += (int64_t)w[r * ldw + kk] * x[kk * p + j];
                if (c[r * p + j] != expected) equal[backend] = 0;
                float value = (float)((int32_t)expected - offset[r]) * scale[r] + bias[r];
                value = value > 0 ? value : 0.0f;
                if (y[r * p + j] != value) dequant_equal[backend] = 0;
            }
    }
    tg_qgemm_backend_set(TG_QGEMM_BACKEND_AUTO);
    CHECK(equal[0]);
    CHECK(equal[1]);
    CHECK(dequant_equal[0]);
    CHECK(dequant_equal[1]);
    free(w);
    free(x);
    free(packed);
    free(c);
    free(y);
    free(offset);
    free(scale);
    free(bias);
}

static void check_quantize_row(void)
{
    enum { N = 203 };
    float x[N];
    uint8_t fast[N], slow[N];
    for (int i = 0; i < N; i++) x[i] = ((float)(int32_t)(next_u32() % 4001) - 2000.0f) * 0.25f;   /* many ties */
    x[0] = NAN;
    x[1] = INFINITY;
    x[2] = -INFINITY;
    x[3] = 1e30f;
    const float scales[3] = {1.0f, 0.5f, 3.7f};
    const int32_t zero_points[3] = {0, 128, 255};
    for (int s = 0; s < 3; s++)
        for (int z = 0; z < 3; z++) {
            tg_quantize_row_u8(x, fast, N, scales[s], zero_points[z]);
            int same = 1;
            for (int i = 0; i < N; i++) {
                slow[i] = tg_quantize_u8(x[i], scales[s], zero_points[z]);
                same &= fast[i] == slow[i];
            }
            CHECK(same);
            float v = nearbyintf(x[5] / scales[s]) + (float)zero_points[z];
            CHECK(slow[5] == (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v));
        }
    CHECK(tg_quantize_u8(2.5f, 1.0f, 0) == 2 && tg_quantize_u8(3.5f, 1.0f, 0) == 4);   /* ties to even */
    CHECK(tg_quantize_u8(NAN, 1.0f, 7) == 0 && tg_quantize_u8(-5.0f, 1.0f, 3) == 0);
}

static void check_dot(int64_t m, int64_t n, int64_t k)
{
    uint8_t *a = malloc((size_t)(m * k + 1));                       /* [m, k] */
    int8_t *b = malloc((size_t)(n * k + 1));                        /* [n, k] */
    int32_t *c = malloc(sizeof(int32_t) * (size_t)(m * n) + 4);     /* [m, n] */
    int32_t *sums = malloc(sizeof(int32_t) * (size_t)n + 4);        /* [n] */
    for (int64_t i = 0; i < m * k; i++) a[i] = (uint8_t)next_u32();
    for (int64_t i = 0; i < n * k; i++) b[i] = (int8_t)next_u32();
    for (int backend = 0; backend < 2; backend++) {
        tg_qgemm_backend_set(backend ? TG_QGEMM_BACKEND_PORTABLE : TG_QGEMM_BACKEND_AUTO);
        tg_qgemm_u8s8_dot(m, n, k, a, k, b, k, c, n, sums);
        int same = 1;
        for (int64_t j = 0; j < n; j++) {
            int64_t sum = 0;
            for (int64_t kk = 0; kk < k; kk++) sum += b[j * k + kk];
            same &= sums[j] == sum;
            for (int64_t i = 0; i < m; i++) {
                int64_t expected = 0;
                for (int64_t kk = 0; kk < k; kk++) expected += (int64_t)a[i * k + kk] * b[j * k + kk];
                same &= c[i * n + j] == expected;
            }
        }
        CHECK(same);
    }
    tg_qgemm_backend_set(TG_QGEMM_BACKEND_AUTO);
    free(a);
    free(b);
    free(c);
    free(sums);
}

/* quantized_conv2d x [n, c, h, w] against the integer definition, with bias and relu. */
static void check_quantized_conv(int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t kernel,
                                 int64_t stride, int64_t pad, int64_t groups)
{
    const tg_op_def *def = tg_op_find("quantized_conv2d");
    CHECK(def != NULL);
    if (!def) return;
    int64_t cg = c / groups, og = o / groups;
    int64_t xs[4] = {n, c, h, w}, ws[4] = {o, cg, kernel, kernel}, os[1] = {o};
    tg_tensor x, wt, scale, bias;
    CHECK_OK(tg_tensor_init(&x, TG_DTYPE_F32, 4, xs));
    CHECK_OK(tg_tensor_init(&wt, TG_DTYPE_I8, 4, ws));
    CHECK_OK(tg_tensor_init(&scale, TG_DTYPE_F32, 1, os));
    CHECK_OK(tg_tensor_init(&bias, TG_DTYPE_F32, 1, os));
    float *xd = x.data, *sd = scale.data, *bd = bias.data;
    int8_t *wd = wt.data;
    for (int64_t i = 0; i < tg_tensor_numel(&x); i++) xd[i] = (float)(int32_t)(next_u32() % 2001 - 1000) * 0.003f;
    for (int64_t i = 0; i < tg_tensor_numel(&wt); i++) wd[i] = (int8_t)(next_u32() % 255 - 127);
    for (int64_t i = 0; i < o; i++) {
        sd[i] = 1e-3f * (float)(1 + next_u32() % 9);
        bd[i] = (float)(int32_t)(next_u32() % 200 - 100) * 0.01f;
    }
    _Alignas(16) unsigned char attrs[TG_MAX_ATTR_BYTES];
    tg_attrs_set_defaults(def, attrs);
    int64_t pair[2] = {stride, stride}, pads[2] = {pad, pad}, one = 1, zp = 131;
    CHECK_OK(tg_attrs_set_ints(def, attrs, "stride", pair, 2));
    CHECK_OK(tg_attrs_set_ints(def, attrs, "padding", pads, 2));
    CHECK_OK(tg_attrs_set_ints(def, attrs, "groups", &groups, 1));
    CHECK_OK(tg_attrs_set_ints(def, attrs, "relu", &one, 1));
    CHECK_OK(tg_attrs_set_ints(def, attrs, "input_zero_point", &zp, 1));
    CHECK_OK(tg_attrs_set_float(def, attrs, "input_scale", 0.011));
    const tg_tensor *in[4] = {&x, &wt, &scale, &bias};
    tg_op_call call = {.def = def, .attrs = attrs, .in = in, .n_in = 4};
    CHECK_OK(tg_op_call_forward(&call));
    int64_t ho = (h + 2 * pad - kernel) / stride + 1, wo = (w + 2 * pad - kernel) / stride + 1;
    const float *y = call.out.data;
    int same = call.out.ndim == 4 && call.out.shape[2] == ho && call.out.shape[3] == wo;
    for (int64_t b = 0; b < n && same; b++)
        for (int64_t oc = 0; oc < o; oc++)
            for (int64_t i = 0; i < ho; i++)
                for (int64_t j = 0; j < wo; j++) {
                    int32_t acc = 0;
                    int64_t g = oc / og;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t ki = 0; ki < kernel; ki++)
                            for (int64_t kj = 0; kj < kernel; kj++) {
                                int64_t ih = i * stride - pad + ki, iw = j * stride - pad + kj;
                                int32_t q = 0;   /* padding is the real 0: q - zp = 0 */
                                if (ih >= 0 && ih < h && iw >= 0 && iw < w)
                                    q = tg_quantize_u8(xd[((b * c + g * cg + ci) * h + ih) * w + iw], 0.011f, 131) - 131;
                                acc += q * wd[((oc * cg + ci) * kernel + ki) * kernel + kj];
                            }
                    float expected = (float)acc * (0.011f * sd[oc]) + bd[oc];
                    expected = expected > 0 ? expected : 0.0f;
                    same &= fabsf(y[((b * o + oc) * ho + i) * wo + j] - expected) <= 1e-5f + 1e-5f * fabsf(expected);
                }
    CHECK(same);
    tg_op_call_free(&call);
    tg_tensor_free(&x);
    tg_tensor_free(&wt);
    tg_tensor_free(&scale);
    tg_tensor_free(&bias);
}

int main(void)
{
    static const int64_t shapes[][3] = {{1, 1, 1}, {1, 10, 300}, {7, 33, 5}, {9, 65, 37}, {17, 32, 64},
                                        {8, 31, 3}, {40, 70, 288}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        check_rows(shapes[i][0], shapes[i][1], shapes[i][2]);
        check_cols(shapes[i][0], shapes[i][1], shapes[i][2]);
    }
    check_quantize_row();
    check_dot(1, 1, 1);
    check_dot(1, 37, 130);
    check_dot(3, 9, 64);
    check_quantized_conv(2, 3, 7, 9, 5, 3, 1, 1, 1);
    check_quantized_conv(3, 8, 9, 6, 12, 3, 2, 1, 2);
    check_quantized_conv(1, 32, 5, 5, 33, 1, 1, 0, 1);
    check_quantized_conv(2, 4, 6, 6, 4, 3, 1, 2, 4);
    tg_threads_shutdown();
    return check_report("test_qgemm");
}
