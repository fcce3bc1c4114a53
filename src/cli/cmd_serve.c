/*
 * realm serve — the HTTP server (realm/server.h) over the model registry and
 * the tenants' store, every setting from one table (flag, REALM_* variable,
 * type, default, help).
 */
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli.h"
#include "core/log_internal.h"
#include "opts.h"
#include "realm/registry.h"
#include "realm/server.h"
#include "realm/store.h"
#include "rope_opts.h"

#define CMD "serve"

extern const unsigned char realm_cli_default_wasm[];
extern const size_t realm_cli_default_wasm_len;

typedef struct serve_cfg {
    cli_strings models, pins, templates, cors, loras, lora_bases, drafts;
    const char *lora_dir;
    const char *host, *models_dir, *data_dir, *admin_key_file, *api_key, *tls_cert, *tls_key;
    const char *module_cache;
    long long port, threads, ctx, parallel, batch, workers, metrics_tenants, ws_max;
    long long draft_max, draft_min;
    double draft_p_min;
    bool lookup;
    int cache_k, cache_v; /* indexes in cli_cache_types */
    uint64_t mem_budget, max_body, kv_max_value, kv_quota;
    double keep_alive, drain_timeout, read_timeout, responses_ttl;
    bool no_auth, repack;
    cli_rope rope;
} serve_cfg;

