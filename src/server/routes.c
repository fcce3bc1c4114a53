/*
 * Routing, auth and the endpoints (server_internal.h): the checks made
 * before a body is read (route, method, Host, content type, size, key), the
 * endpoints the server answers itself, and the module path that runs a
 * tenant's module for the generation endpoints.
 */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/clock_internal.h"
#include "core/error_internal.h"
#include "core/log_internal.h"
#include "realm/chat.h"
#include "server_internal.h"

enum {
    R_MODULE = 1,
    R_HEALTH,
    R_READY,
    R_METRICS,
    R_MODELS,
    R_MODEL,
    R_TOKENIZE,
    R_DETOKENIZE,
    R_ADMIN,
    R_PS,
    R_LORAS
};

typedef struct route {
    const char *path;   /* exact, or with prefix a path ending in '/' and more after it */
    const char *method; /* one method, "*", or a list ("GET, DELETE": also the Allow header) */
    int kind;
    const char *name; /* the metrics label */
    bool prefix;
} route;

static const route routes[] = {
    {"/v1/chat/completions", "POST", R_MODULE, "/v1/chat/completions", false},
    {"/v1/completions", "POST", R_MODULE, "/v1/completions", false},
    {"/v1/responses", "POST", R_MODULE, "/v1/responses", false},
    {"/v1/responses/", "GET, DELETE", R_MODULE, "/v1/responses/{id}", true},
    {"/health", "GET", R_HEALTH, "/health", false},
    {"/ready", "GET", R_READY, "/ready", false},
    {"/metrics", "GET", R_METRICS, "/metrics", false},
    {"/v1/models", "GET", R_MODELS, "/v1/models", false},
    {"/v1/models/", "GET", R_MODEL, "/v1/models/{id}", true},
    {"/tokenize", "POST", R_TOKENIZE, "/tokenize", false},
    {"/detokenize", "POST", R_DETOKENIZE, "/detokenize", false},
    {"/api/ps", "GET", R_PS, "/api/ps", false},
    {"/admin/v1/", "*", R_ADMIN, "/admin/v1", true},
    {"/v1/load_lora_adapter", "POST", R_ADMIN, "/v1/load_lora_adapter", false},
    {"/v1/unload_lora_adapter", "POST", R_ADMIN, "/v1/unload_lora_adapter", false},
    {"/lora-adapters", "GET", R_LORAS, "/lora-adapters", false},
};

/* Is method one of the route's ("*": any; HEAD wherever GET is)? */
static bool method_in(const char *method, const char *list)
{
    if (strcmp(list, "*") == 0)
        return true;
    const size_t n = strlen(method);
    for (const char *m = list; *m;) {
        const size_t l = strcspn(m, ", ");
        if ((l == n && strncmp(m, method, n) == 0) ||
            (l == 3 && strncmp(m, "GET", 3) == 0 && strcmp(method, "HEAD") == 0))
            return true;
        m += l;
        m += strspn(m, ", ");
    }
    return false;
}

/* The route of path (ignoring the query), or NULL. */
static const route *find_route(const char *path, bool *method_ok, const char *method)
{
    const char *q = strchr(path, '?');
    const size_t n = q ? (size_t)(q - path) : strlen(path);
    const route *found = NULL;
    *method_ok = false;
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        const route *rt = &routes[i];
        const size_t l = strlen(rt->path);
        const bool match = rt->prefix ? n > l && strncmp(path, rt->path, l) == 0
                                      : n == l && strncmp(path, rt->path, l) == 0;
        if (!match)
            continue;
        found = rt;
        if (method_in(method, rt->method)) {
            *method_ok = true;
            return rt;
        }
    }
    return found;
}

static const char *header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* Is origin one the operator allowed? */
static bool origin_allowed(const server *s, const char *origin)
{
    for (int32_t i = 0; i < s->p.n_cors_origins; i++)
        if (strcmp(s->p.cors_origins[i], "*") == 0 || strcmp(s->p.cors_origins[i], origin) == 0)
            return true;
    return false;
}

/* In keyless mode the Host header must name the loopback address served
 * (a DNS-rebinding page would send its own name). */
static bool host_ok(const server *s, const char *host)
{
    if (!host)
        return false;
    char h[300];
    snprintf(h, sizeof h, "%s", host);
    char *colon = h[0] == '[' ? strstr(h, "]:") : strrchr(h, ':');
    if (colon && (h[0] == '[' ? colon[1] == ':' : strchr(h, ':') == colon))
        *(h[0] == '[' ? colon + 1 : colon) = '\0';
    if (h[0] == '[') {
        memmove(h, h + 1, strlen(h));
        char *e = strchr(h, ']');
        if (e)
            *e = '\0';
    }
    return strcmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0 || strcmp(h, "::1") == 0;
}

