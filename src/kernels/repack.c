/*
 * Packed weights (realm/kernels.h, layouts in repack_internal.h): the
 * repacking, the product's loops and the scalar reference kernel.
 *
 * Why: a product with a few tokens (decode, speculative verification,
 * batched decode) is compute-bound in the row-major kernels on a fast
 * machine. Per Q4_K block of one row, vec_dot spends ~50 instructions on
 * unpacking codes and scales and summing sub-blocks across lanes; the
 * multi-vector kernel ~1.2 ns more per token. With 16 rows interleaved, a
 * zmm holds one dword of each row, so vpdpbusd takes a token's broadcast
 * activations against 16 rows at once, and scales, mins and the float
 * tail are applied to 16 rows per instruction: about 5.5 instructions per
 * row, block and token on the multiply pipes, and the codes' unpacking is
 * shared by up to 8 tokens. The blocked kernels (matmul.c) reach the same
 * arithmetic by repacking a panel per product, which costs more than the
 * products of a few tokens; done once at load it costs nothing per product.
 */
#include <stddef.h>
#include <string.h>

#include "core/error_internal.h"
#include "kernels_internal.h"
#include "repack_internal.h"

_Static_assert(offsetof(realm_block_q8_0, qs) == 2 && offsetof(realm_block_q4_0, qs) == 2,
               "repack_b32 reads d, then the codes");

/* Tokens whose activations stay in L2 while the panels pass over them. */
#define PACKED_TILE 64

static const realm__panel_fn *const panel_tables[REALM_ISA_COUNT] = {
    [REALM_ISA_AVX2] = realm__panel_avx2,
    [REALM_ISA_AVX512] = realm__panel_avx512,
};

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Bytes of one unit (a super-block; Q8_0: two blocks) of a panel, 0 for
 * a type without a layout. */
static size_t panel_block_size(realm_type t)
{
    return t == REALM_TYPE_Q4_K   ? sizeof(realm__q4_K_x16)
           : t == REALM_TYPE_Q5_K ? sizeof(realm__q5_K_x16)
           : t == REALM_TYPE_Q6_K ? sizeof(realm__q6_K_x16)
           : t == REALM_TYPE_Q8_0 ? sizeof(realm__q8_0_x16)
           : t == REALM_TYPE_Q4_0 ? sizeof(realm__q4_0_x16)
                                  : 0;
}

/* Columns of one unit. */
static int64_t unit_cols(realm_type t)
{
    return t == REALM_TYPE_Q8_0 || t == REALM_TYPE_Q4_0 ? 64 : REALM_QK_K;
}

size_t realm_repack_size(realm_type t, int64_t rows, int64_t cols)
{
    if (rows <= 0 || cols <= 0 || rows % REALM__PANEL_ROWS != 0 || cols % unit_cols(t) != 0)
        return 0;
    return (size_t)(rows / REALM__PANEL_ROWS) * (size_t)(cols / unit_cols(t)) * panel_block_size(t);
}

bool realm_repack_fast(const realm_kernels *k, realm_type t)
{
    return t >= 0 && t < REALM_TYPE_COUNT && panel_tables[k->isa] != NULL &&
           panel_tables[k->isa][t] != NULL;
}

/* Scale and min of sub-block s of a Q4_K block (as dot_ref.c reads them). */
static void q4_K_scale_min(const uint8_t *q, int s, uint8_t *sc, uint8_t *m)
{
    if (s < 4) {
        *sc = q[s] & 63;
        *m = q[s + 4] & 63;
    } else {
        *sc = (uint8_t)((q[s + 4] & 0x0f) | (q[s - 4] >> 6) << 4);
        *m = (uint8_t)((q[s + 4] >> 4) | (q[s] >> 6) << 4);
    }
}

