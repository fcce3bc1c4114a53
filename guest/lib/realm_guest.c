/*
 * The guest SDK's small runtime: the C library functions a freestanding
 * wasm32 module needs (clang emits calls to memcpy/memset), a bump
 * allocator, an output buffer and lookups of a JSON object's top-level
 * members. Linked into every
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
    rg_respond(status, body, (uint32_t)strlen(body));
    return status;
}

int32_t rg_emit_str(const char *s)
{
    return rg_emit(s, (uint32_t)strlen(s));
}

/* ---- key-value data ---------------------------------------------------------- */

int32_t rg_kv_get_str(const char *key, void *buf, uint32_t cap)
{
    return rg_kv_get(key, (uint32_t)strlen(key), buf, cap);
}

int32_t rg_kv_put_str(const char *key, const char *value, uint32_t ttl_s)
{
    return rg_kv_put(key, (uint32_t)strlen(key), value, (uint32_t)strlen(value), ttl_s);
}

int32_t rg_kv_get_alloc(const char *key, uint32_t key_len, char **out)
{
    *out = 0;
    int32_t n = rg_kv_get(key, key_len, 0, 0); /* measure */
    /* Another request of the tenant may grow the value between the calls:
     * then measure again, a few times. */
    for (int tries = 0; n >= 0 && tries < 8; tries++) {
        char *buf = rg_alloc((size_t)n + 1);
        if (!buf)
            return RG_ERR_NOMEM;
        int32_t got = rg_kv_get(key, key_len, buf, (uint32_t)n);
        if (got >= 0 && got <= n) {
            buf[got] = '\0';
            *out = buf;
            return got;
        }
        n = got;
    }
    return n < 0 ? n : RG_ERR_INTERRUPTED;
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

/*
 * A lookup walks the top-level object member by member: key string, ':',
 * value, ',' or '}'. Values of other members are skipped whole — strings to
 * their closing quote, objects and arrays to the bracket that balances the
 * opening one, with brackets inside strings ignored — so nothing nested is
 * ever taken for a top-level member. Every index is checked against len
 * before it is read, and every step moves forward, so malformed input ends
 * the walk.
 */

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const char *j, size_t len, size_t i)
{
    while (i < len && is_ws(j[i]))
        i++;
    return i;
}

/* j[i] is '"': the index just past the closing quote, or 0 if the string
 * does not end before len. Escapes are stepped over, not checked. */
static size_t string_end(const char *j, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (j[i] == '\\')
            i++;
        else if (j[i] == '"')
            return i + 1;
    }
    return 0;
}

/* The index just past the value that starts at j[i] (i < len), or 0 if it
 * is malformed: a string, an object or array (brackets balanced outside
 * strings), or a scalar running up to the next delimiter. */
static size_t value_end(const char *j, size_t len, size_t i)
{
    if (j[i] == '"')
        return string_end(j, len, i);
    if (j[i] == '{' || j[i] == '[') {
        size_t depth = 0;
        while (i < len) {
            char c = j[i];
            if (c == '"') {
                i = string_end(j, len, i);
                if (!i)
                    return 0;
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if ((c == '}' || c == ']') && --depth == 0)
                return i + 1;
            i++;
        }
        return 0;
    }
    size_t b = i;
    while (i < len && !is_ws(j[i]) && j[i] != ',' && j[i] != ':' && j[i] != '}' && j[i] != ']' &&
           j[i] != '{' && j[i] != '[' && j[i] != '"')
        i++;
    return i > b ? i : 0;
}

static int hex4(const char *s, size_t n, size_t at, uint32_t *v)
{
    if (at + 4 > n)
        return 0;
    *v = 0;
    for (size_t k = at; k < at + 4; k++) {
        char c = s[k];
        uint32_t d = c >= '0' && c <= '9'   ? (uint32_t)(c - '0')
                     : c >= 'a' && c <= 'f' ? (uint32_t)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (uint32_t)(c - 'A' + 10)
                                            : 16;
        if (d == 16)
            return 0;
        *v = *v << 4 | d;
    }
    return 1;
}

/* cp (at most U+10FFFF, not a surrogate) as UTF-8 into u; its length. */
static int put_utf8(unsigned char u[4], uint32_t cp)
{
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        return 1;
    }
    int n = cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    for (int k = n - 1; k > 0; k--, cp >>= 6)
        u[k] = (unsigned char)(0x80 | (cp & 0x3F));
    static const unsigned char lead[5] = {0, 0, 0xC0, 0xE0, 0xF0};
    u[0] = (unsigned char)(lead[n] | cp);
    return n;
}

/*
 * Decode the character at s[*i] of a string's contents s[0..n) (between the
 * quotes) into u as UTF-8; advance *i past it. Returns its length in bytes
 * (1..4), or -1 for what JSON does not allow: a raw control character, an
 * unknown escape, a lone surrogate, invalid UTF-8.
 */