/* Constant-time string equality. */
static bool same(const char *a, const char *b)
{
    const size_t na = strlen(a), nb = strlen(b);
    unsigned char d = na != nb;
    for (size_t i = 0; i < na; i++)
        d |= (unsigned char)(a[i] ^ b[i % (nb ? nb : 1)]);
    return d == 0;
}

/* The key of an 'Authorization: Bearer KEY' header, or NULL. */
static const char *bearer_key(struct MHD_Connection *c)
{
    const char *auth = header(c, "Authorization");
    const char *key = NULL;
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0)
        key = auth + 7;
    while (key && *key == ' ')
        key++;
    return key;
}

bool realm__authenticate_key(req *r, const char *key)
{
    server *s = r->srv;
    /* a change another process made (a `realm tenant` or `realm key`
     * command, another server) applies from the next request: the key and
     * the tenant's settings are read at the same version */
    realm__tenants_sync(s);
    if (!key || !*key) {
        if (s->keyless) {
            r->tenant = realm__tenant_get(s, s->default_tenant ? s->default_tenant->id : 0);
            if (r->tenant)
                return true;
        }
        realm__reply_error(r, 401, NULL, NULL, "invalid_api_key",
                           "no API key: send it as 'Authorization: Bearer KEY'");
        return false;
    }
    int64_t tenant = -1;
    if (s->p.api_key && same(key, s->p.api_key))
        tenant = s->default_tenant ? s->default_tenant->id : -1;
    else if (s->p.store && realm_store_key_lookup(s->p.store, key, &tenant) < 0)
        tenant = -1;
    r->tenant = tenant >= 0 ? realm__tenant_get(s, tenant) : NULL;
    if (!r->tenant) {
        realm__reply_error(r, 401, NULL, NULL, "invalid_api_key",
                           "incorrect API key provided (unknown or revoked)");
        return false;
    }
    return true;
}

/* The tenant a request's key gives; false with the reply written. */
static bool authenticate(req *r, struct MHD_Connection *c)
{
    return realm__authenticate_key(r, bearer_key(c));
}

/* The subprotocol a browser offers its key in (it cannot set headers). */
#define WS_KEY_PROTOCOL "openai-insecure-api-key."

/*
 * A WebSocket handshake's Sec-WebSocket-Protocol offer: the key a browser
 * sends as WS_KEY_PROTOCOL "KEY" (in *key, a copy in key_buf), and the
 * subprotocol to answer with in echo: "realm" when offered, else the key
 * entry when it was the only one (browsers fail a handshake whose offer is
 * not answered), else "" (none).
 */
static void ws_protocols(struct MHD_Connection *c, char *key_buf, size_t key_cap, const char **key,
                         char *echo, size_t echo_cap)
{
    const char *offer = header(c, "Sec-WebSocket-Protocol");
    int n = 0;
    bool realm = false;
    *key = NULL;
    echo[0] = '\0';
    while (offer && *offer) {
        offer += strspn(offer, ", \t");
        const size_t l = strcspn(offer, ", \t");
        if (l == 0)
            break;
        n++;
        if (l == 5 && strncmp(offer, "realm", 5) == 0)
            realm = true;
        else if (l > strlen(WS_KEY_PROTOCOL) && l < key_cap &&
                 strncmp(offer, WS_KEY_PROTOCOL, strlen(WS_KEY_PROTOCOL)) == 0) {
            snprintf(key_buf, key_cap, "%.*s", (int)(l - strlen(WS_KEY_PROTOCOL)),
                     offer + strlen(WS_KEY_PROTOCOL));
            *key = key_buf;
            if (l < echo_cap)
                snprintf(echo, echo_cap, "%.*s", (int)l, offer);
        }
        offer += l;
    }
    if (realm)
        snprintf(echo, echo_cap, "realm");
    else if (n != 1)
        echo[0] = '\0';
}

/*
 * May this WebSocket handshake's page use the server? Browsers send their
 * page's Origin and apply no CORS to WebSockets, so the server refuses a
 * page of another site (cross-site WebSocket hijacking): no Origin (not a
 * browser) and the server's own origin pass; another origin only when the
 * server has keys and --cors-origin allows it (a keyless server answers no
 * other site's page, as its Host check does for HTTP).
 */
static bool ws_origin_ok(const server *s, struct MHD_Connection *c)
{
    const char *origin = header(c, "Origin"), *host = header(c, "Host");
    if (!origin)
        return true;
    char own[320];
    if (host &&
        snprintf(own, sizeof own, "%s://%s", s->tls ? "https" : "http", host) < (int)sizeof own &&
        strcasecmp(own, origin) == 0)
        return true;
    return !s->keyless && s->p.n_cors_origins > 0 && origin_allowed(s, origin);
}

