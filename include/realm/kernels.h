/*
 * realm/kernels.h — dot-product kernels over quantized rows, per instruction
 * set, chosen at run time from the CPU's features.
 *
 * A weight row of type t is multiplied with an activation row of type
 * realm_type_get(t)->vec_dot_type (Q8_0 for the 32-element quants, Q8_K for
 * the K-quants and IQ4_XS, F32/F16/BF16 for the float types). Activations are
 * converted once with from_float[vec_dot_type] and reused for every row.
 *
 *     const realm_kernels *k = realm_kernels_best();
 *     realm_type at = realm_type_get(REALM_TYPE_Q4_K)->vec_dot_type;
 *     k->from_float[at](x, xq, n);                 // x: n floats
 *     float s = k->vec_dot[REALM_TYPE_Q4_K](n, w_row, xq);
 *
 * Every SIMD table entry computes the same sum as the scalar reference
 * (REALM_ISA_SCALAR) up to float summation order. Kernels are stateless and
 * thread-safe; the tables are immutable.
 */
#ifndef REALM_KERNELS_H
#define REALM_KERNELS_H

#include "realm/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

typedef enum realm_isa {
    REALM_ISA_SCALAR = 0,
    REALM_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    REALM_ISA_AVX512 = 2, /* AVX-512 F/BW/VL/DQ + VNNI (and everything AVX2 needs) */
    REALM_ISA_COUNT
} realm_isa;

/* sum_i x[i] * y[i] over n elements; x of the weight type, y of its vec_dot_type. */
typedef float (*realm_vec_dot_fn)(int64_t n, const void *x, const void *y);
/* Convert n floats to an activation row of the table slot's type. */
typedef void (*realm_from_float_fn)(const float *x, void *y, int64_t n);

typedef struct realm_kernels {
    realm_isa isa;
    realm_vec_dot_fn vec_dot[REALM_TYPE_COUNT];       /* NULL: unsupported */
    realm_from_float_fn from_float[REALM_TYPE_COUNT]; /* activation types only */
} realm_kernels;

const char *realm_isa_name(realm_isa isa);
/* True if this CPU and OS can run code for `isa`. */
bool realm_cpu_supports(realm_isa isa);
/* The kernel table for `isa`, or NULL if the CPU cannot run it. */
const realm_kernels *realm_kernels_get(realm_isa isa);
/*
 * The best table this CPU runs. The environment variable REALM_ISA
 * (scalar, avx2, avx512) caps the choice, for testing and comparison.
 */
const realm_kernels *realm_kernels_best(void);

/*
 * out[r] = dot(row r of W, y) for the rows [r0, r1) that thread ith of nth
 * owns out of `rows`; W is rows x cols of type t, row-major, y is the
 * activation row already converted to t's vec_dot_type.
 */
void realm_matvec(const realm_kernels *k, realm_type t, const void *W, int64_t rows, int64_t cols,
                  const void *y, float *out, int ith, int nth);

/* ---- matrix products over several tokens ------------------------------- */

/*
 * For the rows r in [r0, r1) of W (row-major, realm_row_size(t, cols) bytes
 * per row) and the tokens e in [0, n):
 *
 *     out[e * ld_out + r] = (accumulate ? out[e * ld_out + r] : 0)
 *                           + dot(row r of W, act row e)
 *
 * where act row e starts e * act_stride bytes after `act` and is already
 * converted to t's vec_dot_type by from_float. Only those out entries are
 * written. The dot products equal vec_dot's up to float summation order.
 *
 * One call is one thread's share: callers split rows between threads, best
 * on multiples of 16 rows (the AVX-512 kernels' panel of weights repacked
 * together; AVX2 uses 8), so no panel is split. For n >= 2 the weights of
 * [r0, r1) are read from memory and repacked once per tile of up to 64
 * tokens (fewer for 32-element types with very long rows) and each row is
 * read sequentially; n == 1 is realm_matvec's loop, with its prefetching.
 * A few tokens (2 up to 3..10 by type: Q4_0, Q8_0, Q4_K, Q6_K on AVX2) run
 * a multi-vector loop instead: each row read once, each block decoded once
 * for all of them, nothing repacked.
 * Types and instruction sets without a blocked kernel (all on SCALAR;
 * IQ4_NL, IQ4_XS, Q8_K on AVX2; Q8_K on AVX-512) run vec_dot in a loop tiled
 * over tokens. Allocates nothing (about 120 KiB of stack); thread-safe. The
 * activation rows must be aligned as vec_dot requires (their blocks'
 * natural alignment).
 */
