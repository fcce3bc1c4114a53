/*
 * Speculative decoding in the engine (realm/engine.h), stories260K as the
 * target, drafts by prompt lookup and by draft models quantized from it at
 * set-up with `realm quantize` (Q4_0 and Q8_0; ffn_down's 172 columns fall
 * back to F16) into a temporary directory:
 *  - greedy: tokens (and log-probabilities, batch_invariant) bitwise those
 *    of the run without speculation and llama.cpp's references, alone with
 *    K = 2, 4, 8 and in a batch of 8 mixing the modes; a draft of another
 *    shape (quant/tiny-f32, same vocabulary) too; n choices;
 *  - preemption under a small KV pool gives the same tokens;
 *  - sampling: lookup gives the seeded tokens of the run without it (the
 *    draw is per position); a draft model keeps the distribution: a
 *    two-sample chi-square test over 4000 seeded runs per side, on the
 *    tokens at output positions 1..3 (deterministic: fixed seeds); seeded
 *    draft runs reproduce;
 *  - stop strings ending inside accepted runs; cancellation from the sink
 *    in the middle of a step's accepted run (nothing after it);
 *  - a draft model with another vocabulary refused; bad options;
 *  - LoRA: lookup under an adapter on quant/tiny-f32 equals the run without.
 */
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "realm/engine.h"
#include "realm/error.h"
#include "realm/lora.h"
#include "test_util.h"

#define MAXG 160

static realm_model *model, *draft_q4, *draft_q8, *draft_tiny;
static char tmpdir[] = "/tmp/realm_spec_XXXXXX";

typedef struct out {
    realm_token ids[MAXG];
    float logprob[MAXG];
    int n;
    char text[2048];
    size_t len;
    realm_gen_result res;
} out;

