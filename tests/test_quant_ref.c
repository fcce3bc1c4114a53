/*
 * Scalar reference conversions (realm/quant.h):
 *   - fp16 / bf16 conversions: exhaustive round trips, ties to even,
 *     overflow, subnormals;
 *   - every supported type: quantize / dequantize round trips on random and
 *     degenerate rows, argument errors;
 *   - against llama.cpp (testdata/quant): every tensor of every tiny-TYPE.gguf
 *     dequantizes to exactly the bytes ggml produced (SHA-256 of the f32
 *     output), and quantizing tiny-f32.gguf ourselves lands within 2% of
 *     llama.cpp's RMSE for each type (also counting byte-identical tensors).
 */
#include <float.h>
#include <openssl/sha.h>
#include <stdint.h>

#include "realm/error.h"
#include "realm/gguf.h"
#include "realm/quant.h"
#include "test_util.h"

/* ---- a minimal JSON reader, enough for reference.json --------------------- */

enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jnode {
    int kind;
    char *key;  /* member name inside an object */
    char *str;  /* J_STR */
    double num; /* J_NUM, J_BOOL */
    struct jnode *child, *next;
} jnode;

typedef struct {
    const char *p, *end;
    int err;
} jparser;

static void j_ws(jparser *jp)
{
    while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\n' || *jp->p == '\r' || *jp->p == '\t'))
        jp->p++;
}

static char *j_string(jparser *jp)
{
    if (jp->p >= jp->end || *jp->p != '"') {
        jp->err = 1;
        return NULL;
    }
    jp->p++;
    size_t cap = 16, len = 0;
    char *s = malloc(cap);
    while (jp->p < jp->end && *jp->p != '"') {
        char c = *jp->p++;
        if (c == '\\') {
            if (jp->p >= jp->end) {
                jp->err = 1;
                break;
            }
            c = *jp->p++;
            switch (c) {
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = '\f';
                break;
            case '"':
            case '\\':
            case '/':
                break;
            default:
                jp->err = 1; /* \u is not used by this file */
            }
        }
        if (len + 2 > cap)
            s = realloc(s, cap *= 2);
        s[len++] = c;
    }
    s[len] = '\0';
    if (jp->p >= jp->end)
        jp->err = 1;
    else
        jp->p++;
    return s;
}

static jnode *j_value(jparser *jp, int depth)
{
    j_ws(jp);
    jnode *v = calloc(1, sizeof *v);
    if (jp->p >= jp->end || depth > 64) {
        jp->err = 1;
        return v;
    }
    const char c = *jp->p;
    if (c == '{' || c == '[') {
        v->kind = c == '{' ? J_OBJ : J_ARR;
        jp->p++;
        jnode **tail = &v->child;
        j_ws(jp);
        if (jp->p < jp->end && *jp->p == (c == '{' ? '}' : ']')) {
            jp->p++;
            return v;
        }
        while (!jp->err) {
            char *key = NULL;
            if (v->kind == J_OBJ) {
                j_ws(jp);
                key = j_string(jp);
                j_ws(jp);
                if (jp->p >= jp->end || *jp->p != ':')
                    jp->err = 1;
                else
                    jp->p++;
            }
            jnode *m = j_value(jp, depth + 1);
            m->key = key;
            *tail = m;
            tail = &m->next;
            j_ws(jp);
            if (jp->p < jp->end && *jp->p == ',') {
                jp->p++;
            } else if (jp->p < jp->end && *jp->p == (c == '{' ? '}' : ']')) {
                jp->p++;
                break;
            } else {
                jp->err = 1;
            }
        }
    } else if (c == '"') {
        v->kind = J_STR;
        v->str = j_string(jp);
    } else if (jp->end - jp->p >= 4 && memcmp(jp->p, "true", 4) == 0) {
        v->kind = J_BOOL;
        v->num = 1;
        jp->p += 4;
    } else if (jp->end - jp->p >= 5 && memcmp(jp->p, "false", 5) == 0) {
        v->kind = J_BOOL;
        jp->p += 5;
    } else if (jp->end - jp->p >= 4 && memcmp(jp->p, "null", 4) == 0) {
        jp->p += 4;
    } else {
        char *e;
        v->kind = J_NUM;
        v->num = strtod(jp->p, &e);
        if (e == jp->p)
            jp->err = 1;
        jp->p = e;
    }
    return v;
}

