/*
 * Long contexts and RoPE scaling, against llama.cpp:
 *  - the models of rope_models.h (YaRN, linear, Llama 3.1 rope_freqs, qwen2
 *    with YaRN; written here with Realm's GGUF writer) run over 8192 and more
 *    positions, up to their training context; logits at positions across the
 *    run match llama.cpp's (the .ref files of tests/data/rope, made as their
 *    README says) within the F32 tolerance of the shared logits tests, with
 *    the model's own RoPE and with llama.cpp's overrides (--rope-scaling,
 *    --rope-freq-base, --rope-freq-scale, --yarn-*) set through
 *    realm_model_params.rope;
 *  - the references of one model under different options differ by far more
 *    than the tolerance, so each option changes the computation as
 *    llama.cpp's does;
 *  - hyper-parameters as resolved (YaRN's magnitude, the ramp's ends, the
 *    overrides' precedence), bad overrides and unknown scaling types refused
 *    with a clear error;
 *  - a position past the KV pool (the configured context) is refused, and
 *    the engine refuses a prompt longer than its context, naming both sizes;
 *  - the registry loads its models with realm_registry_params.model.
 */
#include <errno.h>
#include <sys/stat.h>

#include "model/model_internal.h"
#include "realm/engine.h"
#include "realm/error.h"
#include "realm/model.h"
#include "realm/registry.h"
#include "rope_models.h"
#include "test_util.h"

#define TOL_MAX    0.005 /* F32, as the shared logits tests (testdata/README.md) */
#define MAX_CHECKS 16
#define BATCH      512

static char dir[256];

static const char *model_path(const char *name)
{
    static char buf[4][512];
    static int slot;
    char *p = buf[slot++ % 4];
    snprintf(p, 512, "%s/%s.gguf", dir, name);
    return p;
}

/* ---- references -------------------------------------------------------------- */

typedef struct ref_logits {
    int32_t n_tokens, stride, n_pos;
    int32_t pos[MAX_CHECKS];
    float *v; /* n_pos rows of ceil(n_vocab / stride) */
    int32_t row;
} ref_logits;

/* tests/data/rope/NAME, the format tests/tools/llama_rope_logits.c prints. */
static bool ref_read(const char *name, ref_logits *r)
{
    char path[4096];
    const char *src = getenv("REALM_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/tests/data/rope/%s", src ? src : "..", name);
    FILE *f = fopen(path, "r");
    *r = (ref_logits){0};
    if (f == NULL || fscanf(f, " tokens %d stride %d", &r->n_tokens, &r->stride) != 2 ||
        r->stride < 1) {
        fprintf(stderr, "cannot read %s\n", path);
        if (f)
            fclose(f);
        return false;
    }
    r->row = (ROPE_MODEL_N_VOCAB + r->stride - 1) / r->stride;
    r->v = malloc((size_t)MAX_CHECKS * (size_t)r->row * sizeof *r->v);
    while (r->n_pos < MAX_CHECKS && fscanf(f, " pos %d", &r->pos[r->n_pos]) == 1) {
        for (int32_t j = 0; j < r->row; j++)
            if (fscanf(f, "%f", &r->v[(size_t)r->n_pos * r->row + j]) != 1) {
                fprintf(stderr, "%s: short row at pos %d\n", path, r->pos[r->n_pos]);
                fclose(f);
                return false;
            }
        r->n_pos++;
    }
    fclose(f);
    return r->n_pos > 0;
}

/* Largest difference between two references' rows at the positions they share. */
static double ref_distance(const ref_logits *a, const ref_logits *b)
{
    double d = 0;
    for (int32_t i = 0; i < a->n_pos; i++)
        for (int32_t j = 0; j < b->n_pos; j++)
            if (a->pos[i] == b->pos[j])
                for (int32_t k = 0; k < a->row; k++) {
                    const double x =
                        fabs((double)a->v[(size_t)i * a->row + k] - b->v[(size_t)j * b->row + k]);
                    d = x > d ? x : d;
                }
    return d;
}

