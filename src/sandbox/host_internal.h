/*
 * Internals shared by the host ABI's files: the state of an instance (a
 * tenant module's wasm2c instance and what its current request holds), the
 * helpers every host function uses, and the one list of host functions.
 *
 * A host function runs on the guest's thread, between realm__rt_host_enter
 * and realm__rt_host_leave (HOST_BEGIN / HOST_RETURN). It first checks every
 * guest range it will touch (a bad one traps, naming the function), and only
 * then takes resources, so a trap never leaks. Failures the guest can handle
 * return a negative realm/error.h code and leave the detail for
 * realm.last_error (and the option at fault for realm.last_error_param).
 * Output buffers follow one rule: the call returns the full size; if that is
 * larger than the buffer, nothing is written and the guest retries with a
 * bigger one.
 *
 * Files: host_util.c (these helpers), host_io.c (request, response, log,
 * errors), host_model.c (models, tokens, weights), host_gen.c (generation),
 * host_eval.c (low-level sessions), host_kv.c (the tenant's key-value
 * data), host_table.c (the table built from REALM__HOST_FN_MAP),
 * instance.c (instances and their requests), options.c (generate options).
 */
#ifndef REALM_SANDBOX_HOST_INTERNAL_H
#define REALM_SANDBOX_HOST_INTERNAL_H

#include <jansson.h>
#include <stdint.h>

#include "realm/chat.h"
#include "realm/engine.h"
#include "realm/model.h"
#include "realm/registry.h"
#include "sandbox_internal.h"

/*
 * The host functions of import module `realm`: (index, name, number of i32
 * parameters); every one returns an i32 and is implemented by
 * realm__host_NAME. Append only. module.c checks imports and writes the
 * guests' glue from it; host_table.c builds the function table from it.
 */
#define REALM__HOST_FN_MAP(XX)                                                                     \
    XX(0, log, 3)                                                                                  \
    XX(1, request_read, 2)                                                                         \
    XX(2, emit, 2)                                                                                 \
    XX(3, respond, 3)                                                                              \
    XX(4, last_error, 2)                                                                           \
    XX(5, model_open, 2)                                                                           \
    XX(6, model_info, 3)                                                                           \
    XX(7, tokenize, 6)                                                                             \
    XX(8, detokenize, 6)                                                                           \
    XX(9, generate, 3)                                                                             \
    XX(10, gen_next, 3)                                                                            \
    XX(11, gen_cancel, 1)                                                                          \
    XX(12, gen_result, 3)                                                                          \
    XX(13, eval, 3)                                                                                \
    XX(14, logits, 3)                                                                              \
    XX(15, tensor_read, 7)                                                                         \
    XX(16, gen_tokens, 3)                                                                          \
    XX(17, last_error_param, 2)                                                                    \
    XX(18, request_info, 2)                                                                        \
    XX(19, set_response, 3)                                                                        \
    XX(20, gen_choice, 1)                                                                          \
    XX(21, kv_get, 4)                                                                              \
    XX(22, kv_put, 5)                                                                              \
    XX(23, kv_delete, 2)                                                                           \
    XX(24, kv_list, 7)

enum {
#define XX(i, name, n) REALM__HOST_##name = (i),
    REALM__HOST_FN_MAP(XX)
#undef XX
        REALM__HOST_FN_COUNT
};

/* One entry of the table: the import's name, its parameter count, and the
 * function (called by the guest's glue with the instance first). */
typedef struct realm__host_fn {
    const char *name;
    uint32_t n_params;
    wasm_rt_function_ptr_t fn;
} realm__host_fn;

extern const realm__host_fn realm__host_fns[REALM__HOST_FN_COUNT];

