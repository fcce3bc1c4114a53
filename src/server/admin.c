/*
 * The admin API (server_internal.h): tenants, their API keys and usage over
 * HTTP for the operator, under /admin/v1/ with the admin key (routes.c checks
 * it before the body is read; without one configured the API answers 404).
 * It is the `realm tenant | key | usage` CLI over HTTP: both go through the
 * store (realm/store.h), which checks names and values and names the field at
 * fault. After a change this server reloads its tenants at once
 * (realm__tenants_sync); other servers on the data directory see it from
 * their next request (routes.c syncs as it authenticates). docs/admin-api.md
 * is the reference.
 *
 *   GET    tenants                  {"object":"list","data":[TENANT...]}
 *   POST   tenants                  {"name", SETTINGS...}       -> 201 TENANT
 *   GET    tenants/{name}           TENANT
 *   PATCH  tenants/{name}           {SETTINGS...}               -> TENANT
 *   DELETE tenants/{name}           204
 *   POST   tenants/{name}/keys      {} -> 201 {"key","prefix","tenant","created"}
 *   DELETE keys/{prefix}            204 (404 unknown, 409 a prefix of several keys)
 *   GET    usage?tenant=T&since=S   {"object":"list","data":[ROW...],"total":{...}}
 *
 * TENANT: {"id","name","module_sha256" (null: the default module),"models"
 * ([]: every model),"rpm","tpm","max_concurrent","max_tokens","quota",
 * "weight","max_pages","deadline_ms","kv_quota","created" (unix seconds)}.
 * SETTINGS are its members from "models" to "kv_quota" (the settings table);
 * the others are read-only here. A module is set only by `realm tenant set
 * NAME --module FILE.wasm`, which checks and builds it first.
 *
 * ROW: {"tenant" (null once removed),"tenant_id","model","user" (null: none),
 * "hour" (ISO 8601, UTC),"requests","prompt_tokens","cached_tokens",
 * "completion_tokens"}; "total" sums the counts. since: unix seconds, a UTC
 * date or time (2026-12-01, 2026-12-01T08:00[:00][Z]) or a time back from now
 * (24h, 90m, 7d); absent: everything.
 *
 * Errors are OpenAI's shape (reply.c) with a code: invalid_json,
 * unknown_field, read_only_field, invalid_type, missing_field, invalid_value,
 * unknown_parameter (400, param naming the field), tenant_not_found,
 * key_not_found, not_found, no_data_directory (404), method_not_allowed (405,
 * with Allow), tenant_exists, ambiguous_key_prefix (409).
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/error_internal.h"
#include "core/log_internal.h"
#include "realm/registry.h"
#include "server_internal.h"

#define ADMIN_PREFIX "/admin/v1/"

/* ---- tenants as JSON ------------------------------------------------------------------ */

/* The settings a request may change, by their JSON name. */
enum { SET_INT, SET_WEIGHT, SET_MODELS };

static const struct setting {
    const char *name;
    int kind;
    size_t off; /* of an int64_t for SET_INT */
} settings[] = {
    {"models", SET_MODELS, offsetof(realm_tenant, models)},
    {"rpm", SET_INT, offsetof(realm_tenant, rpm)},
    {"tpm", SET_INT, offsetof(realm_tenant, tpm)},
    {"max_concurrent", SET_INT, offsetof(realm_tenant, max_concurrent)},
    {"max_tokens", SET_INT, offsetof(realm_tenant, max_tokens)},
    {"quota", SET_INT, offsetof(realm_tenant, quota)},
    {"weight", SET_WEIGHT, offsetof(realm_tenant, weight)},
    {"max_pages", SET_INT, offsetof(realm_tenant, max_pages)},
    {"deadline_ms", SET_INT, offsetof(realm_tenant, deadline_ms)},
    {"kv_quota", SET_INT, offsetof(realm_tenant, kv_quota)},
};
#define N_SETTINGS (sizeof settings / sizeof settings[0])

