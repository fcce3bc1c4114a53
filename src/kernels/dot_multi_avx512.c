/*
 * AVX-512 (F/BW/VL/DQ + VNNI) multi-vector dot products (matmul_internal.h);
 * nothing here runs unless cpu.c found those features.
 *
 * Q4_K and Q6_K: per weight block, the codes are unpacked into four zmm of
 * 64 bytes and the sub-block scales laid out once; then each token costs
 * four vpdpbusd, the scales (two vpdpwssd for Q4_K, whose activations are
 * prepared to match its code lanes; two vpackssdw and two vpdpwssd for
 * Q6_K, as dot_avx512.c's vec_dot) and a few float operations. The integer
 * sums are exact, so each token's result is its vec_dot's integers, scaled
 * and summed in float per block.
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
 * init + the 256 products of one Q6_K block's codes v (q6_K_codes) with a
 * token's Q8_K codes q8, each vpdpbusd result weighted by its sub-block's
 * scale: s0 and s1 are the int16 scales laid out as k16_scaled_sum lays
 * them (simd_x86_512.h).
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

/*
 * Q4_K reads its activations prepared (q4_K_vnni_prep), so that a token's
 * block costs four vpdpbusd, one vpackssdw, one vpdpwssd and four float
 * operations, one of them (a subtraction) on the adding pipes.
 *
 * The weight codes are unpacked from qs's 16-byte chunks taken in the
 * order A = chunks 0 2 4 6 and B = 1 3 5 7 (one vshufi64x2 each): lane c
 * of A holds elements 0-15 of sub-blocks 2c (low nibbles) and 2c + 1
 * (high nibbles), lane c of B their elements 16-31. So 128-bit lane c of
 * lo(A) and lo(B) belongs to sub-block 2c, of hi(A) and hi(B) to 2c + 1,
 * and the prepared codes hold the matching activations: their 64-byte
 * vector k (lo(A), lo(B), hi(A), hi(B)) has in lane c the token's codes
 * 64c + 16k .. 64c + 16k + 15. The low vectors' two vpdpbusd add into one
 * accumulator, the high ones' into another, each int32 lane a sum of 8
 * products of a 4-bit code and an int8 code, |sum| <= 8 * 15 * 128 < 2^15;
 * vpackssdw puts both in int16 words without saturating (in lane c, words
 * 0-3 from sub-block 2c, 4-7 from 2c + 1) and one vpdpwssd weights them
 * by the scales.
 *
 * The integer sums are exact, each lane's |sum| <= 2 * 15360 * 63 < 2^22:
 * vpdpwssd adds them to the bits of 1.5 * 2^23, which read as a float are
 * exactly 1.5 * 2^23 + sum, so one float subtraction gives the sum where
 * a conversion would compete with the vpdpbusd for the same two pipes.
 * Then dy * d * sum; the mins are dmin * m_s times the prepared
 * dy * (bsums[2s] + bsums[2s + 1]), in float lanes summed at the end.
 * (Tables of dy * d and of the mins per chunk of blocks, one multiply for
 * 16 blocks, cost more than they saved on rows of 8 to 22 blocks.)
 */

/* vpshufb controls: in 128-bit lane c, dwords 0-1 get scale byte 2c of
 * k4_scales_mins_vec's result and dwords 2-3 byte 2c + 1, in their low word. */
static const uint8_t q4_K_lane_scales[64] = {
#define L(i) i, 0x80, i, 0x80, i, 0x80, i, 0x80, i + 1, 0x80, i + 1, 0x80, i + 1, 0x80, i + 1, 0x80
    L(0),
    L(2),
    L(4),
    L(6),
#undef L
};

/* A token's Q8_K row with its codes in the lane order above; bsums become
 * 8 floats, dy * (bsums[2s] + bsums[2s + 1]). */