/* ---- Realm's logits ------------------------------------------------------------ */

/*
 * Feed the first r->n_tokens tokens to one sequence in batches of BATCH and
 * compare the logits at r's positions with r. The KV pool holds exactly
 * n_ctx tokens; with `beyond`, one token more is then refused.
 */
static double run_and_compare(realm_model *m, const ref_logits *r, int32_t n_ctx, bool beyond)
{
    realm_kv_cache *kv = NULL;
    realm_ctx *ctx = NULL;
    double worst = INFINITY;
    CHECK_RC(realm_kv_cache_new(m, &(realm_kv_params){.n_ctx = n_ctx}, &kv), REALM_OK);
    CHECK_RC(realm_ctx_new(m, kv, &(realm_ctx_params){.n_batch = BATCH, .n_threads = 2}, &ctx),
             REALM_OK);
    if (kv == NULL || ctx == NULL)
        goto done;
    const int n_vocab = realm_model_hparams(m)->n_vocab;
    float *logits = malloc((size_t)BATCH * (size_t)n_vocab * sizeof *logits);
    int32_t tok[BATCH], pos[BATCH], seqs[BATCH], seq;
    bool want[BATCH];
    CHECK_RC(realm_kv_seq_new(kv, &seq), REALM_OK);
    worst = 0;
    int32_t next = 0; /* index of the next reference position */
    for (int32_t at = 0; at < r->n_tokens; at += BATCH) {
        const int32_t len = r->n_tokens - at < BATCH ? r->n_tokens - at : BATCH;
        for (int32_t i = 0; i < len; i++) {
            tok[i] = rope_model_token(at + i);
            pos[i] = at + i;
            seqs[i] = seq;
            want[i] = false;
            for (int32_t k = 0; k < r->n_pos; k++)
                want[i] |= r->pos[k] == at + i;
        }
        int rc = realm_forward(ctx, &(realm_batch){len, tok, pos, seqs, want}, logits);
        if (rc < 0) {
            CHECK_MSG(0, "forward at %d: %s", at, realm_last_error());
            worst = INFINITY;
            break;
        }
        for (int32_t i = 0, out = 0; i < len; i++) {
            if (!want[i])
                continue;
            const float *got = logits + (size_t)out++ * n_vocab;
            CHECK_EQ_INT(r->pos[next], at + i);
            const float *ref = r->v + (size_t)next++ * r->row;
            for (int32_t k = 0; k < r->row; k++) {
                const double d = fabs((double)got[k * r->stride] - ref[k]);
                worst = d > worst || isnan(d) ? d : worst;
            }
        }
    }
    CHECK_EQ_INT(next, r->n_pos);
    if (beyond && worst < INFINITY) {
        /* the pool is full: the next position is past the configured context */
        CHECK_EQ_INT(realm_kv_seq_len(kv, seq), n_ctx);
        tok[0] = rope_model_token(n_ctx);
        pos[0] = n_ctx;
        int rc = realm_forward(ctx, &(realm_batch){1, tok, pos, &seq, NULL}, logits);
        CHECK_EQ_INT(rc, REALM_ERR_NOSPACE);
        CHECK_MSG(strstr(realm_last_error(), "KV cache full") != NULL, "message: %s",
                  realm_last_error());
        CHECK_EQ_INT(realm_kv_seq_len(kv, seq), n_ctx);
    }
    free(logits);
done:
    realm_ctx_free(ctx);
    realm_kv_cache_free(kv);
    return worst;
}

/* One reference: the file, its model, the overrides llama.cpp ran with. */
typedef struct ref_case {
    const char *file, *model;
    realm_rope_params rope;
} ref_case;