static void collect(realm_gen *g, out *o)
{
    memset(o, 0, sizeof *o);
    realm_gen_piece p;
    int rc;
    while ((rc = realm_gen_next(g, &p, 0)) > 0) {
        if (p.token != REALM_TOKEN_NULL && o->n < MAXG) {
            o->logprob[o->n] = p.logprob;
            o->ids[o->n++] = p.token;
        }
        if (o->len + p.len < sizeof o->text) {
            memcpy(o->text + o->len, p.text, p.len);
            o->len += p.len;
        }
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_RC(realm_gen_result_get(g, &o->res), REALM_OK);
}

static realm_engine *engine(const realm_model *draft, int32_t n_ctx, int32_t max_seqs)
{
    realm_engine *e = NULL;
    CHECK_RC(realm_engine_new(model,
                              &(realm_engine_params){.n_ctx = n_ctx,
                                                     .block_size = 16,
                                                     .max_seqs = max_seqs,
                                                     .n_threads = 1,
                                                     .manual_step = true,
                                                     .batch_invariant = true,
                                                     .draft = draft},
                              &e),
             REALM_OK);
    return e;
}

/* Submit n requests (prompt i, options o[i]) and step until all ended. */
static void run_n(realm_engine *e, int n, const realm_token *const *prompt, const int *n_prompt,
                  const realm_gen_options *o, out *outs)
{
    realm_gen *g[32];
    for (int i = 0; i < n; i++) {
        g[i] = NULL;
        CHECK_RC(realm_engine_submit(e,
                                     &(realm_gen_request){.prompt = prompt[i],
                                                          .n_prompt = n_prompt[i],
                                                          .tenant = (uint32_t)i,
                                                          .options = &o[i]},
                                     &g[i]),
                 REALM_OK);
    }
    for (int s = 0; s < 20000; s++) {
        bool all = true;
        realm_gen_result r;
        for (int i = 0; i < n; i++)
            all = all && (g[i] == NULL || realm_gen_result_get(g[i], &r) == 0);
        if (all)
            break;
        CHECK(realm_engine_step(e) >= 0);
    }
    for (int i = 0; i < n; i++) {
        if (g[i])
            collect(g[i], &outs[i]);
        realm_gen_free(g[i]);
    }
}

static void run1(realm_engine *e, const realm_token *prompt, int n_prompt,
                 const realm_gen_options *o, out *r)
{
    run_n(e, 1, &prompt, &n_prompt, o, r);
}

static realm_gen_options opts(int32_t mode, int32_t n_max, float temperature, uint64_t seed,
                              int max_tokens)
{
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = max_tokens;
    o.ignore_eos = true;
    o.no_prefix_cache = true;
    o.sampling.temperature = temperature;
    o.sampling.seed = seed;
    o.sampling.n_probs = 1;
    o.speculative.mode = mode;
    o.speculative.n_max = n_max;
    return o;
}

static bool same_tokens(const out *a, const out *b)
{
    return a->n == b->n && memcmp(a->ids, b->ids, sizeof a->ids[0] * (size_t)a->n) == 0;
}

static bool same_logprobs(const out *a, const out *b)
{
    return a->n == b->n && memcmp(a->logprob, b->logprob, sizeof a->logprob[0] * (size_t)a->n) == 0;
}

/* ---- the reference prompts -------------------------------------------------- */

#define NCASE 4
static realm_token case_prompt[NCASE][32];
static int case_np[NCASE];
static realm_token case_want[NCASE][64];
static int n_cases;

static void load_cases(void)
{
    json_error_t jerr;
    json_t *root = json_load_file(test_data("reference/stories260K-greedy.json"), 0, &jerr);
    CHECK_MSG(root != NULL, "json: %s", jerr.text);
    if (!root)
        return;
    json_t *cases = json_object_get(root, "greedy");
    for (size_t k = 0; k < json_array_size(cases) && n_cases < NCASE; k++) {
        json_t *cs = json_array_get(cases, k);
        json_t *pids = json_object_get(cs, "prompt_ids"),
               *gids = json_object_get(cs, "generated_ids");
        case_np[n_cases] = (int)json_array_size(pids);
        for (int j = 0; j < case_np[n_cases] && j < 32; j++)
            case_prompt[n_cases][j] =
                (realm_token)json_integer_value(json_array_get(pids, (size_t)j));
        CHECK_EQ_INT((int)json_array_size(gids), 64);
        for (int j = 0; j < 64; j++)
            case_want[n_cases][j] =
                (realm_token)json_integer_value(json_array_get(gids, (size_t)j));
        n_cases++;
    }
    json_decref(root);
    CHECK_EQ_INT(n_cases, NCASE);
}

static bool equals_reference(const out *r, int c)
{
    return r->n == 64 && memcmp(r->ids, case_want[c], sizeof r->ids[0] * 64) == 0;
}

/* Greedy: every mode, alone and batched, gives the tokens and log-probabilities
 * of the run without speculation, and llama.cpp's tokens. */
static void test_greedy_exact(void)
{
    realm_engine *e_off = engine(NULL, 2048, 8);
    realm_engine *e_q4 = engine(draft_q4, 2048, 8);
    realm_engine *e_q8 = engine(draft_q8, 2048, 8);
    realm_engine *e_tiny = engine(draft_tiny, 2048, 8);
    out base[NCASE];
    uint64_t drafted = 0, accepted = 0;
    for (int c = 0; c < n_cases; c++) {
        realm_gen_options o = opts(REALM_SPEC_OFF, 0, 0, 1, 64);
        run1(e_off, case_prompt[c], case_np[c], &o, &base[c]);
        CHECK_MSG(equals_reference(&base[c], c), "case %d: no speculation vs llama.cpp", c);
        CHECK_EQ_INT(base[c].res.draft_tokens, 0);
        const struct {
            realm_engine *e;
            int32_t mode;
            const char *name;
        } runs[] = {{e_off, REALM_SPEC_LOOKUP, "lookup"},
                    {e_q4, REALM_SPEC_DRAFT, "draft q4_0"},
                    {e_q8, REALM_SPEC_DRAFT, "draft q8_0"},
                    {e_tiny, REALM_SPEC_DRAFT, "draft tiny-f32"},
                    {e_q4, REALM_SPEC_LOOKUP, "lookup (engine with a draft)"}};
        for (size_t m = 0; m < sizeof runs / sizeof runs[0]; m++)
            for (int32_t k = 2; k <= 8; k *= 2) {
                o = opts(runs[m].mode, k, 0, 1, 64);
                o.speculative.p_min = 0; /* draft every time: the most verification */
                out r;
                run1(runs[m].e, case_prompt[c], case_np[c], &o, &r);
                CHECK_MSG(same_tokens(&r, &base[c]) && equals_reference(&r, c),
                          "case %d, %s, K %d: tokens differ", c, runs[m].name, k);
                CHECK_MSG(same_logprobs(&r, &base[c]), "case %d, %s, K %d: log-probabilities", c,
                          runs[m].name, k);
                CHECK_EQ_STR(r.text, base[c].text);
                CHECK_EQ_INT(r.res.finish, REALM_FINISH_LENGTH);
                CHECK(r.res.accepted_tokens <= r.res.draft_tokens);
                if (runs[m].mode == REALM_SPEC_DRAFT && runs[m].e != e_tiny)
                    CHECK_MSG(r.res.accepted_tokens > 32,
                              "case %d, %s, K %d: %d of %d drafts accepted", c, runs[m].name, k,
                              r.res.accepted_tokens, r.res.draft_tokens);
                drafted += (uint64_t)r.res.draft_tokens;
                accepted += (uint64_t)r.res.accepted_tokens;
            }
    }
    CHECK(drafted > 0 && accepted > 0);
    realm_engine_stats st;
    realm_engine_get_stats(e_q4, &st);
    CHECK(st.spec_draft_tokens > 0 && st.spec_accepted_tokens > 0 &&
          st.spec_accepted_tokens <= st.spec_draft_tokens);

    /* a batch of 8: every case twice, modes mixed, K mixed, one pass verifying all */
    realm_gen_options o8[8];
    const realm_token *p8[8];
    int np8[8];
    for (int i = 0; i < 8; i++) {
        o8[i] = opts(i % 3 == 0   ? REALM_SPEC_LOOKUP
                     : i % 3 == 1 ? REALM_SPEC_DRAFT
                                  : REALM_SPEC_OFF,
                     2 + i % 4, 0, 1, 64);
        p8[i] = case_prompt[i % n_cases];
        np8[i] = case_np[i % n_cases];
    }
    out r8[8];
    run_n(e_q4, 8, p8, np8, o8, r8);
    for (int i = 0; i < 8; i++) {
        CHECK_MSG(same_tokens(&r8[i], &base[i % n_cases]) && equals_reference(&r8[i], i % n_cases),
                  "batch of 8, request %d: tokens differ", i);
        CHECK_MSG(same_logprobs(&r8[i], &base[i % n_cases]), "batch of 8, request %d: logprobs", i);
    }
    /* all eight speculating at once */
    for (int i = 0; i < 8; i++)
        o8[i].speculative.mode = i % 2 ? REALM_SPEC_LOOKUP : REALM_SPEC_DRAFT;
    run_n(e_q8, 8, p8, np8, o8, r8);
    for (int i = 0; i < 8; i++)
        CHECK_MSG(same_tokens(&r8[i], &base[i % n_cases]) &&
                      same_logprobs(&r8[i], &base[i % n_cases]),
                  "batch of 8 speculating, request %d differs", i);

    /* n choices, each speculating by lookup, greedy: all the same tokens */
    realm_gen_options on = opts(REALM_SPEC_LOOKUP, 4, 0, 1, 64);
    realm_gen *gs[3];
    CHECK_RC(
        realm_engine_submit_n(
            e_off,
            &(realm_gen_request){.prompt = case_prompt[0], .n_prompt = case_np[0], .options = &on},
            3, gs),
        REALM_OK);
    for (int s = 0; s < 1000 && realm_engine_step(e_off) > 0; s++)
        ;
    for (int i = 0; i < 3; i++) {
        out r;
        collect(gs[i], &r);
        CHECK_MSG(same_tokens(&r, &base[0]), "choice %d differs", i);
        realm_gen_free(gs[i]);
    }
    realm_engine_free(e_off);
    realm_engine_free(e_q4);
    realm_engine_free(e_q8);
    realm_engine_free(e_tiny);
}

/* A pool too small for every sequence: preempted requests recompute and go
 * on with the same tokens, drafts or not. */
static void test_preemption(void)
{
    realm_engine *e = engine(draft_q4, 256, 6);
    realm_gen_options o[6];
    const realm_token *p[6];
    int np[6];
    for (int i = 0; i < 6; i++) {
        o[i] = opts(i % 2 ? REALM_SPEC_LOOKUP : REALM_SPEC_DRAFT, 6, 0, 1, 64);
        p[i] = case_prompt[i % n_cases];
        np[i] = case_np[i % n_cases];
    }
    out r[6];
    run_n(e, 6, p, np, o, r);
    realm_engine_stats st;
    realm_engine_get_stats(e, &st);
    CHECK_MSG(st.preemptions > 0, "no preemption in a pool of %d blocks", st.kv_blocks_total);
    for (int i = 0; i < 6; i++)
        CHECK_MSG(equals_reference(&r[i], i % n_cases), "request %d differs after preemption", i);
    realm_engine_free(e);
}

/* The prefix cache after speculative runs: a request ending well leaves its
 * prompt and output cached (the KV of rejected drafts rolled back), so the
 * next turn, whose prompt is the first one plus 40 tokens of output, takes
 * them from the cache and continues as llama.cpp does. */
static void test_prefix_cache(void)
{
    realm_engine *e = engine(draft_q8, 2048, 4);
    for (int32_t mode = REALM_SPEC_LOOKUP; mode <= REALM_SPEC_DRAFT; mode++) {
        realm_gen_options o = opts(mode, 6, 0, 1, 64);
        o.no_prefix_cache = false;
        o.speculative.p_min = 0;
        out first, again, turn;
        run1(e, case_prompt[3], case_np[3], &o, &first);
        CHECK(equals_reference(&first, 3));
        CHECK(first.res.draft_tokens > 0);
        run1(e, case_prompt[3], case_np[3], &o, &again);
        CHECK(again.res.n_cached > 0);
        CHECK(same_tokens(&again, &first) && same_logprobs(&again, &first));
        realm_token p2[128];
        memcpy(p2, case_prompt[3], (size_t)case_np[3] * sizeof p2[0]);
        memcpy(p2 + case_np[3], case_want[3], 40 * sizeof p2[0]);
        o.max_tokens = 24;
        run1(e, p2, case_np[3] + 40, &o, &turn);
        CHECK_MSG(turn.res.n_cached >= case_np[3] + 32, "mode %d: %d tokens cached", mode,
                  turn.res.n_cached);
        CHECK_EQ_INT(turn.n, 24);
        CHECK_MSG(memcmp(turn.ids, case_want[3] + 40, 24 * sizeof turn.ids[0]) == 0,
                  "mode %d: the next turn from the cache is not llama.cpp's", mode);
    }
    realm_engine_free(e);
}

/* The back-off: a step's decode rows (decoding sequences + drafts) stay
 * within spec_max_rows, drafts shared out; none once the sequences alone
 * fill it. */
static void check_backoff(int32_t max_rows, int n_seqs, bool expect_drafts)
{
    realm_engine *e = NULL;
    CHECK_RC(realm_engine_new(model,
                              &(realm_engine_params){.n_ctx = 4096,
                                                     .max_seqs = 8,
                                                     .n_threads = 1,
                                                     .manual_step = true,
                                                     .spec_max_rows = max_rows,
                                                     .draft = draft_q8},
                              &e),
             REALM_OK);
    realm_gen *g[8];
    realm_gen_options o = opts(REALM_SPEC_DRAFT, 8, 0, 1, 48);
    o.speculative.p_min = 0; /* every sequence wants all 8 drafts every step */
    for (int i = 0; i < n_seqs; i++)
        CHECK_RC(realm_engine_submit(e,
                                     &(realm_gen_request){.prompt = case_prompt[i % n_cases],
                                                          .n_prompt = case_np[i % n_cases],
                                                          .tenant = (uint32_t)i,
                                                          .options = &o},
                                     &g[i]),
                 REALM_OK);
    realm_engine_stats before, after;
    realm_engine_get_stats(e, &before);
    for (int steps = 0; steps < 500; steps++) {
        if (realm_engine_step(e) <= 0)
            break;
        realm_engine_get_stats(e, &after);
        const int drafted = (int)(after.spec_draft_tokens - before.spec_draft_tokens);
        CHECK_MSG(drafted <= (max_rows > n_seqs ? max_rows - n_seqs : 0) ||
                      after.n_running < n_seqs,
                  "rows %d, %d sequences: %d drafts in one step", max_rows, n_seqs, drafted);
        before = after;
    }
    realm_engine_get_stats(e, &after);
    CHECK_MSG(expect_drafts == (after.spec_draft_tokens > 0), "rows %d, %d sequences: %llu drafts",
              max_rows, n_seqs, (unsigned long long)after.spec_draft_tokens);
    for (int i = 0; i < n_seqs; i++) {
        out r;
        collect(g[i], &r);
        CHECK_EQ_INT(r.n, 48);
        CHECK_MSG(memcmp(r.ids, case_want[i % n_cases], 48 * sizeof r.ids[0]) == 0,
                  "back-off, request %d: not llama.cpp's tokens", i);
        realm_gen_free(g[i]);
    }
    realm_engine_free(e);
}

static void test_backoff(void)
{
    check_backoff(8, 8, false); /* eight decoding sequences fill 8 rows: no drafts */
    check_backoff(12, 8, true); /* four drafts a step, shared out */
    check_backoff(4, 1, true);  /* one sequence: at most three */
    check_backoff(32, 8, true);
}

/* ---- sampling -------------------------------------------------------------- */

#define N_SEEDS 4000
#define N_POS   3 /* output positions 1..3 (position 0 is never drafted) */

/* Two-sample chi-square over token counts a, b (equal totals) of n_vocab
 * bins, bins with fewer than 10 together pooled into one; *df its degrees
 * of freedom. */
static double chi_square(const int *a, const int *b, int nv, int *df)
{
    double x = 0, pa = 0, pb = 0;
    int bins = 0;
    for (int i = 0; i < nv; i++) {
        if (a[i] + b[i] < 10) {
            pa += a[i];
            pb += b[i];
            continue;
        }
        x += (double)(a[i] - b[i]) * (a[i] - b[i]) / (a[i] + b[i]);
        bins++;
    }
    if (pa + pb > 0) {
        x += (pa - pb) * (pa - pb) / (pa + pb);
        bins++;
    }
    *df = bins - 1;
    return x;
}

/* The chi-square quantile of probability 1 - 1e-4 (Wilson-Hilferty). */
static double chi_crit(int df)
{
    const double z = 3.719, k = df;
    const double t = 1 - 2 / (9 * k) + z * sqrt(2 / (9 * k));
    return k * t * t * t;
}

/* Seeds 1..N_SEEDS, 16 at a time; counts[pos][token] of positions 1..N_POS. */
static void sample_counts(realm_engine *e, int32_t mode, int32_t n_max, int (*counts)[512],
                          uint64_t *drafted, uint64_t *accepted)
{
    for (int s0 = 0; s0 < N_SEEDS; s0 += 16) {
        realm_gen_options o[16];
        const realm_token *p[16];
        int np[16];
        for (int i = 0; i < 16; i++) {
            o[i] = opts(mode, n_max, 1.0f, (uint64_t)(s0 + i + 1), 1 + N_POS);
            o[i].sampling.top_p = 1;
            o[i].sampling.min_p = 0;
            o[i].speculative.p_min = 0;
            p[i] = case_prompt[2];
            np[i] = case_np[2];
        }
        out r[16];
        run_n(e, 16, p, np, o, r);
        for (int i = 0; i < 16; i++) {
            CHECK_EQ_INT(r[i].n, 1 + N_POS);
            for (int k = 0; k < N_POS && k + 1 < r[i].n; k++)
                if (r[i].ids[k + 1] >= 0 && r[i].ids[k + 1] < 512)
                    counts[k][r[i].ids[k + 1]]++;
            *drafted += (uint64_t)r[i].res.draft_tokens;
            *accepted += (uint64_t)r[i].res.accepted_tokens;
        }
    }
}

static void check_distribution(const realm_model *draft, const char *name)
{
    realm_engine *e = engine(draft, 4096, 16);
    static int c_off[N_POS][512], c_spec[N_POS][512];
    memset(c_off, 0, sizeof c_off);
    memset(c_spec, 0, sizeof c_spec);
    uint64_t dr = 0, ac = 0, dr0 = 0, ac0 = 0;
    sample_counts(e, REALM_SPEC_OFF, 0, c_off, &dr0, &ac0);
    sample_counts(e, REALM_SPEC_DRAFT, 3, c_spec, &dr, &ac);
    CHECK_EQ_INT((int)dr0, 0);
    CHECK_MSG(dr > 0 && ac > 0 && ac < dr, "drafted %llu, accepted %llu", (unsigned long long)dr,
              (unsigned long long)ac);
    for (int k = 0; k < N_POS; k++) {
        int df;
        const double x = chi_square(c_off[k], c_spec[k], 512, &df);
        printf("sampling, draft %s, position %d: chi-square %.1f, %d degrees of freedom, "
               "bound %.1f (drafted %llu, accepted %llu)\n",
               name, k + 1, x, df, chi_crit(df), (unsigned long long)dr, (unsigned long long)ac);
        CHECK_MSG(df >= 3 && x < chi_crit(df), "draft %s, position %d: chi-square %.1f over %d df",
                  name, k + 1, x, df);
    }
    realm_engine_free(e);
}

static void test_sampling(void)
{
    realm_engine *e = engine(draft_q4, 4096, 16);
    /* lookup: the seeded tokens of the run without speculation, any K */
    realm_gen_options o = opts(REALM_SPEC_OFF, 0, 0.9f, 77, 96);
    o.sampling.repeat_penalty = 1.1f;
    o.sampling.top_k = 40;
    out off, r;
    run1(e, case_prompt[0], case_np[0], &o, &off);
    CHECK_EQ_INT(off.n, 96);
    uint64_t lookup_drafted = 0;
    for (int32_t k = 1; k <= 16; k *= 2) {
        o.speculative.mode = REALM_SPEC_LOOKUP;
        o.speculative.n_max = k;
        run1(e, case_prompt[0], case_np[0], &o, &r);
        CHECK_MSG(same_tokens(&r, &off) && same_logprobs(&r, &off),
                  "seeded lookup with K %d differs from no speculation", k);
        lookup_drafted += (uint64_t)r.res.draft_tokens;
    }
    CHECK(lookup_drafted > 0);
    /* draft model, seeded: the same tokens again for the same options */
    o.speculative.mode = REALM_SPEC_DRAFT;
    o.speculative.n_max = 4;
    o.speculative.p_min = 0;
    out d1, d2;
    run1(e, case_prompt[0], case_np[0], &o, &d1);
    run1(e, case_prompt[0], case_np[0], &o, &d2);
    CHECK(same_tokens(&d1, &d2) && same_logprobs(&d1, &d2));
    CHECK(d1.res.accepted_tokens > 0);

    realm_engine_free(e);
    /* the distribution with a draft model's sampled drafts equals the target's:
     * a close draft (Q4_0, mostly accepted) and a far one (tiny-f32's random
     * weights, mostly rejected: the residual draws) */
    check_distribution(draft_q4, "q4_0");
    check_distribution(draft_tiny, "tiny-f32");
}

/* ---- stop strings and cancellation ------------------------------------------ */

static void test_stop_strings(void)
{
    realm_engine *e = engine(draft_q8, 2048, 4);
    realm_gen_options o = opts(REALM_SPEC_OFF, 0, 0, 1, 120);
    out full;
    run1(e, case_prompt[0], case_np[0], &o, &full);
    CHECK(full.len > 200);
    int checked = 0, accepted = 0;
    for (size_t at = 60; at + 8 < full.len && checked < 12; at += 13) {
        char stop[8];
        memcpy(stop, full.text + at, 5);
        stop[5] = '\0';
        const char *first = strstr(full.text, stop);
        if (first == NULL)
            continue;
        const char *stops[1] = {stop};
        out a, b;
        o.stop = stops;
        o.n_stop = 1;
        o.speculative.mode = REALM_SPEC_OFF;
        run1(e, case_prompt[0], case_np[0], &o, &a);
        for (int32_t mode = REALM_SPEC_LOOKUP; mode <= REALM_SPEC_DRAFT; mode++) {
            o.speculative.mode = mode;
            o.speculative.n_max = 8;
            o.speculative.p_min = 0;
            run1(e, case_prompt[0], case_np[0], &o, &b);
            CHECK_EQ_INT((int)b.len, (int)(first - full.text));
            CHECK(strncmp(b.text, full.text, b.len) == 0);
            CHECK_EQ_STR(b.text, a.text);
            CHECK(same_tokens(&a, &b));
            CHECK_EQ_INT(b.res.finish, REALM_FINISH_STOP);
            CHECK_EQ_INT(b.res.n_completion, a.res.n_completion);
            accepted += b.res.accepted_tokens;
        }
        checked++;
    }
    CHECK(checked >= 8);
    CHECK(accepted > 100);
    realm_engine_free(e);
}

/* The sink notes the step each piece came in; it cancels at piece `at`. */
typedef struct cancel_probe {
    realm_gen *g;
    int at, n_pieces, after_cancel;
    bool cancelled, done;
    int step; /* set by the test before each step */
    int piece_step[MAXG];
    realm_gen_result res;
} cancel_probe;

static void probe_piece(void *ud, const realm_gen_piece *p)
{
    cancel_probe *c = ud;
    if (p->token == REALM_TOKEN_NULL)
        return;
    if (c->cancelled)
        c->after_cancel++;
    if (c->n_pieces < MAXG)
        c->piece_step[c->n_pieces] = c->step;
    if (++c->n_pieces == c->at) {
        realm_gen_cancel(c->g);
        c->cancelled = true;
    }
}

static void probe_done(void *ud, const realm_gen_result *r)
{
    cancel_probe *c = ud;
    c->res = *r;
    c->done = true;
}

static void run_probe(realm_engine *e, cancel_probe *c)
{
    realm_gen_options o = opts(REALM_SPEC_DRAFT, 8, 0, 1, 100);
    o.speculative.p_min = 0;
    const realm_gen_sink sink = {probe_piece, probe_done, c};
    CHECK_RC(realm_engine_submit(e,
                                 &(realm_gen_request){.prompt = case_prompt[0],
                                                      .n_prompt = case_np[0],
                                                      .options = &o,
                                                      .sink = &sink},
                                 &c->g),
             REALM_OK);
    for (c->step = 0; c->step < 1000 && !c->done; c->step++)
        CHECK(realm_engine_step(e) >= 0);
    realm_gen_free(c->g);
}

static void test_cancel_mid_verify(void)
{
    realm_engine *e = engine(draft_q8, 2048, 4);
    cancel_probe full = {.at = -1};
    run_probe(e, &full);
    CHECK_EQ_INT(full.n_pieces, 100);
    /* a piece followed by another of the same step: cancel there */
    int at = -1;
    for (int i = 1; i + 1 < full.n_pieces && at < 0; i++)
        if (full.piece_step[i] == full.piece_step[i + 1] &&
            full.piece_step[i - 1] == full.piece_step[i])
            at = i + 1; /* the middle piece of a run of at least three */
    CHECK_MSG(at > 0, "no step accepted three tokens or more");
    if (at > 0) {
        cancel_probe c = {.at = at};
        run_probe(e, &c);
        CHECK_EQ_INT(c.n_pieces, at);
        CHECK_EQ_INT(c.after_cancel, 0);
        CHECK_EQ_INT(c.res.finish, REALM_FINISH_CANCELLED);
        CHECK_EQ_INT(c.res.n_completion, at);
    }
    realm_engine_stats st;
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.n_running, 0);
    CHECK_EQ_INT(st.kv_blocks_free + st.prefix_blocks, st.kv_blocks_total);
    realm_engine_free(e);
}

