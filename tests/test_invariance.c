/*
 * Batch invariance (realm_ctx_params.batch_invariant) on every tiny-* model
 * of the shared test data: the logits of one sequence's decode steps are
 * bitwise the same when
 *   (a) its prompt is computed in one pass and it decodes alone (one entry
 *       per pass), with two threads, and
 *   (b) its prompt is computed in chunks of 7 mixed with two other
 *       sequences' prompts, and it decodes in passes with their tokens, with
 *       one thread, and
 *   (c) its prompt is computed token by token (the preemption-recompute
 *       promise: prefill tiles and each token's attention alone agree).
 * And over a long context, where attention splits a lone sequence's
 * positions between threads (split-K) but not a batch's: a 300-token
 * prompt, then decode steps alone with two threads (split; checked) and
 * beside two other sequences with one thread (not split), bitwise the same.
 * Both again with a Q8_0 KV cache (keys and values quantized as stored) on
 * two models, and with the mixed F16/Q8_0 pairs. As a control, without the option the two differ
 * for at least one model (the n == 1 matvec loop and the blocked kernels sum in different orders),
 * so the comparison can see a difference (not on REALM_ISA=scalar, which
 * has no blocked kernels and is invariant anyway).
 */
#include <string.h>

#include "model/model_internal.h"
#include "realm/error.h"
#include "realm/kernels.h"
#include "realm/model.h"
#include "test_util.h"

enum { NP = 20, NOTHER = 13, NDEC = 5 };

static const char *const models[] = {
    "tiny-f32",    "tiny-f16",    "tiny-bf16", "tiny-q8_0",   "tiny-q4_0",
    "tiny-q4_1",   "tiny-q5_0",   "tiny-q5_1", "tiny-q2_k",   "tiny-q3_k_m",
    "tiny-q4_k_m", "tiny-q5_k_m", "tiny-q6_k", "tiny-iq4_nl", "tiny-iq4_xs",
};

/* The KV cache's types of every run (F16, then Q8_0 for the last checks). */
static realm_type type_k = REALM_TYPE_F16, type_v = REALM_TYPE_F16;

typedef struct run {
    realm_kv_cache *kv;
    realm_ctx *ctx;
    int32_t tok[64], pos[64], seq[64];
    bool want[64];
    int n;
} run;

static bool run_new_ctx(run *r, const realm_model *m, bool invariant, int threads, int n_ctx)
{
    memset(r, 0, sizeof *r);
    CHECK_RC(realm_kv_cache_new(
                 m,
                 &(realm_kv_params){
                     .n_ctx = n_ctx, .block_size = 16, .type_k = type_k, .type_v = type_v},
                 &r->kv),
             REALM_OK);
    CHECK_RC(realm_ctx_new(m, r->kv,
                           &(realm_ctx_params){
                               .n_batch = 64, .n_threads = threads, .batch_invariant = invariant},
                           &r->ctx),
             REALM_OK);
    return r->kv && r->ctx;
}

static bool run_new(run *r, const realm_model *m, bool invariant, int threads)
{
    return run_new_ctx(r, m, invariant, threads, 256);
}

static void run_free(run *r)
{
    realm_ctx_free(r->ctx);
    realm_kv_cache_free(r->kv);
}

static void add(run *r, int32_t tok, int32_t pos, int32_t seq, bool want)
{
    r->tok[r->n] = tok;
    r->pos[r->n] = pos;
    r->seq[r->n] = seq;
    r->want[r->n] = want;
    r->n++;
}

/* Run the queued entries; logits rows (one per wanted entry) into out. */
static void pass(run *r, float *out)
{
    realm_batch b = {r->n, r->tok, r->pos, r->seq, r->want};
    CHECK_RC(realm_forward(r->ctx, &b, out), REALM_OK);
    r->n = 0;
}

