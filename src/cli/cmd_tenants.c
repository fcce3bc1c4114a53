/*
 * realm tenant | key | usage — the operator's commands on the data directory
 * (realm/store.h): tenants and their limits and modules, API keys, usage.
 * A running server sees the changes within a second.
 *
 * Exit status: 0 on success, 1 when the store refuses or fails (the message
 * says why), 2 for a usage error.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "realm/error.h"
#include "realm/registry.h"
#include "realm/sandbox.h"
#include "realm/store.h"

#define MODULE_MAX (64 << 20) /* bytes of a tenant's .wasm */

/* "realm CMD: message" and the pointer to help; the exit status 2. */
__attribute__((format(printf, 2, 3))) static int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "realm %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'realm help %s')\n", cmd);
    return 2;
}

static int store_error(const char *cmd)
{
    return cli_error(cmd, "%s", realm_last_error());
}

/* Open the store of --data-dir (NULL: the default directory). */
static int open_store(const char *cmd, const char *dir, realm_store **s)
{
    char buf[4096];
    if (!dir) {
        if (realm_store_default_dir(buf, sizeof buf) < 0)
            return store_error(cmd);
        dir = buf;
    }
    return realm_store_open(dir, s) < 0 ? store_error(cmd) : 0;
}

/* "2026-03-01 14:05" (UTC) or "-" for 0. */
static const char *fmt_time(int64_t t, char buf[32])
{
    if (t == 0)
        return "-";
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, 32, "%Y-%m-%d %H:%M", &tm);
    return buf;
}

static json_t *json_time(int64_t t)
{
    return t ? json_integer((json_int_t)t) : json_null();
}

/* A limit for people: "none" for 0. */
static const char *fmt_limit(int64_t v, char buf[32])
{
    if (v == 0)
        return "none";
    snprintf(buf, 32, "%lld", (long long)v);
    return buf;
}

static int64_t month_start(void)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    return (int64_t)timegm(&tm);
}

/* The value after option argv[*i] (consumed), or NULL with a usage error. */
static const char *opt_value(const char *cmd, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        usage_error(cmd, "option %s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

/* Options every subcommand takes. */
typedef struct common_opts {
    const char *data_dir;
    bool json;
    const char *pos[2]; /* positional arguments */
    int n_pos;
} common_opts;

/* Parse --data-dir, --json (if allowed) and up to max_pos positional
 * arguments; other options go to extra (which returns 1 if it took
 * argv[*i], 0 if unknown, -1 on a usage error already printed). */
static int parse_common(const char *cmd, int argc, char **argv, bool json_ok, int max_pos,
                        common_opts *o, int (*extra)(const char *, int, char **, int *, void *),
                        void *ud)
{
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || !a[1]) {
            if (o->n_pos == max_pos)
                return usage_error(cmd, "unexpected argument '%s'", a);
            o->pos[o->n_pos++] = a;
        } else if (strcmp(a, "--") == 0) {
            only_pos = true; /* a tenant named -x: realm tenant add -- -x */
        } else if (strcmp(a, "--data-dir") == 0) {
            if (!(o->data_dir = opt_value(cmd, argc, argv, &i)))
                return 2;
            if (!o->data_dir[0])
                return usage_error(cmd, "--data-dir is empty");
        } else if (json_ok && strcmp(a, "--json") == 0) {
            o->json = true;
        } else {
            int r = extra ? extra(cmd, argc, argv, &i, ud) : 0;
            if (r < 0)
                return 2;
            if (r == 0)
                return usage_error(cmd, "unknown option %s", a);
        }
    }
    return 0;
}

/* ---- realm tenant ----------------------------------------------------------------- */

#define TCMD "tenant"

static json_t *tenant_json(const realm_tenant *t)
{
    json_t *models = json_null();
    if (t->models[0]) {
        models = json_array();
        const char *p = t->models;
        for (const char *e; (e = strchr(p, ',')); p = e + 1)
            json_array_append_new(models, json_stringn(p, (size_t)(e - p)));
        json_array_append_new(models, json_string(p));
    }
    return json_pack(
        "{s:I, s:s, s:I, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:I}", "id",
        (json_int_t)t->id, "name", t->name, "created", (json_int_t)t->created, "module_sha256",
        t->module_sha256[0] ? json_string(t->module_sha256) : json_null(), "models", models, "rpm",
        (json_int_t)t->rpm, "tpm", (json_int_t)t->tpm, "max_concurrent",
        (json_int_t)t->max_concurrent, "max_tokens", (json_int_t)t->max_tokens, "quota",
        (json_int_t)t->quota, "weight", t->weight, "max_pages", (json_int_t)t->max_pages,
        "deadline_ms", (json_int_t)t->deadline_ms, "kv_quota", (json_int_t)t->kv_quota);
}

