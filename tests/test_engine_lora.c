/*
 * LoRA adapters through the generation engine (realm_gen_options.lora), on
 * quant/tiny-f32.gguf with the two shared adapters:
 *  - a request's greedy tokens equal a direct realm_forward_lora loop's, and
 *    differ from the base model's;
 *  - the prefix cache is keyed by adapter set: a prompt computed under one
 *    adapter is never reused under another, another scale, or none (and
 *    the reverse), is reused under the same set however it is written, and
 *    not by an adapter loaded later from the same file (a new id);
 *  - four requests with four different sets (one none) served together,
 *    prompts chunked and mixed with decodes, give each the tokens and
 *    log-probabilities (bitwise, batch_invariant) of its run alone;
 *  - n choices share the leader's adapters; bad sets are refused at submit;
 *    options of version 1 ignore the lora fields.
 */
#include "realm/engine.h"
#include "realm/error.h"
#include "realm/lora.h"
#include "test_util.h"

#define MAXG 64

static realm_model *model;
static realm_lora *r8, *qv;
static int32_t tok[64];

typedef struct out {
    realm_token ids[MAXG];
    float logprob[MAXG];
    int n;
    realm_gen_result res;
} out;

static void collect(realm_gen *g, out *o)
{
    memset(o, 0, sizeof *o);
    realm_gen_piece p;
    int rc;
    while ((rc = realm_gen_next(g, &p, -1)) > 0)
        if (p.token != REALM_TOKEN_NULL && o->n < MAXG) {
            o->logprob[o->n] = p.logprob;
            o->ids[o->n++] = p.token;
        }
    CHECK_EQ_INT(rc, 0);
    CHECK_RC(realm_gen_result_get(g, &o->res), REALM_OK);
}

static void drive(realm_engine *e, realm_gen *g, out *o)
{
    realm_gen_result r;
    for (int i = 0; i < 10000 && realm_gen_result_get(g, &r) < 0; i++)
        CHECK(realm_engine_step(e) >= 0);
    collect(g, o);
}

static realm_gen_options opts(int max_tokens, const realm_lora_item *items, int n)
{
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = max_tokens;
    o.ignore_eos = true;
    o.sampling.temperature = 0;
    o.lora = items;
    o.n_lora = n;
    return o;
}

static realm_gen *submit(realm_engine *e, int np, uint32_t tenant, const realm_gen_options *o)
{
    realm_gen *g = NULL;
    CHECK_RC(
        realm_engine_submit(
            e, &(realm_gen_request){.prompt = tok, .n_prompt = np, .tenant = tenant, .options = o},
            &g),
        REALM_OK);
    return g;
}

static realm_engine *engine(bool invariant, int n_batch, int max_chunk)
{
    realm_engine *e = NULL;
    CHECK_RC(realm_engine_new(model,
                              &(realm_engine_params){.n_ctx = 1024,
                                                     .block_size = 16,
                                                     .n_batch = n_batch,
                                                     .max_chunk = max_chunk,
                                                     .max_seqs = 8,
                                                     .n_threads = 2,
                                                     .manual_step = true,
                                                     .batch_invariant = invariant},
                              &e),
             REALM_OK);
    return e;
}

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b])
            b = i;
    return b;
}

/* Greedy n tokens after tok[0..np) with set (NULL: none), forward by forward. */
static void direct_greedy(const realm_lora_set *set, int np, int n, realm_token *ids)
{
    realm_kv_cache *kv;
    realm_ctx *ctx;
    CHECK_RC(realm_kv_cache_new(model, &(realm_kv_params){.n_ctx = 256}, &kv), REALM_OK);
    CHECK_RC(realm_ctx_new(model, kv, &(realm_ctx_params){.n_batch = 64, .n_threads = 2}, &ctx),
             REALM_OK);
    const int nv = realm_model_hparams(model)->n_vocab;
    float *logits = malloc(sizeof(float) * (size_t)nv);
    int32_t seq, pos[64], seqs[64], sets[64];
    realm_kv_seq_new(kv, &seq);
    for (int i = 0; i < 64; i++) {
        pos[i] = i;
        seqs[i] = seq;
        sets[i] = set ? 0 : -1;
    }
    const realm_batch_lora bl = {sets, set, set ? 1 : 0};
    CHECK_RC(realm_forward_lora(ctx, &(realm_batch){np, tok, pos, seqs, NULL}, &bl, logits),
             REALM_OK);
    for (int i = 0; i < n; i++) {
        ids[i] = argmax(logits, nv);
        if (i + 1 < n)
            CHECK_RC(realm_forward_lora(ctx, &(realm_batch){1, &ids[i], &pos[np + i], &seq, NULL},
                                        &bl, logits),
                     REALM_OK);
    }
    free(logits);
    realm_ctx_free(ctx);
    realm_kv_cache_free(kv);
}

