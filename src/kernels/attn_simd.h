/*
 * The attention steps (realm_ops.attn_f16, attn_q8_0 and the mixed pairs) of
 * ops_avx2.c and ops_avx512.c, written once over the vector abstraction of
 * ops_simd.h (V, VW, v_*), plus v_zero_below, v_hsum8_store, v_load_i8 and
 * v_set1_h, which each file defines.
 *
 * Shape: the nq query rows (the query heads sharing one KV head) are taken in
 * tiles of 8, 4 and 1 rows held in registers, so each key and value vector is
 * loaded and converted once per tile, and a whole group of 8 heads reads the
 * block once. Scores are kept key-major, s[j * nq + r], so the per-row
 * maximum, exponentials and sums run along vectors of rows; the values are
 * summed as acc[r] += p[j][r] v_j with the tile's accumulators in registers
 * over all cnt keys, rescaled by the softmax correction as they are loaded.
 *
 * Keys and values are F16 or Q8_0 rows, each kind chosen apart by a constant
 * argument of the always-inlined pieces (ATTN_F16, ATTN_Q8), so every pair
 * of formats compiles to its own loop. A Q8_0 vector is converted to floats
 * and multiplied by its block's scale, which is exact: the kernels compute
 * attn_f16's arithmetic on the dequantized rows. An F16 head size that is not
 * a multiple of VW goes to the reference.
 */
#include <string.h>

#include "kernels_internal.h"
#include "ops_internal.h"

#define ATTN_ALWAYS_INLINE inline __attribute__((always_inline))

enum { ATTN_F16, ATTN_Q8 };

/* Elements that share one scale: a Q8_0 block, or (F16, no scale) a vector. */
#define ATTN_GROUP(F) ((F) == ATTN_Q8 ? REALM_QK8_0 : VW)

/* The scale of the group of row starting at element c0 (F16: unused). */
static ATTN_ALWAYS_INLINE V attn_scale(const int F, const uint8_t *row, int64_t c0)
{
    if (F == ATTN_F16)
        return v_zero();
    return v_set1_h(((const realm_block_q8_0 *)row)[c0 / REALM_QK8_0].d);
}

/* Elements [c, c + VW) of a row as floats; dq is their group's scale. */
static ATTN_ALWAYS_INLINE V attn_load(const int F, const uint8_t *row, int64_t c, V dq)
{
    if (F == ATTN_F16)
        return v_load_h((const uint16_t *)row + c);
    const realm_block_q8_0 *b = (const realm_block_q8_0 *)row + c / REALM_QK8_0;
    return v_mul(v_load_i8(b->qs + c % REALM_QK8_0), dq);
}

/* s[j * nq + r0 + r] = scale * q_(r0+r) . k_j for the RT rows of a tile. */
static ATTN_ALWAYS_INLINE void attn_scores_tile(const int RT, const int FK, int64_t d, int nq,
                                                int r0, const float *q, int cnt, const uint8_t *k,
                                                size_t k_stride, float scale, float *s)
{
    const float *qt = q + r0 * d;
    for (int j = 0; j < cnt; j++) {
        const uint8_t *kj = k + (size_t)j * k_stride;
        V a[8];
        REALM__UNROLL(8)
        for (int r = 0; r < RT; r++)
            a[r] = v_zero();
        for (int64_t c0 = 0; c0 < d; c0 += ATTN_GROUP(FK)) {
            const V dk = attn_scale(FK, kj, c0);
            for (int u = 0; u < ATTN_GROUP(FK) / VW; u++) {
                const int64_t c = c0 + u * VW;
                const V kv = attn_load(FK, kj, c, dk);
                REALM__UNROLL(8)
                for (int r = 0; r < RT; r++)
                    a[r] = v_fma(kv, v_load(qt + r * d + c), a[r]);
            }
        }
        float *sj = s + (size_t)j * (size_t)nq + r0;
        if (RT == 8) {
            v_hsum8_store(a, scale, sj);
        } else {
            REALM__UNROLL(8)
            for (int r = 0; r < RT; r++)
                sj[r] = v_hsum(a[r]) * scale;
        }
    }
}

/* acc[r] = acc[r] * corr[r] + sum_j p[j][r] v_j over one VW-wide column slice
 * [c, c + VW) for the RT rows of a tile. */
static ATTN_ALWAYS_INLINE void attn_values_tile(const int RT, const int FV, int64_t d, int nq,
                                                int r0, int64_t c, int cnt, const uint8_t *v,
                                                size_t v_stride, const float *p, const float *corr,
                                                float *acc)
{
    V a[8];
    REALM__UNROLL(8)
    for (int r = 0; r < RT; r++)
        a[r] = v_mul(v_load(acc + (r0 + r) * d + c), v_set1(corr[r0 + r]));
    for (int j = 0; j < cnt; j++) {
        const uint8_t *vj = v + (size_t)j * v_stride;
        const V vv = attn_load(FV, vj, c, attn_scale(FV, vj, c));
        const float *pj = p + (size_t)j * (size_t)nq + r0;
        REALM__UNROLL(8)
        for (int r = 0; r < RT; r++)
            a[r] = v_fma(v_set1(pj[r]), vv, a[r]);
    }
    REALM__UNROLL(8)
    for (int r = 0; r < RT; r++)
        v_store(acc + (r0 + r) * d + c, a[r]);
}