/* Members of a tenant object that are not settings. */
static const char *const read_only[] = {"id", "name", "created", "module_sha256"};

static const struct setting *setting_of(const char *name)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strcmp(settings[i].name, name) == 0)
            return &settings[i];
    return NULL;
}

static int64_t get_int(const realm_tenant *t, size_t off)
{
    int64_t v;
    memcpy(&v, (const char *)t + off, sizeof v);
    return v;
}

static json_t *tenant_json(const realm_tenant *t)
{
    json_t *models = json_array();
    for (const char *p = t->models; *p;) {
        const char *e = strchr(p, ',');
        const size_t n = e ? (size_t)(e - p) : strlen(p);
        json_array_append_new(models, json_stringn(p, n));
        p += n + (e ? 1 : 0);
    }
    json_t *j = json_pack(
        "{s:I, s:s, s:o, s:o}", "id", (json_int_t)t->id, "name", t->name, "module_sha256",
        t->module_sha256[0] ? json_string(t->module_sha256) : json_null(), "models", models);
    for (size_t i = 0; j && i < N_SETTINGS; i++)
        if (settings[i].kind == SET_INT)
            json_object_set_new(j, settings[i].name,
                                json_integer((json_int_t)get_int(t, settings[i].off)));
        else if (settings[i].kind == SET_WEIGHT)
            json_object_set_new(j, "weight", json_real(t->weight));
    if (j)
        json_object_set_new(j, "created", json_integer((json_int_t)t->created));
    return j;
}

/* "models": an array of names (or null: every model) into t->models, comma-separated. */
static bool set_models(req *r, json_t *v, realm_tenant *t)
{
    char buf[sizeof t->models] = "";
    size_t len = 0, i;
    json_t *m;
    if (!json_is_array(v) && !json_is_null(v)) {
        realm__reply_error(r, 400, NULL, "models", "invalid_type",
                           "'models' must be an array of model names ([] or null: every model)");
        return false;
    }
    json_array_foreach(v, i, m)
    {
        const char *name = json_string_value(m);
        const size_t n = name ? json_string_length(m) : 0;
        if (!name || strlen(name) != n || memchr(name, ',', n)) {
            realm__reply_error(r, 400, NULL, "models", "invalid_type",
                               "'models' item %zu must be a model name (a string without ',')", i);
            return false;
        }
        if (len + (len ? 1 : 0) + n >= sizeof buf) {
            realm__reply_error(r, 400, NULL, "models", "invalid_value",
                               "models: the list is longer than %zu bytes", sizeof buf - 1);
            return false;
        }
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", len ? "," : "", name);
    }
    memcpy(t->models, buf, sizeof buf);
    return true;
}

/* Apply body's settings to t, checking their types (the store checks their
 * values); skip: a member the caller handles. False with the 400 answered. */
static bool apply_settings(req *r, json_t *body, realm_tenant *t, const char *skip)
{
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        if (skip && strcmp(k, skip) == 0)
            continue;
        const struct setting *st = setting_of(k);
        if (!st) {
            for (size_t i = 0; i < sizeof read_only / sizeof *read_only; i++)
                if (strcmp(k, read_only[i]) == 0) {
                    realm__reply_error(r, 400, NULL, k, "read_only_field",
                                       "'%s' cannot be changed%s", k,
                                       strcmp(k, "module_sha256") == 0
                                           ? " over HTTP: use realm tenant set NAME --module "
                                             "FILE.wasm"
                                           : "");
                    return false;
                }
            char known[256] = "";
            for (size_t i = 0; i < N_SETTINGS; i++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                         settings[i].name);
            realm__reply_error(r, 400, NULL, k, "unknown_field",
                               "unknown field '%.64s' (the settings: %s)", k, known);
            return false;
        }
        if (st->kind == SET_MODELS) {
            if (!set_models(r, v, t))
                return false;
        } else if (st->kind == SET_WEIGHT) {
            if (!json_is_number(v)) {
                realm__reply_error(r, 400, NULL, k, "invalid_type",
                                   "'weight' must be a number in 0.001..1000");
                return false;
            }
            t->weight = json_number_value(v);
        } else {
            if (!json_is_integer(v)) {
                realm__reply_error(r, 400, NULL, k, "invalid_type",
                                   "'%s' must be an integer (0: no limit)", k);
                return false;
            }
            const int64_t n = json_integer_value(v);
            memcpy((char *)t + st->off, &n, sizeof n);
        }
    }
    return true;
}

