/*
 * Prometheus metrics (server_internal.h), named as a vLLM dashboard expects
 * under the realm: prefix. Series live in small arrays found by their label
 * text; tenants beyond the configured count are folded into "other" so a
 * stream of new tenants cannot grow the exposition without bound.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server_internal.h"

#define N_TTFT 22
#define N_E2E  20

static const double ttft_bounds[N_TTFT] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                           0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0,
                                           20.0,  40.0,  80.0, 160,  640,  2560};
static const double e2e_bounds[N_E2E] = {0.3,  0.5,  0.8,  1.0,   1.5,   2.0,   2.5,
                                         5.0,  10.0, 15.0, 20.0,  30.0,  40.0,  50.0,
                                         60.0, 120,  240,  480.0, 960.0, 1920.0};

typedef struct counter {
    char labels[400];
    double v;
} counter;

typedef struct histo {
    char labels[400];
    uint64_t counts[32]; /* per bucket, the last for +Inf */
    uint64_t n;
    double sum;
} histo;

typedef struct family {
    const char *name, *help, *type; /* type: counter, histogram */
    const double *bounds;
    int n_bounds;
    counter *c;
    histo *h;
    int32_t n, cap;
} family;

enum {
    F_HTTP,
    F_PROMPT,
    F_GEN,
    F_SUCCESS,
    F_PREFIX_Q,
    F_PREFIX_H,
    F_REJECT,
    F_TRAPS,
    F_TTFT,
    F_ITL,
    F_E2E,
    F_QUEUE,
    F_COUNT
};

struct metrics {
    pthread_mutex_t mu;
    family f[F_COUNT];
    char (*tenants)[REALM_TENANT_NAME_MAX + 1];
    int32_t n_tenants, max_tenants;
};

metrics *realm__metrics_new(int32_t max_tenants)
{
    metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->tenants = calloc((size_t)max_tenants + 1, sizeof *m->tenants);
    if (!m->tenants) {
        free(m);
        return NULL;
    }
    m->max_tenants = max_tenants;
    pthread_mutex_init(&m->mu, NULL);
    const double *itl = realm_itl_bounds();
    m->f[F_HTTP] = (family){.name = "realm:http_requests_total",
                            .help = "HTTP responses by route and status",
                            .type = "counter"};
    m->f[F_PROMPT] = (family){
        .name = "realm:prompt_tokens_total", .help = "Prompt tokens processed", .type = "counter"};
    m->f[F_GEN] = (family){
        .name = "realm:generation_tokens_total", .help = "Tokens generated", .type = "counter"};
    m->f[F_SUCCESS] = (family){.name = "realm:request_success_total",
                               .help = "Generations ended, by finish reason",
                               .type = "counter"};
    m->f[F_PREFIX_Q] = (family){.name = "realm:prefix_cache_queries_total",
                                .help = "Prompt tokens looked up in the prefix cache",
                                .type = "counter"};
    m->f[F_PREFIX_H] = (family){.name = "realm:prefix_cache_hits_total",
                                .help = "Prompt tokens found in the prefix cache",
                                .type = "counter"};
    m->f[F_REJECT] = (family){.name = "realm:admission_rejections_total",
                              .help = "Requests refused before running, by reason",
                              .type = "counter"};
    m->f[F_TRAPS] = (family){.name = "realm:guest_traps_total",
                             .help = "Tenant modules that trapped",
                             .type = "counter"};
    m->f[F_TTFT] = (family){.name = "realm:time_to_first_token_seconds",
                            .help = "Time to the first token",
                            .type = "histogram",
                            .bounds = ttft_bounds,
                            .n_bounds = N_TTFT};
    m->f[F_ITL] = (family){.name = "realm:inter_token_latency_seconds",
                           .help = "Time between tokens",
                           .type = "histogram",
                           .bounds = itl,
                           .n_bounds = REALM_ITL_BUCKETS};
    m->f[F_E2E] = (family){.name = "realm:e2e_request_latency_seconds",
                           .help = "Generation time, end to end",
                           .type = "histogram",
                           .bounds = e2e_bounds,
                           .n_bounds = N_E2E};
    m->f[F_QUEUE] = (family){.name = "realm:request_queue_time_seconds",
                             .help = "Time waiting before the first step",
                             .type = "histogram",
                             .bounds = ttft_bounds,
                             .n_bounds = N_TTFT};
    return m;
}

