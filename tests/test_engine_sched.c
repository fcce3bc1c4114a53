/*
 * The engine's scheduler (realm/engine.h) on stories260K, counted in steps
 * (manual stepping, deterministic):
 *  - fairness: tenant A submits 32 requests, then tenant B one; B's first
 *    token comes within 2x the steps it takes alone; a tenant at its
 *    concurrency limit waits while another tenant's request is admitted; a
 *    tenant's KV-block limit holds; priority orders a tenant's requests;
 *  - prefix cache: a second request with the same prompt prefix (same
 *    tenant) reuses it to the token and gives the same greedy tokens; another
 *    tenant gets no hit; entries are evicted when blocks are needed;
 *  - preemption: requests outgrowing the KV pool, or their tenant's block
 *    limit, are preempted, resumed, and give the tokens they give alone;
 *  - 1000 submit/cancel cycles on the threaded engine leave every block free
 *    (and, under the sanitizer build, no leak); so do four threads
 *    submitting and cancelling at once;
 *  - a Q8_0 KV cache (on the tiny model of testdata/quant: stories260K's
 *    head size of 8 cannot be cut into blocks of 32, and is refused): the
 *    prefix cache, choices (forked sequences, copy-on-write) and preemption
 *    tests again, batch-invariant, so every comparison is exact.
 */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "realm/engine.h"
#include "realm/error.h"
#include "test_util.h"

static realm_model *model;

static realm_gen_options greedy(int max_tokens)
{
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = max_tokens;
    o.sampling.temperature = 0;
    o.ignore_eos = true;
    return o;
}

static realm_gen *submit(realm_engine *e, const realm_token *ids, int n, uint32_t tenant,
                         const realm_gen_options *o)
{
    realm_gen *g = NULL;
    CHECK_RC(realm_engine_submit(
                 e,
                 &(realm_gen_request){.prompt = ids, .n_prompt = n, .tenant = tenant, .options = o},
                 &g),
             REALM_OK);
    return g;
}

static bool ended(realm_gen *g)
{
    realm_gen_result r;
    return realm_gen_result_get(g, &r) == REALM_OK;
}

/* A prompt of n tokens: BOS then a fixed pseudo-random walk. */
static void make_prompt(realm_token *t, int n, int salt)
{
    t[0] = 1;
    for (int i = 1; i < n; i++)
        t[i] = 260 + (i * 37 + salt * 11) % 240;
}

/* Every test's engine; main runs some tests again with a Q8_0 cache. */
static realm_engine_params sched_params = {.n_ctx = 8192,
                                           .n_batch = 64,
                                           .max_seqs = 8,
                                           .max_chunk = 16,
                                           .max_waiting = 64,
                                           .n_threads = 2,
                                           .prefix_cache_entries = -1,
                                           .manual_step = true};

/* Steps until B's first token: B's request has a 100-token prompt. */
static uint64_t b_first_token_steps(int n_flood)
{
    realm_engine *e;
    CHECK_RC(realm_engine_new(model, &sched_params, &e), REALM_OK);
    realm_token pa[16], pb[100];
    make_prompt(pb, 100, 1);
    realm_gen_options oa = greedy(24), ob = greedy(4);
    realm_gen *a[32];
    for (int i = 0; i < n_flood; i++) {
        make_prompt(pa, 16, 2 + i);
        a[i] = submit(e, pa, 16, 1, &oa);
    }
    realm_gen *b = submit(e, pb, 100, 2, &ob);
    for (int i = 0; i < 2000 && !ended(b); i++)
        realm_engine_step(e);
    realm_gen_result r;
    CHECK_RC(realm_gen_result_get(b, &r), REALM_OK);
    CHECK(r.step_first_token > r.step_submitted);
    realm_gen_free(b);
    for (int i = 0; i < n_flood; i++)
        realm_gen_free(a[i]);
    realm_engine_free(e);
    return r.step_first_token - r.step_submitted;
}

