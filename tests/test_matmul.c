/*
 * realm_matmul_rows against vec_dot per (row, token) pair, for every weight
 * type and every instruction set this CPU runs: token counts around the
 * micro-kernels' group size (8) and the tile size (64), row ranges with odd
 * starts and ends (partial panels), column counts spanning several chunks
 * with a partial last one, accumulate on and off, a padded output stride
 * and activation stride, and both loop orders of the blocked driver. Every
 * out entry outside the range must stay untouched.
 *
 * Weight matrices are random bytes with sane scales patched in (every code
 * and high-bit pattern occurs) and matrices from the reference quantizer;
 * activations come from from_float, some tokens with an outlier. Both sit
 * between inaccessible pages, so a read outside them faults even where
 * AddressSanitizer does not look (vector gathers).
 */
#include <sys/mman.h>

#include "kernels/kernels_internal.h"
#include "kernels/matmul_internal.h"
#include "realm/error.h"
#include "realm/kernels.h"
#include "test_blocks.h"
#include "test_util.h"

static const realm_type weight_types[] = {
    REALM_TYPE_F32,    REALM_TYPE_F16,  REALM_TYPE_BF16,   REALM_TYPE_Q4_0,
    REALM_TYPE_Q4_1,   REALM_TYPE_Q5_0, REALM_TYPE_Q5_1,   REALM_TYPE_Q8_0,
    REALM_TYPE_IQ4_NL, REALM_TYPE_Q2_K, REALM_TYPE_Q3_K,   REALM_TYPE_Q4_K,
    REALM_TYPE_Q5_K,   REALM_TYPE_Q6_K, REALM_TYPE_IQ4_XS, REALM_TYPE_Q8_K,
};
#define N_WEIGHT_TYPES (int)(sizeof weight_types / sizeof weight_types[0])

static const int64_t token_counts[] = {1, 2, 3, 4, 5, 7, 8, 13, 16, 17, 33, 64, 67};
#define N_TOKEN_COUNTS (int)(sizeof token_counts / sizeof token_counts[0])

/* [r0, r1) of a 45-row matrix: whole, odd start and end, one row, within a panel */
#define ROWS 45
static const int64_t ranges[][2] = {{0, ROWS}, {3, 40}, {17, 18}, {5, 14}, {16, 45}};
#define N_RANGES (int)(sizeof ranges / sizeof ranges[0])

/* Sentinel for out entries no call may write. */
#define UNTOUCHED 12345.0f

static bool is_float_type(realm_type t)
{
    return t == REALM_TYPE_F32 || t == REALM_TYPE_F16 || t == REALM_TYPE_BF16;
}

/* Columns: several chunks (1024 for blocks, 128/256 for floats) and a
 * partial one; for F16/BF16 so many that tiles of over 21 tokens take the
 * chunks-outside-panels order (their pack_act output does not fit), an odd
 * count for every float type. */
static int64_t cols_for(realm_type t)
{
    return is_float_type(t) ? 1111 : 1280;
}

/* ---- random data (patch_scales etc. in test_blocks.h) --------------------- */

static void fill_normal(float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * test_rand_normal();
}

/* ---- guarded buffers -------------------------------------------------------- */

#define PAGE 4096

typedef struct {
    uint8_t *base; /* the mapping: guard page, data pages, guard page */
    size_t len;
    uint8_t *p; /* the data, ending where the second guard page starts */
} guarded;

static guarded guarded_new(size_t size)
{
    const size_t pages = (size + PAGE - 1) / PAGE;
    guarded g = {.len = (pages + 2) * PAGE};
    void *m = mmap(NULL, g.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || mprotect(m, PAGE, PROT_NONE) != 0 ||
        mprotect((uint8_t *)m + (pages + 1) * PAGE, PAGE, PROT_NONE) != 0) {
        fprintf(stderr, "mmap/mprotect failed\n");
        exit(1);
    }
    g.base = m;
    g.p = g.base + (pages + 1) * PAGE - size;
    return g;
}

static void guarded_free(guarded *g)
{
    munmap(g->base, g->len);
    g->base = g->p = NULL;
}

/*
 * A rows x cols weight matrix of type t. mode 0: random bytes with sane
 * scales (floats: normal values); mode 1: normal values through the
 * reference quantizer.
 */
static guarded make_weights(realm_type t, int64_t rows, int64_t cols, int mode)
{
    const size_t row_size = realm_row_size(t, cols);
    guarded g = guarded_new(row_size * (size_t)rows);
    float *f = malloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = g.p + (size_t)r * row_size;
        fill_normal(f, cols, 0.5f);
        if (is_float_type(t) || mode == 1) {
            CHECK_RC(realm_quantize_row(t, f, row, cols), REALM_OK);
        } else {
            for (size_t i = 0; i < row_size; i++)
                row[i] = (uint8_t)test_rand_u64();
            patch_scales(t, row, cols / realm_type_get(t)->block_size);
        }
    }
    free(f);
    return g;
}

/* ---- one (type, ISA) ------------------------------------------------------------ */

