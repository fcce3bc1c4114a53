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
 * for log-probabilities are refused (400).
 *
 * Only the body's top-level members count: "model" (a string of fewer than
 * MODEL_CAP bytes; a longer one is refused, never cut), "messages" (present:
 * a chat request), "stream", "logprobs". Errors are answered in OpenAI's
 * shape, {"error":{"message","type","param","code"}}, with param the
 * request option at fault (the host's rg_last_error_param when a host call
 * failed) and the status from the host's error code (status_for).
 */
#include "realm_guest.h"

#define PIECE_CAP   4096
#define MODEL_CAP   128
#define MAX_CHOICES 8

/*
 * The one way errors leave this handler: OpenAI's shape,
 * {"error":{"message","type","param","code"}}, type "invalid_request_error"
 * for 4xx and "server_error" for 5xx; param and code are JSON null when
 * NULL or empty. Returns status.
 */
static int32_t reply_error(int32_t status, const char *message, size_t message_len,
                           const char *param, size_t param_len, const char *code)
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
static int32_t bad_reply(int32_t status, const char *message, const char *param)
{
    return reply_error(status, message, strlen(message), param, param ? strlen(param) : 0, 0);
}

/* The text of the host's last error (rg_last_error or rg_last_error_param),
 * rg_alloc'ed; *n is its length, 0 when there is none. */
static char *host_text(int32_t (*get)(char *, uint32_t), size_t *n)
{
    int32_t need = get(0, 0);
    char *s = need > 0 ? rg_alloc((size_t)need) : 0;
    *n = s && get(s, (uint32_t)need) == need ? (size_t)need : 0;
    return s;
}

/* The reply for the host call that just failed: message "what: <the host's
 * message>", param as the host names it, the given status and code. */
static int32_t host_error(int32_t status, const char *what, const char *code)
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
static int32_t status_for(int32_t err)
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

/* The request as the server describes it (rg_request_info): path, id, time. */
typedef struct req_info {
    char path[128];
    char id[64];
    int64_t created;
} req_info;

static void read_info(req_info *ri)
{
    ri->path[0] = ri->id[0] = '\0';
    ri->created = 0;
    int32_t n = rg_request_info(0, 0);
    char *info = n > 0 ? rg_alloc((size_t)n) : 0;
    if (!info || rg_request_info(info, (uint32_t)n) != n)
        return;
    if (rg_json_string(info, (size_t)n, "path", ri->path, sizeof ri->path) >=
        (int32_t)sizeof ri->path)
        ri->path[0] = '\0';
    for (char *q = ri->path; *q; q++)
        if (*q == '?')
            *q = '\0';
    if (rg_json_string(info, (size_t)n, "request_id", ri->id, sizeof ri->id) >=
        (int32_t)sizeof ri->id)
        ri->id[0] = '\0';
    ri->created = rg_json_int(info, (size_t)n, "created", 0);
}

static int streq(const char *a, const char *b)
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
static int nth_object(const char *a, size_t n, int k, const char **obj, size_t *len)
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

