/*
 * Host functions for generation: generate (options from options.c, the
 * prompt's ids from realm_chat_prompt_tokenize), gen_next, gen_tokens,
 * gen_cancel, gen_result (docs/host-abi.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#include "core/error_internal.h"
#include "host_internal.h"
#include "options_internal.h"
#include "realm/tokenizer.h"

/* Hand an ended generation's results to the embedder (once, when every
 * choice has ended): the prompt counted with the first choice only. */
static void report(realm_instance *in, gen_slot *s)
{
    realm_gen_result res[MAX_CHOICES];
    if (s->reported)
        return;
    for (int32_t i = 0; i < s->n; i++)
        if (realm_gen_result_get(s->g[i], &res[i]) < 0)
            return;
    s->reported = 1;
    for (int32_t i = 0; i < s->n && in->io && in->io->on_generation; i++) {
        if (i > 0)
            res[i].n_prompt = res[i].n_cached = 0;
        in->io->on_generation(in->io->ud, s->model, &res[i]);
    }
}

static gen_slot *gen_get(realm_instance *in, uint32_t h)
{
    return h >= 1 && h <= MAX_GENS && in->gens[h - 1].g[0] ? &in->gens[h - 1] : NULL;
}

void realm__host_gens_close(realm_instance *in)
{
    for (int i = 0; i < MAX_GENS; i++) {
        gen_slot *s = &in->gens[i];
        if (s->g[0] && !s->reported) { /* cancelled: its work so far is still reported */
            for (int32_t k = 0; k < s->n; k++)
                realm_gen_cancel(s->g[k]);
            for (int32_t k = 0; k < s->n; k++)
                realm_gen_wait(s->g[k]);
            report(in, s);
        }
        for (int32_t k = 0; k < s->n; k++) {
            realm_gen_free(s->g[k]);
            free(s->acc[k].v);
        }
        free(s->pending);
        free(s->piece.v);
        *s = (gen_slot){0};
    }
    in->n_gens_open = 0;
}

/* Keep ref until the request ends; REALM_ERR_RANGE (ref released) when full. */
static int hold_adapter(realm_instance *in, realm_model_ref *ref)
{
    if (in->n_adapters == MAX_ADAPTERS) {
        realm_registry_release(ref);
        return realm__host_fail_param(in, REALM_ERR_RANGE, "lora",
                                      "generate: at most %d adapter uses in one request",
                                      MAX_ADAPTERS);
    }
    in->adapters[in->n_adapters++] = ref;
    return 0;
}

/* Is ref's adapter one of model slot s (its base)? */
static int adapter_fits(realm_instance *in, const model_slot *s, realm_model_ref *ref,
                        const char *param)
{
    if (realm_model_ref_model(ref) == s->model)
        return 0;
    return realm__host_fail_param(in, REALM_ERR_INVAL, param,
                                  "generate: the LoRA adapter '%s' is for the model '%s', not '%s'",
                                  realm_model_ref_name(ref), realm_model_ref_base_name(ref),
                                  s->name);
}

/*
 * The LoRA adapters of a generation on model slot s, into items (*n): the
 * adapter the model was opened as, "adapter" (by name) and "lora" (by id),
 * each allowed to the tenant by its own name and of s's base model. The
 * references are held by the instance until the request ends, after its
 * generations.
 */
