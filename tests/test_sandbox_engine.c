/*
 * The sandbox driving the real engine: the default handler module
 * (guest/default) on stories260K gives the same text as the engine called
 * directly, streamed and not; policy denials and errors reach the client as
 * JSON errors. Guests are compiled here from the tree's C sources with clang
 * (wasm32, the guest SDK), then built by the sandbox into ./sandbox-cache.
 */
#include <jansson.h>

#include "realm/gguf.h"
#include "realm/lora.h"
#include "realm/quant.h"
#include "realm/sandbox.h"
#include "test_util.h"

static char work[256];
static realm_sandbox *sb;
static realm_model *model;
static realm_engine *engine;

/* Compile guest sources (relative to the source tree) into a module. */
static realm_module *guest(const char *name, const char *src)
{
    const char *root = getenv("REALM_SOURCE_DIR");
    root = root ? root : "..";
    char cmd[4096], out[400], srcs[1200];
    snprintf(out, sizeof out, "%s/%s.wasm", work, name);
    /* the default module is two files */
    if (strcmp(name, "default") == 0)
        snprintf(srcs, sizeof srcs, "'%s/%s' '%s/guest/default/responses.c'", root, src, root);
    else
        snprintf(srcs, sizeof srcs, "'%s/%s'", root, src);
    snprintf(cmd, sizeof cmd,
             "clang --target=wasm32-wasi -O2 -nostdlib -ffreestanding -I'%s/guest/include' "
             "-Wl,--no-entry -Wl,--export=handle -o '%s' %s '%s/guest/lib/realm_guest.c' "
             "$(clang --target=wasm32-wasi -print-libgcc-file-name)",
             root, out, srcs, root);
    if (system(cmd) != 0) {
        fprintf(stderr, "failed: %s\n", cmd);
        test_failures++;
        return NULL;
    }
    realm_module *m = NULL;
    CHECK_RC(realm_module_load(sb, out, &m), REALM_OK);
    return m;
}

typedef struct capture {
    char *emitted;
    size_t n_emitted;
    int status;
    char *body;
    size_t body_len;
} capture;

static void on_emit(void *ud, const char *d, size_t n)
{
    capture *c = ud;
    c->emitted = realloc(c->emitted, c->n_emitted + n + 1);
    memcpy(c->emitted + c->n_emitted, d, n);
    c->n_emitted += n;
    c->emitted[c->n_emitted] = '\0';
}

static void on_respond(void *ud, int status, const char *d, size_t n)
{
    capture *c = ud;
    c->status = status;
    free(c->body);
    c->body = malloc(n + 1);
    c->body_len = n;
    memcpy(c->body, d, n);
    c->body[n] = '\0';
}

static int request(realm_instance *in, const char *body, capture *cap)
{
    memset(cap, 0, sizeof *cap);
    realm_request_io io = {
        .body = body, .body_len = strlen(body), .emit = on_emit, .respond = on_respond, .ud = cap};
    int32_t ret = 0;
    return realm_instance_handle(in, &io, &ret);
}

static void capture_free(capture *c)
{
    free(c->emitted);
    free(c->body);
}

static int32_t direct_ids[256];
static int n_direct_ids;

/* The text the engine gives for a prompt, greedy, called directly (its token
 * ids in direct_ids), with a LoRA adapter at scale when lora is not NULL. */
static char *direct_lora(const char *prompt, int max_tokens, const realm_lora *lora, float scale)
{
    n_direct_ids = 0;
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = max_tokens;
    o.sampling.temperature = 0;
    const realm_lora_item item = {lora, scale};
    o.lora = lora ? &item : NULL;
    o.n_lora = lora ? 1 : 0;
    realm_gen *g = NULL;
    realm_token *ids = NULL;
    int32_t n_ids = 0;
    CHECK_RC(realm_tokenize_alloc(realm_engine_tokenizer(engine), prompt, strlen(prompt),
                                  REALM_TOKENIZE_ADD_SPECIAL, &ids, &n_ids),
             REALM_OK);
    CHECK_RC(realm_engine_submit(
                 engine, &(realm_gen_request){.prompt = ids, .n_prompt = n_ids, .options = &o}, &g),
             REALM_OK);
    free(ids);
    char *s = calloc(1, 1);
    size_t n = 0;
    realm_gen_piece p;
    while (g && realm_gen_next(g, &p, -1) > 0) {
        if (p.token != REALM_TOKEN_NULL && n_direct_ids < 256)
            direct_ids[n_direct_ids++] = p.token;
        s = realloc(s, n + p.len + 1);
        memcpy(s + n, p.text, p.len);
        n += p.len;
        s[n] = '\0';
    }
    realm_gen_free(g);
    return s;
}

static char *direct(const char *prompt, int max_tokens)
{
    return direct_lora(prompt, max_tokens, NULL, 0);
}

