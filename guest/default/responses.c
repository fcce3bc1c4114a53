/*
 * OpenAI's Responses API in the default module: POST /v1/responses (whole or
 * as SSE events), GET and DELETE /v1/responses/{id}, GET
 * /v1/responses/{id}/input_items. docs/http-api.md lists the fields.
 *
 * A request's input becomes "canonical" items — {"id","type":"message",
 * "role","content":[{"type":"input_text"|"output_text","text"}],"status"} —
 * and those become chat messages for realm.generate, so the model's chat
 * template, the tenant's limits, usage and metrics apply as on
 * /v1/chat/completions. A stored response (store, the default) is one entry
 * of the tenant's key-value data, "resp/<id>", expiring after the server's
 * responses_ttl_s (request_info):
 *
 *   {"previous":"resp_..."|null,"output_text":"...","input":[items],
 *    "response":{the response object}}
 *
 * previous_response_id walks "previous" back and replays each stored turn's
 * input items and output text (not its instructions) before the new input.
 *
 * Over a WebSocket (request_info's transport "websocket", docs/websocket.md)
 * a POST /v1/responses is streamed as the same events, each emitted alone
 * (one message, no SSE framing); a response the client stops (its
 * generation ends "cancelled") ends with response.cancelled, status
 * "cancelled", the output so far, and is stored like any other.
 */
#include "default.h"

#define PIECE_CAP      4096
#define MAX_CHAIN      256 /* stored turns a conversation replays at most */
#define DEFAULT_TTL_S  (30 * 86400)
#define ID_CAP         96
#define LIST_LIMIT_MAX 100

/* What one POST /v1/responses asked for and has produced. */
typedef struct resp {
    const req_info *ri;
    const char *body;
    size_t len;
    char id[ID_CAP], msg_id[ID_CAP];
    const char *model;
    size_t model_len;
    int store, stream;
    int ws;        /* over a WebSocket: events are messages, not SSE */
    int cancelled; /* the client stopped it (response.cancel): status "cancelled" */
    int seq;       /* the next event's sequence_number */
    rg_buf text;   /* the output so far */
    char finish[32];
    int64_t n_prompt, n_cached, n_gen;
} resp;

/* A member's raw value, or NULL (and 0) when absent or null. */
static const char *member(const char *json, size_t len, const char *key, size_t *n)
{
    const char *v;
    if (rg_json_raw(json, len, key, &v, n) < 0 || (*n == 4 && !memcmp(v, "null", 4))) {
        *n = 0;
        return 0;
    }
    return v;
}

/* The parameter name "input[i]", "input[i].TAIL" or "input[i].content[j]",
 * NUL-terminated in rg_alloc'ed memory. */
static const char *input_param(int i, int j, const char *tail)
{
    rg_buf b = {0};
    rg_buf_puts(&b, "input[");
    rg_buf_put_int(&b, i);
    rg_buf_puts(&b, "]");
    if (j >= 0) {
        rg_buf_puts(&b, ".content[");
        rg_buf_put_int(&b, j);
        rg_buf_puts(&b, "]");
    }
    if (tail) {
        rg_buf_puts(&b, ".");
        rg_buf_puts(&b, tail);
    }
    rg_buf_put(&b, "", 1);
    return b.data;
}

/* Append one canonical message item: id "msg_<hex>_<k>", the role, and the
 * parts given as raw JSON strings (texts[0..n)). */
static void put_item(rg_buf *items, const resp *r, int k, const char *role, const char **texts,
                     const size_t *lens, int n)
{
    const int assistant = streq(role, "assistant");
    rg_buf_puts(items, items->len ? "," : "[");
    rg_buf_puts(items, "{\"id\":\"");
    rg_buf_puts(items, r->msg_id);
    rg_buf_puts(items, "_");
    rg_buf_put_int(items, k);
    rg_buf_puts(items, "\",\"type\":\"message\",\"role\":\"");
    rg_buf_puts(items, role);
    rg_buf_puts(items, "\",\"content\":[");
    for (int i = 0; i < n; i++) {
        rg_buf_puts(items, i ? "," : "");
        rg_buf_puts(items, assistant ? "{\"type\":\"output_text\",\"text\":"
                                     : "{\"type\":\"input_text\",\"text\":");
        rg_buf_put(items, texts[i], lens[i]);
        rg_buf_puts(items, assistant ? ",\"annotations\":[]}" : "}");
    }
    rg_buf_puts(items, "],\"status\":\"completed\"}");
}

/*
 * The request's "input" as canonical items (a JSON array in *items, made
 * with put_item): a string is one user message; a list holds message items (type
 * "message" or none) with a role of system, developer, user or assistant
 * and content a string or input_text / output_text parts. Returns 0, or the
 * status of the 400 answered (param naming the item at fault).
 */
