/*
 * bench_registry — the model registry (realm/registry.h) under load, and the
 * prefix cache across the turns of a chat:
 *
 *     bench_registry MODEL_A MODEL_B [--reps N] [--switches N] [--rounds N] [--tokens N]
 *                    [--only load|switch|streams] [--json]
 *     bench_registry --hit-rate STORIES.gguf [--turns N] [--max-tokens N] [--show TEMPLATE]
 *                    [--json]
 *
 * With two models (two different files: a copy of one file under another
 * path is fine, and keeps the page-cache state of each honest):
 *
 *   load     MODEL_A, not yet loaded, from realm_registry_acquire until the
 *            first token of a 1-token greedy generation from the prompt
 *            "Hello" (BOS + 1 token on a llama vocabulary) comes back: the
 *            mapping, the engine, and a first forward pass that faults every
 *            weight in; and the acquire alone. "cold" after dropping the
 *            file's pages from the page cache with
 *            posix_fadvise(POSIX_FADV_DONTNEED) (after fdatasync; no root
 *            needed for clean pages, but pages some process still maps
 *            stay), "warm" with the file read into the cache first.
 *            "resident before" is the share of the file's pages in the page
 *            cache just before the acquire, from mincore(2) on a fresh
 *            mapping; "major faults" those of the process meanwhile.
 *            "first token, loaded" is a second 1-token generation on the
 *            loaded model: the compute part alone. --reps times each
 *            (default 5), alternating cold and warm.
 *   switch   a registry whose budget (mem_budget) fits either model but not
 *            both; requests alternate B, A, B, ... (--switches, default 10),
 *            each an acquire (which evicts the other, idle, model and loads
 *            this one; both files stay in the page cache) plus a 1-token
 *            generation, timed to its first token. Beside it the same
 *            alternation with a budget that fits both (nothing loaded).
 *   streams  one registry (shared pool of 2 threads, a budget that fits
 *            both): 8 concurrent greedy streams of --tokens (default 64)
 *            tokens on MODEL_A; 4 on MODEL_A + 4 on MODEL_B; 4 on MODEL_A
 *            alone. Each stream is a thread submitting to
 *            realm_model_ref_engine (ignore_eos, no prefix cache) and reading
 *            pieces; aggregate = generated tokens / wall time from the common
 *            start to the last end; per-stream rate = the median of
 *            realm_gen_result.tokens_per_s (after the first token); ratio =
 *            aggregate / that of 1 model x 8 in the same round; passes from
 *            the engines' statistics; CPU ms per token = the process's CPU
 *            time / tokens (what the load of other work does not change
 *            much). --rounds rounds (default 3), the order rotated.
 *   --only   runs one of the three.
 *
 * Every engine has n_ctx 4096 (a KV pool of 4096 tokens), so the memory a
 * model counts is its weights + 4096 tokens of KV + scratch.
 *
 * With --hit-rate: for every chat template Realm knows, a conversation of
 * --turns turns (default 5) through one engine on STORIES.gguf (its
 * llama-spm vocabulary has none of the templates' special tokens, so their
 * markers are tokenized as text; the prefix cache does not care). Each turn
 * renders the whole conversation with realm_chat_prompt_tokenize (the
 * previous replies appended as assistant messages holding the text the
 * engine generated), submits it (greedy, --max-tokens, default 48, tenant =
 * one per template so templates never share entries) and records
 * realm_gen_result.n_cached / n_prompt. Per template: the hit rate over
 * turns 2..N (sum cached / sum prompt); the most that a token-level cache
 * could have reused (the common prefix of this turn's prompt with the
 * previous turn's prompt + generated tokens); and where the first
 * difference falls (the tokens on both sides), which says what the
 * template re-renders differently. --show TEMPLATE prints that template's
 * rendered prompts (realm_chat_render).
 *
 * Timings use a shared, noisy machine: each table gives the 1-minute load
 * average (/proc/loadavg) when it was measured; figures are medians.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock_internal.h"
#include "realm/chat.h"
#include "realm/engine.h"
#include "realm/error.h"
#include "realm/log.h"
#include "realm/model.h"
#include "realm/registry.h"
#include "realm/tokenizer.h"

#define N_CTX 4096

static bool g_json;
static bool g_do_load = true, g_do_switch = true, g_do_streams = true;

static double loadavg1(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    if (n <= 0)
        return 0;
    double *s = malloc(sizeof *s * (size_t)n);
    if (!s)
        return 0;
    memcpy(s, v, sizeof *s * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    const double m = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    free(s);
    return m;
}

static double minimum(const double *v, int n)
{
    double m = n > 0 ? v[0] : 0;
    for (int i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

static double maximum(const double *v, int n)
{
    double m = n > 0 ? v[0] : 0;
    for (int i = 1; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

/* Major page faults of this process so far (pages read from disk). */
static long major_faults(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_majflt : -1;
}

/* CPU seconds this process has used (all threads). */
static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_registry: %s: %s\n", what, realm_last_error());
    exit(1);
}

/* ---- page cache ------------------------------------------------------------------- */

/* Share of path's pages in the page cache (mincore on a fresh mapping, which
 * faults nothing in); < 0 on error. */
