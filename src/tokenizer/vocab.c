/*
 * Loading a tokenizer from GGUF metadata, and the vocabulary queries.
 *
 * What the file says is completed the way llama.cpp's llama_vocab::load does,
 * so that token ids agree with it: default special ids per tokenizer model,
 * flags implied by the pre-tokenizer name, end-of-generation and FIM tokens
 * recognised by their text, and a few per-model token attributes.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "tokenizer/tokenizer_internal.h"

#define MAX_TOKENS (1 << 28)

/* ---- small helpers ------------------------------------------------------ */

static const char *tok_text(const realm_tokenizer *tok, int32_t id, size_t *len)
{
    *len = tok->text_off[id + 1] - tok->text_off[id] - 1;
    return tok->text + tok->text_off[id];
}

static bool text_is(const realm_tokenizer *tok, int32_t id, const char *s)
{
    size_t len;
    const char *t = tok_text(tok, id, &len);
    return len == strlen(s) && memcmp(t, s, len) == 0;
}

/* The id of a token with this exact text, or -1. */
static int32_t find_text(const realm_tokenizer *tok, const char *s)
{
    return realm__strmap_find(&tok->text_map, tok->text, s, strlen(s));
}

/* ---- reading the metadata ---------------------------------------------- */

/* Turn the GGUF reader's last failure into `code`, keeping its message. */
static int metadata_error(int code)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", realm_last_error());
    return realm__error(code, "%s", msg);
}

/* A string value into buf (truncated, NUL-terminated); *found says whether
 * the key exists. Returns 0 or REALM_ERR_FORMAT (wrong type). */
static int get_str(const realm_gguf *g, const char *key, char *buf, size_t cap, bool *found)
{
    realm_gguf_str s;
    int rc = realm_gguf_get_str(g, key, &s);
    *found = false;
    buf[0] = '\0';
    if (rc == REALM_ERR_NOTFOUND)
        return REALM_OK;
    if (rc < 0)
        return metadata_error(REALM_ERR_FORMAT);
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(buf, s.data, n);
    buf[n] = '\0';
    *found = true;
    return REALM_OK;
}

static int get_bool(const realm_gguf *g, const char *key, bool *v)
{
    int rc = realm_gguf_get_bool(g, key, v);
    if (rc == REALM_ERR_NOTFOUND || rc == REALM_OK)
        return REALM_OK;
    return metadata_error(REALM_ERR_FORMAT);
}

/*
 * A special-token id. Absent keys leave *id alone. An id outside the
 * vocabulary is an error when `required_valid` (BOS, EOS, EOT, EOM, UNK: the
 * tokenizer would emit it), else ignored with the default kept, as llama.cpp
 * does for all of them.
 */
static int get_id(const realm_gguf *g, const char *key, int32_t n_vocab, bool required_valid,
                  realm_token *id)
{
    int64_t v;
    int rc = realm_gguf_get_int(g, key, &v);
    if (rc == REALM_ERR_NOTFOUND)
        return REALM_OK;
    if (rc < 0)
        return metadata_error(REALM_ERR_FORMAT);
    if (v < 0 || v >= n_vocab) {
        if (required_valid)
            return realm__error(REALM_ERR_FORMAT,
                                "%s = %" PRId64 " is not a token id (vocabulary of %" PRId32 ")",
                                key, v, n_vocab);
        return REALM_OK;
    }
    *id = (realm_token)v;
    return REALM_OK;
}

static uint32_t type_to_attr(int32_t t)
{
    switch (t) {
    case REALM_TOKEN_TYPE_NORMAL:
        return REALM_TOKEN_ATTR_NORMAL;
    case REALM_TOKEN_TYPE_UNKNOWN:
        return REALM_TOKEN_ATTR_UNKNOWN;
    case REALM_TOKEN_TYPE_CONTROL:
        return REALM_TOKEN_ATTR_CONTROL;
    case REALM_TOKEN_TYPE_USER_DEFINED:
        return REALM_TOKEN_ATTR_USER_DEFINED;
    case REALM_TOKEN_TYPE_UNUSED:
        return REALM_TOKEN_ATTR_UNUSED;
    case REALM_TOKEN_TYPE_BYTE:
        return REALM_TOKEN_ATTR_BYTE;
    default:
        return REALM_TOKEN_ATTR_UNDEFINED;
    }
}

/*
 * Token texts, scores and types. Texts are copied into one arena, each
 * NUL-terminated; an empty text becomes "[EMPTY_<id>]" as in llama.cpp.
 * Duplicate texts are an error (llama.cpp aborts on them).
 */
