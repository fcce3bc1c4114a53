/* LoRA adapters on the command line (lora_args.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lora_args.h"
#include "realm/error.h"

static bool parse_scale(const char *s, float *out)
{
    char *end;
    const float f = strtof(s, &end);
    if (*s == '\0' || *end != '\0' || !isfinite(f))
        return false;
    *out = f;
    return true;
}

static bool put(const char *cmd, const char *opt, const char *path, size_t len, float scale,
                cli_lora_args *a)
{
    if (a->n == CLI_LORA_MAX)
        return cli_error(cmd, "%s: at most %d adapters", opt, CLI_LORA_MAX), false;
    if (len >= sizeof a->path[0])
        return cli_error(cmd, "%s: the path is too long", opt), false;
    memcpy(a->path[a->n], path, len);
    a->path[a->n][len] = '\0';
    a->scale[a->n++] = scale;
    return true;
}

bool cli_lora_parse(const char *cmd, const char *opt, const char *val, bool allow_none,
                    cli_lora_args *a)
{
    if (val == NULL || *val == '\0')
        return cli_error(cmd, "option %s needs a value (FILE[:SCALE])", opt), false;
    if (allow_none && strcmp(val, "none") == 0)
        return put(cmd, opt, "", 0, 0, a);
    const char *colon = strrchr(val, ':');
    float scale = 1.0f;
    if (colon != NULL && colon != val && parse_scale(colon + 1, &scale))
        return put(cmd, opt, val, (size_t)(colon - val), scale, a);
    return put(cmd, opt, val, strlen(val), 1.0f, a);
}

bool cli_lora_has_scale(const char *val)
{
    char item[4096];
    float s;
    if (val == NULL)
        return false;
    const char *comma = strchr(val, ','); /* the first item of a list */
    snprintf(item, sizeof item, "%.*s", (int)(comma ? (size_t)(comma - val) : strlen(val)), val);
    const char *colon = strrchr(item, ':');
    return colon != NULL && colon != item && parse_scale(colon + 1, &s);
}

bool cli_lora_parse_list(const char *cmd, const char *opt, const char *val, bool need_scale,
                         bool allow_none, cli_lora_args *a)
{
    if (val == NULL || *val == '\0')
        return cli_error(cmd, "option %s needs a value", opt), false;
    char item[4096];
    for (const char *s = val; *s;) {
        const char *comma = strchr(s, ',');
        const size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (len >= sizeof item)
            return cli_error(cmd, "%s: a path is too long", opt), false;
        memcpy(item, s, len);
        item[len] = '\0';
        if (need_scale && !cli_lora_has_scale(item))
            return cli_error(cmd, "%s: '%s' is not FILE:SCALE", opt, item), false;
        if (!cli_lora_parse(cmd, opt, item, allow_none, a))
            return false;
        s += len + (comma != NULL);
    }
    return true;
}

bool cli_lora_add(const char *cmd, const char *opt, const char *path, const char *scale,
                  cli_lora_args *a)
{
    float s;
    if (path == NULL || scale == NULL)
        return cli_error(cmd, "option %s needs two values: FILE SCALE", opt), false;
    if (!parse_scale(scale, &s))
        return cli_error(cmd, "option %s: the scale '%s' is not a number", opt, scale), false;
    return put(cmd, opt, path, strlen(path), s, a);
}

bool cli_lora_load(const char *cmd, const realm_model *m, const cli_lora_args *a, realm_lora **out)
{
    for (int i = 0; i < a->n; i++) {
        out[i] = NULL;
        if (a->path[i][0] != '\0' && realm_lora_load(m, a->path[i], &out[i]) < 0) {
            cli_error(cmd, "%s", realm_last_error());
            cli_lora_free(out, i);
            return false;
        }
    }
    return true;
}

void cli_lora_free(realm_lora **ls, int n)
{
    for (int i = 0; i < n; i++) {
        realm_lora_free(ls[i]);
        ls[i] = NULL;
    }
}

const char *cli_lora_describe(const cli_lora_args *a, realm_lora *const *ls, char *buf, int cap)
{
    int at = 0;
    buf[0] = '\0';
    for (int i = 0; i < a->n && at < cap; i++) {
        const char *sep = i ? ", " : "";
        char sz[32];
        if (ls[i] == NULL)
            at += snprintf(buf + at, (size_t)(cap - at), "%snone", sep);
        else
            at += snprintf(buf + at, (size_t)(cap - at), "%s%s x%g (rank %d, %s)", sep, a->path[i],
                           a->scale[i], (int)realm_lora_rank(ls[i]),
                           cli_format_bytes(realm_lora_bytes(ls[i]), sz, sizeof sz));
    }
    return buf;
}
