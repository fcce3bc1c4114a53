/*
 * Fixtures for chat prompts tokenized with their templates' special tokens:
 * vocabularies that hold those tokens, tiny random-weight LLaMA models on
 * them, the conversations of tests/data/chat_prompt_ids.txt, and a reader
 * for the token ids llama.cpp gave (tests/data/README.md says how they were
 * made).
 *
 *     chat_fixture_vocab(getenv("REALM_TESTDATA"), "chatml", "/tmp/x.gguf");
 *     size_t n;
 *     const realm_chat_message *msgs = chat_fixture_conversation(2, &n);
 *     realm_token want[256];
 *     int32_t n_want = chat_fixture_ref_ids(ids_path, "chatml", 2, want, 256);
 *
 * Kinds (each is also the name of the Realm chat template that the file's
 * tokenizer.chat_template holds, replacing any Jinja source, so detection
 * picks it):
 *
 *   phi3        vocab/ggml-vocab-phi-3.gguf (<|user|>, <|end|>,
 *               <|assistant|>, <|system|> are already control tokens).
 *   llama2      vocab/ggml-vocab-llama-spm.gguf (<s>, </s> control).
 *   chatml      ggml-vocab-gpt-2.gguf + <|im_start|>, <|im_end|>; EOS is
 *               <|im_end|>.
 *   llama3      ggml-vocab-gpt-2.gguf + <|begin_of_text|>, <|end_of_text|>,
 *               <|start_header_id|>, <|end_header_id|>, <|eot_id|>; BOS
 *               <|begin_of_text|>, EOS <|end_of_text|>, EOT <|eot_id|>,
 *               add_bos_token true.
 *   mistral-v7  ggml-vocab-llama-spm.gguf + [INST], [/INST],
 *               [SYSTEM_PROMPT], [/SYSTEM_PROMPT].
 *   gemma       ggml-vocab-llama-spm.gguf + <start_of_turn>, <end_of_turn>.
 *
 * Added tokens are appended after the last id as control tokens (type 3),
 * with score -1000 where the vocabulary has scores (what Phi-3 gives its
 * control tokens). Merges, the pre-tokenizer and general.name are unchanged
 * (Phi-3's "Phi3" gives its special tokens RSTRIP, in Realm as in
 * llama.cpp); a vocabulary file keeps every other key of its source too.
 *
 * The models: architecture llama, n_embd 64, 1 layer, 4 heads, 1 KV head
 * (head size 16), feed-forward 128, context 512, all F32, with an output
 * matrix of their own (a tied one would make the model repeat its input);
 * weights uniform random from a seed fixed per kind, so every run writes
 * the same bytes. Only the tokenizer.* keys and general.name come from the
 * source vocabulary.
 *
 * Every function returns 0 (or a count) or a negative realm error code with
 * a message in realm_last_error(). Needs the src/ include directory (tests
 * and tests/tools have it) and librealm.
 */
#ifndef REALM_TEST_CHAT_FIXTURES_H
#define REALM_TEST_CHAT_FIXTURES_H

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "realm/chat.h"
#include "realm/error.h"
#include "realm/gguf.h"
#include "realm/tokenizer.h"

#define CHAT_FIXTURE_N_KINDS   6
#define CHAT_FIXTURE_N_CONVS   3
#define CHAT_FIXTURE_MAX_ADDED 5

typedef struct chat_fixture_spec_ {
    const char *kind;
    const char *vocab; /* under testdata/vocab */
    const char *added[CHAT_FIXTURE_MAX_ADDED + 1];
    /* Texts of the tokens to name as BOS / EOS / EOT; NULL keeps the file's. */
    const char *bos, *eos, *eot;
    bool add_bos; /* set tokenizer.ggml.add_bos_token = true */
} chat_fixture_spec_;

static const chat_fixture_spec_ chat_fixture_specs_[CHAT_FIXTURE_N_KINDS] = {
    {"phi3", "ggml-vocab-phi-3.gguf", {NULL}, NULL, NULL, NULL, false},
    {"llama2", "ggml-vocab-llama-spm.gguf", {NULL}, NULL, NULL, NULL, false},
    {"chatml",
     "ggml-vocab-gpt-2.gguf",
     {"<|im_start|>", "<|im_end|>", NULL},
     NULL,
     "<|im_end|>",
     NULL,
     false},
    {"llama3",
     "ggml-vocab-gpt-2.gguf",
     {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
      "<|eot_id|>", NULL},
     "<|begin_of_text|>",
     "<|end_of_text|>",
     "<|eot_id|>",
     true},
    {"mistral-v7",
     "ggml-vocab-llama-spm.gguf",
     {"[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", NULL},
     NULL,
     NULL,
     NULL,
     false},
    {"gemma",
     "ggml-vocab-llama-spm.gguf",
     {"<start_of_turn>", "<end_of_turn>", NULL},
     NULL,
     NULL,
     NULL,
     false},
};

