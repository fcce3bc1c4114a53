/*
 * bench_matmul — throughput of realm_matmul_rows on the feed-forward shapes
 * of a TinyLlama-sized model, next to the loop it replaces (vec_dot for
 * every (row, token) pair, as the forward pass did).
 *
 *     bench_matmul [-t TYPES] [-n COUNTS] [-j THREADS] [-i IMPLS] [-s SECONDS] [-w MIB]
 *
 * TYPES is a comma list of type names (default q4_K,q6_K,q5_K,q8_0,q4_0,f16),
 * COUNTS the token counts (default 1,8,64,512), THREADS the thread counts
 * (default 1,2). Both matrices, 2048 x 5632 and 5632 x 2048 (rows x cols),
 * are cycled through enough copies to exceed MIB (default 1024) MiB, so
 * weights come from memory as in a real forward pass; -w 0 keeps one copy,
 * which then stays in the L3 cache (the kernels' arithmetic cost). Rows are
 * split between threads on multiples of 16. Each figure is the median over
 * repetitions filling about SECONDS (default 0.3) of G multiply-adds per
 * second (rows x cols x tokens) and, for one token, GB/s of weights read;
 * "best" is the fastest repetition. IMPLS is a comma list of new (default),
 * pairs and packed (realm_matmul_packed_rows on the matrix repacked once,
 * for the types that have a layout), or both (new,pairs) or all. The machine may be shared and
 * noisy: compare figures measured close together.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock_internal.h"
#include "realm/error.h"
#include "realm/kernels.h"
#include "realm/threads.h"

static size_t working_set = (size_t)1 << 30;
#define MAX_REPS 400

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float rand_normal(void)
{
    float s = 0;
    for (int i = 0; i < 12; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        s += (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    return s * 0.5f;
}

struct task {
    const realm_kernels *k;
    realm_type type;
    const uint8_t *w;
    int64_t rows, cols;
    size_t row_size;
    const uint8_t *act;
    size_t act_stride;
    int64_t n;
    float *out;
    int impl; /* 0 new, 1 pairs, 2 packed (w is then the packed matrix) */
};

/* Thread ith's rows, split on multiples of 16 (a panel). */
static void split(int64_t rows, int ith, int nth, int64_t *r0, int64_t *r1)
{
    *r0 = (rows * ith / nth) & ~(int64_t)15;
    *r1 = ith == nth - 1 ? rows : (rows * (ith + 1) / nth) & ~(int64_t)15;
}

/* The loop realm_matmul_rows replaces: vec_dot per pair, rows outer. */
static void pairs_loop(const struct task *t, int64_t r0, int64_t r1)
{
    const realm_vec_dot_fn dot = t->k->vec_dot[t->type];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = t->w + (size_t)r * t->row_size;
        __builtin_prefetch(row + t->row_size * 4, 0, 2);
        for (int64_t e = 0; e < t->n; e++)
            t->out[e * t->rows + r] = dot(t->cols, row, t->act + (size_t)e * t->act_stride);
    }
}

static void part(void *arg, int ith, int nth)
{
    const struct task *t = arg;
    int64_t r0, r1;
    split(t->rows, ith, nth, &r0, &r1);
    if (t->impl == 1)
        pairs_loop(t, r0, r1);
    else if (t->impl == 2)
        realm_matmul_packed_rows(t->k, t->type, t->w, t->cols, r0, r1, t->act, t->act_stride, t->n,
                                 t->out, t->rows, false);
    else
        realm_matmul_rows(t->k, t->type, t->w, t->cols, r0, r1, t->act, t->act_stride, t->n, t->out,
                          t->rows, false);
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Parse a comma list of integers into v (at most max); returns the count. */
static int parse_ints(const char *s, int64_t *v, int max)
{
    int n = 0;
    while (*s && n < max) {
        v[n++] = strtoll(s, (char **)&s, 10);
        if (*s == ',')
            s++;
        else
            break;
    }
    return n;
}

static int parse_types(const char *s, realm_type *v, int max)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    int n = 0;
    for (char *tok = strtok(buf, ","); tok != NULL && n < max; tok = strtok(NULL, ",")) {
        if (realm_type_from_name(tok, &v[n]) != REALM_OK ||
            realm_type_check_supported(v[n]) != REALM_OK) {
            fprintf(stderr, "unknown or unsupported type '%s'\n", tok);
            exit(2);
        }
        n++;
    }
    return n;
}

