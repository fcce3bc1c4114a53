/*
 * Scalar reference kernels: the specification every SIMD variant must match
 * up to float summation order.
 *
 * Float types accumulate in double. Quantized types follow ggml's
 * vec_dot_*_ref: within a block (or sub-block) the products of integer codes
 * are summed exactly in int, then scaled in float once per block, and the
 * block results are summed in float in row order. The weights' mins (Q4_1,
 * Q5_1, Q2_K, Q4_K, Q5_K) are applied through the sum of the activation
 * codes of the (sub-)block: for Q8_K that is bsums, for Q8_0 it is summed
 * here (ggml keeps it in a Q8_1 block; Realm has one 32-element activation
 * type for all 32-element weights).
 *
 * Element order inside the blocks (see realm/quant.h):
 *   Q4_0/Q4_1/IQ4_NL, and each 32-sub-block of IQ4_XS: byte j holds
 *     elements j (low nibble) and j + 16 (high nibble);
 *   Q4_K/Q5_K: 64-element chunk c uses qs[32c..32c+31], low nibbles are
 *     elements 64c + l, high nibbles 64c + 32 + l;
 *   Q2_K/Q3_K: 128-element half h uses qs[32h..32h+31]; bits 2g..2g+1 give
 *     elements 128h + 32g + l;
 *   Q6_K: half h uses ql[64h..64h+63] and qh[32h..32h+31]; see q6_K below.
 */
#include <string.h>

#include "kernels_internal.h"

static inline float f16(uint16_t h)
{
    return realm_fp16_to_fp32(h);
}

static inline uint32_t load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- plain floats ------------------------------------------------------ */

float realm__vec_dot_f32_ref(int64_t n, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)x[i] * (double)y[i];
    return (float)sum;
}

float realm__vec_dot_f16_ref(int64_t n, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)f16(x[i]) * (double)f16(y[i]);
    return (float)sum;
}

float realm__vec_dot_bf16_ref(int64_t n, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)realm_bf16_to_fp32(x[i]) * (double)realm_bf16_to_fp32(y[i]);
    return (float)sum;
}

/* ---- 32-element blocks · Q8_0 ------------------------------------------ */

/* Sum of the 32 activation codes of a Q8_0 block (the min term's factor). */
static inline int q8_0_sum(const realm_block_q8_0 *y)
{
    int s = 0;
    for (int j = 0; j < REALM_QK8_0; j++)
        s += y->qs[j];
    return s;
}

/* x = d * (q - 8) */
float realm__vec_dot_q4_0_ref(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q4_0 *x = vx;
    const realm_block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / REALM_QK4_0; b++) {
        int isum = 0;
        for (int j = 0; j < REALM_QK4_0 / 2; j++) {
            isum += ((x[b].qs[j] & 0x0f) - 8) * y[b].qs[j];
            isum += ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + 16];
        }
        sum += (float)isum * f16(x[b].d) * f16(y[b].d);
    }
    return sum;
}

/* x = d * q + m: sum = d*dy * sum(q*qy) + m*dy * sum(qy) */
float realm__vec_dot_q4_1_ref(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q4_1 *x = vx;
    const realm_block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / REALM_QK4_1; b++) {
        int isum = 0;
        for (int j = 0; j < REALM_QK4_1 / 2; j++) {
            isum += (x[b].qs[j] & 0x0f) * y[b].qs[j];
            isum += (x[b].qs[j] >> 4) * y[b].qs[j + 16];
        }
        const float dy = f16(y[b].d);
        sum += f16(x[b].d) * dy * (float)isum + f16(x[b].m) * dy * (float)q8_0_sum(&y[b]);
    }
    return sum;
}

/* 5-bit code: low 4 bits as Q4_0, bit 4 of element j is bit j of qh. */
static inline int q5_code(const uint8_t *qs, uint32_t qh, int j)
{
    const int lo = j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4;
    return lo | (int)((qh >> j) & 1) << 4;
}

