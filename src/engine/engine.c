/*
 * The generation engine's API (realm/engine.h): creating and freeing the
 * engine, submitting requests, the request handles that callers read from,
 * and the scheduler thread. One step of scheduling is in scheduler.c.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <utf8proc.h>

#include "core/clock_internal.h"
#include "core/error_internal.h"
#include "engine_internal.h"

const char *realm_finish_name(realm_finish f)
{
    static const char *const names[REALM_FINISH_COUNT] = {"none", "stop", "length", "cancelled",
                                                          "error"};
    return (unsigned)f < REALM_FINISH_COUNT ? names[f] : "unknown";
}

const char *realm_spec_mode_name(realm_spec_mode m)
{
    static const char *const names[REALM_SPEC_COUNT] = {"default", "off", "lookup", "draft"};
    return (unsigned)m < REALM_SPEC_COUNT ? names[m] : "unknown";
}

int realm_spec_mode_parse(const char *name)
{
    for (int m = 0; m < REALM_SPEC_COUNT; m++)
        if (name && strcmp(name, realm_spec_mode_name((realm_spec_mode)m)) == 0)
            return m;
    return -1;
}

void realm_gen_options_init(realm_gen_options *o)
{
    *o = (realm_gen_options){
        .version = REALM_GEN_OPTIONS_VERSION,
        .max_tokens = 0,
        .sampling = {.temperature = 0.8f,
                     .top_p = 0.95f,
                     .min_p = 0.05f,
                     .seed = REALM_SEED_RANDOM},
        .speculative = {.mode = REALM_SPEC_DEFAULT, .n_min = -1, .p_min = -1},
    };
}

/* The scheduler thread: sleep until there is work, run steps until there is
 * none, until realm_engine_free asks it to stop. */
