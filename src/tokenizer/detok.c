/*
 * Token ids -> text: single pieces, whole sequences (llama.cpp's
 * llama_detokenize), and the streaming detokenizer used by generation.
 */
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "tokenizer/tokenizer_internal.h"

#define MAX_OUT ((size_t)1 << 30)

const char *realm_token_to_piece(const realm_tokenizer *tok, realm_token id, unsigned flags,
                                 size_t *len)
{
    if (tok == NULL || id < 0 || id >= tok->n_vocab) {
        if (len)
            *len = 0;
        return NULL;
    }
    const char *p = tok->piece + tok->piece_off[id];
    size_t n = tok->piece_off[id + 1] - tok->piece_off[id];
    if (!(flags & REALM_DETOK_RENDER_SPECIAL) &&
        (tok->attr[id] & (REALM_TOKEN_ATTR_UNKNOWN | REALM_TOKEN_ATTR_CONTROL)))
        n = 0;
    if (len)
        *len = n;
    return p;
}

/*
 * Hugging Face's clean_up_tokenization_spaces as llama.cpp applies it, in
 * place: " ?", " !", " .", " ," lose the space; a lone " ' " between spaces
 * loses both; " 's", " 'm", " 're", " 've" lose the space. Returns the new
 * length.
 */
static size_t clean_spaces(char *t, size_t n)
{
    if (n == 0)
        return 0;
    size_t o = 1;
    for (size_t i = 1; i < n; i++) {
        const char x = t[i];
        if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ','))
            o--;
        t[o++] = x;
    }
    n = o;
    o = 1;
    for (size_t i = 1; i < n; i++) {
        const char x = t[i];
        if (x == '\'' && i + 1 < n && t[i - 1] == ' ' && t[i + 1] == ' ') {
            o--;
            t[++i] = '\0'; /* the next space goes too (it is skipped) */
        }
        t[o++] = x;
    }
    n = o;
    o = 1;
    for (size_t i = 1; i < n; i++) {
        const char x = t[i];
        if (t[i - 1] == ' ' && x == '\'' && i + 1 < n) {
            const char x1 = t[i + 1];
            if (x1 == 's' || x1 == 'm')
                o--;
            else if (i + 2 < n &&
                     ((x1 == 'r' && t[i + 2] == 'e') || (x1 == 'v' && t[i + 2] == 'e')))
                o--;
        }
        t[o++] = x;
    }
    return o;
}

/* Write the pieces of ids into dst (if not NULL); returns the total length or
 * an error for a bad id. */
static int64_t join(const realm_tokenizer *tok, const realm_token *ids, int32_t n, unsigned flags,
                    char *dst)
{
    bool strip_space = tok->add_space_prefix;
    if ((flags & REALM_DETOK_REMOVE_SPECIAL) && tok->add_bos && n > 0 && ids[0] == tok->bos) {
        strip_space = false;
        ids++;
        n--;
    }
    if ((flags & REALM_DETOK_REMOVE_SPECIAL) && tok->add_eos && n > 0 && ids[n - 1] == tok->eos)
        n--;
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t len;
        const char *p = realm_token_to_piece(tok, ids[i], flags, &len);
        if (p == NULL)
            return realm__error(REALM_ERR_INVAL,
                                "token id %d at position %d is not in the "
                                "vocabulary (%d tokens)",
                                ids[i], i, tok->n_vocab);
        if (strip_space && len > 0 && p[0] == ' ') {
            p++;
            len--;
        }
        strip_space = false;
        if (dst)
            memcpy(dst + total, p, len);
        total += len;
        if (total > MAX_OUT)
            return realm__error(REALM_ERR_RANGE, "detokenized text exceeds %zu bytes", MAX_OUT);
    }
    return (int64_t)total;
}