typedef struct {
    realm_type t, at;
    int64_t cols;
    size_t row_size, act_stride;
    const uint8_t *w;
    const uint8_t *act; /* n_max tokens */
    const float *wf;    /* dequantized weights, rows x cols */
    const float *af;    /* dequantized activations, n_max x cols */
} problem;

/* sum_i |x_i y_i| of row r and token e: the scale of rounding differences. */
static double magnitude(const problem *p, int64_t r, int64_t e)
{
    double m = 0;
    for (int64_t i = 0; i < p->cols; i++)
        m += fabs((double)p->wf[r * p->cols + i] * (double)p->af[e * p->cols + i]);
    return m;
}

/*
 * Tolerance relative to sum |x_i y_i|, as in test_kernels.c: both sides sum
 * exact integer block sums (or float products) in float, in different
 * orders, so they differ by a few roundings of terms bounded by it.
 * Measured: below 3e-7 for every type.
 */
#define TOLERANCE 2e-6

/* out (+)= want within the tolerance: TOLERANCE of the magnitude, and the
 * rounding of the initial value when accumulating. */
static bool close_to(float out, float init, bool acc, float want, double mag)
{
    const double w = (acc ? (double)init : 0.0) + want;
    return fabs(out - w) <= TOLERANCE * mag + (acc ? 1e-6 * fabs(init) : 0) + 1e-30;
}

static void check_problem(const realm_kernels *k, const problem *p, float *expect,
                          const double *mag)
{
    const int64_t ld = ROWS + 3;
    const int64_t n_max = token_counts[N_TOKEN_COUNTS - 1];
    float *out = malloc((size_t)(n_max * ld) * sizeof(float));
    float *init = malloc((size_t)(n_max * ld) * sizeof(float));
    for (int ni = 0; ni < N_TOKEN_COUNTS; ni++) {
        const int64_t n = token_counts[ni];
        for (int ri = 0; ri < N_RANGES; ri++) {
            const int64_t r0 = ranges[ri][0], r1 = ranges[ri][1];
            for (int acc = 0; acc < 2; acc++) {
                for (int64_t i = 0; i < n_max * ld; i++)
                    init[i] = UNTOUCHED;
                for (int64_t e = 0; e < n; e++)
                    for (int64_t r = r0; r < r1; r++)
                        init[e * ld + r] = acc ? test_rand_f32() : NAN;
                memcpy(out, init, (size_t)(n_max * ld) * sizeof(float));
                realm_matmul_rows(k, p->t, p->w, p->cols, r0, r1, p->act, p->act_stride, n, out, ld,
                                  acc != 0);
                int bad = 0;
                for (int64_t e = 0; e < n_max && bad < 5; e++) {
                    for (int64_t r = 0; r < ld && bad < 5; r++) {
                        const int64_t i = e * ld + r;
                        if (e >= n || r < r0 || r >= r1) {
                            if (!(out[i] == UNTOUCHED)) {
                                bad++;
                                CHECK_MSG(0, "%s %s n=%lld rows [%lld,%lld): wrote out[%lld][%lld]",
                                          realm_type_name(p->t), realm_isa_name(k->isa),
                                          (long long)n, (long long)r0, (long long)r1, (long long)e,
                                          (long long)r);
                            }
                            continue;
                        }
                        const float want = expect[e * ROWS + r];
                        const double m = mag[e * ROWS + r];
                        if (!close_to(out[i], init[i], acc, want, m)) {
                            bad++;
                            CHECK_MSG(0,
                                      "%s %s n=%lld rows [%lld,%lld) acc %d: out[%lld][%lld] = "
                                      "%.9g, vec_dot %.9g (+ init %.9g, mag %.3g)",
                                      realm_type_name(p->t), realm_isa_name(k->isa), (long long)n,
                                      (long long)r0, (long long)r1, acc, (long long)e, (long long)r,
                                      out[i], want, acc ? init[i] : 0.0f, m);
                        }
                    }
                }
                test_checks++;
            }
        }
    }
    free(out);
    free(init);
}