static void test_default_handler(void)
{
    realm_module *m = guest("default", "guest/default/default.c");
    if (!m)
        return;
    realm_tenant_policy pol;
    realm_tenant_policy_init(&pol);
    pol.tenant = 3;
    realm_instance *in = NULL;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
    if (!in)
        return;
    const char *prompt = "Once upon a time";
    char *want = direct(prompt, 24);
    CHECK(strlen(want) > 0);

    capture cap;
    CHECK_RC(request(in,
                     "{\"model\":\"tiny\",\"prompt\":\"Once upon a time\",\"max_tokens\":24,"
                     "\"temperature\":0}",
                     &cap),
             REALM_OK);
    CHECK_EQ_INT(cap.status, 200);
    json_t *j = cap.body ? json_loads(cap.body, 0, NULL) : NULL;
    CHECK_MSG(j != NULL, "body: %s", cap.body ? cap.body : "(none)");
    json_t *choice = json_array_get(json_object_get(j, "choices"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(choice, "text")), want);
    json_t *usage = json_object_get(j, "usage");
    CHECK(json_integer_value(json_object_get(usage, "completion_tokens")) > 0);
    CHECK(json_integer_value(json_object_get(usage, "prompt_tokens")) > 0);
    const char *fr = json_string_value(json_object_get(choice, "finish_reason"));
    CHECK(fr && (strcmp(fr, "length") == 0 || strcmp(fr, "stop") == 0));
    json_decref(j);
    capture_free(&cap);

    /* streamed: the SSE events' texts concatenate to the same text */
    CHECK_RC(request(in,
                     "{\"model\":\"tiny\",\"prompt\":\"Once upon a time\",\"max_tokens\":24,"
                     "\"temperature\":0,\"stream\":true}",
                     &cap),
             REALM_OK);
    CHECK_EQ_INT(cap.status, 200);
    char *got = calloc(1, 1);
    size_t gl = 0;
    for (char *ev = cap.emitted; ev && (ev = strstr(ev, "data: "));) {
        ev += 6;
        char *end = strstr(ev, "\n\n");
        json_t *e = json_loadb(ev, end ? (size_t)(end - ev) : strlen(ev), 0, NULL);
        const char *t = json_string_value(
            json_object_get(json_array_get(json_object_get(e, "choices"), 0), "text"));
        CHECK(t != NULL);
        if (t) {
            got = realloc(got, gl + strlen(t) + 1);
            strcpy(got + gl, t);
            gl += strlen(t);
        }
        json_decref(e);
        ev = end;
    }
    CHECK_EQ_STR(got, want);
    CHECK(cap.body && strstr(cap.body, "[DONE]"));
    free(got);
    capture_free(&cap);

    /* chat: messages rendered with a template (named here: stories260K has
     * none of its own) */
    CHECK_RC(request(in,
                     "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":"
                     "\"Tell me a story\"}],\"chat_template\":\"chatml\",\"max_tokens\":6,"
                     "\"temperature\":0}",
                     &cap),
             REALM_OK);
    CHECK_EQ_INT(cap.status, 200);
    j = cap.body ? json_loads(cap.body, 0, NULL) : NULL;
    CHECK_EQ_STR(json_string_value(json_object_get(j, "object")), "chat.completion");
    choice = json_array_get(json_object_get(j, "choices"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(choice, "message"), "role")),
                 "assistant");
    CHECK(json_is_string(json_object_get(json_object_get(choice, "message"), "content")));
    CHECK(json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")) > 8);
    json_decref(j);
    capture_free(&cap);

    /* chat with log-probabilities: one item per generated token, whose
     * texts make up the content, each with two alternatives; streamed, each
     * chunk carries its tokens' items */
    static const char lp_req[] =
        "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story\"}],"
        "\"chat_template\":\"chatml\",\"max_tokens\":12,\"temperature\":0,\"ignore_eos\":true,"
        "\"logprobs\":true,\"top_logprobs\":2%s}";
    char req[512];
    snprintf(req, sizeof req, lp_req, "");
    CHECK_RC(request(in, req, &cap), REALM_OK);
    CHECK_EQ_INT(cap.status, 200);
    j = cap.body ? json_loads(cap.body, 0, NULL) : NULL;
    choice = json_array_get(json_object_get(j, "choices"), 0);
    json_t *items = json_object_get(json_object_get(choice, "logprobs"), "content");
    CHECK_MSG(json_array_size(items) == 12, "%s", cap.body ? cap.body : "(none)");
    char joined[1024] = "";
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        const char *tok = json_string_value(json_object_get(it, "token"));
        if (tok && strlen(joined) + strlen(tok) < sizeof joined)
            strcat(joined, tok);
        CHECK(json_real_value(json_object_get(it, "logprob")) <= 0);
        CHECK_EQ_INT((int)json_array_size(json_object_get(it, "top_logprobs")), 2);
    }
    const char *content =
        json_string_value(json_object_get(json_object_get(choice, "message"), "content"));
    CHECK_MSG(content && strcmp(joined, content) == 0, "tokens '%s' vs content '%s'", joined,
              content ? content : "(none)");
    json_decref(j);
    capture_free(&cap);
    snprintf(req, sizeof req, lp_req, ",\"stream\":true");
    CHECK_RC(request(in, req, &cap), REALM_OK);
    CHECK_EQ_INT(cap.status, 200);
    size_t n_items = 0;
    for (char *ev = cap.emitted; ev && (ev = strstr(ev, "data: "));) {
        ev += 6;
        char *end = strstr(ev, "\n\n");
        json_t *e = json_loadb(ev, end ? (size_t)(end - ev) : strlen(ev), 0, NULL);
        json_t *c0 = json_array_get(json_object_get(e, "choices"), 0);
        n_items += json_array_size(json_object_get(json_object_get(c0, "logprobs"), "content"));
        CHECK(json_is_string(json_object_get(json_object_get(c0, "delta"), "content")));
        json_decref(e);
        ev = end;
    }
    CHECK_EQ_INT((int)n_items, 12);
    capture_free(&cap);
    /* completions with the legacy "logprobs": k shape: tokens, token_logprobs, top_logprobs
     * (k entries each), text_offset */
    CHECK_RC(request(in,
                     "{\"model\":\"tiny\",\"prompt\":\"x\",\"logprobs\":2,\"max_tokens\":3,"
                     "\"temperature\":0}",
                     &cap),
             REALM_OK);
    CHECK_EQ_INT(cap.status, 200);
    {
        json_t *reply = cap.body ? json_loads(cap.body, 0, NULL) : NULL;
        json_t *lp =
            json_object_get(json_array_get(json_object_get(reply, "choices"), 0), "logprobs");
        CHECK_MSG(json_array_size(json_object_get(lp, "tokens")) == 3, "%s", cap.body);
        CHECK(json_array_size(json_object_get(lp, "token_logprobs")) == 3);
        CHECK(json_array_size(json_object_get(lp, "text_offset")) == 3);
        json_t *top = json_object_get(lp, "top_logprobs");
        CHECK(json_array_size(top) == 3 && json_object_size(json_array_get(top, 0)) == 2);
        json_decref(reply);
    }
    capture_free(&cap);

    /* errors become JSON error responses */
    CHECK_RC(request(in, "{\"model\":\"nope\",\"prompt\":\"x\"}", &cap), REALM_OK);
    CHECK_EQ_INT(cap.status, 404);
    CHECK_MSG(cap.body && strstr(cap.body, "no model named 'nope'"), "%s", cap.body);
    capture_free(&cap);
    CHECK_RC(request(in, "{\"model\":\"tiny\"}", &cap), REALM_OK);
    CHECK_EQ_INT(cap.status, 400);
    CHECK_MSG(cap.body && strstr(cap.body, "prompt"), "%s", cap.body);
    capture_free(&cap);
    realm_instance_free(in);

    /* the deadline also ends a request blocked in realm.gen_next */
    pol.deadline_ms = 100;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
    CHECK_RC(request(in,
                     "{\"model\":\"tiny\",\"prompt\":\"Once\",\"max_tokens\":100000,"
                     "\"ignore_eos\":true,\"stream\":true}",
                     &cap),
             REALM_ERR_TRAP);
    CHECK_MSG(strstr(realm_last_error(), "deadline of 100 ms exceeded"), "%s", realm_last_error());
    capture_free(&cap);
    /* the instance answers again (without generating: the 100 ms deadline
     * is not a promise about the engine's speed on a loaded machine) */
    CHECK_RC(request(in, "{\"model\":\"nope\",\"prompt\":\"Once\"}", &cap), REALM_OK);
    CHECK_EQ_INT(cap.status, 404);
    capture_free(&cap);
    pol.deadline_ms = 30000;
    realm_instance_free(in);

    /* a tenant whose policy does not list the model */
    static const char *const only[] = {"other"};
    pol.models = only;
    pol.n_models = 1;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
    CHECK_RC(request(in, "{\"model\":\"tiny\",\"prompt\":\"x\"}", &cap), REALM_OK);
    CHECK_EQ_INT(cap.status, 403);
    CHECK_MSG(cap.body && strstr(cap.body, "not allowed"), "%s", cap.body);
    capture_free(&cap);
    realm_instance_free(in);
    free(want);
    realm_module_free(m);
}