/* ---- replies -------------------------------------------------------------------------- */

/* Answer a failed store call rc: 404 with code_404 for REALM_ERR_NOTFOUND, 409
 * with code_409 for REALM_ERR_EXISTS, 400 for REALM_ERR_INVAL, 500 otherwise;
 * param names what is at fault (for a 400: the setting the store's message
 * starts with, if any). */
static void store_error(req *r, int rc, const char *code_404, const char *code_409,
                        const char *param)
{
    char msg[600];
    snprintf(msg, sizeof msg, "%s", realm_last_error());
    if (rc == REALM_ERR_NOTFOUND) {
        realm__reply_error(r, 404, NULL, param, code_404, "%s", msg);
    } else if (rc == REALM_ERR_EXISTS) {
        realm__reply_error(r, 409, NULL, param, code_409, "%s", msg);
    } else if (rc == REALM_ERR_INVAL) {
        const char *colon = strchr(msg, ':');
        for (size_t i = 0; colon && i < N_SETTINGS; i++)
            if (strlen(settings[i].name) == (size_t)(colon - msg) &&
                strncmp(msg, settings[i].name, (size_t)(colon - msg)) == 0)
                param = settings[i].name;
        realm__reply_error(r, 400, NULL, param, "invalid_value", "%s", msg);
    } else {
        realm__reply_error(r, 500, NULL, NULL, NULL, "%s", msg);
    }
}

/* A tenant by name as a reply (status), or its error: a name that cannot
 * exist is as unknown as one that does not. */
static void reply_tenant(req *r, int status, const char *name)
{
    realm_tenant t;
    const int rc = realm_store_tenant_get(r->srv->p.store, name, &t);
    if (rc < 0)
        store_error(r, rc == REALM_ERR_INVAL ? REALM_ERR_NOTFOUND : rc, "tenant_not_found", NULL,
                    NULL);
    else
        realm__reply_json(r, status, tenant_json(&t));
}

/* A body member that must be a string without NULs; NULL (with the 400
 * answered) if it is not. */
static const char *string_member(req *r, json_t *body, const char *name)
{
    json_t *v = json_object_get(body, name);
    const char *s = json_string_value(v);
    if (!v)
        realm__reply_error(r, 400, NULL, name, "missing_field", "'%s' is required", name);
    else if (!s || strlen(s) != json_string_length(v))
        realm__reply_error(r, 400, NULL, name, "invalid_type", "'%s' must be a string", name);
    else
        return s;
    return NULL;
}

/* ---- the endpoints -------------------------------------------------------------------- */

