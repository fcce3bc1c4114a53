/*
 * The attention step (realm_ops.attn_f16) of ops_avx2.c and ops_avx512.c,
 * written once over the vector abstraction of ops_simd.h (V, VW, v_*), plus
 * v_zero_below and v_hsum8_store, which each file defines.
 *
 * Shape: the nq query rows (the query heads sharing one KV head) are taken in
 * tiles of 8, 4 and 1 rows held in registers, so each key and value vector is
 * loaded and converted from F16 once per tile, and a whole group of 8 heads
 * reads the block once. Scores are kept key-major, s[j * nq + r], so the
 * per-row maximum, exponentials and sums run along vectors of rows; the
 * values are summed as acc[r] += p[j][r] v_j with the tile's accumulators in
 * registers over all cnt keys, rescaled by the softmax correction as they are
 * loaded. A head size that is not a multiple of VW goes to the reference.
 */
#include <string.h>

#include "kernels_internal.h"
#include "ops_internal.h"

#define ATTN_ALWAYS_INLINE inline __attribute__((always_inline))

/* s[j * nq + r0 + r] = scale * q_(r0+r) . k_j for the RT rows of a tile. */
static ATTN_ALWAYS_INLINE void attn_scores_tile(const int RT, int64_t d, int nq, int r0,
                                                const float *q, int cnt, const uint16_t *k,
                                                int64_t ld, float scale, float *s)
{
    const float *qt = q + r0 * d;
    for (int j = 0; j < cnt; j++) {
        const uint16_t *kj = k + j * ld;
        V a[8];
        REALM__UNROLL(8)
        for (int r = 0; r < RT; r++)
            a[r] = v_zero();
        for (int64_t c = 0; c < d; c += VW) {
            const V kv = v_load_h(kj + c);
            REALM__UNROLL(8)
            for (int r = 0; r < RT; r++)
                a[r] = v_fma(kv, v_load(qt + r * d + c), a[r]);
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
static ATTN_ALWAYS_INLINE void attn_values_tile(const int RT, int64_t d, int nq, int r0, int64_t c,
                                                int cnt, const uint16_t *v, int64_t ld,
                                                const float *p, const float *corr, float *acc)
{
    V a[8];
    REALM__UNROLL(8)
    for (int r = 0; r < RT; r++)
        a[r] = v_mul(v_load(acc + (r0 + r) * d + c), v_set1(corr[r0 + r]));
    for (int j = 0; j < cnt; j++) {
        const V vv = v_load_h(v + j * ld + c);
        const float *pj = p + (size_t)j * (size_t)nq + r0;
        REALM__UNROLL(8)
        for (int r = 0; r < RT; r++)
            a[r] = v_fma(v_set1(pj[r]), vv, a[r]);
    }
    REALM__UNROLL(8)
    for (int r = 0; r < RT; r++)
        v_store(acc + (r0 + r) * d + c, a[r]);
}

void FN(attn_f16)(int64_t d, int nq, const float *q, int cnt, const uint16_t *k, const uint16_t *v,
                  int64_t ld, float scale, float *m, float *l, float *acc, float *s)
{
    if (d % VW != 0) {
        realm__attn_f16_ref(d, nq, q, cnt, k, v, ld, scale, m, l, acc, s);
        return;
    }
    int r0 = 0;
    for (; r0 + 8 <= nq; r0 += 8)
        attn_scores_tile(8, d, nq, r0, q, cnt, k, ld, scale, s);
    for (; r0 + 4 <= nq; r0 += 4)
        attn_scores_tile(4, d, nq, r0, q, cnt, k, ld, scale, s);
    for (; r0 < nq; r0++)
        attn_scores_tile(1, d, nq, r0, q, cnt, k, ld, scale, s);

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
            attn_values_tile(8, d, nq, r0, c, cnt, v, ld, s, corr, acc);
        for (; r0 + 4 <= nq; r0 += 4)
            attn_values_tile(4, d, nq, r0, c, cnt, v, ld, s, corr, acc);
        for (; r0 < nq; r0++)
            attn_values_tile(1, d, nq, r0, c, cnt, v, ld, s, corr, acc);
    }
}