static double resident_share(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size == 0) {
        close(fd);
        return -1;
    }
    const size_t size = (size_t)st.st_size, page = (size_t)sysconf(_SC_PAGESIZE);
    void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return -1;
    const size_t n = (size + page - 1) / page;
    unsigned char *vec = malloc(n);
    double share = -1;
    if (vec && mincore(map, size, vec) == 0) {
        size_t in = 0;
        for (size_t i = 0; i < n; i++)
            in += vec[i] & 1;
        share = (double)in / (double)n;
    }
    free(vec);
    munmap(map, size);
    return share;
}

/* Drop path's clean pages from the page cache (written back first). */
static int drop_cache(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fdatasync(fd);
    if (rc == 0)
        rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    return rc;
}

/* Read the whole file so it is in the page cache. */
static void warm_cache(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    static char buf[1 << 20];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
}

/* ---- generation helpers ------------------------------------------------------------ */

static realm_token *tokenize_text(const realm_tokenizer *tok, const char *text, int32_t *n)
{
    realm_token *ids = NULL;
    realm_chat_prompt p = {.text = text, .text_len = strlen(text)};
    if (realm_chat_prompt_tokenize(tok, &p, &ids, n) < 0)
        die("tokenize");
    return ids;
}

/* Submit a greedy 1-token request; block until its first token; drain. */
static void first_token(realm_engine *e, const realm_token *ids, int32_t n)
{
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = 1;
    o.sampling.temperature = 0;
    o.sampling.seed = 1;
    o.ignore_eos = true;
    o.no_prefix_cache = true;
    realm_gen *g;
    if (realm_engine_submit(e, &(realm_gen_request){.prompt = ids, .n_prompt = n, .options = &o},
                            &g) < 0)
        die("submit");
    realm_gen_piece pc;
    int rc;
    bool got = false;
    while (!got && (rc = realm_gen_next(g, &pc, -1)) > 0)
        got = pc.token != REALM_TOKEN_NULL;
    realm_gen_result res;
    realm_gen_wait(g);
    realm_gen_result_get(g, &res);
    if (!got || res.finish == REALM_FINISH_ERROR) {
        fprintf(stderr, "bench_registry: no first token (%s)\n", res.message);
        exit(1);
    }
    realm_gen_free(g);
}

static realm_registry *new_registry(uint64_t budget)
{
    realm_registry_params p;
    realm_registry_params_init(&p);
    p.n_threads = 2;
    p.mem_budget = budget;
    p.engine.n_ctx = N_CTX;
    realm_registry *r;
    if (realm_registry_new(&p, &r) < 0)
        die("registry");
    return r;
}

static realm_model_ref *acquire(realm_registry *r, const char *name)
{
    realm_model_ref *ref;
    if (realm_registry_acquire(r, name, strlen(name), NULL, &ref) < 0)
        die(name);
    return ref;
}

static int n_loaded(realm_registry *r)
{
    realm_model_status *st;
    int32_t n;
    int k = 0;
    if (realm_registry_list(r, &st, &n) < 0)
        return -1;
    for (int32_t i = 0; i < n; i++)
        k += st[i].loaded;
    free(st);
    return k;
}

/* ---- (a) load ----------------------------------------------------------------------- */

typedef struct {
    double acquire_ms[64], first_ms[64], steady_ms[64], resident[64], load[64], majflt[64];
    int n;
} load_runs;

static load_runs g_cold, g_warm;
static const char *g_path_a, *g_path_b;
static uint64_t g_need_a, g_need_b;
static realm_token *g_ids;
static int32_t g_n_ids;

/* Sizes, the first-token prompt's ids (same vocabulary for both), pages faulted in. */
static void probe(void)
{
    realm_registry *r = new_registry(16ull << 30);
    if (realm_registry_add(r, "A", g_path_a, NULL) < 0 ||
        realm_registry_add(r, "B", g_path_b, NULL) < 0)
        die("add");
    realm_model_ref *ref = acquire(r, "A");
    g_need_a = realm_registry_used(r);
    g_ids = tokenize_text(realm_engine_tokenizer(realm_model_ref_engine(ref)), "Hello",
                          &g_n_ids); /* BOS + 1 token: the pass reads
                                        every weight, computes little */
    first_token(realm_model_ref_engine(ref), g_ids, g_n_ids);
    realm_model_ref *rb = acquire(r, "B");
    g_need_b = realm_registry_used(r) - g_need_a;
    first_token(realm_model_ref_engine(rb), g_ids, g_n_ids);
    realm_registry_release(rb);
    realm_registry_release(ref);
    realm_registry_free(r);
}

