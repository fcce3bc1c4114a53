/*
 * AVX-512 (F/BW/VL/DQ + VNNI) multi-vector dot products (matmul_internal.h);
 * nothing here runs unless cpu.c found those features.
 *
 * Q4_K and Q6_K: per weight block, the codes are unpacked into four zmm of
 * 64 bytes and the sub-block scales laid out once, as dot_avx512.c's
 * vec_dot does for one token; then each token costs four vpdpbusd, two
 * vpackssdw and two vpdpwssd (the scales, simd_x86_512.h) and one float
 * multiply-add. The activations are read as from_float made them (no prep
 * step). The integer sums are exact, so each token's result is its
 * vec_dot's integers, scaled and summed in float per block.
 *
 * Q8_0 and Q4_0 likewise, two blocks per zmm (below). Only the entry
 * points (MULTI_ENTRY) come from dot_multi_simd.h; its AVX2 kernels are
 * not used here.
 */
#define FN(name) dot_multi_##name##_avx512
#define MNR      8

#include "dot_multi_simd.h"
#include "simd_x86_512.h"

/*
 * init + the 256 products of one block's codes v (q4_K_codes, q6_K_codes)
 * with a token's Q8_K codes q8, each vpdpbusd result weighted by its
 * sub-block's scale: s0 and s1 are the int16 scales laid out as
 * k32_scaled_sum or k16_scaled_sum lay them (simd_x86_512.h).
 */
INLINE __m512i scaled_sum(__m512i init, const __m512i v[4], const int8_t *q8, __m512i s0,
                          __m512i s1)
{
    const __m512i z = _mm512_setzero_si512();
    const __m512i p01 =
        _mm512_packs_epi32(dpbusd(z, v[0], load512(q8)), dpbusd(z, v[1], load512(q8 + 64)));
    const __m512i p23 =
        _mm512_packs_epi32(dpbusd(z, v[2], load512(q8 + 128)), dpbusd(z, v[3], load512(q8 + 192)));
    return _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(init, p01, s0), p23, s1);
}

/* ---- Q4_K ------------------------------------------------------------------ */

/* Codes by q4_K_codes; the mins as dy * dmin * sum_s m_s * (bsums[2s] +
 * bsums[2s+1]), in the low eight float lanes of the block's term. */
INLINE void q4_K_vnni_multi(int64_t n, const void *vx, const void *y, size_t ys, int ny, float *s)
{
    const realm_block_q4_K *x = vx;
    const __m512i shuf0 = load512(k32_scale_shuf[0]), shuf1 = load512(k32_scale_shuf[1]);
    const __m256i shuf_min = load256(k32_scale_shuf[2]);
    const __m512i z = _mm512_setzero_si512();
    __m512 acc[REALM__MULTI_NR];
    REALM__UNROLL(8)
    for (int e = 0; e < ny; e++)
        acc[e] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m128i scmin = k4_scales_mins_vec(x[b].scales);
        const __m512i sc = _mm512_broadcast_i32x4(scmin);
        const __m512i s0 = _mm512_shuffle_epi8(sc, shuf0), s1 = _mm512_shuffle_epi8(sc, shuf1);
        const __m256i m16 = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(scmin), shuf_min);
        __m512i v[4];
        q4_K_codes(&x[b], v);
        const __m512 d = _mm512_set1_ps(h2f(x[b].d));
        const __m256 dmin = _mm256_set1_ps(h2f(x[b].dmin));
        REALM__UNROLL(8)
        for (int e = 0; e < ny; e++) {
            const realm_block_q8_K *yb = mv_tok_K(y, ys, e, b);
            const __m512i sumi = scaled_sum(z, v, yb->qs, s0, s1);
            const __m256i mins = _mm256_madd_epi16(m16, load256(yb->bsums));
            const __m512 mf = _mm512_castps256_ps512(_mm256_mul_ps(_mm256_cvtepi32_ps(mins), dmin));
            const __m512 t = _mm512_fmsub_ps(_mm512_cvtepi32_ps(sumi), d,
                                             _mm512_mask_mov_ps(_mm512_setzero_ps(), 0xff, mf));
            acc[e] = _mm512_fmadd_ps(_mm512_set1_ps(yb->d), t, acc[e]);
        }
    }
    REALM__UNROLL(8)
    for (int e = 0; e < ny; e++)
        s[e] = _mm512_reduce_add_ps(acc[e]);
}

