/*
 * realm bench — model throughput in the manner of llama.cpp's llama-bench:
 * prompt processing (pp: one batch of P tokens) and generation (tg: N tokens
 * one at a time), each after D tokens of context already in the KV cache
 * (-d, llama-bench's depth), median and standard deviation over
 * repetitions; batched decoding of several sequences per forward pass
 * (aggregate tokens/s), like llama-batched-bench; and the serving figures
 * through the engine (bench_serve.c). With LoRA adapters: one set for every
 * sequence (--lora), or one adapter per sequence or client, taken in turn
 * (--lora-per-stream), all in the same passes.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bench_serve.h"
#include "bench_spec.h"
#include "cli.h"
#include "core/clock_internal.h"
#include "lora_args.h"
#include "opts.h"
#include "realm/engine.h"
#include "realm/error.h"
#include "realm/model.h"
#include "realm/threads.h"
#include "rope_opts.h"

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
    int32_t *set;               /* each entry's adapter set, when there are sets */
    const realm_lora_set *sets; /* stream i uses sets[i % n_sets] (n == 0: none) */
    int n_sets;
} bench;

/* The adapter set of stream i, or -1. */
static int32_t set_of(const bench *b, int stream)
{
    return b->n_sets ? stream % b->n_sets : -1;
}

/* The forward pass over n entries of b's arrays. */
static int forward(bench *b, int n, const bool *want)
{
    const realm_batch bb = {n, b->tok, b->pos, b->seq, want};
    const realm_batch_lora bl = {b->set, b->sets, b->n_sets};
    return realm_forward_lora(b->ctx, &bb, b->n_sets ? &bl : NULL, b->logits);
}

static int32_t rand_token(bench *b)
{
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return (int32_t)(b->rng % (uint64_t)b->n_vocab);
}

/* Append n random tokens to seq (now `start` tokens long), the sequence of
 * `stream`, in batches of at most nb. */
static int prefill(bench *b, int32_t seq, int stream, int start, int n, int nb)
{
    for (int at = 0; at < n; at += nb) {
        const int len = n - at < nb ? n - at : nb;
        for (int i = 0; i < len; i++) {
            b->tok[i] = rand_token(b);
            b->pos[i] = start + at + i;
            b->seq[i] = seq;
            b->set[i] = set_of(b, stream);
        }
        if (forward(b, len, NULL) < 0)
            return -1;
    }
    return 0;
}

/* A new sequence: empty, or a fork of ctx (-1: none), which holds the depth's context. */
static int seq_start(bench *b, int32_t ctx, int32_t *s)
{
    return ctx < 0 ? realm_kv_seq_new(b->kv, s) : realm_kv_seq_fork(b->kv, ctx, s);
}

/* Seconds to process one prompt of n tokens after the `depth` tokens of ctx
 * (-1 and 0: from an empty sequence). */
static double run_pp(bench *b, int32_t ctx, int depth, int n, int nb)
{
    int32_t s;
    if (seq_start(b, ctx, &s) < 0)
        return -1;
    double t0 = realm__now();
    int rc = prefill(b, s, 0, depth, n, nb);
    double t = realm__now() - t0;
    realm_kv_seq_free(b->kv, s);
    return rc < 0 ? -1 : t;
}

/* Seconds for n decode steps of one sequence after the `depth` tokens of ctx. */
static double run_tg_depth(bench *b, int32_t ctx, int depth, int n)
{
    int32_t s;
    if (seq_start(b, ctx, &s) < 0)
        return -1;
    double t0 = realm__now();
    for (int step = 0; step < n; step++) {
        b->tok[0] = rand_token(b);
        b->pos[0] = depth + step;
        b->seq[0] = s;
        b->want[0] = true;
        b->set[0] = set_of(b, 0);
        if (forward(b, 1, b->want) < 0) {
            realm_kv_seq_free(b->kv, s);
            return -1;
        }
    }
    double t = realm__now() - t0;
    realm_kv_seq_free(b->kv, s);
    return t;
}