static void bench_load(int reps)
{
    const char *path_a = g_path_a;
    realm_model_ref *ref;
    realm_registry *r = new_registry(16ull << 30);
    if (realm_registry_add(r, "A", path_a, NULL) < 0)
        die("add");

    for (int i = 0; i < 2 * reps && i < 128; i++) {
        const bool cold = i % 2 == 0;
        load_runs *lr = cold ? &g_cold : &g_warm;
        if (cold) {
            if (drop_cache(path_a) != 0)
                fprintf(stderr, "bench_registry: posix_fadvise failed\n");
        } else {
            warm_cache(path_a);
        }
        const int k = lr->n++;
        lr->resident[k] = resident_share(path_a);
        lr->load[k] = loadavg1();
        const long f0 = major_faults();
        const double t0 = realm__now();
        ref = acquire(r, "A");
        const double t1 = realm__now();
        first_token(realm_model_ref_engine(ref), g_ids, g_n_ids);
        const double t2 = realm__now();
        lr->majflt[k] = (double)(major_faults() - f0);
        first_token(realm_model_ref_engine(ref), g_ids, g_n_ids);
        const double t3 = realm__now();
        realm_registry_release(ref);
        if (realm_registry_unload(r, "A") < 0)
            die("unload");
        lr->acquire_ms[k] = (t1 - t0) * 1e3;
        lr->first_ms[k] = (t2 - t0) * 1e3;
        lr->steady_ms[k] = (t3 - t2) * 1e3;
        fprintf(stderr,
                "  load %s: resident %.1f%%, acquire %.1f ms, to first token %.1f ms "
                "(%.0f major faults), loaded first token %.1f ms (load %.2f)\n",
                cold ? "cold" : "warm", lr->resident[k] * 100, lr->acquire_ms[k], lr->first_ms[k],
                lr->majflt[k], lr->steady_ms[k], lr->load[k]);
    }
    realm_registry_free(r);
}

/* ---- (b) switching -------------------------------------------------------------------- */

static double g_switch_ms[256], g_switch_acq_ms[256], g_hit_ms[256], g_switch_majflt;
static int g_n_switch;
static double g_switch_load[2];
static uint64_t g_switch_budget;
static bool g_switch_evicted = true;

static void bench_switch(int switches)
{
    const uint64_t big = g_need_a > g_need_b ? g_need_a : g_need_b;
    const uint64_t small = g_need_a > g_need_b ? g_need_b : g_need_a;
    g_switch_budget = big + small / 2;
    if (switches > 256)
        switches = 256;
    g_n_switch = switches;
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: one fits; pass 1: both fit (no switching cost but the request) */
        realm_registry *r = new_registry(pass == 0 ? g_switch_budget : 16ull << 30);
        if (realm_registry_add(r, "A", g_path_a, NULL) < 0 ||
            realm_registry_add(r, "B", g_path_b, NULL) < 0)
            die("add");
        realm_model_ref *ref = acquire(r, "A");
        first_token(realm_model_ref_engine(ref), g_ids, g_n_ids);
        realm_registry_release(ref);
        if (pass == 1) {
            ref = acquire(r, "B");
            first_token(realm_model_ref_engine(ref), g_ids, g_n_ids);
            realm_registry_release(ref);
        }
        g_switch_load[pass] = loadavg1();
        for (int i = 0; i < switches; i++) {
            const char *name = i % 2 == 0 ? "B" : "A";
            const long f0 = major_faults();
            const double t0 = realm__now();
            ref = acquire(r, name);
            const double t1 = realm__now();
            first_token(realm_model_ref_engine(ref), g_ids, g_n_ids);
            const double t2 = realm__now();
            realm_registry_release(ref);
            const int loaded = n_loaded(r);
            if (pass == 0) {
                g_switch_majflt += (double)(major_faults() - f0);
                g_switch_ms[i] = (t2 - t0) * 1e3;
                g_switch_acq_ms[i] = (t1 - t0) * 1e3;
                if (loaded != 1)
                    g_switch_evicted = false;
            } else {
                g_hit_ms[i] = (t2 - t0) * 1e3;
            }
            fprintf(stderr, "  %s -> %s: %.1f ms (acquire %.1f ms), %d loaded\n",
                    pass == 0 ? "switch" : "both fit", name, (t2 - t0) * 1e3, (t1 - t0) * 1e3,
                    loaded);
        }
        realm_registry_free(r);
    }
}

/* ---- (c) concurrent streams ----------------------------------------------------------- */

typedef struct {
    realm_engine *e;
    const realm_token *ids;
    int32_t n;
    int32_t max_tokens;
    pthread_barrier_t *bar;
    double t_end, tps;
    int32_t n_gen;
} stream_arg;

static void *stream_main(void *p)
{
    stream_arg *a = p;
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = a->max_tokens;
    o.sampling.temperature = 0;
    o.sampling.seed = 1;
    o.ignore_eos = true;
    o.no_prefix_cache = true;
    pthread_barrier_wait(a->bar);
    realm_gen *g;
    if (realm_engine_submit(
            a->e, &(realm_gen_request){.prompt = a->ids, .n_prompt = a->n, .options = &o}, &g) < 0)
        die("submit");
    realm_gen_piece pc;
    int32_t n = 0;
    while (realm_gen_next(g, &pc, -1) > 0)
        n += pc.token != REALM_TOKEN_NULL;
    a->t_end = realm__now();
    realm_gen_result res;
    realm_gen_result_get(g, &res);
    a->n_gen = res.n_completion;
    a->tps = res.tokens_per_s;
    if (res.finish == REALM_FINISH_ERROR || n != res.n_completion)
        fprintf(stderr, "bench_registry: stream ended badly: %s\n", res.message);
    realm_gen_free(g);
    return NULL;
}

#define N_CONFIGS 3
static const char *const g_config_name[N_CONFIGS] = {"1 model x 8 streams", "2 models x 4 streams",
                                                     "1 model x 4 streams"};