static int load_tokens(realm_tokenizer *tok, const realm_gguf *g)
{
    int64_t kv;
    uint64_t n;
    int rc = realm_gguf_get_arr(g, "tokenizer.ggml.tokens", REALM_GGUF_STRING, &kv, &n);
    if (rc == REALM_ERR_NOTFOUND)
        return realm__error(REALM_ERR_FORMAT, "no tokenizer.ggml.tokens: the file has no "
                                              "vocabulary");
    if (rc < 0)
        return metadata_error(REALM_ERR_FORMAT);
    if (n == 0)
        return realm__error(REALM_ERR_FORMAT, "tokenizer.ggml.tokens is empty");
    if (n > MAX_TOKENS)
        return realm__error(REALM_ERR_FORMAT,
                            "tokenizer.ggml.tokens has %" PRIu64 " entries (at most %d supported)",
                            n, MAX_TOKENS);
    const int32_t n_vocab = (int32_t)n;
    tok->n_vocab = n_vocab;

    uint64_t total = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        uint64_t len = realm_gguf_kv_arr_str(g, kv, (uint64_t)i).len;
        total += (len ? len : 24) + 1;
    }
    if (total >= UINT32_MAX)
        return realm__error(REALM_ERR_FORMAT,
                            "tokenizer.ggml.tokens: %" PRIu64 " bytes of token text is too much",
                            total);
    tok->text = malloc(total);
    tok->text_off = malloc(((size_t)n_vocab + 1) * sizeof *tok->text_off);
    tok->score = calloc((size_t)n_vocab, sizeof *tok->score);
    tok->ttype = malloc((size_t)n_vocab);
    tok->attr = malloc((size_t)n_vocab * sizeof *tok->attr);
    if (!tok->text || !tok->text_off || !tok->score || !tok->ttype || !tok->attr)
        return realm__error(REALM_ERR_NOMEM, "out of memory for %" PRId32 " tokens", n_vocab);
    if ((rc = realm__strmap_init(&tok->text_map, (uint32_t)n_vocab)) < 0)
        return rc;

    uint32_t off = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        realm_gguf_str s = realm_gguf_kv_arr_str(g, kv, (uint64_t)i);
        tok->text_off[i] = off;
        uint32_t len;
        if (s.len == 0)
            len = (uint32_t)sprintf(tok->text + off, "[EMPTY_%" PRId32 "]", i);
        else {
            len = (uint32_t)s.len;
            memcpy(tok->text + off, s.data, len);
            tok->text[off + len] = '\0';
        }
        if ((int)len > tok->max_token_len)
            tok->max_token_len = (int)len;
        int64_t got = realm__strmap_put(&tok->text_map, tok->text, off, len, i);
        if (got < 0)
            return (int)got;
        if (got != i) {
            size_t l;
            const char *t = tok_text(tok, (int32_t)got, &l);
            return realm__error(REALM_ERR_FORMAT,
                                "tokenizer.ggml.tokens: token %" PRId32 " has the same text as "
                                "token %" PRId64 " ('%.*s')",
                                i, got, (int)(l > 60 ? 60 : l), t);
        }
        off += len + 1;
    }
    tok->text_off[n_vocab] = off;

    /* Scores: optional, one float per token. */
    uint64_t n2;
    rc = realm_gguf_get_arr(g, "tokenizer.ggml.scores", REALM_GGUF_FLOAT32, &kv, &n2);
    if (rc == REALM_OK) {
        if (n2 != n)
            return realm__error(REALM_ERR_FORMAT,
                                "tokenizer.ggml.scores has %" PRIu64
                                " entries but there are %" PRIu64 " tokens",
                                n2, n);
        memcpy(tok->score, realm_gguf_kv_arr_data(g, kv), (size_t)n * sizeof(float));
    } else if (rc != REALM_ERR_NOTFOUND) {
        return metadata_error(REALM_ERR_FORMAT);
    }

    /* Token types: optional, int32 (some converters write uint32). */
    rc = realm_gguf_get_arr(g, "tokenizer.ggml.token_type", REALM_GGUF_INT32, &kv, &n2);
    if (rc == REALM_ERR_TYPE)
        rc = realm_gguf_get_arr(g, "tokenizer.ggml.token_type", REALM_GGUF_UINT32, &kv, &n2);
    if (rc == REALM_OK) {
        if (n2 != n)
            return realm__error(REALM_ERR_FORMAT,
                                "tokenizer.ggml.token_type has %" PRIu64
                                " entries but there are %" PRIu64 " tokens",
                                n2, n);
        const unsigned char *p = realm_gguf_kv_arr_data(g, kv);
        for (int32_t i = 0; i < n_vocab; i++) {
            int32_t t;
            memcpy(&t, p + (size_t)i * 4, 4);
            tok->ttype[i] = (t >= 0 && t < REALM_TOKEN_TYPE_COUNT) ? (uint8_t)t : 0;
            tok->attr[i] = type_to_attr(t);
        }
    } else if (rc == REALM_ERR_NOTFOUND) {
        for (int32_t i = 0; i < n_vocab; i++) {
            tok->ttype[i] = REALM_TOKEN_TYPE_NORMAL;
            tok->attr[i] = REALM_TOKEN_ATTR_NORMAL;
        }
    } else {
        return metadata_error(REALM_ERR_FORMAT);
    }
    return REALM_OK;
}

/* ---- special tokens ----------------------------------------------------- */

