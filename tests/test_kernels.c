/*
 * Dot-product kernels: every SIMD table entry against the scalar reference
 * over odd lengths, the reference against a double-precision dot of the
 * dequantized rows, SIMD activation converters bit-identical to the scalar
 * quantizers, realm_matvec's row split, and the REALM_ISA cap.
 *
 * Weight rows are mostly random bytes with a sane random scale patched in
 * (every code, scale and high-bit pattern occurs), plus rows made by the
 * reference quantizer. Buffers sit at an odd multiple of the types'
 * alignment, so no kernel may assume 32-byte alignment.
 */
#include "kernels/kernels_internal.h"
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

static const realm_type act_types[] = {
    REALM_TYPE_F32, REALM_TYPE_F16, REALM_TYPE_BF16, REALM_TYPE_Q8_0, REALM_TYPE_Q8_K,
};
#define N_ACT_TYPES (int)(sizeof act_types / sizeof act_types[0])

static const int block_counts[] = {1, 2, 3, 5, 17, 33, 255};
static const int float_lengths[] = {1, 3, 17, 33, 255, 257, 1023};

static bool is_float_type(realm_type t)
{
    return t == REALM_TYPE_F32 || t == REALM_TYPE_F16 || t == REALM_TYPE_BF16;
}

/* ---- buffers ------------------------------------------------------------ */

/*
 * A buffer whose data starts `off` bytes past a 16-byte boundary (malloc's
 * alignment): the type's natural alignment but never a vector's. The data
 * ends exactly where the allocation does, so AddressSanitizer catches a
 * kernel reading past the end of a row.
 */
typedef struct {
    void *base;
    uint8_t *p;
} buf;

static buf buf_new(size_t size, size_t off)
{
    buf b;
    b.base = malloc(16 + off + size);
    if (b.base == NULL || (uintptr_t)b.base % 16 != 0) {
        fprintf(stderr, "malloc failed or is not 16-byte aligned\n");
        exit(1);
    }
    b.p = (uint8_t *)b.base + 16 + off;
    return b;
}

static void buf_free(buf *b)
{
    free(b->base);
    b->base = NULL;
    b->p = NULL;
}

static size_t type_align(realm_type t)
{
    return (t == REALM_TYPE_F32 || t == REALM_TYPE_Q8_K) ? 4 : 2;
}

/* ---- random data ---------------------------------------------------------- */

static void fill_normal(float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * test_rand_normal();
}

/*
 * A weight row of n elements of type t. mode 0: random bytes with sane
 * scales (float types: random normal values); mode 1: random normal values
 * through the reference quantizer.
 */
static buf make_weights(realm_type t, int64_t n, int mode)
{
    const size_t size = realm_row_size(t, n);
    buf b = buf_new(size, type_align(t));
    float *f = malloc((size_t)n * sizeof(float));
    fill_normal(f, n, 0.5f);
    if (is_float_type(t) || mode == 1) {
        CHECK_RC(realm_quantize_row(t, f, b.p, n), REALM_OK);
    } else {
        for (size_t i = 0; i < size; i++)
            b.p[i] = (uint8_t)test_rand_u64();
        patch_scales(t, b.p, n / realm_type_get(t)->block_size);
    }
    free(f);
    return b;
}

/* ---- double-precision expectations --------------------------------------- */

typedef struct {
    double dot; /* sum x_i y_i of the dequantized rows */
    double mag; /* sum |x_i y_i| */
} exact_dot;

static exact_dot dequantized_dot(realm_type tx, const void *x, realm_type ty, const void *y,
                                 int64_t n)
{
    float *fx = malloc((size_t)n * sizeof(float));
    float *fy = malloc((size_t)n * sizeof(float));
    CHECK_RC(realm_dequantize_row(tx, x, fx, n), REALM_OK);
    CHECK_RC(realm_dequantize_row(ty, y, fy, n), REALM_OK);
    exact_dot e = {0, 0};
    for (int64_t i = 0; i < n; i++) {
        const double p = (double)fx[i] * (double)fy[i];
        e.dot += p;
        e.mag += fabs(p);
    }
    free(fx);
    free(fy);
    return e;
}

/* ---- vec_dot: reference vs dequantized, SIMD vs reference ---------------- */

static const realm_kernels *tables[REALM_ISA_COUNT];