static double g_agg[N_CONFIGS][16], g_rate[N_CONFIGS][16], g_rate_min[N_CONFIGS][16],
    g_wall[N_CONFIGS][16], g_rows[N_CONFIGS][16], g_cload[N_CONFIGS][16],
    g_ratio[N_CONFIGS][16],   /* aggregate / that of 1 model x 8 in the same round */
    g_cpu_ms[N_CONFIGS][16],  /* CPU time of the process per generated token */
    g_pass_ms[N_CONFIGS][16]; /* wall time per forward pass (of either model) */
static int g_n_rounds;

static void stats_of(realm_engine *e, uint64_t *steps, uint64_t *gen)
{
    realm_engine_stats st;
    realm_engine_get_stats(e, &st);
    *steps = st.steps;
    *gen = st.tokens_generated;
}

static void run_streams(realm_engine *ea, realm_engine *eb, int n_a, int n_b, int32_t max_tokens,
                        realm_token **prompts, const int32_t *n_prompts, int cfg, int round)
{
    const int n = n_a + n_b;
    stream_arg args[16];
    pthread_t th[16];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)n + 1);
    uint64_t s0a, g0a, s0b = 0, g0b = 0, s1a, g1a, s1b = 0, g1b = 0;
    stats_of(ea, &s0a, &g0a);
    if (eb)
        stats_of(eb, &s0b, &g0b);
    const double load = loadavg1(), cpu0 = cpu_seconds();
    for (int i = 0; i < n; i++) {
        args[i] = (stream_arg){.e = i < n_a ? ea : eb,
                               .ids = prompts[i],
                               .n = n_prompts[i],
                               .max_tokens = max_tokens,
                               .bar = &bar};
        pthread_create(&th[i], NULL, stream_main, &args[i]);
    }
    pthread_barrier_wait(&bar);
    const double t0 = realm__now();
    double t_end = t0, rates[16];
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        t_end = args[i].t_end > t_end ? args[i].t_end : t_end;
        total += args[i].n_gen;
        rates[i] = args[i].tps;
    }
    pthread_barrier_destroy(&bar);
    g_cpu_ms[cfg][round] = total ? (cpu_seconds() - cpu0) * 1e3 / (double)total : 0;
    stats_of(ea, &s1a, &g1a);
    if (eb)
        stats_of(eb, &s1b, &g1b);
    const double wall = t_end - t0;
    const uint64_t steps = (s1a - s0a) + (s1b - s0b), gen = (g1a - g0a) + (g1b - g0b);
    g_agg[cfg][round] = (double)total / wall;
    g_rate[cfg][round] = median(rates, n);
    g_rate_min[cfg][round] = minimum(rates, n);
    g_wall[cfg][round] = wall;
    g_rows[cfg][round] = steps ? (double)gen / (double)steps : 0;
    g_pass_ms[cfg][round] = steps ? wall * 1e3 / (double)steps : 0;
    g_cload[cfg][round] = load;
    fprintf(stderr,
            "  %s, round %d: %lld tokens in %.2f s = %.1f tok/s; per stream median %.1f tok/s "
            "(min %.1f, max %.1f); %llu passes, %.2f decode rows per pass; %.0f CPU ms per token "
            "(load %.2f)\n",
            g_config_name[cfg], round + 1, (long long)total, wall, g_agg[cfg][round],
            g_rate[cfg][round], g_rate_min[cfg][round], maximum(rates, n),
            (unsigned long long)steps, g_rows[cfg][round], g_cpu_ms[cfg][round], load);
}

static void bench_streams(int rounds, int32_t max_tokens)
{
    static const char *const texts[8] = {
        "The history of the city begins with a small fishing village on the river",
        "To make bread at home you need flour, water, salt and",
        "In a distant galaxy, the crew of the starship woke up to",
        "The main advantages of renewable energy sources are",
        "Once upon a time, a young fox lived at the edge of a forest",
        "Here is a short summary of the rules of chess:",
        "The quick brown fox jumps over the lazy dog, and then",
        "Dear committee, I am writing to apply for the position of",
    };
    realm_registry *r = new_registry(16ull << 30);
    if (realm_registry_add(r, "A", g_path_a, NULL) < 0 ||
        realm_registry_add(r, "B", g_path_b, NULL) < 0)
        die("add");
    realm_model_ref *ra = acquire(r, "A"), *rb = acquire(r, "B");
    realm_engine *ea = realm_model_ref_engine(ra), *eb = realm_model_ref_engine(rb);
    first_token(ea, g_ids, g_n_ids);
    first_token(eb, g_ids, g_n_ids);
    realm_token *prompts[8];
    int32_t n_prompts[8];
    for (int i = 0; i < 8; i++)
        prompts[i] = tokenize_text(realm_engine_tokenizer(ea), texts[i], &n_prompts[i]);
    if (rounds > 16)
        rounds = 16;
    g_n_rounds = rounds;
    for (int round = 0; round < rounds; round++) {
        for (int k = 0; k < N_CONFIGS; k++) {
            const int cfg = (k + round) % N_CONFIGS; /* rotate the order */
            if (cfg == 0)
                run_streams(ea, NULL, 8, 0, max_tokens, prompts, n_prompts, cfg, round);
            else if (cfg == 1)
                run_streams(ea, eb, 4, 4, max_tokens, prompts, n_prompts, cfg, round);
            else
                run_streams(ea, NULL, 4, 0, max_tokens, prompts, n_prompts, cfg, round);
        }
        for (int c = 0; c < N_CONFIGS; c++)
            g_ratio[c][round] = g_agg[c][round] / g_agg[0][round];
    }
    for (int i = 0; i < 8; i++)
        free(prompts[i]);
    realm_registry_release(ra);
    realm_registry_release(rb);
    realm_registry_free(r);
}

