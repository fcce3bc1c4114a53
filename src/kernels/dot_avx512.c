/*
 * AVX-512 (F/BW/VL/DQ + VNNI) kernels. Same contracts and results as
 * dot_ref.c up to float summation order; compiled with the AVX-512 flags, so
 * nothing here may run unless cpu.c found those features.
 *
 * Integer products use vpdpbusd (u8 x s8, four products summed into each
 * int32 lane). Codes that are naturally unsigned (nibbles, 2/3/5/6-bit
 * codes) are the unsigned operand; a constant offset (Q4_0's -8, Q6_K's
 * -32, ...) is applied as a second vpdpbusd against the activations, or
 * through Q8_K's bsums once per super-block. Signed weights (Q8_0, Q8_K,
 * the IQ4 code book) become unsigned by adding 128 to one side and
 * subtracting 128 * sum of the other.
 *
 * 32-element block types: one zmm holds two blocks (lanes 0-7 and 8-15 of
 * the int32 result); their float scales dx * dy are converted eight blocks
 * at a time and spread to the pairs by vpermps.
 *
 * K-quants: a zmm of codes covers 64 elements, i.e. two sub-blocks of 32 or
 * four of 16. The vpdpbusd lanes of 4 products stay below 2^15 for codes of
 * up to 6 bits (4 * 63 * 127 = 32004), so two results pack into one zmm of
 * int16 (vpackssdw, exact) and vpdpwssd multiplies them by the int16
 * sub-block scales, accumulating in int32: the scales cost two
 * instructions per 256 elements instead of one per sub-block.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels_internal.h"
#include "simd_x86.h"
#include "simd_x86_512.h"

/* ---- plain floats ------------------------------------------------------ */

/* n - i elements left (< 16): a lane mask for masked loads. */
static inline __mmask16 tail_mask16(int64_t left)
{
    return (__mmask16)((1u << left) - 1);
}