/* Append s percent-encoded (RFC 3986 unreserved characters kept). */
static void pct(char *out, size_t cap, size_t *at, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; s && *s && *at + 4 < cap; s++) {
        const unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || strchr("-._~", ch)) {
            out[(*at)++] = (char)ch;
        } else {
            out[(*at)++] = '%';
            out[(*at)++] = hex[ch >> 4];
            out[(*at)++] = hex[ch & 15];
        }
    }
    out[*at] = '\0';
}

typedef struct query_buf {
    char *out;
    size_t cap, at;
} query_buf;

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    query_buf *q = cls;
    if (q->at && q->at + 1 < q->cap)
        q->out[q->at++] = '&';
    pct(q->out, q->cap, &q->at, key);
    if (value && q->at + 1 < q->cap) {
        q->out[q->at++] = '=';
        pct(q->out, q->cap, &q->at, value);
    }
    return MHD_YES;
}

/* The request's query string (libmicrohttpd hands the URL without it),
 * rebuilt from its decoded arguments. */
static void query_text(struct MHD_Connection *c, char *out, size_t cap)
{
    query_buf q = {out, cap, 0};
    out[0] = '\0';
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, query_arg, &q);
}

bool realm__route_early(req *r, struct MHD_Connection *c, uint64_t content_length)
{
    server *s = r->srv;
    const char *origin = header(c, "Origin");
    const bool cors = origin && s->p.n_cors_origins > 0 && origin_allowed(s, origin);
    if (cors) {
        realm__reply_header(r, "Access-Control-Allow-Origin", origin);
        realm__reply_header(r, "Vary", "Origin");
    }
    if (strcmp(r->method, "OPTIONS") == 0) { /* a CORS preflight */
        if (!cors) {
            realm__reply_error(r, 403, NULL, NULL, "cors_denied",
                               "cross-origin requests from this origin are not allowed");
            return true;
        }
        realm__reply_header(r, "Access-Control-Allow-Methods", "GET, POST, DELETE, PATCH, OPTIONS");
        realm__reply_header(r, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type, OpenAI-Organization, OpenAI-Project, "
                            "X-Stainless-OS, X-Stainless-Lang, X-Stainless-Package-Version, "
                            "X-Stainless-Runtime, X-Stainless-Runtime-Version, X-Stainless-Arch, "
                            "X-Stainless-Retry-Count, X-Stainless-Timeout");
        realm__reply_header(r, "Access-Control-Max-Age", "600");
        realm__req_respond(r, 204, "", 0);
        return true;
    }
    if (s->keyless && s->loopback && !host_ok(s, header(c, "Host"))) {
        realm__reply_error(r, 403, NULL, NULL, "host_not_allowed",
                           "this server has no API keys and answers only requests addressed to "
                           "its loopback address (Host: localhost or 127.0.0.1)");
        return true;
    }
    bool method_ok;
    const route *rt = find_route(r->path, &method_ok, r->method);
    if (!rt) {
        realm__reply_error(r, 404, NULL, NULL, "not_found", "no route %s %.200s", r->method,
                           r->path);
        return true;
    }
    snprintf(r->route, sizeof r->route, "%s", rt->name);
    if (rt->kind == R_MODULE && !rt->prefix && strcmp(rt->path, "/v1/responses") == 0 &&
        strcmp(r->method, "GET") == 0 && realm__ws_wants_upgrade(c)) {
        /* OpenAI's WebSocket mode (ws.c): the same key, or a browser's subprotocol */
        if (!ws_origin_ok(s, c)) {
            realm__reply_error(r, 403, NULL, NULL, "origin_not_allowed",
                               "WebSocket connections from this origin are not allowed%s",
                               s->keyless ? " (this server has no API keys)" : "");
            return true;
        }
        char key_buf[512], echo[600];
        const char *proto_key;
        ws_protocols(c, key_buf, sizeof key_buf, &proto_key, echo, sizeof echo);
        const char *key = bearer_key(c);
        if (!realm__authenticate_key(r, key && *key ? key : proto_key))
            return true;
        json_t *h = realm__info_headers(c);
        r->info = realm__request_info(r, "", "websocket", h);
        json_decref(h);
        realm__ws_handshake(r, c, echo);
        return true;
    }
    if (!method_ok) {
        realm__reply_header(r, "Allow", rt->method);
        realm__reply_error(r, 405, NULL, NULL, "method_not_allowed", "%s takes %s, not %s",
                           rt->name, rt->method, r->method);
        return true;
    }
    if (rt->kind == R_ADMIN) { /* the operator's API: its own key, no tenant */
        const char *auth = header(c, "Authorization");
        if (!s->p.admin_key) {
            realm__reply_error(r, 404, NULL, NULL, "not_found",
                               "the admin API is off (start the server with --admin-key-file)");
            return true;
        }
        if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 || !same(auth + 7, s->p.admin_key)) {
            realm__reply_error(r, 401, NULL, NULL, "invalid_api_key",
                               "the admin API needs the admin key as 'Authorization: Bearer KEY'");
            return true;
        }
    }
    if (strcmp(r->method, "POST") == 0 || strcmp(r->method, "PATCH") == 0) {
        const char *ct = header(c, "Content-Type");
        if (!ct || strncasecmp(ct, "application/json", 16) != 0 ||
            (ct[16] && ct[16] != ';' && ct[16] != ' ')) {
            realm__reply_error(r, 415, NULL, NULL, "unsupported_media_type",
                               "the body must be JSON sent as Content-Type: application/json");
            return true;
        }
        if (content_length > s->p.max_body) {
            realm__reply_error(r, 413, NULL, NULL, "request_too_large",
                               "the request body is larger than the limit of %llu bytes",
                               (unsigned long long)s->p.max_body);
            return true;
        }
    }
    if (rt->kind == R_HEALTH || rt->kind == R_READY || rt->kind == R_METRICS || rt->kind == R_ADMIN)
        return false; /* open: probes and scrapers; the admin API checked its key above */
    if (!authenticate(r, c))
        return true;
    char query[1024];
    query_text(c, query, sizeof query);
    json_t *h = realm__info_headers(c);
    r->info = realm__request_info(r, query, s->tls ? "https" : "http", h);
    json_decref(h);
    return false;
}

