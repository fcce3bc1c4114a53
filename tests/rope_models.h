/*
 * Long-context test models: tiny LLaMA-family models with random F32
 * weights whose metadata asks for each kind of RoPE scaling long-context GGUF
 * files use, written with Realm's own GGUF writer (the shared generator
 * cannot set these keys):
 *
 *   rope-yarn     context 16384, rope.scaling.type yarn, factor 4,
 *                 original_context_length 4096 (a Qwen2.5 / YaRN model)
 *   rope-linear   context 8192, rope.scaling.type linear, factor 2
 *   rope-llama3   context 16384, rope.freq_base 500000 and a rope_freqs.weight
 *                 tensor of Llama 3.1 frequency factors (factor 8, low/high
 *                 frequency factors 1 and 4, original context 8192), no
 *                 rope.scaling keys, as llama.cpp's converter writes Llama 3.1
 *   rope-qwen2    the qwen2 architecture (Q/K/V biases, NeoX rotation: pairs
 *                 (i, i + 16)) with YaRN x4 over 4096 in a 16384 context, as
 *                 Qwen2.5's long-context configuration
 *
 * All share one shape: 64 embedding, 2 layers, 2 query heads of 32 over one
 * KV head (grouped-query attention), feed-forward 128, and the 512-token
 * vocabulary of stories260K (so llama.cpp loads them too). Query and key
 * weights are large enough that attention is sharp: the scores, and so the
 * logits, move with every rotation angle. The same spec gives the same bytes
 * on every run.
 *
 * rope_model_token(i) is the token at position i of the sequences the tests
 * (and the reference tool, tests/tools/llama_rope_logits.c) feed them.
 */
#ifndef REALM_TEST_ROPE_MODELS_H
#define REALM_TEST_ROPE_MODELS_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "realm/gguf.h"

#define ROPE_MODEL_N_EMBD  64
#define ROPE_MODEL_N_HEAD  2
#define ROPE_MODEL_N_KV    1
#define ROPE_MODEL_N_LAYER 2
#define ROPE_MODEL_N_FF    128
#define ROPE_MODEL_N_VOCAB 512 /* stories260K's */

typedef struct rope_model_spec {
    const char *name;    /* file stem */
    const char *arch;    /* general.architecture: llama or qwen2 ({arch}. keys below) */
    uint32_t n_ctx;      /* {arch}.context_length */
    const char *scaling; /* {arch}.rope.scaling.type, or NULL for none */
    float factor;        /* {arch}.rope.scaling.factor; 0: not written */
    uint32_t orig_ctx;   /* {arch}.rope.scaling.original_context_length; 0: none */
    float freq_base;     /* {arch}.rope.freq_base */
    bool llama3_freqs;   /* rope_freqs.weight, Llama 3.1's */
    float attn_factor;   /* {arch}.rope.scaling.attn_factor; 0: none */
} rope_model_spec;

static const rope_model_spec rope_model_specs[] = {
    {"rope-yarn", "llama", 16384, "yarn", 4.0f, 4096, 10000.0f, false, 0},
    {"rope-linear", "llama", 8192, "linear", 2.0f, 0, 10000.0f, false, 0},
    {"rope-llama3", "llama", 16384, NULL, 0, 0, 500000.0f, true, 0},
    {"rope-qwen2", "qwen2", 16384, "yarn", 4.0f, 4096, 10000.0f, false, 0},
};
#define ROPE_MODEL_COUNT (sizeof rope_model_specs / sizeof rope_model_specs[0])

static inline const rope_model_spec *rope_model_find(const char *name)
{
    for (size_t i = 0; i < ROPE_MODEL_COUNT; i++)
        if (strcmp(rope_model_specs[i].name, name) == 0)
            return &rope_model_specs[i];
    return NULL;
}

