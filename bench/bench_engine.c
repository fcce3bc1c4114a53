/*
 * bench_engine — serving figures through the generation engine
 * (realm/engine.h), not the bare forward pass:
 *
 *   bench_engine MODEL [--parallel 1,2,4,8,16] [--npp 128] [--ntg 64]
 *                [-t THREADS] [--batch 128] [--prefix 1000]
 *
 * For each parallel level P, P clients (one thread each, one tenant each)
 * submit at once a request of npp random prompt tokens and ntg generated
 * tokens (greedy, end-of-generation ignored) and read its pieces. Reported:
 * aggregate generation tokens/s (all generated tokens over the wall time of
 * the level), time to first token and inter-token latency, p50 and p99.
 * Then the prefix cache: time to first token of a request whose first
 * `--prefix` tokens are cached for its tenant against the same request
 * uncached.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "realm/engine.h"
#include "realm/error.h"

#define MAX_PAR 64

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct client {
    realm_engine *e;
    uint32_t tenant;
    realm_token *prompt;
    int n_prompt, ntg;
    double t_start, ttft, *at; /* at: (ntg) arrival time of each token */
    int n_tokens;
    int rc;
} client;

/* One client: submit, read every piece, time them. */
static void *client_main(void *arg)
{
    client *c = arg;
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = c->ntg;
    o.ignore_eos = true;
    o.sampling.temperature = 0;
    realm_gen *g;
    c->t_start = now_s();
    c->rc = realm_engine_submit(
        c->e,
        &(realm_gen_request){
            .prompt = c->prompt, .n_prompt = c->n_prompt, .tenant = c->tenant, .options = &o},
        &g);
    if (c->rc < 0) {
        fprintf(stderr, "submit: %s\n", realm_last_error());
        return NULL;
    }
    realm_gen_piece p;
    while (realm_gen_next(g, &p, -1) > 0) {
        if (p.token == REALM_TOKEN_NULL || c->n_tokens == c->ntg)
            continue;
        const double t = now_s();
        if (c->n_tokens == 0)
            c->ttft = t - c->t_start;
        c->at[c->n_tokens++] = t;
    }
    realm_gen_free(g);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, int n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int i = (int)(q * (n - 1) + 0.5);
    return v[i];
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static realm_token rand_token(int n_vocab)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (realm_token)(3 + rng % (uint64_t)(n_vocab - 3));
}

/* Run P clients at once; print one table row. */
static int run_level(realm_engine *e, int par, int npp, int ntg, int n_vocab, uint32_t *tenant)
{
    client c[MAX_PAR];
    pthread_t th[MAX_PAR];
    double *ttft = malloc(sizeof *ttft * (size_t)par),
           *itl = malloc(sizeof *itl * (size_t)(par * ntg));
    int n_itl = 0;
    for (int i = 0; i < par; i++) {
        c[i] = (client){.e = e, .tenant = (*tenant)++, .n_prompt = npp, .ntg = ntg};
        c[i].prompt = malloc(sizeof *c[i].prompt * (size_t)npp);
        c[i].at = malloc(sizeof *c[i].at * (size_t)ntg);
        c[i].prompt[0] = 1;
        for (int j = 1; j < npp; j++)
            c[i].prompt[j] = rand_token(n_vocab);
    }
    const double t0 = now_s();
    for (int i = 0; i < par; i++)
        pthread_create(&th[i], NULL, client_main, &c[i]);
    long total = 0;
    double win_lo = 0, win_hi = 1e300;
    for (int i = 0; i < par; i++) {
        pthread_join(th[i], NULL);
        total += c[i].n_tokens;
        ttft[i] = c[i].ttft;
        for (int j = 1; j < c[i].n_tokens; j++)
            itl[n_itl++] = c[i].at[j] - c[i].at[j - 1];
        if (c[i].n_tokens > 0) {
            win_lo = c[i].at[0] > win_lo ? c[i].at[0] : win_lo;
            win_hi = c[i].at[c[i].n_tokens - 1] < win_hi ? c[i].at[c[i].n_tokens - 1] : win_hi;
        }
    }
    const double wall = now_s() - t0;
    /* decode rate: tokens of all clients inside the window where every
     * client had its first token and none had ended (all streams decoding) */
    long in_win = 0;
    for (int i = 0; i < par; i++)
        for (int j = 0; j < c[i].n_tokens; j++)
            in_win += c[i].at[j] > win_lo && c[i].at[j] <= win_hi;
    const double decode_rate = win_hi > win_lo ? in_win / (win_hi - win_lo) : 0;
    int rc = 0;
    for (int i = 0; i < par; i++) {
        if (c[i].rc < 0)
            rc = c[i].rc;
        free(c[i].prompt);
        free(c[i].at);
    }
    printf("| %d | %.1f | %.1f | %.0f | %.0f | %.1f | %.1f |\n", par, total / wall, decode_rate,
           pct(ttft, par, 0.5) * 1e3, pct(ttft, par, 0.99) * 1e3, pct(itl, n_itl, 0.5) * 1e3,
           pct(itl, n_itl, 0.99) * 1e3);
    fflush(stdout);
    free(ttft);
    free(itl);
    return rc;
}

