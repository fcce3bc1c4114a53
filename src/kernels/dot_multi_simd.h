/*
 * The multi-vector dot products (matmul_internal.h) in AVX2 intrinsics,
 * kept apart from dot_avx2.c so that a wider instruction set can reuse
 * them: the including file defines FN(name) and MNR (the most tokens one
 * pass keeps, bounded by the vector registers), then instantiates
 * MULTI_ENTRY for its types and gathers them in its table.
 *
 * Per weight block the codes are unpacked to bytes and the scales decoded
 * once, then multiplied with the same block of every token as in
 * dot_avx2.c's vec_dot (vpmaddubsw, vpmaddwd with the scales, one float
 * accumulator per token), so each token's sum is the vec_dot's integers
 * scaled and summed in float in the same block order.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels_internal.h"
#include "matmul_internal.h"
#include "simd_x86.h"

#define INLINE static inline __attribute__((always_inline))

static inline float mv_hsum_f32x4(__m128 s)
{
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* vpshufb control broadcasting int16 word a into the low 128-bit lane and
 * word b into the high one. */
static inline __m256i mv_word_pair(int a, int b)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 + 0x0202 * b)),
                            _mm_set1_epi16((short)(0x0100 + 0x0202 * a)));
}

static inline const realm_block_q8_K *mv_tok_K(const void *y, size_t stride, int e, int64_t b)
{
    return (const realm_block_q8_K *)((const uint8_t *)y + (size_t)e * stride) + b;
}

static inline const realm_block_q8_0 *mv_tok_0(const void *y, size_t stride, int e, int64_t b)
{
    return (const realm_block_q8_0 *)((const uint8_t *)y + (size_t)e * stride) + b;
}

/* ---- Q4_K ------------------------------------------------------------------ */

/* The mins as in dot_avx2.c: dy * dmin * sum_s m_s * (bsums[2s] + bsums[2s+1]). */
INLINE void q4_K_multi(int64_t n, const void *vx, const void *y, size_t ys, int ny, float *s)
{
    const realm_block_q4_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[REALM__MULTI_NR];
    __m128 accm[REALM__MULTI_NR];
    REALM__UNROLL(8)
    for (int e = 0; e < ny; e++) {
        acc[e] = _mm256_setzero_ps();
        accm[e] = _mm_setzero_ps();
    }
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m128i scmin = k4_scales_mins(x[b].scales);
        const __m128i m16 = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(scmin, scmin));
        const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scmin));
        const float d = h2f(x[b].d), dmin = h2f(x[b].dmin);
        __m256i sumi[REALM__MULTI_NR];
        REALM__UNROLL(8)
        for (int e = 0; e < ny; e++) {
            const realm_block_q8_K *yb = mv_tok_K(y, ys, e, b);
            const __m128i pairs = _mm_hadd_epi16(load128(yb->bsums), load128(yb->bsums + 8));
            accm[e] = _mm_fmadd_ps(_mm_set1_ps(yb->d * dmin),
                                   _mm_cvtepi32_ps(_mm_madd_epi16(m16, pairs)), accm[e]);
            sumi[e] = _mm256_setzero_si256();
        }
        REALM__UNROLL(4)
        for (int j = 0; j < 4; j++) {
            const __m256i q = load256(x[b].qs + 32 * j);
            const __m256i lo = _mm256_and_si256(q, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m256i slo = _mm256_shuffle_epi8(sc, mv_word_pair(2 * j, 2 * j));
            const __m256i shi = _mm256_shuffle_epi8(sc, mv_word_pair(2 * j + 1, 2 * j + 1));
            REALM__UNROLL(8)
            for (int e = 0; e < ny; e++) {
                const int8_t *q8 = mv_tok_K(y, ys, e, b)->qs + 64 * j;
                const __m256i plo = _mm256_maddubs_epi16(lo, load256(q8));
                const __m256i phi = _mm256_maddubs_epi16(hi, load256(q8 + 32));
                sumi[e] = _mm256_add_epi32(sumi[e], _mm256_madd_epi16(plo, slo));
                sumi[e] = _mm256_add_epi32(sumi[e], _mm256_madd_epi16(phi, shi));
            }
        }
        REALM__UNROLL(8)
        for (int e = 0; e < ny; e++)
            acc[e] = _mm256_fmadd_ps(_mm256_set1_ps(mv_tok_K(y, ys, e, b)->d * d),
                                     _mm256_cvtepi32_ps(sumi[e]), acc[e]);
    }
    REALM__UNROLL(8)
    for (int e = 0; e < ny; e++)
        s[e] = hsum_f32x8(acc[e]) - mv_hsum_f32x4(accm[e]);
}

/* ---- Q6_K ------------------------------------------------------------------ */

