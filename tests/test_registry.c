/*
 * The model registry: names, paths and the models directory; loading on
 * demand within a budget that fits one model at a time (least recently used
 * idle models unloaded, models in use never); a Q8_0 KV cache counted at its
 * size (a budget too small for F16 takes it, a pool sized to the budget
 * holds twice the tokens); keep-alive and pinning; one
 * load for many waiters and a failed load reported to all; many threads
 * acquiring, generating on the shared thread pool and releasing at once;
 * LoRA adapters by name: the base they fit found (or named when several
 * fit), refusals naming the file, references by name and id, the base held
 * loaded, unload while in use (refused for new requests at once, freed with
 * the last reference, its memory counted until then).
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "realm/log.h"
#include "realm/registry.h"
#include "test_util.h"

static char work[256];
static const char *path_a, *path_b; /* two small models */

static void quiet(void *ud, realm_log_level level, const char *msg)
{
    (void)ud, (void)level, (void)msg;
}

static void test_durations(void)
{
    static const struct {
        const char *text;
        double s;
    } ok[] = {{"5m", 300},     {"30s", 30},  {"1h", 3600},  {"1h30m", 5400},
              {"250ms", 0.25}, {"300", 300}, {"0.5", 0.5},  {"0", 0},
              {"-1", -1},      {"-1s", -1},  {"2m30s", 150}};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        double s = NAN;
        CHECK_RC(realm_parse_duration(ok[i].text, &s), REALM_OK);
        CHECK_MSG(fabs(s - ok[i].s) < 1e-9, "%s: %g", ok[i].text, s);
    }
    const char *bad[] = {"", "5x", "m", "5m-3s", "abc", "--1", "1.5.2s", "5 m"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        double s;
        CHECK_MSG(realm_parse_duration(bad[i], &s) == REALM_ERR_INVAL, "'%s' accepted", bad[i]);
    }
}

static void test_sizes(void)
{
    static const struct {
        const char *text;
        uint64_t b;
    } ok[] = {{"4096", 4096},      {"800k", 800 * 1024}, {"512M", 512ull << 20},
              {"6G", 6ull << 30},  {"6g", 6ull << 30},   {"1.5GiB", 3ull << 29},
              {"2TB", 2ull << 40}, {"100B", 100},        {"0", 0}};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        uint64_t b = 1;
        CHECK_RC(realm_parse_size(ok[i].text, &b), REALM_OK);
        CHECK_MSG(b == ok[i].b, "%s: %llu", ok[i].text, (unsigned long long)b);
    }
    const char *bad[] = {"", "-1G", "G", "5X", "5GG", "5 G", "99999999T", "1e30"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t b;
        CHECK_MSG(realm_parse_size(bad[i], &b) == REALM_ERR_INVAL, "'%s' accepted", bad[i]);
    }
}

/* A registry whose engines hold n_ctx tokens (0: as many as fit, up to
 * 4 sequences of the model's context) with keys and values of type tk, tv. */
static realm_registry *make_kv(uint64_t budget, double keep_alive, int32_t n_ctx, realm_type tk,
                               realm_type tv)
{
    realm_registry_params p;
    realm_registry_params_init(&p);
    p.mem_budget = budget;
    p.keep_alive_s = keep_alive;
    p.n_threads = 2;
    p.models_dir = work;
    p.engine.n_ctx = n_ctx;
    p.engine.max_seqs = 4;
    p.engine.type_k = tk;
    p.engine.type_v = tv;
    realm_registry *r = NULL;
    CHECK_RC(realm_registry_new(&p, &r), REALM_OK);
    return r;
}

static realm_registry *make(uint64_t budget, double keep_alive)
{
    return make_kv(budget, keep_alive, 512, REALM_TYPE_F16, REALM_TYPE_F16);
}

static const realm_model_status *status_of(realm_model_status *s, int32_t n, const char *name)
{
    for (int32_t i = 0; i < n; i++)
        if (strcmp(s[i].name, name) == 0)
            return &s[i];
    return NULL;
}

/* Is name loaded? */
static bool loaded(realm_registry *r, const char *name)
{
    realm_model_status *s = NULL;
    int32_t n = 0;
    CHECK_RC(realm_registry_list(r, &s, &n), REALM_OK);
    const realm_model_status *t = status_of(s, n, name);
    bool l = t && t->loaded;
    free(s);
    return l;
}

/* Bytes the model at name counts when loaded with a KV pool of n_ctx tokens of tk, tv. */
static uint64_t need_kv(const char *name, int32_t n_ctx, realm_type tk, realm_type tv)
{
    realm_registry *r = make_kv(UINT64_C(1) << 40, 300, n_ctx, tk, tv);
    realm_model_ref *ref = NULL;
    CHECK_RC(realm_registry_acquire(r, name, strlen(name), NULL, &ref), REALM_OK);
    uint64_t u = realm_registry_used(r);
    realm_registry_release(ref);
    realm_registry_free(r);
    return u;
}

