/*
 * AVX-512 (F/BW/VL/DQ + VNNI) helpers shared by dot_avx512.c (vec_dot) and
 * dot_multi_avx512.c (the multi-vector kernels): loads, vpdpbusd, and the
 * K-quant sub-block scale layouts. Only for files compiled with the
 * AVX-512 flags.
 */
#ifndef REALM_SIMD_X86_512_H
#define REALM_SIMD_X86_512_H

#include <immintrin.h>

#include "kernels_internal.h"
#include "simd_x86.h"

static inline __m512i load512(const void *p)
{
    return _mm512_loadu_si512(p);
}

/* 32 bytes in both halves of a zmm (a pure load). */
static inline __m512i bcast256(const void *p)
{
    return _mm512_broadcast_i64x4(load256(p));
}

static inline __m512i dpbusd(__m512i acc, __m512i u, __m512i s)
{
    return _mm512_dpbusd_epi32(acc, u, s);
}

/* Two 32-byte rows side by side. */
static inline __m512i load_2x256(const void *a, const void *b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(load256(a)), load256(b), 1);
}

/*
 * The packed nibbles of two 32-element blocks (16 bytes each; byte j holds
 * elements j and j + 16) -> 64 codes in element order, block a then b.
 * The 128-bit lanes are loaded as [a a b b] and lanes 1 and 3 shifted.
 */
static inline __m512i nibbles_2x32(const uint8_t *qa, const uint8_t *qb)
{
    const __m512i v =
        _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_broadcastsi128_si256(load128(qa))),
                           _mm256_broadcastsi128_si256(load128(qb)), 1);
    return _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xff00ff00u, v, 4), _mm512_set1_epi8(0x0f));
}

/* ---- 32-element blocks: pairs of blocks per zmm --------------------------- */

/* vpermps indices for spread(): pair k takes scales 2k and 2k + 1. */
static inline void spread_indices(__m512i idx[4])
{
    for (int k = 0; k < 4; k++)
        idx[k] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(2 * k)),
                                    _mm256_set1_epi32(2 * k + 1), 1);
}

/* Lanes 0-7 get d8[2k], lanes 8-15 d8[2k + 1]. */
static inline __m512 spread(__m512i idx, __m256 d8)
{
    return _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(d8));
}

/* ---- K-quant codes ------------------------------------------------------ */

/* Q4_K: zmm j holds sub-block 2j (the low nibbles of qs[32j..32j+31]) in its
 * low half and 2j + 1 (the high nibbles) in its high half. */
static inline void q4_K_codes(const realm_block_q4_K *x, __m512i v[4])
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    REALM__UNROLL(4) /* unrolled, or v goes through the stack */
    for (int j = 0; j < 4; j++) {
        const __m512i q = bcast256(x->qs + 32 * j);
        v[j] = _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xffff0000u, q, 4), m4);
    }
}

/*
 * Q6_K: codes 0..63 of half h in v[2h] (groups 0 | 1) and v[2h + 1] (2 | 3):
 * ql[64h..64h+63] has groups 0 | 1 in its low nibbles and 2 | 3 in its high
 * nibbles, their top bits bits (0 1 | 2 3) and (4 5 | 6 7) of
 * qh[32h..32h+31].
 */
static inline void q6_K_codes(const realm_block_q6_K *x, __m512i v[4])
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    /* word shifts moving the two qh bits of a group to bits 4-5 */
    const __m512i shl01 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr23 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    REALM__UNROLL(2)
    for (int h = 0; h < 2; h++) {
        const __m512i ql = load512(x->ql + 64 * h);
        const __m512i qh = bcast256(x->qh + 32 * h);
        const __m512i h01 = _mm512_and_si512(_mm512_sllv_epi16(qh, shl01), m30);
        const __m512i h23 = _mm512_and_si512(_mm512_srlv_epi16(qh, shr23), m30);
        /* ternary logic 0xca is a ? b : c bitwise: low nibble from ql, top from qh */
        v[2 * h] = _mm512_ternarylogic_epi32(m4, ql, h01, 0xca);
        v[2 * h + 1] = _mm512_ternarylogic_epi32(m4, _mm512_srli_epi16(ql, 4), h23, 0xca);
    }
}

/* ---- K-quant sub-block scales ---------------------------------------- */

/*
 * Sub-blocks of 16 (Q2_K, Q3_K, Q6_K): the codes of a 128-element half h
 * come as two zmm, [groups 0 1] and [groups 2 3], each group 32 elements.
 * So vpdpbusd results r0 (h0, first), r1 (h0, second), r2, r3 have
 * sub-block 4 i + L in 128-bit lane L of r_i. vpackssdw(r0, r1) puts, in
 * lane L, four words of sub-block L then four of 4 + L; vpackssdw(r2, r3)
 * the same for 8 + L and 12 + L. These are the word indices vpermw uses to
 * lay the 16 int16 scales out to match.
 */