/* x = d * (q - 16) */
float realm__vec_dot_q5_0_ref(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q5_0 *x = vx;
    const realm_block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / REALM_QK5_0; b++) {
        const uint32_t qh = load_u32le(x[b].qh);
        int isum = 0;
        for (int j = 0; j < REALM_QK5_0; j++)
            isum += (q5_code(x[b].qs, qh, j) - 16) * y[b].qs[j];
        sum += (float)isum * f16(x[b].d) * f16(y[b].d);
    }
    return sum;
}

/* x = d * q + m */
float realm__vec_dot_q5_1_ref(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q5_1 *x = vx;
    const realm_block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / REALM_QK5_1; b++) {
        const uint32_t qh = load_u32le(x[b].qh);
        int isum = 0;
        for (int j = 0; j < REALM_QK5_1; j++)
            isum += q5_code(x[b].qs, qh, j) * y[b].qs[j];
        const float dy = f16(y[b].d);
        sum += f16(x[b].d) * dy * (float)isum + f16(x[b].m) * dy * (float)q8_0_sum(&y[b]);
    }
    return sum;
}

float realm__vec_dot_q8_0_ref(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q8_0 *x = vx;
    const realm_block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / REALM_QK8_0; b++) {
        int isum = 0;
        for (int j = 0; j < REALM_QK8_0; j++)
            isum += x[b].qs[j] * y[b].qs[j];
        sum += (float)isum * f16(x[b].d) * f16(y[b].d);
    }
    return sum;
}

/* x = d * kvalues[q] */
float realm__vec_dot_iq4_nl_ref(int64_t n, const void *vx, const void *vy)
{
    const realm_block_iq4_nl *x = vx;
    const realm_block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / REALM_QK4_NL; b++) {
        int isum = 0;
        for (int j = 0; j < REALM_QK4_NL / 2; j++) {
            isum += realm_iq4nl_values[x[b].qs[j] & 0x0f] * y[b].qs[j];
            isum += realm_iq4nl_values[x[b].qs[j] >> 4] * y[b].qs[j + 16];
        }
        sum += (float)isum * f16(x[b].d) * f16(y[b].d);
    }
    return sum;
}

/* ---- super-blocks of 256 · Q8_K ----------------------------------------- */

/* x = d * (sc & 15) * q - dmin * (sc >> 4); 16 sub-blocks of 16. */
float realm__vec_dot_q2_K_ref(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q2_K *x = vx;
    const realm_block_q8_K *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        int isum = 0, msum = 0;
        for (int e = 0; e < REALM_QK_K; e++) {
            const int h = e / 128, g = (e % 128) / 32, l = e % 32;
            const int q = (x[b].qs[32 * h + l] >> (2 * g)) & 3;
            isum += (x[b].scales[e / 16] & 0x0f) * q * y[b].qs[e];
        }
        for (int s = 0; s < 16; s++)
            msum += (x[b].scales[s] >> 4) * y[b].bsums[s];
        sum += y[b].d * f16(x[b].d) * (float)isum - y[b].d * f16(x[b].dmin) * (float)msum;
    }
    return sum;
}

/*
 * Q3_K's 16 six-bit scales: the low 4 bits are the nibbles of scales[0..7]
 * (low nibbles for sub-blocks 0..7, high for 8..15); the high 2 bits of
 * sub-block s are bits 2*(s/4) of scales[8 + s%4]. Stored with +32.
 */
