/*
 * Matrix products of weight rows with several tokens (realm_matmul_rows in
 * realm/kernels.h): the choice between the blocked kernels and the vec_dot
 * loop, the blocking loops (see matmul_internal.h), and the vec_dot loop
 * every type and instruction set falls back to.
 */
#include "core/error_internal.h"
#include "kernels_internal.h"
#include "matmul_internal.h"

#define CACHE_LINE 64

/*
 * The vec_dot loop keeps this many bytes of activations in L2 while the rows
 * pass over them; each row is then read from memory once per tile of tokens.
 */
#define DOT_TILE_BYTES (256 * 1024)
#define DOT_TILE_MAX   64

/* Blocked products of at most SMALL_TILE tokens take chunks of about
 * SMALL_TILE_COLS columns (mm_blocked). From memory (bench_matmul, AVX-512,
 * 2 threads) 256-column chunks made Q4_K and Q6_K at 9 to 32 tokens 10-40%
 * faster than 1024-column ones, Q8_0 and Q4_0 at 8 tokens 20-50%; 512
 * tokens would be 10% slower. */
#define SMALL_TILE      32
#define SMALL_TILE_COLS 256

/*
 * Up to this many tokens (0: none) a type's multi-vector kernel
 * (matmul_internal.h) beats the blocked one: it reads each weight row once
 * and decodes each block once per pass, with no packing to amortise, but it
 * multiplies less efficiently, so the blocked kernel wins from here on.
 * Measured with bench_matmul (2048 x 5632 and 5632 x 2048). AVX2, 1 thread:
 * Q8_0 and Q4_0 (a float scale per token and 32-element block) tie at 3
 * to 4; Q4_K and Q6_K, with the kernels that read interleaved activations
 * (2 threads), Q4_K multi is 10-40% faster than blocked at 9 to 12 tokens
 * and no slower at 16, Q6_K about ties from 12 to 16. AVX-512 (Zen 5, 2
 * threads; its blocked kernels pack panels, costly at few tokens): the
 * VNNI Q4_K multi kernel takes half the blocked time at 2-6 tokens and
 * ties at 10 over 5632 columns; Q6_K's ties at 16; Q8_0's and Q4_0's
 * take 0.3-0.45 of the blocked time at 2 tokens and tie at 6-8 over 5632
 * columns. Since the blocked loop prefetches the next panel and takes
 * short chunks for few tokens (mm_blocked), it wins from 9 tokens, where
 * the multi-vector kernels take two passes (from memory, 2 threads: Q4_K
 * 0.29 against 0.47 ms over 5632 columns, 0.27 against 0.36 over 2048; Q6_K
 * 0.44-0.49 against 0.65, 0.38-0.41 against 0.39), and for Q4_K from 7
 * (at 8 tokens 0.27-0.31 against 0.40 and 0.25-0.28 against 0.30; a tie
 * at 6). With the next panel hinted in two pieces per chunk (mm_blocked):
 * Q6_K at 8 tokens 0.33-0.38 against 0.53-0.54 over 5632 columns and a
 * tie over 2048 (0.31-0.33), the shape of the output matrix, which keeps
 * the multi-vector kernel ahead at 5-6 tokens (0.24-0.27 against
 * 0.28-0.30); Q4_K at 5 tokens 0.21 against 0.23-0.24 over 5632 columns,
 * a tie over 2048, but a K = 4 verify pass (5 tokens) measured 4% slower
 * with the blocked kernel, so Q4_K keeps the multi-vector kernel up to 6.
 */
static const int8_t multi_max_tokens[REALM_ISA_COUNT][REALM_TYPE_COUNT] = {
    [REALM_ISA_SCALAR] = {[REALM_TYPE_Q4_0] = 3,
                          [REALM_TYPE_Q8_0] = 3,
                          [REALM_TYPE_Q4_K] = 16,
                          [REALM_TYPE_Q6_K] = 12},
    [REALM_ISA_AVX2] = {[REALM_TYPE_Q4_0] = 3,
                        [REALM_TYPE_Q8_0] = 3,
                        [REALM_TYPE_Q4_K] = 16,
                        [REALM_TYPE_Q6_K] = 12},
    [REALM_ISA_AVX512] = {[REALM_TYPE_Q4_0] = 6,
                          [REALM_TYPE_Q8_0] = 6,
                          [REALM_TYPE_Q4_K] = 6,
                          [REALM_TYPE_Q6_K] = 7},
};