static void test_type(realm_type t, int mode)
{
    problem p = {.t = t, .at = realm_type_get(t)->vec_dot_type, .cols = cols_for(t)};
    p.row_size = realm_row_size(t, p.cols);
    /* token rows 12 bytes apart beyond their size: keeps 4-byte alignment */
    p.act_stride = realm_row_size(p.at, p.cols) + 12;
    const int64_t n_max = token_counts[N_TOKEN_COUNTS - 1];
    guarded wg = make_weights(t, ROWS, p.cols, mode);
    /* the last token's row ends exactly at the guard page */
    guarded ag = guarded_new(p.act_stride * (size_t)(n_max - 1) + realm_row_size(p.at, p.cols));
    const uint8_t *w = wg.p;
    uint8_t *act = ag.p;
    float *wf = malloc((size_t)(ROWS * p.cols) * sizeof(float));
    float *af = malloc((size_t)(n_max * p.cols) * sizeof(float));
    float *x = malloc((size_t)p.cols * sizeof(float));
    const realm_kernels *ref = realm_kernels_get(REALM_ISA_SCALAR);
    for (int64_t e = 0; e < n_max; e++) {
        fill_normal(x, p.cols, 1.0f);
        if (e % 5 == 3) /* an outlier, as in real activations */
            x[test_rand_u64() % (uint64_t)p.cols] = 40.0f;
        uint8_t *a = act + (size_t)e * p.act_stride;
        ref->from_float[p.at](x, a, p.cols);
        if (e < n_max - 1)
            memset(a + realm_row_size(p.at, p.cols), 0xee, 12);
        CHECK_RC(realm_dequantize_row(p.at, a, af + e * p.cols, p.cols), REALM_OK);
    }
    for (int64_t r = 0; r < ROWS; r++)
        CHECK_RC(realm_dequantize_row(t, w + (size_t)r * p.row_size, wf + r * p.cols, p.cols),
                 REALM_OK);
    p.w = w;
    p.act = act;
    p.wf = wf;
    p.af = af;

    double *mag = malloc((size_t)(n_max * ROWS) * sizeof(double));
    for (int64_t e = 0; e < n_max; e++)
        for (int64_t r = 0; r < ROWS; r++)
            mag[e * ROWS + r] = magnitude(&p, r, e);
    float *expect = malloc((size_t)(n_max * ROWS) * sizeof(float));
    for (int isa = 0; isa < REALM_ISA_COUNT; isa++) {
        const realm_kernels *k = realm_kernels_get((realm_isa)isa);
        if (k == NULL)
            continue;
        for (int64_t e = 0; e < n_max; e++)
            for (int64_t r = 0; r < ROWS; r++)
                expect[e * ROWS + r] = k->vec_dot[t](p.cols, w + (size_t)r * p.row_size,
                                                     act + (size_t)e * p.act_stride);
        check_problem(k, &p, expect, mag);
    }
    free(expect);
    free(mag);
    free(x);
    free(af);
    free(wf);
    guarded_free(&ag);
    guarded_free(&wg);
}

/*
 * Token rows whose activations are all zero give exactly 0 whatever the
 * weights: no offset or min term may leak into them.
 */
static void test_zero_activations(void)
{
    for (int i = 0; i < N_WEIGHT_TYPES; i++) {
        const realm_type t = weight_types[i];
        const realm_type at = realm_type_get(t)->vec_dot_type;
        const int64_t cols = cols_for(t), n = 9;
        const size_t stride = realm_row_size(at, cols);
        guarded w = make_weights(t, ROWS, cols, 0);
        uint8_t *act = malloc(stride * (size_t)n);
        float *zero = calloc((size_t)cols, sizeof(float));
        float *out = malloc((size_t)(n * ROWS) * sizeof(float));
        for (int isa = 0; isa < REALM_ISA_COUNT; isa++) {
            const realm_kernels *k = realm_kernels_get((realm_isa)isa);
            if (k == NULL)
                continue;
            for (int64_t e = 0; e < n; e++)
                k->from_float[at](zero, act + (size_t)e * stride, cols);
            realm_matmul_rows(k, t, w.p, cols, 0, ROWS, act, stride, n, out, ROWS, false);
            int nonzero = 0;
            for (int64_t j = 0; j < n * ROWS; j++)
                nonzero += out[j] != 0.0f;
            CHECK_MSG(nonzero == 0, "%s %s: %d nonzero outputs", realm_type_name(t),
                      realm_isa_name((realm_isa)isa), nonzero);
        }
        free(out);
        free(zero);
        free(act);
        guarded_free(&w);
    }
}

/*
 * A Q4_0 row long enough that the tile's pack_act output for all chunks
 * does not fit the scratch: the chunks-outside-panels order.
 */
static void test_long_rows(void)
{
    const realm_kernels *k = realm_kernels_best();
    const realm_type t = REALM_TYPE_Q4_0, at = REALM_TYPE_Q8_0;
    const int64_t rows = 21, cols = 13 * 1024 + 32, n = 40;
    const size_t row_size = realm_row_size(t, cols), stride = realm_row_size(at, cols);
    guarded w = make_weights(t, rows, cols, 1);
    uint8_t *act = malloc(stride * (size_t)n);
    float *x = malloc((size_t)cols * sizeof(float));
    float *wf = malloc((size_t)cols * sizeof(float));
    float *af = malloc((size_t)(n * cols) * sizeof(float));
    float *out = malloc((size_t)(n * rows) * sizeof(float));
    for (int64_t e = 0; e < n; e++) {
        fill_normal(x, cols, 1.0f);
        k->from_float[at](x, act + (size_t)e * stride, cols);
        CHECK_RC(realm_dequantize_row(at, act + (size_t)e * stride, af + e * cols, cols), REALM_OK);
    }
    realm_matmul_rows(k, t, w.p, cols, 0, rows, act, stride, n, out, rows, false);
    for (int64_t r = 0; r < rows; r++) {
        CHECK_RC(realm_dequantize_row(t, w.p + (size_t)r * row_size, wf, cols), REALM_OK);
        for (int64_t e = 0; e < n; e++) {
            double m = 0;
            for (int64_t i = 0; i < cols; i++)
                m += fabs((double)wf[i] * af[e * cols + i]);
            const float want =
                k->vec_dot[t](cols, w.p + (size_t)r * row_size, act + (size_t)e * stride);
            CHECK_MSG(fabs(out[e * rows + r] - want) <= TOLERANCE * m,
                      "long rows: out[%lld][%lld] = %.9g, vec_dot %.9g", (long long)e, (long long)r,
                      out[e * rows + r], want);
        }
    }
    free(out);
    free(af);
    free(wf);
    free(x);
    free(act);
    guarded_free(&w);
}

