/*
 * Helpers shared by the x86 SIMD kernel files (dot_avx2.c, dot_avx512.c,
 * dot_multi_simd.h). Everything here needs at most AVX2 + FMA + F16C, which
 * they are all compiled for; include it from nowhere else.
 */
#ifndef REALM_SIMD_X86_H
#define REALM_SIMD_X86_H

#include <immintrin.h>
#include <string.h>

#include "realm/quant.h"

static inline __m256i load256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

static inline __m128i load128(const void *p)
{
    return _mm_loadu_si128((const __m128i *)p);
}

static inline float h2f(uint16_t h)
{
    return _cvtsh_ss(h);
}

static inline float hsum_f32x4(__m128 s)
{
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hsum_f32x8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* A 16-bit load kept in a scalar register: the empty asm stops GCC's SLP
 * vectorizer from assembling halves8 with a long chain of shuffles, which
 * measured slower than the scalar shifts and ors. */
static inline uint64_t ld16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    uint64_t v = h;
    __asm__("" : "+r"(v));
    return v;
}

/*
 * The fp16 scales at p, p + s, ..., p + 7 s (one per block of a row, s the
 * block size) as 8 floats; those at i >= count are 0. One conversion per 8
 * blocks instead of one per block.
 */
static inline __m256 halves8(const uint8_t *p, size_t s, int count)
{
    uint64_t lo, hi;
    if (count == 8) {
        lo = ld16(p) | ld16(p + s) << 16 | ld16(p + 2 * s) << 32 | ld16(p + 3 * s) << 48;
        hi =
            ld16(p + 4 * s) | ld16(p + 5 * s) << 16 | ld16(p + 6 * s) << 32 | ld16(p + 7 * s) << 48;
    } else {
        lo = hi = 0;
        for (int i = 0; i < count; i++) {
            if (i < 4)
                lo |= ld16(p + i * s) << (16 * i);
            else
                hi |= ld16(p + i * s) << (16 * (i - 4));
        }
    }
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)hi, (long long)lo));
}

/* Q3_K's 16 scales minus 32 as int8, in sub-block order (see q3_K_scale in
 * dot_ref.c), unpacked four at a time in 32-bit words. */
static inline __m128i q3_K_scales(const uint8_t *s)
{
    uint32_t a0, a1, t;
    memcpy(&a0, s, 4);
    memcpy(&a1, s + 4, 4);
    memcpy(&t, s + 8, 4);
    const uint32_t k4 = 0x0f0f0f0f, k2 = 0x03030303;
    const uint32_t w0 = (a0 & k4) | (t & k2) << 4;
    const uint32_t w1 = (a1 & k4) | ((t >> 2) & k2) << 4;
    const uint32_t w2 = ((a0 >> 4) & k4) | ((t >> 4) & k2) << 4;
    const uint32_t w3 = ((a1 >> 4) & k4) | ((t >> 6) & k2) << 4;
    return _mm_sub_epi8(_mm_setr_epi32((int)w0, (int)w1, (int)w2, (int)w3), _mm_set1_epi8(32));
}

/*
 * Q4_K/Q5_K: 12 bytes -> the 8 six-bit scales (bytes 0-7 of the result)
 * and the 8 mins (bytes 8-15); see k4_scale_min in dot_ref.c. (The AVX-512
 * kernels use k4_scales_mins_vec, simd_x86_512.h; in the AVX2 kernels this
 * scalar form measured 2-4% faster.)
 */
static inline __m128i k4_scales_mins(const uint8_t *s)
{
    uint32_t a, b, c;
    memcpy(&a, s, 4);
    memcpy(&b, s + 4, 4);
    memcpy(&c, s + 8, 4);
    const uint32_t k6 = 0x3f3f3f3f, k4 = 0x0f0f0f0f, k2 = 0x30303030;
    const uint32_t sc_lo = a & k6;
    const uint32_t sc_hi = (c & k4) | ((a >> 2) & k2);
    const uint32_t m_lo = b & k6;
    const uint32_t m_hi = ((c >> 4) & k4) | ((b >> 2) & k2);
    return _mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)m_lo, (int)m_hi);
}

/* Q4_K/Q5_K: dy * d and dy * dmin in lanes 0 and 1, from a block's d and the
 * dmin after it, converted together (the same products as dy * h2f(d)). */
static inline __m128 k4_d_dmin(const uint16_t *d, float dy)
{
    uint32_t both;
    memcpy(&both, d, 4);
    return _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)both)), _mm_set1_ps(dy));
}

/* Q4_K/Q5_K: k4_scales_mins' 8 mins as int16 (one 128-bit lane). */
static inline __m128i k4_mins16(__m128i scmin)
{
    return _mm_cvtepu8_epi16(_mm_unpackhi_epi64(scmin, scmin));
}

/* sum_s m_s * (bsums[2s] + bsums[2s+1]) as int32 x 4 (to be summed). */
static inline __m128i k4_min_terms(__m128i scmin, const int16_t *bsums)
{
    const __m128i pairs = _mm_hadd_epi16(load128(bsums), load128(bsums + 8));
    return _mm_madd_epi16(k4_mins16(scmin), pairs);
}

/* vpshufb control broadcasting int16 word a into the low 128-bit lane and
 * word b into the high one (words of a vector replicated in both lanes). */
static inline __m256i word_pair(int a, int b)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 + 0x0202 * b)),
                            _mm_set1_epi16((short)(0x0100 + 0x0202 * a)));
}

/* vpshufb control giving each 128-bit lane four copies of one int16 word
 * then four of another: words a, b in the low lane, c, d in the high one. */
static inline __m256i word_quads(int a, int b, int c, int d)
{
    const int64_t wa = 0x0100010001000100ll + 0x0202020202020202ll * a;
    const int64_t wb = 0x0100010001000100ll + 0x0202020202020202ll * b;
    const int64_t wc = 0x0100010001000100ll + 0x0202020202020202ll * c;
    const int64_t wd = 0x0100010001000100ll + 0x0202020202020202ll * d;
    return _mm256_setr_epi64x(wa, wb, wc, wd);
}

/*
 * 16 scales as int16 in a ymm [s0..s7 | s8..s15] -> for half h the vector
 * with s8h..s8h+7 in both lanes, from which word_pair() picks the two
 * sub-blocks of 16 that one 32-byte group of codes covers.
 */
static inline __m256i scales_half(__m256i s16, int h)
{
    return h == 0 ? _mm256_permute2x128_si256(s16, s16, 0x00)
                  : _mm256_permute2x128_si256(s16, s16, 0x11);
}

/* IQ4_XS: the 8 six-bit scales minus 32 as int32 (low 4 bits from the
 * nibbles of scales_l, high 2 from scales_h, both in sub-block order). */
static inline __m256i iq4_xs_scales32(const realm_block_iq4_xs *x)
{
    uint32_t l;
    memcpy(&l, x->scales_l, 4);
    const __m256i lo = _mm256_srlv_epi32(_mm256_set1_epi32((int)l),
                                         _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    const __m256i hi = _mm256_srlv_epi32(_mm256_set1_epi32(x->scales_h),
                                         _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
    const __m256i s =
        _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi32(0x0f)),
                        _mm256_slli_epi32(_mm256_and_si256(hi, _mm256_set1_epi32(3)), 4));
    return _mm256_sub_epi32(s, _mm256_set1_epi32(32));
}

#endif
