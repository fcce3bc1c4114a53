/*
 * AVX2 + FMA + F16C kernels. Same contracts and results as dot_ref.c up to
 * float summation order; compiled with -mavx2 -mfma -mf16c, so nothing here
 * may run unless cpu.c found those features.
 *
 * Integer work follows one pattern: codes are unpacked to bytes in element
 * order, multiplied with the activation bytes by vpmaddubsw (unsigned x
 * signed, pairs summed to int16), and widened by vpmaddwd, either with ones
 * or directly with the sub-block scales as int16, to int32 lanes. Products
 * of two signed bytes use the sign trick: |x| * (y * sign(x)), valid because
 * activation codes are never -128 (a weight code of -128 works: its
 * absolute value, 128, is read as unsigned). Every int16 intermediate stays
 * below 2^15 in magnitude: at most 2 * 128 * 127.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels_internal.h"
#include "simd_x86.h"

/* u8 x s8, groups of 4 adjacent products summed to int32. */
static inline __m256i dot_u8s8(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* s8 x s8 via the sign trick; y must not be -128 where x < 0. */
static inline __m256i dot_s8s8(__m256i x, __m256i y)
{
    return dot_u8s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* 16 bytes of packed nibbles -> 32 codes: low nibbles, then high nibbles. */
static inline __m256i nibbles32(const uint8_t *qs)
{
    /* both lanes loaded with the 16 bytes, the high one shifted by 4 */
    const __m256i v = _mm256_broadcastsi128_si256(load128(qs));
    const __m256i sh = _mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(sh, _mm256_set1_epi8(0x0f));
}

/* 32 bits -> 32 bytes, 0xff where bit j (byte j) is set. */
static inline __m256i bits_to_bytes(uint32_t bits)
{
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                          2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), shuf);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* ---- plain floats ------------------------------------------------------ */

float realm__vec_dot_f32_avx2(int64_t n, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float s = hsum_f32x8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        s += x[i] * y[i];
    return s;
}

float realm__vec_dot_f16_avx2(int64_t n, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
#define F16X8(p) _mm256_cvtph_ps(load128(p))
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(F16X8(x + i), F16X8(y + i), a0);
        a1 = _mm256_fmadd_ps(F16X8(x + i + 8), F16X8(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(F16X8(x + i + 16), F16X8(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(F16X8(x + i + 24), F16X8(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(F16X8(x + i), F16X8(y + i), a0);
#undef F16X8
    float s = hsum_f32x8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        s += h2f(x[i]) * h2f(y[i]);
    return s;
}

static inline __m256 bf16x8(const uint16_t *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(p)), 16));
}

float realm__vec_dot_bf16_avx2(int64_t n, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(bf16x8(x + i), bf16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(bf16x8(x + i + 8), bf16x8(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(bf16x8(x + i + 16), bf16x8(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(bf16x8(x + i + 24), bf16x8(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(bf16x8(x + i), bf16x8(y + i), a0);
    float s = hsum_f32x8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        s += realm_bf16_to_fp32(x[i]) * realm_bf16_to_fp32(y[i]);
    return s;
}

/* ---- 32-element blocks · Q8_0 ------------------------------------------ */

/*
 * Block kernels: int32 lanes of sum(code * qy) over one block; the _min
 * variants also return lanes of sum(qy) for the weights' min term. The row
 * drivers convert the scales of 8 blocks at a time and hand each block its
 * own by vpermps.
 */
static inline __m256i block_q4_0(const realm_block_q4_0 *x, const realm_block_q8_0 *y)
{
    const __m256i q = nibbles32(x->qs);
    const __m256i qy = load256(y->qs);
    /* (q - 8) . y = q . y - 8 . y, both as u8 x s8 */
    const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q, qy),
                                         _mm256_maddubs_epi16(_mm256_set1_epi8(8), qy));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* 5-bit codes 0..31 of a Q5_0/Q5_1 block. */
static inline __m256i q5_codes(const uint8_t *qs, const uint8_t *qh)
{
    uint32_t h;
    memcpy(&h, qh, 4);
    const __m256i hi = _mm256_and_si256(bits_to_bytes(h), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(nibbles32(qs), hi);
}

static inline __m256i block_q5_0(const realm_block_q5_0 *x, const realm_block_q8_0 *y)
{
    const __m256i qy = load256(y->qs);
    const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q5_codes(x->qs, x->qh), qy),
                                         _mm256_maddubs_epi16(_mm256_set1_epi8(16), qy));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

static inline __m256i block_q8_0(const realm_block_q8_0 *x, const realm_block_q8_0 *y)
{
    return dot_s8s8(load256(x->qs), load256(y->qs));
}

static inline __m256i iq4nl_table(void)
{
    return _mm256_broadcastsi128_si256(load128(realm_iq4nl_values));
}

static inline __m256i block_iq4_nl(const realm_block_iq4_nl *x, const realm_block_q8_0 *y)
{
    const __m256i v = _mm256_shuffle_epi8(iq4nl_table(), nibbles32(x->qs));
    return dot_s8s8(v, load256(y->qs));
}

static inline __m256i block_q4_1(const realm_block_q4_1 *x, const realm_block_q8_0 *y,
                                 __m256i *ysum)
{
    const __m256i qy = load256(y->qs);
    *ysum = dot_u8s8(_mm256_set1_epi8(1), qy);
    return dot_u8s8(nibbles32(x->qs), qy);
}

static inline __m256i block_q5_1(const realm_block_q5_1 *x, const realm_block_q8_0 *y,
                                 __m256i *ysum)
{
    const __m256i qy = load256(y->qs);
    *ysum = dot_u8s8(_mm256_set1_epi8(1), qy);
    return dot_u8s8(q5_codes(x->qs, x->qh), qy);
}

/*
 * Scale k of 8 in every lane. The drivers first duplicate each 128-bit half
 * (halves_lo/hi), so this is one in-lane shuffle with an immediate.
 */
static inline __m256 lane(__m256 lo, __m256 hi, int k)
{
    const __m256 v = k < 4 ? lo : hi;
    switch (k & 3) {
    case 0:
        return _mm256_permute_ps(v, 0x00);
    case 1:
        return _mm256_permute_ps(v, 0x55);
    case 2:
        return _mm256_permute_ps(v, 0xaa);
    default:
        return _mm256_permute_ps(v, 0xff);
    }
}

#define DOT32(name, xtype)                                                                         \
    float realm__vec_dot_##name##_avx2(int64_t n, const void *vx, const void *vy)                  \
    {                                                                                              \
        const xtype *x = vx;                                                                       \
        const realm_block_q8_0 *y = vy;                                                            \
        const int64_t nb = n / 32;                                                                 \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;                                                  \
        for (int64_t b = 0; b < nb; b += 8) {                                                      \
            const int cnt = nb - b < 8 ? (int)(nb - b) : 8;                                        \
            const __m256 d = _mm256_mul_ps(halves8((const uint8_t *)&x[b].d, sizeof *x, cnt),      \
                                           halves8((const uint8_t *)&y[b].d, sizeof *y, cnt));     \
            const __m256 dl = _mm256_permute2f128_ps(d, d, 0x00);                                  \
            const __m256 dh = _mm256_permute2f128_ps(d, d, 0x11);                                  \
            REALM__UNROLL(8)                                                                       \
            for (int k = 0; k < 8; k++) {                                                          \
                if (k == cnt)                                                                      \
                    break;                                                                         \
                const __m256 p = _mm256_cvtepi32_ps(block_##name(&x[b + k], &y[b + k]));           \
                if (k & 1)                                                                         \
                    a1 = _mm256_fmadd_ps(p, lane(dl, dh, k), a1);                                  \
                else                                                                               \
                    a0 = _mm256_fmadd_ps(p, lane(dl, dh, k), a0);                                  \
            }                                                                                      \
        }                                                                                          \
        return hsum_f32x8(_mm256_add_ps(a0, a1));                                                  \
    }

/* As DOT32 for x = d * q + m: adds m * dy * sum(qy). */
#define DOT32_MIN(name, xtype)                                                                     \
    float realm__vec_dot_##name##_avx2(int64_t n, const void *vx, const void *vy)                  \
    {                                                                                              \
        const xtype *x = vx;                                                                       \
        const realm_block_q8_0 *y = vy;                                                            \
        const int64_t nb = n / 32;                                                                 \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;                                                  \
        for (int64_t b = 0; b < nb; b += 8) {                                                      \
            const int cnt = nb - b < 8 ? (int)(nb - b) : 8;                                        \
            const __m256 dy = halves8((const uint8_t *)&y[b].d, sizeof *y, cnt);                   \
            const __m256 d = _mm256_mul_ps(halves8((const uint8_t *)&x[b].d, sizeof *x, cnt), dy); \
            const __m256 m = _mm256_mul_ps(halves8((const uint8_t *)&x[b].m, sizeof *x, cnt), dy); \
            const __m256 dl = _mm256_permute2f128_ps(d, d, 0x00);                                  \
            const __m256 dh = _mm256_permute2f128_ps(d, d, 0x11);                                  \
            const __m256 ml = _mm256_permute2f128_ps(m, m, 0x00);                                  \
            const __m256 mh = _mm256_permute2f128_ps(m, m, 0x11);                                  \
            REALM__UNROLL(8)                                                                       \
            for (int k = 0; k < 8; k++) {                                                          \
                if (k == cnt)                                                                      \
                    break;                                                                         \
                __m256i s;                                                                         \
                const __m256 p = _mm256_cvtepi32_ps(block_##name(&x[b + k], &y[b + k], &s));       \
                a0 = _mm256_fmadd_ps(p, lane(dl, dh, k), a0);                                      \
                a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), lane(ml, mh, k), a1);                  \
            }                                                                                      \
        }                                                                                          \
        return hsum_f32x8(_mm256_add_ps(a0, a1));                                                  \
    }

DOT32(q4_0, realm_block_q4_0)
DOT32(q5_0, realm_block_q5_0)
DOT32(q8_0, realm_block_q8_0)
DOT32(iq4_nl, realm_block_iq4_nl)
DOT32_MIN(q4_1, realm_block_q4_1)
DOT32_MIN(q5_1, realm_block_q5_1)

/* ---- super-blocks of 256 · Q8_K ----------------------------------------- */

float realm__vec_dot_q2_K_avx2(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q2_K *x = vx;
    const realm_block_q8_K *y = vy;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m128i sc8 = load128(x[b].scales);
        const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sc8, _mm_set1_epi8(0x0f)));
        const __m256i m16 =
            _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(0x0f)));
        const __m256i msum = _mm256_madd_epi16(m16, load256(y[b].bsums));

        const int8_t *q8 = y[b].qs;
        __m256i sumi = _mm256_setzero_si256();
        REALM__UNROLL(2)
        for (int h = 0; h < 2; h++) {
            const __m256i q = load256(x[b].qs + 32 * h);
            const __m256i sh = scales_half(sc16, h);
            REALM__UNROLL(4)
            for (int g = 0; g < 4; g++, q8 += 32) {
                const __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * g), m3);
                const __m256i p16 = _mm256_maddubs_epi16(v, load256(q8));
                const __m256i s = _mm256_shuffle_epi8(sh, word_pair(2 * g, 2 * g + 1));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, s));
            }
        }
        const float dy = y[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dy * h2f(x[b].d)), _mm256_cvtepi32_ps(sumi), acc);
        acc = _mm256_fnmadd_ps(_mm256_set1_ps(dy * h2f(x[b].dmin)), _mm256_cvtepi32_ps(msum), acc);
    }
    return hsum_f32x8(acc);
}

