/*
 * The generation engine (realm/engine.h) on stories260K:
 *  - greedy output of the reference prompts, all submitted at once (batched,
 *    prompts chunked and mixed with decodes), equals llama.cpp's ids;
 *  - seeded sampling gives the same tokens alone and batched (and, with
 *    batch_invariant, the same log-probabilities to the bit);
 *  - stop strings split across tokens, at the very start; multibyte UTF-8
 *    never split across pieces; stop token ids; text prompts; the sink API;
 *  - cancellation frees KV blocks within one step; overload; context
 *    overflow at submit and finish reason length at the context;
 *  - freeing the engine while a sink cancels a sibling; a failing engine
 *    construction; bad stop strings and weights; requests without a seed
 *    are not all alike.
 * Deterministic: manual stepping where steps are counted, no timing checks.
 */
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <unistd.h>

#include "realm/chat.h"
#include "realm/engine.h"
#include "realm/error.h"
#include "test_util.h"

#define MAXG 256

static realm_model *model;

typedef struct out {
    realm_token ids[MAXG];
    float logprob[MAXG];
    int n;
    char text[4096];
    size_t len;
    int n_pieces;
    realm_gen_result res;
} out;

/* Read every piece of g (blocking) and its result. */
static void collect(realm_gen *g, out *o)
{
    memset(o, 0, sizeof *o);
    realm_gen_piece p;
    int rc;
    while ((rc = realm_gen_next(g, &p, -1)) > 0) {
        o->n_pieces++;
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

/* Manual mode: step until g has ended, then collect. */
static void drive(realm_engine *e, realm_gen *g, out *o)
{
    realm_gen_result r;
    for (int i = 0; i < 10000 && realm_gen_result_get(g, &r) < 0; i++)
        CHECK(realm_engine_step(e) >= 0);
    collect(g, o);
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

static realm_gen_options greedy(int max_tokens)
{
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = max_tokens;
    o.sampling.temperature = 0;
    return o;
}

static void test_batched_greedy_matches_reference(void)
{
    json_error_t jerr;
    json_t *root = json_load_file(test_data("reference/stories260K-greedy.json"), 0, &jerr);
    CHECK_MSG(root != NULL, "json: %s", jerr.text);
    if (!root)
        return;
    /* small chunks and budget: prompts are chunked and share steps with decodes */
    realm_engine *e;
    CHECK_RC(realm_engine_new(
                 model,
                 &(realm_engine_params){
                     .n_ctx = 2048, .n_batch = 16, .max_seqs = 8, .max_chunk = 3, .n_threads = 2},
                 &e),
             REALM_OK);
    json_t *cases = json_object_get(root, "greedy");
    const int nc = (int)json_array_size(cases);
    realm_gen *g[8];
    int ng[8];
    realm_token want[8][MAXG];
    realm_gen_options o = greedy(64);
    o.ignore_eos = true;
    /* every case twice, so eight sequences run together */
    for (int k = 0; k < 2 * nc && k < 8; k++) {
        json_t *cs = json_array_get(cases, (size_t)(k % nc));
        json_t *pids = json_object_get(cs, "prompt_ids"),
               *gids = json_object_get(cs, "generated_ids");
        realm_token ids[MAXG];
        int np = (int)json_array_size(pids);
        for (int j = 0; j < np; j++)
            ids[j] = (realm_token)json_integer_value(json_array_get(pids, (size_t)j));
        ng[k] = (int)json_array_size(gids);
        for (int j = 0; j < ng[k]; j++)
            want[k][j] = (realm_token)json_integer_value(json_array_get(gids, (size_t)j));
        g[k] = submit(e, ids, np, (uint32_t)k, &o);
    }
    for (int k = 0; k < 2 * nc && k < 8; k++) {
        out r;
        collect(g[k], &r);
        CHECK_EQ_INT(r.n, ng[k]);
        int first_bad = -1;
        for (int j = 0; j < r.n && j < ng[k]; j++)
            if (r.ids[j] != want[k][j] && first_bad < 0)
                first_bad = j;
        CHECK_MSG(first_bad < 0, "case %d differs from llama.cpp at token %d", k, first_bad);
        CHECK_EQ_INT(r.res.finish, REALM_FINISH_LENGTH);
        CHECK_EQ_INT(r.res.n_completion, 64);
        realm_gen_free(g[k]);
    }
    realm_engine_stats st;
    realm_engine_get_stats(e, &st);
    CHECK(st.steps > 0);
    realm_engine_free(e);
    json_decref(root);
}

static const realm_token prompt1[] = {1, 403, 407, 261, 378}; /* "Once upon a time" */

/* With batch_invariant, the log-probabilities too are bitwise the same. */
static void test_seeded_alone_vs_batched(bool invariant)
{
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = 48;
    o.ignore_eos = true;
    o.sampling = (realm_sampler_params){.temperature = 1.0f,
                                        .top_k = 40,
                                        .top_p = 0.95f,
                                        .seed = 4242,
                                        .repeat_penalty = 1.1f,
                                        .n_probs = 3};
    out alone, batched;
    realm_engine *e;
    CHECK_RC(realm_engine_new(model,
                              &(realm_engine_params){.n_ctx = 2048,
                                                     .n_threads = 2,
                                                     .manual_step = true,
                                                     .batch_invariant = invariant},
                              &e),
             REALM_OK);
    realm_gen *g = submit(e, prompt1, 5, 0, &o);
    drive(e, g, &alone);
    realm_gen_free(g);
    realm_engine_free(e);

    CHECK_RC(realm_engine_new(model,
                              &(realm_engine_params){.n_ctx = 2048,
                                                     .n_threads = 1,
                                                     .n_batch = 8,
                                                     .max_chunk = 2,
                                                     .max_seqs = 6,
                                                     .batch_invariant = invariant},
                              &e),
             REALM_OK);
    realm_gen *others[5];
    realm_gen_options oo = o;
    const realm_token p2[] = {1, 317, 269, 274, 287, 263, 377, 267, 265, 282, 295, 433};
    for (int i = 0; i < 5; i++) {
        oo.sampling.seed = 7 + (uint64_t)i;
        others[i] = submit(e, i % 2 ? prompt1 : p2, i % 2 ? 5 : 12, (uint32_t)i, &oo);
    }
    g = submit(e, prompt1, 5, 9, &o);
    collect(g, &batched);
    CHECK_EQ_INT(alone.n, 48);
    CHECK_EQ_INT(batched.n, alone.n);
    CHECK(memcmp(alone.ids, batched.ids, sizeof alone.ids[0] * (size_t)alone.n) == 0);
    CHECK_EQ_STR(batched.text, alone.text);
    if (invariant)
        CHECK(memcmp(alone.logprob, batched.logprob, sizeof alone.logprob[0] * (size_t)alone.n) ==
              0);
    /* a different seed gives a different continuation */
    out other;
    collect(others[1], &other);
    CHECK(memcmp(alone.ids, other.ids, sizeof alone.ids[0] * (size_t)alone.n) != 0);
    realm_gen_free(g);
    for (int i = 0; i < 5; i++)
        realm_gen_free(others[i]);
    realm_engine_free(e);
}

/* Greedy "Once upon a time" with the given stop strings. */
static void run_stop(realm_engine *e, const char *const *stop, int n_stop, out *r)
{
    realm_gen_options o = greedy(40);
    o.stop = stop;
    o.n_stop = n_stop;
    realm_gen *g = submit(e, prompt1, 5, 0, &o);
    drive(e, g, r);
    realm_gen_free(g);
}

static void test_stop_strings_and_utf8(void)
{
    realm_engine *e;
    CHECK_RC(
        realm_engine_new(
            model, &(realm_engine_params){.n_ctx = 1024, .n_threads = 2, .manual_step = true}, &e),
        REALM_OK);
    out r;
    run_stop(e, NULL, 0, &r);
    CHECK(strncmp(r.text, ", there was a little girl named Lily.", 37) == 0);
    const char *s1[] = {"girl named"};
    run_stop(e, s1, 1, &r);
    CHECK_EQ_STR(r.text, ", there was a little ");
    CHECK_EQ_INT(r.res.finish, REALM_FINISH_STOP);
    const char *s2[] = {"xyz", "ttle gi"}; /* inside "little girl": across tokens */
    run_stop(e, s2, 2, &r);
    CHECK_EQ_STR(r.text, ", there was a li");
    CHECK_EQ_INT(r.res.finish, REALM_FINISH_STOP);
    const char *s3[] = {", there"}; /* the very start */
    run_stop(e, s3, 1, &r);
    CHECK_EQ_STR(r.text, "");
    CHECK_EQ_INT((int)r.len, 0);
    CHECK_EQ_INT(r.res.finish, REALM_FINISH_STOP);

    /* a stop token id: "there" never comes out */
    realm_gen_options o = greedy(40);
    const realm_token stop_tok = 383; /* second generated token */
    o.stop_tokens = &stop_tok;
    o.n_stop_tokens = 1;
    realm_gen *g = submit(e, prompt1, 5, 0, &o);
    drive(e, g, &r);
    realm_gen_free(g);
    CHECK_EQ_INT(r.n, 1);
    CHECK_EQ_INT(r.res.finish, REALM_FINISH_STOP);
    CHECK_EQ_INT(r.res.n_completion, 1);

    /* U+20AC as three byte tokens forced by bias and a presence penalty:
     * no piece may carry part of the character */
    const realm_tokenizer *tok = realm_engine_tokenizer(e);
    realm_token b[3] = {realm_tokenizer_find(tok, "<0xE2>", 6),
                        realm_tokenizer_find(tok, "<0x82>", 6),
                        realm_tokenizer_find(tok, "<0xAC>", 6)};
    CHECK(b[0] >= 0 && b[1] >= 0 && b[2] >= 0);
    realm_logit_bias bias[3] = {{b[0], 300}, {b[1], 200}, {b[2], 100}};
    o = greedy(3);
    o.sampling.logit_bias = bias;
    o.sampling.n_logit_bias = 3;
    o.sampling.presence_penalty = 250;
    g = submit(e, prompt1, 5, 0, &o);
    realm_gen_result res;
    int texts = 0;
    while (realm_gen_result_get(g, &res) < 0)
        realm_engine_step(e);
    realm_gen_piece p;
    int n = 0;
    while (realm_gen_next(g, &p, 0) > 0) {
        CHECK(p.token == b[n] || p.token == REALM_TOKEN_NULL);
        if (p.len) {
            texts++;
            CHECK_EQ_INT((int)p.len, 3);
            CHECK(memcmp(p.text, "\xE2\x82\xAC", 3) == 0);
        }
        n++;
    }
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(texts, 1);
    realm_gen_free(g);

    /* a raw text prompt tokenizes as the ids above */
    realm_gen *gt = NULL;
    realm_gen_options og = greedy(8);
    realm_token *tids = NULL;
    int32_t n_tids = 0;
    CHECK_RC(realm_chat_prompt_tokenize(
                 realm_engine_tokenizer(e),
                 &(realm_chat_prompt){.text = "Once upon a time", .text_len = 16}, &tids, &n_tids),
             REALM_OK);
    CHECK_EQ_INT(n_tids, 5);
    CHECK_RC(realm_engine_submit(
                 e, &(realm_gen_request){.prompt = tids, .n_prompt = n_tids, .options = &og}, &gt),
             REALM_OK);
    free(tids);
    drive(e, gt, &r);
    CHECK_EQ_INT(r.res.n_prompt, 5);
    CHECK(strncmp(r.text, ", there was a little", 20) == 0);
    realm_gen_free(gt);
    realm_engine_free(e);
}

static void test_cancel_overload_context(void)
{
    realm_engine *e;
    CHECK_RC(realm_engine_new(model,
                              &(realm_engine_params){.n_ctx = 1024,
                                                     .n_ctx_seq = 64,
                                                     .n_threads = 2,
                                                     .max_waiting = 4,
                                                     .max_seqs = 2,
                                                     .n_batch = 32,
                                                     .prefix_cache_entries = -1,
                                                     .manual_step = true},
                              &e),
             REALM_OK);
    realm_engine_stats st;
    realm_engine_get_stats(e, &st);
    const int total = st.kv_blocks_total;
    CHECK_EQ_INT(st.kv_blocks_free, total);

    /* cancellation frees the blocks by the next step */
    realm_gen_options o = greedy(50);
    realm_gen *g = submit(e, prompt1, 5, 0, &o);
    for (int i = 0; i < 4; i++)
        CHECK(realm_engine_step(e) > 0);
    realm_engine_get_stats(e, &st);
    CHECK(st.kv_blocks_free < total);
    CHECK_EQ_INT(st.n_running, 1);
    realm_gen_cancel(g);
    realm_engine_step(e);
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.kv_blocks_free, total);
    CHECK_EQ_INT(st.n_running, 0);
    out r;
    collect(g, &r);
    CHECK_EQ_INT(r.res.finish, REALM_FINISH_CANCELLED);
    CHECK_EQ_INT(r.n, 4);
    realm_gen_free(g);

    /* overload: four wait, the fifth is refused at once */
    realm_gen *w[6] = {0};
    for (int i = 0; i < 4; i++)
        w[i] = submit(e, prompt1, 5, 0, &o);
    realm_gen *x = NULL;
    CHECK_RC(realm_engine_submit(
                 e, &(realm_gen_request){.prompt = prompt1, .n_prompt = 5, .options = &o}, &x),
             REALM_ERR_OVERLOADED);
    CHECK(x == NULL);
    realm_engine_step(e); /* admits two (max_seqs) */
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.n_waiting, 2);
    CHECK_EQ_INT(st.n_running, 2);
    w[4] = submit(e, prompt1, 5, 0, &o);
    w[5] = submit(e, prompt1, 5, 0, &o);
    CHECK_RC(realm_engine_submit(
                 e, &(realm_gen_request){.prompt = prompt1, .n_prompt = 5, .options = &o}, &x),
             REALM_ERR_OVERLOADED);
    /* cancelling waiting requests ends them at the next step */
    for (int i = 0; i < 6; i++)
        realm_gen_cancel(w[i]);
    realm_engine_step(e);
    for (int i = 0; i < 6; i++) {
        collect(w[i], &r);
        CHECK_EQ_INT(r.res.finish, REALM_FINISH_CANCELLED);
        realm_gen_free(w[i]);
    }
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.n_waiting + st.n_running, 0);
    CHECK_EQ_INT(st.kv_blocks_free, total);

    /* context: a prompt over n_ctx_seq is refused at submit; generation
     * that reaches it ends with "length" */
    realm_token long_prompt[70];
    for (int i = 0; i < 70; i++)
        long_prompt[i] = i == 0 ? 1 : 300 + i;
    CHECK_RC(realm_engine_submit(
                 e, &(realm_gen_request){.prompt = long_prompt, .n_prompt = 65, .options = &o}, &x),
             REALM_ERR_RANGE);
    o = greedy(100);
    o.ignore_eos = true;
    g = submit(e, long_prompt, 60, 0, &o);
    drive(e, g, &r);
    CHECK_EQ_INT(r.res.finish, REALM_FINISH_LENGTH);
    CHECK_EQ_INT(r.res.n_completion, 5); /* 60 + 4 fed = 64, the fifth sampled last */
    realm_gen_free(g);
    realm_engine_get_stats(e, &st);
    CHECK_EQ_INT(st.kv_blocks_free, total);

    /* no max_tokens: until the context is full */
    o = greedy(0);
    o.ignore_eos = true;
    g = submit(e, long_prompt, 60, 0, &o);
    drive(e, g, &r);
    CHECK_EQ_INT(r.res.finish, REALM_FINISH_LENGTH);
    CHECK_EQ_INT(r.res.n_completion, 5);
    realm_gen_free(g);

    /* bad requests */
    realm_gen_options bad = greedy(-1);
    CHECK_RC(realm_engine_submit(
                 e, &(realm_gen_request){.prompt = prompt1, .n_prompt = 5, .options = &bad}, &x),
             REALM_ERR_INVAL);
    bad = greedy(4);
    bad.version = 99;
    CHECK_RC(realm_engine_submit(
                 e, &(realm_gen_request){.prompt = prompt1, .n_prompt = 5, .options = &bad}, &x),
             REALM_ERR_INVAL);
    const realm_token oob[] = {1, 100000};
    CHECK_RC(realm_engine_submit(e, &(realm_gen_request){.prompt = oob, .n_prompt = 2}, &x),
             REALM_ERR_INVAL);
    CHECK_RC(realm_engine_submit(e, &(realm_gen_request){.prompt = prompt1, .n_prompt = 0}, &x),
             REALM_ERR_INVAL);
    realm_engine_free(e);
}