/* (a): A's prompt in one pass, then NDEC decode steps alone. */
static void alone(const realm_model *m, bool invariant, const int32_t *a, float *logits, int nv)
{
    run r;
    if (!run_new(&r, m, invariant, 2))
        return;
    int32_t s;
    realm_kv_seq_new(r.kv, &s);
    float *tmp = malloc(sizeof *tmp * (size_t)nv);
    for (int i = 0; i < NP; i++)
        add(&r, a[i], i, s, false);
    pass(&r, tmp);
    for (int d = 0; d < NDEC; d++) {
        add(&r, a[NP + d], NP + d, s, true);
        pass(&r, logits + (size_t)d * nv);
    }
    free(tmp);
    run_free(&r);
}

/* (c): A's prompt token by token (one entry per pass: each token's
 * attention alone, not in a prefill tile), then NDEC decode steps alone. */
static void by_token(const realm_model *m, const int32_t *a, float *logits, int nv)
{
    run r;
    if (!run_new(&r, m, true, 2))
        return;
    int32_t s;
    realm_kv_seq_new(r.kv, &s);
    float *tmp = malloc(sizeof *tmp * (size_t)nv);
    for (int i = 0; i < NP; i++) {
        add(&r, a[i], i, s, false);
        pass(&r, tmp);
    }
    for (int d = 0; d < NDEC; d++) {
        add(&r, a[NP + d], NP + d, s, true);
        pass(&r, logits + (size_t)d * nv);
    }
    free(tmp);
    run_free(&r);
}

/* (b): A's prompt in chunks of 7 beside B's and C's prompts, then NDEC
 * steps each with a token of B, A and C (in that order). */
static void mixed(const realm_model *m, bool invariant, const int32_t *a, const int32_t *o,
                  float *logits, int nv)
{
    run r;
    if (!run_new(&r, m, invariant, 1))
        return;
    int32_t sa, sb, sc;
    realm_kv_seq_new(r.kv, &sb);
    realm_kv_seq_new(r.kv, &sa);
    realm_kv_seq_new(r.kv, &sc);
    float *tmp = malloc(sizeof *tmp * (size_t)nv * 3);
    for (int at = 0; at < NP; at += 7) {
        if (at < NOTHER)
            for (int i = at; i < at + 7 && i < NOTHER; i++)
                add(&r, o[i], i, sb, false);
        for (int i = at; i < at + 7 && i < NP; i++)
            add(&r, a[i], i, sa, false);
        if (at == 0)
            for (int i = 0; i < NOTHER; i++)
                add(&r, o[NOTHER - 1 - i], i, sc, false);
        pass(&r, tmp);
    }
    for (int d = 0; d < NDEC; d++) {
        add(&r, o[d], NOTHER + d, sb, true);
        add(&r, a[NP + d], NP + d, sa, true);
        add(&r, o[d + 3], NOTHER + d, sc, true);
        pass(&r, tmp);
        memcpy(logits + (size_t)d * nv, tmp + nv, sizeof *tmp * (size_t)nv);
    }
    free(tmp);
    run_free(&r);
}

enum { NLONG = 300, NLDEC = 4 };

/* The long-context case: logits of NLDEC decode steps after an NLONG-token
 * prompt, alone (2 threads) or with two other sequences (1 thread). */
static void long_context(const realm_model *m, bool batched, float *logits, int nv)
{
    run r;
    if (!run_new_ctx(&r, m, true, batched ? 1 : 2, 3 * (NLONG + NLDEC) + 64))
        return;
    int32_t s, o1 = -1, o2 = -1;
    if (batched)
        realm_kv_seq_new(r.kv, &o1);
    realm_kv_seq_new(r.kv, &s);
    if (batched)
        realm_kv_seq_new(r.kv, &o2);
    float *tmp = malloc(sizeof *tmp * (size_t)nv * 3);
    for (int at = 0; at < NLONG; at += 25) {
        for (int i = at; i < at + 25 && i < NLONG; i++) {
            if (batched && i < 270)
                add(&r, 1 + (i * 7 + 3) % (nv - 1), i, o1, false);
            add(&r, 1 + (i * 37 + 11) % (nv - 1), i, s, false);
        }
        if (batched && at == 0)
            for (int i = 0; i < 9; i++)
                add(&r, 2 + i, i, o2, false);
        pass(&r, tmp);
    }
    for (int d = 0; d < NLDEC; d++) {
        if (batched)
            add(&r, 5 + d, 270 + d, o1, true);
        add(&r, 1 + (d * 41 + 2) % (nv - 1), NLONG + d, s, true);
        if (batched)
            add(&r, 9 + d, 9 + d, o2, true);
        pass(&r, tmp);
        memcpy(logits + (size_t)d * nv, tmp + (batched ? nv : 0), sizeof *tmp * (size_t)nv);
        /* alone with 2 threads, the decode steps split the positions */
        CHECK_MSG(batched || realm__ctx_attn_units(r.ctx) > 2,
                  "a lone %d-token sequence on 2 threads: %d split-K units", NLONG + d,
                  realm__ctx_attn_units(r.ctx));
        if (batched)
            CHECK_EQ_INT(realm__ctx_attn_units(r.ctx), 0);
    }
    free(tmp);
    run_free(&r);
}