/* Texts by which llama.cpp recognises tokens whose ids the file may omit. */
static const char *const eot_names[] = {"<|eot_id|>",
                                        "<|im_end|>",
                                        "<|end|>",
                                        "<end_of_turn>",
                                        "<|endoftext|>",
                                        "<|end_of_text|>",
                                        "<EOT>",
                                        "_<EOT>",
                                        "[EOT]",
                                        "<\xef\xbd\x9c"
                                        "end\xe2\x96\x81of"
                                        "\xe2\x96\x81sentence\xef\xbd\x9c>",
                                        "<end_of_utterance>",
                                        NULL};
static const char *const eom_names[] = {"<|eom_id|>", NULL};
static const char *const fim_pre_names[] = {"<|fim_prefix|>",
                                            "<fim-prefix>",
                                            "<fim_prefix>",
                                            "<\xef\xbd\x9c"
                                            "fim\xe2\x96\x81"
                                            "begin\xef\xbd\x9c>",
                                            "<PRE>",
                                            "\xe2\x96\x81<PRE>",
                                            "<|code_prefix|>",
                                            "<|prefix|>",
                                            NULL};
static const char *const fim_suf_names[] = {"<|fim_suffix|>",
                                            "<fim-suffix>",
                                            "<fim_suffix>",
                                            "<\xef\xbd\x9c"
                                            "fim\xe2\x96\x81"
                                            "hole\xef\xbd\x9c>",
                                            "<SUF>",
                                            "\xe2\x96\x81<SUF>",
                                            "<|code_suffix|>",
                                            "<|suffix|>",
                                            NULL};
static const char *const fim_mid_names[] = {"<|fim_middle|>",
                                            "<fim-middle>",
                                            "<fim_middle>",
                                            "<\xef\xbd\x9c"
                                            "fim\xe2\x96\x81"
                                            "end\xef\xbd\x9c>",
                                            "<MID>",
                                            "\xe2\x96\x81<MID>",
                                            "<|code_middle|>",
                                            "<|middle|>",
                                            NULL};
static const char *const fim_pad_names[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>",
                                            "<PAD>",       "[PAD]",     NULL};
static const char *const fim_rep_names[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                            "<REPO>",       "<reponame>",    NULL};
static const char *const fim_sep_names[] = {"<|file_sep|>", NULL};
static const char *const eog_names[] = {"<|eot_id|>",
                                        "<|im_end|>",
                                        "<|end|>",
                                        "<|return|>",
                                        "<|call|>",
                                        "<|flush|>",
                                        "<|calls|>",
                                        "<end_of_turn>",
                                        "<|endoftext|>",
                                        "</s>",
                                        "<|eom_id|>",
                                        "<EOT>",
                                        "_<EOT>",
                                        "[EOT]",
                                        "[EOS]",
                                        "<|end_of_text|>",
                                        "<end_of_utterance>",
                                        NULL};
/* gpt-oss: always rendered, so always user-defined. */
static const char *const render_names[] = {"<|channel|>", "<|message|>", "<|start|>",
                                           "<|constrain|>", NULL};

/* Fill *id (if still unset) with the token of the first text in names that
 * the vocabulary has; that token becomes a control token. (llama.cpp takes
 * whichever its hash map yields first; list order is deterministic.) */