/* ---- Q6_K ------------------------------------------------------------------ */

/* Codes 0..63 (q6_K_codes); the -32 offset through bsums, subtracted from
 * the integer sum before it is scaled. */
INLINE void q6_K_vnni_multi(int64_t n, const void *vx, const void *y, size_t ys, int ny, float *s)
{
    const realm_block_q6_K *x = vx;
    const __m512i idx0 = load512(k16_scale_idx[0]), idx1 = load512(k16_scale_idx[1]);
    __m512 acc[REALM__MULTI_NR];
    REALM__UNROLL(8)
    for (int e = 0; e < ny; e++)
        acc[e] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(load128(x[b].scales));
        const __m256i sc32 = _mm256_slli_epi16(sc16, 5); /* |32 sc| <= 4096 */
        const __m512i s0 = _mm512_permutexvar_epi16(idx0, _mm512_castsi256_si512(sc16));
        const __m512i s1 = _mm512_permutexvar_epi16(idx1, _mm512_castsi256_si512(sc16));
        __m512i v[4];
        q6_K_codes(&x[b], v);
        const __m512 d = _mm512_set1_ps(h2f(x[b].d));
        REALM__UNROLL(8)
        for (int e = 0; e < ny; e++) {
            const realm_block_q8_K *yb = mv_tok_K(y, ys, e, b);
            const __m256i corr = _mm256_madd_epi16(sc32, load256(yb->bsums));
            const __m512i init =
                _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), corr));
            const __m512i sumi = scaled_sum(init, v, yb->qs, s0, s1);
            acc[e] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(yb->d), d),
                                     _mm512_cvtepi32_ps(sumi), acc[e]);
        }
    }
    REALM__UNROLL(8)
    for (int e = 0; e < ny; e++)
        s[e] = _mm512_reduce_add_ps(acc[e]);
}

/* ---- Q8_0 and Q4_0 ------------------------------------------------------------ */

/*
 * Both read their Q8_0 activations prepared (q8_0_u8_prep): in the same
 * 34 * nb bytes, the codes of all blocks biased by +128 (unsigned, so they
 * are vpdpbusd's unsigned operand and the signed weights the other), then
 * the nb fp16 scales in a row. The bias comes back out as 128 * sum(w),
 * once per row and block pair for every token, as the accumulator each
 * token's vpdpbusd starts from. Blocks go in pairs per zmm and groups of
 * eight per scale vector, as dot_avx512.c's vec_dot; per token and pair:
 * one vpdpbusd, one conversion, one vpermps, one multiply-add.
 */
static inline void q8_0_u8_prep(int64_t n, const void *vy, void *vout)
{
    const realm_block_q8_0 *y = vy;
    const int64_t nb = n / 32;
    uint8_t *u = vout;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b++) {
        _mm256_storeu_si256((__m256i *)(u + 32 * b), _mm256_xor_si256(load256(y[b].qs), bias));
        memcpy(u + 32 * nb + 2 * b, &y[b].d, 2);
    }
}

/* The signed codes of blocks i0 and i1 (Q8_0 as stored, Q4_0 minus 8). */
INLINE __m512i w_pair_q8_0(const void *vx, int64_t i0, int64_t i1)
{
    const realm_block_q8_0 *x = vx;
    return load_2x256(x[i0].qs, x[i1].qs);
}

INLINE __m512i w_pair_q4_0(const void *vx, int64_t i0, int64_t i1)
{
    const realm_block_q4_0 *x = vx;
    return _mm512_sub_epi8(nibbles_2x32(x[i0].qs, x[i1].qs), _mm512_set1_epi8(8));
}

