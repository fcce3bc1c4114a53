/*
 * The attention steps (realm_ops.attn_f16, attn_q8_0 and the mixed pairs) of
 * ops_avx2.c and ops_avx512.c, written once over the vector abstraction of
 * ops_simd.h (V, VW, v_*), plus v_zero_below, v_hsum8_store, v_hmax,
 * v_keep_first, v_load_i8, v_set1_h, v_load_h_part, v_load_part and
 * v_store_part, which each file defines.
 *
 * Shape: F16 keys are stored transposed (a block's element i of every key
 * side by side), so a vector holds one element of VW keys and each score
 * is a chain of FMAs of a broadcast query element along the lanes
 * (attn_scores_t): no horizontal sums; the scores land row-major and the
 * softmax runs along whole vectors of keys (attn_softmax_t). Q8_0 keys,
 * quantized along the head, are rows: the nq query rows are taken in tiles
 * of 8, 4 and 1 rows held in registers, so each key vector is loaded and
 * converted once per tile, the sums over the head reduced by trees of
 * shuffles; scores are kept key-major, s[j * nq + r], so the per-row
 * maximum, exponentials and sums run along vectors of rows, each vector's
 * maximum and sum held in registers over the keys (attn_softmax). Either
 * way the values are summed as acc[r] += p[j][r] v_j by register tiles of
 * rows x column slices (ATTN_DV_*) over all cnt keys, rescaled by the
 * softmax correction as they are loaded. With the cache's rows head-major
 * (one head's keys and values contiguous), the step runs near the FMA
 * units' peak on data in L2 (bench/README.md, "Decode attention").
 *
 * Keys and values are F16 or Q8_0 rows, each kind chosen apart by a constant
 * argument of the always-inlined pieces (ATTN_F16, ATTN_Q8), so every pair
 * of formats compiles to its own loop. A Q8_0 vector is converted to floats
 * and multiplied by its block's scale, which is exact: the kernels compute
 * attn_f16's arithmetic on the dequantized rows. The values' scales are
 * converted once per call into the scratch after the scores (dv), not once
 * per column slice. An F16 head size that is not a multiple of VW goes to
 * the reference.
 *
 * The prefill tile (attn_tile, at the end) runs the same arithmetic for
 * several query tokens at once: the step's keys and values staged as floats
 * (ATTN_F32, exact; F16 keys staged transposed), one score matrix over all
 * the tile's rows, the softmax of each kind, and the values in register
 * tiles of rows x column slices; per row the operations and their order are
 * the step's (attn_step_t for F16 keys, attn_step for Q8_0 keys).
 */
#include <stddef.h>
#include <string.h>

#include "kernels_internal.h"
#include "ops_internal.h"

#define ATTN_ALWAYS_INLINE inline __attribute__((always_inline))

enum { ATTN_F16, ATTN_Q8, ATTN_F32 };

/* Keys scored together by a tile of RT rows: as many accumulators as the
 * registers hold beside the key vectors (AVX2 16 registers, AVX-512 32). */
#define ATTN_SCORE_KB(RT) (RT == 8 ? (VW == 16 ? 2 : 1) : RT == 4 ? (VW == 16 ? 4 : 2) : 8)

/* Register tiles of the decode step's P.V: rows x column slices. AVX-512:
 * 8 x 2 (a group of 8 heads converts each value vector once), then 4 x 4;
 * AVX2 (16 registers): 4 x 2. */
#define ATTN_DV_CU8 (VW == 16 ? 2 : 0)
#define ATTN_DV_CU  (VW == 16 ? 4 : 2)

/* s[(j + b) * ld_s + r0 + r] = scale * q_(r0+r) . k_(j+b) for the RT rows of
 * a tile and KB keys from j: each (row, key) its own accumulator, summed over
 * the head in the same order and reduced by the same tree (v_hsum8_store's
 * for 8-row tiles, v_hsum's otherwise) whatever KB, so the same bits. */
static ATTN_ALWAYS_INLINE void attn_scores_keys(const int RT, const int KB, const int FK, int64_t d,
                                                int ld_s, int r0, const float *q, int j,
                                                const uint8_t *k, size_t k_stride, float scale,
                                                float *s)
{
    const float *qt = q + r0 * d;
    V a[16]; /* a[b * RT + r] */
    REALM__UNROLL(16)
    for (int i = 0; i < RT * KB; i++)
        a[i] = v_zero();
    if (FK == ATTN_Q8) {
        /* block by block: its scale once, its VW-wide pieces unrolled */
        for (int64_t c0 = 0; c0 < d; c0 += REALM_QK8_0) {
            REALM__UNROLL(8)
            for (int b = 0; b < KB; b++) {
                const realm_block_q8_0 *blk =
                    (const realm_block_q8_0 *)(k + (size_t)(j + b) * k_stride) + c0 / REALM_QK8_0;
                const V dk = v_set1_h(blk->d);
                REALM__UNROLL(4)
                for (int u = 0; u < REALM_QK8_0 / VW; u++) {
                    const V kv = v_mul(v_load_i8(blk->qs + u * VW), dk);
                    REALM__UNROLL(8)
                    for (int r = 0; r < RT; r++)
                        a[b * RT + r] = v_fma(kv, v_load(qt + r * d + c0 + u * VW), a[b * RT + r]);
                }
            }
        }
    } else {
        for (int64_t c = 0; c < d; c += VW) {
            REALM__UNROLL(8)
            for (int b = 0; b < KB; b++) {
                const uint8_t *kj = k + (size_t)(j + b) * k_stride;
                const V kv = FK == ATTN_F32 ? v_load((const float *)kj + c)
                                            : v_load_h((const uint16_t *)kj + c);
                REALM__UNROLL(8)
                for (int r = 0; r < RT; r++)
                    a[b * RT + r] = v_fma(kv, v_load(qt + r * d + c), a[b * RT + r]);
            }
        }
    }
    REALM__UNROLL(8)
    for (int b = 0; b < KB; b++) {
        float *sj = s + (size_t)(j + b) * (size_t)ld_s + r0;
        if (RT == 8) {
            v_hsum8_store(a + b * RT, scale, sj);
        } else {
            REALM__UNROLL(8)
            for (int r = 0; r < RT; r++)
                sj[r] = v_hsum(a[b * RT + r]) * scale;
        }
    }
}