static realm_instance *instance(realm_module *m)
{
    realm_instance *in = NULL;
    if (m)
        CHECK_RC(realm_instance_new(m, NULL, &in), REALM_OK);
    return in;
}

static void test_router(void)
{
    realm_module *m = guest("router", "guest/examples/router.c");
    realm_instance *in = instance(m);
    if (!in)
        return;
    static const char *const prompts[2] = {"Once upon a time",
                                           "Once upon a time, there was a little girl named"};
    for (int i = 0; i < 2; i++) {
        char req[256];
        snprintf(req, sizeof req, "{\"prompt\":\"%s\",\"max_tokens\":12,\"temperature\":0}",
                 prompts[i]);
        capture cap;
        CHECK_RC(request(in, req, &cap), REALM_OK);
        json_t *j = cap.body ? json_loads(cap.body, 0, NULL) : NULL;
        CHECK_EQ_STR(json_string_value(json_object_get(j, "model")), i ? "large" : "small");
        char *want = direct(prompts[i], 12);
        CHECK_EQ_STR(json_string_value(json_object_get(j, "text")), want);
        free(want);
        json_decref(j);
        capture_free(&cap);
    }
    realm_instance_free(in);
    realm_module_free(m);
}

static void test_redact(void)
{
    realm_module *m = guest("redact", "guest/examples/redact.c");
    realm_instance *in = instance(m);
    if (!in)
        return;
    char *text = direct("Once upon a time", 32);
    /* redact the first word of three letters or more that the text contains */
    char word[32] = "";
    for (const char *p = text; *p && !word[0]; p++) {
        size_t k = 0;
        while (p[k] >= 'a' && p[k] <= 'z')
            k++;
        if (k >= 3 && k < sizeof word && (p == text || p[-1] == ' ')) {
            memcpy(word, p, k);
            word[k] = '\0';
        }
        if (k)
            p += k - 1;
    }
    CHECK(word[0] != '\0');
    char want[2048] = "";
    int n_want = 0;
    for (const char *p = text; *p;) {
        if (strncmp(p, word, strlen(word)) == 0) {
            strcat(want, "[redacted]");
            p += strlen(word);
            n_want++;
        } else {
            strncat(want, p++, 1);
        }
    }
    char req[256];
    snprintf(req, sizeof req,
             "{\"model\":\"tiny\",\"prompt\":\"Once upon a time\",\"max_tokens\":32,"
             "\"temperature\":0,\"redact\":\"%s\"}",
             word);
    capture cap;
    CHECK_RC(request(in, req, &cap), REALM_OK);
    CHECK_EQ_STR(cap.emitted ? cap.emitted : "", want);
    char counts[64];
    snprintf(counts, sizeof counts, "{\"redactions\":%d}", n_want);
    CHECK_EQ_STR(cap.body, counts);
    capture_free(&cap);
    free(text);
    realm_instance_free(in);
    realm_module_free(m);
}

