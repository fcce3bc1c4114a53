/*
 * The default handler: OpenAI-style /v1/chat/completions and /v1/completions
 * for tenants without a module of their own.
 *
 * Request: the OpenAI JSON body ("model", "messages" or "prompt",
 * "max_tokens", "temperature", "top_p", "stop", "seed", "stream", ...). The
 * body goes to realm.generate unchanged: the host reads the options it knows.
 * With "stream": true each piece is emitted as one SSE event
 * (`data: {"choices":[{"index":0,"delta":{"content":"..."}}]}\n\n`) and the
 * response is the final event with usage; otherwise the response is the whole
 * completion object. Chat requests with "logprobs": true (and optionally
 * "top_logprobs": k) get OpenAI's "logprobs": {"content": [...]} in each
 * chunk or in the choice, from realm.gen_tokens; completion requests asking
 * for log-probabilities are refused (400). Errors are answered as
 * {"error":{"message":...}}.
 */
#include "realm_guest.h"

#define PIECE_CAP 4096

/* Reply with an OpenAI-style error carrying the host's last message. */
static int32_t reply_error(int32_t status, const char *what)
{
    char msg[512];
    int32_t n = realm_last_error(msg, sizeof msg);
    if (n < 0 || n > (int32_t)sizeof msg)
        n = 0;
    rg_buf b = {0};
    rg_buf_puts(&b, "{\"error\":{\"message\":");
    rg_buf tmp = {0};
    rg_buf_puts(&tmp, what);
    if (n) {
        rg_buf_puts(&tmp, ": ");
        rg_buf_put(&tmp, msg, (size_t)n);
    }
    rg_buf_put_json_str(&b, tmp.data, tmp.len);
    rg_buf_puts(&b, ",\"type\":\"invalid_request_error\"}}");
    realm_respond(status, b.data, (uint32_t)b.len);
    return status;
}

/* A chat request has "messages" (the host renders them with the model's chat
 * template); a completion request has "prompt". */
static int find_messages(const char *body, size_t n)
{
    static const char key[] = "\"messages\"";
    for (size_t i = 0; i + sizeof key - 1 <= n; i++)
        if (memcmp(body + i, key, sizeof key - 1) == 0)
            return 1;
    return 0;
}

static int32_t status_for(int32_t err)
{
    return err == RG_ERR_NOTFOUND     ? 404
           : err == RG_ERR_DENIED     ? 403
           : err == RG_ERR_OVERLOADED ? 429
                                      : 400;
}

