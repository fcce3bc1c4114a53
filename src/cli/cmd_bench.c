/*
 * realm bench — model throughput in the manner of llama.cpp's llama-bench:
 * prompt processing (pp: one batch of P tokens) and generation (tg: N tokens
 * one at a time), median and standard deviation over repetitions; batched
 * decoding of several sequences per forward pass (aggregate tokens/s), like
 * llama-batched-bench; and the serving figures through the engine
 * (bench_serve.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bench_serve.h"
#include "cli.h"
#include "core/clock_internal.h"
#include "realm/error.h"
#include "realm/model.h"
#include "realm/threads.h"

#define CMD         "bench"
#define MAX_REPS    CLI_BENCH_MAX_REPS
#define MAX_PAR     16 /* --batched */
#define MAX_CLIENTS 64 /* --parallel */

typedef struct stats {
    double median, stdev;
} stats;

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static stats summarize(double *v, int n)
{
    double mean = 0, var = 0;
    for (int i = 0; i < n; i++)
        mean += v[i] / n;
    for (int i = 0; i < n; i++)
        var += (v[i] - mean) * (v[i] - mean) / (n > 1 ? n - 1 : 1);
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return (stats){n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]), sqrt(var)};
}

typedef struct bench {
    realm_model *m;
    realm_kv_cache *kv;
    realm_ctx *ctx;
    float *logits;
    int32_t *tok, *pos, *seq;
    bool *want;
    int32_t n_vocab;
    uint64_t rng;
} bench;

static int32_t rand_token(bench *b)
{
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return (int32_t)(b->rng % (uint64_t)b->n_vocab);
}

/* Prefill seq with n random tokens in batches of at most nb. */
static int prefill(bench *b, int32_t seq, int n, int nb)
{
    for (int at = 0; at < n; at += nb) {
        const int len = n - at < nb ? n - at : nb;
        for (int i = 0; i < len; i++) {
            b->tok[i] = rand_token(b);
            b->pos[i] = at + i;
            b->seq[i] = seq;
        }
        realm_batch bb = {len, b->tok, b->pos, b->seq, NULL};
        if (realm_forward(b->ctx, &bb, b->logits) < 0)
            return -1;
    }
    return 0;
}

/* Seconds to process one prompt of n tokens from an empty sequence. */
static double run_pp(bench *b, int n, int nb)
{
    int32_t s;
    realm_kv_seq_new(b->kv, &s);
    double t0 = realm__now();
    int rc = prefill(b, s, n, nb);
    double t = realm__now() - t0;
    realm_kv_seq_free(b->kv, s);
    return rc < 0 ? -1 : t;
}

/* Seconds for n decode steps of `par` sequences each `start` tokens long. */
static double run_tg(bench *b, int par, int start, int n, int nb)
{
    int32_t s[MAX_PAR];
    for (int p = 0; p < par; p++) {
        realm_kv_seq_new(b->kv, &s[p]);
        if (start > 0 && prefill(b, s[p], start, nb) < 0)
            return -1;
    }
    double t0 = realm__now();
    for (int step = 0; step < n; step++) {
        for (int p = 0; p < par; p++) {
            b->tok[p] = rand_token(b);
            b->pos[p] = start + step;
            b->seq[p] = s[p];
            b->want[p] = true;
        }
        realm_batch bb = {par, b->tok, b->pos, b->seq, b->want};
        if (realm_forward(b->ctx, &bb, b->logits) < 0)
            return -1;
    }
    double t = realm__now() - t0;
    for (int p = 0; p < par; p++)
        realm_kv_seq_free(b->kv, s[p]);
    return t;
}