static void repack_q6_K(const void *W, int64_t nb, int64_t p0, int64_t p1, void *P)
{
    const realm_block_q6_K *w = W;
    realm__q6_K_x16 *out = P;
    for (int64_t p = p0; p < p1; p++)
        for (int64_t b = 0; b < nb; b++) {
            realm__q6_K_x16 *o = &out[p * nb + b];
            memset(o->pad, 0, sizeof o->pad);
            for (int r = 0; r < REALM__PANEL_ROWS; r++) {
                const realm_block_q6_K *x = &w[(p * REALM__PANEL_ROWS + r) * nb + b];
                for (int i = 0; i < 32; i++)
                    memcpy(&o->ql[i][4 * r], x->ql + 4 * i, 4);
                for (int i = 0; i < 16; i++)
                    memcpy(&o->qh[i][4 * r], x->qh + 4 * i, 4);
                for (int s = 0; s < 16; s++)
                    o->sc[s][r] = x->scales[s];
                o->d[r] = x->d;
            }
        }
}

/* Q8_0 and Q4_0 (nib): two blocks of 16 rows per unit, the codes' dwords
 * as they are (Q4_0's nibbles) or plus 128 (Q8_0's). */
static void repack_b32(const void *W, int64_t nu, int64_t p0, int64_t p1, void *P, bool nib)
{
    const size_t in_size = nib ? sizeof(realm_block_q4_0) : sizeof(realm_block_q8_0);
    const size_t unit = nib ? sizeof(realm__q4_0_x16) : sizeof(realm__q8_0_x16);
    const int dwords = nib ? 4 : 8; /* of codes per block */
    for (int64_t p = p0; p < p1; p++)
        for (int64_t u = 0; u < nu; u++) {
            uint8_t *o = (uint8_t *)P + (size_t)(p * nu + u) * unit;
            uint8_t(*qs)[64] = nib ? ((realm__q4_0_x16 *)o)->qs : ((realm__q8_0_x16 *)o)->qs;
            uint16_t(*d)[16] = nib ? ((realm__q4_0_x16 *)o)->d : ((realm__q8_0_x16 *)o)->d;
            for (int r = 0; r < REALM__PANEL_ROWS; r++)
                for (int k = 0; k < 2; k++) {
                    /* both block types: uint16_t d, then the codes */
                    const uint8_t *x =
                        (const uint8_t *)W +
                        (size_t)((p * REALM__PANEL_ROWS + r) * 2 * nu + 2 * u + k) * in_size;
                    for (int i = 0; i < dwords; i++)
                        for (int l = 0; l < 4; l++)
                            qs[dwords * k + i][4 * r + l] =
                                (uint8_t)(x[2 + 4 * i + l] + (nib ? 0 : 128));
                    memcpy(&d[k][r], x, sizeof d[k][r]);
                }
        }
}

void realm_repack_rows(realm_type t, const void *W, int64_t cols, int64_t r0, int64_t r1, void *P)
{
    REALM_ASSERT(panel_block_size(t) > 0 && cols % unit_cols(t) == 0);
    REALM_ASSERT(r0 % REALM__PANEL_ROWS == 0 && r1 % REALM__PANEL_ROWS == 0);
    const int64_t nb = cols / unit_cols(t);
    if (t == REALM_TYPE_Q8_0 || t == REALM_TYPE_Q4_0) {
        repack_b32(W, nb, r0 / REALM__PANEL_ROWS, r1 / REALM__PANEL_ROWS, P, t == REALM_TYPE_Q4_0);
        return;
    }
    if (t == REALM_TYPE_Q6_K) {
        repack_q6_K(W, nb, r0 / REALM__PANEL_ROWS, r1 / REALM__PANEL_ROWS, P);
        return;
    }
    /* Q4_K and Q5_K: Q5_K's block is Q4_K's fields with qh before qs */
    const bool five = t == REALM_TYPE_Q5_K;
    const size_t in_size = realm_type_get(t)->type_size, out_size = panel_block_size(t);
    for (int64_t p = r0 / REALM__PANEL_ROWS; p < r1 / REALM__PANEL_ROWS; p++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *ob = (uint8_t *)P + (size_t)(p * nb + b) * out_size;
            realm__q4_K_x16 *o = (realm__q4_K_x16 *)ob;
            for (int r = 0; r < REALM__PANEL_ROWS; r++) {
                const uint8_t *x =
                    (const uint8_t *)W + (size_t)((p * REALM__PANEL_ROWS + r) * nb + b) * in_size;
                const uint8_t *qs =
                    five ? ((const realm_block_q5_K *)x)->qs : ((const realm_block_q4_K *)x)->qs;
                const realm_block_q4_K *k = (const realm_block_q4_K *)x; /* d, dmin, scales */
                for (int i = 0; i < 32; i++)
                    memcpy(&o->qs[i][4 * r], qs + 4 * i, 4);
                for (int s = 0; s < 8; s++)
                    q4_K_scale_min(k->scales, s, &o->sc[s][r], &o->mn[s][r]);
                o->d[r] = k->d;
                o->dmin[r] = k->dmin;
                if (five)
                    for (int j = 0; j < 8; j++)
                        memcpy(&((realm__q5_K_x16 *)ob)->qh[j][4 * r],
                               ((const realm_block_q5_K *)x)->qh + 4 * j, 4);
            }
        }
}