void realm_matmul_rows(const realm_kernels *k, realm_type t, const void *W, int64_t cols,
                       int64_t r0, int64_t r1, const void *act, size_t act_stride, int64_t n,
                       float *out, int64_t ld_out, bool accumulate);

/*
 * realm_matmul_rows without the n == 1 matvec loop: every (row, token) dot
 * product is then computed by the same instructions in the same order
 * whatever the number of tokens, the tile or the thread split (the blocked
 * kernels keep one accumulator per pair and fixed column chunks), so a
 * token's result is bitwise the same alone or with others. For
 * batch-invariant inference; a single token costs more this way (its weights
 * are repacked on the way).
 */
void realm_matmul_rows_invariant(const realm_kernels *k, realm_type t, const void *W, int64_t cols,
                                 int64_t r0, int64_t r1, const void *act, size_t act_stride,
                                 int64_t n, float *out, int64_t ld_out, bool accumulate);

/* ---- weights repacked for the products ---------------------------------- */

/*
 * A weight matrix can be repacked once, at load, into a layout of 16 rows
 * interleaved block by block (a "panel"), which one kernel multiplies with
 * any number of tokens: a token's 16 dot products per instruction, each
 * block's codes unpacked once for up to 8 tokens, nothing repacked per
 * product. The packed copy replaces the row-major one (same size within 2%).
 * Types with a layout: Q4_K, Q5_K, Q6_K (columns a multiple of 256), Q8_0
 * and Q4_0 (of 64), rows a multiple of 16; repack_internal.h describes them.
 * Kernels: all five with AVX-512, Q4_K with AVX2.
 *
 * realm_repack_size is its size in bytes, 0 if (t, rows, cols) has no
 * layout; realm_repack_fast says whether k's instruction set has a kernel
 * for it (elsewhere the packed product runs the scalar reference, correct
 * but slow: repack only where this is true).
 */
size_t realm_repack_size(realm_type t, int64_t rows, int64_t cols);
bool realm_repack_fast(const realm_kernels *k, realm_type t);
/* Rows [r0, r1) (multiples of 16) of the row-major W into P (whole matrix's
 * packed buffer, 64-byte aligned), so threads can split the work. */
void realm_repack_rows(realm_type t, const void *W, int64_t cols, int64_t r0, int64_t r1, void *P);

/*
 * realm_matmul_rows for a packed matrix P (any r0, r1; best on multiples of
 * 16). Every (row, token) product is computed by the same instructions in
 * the same order whatever n, the tile or the thread split, so this is also
 * realm_matmul_rows_invariant's contract. Allocates nothing; thread-safe.
 */
void realm_matmul_packed_rows(const realm_kernels *k, realm_type t, const void *P, int64_t cols,
                              int64_t r0, int64_t r1, const void *act, size_t act_stride, int64_t n,
                              float *out, int64_t ld_out, bool accumulate);

/* ---- element-wise and attention ops ------------------------------------ */

/*
 * An attention step over keys and values in the KV cache's formats
 * (realm_ops.attn_q8_0 and the mixed pairs): a Q8_0 key j is the row of d
 * numbers at k + j * k_stride bytes; F16 keys are stored transposed, element
 * i of key j being the F16 number at k + i * k_stride + 2 * j bytes (the
 * keys of one element side by side, as attn_f16 reads them); value j is the
 * row at v + j * v_stride bytes; s is scratch for REALM_ATTN_SCRATCH(nq,
 * cnt, d) floats; the rest as realm_ops.attn_f16.
 */