/* How far ahead of the row being multiplied the multi-vector loop prefetches. */
#define MULTI_PREFETCH 4096

static const realm__dot_multi *const multi_tables[REALM_ISA_COUNT] = {
    [REALM_ISA_SCALAR] = realm__dot_multi_ref,
    [REALM_ISA_AVX2] = realm__dot_multi_avx2,
    [REALM_ISA_AVX512] = realm__dot_multi_avx512,
};

static const realm__mm_kernel *const *const mm_tables[REALM_ISA_COUNT] = {
    [REALM_ISA_SCALAR] = NULL,
    [REALM_ISA_AVX2] = realm__mm_avx2,
    [REALM_ISA_AVX512] = realm__mm_avx512,
};

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Hint [p, p + bytes) into L2, or also into L1. */
static void prefetch_bytes(const uint8_t *p, size_t bytes, bool l1)
{
    for (size_t off = 0; off < bytes; off += CACHE_LINE) {
        if (l1)
            __builtin_prefetch(p + off, 0, 3);
        else
            __builtin_prefetch(p + off, 0, 2);
    }
}

/* What one call of mm_blocked multiplies, for its helpers. */
typedef struct {
    const realm__mm_kernel *mk;
    realm_type t, at;
    const uint8_t *W;
    size_t row_size;
    int64_t cols;
    const uint8_t *act;
    size_t act_stride;
    float *out;
    int64_t ld;
    bool accumulate;
    bool invariant; /* realm_matmul_rows_invariant */
} mm_job;

/*
 * One packed panel (rows [p0, p0 + rows)) times the tokens [e0, e0 + ne)
 * over the chunk starting at column k0; xs is the first token's pack_act
 * output for that chunk, xs_stride apart.
 */
static void run_panel(const mm_job *j, const void *panel, int64_t p0, int rows, int64_t e0,
                      int64_t ne, int64_t k0, int64_t kc, const uint8_t *xs, size_t xs_stride)
{
    const realm__mm_kernel *mk = j->mk;
    const uint8_t *x = j->act + (size_t)e0 * j->act_stride + realm_row_size(j->at, k0);
    for (int64_t e = 0; e < ne; e += mk->nr) {
        const realm__mm_run r = {
            .panel = panel,
            .x = x + (size_t)e * j->act_stride,
            .x_stride = j->act_stride,
            .xs = xs != NULL ? xs + (size_t)e * xs_stride : NULL,
            .xs_stride = xs_stride,
            .out = j->out + (e0 + e) * j->ld + p0,
            .ld = j->ld,
            .kc = kc,
            .rows = rows,
            .nr = (int)min64(mk->nr, ne - e),
            .add = j->accumulate || k0 > 0,
        };
        mk->run(&r);
    }
}