void realm__metrics_free(metrics *m)
{
    if (!m)
        return;
    for (int i = 0; i < F_COUNT; i++) {
        free(m->f[i].c);
        free(m->f[i].h);
    }
    free(m->tenants);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* The label value for tenant name: itself while few tenants were seen. */
static const char *tenant_label(metrics *m, const char *name)
{
    for (int32_t i = 0; i < m->n_tenants; i++)
        if (strcmp(m->tenants[i], name) == 0)
            return m->tenants[i];
    if (m->n_tenants < m->max_tenants) {
        snprintf(m->tenants[m->n_tenants], sizeof m->tenants[0], "%s", name);
        return m->tenants[m->n_tenants++];
    }
    return "other";
}

/* Escape a label value (backslash, quote, newline) into out. */
static void esc(char *out, size_t cap, const char *v)
{
    size_t o = 0;
    for (; *v && o + 3 < cap; v++) {
        if (*v == '\\' || *v == '"')
            out[o++] = '\\', out[o++] = *v;
        else if (*v == '\n')
            out[o++] = '\\', out[o++] = 'n';
        else
            out[o++] = *v;
    }
    out[o] = '\0';
}

static counter *counter_of(family *f, const char *labels)
{
    for (int32_t i = 0; i < f->n; i++)
        if (strcmp(f->c[i].labels, labels) == 0)
            return &f->c[i];
    if (f->n == f->cap) {
        int32_t cap = f->cap ? 2 * f->cap : 16;
        counter *v = realloc(f->c, (size_t)cap * sizeof *v);
        if (!v)
            return NULL;
        f->c = v;
        f->cap = cap;
    }
    counter *c = &f->c[f->n++];
    snprintf(c->labels, sizeof c->labels, "%s", labels);
    c->v = 0;
    return c;
}

static histo *histo_of(family *f, const char *labels)
{
    for (int32_t i = 0; i < f->n; i++)
        if (strcmp(f->h[i].labels, labels) == 0)
            return &f->h[i];
    if (f->n == f->cap) {
        int32_t cap = f->cap ? 2 * f->cap : 8;
        histo *v = realloc(f->h, (size_t)cap * sizeof *v);
        if (!v)
            return NULL;
        f->h = v;
        f->cap = cap;
    }
    histo *h = &f->h[f->n++];
    memset(h, 0, sizeof *h);
    snprintf(h->labels, sizeof h->labels, "%s", labels);
    return h;
}

static void add(metrics *m, int fam, const char *labels, double v)
{
    counter *c = counter_of(&m->f[fam], labels);
    if (c)
        c->v += v;
}

static void observe(metrics *m, int fam, const char *labels, double seconds)
{
    family *f = &m->f[fam];
    histo *h = histo_of(f, labels);
    if (!h)
        return;
    int b = 0;
    while (b < f->n_bounds && seconds > f->bounds[b])
        b++;
    h->counts[b]++;
    h->n++;
    h->sum += seconds;
}

void realm__metrics_http(metrics *m, const char *route, int status)
{
    char l[256], r[128];
    esc(r, sizeof r, route);
    snprintf(l, sizeof l, "route=\"%s\",status=\"%d\"", r, status);
    pthread_mutex_lock(&m->mu);
    add(m, F_HTTP, l, 1);
    pthread_mutex_unlock(&m->mu);
}

void realm__metrics_rejection(metrics *m, const char *reason)
{
    char l[128];
    snprintf(l, sizeof l, "reason=\"%s\"", reason);
    pthread_mutex_lock(&m->mu);
    add(m, F_REJECT, l, 1);
    pthread_mutex_unlock(&m->mu);
}

void realm__metrics_trap(metrics *m, const char *tenant)
{
    char l[160], t[140];
    pthread_mutex_lock(&m->mu);
    esc(t, sizeof t, tenant_label(m, tenant));
    snprintf(l, sizeof l, "tenant=\"%s\"", t);
    add(m, F_TRAPS, l, 1);
    pthread_mutex_unlock(&m->mu);
}

void realm__metrics_generation(metrics *m, const char *model, const char *tenant,
                               const realm_gen_result *res)
{
    char l[300], lr[360], lm[200], mo[140], te[140];
    pthread_mutex_lock(&m->mu);
    esc(mo, sizeof mo, model);
    esc(te, sizeof te, tenant_label(m, tenant));
    snprintf(l, sizeof l, "model=\"%s\",tenant=\"%s\"", mo, te);
    snprintf(lm, sizeof lm, "model=\"%s\"", mo);
    snprintf(lr, sizeof lr, "%s,finished_reason=\"%s\"", l, realm_finish_name(res->finish));
    add(m, F_PROMPT, l, res->n_prompt);
    add(m, F_GEN, l, res->n_completion);
    add(m, F_SUCCESS, lr, 1);
    add(m, F_PREFIX_Q, lm, res->n_prompt);
    add(m, F_PREFIX_H, lm, res->n_cached);
    if (res->time_to_first_token_ms > 0)
        observe(m, F_TTFT, l, res->time_to_first_token_ms / 1e3);
    if (res->e2e_ms > 0)
        observe(m, F_E2E, l, res->e2e_ms / 1e3);
    if (res->queue_ms > 0)
        observe(m, F_QUEUE, l, res->queue_ms / 1e3);
    histo *h = histo_of(&m->f[F_ITL], l);
    for (int b = 0; h && b <= REALM_ITL_BUCKETS; b++) {
        h->counts[b] += res->itl_counts[b];
        h->n += res->itl_counts[b];
    }
    if (h)
        h->sum += res->itl_sum_s;
    pthread_mutex_unlock(&m->mu);
}

/* ---- the exposition ------------------------------------------------------------ */

/* Per loaded model, from its engine's statistics: each metric's family
 * printed whole (Prometheus' text format wants a family's samples together),
 * one pass over the models per metric. */
static const char *const gauge_names[] = {"realm:num_requests_running",
                                          "realm:num_requests_waiting",
                                          "realm:kv_cache_usage_perc",
                                          "realm:num_preemptions_total",
                                          "realm:model_memory_bytes",
                                          "realm:prefill_tokens_total",
                                          "realm:prefix_cache_blocks",
                                          "realm:spec_decode_num_draft_tokens_total",
                                          "realm:spec_decode_num_accepted_tokens_total"};
static const char *const gauge_helps[] = {
    "Requests running in a model's engine",
    "Requests waiting for a model's engine",
    "KV-cache blocks in use, 0..1",
    "Requests preempted (and recomputed) for KV blocks",
    "Memory a loaded model counts against the budget",
    "Prompt tokens a model's engine computed (prefix-cache hits not, recomputation after "
    "preemption too)",
    "KV-cache blocks only the prefix cache holds (evicted when blocks are needed)",
    "Tokens drafted for speculative decoding and verified (since the model was loaded)",
    "Drafted tokens the model accepted (since the model was loaded)"};
static const char *const gauge_types[] = {"gauge",   "gauge", "gauge",   "counter", "gauge",
                                          "counter", "gauge", "counter", "counter"};

#define N_GAUGES (sizeof gauge_names / sizeof gauge_names[0])
_Static_assert(N_GAUGES == sizeof gauge_helps / sizeof gauge_helps[0] &&
                   N_GAUGES == sizeof gauge_types / sizeof gauge_types[0],
               "one help and type per gauge");

typedef struct out {
    FILE *f;
    size_t metric; /* the one this pass prints */
    bool header_done;
} out;

static void gauges(void *ud, const char *name, const realm_engine_stats *st, uint64_t mem)
{
    out *o = ud;
    char mo[140];
    esc(mo, sizeof mo, name);
    const double v[] = {st->n_running,
                        st->n_waiting,
                        st->kv_blocks_total ? 1.0 - (double)st->kv_blocks_free / st->kv_blocks_total
                                            : 0,
                        (double)st->preemptions,
                        (double)mem,
                        (double)st->tokens_prefilled,
                        st->prefix_blocks,
                        (double)st->spec_draft_tokens,
                        (double)st->spec_accepted_tokens};
    _Static_assert(sizeof v / sizeof v[0] == N_GAUGES, "one value per gauge");
    const size_t i = o->metric;
    if (!o->header_done)
        fprintf(o->f, "# HELP %s %s\n# TYPE %s %s\n", gauge_names[i], gauge_helps[i],
                gauge_names[i], gauge_types[i]);
    o->header_done = true;
    fprintf(o->f, "%s{model=\"%s\"} %.17g\n", gauge_names[i], mo, v[i]);
}

/*
 * LoRA adapters: vLLM's lora_requests_info (a gauge whose labels carry the
 * adapters, its value the time), with the adapters requests use now
 * (running or queued in the engine: the registry counts both), those
 * unloaded but still in use, and those loaded; then per adapter its
 * requests so far, its requests now and its memory.
 */
static void lora_metrics(FILE *f, realm_registry *reg)
{
    realm_lora_status *ls = NULL;
    int32_t n = 0;
    if (realm_registry_list_lora(reg, &ls, &n) < 0)
        return;
    char running[1024] = "", unloading[1024] = "", loaded[1024] = "";
    for (int32_t i = 0; i < n; i++) {
        char *lists[] = {ls[i].refs > 0 ? running : NULL, ls[i].unloading ? unloading : loaded};
        for (int k = 0; k < 2; k++)
            if (lists[k] && strlen(lists[k]) + strlen(ls[i].name) + 2 < sizeof running)
                snprintf(lists[k] + strlen(lists[k]), sizeof running - strlen(lists[k]), "%s%s",
                         lists[k][0] ? "," : "", ls[i].name);
    }
    fprintf(f,
            "# HELP realm:lora_requests_info LoRA adapters: those requests use now "
            "(running_lora_adapters), those unloaded and waiting for their last request "
            "(unloading_lora_adapters), those loaded (loaded_lora_adapters); the value is "
            "the time, as vLLM's vllm:lora_requests_info\n"
            "# TYPE realm:lora_requests_info gauge\n"
            "realm:lora_requests_info{running_lora_adapters=\"%s\",waiting_lora_adapters=\"\","
            "unloading_lora_adapters=\"%s\",loaded_lora_adapters=\"%s\",max_lora=\"%d\"} "
            "%.3f\n",
            running, unloading, loaded, (int)n, (double)time(NULL));
    static const char *const names[] = {"realm:lora_requests_total", "realm:lora_requests_running",
                                        "realm:lora_memory_bytes"};
    static const char *const helps[] = {"Requests that used a LoRA adapter (since it was loaded)",
                                        "Requests using a LoRA adapter now",
                                        "Memory a LoRA adapter counts against the budget"};
    static const char *const types[] = {"counter", "gauge", "gauge"};
    for (int k = 0; k < 3; k++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", names[k], helps[k], names[k], types[k]);
        for (int32_t i = 0; i < n; i++) {
            char ad[140], base[140];
            esc(ad, sizeof ad, ls[i].name);
            esc(base, sizeof base, ls[i].base);
            const double v = k == 0   ? (double)ls[i].requests
                             : k == 1 ? (double)ls[i].refs
                                      : (double)ls[i].mem_bytes;
            fprintf(f, "%s{adapter=\"%s\",base=\"%s\",id=\"%lld\"} %.17g\n", names[k], ad, base,
                    (long long)ls[i].id, v); /* id: a name reloaded while in use */
        }
    }
    free(ls);
}

char *realm__metrics_render(metrics *m, realm_registry *reg, int64_t ws_connections)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < F_COUNT; i++) {
        const family *fa = &m->f[i];
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", fa->name, fa->help, fa->name, fa->type);
        if (fa->bounds == NULL) {
            for (int32_t k = 0; k < fa->n; k++)
                fprintf(f, "%s{%s} %.17g\n", fa->name, fa->c[k].labels, fa->c[k].v);
            continue;
        }
        for (int32_t k = 0; k < fa->n; k++) {
            const histo *h = &fa->h[k];
            uint64_t cum = 0;
            for (int b = 0; b < fa->n_bounds; b++) {
                cum += h->counts[b];
                fprintf(f, "%s_bucket{%s,le=\"%g\"} %llu\n", fa->name, h->labels, fa->bounds[b],
                        (unsigned long long)cum);
            }
            fprintf(f, "%s_bucket{%s,le=\"+Inf\"} %llu\n", fa->name, h->labels,
                    (unsigned long long)h->n);
            fprintf(f, "%s_sum{%s} %.17g\n%s_count{%s} %llu\n", fa->name, h->labels, h->sum,
                    fa->name, h->labels, (unsigned long long)h->n);
        }
    }
    pthread_mutex_unlock(&m->mu);
    fprintf(f,
            "# HELP realm:websocket_connections WebSocket connections open (GET /v1/responses)\n"
            "# TYPE realm:websocket_connections gauge\nrealm:websocket_connections %lld\n",
            (long long)ws_connections);
    for (size_t i = 0; i < N_GAUGES; i++) {
        out o = {.f = f, .metric = i};
        realm_registry_foreach_loaded(reg, gauges, &o);
    }
    lora_metrics(f, reg);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