/* Time to first token of one request (max_tokens 1) for tenant. */
static double ttft_once(realm_engine *e, const realm_token *p, int n, uint32_t tenant,
                        int32_t *cached)
{
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = 1;
    o.sampling.temperature = 0;
    realm_gen *g;
    const double t0 = now_s();
    if (realm_engine_submit(
            e, &(realm_gen_request){.prompt = p, .n_prompt = n, .tenant = tenant, .options = &o},
            &g) < 0) {
        fprintf(stderr, "submit: %s\n", realm_last_error());
        return -1;
    }
    realm_gen_piece pc;
    realm_gen_next(g, &pc, -1);
    const double t = now_s() - t0;
    realm_gen_wait(g);
    realm_gen_result r;
    realm_gen_result_get(g, &r);
    *cached = r.n_cached;
    realm_gen_free(g);
    return t;
}

static int parse_list(const char *v, int *out, int max)
{
    int n = 0;
    while (*v && n < max) {
        char *end;
        long x = strtol(v, &end, 10);
        if (end == v || x < 1 || x > MAX_PAR)
            return -1;
        out[n++] = (int)x;
        v = *end == ',' ? end + 1 : end;
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr,
                "usage: %s MODEL [--parallel 1,2,4,8,16] [--npp 128] [--ntg 64] "
                "[-t THREADS] [--batch 128] [--prefix 1000]\n",
                argv[0]);
        return 2;
    }
    int par[16] = {1, 2, 4, 8, 16}, n_par = 5, npp = 128, ntg = 64, threads = 0, prefix = 1000,
        batch = 128;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--parallel"))
            n_par = parse_list(argv[i + 1], par, 16);
        else if (!strcmp(argv[i], "--npp"))
            npp = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ntg"))
            ntg = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-t"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch"))
            batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prefix"))
            prefix = atoi(argv[i + 1]);
        else
            n_par = -1;
    }
    if (n_par < 0 || npp < 1 || ntg < 2 || prefix < 0 || batch < 1) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    realm_model *m;
    if (realm_model_load(argv[1], NULL, &m) < 0) {
        fprintf(stderr, "%s\n", realm_last_error());
        return 1;
    }
    int max_par = 1;
    for (int i = 0; i < n_par; i++)
        max_par = par[i] > max_par ? par[i] : max_par;
    const int n_vocab = realm_model_hparams(m)->n_vocab;
    const int per_seq = npp + ntg > prefix + 64 ? npp + ntg : prefix + 64;
    realm_engine *e;
    if (realm_engine_new(m,
                         &(realm_engine_params){.n_ctx = max_par * (npp + ntg) + 2 * per_seq + 256,
                                                .n_ctx_seq = per_seq,
                                                .max_seqs = max_par,
                                                .n_batch = batch < max_par ? max_par : batch,
                                                .n_threads = threads},
                         &e) < 0) {
        fprintf(stderr, "%s\n", realm_last_error());
        realm_model_free(m);
        return 1;
    }
    printf("engine: npp %d, ntg %d, step budget %d tokens, threads %d\n\n", npp, ntg, batch,
           threads);
    printf("| parallel | gen tokens/s (wall) | decode tokens/s (all streaming) | TTFT p50 ms | "
           "TTFT p99 ms | ITL p50 ms | ITL p99 ms |\n"
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    uint32_t tenant = 100;
    int rc = 0;
    for (int i = 0; i < n_par && rc == 0; i++)
        rc = run_level(e, par[i], npp, ntg, n_vocab, &tenant);
    if (prefix > 0 && rc == 0) {
        realm_token *p = malloc(sizeof *p * (size_t)(prefix + 16));
        p[0] = 1;
        for (int j = 1; j < prefix + 16; j++)
            p[j] = rand_token(n_vocab);
        int32_t c1, c2;
        const double cold = ttft_once(e, p, prefix + 8, 1, &c1);
        /* same prefix, another 8-token suffix */
        memmove(p + prefix, p + prefix + 8, 8 * sizeof *p);
        const double warm = ttft_once(e, p, prefix + 8, 1, &c2);
        printf("\nprefix cache: %d-token prefix + 8 tokens: TTFT uncached %.1f ms, cached %.1f ms "
               "(%d tokens reused), %.1fx\n",
               prefix, cold * 1e3, warm * 1e3, c2, cold / warm);
        (void)c1;
        free(p);
    }
    realm_engine_free(e);
    realm_model_free(m);
    return rc < 0;
}