static uint64_t need_of(const char *name)
{
    return need_kv(name, 512, REALM_TYPE_F16, REALM_TYPE_F16);
}

static void test_names(void)
{
    realm_registry *r = make(UINT64_C(1) << 40, 300);
    if (!r)
        return;
    CHECK_RC(realm_registry_add(r, "a", path_a, NULL), REALM_OK);
    CHECK_RC(realm_registry_add(r, "a", path_b, NULL), REALM_ERR_EXISTS);
    CHECK_RC(realm_registry_add(r, "bad name", path_b, NULL), REALM_ERR_INVAL);
    CHECK_RC(realm_registry_add(r, "x", "/no/such/file.gguf", NULL), REALM_ERR_NOTFOUND);
    CHECK_RC(realm_registry_add(r, "y", path_b, &(realm_model_config){.chat_template = "nope"}),
             REALM_ERR_NOTFOUND);
    CHECK_RC(realm_registry_add(r, NULL, path_b, NULL), REALM_OK); /* named tiny-q8_0 */

    realm_model_ref *ref = NULL, *ref2 = NULL;
    CHECK_RC(realm_registry_acquire(r, "a", 1, NULL, &ref), REALM_OK);
    CHECK(ref && realm_model_ref_model(ref) && realm_model_ref_engine(ref));
    CHECK_EQ_STR(realm_model_ref_name(ref), "a");
    /* stories260K has no chat template: chatml */
    CHECK_EQ_INT(realm_model_ref_chat_template(ref), REALM_CHAT_TEMPLATE_CHATML);
    /* the same file by path is the same entry, the same model */
    CHECK_RC(realm_registry_acquire(r, path_a, strlen(path_a), NULL, &ref2), REALM_OK);
    CHECK(ref2 && realm_model_ref_model(ref2) == realm_model_ref_model(ref));
    realm_registry_release(ref2);
    CHECK_RC(realm_registry_acquire(r, "tiny-q8_0", 9, NULL, &ref2), REALM_OK);
    realm_registry_release(ref2);
    /* a tenant's name is never a path */
    CHECK_EQ_INT(realm_registry_acquire(r, path_b, strlen(path_b),
                                        &(realm_acquire_opts){.names_only = true}, &ref2),
                 REALM_ERR_NOTFOUND);
    CHECK(ref2 == NULL);
    CHECK_EQ_INT(realm_registry_acquire(r, "nothing", 7, NULL, &ref2), REALM_ERR_NOTFOUND);
    CHECK_MSG(strstr(realm_last_error(), "registered: a, tiny-q8_0"), "%s", realm_last_error());
    CHECK_EQ_INT(realm_registry_unload(r, "a"), REALM_ERR_EXISTS); /* held */
    realm_registry_release(ref);
    CHECK_RC(realm_registry_unload(r, "a"), REALM_OK);
    CHECK(!loaded(r, "a"));

    /* a pulled model: NAME.gguf in the models directory */
    char pulled[512], cmd[1200];
    snprintf(pulled, sizeof pulled, "%s/story.gguf", work);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path_a, pulled);
    CHECK_EQ_INT(system(cmd), 0);
    realm_model_status *s = NULL;
    int32_t n = 0;
    CHECK_RC(realm_registry_list(r, &s, &n), REALM_OK);
    const realm_model_status *t = status_of(s, n, "story");
    CHECK(t && t->pulled && !t->loaded && t->file_bytes > 0);
    free(s);
    CHECK_RC(realm_registry_acquire(r, "story", 5, &(realm_acquire_opts){.names_only = true}, &ref),
             REALM_OK);
    CHECK_RC(realm_registry_list(r, &s, &n), REALM_OK);
    t = status_of(s, n, "story");
    CHECK(t && t->loaded && t->refs == 1 && t->mem_bytes > t->file_bytes);
    free(s);
    realm_registry_release(ref);
    realm_registry_free(r);
}