/* The blocked product (matmul_internal.h). */
static void mm_blocked(const mm_job *j, int64_t r0, int64_t r1, int64_t n)
{
    _Alignas(64) uint8_t panel[REALM__MM_PANEL_MAX];
    _Alignas(64) uint8_t xs[REALM__MM_ACT_MAX];
    const realm__mm_kernel *mk = j->mk;
    REALM_ASSERT(mk->panel_size <= sizeof panel);
    REALM_ASSERT((size_t)mk->tile_tokens * mk->act_size <= sizeof xs);
    const int64_t rows = mk->panel_rows, cols = j->cols;

    /*
     * A few tokens take chunks of about SMALL_TILE_COLS columns, so that
     * the next panel's prefetch (below) is spread over more steps of this
     * one; with many tokens the kernel's own chunk, whose panel stays in L1
     * across more of them, is faster. Not in batch-invariant mode, where a
     * token's sums must not depend on the token count. A kernel's pack_act
     * output takes one chunk's act_size per chunk, short or not (a short
     * chunk is packed as a row's last columns are); the few tokens' outputs
     * must fit the scratch together.
     */
    int64_t kc_max = mk->kc;
    if (n <= SMALL_TILE && !j->invariant) {
        const int64_t bs = realm_type_get(j->t)->block_size;
        const int64_t kc_small = bs >= SMALL_TILE_COLS ? bs : SMALL_TILE_COLS / bs * bs;
        const int64_t chunks = (cols + kc_small - 1) / kc_small;
        if (kc_small < kc_max && (size_t)(n * chunks) * mk->act_size <= sizeof xs)
            kc_max = kc_small;
    }
    const int64_t n_chunks = (cols + kc_max - 1) / kc_max;

    /* Panels outside chunks if a tile of at least half the usual size has
     * room for its pack_act output over all the columns. */
    const size_t act_row = (size_t)n_chunks * mk->act_size;
    int64_t tile = mk->tile_tokens;
    bool panels_outside = true;
    if (mk->pack_act != NULL) {
        const int64_t fit = (int64_t)(sizeof xs / act_row);
        if (fit >= min64(n, mk->tile_tokens / 2))
            tile = min64(tile, fit);
        else
            panels_outside = false;
    }
    const int64_t n_tiles = (n + tile - 1) / tile;
    tile = (n + n_tiles - 1) / n_tiles; /* equal tiles, not a full one and a scrap */

    for (int64_t e0 = 0; e0 < n; e0 += tile) {
        const int64_t ne = min64(tile, n - e0);
        const uint8_t *x = j->act + (size_t)e0 * j->act_stride;
        if (panels_outside) {
            for (int64_t e = 0; mk->pack_act != NULL && e < ne; e++)
                for (int64_t c = 0; c < n_chunks; c++) {
                    const int64_t k0 = c * kc_max;
                    mk->pack_act(x + (size_t)e * j->act_stride + realm_row_size(j->at, k0),
                                 min64(kc_max, cols - k0),
                                 xs + (size_t)e * act_row + (size_t)c * mk->act_size);
                }
            for (int64_t p0 = r0; p0 < r1; p0 += rows) {
                const int pr = (int)min64(rows, r1 - p0);
                const uint8_t *w = j->W + (size_t)p0 * j->row_size;
                /* The next panel's rows, one run of memory, hinted a chunk's
                 * share at a time: the hardware prefetcher does not follow a
                 * panel's partial rows (measured: hints in two pieces per
                 * panel gained little, in eight most of the difference, and
                 * half a share before the packing and half before the
                 * multiply 10-25% more; into L1, where pack_w's gathers find
                 * them, 2-15% more). */
                const uint8_t *next = w + (size_t)pr * j->row_size;
                const size_t next_size =
                    p0 + rows < r1 ? (size_t)min64(rows, r1 - p0 - rows) * j->row_size : 0;
                const size_t line = CACHE_LINE;
                const size_t share = (next_size / (size_t)n_chunks + line) & ~(line - 1);
                const size_t half = (share / 2 + line - 1) & ~(line - 1);
                for (int64_t c = 0; c < n_chunks; c++) {
                    const int64_t k0 = c * kc_max, kc = min64(kc_max, cols - k0);
                    const size_t pf = (size_t)c * share;
                    if (pf < next_size)
                        prefetch_bytes(next + pf, min64((int64_t)half, (int64_t)(next_size - pf)),
                                       true);
                    mk->pack_w(w + realm_row_size(j->t, k0), j->row_size, pr, kc, panel);
                    if (pf + half < next_size)
                        prefetch_bytes(
                            next + pf + half,
                            min64((int64_t)(share - half), (int64_t)(next_size - pf - half)), true);
                    run_panel(j, panel, p0, pr, e0, ne, k0, kc,
                              mk->pack_act != NULL ? xs + (size_t)c * mk->act_size : NULL, act_row);
                }
            }
        } else {
            for (int64_t k0 = 0; k0 < cols; k0 += kc_max) {
                const int64_t kc = min64(kc_max, cols - k0);
                for (int64_t e = 0; e < ne; e++)
                    mk->pack_act(x + (size_t)e * j->act_stride + realm_row_size(j->at, k0), kc,
                                 xs + (size_t)e * mk->act_size);
                for (int64_t p0 = r0; p0 < r1; p0 += rows) {
                    const int pr = (int)min64(rows, r1 - p0);
                    const uint8_t *w = j->W + (size_t)p0 * j->row_size + realm_row_size(j->t, k0);
                    mk->pack_w(w, j->row_size, pr, kc, panel);
                    run_panel(j, panel, p0, pr, e0, ne, k0, kc, xs, mk->act_size);
                }
            }
        }
    }
}

