/*
 * AVX-512 (F/BW/VL/DQ + VNNI) kernels of the packed product
 * (repack_internal.h); nothing here runs unless cpu.c found those features.
 */
#include "repack_internal.h"
#include "simd_x86_512.h"
#include "simd_x86_512_bcast.h"

#define NR REALM__PANEL_NR
/* Bytes ahead of the block being multiplied that each block hints into L1
 * (about three blocks; panels follow each other, so the hints run on into
 * the next one). See bench/README for the measurements. */
#define PANEL_PREFETCH 8192

/* out[j * ld + the lanes of mask] (+)= acc[j] for the nt tokens. */
static inline __attribute__((always_inline)) void
store_tokens(float *out, int64_t ld, uint16_t mask, bool add, const __m512 *acc, const int nt)
{
    REALM__UNROLL(8)
    for (int j = 0; j < nt; j++) {
        float *o = out + j * ld;
        const __m512 v = add ? _mm512_add_ps(_mm512_maskz_loadu_ps(mask, o), acc[j]) : acc[j];
        _mm512_mask_storeu_ps(o, mask, v);
    }
}

/*
 * Q4_K: per block, for each sub-block s, eight vpdpbusd per token (a
 * dword of 16 rows' codes against the token's 4 matching activations,
 * broadcast) into one int32 per row, then times d * scale (16 rows' floats,
 * made once per block for all tokens); the mins as eight vpdpwssd of
 * (min, min) word pairs with the pairs of bsums; then times the token's d.
 * Each codes vector is loaded and unpacked once per call for up to 8
 * tokens. nt is a constant in each inlined copy (PANEL_FN below), so the
 * 24 accumulators live in registers. Q5_K (five) adds each code's fifth bit
 * from qh: a byte test and a masked add of 16 per codes vector.
 */
static inline __attribute__((always_inline)) void k4_panel(const void *panel, int64_t nb,
                                                           const uint8_t *x, size_t x_stride,
                                                           float *out, int64_t ld, uint16_t mask,
                                                           bool add, const bool five, const int nt)
{
    const size_t block = five ? sizeof(realm__q5_K_x16) : sizeof(realm__q4_K_x16);
    const __m512i m4 = _mm512_set1_epi8(0x0f), b4 = _mm512_set1_epi8(0x10);
    const realm_block_q8_K *y[NR];
    __m512 acc[NR];
    REALM__UNROLL(8)
    for (int j = 0; j < nt; j++) {
        y[j] = (const realm_block_q8_K *)(x + (size_t)j * x_stride);
        acc[j] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const realm__q4_K_x16 *p =
            (const realm__q4_K_x16 *)((const uint8_t *)panel + (size_t)b * block);
        const uint8_t(*qh)[64] = ((const realm__q5_K_x16 *)p)->qh; /* five only */
        REALM__UNROLL(1)
        for (size_t l = 0; l < block; l += 64)
            _mm_prefetch((const char *)p + PANEL_PREFETCH + l, _MM_HINT_T0);
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p->d));
        __m512 fs[NR];
        REALM__UNROLL(8)
        for (int j = 0; j < nt; j++)
            fs[j] = _mm512_setzero_ps();
        for (int s = 0; s < 8; s++) {
            __m512i is[NR];
            REALM__UNROLL(8)
            for (int j = 0; j < nt; j++)
                is[j] = _mm512_setzero_si512();
            const __m512i hbit = _mm512_set1_epi8((char)(1 << s));
            REALM__UNROLL(8)
            for (int i = 0; i < 8; i++) {
                const __m512i q = load512(p->qs[8 * (s / 2) + i]);
                __m512i w =
                    s % 2 ? _mm512_and_si512(_mm512_srli_epi16(q, 4), m4) : _mm512_and_si512(q, m4);
                if (five)
                    w = _mm512_mask_add_epi8(w, _mm512_test_epi8_mask(load512(qh[i]), hbit), w, b4);
                REALM__UNROLL(8)
                for (int j = 0; j < nt; j++)
                    is[j] = dpbusd_bcast(is[j], w, y[j][b].qs + 32 * s + 4 * i);
            }
            const __m512 a = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                                               _mm_loadu_si128((const __m128i *)p->sc[s]))),
                                           d);
            REALM__UNROLL(8)
            for (int j = 0; j < nt; j++)
                fs[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[j]), a, fs[j]);
        }
        __m512i ms[NR];
        REALM__UNROLL(8)
        for (int j = 0; j < nt; j++)
            ms[j] = _mm512_setzero_si512();
        REALM__UNROLL(8)
        for (int s = 0; s < 8; s++) {
            const __m512i m = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p->mn[s]));
            const __m512i pair = _mm512_or_si512(m, _mm512_slli_epi32(m, 16));
            REALM__UNROLL(8)
            for (int j = 0; j < nt; j++)
                ms[j] = dpwssd_bcast(ms[j], pair, y[j][b].bsums + 2 * s);
        }
        const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p->dmin));
        REALM__UNROLL(8)
        for (int j = 0; j < nt; j++) {
            fs[j] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms[j]), dmin, fs[j]);
            acc[j] = _mm512_fmadd_ps(fs[j], _mm512_set1_ps(y[j][b].d), acc[j]);
        }
    }
    store_tokens(out, ld, mask, add, acc, nt);
}