#define O(f) offsetof(serve_cfg, f)
static const cli_opt serve_opts[] = {
    {"model", 'm', CLI_OPT_STRING_LIST, "NAME=PATH", NULL,
     "a model to serve (repeatable); a bare PATH is named after its file; pulled models (realm "
     "pull) are served by name without this",
     O(models), .env = true},
    {"host", 0, CLI_OPT_STRING, "ADDR", "127.0.0.1",
     "address to listen on (::1 for IPv6, 0.0.0.0 or :: for every interface)", O(host),
     .env = true},
    {"port", 0, CLI_OPT_INT, "N", "8080", "TCP port (0: any free port)", O(port), .env = true,
     .min = 0, .max = 65535},
    {"threads", 't', CLI_OPT_INT, "N", "0",
     "compute threads, shared by every model (0: one per CPU)", O(threads), .env = true, .min = 0,
     .max = 1024},
    {"ctx", 'c', CLI_OPT_INT, "N", "0",
     "the longest sequence per request, prompt and output (0: the model's training context)",
     O(ctx), .env = true, .min = 0, .max = 1 << 24},
    {"parallel", 0, CLI_OPT_INT, "N", "16", "the most sequences running at once per model",
     O(parallel), .env = true, .min = 1, .max = 512},
    {"batch", 'b', CLI_OPT_INT, "N", "512",
     "the most tokens one forward pass computes per model (prompt chunks and decoding "
     "sequences); at least --parallel",
     O(batch), .env = true, .min = 1, .max = 1 << 16},
    {"cache-type-k", 0, CLI_OPT_ENUM, NULL, "f16",
     "KV cache type of the keys: q8_0 takes about half the memory of f16 (so a KV pool sized to "
     "the budget holds about twice the tokens) and half the attention bandwidth, for a small "
     "accuracy cost; a model whose head size is not a multiple of 32 then fails to load",
     O(cache_k), .env = true, .choices = cli_cache_types},
    {"cache-type-v", 0, CLI_OPT_ENUM, NULL, "f16", "KV cache type of the values, likewise",
     O(cache_v), .env = true, .choices = cli_cache_types},
    {"repack", 0, CLI_OPT_FLAG, NULL, "true",
     "repack the weights that have a packed layout on this CPU (Q4_K, and Q5_K, Q6_K, Q8_0 and "
     "Q4_0 with "
     "AVX-512) once as each model loads: faster decoding, batched decoding and speculative "
     "verification, the same memory, a longer load; --no-repack computes from the file's "
     "mapping (pages shared with other processes, loads in milliseconds)",
     O(repack), .env = true},
    {"mem-budget", 0, CLI_OPT_SIZE, "SIZE", NULL,
     "memory for all loaded models: weights, KV pools, scratch (512M, 6G); default 3/4 of the "
     "available memory",
     O(mem_budget), .env = true},
    {"keep-alive", 0, CLI_OPT_DURATION, "DUR", "5m",
     "how long an idle model stays loaded (0: unload when idle, -1: never)", O(keep_alive),
     .env = true, .fmin = -1, .fmax = 1e9},
    {"pin", 0, CLI_OPT_STRING_LIST, "NAME", NULL, "a model never unloaded (repeatable)", O(pins),
     .env = true},
    {"chat-template", 0, CLI_OPT_STRING_LIST, "MODEL=NAME", NULL,
     "the chat template of a model (repeatable; default: its own, chatml when it has none)",
     O(templates), .env = true},
    {"lora", 0, CLI_OPT_STRING_LIST, "NAME=FILE", NULL,
     "a LoRA adapter (GGUF, as llama.cpp writes them) served as model NAME on top of the "
     "registered model it fits, loaded now (repeatable; a bare FILE is named after its file)",
     O(loras), .env = true},
    {"lora-base", 0, CLI_OPT_STRING_LIST, "NAME=MODEL", NULL,
     "the base model of the adapter NAME, needed when it fits several (repeatable)", O(lora_bases),
     .env = true},
    {"lora-dir", 0, CLI_OPT_STRING, "DIR", NULL,
     "the directory POST /v1/load_lora_adapter (admin key) may load adapters from; without it "
     "adapters are loaded only at startup",
     O(lora_dir), .env = true},
    {"draft", 0, CLI_OPT_STRING_LIST, "MODEL=DRAFT", NULL,
     "speculative decoding for MODEL with the draft model DRAFT (a GGUF file or a --model name; "
     "its vocabulary must equal MODEL's), loaded and counted with MODEL; MODEL's requests "
     "speculate with it unless they ask otherwise (repeatable)",
     O(drafts), .env = true},
    {"lookup", 0, CLI_OPT_FLAG, NULL, NULL,
     "speculative decoding by prompt lookup (n-grams of the prompt and output, no model) for "
     "the requests of every model without a --draft, unless they ask otherwise",
     O(lookup), .env = true},
    {"draft-max", 0, CLI_OPT_INT, "N", "8",
     "the most tokens drafted per sequence and step (a request's speculative.n_max); the "
     "engine adapts it to each sequence's acceptance",
     O(draft_max), .env = true, .min = 1, .max = REALM_SPEC_MAX_DRAFT},
    {"draft-min", 0, CLI_OPT_INT, "N", "0",
     "fewer drafted tokens than this: a step does not speculate (speculative.n_min)", O(draft_min),
     .env = true, .min = 0, .max = REALM_SPEC_MAX_DRAFT},
    {"draft-p-min", 0, CLI_OPT_FLOAT, "P", "0.75",
     "a draft model stops drafting when its probability of its token is below this "
     "(speculative.p_min)",
     O(draft_p_min), .env = true, .fmin = 0, .fmax = 1},
    {"models-dir", 0, CLI_OPT_STRING, "DIR", NULL,
     "pulled models (default $XDG_CACHE_HOME/realm/models or ~/.cache/realm/models)", O(models_dir),
     .env = true},
    {"data-dir", 0, CLI_OPT_STRING, "DIR", NULL,
     "tenants, keys and usage (default ~/.local/share/realm)", O(data_dir), .env = true},
    {"api-key", 0, CLI_OPT_STRING, "KEY", NULL, "one API key, for tenant 'default'", O(api_key),
     .env = true},
    {"admin-key-file", 0, CLI_OPT_STRING, "FILE", NULL,
     "the admin API's key, on one line (or REALM_ADMIN_KEY); without one the admin API answers 404",
     O(admin_key_file), .env = true},
    {"no-auth", 0, CLI_OPT_FLAG, NULL, NULL,
     "serve a non-loopback address without API keys (everyone is tenant 'default')", O(no_auth),
     .env = true},
    {"tls-cert", 0, CLI_OPT_STRING, "FILE", NULL, "PEM certificate: serve HTTPS", O(tls_cert),
     .env = true},
    {"tls-key", 0, CLI_OPT_STRING, "FILE", NULL, "PEM private key of --tls-cert", O(tls_key),
     .env = true},
    {"cors-origin", 0, CLI_OPT_STRING_LIST, "ORIGIN", NULL,
     "an origin browsers may call from (repeatable; * for any); default: none", O(cors),
     .env = true},
    {"max-body", 0, CLI_OPT_SIZE, "SIZE", "1M", "largest request body (413 beyond)", O(max_body),
     .env = true, .min = 1024, .max = 1ll << 30},
    {"workers", 0, CLI_OPT_INT, "N", "64", "requests running modules at once", O(workers),
     .env = true, .min = 1, .max = 4096},
    {"ws-max-connections", 0, CLI_OPT_INT, "N", "1024",
     "WebSocket connections (GET /v1/responses) open at once; one more is answered 503", O(ws_max),
     .env = true, .min = 1, .max = 1 << 20},
    {"read-timeout", 0, CLI_OPT_DURATION, "DUR", "30s",
     "time a client has to send its request (slowloris)", O(read_timeout), .env = true, .fmin = 0.1,
     .fmax = 3600},
    {"drain-timeout", 0, CLI_OPT_DURATION, "DUR", "30s",
     "time running requests get to finish at SIGTERM/SIGINT", O(drain_timeout), .env = true,
     .fmin = 0, .fmax = 86400},
    {"kv-max-value", 0, CLI_OPT_SIZE, "SIZE", "1M",
     "largest value a tenant's module may keep (realm.kv_put)", O(kv_max_value), .env = true,
     .min = 1, .max = 1ll << 28},
    {"kv-quota", 0, CLI_OPT_SIZE, "SIZE", "64M",
     "key-value data a tenant's module may keep, keys and values, for tenants whose own "
     "kv_quota is 0",
     O(kv_quota), .env = true, .min = 1, .max = 1ll << 40},
    {"responses-ttl", 0, CLI_OPT_DURATION, "DUR", "720h",
     "how long stored /v1/responses (store: true) are kept, in the tenant's key-value data "
     "(720h: 30 days)",
     O(responses_ttl), .env = true, .fmin = 1, .fmax = 1e9},
    {"module-cache", 0, CLI_OPT_STRING, "DIR", NULL,
     "compiled tenant modules (default ~/.cache/realm/modules)", O(module_cache), .env = true},
    {"metrics-tenants", 0, CLI_OPT_INT, "N", "32",
     "tenants named in /metrics; the rest are counted as 'other'", O(metrics_tenants), .env = true,
     .min = 1, .max = 10000},
    CLI_ROPE_OPTS(serve_cfg, rope, true),
};

