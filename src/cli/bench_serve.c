/*
 * realm bench --parallel / --prefix: serving figures through the generation
 * engine (realm/engine.h) rather than the bare forward pass.
 *
 * For each parallel level P, P clients (one thread and one tenant each)
 * submit at once a request of npp random prompt tokens for ntg generated
 * tokens (greedy, end-of-generation ignored) and read its pieces as a
 * server thread would. Per level: aggregate generation tokens/s over the
 * level's wall time (prefill included), the decode rate while every stream
 * is decoding, time to first token and inter-token latency at p50 and p99
 * (pooled over repetitions), and the longest gap between two tokens. Then
 * the prefix cache: time to first token of a request whose first `prefix`
 * tokens are cached for its tenant, against the same request uncached.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_serve.h"
#include "core/clock_internal.h"
#include "realm/engine.h"
#include "realm/error.h"

#define CMD "bench"

typedef struct client {
    realm_engine *e;
    uint32_t tenant;
    const realm_lora_set *set; /* its adapters, or NULL */
    realm_token *prompt;
    int n_prompt, ntg;
    double t_start, *at; /* at: (ntg) arrival time of each token */
    int n_tokens;
    int rc;
    char err[256];
} client;

/* One client: submit, read every piece, time the tokens. */
static void *client_main(void *arg)
{
    client *c = arg;
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = c->ntg;
    o.ignore_eos = true;
    o.sampling.temperature = 0;
    o.no_prefix_cache = true;
    if (c->set) {
        o.lora = c->set->items;
        o.n_lora = c->set->n;
    }
    realm_gen *g;
    c->t_start = realm__now();
    c->rc = realm_engine_submit(
        c->e,
        &(realm_gen_request){
            .prompt = c->prompt, .n_prompt = c->n_prompt, .tenant = c->tenant, .options = &o},
        &g);
    if (c->rc < 0) {
        snprintf(c->err, sizeof c->err, "%s", realm_last_error());
        return NULL;
    }
    realm_gen_piece p;
    while (realm_gen_next(g, &p, -1) > 0)
        if (p.token != REALM_TOKEN_NULL && c->n_tokens < c->ntg)
            c->at[c->n_tokens++] = realm__now();
    realm_gen_result r;
    realm_gen_result_get(g, &r);
    if (r.finish == REALM_FINISH_ERROR) {
        c->rc = r.error;
        snprintf(c->err, sizeof c->err, "%s", r.message);
    }
    realm_gen_free(g);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of v[0..n) (nearest rank); sorts v. */
static double quantile(double *v, int n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[(int)(q * (n - 1) + 0.5)];
}

static realm_token rand_token(uint64_t *rng, int n_vocab)
{
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    return (realm_token)(3 + *rng % (uint64_t)(n_vocab - 3));
}

/* What one level measured (times in seconds). */
typedef struct level {
    double *ttft, *itl;
    int n_ttft, n_itl;
    double gen_rate[CLI_BENCH_MAX_REPS], decode_rate[CLI_BENCH_MAX_REPS];
} level;

/* One repetition of level P: P clients at once. */
static int run_once(realm_engine *e, const cli_serve_opts *o, int par, int n_vocab, uint64_t *rng,
                    uint32_t *tenant, level *lv, int rep)
{
    client *c = calloc((size_t)par, sizeof *c);
    pthread_t *th = calloc((size_t)par, sizeof *th);
    int rc = c && th ? 0 : cli_error(CMD, "out of memory");
    for (int i = 0; i < par && rc == 0; i++) {
        c[i] = (client){.e = e,
                        .tenant = (*tenant)++,
                        .set = o->n_sets ? &o->sets[i % o->n_sets] : NULL,
                        .n_prompt = o->npp,
                        .ntg = o->ntg};
        c[i].prompt = malloc(sizeof *c[i].prompt * (size_t)o->npp);
        c[i].at = malloc(sizeof *c[i].at * (size_t)o->ntg);
        if (!c[i].prompt || !c[i].at) {
            rc = cli_error(CMD, "out of memory");
            break;
        }
        c[i].prompt[0] = 1;
        for (int j = 1; j < o->npp; j++)
            c[i].prompt[j] = rand_token(rng, n_vocab);
    }
    int started = 0;
    const double t0 = realm__now();
    for (; started < par && rc == 0; started++)
        if (pthread_create(&th[started], NULL, client_main, &c[started]) != 0)
            rc = cli_error(CMD, "cannot start a client thread");
    long total = 0;
    double lo = 0, hi = 1e300;
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        if (c[i].rc < 0 && rc == 0)
            rc = cli_error(CMD, "%s", c[i].err);
        total += c[i].n_tokens;
        if (c[i].n_tokens > 0) {
            lv->ttft[lv->n_ttft++] = c[i].at[0] - c[i].t_start;
            lo = c[i].at[0] > lo ? c[i].at[0] : lo;
            hi = c[i].at[c[i].n_tokens - 1] < hi ? c[i].at[c[i].n_tokens - 1] : hi;
        }
        for (int j = 1; j < c[i].n_tokens; j++)
            lv->itl[lv->n_itl++] = c[i].at[j] - c[i].at[j - 1];
    }
    const double wall = realm__now() - t0;
    /* the decode rate: tokens inside the window where every client had its
     * first token and none had its last (all streams decoding) */
    long in_window = 0;
    for (int i = 0; i < started; i++)
        for (int j = 0; j < c[i].n_tokens; j++)
            in_window += c[i].at[j] > lo && c[i].at[j] <= hi;
    lv->gen_rate[rep] = total / wall;
    lv->decode_rate[rep] = hi > lo ? in_window / (hi - lo) : 0;
    for (int i = 0; c && i < par; i++) {
        free(c[i].prompt);
        free(c[i].at);
    }
    free(c);
    free(th);
    return rc;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Time to first token of one request (max_tokens 1) for tenant; the number
 * of prompt tokens taken from the prefix cache in *cached. */
static double ttft_once(realm_engine *e, const realm_token *p, int n, uint32_t tenant,
                        int32_t *cached)
{
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = 1;
    o.sampling.temperature = 0;
    realm_gen *g;
    const double t0 = realm__now();
    if (realm_engine_submit(
            e, &(realm_gen_request){.prompt = p, .n_prompt = n, .tenant = tenant, .options = &o},
            &g) < 0)
        return -1;
    realm_gen_piece pc;
    realm_gen_next(g, &pc, -1);
    const double t = realm__now() - t0;
    realm_gen_wait(g);
    realm_gen_result r;
    realm_gen_result_get(g, &r);
    realm_gen_free(g);
    *cached = r.n_cached;
    return r.finish == REALM_FINISH_ERROR ? -1 : t;
}

static int run_prefix(realm_engine *e, const cli_serve_opts *o, int n_vocab, uint64_t *rng,
                      json_t *results)
{
    const int n = o->prefix + 8;
    realm_token *p = malloc(sizeof *p * (size_t)(n + 8));
    if (p == NULL)
        return cli_error(CMD, "out of memory");
    double cold[CLI_BENCH_MAX_REPS], warm[CLI_BENCH_MAX_REPS];
    int32_t hit = 0, miss = 0;
    int rc = 0;
    for (int r = 0; r < o->reps && rc == 0; r++) {
        /* a fresh tenant and prompt each time: the first request misses */
        p[0] = 1;
        for (int j = 1; j < n + 8; j++)
            p[j] = rand_token(rng, n_vocab);
        const uint32_t tenant = 1000000u + (uint32_t)r;
        cold[r] = ttft_once(e, p, n, tenant, &miss);
        while (p[n] == p[o->prefix]) /* the cache matches to the token: differ at once */
            p[n] = rand_token(rng, n_vocab);
        memmove(p + o->prefix, p + n, 8 * sizeof *p); /* same prefix, another suffix */
        warm[r] = ttft_once(e, p, n, tenant, &hit);
        if (cold[r] < 0 || warm[r] < 0)
            rc = cli_error(CMD, "%s", realm_last_error());
    }
    free(p);
    if (rc)
        return rc;
    const double c = median(cold, o->reps), w = median(warm, o->reps);
    if (results)
        json_array_append_new(results, json_pack("{s:s, s:i, s:i, s:f, s:f, s:f}", "test",
                                                 "prefix_cache", "prefix", o->prefix,
                                                 "cached_tokens", hit, "ttft_ms_uncached", c * 1e3,
                                                 "ttft_ms_cached", w * 1e3, "speedup", c / w));
    else
        printf("\nprefix cache: a %d-token prefix + 8 new tokens, time to first token (median of "
               "%d)\n\n| prompt | TTFT ms |\n| --- | ---: |\n| uncached | %.1f |\n"
               "| %d tokens cached | %.1f |\n\nspeed-up %.1fx\n",
               o->prefix, o->reps, c * 1e3, hit, w * 1e3, c / w);
    (void)miss;
    return 0;
}

int cli_bench_serve(const realm_model *m, const cli_serve_opts *o, json_t *results)
{
    int max_par = 1;
    for (int i = 0; i < o->n_par; i++)
        max_par = o->par[i] > max_par ? o->par[i] : max_par;
    const int n_vocab = realm_model_hparams(m)->n_vocab;
    const int per_seq = o->npp + o->ntg > o->prefix + 64 ? o->npp + o->ntg : o->prefix + 64;
    realm_engine *e;
    const int n_batch = o->n_batch < max_par ? max_par : o->n_batch;
    if (realm_engine_new(
            m,
            &(realm_engine_params){.n_ctx = max_par * (o->npp + o->ntg + 32) + 2 * per_seq + 256,
                                   .n_ctx_seq = per_seq,
                                   .max_seqs = max_par,
                                   .n_batch = n_batch,
                                   .prefill_slice_ms = o->slice_ms,
                                   .batch_invariant = o->batch_invariant,
                                   .type_k = o->type_k,
                                   .type_v = o->type_v,
                                   .n_threads = o->threads},
            &e) < 0)
        return cli_error(CMD, "%s", realm_last_error());
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    uint32_t tenant = 1;
    level lv = {0};
    lv.ttft = malloc(sizeof *lv.ttft * (size_t)(max_par * o->reps));
    lv.itl = malloc(sizeof *lv.itl * (size_t)(max_par * o->reps * o->ntg));
    int rc = lv.ttft && lv.itl ? 0 : cli_error(CMD, "out of memory");
    if (rc == 0 && o->n_par > 0) {
        /* warm-up: page in the weights, settle the threads */
        cli_serve_opts w = *o;
        w.npp = o->npp < 16 ? o->npp : 16;
        w.ntg = 4;
        rc = run_once(e, &w, 1, n_vocab, &rng, &tenant, &lv, 0);
        char slice[32] = "off";
        if (o->slice_ms >= 0)
            snprintf(slice, sizeof slice, "%d ms", o->slice_ms ? o->slice_ms : 500);
        if (results == NULL)
            printf("\nserving through the engine: each client sends a %d-token prompt and reads "
                   "%d tokens; step budget %d tokens, prefill slice %s; median of %d runs, "
                   "latencies pooled\n\n"
                   "| parallel | gen tokens/s | decode tokens/s | TTFT p50 ms | TTFT p99 ms | "
                   "ITL p50 ms | ITL p99 ms | ITL max ms |\n"
                   "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
                   o->npp, o->ntg, n_batch, slice, o->reps);
    }
    for (int i = 0; i < o->n_par && rc == 0; i++) {
        lv.n_ttft = lv.n_itl = 0;
        for (int r = 0; r < o->reps && rc == 0; r++)
            rc = run_once(e, o, o->par[i], n_vocab, &rng, &tenant, &lv, r);
        if (rc)
            break;
        const double gen = median(lv.gen_rate, o->reps), dec = median(lv.decode_rate, o->reps);
        const double t50 = quantile(lv.ttft, lv.n_ttft, 0.5) * 1e3,
                     t99 = quantile(lv.ttft, lv.n_ttft, 0.99) * 1e3,
                     i50 = quantile(lv.itl, lv.n_itl, 0.5) * 1e3,
                     i99 = quantile(lv.itl, lv.n_itl, 0.99) * 1e3,
                     imax = quantile(lv.itl, lv.n_itl, 1.0) * 1e3;
        if (results)
            json_array_append_new(
                results, json_pack("{s:s, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
                                   "test", "parallel", "parallel", o->par[i], "npp", o->npp, "ntg",
                                   o->ntg, "tokens_per_s", gen, "decode_tokens_per_s", dec,
                                   "ttft_ms_p50", t50, "ttft_ms_p99", t99, "itl_ms_p50", i50,
                                   "itl_ms_p99", i99, "itl_ms_max", imax));
        else {
            char d[32] = "-"; /* no window where every stream was decoding */
            if (dec > 0)
                snprintf(d, sizeof d, "%.1f", dec);
            printf("| %d | %.1f | %s | %.1f | %.1f | %.1f | %.1f | %.1f |\n", o->par[i], gen, d,
                   t50, t99, i50, i99, imax);
            fflush(stdout);
        }
    }
    if (rc == 0 && o->prefix > 0)
        rc = run_prefix(e, o, n_vocab, &rng, results);
    free(lv.ttft);
    free(lv.itl);
    realm_engine_free(e);
    return rc;
}
