/*
 * Instances and the host ABI v1 (import module `realm`, docs/host-abi.md).
 *
 * A host function runs on the guest's thread, between realm__rt_host_enter
 * and realm__rt_host_leave. It first checks every guest range it will touch
 * (a bad one traps, naming the function), and only then takes resources, so a
 * trap never leaks. Failures the guest can handle return a negative
 * realm/error.h code and leave the detail for realm.last_error. Output
 * buffers follow one rule: the call returns the full size; if that is larger
 * than the buffer, nothing is written and the guest retries with a bigger one.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#include "core/error_internal.h"
#include "realm/chat.h"
#include "realm/gguf.h"
#include "realm/quant.h"
#include "realm/tokenizer.h"
#include "sandbox_internal.h"

#define MAX_MODELS    16
#define MAX_GENS      64
#define MAX_SESSIONS  8
#define SESSION_BASE  1024 /* session handles: SESSION_BASE + slot */
#define SESSION_CTX   2048 /* most tokens in one session */
#define SESSION_BATCH 64   /* tokens per forward call */

/* One sampled token of a generation, for gen_tokens. */
typedef struct tok_info {
    int32_t id;
    float logprob;
    int32_t n_top;
    realm_token_prob top[REALM_SAMPLER_MAX_PROBS];
} tok_info;

/* A growing list of tok_info. */
typedef struct tok_list {
    tok_info *v;
    int32_t n, cap;
} tok_list;

typedef struct gen_slot {
    realm_gen *g;
    char *pending; /* a piece that did not fit the guest's buffer */
    size_t pending_len;
    int done;
    int n_top;                  /* alternatives per token asked for; -1: no log-probabilities */
    const realm_tokenizer *tok; /* for the tokens' text */
    tok_list acc;   /* tokens since the last piece returned (empty pieces are skipped) */
    tok_list piece; /* the tokens of the piece gen_next returned last */
} gen_slot;

typedef struct model_slot {
    realm_engine *engine;
    const realm_model *model;
    const char *name; /* the registry's copy (lives as long as the sandbox) */
} model_slot;

/* A low-level session (realm.eval): a private KV cache and compute context. */
typedef struct session {
    realm_kv_cache *kv;
    realm_ctx *ctx;
    int32_t seq, n_ctx, n_vocab;
    float *logits; /* n_vocab, of the last evaluated token */
    int has_logits;
} session;

struct realm_instance {
    realm_module *mod;
    const realm__guest_so *so;
    realm_tenant_policy pol;
    char **allowed; /* copies of pol.models */
    void *guest;    /* wasm2c instance, realm__guest_so.instance_size bytes */
    int started;    /* instantiation began: the guest may hold memory and tables */
    int live;       /* instantiated and not trapped since */
    realm__rt_call call;
    const realm_request_io *io;
    int responded;
    char last_error[512];
    model_slot models[MAX_MODELS];
    int n_models;
    gen_slot gens[MAX_GENS];
    session sessions[MAX_SESSIONS];
    int n_gens_open;
    uint32_t result; /* handle's return value */
};

void realm_tenant_policy_init(realm_tenant_policy *p)
{
    memset(p, 0, sizeof *p);
    p->max_pages = 1024;
    p->deadline_ms = 30000;
    p->max_call_depth = 20000;
    p->max_generations = 4;
}

/* ---- helpers for host functions ----------------------------------------- */

/* The guest range [ptr, ptr + len) in host address space, or a trap. An
 * empty range is valid with any ptr (cap 0 measures), and then points at
 * the start of guest memory, never past it. */
static uint8_t *guest_range(realm_instance *in, const char *fn, uint32_t ptr, uint64_t len)
{
    wasm_rt_memory_t *m = in->so->memory(in->guest);
    if (len == 0)
        return m->data;
    if ((uint64_t)ptr + len > m->size)
        realm__rt_trap_msg(REALM__TRAP_HOST,
                           "realm.%s: range 0x%x + %llu outside guest memory of %u bytes", fn, ptr,
                           (unsigned long long)len, m->size);
    return m->data + ptr;
}

