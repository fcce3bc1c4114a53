/*
 * The RoPE options of realm run, bench and serve, named and resolved as in
 * llama.cpp: --rope-scaling, --rope-freq-base, --rope-freq-scale,
 * --rope-scale, --yarn-orig-ctx, --yarn-ext-factor, --yarn-attn-factor,
 * --yarn-beta-fast, --yarn-beta-slow. They become realm_rope_params
 * (realm/model.h), which override the model's metadata at load.
 *
 * A command with an option table embeds a cli_rope in its config, starts it
 * from CLI_ROPE_INIT and adds the entries with CLI_ROPE_OPTS:
 *
 *   typedef struct serve_cfg { ... cli_rope rope; } serve_cfg;
 *   static const cli_opt serve_opts[] = { ..., CLI_ROPE_OPTS(serve_cfg, rope, true) };
 *   serve_cfg c = {.rope = CLI_ROPE_INIT};
 *   ... cli_opts_parse ...
 *   realm_rope_params rp;
 *   if (cli_rope_params(CMD, &c.rope, &rp) != 0) return 1;
 *
 * realm run, which parses its arguments by hand, asks cli_rope_arg about each.
 */
#ifndef REALM_CLI_ROPE_OPTS_H
#define REALM_CLI_ROPE_OPTS_H

#include <stddef.h>

#include "opts.h"
#include "realm/model.h"

typedef struct cli_rope {
    int scaling;       /* index in cli_rope_scaling_names; -1: the model's */
    double freq_base;  /* 0: the model's */
    double freq_scale; /* 0: the model's */
    double scale;      /* --rope-scale: freq_scale 1 / scale; 0: not given */
    long long yarn_orig_ctx;
    double yarn_ext_factor;                                  /* < 0: not given */
    double yarn_attn_factor, yarn_beta_fast, yarn_beta_slow; /* 0: not given */
} cli_rope;

#define CLI_ROPE_INIT                                                                              \
    {                                                                                              \
        .scaling = -1, .yarn_ext_factor = -1                                                       \
    }

/* "none", "linear", "yarn", NULL: realm_rope_scaling NONE + index. */
extern const char *const cli_rope_scaling_names[];

/* The option table entries for a cli_rope at field F of config type T; ENV:
 * whether REALM_ROPE_* / REALM_YARN_* variables apply. */
// clang-format off
#define CLI_ROPE_OPTS(T, F, ENV)                                                                   \
    {"rope-scaling", 0, CLI_OPT_ENUM, NULL, NULL,                                                  \
     "RoPE frequency scaling (default: the model's rope.scaling.type, else linear)",               \
     offsetof(T, F.scaling), .env = ENV, .choices = cli_rope_scaling_names},                        \
    {"rope-freq-base", 0, CLI_OPT_FLOAT, "N", NULL, "RoPE base frequency (default: the model's)",  \
     offsetof(T, F.freq_base), .env = ENV, .fmin = 1, .fmax = 1e12},                               \
    {"rope-freq-scale", 0, CLI_OPT_FLOAT, "N", NULL,                                               \
     "RoPE frequency scaling factor: stretches the context by 1/N (default: the model's, "         \
     "1 / rope.scaling.factor)",                                                                   \
     offsetof(T, F.freq_scale), .env = ENV, .fmin = 1e-6, .fmax = 1e6},                            \
    {"rope-scale", 0, CLI_OPT_FLOAT, "N", NULL,                                                    \
     "RoPE context scaling factor: stretches the context by N (--rope-freq-scale 1/N)",            \
     offsetof(T, F.scale), .env = ENV, .fmin = 1e-6, .fmax = 1e6},                                 \
    {"yarn-orig-ctx", 0, CLI_OPT_INT, "N", NULL,                                                   \
     "YaRN: the context the model was trained on before scaling (default: its "                    \
     "rope.scaling.original_context_length, else its context length)",                             \
     offsetof(T, F.yarn_orig_ctx), .env = ENV, .min = 1, .max = 1 << 24},                          \
    {"yarn-ext-factor", 0, CLI_OPT_FLOAT, "N", NULL,                                               \
     "YaRN: extrapolation mix (default: 1 with yarn scaling, else 0; 0: interpolation only)",      \
     offsetof(T, F.yarn_ext_factor), .env = ENV, .fmin = 0, .fmax = 100},                          \
    {"yarn-attn-factor", 0, CLI_OPT_FLOAT, "N", NULL,                                              \
     "YaRN: scale of the attention magnitude (default 1; as in llama.cpp, used only where the "    \
     "extrapolation mix is 0)",                                                                    \
     offsetof(T, F.yarn_attn_factor), .env = ENV, .fmin = 1e-6, .fmax = 100},                      \
    {"yarn-beta-fast", 0, CLI_OPT_FLOAT, "N", NULL, "YaRN: low correction dim (default 32)",       \
     offsetof(T, F.yarn_beta_fast), .env = ENV, .fmin = 1e-6, .fmax = 1e6},                        \
    {"yarn-beta-slow", 0, CLI_OPT_FLOAT, "N", NULL, "YaRN: high correction dim (default 1)",       \
     offsetof(T, F.yarn_beta_slow), .env = ENV, .fmin = 1e-6, .fmax = 1e6}
// clang-format on

/* The overrides r gives, into *out. 0, or 1 after an error for cmd (both
 * --rope-scale and --rope-freq-scale given). */
int cli_rope_params(const char *cmd, const cli_rope *r, realm_rope_params *out);

/*
 * For a command that parses its arguments by hand: if arg is one of the
 * options above, parse its value val (the next argument, NULL if none) into
 * *r and return 1 (the caller skips val); -1 after an error for cmd (a
 * missing or bad value); 0 if arg is not a RoPE option. Environment
 * variables do not apply.
 */
int cli_rope_arg(const char *cmd, const char *arg, const char *val, cli_rope *r);

/* The usage lines of the options above, for a hand-written usage text. */
// clang-format off
#define CLI_ROPE_USAGE                                                                             \
    "  --rope-scaling none|linear|yarn  RoPE frequency scaling (default: the model's)\n"           \
    "  --rope-freq-base N   RoPE base frequency (default: the model's)\n"                          \
    "  --rope-freq-scale N  RoPE frequency scaling factor: stretches the context 1/N\n"            \
    "  --rope-scale N       stretches the context N times (--rope-freq-scale 1/N)\n"               \
    "  --yarn-orig-ctx N    YaRN: the context the model was trained on before scaling\n"           \
    "  --yarn-ext-factor N  YaRN: extrapolation mix (default: 1 with yarn, else 0)\n"              \
    "  --yarn-attn-factor N  YaRN: attention magnitude (default 1; as in llama.cpp,\n"             \
    "                       used only where the extrapolation mix is 0)\n"                         \
    "  --yarn-beta-fast N, --yarn-beta-slow N  YaRN: low and high correction dims\n"               \
    "                       (default 32 and 1)\n"
// clang-format on

#endif