static void test_fairness(void)
{
    const uint64_t alone = b_first_token_steps(0);
    const uint64_t flooded = b_first_token_steps(32);
    printf("B's first token: %llu steps alone, %llu behind 32 requests of A\n",
           (unsigned long long)alone, (unsigned long long)flooded);
    CHECK(alone >= 7); /* 100 tokens in chunks of 16 */
    CHECK_MSG(flooded <= 2 * alone, "%llu > 2 x %llu", (unsigned long long)flooded,
              (unsigned long long)alone);

    /* A limited to 2 sequences: B is admitted in the first step */
    realm_engine *e;
    CHECK_RC(realm_engine_new(model, &sched_params, &e), REALM_OK);
    CHECK_RC(realm_engine_set_tenant(e, 1, &(realm_tenant_limits){.max_seqs = 2}), REALM_OK);
    realm_token p[16];
    make_prompt(p, 16, 5);
    realm_gen_options o = greedy(8);
    realm_gen *a[4];
    for (int i = 0; i < 4; i++)
        a[i] = submit(e, p, 16, 1, &o);
    realm_gen *b = submit(e, p, 16, 2, &o);
    realm_engine_step(e);
    realm_engine_stats st;
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.n_running, 3);
    CHECK_EQ_INT(st.n_waiting, 2);
    realm_gen_piece pc;
    CHECK_EQ_INT(realm_gen_next(b, &pc, 0), 1); /* B's first token came in step 1 */
    CHECK_EQ_INT(realm_gen_next(a[2], &pc, 0), REALM_ERR_TIMEOUT);
    while (!ended(a[3]))
        realm_engine_step(e);
    for (int i = 0; i < 4; i++)
        realm_gen_free(a[i]);
    realm_gen_free(b);

    /* priority orders a tenant's own waiting requests */
    CHECK_RC(realm_engine_set_tenant(e, 4, &(realm_tenant_limits){.max_seqs = 1}), REALM_OK);
    realm_gen_options lo = greedy(3), hi = greedy(3);
    hi.priority = 5;
    a[0] = submit(e, p, 16, 4, &lo);
    a[1] = submit(e, p, 16, 4, &hi);
    realm_engine_step(e);
    CHECK_EQ_INT(realm_gen_next(a[1], &pc, 0), 1);
    CHECK_EQ_INT(realm_gen_next(a[0], &pc, 0), REALM_ERR_TIMEOUT);
    while (!ended(a[0]))
        realm_engine_step(e);
    realm_gen_free(a[0]);
    realm_gen_free(a[1]);

    /* a KV-block limit: 16 + 8 tokens take one block of 32; a limit of 2
     * blocks runs two of tenant 3's requests at a time; a request that can
     * never fit is refused at submit */
    CHECK_RC(realm_engine_set_tenant(e, 3, &(realm_tenant_limits){.max_kv_blocks = 2}), REALM_OK);
    for (int i = 0; i < 4; i++)
        a[i] = submit(e, p, 16, 3, &o);
    realm_engine_step(e);
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.n_running, 2);
    realm_gen *x = NULL;
    realm_gen_options big = greedy(100);
    CHECK_RC(
        realm_engine_submit(
            e, &(realm_gen_request){.prompt = p, .n_prompt = 16, .tenant = 3, .options = &big}, &x),
        REALM_ERR_RANGE);
    while (!ended(a[3]))
        realm_engine_step(e);
    for (int i = 0; i < 4; i++)
        realm_gen_free(a[i]);
    realm_engine_free(e);
}

/* The ids of g's pieces (at most 128) and its result; frees g. */
static int take_ids(realm_gen *g, realm_token *ids, realm_gen_result *res)
{
    realm_gen_piece pc;
    int k = 0;
    while (realm_gen_next(g, &pc, 0) > 0)
        if (pc.token != REALM_TOKEN_NULL && k < 128)
            ids[k++] = pc.token;
    realm_gen_result_get(g, res);
    realm_gen_free(g);
    return k;
}

/* The ids of a request with options o run to its end in manual mode. */
static int run_opts(realm_engine *e, const realm_token *p, int n, uint32_t tenant,
                    const realm_gen_options *o, realm_token *ids, realm_gen_result *res)
{
    realm_gen *g = submit(e, p, n, tenant, o);
    while (!ended(g))
        realm_engine_step(e);
    return take_ids(g, ids, res);
}

/* Greedy ids of a request run to its end in manual mode. */
static int run_ids(realm_engine *e, const realm_token *p, int n, uint32_t tenant, int max_tokens,
                   realm_token *ids, realm_gen_result *res)
{
    const realm_gen_options o = greedy(max_tokens);
    return run_opts(e, p, n, tenant, &o, ids, res);
}