int32_t handle(void)
{
    rg_reset();
    int32_t n = realm_request_read(0, 0);
    char *body = n > 0 ? rg_alloc((size_t)n + 1) : 0;
    if (!body || realm_request_read(body, (uint32_t)n) != n)
        return rg_respond_str(400, "{\"error\":{\"message\":\"empty request\"}}");
    char model[128];
    if (rg_json_string(body, (size_t)n, "model", model, sizeof model) < 0)
        return rg_respond_str(400, "{\"error\":{\"message\":\"'model' is required\"}}");
    int chat = find_messages(body, (size_t)n);
    int stream = rg_json_bool(body, (size_t)n, "stream", 0);
    int logprobs = rg_json_bool(body, (size_t)n, "logprobs", 0);
    if (!chat && (logprobs || rg_json_int(body, (size_t)n, "logprobs", -1) >= 0))
        return rg_respond_str(400, "{\"error\":{\"message\":\"log-probabilities are served "
                                   "for chat completions only\",\"type\":"
                                   "\"invalid_request_error\"}}");

    int32_t h = realm_model_open(model, (uint32_t)strlen(model));
    if (h < 0)
        return reply_error(status_for(h), "cannot open the model");
    int32_t g = realm_generate(h, body, (uint32_t)n);
    if (g < 0)
        return reply_error(status_for(g), "cannot generate");

    static char small[PIECE_CAP];
    rg_buf text = {0}, lp = {0}; /* lp: the log-probability items so far, comma-separated */
    int32_t k;
    while ((k = realm_gen_next(g, small, sizeof small)) > 0) {
        char *piece = small;
        if (k > PIECE_CAP) {
            /* A piece larger than the buffer was kept by the host: fetch it
             * whole into a buffer of its size. */
            piece = rg_alloc((size_t)k);
            if (!piece)
                return reply_error(500, "out of memory for a piece of text");
            int32_t again = realm_gen_next(g, piece, (uint32_t)k);
            if (again != k)
                return reply_error(500, "generation failed");
        }
        /* this piece's tokens: a JSON array, its items go on in lp */
        const char *items = 0;
        size_t n_items = 0;
        if (logprobs) {
            int32_t need = realm_gen_tokens(g, 0, 0);
            char *toks = need > 2 ? rg_alloc((size_t)need) : 0;
            if (!toks || realm_gen_tokens(g, toks, (uint32_t)need) != need)
                return reply_error(500, "no log-probabilities");
            items = toks + 1;
            n_items = (size_t)need - 2;
        }
        if (stream) {
            rg_buf ev = {0};
            rg_buf_puts(&ev, chat ? "data: {\"object\":\"chat.completion.chunk\",\"choices\":"
                                    "[{\"index\":0,\"delta\":{\"content\":"
                                  : "data: {\"object\":\"text_completion\",\"choices\":"
                                    "[{\"index\":0,\"text\":");
            rg_buf_put_json_str(&ev, piece, (size_t)k);
            if (logprobs) {
                rg_buf_puts(&ev, "},\"logprobs\":{\"content\":[");
                rg_buf_put(&ev, items, n_items);
                rg_buf_puts(&ev, "]}}]}\n\n");
            } else {
                rg_buf_puts(&ev, chat ? "}}]}\n\n" : "}]}\n\n");
            }
            realm_emit(ev.data, (uint32_t)ev.len);
        } else {
            rg_buf_put(&text, piece, (size_t)k);
            if (n_items) {
                if (lp.len)
                    rg_buf_puts(&lp, ",");
                rg_buf_put(&lp, items, n_items);
            }
        }
    }
    if (k < 0)
        return reply_error(500, "generation failed");

    char res[1024];
    int32_t rn = realm_gen_result(g, res, sizeof res);
    if (rn < 0 || rn > (int32_t)sizeof res)
        return reply_error(500, "no result");
    char finish[32];
    if (rg_json_string(res, (size_t)rn, "finish_reason", finish, sizeof finish) < 0)
        finish[0] = '\0';
    int64_t n_prompt = rg_json_int(res, (size_t)rn, "prompt_tokens", 0);
    int64_t n_gen = rg_json_int(res, (size_t)rn, "completion_tokens", 0);

    rg_buf out = {0};
    rg_buf_puts(&out, stream ? "data: {" : "{");
    rg_buf_puts(&out, chat ? "\"object\":\"chat.completion\",\"model\":"
                           : "\"object\":\"text_completion\",\"model\":");
    rg_buf_put_json_str(&out, model, strlen(model));
    rg_buf_puts(&out, ",\"choices\":[{\"index\":0,");
    if (!stream) {
        if (chat)
            rg_buf_puts(&out, "\"message\":{\"role\":\"assistant\",\"content\":");
        else
            rg_buf_puts(&out, "\"text\":");
        rg_buf_put_json_str(&out, text.data ? text.data : "", text.len);
        rg_buf_puts(&out, chat ? "}," : ",");
        if (logprobs) {
            rg_buf_puts(&out, "\"logprobs\":{\"content\":[");
            rg_buf_put(&out, lp.data ? lp.data : "", lp.len);
            rg_buf_puts(&out, "]},");
        }
    }
    rg_buf_puts(&out, "\"finish_reason\":");
    rg_buf_put_json_str(&out, finish, strlen(finish));
    rg_buf_puts(&out, "}],\"usage\":{\"prompt_tokens\":");
    rg_buf_put_int(&out, n_prompt);
    rg_buf_puts(&out, ",\"completion_tokens\":");
    rg_buf_put_int(&out, n_gen);
    rg_buf_puts(&out, ",\"total_tokens\":");
    rg_buf_put_int(&out, n_prompt + n_gen);
    rg_buf_puts(&out, stream ? "}}\n\ndata: [DONE]\n\n" : "}}");
    realm_respond(200, out.data, (uint32_t)out.len);
    return 200;
}