static void test_engine_equals_direct(void)
{
    const realm_lora_item it[] = {{r8, 1.0f}};
    const realm_lora_set set = {1, it};
    realm_token want[16], base[16];
    direct_greedy(&set, 12, 16, want);
    direct_greedy(NULL, 12, 16, base);
    CHECK_MSG(memcmp(want, base, sizeof want) != 0, "the adapter changes no token");
    realm_engine *e = engine(false, 512, 512);
    realm_gen_options o = opts(16, it, 1);
    realm_gen *g = submit(e, 12, 0, &o);
    out r;
    drive(e, g, &r);
    realm_gen_free(g);
    CHECK_EQ_INT(r.n, 16);
    CHECK_MSG(memcmp(r.ids, want, sizeof want) == 0,
              "engine with r8: not the direct greedy tokens");
    /* two choices of the same request: each has the adapter */
    realm_gen *gs[2];
    CHECK_RC(realm_engine_submit_n(
                 e, &(realm_gen_request){.prompt = tok, .n_prompt = 12, .tenant = 1, .options = &o},
                 2, gs),
             REALM_OK);
    for (int i = 0; i < 2; i++) {
        drive(e, gs[i], &r);
        CHECK_MSG(memcmp(r.ids, want, sizeof want) == 0, "choice %d lacks the adapter", i);
        realm_gen_free(gs[i]);
    }
    realm_engine_free(e);
}

/* One request of 40 prompt tokens and 4 more with these adapters; its count
 * of tokens taken from the prefix cache. */
static int32_t cached(realm_engine *e, const realm_lora_item *items, int n, out *r)
{
    realm_gen_options o = opts(4, items, n);
    realm_gen *g = submit(e, 40, 3, &o);
    drive(e, g, r);
    realm_gen_free(g);
    return r->res.n_cached;
}

static void test_prefix_cache_keyed(void)
{
    realm_engine *e = engine(true, 512, 512);
    const realm_lora_item a1[] = {{r8, 1.0f}}, a05[] = {{r8, 0.5f}}, q1[] = {{qv, 1.0f}};
    const realm_lora_item both1[] = {{r8, 1.0f}, {qv, 1.0f}}, both2[] = {{qv, 1.0f}, {r8, 1.0f}};
    out first, r;
    CHECK_EQ_INT(cached(e, a1, 1, &first), 0);
    CHECK_EQ_INT(cached(e, NULL, 0, &r), 0); /* r8's prefix is not the base model's */
    CHECK_MSG(memcmp(first.ids, r.ids, sizeof first.ids) != 0, "the adapter changes nothing");
    const int32_t hit = cached(e, a1, 1, &r);
    CHECK_MSG(hit >= 32, "the same adapter again: %d tokens cached", hit);
    CHECK(memcmp(first.ids, r.ids, sizeof first.ids) == 0);
    CHECK(memcmp(first.logprob, r.logprob, sizeof first.logprob) == 0);
    CHECK_EQ_INT(cached(e, a05, 1, &r), 0); /* another scale */
    CHECK_EQ_INT(cached(e, q1, 1, &r), 0);  /* another adapter */
    CHECK(cached(e, NULL, 0, &r) >= 32);    /* the base model's own entry */
    CHECK_EQ_INT(cached(e, both1, 2, &r), 0);
    CHECK(cached(e, both2, 2, &r) >= 32); /* the same set written in another order */
    /* an adapter loaded again from the same file is another adapter */
    realm_lora *again = NULL;
    CHECK_RC(realm_lora_load(model, test_data("lora/tiny-lora-r8.gguf"), &again), REALM_OK);
    const realm_lora_item ag[] = {{again, 1.0f}};
    CHECK_EQ_INT(cached(e, ag, 1, &r), 0);
    CHECK(memcmp(first.ids, r.ids, sizeof first.ids) == 0); /* but computes the same */
    realm_engine_free(e);
    realm_lora_free(again);
}

/* Four sets (one none), seeded sampling, batch_invariant: served together as
 * alone. */
