/*
 * realm_guest.h — the guest side of Realm's host ABI, for tenant modules
 * written in C (docs/host-abi.md is the full contract).
 *
 * A module exports `int32_t handle(void)` and its memory, and imports only
 * these functions. Their C names start with rg_ (the wasm imports are
 * realm.log, realm.emit, ...), so they are not mistaken for the host
 * library's realm_* functions. Build freestanding, without WASI (the sandbox
 * offers no WASI imports) — guest/RealmGuest.cmake does this:
 *
 *     clang --target=wasm32-wasi -O2 -nostdlib -ffreestanding \
 *           -Iguest/include -Wl,--no-entry -Wl,--export=handle \
 *           -o handler.wasm handler.c guest/lib/realm_guest.c \
 *           $(clang --target=wasm32-wasi -print-libgcc-file-name)
 *
 *     #include "realm_guest.h"
 *     int32_t handle(void) {
 *         static char body[4096], model[64];
 *         int32_t n = rg_request_read(body, sizeof body);
 *         if (n > (int32_t)sizeof body) return rg_respond_str(413, "too large");
 *         int32_t m = rg_json_string(body, (size_t)n, "model", model, sizeof model);
 *         if (m < 0 || m >= (int32_t)sizeof model) return rg_respond_str(400, "bad model");
 *         rg_emit(body, (uint32_t)n);                  // echo, streamed
 *         return rg_respond_str(200, "{}");
 *     }
 *
 * Return values: >= 0 is success (a length, a count or a handle); negative is
 * a Realm error code (RG_ERR_*), and rg_last_error gives the message,
 * rg_last_error_param the request option it was about.
 * Output buffers: every call returns the full size of its output; when that
 * is larger than the buffer, nothing was written — call again with a buffer
 * at least that large. A pointer or length outside the module's memory is
 * not an error but a trap: the request ends at once.
 */
#ifndef REALM_GUEST_H
#define REALM_GUEST_H

#include <stddef.h>
#include <stdint.h>

#define RG_IMPORT(name) __attribute__((import_module("realm"), import_name(#name)))

/* Error codes: the host's list (REALM_ERR_MAP in include/realm/error.h), same
 * names and values. RG_ERR_TRAP never reaches a guest: a trap ends the request. */
enum {
    RG_ERR_NOMEM = -1,
    RG_ERR_INVAL = -2,
    RG_ERR_IO = -3,
    RG_ERR_FORMAT = -4,
    RG_ERR_UNSUPPORTED = -5,
    RG_ERR_NOTFOUND = -6,
    RG_ERR_TYPE = -7,
    RG_ERR_RANGE = -8,
    RG_ERR_EXISTS = -9,
    RG_ERR_INTERRUPTED = -10,
    RG_ERR_NOSPACE = -11,
    RG_ERR_OVERLOADED = -12,
    RG_ERR_TIMEOUT = -13,
    RG_ERR_TRAP = -14,
    RG_ERR_DENIED = -15,
};

/* Log levels for rg_log. */
enum { RG_LOG_ERROR = 0, RG_LOG_WARN = 1, RG_LOG_INFO = 2, RG_LOG_DEBUG = 3 };

/* ---- the request and the response ---------------------------------------- */

/* A line for the operator's log, tagged with tenant and request. Returns 0. */
RG_IMPORT(log) int32_t rg_log(int32_t level, const char *text, uint32_t len);
/* Copy the request body into buf; returns its length (see the buffer rule). */
RG_IMPORT(request_read) int32_t rg_request_read(void *buf, uint32_t cap);
/* Stream bytes to the client (one SSE chunk or WebSocket message). Returns 0. */
RG_IMPORT(emit) int32_t rg_emit(const void *data, uint32_t len);
/* The final response (HTTP status 100..599 and body); once per request. */
RG_IMPORT(respond) int32_t rg_respond(int32_t status, const void *body, uint32_t len);
/* The message behind the last negative return (buffer rule). */
RG_IMPORT(last_error) int32_t rg_last_error(char *buf, uint32_t cap);
/* The request option the last negative return was about, as a name for the
 * "param" field of OpenAI's errors ("temperature", "messages[1].content",
 * "stop"); length 0 when the failure was not about one option (buffer rule). */
RG_IMPORT(last_error_param) int32_t rg_last_error_param(char *buf, uint32_t cap);
/* The request as JSON (buffer rule): {"method","path","query","transport",
 * "tenant","request_id","created","remote","headers":{lower-case names}}; the
 * server gives these (realm module run gives what it knows). */
RG_IMPORT(request_info) int32_t rg_request_info(char *buf, uint32_t cap);
/* The response's status and headers, a JSON object of strings
 * ({"content-type":"text/event-stream"}), before the first rg_emit or
 * rg_respond (RG_ERR_EXISTS after). Returns 0. */
