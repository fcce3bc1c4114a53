/*
 * Per-tensor type rules of the quantization schemes. They follow the
 * mixtures llama.cpp's quantizer made familiar, so a q4_k_m file from Realm
 * has the tensor types a user expects from a q4_k_m file:
 *   - output.weight (or token_embd.weight when the output is tied) gets Q6_K,
 *     or Q8_0 for the q8_0 scheme or rows that are not a multiple of 256;
 *   - attn_v and ffn_down get more bits in the first and last eighth of the
 *     layers and every third layer between (use_more_bits) for *_M schemes;
 *   - K-quant rows that are not a multiple of 256 fall back to a 32-block type.
 */
#include <ctype.h>
#include <string.h>

#include "quant_mix.h"

static const quant_scheme schemes[SCHEME_COUNT] = {
    {SCHEME_F32, "f32", REALM_TYPE_F32, 0},
    {SCHEME_F16, "f16", REALM_TYPE_F16, 1},
    {SCHEME_BF16, "bf16", REALM_TYPE_BF16, 32},
    {SCHEME_Q4_0, "q4_0", REALM_TYPE_Q4_0, 2},
    {SCHEME_Q4_1, "q4_1", REALM_TYPE_Q4_1, 3},
    {SCHEME_Q5_0, "q5_0", REALM_TYPE_Q5_0, 8},
    {SCHEME_Q5_1, "q5_1", REALM_TYPE_Q5_1, 9},
    {SCHEME_Q8_0, "q8_0", REALM_TYPE_Q8_0, 7},
    {SCHEME_Q2_K, "q2_k", REALM_TYPE_Q2_K, 10},
    {SCHEME_Q3_K_S, "q3_k_s", REALM_TYPE_Q3_K, 11},
    {SCHEME_Q3_K_M, "q3_k_m", REALM_TYPE_Q3_K, 12},
    {SCHEME_Q3_K_L, "q3_k_l", REALM_TYPE_Q3_K, 13},
    {SCHEME_Q4_K_S, "q4_k_s", REALM_TYPE_Q4_K, 14},
    {SCHEME_Q4_K_M, "q4_k_m", REALM_TYPE_Q4_K, 15},
    {SCHEME_Q5_K_S, "q5_k_s", REALM_TYPE_Q5_K, 16},
    {SCHEME_Q5_K_M, "q5_k_m", REALM_TYPE_Q5_K, 17},
    {SCHEME_Q6_K, "q6_k", REALM_TYPE_Q6_K, 18},
    {SCHEME_IQ4_NL, "iq4_nl", REALM_TYPE_IQ4_NL, 25},
    {SCHEME_IQ4_XS, "iq4_xs", REALM_TYPE_IQ4_XS, 30},
};

const quant_scheme *quant_scheme_find(const char *name)
{
    for (int i = 0; i < SCHEME_COUNT; i++) {
        const char *a = schemes[i].name, *b = name;
        while (*a && tolower((unsigned char)*b) == *a) {
            a++;
            b++;
        }
        if (*a == '\0' && *b == '\0')
            return &schemes[i];
    }
    return NULL;
}