static realm_server *volatile running;
static volatile sig_atomic_t n_signals;

static void on_signal(int sig)
{
    (void)sig;
    n_signals++;
    if (running)
        realm_server_stop(running, n_signals > 1);
}

/* The value after '=' in "NAME=VALUE" items of list, for name; NULL if none. */
static const char *lookup(const cli_strings *list, const char *name)
{
    const size_t n = strlen(name);
    for (int i = 0; i < list->n; i++)
        if (strncmp(list->v[i], name, n) == 0 && list->v[i][n] == '=')
            return list->v[i] + n + 1;
    return NULL;
}

/* A --model or --lora item, NAME=FILE or a bare FILE (named after it without
 * ".gguf", as the registry names it): the name into name, the file returned. */
static const char *model_item(const char *item, char *name, size_t cap)
{
    const char *eq = strchr(item, '=');
    if (eq) {
        snprintf(name, cap, "%.*s", (int)(eq - item), item);
        return eq + 1;
    }
    const char *b = strrchr(item, '/');
    snprintf(name, cap, "%s", b ? b + 1 : item);
    const size_t l = strlen(name);
    if (l > 5 && strcmp(name + l - 5, ".gguf") == 0)
        name[l - 5] = '\0';
    return item;
}

static char *read_key_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char line[512] = "";
    if (!fgets(line, sizeof line, f))
        line[0] = '\0';
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    return line[0] ? strdup(line) : NULL;
}

