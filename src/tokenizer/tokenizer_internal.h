/*
 * Internals of the tokenizer module (realm/tokenizer.h): the loaded
 * vocabulary, its lookup tables, the pre-tokenizers and the per-call scratch
 * shared by the three tokenizer models.
 */
#ifndef REALM_TOKENIZER_INTERNAL_H
#define REALM_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/strmap_internal.h"
#include "realm/tokenizer.h"

/* ---- hash tables built once at load ------------------------------------ */

/* Texts -> ids are realm__strmap tables (core/strmap_internal.h). */

/* (left id, right id) -> (merge rank, merged id); one slot per cache
 * access. */
typedef struct realm__pair_slot {
    uint64_t key; /* left << 32 | right; UINT64_MAX = empty */
    int32_t rank;
    int32_t result;
} realm__pair_slot;

typedef struct realm__pairmap {
    realm__pair_slot *slots;
    uint32_t mask;
    uint32_t n;
} realm__pairmap;

/* ---- UTF-8 and the byte-level mapping ---------------------------------- */

/* Length of the UTF-8 sequence a lead byte announces (1 for continuation and
 * invalid bytes), as llama.cpp's unicode_len_utf8. */
static inline int realm__utf8_len(unsigned char c)
{
    static const unsigned char lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lens[c >> 4];
}
/* Length of the valid UTF-8 character at s[0..n) (1..4), or 0 if the bytes
 * there are not a complete valid character (strict: no overlong forms,
 * surrogates or values above U+10FFFF). *cp gets the code point. */
int realm__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/* How many bytes of s[0..n) are an incomplete but still possibly valid
 * character at the end (0..3). */
size_t realm__utf8_incomplete_tail(const unsigned char *s, size_t n);
/* Encode cp (<= 0x10FFFF) into out; returns 1..4. */
int realm__utf8_encode(uint32_t cp, char *out);

/* GPT-2's bytes_to_unicode: byte -> code point, and the reverse (or -1). */
uint32_t realm__byte_to_cp(uint8_t b);
int realm__cp_to_byte(uint32_t cp);

/* ---- pre-tokenizers (byte-level BPE) ----------------------------------- */

typedef struct realm__pretok realm__pretok;

/* Flags a pre-tokenizer name implies (llama.cpp sets them per name). */
enum {
    REALM__PRE_IGNORE_MERGES = 1 << 0, /* a piece that is a token stays whole */
    REALM__PRE_ADD_BOS = 1 << 1,
    REALM__PRE_NO_CLEAN_SPACES = 1 << 2,
    REALM__PRE_ADD_SEP = 1 << 3,
    REALM__PRE_NO_BOS_ID = 1 << 4, /* the model has no BOS (chatglm) */
};

/*
 * Look up a pre-tokenizer by its tokenizer.ggml.pre name and compile its
 * regexes. REALM_ERR_UNSUPPORTED for an unknown name. *flags gets the
 * REALM__PRE_* flags of the name.
 */
int realm__pretok_new(const char *name, realm__pretok **out, unsigned *flags);
void realm__pretok_free(realm__pretok *p);
/* The regex patterns of a name, for tests (NULL-terminated list, or NULL). */
const char *const *realm__pretok_patterns(const char *name);

/*
 * Split text[0..len) (valid UTF-8) into pieces: each regex in turn splits
 * every piece from the previous one into its matches and the stretches
 * between them (llama.cpp's unicode_regex_split / Hugging Face's Split with
 * "Isolated" behaviour). Pieces are written as end offsets into *ends
 * (growable, *n_ends entries, *cap_ends capacity). Thread-safe; returns 0 or
 * a negative error (REALM_ERR_RANGE when PCRE2 hits its limits).
 */
int realm__pretok_split(const realm__pretok *p, const char *text, size_t len, uint32_t **ends,
                        size_t *n_ends, size_t *cap_ends);

/* ---- the tokenizer ------------------------------------------------------ */

#define REALM__N_SPECIAL_BUCKETS 4096

struct realm_tokenizer {
    realm_vocab_type type;
    char model[64];
    char pre[64];
    int32_t n_vocab;

    /* Token texts as stored, NUL-terminated, concatenated. */
    char *text;
    uint32_t *text_off; /* n_vocab + 1 offsets */
    float *score;
    uint8_t *ttype; /* realm_token_type */
    uint32_t *attr;
    int max_token_len;
    realm__strmap text_map; /* stored text -> id */

    /* Decoded pieces (control tokens rendered as their text). */
    char *piece;
    uint32_t *piece_off; /* n_vocab + 1 offsets */

    /* SentencePiece: token for each byte value (byte fallback), or -1. */
    int32_t byte_token[256];
    /* SentencePiece: no token has U+2581 after another character, so no
     * merge crosses the start of a word (a run of U+2581): words merge
     * separately, each with a small queue. */
    bool spm_split_words;

    /* Byte-level BPE: texts (in GPT-2 byte characters) that merges use or
     * produce but that are not tokens get "virtual" ids >= n_vocab. */
    realm__strmap virt_map;
    char *virt_keys;
    size_t virt_keys_len;
    int32_t bpe_byte_sym[256]; /* initial symbol of each byte */
    realm__pairmap merges;
    realm__pretok *pretok;