static int gen_adapters(realm_instance *in, const model_slot *s, const realm__gen_opts *o,
                        realm_lora_item *items, int32_t *n)
{
    *n = 0;
    const realm_lora *own = realm_model_ref_lora(s->ref);
    if (own)
        items[(*n)++] = (realm_lora_item){own, o->adapter ? 1.0f : o->adapter_scale};
    if (o->has_adapter_scale && !own && !o->adapter)
        return realm__host_fail_param(in, REALM_ERR_INVAL, "adapter_scale",
                                      "generate: 'adapter_scale' needs 'adapter' (or a model "
                                      "opened by a LoRA adapter's name)");
    realm_model_ref *ref = NULL;
    int rc;
    if (o->adapter) {
        const size_t len = strlen(o->adapter);
        if (!realm__host_allowed(in, o->adapter, len))
            return realm__host_fail_param(
                in, REALM_ERR_DENIED, "adapter",
                "generate: the LoRA adapter '%.128s' is not allowed for this tenant", o->adapter);
        if ((rc = realm_registry_acquire(in->sb->reg, o->adapter, len,
                                         &(realm_acquire_opts){.names_only = true}, &ref)) < 0)
            return realm__host_fail_param(in, rc, "adapter", "generate: %s", realm_last_error());
        if (!realm_model_ref_lora(ref)) {
            realm_registry_release(ref);
            return realm__host_fail_param(in, REALM_ERR_INVAL, "adapter",
                                          "generate: '%.128s' is a model, not a LoRA adapter",
                                          o->adapter);
        }
        if ((rc = hold_adapter(in, ref)) < 0 || (rc = adapter_fits(in, s, ref, "adapter")) < 0)
            return rc;
        items[(*n)++] = (realm_lora_item){realm_model_ref_lora(ref), o->adapter_scale};
    }
    for (int32_t i = 0; i < o->n_lora; i++) {
        char param[40];
        snprintf(param, sizeof param, "lora[%d].id", (int)i);
        if (realm_registry_acquire_lora_id(in->sb->reg, o->lora_id[i], &ref) < 0)
            return realm__host_fail_param(
                in, REALM_ERR_INVAL, param,
                "generate: no LoRA adapter has the id %lld (GET /lora-adapters lists them)",
                (long long)o->lora_id[i]);
        if ((rc = hold_adapter(in, ref)) < 0)
            return rc;
        const char *name = realm_model_ref_name(ref);
        if (!realm__host_allowed(in, name, strlen(name)))
            return realm__host_fail_param(
                in, REALM_ERR_DENIED, param,
                "generate: the LoRA adapter %lld ('%s') is not allowed for this tenant",
                (long long)o->lora_id[i], name);
        if ((rc = adapter_fits(in, s, ref, param)) < 0)
            return rc;
        if (*n == REALM_LORA_MAX_SET)
            return realm__host_fail_param(in, REALM_ERR_INVAL, "lora",
                                          "generate: at most %d LoRA adapters at once",
                                          REALM_LORA_MAX_SET);
        items[(*n)++] = (realm_lora_item){realm_model_ref_lora(ref), o->lora_scale[i]};
    }
    return 0;
}

/*
 * generate(model, opts): the options are parsed against the table
 * (options.c; a refusal names the option for last_error_param), the
 * prompt becomes ids in one place (realm_chat_prompt_tokenize: the model's
 * chat template, or the request's "chat_template"), the tenant's
 * max_tokens caps the request's, and the engine gets the ids.
 */