/* Seconds for n decode steps of `par` sequences each `start` tokens long. */
static double run_tg(bench *b, int par, int start, int n, int nb)
{
    int32_t s[MAX_PAR];
    for (int p = 0; p < par; p++) {
        realm_kv_seq_new(b->kv, &s[p]);
        if (start > 0 && prefill(b, s[p], p, 0, start, nb) < 0)
            return -1;
    }
    double t0 = realm__now();
    for (int step = 0; step < n; step++) {
        for (int p = 0; p < par; p++) {
            b->tok[p] = rand_token(b);
            b->pos[p] = start + step;
            b->seq[p] = s[p];
            b->want[p] = true;
            b->set[p] = set_of(b, p);
        }
        if (forward(b, par, b->want) < 0)
            return -1;
    }
    double t = realm__now() - t0;
    for (int p = 0; p < par; p++)
        realm_kv_seq_free(b->kv, s[p]);
    return t;
}

/*
 * Seconds of one pass over 1 + k entries of one sequence, every entry with
 * logits (what the engine's verification of k drafts costs), after its
 * `start` tokens; the entries are rolled back after the pass, so each
 * repetition sees the same cache.
 */
static double run_verify(bench *b, int32_t s, int start, int k)
{
    for (int i = 0; i <= k; i++) {
        b->tok[i] = rand_token(b);
        b->pos[i] = start + i;
        b->seq[i] = s;
        b->want[i] = true;
        b->set[i] = set_of(b, 0);
    }
    const double t0 = realm__now();
    const int rc = forward(b, k + 1, b->want);
    const double t = realm__now() - t0;
    if (realm_kv_seq_truncate(b->kv, s, start) < 0 || rc < 0)
        return -1;
    return t;
}

typedef struct bench_cfg {
    const char *model;
    long long n_pp, n_tg, threads, reps;
    cli_ints depth, batched, parallel;
    long long npp, ntg, batch, slice, prefix;
    int cache_k, cache_v; /* indexes in cli_cache_types */
    bool invariant, json, repack;
    cli_rope rope;
    cli_strings lora;
    const char *lora_per_stream;
    const char *draft, *spec_prompt; /* speculative decoding (bench_spec.c) */
    bool lookup;
    long long draft_max;
    double spec_temp;
    cli_ints spec_streams, verify;
} bench_cfg;

/* REALM_THREADS applies, as to the server (the figures should be those of
 * the machine as configured); the rest are per invocation. */