/*
 * Q3_K: code = q2 + 4 * hbit - 4 with q2 the low 2 bits; the constant -4 is
 * applied through bsums: sum_s sc_s * 4 * bsum_s.
 */
float realm__vec_dot_q3_K_avx2(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q3_K *x = vx;
    const realm_block_q8_K *y = vy;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(q3_K_scales(x[b].scales));
        const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, load256(y[b].bsums)), 2);
        const __m256i hm = load256(x[b].hmask);

        const int8_t *q8 = y[b].qs;
        __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), corr);
        REALM__UNROLL(2)
        for (int h = 0; h < 2; h++) {
            const __m256i q = load256(x[b].qs + 32 * h);
            const __m256i sh = scales_half(sc16, h);
            REALM__UNROLL(4)
            for (int g = 0; g < 4; g++, q8 += 32) {
                const int k = 4 * h + g; /* hmask bit of this group */
                __m256i hb = _mm256_and_si256(hm, _mm256_set1_epi8((char)(1 << k)));
                /* one bit per byte, so the word shift moves it within its byte */
                hb = k >= 2 ? _mm256_srli_epi16(hb, k - 2) : _mm256_slli_epi16(hb, 2 - k);
                const __m256i v =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * g), m3), hb);
                const __m256i p16 = _mm256_maddubs_epi16(v, load256(q8));
                const __m256i s = _mm256_shuffle_epi8(sh, word_pair(2 * g, 2 * g + 1));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, s));
            }
        }
        const float d = y[b].d * h2f(x[b].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_f32x8(acc);
}

