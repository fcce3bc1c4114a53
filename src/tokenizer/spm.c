/*
 * SentencePiece BPE (tokenizer.ggml.model = "llama"), as llama.cpp's
 * llm_tokenizer_spm: spaces become U+2581, the text starts as one symbol per
 * UTF-8 character, and the adjacent pair whose concatenation is the token
 * with the highest score merges first (ties: leftmost), until no pair is a
 * token. Symbols that are not tokens are written as byte tokens <0xXX>.
 */
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "tokenizer/tokenizer_internal.h"

struct sym {
    uint32_t start, n; /* bytes of the escaped text; n == 0 once merged away */
    int32_t prev, next;
    int32_t id; /* the token of a merged symbol; -1 for a single character */
};

struct bigram {
    float score;
    int32_t left, right;
    uint32_t size; /* bytes of left + right when queued */
    int32_t id;    /* the token they make */
};

/* Heap order: higher score first, then the leftmost pair. */
static inline bool before(const struct bigram *a, const struct bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

REALM__BINARY_HEAP(struct bigram, before)

/* Queue (l, r) if their concatenation (contiguous in the text) is a token. */
static inline void try_pair(const realm_tokenizer *tok, const char *text, const struct sym *sym,
                            int32_t l, int32_t r, struct bigram *heap, size_t *n_heap)
{
    if (l < 0 || r < 0)
        return;
    const uint32_t size = sym[l].n + sym[r].n;
    if (size > (uint32_t)tok->max_token_len)
        return;
    const int32_t id = realm__strmap_find(&tok->text_map, tok->text, text + sym[l].start, size);
    if (id < 0)
        return;
    heap_push(heap, n_heap, (struct bigram){tok->score[id], l, r, size, id});
}

static inline bool is_2581(const char *p, size_t n)
{
    return n == 3 && memcmp(p, "\xe2\x96\x81", 3) == 0;
}

/* Symbol length at e[i] (by the lead byte, cut at n). */
static inline size_t sym_len(const char *e, size_t i, size_t n)
{
    size_t k = (size_t)realm__utf8_len((unsigned char)e[i]);
    return k > n - i ? n - i : k;
}

/* Merge the escaped text e[0..n) and append its tokens. */
static int merge_and_emit(const realm_tokenizer *tok, realm__scratch *s, const char *e, size_t n,
                          realm__tokvec *out)
{
    int rc;
    /* One symbol per character, by the lead byte's length (cut at the end):
     * invalid bytes stay symbols of their own and end up as byte tokens. */
    if ((rc = realm__grow(&s->sym, &s->sym_cap, n, sizeof(struct sym))) < 0 ||
        (rc = realm__grow(&s->heap, &s->heap_cap, 2 * n, sizeof(struct bigram))) < 0)
        return rc;
    struct sym *sym = s->sym;
    struct bigram *heap = s->heap;
    int32_t n_sym = 0;
    for (size_t i = 0; i < n;) {
        const size_t k = sym_len(e, i, n);
        sym[n_sym] = (struct sym){(uint32_t)i, (uint32_t)k, n_sym - 1, -1, -1};
        if (n_sym > 0)
            sym[n_sym - 1].next = n_sym;
        n_sym++;
        i += k;
    }
    size_t n_heap = 0;
    for (int32_t i = 1; i < n_sym; i++)
        try_pair(tok, e, sym, i - 1, i, heap, &n_heap);
    while (n_heap > 0) {
        struct bigram b = heap_pop(heap, &n_heap);
        struct sym *L = &sym[b.left], *R = &sym[b.right];
        if (L->n == 0 || R->n == 0 || L->n + R->n != b.size)
            continue;
        L->n += R->n;
        L->id = b.id;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0)
            sym[R->next].prev = b.left;
        try_pair(tok, e, sym, L->prev, b.left, heap, &n_heap);
        try_pair(tok, e, sym, b.left, L->next, heap, &n_heap);
    }

    /* Merged symbols are tokens by construction; single characters may not
     * be: those go out byte by byte. */
    for (int32_t i = 0; i >= 0; i = sym[i].next) {
        const int32_t id = sym[i].id >= 0 ? sym[i].id
                                          : realm__strmap_find(&tok->text_map, tok->text,
                                                               e + sym[i].start, sym[i].n);
        if (id >= 0) {
            if ((rc = realm__tokvec_push(out, id)) < 0)
                return rc;
            continue;
        }
        for (uint32_t k = 0; k < sym[i].n; k++) {
            const int32_t bt = tok->byte_token[(unsigned char)e[sym[i].start + k]];
            if (bt >= 0 && (rc = realm__tokvec_push(out, bt)) < 0)
                return rc;
        }
    }
    return REALM_OK;
}

int realm__spm_tokenize(const realm_tokenizer *tok, realm__scratch *s, const char *text, size_t len,
                        bool prefix_space, realm__tokvec *out)
{
    /* Escape: ' ' -> U+2581 (3 bytes), with the optional leading space. */
    size_t n_space = prefix_space ? 1 : 0;
    for (size_t i = 0; i < len; i++)
        n_space += text[i] == ' ';
    const size_t n = len + (prefix_space ? 1 : 0) + 2 * n_space;
    if (n >= UINT32_MAX)
        return realm__error(REALM_ERR_RANGE, "text of %zu bytes is too long", len);
    int rc = realm__scratch_buf(s, n);
    if (rc < 0)
        return rc;
    char *e = s->buf;
    size_t o = 0;
    if (prefix_space) {
        memcpy(e, "\xe2\x96\x81", 3);
        o = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(e + o, "\xe2\x96\x81", 3);
            o += 3;
        } else {
            e[o++] = text[i];
        }
    }
    if (!tok->spm_split_words)
        return merge_and_emit(tok, s, e, o, out);

    /* Words start where a U+2581 follows another character; no token spans
     * such a place (checked at load), so each word merges on its own with the
     * same result. */
    size_t start = 0;
    bool prev_space = false;
    for (size_t i = 0; i < o;) {
        const size_t k = sym_len(e, i, o);
        const bool space = is_2581(e + i, k);
        if (space && !prev_space && i > start) {
            if ((rc = merge_and_emit(tok, s, e + start, i - start, out)) < 0)
                return rc;
            start = i;
        }
        prev_space = space;
        i += k;
    }
    if (o > start)
        rc = merge_and_emit(tok, s, e + start, o - start, out);
    return rc;
}