static void test_budget(uint64_t need_a, uint64_t need_b)
{
    /* room for either model, never both */
    const uint64_t big = need_a > need_b ? need_a : need_b;
    realm_registry *r = make(big + big / 8, 300);
    if (!r)
        return;
    CHECK(need_a + need_b > big + big / 8);
    CHECK_RC(realm_registry_add(r, "a", path_a, NULL), REALM_OK);
    CHECK_RC(realm_registry_add(r, "b", path_b, NULL), REALM_OK);
    realm_model_ref *ra = NULL, *rb = NULL;
    CHECK_RC(realm_registry_acquire(r, "a", 1, NULL, &ra), REALM_OK);
    /* a is in use: b cannot load, with a clear error */
    CHECK_EQ_INT(realm_registry_acquire(r, "b", 1, NULL, &rb), REALM_ERR_OVERLOADED);
    CHECK_MSG(strstr(realm_last_error(), "model 'b' needs") &&
                  strstr(realm_last_error(), "held by models in use"),
              "%s", realm_last_error());
    realm_registry_release(ra);
    CHECK(loaded(r, "a")); /* idle, kept alive */
    CHECK_RC(realm_registry_acquire(r, "b", 1, NULL, &rb), REALM_OK);
    CHECK(!loaded(r, "a")); /* evicted: least recently used and idle */
    CHECK(realm_registry_used(r) <= realm_registry_budget(r));
    realm_registry_release(rb);
    /* pinned models are never evicted */
    CHECK_RC(realm_registry_pin(r, "b", true), REALM_OK);
    CHECK_EQ_INT(realm_registry_acquire(r, "a", 1, NULL, &ra), REALM_ERR_OVERLOADED);
    CHECK_RC(realm_registry_pin(r, "b", false), REALM_OK);
    CHECK_RC(realm_registry_acquire(r, "a", 1, NULL, &ra), REALM_OK);
    CHECK(!loaded(r, "b"));
    realm_registry_release(ra);
    realm_registry_free(r);

    /* a model over the whole budget */
    r = make(need_a / 2, 300);
    CHECK_RC(realm_registry_add(r, "a", path_a, NULL), REALM_OK);
    CHECK_EQ_INT(realm_registry_acquire(r, "a", 1, NULL, &ra), REALM_ERR_OVERLOADED);
    CHECK_MSG(strstr(realm_last_error(), "more than the memory budget"), "%s", realm_last_error());
    realm_registry_free(r);
}

/* KV blocks of the pool the registry gave the engine of a model loaded by r. */
static int32_t pool_blocks(realm_registry *r, const char *name, int *rc)
{
    realm_model_ref *ref = NULL;
    *rc = realm_registry_acquire(r, name, strlen(name), NULL, &ref);
    if (*rc < 0)
        return 0;
    realm_engine_stats st;
    realm_engine_get_stats(realm_model_ref_engine(ref), &st);
    realm_registry_release(ref);
    return st.kv_blocks_total;
}

/*
 * A Q8_0 cache counts as what it is: the tiny model (2 layers, kv_dim 128)
 * needs 2 x 512 x (256 - 136) bytes less per side for 512 tokens; a budget
 * that an F16 pool of 512 tokens overflows takes the Q8_0 one; and a pool
 * sized to the budget (engine n_ctx 0) holds twice the tokens.
 */
static void test_budget_q8_0(void)
{
    const realm_type F16 = REALM_TYPE_F16, Q8 = REALM_TYPE_Q8_0;
    const uint64_t f16 = need_kv(path_b, 512, F16, F16), q8 = need_kv(path_b, 512, Q8, Q8);
    const uint64_t mixed = need_kv(path_b, 512, F16, Q8);
    printf("tiny, 512 tokens: %llu bytes with an F16 cache, %llu with Q8_0, %llu with F16 K and "
           "Q8_0 V\n",
           (unsigned long long)f16, (unsigned long long)q8, (unsigned long long)mixed);
    CHECK(f16 - q8 == 2ull * 512 * 2 * (256 - 136));
    CHECK(f16 - mixed == 2ull * 512 * (256 - 136));

    int rc;
    realm_registry *r = make_kv(q8 + (f16 - q8) / 2, 300, 512, F16, F16);
    CHECK_RC(realm_registry_add(r, "b", path_b, NULL), REALM_OK);
    pool_blocks(r, "b", &rc);
    CHECK_EQ_INT(rc, REALM_ERR_OVERLOADED);
    CHECK_MSG(strstr(realm_last_error(), "more than the memory budget"), "%s", realm_last_error());
    realm_registry_free(r);
    r = make_kv(q8 + (f16 - q8) / 2, 300, 512, Q8, Q8);
    CHECK_RC(realm_registry_add(r, "b", path_b, NULL), REALM_OK);
    CHECK_EQ_INT(pool_blocks(r, "b", &rc), 16);
    CHECK_EQ_INT(rc, REALM_OK);
    realm_registry_free(r);

    /* the budget of an F16 pool of 1024 tokens and a little: 2048 tokens of Q8_0 fit it */
    const uint64_t budget = need_kv(path_b, 1024, F16, F16) + 100 * 1024;
    r = make_kv(budget, 300, 0, F16, F16);
    CHECK_EQ_INT(pool_blocks(r, path_b, &rc), 1024 / 32);
    CHECK_EQ_INT(rc, REALM_OK);
    realm_registry_free(r);
    r = make_kv(budget, 300, 0, Q8, Q8);
    CHECK_EQ_INT(pool_blocks(r, path_b, &rc), 2048 / 32);
    CHECK_EQ_INT(rc, REALM_OK);
    CHECK(realm_registry_used(r) <= budget);
    realm_registry_free(r);

    /* stories260K's head size of 8 cannot take it: the load fails, saying why */
    r = make_kv(UINT64_C(1) << 40, 300, 512, Q8, Q8);
    pool_blocks(r, path_a, &rc);
    CHECK_EQ_INT(rc, REALM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(realm_last_error(), "model 'stories260K': a q8_0 KV cache for the keys "
                                         "needs a head size that is a multiple of 32"),
              "%s", realm_last_error());
    realm_registry_free(r);
}