/* s[j * ld_s + r0 + r] = scale * q_(r0+r) . k_j for the RT rows of a tile and
 * the keys j < cnt (ld_s = nq in a token's step, the tile's rows in
 * attn_tile). */
static ATTN_ALWAYS_INLINE void attn_scores_tile(const int RT, const int FK, int64_t d, int ld_s,
                                                int r0, const float *q, int cnt, const uint8_t *k,
                                                size_t k_stride, float scale, float *s)
{
    const int KB = ATTN_SCORE_KB(RT);
    int j = 0;
    for (; j + KB <= cnt; j += KB)
        attn_scores_keys(RT, KB, FK, d, ld_s, r0, q, j, k, k_stride, scale, s);
    for (; j < cnt; j++)
        attn_scores_keys(RT, 1, FK, d, ld_s, r0, q, j, k, k_stride, scale, s);
}

/* attn_scores_tile for the nq rows of one token (tiles of 8, 4 and 1 rows),
 * key-major at s with ld_s floats from one key's row scores to the next. */
static ATTN_ALWAYS_INLINE void attn_scores_rows(const int FK, int64_t d, int ld_s, int nq,
                                                const float *q, int cnt, const uint8_t *k,
                                                size_t k_stride, float scale, float *s)
{
    int r0 = 0;
    for (; r0 + 8 <= nq; r0 += 8)
        attn_scores_tile(8, FK, d, ld_s, r0, q, cnt, k, k_stride, scale, s);
    for (; r0 + 4 <= nq; r0 += 4)
        attn_scores_tile(4, FK, d, ld_s, r0, q, cnt, k, k_stride, scale, s);
    for (; r0 < nq; r0++)
        attn_scores_tile(1, FK, d, ld_s, r0, q, cnt, k, k_stride, scale, s);
}

/* acc[r] = acc[r] * corr[r] + sum_j p[j][r] v_j over CU VW-wide column
 * slices from c for the RT rows of a tile (each value vector loaded and
 * converted once for the RT rows, each weight broadcast once for the CU
 * slices); key j's weight for row r is p[j * p_j + r * p_r] (key-major or
 * row-major scores). Q8_0 values: dv[b * cnt + j] is the scale of block b of
 * value j.
 * Per (row, column) the same operations in the same order whatever RT and
 * CU. */
static ATTN_ALWAYS_INLINE void attn_values_tile(const int RT, const int CU, const int FV, int64_t d,
                                                int r0, int64_t c, int cnt, const uint8_t *v,
                                                size_t v_stride, const float *dv, const float *p,
                                                int64_t p_j, int64_t p_r, const float *corr,
                                                float *acc)
{
    V a[16]; /* a[r * CU + u] */
    REALM__UNROLL(8)
    for (int r = 0; r < RT; r++) {
        const V cr = v_set1(corr[r0 + r]);
        REALM__UNROLL(4)
        for (int u = 0; u < CU; u++)
            a[r * CU + u] = v_mul(v_load(acc + (r0 + r) * d + c + u * VW), cr);
    }
    for (int j = 0; j < cnt; j++) {
        const uint8_t *vj = v + (size_t)j * v_stride;
        V vv[4];
        REALM__UNROLL(4)
        for (int u = 0; u < CU; u++) {
            const int64_t cu = c + u * VW;
            /* in Q8_0, the slice's block's codes past its scale */
            vv[u] = FV == ATTN_Q8
                        ? v_mul(v_load_i8((const int8_t *)(vj +
                                                           (size_t)(cu / REALM_QK8_0) *
                                                               sizeof(realm_block_q8_0) +
                                                           offsetof(realm_block_q8_0, qs)) +
                                          cu % REALM_QK8_0),
                                v_set1(dv[(cu / REALM_QK8_0) * cnt + j]))
                        : v_load_h((const uint16_t *)vj + cu);
        }
        const float *pj = p + j * p_j + r0 * p_r;
        REALM__UNROLL(8)
        for (int r = 0; r < RT; r++) {
            const V pb = v_set1(pj[r * p_r]);
            REALM__UNROLL(4)
            for (int u = 0; u < CU; u++)
                a[r * CU + u] = v_fma(pb, vv[u], a[r * CU + u]);
        }
    }
    REALM__UNROLL(8)
    for (int r = 0; r < RT; r++)
        REALM__UNROLL(4)
    for (int u = 0; u < CU; u++)
        v_store(acc + (r0 + r) * d + c + u * VW, a[r * CU + u]);
}

