/*
 * realm module check|build|run — what a tenant author uses before uploading a
 * module: check validates and lists imports/exports, build compiles it into
 * the module cache ahead of time, run sends one request (standard input)
 * through it against local models and prints what the client would receive.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "opts.h"
#include "realm/engine.h"
#include "realm/error.h"
#include "realm/model.h"
#include "realm/sandbox.h"
#include "sandbox/options_internal.h"

#define CMD        "module"
#define MAX_MODELS 8

/* A whole file (or standard input for "-") into a malloc'ed buffer. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap + 1);
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            char *nb = realloc(buf, (cap *= 2) + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    if (f != stdin)
        fclose(f);
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

static int do_check(const char *path)
{
    size_t n;
    char *w = slurp(path, &n);
    if (!w)
        return cli_error(CMD, "cannot read %s", path);
    realm_module_info info;
    int rc = realm_module_check(w, n, &info);
    free(w);
    if (rc < 0)
        return cli_error(CMD, "%s: %s", path, realm_last_error());
    printf("%s: ok (host ABI v%d)\nimports:\n", path, REALM_HOST_ABI_VERSION);
    for (uint32_t i = 0; i < info.n_imports; i++)
        printf("  %s\n", info.imports[i]);
    printf("exports:\n");
    for (uint32_t i = 0; i < info.n_exports; i++)
        printf("  %s\n", info.exports[i]);
    realm_module_info_free(&info);
    return 0;
}

static int do_build(const char *path, const char *cache)
{
    size_t n;
    char *w = slurp(path, &n);
    if (!w)
        return cli_error(CMD, "cannot read %s", path);
    realm_sandbox *sb;
    int rc = realm_sandbox_new(&(realm_sandbox_params){.cache_dir = cache}, &sb);
    char *so = NULL;
    if (rc == 0)
        rc = realm_module_build(sb, w, n, &so);
    free(w);
    if (rc < 0) {
        realm_sandbox_free(sb);
        return cli_error(CMD, "%s: %s", path, realm_last_error());
    }
    printf("%s\n", so);
    free(so);
    realm_sandbox_free(sb);
    return 0;
}

static void on_emit(void *ud, const char *d, size_t n)
{
    (void)ud;
    fwrite(d, 1, n, stdout);
    fflush(stdout);
}

/* The one request: its response status, and the tenant its log lines are
 * tagged with. */
typedef struct run_ctx {
    int status;
    uint32_t tenant;
} run_ctx;

static void on_respond(void *ud, int status, const char *d, size_t n)
{
    ((run_ctx *)ud)->status = status;
    printf("\n--- response %d\n", status);
    fwrite(d, 1, n, stdout);
    putchar('\n');
}

static void on_log(void *ud, int level, const char *line, size_t n)
{
    static const char *const names[4] = {"error", "warn", "info", "debug"};
    const run_ctx *r = ud;
    fprintf(stderr, "[tenant %u request 1] %s: %.*s\n", r->tenant, names[level & 3], (int)n, line);
}

typedef struct run_opts {
    const char *path, *cache;
    const char *names[MAX_MODELS], *files[MAX_MODELS];
    int n_models;
    const char *tmpl_names[MAX_MODELS], *tmpls[MAX_MODELS]; /* --chat-template NAME=T */
    int n_tmpls;
    realm_tenant_policy pol;
} run_opts;