static void tenants_list(req *r, json_t *body, const char *arg)
{
    (void)body, (void)arg;
    realm_tenant *t = NULL;
    int32_t n = 0;
    const int rc = realm_store_tenant_list(r->srv->p.store, &t, &n);
    if (rc < 0) {
        store_error(r, rc, NULL, NULL, NULL);
        return;
    }
    json_t *data = json_array();
    for (int32_t i = 0; i < n; i++)
        json_array_append_new(data, tenant_json(&t[i]));
    free(t);
    realm__reply_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static void tenant_create(req *r, json_t *body, const char *arg)
{
    (void)arg;
    realm_store *s = r->srv->p.store;
    const char *name = string_member(r, body, "name");
    realm_tenant want = {.weight = 1};
    if (!name || !apply_settings(r, body, &want, "name"))
        return;
    /* settings too: all or nothing, so a bad value is refused before the
     * tenant exists (a reply sent before undoing an add let the client's
     * next request see the tenant half made) */
    const bool with_settings = json_object_size(body) > 1;
    int rc = with_settings ? realm_store_tenant_check(s, &want) : 0;
    if (rc < 0) {
        store_error(r, rc, "tenant_not_found", NULL, NULL);
        return;
    }
    realm_tenant made;
    if ((rc = realm_store_tenant_add(s, name, &made)) < 0) {
        store_error(r, rc, "tenant_not_found", "tenant_exists", "name");
        return;
    }
    if (with_settings) {
        want.id = made.id;
        if ((rc = realm_store_tenant_update(s, &want)) < 0) { /* the database failed */
            char msg[512];
            snprintf(msg, sizeof msg, "%s", realm_last_error());
            if (realm_store_tenant_remove(s, name) < 0)
                realm__log(REALM_LOG_WARN, "%s: tenant '%s' was added, its settings not: %s", r->id,
                           name, realm_last_error());
            realm__error(rc, "%s", msg);
            store_error(r, rc, "tenant_not_found", NULL, NULL);
            return;
        }
    }
    realm__tenants_sync(r->srv);
    char where[sizeof ADMIN_PREFIX + 8 + REALM_TENANT_NAME_MAX];
    snprintf(where, sizeof where, "%stenants/%s", ADMIN_PREFIX, name);
    realm__reply_header(r, "Location", where);
    reply_tenant(r, 201, name);
}

static void tenant_show(req *r, json_t *body, const char *name)
{
    (void)body;
    reply_tenant(r, 200, name);
}

static void tenant_patch(req *r, json_t *body, const char *name)
{
    realm_store *s = r->srv->p.store;
    realm_tenant t;
    int rc = realm_store_tenant_get(s, name, &t);
    if (rc < 0) {
        store_error(r, rc == REALM_ERR_INVAL ? REALM_ERR_NOTFOUND : rc, "tenant_not_found", NULL,
                    NULL);
        return;
    }
    if (!apply_settings(r, body, &t, NULL))
        return;
    if (json_object_size(body) > 0) {
        if ((rc = realm_store_tenant_update(s, &t)) < 0) {
            store_error(r, rc, "tenant_not_found", NULL, NULL);
            return;
        }
        realm__tenants_sync(r->srv);
    }
    reply_tenant(r, 200, name);
}

static void tenant_delete(req *r, json_t *body, const char *name)
{
    (void)body;
    const int rc = realm_store_tenant_remove(r->srv->p.store, name);
    if (rc < 0) {
        store_error(r, rc == REALM_ERR_INVAL ? REALM_ERR_NOTFOUND : rc, "tenant_not_found", NULL,
                    NULL);
        return;
    }
    realm__tenants_sync(r->srv);
    realm__req_respond(r, 204, "", 0);
}

static void key_create(req *r, json_t *body, const char *tenant)
{
    if (json_object_size(body) > 0) {
        const char *k = json_object_iter_key(json_object_iter(body));
        realm__reply_error(r, 400, NULL, k, "unknown_field",
                           "unknown field '%.64s' (a key takes no settings: send {})", k);
        return;
    }
    char key[REALM_KEY_LEN + 1];
    realm_key_info info;
    const int rc = realm_store_key_create(r->srv->p.store, tenant, key, &info);
    if (rc < 0) {
        store_error(r, rc == REALM_ERR_INVAL ? REALM_ERR_NOTFOUND : rc, "tenant_not_found", NULL,
                    NULL);
        return;
    }
    realm__tenants_sync(r->srv);                         /* the first key ends keyless serving */
    realm__reply_header(r, "Cache-Control", "no-store"); /* shown once, kept by nobody */
    realm__reply_json(r, 201,
                      json_pack("{s:s, s:s, s:s, s:I}", "key", key, "prefix", info.prefix, "tenant",
                                info.tenant_name, "created", (json_int_t)info.created));
    memset(key, 0, sizeof key);
}

static void key_delete(req *r, json_t *body, const char *prefix)
{
    (void)body;
    const int rc = realm_store_key_revoke(r->srv->p.store, prefix);
    if (rc < 0) {
        store_error(r, rc, "key_not_found", "ambiguous_key_prefix", NULL);
        return;
    }
    realm__tenants_sync(r->srv);
    realm__req_respond(r, 204, "", 0);
}

/* ---- usage ---------------------------------------------------------------------------- */

/* The usage query's parameters, copied from the connection (libmicrohttpd
 * keeps the query apart from the path). */
typedef struct usage_args {
    char tenant[REALM_TENANT_NAME_MAX + 2], since[64], unknown[64]; /* a name cut stays too long */
    bool has_tenant;
} usage_args;

static enum MHD_Result usage_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    usage_args *a = cls;
    (void)kind;
    if (strcmp(key, "tenant") == 0) {
        snprintf(a->tenant, sizeof a->tenant, "%s", value ? value : "");
        a->has_tenant = true;
    } else if (strcmp(key, "since") == 0) {
        snprintf(a->since, sizeof a->since, "%s", value ? value : "");
    } else if (!a->unknown[0]) {
        snprintf(a->unknown, sizeof a->unknown, "%s", key);
    }
    return MHD_YES;
}

