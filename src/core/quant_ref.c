/*
 * Scalar reference conversions (realm/quant.h): F32, F16, BF16, the
 * 32-element block types Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0, Q8_K, IQ4_NL and
 * IQ4_XS, and the dispatch over every supported type.
 *
 * Dequantization reproduces ggml's to_float bit for bit: each value is
 * computed with the same float operations in the same order (e.g. Q4_1 is
 * (float)q * d + m, never d * q folded differently). Quantization follows
 * the reference quantizers llama.cpp uses when no importance matrix is given,
 * so `llama-quantize --pure` and realm_quantize_row agree.
 *
 * Float-to-integer conversions are clamped before converting, so that NaN,
 * infinite or enormous inputs give saturated codes instead of undefined
 * behaviour; on finite inputs of sane magnitude the clamps never bind.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "error_internal.h"
#include "quant_internal.h"

/* The reference results (and byte-identity with llama.cpp's files) must not
 * depend on whether the compiler fuses a * b + c into an FMA. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* ---- helpers --------------------------------------------------------------- */

/* Truncate toward zero (C's float-to-int conversion), clamped to [lo, hi];
 * NaN gives lo. */
static inline int trunc_clamp(float v, int lo, int hi)
{
    if (!(v > (float)lo))
        return lo;
    if (v >= (float)hi)
        return hi;
    return (int)v;
}

/* roundf (halves away from zero) clamped to [-127, 127]; NaN gives 0. */
static inline int round_i8(float v)
{
    if (v != v)
        return 0;
    if (v >= 127.0f)
        return 127;
    if (v <= -127.0f)
        return -127;
    return (int)roundf(v);
}

static inline uint32_t load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void store_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* ---- plain floats ---------------------------------------------------------- */

/* memmove: converting F32 in place (src == dst) is allowed. */
static void dequantize_f32(const void *src, float *dst, int64_t n)
{
    memmove(dst, src, (size_t)n * sizeof(float));
}

static void quantize_f32(const float *src, void *dst, int64_t n)
{
    memmove(dst, src, (size_t)n * sizeof(float));
}

static void dequantize_f16(const void *src, float *dst, int64_t n)
{
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = realm_fp16_to_fp32(h[i]);
}

static void quantize_f16(const float *src, void *dst, int64_t n)
{
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = realm_fp32_to_fp16(src[i]);
}

static void dequantize_bf16(const void *src, float *dst, int64_t n)
{
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = realm_bf16_to_fp32(h[i]);
}

static void quantize_bf16(const float *src, void *dst, int64_t n)
{
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = realm_fp32_to_bf16(src[i]);
}

/* ---- Q4_0 / Q4_1 ----------------------------------------------------------- */

static void dequantize_q4_0(const void *src, float *dst, int64_t n)
{
    const realm_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / REALM_QK4_0; i++, b++, dst += REALM_QK4_0) {
        const float d = realm_fp16_to_fp32(b->d);
        for (int j = 0; j < REALM_QK4_0 / 2; j++) {
            dst[j] = (float)((b->qs[j] & 0x0f) - 8) * d;
            dst[j + REALM_QK4_0 / 2] = (float)((b->qs[j] >> 4) - 8) * d;
        }
    }
}

/*
 * Q4_0 reference quantizer. The element of largest magnitude, `max` (with its
 * sign), is mapped to code 0: d = max / -8, so x = d * (q - 8) reaches max
 * exactly at q = 0 and the other end of the range is at -7/8 max. Codes are
 * x/d + 8 rounded half up (truncating x/d + 8.5), capped at 15.
 */
static void quantize_q4_0(const float *src, void *dst, int64_t n)
{
    realm_block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / REALM_QK4_0; i++, b++, src += REALM_QK4_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < REALM_QK4_0; j++) {
            if (fabsf(src[j]) > amax) {
                amax = fabsf(src[j]);
                max = src[j];
            }
        }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = realm_fp32_to_fp16(d);
        for (int j = 0; j < REALM_QK4_0 / 2; j++) {
            const int lo = trunc_clamp(src[j] * id + 8.5f, 0, 15);
            const int hi = trunc_clamp(src[j + REALM_QK4_0 / 2] * id + 8.5f, 0, 15);
            b->qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

static void dequantize_q4_1(const void *src, float *dst, int64_t n)
{
    const realm_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / REALM_QK4_1; i++, b++, dst += REALM_QK4_1) {
        const float d = realm_fp16_to_fp32(b->d);
        const float m = realm_fp16_to_fp32(b->m);
        for (int j = 0; j < REALM_QK4_1 / 2; j++) {
            dst[j] = (float)(b->qs[j] & 0x0f) * d + m;
            dst[j + REALM_QK4_1 / 2] = (float)(b->qs[j] >> 4) * d + m;
        }
    }
}