static void j_free(jnode *v)
{
    while (v) {
        jnode *next = v->next;
        j_free(v->child);
        free(v->key);
        free(v->str);
        free(v);
        v = next;
    }
}

static const jnode *j_get(const jnode *obj, const char *key)
{
    if (obj == NULL || obj->kind != J_OBJ)
        return NULL;
    for (const jnode *m = obj->child; m; m = m->next)
        if (strcmp(m->key, key) == 0)
            return m;
    return NULL;
}

static int j_len(const jnode *arr)
{
    int n = 0;
    for (const jnode *m = arr ? arr->child : NULL; m; m = m->next)
        n++;
    return n;
}

static const jnode *j_at(const jnode *arr, int i)
{
    const jnode *m = arr ? arr->child : NULL;
    while (m && i-- > 0)
        m = m->next;
    return m;
}

static jnode *j_load(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)size + 1);
    const size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    jparser jp = {buf, buf + got, 0};
    jnode *root = j_value(&jp, 0);
    free(buf);
    if (jp.err) {
        j_free(root);
        return NULL;
    }
    return root;
}

/* ---- helpers ---------------------------------------------------------------- */

static const realm_type all_types[] = {
    REALM_TYPE_F32,  REALM_TYPE_F16,  REALM_TYPE_BF16,   REALM_TYPE_Q4_0,
    REALM_TYPE_Q4_1, REALM_TYPE_Q5_0, REALM_TYPE_Q5_1,   REALM_TYPE_Q8_0,
    REALM_TYPE_Q2_K, REALM_TYPE_Q3_K, REALM_TYPE_Q4_K,   REALM_TYPE_Q5_K,
    REALM_TYPE_Q6_K, REALM_TYPE_Q8_K, REALM_TYPE_IQ4_NL, REALM_TYPE_IQ4_XS,
};
#define N_TYPES (int)(sizeof all_types / sizeof all_types[0])

/* RMSE bound for unit-variance normal data, per type (about 1.2-1.5x what
 * the reference quantizers achieve on the rows below). */
static const double rmse_limits[REALM_TYPE_COUNT] = {
    [REALM_TYPE_F32] = 0,       [REALM_TYPE_F16] = 3.5e-4, [REALM_TYPE_BF16] = 2.5e-3,
    [REALM_TYPE_Q8_0] = 8e-3,   [REALM_TYPE_Q8_K] = 0.011, [REALM_TYPE_Q6_K] = 0.022,
    [REALM_TYPE_Q5_0] = 0.055,  [REALM_TYPE_Q5_1] = 0.06,  [REALM_TYPE_Q5_K] = 0.045,
    [REALM_TYPE_Q4_0] = 0.13,   [REALM_TYPE_Q4_1] = 0.1,   [REALM_TYPE_Q4_K] = 0.09,
    [REALM_TYPE_IQ4_NL] = 0.12, [REALM_TYPE_IQ4_XS] = 0.1, [REALM_TYPE_Q3_K] = 0.2,
    [REALM_TYPE_Q2_K] = 0.4,
};

static double rmse(const float *a, const float *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return n ? sqrt(s / (double)n) : 0;
}

static int all_finite(const float *a, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(a[i]))
            return 0;
    return 1;
}

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Quantize then dequantize n values of x; returns the RMSE, -1 on error. */
static double round_trip(realm_type t, const float *x, float *y, int64_t n)
{
    void *q = malloc(realm_row_size(t, n) + 1);
    int rc = realm_quantize_row(t, x, q, n);
    if (rc == REALM_OK)
        rc = realm_dequantize_row(t, q, y, n);
    free(q);
    return rc == REALM_OK ? rmse(x, y, n) : -1;
}

