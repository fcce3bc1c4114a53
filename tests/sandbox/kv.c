/*
 * Test guest for the key-value host calls (tests/test_sandbox_kv.c drives
 * it). The request is an operation and its arguments, one per line; the
 * last argument is the rest of the body (it may hold newlines):
 *
 *   get KEY CAP            rg_kv_get into a buffer of CAP bytes (at most 4 MiB)
 *                          followed by 8 guard bytes: "RC:" and the value when it
 *                          fit, "OVERRUN" if a byte past CAP changed
 *   alloc KEY              rg_kv_get_alloc: "RC:" and the value
 *   put KEY TTL VALUE      rg_kv_put: "RC"
 *   del KEY                rg_kv_delete: "RC"
 *   list PREFIX AFTER LIMIT CAP
 *                          rg_kv_list (an argument "-" is empty): "RC:" and the
 *                          JSON when it fit
 *   nul-key, long-key, big-value, zero-limit, huge-limit
 *                          arguments the host must refuse with an error: "RC"
 *   trap-key, trap-out, trap-value, trap-list, trap-after, trap-list-out
 *                          pointers or lengths outside memory: the host traps
 *                          (nothing is answered)
 *
 * A negative RC is followed by ":" and rg_last_error's message. Over HTTP
 * (tests/cli/serve_test.py) the body is {"req": "the same text"}.
 */
#include "realm_guest.h"

#define GUARD 8

static char *arg[6];
static uint32_t arg_len[6];

static uint32_t number(int i)
{
    uint32_t v = 0;
    for (uint32_t k = 0; k < arg_len[i]; k++)
        v = v * 10 + (uint32_t)(arg[i][k] - '0');
    return v;
}

/* "RC" and, after ":", the payload (or the error when rc < 0). */
static int32_t answer(int32_t rc, const char *payload, uint32_t len)
{
    static char err[600];
    rg_buf b = {0};
    rg_buf_put_int(&b, rc);
    if (rc < 0) {
        int32_t n = rg_last_error(err, sizeof err);
        payload = err;
        len = n > 0 && n <= (int32_t)sizeof err ? (uint32_t)n : 0;
    }
    if (payload) {
        rg_buf_put(&b, ":", 1);
        rg_buf_put(&b, payload, len);
    }
    rg_respond(200, b.data, (uint32_t)b.len);
    return 0;
}

static int op(const char *name)
{
    return arg_len[0] == strlen(name) && memcmp(arg[0], name, arg_len[0]) == 0;
}

/* The end of memory (a multiple of 64 KiB). */
static char *mem_end(void)
{
    return (char *)(__builtin_wasm_memory_size(0) * 65536);
}

/* At least 2 MiB of memory. */
static int grow_2m(void)
{
    return mem_end() >= (char *)(2u << 20) || __builtin_wasm_memory_grow(0, 32) != (size_t)-1;
}

