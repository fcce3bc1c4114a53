/* Test guest: generates with the request body as the options (model
 * "tiny") and emits, for each piece, the piece's tokens as gen_tokens gives
 * them, one JSON array per line. */
#include "realm_guest.h"

int32_t handle(void)
{
    rg_reset();
    int32_t n = rg_request_read(0, 0);
    char *body = n > 0 ? rg_alloc((size_t)n) : 0;
    if (!body || rg_request_read(body, (uint32_t)n) != n)
        return rg_respond_str(400, "no options");
    int32_t g = rg_generate(rg_model_open("tiny", 4), body, (uint32_t)n);
    if (g < 0)
        return rg_respond_str(400, "cannot generate");
    static char piece[4096], toks[16384];
    int32_t k;
    while ((k = rg_gen_next(g, piece, sizeof piece)) > 0) {
        int32_t t = rg_gen_tokens(g, toks, sizeof toks);
        if (t < 0 || t >= (int32_t)sizeof toks)
            return rg_respond_str(500, "gen_tokens failed");
        toks[t] = '\n';
        rg_emit(toks, (uint32_t)t + 1);
    }
    return rg_respond_str(k == 0 ? 200 : 500, k == 0 ? "done" : "gen_next failed");
}