/* The model shape. */
#define CHAT_FIXTURE_N_EMBD  64
#define CHAT_FIXTURE_N_LAYER 1
#define CHAT_FIXTURE_N_HEAD  4
#define CHAT_FIXTURE_N_KV    1
#define CHAT_FIXTURE_N_FF    128
#define CHAT_FIXTURE_N_CTX   512

/* ---- conversations --------------------------------------------------------- */

static const realm_chat_message chat_fixture_conv1_[] = {
    {REALM_CHAT_USER, "Hello there"},
};
static const realm_chat_message chat_fixture_conv2_[] = {
    {REALM_CHAT_SYSTEM, "You are a helpful assistant."},
    {REALM_CHAT_USER, "What is 2+2?"},
    {REALM_CHAT_ASSISTANT, "4"},
    {REALM_CHAT_USER, "And 3+3?"},
};
/* Newline, double spaces, a tab, é and U+1F999 (llama). */
static const realm_chat_message chat_fixture_conv3_[] = {
    {REALM_CHAT_USER, "multi\nline  text with  spaces\tand \xc3\xa9mojis \xf0\x9f\xa6\x99"},
};

/*
 * Conversation `index` (1..CHAT_FIXTURE_N_CONVS, as numbered in the ids
 * file): its messages (static storage) and their count in *n. The reference
 * ids are for the conversation rendered with add_generation_prompt = true.
 * NULL (and *n = 0) for another index.
 */
static inline const realm_chat_message *chat_fixture_conversation(int index, size_t *n)
{
#define CHAT_FIXTURE_CONV_(a) (*n = sizeof(a) / sizeof(a)[0], (a))
    switch (index) {
    case 1:
        return CHAT_FIXTURE_CONV_(chat_fixture_conv1_);
    case 2:
        return CHAT_FIXTURE_CONV_(chat_fixture_conv2_);
    case 3:
        return CHAT_FIXTURE_CONV_(chat_fixture_conv3_);
    default:
        *n = 0;
        return NULL;
    }
#undef CHAT_FIXTURE_CONV_
}

/* ---- writing the files ------------------------------------------------------ */

/* Kind i (0 <= i < CHAT_FIXTURE_N_KINDS), in the order of the ids file: "phi3",
 * "llama2", "chatml", "llama3", "mistral-v7", "gemma"; NULL past the end. */
static inline const char *chat_fixture_kind(int i)
{
    return i >= 0 && i < CHAT_FIXTURE_N_KINDS ? chat_fixture_specs_[i].kind : NULL;
}

static inline const chat_fixture_spec_ *chat_fixture_spec_find_(const char *kind)
{
    for (int i = 0; kind != NULL && i < CHAT_FIXTURE_N_KINDS; i++)
        if (strcmp(chat_fixture_specs_[i].kind, kind) == 0)
            return &chat_fixture_specs_[i];
    return NULL;
}

/* xorshift64 seeded from the kind's name (FNV-1a), so each kind's weights
 * are fixed. Uniform in [-1, 1). */