/*
 * The scalar reference, in the SIMD kernels' order: per block, each
 * sub-block's integer sum times the float d * scale, minus dmin times the
 * integer sum of mins, then times the token's d into one accumulator.
 */
static void k4_panel_ref(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride, int nt,
                         float *out, int64_t ld, uint16_t mask, bool add, bool five)
{
    const size_t block = five ? sizeof(realm__q5_K_x16) : sizeof(realm__q4_K_x16);
    for (int e = 0; e < nt; e++) {
        const realm_block_q8_K *y = (const realm_block_q8_K *)(x + (size_t)e * x_stride);
        for (int r = 0; r < REALM__PANEL_ROWS; r++) {
            if (!(mask >> r & 1))
                continue;
            float acc = 0;
            for (int64_t b = 0; b < nb; b++) {
                const realm__q4_K_x16 *p =
                    (const realm__q4_K_x16 *)((const uint8_t *)panel + (size_t)b * block);
                const float d = realm_fp16_to_fp32(p->d[r]);
                float fs = 0;
                int32_t ms = 0;
                for (int s = 0; s < 8; s++) {
                    int32_t is = 0;
                    for (int i = 0; i < 8; i++) {
                        const uint8_t *q = &p->qs[8 * (s / 2) + i][4 * r];
                        const uint8_t *h = five ? &((const realm__q5_K_x16 *)p)->qh[i][4 * r] : q;
                        for (int l = 0; l < 4; l++) {
                            const int c = ((q[l] >> (4 * (s % 2))) & 0x0f) |
                                          (five ? (h[l] >> s & 1) << 4 : 0);
                            is += c * y[b].qs[32 * s + 4 * i + l];
                        }
                    }
                    fs += (float)is * (d * (float)p->sc[s][r]);
                    ms += p->mn[s][r] * (y[b].bsums[2 * s] + y[b].bsums[2 * s + 1]);
                }
                fs -= (float)ms * realm_fp16_to_fp32(p->dmin[r]);
                acc += fs * y[b].d;
            }
            float *o = out + e * ld + r;
            *o = add ? *o + acc : acc;
        }
    }
}

static void panel_q4_K_ref(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride,
                           const int32_t *ys, int nt, float *out, int64_t ld, uint16_t mask,
                           bool add)
{
    (void)ys;
    k4_panel_ref(panel, nb, x, x_stride, nt, out, ld, mask, add, false);
}

/* Q5_K: Q4_K's codes with the fifth bit from qh. */
static void panel_q5_K_ref(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride,
                           const int32_t *ys, int nt, float *out, int64_t ld, uint16_t mask,
                           bool add)
{
    (void)ys;
    k4_panel_ref(panel, nb, x, x_stride, nt, out, ld, mask, add, true);
}

/* Q6_K likewise: sub-blocks of 16, codes q + 32 with the offset taken out
 * as 32 d sum_s sc_s bsums[s] per block. */