/* since= as unix seconds (0: everything), or -1: unix seconds, a UTC date or
 * time (2026-12-01, 2026-12-01T08:00[:00][Z]), or a time back from now: a
 * number of days (7d) or a duration realm_parse_duration reads (24h, 90m);
 * one reaching back before 1970 means everything. */
static int64_t parse_since(const char *v, int64_t now)
{
    const size_t digits = strspn(v, "0123456789");
    double s;
    if (!v[0])
        return 0;
    if (!v[digits] && digits <= 12)
        return strtoll(v, NULL, 10);
    if (digits == 4 && v[4] == '-') {
        struct tm tm = {0};
        const char *p = strptime(v, "%Y-%m-%d", &tm);
        if (p && *p == 'T')
            p = strptime(p + 1, "%H:%M", &tm);
        if (p && *p == ':')
            p = strptime(p + 1, "%S", &tm);
        if (p && *p == 'Z')
            p++;
        const int64_t t = p && !*p ? (int64_t)timegm(&tm) : -1;
        return t < 0 ? -1 : t;
    }
    if (digits > 0 && digits <= 6 && v[digits] == 'd' && !v[digits + 1])
        s = (double)strtoll(v, NULL, 10) * 86400;
    else if (strspn(v, "0123456789.") == strlen(v) || realm_parse_duration(v, &s) < 0 || !(s >= 0))
        return -1; /* a plain number is unix seconds, never a duration */
    return s < (double)now ? now - (int64_t)s : 0;
}

