/*
 * Byte-level BPE (tokenizer.ggml.model = "gpt2").
 *
 * Vocabulary and merges are stored in GPT-2's "byte characters" (every byte
 * shown as a printable code point, space as U+0120 'G'). Tokenizing works on
 * the text's own bytes: a piece starts as one symbol per byte, each symbol
 * carrying the id of its text, and adjacent symbols merge, lowest merge rank
 * first (ties: leftmost), as llama.cpp's llm_tokenizer_bpe does. Merges are
 * turned into id pairs once at load, so a pair costs one hash lookup, and the
 * queue is a binary heap: a word of n bytes costs O(n log n).
 *
 * Texts that merges use or produce but that are not tokens get "virtual" ids
 * >= n_vocab, and so do bytes the vocabulary lacks (Falcon's has no token for
 * 0x0B, for instance). A symbol left with a virtual id at the end falls back
 * as llama.cpp does: each of its bytes that is itself a printable one-byte
 * token is emitted, the others are dropped (Hugging Face drops them too).
 */
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "tokenizer/tokenizer_internal.h"

/* ---- (left, right) -> (rank, result) ----------------------------------- */

static inline uint32_t pair_hash(uint64_t key)
{
    key ^= key >> 31;
    key *= 0x7fb5d329728ea185ull;
    key ^= key >> 27;
    return (uint32_t)(key >> 32);
}

static int pairmap_init(realm__pairmap *m, uint64_t n)
{
    uint32_t cap = 16;
    while (cap < n * 2)
        cap <<= 1;
    m->slots = malloc(cap * sizeof *m->slots);
    if (m->slots == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory for %llu merges",
                            (unsigned long long)n);
    for (uint32_t i = 0; i < cap; i++)
        m->slots[i].key = UINT64_MAX;
    m->mask = cap - 1;
    m->n = 0;
    return REALM_OK;
}

/* Insert unless present: the first (lowest-rank) merge of a pair wins. */
static void pairmap_put(realm__pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t result)
{
    const uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint32_t i = pair_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        realm__pair_slot *sl = &m->slots[i];
        if (sl->key == key)
            return;
        if (sl->key == UINT64_MAX) {
            *sl = (realm__pair_slot){key, rank, result};
            m->n++;
            return;
        }
    }
}

static inline bool pairmap_find(const realm__pairmap *m, int32_t a, int32_t b, int32_t *rank,
                                int32_t *result)
{
    const uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint32_t i = pair_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        const realm__pair_slot *sl = &m->slots[i];
        if (sl->key == key) {
            *rank = sl->rank;
            *result = sl->result;
            return true;
        }
        if (sl->key == UINT64_MAX)
            return false;
    }
}

/* ---- building ----------------------------------------------------------- */

struct builder {
    realm_tokenizer *tok;
    size_t keys_cap;
    int32_t next_virtual;
};

/*
 * The id of a text in GPT-2 byte characters: the token with that text, else
 * a virtual id (made on first use; its text kept in virt_keys).
 */
static int64_t id_of(struct builder *b, const char *s, size_t len)
{
    realm_tokenizer *tok = b->tok;
    int32_t id = realm__strmap_find(&tok->text_map, tok->text, s, len);
    if (id >= 0)
        return id;
    id = realm__strmap_find(&tok->virt_map, tok->virt_keys, s, len);
    if (id >= 0)
        return id;
    if (tok->virt_keys_len + len >= UINT32_MAX)
        return realm__error(REALM_ERR_FORMAT, "byte-level BPE tables exceed 4 GiB");
    int rc = realm__grow((void **)&tok->virt_keys, &b->keys_cap, tok->virt_keys_len + len + 1, 1);
    if (rc < 0)
        return rc;
    memcpy(tok->virt_keys + tok->virt_keys_len, s, len);
    const uint32_t off = (uint32_t)tok->virt_keys_len;
    tok->virt_keys_len += len;
    return realm__strmap_put(&tok->virt_map, tok->virt_keys, off, (uint32_t)len, b->next_virtual++);
}