/* The types of Q4_K_M, Q8_0, Q4_0 and float models have blocked kernels:
 * a fall-back to the vec_dot loop would pass every check above. */
static void test_blocked_kernels_exist(void)
{
    static const realm_type required[] = {
        REALM_TYPE_Q4_K, REALM_TYPE_Q5_K, REALM_TYPE_Q6_K, REALM_TYPE_Q8_0,
        REALM_TYPE_Q4_0, REALM_TYPE_F16,  REALM_TYPE_F32,
    };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        CHECK_MSG(realm__mm_avx512[required[i]] != NULL, "no AVX-512 kernel for %s",
                  realm_type_name(required[i]));
        CHECK_MSG(realm__mm_avx2[required[i]] != NULL, "no AVX2 kernel for %s",
                  realm_type_name(required[i]));
    }
}

/* ---- small batches: the multi-vector kernels ------------------------------------- */

static const realm_type multi_types[] = {REALM_TYPE_Q4_K, REALM_TYPE_Q6_K, REALM_TYPE_Q8_0,
                                         REALM_TYPE_Q4_0};
#define N_MULTI_TYPES (int)(sizeof multi_types / sizeof multi_types[0])

/* A small-batch problem: rows x cols weights (reference quantizer, or random
 * codes for mode 0), 16 tokens of activations 20 bytes apart beyond a row. */
typedef struct {
    realm_type t, at;
    int64_t rows, cols;
    size_t row_size, stride;
    guarded w, a;
    double *mag; /* rows x 16: sum |w_i y_i| */
    float *want; /* rows x 16: the scalar vec_dot */
} small;

#define SMALL_TOKENS 16

static small small_new(realm_type t, int64_t rows, int64_t cols, int mode)
{
    small p = {.t = t, .at = realm_type_get(t)->vec_dot_type, .rows = rows, .cols = cols};
    p.row_size = realm_row_size(t, cols);
    p.stride = realm_row_size(p.at, cols) + 20;
    p.w = make_weights(t, rows, cols, mode);
    p.a = guarded_new(p.stride * (SMALL_TOKENS - 1) + realm_row_size(p.at, cols));
    float *x = malloc((size_t)cols * sizeof(float));
    float *wf = malloc((size_t)(rows * cols) * sizeof(float));
    float *af = malloc((size_t)(SMALL_TOKENS * cols) * sizeof(float));
    const realm_kernels *ref = realm_kernels_get(REALM_ISA_SCALAR);
    for (int64_t e = 0; e < SMALL_TOKENS; e++) {
        fill_normal(x, cols, 1.0f);
        if (e % 3 == 1)
            x[test_rand_u64() % (uint64_t)cols] = -30.0f;
        uint8_t *a = p.a.p + (size_t)e * p.stride;
        ref->from_float[p.at](x, a, cols);
        CHECK_RC(realm_dequantize_row(p.at, a, af + e * cols, cols), REALM_OK);
    }
    for (int64_t r = 0; r < rows; r++)
        CHECK_RC(realm_dequantize_row(t, p.w.p + (size_t)r * p.row_size, wf + r * cols, cols),
                 REALM_OK);
    p.mag = malloc((size_t)(rows * SMALL_TOKENS) * sizeof(double));
    p.want = malloc((size_t)(rows * SMALL_TOKENS) * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t e = 0; e < SMALL_TOKENS; e++) {
            double m = 0;
            for (int64_t i = 0; i < cols; i++)
                m += fabs((double)wf[r * cols + i] * (double)af[e * cols + i]);
            p.mag[r * SMALL_TOKENS + e] = m;
            p.want[r * SMALL_TOKENS + e] =
                ref->vec_dot[t](cols, p.w.p + (size_t)r * p.row_size, p.a.p + (size_t)e * p.stride);
        }
    free(af);
    free(wf);
    free(x);
    return p;
}

static void small_free(small *p)
{
    free(p->want);
    free(p->mag);
    guarded_free(&p->a);
    guarded_free(&p->w);
}

/*
 * Each ISA's multi-vector kernel directly (after its prep step, if any, on
 * every token), for 1..REALM__MULTI_NR tokens starting at every third
 * token, against the scalar vec_dot; the outputs past ny stay untouched.
 */
