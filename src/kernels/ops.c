/*
 * Element-wise and attention ops: scalar references (the specification) and
 * the per-ISA tables (realm_ops in realm/kernels.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_internal.h"
#include "ops_internal.h"

float realm__dot_f16_f32_ref(int64_t n, const uint16_t *x, const float *y)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)realm_fp16_to_fp32(x[i]) * y[i];
    return (float)s;
}

void realm__axpy_f16_ref(int64_t n, float a, const uint16_t *x, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * realm_fp16_to_fp32(x[i]);
}

void realm__scale_f32_ref(int64_t n, float a, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] *= a;
}

void realm__fp32_to_fp16_ref(const float *x, uint16_t *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = realm_fp32_to_fp16(x[i]);
}

/* out = x / sqrt(mean(x^2) + eps) * w */
void realm__rmsnorm_ref(float *out, const float *x, const float *w, int64_t n, float eps)
{
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] * scale * w[i];
}

/* g = silu(g) * u = g / (1 + e^-g) * u */
void realm__silu_mul_ref(int64_t n, float *g, const float *u)
{
    for (int64_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void realm__exp_f32_ref(int64_t n, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = realm__exp_poly(x[i]);
}

/* Element i of a key or value row of type t, F16 or Q8_0 (d * q is exact). */
static inline float kv_elem(realm_type t, const uint8_t *row, int64_t i)
{
    if (t == REALM_TYPE_F16) {
        uint16_t h;
        memcpy(&h, row + 2 * i, sizeof h);
        return realm_fp16_to_fp32(h);
    }
    const realm_block_q8_0 *b = (const realm_block_q8_0 *)row + i / REALM_QK8_0;
    return realm_fp16_to_fp32(b->d) * (float)b->qs[i % REALM_QK8_0];
}

/* Element i of key j: F16 keys are stored transposed (element i of every
 * key in a row, k_stride bytes apart), Q8_0 keys a row each. */
static inline float key_elem(realm_type t, const uint8_t *k, size_t k_stride, int j, int64_t i)
{
    return t == REALM_TYPE_F16 ? kv_elem(t, k + (size_t)i * k_stride, j)
                               : kv_elem(t, k + (size_t)j * k_stride, i);
}

/*
 * One online-softmax step of attention (realm_ops.attn_f16 and the kernels
 * over other row types), query row by query row: scores in double, the
 * running maximum raised to the block's, the old sum and accumulator
 * rescaled by e^(old - new max), then the block's weights added. s holds row
 * r's scores at s + r * cnt.
 */
static inline void attn_ref(realm_type tk, realm_type tv, int64_t d, int nq, const float *q,
                            int cnt, const uint8_t *k, size_t k_stride, const uint8_t *v,
                            size_t v_stride, float scale, float *m, float *l, float *acc, float *s)
{
    for (int r = 0; r < nq; r++) {
        const float *qr = q + r * d;
        float *sr = s + (size_t)r * (size_t)cnt, *ar = acc + r * d;
        float mx = m[r];
        for (int j = 0; j < cnt; j++) {
            double dot = 0;
            for (int64_t i = 0; i < d; i++)
                dot += (double)key_elem(tk, k, k_stride, j, i) * qr[i];
            sr[j] = (float)dot * scale;
            mx = sr[j] > mx ? sr[j] : mx;
        }
        const float corr = realm__exp_poly(m[r] - mx); /* 0 when m[r] is -inf */
        float sum = 0;
        for (int j = 0; j < cnt; j++) {
            sr[j] = realm__exp_poly(sr[j] - mx);
            sum += sr[j];
        }
        l[r] = l[r] * corr + sum;
        m[r] = mx;
        for (int64_t i = 0; i < d; i++)
            ar[i] *= corr;
        for (int j = 0; j < cnt; j++) {
            const uint8_t *vj = v + (size_t)j * v_stride;
            for (int64_t i = 0; i < d; i++)
                ar[i] += sr[j] * kv_elem(tv, vj, i);
        }
    }
}

void realm__attn_f16_ref(int64_t d, int nq, const float *q, int cnt, const uint16_t *k,
                         int64_t k_ld, const uint16_t *v, int64_t ld, float scale, float *m,
                         float *l, float *acc, float *s)
{
    attn_ref(REALM_TYPE_F16, REALM_TYPE_F16, d, nq, q, cnt, (const uint8_t *)k, (size_t)k_ld * 2,
             (const uint8_t *)v, (size_t)ld * 2, scale, m, l, acc, s);
}

void realm__attn_q8_0_ref(int64_t d, int nq, const float *q, int cnt, const void *k,
                          size_t k_stride, const void *v, size_t v_stride, float scale, float *m,
                          float *l, float *acc, float *s)
{
    attn_ref(REALM_TYPE_Q8_0, REALM_TYPE_Q8_0, d, nq, q, cnt, k, k_stride, v, v_stride, scale, m, l,
             acc, s);
}

void realm__attn_f16_q8_0_ref(int64_t d, int nq, const float *q, int cnt, const void *k,
                              size_t k_stride, const void *v, size_t v_stride, float scale,
                              float *m, float *l, float *acc, float *s)
{
    attn_ref(REALM_TYPE_F16, REALM_TYPE_Q8_0, d, nq, q, cnt, k, k_stride, v, v_stride, scale, m, l,
             acc, s);
}

void realm__attn_q8_0_f16_ref(int64_t d, int nq, const float *q, int cnt, const void *k,
                              size_t k_stride, const void *v, size_t v_stride, float scale,
                              float *m, float *l, float *acc, float *s)
{
    attn_ref(REALM_TYPE_Q8_0, REALM_TYPE_F16, d, nq, q, cnt, k, k_stride, v, v_stride, scale, m, l,
             acc, s);
}

/* Token by token, each the step of its own keys [0, lim[t]). */
void realm__attn_tile_ref(realm_type tk, realm_type tv, int64_t d, int nq, int nt, const float *q,
                          int64_t ldq, int cnt, const int32_t *lim, const void *k, size_t k_stride,
                          const void *v, size_t v_stride, float scale, float *state,
                          int64_t ld_state, float *s)
{
    (void)cnt;
    for (int t = 0; t < nt; t++) {
        float *m = state + t * ld_state;
        if (lim[t] > 0)
            attn_ref(tk, tv, d, nq, q + t * ldq, lim[t], k, k_stride, v, v_stride, scale, m, m + nq,
                     m + 2 * nq, s);
    }
}

/* Element i of a LoRA tensor of type t (F32, F16 or BF16). */
static float lora_elem(realm_type t, const void *p, int64_t i)
{
    if (t == REALM_TYPE_F32)
        return ((const float *)p)[i];
    const uint16_t h = ((const uint16_t *)p)[i];
    return t == REALM_TYPE_F16 ? realm_fp16_to_fp32(h) : realm_bf16_to_fp32(h);
}

void realm__lora_shrink_ref(realm_type at, int64_t n, const void *a, int n_rows,
                            const int32_t *rows, const float *x, int64_t ldx, float *out,
                            int64_t ld_out)
{
    for (int i = 0; i < n_rows; i++) {
        const float *xi = x + (int64_t)rows[i] * ldx;
        double s = 0;
        for (int64_t k = 0; k < n; k++)
            s += (double)lora_elem(at, a, k) * xi[k];
        out[(int64_t)i * ld_out] = (float)s;
    }
}

void realm__lora_expand_ref(realm_type bt_type, int64_t rank, const void *bt, int64_t ldb,
                            int64_t o0, int64_t o1, int n_rows, const int32_t *rows, const float *t,
                            int64_t ldt, const float *scale, float wscale, float *y, int64_t ldy)
{
    for (int i = 0; i < n_rows; i++) {
        const float *ti = t + (int64_t)i * ldt;
        float *yi = y + (int64_t)rows[i] * ldy;
        const double s = (double)(scale[i] * wscale);
        for (int64_t o = o0; o < o1; o++) {
            double acc = 0;
            for (int64_t j = 0; j < rank; j++)
                acc += (double)ti[j] * lora_elem(bt_type, bt, j * ldb + o);
            yi[o] = (float)(yi[o] + s * acc);
        }
    }
}

#define OPS_TABLE(I)                                                                               \
    {                                                                                              \
        .isa = REALM_ISA_##I##_ID, .dot_f16_f32 = realm__dot_f16_f32_##I,                          \
        .axpy_f16 = realm__axpy_f16_##I, .scale_f32 = realm__scale_f32_##I,                        \
        .fp32_to_fp16 = realm__fp32_to_fp16_##I, .rmsnorm = realm__rmsnorm_##I,                    \
        .silu_mul = realm__silu_mul_##I, .exp_f32 = realm__exp_f32_##I,                            \
        .attn_f16 = realm__attn_f16_##I, .attn_q8_0 = realm__attn_q8_0_##I,                        \
        .attn_f16_q8_0 = realm__attn_f16_q8_0_##I, .attn_q8_0_f16 = realm__attn_q8_0_f16_##I,      \
        .attn_tile = realm__attn_tile_##I, .lora_shrink = realm__lora_shrink_##I,                  \
        .lora_expand = realm__lora_expand_##I,                                                     \
    }
#define REALM_ISA_ref_ID    REALM_ISA_SCALAR
#define REALM_ISA_avx2_ID   REALM_ISA_AVX2
#define REALM_ISA_avx512_ID REALM_ISA_AVX512

static const realm_ops ops_tables[REALM_ISA_COUNT] = {
    [REALM_ISA_SCALAR] = OPS_TABLE(ref),
    [REALM_ISA_AVX2] = OPS_TABLE(avx2),
    [REALM_ISA_AVX512] = OPS_TABLE(avx512),
};

const realm_ops *realm_ops_get(realm_isa isa)
{
    if ((unsigned)isa >= REALM_ISA_COUNT || !realm_cpu_supports(isa))
        return NULL;
    return &ops_tables[isa];
}

const realm_ops *realm_ops_best(void)
{
    return realm_ops_get(realm__isa_select(getenv("REALM_ISA")));
}