float realm__vec_dot_f32_avx512(int64_t n, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(y + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(y + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
    if (i < n) {
        const __mmask16 m = tail_mask16(n - i);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static inline __m512 f16x16(const uint16_t *p)
{
    return _mm512_cvtph_ps(load256(p));
}

static inline __m512 f16x16_tail(const uint16_t *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

float realm__vec_dot_f16_avx512(int64_t n, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(f16x16(x + i), f16x16(y + i), a0);
        a1 = _mm512_fmadd_ps(f16x16(x + i + 16), f16x16(y + i + 16), a1);
        a2 = _mm512_fmadd_ps(f16x16(x + i + 32), f16x16(y + i + 32), a2);
        a3 = _mm512_fmadd_ps(f16x16(x + i + 48), f16x16(y + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(f16x16(x + i), f16x16(y + i), a0);
    if (i < n) {
        const __mmask16 m = tail_mask16(n - i);
        a1 = _mm512_fmadd_ps(f16x16_tail(x + i, m), f16x16_tail(y + i, m), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static inline __m512 bf16x16(__m256i h)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

float realm__vec_dot_bf16_avx512(int64_t n, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(bf16x16(load256(x + i)), bf16x16(load256(y + i)), a0);
        a1 = _mm512_fmadd_ps(bf16x16(load256(x + i + 16)), bf16x16(load256(y + i + 16)), a1);
        a2 = _mm512_fmadd_ps(bf16x16(load256(x + i + 32)), bf16x16(load256(y + i + 32)), a2);
        a3 = _mm512_fmadd_ps(bf16x16(load256(x + i + 48)), bf16x16(load256(y + i + 48)), a3);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(bf16x16(load256(x + i)), bf16x16(load256(y + i)), a0);
    if (i < n) {
        const __mmask16 m = tail_mask16(n - i);
        a1 = _mm512_fmadd_ps(bf16x16(_mm256_maskz_loadu_epi16(m, x + i)),
                             bf16x16(_mm256_maskz_loadu_epi16(m, y + i)), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* ---- 32-element blocks · Q8_0 ------------------------------------------ */

/*
 * Per-type pair kernels: int32 lanes of sum(code * qy) for blocks a (lanes
 * 0-7) and b (8-15); the _min variants also return sum(qy) lanes for the
 * weights' min term.
 */
static inline __m512i pair_q4_0(const realm_block_q4_0 *a, const realm_block_q4_0 *b,
                                const realm_block_q8_0 *ya, const realm_block_q8_0 *yb)
{
    const __m512i q = nibbles_2x32(a->qs, b->qs);
    const __m512i y = load_2x256(ya->qs, yb->qs);
    const __m512i z = _mm512_setzero_si512();
    return _mm512_sub_epi32(dpbusd(z, q, y), dpbusd(z, _mm512_set1_epi8(8), y));
}

static inline __m512i pair_q8_0(const realm_block_q8_0 *a, const realm_block_q8_0 *b,
                                const realm_block_q8_0 *ya, const realm_block_q8_0 *yb)
{
    const __m512i x = load_2x256(a->qs, b->qs);
    const __m512i y = load_2x256(ya->qs, yb->qs);
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    const __m512i z = _mm512_setzero_si512();
    /* (y + 128) . x - 128 . x */
    return _mm512_sub_epi32(dpbusd(z, _mm512_xor_si512(y, bias), x), dpbusd(z, bias, x));
}

/* 5-bit codes of two Q5 blocks: the fifth bits come straight from qh as a
 * 64-bit byte mask (bit j of qh is element j). */
static inline __m512i q5_codes_2x32(const uint8_t *qsa, const uint8_t *qha, const uint8_t *qsb,
                                    const uint8_t *qhb)
{
    uint32_t ha, hb;
    memcpy(&ha, qha, 4);
    memcpy(&hb, qhb, 4);
    const __mmask64 k = _cvtu64_mask64((uint64_t)ha | (uint64_t)hb << 32);
    const __m512i q = nibbles_2x32(qsa, qsb);
    return _mm512_mask_add_epi8(q, k, q, _mm512_set1_epi8(16));
}

static inline __m512i pair_q5_0(const realm_block_q5_0 *a, const realm_block_q5_0 *b,
                                const realm_block_q8_0 *ya, const realm_block_q8_0 *yb)
{
    const __m512i q = q5_codes_2x32(a->qs, a->qh, b->qs, b->qh);
    const __m512i y = load_2x256(ya->qs, yb->qs);
    const __m512i z = _mm512_setzero_si512();
    return _mm512_sub_epi32(dpbusd(z, q, y), dpbusd(z, _mm512_set1_epi8(16), y));
}

/* The IQ4 code book biased by +128, so codes are unsigned. */
static inline __m512i iq4_table_u8(void)
{
    return _mm512_broadcast_i32x4(
        _mm_xor_si128(load128(realm_iq4nl_values), _mm_set1_epi8((char)0x80)));
}

static inline __m512i pair_iq4_nl(const realm_block_iq4_nl *a, const realm_block_iq4_nl *b,
                                  const realm_block_q8_0 *ya, const realm_block_q8_0 *yb)
{
    const __m512i v = _mm512_shuffle_epi8(iq4_table_u8(), nibbles_2x32(a->qs, b->qs));
    const __m512i y = load_2x256(ya->qs, yb->qs);
    const __m512i z = _mm512_setzero_si512();
    return _mm512_sub_epi32(dpbusd(z, v, y), dpbusd(z, _mm512_set1_epi8((char)0x80), y));
}

static inline __m512i pair_q4_1(const realm_block_q4_1 *a, const realm_block_q4_1 *b,
                                const realm_block_q8_0 *ya, const realm_block_q8_0 *yb,
                                __m512i *ysum)
{
    const __m512i y = load_2x256(ya->qs, yb->qs);
    const __m512i z = _mm512_setzero_si512();
    *ysum = dpbusd(z, _mm512_set1_epi8(1), y);
    return dpbusd(z, nibbles_2x32(a->qs, b->qs), y);
}

static inline __m512i pair_q5_1(const realm_block_q5_1 *a, const realm_block_q5_1 *b,
                                const realm_block_q8_0 *ya, const realm_block_q8_0 *yb,
                                __m512i *ysum)
{
    const __m512i y = load_2x256(ya->qs, yb->qs);
    const __m512i z = _mm512_setzero_si512();
    *ysum = dpbusd(z, _mm512_set1_epi8(1), y);
    return dpbusd(z, q5_codes_2x32(a->qs, a->qh, b->qs, b->qh), y);
}

/*
 * Row drivers. Groups of 8 blocks: scales dx * dy for all 8 at once, then
 * four pairs. A final group of fewer blocks pairs the odd one with itself
 * and gives the duplicate a zero scale.
 */
#define DOT32(name, xtype)                                                                         \
    float realm__vec_dot_##name##_avx512(int64_t n, const void *vx, const void *vy)                \
    {                                                                                              \
        const xtype *x = vx;                                                                       \
        const realm_block_q8_0 *y = vy;                                                            \
        const int64_t nb = n / 32;                                                                 \
        __m512i idx[4];                                                                            \
        spread_indices(idx);                                                                       \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;                                                  \
        int64_t b = 0;                                                                             \
        for (; b + 8 <= nb; b += 8) {                                                              \
            const xtype *xb = x + b;                                                               \
            const realm_block_q8_0 *yb = y + b;                                                    \
            const __m256 d = _mm256_mul_ps(halves8((const uint8_t *)&xb->d, sizeof *x, 8),         \
                                           halves8((const uint8_t *)&yb->d, sizeof *y, 8));        \
            a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair_##name(xb, xb + 1, yb, yb + 1)),          \
                                 spread(idx[0], d), a0);                                           \
            a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair_##name(xb + 2, xb + 3, yb + 2, yb + 3)),  \
                                 spread(idx[1], d), a1);                                           \
            a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair_##name(xb + 4, xb + 5, yb + 4, yb + 5)),  \
                                 spread(idx[2], d), a0);                                           \
            a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair_##name(xb + 6, xb + 7, yb + 6, yb + 7)),  \
                                 spread(idx[3], d), a1);                                           \
        }                                                                                          \
        if (b < nb) {                                                                              \
            const int cnt = (int)(nb - b);                                                         \
            const __m256 d = _mm256_mul_ps(halves8((const uint8_t *)&x[b].d, sizeof *x, cnt),      \
                                           halves8((const uint8_t *)&y[b].d, sizeof *y, cnt));     \
            for (int k = 0; 2 * k < cnt; k++) {                                                    \
                const int64_t i0 = b + 2 * k, i1 = 2 * k + 1 < cnt ? i0 + 1 : i0;                  \
                const __m512i p = pair_##name(&x[i0], &x[i1], &y[i0], &y[i1]);                     \
                a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), spread(idx[k], d), a0);                \
            }                                                                                      \
        }                                                                                          \
        return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));                                        \
    }

/* As DOT32 for x = d * q + m: adds m * dy * sum(qy). */
#define DOT32_MIN(name, xtype)                                                                     \
    float realm__vec_dot_##name##_avx512(int64_t n, const void *vx, const void *vy)                \
    {                                                                                              \
        const xtype *x = vx;                                                                       \
        const realm_block_q8_0 *y = vy;                                                            \
        const int64_t nb = n / 32;                                                                 \
        __m512i idx[4];                                                                            \
        spread_indices(idx);                                                                       \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;                                                  \
        int64_t b = 0;                                                                             \
        for (; b + 8 <= nb; b += 8) {                                                              \
            const __m256 dy = halves8((const uint8_t *)&y[b].d, sizeof *y, 8);                     \
            const __m256 d = _mm256_mul_ps(halves8((const uint8_t *)&x[b].d, sizeof *x, 8), dy);   \
            const __m256 m = _mm256_mul_ps(halves8((const uint8_t *)&x[b].m, sizeof *x, 8), dy);   \
            REALM__UNROLL(4)                                                                       \
            for (int k = 0; k < 4; k++) {                                                          \
                const int64_t i0 = b + 2 * k;                                                      \
                __m512i s;                                                                         \
                const __m512i p = pair_##name(&x[i0], &x[i0 + 1], &y[i0], &y[i0 + 1], &s);         \
                a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), spread(idx[k], d), a0);                \
                a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), spread(idx[k], m), a1);                \
            }                                                                                      \
        }                                                                                          \
        if (b < nb) {                                                                              \
            const int cnt = (int)(nb - b);                                                         \
            const __m256 dy = halves8((const uint8_t *)&y[b].d, sizeof *y, cnt);                   \
            const __m256 d = _mm256_mul_ps(halves8((const uint8_t *)&x[b].d, sizeof *x, cnt), dy); \
            const __m256 m = _mm256_mul_ps(halves8((const uint8_t *)&x[b].m, sizeof *x, cnt), dy); \
            for (int k = 0; 2 * k < cnt; k++) {                                                    \
                const int64_t i0 = b + 2 * k, i1 = 2 * k + 1 < cnt ? i0 + 1 : i0;                  \
                __m512i s;                                                                         \
                const __m512i p = pair_##name(&x[i0], &x[i1], &y[i0], &y[i1], &s);                 \
                a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), spread(idx[k], d), a0);                \
                a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), spread(idx[k], m), a1);                \
            }                                                                                      \
        }                                                                                          \
        return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));                                        \
    }