static void test_prefix_cache(void)
{
    realm_engine_params p = sched_params;
    p.prefix_cache_entries = 4;
    p.n_ctx = 512; /* 16 blocks of 32 */
    realm_engine *e, *plain;
    CHECK_RC(realm_engine_new(model, &p, &e), REALM_OK);
    CHECK_RC(realm_engine_new(model, &sched_params, &plain), REALM_OK);
    realm_token prompt[120];
    make_prompt(prompt, 120, 9);
    realm_token ids1[128], ids2[128], ref[128];
    realm_gen_result r;
    int n1 = run_ids(e, prompt, 100, 7, 16, ids1, &r);
    CHECK_EQ_INT(r.n_cached, 0);
    realm_engine_stats st;
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.prefix_entries, 1);
    /* the same first 100 tokens and 20 more: 100 come from the cache (the
     * entry holds prompt and output; 100 is not a whole number of blocks) */
    int n2 = run_ids(e, prompt, 120, 7, 16, ids2, &r);
    CHECK_EQ_INT(r.n_cached, 100);
    int nr = run_ids(plain, prompt, 120, 7, 16, ref, &r);
    CHECK_EQ_INT(n2, nr);
    CHECK(memcmp(ids2, ref, sizeof ref[0] * (size_t)nr) == 0);
    /* the same prompt again: all but its last token, whose logits start decoding */
    int n3 = run_ids(e, prompt, 100, 7, 16, ids2, &r);
    CHECK_EQ_INT(r.n_cached, 99);
    CHECK_EQ_INT(n3, n1);
    CHECK(memcmp(ids1, ids2, sizeof ids1[0] * (size_t)n1) == 0);
    /* another tenant never hits tenant 7's entries */
    run_ids(e, prompt, 100, 8, 16, ids2, &r);
    CHECK_EQ_INT(r.n_cached, 0);
    /* a request needing every block evicts the entries */
    realm_token big[400];
    make_prompt(big, 400, 3);
    run_ids(e, big, 400, 9, 100, ids2, &r);
    CHECK_EQ_INT(r.finish, REALM_FINISH_LENGTH);
    realm_engine_get_stats(e, &st);
    CHECK(st.prefix_hit_tokens >= 192);
    realm_engine_free(e);
    realm_engine_free(plain);
}

/* The next turn of a conversation: a request's output stays cached, so a
 * prompt that repeats it computes only what is new. */
static void test_prefix_keeps_output(void)
{
    realm_engine_params p = sched_params;
    p.prefix_cache_entries = 4;
    p.n_ctx = 512;
    realm_engine *e, *plain;
    CHECK_RC(realm_engine_new(model, &p, &e), REALM_OK);
    CHECK_RC(realm_engine_new(model, &sched_params, &plain), REALM_OK);
    realm_token turn[128], out1[64], out2[64], ref[64];
    make_prompt(turn, 40, 5);
    realm_gen_result r;
    int n1 = run_ids(e, turn, 40, 3, 60, out1, &r);
    CHECK_EQ_INT(n1, 60);
    CHECK_EQ_INT(r.n_cached, 0);
    /* 40 + 59 tokens were computed (the last one sampled is never fed): 99 cached */
    memcpy(turn + 40, out1, 60 * sizeof *turn);
    for (int i = 0; i < 10; i++)
        turn[100 + i] = 300 + i;
    int n2 = run_ids(e, turn, 110, 3, 8, out2, &r);
    CHECK_EQ_INT(r.n_cached, 99); /* the prompt alone would give 40 */
    CHECK_EQ_INT(r.n_prompt, 110);
    int nr = run_ids(plain, turn, 110, 3, 8, ref, &r);
    CHECK_EQ_INT(n2, nr);
    CHECK(memcmp(out2, ref, sizeof ref[0] * (size_t)nr) == 0);
    realm_engine_free(e);
    realm_engine_free(plain);
}

