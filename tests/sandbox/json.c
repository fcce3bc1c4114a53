/*
 * Test guest for the SDK's JSON lookups (tests/test_guest_sdk.c drives it).
 *
 * Request: one line "OP NUM KEY\n", then the JSON document (the rest of the
 * body, at most 64 KiB). The document is copied so that it ends exactly at
 * the end of the module's memory: a lookup that reads one byte past it traps.
 *
 *   s CAP KEY   rg_json_string with out of CAP bytes (at most 4096), out
 *               prefilled with '#'; answers "RC:" and out's CAP + 4 bytes
 *   i DEF KEY   rg_json_int; answers the number
 *   b DEF KEY   rg_json_bool; answers the number
 *   h 0 KEY     rg_json_has; answers 0 or 1
 *   r 0 KEY     rg_json_raw; answers "0:" and the value's text, or "-1"
 *               (value NULL and length 0) — anything else is "BAD"
 */
#include "realm_guest.h"

#define DOC_MAX 65536
#define OUT_MAX 4096

static char body[DOC_MAX + 512];
static char out[OUT_MAX + 4];
static char reply[DOC_MAX + OUT_MAX + 64];
static char *doc_end; /* the end of memory: the top of the pages grown at the first request */

/* An rg_buf over the static reply (large enough: rg_alloc, which could hand
 * out the document's pages, is never called). */
static rg_buf reply_buf(void)
{
    return (rg_buf){reply, 0, sizeof reply};
}

static int32_t answer_int(int64_t v)
{
    rg_buf b = reply_buf();
    rg_buf_put_int(&b, v);
    rg_respond(200, b.data, (uint32_t)b.len);
    return 0;
}

int32_t handle(void)
{
    int32_t n = rg_request_read(body, sizeof body);
    if (n < 0 || n > (int32_t)sizeof body)
        return rg_respond_str(413, "too large");
    /* OP NUM KEY\n */
    size_t i = 0, end = (size_t)n;
    if (end < 4 || body[1] != ' ')
        return rg_respond_str(400, "bad header");
    char op = body[0];
    i = 2;
    int neg = body[i] == '-';
    i += (size_t)neg;
    int64_t num = 0;
    while (i < end && body[i] >= '0' && body[i] <= '9')
        num = num * 10 + (body[i++] - '0');
    num = neg ? -num : num;
    if (i >= end || body[i] != ' ')
        return rg_respond_str(400, "bad header");
    static char key[256];
    size_t k = 0;
    for (i++; i < end && body[i] != '\n' && k + 1 < sizeof key; i++)
        key[k++] = body[i];
    key[k] = '\0';
    if (i >= end || body[i] != '\n')
        return rg_respond_str(400, "bad header");
    size_t len = end - i - 1;
    if (len > DOC_MAX)
        return rg_respond_str(413, "document too large");

    if (!doc_end) {
        size_t pages = __builtin_wasm_memory_grow(0, DOC_MAX / 65536);
        if (pages == (size_t)-1)
            return rg_respond_str(500, "no memory");
        doc_end = (char *)((pages + DOC_MAX / 65536) * 65536);
    }
    if ((size_t)doc_end != __builtin_wasm_memory_size(0) * 65536)
        return rg_respond_str(500, "the document no longer ends at the end of memory");
    const char *json = doc_end - len;
    memcpy(doc_end - len, body + i + 1, len);

    switch (op) {
    case 's': {
        size_t cap = (size_t)num;
        if (cap > OUT_MAX)
            return rg_respond_str(400, "cap too large");
        memset(out, '#', sizeof out);
        int32_t rc = rg_json_string(json, len, key, cap ? out : 0, cap);
        rg_buf b = reply_buf();
        rg_buf_put_int(&b, rc);
        rg_buf_put(&b, ":", 1);
        rg_buf_put(&b, out, cap + 4);
        rg_respond(200, b.data, (uint32_t)b.len);
        return 0;
    }
    case 'i':
        return answer_int(rg_json_int(json, len, key, num));
    case 'b':
        return answer_int(rg_json_bool(json, len, key, (int)num));
    case 'h':
        return answer_int(rg_json_has(json, len, key));
    case 'r': {
        const char *v = "x";
        size_t vn = 99;
        int32_t rc = rg_json_raw(json, len, key, &v, &vn);
        if (rc == -1 && !v && !vn)
            return rg_respond_str(200, "-1");
        if (rc != 0 || v < json || vn > len || (size_t)(v - json) > len - vn)
            return rg_respond_str(200, "BAD");
        rg_buf b = reply_buf();
        rg_buf_puts(&b, "0:");
        rg_buf_put(&b, v, vn);
        rg_respond(200, b.data, (uint32_t)b.len);
        return 0;
    }
    default:
        return rg_respond_str(400, "bad op");
    }
}