static int do_run(run_opts *o)
{
    realm_model *models[MAX_MODELS] = {0};
    realm_engine *engines[MAX_MODELS] = {0};
    realm_sandbox *sb = NULL;
    realm_module *m = NULL;
    realm_instance *in = NULL;
    char *req = NULL;
    run_ctx ctx = {.tenant = o->pol.tenant};
    int ret = 1;
    if (realm_sandbox_new(&(realm_sandbox_params){.cache_dir = o->cache}, &sb) < 0) {
        cli_error(CMD, "%s", realm_last_error());
        goto out;
    }
    for (int i = 0; i < o->n_tmpls; i++) {
        int known = 0;
        for (int k = 0; k < o->n_models; k++)
            known |= strcmp(o->names[k], o->tmpl_names[i]) == 0;
        if (!known) {
            cli_error(CMD, "--chat-template %s=...: no model named '%s' (give it with -m)",
                      o->tmpl_names[i], o->tmpl_names[i]);
            goto out;
        }
    }
    for (int i = 0; i < o->n_models; i++) {
        const char *tmpl = NULL;
        for (int k = 0; k < o->n_tmpls; k++)
            if (strcmp(o->names[i], o->tmpl_names[k]) == 0)
                tmpl = o->tmpls[k];
        if (realm_model_load(o->files[i], NULL, &models[i]) < 0 ||
            realm_engine_new(models[i], &(realm_engine_params){0}, &engines[i]) < 0 ||
            realm_sandbox_add_model(sb, o->names[i], models[i], engines[i], tmpl) < 0) {
            cli_error(CMD, "%s: %s", o->files[i], realm_last_error());
            goto out;
        }
    }
    if (realm_module_load(sb, o->path, &m) < 0 || realm_instance_new(m, &o->pol, &in) < 0) {
        cli_error(CMD, "%s: %s", o->path, realm_last_error());
        goto out;
    }
    size_t n;
    req = slurp("-", &n);
    if (!req) {
        cli_error(CMD, "cannot read the request from standard input");
        goto out;
    }
    realm_request_io io = {.body = req,
                           .body_len = n,
                           .emit = on_emit,
                           .respond = on_respond,
                           .log = on_log,
                           .ud = &ctx};
    int32_t hret = 0;
    if (realm_instance_handle(in, &io, &hret) < 0) {
        fflush(stdout);
        cli_error(CMD, "%s", realm_last_error());
        ret = 2;
        goto out;
    }
    if (!ctx.status)
        printf("\n--- no response (handle returned %d)\n", hret);
    ret = 0;
out:
    free(req);
    realm_instance_free(in);
    realm_module_free(m);
    realm_sandbox_free(sb);
    for (int i = 0; i < o->n_models; i++) {
        realm_engine_free(engines[i]);
        realm_model_free(models[i]);
    }
    return ret;
}

typedef struct module_cfg {
    const char *cache;
    cli_strings models, templates; /* NAME=FILE, NAME=TEMPLATE */
    long long max_tokens, max_pages, deadline_ms, max_generations, tenant;
    bool allow_tensor_read;
} module_cfg;

/* Per invocation: no environment variables from the table (the sandbox falls
 * back to $REALM_MODULE_CACHE for the cache itself). The defaults are those
 * of realm_tenant_policy_init. */
static const cli_opt module_opts[] = {
    {"model", 'm', CLI_OPT_STRING_LIST, "NAME=FILE", NULL,
     "a model the module may open as NAME (repeatable)", offsetof(module_cfg, models), .env = false,
     .n_max = MAX_MODELS},
    {"chat-template", 0, CLI_OPT_STRING_LIST, "NAME=T", NULL,
     "render model NAME's chat prompts with template T (default: its own; chatml when it has "
     "none)",
     offsetof(module_cfg, templates), .env = false, .n_max = MAX_MODELS},
    {"max-tokens", 0, CLI_OPT_INT, "N", "0", "cap on tokens per generation, 0 for none",
     offsetof(module_cfg, max_tokens), .env = false, .min = 0, .max = INT32_MAX},
    {"cache", 0, CLI_OPT_STRING, "DIR", NULL,
     "module cache (default: $REALM_MODULE_CACHE or ~/.cache/realm/modules)",
     offsetof(module_cfg, cache), .env = false},
    {"max-pages", 0, CLI_OPT_INT, "N", "1024", "tenant memory cap in 64 KiB pages",
     offsetof(module_cfg, max_pages), .env = false, .min = 1, .max = 65535},
    {"deadline-ms", 0, CLI_OPT_INT, "N", "30000", "per-request deadline, 0 for none",
     offsetof(module_cfg, deadline_ms), .env = false, .min = 0, .max = 3600000},
    {"max-generations", 0, CLI_OPT_INT, "N", "4", "generations open at once",
     offsetof(module_cfg, max_generations), .env = false, .min = 1, .max = 64},
    {"tenant", 0, CLI_OPT_INT, "ID", "0", "the tenant the request runs as",
     offsetof(module_cfg, tenant), .env = false, .min = 0, .max = UINT32_MAX},
    {"allow-tensor-read", 0, CLI_OPT_FLAG, NULL, NULL, "allow realm.tensor_read",
     offsetof(module_cfg, allow_tensor_read), .env = false},
};

/* Split each "NAME=VALUE" of l into names[i] and values[i], which point into
 * one copy of the spec, left in copies[i] for the caller to free. False, with
 * a message, for a spec without NAME, or without VALUE when one is needed. */
static bool split_specs(const char *opt, const char *form, const cli_strings *l, bool need_value,
                        const char **names, const char **values, char **copies)
{
    for (int i = 0; i < l->n; i++) {
        const char *eq = strchr(l->v[i], '=');
        if (eq == NULL || eq == l->v[i] || (need_value && eq[1] == '\0')) {
            cli_error(CMD, "%s takes %s, not '%s'", opt, form, l->v[i]);
            return false;
        }
        if ((copies[i] = strdup(l->v[i])) == NULL) {
            cli_error(CMD, "out of memory");
            return false;
        }
        copies[i][eq - l->v[i]] = '\0';
        names[i] = copies[i];
        values[i] = copies[i] + (eq - l->v[i]) + 1;
    }
    return true;
}