/* Every connection is a descriptor: take the hard limit (thousands of
 * idle keep-alive clients must not run the server out of them). */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int serve(serve_cfg *c)
{
    int ret = 1;
    if (c->parallel > c->batch)
        return cli_error(CMD,
                         "--parallel %lld is more than --batch %lld (each running sequence "
                         "needs a token of the batch)",
                         c->parallel, c->batch);
    raise_fd_limit();
    realm_registry *reg = NULL;
    realm_store *store = NULL;
    realm_server *srv = NULL;
    char *admin_key = NULL;

    realm_registry_params rp;
    realm_registry_params_init(&rp);
    if (cli_rope_params(CMD, &c->rope, &rp.model.rope) != 0)
        return 1;
    rp.model.repack = c->repack;
    rp.models_dir = c->models_dir;
    rp.mem_budget = c->mem_budget;
    rp.keep_alive_s = c->keep_alive;
    rp.n_threads = (int32_t)c->threads;
    rp.engine.n_ctx_seq = (int32_t)c->ctx;
    rp.engine.max_seqs = (int32_t)c->parallel;
    rp.engine.n_batch = (int32_t)c->batch;
    rp.engine.type_k = cli_cache_type(c->cache_k);
    rp.engine.type_v = cli_cache_type(c->cache_v);
    rp.engine.spec_mode = c->lookup ? REALM_SPEC_LOOKUP : REALM_SPEC_OFF;
    rp.engine.spec_n_max = (int32_t)c->draft_max;
    rp.engine.spec_n_min = (int32_t)c->draft_min;
    rp.engine.spec_p_min = c->draft_p_min > 0 ? (float)c->draft_p_min : -1.0f;
    for (int i = 0; i < c->drafts.n; i++) { /* each names a --model */
        const char *eq = strchr(c->drafts.v[i], '=');
        bool known = false;
        for (int k = 0; eq && k < c->models.n && !known; k++) {
            char name[256];
            model_item(c->models.v[k], name, sizeof name);
            known = strlen(name) == (size_t)(eq - c->drafts.v[i]) &&
                    strncmp(name, c->drafts.v[i], strlen(name)) == 0;
        }
        if (!eq || !eq[1] || !known)
            return cli_error(CMD, "--draft %s: %s", c->drafts.v[i],
                             eq && eq[1] ? "no --model of that name" : "must be MODEL=DRAFT");
    }
    if (realm_registry_new(&rp, &reg) < 0) {
        cli_error(CMD, "%s", realm_last_error());
        goto out;
    }
    for (int i = 0; i < c->models.n; i++) {
        char n[256];
        const char *path = model_item(c->models.v[i], n, sizeof n);
        const char *key = strchr(c->models.v[i], '=') ? n : NULL; /* else the registry's */
        const char *draft = lookup(&c->drafts, n);
        for (int k = 0; draft && k < c->models.n; k++) { /* a --model's name: its file */
            char other[256];
            const char *file = model_item(c->models.v[k], other, sizeof other);
            if (strcmp(other, draft) == 0)
                draft = file;
        }
        realm_model_config mc = {.chat_template = lookup(&c->templates, n), .draft = draft};
        for (int k = 0; k < c->pins.n; k++)
            mc.pinned |= strcmp(c->pins.v[k], n) == 0;
        if (realm_registry_add(reg, key, path, &mc) < 0) {
            cli_error(CMD, "--model %s: %s", c->models.v[i], realm_last_error());
            goto out;
        }
    }
    for (int i = 0; i < c->lora_bases.n; i++) {
        const char *eq = strchr(c->lora_bases.v[i], '=');
        bool known = false;
        for (int k = 0; eq && k < c->loras.n && !known; k++) {
            char name[256];
            model_item(c->loras.v[k], name, sizeof name);
            known = strlen(name) == (size_t)(eq - c->lora_bases.v[i]) &&
                    strncmp(name, c->lora_bases.v[i], strlen(name)) == 0;
        }
        if (!eq || !known) {
            cli_error(CMD, "--lora-base %s: %s", c->lora_bases.v[i],
                      eq ? "no --lora of that name" : "must be NAME=MODEL");
            goto out;
        }
    }
    for (int i = 0; i < c->loras.n; i++) {
        char name[256];
        const char *path = model_item(c->loras.v[i], name, sizeof name);
        if (realm_registry_add_lora(reg, name, path, lookup(&c->lora_bases, name)) < 0) {
            cli_error(CMD, "--lora %s: %s", c->loras.v[i], realm_last_error());
            goto out;
        }
    }
    char data_dir[4096];
    if (c->data_dir)
        snprintf(data_dir, sizeof data_dir, "%s", c->data_dir);
    else if (realm_store_default_dir(data_dir, sizeof data_dir) < 0) {
        cli_error(CMD, "%s", realm_last_error());
        goto out;
    }
    if (realm_store_open(data_dir, &store) < 0 ||
        realm_store_kv_set_limits(store,
                                  &(realm_kv_limits){.max_value = (int64_t)c->kv_max_value,
                                                     .default_quota = (int64_t)c->kv_quota}) < 0) {
        cli_error(CMD, "%s", realm_last_error());
        goto out;
    }
    const char *env_admin = getenv("REALM_ADMIN_KEY");
    if (c->admin_key_file && !(admin_key = read_key_file(c->admin_key_file))) {
        cli_error(CMD, "--admin-key-file %s: no key in it (or it cannot be read)",
                  c->admin_key_file);
        goto out;
    } else if (!admin_key && env_admin && *env_admin) {
        admin_key = strdup(env_admin);
    }

    realm_server_params sp;
    realm_server_params_init(&sp);
    sp.host = c->host;
    sp.port = (int)c->port;
    sp.registry = reg;
    sp.store = store;
    sp.default_module = realm_cli_default_wasm;
    sp.default_module_len = realm_cli_default_wasm_len;
    sp.module_cache = c->module_cache;
    sp.api_key = c->api_key;
    sp.no_auth = c->no_auth;
    sp.admin_key = admin_key;
    sp.lora_dir = c->lora_dir;
    sp.tls_cert = c->tls_cert;
    sp.tls_key = c->tls_key;
    sp.cors_origins = c->cors.n ? c->cors.v : NULL;
    sp.n_cors_origins = c->cors.n;
    sp.max_body = c->max_body;
    sp.workers = (int32_t)c->workers;
    sp.ws_max_connections = (int32_t)c->ws_max;
    sp.read_timeout_s = c->read_timeout;
    sp.drain_timeout_s = c->drain_timeout;
    sp.metrics_tenants = (int32_t)c->metrics_tenants;
    sp.responses_ttl_s = (int64_t)c->responses_ttl;
    if (realm_server_new(&sp, &srv) < 0) {
        cli_error(CMD, "%s", realm_last_error());
        goto out;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* (the server's threads were made with them) */
    running = srv;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    const bool v6 = strchr(c->host, ':') != NULL;
    char url[400];
    snprintf(url, sizeof url, "%s://%s%s%s:%d", c->tls_cert ? "https" : "http", v6 ? "[" : "",
             strcmp(c->host, "0.0.0.0") == 0 ? "127.0.0.1" : c->host, v6 ? "]" : "",
             realm_server_port(srv));
    realm_model_status *st = NULL;
    int32_t n_models = 0;
    realm_registry_list(reg, &st, &n_models);
    /* the example names the first --model (by its registered name), else the
     * first model listed */
    const char *first = n_models > 0 ? st[0].name : "MODEL";
    char first_m[256];
    if (c->models.n > 0) {
        model_item(c->models.v[0], first_m, sizeof first_m);
        for (int32_t i = 0; i < n_models; i++)
            if (strcmp(st[i].name, first_m) == 0)
                first = st[i].name;
    }
    const bool keyless = !c->api_key && realm_store_key_count(store) == 0;
    char adapters[64] = "";
    if (c->loras.n > 0)
        snprintf(adapters, sizeof adapters, ", %d LoRA adapter%s", c->loras.n,
                 c->loras.n == 1 ? "" : "s");
    printf("realm serve: listening on %s (%d model%s%s; data in %s)\n", url, (int)n_models,
           n_models == 1 ? "" : "s", adapters, data_dir);
    if (keyless)
        printf("realm serve: no API keys yet: requests are served as tenant 'default' "
               "(create keys with: realm key create TENANT)\n");
    printf("try: curl %s/v1/chat/completions -H 'Content-Type: application/json'%s -d "
           "'{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],"
           "\"max_tokens\":32}'\n",
           url, keyless ? "" : " -H 'Authorization: Bearer KEY'", first);
    fflush(stdout);
    free(st);
    ret = realm_server_run(srv) == 0 ? 0 : 1;
    running = NULL;
    printf("realm serve: stopped\n");
out:
    realm_server_free(srv);
    realm_store_close(store);
    realm_registry_free(reg);
    free(admin_key);
    return ret;
}

static int run_serve(int argc, char **argv)
{
    serve_cfg c = {.rope = CLI_ROPE_INIT};
    const int rc = cli_opts_parse(CMD, serve_opts, CLI_OPTS_N(serve_opts), argc, argv, &c, NULL);
    int ret = rc == 2 ? 0 : rc;
    if (rc == 0)
        ret = serve(&c);
    cli_opts_free(serve_opts, CLI_OPTS_N(serve_opts), &c);
    return ret;
}

static const char usage_head[] =
    "usage: realm serve [--model NAME=PATH ...] [--host ADDR] [--port N] [options]\n"
    "\n"
    "Serves /v1/chat/completions, /v1/completions and /v1/responses (streamed with SSE\n"
    "when asked; /v1/responses also as OpenAI's WebSocket mode), /v1/models, /tokenize,\n"
    "/detokenize, /health, /ready and /metrics. Each tenant's requests run in its\n"
    "WebAssembly module (the default OpenAI handler unless set with realm tenant set T\n"
    "--module FILE); API keys select tenants (realm key create). Every option can also\n"
    "be set with its REALM_* environment variable (--data-dir: REALM_DATA_DIR). SIGINT\n"
    "or SIGTERM drains (running requests get --drain-timeout to finish, WebSockets are\n"
    "then closed with 1001); a second one stops at once.\n";

static char usage[16384];

__attribute__((constructor)) static void make_usage(void)
{
    cli_opts_usage(usage, sizeof usage, usage_head, serve_opts, CLI_OPTS_N(serve_opts));
}

const cli_command cli_cmd_serve = {
    "serve",
    run_serve,
    "serve models over OpenAI-compatible HTTP to tenants with API keys",
    usage,
};