static void check_multi_fn(const small *p, const realm__dot_multi *m, const char *isa)
{
    float s[REALM__MULTI_NR + 1];
    const uint8_t *a = p->a.p;
    guarded prepped = {0};
    if (m->prep != NULL) {
        /* the prepared rows sit as far apart as the originals, to catch a
         * prep that writes past its row's size */
        const size_t arow = realm_row_size(p->at, p->cols);
        const size_t size = p->stride * (SMALL_TOKENS - 1) + arow;
        prepped = guarded_new(size);
        memset(prepped.p, 0x5a, size);
        for (int e = 0; e < SMALL_TOKENS; e++)
            m->prep(p->cols, p->a.p + (size_t)e * p->stride, prepped.p + (size_t)e * p->stride);
        for (int e = 0; e + 1 < SMALL_TOKENS; e++)
            for (size_t i = arow; i < p->stride; i++)
                CHECK(prepped.p[(size_t)e * p->stride + i] == 0x5a);
        a = prepped.p;
    }
    for (int64_t r = 0; r < p->rows; r++) {
        const uint8_t *w = p->w.p + (size_t)r * p->row_size;
        for (int ny = 1; ny <= REALM__MULTI_NR; ny++) {
            for (int e0 = 0; e0 + ny <= SMALL_TOKENS; e0 += 3) {
                for (int e = 0; e <= REALM__MULTI_NR; e++)
                    s[e] = UNTOUCHED;
                m->dot(p->cols, w, a + (size_t)e0 * p->stride, p->stride, ny, s);
                for (int e = 0; e < ny; e++) {
                    const int64_t i = r * SMALL_TOKENS + e0 + e;
                    CHECK_MSG(fabs(s[e] - p->want[i]) <= TOLERANCE * p->mag[i] + 1e-30,
                              "multi %s %s cols %lld ny %d row %lld token %d: %.9g, vec_dot_ref "
                              "%.9g",
                              realm_type_name(p->t), isa, (long long)p->cols, ny, (long long)r,
                              e0 + e, s[e], p->want[i]);
                }
                for (int e = ny; e <= REALM__MULTI_NR; e++)
                    CHECK(s[e] == UNTOUCHED);
            }
        }
    }
    if (m->prep != NULL)
        guarded_free(&prepped);
}

/*
 * realm_matmul_rows for 2..16 tokens (the multi-vector kernels, then the
 * blocked ones past each type's threshold) on row counts 1, 3, 17 and 100,
 * as one thread and split between two as a thread pool would, accumulate
 * on and off, against the scalar vec_dot.
 */
static void check_small_matmul(const realm_kernels *k, const small *p)
{
    const int64_t ld = p->rows + 1;
    float *out = malloc((size_t)(SMALL_TOKENS * ld) * sizeof(float));
    float *init = malloc((size_t)(SMALL_TOKENS * ld) * sizeof(float));
    for (int64_t n = 2; n <= SMALL_TOKENS; n++) {
        for (int nth = 1; nth <= 2; nth++) {
            for (int acc = 0; acc < 2; acc++) {
                for (int64_t i = 0; i < SMALL_TOKENS * ld; i++)
                    init[i] = acc ? test_rand_f32() : UNTOUCHED;
                memcpy(out, init, (size_t)(SMALL_TOKENS * ld) * sizeof(float));
                for (int ith = 0; ith < nth; ith++)
                    realm_matmul_rows(k, p->t, p->w.p, p->cols, p->rows * ith / nth,
                                      p->rows * (ith + 1) / nth, p->a.p, p->stride, n, out, ld,
                                      acc != 0);
                int bad = 0;
                for (int64_t e = 0; e < SMALL_TOKENS && bad < 3; e++)
                    for (int64_t r = 0; r < ld && bad < 3; r++) {
                        const int64_t i = e * ld + r;
                        if (e >= n || r >= p->rows) {
                            bad += !(out[i] == init[i]);
                            CHECK(out[i] == init[i]);
                            continue;
                        }
                        const int64_t j = r * SMALL_TOKENS + e;
                        if (!close_to(out[i], init[i], acc, p->want[j], p->mag[j])) {
                            bad++;
                            CHECK_MSG(0,
                                      "small %s %s cols %lld rows %lld n %lld threads %d acc %d: "
                                      "out[%lld][%lld] = %.9g, vec_dot_ref %.9g (+ init %.9g)",
                                      realm_type_name(p->t), realm_isa_name(k->isa),
                                      (long long)p->cols, (long long)p->rows, (long long)n, nth,
                                      acc, (long long)e, (long long)r, out[i], p->want[j],
                                      acc ? init[i] : 0.0f);
                        }
                    }
                test_checks++;
            }
        }
    }
    free(init);
    free(out);
}

/*
 * realm_matmul_rows_invariant keeps one path whatever the token count: each
 * token's row of n = 1..8 tokens, and of 40 (the 16 tokens repeated; past
 * the tiles of few tokens, which otherwise take shorter chunks), bitwise
 * equals that token alone (the multi-vector kernels, whose rounding
 * differs from the blocked ones, must not be taken from n = 2 on).
 */