DOT32(q4_0, realm_block_q4_0)
DOT32(q5_0, realm_block_q5_0)
DOT32(q8_0, realm_block_q8_0)
DOT32(iq4_nl, realm_block_iq4_nl)
DOT32_MIN(q4_1, realm_block_q4_1)
DOT32_MIN(q5_1, realm_block_q5_1)

/* ---- super-blocks of 256 · Q8_K ----------------------------------------- */

float realm__vec_dot_q2_K_avx512(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q2_K *x = vx;
    const realm_block_q8_K *y = vy;
    const __m512i idx0 = load512(k16_scale_idx[0]), idx1 = load512(k16_scale_idx[1]);
    /* per-word shift counts: groups 0 | 1 and 2 | 3 of a half */
    const __m512i sh01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i sh23 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m128i sc8 = load128(x[b].scales);
        const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sc8, _mm_set1_epi8(0x0f)));
        const __m256i m16 =
            _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(0x0f)));
        const __m256i msum = _mm256_madd_epi16(m16, load256(y[b].bsums));

        __m512i r[4];
        REALM__UNROLL(2)
        for (int h = 0; h < 2; h++) {
            const __m512i q = bcast256(x[b].qs + 32 * h);
            const __m512i v01 = _mm512_and_si512(_mm512_srlv_epi16(q, sh01), m3);
            const __m512i v23 = _mm512_and_si512(_mm512_srlv_epi16(q, sh23), m3);
            r[2 * h] = dpbusd(_mm512_setzero_si512(), v01, load512(y[b].qs + 128 * h));
            r[2 * h + 1] = dpbusd(_mm512_setzero_si512(), v23, load512(y[b].qs + 128 * h + 64));
        }
        const __m512i sumi = k16_scaled_sum(r, sc16, idx0, idx1);
        const float dy = y[b].d;
        acc = _mm512_fmadd_ps(_mm512_set1_ps(dy * h2f(x[b].d)), _mm512_cvtepi32_ps(sumi), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dy * h2f(x[b].dmin)), _mm256_cvtepi32_ps(msum), accm);
    }
    return _mm512_reduce_add_ps(acc) - hsum_f32x8(accm);
}