static int fail(realm_instance *in, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record the message a later realm.last_error returns; give back code. */
static int fail(realm_instance *in, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(in->last_error, sizeof in->last_error, fmt, ap);
    va_end(ap);
    return code;
}

/* Copy out under the buffer rule: returns len; writes only if it fits. */
static int32_t put(uint8_t *dst, uint32_t cap, const void *src, size_t len)
{
    if (len > INT32_MAX)
        return REALM_ERR_RANGE;
    if (len <= cap)
        memcpy(dst, src, len);
    return (int32_t)len;
}

/* Milliseconds left before the call's deadline; -1 when there is none. */
static int remaining_ms(realm_instance *in)
{
    if (!in->call.deadline_ms)
        return -1;
    double left = in->call.t_deadline - realm__rt_now();
    return left <= 0 ? 0 : (int)(left * 1000.0) + 1;
}

static model_slot *model_get(realm_instance *in, uint32_t h)
{
    return h >= 1 && h <= (uint32_t)in->n_models ? &in->models[h - 1] : NULL;
}

static gen_slot *gen_get(realm_instance *in, uint32_t h)
{
    return h >= 1 && h <= MAX_GENS && in->gens[h - 1].g ? &in->gens[h - 1] : NULL;
}

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

#define HOST_BEGIN(c)                                                                              \
    realm_instance *in = (c);                                                                      \
    realm__rt_host_enter()
#define HOST_RETURN(v)                                                                             \
    do {                                                                                           \
        uint32_t r_ = (uint32_t)(v);                                                               \
        realm__rt_host_leave();                                                                    \
        return r_;                                                                                 \
    } while (0)

/* ---- request and response ----------------------------------------------- */

/*
 * A guest's log line as one line of the operator's log: at most LOG_LINE_MAX
 * bytes ("..." when cut), control characters other than tab written as \xNN
 * (a newline could otherwise forge a line with another tenant's tags),
 * levels above 3 as 3 (debug).
 */
#define LOG_LINE_MAX 1024

static uint32_t h_log(void *c, uint32_t level, uint32_t ptr, uint32_t len)
{
    HOST_BEGIN(c);
    const uint8_t *s = guest_range(in, "log", ptr, len);
    if (in->io && in->io->log) {
        char line[LOG_LINE_MAX + 1];
        size_t n = 0;
        uint32_t i = 0;
        for (; i < len; i++) {
            const uint8_t ch = s[i];
            const bool ctl = (ch < 0x20 && ch != '\t') || ch == 0x7f;
            if (n + (ctl ? 4 : 1) > LOG_LINE_MAX - 3)
                break;
            if (ctl)
                n += (size_t)snprintf(line + n, 5, "\\x%02x", ch);
            else
                line[n++] = (char)ch;
        }
        if (i < len) {
            memcpy(line + n, "...", 3);
            n += 3;
        }
        in->io->log(in->io->ud, level > 3 ? 3 : (int)level, line, n);
    }
    HOST_RETURN(0);
}

static uint32_t h_request_read(void *c, uint32_t ptr, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = guest_range(in, "request_read", ptr, cap);
    size_t n = in->io ? in->io->body_len : 0;
    HOST_RETURN(put(dst, cap, n ? in->io->body : "", n));
}

static uint32_t h_emit(void *c, uint32_t ptr, uint32_t len)
{
    HOST_BEGIN(c);
    const uint8_t *s = guest_range(in, "emit", ptr, len);
    if (in->io && in->io->emit)
        in->io->emit(in->io->ud, (const char *)s, len);
    HOST_RETURN(0);
}

static uint32_t h_respond(void *c, uint32_t status, uint32_t ptr, uint32_t len)
{
    HOST_BEGIN(c);
    const uint8_t *s = guest_range(in, "respond", ptr, len);
    int rc = 0;
    if (in->responded)
        rc = fail(in, REALM_ERR_EXISTS, "respond: the response was already sent");
    else if (status < 100 || status > 599)
        rc = fail(in, REALM_ERR_INVAL, "respond: status %u is not an HTTP status", status);
    else {
        in->responded = 1;
        if (in->io && in->io->respond)
            in->io->respond(in->io->ud, (int)status, (const char *)s, len);
    }
    HOST_RETURN(rc);
}

static uint32_t h_last_error(void *c, uint32_t ptr, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = guest_range(in, "last_error", ptr, cap);
    HOST_RETURN(put(dst, cap, in->last_error, strlen(in->last_error)));
}

/* ---- models ------------------------------------------------------------- */

static uint32_t h_model_open(void *c, uint32_t ptr, uint32_t len)
{
    HOST_BEGIN(c);
    const char *name = (const char *)guest_range(in, "model_open", ptr, len);
    int rc;
    char shown[64];
    snprintf(shown, sizeof shown, "%.*s", (int)(len < 60 ? len : 60), name);
    int allowed = in->pol.models == NULL;
    for (int32_t i = 0; i < in->pol.n_models && !allowed; i++)
        allowed = strlen(in->allowed[i]) == len && memcmp(in->allowed[i], name, len) == 0;
    realm_engine *e = NULL;
    const realm_model *m = NULL;
    const char *full = NULL;
    if (!allowed)
        rc = fail(in, REALM_ERR_DENIED, "model_open: model '%s' is not allowed for this tenant",
                  shown);
    else if (realm__sandbox_find_model(realm__module_sandbox(in->mod), name, len, &e, &m, &full) <
             0)
        rc = fail(in, REALM_ERR_NOTFOUND, "model_open: no model named '%s'", shown);
    else {
        rc = 0;
        for (int i = 0; i < in->n_models && !rc; i++)
            if (in->models[i].engine == e && strcmp(in->models[i].name, full) == 0)
                rc = i + 1;
        if (!rc && in->n_models == MAX_MODELS)
            rc = fail(in, REALM_ERR_RANGE, "model_open: at most %d models per request", MAX_MODELS);
        else if (!rc) {
            model_slot *s = &in->models[in->n_models++];
            s->engine = e;
            s->model = m;
            s->name = full;
            rc = in->n_models;
        }
    }
    HOST_RETURN(rc);
}

/* Serialise j into the guest buffer under the buffer rule; frees j. */
static int32_t put_json(uint8_t *dst, uint32_t cap, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s)
        return REALM_ERR_NOMEM;
    int32_t n = put(dst, cap, s, strlen(s));
    free(s);
    return n;
}