/* attn_values_tile for the RT rows from r0 over all d columns: CU slices at
 * a time, then one. */
static ATTN_ALWAYS_INLINE void attn_values_cols(const int RT, const int CU, const int FV, int64_t d,
                                                int r0, int cnt, const uint8_t *v, size_t v_stride,
                                                const float *dv, const float *p, int64_t p_j,
                                                int64_t p_r, const float *corr, float *acc)
{
    int64_t c = 0;
    for (; c + CU * VW <= d; c += CU * VW)
        attn_values_tile(RT, CU, FV, d, r0, c, cnt, v, v_stride, dv, p, p_j, p_r, corr, acc);
    for (; c < d; c += VW)
        attn_values_tile(RT, 1, FV, d, r0, c, cnt, v, v_stride, dv, p, p_j, p_r, corr, acc);
}

/* The values of a step over all nq rows (tiles of 8 rows on AVX-512, then 4,
 * then single rows) and d columns (Q8_0 values: their scales converted first
 * into dv), the weights at p as attn_values_tile's. */
static ATTN_ALWAYS_INLINE void attn_values(const int FV, int64_t d, int nq, int cnt,
                                           const uint8_t *v, size_t v_stride, float *dv,
                                           const float *p, int64_t p_j, int64_t p_r,
                                           const float *corr, float *acc)
{
    if (FV == ATTN_Q8)
        for (int j = 0; j < cnt; j++) {
            const realm_block_q8_0 *b = (const realm_block_q8_0 *)(v + (size_t)j * v_stride);
            for (int64_t i = 0; i < d / REALM_QK8_0; i++)
                dv[i * cnt + j] = realm_fp16_to_fp32(b[i].d);
        }
    int r0 = 0;
    if (ATTN_DV_CU8 > 0)
        for (; r0 + 8 <= nq; r0 += 8)
            attn_values_cols(8, ATTN_DV_CU8, FV, d, r0, cnt, v, v_stride, dv, p, p_j, p_r, corr,
                             acc);
    for (; r0 + 4 <= nq; r0 += 4)
        attn_values_cols(4, ATTN_DV_CU, FV, d, r0, cnt, v, v_stride, dv, p, p_j, p_r, corr, acc);
    for (; r0 < nq; r0++)
        attn_values_cols(1, ATTN_DV_CU, FV, d, r0, cnt, v, v_stride, dv, p, p_j, p_r, corr, acc);
}

/* Keys per pass of attn_softmax's part-vector rows through its buffer. */
#define ATTN_SOFTMAX_KEYS 64

/*
 * The online softmax of R rows over cnt keys, scores s[j * R + r]:
 * mx[r] = max(mold[r], max_j s), corr[r] = e^(mold[r] - mx[r]),
 * l[r] = l[r] * corr[r] + sum_j e^(s - mx[r]) (in key order), each s
 * replaced by its weight e^(s - mx[r]). Vectors of VW rows keep their
 * maximum and sum in registers over the keys; the rows past the last whole
 * vector (all 8 heads of a group on AVX-512) in one vector of masked lanes,
 * with the same operations (e^x's lanes are realm__exp_poly's bits).
 */
static ATTN_ALWAYS_INLINE void attn_softmax(int R, int cnt, float *s, const float *mold, float *mx,
                                            float *corr, float *l)
{
    int r = 0;
    for (; r + VW <= R; r += VW) {
        const V mo = v_load(mold + r);
        V mv = mo;
        for (int j = 0; j < cnt; j++)
            mv = v_max(mv, v_load(s + (size_t)j * (size_t)R + r));
        const V cr = v_exp(v_sub(mo, mv)); /* 0 where the old maximum is -inf */
        V lv = v_mul(v_load(l + r), cr);
        for (int j = 0; j < cnt; j++) {
            float *sj = s + (size_t)j * (size_t)R + r;
            const V pv = v_exp(v_sub(v_load(sj), mv));
            v_store(sj, pv);
            lv = v_add(lv, pv);
        }
        v_store(mx + r, mv);
        v_store(corr + r, cr);
        v_store(l + r, lv);
    }
    if (r < R) { /* the last rows, fewer than a vector, in masked lanes */
        const int n = R - r;
        const V mo = v_load_part(mold + r, n);
        V mv = mo;
        for (int j = 0; j < cnt; j++)
            mv = v_max(mv, v_load_part(s + (size_t)j * (size_t)R + r, n));
        const V cr = v_exp(v_sub(mo, mv));
        V lv = v_mul(v_load_part(l + r, n), cr);
        /* The weights go through a buffer of whole vectors, then back: when
         * all R < VW rows are this tail, a key's (masked) store in place
         * would span the next key's scores, and the CPU holds that load back
         * until the store is done, one key after the other. */
        _Alignas(64) float w[ATTN_SOFTMAX_KEYS * VW];
        for (int j0 = 0; j0 < cnt; j0 += ATTN_SOFTMAX_KEYS) {
            const int nj = cnt - j0 < ATTN_SOFTMAX_KEYS ? cnt - j0 : ATTN_SOFTMAX_KEYS;
            for (int j = 0; j < nj; j++) {
                const V pv = v_exp(v_sub(v_load_part(s + (size_t)(j0 + j) * (size_t)R + r, n), mv));
                v_store(w + j * VW, pv);
                lv = v_add(lv, pv);
            }
            for (int j = 0; j < nj; j++)
                v_store_part(s + (size_t)(j0 + j) * (size_t)R + r, n, v_load(w + j * VW));
        }
        v_store_part(mx + r, n, mv);
        v_store_part(corr + r, n, cr);
        v_store_part(l + r, n, lv);
    }
}