/* Q3_K: codes q2 + 4 * hbit in 0..7; the -4 goes through bsums. */
float realm__vec_dot_q3_K_avx512(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q3_K *x = vx;
    const realm_block_q8_K *y = vy;
    const __m512i idx0 = load512(k16_scale_idx[0]), idx1 = load512(k16_scale_idx[1]);
    const __m512i sh01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i sh23 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i four = _mm512_set1_epi8(4);
    /* hmask bit k of element l is for group k = 4 h + g */
    __m512i hbit[4];
    for (int i = 0; i < 4; i++)
        hbit[i] = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * i))),
                                     _mm256_set1_epi8((char)(1 << (2 * i + 1))), 1);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(q3_K_scales(x[b].scales));
        const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, load256(y[b].bsums)), 2);
        const __m512i hm = bcast256(x[b].hmask);

        __m512i r[4];
        REALM__UNROLL(2)
        for (int h = 0; h < 2; h++) {
            const __m512i q = bcast256(x[b].qs + 32 * h);
            __m512i v01 = _mm512_and_si512(_mm512_srlv_epi16(q, sh01), m3);
            __m512i v23 = _mm512_and_si512(_mm512_srlv_epi16(q, sh23), m3);
            v01 = _mm512_mask_add_epi8(v01, _mm512_test_epi8_mask(hm, hbit[2 * h]), v01, four);
            v23 = _mm512_mask_add_epi8(v23, _mm512_test_epi8_mask(hm, hbit[2 * h + 1]), v23, four);
            r[2 * h] = dpbusd(_mm512_setzero_si512(), v01, load512(y[b].qs + 128 * h));
            r[2 * h + 1] = dpbusd(_mm512_setzero_si512(), v23, load512(y[b].qs + 128 * h + 64));
        }
        __m512i sumi = k16_scaled_sum(r, sc16, idx0, idx1);
        sumi = _mm512_sub_epi32(sumi, _mm512_zextsi256_si512(corr));
        const float d = y[b].d * h2f(x[b].d);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