/* Q4_K and Q5_K: k4_panel with five fixed. */
static inline __attribute__((always_inline)) void
q4_K_panel(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride, const int32_t *ys,
           float *out, int64_t ld, uint16_t mask, bool add, const int nt)
{
    (void)ys;
    k4_panel(panel, nb, x, x_stride, out, ld, mask, add, false, nt);
}

static inline __attribute__((always_inline)) void
q5_K_panel(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride, const int32_t *ys,
           float *out, int64_t ld, uint16_t mask, bool add, const int nt)
{
    (void)ys;
    k4_panel(panel, nb, x, x_stride, out, ld, mask, add, true, nt);
}

/*
 * Q6_K: codes 0..63 = the ql nibble | the qh pair << 4, from one dword of ql
 * and one of qh per 4 columns (shifts of 16-bit lanes, then byte masks drop
 * what crossed a byte); per sub-block of 16, four vpdpbusd per token and
 * the float scale d * sc; the offset 32 as eight vpdpwssd of the scale
 * pairs (sc[2t], sc[2t + 1]) with the pairs of bsums, once per block.
 */
static inline __attribute__((always_inline)) void
q6_K_panel(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride, const int32_t *ys,
           float *out, int64_t ld, uint16_t mask, bool add, const int nt)
{
    (void)ys;
    const realm__q6_K_x16 *P = panel;
    const __m512i m0f = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const realm_block_q8_K *y[NR];
    __m512 acc[NR];
    REALM__UNROLL(8)
    for (int j = 0; j < nt; j++) {
        y[j] = (const realm_block_q8_K *)(x + (size_t)j * x_stride);
        acc[j] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const realm__q6_K_x16 *p = &P[b];
        REALM__UNROLL(1)
        for (size_t l = 0; l < sizeof *p; l += 64)
            _mm_prefetch((const char *)p + PANEL_PREFETCH + l, _MM_HINT_T0);
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p->d));
        __m512 fs[NR];
        REALM__UNROLL(8)
        for (int j = 0; j < nt; j++)
            fs[j] = _mm512_setzero_ps();
        REALM__UNROLL(16) /* constant shifts and offsets */
        for (int s = 0; s < 16; s++) {
            const int h = s / 8, g = s % 8 / 2;
            __m512i is[NR];
            REALM__UNROLL(8)
            for (int j = 0; j < nt; j++)
                is[j] = _mm512_setzero_si512();
            REALM__UNROLL(4)
            for (int i = 4 * (s % 2); i < 4 * (s % 2) + 4; i++) {
                const __m512i ql = load512(p->ql[16 * h + 8 * (g % 2) + i]);
                const __m512i qh = load512(p->qh[8 * h + i]);
                const __m512i lo = g / 2 ? _mm512_srli_epi16(ql, 4) : ql;
                const __m512i hi = g == 0   ? _mm512_slli_epi16(qh, 4)
                                   : g == 1 ? _mm512_slli_epi16(qh, 2)
                                   : g == 2 ? qh
                                            : _mm512_srli_epi16(qh, 2);
                /* (lo & 0x0f) | (hi & 0x30) */
                const __m512i w =
                    _mm512_ternarylogic_epi32(_mm512_and_si512(lo, m0f), hi, m30, 0xf8);
                REALM__UNROLL(8)
                for (int j = 0; j < nt; j++)
                    is[j] = dpbusd_bcast(is[j], w, y[j][b].qs + 128 * h + 32 * g + 4 * i);
            }
            const __m512 a = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                               _mm_loadu_si128((const __m128i *)p->sc[s]))),
                                           d);
            REALM__UNROLL(8)
            for (int j = 0; j < nt; j++)
                fs[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[j]), a, fs[j]);
        }
        __m512i ms[NR];
        REALM__UNROLL(8)
        for (int j = 0; j < nt; j++)
            ms[j] = _mm512_setzero_si512();
        REALM__UNROLL(8)
        for (int t = 0; t < 8; t++) {
            const __m512i s0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p->sc[2 * t]));
            const __m512i s1 =
                _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p->sc[2 * t + 1]));
            /* words (sc[2t], sc[2t + 1]) in each row's lane */
            const __m512i pair =
                _mm512_mask_blend_epi16(0xaaaaaaaau, s0, _mm512_slli_epi32(s1, 16));
            REALM__UNROLL(8)
            for (int j = 0; j < nt; j++)
                ms[j] = dpwssd_bcast(ms[j], pair, y[j][b].bsums + 2 * t);
        }
        const __m512 d32 = _mm512_mul_ps(d, _mm512_set1_ps(32.0f));
        REALM__UNROLL(8)
        for (int j = 0; j < nt; j++) {
            fs[j] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms[j]), d32, fs[j]);
            acc[j] = _mm512_fmadd_ps(fs[j], _mm512_set1_ps(y[j][b].d), acc[j]);
        }
    }
    store_tokens(out, ld, mask, add, acc, nt);
}