typedef struct sink_state {
    int pieces, done;
    char text[1024];
    size_t len;
    realm_gen_result res;
} sink_state;

static void on_piece(void *ud, const realm_gen_piece *p)
{
    sink_state *s = ud;
    s->pieces++;
    if (s->len + p->len < sizeof s->text) {
        memcpy(s->text + s->len, p->text, p->len);
        s->len += p->len;
    }
}

static void on_done(void *ud, const realm_gen_result *r)
{
    sink_state *s = ud;
    s->done++;
    s->res = *r;
}

static void test_sink_and_probs(void)
{
    realm_engine *e;
    CHECK_RC(realm_engine_new(model, &(realm_engine_params){.n_ctx = 1024, .n_threads = 2}, &e),
             REALM_OK);
    sink_state s = {0};
    realm_gen_options o = greedy(20);
    realm_gen *g = NULL;
    CHECK_RC(
        realm_engine_submit(e,
                            &(realm_gen_request){.prompt = prompt1,
                                                 .n_prompt = 5,
                                                 .options = &o,
                                                 .sink = &(realm_gen_sink){on_piece, on_done, &s}},
                            &g),
        REALM_OK);
    realm_gen_wait(g);
    realm_gen_piece p;
    CHECK_EQ_INT(realm_gen_next(g, &p, 100), 0); /* with a sink: only the end */
    realm_gen_free(g);
    realm_engine_free(e); /* joins the scheduler: the sink calls are over */
    CHECK_EQ_INT(s.done, 1);
    CHECK_EQ_INT(s.pieces, 20);
    CHECK_EQ_INT(s.res.finish, REALM_FINISH_LENGTH);
    s.text[s.len] = '\0';
    CHECK(strncmp(s.text, ", there was a little girl", 25) == 0);

    /* n_probs: the greedy token is the most likely one */
    CHECK_RC(realm_engine_new(model, &(realm_engine_params){.n_ctx = 1024, .n_threads = 2}, &e),
             REALM_OK);
    o = greedy(5);
    o.sampling.n_probs = 3;
    g = submit(e, prompt1, 5, 0, &o);
    int n = 0;
    while (realm_gen_next(g, &p, -1) > 0) {
        if (p.token == REALM_TOKEN_NULL)
            continue;
        CHECK_EQ_INT(p.n_probs, 3);
        CHECK_EQ_INT(p.probs[0].token, p.token);
        CHECK_NEAR(p.probs[0].logprob, p.logprob, 1e-6);
        CHECK(p.logprob <= 0 && p.probs[1].logprob <= p.probs[0].logprob);
        n++;
    }
    CHECK_EQ_INT(n, 5);
    realm_gen_free(g);
    /* freeing the engine with a request still running ends it as cancelled */
    o = greedy(200);
    o.ignore_eos = true;
    g = submit(e, prompt1, 5, 0, &o);
    realm_engine_free(e);
    realm_gen_result res;
    CHECK_RC(realm_gen_result_get(g, &res), REALM_OK);
    CHECK_EQ_INT(res.finish, REALM_FINISH_CANCELLED);
    realm_gen_free(g);
}