static void usage(req *r, json_t *body, const char *arg)
{
    (void)body, (void)arg;
    realm_store *s = r->srv->p.store;
    usage_args a = {0};
    pthread_mutex_lock(&r->mu); /* the connection lives while r->conn is set */
    if (r->conn)
        MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, usage_arg, &a);
    pthread_mutex_unlock(&r->mu);
    if (a.unknown[0]) {
        realm__reply_error(r, 400, NULL, a.unknown, "unknown_parameter",
                           "unknown parameter '%s' (usage takes tenant and since)", a.unknown);
        return;
    }
    const int64_t since = parse_since(a.since, (int64_t)time(NULL));
    if (since < 0) {
        realm__reply_error(r, 400, NULL, "since", "invalid_value",
                           "since: '%s' is not unix seconds, a date (2026-12-01, "
                           "2026-12-01T08:00Z) or a time back from now (24h, 7d)",
                           a.since);
        return;
    }
    realm_usage *u = NULL;
    realm_tenant *t = NULL;
    int32_t nu = 0, nt = 0;
    int rc = realm_store_usage_query(s, a.has_tenant ? a.tenant : NULL, since, &u, &nu);
    if (rc < 0) {
        store_error(r, rc == REALM_ERR_INVAL && a.has_tenant ? REALM_ERR_NOTFOUND : rc,
                    "tenant_not_found", NULL, "tenant");
        return;
    }
    if ((rc = realm_store_tenant_list(s, &t, &nt)) < 0) {
        free(u);
        store_error(r, rc, NULL, NULL, NULL);
        return;
    }
    json_t *data = json_array();
    realm_usage sum = {0};
    for (int32_t i = 0; i < nu; i++) {
        const char *name = NULL;
        for (int32_t k = 0; k < nt && !name; k++)
            if (t[k].id == u[i].tenant)
                name = t[k].name;
        char hour[32];
        const time_t h = (time_t)u[i].hour;
        struct tm tm;
        gmtime_r(&h, &tm);
        strftime(hour, sizeof hour, "%Y-%m-%dT%H:%M:%SZ", &tm);
        json_array_append_new(data,
                              json_pack("{s:o, s:I, s:s, s:o, s:s, s:I, s:I, s:I, s:I}", "tenant",
                                        name ? json_string(name) : json_null(), "tenant_id",
                                        (json_int_t)u[i].tenant, "model", u[i].model, "user",
                                        u[i].user[0] ? json_string(u[i].user) : json_null(), "hour",
                                        hour, "requests", (json_int_t)u[i].requests,
                                        "prompt_tokens", (json_int_t)u[i].prompt_tokens,
                                        "cached_tokens", (json_int_t)u[i].cached_tokens,
                                        "completion_tokens", (json_int_t)u[i].completion_tokens));
        sum.requests += u[i].requests;
        sum.prompt_tokens += u[i].prompt_tokens;
        sum.cached_tokens += u[i].cached_tokens;
        sum.completion_tokens += u[i].completion_tokens;
    }
    free(u);
    free(t);
    realm__reply_json(r, 200,
                      json_pack("{s:s, s:o, s:{s:I, s:I, s:I, s:I}}", "object", "list", "data",
                                data, "total", "requests", (json_int_t)sum.requests,
                                "prompt_tokens", (json_int_t)sum.prompt_tokens, "cached_tokens",
                                (json_int_t)sum.cached_tokens, "completion_tokens",
                                (json_int_t)sum.completion_tokens));
}

/* ---- LoRA adapters (vLLM's endpoints, outside /admin/v1/) ---------------------------- */

/*
 * The file a remote admin's lora_path names, into real: a path relative to
 * the server's LoRA directory, or an absolute one inside it, resolved with
 * its symbolic links (so none leads out of it), naming a regular file.
 * false with the reply written.
 */
static bool lora_file(req *r, const char *path, char *real)
{
    const char *dir = r->srv->p.lora_dir;
    if (!dir) {
        realm__reply_error(r, 403, NULL, "lora_path", "lora_dir_off",
                           "loading LoRA adapters at run time is off: start the server with "
                           "--lora-dir DIR (adapters are read from inside it)");
        return false;
    }
    char rdir[PATH_MAX], joined[PATH_MAX * 2];
    if (!realpath(dir, rdir)) {
        realm__reply_error(r, 500, NULL, NULL, NULL, "the LoRA directory %s: %s", dir,
                           strerror(errno));
        return false;
    }
    if (path[0] == '/')
        snprintf(joined, sizeof joined, "%s", path);
    else
        snprintf(joined, sizeof joined, "%s/%s", rdir, path);
    struct stat st;
    const size_t n = strlen(rdir);
    const bool in_dir = realpath(joined, real) && stat(real, &st) == 0 &&
                        strncmp(real, rdir, n) == 0 && (real[n] == '/' || strcmp(rdir, "/") == 0);
    /* a missing file is told apart only where the path itself stays inside, so the
     * answer says nothing about files elsewhere */
    const bool lexically_in =
        !strstr(path, "..") && (path[0] != '/' || (strncmp(path, rdir, n) == 0 && path[n] == '/'));
    if (!in_dir && lexically_in && (!realpath(joined, real) || stat(real, &st) != 0)) {
        realm__reply_error(r, 404, NULL, "lora_path", "file_not_found",
                           "no adapter file '%.300s' in the LoRA directory", path);
        return false;
    }
    if (!in_dir) {
        realm__reply_error(r, 400, NULL, "lora_path", "path_not_allowed",
                           "lora_path '%.300s' is outside the LoRA directory (--lora-dir)", path);
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        realm__reply_error(r, 400, NULL, "lora_path", "invalid_value",
                           "lora_path '%.300s' is not a regular file", path);
        return false;
    }
    return true;
}