static void test_mixed_requests(void)
{
    const realm_lora_item s0[] = {{r8, 1.0f}}, s1[] = {{qv, 1.0f}}, s2[] = {{r8, 0.5f}, {qv, 1.0f}};
    const realm_lora_item *sets[4] = {s0, s1, s2, NULL};
    const int ns[4] = {1, 1, 2, 0}, np[4] = {20, 9, 31, 14};
    out alone[4], together[4];
    uint64_t steps_alone = 0;
    for (int i = 0; i < 4; i++) {
        realm_engine *e = engine(true, 512, 512);
        realm_gen_options o = opts(24, sets[i], ns[i]);
        o.sampling =
            (realm_sampler_params){.temperature = 1.0f, .seed = 11 + (uint64_t)i, .n_probs = 1};
        realm_gen *g = submit(e, np[i], (uint32_t)i, &o);
        drive(e, g, &alone[i]);
        realm_gen_free(g);
        realm_engine_stats st;
        realm_engine_get_stats(e, &st);
        steps_alone += st.steps;
        realm_engine_free(e);
    }
    realm_engine *e = engine(true, 12, 5); /* prompts chunked, sharing steps with decodes */
    realm_gen *g[4];
    for (int i = 0; i < 4; i++) {
        realm_gen_options o = opts(24, sets[i], ns[i]);
        o.sampling =
            (realm_sampler_params){.temperature = 1.0f, .seed = 11 + (uint64_t)i, .n_probs = 1};
        g[i] = submit(e, np[i], (uint32_t)i, &o);
    }
    realm_gen_result r;
    for (int k = 0; k < 10000 && realm_gen_result_get(g[0], &r) < 0; k++)
        CHECK(realm_engine_step(e) >= 0);
    for (int i = 0; i < 4; i++) {
        drive(e, g[i], &together[i]);
        realm_gen_free(g[i]);
        CHECK_EQ_INT(together[i].n, 24);
        CHECK_MSG(memcmp(alone[i].ids, together[i].ids, sizeof alone[i].ids) == 0,
                  "request %d: other tokens together than alone", i);
        CHECK_MSG(memcmp(alone[i].logprob, together[i].logprob, sizeof alone[i].logprob) == 0,
                  "request %d: other log-probabilities together than alone", i);
    }
    for (int i = 1; i < 4; i++)
        CHECK(memcmp(alone[0].ids, alone[i].ids, sizeof alone[0].ids) != 0);
    realm_engine_stats st;
    realm_engine_get_stats(e, &st);
    printf("  four adapter sets: %llu steps together, %llu alone\n", (unsigned long long)st.steps,
           (unsigned long long)steps_alone);
    CHECK(st.steps < steps_alone);
    realm_engine_free(e);
}

static void test_bad_sets(void)
{
    realm_engine *e = engine(false, 512, 512);
    realm_model *other;
    CHECK_RC(realm_model_load(test_data("quant/tiny-f32.gguf"), NULL, &other), REALM_OK);
    realm_lora *foreign = NULL;
    CHECK_RC(realm_lora_load(other, test_data("lora/tiny-lora-qv-r4.gguf"), &foreign), REALM_OK);
    realm_gen *g = (realm_gen *)1;
    const realm_lora_item fi[] = {{foreign, 1.0f}};
    realm_gen_options o = opts(4, fi, 1);
    CHECK_RC(realm_engine_submit(
                 e, &(realm_gen_request){.prompt = tok, .n_prompt = 4, .options = &o}, &g),
             REALM_ERR_INVAL);
    CHECK(g == NULL);
    CHECK_MSG(strstr(realm_last_error(), "another model") != NULL, "%s", realm_last_error());
    realm_lora_item nine[9];
    for (int i = 0; i < 9; i++)
        nine[i] = (realm_lora_item){r8, 1.0f};
    o = opts(4, nine, 9);
    CHECK_RC(realm_engine_submit(
                 e, &(realm_gen_request){.prompt = tok, .n_prompt = 4, .options = &o}, &g),
             REALM_ERR_INVAL);
    o = opts(4, NULL, 1);
    CHECK_RC(realm_engine_submit(
                 e, &(realm_gen_request){.prompt = tok, .n_prompt = 4, .options = &o}, &g),
             REALM_ERR_INVAL);
    const realm_lora_item nan_item[] = {{r8, NAN}};
    o = opts(4, nan_item, 1);
    CHECK_RC(realm_engine_submit(
                 e, &(realm_gen_request){.prompt = tok, .n_prompt = 4, .options = &o}, &g),
             REALM_ERR_INVAL);
    /* a version-1 caller's options end before the lora fields */
    o = opts(16, (const realm_lora_item *)8, 77);
    o.version = 1;
    g = submit(e, 12, 0, &o);
    out r;
    drive(e, g, &r);
    realm_gen_free(g);
    realm_token base[16];
    direct_greedy(NULL, 12, 16, base);
    CHECK(r.n == 16 && memcmp(r.ids, base, sizeof base) == 0);
    realm_engine_free(e);
    realm_lora_free(foreign);
    realm_model_free(other);
}

int main(void)
{
    test_begin("engine_lora", 600);
    FILE *f = fopen(test_data("reference/tiny-tokens.txt"), "r");
    int n = 0;
    while (f && n < 64 && fscanf(f, "%d", &tok[n]) == 1)
        n++;
    if (f)
        fclose(f);
    CHECK_EQ_INT(n, 59);
    CHECK_RC(realm_model_load(test_data("quant/tiny-f32.gguf"), NULL, &model), REALM_OK);
    CHECK_RC(realm_lora_load(model, test_data("lora/tiny-lora-r8.gguf"), &r8), REALM_OK);
    CHECK_RC(realm_lora_load(model, test_data("lora/tiny-lora-qv-r4.gguf"), &qv), REALM_OK);
    if (model && r8 && qv) {
        test_engine_equals_direct();
        test_prefix_cache_keyed();
        test_mixed_requests();
        test_bad_sets();
    }
    realm_lora_free(r8);
    realm_lora_free(qv);
    realm_model_free(model);
    return test_end();
}