/* ---- errors ------------------------------------------------------------------- */

static void test_errors(void)
{
    /* a draft model of another vocabulary (llama's 32000 SentencePiece tokens) */
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/other-vocab.gguf", tmpdir);
    const char *maker = getenv("REALM_MAKE_TEST_MODEL");
    CHECK(maker != NULL);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' 32 1 2 1 64 256 >/dev/null", maker,
             test_data("vocab/ggml-vocab-llama-spm.gguf"), path);
    CHECK_EQ_INT(system(cmd), 0);
    realm_model *other = NULL;
    CHECK_RC(realm_model_load(path, NULL, &other), REALM_OK);
    realm_engine *e = NULL;
    CHECK_RC(
        realm_engine_new(
            model, &(realm_engine_params){.n_ctx = 512, .manual_step = true, .draft = other}, &e),
        REALM_ERR_INVAL);
    CHECK(e == NULL);
    CHECK_MSG(strstr(realm_last_error(), "draft model's vocabulary") != NULL, "message: %s",
              realm_last_error());
    realm_model_free(other);
    /* draft mode by default needs a draft model */
    CHECK_RC(realm_engine_new(model,
                              &(realm_engine_params){
                                  .n_ctx = 512, .manual_step = true, .spec_mode = REALM_SPEC_DRAFT},
                              &e),
             REALM_ERR_INVAL);
    e = engine(NULL, 512, 4);
    realm_gen *g = NULL;
    realm_gen_options o = opts(REALM_SPEC_DRAFT, 4, 0, 1, 8);
    const realm_gen_request rq = {.prompt = case_prompt[0], .n_prompt = case_np[0], .options = &o};
    CHECK_RC(realm_engine_submit(e, &rq, &g), REALM_ERR_INVAL);
    CHECK(strstr(realm_last_error(), "no draft model") != NULL);
    o = opts(REALM_SPEC_LOOKUP, REALM_SPEC_MAX_DRAFT + 1, 0, 1, 8);
    CHECK_RC(realm_engine_submit(e, &rq, &g), REALM_ERR_INVAL);
    o = opts(REALM_SPEC_COUNT, 4, 0, 1, 8);
    CHECK_RC(realm_engine_submit(e, &rq, &g), REALM_ERR_INVAL);
    o = opts(REALM_SPEC_LOOKUP, 4, 0, 1, 8);
    o.speculative.p_min = 1.5f;
    CHECK_RC(realm_engine_submit(e, &rq, &g), REALM_ERR_INVAL);
    o.speculative.p_min = NAN;
    CHECK_RC(realm_engine_submit(e, &rq, &g), REALM_ERR_INVAL);
    o.speculative.p_min = 0.5f;
    o.speculative.n_min = -1;
    CHECK_RC(realm_engine_submit(e, &rq, &g), REALM_ERR_INVAL);
    /* version 2 options: the speculative fields keep their defaults (off here) */
    o = opts(REALM_SPEC_COUNT + 5, 4, 0, 1, 8); /* garbage past version 2's fields */
    o.version = 2;
    out r;
    run1(e, case_prompt[0], case_np[0], &o, &r);
    CHECK_EQ_INT(r.n, 8);
    CHECK_EQ_INT(r.res.draft_tokens, 0);
    realm_engine_free(e);
    CHECK_EQ_STR(realm_spec_mode_name(REALM_SPEC_LOOKUP), "lookup");
    CHECK_EQ_INT(realm_spec_mode_parse("draft"), REALM_SPEC_DRAFT);
    CHECK_EQ_INT(realm_spec_mode_parse("nope"), -1);
}