static const cli_opt bench_opts[] = {
    {"model", 'm', CLI_OPT_STRING, "FILE", NULL, "the GGUF file", offsetof(bench_cfg, model),
     .env = false},
    {"n-prompt", 'p', CLI_OPT_INT, "N", "512", "pp: prompt tokens, 0 to skip",
     offsetof(bench_cfg, n_pp), .env = false, .min = 0, .max = 1 << 16},
    {"n-gen", 'n', CLI_OPT_INT, "N", "128", "tg: generated tokens, 0 to skip",
     offsetof(bench_cfg, n_tg), .env = false, .min = 0, .max = 1 << 16},
    {"threads", 't', CLI_OPT_INT, "N", NULL, "worker threads (default: all CPUs)",
     offsetof(bench_cfg, threads), .env = true, .min = 1, .max = 1024},
    {"reps", 'r', CLI_OPT_INT, "REPS", "3", "repetitions of each test", offsetof(bench_cfg, reps),
     .env = false, .min = 1, .max = MAX_REPS},
    {"n-depth", 'd', CLI_OPT_INT_LIST, "N,...", "0",
     "pp and tg after N tokens of context in the KV cache, for each N", offsetof(bench_cfg, depth),
     .env = false, .min = 0, .max = 1 << 20, .n_max = 8},
    {"batched", 0, CLI_OPT_INT_LIST, "N,...", NULL,
     "batched decoding with N sequences per pass, for each N", offsetof(bench_cfg, batched),
     .env = false, .min = 1, .max = MAX_PAR, .n_max = 8},
    {"parallel", 0, CLI_OPT_INT_LIST, "N,...", NULL,
     "serving through the engine with N clients at once, for each N", offsetof(bench_cfg, parallel),
     .env = false, .min = 1, .max = MAX_CLIENTS, .n_max = 8},
    {"npp", 0, CLI_OPT_INT, "N", "128", "prompt tokens of each sequence or client",
     offsetof(bench_cfg, npp), .env = false, .min = 0, .max = 1 << 16},
    {"ntg", 0, CLI_OPT_INT, "N", "64", "generated tokens of each sequence or client",
     offsetof(bench_cfg, ntg), .env = false, .min = 1, .max = 1 << 16},
    {"batch", 0, CLI_OPT_INT, "N", "512", "the engine's per-step token budget",
     offsetof(bench_cfg, batch), .env = false, .min = 1, .max = 1 << 14},
    {"slice", 0, CLI_OPT_INT, "MS", NULL, "the engine's prefill slice (default: its own; -1: off)",
     offsetof(bench_cfg, slice), .env = false, .min = -1, .max = 1 << 20},
    {"prefix", 0, CLI_OPT_INT, "N", NULL, "time to first token with N prompt tokens cached",
     offsetof(bench_cfg, prefix), .env = false, .min = 1, .max = 1 << 16},
    {"cache-type-k", 0, CLI_OPT_ENUM, NULL, "f16",
     "KV cache type of the keys (q8_0: about half the memory and bandwidth)",
     offsetof(bench_cfg, cache_k), .env = false, .choices = cli_cache_types},
    {"cache-type-v", 0, CLI_OPT_ENUM, NULL, "f16", "KV cache type of the values",
     offsetof(bench_cfg, cache_v), .env = false, .choices = cli_cache_types},
    {"batch-invariant", 0, CLI_OPT_FLAG, NULL, NULL, "use batch-invariant kernels",
     offsetof(bench_cfg, invariant), .env = false},
    {"repack", 0, CLI_OPT_FLAG, NULL, "true",
     "repack the weights that have a packed layout on this CPU (Q4_K, and Q5_K, Q6_K, Q8_0 and "
     "Q4_0 with "
     "AVX-512) once at load, the draft model's too; --no-repack: compute from the file's "
     "mapping",
     offsetof(bench_cfg, repack), .env = false},
    {"lora", 0, CLI_OPT_STRING_LIST, "FILE[:SCALE]", NULL,
     "apply this LoRA adapter to every sequence (repeatable: the adapters add up)",
     offsetof(bench_cfg, lora), .env = false, .n_max = REALM_LORA_MAX_SET},
    {"lora-per-stream", 0, CLI_OPT_STRING, "A,B,...", NULL,
     "--batched and --parallel: sequence or client i uses adapter i mod count (FILE[:SCALE] "
     "or none)",
     offsetof(bench_cfg, lora_per_stream), .env = false},
    {"draft", 0, CLI_OPT_STRING, "FILE", NULL,
     "speculative decoding with this draft model: tokens/s without and with, acceptance",
     offsetof(bench_cfg, draft), .env = false},
    {"lookup", 0, CLI_OPT_FLAG, NULL, NULL, "the same with prompt lookup drafts",
     offsetof(bench_cfg, lookup), .env = false},
    {"draft-max", 0, CLI_OPT_INT, "K", "8", "--draft, --lookup: most drafted tokens per step",
     offsetof(bench_cfg, draft_max), .env = false, .min = 1, .max = REALM_SPEC_MAX_DRAFT},
    {"spec-prompt", 0, CLI_OPT_STRING, "TEXT", "Once upon a time",
     "--draft, --lookup: the prompt of every stream", offsetof(bench_cfg, spec_prompt),
     .env = false},
    {"spec-temp", 0, CLI_OPT_FLOAT, "T", "0",
     "--draft, --lookup: sampling temperature of every stream (0: greedy); stream i draws with "
     "seed i + 1, the same without and with speculation",
     offsetof(bench_cfg, spec_temp), .env = false, .fmin = 0, .fmax = 100},
    {"spec-streams", 0, CLI_OPT_INT_LIST, "N,...", "1",
     "--draft, --lookup: streams at once, for each N", offsetof(bench_cfg, spec_streams),
     .env = false, .min = 1, .max = 64, .n_max = 8},
    {"verify", 0, CLI_OPT_INT_LIST, "K,...", NULL,
     "time one pass verifying K drafted tokens (K + 1 rows with logits) against a decode "
     "step, after --npp tokens of context, for each K",
     offsetof(bench_cfg, verify), .env = false, .min = 1, .max = MAX_PAR - 1, .n_max = 8},
    {"json", 0, CLI_OPT_FLAG, NULL, NULL, "one JSON document instead of tables",
     offsetof(bench_cfg, json), .env = false},
    CLI_ROPE_OPTS(bench_cfg, rope, false),
};

