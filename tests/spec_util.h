/*
 * Shared by test_engine_spec.c and test_engine_spec_dist.c: stories260K as
 * the target, draft models quantized from it with `realm quantize` into a
 * temporary directory (Q4_0, Q8_0) and quant/tiny-f32 (same vocabulary,
 * another shape), the reference prompts of stories260K-greedy.json, and
 * helpers to run requests on a manual-step engine.
 */
#ifndef REALM_TEST_SPEC_UTIL_H
#define REALM_TEST_SPEC_UTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "realm/engine.h"
#include "realm/error.h"
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

static inline void collect(realm_gen *g, out *o)
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
static inline void run_n(realm_engine *e, int n, const realm_token *const *prompt,
                         const int *n_prompt, const realm_gen_options *o, out *outs)
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

static inline void run1(realm_engine *e, const realm_token *prompt, int n_prompt,
                        const realm_gen_options *o, out *r)
{
    run_n(e, 1, &prompt, &n_prompt, o, r);
}

static inline realm_gen_options opts(int32_t mode, int32_t n_max, float temperature, uint64_t seed,
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

static inline bool same_tokens(const out *a, const out *b)
{
    return a->n == b->n && memcmp(a->ids, b->ids, sizeof a->ids[0] * (size_t)a->n) == 0;
}

static inline bool same_logprobs(const out *a, const out *b)
{
    return a->n == b->n && memcmp(a->logprob, b->logprob, sizeof a->logprob[0] * (size_t)a->n) == 0;
}

/* ---- the reference prompts -------------------------------------------------- */

#define NCASE 4
static realm_token case_prompt[NCASE][32];
static int case_np[NCASE];
static realm_token case_want[NCASE][64];
static int n_cases;

static inline void load_cases(void)
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

static inline bool equals_reference(const out *r, int c)
{
    return r->n == 64 && memcmp(r->ids, case_want[c], sizeof r->ids[0] * 64) == 0;
}

/* Greedy: every mode, alone and batched, gives the tokens and log-probabilities
 * of the run without speculation, and llama.cpp's tokens. */
/* ---- set-up -------------------------------------------------------------------- */

static inline realm_model *quantized(const char *type)
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

/* Load the models (quantizing the drafts) and the reference prompts; false
 * if anything is missing. */
static inline bool spec_setup(void)
{
    CHECK(mkdtemp(tmpdir) != NULL);
    CHECK_RC(realm_model_load(test_data("models/stories260K.gguf"), NULL, &model), REALM_OK);
    CHECK_RC(realm_model_load(test_data("quant/tiny-f32.gguf"), NULL, &draft_tiny), REALM_OK);
    draft_q4 = quantized("q4_0");
    draft_q8 = quantized("q8_0");
    load_cases();
    return model && draft_q4 && draft_q8 && draft_tiny && n_cases == NCASE;
}

static inline void spec_teardown(void)
{
    realm_model_free(draft_q4);
    realm_model_free(draft_q8);
    realm_model_free(draft_tiny);
    realm_model_free(model);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    CHECK_EQ_INT(system(cmd), 0);
}

#endif
