/*
 * realm bench-kernels — matrix-vector throughput of every tensor type next to
 * the machine's memory read bandwidth, measured by the same program.
 *
 * Decoding one token multiplies every weight matrix by one activation vector:
 * it is bound by how fast weights stream from memory. So the figure of merit
 * is GB/s of weight bytes, compared with a plain read of a large buffer. To
 * measure memory and not cache, the benchmark cycles through enough copies of
 * the matrix to exceed the last-level cache many times over (--working-set).
 * Figures are medians over repetitions; the machine may be shared and noisy.
 */
#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/clock_internal.h"
#include "opts.h"
#include "realm/error.h"
#include "realm/kernels.h"
#include "realm/threads.h"

#define CMD "bench-kernels"

#if defined(__x86_64__)
#include <immintrin.h>
/* Sum of a buffer with 256-bit loads: the read-bandwidth probe. Reads past
 * the end by the prefetch distance are only prefetches, which never fault. */
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        /* software prefetch 4 KiB ahead, as the matvec kernels do: the
         * hardware prefetcher alone restarts at every page */
        _mm_prefetch((const char *)p + i + 4096, _MM_HINT_T0);
        _mm_prefetch((const char *)p + i + 4096 + 64, _MM_HINT_T0);
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, a0);
    return out[0] + out[1] + out[2] + out[3];
}
#endif

static uint64_t read_scalar(const uint8_t *p, size_t n)
{
    const uint64_t *q = (const uint64_t *)p;
    uint64_t s = 0;
    for (size_t i = 0; i < n / 8; i++)
        s += q[i];
    return s;
}

struct read_task {
    const uint8_t *buf;
    size_t size;
    atomic_uint_fast64_t sink;
};

static void read_part(void *arg, int ith, int nth)
{
    struct read_task *t = arg;
    size_t chunk = (t->size / (size_t)nth) & ~(size_t)127;
    const uint8_t *p = t->buf + chunk * (size_t)ith;
#if defined(__x86_64__)
    uint64_t s = realm_cpu_supports(REALM_ISA_AVX2) ? read_avx2(p, chunk) : read_scalar(p, chunk);
#else
    uint64_t s = read_scalar(p, chunk);
#endif
    atomic_fetch_add(&t->sink, s);
}

struct matvec_task {
    const realm_kernels *k;
    realm_type type;
    const uint8_t *w;
    int64_t rows, cols;
    const void *y;
    float *out;
};