static const int16_t k16_scale_idx[2][32] = {
    {0, 0, 0, 0, 4, 4, 4, 4, 1, 1, 1, 1, 5, 5, 5, 5,
     2, 2, 2, 2, 6, 6, 6, 6, 3, 3, 3, 3, 7, 7, 7, 7},
    {8,  8,  8,  8,  12, 12, 12, 12, 9,  9,  9,  9,  13, 13, 13, 13,
     10, 10, 10, 10, 14, 14, 14, 14, 11, 11, 11, 11, 15, 15, 15, 15},
};

/* sum over the 16 sub-blocks of scale * (codes . qy) as int32 lanes. */
static inline __m512i k16_scaled_sum(const __m512i r[4], __m256i sc16, __m512i idx0, __m512i idx1)
{
    const __m512i s = _mm512_castsi256_si512(sc16);
    __m512i acc = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_packs_epi32(r[0], r[1]),
                                      _mm512_permutexvar_epi16(idx0, s));
    return _mm512_dpwssd_epi32(acc, _mm512_packs_epi32(r[2], r[3]),
                               _mm512_permutexvar_epi16(idx1, s));
}

/*
 * Sub-blocks of 32 (Q4_K, Q5_K): chunk j's zmm is [sub-block 2j | 2j+1], so
 * its vpdpbusd result has sub-block 2j in lanes 0-7 and 2j+1 in 8-15, and
 * vpackssdw(r0, r1) holds in 128-bit lane L four words of sub-block
 * (L < 2 ? 0 : 1) then four of (L < 2 ? 2 : 3); (r2, r3) likewise for 4..7.
 * vpshufb controls spreading scale bytes 0-7 of a lane to those words,
 * zero-extended; the third spreads min bytes 8-15 to [m0 m0 m1 m1 ...].
 */
static const uint8_t k32_scale_shuf[3][64] = {
#define W(i) i, 0x80, i, 0x80, i, 0x80, i, 0x80
    {W(0), W(2), W(0), W(2), W(1), W(3), W(1), W(3)},
    {W(4), W(6), W(4), W(6), W(5), W(7), W(5), W(7)},
#undef W
#define W(i) i, 0x80, i, 0x80
    {W(8), W(9), W(10), W(11), W(12), W(13), W(14), W(15), 0},
#undef W
};

/*
 * Q4_K/Q5_K: 12 bytes -> the 8 six-bit scales (bytes 0-7 of the result)
 * and the 8 mins (bytes 8-15), as k4_scales_mins (simd_x86.h). With the
 * bytes as words a, b, c: scales a & 0x3f.., (c & 0x0f..) | ((a >> 2) &
 * 0x30..), mins b & 0x3f.., ((c >> 4) & 0x0f..) | ((b >> 2) & 0x30..), all
 * four in vector lanes: half the instructions of the scalar form and its
 * inserts, which were a fifth of a one-token Q4_K block's (`realm
 * bench-kernels --types q4_k --working-set 16 -t 1`: 35-37 -> 41-42 GB/s
 * with k4_d_dmin). s is a block's `scales`: the 16 bytes read stay inside
 * the block (qs or qh follow).
 */
static inline __m128i k4_scales_mins_vec(const uint8_t *s)
{
    const __m128i x = _mm_loadu_si128((const __m128i *)s); /* a, b, c, (not used) */
    const __m128i lo = _mm_and_si128(x, _mm_set1_epi8(0x3f));
    const __m128i top = _mm_and_si128(_mm_srli_epi32(x, 2), _mm_set1_epi8(0x30));
    const __m128i cc = _mm_srlv_epi32(_mm_shuffle_epi32(x, 0xaa), _mm_setr_epi32(0, 4, 0, 0));
    const __m128i hi = _mm_or_si128(_mm_and_si128(cc, _mm_set1_epi8(0x0f)), top);
    return _mm_unpacklo_epi32(lo, hi); /* sc_lo, sc_hi, m_lo, m_hi */
}

/* sum_s m_s * (bsums[2s] + bsums[2s+1]) as int32 x 8 (to be summed). */
static inline __m256i k32_min_terms(__m128i scmin, const int16_t *bsums)
{
    const __m256i m =
        _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(scmin), load256(k32_scale_shuf[2]));
    return _mm256_madd_epi16(m, load256(bsums));
}

static inline __m512i k32_scaled_sum(const __m512i r[4], __m128i scmin, __m512i shuf0,
                                     __m512i shuf1)
{
    const __m512i s = _mm512_broadcast_i32x4(scmin);
    __m512i acc = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_packs_epi32(r[0], r[1]),
                                      _mm512_shuffle_epi8(s, shuf0));
    return _mm512_dpwssd_epi32(acc, _mm512_packs_epi32(r[2], r[3]), _mm512_shuffle_epi8(s, shuf1));
}

#endif