/* The step for keys of format FK and values of format FV; d % VW == 0. */
static ATTN_ALWAYS_INLINE void attn_step(const int FK, const int FV, int64_t d, int nq,
                                         const float *q, int cnt, const uint8_t *k, size_t k_stride,
                                         const uint8_t *v, size_t v_stride, float scale, float *m,
                                         float *l, float *acc, float *s)
{
    attn_scores_rows(FK, d, nq, nq, q, cnt, k, k_stride, scale, s);

    /* new maxima, corrections e^(old - new), weights e^(s - new) and sums */
    float *mx = s + (size_t)nq * (size_t)cnt, *corr = mx + nq;
    attn_softmax(nq, cnt, s, m, mx, corr, l);
    memcpy(m, mx, (size_t)nq * sizeof *m);

    /* Q8_0 values: each block's scale as a float, once (dv[b * cnt + j]) */
    attn_values(FV, d, nq, cnt, v, v_stride, corr + nq, s, nq, 1, corr, acc);
}

/* ---- F16 keys: stored transposed, scored with the keys across the lanes ----
 *
 * An F16 key cache holds each block's keys transposed (element i of key j at
 * k[i * ld + j]), so a vector holds one element of VW consecutive keys: the
 * scores of a row are plain FMAs of a broadcast query element into VW keys'
 * sums, in element order, and need no horizontal sums; they land row-major,
 * s[r * ld_s + j] (ld_s = cnt rounded up to VW, the lanes past a row's keys
 * -inf), so the softmax too runs along whole vectors of keys. */

/* Keys of a tile of RT rows and KB vectors of keys scored together: as many
 * accumulators as the registers hold beside the key vectors. */
#define ATTN_T_KB(RT) (VW == 16 ? (RT == 8 ? 2 : 4) : (RT == 8 ? 1 : RT == 4 ? 2 : 4))

/*
 * s[rho * ld_s + js + lane] = scale * q_rho . k_(j0 + lane) for the RT rows
 * rho0.. and the KB * VW keys from j0 (stored from js in s): row rho is the
 * query at q + (rho / nq) * ldq + (rho % nq) * d (token rho / nq of a tile,
 * head rho % nq), and lanes from its token's limit lim[rho / nq] (counted
 * from js) on are -inf. Keys are F16 (the cache) or F32 (staged) with `k_ld`
 * bytes from one element of a key to the next. Each score is one FMA chain
 * over the elements in order, whatever RT, KB and the key's lane: the same
 * bits in every step and tile.
 */
static ATTN_ALWAYS_INLINE void attn_scores_t(const int RT, const int KB, const int FK, int64_t d,
                                             int nq, const float *q, int64_t ldq,
                                             const int32_t *lim, int rho0, const uint8_t *k,
                                             size_t k_ld, int j0, int js, float scale, float *s,
                                             int ld_s)
{
    const float *qr[8];
    int left[8];
    REALM__UNROLL(8)
    for (int r = 0; r < RT; r++) {
        const int rho = rho0 + r;
        qr[r] = q + (rho / nq) * ldq + (rho % nq) * d;
        left[r] = lim[rho / nq] - js;
    }
    V a[16]; /* a[r * KB + b] */
    REALM__UNROLL(16)
    for (int i = 0; i < RT * KB; i++)
        a[i] = v_zero();
    REALM__UNROLL(2)
    for (int64_t c = 0; c < d; c++) {
        const uint8_t *kc = k + (size_t)c * k_ld;
        V kv[4];
        REALM__UNROLL(4)
        for (int b = 0; b < KB; b++)
            kv[b] = FK == ATTN_F16 ? v_load_h((const uint16_t *)kc + j0 + b * VW)
                                   : v_load((const float *)kc + j0 + b * VW);
        REALM__UNROLL(8)
        for (int r = 0; r < RT; r++) {
            const V qb = v_set1(qr[r][c]);
            REALM__UNROLL(4)
            for (int b = 0; b < KB; b++)
                a[r * KB + b] = v_fma(qb, kv[b], a[r * KB + b]);
        }
    }
    const V vs = v_set1(scale);
    REALM__UNROLL(8)
    for (int r = 0; r < RT; r++)
        REALM__UNROLL(4)
    for (int b = 0; b < KB; b++)
        v_store(s + (size_t)(rho0 + r) * (size_t)ld_s + js + b * VW,
                v_keep_first(v_mul(a[r * KB + b], vs), left[r] - b * VW, -INFINITY));
}