float realm__vec_dot_q4_K_avx2(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q4_K *x = vx;
    const realm_block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m128i scmin = k4_scales_mins(x[b].scales);
        const float dy = y[b].d;
        accm = _mm_fmadd_ps(_mm_set1_ps(dy * h2f(x[b].dmin)),
                            _mm_cvtepi32_ps(k4_min_terms(scmin, y[b].bsums)), accm);
        const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scmin));

        const uint8_t *q4 = x[b].qs;
        const int8_t *q8 = y[b].qs;
        __m256i sumi = _mm256_setzero_si256();
        REALM__UNROLL(4)
        for (int j = 0; j < 4; j++, q4 += 32, q8 += 64) {
            const __m256i q = load256(q4);
            const __m256i lo = _mm256_and_si256(q, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m256i plo = _mm256_maddubs_epi16(lo, load256(q8));
            const __m256i phi = _mm256_maddubs_epi16(hi, load256(q8 + 32));
            const __m256i slo = _mm256_shuffle_epi8(sc, word_pair(2 * j, 2 * j));
            const __m256i shi = _mm256_shuffle_epi8(sc, word_pair(2 * j + 1, 2 * j + 1));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(plo, slo));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(phi, shi));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dy * h2f(x[b].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_f32x8(acc) - hsum_f32x4(accm);
}