/* A comma-separated list of at most `max` counts in [1, hi]; -1 if bad. */
static int parse_list(const char *opt, const char *v, int *out, int max, int hi)
{
    int n = 0;
    char *copy = strdup(v), *save = NULL;
    if (copy == NULL)
        return -1;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        long x;
        if (n == max) {
            cli_error(CMD, "%s: at most %d values", opt, max);
            n = -1;
            break;
        }
        if (!cli_parse_int(CMD, opt, t, 1, hi, &x)) {
            n = -1;
            break;
        }
        out[n++] = (int)x;
    }
    free(copy);
    return n;
}

static int run_bench(int argc, char **argv)
{
    const char *path = NULL;
    long n_pp = 512, n_tg = 128, threads = 0, reps = 3, par_pp = 128, par_tg = 64;
    long step_batch = 512, prefix = 0, slice = 0;
    int par[8], n_par = 0, clients[8], n_clients = 0;
    bool json = false, invariant = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "-m"))
            path = v, ok = v != NULL;
        else if (!strcmp(a, "-p"))
            ok = cli_parse_int(CMD, a, v, 0, 1 << 16, &n_pp);
        else if (!strcmp(a, "-n"))
            ok = cli_parse_int(CMD, a, v, 0, 1 << 16, &n_tg);
        else if (!strcmp(a, "-t"))
            ok = cli_parse_int(CMD, a, v, 1, 1024, &threads);
        else if (!strcmp(a, "-r"))
            ok = cli_parse_int(CMD, a, v, 1, MAX_REPS, &reps);
        else if (!strcmp(a, "--batched"))
            ok = v && (n_par = parse_list(a, v, par, 8, MAX_PAR)) >= 0;
        else if (!strcmp(a, "--parallel"))
            ok = v && (n_clients = parse_list(a, v, clients, 8, MAX_CLIENTS)) >= 0;
        else if (!strcmp(a, "--batch"))
            ok = cli_parse_int(CMD, a, v, 1, 1 << 14, &step_batch);
        else if (!strcmp(a, "--slice"))
            ok = cli_parse_int(CMD, a, v, -1, 1 << 20, &slice);
        else if (!strcmp(a, "--prefix"))
            ok = cli_parse_int(CMD, a, v, 1, 1 << 16, &prefix);
        else if (!strcmp(a, "--npp"))
            ok = cli_parse_int(CMD, a, v, 0, 1 << 16, &par_pp);
        else if (!strcmp(a, "--ntg"))
            ok = cli_parse_int(CMD, a, v, 1, 1 << 16, &par_tg);
        else if (!strcmp(a, "--json")) {
            json = true;
            continue;
        } else if (!strcmp(a, "--batch-invariant")) {
            invariant = true;
            continue;
        } else
            return cli_error(CMD, "unknown option '%s' (see 'realm help bench')", a);
        if (!ok)
            return v ? 1 : cli_error(CMD, "option %s needs a value", a);
        i++;
    }
    if (path == NULL)
        return cli_error(CMD, "missing -m MODEL.gguf");
    if (n_clients > 0 && (par_pp < 1 || par_tg < 2))
        return cli_error(CMD, "--parallel needs --npp >= 1 and --ntg >= 2");

    bench b = {.rng = 0x2545f4914f6cdd1dull};
    int rc = 1;
    if (realm_model_load(path, NULL, &b.m) < 0)
        return cli_error(CMD, "%s", realm_last_error());
    const realm_hparams *hp = realm_model_hparams(b.m);
    b.n_vocab = hp->n_vocab;
    int max_par = 1;
    for (int i = 0; i < n_par; i++)
        max_par = par[i] > max_par ? par[i] : max_par;
    long ctx_tokens = n_pp + n_tg;
    if (n_par > 0 && (long)max_par * (par_pp + par_tg) > ctx_tokens)
        ctx_tokens = (long)max_par * (par_pp + par_tg + 32); /* + a partial block each */
    const int nb = (int)(n_pp > 512 ? 512 : n_pp > 0 ? n_pp : 512);
    if (realm_kv_cache_new(b.m, &(realm_kv_params){.n_ctx = (int32_t)ctx_tokens + 64}, &b.kv) < 0 ||
        realm_ctx_new(b.m, b.kv,
                      &(realm_ctx_params){.n_batch = nb > MAX_PAR ? nb : MAX_PAR,
                                          .n_threads = (int32_t)threads,
                                          .batch_invariant = invariant},
                      &b.ctx) < 0) {
        cli_error(CMD, "%s", realm_last_error());
        goto done;
    }
    b.logits = malloc((size_t)MAX_PAR * (size_t)b.n_vocab * sizeof(float));
    b.tok = malloc(sizeof(int32_t) * 1024);
    b.pos = malloc(sizeof(int32_t) * 1024);
    b.seq = malloc(sizeof(int32_t) * 1024);
    b.want = calloc(1024, sizeof(bool));
    if (!b.logits || !b.tok || !b.pos || !b.seq || !b.want) {
        cli_error(CMD, "out of memory");
        goto done;
    }
    const int nt = threads ? (int)threads : realm_cpu_count();
    char sz[32];
    json_t *jr = json_array();
    if (!json)
        printf("model: %s (%s, %s of weights), %d threads, median ± stdev of %ld runs\n\n"
               "| test | tokens/s |\n| --- | ---: |\n",
               path, realm_arch_name(hp->arch),
               cli_format_bytes(realm_model_weight_bytes(b.m), sz, sizeof sz), nt, reps);
    double v[MAX_REPS];

    /* warm-up: page in the weights, settle the thread pool */
    if (run_pp(&b, nb < 32 ? nb : 32, nb) < 0 || run_tg(&b, 1, 0, 4, nb) < 0)
        goto fail;
    if (n_pp > 0) {
        for (int r = 0; r < reps; r++) {
            double t = run_pp(&b, (int)n_pp, nb);
            if (t < 0)
                goto fail;
            v[r] = n_pp / t;
        }
        stats s = summarize(v, (int)reps);
        if (json)
            json_array_append_new(jr,
                                  json_pack("{s:s, s:i, s:f, s:f}", "test", "pp", "tokens",
                                            (int)n_pp, "tokens_per_s", s.median, "stdev", s.stdev));
        else
            printf("| pp%ld | %.2f ± %.2f |\n", n_pp, s.median, s.stdev), fflush(stdout);
    }
    if (n_tg > 0) {
        for (int r = 0; r < reps; r++) {
            double t = run_tg(&b, 1, 0, (int)n_tg, nb);
            if (t < 0)
                goto fail;
            v[r] = n_tg / t;
        }
        stats s = summarize(v, (int)reps);
        if (json)
            json_array_append_new(jr,
                                  json_pack("{s:s, s:i, s:f, s:f}", "test", "tg", "tokens",
                                            (int)n_tg, "tokens_per_s", s.median, "stdev", s.stdev));
        else
            printf("| tg%ld | %.2f ± %.2f |\n", n_tg, s.median, s.stdev), fflush(stdout);
    }
    if (n_par > 0 && !json)
        printf("\nbatched decode: each sequence has a %ld-token prompt, then %ld decode steps\n\n"
               "| parallel | prompt tokens/s | aggregate generation tokens/s |\n| ---: | ---: | "
               "---: |\n",
               par_pp, par_tg);
    for (int i = 0; i < n_par; i++) {
        double vp[MAX_REPS];
        for (int r = 0; r < reps; r++) {
            double t_pp = 0;
            for (int p = 0; p < par[i]; p++) {
                double t = par_pp > 0 ? run_pp(&b, (int)par_pp, nb) : 0;
                if (t < 0)
                    goto fail;
                t_pp += t;
            }
            vp[r] = par_pp > 0 ? par[i] * par_pp / t_pp : 0;
            double t = run_tg(&b, par[i], (int)par_pp, (int)par_tg, nb);
            if (t < 0)
                goto fail;
            v[r] = par[i] * par_tg / t;
        }
        stats sp = summarize(vp, (int)reps), sg = summarize(v, (int)reps);
        if (json)
            json_array_append_new(jr,
                                  json_pack("{s:s, s:i, s:f, s:f, s:f}", "test", "batched",
                                            "parallel", par[i], "prompt_tokens_per_s", sp.median,
                                            "tokens_per_s", sg.median, "stdev", sg.stdev));
        else
            printf("| %d | %.2f | %.2f ± %.2f |\n", par[i], sp.median, sg.median, sg.stdev),
                fflush(stdout);
    }
    if (n_clients > 0 || prefix > 0) {
        /* the engine has its own KV pool and threads */
        realm_ctx_free(b.ctx);
        b.ctx = NULL;
        realm_kv_cache_free(b.kv);
        b.kv = NULL;
        const cli_serve_opts so = {.par = clients,
                                   .n_par = n_clients,
                                   .npp = (int)par_pp,
                                   .ntg = (int)par_tg,
                                   .threads = (int)threads,
                                   .n_batch = (int)step_batch,
                                   .slice_ms = (int)slice,
                                   .prefix = (int)prefix,
                                   .batch_invariant = invariant,
                                   .reps = (int)reps};
        if (cli_bench_serve(b.m, &so, json ? jr : NULL) != 0) {
            json_decref(jr);
            goto done;
        }
    }
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:i, s:i, s:o}", "model", path, "arch",
                              realm_arch_name(hp->arch), "weight_bytes",
                              (json_int_t)realm_model_weight_bytes(b.m), "threads", nt, "reps",
                              (int)reps, "results", jr);
        json_dumpf(j, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(j);
    } else {
        json_decref(jr);
    }
    rc = 0;
    goto done;