void realm__admin_lora(req *r, bool load)
{
    json_error_t jerr;
    json_t *body = json_loadb(r->body ? r->body : "", r->body_len, 0, &jerr);
    if (!json_is_object(body)) {
        realm__reply_error(r, 400, NULL, NULL, "invalid_json", "the body must be a JSON object");
        json_decref(body);
        return;
    }
    realm_registry *reg = r->srv->p.registry;
    const char *name = string_member(r, body, "lora_name");
    if (!name) {
        json_decref(body);
        return;
    }
    if (!load) {
        int32_t in_use = 0;
        if (realm_registry_remove_lora(reg, name, &in_use) < 0)
            realm__reply_error(r, 404, NULL, "lora_name", "adapter_not_found",
                               "no LoRA adapter named '%.200s' is loaded", name);
        else
            realm__reply_json(r, 200,
                              json_pack("{s:s, s:s, s:i}", "message",
                                        in_use ? "Success: LoRA adapter unloaded; its requests "
                                                 "in progress finish, then its memory is freed"
                                               : "Success: LoRA adapter unloaded",
                                        "lora_name", name, "requests_in_progress", in_use));
        json_decref(body);
        return;
    }
    const char *path = string_member(r, body, "lora_path");
    json_t *bv = json_object_get(body, "base");
    const char *base = json_string_value(bv);
    char real[PATH_MAX];
    if (!path || !lora_file(r, path, real)) {
        json_decref(body);
        return;
    }
    if (bv && !json_is_null(bv) && !base) {
        realm__reply_error(r, 400, NULL, "base", "invalid_type",
                           "'base' must be the name of a model");
        json_decref(body);
        return;
    }
    const int rc = realm_registry_add_lora(reg, name, real, base);
    if (rc == 0) {
        realm_lora_status *ls = NULL;
        int32_t n = 0;
        realm_registry_list_lora(reg, &ls, &n);
        json_t *j =
            json_pack("{s:s, s:s}", "message", "Success: LoRA adapter loaded", "lora_name", name);
        for (int32_t i = 0; j && i < n; i++)
            if (!ls[i].unloading && strcmp(ls[i].name, name) == 0) {
                json_object_set_new(j, "id", json_integer(ls[i].id));
                json_object_set_new(j, "parent", json_string(ls[i].base));
                json_object_set_new(j, "rank", json_integer(ls[i].rank));
                json_object_set_new(j, "mem_bytes", json_integer((json_int_t)ls[i].mem_bytes));
            }
        free(ls);
        realm__reply_json(r, 200, j);
    } else if (rc == REALM_ERR_EXISTS) {
        realm__reply_error(r, 409, NULL, "lora_name", "adapter_exists", "%s", realm_last_error());
    } else if (rc == REALM_ERR_NOTFOUND) {
        realm__reply_error(r, 404, NULL, "base", "model_not_found", "%s", realm_last_error());
    } else if (rc == REALM_ERR_OVERLOADED) {
        realm__reply_header(r, "Retry-After", "5");
        realm__reply_error(r, 503, NULL, NULL, "overloaded", "%s", realm_last_error());
    } else if (rc == REALM_ERR_NOMEM) {
        realm__reply_error(r, 500, NULL, NULL, NULL, "%s", realm_last_error());
    } else { /* not an adapter, not of the base, ambiguous, a bad name */
        const bool ambiguous = strstr(realm_last_error(), "fits several models") != NULL;
        realm__reply_error(r, 400, NULL,
                           ambiguous                                            ? "base"
                           : strstr(realm_last_error(), "adapter name") != NULL ? "lora_name"
                                                                                : "lora_path",
                           ambiguous ? "ambiguous_base" : "invalid_adapter", "%s",
                           realm_last_error());
    }
    json_decref(body);
}