/* attn_scores_t for a tile of RT rows over the keys [0, n) (n a multiple of
 * VW), stored from js0 in s: KB vectors at a time, then one. */
static ATTN_ALWAYS_INLINE void attn_scores_t_keys(const int RT, const int FK, int64_t d, int nq,
                                                  const float *q, int64_t ldq, const int32_t *lim,
                                                  int rho0, const uint8_t *k, size_t k_ld, int n,
                                                  int js0, float scale, float *s, int ld_s)
{
    const int KB = ATTN_T_KB(RT);
    int j = 0;
    for (; j + KB * VW <= n; j += KB * VW)
        attn_scores_t(RT, KB, FK, d, nq, q, ldq, lim, rho0, k, k_ld, j, js0 + j, scale, s, ld_s);
    for (; j < n; j += VW)
        attn_scores_t(RT, 1, FK, d, nq, q, ldq, lim, rho0, k, k_ld, j, js0 + j, scale, s, ld_s);
}

/* attn_scores_t_keys for the rows [0, R), in tiles of 8, 4 and 1 rows. */
static ATTN_ALWAYS_INLINE void attn_scores_t_rows(const int FK, int64_t d, int nq, int R,
                                                  const float *q, int64_t ldq, const int32_t *lim,
                                                  const uint8_t *k, size_t k_ld, int n, int js0,
                                                  float scale, float *s, int ld_s)
{
    int r0 = 0;
    for (; r0 + 8 <= R; r0 += 8)
        attn_scores_t_keys(8, FK, d, nq, q, ldq, lim, r0, k, k_ld, n, js0, scale, s, ld_s);
    for (; r0 + 4 <= R; r0 += 4)
        attn_scores_t_keys(4, FK, d, nq, q, ldq, lim, r0, k, k_ld, n, js0, scale, s, ld_s);
    for (; r0 < R; r0++)
        attn_scores_t_keys(1, FK, d, nq, q, ldq, lim, r0, k, k_ld, n, js0, scale, s, ld_s);
}

/* F16 keys [j0, j0 + n) (0 < n < VW) stored transposed (k_ld bytes from
 * one element to the next) as floats at out[i * VW + j], the lanes past n 0:
 * a partial vector of keys to score from the scratch, not from past the
 * step's keys. */
static ATTN_ALWAYS_INLINE void attn_stage_t_part(int64_t d, const uint8_t *k, size_t k_ld, int j0,
                                                 int n, float *out)
{
    for (int64_t i = 0; i < d; i++)
        v_store(out + i * VW, v_load_h_part((const uint16_t *)(k + (size_t)i * k_ld) + j0, n));
}

/* The scores of the rows [0, R) against cnt keys stored transposed (F16
 * from the cache, or F32 staged with whole vectors), row-major at s with
 * ld_s = cnt rounded up to VW: whole vectors of keys in register tiles, a
 * last partial vector (F16) through the scratch `part` (d * VW floats). */
static ATTN_ALWAYS_INLINE void attn_scores_t_all(const int FK, int64_t d, int nq, int R,
                                                 const float *q, int64_t ldq, const int32_t *lim,
                                                 int cnt, const uint8_t *k, size_t k_ld,
                                                 float scale, float *s, int ld_s, float *part)
{
    const int whole = FK == ATTN_F16 ? cnt / VW * VW : ld_s;
    attn_scores_t_rows(FK, d, nq, R, q, ldq, lim, k, k_ld, whole, 0, scale, s, ld_s);
    if (whole < cnt) { /* the last keys, fewer than a vector, staged */
        attn_stage_t_part(d, k, k_ld, whole, cnt - whole, part);
        attn_scores_t_rows(ATTN_F32, d, nq, R, q, ldq, lim, (const uint8_t *)part,
                           VW * sizeof(float), VW, whole, scale, s, ld_s);
    }
}

/* attn_softmax_t's maxima, weights and sums for the rows [r0, r0 + G): one
 * row (G = 1, v_hmax and v_hsum) or ATTN_SOFTMAX_GROUP rows whose
 * reductions go together (v_hmax8_store, v_hsum8_store). */
static ATTN_ALWAYS_INLINE void attn_softmax_t_rows(const int G, int r0, int ld_s, float *s,
                                                   const float *mold, float *mx, float *sum)
{
    V mv[8], sv[8];
    float mr[8];
    REALM__UNROLL(8)
    for (int i = 0; i < G; i++) {
        const float *sr = s + (size_t)(r0 + i) * (size_t)ld_s;
        mv[i] = v_load(sr);
        for (int j = VW; j < ld_s; j += VW)
            mv[i] = v_max(mv[i], v_load(sr + j));
    }
    if (G == 1)
        mr[0] = v_hmax(mv[0]);
    else
        v_hmax8_store(mv, mr);
    REALM__UNROLL(8)
    for (int i = 0; i < G; i++) {
        float *sr = s + (size_t)(r0 + i) * (size_t)ld_s;
        const float mo = mold[r0 + i], m = mr[i] > mo ? mr[i] : mo;
        const V mb = v_set1(m);
        sv[i] = v_zero();
        for (int j = 0; j < ld_s; j += VW) {
            const V pv = v_exp(v_sub(v_load(sr + j), mb));
            v_store(sr + j, pv);
            sv[i] = v_add(sv[i], pv);
        }
        mx[r0 + i] = m;
    }
    if (G == 1)
        sum[r0] = v_hsum(sv[0]);
    else
        v_hsum8_store(sv, 1.0f, sum + r0);
}