/* new, pairs, packed (bits 0, 1, 2), both (new,pairs) or all. */
static int parse_impls(const char *s)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    int impl = 0;
    for (char *tok = strtok(buf, ","); tok != NULL; tok = strtok(NULL, ",")) {
        if (strcmp(tok, "new") == 0)
            impl |= 1;
        else if (strcmp(tok, "pairs") == 0)
            impl |= 2;
        else if (strcmp(tok, "packed") == 0)
            impl |= 4;
        else if (strcmp(tok, "both") == 0)
            impl |= 3;
        else if (strcmp(tok, "all") == 0)
            impl |= 7;
        else {
            fprintf(stderr, "unknown implementation '%s' (new, pairs, packed, both, all)\n", tok);
            exit(2);
        }
    }
    return impl;
}

/* One matrix shape of one type: every (impl, n, threads). */
static void bench_shape(const realm_kernels *k, realm_type type, int64_t rows, int64_t cols,
                        const int64_t *ns, int n_ns, const int64_t *threads, int n_threads,
                        realm_threadpool **pools, int impl, double seconds)
{
    const realm_type at = realm_type_get(type)->vec_dot_type;
    const size_t row_size = realm_row_size(type, cols);
    const size_t mat_size = row_size * (size_t)rows;
    const int copies = (int)(working_set / mat_size) + 1;
    uint8_t *w = malloc(mat_size * (size_t)copies);
    float *f = malloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++)
            f[i] = 0.02f * rand_normal();
        realm_quantize_row(type, f, w + (size_t)r * row_size, cols);
    }
    for (int c = 1; c < copies; c++)
        memcpy(w + (size_t)c * mat_size, w, mat_size);
    /* the packed copies, each matrix's size rounded to whole cache lines */
    const size_t packed_size = (realm_repack_size(type, rows, cols) + 63) & ~(size_t)63;
    uint8_t *packed = NULL;
    if (packed_size > 0 && (impl & 4)) {
        packed = aligned_alloc(64, packed_size * (size_t)copies);
        realm_repack_rows(type, w, cols, 0, rows, packed);
        for (int c = 1; c < copies; c++)
            memcpy(packed + (size_t)c * packed_size, packed, packed_size);
    }

    int64_t n_max = 1;
    for (int i = 0; i < n_ns; i++)
        n_max = ns[i] > n_max ? ns[i] : n_max;
    const size_t act_stride = realm_row_size(at, cols);
    uint8_t *act = malloc(act_stride * (size_t)n_max);
    for (int64_t e = 0; e < n_max; e++) {
        for (int64_t i = 0; i < cols; i++)
            f[i] = rand_normal();
        k->from_float[at](f, act + (size_t)e * act_stride, cols);
    }
    float *out = malloc((size_t)(rows * n_max) * sizeof(float));

    static const char *const impl_names[] = {"new", "pairs", "packed"};
    for (int im = 0; im < 3; im++) {
        if (!(impl & (1 << im)) || (im == 2 && packed == NULL))
            continue;
        for (int ni = 0; ni < n_ns; ni++) {
            for (int ti = 0; ti < n_threads; ti++) {
                struct task t = {.k = k,
                                 .type = type,
                                 .rows = rows,
                                 .cols = cols,
                                 .row_size = row_size,
                                 .act = act,
                                 .act_stride = act_stride,
                                 .n = ns[ni],
                                 .out = out,
                                 .impl = im};
                double secs[MAX_REPS];
                int reps = 0, copy = 0;
                const double start = realm__now();
                while (reps < MAX_REPS && (reps < 3 || realm__now() - start < seconds)) {
                    t.w =
                        im == 2 ? packed + (size_t)copy * packed_size : w + (size_t)copy * mat_size;
                    copy = (copy + 1) % copies;
                    const double t0 = realm__now();
                    realm_threadpool_run(pools[ti], part, &t);
                    secs[reps++] = realm__now() - t0;
                    if (secs[0] > seconds) /* one slow repetition is enough */
                        break;
                }
                qsort(secs, (size_t)reps, sizeof *secs, cmp_double);
                const double s = secs[reps / 2];
                const double macs = (double)rows * (double)cols * (double)ns[ni];
                printf("%-6s %5lld x %-5lld %-6s n=%-4lld threads=%lld  %9.3f ms  %7.1f GMAC/s"
                       " (best %7.1f)",
                       realm_type_name(type), (long long)rows, (long long)cols, impl_names[im],
                       (long long)ns[ni], (long long)threads[ti], s * 1e3, macs / s / 1e9,
                       macs / secs[0] / 1e9);
                if (ns[ni] == 1)
                    printf("  %6.1f GB/s (best %6.1f)", (double)mat_size / s / 1e9,
                           (double)mat_size / secs[0] / 1e9);
                printf("\n");
                fflush(stdout);
            }
        }
    }
    free(out);
    free(act);
    free(f);
    free(packed);
    free(w);
}