RG_IMPORT(set_response) int32_t rg_set_response(int32_t status, const char *headers, uint32_t len);

/* ---- models and tokens ----------------------------------------------------- */

/* Open a model by its registry name; returns a handle > 0. RG_ERR_DENIED if
 * the tenant may not use it, RG_ERR_NOTFOUND if there is none. */
RG_IMPORT(model_open) int32_t rg_model_open(const char *name, uint32_t len);
/* JSON: name, architecture, n_ctx_train, n_vocab, n_embd, n_layer, n_head,
 * n_head_kv, bos, eos (buffer rule). */
RG_IMPORT(model_info) int32_t rg_model_info(int32_t model, char *buf, uint32_t cap);
/* flags: 1 add BOS/EOS as the vocabulary does, 2 parse special tokens.
 * cap counts tokens; returns the token count (buffer rule). */
RG_IMPORT(tokenize)
int32_t rg_tokenize(int32_t model, const char *text, uint32_t len, uint32_t flags, int32_t *ids,
                    uint32_t cap);
/* flags: 1 drop BOS/EOS, 2 render special tokens, 4 clean up spaces.
 * Returns the byte count (buffer rule). */
RG_IMPORT(detokenize)
int32_t rg_detokenize(int32_t model, const int32_t *ids, uint32_t n, uint32_t flags, char *buf,
                      uint32_t cap);

/* ---- generation ------------------------------------------------------------ */

/* Start a generation; opts is JSON (docs/host-abi.md): "prompt" or
 * "messages", "max_tokens", "temperature", "top_p", "top_k", "min_p",
 * "seed", "stop", "ignore_eos", ... Returns a generation handle > 0. */
RG_IMPORT(generate) int32_t rg_generate(int32_t model, const char *opts, uint32_t len);
/* The next piece of text (blocks until there is one): its length; 0 when the
 * generation has ended. A piece that does not fit is kept for the next call. */
RG_IMPORT(gen_next) int32_t rg_gen_next(int32_t gen, char *buf, uint32_t cap);
/* Stop early. Returns 0. */
RG_IMPORT(gen_cancel) int32_t rg_gen_cancel(int32_t gen);
/* JSON: finish_reason, prompt_tokens, completion_tokens, cached_tokens,
 * time_to_first_token_ms, tokens_per_s[, error]. Waits for the end. */
RG_IMPORT(gen_result) int32_t rg_gen_result(int32_t gen, char *buf, uint32_t cap);
/* The tokens behind the piece rg_gen_next returned last, as JSON shaped
 * like the "content" list of OpenAI's chat log-probabilities:
 * [{"id","token","bytes","logprob","top_logprobs":[{"id","token","bytes",
 * "logprob"},...]},...] ("logprob" and "top_logprobs" only when the options
 * asked for "logprobs" / "top_logprobs"). */
RG_IMPORT(gen_tokens) int32_t rg_gen_tokens(int32_t gen, char *buf, uint32_t cap);
/* With "n" choices: the choice (0..n-1) of the piece rg_gen_next returned
 * last (rg_gen_next takes the choices' pieces in turn, as they come). */
RG_IMPORT(gen_choice) int32_t rg_gen_choice(int32_t gen);

/* ---- low level: sessions, logits, weights ---------------------------------- */

/* Run n tokens (1..4096) through the model. With a model handle: a new
 * session; with a session handle (>= 1024): continue it (up to the model's
 * context). It runs in the engine's KV pool under the tenant's limits
 * (RG_ERR_RANGE over them). Returns the session handle. Sessions count
 * against the tenant's max_generations. */
RG_IMPORT(eval) int32_t rg_eval(int32_t model, const int32_t *ids, uint32_t n);
/* The logits (n_vocab floats) of the session's last evaluated token; cap in
 * floats. Returns n_vocab. */
RG_IMPORT(logits) int32_t rg_logits(int32_t session, float *out, uint32_t cap);
/* Rows [first_row, first_row + n_rows) of a weight tensor, dequantized to
 * f32; cap in floats. Returns the floats needed. RG_ERR_DENIED unless the
 * tenant's policy allows it. */
RG_IMPORT(tensor_read)
int32_t rg_tensor_read(int32_t model, const char *name, uint32_t name_len, uint32_t first_row,
                       uint32_t n_rows, float *out, uint32_t cap);

/* ---- the tenant's key-value data --------------------------------------------- */

/*
 * Data the module keeps between requests, private to its tenant (another
 * tenant's module never sees it), in the server's store. Keys: 1..512 bytes
 * of UTF-8 without control characters; values: bytes, at most 1 MiB unless
 * the operator sets another limit. Keys and values count against the
 * tenant's quota (64 MiB unless the operator sets another).
 * RG_ERR_UNSUPPORTED where the host keeps no data (e.g. `realm module run`).
 */

