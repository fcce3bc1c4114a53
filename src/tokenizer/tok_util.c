/*
 * Building blocks of the tokenizer: hash tables, UTF-8, GPT-2's byte <->
 * character mapping, per-call scratch.
 */
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "tokenizer/tokenizer_internal.h"

/* ---- string map --------------------------------------------------------- */

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

int realm__strmap_init(realm__strmap *m, uint32_t n_expected)
{
    memset(m, 0, sizeof *m);
    uint32_t cap = pow2_at_least((uint64_t)n_expected * 2);
    m->slots = calloc(cap, sizeof *m->slots);
    m->n_max = n_expected > 16 ? n_expected : 16;
    m->ent = malloc(m->n_max * sizeof *m->ent);
    if (!m->slots || !m->ent) {
        realm__strmap_free(m);
        return realm__error(REALM_ERR_NOMEM, "out of memory for a token table");
    }
    m->mask = cap - 1;
    return REALM_OK;
}

void realm__strmap_free(realm__strmap *m)
{
    free(m->slots);
    free(m->ent);
    memset(m, 0, sizeof *m);
}

/* Double the slot array and re-insert every entry. */
static int strmap_rehash(realm__strmap *m, const char *arena)
{
    const uint32_t cap = (m->mask + 1) * 2;
    uint64_t *slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory for a token table");
    for (uint32_t e = 0; e < m->n; e++) {
        const uint64_t h = realm__hash_bytes(arena + m->ent[e].off, m->ent[e].len);
        uint32_t i = (uint32_t)h & (cap - 1);
        while (slots[i] != 0)
            i = (i + 1) & (cap - 1);
        slots[i] = (h >> 32 << 32) | (uint64_t)(e + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->mask = cap - 1;
    return REALM_OK;
}

int64_t realm__strmap_put(realm__strmap *m, const char *arena, uint32_t off, uint32_t len,
                          int32_t val)
{
    if ((uint64_t)(m->n + 1) * 2 > (uint64_t)m->mask + 1) {
        int rc = strmap_rehash(m, arena);
        if (rc < 0)
            return rc;
    }
    if (m->n == m->n_max) {
        realm__strmap_entry *ent = realloc(m->ent, (size_t)m->n_max * 2 * sizeof *ent);
        if (ent == NULL)
            return realm__error(REALM_ERR_NOMEM, "out of memory for a token table");
        m->ent = ent;
        m->n_max *= 2;
    }
    const char *s = arena + off;
    const uint64_t h = realm__hash_bytes(s, len);
    const uint32_t tag = (uint32_t)(h >> 32);
    uint32_t i = (uint32_t)h & m->mask;
    for (;; i = (i + 1) & m->mask) {
        const uint64_t slot = m->slots[i];
        if (slot == 0)
            break;
        if ((uint32_t)(slot >> 32) != tag)
            continue;
        const realm__strmap_entry *e = &m->ent[(uint32_t)slot - 1];
        if (e->len == len && memcmp(arena + e->off, s, len) == 0)
            return e->val;
    }
    const uint32_t e = m->n++;
    m->ent[e] = (realm__strmap_entry){off, len, val};
    m->slots[i] = ((uint64_t)tag << 32) | (uint64_t)(e + 1);
    return val;
}

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
