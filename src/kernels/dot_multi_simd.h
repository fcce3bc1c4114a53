/*
 * The multi-vector dot products (matmul_internal.h) in AVX2 intrinsics,
 * kept apart from dot_avx2.c so that a wider instruction set can reuse
 * them: the including file defines FN(name) and MNR (the most tokens one
 * pass keeps, bounded by the vector registers), then instantiates
 * MULTI_ENTRY for its types and gathers them in its table.
 *
 * Per weight block the codes are unpacked to bytes and the scales decoded
 * once, then multiplied with the same block of every token (vpmaddubsw,
 * vpmaddwd with the scales, one float accumulator per token).
 *
 * Q4_K and Q6_K read their activations prepared (q8_K_pairs_prep): in each
 * 64 bytes of codes, the two 32-byte halves A and B are stored as
 * [A0 B0 A2 B2] [A1 B1 A3 B3], Ak being A's k-th 8 bytes. The weight codes
 * of the same 64 columns, unpacked to two vectors, are interleaved alike
 * with one in-lane vpunpck{l,h}qdq each; then in both products every int16
 * lane holds the same sub-block's columns, so the two vpmaddubsw results
 * are added as int16 before one vpmaddwd with the scales (half the
 * vpmaddwd of a product per 32 columns). The int16 sums cannot wrap: a
 * vpmaddubsw lane is at most 2 * 63 * 127 = 16002 in magnitude (6-bit
 * codes, activation codes never -128), two of them 32004. Integer sums are
 * exact, so each token's result is its vec_dot's integers, scaled and
 * summed in float per block.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels_internal.h"
#include "matmul_internal.h"
#include "simd_x86.h"

#define INLINE static inline __attribute__((always_inline))

static inline const realm_block_q8_K *mv_tok_K(const void *y, size_t stride, int e, int64_t b)
{
    return (const realm_block_q8_K *)((const uint8_t *)y + (size_t)e * stride) + b;
}

static inline const realm_block_q8_0 *mv_tok_0(const void *y, size_t stride, int e, int64_t b)
{
    return (const realm_block_q8_0 *)((const uint8_t *)y + (size_t)e * stride) + b;
}

/* Keeps v in a register here: stops GCC from re-associating a token's
 * chain of integer adds into a tree over the whole block, whose partial
 * sums (8 tokens x 4) spill to the stack. */
#define MV_KEEP(v) __asm__("" : "+x"(v))

/* The two products of 64 columns, codes wa/wb interleaved as the prepared
 * activations at q8, added as int16 and weighted by the scales sc. */
INLINE __m256i mv_pair_dot(__m256i wa, __m256i wb, const int8_t *q8, __m256i sc)
{
    const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(wa, load256(q8)),
                                       _mm256_maddubs_epi16(wb, load256(q8 + 32)));
    return _mm256_madd_epi16(p, sc);
}

/*
 * One token's Q8_K row for Q4_K and Q6_K: codes interleaved as above; for
 * Q4_K (pair_bsums) bsums[s] becomes the sum of the 32 codes of sub-block
 * s for s < 8 and bsums[8..15] zero, Q6_K keeps the sums of 16.
 */
static inline void q8_K_pairs_prep(int64_t n, const void *vy, void *vout, bool pair_bsums)
{
    const realm_block_q8_K *y = vy;
    realm_block_q8_K *out = vout;
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        out[b].d = y[b].d;
        for (int k = 0; k < REALM_QK_K; k += 64) {
            const __m256i a = load256(y[b].qs + k), c = load256(y[b].qs + k + 32);
            _mm256_storeu_si256((__m256i *)(out[b].qs + k), _mm256_unpacklo_epi64(a, c));
            _mm256_storeu_si256((__m256i *)(out[b].qs + k + 32), _mm256_unpackhi_epi64(a, c));
        }
        __m256i bs = load256(y[b].bsums);
        if (pair_bsums) /* the lanes' pair sums [p0..p3 0 | p4..p7 0], then in order */
            bs = _mm256_permute4x64_epi64(_mm256_hadd_epi16(bs, _mm256_setzero_si256()), 0xd8);
        _mm256_storeu_si256((__m256i *)out[b].bsums, bs);
    }
}

/* ---- Q4_K ------------------------------------------------------------------ */

static inline void q4_K_prep(int64_t n, const void *y, void *out)
{
    q8_K_pairs_prep(n, y, out, true);
}

/*
 * Sub-blocks 2j (low nibbles) and 2j+1 (high) of codes 32j..32j+31; the
 * mins as in dot_avx2.c, dy * dmin * sum_s m_s * bsums[s] (paired sums).
 */