static void test_keep_alive(void)
{
    realm_registry *r = make(UINT64_C(1) << 40, 0.3);
    if (!r)
        return;
    CHECK_RC(realm_registry_add(r, "a", path_a, NULL), REALM_OK);
    CHECK_RC(realm_registry_add(r, "b", path_b, &(realm_model_config){.pinned = true}), REALM_OK);
    realm_model_ref *ra = NULL, *rb = NULL;
    CHECK_RC(realm_registry_acquire(r, "a", 1, NULL, &ra), REALM_OK);
    CHECK_RC(realm_registry_acquire(r, "b", 1, NULL, &rb), REALM_OK);
    realm_registry_release(ra);
    realm_registry_release(rb);
    CHECK(loaded(r, "a"));
    for (int i = 0; i < 100 && loaded(r, "a"); i++) /* 0.3 s keep-alive, up to 5 s */
        usleep(50000);
    CHECK(!loaded(r, "a"));
    CHECK(loaded(r, "b")); /* pinned */

    /* a request's keep-alive: 0 unloads at release, -1 never */
    CHECK_RC(realm_registry_acquire(
                 r, "a", 1, &(realm_acquire_opts){.has_keep_alive = true, .keep_alive_s = 0}, &ra),
             REALM_OK);
    realm_registry_release(ra);
    CHECK(!loaded(r, "a"));
    CHECK_RC(realm_registry_acquire(r, "a", 1, NULL, &ra), REALM_OK);
    realm_model_ref_set_keep_alive(ra, -1);
    realm_registry_release(ra);
    usleep(600000);
    CHECK(loaded(r, "a"));
    realm_model_status *s = NULL;
    int32_t n = 0;
    CHECK_RC(realm_registry_list(r, &s, &n), REALM_OK);
    const realm_model_status *t = status_of(s, n, "a");
    CHECK(t && t->expires_in_s < 0 && t->idle_s > 0.5);
    free(s);
    realm_registry_free(r);
}

/* ---- threads --------------------------------------------------------------------- */

typedef struct worker {
    realm_registry *r;
    int id, iters;
    int ok, overloaded, other;
    char error[256];
} worker;

/* Greedy-generate a few tokens on the model behind ref; returns the count. */
static int generate(realm_model_ref *ref)
{
    realm_engine *e = realm_model_ref_engine(ref);
    realm_token prompt[] = {1, 403, 407, 261, 378};
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = 4;
    o.sampling.temperature = 0;
    o.ignore_eos = true;
    realm_gen *g = NULL;
    if (realm_engine_submit(e, &(realm_gen_request){.prompt = prompt, .n_prompt = 5, .options = &o},
                            &g) < 0)
        return -1;
    realm_gen_piece p;
    int n = 0;
    while (realm_gen_next(g, &p, -1) > 0)
        n += p.token != REALM_TOKEN_NULL;
    realm_gen_free(g);
    return n;
}

static void *work_main(void *arg)
{
    worker *w = arg;
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1);
    for (int i = 0; i < w->iters; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        const char *name = s & 1 ? "a" : "b";
        realm_model_ref *ref = NULL;
        int rc = realm_registry_acquire(w->r, name, 1, NULL, &ref);
        if (rc == REALM_OK) {
            if (s & 2) {
                int n = generate(ref);
                if (n == 4)
                    w->ok++;
                else
                    w->other++;
            } else {
                w->ok++;
            }
            realm_registry_release(ref);
        } else if (rc == REALM_ERR_OVERLOADED) {
            w->overloaded++;
        } else {
            w->other++;
            snprintf(w->error, sizeof w->error, "%s", realm_last_error());
        }
    }
    return NULL;
}