#define INVARIANT_MANY 40
static void check_invariant(const realm_kernels *k, const small *p)
{
    const int64_t rows = p->rows;
    float *alone = malloc((size_t)(SMALL_TOKENS * rows) * sizeof(float));
    float *out = malloc((size_t)(INVARIANT_MANY * rows) * sizeof(float));
    for (int64_t e = 0; e < SMALL_TOKENS; e++)
        realm_matmul_rows_invariant(k, p->t, p->w.p, p->cols, 0, rows,
                                    p->a.p + (size_t)e * p->stride, p->stride, 1, alone + e * rows,
                                    rows, false);
    for (int64_t n = 1; n <= 8; n++) {
        realm_matmul_rows_invariant(k, p->t, p->w.p, p->cols, 0, rows, p->a.p, p->stride, n, out,
                                    rows, false);
        CHECK_MSG(memcmp(out, alone, (size_t)(n * rows) * sizeof(float)) == 0,
                  "invariant %s %s cols %lld: n=%lld differs from one token at a time",
                  realm_type_name(p->t), realm_isa_name(k->isa), (long long)p->cols, (long long)n);
    }
    uint8_t *many = malloc(p->stride * INVARIANT_MANY);
    for (int64_t e = 0; e < INVARIANT_MANY; e++)
        memcpy(many + (size_t)e * p->stride, p->a.p + (size_t)(e % SMALL_TOKENS) * p->stride,
               realm_row_size(p->at, p->cols));
    realm_matmul_rows_invariant(k, p->t, p->w.p, p->cols, 0, rows, many, p->stride, INVARIANT_MANY,
                                out, rows, false);
    for (int64_t e = 0; e < INVARIANT_MANY; e++)
        CHECK_MSG(memcmp(out + e * rows, alone + (e % SMALL_TOKENS) * rows,
                         (size_t)rows * sizeof(float)) == 0,
                  "invariant %s %s cols %lld: token %lld of %d differs from it alone",
                  realm_type_name(p->t), realm_isa_name(k->isa), (long long)p->cols, (long long)e,
                  INVARIANT_MANY);
    free(many);
    free(out);
    free(alone);
}

static void test_small_batches(void)
{
    static const int64_t row_counts[] = {1, 3, 17, 100};
    /* 96 and 416 columns (3 and 13 blocks of 32) end in a part-group of
     * blocks with an odd one out */
    static const int64_t col_counts[] = {256, 2048, 5632, 96, 416};
    for (int ti = 0; ti < N_MULTI_TYPES; ti++) {
        const realm_type t = multi_types[ti];
        for (int ci = 0; ci < 5; ci++) {
            if (col_counts[ci] % realm_type_get(t)->block_size != 0)
                continue;
            for (int ri = 0; ri < 4; ri++) {
                /* random codes and reference-quantized weights in turn */
                small p = small_new(t, row_counts[ri], col_counts[ci], (int)((ri + ci) & 1));
                check_multi_fn(&p, &realm__dot_multi_ref[t], "scalar");
                if (realm_kernels_get(REALM_ISA_AVX2) != NULL)
                    check_multi_fn(&p, &realm__dot_multi_avx2[t], "avx2");
                if (realm_kernels_get(REALM_ISA_AVX512) != NULL)
                    check_multi_fn(&p, &realm__dot_multi_avx512[t], "avx512");
                for (int isa = 0; isa < REALM_ISA_COUNT; isa++) {
                    const realm_kernels *k = realm_kernels_get((realm_isa)isa);
                    if (k == NULL)
                        continue;
                    check_small_matmul(k, &p);
                    if (ri == 2)
                        check_invariant(k, &p);
                }
                small_free(&p);
            }
        }
    }
}

/*
 * Rows so long that the prepared activations of a small batch do not fit
 * matmul.c's buffer together (Q8_K rows of 23040 columns: 3 tokens per
 * group), so the tokens go in groups over the same rows.
 */
static void test_small_batches_long_rows(void)
{
    static const realm_type types[] = {REALM_TYPE_Q4_K, REALM_TYPE_Q6_K};
    const int64_t cols = 90 * 256;
    CHECK(realm_row_size(REALM_TYPE_Q8_K, cols) * 4 > REALM__MULTI_PREP_MAX);
    for (int ti = 0; ti < 2; ti++) {
        small p = small_new(types[ti], 3, cols, ti);
        for (int isa = 0; isa < REALM_ISA_COUNT; isa++) {
            const realm_kernels *k = realm_kernels_get((realm_isa)isa);
            if (k != NULL)
                check_small_matmul(k, &p);
        }
        small_free(&p);
    }
}