void *realm__info_headers(struct MHD_Connection *c)
{
    json_t *h = json_object();
    static const char *const passed[] = {"content-type",
                                         "accept",
                                         "user-agent",
                                         "openai-organization",
                                         "openai-project",
                                         "openai-beta",
                                         "x-stainless-package-version"};
    for (size_t i = 0; h && i < sizeof passed / sizeof *passed; i++) {
        const char *v = header(c, passed[i]);
        if (v)
            json_object_set_new(h, passed[i], json_string(v));
    }
    return h;
}

char *realm__request_info(const req *r, const char *query, const char *transport, void *headers)
{
    json_t *info = json_pack(
        "{s:s, s:s%, s:s, s:s, s:s, s:I, s:s, s:I, s:O, s:I}", "method", r->method, "path", r->path,
        strlen(r->path), "query", query, "transport", transport, "tenant", r->tenant->rec.name,
        "tenant_id", (json_int_t)r->tenant->id, "request_id", r->id, "created",
        (json_int_t)time(NULL), "headers", headers ? (json_t *)headers : json_null(),
        "responses_ttl_s", (json_int_t)r->srv->p.responses_ttl_s);
    char *text = info ? json_dumps(info, JSON_COMPACT) : NULL;
    json_decref(info);
    return text;
}

/* ---- endpoints the server answers -------------------------------------------------- */

/* Is model name allowed for tenant t ("" models: all)? */
static bool model_allowed(const tenant_rt *t, const char *name)
{
    const char *m = t->rec.models;
    if (!*m)
        return true;
    const size_t n = strlen(name);
    while (*m) {
        const char *e = strchr(m, ',');
        const size_t l = e ? (size_t)(e - m) : strlen(m);
        if (l == n && strncmp(m, name, n) == 0)
            return true;
        m += l + (e ? 1 : 0);
    }
    return false;
}

/* A model as OpenAI lists it, with vLLM's "root" and "parent" (null: a base model). */
static json_t *model_json(const realm_model_status *st)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:n}", "id", st->name, "object", "model", "created",
                     (json_int_t)0, "owned_by", "realm", "root", st->name, "parent");
}

/* A LoRA adapter as vLLM lists it: a model whose parent is its base. */
static json_t *lora_json(const realm_lora_status *l)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "id", l->name, "object", "model", "created",
                     (json_int_t)0, "owned_by", "realm", "root", l->name, "parent", l->base);
}

/* The adapters tenant t may use (allowed by their own names), loaded now. */
static realm_lora_status *loras_allowed(req *r, int32_t *n)
{
    realm_lora_status *ls = NULL;
    *n = 0;
    if (realm_registry_list_lora(r->srv->p.registry, &ls, n) < 0)
        return NULL;
    int32_t k = 0;
    for (int32_t i = 0; i < *n; i++)
        if (!ls[i].unloading && model_allowed(r->tenant, ls[i].name))
            ls[k++] = ls[i];
    *n = k;
    return ls;
}

/* GET /lora-adapters (llama-server's): the adapters the tenant may use, by
 * id, the number a request's "lora": [{"id", "scale"}] names. "path" is the
 * file's name only: the server's directories are not the tenant's to see. */
