/*
 * Internal interface of the scalar reference conversions (realm/quant.h).
 *
 * Every converter below takes a row of n elements, n a positive multiple of
 * the type's block size (the caller has checked), and never fails. The
 * public realm_quantize_row / realm_dequantize_row check their arguments and
 * dispatch here; kernels that already know the type (the activation
 * quantizers for Q8_0 and Q8_K in particular) may call these directly.
 *
 * Layout of the code: quant_ref.c holds the plain types, the 32-element
 * block types, Q8_K, IQ4_NL / IQ4_XS and the dispatch; quant_kquants.c holds
 * Q2_K..Q6_K with their scale searches.
 */
#ifndef REALM_QUANT_INTERNAL_H
#define REALM_QUANT_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "realm/quant.h"

/*
 * Round to the nearest integer, ties to even, exactly as ggml's nearest_int
 * does for |f| < 2^22: adding 1.5 * 2^23 pushes the fraction bits out of the
 * float's mantissa (the FPU rounds them away, ties to even), leaving the
 * integer, offset by 2^22, in the low 23 bits. Values outside that range
 * (ggml returns garbage there) clamp to +-(2^22 - 1); NaN gives 0.
 */
static inline int realm__nearest_int(float f)
{
    if (!(fabsf(f) <= 4194303.0f))
        return f > 0 ? 4194303 : (f < 0 ? -4194303 : 0);
    const float v = f + 12582912.0f;
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (int)(u & 0x7fffffu) - 0x400000;
}

/* Activation quantizers (also the weight quantizers of these types). */
void realm__quantize_q8_0(const float *src, void *dst, int64_t n);
void realm__quantize_q8_K(const float *src, void *dst, int64_t n);

/* K-quants: quant_kquants.c. */
void realm__dequantize_q2_K(const void *src, float *dst, int64_t n);
void realm__dequantize_q3_K(const void *src, float *dst, int64_t n);
void realm__dequantize_q4_K(const void *src, float *dst, int64_t n);
void realm__dequantize_q5_K(const void *src, float *dst, int64_t n);
void realm__dequantize_q6_K(const void *src, float *dst, int64_t n);
void realm__quantize_q2_K(const float *src, void *dst, int64_t n);
void realm__quantize_q3_K(const float *src, void *dst, int64_t n);
void realm__quantize_q4_K(const float *src, void *dst, int64_t n);
void realm__quantize_q5_K(const float *src, void *dst, int64_t n);
void realm__quantize_q6_K(const float *src, void *dst, int64_t n);

#endif