/* ---- routing -------------------------------------------------------------------------- */

/* Paths under /admin/v1/; '*' is one path segment, given to the handler. */
static const struct endpoint {
    const char *path, *method;
    void (*fn)(req *r, json_t *body, const char *arg);
} endpoints[] = {
    {"tenants", "GET", tenants_list},       {"tenants", "POST", tenant_create},
    {"tenants/*", "GET", tenant_show},      {"tenants/*", "PATCH", tenant_patch},
    {"tenants/*", "DELETE", tenant_delete}, {"tenants/*/keys", "POST", key_create},
    {"keys/*", "DELETE", key_delete},       {"usage", "GET", usage},
};

/* Does path match pattern? The '*' segment goes to arg (cap bytes). */
static bool path_match(const char *pattern, const char *path, char *arg, size_t cap)
{
    while (*pattern) {
        if (*pattern == '*') {
            const size_t n = strcspn(path, "/");
            if (n == 0 || n >= cap)
                return false;
            memcpy(arg, path, n);
            arg[n] = '\0';
            path += n;
            pattern++;
        } else if (*pattern++ != *path++) {
            return false;
        }
    }
    return *path == '\0';
}

void realm__admin(req *r)
{
    if (!r->srv->p.store) {
        realm__reply_error(r, 404, NULL, NULL, "no_data_directory",
                           "no data directory: this server keeps no tenants to manage");
        return;
    }
    char path[sizeof r->path], arg[sizeof r->path];
    snprintf(path, sizeof path, "%s", r->path + strlen(ADMIN_PREFIX));
    path[strcspn(path, "?")] = '\0';
    const size_t n = strlen(path);
    if (n > 0 && path[n - 1] == '/')
        path[n - 1] = '\0';
    const char *method = strcmp(r->method, "HEAD") == 0 ? "GET" : r->method;
    char allow[64] = "";
    for (size_t i = 0; i < sizeof endpoints / sizeof *endpoints; i++) {
        const struct endpoint *e = &endpoints[i];
        if (!path_match(e->path, path, arg, sizeof arg))
            continue;
        if (strcmp(e->method, method) != 0) {
            snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s",
                     allow[0] ? ", " : "", e->method);
            continue;
        }
        json_t *body = NULL;
        if (strcmp(method, "POST") == 0 || strcmp(method, "PATCH") == 0) {
            json_error_t jerr;
            body = r->body_len ? json_loadb(r->body, r->body_len, 0, &jerr) : json_object();
            if (!json_is_object(body)) {
                if (body)
                    realm__reply_error(r, 400, NULL, NULL, "invalid_json",
                                       "the body must be a JSON object");
                else
                    realm__reply_error(r, 400, NULL, NULL, "invalid_json",
                                       "the body is not valid JSON: %s (line %d, column %d)",
                                       jerr.text, jerr.line, jerr.column);
                json_decref(body);
                return;
            }
        }
        e->fn(r, body, arg);
        json_decref(body);
        return;
    }
    if (allow[0]) {
        realm__reply_header(r, "Allow", allow);
        realm__reply_error(r, 405, NULL, NULL, "method_not_allowed", "%s%s takes %s, not %s",
                           ADMIN_PREFIX, path, allow, r->method);
        return;
    }
    realm__reply_error(r, 404, NULL, NULL, "not_found", "no admin endpoint %s %.200s", r->method,
                       r->path);
}