/* ---- fp16 / bf16 ------------------------------------------------------------ */

static void test_fp16(void)
{
    /* Every half survives half -> float -> half (NaNs stay NaNs). */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = realm_fp16_to_fp32((uint16_t)h);
        const uint16_t back = realm_fp32_to_fp16(f);
        const int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (is_nan ? !(isnan(f) && (back & 0x7c00) == 0x7c00 && (back & 0x3ff) &&
                       (back & 0x8000) == (h & 0x8000))
                   : back != h)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);

    /* Known values. */
    CHECK_EQ_INT(realm_fp32_to_fp16(1.0f), 0x3c00);
    CHECK_EQ_INT(realm_fp32_to_fp16(-2.0f), 0xc000);
    CHECK_EQ_INT(realm_fp32_to_fp16(65504.0f), 0x7bff);
    CHECK(realm_fp16_to_fp32(0x3555) == 0.333251953125f);

    /* Midpoints between adjacent finite halves round to the even one; a
     * float ulp either side goes to the nearer one. */
    int bad_tie = 0, bad_near = 0;
    for (uint32_t h = 0; h < 0x7bff; h++) {
        const double lo = realm_fp16_to_fp32((uint16_t)h);
        const double hi = realm_fp16_to_fp32((uint16_t)(h + 1));
        const float mid = (float)((lo + hi) / 2); /* exact in float */
        const uint16_t even = (uint16_t)((h & 1) ? h + 1 : h);
        if (realm_fp32_to_fp16(mid) != even || realm_fp32_to_fp16(-mid) != (even | 0x8000))
            bad_tie++;
        if (realm_fp32_to_fp16(nextafterf(mid, 0)) != h ||
            realm_fp32_to_fp16(nextafterf(mid, INFINITY)) != h + 1)
            bad_near++;
    }
    CHECK_EQ_INT(bad_tie, 0);
    CHECK_EQ_INT(bad_near, 0);

    /* Overflow: 65520 is the midpoint between 65504 and 65536 (= inf). */
    CHECK_EQ_INT(realm_fp32_to_fp16(nextafterf(65520.0f, 0)), 0x7bff);
    CHECK_EQ_INT(realm_fp32_to_fp16(65520.0f), 0x7c00);
    CHECK_EQ_INT(realm_fp32_to_fp16(1e10f), 0x7c00);
    CHECK_EQ_INT(realm_fp32_to_fp16(-1e10f), 0xfc00);
    CHECK_EQ_INT(realm_fp32_to_fp16(INFINITY), 0x7c00);
    CHECK_EQ_INT(realm_fp32_to_fp16(-INFINITY), 0xfc00);
    CHECK_EQ_INT(realm_fp32_to_fp16(FLT_MAX), 0x7c00);
    const uint16_t hn = realm_fp32_to_fp16(NAN);
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);

    /* Subnormals: 2^-24 is the smallest half, 2^-25 ties to zero. */
    CHECK_EQ_INT(realm_fp32_to_fp16(ldexpf(1, -24)), 0x0001);
    CHECK_EQ_INT(realm_fp32_to_fp16(ldexpf(1, -25)), 0x0000);
    CHECK_EQ_INT(realm_fp32_to_fp16(-ldexpf(1, -25)), 0x8000);
    CHECK_EQ_INT(realm_fp32_to_fp16(nextafterf(ldexpf(1, -25), 1)), 0x0001);
    CHECK_EQ_INT(realm_fp32_to_fp16(ldexpf(3, -25)), 0x0002);
    CHECK_EQ_INT(realm_fp32_to_fp16(ldexpf(1, -14)), 0x0400);
    CHECK_EQ_INT(realm_fp32_to_fp16(nextafterf(ldexpf(1, -14), 0)), 0x0400);
    CHECK_EQ_INT(realm_fp32_to_fp16(ldexpf(1023, -24)), 0x03ff);
    CHECK_EQ_INT(realm_fp32_to_fp16(1e-30f), 0x0000);
    CHECK(realm_fp16_to_fp32(0x0001) == ldexpf(1, -24));
    CHECK(realm_fp16_to_fp32(0x83ff) == -ldexpf(1023, -24));
}

