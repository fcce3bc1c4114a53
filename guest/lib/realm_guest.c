/*
 * The guest SDK's small runtime: the C library functions a freestanding
 * wasm32 module needs (clang emits calls to memcpy/memset), a bump
 * allocator, an output buffer and minimal JSON lookups. Linked into every
 * guest built with guest/RealmGuest.cmake.
 */
#include "realm_guest.h"

void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d < s)
        while (n--)
            *d++ = *s++;
    else
        while (n--)
            d[n] = s[n];
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

/* ---- allocation: bump pointer over pages from memory.grow ------------------ */

extern unsigned char __heap_base;
static uintptr_t heap_top;

void *rg_alloc(size_t n)
{
    if (!heap_top)
        heap_top = (uintptr_t)&__heap_base;
    uintptr_t p = (heap_top + 15) & ~(uintptr_t)15;
    uintptr_t end = p + n;
    uintptr_t have = __builtin_wasm_memory_size(0) * 65536u;
    if (end > have) {
        size_t pages = (end - have + 65535) / 65536;
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1)
            return 0;
    }
    heap_top = end;
    return (void *)p;
}

void rg_reset(void)
{
    heap_top = (uintptr_t)&__heap_base;
}

int32_t rg_respond_str(int32_t status, const char *body)
{
    realm_respond(status, body, (uint32_t)strlen(body));
    return status;
}

int32_t rg_emit_str(const char *s)
{
    return realm_emit(s, (uint32_t)strlen(s));
}

/* ---- output buffer ----------------------------------------------------------- */

void rg_buf_put(rg_buf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *d = rg_alloc(cap);
        if (!d)
            __builtin_trap();
        if (b->len)
            memcpy(d, b->data, b->len);
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

void rg_buf_puts(rg_buf *b, const char *s)
{
    rg_buf_put(b, s, strlen(s));
}

void rg_buf_put_int(rg_buf *b, int64_t v)
{
    char tmp[24];
    int i = 24;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[--i] = '-';
    rg_buf_put(b, tmp + i, (size_t)(24 - i));
}

void rg_buf_put_json_str(rg_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    rg_buf_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            rg_buf_put(b, e, 2);
        } else if (c == '\n') {
            rg_buf_put(b, "\\n", 2);
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            rg_buf_put(b, e, 6);
        } else {
            rg_buf_put(b, (const char *)&c, 1);
        }
    }
    rg_buf_put(b, "\"", 1);
}

/* ---- JSON lookups -------------------------------------------------------------- */

/* Position just after `"key"` followed by optional space and ':', or -1. */
static long find_value(const char *j, size_t len, const char *key)
{
    size_t kl = strlen(key);
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        if (in_str) {
            if (j[i] == '\\')
                i++;
            else if (j[i] == '"')
                in_str = 0;
            continue;
        }
        if (j[i] != '"')
            continue;
        if (i + kl + 1 < len && memcmp(j + i + 1, key, kl) == 0 && j[i + 1 + kl] == '"') {
            size_t k = i + kl + 2;
            while (k < len && (j[k] == ' ' || j[k] == '\t' || j[k] == '\n' || j[k] == '\r'))
                k++;
            if (k < len && j[k] == ':') {
                k++;
                while (k < len && (j[k] == ' ' || j[k] == '\t' || j[k] == '\n' || j[k] == '\r'))
                    k++;
                return (long)k;
            }
        }
        in_str = 1;
    }
    return -1;
}

int32_t rg_json_string(const char *j, size_t len, const char *key, char *out, size_t cap)
{
    long p = find_value(j, len, key);
    if (p < 0 || (size_t)p >= len || j[p] != '"' || cap == 0)
        return -1;
    size_t o = 0;
    for (size_t i = (size_t)p + 1; i < len && j[i] != '"'; i++) {
        char c = j[i];
        if (c == '\\' && i + 1 < len) {
            c = j[++i];
            c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
        }
        if (o + 1 < cap)
            out[o++] = c;
    }
    out[o] = '\0';
    return (int32_t)o;
}

int64_t rg_json_int(const char *j, size_t len, const char *key, int64_t def)
{
    long p = find_value(j, len, key);
    if (p < 0)
        return def;
    size_t i = (size_t)p;
    int neg = i < len && j[i] == '-';
    i += (size_t)neg;
    if (i >= len || j[i] < '0' || j[i] > '9')
        return def;
    int64_t v = 0;
    while (i < len && j[i] >= '0' && j[i] <= '9')
        v = v * 10 + (j[i++] - '0');
    return neg ? -v : v;
}

int rg_json_bool(const char *j, size_t len, const char *key, int def)
{
    long p = find_value(j, len, key);
    if (p < 0 || (size_t)p + 4 > len)
        return def;
    if (memcmp(j + p, "true", 4) == 0)
        return 1;
    if ((size_t)p + 5 <= len && memcmp(j + p, "false", 5) == 0)
        return 0;
    return def;
}