/* The step for keys of format FK and values of format FV; d % VW == 0. */
static ATTN_ALWAYS_INLINE void attn_step(const int FK, const int FV, int64_t d, int nq,
                                         const float *q, int cnt, const uint8_t *k, size_t k_stride,
                                         const uint8_t *v, size_t v_stride, float scale, float *m,
                                         float *l, float *acc, float *s)
{
    int r0 = 0;
    for (; r0 + 8 <= nq; r0 += 8)
        attn_scores_tile(8, FK, d, nq, r0, q, cnt, k, k_stride, scale, s);
    for (; r0 + 4 <= nq; r0 += 4)
        attn_scores_tile(4, FK, d, nq, r0, q, cnt, k, k_stride, scale, s);
    for (; r0 < nq; r0++)
        attn_scores_tile(1, FK, d, nq, r0, q, cnt, k, k_stride, scale, s);

    /* new maxima, corrections e^(old - new), weights e^(s - new) and sums */
    float *mx = s + (size_t)nq * (size_t)cnt, *corr = mx + nq;
    memcpy(mx, m, (size_t)nq * sizeof *mx);
    for (int j = 0; j < cnt; j++) {
        const float *sj = s + (size_t)j * (size_t)nq;
        int r = 0;
        for (; r + VW <= nq; r += VW)
            v_store(mx + r, v_max(v_load(mx + r), v_load(sj + r)));
        for (; r < nq; r++)
            mx[r] = sj[r] > mx[r] ? sj[r] : mx[r];
    }
    for (int r = 0; r < nq; r++) {
        corr[r] = realm__exp_poly(m[r] - mx[r]); /* 0 when m[r] is -inf */
        l[r] *= corr[r];
        m[r] = mx[r];
    }
    for (int j = 0; j < cnt; j++) {
        float *sj = s + (size_t)j * (size_t)nq;
        int r = 0;
        for (; r + VW <= nq; r += VW) {
            const V p = v_exp(v_sub(v_load(sj + r), v_load(mx + r)));
            v_store(sj + r, p);
            v_store(l + r, v_add(v_load(l + r), p));
        }
        for (; r < nq; r++) {
            sj[r] = realm__exp_poly(sj[r] - mx[r]);
            l[r] += sj[r];
        }
    }

    for (int64_t c = 0; c < d; c += VW) {
        r0 = 0;
        for (; r0 + 8 <= nq; r0 += 8)
            attn_values_tile(8, FV, d, nq, r0, c, cnt, v, v_stride, s, corr, acc);
        for (; r0 + 4 <= nq; r0 += 4)
            attn_values_tile(4, FV, d, nq, r0, c, cnt, v, v_stride, s, corr, acc);
        for (; r0 < nq; r0++)
            attn_values_tile(1, FV, d, nq, r0, c, cnt, v, v_stride, s, corr, acc);
    }
}

void FN(attn_f16)(int64_t d, int nq, const float *q, int cnt, const uint16_t *k, const uint16_t *v,
                  int64_t ld, float scale, float *m, float *l, float *acc, float *s)
{
    if (d % VW != 0) {
        realm__attn_f16_ref(d, nq, q, cnt, k, v, ld, scale, m, l, acc, s);
        return;
    }
    attn_step(ATTN_F16, ATTN_F16, d, nq, q, cnt, (const uint8_t *)k, (size_t)ld * 2,
              (const uint8_t *)v, (size_t)ld * 2, scale, m, l, acc, s);
}

/* Q8_0 on either side: d is a multiple of 32, so of VW too. */
void FN(attn_q8_0)(int64_t d, int nq, const float *q, int cnt, const void *k, size_t k_stride,
                   const void *v, size_t v_stride, float scale, float *m, float *l, float *acc,
                   float *s)
{
    attn_step(ATTN_Q8, ATTN_Q8, d, nq, q, cnt, k, k_stride, v, v_stride, scale, m, l, acc, s);
}

void FN(attn_f16_q8_0)(int64_t d, int nq, const float *q, int cnt, const void *k, size_t k_stride,
                       const void *v, size_t v_stride, float scale, float *m, float *l, float *acc,
                       float *s)
{
    attn_step(ATTN_F16, ATTN_Q8, d, nq, q, cnt, k, k_stride, v, v_stride, scale, m, l, acc, s);
}

void FN(attn_q8_0_f16)(int64_t d, int nq, const float *q, int cnt, const void *k, size_t k_stride,
                       const void *v, size_t v_stride, float scale, float *m, float *l, float *acc,
                       float *s)
{
    attn_step(ATTN_Q8, ATTN_F16, d, nq, q, cnt, k, k_stride, v, v_stride, scale, m, l, acc, s);
}