static void test_sampler(void)
{
    realm_module *m = guest("sampler", "guest/examples/sampler.c");
    realm_instance *in = instance(m);
    if (!in)
        return;
    char *text = direct("Once upon a time", 10);
    free(text);
    char want[1024] = "{\"tokens\":[";
    for (int i = 0; i < n_direct_ids; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? "," : "",
                 direct_ids[i]);
    strcat(want, "]}");
    capture cap;
    /* greedy decoding in the guest gives the engine's greedy tokens */
    CHECK_RC(
        request(in, "{\"model\":\"tiny\",\"prompt\":\"Once upon a time\",\"max_tokens\":10}", &cap),
        REALM_OK);
    CHECK_EQ_INT(cap.status, 200);
    CHECK_EQ_STR(cap.body, want);
    CHECK(cap.emitted && strlen(cap.emitted) > 0);
    capture_free(&cap);
    /* banning the first token changes the first choice */
    char req[256];
    snprintf(req, sizeof req,
             "{\"model\":\"tiny\",\"prompt\":\"Once upon a time\",\"max_tokens\":3,"
             "\"ban\":[%d]}",
             direct_ids[0]);
    CHECK_RC(request(in, req, &cap), REALM_OK);
    char first[32];
    snprintf(first, sizeof first, "{\"tokens\":[%d,", direct_ids[0]);
    CHECK(cap.body && strncmp(cap.body, first, strlen(first)) != 0);
    capture_free(&cap);
    realm_instance_free(in);
    realm_module_free(m);
}

/* The policy's max_generations bounds the generations open at once; they
 * are all cancelled when the request ends. */
static void test_generation_limit(void)
{
    realm_module *m = guest("gens", "tests/sandbox/gens.c");
    if (!m)
        return;
    realm_tenant_policy pol;
    realm_tenant_policy_init(&pol);
    pol.max_generations = 3;
    realm_instance *in = NULL;
    capture cap;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
    for (int round = 0; in && round < 2; round++) {
        CHECK_RC(request(in, "", &cap), REALM_OK);
        CHECK_EQ_STR(cap.body, "3,-15");
        capture_free(&cap);
    }
    realm_instance_free(in);
    realm_module_free(m);
}

/* realm.tensor_read: off by default, then the same floats as dequantizing
 * on the host. */
static void test_tensor_read(void)
{
    realm_module *m = guest("tensor", "tests/sandbox/tensor.c");
    if (!m)
        return;
    realm_tenant_policy pol;
    realm_tenant_policy_init(&pol);
    realm_instance *in = NULL;
    capture cap;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
    CHECK_RC(request(in, "", &cap), REALM_OK);
    CHECK_EQ_INT(cap.status, 403);
    CHECK_MSG(cap.body && strstr(cap.body, "not allowed"), "%s", cap.body);
    capture_free(&cap);
    realm_instance_free(in);

    pol.allow_tensor_read = true;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
    CHECK_RC(request(in, "", &cap), REALM_OK);
    CHECK_EQ_INT(cap.status, 200);
    const realm_gguf_tensor *t =
        realm_gguf_find_tensor(realm_model_gguf(model), "token_embd.weight");
    CHECK(t != NULL);
    if (t && cap.body) {
        int64_t n = t->ne[0];
        CHECK_EQ_INT(cap.body_len, 2 * n * 4);
        float *want = malloc((size_t)(2 * n) * sizeof *want);
        size_t rs = realm_row_size(t->type, n);
        for (int r = 0; r < 2; r++)
            realm_dequantize_row(t->type, (const uint8_t *)t->data + (1 + r) * rs, want + r * n, n);
        CHECK(cap.body_len == (size_t)(2 * n * 4) && memcmp(cap.body, want, cap.body_len) == 0);
        free(want);
    }
    capture_free(&cap);
    realm_instance_free(in);
    realm_module_free(m);
}

/* Model handles are per full registry name (two names sharing a long prefix
 * are two handles), and a session that realm.eval opens and then refuses
 * (over its context) is closed again, not left counting against
 * max_generations. The guest: open both names, six refused evals of 3000
 * tokens on new sessions, then one good eval. */
#define LONG_NAME "a-model-name-that-is-longer-than-sixty-characters-in-all-of-it"