#define SIGNED32_VNNI(name, xtype)                                                                 \
    INLINE void name##_vnni_multi(int64_t n, const void *vx, const void *y, size_t ys, int ny,     \
                                  float *s)                                                        \
    {                                                                                              \
        const xtype *x = vx;                                                                       \
        const int64_t nb = n / 32;                                                                 \
        const __m512i bias = _mm512_set1_epi8((char)0x80);                                         \
        __m512i idx[4];                                                                            \
        spread_indices(idx);                                                                       \
        __m512 acc[REALM__MULTI_NR];                                                               \
        REALM__UNROLL(8)                                                                           \
        for (int e = 0; e < ny; e++)                                                               \
            acc[e] = _mm512_setzero_ps();                                                          \
        for (int64_t b = 0; b < nb; b += 8) {                                                      \
            const int cnt = nb - b < 8 ? (int)(nb - b) : 8;                                        \
            /* scales of blocks past cnt are 0; a last odd block pairs with itself */              \
            const __m256 dx = halves8((const uint8_t *)&x[b].d, sizeof *x, cnt);                   \
            __m512i w[4], c[4];                                                                    \
            REALM__UNROLL(4)                                                                       \
            for (int k = 0; k < 4; k++) {                                                          \
                const int64_t i0 = b + 2 * k < nb ? b + 2 * k : b;                                 \
                const int64_t i1 = i0 + 1 < nb ? i0 + 1 : i0;                                      \
                w[k] = w_pair_##name(x, i0, i1);                                                   \
                c[k] = _mm512_sub_epi32(_mm512_setzero_si512(),                                    \
                                        dpbusd(_mm512_setzero_si512(), bias, w[k]));               \
            }                                                                                      \
            REALM__UNROLL(8)                                                                       \
            for (int e = 0; e < ny; e++) {                                                         \
                const uint8_t *u = (const uint8_t *)y + (size_t)e * ys;                            \
                const __m128i dy16 = cnt == 8 ? load128(u + 32 * nb + 2 * b)                       \
                                              : _mm_maskz_loadu_epi16((__mmask8)((1u << cnt) - 1), \
                                                                      u + 32 * nb + 2 * b);        \
                const __m256 d = _mm256_mul_ps(dx, _mm256_cvtph_ps(dy16));                         \
                REALM__UNROLL(4)                                                                   \
                for (int k = 0; k < 4; k++) {                                                      \
                    if (2 * k >= cnt)                                                              \
                        break;                                                                     \
                    const int64_t i0 = b + 2 * k;                                                  \
                    const __m512i q = 2 * k + 1 < cnt ? load512(u + 32 * i0)                       \
                                                      : load_2x256(u + 32 * i0, u + 32 * i0);      \
                    acc[e] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd(c[k], q, w[k])),            \
                                             spread(idx[k], d), acc[e]);                           \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        REALM__UNROLL(8)                                                                           \
        for (int e = 0; e < ny; e++)                                                               \
            s[e] = _mm512_reduce_add_ps(acc[e]);                                                   \
    }

SIGNED32_VNNI(q8_0, realm_block_q8_0)
SIGNED32_VNNI(q4_0, realm_block_q4_0)

/* ---- entry points ----------------------------------------------------------- */

MULTI_ENTRY(q4_K_vnni)
MULTI_ENTRY(q6_K_vnni)
MULTI_ENTRY(q8_0_vnni)
MULTI_ENTRY(q4_0_vnni)

const realm__dot_multi realm__dot_multi_avx512[REALM_TYPE_COUNT] = {
    [REALM_TYPE_Q4_0] = {.prep = q8_0_u8_prep, .dot = FN(q4_0_vnni)},
    [REALM_TYPE_Q8_0] = {.prep = q8_0_u8_prep, .dot = FN(q8_0_vnni)},
    [REALM_TYPE_Q4_K] = {.dot = FN(q4_K_vnni)},
    [REALM_TYPE_Q6_K] = {.dot = FN(q6_K_vnni)},
};