static inline int q3_K_scale(const uint8_t *sc, int s)
{
    const int lo = s < 8 ? sc[s] & 0x0f : sc[s - 8] >> 4;
    const int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* x = d * scale * q, q = low 2 bits - (high bit clear ? 4 : 0) in -4..3. */
float realm__vec_dot_q3_K_ref(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q3_K *x = vx;
    const realm_block_q8_K *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        int isum = 0;
        for (int s = 0; s < 16; s++) {
            int ssum = 0;
            for (int e = 16 * s; e < 16 * s + 16; e++) {
                const int h = e / 128, g = (e % 128) / 32, l = e % 32;
                int q = (x[b].qs[32 * h + l] >> (2 * g)) & 3;
                if (!(x[b].hmask[l] & (1 << (4 * h + g))))
                    q -= 4;
                ssum += q * y[b].qs[e];
            }
            isum += q3_K_scale(x[b].scales, s) * ssum;
        }
        sum += f16(x[b].d) * y[b].d * (float)isum;
    }
    return sum;
}

/*
 * Scale and min of sub-block s (0..7) of Q4_K/Q5_K, 6 bits each: s < 4 are
 * the low 6 bits of bytes s and s + 4; s >= 4 take their low 4 bits from the
 * nibbles of byte s + 4 and their top 2 bits from the top of bytes s - 4 / s.
 */
static inline void k4_scale_min(const uint8_t *q, int s, int *sc, int *m)
{
    if (s < 4) {
        *sc = q[s] & 63;
        *m = q[s + 4] & 63;
    } else {
        *sc = (q[s + 4] & 0x0f) | (q[s - 4] >> 6) << 4;
        *m = (q[s + 4] >> 4) | (q[s] >> 6) << 4;
    }
}

/* x = d * sc * q - dmin * m; 8 sub-blocks of 32. */
float realm__vec_dot_q4_K_ref(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q4_K *x = vx;
    const realm_block_q8_K *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        int isum = 0, msum = 0;
        for (int s = 0; s < 8; s++) {
            int sc, m;
            k4_scale_min(x[b].scales, s, &sc, &m);
            const uint8_t *qs = x[b].qs + 32 * (s / 2);
            const int shift = 4 * (s % 2);
            int ssum = 0;
            for (int l = 0; l < 32; l++)
                ssum += ((qs[l] >> shift) & 0x0f) * y[b].qs[32 * s + l];
            isum += sc * ssum;
            msum += m * (y[b].bsums[2 * s] + y[b].bsums[2 * s + 1]);
        }
        sum += f16(x[b].d) * y[b].d * (float)isum - f16(x[b].dmin) * y[b].d * (float)msum;
    }
    return sum;
}

/* As Q4_K; bit s of qh[l] is the fifth bit of element 32 s + l. */
float realm__vec_dot_q5_K_ref(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q5_K *x = vx;
    const realm_block_q8_K *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        int isum = 0, msum = 0;
        for (int s = 0; s < 8; s++) {
            int sc, m;
            k4_scale_min(x[b].scales, s, &sc, &m);
            const uint8_t *qs = x[b].qs + 32 * (s / 2);
            const int shift = 4 * (s % 2);
            int ssum = 0;
            for (int l = 0; l < 32; l++) {
                const int q = ((qs[l] >> shift) & 0x0f) | ((x[b].qh[l] >> s) & 1) << 4;
                ssum += q * y[b].qs[32 * s + l];
            }
            isum += sc * ssum;
            msum += m * (y[b].bsums[2 * s] + y[b].bsums[2 * s + 1]);
        }
        sum += f16(x[b].d) * y[b].d * (float)isum - f16(x[b].dmin) * y[b].d * (float)msum;
    }
    return sum;
}

/*
 * x = d * scale * (q - 32); 16 sub-blocks of 16. In half h, element
 * 128 h + 32 g + l takes its low 4 bits from ql[64 h + l + 32 (g & 1)]
 * (low nibble for g < 2, high for g >= 2) and its top 2 bits from bits
 * 2g..2g+1 of qh[32 h + l].
 */