static int run_bench(int argc, char **argv)
{
    bench_cfg cfg = {.rope = CLI_ROPE_INIT};
    int status = cli_opts_parse(CMD, bench_opts, CLI_OPTS_N(bench_opts), argc, argv, &cfg, NULL);
    if (status != 0) {
        cli_opts_free(bench_opts, CLI_OPTS_N(bench_opts), &cfg);
        return status == 2 ? 0 : status;
    }
    const char *path = cfg.model;
    const long n_pp = (long)cfg.n_pp, n_tg = (long)cfg.n_tg, threads = (long)cfg.threads;
    const long reps = (long)cfg.reps, par_pp = (long)cfg.npp, par_tg = (long)cfg.ntg;
    const long step_batch = (long)cfg.batch, prefix = (long)cfg.prefix, slice = (long)cfg.slice;
    const bool json = cfg.json, invariant = cfg.invariant;
    const realm_type type_k = cli_cache_type(cfg.cache_k), type_v = cli_cache_type(cfg.cache_v);
    int par[8], n_par = cfg.batched.n, clients[8], n_clients = cfg.parallel.n;
    int depth[8], n_depth = cfg.depth.n, max_depth = 0;
    for (int i = 0; i < n_depth; i++) {
        depth[i] = (int)cfg.depth.v[i];
        max_depth = depth[i] > max_depth ? depth[i] : max_depth;
    }
    for (int i = 0; i < n_par; i++)
        par[i] = (int)cfg.batched.v[i];
    for (int i = 0; i < n_clients; i++)
        clients[i] = (int)cfg.parallel.v[i];
    if (path == NULL)
        return cli_error(CMD, "missing -m MODEL.gguf");
    if (n_clients > 0 && (par_pp < 1 || par_tg < 2))
        return cli_error(CMD, "--parallel needs --npp >= 1 and --ntg >= 2");
    /* --lora: one set of all the adapters; --lora-per-stream: a set of one each */
    static cli_lora_args la;
    la.n = 0;
    for (int i = 0; i < cfg.lora.n; i++)
        if (!cli_lora_parse(CMD, "--lora", cfg.lora.v[i], false, &la))
            return cli_opts_free(bench_opts, CLI_OPTS_N(bench_opts), &cfg), 1;
    if (cfg.lora_per_stream != NULL) {
        if (cfg.lora.n > 0)
            return cli_opts_free(bench_opts, CLI_OPTS_N(bench_opts), &cfg),
                   cli_error(CMD, "--lora and --lora-per-stream: use one or the other");
        char item[4096];
        for (const char *s = cfg.lora_per_stream; *s;) {
            const char *comma = strchr(s, ',');
            const size_t len = comma ? (size_t)(comma - s) : strlen(s);
            snprintf(item, sizeof item, "%.*s", (int)len, s);
            if (!cli_lora_parse(CMD, "--lora-per-stream", item, true, &la))
                return cli_opts_free(bench_opts, CLI_OPTS_N(bench_opts), &cfg), 1;
            s += len + (comma != NULL);
        }
    }
    const bool per_stream = cfg.lora_per_stream != NULL;
    const char *draft_path = cfg.draft, *spec_prompt = cfg.spec_prompt;
    const bool spec = cfg.draft != NULL || cfg.lookup;
    if (cfg.draft != NULL && cfg.lookup)
        return cli_opts_free(bench_opts, CLI_OPTS_N(bench_opts), &cfg),
               cli_error(CMD, "--draft and --lookup: one way of drafting at a time");
    int spec_streams[8], n_spec_streams = cfg.spec_streams.n, verify[8], n_verify = cfg.verify.n;
    for (int i = 0; i < n_spec_streams; i++)
        spec_streams[i] = (int)cfg.spec_streams.v[i];
    for (int i = 0; i < n_verify; i++)
        verify[i] = (int)cfg.verify.v[i];
    cli_opts_free(bench_opts, CLI_OPTS_N(bench_opts), &cfg);

    realm_model_params mp = {.repack = cfg.repack};
    if (cli_rope_params(CMD, &cfg.rope, &mp.rope) != 0)
        return 1;
    bench b = {.rng = 0x2545f4914f6cdd1dull};
    int rc = 1;
    realm_lora *ads[CLI_LORA_MAX] = {0};
    realm_lora_item items[CLI_LORA_MAX];
    realm_lora_set sets[CLI_LORA_MAX];
    if (realm_model_load(path, &mp, &b.m) < 0)
        return cli_error(CMD, "%s", realm_last_error());
    if (!cli_lora_load(CMD, b.m, &la, ads)) {
        realm_model_free(b.m);
        return 1;
    }
    for (int i = 0; i < la.n; i++) {
        items[i] = (realm_lora_item){ads[i], la.scale[i]};
        sets[i] = (realm_lora_set){ads[i] ? 1 : 0, &items[i]};
    }
    sets[0] = per_stream ? sets[0] : (realm_lora_set){la.n, items};
    b.sets = sets;
    b.n_sets = per_stream ? la.n : la.n > 0;
    const realm_hparams *hp = realm_model_hparams(b.m);
    b.n_vocab = hp->n_vocab;
    /* The tests themselves may run past the context length, as in llama-bench
     * (tg64 @ d2048 on a 2048-token model); the context may not. */
    if (max_depth > hp->n_ctx_train) {
        cli_error(CMD, "-d %d: deeper than the model's context length (%d tokens)", max_depth,
                  hp->n_ctx_train);
        realm_model_free(b.m);
        return 1;
    }
    int max_par = 1;
    for (int i = 0; i < n_par; i++)
        max_par = par[i] > max_par ? par[i] : max_par;
    /* a depth's context stays while a fork of it runs a test */
    long ctx_tokens = n_pp + n_tg + max_depth;
    if (n_par > 0 && (long)max_par * (par_pp + par_tg) > ctx_tokens)
        ctx_tokens = (long)max_par * (par_pp + par_tg + 32); /* + a partial block each */
    if (n_verify > 0 && par_pp + MAX_PAR + 32 > ctx_tokens)
        ctx_tokens = par_pp + MAX_PAR + 32;
    const int nb = (int)(n_pp > 512 ? 512 : n_pp > 0 ? n_pp : 512);
    if (realm_kv_cache_new(b.m,
                           &(realm_kv_params){.n_ctx = (int32_t)ctx_tokens + 64,
                                              .type_k = type_k,
                                              .type_v = type_v},
                           &b.kv) < 0 ||
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
    b.set = malloc(sizeof(int32_t) * 1024);
    if (!b.logits || !b.tok || !b.pos || !b.seq || !b.want || !b.set) {
        cli_error(CMD, "out of memory");
        goto done;
    }
    const int nt = threads ? (int)threads : realm_cpu_count();
    char sz[32];
    json_t *jr = json_array();
    char packed[96] = "";
    if (realm_model_packed_bytes(b.m) > 0) {
        char psz[32];
        snprintf(packed, sizeof packed, ", %s of them repacked",
                 cli_format_bytes(realm_model_packed_bytes(b.m), psz, sizeof psz));
    }
    if (!json)
        printf("model: %s (%s, %s of weights%s), %d threads, KV cache %s/%s, median ± stdev "
               "of %ld runs\n",
               path, realm_arch_name(hp->arch),
               cli_format_bytes(realm_model_weight_bytes(b.m), sz, sizeof sz), packed, nt,
               cli_cache_types[cfg.cache_k], cli_cache_types[cfg.cache_v], reps);
    if (la.n > 0 && !json) {
        static char desc[CLI_LORA_MAX * 4200];
        printf("LoRA %s: %s\n", per_stream ? "per stream, in turn" : "on every sequence",
               cli_lora_describe(&la, ads, desc, sizeof desc));
    }
    if (!json)
        printf("\n| test | tokens/s |\n| --- | ---: |\n");
    double v[MAX_REPS];

    /* warm-up: page in the weights, settle the thread pool */
    if (run_pp(&b, -1, 0, nb < 32 ? nb : 32, nb) < 0 || run_tg(&b, 1, 0, 4, nb) < 0)
        goto fail;
    /*
     * Per depth, as llama-bench -d: the context is computed once, untimed, and
     * every repetition of pp and tg forks it (its KV blocks shared, copied on
     * write), so each test starts from the same cache state without paying
     * for the context again.
     */
    for (int di = 0; di < n_depth && (n_pp > 0 || n_tg > 0); di++) {
        const int d = depth[di];
        int32_t ctx = -1;
        char at[32] = "";
        if (d > 0) {
            snprintf(at, sizeof at, " @ d%d", d);
            if (realm_kv_seq_new(b.kv, &ctx) < 0 || prefill(&b, ctx, 0, 0, d, nb) < 0)
                goto fail;
        }
        for (int test = 0; test < 2; test++) {
            const long n = test == 0 ? n_pp : n_tg;
            if (n == 0)
                continue;
            for (int r = 0; r < reps; r++) {
                double t =
                    test == 0 ? run_pp(&b, ctx, d, (int)n, nb) : run_tg_depth(&b, ctx, d, (int)n);
                if (t < 0)
                    goto fail;
                v[r] = n / t;
            }
            stats s = summarize(v, (int)reps);
            const char *name = test == 0 ? "pp" : "tg";
            if (json)
                json_array_append_new(jr, json_pack("{s:s, s:i, s:i, s:f, s:f}", "test", name,
                                                    "tokens", (int)n, "depth", d, "tokens_per_s",
                                                    s.median, "stdev", s.stdev));
            else
                printf("| %s%ld%s | %.2f ± %.2f |\n", name, n, at, s.median, s.stdev),
                    fflush(stdout);
        }
        if (ctx >= 0)
            realm_kv_seq_free(b.kv, ctx);
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
                double t = par_pp > 0 ? run_pp(&b, -1, 0, (int)par_pp, nb) : 0;
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
    if (n_verify > 0) {
        /* alternate the pass sizes repetition by repetition (a shared machine's
         * load drifts over all of them alike); K = 0 is the decode step */
        int32_t s;
        if (realm_kv_seq_new(b.kv, &s) < 0 || prefill(&b, s, 0, 0, (int)par_pp, nb) < 0)
            goto fail;
        double vt[9][MAX_REPS];
        for (int r = 0; r < reps; r++)
            for (int i = 0; i <= n_verify; i++)
                if ((vt[i][r] = run_verify(&b, s, (int)par_pp, i ? verify[i - 1] : 0)) < 0)
                    goto fail;
        realm_kv_seq_free(b.kv, s);
        const double base = summarize(vt[0], (int)reps).median;
        if (!json)
            printf("\nverification: one pass of 1 + K rows with logits after %ld tokens of "
                   "context, against a decode step (K = 0)\n\n| K | ms per pass | x decode "
                   "step |\n| ---: | ---: | ---: |\n| 0 | %.3f | 1.00 |\n",
                   par_pp, base * 1e3);
        for (int i = 1; i <= n_verify; i++) {
            const double t = summarize(vt[i], (int)reps).median;
            if (json)
                json_array_append_new(jr, json_pack("{s:s, s:i, s:i, s:f, s:f, s:f}", "test",
                                                    "verify", "k", verify[i - 1], "depth",
                                                    (int)par_pp, "ms", t * 1e3, "decode_ms",
                                                    base * 1e3, "ratio", t / base));
            else
                printf("| %d | %.3f | %.2f |\n", verify[i - 1], t * 1e3, t / base), fflush(stdout);
        }
    }
    if (spec) {
        realm_model *dm = NULL;
        if (draft_path &&
            realm_model_load(draft_path, &(realm_model_params){.repack = mp.repack}, &dm) < 0) {
            cli_error(CMD, "the draft model: %s", realm_last_error());
            json_decref(jr);
            goto done;
        }
        const cli_spec_opts so = {.draft = dm,
                                  .prompt = spec_prompt,
                                  .streams = spec_streams,
                                  .n_streams = n_spec_streams,
                                  .ntg = (int)par_tg,
                                  .draft_max = (int)cfg.draft_max,
                                  .temperature = (float)cfg.spec_temp,
                                  .threads = (int)threads,
                                  .reps = (int)reps,
                                  .batch_invariant = invariant};
        const int st = cli_bench_spec(b.m, &so, json ? jr : NULL);
        realm_model_free(dm);
        if (st != 0) {
            json_decref(jr);
            goto done;
        }
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
                                   .type_k = type_k,
                                   .type_v = type_v,
                                   .reps = (int)reps,
                                   .sets = b.sets,
                                   .n_sets = b.n_sets};
        if (cli_bench_serve(b.m, &so, json ? jr : NULL) != 0) {
            json_decref(jr);
            goto done;
        }
    }
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:i, s:s, s:s, s:i, s:o}", "model", path,
                              "arch", realm_arch_name(hp->arch), "weight_bytes",
                              (json_int_t)realm_model_weight_bytes(b.m), "packed_bytes",
                              (json_int_t)realm_model_packed_bytes(b.m), "threads", nt, "type_k",
                              cli_cache_types[cfg.cache_k], "type_v", cli_cache_types[cfg.cache_v],
                              "reps", (int)reps, "results", jr);
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
    free(b.set);
    realm_ctx_free(b.ctx);
    realm_kv_cache_free(b.kv);
    cli_lora_free(ads, la.n);
    realm_model_free(b.m);
    return rc;
}