float realm__vec_dot_q5_K_avx2(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q5_K *x = vx;
    const realm_block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i b4 = _mm256_set1_epi8(0x10);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m128i scmin = k4_scales_mins(x[b].scales);
        const float dy = y[b].d;
        accm = _mm_fmadd_ps(_mm_set1_ps(dy * h2f(x[b].dmin)),
                            _mm_cvtepi32_ps(k4_min_terms(scmin, y[b].bsums)), accm);
        const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scmin));
        const __m256i qh = load256(x[b].qh);

        const uint8_t *q4 = x[b].qs;
        const int8_t *q8 = y[b].qs;
        __m256i sumi = _mm256_setzero_si256();
        REALM__UNROLL(4)
        for (int j = 0; j < 4; j++, q4 += 32, q8 += 64) {
            const __m256i q = load256(q4);
            /* bit 2j (2j+1) of qh moved to bit 4: the fifth bit of lo (hi) */
            const __m256i hlo = _mm256_and_si256(
                j <= 2 ? _mm256_slli_epi16(qh, 4 - 2 * j) : _mm256_srli_epi16(qh, 2 * j - 4), b4);
            const __m256i hhi = _mm256_and_si256(
                j <= 1 ? _mm256_slli_epi16(qh, 3 - 2 * j) : _mm256_srli_epi16(qh, 2 * j - 3), b4);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), hlo);
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), hhi);
            const __m256i plo = _mm256_maddubs_epi16(lo, load256(q8));
            const __m256i phi = _mm256_maddubs_epi16(hi, load256(q8 + 32));
            const __m256i slo = _mm256_shuffle_epi8(sc, word_pair(2 * j, 2 * j));
            const __m256i shi = _mm256_shuffle_epi8(sc, word_pair(2 * j + 1, 2 * j + 1));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(plo, slo));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(phi, shi));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dy * h2f(x[b].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_f32x8(acc) - hsum_f32x4(accm);
}