/* n choices: the prompt computed once, each choice sampled on its own */
static void test_choices(void)
{
    realm_engine *e;
    CHECK_RC(realm_engine_new(model, &sched_params, &e), REALM_OK); /* no prefix cache */
    realm_token prompt[70], solo[3][40], ids[40];
    make_prompt(prompt, 70, 4);
    /* seeded sampling: choice i is the solo run with seed 11 + i */
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = 24;
    o.ignore_eos = true;
    o.sampling.temperature = 1.0f;
    o.sampling.seed = 11;
    realm_gen_result r;
    int ns[3];
    for (int i = 0; i < 3; i++) {
        realm_gen_options oi = o;
        oi.sampling.seed = 11 + (uint64_t)i;
        ns[i] = run_opts(e, prompt, 70, 1, &oi, solo[i], &r);
    }
    realm_engine_stats before, after;
    realm_engine_get_stats(e, &before);
    realm_gen *g[3];
    CHECK_RC(realm_engine_submit_n(
                 e,
                 &(realm_gen_request){.prompt = prompt, .n_prompt = 70, .tenant = 1, .options = &o},
                 3, g),
             REALM_OK);
    for (int guard = 0; guard < 1000 && !(ended(g[0]) && ended(g[1]) && ended(g[2])); guard++)
        realm_engine_step(e);
    for (int i = 0; i < 3; i++) {
        int n = take_ids(g[i], ids, &r);
        CHECK_EQ_INT(n, ns[i]);
        CHECK_MSG(n == ns[i] && memcmp(ids, solo[i], sizeof ids[0] * (size_t)n) == 0,
                  "choice %d differs from its solo run", i);
        CHECK_EQ_INT(r.n_prompt, 70);
        CHECK_EQ_INT(r.finish, REALM_FINISH_LENGTH); /* take_ids freed g[i] */
    }
    realm_engine_get_stats(e, &after);
    CHECK_EQ_INT(after.tokens_prefilled - before.tokens_prefilled, 70); /* once, not 3 times */
    CHECK_EQ_INT(after.kv_blocks_free, after.kv_blocks_total);

    /* the first choice cancelled while waiting: the others end with it */
    CHECK_RC(realm_engine_submit_n(
                 e,
                 &(realm_gen_request){.prompt = prompt, .n_prompt = 70, .tenant = 1, .options = &o},
                 2, g),
             REALM_OK);
    realm_gen_cancel(g[0]);
    for (int guard = 0; guard < 1000 && !(ended(g[0]) && ended(g[1])); guard++)
        realm_engine_step(e);
    CHECK(ended(g[0]) && ended(g[1]));
    realm_gen_result r1;
    realm_gen_result_get(g[1], &r1);
    CHECK_EQ_INT(r1.finish, REALM_FINISH_CANCELLED);
    realm_gen_free(g[0]);
    realm_gen_free(g[1]);
    /* the first choice cancelled while it computes the prompt: the other goes on alone */
    CHECK_RC(realm_engine_submit_n(
                 e,
                 &(realm_gen_request){.prompt = prompt, .n_prompt = 70, .tenant = 1, .options = &o},
                 2, g),
             REALM_OK);
    realm_engine_step(e); /* admitted; part of the prompt computed (chunks of 16) */
    realm_gen_cancel(g[0]);
    for (int guard = 0; guard < 1000 && !(ended(g[0]) && ended(g[1])); guard++)
        realm_engine_step(e);
    int n = take_ids(g[1], ids, &r);
    CHECK_EQ_INT(r.finish, REALM_FINISH_LENGTH);
    CHECK(n == ns[1] && memcmp(ids, solo[1], sizeof ids[0] * (size_t)n) == 0);
    realm_gen_free(g[0]);
    /* more choices than may run at once */
    realm_gen *many[REALM_MAX_CHOICES];
    CHECK_EQ_INT(realm_engine_submit_n(
                     e, &(realm_gen_request){.prompt = prompt, .n_prompt = 70, .options = &o},
                     sched_params.max_seqs + 1, many),
                 REALM_ERR_RANGE);
    CHECK_EQ_INT(realm_engine_submit_n(e, &(realm_gen_request){.prompt = prompt, .n_prompt = 70},
                                       REALM_MAX_CHOICES + 1, many),
                 REALM_ERR_INVAL);
    realm_engine_get_stats(e, &after);
    CHECK_EQ_INT(after.kv_blocks_free, after.kv_blocks_total);
    CHECK_EQ_INT(after.n_waiting, 0);
    realm_engine_free(e);
}

/*
 * Six requests of 40 + 120 tokens (5 blocks each) on a pool of 16 blocks:
 * they outgrow it, requests are preempted and resumed, and each ends with
 * the same ids as when run alone (greedy ones and seeded ones). That holds
 * only with batch_invariant: otherwise a resumed request's keys and values,
 * recomputed in a prompt-sized pass, differ in the last bits, an F16 cache
 * entry can round the other way, and a greedy near-tie far into the text
 * may go the other way (seen: a gap of 0.004 in log-probability at token
 * 112). Then a tenant limit of 6 blocks with two such requests: one is
 * preempted for it. The pool ends empty.
 */