static void *scheduler_main(void *arg)
{
    realm_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        if (e->n_waiting == 0 && e->n_running == 0) {
            pthread_cond_wait(&e->work, &e->mu);
            continue;
        }
        const uint64_t events = e->events;
        pthread_mutex_unlock(&e->mu);
        const int n = realm__engine_step(e);
        pthread_mutex_lock(&e->mu);
        /* nothing could run (not expected while anything is admissible, see
         * admit()): sleep until the next submission or cancellation rather
         * than spin, unless one came during the step */
        if (n == 0 && e->n_running == 0 && !e->stop && e->events == events)
            pthread_cond_wait(&e->work, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* Fill defaults and check the engine parameters against the model. */
static int normalise_params(const realm_model *m, const realm_engine_params *in,
                            realm_engine_params *p)
{
    *p = in ? *in : (realm_engine_params){0};
    const int32_t n_train = realm_model_hparams(m)->n_ctx_train;
    if (p->n_ctx <= 0)
        p->n_ctx = 4096;
    if (p->n_ctx_seq <= 0)
        p->n_ctx_seq = n_train > 0 && n_train < p->n_ctx ? n_train : p->n_ctx;
    if (p->n_batch <= 0)
        p->n_batch = 512;
    if (p->max_seqs <= 0)
        p->max_seqs = 16;
    if (p->max_waiting <= 0)
        p->max_waiting = 256;
    if (p->max_chunk <= 0 || p->max_chunk > p->n_batch)
        p->max_chunk = p->n_batch;
    if (p->prefill_slice_ms == 0)
        p->prefill_slice_ms = 500;
    if (p->manual_step)
        p->prefill_slice_ms = -1;
    if (p->prefix_cache_entries == 0)
        p->prefix_cache_entries = 64;
    if (p->prefix_cache_entries < 0)
        p->prefix_cache_entries = 0;
    if (p->spec_mode == REALM_SPEC_DEFAULT)
        p->spec_mode = REALM_SPEC_OFF;
    if (p->spec_n_max == 0)
        p->spec_n_max = 8;
    if (p->spec_max_rows == 0)
        p->spec_max_rows = 32;
    if (p->spec_p_min == 0)
        p->spec_p_min = 0.75f;
    else if (p->spec_p_min < 0)
        p->spec_p_min = 0;
    if (p->spec_n_min < 0 || p->spec_n_min > REALM_SPEC_MAX_DRAFT || !(p->spec_p_min <= 1))
        return realm__error(REALM_ERR_INVAL, "spec_n_min %d, spec_p_min %g: 0..%d and at most 1",
                            p->spec_n_min, p->spec_p_min, REALM_SPEC_MAX_DRAFT);
    if (p->spec_mode < 0 || p->spec_mode >= REALM_SPEC_COUNT)
        return realm__error(REALM_ERR_INVAL, "speculative mode %d", p->spec_mode);
    if (p->spec_mode == REALM_SPEC_DRAFT && p->draft == NULL)
        return realm__error(REALM_ERR_INVAL, "speculative mode draft without a draft model");
    if (p->spec_n_max < 1 || p->spec_n_max > REALM_SPEC_MAX_DRAFT)
        return realm__error(REALM_ERR_INVAL, "spec_n_max %d is outside 1..%d", p->spec_n_max,
                            REALM_SPEC_MAX_DRAFT);
    if (p->spec_max_rows < 1 || p->spec_max_rows > 4096)
        return realm__error(REALM_ERR_INVAL, "spec_max_rows %d is outside 1..4096",
                            p->spec_max_rows);
    if (p->n_ctx_seq > p->n_ctx)
        return realm__error(REALM_ERR_INVAL, "a sequence of %d tokens does not fit a pool of %d",
                            p->n_ctx_seq, p->n_ctx);
    if (p->max_seqs > p->n_batch)
        return realm__error(REALM_ERR_INVAL,
                            "%d sequences need a step budget of as many tokens "
                            "(n_batch is %d)",
                            p->max_seqs, p->n_batch);
    if (p->max_waiting > (1 << 20) || p->max_seqs > 4096 || p->prefix_cache_entries > 65536)
        return realm__error(REALM_ERR_INVAL, "engine limits out of range");
    return realm_kv_params_check(m, &(realm_kv_params){.n_ctx = p->n_ctx,
                                                       .block_size = p->block_size,
                                                       .type_k = p->type_k,
                                                       .type_v = p->type_v});
}

uint64_t realm_engine_bytes(const realm_model *m, const realm_engine_params *params)
{
    realm_engine_params p;
    if (normalise_params(m, params, &p) < 0)
        return 0;
    const uint64_t kv = realm_kv_cache_bytes(m, &(realm_kv_params){.n_ctx = p.n_ctx,
                                                                   .block_size = p.block_size,
                                                                   .type_k = p.type_k,
                                                                   .type_v = p.type_v});
    const uint64_t ctx = realm_ctx_bytes(
        m, &(realm_ctx_params){.n_batch = p.n_batch, .n_threads = p.n_threads, .pool = p.pool});
    /* logits of a step (decode rows and drafts) and the sampler's scratch */
    const uint64_t n_vocab = (uint64_t)realm_model_hparams(m)->n_vocab;
    const uint64_t step =
        (uint64_t)p.max_seqs * n_vocab * 12 + (uint64_t)p.spec_max_rows * n_vocab * 4;
    uint64_t draft = 0;
    if (p.draft) {
        draft = realm_kv_cache_bytes(p.draft, &(realm_kv_params){.n_ctx = p.n_ctx,
                                                                 .block_size = p.block_size,
                                                                 .type_k = p.type_k,
                                                                 .type_v = p.type_v}) +
                realm_ctx_bytes(p.draft, &(realm_ctx_params){.n_batch = p.n_batch,
                                                             .n_threads = p.n_threads,
                                                             .pool = p.pool}) +
                (uint64_t)p.max_seqs * n_vocab * 4;
    }
    return kv + ctx + step + draft;
}

/*
 * The draft model's vocabulary against the target's: the same size, the
 * same text for every token and the same special ids, else REALM_ERR_INVAL
 * naming the first difference. (The target's tokenizer is e->tok; the
 * draft's is read from its file.)
 */
static int draft_vocab_check(realm_engine *e, const realm_model *d)
{
    const int32_t nv = realm_model_hparams(d)->n_vocab;
    if (nv != e->n_vocab)
        return realm__error(REALM_ERR_INVAL,
                            "the draft model's vocabulary has %d tokens, the model's %d", nv,
                            e->n_vocab);
    realm_tokenizer *dt;
    int rc = realm_tokenizer_load(realm_model_gguf(d), &dt);
    if (rc < 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", realm_last_error());
        return realm__error(rc, "the draft model's tokenizer: %s", msg);
    }
    const realm_tokenizer *t = e->tok;
    rc = REALM_OK;
    if (realm_tokenizer_n_vocab(dt) != realm_tokenizer_n_vocab(t)) {
        rc = realm__error(REALM_ERR_INVAL,
                          "the draft model's tokenizer has %d tokens, the model's %d",
                          realm_tokenizer_n_vocab(dt), realm_tokenizer_n_vocab(t));
        goto out;
    }
    for (int32_t i = 0; i < realm_tokenizer_n_vocab(t); i++) {
        size_t la, lb;
        const char *a = realm_token_text(t, i, &la), *b = realm_token_text(dt, i, &lb);
        if (la != lb || memcmp(a, b, la) != 0) {
            rc = realm__error(REALM_ERR_INVAL,
                              "the draft model's vocabulary differs from the model's at token "
                              "%d ('%.40s' vs '%.40s')",
                              i, b, a);
            goto out;
        }
    }
    const struct {
        const char *name;
        realm_token a, b;
    } special[] = {
        {"BOS", realm_tokenizer_bos(t), realm_tokenizer_bos(dt)},
        {"EOS", realm_tokenizer_eos(t), realm_tokenizer_eos(dt)},
        {"EOT", realm_tokenizer_eot(t), realm_tokenizer_eot(dt)},
        {"UNK", realm_tokenizer_unk(t), realm_tokenizer_unk(dt)},
    };
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        if (special[i].a != special[i].b) {
            rc = realm__error(REALM_ERR_INVAL, "the draft model's %s token is %d, the model's %d",
                              special[i].name, special[i].b, special[i].a);
            goto out;
        }
out:
    realm_tokenizer_free(dt);
    return rc;
}

/* The draft model's KV cache (as many tokens as the target's), compute
 * context and pass buffers, after checking its vocabulary. */
static int draft_init(realm_engine *e)
{
    const realm_engine_params *p = &e->p;
    int rc = draft_vocab_check(e, p->draft);
    if (rc < 0)
        return rc;
    e->dm = p->draft;
    rc = realm_kv_cache_new(e->dm,
                            &(realm_kv_params){.n_ctx = p->n_ctx,
                                               .block_size = p->block_size,
                                               .type_k = p->type_k,
                                               .type_v = p->type_v},
                            &e->dkv);
    if (rc < 0)
        return rc;
    rc = realm_ctx_new(e->dm, e->dkv,
                       &(realm_ctx_params){.n_batch = p->n_batch,
                                           .n_threads = p->n_threads,
                                           .pool = e->own_pool ? e->own_pool : p->pool,
                                           .batch_invariant = p->batch_invariant},
                       &e->dctx);
    if (rc < 0)
        return rc;
    const size_t nb = (size_t)p->n_batch;
    e->d_tok = malloc(nb * sizeof *e->d_tok);
    e->d_pos = malloc(nb * sizeof *e->d_pos);
    e->d_seq = malloc(nb * sizeof *e->d_seq);
    e->d_want = malloc(nb * sizeof *e->d_want);
    e->d_logits = malloc((size_t)p->max_seqs * (size_t)e->n_vocab * sizeof *e->d_logits);
    e->d_gen = malloc(2 * (size_t)p->max_seqs * sizeof *e->d_gen);
    e->q_scratch = malloc((size_t)e->n_vocab * sizeof *e->q_scratch);
    if (!e->d_tok || !e->d_pos || !e->d_seq || !e->d_want || !e->d_logits || !e->d_gen ||
        !e->q_scratch)
        return realm__error(REALM_ERR_NOMEM, "out of memory for the draft model's buffers");
    return REALM_OK;
}

void realm__gen_draft_free(realm_engine *e, realm_gen *g)
{
    if (g->dseq >= 0) {
        realm_kv_seq_free(e->dkv, g->dseq);
        g->dseq = -1;
    }
    g->d_past = 0;
}

/*
 * Build the engine: tokenizer (borrowed or loaded), KV pool, compute context,
 * every buffer a step needs (sized by n_batch and max_seqs, so steps
 * allocate only output pieces), then the scheduler thread unless manual.
 */
int realm_engine_new(const realm_model *m, const realm_engine_params *params, realm_engine **out)
{
    *out = NULL;
    realm_engine_params p;
    int rc = normalise_params(m, params, &p);
    if (rc < 0)
        return rc;
    realm_engine *e = calloc(1, sizeof *e);
    if (e == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory for an engine");
    e->m = m;
    e->p = p;
    e->n_vocab = realm_model_hparams(m)->n_vocab;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->work, NULL);
    if (p.tokenizer) {
        e->tok = p.tokenizer;
    } else if ((rc = realm_tokenizer_load(realm_model_gguf(m), &e->own_tok)) < 0) {
        goto fail;
    } else {
        e->tok = e->own_tok;
    }
    e->p.tokenizer = NULL;
    rc = realm_kv_cache_new(m,
                            &(realm_kv_params){.n_ctx = p.n_ctx,
                                               .block_size = p.block_size,
                                               .type_k = p.type_k,
                                               .type_v = p.type_v,
                                               .mem_budget = p.kv_mem_budget},
                            &e->kv);
    if (rc < 0)
        goto fail;
    e->bs = realm_kv_block_size(e->kv);
    e->n_blocks = realm_kv_n_blocks(e->kv);
    /* a draft model's passes and the model's share one pool of threads */
    if (p.draft && p.pool == NULL && (rc = realm_threadpool_new(p.n_threads, &e->own_pool)) < 0)
        goto fail;
    rc = realm_ctx_new(m, e->kv,
                       &(realm_ctx_params){.n_batch = p.n_batch,
                                           .n_threads = p.n_threads,
                                           .pool = e->own_pool ? e->own_pool : p.pool,
                                           .batch_invariant = p.batch_invariant},
                       &e->ctx);
    if (rc < 0)
        goto fail;
    const size_t nb = (size_t)p.n_batch;
    e->waiting = malloc(((size_t)p.max_waiting + (size_t)p.max_seqs) * sizeof *e->waiting);
    e->running = malloc((size_t)p.max_seqs * sizeof *e->running);
    e->prefix = calloc((size_t)p.prefix_cache_entries + 1, sizeof *e->prefix);
    e->b_tok = malloc(nb * sizeof *e->b_tok);
    e->b_pos = malloc(nb * sizeof *e->b_pos);
    e->b_seq = malloc(nb * sizeof *e->b_seq);
    e->b_want = malloc(nb * sizeof *e->b_want);
    e->b_set = malloc(nb * sizeof *e->b_set);
    e->b_sets = malloc((size_t)p.max_seqs * sizeof *e->b_sets);
    e->logits = malloc(((size_t)p.max_seqs + (size_t)p.spec_max_rows) * (size_t)e->n_vocab *
                       sizeof *e->logits);
    /* every request the engine holds: running + waiting (max_waiting plus
     * preempted ones) */
    e->finished = malloc(((size_t)2 * p.max_seqs + (size_t)p.max_waiting) * sizeof *e->finished);
    e->stats.kv_blocks_free = e->n_blocks;
    if (!e->finished || !e->waiting || !e->running || !e->prefix || !e->b_tok || !e->b_pos ||
        !e->b_seq || !e->b_want || !e->b_set || !e->b_sets || !e->logits) {
        rc = realm__error(REALM_ERR_NOMEM, "out of memory for the engine's buffers");
        goto fail;
    }
    if (p.draft && (rc = draft_init(e)) < 0)
        goto fail;
    if (!p.manual_step) {
        if (pthread_create(&e->thread, NULL, scheduler_main, e) != 0) {
            rc = realm__error(REALM_ERR_NOMEM, "cannot start the scheduler thread");
            goto fail;
        }
        e->thread_started = true;
    }
    *out = e;
    return REALM_OK;
fail:
    realm_engine_free(e);
    return rc;
}

/* End g as cancelled and free its KV sequence (caller holds e->mu). */
static void abandon(realm_engine *e, realm_gen *g)
{
    if (g->seq >= 0) {
        realm_kv_seq_free(e->kv, g->seq);
        g->seq = -1;
    }
    realm__gen_draft_free(e, g);
    realm__gen_finish(g, REALM_FINISH_CANCELLED, 0, NULL);
}

/*
 * Stop and join the scheduler, then end every running and waiting request
 * as cancelled and release the engine's references; their sinks' on_done
 * run here, on the caller's thread, with no engine lock held (a sink may
 * cancel another request). Handles stay valid for their owners.
 */
void realm_engine_free(realm_engine *e)
{
    if (e == NULL)
        return;
    if (e->thread_started) {
        pthread_mutex_lock(&e->mu);
        e->stop = true;
        pthread_cond_signal(&e->work);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    pthread_mutex_lock(&e->mu);
    int32_t n_fin = 0;
    for (int32_t i = 0; i < e->n_running; i++)
        abandon(e, e->finished[n_fin++] = e->running[i]);
    for (int32_t i = 0; i < e->n_waiting; i++) {
        realm_gen *g = e->waiting[i];
        for (int32_t k = 0; k < g->n_followers; k++) /* choices never admitted */
            abandon(e, e->finished[n_fin++] = g->followers[k]);
        g->n_followers = 0;
        abandon(e, e->finished[n_fin++] = g);
    }
    e->n_running = e->n_waiting = 0;
    if (e->kv && e->prefix)
        realm__prefix_clear(e);
    pthread_mutex_unlock(&e->mu);
    for (int32_t i = 0; i < n_fin; i++) {
        realm_gen *g = e->finished[i];
        if (g->has_sink && g->sink.on_done)
            g->sink.on_done(g->sink.ud, &g->res);
        pthread_mutex_lock(&g->mu);
        g->e = NULL;
        pthread_mutex_unlock(&g->mu);
        realm__gen_unref(g);
    }
    free(e->prefix);
    free(e->waiting);
    free(e->running);
    free(e->tenants);
    free(e->b_tok);
    free(e->b_pos);
    free(e->b_seq);
    free(e->b_want);
    free(e->b_set);
    free(e->b_sets);
    free(e->logits);
    free(e->finished);
    free(e->d_tok);
    free(e->d_pos);
    free(e->d_seq);
    free(e->d_want);
    free(e->d_logits);
    free(e->d_gen);
    free(e->q_scratch);
    realm_ctx_free(e->dctx);
    realm_kv_cache_free(e->dkv);
    realm_ctx_free(e->ctx);
    realm_kv_cache_free(e->kv);
    realm_threadpool_free(e->own_pool);
    realm_tokenizer_free(e->own_tok);
    pthread_cond_destroy(&e->work);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

int32_t realm_engine_n_ctx_seq(const realm_engine *e)
{
    return e->p.n_ctx_seq;
}

const realm_tokenizer *realm_engine_tokenizer(const realm_engine *e)
{
    return e->tok;
}

/* The tenant record for id, created with default limits (caller holds mu).
 * NULL only when out of memory. */
tenant_state *realm__engine_tenant(realm_engine *e, uint32_t id)
{
    for (int32_t i = 0; i < e->n_tenants; i++)
        if (e->tenants[i].id == id)
            return &e->tenants[i];
    if (e->n_tenants == e->cap_tenants) {
        int32_t cap = e->cap_tenants ? 2 * e->cap_tenants : 8;
        tenant_state *t = realloc(e->tenants, (size_t)cap * sizeof *t);
        if (t == NULL)
            return NULL;
        e->tenants = t;
        e->cap_tenants = cap;
    }
    tenant_state *t = &e->tenants[e->n_tenants++];
    *t = (tenant_state){.id = id, .l = {.weight = 1}};
    return t;
}

/* Replace a tenant's limits; they apply from the next admission on. */
int realm_engine_set_tenant(realm_engine *e, uint32_t id, const realm_tenant_limits *l)
{
    if (l == NULL ||
        !(l->weight == 0 ||
          (l->weight >= REALM_TENANT_WEIGHT_MIN && l->weight <= REALM_TENANT_WEIGHT_MAX)) ||
        l->max_seqs < 0 || l->max_kv_blocks < 0)
        return realm__error(REALM_ERR_INVAL,
                            "bad limits for tenant %u (weight 0 or %g..%g, limits >= 0)", id,
                            REALM_TENANT_WEIGHT_MIN, REALM_TENANT_WEIGHT_MAX);
    pthread_mutex_lock(&e->mu);
    tenant_state *t = realm__engine_tenant(e, id);
    if (t) {
        t->l = *l;
        if (t->l.weight == 0)
            t->l.weight = 1;
        /* a raised limit may admit a waiting request now */
        e->events++;
        pthread_cond_signal(&e->work);
    }
    pthread_mutex_unlock(&e->mu);
    return t ? REALM_OK : realm__error(REALM_ERR_NOMEM, "out of memory for a tenant");
}

/* Free a request's memory (no references left). */
static void gen_destroy(realm_gen *g)
{
    for (piece_node *n = g->head; n;) {
        piece_node *next = n->next;
        free(n);
        n = next;
    }
    free(g->cur);
    realm_sampler_free(g->smp);
    realm_sampler_free(g->dsmp);
    free(g->dq);
    realm_detok_stream_free(g->ds);
    free(g->tokens);
    free(g->stop_tokens);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

void realm__gen_unref(realm_gen *g)
{
    pthread_mutex_lock(&g->mu);
    const bool last = --g->refs == 0;
    pthread_mutex_unlock(&g->mu);
    if (last)
        gen_destroy(g);
}

static const double itl_bounds[REALM_ITL_BUCKETS] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
                                                     0.3,  0.4,   0.5,  0.75,  1.0, 2.5,  5.0,
                                                     7.5,  10.0,  20.0, 40.0,  80.0};

const double *realm_itl_bounds(void)
{
    return itl_bounds;
}

void realm__gen_note_token(realm_gen *g, double now)
{
    if (g->t_last > 0) {
        const double gap = now - g->t_last;
        int b = 0;
        while (b < REALM_ITL_BUCKETS && gap > itl_bounds[b])
            b++;
        g->res.itl_counts[b]++;
        g->res.itl_sum_s += gap;
    }
    g->t_last = now;
}

void realm__gen_finish(realm_gen *g, realm_finish f, int err, const char *msg)
{
    const double now = realm__now();
    pthread_mutex_lock(&g->mu);
    if (!g->done) {
        g->res.finish = f;
        g->res.error = err;
        if (msg)
            snprintf(g->res.message, sizeof g->res.message, "%s", msg);
        g->res.n_completion = g->n_gen;
        if (g->t_first > 0)
            g->res.time_to_first_token_ms = (g->t_first - g->t_submit) * 1e3;
        if (g->n_gen > 1 && now > g->t_first)
            g->res.tokens_per_s = (g->n_gen - 1) / (now - g->t_first);
        if (g->t_admit > 0)
            g->res.queue_ms = (g->t_admit - g->t_submit) * 1e3;
        g->res.e2e_ms = (now - g->t_submit) * 1e3;
        g->done = true;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
}

/* A seed for a request that asked for none: from the kernel's generator,
 * else the clock and a counter. */
static uint64_t random_seed(void)
{
    static _Atomic uint64_t counter;
    uint64_t v;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v && v != REALM_SEED_RANDOM)
        return v;
    return (uint64_t)(realm__now() * 1e9) ^ (++counter * 0x9e3779b97f4a7c15ull);
}

static bool valid_utf8(const char *s)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    utf8proc_ssize_t left = (utf8proc_ssize_t)strlen(s);
    while (left > 0) {
        utf8proc_int32_t cp;
        const utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
        if (n <= 0)
            return false;
        p += n;
        left -= n;
    }
    return true;
}

/*
 * The fair-queuing clock (caller holds mu): the least virtual time among
 * tenants with work, or where it last stood when none has any. It never goes
 * back; a tenant arriving from idle starts there.
 */
double realm__engine_vclock(realm_engine *e)
{
    double vmin = -1;
    for (int32_t i = 0; i < e->n_tenants; i++) {
        const tenant_state *t = &e->tenants[i];
        if ((t->n_running || t->n_waiting) && (vmin < 0 || t->vtime < vmin))
            vmin = t->vtime;
    }
    if (vmin > e->vclock)
        e->vclock = vmin;
    return e->vclock;
}

/* Copy and check the request into a new handle with sampler and stream. */
static int gen_build(realm_engine *e, const realm_gen_request *r, realm_gen **out)
{
    realm_gen_options o;
    realm_gen_options_init(&o);
    if (r->options) {
        if (r->options->version < 1 || r->options->version > REALM_GEN_OPTIONS_VERSION)
            return realm__error(REALM_ERR_INVAL,
                                "options version %d (this build knows 1..%d); "
                                "call realm_gen_options_init",
                                r->options->version, REALM_GEN_OPTIONS_VERSION);
        /* read only the fields the caller's version has; later ones keep
         * their defaults (one entry per version: its struct size) */
        static const size_t version_size[REALM_GEN_OPTIONS_VERSION + 1] = {
            0, offsetof(realm_gen_options, lora), offsetof(realm_gen_options, speculative),
            sizeof(realm_gen_options)};
        memcpy(&o, r->options, version_size[r->options->version]);
    }
    if (o.max_tokens < 0)
        return realm__error(REALM_ERR_INVAL, "max_tokens %d must be >= 0", o.max_tokens);
    if (o.n_stop < 0 || o.n_stop_tokens < 0 || (o.n_stop && !o.stop) ||
        (o.n_stop_tokens && !o.stop_tokens))
        return realm__error(REALM_ERR_INVAL, "malformed stop lists");
    const realm_spec_options *so = &o.speculative;
    if (so->mode < 0 || so->mode >= REALM_SPEC_COUNT)
        return realm__error(REALM_ERR_INVAL, "speculative mode %d", so->mode);
    if (so->n_max < 0 || so->n_max > REALM_SPEC_MAX_DRAFT || so->n_min < -1 ||
        so->n_min > REALM_SPEC_MAX_DRAFT ||
        !(so->p_min == -1 || (so->p_min >= 0 && so->p_min <= 1)))
        return realm__error(REALM_ERR_INVAL,
                            "speculative n_max %d, n_min %d, p_min %g: n_max and n_min "
                            "0..%d, p_min 0..1 (-1: the engine's default)",
                            so->n_max, so->n_min, so->p_min, REALM_SPEC_MAX_DRAFT);
    const int32_t spec = so->mode == REALM_SPEC_DEFAULT ? e->p.spec_mode : so->mode;
    if (spec == REALM_SPEC_DRAFT && e->dm == NULL)
        return realm__error(REALM_ERR_INVAL, "speculative mode draft: the engine has no draft "
                                             "model");
    realm_lora_item lora[REALM_LORA_MAX_SET];
    int32_t n_lora = 0;
    if (o.n_lora != 0 &&
        realm_lora_set_normalize(e->m, &(realm_lora_set){o.n_lora, o.lora}, lora, &n_lora) < 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", realm_last_error());
        return realm__error(REALM_ERR_INVAL, "LoRA adapters: %s", msg);
    }
    realm_gen *g = calloc(1, sizeof *g);
    if (g == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory for a request");
    g->lkey.n = n_lora;
    for (int32_t i = 0; i < n_lora; i++) {
        g->lora[i] = lora[i];
        g->lkey.id[i] = realm_lora_id(lora[i].lora);
        g->lkey.scale[i] = lora[i].scale;
    }
    pthread_mutex_init(&g->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* timeouts ignore wall-clock steps */
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    g->seq = -1;
    g->dseq = -1;
    g->logit_row = -1;
    g->tenant = r->tenant;
    g->spec = r->logits ? REALM_SPEC_OFF : spec;
    g->spec_n_max = so->n_max ? so->n_max : e->p.spec_n_max;
    g->spec_n_min = so->n_min >= 0 ? so->n_min : e->p.spec_n_min;
    g->spec_p_min = so->p_min >= 0 ? so->p_min : e->p.spec_p_min;
    g->spec_k = g->spec_n_max;
    /* a prior of 4 accepted in 5 tested: K starts high and adapts */
    g->spec_acc = 4;
    g->spec_tried = 5;
    g->priority = o.priority;
    g->max_tokens = r->logits ? 1 : o.max_tokens;
    g->unlimited = !r->logits && o.max_tokens == 0;
    g->logits_out = r->logits;
    g->ignore_eos = o.ignore_eos;
    g->no_prefix_cache = o.no_prefix_cache;
    if (r->sink) {
        g->sink = *r->sink;
        g->has_sink = true;
    }
    int rc;
    if (r->prompt) {
        if (r->n_prompt < 0) {
            rc = realm__error(REALM_ERR_INVAL, "prompt of %d tokens", r->n_prompt);
            goto fail;
        }
        g->n_prompt = r->n_prompt;
        g->tokens = malloc(((size_t)r->n_prompt + 1) * sizeof *g->tokens);
        if (g->tokens == NULL) {
            rc = realm__error(REALM_ERR_NOMEM, "out of memory for a prompt");
            goto fail;
        }
        memcpy(g->tokens, r->prompt, (size_t)r->n_prompt * sizeof *g->tokens);
    }
    if (g->n_prompt == 0) {
        rc = realm__error(REALM_ERR_INVAL, "the prompt is empty");
        goto fail;
    }
    for (int32_t i = 0; i < g->n_prompt; i++)
        if (g->tokens[i] < 0 || g->tokens[i] >= e->n_vocab) {
            rc = realm__error(REALM_ERR_INVAL,
                              "prompt token %d at %d is outside the vocabulary "
                              "of %d",
                              g->tokens[i], i, e->n_vocab);
            goto fail;
        }
    if (g->n_prompt > e->p.n_ctx_seq) {
        rc = realm__error(REALM_ERR_RANGE, "the prompt has %d tokens, more than the context of %d",
                          g->n_prompt, e->p.n_ctx_seq);
        goto fail;
    }
    /* no limit: until the context is full (the sampled token that fills
     * it is the last) */
    if (g->unlimited)
        g->max_tokens = e->p.n_ctx_seq - g->n_prompt + 1;
    /* the last sampled token is never fed back, so it takes no KV slot */
    int64_t kv_tokens = (int64_t)g->n_prompt + g->max_tokens - 1;
    if (kv_tokens > e->p.n_ctx_seq)
        kv_tokens = e->p.n_ctx_seq;
    g->max_blocks = (int32_t)((kv_tokens + e->bs - 1) / e->bs);
    if (g->max_blocks > e->n_blocks) {
        rc = realm__error(REALM_ERR_RANGE, "the request needs %d KV blocks, the pool has %d",
                          g->max_blocks, e->n_blocks);
        goto fail;
    }
    /* room for the tokens fed back, which a preempted request recomputes */
    realm_token *grown = realloc(g->tokens, ((size_t)kv_tokens + 1) * sizeof *g->tokens);
    if (grown == NULL) {
        rc = realm__error(REALM_ERR_NOMEM, "out of memory for a request's tokens");
        goto fail;
    }
    g->tokens = grown;
    g->n_fill = g->n_prompt;
    g->n_stop_tokens = o.n_stop_tokens;
    g->stop_tokens = malloc(((size_t)o.n_stop_tokens + 1) * sizeof *g->stop_tokens);
    if (g->stop_tokens == NULL) {
        rc = realm__error(REALM_ERR_NOMEM, "out of memory for stop tokens");
        goto fail;
    }
    if (o.n_stop_tokens)
        memcpy(g->stop_tokens, o.stop_tokens, (size_t)o.n_stop_tokens * sizeof *g->stop_tokens);
    if (o.sampling.seed == REALM_SEED_RANDOM)
        o.sampling.seed = random_seed();
    if ((rc = realm_sampler_new(&o.sampling, e->n_vocab, &g->smp)) < 0 ||
        (rc = realm_detok_stream_new(e->tok, 0, &g->ds)) < 0)
        goto fail;
    if (g->spec == REALM_SPEC_DRAFT) {
        /* the draft's q: the request's filters without the penalties (any q
         * keeps the output distribution the target's; this one is close) */
        realm_sampler_params dp = o.sampling;
        dp.repeat_penalty = 0;
        dp.presence_penalty = dp.frequency_penalty = 0;
        dp.n_probs = 0;
        if ((rc = realm_sampler_new(&dp, e->n_vocab, &g->dsmp)) < 0)
            goto fail;
        if (dp.temperature > 0 &&
            !(g->dq = malloc(((size_t)g->spec_n_max + 1) * (size_t)e->n_vocab * sizeof *g->dq))) {
            rc = realm__error(REALM_ERR_NOMEM, "out of memory for draft distributions");
            goto fail;
        }
    }
    for (int32_t i = 0; i < o.n_stop; i++) {
        if (o.stop[i] == NULL || o.stop[i][0] == '\0') {
            rc = realm__error(REALM_ERR_INVAL, "stop string %d is empty", i);
            goto fail;
        }
        if (!valid_utf8(o.stop[i])) {
            /* text held back for a partial match must end on a character */
            rc = realm__error(REALM_ERR_INVAL, "stop string %d is not valid UTF-8", i);
            goto fail;
        }
        if ((rc = realm_detok_stream_add_stop(g->ds, o.stop[i], strlen(o.stop[i]))) < 0)
            goto fail;
    }
    for (int32_t i = 0; i < g->n_prompt; i++)
        realm_sampler_accept(g->smp, g->tokens[i]);
    g->res.n_prompt = g->n_prompt;
    g->refs = 2;
    g->e = e;
    *out = g;
    return REALM_OK;
fail:
    gen_destroy(g);
    return rc;
}

/*
 * Queue built requests: g[0] (the leader) waits; g[1..n) are its choices,
 * admitted with it. Fails unless the queue has room for all of them and the
 * tenant's block limit can be met. Wakes the scheduler.
 */
static int queue_built(realm_engine *e, const realm_gen_request *r, realm_gen **g, int32_t n)
{
    int rc = REALM_OK;
    pthread_mutex_lock(&e->mu);
    tenant_state *t = realm__engine_tenant(e, r->tenant);
    realm_gen *l = g[0];
    if (t == NULL) {
        rc = realm__error(REALM_ERR_NOMEM, "out of memory for a tenant");
    } else if (t->l.max_kv_blocks && l->max_blocks > t->l.max_kv_blocks && l->unlimited &&
               (int64_t)t->l.max_kv_blocks * e->bs >= l->n_prompt) {
        /* no limit asked: generate until the tenant's blocks are full */
        for (int32_t i = 0; i < n; i++) {
            g[i]->max_blocks = t->l.max_kv_blocks;
            g[i]->max_tokens = t->l.max_kv_blocks * e->bs - l->n_prompt + 1;
        }
    } else if (t->l.max_kv_blocks && l->max_blocks > t->l.max_kv_blocks) {
        rc = realm__error(REALM_ERR_RANGE,
                          "the request needs %d KV blocks, over tenant %u's "
                          "limit of %d",
                          l->max_blocks, r->tenant, t->l.max_kv_blocks);
    }
    if (rc == 0 && e->n_waiting + e->n_waiting_followers + n > e->p.max_waiting)
        rc = realm__error(REALM_ERR_OVERLOADED, "%d requests are already waiting",
                          e->n_waiting + e->n_waiting_followers);
    else if (rc == 0 && n > e->p.max_seqs)
        rc = realm__error(REALM_ERR_RANGE, "%d choices; at most %d sequences run at once", n,
                          e->p.max_seqs);
    else if (rc == 0 && e->stop)
        rc = realm__error(REALM_ERR_INVAL, "the engine is shutting down");
    if (rc < 0) {
        pthread_mutex_unlock(&e->mu);
        return rc;
    }
    /* a tenant coming back from idle (or new) starts at the fair-queuing
     * clock, so past idleness is no credit against the others */
    if (t->n_running == 0 && t->n_waiting == 0) {
        const double v = realm__engine_vclock(e);
        if (v > t->vtime)
            t->vtime = v;
    }
    const double now = realm__now();
    for (int32_t i = 0; i < n; i++) {
        g[i]->arrival = e->arrivals++;
        g[i]->t_submit = now;
        g[i]->res.step_submitted = e->stats.steps;
    }
    for (int32_t i = 1; i < n; i++) {
        g[i]->awaiting_fork = true;
        l->followers[l->n_followers++] = g[i];
    }
    e->n_waiting_followers += n - 1;
    t->n_waiting++;
    e->waiting[e->n_waiting++] = l;
    e->events++;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
    return REALM_OK;
}

/*
 * Build the request outside the lock (tokenizing, sampler, stop strings),
 * then queue it.
 */
int realm_engine_submit(realm_engine *e, const realm_gen_request *r, realm_gen **out)
{
    *out = NULL;
    if (r == NULL)
        return realm__error(REALM_ERR_INVAL, "no request");
    realm_gen *g = NULL;
    int rc = gen_build(e, r, &g);
    if (rc < 0)
        return rc;
    if ((rc = queue_built(e, r, &g, 1)) < 0) {
        gen_destroy(g);
        return rc;
    }
    *out = g;
    return REALM_OK;
}

int realm_engine_submit_n(realm_engine *e, const realm_gen_request *r, int32_t n, realm_gen **outs)
{
    if (outs == NULL || r == NULL || n < 1 || n > REALM_MAX_CHOICES)
        return realm__error(REALM_ERR_INVAL, "choices: 1..%d", REALM_MAX_CHOICES);
    for (int32_t i = 0; i < n; i++)
        outs[i] = NULL;
    if (r->logits && n > 1)
        return realm__error(REALM_ERR_INVAL, "a logits-only request has one choice");
    realm_gen_options o;
    realm_gen_options_init(&o);
    if (r->options)
        o = *r->options; /* (version checked by gen_build) */
    realm_gen *g[REALM_MAX_CHOICES] = {0};
    int rc = REALM_OK;
    for (int32_t i = 0; i < n && rc == 0; i++) {
        realm_gen_options oi = o;
        if (o.sampling.seed != REALM_SEED_RANDOM) /* reproducible, and distinct */
            oi.sampling.seed = o.sampling.seed + (uint64_t)i;
        realm_gen_request ri = *r;
        ri.options = r->options ? &oi : NULL; /* defaults: a random seed each */
        rc = gen_build(e, &ri, &g[i]);
    }
    if (rc == 0)
        rc = queue_built(e, r, g, n);
    if (rc < 0) {
        for (int32_t i = 0; i < n; i++)
            if (g[i])
                gen_destroy(g[i]);
        return rc;
    }
    for (int32_t i = 0; i < n; i++)
        outs[i] = g[i];
    return REALM_OK;
}

/*
 * Pop the next queued piece (freeing the one returned last time), or report
 * the end, or wait on the request's condition variable up to timeout_ms.
 */
int realm_gen_next(realm_gen *g, realm_gen_piece *piece, int timeout_ms)
{
    struct timespec until;
    if (timeout_ms > 0) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&g->mu);
    free(g->cur);
    g->cur = NULL;
    int rc;
    for (;;) {
        if (g->head) {
            g->cur = g->head;
            g->head = g->head->next;
            if (g->head == NULL)
                g->tail = NULL;
            *piece = g->cur->piece;
            rc = 1;
            break;
        }
        if (g->done) {
            rc = 0;
            break;
        }
        if (timeout_ms == 0) {
            rc = REALM_ERR_TIMEOUT;
            break;
        }
        if (timeout_ms < 0) {
            pthread_cond_wait(&g->cv, &g->mu);
        } else if (pthread_cond_timedwait(&g->cv, &g->mu, &until) == ETIMEDOUT && !g->head &&
                   !g->done) {
            rc = REALM_ERR_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&g->mu);
    if (rc == REALM_ERR_TIMEOUT)
        return realm__error(REALM_ERR_TIMEOUT, "no output within %d ms", timeout_ms);
    return rc;
}

/* Flag the request; the stepping thread retires it at its next step. */
void realm_gen_cancel(realm_gen *g)
{
    if (g == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    g->cancel = true;
    realm_engine *e = g->done ? NULL : g->e;
    pthread_mutex_unlock(&g->mu);
    if (e) {
        pthread_mutex_lock(&e->mu);
        e->events++;
        pthread_cond_signal(&e->work);
        pthread_mutex_unlock(&e->mu);
    }
}

void realm_gen_wait(realm_gen *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->done)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

int realm_gen_result_get(realm_gen *g, realm_gen_result *out)
{
    pthread_mutex_lock(&g->mu);
    const bool done = g->done;
    if (done)
        *out = g->res;
    pthread_mutex_unlock(&g->mu);
    return done ? REALM_OK : realm__error(REALM_ERR_INVAL, "the request is still running");
}

void realm_gen_free(realm_gen *g)
{
    if (g == NULL)
        return;
    realm_gen_cancel(g);
    realm__gen_unref(g);
}

int realm_engine_step(realm_engine *e)
{
    if (!e->p.manual_step)
        return realm__error(REALM_ERR_INVAL, "the engine has its own scheduler thread");
    return realm__engine_step(e);
}

void realm_engine_get_stats(realm_engine *e, realm_engine_stats *out)
{
    pthread_mutex_lock(&e->mu);
    *out = e->stats;
    out->n_running = e->n_running;
    out->n_waiting = e->n_waiting;
    out->kv_blocks_total = e->n_blocks;
    out->prefix_entries = e->n_prefix;
    pthread_mutex_unlock(&e->mu);
}
