/* vmath.h: float32 math written for the auto-vectorizer (exp, tanh, sigmoid, erfc)
 * and TG_SIMD_FUNCTION, which compiles one loop twice (AVX-512 and portable) and
 * picks the AVX-512 copy at run time when the CPU has it.
 *
 * Not a libm: no errno, no exceptions; accuracy is a few float32 ulp (erfc: 1.5e-7
 * absolute, the formula PyTorch's own vectorized erf uses). Every function is
 * branch-free (selects only) so that loops calling it vectorize.
 *
 * NOTE: the build uses -std=c11, which turns floating-point contraction off, so
 * the AVX-512 copy (with FMA available) rounds exactly like the portable one:
 * results do not depend on the CPU. */
#ifndef TG_VMATH_H
#define TG_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define TG_INLINE static inline __attribute__((always_inline))
#define TG_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

TG_INLINE int tg_cpu_has_avx512(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

/* Defines `static void name params`, a loop compiled twice (AVX-512 and portable)
 * with the body that follows the macro:
 *     TG_SIMD_FUNCTION(scale_rows, (float *restrict x, int64_t n), (x, n))
 *     { for (int64_t i = 0; i < n; i++) x[i] *= 2.0f; }                      */
#define TG_SIMD_FUNCTION(name, params, args)                               \
    TG_INLINE void name##_body params;                                     \
    TG_TARGET_AVX512 static void name##_avx512 params { name##_body args; } \
    static void name##_portable params { name##_body args; }               \
    static void name params                                                \
    {                                                                      \
        if (tg_cpu_has_avx512()) name##_avx512 args;                       \
        else name##_portable args;                                         \
    }                                                                      \
    TG_INLINE void name##_body params

TG_INLINE float tg_vbits_to_float(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* 2^k for k in [-126, 127]. */
TG_INLINE float tg_vpow2i(int32_t k) { return tg_vbits_to_float((uint32_t)(k + 127) << 23); }

/* e^x: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, and the Cephes degree-7
 * polynomial; about 1 ulp. Overflows to inf above 88.72, underflows to 0 below -103.9. */
TG_INLINE float tg_vexpf(float x)
{
    const float max_arg = 88.72283905206835f, min_arg = -103.97207708f;
    float xc = x > max_arg ? max_arg : x;
    xc = xc < min_arg ? min_arg : xc;
    /* NOTE: adding and subtracting 1.5 * 2^23 rounds to the nearest integer without
     * rintf, which the portable (SSE2) vectorizer cannot use. */
    const float round_magic = 12582912.0f;
    float n = (xc * 1.44269504088896341f + round_magic) - round_magic;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    /* 2^n as two factors so that n in [-150, 128] (denormal results, e^88.7) stays exact */
    int32_t k = (int32_t)n;
    int32_t k1 = k >> 1;
    float y = p * tg_vpow2i(k1) * tg_vpow2i(k - k1);
    y = x > max_arg ? INFINITY : y;
    return x < min_arg ? 0.0f : y;
}

/* 1 / (1 + e^-x); exact limits 0 and 1 at the ends. */
TG_INLINE float tg_vsigmoidf(float x) { return 1.0f / (1.0f + tg_vexpf(-x)); }

/* tanh: the Taylor series to x^11 below |x| = 0.3 (where 1 - e^-2|x| would cancel),
 * (1 - e) / (1 + e) with e = e^-2|x| above; about 2 ulp. */
TG_INLINE float tg_vtanhf(float x)
{
    float a = fabsf(x);
    float e = tg_vexpf(-2.0f * a);
    float big = (1.0f - e) / (1.0f + e);
    big = x < 0.0f ? -big : big;
    float x2 = x * x;
    float q = -1382.0f / 155925.0f;
    q = q * x2 + 62.0f / 2835.0f;
    q = q * x2 + -17.0f / 315.0f;
    q = q * x2 + 2.0f / 15.0f;
    q = q * x2 + -1.0f / 3.0f;
    float small = x + x * x2 * q;
    return a < 0.3f ? small : big;
}

/* erfc(z) for z >= 0 (Abramowitz & Stegun 7.1.26, 1.5e-7 absolute). */
TG_INLINE float tg_verfc_nonneg(float z)
{
    float t = 1.0f / (1.0f + 0.3275911f * z);
    float p = 1.061405429f;
    p = p * t + -1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t + -0.284496736f;
    p = p * t + 0.254829592f;
    return p * t * tg_vexpf(-z * z);
}

/* Phi(x) = (1 + erf(x / sqrt 2)) / 2, the standard normal CDF. NOTE: computed as
 * erfc of |x| on either side, so that the left tail has no cancellation. */
TG_INLINE float tg_vnormal_cdf(float x)
{
    float half_tail = 0.5f * tg_verfc_nonneg(fabsf(x) * 0.70710678118654752f);
    return x < 0.0f ? half_tail : 1.0f - half_tail;
}

#endif