static void test_bf16(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = realm_bf16_to_fp32((uint16_t)h);
        const uint16_t back = realm_fp32_to_bf16(f);
        const int is_nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (is_nan ? !(isnan(f) && isnan(realm_bf16_to_fp32(back))) : back != h)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    /* Ties to even: 1 + 2^-8 is midway between 1 and 1 + 2^-7. */
    CHECK_EQ_INT(realm_fp32_to_bf16(1.0f + ldexpf(1, -8)), 0x3f80);
    CHECK_EQ_INT(realm_fp32_to_bf16(1.0f + ldexpf(3, -8)), 0x3f82);
    CHECK_EQ_INT(realm_fp32_to_bf16(nextafterf(1.0f + ldexpf(1, -8), 2)), 0x3f81);
    CHECK_EQ_INT(realm_fp32_to_bf16(-1.0f - ldexpf(1, -8)), 0xbf80);
    CHECK_EQ_INT(realm_fp32_to_bf16(FLT_MAX), 0x7f80); /* rounds up to inf */
    CHECK_EQ_INT(realm_fp32_to_bf16(INFINITY), 0x7f80);
    CHECK(isnan(realm_bf16_to_fp32(realm_fp32_to_bf16(NAN))));
    CHECK(isnan(realm_bf16_to_fp32(realm_fp32_to_bf16(u2f(0x7f800001u))))); /* sNaN stays NaN */
    CHECK_EQ_INT(realm_fp32_to_bf16(u2f(0x00010000u)), 0x0001);             /* subnormal kept */
}

/* ---- round trips on synthetic rows ------------------------------------------ */

static void test_random_rows(void)
{
    printf("%-7s %10s %10s  (random normal rows, 3 lengths)\n", "type", "rmse", "limit");
    for (int ti = 0; ti < N_TYPES; ti++) {
        const realm_type t = all_types[ti];
        const int64_t bs = realm_type_get(t)->block_size;
        const int64_t base = bs == 1 ? 32 : bs;
        const int64_t lens[3] = {base, 3 * base, base * (bs == 256 ? 9 : 67)};
        double worst = 0;
        for (int li = 0; li < 3; li++) {
            const int64_t n = lens[li];
            float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
            for (int64_t i = 0; i < n; i++)
                x[i] = test_rand_normal();
            const double e = round_trip(t, x, y, n);
            CHECK_MSG(e >= 0 && e <= rmse_limits[t], "%s n=%lld rmse %.6g limit %.3g",
                      realm_type_name(t), (long long)n, e, rmse_limits[t]);
            CHECK_MSG(all_finite(y, n), "%s n=%lld non-finite output", realm_type_name(t),
                      (long long)n);
            /* Quantizing is deterministic and dequantizing is pure. */
            const size_t rs = realm_row_size(t, n);
            uint8_t *q1 = malloc(rs), *q2 = malloc(rs);
            CHECK_RC(realm_quantize_row(t, x, q1, n), REALM_OK);
            CHECK_RC(realm_quantize_row(t, x, q2, n), REALM_OK);
            CHECK(memcmp(q1, q2, rs) == 0);
            free(q1);
            free(q2);
            if (e > worst)
                worst = e;
            free(x);
            free(y);
        }
        printf("%-7s %10.3g %10.3g\n", realm_type_name(t), worst, rmse_limits[t]);
    }
}