/* The host functions; c is the realm_instance. */
uint32_t realm__host_log(void *c, uint32_t level, uint32_t ptr, uint32_t len);
uint32_t realm__host_request_read(void *c, uint32_t ptr, uint32_t cap);
uint32_t realm__host_emit(void *c, uint32_t ptr, uint32_t len);
uint32_t realm__host_respond(void *c, uint32_t status, uint32_t ptr, uint32_t len);
uint32_t realm__host_last_error(void *c, uint32_t ptr, uint32_t cap);
uint32_t realm__host_last_error_param(void *c, uint32_t ptr, uint32_t cap);
uint32_t realm__host_request_info(void *c, uint32_t ptr, uint32_t cap);
uint32_t realm__host_set_response(void *c, uint32_t status, uint32_t ptr, uint32_t len);
uint32_t realm__host_model_open(void *c, uint32_t ptr, uint32_t len);
uint32_t realm__host_model_info(void *c, uint32_t h, uint32_t ptr, uint32_t cap);
uint32_t realm__host_tokenize(void *c, uint32_t h, uint32_t text, uint32_t len, uint32_t flags,
                              uint32_t out, uint32_t cap);
uint32_t realm__host_detokenize(void *c, uint32_t h, uint32_t ids, uint32_t n, uint32_t flags,
                                uint32_t out, uint32_t cap);
uint32_t realm__host_generate(void *c, uint32_t h, uint32_t ptr, uint32_t len);
uint32_t realm__host_gen_next(void *c, uint32_t h, uint32_t ptr, uint32_t cap);
uint32_t realm__host_gen_cancel(void *c, uint32_t h);
uint32_t realm__host_gen_result(void *c, uint32_t h, uint32_t ptr, uint32_t cap);
uint32_t realm__host_gen_tokens(void *c, uint32_t h, uint32_t ptr, uint32_t cap);
uint32_t realm__host_gen_choice(void *c, uint32_t h);
uint32_t realm__host_eval(void *c, uint32_t h, uint32_t ids, uint32_t n);
uint32_t realm__host_logits(void *c, uint32_t h, uint32_t out, uint32_t cap);
uint32_t realm__host_tensor_read(void *c, uint32_t h, uint32_t name, uint32_t name_len,
                                 uint32_t first_row, uint32_t n_rows, uint32_t out, uint32_t cap);
uint32_t realm__host_kv_get(void *c, uint32_t key, uint32_t key_len, uint32_t out, uint32_t cap);
uint32_t realm__host_kv_put(void *c, uint32_t key, uint32_t key_len, uint32_t value,
                            uint32_t value_len, uint32_t ttl_s);
uint32_t realm__host_kv_delete(void *c, uint32_t key, uint32_t key_len);
uint32_t realm__host_kv_list(void *c, uint32_t prefix, uint32_t prefix_len, uint32_t after,
                             uint32_t after_len, uint32_t limit, uint32_t out, uint32_t cap);

/* ---- the state of an instance -------------------------------------------- */

#define MAX_MODELS   16
#define MAX_GENS     64
#define MAX_SESSIONS 8
#define MAX_ADAPTERS 64   /* adapter references of one request ("adapter", "lora") */
#define SESSION_BASE 1024 /* session handles: SESSION_BASE + slot */

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

#define MAX_CHOICES 8 /* OpenAI's "n" at most */

/* A generation of realm.generate: one engine request per choice (the
 * choices share the prompt's KV blocks: realm_engine_submit_n). */
typedef struct gen_slot {
    realm_gen *g[MAX_CHOICES]; /* g[0] not NULL: the slot is in use */
    int32_t n;                 /* choices */
    int done[MAX_CHOICES];     /* choice i has ended and its pieces are taken */
    int32_t cur;               /* the choice of the piece gen_next returned last */
    char *pending;             /* a piece that did not fit the guest's buffer */
    size_t pending_len;
    int32_t pending_choice;
    int n_top;                  /* alternatives per token asked for; -1: no log-probabilities */
    const realm_tokenizer *tok; /* for the tokens' text */
    tok_list acc[MAX_CHOICES];  /* tokens since the choice's last piece (empty pieces skipped) */
    tok_list piece;             /* the tokens of the piece gen_next returned last */
    const char *model;          /* its model's name (valid while the request holds the model) */
    int reported;               /* its results went to io->on_generation */
} gen_slot;

typedef struct model_slot {
    realm_model_ref *ref; /* held until the request ends */
    realm_engine *engine;
    const realm_model *model;
    const char *name;         /* the registry's (valid while ref is held) */
    realm_chat_template tmpl; /* for "messages" */
} model_slot;