/* With a Q8_0 cache (and the mixed pairs): alone and batched, and the long
 * context split or not, bitwise the same. */
static void check_q8_0(const char *name, realm_type tk, realm_type tv, bool long_too)
{
    char path[256];
    snprintf(path, sizeof path, "quant/%s.gguf", name);
    realm_model *m = NULL;
    CHECK_RC(realm_model_load(test_data(path), NULL, &m), REALM_OK);
    if (!m)
        return;
    type_k = tk;
    type_v = tv;
    const int nv = realm_model_hparams(m)->n_vocab;
    int32_t a[NP + NDEC], o[NOTHER];
    for (int k = 0; k < NP + NDEC; k++)
        a[k] = 1 + (k * 29 + 7) % (nv - 1);
    for (int k = 0; k < NOTHER; k++)
        o[k] = 1 + (k * 53 + 5) % (nv - 1);
    const size_t bytes = sizeof(float) * (size_t)nv * NDEC;
    float *x = calloc(1, bytes), *y = calloc(1, bytes);
    alone(m, true, a, x, nv);
    mixed(m, true, a, o, y, nv);
    CHECK_MSG(memcmp(x, y, bytes) == 0, "%s, cache %s/%s: logits differ alone and batched", name,
              realm_type_name(tk), realm_type_name(tv));
    by_token(m, a, y, nv);
    CHECK_MSG(memcmp(x, y, bytes) == 0,
              "%s, cache %s/%s: logits differ after the prompt in one pass and token by token",
              name, realm_type_name(tk), realm_type_name(tv));
    free(x);
    free(y);
    if (long_too) {
        const size_t lb = sizeof(float) * (size_t)nv * NLDEC;
        float *la = calloc(1, lb), *lm = calloc(1, lb);
        long_context(m, false, la, nv);
        long_context(m, true, lm, nv);
        CHECK_MSG(memcmp(la, lm, lb) == 0,
                  "%s, cache %s/%s: logits after %d tokens differ alone (split-K) and batched",
                  name, realm_type_name(tk), realm_type_name(tv), NLONG);
        free(la);
        free(lm);
    }
    type_k = type_v = REALM_TYPE_F16;
    realm_model_free(m);
}

/*
 * The weights repacked at load (realm_model_params.repack): (a), (b) and
 * (c) bitwise the same, and the long context alone and batched, with every
 * matrix computed by the packed product (checked, where the CPU has it).
 */