/*
 * out[e * ld + r] (+)= vec_dot(row r, token e), rows outer within tiles of
 * tokens whose activations stay in L2, the next row prefetched.
 */
static void mm_dot_loop(const realm_kernels *k, realm_type t, const uint8_t *W, size_t row_size,
                        int64_t cols, int64_t r0, int64_t r1, const uint8_t *act, size_t act_stride,
                        int64_t n, float *out, int64_t ld, bool accumulate)
{
    const realm_vec_dot_fn dot = k->vec_dot[t];
    int64_t tile = (int64_t)(DOT_TILE_BYTES / (act_stride > 0 ? act_stride : 1));
    tile = tile < 1 ? 1 : tile > DOT_TILE_MAX ? DOT_TILE_MAX : tile;
    for (int64_t e0 = 0; e0 < n; e0 += tile) {
        const int64_t ne = min64(tile, n - e0);
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *w = W + (size_t)r * row_size;
            if (r + 1 < r1)
                prefetch_bytes(w + row_size, row_size, false);
            for (int64_t e = e0; e < e0 + ne; e++) {
                const float s = dot(cols, w, act + (size_t)e * act_stride);
                float *o = out + e * ld + r;
                *o = accumulate ? *o + s : s;
            }
        }
    }
}

/*
 * out[e * ld + r] (+)= dot(row r, token e) by the multi-vector kernel for
 * tokens [0, n) (activations already in its layout): rows outer, read from
 * memory once (prefetched MULTI_PREFETCH bytes ahead as in
 * realm__matvec_rows), the tokens in passes of REALM__MULTI_NR.
 */
static void mm_multi_rows(realm__dot_multi_fn fn, const uint8_t *W, size_t row_size, int64_t cols,
                          int64_t r0, int64_t r1, const uint8_t *act, size_t act_stride, int64_t n,
                          float *out, int64_t ld, bool accumulate)
{
    const uint8_t *const slab = W + (size_t)r0 * row_size;
    const size_t slab_size = (size_t)(r1 - r0) * row_size;
    size_t pf = 0; /* offset in the slab of the first line not yet prefetched */
    float s[REALM__MULTI_NR];
    for (int64_t r = r0; r < r1; r++) {
        const size_t off = (size_t)(r - r0) * row_size;
        size_t pf_end = off + row_size + MULTI_PREFETCH;
        if (pf_end > slab_size)
            pf_end = slab_size;
        for (; pf < pf_end; pf += CACHE_LINE)
            __builtin_prefetch(slab + pf, 0, 3);
        for (int64_t e0 = 0; e0 < n; e0 += REALM__MULTI_NR) {
            const int ne = (int)min64(REALM__MULTI_NR, n - e0);
            fn(cols, slab + off, act + (size_t)e0 * act_stride, act_stride, ne, s);
            for (int e = 0; e < ne; e++) {
                float *o = out + (e0 + e) * ld + r;
                *o = accumulate ? *o + s[e] : s[e];
            }
        }
    }
}

/*
 * The multi-vector product; with a prep step, the tokens' activations are
 * put in the kernel's layout first, in groups that fit the stack buffer
 * (one group unless the rows are long; each further one reads W again).
 * The caller checked that one prepared row fits.
 */
