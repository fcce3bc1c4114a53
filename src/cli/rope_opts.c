/* The RoPE options shared by realm run, bench and serve (rope_opts.h). */
#include <string.h>

#include "cli.h"
#include "rope_opts.h"

const char *const cli_rope_scaling_names[] = {"none", "linear", "yarn", NULL};

int cli_rope_params(const char *cmd, const cli_rope *r, realm_rope_params *out)
{
    if (r->scale > 0 && r->freq_scale > 0)
        return cli_error(cmd,
                         "--rope-scale %g and --rope-freq-scale %g both set the frequency "
                         "scale: give one",
                         r->scale, r->freq_scale);
    *out = (realm_rope_params){
        .scaling = r->scaling < 0 ? REALM_ROPE_SCALING_DEFAULT
                                  : (realm_rope_scaling)(REALM_ROPE_SCALING_NONE + r->scaling),
        .freq_base = (float)r->freq_base,
        .freq_scale = r->scale > 0 ? 1.0f / (float)r->scale : (float)r->freq_scale,
        .yarn_orig_ctx = (int32_t)r->yarn_orig_ctx,
        .has_yarn_ext_factor = r->yarn_ext_factor >= 0,
        .yarn_ext_factor = r->yarn_ext_factor >= 0 ? (float)r->yarn_ext_factor : 0,
        .yarn_attn_factor = (float)r->yarn_attn_factor,
        .yarn_beta_fast = (float)r->yarn_beta_fast,
        .yarn_beta_slow = (float)r->yarn_beta_slow,
    };
    return 0;
}

typedef struct rope_cfg {
    cli_rope rope;
} rope_cfg;

static const cli_opt rope_opts[] = {CLI_ROPE_OPTS(rope_cfg, rope, false)};

int cli_rope_arg(const char *cmd, const char *arg, const char *val, cli_rope *r)
{
    bool ours = false;
    for (size_t i = 0; i < CLI_OPTS_N(rope_opts) && !ours; i++)
        ours = arg[0] == '-' && arg[1] == '-' && strcmp(arg + 2, rope_opts[i].name) == 0;
    if (!ours)
        return 0;
    rope_cfg c = {*r};
    char *argv[3] = {(char *)cmd, (char *)arg, (char *)val};
    if (cli_opts_parse(cmd, rope_opts, CLI_OPTS_N(rope_opts), val ? 3 : 2, argv, &c, NULL) != 0)
        return -1;
    *r = c.rope;
    return 1;
}