static void test_handles_and_sessions(void)
{
    CHECK_RC(realm_sandbox_add_model(sb, LONG_NAME "-x", model, engine, NULL), REALM_OK);
    CHECK_RC(realm_sandbox_add_model(sb, LONG_NAME "-y", model, engine, NULL), REALM_OK);
    char wat[2048], in_path[400], out_path[400], cmd[1000];
    snprintf(wat, sizeof wat,
             "(module\n"
             " (import \"realm\" \"model_open\" (func $mo (param i32 i32) (result i32)))\n"
             " (import \"realm\" \"eval\" (func $ev (param i32 i32 i32) (result i32)))\n"
             " (memory (export \"memory\") 1)\n"
             " (data (i32.const 16) \"%s-x\") (data (i32.const 128) \"%s-y\")\n"
             " (func (export \"handle\") (result i32) (local $h1 i32) (local $h2 i32)"
             " (local $i i32) (local $r i32)\n"
             "  (local.set $h1 (call $mo (i32.const 16) (i32.const %d)))\n"
             "  (local.set $h2 (call $mo (i32.const 128) (i32.const %d)))\n"
             "  (loop $l\n"
             "   (local.set $r (call $ev (local.get $h1) (i32.const 4096) (i32.const 3000)))\n"
             "   (if (i32.ne (local.get $r) (i32.const -8)) (then (return (i32.sub (i32.const"
             " -1000) (local.get $r)))))\n"
             "   (local.set $i (i32.add (local.get $i) (i32.const 1)))\n"
             "   (br_if $l (i32.lt_u (local.get $i) (i32.const 6))))\n"
             "  (if (i32.lt_s (call $ev (local.get $h1) (i32.const 4096) (i32.const 1))"
             " (i32.const 1024)) (then (return (i32.const -2))))\n"
             "  (i32.add (i32.mul (local.get $h1) (i32.const 16)) (local.get $h2))))\n",
             LONG_NAME, LONG_NAME, (int)strlen(LONG_NAME) + 2, (int)strlen(LONG_NAME) + 2);
    snprintf(in_path, sizeof in_path, "%s/handles.wat", work);
    snprintf(out_path, sizeof out_path, "%s/handles.wasm", work);
    FILE *f = fopen(in_path, "w");
    if (f) {
        fputs(wat, f);
        fclose(f);
    }
    snprintf(cmd, sizeof cmd, "wat2wasm '%s' -o '%s'", in_path, out_path);
    CHECK_EQ_INT(system(cmd), 0);
    realm_module *m = NULL;
    CHECK_RC(realm_module_load(sb, out_path, &m), REALM_OK);
    realm_instance *in = NULL;
    if (m)
        CHECK_RC(realm_instance_new(m, NULL, &in), REALM_OK);
    if (in) {
        realm_request_io io = {0};
        int32_t ret = 0;
        CHECK_RC(realm_instance_handle(in, &io, &ret), REALM_OK);
        CHECK_MSG(ret == 1 * 16 + 2,
                  "handles/sessions: %d (want 18; -1000 - rc of a failed "
                  "eval, -2 for the good one)",
                  ret);
    }
    realm_instance_free(in);
    realm_module_free(m);
}

/* The emitted lines of the tokens guest, gathered: ids, log-probabilities
 * and alternatives in order; returns the number of tokens (-1 if a line is
 * not the expected JSON). */
static int gather_tokens(const char *emitted, int32_t *ids, float *lp, int *n_top, int cap)
{
    int n = 0;
    for (const char *line = emitted; line && *line;) {
        const char *end = strchr(line, '\n');
        if (!end)
            return -1;
        json_t *a = json_loadb(line, (size_t)(end - line), 0, NULL);
        if (!json_is_array(a)) {
            json_decref(a);
            return -1;
        }
        for (size_t i = 0; i < json_array_size(a) && n < cap; i++, n++) {
            json_t *o = json_array_get(a, i);
            ids[n] = (int32_t)json_integer_value(json_object_get(o, "id"));
            json_t *l = json_object_get(o, "logprob");
            lp[n] = l ? (float)json_real_value(l) : 1.0f;
            json_t *top = json_object_get(o, "top_logprobs");
            if (!json_is_string(json_object_get(o, "token")) ||
                !json_is_array(json_object_get(o, "bytes"))) {
                json_decref(a);
                return -1;
            }
            n_top[n] = top ? (int)json_array_size(top) : -1;
        }
        json_decref(a);
        line = end + 1;
    }
    return n;
}

/* gen_tokens: every sampled token once, in order, behind the pieces that
 * carry it, with the engine's own log-probability and as many alternatives
 * as asked; without "logprobs", ids only. */