static inline void q4_K_vnni_prep(int64_t n, const void *vy, void *vout)
{
    const realm_block_q8_K *y = vy;
    realm_block_q8_K *out = vout;
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        out[b].d = y[b].d;
        for (int k = 0; k < 4; k++)
            for (int c = 0; c < 4; c++)
                memcpy(out[b].qs + 64 * k + 16 * c, y[b].qs + 64 * c + 16 * k, 16);
        float pair[8];
        for (int i = 0; i < 8; i++)
            pair[i] = y[b].d * (float)(y[b].bsums[2 * i] + y[b].bsums[2 * i + 1]);
        _Static_assert(sizeof pair == sizeof out[b].bsums, "8 floats in place of bsums");
        memcpy(out[b].bsums, pair, sizeof pair);
    }
}

INLINE void q4_K_vnni_multi(int64_t n, const void *vx, const void *y, size_t ys, int ny, float *s)
{
    const realm_block_q4_K *x = vx;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i shuf_pair = load512(q4_K_lane_scales);
    const __m512i z = _mm512_setzero_si512();
    const __m512i magic = _mm512_set1_epi32(0x4b400000); /* 1.5 * 2^23 */
    __m512 acc[REALM__MULTI_NR];
    __m256 acc_min[REALM__MULTI_NR];
    REALM__UNROLL(8)
    for (int e = 0; e < ny; e++) {
        acc[e] = _mm512_setzero_ps();
        acc_min[e] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / REALM_QK_K; b++) {
        const __m128i scmin = k4_scales_mins_vec(x[b].scales);
        const __m512i s_pair = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(scmin), shuf_pair);
        uint32_t d_dmin;
        memcpy(&d_dmin, &x[b].d, 4); /* dmin follows d */
        const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)d_dmin));
        const __m512 d = _mm512_broadcastss_ps(dd);
        const __m256 wmin =
            _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(scmin, 8))),
                          _mm256_broadcastss_ps(_mm_movehdup_ps(dd)));
        const __m512i q0 = load512(x[b].qs), q1 = load512(x[b].qs + 64);
        const __m512i qa = _mm512_shuffle_i64x2(q0, q1, 0x88); /* chunks 0 2 4 6 */
        const __m512i qb = _mm512_shuffle_i64x2(q0, q1, 0xdd); /* chunks 1 3 5 7 */
        const __m512i lo_a = _mm512_and_si512(qa, m4), lo_b = _mm512_and_si512(qb, m4);
        const __m512i hi_a = _mm512_and_si512(_mm512_srli_epi16(qa, 4), m4);
        const __m512i hi_b = _mm512_and_si512(_mm512_srli_epi16(qb, 4), m4);
        REALM__UNROLL(8)
        for (int e = 0; e < ny; e++) {
            const realm_block_q8_K *yb = mv_tok_K(y, ys, e, b);
            const __m512i even =
                dpbusd(dpbusd(z, lo_a, load512(yb->qs)), lo_b, load512(yb->qs + 64));
            const __m512i odd =
                dpbusd(dpbusd(z, hi_a, load512(yb->qs + 128)), hi_b, load512(yb->qs + 192));
            const __m512i sumi = _mm512_dpwssd_epi32(magic, _mm512_packs_epi32(even, odd), s_pair);
            const __m512 f = _mm512_sub_ps(_mm512_castsi512_ps(sumi), _mm512_castsi512_ps(magic));
            acc[e] = _mm512_fmadd_ps(f, _mm512_mul_ps(d, _mm512_set1_ps(yb->d)), acc[e]);
            acc_min[e] =
                _mm256_fnmadd_ps(wmin, _mm256_loadu_ps((const float *)yb->bsums), acc_min[e]);
        }
    }
    REALM__UNROLL(8)
    for (int e = 0; e < ny; e++)
        s[e] = _mm512_reduce_add_ps(_mm512_add_ps(acc[e], _mm512_zextps256_ps512(acc_min[e])));
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
    [REALM_TYPE_Q4_K] = {.prep = q4_K_vnni_prep, .dot = FN(q4_K_vnni)},
    [REALM_TYPE_Q6_K] = {.dot = FN(q6_K_vnni)},
};
