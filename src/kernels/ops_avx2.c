/* realm_ops for AVX2 + FMA + F16C: 8 floats per vector. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

typedef __m256 V;
#define VW       8
#define FN(name) realm__##name##_avx2
static inline V v_zero(void)
{
    return _mm256_setzero_ps();
}
static inline V v_set1(float a)
{
    return _mm256_set1_ps(a);
}
static inline V v_load(const float *p)
{
    return _mm256_loadu_ps(p);
}
static inline void v_store(float *p, V v)
{
    _mm256_storeu_ps(p, v);
}
/* lanes [0, n) from p, the others 0; 0 < n < VW */
static inline __m256i v_part_mask(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline V v_load_part(const float *p, int n)
{
    return _mm256_maskload_ps(p, v_part_mask(n));
}
static inline void v_store_part(float *p, int n, V v)
{
    _mm256_maskstore_ps(p, v_part_mask(n), v);
}
static inline V v_load_h(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
/* lanes [0, n) from the F16 numbers at p, the others 0; 0 < n < VW (reads
 * nothing past p + n) */
static inline V v_load_h_part(const uint16_t *p, int n)
{
    uint16_t h[8] = {0};
    memcpy(h, p, (size_t)n * sizeof *h);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}
static inline void v_store_h(uint16_t *p, V v)
{
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
/* 8 signed bytes as floats */
static inline V v_load_i8(const int8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
/* one fp16 number in every lane */
static inline V v_set1_h(uint16_t h)
{
    return _mm256_set1_ps(_cvtsh_ss(h));
}
static inline V v_load_bf(const uint16_t *p)
{
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
static inline V v_add(V a, V b)
{
    return _mm256_add_ps(a, b);
}
static inline V v_sub(V a, V b)
{
    return _mm256_sub_ps(a, b);
}
static inline V v_mul(V a, V b)
{
    return _mm256_mul_ps(a, b);
}
static inline V v_div(V a, V b)
{
    return _mm256_div_ps(a, b);
}
static inline V v_fma(V a, V b, V c)
{
    return _mm256_fmadd_ps(a, b, c);
}
static inline V v_min(V a, V b)
{
    return _mm256_min_ps(a, b);
}
static inline V v_max(V a, V b)
{
    return _mm256_max_ps(a, b);
}
static inline V v_round(V a)
{
    return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* p * 2^k for integral k in [-128, 128], as two factors 2^h and 2^(k-h),
 * h = k/2, so neither exponent field over- or underflows. */
static inline V v_ldexp(V p, V k)
{
    const __m256i ki = _mm256_cvtps_epi32(k), h = _mm256_srai_epi32(ki, 1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256i e1 = _mm256_slli_epi32(_mm256_add_epi32(h, bias), 23);
    const __m256i e2 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ki, h), bias), 23);
    return _mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e1)), _mm256_castsi256_ps(e2));
}
static inline float v_hsum(V v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float v_hmax(V v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
/* lanes [0, n) of x, the others `fill` (n may be <= 0 or >= VW) */
static inline V v_keep_first(V x, int n, float fill)
{
    return _mm256_blendv_ps(_mm256_set1_ps(fill), x, _mm256_castsi256_ps(v_part_mask(n)));
}
/* r where x >= lo, else 0 */
static inline V v_zero_below(V r, V x, V lo)
{
    return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), r);
}
/* out[i] = scale * (sum of the lanes of a[i]) for i < 8: the eight sums
 * gathered by a tree of pairwise additions into one vector. */
static inline void v_hsum8_store(const V *a, float scale, float *out)
{
    const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    /* u0 = [s0 s1 s2 s3 | s0' s1' s2' s3'] (low and high 128-bit halves) */
    const __m256 lo = _mm256_permute2f128_ps(u0, u1, 0x20),
                 hi = _mm256_permute2f128_ps(u0, u1, 0x31);
    _mm256_storeu_ps(out, _mm256_mul_ps(_mm256_add_ps(lo, hi), _mm256_set1_ps(scale)));
}

/* out[i] = the largest lane of a[i] for i < 8 (not used: AVX2 reduces the
 * rows of attn_softmax_t one by one) */
static inline void v_hmax8_store(const V *a, float *out)
{
    for (int i = 0; i < 8; i++)
        out[i] = v_hmax(a[i]);
}
#define ATTN_SOFTMAX_GROUP 0

#include "ops_simd.h"