/* Codes 0..63 by vpmaddubsw; the -32 offset through bsums, as in dot_avx2.c. */
INLINE void q6_K_multi(int64_t n, const void *vx, const void *y, size_t ys, int ny, float *s)
{
    const realm_block_q6_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i m30 = _mm256_set1_epi8(0x30);
    __m256 acc[REALM__MULTI_NR];
    REALM__UNROLL(8)
    for (int e = 0; e < ny; e++)
        acc[e] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(load128(x[b].scales));
        __m256i sumi[REALM__MULTI_NR];
        REALM__UNROLL(8)
        for (int e = 0; e < ny; e++) {
            const __m256i corr = _mm256_slli_epi32(
                _mm256_madd_epi16(sc16, load256(mv_tok_K(y, ys, e, b)->bsums)), 5);
            sumi[e] = _mm256_sub_epi32(_mm256_setzero_si256(), corr);
        }
        REALM__UNROLL(2)
        for (int h = 0; h < 2; h++) {
            const __m256i ql0 = load256(x[b].ql + 64 * h);
            const __m256i ql1 = load256(x[b].ql + 64 * h + 32);
            const __m256i qh = load256(x[b].qh + 32 * h);
            const __m256i sh = h == 0 ? _mm256_permute2x128_si256(sc16, sc16, 0x00)
                                      : _mm256_permute2x128_si256(sc16, sc16, 0x11);
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
                const __m256i sg = _mm256_shuffle_epi8(sh, mv_word_pair(2 * g, 2 * g + 1));
                REALM__UNROLL(8)
                for (int e = 0; e < ny; e++) {
                    const int8_t *q8 = mv_tok_K(y, ys, e, b)->qs + 128 * h + 32 * g;
                    const __m256i p16 = _mm256_maddubs_epi16(v[g], load256(q8));
                    sumi[e] = _mm256_add_epi32(sumi[e], _mm256_madd_epi16(p16, sg));
                }
            }
        }
        const float d = h2f(x[b].d);
        REALM__UNROLL(8)
        for (int e = 0; e < ny; e++)
            acc[e] = _mm256_fmadd_ps(_mm256_set1_ps(mv_tok_K(y, ys, e, b)->d * d),
                                     _mm256_cvtepi32_ps(sumi[e]), acc[e]);
    }
    REALM__UNROLL(8)
    for (int e = 0; e < ny; e++)
        s[e] = hsum_f32x8(acc[e]);
}

/* ---- Q8_0 and Q4_0 ------------------------------------------------------------ */

/*
 * Signed codes w of one block (Q8_0 as stored, Q4_0 minus 8) times every
 * token's block by the sign trick |w| * (y * sign(w)); activation codes are
 * never -128 (kernels_internal.h).
 */
INLINE void signed32_multi(int64_t n, const uint8_t *x, size_t bsize, bool nib, const void *y,
                           size_t ys, int ny, float *s)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[REALM__MULTI_NR];
    REALM__UNROLL(8)
    for (int e = 0; e < ny; e++)
        acc[e] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 32; b++, x += bsize) {
        uint16_t dh;
        memcpy(&dh, x, 2);
        const float d = h2f(dh);
        __m256i w;
        if (nib) {
            const __m256i v = _mm256_broadcastsi128_si256(load128(x + 2));
            const __m256i sh = _mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
            w = _mm256_sub_epi8(_mm256_and_si256(sh, _mm256_set1_epi8(0x0f)), _mm256_set1_epi8(8));
        } else
            w = load256(x + 2);
        const __m256i aw = _mm256_sign_epi8(w, w);
        REALM__UNROLL(8)
        for (int e = 0; e < ny; e++) {
            const realm_block_q8_0 *yb = mv_tok_0(y, ys, e, b);
            const __m256i p16 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(load256(yb->qs), w));
            acc[e] = _mm256_fmadd_ps(_mm256_set1_ps(d * h2f(yb->d)),
                                     _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones)), acc[e]);
        }
    }
    REALM__UNROLL(8)
    for (int e = 0; e < ny; e++)
        s[e] = hsum_f32x8(acc[e]);
}

INLINE void q8_0_multi(int64_t n, const void *x, const void *y, size_t ys, int ny, float *s)
{
    signed32_multi(n, x, sizeof(realm_block_q8_0), false, y, ys, ny, s);
}

INLINE void q4_0_multi(int64_t n, const void *x, const void *y, size_t ys, int ny, float *s)
{
    signed32_multi(n, x, sizeof(realm_block_q4_0), true, y, ys, ny, s);
}

/* ---- entry points ----------------------------------------------------------- */

/*
 * Passes of at most MNR tokens, each with its count a constant so that the
 * token loops unroll and the per-token arrays stay in registers (they are
 * sized for the widest pass, REALM__MULTI_NR, whatever MNR is).
 */
#define MULTI_CASE(name, k)                                                                        \
    case k:                                                                                        \
        name##_multi(n, x, y, ys, k, s);                                                           \
        break;
/* FN(name) from name##_multi; each file then gathers them in its table. */
#define MULTI_ENTRY(name)                                                                          \
    static void FN(name)(int64_t n, const void *x, const void *y, size_t ys, int ny, float *s)     \
    {                                                                                              \
        while (ny > 0) {                                                                           \
            const int k = ny < MNR ? ny : MNR;                                                     \
            switch (k) {                                                                           \
                MULTI_CASE(name, 1)                                                                \
                MULTI_CASE(name, 2)                                                                \
                MULTI_CASE(name, 3)                                                                \
                MULTI_CASE(name, 4)                                                                \
                MULTI_CASE(name, 5)                                                                \
                MULTI_CASE(name, 6)                                                                \
                MULTI_CASE(name, 7)                                                                \
            default:                                                                               \
                name##_multi(n, x, y, ys, 8, s);                                                   \
            }                                                                                      \
            y = (const uint8_t *)y + (size_t)k * ys;                                               \
            s += k;                                                                                \
            ny -= k;                                                                               \
        }                                                                                          \
    }