/*
 * The online softmax of R rows of row-major scores (s[r * ld_s + j], ld_s a
 * multiple of VW, -inf past a row's keys), tokens of nq rows: per row its
 * maximum M = max(mold, the scores') by vectors, each score replaced by
 * e^(s - M) and their sum taken by vectors in key order, then reduced (each
 * token's heads in groups of ATTN_SOFTMAX_GROUP by a tree over the group,
 * the rest one by one: a head's path is the same in every step and tile);
 * then, by vectors of rows, corr = e^(mold - M) and l = l * corr + the sum.
 * A -inf lane weighs 0 and adds exactly 0, so a row's numbers are the same
 * bits whatever ld_s beyond its keys. mold may be corr.
 */
static ATTN_ALWAYS_INLINE void attn_softmax_t(int R, int nq, int ld_s, float *s, const float *mold,
                                              float *mx, float *corr, float *l, float *sum)
{
    for (int t0 = 0; t0 < R; t0 += nq) {
        int h = 0;
        if (ATTN_SOFTMAX_GROUP == 8)
            for (; h + 8 <= nq; h += 8)
                attn_softmax_t_rows(8, t0 + h, ld_s, s, mold, mx, sum);
        for (; h < nq; h++)
            attn_softmax_t_rows(1, t0 + h, ld_s, s, mold, mx, sum);
    }
    int r = 0;
    for (; r + VW <= R; r += VW) {
        const V cr = v_exp(v_sub(v_load(mold + r), v_load(mx + r)));
        v_store(corr + r, cr);
        v_store(l + r, v_add(v_mul(v_load(l + r), cr), v_load(sum + r)));
    }
    if (r < R) {
        const int n = R - r;
        const V cr = v_exp(v_sub(v_load_part(mold + r, n), v_load_part(mx + r, n)));
        v_store_part(corr + r, n, cr);
        v_store_part(l + r, n, v_add(v_mul(v_load_part(l + r, n), cr), v_load_part(sum + r, n)));
    }
}

/* The scratch floats of a step with F16 keys: the scores (nq rows of cnt
 * keys rounded up to VW), a partial key vector (d * VW), the maxima,
 * corrections and sums (3 nq), then the Q8_0 values' scales. */
static ATTN_ALWAYS_INLINE void attn_step_t(const int FV, int64_t d, int nq, const float *q, int cnt,
                                           const uint16_t *k, size_t k_ld, const uint8_t *v,
                                           size_t v_stride, float scale, float *m, float *l,
                                           float *acc, float *s)
{
    const int ld_s = (cnt + VW - 1) / VW * VW;
    const int32_t lim = cnt;
    float *part = s + (size_t)nq * (size_t)ld_s, *mx = part + d * VW, *corr = mx + nq;
    float *sum = corr + nq;
    attn_scores_t_all(ATTN_F16, d, nq, nq, q, nq * d, &lim, cnt, (const uint8_t *)k, k_ld, scale, s,
                      ld_s, part);
    attn_softmax_t(nq, nq, ld_s, s, m, mx, corr, l, sum);
    memcpy(m, mx, (size_t)nq * sizeof *m);
    attn_values(FV, d, nq, cnt, v, v_stride, sum + nq, s, 1, ld_s, corr, acc);
}

void FN(attn_f16)(int64_t d, int nq, const float *q, int cnt, const uint16_t *k, int64_t k_ld,
                  const uint16_t *v, int64_t ld, float scale, float *m, float *l, float *acc,
                  float *s)
{
    if (d % VW != 0) {
        realm__attn_f16_ref(d, nq, q, cnt, k, k_ld, v, ld, scale, m, l, acc, s);
        return;
    }
    attn_step_t(ATTN_F16, d, nq, q, cnt, k, (size_t)k_ld * 2, (const uint8_t *)v, (size_t)ld * 2,
                scale, m, l, acc, s);
}

/* Q8_0 on either side: d is a multiple of 32, so of VW too. */
void FN(attn_q8_0)(int64_t d, int nq, const float *q, int cnt, const void *k, size_t k_stride,
                   const void *v, size_t v_stride, float scale, float *m, float *l, float *acc,
                   float *s)
{
    attn_step(ATTN_Q8, ATTN_Q8, d, nq, q, cnt, k, k_stride, v, v_stride, scale, m, l, acc, s);
}

/* F16 keys stored transposed: k_stride is the bytes from one element of a
 * key to the next. */
void FN(attn_f16_q8_0)(int64_t d, int nq, const float *q, int cnt, const void *k, size_t k_stride,
                       const void *v, size_t v_stride, float scale, float *m, float *l, float *acc,
                       float *s)
{
    attn_step_t(ATTN_Q8, d, nq, q, cnt, k, k_stride, v, v_stride, scale, m, l, acc, s);
}

void FN(attn_q8_0_f16)(int64_t d, int nq, const float *q, int cnt, const void *k, size_t k_stride,
                       const void *v, size_t v_stride, float scale, float *m, float *l, float *acc,
                       float *s)
{
    attn_step(ATTN_Q8, ATTN_F16, d, nq, q, cnt, k, k_stride, v, v_stride, scale, m, l, acc, s);
}

