/*
 * The ops of ops_avx2.c and ops_avx512.c, written once over a vector
 * abstraction: each file defines V (a float vector of VW lanes) and the
 * operations below before including this file. Tails are done in scalar code
 * with the same formulas.
 */
#include <math.h>

#include "ops_internal.h"

/* e^x for a vector: realm__exp_poly (ops_internal.h) lane by lane, the same
 * operations in the same order, so every lane equals the scalar function. */
static inline V v_exp(V x)
{
    const V lo = v_set1(REALM__EXP_LO);
    const V xc = v_min(x, v_set1(REALM__EXP_HI));
    const V k = v_round(v_mul(xc, v_set1(1.44269504088896341f)));
    V r = v_fma(k, v_set1(-0.693359375f), xc);
    r = v_fma(k, v_set1(2.12194440e-4f), r);
    V p = v_set1(1.9875691500e-4f);
    p = v_fma(p, r, v_set1(1.3981999507e-3f));
    p = v_fma(p, r, v_set1(8.3334519073e-3f));
    p = v_fma(p, r, v_set1(4.1665795894e-2f));
    p = v_fma(p, r, v_set1(1.6666665459e-1f));
    p = v_fma(p, r, v_set1(5.0000001201e-1f));
    p = v_fma(p, v_mul(r, r), v_add(r, v_set1(1.0f)));
    /* below lo, k may be far below -126: compute on lo and zero those lanes */
    return v_zero_below(v_ldexp(p, v_max(k, v_set1(-126.0f))), x, lo);
}

float FN(dot_f16_f32)(int64_t n, const uint16_t *x, const float *y)
{
    V a0 = v_zero(), a1 = v_zero();
    int64_t i = 0;
    for (; i + 2 * VW <= n; i += 2 * VW) {
        a0 = v_fma(v_load_h(x + i), v_load(y + i), a0);
        a1 = v_fma(v_load_h(x + i + VW), v_load(y + i + VW), a1);
    }
    for (; i + VW <= n; i += VW)
        a0 = v_fma(v_load_h(x + i), v_load(y + i), a0);
    float s = v_hsum(v_add(a0, a1));
    for (; i < n; i++)
        s += realm_fp16_to_fp32(x[i]) * y[i];
    return s;
}

void FN(axpy_f16)(int64_t n, float a, const uint16_t *x, float *y)
{
    const V va = v_set1(a);
    int64_t i = 0;
    for (; i + VW <= n; i += VW)
        v_store(y + i, v_fma(va, v_load_h(x + i), v_load(y + i)));
    for (; i < n; i++)
        y[i] += a * realm_fp16_to_fp32(x[i]);
}

void FN(scale_f32)(int64_t n, float a, float *y)
{
    const V va = v_set1(a);
    int64_t i = 0;
    for (; i + VW <= n; i += VW)
        v_store(y + i, v_mul(va, v_load(y + i)));
    for (; i < n; i++)
        y[i] *= a;
}

void FN(fp32_to_fp16)(const float *x, uint16_t *y, int64_t n)
{
    int64_t i = 0;
    for (; i + VW <= n; i += VW)
        v_store_h(y + i, v_load(x + i));
    for (; i < n; i++)
        y[i] = realm_fp32_to_fp16(x[i]);
}

void FN(rmsnorm)(float *out, const float *x, const float *w, int64_t n, float eps)
{
    V a0 = v_zero(), a1 = v_zero();
    int64_t i = 0;
    for (; i + 2 * VW <= n; i += 2 * VW) {
        const V x0 = v_load(x + i), x1 = v_load(x + i + VW);
        a0 = v_fma(x0, x0, a0);
        a1 = v_fma(x1, x1, a1);
    }
    double ss = v_hsum(v_add(a0, a1));
    for (; i < n; i++)
        ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    const V vs = v_set1(scale);
    for (i = 0; i + VW <= n; i += VW)
        v_store(out + i, v_mul(v_mul(v_load(x + i), vs), v_load(w + i)));
    for (; i < n; i++)
        out[i] = x[i] * scale * w[i];
}

void FN(silu_mul)(int64_t n, float *g, const float *u)
{
    const V one = v_set1(1.0f);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        const V gv = v_load(g + i);
        const V e = v_exp(v_sub(v_zero(), gv));
        v_store(g + i, v_mul(v_div(gv, v_add(one, e)), v_load(u + i)));
    }
    for (; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void FN(exp_f32)(int64_t n, const float *x, float *y)
{
    int64_t i = 0;
    for (; i + VW <= n; i += VW)
        v_store(y + i, v_exp(v_load(x + i)));
    for (; i < n; i++)
        y[i] = realm__exp_poly(x[i]);
}

/* The attention step, written over the same vector abstraction. */
#include "attn_simd.h"

/* The LoRA shrink and expand, over the same vector abstraction. */
#include "lora_simd.h"