static int32_t canon_input(resp *r, rg_buf *items)
{
    size_t n;
    const char *in = member(r->body, r->len, "input", &n);
    if (!in)
        return bad_reply(400, "'input' is required", "input");
    if (in[0] == '"') {
        put_item(items, r, 0, "user", &in, &n, 1);
        rg_buf_puts(items, "]");
        return 0;
    }
    if (in[0] != '[')
        return bad_reply(400, "'input' must be a string or a list of message items", "input");
    const char *it;
    size_t il;
    int i;
    for (i = 0; nth_value(in, n, i, &it, &il) == 0; i++) {
        if (it[0] != '{')
            return bad_reply(400, "an input item must be an object", input_param(i, -1, 0));
        char type[32], role[16];
        int32_t tl = rg_json_string(it, il, "type", type, sizeof type);
        if (tl >= 0 && !streq(type, "message"))
            return bad_reply(400,
                             "only 'message' input items are supported yet (tool calls and "
                             "their outputs, reasoning and item references are not)",
                             input_param(i, -1, "type"));
        if (tl < 0 && rg_json_has(it, il, "type"))
            return bad_reply(400, "'type' must be a string", input_param(i, -1, "type"));
        int32_t rl = rg_json_string(it, il, "role", role, sizeof role);
        if (rl < 0 || rl >= (int32_t)sizeof role ||
            !(streq(role, "system") || streq(role, "developer") || streq(role, "user") ||
              streq(role, "assistant")))
            return bad_reply(400, "'role' must be one of system, developer, user, assistant",
                             input_param(i, -1, "role"));
        size_t cl;
        const char *c = member(it, il, "content", &cl);
        if (!c || (c[0] != '"' && c[0] != '['))
            return bad_reply(400, "'content' must be a string or a list of text parts",
                             input_param(i, -1, "content"));
        if (c[0] == '"') {
            put_item(items, r, i, role, &c, &cl, 1);
            continue;
        }
        int n_parts = 0;
        const char *p;
        size_t pl;
        while (nth_value(c, cl, n_parts, &p, &pl) == 0)
            n_parts++;
        const char **texts = rg_alloc(sizeof *texts * (size_t)(n_parts + 1));
        size_t *lens = rg_alloc(sizeof *lens * (size_t)(n_parts + 1));
        if (!texts || !lens)
            return bad_reply(500, "out of memory for the input", 0);
        for (int j = 0; j < n_parts; j++) {
            nth_value(c, cl, j, &p, &pl);
            char pt[32];
            int32_t ptl = p[0] == '{' ? rg_json_string(p, pl, "type", pt, sizeof pt) : -1;
            if (ptl < 0 || !(streq(pt, "input_text") || streq(pt, "output_text")))
                return bad_reply(400,
                                 "only input_text and output_text parts are supported yet "
                                 "(images, files and audio are not)",
                                 input_param(i, j, 0));
            texts[j] = member(p, pl, "text", &lens[j]);
            if (!texts[j] || texts[j][0] != '"')
                return bad_reply(400, "'text' must be a string", input_param(i, j, "text"));
        }
        put_item(items, r, i, role, texts, lens, n_parts);
    }
    if (i == 0)
        return bad_reply(400, "'input' must hold at least one item", "input");
    rg_buf_puts(items, "]");
    return 0;
}

/* Append the canonical items (an array, items[0..n)) as chat messages (each followed by a
 * comma): {"role","content":[{"type":"text","text"},...]}. */
static void items_to_messages(rg_buf *msgs, const char *items, size_t n)
{
    const char *it, *c, *p;
    size_t il, cl, pl;
    for (int i = 0; nth_object(items, n, i, &it, &il) == 0; i++) {
        char role[16];
        if (rg_json_string(it, il, "role", role, sizeof role) < 0 ||
            rg_json_raw(it, il, "content", &c, &cl) < 0)
            continue;
        rg_buf_puts(msgs, "{\"role\":\"");
        rg_buf_puts(msgs, role);
        rg_buf_puts(msgs, "\",\"content\":[");
        for (int j = 0; nth_object(c, cl, j, &p, &pl) == 0; j++) {
            const char *t;
            size_t tl;
            if (rg_json_raw(p, pl, "text", &t, &tl) < 0)
                continue;
            rg_buf_puts(msgs, j ? ",{\"type\":\"text\",\"text\":" : "{\"type\":\"text\",\"text\":");
            rg_buf_put(msgs, t, tl);
            rg_buf_puts(msgs, "}");
        }
        rg_buf_puts(msgs, "]},");
    }
}

/* The key-value key of a response id: "resp/<id>" (NUL-terminated). */
static const char *store_key(const char *id, size_t n, uint32_t *key_len)
{
    rg_buf k = {0};
    rg_buf_puts(&k, "resp/");
    rg_buf_put(&k, id, n);
    *key_len = (uint32_t)k.len;
    rg_buf_put(&k, "", 1);
    return k.data;
}

/* The stored record of response id, rg_alloc'ed: its length, or a negative
 * error (RG_ERR_NOTFOUND also for an id that cannot be a key). */