/* A low-level session (realm.eval): a private KV cache and compute context. */
/* A low-level session (realm.eval): the tokens evaluated so far on a model.
 * Each eval is a logits-only engine request for all of them, in the
 * engine's KV pool under the tenant's limits; the prefix cache holds the
 * session's blocks between calls, so only the new tail is computed. */
typedef struct session {
    realm_engine *engine;   /* NULL: the slot is free */
    const realm_lora *lora; /* the adapter the model was opened as, or NULL */
    realm_token *tokens;
    int32_t n, cap, n_ctx, n_vocab;
    float *logits; /* n_vocab, of the last evaluated token */
    int has_logits;
} session;

struct realm_instance {
    realm_module *mod;
    const realm__guest_so *so;
    realm_sandbox *sb; /* where its models are registered */
    realm_tenant_policy pol;
    char **allowed; /* copies of pol.models */
    void *guest;    /* wasm2c instance, realm__guest_so.instance_size bytes */
    int started;    /* instantiation began: the guest may hold memory and tables */
    int live;       /* instantiated and not trapped since */
    realm__rt_call call;
    const realm_request_io *io;
    int responded;
    int resp_started; /* status and headers are fixed (emit, respond, set_response) */
    char last_error[512];
    char last_param[64]; /* the option at fault in the last failure, or "" */
    model_slot models[MAX_MODELS];
    int n_models;
    realm_model_ref *adapters[MAX_ADAPTERS]; /* adapters generations use, held until the end */
    int n_adapters;
    gen_slot gens[MAX_GENS];
    session sessions[MAX_SESSIONS];
    realm_gen *eval_gen; /* the eval request being waited for, if any */
    int n_gens_open;
    uint32_t result; /* handle's return value */
};

/* ---- helpers (host_util.c) ------------------------------------------------- */

/* The guest range [ptr, ptr + len) in host address space, or a trap naming
 * realm.fn. An empty range is valid with any ptr (cap 0 measures). */
uint8_t *realm__host_range(realm_instance *in, const char *fn, uint32_t ptr, uint64_t len);

/* Record the message a later realm.last_error returns (and no option at
 * fault); give back code. */
int realm__host_fail(realm_instance *in, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same, naming the request option at fault (realm.last_error_param). */
int realm__host_fail_param(realm_instance *in, int code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Copy out under the buffer rule: returns len; writes only if it fits. */
int32_t realm__host_put(uint8_t *dst, uint32_t cap, const void *src, size_t len);
/* Serialise j under the buffer rule; frees j. */
int32_t realm__host_put_json(uint8_t *dst, uint32_t cap, json_t *j);
/* Milliseconds left before the call's deadline; -1 when there is none. */
int realm__host_remaining_ms(realm_instance *in);
/* How long the guest's thread may block now, in ms (at most 20 when the
 * request can be cancelled, else 100): traps when the call's deadline has
 * passed (naming realm.fn), or — after cancelling the request's
 * generations — when its client went away (realm_instance_handle then
 * returns REALM_ERR_INTERRUPTED). */
int realm__host_wait_slice(realm_instance *in, const char *fn);

/* The model behind handle h, or NULL. */
model_slot *realm__host_model(realm_instance *in, uint32_t h);
/* May this instance's tenant use the model or adapter name[0..len)? */
int realm__host_allowed(const realm_instance *in, const char *name, size_t len);

/* End of a request: generations cancelled and freed (host_gen.c), sessions
 * closed (host_eval.c). */
void realm__host_gens_close(realm_instance *in);
void realm__host_sessions_close(realm_instance *in);

#define HOST_BEGIN(c)                                                                              \
    realm_instance *in = (c);                                                                      \
    realm__rt_host_enter()
#define HOST_RETURN(v)                                                                             \
    do {                                                                                           \
        uint32_t r_ = (uint32_t)(v);                                                               \
        realm__rt_host_leave();                                                                    \
        return r_;                                                                                 \
    } while (0)

#endif