int32_t realm_detokenize(const realm_tokenizer *tok, const realm_token *ids, int32_t n,
                         unsigned flags, char *buf, size_t cap)
{
    if (tok == NULL || n < 0 || (ids == NULL && n > 0) || (buf == NULL && cap > 0))
        return realm__error(REALM_ERR_INVAL, "realm_detokenize: bad arguments");
    int64_t total = join(tok, ids, n, flags, NULL);
    if (total < 0)
        return (int32_t)total;
    const bool clean = (flags & REALM_DETOK_CLEAN_SPACES) && tok->clean_spaces;
    if (!clean) {
        if (buf == NULL)
            return (int32_t)total;
        if ((size_t)total > cap)
            return realm__error(REALM_ERR_RANGE, "the text has %lld bytes; the buffer holds %zu",
                                (long long)total, cap);
        join(tok, ids, n, flags, buf);
        return (int32_t)total;
    }
    /* Cleaning only shrinks the text, but its final length needs the text. */
    char *tmp = (size_t)total <= cap ? buf : malloc((size_t)total + 1);
    if (tmp == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    join(tok, ids, n, flags, tmp);
    size_t m = clean_spaces(tmp, (size_t)total);
    if (tmp != buf) {
        if (buf != NULL && m <= cap)
            memcpy(buf, tmp, m);
        free(tmp);
        if (buf != NULL && m > cap)
            return realm__error(REALM_ERR_RANGE, "the text has %zu bytes; the buffer holds %zu", m,
                                cap);
    }
    return (int32_t)m;
}

/* ---- streaming ---------------------------------------------------------- */

struct stop {
    char *s;
    size_t n;
};

/*
 * buf[0..len) is text not yet taken:
 *   [0, ready)      releasable (valid UTF-8, cannot begin a stop string)
 *   [ready, valid)  valid UTF-8 held back: it may be the start of a stop string
 *   [valid, len)    an incomplete UTF-8 character waiting for more bytes
 */
struct realm_detok_stream {
    const realm_tokenizer *tok;
    unsigned flags;
    char *buf;
    size_t len, cap, ready, valid;
    struct stop *stops;
    int n_stops;
    int stopped; /* index of the stop string seen, or -1 */
    bool pushed;
};

int realm_detok_stream_new(const realm_tokenizer *tok, unsigned flags, realm_detok_stream **out)
{
    if (out == NULL || tok == NULL)
        return realm__error(REALM_ERR_INVAL, "realm_detok_stream_new: bad arguments");
    realm_detok_stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    s->tok = tok;
    s->flags = flags & REALM_DETOK_RENDER_SPECIAL;
    s->stopped = -1;
    *out = s;
    return REALM_OK;
}

void realm_detok_stream_free(realm_detok_stream *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->n_stops; i++)
        free(s->stops[i].s);
    free(s->stops);
    free(s->buf);
    free(s);
}