static int32_t load(const char *id, size_t n, char **rec)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
            return RG_ERR_NOTFOUND;
    if (n == 0 || n > 400)
        return RG_ERR_NOTFOUND;
    uint32_t kl;
    const char *key = store_key(id, n, &kl);
    int32_t rc = rg_kv_get_alloc(key, kl, rec);
    return rc == RG_ERR_INVAL ? RG_ERR_NOTFOUND : rc;
}

static int32_t not_found(const char *id, size_t n, const char *param)
{
    rg_buf m = {0};
    rg_buf_puts(&m, param ? "Previous response with id '" : "Response with id '");
    rg_buf_put(&m, id, n);
    rg_buf_puts(&m, "' not found.");
    return reply_error(404, m.data, m.len, param, param ? strlen(param) : 0, 0);
}

/*
 * The conversation before this request: the stored responses from prev
 * back to the first (at most MAX_CHAIN), oldest first, each turn's input
 * items and then its output as an assistant message, appended to msgs.
 * Returns 0, or the status answered (404 when prev is unknown).
 */
static int32_t history(const char *prev, size_t prev_len, rg_buf *msgs)
{
    char **recs = rg_alloc(sizeof *recs * MAX_CHAIN);
    int32_t *lens = rg_alloc(sizeof *lens * MAX_CHAIN);
    if (!recs || !lens)
        return bad_reply(500, "out of memory for the conversation", 0);
    int n = 0;
    char id[ID_CAP];
    size_t id_len = prev_len;
    if (prev_len >= sizeof id)
        return not_found(prev, prev_len, "previous_response_id");
    memcpy(id, prev, prev_len);
    while (n < MAX_CHAIN) {
        int32_t rc = load(id, id_len, &recs[n]);
        if (rc == RG_ERR_NOTFOUND && n == 0)
            return not_found(prev, prev_len, "previous_response_id");
        if (rc == RG_ERR_NOTFOUND)
            break; /* an older turn expired or was deleted: the rest goes on */
        if (rc < 0)
            return host_error(status_for(rc), "cannot read the previous response", 0);
        lens[n] = rc;
        int32_t l = rg_json_string(recs[n], (size_t)rc, "previous", id, sizeof id);
        n++;
        if (l <= 0 || l >= (int32_t)sizeof id)
            break;
        id_len = (size_t)l;
    }
    for (int i = n - 1; i >= 0; i--) {
        const char *items, *text;
        size_t il, tl;
        if (rg_json_raw(recs[i], (size_t)lens[i], "input", &items, &il) == 0)
            items_to_messages(msgs, items, il);
        if (rg_json_raw(recs[i], (size_t)lens[i], "output_text", &text, &tl) == 0) {
            rg_buf_puts(msgs, "{\"role\":\"assistant\",\"content\":");
            rg_buf_put(msgs, text, tl);
            rg_buf_puts(msgs, "},");
        }
    }
    return 0;
}

/* ---- the response object and its events ------------------------------------------------ */

/* The echoed member key: the request's value, or dflt when absent or null. */
static void put_echo(rg_buf *b, const resp *r, const char *key, const char *dflt)
{
    size_t n;
    const char *v = member(r->body, r->len, key, &n);
    rg_buf_puts(b, ",\"");
    rg_buf_puts(b, key);
    rg_buf_puts(b, "\":");
    if (v)
        rg_buf_put(b, v, n);
    else
        rg_buf_puts(b, dflt);
}

static int incomplete(const resp *r)
{
    return streq(r->finish, "length");
}

/* The output message item: in progress (no content yet) or finished. */
static void put_message(rg_buf *b, const resp *r, int done)
{
    rg_buf_puts(b, "{\"id\":\"");
    rg_buf_puts(b, r->msg_id);
    rg_buf_puts(b, "\",\"type\":\"message\",\"status\":\"");
    rg_buf_puts(b, !done                           ? "in_progress"
                   : incomplete(r) || r->cancelled ? "incomplete"
                                                   : "completed");
    rg_buf_puts(b, "\",\"role\":\"assistant\",\"content\":[");
    if (done) {
        rg_buf_puts(b, "{\"type\":\"output_text\",\"text\":");
        rg_buf_put_json_str(b, r->text.data ? r->text.data : "", r->text.len);
        rg_buf_puts(b, ",\"annotations\":[]}");
    }
    rg_buf_puts(b, "]}");
}

/* The response object. status: "in_progress" (no output, no usage yet),
 * "completed", "incomplete", "cancelled" (the output so far) or "failed"
 * (with error, a message). */