/* The value of key into buf (buffer rule): its length; RG_ERR_NOTFOUND when
 * absent or expired. */
RG_IMPORT(kv_get)
int32_t rg_kv_get(const char *key, uint32_t key_len, void *buf, uint32_t cap);
/* Store value under key, replacing any; ttl_s > 0: it expires that many
 * seconds from now (0: never). Returns 0; RG_ERR_RANGE over the value limit
 * or the quota (nothing changed), RG_ERR_INVAL for a bad key. */
RG_IMPORT(kv_put)
int32_t rg_kv_put(const char *key, uint32_t key_len, const void *value, uint32_t value_len,
                  uint32_t ttl_s);
/* Remove key. Returns 0; RG_ERR_NOTFOUND when absent. */
RG_IMPORT(kv_delete) int32_t rg_kv_delete(const char *key, uint32_t key_len);
/* Keys that start with prefix (len 0: all), after the key `after` (len 0:
 * from the first), in byte order, at most limit (1..1000), as JSON (buffer
 * rule): {"keys":["a","b"],"more":true}. "more": further keys match — pass
 * the last key as `after` for the next page. */
RG_IMPORT(kv_list)
int32_t rg_kv_list(const char *prefix, uint32_t prefix_len, const char *after, uint32_t after_len,
                   uint32_t limit, char *buf, uint32_t cap);

/* ---- helpers (guest/lib/realm_guest.c) ------------------------------------- */

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* A bump allocator over memory.grow; rg_reset frees everything at once. */
void *rg_alloc(size_t n);
void rg_reset(void);

/* rg_respond with a NUL-terminated body; returns status (for `return`). */
int32_t rg_respond_str(int32_t status, const char *body);
/* rg_emit of a NUL-terminated string. */
int32_t rg_emit_str(const char *s);

/* rg_kv_get / rg_kv_put with NUL-terminated keys (and value). */
int32_t rg_kv_get_str(const char *key, void *buf, uint32_t cap);
int32_t rg_kv_put_str(const char *key, const char *value, uint32_t ttl_s);
/* The value of key, whatever its size, in rg_alloc'ed memory (*out, with a
 * NUL after it): its length, or a negative error (RG_ERR_NOTFOUND,
 * RG_ERR_NOMEM when memory cannot grow). */
int32_t rg_kv_get_alloc(const char *key, uint32_t key_len, char **out);

/* A growable output buffer (rg_alloc'ed). */
typedef struct rg_buf {
    char *data;
    size_t len, cap;
} rg_buf;
void rg_buf_put(rg_buf *b, const char *s, size_t n);
void rg_buf_puts(rg_buf *b, const char *s);
void rg_buf_put_int(rg_buf *b, int64_t v);
/* Append s[0..n) as a JSON string literal, quotes included. */
void rg_buf_put_json_str(rg_buf *b, const char *s, size_t n);

/*
 * JSON lookups for handlers. Each reads one member of the JSON object in
 * json[0..len) — a TOP-LEVEL member only: a "model" inside "metadata" or
 * inside a message is not the request's "model". A key given twice counts
 * the last time, as the host's parser does. Keys are compared after
 * decoding their escapes. Nothing is read outside json[0..len); input that
 * is not one JSON object (unbalanced brackets, an unterminated string,
 * missing ':' or ',', text after the closing brace) has no members. Values
 * of other members are only skipped: their brackets must balance and their
 * strings end, nothing more is checked.
 */

/* Decode the string member key into out (UTF-8, NUL-terminated). Returns the
 * FULL decoded length; when that is >= cap the value did not fit and out
 * holds the longest prefix of whole characters that does (still
 * NUL-terminated; nothing is written when cap is 0, out may then be NULL).
 * -1 if the member is absent, not a string, or not valid JSON (a bad escape,
 * a lone surrogate in \uXXXX, a raw control character, invalid UTF-8). A
 * decoded string may contain NUL (\u0000): use the length, not strlen. */
int32_t rg_json_string(const char *json, size_t len, const char *key, char *out, size_t cap);
/* The integer member key (JSON's integer syntax: no fraction or exponent);
 * def if absent, of another type, or outside int64_t. */
int64_t rg_json_int(const char *json, size_t len, const char *key, int64_t def);
/* 1 for true, 0 for false; def if absent or of another type. */
int rg_json_bool(const char *json, size_t len, const char *key, int def);
/* 1 if the member key is present (any type, null included), else 0. */
int rg_json_has(const char *json, size_t len, const char *key);
/* The member's value as raw JSON text: *value points into json, *value_len
 * bytes, whatever its type ("[1,2]", "\"a\\n\"", "null"). Returns 0, or -1
 * (and *value = NULL, *value_len = 0) if absent. */
int32_t rg_json_raw(const char *json, size_t len, const char *key, const char **value,
                    size_t *value_len);

#endif
