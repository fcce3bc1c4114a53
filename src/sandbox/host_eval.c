/*
 * Low-level host functions: eval (sessions evaluated through the engine, in
 * its KV pool and under the tenant's limits) and logits (docs/host-abi.md).
 */
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "host_internal.h"

static session *session_get(realm_instance *in, uint32_t h)
{
    return h >= SESSION_BASE && h < SESSION_BASE + MAX_SESSIONS &&
                   in->sessions[h - SESSION_BASE].engine
               ? &in->sessions[h - SESSION_BASE]
               : NULL;
}

static void session_close(session *se)
{
    free(se->tokens);
    free(se->logits);
    memset(se, 0, sizeof *se);
}

/*
 * Run se's tokens as one logits-only request of the tenant and wait for it
 * within the call's deadline (a trap when it passes: the request is freed,
 * so cancelled, at the end of the request). 0, or a negative code with the
 * guest's error set.
 */
static int session_run(realm_instance *in, session *se)
{
    realm_gen_options o;
    realm_gen_options_init(&o);
    const realm_lora_item item = {se->lora, 1.0f};
    if (se->lora) { /* a model opened by an adapter's name: its logits are the adapter's */
        o.lora = &item;
        o.n_lora = 1;
    }
    realm_gen *g = NULL;
    int rc = realm_engine_submit(se->engine,
                                 &(realm_gen_request){.prompt = se->tokens,
                                                      .n_prompt = se->n,
                                                      .tenant = in->pol.tenant,
                                                      .options = &o,
                                                      .logits = se->logits},
                                 &g);
    if (rc < 0)
        return realm__host_fail(in, rc, "eval: %s", realm_last_error());
    in->eval_gen = g; /* freed (and so cancelled) if the guest traps while waiting */
    realm_gen_piece piece;
    while ((rc = realm_gen_next(g, &piece, realm__host_wait_slice(in, "eval"))) ==
               REALM_ERR_TIMEOUT ||
           rc > 0)
        ;
    realm_gen_result res;
    realm_gen_result_get(g, &res);
    in->eval_gen = NULL;
    realm_gen_free(g);
    if (res.finish != REALM_FINISH_STOP)
        return realm__host_fail(in, res.error < 0 ? res.error : REALM_ERR_IO, "eval: %s",
                                res.message[0] ? res.message : realm_finish_name(res.finish));
    return 0;
}

/* ---- low level: sessions, logits, weights ---------------------------------- */

/* eval(h, ids, n): h is a model handle (a new session) or a session handle
 * (continue it). Runs the tokens through the model after what the session
 * holds, keeping the logits of the last one. Returns the session handle. */
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
    const bool opened = se == NULL;
    if (opened) {
        int slot = -1;
        for (int i = 0; i < MAX_SESSIONS && slot < 0; i++)
            if (!in->sessions[i].engine)
                slot = i;
        if (slot < 0 || in->n_gens_open >= in->pol.max_generations)
            HOST_RETURN(realm__host_fail(in, REALM_ERR_DENIED,
                                         "eval: at most %d generations and sessions at once",
                                         in->pol.max_generations));
        se = &in->sessions[slot];
        *se = (session){.engine = ms->engine,
                        .lora = realm_model_ref_lora(ms->ref),
                        .n_ctx = realm_engine_n_ctx_seq(ms->engine),
                        .n_vocab = realm_model_hparams(ms->model)->n_vocab};
        se->logits = malloc((size_t)se->n_vocab * sizeof(float));
        if (!se->logits) {
            session_close(se);
            HOST_RETURN(realm__host_fail(in, REALM_ERR_NOMEM, "eval: out of memory"));
        }
        in->n_gens_open++;
        h = (uint32_t)(SESSION_BASE + slot);
    }
    int rc = 0;
    if (se->n + (int64_t)n > se->n_ctx)
        rc = realm__host_fail(in, REALM_ERR_RANGE, "eval: session would hold %lld tokens, limit %d",
                              (long long)se->n + n, se->n_ctx);
    if (rc == 0 && se->n + (int32_t)n > se->cap) {
        int32_t cap = se->cap ? se->cap : 256;
        while (cap < se->n + (int32_t)n)
            cap *= 2;
        realm_token *t = realloc(se->tokens, (size_t)cap * sizeof *t);
        if (!t)
            rc = realm__host_fail(in, REALM_ERR_NOMEM, "eval: out of memory");
        else
            se->tokens = t, se->cap = cap;
    }
    if (rc == 0) {
        memcpy(se->tokens + se->n, src, (size_t)n * 4); /* guest memory is unaligned */
        se->n += (int32_t)n;
        rc = session_run(in, se);
        if (rc < 0)
            se->n -= (int32_t)n; /* the session stays as it was */
        else
            se->has_logits = 1;
    }
    if (rc < 0 && opened) { /* opened by this call: it must not stay open */
        session_close(se);
        in->n_gens_open--;
    }
    HOST_RETURN(rc < 0 ? rc : (int)h);
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
    if (in->eval_gen) { /* an eval the guest trapped in: ended before its adapter goes */
        realm_gen_cancel(in->eval_gen);
        realm_gen_wait(in->eval_gen);
    }
    realm_gen_free(in->eval_gen);
    in->eval_gen = NULL;
    for (int i = 0; i < MAX_SESSIONS; i++)
        session_close(&in->sessions[i]);
}