/* The types of Q4_K_M, Q8_0 and Q4_0 models have multi-vector kernels. */
static void test_multi_kernels_exist(void)
{
    for (int i = 0; i < N_MULTI_TYPES; i++) {
        CHECK_MSG(realm__dot_multi_ref[multi_types[i]].dot != NULL, "no scalar multi kernel for %s",
                  realm_type_name(multi_types[i]));
        CHECK_MSG(realm__dot_multi_avx2[multi_types[i]].dot != NULL, "no AVX2 multi kernel for %s",
                  realm_type_name(multi_types[i]));
        CHECK_MSG(realm__dot_multi_avx512[multi_types[i]].dot != NULL,
                  "no AVX-512 multi kernel for %s", realm_type_name(multi_types[i]));
    }
}

/* ---- packed weights (realm_repack_rows, realm_matmul_packed_rows) ----------- */

/*
 * A Q4_K, Q5_K, Q6_K, Q8_0 or Q4_0 matrix repacked in two thread shares, then the packed product on
 * every ISA for 1..16 and 40 tokens (tiles of 8 and a part), row ranges
 * whole, with partial panels at both ends, one row, and from a panel on,
 * accumulate on and off, against the scalar vec_dot; nothing outside the
 * range written. Every token's result bitwise equal to that token alone
 * (the invariance the packed product promises).
 */
static void check_packed(const small *p)
{
    const int64_t rows = p->rows, ld = rows + 3;
    const size_t size = realm_repack_size(p->t, rows, p->cols);
    CHECK(size > 0 && size <= p->row_size * (size_t)rows * 103 / 100);
    guarded packed = guarded_new(size);
    CHECK(((uintptr_t)packed.p & 63) == 0);
    realm_repack_rows(p->t, p->w.p, p->cols, 16, rows, packed.p);
    realm_repack_rows(p->t, p->w.p, p->cols, 0, 16, packed.p);
    const int64_t ranges_p[][2] = {{0, rows}, {3, rows - 5}, {17, 18}, {16, rows}};
    float *out = malloc((size_t)(INVARIANT_MANY * ld) * sizeof(float));
    float *init = malloc((size_t)(INVARIANT_MANY * ld) * sizeof(float));
    float *alone = malloc((size_t)(SMALL_TOKENS * ld) * sizeof(float));
    uint8_t *many = malloc(p->stride * INVARIANT_MANY);
    for (int64_t e = 0; e < INVARIANT_MANY; e++)
        memcpy(many + (size_t)e * p->stride, p->a.p + (size_t)(e % SMALL_TOKENS) * p->stride,
               realm_row_size(p->at, p->cols));
    for (int isa = 0; isa < REALM_ISA_COUNT; isa++) {
        const realm_kernels *k = realm_kernels_get((realm_isa)isa);
        if (k == NULL)
            continue;
        for (int64_t n = 1; n <= SMALL_TOKENS; n++)
            for (int ri = 0; ri < 4; ri++)
                for (int acc = 0; acc < 2; acc++) {
                    const int64_t r0 = ranges_p[ri][0], r1 = ranges_p[ri][1];
                    for (int64_t i = 0; i < SMALL_TOKENS * ld; i++)
                        init[i] = acc ? test_rand_f32() : UNTOUCHED;
                    memcpy(out, init, (size_t)(SMALL_TOKENS * ld) * sizeof(float));
                    realm_matmul_packed_rows(k, p->t, packed.p, p->cols, r0, r1, p->a.p, p->stride,
                                             n, out, ld, acc != 0);
                    int bad = 0;
                    for (int64_t e = 0; e < SMALL_TOKENS && bad < 3; e++)
                        for (int64_t r = 0; r < ld && bad < 3; r++) {
                            const int64_t i = e * ld + r;
                            if (e >= n || r < r0 || r >= r1) {
                                bad += !(out[i] == init[i]);
                                CHECK_MSG(out[i] == init[i], "packed %s: wrote out[%lld][%lld]",
                                          realm_isa_name(k->isa), (long long)e, (long long)r);
                                continue;
                            }
                            const int64_t j = r * SMALL_TOKENS + e;
                            if (!close_to(out[i], init[i], acc, p->want[j], p->mag[j])) {
                                bad++;
                                CHECK_MSG(0,
                                          "packed %s %s cols %lld rows [%lld,%lld) n %lld acc %d: "
                                          "out[%lld][%lld] = %.9g, vec_dot_ref %.9g (+ init %.9g)",
                                          realm_type_name(p->t), realm_isa_name(k->isa),
                                          (long long)p->cols, (long long)r0, (long long)r1,
                                          (long long)n, acc, (long long)e, (long long)r, out[i],
                                          p->want[j], acc ? init[i] : 0.0f);
                            }
                        }
                    test_checks++;
                }
        for (int64_t e = 0; e < SMALL_TOKENS; e++)
            realm_matmul_packed_rows(k, p->t, packed.p, p->cols, 0, rows,
                                     p->a.p + (size_t)e * p->stride, p->stride, 1, alone + e * ld,
                                     ld, false);
        for (int64_t n = 2; n <= INVARIANT_MANY; n += n < SMALL_TOKENS ? 1 : INVARIANT_MANY) {
            const int64_t nn = n > SMALL_TOKENS ? INVARIANT_MANY : n;
            realm_matmul_packed_rows(k, p->t, packed.p, p->cols, 0, rows, many, p->stride, nn, out,
                                     ld, false);
            for (int64_t e = 0; e < nn; e++)
                CHECK_MSG(memcmp(out + e * ld, alone + (e % SMALL_TOKENS) * ld,
                                 (size_t)rows * sizeof(float)) == 0,
                          "packed %s cols %lld: token %lld of %lld differs from it alone",
                          realm_isa_name(k->isa), (long long)p->cols, (long long)e, (long long)nn);
        }
    }
    free(many);
    free(alone);
    free(init);
    free(out);
    guarded_free(&packed);
}