/*
 * Q4_1 reference quantizer: the block's [min, max] split into 15 steps,
 * d = (max - min) / 15, m = min, q = (x - min) / d rounded half up.
 */
static void quantize_q4_1(const float *src, void *dst, int64_t n)
{
    realm_block_q4_1 *b = dst;
    for (int64_t i = 0; i < n / REALM_QK4_1; i++, b++, src += REALM_QK4_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < REALM_QK4_1; j++) {
            if (src[j] < min)
                min = src[j];
            if (src[j] > max)
                max = src[j];
        }
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = realm_fp32_to_fp16(d);
        b->m = realm_fp32_to_fp16(min);
        for (int j = 0; j < REALM_QK4_1 / 2; j++) {
            const int lo = trunc_clamp((src[j] - min) * id + 0.5f, 0, 15);
            const int hi = trunc_clamp((src[j + REALM_QK4_1 / 2] - min) * id + 0.5f, 0, 15);
            b->qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

/* ---- Q5_0 / Q5_1 ----------------------------------------------------------- */

static void dequantize_q5_0(const void *src, float *dst, int64_t n)
{
    const realm_block_q5_0 *b = src;
    for (int64_t i = 0; i < n / REALM_QK5_0; i++, b++, dst += REALM_QK5_0) {
        const float d = realm_fp16_to_fp32(b->d);
        const uint32_t qh = load_u32le(b->qh);
        for (int j = 0; j < REALM_QK5_0 / 2; j++) {
            const int lo = (b->qs[j] & 0x0f) | (int)((qh >> j) & 1) << 4;
            const int hi = (b->qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = (float)(lo - 16) * d;
            dst[j + REALM_QK5_0 / 2] = (float)(hi - 16) * d;
        }
    }
}

/* Q5_0 reference quantizer: as Q4_0 with 32 levels, d = max / -16. */
static void quantize_q5_0(const float *src, void *dst, int64_t n)
{
    realm_block_q5_0 *b = dst;
    for (int64_t i = 0; i < n / REALM_QK5_0; i++, b++, src += REALM_QK5_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < REALM_QK5_0; j++) {
            if (fabsf(src[j]) > amax) {
                amax = fabsf(src[j]);
                max = src[j];
            }
        }
        const float d = max / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = realm_fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < REALM_QK5_0 / 2; j++) {
            const int lo = trunc_clamp(src[j] * id + 16.5f, 0, 31);
            const int hi = trunc_clamp(src[j + REALM_QK5_0 / 2] * id + 16.5f, 0, 31);
            b->qs[j] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
            qh |= (uint32_t)(lo >> 4) << j;
            qh |= (uint32_t)(hi >> 4) << (j + 16);
        }
        store_u32le(b->qh, qh);
    }
}

static void dequantize_q5_1(const void *src, float *dst, int64_t n)
{
    const realm_block_q5_1 *b = src;
    for (int64_t i = 0; i < n / REALM_QK5_1; i++, b++, dst += REALM_QK5_1) {
        const float d = realm_fp16_to_fp32(b->d);
        const float m = realm_fp16_to_fp32(b->m);
        const uint32_t qh = load_u32le(b->qh);
        for (int j = 0; j < REALM_QK5_1 / 2; j++) {
            const int lo = (b->qs[j] & 0x0f) | (int)((qh >> j) & 1) << 4;
            const int hi = (b->qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = (float)lo * d + m;
            dst[j + REALM_QK5_1 / 2] = (float)hi * d + m;
        }
    }
}

/* Q5_1 reference quantizer: as Q4_1 with 31 steps. */
static void quantize_q5_1(const float *src, void *dst, int64_t n)
{
    realm_block_q5_1 *b = dst;
    for (int64_t i = 0; i < n / REALM_QK5_1; i++, b++, src += REALM_QK5_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < REALM_QK5_1; j++) {
            if (src[j] < min)
                min = src[j];
            if (src[j] > max)
                max = src[j];
        }
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = realm_fp32_to_fp16(d);
        b->m = realm_fp32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < REALM_QK5_1 / 2; j++) {
            const int lo = trunc_clamp((src[j] - min) * id + 0.5f, 0, 31);
            const int hi = trunc_clamp((src[j + REALM_QK5_1 / 2] - min) * id + 0.5f, 0, 31);
            b->qs[j] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
            qh |= (uint32_t)(lo >> 4) << j;
            qh |= (uint32_t)(hi >> 4) << (j + 16);
        }
        store_u32le(b->qh, qh);
    }
}

