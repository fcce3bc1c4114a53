/*
 * Internal interface of the blocked matrix product (realm_matmul_rows in
 * realm/kernels.h).
 *
 * matmul.c owns the loops; an instruction set contributes, per weight type,
 * a realm__mm_kernel: how to repack a panel of weight rows over a chunk of
 * the columns into scratch (pack_w), optionally how to precompute per-token
 * data from the activations (pack_act), and a micro-kernel (run) that
 * multiplies one packed panel with a few tokens over one chunk, adding to
 * out. The driver splits the tokens into tiles and, per tile, runs
 *
 *     for each panel of panel_rows rows in [r0, r1)
 *       for each chunk [k0, k0 + kc) of the columns
 *         pack_w(panel, chunk)
 *         run(panel, chunk, tokens e .. e + nr - 1) for all the tile's tokens
 *
 * so each weight is read from memory and unpacked once per tile and reused
 * from L1 for all its tokens, while the tile's activations stay in L2; each
 * row of a panel is read from start to end. The hardware prefetcher does
 * not keep up with a panel's 16 partial rows, so the driver hints the next
 * panel's rows a share per chunk, and a few tokens take chunks shorter
 * than kc (see matmul.c; pack_act then runs per chunk, a short chunk as a
 * row's last columns). This needs the
 * tile's pack_act output for all the chunks at once; when that does not
 * fit the scratch (float activations of long rows), chunks go outside
 * panels instead, with pack_act per chunk.
 *
 * Scratch lives on the driver's stack (kernels allocate nothing): a
 * kernel's panel_size must not exceed REALM__MM_PANEL_MAX, and tile_tokens *
 * act_size not REALM__MM_ACT_MAX, which each SIMD file checks statically.
 */
#ifndef REALM_MATMUL_INTERNAL_H
#define REALM_MATMUL_INTERNAL_H

#include "realm/kernels.h"

#define REALM__MM_PANEL_MAX (24 * 1024)
#define REALM__MM_ACT_MAX   (96 * 1024)

/* One call of a micro-kernel: panel x (tokens e .. e + nr - 1) over one chunk. */
typedef struct realm__mm_run {
    const void *panel; /* pack_w's output */
    const uint8_t *x;  /* activation row of token e at column k0 */
    size_t x_stride;   /* bytes between tokens' activation rows */
    const uint8_t *xs; /* pack_act's output for token e at this chunk (NULL if none) */
    size_t xs_stride;  /* bytes between tokens' pack_act outputs */
    float *out;        /* out[e * ld + first row of the panel] */
    int64_t ld;
    int64_t kc; /* columns in this chunk */
    int rows;   /* valid rows of the panel, 1..panel_rows */
    int nr;     /* tokens, 1..the kernel's nr */
    bool add;   /* add to out (else overwrite) */
} realm__mm_run;

typedef struct realm__mm_kernel {
    int panel_rows;    /* rows per panel */
    int nr;            /* most tokens per run call */
    int tile_tokens;   /* tokens per tile */
    int64_t kc;        /* most columns per chunk, a multiple of the block size */
    size_t panel_size; /* bytes pack_w writes for a full chunk */
    size_t act_size;   /* bytes pack_act writes per token and full chunk (a 64-byte multiple) */
    /*
     * Pack rows [0, rows) of a panel (row i at w + i * row_size, already
     * offset to column k0) for columns [k0, k0 + kc). Rows past `rows` may
     * hold anything, as run never stores them. row_size * panel_rows < 2^31.
     */
    void (*pack_w)(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *panel);
    /*
     * Pack one token's activations for kc columns (x is its activation row
     * offset to the first of them, kc a multiple of the chunk or the last
     * columns): chunk c of them goes to xs + c * act_size. NULL: none.
     */
    void (*pack_act)(const uint8_t *x, int64_t kc, void *xs);
    void (*run)(const realm__mm_run *r);
} realm__mm_kernel;

/* Per-ISA tables, indexed by weight type; NULL entries use the vec_dot loop. */
extern const realm__mm_kernel *const realm__mm_avx2[REALM_TYPE_COUNT];
extern const realm__mm_kernel *const realm__mm_avx512[REALM_TYPE_COUNT];

/*
 * Multi-vector dot products for a few tokens (2 <= n <= a threshold in
 * matmul.c, outside batch-invariant mode): dot(n, x, y, y_stride, ny, s)
 * sets s[e] = dot(x, token e) for e in [0, ny), 1 <= ny <= REALM__MULTI_NR,
 * token e's activation row at y + e * y_stride. Each weight block of x is
 * read and decoded once for all ny tokens, so a few tokens cost about one
 * matvec's memory traffic. Same contract as vec_dot otherwise
 * (kernels_internal.h); the results equal ny vec_dot calls up to float
 * summation order. The scalar reference (dot_ref.c) is ny calls of the
 * type's vec_dot_ref.
 *
 * A kernel may read the activations in a layout of its own: then prep is
 * not NULL and turns one token's row of n columns (x's vec_dot_type, as
 * from_float made it) into that layout, of the same size, which is what
 * dot is given; the caller runs prep once per token and call and reuses
 * its output for every weight row. With prep NULL, dot reads the rows as
 * from_float made them.
 */
#define REALM__MULTI_NR 8
typedef void (*realm__dot_multi_fn)(int64_t n, const void *x, const void *y, size_t y_stride,
                                    int ny, float *s);
typedef void (*realm__multi_prep_fn)(int64_t n, const void *y, void *out);

typedef struct realm__dot_multi {
    realm__multi_prep_fn prep;
    realm__dot_multi_fn dot;
} realm__dot_multi;

/* Per-ISA tables, indexed by weight type; dot NULL: no multi-vector kernel. */
extern const realm__dot_multi realm__dot_multi_ref[REALM_TYPE_COUNT];
extern const realm__dot_multi realm__dot_multi_avx2[REALM_TYPE_COUNT];
extern const realm__dot_multi realm__dot_multi_avx512[REALM_TYPE_COUNT];

/* The most bytes of prepared activations matmul.c keeps (on its stack);
 * tokens whose prepared rows do not fit together go in groups. */
#define REALM__MULTI_PREP_MAX (96 * 1024)

/*
 * out[r] (+)= dot(row r, y) for r in [r0, r1), with realm_matvec's software
 * prefetch of W (kernels.c).
 */
void realm__matvec_rows(const realm_kernels *k, realm_type t, const void *W, int64_t cols,
                        int64_t r0, int64_t r1, const void *y, float *out, bool accumulate);

#endif