static int next_char(const char *s, size_t n, size_t *i, unsigned char u[4])
{
    unsigned char c = (unsigned char)s[*i];
    uint32_t cp;
    if (c < 0x20)
        return -1;
    if (c == '\\') {
        if (*i + 1 >= n)
            return -1;
        char e = s[*i + 1];
        *i += 2;
        if (e != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            for (int k = 0; from[k]; k++)
                if (from[k] == e) {
                    u[0] = (unsigned char)to[k];
                    return 1;
                }
            return -1;
        }
        if (!hex4(s, n, *i, &cp))
            return -1;
        *i += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return -1;
        if (cp >= 0xD800 && cp <= 0xDBFF) { /* a high surrogate: its low half must follow */
            uint32_t lo;
            if (*i + 2 > n || s[*i] != '\\' || s[*i + 1] != 'u' || !hex4(s, n, *i + 2, &lo) ||
                lo < 0xDC00 || lo > 0xDFFF)
                return -1;
            *i += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        return put_utf8(u, cp);
    }
    /* raw UTF-8: one well-formed sequence (no overlong forms, no surrogates,
     * nothing past U+10FFFF) */
    int m = c < 0x80                 ? 1
            : c >= 0xC2 && c <= 0xDF ? 2
            : c >= 0xE0 && c <= 0xEF ? 3
            : c >= 0xF0 && c <= 0xF4 ? 4
                                     : 0;
    if (!m || *i + (size_t)m > n)
        return -1;
    cp = m == 1 ? c : c & (0x7Fu >> m);
    u[0] = c;
    for (int k = 1; k < m; k++) {
        unsigned char d = (unsigned char)s[*i + (size_t)k];
        if ((d & 0xC0) != 0x80)
            return -1;
        cp = cp << 6 | (d & 0x3F);
        u[k] = d;
    }
    if ((m == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (m == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return -1;
    *i += (size_t)m;
    return m;
}

/* Whether the raw key s[0..n) (between the quotes) decodes to key. */
static int key_equals(const char *s, size_t n, const char *key)
{
    size_t i = 0, k = 0;
    unsigned char u[4];
    while (i < n) {
        int m = next_char(s, n, &i, u);
        if (m < 0)
            return 0;
        for (int x = 0; x < m; x++, k++)
            if (key[k] == '\0' || key[k] != (char)u[x])
                return 0;
    }
    return key[k] == '\0';
}

/*
 * Find the top-level member key of the object json[0..len) (the last one if
 * the key repeats): its value is j[*vb..*ve). 1 if found; 0 if absent or if
 * json is not one object (checked to its closing brace and beyond).
 */
static int find_member(const char *j, size_t len, const char *key, size_t *vb, size_t *ve)
{
    int found = 0;
    size_t i = skip_ws(j, len, 0);
    if (i >= len || j[i] != '{')
        return 0;
    i = skip_ws(j, len, i + 1);
    if (i < len && j[i] == '}')
        return 0;
    for (;;) {
        if (i >= len || j[i] != '"')
            return 0;
        size_t ke = string_end(j, len, i);
        if (!ke)
            return 0;
        int match = key_equals(j + i + 1, ke - i - 2, key);
        i = skip_ws(j, len, ke);
        if (i >= len || j[i] != ':')
            return 0;
        i = skip_ws(j, len, i + 1);
        size_t e = i < len ? value_end(j, len, i) : 0;
        if (!e)
            return 0;
        if (match) {
            *vb = i;
            *ve = e;
            found = 1;
        }
        i = skip_ws(j, len, e);
        if (i < len && j[i] == '}')
            break;
        if (i >= len || j[i] != ',')
            return 0;
        i = skip_ws(j, len, i + 1);
    }
    return skip_ws(j, len, i + 1) == len ? found : 0;
}

int32_t rg_json_string(const char *j, size_t len, const char *key, char *out, size_t cap)
{
    size_t vb, ve;
    if (cap)
        out[0] = '\0';
    if (!find_member(j, len, key, &vb, &ve) || j[vb] != '"')
        return -1;
    const char *s = j + vb + 1;
    size_t n = ve - vb - 2, i = 0, total = 0, o = 0;
    int fits = 1; /* every character so far was copied whole */
    unsigned char u[4];
    while (i < n) {
        int m = next_char(s, n, &i, u);
        if (m < 0) {
            if (cap)
                out[0] = '\0';
            return -1;
        }
        if (fits && o + (size_t)m < cap) {
            memcpy(out + o, u, (size_t)m);
            o += (size_t)m;
        } else {
            fits = 0;
        }
        total += (size_t)m;
    }
    if (cap)
        out[o] = '\0';
    return total > INT32_MAX ? INT32_MAX : (int32_t)total;
}

int64_t rg_json_int(const char *j, size_t len, const char *key, int64_t def)
{
    size_t i, e;
    if (!find_member(j, len, key, &i, &e))
        return def;
    int neg = j[i] == '-';
    i += (size_t)neg;
    /* JSON integers: no leading zeros, no fraction, no exponent */
    if (i >= e || (j[i] == '0' && i + 1 < e))
        return def;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
    for (; i < e; i++) {
        if (j[i] < '0' || j[i] > '9')
            return def;
        uint64_t d = (uint64_t)(j[i] - '0');
        if (v > (limit - d) / 10)
            return def;
        v = v * 10 + d;
    }
    if (!neg)
        return (int64_t)v;
    return v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
}

int rg_json_bool(const char *j, size_t len, const char *key, int def)
{
    size_t b, e;
    if (!find_member(j, len, key, &b, &e))
        return def;
    if (e - b == 4 && memcmp(j + b, "true", 4) == 0)
        return 1;
    if (e - b == 5 && memcmp(j + b, "false", 5) == 0)
        return 0;
    return def;
}

int rg_json_has(const char *j, size_t len, const char *key)
{
    size_t b, e;
    return find_member(j, len, key, &b, &e);
}

int32_t rg_json_raw(const char *j, size_t len, const char *key, const char **value,
                    size_t *value_len)
{
    size_t b, e;
    if (!find_member(j, len, key, &b, &e)) {
        *value = 0;
        *value_len = 0;
        return -1;
    }
    *value = j + b;
    *value_len = e - b;
    return 0;
}