    /* Special tokens matched in text, longest first (ties: lower id). */
    int32_t *special;
    int32_t n_special;
    /* Index: bucket of the first two bytes -> range in special_by_bucket. */
    uint32_t *bucket_start; /* REALM__N_SPECIAL_BUCKETS + 1 */
    int32_t *special_by_bucket;
    int32_t special_1byte[256]; /* one-byte special tokens, or -1 */
    bool special_first[256];    /* bytes that start some special token */

    realm_token bos, eos, eot, eom, unk, sep, pad, mask, nl;
    realm_token fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
    bool add_bos, add_eos, add_sep, add_space_prefix, ignore_merges, clean_spaces;
    int32_t *eog; /* sorted */
    int32_t n_eog;
};

/* Growable token output of one call. */
typedef struct realm__tokvec {
    realm_token *v;
    size_t n, cap;
} realm__tokvec;

int realm__tokvec_push(realm__tokvec *t, realm_token id);

/* Per-call scratch, reused across the fragments of one text. */
typedef struct realm__scratch {
    char *buf; /* escaped / sanitized text */
    size_t buf_cap;
    void *sym; /* symbol array (model specific) */
    size_t sym_cap;
    void *heap; /* merge queue */
    size_t heap_cap;
    uint32_t *ends; /* pre-tokenizer pieces */
    size_t n_ends, ends_cap;
    uint32_t *cps; /* code points (WordPiece), mapped piece (BPE) */
    size_t cps_cap;
    /* Byte-level BPE: the tokens of pieces seen earlier in this call (words
     * repeat); slots are (hash, entry + 1), entries index the arrays below. */
    uint64_t *cache_slots;
    uint32_t cache_mask, cache_n, cache_max;
    uint32_t *cache_key_off; /* per entry: key bytes in cache_keys */
    uint32_t *cache_tok_off; /* per entry + 1: tokens in cache_toks */
    uint8_t *cache_key_len;
    char *cache_keys;
    realm_token *cache_toks;
    size_t cache_keys_len, cache_keys_cap, cache_toks_len, cache_toks_cap;
} realm__scratch;

void realm__scratch_free(realm__scratch *s);
/* Make s->buf hold at least n bytes. */
int realm__scratch_buf(realm__scratch *s, size_t n);
/* Grow *p (elements of size sz) to hold at least n. */
int realm__grow(void **p, size_t *cap, size_t n, size_t sz);

/*
 * Replace every byte of text[0..len) that does not start a valid UTF-8
 * character with U+FFFD, into s->buf. Returns the new length in *out_len and
 * whether anything changed.
 */
int realm__utf8_sanitize(realm__scratch *s, const char *text, size_t len, const char **out,
                         size_t *out_len);

/* Tokenize one raw text fragment (no special tokens in it) with each model,
 * appending to out. prefix_space: SentencePiece's leading space rule. */
int realm__spm_tokenize(const realm_tokenizer *tok, realm__scratch *s, const char *text, size_t len,
                        bool prefix_space, realm__tokvec *out);
int realm__bpe_tokenize(const realm_tokenizer *tok, realm__scratch *s, const char *text, size_t len,
                        realm__tokvec *out);
int realm__wpm_tokenize(const realm_tokenizer *tok, realm__scratch *s, const char *text, size_t len,
                        realm__tokvec *out);

/* Byte-level BPE tables: built at load from tokens and merges. */
int realm__bpe_build(realm_tokenizer *tok, const realm_gguf *g, int64_t merges_kv,
                     uint64_t n_merges);
void realm__bpe_free(realm_tokenizer *tok);

/*
 * heap_push / heap_pop of a binary min-heap of T in an array (the caller
 * keeps room), ordered by before(const T *, const T *): the element for
 * which before() holds against all others is popped first.
 */
#define REALM__BINARY_HEAP(T, before)                                                              \
    static void heap_push(T *h, size_t *n, T x)                                                    \
    {                                                                                              \
        size_t i = (*n)++;                                                                         \
        while (i > 0) {                                                                            \
            size_t p = (i - 1) / 2;                                                                \
            if (!before(&x, &h[p]))                                                                \
                break;                                                                             \
            h[i] = h[p];                                                                           \
            i = p;                                                                                 \
        }                                                                                          \
        h[i] = x;                                                                                  \
    }                                                                                              \
    static T heap_pop(T *h, size_t *n)                                                             \
    {                                                                                              \
        T top = h[0];                                                                              \
        T x = h[--(*n)];                                                                           \
        size_t i = 0;                                                                              \
        for (;;) {                                                                                 \
            size_t c = 2 * i + 1;                                                                  \
            if (c >= *n)                                                                           \
                break;                                                                             \
            if (c + 1 < *n && before(&h[c + 1], &h[c]))                                            \
                c++;                                                                               \
            if (!before(&h[c], &x))                                                                \
                break;                                                                             \
            h[i] = h[c];                                                                           \
            i = c;                                                                                 \
        }                                                                                          \
        h[i] = x;                                                                                  \
        return top;                                                                                \
    }

#endif