INLINE void q4_K_multi(int64_t n, const void *vx, const void *y, size_t ys, int ny, float *s)
{
    const realm_block_q4_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[REALM__MULTI_NR];
    REALM__UNROLL(8)
    for (int e = 0; e < ny; e++)
        acc[e] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m128i scmin = k4_scales_mins(x[b].scales);
        const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scmin));
        /* [m0..m7 | 0 x 8], so that the zero upper half of bsums is ignored */
        const __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi64(scmin, _mm_setzero_si128()));
        __m256i sumi[REALM__MULTI_NR];
        REALM__UNROLL(8)
        for (int e = 0; e < ny; e++)
            sumi[e] = _mm256_setzero_si256();
        REALM__UNROLL(4)
        for (int j = 0; j < 4; j++) {
            const __m256i q = load256(x[b].qs + 32 * j);
            const __m256i lo = _mm256_and_si256(q, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m256i wa = _mm256_unpacklo_epi64(lo, hi), wb = _mm256_unpackhi_epi64(lo, hi);
            const __m256i sj =
                _mm256_shuffle_epi8(sc, word_quads(2 * j, 2 * j + 1, 2 * j, 2 * j + 1));
            REALM__UNROLL(8)
            for (int e = 0; e < ny; e++) {
                sumi[e] = _mm256_add_epi32(
                    sumi[e], mv_pair_dot(wa, wb, mv_tok_K(y, ys, e, b)->qs + 64 * j, sj));
                MV_KEEP(sumi[e]);
            }
        }
        const __m256 d = _mm256_set1_ps(h2f(x[b].d)), dmin = _mm256_set1_ps(h2f(x[b].dmin));
        REALM__UNROLL(8)
        for (int e = 0; e < ny; e++) {
            const realm_block_q8_K *yb = mv_tok_K(y, ys, e, b);
            const __m256i mins = _mm256_madd_epi16(m16, load256(yb->bsums));
            const __m256 t = _mm256_fmsub_ps(_mm256_cvtepi32_ps(sumi[e]), d,
                                             _mm256_mul_ps(_mm256_cvtepi32_ps(mins), dmin));
            acc[e] = _mm256_fmadd_ps(_mm256_broadcast_ss(&yb->d), t, acc[e]);
        }
    }
    REALM__UNROLL(8)
    for (int e = 0; e < ny; e++)
        s[e] = hsum_f32x8(acc[e]);
}

/* ---- Q6_K ------------------------------------------------------------------ */

static inline void q6_K_prep(int64_t n, const void *y, void *out)
{
    q8_K_pairs_prep(n, y, out, false);
}

/*
 * Codes 0..63 by vpmaddubsw; the -32 offset through bsums, as in
 * dot_avx2.c. The 32-byte groups g of a half h cover sub-blocks 8h + 2g
 * (first 16 bytes) and 8h + 2g + 1; groups 2p and 2p + 1 are the pair
 * interleaved together.
 */
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
        const __m256i sc32 = _mm256_slli_epi16(sc16, 5); /* |32 sc| <= 4096 */
        __m256i sumi[REALM__MULTI_NR];
        REALM__UNROLL(8)
        for (int e = 0; e < ny; e++)
            sumi[e] =
                _mm256_sub_epi32(_mm256_setzero_si256(),
                                 _mm256_madd_epi16(sc32, load256(mv_tok_K(y, ys, e, b)->bsums)));
        REALM__UNROLL(2)
        for (int h = 0; h < 2; h++) {
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
            REALM__UNROLL(2)
            for (int p = 0; p < 2; p++) {
                const __m256i wa = _mm256_unpacklo_epi64(v[2 * p], v[2 * p + 1]);
                const __m256i wb = _mm256_unpackhi_epi64(v[2 * p], v[2 * p + 1]);
                const __m256i sp =
                    _mm256_shuffle_epi8(sh, word_quads(4 * p, 4 * p + 2, 4 * p + 1, 4 * p + 3));
                REALM__UNROLL(8)
                for (int e = 0; e < ny; e++) {
                    sumi[e] = _mm256_add_epi32(
                        sumi[e],
                        mv_pair_dot(wa, wb, mv_tok_K(y, ys, e, b)->qs + 128 * h + 64 * p, sp));
                    MV_KEEP(sumi[e]);
                }
            }
        }
        const __m256 d = _mm256_set1_ps(h2f(x[b].d));
        REALM__UNROLL(8)
        for (int e = 0; e < ny; e++)
            acc[e] =
                _mm256_fmadd_ps(_mm256_mul_ps(_mm256_broadcast_ss(&mv_tok_K(y, ys, e, b)->d), d),
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
 * Passes of at most MNR tokens, of equal sizes give or take one (5 tokens
 * with MNR 4: 3 + 2, not 4 + 1), each with its count a constant so that
 * the token loops unroll and the per-token arrays stay in registers (they
 * are sized for the widest pass, REALM__MULTI_NR, whatever MNR is).
 */
#define MULTI_CASE(name, k)                                                                        \
    case k:                                                                                        \
        name##_multi(n, x, y, ys, k, s);                                                           \
        break;
/* FN(name) from name##_multi; each file then gathers them in its table. */
#define MULTI_ENTRY(name)                                                                          \
    static void FN(name)(int64_t n, const void *x, const void *y, size_t ys, int ny, float *s)     \
    {                                                                                              \
        for (int passes = (ny + MNR - 1) / MNR; ny > 0; passes--) {                                \
            const int k = (ny + passes - 1) / passes;                                              \
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