static void print_json(json_t *j)
{
    json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    putchar('\n');
    json_decref(j);
}

static int tenant_add(int argc, char **argv)
{
    common_opts o = {0};
    int rc = parse_common(TCMD, argc, argv, false, 1, &o, NULL, NULL);
    if (rc)
        return rc;
    if (o.n_pos != 1)
        return usage_error(TCMD, "add needs a NAME");
    realm_store *s;
    if ((rc = open_store(TCMD, o.data_dir, &s)))
        return rc;
    realm_tenant t;
    rc = realm_store_tenant_add(s, o.pos[0], &t) < 0 ? store_error(TCMD) : 0;
    if (rc == 0)
        printf("tenant '%s' added (id %lld); give it a key with: realm key create %s\n", t.name,
               (long long)t.id, t.name);
    realm_store_close(s);
    return rc;
}

/* Live keys per tenant id, from one key list. */
static int32_t live_keys(const realm_key_info *k, int32_t n, int64_t tenant)
{
    int32_t c = 0;
    for (int32_t i = 0; i < n; i++)
        c += k[i].tenant == tenant && k[i].revoked == 0;
    return c;
}

static int tenant_list(int argc, char **argv)
{
    common_opts o = {0};
    int rc = parse_common(TCMD, argc, argv, true, 0, &o, NULL, NULL);
    if (rc)
        return rc;
    realm_store *s;
    if ((rc = open_store(TCMD, o.data_dir, &s)))
        return rc;
    realm_tenant *t = NULL;
    realm_key_info *k = NULL;
    int32_t n = 0, nk = 0;
    if (realm_store_tenant_list(s, &t, &n) < 0 || realm_store_key_list(s, NULL, &k, &nk) < 0) {
        rc = store_error(TCMD);
    } else if (o.json) {
        json_t *a = json_array();
        for (int32_t i = 0; i < n; i++) {
            json_t *j = tenant_json(&t[i]);
            json_object_set_new(j, "keys", json_integer(live_keys(k, nk, t[i].id)));
            json_array_append_new(a, j);
        }
        print_json(a);
    } else if (n == 0) {
        printf("no tenants (add one with: realm tenant add NAME)\n");
    } else {
        printf("%-20s %6s %4s %8s %10s %4s %8s %12s %6s  %-8s %s\n", "NAME", "ID", "KEYS", "RPM",
               "TPM", "CONC", "MAX_TOK", "QUOTA", "WEIGHT", "MODULE", "MODELS");
        for (int32_t i = 0; i < n; i++) {
            char b[5][32];
            printf("%-20s %6lld %4d %8s %10s %4s %8s %12s %6g  %-8.8s %s\n", t[i].name,
                   (long long)t[i].id, (int)live_keys(k, nk, t[i].id),
                   t[i].rpm ? fmt_limit(t[i].rpm, b[0]) : "-",
                   t[i].tpm ? fmt_limit(t[i].tpm, b[1]) : "-",
                   t[i].max_concurrent ? fmt_limit(t[i].max_concurrent, b[2]) : "-",
                   t[i].max_tokens ? fmt_limit(t[i].max_tokens, b[3]) : "-",
                   t[i].quota ? fmt_limit(t[i].quota, b[4]) : "-", t[i].weight,
                   t[i].module_sha256[0] ? t[i].module_sha256 : "default",
                   t[i].models[0] ? t[i].models : "all");
        }
    }
    free(t);
    free(k);
    realm_store_close(s);
    return rc;
}

