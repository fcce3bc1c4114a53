/*
 * Building blocks of the tokenizer: UTF-8, GPT-2's byte <-> character
 * mapping, per-call scratch. (Its string tables are core/strmap.c.)
 */
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "tokenizer/tokenizer_internal.h"

/* ---- UTF-8 -------------------------------------------------------------- */

int realm__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    const unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v, min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < (size_t)len)
        return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

/*
 * The tail of s that a valid character could still complete: a lead byte
 * followed by fewer continuation bytes than it needs, with every prefix
 * allowed (E0 needs A0.., ED needs ..9F, F0 needs 90.., F4 needs ..8F).
 */
size_t realm__utf8_incomplete_tail(const unsigned char *s, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        const unsigned char c = s[n - k];
        if ((c & 0xc0) == 0x80)
            continue; /* a continuation byte: look further back */
        int need = c >= 0xc2 && c <= 0xdf   ? 2
                   : c >= 0xe0 && c <= 0xef ? 3
                   : c >= 0xf0 && c <= 0xf4 ? 4
                                            : 0;
        if (need == 0 || (size_t)need <= k)
            return 0;
        if (k >= 2) {
            const unsigned char c1 = s[n - k + 1];
            if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) ||
                (c == 0xf4 && c1 > 0x8f))
                return 0;
        }
        return k;
    }
    return 0;
}

int realm__utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/*
 * GPT-2's bytes_to_unicode(): the printable bytes '!'..'~', 0xA1..0xAC and
 * 0xAE..0xFF stand for themselves; the other 68 bytes (0x00..0x20,
 * 0x7F..0xA0, 0xAD), in order, become U+0100..U+0143.
 */
uint32_t realm__byte_to_cp(uint8_t b)
{
    if (b <= 0x20)
        return 0x100u + b;
    if (b >= 0x7f && b <= 0xa0)
        return 0x100u + 33 + (b - 0x7fu);
    if (b == 0xad)
        return 0x100u + 67;
    return b;
}

int realm__cp_to_byte(uint32_t cp)
{
    if ((cp >= 0x21 && cp <= 0x7e) || (cp >= 0xa1 && cp <= 0xac) || (cp >= 0xae && cp <= 0xff))
        return (int)cp;
    if (cp >= 0x100 && cp < 0x100 + 33)
        return (int)(cp - 0x100);
    if (cp >= 0x100 + 33 && cp < 0x100 + 67)
        return (int)(cp - 0x100 - 33 + 0x7f);
    if (cp == 0x100 + 67)
        return 0xad;
    return -1;
}

/* ---- scratch ------------------------------------------------------------ */

int realm__grow(void **p, size_t *cap, size_t n, size_t sz)
{
    if (n <= *cap)
        return REALM_OK;
    size_t c = *cap ? *cap : 64;
    while (c < n)
        c *= 2;
    void *q = realloc(*p, c * sz);
    if (q == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory (%zu bytes) while tokenizing", c * sz);
    *p = q;
    *cap = c;
    return REALM_OK;
}

int realm__scratch_buf(realm__scratch *s, size_t n)
{
    return realm__grow((void **)&s->buf, &s->buf_cap, n, 1);
}

void realm__scratch_free(realm__scratch *s)
{
    free(s->buf);
    free(s->sym);
    free(s->heap);
    free(s->ends);
    free(s->cps);
    free(s->cache_slots);
    free(s->cache_key_off);
    free(s->cache_tok_off);
    free(s->cache_key_len);
    free(s->cache_keys);
    free(s->cache_toks);
    memset(s, 0, sizeof *s);
}

int realm__tokvec_push(realm__tokvec *t, realm_token id)
{
    if (t->n == t->cap) {
        int rc = realm__grow((void **)&t->v, &t->cap, t->n + 1, sizeof *t->v);
        if (rc < 0)
            return rc;
    }
    t->v[t->n++] = id;
    return REALM_OK;
}

int realm__utf8_sanitize(realm__scratch *s, const char *text, size_t len, const char **out,
                         size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)text;
    size_t i = 0;
    /* Fast path: ASCII and valid characters need no copy. */
    while (i < len) {
        uint32_t cp;
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int k = realm__utf8_decode(u + i, len - i, &cp);
        if (k == 0)
            break;
        i += (size_t)k;
    }
    if (i == len) {
        *out = text;
        *out_len = len;
        return 0;
    }
    /* At most 3 output bytes per input byte. */
    if (len > SIZE_MAX / 3)
        return realm__error(REALM_ERR_RANGE, "text too long");
    int rc = realm__scratch_buf(s, len * 3);
    if (rc < 0)
        return rc;
    memcpy(s->buf, text, i);
    size_t o = i;
    while (i < len) {
        uint32_t cp;
        int k = u[i] < 0x80 ? 1 : realm__utf8_decode(u + i, len - i, &cp);
        if (k == 0) {
            memcpy(s->buf + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(s->buf + o, text + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        }
    }
    *out = s->buf;
    *out_len = o;
    return 1;
}
