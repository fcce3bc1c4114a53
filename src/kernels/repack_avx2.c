/*
 * AVX2 (+ FMA + F16C) kernels of the packed product (repack_internal.h);
 * nothing here runs unless cpu.c found those features.
 *
 * A ymm holds half a panel (8 rows, one dword each), so each call runs the
 * two halves in turn, and the tokens in groups of up to NR2 (16 ymm
 * registers hold three accumulators per token and the temporaries). There
 * is no vpdpbusd: vpmaddubsw multiplies a dword of codes (u8) with the
 * token's 4 activations (s8, broadcast) into two int16 pair sums per row,
 * which add up in int16 over a few dwords without overflowing (the bounds
 * at each kernel), then vpmaddwd weights them by the sub-block's scale
 * (two equal words per row) into int32. The integer sums of a block are
 * exact; one conversion per block and token, times d, then the token's d.
 *
 * Q4_K only: a Q6_K kernel built the same way (two dwords' pair sums per
 * vpmaddwd, codes from ql and qh at five operations per vector) measured
 * 0.85 ms against the row-major kernels' 0.63-0.67 for 5 tokens over a
 * 2048 x 5632 matrix in L3 (one thread) and 9.0 against 6.6 for 64, so
 * Q6_K matrices stay row-major on AVX2 (realm_repack_fast).
 */
#include "kernels_internal.h"
#include "repack_internal.h"
#include "simd_x86.h"

#define NR2 4

#define INLINE static inline __attribute__((always_inline))

/* Same distance as the AVX-512 kernels (repack_avx512.c). */
#define PANEL_PREFETCH 8192

/* The 4 bytes at p in every dword. */
static inline __m256i bcast32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* 8 unsigned bytes (one per row) as (b, b) int16 word pairs per dword. */
static inline __m256i u8_pairs(const uint8_t *p)
{
    const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    return _mm256_or_si256(v, _mm256_slli_epi32(v, 16));
}

/* Lanes of mask (bits 8h..8h+7 of the panel's) as a maskstore mask. */
static inline __m256i lane_mask(uint16_t mask, int h)
{
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i m = _mm256_set1_epi32((mask >> (8 * h)) & 0xff);
    return _mm256_cmpeq_epi32(_mm256_and_si256(m, bit), bit);
}

static inline void store_rows(float *o, __m256i m, __m256 acc, bool add)
{
    if (add)
        acc = _mm256_add_ps(_mm256_maskload_ps(o, m), acc);
    _mm256_maskstore_ps(o, m, acc);
}

/*
 * Q4_K, rows 8h..8h+7, tokens 0..nt-1. Per sub-block, the eight dwords'
 * pair sums add in int16: |8 * 2 * 15 * 128| = 30720 < 2^15; times the
 * scale (< 64) and over 8 sub-blocks the int32 sum stays below 2^25.
 */