static int tenant_show(int argc, char **argv)
{
    common_opts o = {0};
    int rc = parse_common(TCMD, argc, argv, true, 1, &o, NULL, NULL);
    if (rc)
        return rc;
    if (o.n_pos != 1)
        return usage_error(TCMD, "show needs a NAME");
    realm_store *s;
    if ((rc = open_store(TCMD, o.data_dir, &s)))
        return rc;
    realm_tenant t;
    realm_key_info *k = NULL;
    realm_usage *u = NULL;
    int32_t nk = 0, nu = 0;
    int64_t since = month_start();
    if (realm_store_tenant_get(s, o.pos[0], &t) < 0 ||
        realm_store_key_list(s, o.pos[0], &k, &nk) < 0 ||
        realm_store_usage_query(s, o.pos[0], since, &u, &nu) < 0) {
        rc = store_error(TCMD);
        goto out;
    }
    int64_t kv_bytes = 0, kv_keys = 0;
    if (realm_store_kv_usage(s, t.id, &kv_bytes, &kv_keys) < 0) {
        rc = store_error(TCMD);
        goto out;
    }
    realm_usage sum = {0};
    for (int32_t i = 0; i < nu; i++) {
        sum.requests += u[i].requests;
        sum.prompt_tokens += u[i].prompt_tokens;
        sum.cached_tokens += u[i].cached_tokens;
        sum.completion_tokens += u[i].completion_tokens;
    }
    if (o.json) {
        json_t *j = tenant_json(&t);
        json_object_set_new(
            j, "kv_used",
            json_pack("{s:I, s:I}", "bytes", (json_int_t)kv_bytes, "keys", (json_int_t)kv_keys));
        json_t *keys = json_array();
        for (int32_t i = 0; i < nk; i++)
            json_array_append_new(keys, json_pack("{s:s, s:o, s:o, s:o}", "prefix", k[i].prefix,
                                                  "created", json_time(k[i].created), "last_used",
                                                  json_time(k[i].last_used), "revoked",
                                                  json_time(k[i].revoked)));
        json_object_set_new(j, "keys", keys);
        json_object_set_new(j, "usage_this_month",
                            json_pack("{s:I, s:I, s:I, s:I, s:I}", "since", (json_int_t)since,
                                      "requests", (json_int_t)sum.requests, "prompt_tokens",
                                      (json_int_t)sum.prompt_tokens, "cached_tokens",
                                      (json_int_t)sum.cached_tokens, "completion_tokens",
                                      (json_int_t)sum.completion_tokens));
        print_json(j);
        goto out;
    }
    char b[8][32];
    printf("tenant          %s (id %lld, created %s UTC)\n", t.name, (long long)t.id,
           fmt_time(t.created, b[0]));
    printf("module          %s\n", t.module_sha256[0] ? t.module_sha256 : "default");
    printf("models          %s\n", t.models[0] ? t.models : "all");
    printf("rpm             %s\n", fmt_limit(t.rpm, b[1]));
    printf("tpm             %s\n", fmt_limit(t.tpm, b[2]));
    printf("max concurrent  %s\n", fmt_limit(t.max_concurrent, b[3]));
    printf("max tokens      %s\n", fmt_limit(t.max_tokens, b[4]));
    printf("quota           %s%s\n", fmt_limit(t.quota, b[5]),
           t.quota ? " tokens a month (UTC)" : "");
    printf("weight          %g\n", t.weight);
    printf("max pages       %s\n", t.max_pages ? fmt_limit(t.max_pages, b[6]) : "default");
    printf("deadline        %s%s\n", t.deadline_ms ? fmt_limit(t.deadline_ms, b[7]) : "default",
           t.deadline_ms ? " ms" : "");
    /* the default is the server's (realm serve --kv-quota) */
    char kb[2][32];
    printf("kv quota        %s; %s used in %lld key%s\n",
           t.kv_quota ? cli_format_bytes((uint64_t)t.kv_quota, kb[0], 32) : "the server's default",
           cli_format_bytes((uint64_t)kv_bytes, kb[1], 32), (long long)kv_keys,
           kv_keys == 1 ? "" : "s");
    if (nk == 0)
        printf("keys            none (realm key create %s)\n", t.name);
    else
        printf("keys            %d live, %d revoked\n", (int)live_keys(k, nk, t.id),
               (int)(nk - live_keys(k, nk, t.id)));
    for (int32_t i = 0; i < nk; i++) {
        char c[3][32];
        printf("  %s  created %s  last used %s%s%s\n", k[i].prefix, fmt_time(k[i].created, c[0]),
               fmt_time(k[i].last_used, c[1]), k[i].revoked ? "  revoked " : "",
               k[i].revoked ? fmt_time(k[i].revoked, c[2]) : "");
    }
    printf("this month      %lld requests, %lld prompt tokens (%lld cached), %lld completion "
           "tokens\n",
           (long long)sum.requests, (long long)sum.prompt_tokens, (long long)sum.cached_tokens,
           (long long)sum.completion_tokens);
out:
    free(k);
    free(u);
    realm_store_close(s);
    return rc;
}