static void panel_q6_K_ref(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride,
                           const int32_t *ys, int nt, float *out, int64_t ld, uint16_t mask,
                           bool add)
{
    (void)ys;
    const realm__q6_K_x16 *P = panel;
    for (int e = 0; e < nt; e++) {
        const realm_block_q8_K *y = (const realm_block_q8_K *)(x + (size_t)e * x_stride);
        for (int r = 0; r < REALM__PANEL_ROWS; r++) {
            if (!(mask >> r & 1))
                continue;
            float acc = 0;
            for (int64_t b = 0; b < nb; b++) {
                const realm__q6_K_x16 *p = &P[b];
                const float d = realm_fp16_to_fp32(p->d[r]);
                float fs = 0;
                int32_t ms = 0;
                for (int s = 0; s < 16; s++) {
                    const int h = s / 8, g = s % 8 / 2;
                    int32_t is = 0;
                    for (int l = 16 * (s % 2); l < 16 * (s % 2) + 16; l++) {
                        const int lo =
                            p->ql[16 * h + 8 * (g % 2) + l / 4][4 * r + l % 4] >> (4 * (g / 2)) &
                            0x0f;
                        const int hi = p->qh[8 * h + l / 4][4 * r + l % 4] >> (2 * g) & 3;
                        is += (lo | hi << 4) * y[b].qs[128 * h + 32 * g + l];
                    }
                    fs += (float)is * (d * (float)p->sc[s][r]);
                    ms += p->sc[s][r] * y[b].bsums[s];
                }
                fs -= (float)ms * (32 * d);
                acc += fs * y[b].d;
            }
            float *o = out + e * ld + r;
            *o = add ? *o + acc : acc;
        }
    }
}

/*
 * Q8_0 and Q4_0 (nib): per block, the integer sum of the codes (Q8_0's
 * + 128, Q4_0's nibbles for q + 8) times y minus the offset times the
 * block's sum of y, times d * dy, into one accumulator.
 */
static void b32_panel_ref(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride,
                          const int32_t *ys, int nt, float *out, int64_t ld, uint16_t mask,
                          bool add, bool nib)
{
    const size_t unit = nib ? sizeof(realm__q4_0_x16) : sizeof(realm__q8_0_x16);
    for (int e = 0; e < nt; e++) {
        const realm_block_q8_0 *y = (const realm_block_q8_0 *)(x + (size_t)e * x_stride);
        for (int r = 0; r < REALM__PANEL_ROWS; r++) {
            if (!(mask >> r & 1))
                continue;
            float acc = 0;
            for (int64_t u = 0; u < nb; u++) {
                const uint8_t *pu = (const uint8_t *)panel + (size_t)u * unit;
                const uint8_t(*qs)[64] =
                    nib ? ((const realm__q4_0_x16 *)pu)->qs : ((const realm__q8_0_x16 *)pu)->qs;
                const uint16_t(*dk)[16] =
                    nib ? ((const realm__q4_0_x16 *)pu)->d : ((const realm__q8_0_x16 *)pu)->d;
                for (int k = 0; k < 2; k++) {
                    const realm_block_q8_0 *yb = &y[2 * u + k];
                    int32_t is = 0;
                    for (int i = 0; i < 8; i++) /* elements 4i..4i+3, as the kernels */
                        for (int l = 0; l < 4; l++) {
                            const int q = !nib    ? qs[8 * k + i][4 * r + l]
                                          : i < 4 ? qs[4 * k + i][4 * r + l] & 0x0f
                                                  : qs[4 * k + i - 4][4 * r + l] >> 4;
                            is += q * yb->qs[4 * i + l];
                        }
                    is -= (nib ? 8 : 128) * ys[(size_t)e * 2 * nb + 2 * u + k];
                    acc += (float)is * (realm_fp16_to_fp32(dk[k][r]) * realm_fp16_to_fp32(yb->d));
                }
            }
            float *o = out + e * ld + r;
            *o = add ? *o + acc : acc;
        }
    }
}