int32_t handle(void)
{
    rg_reset();
    int32_t n = rg_request_read(0, 0);
    char *body = n > 0 ? rg_alloc((size_t)n + 1) : 0;
    if (!body || rg_request_read(body, (uint32_t)n) != n)
        return bad_reply(400, "empty request", 0);
    size_t len = (size_t)n;
    req_info ri;
    read_info(&ri);
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
        return bad_reply(404, "this module serves /v1/chat/completions and /v1/completions", 0);
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
    int stream = rg_json_bool(body, len, "stream", 0);
    int64_t n_choices = rg_json_int(body, len, "n", 1);
    if (n_choices < 1 || n_choices > MAX_CHOICES)
        n_choices = 1; /* the host refuses it, naming "n" */
    int logprobs = rg_json_bool(body, len, "logprobs", 0);
    if (!chat && (logprobs || rg_json_int(body, len, "logprobs", -1) >= 0))
        return bad_reply(400, "log-probabilities are served for chat completions only", "logprobs");
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
    int32_t g = rg_generate(h, body, (uint32_t)n);
    if (g < 0) {
        if (g == RG_ERR_OVERLOADED) /* the engine's queue is full: try again soon */
            rg_set_response(503, "{\"retry-after\":\"1\"}", 19);
        return host_error(status_for(g), "cannot generate", 0);
    }
    if (stream) {
        static const char sse[] = "{\"content-type\":\"text/event-stream\","
                                  "\"cache-control\":\"no-cache\"}";
        rg_set_response(200, sse, sizeof sse - 1);
    }
    static char small[PIECE_CAP];
    /* per choice: the text and log-probability items so far, and whether
     * its first chunk is still to come */
    rg_buf text[MAX_CHOICES] = {{0}}, lp[MAX_CHOICES] = {{0}};
    int first[MAX_CHOICES];
    for (int i = 0; i < MAX_CHOICES; i++)
        first[i] = 1;
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
                return stream ? stream_error("generation failed")
                              : host_error(500, "generation failed", 0);
        }
        const int32_t ci = n_choices > 1 ? rg_gen_choice(g) : 0;
        if (ci < 0 || ci >= n_choices)
            return stream ? stream_error("no choice") : host_error(500, "no choice", 0);
        /* this piece's tokens: a JSON array, its items go on in lp */
        const char *items = 0;
        size_t n_items = 0;
        if (logprobs) {
            int32_t need = rg_gen_tokens(g, 0, 0);
            char *toks = need > 2 ? rg_alloc((size_t)need) : 0;
            if (!toks || rg_gen_tokens(g, toks, (uint32_t)need) != need)
                return stream ? stream_error("no log-probabilities")
                              : host_error(500, "no log-probabilities", 0);
            items = toks + 1;
            n_items = (size_t)need - 2;
        }
        if (stream) {
            rg_buf ev = {0};
            rg_buf_puts(&ev, "data: ");
            put_head(&ev, &ri, chat, 1, model, (size_t)model_len);
            rg_buf_puts(&ev, ",\"choices\":[{\"index\":");
            rg_buf_put_int(&ev, ci);
            if (chat) {
                rg_buf_puts(&ev, first[ci] ? ",\"delta\":{\"role\":\"assistant\",\"content\":"
                                           : ",\"delta\":{\"content\":");
                rg_buf_put_json_str(&ev, piece, (size_t)k);
                rg_buf_puts(&ev, "},\"logprobs\":");
            } else {
                rg_buf_puts(&ev, ",\"text\":");
                rg_buf_put_json_str(&ev, piece, (size_t)k);
                rg_buf_puts(&ev, ",\"logprobs\":");
            }
            if (logprobs) {
                rg_buf_puts(&ev, "{\"content\":[");
                rg_buf_put(&ev, items, n_items);
                rg_buf_puts(&ev, "]}");
            } else {
                rg_buf_puts(&ev, "null");
            }
            rg_buf_puts(&ev, ",\"finish_reason\":null}]}");
            emit_event(&ev);
            first[ci] = 0;
        } else {
            rg_buf_put(&text[ci], piece, (size_t)k);
            if (n_items) {
                if (lp[ci].len)
                    rg_buf_puts(&lp[ci], ",");
                rg_buf_put(&lp[ci], items, n_items);
            }
        }
    }
    if (k < 0)
        return stream ? stream_error("generation failed") : host_error(500, "generation failed", 0);

    static char res[4096];
    int32_t rn = rg_gen_result(g, res, sizeof res);
    if (rn < 0 || rn > (int32_t)sizeof res)
        return stream ? stream_error("no result") : host_error(500, "no result", 0);
    /* each choice's finish reason: "choices" of gen_result when n > 1 */
    char finish[MAX_CHOICES][32];
    const char *chs;
    size_t chs_len;
    const int have_choices = rg_json_raw(res, (size_t)rn, "choices", &chs, &chs_len) == 0;
    for (int i = 0; i < n_choices; i++) {
        const char *o = res;
        size_t ol = (size_t)rn;
        if (have_choices && nth_object(chs, chs_len, i, &o, &ol) < 0)
            o = res, ol = (size_t)rn;
        if (rg_json_string(o, ol, "finish_reason", finish[i], sizeof finish[i]) < 0)
            finish[i][0] = '\0';
        if (streq(finish[i], "cancelled") || streq(finish[i], "error"))
            return stream ? stream_error("generation ended early")
                          : host_error(500, "generation ended early", 0);
    }
    int64_t n_prompt = rg_json_int(res, (size_t)rn, "prompt_tokens", 0);
    int64_t n_gen = rg_json_int(res, (size_t)rn, "completion_tokens", 0);
    int64_t n_cached = rg_json_int(res, (size_t)rn, "cached_tokens", 0);

    rg_buf out = {0};
    if (stream) {
        /* each choice's last chunk: an empty delta (with the role if nothing
         * came) and its reason */
        for (int i = 0; i < n_choices; i++) {
            rg_buf_puts(&out, "data: ");
            put_head(&out, &ri, chat, 1, model, (size_t)model_len);
            rg_buf_puts(&out, ",\"choices\":[{\"index\":");
            rg_buf_put_int(&out, i);
            if (chat)
                rg_buf_puts(&out, first[i] ? ",\"delta\":{\"role\":\"assistant\",\"content\":"
                                             "\"\"},\"logprobs\":null,\"finish_reason\":"
                                           : ",\"delta\":{},\"logprobs\":null,\"finish_reason\":");
            else
                rg_buf_puts(&out, ",\"text\":\"\",\"logprobs\":null,\"finish_reason\":");
            rg_buf_put_json_str(&out, finish[i], strlen(finish[i]));
            rg_buf_puts(&out, "}]}\n\n");
        }
        if (include_usage) {
            rg_buf_puts(&out, "data: ");
            put_head(&out, &ri, chat, 1, model, (size_t)model_len);
            rg_buf_puts(&out, ",\"choices\":[],");
            put_usage(&out, n_prompt, n_cached, n_gen);
            rg_buf_puts(&out, "}\n\n");
        }
        rg_buf_puts(&out, "data: [DONE]\n\n");
        rg_respond(200, out.data, (uint32_t)out.len);
        return 200;
    }
    put_head(&out, &ri, chat, 0, model, (size_t)model_len);
    rg_buf_puts(&out, ",\"choices\":[");
    for (int i = 0; i < n_choices; i++) {
        rg_buf_puts(&out, i ? ",{\"index\":" : "{\"index\":");
        rg_buf_put_int(&out, i);
        if (chat)
            rg_buf_puts(&out, ",\"message\":{\"role\":\"assistant\",\"content\":");
        else
            rg_buf_puts(&out, ",\"text\":");
        rg_buf_put_json_str(&out, text[i].data ? text[i].data : "", text[i].len);
        rg_buf_puts(&out, chat ? "},\"logprobs\":" : ",\"logprobs\":");
        if (logprobs) {
            rg_buf_puts(&out, "{\"content\":[");
            rg_buf_put(&out, lp[i].data ? lp[i].data : "", lp[i].len);
            rg_buf_puts(&out, "]}");
        } else {
            rg_buf_puts(&out, "null");
        }
        rg_buf_puts(&out, ",\"finish_reason\":");
        rg_buf_put_json_str(&out, finish[i], strlen(finish[i]));
        rg_buf_puts(&out, "}");
    }
    rg_buf_puts(&out, "],");
    put_usage(&out, n_prompt, n_cached, n_gen);
    rg_buf_puts(&out, "}");
    rg_respond(200, out.data, (uint32_t)out.len);
    return 200;
}