/*
 * Q8_0 and Q4_0 (nib): per block and token, eight vpdpbusd of the codes
 * (Q8_0's + 128; Q4_0's nibbles, the block's elements 4i.. low and 16 + 4i..
 * high, standing for q + 8) against the token's broadcast codes, starting
 * from minus the offset times the block's sum of codes (ys), converted
 * and times d * dy (16 rows' d, the token's dy).
 */
static inline __attribute__((always_inline)) void
b32_panel(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride, const int32_t *ys,
          float *out, int64_t ld, uint16_t mask, bool add, const bool nib, const int nt)
{
    const size_t unit = nib ? sizeof(realm__q4_0_x16) : sizeof(realm__q8_0_x16);
    const int32_t offset = nib ? 8 : 128;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const realm_block_q8_0 *y[NR];
    __m512 acc[NR];
    REALM__UNROLL(8)
    for (int j = 0; j < nt; j++) {
        y[j] = (const realm_block_q8_0 *)(x + (size_t)j * x_stride);
        acc[j] = _mm512_setzero_ps();
    }
    for (int64_t u = 0; u < nb; u++) {
        const uint8_t *pu = (const uint8_t *)panel + (size_t)u * unit;
        const uint8_t(*qs)[64] =
            nib ? ((const realm__q4_0_x16 *)pu)->qs : ((const realm__q8_0_x16 *)pu)->qs;
        const uint16_t(*dk)[16] =
            nib ? ((const realm__q4_0_x16 *)pu)->d : ((const realm__q8_0_x16 *)pu)->d;
        REALM__UNROLL(1)
        for (size_t l = 0; l < unit; l += 64)
            _mm_prefetch((const char *)pu + PANEL_PREFETCH + l, _MM_HINT_T0);
        REALM__UNROLL(2)
        for (int k = 0; k < 2; k++) {
            __m512i is[NR];
            REALM__UNROLL(8)
            for (int j = 0; j < nt; j++)
                is[j] = _mm512_set1_epi32(-offset * ys[(size_t)j * 2 * nb + 2 * u + k]);
            /* slot i: the codes of the block's elements 4i..4i+3 (Q4_0's
             * low nibbles of dword i, then the high ones of dword i - 4) */
            REALM__UNROLL(8)
            for (int i = 0; i < 8; i++) {
                const __m512i w =
                    !nib ? load512(qs[8 * k + i])
                    : i < 4
                        ? _mm512_and_si512(load512(qs[4 * k + i]), m4)
                        : _mm512_and_si512(_mm512_srli_epi16(load512(qs[4 * k + i - 4]), 4), m4);
                REALM__UNROLL(8)
                for (int j = 0; j < nt; j++)
                    is[j] = dpbusd_bcast(is[j], w, y[j][2 * u + k].qs + 4 * i);
            }
            const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)dk[k]));
            REALM__UNROLL(8)
            for (int j = 0; j < nt; j++)
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[j]),
                                         _mm512_mul_ps(d, _mm512_set1_ps(h2f(y[j][2 * u + k].d))),
                                         acc[j]);
        }
    }
    store_tokens(out, ld, mask, add, acc, nt);
}