static void check_repacked(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "quant/%s.gguf", name);
    realm_model *m = NULL;
    CHECK_RC(realm_model_load(test_data(path), &(realm_model_params){.repack = true}, &m),
             REALM_OK);
    if (!m)
        return;
    if (realm_repack_fast(realm_kernels_best(), m->layers[0].wq.type))
        CHECK_MSG(m->layers[0].wq.packed && m->layers[1].w_down.packed && m->output.packed,
                  "%s: not repacked", name);
    const int nv = realm_model_hparams(m)->n_vocab;
    int32_t a[NP + NDEC], o[NOTHER];
    for (int k = 0; k < NP + NDEC; k++)
        a[k] = 1 + (k * 41 + 3) % (nv - 1);
    for (int k = 0; k < NOTHER; k++)
        o[k] = 1 + (k * 29 + 7) % (nv - 1);
    const size_t bytes = sizeof(float) * (size_t)nv * NDEC;
    float *x = calloc(1, bytes), *y = calloc(1, bytes);
    alone(m, true, a, x, nv);
    mixed(m, true, a, o, y, nv);
    CHECK_MSG(memcmp(x, y, bytes) == 0, "%s repacked: logits differ alone and batched", name);
    by_token(m, a, y, nv);
    CHECK_MSG(memcmp(x, y, bytes) == 0,
              "%s repacked: logits differ after the prompt in one pass and token by token", name);
    free(x);
    free(y);
    const size_t lb = sizeof(float) * (size_t)nv * NLDEC;
    float *la = calloc(1, lb), *lm = calloc(1, lb);
    long_context(m, false, la, nv);
    long_context(m, true, lm, nv);
    CHECK_MSG(memcmp(la, lm, lb) == 0,
              "%s repacked: logits after %d tokens differ alone (split-K) and batched", name,
              NLONG);
    free(la);
    free(lm);
    realm_model_free(m);
}

int main(void)
{
    test_begin("invariance", 60);
    int differ_without = 0;
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "quant/%s.gguf", models[i]);
        realm_model *m = NULL;
        CHECK_RC(realm_model_load(test_data(path), NULL, &m), REALM_OK);
        if (!m)
            continue;
        const int nv = realm_model_hparams(m)->n_vocab;
        int32_t a[NP + NDEC], o[NOTHER];
        for (int k = 0; k < NP + NDEC; k++)
            a[k] = 1 + (k * 37 + 11) % (nv - 1);
        for (int k = 0; k < NOTHER; k++)
            o[k] = 1 + (k * 53 + 5) % (nv - 1);
        const size_t bytes = sizeof(float) * (size_t)nv * NDEC;
        float *x = calloc(1, bytes), *y = calloc(1, bytes);
        alone(m, true, a, x, nv);
        mixed(m, true, a, o, y, nv);
        CHECK_MSG(memcmp(x, y, bytes) == 0, "%s: logits differ alone and batched", models[i]);
        by_token(m, a, y, nv);
        CHECK_MSG(memcmp(x, y, bytes) == 0,
                  "%s: logits differ after the prompt in one pass and token by token", models[i]);
        alone(m, false, a, x, nv);
        mixed(m, false, a, o, y, nv);
        differ_without += memcmp(x, y, bytes) != 0;
        free(x);
        free(y);
        if (i == 3 || i == 10) { /* q8_0, q4_k_m */
            const size_t lb = sizeof(float) * (size_t)nv * NLDEC;
            float *la = calloc(1, lb), *lm = calloc(1, lb);
            long_context(m, false, la, nv);
            long_context(m, true, lm, nv);
            CHECK_MSG(memcmp(la, lm, lb) == 0,
                      "%s: logits after %d tokens differ alone (split-K) and batched", models[i],
                      NLONG);
            free(la);
            free(lm);
        }
        realm_model_free(m);
    }
    check_q8_0("tiny-q8_0", REALM_TYPE_Q8_0, REALM_TYPE_Q8_0, true);
    check_q8_0("tiny-q4_k_m", REALM_TYPE_Q8_0, REALM_TYPE_Q8_0, true);
    check_q8_0("tiny-f16", REALM_TYPE_F16, REALM_TYPE_Q8_0, false);
    check_q8_0("tiny-q4_0", REALM_TYPE_Q8_0, REALM_TYPE_F16, false);
    check_repacked("tiny-q4_k_m");
    check_repacked("tiny-q5_k_m");
    check_repacked("tiny-q6_k");
    check_repacked("tiny-q4_0");
    check_repacked("tiny-q8_0");
    /* the scalar build has no blocked kernels: invariant without the option */
    if (realm_kernels_best()->isa != REALM_ISA_SCALAR)
        CHECK_MSG(differ_without > 0,
                  "without the option no model differed: the test sees nothing");
    printf("without batch_invariant, %d of 15 models give other bits batched\n", differ_without);
    return test_end();
}