static inline float chat_fixture_rand_(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return (float)((double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static inline uint64_t chat_fixture_seed_(const char *kind)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)kind; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h ? h : 1;
}

/* The id of the token with this text among strs[0..n), or -1. */
static inline int64_t chat_fixture_find_(const realm_gguf_str *strs, uint64_t n, const char *text)
{
    size_t len = strlen(text);
    for (uint64_t i = n; i-- > 0;)
        if (strs[i].len == len && memcmp(strs[i].data, text, len) == 0)
            return (int64_t)i;
    return -1;
}

/*
 * The tokenizer arrays with the added tokens appended (tokens, token_type
 * and scores when present), and the special ids named by the spec. Arrays
 * are copied by the writer; *tokens_out keeps pointing into g for the
 * caller to free after the write.
 */
static inline int chat_fixture_put_vocab_(realm_gguf_writer *w, const realm_gguf *g,
                                          const chat_fixture_spec_ *k, realm_gguf_str **tokens_out)
{
    int64_t kv;
    uint64_t n;
    int rc = realm_gguf_get_arr(g, "tokenizer.ggml.tokens", REALM_GGUF_STRING, &kv, &n);
    if (rc < 0)
        return rc;
    uint64_t n_add = 0;
    while (k->added[n_add] != NULL)
        n_add++;
    const uint64_t n_all = n + n_add;
    realm_gguf_str *tokens = malloc((size_t)n_all * sizeof *tokens);
    *tokens_out = tokens;
    if (tokens == NULL)
        return realm__error(REALM_ERR_NOMEM, "chat fixture: out of memory");
    for (uint64_t i = 0; i < n; i++)
        tokens[i] = realm_gguf_kv_arr_str(g, kv, i);
    for (uint64_t j = 0; j < n_add; j++) {
        if (chat_fixture_find_(tokens, n + j, k->added[j]) >= 0)
            return realm__error(REALM_ERR_EXISTS, "chat fixture %s: %s already has token '%s'",
                                k->kind, k->vocab, k->added[j]);
        tokens[n + j] = (realm_gguf_str){k->added[j], strlen(k->added[j])};
    }

    if (n_add > 0) {
        if ((rc = realm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", tokens, n_all)) < 0)
            return rc;
        /* token_type: int32 (some converters write uint32: kept as is). */
        realm_gguf_type tt = REALM_GGUF_INT32;
        rc = realm_gguf_get_arr(g, "tokenizer.ggml.token_type", tt, &kv, &n);
        if (rc == REALM_ERR_TYPE) {
            tt = REALM_GGUF_UINT32;
            rc = realm_gguf_get_arr(g, "tokenizer.ggml.token_type", tt, &kv, &n);
        }
        if (rc < 0 && rc != REALM_ERR_NOTFOUND)
            return rc;
        int32_t *types = malloc((size_t)n_all * sizeof *types);
        if (types == NULL)
            return realm__error(REALM_ERR_NOMEM, "chat fixture: out of memory");
        if (rc == REALM_OK)
            memcpy(types, realm_gguf_kv_arr_data(g, kv), (size_t)n * sizeof *types);
        else
            for (uint64_t i = 0; i < n; i++)
                types[i] = REALM_TOKEN_TYPE_NORMAL;
        for (uint64_t j = 0; j < n_add; j++)
            types[n + j] = REALM_TOKEN_TYPE_CONTROL;
        rc = realm_gguf_set_arr(w, "tokenizer.ggml.token_type", tt, types, n_all);
        free(types);
        if (rc < 0)
            return rc;

        rc = realm_gguf_get_arr(g, "tokenizer.ggml.scores", REALM_GGUF_FLOAT32, &kv, &n);
        if (rc == REALM_OK) {
            float *scores = malloc((size_t)n_all * sizeof *scores);
            if (scores == NULL)
                return realm__error(REALM_ERR_NOMEM, "chat fixture: out of memory");
            memcpy(scores, realm_gguf_kv_arr_data(g, kv), (size_t)n * sizeof *scores);
            for (uint64_t j = 0; j < n_add; j++)
                scores[n + j] = -1000.0f;
            rc = realm_gguf_set_arr(w, "tokenizer.ggml.scores", REALM_GGUF_FLOAT32, scores, n_all);
            free(scores);
            if (rc < 0)
                return rc;
        } else if (rc != REALM_ERR_NOTFOUND) {
            return rc;
        }
    }

    const struct {
        const char *key, *text;
    } ids[] = {
        {"tokenizer.ggml.bos_token_id", k->bos},
        {"tokenizer.ggml.eos_token_id", k->eos},
        {"tokenizer.ggml.eot_token_id", k->eot},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        if (ids[i].text == NULL)
            continue;
        int64_t id = chat_fixture_find_(tokens, n_all, ids[i].text);
        if (id < 0)
            return realm__error(REALM_ERR_NOTFOUND, "chat fixture %s: no token '%s'", k->kind,
                                ids[i].text);
        if ((rc = realm_gguf_set_u32(w, ids[i].key, (uint32_t)id)) < 0)
            return rc;
    }
    if (k->add_bos && (rc = realm_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", true)) < 0)
        return rc;
    return realm_gguf_set_str(w, "tokenizer.chat_template", k->kind, strlen(k->kind));
}

/* The model's hyper-parameters and tensors; *weights_out holds their data
 * (borrowed by the writer until the write) for the caller to free. */
static inline int chat_fixture_put_model_(realm_gguf_writer *w, const chat_fixture_spec_ *k,
                                          uint64_t n_vocab, float **weights_out)
{
    const int64_t E = CHAT_FIXTURE_N_EMBD, F = CHAT_FIXTURE_N_FF;
    const int64_t hd = E / CHAT_FIXTURE_N_HEAD, kvd = hd * CHAT_FIXTURE_N_KV;
    const struct {
        const char *key;
        uint32_t v;
    } u32s[] = {
        {"general.file_type", 0}, /* all F32 */
        {"llama.context_length", CHAT_FIXTURE_N_CTX},
        {"llama.embedding_length", CHAT_FIXTURE_N_EMBD},
        {"llama.block_count", CHAT_FIXTURE_N_LAYER},
        {"llama.feed_forward_length", CHAT_FIXTURE_N_FF},
        {"llama.rope.dimension_count", (uint32_t)hd},
        {"llama.attention.head_count", CHAT_FIXTURE_N_HEAD},
        {"llama.attention.head_count_kv", CHAT_FIXTURE_N_KV},
        {"llama.vocab_size", (uint32_t)n_vocab},
    };
    int rc;
    for (size_t i = 0; i < sizeof u32s / sizeof u32s[0]; i++)
        if ((rc = realm_gguf_set_u32(w, u32s[i].key, u32s[i].v)) < 0)
            return rc;
    if ((rc = realm_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f)) < 0 ||
        (rc = realm_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f)) < 0)
        return rc;

    /* name, ne[0], ne[1] (1-D when 0), scale of the uniform values (0: norm
     * weights, 1 + small noise). The output's scale makes logits of standard
     * deviation about 2: sampling is neither flat nor one-token. */
    const struct {
        const char *name;
        int64_t ne0, ne1;
        float scale;
    } t[] = {
        {"token_embd.weight", E, (int64_t)n_vocab, 1.0f},
        {"blk.0.attn_norm.weight", E, 0, 0},
        {"blk.0.attn_q.weight", E, E, 0.2f},
        {"blk.0.attn_k.weight", E, kvd, 0.2f},
        {"blk.0.attn_v.weight", E, kvd, 0.2f},
        {"blk.0.attn_output.weight", E, E, 0.2f},
        {"blk.0.ffn_norm.weight", E, 0, 0},
        {"blk.0.ffn_gate.weight", E, F, 0.2f},
        {"blk.0.ffn_up.weight", E, F, 0.2f},
        {"blk.0.ffn_down.weight", F, E, 0.2f},
        {"output_norm.weight", E, 0, 0},
        {"output.weight", E, (int64_t)n_vocab, 0.5f},
    };
    const size_t n_t = sizeof t / sizeof t[0];
    size_t total = 0;
    for (size_t i = 0; i < n_t; i++)
        total += (size_t)(t[i].ne0 * (t[i].ne1 ? t[i].ne1 : 1));
    float *data = malloc(total * sizeof *data);
    *weights_out = data;
    if (data == NULL)
        return realm__error(REALM_ERR_NOMEM, "chat fixture: out of memory for %zu weights", total);
    uint64_t s = chat_fixture_seed_(k->kind);
    float *p = data;
    for (size_t i = 0; i < n_t; i++) {
        const int64_t ne[2] = {t[i].ne0, t[i].ne1};
        const size_t cnt = (size_t)(ne[0] * (ne[1] ? ne[1] : 1));
        for (size_t j = 0; j < cnt; j++)
            p[j] = t[i].scale > 0 ? t[i].scale * chat_fixture_rand_(&s)
                                  : 1.0f + 0.1f * chat_fixture_rand_(&s);
        if ((rc = realm_gguf_add_tensor(w, t[i].name, ne[1] ? 2 : 1, ne, REALM_TYPE_F32, p)) < 0)
            return rc;
        p += cnt;
    }
    return REALM_OK;
}

static inline int chat_fixture_write_(const char *testdata_dir, const char *kind,
                                      const char *out_path, bool with_weights)
{
    const chat_fixture_spec_ *k = chat_fixture_spec_find_(kind);
    if (k == NULL)
        return realm__error(REALM_ERR_INVAL,
                            "chat fixture: unknown kind '%s' (phi3, llama2, chatml, llama3, "
                            "mistral-v7, gemma)",
                            kind ? kind : "(null)");
    if (testdata_dir == NULL || out_path == NULL)
        return realm__error(REALM_ERR_INVAL, "chat fixture: NULL path");
    char src[4096];
    snprintf(src, sizeof src, "%s/vocab/%s", testdata_dir, k->vocab);

    realm_gguf *g = NULL;
    realm_gguf_writer *w = NULL;
    realm_gguf_str *tokens = NULL;
    float *weights = NULL;
    int rc = realm_gguf_open(src, &g);
    if (rc < 0 || (rc = realm_gguf_writer_new(&w)) < 0)
        goto done;
    if (with_weights && (rc = realm_gguf_set_str(w, "general.architecture", "llama", 5)) < 0)
        goto done;
    /* A vocabulary keeps every key; a model only the tokenizer and the name
     * (which decides Phi-3's RSTRIP). */
    for (int64_t i = 0; i < realm_gguf_n_kv(g); i++) {
        const char *key = realm_gguf_kv_key(g, i);
        if (with_weights && strncmp(key, "tokenizer.", 10) != 0 && strcmp(key, "general.name") != 0)
            continue;
        if ((rc = realm_gguf_copy_kv(w, g, i)) < 0)
            goto done;
    }
    if ((rc = chat_fixture_put_vocab_(w, g, k, &tokens)) < 0)
        goto done;
    if (with_weights) {
        int64_t kv;
        uint64_t n_vocab;
        if ((rc = realm_gguf_get_arr(g, "tokenizer.ggml.tokens", REALM_GGUF_STRING, &kv,
                                     &n_vocab)) < 0)
            goto done;
        for (int j = 0; k->added[j] != NULL; j++)
            n_vocab++;
        if ((rc = chat_fixture_put_model_(w, k, n_vocab, &weights)) < 0)
            goto done;
    }
    rc = realm_gguf_writer_write(w, out_path);
done:
    realm_gguf_writer_free(w);
    free(weights);
    free(tokens);
    realm_gguf_close(g);
    return rc;
}

/*
 * Write the vocabulary of `kind` (see the top of this file) as a GGUF file
 * without tensors to out_path. testdata_dir is ../shared/testdata (what
 * REALM_TESTDATA holds). 0 or a negative error code.
 */
static inline int chat_fixture_vocab(const char *testdata_dir, const char *kind,
                                     const char *out_path)
{
    return chat_fixture_write_(testdata_dir, kind, out_path, false);
}

/*
 * Write a tiny random-weight LLaMA model on the vocabulary of `kind` to
 * out_path (17 MB on the SentencePiece vocabularies, 27 MB on GPT-2's; the
 * same bytes on every run). It loads with realm_model_load and its tokenizer
 * tokenizes exactly as the vocabulary file's. 0 or a negative error code.
 */
static inline int chat_fixture_model(const char *testdata_dir, const char *kind,
                                     const char *out_path)
{
    return chat_fixture_write_(testdata_dir, kind, out_path, true);
}

/* ---- reading the reference ids ---------------------------------------------- */

/*
 * The ids llama.cpp gave for conversation `conv` rendered with `kind`'s
 * template, from the ids file at path (tests/data/chat_prompt_ids.txt; the
 * tests find it under $REALM_SOURCE_DIR). Lines are "KIND CONV id id ...";
 * lines starting with '#' and empty lines are skipped. Returns the number of
 * ids (written to ids[0..cap)), REALM_ERR_NOTFOUND if there is no such
 * line, REALM_ERR_RANGE if more than cap ids, REALM_ERR_IO or
 * REALM_ERR_FORMAT.
 */
static inline int32_t chat_fixture_ref_ids(const char *path, const char *kind, int conv,
                                           realm_token *ids, int32_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return realm__error(REALM_ERR_IO, "%s: %s", path, strerror(errno));
    char line[1 << 16];
    int32_t result = REALM_ERR_NOTFOUND;
    int lineno = 0;
    while (result == REALM_ERR_NOTFOUND && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char k[64];
        int c, off;
        if (sscanf(line, "%63s %d%n", k, &c, &off) != 2) {
            result =
                realm__error(REALM_ERR_FORMAT, "%s:%d: expected KIND CONV ids...", path, lineno);
            break;
        }
        if (strcmp(k, kind) != 0 || c != conv)
            continue;
        int32_t n = 0;
        char *p = line + off, *end;
        for (;;) {
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p == '\n' || *p == '\0')
                break;
            long v = strtol(p, &end, 10);
            if (end == p || v < 0 || v > INT32_MAX) {
                n = realm__error(REALM_ERR_FORMAT, "%s:%d: bad token id", path, lineno);
                break;
            }
            if (n == cap) {
                n = realm__error(REALM_ERR_RANGE, "%s:%d: more than %" PRId32 " ids", path, lineno,
                                 cap);
                break;
            }
            ids[n++] = (realm_token)v;
            p = end;
        }
        result = n;
    }
    if (result == REALM_ERR_NOTFOUND)
        realm__error(REALM_ERR_NOTFOUND, "%s: no ids for %s conversation %d", path, kind, conv);
    fclose(f);
    return result;
}

#endif