/* ---- (d) prefix-cache hit rate per chat template ---------------------------------------- */

#define MAX_TURNS 8

typedef struct {
    const char *name;
    char error[200];
    int turns;
    int32_t n_prompt[MAX_TURNS], n_cached[MAX_TURNS], n_gen[MAX_TURNS];
    int32_t lcp[MAX_TURNS];      /* common prefix with the previous turn's prompt + output */
    int32_t prev_len[MAX_TURNS]; /* the previous turn's prompt + output */
    realm_finish finish[MAX_TURNS];
    char where[MAX_TURNS][400]; /* the first difference, as token texts */
} hit_row;

static hit_row g_hits[REALM_CHAT_TEMPLATE_COUNT];

static int32_t common_prefix(const realm_token *a, int32_t na, const realm_token *b, int32_t nb)
{
    int32_t i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    return i;
}

/* Token texts ids[from..to) into out, escaped, '|' between tokens. */
static void token_texts(const realm_tokenizer *tok, const realm_token *ids, int32_t n, int32_t from,
                        int32_t to, char *out, size_t cap)
{
    size_t at = 0;
    out[0] = '\0';
    if (from < 0)
        from = 0;
    for (int32_t i = from; i < to && at + 16 < cap; i++) {
        if (i >= n) {
            at += (size_t)snprintf(out + at, cap - at, "%s(end)", i > from ? "|" : "");
            break;
        }
        size_t len;
        const char *t = realm_token_text(tok, ids[i], &len);
        if (i > from)
            out[at++] = '|';
        for (size_t j = 0; j < len && at + 8 < cap; j++) {
            const unsigned char c = (unsigned char)t[j];
            if (c == '\n')
                at += (size_t)snprintf(out + at, cap - at, "\\n");
            else if (c == '|')
                at += (size_t)snprintf(out + at, cap - at, "\\|");
            else if (c == '`')
                at += (size_t)snprintf(out + at, cap - at, "'");
            else
                out[at++] = (char)c;
        }
        out[at] = '\0';
    }
}

