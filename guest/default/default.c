/*
 * The default handler: OpenAI-style /v1/chat/completions and /v1/completions
 * for tenants without a module of their own.
 *
 * Request: the OpenAI JSON body ("model", "messages" or "prompt",
 * "max_tokens", "temperature", "top_p", "stop", "seed", "stream", ...). The
 * body goes to realm.generate unchanged: the host reads the options it knows.
 * The route (rg_request_info's path) decides chat or text completion. The
 * objects are OpenAI's: "id" (chatcmpl- or cmpl- and the request id),
 * "object", "created", "model", "system_fingerprint", "choices", "usage"
 * (with prompt_tokens_details.cached_tokens). With "stream": true each piece
 * is one SSE event (`data: {...}` chunk; the first chat chunk's delta
 * carries role "assistant"), then a chunk with an empty delta and the
 * finish_reason, then — with stream_options.include_usage — a chunk with
 * "choices": [] and the usage, then `data: [DONE]`; an error after the stream
 * started is a `data: {"error":{...}}` event. Chat requests with "logprobs": true (and optionally
 * "top_logprobs": k) get OpenAI's "logprobs": {"content": [...]} in each
 * chunk or in the choice, from realm.gen_tokens; completion requests asking
 * for log-probabilities are refused (400). LoRA adapters pass through the
 * same way: "model" may name one (model_open opens its base with it), and
 * llama-server's "lora": [{"id","scale"}] is a generate option.
 *
 * Only the body's top-level members count: "model" (a string of fewer than
 * MODEL_CAP bytes; a longer one is refused, never cut), "messages" (present:
 * a chat request), "stream", "logprobs". Errors are answered in OpenAI's
 * shape, {"error":{"message","type","param","code"}}, with param the
 * request option at fault (the host's rg_last_error_param when a host call
 * failed) and the status from the host's error code (status_for).
 */
#include "default.h"

#define PIECE_CAP   4096
#define MAX_CHOICES 8

/*
 * The one way errors leave this handler: OpenAI's shape,
 * {"error":{"message","type","param","code"}}, type "invalid_request_error"
 * for 4xx and "server_error" for 5xx; param and code are JSON null when
 * NULL or empty. Returns status.
 */
int32_t reply_error(int32_t status, const char *message, size_t message_len, const char *param,
                    size_t param_len, const char *code)
{
    rg_buf b = {0};
    rg_buf_puts(&b, "{\"error\":{\"message\":");
    rg_buf_put_json_str(&b, message, message_len);
    rg_buf_puts(&b, status >= 500 ? ",\"type\":\"server_error\",\"param\":"
                                  : ",\"type\":\"invalid_request_error\",\"param\":");
    if (param && param_len)
        rg_buf_put_json_str(&b, param, param_len);
    else
        rg_buf_puts(&b, "null");
    rg_buf_puts(&b, ",\"code\":");
    if (code)
        rg_buf_put_json_str(&b, code, strlen(code));
    else
        rg_buf_puts(&b, "null");
    rg_buf_puts(&b, "}}");
    rg_respond(status, b.data, (uint32_t)b.len);
    return status;
}

/* An error found by the handler itself, about the request option param
 * (NULL: not about one option). */
int32_t bad_reply(int32_t status, const char *message, const char *param)
{
    return reply_error(status, message, strlen(message), param, param ? strlen(param) : 0, 0);
}

/* The text of the host's last error (rg_last_error or rg_last_error_param),
 * rg_alloc'ed; *n is its length, 0 when there is none. */
char *host_text(int32_t (*get)(char *, uint32_t), size_t *n)
{
    int32_t need = get(0, 0);
    char *s = need > 0 ? rg_alloc((size_t)need) : 0;
    *n = s && get(s, (uint32_t)need) == need ? (size_t)need : 0;
    return s;
}

/* The reply for the host call that just failed: message "what: <the host's
 * message>", param as the host names it, the given status and code. */
