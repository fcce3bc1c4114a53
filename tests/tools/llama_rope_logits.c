/*
 * llama_rope_logits — the reference side of tests/test_rope.c: llama.cpp's
 * logits for a long sequence on one of the models of tests/rope_models.h,
 * with llama.cpp's RoPE options. Not built with Realm: it is compiled against
 * a llama.cpp build (see tests/data/rope/README.md for the commit and the
 * exact commands).
 *
 *     llama_rope_logits MODEL.gguf TOKENS.txt N_TOKENS POS,POS,... STRIDE [OPTIONS]
 *
 * feeds the first N_TOKENS ids of TOKENS.txt (one per line) as one sequence
 * at positions 0..N_TOKENS-1, in batches of 512, with a context of N_TOKENS,
 * and prints, for each listed position, the logits of token ids 0, STRIDE,
 * 2*STRIDE ... (below the vocabulary size) in the format test_rope.c reads:
 *
 *     tokens N_TOKENS
 *     stride STRIDE
 *     pos P v v v ...
 *
 * OPTIONS are llama.cpp's (common/arg.cpp), set on the context parameters as
 * llama.cpp's programs set them: --rope-scaling none|linear|yarn,
 * --rope-freq-base N, --rope-freq-scale N, --rope-scale N (freq scale 1/N),
 * --yarn-orig-ctx N, --yarn-ext-factor N, --yarn-attn-factor N,
 * --yarn-beta-fast N, --yarn-beta-slow N. Flash attention is off (the
 * attention product then accumulates in F32); the KV cache is llama.cpp's
 * default F16; 2 threads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

#define MAX_POS 64

static void quiet(enum ggml_log_level level, const char *text, void *ud)
{
    (void)ud;
    if (level >= GGML_LOG_LEVEL_WARN)
        fputs(text, stderr);
}

int main(int argc, char **argv)
{
    if (argc < 6 || (argc - 6) % 2 != 0) {
        fprintf(stderr, "usage: llama_rope_logits MODEL.gguf TOKENS.txt N_TOKENS POS,POS,... "
                        "STRIDE [--OPTION VALUE ...]\n");
        return 2;
    }
    const int n_tokens = atoi(argv[3]), stride = atoi(argv[5]);
    int pos[MAX_POS], n_pos = 0;
    for (char *p = argv[4]; *p && n_pos < MAX_POS;) {
        pos[n_pos++] = (int)strtol(p, &p, 10);
        if (*p == ',')
            p++;
    }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_tokens;
    cp.n_batch = cp.n_ubatch = 512;
    cp.n_threads = cp.n_threads_batch = 2;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    for (int i = 6; i < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (!strcmp(o, "--rope-scaling"))
            cp.rope_scaling_type = !strcmp(v, "none")     ? LLAMA_ROPE_SCALING_TYPE_NONE
                                   : !strcmp(v, "linear") ? LLAMA_ROPE_SCALING_TYPE_LINEAR
                                   : !strcmp(v, "yarn")   ? LLAMA_ROPE_SCALING_TYPE_YARN
                                                          : LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED;
        else if (!strcmp(o, "--rope-freq-base"))
            cp.rope_freq_base = strtof(v, NULL);
        else if (!strcmp(o, "--rope-freq-scale"))
            cp.rope_freq_scale = strtof(v, NULL);
        else if (!strcmp(o, "--rope-scale"))
            cp.rope_freq_scale = 1.0f / strtof(v, NULL);
        else if (!strcmp(o, "--yarn-orig-ctx"))
            cp.yarn_orig_ctx = (uint32_t)atoi(v);
        else if (!strcmp(o, "--yarn-ext-factor"))
            cp.yarn_ext_factor = strtof(v, NULL);
        else if (!strcmp(o, "--yarn-attn-factor"))
            cp.yarn_attn_factor = strtof(v, NULL);
        else if (!strcmp(o, "--yarn-beta-fast"))
            cp.yarn_beta_fast = strtof(v, NULL);
        else if (!strcmp(o, "--yarn-beta-slow"))
            cp.yarn_beta_slow = strtof(v, NULL);
        else {
            fprintf(stderr, "llama_rope_logits: unknown option %s\n", o);
            return 2;
        }
    }

    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (model == NULL) {
        fprintf(stderr, "llama_rope_logits: cannot load %s\n", argv[1]);
        return 1;
    }
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (ctx == NULL) {
        fprintf(stderr, "llama_rope_logits: cannot make a context\n");
        return 1;
    }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    int *tok = malloc((size_t)n_tokens * sizeof *tok);
    FILE *f = fopen(argv[2], "r");
    for (int i = 0; i < n_tokens; i++)
        if (f == NULL || fscanf(f, "%d", &tok[i]) != 1) {
            fprintf(stderr, "llama_rope_logits: %s has fewer than %d tokens\n", argv[2], n_tokens);
            return 1;
        }
    fclose(f);

    printf("tokens %d\nstride %d\n", n_tokens, stride);
    struct llama_batch b = llama_batch_init(512, 0, 1);
    for (int at = 0; at < n_tokens; at += 512) {
        const int len = n_tokens - at < 512 ? n_tokens - at : 512;
        b.n_tokens = len;
        for (int i = 0; i < len; i++) {
            b.token[i] = tok[at + i];
            b.pos[i] = at + i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = 0;
            for (int k = 0; k < n_pos; k++)
                b.logits[i] |= pos[k] == at + i;
        }
        if (llama_decode(ctx, b) != 0) {
            fprintf(stderr, "llama_rope_logits: decode failed at %d\n", at);
            return 1;
        }
        for (int k = 0; k < n_pos; k++) {
            if (pos[k] < at || pos[k] >= at + len)
                continue;
            const float *lg = llama_get_logits_ith(ctx, pos[k] - at);
            printf("pos %d", pos[k]);
            for (int t = 0; t < n_vocab; t += stride)
                printf(" %.7g", lg[t]);
            printf("\n");
        }
    }
    llama_batch_free(b);
    free(tok);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