static void bench_hit_rate(const char *path, int turns, int32_t max_tokens, const char *show)
{
    static const char *const system_msg = "You are a helpful assistant who tells short stories.";
    static const char *const users[MAX_TURNS] = {
        "Tell me a story about a cat.",
        "What happened next?",
        "Why was the cat sad?",
        "Can you make it funnier?",
        "How does the story end?",
        "Tell me another one.",
        "Who was the hero?",
        "Thank you!",
    };
    realm_model *m;
    if (realm_model_load(path, NULL, &m) < 0)
        die(path);
    realm_engine *e;
    if (realm_engine_new(m, &(realm_engine_params){.n_threads = 2}, &e) < 0)
        die("engine");
    const realm_tokenizer *tok = realm_engine_tokenizer(e);
    char bos[256], eos[256];
    if (realm_chat_special_texts(realm_model_gguf(m), bos, sizeof bos, eos, sizeof eos) < 0)
        die("special texts");
    for (int t = 0; t < REALM_CHAT_TEMPLATE_COUNT; t++) {
        hit_row *h = &g_hits[t];
        h->name = realm_chat_template_name((realm_chat_template)t);
        h->turns = turns;
        realm_chat_message msgs[1 + 2 * MAX_TURNS];
        char *replies[MAX_TURNS] = {0};
        size_t n_msgs = 0;
        msgs[n_msgs++] = (realm_chat_message){REALM_CHAT_SYSTEM, system_msg};
        realm_token *prev = NULL;
        int32_t n_prev = 0;
        const bool showing = show && strcmp(show, h->name) == 0;
        for (int k = 0; k < turns; k++) {
            msgs[n_msgs++] = (realm_chat_message){REALM_CHAT_USER, users[k]};
            realm_chat_prompt cp = {
                .messages = msgs, .n_messages = n_msgs, .tmpl = (realm_chat_template)t};
            realm_token *ids;
            int32_t n;
            if (realm_chat_prompt_tokenize(tok, &cp, &ids, &n) < 0) {
                snprintf(h->error, sizeof h->error, "turn %d: %s", k + 1, realm_last_error());
                h->turns = k;
                break;
            }
            if (showing) {
                char *text;
                if (realm_chat_render_alloc((realm_chat_template)t, msgs, n_msgs, true, bos, eos,
                                            &text, NULL) == 0) {
                    printf("---- %s, turn %d prompt (realm_chat_render, %d tokens):\n%s\n", h->name,
                           k + 1, n, text);
                    free(text);
                }
            }
            realm_gen_options o;
            realm_gen_options_init(&o);
            o.max_tokens = max_tokens;
            o.sampling.temperature = 0;
            o.sampling.seed = 1;
            realm_gen *g;
            if (realm_engine_submit(
                    e,
                    &(realm_gen_request){
                        .prompt = ids, .n_prompt = n, .tenant = (uint32_t)t + 1, .options = &o},
                    &g) < 0)
                die("submit");
            size_t cap = 256, len = 0;
            char *text = malloc(cap);
            realm_token *seq = malloc(sizeof *seq * (size_t)(n + max_tokens + 1));
            if (!text || !seq)
                die("out of memory");
            memcpy(seq, ids, sizeof *seq * (size_t)n);
            int32_t n_seq = n;
            realm_gen_piece pc;
            while (realm_gen_next(g, &pc, -1) > 0) {
                if (pc.token != REALM_TOKEN_NULL)
                    seq[n_seq++] = pc.token;
                if (len + pc.len + 1 > cap) {
                    cap = (len + pc.len + 1) * 2;
                    char *bigger = realloc(text, cap);
                    if (!bigger)
                        die("out of memory");
                    text = bigger;
                }
                memcpy(text + len, pc.text, pc.len);
                len += pc.len;
            }
            text[len] = '\0';
            realm_gen_result res;
            realm_gen_result_get(g, &res);
            realm_gen_free(g);
            h->n_prompt[k] = res.n_prompt;
            h->n_cached[k] = res.n_cached;
            h->n_gen[k] = res.n_completion;
            h->finish[k] = res.finish;
            if (k > 0) {
                const int32_t i = common_prefix(prev, n_prev, ids, n);
                h->lcp[k] = i;
                h->prev_len[k] = n_prev;
                char a[160], b[160];
                token_texts(tok, prev, n_prev, i - 3, i + 4, a, sizeof a);
                token_texts(tok, ids, n, i - 3, i + 4, b, sizeof b);
                snprintf(h->where[k], sizeof h->where[k], "at %d of %d: was `%s`, now `%s`", i,
                         n_prev, a, b);
            }
            if (showing) {
                char *d = malloc((size_t)n_seq * 64 + 1);
                const int32_t dn = d ? realm_detokenize(tok, seq, n_seq, REALM_DETOK_RENDER_SPECIAL,
                                                        d, (size_t)n_seq * 64)
                                     : -1;
                if (dn >= 0)
                    printf("---- %s, turn %d prompt + output as the cache holds it (%d tokens, "
                           "%d cached, finish %s):\n%.*s\n---- reply text: \"%s\"\n",
                           h->name, k + 1, n_seq, res.n_cached, realm_finish_name(res.finish),
                           (int)dn, d, text);
                free(d);
            }
            free(prev);
            prev = seq;
            n_prev = n_seq;
            free(ids);
            replies[k] = text;
            msgs[n_msgs++] = (realm_chat_message){REALM_CHAT_ASSISTANT, text};
        }
        free(prev);
        for (int k = 0; k < MAX_TURNS; k++)
            free(replies[k]);
        fprintf(stderr, "  %s done\n", h->name);
    }
    realm_engine_free(e);
    realm_model_free(m);
}

/* ---- output ------------------------------------------------------------------------------ */

