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
static inline V v_load_h(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline void v_store_h(uint16_t *p, V v)
{
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
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

#include "ops_simd.h"