/* ---- Q8_0 ------------------------------------------------------------------ */

static void dequantize_q8_0(const void *src, float *dst, int64_t n)
{
    const realm_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / REALM_QK8_0; i++, b++, dst += REALM_QK8_0) {
        const float d = realm_fp16_to_fp32(b->d);
        for (int j = 0; j < REALM_QK8_0; j++)
            dst[j] = (float)b->qs[j] * d;
    }
}

/*
 * Q8_0 (weights and activations): symmetric, d = amax / 127 rounded to
 * fp16, q = round(x * 127 / amax) with halves away from zero. The codes are
 * computed from the unrounded d, as ggml does.
 */
void realm__quantize_q8_0(const float *src, void *dst, int64_t n)
{
    realm_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / REALM_QK8_0; i++, b++, src += REALM_QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < REALM_QK8_0; j++)
            amax = fabsf(src[j]) > amax ? fabsf(src[j]) : amax;
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = realm_fp32_to_fp16(d);
        for (int j = 0; j < REALM_QK8_0; j++)
            b->qs[j] = (int8_t)round_i8(src[j] * id);
    }
}

/* ---- Q8_K ------------------------------------------------------------------ */

static void dequantize_q8_K(const void *src, float *dst, int64_t n)
{
    const realm_block_q8_K *b = src;
    for (int64_t i = 0; i < n / REALM_QK_K; i++, b++, dst += REALM_QK_K) {
        for (int j = 0; j < REALM_QK_K; j++)
            dst[j] = b->d * (float)b->qs[j];
    }
}

/*
 * Q8_K (activations of the K-quants): one float scale per 256 values. The
 * value of largest magnitude, `max` with its sign, maps to -127:
 * iscale = -127 / max, q = nearest_int(iscale * x) capped at 127, d = 1 /
 * iscale (so d has the opposite sign of max). bsums[g] = sum of the 16
 * codes of group g, which the dot products use to apply the weights' mins.
 * An all-zero block gets d = 0 and zero codes and sums.
 */
void realm__quantize_q8_K(const float *src, void *dst, int64_t n)
{
    realm_block_q8_K *b = dst;
    for (int64_t i = 0; i < n / REALM_QK_K; i++, b++, src += REALM_QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < REALM_QK_K; j++) {
            if (fabsf(src[j]) > amax) {
                amax = fabsf(src[j]);
                max = src[j];
            }
        }
        if (amax == 0.0f) {
            memset(b, 0, sizeof *b);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < REALM_QK_K; j++) {
            int v = realm__nearest_int(iscale * src[j]);
            v = v > 127 ? 127 : (v < -128 ? -128 : v);
            b->qs[j] = (int8_t)v;
        }
        for (int g = 0; g < REALM_QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++)
                sum += b->qs[16 * g + j];
            b->bsums[g] = (int16_t)sum;
        }
        b->d = 1 / iscale;
    }
}

/* ---- IQ4_NL / IQ4_XS ------------------------------------------------------- */

/*
 * Index of the code-book value nearest to x (the code book is sorted): the
 * number of midpoints (v[k-1] + v[k]) / 2 that x reaches, so an exact tie
 * picks the upper value. Comparing 2x with v[k-1] + v[k] keeps it exact.
 */
static inline int iq4_best_index(float x)
{
    const int8_t *v = realm_iq4nl_values;
    const float x2 = x + x;
    int lo = 0; /* answer lies in [lo, lo + step) */
    for (int step = 8; step > 0; step >>= 1) {
        if (x2 >= (float)(v[lo + step - 1] + v[lo + step]))
            lo += step;
    }
    return lo;
}

/*
 * Best scale for one 32-value sub-block of IQ4 with weights w = x^2 (what
 * llama.cpp uses without an importance matrix). The weighted least-squares
 * scale for fixed codes q is d = sum(w q x) / sum(w q^2), with error
 * reduction d * sum(w q x) = sum(w q x)^2 / sum(w q^2). Start from the codes
 * of d0 = max / 127 (the largest value at the end of the code book), then
 * try the 15 inverse scales (k - 127) / max, k = -7..7, and keep the scale
 * with the largest reduction. Returns 0 for a (near) zero sub-block.
 */