uint32_t realm__host_generate(void *c, uint32_t h, uint32_t ptr, uint32_t len)
{
    HOST_BEGIN(c);
    const char *src = (const char *)realm__host_range(in, "generate", ptr, len);
    model_slot *s = realm__host_model(in, h);
    if (!s)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_INVAL, "generate: bad model handle %u", h));
    if (in->n_gens_open >= in->pol.max_generations)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_DENIED,
                                     "generate: at most %d generations at once",
                                     in->pol.max_generations));
    int slot = -1;
    for (int i = 0; i < MAX_GENS && slot < 0; i++)
        if (!in->gens[i].g[0])
            slot = i;
    if (slot < 0)
        HOST_RETURN(
            realm__host_fail(in, REALM_ERR_RANGE, "generate: too many generations in one request"));
    const realm_tokenizer *tok = realm_engine_tokenizer(s->engine);
    realm__gen_opts o;
    realm__opt_error err;
    int rc = realm__gen_opts_parse(src, len, realm_tokenizer_n_vocab(tok), &o, &err);
    if (rc < 0)
        HOST_RETURN(realm__host_fail_param(in, rc, err.param, "generate: %s", err.message));
    const char *prompt_param = o.msgs ? "messages" : "prompt";
    realm_chat_prompt p = {.messages = o.msgs,
                           .n_messages = o.n_msgs,
                           .tmpl = s->tmpl,
                           .text = o.prompt,
                           .text_len = o.prompt_len,
                           .parse_special = o.parse_special};
    if (o.chat_template)
        realm_chat_template_from_name(o.chat_template, &p.tmpl); /* checked by the parser */
    realm_token *ids = NULL;
    int32_t n_ids = 0;
    rc = realm_chat_prompt_tokenize(tok, &p, &ids, &n_ids);
    if (rc < 0) {
        realm__gen_opts_free(&o);
        HOST_RETURN(
            realm__host_fail_param(in, rc, prompt_param, "generate: %s", realm_last_error()));
    }
    realm_lora_item lora[REALM_LORA_MAX_SET + 1];
    int32_t n_lora = 0;
    if ((rc = gen_adapters(in, s, &o, lora, &n_lora)) < 0) {
        free(ids);
        realm__gen_opts_free(&o);
        HOST_RETURN(rc);
    }
    o.gen.lora = n_lora ? lora : NULL;
    o.gen.n_lora = n_lora;
    if (o.has_keep_alive)
        realm_model_ref_set_keep_alive(s->ref, o.keep_alive_s);
    if (in->pol.max_tokens > 0 && (!o.has_max_tokens || o.gen.max_tokens > in->pol.max_tokens))
        o.gen.max_tokens = in->pol.max_tokens;
    gen_slot *gs = &in->gens[slot];
    *gs = (gen_slot){.n = o.n_choices, .n_top = o.n_top, .tok = tok, .model = s->name};
    rc = realm_engine_submit_n(
        s->engine,
        &(realm_gen_request){
            .prompt = ids, .n_prompt = n_ids, .tenant = in->pol.tenant, .options = &o.gen},
        gs->n, gs->g);
    free(ids);
    realm__gen_opts_free(&o);
    if (rc < 0) {
        *gs = (gen_slot){0};
        HOST_RETURN(realm__host_fail_param(in, rc,
                                           rc == REALM_ERR_RANGE && gs->n <= 1   ? prompt_param
                                           : rc == REALM_ERR_RANGE               ? "n"
                                           : n_lora > 0 && rc == REALM_ERR_INVAL ? "lora"
                                                                                 : "",
                                           "generate: %s", realm_last_error()));
    }
    in->n_gens_open++;
    HOST_RETURN(slot + 1);
}

/* Append the token of p (with its log-probabilities) to l. */
static int tok_push(tok_list *l, const realm_gen_piece *p)
{
    if (l->n == l->cap) {
        const int32_t cap = l->cap ? 2 * l->cap : 16;
        tok_info *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v)
            return REALM_ERR_NOMEM;
        l->v = v;
        l->cap = cap;
    }
    tok_info *t = &l->v[l->n++];
    t->id = p->token;
    t->logprob = p->logprob;
    t->n_top = p->n_probs;
    if (p->n_probs > 0)
        memcpy(t->top, p->probs, (size_t)p->n_probs * sizeof *p->probs);
    return 0;
}

/*
 * The next non-empty piece of any choice (0: every choice has ended); which
 * choice it belongs to is gen_choice's answer. Choices are taken in turn.
 * Waits in slices so that the call's deadline and a cancellation are seen
 * while blocked.
 */