int main(int argc, char **argv)
{
    realm_type types[16];
    int n_types = parse_types("q4_K,q6_K,q5_K,q8_0,q4_0,f16", types, 16);
    int64_t ns[16] = {1, 8, 64, 512}, threads[8] = {1, 2};
    int n_ns = 4, n_threads = 2, impl = 3;
    double seconds = 0.3;
    for (int i = 1; i < argc; i += 2) {
        const bool help = strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0;
        if (help || i + 1 == argc) { /* help, or an option without its value */
            fprintf(help ? stdout : stderr,
                    "usage: %s [-t TYPES] [-n COUNTS] [-j THREADS] [-i IMPLS] [-s SECONDS] "
                    "[-w MIB]\n",
                    argv[0]);
            return help ? 0 : 2;
        }
        if (strcmp(argv[i], "-t") == 0)
            n_types = parse_types(argv[i + 1], types, 16);
        else if (strcmp(argv[i], "-n") == 0)
            n_ns = parse_ints(argv[i + 1], ns, 16);
        else if (strcmp(argv[i], "-j") == 0)
            n_threads = parse_ints(argv[i + 1], threads, 8);
        else if (strcmp(argv[i], "-i") == 0)
            impl = parse_impls(argv[i + 1]);
        else if (strcmp(argv[i], "-s") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "-w") == 0)
            working_set = (size_t)strtoull(argv[i + 1], NULL, 10) << 20;
        else {
            fprintf(stderr,
                    "usage: %s [-t TYPES] [-n COUNTS] [-j THREADS] [-i IMPLS] [-s SECONDS] "
                    "[-w MIB]\n",
                    argv[0]);
            return 2;
        }
    }
    const realm_kernels *k = realm_kernels_best();
    printf("isa %s\n", realm_isa_name(k->isa));
    realm_threadpool *pools[8];
    for (int i = 0; i < n_threads; i++) {
        if (realm_threadpool_new((int)threads[i], &pools[i]) != REALM_OK) {
            fprintf(stderr, "cannot start %lld threads\n", (long long)threads[i]);
            return 1;
        }
    }
    for (int i = 0; i < n_types; i++) {
        bench_shape(k, types[i], 2048, 5632, ns, n_ns, threads, n_threads, pools, impl, seconds);
        bench_shape(k, types[i], 5632, 2048, ns, n_ns, threads, n_threads, pools, impl, seconds);
    }
    for (int i = 0; i < n_threads; i++)
        realm_threadpool_free(pools[i]);
    return 0;
}