static void test_preemption(void)
{
    realm_engine_params p = sched_params, q = sched_params;
    p.n_ctx = 512;
    p.batch_invariant = q.batch_invariant = true;
    realm_engine *e, *plain;
    CHECK_RC(realm_engine_new(model, &p, &e), REALM_OK);
    CHECK_RC(realm_engine_new(model, &q, &plain), REALM_OK);
    enum { N = 6, NP = 40, NG = 120 };
    realm_token prompt[N][NP], ids[128], ref[128];
    realm_gen_options o[N];
    realm_gen *g[N];
    for (int i = 0; i < N; i++) {
        make_prompt(prompt[i], NP, 20 + i);
        o[i] = greedy(NG);
        if (i % 2) {
            o[i].sampling.temperature = 0.9f;
            o[i].sampling.seed = 1234u + (uint32_t)i;
        }
        g[i] = submit(e, prompt[i], NP, 10 + (uint32_t)i % 3, &o[i]);
    }
    int steps = 0;
    for (bool all = false; !all && steps < 20000; steps++) {
        realm_engine_step(e);
        all = true;
        for (int i = 0; i < N; i++)
            all = all && ended(g[i]);
    }
    realm_engine_stats st;
    realm_engine_get_stats(e, &st);
    CHECK(st.preemptions > 0);
    printf("preemption: 6 requests on 16 blocks, %d steps, %llu preemptions\n", steps,
           (unsigned long long)st.preemptions);
    for (int i = 0; i < N; i++) {
        realm_gen_result r, rr;
        const int n = take_ids(g[i], ids, &r);
        const int nr = run_opts(plain, prompt[i], NP, 1, &o[i], ref, &rr);
        CHECK_EQ_INT(r.finish, REALM_FINISH_LENGTH);
        CHECK_EQ_INT(r.n_completion, NG);
        CHECK_EQ_INT(n, nr);
        CHECK(n == nr && memcmp(ids, ref, sizeof ids[0] * (size_t)n) == 0);
    }
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.kv_blocks_free, st.kv_blocks_total);

    /* a tenant limit: two requests fit its 6 blocks at admission, not grown */
    const uint64_t before = st.preemptions;
    CHECK_RC(realm_engine_set_tenant(e, 30, &(realm_tenant_limits){.max_kv_blocks = 6}), REALM_OK);
    g[0] = submit(e, prompt[0], NP, 30, &o[0]);
    g[1] = submit(e, prompt[2], NP, 30, &o[2]);
    realm_engine_step(e);
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.n_running, 2);
    while (!ended(g[0]) || !ended(g[1]))
        realm_engine_step(e);
    realm_engine_get_stats(e, &st);
    CHECK(st.preemptions > before);
    for (int i = 0; i < 2; i++) {
        realm_gen_result r, rr;
        const int n = take_ids(g[i], ids, &r);
        const int nr = run_opts(plain, prompt[2 * i], NP, 1, &o[2 * i], ref, &rr);
        CHECK(n == nr && n == NG && memcmp(ids, ref, sizeof ids[0] * (size_t)n) == 0);
    }
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.kv_blocks_free, st.kv_blocks_total);
    realm_engine_free(e);
    realm_engine_free(plain);
}

/*
 * Idleness is no credit: tenant 1 runs a long request alone and the engine
 * goes idle; then new tenant 2 submits 8 requests and tenant 1 one. Tenant
 * 1's request must not wait behind all 8 (one sequence at a time).
 */
static void test_fair_after_idle(void)
{
    realm_engine_params p = sched_params;
    p.max_seqs = 1;
    realm_engine *e;
    CHECK_RC(realm_engine_new(model, &p, &e), REALM_OK);
    realm_token pr[200];
    make_prompt(pr, 200, 5);
    realm_gen_options o = greedy(200);
    realm_gen *g = submit(e, pr, 200, 1, &o);
    while (!ended(g))
        realm_engine_step(e);
    realm_gen_free(g);
    realm_gen *b[8];
    o = greedy(4);
    for (int i = 0; i < 8; i++)
        b[i] = submit(e, pr, 20, 2, &o);
    g = submit(e, pr, 20, 1, &o);
    bool all = false;
    while (!all) {
        realm_engine_step(e);
        all = ended(g);
        for (int i = 0; i < 8; i++)
            all = all && ended(b[i]);
    }
    realm_gen_result rg, rb;
    realm_gen_result_get(g, &rg);
    int before = 0; /* tenant 2's requests served before tenant 1's */
    for (int i = 0; i < 8; i++) {
        realm_gen_result_get(b[i], &rb);
        before += rb.step_first_token < rg.step_first_token;
        realm_gen_free(b[i]);
    }
    realm_gen_free(g);
    CHECK_MSG(before <= 1, "tenant 1 waited behind %d of tenant 2's requests", before);
    realm_engine_free(e);
}

/*
 * Under KV pressure the prefix cache keeps entries whose blocks a running
 * request shares (evicting them frees nothing): a request waiting for
 * blocks leaves the entry alone until evicting it makes room.
 */
static void test_prefix_kept_under_pressure(void)
{
    realm_engine_params p = sched_params;
    p.prefix_cache_entries = 4;
    p.n_ctx = 512; /* 16 blocks of 32 */
    realm_engine *e;
    CHECK_RC(realm_engine_new(model, &p, &e), REALM_OK);
    realm_token a[100], big[400];
    make_prompt(a, 100, 13);
    make_prompt(big, 400, 14);
    realm_gen_options o = greedy(150);
    realm_gen *ga = submit(e, a, 100, 7, &o);
    for (int i = 0; i < 10; i++)
        realm_engine_step(e);
    realm_engine_stats st;
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.prefix_entries, 1);
    realm_gen_options ob = greedy(4);
    realm_gen *gb = submit(e, big, 400, 8, &ob); /* 13 blocks: waits for a's */
    for (int i = 0; i < 20; i++)
        realm_engine_step(e);
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.n_waiting, 1);
    CHECK_EQ_INT(st.prefix_entries, 1);
    while (!ended(ga) || !ended(gb))
        realm_engine_step(e);
    realm_gen_result r;
    realm_gen_result_get(gb, &r);
    CHECK_EQ_INT(r.finish, REALM_FINISH_LENGTH);
    realm_gen_free(ga);
    realm_gen_free(gb);
    realm_engine_free(e);
}

