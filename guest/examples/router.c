/*
 * Router: picks the model by a rule on the request, then generates.
 *
 * Request: {"prompt": P, ...generate options} (no "model"). Prompts of up to
 * 32 bytes go to the model named "small", longer ones to "large" — the
 * tenant's policy decides which names exist for it. Response:
 * {"model": NAME, "text": COMPLETION}.
 */
#include "realm_guest.h"

int32_t handle(void)
{
    rg_reset();
    int32_t n = rg_request_read(0, 0);
    char *body = n > 0 ? rg_alloc((size_t)n) : 0;
    if (!body || rg_request_read(body, (uint32_t)n) != n)
        return rg_respond_str(400, "{\"error\":\"empty request\"}");
    char prompt[1024];
    int32_t pl = rg_json_string(body, (size_t)n, "prompt", prompt, sizeof prompt);
    if (pl < 0)
        return rg_respond_str(400, "{\"error\":\"prompt required\"}");
    const char *name = pl <= 32 ? "small" : "large";
    int32_t h = rg_model_open(name, (uint32_t)strlen(name));
    if (h < 0)
        return rg_respond_str(503, "{\"error\":\"model unavailable\"}");
    int32_t g = rg_generate(h, body, (uint32_t)n);
    if (g < 0)
        return rg_respond_str(400, "{\"error\":\"cannot generate\"}");
    rg_buf text = {0};
    static char piece[1024];
    int32_t k;
    while ((k = rg_gen_next(g, piece, sizeof piece)) > 0 && k <= (int32_t)sizeof piece)
        rg_buf_put(&text, piece, (size_t)k);
    rg_buf r = {0};
    rg_buf_puts(&r, "{\"model\":");
    rg_buf_put_json_str(&r, name, strlen(name));
    rg_buf_puts(&r, ",\"text\":");
    rg_buf_put_json_str(&r, text.data ? text.data : "", text.len);
    rg_buf_puts(&r, "}");
    rg_respond(200, r.data, (uint32_t)r.len);
    return 0;
}