static uint32_t h_model_info(void *c, uint32_t h, uint32_t ptr, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = guest_range(in, "model_info", ptr, cap);
    model_slot *s = model_get(in, h);
    if (!s)
        HOST_RETURN(fail(in, REALM_ERR_INVAL, "model_info: bad model handle %u", h));
    const realm_hparams *hp = realm_model_hparams(s->model);
    const realm_tokenizer *tok = realm_engine_tokenizer(s->engine);
    json_t *j = json_pack(
        "{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "name", s->name, "architecture",
        realm_arch_name(hp->arch), "n_ctx_train", (json_int_t)hp->n_ctx_train, "n_vocab",
        (json_int_t)realm_tokenizer_n_vocab(tok), "n_embd", (json_int_t)hp->n_embd, "n_layer",
        (json_int_t)hp->n_layer, "n_head", (json_int_t)hp->n_head, "n_head_kv",
        (json_int_t)hp->n_head_kv, "bos", (json_int_t)realm_tokenizer_bos(tok), "eos",
        (json_int_t)realm_tokenizer_eos(tok));
    HOST_RETURN(put_json(dst, cap, j));
}

/* ---- tokens ------------------------------------------------------------- */

/* flags: bit 0 add BOS/EOS as the vocabulary says, bit 1 parse special
 * tokens (the tokenizer's REALM_TOKENIZE_* values). cap counts tokens. */
static uint32_t h_tokenize(void *c, uint32_t h, uint32_t text, uint32_t len, uint32_t flags,
                           uint32_t out, uint32_t cap)
{
    HOST_BEGIN(c);
    const char *t = (const char *)guest_range(in, "tokenize", text, len);
    uint8_t *dst = guest_range(in, "tokenize", out, (uint64_t)cap * 4);
    model_slot *s = model_get(in, h);
    if (!s)
        HOST_RETURN(fail(in, REALM_ERR_INVAL, "tokenize: bad model handle %u", h));
    realm_token *ids = NULL;
    int32_t n = 0;
    int rc = realm_tokenize_alloc(realm_engine_tokenizer(s->engine), t, len, flags & 3u, &ids, &n);
    if (rc < 0)
        HOST_RETURN(fail(in, rc, "tokenize: %s", realm_last_error()));
    if ((uint32_t)n <= cap)
        memcpy(dst, ids, (size_t)n * sizeof *ids);
    free(ids);
    HOST_RETURN(n);
}

/* flags: the tokenizer's REALM_DETOK_* values. cap counts bytes. */
static uint32_t h_detokenize(void *c, uint32_t h, uint32_t ids, uint32_t n, uint32_t flags,
                             uint32_t out, uint32_t cap)
{
    HOST_BEGIN(c);
    const uint8_t *src = guest_range(in, "detokenize", ids, (uint64_t)n * 4);
    uint8_t *dst = guest_range(in, "detokenize", out, cap);
    model_slot *s = model_get(in, h);
    if (!s)
        HOST_RETURN(fail(in, REALM_ERR_INVAL, "detokenize: bad model handle %u", h));
    if (n > (1u << 24))
        HOST_RETURN(fail(in, REALM_ERR_RANGE, "detokenize: %u tokens is too many", n));
    realm_token *tmp = malloc((size_t)n * sizeof *tmp + 1);
    if (!tmp)
        HOST_RETURN(fail(in, REALM_ERR_NOMEM, "detokenize: out of memory"));
    memcpy(tmp, src, (size_t)n * sizeof *tmp); /* guest memory is unaligned */
    const realm_tokenizer *tok = realm_engine_tokenizer(s->engine);
    int32_t need = realm_detokenize(tok, tmp, (int32_t)n, flags & 7u, NULL, 0);
    if (need >= 0 && (uint32_t)need <= cap)
        need = realm_detokenize(tok, tmp, (int32_t)n, flags & 7u, (char *)dst, cap);
    free(tmp);
    if (need < 0)
        HOST_RETURN(fail(in, need, "detokenize: %s", realm_last_error()));
    HOST_RETURN(need);
}