/* Degenerate rows: zeros, one huge value, constants, negative-only values. */
static void test_edge_rows(void)
{
    enum { N = 512 };
    float x[N], y[N];
    for (int ti = 0; ti < N_TYPES; ti++) {
        const realm_type t = all_types[ti];
        const char *name = realm_type_name(t);

        /* All zeros decode to exact zeros. */
        memset(x, 0, sizeof x);
        for (int i = 0; i < N; i++)
            y[i] = 1.0f;
        round_trip(t, x, y, N);
        int nonzero = 0;
        for (int i = 0; i < N; i++)
            nonzero += y[i] != 0.0f;
        CHECK_MSG(nonzero == 0, "%s: zero row decodes to %d non-zeros", name, nonzero);

        /* One huge value in normal noise: everything finite, the outlier
         * kept within 2% (it sets the scale), the rest no worse than if
         * they were rounded to zero (plus the type's own error). */
        for (int i = 0; i < N; i++)
            x[i] = test_rand_normal();
        x[77] = 3000.0f;
        x[300] = -2500.0f;
        round_trip(t, x, y, N);
        CHECK_MSG(all_finite(y, N), "%s: huge row gave non-finite output", name);
        CHECK_MSG(fabsf(y[77] - x[77]) <= 0.02f * 3000.0f, "%s: outlier %g -> %g", name,
                  (double)x[77], (double)y[77]);
        CHECK_MSG(fabsf(y[300] - x[300]) <= 0.02f * 2500.0f, "%s: outlier %g -> %g", name,
                  (double)x[300], (double)y[300]);

        /* Constant rows come back (nearly) exactly. */
        const float consts[3] = {0.7f, -0.3f, 1234.5f};
        for (int c = 0; c < 3; c++) {
            for (int i = 0; i < N; i++)
                x[i] = consts[c];
            const double e = round_trip(t, x, y, N);
            CHECK_MSG(all_finite(y, N) && e <= 0.01 * fabs(consts[c]),
                      "%s: constant %g row rmse %.6g", name, (double)consts[c], e);
        }

        /* Negative-only rows: error stays within the type's bound for their
         * spread (scaled by the data's range relative to unit normal). */
        for (int i = 0; i < N; i++)
            x[i] = -0.5f - fabsf(test_rand_normal());
        const double e = round_trip(t, x, y, N);
        CHECK_MSG(all_finite(y, N) && e <= 1.5 * rmse_limits[t] + 1e-6,
                  "%s: negative row rmse %.6g limit %.3g", name, e, 1.5 * rmse_limits[t]);
    }
}

/* NaN and infinities in the input: the output is unspecified but quantizing
 * must stay defined behaviour (the sanitizer build checks the conversions),
 * and the finite blocks of the same row must be unaffected. */
static void test_nonfinite_rows(void)
{
    enum { N = 512 };
    float x[N], y[N], ref[N];
    for (int ti = 0; ti < N_TYPES; ti++) {
        const realm_type t = all_types[ti];
        const int64_t bs = realm_type_get(t)->block_size;
        for (int i = 0; i < N; i++)
            x[i] = test_rand_normal();
        round_trip(t, x, ref, N);
        x[3] = NAN;
        x[5] = INFINITY;
        x[bs > 1 ? bs + 1 : 7] = -INFINITY;
        round_trip(t, x, y, N);
        /* Blocks from 2 * bs (or element 8) on held only finite values. */
        const int64_t from = bs > 1 ? 2 * bs : 8;
        CHECK_MSG(memcmp(y + from, ref + from, (size_t)(N - from) * sizeof *y) == 0,
                  "%s: non-finite block changed its neighbours", realm_type_name(t));
    }
}