/* A sink whose on_done cancels its sibling request (allowed by the
 * contract), while realm_engine_free ends both: no deadlock. */
typedef struct sibling {
    realm_gen *other;
    int done;
} sibling;

static void cancel_sibling(void *ud, const realm_gen_result *r)
{
    (void)r;
    sibling *s = ud;
    if (s->other)
        realm_gen_cancel(s->other);
    s->done++;
}

static void test_free_with_sinks_and_bad_input(void)
{
    realm_engine *e;
    CHECK_RC(realm_engine_new(model, &(realm_engine_params){.n_ctx = 1024, .n_threads = 2}, &e),
             REALM_OK);
    realm_token p[8] = {1, 400, 401, 402, 403, 404, 405, 406};
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = 400;
    o.ignore_eos = true;
    sibling sa = {0}, sb = {0};
    realm_gen *a = NULL, *b = NULL;
    const realm_gen_sink ka = {.on_done = cancel_sibling, .ud = &sa},
                         kb = {.on_done = cancel_sibling, .ud = &sb};
    CHECK_RC(
        realm_engine_submit(
            e, &(realm_gen_request){.prompt = p, .n_prompt = 8, .options = &o, .sink = &ka}, &a),
        REALM_OK);
    CHECK_RC(
        realm_engine_submit(
            e, &(realm_gen_request){.prompt = p, .n_prompt = 8, .options = &o, .sink = &kb}, &b),
        REALM_OK);
    sa.other = b;
    sb.other = a;
    alarm(60); /* a deadlock fails the test instead of hanging it */
    realm_engine_free(e);
    alarm(0);
    CHECK_EQ_INT(sa.done, 1);
    CHECK_EQ_INT(sb.done, 1);
    realm_gen_free(a);
    realm_gen_free(b);

    /* an engine whose compute context cannot be made: an error, no crash */
    CHECK_RC(
        realm_engine_new(model, &(realm_engine_params){.n_ctx = 1024, .n_threads = 100000}, &e),
        REALM_ERR_INVAL);
    CHECK(e == NULL);

    CHECK_RC(
        realm_engine_new(model, &(realm_engine_params){.n_ctx = 1024, .manual_step = true}, &e),
        REALM_OK);
    /* a stop string that is not UTF-8 could hold back half a character */
    const char *bad_stop[1] = {"\xA9Z"};
    o.stop = bad_stop;
    o.n_stop = 1;
    CHECK_RC(
        realm_engine_submit(e, &(realm_gen_request){.prompt = p, .n_prompt = 8, .options = &o}, &a),
        REALM_ERR_INVAL);
    o.n_stop = 0;
    /* tenant weights out of range */
    CHECK_RC(realm_engine_set_tenant(e, 1, &(realm_tenant_limits){.weight = INFINITY}),
             REALM_ERR_INVAL);
    CHECK_RC(realm_engine_set_tenant(e, 1, &(realm_tenant_limits){.weight = 1e-9f}),
             REALM_ERR_INVAL);
    CHECK_RC(realm_engine_set_tenant(e, 1, &(realm_tenant_limits){.weight = 5}), REALM_OK);
    /* without a seed, two identical sampled requests differ; with one, not */
    out r[4];
    o.max_tokens = 40;
    o.sampling.temperature = 1;
    for (int i = 0; i < 4; i++) {
        if (i == 2)
            o.sampling.seed = 99;
        a = submit(e, p, 8, 1, &o);
        drive(e, a, &r[i]);
        realm_gen_free(a);
    }
    CHECK(r[0].n != r[1].n || memcmp(r[0].ids, r[1].ids, sizeof r[0].ids[0] * (size_t)r[0].n));
    CHECK(r[2].n == r[3].n && !memcmp(r[2].ids, r[3].ids, sizeof r[2].ids[0] * (size_t)r[2].n));
    realm_engine_free(e);
}

int main(void)
{
    test_begin("engine", 300);
    CHECK_RC(realm_model_load(test_data("models/stories260K.gguf"), NULL, &model), REALM_OK);
    if (!model)
        return test_end();
    test_batched_greedy_matches_reference();
    test_seeded_alone_vs_batched(false);
    test_seeded_alone_vs_batched(true);
    test_stop_strings_and_utf8();
    test_cancel_overload_context();
    test_sink_and_probs();
    test_free_with_sinks_and_bad_input();
    realm_model_free(model);
    return test_end();
}