static void check_dot_row(realm_type t, int64_t n, int mode)
{
    const realm_type at = realm_type_get(t)->vec_dot_type;
    buf w = make_weights(t, n, mode);
    buf a = buf_new(realm_row_size(at, n), type_align(at));
    float *f = malloc((size_t)n * sizeof(float));
    fill_normal(f, n, 1.0f);
    tables[REALM_ISA_SCALAR]->from_float[at](f, a.p, n);

    const exact_dot e = dequantized_dot(t, w.p, at, a.p, n);
    const float ref = tables[REALM_ISA_SCALAR]->vec_dot[t](n, w.p, a.p);
    /* the reference: exact integer sums, float scaling and block sums */
    CHECK_MSG(fabs(ref - e.dot) <= 2e-6 * e.mag + 1e-30,
              "%s n=%lld mode %d: ref %.9g, double %.9g (mag %.3g)", realm_type_name(t),
              (long long)n, mode, ref, e.dot, e.mag);
    for (int isa = REALM_ISA_SCALAR + 1; isa < REALM_ISA_COUNT; isa++) {
        if (tables[isa] == NULL)
            continue;
        const float s = tables[isa]->vec_dot[t](n, w.p, a.p);
        CHECK_MSG(fabs(s - ref) <= 2e-6 * e.mag + 1e-30,
                  "%s %s n=%lld mode %d: %.9g vs ref %.9g (mag %.3g)", realm_type_name(t),
                  realm_isa_name((realm_isa)isa), (long long)n, mode, s, ref, e.mag);
    }
    free(f);
    buf_free(&w);
    buf_free(&a);
}

static void test_vec_dot(void)
{
    for (int i = 0; i < N_WEIGHT_TYPES; i++) {
        const realm_type t = weight_types[i];
        const int64_t bs = realm_type_get(t)->block_size;
        for (int mode = 0; mode < 2; mode++) {
            for (size_t k = 0; k < sizeof block_counts / sizeof block_counts[0]; k++)
                check_dot_row(t, block_counts[k] * (bs > 1 ? bs : 32), mode);
        }
        if (is_float_type(t)) {
            for (size_t k = 0; k < sizeof float_lengths / sizeof float_lengths[0]; k++)
                check_dot_row(t, float_lengths[k], 0);
        }
    }
}

/* A zero activation row gives exactly 0 whatever the weights. */
static void test_zero_activations(void)
{
    for (int i = 0; i < N_WEIGHT_TYPES; i++) {
        const realm_type t = weight_types[i];
        const realm_type at = realm_type_get(t)->vec_dot_type;
        const int64_t n = 17 * 256;
        buf w = make_weights(t, n, 0);
        buf a = buf_new(realm_row_size(at, n), type_align(at));
        float *f = calloc((size_t)n, sizeof(float));
        for (int isa = 0; isa < REALM_ISA_COUNT; isa++) {
            if (tables[isa] == NULL)
                continue;
            tables[isa]->from_float[at](f, a.p, n);
            const float s = tables[isa]->vec_dot[t](n, w.p, a.p);
            CHECK_MSG(s == 0.0f, "%s %s: %g", realm_type_name(t), realm_isa_name((realm_isa)isa),
                      s);
        }
        free(f);
        buf_free(&w);
        buf_free(&a);
    }
}

/* ---- from_float: bit-identical to the scalar quantizers ------------------- */

/*
 * Inputs that reach the quantizers' corner cases. kind 0: normal values at
 * random magnitudes per block; 1: exact rounding ties (a block with
 * |max| = 127 has scale 1, so k + 0.5 is a tie); 2: zero blocks, NaN, +-inf,
 * subnormals, huge values and equal magnitudes of both signs.
 */
static void make_inputs(float *x, int64_t n, int kind, int64_t block)
{
    for (int64_t b0 = 0; b0 < n; b0 += block) {
        const int64_t len = n - b0 < block ? n - b0 : block;
        float *p = x + b0;
        const int sel = (int)(test_rand_u64() % 8);
        const float scale = powf(10.0f, 6.0f * test_rand_f32());
        for (int64_t j = 0; j < len; j++)
            p[j] = scale * test_rand_normal();
        if (kind == 1) {
            for (int64_t j = 0; j < len; j++)
                p[j] = (float)((int)(test_rand_u64() % 253) - 126) +
                       0.5f * (float)(test_rand_u64() & 1);
            p[0] = (test_rand_u64() & 1) ? 127.0f : -127.0f;
        } else if (kind == 2) {
            switch (sel) {
            case 0:
                memset(p, 0, (size_t)len * sizeof(float));
                break;
            case 1:
                p[test_rand_u64() % len] = NAN;
                break;
            case 2:
                p[test_rand_u64() % len] = (test_rand_u64() & 1) ? INFINITY : -INFINITY;
                break;
            case 3:
                for (int64_t j = 0; j < len; j++)
                    p[j] *= 1e-40f;
                break;
            case 4:
                p[test_rand_u64() % len] = 3e38f;
                break;
            case 5: {
                p[test_rand_u64() % len] = 1000.0f;
                p[test_rand_u64() % len] = -1000.0f;
                break;
            }
            case 6:
                for (int64_t j = 0; j < len; j++)
                    p[j] = NAN;
                break;
            default: /* halves at the F16 rounding boundary */
                for (int64_t j = 0; j < len; j++)
                    p[j] = 1.0f + (float)(j % 4) * 0x1p-11f;
                break;
            }
        }
    }
}