static void test_packed(void)
{
    static const int64_t col_counts[] = {256, 2048, 5632};
    static const realm_type types[] = {REALM_TYPE_Q4_K, REALM_TYPE_Q5_K, REALM_TYPE_Q6_K,
                                       REALM_TYPE_Q8_0, REALM_TYPE_Q4_0};
    for (int ti = 0; ti < 5; ti++)
        for (int ci = 0; ci < 3; ci++)
            for (int mode = 0; mode < 2; mode++) {
                small p = small_new(types[ti], ci == 0 ? 32 : 48, col_counts[ci], mode);
                check_packed(&p);
                small_free(&p);
            }
    /* which shapes and types have a layout, and where it runs fast */
    CHECK(realm_repack_size(REALM_TYPE_Q4_K, 32, 512) == 2 * 2 * 2368);
    CHECK(realm_repack_size(REALM_TYPE_Q4_K, 40, 512) == 0);
    CHECK(realm_repack_size(REALM_TYPE_Q4_K, 32, 100) == 0);
    CHECK(realm_repack_size(REALM_TYPE_Q6_K, 32, 512) == 2 * 2 * 3392);
    CHECK(realm_repack_size(REALM_TYPE_Q5_K, 32, 512) == 2 * 2 * 2880);
    CHECK(realm_repack_size(REALM_TYPE_Q3_K, 32, 512) == 0);
    CHECK(realm_repack_size(REALM_TYPE_Q8_0, 32, 512) == 2 * 8 * 1088);
    CHECK(realm_repack_size(REALM_TYPE_Q8_0, 32, 96) == 0);
    CHECK(realm_repack_size(REALM_TYPE_Q4_0, 32, 512) == 2 * 8 * 576);
    CHECK(realm_repack_size(REALM_TYPE_Q4_1, 32, 512) == 0);
    for (int ti = 0; ti < 5; ti++) {
        CHECK(!realm_repack_fast(realm_kernels_get(REALM_ISA_SCALAR), types[ti]));
        if (realm_kernels_get(REALM_ISA_AVX512) != NULL)
            CHECK(realm_repack_fast(realm_kernels_get(REALM_ISA_AVX512), types[ti]));
    }
    /* AVX2: Q4_K only (repack_avx2.c) */
    if (realm_kernels_get(REALM_ISA_AVX2) != NULL) {
        CHECK(realm_repack_fast(realm_kernels_get(REALM_ISA_AVX2), REALM_TYPE_Q4_K));
        CHECK(!realm_repack_fast(realm_kernels_get(REALM_ISA_AVX2), REALM_TYPE_Q5_K));
        CHECK(!realm_repack_fast(realm_kernels_get(REALM_ISA_AVX2), REALM_TYPE_Q6_K));
        CHECK(!realm_repack_fast(realm_kernels_get(REALM_ISA_AVX2), REALM_TYPE_Q8_0));
        CHECK(!realm_repack_fast(realm_kernels_get(REALM_ISA_AVX2), REALM_TYPE_Q4_0));
    }
}

/* Empty ranges and n == 0 write nothing. */
static void test_empty(void)
{
    const realm_kernels *k = realm_kernels_best();
    float out[4] = {UNTOUCHED, UNTOUCHED, UNTOUCHED, UNTOUCHED};
    guarded w = make_weights(REALM_TYPE_Q4_K, 4, 256, 0);
    uint8_t act[2 * sizeof(realm_block_q8_K)] = {0};
    realm_matmul_rows(k, REALM_TYPE_Q4_K, w.p, 256, 2, 2, act, sizeof(realm_block_q8_K), 2, out, 4,
                      false);
    realm_matmul_rows(k, REALM_TYPE_Q4_K, w.p, 256, 0, 4, act, sizeof(realm_block_q8_K), 0, out, 4,
                      false);
    for (int i = 0; i < 4; i++)
        CHECK(out[i] == UNTOUCHED);
    guarded_free(&w);
}

int main(void)
{
    test_begin("matmul", 600);
    for (int i = 0; i < N_WEIGHT_TYPES; i++)
        for (int mode = 0; mode < 2; mode++)
            if (mode == 0 || !is_float_type(weight_types[i]))
                test_type(weight_types[i], mode);
    test_zero_activations();
    test_long_rows();
    test_blocked_kernels_exist();
    test_small_batches();
    test_small_batches_long_rows();
    test_multi_kernels_exist();
    test_packed();
    test_empty();
    return test_end();
}