/* Rows [0, cnt) of format F (F16 or Q8_0), stride bytes apart, as d floats
 * each at out: exact (an F16 number, or a Q8_0 code times its block's scale,
 * as the steps above convert them). */
static ATTN_ALWAYS_INLINE void attn_stage(const int F, int64_t d, int cnt, const uint8_t *x,
                                          size_t stride, float *out)
{
    for (int j = 0; j < cnt; j++, out += d) {
        const uint8_t *xj = x + (size_t)j * stride;
        if (F == ATTN_Q8) {
            const realm_block_q8_0 *b = (const realm_block_q8_0 *)xj;
            for (int64_t c0 = 0; c0 < d; c0 += REALM_QK8_0, b++) {
                const V dk = v_set1_h(b->d);
                REALM__UNROLL(4)
                for (int u = 0; u < REALM_QK8_0 / VW; u++)
                    v_store(out + c0 + u * VW, v_mul(v_load_i8(b->qs + u * VW), dk));
            }
        } else {
            for (int64_t c = 0; c < d; c += VW)
                v_store(out + c, v_load_h((const uint16_t *)xj + c));
        }
    }
}

/* Register tile of the prefill P.V: rows x column slices (AVX2: 4 x 3 of 16
 * registers; AVX-512: 6 x 4 of 32). */
#define ATTN_PV_RT (VW == 16 ? 6 : 4)
#define ATTN_PV_CU (VW == 16 ? 4 : 3)

/* Where tile row rho's accumulator starts: token rho / nq, head rho % nq. */
static inline float *attn_tile_acc(float *state, int64_t ld_state, int nq, int64_t d, int rho)
{
    return state + (rho / nq) * ld_state + 2 * nq + (rho % nq) * d;
}

/* acc = acc * corr + sum_{j < cnt} p[j][row] v_j for the RT tile rows from
 * rho0 and the CU column slices from c: per (row, column) the operations of
 * attn_values_tile in the same order, the tile only keeping more of them in
 * registers (each staged value vector loaded once for RT rows). */
static ATTN_ALWAYS_INLINE void attn_tile_values(const int RT, const int CU, int64_t d, int nq,
                                                int rho0, int64_t c, int cnt, const float *vs,
                                                const float *p, int64_t p_j, int64_t p_r,
                                                const float *corr, float *state, int64_t ld_state)
{
    V a[ATTN_PV_RT * ATTN_PV_CU];
    float *ar[ATTN_PV_RT];
    REALM__UNROLL(8)
    for (int i = 0; i < RT; i++) {
        ar[i] = attn_tile_acc(state, ld_state, nq, d, rho0 + i) + c;
        const V cr = v_set1(corr[rho0 + i]);
        REALM__UNROLL(4)
        for (int u = 0; u < CU; u++)
            a[i * CU + u] = v_mul(v_load(ar[i] + u * VW), cr);
    }
    for (int j = 0; j < cnt; j++) {
        const float *vj = vs + (size_t)j * (size_t)d + c;
        const float *pj = p + j * p_j + rho0 * p_r;
        V vv[ATTN_PV_CU];
        REALM__UNROLL(4)
        for (int u = 0; u < CU; u++)
            vv[u] = v_load(vj + u * VW);
        REALM__UNROLL(8)
        for (int i = 0; i < RT; i++) {
            const V pb = v_set1(pj[i * p_r]);
            REALM__UNROLL(4)
            for (int u = 0; u < CU; u++)
                a[i * CU + u] = v_fma(pb, vv[u], a[i * CU + u]);
        }
    }
    REALM__UNROLL(8)
    for (int i = 0; i < RT; i++)
        REALM__UNROLL(4)
    for (int u = 0; u < CU; u++)
        v_store(ar[i] + u * VW, a[i * CU + u]);
}

/* attn_tile_values over the rows [rho0, rho1), CU column slices from c. */
static ATTN_ALWAYS_INLINE void attn_tile_values_rows(const int CU, int64_t d, int nq, int rho0,
                                                     int rho1, int64_t c, int cnt, const float *vs,
                                                     const float *p, int64_t p_j, int64_t p_r,
                                                     const float *corr, float *state,
                                                     int64_t ld_state)
{
    int rho = rho0;
    for (; rho + ATTN_PV_RT <= rho1; rho += ATTN_PV_RT)
        attn_tile_values(ATTN_PV_RT, CU, d, nq, rho, c, cnt, vs, p, p_j, p_r, corr, state,
                         ld_state);
    for (; rho < rho1; rho++)
        attn_tile_values(1, CU, d, nq, rho, c, cnt, vs, p, p_j, p_r, corr, state, ld_state);
}

/*
 * The prefill tile (realm_ops.attn_tile). The step's keys and values are
 * staged as floats once; the scores of each token's rows are computed by
 * attn_scores_tile exactly as in the token's own step, into one matrix
 * sc[j * R + row] over the tile's R = nt * nq rows, a token's keys past its
 * limit set to -inf (they weigh e^-inf = 0 and never raise a maximum); the
 * maxima, corrections, weights and sums then run along vectors of the whole
 * tile's rows; the values are summed by a register tile of rows x columns,
 * each run of tokens with the same limit over its own keys only. Per row,
 * every number goes through the operations of attn_step in the same order
 * (e^x by the same bits in every lane; a masked weight adds exactly 0 to a
 * sum), so each token's state comes out bitwise as from its own step.
 */