static void test_from_float(void)
{
    for (int isa = REALM_ISA_SCALAR + 1; isa < REALM_ISA_COUNT; isa++) {
        if (tables[isa] == NULL)
            continue;
        for (int i = 0; i < N_ACT_TYPES; i++) {
            const realm_type t = act_types[i];
            const int64_t bs = realm_type_get(t)->block_size;
            for (int kind = 0; kind < 3; kind++) {
                for (int k = 0; k < 14; k++) {
                    const int64_t n = k < 7 ? block_counts[k] * (bs > 1 ? bs : 32)
                                            : (bs > 1 ? 0 : float_lengths[k - 7]);
                    if (n == 0)
                        continue;
                    float *x = malloc((size_t)n * sizeof(float));
                    make_inputs(x, n, kind, bs > 1 ? bs : 32);
                    const size_t size = realm_row_size(t, n);
                    buf r = buf_new(size, type_align(t));
                    buf s = buf_new(size, type_align(t));
                    memset(r.p, 0xa5, size);
                    memset(s.p, 0x5a, size);
                    tables[REALM_ISA_SCALAR]->from_float[t](x, r.p, n);
                    tables[isa]->from_float[t](x, s.p, n);
                    size_t first = 0;
                    while (first < size && r.p[first] == s.p[first])
                        first++;
                    CHECK_MSG(first == size,
                              "%s from_float %s n=%lld kind %d: first difference at byte %zu",
                              realm_isa_name((realm_isa)isa), realm_type_name(t), (long long)n,
                              kind, first);
                    buf_free(&r);
                    buf_free(&s);
                    free(x);
                }
            }
        }
    }
}

/* ---- matvec ----------------------------------------------------------------- */

static void test_matvec(void)
{
    static const int row_counts[] = {1, 3, 17, 33};
    static const realm_type types[] = {REALM_TYPE_Q4_K, REALM_TYPE_Q8_0, REALM_TYPE_F16};
    const realm_kernels *k = realm_kernels_best();
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const realm_type t = types[ti];
        const realm_type at = realm_type_get(t)->vec_dot_type;
        const int64_t cols = 512;
        for (size_t ri = 0; ri < sizeof row_counts / sizeof row_counts[0]; ri++) {
            const int64_t rows = row_counts[ri];
            buf w = make_weights(t, rows * cols, 0);
            buf a = buf_new(realm_row_size(at, cols), type_align(at));
            float *f = malloc((size_t)cols * sizeof(float));
            fill_normal(f, cols, 1.0f);
            k->from_float[at](f, a.p, cols);
            float *out = malloc((size_t)rows * sizeof(float));
            for (int nth = 1; nth <= 4; nth++) {
                int *hits = calloc((size_t)rows, sizeof(int));
                for (int ith = 0; ith < nth; ith++) {
                    for (int64_t r = 0; r < rows; r++)
                        out[r] = NAN;
                    realm_matvec(k, t, w.p, rows, cols, a.p, out, ith, nth);
                    for (int64_t r = 0; r < rows; r++) {
                        if (out[r] != out[r])
                            continue; /* not this part's row */
                        hits[r]++;
                        const float e = k->vec_dot[t](cols, w.p + r * realm_row_size(t, cols), a.p);
                        CHECK_MSG(out[r] == e, "%s rows %lld nth %d: row %lld %g vs %g",
                                  realm_type_name(t), (long long)rows, nth, (long long)r, out[r],
                                  e);
                    }
                }
                for (int64_t r = 0; r < rows; r++)
                    CHECK_MSG(hits[r] == 1, "%s rows %lld nth %d: row %lld computed %d times",
                              realm_type_name(t), (long long)rows, nth, (long long)r, hits[r]);
                free(hits);
            }
            free(out);
            free(f);
            buf_free(&w);
            buf_free(&a);
        }
    }
}

