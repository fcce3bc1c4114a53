/*
 * Speculative decoding in the engine (realm/engine.h), stories260K as the
 * target, drafts by prompt lookup and by draft models (spec_util.h):
 *  - greedy: tokens (and log-probabilities, batch_invariant) bitwise those
 *    of the run without speculation and llama.cpp's references, alone with
 *    K = 2, 4, 8 and in batches of 8 mixing the modes; a draft of another
 *    shape (quant/tiny-f32, same vocabulary) too; n choices;
 *  - preemption under a small KV pool gives the same tokens; the prefix
 *    cache after speculative runs; the back-off bounds a step's rows;
 *  - stop strings ending inside accepted runs; cancellation from the sink
 *    in the middle of a step's accepted run (nothing after it);
 *  - a draft model with another vocabulary refused; bad options;
 *  - LoRA: lookup and a draft model (stories260K drafting for quant/tiny-f32)
 *    under an adapter give the tokens of the run without speculation.
 * The sampling side is test_engine_spec_dist.c.
 */
#include <math.h>

#include "realm/lora.h"
#include "spec_util.h"

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
    o.speculative.n_min = -2;
    CHECK_RC(realm_engine_submit(e, &rq, &g), REALM_ERR_INVAL);
    o.speculative.n_min = 0;
    o.speculative.p_min = -0.5f; /* -1 is the engine's default; other negatives are wrong */
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
    /* stories260K (the same vocabulary) drafts for tiny-f32 here: the
     * adapter is the target's; the draft drafts without it */
    realm_engine *e = NULL;
    CHECK_RC(realm_engine_new(tiny,
                              &(realm_engine_params){.n_ctx = 1024,
                                                     .n_threads = 1,
                                                     .manual_step = true,
                                                     .batch_invariant = true,
                                                     .draft = model},
                              &e),
             REALM_OK);
    const realm_lora_item item = {a, 1.0f};
    realm_gen_options o[6];
    const realm_token *p[6];
    int np[6];
    for (int i = 0; i < 6; i++) {
        o[i] = opts(i < 2   ? REALM_SPEC_OFF
                    : i < 4 ? REALM_SPEC_LOOKUP
                            : REALM_SPEC_DRAFT,
                    6, 0, 1, 48);
        o[i].speculative.p_min = 0;
        if (i % 2 == 0) {
            o[i].lora = &item;
            o[i].n_lora = 1;
        }
        p[i] = case_prompt[1];
        np[i] = case_np[1];
    }
    out r[6];
    run_n(e, 6, p, np, o, r);
    CHECK(!same_tokens(&r[0], &r[1])); /* the adapter matters */
    CHECK_MSG(same_tokens(&r[2], &r[0]) && same_logprobs(&r[2], &r[0]), "lookup under LoRA");
    CHECK_MSG(same_tokens(&r[3], &r[1]) && same_logprobs(&r[3], &r[1]), "lookup without LoRA");
    CHECK_MSG(same_tokens(&r[4], &r[0]) && same_logprobs(&r[4], &r[0]), "draft under LoRA");
    CHECK_MSG(same_tokens(&r[5], &r[1]) && same_logprobs(&r[5], &r[1]), "draft without LoRA");
    CHECK(r[2].res.draft_tokens > 0 || r[3].res.draft_tokens > 0);
    CHECK(r[4].res.draft_tokens > 0 && r[5].res.draft_tokens > 0);
    realm_engine_free(e);
    realm_lora_free(a);
}

int main(void)
{
    test_begin("engine_spec", 580);
    if (spec_setup()) {
        test_greedy_exact();
        test_preemption();
        test_backoff();
        test_prefix_cache();
        test_stop_strings();
        test_cancel_mid_verify();
        test_errors();
        test_lora();
    }
    spec_teardown();
    return test_end();
}