static void lora_adapters(req *r)
{
    int32_t n = 0;
    realm_lora_status *ls = loras_allowed(r, &n);
    json_t *a = json_array();
    for (int32_t i = 0; i < n; i++) {
        const char *file = strrchr(ls[i].path, '/');
        json_array_append_new(
            a, json_pack("{s:I, s:s, s:s, s:f, s:s, s:i, s:f}", "id", (json_int_t)ls[i].id, "name",
                         ls[i].name, "path", file ? file + 1 : ls[i].path, "scale", 1.0, "base",
                         ls[i].base, "rank", ls[i].rank, "alpha", (double)ls[i].alpha));
    }
    free(ls);
    realm__reply_json(r, 200, a);
}

static void models(req *r, bool one)
{
    realm_model_status *st = NULL;
    int32_t n = 0;
    if (realm_registry_list(r->srv->p.registry, &st, &n) < 0) {
        realm__reply_error(r, 500, NULL, NULL, NULL, "%s", realm_last_error());
        return;
    }
    const char *want = one ? r->path + strlen("/v1/models/") : NULL;
    char id[256] = "";
    if (want) {
        snprintf(id, sizeof id, "%s", want);
        char *q = strchr(id, '?');
        if (q)
            *q = '\0';
    }
    json_t *data = json_array();
    json_t *found = NULL;
    for (int32_t i = 0; i < n; i++) {
        if (!model_allowed(r->tenant, st[i].name))
            continue;
        if (one && strcmp(st[i].name, id) == 0)
            found = model_json(&st[i]);
        else if (!one)
            json_array_append_new(data, model_json(&st[i]));
    }
    free(st);
    int32_t n_lora = 0;
    realm_lora_status *ls = loras_allowed(r, &n_lora);
    for (int32_t i = 0; i < n_lora; i++) {
        if (one && strcmp(ls[i].name, id) == 0 && !found)
            found = lora_json(&ls[i]);
        else if (!one)
            json_array_append_new(data, lora_json(&ls[i]));
    }
    free(ls);
    if (one) {
        json_decref(data);
        if (found)
            realm__reply_json(r, 200, found);
        else
            realm__reply_error(r, 404, NULL, "model", "model_not_found",
                               "the model '%.200s' does not exist or you do not have access to it",
                               id);
        return;
    }
    realm__reply_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* GET /api/ps (Ollama's shape, for `realm ps`): the loaded models, their
 * memory and when their keep-alive runs out. */
static void ps(req *r)
{
    realm_model_status *st = NULL;
    int32_t n = 0;
    if (realm_registry_list(r->srv->p.registry, &st, &n) < 0) {
        realm__reply_error(r, 500, NULL, NULL, NULL, "%s", realm_last_error());
        return;
    }
    json_t *a = json_array();
    const time_t now = time(NULL);
    for (int32_t i = 0; i < n; i++) {
        if (!st[i].loaded || !model_allowed(r->tenant, st[i].name))
            continue;
        char when[40] = "";
        if (st[i].expires_in_s >= 0) {
            const time_t t = now + (time_t)st[i].expires_in_s;
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        }
        json_array_append_new(a,
                              json_pack("{s:s, s:s, s:I, s:I, s:s, s:i, s:b}", "name", st[i].name,
                                        "model", st[i].name, "size", (json_int_t)st[i].mem_bytes,
                                        "size_vram", (json_int_t)0, "expires_at", when, "refs",
                                        st[i].refs, "pinned", st[i].pinned));
    }
    free(st);
    /* LoRA adapters: their memory, their base, whether unloaded with requests still on them */
    realm_lora_status *ls = NULL;
    int32_t n_lora = 0;
    if (realm_registry_list_lora(r->srv->p.registry, &ls, &n_lora) == 0)
        for (int32_t i = 0; i < n_lora; i++)
            if (model_allowed(r->tenant, ls[i].name))
                json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:I, s:s, s:i, s:b, s:s, s:b}",
                                                   "name", ls[i].name, "model", ls[i].name, "size",
                                                   (json_int_t)ls[i].mem_bytes, "size_vram",
                                                   (json_int_t)0, "expires_at", "", "refs",
                                                   ls[i].refs, "pinned", false, "parent",
                                                   ls[i].base, "unloading", ls[i].unloading));
    free(ls);
    realm__reply_json(r, 200, json_pack("{s:o}", "models", a));
}

/* The model a /tokenize or /detokenize body names, else the tenant's first. */
static realm_model_ref *body_model(req *r, json_t *body)
{
    const char *name = json_string_value(json_object_get(body, "model"));
    char first[256] = "";
    if (!name) {
        realm_model_status *st = NULL;
        int32_t n = 0;
        if (realm_registry_list(r->srv->p.registry, &st, &n) == 0)
            for (int32_t i = 0; i < n && !first[0]; i++)
                if (model_allowed(r->tenant, st[i].name))
                    snprintf(first, sizeof first, "%s", st[i].name);
        free(st);
        name = first;
    }
    realm_model_ref *ref = NULL;
    if (!*name || !model_allowed(r->tenant, name) ||
        realm_registry_acquire(r->srv->p.registry, name, strlen(name),
                               &(realm_acquire_opts){.names_only = true}, &ref) < 0) {
        realm__reply_error(r, 404, NULL, "model", "model_not_found",
                           "the model '%.200s' does not exist or you do not have access to it",
                           name);
        return NULL;
    }
    return ref;
}