static inline uint64_t rope_model_next_(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Uniform in [-1, 1), from a xorshift state. */
static inline float rope_model_rand_(uint64_t *s)
{
    return (float)(rope_model_next_(s) >> 40) / (float)(1u << 23) - 1.0f;
}

/* The token at position i: BOS (1) first, then pseudo-random ids in 3..511. */
static inline int32_t rope_model_token(int32_t i)
{
    if (i == 0)
        return 1;
    uint64_t s = 0x2545f4914f6cdd1dull ^ ((uint64_t)i * 0x9e3779b97f4a7c15ull);
    rope_model_next_(&s);
    rope_model_next_(&s);
    return 3 + (int32_t)(rope_model_next_(&s) % (ROPE_MODEL_N_VOCAB - 3));
}

/*
 * Llama 3.1's frequency factors (as its converter computes them) for n_rot
 * dimensions: 1 for wavelengths under orig_ctx / high_freq (fast pairs),
 * `factor` above orig_ctx / low_freq (slow ones), a smooth blend between.
 */
static inline void rope_model_llama3_factors(int n_rot, float base, float factor, float low_freq,
                                             float high_freq, float orig_ctx, float *out)
{
    const double low_wavelen = orig_ctx / low_freq, high_wavelen = orig_ctx / high_freq;
    for (int i = 0; i < n_rot / 2; i++) {
        const double freq = pow(base, -2.0 * i / n_rot);
        const double wavelen = 2 * M_PI / freq;
        if (wavelen < high_wavelen) {
            out[i] = 1.0f;
        } else if (wavelen > low_wavelen) {
            out[i] = factor;
        } else {
            const double smooth = (orig_ctx / wavelen - low_freq) / (high_freq - low_freq);
            out[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
}

/*
 * Write the model of spec to out_path, with the tokenizer metadata of the
 * GGUF file at vocab_path (../shared/testdata/models/stories260K.gguf).
 * 0 or a negative error code (the message names the file).
 */
static inline int rope_model_write(const rope_model_spec *spec, const char *vocab_path,
                                   const char *out_path)
{
    enum { E = ROPE_MODEL_N_EMBD, HD = ROPE_MODEL_N_EMBD / ROPE_MODEL_N_HEAD };
    enum { KVD = HD * ROPE_MODEL_N_KV, F = ROPE_MODEL_N_FF, V = ROPE_MODEL_N_VOCAB };
    realm_gguf *src = NULL;
    realm_gguf_writer *w = NULL;
    float *data = NULL;
    int rc = realm_gguf_open(vocab_path, &src);
    if (rc < 0)
        return rc;
    if ((rc = realm_gguf_writer_new(&w)) < 0)
        goto done;
    for (int64_t i = 0; i < realm_gguf_n_kv(src) && rc == 0; i++)
        if (strncmp(realm_gguf_kv_key(src, i), "tokenizer.", 10) == 0)
            rc = realm_gguf_copy_kv(w, src, i);
    const struct {
        const char *key;
        uint32_t v;
    } u32s[] = {
        {"context_length", spec->n_ctx},
        {"embedding_length", E},
        {"block_count", ROPE_MODEL_N_LAYER},
        {"feed_forward_length", F},
        {"rope.dimension_count", HD},
        {"attention.head_count", ROPE_MODEL_N_HEAD},
        {"attention.head_count_kv", ROPE_MODEL_N_KV},
        {"vocab_size", V},
        {"rope.scaling.original_context_length", spec->orig_ctx}, /* 0: not written */
    };
    const struct {
        const char *key;
        float v;
    } f32s[] = {
        {"attention.layer_norm_rms_epsilon", 1e-5f},
        {"rope.freq_base", spec->freq_base},
        {"rope.scaling.factor", spec->factor},           /* 0: not written */
        {"rope.scaling.attn_factor", spec->attn_factor}, /* 0: not written */
    };
    char key[128];
    if (rc == 0)
        rc = realm_gguf_set_str(w, "general.architecture", spec->arch, strlen(spec->arch));
    if (rc == 0)
        rc = realm_gguf_set_str(w, "general.name", spec->name, strlen(spec->name));
    if (rc == 0)
        rc = realm_gguf_set_u32(w, "general.file_type", 0); /* all F32 */
    for (size_t i = 0; i < sizeof u32s / sizeof u32s[0] && rc == 0; i++) {
        snprintf(key, sizeof key, "%s.%s", spec->arch, u32s[i].key);
        if (u32s[i].v != 0)
            rc = realm_gguf_set_u32(w, key, u32s[i].v);
    }
    for (size_t i = 0; i < sizeof f32s / sizeof f32s[0] && rc == 0; i++) {
        snprintf(key, sizeof key, "%s.%s", spec->arch, f32s[i].key);
        if (f32s[i].v != 0)
            rc = realm_gguf_set_f32(w, key, f32s[i].v);
    }
    snprintf(key, sizeof key, "%s.rope.scaling.type", spec->arch);
    if (rc == 0 && spec->scaling)
        rc = realm_gguf_set_str(w, key, spec->scaling, strlen(spec->scaling));
    if (rc < 0)
        goto done;
    const bool qwen2 = strcmp(spec->arch, "qwen2") == 0;

    /* name (blk.L. prefixed when per layer), ne[0], ne[1] (1-D when 0), scale
     * of the uniform values (0: a norm, 1 + small noise; -1: rope_freqs) */
    static const struct {
        const char *name;
        bool per_layer;
        int64_t ne0, ne1;
        float scale;
    } t[] = {
        {"token_embd.weight", false, E, V, 1.0f}, {"rope_freqs.weight", false, HD / 2, 0, -1},
        {"attn_norm.weight", true, E, 0, 0},      {"attn_q.weight", true, E, E, 0.3f},
        {"attn_k.weight", true, E, KVD, 0.3f},    {"attn_v.weight", true, E, KVD, 0.2f},
        {"attn_q.bias", true, E, 0, 0.5f}, /* qwen2 only */
        {"attn_k.bias", true, KVD, 0, 0.5f},      {"attn_v.bias", true, KVD, 0, 0.2f},
        {"attn_output.weight", true, E, E, 0.2f}, {"ffn_norm.weight", true, E, 0, 0},
        {"ffn_gate.weight", true, E, F, 0.2f},    {"ffn_up.weight", true, E, F, 0.2f},
        {"ffn_down.weight", true, F, E, 0.2f},    {"output_norm.weight", false, E, 0, 0},
        {"output.weight", false, E, V, 0.1f},
    };
    const size_t n_t = sizeof t / sizeof t[0];
    size_t total = 0;
    for (size_t i = 0; i < n_t; i++)
        total += (size_t)(t[i].ne0 * (t[i].ne1 ? t[i].ne1 : 1)) *
                 (t[i].per_layer ? ROPE_MODEL_N_LAYER : 1);
    if ((data = malloc(total * sizeof *data)) == NULL) {
        rc = realm__error(REALM_ERR_NOMEM, "%s: out of memory for %zu weights", out_path, total);
        goto done;
    }
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (const char *c = spec->name; *c; c++)
        s = (s ^ (uint8_t)*c) * 0x100000001b3ull;
    float *p = data;
    for (size_t i = 0; i < n_t && rc == 0; i++) {
        if ((t[i].scale < 0 && !spec->llama3_freqs) || (strstr(t[i].name, ".bias") && !qwen2))
            continue;
        for (int l = 0; l < (t[i].per_layer ? ROPE_MODEL_N_LAYER : 1) && rc == 0; l++) {
            const int64_t ne[2] = {t[i].ne0, t[i].ne1};
            const size_t cnt = (size_t)(ne[0] * (ne[1] ? ne[1] : 1));
            if (t[i].scale < 0)
                rope_model_llama3_factors(HD, spec->freq_base, 8.0f, 1.0f, 4.0f, 8192.0f, p);
            for (size_t j = 0; t[i].scale >= 0 && j < cnt; j++)
                p[j] = t[i].scale > 0 ? t[i].scale * rope_model_rand_(&s)
                                      : 1.0f + 0.1f * rope_model_rand_(&s);
            char name[64];
            if (t[i].per_layer)
                snprintf(name, sizeof name, "blk.%d.%s", l, t[i].name);
            else
                snprintf(name, sizeof name, "%s", t[i].name);
            rc = realm_gguf_add_tensor(w, name, ne[1] ? 2 : 1, ne, REALM_TYPE_F32, p);
            p += cnt;
        }
    }
    if (rc == 0)
        rc = realm_gguf_writer_write(w, out_path);
done:
    realm_gguf_writer_free(w);
    realm_gguf_close(src);
    free(data);
    return rc;
}

#endif
