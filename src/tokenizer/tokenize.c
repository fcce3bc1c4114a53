/*
 * realm_tokenize: find special tokens in the text, tokenize the text between
 * them with the vocabulary's model, add BOS/EOS.
 */
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "tokenizer/tokenizer_internal.h"

#define MAX_TEXT ((size_t)1 << 30)

/* One occurrence of a special token: where, and its priority rank. */
struct occ {
    uint32_t pos;
    int32_t rank; /* index into tok->special */
};

static int cmp_occ(const void *a, const void *b)
{
    const struct occ *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Where control and unknown tokens may be recognised: everywhere
 * (parse_special), nowhere, or where mask[] is set (mixed parts). */
typedef struct special_scope {
    bool parse_special;
    const unsigned char *mask; /* one byte per text byte, or NULL */
} special_scope;

/* May the special token id be taken at text[pos..pos + tl)? */
static bool allowed(const realm_tokenizer *tok, int32_t id, special_scope sc, size_t pos, size_t tl)
{
    if (!(tok->attr[id] & (REALM_TOKEN_ATTR_CONTROL | REALM_TOKEN_ATTR_UNKNOWN)))
        return true;
    if (sc.mask == NULL)
        return sc.parse_special;
    for (size_t i = 0; i < tl; i++)
        if (!sc.mask[pos + i])
            return false;
    return true;
}

static inline bool is_c_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Append occurrence (pos, rank) if that special token is at text + pos. */
static int try_occ(const realm_tokenizer *tok, const char *text, size_t len, size_t pos,
                   int32_t rank, special_scope sc, struct occ **occ, size_t *n, size_t *cap)
{
    const int32_t id = tok->special[rank];
    const uint32_t tl = tok->text_off[id + 1] - tok->text_off[id] - 1;
    if (tl > len - pos || memcmp(text + pos, tok->text + tok->text_off[id], tl) != 0 ||
        !allowed(tok, id, sc, pos, tl))
        return REALM_OK;
    int rc = realm__grow((void **)occ, cap, *n + 1, sizeof **occ);
    if (rc < 0)
        return rc;
    (*occ)[(*n)++] = (struct occ){(uint32_t)pos, rank};
    return REALM_OK;
}

/*
 * Every place where an allowed special token occurs in text (overlaps
 * included): candidates come from the one-byte table and the bucket of the
 * next two bytes. Returns the count (0 leaves *occ NULL), or an error.
 */
static int64_t find_occurrences(const realm_tokenizer *tok, const char *text, size_t len,
                                special_scope sc, struct occ **occ)
{
    *occ = NULL;
    if (tok->n_special == 0)
        return 0;
    size_t n = 0, cap = 0;
    const unsigned char *u = (const unsigned char *)text;
    int rc = REALM_OK;
    for (size_t i = 0; i < len && rc == REALM_OK; i++) {
        if (!tok->special_first[u[i]])
            continue;
        const int32_t one = tok->special_1byte[u[i]];
        if (one >= 0)
            rc = try_occ(tok, text, len, i, one, sc, occ, &n, &cap);
        if (i + 1 == len)
            break;
        const uint32_t bucket = (uint32_t)(u[i] << 8 | u[i + 1]) % REALM__N_SPECIAL_BUCKETS;
        for (uint32_t k = tok->bucket_start[bucket];
             k < tok->bucket_start[bucket + 1] && rc == REALM_OK; k++)
            rc = try_occ(tok, text, len, i, tok->special_by_bucket[k], sc, occ, &n, &cap);
    }
    if (rc < 0 || n == 0) {
        free(*occ);
        *occ = NULL;
        return rc;
    }
    return (int64_t)n;
}

enum { FREE = 0, TOKEN = 1, START = 2, DROPPED = 3 };

/*
 * Decide which occurrences become tokens, exactly as llama.cpp's
 * tokenizer_st_partition: special tokens in priority order (longest text
 * first), each taking its occurrences left to right that lie wholly in text
 * not yet taken; LSTRIP/RSTRIP tokens also swallow the whitespace next to
 * them. state[] gets FREE / START (first byte of a token) / TOKEN / DROPPED.
 */
static void choose(const realm_tokenizer *tok, const char *text, size_t len, struct occ *occ,
                   size_t n_occ, unsigned char *state)
{
    qsort(occ, n_occ, sizeof *occ, cmp_occ);
    for (size_t k = 0; k < n_occ; k++) {
        const int32_t id = tok->special[occ[k].rank];
        const size_t tl = tok->text_off[id + 1] - tok->text_off[id] - 1;
        const size_t p = occ[k].pos;
        size_t j = 0;
        while (j < tl && state[p + j] == FREE)
            j++;
        if (j < tl)
            continue;
        state[p] = START;
        memset(state + p + 1, TOKEN, tl - 1);
        if (tok->attr[id] & REALM_TOKEN_ATTR_LSTRIP)
            for (size_t q = p; q > 0 && state[q - 1] == FREE && is_c_space(text[q - 1]); q--)
                state[q - 1] = DROPPED;
        if (tok->attr[id] & REALM_TOKEN_ATTR_RSTRIP)
            for (size_t q = p + tl; q < len && state[q] == FREE && is_c_space(text[q]); q++)
                state[q] = DROPPED;
    }
}

/* Tokenize a stretch of plain text with the vocabulary's model. */
static int run_model(const realm_tokenizer *tok, realm__scratch *s, const char *text, size_t len,
                     bool prefix_space, realm__tokvec *out)
{
    switch (tok->type) {
    case REALM_VOCAB_SPM:
        return realm__spm_tokenize(tok, s, text, len, prefix_space, out);
    case REALM_VOCAB_BPE:
        return realm__bpe_tokenize(tok, s, text, len, out);
    case REALM_VOCAB_WPM:
        return realm__wpm_tokenize(tok, s, text, len, out);
    default:
        return realm__error(REALM_ERR_INVAL, "bad tokenizer type");
    }
}

/* The whole pipeline into a growable vector; sc says where control tokens
 * written in the text are recognised. */
static int tokenize_vec(const realm_tokenizer *tok, const char *text, size_t len, unsigned flags,
                        special_scope sc, realm__tokvec *out)
{
    const bool add_special = flags & REALM_TOKENIZE_ADD_SPECIAL;
    realm__scratch s = {0};
    int rc = REALM_OK;

    if (add_special) {
        realm_token first = REALM_TOKEN_NULL;
        if (tok->type == REALM_VOCAB_WPM || tok->add_bos)
            first = tok->bos;
        if (first != REALM_TOKEN_NULL && (rc = realm__tokvec_push(out, first)) < 0)
            return rc;
    }

    struct occ *occ = NULL;
    unsigned char *state = NULL;
    int64_t n_occ = len ? find_occurrences(tok, text, len, sc, &occ) : 0;
    if (n_occ < 0)
        return (int)n_occ;
    if (n_occ > 0) {
        state = calloc(len, 1);
        if (state == NULL) {
            free(occ);
            return realm__error(REALM_ERR_NOMEM, "out of memory (%zu bytes)", len);
        }
        choose(tok, text, len, occ, (size_t)n_occ, state);
        free(occ);
    }

    /* SentencePiece prefixes a space to the first stretch of text and to
     * every stretch that follows a special token. */
    bool after_special = true;
    for (size_t i = 0; i < len && rc == REALM_OK;) {
        if (state == NULL || state[i] == FREE) {
            size_t j = i + 1;
            while (j < len && (state == NULL || state[j] == FREE))
                j++;
            rc = run_model(tok, &s, text + i, j - i, tok->add_space_prefix && after_special, out);
            after_special = false;
            i = j;
        } else if (state[i] == START) {
            int32_t id = REALM_TOKEN_NULL;
            size_t j = i + 1;
            while (j < len && state[j] == TOKEN)
                j++;
            id = realm__strmap_find(&tok->text_map, tok->text, text + i, j - i);
            REALM_ASSERT(id >= 0);
            rc = realm__tokvec_push(out, id);
            after_special = true;
            i = j;
        } else {
            i++; /* swallowed whitespace */
        }
    }
    free(state);
    realm__scratch_free(&s);
    if (rc < 0)
        return rc;

    if (add_special) {
        realm_token last = REALM_TOKEN_NULL;
        if (tok->type == REALM_VOCAB_WPM)
            last = tok->sep;
        else if (tok->add_eos)
            last = tok->eos;
        if (last != REALM_TOKEN_NULL && (rc = realm__tokvec_push(out, last)) < 0)
            return rc;
    }
    return REALM_OK;
}

static special_scope scope_of(unsigned flags)
{
    return (special_scope){(flags & REALM_TOKENIZE_PARSE_SPECIAL) != 0, NULL};
}

int32_t realm_tokenize(const realm_tokenizer *tok, const char *text, size_t len, unsigned flags,
                       realm_token *out, int32_t n_max)
{
    if (tok == NULL || (text == NULL && len > 0) || n_max < 0 || (out == NULL && n_max > 0))
        return realm__error(REALM_ERR_INVAL, "realm_tokenize: bad arguments");
    if (len > MAX_TEXT)
        return realm__error(REALM_ERR_RANGE,
                            "text of %zu bytes is too long to tokenize "
                            "(at most %zu)",
                            len, MAX_TEXT);
    realm__tokvec v = {0};
    int rc = tokenize_vec(tok, text, len, flags, scope_of(flags), &v);
    if (rc < 0) {
        free(v.v);
        return rc;
    }
    const int32_t n = (int32_t)v.n;
    if (out == NULL && n_max == 0) {
        free(v.v);
        return n;
    }
    if (n > n_max) {
        free(v.v);
        return realm__error(REALM_ERR_RANGE, "the text has %d tokens; the buffer holds %d", n,
                            n_max);
    }
    if (n > 0)
        memcpy(out, v.v, (size_t)n * sizeof *out);
    free(v.v);
    return n;
}

/* Hand v over as a malloc'ed array (never NULL on success), or free it. */
static int vec_out(int rc, realm__tokvec *v, realm_token **out, int32_t *n_out)
{
    if (rc < 0) {
        free(v->v);
        return rc;
    }
    if (v->v == NULL && (v->v = malloc(sizeof *v->v)) == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    *out = v->v;
    *n_out = (int32_t)v->n;
    return REALM_OK;
}

int realm_tokenize_alloc(const realm_tokenizer *tok, const char *text, size_t len, unsigned flags,
                         realm_token **out, int32_t *n_out)
{
    if (out == NULL || n_out == NULL)
        return realm__error(REALM_ERR_INVAL, "realm_tokenize_alloc: bad arguments");
    *out = NULL;
    *n_out = 0;
    if (tok == NULL || (text == NULL && len > 0))
        return realm__error(REALM_ERR_INVAL, "realm_tokenize_alloc: bad arguments");
    if (len > MAX_TEXT)
        return realm__error(REALM_ERR_RANGE,
                            "text of %zu bytes is too long to tokenize "
                            "(at most %zu)",
                            len, MAX_TEXT);
    realm__tokvec v = {0};
    int rc = tokenize_vec(tok, text, len, flags, scope_of(flags), &v);
    return vec_out(rc, &v, out, n_out);
}

int realm_tokenize_parts_alloc(const realm_tokenizer *tok, const realm_text_part *parts, size_t n,
                               unsigned flags, realm_token **out, int32_t *n_out)
{
    if (out == NULL || n_out == NULL)
        return realm__error(REALM_ERR_INVAL, "realm_tokenize_parts_alloc: bad arguments");
    *out = NULL;
    *n_out = 0;
    if (tok == NULL || (parts == NULL && n > 0))
        return realm__error(REALM_ERR_INVAL, "realm_tokenize_parts_alloc: bad arguments");
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (parts[i].text == NULL && parts[i].len > 0)
            return realm__error(REALM_ERR_INVAL, "realm_tokenize_parts_alloc: part %zu has no text",
                                i);
        if (parts[i].len > MAX_TEXT - len)
            return realm__error(REALM_ERR_RANGE,
                                "text of more than %zu bytes is too long to tokenize", MAX_TEXT);
        len += parts[i].len;
    }
    /* One text and a mask of the bytes where control tokens may be taken. */
    char *text = malloc(len + 1);
    unsigned char *mask = malloc(len + 1);
    if (text == NULL || mask == NULL) {
        free(text);
        free(mask);
        return realm__error(REALM_ERR_NOMEM, "out of memory (%zu bytes)", 2 * len);
    }
    for (size_t i = 0, at = 0; i < n; at += parts[i].len, i++) {
        if (parts[i].len > 0)
            memcpy(text + at, parts[i].text, parts[i].len);
        memset(mask + at, parts[i].special ? 1 : 0, parts[i].len);
    }
    realm__tokvec v = {0};
    int rc = tokenize_vec(tok, text, len, flags, (special_scope){false, mask}, &v);
    free(text);
    free(mask);
    return vec_out(rc, &v, out, n_out);
}