/* One acquisition on its own thread (test_threads). */
struct acq_arg {
    realm_registry *r;
    const char *name;
    realm_model_ref **ref;
    int *rc;
    char *err;
};

static void *acquire_main(void *p)
{
    struct acq_arg *a = p;
    *a->rc = realm_registry_acquire(a->r, a->name, strlen(a->name), NULL, a->ref);
    snprintf(a->err, 256, "%s", *a->rc < 0 ? realm_last_error() : "");
    return NULL;
}

static void test_threads(uint64_t need_a, uint64_t need_b)
{
    const uint64_t big = need_a > need_b ? need_a : need_b;
    realm_registry *r = make(big + big / 8, 0.05);
    if (!r)
        return;
    CHECK_RC(realm_registry_add(r, "a", path_a, NULL), REALM_OK);
    CHECK_RC(realm_registry_add(r, "b", path_b, NULL), REALM_OK);
    enum { N = 6 };
    worker w[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        w[i] = (worker){.r = r, .id = i, .iters = 25};
        CHECK_EQ_INT(pthread_create(&t[i], NULL, work_main, &w[i]), 0);
    }
    int ok = 0, over = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ok += w[i].ok;
        over += w[i].overloaded;
        CHECK_MSG(w[i].other == 0, "worker %d: %d unexpected results (%s)", i, w[i].other,
                  w[i].error);
    }
    CHECK(ok > 0);
    CHECK_EQ_INT(ok + over, N * 25);
    CHECK(realm_registry_used(r) <= realm_registry_budget(r));
    realm_registry_free(r);

    /* many waiters, one load; a failed load reaches every waiter */
    r = make(UINT64_C(1) << 40, 300);
    char broken[512], cmd[1200];
    snprintf(broken, sizeof broken, "%s/broken.gguf", work);
    snprintf(cmd, sizeof cmd, "head -c 5000 '%s' > '%s'", path_a, broken);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK_RC(realm_registry_add(r, "a", path_a, NULL), REALM_OK);
    CHECK_RC(realm_registry_add(r, "broken", broken, NULL), REALM_OK);
    for (int round = 0; round < 2; round++) {
        const char *name = round == 0 ? "a" : "broken";
        realm_model_ref *refs[N] = {0};
        int rcs[N];
        char errs[N][256];
        struct acq_arg args[N];
        for (int i = 0; i < N; i++)
            args[i] = (struct acq_arg){r, name, &refs[i], &rcs[i], errs[i]};
        for (int i = 0; i < N; i++)
            CHECK_EQ_INT(pthread_create(&t[i], NULL, acquire_main, &args[i]), 0);
        for (int i = 0; i < N; i++)
            pthread_join(t[i], NULL);
        for (int i = 0; i < N; i++) {
            if (round == 0) {
                CHECK_RC(rcs[i], REALM_OK);
                CHECK(refs[i] && realm_model_ref_model(refs[i]) == realm_model_ref_model(refs[0]));
            } else {
                CHECK_EQ_INT(rcs[i], rcs[0]);
                CHECK(rcs[i] < 0 && refs[i] == NULL);
                CHECK_MSG(strstr(errs[i], "broken.gguf"), "waiter %d: %s", i, errs[i]);
            }
        }
        for (int i = 0; i < N; i++)
            realm_registry_release(refs[i]);
    }
    realm_registry_free(r);
}