static const char usage_head[] =
    "usage: realm bench -m MODEL.gguf [-p 512] [-n 128] [-d 0,1024,...] [-t THREADS]\n"
    "                   [-r REPS] [--batched 1,2,4,8,16] [--parallel 1,2,4,8,16]\n"
    "                   [--npp 128] [--ntg 64] [--batch 512] [--slice MS]\n"
    "                   [--prefix 1000] [--cache-type-k f16|q8_0] [--cache-type-v f16|q8_0]\n"
    "                   [--batch-invariant] [--json]\n"
    "                   [--rope-scaling none|linear|yarn] [--rope-freq-base N] ...\n"
    "                   [--lora FILE[:SCALE]]... [--lora-per-stream A,B,...]\n"
    "                   [--draft FILE | --lookup] [--draft-max K] [--spec-streams 1,8]\n"
    "                   [--spec-prompt TEXT] [--verify 2,4,8]\n"
    "\n"
    "pp: one prompt of -p random tokens (in batches of up to 512); tg: -n tokens\n"
    "generated one at a time (0 skips either). Both as tokens/s, median and\n"
    "standard deviation over -r repetitions (default 3), after a warm-up.\n"
    "-d: as llama-bench's depth, pp and tg run after that many tokens of context\n"
    "already in the KV cache (rows \"pp512 @ d1024\"; \"depth\" in JSON), once per\n"
    "listed depth. The context is computed once per depth, untimed, and each\n"
    "repetition starts from a copy-on-write fork of it. A depth beyond the\n"
    "model's context length is refused (the tests may run past it).\n"
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
    "--cache-type-k, --cache-type-v: everything above with keys and values of the\n"
    "KV cache in that type, as llama-bench's -ctk / -ctv (q8_0 needs a head size\n"
    "that is a multiple of 32).\n"
    "--batch-invariant: everything above with batch-invariant kernels (a token's\n"
    "logits bitwise the same alone or batched; see realm_ctx_params).\n"
    "--rope-*, --yarn-*: the model's RoPE overridden as llama.cpp's options of the\n"
    "same names do (realm help run).\n"
    "--lora: every test with these LoRA adapters on every sequence (unmerged).\n"
    "--lora-per-stream: in --batched and --parallel, sequence or client i uses\n"
    "adapter i mod the count (\"none\": the base model alone), all of them in the\n"
    "same forward passes; pp and tg use the first.\n"
    "--draft FILE, --lookup: speculative decoding through the engine, with a draft\n"
    "model or prompt lookup: for each --spec-streams count, that many streams of\n"
    "--spec-prompt generate --ntg greedy tokens at once, without and with\n"
    "speculation (alternating); end-to-end tokens/s and the acceptance rate.\n"
    "--verify K,...: the cost of verifying K drafted tokens in one pass (K + 1\n"
    "rows, all with logits) against one decode step, after --npp tokens.\n";
static char usage[16384];

/* main prints the usage before any command runs: build it before main. */
__attribute__((constructor)) static void make_usage(void)
{
    cli_opts_usage(usage, sizeof usage, usage_head, bench_opts, CLI_OPTS_N(bench_opts));
}

const cli_command cli_cmd_bench = {
    "bench",
    run_bench,
    "benchmark prompt processing, generation, batched decoding and serving",
    usage,
};
