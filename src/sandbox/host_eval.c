/*
 * Low-level host functions: eval (a session with its own KV cache) and
 * logits (docs/host-abi.md).
 */
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "host_internal.h"

static session *session_get(realm_instance *in, uint32_t h)
{
    return h >= SESSION_BASE && h < SESSION_BASE + MAX_SESSIONS &&
                   in->sessions[h - SESSION_BASE].ctx
               ? &in->sessions[h - SESSION_BASE]
               : NULL;
}

static void session_close(session *se)
{
    realm_ctx_free(se->ctx);
    realm_kv_cache_free(se->kv);
    free(se->logits);
    memset(se, 0, sizeof *se);
}

/* A session on model ms: KV cache for up to SESSION_CTX tokens, one thread. */
static int session_open(session *se, model_slot *ms)
{
    const realm_hparams *hp = realm_model_hparams(ms->model);
    memset(se, 0, sizeof *se);
    se->n_ctx =
        hp->n_ctx_train > 0 && hp->n_ctx_train < SESSION_CTX ? hp->n_ctx_train : SESSION_CTX;
    se->n_vocab = hp->n_vocab;
    int rc = realm_kv_cache_new(ms->model, &(realm_kv_params){.n_ctx = se->n_ctx}, &se->kv);
    if (rc == 0)
        rc = realm_ctx_new(ms->model, se->kv,
                           &(realm_ctx_params){.n_batch = SESSION_BATCH, .n_threads = 1}, &se->ctx);
    if (rc == 0)
        rc = realm_kv_seq_new(se->kv, &se->seq);
    if (rc == 0 && !(se->logits = malloc((size_t)se->n_vocab * sizeof(float))))
        rc = realm__error(REALM_ERR_NOMEM, "out of memory");
    return rc;
}

/* ---- low level: sessions with their own KV cache, logits, weights -------- */

/* eval(h, ids, n): h is a model handle (a new session) or a session handle
 * (continue it). Runs the tokens through the model in the session's private
 * KV cache, keeping the logits of the last one. Returns the session handle. */
uint32_t realm__host_eval(void *c, uint32_t h, uint32_t ids, uint32_t n)
{
    HOST_BEGIN(c);
    const uint8_t *src = realm__host_range(in, "eval", ids, (uint64_t)n * 4);
    session *se = session_get(in, h);
    model_slot *ms = se ? NULL : realm__host_model(in, h);
    if (!se && !ms)
        HOST_RETURN(
            realm__host_fail(in, REALM_ERR_INVAL, "eval: %u is neither a model nor a session", h));
    if (n == 0 || n > 4096)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_RANGE, "eval: %u tokens (1..4096 per call)", n));
    int rc = 0;
    if (!se) {
        int slot = -1;
        for (int i = 0; i < MAX_SESSIONS && slot < 0; i++)
            if (!in->sessions[i].ctx)
                slot = i;
        if (slot < 0 || in->n_gens_open >= in->pol.max_generations)
            HOST_RETURN(realm__host_fail(in, REALM_ERR_DENIED,
                                         "eval: at most %d generations and sessions at once",
                                         in->pol.max_generations));
        se = &in->sessions[slot];
        rc = session_open(se, ms);
        if (rc < 0) {
            session_close(se);
            HOST_RETURN(realm__host_fail(in, rc, "eval: %s", realm_last_error()));
        }
        in->n_gens_open++;
        h = (uint32_t)(SESSION_BASE + slot);
    }
    int32_t len = realm_kv_seq_len(se->kv, se->seq);
    if (len + (int64_t)n > se->n_ctx) {
        rc = realm__host_fail(in, REALM_ERR_RANGE, "eval: session would hold %lld tokens, limit %d",
                              (long long)len + n, se->n_ctx);
        if (ms) { /* the session was opened by this call: it must not stay open */
            session_close(se);
            in->n_gens_open--;
        }
        HOST_RETURN(rc);
    }
    int32_t *tok = malloc((size_t)n * 3 * sizeof *tok);
    if (!tok)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_NOMEM, "eval: out of memory"));
    int32_t *pos = tok + n, *seq = pos + n;
    memcpy(tok, src, (size_t)n * 4);
    for (uint32_t i = 0; i < n; i++) {
        pos[i] = len + (int32_t)i;
        seq[i] = se->seq;
    }
    for (uint32_t off = 0; off < n && rc == 0; off += SESSION_BATCH) {
        int32_t k = (int32_t)(n - off < SESSION_BATCH ? n - off : SESSION_BATCH);
        rc = realm_forward(
            se->ctx, &(realm_batch){.n = k, .token = tok + off, .pos = pos + off, .seq = seq + off},
            se->logits);
    }
    free(tok);
    if (rc < 0)
        HOST_RETURN(realm__host_fail(in, rc, "eval: %s", realm_last_error()));
    se->has_logits = 1;
    HOST_RETURN(h);
}

/* logits(session, out, cap): the last evaluated token's logits, n_vocab f32
 * (cap counts floats; buffer rule). */
uint32_t realm__host_logits(void *c, uint32_t h, uint32_t out, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = realm__host_range(in, "logits", out, (uint64_t)cap * 4);
    session *se = session_get(in, h);
    if (!se)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_INVAL, "logits: bad session handle %u", h));
    if (!se->has_logits)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_INVAL, "logits: nothing evaluated yet"));
    if ((uint32_t)se->n_vocab <= cap)
        memcpy(dst, se->logits, (size_t)se->n_vocab * sizeof(float));
    HOST_RETURN(se->n_vocab);
}
void realm__host_sessions_close(realm_instance *in)
{
    for (int i = 0; i < MAX_SESSIONS; i++)
        session_close(&in->sessions[i]);
}