void FN(attn_tile)(realm_type tk, realm_type tv, int64_t d, int nq, int nt, const float *q,
                   int64_t ldq, int cnt, const int32_t *lim, const void *k, size_t k_stride,
                   const void *v, size_t v_stride, float scale, float *state, int64_t ld_state,
                   float *s)
{
    if (d % VW != 0) { /* F16 only (Q8_0 rows are whole blocks): as attn_f16 */
        realm__attn_tile_ref(tk, tv, d, nq, nt, q, ldq, cnt, lim, k, k_stride, v, v_stride, scale,
                             state, ld_state, s);
        return;
    }
    const int R = nt * nq, ld_s = (cnt + VW - 1) / VW * VW;
    float *ks = s, *vs = ks + (size_t)ld_s * (size_t)d, *sc = vs + (size_t)cnt * (size_t)d;
    float *mx = sc + (size_t)ld_s * (size_t)R, *corr = mx + R, *ls = corr + R, *sum = ls + R;
    if (tv == REALM_TYPE_Q8_0)
        attn_stage(ATTN_Q8, d, cnt, v, v_stride, vs);
    else
        attn_stage(ATTN_F16, d, cnt, v, v_stride, vs);
    for (int t = 0; t < nt; t++) {
        const float *m = state + t * ld_state;
        for (int r = 0; r < nq; r++) {
            corr[t * nq + r] = m[r];
            ls[t * nq + r] = m[nq + r];
        }
    }
    int64_t p_j, p_r; /* where key j's weight for row rho is: sc[j * p_j + rho * p_r] */
    if (tk == REALM_TYPE_F16) {
        /* keys stored transposed: staged so, whole vectors of keys (0 past
         * cnt), scored and weighed as in attn_step_t */
        const int whole = cnt / VW * VW;
        for (int64_t i = 0; i < d; i++) {
            const uint16_t *ki = (const uint16_t *)((const uint8_t *)k + (size_t)i * k_stride);
            float *o = ks + i * ld_s;
            for (int j = 0; j < whole; j += VW)
                v_store(o + j, v_load_h(ki + j));
            if (whole < cnt)
                v_store(o + whole, v_load_h_part(ki + whole, cnt - whole));
        }
        attn_scores_t_all(ATTN_F32, d, nq, R, q, ldq, lim, cnt, (const uint8_t *)ks,
                          (size_t)ld_s * sizeof(float), scale, sc, ld_s, NULL);
        attn_softmax_t(R, nq, ld_s, sc, corr, mx, corr, ls, sum);
        p_j = 1;
        p_r = ld_s;
    } else {
        attn_stage(ATTN_Q8, d, cnt, k, k_stride, ks);
        const uint8_t *kb = (const uint8_t *)ks;
        const size_t row = (size_t)d * sizeof(float);
        for (int t = 0; t < nt; t++) {
            const float *qt = q + t * ldq;
            float *st = sc + t * nq;
            const int n = lim[t];
            attn_scores_rows(ATTN_F32, d, R, nq, qt, n, kb, row, scale, st);
            for (int j = n; j < cnt; j++)
                for (int r = 0; r < nq; r++)
                    st[(size_t)j * (size_t)R + r] = -INFINITY;
        }
        /* new maxima, corrections e^(old - new) (over the old maxima staged
         * in corr), weights e^(s - new) and sums */
        attn_softmax(R, cnt, sc, corr, mx, corr, ls);
        p_j = R;
        p_r = 1;
    }
    for (int t = 0; t < nt; t++) {
        float *m = state + t * ld_state;
        for (int r = 0; r < nq; r++) {
            m[r] = mx[t * nq + r];
            m[nq + r] = ls[t * nq + r];
        }
    }

    /* the values: each run of tokens with the same limit over its keys */
    for (int t0 = 0, t1; t0 < nt; t0 = t1) {
        for (t1 = t0 + 1; t1 < nt && lim[t1] == lim[t0];)
            t1++;
        const int rho0 = t0 * nq, rho1 = t1 * nq, n = lim[t0];
        int64_t c = 0;
        for (; c + ATTN_PV_CU * VW <= d; c += ATTN_PV_CU * VW)
            attn_tile_values_rows(ATTN_PV_CU, d, nq, rho0, rho1, c, n, vs, sc, p_j, p_r, corr,
                                  state, ld_state);
        switch ((d - c) / VW) {
        case 1:
            attn_tile_values_rows(1, d, nq, rho0, rho1, c, n, vs, sc, p_j, p_r, corr, state,
                                  ld_state);
            break;
        case 2:
            attn_tile_values_rows(2, d, nq, rho0, rho1, c, n, vs, sc, p_j, p_r, corr, state,
                                  ld_state);
            break;
        case 3:
            attn_tile_values_rows(3, d, nq, rho0, rho1, c, n, vs, sc, p_j, p_r, corr, state,
                                  ld_state);
            break;
        default:
            break;
        }
    }
}