/* ---- generation --------------------------------------------------------- */

/*
 * Build the prompt of a generate call: "prompt" (a string, tokenized with
 * BOS) or "messages" (rendered with the model's chat template). Returns a
 * malloc'ed string, or NULL with the detail in in->last_error and *rc set.
 */
static char *build_prompt(realm_instance *in, model_slot *s, json_t *o, int *rc)
{
    json_t *p = json_object_get(o, "prompt");
    if (json_is_string(p)) {
        char *r = malloc(json_string_length(p) + 1);
        if (r)
            memcpy(r, json_string_value(p), json_string_length(p) + 1);
        else
            *rc = fail(in, REALM_ERR_NOMEM, "generate: out of memory");
        return r;
    }
    json_t *msgs = json_object_get(o, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        *rc = fail(in, REALM_ERR_INVAL,
                   "generate: give \"prompt\" (string) or \"messages\" "
                   "(non-empty array)");
        return NULL;
    }
    size_t n = json_array_size(msgs);
    realm_chat_message *m = calloc(n, sizeof *m);
    if (!m) {
        *rc = fail(in, REALM_ERR_NOMEM, "generate: out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(e, "role"));
        const char *content = json_string_value(json_object_get(e, "content"));
        if (!role || !content || realm_chat_role_from_name(role, &m[i].role) < 0) {
            free(m);
            *rc = fail(in, REALM_ERR_INVAL,
                       "generate: messages[%zu] needs a role (system, user, assistant) and a "
                       "string content",
                       i);
            return NULL;
        }
        m[i].content = content;
    }
    realm_chat_template t;
    const char *tname = json_string_value(json_object_get(o, "chat_template"));
    const realm_gguf *g = realm_model_gguf(s->model);
    char bos[256], eos[256];
    char *out = NULL;
    int r = realm_chat_template_for_model(g, tname, &t);
    if (r == 0)
        r = realm_chat_special_texts(g, bos, sizeof bos, eos, sizeof eos);
    if (r == 0)
        r = realm_chat_render_alloc(t, m, n, true, bos, eos, &out, NULL);
    free(m);
    if (r < 0)
        *rc = fail(in, r, "generate: %s", realm_last_error());
    return out;
}

static float num(json_t *o, const char *k, float def)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? (float)json_number_value(v) : def;
}