static void test_lora(void)
{
    const char *src = getenv("REALM_SOURCE_DIR");
    CHECK(src != NULL);
    if (!src)
        return;
    char r8[4096], qv[4096], cut[512];
    snprintf(r8, sizeof r8, "%s/tests/data/lora/stories260K-lora-r8.gguf", src);
    snprintf(qv, sizeof qv, "%s/tests/data/lora/stories260K-lora-qv-r4.gguf", src);
    snprintf(cut, sizeof cut, "%s/cut.gguf", work);
    FILE *in = fopen(r8, "rb"), *out = fopen(cut, "wb");
    CHECK(in && out);
    char buf[20000];
    size_t got = in ? fread(buf, 1, sizeof buf, in) : 0;
    if (out)
        fwrite(buf, 1, got, out);
    if (in)
        fclose(in);
    if (out)
        fclose(out);

    realm_registry_params p;
    realm_registry_params_init(&p);
    p.models_dir = work;
    p.n_threads = 1;
    p.engine.n_ctx = 256;
    p.engine.max_seqs = 2;
    realm_registry *r;
    CHECK_RC(realm_registry_new(&p, &r), REALM_OK);
    /* no model yet: nothing to be the base */
    CHECK_RC(realm_registry_add_lora(r, "r8", r8, NULL), REALM_ERR_NOTFOUND);
    CHECK_RC(realm_registry_add(r, "tiny", path_b, NULL), REALM_OK);
    CHECK_RC(realm_registry_add(r, "stories", path_a, NULL), REALM_OK);
    const uint64_t used0 = realm_registry_used(r);
    /* found: the one model it fits (tiny's shapes differ), which it loads and holds */
    CHECK_RC(realm_registry_add_lora(r, "r8", r8, NULL), REALM_OK);
    CHECK_RC(realm_registry_add_lora(r, "r8", qv, NULL), REALM_ERR_EXISTS);
    CHECK_RC(realm_registry_add_lora(r, "stories", qv, NULL), REALM_ERR_EXISTS);
    CHECK_RC(realm_registry_add(r, "r8", path_a, NULL), REALM_ERR_EXISTS);
    CHECK_RC(realm_registry_add_lora(r, "bad/name", r8, NULL), REALM_ERR_INVAL);
    CHECK_RC(realm_registry_add_lora(r, "none", "/nonexistent/a.gguf", NULL), REALM_ERR_NOTFOUND);
    /* the wrong base named: the reader's message, naming the tensor */
    CHECK(realm_registry_add_lora(r, "qv", qv, "tiny") < 0);
    CHECK_MSG(strstr(realm_last_error(), "of the base model") != NULL, "%s", realm_last_error());
    CHECK(realm_registry_add_lora(r, "cut", cut, NULL) < 0);
    CHECK_MSG(strstr(realm_last_error(), "fits no registered model") &&
                  strstr(realm_last_error(), cut),
              "%s", realm_last_error());
    CHECK(realm_registry_add_lora(r, "model", path_a, NULL) < 0);
    CHECK_MSG(strstr(realm_last_error(), "not a LoRA adapter"), "%s", realm_last_error());
    CHECK_RC(realm_registry_add_lora(r, "qv", qv, "stories"), REALM_OK);

    realm_lora_status *ls;
    int32_t n;
    CHECK_RC(realm_registry_list_lora(r, &ls, &n), REALM_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_STR(ls[0].name, "r8");
        CHECK_EQ_STR(ls[0].base, "stories");
        CHECK_EQ_INT(ls[0].id, 0);
        CHECK_EQ_INT(ls[0].rank, 8);
        CHECK_EQ_INT(ls[1].id, 1);
        CHECK_EQ_INT(ls[1].rank, 4);
        CHECK(ls[0].mem_bytes > 0);
        CHECK(realm_registry_used(r) > used0 + ls[0].mem_bytes + ls[1].mem_bytes);
    }
    const uint64_t qv_bytes = n == 2 ? ls[1].mem_bytes : 0;
    free(ls);

    /* by name and by id: the base's model and engine with the adapter */
    realm_model_ref *a, *b, *base;
    CHECK_RC(realm_registry_acquire(r, "r8", 2, NULL, &a), REALM_OK);
    CHECK_RC(realm_registry_acquire_lora_id(r, 1, &b), REALM_OK);
    CHECK_RC(realm_registry_acquire(r, "stories", 7, NULL, &base), REALM_OK);
    CHECK_RC(realm_registry_acquire_lora_id(r, 7, &(realm_model_ref *){NULL}), REALM_ERR_NOTFOUND);
    if (a && b && base) {
        CHECK_EQ_STR(realm_model_ref_name(a), "r8");
        CHECK_EQ_STR(realm_model_ref_base_name(a), "stories");
        CHECK_EQ_STR(realm_model_ref_name(b), "qv");
        CHECK(realm_model_ref_lora(a) != NULL && realm_model_ref_lora(b) != NULL &&
              realm_model_ref_lora(a) != realm_model_ref_lora(b));
        CHECK(realm_model_ref_lora(base) == NULL);
        CHECK(realm_model_ref_model(a) == realm_model_ref_model(base));
        CHECK(realm_lora_base(realm_model_ref_lora(a)) == realm_model_ref_model(base));
        CHECK(realm_model_ref_engine(b) == realm_model_ref_engine(base));
    }
    realm_registry_release(base);
    realm_registry_release(a);
    /* the base is held by its adapters */
    CHECK_RC(realm_registry_unload(r, "stories"), REALM_ERR_EXISTS);
    CHECK_MSG(strstr(realm_last_error(), "base of the LoRA adapters 'r8', 'qv'"), "%s",
              realm_last_error());
    /* unloaded while b holds it: unknown at once, counted until b is released */
    int32_t in_use = -1;
    const uint64_t before = realm_registry_used(r);
    CHECK_RC(realm_registry_remove_lora(r, "qv", &in_use), REALM_OK);
    CHECK_EQ_INT(in_use, 1);
    CHECK_RC(realm_registry_acquire(r, "qv", 2, NULL, &(realm_model_ref *){NULL}),
             REALM_ERR_NOTFOUND);
    CHECK_RC(realm_registry_acquire_lora_id(r, 1, &(realm_model_ref *){NULL}), REALM_ERR_NOTFOUND);
    CHECK_RC(realm_registry_remove_lora(r, "qv", NULL), REALM_ERR_NOTFOUND);
    CHECK(realm_registry_used(r) == before);
    CHECK_RC(realm_registry_list_lora(r, &ls, &n), REALM_OK);
    CHECK(n == 2 && ls[1].unloading && ls[1].refs == 1);
    free(ls);
    /* the name is free again at once, with a new id */
    CHECK_RC(realm_registry_add_lora(r, "qv", qv, "stories"), REALM_OK);
    realm_registry_release(b);
    CHECK(realm_registry_used(r) == before); /* the old one freed, the new one counted */
    CHECK_RC(realm_registry_list_lora(r, &ls, &n), REALM_OK);
    CHECK(n == 2 && strcmp(ls[1].name, "qv") == 0 && ls[1].id == 2 && !ls[1].unloading);
    free(ls);
    CHECK_RC(realm_registry_remove_lora(r, "qv", &in_use), REALM_OK);
    CHECK_EQ_INT(in_use, 0);
    CHECK(realm_registry_used(r) == before - qv_bytes);
    /* several models fit: the base must be named */
    CHECK_RC(realm_registry_add(r, "stories2", path_a, NULL), REALM_OK);
    CHECK_RC(realm_registry_add_lora(r, "qv2", qv, NULL), REALM_ERR_INVAL);
    CHECK_MSG(strstr(realm_last_error(), "fits several models ('stories', 'stories2')") &&
                  strstr(realm_last_error(), "--lora-base qv2=MODEL"),
              "%s", realm_last_error());
    CHECK_RC(realm_registry_add_lora(r, "qv2", qv, "stories2"), REALM_OK);
    CHECK_RC(realm_registry_acquire(r, "qv2", 3, NULL, &a), REALM_OK);
    if (a)
        CHECK_EQ_STR(realm_model_ref_base_name(a), "stories2");
    realm_registry_release(a);
    /* the adapters gone, the base unloads */
    CHECK_RC(realm_registry_remove_lora(r, "r8", NULL), REALM_OK);
    CHECK_RC(realm_registry_unload(r, "stories"), REALM_OK);
    realm_registry_free(r); /* with qv2 still loaded: freed with the registry */
}