static void mm_multi(const realm__dot_multi *m, realm_type at, const uint8_t *W, size_t row_size,
                     int64_t cols, int64_t r0, int64_t r1, const uint8_t *act, size_t act_stride,
                     int64_t n, float *out, int64_t ld, bool accumulate)
{
    if (m->prep == NULL) {
        mm_multi_rows(m->dot, W, row_size, cols, r0, r1, act, act_stride, n, out, ld, accumulate);
        return;
    }
    _Alignas(64) uint8_t buf[REALM__MULTI_PREP_MAX];
    const size_t prow = realm_row_size(at, cols);
    const int64_t group = min64(n, (int64_t)(sizeof buf / prow));
    REALM_ASSERT(group >= 1);
    for (int64_t e0 = 0; e0 < n; e0 += group) {
        const int64_t ne = min64(group, n - e0);
        for (int64_t e = 0; e < ne; e++)
            m->prep(cols, act + (size_t)(e0 + e) * act_stride, buf + (size_t)e * prow);
        mm_multi_rows(m->dot, W, row_size, cols, r0, r1, buf, prow, ne, out + e0 * ld, ld,
                      accumulate);
    }
}

static void matmul_rows(const realm_kernels *k, realm_type t, const void *W, int64_t cols,
                        int64_t r0, int64_t r1, const void *act, size_t act_stride, int64_t n,
                        float *out, int64_t ld_out, bool accumulate, bool matvec)
{
    REALM_ASSERT(k->vec_dot[t] != NULL); /* callers check realm_type_check_supported */
    if (r0 >= r1 || n <= 0)
        return;
    if (n == 1 && matvec) {
        realm__matvec_rows(k, t, W, cols, r0, r1, act, out, accumulate);
        return;
    }
    const size_t row_size = realm_row_size(t, cols);
    const realm__dot_multi *const multi =
        matvec && multi_tables[k->isa] != NULL ? &multi_tables[k->isa][t] : NULL;
    const realm_type at = realm_type_get(t)->vec_dot_type;
    if (multi != NULL && multi->dot != NULL && n <= multi_max_tokens[k->isa][t] &&
        (multi->prep == NULL || realm_row_size(at, cols) <= REALM__MULTI_PREP_MAX)) {
        mm_multi(multi, at, W, row_size, cols, r0, r1, act, act_stride, n, out, ld_out, accumulate);
        return;
    }
    const realm__mm_kernel *const *table = mm_tables[k->isa];
    const realm__mm_kernel *mk = table != NULL ? table[t] : NULL;
    if (mk != NULL && row_size * (size_t)mk->panel_rows < ((size_t)1 << 31)) {
        const mm_job j = {
            .mk = mk,
            .t = t,
            .at = at,
            .W = W,
            .row_size = row_size,
            .cols = cols,
            .act = act,
            .act_stride = act_stride,
            .out = out,
            .ld = ld_out,
            .accumulate = accumulate,
            .invariant = !matvec,
        };
        mm_blocked(&j, r0, r1, n);
    } else
        mm_dot_loop(k, t, W, row_size, cols, r0, r1, act, act_stride, n, out, ld_out, accumulate);
}

void realm_matmul_rows(const realm_kernels *k, realm_type t, const void *W, int64_t cols,
                       int64_t r0, int64_t r1, const void *act, size_t act_stride, int64_t n,
                       float *out, int64_t ld_out, bool accumulate)
{
    matmul_rows(k, t, W, cols, r0, r1, act, act_stride, n, out, ld_out, accumulate, true);
}

void realm_matmul_rows_invariant(const realm_kernels *k, realm_type t, const void *W, int64_t cols,
                                 int64_t r0, int64_t r1, const void *act, size_t act_stride,
                                 int64_t n, float *out, int64_t ld_out, bool accumulate)
{
    matmul_rows(k, t, W, cols, r0, r1, act, act_stride, n, out, ld_out, accumulate, false);
}
