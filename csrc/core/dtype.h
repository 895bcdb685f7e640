/* dtype.h: element types of trugrade tensors and the bfloat16 conversions.
 *
 * float32 is the compute type; bfloat16 is for storage and mixed-precision GEMM
 * inputs; uint8/uint16 carry images; int32/int64 carry labels and indices; int8
 * carries quantized weights (ops/quantized.c). */
#ifndef TG_DTYPE_H
#define TG_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum tg_dtype {
    TG_DTYPE_F32 = 0,
    TG_DTYPE_BF16,
    TG_DTYPE_U8,
    TG_DTYPE_U16,
    TG_DTYPE_I32,
    TG_DTYPE_I64,
    TG_DTYPE_I8,
    TG_DTYPE_COUNT
} tg_dtype;

/* Bytes per element; 0 for an invalid dtype. */
size_t tg_dtype_size(tg_dtype dtype);

/* "float32", "bfloat16", "uint8", "uint16", "int32", "int64"; "invalid" otherwise. */
const char *tg_dtype_name(tg_dtype dtype);

typedef uint16_t tg_bf16;

/* NOTE: round-to-nearest-even, NaN kept quiet (same as PyTorch's conversion). */
static inline tg_bf16 tg_bf16_from_f32(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (tg_bf16)((bits >> 16) | 0x0040u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (tg_bf16)(bits >> 16);
}

static inline float tg_bf16_to_f32(tg_bf16 value)
{
    uint32_t bits = (uint32_t)value << 16;
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

#endif