static const ref_case cases[] = {
    {"rope-yarn.ref", "rope-yarn", {0}},
    {"rope-yarn-none.ref", "rope-yarn", {.scaling = REALM_ROPE_SCALING_NONE}},
    {"rope-yarn-base20000.ref", "rope-yarn", {.freq_base = 20000}},
    {"rope-yarn-knobs.ref",
     "rope-yarn",
     {.yarn_orig_ctx = 2048,
      .has_yarn_ext_factor = true,
      .yarn_ext_factor = 0.5f,
      .yarn_beta_fast = 16,
      .yarn_beta_slow = 2}},
    {"rope-linear.ref", "rope-linear", {0}},
    {"rope-linear-yarn.ref",
     "rope-linear",
     {.scaling = REALM_ROPE_SCALING_YARN, .yarn_orig_ctx = 4096}},
    {"rope-linear-scale.ref", "rope-linear", {.freq_scale = 0.25f, .yarn_attn_factor = 0.8f}},
    {"rope-llama3.ref", "rope-llama3", {0}},
    {"rope-qwen2.ref", "rope-qwen2", {0}},
    {"rope-qwen2-none.ref", "rope-qwen2", {.scaling = REALM_ROPE_SCALING_NONE}},
    {"rope-llama3-yarn.ref",
     "rope-llama3",
     {.scaling = REALM_ROPE_SCALING_YARN, .freq_scale = 0.25f, .yarn_orig_ctx = 8192}},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static void test_references(void)
{
    static ref_logits refs[N_CASES];
    for (size_t c = 0; c < N_CASES; c++) {
        const ref_case *k = &cases[c];
        CHECK_MSG(ref_read(k->file, &refs[c]), "%s", k->file);
        if (refs[c].n_pos == 0)
            continue;
        realm_model *m = NULL;
        CHECK_RC(realm_model_load(model_path(k->model), &(realm_model_params){.rope = k->rope}, &m),
                 REALM_OK);
        if (m == NULL)
            continue;
        const realm_hparams *hp = realm_model_hparams(m);
        /* the model's own RoPE over 8192 positions and more (the whole
         * training context of rope-linear), the overrides over 2112 */
        const realm_rope_params *o = &k->rope;
        const bool own = !o->scaling && !o->freq_base && !o->freq_scale && !o->yarn_orig_ctx &&
                         !o->has_yarn_ext_factor && !o->yarn_attn_factor && !o->yarn_beta_fast &&
                         !o->yarn_beta_slow;
        CHECK(refs[c].n_tokens <= hp->n_ctx_train);
        CHECK(refs[c].n_tokens >= (own ? 8192 : 2112));
        const bool full = refs[c].n_tokens == hp->n_ctx_train;
        const double d = run_and_compare(m, &refs[c], refs[c].n_tokens, full);
        printf("  %-26s %5d tokens (%s, base %g, scale %g, mscale %.4f): max diff %.5f\n", k->file,
               refs[c].n_tokens, realm_rope_scaling_name(hp->rope_scaling), hp->rope_freq_base,
               hp->rope_freq_scale, hp->rope_attn_factor, d);
        CHECK_MSG(d <= TOL_MAX, "%s: max diff %.5f > %.3f", k->file, d, TOL_MAX);
        realm_model_free(m);
    }
    /* Every option moves the logits far more than the tolerance. */
    for (size_t a = 0; a < N_CASES; a++)
        for (size_t b = a + 1; b < N_CASES; b++) {
            if (strcmp(cases[a].model, cases[b].model) != 0 || !refs[a].n_pos || !refs[b].n_pos)
                continue;
            const double d = ref_distance(&refs[a], &refs[b]);
            CHECK_MSG(d > 20 * TOL_MAX, "%s and %s differ by %.4f only", cases[a].file,
                      cases[b].file, d);
        }
    for (size_t c = 0; c < N_CASES; c++)
        free(refs[c].v);
}

/* ---- hyper-parameters -------------------------------------------------------------- */

static void test_hparams(void)
{
    realm_model *m = NULL;
    CHECK_RC(realm_model_load(model_path("rope-yarn"), NULL, &m), REALM_OK);
    if (m != NULL) {
        const realm_hparams *hp = realm_model_hparams(m);
        CHECK_EQ_INT(hp->n_ctx_train, 16384);
        CHECK_EQ_INT(hp->rope_scaling, REALM_ROPE_SCALING_YARN);
        CHECK_NEAR(hp->rope_freq_scale, 0.25, 0);
        CHECK_EQ_INT(hp->rope_n_ctx_orig, 4096);
        CHECK_NEAR(hp->rope_ext_factor, 1, 0);
        CHECK_NEAR(hp->rope_beta_fast, 32, 0);
        CHECK_NEAR(hp->rope_beta_slow, 1, 0);
        /* llama.cpp's magnitude over the rotation's own 1 + 0.1 ln 4: about 1 */
        CHECK_NEAR(hp->rope_attn_factor, 1, 1e-6);
        /* YaRN at work: the fastest pair keeps its angle, the slowest is
         * stretched 4x, and cos/sin have the magnitude 1 + 0.1 ln 4 */
        float cs[16], sn[16];
        const int32_t p = 7000;
        realm__rope_cache(hp, NULL, p, cs, sn);
        const double mag = 1 + 0.1 * log(4.0);
        CHECK_NEAR(cs[0], mag * cos(p), 1e-5);
        CHECK_NEAR(sn[0], mag * sin(p), 1e-5);
        const double slow = p * 0.25 * pow(10000.0, -30.0 / 32);
        CHECK_NEAR(cs[15], mag * cos(slow), 1e-5);
        CHECK_NEAR(sn[15], mag * sin(slow), 1e-5);
        for (int i = 0; i < 16; i++)
            CHECK_NEAR(hypot(cs[i], sn[i]), mag, 1e-5);
        realm_model_free(m);
    }

    /* Overrides: none forces scale 1 whatever freq_scale says; the ext
     * factor switches YaRN on or off whatever the type. */
    static const struct {
        const char *model;
        realm_rope_params o;
        realm_rope_scaling type;
        float scale, ext, base;
        int32_t orig;
    } ov[] = {
        {"rope-yarn",
         {.scaling = REALM_ROPE_SCALING_NONE, .freq_scale = 0.5f},
         REALM_ROPE_SCALING_NONE,
         1,
         0,
         10000,
         4096},
        {"rope-yarn",
         {.scaling = REALM_ROPE_SCALING_LINEAR},
         REALM_ROPE_SCALING_LINEAR,
         0.25f,
         0,
         10000,
         4096},
        {"rope-yarn",
         {.has_yarn_ext_factor = true, .yarn_ext_factor = 0},
         REALM_ROPE_SCALING_YARN,
         0.25f,
         0,
         10000,
         4096},
        {"rope-linear", {0}, REALM_ROPE_SCALING_LINEAR, 0.5f, 0, 10000, 8192},
        {"rope-linear",
         {.scaling = REALM_ROPE_SCALING_YARN, .freq_base = 40000, .yarn_orig_ctx = 1000},
         REALM_ROPE_SCALING_YARN,
         0.5f,
         1,
         40000,
         1000},
        {"rope-llama3", {0}, REALM_ROPE_SCALING_LINEAR, 1, 0, 500000, 16384},
    };
    for (size_t i = 0; i < sizeof ov / sizeof ov[0]; i++) {
        CHECK_RC(
            realm_model_load(model_path(ov[i].model), &(realm_model_params){.rope = ov[i].o}, &m),
            REALM_OK);
        if (m == NULL)
            continue;
        const realm_hparams *hp = realm_model_hparams(m);
        CHECK_EQ_INT(hp->rope_scaling, ov[i].type);
        CHECK_NEAR(hp->rope_freq_scale, ov[i].scale, 0);
        CHECK_NEAR(hp->rope_ext_factor, ov[i].ext, 0);
        CHECK_NEAR(hp->rope_freq_base, ov[i].base, 0);
        CHECK_EQ_INT(hp->rope_n_ctx_orig, ov[i].orig);
        CHECK_EQ_INT(hp->has_rope_freqs, strcmp(ov[i].model, "rope-llama3") == 0);
        realm_model_free(m);
    }

    /* As llama.cpp: with YaRN's extrapolation on, the caller's attention
     * factor gives way to YaRN's magnitude; with it off, it scales cos/sin. */
    CHECK_RC(realm_model_load(model_path("rope-yarn"),
                              &(realm_model_params){.rope.yarn_attn_factor = 0.5f}, &m),
             REALM_OK);
    if (m)
        CHECK_NEAR(realm_model_hparams(m)->rope_attn_factor, 1, 1e-6);
    realm_model_free(m);
    CHECK_RC(realm_model_load(model_path("rope-yarn"),
                              &(realm_model_params){.rope = {.scaling = REALM_ROPE_SCALING_LINEAR,
                                                             .yarn_attn_factor = 0.5f}},
                              &m),
             REALM_OK);
    if (m)
        CHECK_NEAR(realm_model_hparams(m)->rope_attn_factor, 0.5, 0);
    realm_model_free(m);

    /* Bad overrides are the caller's error, naming the field. */
    static const struct {
        realm_rope_params o;
        const char *what;
    } bad[] = {
        {{.freq_base = -1}, "freq_base"},
        {{.freq_base = 0.5f}, "freq_base"},
        {{.freq_scale = -0.5f}, "freq_scale"},
        {{.yarn_orig_ctx = -4}, "yarn_orig_ctx"},
        {{.has_yarn_ext_factor = true, .yarn_ext_factor = -1}, "yarn_ext_factor"},
        {{.yarn_beta_fast = NAN}, "yarn_beta_fast"},
        {{.scaling = REALM_ROPE_SCALING_COUNT}, "scaling"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RC(
            realm_model_load(model_path("rope-yarn"), &(realm_model_params){.rope = bad[i].o}, &m),
            REALM_ERR_INVAL);
        CHECK(m == NULL);
        CHECK_MSG(strstr(realm_last_error(), bad[i].what) != NULL, "%s: %s", bad[i].what,
                  realm_last_error());
    }
}

/* Scaling types other than none, linear and yarn are refused, naming the type. */
static void test_unknown_scaling(void)
{
    const char *vocab = test_data("models/stories260K.gguf");
    static const char *const types[] = {"longrope", "su", "YaRN", ""};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        rope_model_spec s = rope_model_specs[0];
        s.name = "rope-odd";
        s.scaling = types[i];
        const char *path = model_path("rope-odd");
        CHECK_RC(rope_model_write(&s, vocab, path), REALM_OK);
        realm_model *m = NULL;
        CHECK_RC(realm_model_load(path, NULL, &m), REALM_ERR_UNSUPPORTED);
        char want[128];
        snprintf(want, sizeof want, "RoPE scaling type '%s'", types[i]);
        CHECK_MSG(strstr(realm_last_error(), want) != NULL &&
                      strstr(realm_last_error(), "supported: none, linear, yarn") != NULL &&
                      strstr(realm_last_error(), path) != NULL,
                  "message: %s", realm_last_error());
        /* an override does not make an unreadable file readable */
        CHECK_RC(realm_model_load(
                     path, &(realm_model_params){.rope.scaling = REALM_ROPE_SCALING_NONE}, &m),
                 REALM_ERR_UNSUPPORTED);
        unlink(path);
    }
    /* a negative factor or attention factor is a malformed file */
    rope_model_spec s = rope_model_specs[1];
    s.name = "rope-odd";
    s.attn_factor = 0.5f;
    const char *path = model_path("rope-odd");
    CHECK_RC(rope_model_write(&s, vocab, path), REALM_OK);
    realm_model *m = NULL;
    CHECK_RC(realm_model_load(path, NULL, &m), REALM_OK);
    if (m)
        CHECK_NEAR(realm_model_hparams(m)->rope_attn_factor, 0.5, 0);
    realm_model_free(m);
    s.factor = -2;
    CHECK_RC(rope_model_write(&s, vocab, path), REALM_OK);
    CHECK_RC(realm_model_load(path, NULL, &m), REALM_ERR_FORMAT);
    CHECK_MSG(strstr(realm_last_error(), "rope.scaling.factor") != NULL, "message: %s",
              realm_last_error());
    unlink(path);
}

/* The engine's context: a prompt longer than n_ctx_seq is refused, naming both. */
static void test_engine_context(void)
{
    realm_model *m = NULL;
    CHECK_RC(realm_model_load(model_path("rope-linear"), NULL, &m), REALM_OK);
    if (m == NULL)
        return;
    realm_engine *e = NULL;
    CHECK_RC(realm_engine_new(m, &(realm_engine_params){.n_ctx = 8192 + 64, .n_threads = 2}, &e),
             REALM_OK);
    if (e != NULL) {
        /* n_ctx_seq defaults to the training context */
        CHECK_EQ_INT(realm_engine_n_ctx_seq(e), 8192);
        static realm_token ids[8193];
        for (int32_t i = 0; i < 8193; i++)
            ids[i] = rope_model_token(i);
        realm_gen *g = NULL;
        CHECK_RC(realm_engine_submit(e, &(realm_gen_request){.prompt = ids, .n_prompt = 8193}, &g),
                 REALM_ERR_RANGE);
        CHECK(g == NULL);
        CHECK_MSG(strstr(realm_last_error(), "8193") && strstr(realm_last_error(), "8192"),
                  "message: %s", realm_last_error());
        realm_engine_free(e);
    }
    realm_model_free(m);
}

/* Models a registry loads get its model parameters. */
static void test_registry_params(void)
{
    realm_registry_params p;
    realm_registry_params_init(&p);
    p.n_threads = 1;
    p.mem_budget = 256ull << 20;
    p.engine.n_ctx = 1024;
    p.model.rope = (realm_rope_params){.scaling = REALM_ROPE_SCALING_YARN, .freq_base = 20000};
    realm_registry *r = NULL;
    CHECK_RC(realm_registry_new(&p, &r), REALM_OK);
    if (r == NULL)
        return;
    CHECK_RC(realm_registry_add(r, "lin", model_path("rope-linear"), NULL), REALM_OK);
    realm_model_ref *ref = NULL;
    CHECK_RC(realm_registry_acquire(r, "lin", 3, NULL, &ref), REALM_OK);
    if (ref != NULL) {
        const realm_hparams *hp = realm_model_hparams(realm_model_ref_model(ref));
        CHECK_EQ_INT(hp->rope_scaling, REALM_ROPE_SCALING_YARN);
        CHECK_NEAR(hp->rope_freq_base, 20000, 0);
        CHECK_NEAR(hp->rope_freq_scale, 0.5, 0);
        realm_registry_release(ref);
    }
    realm_registry_free(r);
}

int main(void)
{
    test_begin("rope", 600);
    snprintf(dir, sizeof dir, "/tmp/realm-test-rope-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    const char *vocab = test_data("models/stories260K.gguf");
    for (size_t i = 0; i < ROPE_MODEL_COUNT; i++)
        CHECK_RC(
            rope_model_write(&rope_model_specs[i], vocab, model_path(rope_model_specs[i].name)),
            REALM_OK);
    test_hparams();
    test_unknown_scaling();
    test_engine_context();
    test_registry_params();
    test_references();
    for (size_t i = 0; i < ROPE_MODEL_COUNT; i++)
        unlink(model_path(rope_model_specs[i].name));
    rmdir(dir);
    return test_end();
}