/*
 * Q6_K: codes 0..63 by vpmaddubsw; the -32 offset is applied through
 * bsums: sum_s sc_s * 32 * bsum_s.
 */
float realm__vec_dot_q6_K_avx2(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q6_K *x = vx;
    const realm_block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i m30 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(load128(x[b].scales));
        const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, load256(y[b].bsums)), 5);

        const int8_t *q8 = y[b].qs;
        __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), corr);
        REALM__UNROLL(2)
        for (int h = 0; h < 2; h++, q8 += 128) {
            const __m256i ql0 = load256(x[b].ql + 64 * h);
            const __m256i ql1 = load256(x[b].ql + 64 * h + 32);
            const __m256i qh = load256(x[b].qh + 32 * h);
            const __m256i sh = scales_half(sc16, h);
            __m256i v[4];
            v[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            v[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                   _mm256_and_si256(qh, m30));
            v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
            REALM__UNROLL(4)
            for (int g = 0; g < 4; g++) {
                const __m256i p16 = _mm256_maddubs_epi16(v[g], load256(q8 + 32 * g));
                const __m256i s = _mm256_shuffle_epi8(sh, word_pair(2 * g, 2 * g + 1));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, s));
            }
        }
        const float d = y[b].d * h2f(x[b].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_f32x8(acc);
}

float realm__vec_dot_iq4_xs_avx2(int64_t n, const void *vx, const void *vy)
{
    const realm_block_iq4_xs *x = vx;
    const realm_block_q8_K *y = vy;
    const __m256i table = iq4nl_table();
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        /* int16 scales [s0..s7] in both lanes */
        const __m256i sc32 = iq4_xs_scales32(&x[b]);
        const __m256i sc = _mm256_permute4x64_epi64(_mm256_packs_epi32(sc32, sc32), 0x88);
        __m256i sumi = _mm256_setzero_si256();
        REALM__UNROLL(8)
        for (int s = 0; s < 8; s++) {
            const __m256i v = _mm256_shuffle_epi8(table, nibbles32(x[b].qs + 16 * s));
            const __m256i qy = load256(y[b].qs + 32 * s);
            const __m256i p16 =
                _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(qy, v));
            const __m256i ss = _mm256_shuffle_epi8(sc, word_pair(s, s));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, ss));
        }
        const float d = y[b].d * h2f(x[b].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_f32x8(acc);
}

float realm__vec_dot_q8_K_avx2(int64_t n, const void *vx, const void *vy)
{
    const realm_block_q8_K *x = vx;
    const realm_block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        __m256i sumi = _mm256_setzero_si256();
        REALM__UNROLL(8)
        for (int j = 0; j < REALM_QK_K; j += 32)
            sumi = _mm256_add_epi32(sumi, dot_s8s8(load256(x[b].qs + j), load256(y[b].qs + j)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x[b].d * y[b].d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_f32x8(acc);
}

/* ---- activation converters ---------------------------------------------- */

/*
 * These reproduce src/core/quant_ref.c bit for bit; the float operations
 * (products, the scale divisions) are the same IEEE operations in the same
 * order, and the roundings below are exact re-statements of roundf and
 * nearest_int.
 */

void realm__from_float_f16_avx2(const float *x, void *vy, int64_t n)
{
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) /* imm 0: round to nearest even, ignoring MXCSR */
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), 0));
    for (; i < n; i++)
        y[i] = realm_fp32_to_fp16(x[i]);
}

/* Round to nearest even on the bit pattern; NaN keeps its top bits, quieted. */
static inline __m256i bf16_round8(__m256 v)
{
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i qnan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
    const __m256i isnan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(r, qnan, isnan);
}

void realm__from_float_bf16_avx2(const float *x, void *vy, int64_t n)
{
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i a = bf16_round8(_mm256_loadu_ps(x + i));
        const __m256i b = bf16_round8(_mm256_loadu_ps(x + i + 8));
        const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
        _mm256_storeu_si256((__m256i *)(y + i), p);
    }
    for (; i < n; i++)
        y[i] = realm_fp32_to_bf16(x[i]);
}