static void put_response(rg_buf *b, const resp *r, const char *status, const char *error)
{
    const int done = !streq(status, "in_progress");
    rg_buf_puts(b, "{\"id\":\"");
    rg_buf_puts(b, r->id);
    rg_buf_puts(b, "\",\"object\":\"response\",\"created_at\":");
    rg_buf_put_int(b, r->ri->created);
    rg_buf_puts(b, ",\"status\":\"");
    rg_buf_puts(b, status);
    rg_buf_puts(b, "\",\"background\":false,\"error\":");
    if (error) {
        rg_buf_puts(b, "{\"code\":\"server_error\",\"message\":");
        rg_buf_put_json_str(b, error, strlen(error));
        rg_buf_puts(b, "}");
    } else {
        rg_buf_puts(b, "null");
    }
    rg_buf_puts(b, streq(status, "incomplete")
                       ? ",\"incomplete_details\":{\"reason\":\"max_output_tokens\"}"
                       : ",\"incomplete_details\":null");
    put_echo(b, r, "instructions", "null");
    put_echo(b, r, "max_output_tokens", "null");
    put_echo(b, r, "metadata", "{}");
    rg_buf_puts(b, ",\"model\":");
    rg_buf_put_json_str(b, r->model, r->model_len);
    rg_buf_puts(b, ",\"output\":[");
    if (done && !error)
        put_message(b, r, 1);
    rg_buf_puts(b, "],\"parallel_tool_calls\":true");
    put_echo(b, r, "previous_response_id", "null");
    rg_buf_puts(b, ",\"reasoning\":{\"effort\":null,\"summary\":null},\"store\":");
    rg_buf_puts(b, r->store ? "true" : "false");
    put_echo(b, r, "temperature", "null");
    rg_buf_puts(b, ",\"text\":{\"format\":{\"type\":\"text\"}},\"tool_choice\":\"auto\","
                   "\"tools\":[]");
    put_echo(b, r, "top_p", "null");
    rg_buf_puts(b, ",\"truncation\":\"disabled\",\"usage\":");
    if (done) {
        rg_buf_puts(b, "{\"input_tokens\":");
        rg_buf_put_int(b, r->n_prompt);
        rg_buf_puts(b, ",\"input_tokens_details\":{\"cached_tokens\":");
        rg_buf_put_int(b, r->n_cached);
        rg_buf_puts(b, "},\"output_tokens\":");
        rg_buf_put_int(b, r->n_gen);
        rg_buf_puts(b, ",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":");
        rg_buf_put_int(b, r->n_prompt + r->n_gen);
        rg_buf_puts(b, "}");
    } else {
        rg_buf_puts(b, "null");
    }
    size_t ul;
    const char *user = member(r->body, r->len, "user", &ul);
    if (user) {
        rg_buf_puts(b, ",\"user\":");
        rg_buf_put(b, user, ul);
    }
    rg_buf_puts(b, "}");
}

/* Start an event of type: {"type":TYPE,"sequence_number":N — the caller
 * adds the other members, ev_end sends it. Over HTTP it is an SSE event
 * ("event: TYPE\ndata: {...}\n\n"); over a WebSocket the object alone, one
 * emit per event (the server sends each emit as one text message). */
static void ev_begin(rg_buf *b, resp *r, const char *type)
{
    b->len = 0;
    if (!r->ws) {
        rg_buf_puts(b, "event: ");
        rg_buf_puts(b, type);
        rg_buf_puts(b, "\ndata: ");
    }
    rg_buf_puts(b, "{\"type\":\"");
    rg_buf_puts(b, type);
    rg_buf_puts(b, "\",\"sequence_number\":");
    rg_buf_put_int(b, r->seq++);
}

static void ev_end(rg_buf *b, const resp *r)
{
    rg_buf_puts(b, r->ws ? "}" : "}\n\n");
    rg_emit(b->data, (uint32_t)b->len);
}

/* Send the stream's last event and end the response with it: as the body of
 * rg_respond, so that on a WebSocket the event and the end of the response
 * are one step (a client may send its next response.create as soon as it
 * reads this event). */
static void ev_last(rg_buf *b, const resp *r)
{
    rg_buf_puts(b, r->ws ? "}" : "}\n\n");
    rg_respond(200, b->data, (uint32_t)b->len);
}

/* The members that place an event in the output: item_id, output_index,
 * content_index. */
static void put_place(rg_buf *b, const resp *r)
{
    rg_buf_puts(b, ",\"item_id\":\"");
    rg_buf_puts(b, r->msg_id);
    rg_buf_puts(b, "\",\"output_index\":0,\"content_index\":0");
}

/* The end of a stream that failed after it started: response.failed with
 * the error, the host's message after what. Returns 500 (the status is
 * already 200). */
static int32_t stream_failed(resp *r, const char *what)
{
    size_t n;
    char *msg = host_text(rg_last_error, &n);
    rg_buf m = {0};
    rg_buf_puts(&m, what);
    if (n) {
        rg_buf_puts(&m, ": ");
        rg_buf_put(&m, msg, n);
    }
    rg_buf_put(&m, "", 1);
    rg_buf ev = {0};
    ev_begin(&ev, r, "response.failed");
    rg_buf_puts(&ev, ",\"response\":");
    put_response(&ev, r, "failed", m.data);
    ev_last(&ev, r);
    return 500;
}

static int32_t gen_failed(resp *r, const char *what)
{
    return r->stream ? stream_failed(r, what) : host_error(500, what, 0);
}

/* Read the generation to its end: stream each piece as a delta (or gather
 * it), then its finish reason and usage. Returns 0 or the status answered. */
static int32_t run(resp *r, int32_t g)
{
    static char small[PIECE_CAP];
    rg_buf ev = {0};
    int32_t k;
    while ((k = rg_gen_next(g, small, sizeof small)) > 0) {
        char *piece = small;
        if (k > PIECE_CAP) { /* kept by the host: fetch it whole */
            piece = rg_alloc((size_t)k);
            if (!piece || rg_gen_next(g, piece, (uint32_t)k) != k)
                return gen_failed(r, "generation failed");
        }
        rg_buf_put(&r->text, piece, (size_t)k);
        if (r->stream) {
            ev_begin(&ev, r, "response.output_text.delta");
            put_place(&ev, r);
            rg_buf_puts(&ev, ",\"delta\":");
            rg_buf_put_json_str(&ev, piece, (size_t)k);
            rg_buf_puts(&ev, ",\"logprobs\":[]");
            ev_end(&ev, r);
        }
    }
    if (k < 0)
        return gen_failed(r, "generation failed");
    static char res[4096];
    int32_t rn = rg_gen_result(g, res, sizeof res);
    if (rn < 0 || rn > (int32_t)sizeof res)
        return gen_failed(r, "no result");
    if (rg_json_string(res, (size_t)rn, "finish_reason", r->finish, sizeof r->finish) < 0)
        r->finish[0] = '\0';
    if (streq(r->finish, "error"))
        return gen_failed(r, "generation ended early");
    /* cancelled: the client stopped it (a WebSocket's response.cancel; a client
     * that left never gets here); the response ends with what was made */
    r->cancelled = streq(r->finish, "cancelled");
    r->n_prompt = rg_json_int(res, (size_t)rn, "prompt_tokens", 0);
    r->n_gen = rg_json_int(res, (size_t)rn, "completion_tokens", 0);
    r->n_cached = rg_json_int(res, (size_t)rn, "cached_tokens", 0);
    return 0;
}

/* Keep the finished response (store: true): the record described at the
 * top, for the server's responses_ttl_s. A failure is logged, not answered:
 * the response was made and is sent. */
static void keep(const resp *r, const char *items, size_t items_len, const rg_buf *obj)
{
    rg_buf rec = {0};
    rg_buf_puts(&rec, "{\"previous\":");
    size_t pl;
    const char *prev = member(r->body, r->len, "previous_response_id", &pl);
    if (prev)
        rg_buf_put(&rec, prev, pl);
    else
        rg_buf_puts(&rec, "null");
    rg_buf_puts(&rec, ",\"output_text\":");
    rg_buf_put_json_str(&rec, r->text.data ? r->text.data : "", r->text.len);
    rg_buf_puts(&rec, ",\"input\":");
    rg_buf_put(&rec, items, items_len);
    rg_buf_puts(&rec, ",\"response\":");
    rg_buf_put(&rec, obj->data, obj->len);
    rg_buf_puts(&rec, "}");
    int64_t ttl = r->ri->responses_ttl_s > 0 ? r->ri->responses_ttl_s : DEFAULT_TTL_S;
    if (ttl > 0xffffffffll)
        ttl = 0xffffffffll;
    uint32_t kl;
    const char *key = store_key(r->id, strlen(r->id), &kl);
    int32_t rc = rg_kv_put(key, kl, rec.data, (uint32_t)rec.len, (uint32_t)ttl);
    if (rc < 0) {
        size_t n;
        char *msg = host_text(rg_last_error, &n);
        rg_buf line = {0};
        rg_buf_puts(&line, "response ");
        rg_buf_puts(&line, r->id);
        rg_buf_puts(&line, " not stored: ");
        rg_buf_put(&line, msg ? msg : "", n);
        rg_log(RG_LOG_WARN, line.data, (uint32_t)line.len);
    }
}

/* The request's refused and malformed options: 0, or the 400 answered. */
static int32_t check_options(const resp *r)
{
    const char *b = r->body;
    const size_t len = r->len;
    size_t n;
    const char *v;
    if ((v = member(b, len, "tools", &n))) {
        const char *t;
        size_t tl;
        if (v[0] != '[')
            return bad_reply(400, "'tools' must be a list", "tools");
        if (nth_value(v, n, 0, &t, &tl) == 0)
            return bad_reply(400, "tools are not supported yet: only an empty list is accepted",
                             "tools");
    }
    if ((v = member(b, len, "text", &n))) {
        size_t fl;
        const char *f = v[0] == '{' ? member(v, n, "format", &fl) : 0;
        char type[32];
        if (v[0] != '{')
            return bad_reply(400, "'text' must be an object", "text");
        if (f && (rg_json_string(f, fl, "type", type, sizeof type) < 0 || !streq(type, "text")))
            return bad_reply(400,
                             "only text.format {\"type\":\"text\"} is supported yet (not "
                             "json_schema or json_object)",
                             "text.format");
    }
    if (rg_json_bool(b, len, "background", 0))
        return bad_reply(400, "background responses are not supported yet", "background");
    static const char *const bools[] = {"background", "stream", "store"};
    for (size_t i = 0; i < sizeof bools / sizeof *bools; i++)
        if (member(b, len, bools[i], &n) && rg_json_bool(b, len, bools[i], -1) < 0) {
            rg_buf m = {0};
            rg_buf_puts(&m, "'");
            rg_buf_puts(&m, bools[i]);
            rg_buf_puts(&m, "' must be a boolean");
            return reply_error(400, m.data, m.len, bools[i], strlen(bools[i]), 0);
        }
    if ((v = member(b, len, "instructions", &n)) && v[0] != '"')
        return bad_reply(400, "'instructions' must be a string", "instructions");
    if ((v = member(b, len, "previous_response_id", &n)) && v[0] != '"')
        return bad_reply(400, "'previous_response_id' must be a string", "previous_response_id");
    if ((v = member(b, len, "metadata", &n)) && v[0] != '{')
        return bad_reply(400, "'metadata' must be an object of strings", "metadata");
    if ((v = member(b, len, "user", &n)) && v[0] != '"')
        return bad_reply(400, "'user' must be a string", "user");
    if (member(b, len, "max_output_tokens", &n) && rg_json_int(b, len, "max_output_tokens", 0) < 1)
        return bad_reply(400, "'max_output_tokens' must be an integer of at least 1",
                         "max_output_tokens");
    return 0;
}

/* POST /v1/responses. */
static int32_t create(const char *body, size_t len, const req_info *ri)
{
    static char model[MODEL_CAP];
    resp r = {.ri = ri, .body = body, .len = len, .model = model};
    const char *hex = ri->id[0] ? ri->id + (memcmp(ri->id, "req-", 4) ? 0 : 4) : "local";
    rg_buf ids = {0};
    rg_buf_puts(&ids, hex);
    if (ids.len + 8 > ID_CAP)
        ids.len = ID_CAP - 8;
    memcpy(r.id, "resp_", 5);
    memcpy(r.id + 5, ids.data, ids.len);
    r.id[5 + ids.len] = '\0';
    memcpy(r.msg_id, "msg_", 4);
    memcpy(r.msg_id + 4, ids.data, ids.len);
    r.msg_id[4 + ids.len] = '\0';

    int32_t ml = rg_json_string(body, len, "model", model, sizeof model);
    if (ml < 0)
        return bad_reply(400,
                         rg_json_has(body, len, "model") ? "'model' must be a string"
                                                         : "'model' is required",
                         "model");
    if (ml >= (int32_t)sizeof model)
        return bad_reply(400, "'model' is too long", "model");
    r.model_len = (size_t)ml;
    int32_t rc = check_options(&r);
    if (rc)
        return rc;
    r.store = rg_json_bool(body, len, "store", 1);
    r.ws = ri->websocket; /* streaming is implied there ("stream" is not read) */
    r.stream = r.ws || rg_json_bool(body, len, "stream", 0);
    rg_buf items = {0};
    if ((rc = canon_input(&r, &items)))
        return rc;

    /* the generate options: the messages, then the sampling options */
    rg_buf opts = {0};
    rg_buf_puts(&opts, "{\"messages\":[");
    size_t n;
    const char *v;
    if ((v = member(body, len, "instructions", &n))) {
        rg_buf_puts(&opts, "{\"role\":\"system\",\"content\":");
        rg_buf_put(&opts, v, n);
        rg_buf_puts(&opts, "},");
    }
    if ((v = member(body, len, "previous_response_id", &n))) {
        char prev[ID_CAP];
        int32_t pl = rg_json_string(body, len, "previous_response_id", prev, sizeof prev);
        if (pl < 0 || pl >= (int32_t)sizeof prev)
            return not_found(v, n, "previous_response_id");
        if ((rc = history(prev, (size_t)pl, &opts)))
            return rc;
    }
    items_to_messages(&opts, items.data, items.len);
    opts.len--; /* the last message's comma */
    rg_buf_puts(&opts, "]");
    if ((v = member(body, len, "max_output_tokens", &n))) {
        rg_buf_puts(&opts, ",\"max_tokens\":");
        rg_buf_put(&opts, v, n);
    }
    /* sampling, LoRA adapters beside the one "model" may name (llama-server's "lora"),
     * speculative decoding (Realm's extra) */
    static const char *const passed[] = {"temperature", "top_p",         "lora",
                                         "adapter",     "adapter_scale", "speculative"};
    for (size_t i = 0; i < sizeof passed / sizeof *passed; i++)
        if ((v = member(body, len, passed[i], &n))) {
            rg_buf_puts(&opts, ",\"");
            rg_buf_puts(&opts, passed[i]);
            rg_buf_puts(&opts, "\":");
            rg_buf_put(&opts, v, n);
        }
    rg_buf_puts(&opts, "}");

    int32_t h = rg_model_open(model, (uint32_t)ml);
    if (h < 0)
        return host_error(status_for(h), "cannot open the model",
                          h == RG_ERR_NOTFOUND ? "model_not_found" : 0);
    int32_t g = rg_generate(h, opts.data, (uint32_t)opts.len);
    if (g < 0) {
        if (g == RG_ERR_OVERLOADED)
            rg_set_response(503, "{\"retry-after\":\"1\"}", 19);
        return host_error(status_for(g), "cannot generate", 0);
    }
    rg_buf ev = {0};
    if (r.stream) {
        static const char sse[] = "{\"content-type\":\"text/event-stream\","
                                  "\"cache-control\":\"no-cache\"}";
        if (!r.ws)
            rg_set_response(200, sse, sizeof sse - 1);
        static const char *const opening[] = {"response.created", "response.in_progress"};
        for (int i = 0; i < 2; i++) {
            ev_begin(&ev, &r, opening[i]);
            rg_buf_puts(&ev, ",\"response\":");
            put_response(&ev, &r, "in_progress", 0);
            ev_end(&ev, &r);
        }
        ev_begin(&ev, &r, "response.output_item.added");
        rg_buf_puts(&ev, ",\"output_index\":0,\"item\":");
        put_message(&ev, &r, 0);
        ev_end(&ev, &r);
        ev_begin(&ev, &r, "response.content_part.added");
        put_place(&ev, &r);
        rg_buf_puts(&ev, ",\"part\":{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[]}");
        ev_end(&ev, &r);
    }
    if ((rc = run(&r, g)))
        return rc;
    const char *status = r.cancelled ? "cancelled" : incomplete(&r) ? "incomplete" : "completed";
    rg_buf obj = {0};
    put_response(&obj, &r, status, 0);
    if (r.store)
        keep(&r, items.data, items.len, &obj);
    if (!r.stream) {
        rg_respond(200, obj.data, (uint32_t)obj.len);
        return 200;
    }
    ev_begin(&ev, &r, "response.output_text.done");
    put_place(&ev, &r);
    rg_buf_puts(&ev, ",\"text\":");
    rg_buf_put_json_str(&ev, r.text.data ? r.text.data : "", r.text.len);
    rg_buf_puts(&ev, ",\"logprobs\":[]");
    ev_end(&ev, &r);
    ev_begin(&ev, &r, "response.content_part.done");
    put_place(&ev, &r);
    rg_buf_puts(&ev, ",\"part\":{\"type\":\"output_text\",\"text\":");
    rg_buf_put_json_str(&ev, r.text.data ? r.text.data : "", r.text.len);
    rg_buf_puts(&ev, ",\"annotations\":[]}");
    ev_end(&ev, &r);
    ev_begin(&ev, &r, "response.output_item.done");
    rg_buf_puts(&ev, ",\"output_index\":0,\"item\":");
    put_message(&ev, &r, 1);
    ev_end(&ev, &r);
    ev_begin(&ev, &r,
             r.cancelled      ? "response.cancelled"
             : incomplete(&r) ? "response.incomplete"
                              : "response.completed");
    rg_buf_puts(&ev, ",\"response\":");
    rg_buf_put(&ev, obj.data, obj.len);
    ev_last(&ev, &r);
    return 200;
}

/* ---- stored responses ------------------------------------------------------------------- */

/* The value of name in the query string q ("a=1&b=2"): 1 and out
 * (NUL-terminated, cut to cap) when present, else 0. Values are compared
 * as sent: ids, numbers and asc/desc need no decoding. */
static int query_get(const char *q, const char *name, char *out, size_t cap)
{
    const size_t nl = strlen(name);
    while (*q) {
        const char *e = q;
        while (*e && *e != '&')
            e++;
        if ((size_t)(e - q) > nl && !memcmp(q, name, nl) && q[nl] == '=') {
            size_t vl = (size_t)(e - q) - nl - 1;
            if (vl >= cap)
                vl = cap - 1;
            memcpy(out, q + nl + 1, vl);
            out[vl] = '\0';
            return 1;
        }
        q = *e ? e + 1 : e;
    }
    return 0;
}

/* GET /v1/responses/{id}/input_items: OpenAI's list object of the stored
 * input items; limit 1..100 (20), order desc (the default) or asc, after an
 * item id. */
static int32_t input_items(const char *rec, size_t rec_len, const req_info *ri)
{
    char v[128];
    int64_t limit = 20;
    if (query_get(ri->query, "limit", v, sizeof v)) {
        limit = 0;
        for (const char *p = v; *p && limit <= LIST_LIMIT_MAX; p++)
            limit = *p >= '0' && *p <= '9' ? limit * 10 + (*p - '0') : LIST_LIMIT_MAX + 1;
        if (!v[0] || limit < 1 || limit > LIST_LIMIT_MAX)
            return bad_reply(400, "'limit' must be an integer between 1 and 100", "limit");
    }
    int asc = 0;
    if (query_get(ri->query, "order", v, sizeof v)) {
        if (!streq(v, "asc") && !streq(v, "desc"))
            return bad_reply(400, "'order' must be 'asc' or 'desc'", "order");
        asc = streq(v, "asc");
    }
    const char *items = "[]";
    size_t il = 2;
    rg_json_raw(rec, rec_len, "input", &items, &il);
    int n = 0;
    const char *it;
    size_t itl;
    while (nth_object(items, il, n, &it, &itl) == 0)
        n++;
    /* the position to start from in the listed order, past `after` */
    int start = 0;
    if (query_get(ri->query, "after", v, sizeof v) && v[0]) {
        start = -1;
        for (int k = 0; k < n && start < 0; k++) {
            nth_object(items, il, asc ? k : n - 1 - k, &it, &itl);
            char id[128];
            if (rg_json_string(it, itl, "id", id, sizeof id) > 0 && streq(id, v))
                start = k + 1;
        }
        if (start < 0)
            return bad_reply(404, "no input item with the id given as 'after'", "after");
    }
    rg_buf out = {0}, first = {0}, last = {0};
    rg_buf_puts(&out, "{\"object\":\"list\",\"data\":[");
    int k;
    for (k = start; k < n && k - start < limit; k++) {
        nth_object(items, il, asc ? k : n - 1 - k, &it, &itl);
        if (k > start)
            rg_buf_puts(&out, ",");
        rg_buf_put(&out, it, itl);
        const char *id;
        size_t idl;
        rg_buf *edge = k == start ? &first : &last;
        if (rg_json_raw(it, itl, "id", &id, &idl) == 0) {
            edge->len = 0;
            rg_buf_put(edge, id, idl);
            if (k == start)
                rg_buf_put(&last, id, idl);
        }
    }
    rg_buf_puts(&out, "],\"first_id\":");
    rg_buf_put(&out, first.len ? first.data : "null", first.len ? first.len : 4);
    rg_buf_puts(&out, ",\"last_id\":");
    rg_buf_put(&out, last.len ? last.data : "null", last.len ? last.len : 4);
    rg_buf_puts(&out, k < n ? ",\"has_more\":true}" : ",\"has_more\":false}");
    rg_respond(200, out.data, (uint32_t)out.len);
    return 200;
}

/* GET or DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items. */
static int32_t stored(const req_info *ri)
{
    const char *id = ri->path + 14; /* after "/v1/responses/" */
    size_t n = 0;
    while (id[n] && id[n] != '/')
        n++;
    const char *rest = id + n;
    const int list = streq(rest, "/input_items");
    const int get = streq(ri->method, "GET") || streq(ri->method, "HEAD");
    if (n == 0 || (*rest && !list))
        return bad_reply(404, "no such path under /v1/responses", 0);
    if (!get && !(streq(ri->method, "DELETE") && !list))
        return bad_reply(405, "this path takes GET (and DELETE for a response)", 0);
    if (!get) {
        uint32_t kl;
        const char *key = store_key(id, n, &kl);
        int32_t rc = n <= 400 ? rg_kv_delete(key, kl) : RG_ERR_NOTFOUND;
        if (rc == RG_ERR_NOTFOUND || rc == RG_ERR_INVAL)
            return not_found(id, n, 0);
        if (rc < 0)
            return host_error(status_for(rc), "cannot delete the response", 0);
        rg_buf out = {0};
        rg_buf_puts(&out, "{\"id\":");
        rg_buf_put_json_str(&out, id, n);
        rg_buf_puts(&out, ",\"object\":\"response\",\"deleted\":true}");
        rg_respond(200, out.data, (uint32_t)out.len);
        return 200;
    }
    char *rec;
    int32_t rl = load(id, n, &rec);
    if (rl == RG_ERR_NOTFOUND)
        return not_found(id, n, 0);
    if (rl < 0)
        return host_error(status_for(rl), "cannot read the response", 0);
    if (list)
        return input_items(rec, (size_t)rl, ri);
    const char *obj;
    size_t ol;
    if (rg_json_raw(rec, (size_t)rl, "response", &obj, &ol) < 0)
        return bad_reply(500, "the stored response is damaged", 0);
    rg_respond(200, obj, (uint32_t)ol);
    return 200;
}

int32_t responses_handle(const char *body, size_t len, const req_info *ri)
{
    if (streq(ri->path, "/v1/responses")) {
        if (!len)
            return bad_reply(400, "empty request", 0);
        return create(body, len, ri);
    }
    return stored(ri);
}