/* A tenant's block limit lowered below a waiting request's need ends that
 * request with an error instead of leaving it waiting for ever. */
static void test_limit_lowered(void)
{
    realm_engine *e;
    CHECK_RC(realm_engine_new(model, &sched_params, &e), REALM_OK);
    realm_token pr[100];
    make_prompt(pr, 100, 3);
    CHECK_RC(realm_engine_set_tenant(e, 5, &(realm_tenant_limits){.max_kv_blocks = 100}), REALM_OK);
    realm_gen_options o = greedy(20);
    realm_gen *g = submit(e, pr, 100, 5, &o);
    CHECK_RC(realm_engine_set_tenant(e, 5, &(realm_tenant_limits){.max_kv_blocks = 2}), REALM_OK);
    realm_engine_step(e);
    realm_gen_result r;
    CHECK_RC(realm_gen_result_get(g, &r), REALM_OK);
    CHECK_EQ_INT(r.finish, REALM_FINISH_ERROR);
    CHECK_EQ_INT(r.error, REALM_ERR_RANGE);
    CHECK(strstr(r.message, "limit of 2") != NULL);
    realm_gen_free(g);
    realm_engine_free(e);
}

/* The log-probabilities of g's pieces (at most 128); frees g. */
static int take_logprobs(realm_gen *g, float *lp)
{
    realm_gen_piece pc;
    int k = 0;
    while (realm_gen_next(g, &pc, 0) > 0)
        if (pc.token != REALM_TOKEN_NULL && k < 128)
            lp[k++] = pc.logprob;
    realm_gen_free(g);
    return k;
}

/* With batch_invariant, a preempted and resumed request recomputes its keys
 * and values bitwise as they were: its log-probabilities equal, to the bit,
 * those of the same request run alone on an ample pool. */
static void test_preemption_exact(void)
{
    realm_engine_params p = sched_params, q = sched_params;
    p.n_ctx = 512;
    p.batch_invariant = q.batch_invariant = true;
    realm_engine *e, *plain;
    CHECK_RC(realm_engine_new(model, &p, &e), REALM_OK);
    CHECK_RC(realm_engine_new(model, &q, &plain), REALM_OK);
    enum { N = 6, NP = 40, NG = 120 };
    realm_token prompt[N][NP];
    realm_gen_options o[N];
    realm_gen *g[N];
    for (int i = 0; i < N; i++) {
        make_prompt(prompt[i], NP, 40 + i);
        o[i] = greedy(NG);
        o[i].sampling.temperature = 0.9f;
        o[i].sampling.seed = 77u + (uint32_t)i;
        o[i].sampling.n_probs = 1;
        g[i] = submit(e, prompt[i], NP, (uint32_t)i % 3, &o[i]);
    }
    bool all = false;
    for (int steps = 0; !all && steps < 20000; steps++) {
        realm_engine_step(e);
        all = true;
        for (int i = 0; i < N; i++)
            all = all && ended(g[i]);
    }
    realm_engine_stats st;
    realm_engine_get_stats(e, &st);
    CHECK(st.preemptions > 0);
    for (int i = 0; i < N; i++) {
        float lp[128], ref[128];
        const int n = take_logprobs(g[i], lp);
        realm_gen *r = submit(plain, prompt[i], NP, 1, &o[i]);
        while (!ended(r))
            realm_engine_step(plain);
        const int nr = take_logprobs(r, ref);
        CHECK(n == NG && nr == NG && memcmp(lp, ref, sizeof lp[0] * NG) == 0);
    }
    realm_engine_free(e);
    realm_engine_free(plain);
}