/* An adapter's base is held: never evicted for another model nor expired
 * (keep-alive 0 here), until the adapter is unloaded; an adapter over the
 * budget is refused. */
static void test_lora_budget(uint64_t need_a, uint64_t need_b)
{
    const char *src = getenv("REALM_SOURCE_DIR");
    char r8[4096];
    snprintf(r8, sizeof r8, "%s/tests/data/lora/stories260K-lora-r8.gguf", src ? src : "..");
    const uint64_t big = need_a > need_b ? need_a : need_b;
    realm_registry *r = make(big + big / 8, 0);
    if (!r)
        return;
    CHECK_RC(realm_registry_add(r, "a", path_a, NULL), REALM_OK);
    CHECK_RC(realm_registry_add(r, "b", path_b, NULL), REALM_OK);
    CHECK_RC(realm_registry_add_lora(r, "r8", r8, NULL), REALM_OK);
    CHECK(loaded(r, "a"));
    realm_model_ref *ref = NULL;
    CHECK_RC(realm_registry_acquire(r, "r8", 2, NULL, &ref), REALM_OK);
    realm_registry_release(ref);
    CHECK(loaded(r, "a")); /* keep-alive 0, yet held by its adapter */
    CHECK_EQ_INT(realm_registry_acquire(r, "b", 1, NULL, &ref), REALM_ERR_OVERLOADED);
    CHECK(loaded(r, "a"));
    CHECK_RC(realm_registry_remove_lora(r, "r8", NULL), REALM_OK);
    CHECK(!loaded(r, "a")); /* the adapter's reference was the last: keep-alive 0 */
    CHECK_RC(realm_registry_acquire(r, "b", 1, NULL, &ref), REALM_OK);
    realm_registry_release(ref);
    realm_registry_free(r);

    /* room for the base, not for the adapter beside it */
    r = make(need_a + 1000, 300);
    if (!r)
        return;
    CHECK_RC(realm_registry_add(r, "a", path_a, NULL), REALM_OK);
    CHECK_EQ_INT(realm_registry_add_lora(r, "r8", r8, "a"), REALM_ERR_OVERLOADED);
    CHECK_MSG(strstr(realm_last_error(), "LoRA adapter 'r8' needs"), "%s", realm_last_error());
    realm_lora_status *ls = NULL;
    int32_t n = -1;
    CHECK_RC(realm_registry_list_lora(r, &ls, &n), REALM_OK);
    CHECK_EQ_INT(n, 0);
    free(ls);
    CHECK(realm_registry_used(r) <= realm_registry_budget(r));
    realm_registry_free(r);
}