/*
 * Tables for tokenizing: the initial symbol of each byte, and each merge
 * "A B" (rank = its index) as (id(A), id(B)) -> (rank, id(AB)). Merge strings
 * split at the first space after the first character, as llama.cpp does;
 * strings without one can never apply and are skipped.
 */
int realm__bpe_build(realm_tokenizer *tok, const realm_gguf *g, int64_t merges_kv,
                     uint64_t n_merges)
{
    if (n_merges > INT32_MAX / 2)
        return realm__error(REALM_ERR_FORMAT, "tokenizer.ggml.merges has %llu entries",
                            (unsigned long long)n_merges);
    struct builder b = {tok, 0, tok->n_vocab};
    int rc = realm__strmap_init(&tok->virt_map, 64);
    if (rc < 0)
        return rc;
    for (int c = 0; c < 256; c++) {
        char chr[4];
        int n = realm__utf8_encode(realm__byte_to_cp((uint8_t)c), chr);
        int64_t id = id_of(&b, chr, (size_t)n);
        if (id < 0)
            return (int)id;
        tok->bpe_byte_sym[c] = (int32_t)id;
    }

    if ((rc = pairmap_init(&tok->merges, n_merges)) < 0)
        return rc;
    char *buf = NULL;
    size_t buf_cap = 0;
    for (uint64_t r = 0; r < n_merges; r++) {
        realm_gguf_str m = realm_gguf_kv_arr_str(g, merges_kv, r);
        const char *sp = m.len > 1 ? memchr(m.data + 1, ' ', m.len - 1) : NULL;
        if (sp == NULL)
            continue;
        const size_t la = (size_t)(sp - m.data), lb = m.len - la - 1;
        if (lb == 0)
            continue;
        if ((rc = realm__grow((void **)&buf, &buf_cap, la + lb, 1)) < 0)
            break;
        memcpy(buf, m.data, la);
        memcpy(buf + la, sp + 1, lb);
        int64_t ia = id_of(&b, buf, la);
        int64_t ib = ia < 0 ? ia : id_of(&b, buf + la, lb);
        int64_t iab = ib < 0 ? ib : id_of(&b, buf, la + lb);
        if (iab < 0) {
            rc = (int)iab;
            break;
        }
        pairmap_put(&tok->merges, (int32_t)ia, (int32_t)ib, (int32_t)r, (int32_t)iab);
    }
    free(buf);
    return rc;
}

void realm__bpe_free(realm_tokenizer *tok)
{
    realm__strmap_free(&tok->virt_map);
    free(tok->virt_keys);
    free(tok->merges.slots);
}

/* ---- tokenizing --------------------------------------------------------- */

struct sym {
    int32_t id;
    int32_t prev, next;
    uint32_t start, n; /* bytes of the piece; n == 0 once merged away */
};

struct bigram {
    int32_t rank;
    int32_t left, right;
    int32_t result;
    uint32_t size; /* bytes of left + right when queued: stale if changed */
};