int32_t handle(void)
{
    rg_reset();
    int32_t n = rg_request_read(0, 0);
    char *body = rg_alloc((size_t)n + 1);
    if (n < 0 || !body || rg_request_read(body, (uint32_t)n) != n)
        return rg_respond_str(400, "no request");
    if (n > 0 && body[0] == '{') { /* over HTTP: {"req": "the same text"} */
        const int32_t m = rg_json_string(body, (size_t)n, "req", 0, 0);
        char *text = m >= 0 ? rg_alloc((size_t)m + 1) : 0;
        if (!text)
            return rg_respond_str(400, "no req");
        rg_json_string(body, (size_t)n, "req", text, (size_t)m + 1);
        body = text;
        n = m;
    }
    /* The operation decides how many arguments there are; the last one is
     * the rest of the body. */
    const uint32_t end = (uint32_t)n;
    uint32_t i = 0;
    while (i < end && body[i] != '\n')
        i++;
    arg[0] = body;
    arg_len[0] = i;
    const int want = op("get")                  ? 3
                     : op("put")                ? 4
                     : op("list")               ? 5
                     : op("del") || op("alloc") ? 2
                                                : 1;
    for (int a = 1; a < want; a++) {
        i = i < end ? i + 1 : end; /* past the newline */
        const uint32_t start = i;
        while (i < end && (a == want - 1 || body[i] != '\n'))
            i++;
        arg[a] = body + start;
        arg_len[a] = i - start;
    }
    static const char nul_key[] = {'a', '\0', 'b'};

    if (op("get")) {
        uint32_t cap = number(2);
        if (cap > (4u << 20))
            return rg_respond_str(400, "cap too large");
        char *buf = rg_alloc(cap + GUARD);
        memset(buf, '#', cap + GUARD);
        int32_t rc = rg_kv_get(arg[1], arg_len[1], buf, cap);
        for (uint32_t k = cap; k < cap + GUARD; k++)
            if (buf[k] != '#')
                return rg_respond_str(200, "OVERRUN");
        if (rc >= 0 && (uint32_t)rc > cap)
            return answer(rc, 0, 0);
        return answer(rc, buf, rc >= 0 ? (uint32_t)rc : 0);
    }
    if (op("alloc")) {
        char *v = 0;
        int32_t rc = rg_kv_get_alloc(arg[1], arg_len[1], &v);
        if (rc >= 0 && (!v || v[rc] != '\0'))
            return rg_respond_str(200, "NOT TERMINATED");
        return answer(rc, v, rc >= 0 ? (uint32_t)rc : 0);
    }
    if (op("put"))
        return answer(rg_kv_put(arg[1], arg_len[1], arg[3], arg_len[3], number(2)), 0, 0);
    if (op("del"))
        return answer(rg_kv_delete(arg[1], arg_len[1]), 0, 0);
    if (op("list")) {
        uint32_t cap = number(4);
        char *buf = rg_alloc(cap + 1);
        int dash1 = arg_len[1] == 1 && arg[1][0] == '-',
            dash2 = arg_len[2] == 1 && arg[2][0] == '-';
        int32_t rc = rg_kv_list(arg[1], dash1 ? 0 : arg_len[1], arg[2], dash2 ? 0 : arg_len[2],
                                number(3), buf, cap);
        if (rc >= 0 && (uint32_t)rc > cap)
            return answer(rc, 0, 0);
        return answer(rc, buf, rc >= 0 ? (uint32_t)rc : 0);
    }

    /* Refused with an error code, the instance intact. */
    if (op("nul-key"))
        return answer(rg_kv_put(nul_key, sizeof nul_key, "v", 1, 0), 0, 0);
    if ((op("long-key") || op("big-value")) && !grow_2m())
        return rg_respond_str(500, "no memory");
    if (op("long-key")) /* in memory, but 1 MiB long */
        return answer(rg_kv_get(0, 1u << 20, 0, 0), 0, 0);
    if (op("big-value")) /* all of memory as one value: in bounds, over the store's limit */
        return answer(rg_kv_put("big", 3, 0, (uint32_t)(uintptr_t)mem_end(), 0), 0, 0);
    if (op("zero-limit"))
        return answer(rg_kv_list(0, 0, 0, 0, 0, 0, 0), 0, 0);
    if (op("huge-limit"))
        return answer(rg_kv_list(0, 0, 0, 0, 0xffffffffu, 0, 0), 0, 0);

    /* Outside memory: each traps before the host touches anything. */
    static char out[64];
    if (op("trap-key"))
        rg_kv_get((const char *)0xfffffff0u, 64, out, sizeof out);
    else if (op("trap-out")) /* the buffer runs 4 bytes past the end */
        rg_kv_get("k", 1, mem_end() - 60, 64);
    else if (op("trap-value")) /* a length that wraps a 32-bit sum */
        rg_kv_put("k", 1, (const void *)16, 0xffffffffu, 0);
    else if (op("trap-list"))
        rg_kv_list(mem_end() - 1, 2, 0, 0, 10, out, sizeof out);
    else if (op("trap-after"))
        rg_kv_list(0, 0, (const char *)0x7fffffffu, 0x7fffffffu, 10, out, sizeof out);
    else if (op("trap-list-out"))
        rg_kv_list(0, 0, 0, 0, 10, mem_end(), 1);
    else
        return rg_respond_str(400, "unknown operation");
    return rg_respond_str(200, "NO TRAP");
}