static float iq4_subblock_scale(const float *x)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    if (amax < 1e-15f)
        return 0.0f;
    const float v0 = (float)realm_iq4nl_values[0];
    float id = 1 / (-max / v0);
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; j++) {
        const float q = (float)realm_iq4nl_values[iq4_best_index(id * x[j])];
        const float w = x[j] * x[j];
        sumqx += w * q * x[j];
        sumq2 += w * q * q;
    }
    float d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
    float best = d * sumqx;
    for (int k = -7; k <= 7; k++) {
        id = ((float)k + v0) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            const float q = (float)realm_iq4nl_values[iq4_best_index(id * x[j])];
            const float w = x[j] * x[j];
            sumqx += w * q * x[j];
            sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* Pack 32 code indices: element j in the low nibble of qs[j], j + 16 high. */
static void iq4_pack(const float *x, float id, uint8_t *qs)
{
    for (int j = 0; j < 16; j++) {
        const int lo = iq4_best_index(id * x[j]);
        const int hi = iq4_best_index(id * x[j + 16]);
        qs[j] = (uint8_t)(lo | hi << 4);
    }
}

static void dequantize_iq4_nl(const void *src, float *dst, int64_t n)
{
    const realm_block_iq4_nl *b = src;
    for (int64_t i = 0; i < n / REALM_QK4_NL; i++, b++, dst += REALM_QK4_NL) {
        const float d = realm_fp16_to_fp32(b->d);
        for (int j = 0; j < REALM_QK4_NL / 2; j++) {
            dst[j] = d * (float)realm_iq4nl_values[b->qs[j] & 0x0f];
            dst[j + REALM_QK4_NL / 2] = d * (float)realm_iq4nl_values[b->qs[j] >> 4];
        }
    }
}

/* IQ4_NL: the sub-block scale search, d stored as fp16, codes re-chosen
 * with the unrounded scale. */
static void quantize_iq4_nl(const float *src, void *dst, int64_t n)
{
    realm_block_iq4_nl *b = dst;
    for (int64_t i = 0; i < n / REALM_QK4_NL; i++, b++, src += REALM_QK4_NL) {
        const float d = iq4_subblock_scale(src);
        b->d = realm_fp32_to_fp16(d);
        iq4_pack(src, d != 0.0f ? 1 / d : 0.0f, b->qs);
    }
}

static void dequantize_iq4_xs(const void *src, float *dst, int64_t n)
{
    const realm_block_iq4_xs *b = src;
    for (int64_t i = 0; i < n / REALM_QK_K; i++, b++) {
        const float d = realm_fp16_to_fp32(b->d);
        for (int s = 0; s < REALM_QK_K / 32; s++, dst += 32) {
            const int ls = ((b->scales_l[s / 2] >> (4 * (s % 2))) & 0x0f) |
                           ((b->scales_h >> (2 * s)) & 3) << 4;
            const float dl = d * (float)(ls - 32);
            const uint8_t *qs = b->qs + 16 * s;
            for (int j = 0; j < 16; j++) {
                dst[j] = dl * (float)realm_iq4nl_values[qs[j] & 0x0f];
                dst[j + 16] = dl * (float)realm_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

/*
 * IQ4_XS: each 32-value sub-block gets its best scale as in IQ4_NL; the
 * super-block scale is d = -max_scale / 32 (max_scale the sub-block scale of
 * largest magnitude, with its sign), each sub-block stores
 * l = nearest_int(scale / d) in [-32, 31] as l + 32 in 6 bits, and its codes
 * are re-chosen for the scale d * l it will really get (d unrounded).
 */
static void quantize_iq4_xs(const float *src, void *dst, int64_t n)
{
    realm_block_iq4_xs *b = dst;
    for (int64_t i = 0; i < n / REALM_QK_K; i++, b++, src += REALM_QK_K) {
        float scales[REALM_QK_K / 32];
        float max_scale = 0.0f, amax_scale = 0.0f;
        for (int s = 0; s < REALM_QK_K / 32; s++) {
            scales[s] = iq4_subblock_scale(src + 32 * s);
            if (fabsf(scales[s]) > amax_scale) {
                amax_scale = fabsf(scales[s]);
                max_scale = scales[s];
            }
        }
        const float d = -max_scale / 32;
        const float id = d != 0.0f ? 1 / d : 0.0f;
        b->d = realm_fp32_to_fp16(d);
        b->scales_h = 0;
        memset(b->scales_l, 0, sizeof b->scales_l);
        for (int s = 0; s < REALM_QK_K / 32; s++) {
            int l = realm__nearest_int(id * scales[s]);
            l = l < -32 ? -32 : (l > 31 ? 31 : l);
            const float dl = d * (float)l;
            iq4_pack(src + 32 * s, dl != 0.0f ? 1 / dl : 0.0f, b->qs + 16 * s);
            l += 32;
            b->scales_l[s / 2] |= (uint8_t)((l & 0x0f) << (4 * (s % 2)));
            b->scales_h |= (uint16_t)((l >> 4) << (2 * s));
        }
    }
}

/* ---- dispatch -------------------------------------------------------------- */

typedef void (*to_float_fn)(const void *src, float *dst, int64_t n);
typedef void (*from_float_fn)(const float *src, void *dst, int64_t n);

static const struct {
    to_float_fn to_float;
    from_float_fn from_float;
} conversions[REALM_TYPE_COUNT] = {
    [REALM_TYPE_F32] = {dequantize_f32, quantize_f32},
    [REALM_TYPE_F16] = {dequantize_f16, quantize_f16},
    [REALM_TYPE_BF16] = {dequantize_bf16, quantize_bf16},
    [REALM_TYPE_Q4_0] = {dequantize_q4_0, quantize_q4_0},
    [REALM_TYPE_Q4_1] = {dequantize_q4_1, quantize_q4_1},
    [REALM_TYPE_Q5_0] = {dequantize_q5_0, quantize_q5_0},
    [REALM_TYPE_Q5_1] = {dequantize_q5_1, quantize_q5_1},
    [REALM_TYPE_Q8_0] = {dequantize_q8_0, realm__quantize_q8_0},
    [REALM_TYPE_Q2_K] = {realm__dequantize_q2_K, realm__quantize_q2_K},
    [REALM_TYPE_Q3_K] = {realm__dequantize_q3_K, realm__quantize_q3_K},
    [REALM_TYPE_Q4_K] = {realm__dequantize_q4_K, realm__quantize_q4_K},
    [REALM_TYPE_Q5_K] = {realm__dequantize_q5_K, realm__quantize_q5_K},
    [REALM_TYPE_Q6_K] = {realm__dequantize_q6_K, realm__quantize_q6_K},
    [REALM_TYPE_Q8_K] = {dequantize_q8_K, realm__quantize_q8_K},
    [REALM_TYPE_IQ4_NL] = {dequantize_iq4_nl, quantize_iq4_nl},
    [REALM_TYPE_IQ4_XS] = {dequantize_iq4_xs, quantize_iq4_xs},
};

/* Shared argument check: a type with both conversions, n a non-negative
 * multiple of its block size, buffers present when n > 0. */
static int check_args(realm_type t, const void *a, const void *b, int64_t n, const char *what)
{
    const realm_type_traits *tr = realm_type_get((uint32_t)t);
    if (tr == NULL)
        return realm__error(REALM_ERR_UNSUPPORTED, "cannot %s tensor type id %u: unknown type",
                            what, (unsigned)t);
    if (conversions[t].to_float == NULL)
        return realm__error(REALM_ERR_UNSUPPORTED, "cannot %s tensor type %s: not supported", what,
                            tr->name);
    if (n < 0 || n % tr->block_size != 0)
        return realm__error(REALM_ERR_INVAL,
                            "cannot %s %lld elements of type %s: not a multiple of its "
                            "block size %lld",
                            what, (long long)n, tr->name, (long long)tr->block_size);
    if (n > 0 && (a == NULL || b == NULL))
        return realm__error(REALM_ERR_INVAL, "cannot %s type %s: NULL buffer", what, tr->name);
    return REALM_OK;
}

int realm_dequantize_row(realm_type t, const void *src, float *dst, int64_t n)
{
    const int rc = check_args(t, src, dst, n, "dequantize");
    if (rc < 0)
        return rc;
    if (n > 0)
        conversions[t].to_float(src, dst, n);
    return REALM_OK;
}

int realm_quantize_row(realm_type t, const float *src, void *dst, int64_t n)
{
    const int rc = check_args(t, src, dst, n, "quantize");
    if (rc < 0)
        return rc;
    if (n > 0)
        conversions[t].from_float(src, dst, n);
    return REALM_OK;
}