static void test_gen_tokens(void)
{
    realm_module *m = guest("tokens", "tests/sandbox/tokens.c");
    realm_instance *in = NULL;
    if (m)
        CHECK_RC(realm_instance_new(m, NULL, &in), REALM_OK);
    if (!in)
        return;
    enum { NT = 24 };
    realm_gen_options o;
    realm_gen_options_init(&o);
    o.max_tokens = NT;
    o.sampling.temperature = 0;
    o.sampling.n_probs = 2;
    realm_gen *g = NULL;
    realm_token *pids = NULL;
    int32_t n_pids = 0;
    CHECK_RC(realm_tokenize_alloc(realm_engine_tokenizer(engine), "Once upon a time", 16,
                                  REALM_TOKENIZE_ADD_SPECIAL, &pids, &n_pids),
             REALM_OK);
    CHECK_RC(
        realm_engine_submit(
            engine, &(realm_gen_request){.prompt = pids, .n_prompt = n_pids, .options = &o}, &g),
        REALM_OK);
    free(pids);
    int32_t want_ids[NT], ids[64];
    float want_lp[NT], lp[64];
    int n_top[64], nw = 0;
    realm_gen_piece p;
    while (g && realm_gen_next(g, &p, -1) > 0)
        if (p.token != REALM_TOKEN_NULL && nw < NT) {
            want_ids[nw] = p.token;
            want_lp[nw++] = p.logprob;
        }
    realm_gen_free(g);
    CHECK_EQ_INT(nw, NT);

    capture cap;
    CHECK_RC(request(in,
                     "{\"prompt\":\"Once upon a time\",\"max_tokens\":24,\"temperature\":0,"
                     "\"logprobs\":true,\"top_logprobs\":2}",
                     &cap),
             REALM_OK);
    CHECK_EQ_INT(cap.status, 200);
    int n = gather_tokens(cap.emitted, ids, lp, n_top, 64);
    CHECK_EQ_INT(n, NT);
    for (int i = 0; i < n && i < NT; i++) {
        CHECK_EQ_INT(ids[i], want_ids[i]);
        CHECK_MSG(lp[i] == want_lp[i], "token %d: logprob %g vs %g", i, lp[i], want_lp[i]);
        CHECK_EQ_INT(n_top[i], 2);
        CHECK(lp[i] <= 0);
    }
    capture_free(&cap);

    /* without log-probabilities: ids only */
    CHECK_RC(
        request(in, "{\"prompt\":\"Once upon a time\",\"max_tokens\":24,\"temperature\":0}", &cap),
        REALM_OK);
    n = gather_tokens(cap.emitted, ids, lp, n_top, 64);
    CHECK_EQ_INT(n, NT);
    CHECK(n > 0 && n_top[0] == -1 && lp[0] == 1.0f && ids[NT - 1] == want_ids[NT - 1]);
    capture_free(&cap);

    /* too many alternatives: a clear refusal */
    CHECK_RC(request(in, "{\"prompt\":\"Once\",\"max_tokens\":2,\"top_logprobs\":21}", &cap),
             REALM_OK);
    CHECK_EQ_INT(cap.status, 400);
    capture_free(&cap);
    realm_instance_free(in);
    realm_module_free(m);
}

/* eval sessions run in the engine's pool under the tenant's limits: 100
 * tokens need 4 blocks of 32, over a limit of 2 */
static void test_eval_tenant_limits(void)
{
    const char *wat = "(module\n"
                      " (import \"realm\" \"model_open\" (func $mo (param i32 i32) (result i32)))\n"
                      " (import \"realm\" \"eval\" (func $ev (param i32 i32 i32) (result i32)))\n"
                      " (memory (export \"memory\") 1)\n"
                      " (data (i32.const 16) \"tiny\")\n"
                      " (func (export \"handle\") (result i32)\n"
                      "  (call $ev (call $mo (i32.const 16) (i32.const 4)) (i32.const 1024)"
                      " (i32.const 100))))\n";
    char in_path[400], out_path[400], cmd[1000];
    snprintf(in_path, sizeof in_path, "%s/evallimit.wat", work);
    snprintf(out_path, sizeof out_path, "%s/evallimit.wasm", work);
    FILE *f = fopen(in_path, "w");
    if (f) {
        fputs(wat, f);
        fclose(f);
    }
    snprintf(cmd, sizeof cmd, "wat2wasm '%s' -o '%s'", in_path, out_path);
    CHECK_EQ_INT(system(cmd), 0);
    realm_module *m = NULL;
    CHECK_RC(realm_module_load(sb, out_path, &m), REALM_OK);
    CHECK_RC(realm_engine_set_tenant(engine, 77, &(realm_tenant_limits){.max_kv_blocks = 2}),
             REALM_OK);
    for (uint32_t tenant = 77; m && tenant <= 78; tenant++) {
        realm_tenant_policy pol;
        realm_tenant_policy_init(&pol);
        pol.tenant = tenant;
        realm_instance *in = NULL;
        CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
        realm_request_io io = {0};
        int32_t ret = 0;
        if (in)
            CHECK_RC(realm_instance_handle(in, &io, &ret), REALM_OK);
        if (tenant == 77)
            CHECK_MSG(ret == REALM_ERR_RANGE, "tenant 77 (2 blocks): eval gave %d", ret);
        else
            CHECK_MSG(ret == 1024, "tenant 78: eval gave %d", ret);
        realm_instance_free(in);
    }
    realm_module_free(m);
}

/* A client's stop (REALM_IO_STOP, a WebSocket's response.cancel) ends the
 * generation as cancelled and the module answers; a client gone (any other
 * nonzero) interrupts it. The default module over a WebSocket emits each
 * event alone and ends a stopped response with response.cancelled. */
typedef struct stopper {
    capture cap;
    int n_emits, stop_after, answer;
} stopper;

static void stop_emit(void *ud, const char *d, size_t n)
{
    stopper *s = ud;
    s->n_emits++;
    CHECK_MSG(n > 0 && d[0] == '{' && d[n - 1] == '}', "an event alone: %.*s", (int)n, d);
    on_emit(&s->cap, d, n);
}

static void stop_respond(void *ud, int status, const char *d, size_t n)
{
    on_respond(&((stopper *)ud)->cap, status, d, n);
}

static int stop_cancelled(void *ud)
{
    stopper *s = ud;
    return s->n_emits >= s->stop_after ? s->answer : 0;
}