static void print_registry(int reps, int switches, int32_t tokens)
{
    const load_runs *lr[2] = {&g_cold, &g_warm};
    static const char *const mode[2] = {"cold", "warm"};
    if (g_json) {
        printf("{\"model_a\":\"%s\",\"model_b\":\"%s\",\"need_a\":%llu,\"need_b\":%llu,\"load\":[",
               g_path_a, g_path_b, (unsigned long long)g_need_a, (unsigned long long)g_need_b);
        for (int m = 0; m < 2 && g_do_load; m++)
            printf(
                "%s{\"mode\":\"%s\",\"runs\":%d,\"resident\":%.4f,\"acquire_ms\":%.2f,"
                "\"to_first_token_ms\":%.2f,\"loaded_first_token_ms\":%.2f,\"major_faults\":%.0f,"
                "\"loadavg\":%.2f}",
                m ? "," : "", mode[m], lr[m]->n, median(lr[m]->resident, lr[m]->n),
                median(lr[m]->acquire_ms, lr[m]->n), median(lr[m]->first_ms, lr[m]->n),
                median(lr[m]->steady_ms, lr[m]->n), median(lr[m]->majflt, lr[m]->n),
                median(lr[m]->load, lr[m]->n));
        printf("],\"switch\":{\"measured\":%s,\"budget\":%llu,\"switches\":%d,\"evicted_every_"
               "time\":%s,"
               "\"median_ms\":%.2f,\"acquire_median_ms\":%.2f,\"both_fit_median_ms\":%.2f,"
               "\"loadavg\":[%.2f,%.2f]},\"streams\":[",
               g_do_switch ? "true" : "false", (unsigned long long)g_switch_budget, g_n_switch,
               g_switch_evicted ? "true" : "false", median(g_switch_ms, g_n_switch),
               median(g_switch_acq_ms, g_n_switch), median(g_hit_ms, g_n_switch), g_switch_load[0],
               g_switch_load[1]);
        for (int c = 0; c < N_CONFIGS && g_do_streams; c++)
            printf("%s{\"config\":\"%s\",\"rounds\":%d,\"tokens_per_stream\":%d,"
                   "\"aggregate_tok_s\":%.2f,\"stream_tok_s\":%.2f,\"wall_s\":%.3f,"
                   "\"rows_per_pass\":%.2f,\"ms_per_pass\":%.1f,\"ratio_to_1x8\":%.3f,\"cpu_ms_per_"
                   "token\":%.1f,"
                   "\"loadavg\":%.2f}",
                   c ? "," : "", g_config_name[c], g_n_rounds, tokens, median(g_agg[c], g_n_rounds),
                   median(g_rate[c], g_n_rounds), median(g_wall[c], g_n_rounds),
                   median(g_rows[c], g_n_rounds), median(g_pass_ms[c], g_n_rounds),
                   median(g_ratio[c], g_n_rounds), median(g_cpu_ms[c], g_n_rounds),
                   median(g_cload[c], g_n_rounds));
        printf("]}\n");
        return;
    }
    printf("MODEL_A %s (%.1f MiB counted: weights + KV of %d tokens + scratch)\n"
           "MODEL_B %s (%.1f MiB counted)\n\n",
           g_path_a, (double)g_need_a / 1048576, N_CTX, g_path_b, (double)g_need_b / 1048576);
    if (g_do_load) {
        printf("load of MODEL_A (first token of a %d-token prompt), median of %d each (min..max):"
               "\n\n| page cache | resident before | acquire ms | acquire + first token ms | major "
               "faults | first token, loaded ms | load avg |\n"
               "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
               g_n_ids, reps);
        for (int m = 0; m < 2; m++)
            printf("| %s | %.1f%% | %.1f | %.0f (%.0f..%.0f) | %.0f | %.0f (%.0f..%.0f) | %.2f |\n",
                   mode[m], median(lr[m]->resident, lr[m]->n) * 100,
                   median(lr[m]->acquire_ms, lr[m]->n), median(lr[m]->first_ms, lr[m]->n),
                   minimum(lr[m]->first_ms, lr[m]->n), maximum(lr[m]->first_ms, lr[m]->n),
                   median(lr[m]->majflt, lr[m]->n), median(lr[m]->steady_ms, lr[m]->n),
                   minimum(lr[m]->steady_ms, lr[m]->n), maximum(lr[m]->steady_ms, lr[m]->n),
                   median(lr[m]->load, lr[m]->n));
        printf("\n");
    }
    if (g_do_switch) {
        printf("switching A, B, A, ... (%d requests), budget %.1f MiB (fits one; evicted every "
               "time: %s; %.0f major faults in all):\n\n| budget | per request ms (median) | min | "
               "max | of which acquire ms | "
               "load avg |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
               g_n_switch, (double)g_switch_budget / 1048576, g_switch_evicted ? "yes" : "NO",
               g_switch_majflt);
        printf("| fits one: evict + load + first token | %.1f | %.1f | %.1f | %.1f | %.2f |\n",
               median(g_switch_ms, g_n_switch), minimum(g_switch_ms, g_n_switch),
               maximum(g_switch_ms, g_n_switch), median(g_switch_acq_ms, g_n_switch),
               g_switch_load[0]);
        printf("| fits both: first token only | %.1f | %.1f | %.1f | - | %.2f |\n",
               median(g_hit_ms, g_n_switch), minimum(g_hit_ms, g_n_switch),
               maximum(g_hit_ms, g_n_switch), g_switch_load[1]);
        printf("\n");
    }
    if (!g_do_streams)
        return;
    printf("concurrent greedy streams of %d tokens, shared pool of 2 threads, median of %d "
           "rounds (aggregate: min..max; ratio: to 1 model x 8 in the same round):\n\n| streams | "
           "aggregate tok/s | ratio | per-stream tok/s | wall s | passes: rows each, ms each | CPU "
           "ms per token | load avg |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
           tokens, g_n_rounds);
    for (int c = 0; c < N_CONFIGS; c++)
        printf("| %s | %.1f (%.1f..%.1f) | %.2f | %.2f | %.2f | %.2f, %.0f | %.1f | %.2f |\n",
               g_config_name[c], median(g_agg[c], g_n_rounds), minimum(g_agg[c], g_n_rounds),
               maximum(g_agg[c], g_n_rounds), median(g_ratio[c], g_n_rounds),
               median(g_rate[c], g_n_rounds), median(g_wall[c], g_n_rounds),
               median(g_rows[c], g_n_rounds), median(g_pass_ms[c], g_n_rounds),
               median(g_cpu_ms[c], g_n_rounds), median(g_cload[c], g_n_rounds));
}