int32_t host_error(int32_t status, const char *what, const char *code)
{
    size_t n_msg, n_param;
    char *msg = host_text(rg_last_error, &n_msg);
    char *param = host_text(rg_last_error_param, &n_param);
    rg_buf m = {0};
    rg_buf_puts(&m, what);
    if (n_msg) {
        rg_buf_puts(&m, ": ");
        rg_buf_put(&m, msg, n_msg);
    }
    return reply_error(status, m.data, m.len, param, n_param, code);
}

/* The HTTP status for a failed model_open or generate. */
int32_t status_for(int32_t err)
{
    switch (err) {
    case RG_ERR_NOTFOUND:
        return 404;
    case RG_ERR_DENIED:
        return 403;
    case RG_ERR_OVERLOADED:
        return 503;
    case RG_ERR_INVAL:
    case RG_ERR_RANGE:
    case RG_ERR_UNSUPPORTED:
    case RG_ERR_TYPE:
        return 400;
    default:
        return 500;
    }
}

static void read_info(req_info *ri)
{
    memset(ri, 0, sizeof *ri);
    int32_t n = rg_request_info(0, 0);
    char *info = n > 0 ? rg_alloc((size_t)n) : 0;
    if (!info || rg_request_info(info, (uint32_t)n) != n)
        return;
    if (rg_json_string(info, (size_t)n, "method", ri->method, sizeof ri->method) >=
        (int32_t)sizeof ri->method)
        ri->method[0] = '\0';
    if (rg_json_string(info, (size_t)n, "path", ri->path, sizeof ri->path) >=
        (int32_t)sizeof ri->path)
        memcpy(ri->path, "/too-long", 10);
    for (char *q = ri->path; *q; q++)
        if (*q == '?')
            *q = '\0';
    if (rg_json_string(info, (size_t)n, "query", ri->query, sizeof ri->query) >=
        (int32_t)sizeof ri->query)
        ri->query[0] = '\0';
    if (rg_json_string(info, (size_t)n, "request_id", ri->id, sizeof ri->id) >=
        (int32_t)sizeof ri->id)
        ri->id[0] = '\0';
    ri->created = rg_json_int(info, (size_t)n, "created", 0);
    ri->responses_ttl_s = rg_json_int(info, (size_t)n, "responses_ttl_s", 0);
    char transport[16];
    ri->websocket = rg_json_string(info, (size_t)n, "transport", transport, sizeof transport) > 0 &&
                    streq(transport, "websocket");
}