/* A whole file into a malloc'ed buffer; NULL with a message. */
static char *read_file(const char *cmd, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error(cmd, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap && cap < MODULE_MAX + 1) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        } else if (n == cap) {
            break;
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad || n > MODULE_MAX) {
        cli_error(cmd, "%s: %s", path,
                  !buf  ? "out of memory"
                  : bad ? "read error"
                        : "larger than 64 MiB");
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Check and build the module (refused with the reason, nothing changed),
 * then store it: its hash into sha. */
static int put_module(realm_store *s, const char *path, char sha[65])
{
    size_t n;
    char *w = read_file(TCMD, path, &n);
    if (!w)
        return 1;
    realm_sandbox *sb = NULL;
    int rc = realm_module_check(w, n, NULL);
    if (rc == 0)
        rc = realm_sandbox_new(&(realm_sandbox_params){0}, &sb);
    if (rc == 0)
        rc = realm_module_build(sb, w, n, NULL);
    if (rc < 0) {
        rc = cli_error(TCMD, "%s: %s", path, realm_last_error());
    } else if (realm_store_module_put(s, w, n, sha) < 0) {
        rc = store_error(TCMD);
    }
    realm_sandbox_free(sb);
    free(w);
    return rc;
}

/* What `tenant set` changes: each field with its flag. */
typedef struct set_opts {
    realm_tenant t;
    bool has[10];
    const char *models, *module;
} set_opts;

enum {
    SET_RPM,
    SET_TPM,
    SET_CONC,
    SET_MAXTOK,
    SET_QUOTA,
    SET_PAGES,
    SET_DEADLINE,
    SET_KV_QUOTA,
    SET_WEIGHT
};

static int set_option(const char *cmd, int argc, char **argv, int *i, void *ud)
{
    static const struct {
        const char *name;
        int field;
        size_t off;
        long max;
    } ints[] = {
        {"--rpm", SET_RPM, offsetof(realm_tenant, rpm), 1L << 62},
        {"--tpm", SET_TPM, offsetof(realm_tenant, tpm), 1L << 62},
        {"--max-concurrent", SET_CONC, offsetof(realm_tenant, max_concurrent), INT32_MAX},
        {"--max-tokens", SET_MAXTOK, offsetof(realm_tenant, max_tokens), INT32_MAX},
        {"--quota", SET_QUOTA, offsetof(realm_tenant, quota), 1L << 62},
        {"--max-pages", SET_PAGES, offsetof(realm_tenant, max_pages), 65536},
        {"--deadline-ms", SET_DEADLINE, offsetof(realm_tenant, deadline_ms), 86400000},
    };
    set_opts *o = ud;
    const char *a = argv[*i];
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        if (strcmp(a, ints[k].name) != 0)
            continue;
        long v;
        if (!cli_parse_int(cmd, a, *i + 1 < argc ? argv[*i + 1] : NULL, 0, ints[k].max, &v))
            return -1;
        ++*i;
        int64_t v64 = v;
        memcpy((char *)&o->t + ints[k].off, &v64, sizeof v64);
        o->has[ints[k].field] = true;
        return 1;
    }
    if (strcmp(a, "--weight") == 0) {
        const char *v = opt_value(cmd, argc, argv, i);
        if (!v)
            return -1;
        char *end;
        errno = 0;
        double w = strtod(v, &end);
        if (!v[0] || *end || errno || !(w >= 1e-3 && w <= 1e3)) {
            usage_error(cmd, "option --weight: '%s' is not a number in 0.001..1000", v);
            return -1;
        }
        o->t.weight = w;
        o->has[SET_WEIGHT] = true;
        return 1;
    }
    if (strcmp(a, "--kv-quota") == 0) {
        const char *v = opt_value(cmd, argc, argv, i);
        if (!v)
            return -1;
        uint64_t bytes;
        if (realm_parse_size(v, &bytes) < 0 || bytes > (uint64_t)REALM_KV_QUOTA_MAX) {
            usage_error(cmd,
                        "option --kv-quota: '%s' is not a size up to 1T (64M, 1G; 0: the "
                        "default)",
                        v);
            return -1;
        }
        o->t.kv_quota = (int64_t)bytes;
        o->has[SET_KV_QUOTA] = true;
        return 1;
    }
    if (strcmp(a, "--models") == 0)
        return (o->models = opt_value(cmd, argc, argv, i)) ? 1 : -1;
    if (strcmp(a, "--module") == 0)
        return (o->module = opt_value(cmd, argc, argv, i)) ? 1 : -1;
    return 0;
}