int realm_detok_stream_add_stop(realm_detok_stream *s, const char *stop, size_t len)
{
    if (s == NULL || stop == NULL || len == 0)
        return realm__error(REALM_ERR_INVAL, "a stop string must not be empty");
    if (s->pushed)
        return realm__error(REALM_ERR_INVAL, "stop strings must be added before the first token");
    struct stop *st = realloc(s->stops, (size_t)(s->n_stops + 1) * sizeof *st);
    if (st == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    s->stops = st;
    char *copy = malloc(len);
    if (copy == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    memcpy(copy, stop, len);
    s->stops[s->n_stops++] = (struct stop){copy, len};
    return REALM_OK;
}

/* Earliest complete stop string in buf[0..valid): its index, or -1. */
static int find_stop(const realm_detok_stream *s, size_t *at)
{
    int best = -1;
    size_t best_at = 0;
    for (int i = 0; i < s->n_stops; i++) {
        const char *p = memmem(s->buf, s->valid, s->stops[i].s, s->stops[i].n);
        if (p != NULL && (best < 0 || (size_t)(p - s->buf) < best_at)) {
            best = i;
            best_at = (size_t)(p - s->buf);
        }
    }
    *at = best_at;
    return best;
}

/* Length of the longest suffix of buf[0..valid) that is a proper prefix of a
 * stop string. */
static size_t stop_prefix_len(const realm_detok_stream *s)
{
    size_t best = 0;
    for (int i = 0; i < s->n_stops; i++) {
        size_t k = s->stops[i].n - 1 < s->valid ? s->stops[i].n - 1 : s->valid;
        for (; k > best; k--)
            if (memcmp(s->buf + s->valid - k, s->stops[i].s, k) == 0)
                break;
        if (k > best)
            best = k;
    }
    return best;
}

/*
 * Validate the new bytes buf[valid..len): complete characters stay, bytes
 * that cannot start one become U+FFFD (which may lengthen the buffer), an
 * incomplete character at the end stays pending. With `final`, that pending
 * tail becomes one U+FFFD too. Then look for stop strings and hold back.
 */
static int settle(realm_detok_stream *s, bool final)
{
    const unsigned char *u = (const unsigned char *)s->buf;
    const size_t tail = final ? 0 : realm__utf8_incomplete_tail(u + s->valid, s->len - s->valid);
    const size_t end = s->len - tail;
    /* Count replacements to size the rewrite. */
    size_t n_bad = 0;
    for (size_t i = s->valid; i < end;) {
        uint32_t cp;
        int k = u[i] < 0x80 ? 1 : realm__utf8_decode(u + i, end - i, &cp);
        if (k == 0) {
            /* With `final`, a trailing incomplete character is one U+FFFD. */
            size_t t = final ? realm__utf8_incomplete_tail(u + i, end - i) : 0;
            if (t > 0 && i + t == end) {
                n_bad++;
                break;
            }
            n_bad++, k = 1;
        }
        i += (size_t)k;
    }
    if (n_bad > 0) {
        const size_t new_len = s->len + 2 * n_bad;
        char *nb = malloc(new_len > 0 ? new_len : 1);
        if (nb == NULL)
            return realm__error(REALM_ERR_NOMEM, "out of memory");
        memcpy(nb, s->buf, s->valid);
        size_t o = s->valid;
        for (size_t i = s->valid; i < end;) {
            uint32_t cp;
            int k = u[i] < 0x80 ? 1 : realm__utf8_decode(u + i, end - i, &cp);
            if (k > 0) {
                memcpy(nb + o, u + i, (size_t)k);
                o += (size_t)k;
                i += (size_t)k;
                continue;
            }
            memcpy(nb + o, "\xef\xbf\xbd", 3);
            o += 3;
            size_t t = final ? realm__utf8_incomplete_tail(u + i, end - i) : 0;
            i += (t > 0 && i + t == end) ? t : 1;
        }
        const size_t new_valid = o;
        memcpy(nb + o, u + end, tail);
        o += tail;
        free(s->buf);
        s->buf = nb;
        s->cap = new_len > 0 ? new_len : 1;
        s->len = o;
        s->valid = new_valid;
    } else {
        s->valid = end;
    }

    size_t at;
    int hit = find_stop(s, &at);
    if (hit >= 0) {
        s->stopped = hit;
        s->len = s->valid = s->ready = at;
        return REALM_DETOK_STOPPED;
    }
    size_t hold = final ? 0 : stop_prefix_len(s);
    if (s->valid - hold > s->ready)
        s->ready = s->valid - hold;
    if (final)
        s->ready = s->valid = s->len;
    return REALM_OK;
}

int realm_detok_stream_push_bytes(realm_detok_stream *s, const char *bytes, size_t len)
{
    if (s == NULL || (bytes == NULL && len > 0))
        return realm__error(REALM_ERR_INVAL, "realm_detok_stream_push: bad arguments");
    s->pushed = true;
    if (s->stopped >= 0)
        return REALM_DETOK_STOPPED;
    if (len > MAX_OUT || s->len + len > MAX_OUT)
        return realm__error(REALM_ERR_RANGE,
                            "more than %zu bytes pending in a stream: take() "
                            "the text as it comes",
                            MAX_OUT);
    int rc = realm__grow((void **)&s->buf, &s->cap, s->len + len, 1);
    if (rc < 0)
        return rc;
    if (len > 0)
        memcpy(s->buf + s->len, bytes, len);
    s->len += len;
    return settle(s, false);
}

int realm_detok_stream_push(realm_detok_stream *s, realm_token id)
{
    if (s == NULL)
        return realm__error(REALM_ERR_INVAL, "realm_detok_stream_push: no stream");
    size_t len;
    const char *p = realm_token_to_piece(s->tok, id, s->flags, &len);
    if (p == NULL)
        return realm__error(REALM_ERR_INVAL, "token id %d is not in the vocabulary (%d tokens)", id,
                            s->tok->n_vocab);
    return realm_detok_stream_push_bytes(s, p, len);
}

size_t realm_detok_stream_ready(const realm_detok_stream *s)
{
    return s ? s->ready : 0;
}

size_t realm_detok_stream_take(realm_detok_stream *s, char *buf, size_t cap)
{
    if (s == NULL || buf == NULL || s->ready == 0)
        return 0;
    size_t n = s->ready < cap ? s->ready : cap;
    /* Never end inside a character: back off over continuation bytes. */
    if (n < s->ready)
        while (n > 0 && ((unsigned char)s->buf[n] & 0xc0) == 0x80)
            n--;
    memcpy(buf, s->buf, n);
    memmove(s->buf, s->buf + n, s->len - n);
    s->len -= n;
    s->valid -= n;
    s->ready -= n;
    return n;
}

void realm_detok_stream_flush(realm_detok_stream *s)
{
    if (s == NULL || s->stopped >= 0)
        return;
    (void)settle(s, true);
}

int realm_detok_stream_stop_index(const realm_detok_stream *s)
{
    return s ? s->stopped : -1;
}