static int run_module(int argc, char **argv)
{
    if (argc < 2 || cli_is_help(argv[1]))
        return argc < 2 ? (cli_print_usage(&cli_cmd_module), 2) : cli_print_usage(&cli_cmd_module);
    const char *sub = argv[1];
    if (strcmp(sub, "options") == 0) { /* the generate options, as docs/host-abi.md has them */
        char *md = realm__gen_opts_markdown();
        if (!md)
            return cli_error(CMD, "out of memory");
        fputs(md, stdout);
        free(md);
        return 0;
    }
    module_cfg cfg = {0};
    cli_args args;
    run_opts o = {0};
    char *copies[2 * MAX_MODELS] = {0};
    int rc =
        cli_opts_parse(CMD, module_opts, CLI_OPTS_N(module_opts), argc - 1, argv + 1, &cfg, &args);
    if (rc != 0) {
        rc = rc == 2 ? 0 : rc;
    } else if (args.n > 1) {
        rc = cli_error(CMD, "unexpected argument '%s'", args.v[1]);
    } else if (args.n == 0) {
        rc = cli_error(CMD, "%s needs a FILE.wasm", sub);
    } else if (!split_specs("-m", "NAME=MODEL.gguf", &cfg.models, false, o.names, o.files,
                            copies) ||
               !split_specs("--chat-template", "NAME=TEMPLATE", &cfg.templates, true, o.tmpl_names,
                            o.tmpls, copies + MAX_MODELS)) {
        rc = 1;
    } else {
        o.path = args.v[0];
        o.cache = cfg.cache;
        o.n_models = cfg.models.n;
        o.n_tmpls = cfg.templates.n;
        realm_tenant_policy_init(&o.pol);
        o.pol.max_tokens = (int32_t)cfg.max_tokens;
        o.pol.max_pages = (uint32_t)cfg.max_pages;
        o.pol.deadline_ms = (uint32_t)cfg.deadline_ms;
        o.pol.max_generations = (int32_t)cfg.max_generations;
        o.pol.tenant = (uint32_t)cfg.tenant;
        o.pol.allow_tensor_read = cfg.allow_tensor_read;
        if (strcmp(sub, "check") == 0)
            rc = do_check(o.path);
        else if (strcmp(sub, "build") == 0)
            rc = do_build(o.path, o.cache);
        else if (strcmp(sub, "run") == 0)
            rc = do_run(&o);
        else
            rc = cli_error(CMD, "unknown subcommand '%s' (check, build, run, options)", sub);
    }
    for (int i = 0; i < 2 * MAX_MODELS; i++)
        free(copies[i]);
    cli_opts_free(module_opts, CLI_OPTS_N(module_opts), &cfg);
    return rc;
}

static const char usage_head[] =
    "usage: realm module check FILE.wasm\n"
    "       realm module options\n"
    "       realm module build FILE.wasm [--cache DIR]\n"
    "       realm module run FILE.wasm -m NAME=MODEL.gguf [-m ...] [--cache DIR]\n"
    "                        [--chat-template NAME=TEMPLATE] [--max-tokens N]\n"
    "                        [--max-pages N] [--deadline-ms N] [--max-generations N]\n"
    "                        [--tenant ID] [--allow-tensor-read] < request.json\n"
    "\n"
    "check validates the module (wasm-validate and Realm's rules: only imports\n"
    "of host module 'realm', exports 'handle' and 'memory') and lists its\n"
    "imports and exports. build translates it with wasm2c and compiles it into\n"
    "the module cache, printing the shared object's path. run loads the models,\n"
    "sends standard input to the module as one request and prints what the\n"
    "client would receive: the streamed pieces, then '--- response STATUS' and\n"
    "the body. A trap prints the error and exits with status 2. The module's log\n"
    "lines go to standard error, tagged with tenant and request. options prints\n"
    "the options realm.generate takes (a Markdown table). run keeps no data\n"
    "directory: the module's key-value calls (realm.kv_get, kv_put, kv_delete,\n"
    "kv_list) return UNSUPPORTED (-5); under realm serve they reach the tenant's\n"
    "data. The host ABI: docs/host-abi.md.\n";
static char usage[4096];

/* main prints the usage before any command runs: build it before main. */
__attribute__((constructor)) static void make_usage(void)
{
    cli_opts_usage(usage, sizeof usage, usage_head, module_opts, CLI_OPTS_N(module_opts));
}

const cli_command cli_cmd_module = {
    "module",
    run_module,
    "check, build or try a tenant's WebAssembly module",
    usage,
};