static int tenant_set(int argc, char **argv)
{
    common_opts o = {0};
    set_opts so = {0};
    int rc = parse_common(TCMD, argc, argv, false, 1, &o, set_option, &so);
    if (rc)
        return rc;
    if (o.n_pos != 1)
        return usage_error(TCMD, "set needs a NAME");
    bool any = so.models || so.module;
    for (int i = 0; i < 10; i++)
        any |= so.has[i];
    if (!any)
        return usage_error(TCMD, "set needs something to set");
    const char *models = so.models && strcmp(so.models, "all") == 0 ? "" : so.models;
    if (models && strlen(models) >= sizeof so.t.models)
        return usage_error(TCMD, "--models: the list is longer than %zu bytes",
                           sizeof so.t.models - 1);
    realm_store *s;
    if ((rc = open_store(TCMD, o.data_dir, &s)))
        return rc;
    realm_tenant t;
    if (realm_store_tenant_get(s, o.pos[0], &t) < 0) {
        rc = store_error(TCMD);
        goto out;
    }
    static const size_t offs[] = {
        [SET_RPM] = offsetof(realm_tenant, rpm),
        [SET_TPM] = offsetof(realm_tenant, tpm),
        [SET_CONC] = offsetof(realm_tenant, max_concurrent),
        [SET_MAXTOK] = offsetof(realm_tenant, max_tokens),
        [SET_QUOTA] = offsetof(realm_tenant, quota),
        [SET_PAGES] = offsetof(realm_tenant, max_pages),
        [SET_DEADLINE] = offsetof(realm_tenant, deadline_ms),
        [SET_KV_QUOTA] = offsetof(realm_tenant, kv_quota),
    };
    for (int f = SET_RPM; f <= SET_KV_QUOTA; f++)
        if (so.has[f])
            memcpy((char *)&t + offs[f], (const char *)&so.t + offs[f], sizeof(int64_t));
    if (so.has[SET_WEIGHT])
        t.weight = so.t.weight;
    if (models)
        snprintf(t.models, sizeof t.models, "%s", models);
    if (so.module && strcmp(so.module, "default") == 0) {
        t.module_sha256[0] = '\0';
    } else if (so.module) {
        char sha[65];
        if ((rc = put_module(s, so.module, sha)))
            goto out;
        memcpy(t.module_sha256, sha, sizeof sha);
    }
    if (realm_store_tenant_update(s, &t) < 0) {
        rc = store_error(TCMD);
        goto out;
    }
    printf("tenant '%s' updated", t.name);
    if (so.module)
        printf("; module %s", t.module_sha256[0] ? t.module_sha256 : "default");
    printf("\n");
out:
    realm_store_close(s);
    return rc;
}

static int tenant_rm(int argc, char **argv)
{
    common_opts o = {0};
    int rc = parse_common(TCMD, argc, argv, false, 1, &o, NULL, NULL);
    if (rc)
        return rc;
    if (o.n_pos != 1)
        return usage_error(TCMD, "rm needs a NAME");
    realm_store *s;
    if ((rc = open_store(TCMD, o.data_dir, &s)))
        return rc;
    realm_key_info *k = NULL;
    int32_t nk = 0;
    if (realm_store_key_list(s, o.pos[0], &k, &nk) < 0 ||
        realm_store_tenant_remove(s, o.pos[0]) < 0) {
        rc = store_error(TCMD);
    } else {
        int32_t live = live_keys(k, nk, nk ? k[0].tenant : 0);
        printf("tenant '%s' removed; %d key%s stopped working; its usage is kept\n", o.pos[0],
               (int)live, live == 1 ? "" : "s");
    }
    free(k);
    realm_store_close(s);
    return rc;
}

static int run_tenant(int argc, char **argv)
{
    if (argc < 2)
        return usage_error(TCMD, "needs a subcommand: add, list, show, set or rm");
    const char *sub = argv[1];
    argc -= 2;
    argv += 2;
    if (strcmp(sub, "add") == 0)
        return tenant_add(argc, argv);
    if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0)
        return tenant_list(argc, argv);
    if (strcmp(sub, "show") == 0)
        return tenant_show(argc, argv);
    if (strcmp(sub, "set") == 0)
        return tenant_set(argc, argv);
    if (strcmp(sub, "rm") == 0 || strcmp(sub, "remove") == 0)
        return tenant_rm(argc, argv);
    return usage_error(TCMD, "unknown subcommand '%s' (add, list, show, set, rm)", sub);
}