static void test_submit_cancel_cycles(void)
{
    realm_engine *e;
    CHECK_RC(realm_engine_new(model,
                              &(realm_engine_params){.n_ctx = 2048,
                                                     .n_threads = 2,
                                                     .max_seqs = 8,
                                                     .max_waiting = 16,
                                                     .prefix_cache_entries = -1},
                              &e),
             REALM_OK);
    realm_token p[24];
    int overloaded = 0;
    for (int i = 0; i < 1000; i++) {
        make_prompt(p, 8 + i % 16, i);
        realm_gen_options o = greedy(4 + i % 7);
        o.sampling.temperature = i % 2 ? 0.8f : 0;
        o.sampling.seed = (uint64_t)i;
        realm_gen *g = NULL;
        int rc = realm_engine_submit(
            e,
            &(realm_gen_request){
                .prompt = p, .n_prompt = 8 + i % 16, .tenant = (uint32_t)(i % 3), .options = &o},
            &g);
        if (rc == REALM_ERR_OVERLOADED) {
            overloaded++;
            continue;
        }
        CHECK_EQ_INT(rc, REALM_OK);
        realm_gen_piece pc;
        switch (i % 4) {
        case 0: /* cancel at once */
            realm_gen_cancel(g);
            break;
        case 1: /* after a piece */
            realm_gen_next(g, &pc, -1);
            realm_gen_cancel(g);
            break;
        case 2: /* free without cancelling: free cancels */
            break;
        case 3: /* to the end */
            while (realm_gen_next(g, &pc, -1) > 0) {
            }
            break;
        }
        realm_gen_free(g);
    }
    /* one request after all the others: once it ends, the earlier
     * cancellations have been processed by earlier steps */
    realm_gen_options o = greedy(2);
    realm_gen *g = submit(e, p, 8, 0, &o);
    realm_gen_wait(g);
    realm_gen_free(g);
    realm_engine_stats st;
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.n_running, 0);
    CHECK_EQ_INT(st.kv_blocks_free, st.kv_blocks_total);
    printf("1000 cycles: %d refused as overloaded, %llu steps\n", overloaded,
           (unsigned long long)st.steps);
    realm_engine_free(e);
}

/* Run one more request to its end on the threaded engine e: by then every
 * earlier cancellation has been processed by an earlier step. */
static void settle(realm_engine *e)
{
    realm_token p[8];
    make_prompt(p, 8, 99);
    realm_gen_options o = greedy(2);
    realm_gen *g = submit(e, p, 8, 0, &o);
    realm_gen_wait(g);
    realm_gen_free(g);
}

/* One of several submitting threads: 100 requests of its own tenant, some
 * read to the end, some cancelled at once or after a piece. */
static void *submitter(void *arg)
{
    realm_engine *e = arg;
    static int next_id;
    const int id = __atomic_fetch_add(&next_id, 1, __ATOMIC_RELAXED);
    realm_token p[16];
    make_prompt(p, 16, id);
    for (int i = 0; i < 100; i++) {
        realm_gen_options o = greedy(3 + (i + id) % 5);
        realm_gen *g = NULL;
        int rc = realm_engine_submit(
            e,
            &(realm_gen_request){
                .prompt = p, .n_prompt = 10 + i % 6, .tenant = (uint32_t)id, .options = &o},
            &g);
        if (rc < 0)
            continue; /* overloaded: fine under contention */
        realm_gen_piece pc;
        if (i % 3 == 0)
            realm_gen_cancel(g);
        else if (i % 3 == 1)
            realm_gen_next(g, &pc, -1);
        else
            while (realm_gen_next(g, &pc, -1) > 0) {
            }
        realm_gen_free(g);
    }
    return NULL;
}

static void test_concurrent_submitters(void)
{
    realm_engine *e;
    CHECK_RC(realm_engine_new(model,
                              &(realm_engine_params){
                                  .n_ctx = 2048, .n_threads = 2, .max_seqs = 6, .max_waiting = 8},
                              &e),
             REALM_OK);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, submitter, e);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    settle(e);
    realm_engine_stats st;
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.n_running + st.n_waiting, 0);
    /* every block is free but those only the prefix cache holds */
    CHECK(st.prefix_entries > 0 && st.prefix_blocks > 0);
    CHECK_EQ_INT(st.kv_blocks_free + st.prefix_blocks, st.kv_blocks_total);
    realm_engine_free(e);
}

/* One of several threads on a KV pool too small for them all: requests that
 * grow past it (preempted and resumed on the scheduler thread), some
 * cancelled midway; every request read to its end must end by length with
 * all its tokens. */
typedef struct squeezer {
    realm_engine *e;
    int id, errors;
} squeezer;

