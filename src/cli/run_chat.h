/* realm run without -p: an interactive chat with one model (run_chat.c). */
#ifndef REALM_CLI_RUN_CHAT_H
#define REALM_CLI_RUN_CHAT_H

#include <stdbool.h>
#include <stdint.h>

#include "lora_args.h"
#include "realm/engine.h"
#include "realm/model.h"
#include "realm/quant.h"
#include "realm/sampler.h"

typedef struct run_chat_opts {
    const char *model;         /* a path or a pulled model's name */
    const char *models_dir;    /* --models-dir, or NULL */
    const char *chat_template; /* a template's name instead of the model's own, or NULL */
    int32_t n_threads;         /* 0: one per CPU */
    int32_t n_ctx;             /* longest conversation in tokens; 0: the model's, at most 4096 */
    int32_t n_batch;
    int32_t max_tokens;        /* per reply; 0: until the model stops or the context is full */
    uint64_t mem_budget;       /* 0: the registry's default */
    realm_type type_k, type_v; /* KV cache types (F16 or Q8_0) */
    realm_sampler_params sampling;
    bool verbose;              /* a line per turn on stderr: prompt and cached tokens, speed */
    realm_rope_params rope;    /* overrides of the model's RoPE */
    bool repack;               /* realm_model_params.repack */
    const cli_lora_args *lora; /* adapters for every reply, or NULL */
    realm_spec_options spec;   /* speculative decoding (prompt lookup); mode 0: off */
} run_chat_opts;

/* Run the chat on stdin/stdout until /bye or end of input; the exit status. */
int cli_run_chat(const run_chat_opts *o);

#endif