float realm__vec_dot_q6_K_ref(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q6_K *x = vx;
    const realm_block_q8_K *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        int isum = 0;
        for (int s = 0; s < 16; s++) {
            int ssum = 0;
            for (int e = 16 * s; e < 16 * s + 16; e++) {
                const int h = e / 128, g = (e % 128) / 32, l = e % 32;
                const int ql = (x[b].ql[64 * h + l + 32 * (g & 1)] >> (4 * (g >> 1))) & 0x0f;
                const int qh = (x[b].qh[32 * h + l] >> (2 * g)) & 3;
                ssum += ((ql | qh << 4) - 32) * y[b].qs[e];
            }
            isum += x[b].scales[s] * ssum;
        }
        sum += f16(x[b].d) * y[b].d * (float)isum;
    }
    return sum;
}

/* x = d * (ls - 32) * kvalues[q]; 8 sub-blocks of 32 laid out like IQ4_NL. */
float realm__vec_dot_iq4_xs_ref(int64_t n, const void *vx, const void *vy)
{
    const realm_block_iq4_xs *x = vx;
    const realm_block_q8_K *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        int isum = 0;
        for (int s = 0; s < 8; s++) {
            const int ls = ((x[b].scales_l[s / 2] >> (4 * (s % 2))) & 0x0f) |
                           ((x[b].scales_h >> (2 * s)) & 3) << 4;
            const uint8_t *qs = x[b].qs + 16 * s;
            const int8_t *q8 = y[b].qs + 32 * s;
            int ssum = 0;
            for (int j = 0; j < 16; j++) {
                ssum += realm_iq4nl_values[qs[j] & 0x0f] * q8[j];
                ssum += realm_iq4nl_values[qs[j] >> 4] * q8[j + 16];
            }
            isum += (ls - 32) * ssum;
        }
        sum += f16(x[b].d) * y[b].d * (float)isum;
    }
    return sum;
}

float realm__vec_dot_q8_K_ref(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q8_K *x = vx;
    const realm_block_q8_K *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        int isum = 0;
        for (int j = 0; j < REALM_QK_K; j++)
            isum += x[b].qs[j] * y[b].qs[j];
        sum += x[b].d * y[b].d * (float)isum;
    }
    return sum;
}

/* ---- activation converters ---------------------------------------------- */

/* The reference quantizers (src/core) are the specification; n has been
 * checked by the caller, so the return code carries no information. */
void realm__from_float_f32_ref(const float *x, void *y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}

void realm__from_float_f16_ref(const float *x, void *y, int64_t n)
{
    (void)realm_quantize_row(REALM_TYPE_F16, x, y, n);
}

void realm__from_float_bf16_ref(const float *x, void *y, int64_t n)
{
    (void)realm_quantize_row(REALM_TYPE_BF16, x, y, n);
}

void realm__from_float_q8_0_ref(const float *x, void *y, int64_t n)
{
    (void)realm_quantize_row(REALM_TYPE_Q8_0, x, y, n);
}

void realm__from_float_q8_K_ref(const float *x, void *y, int64_t n)
{
    (void)realm_quantize_row(REALM_TYPE_Q8_K, x, y, n);
}

/* ---- multi-vector dot products (matmul_internal.h) ---------------------- */

#include "matmul_internal.h"

#define MULTI_REF(name)                                                                            \
    static void dot_multi_##name##_ref(int64_t n, const void *x, const void *y, size_t y_stride,   \
                                       int ny, float *s)                                           \
    {                                                                                              \
        for (int e = 0; e < ny; e++)                                                               \
            s[e] = realm__vec_dot_##name##_ref(n, x, (const uint8_t *)y + (size_t)e * y_stride);   \
    }
MULTI_REF(q4_0)
MULTI_REF(q8_0)
MULTI_REF(q4_K)
MULTI_REF(q6_K)

const realm__dot_multi realm__dot_multi_ref[REALM_TYPE_COUNT] = {
    [REALM_TYPE_Q4_0] = {.dot = dot_multi_q4_0_ref},
    [REALM_TYPE_Q8_0] = {.dot = dot_multi_q8_0_ref},
    [REALM_TYPE_Q4_K] = {.dot = dot_multi_q4_K_ref},
    [REALM_TYPE_Q6_K] = {.dot = dot_multi_q6_K_ref},
};