float realm__vec_dot_q4_K_avx512(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q4_K *x = vx;
    const realm_block_q8_K *y = vy;
    const __m512i shuf0 = load512(k32_scale_shuf[0]), shuf1 = load512(k32_scale_shuf[1]);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m128i scmin = k4_scales_mins_vec(x[b].scales);
        __m512i v[4], r[4];
        q4_K_codes(&x[b], v);
        REALM__UNROLL(4)
        for (int j = 0; j < 4; j++)
            r[j] = dpbusd(_mm512_setzero_si512(), v[j], load512(y[b].qs + 64 * j));
        const __m512i sumi = k32_scaled_sum(r, scmin, shuf0, shuf1);
        const __m128 dd = k4_d_dmin(&x[b].d, y[b].d);
        acc = _mm512_fmadd_ps(_mm512_broadcastss_ps(dd), _mm512_cvtepi32_ps(sumi), acc);
        accm = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dd)),
                               _mm256_cvtepi32_ps(k32_min_terms(scmin, y[b].bsums)), accm);
    }
    return _mm512_reduce_add_ps(acc) - hsum_f32x8(accm);
}

float realm__vec_dot_q5_K_avx512(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q5_K *x = vx;
    const realm_block_q8_K *y = vy;
    const __m512i shuf0 = load512(k32_scale_shuf[0]), shuf1 = load512(k32_scale_shuf[1]);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i b4 = _mm512_set1_epi8(0x10);
    /* qh bit 2j is the fifth bit of sub-block 2j, bit 2j+1 of 2j+1 */
    __m512i hbit[4];
    for (int j = 0; j < 4; j++)
        hbit[j] = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * j))),
                                     _mm256_set1_epi8((char)(1 << (2 * j + 1))), 1);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m128i scmin = k4_scales_mins_vec(x[b].scales);
        const __m512i qh = bcast256(x[b].qh);
        __m512i r[4];
        REALM__UNROLL(4)
        for (int j = 0; j < 4; j++) {
            const __m512i q = bcast256(x[b].qs + 32 * j);
            __m512i v = _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xffff0000u, q, 4), m4);
            v = _mm512_mask_add_epi8(v, _mm512_test_epi8_mask(qh, hbit[j]), v, b4);
            r[j] = dpbusd(_mm512_setzero_si512(), v, load512(y[b].qs + 64 * j));
        }
        const __m512i sumi = k32_scaled_sum(r, scmin, shuf0, shuf1);
        const __m128 dd = k4_d_dmin(&x[b].d, y[b].d);
        acc = _mm512_fmadd_ps(_mm512_broadcastss_ps(dd), _mm512_cvtepi32_ps(sumi), acc);
        accm = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dd)),
                               _mm256_cvtepi32_ps(k32_min_terms(scmin, y[b].bsums)), accm);
    }
    return _mm512_reduce_add_ps(acc) - hsum_f32x8(accm);
}