INLINE void q4_K_half(const realm__q4_K_x16 *P, int64_t nb, const realm_block_q8_K *const *y,
                      float *out, int64_t ld, uint16_t mask, bool add, int h, const int nt)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[NR2];
    REALM__UNROLL(4)
    for (int j = 0; j < nt; j++)
        acc[j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const realm__q4_K_x16 *p = &P[b];
        if (h == 0) {
            REALM__UNROLL(1)
            for (size_t l = 0; l < sizeof *p; l += 64)
                _mm_prefetch((const char *)p + PANEL_PREFETCH + l, _MM_HINT_T0);
        }
        __m256i isum[NR2];
        REALM__UNROLL(4)
        for (int j = 0; j < nt; j++)
            isum[j] = _mm256_setzero_si256();
        for (int s = 0; s < 8; s++) {
            __m256i s16[NR2];
            REALM__UNROLL(4)
            for (int j = 0; j < nt; j++)
                s16[j] = _mm256_setzero_si256();
            REALM__UNROLL(8)
            for (int i = 0; i < 8; i++) {
                const __m256i q = load256(p->qs[8 * (s / 2) + i] + 32 * h);
                const __m256i w =
                    s % 2 ? _mm256_and_si256(_mm256_srli_epi16(q, 4), m4) : _mm256_and_si256(q, m4);
                REALM__UNROLL(4)
                for (int j = 0; j < nt; j++)
                    s16[j] = _mm256_add_epi16(
                        s16[j], _mm256_maddubs_epi16(w, bcast32(y[j][b].qs + 32 * s + 4 * i)));
            }
            const __m256i sc = u8_pairs(p->sc[s] + 8 * h);
            REALM__UNROLL(4)
            for (int j = 0; j < nt; j++)
                isum[j] = _mm256_add_epi32(isum[j], _mm256_madd_epi16(s16[j], sc));
        }
        __m256i msum[NR2];
        REALM__UNROLL(4)
        for (int j = 0; j < nt; j++)
            msum[j] = _mm256_setzero_si256();
        REALM__UNROLL(8)
        for (int s = 0; s < 8; s++) {
            const __m256i mn = u8_pairs(p->mn[s] + 8 * h);
            REALM__UNROLL(4)
            for (int j = 0; j < nt; j++)
                msum[j] = _mm256_add_epi32(msum[j],
                                           _mm256_madd_epi16(mn, bcast32(y[j][b].bsums + 2 * s)));
        }
        const __m256 d = _mm256_cvtph_ps(load128(p->d + 8 * h));
        const __m256 dmin = _mm256_cvtph_ps(load128(p->dmin + 8 * h));
        REALM__UNROLL(4)
        for (int j = 0; j < nt; j++) {
            const __m256 fs = _mm256_fmsub_ps(_mm256_cvtepi32_ps(isum[j]), d,
                                              _mm256_mul_ps(_mm256_cvtepi32_ps(msum[j]), dmin));
            acc[j] = _mm256_fmadd_ps(fs, _mm256_set1_ps(y[j][b].d), acc[j]);
        }
    }
    const __m256i m = lane_mask(mask, h);
    REALM__UNROLL(4)
    for (int j = 0; j < nt; j++)
        store_rows(out + j * ld + 8 * h, m, acc[j], add);
}

/* The two halves of the panel, the tokens in groups of up to NR2. */
#define PANEL_FN(name, block, half)                                                                \
    static void panel_##name(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride,     \
                             const int32_t *ys, int nt, float *out, int64_t ld, uint16_t mask,     \
                             bool add)                                                             \
    {                                                                                              \
        (void)ys;                                                                                  \
        const block *P = panel;                                                                    \
        for (int e = 0; e < nt; e += NR2) {                                                        \
            const realm_block_q8_K *y[NR2];                                                        \
            const int n = nt - e < NR2 ? nt - e : NR2;                                             \
            for (int j = 0; j < n; j++)                                                            \
                y[j] = (const realm_block_q8_K *)(x + (size_t)(e + j) * x_stride);                 \
            for (int h = 0; h < 2; h++) {                                                          \
                if (!((mask >> (8 * h)) & 0xff))                                                   \
                    continue;                                                                      \
                float *o = out + e * ld;                                                           \
                switch (n) {                                                                       \
                case 4:                                                                            \
                    half(P, nb, y, o, ld, mask, add, h, 4);                                        \
                    break;                                                                         \
                case 3:                                                                            \
                    half(P, nb, y, o, ld, mask, add, h, 3);                                        \
                    break;                                                                         \
                case 2:                                                                            \
                    half(P, nb, y, o, ld, mask, add, h, 2);                                        \
                    break;                                                                         \
                default:                                                                           \
                    half(P, nb, y, o, ld, mask, add, h, 1);                                        \
                    break;                                                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

PANEL_FN(q4_K, realm__q4_K_x16, q4_K_half)

const realm__panel_fn realm__panel_avx2[REALM_TYPE_COUNT] = {
    [REALM_TYPE_Q4_K] = panel_q4_K,
};
