/* Test guest: opens as many generations as the policy lets it (up to 8,
 * none drained) and answers "OPENED,CODE" with the code of the refusal. */
#include "realm_guest.h"

int32_t handle(void)
{
    static const char opts[] = "{\"prompt\":\"Once\",\"max_tokens\":2}";
    int32_t h = rg_model_open("tiny", 4);
    int32_t n = 0, code = 0;
    while (n < 8) {
        int32_t g = rg_generate(h, opts, sizeof opts - 1);
        if (g < 0) {
            code = g;
            break;
        }
        n++;
    }
    rg_buf b = {0};
    rg_buf_put_int(&b, n);
    rg_buf_puts(&b, ",");
    rg_buf_put_int(&b, code);
    rg_respond(200, b.data, (uint32_t)b.len);
    return 0;
}