const cli_command cli_cmd_tenant = {
    "tenant",
    run_tenant,
    "add, list, show, change or remove tenants",
    "usage: realm tenant add NAME\n"
    "       realm tenant list [--json]\n"
    "       realm tenant show NAME [--json]\n"
    "       realm tenant set NAME [--rpm N] [--tpm N] [--max-concurrent N] [--max-tokens N]\n"
    "                             [--quota N] [--models a,b|all] [--weight W]\n"
    "                             [--max-pages N] [--deadline-ms N] [--kv-quota SIZE]\n"
    "                             [--module FILE.wasm|default]\n"
    "       realm tenant rm NAME\n"
    "       (each also takes --data-dir DIR)\n"
    "\n"
    "Tenants share the server; each has its API keys (realm key), limits, the\n"
    "models it may use and the WebAssembly module that handles its requests. A\n"
    "running server sees changes within a second. Names: letters, digits, '.',\n"
    "'_' and '-', at most 64 bytes. Ids are never reused. rm stops the tenant's\n"
    "keys at once, removes its module's key-value data and keeps its usage. show\n"
    "prints the settings, the keys' prefixes, the key-value data used and this\n"
    "month's usage.\n"
    "\n"
    "set (0 means no limit):\n"
    "  --rpm N               requests per minute\n"
    "  --tpm N               tokens (prompt + completion) per minute\n"
    "  --max-concurrent N    requests at once\n"
    "  --max-tokens N        cap on a request's max_tokens\n"
    "  --quota N             tokens per calendar month (UTC)\n"
    "  --models a,b|all      the models and LoRA adapters it may use, each by its\n"
    "                        own name (default: all)\n"
    "  --weight W            its share when the server is busy, 0.001..1000 (default 1)\n"
    "  --max-pages N         its module's memory in 64 KiB pages (0: the server's default)\n"
    "  --deadline-ms N       its module's time per request (0: the server's default)\n"
    "  --kv-quota SIZE       key-value data its module may keep (64M, 1G; 0: the\n"
    "                        server's default, realm serve --kv-quota, 64M)\n"
    "  --module FILE.wasm    check and build the module now (a bad one is refused with\n"
    "                        the reason and nothing changes), store it in the data\n"
    "                        directory and use it; requests in flight finish on the old\n"
    "                        one. 'default': back to the default module\n"
    "\n"
    "  --data-dir DIR        the data directory (default $REALM_DATA_DIR, else\n"
    "                        $XDG_DATA_HOME/realm, else ~/.local/share/realm)\n"
    "  --json                list, show: JSON (times in unix seconds)\n",
};

/* ---- realm key -------------------------------------------------------------------- */

#define KCMD "key"

static int key_create(int argc, char **argv)
{
    common_opts o = {0};
    int rc = parse_common(KCMD, argc, argv, false, 1, &o, NULL, NULL);
    if (rc)
        return rc;
    if (o.n_pos != 1)
        return usage_error(KCMD, "create needs a TENANT");
    realm_store *s;
    if ((rc = open_store(KCMD, o.data_dir, &s)))
        return rc;
    char key[REALM_KEY_LEN + 1];
    realm_key_info info;
    if (realm_store_key_create(s, o.pos[0], key, &info) < 0) {
        rc = store_error(KCMD);
    } else {
        printf("%s\n", key);
        fflush(stdout);
        fprintf(stderr,
                "realm key: a new key for tenant '%s' (prefix %s). Only its hash is stored: "
                "it will not be shown again.\n",
                info.tenant_name, info.prefix);
        memset(key, 0, sizeof key);
    }
    realm_store_close(s);
    return rc;
}

static int key_tenant_option(const char *cmd, int argc, char **argv, int *i, void *ud)
{
    if (strcmp(argv[*i], "--tenant") != 0)
        return 0;
    return (*(const char **)ud = opt_value(cmd, argc, argv, i)) ? 1 : -1;
}

static int key_list(int argc, char **argv)
{
    common_opts o = {0};
    const char *tenant = NULL;
    int rc = parse_common(KCMD, argc, argv, true, 0, &o, key_tenant_option, &tenant);
    if (rc)
        return rc;
    realm_store *s;
    if ((rc = open_store(KCMD, o.data_dir, &s)))
        return rc;
    realm_key_info *k = NULL;
    int32_t n = 0;
    if (realm_store_key_list(s, tenant, &k, &n) < 0) {
        rc = store_error(KCMD);
    } else if (o.json) {
        json_t *a = json_array();
        for (int32_t i = 0; i < n; i++)
            json_array_append_new(
                a, json_pack("{s:s, s:s, s:I, s:o, s:o, s:o}", "prefix", k[i].prefix, "tenant",
                             k[i].tenant_name, "tenant_id", (json_int_t)k[i].tenant, "created",
                             json_time(k[i].created), "last_used", json_time(k[i].last_used),
                             "revoked", json_time(k[i].revoked)));
        print_json(a);
    } else if (n == 0) {
        printf("no keys (make one with: realm key create TENANT)\n");
    } else {
        printf("%-12s  %-20s  %-16s  %-16s  %s\n", "PREFIX", "TENANT", "CREATED (UTC)", "LAST USED",
               "REVOKED");
        for (int32_t i = 0; i < n; i++) {
            char b[3][32];
            printf("%-12s  %-20s  %-16s  %-16s  %s\n", k[i].prefix, k[i].tenant_name,
                   fmt_time(k[i].created, b[0]), fmt_time(k[i].last_used, b[1]),
                   fmt_time(k[i].revoked, b[2]));
        }
    }
    free(k);
    realm_store_close(s);
    return rc;
}