static void tokenize(req *r, json_t *body, bool detok)
{
    realm_model_ref *ref = body_model(r, body);
    if (!ref)
        return;
    const realm_tokenizer *tok = realm_engine_tokenizer(realm_model_ref_engine(ref));
    if (!detok) {
        json_t *content = json_object_get(body, "content");
        if (!json_is_string(content)) {
            realm__reply_error(r, 400, NULL, "content", NULL, "'content' must be a string");
        } else {
            unsigned flags = 0;
            if (json_is_true(json_object_get(body, "add_special")))
                flags |= REALM_TOKENIZE_ADD_SPECIAL;
            if (json_is_true(json_object_get(body, "parse_special")))
                flags |= REALM_TOKENIZE_PARSE_SPECIAL;
            realm_token *ids = NULL;
            int32_t n = 0;
            if (realm_tokenize_alloc(tok, json_string_value(content), json_string_length(content),
                                     flags, &ids, &n) < 0) {
                realm__reply_error(r, 400, NULL, "content", NULL, "%s", realm_last_error());
            } else {
                json_t *a = json_array();
                for (int32_t i = 0; i < n; i++)
                    json_array_append_new(a, json_integer(ids[i]));
                realm__reply_json(r, 200, json_pack("{s:o}", "tokens", a));
            }
            free(ids);
        }
    } else {
        json_t *a = json_object_get(body, "tokens");
        const size_t n = json_array_size(a);
        realm_token *ids = malloc((n ? n : 1) * sizeof *ids);
        bool ok = json_is_array(a) && ids && n <= (1u << 20);
        for (size_t i = 0; ok && i < n; i++) {
            json_t *v = json_array_get(a, i);
            ok = json_is_integer(v) && json_integer_value(v) >= 0 &&
                 json_integer_value(v) < realm_tokenizer_n_vocab(tok);
            if (ok)
                ids[i] = (realm_token)json_integer_value(v);
        }
        int32_t len = ok ? realm_detokenize(tok, ids, (int32_t)n, 0, NULL, 0) : -1;
        char *text = len >= 0 ? malloc((size_t)len + 1) : NULL;
        if (!ok)
            realm__reply_error(r, 400, NULL, "tokens", NULL,
                               "'tokens' must be an array of token ids 0..%d",
                               realm_tokenizer_n_vocab(tok) - 1);
        else if (!text || realm_detokenize(tok, ids, (int32_t)n, 0, text, (size_t)len) != len)
            realm__reply_error(r, 500, NULL, NULL, NULL, "cannot detokenize");
        else
            realm__reply_json(r, 200, json_pack("{s:s%}", "content", text, (size_t)len));
        free(text);
        free(ids);
    }
    realm_registry_release(ref);
}

/* ---- the module path ----------------------------------------------------------------- */

typedef struct run_ctx {
    req *r;
    json_t *usage; /* model -> [prompt, cached, completion] */
    int64_t tokens;
    realm_kv_ops kv; /* the tenant's key-value data in the store */
} run_ctx;

static void io_emit(void *ud, const char *d, size_t n)
{
    realm__req_emit(((run_ctx *)ud)->r, d, n);
}

static void io_respond(void *ud, int status, const char *d, size_t n)
{
    realm__req_respond(((run_ctx *)ud)->r, status, d, n);
}

static int io_set_response(void *ud, int status, const char *const *names,
                           const char *const *values, int n)
{
    if (!realm__req_start(((run_ctx *)ud)->r, status, names, values, n))
        return realm__error(REALM_ERR_EXISTS, "the response has already started");
    return 0;
}

static int io_cancelled(void *ud)
{
    req *r = ((run_ctx *)ud)->r;
    if (atomic_load(&r->cancelled) || atomic_load(&r->srv->stop_now))
        return 1;
    return atomic_load(&r->stop) ? REALM_IO_STOP : 0;
}

static void io_log(void *ud, int level, const char *line, size_t n)
{
    req *r = ((run_ctx *)ud)->r;
    realm__log(level > 3 ? REALM_LOG_DEBUG : (realm_log_level)level, "[tenant %s %s] %.*s",
               r->tenant->rec.name, r->id, (int)n, line);
}