/* cnt keys rounded up to a whole number of vectors of any ISA (16 floats) */
#define REALM_ATTN_KEYS_PAD(cnt) (((int64_t)(cnt) + 15) & ~(int64_t)15)
/* Scratch floats of an attention step (attn_f16 and the others) for nq rows
 * against cnt keys of d numbers: the scores, a partial vector of keys, the
 * maxima, corrections and sums, and Q8_0 values' scales. */
#define REALM_ATTN_SCRATCH(nq, cnt, d)                                                             \
    ((int64_t)(nq) * (REALM_ATTN_KEYS_PAD(cnt) + 3) + 16 * (int64_t)(d) +                          \
     (int64_t)(cnt) * ((int64_t)(d) / 32))
/* Scratch floats of realm_ops.attn_tile for nt tokens of nq rows against cnt
 * keys of d numbers: the staged keys and values, the tile's scores, its
 * maxima, corrections and sums (and the reference's per-token scratch). */
#define REALM_ATTN_TILE_SCRATCH(nt, nq, cnt, d)                                                    \
    ((REALM_ATTN_KEYS_PAD(cnt) + (int64_t)(cnt)) * (int64_t)(d) +                                  \
     (int64_t)(nt) * (int64_t)(nq) * (REALM_ATTN_KEYS_PAD(cnt) + 4) +                              \
     (int64_t)(cnt) * ((int64_t)(d) / 32))

typedef void (*realm_attn_fn)(int64_t d, int nq, const float *q, int cnt, const void *k,
                              size_t k_stride, const void *v, size_t v_stride, float scale,
                              float *m, float *l, float *acc, float *s);

/*
 * Small vector kernels of the forward pass, per instruction set like the dot
 * products: a scalar reference and SIMD versions computing the same values up
 * to float rounding (the fp16 conversion is exact in all of them).
 */