static inline __attribute__((always_inline)) void
q8_0_panel(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride, const int32_t *ys,
           float *out, int64_t ld, uint16_t mask, bool add, const int nt)
{
    b32_panel(panel, nb, x, x_stride, ys, out, ld, mask, add, false, nt);
}

static inline __attribute__((always_inline)) void
q4_0_panel(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride, const int32_t *ys,
           float *out, int64_t ld, uint16_t mask, bool add, const int nt)
{
    b32_panel(panel, nb, x, x_stride, ys, out, ld, mask, add, true, nt);
}

/* The table's entry for a kernel: nt a constant in each inlined copy, so
 * the accumulators of every token count live in registers. */
/* clang-format off */
#define PANEL_FN(name)                                                                             \
    static void panel_##name(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride,     \
                             const int32_t *ys, int nt, float *out, int64_t ld, uint16_t mask,     \
                             bool add)                                                             \
    {                                                                                              \
        switch (nt) {                                                                              \
        case 8: name##_panel(panel, nb, x, x_stride, ys, out, ld, mask, add, 8); break;            \
        case 7: name##_panel(panel, nb, x, x_stride, ys, out, ld, mask, add, 7); break;            \
        case 6: name##_panel(panel, nb, x, x_stride, ys, out, ld, mask, add, 6); break;            \
        case 5: name##_panel(panel, nb, x, x_stride, ys, out, ld, mask, add, 5); break;            \
        case 4: name##_panel(panel, nb, x, x_stride, ys, out, ld, mask, add, 4); break;            \
        case 3: name##_panel(panel, nb, x, x_stride, ys, out, ld, mask, add, 3); break;            \
        case 2: name##_panel(panel, nb, x, x_stride, ys, out, ld, mask, add, 2); break;            \
        default: name##_panel(panel, nb, x, x_stride, ys, out, ld, mask, add, 1); break;           \
        }                                                                                          \
    }
/* clang-format on */

PANEL_FN(q4_K)
PANEL_FN(q5_K)
PANEL_FN(q6_K)
PANEL_FN(q8_0)
PANEL_FN(q4_0)

const realm__panel_fn realm__panel_avx512[REALM_TYPE_COUNT] = {
    [REALM_TYPE_Q4_K] = panel_q4_K, [REALM_TYPE_Q5_K] = panel_q5_K, [REALM_TYPE_Q6_K] = panel_q6_K,
    [REALM_TYPE_Q8_0] = panel_q8_0, [REALM_TYPE_Q4_0] = panel_q4_0,
};