/* Threads taking and releasing an adapter by name and by id while it is
 * unloaded and loaded again: each reference stays usable while held, and
 * the memory counted comes back to the base's and one adapter's. */
typedef struct lora_worker {
    realm_registry *r;
    int by_id;
    int got;
    atomic_int *done; /* set once the adapter is loaded for good */
} lora_worker;

static void *lora_worker_main(void *arg)
{
    lora_worker *w = arg;
    /* 400 tries while the adapter comes and goes (a load takes longer than
     * many failed tries, so they may all fail), then until it is back for good:
     * at least one try after that, which must succeed */
    bool last = false;
    for (int i = 0; (i < 400 || !last) && i < 1000000; i++) {
        last = atomic_load(w->done);
        realm_model_ref *ref = NULL;
        realm_lora_status *ls = NULL;
        int32_t n = 0;
        int64_t id = -1;
        if (w->by_id && realm_registry_list_lora(w->r, &ls, &n) == 0 && n > 0)
            id = ls[n - 1].id;
        free(ls);
        const int rc = w->by_id ? realm_registry_acquire_lora_id(w->r, id, &ref)
                                : realm_registry_acquire(w->r, "r8", 2, NULL, &ref);
        if (rc == 0) {
            w->got++;
            const realm_lora *l = realm_model_ref_lora(ref);
            if (!l || realm_lora_rank(l) != 8 || realm_lora_base(l) != realm_model_ref_model(ref))
                w->got = -1000000;
            realm_registry_release(ref);
        }
    }
    return NULL;
}

static void test_lora_threads(void)
{
    const char *src = getenv("REALM_SOURCE_DIR");
    char r8[4096];
    snprintf(r8, sizeof r8, "%s/tests/data/lora/stories260K-lora-r8.gguf", src ? src : "..");
    realm_registry *r = make(UINT64_C(1) << 40, 300);
    if (!r)
        return;
    CHECK_RC(realm_registry_add(r, "a", path_a, NULL), REALM_OK);
    realm_model_ref *base = NULL;
    CHECK_RC(realm_registry_acquire(r, "a", 1, NULL, &base), REALM_OK);
    const uint64_t used_base = realm_registry_used(r);
    CHECK_RC(realm_registry_add_lora(r, "r8", r8, "a"), REALM_OK);
    const uint64_t used_one = realm_registry_used(r);
    lora_worker w[4];
    pthread_t t[4];
    atomic_int done = 0;
    for (int i = 0; i < 4; i++) {
        w[i] = (lora_worker){r, i % 2, 0, &done};
        pthread_create(&t[i], NULL, lora_worker_main, &w[i]);
    }
    for (int k = 0; k < 20; k++) {
        CHECK_RC(realm_registry_remove_lora(r, "r8", NULL), REALM_OK);
        CHECK_RC(realm_registry_add_lora(r, "r8", r8, "a"), REALM_OK);
    }
    atomic_store(&done, 1);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_MSG(w[i].got > 0, "worker %d: %d references", i, w[i].got);
    }
    CHECK(realm_registry_used(r) == used_one);
    CHECK_RC(realm_registry_remove_lora(r, "r8", NULL), REALM_OK);
    CHECK(realm_registry_used(r) == used_base);
    realm_registry_release(base);
    realm_registry_free(r);
}

int main(void)
{
    test_begin("registry", 600);
    const char *t = getenv("TMPDIR");
    snprintf(work, sizeof work, "%s/realm-reg-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(work)) {
        perror("mkdtemp");
        return 1;
    }
    static char a[4096], b[4096];
    snprintf(a, sizeof a, "%s", test_data("models/stories260K.gguf"));
    snprintf(b, sizeof b, "%s", test_data("quant/tiny-q8_0.gguf"));
    path_a = a;
    path_b = b;
    realm_log_set_handler(quiet, NULL);
    test_durations();
    test_sizes();
    test_names();
    const uint64_t need_a = need_of(path_a), need_b = need_of(path_b);
    CHECK(need_a > 0 && need_b > 0);
    test_budget(need_a, need_b);
    test_budget_q8_0();
    test_keep_alive();
    test_threads(need_a, need_b);
    test_lora();
    test_lora_budget(need_a, need_b);
    test_lora_threads();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", work);
    return test_end();
}