static void io_generation(void *ud, const char *model, const realm_gen_result *res)
{
    run_ctx *x = ud;
    realm__metrics_generation(x->r->srv->m, model, x->r->tenant->rec.name, res);
    json_t *u = json_object_get(x->usage, model);
    if (!u) {
        u = json_pack("[i,i,i,i]", 0, 0, 0, 0);
        json_object_set_new(x->usage, model, u);
    }
    const json_int_t add[4] = {1, res->n_prompt, res->n_cached, res->n_completion};
    for (int i = 0; i < 4; i++)
        json_array_set_new(u, (size_t)i,
                           json_integer(json_integer_value(json_array_get(u, (size_t)i)) + add[i]));
    x->tokens += res->n_prompt + res->n_completion;
}

/* realm.kv_*: the store's key-value data of the request's tenant. */
_Static_assert(REALM_SANDBOX_KV_KEY_MAX == REALM_KV_KEY_MAX &&
                   REALM_SANDBOX_KV_LIST_MAX == REALM_KV_LIST_MAX,
               "the sandbox and the store agree on keys and lists");

static int64_t kv_get(void *ud, const char *key, void *buf, size_t cap)
{
    const req *r = ((run_ctx *)ud)->r;
    return realm_store_kv_get(r->srv->p.store, r->tenant->id, key, buf, cap);
}

static int kv_put(void *ud, const char *key, const void *value, size_t len, uint32_t ttl_s)
{
    const req *r = ((run_ctx *)ud)->r;
    const int64_t expires_at = ttl_s ? (int64_t)time(NULL) + ttl_s : 0;
    return realm_store_kv_put(r->srv->p.store, r->tenant->id, key, value, len, expires_at);
}

static int kv_del(void *ud, const char *key)
{
    const req *r = ((run_ctx *)ud)->r;
    return realm_store_kv_delete(r->srv->p.store, r->tenant->id, key);
}

static int kv_list(void *ud, const char *prefix, const char *after, int32_t limit, char ***keys,
                   int32_t *n, bool *more)
{
    const req *r = ((run_ctx *)ud)->r;
    return realm_store_kv_list(r->srv->p.store, r->tenant->id, prefix, after, limit, keys, n, more);
}

/* Write the request's usage (one record per model) to the store's queue. */
static void record_usage(req *r, run_ctx *x)
{
    if (!r->srv->p.store)
        return;
    json_t *body = r->body ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    const char *user = json_string_value(json_object_get(body, "user"));
    const char *model;
    json_t *u;
    json_object_foreach(x->usage, model, u)
    {
        realm_usage rec = {.tenant = r->tenant->id,
                           .requests = 1,
                           .prompt_tokens = json_integer_value(json_array_get(u, 1)),
                           .cached_tokens = json_integer_value(json_array_get(u, 2)),
                           .completion_tokens = json_integer_value(json_array_get(u, 3))};
        snprintf(rec.model, sizeof rec.model, "%s", model);
        snprintf(rec.user, sizeof rec.user, "%s", user ? user : "");
        realm_store_usage_record(r->srv->p.store, &rec);
    }
    json_decref(body);
}

