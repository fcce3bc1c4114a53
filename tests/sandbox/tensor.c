/* Test guest: rows 1..2 of token_embd.weight through realm.tensor_read,
 * answered as raw f32 bytes (or the error message with status 403). */
#include "realm_guest.h"

static float rows[8192];

int32_t handle(void)
{
    static const char name[] = "token_embd.weight";
    int32_t h = rg_model_open("tiny", 4);
    int32_t need = rg_tensor_read(h, name, sizeof name - 1, 1, 2, rows, 0);
    if (need < 0) {
        char msg[256];
        int32_t n = rg_last_error(msg, sizeof msg);
        rg_respond(403, msg, n > 0 && n <= (int32_t)sizeof msg ? (uint32_t)n : 0);
        return need;
    }
    if (need > 8192)
        return -100;
    int32_t got = rg_tensor_read(h, name, sizeof name - 1, 1, 2, rows, (uint32_t)need);
    rg_respond(200, rows, (uint32_t)got * 4);
    return got;
}