static void print_hits(int turns, int32_t max_tokens)
{
    if (g_json) {
        printf("{\"turns\":%d,\"max_tokens\":%d,\"templates\":[", turns, max_tokens);
        for (int t = 0; t < REALM_CHAT_TEMPLATE_COUNT; t++) {
            const hit_row *h = &g_hits[t];
            printf("%s{\"template\":\"%s\",\"error\":\"%s\",\"turns\":[", t ? "," : "", h->name,
                   h->error);
            for (int k = 0; k < h->turns; k++)
                printf("%s{\"n_prompt\":%d,\"n_cached\":%d,\"n_gen\":%d,\"finish\":\"%s\","
                       "\"common_prefix\":%d,\"prev_len\":%d}",
                       k ? "," : "", h->n_prompt[k], h->n_cached[k], h->n_gen[k],
                       realm_finish_name(h->finish[k]), h->lcp[k], h->prev_len[k]);
            printf("]}");
        }
        printf("]}\n");
        return;
    }
    printf("prefix cache over a %d-turn conversation (greedy, at most %d tokens a reply), turns "
           "2..%d:\n\n| template | prompt tokens | cached | hit rate | common prefix with the "
           "previous turn | of the previous turn's tokens | cached per turn (of prompt) | "
           "finish |\n| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |\n",
           turns, max_tokens, turns);
    for (int t = 0; t < REALM_CHAT_TEMPLATE_COUNT; t++) {
        const hit_row *h = &g_hits[t];
        if (h->error[0]) {
            printf("| %s | error: %s |||||||\n", h->name, h->error);
            continue;
        }
        long sp = 0, sc = 0, sl = 0, spl = 0;
        char per[256] = "", fin[128] = "";
        size_t at = 0, af = 0;
        for (int k = 0; k < h->turns; k++) {
            af += (size_t)snprintf(fin + af, sizeof fin - af, "%s%c", k ? " " : "",
                                   h->finish[k] == REALM_FINISH_STOP ? 's' : 'l');
            if (k == 0)
                continue;
            sp += h->n_prompt[k], sc += h->n_cached[k], sl += h->lcp[k], spl += h->prev_len[k];
            at += (size_t)snprintf(per + at, sizeof per - at, "%s%d/%d", k > 1 ? ", " : "",
                                   h->n_cached[k], h->n_prompt[k]);
        }
        printf("| %s | %ld | %ld | %.1f%% | %ld (%.1f%%) | %.1f%% | %s | %s |\n", h->name, sp, sc,
               sp ? 100.0 * (double)sc / (double)sp : 0, sl,
               sp ? 100.0 * (double)sl / (double)sp : 0, spl ? 100.0 * (double)sl / (double)spl : 0,
               per, fin);
    }
    printf("\nwhere each template's prompt first differs from the previous turn's prompt + "
           "output (token texts; the first token after the common prefix is the 4th; was = the "
           "previous turn, now = this one):\n\n");
    for (int t = 0; t < REALM_CHAT_TEMPLATE_COUNT; t++) {
        const hit_row *h = &g_hits[t];
        for (int k = 1; k < h->turns; k++)
            printf("- %s, turn %d: %s\n", h->name, k + 1, h->where[k]);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_registry MODEL_A MODEL_B [--reps N] [--switches N] [--rounds N] "
                    "[--tokens N] [--only load|switch|streams] [--json]\n"
                    "       bench_registry --hit-rate STORIES.gguf [--turns N] [--max-tokens N] "
                    "[--show TEMPLATE] [--json]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *pos[2] = {0}, *hit = NULL, *show = NULL;
    int n_pos = 0, reps = 5, switches = 10, rounds = 3, turns = 5;
    int32_t tokens = 64, max_tokens = 48;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool more = i + 1 < argc;
        if (!strcmp(a, "--json"))
            g_json = true;
        else if (!strcmp(a, "--hit-rate") && more)
            hit = argv[++i];
        else if (!strcmp(a, "--show") && more)
            show = argv[++i];
        else if (!strcmp(a, "--reps") && more)
            reps = atoi(argv[++i]);
        else if (!strcmp(a, "--rounds") && more)
            rounds = atoi(argv[++i]);
        else if (!strcmp(a, "--switches") && more)
            switches = atoi(argv[++i]);
        else if (!strcmp(a, "--tokens") && more)
            tokens = atoi(argv[++i]);
        else if (!strcmp(a, "--turns") && more)
            turns = atoi(argv[++i]);
        else if (!strcmp(a, "--only") && more) {
            const char *w = argv[++i];
            g_do_load = !strcmp(w, "load");
            g_do_switch = !strcmp(w, "switch");
            g_do_streams = !strcmp(w, "streams");
            if (!g_do_load && !g_do_switch && !g_do_streams)
                usage();
        } else if (!strcmp(a, "--max-tokens") && more)
            max_tokens = atoi(argv[++i]);
        else if (a[0] != '-' && n_pos < 2)
            pos[n_pos++] = a;
        else
            usage();
    }
    realm_log_set_level(REALM_LOG_WARN);
    if (hit) {
        if (n_pos || turns < 2 || turns > MAX_TURNS || max_tokens < 1)
            usage();
        bench_hit_rate(hit, turns, max_tokens, show);
        print_hits(turns, max_tokens);
        return 0;
    }
    if (n_pos != 2 || reps < 1 || reps > 64 || switches < 2 || rounds < 1 || tokens < 1)
        usage();
    if (!strcmp(pos[0], pos[1])) {
        fprintf(stderr, "bench_registry: MODEL_A and MODEL_B must be two files\n");
        return 2;
    }
    g_path_a = pos[0];
    g_path_b = pos[1];
    probe();
    if (g_do_load) {
        fprintf(stderr, "load ...\n");
        bench_load(reps);
    }
    if (g_do_switch) {
        fprintf(stderr, "switch ...\n");
        bench_switch(switches);
    }
    if (g_do_streams) {
        fprintf(stderr, "streams ...\n");
        bench_streams(rounds, tokens);
    }
    print_registry(reps, switches, tokens);
    return 0;
}