static void panel_q8_0_ref(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride,
                           const int32_t *ys, int nt, float *out, int64_t ld, uint16_t mask,
                           bool add)
{
    b32_panel_ref(panel, nb, x, x_stride, ys, nt, out, ld, mask, add, false);
}

static void panel_q4_0_ref(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride,
                           const int32_t *ys, int nt, float *out, int64_t ld, uint16_t mask,
                           bool add)
{
    b32_panel_ref(panel, nb, x, x_stride, ys, nt, out, ld, mask, add, true);
}

static const realm__panel_fn panel_ref[REALM_TYPE_COUNT] = {
    [REALM_TYPE_Q4_0] = panel_q4_0_ref, [REALM_TYPE_Q4_K] = panel_q4_K_ref,
    [REALM_TYPE_Q5_K] = panel_q5_K_ref, [REALM_TYPE_Q6_K] = panel_q6_K_ref,
    [REALM_TYPE_Q8_0] = panel_q8_0_ref,
};

/* Scratch for the Q8_0 block sums of a tile of tokens (on the stack). */
#define YSUM_MAX (16 * 1024)

void realm_matmul_packed_rows(const realm_kernels *k, realm_type t, const void *P, int64_t cols,
                              int64_t r0, int64_t r1, const void *act, size_t act_stride, int64_t n,
                              float *out, int64_t ld_out, bool accumulate)
{
    REALM_ASSERT(realm_repack_size(t, REALM__PANEL_ROWS, cols) > 0);
    if (r0 >= r1 || n <= 0)
        return;
    const realm__panel_fn fn = realm_repack_fast(k, t) ? panel_tables[k->isa][t] : panel_ref[t];
    const int64_t nb = cols / unit_cols(t);
    const size_t panel_bytes = realm_repack_size(t, REALM__PANEL_ROWS, cols);
    const uint8_t *act_b = act;
    /* Q8_0: each token's sums of codes per block, for a tile of tokens */
    int32_t ysum[YSUM_MAX];
    const bool sums = t == REALM_TYPE_Q8_0 || t == REALM_TYPE_Q4_0;
    int64_t tile = PACKED_TILE;
    if (sums) {
        tile = min64(tile, YSUM_MAX / (2 * nb));
        REALM_ASSERT(tile >= 1); /* rows of up to 512 K columns */
    }
    for (int64_t e0 = 0; e0 < n; e0 += tile) {
        const int64_t ne = min64(tile, n - e0);
        for (int64_t e = 0; sums && e < ne; e++) {
            const realm_block_q8_0 *y =
                (const realm_block_q8_0 *)(act_b + (size_t)(e0 + e) * act_stride);
            for (int64_t b = 0; b < 2 * nb; b++) {
                int32_t s = 0;
                for (int i = 0; i < REALM_QK8_0; i++)
                    s += y[b].qs[i];
                ysum[e * 2 * nb + b] = s;
            }
        }
        for (int64_t p0 = r0 / REALM__PANEL_ROWS * REALM__PANEL_ROWS; p0 < r1;
             p0 += REALM__PANEL_ROWS) {
            /* the lanes of [r0, r1) in this panel */
            const int lo = p0 < r0 ? (int)(r0 - p0) : 0;
            const int hi = (int)min64(REALM__PANEL_ROWS, r1 - p0);
            const uint16_t mask =
                (uint16_t)((0xffffu >> (REALM__PANEL_ROWS - hi)) & (0xffffu << lo));
            const uint8_t *panel =
                (const uint8_t *)P + (size_t)(p0 / REALM__PANEL_ROWS) * panel_bytes;
            for (int64_t e = e0; e < e0 + ne; e += REALM__PANEL_NR)
                fn(panel, nb, act_b + (size_t)e * act_stride, act_stride,
                   sums ? ysum + (e - e0) * 2 * nb : NULL, (int)min64(REALM__PANEL_NR, e0 + ne - e),
                   out + e * ld_out + p0, ld_out, mask, accumulate);
        }
    }
}