const char *quant_scheme_names(void)
{
    return "f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k_s, q3_k_m, q3_k_l, "
           "q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, iq4_nl, iq4_xs";
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The layers that get extra bits in the *_M mixtures. */
static bool use_more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* A type whose block fits rows of length ne0, starting from t. */
static realm_type fit_row(realm_type t, int64_t ne0)
{
    const realm_type_traits *tr = realm_type_get(t);
    if (ne0 % tr->block_size == 0)
        return t;
    switch (t) {
    case REALM_TYPE_Q2_K:
    case REALM_TYPE_Q3_K:
    case REALM_TYPE_IQ4_XS:
        t = REALM_TYPE_IQ4_NL;
        break;
    case REALM_TYPE_Q4_K:
        t = REALM_TYPE_Q5_0;
        break;
    case REALM_TYPE_Q5_K:
        t = REALM_TYPE_Q5_1;
        break;
    case REALM_TYPE_Q6_K:
        t = REALM_TYPE_Q8_0;
        break;
    default:
        return REALM_TYPE_F16;
    }
    return ne0 % realm_type_get(t)->block_size == 0 ? t : REALM_TYPE_F16;
}

realm_type quant_mix_choose(const quant_scheme *s, quant_mix_state *st, const char *name,
                            uint32_t n_dims, int64_t ne0, realm_type current)
{
    if (s->id == SCHEME_F32)
        return REALM_TYPE_F32;
    /* Only 2-D+ weights are quantized; norms, biases and routers stay. */
    if (n_dims < 2 || !ends_with(name, "weight") || strstr(name, "ffn_gate_inp") ||
        strstr(name, "_norm"))
        return current;
    realm_type t = s->base;
    const bool is_attn_v = strstr(name, "attn_v.weight") != NULL;
    const bool is_ffn_down = strstr(name, "ffn_down") != NULL;
    int i_v = st->i_attn_v, i_down = st->i_ffn_down;
    if (is_attn_v)
        st->i_attn_v++;
    if (is_ffn_down)
        st->i_ffn_down++;
    if (st->pure || s->id <= SCHEME_BF16)
        return fit_row(t, ne0);

    const quant_scheme_id id = s->id;
    const bool is_output = strcmp(name, "output.weight") == 0 ||
                           (!st->has_output && strcmp(name, "token_embd.weight") == 0);
    if (is_output) {
        if (ne0 % REALM_QK_K != 0)
            t = REALM_TYPE_Q8_0;
        else if (t != REALM_TYPE_Q8_0)
            t = REALM_TYPE_Q6_K;
    } else if (is_attn_v) {
        const int n = st->n_attn_v;
        if (id == SCHEME_Q2_K)
            t = st->n_gqa >= 4 ? REALM_TYPE_Q4_K : REALM_TYPE_Q3_K;
        else if (id == SCHEME_Q3_K_M)
            t = i_v < 2 ? REALM_TYPE_Q5_K : REALM_TYPE_Q4_K;
        else if (id == SCHEME_Q3_K_L)
            t = REALM_TYPE_Q5_K;
        else if ((id == SCHEME_IQ4_NL || id == SCHEME_IQ4_XS) && st->n_gqa >= 4)
            t = REALM_TYPE_Q5_K;
        else if ((id == SCHEME_Q4_K_M || id == SCHEME_Q5_K_M) && use_more_bits(i_v, n))
            t = REALM_TYPE_Q6_K;
        else if (id == SCHEME_Q4_K_S && i_v < 4)
            t = REALM_TYPE_Q5_K;
    } else if (is_ffn_down) {
        const int n = st->n_ffn_down;
        if (id == SCHEME_Q2_K)
            t = REALM_TYPE_Q3_K;
        else if (id == SCHEME_Q3_K_M)
            t = i_down < n / 16 ? REALM_TYPE_Q5_K : REALM_TYPE_Q4_K;
        else if (id == SCHEME_Q3_K_L)
            t = REALM_TYPE_Q5_K;
        else if ((id == SCHEME_Q4_K_M || id == SCHEME_Q5_K_M) && use_more_bits(i_down, n))
            t = REALM_TYPE_Q6_K;
        else if ((id == SCHEME_IQ4_NL || id == SCHEME_IQ4_XS) && i_down < n / 8)
            t = REALM_TYPE_Q5_K;
        else if (id == SCHEME_Q4_K_S && i_down < n / 8)
            t = REALM_TYPE_Q5_K;
    } else if (strstr(name, "attn_output.weight")) {
        if (id == SCHEME_Q2_K)
            t = REALM_TYPE_Q3_K;
        else if (id == SCHEME_Q3_K_M)
            t = REALM_TYPE_Q4_K;
        else if (id == SCHEME_Q3_K_L)
            t = REALM_TYPE_Q5_K;
    }
    return fit_row(t, ne0);
}