static void test_stop(void)
{
    realm_module *m = guest("default", "guest/default/default.c");
    if (!m)
        return;
    realm_instance *in = instance(m);
    static const char info[] = "{\"method\":\"POST\",\"path\":\"/v1/responses\",\"transport\":"
                               "\"websocket\",\"request_id\":\"req-stop\"}";
    static const char body[] = "{\"model\":\"tiny\",\"input\":\"Once upon a time\","
                               "\"max_output_tokens\":900,\"store\":false}";
    for (int gone = 0; gone <= 1 && in; gone++) {
        stopper st = {.stop_after = 6, .answer = gone ? 1 : REALM_IO_STOP};
        realm_request_io io = {.body = body,
                               .body_len = strlen(body),
                               .emit = stop_emit,
                               .respond = stop_respond,
                               .info = info,
                               .info_len = strlen(info),
                               .cancelled = stop_cancelled,
                               .ud = &st};
        int32_t ret = 0;
        const int rc = realm_instance_handle(in, &io, &ret);
        const char *e = st.cap.emitted ? st.cap.emitted : "";
        if (gone) {
            CHECK_RC(rc, REALM_ERR_INTERRUPTED);
            CHECK_MSG(!strstr(e, "response.cancelled"), "a client gone gets nothing more");
        } else {
            CHECK_RC(rc, REALM_OK);
            /* the last event is the respond body (the end of the response with it) */
            const char *last = st.cap.body ? st.cap.body : "";
            CHECK_MSG(strncmp(last, "{\"type\":\"response.cancelled\"", 28) == 0 &&
                          strstr(last, "\"status\":\"cancelled\""),
                      "stopped: response.cancelled with status cancelled: %.300s", last);
            CHECK_MSG(!strstr(e, "response.cancelled"), "sent once, as the last event");
            CHECK_MSG(strstr(e, "response.output_item.done") != NULL, "the item is closed");
            CHECK_MSG(!strstr(e, "event: ") && !strstr(e, "data: "), "no SSE framing");
            /* cancellation is polled every 20 ms of a wait, in which stories260K
             * makes dozens of tokens: "early" is far short of the 900 asked */
            CHECK_MSG(st.n_emits < 300, "stopped early (%d events)", st.n_emits);
        }
        capture_free(&st.cap);
    }
    realm_instance_free(in);
    realm_module_free(m);
}

/*
 * LoRA adapters through the host ABI: model_open of an adapter's name (the
 * base with it; model_info's parent), the adapter / adapter_scale / lora
 * options, each giving the engine's own text with the adapter; the tenant
 * policy by the adapter's own name.
 */