static void *squeeze(void *arg)
{
    squeezer *sq = arg;
    realm_token p[80];
    for (int i = 0; i < 12; i++) {
        const int np = 40 + (i * 7 + sq->id * 13) % 30, ng = 60 + (i * 11 + sq->id) % 30;
        make_prompt(p, np, sq->id * 100 + i % 3);
        realm_gen_options o = greedy(ng);
        if (i % 2)
            o.sampling.temperature = 0.7f, o.sampling.seed = (uint64_t)i;
        realm_gen *g = NULL;
        if (realm_engine_submit(
                sq->e,
                &(realm_gen_request){
                    .prompt = p, .n_prompt = np, .tenant = (uint32_t)sq->id, .options = &o},
                &g) < 0)
            continue; /* overloaded */
        realm_gen_piece pc;
        int n = 0;
        const int stop_after = i % 4 == 3 ? 10 + i : 1 << 30;
        while (n < stop_after && realm_gen_next(g, &pc, -1) > 0)
            n += pc.token != REALM_TOKEN_NULL;
        realm_gen_result r;
        if (n >= stop_after) {
            realm_gen_cancel(g);
        } else if (realm_gen_result_get(g, &r) != REALM_OK || r.finish != REALM_FINISH_LENGTH ||
                   r.n_completion != ng || n != ng) {
            sq->errors++;
        }
        realm_gen_free(g);
    }
    return NULL;
}

static void test_concurrent_preemption(void)
{
    realm_engine *e;
    CHECK_RC(realm_engine_new(model,
                              &(realm_engine_params){.n_ctx = 256, /* 8 blocks */
                                                     .n_threads = 2,
                                                     .max_seqs = 6,
                                                     .max_waiting = 16,
                                                     .n_batch = 64,
                                                     .prefix_cache_entries = 4},
                              &e),
             REALM_OK);
    squeezer sq[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        sq[i] = (squeezer){.e = e, .id = i};
        pthread_create(&th[i], NULL, squeeze, &sq[i]);
    }
    int errors = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        errors += sq[i].errors;
    }
    CHECK_EQ_INT(errors, 0);
    settle(e);
    realm_engine_stats st;
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.n_running + st.n_waiting, 0);
    CHECK(st.preemptions > 0);
    printf("4 threads on 8 blocks: %llu preemptions, %llu steps\n",
           (unsigned long long)st.preemptions, (unsigned long long)st.steps);
    realm_engine_free(e);
}

/* The prefix cache, forks and preemption with Q8_0 keys and values. */
static void test_q8_0_cache(void)
{
    realm_engine *e = NULL;
    realm_engine_params p = sched_params;
    p.type_k = p.type_v = REALM_TYPE_Q8_0;
    CHECK_RC(realm_engine_new(model, &p, &e), REALM_ERR_UNSUPPORTED);
    CHECK(e == NULL && strstr(realm_last_error(), "multiple of 32") != NULL);
    CHECK_EQ_INT(realm_engine_bytes(model, &p), 0);
    p.type_k = REALM_TYPE_F16;
    CHECK_RC(realm_engine_new(model, &p, &e), REALM_ERR_UNSUPPORTED); /* q8_0 values alone */
    p.type_v = REALM_TYPE_Q4_0;
    CHECK_RC(realm_engine_new(model, &p, &e), REALM_ERR_UNSUPPORTED);
    CHECK(strstr(realm_last_error(), "q4_0") != NULL || strstr(realm_last_error(), "Q4_0"));

    realm_model *const stories = model;
    CHECK_RC(realm_model_load(test_data("quant/tiny-q8_0.gguf"), NULL, &model), REALM_OK);
    if (model == NULL) {
        model = stories;
        return;
    }
    const realm_engine_params saved = sched_params;
    sched_params.type_k = sched_params.type_v = REALM_TYPE_Q8_0;
    sched_params.batch_invariant = true;
    const uint64_t f16 = realm_engine_bytes(model, &saved),
                   q8 = realm_engine_bytes(model, &sched_params);
    printf("q8_0 cache: engine of %d tokens %.1f MiB (f16 %.1f MiB)\n", sched_params.n_ctx,
           (double)q8 / 1048576, (double)f16 / 1048576);
    CHECK(q8 > 0 && q8 < f16);
    test_prefix_cache();
    test_prefix_keeps_output();
    test_choices();
    test_preemption();
    test_preemption_exact();
    sched_params = saved;
    realm_model_free(model);
    model = stories;
}

int main(void)
{
    test_begin("engine_sched", 880); /* minutes under the sanitizers on a busy machine */
    CHECK_RC(realm_model_load(test_data("models/stories260K.gguf"), NULL, &model), REALM_OK);
    if (!model)
        return test_end();
    test_fairness();
    test_prefix_cache();
    test_prefix_keeps_output();
    test_choices();
    test_preemption();
    test_preemption_exact();
    test_fair_after_idle();
    test_prefix_kept_under_pressure();
    test_limit_lowered();
    test_submit_cancel_cycles();
    test_concurrent_submitters();
    test_concurrent_preemption();
    test_q8_0_cache();
    realm_model_free(model);
    return test_end();
}
