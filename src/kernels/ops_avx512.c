/* realm_ops for AVX-512: 16 floats per vector. */
#include <immintrin.h>
#include <stdbool.h>
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
/* lanes [0, n) from the F16 numbers at p, the others 0; 0 < n < VW (reads
 * nothing past p + n) */
static inline V v_load_h_part(const uint16_t *p, int n)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((__mmask16)((1u << n) - 1), p));
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
static inline float v_hmax(V v)
{
    return _mm512_reduce_max_ps(v);
}
/* lanes [0, n) of x, the others `fill` (n may be <= 0 or >= VW) */
static inline V v_keep_first(V x, int n, float fill)
{
    const __mmask16 m = n >= VW ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
    return _mm512_mask_blend_ps(m, _mm512_set1_ps(fill), x);
}
/* r where x >= lo, else 0 */
static inline V v_zero_below(V r, V x, V lo)
{
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ), r);
}
/* a + b, or max(a, b) (a constant argument: the branch folds) */
static inline __attribute__((always_inline)) V v_tree_op(const bool max, V a, V b)
{
    return max ? _mm512_max_ps(a, b) : _mm512_add_ps(a, b);
}
static inline __attribute__((always_inline)) V v_fold_pair(const bool max, V a, V b)
{
    return v_tree_op(max, _mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
}
/*
 * Lanes 0-7: the sum (max: the largest) of the lanes of a[i], i < 8, by a
 * tree of whole zmm (no loop or array, so that a stays in registers): pairs
 * of vectors folded to 256 bits side by side, then to 128, then the four
 * lanes of each 128-bit piece.
 */
static inline __attribute__((always_inline)) __m256 v_tree8(const bool max, const V *a)
{
    const V x01 = v_fold_pair(max, a[0], a[1]), x23 = v_fold_pair(max, a[2], a[3]);
    const V x45 = v_fold_pair(max, a[4], a[5]), x67 = v_fold_pair(max, a[6], a[7]);
    /* 128-bit piece r of y0 holds row r's four partial sums, of y1 row 4 + r */
    const V y0 =
        v_tree_op(max, _mm512_shuffle_f32x4(x01, x23, 0x88), _mm512_shuffle_f32x4(x01, x23, 0xdd));
    const V y1 =
        v_tree_op(max, _mm512_shuffle_f32x4(x45, x67, 0x88), _mm512_shuffle_f32x4(x45, x67, 0xdd));
    const V u = v_tree_op(max, _mm512_unpacklo_ps(y0, y1), _mm512_unpackhi_ps(y0, y1));
    const V w = v_tree_op(max, u, _mm512_permute_ps(u, 0x4e)); /* [r, 4 + r, ..] per piece */
    return _mm512_castps512_ps256(_mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0), w));
}
/* out[i] = scale * (sum of the lanes of a[i]) for i < 8 */
static inline __attribute__((always_inline)) void v_hsum8_store(const V *a, float scale, float *out)
{
    _mm256_storeu_ps(out, _mm256_mul_ps(v_tree8(false, a), _mm256_set1_ps(scale)));
}
/* out[i] = the largest lane of a[i] for i < 8 */
static inline __attribute__((always_inline)) void v_hmax8_store(const V *a, float *out)
{
    _mm256_storeu_ps(out, v_tree8(true, a));
}
/* Rows of attn_softmax_t reduced 8 at a time (v_hmax8_store, v_hsum8_store). */
#define ATTN_SOFTMAX_GROUP 8

#include "ops_simd.h"
