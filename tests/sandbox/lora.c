/* Test guest: opens the body's "model" (a model or a LoRA adapter), then
 * answers "INFO\nTEXT": model_info's JSON and the text of generate with the
 * body as options; on a failure "ERR,CODE,PARAM". */
#include "realm_guest.h"

static int32_t fail(int32_t code)
{
    char param[64];
    int32_t n = rg_last_error_param(param, sizeof param);
    rg_buf b = {0};
    rg_buf_puts(&b, "ERR,");
    rg_buf_put_int(&b, code);
    rg_buf_puts(&b, ",");
    if (n > 0 && n < (int32_t)sizeof param)
        rg_buf_put(&b, param, (size_t)n);
    rg_respond(200, b.data, (uint32_t)b.len);
    return 0;
}

int32_t handle(void)
{
    static char body[4096], model[200], info[1024], piece[512];
    int32_t len = rg_request_read(body, sizeof body);
    if (len < 0 || len > (int32_t)sizeof body)
        return fail(-1);
    int32_t ml = rg_json_string(body, (size_t)len, "model", model, sizeof model);
    if (ml < 0 || ml >= (int32_t)sizeof model)
        return fail(-1);
    int32_t h = rg_model_open(model, (uint32_t)ml);
    if (h < 0)
        return fail(h);
    int32_t il = rg_model_info(h, info, sizeof info);
    if (il < 0 || il > (int32_t)sizeof info)
        return fail(il);
    int32_t g = rg_generate(h, body, (uint32_t)len);
    if (g < 0)
        return fail(g);
    rg_buf b = {0};
    rg_buf_put(&b, info, (size_t)il);
    rg_buf_puts(&b, "\n");
    int32_t n;
    while ((n = rg_gen_next(g, piece, sizeof piece)) > 0)
        rg_buf_put(&b, piece, (size_t)n);
    if (n < 0)
        return fail(n);
    rg_respond(200, b.data, (uint32_t)b.len);
    return 0;
}