typedef struct realm_ops {
    realm_isa isa;
    /* sum_i fp16(x[i]) * y[i] */
    float (*dot_f16_f32)(int64_t n, const uint16_t *x, const float *y);
    /* y[i] += a * fp16(x[i]) */
    void (*axpy_f16)(int64_t n, float a, const uint16_t *x, float *y);
    /* y[i] *= a */
    void (*scale_f32)(int64_t n, float a, float *y);
    /* y[i] = fp16(x[i]), round to nearest even */
    void (*fp32_to_fp16)(const float *x, uint16_t *y, int64_t n);
    /* out = x / sqrt(mean(x^2) + eps) * w (out may be x) */
    void (*rmsnorm)(float *out, const float *x, const float *w, int64_t n, float eps);
    /* g = silu(g) * u, silu(z) = z / (1 + e^-z) */
    void (*silu_mul)(int64_t n, float *g, const float *u);
    /* y[i] = e^x[i], within 2 ulp for x in [-87.33, 88.37] (e^x >= FLT_MIN); 0 below
     * that range, e^88.37 above it; every ISA gives the same bits (y may be x) */
    void (*exp_f32)(int64_t n, const float *x, float *y);
    /*
     * One step of attention with an online softmax: nq query rows against cnt
     * keys and values, the running state of each row r being its maximum
     * score m[r], its sum of weights l[r] and its weighted sum of values
     * acc[r * d .. + d). Query row r is q + r * d; the keys are stored
     * transposed, element i of key j at k[i * k_ld + j] (so that a vector
     * holds one element of consecutive keys and a score is a sum of
     * products along lanes, no horizontal sums); value j is the d F16
     * numbers at v + j * ld. With s_j = scale * q_r . k_j and
     * M = max(m[r], max_j s_j):
     *
     *     l[r]   = l[r] e^(m[r] - M)   + sum_j e^(s_j - M)
     *     acc[r] = acc[r] e^(m[r] - M) + sum_j e^(s_j - M) v_j,   m[r] = M
     *
     * (start from m = -inf, l = 0, acc = 0; the result is acc[r] / l[r]).
     * The exponentials are exp_f32's. s is scratch for REALM_ATTN_SCRATCH(nq,
     * cnt, d) floats. The SIMD versions read each key and value once for all
     * nq rows.
     */
    void (*attn_f16)(int64_t d, int nq, const float *q, int cnt, const uint16_t *k, int64_t k_ld,
                     const uint16_t *v, int64_t ld, float scale, float *m, float *l, float *acc,
                     float *s);
    /*
     * attn_f16 over keys and values stored as Q8_0: d is a multiple of 32 and
     * a row is d / 32 realm_block_q8_0, element i of block b being
     * fp16(b.d) * b.qs[i] (exact in float). Key and value rows are found by
     * byte strides (realm_attn_fn). The same state, exponentials and scratch
     * as attn_f16; the SIMD versions read each key and value once for all nq
     * rows, as attn_f16's do.
     */
    realm_attn_fn attn_q8_0;
    /* The same with keys and values of different types (llama.cpp's
     * --cache-type-k and --cache-type-v set apart), d a multiple of 32, F16
     * keys (transposed) and values as attn_f16 reads them: F16 keys with Q8_0
     * values, and Q8_0 keys with F16 values. */
    realm_attn_fn attn_f16_q8_0;
    realm_attn_fn attn_q8_0_f16;
    /*
     * Prefill: one step of nt query tokens of one sequence (nq rows each,
     * token t's at q + t * ldq) against the same cnt keys and values (keys of
     * type tk, values of type tv, F16 or Q8_0, found by byte strides as
     * realm_attn_fn's), token t seeing the first lim[t] of them (causal
     * masking: 1 <= lim[t] <= cnt). Token t's state is m[nq],
     * l[nq], acc[nq * d] at state + t * ld_state. For every token this is
     * exactly, bit for bit, the step of attn_f16 / attn_q8_0 / the mixed
     * kernel of the same table with nq rows and lim[t] keys: the batch's
     * make-up never changes a token's attention. The SIMD versions load and
     * convert each key and value once for the whole tile (into the scratch,
     * as floats: the conversions are exact), score F16 keys along vectors of
     * keys (Q8_0 keys along the head, with the softmax along vectors of all
     * the tile's rows) and sum the values in register tiles of rows (of
     * several tokens) x columns. s is scratch for
     * REALM_ATTN_TILE_SCRATCH(nt, nq, cnt, d) floats.
     */
    void (*attn_tile)(realm_type tk, realm_type tv, int64_t d, int nq, int nt, const float *q,
                      int64_t ldq, int cnt, const int32_t *lim, const void *k, size_t k_stride,
                      const void *v, size_t v_stride, float scale, float *state, int64_t ld_state,
                      float *s);
    /*
     * LoRA, the shrink: one row `a` of an adapter's A (n elements of type
     * at: F32, F16 or BF16) against the activation rows x + rows[i] * ldx:
     *
     *     out[i * ld_out] = sum_k a[k] * x[rows[i] * ldx + k]     for i < n_rows
     *
     * A row's result is the same bits whatever n_rows and its place among
     * them (batch invariance).
     */
    void (*lora_shrink)(realm_type at, int64_t n, const void *a, int n_rows, const int32_t *rows,
                        const float *x, int64_t ldx, float *out, int64_t ld_out);
    /*
     * LoRA, the expand: with bt the adapter's B transposed (rank rows of
     * ldb elements of type bt_type), for i < n_rows and o in [o0, o1):
     *
     *     y[rows[i] * ldy + o] += (scale[i] * wscale) * sum_j t[i * ldt + j] * bt[j * ldb + o]
     *
     * the sum over j < rank in order, by fused multiply-adds (so the same
     * bits whatever n_rows, o0 and o1).
     */
    void (*lora_expand)(realm_type bt_type, int64_t rank, const void *bt, int64_t ldb, int64_t o0,
                        int64_t o1, int n_rows, const int32_t *rows, const float *t, int64_t ldt,
                        const float *scale, float wscale, float *y, int64_t ldy);
} realm_ops;

/* The ops table for isa, or NULL if the CPU cannot run it. */
const realm_ops *realm_ops_get(realm_isa isa);
/* The best table, capped by REALM_ISA like realm_kernels_best. */
const realm_ops *realm_ops_best(void);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