static void test_lora(void)
{
    realm_registry *reg = realm_sandbox_registry(sb);
    const char *root = getenv("REALM_SOURCE_DIR");
    char path[4096], body[512], want[256];
    snprintf(path, sizeof path, "%s/tests/data/lora/stories260K-lora-r8.gguf", root ? root : "..");
    /* tiny, small and large are one model: which is the base must be said */
    CHECK_RC(realm_registry_add_lora(reg, "tiny-r8", path, NULL), REALM_ERR_INVAL);
    CHECK_RC(realm_registry_add_lora(reg, "tiny-r8", path, "tiny"), REALM_OK);
    realm_model_ref *ref = NULL;
    CHECK_RC(realm_registry_acquire(reg, "tiny-r8", 7, NULL, &ref), REALM_OK);
    realm_module *m = guest("lora", "tests/sandbox/lora.c");
    if (!ref || !m) {
        realm_registry_release(ref);
        realm_module_free(m);
        return;
    }
    realm_lora_status *ls = NULL;
    int32_t n = 0;
    CHECK_RC(realm_registry_list_lora(reg, &ls, &n), REALM_OK);
    const long long id = n > 0 ? (long long)ls[0].id : -1;
    free(ls);
    const char *prompt = "Once upon a time";
    char *base = direct(prompt, 24), *full = direct_lora(prompt, 24, realm_model_ref_lora(ref), 1),
         *half = direct_lora(prompt, 24, realm_model_ref_lora(ref), 0.5f);
    CHECK(strcmp(full, base) != 0 && strcmp(half, full) != 0);

    realm_tenant_policy pol;
    realm_tenant_policy_init(&pol);
    realm_instance *in = NULL;
    capture cap;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
    const struct {
        const char *opts;
        const char *text;
    } ok[] = {
        {"\"model\":\"tiny-r8\"", full},
        {"\"model\":\"tiny-r8\",\"adapter_scale\":0.5", half},
        {"\"model\":\"tiny\",\"adapter\":\"tiny-r8\",\"adapter_scale\":0.5", half},
        {"\"model\":\"tiny\",\"lora\":[{\"id\":%lld,\"scale\":0.5}]", half},
        {"\"model\":\"tiny\",\"lora\":[{\"id\":%lld,\"scale\":0}]", base},
    };
    for (size_t i = 0; in && i < sizeof ok / sizeof *ok; i++) {
        char opts[200];
        snprintf(opts, sizeof opts, ok[i].opts, id);
        snprintf(body, sizeof body, "{%s,\"prompt\":\"%s\",\"max_tokens\":24,\"temperature\":0}",
                 opts, prompt);
        CHECK_RC(request(in, body, &cap), REALM_OK);
        const char *nl = cap.body ? strchr(cap.body, '\n') : NULL;
        CHECK_MSG(nl && strcmp(nl + 1, ok[i].text) == 0, "%s: %s, want %s", body,
                  cap.body ? cap.body : "(none)", ok[i].text);
        if (nl && strstr(opts, "tiny-r8\"") == opts + 9)
            CHECK_MSG(strstr(cap.body, "\"name\":\"tiny-r8\"") &&
                          strstr(cap.body, "\"parent\":\"tiny\""),
                      "model_info of an adapter: %s", cap.body);
        else if (nl)
            CHECK_MSG(!strstr(cap.body, "\"parent\""), "model_info of a model: %s", cap.body);
        capture_free(&cap);
    }
    const struct {
        const char *opts;
        int code;
        const char *param;
    } bad[] = {
        {"\"model\":\"tiny\",\"adapter\":\"small\"", REALM_ERR_INVAL, "adapter"},
        {"\"model\":\"tiny\",\"adapter\":\"nope\"", REALM_ERR_NOTFOUND, "adapter"},
        {"\"model\":\"tiny\",\"adapter_scale\":2", REALM_ERR_INVAL, "adapter_scale"},
        {"\"model\":\"tiny\",\"lora\":[{\"id\":99}]", REALM_ERR_INVAL, "lora[0].id"},
    };
    for (size_t i = 0; in && i < sizeof bad / sizeof *bad; i++) {
        snprintf(body, sizeof body, "{%s,\"prompt\":\"hi\",\"max_tokens\":2}", bad[i].opts);
        CHECK_RC(request(in, body, &cap), REALM_OK);
        snprintf(want, sizeof want, "ERR,%d,%s", bad[i].code, bad[i].param);
        CHECK_MSG(cap.body && strcmp(cap.body, want) == 0, "%s: %s, want %s", body,
                  cap.body ? cap.body : "(none)", want);
        capture_free(&cap);
    }
    realm_instance_free(in);

    /* the policy names adapters by their own names */
    const char *only_base[] = {"tiny"}, *only_adapter[] = {"tiny-r8"};
    pol.models = only_base;
    pol.n_models = 1;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
    const struct {
        const char *opts, *want;
    } denied[] = {
        {"\"model\":\"tiny-r8\"", ""},
        {"\"model\":\"tiny\",\"adapter\":\"tiny-r8\"", "adapter"},
        {"\"model\":\"tiny\",\"lora\":[{\"id\":%lld}]", "lora[0].id"},
    };
    for (size_t i = 0; in && i < sizeof denied / sizeof *denied; i++) {
        char opts[200];
        snprintf(opts, sizeof opts, denied[i].opts, id);
        snprintf(body, sizeof body, "{%s,\"prompt\":\"hi\",\"max_tokens\":2}", opts);
        CHECK_RC(request(in, body, &cap), REALM_OK);
        snprintf(want, sizeof want, "ERR,%d,%s", REALM_ERR_DENIED, denied[i].want);
        CHECK_MSG(cap.body && strcmp(cap.body, want) == 0, "%s: %s, want %s", body,
                  cap.body ? cap.body : "(none)", want);
        capture_free(&cap);
    }
    realm_instance_free(in);
    pol.models = only_adapter;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
    snprintf(body, sizeof body,
             "{\"model\":\"tiny-r8\",\"prompt\":\"%s\",\"max_tokens\":24,\"temperature\":0}",
             prompt);
    CHECK_RC(in ? request(in, body, &cap) : REALM_ERR_INVAL, REALM_OK);
    const char *nl = in && cap.body ? strchr(cap.body, '\n') : NULL;
    CHECK_MSG(nl && strcmp(nl + 1, full) == 0, "an allowed adapter without its base: %s",
              in && cap.body ? cap.body : "(none)");
    if (in)
        capture_free(&cap);
    realm_instance_free(in);
    realm_module_free(m);
    free(base);
    free(full);
    free(half);
    realm_registry_release(ref);
    CHECK_RC(realm_registry_remove_lora(reg, "tiny-r8", NULL), REALM_OK);
}

int main(void)
{
    test_begin("sandbox_engine", 300);
    const char *t = getenv("TMPDIR");
    snprintf(work, sizeof work, "%s/realm-sbxe-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(work)) {
        perror("mkdtemp");
        return 1;
    }
    CHECK_RC(realm_model_load(test_data("models/stories260K.gguf"), NULL, &model), REALM_OK);
    if (!model)
        return test_end();
    CHECK_RC(
        realm_engine_new(model, &(realm_engine_params){.n_ctx = 1024, .n_threads = 2}, &engine),
        REALM_OK);
    CHECK_RC(realm_sandbox_new(&(realm_sandbox_params){.cache_dir = "sandbox-cache"}, &sb),
             REALM_OK);
    CHECK_RC(realm_sandbox_add_model(sb, "tiny", model, engine, NULL), REALM_OK);
    CHECK_RC(realm_sandbox_add_model(sb, "tiny", model, engine, NULL), REALM_ERR_EXISTS);
    CHECK_RC(realm_sandbox_add_model(sb, "small", model, engine, NULL), REALM_OK);
    CHECK_RC(realm_sandbox_add_model(sb, "large", model, engine, NULL), REALM_OK);
    test_default_handler();
    test_router();
    test_redact();
    test_sampler();
    test_tensor_read();
    test_generation_limit();
    test_handles_and_sessions();
    test_eval_tenant_limits();
    test_gen_tokens();
    test_stop();
    test_lora();
    realm_sandbox_free(sb);
    realm_engine_free(engine);
    realm_model_free(model);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", work);
    return test_end();
}