/* ---- LoRA ---------------------------------------------------------------------- */

static void test_lora(void)
{
    realm_model *tiny = draft_tiny;
    realm_lora *a = NULL;
    CHECK_RC(realm_lora_load(tiny, test_data("lora/tiny-lora-r8.gguf"), &a), REALM_OK);
    if (!a)
        return;
    realm_engine *e = NULL;
    CHECK_RC(realm_engine_new(
                 tiny,
                 &(realm_engine_params){
                     .n_ctx = 1024, .n_threads = 1, .manual_step = true, .batch_invariant = true},
                 &e),
             REALM_OK);
    const realm_lora_item item = {a, 1.0f};
    realm_gen_options o[4];
    const realm_token *p[4];
    int np[4];
    for (int i = 0; i < 4; i++) {
        o[i] = opts(i < 2 ? REALM_SPEC_OFF : REALM_SPEC_LOOKUP, 6, 0, 1, 48);
        if (i % 2 == 0) {
            o[i].lora = &item;
            o[i].n_lora = 1;
        }
        p[i] = case_prompt[1];
        np[i] = case_np[1];
    }
    out r[4];
    run_n(e, 4, p, np, o, r);
    CHECK(!same_tokens(&r[0], &r[1])); /* the adapter matters */
    CHECK_MSG(same_tokens(&r[2], &r[0]) && same_logprobs(&r[2], &r[0]), "lookup under LoRA");
    CHECK_MSG(same_tokens(&r[3], &r[1]) && same_logprobs(&r[3], &r[1]), "lookup without LoRA");
    CHECK(r[2].res.draft_tokens > 0 || r[3].res.draft_tokens > 0);
    realm_engine_free(e);
    realm_lora_free(a);
}