/* Heap order: lower rank first, then the leftmost pair. */
static inline bool before(const struct bigram *a, const struct bigram *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

REALM__BINARY_HEAP(struct bigram, before)

static inline void try_pair(const realm_tokenizer *tok, const struct sym *sym, int32_t l, int32_t r,
                            struct bigram *heap, size_t *n_heap)
{
    if (l < 0 || r < 0)
        return;
    int32_t rank, result;
    if (!pairmap_find(&tok->merges, sym[l].id, sym[r].id, &rank, &result))
        return;
    heap_push(heap, n_heap, (struct bigram){rank, l, r, result, sym[l].n + sym[r].n});
}

/* BPE-merge one pre-tokenizer piece p[0..n) and append its tokens. */
static int merge_piece(const realm_tokenizer *tok, realm__scratch *s, const char *p, size_t n,
                       realm__tokvec *out)
{
    int rc;
    if (n == 1 && tok->bpe_byte_sym[(unsigned char)p[0]] < tok->n_vocab)
        return realm__tokvec_push(out, tok->bpe_byte_sym[(unsigned char)p[0]]);
    if (tok->ignore_merges) {
        /* A piece that is a token stays whole: look it up in GPT-2 byte
         * characters (at most 2 bytes per byte). */
        if ((rc = realm__grow((void **)&s->cps, &s->cps_cap, (2 * n + 3) / 4, 4)) < 0)
            return rc;
        char *m = (char *)s->cps;
        size_t ml = 0;
        for (size_t i = 0; i < n; i++)
            ml += (size_t)realm__utf8_encode(realm__byte_to_cp((uint8_t)p[i]), m + ml);
        int32_t id = realm__strmap_find(&tok->text_map, tok->text, m, ml);
        if (id >= 0)
            return realm__tokvec_push(out, id);
    }
    if ((rc = realm__grow(&s->sym, &s->sym_cap, n, sizeof(struct sym))) < 0 ||
        (rc = realm__grow(&s->heap, &s->heap_cap, 2 * n, sizeof(struct bigram))) < 0)
        return rc;
    struct sym *sym = s->sym;
    struct bigram *heap = s->heap;
    size_t n_heap = 0;
    for (size_t i = 0; i < n; i++) {
        sym[i].id = tok->bpe_byte_sym[(unsigned char)p[i]];
        sym[i].prev = (int32_t)i - 1;
        sym[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
        sym[i].start = (uint32_t)i;
        sym[i].n = 1;
    }
    for (size_t i = 1; i < n; i++)
        try_pair(tok, sym, (int32_t)i - 1, (int32_t)i, heap, &n_heap);
    /* Each merge queues at most two pairs and removes one symbol, so the heap
     * never holds more than 2n entries. */
    while (n_heap > 0) {
        struct bigram b = heap_pop(heap, &n_heap);
        struct sym *L = &sym[b.left], *R = &sym[b.right];
        if (L->n == 0 || R->n == 0 || L->n + R->n != b.size)
            continue;
        L->id = b.result;
        L->n += R->n;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0)
            sym[R->next].prev = b.left;
        try_pair(tok, sym, L->prev, b.left, heap, &n_heap);
        try_pair(tok, sym, b.left, L->next, heap, &n_heap);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) {
        if (sym[i].id < tok->n_vocab) {
            if ((rc = realm__tokvec_push(out, sym[i].id)) < 0)
                return rc;
            continue;
        }
        for (uint32_t k = 0; k < sym[i].n; k++) {
            const unsigned char c = (unsigned char)p[sym[i].start + k];
            const int32_t id = tok->bpe_byte_sym[c];
            if (c >= 0x21 && c <= 0x7e && id < tok->n_vocab &&
                (rc = realm__tokvec_push(out, id)) < 0)
                return rc;
        }
    }
    return REALM_OK;
}

/* ---- the per-call piece cache ------------------------------------------ */

#define CACHE_MAX_KEY   48 /* longer pieces are rare and not cached */
#define CACHE_MAX_SLOTS 8192

/*
 * Make the cache for a text of `len` bytes: about one slot per 8 bytes,
 * 64..8192 slots, half of them usable. Returns 0, or an error.
 */
static int cache_init(realm__scratch *s, size_t len)
{
    if (s->cache_slots != NULL)
        return REALM_OK;
    uint32_t cap = 64;
    while (cap < CACHE_MAX_SLOTS && cap < len / 8)
        cap <<= 1;
    s->cache_slots = calloc(cap, sizeof *s->cache_slots);
    s->cache_max = cap / 2;
    s->cache_key_off = malloc(s->cache_max * sizeof *s->cache_key_off);
    s->cache_tok_off = malloc((s->cache_max + 1) * sizeof *s->cache_tok_off);
    s->cache_key_len = malloc(s->cache_max);
    if (!s->cache_slots || !s->cache_key_off || !s->cache_tok_off || !s->cache_key_len)
        return realm__error(REALM_ERR_NOMEM, "out of memory while tokenizing");
    s->cache_mask = cap - 1;
    s->cache_n = 0;
    s->cache_tok_off[0] = 0;
    return REALM_OK;
}

/* Append the cached tokens of piece p[0..n) to out; false if not cached. */
static bool cache_get(realm__scratch *s, const char *p, size_t n, uint64_t h, uint32_t *slot,
                      realm__tokvec *out, int *rc)
{
    const uint32_t tag = (uint32_t)(h >> 32);
    uint32_t i = (uint32_t)h & s->cache_mask;
    for (;; i = (i + 1) & s->cache_mask) {
        const uint64_t sl = s->cache_slots[i];
        if (sl == 0)
            break;
        const uint32_t e = (uint32_t)sl - 1;
        if ((uint32_t)(sl >> 32) == tag && s->cache_key_len[e] == n &&
            memcmp(s->cache_keys + s->cache_key_off[e], p, n) == 0) {
            const uint32_t a = s->cache_tok_off[e], b = s->cache_tok_off[e + 1];
            *rc = realm__grow((void **)&out->v, &out->cap, out->n + (b - a), sizeof *out->v);
            if (*rc == REALM_OK && b > a) {
                memcpy(out->v + out->n, s->cache_toks + a, (b - a) * sizeof *out->v);
                out->n += b - a;
            }
            return true;
        }
    }
    *slot = i;
    return false;
}

/* Remember that p[0..n) gave out->v[from..]; silently skipped when full. */
static int cache_put(realm__scratch *s, const char *p, size_t n, uint64_t h, uint32_t slot,
                     const realm__tokvec *out, size_t from)
{
    if (s->cache_n == s->cache_max)
        return REALM_OK;
    const size_t k = out->n - from;
    int rc;
    if ((rc = realm__grow((void **)&s->cache_keys, &s->cache_keys_cap, s->cache_keys_len + n, 1)) <
            0 ||
        (rc = realm__grow((void **)&s->cache_toks, &s->cache_toks_cap, s->cache_toks_len + k,
                          sizeof *s->cache_toks)) < 0)
        return rc;
    const uint32_t e = s->cache_n++;
    memcpy(s->cache_keys + s->cache_keys_len, p, n);
    s->cache_key_off[e] = (uint32_t)s->cache_keys_len;
    s->cache_key_len[e] = (uint8_t)n;
    s->cache_keys_len += n;
    if (k > 0)
        memcpy(s->cache_toks + s->cache_toks_len, out->v + from, k * sizeof *out->v);
    s->cache_toks_len += k;
    s->cache_tok_off[e + 1] = (uint32_t)s->cache_toks_len;
    s->cache_slots[slot] = (h >> 32 << 32) | (uint64_t)(e + 1);
    return REALM_OK;
}

/*
 * Tokenize one fragment: make it valid UTF-8 (bad bytes -> U+FFFD), split it
 * with the pre-tokenizer, merge each piece (or copy the tokens of the same
 * piece seen before in this call: merging depends on the piece alone).
 */
int realm__bpe_tokenize(const realm_tokenizer *tok, realm__scratch *s, const char *text, size_t len,
                        realm__tokvec *out)
{
    const char *t;
    size_t tl;
    int rc = realm__utf8_sanitize(s, text, len, &t, &tl);
    if (rc < 0)
        return rc;
    if ((rc = realm__pretok_split(tok->pretok, t, tl, &s->ends, &s->n_ends, &s->ends_cap)) < 0)
        return rc;
    if ((rc = cache_init(s, tl)) < 0)
        return rc;
    size_t start = 0;
    for (size_t k = 0; k < s->n_ends; k++) {
        const size_t end = s->ends[k], n = end - start;
        const char *p = t + start;
        start = end;
        if (n == 0)
            continue;
        if (n > CACHE_MAX_KEY) {
            if ((rc = merge_piece(tok, s, p, n, out)) < 0)
                return rc;
            continue;
        }
        const uint64_t h = realm__strmap_hash(&tok->text_map, p, n);
        uint32_t slot;
        if (cache_get(s, p, n, h, &slot, out, &rc)) {
            if (rc < 0)
                return rc;
            continue;
        }
        const size_t from = out->n;
        if ((rc = merge_piece(tok, s, p, n, out)) < 0 ||
            (rc = cache_put(s, p, n, h, slot, out, from)) < 0)
            return rc;
    }
    return REALM_OK;
}
