/*
 * Quantization schemes of `realm quantize`: the file-level types users know
 * from llama.cpp (q4_k_m, q5_k_s, ...) and the per-tensor rules that turn a
 * scheme into a type for each tensor.
 */
#ifndef REALM_CLI_QUANT_MIX_H
#define REALM_CLI_QUANT_MIX_H

#include <stdbool.h>
#include <stdint.h>

#include "realm/quant.h"

typedef enum quant_scheme_id {
    SCHEME_F32,
    SCHEME_F16,
    SCHEME_BF16,
    SCHEME_Q4_0,
    SCHEME_Q4_1,
    SCHEME_Q5_0,
    SCHEME_Q5_1,
    SCHEME_Q8_0,
    SCHEME_Q2_K,
    SCHEME_Q3_K_S,
    SCHEME_Q3_K_M,
    SCHEME_Q3_K_L,
    SCHEME_Q4_K_S,
    SCHEME_Q4_K_M,
    SCHEME_Q5_K_S,
    SCHEME_Q5_K_M,
    SCHEME_Q6_K,
    SCHEME_IQ4_NL,
    SCHEME_IQ4_XS,
    SCHEME_COUNT
} quant_scheme_id;

typedef struct quant_scheme {
    quant_scheme_id id;
    const char *name;   /* "q4_k_m" */
    realm_type base;    /* type of most weights */
    uint32_t file_type; /* general.file_type value (llama.cpp's llama_ftype) */
} quant_scheme;

/* The scheme named `name` (case-insensitive), or NULL. */
const quant_scheme *quant_scheme_find(const char *name);
/* Comma-separated list of scheme names, for messages. */
const char *quant_scheme_names(void);

/* What the rules need to know about the model and the position of a tensor. */
typedef struct quant_mix_state {
    int n_attn_v, i_attn_v;     /* attn_v.weight tensors: total, seen so far */
    int n_ffn_down, i_ffn_down; /* ffn_down tensors: total, seen so far */
    int n_gqa;                  /* query heads per KV head (1 if unknown) */
    bool has_output;            /* the file has output.weight */
    bool pure;                  /* --pure: every quantized tensor gets the base type */
} quant_mix_state;

/*
 * The type tensor `name` (n_dims, ne0 = row length) gets under scheme s.
 * Tensors that are not quantized (1-D, not a weight) return `current`, or F32
 * under the f32 scheme. Call in file order: it advances the layer counters.
 */
realm_type quant_mix_choose(const quant_scheme *s, quant_mix_state *st, const char *name,
                            uint32_t n_dims, int64_t ne0, realm_type current);

#endif
