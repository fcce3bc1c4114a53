/* realm_ops for AVX-512: 16 floats per vector. */
#include <immintrin.h>
#include <stdint.h>

typedef __m512 V;
#define VW       16
#define FN(name) realm__##name##_avx512
static inline V v_zero(void)
{
    return _mm512_setzero_ps();
}
static inline V v_set1(float a)
{
    return _mm512_set1_ps(a);
}
static inline V v_load(const float *p)
{
    return _mm512_loadu_ps(p);
}
static inline void v_store(float *p, V v)
{
    _mm512_storeu_ps(p, v);
}
/* lanes [0, n) from p, the others 0; 0 < n < VW */
static inline V v_load_part(const float *p, int n)
{
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
}
static inline void v_store_part(float *p, int n, V v)
{
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), v);
}
static inline V v_load_h(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline void v_store_h(uint16_t *p, V v)
{
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
/* 16 signed bytes as floats */
static inline V v_load_i8(const int8_t *p)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
/* one fp16 number in every lane */
static inline V v_set1_h(uint16_t h)
{
    return _mm512_set1_ps(_cvtsh_ss(h));
}
static inline V v_load_bf(const uint16_t *p)
{
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
static inline V v_add(V a, V b)
{
    return _mm512_add_ps(a, b);
}
static inline V v_sub(V a, V b)
{
    return _mm512_sub_ps(a, b);
}
static inline V v_mul(V a, V b)
{
    return _mm512_mul_ps(a, b);
}
static inline V v_div(V a, V b)
{
    return _mm512_div_ps(a, b);
}
static inline V v_fma(V a, V b, V c)
{
    return _mm512_fmadd_ps(a, b, c);
}
static inline V v_min(V a, V b)
{
    return _mm512_min_ps(a, b);
}
static inline V v_max(V a, V b)
{
    return _mm512_max_ps(a, b);
}
static inline V v_round(V a)
{
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static inline V v_ldexp(V p, V k)
{
    return _mm512_scalef_ps(p, k);
}
static inline float v_hsum(V v)
{
    return _mm512_reduce_add_ps(v);
}
/* r where x >= lo, else 0 */
static inline V v_zero_below(V r, V x, V lo)
{
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ), r);
}
/* out[i] = scale * (sum of the lanes of a[i]) for i < 8: each vector folded
 * to 256 bits, then the eight sums gathered by pairwise additions. Written
 * out, no loop or array, so that a stays in registers: a loop here made GCC
 * keep the caller's accumulators on the stack. */
static inline __m256 v_fold256(V v)
{
    return _mm256_add_ps(_mm512_castps512_ps256(v),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
static inline __attribute__((always_inline)) void v_hsum8_store(const V *a, float scale, float *out)
{
    const __m256 t0 = _mm256_hadd_ps(v_fold256(a[0]), v_fold256(a[1]));
    const __m256 t1 = _mm256_hadd_ps(v_fold256(a[2]), v_fold256(a[3]));
    const __m256 t2 = _mm256_hadd_ps(v_fold256(a[4]), v_fold256(a[5]));
    const __m256 t3 = _mm256_hadd_ps(v_fold256(a[6]), v_fold256(a[7]));
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    const __m256 lo = _mm256_permute2f128_ps(u0, u1, 0x20),
                 hi = _mm256_permute2f128_ps(u0, u1, 0x31);
    _mm256_storeu_ps(out, _mm256_mul_ps(_mm256_add_ps(lo, hi), _mm256_set1_ps(scale)));
}

#include "ops_simd.h"