fail:
    cli_error(CMD, "%s", realm_last_error());
done:
    free(b.logits);
    free(b.tok);
    free(b.pos);
    free(b.seq);
    free(b.want);
    realm_ctx_free(b.ctx);
    realm_kv_cache_free(b.kv);
    realm_model_free(b.m);
    return rc;
}

const cli_command cli_cmd_bench = {
    "bench",
    run_bench,
    "benchmark prompt processing, generation, batched decoding and serving",
    "usage: realm bench -m MODEL.gguf [-p 512] [-n 128] [-t THREADS] [-r REPS]\n"
    "                   [--batched 1,2,4,8,16] [--parallel 1,2,4,8,16] [--npp 128]\n"
    "                   [--ntg 64] [--batch 512] [--slice MS] [--prefix 1000]\n"
    "                   [--batch-invariant] [--json]\n"
    "\n"
    "pp: one prompt of -p random tokens (in batches of up to 512); tg: -n tokens\n"
    "generated one at a time from an empty context (0 skips either). Both as\n"
    "tokens/s, median and standard deviation over -r repetitions (default 3),\n"
    "after a warm-up.\n"
    "--batched: the bare forward pass, like llama-batched-bench: for each count,\n"
    "that many sequences with an --npp token prompt each, then --ntg decode steps\n"
    "with one token of every sequence per pass; aggregate generation tokens/s.\n"
    "--parallel: serving through the generation engine: for each count, that many\n"
    "clients (a thread and a tenant each) submit at once an --npp token prompt for\n"
    "--ntg greedy tokens and read them as they stream. Per count: aggregate\n"
    "generation tokens/s over the wall time (prefill included), the decode rate\n"
    "while every stream is decoding, time to first token and inter-token latency\n"
    "at p50 and p99. --batch sets the engine's per-step token budget, --slice its\n"
    "prefill slice (ms of prompt work per step while streams decode; -1: off).\n"
    "--prefix N: time to first token of a request whose first N tokens are in the\n"
    "prefix cache, against the same request uncached.\n"
    "--batch-invariant: everything above with batch-invariant kernels (a token's\n"
    "logits bitwise the same alone or batched; see realm_ctx_params).\n",
};