static void matvec_part(void *arg, int ith, int nth)
{
    struct matvec_task *t = arg;
    realm_matvec(t->k, t->type, t->w, t->rows, t->cols, t->y, t->out, ith, nth);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Median GB/s of reading `size` bytes with the pool's threads. */
static double measure_read(realm_threadpool *tp, const uint8_t *buf, size_t size, int reps)
{
    double gbs[64];
    struct read_task t = {.buf = buf, .size = size};
    realm_threadpool_run(tp, read_part, &t); /* warm up */
    for (int r = 0; r < reps; r++) {
        double t0 = realm__now();
        realm_threadpool_run(tp, read_part, &t);
        gbs[r] = (double)size / (realm__now() - t0) / 1e9;
    }
    return median(gbs, reps);
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static float rand_normal(uint64_t *s)
{
    float sum = 0;
    for (int i = 0; i < 4; i++)
        sum += (float)((double)(xorshift(s) >> 11) / 9007199254740992.0) - 0.5f;
    return sum * 1.7320508f * 0.02f; /* ~normal, std 0.02 like real weights */
}

struct type_result {
    realm_type type;
    double mib;
    double gbs[2];
    double ms[2];
};

typedef struct bench_kernels_cfg {
    long long rows, cols, reps, ws_mib;
    cli_ints threads;
    const char *types;
    bool json;
} bench_kernels_cfg;

/* Per invocation: no environment variables (-t lists thread counts to
 * compare, not the machine's setting). */
static const cli_opt bench_kernels_opts[] = {
    {"rows", 0, CLI_OPT_INT, "N", "5632", "matrix rows", offsetof(bench_kernels_cfg, rows),
     .env = false, .min = 1, .max = 1 << 20},
    {"cols", 0, CLI_OPT_INT, "N", "2048", "matrix columns, a multiple of 256",
     offsetof(bench_kernels_cfg, cols), .env = false, .min = 256, .max = 1 << 20},
    {"threads", 't', CLI_OPT_INT_LIST, "N,...", NULL,
     "thread counts to measure, the first two of them (default: 1,2; 1 on one CPU)",
     offsetof(bench_kernels_cfg, threads), .env = false, .min = 1, .max = 1024, .n_max = 8},
    {"reps", 'r', CLI_OPT_INT, "REPS", "21", "runs of each matrix-vector product",
     offsetof(bench_kernels_cfg, reps), .env = false, .min = 1, .max = 1000},
    {"types", 0, CLI_OPT_STRING, "TYPE,...", NULL, "only these tensor types (default: all)",
     offsetof(bench_kernels_cfg, types), .env = false},
    {"working-set", 0, CLI_OPT_INT, "MIB", "1024", "MiB of matrix copies cycled through",
     offsetof(bench_kernels_cfg, ws_mib), .env = false, .min = 1, .max = 1 << 16},
    {"json", 0, CLI_OPT_FLAG, NULL, NULL, "one JSON document instead of a table",
     offsetof(bench_kernels_cfg, json), .env = false},
};

static int run_bench(int argc, char **argv)
{
    bench_kernels_cfg cfg = {0};
    int rc = cli_opts_parse(CMD, bench_kernels_opts, CLI_OPTS_N(bench_kernels_opts), argc, argv,
                            &cfg, NULL);
    if (rc != 0)
        return rc == 2 ? 0 : rc;
    const long rows = (long)cfg.rows, cols = (long)cfg.cols, reps = (long)cfg.reps;
    const long ws_mib = (long)cfg.ws_mib;
    const bool json = cfg.json;
    const char *only = cfg.types;
    int n_thr = cfg.threads.n;
    long thr[8];
    for (int t = 0; t < n_thr; t++)
        thr[t] = (long)cfg.threads.v[t];
    if (cols % 256 != 0)
        return cli_error(CMD, "--cols must be a multiple of 256");
    if (n_thr == 0) {
        thr[n_thr++] = 1;
        if (realm_cpu_count() > 1)
            thr[n_thr++] = 2;
    }
    if (n_thr > 2)
        n_thr = 2;

    const realm_kernels *k = realm_kernels_best();
    const size_t ws_bytes = (size_t)ws_mib << 20;

    /* Memory read bandwidth with each thread count. */
    uint8_t *buf = aligned_alloc(4096, ws_bytes);
    if (buf == NULL)
        return cli_error(CMD, "cannot allocate %ld MiB", ws_mib);
    memset(buf, 1, ws_bytes);
    double bw[2];
    realm_threadpool *pools[2];
    for (int t = 0; t < n_thr; t++) {
        if (realm_threadpool_new((int)thr[t], &pools[t]) < 0)
            return cli_error(CMD, "%s", realm_last_error());
        bw[t] = measure_read(pools[t], buf, ws_bytes, 7);
    }
    free(buf);
    if (!json) {
        printf("kernels: %s\nmemory read bandwidth (%ld MiB buffer, 256-bit loads, median of 7):",
               realm_isa_name(k->isa), ws_mib);
        for (int t = 0; t < n_thr; t++)
            printf("  %ld thread%s %.1f GB/s", thr[t], thr[t] > 1 ? "s" : "", bw[t]);
        printf("\nmatvec %ld x %ld, copies cycled through ~%ld MiB so weights come from memory,\n"
               "median of %ld runs; GB/s of weight bytes read\n\n",
               rows, cols, ws_mib, reps);
        printf("%-7s %9s", "type", "MiB");
        for (int t = 0; t < n_thr; t++)
            printf("   %2ldT GB/s  %%bw   ms/mv", thr[t]);
        printf("\n");
    }

    float *src = malloc((size_t)rows * (size_t)cols * sizeof(float));
    float *x = malloc((size_t)cols * sizeof(float));
    float *out = malloc((size_t)rows * sizeof(float));
    void *y = malloc((size_t)cols * 4 + 4096);
    if (!src || !x || !out || !y)
        return cli_error(CMD, "out of memory");
    uint64_t seed = 42;
    for (long i = 0; i < rows * cols; i++)
        src[i] = rand_normal(&seed);
    for (long i = 0; i < cols; i++)
        x[i] = rand_normal(&seed) * 50;

    json_t *jtypes = json_array();
    static const realm_type types[] = {
        REALM_TYPE_F32,  REALM_TYPE_F16,  REALM_TYPE_BF16, REALM_TYPE_Q8_0,   REALM_TYPE_Q4_0,
        REALM_TYPE_Q4_1, REALM_TYPE_Q5_0, REALM_TYPE_Q5_1, REALM_TYPE_Q2_K,   REALM_TYPE_Q3_K,
        REALM_TYPE_Q4_K, REALM_TYPE_Q5_K, REALM_TYPE_Q6_K, REALM_TYPE_IQ4_NL, REALM_TYPE_IQ4_XS,
    };
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const realm_type type = types[ti];
        const char *name = realm_type_name(type);
        if (only) {
            char pat[64];
            snprintf(pat, sizeof pat, ",%s,", only);
            char me[32];
            snprintf(me, sizeof me, ",%s,", name);
            bool hit = false;
            for (char *p = pat; *p; p++)
                *p = (char)toupper((unsigned char)*p);
            hit = strstr(pat, me) != NULL;
            if (!hit)
                continue;
        }
        if (k->vec_dot[type] == NULL)
            continue;
        const size_t row_size = realm_row_size(type, cols);
        const size_t mat_size = row_size * (size_t)rows;
        size_t copies = ws_bytes / mat_size + 1;
        if (copies < 2)
            copies = 2;
        uint8_t *w = aligned_alloc(64, (mat_size * copies + 63) & ~(size_t)63);
        if (w == NULL)
            return cli_error(CMD, "cannot allocate %zu MiB", (mat_size * copies) >> 20);
        for (long r = 0; r < rows; r++)
            if (realm_quantize_row(type, src + (size_t)r * (size_t)cols, w + (size_t)r * row_size,
                                   cols) < 0)
                return cli_error(CMD, "quantize %s: %s", name, realm_last_error());
        for (size_t c = 1; c < copies; c++)
            memcpy(w + c * mat_size, w, mat_size);
        const realm_type at = realm_type_get(type)->vec_dot_type;
        k->from_float[at](x, y, cols);

        struct type_result res = {.type = type, .mib = (double)mat_size / (1 << 20)};
        for (int t = 0; t < n_thr; t++) {
            double *times = malloc((size_t)reps * sizeof(double));
            struct matvec_task task = {k, type, w, rows, cols, y, out};
            realm_threadpool_run(pools[t], matvec_part, &task);
            for (long r = 0; r < reps; r++) {
                task.w = w + (size_t)((r + 1) % (long)copies) * mat_size;
                double t0 = realm__now();
                realm_threadpool_run(pools[t], matvec_part, &task);
                times[r] = realm__now() - t0;
            }
            double med = median(times, (int)reps);
            free(times);
            res.ms[t] = med * 1e3;
            res.gbs[t] = (double)mat_size / med / 1e9;
        }
        free(w);
        if (json) {
            json_t *jt = json_pack("{s:s, s:f}", "type", name, "mib", res.mib);
            json_t *per = json_array();
            for (int t = 0; t < n_thr; t++)
                json_array_append_new(per, json_pack("{s:i, s:f, s:f, s:f}", "threads", (int)thr[t],
                                                     "gbs", res.gbs[t], "ms", res.ms[t],
                                                     "fraction_of_bw", res.gbs[t] / bw[t]));
            json_object_set_new(jt, "runs", per);
            json_array_append_new(jtypes, jt);
        } else {
            printf("%-7s %9.2f", name, res.mib);
            for (int t = 0; t < n_thr; t++)
                printf("   %8.1f %4.0f%% %7.3f", res.gbs[t], 100 * res.gbs[t] / bw[t], res.ms[t]);
            printf("\n");
            fflush(stdout);
        }
    }
    if (json) {
        json_t *jbw = json_array();
        for (int t = 0; t < n_thr; t++)
            json_array_append_new(jbw,
                                  json_pack("{s:i, s:f}", "threads", (int)thr[t], "gbs", bw[t]));
        json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:o, s:o}", "kernels", realm_isa_name(k->isa),
                              "rows", (int)rows, "cols", (int)cols, "working_set_mib", (int)ws_mib,
                              "read_bandwidth", jbw, "types", jtypes);
        json_dumpf(j, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(j);
    } else {
        json_decref(jtypes);
    }
    for (int t = 0; t < n_thr; t++)
        realm_threadpool_free(pools[t]);
    free(src);
    free(x);
    free(out);
    free(y);
    return 0;
}

static const char usage_head[] =
    "usage: realm bench-kernels [--rows N] [--cols N] [-t 1,2] [-r REPS]\n"
    "                           [--types q4_k,q8_0,...] [--working-set MIB] [--json]\n"
    "\n"
    "For each tensor type: a ROWS x COLS matrix (default 5632 x 2048, TinyLlama's\n"
    "feed-forward shape) times one activation vector, with the run-time selected\n"
    "kernels (cap them with REALM_ISA=scalar|avx2|avx512). Prints GB/s of weight\n"
    "bytes read and the fraction of the memory read bandwidth measured by the same\n"
    "program with the same threads. Copies of the matrix are cycled through\n"
    "--working-set MiB (default 1024) so the weights come from memory, not cache.\n";
static char usage[4096];

/* main prints the usage before any command runs: build it before main. */
__attribute__((constructor)) static void make_usage(void)
{
    cli_opts_usage(usage, sizeof usage, usage_head, bench_kernels_opts,
                   CLI_OPTS_N(bench_kernels_opts));
}

const cli_command cli_cmd_bench_kernels = {
    "bench-kernels",
    run_bench,
    "benchmark matrix-vector kernels against memory bandwidth",
    usage,
};