/* 32 int32 codes (already integral floats) -> 32 int8 in element order. */
static inline void store_i8x32(int8_t *dst, __m256 f0, __m256 f1, __m256 f2, __m256 f3)
{
    const __m256i a = _mm256_packs_epi32(_mm256_cvtps_epi32(f0), _mm256_cvtps_epi32(f1));
    const __m256i b = _mm256_packs_epi32(_mm256_cvtps_epi32(f2), _mm256_cvtps_epi32(f3));
    const __m256i c = _mm256_packs_epi16(a, b);
    /* packs interleave the 128-bit lanes: dwords 0 4 1 5 2 6 3 7 */
    _mm256_storeu_si256((__m256i *)dst,
                        _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

/* Largest |x| over 8k floats, NaN ignored (max_ps returns its second
 * operand when the first is NaN, like the scalar `fabsf(x) > amax`). */
static inline float abs_max(const float *x, int k)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < k; i++)
        m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * i)), m);
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* roundf(clamp(v, -127, 127)) with NaN -> 0: quant_ref.c's round_i8. */
static inline __m256 round_i8(__m256 v)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    /* halves away from zero: truncate, then step away if |fraction| >= 0.5 */
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    const __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));
    return _mm256_add_ps(
        t, _mm256_and_ps(step, _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ)));
}

void realm__from_float_q8_0_avx2(const float *x, void *vy, int64_t n)
{
    realm_block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / REALM_QK8_0; b++, x += REALM_QK8_0) {
        const float amax = abs_max(x, 4);
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = realm_fp32_to_fp16(d);
        const __m256 vid = _mm256_set1_ps(id);
        store_i8x32(y[b].qs, round_i8(_mm256_mul_ps(_mm256_loadu_ps(x), vid)),
                    round_i8(_mm256_mul_ps(_mm256_loadu_ps(x + 8), vid)),
                    round_i8(_mm256_mul_ps(_mm256_loadu_ps(x + 16), vid)),
                    round_i8(_mm256_mul_ps(_mm256_loadu_ps(x + 24), vid)));
    }
}

/* Ties-to-even rounding of clamp(v, -128, 127), NaN -> 0: quant_ref.c's
 * nearest_int followed by its clamp (clamping first gives the same). */
static inline __m256 round_q8_K(__m256 v)
{
    v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-128.0f)), _mm256_set1_ps(127.0f));
    return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

void realm__from_float_q8_K_avx2(const float *x, void *vy, int64_t n)
{
    realm_block_q8_K *y = vy;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / REALM_QK_K; b++, x += REALM_QK_K) {
        const float amax = abs_max(x, 32);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        /* the signed value of the first element with |x| == amax */
        float max = 0.0f;
        for (int i = 0; i < REALM_QK_K; i += 8) {
            const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i));
            const int m = _mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_set1_ps(amax), _CMP_EQ_OQ));
            if (m) {
                max = x[i + __builtin_ctz((unsigned)m)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 vs = _mm256_set1_ps(iscale);
        for (int i = 0; i < REALM_QK_K; i += 32) {
            store_i8x32(y[b].qs + i, round_q8_K(_mm256_mul_ps(vs, _mm256_loadu_ps(x + i))),
                        round_q8_K(_mm256_mul_ps(vs, _mm256_loadu_ps(x + i + 8))),
                        round_q8_K(_mm256_mul_ps(vs, _mm256_loadu_ps(x + i + 16))),
                        round_q8_K(_mm256_mul_ps(vs, _mm256_loadu_ps(x + i + 24))));
        }
        /* bsums: vpsadbw sums 8 biased bytes (q + 128) per 64-bit lane */
        uint64_t sad[32];
        for (int i = 0; i < 8; i++) {
            const __m256i q =
                _mm256_xor_si256(load256(y[b].qs + 32 * i), _mm256_set1_epi8((char)0x80));
            _mm256_storeu_si256((__m256i *)(sad + 4 * i),
                                _mm256_sad_epu8(q, _mm256_setzero_si256()));
        }
        for (int g = 0; g < 16; g++)
            y[b].bsums[g] = (int16_t)((int)(sad[2 * g] + sad[2 * g + 1]) - 16 * 128);
        y[b].d = 1 / iscale;
    }
}
