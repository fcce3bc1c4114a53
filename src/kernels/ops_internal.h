/* Internal declarations of the element-wise and attention ops (realm_ops). */
#ifndef REALM_OPS_INTERNAL_H
#define REALM_OPS_INTERNAL_H

#include <math.h>

#include "realm/kernels.h"

#define REALM__OPS_DECL(isa)                                                                       \
    float realm__dot_f16_f32_##isa(int64_t n, const uint16_t *x, const float *y);                  \
    void realm__axpy_f16_##isa(int64_t n, float a, const uint16_t *x, float *y);                   \
    void realm__scale_f32_##isa(int64_t n, float a, float *y);                                     \
    void realm__fp32_to_fp16_##isa(const float *x, uint16_t *y, int64_t n);                        \
    void realm__rmsnorm_##isa(float *out, const float *x, const float *w, int64_t n, float eps);   \
    void realm__silu_mul_##isa(int64_t n, float *g, const float *u);                               \
    void realm__exp_f32_##isa(int64_t n, const float *x, float *y);                                \
    void realm__attn_f16_##isa(int64_t d, int nq, const float *q, int cnt, const uint16_t *k,      \
                               int64_t k_ld, const uint16_t *v, int64_t ld, float scale, float *m, \
                               float *l, float *acc, float *s);                                    \
    void realm__attn_q8_0_##isa(int64_t d, int nq, const float *q, int cnt, const void *k,         \
                                size_t k_stride, const void *v, size_t v_stride, float scale,      \
                                float *m, float *l, float *acc, float *s);                         \
    void realm__attn_f16_q8_0_##isa(int64_t d, int nq, const float *q, int cnt, const void *k,     \
                                    size_t k_stride, const void *v, size_t v_stride, float scale,  \
                                    float *m, float *l, float *acc, float *s);                     \
    void realm__attn_q8_0_f16_##isa(int64_t d, int nq, const float *q, int cnt, const void *k,     \
                                    size_t k_stride, const void *v, size_t v_stride, float scale,  \
                                    float *m, float *l, float *acc, float *s);                     \
    void realm__attn_tile_##isa(realm_type tk, realm_type tv, int64_t d, int nq, int nt,           \
                                const float *q, int64_t ldq, int cnt, const int32_t *lim,          \
                                const void *k, size_t k_stride, const void *v, size_t v_stride,    \
                                float scale, float *state, int64_t ld_state, float *s);            \
    void realm__lora_shrink_##isa(realm_type at, int64_t n, const void *a, int n_rows,             \
                                  const int32_t *rows, const float *x, int64_t ldx, float *out,    \
                                  int64_t ld_out);                                                 \
    void realm__lora_expand_##isa(realm_type bt_type, int64_t rank, const void *bt, int64_t ldb,   \
                                  int64_t o0, int64_t o1, int n_rows, const int32_t *rows,         \
                                  const float *t, int64_t ldt, const float *scale, float wscale,   \
                                  float *y, int64_t ldy);

REALM__OPS_DECL(ref)
REALM__OPS_DECL(avx2)
REALM__OPS_DECL(avx512)

/* Range of the exponential: below EXP_LO (ln FLT_MIN) e^x is 0 (no
 * subnormals), above EXP_HI it is e^EXP_HI (finite). */
#define REALM__EXP_LO -87.3365447505531f
#define REALM__EXP_HI 88.3762626647949f

/*
 * e^x the way every ISA's exp_f32 computes it, one lane at a time (the
 * reference, and the SIMD kernels' tails): x = k ln2 + r with k the nearest
 * integer to x / ln2 and ln2 split in two (Cody-Waite) so r is exact,
 * |r| <= ln2/2; e^r by a degree-6 polynomial (Cephes' coefficients) in
 * fused multiply-adds; then 2^k scaled in exactly. Within 2 ulp of e^x over
 * [EXP_LO, EXP_HI].
 */
static inline float realm__exp_poly(float x)
{
    if (x != x)
        return x;
    if (x < REALM__EXP_LO)
        return 0.0f;
    x = x > REALM__EXP_HI ? REALM__EXP_HI : x;
    const float k = nearbyintf(x * 1.44269504088896341f);
    float r = fmaf(k, -0.693359375f, x);
    r = fmaf(k, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r + 1.0f);
    return ldexpf(p, (int)k);
}

#endif