/* Q6_K: codes 0..63 (q6_K_codes), the -32 through bsums. */
float realm__vec_dot_q6_K_avx512(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q6_K *x = vx;
    const realm_block_q8_K *y = vy;
    const __m512i idx0 = load512(k16_scale_idx[0]), idx1 = load512(k16_scale_idx[1]);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(load128(x[b].scales));
        const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, load256(y[b].bsums)), 5);
        __m512i v[4], r[4];
        q6_K_codes(&x[b], v);
        REALM__UNROLL(4)
        for (int k = 0; k < 4; k++)
            r[k] = dpbusd(_mm512_setzero_si512(), v[k], load512(y[b].qs + 64 * k));
        __m512i sumi = k16_scaled_sum(r, sc16, idx0, idx1);
        sumi = _mm512_sub_epi32(sumi, _mm512_zextsi256_si512(corr));
        const float d = y[b].d * h2f(x[b].d);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/*
 * IQ4_XS: the code book biased by +128 (unsigned); the bias comes back out
 * as 128 * sum_s scale_s * (bsums[2s] + bsums[2s+1]). Products of 4 codes
 * exceed int16 here, so the scales multiply int32 lanes (vpmulld).
 */
float realm__vec_dot_iq4_xs_avx512(int64_t n, const void *vx, const void *vy)
{
    const realm_block_iq4_xs *x = vx;
    const realm_block_q8_K *y = vy;
    const __m512i table = iq4_table_u8();
    /* dword indices spreading scales 2k, 2k+1 over lanes 0-7, 8-15 */
    __m512i sidx[4];
    for (int k = 0; k < 4; k++)
        sidx[k] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(2 * k)),
                                     _mm256_set1_epi32(2 * k + 1), 1);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m256i sc32 = iq4_xs_scales32(&x[b]);
        /* bias term: scale_s for both bsums of sub-block s */
        const __m256i sc16 = _mm256_packs_epi32(sc32, sc32); /* lane: s0-3 s0-3 | s4-7 s4-7 */
        const __m256i sc_pairs = _mm256_unpacklo_epi16(sc16, sc16); /* s0 s0 s1 s1 .. | s4 s4 .. */
        const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc_pairs, load256(y[b].bsums)), 7);

        const __m512i scz = _mm512_castsi256_si512(sc32);
        __m512i sumi = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(corr));
        REALM__UNROLL(4)
        for (int k = 0; k < 4; k++) {
            const uint8_t *qs = x[b].qs + 32 * k;
            const __m512i v = _mm512_shuffle_epi8(table, nibbles_2x32(qs, qs + 16));
            const __m512i p = dpbusd(_mm512_setzero_si512(), v, load512(y[b].qs + 64 * k));
            sumi = _mm512_add_epi32(sumi,
                                    _mm512_mullo_epi32(p, _mm512_permutexvar_epi32(sidx[k], scz)));
        }
        const float d = y[b].d * h2f(x[b].d);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* Q8_K weights (any int8) . activations: (y + 128) . x - 128 . x. */
float realm__vec_dot_q8_K_avx512(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q8_K *x = vx;
    const realm_block_q8_K *y = vy;
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        __m512i p = _mm512_setzero_si512(), c = p;
        REALM__UNROLL(8)
        for (int j = 0; j < REALM_QK_K; j += 64) {
            const __m512i qx = load512(x[b].qs + j);
            p = dpbusd(p, _mm512_xor_si512(load512(y[b].qs + j), bias), qx);
            c = dpbusd(c, bias, qx);
        }
        const __m512 d = _mm512_set1_ps(x[b].d * y[b].d);
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(p, c)), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* ---- activation converters ---------------------------------------------- */