static int key_revoke(int argc, char **argv)
{
    common_opts o = {0};
    int rc = parse_common(KCMD, argc, argv, false, 1, &o, NULL, NULL);
    if (rc)
        return rc;
    if (o.n_pos != 1)
        return usage_error(KCMD, "revoke needs a KEY or a key PREFIX");
    char line[128];
    const char *k = o.pos[0];
    if (strcmp(k, "-") == 0) { /* from stdin: the key stays out of ps and the history */
        if (!fgets(line, sizeof line, stdin))
            return cli_error(KCMD, "no key on standard input");
        line[strcspn(line, "\r\n")] = '\0';
        k = line;
    }
    realm_store *s;
    if ((rc = open_store(KCMD, o.data_dir, &s)))
        return rc;
    if (realm_store_key_revoke(s, k) < 0)
        rc = store_error(KCMD);
    else
        printf("key %.*s revoked\n", REALM_KEY_PREFIX_LEN, k);
    realm_store_close(s);
    memset(line, 0, sizeof line);
    return rc;
}

static int run_key(int argc, char **argv)
{
    if (argc < 2)
        return usage_error(KCMD, "needs a subcommand: create, list or revoke");
    const char *sub = argv[1];
    argc -= 2;
    argv += 2;
    if (strcmp(sub, "create") == 0)
        return key_create(argc, argv);
    if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0)
        return key_list(argc, argv);
    if (strcmp(sub, "revoke") == 0)
        return key_revoke(argc, argv);
    return usage_error(KCMD, "unknown subcommand '%s' (create, list, revoke)", sub);
}

const cli_command cli_cmd_key = {
    "key",
    run_key,
    "create, list or revoke tenants' API keys",
    "usage: realm key create TENANT\n"
    "       realm key list [--tenant T] [--json]\n"
    "       realm key revoke KEY|PREFIX|-\n"
    "       (each also takes --data-dir DIR)\n"
    "\n"
    "create prints a new key (rk- and 32 random characters) alone on standard\n"
    "output. Only its SHA-256 is stored, so it cannot be shown again. list shows\n"
    "keys by their prefix (the first 12 characters), with their tenant, creation,\n"
    "last use and revocation. revoke takes the whole key ('-': read it from\n"
    "standard input) or a prefix that names one key; the key stops working at\n"
    "once.\n"
    "\n"
    "  --tenant T       list: only the keys of tenant T\n"
    "  --data-dir DIR   the data directory (default $REALM_DATA_DIR, else\n"
    "                   $XDG_DATA_HOME/realm, else ~/.local/share/realm)\n"
    "  --json           list: JSON (times in unix seconds, null for never)\n",
};

/* ---- realm usage ------------------------------------------------------------------- */

#define UCMD "usage"

/* --since: YYYY-MM-DD[THH:MM[:SS]][Z] (UTC) or a duration back from now
 * (24h, 7d). -1 if malformed. */
static int64_t parse_since(const char *v)
{
    char *end;
    errno = 0;
    if (v[0] >= '0' && v[0] <= '9') {
        long n = strtol(v, &end, 10);
        if (!errno && end != v && n >= 0 && n <= 100000 && end[1] == '\0' &&
            (end[0] == 'h' || end[0] == 'd'))
            return (int64_t)time(NULL) - (int64_t)n * (end[0] == 'h' ? 3600 : 86400);
    }
    struct tm tm = {0};
    const char *p = strptime(v, "%Y-%m-%d", &tm);
    if (p && *p == 'T')
        p = strptime(p + 1, "%H:%M", &tm);
    if (p && *p == ':')
        p = strptime(p + 1, "%S", &tm);
    if (p && *p == 'Z')
        p++;
    if (!p || *p)
        return -1;
    int64_t t = (int64_t)timegm(&tm);
    return t < 0 ? -1 : t;
}

typedef struct usage_opts {
    const char *tenant;
    int64_t since;
} usage_opts;

static int usage_option(const char *cmd, int argc, char **argv, int *i, void *ud)
{
    usage_opts *o = ud;
    if (strcmp(argv[*i], "--tenant") == 0)
        return (o->tenant = opt_value(cmd, argc, argv, i)) ? 1 : -1;
    if (strcmp(argv[*i], "--since") != 0)
        return 0;
    const char *v = opt_value(cmd, argc, argv, i);
    if (!v)
        return -1;
    if ((o->since = parse_since(v)) < 0) {
        usage_error(cmd,
                    "--since: '%s' is not a date (2026-12-01, 2026-12-01T08:00) or a "
                    "duration (24h, 7d)",
                    v);
        return -1;
    }
    return 1;
}