/* Q8_K layout contract the dot products rely on. */
static void test_q8_K_contract(void)
{
    float x[2 * REALM_QK_K];
    realm_block_q8_K b[2];
    for (int i = 0; i < 2 * REALM_QK_K; i++)
        x[i] = test_rand_normal();
    x[10] = 8.0f;                /* positive max of block 0 */
    x[REALM_QK_K + 200] = -9.0f; /* negative max of block 1 */
    CHECK_RC(realm_quantize_row(REALM_TYPE_Q8_K, x, b, 2 * REALM_QK_K), REALM_OK);
    CHECK(b[0].d == 1 / (-127.0f / 8.0f));
    CHECK_EQ_INT(b[0].qs[10], -127);
    CHECK(b[1].d == 1 / (-127.0f / -9.0f));
    CHECK_EQ_INT(b[1].qs[200], -127);
    int bad = 0;
    for (int k = 0; k < 2; k++) {
        for (int g = 0; g < REALM_QK_K / 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++)
                s += b[k].qs[16 * g + j];
            bad += s != b[k].bsums[g];
        }
    }
    CHECK_EQ_INT(bad, 0);
    /* All-zero block: d = 0, codes and sums zero. */
    memset(x, 0, sizeof x);
    memset(b, 0x55, sizeof b);
    CHECK_RC(realm_quantize_row(REALM_TYPE_Q8_K, x, b, REALM_QK_K), REALM_OK);
    int nz = b[0].d != 0.0f;
    for (int j = 0; j < REALM_QK_K; j++)
        nz += b[0].qs[j] != 0;
    for (int g = 0; g < REALM_QK_K / 16; g++)
        nz += b[0].bsums[g] != 0;
    CHECK_EQ_INT(nz, 0);

    /* Q8_0: d = amax / 127 as fp16, halves rounded away from zero. */
    float y[REALM_QK8_0];
    realm_block_q8_0 q;
    for (int i = 0; i < REALM_QK8_0; i++)
        y[i] = (float)(i - 16) / 16.0f * 127.0f / 2.0f; /* multiples of 3.96875 */
    y[31] = 127.0f;
    CHECK_RC(realm_quantize_row(REALM_TYPE_Q8_0, y, &q, REALM_QK8_0), REALM_OK);
    CHECK_EQ_INT(q.d, realm_fp32_to_fp16(1.0f));
    CHECK_EQ_INT(q.qs[31], 127);
    CHECK_EQ_INT(q.qs[0], -64); /* -63.5 rounds away from zero */
    CHECK_EQ_INT(q.qs[1], -60); /* -59.53125 */
}

static void test_errors(void)
{
    float x[64] = {0};
    uint8_t q[512];
    CHECK_RC(realm_quantize_row(REALM_TYPE_Q8_1, x, q, 32), REALM_ERR_UNSUPPORTED);
    CHECK(strstr(realm_last_error(), "Q8_1") != NULL);
    CHECK_RC(realm_dequantize_row(REALM_TYPE_IQ2_XXS, q, x, 256), REALM_ERR_UNSUPPORTED);
    CHECK(strstr(realm_last_error(), "IQ2_XXS") != NULL);
    CHECK_RC(realm_dequantize_row((realm_type)99, q, x, 32), REALM_ERR_UNSUPPORTED);
    CHECK(strstr(realm_last_error(), "99") != NULL);
    CHECK_RC(realm_dequantize_row((realm_type)4, q, x, 32), REALM_ERR_UNSUPPORTED); /* retired id */
    CHECK_RC(realm_quantize_row(REALM_TYPE_Q4_K, x, q, 64), REALM_ERR_INVAL);
    CHECK(strstr(realm_last_error(), "Q4_K") != NULL);
    CHECK_RC(realm_dequantize_row(REALM_TYPE_Q4_0, q, x, 33), REALM_ERR_INVAL);
    CHECK(strstr(realm_last_error(), "Q4_0") != NULL);
    CHECK_RC(realm_dequantize_row(REALM_TYPE_F16, q, x, -2), REALM_ERR_INVAL);
    CHECK_RC(realm_quantize_row(REALM_TYPE_Q8_0, NULL, q, 32), REALM_ERR_INVAL);
    CHECK_RC(realm_quantize_row(REALM_TYPE_Q8_0, x, q, 0), REALM_OK);
    for (int ti = 0; ti < N_TYPES; ti++)
        CHECK_RC(realm_type_check_supported(all_types[ti]), REALM_OK);
}

/* ---- against llama.cpp ------------------------------------------------------ */

