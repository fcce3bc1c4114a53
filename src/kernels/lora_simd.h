/*
 * The LoRA kernels (realm_ops.lora_shrink, lora_expand) of ops_avx2.c and
 * ops_avx512.c, written once over the vector abstraction of ops_simd.h (V,
 * VW, v_*, and v_load_bf, which each file defines).
 *
 * Batch invariance is the point of their shape: a row's result must not
 * depend on how many rows come with it or where a thread's columns start.
 * The shrink takes rows in groups of 4 sharing each load of A, but every row
 * accumulates exactly as it would alone (two accumulators over chunks of
 * 2 VW, a last VW chunk into the first, one reduction, then the tail in
 * scalar fused multiply-adds). The expand computes each output element by
 * the same chain of fused multiply-adds over j whether it falls in a vector
 * or the scalar tail, so any column split gives the same bits.
 */
#include <math.h>

#define LORA_ALWAYS_INLINE inline __attribute__((always_inline))

static LORA_ALWAYS_INLINE V lora_load(realm_type t, const void *p, int64_t i)
{
    if (t == REALM_TYPE_F32)
        return v_load((const float *)p + i);
    if (t == REALM_TYPE_F16)
        return v_load_h((const uint16_t *)p + i);
    return v_load_bf((const uint16_t *)p + i);
}

static LORA_ALWAYS_INLINE float lora_elem(realm_type t, const void *p, int64_t i)
{
    if (t == REALM_TYPE_F32)
        return ((const float *)p)[i];
    const uint16_t h = ((const uint16_t *)p)[i];
    return t == REALM_TYPE_F16 ? realm_fp16_to_fp32(h) : realm_bf16_to_fp32(h);
}

/* out[r] = a . x[r] for NR rows (NR <= 4, a constant at each call). */
static LORA_ALWAYS_INLINE void lora_dot_rows(realm_type t, const int NR, int64_t n, const void *a,
                                             const float *const *x, float *out)
{
    V a0[4], a1[4];
    for (int r = 0; r < NR; r++)
        a0[r] = a1[r] = v_zero();
    int64_t k = 0;
    for (; k + 2 * VW <= n; k += 2 * VW) {
        const V w0 = lora_load(t, a, k), w1 = lora_load(t, a, k + VW);
        for (int r = 0; r < NR; r++) {
            a0[r] = v_fma(w0, v_load(x[r] + k), a0[r]);
            a1[r] = v_fma(w1, v_load(x[r] + k + VW), a1[r]);
        }
    }
    if (k + VW <= n) {
        const V w0 = lora_load(t, a, k);
        for (int r = 0; r < NR; r++)
            a0[r] = v_fma(w0, v_load(x[r] + k), a0[r]);
        k += VW;
    }
    for (int r = 0; r < NR; r++) {
        float s = v_hsum(v_add(a0[r], a1[r]));
        for (int64_t i = k; i < n; i++)
            s = fmaf(lora_elem(t, a, i), x[r][i], s);
        out[r] = s;
    }
}

static LORA_ALWAYS_INLINE void lora_shrink_t(realm_type t, int64_t n, const void *a, int n_rows,
                                             const int32_t *rows, const float *x, int64_t ldx,
                                             float *out, int64_t ld_out)
{
    const float *xs[4];
    float s[4];
    int i = 0;
    for (; i + 4 <= n_rows; i += 4) {
        for (int r = 0; r < 4; r++)
            xs[r] = x + (int64_t)rows[i + r] * ldx;
        lora_dot_rows(t, 4, n, a, xs, s);
        for (int r = 0; r < 4; r++)
            out[(int64_t)(i + r) * ld_out] = s[r];
    }
    for (; i < n_rows; i++) {
        xs[0] = x + (int64_t)rows[i] * ldx;
        lora_dot_rows(t, 1, n, a, xs, s);
        out[(int64_t)i * ld_out] = s[0];
    }
}