uint32_t realm__host_gen_next(void *c, uint32_t h, uint32_t ptr, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = realm__host_range(in, "gen_next", ptr, cap);
    gen_slot *s = gen_get(in, h);
    if (!s)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_INVAL, "gen_next: bad generation handle %u", h));
    if (s->pending) {
        int32_t n = realm__host_put(dst, cap, s->pending, s->pending_len);
        if (n >= 0 && (uint32_t)n <= cap) {
            free(s->pending);
            s->pending = NULL;
            s->cur = s->pending_choice;
        }
        HOST_RETURN(n);
    }
    for (int32_t turn = 0;; turn++) {
        int32_t live = 0;
        for (int32_t k = 0; k < s->n; k++)
            live += !s->done[k];
        if (live == 0)
            break;
        const int32_t i = (s->cur + 1 + turn) % s->n;
        if (s->done[i])
            continue;
        /* one choice: block in slices; several: poll them in turn, briefly */
        const int slice = realm__host_wait_slice(in, "gen_next");
        realm_gen_piece piece;
        int rc = realm_gen_next(s->g[i], &piece, s->n == 1 ? slice : (turn % s->n ? 0 : 2));
        if (rc == REALM_ERR_TIMEOUT)
            continue;
        if (rc < 0)
            HOST_RETURN(realm__host_fail(in, rc, "gen_next: %s", realm_last_error()));
        if (rc == 0) {
            s->done[i] = 1;
            if (live == 1) {
                in->n_gens_open--;
                report(in, s);
            }
            continue;
        }
        if (piece.token != REALM_TOKEN_NULL && tok_push(&s->acc[i], &piece) < 0)
            HOST_RETURN(realm__host_fail(in, REALM_ERR_NOMEM, "gen_next: out of memory"));
        if (piece.len == 0)
            continue;
        const tok_list t = s->piece; /* this piece's tokens are those gathered so far */
        s->piece = s->acc[i];
        s->acc[i] = (tok_list){t.v, 0, t.cap};
        int32_t n = realm__host_put(dst, cap, piece.text, piece.len);
        if (n >= 0 && (uint32_t)n > cap) {
            s->pending = malloc(piece.len);
            if (!s->pending)
                HOST_RETURN(realm__host_fail(in, REALM_ERR_NOMEM, "gen_next: out of memory"));
            memcpy(s->pending, piece.text, piece.len);
            s->pending_len = piece.len;
            s->pending_choice = i;
        } else {
            s->cur = i;
        }
        HOST_RETURN(n);
    }
    for (int32_t k = 0; k < s->n; k++) {
        realm_gen_result res;
        if (realm_gen_result_get(s->g[k], &res) == 0 && res.finish == REALM_FINISH_ERROR)
            HOST_RETURN(realm__host_fail(in, res.error < 0 ? res.error : REALM_ERR_IO,
                                         "gen_next: %s", res.message));
    }
    HOST_RETURN(0);
}

/* The choice (0..n-1) of the piece gen_next returned last. */
uint32_t realm__host_gen_choice(void *c, uint32_t h)
{
    HOST_BEGIN(c);
    gen_slot *s = gen_get(in, h);
    if (!s)
        HOST_RETURN(
            realm__host_fail(in, REALM_ERR_INVAL, "gen_choice: bad generation handle %u", h));
    HOST_RETURN(s->cur);
}

/*
 * One token as in OpenAI's chat log-probabilities: {"id", "token" (its text,
 * a byte that is not part of valid UTF-8 shown as U+FFFD), "bytes" (exact),
 * and with lp "logprob"}.
 */
static json_t *token_json(const realm_tokenizer *tok, int32_t id, const float *lp)
{
    size_t n = 0;
    const char *b = realm_token_to_piece(tok, id, REALM_DETOK_RENDER_SPECIAL, &n);
    if (!b)
        n = 0;
    char *text = malloc(3 * n + 1); /* each byte at most one U+FFFD */
    size_t t = 0;
    json_t *bytes = text ? json_array() : NULL;
    for (size_t i = 0; i < n && bytes;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k =
            utf8proc_iterate((const utf8proc_uint8_t *)b + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) {
            k = 1;
            memcpy(text + t, "\xEF\xBF\xBD", 3);
            t += 3;
        } else {
            memcpy(text + t, b + i, (size_t)k);
            t += (size_t)k;
        }
        for (utf8proc_ssize_t j = 0; j < k; j++)
            json_array_append_new(bytes, json_integer((uint8_t)b[i + (size_t)j]));
        i += (size_t)k;
    }
    json_t *o =
        bytes ? json_pack("{s:i, s:s%, s:o}", "id", id, "token", text, t, "bytes", bytes) : NULL;
    free(text);
    if (o && lp)
        json_object_set_new(o, "logprob", json_real(*lp));
    return o;
}