void realm__run_module(req *r)
{
    server *s = r->srv;
    if (atomic_load(&r->cancelled)) {
        realm__req_respond(r, 499, "", 0);
        return;
    }
    json_t *body = NULL;
    if (strcmp(r->route, "/admin/v1") == 0) {
        realm__admin(r);
        return;
    }
    if (strcmp(r->route, "/v1/load_lora_adapter") == 0 ||
        strcmp(r->route, "/v1/unload_lora_adapter") == 0) {
        realm__admin_lora(r, strcmp(r->route, "/v1/load_lora_adapter") == 0);
        return;
    }
    if (strcmp(r->route, "/tokenize") == 0 || strcmp(r->route, "/detokenize") == 0) {
        json_error_t jerr;
        body = json_loadb(r->body ? r->body : "", r->body_len, 0, &jerr);
        if (!json_is_object(body))
            realm__reply_error(r, 400, NULL, NULL, "invalid_json",
                               "the body is not a JSON object: %s (at byte %d)", jerr.text,
                               jerr.position);
        else
            tokenize(r, body, strcmp(r->route, "/detokenize") == 0);
        json_decref(body);
        return;
    }
    tenant_rt *t = r->tenant;
    if (realm__tenant_admit(s, t, r) != 0)
        return; /* answered: over a limit */
    realm_instance *in = NULL;
    if (realm__tenant_instance(s, t, &in) < 0) {
        realm__reply_error(r, 500, NULL, NULL, NULL, "the tenant's module cannot start: %s",
                           realm_last_error());
        realm__tenant_done(t, 0);
        return;
    }
    run_ctx x = {.r = r, .usage = json_object()};
    x.kv = (realm_kv_ops){.get = kv_get, .put = kv_put, .del = kv_del, .list = kv_list, .ud = &x};
    realm_request_io io = {.body = r->body ? r->body : "",
                           .body_len = r->body_len,
                           .emit = io_emit,
                           .respond = io_respond,
                           .log = io_log,
                           .info = r->info,
                           .info_len = r->info ? strlen(r->info) : 0,
                           .set_response = io_set_response,
                           .cancelled = io_cancelled,
                           .on_generation = io_generation,
                           .ud = &x,
                           .kv = s->p.store ? &x.kv : NULL};
    int32_t ret = 0;
    const int rc = realm_instance_handle(in, &io, &ret);
    realm__tenant_instance_put(t, in);
    if (rc == REALM_ERR_TRAP) {
        realm__metrics_trap(s->m, t->rec.name);
        realm__log(REALM_LOG_WARN, "[tenant %s %s] %s", t->rec.name, r->id, realm_last_error());
        pthread_mutex_lock(&r->mu);
        const bool streaming = r->streaming;
        pthread_mutex_unlock(&r->mu);
        char msg[600];
        snprintf(msg, sizeof msg, "%s", realm_last_error());
        if (streaming) { /* an error after streaming started: an SSE event (a WebSocket's
                          * error event) */
            json_t *e = json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", msg, "type",
                                  "server_error", "param", "code", "module_trap");
            if (e && r->ws) {
                json_object_set_new(e, "type", json_string("error"));
                json_object_set_new(e, "status", json_integer(500));
            }
            char *js = e ? json_dumps(e, JSON_COMPACT) : NULL;
            json_decref(e);
            char ev[1200];
            int n = snprintf(ev, sizeof ev, r->ws ? "%s" : "data: %s\n\n", js ? js : "{}");
            free(js);
            realm__req_emit(r, ev, (size_t)n);
            realm__req_respond(r, 200, "", 0);
        } else {
            realm__reply_error(r, 500, NULL, NULL, "module_trap", "%s", msg);
        }
    } else if (rc == REALM_ERR_INTERRUPTED) {
        realm__req_respond(r, 499, "", 0); /* the client left: nobody reads this */
    } else if (rc < 0) {
        realm__reply_error(r, 500, NULL, NULL, NULL, "%s", realm_last_error());
    } else {
        pthread_mutex_lock(&r->mu);
        const bool finished = r->finished, streaming = r->streaming;
        pthread_mutex_unlock(&r->mu);
        if (streaming && !finished)
            realm__req_respond(r, 200, "", 0); /* the module ended its stream without respond */
        else if (!finished)
            realm__reply_error(r, 500, NULL, NULL, "no_response",
                               "the tenant's module returned %d without a response", ret);
    }
    record_usage(r, &x);
    realm__tenant_done(t, x.tokens);
    json_decref(x.usage);
}

void realm__route(req *r)
{
    server *s = r->srv;
    bool method_ok;
    const route *rt = find_route(r->path, &method_ok, r->method);
    switch (rt ? rt->kind : 0) {
    case R_HEALTH:
        realm__reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
        return;
    case R_READY:
        if (atomic_load(&s->draining))
            realm__reply_error(r, 503, NULL, NULL, "draining", "the server is shutting down");
        else
            realm__reply_json(r, 200, json_pack("{s:s}", "status", "ready"));
        return;
    case R_METRICS: {
        char *text = realm__metrics_render(s->m, s->p.registry, atomic_load(&s->n_ws));
        realm__reply_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        realm__req_respond(r, text ? 200 : 500, text ? text : "", text ? strlen(text) : 0);
        free(text);
        return;
    }
    case R_MODELS:
    case R_MODEL:
        models(r, rt->kind == R_MODEL);
        return;
    case R_PS:
        ps(r);
        return;
    case R_LORAS:
        lora_adapters(r);
        return;
    default:
        break;
    }
    if (rt && rt->kind == R_MODULE && strcmp(r->method, "POST") == 0) {
        /* malformed JSON never reaches a module */
        json_error_t jerr;
        json_t *j = json_loadb(r->body ? r->body : "", r->body_len, 0, &jerr);
        const bool object = json_is_object(j);
        json_decref(j);
        if (!object) {
            if (j)
                realm__reply_error(r, 400, NULL, NULL, "invalid_json",
                                   "the body must be a JSON object");
            else
                realm__reply_error(r, 400, NULL, NULL, "invalid_json",
                                   "the body is not valid JSON: %s (line %d, column %d, byte %d)",
                                   jerr.text, jerr.line, jerr.column, jerr.position);
            return;
        }
    }
    if (atomic_load(&s->draining)) {
        realm__reply_header(r, "Retry-After", "5");
        realm__reply_error(r, 503, NULL, NULL, "draining", "the server is shutting down");
        return;
    }
    if (!realm__req_enqueue(r)) {
        realm__metrics_rejection(s->m, "queue_full");
        realm__reply_header(r, "Retry-After", "1");
        realm__reply_error(r, 503, NULL, NULL, "overloaded",
                           "the server is overloaded (%d requests waiting); try again",
                           s->p.max_queue);
    }
}