/* ---- set-up -------------------------------------------------------------------- */

static realm_model *quantized(const char *type)
{
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/stories260K-%s.gguf", tmpdir, type);
    const char *bin = getenv("REALM_BIN");
    CHECK(bin != NULL);
    if (!bin)
        return NULL;
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' '%s' %s >/dev/null 2>&1", bin,
             test_data("models/stories260K.gguf"), path, type);
    CHECK_EQ_INT(system(cmd), 0);
    realm_model *m = NULL;
    CHECK_RC(realm_model_load(path, NULL, &m), REALM_OK);
    return m;
}

int main(void)
{
    test_begin("engine_spec", 580);
    CHECK(mkdtemp(tmpdir) != NULL);
    CHECK_RC(realm_model_load(test_data("models/stories260K.gguf"), NULL, &model), REALM_OK);
    CHECK_RC(realm_model_load(test_data("quant/tiny-f32.gguf"), NULL, &draft_tiny), REALM_OK);
    draft_q4 = quantized("q4_0");
    draft_q8 = quantized("q8_0");
    load_cases();
    if (model && draft_q4 && draft_q8 && draft_tiny && n_cases == NCASE) {
        test_greedy_exact();
        test_preemption();
        test_backoff();
        test_prefix_cache();
        test_sampling();
        test_stop_strings();
        test_cancel_mid_verify();
        test_errors();
        test_lora();
    }
    realm_model_free(draft_q4);
    realm_model_free(draft_q8);
    realm_model_free(draft_tiny);
    realm_model_free(model);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    CHECK_EQ_INT(system(cmd), 0);
    return test_end();
}