/*
 * The tokens of the piece gen_next returned last, as JSON shaped like the
 * "content" list of OpenAI's chat log-probabilities:
 * [{"id","token","bytes","logprob","top_logprobs":[{"id","token","bytes",
 * "logprob"},...]},...]; "logprob" and "top_logprobs" only when the
 * generation asked for log-probabilities. Buffer rule.
 */
uint32_t realm__host_gen_tokens(void *c, uint32_t h, uint32_t ptr, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = realm__host_range(in, "gen_tokens", ptr, cap);
    gen_slot *s = gen_get(in, h);
    if (!s)
        HOST_RETURN(
            realm__host_fail(in, REALM_ERR_INVAL, "gen_tokens: bad generation handle %u", h));
    json_t *a = json_array();
    for (int32_t i = 0; a && i < s->piece.n; i++) {
        const tok_info *t = &s->piece.v[i];
        json_t *o = token_json(s->tok, t->id, s->n_top >= 0 ? &t->logprob : NULL);
        if (o && s->n_top >= 0) {
            json_t *top = json_array();
            for (int32_t k = 0; top && k < t->n_top && k < s->n_top; k++)
                json_array_append_new(top, token_json(s->tok, t->top[k].token, &t->top[k].logprob));
            json_object_set_new(o, "top_logprobs", top);
        }
        json_array_append_new(a, o);
    }
    const int32_t n = realm__host_put_json(dst, cap, a);
    HOST_RETURN(n < 0 ? realm__host_fail(in, n, "gen_tokens: out of memory") : n);
}

uint32_t realm__host_gen_cancel(void *c, uint32_t h)
{
    HOST_BEGIN(c);
    gen_slot *s = gen_get(in, h);
    if (!s)
        HOST_RETURN(
            realm__host_fail(in, REALM_ERR_INVAL, "gen_cancel: bad generation handle %u", h));
    for (int32_t k = 0; k < s->n; k++)
        realm_gen_cancel(s->g[k]);
    HOST_RETURN(0);
}

uint32_t realm__host_gen_result(void *c, uint32_t h, uint32_t ptr, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = realm__host_range(in, "gen_result", ptr, cap);
    gen_slot *s = gen_get(in, h);
    if (!s)
        HOST_RETURN(
            realm__host_fail(in, REALM_ERR_INVAL, "gen_result: bad generation handle %u", h));
    realm_gen_result res[MAX_CHOICES];
    /* Waits for the end (a cancelled request ends at the engine's next step). */
    for (int32_t k = 0; k < s->n; k++)
        while (realm_gen_result_get(s->g[k], &res[k]) < 0) {
            realm__host_wait_slice(in, "gen_result");
            nanosleep(&(struct timespec){0, 1000000}, NULL);
        }
    int64_t completion = 0;
    for (int32_t k = 0; k < s->n; k++)
        completion += res[k].n_completion;
    json_t *j = json_pack("{s:s, s:i, s:I, s:i, s:f, s:f}", "finish_reason",
                          realm_finish_name(res[0].finish), "prompt_tokens",
                          (json_int_t)res[0].n_prompt, "completion_tokens", (json_int_t)completion,
                          "cached_tokens", (json_int_t)res[0].n_cached, "time_to_first_token_ms",
                          res[0].time_to_first_token_ms, "tokens_per_s", res[0].tokens_per_s);
    for (int32_t k = 0; j && k < s->n; k++)
        if (res[k].finish == REALM_FINISH_ERROR) {
            json_object_set_new(j, "error", json_string(res[k].message));
            break;
        }
    if (j && s->n > 1) {
        json_t *ch = json_array();
        for (int32_t k = 0; k < s->n; k++)
            json_array_append_new(ch, json_pack("{s:i, s:s, s:i}", "index", k, "finish_reason",
                                                realm_finish_name(res[k].finish),
                                                "completion_tokens", res[k].n_completion));
        json_object_set_new(j, "choices", ch);
    }
    report(in, s);
    HOST_RETURN(realm__host_put_json(dst, cap, j));
}