void FN(lora_shrink)(realm_type at, int64_t n, const void *a, int n_rows, const int32_t *rows,
                     const float *x, int64_t ldx, float *out, int64_t ld_out)
{
    if (at == REALM_TYPE_F32)
        lora_shrink_t(REALM_TYPE_F32, n, a, n_rows, rows, x, ldx, out, ld_out);
    else if (at == REALM_TYPE_F16)
        lora_shrink_t(REALM_TYPE_F16, n, a, n_rows, rows, x, ldx, out, ld_out);
    else
        lora_shrink_t(REALM_TYPE_BF16, n, a, n_rows, rows, x, ldx, out, ld_out);
}

/* y[o .. o + NV VW) of one row += s * sum_j t[j] bt[j][...]. */
static LORA_ALWAYS_INLINE void lora_expand_cols(realm_type t, const int NV, int64_t rank,
                                                const void *bt, int64_t ldb, int64_t o,
                                                const float *ti, float s, float *yi)
{
    V c[4];
    for (int v = 0; v < NV; v++)
        c[v] = v_zero();
    for (int64_t j = 0; j < rank; j++) {
        const V tj = v_set1(ti[j]);
        for (int v = 0; v < NV; v++)
            c[v] = v_fma(tj, lora_load(t, bt, j * ldb + o + v * VW), c[v]);
    }
    const V vs = v_set1(s);
    for (int v = 0; v < NV; v++)
        v_store(yi + o + v * VW, v_fma(vs, c[v], v_load(yi + o + v * VW)));
}

static LORA_ALWAYS_INLINE void lora_expand_t(realm_type t, int64_t rank, const void *bt,
                                             int64_t ldb, int64_t o0, int64_t o1, int n_rows,
                                             const int32_t *rows, const float *tv, int64_t ldt,
                                             const float *scale, float wscale, float *y,
                                             int64_t ldy)
{
    /* tiles of 4 vectors of columns: B's tile (rank x 4 VW) stays in L1
     * while every row goes over it */
    int64_t o = o0;
    for (; o + 4 * VW <= o1; o += 4 * VW)
        for (int i = 0; i < n_rows; i++)
            lora_expand_cols(t, 4, rank, bt, ldb, o, tv + (int64_t)i * ldt, scale[i] * wscale,
                             y + (int64_t)rows[i] * ldy);
    for (; o + VW <= o1; o += VW)
        for (int i = 0; i < n_rows; i++)
            lora_expand_cols(t, 1, rank, bt, ldb, o, tv + (int64_t)i * ldt, scale[i] * wscale,
                             y + (int64_t)rows[i] * ldy);
    for (int i = 0; i < n_rows && o < o1; i++) {
        const float *ti = tv + (int64_t)i * ldt;
        float *yi = y + (int64_t)rows[i] * ldy;
        const float s = scale[i] * wscale;
        for (int64_t oo = o; oo < o1; oo++) {
            float acc = 0;
            for (int64_t j = 0; j < rank; j++)
                acc = fmaf(ti[j], lora_elem(t, bt, j * ldb + oo), acc);
            yi[oo] = fmaf(s, acc, yi[oo]);
        }
    }
}

void FN(lora_expand)(realm_type bt_type, int64_t rank, const void *bt, int64_t ldb, int64_t o0,
                     int64_t o1, int n_rows, const int32_t *rows, const float *t, int64_t ldt,
                     const float *scale, float wscale, float *y, int64_t ldy)
{
    if (bt_type == REALM_TYPE_F32)
        lora_expand_t(REALM_TYPE_F32, rank, bt, ldb, o0, o1, n_rows, rows, t, ldt, scale, wscale, y,
                      ldy);
    else if (bt_type == REALM_TYPE_F16)
        lora_expand_t(REALM_TYPE_F16, rank, bt, ldb, o0, o1, n_rows, rows, t, ldt, scale, wscale, y,
                      ldy);
    else
        lora_expand_t(REALM_TYPE_BF16, rank, bt, ldb, o0, o1, n_rows, rows, t, ldt, scale, wscale,
                      y, ldy);
}