int streq(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

/* The members every chunk (and the whole response) starts with:
 * "id","object","created","model","system_fingerprint". */
static void put_head(rg_buf *b, const req_info *ri, int chat, int chunk, const char *model,
                     size_t model_len)
{
    rg_buf_puts(b, "{\"id\":\"");
    rg_buf_puts(b, chat ? "chatcmpl-" : "cmpl-");
    rg_buf_puts(b, ri->id[0] ? ri->id : "local");
    rg_buf_puts(b, "\",\"object\":\"");
    rg_buf_puts(b,
                chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    rg_buf_puts(b, "\",\"created\":");
    rg_buf_put_int(b, ri->created);
    rg_buf_puts(b, ",\"model\":");
    rg_buf_put_json_str(b, model, model_len);
    rg_buf_puts(b, ",\"system_fingerprint\":\"fp_realm\"");
}

static void put_usage(rg_buf *b, int64_t n_prompt, int64_t n_cached, int64_t n_gen)
{
    rg_buf_puts(b, "\"usage\":{\"prompt_tokens\":");
    rg_buf_put_int(b, n_prompt);
    rg_buf_puts(b, ",\"completion_tokens\":");
    rg_buf_put_int(b, n_gen);
    rg_buf_puts(b, ",\"total_tokens\":");
    rg_buf_put_int(b, n_prompt + n_gen);
    rg_buf_puts(b, ",\"prompt_tokens_details\":{\"cached_tokens\":");
    rg_buf_put_int(b, n_cached);
    rg_buf_puts(b, "}}");
}

/* The k-th element (an object) of the JSON array a[0..n): its span in
 * *obj, *len; 0, or -1 when there is none. Strings are skipped whole. */
int nth_object(const char *a, size_t n, int k, const char **obj, size_t *len)
{
    int depth = 0, idx = -1, in_str = 0;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char ch = a[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = 0;
        } else if (ch == '"') {
            in_str = 1;
        } else if (ch == '[' || ch == '{') {
            if (ch == '{' && depth == 1 && ++idx == k)
                start = i;
            depth++;
        } else if (ch == ']' || ch == '}') {
            depth--;
            if (ch == '}' && depth == 1 && idx == k) {
                *obj = a + start;
                *len = i + 1 - start;
                return 0;
            }
        }
    }
    return -1;
}

/* Emit one SSE event: "data: " + b + "\n\n". */
static void emit_event(rg_buf *b)
{
    rg_buf_puts(b, "\n\n");
    rg_emit(b->data, (uint32_t)b->len);
}

/* An error after streaming started: a data event with the error object. */
static int32_t stream_error(const char *what)
{
    size_t n_msg;
    char *msg = host_text(rg_last_error, &n_msg);
    rg_buf b = {0};
    rg_buf_puts(&b, "data: {\"error\":{\"message\":");
    rg_buf m = {0};
    rg_buf_puts(&m, what);
    if (n_msg) {
        rg_buf_puts(&m, ": ");
        rg_buf_put(&m, msg, n_msg);
    }
    rg_buf_put_json_str(&b, m.data, m.len);
    rg_buf_puts(&b, ",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    emit_event(&b);
    rg_respond(200, "", 0);
    return 500;
}

/* The k-th element of the JSON array a[0..n): its raw span; 0, or -1. */
int nth_value(const char *a, size_t n, int k, const char **v, size_t *len)
{
    int depth = 0, idx = 0, in_str = 0, started = 0;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char ch = a[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = 0;
            continue;
        }
        const int blank = ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r';
        if (depth == 1 && !started && !blank && ch != ',' && ch != ']') {
            started = 1;
            start = i;
        }
        int ends = 0;
        if (ch == '"') {
            in_str = 1;
        } else if (ch == '[' || ch == '{') {
            depth++;
        } else if (ch == ']' || ch == '}') {
            ends = --depth == 0;
        } else if (ch == ',' && depth == 1) {
            ends = 1;
        }
        if (ends && started) {
            size_t end = i;
            while (end > start && (a[end - 1] == ' ' || a[end - 1] == '\n' || a[end - 1] == '\t' ||
                                   a[end - 1] == '\r'))
                end--;
            if (idx == k) {
                *v = a + start;
                *len = end - start;
                return 0;
            }
            idx++;
            started = 0;
        }
    }
    return -1;
}

#define MAX_PROMPTS 16
#define MAX_OUT     32 /* choices over all prompts */

/* What one request gathers over its prompts and choices. */
typedef struct run {
    const req_info *ri;
    const char *model;
    size_t model_len;
    int chat, stream, logprobs; /* logprobs: 0 none, 1 chat's shape, 2 completions' legacy */
    int n_out;
    rg_buf text[MAX_OUT], lp[MAX_OUT];
    int first[MAX_OUT];
    size_t offset[MAX_OUT]; /* legacy text_offset: bytes of the choice's text so far */
    char finish[MAX_OUT][32];
    int64_t n_prompt, n_cached, n_gen;
} run;

/* Append the legacy completions log-probabilities of one piece's tokens
 * (items: gen_tokens' array without its brackets) to the four lists. */
static void legacy_items(rg_buf *tok, rg_buf *tlp, rg_buf *top, rg_buf *off, size_t *offset,
                         const char *items, size_t n_items)
{
    rg_buf arr = {0}; /* the items as an array */
    rg_buf_puts(&arr, "[");
    rg_buf_put(&arr, items, n_items);
    rg_buf_puts(&arr, "]");
    const char *o;
    size_t ol;
    for (int i = 0; nth_object(arr.data, arr.len, i, &o, &ol) == 0; i++) {
        char t[256];
        int32_t tl = rg_json_string(o, ol, "token", t, sizeof t);
        if (tl < 0 || tl >= (int32_t)sizeof t)
            tl = 0, t[0] = '\0';
        const char *lpv;
        size_t lpl;
        if (tok->len) {
            rg_buf_puts(tok, ",");
            rg_buf_puts(tlp, ",");
            rg_buf_puts(top, ",");
            rg_buf_puts(off, ",");
        }
        rg_buf_put_json_str(tok, t, (size_t)tl);
        if (rg_json_raw(o, ol, "logprob", &lpv, &lpl) == 0)
            rg_buf_put(tlp, lpv, lpl);
        else
            rg_buf_puts(tlp, "null");
        rg_buf_puts(top, "{");
        const char *alts;
        size_t al;
        if (rg_json_raw(o, ol, "top_logprobs", &alts, &al) == 0) {
            const char *ao;
            size_t aol;
            for (int k = 0; nth_object(alts, al, k, &ao, &aol) == 0; k++) {
                char at[256];
                int32_t atl = rg_json_string(ao, aol, "token", at, sizeof at);
                const char *alp;
                size_t alpl;
                if (atl < 0 || atl >= (int32_t)sizeof at ||
                    rg_json_raw(ao, aol, "logprob", &alp, &alpl) < 0)
                    continue;
                if (k)
                    rg_buf_puts(top, ",");
                rg_buf_put_json_str(top, at, (size_t)atl);
                rg_buf_puts(top, ":");
                rg_buf_put(top, alp, alpl);
            }
        }
        rg_buf_puts(top, "}");
        rg_buf_put_int(off, (int64_t)*offset);
        *offset += (size_t)tl;
    }
}

/* A choice's "logprobs" value: null, chat's {"content":[...]} or the legacy
 * {"tokens","token_logprobs","top_logprobs","text_offset"}. */
static void put_logprobs(rg_buf *b, const run *r, const char *items, size_t n_items, size_t *offset)
{
    if (r->logprobs == 0) {
        rg_buf_puts(b, "null");
    } else if (r->logprobs == 1) {
        rg_buf_puts(b, "{\"content\":[");
        rg_buf_put(b, items ? items : "", n_items);
        rg_buf_puts(b, "]}");
    } else {
        rg_buf tok = {0}, tlp = {0}, top = {0}, off = {0};
        if (n_items)
            legacy_items(&tok, &tlp, &top, &off, offset, items, n_items);
        rg_buf_puts(b, "{\"tokens\":[");
        rg_buf_put(b, tok.data ? tok.data : "", tok.len);
        rg_buf_puts(b, "],\"token_logprobs\":[");
        rg_buf_put(b, tlp.data ? tlp.data : "", tlp.len);
        rg_buf_puts(b, "],\"top_logprobs\":[");
        rg_buf_put(b, top.data ? top.data : "", top.len);
        rg_buf_puts(b, "],\"text_offset\":[");
        rg_buf_put(b, off.data ? off.data : "", off.len);
        rg_buf_puts(b, "]}");
    }
}

/*
 * One prompt's generation of n choices (global indexes base..base+n-1):
 * streams its chunks or gathers its text; returns 0, or the status already
 * answered on an error.
 */
static int32_t run_prompt(run *r, int32_t g, int base, int64_t n)
{
    static char small[PIECE_CAP];
    int32_t k;
    while ((k = rg_gen_next(g, small, sizeof small)) > 0) {
        char *piece = small;
        if (k > PIECE_CAP) {
            /* A piece larger than the buffer was kept by the host: fetch it
             * whole into a buffer of its size. */
            piece = rg_alloc((size_t)k);
            if (!piece)
                return bad_reply(500, "out of memory for a piece of text", 0);
            int32_t again = rg_gen_next(g, piece, (uint32_t)k);
            if (again != k)
                return r->stream ? stream_error("generation failed")
                                 : host_error(500, "generation failed", 0);
        }
        const int32_t ci = n > 1 ? rg_gen_choice(g) : 0;
        if (ci < 0 || ci >= n)
            return r->stream ? stream_error("no choice") : host_error(500, "no choice", 0);
        const int oi = base + ci;
        /* this piece's tokens: a JSON array, its items go on in lp */
        const char *items = 0;
        size_t n_items = 0;
        if (r->logprobs) {
            int32_t need = rg_gen_tokens(g, 0, 0);
            char *toks = need > 2 ? rg_alloc((size_t)need) : 0;
            if (!toks || rg_gen_tokens(g, toks, (uint32_t)need) != need)
                return r->stream ? stream_error("no log-probabilities")
                                 : host_error(500, "no log-probabilities", 0);
            items = toks + 1;
            n_items = (size_t)need - 2;
        }
        if (r->stream) {
            rg_buf ev = {0};
            rg_buf_puts(&ev, "data: ");
            put_head(&ev, r->ri, r->chat, 1, r->model, r->model_len);
            rg_buf_puts(&ev, ",\"choices\":[{\"index\":");
            rg_buf_put_int(&ev, oi);
            if (r->chat) {
                rg_buf_puts(&ev, r->first[oi] ? ",\"delta\":{\"role\":\"assistant\",\"content\":"
                                              : ",\"delta\":{\"content\":");
                rg_buf_put_json_str(&ev, piece, (size_t)k);
                rg_buf_puts(&ev, "},\"logprobs\":");
            } else {
                rg_buf_puts(&ev, ",\"text\":");
                rg_buf_put_json_str(&ev, piece, (size_t)k);
                rg_buf_puts(&ev, ",\"logprobs\":");
            }
            put_logprobs(&ev, r, items, n_items, &r->offset[oi]);
            rg_buf_puts(&ev, ",\"finish_reason\":null}]}");
            emit_event(&ev);
            r->first[oi] = 0;
        } else {
            rg_buf_put(&r->text[oi], piece, (size_t)k);
            if (n_items) {
                if (r->lp[oi].len)
                    rg_buf_puts(&r->lp[oi], ",");
                rg_buf_put(&r->lp[oi], items, n_items);
            }
        }
    }
    if (k < 0)
        return r->stream ? stream_error("generation failed")
                         : host_error(500, "generation failed", 0);
    static char res[4096];
    int32_t rn = rg_gen_result(g, res, sizeof res);
    if (rn < 0 || rn > (int32_t)sizeof res)
        return r->stream ? stream_error("no result") : host_error(500, "no result", 0);
    /* each choice's finish reason: "choices" of gen_result when n > 1 */
    const char *chs;
    size_t chs_len;
    const int have_choices = rg_json_raw(res, (size_t)rn, "choices", &chs, &chs_len) == 0;
    for (int i = 0; i < n; i++) {
        const char *o = res;
        size_t ol = (size_t)rn;
        if (have_choices && nth_object(chs, chs_len, i, &o, &ol) < 0)
            o = res, ol = (size_t)rn;
        char *f = r->finish[base + i];
        if (rg_json_string(o, ol, "finish_reason", f, sizeof r->finish[0]) < 0)
            f[0] = '\0';
        if (streq(f, "cancelled") || streq(f, "error"))
            return r->stream ? stream_error("generation ended early")
                             : host_error(500, "generation ended early", 0);
    }
    r->n_prompt += rg_json_int(res, (size_t)rn, "prompt_tokens", 0);
    r->n_gen += rg_json_int(res, (size_t)rn, "completion_tokens", 0);
    r->n_cached += rg_json_int(res, (size_t)rn, "cached_tokens", 0);
    return 0;
}

int32_t handle(void)
{
    rg_reset();
    int32_t n = rg_request_read(0, 0);
    char *body = n > 0 ? rg_alloc((size_t)n + 1) : 0;
    const int have_body = body && rg_request_read(body, (uint32_t)n) == n;
    size_t len = have_body ? (size_t)n : 0;
    req_info ri;
    read_info(&ri);
    if (!memcmp(ri.path, "/v1/responses", 13) && (!ri.path[13] || ri.path[13] == '/'))
        return responses_handle(have_body ? body : "", len, &ri);
    if (!have_body)
        return bad_reply(400, "empty request", 0);
    /* the route decides: chat or text completion (without one, as under
     * `realm module run`, a body with "messages" is a chat) */
    int chat;
    if (streq(ri.path, "/v1/chat/completions"))
        chat = 1;
    else if (streq(ri.path, "/v1/completions"))
        chat = 0;
    else if (!ri.path[0])
        chat = rg_json_has(body, len, "messages");
    else
        return bad_reply(404,
                         "this module serves /v1/chat/completions, /v1/completions and "
                         "/v1/responses",
                         0);
    if (chat && !rg_json_has(body, len, "messages"))
        return bad_reply(400, "'messages' is required", "messages");
    if (!chat && !rg_json_has(body, len, "prompt"))
        return bad_reply(400, "'prompt' is required", "prompt");
    if (!chat && rg_json_has(body, len, "messages"))
        return bad_reply(400, "'messages' belongs to /v1/chat/completions; send 'prompt' here",
                         "messages");
    char model[MODEL_CAP];
    int32_t model_len = rg_json_string(body, len, "model", model, sizeof model);
    if (model_len < 0)
        return bad_reply(400,
                         rg_json_has(body, len, "model") ? "'model' must be a string"
                                                         : "'model' is required",
                         "model");
    if (model_len >= (int32_t)sizeof model)
        return bad_reply(400, "'model' is too long", "model");
    run r = {.ri = &ri, .model = model, .model_len = (size_t)model_len, .chat = chat};
    for (int i = 0; i < MAX_OUT; i++)
        r.first[i] = 1;
    r.stream = rg_json_bool(body, len, "stream", 0);
    int64_t n_choices = rg_json_int(body, len, "n", 1);
    if (n_choices < 1 || n_choices > MAX_CHOICES)
        n_choices = 1; /* the host refuses it, naming "n" */
    /* chat: "logprobs": true; completions: the legacy "logprobs": k */
    if (chat && rg_json_bool(body, len, "logprobs", 0))
        r.logprobs = 1;
    else if (!chat && rg_json_int(body, len, "logprobs", -1) >= 0)
        r.logprobs = 2;
    else if (!chat && rg_json_bool(body, len, "logprobs", 0))
        return bad_reply(400, "'logprobs' of /v1/completions is an integer (alternatives)",
                         "logprobs");
    /* "prompt": a string, or an array of strings (a choice, or n, each) */
    const char *pr;
    size_t pr_len;
    int n_prompts = 1;
    if (!chat && rg_json_raw(body, len, "prompt", &pr, &pr_len) == 0 && pr[0] == '[') {
        const char *v;
        size_t vl;
        n_prompts = 0;
        while (n_prompts <= MAX_PROMPTS && nth_value(pr, pr_len, n_prompts, &v, &vl) == 0) {
            if (v[0] != '"')
                return bad_reply(400,
                                 "'prompt' must be a string or an array of strings (token "
                                 "arrays are not supported)",
                                 "prompt");
            n_prompts++;
        }
        if (n_prompts == 0 || n_prompts > MAX_PROMPTS)
            return bad_reply(400, "'prompt' must hold 1 to 16 strings", "prompt");
    }
    if (n_prompts * n_choices > MAX_OUT)
        return bad_reply(400, "more than 32 choices over all prompts", "n");
    r.n_out = (int)(n_prompts * n_choices);
    /* stream_options.include_usage: a last chunk with the usage */
    int include_usage = 0;
    const char *so;
    size_t so_len;
    if (rg_json_raw(body, len, "stream_options", &so, &so_len) == 0)
        include_usage = rg_json_bool(so, so_len, "include_usage", 0);

    int32_t h = rg_model_open(model, (uint32_t)model_len);
    if (h < 0)
        return host_error(status_for(h), "cannot open the model",
                          h == RG_ERR_NOTFOUND ? "model_not_found" : 0);
    /* the body as the options; with several prompts, one at a time: the body
     * with "prompt" given again (the last occurrence of a key counts) */
    size_t end = len;
    while (end > 0 && body[end - 1] != '}')
        end--;
    for (int pi = 0; pi < n_prompts; pi++) {
        const char *opts = body;
        size_t opts_len = len;
        if (pr_len && pr[0] == '[') {
            const char *v;
            size_t vl;
            nth_value(pr, pr_len, pi, &v, &vl);
            rg_buf o = {0};
            rg_buf_put(&o, body, end ? end - 1 : 0);
            rg_buf_puts(&o, ",\"prompt\":");
            rg_buf_put(&o, v, vl);
            rg_buf_puts(&o, "}");
            opts = o.data;
            opts_len = o.len;
        }
        int32_t g = rg_generate(h, opts, (uint32_t)opts_len);
        if (g < 0) {
            if (pi > 0 && r.stream)
                return stream_error("cannot generate");
            if (g == RG_ERR_OVERLOADED) /* the engine's queue is full: try again soon */
                rg_set_response(503, "{\"retry-after\":\"1\"}", 19);
            return host_error(status_for(g), "cannot generate", 0);
        }
        if (r.stream && pi == 0) {
            static const char sse[] = "{\"content-type\":\"text/event-stream\","
                                      "\"cache-control\":\"no-cache\"}";
            rg_set_response(200, sse, sizeof sse - 1);
        }
        int32_t rc = run_prompt(&r, g, pi * (int)n_choices, n_choices);
        if (rc)
            return rc;
    }

    rg_buf out = {0};
    if (r.stream) {
        /* each choice's last chunk: an empty delta (with the role if nothing
         * came) and its reason */
        for (int i = 0; i < r.n_out; i++) {
            rg_buf_puts(&out, "data: ");
            put_head(&out, &ri, chat, 1, model, (size_t)model_len);
            rg_buf_puts(&out, ",\"choices\":[{\"index\":");
            rg_buf_put_int(&out, i);
            if (chat)
                rg_buf_puts(&out, r.first[i]
                                      ? ",\"delta\":{\"role\":\"assistant\",\"content\":"
                                        "\"\"},\"logprobs\":null,\"finish_reason\":"
                                      : ",\"delta\":{},\"logprobs\":null,\"finish_reason\":");
            else
                rg_buf_puts(&out, ",\"text\":\"\",\"logprobs\":null,\"finish_reason\":");
            rg_buf_put_json_str(&out, r.finish[i], strlen(r.finish[i]));
            rg_buf_puts(&out, "}]}\n\n");
        }
        if (include_usage) {
            rg_buf_puts(&out, "data: ");
            put_head(&out, &ri, chat, 1, model, (size_t)model_len);
            rg_buf_puts(&out, ",\"choices\":[],");
            put_usage(&out, r.n_prompt, r.n_cached, r.n_gen);
            rg_buf_puts(&out, "}\n\n");
        }
        rg_buf_puts(&out, "data: [DONE]\n\n");
        rg_respond(200, out.data, (uint32_t)out.len);
        return 200;
    }
    put_head(&out, &ri, chat, 0, model, (size_t)model_len);
    rg_buf_puts(&out, ",\"choices\":[");
    for (int i = 0; i < r.n_out; i++) {
        rg_buf_puts(&out, i ? ",{\"index\":" : "{\"index\":");
        rg_buf_put_int(&out, i);
        if (chat)
            rg_buf_puts(&out, ",\"message\":{\"role\":\"assistant\",\"content\":");
        else
            rg_buf_puts(&out, ",\"text\":");
        rg_buf_put_json_str(&out, r.text[i].data ? r.text[i].data : "", r.text[i].len);
        rg_buf_puts(&out, chat ? "},\"logprobs\":" : ",\"logprobs\":");
        size_t off = 0;
        put_logprobs(&out, &r, r.lp[i].data, r.lp[i].len, &off);
        rg_buf_puts(&out, ",\"finish_reason\":");
        rg_buf_put_json_str(&out, r.finish[i], strlen(r.finish[i]));
        rg_buf_puts(&out, "}");
    }
    rg_buf_puts(&out, "],");
    put_usage(&out, r.n_prompt, r.n_cached, r.n_gen);
    rg_buf_puts(&out, "}");
    rg_respond(200, out.data, (uint32_t)out.len);
    return 200;
}