/*
 * These reproduce src/core/quant_ref.c bit for bit (see dot_avx2.c): same
 * IEEE operations in the same order, exact restatements of its roundings.
 */

void realm__from_float_f16_avx512(const float *x, void *vy, int64_t n)
{
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) /* imm 0: round to nearest even, ignoring MXCSR */
        _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), 0));
    if (i < n) {
        const __mmask16 m = tail_mask16(n - i);
        _mm256_mask_storeu_epi16(y + i, m, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), 0));
    }
}

static inline __m256i bf16_round16(__m512 v)
{
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    const __m512i qnan = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(64));
    const __mmask16 isnan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(r, isnan, qnan));
}

void realm__from_float_bf16_avx512(const float *x, void *vy, int64_t n)
{
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i), bf16_round16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 m = tail_mask16(n - i);
        _mm256_mask_storeu_epi16(y + i, m, bf16_round16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* Largest |x| over 16k floats, NaN ignored (vmaxps returns its second
 * operand when the first is NaN, like the scalar `fabsf(x) > amax`). */
static inline float abs_max(const float *x, int k)
{
    __m512 m = _mm512_setzero_ps();
    for (int i = 0; i < k; i++)
        m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * i)), m);
    return _mm512_reduce_max_ps(m);
}

/* roundf(clamp(v, -127, 127)) with NaN -> 0, as int32. */
static inline __m512i round_i8(__m512 v)
{
    v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    /* halves away from zero: truncate, then step away if |fraction| >= 0.5 */
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 up =
        _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 step = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_and_si512(_mm512_castps_si512(v), _mm512_castps_si512(_mm512_set1_ps(-0.0f))),
        _mm512_castps_si512(_mm512_set1_ps(1.0f))));
    return _mm512_cvtps_epi32(_mm512_mask_add_ps(t, up, t, step));
}

void realm__from_float_q8_0_avx512(const float *x, void *vy, int64_t n)
{
    realm_block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / REALM_QK8_0; b++, x += REALM_QK8_0) {
        const float amax = abs_max(x, 2);
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = realm_fp32_to_fp16(d);
        const __m512 vid = _mm512_set1_ps(id);
        const __m128i lo = _mm512_cvtepi32_epi8(round_i8(_mm512_mul_ps(_mm512_loadu_ps(x), vid)));
        const __m128i hi =
            _mm512_cvtepi32_epi8(round_i8(_mm512_mul_ps(_mm512_loadu_ps(x + 16), vid)));
        _mm256_storeu_si256((__m256i *)y[b].qs, _mm256_set_m128i(hi, lo));
    }
}

/* Ties-to-even rounding of clamp(v, -128, 127), NaN -> 0, as int32. */
static inline __m512i round_q8_K(__m512 v)
{
    v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-128.0f)), _mm512_set1_ps(127.0f));
    return _mm512_cvtps_epi32(
        _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

void realm__from_float_q8_K_avx512(const float *x, void *vy, int64_t n)
{
    realm_block_q8_K *y = vy;
    for (int64_t b = 0; b < n / REALM_QK_K; b++, x += REALM_QK_K) {
        const float amax = abs_max(x, 16);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        /* the signed value of the first element with |x| == amax */
        float max = 0.0f;
        for (int i = 0; i < REALM_QK_K; i += 16) {
            const __mmask16 m = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + i)),
                                                   _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (m) {
                max = x[i + __builtin_ctz((unsigned)m)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m512 vs = _mm512_set1_ps(iscale);
        for (int g = 0; g < REALM_QK_K / 16; g++) {
            const __m512i q = round_q8_K(_mm512_mul_ps(vs, _mm512_loadu_ps(x + 16 * g)));
            _mm_storeu_si128((__m128i *)(y[b].qs + 16 * g), _mm512_cvtepi32_epi8(q));
            y[b].bsums[g] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        y[b].d = 1 / iscale;
    }
}