static void detect_by_name(realm_tokenizer *tok, realm_token *id, const char *const *names)
{
    if (*id != REALM_TOKEN_NULL)
        return;
    for (int i = 0; names[i] != NULL; i++) {
        int32_t t = find_text(tok, names[i]);
        if (t >= 0) {
            *id = t;
            tok->attr[t] |= REALM_TOKEN_ATTR_CONTROL;
            return;
        }
    }
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/*
 * The end-of-generation set: EOS, EOT, EOM, FIM pad/repo/sep, and every token
 * named in eog_names (made a control token). With gpt-oss's <|return|> and
 * <|call|> (or solar-open's <|calls|> and <|flush|>), <|end|> ends a message,
 * not generation: it leaves the set and becomes user-defined.
 */
static int build_eog(realm_tokenizer *tok)
{
    int32_t cap = 16, n = 0;
    int32_t *eog = malloc((size_t)cap * sizeof *eog);
    if (eog == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
#define ADD_EOG(x)                                                                                 \
    do {                                                                                           \
        if ((x) != REALM_TOKEN_NULL) {                                                             \
            if (n == cap) {                                                                        \
                int32_t *q = realloc(eog, (size_t)(cap *= 2) * sizeof *eog);                       \
                if (q == NULL) {                                                                   \
                    free(eog);                                                                     \
                    return realm__error(REALM_ERR_NOMEM, "out of memory");                         \
                }                                                                                  \
                eog = q;                                                                           \
            }                                                                                      \
            eog[n++] = (x);                                                                        \
        }                                                                                          \
    } while (0)
    ADD_EOG(tok->fim_pad);
    ADD_EOG(tok->fim_rep);
    ADD_EOG(tok->fim_sep);
    for (int k = 0; eog_names[k] != NULL; k++) {
        int32_t i = find_text(tok, eog_names[k]);
        if (i >= 0) {
            ADD_EOG(i);
            tok->attr[i] |= REALM_TOKEN_ATTR_CONTROL;
        }
    }
    ADD_EOG(tok->eos);
    ADD_EOG(tok->eot);
    ADD_EOG(tok->eom);
#undef ADD_EOG
    qsort(eog, (size_t)n, sizeof *eog, cmp_i32);
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++)
        if (m == 0 || eog[m - 1] != eog[i])
            eog[m++] = eog[i];
    n = m;

    bool has_return = false, has_call = false, has_flush = false;
    int32_t end_at = -1;
    for (int32_t i = 0; i < n; i++) {
        if (text_is(tok, eog[i], "<|return|>"))
            has_return = true;
        else if (text_is(tok, eog[i], "<|call|>") || text_is(tok, eog[i], "<|calls|>"))
            has_call = true;
        else if (text_is(tok, eog[i], "<|flush|>"))
            has_flush = true;
        else if (text_is(tok, eog[i], "<|end|>"))
            end_at = i;
    }
    if (end_at >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
        tok->attr[eog[end_at]] = REALM_TOKEN_ATTR_USER_DEFINED;
        memmove(eog + end_at, eog + end_at + 1, (size_t)(n - end_at - 1) * sizeof *eog);
        n--;
    }
    tok->eog = eog;
    tok->n_eog = n;
    return REALM_OK;
}

/* A special token for sorting: its text length and id. */
struct by_len {
    uint32_t len;
    int32_t id;
};

/* Longest text first, then lower id. */
static int cmp_by_len(const void *a, const void *b)
{
    const struct by_len *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/*
 * The tokens matched in input text (control, user-defined, unknown), ordered
 * by priority, and an index from their first two bytes to them.
 */
static int build_special(realm_tokenizer *tok)
{
    int32_t n = 0;
    for (int32_t i = 0; i < tok->n_vocab; i++)
        if (tok->attr[i] &
            (REALM_TOKEN_ATTR_CONTROL | REALM_TOKEN_ATTR_USER_DEFINED | REALM_TOKEN_ATTR_UNKNOWN))
            n++;
    tok->special = malloc(((size_t)n + 1) * sizeof *tok->special);
    tok->special_by_bucket = malloc(((size_t)n + 1) * sizeof *tok->special_by_bucket);
    tok->bucket_start = calloc(REALM__N_SPECIAL_BUCKETS + 1, sizeof *tok->bucket_start);
    if (!tok->special || !tok->special_by_bucket || !tok->bucket_start)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    struct by_len *order = malloc(((size_t)n + 1) * sizeof *order);
    if (order == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    n = 0;
    for (int32_t i = 0; i < tok->n_vocab; i++)
        if (tok->attr[i] &
            (REALM_TOKEN_ATTR_CONTROL | REALM_TOKEN_ATTR_USER_DEFINED | REALM_TOKEN_ATTR_UNKNOWN))
            order[n++] = (struct by_len){tok->text_off[i + 1] - tok->text_off[i], i};
    qsort(order, (size_t)n, sizeof *order, cmp_by_len);
    for (int32_t k = 0; k < n; k++)
        tok->special[k] = order[k].id;
    free(order);
    tok->n_special = n;

    /* Counting sort of the multi-byte ones into buckets of their first two
     * bytes, keeping priority order inside each bucket. */
    for (int b = 0; b < 256; b++)
        tok->special_1byte[b] = -1;
    for (int32_t k = 0; k < n; k++) {
        size_t len;
        const unsigned char *t = (const unsigned char *)tok_text(tok, tok->special[k], &len);
        tok->special_first[t[0]] = true;
        if (len == 1)
            tok->special_1byte[t[0]] = k;
        else
            tok->bucket_start[((t[0] << 8 | t[1]) % REALM__N_SPECIAL_BUCKETS) + 1]++;
    }
    for (int b = 0; b < REALM__N_SPECIAL_BUCKETS; b++)
        tok->bucket_start[b + 1] += tok->bucket_start[b];
    uint32_t *fill = malloc(REALM__N_SPECIAL_BUCKETS * sizeof *fill);
    if (fill == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    memcpy(fill, tok->bucket_start, REALM__N_SPECIAL_BUCKETS * sizeof *fill);
    for (int32_t k = 0; k < n; k++) {
        size_t len;
        const unsigned char *t = (const unsigned char *)tok_text(tok, tok->special[k], &len);
        if (len >= 2)
            tok->special_by_bucket[fill[(t[0] << 8 | t[1]) % REALM__N_SPECIAL_BUCKETS]++] = k;
    }
    free(fill);
    return REALM_OK;
}

/* ---- pieces ------------------------------------------------------------- */

/*
 * Each token's bytes (llama.cpp's token_to_piece with special = true):
 * control, unknown and user-defined tokens as stored; normal tokens with
 * U+2581 -> ' ' (SentencePiece, WordPiece) or mapped back to bytes (byte-level
 * BPE; a character outside GPT-2's table is kept as its UTF-8, where llama.cpp
 * writes "[UNK_BYTE_0x..]"); byte tokens <0xXX> as the byte; anything else
 * (unused, undefined) empty.
 */
static int build_pieces(realm_tokenizer *tok)
{
    const uint32_t total = tok->text_off[tok->n_vocab];
    tok->piece = malloc((size_t)total + 1);
    tok->piece_off = malloc(((size_t)tok->n_vocab + 1) * sizeof *tok->piece_off);
    if (!tok->piece || !tok->piece_off)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    uint32_t o = 0;
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        tok->piece_off[id] = o;
        size_t len;
        const char *t = tok_text(tok, id, &len);
        const uint32_t a = tok->attr[id];
        char *dst = tok->piece + o;
        size_t n = 0;
        if (a &
            (REALM_TOKEN_ATTR_UNKNOWN | REALM_TOKEN_ATTR_CONTROL | REALM_TOKEN_ATTR_USER_DEFINED)) {
            memcpy(dst, t, len);
            n = len;
        } else if (a & REALM_TOKEN_ATTR_NORMAL) {
            if (tok->type == REALM_VOCAB_BPE) {
                for (size_t i = 0; i < len;) {
                    uint32_t cp;
                    int k = realm__utf8_decode((const unsigned char *)t + i, len - i, &cp);
                    int b = k ? realm__cp_to_byte(cp) : -1;
                    if (b >= 0) {
                        dst[n++] = (char)b;
                        i += (size_t)k;
                    } else {
                        size_t m = k ? (size_t)k : 1;
                        memcpy(dst + n, t + i, m);
                        n += m;
                        i += m;
                    }
                }
            } else {
                for (size_t i = 0; i < len;) {
                    if (i + 3 <= len && memcmp(t + i, "\xe2\x96\x81", 3) == 0) {
                        dst[n++] = ' ';
                        i += 3;
                    } else {
                        dst[n++] = t[i++];
                    }
                }
            }
        } else if ((a & REALM_TOKEN_ATTR_BYTE) && tok->type != REALM_VOCAB_BPE) {
            unsigned v;
            char c;
            if (len == 6 && sscanf(t, "<0x%2x%c", &v, &c) == 2 && c == '>')
                dst[n++] = (char)v;
            else {
                memcpy(dst, t, len);
                n = len;
            }
        }
        o += (uint32_t)n;
    }
    tok->piece_off[tok->n_vocab] = o;
    return REALM_OK;
}

/* SentencePiece byte fallback: <0xXX>, else the one-byte token, else UNK. */
static void build_byte_tokens(realm_tokenizer *tok)
{
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int32_t id = find_text(tok, name);
        if (id < 0) {
            char one = (char)b;
            id = realm__strmap_find(&tok->text_map, tok->text, &one, 1);
        }
        tok->byte_token[b] = id >= 0 ? id : tok->unk;
    }
}

/* ---- load --------------------------------------------------------------- */

/*
 * Model defaults, then the metadata; see llama_vocab::impl::load. Returns 0
 * or an error with a message naming the key at fault.
 */
static int load(realm_tokenizer *tok, const realm_gguf *g)
{
    bool found;
    int rc = get_str(g, "tokenizer.ggml.model", tok->model, sizeof tok->model, &found);
    if (rc < 0)
        return rc;
    if (!found)
        return realm__error(REALM_ERR_FORMAT, "no tokenizer.ggml.model: the file has no "
                                              "tokenizer");
    char pre[sizeof tok->pre];
    bool has_pre;
    if ((rc = get_str(g, "tokenizer.ggml.pre", pre, sizeof pre, &has_pre)) < 0)
        return rc;
    snprintf(tok->pre, sizeof tok->pre, "%s", has_pre && pre[0] ? pre : "default");

    tok->bos = tok->eos = tok->eot = tok->eom = tok->unk = REALM_TOKEN_NULL;
    tok->sep = tok->pad = tok->mask = tok->nl = REALM_TOKEN_NULL;
    tok->fim_pre = tok->fim_suf = tok->fim_mid = REALM_TOKEN_NULL;
    tok->fim_pad = tok->fim_rep = tok->fim_sep = REALM_TOKEN_NULL;
    realm_token def_bos, def_eos, def_unk, def_sep, def_pad, def_mask;
    if (strcmp(tok->model, "llama") == 0) {
        tok->type = REALM_VOCAB_SPM;
        def_bos = 1, def_eos = 2, def_unk = 0;
        def_sep = def_pad = def_mask = REALM_TOKEN_NULL;
        tok->add_space_prefix = true;
        tok->add_bos = true;
    } else if (strcmp(tok->model, "gpt2") == 0) {
        tok->type = REALM_VOCAB_BPE;
        /* llama.cpp's defaults (Falcon's <|endoftext|>) when the file has none. */
        def_bos = 11, def_eos = 11;
        def_unk = def_sep = def_pad = def_mask = REALM_TOKEN_NULL;
        tok->clean_spaces = true;
    } else if (strcmp(tok->model, "bert") == 0) {
        tok->type = REALM_VOCAB_WPM;
        def_bos = 101, def_eos = REALM_TOKEN_NULL, def_unk = 100;
        def_sep = 102, def_pad = 0, def_mask = 103;
        tok->clean_spaces = true;
        tok->add_bos = true;
        tok->add_sep = true;
    } else if (strcmp(tok->model, "t5") == 0 || strcmp(tok->model, "rwkv") == 0 ||
               strcmp(tok->model, "plamo2") == 0 || strcmp(tok->model, "none") == 0 ||
               strcmp(tok->model, "no_vocab") == 0) {
        return realm__error(REALM_ERR_UNSUPPORTED,
                            "tokenizer model '%s' "
                            "(tokenizer.ggml.model) is not supported",
                            tok->model);
    } else {
        return realm__error(REALM_ERR_UNSUPPORTED,
                            "unknown tokenizer model '%s' "
                            "(tokenizer.ggml.model)",
                            tok->model);
    }

    if (tok->type == REALM_VOCAB_BPE) {
        /* Old conversions without tokenizer.ggml.pre get the "default"
         * regexes, as in llama.cpp (which warns that quality suffers). */
        unsigned flags = 0;
        if ((rc = realm__pretok_new(tok->pre, &tok->pretok, &flags)) < 0)
            return rc;
        tok->ignore_merges = flags & REALM__PRE_IGNORE_MERGES;
        if (flags & REALM__PRE_ADD_BOS)
            tok->add_bos = true;
        if (flags & REALM__PRE_ADD_SEP)
            tok->add_sep = true;
        if (flags & REALM__PRE_NO_CLEAN_SPACES)
            tok->clean_spaces = false;
        if (flags & REALM__PRE_NO_BOS_ID)
            def_bos = REALM_TOKEN_NULL;
    }
    if ((rc = get_bool(g, "tokenizer.ggml.add_space_prefix", &tok->add_space_prefix)) < 0)
        return rc;

    if ((rc = load_tokens(tok, g)) < 0)
        return rc;
    const int32_t n = tok->n_vocab;

    if (tok->type == REALM_VOCAB_BPE) {
        int64_t kv;
        uint64_t n_merges;
        rc = realm_gguf_get_arr(g, "tokenizer.ggml.merges", REALM_GGUF_STRING, &kv, &n_merges);
        if (rc == REALM_ERR_NOTFOUND)
            return realm__error(REALM_ERR_FORMAT, "no tokenizer.ggml.merges: a byte-level BPE "
                                                  "(gpt2) vocabulary needs its merges");
        if (rc < 0)
            return metadata_error(REALM_ERR_FORMAT);
        if ((rc = realm__bpe_build(tok, g, kv, n_merges)) < 0)
            return rc;
    }

    /* Defaults that do not exist in a small vocabulary are no defaults. */
    tok->bos = def_bos < n ? def_bos : REALM_TOKEN_NULL;
    tok->eos = def_eos < n ? def_eos : REALM_TOKEN_NULL;
    tok->unk = def_unk < n ? def_unk : REALM_TOKEN_NULL;
    tok->sep = def_sep < n ? def_sep : REALM_TOKEN_NULL;
    tok->pad = def_pad < n ? def_pad : REALM_TOKEN_NULL;
    tok->mask = def_mask < n ? def_mask : REALM_TOKEN_NULL;
    static const struct {
        const char *key;
        size_t field;
        bool must_be_valid;
    } ids[] = {
        {"tokenizer.ggml.bos_token_id", offsetof(realm_tokenizer, bos), true},
        {"tokenizer.ggml.eos_token_id", offsetof(realm_tokenizer, eos), true},
        {"tokenizer.ggml.eot_token_id", offsetof(realm_tokenizer, eot), true},
        {"tokenizer.ggml.eom_token_id", offsetof(realm_tokenizer, eom), true},
        {"tokenizer.ggml.unknown_token_id", offsetof(realm_tokenizer, unk), true},
        {"tokenizer.ggml.seperator_token_id", offsetof(realm_tokenizer, sep), false},
        {"tokenizer.ggml.padding_token_id", offsetof(realm_tokenizer, pad), false},
        {"tokenizer.ggml.mask_token_id", offsetof(realm_tokenizer, mask), false},
        {"tokenizer.ggml.fim_pre_token_id", offsetof(realm_tokenizer, fim_pre), false},
        {"tokenizer.ggml.fim_suf_token_id", offsetof(realm_tokenizer, fim_suf), false},
        {"tokenizer.ggml.fim_mid_token_id", offsetof(realm_tokenizer, fim_mid), false},
        {"tokenizer.ggml.fim_pad_token_id", offsetof(realm_tokenizer, fim_pad), false},
        {"tokenizer.ggml.fim_rep_token_id", offsetof(realm_tokenizer, fim_rep), false},
        {"tokenizer.ggml.fim_sep_token_id", offsetof(realm_tokenizer, fim_sep), false},
        {"tokenizer.ggml.prefix_token_id", offsetof(realm_tokenizer, fim_pre), false},
        {"tokenizer.ggml.suffix_token_id", offsetof(realm_tokenizer, fim_suf), false},
        {"tokenizer.ggml.middle_token_id", offsetof(realm_tokenizer, fim_mid), false},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        realm_token *id = (realm_token *)((char *)tok + ids[i].field);
        if ((rc = get_id(g, ids[i].key, n, ids[i].must_be_valid, id)) < 0)
            return rc;
    }
    if ((rc = get_bool(g, "tokenizer.ggml.add_bos_token", &tok->add_bos)) < 0 ||
        (rc = get_bool(g, "tokenizer.ggml.add_eos_token", &tok->add_eos)) < 0 ||
        (rc = get_bool(g, "tokenizer.ggml.add_sep_token", &tok->add_sep)) < 0)
        return rc;
    if (tok->add_bos && tok->bos == REALM_TOKEN_NULL && tok->type != REALM_VOCAB_WPM)
        return realm__error(REALM_ERR_FORMAT, "tokenizer.ggml.add_bos_token is set but the "
                                              "vocabulary has no BOS token");
    if (tok->add_eos && tok->eos == REALM_TOKEN_NULL)
        return realm__error(REALM_ERR_FORMAT, "tokenizer.ggml.add_eos_token is set but the "
                                              "vocabulary has no EOS token");

    /* Tokens recognised by their text when the file does not name them. */
    detect_by_name(tok, &tok->eot, eot_names);
    detect_by_name(tok, &tok->eom, eom_names);
    detect_by_name(tok, &tok->fim_pre, fim_pre_names);
    detect_by_name(tok, &tok->fim_suf, fim_suf_names);
    detect_by_name(tok, &tok->fim_mid, fim_mid_names);
    detect_by_name(tok, &tok->fim_pad, fim_pad_names);
    detect_by_name(tok, &tok->fim_rep, fim_rep_names);
    detect_by_name(tok, &tok->fim_sep, fim_sep_names);
    for (int32_t i = 0; i < n; i++) {
        size_t len;
        const char *t = tok_text(tok, i, &len);
        if ((tok->attr[i] & REALM_TOKEN_ATTR_CONTROL) && memmem(t, len, "unused", 6) != NULL)
            tok->attr[i] |= REALM_TOKEN_ATTR_UNUSED;
    }
    if ((rc = build_eog(tok)) < 0)
        return rc;
    for (int k = 0; render_names[k] != NULL; k++) {
        int32_t i = find_text(tok, render_names[k]);
        if (i >= 0)
            tok->attr[i] = REALM_TOKEN_ATTR_USER_DEFINED;
    }

    /* Per-model attributes llama.cpp sets from names (not in GGUF files). */
    char name[128], arch[64];
    if ((rc = get_str(g, "general.name", name, sizeof name, &found)) < 0 ||
        (rc = get_str(g, "general.architecture", arch, sizeof arch, &found)) < 0)
        return rc;
    for (char *c = name; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    if (strstr(tok->pre, "jina-v2-de") || strstr(tok->pre, "jina-v2-es") ||
        strstr(tok->pre, "jina-v2-code") || strstr(arch, "nomic-bert-moe") ||
        strstr(arch, "jina-bert-v3")) {
        int32_t id = find_text(tok, "<mask>");
        if (id >= 0)
            tok->attr[id] |= REALM_TOKEN_ATTR_LSTRIP;
    } else if (strstr(name, "phi-3") || strstr(name, "phi3")) {
        for (int32_t i = 0; i < n; i++)
            if (tok->attr[i] & (REALM_TOKEN_ATTR_CONTROL | REALM_TOKEN_ATTR_USER_DEFINED |
                                REALM_TOKEN_ATTR_UNKNOWN))
                tok->attr[i] |= REALM_TOKEN_ATTR_RSTRIP;
        int32_t id = find_text(tok, "</s>");
        if (id >= 0)
            tok->attr[id] |= REALM_TOKEN_ATTR_RSTRIP;
        static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (int i = 0; i < 3; i++)
            if ((id = find_text(tok, keep[i])) >= 0)
                tok->attr[id] &= ~(uint32_t)REALM_TOKEN_ATTR_RSTRIP;
    } else if (strstr(name, "modern-bert")) {
        int32_t id = find_text(tok, "[MASK]");
        if (id >= 0)
            tok->attr[id] |= REALM_TOKEN_ATTR_LSTRIP;
    }

    if ((rc = build_special(tok)) < 0 || (rc = build_pieces(tok)) < 0)
        return rc;
    build_byte_tokens(tok);
    if (tok->type == REALM_VOCAB_SPM) {
        tok->spm_split_words = true;
        for (int32_t i = 0; i < n && tok->spm_split_words; i++) {
            size_t len;
            const char *t = tok_text(tok, i, &len);
            for (const char *p = t + 1; (p = memmem(p, len - (size_t)(p - t), "\xe2\x96\x81", 3));
                 p++) {
                if (p - t < 3 || memcmp(p - 3, "\xe2\x96\x81", 3) != 0) {
                    tok->spm_split_words = false;
                    break;
                }
            }
        }
    }

    /* The newline token: <0x0A> for SentencePiece, what "\n" tokenizes to
     * for byte-level BPE, the padding token for WordPiece (as llama.cpp). */
    if (tok->type == REALM_VOCAB_SPM) {
        tok->nl = tok->byte_token['\n'] >= 0 ? tok->byte_token['\n'] : tok->pad;
    } else if (tok->type == REALM_VOCAB_WPM) {
        tok->nl = tok->pad;
    } else {
        realm_token ids_nl[8];
        int32_t k = realm_tokenize(tok, "\n", 1, 0, ids_nl, 8);
        tok->nl = k > 0 ? ids_nl[0] : tok->pad;
    }
    return REALM_OK;
}

int realm_tokenizer_load(const realm_gguf *g, realm_tokenizer **out)
{
    if (out == NULL)
        return realm__error(REALM_ERR_INVAL, "realm_tokenizer_load: out is NULL");
    *out = NULL;
    if (g == NULL)
        return realm__error(REALM_ERR_INVAL, "realm_tokenizer_load: no GGUF");
    realm_tokenizer *tok = calloc(1, sizeof *tok);
    if (tok == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    int rc = load(tok, g);
    if (rc < 0) {
        realm_tokenizer_free(tok);
        return rc;
    }
    *out = tok;
    return REALM_OK;
}

void realm_tokenizer_free(realm_tokenizer *tok)
{
    if (tok == NULL)
        return;
    free(tok->text);
    free(tok->text_off);
    free(tok->score);
    free(tok->ttype);
    free(tok->attr);
    realm__strmap_free(&tok->text_map);
    free(tok->piece);
    free(tok->piece_off);
    realm__bpe_free(tok);
    realm__pretok_free(tok->pretok);
    free(tok->special);
    free(tok->bucket_start);
    free(tok->special_by_bucket);
    free(tok->eog);
    free(tok);
}

/* ---- queries ------------------------------------------------------------ */

realm_vocab_type realm_tokenizer_type(const realm_tokenizer *tok)
{
    return tok->type;
}

const char *realm_tokenizer_model(const realm_tokenizer *tok)
{
    return tok->model;
}

const char *realm_tokenizer_pre(const realm_tokenizer *tok)
{
    return tok->pre;
}

int32_t realm_tokenizer_n_vocab(const realm_tokenizer *tok)
{
    return tok->n_vocab;
}

realm_token realm_tokenizer_bos(const realm_tokenizer *tok)
{
    return tok->bos;
}

realm_token realm_tokenizer_eos(const realm_tokenizer *tok)
{
    return tok->eos;
}

realm_token realm_tokenizer_eot(const realm_tokenizer *tok)
{
    return tok->eot;
}

realm_token realm_tokenizer_eom(const realm_tokenizer *tok)
{
    return tok->eom;
}

realm_token realm_tokenizer_unk(const realm_tokenizer *tok)
{
    return tok->unk;
}

realm_token realm_tokenizer_sep(const realm_tokenizer *tok)
{
    return tok->sep;
}

realm_token realm_tokenizer_pad(const realm_tokenizer *tok)
{
    return tok->pad;
}

realm_token realm_tokenizer_nl(const realm_tokenizer *tok)
{
    return tok->nl;
}

bool realm_tokenizer_add_bos(const realm_tokenizer *tok)
{
    return tok->add_bos;
}

bool realm_tokenizer_add_eos(const realm_tokenizer *tok)
{
    return tok->add_eos;
}

bool realm_tokenizer_is_eog(const realm_tokenizer *tok, realm_token id)
{
    if (id < 0)
        return false;
    return bsearch(&id, tok->eog, (size_t)tok->n_eog, sizeof *tok->eog, cmp_i32) != NULL;
}

int32_t realm_tokenizer_eog(const realm_tokenizer *tok, realm_token *out, int32_t n_max)
{
    for (int32_t i = 0; i < tok->n_eog && i < n_max; i++)
        out[i] = tok->eog[i];
    return tok->n_eog;
}

const char *realm_token_text(const realm_tokenizer *tok, realm_token id, size_t *len)
{
    if (id < 0 || id >= tok->n_vocab) {
        if (len)
            *len = 0;
        return NULL;
    }
    size_t l;
    const char *t = tok_text(tok, id, &l);
    if (len)
        *len = l;
    return t;
}

float realm_token_score(const realm_tokenizer *tok, realm_token id)
{
    return (id >= 0 && id < tok->n_vocab) ? tok->score[id] : 0.0f;
}

realm_token_type realm_token_get_type(const realm_tokenizer *tok, realm_token id)
{
    return (id >= 0 && id < tok->n_vocab) ? (realm_token_type)tok->ttype[id]
                                          : REALM_TOKEN_TYPE_UNDEFINED;
}

uint32_t realm_token_attr(const realm_tokenizer *tok, realm_token id)
{
    return (id >= 0 && id < tok->n_vocab) ? tok->attr[id] : 0;
}

realm_token realm_tokenizer_find(const realm_tokenizer *tok, const char *text, size_t len)
{
    if (text == NULL)
        return REALM_TOKEN_NULL;
    return realm__strmap_find(&tok->text_map, tok->text, text, len);
}