static int64_t tensor_rows(const realm_gguf_tensor *t)
{
    return realm_gguf_tensor_nelements(t) / t->ne[0];
}

/* Dequantize a whole tensor row by row into a new buffer. */
static float *dequantize_tensor(const realm_gguf_tensor *t)
{
    const int64_t n = realm_gguf_tensor_nelements(t), rows = tensor_rows(t);
    const size_t rs = realm_row_size(t->type, t->ne[0]);
    float *y = malloc((size_t)n * sizeof *y);
    for (int64_t r = 0; r < rows; r++) {
        const int rc = realm_dequantize_row(t->type, (const uint8_t *)t->data + (size_t)r * rs,
                                            y + r * t->ne[0], t->ne[0]);
        if (rc != REALM_OK) {
            CHECK_MSG(rc == REALM_OK, "%s: %s", t->name, realm_last_error());
            free(y);
            return NULL;
        }
    }
    return y;
}

static void sha256_hex(const void *data, size_t n, char out[65])
{
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256(data, n, h);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static void test_reference(void)
{
    jnode *ref = j_load(test_data("quant/reference.json"));
    CHECK_MSG(ref != NULL, "cannot parse quant/reference.json");
    if (ref == NULL)
        return;
    const jnode *files = j_get(ref, "files");
    CHECK(files != NULL && j_len(files) >= 14);

    realm_gguf *src = NULL;
    CHECK_RC(realm_gguf_open(test_data("quant/tiny-f32.gguf"), &src), REALM_OK);
    if (src == NULL) {
        j_free(ref);
        return;
    }

    int n_tensors = 0, n_sha_ok = 0, n_2d = 0, n_ident = 0;
    printf("\n%-8s %-13s %-13s %-8s %-10s %s\n", "type", "realm rmse", "llama rmse", "ratio",
           "identical", "worst tensor ratio");
    for (const jnode *fe = files ? files->child : NULL; fe; fe = fe->next) {
        char rel[512];
        snprintf(rel, sizeof rel, "quant/%s", fe->key);
        realm_gguf *g = NULL;
        CHECK_RC(realm_gguf_open(test_data(rel), &g), REALM_OK);
        if (g == NULL)
            continue;
        const jnode *tensors = j_get(fe, "tensors");
        realm_type qtype = REALM_TYPE_F32;
        double sq_sum = 0, count = 0, worst_ratio = 1;
        int file_2d = 0, file_ident = 0;

        for (const jnode *te = tensors ? tensors->child : NULL; te; te = te->next) {
            const char *name = te->key;
            const jnode *shape = j_get(te, "shape"), *type = j_get(te, "type");
            const jnode *sha = j_get(te, "sha256_f32"), *first = j_get(te, "first");
            const jnode *trmse = j_get(te, "rmse");
            if (!shape || !type || !sha || !first || !trmse) {
                CHECK_MSG(0, "%s/%s: incomplete reference entry", fe->key, name);
                continue;
            }
            const realm_gguf_tensor *t = realm_gguf_find_tensor(g, name);
            const realm_gguf_tensor *ts = realm_gguf_find_tensor(src, name);
            CHECK_MSG(t != NULL && ts != NULL, "%s: tensor %s missing", fe->key, name);
            if (t == NULL || ts == NULL)
                continue;
            n_tensors++;
            CHECK_EQ_STR(realm_type_name(t->type), type->str);
            CHECK_EQ_INT(t->n_dims, j_len(shape));
            for (uint32_t d = 0; d < t->n_dims; d++)
                CHECK_EQ_INT(t->ne[d], (int64_t)j_at(shape, (int)d)->num);
            CHECK_EQ_INT(ts->type, REALM_TYPE_F32);
            const int64_t n = realm_gguf_tensor_nelements(t);

            /* Test 1: dequantization is bit-exact with ggml. */
            float *y = dequantize_tensor(t);
            if (y == NULL)
                continue;
            char hex[65];
            sha256_hex(y, (size_t)n * sizeof *y, hex);
            const int sha_ok = strcmp(hex, sha->str) == 0;
            n_sha_ok += sha_ok;
            CHECK_MSG(sha_ok, "%s/%s (%s): sha256 %s, expected %s", fe->key, name, type->str, hex,
                      sha->str);
            for (int i = 0; i < j_len(first) && i < n; i++)
                CHECK_MSG(y[i] == (float)j_at(first, i)->num, "%s/%s[%d] = %.9g, expected %.9g",
                          fe->key, name, i, (double)y[i], j_at(first, i)->num);
            const float *xs = ts->data;
            const double e_file = rmse(y, xs, n);
            CHECK_MSG(fabs(e_file - trmse->num) <= 1e-6 * trmse->num + 1e-12,
                      "%s/%s: file rmse %.9g, reference says %.9g", fe->key, name, e_file,
                      trmse->num);
            free(y);

            /* Test 2: our own quantization of the f32 source. */
            if (t->n_dims != 2)
                continue;
            qtype = t->type;
            const size_t rs = realm_row_size(t->type, t->ne[0]);
            const int64_t rows = tensor_rows(t);
            uint8_t *q = malloc(rs * (size_t)rows);
            float *z = malloc((size_t)n * sizeof *z);
            int rc = REALM_OK;
            for (int64_t r = 0; r < rows && rc == REALM_OK; r++) {
                rc = realm_quantize_row(t->type, xs + r * t->ne[0], q + (size_t)r * rs, t->ne[0]);
                if (rc == REALM_OK)
                    rc = realm_dequantize_row(t->type, q + (size_t)r * rs, z + r * t->ne[0],
                                              t->ne[0]);
            }
            CHECK_MSG(rc == REALM_OK, "%s/%s: %s", fe->key, name, realm_last_error());
            if (rc == REALM_OK) {
                const double e = rmse(z, xs, n);
                const double ratio = trmse->num > 0 ? e / trmse->num : (e == 0 ? 1 : INFINITY);
                CHECK_MSG(fabs(ratio - 1) <= 0.02, "%s/%s: rmse %.6g vs llama.cpp %.6g", fe->key,
                          name, e, trmse->num);
                if (fabs(ratio - 1) > fabs(worst_ratio - 1))
                    worst_ratio = ratio;
                sq_sum += e * e * (double)n;
                count += (double)n;
                file_2d++;
                file_ident +=
                    t->nbytes >= rs * (size_t)rows && memcmp(q, t->data, rs * (size_t)rows) == 0;
            }
            free(q);
            free(z);
        }

        const jnode *r2d = j_get(fe, "rmse_2d");
        const double e2d = count > 0 ? sqrt(sq_sum / count) : 0;
        CHECK_MSG(r2d != NULL && file_2d > 0 && fabs(e2d / r2d->num - 1) <= 0.02,
                  "%s: rmse_2d %.6g vs llama.cpp %.6g", fe->key, e2d, r2d ? r2d->num : -1.0);
        printf("%-8s %-13.6g %-13.6g %-8.5f %3d / %-4d %.5f\n", realm_type_name(qtype), e2d,
               r2d ? r2d->num : -1.0, r2d ? e2d / r2d->num : 0.0, file_ident, file_2d, worst_ratio);
        n_2d += file_2d;
        n_ident += file_ident;
        realm_gguf_close(g);
    }
    printf("dequantization: %d / %d tensors match ggml's sha256_f32 exactly\n", n_sha_ok,
           n_tensors);
    printf("quantization: %d / %d 2-D tensors byte-identical to llama.cpp's files\n\n", n_ident,
           n_2d);
    CHECK(n_tensors >= 14 * 20);
    realm_gguf_close(src);
    j_free(ref);
}

int main(void)
{
    test_begin("quant_ref", 120);
    test_fp16();
    test_bf16();
    test_errors();
    test_q8_K_contract();
    test_random_rows();
    test_edge_rows();
    test_nonfinite_rows();
    test_reference();
    return test_end();
}