/* A tenant's name by id, or "#ID" for one removed. */
static const char *tenant_name(const realm_tenant *t, int32_t n, int64_t id, char buf[32])
{
    for (int32_t i = 0; i < n; i++)
        if (t[i].id == id)
            return t[i].name;
    snprintf(buf, 32, "#%lld", (long long)id);
    return buf;
}

static int run_usage(int argc, char **argv)
{
    common_opts o = {0};
    usage_opts uo = {0};
    int rc = parse_common(UCMD, argc - 1, argv + 1, true, 0, &o, usage_option, &uo);
    if (rc)
        return rc;
    realm_store *s;
    if ((rc = open_store(UCMD, o.data_dir, &s)))
        return rc;
    realm_tenant *t = NULL;
    realm_usage *u = NULL;
    int32_t nt = 0, nu = 0;
    if (realm_store_tenant_list(s, &t, &nt) < 0 ||
        realm_store_usage_query(s, uo.tenant, uo.since, &u, &nu) < 0) {
        rc = store_error(UCMD);
        goto out;
    }
    realm_usage sum = {0};
    for (int32_t i = 0; i < nu; i++) {
        sum.requests += u[i].requests;
        sum.prompt_tokens += u[i].prompt_tokens;
        sum.cached_tokens += u[i].cached_tokens;
        sum.completion_tokens += u[i].completion_tokens;
    }
    if (o.json) {
        json_t *rows = json_array();
        for (int32_t i = 0; i < nu; i++) {
            char b[32];
            json_array_append_new(
                rows, json_pack("{s:I, s:s, s:I, s:s, s:s, s:I, s:I, s:I, s:I}", "hour",
                                (json_int_t)u[i].hour, "tenant", tenant_name(t, nt, u[i].tenant, b),
                                "tenant_id", (json_int_t)u[i].tenant, "model", u[i].model, "user",
                                u[i].user, "requests", (json_int_t)u[i].requests, "prompt_tokens",
                                (json_int_t)u[i].prompt_tokens, "cached_tokens",
                                (json_int_t)u[i].cached_tokens, "completion_tokens",
                                (json_int_t)u[i].completion_tokens));
        }
        print_json(json_pack("{s:I, s:o, s:{s:I, s:I, s:I, s:I}}", "since", (json_int_t)uo.since,
                             "rows", rows, "totals", "requests", (json_int_t)sum.requests,
                             "prompt_tokens", (json_int_t)sum.prompt_tokens, "cached_tokens",
                             (json_int_t)sum.cached_tokens, "completion_tokens",
                             (json_int_t)sum.completion_tokens));
        goto out;
    }
    if (nu == 0) {
        printf("no usage recorded%s\n", uo.since ? " in that time" : "");
        goto out;
    }
    printf("%-16s  %-16s  %-20s  %-16s %9s %12s %12s %12s\n", "HOUR (UTC)", "TENANT", "MODEL",
           "USER", "REQUESTS", "PROMPT", "CACHED", "COMPLETION");
    for (int32_t i = 0; i < nu; i++) {
        char b[2][32];
        printf("%-16s  %-16s  %-20s  %-16s %9lld %12lld %12lld %12lld\n", fmt_time(u[i].hour, b[0]),
               tenant_name(t, nt, u[i].tenant, b[1]), u[i].model, u[i].user[0] ? u[i].user : "-",
               (long long)u[i].requests, (long long)u[i].prompt_tokens,
               (long long)u[i].cached_tokens, (long long)u[i].completion_tokens);
    }
    printf("%-16s  %-16s  %-20s  %-16s %9lld %12lld %12lld %12lld\n", "total", "", "", "",
           (long long)sum.requests, (long long)sum.prompt_tokens, (long long)sum.cached_tokens,
           (long long)sum.completion_tokens);
out:
    free(t);
    free(u);
    realm_store_close(s);
    return rc;
}

const cli_command cli_cmd_usage = {
    "usage",
    run_usage,
    "tokens and requests by tenant, model, user and hour",
    "usage: realm usage [--tenant T] [--since 2026-12-01|24h|7d] [--json] [--data-dir DIR]\n"
    "\n"
    "Usage as the server recorded it, one row per hour, tenant, model and the\n"
    "requests' 'user', then the totals. Cached tokens are the part of the prompt\n"
    "tokens served from the prefix cache. A removed tenant shows as #ID.\n"
    "\n"
    "  --tenant T       only tenant T\n"
    "  --since WHEN     from a date or time (UTC: 2026-12-01, 2026-12-01T08:00) or\n"
    "                   a time back from now (24h, 7d); default: everything\n"
    "  --data-dir DIR   the data directory (default $REALM_DATA_DIR, else\n"
    "                   $XDG_DATA_HOME/realm, else ~/.local/share/realm)\n"
    "  --json           JSON (hours in unix seconds)\n",
};
