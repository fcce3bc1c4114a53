/*
 * Models named on the command line: resolving a name to its file in the
 * models directory, the manifest beside it, and the totals of its tensors.
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "core/error_internal.h"
#include "model_files.h"
#include "realm/gguf.h"

bool cli_model_resolve(const char *cmd, const char *dir_opt, const char *arg, char *path, int cap)
{
    struct stat st;
    if (stat(arg, &st) == 0) {
        if (snprintf(path, (size_t)cap, "%s", arg) >= cap)
            return cli_error(cmd, "the path %s is too long", arg), false;
        return true;
    }
    char dir[4096];
    const char *problem = cli_model_name_problem(arg);
    if (problem != NULL)
        return cli_error(cmd, "%s: no such file, and not a model name (%s)", arg, problem), false;
    if (!cli_models_dir(cmd, dir_opt, dir, sizeof dir))
        return false;
    /* The name holds no glob metacharacters: [A-Za-z0-9._-] only. */
    char pattern[4096 + CLI_MODEL_NAME_MAX + 32];
    snprintf(pattern, sizeof pattern, "%s/%s.gguf", dir, arg);
    if (stat(pattern, &st) == 0 && S_ISREG(st.st_mode)) {
        if (snprintf(path, (size_t)cap, "%s", pattern) >= cap)
            return cli_error(cmd, "the path %s is too long", pattern), false;
        return true;
    }
    snprintf(pattern, sizeof pattern, "%s/%s-00001-of-[0-9][0-9][0-9][0-9][0-9].gguf", dir, arg);
    glob_t g;
    bool found = glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc > 0;
    if (found && snprintf(path, (size_t)cap, "%s", g.gl_pathv[0]) >= cap)
        found = false;
    globfree(&g);
    if (!found)
        return cli_error(cmd,
                         "no model '%s': no such file, and no pulled model of that name in %s "
                         "(see 'realm models')",
                         arg, dir),
               false;
    return true;
}

/* For PREFIX-NNNNN-of-MMMMM.gguf (five digits each, 1 <= N <= M): the offset
 * of NNNNN in path and *count = M; -1 for any other name. */
static int split_digits(const char *path, int *count)
{
    static const char tail[] = "-00000-of-00000.gguf";
    const size_t n = strlen(path), t = sizeof tail - 1;
    if (n <= t)
        return -1;
    const char *s = path + n - t;
    for (size_t i = 0; i < t; i++) {
        const bool digit = tail[i] == '0';
        if (digit ? !(s[i] >= '0' && s[i] <= '9') : s[i] != tail[i])
            return -1;
    }
    const int no = atoi(s + 1), m = atoi(s + 10);
    if (no < 1 || no > m)
        return -1;
    *count = m;
    return (int)(n - t + 1);
}

const char *cli_model_name_of_path(const char *path, char *buf, int cap)
{
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    int count, n = snprintf(buf, (size_t)cap, "%s", base);
    if (n >= cap)
        n = cap - 1;
    const int at = split_digits(buf, &count);
    if (at >= 0)
        buf[at - 1] = '\0';
    else if (n > 5 && strcmp(buf + n - 5, ".gguf") == 0)
        buf[n - 5] = '\0';
    return buf;
}

json_t *cli_manifest_for(const char *path)
{
    char name[CLI_MODEL_NAME_MAX + 64];
    cli_model_name_of_path(path, name, sizeof name);
    const char *slash = strrchr(path, '/');
    const int dir_len = slash != NULL ? (int)(slash - path) : 1;
    char *mpath = malloc((size_t)dir_len + strlen(name) + 8);
    if (mpath == NULL)
        return NULL;
    sprintf(mpath, "%.*s/%s.json", dir_len, slash != NULL ? path : ".", name);
    json_t *m = json_load_file(mpath, 0, NULL);
    free(mpath);
    if (m != NULL && !json_is_object(m)) {
        json_decref(m);
        return NULL;
    }
    return m;
}

static void summarize_one(const realm_gguf *g, cli_model_summary *s)
{
    s->file_bytes += realm_gguf_file_size(g);
    for (int64_t i = 0; i < realm_gguf_n_tensors(g); i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        s->n_params += realm_gguf_tensor_nelements(t);
        s->tensor_bytes += t->nbytes;
        if (t->type < REALM_TYPE_COUNT)
            s->type_bytes[t->type] += t->nbytes;
    }
}

bool cli_model_summarize(const char *path, cli_model_summary *out)
{
    *out = (cli_model_summary){0};
    int count = 1;
    const int at = split_digits(path, &count);
    char *part = strdup(path);
    if (part == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory"), false;
    bool ok = true;
    for (int i = 0; ok && i < (at < 0 ? 1 : count); i++) {
        if (at >= 0) {
            char digits[16];
            snprintf(digits, sizeof digits, "%05d", i + 1);
            memcpy(part + at, digits, 5);
        }
        realm_gguf *g;
        ok = realm_gguf_open(part, &g) == REALM_OK;
        if (ok) {
            summarize_one(g, out);
            realm_gguf_close(g);
            out->n_parts++;
        }
    }
    free(part);
    return ok;
}

const char *cli_format_count(int64_t n, char *buf, int cap)
{
    static const char units[] = "KMBT";
    double v = (double)n;
    int u = -1;
    while (v >= 999.5 && u < 3) {
        v /= 1000;
        u++;
    }
    if (u < 0)
        snprintf(buf, (size_t)cap, "%lld", (long long)n);
    else
        snprintf(buf, (size_t)cap, v < 9.95 ? "%.1f%c" : "%.0f%c", v, units[u]);
    return buf;
}

const char *cli_format_type_mix(const cli_model_summary *s, char *buf, int cap)
{
    buf[0] = '\0';
    if (s->tensor_bytes == 0)
        return buf;
    bool used[REALM_TYPE_COUNT] = {false};
    uint64_t shown = 0;
    int at = 0;
    for (int k = 0; k < 3; k++) {
        int best = -1;
        for (int t = 0; t < REALM_TYPE_COUNT; t++)
            if (!used[t] && s->type_bytes[t] > 0 &&
                (best < 0 || s->type_bytes[t] > s->type_bytes[best]))
                best = t;
        if (best < 0)
            break;
        used[best] = true;
        shown += s->type_bytes[best];
        const double pct = 100.0 * (double)s->type_bytes[best] / (double)s->tensor_bytes;
        at += snprintf(buf + at, (size_t)(cap - at), "%s%s %.0f%%", k ? ", " : "",
                       realm_type_name((uint32_t)best), pct);
        if (at >= cap)
            return buf;
    }
    if (shown < s->tensor_bytes)
        snprintf(buf + at, (size_t)(cap - at), ", other %.0f%%",
                 100.0 * (double)(s->tensor_bytes - shown) / (double)s->tensor_bytes);
    return buf;
}