/* ---- ISA choice ------------------------------------------------------------- */

static void test_isa(void)
{
    CHECK(realm_cpu_supports(REALM_ISA_SCALAR));
    CHECK(!realm_cpu_supports(REALM_ISA_COUNT));
    CHECK_EQ_STR(realm_isa_name(REALM_ISA_SCALAR), "scalar");
    CHECK_EQ_STR(realm_isa_name(REALM_ISA_AVX2), "avx2");
    CHECK_EQ_STR(realm_isa_name(REALM_ISA_AVX512), "avx512");
    CHECK_EQ_STR(realm_isa_name(REALM_ISA_COUNT), "unknown");

#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
    CHECK_EQ_INT(realm_cpu_supports(REALM_ISA_AVX2), avx2);
    CHECK_EQ_INT(realm_cpu_supports(REALM_ISA_AVX512), avx512);
    printf("cpu: avx2 %d avx512 %d\n", avx2, avx512);
#endif

    realm_isa best = REALM_ISA_SCALAR;
    for (int isa = 0; isa < REALM_ISA_COUNT; isa++) {
        const realm_kernels *k = realm_kernels_get((realm_isa)isa);
        CHECK_EQ_INT(k != NULL, realm_cpu_supports((realm_isa)isa));
        if (k != NULL) {
            CHECK_EQ_INT(k->isa, isa);
            best = (realm_isa)isa;
        }
    }
    CHECK(realm_kernels_get(REALM_ISA_COUNT) == NULL);

    CHECK_EQ_INT(realm__isa_select(NULL), best);
    CHECK_EQ_INT(realm__isa_select(""), best);
    CHECK_EQ_INT(realm__isa_select("scalar"), REALM_ISA_SCALAR);
    CHECK_EQ_INT(realm__isa_select("AVX2"), best < REALM_ISA_AVX2 ? best : REALM_ISA_AVX2);
    CHECK_EQ_INT(realm__isa_select("avx512"), best);
    CHECK_EQ_INT(realm__isa_select("sse9"), best);

    /* realm_kernels_best reads REALM_ISA on every call */
    const char *old = getenv("REALM_ISA");
    char *saved = old ? strdup(old) : NULL;
    setenv("REALM_ISA", "scalar", 1);
    CHECK_EQ_INT(realm_kernels_best()->isa, REALM_ISA_SCALAR);
    setenv("REALM_ISA", "avx2", 1);
    CHECK_EQ_INT(realm_kernels_best()->isa, best < REALM_ISA_AVX2 ? best : REALM_ISA_AVX2);
    unsetenv("REALM_ISA");
    CHECK_EQ_INT(realm_kernels_best()->isa, best);
    if (saved) {
        setenv("REALM_ISA", saved, 1);
        free(saved);
    }
}

/* Every supported weight type has a kernel, every activation type a converter. */
static void test_tables_complete(void)
{
    for (int isa = 0; isa < REALM_ISA_COUNT; isa++) {
        if (tables[isa] == NULL)
            continue;
        for (int i = 0; i < N_WEIGHT_TYPES; i++)
            CHECK_MSG(tables[isa]->vec_dot[weight_types[i]] != NULL, "%s vec_dot %s",
                      realm_isa_name((realm_isa)isa), realm_type_name(weight_types[i]));
        for (int i = 0; i < N_ACT_TYPES; i++)
            CHECK_MSG(tables[isa]->from_float[act_types[i]] != NULL, "%s from_float %s",
                      realm_isa_name((realm_isa)isa), realm_type_name(act_types[i]));
        for (uint32_t t = 0; t < REALM_TYPE_COUNT; t++) {
            const realm_type_traits *tr = realm_type_get(t);
            if (tr != NULL && tr->supported)
                CHECK_MSG(tables[isa]->vec_dot[t] != NULL, "%s: supported type %s has no vec_dot",
                          realm_isa_name((realm_isa)isa), tr->name);
        }
    }
}

int main(void)
{
    test_begin("kernels", 300);
    for (int isa = 0; isa < REALM_ISA_COUNT; isa++)
        tables[isa] = realm_kernels_get((realm_isa)isa);
    CHECK(tables[REALM_ISA_SCALAR] != NULL);
    test_isa();
    test_tables_complete();
    test_from_float();
    test_vec_dot();
    test_zero_activations();
    test_matvec();
    return test_end();
}