static uint32_t h_generate(void *c, uint32_t h, uint32_t ptr, uint32_t len)
{
    HOST_BEGIN(c);
    const char *src = (const char *)guest_range(in, "generate", ptr, len);
    model_slot *s = model_get(in, h);
    if (!s)
        HOST_RETURN(fail(in, REALM_ERR_INVAL, "generate: bad model handle %u", h));
    if (in->n_gens_open >= in->pol.max_generations)
        HOST_RETURN(fail(in, REALM_ERR_DENIED, "generate: at most %d generations at once",
                         in->pol.max_generations));
    int slot = -1;
    for (int i = 0; i < MAX_GENS && slot < 0; i++)
        if (!in->gens[i].g)
            slot = i;
    if (slot < 0)
        HOST_RETURN(fail(in, REALM_ERR_RANGE, "generate: too many generations in one request"));
    json_error_t jerr;
    json_t *o = json_loadb(src, len, 0, &jerr);
    if (!json_is_object(o)) {
        json_decref(o);
        HOST_RETURN(
            fail(in, REALM_ERR_INVAL, "generate: options are not a JSON object: %s", jerr.text));
    }
    int rc = 0;
    char *prompt = build_prompt(in, s, o, &rc);
    if (!prompt) {
        json_decref(o);
        HOST_RETURN(rc);
    }
    realm_gen_options opt;
    realm_gen_options_init(&opt);
    json_t *v;
    if (json_is_integer(v = json_object_get(o, "max_tokens")))
        opt.max_tokens = (int32_t)json_integer_value(v);
    opt.sampling.temperature = num(o, "temperature", opt.sampling.temperature);
    opt.sampling.top_p = num(o, "top_p", opt.sampling.top_p);
    opt.sampling.min_p = num(o, "min_p", opt.sampling.min_p);
    opt.sampling.top_k = (int32_t)num(o, "top_k", (float)opt.sampling.top_k);
    opt.sampling.repeat_penalty = num(o, "repeat_penalty", opt.sampling.repeat_penalty);
    opt.sampling.presence_penalty = num(o, "presence_penalty", opt.sampling.presence_penalty);
    opt.sampling.frequency_penalty = num(o, "frequency_penalty", opt.sampling.frequency_penalty);
    if (json_is_integer(v = json_object_get(o, "seed")))
        opt.sampling.seed = (uint64_t)json_integer_value(v);
    /* log-probabilities, OpenAI style: "logprobs": true (chat) or k
     * (completions), "top_logprobs": k alternatives per token */
    json_int_t top = -1; /* alternatives asked for; -1: no log-probabilities */
    bool negative = false;
    json_t *tl = json_object_get(o, "top_logprobs");
    if (json_is_true(v = json_object_get(o, "logprobs")))
        top = 0;
    else if (json_is_integer(v))
        negative |= (top = json_integer_value(v)) < 0;
    if (json_is_integer(tl))
        negative |= (top = json_integer_value(tl)) < 0;
    if (negative || top > REALM_SAMPLER_MAX_PROBS) {
        free(prompt);
        json_decref(o);
        HOST_RETURN(fail(in, REALM_ERR_INVAL, "generate: top log-probabilities must be 0..%d",
                         REALM_SAMPLER_MAX_PROBS));
    }
    const int n_top = (int)top;
    if (n_top >= 0)
        opt.sampling.n_probs = n_top > 0 ? n_top : 1; /* 1: the sampler records the chosen one */
    opt.ignore_eos = json_is_true(json_object_get(o, "ignore_eos"));
    const char *stops[8];
    json_t *st = json_object_get(o, "stop");
    if (json_is_string(st) && json_string_length(st)) {
        stops[opt.n_stop++] = json_string_value(st);
    } else if (json_is_array(st)) {
        for (size_t i = 0; i < json_array_size(st) && opt.n_stop < 8; i++) {
            const char *x = json_string_value(json_array_get(st, i));
            if (x && *x)
                stops[opt.n_stop++] = x;
        }
    }
    opt.stop = opt.n_stop ? stops : NULL;
    realm_gen *g = NULL;
    rc = realm_engine_submit(
        s->engine,
        &(realm_gen_request){
            .text = prompt, .text_len = strlen(prompt), .tenant = in->pol.tenant, .options = &opt},
        &g);
    free(prompt);
    json_decref(o);
    if (rc < 0)
        HOST_RETURN(fail(in, rc, "generate: %s", realm_last_error()));
    in->gens[slot] = (gen_slot){.g = g, .n_top = n_top, .tok = realm_engine_tokenizer(s->engine)};
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

/* The next non-empty piece of text (0: the generation has ended). Waits in
 * slices so that the call's deadline is honoured while blocked. */
static uint32_t h_gen_next(void *c, uint32_t h, uint32_t ptr, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = guest_range(in, "gen_next", ptr, cap);
    gen_slot *s = gen_get(in, h);
    if (!s)
        HOST_RETURN(fail(in, REALM_ERR_INVAL, "gen_next: bad generation handle %u", h));
    if (s->pending) {
        int32_t n = put(dst, cap, s->pending, s->pending_len);
        if (n >= 0 && (uint32_t)n <= cap) {
            free(s->pending);
            s->pending = NULL;
        }
        HOST_RETURN(n);
    }
    while (!s->done) {
        realm_gen_piece piece;
        int left = remaining_ms(in);
        if (left == 0)
            realm__rt_trap_msg(REALM__TRAP_HOST, "deadline of %u ms exceeded in realm.gen_next",
                               in->call.deadline_ms);
        int rc = realm_gen_next(s->g, &piece, left < 0 || left > 100 ? 100 : left);
        if (rc == REALM_ERR_TIMEOUT)
            continue;
        if (rc < 0)
            HOST_RETURN(fail(in, rc, "gen_next: %s", realm_last_error()));
        if (rc == 0) {
            s->done = 1;
            in->n_gens_open--;
            break;
        }
        if (piece.token != REALM_TOKEN_NULL && tok_push(&s->acc, &piece) < 0)
            HOST_RETURN(fail(in, REALM_ERR_NOMEM, "gen_next: out of memory"));
        if (piece.len == 0)
            continue;
        const tok_list t = s->piece; /* this piece's tokens are those gathered so far */
        s->piece = s->acc;
        s->acc = (tok_list){t.v, 0, t.cap};
        int32_t n = put(dst, cap, piece.text, piece.len);
        if (n >= 0 && (uint32_t)n > cap) {
            s->pending = malloc(piece.len);
            if (!s->pending)
                HOST_RETURN(fail(in, REALM_ERR_NOMEM, "gen_next: out of memory"));
            memcpy(s->pending, piece.text, piece.len);
            s->pending_len = piece.len;
        }
        HOST_RETURN(n);
    }
    realm_gen_result res;
    if (realm_gen_result_get(s->g, &res) == 0 && res.finish == REALM_FINISH_ERROR)
        HOST_RETURN(
            fail(in, res.error < 0 ? res.error : REALM_ERR_IO, "gen_next: %s", res.message));
    HOST_RETURN(0);
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
static uint32_t h_gen_tokens(void *c, uint32_t h, uint32_t ptr, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = guest_range(in, "gen_tokens", ptr, cap);
    gen_slot *s = gen_get(in, h);
    if (!s)
        HOST_RETURN(fail(in, REALM_ERR_INVAL, "gen_tokens: bad generation handle %u", h));
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
    const int32_t n = put_json(dst, cap, a);
    HOST_RETURN(n < 0 ? fail(in, n, "gen_tokens: out of memory") : n);
}

static uint32_t h_gen_cancel(void *c, uint32_t h)
{
    HOST_BEGIN(c);
    gen_slot *s = gen_get(in, h);
    if (!s)
        HOST_RETURN(fail(in, REALM_ERR_INVAL, "gen_cancel: bad generation handle %u", h));
    realm_gen_cancel(s->g);
    HOST_RETURN(0);
}

static uint32_t h_gen_result(void *c, uint32_t h, uint32_t ptr, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = guest_range(in, "gen_result", ptr, cap);
    gen_slot *s = gen_get(in, h);
    if (!s)
        HOST_RETURN(fail(in, REALM_ERR_INVAL, "gen_result: bad generation handle %u", h));
    realm_gen_result res;
    /* Waits for the end (a cancelled request ends at the engine's next step). */
    while (realm_gen_result_get(s->g, &res) < 0) {
        if (remaining_ms(in) == 0)
            realm__rt_trap_msg(REALM__TRAP_HOST, "deadline of %u ms exceeded in realm.gen_result",
                               in->call.deadline_ms);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:f, s:f}", "finish_reason",
                          realm_finish_name(res.finish), "prompt_tokens", (json_int_t)res.n_prompt,
                          "completion_tokens", (json_int_t)res.n_completion, "cached_tokens",
                          (json_int_t)res.n_cached, "time_to_first_token_ms",
                          res.time_to_first_token_ms, "tokens_per_s", res.tokens_per_s);
    if (j && res.finish == REALM_FINISH_ERROR)
        json_object_set_new(j, "error", json_string(res.message));
    HOST_RETURN(put_json(dst, cap, j));
}

/* ---- low level: sessions with their own KV cache, logits, weights -------- */

/* eval(h, ids, n): h is a model handle (a new session) or a session handle
 * (continue it). Runs the tokens through the model in the session's private
 * KV cache, keeping the logits of the last one. Returns the session handle. */
static uint32_t h_eval(void *c, uint32_t h, uint32_t ids, uint32_t n)
{
    HOST_BEGIN(c);
    const uint8_t *src = guest_range(in, "eval", ids, (uint64_t)n * 4);
    session *se = session_get(in, h);
    model_slot *ms = se ? NULL : model_get(in, h);
    if (!se && !ms)
        HOST_RETURN(fail(in, REALM_ERR_INVAL, "eval: %u is neither a model nor a session", h));
    if (n == 0 || n > 4096)
        HOST_RETURN(fail(in, REALM_ERR_RANGE, "eval: %u tokens (1..4096 per call)", n));
    int rc = 0;
    if (!se) {
        int slot = -1;
        for (int i = 0; i < MAX_SESSIONS && slot < 0; i++)
            if (!in->sessions[i].ctx)
                slot = i;
        if (slot < 0 || in->n_gens_open >= in->pol.max_generations)
            HOST_RETURN(fail(in, REALM_ERR_DENIED,
                             "eval: at most %d generations and sessions at once",
                             in->pol.max_generations));
        se = &in->sessions[slot];
        rc = session_open(se, ms);
        if (rc < 0) {
            session_close(se);
            HOST_RETURN(fail(in, rc, "eval: %s", realm_last_error()));
        }
        in->n_gens_open++;
        h = (uint32_t)(SESSION_BASE + slot);
    }
    int32_t len = realm_kv_seq_len(se->kv, se->seq);
    if (len + (int64_t)n > se->n_ctx) {
        rc = fail(in, REALM_ERR_RANGE, "eval: session would hold %lld tokens, limit %d",
                  (long long)len + n, se->n_ctx);
        if (ms) { /* the session was opened by this call: it must not stay open */
            session_close(se);
            in->n_gens_open--;
        }
        HOST_RETURN(rc);
    }
    int32_t *tok = malloc((size_t)n * 3 * sizeof *tok);
    if (!tok)
        HOST_RETURN(fail(in, REALM_ERR_NOMEM, "eval: out of memory"));
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
        HOST_RETURN(fail(in, rc, "eval: %s", realm_last_error()));
    se->has_logits = 1;
    HOST_RETURN(h);
}

/* logits(session, out, cap): the last evaluated token's logits, n_vocab f32
 * (cap counts floats; buffer rule). */
static uint32_t h_logits(void *c, uint32_t h, uint32_t out, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = guest_range(in, "logits", out, (uint64_t)cap * 4);
    session *se = session_get(in, h);
    if (!se)
        HOST_RETURN(fail(in, REALM_ERR_INVAL, "logits: bad session handle %u", h));
    if (!se->has_logits)
        HOST_RETURN(fail(in, REALM_ERR_INVAL, "logits: nothing evaluated yet"));
    if ((uint32_t)se->n_vocab <= cap)
        memcpy(dst, se->logits, (size_t)se->n_vocab * sizeof(float));
    HOST_RETURN(se->n_vocab);
}

/* tensor_read: rows [first_row, first_row + n_rows) of a weight tensor (rows
 * of ne[0] elements), dequantized to f32; cap counts floats (buffer rule). */
static uint32_t h_tensor_read(void *c, uint32_t h, uint32_t name, uint32_t name_len,
                              uint32_t first_row, uint32_t n_rows, uint32_t out, uint32_t cap)
{
    HOST_BEGIN(c);
    const char *nm = (const char *)guest_range(in, "tensor_read", name, name_len);
    uint8_t *dst = guest_range(in, "tensor_read", out, (uint64_t)cap * 4);
    if (!in->pol.allow_tensor_read)
        HOST_RETURN(fail(in, REALM_ERR_DENIED, "tensor_read: not allowed by this tenant's policy"));
    model_slot *ms = model_get(in, h);
    if (!ms)
        HOST_RETURN(fail(in, REALM_ERR_INVAL, "tensor_read: bad model handle %u", h));
    char key[256];
    if (name_len >= sizeof key)
        HOST_RETURN(fail(in, REALM_ERR_RANGE, "tensor_read: name too long"));
    memcpy(key, nm, name_len);
    key[name_len] = '\0';
    const realm_gguf_tensor *t = realm_gguf_find_tensor(realm_model_gguf(ms->model), key);
    if (!t)
        HOST_RETURN(fail(in, REALM_ERR_NOTFOUND, "tensor_read: no tensor '%s'", key));
    int64_t row_len = t->ne[0], rows = realm_gguf_tensor_nelements(t) / (row_len ? row_len : 1);
    if ((int64_t)first_row + n_rows > rows || n_rows == 0)
        HOST_RETURN(fail(in, REALM_ERR_RANGE, "tensor_read: rows %u..%u of %lld in '%s'", first_row,
                         first_row + n_rows, (long long)rows, key));
    int64_t need = (int64_t)n_rows * row_len;
    if (need > INT32_MAX)
        HOST_RETURN(
            fail(in, REALM_ERR_RANGE, "tensor_read: %lld floats is too many", (long long)need));
    if (need > (int64_t)cap)
        HOST_RETURN(need);
    float *row = malloc((size_t)row_len * sizeof *row);
    if (!row)
        HOST_RETURN(fail(in, REALM_ERR_NOMEM, "tensor_read: out of memory"));
    size_t rsz = realm_row_size(t->type, row_len);
    int rc = 0;
    for (uint32_t r = 0; r < n_rows && rc == 0; r++) {
        rc = realm_dequantize_row(t->type, (const uint8_t *)t->data + (first_row + r) * rsz, row,
                                  row_len);
        if (rc == 0) /* on failure, guest memory keeps what it held */
            memcpy(dst + (size_t)r * row_len * 4, row, (size_t)row_len * 4);
    }
    free(row);
    if (rc < 0)
        HOST_RETURN(fail(in, rc, "tensor_read: %s", realm_last_error()));
    HOST_RETURN(need);
}

void realm__host_fill(struct realm_wasm_rt_host *t)
{
    t->host_fn[REALM__HOST_log] = (wasm_rt_function_ptr_t)h_log;
    t->host_fn[REALM__HOST_request_read] = (wasm_rt_function_ptr_t)h_request_read;
    t->host_fn[REALM__HOST_emit] = (wasm_rt_function_ptr_t)h_emit;
    t->host_fn[REALM__HOST_respond] = (wasm_rt_function_ptr_t)h_respond;
    t->host_fn[REALM__HOST_last_error] = (wasm_rt_function_ptr_t)h_last_error;
    t->host_fn[REALM__HOST_model_open] = (wasm_rt_function_ptr_t)h_model_open;
    t->host_fn[REALM__HOST_model_info] = (wasm_rt_function_ptr_t)h_model_info;
    t->host_fn[REALM__HOST_tokenize] = (wasm_rt_function_ptr_t)h_tokenize;
    t->host_fn[REALM__HOST_detokenize] = (wasm_rt_function_ptr_t)h_detokenize;
    t->host_fn[REALM__HOST_generate] = (wasm_rt_function_ptr_t)h_generate;
    t->host_fn[REALM__HOST_gen_next] = (wasm_rt_function_ptr_t)h_gen_next;
    t->host_fn[REALM__HOST_gen_cancel] = (wasm_rt_function_ptr_t)h_gen_cancel;
    t->host_fn[REALM__HOST_gen_result] = (wasm_rt_function_ptr_t)h_gen_result;
    t->host_fn[REALM__HOST_eval] = (wasm_rt_function_ptr_t)h_eval;
    t->host_fn[REALM__HOST_logits] = (wasm_rt_function_ptr_t)h_logits;
    t->host_fn[REALM__HOST_tensor_read] = (wasm_rt_function_ptr_t)h_tensor_read;
    t->host_fn[REALM__HOST_gen_tokens] = (wasm_rt_function_ptr_t)h_gen_tokens;
}

/* ---- instances ---------------------------------------------------------- */

static void run_instantiate(void *p)
{
    realm_instance *in = p;
    in->so->instantiate(in->guest, in);
}

static void run_handle(void *p)
{
    realm_instance *in = p;
    in->result = in->so->handle(in->guest);
}

static void setup_call(realm_instance *in)
{
    in->call.max_pages = in->pol.max_pages;
    in->call.deadline_ms = in->pol.deadline_ms;
    in->call.call_depth = in->pol.max_call_depth;
    in->call.depth = in->so->depth();
}

/* Drop the guest's state (after a trap, or at free). The instance was zeroed
 * before instantiation and the runtime's free functions skip what was never
 * allocated, so this is safe after a half-done instantiation too. */
static void drop_guest(realm_instance *in)
{
    if (in->guest && in->started) {
        in->so->free(in->guest);
        memset(in->guest, 0, in->so->instance_size());
    }
    in->started = 0;
    in->live = 0;
    in->call.mem_lo = in->call.mem_hi = NULL;
    in->call.mem_pages = 0;
    in->call.table_bytes = 0;
}

/* (Re)create the guest instance. */
static int instantiate(realm_instance *in)
{
    memset(in->guest, 0, in->so->instance_size());
    setup_call(in);
    in->started = 1;
    int rc = realm__rt_run(&in->call, run_instantiate, in);
    if (rc < 0) {
        drop_guest(in);
        return rc;
    }
    in->live = 1;
    return 0;
}

int realm_instance_new(realm_module *m, const realm_tenant_policy *p, realm_instance **out)
{
    *out = NULL;
    realm_instance *in = calloc(1, sizeof *in);
    if (!in)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    in->mod = m;
    in->so = realm__module_so(m);
    if (p)
        in->pol = *p;
    else
        realm_tenant_policy_init(&in->pol);
    if (in->pol.max_generations > MAX_GENS)
        in->pol.max_generations = MAX_GENS;
    if (in->pol.models) {
        int32_t n_models = in->pol.n_models > 0 ? in->pol.n_models : 0;
        in->pol.n_models = 0; /* counts the copies made, for realm_instance_free */
        in->allowed = calloc((size_t)n_models + 1, sizeof *in->allowed);
        for (int32_t i = 0; in->allowed && i < n_models; i++) {
            size_t n = strlen(in->pol.models[i]);
            if (!(in->allowed[i] = malloc(n + 1)))
                break;
            memcpy(in->allowed[i], in->pol.models[i], n + 1);
            in->pol.n_models++;
        }
        in->pol.models = (const char *const *)in->allowed;
        if (!in->allowed || in->pol.n_models != n_models) { /* never widen the policy */
            realm_instance_free(in);
            return realm__error(REALM_ERR_NOMEM, "out of memory");
        }
    }
    in->guest = calloc(1, in->so->instance_size());
    if (!in->guest) {
        realm_instance_free(in);
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    }
    int rc = instantiate(in);
    if (rc < 0) {
        realm_instance_free(in);
        return rc;
    }
    *out = in;
    return 0;
}

/* End of a request: generations still open are cancelled and freed; model
 * handles close. */
static void end_request(realm_instance *in)
{
    for (int i = 0; i < MAX_GENS; i++) {
        gen_slot *s = &in->gens[i];
        if (s->g)
            realm_gen_free(s->g);
        free(s->pending);
        free(s->acc.v);
        free(s->piece.v);
        *s = (gen_slot){0};
    }
    for (int i = 0; i < MAX_SESSIONS; i++)
        session_close(&in->sessions[i]);
    in->n_gens_open = 0;
    in->n_models = 0;
    in->io = NULL;
}

int realm_instance_handle(realm_instance *in, const realm_request_io *io, int32_t *ret)
{
    int rc = 0;
    if (!in->live && (rc = instantiate(in)) < 0)
        return rc;
    in->io = io;
    in->last_error[0] = '\0';
    in->responded = 0;
    setup_call(in);
    rc = realm__rt_run(&in->call, run_handle, in);
    if (rc < 0)
        drop_guest(in); /* a trapped guest starts afresh at its next call */
    end_request(in);
    if (rc == 0 && ret)
        *ret = (int32_t)in->result;
    return rc;
}

void realm_instance_free(realm_instance *in)
{
    if (!in)
        return;
    end_request(in);
    drop_guest(in);
    free(in->guest);
    if (in->allowed)
        for (int32_t i = 0; i < in->pol.n_models; i++)
            free(in->allowed[i]);
    free(in->allowed);
    free(in);
}
