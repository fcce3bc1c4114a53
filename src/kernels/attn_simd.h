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
 * attn_f16's arithmetic on the dequantized rows. The values' scales are
 * converted once per call into the scratch after the scores (dv), not once
 * per column slice. An F16 head size that is not a multiple of VW goes to
 * the reference.
 */
#include <stddef.h>
#include <string.h>

#include "kernels_internal.h"
#include "ops_internal.h"

#define ATTN_ALWAYS_INLINE inline __attribute__((always_inline))

enum { ATTN_F16, ATTN_Q8 };

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
        if (FK == ATTN_Q8) {
            /* block by block: its scale once, its VW-wide pieces unrolled */
            const realm_block_q8_0 *b = (const realm_block_q8_0 *)kj;
            for (int64_t c0 = 0; c0 < d; c0 += REALM_QK8_0, b++) {
                const V dk = v_set1_h(b->d);
                REALM__UNROLL(4)
                for (int u = 0; u < REALM_QK8_0 / VW; u++) {
                    const V kv = v_mul(v_load_i8(b->qs + u * VW), dk);
                    REALM__UNROLL(8)
                    for (int r = 0; r < RT; r++)
                        a[r] = v_fma(kv, v_load(qt + r * d + c0 + u * VW), a[r]);
                }
            }
        } else {
            for (int64_t c = 0; c < d; c += VW) {
                const V kv = v_load_h((const uint16_t *)kj + c);
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
 * [c, c + VW) for the RT rows of a tile. Q8_0 values: dv[j] is the scale of
 * the block of value j that holds the slice. */
static ATTN_ALWAYS_INLINE void attn_values_tile(const int RT, const int FV, int64_t d, int nq,
                                                int r0, int64_t c, int cnt, const uint8_t *v,
                                                size_t v_stride, const float *dv, const float *p,
                                                const float *corr, float *acc)
{
    V a[8];
    REALM__UNROLL(8)
    for (int r = 0; r < RT; r++)
        a[r] = v_mul(v_load(acc + (r0 + r) * d + c), v_set1(corr[r0 + r]));
    /* where the slice starts in a row: in Q8_0, its block's codes past the scale */
    const size_t at = FV == ATTN_Q8 ? (size_t)(c / REALM_QK8_0) * sizeof(realm_block_q8_0) +
                                          offsetof(realm_block_q8_0, qs) + (size_t)(c % REALM_QK8_0)
                                    : (size_t)c * sizeof(uint16_t);
    for (int j = 0; j < cnt; j++) {
        const uint8_t *vj = v + (size_t)j * v_stride + at;
        const V vv = FV == ATTN_Q8 ? v_mul(v_load_i8((const int8_t *)vj), v_set1(dv[j]))
                                   : v_load_h((const uint16_t *)vj);
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

    /* Q8_0 values: each block's scale as a float, once (dv[b * cnt + j]) */
    float *dv = corr + nq;
    if (FV == ATTN_Q8)
        for (int j = 0; j < cnt; j++) {
            const realm_block_q8_0 *b = (const realm_block_q8_0 *)(v + (size_t)j * v_stride);
            for (int64_t i = 0; i < d / REALM_QK8_0; i++)
                dv[i * cnt + j] = realm_fp16_to_fp32(b[i].d);
        }
    for (int64_t c = 0; c < d; c += VW) {
        const float *dvc = dv + (c / REALM_QK8_0) * cnt;
        r0 = 0;
        for (; r0 + 8 <= nq; r0 += 8)
            attn_values_tile(8, FV, d, nq, r0, c, cnt, v, v_stride, dvc, s, corr, acc);
        for (; r0 + 4 <= nq; r0 += 4)
            attn_values_tile(4, FV, d, nq, r0, c, cnt, v, v_stride, dvc, s, corr, acc);
        for (; r0 < nq; r0++)
            attn_values_tile(1, FV, d, nq, r0, c, cnt, v, v_stride, dvc, s, corr, acc);
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
