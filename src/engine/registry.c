/*
 * The model registry (realm/registry.h): named entries, each loaded on
 * demand (model + engine on the shared thread pool) within the memory
 * budget, unloaded least recently used when room is needed and when their
 * keep-alive runs out (a reaper thread).
 *
 * Locking: one mutex guards every entry's state, counters and the budget.
 * Slow work — mapping a file, making or freeing an engine (which joins its
 * scheduler thread) — runs without it: a loading entry is marked LOADING so
 * nobody else touches its model fields, and an unloaded entry's model and
 * engine are detached under the lock and freed after it is dropped.
 * Entries are never removed, so pointers to them stay valid.
 */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock_internal.h"
#include "core/error_internal.h"
#include "core/log_internal.h"
#include "realm/lora.h"
#include "realm/registry.h"

#define MAX_NAME 128

typedef enum entry_state { E_UNLOADED, E_LOADING, E_LOADED } entry_state;

typedef struct entry {
    char *name;
    char *path;    /* NULL for an external model */
    bool external; /* added loaded by the caller: never freed here */
    bool pulled;   /* found in the models directory */
    bool pinned;
    char *chat_tmpl_name;    /* the operator's template, or NULL */
    char *draft_path;        /* the operator's draft model, or NULL */
    bool cfg_keep, req_keep; /* keep-alive set by the operator / by the last request */
    double cfg_keep_s, req_keep_s;

    entry_state state;
    realm_model *model; /* owned, when loaded from path */
    realm_model *draft; /* owned: the draft model of the engine, loaded with it */
    const realm_model *m;
    realm_engine *engine;
    realm_chat_template tmpl;
    uint64_t mem_bytes;
    int32_t refs;
    double released_at;  /* when refs last went to 0 */
    double expires_at;   /* unload time while idle; INFINITY: never */
    uint64_t load_seq;   /* load attempts so far */
    uint64_t failed_seq; /* the last attempt that failed */
    int load_rc;         /* the last failed attempt's error and message */
    char load_msg[512];
} entry;

struct realm_registry {
    realm_registry_params p;
    char *models_dir;
    uint64_t budget, used;
    realm_threadpool *pool;
    pthread_mutex_t mu;
    pthread_cond_t loaded; /* a load attempt ended */
    pthread_cond_t reap;   /* an expiry changed, or stop */
    pthread_t reaper;
    bool reaper_started, stop;
    entry **entries;
    int32_t n, cap;
    struct tenant_lim {
        uint32_t tenant;
        realm_tenant_limits l;
    } * tenants; /* applied to every engine made */
    int32_t n_tenants;
    struct lora_entry *loras; /* registered adapters, and unloaded ones still in use */
    int64_t next_lora_id;
};

/*
 * A LoRA adapter: loaded once for its base, which it holds a reference on
 * (base_ref) for as long as it is loaded, so the base stays loaded. refs
 * counts the requests using it; an unloaded adapter is retired at once (no
 * new request finds it) and freed when its last request releases it.
 */
typedef struct lora_entry {
    char *name, *path;
    int64_t id; /* llama-server's adapter id: never reused by this registry */
    realm_lora *lora;
    realm_model_ref *base_ref;
    entry *base;
    uint64_t bytes;
    int32_t refs;
    uint64_t requests;
    bool retired;
    struct lora_entry *next;
} lora_entry;

struct realm_model_ref {
    realm_registry *r;
    entry *e;
    lora_entry *lora; /* acquired by an adapter's name or id: the adapter, on e's model */
    bool has_keep;
    double keep_s;
};

/* ---- small helpers ----------------------------------------------------------- */

void realm_registry_params_init(realm_registry_params *p)
{
    memset(p, 0, sizeof *p);
    p->keep_alive_s = 300;
}

uint64_t realm_registry_default_budget(void)
{
    uint64_t avail = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                avail = (uint64_t)kb * 1024;
                break;
            }
        fclose(f);
    }
    if (avail == 0) {
        long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
        avail = pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : (uint64_t)8 << 30;
    }
    return avail / 4 * 3;
}

static char *dup_str(const char *s)
{
    return s ? strdup(s) : NULL;
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        const char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The name a file is registered under: its base name without ".gguf" and,
 * for a split model's part, without "-0000i-of-0000N". */
static void name_of_path(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(out, cap, "%s", base);
    size_t n = strlen(out);
    if (n > 5 && strcmp(out + n - 5, ".gguf") == 0)
        out[n -= 5] = '\0';
    unsigned a, b;
    char tail[8];
    if (n > 15 && sscanf(out + n - 15, "-%5u-of-%5u%7s", &a, &b, tail) == 2)
        out[n - 15] = '\0';
}

static entry *find_locked(realm_registry *r, const char *name)
{
    for (int32_t i = 0; i < r->n; i++)
        if (strcmp(r->entries[i]->name, name) == 0)
            return r->entries[i];
    return NULL;
}

static lora_entry *find_lora_locked(realm_registry *r, const char *name)
{
    for (lora_entry *l = r->loras; l; l = l->next)
        if (!l->retired && strcmp(l->name, name) == 0)
            return l;
    return NULL;
}

static entry *find_path_locked(realm_registry *r, const char *path)
{
    for (int32_t i = 0; i < r->n; i++)
        if (r->entries[i]->path && strcmp(r->entries[i]->path, path) == 0)
            return r->entries[i];
    return NULL;
}

static void entry_free(entry *e)
{
    if (!e)
        return;
    free(e->name);
    free(e->path);
    free(e->chat_tmpl_name);
    free(e->draft_path);
    free(e);
}

/* A new entry appended to the list (the lock held). */
static int append_locked(realm_registry *r, entry *e)
{
    if (r->n == r->cap) {
        int32_t cap = r->cap ? 2 * r->cap : 16;
        entry **v = realloc(r->entries, (size_t)cap * sizeof *v);
        if (!v)
            return realm__error(REALM_ERR_NOMEM, "out of memory");
        r->entries = v;
        r->cap = cap;
    }
    r->entries[r->n++] = e;
    return REALM_OK;
}

/* The models directory's entry for name: NAME.gguf or a split model's first
 * part; the path in path[0..cap) or "" when there is none. */
static void pulled_path(const realm_registry *r, const char *name, char *path, size_t cap)
{
    path[0] = '\0';
    if (!name_ok(name))
        return;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s.gguf", r->models_dir, name);
    if (is_file(p)) {
        snprintf(path, cap, "%s", p);
        return;
    }
    snprintf(p, sizeof p, "%s/%s-00001-of-*.gguf", r->models_dir, name);
    glob_t g;
    if (glob(p, 0, NULL, &g) == 0 && g.gl_pathc > 0)
        snprintf(path, cap, "%s", g.gl_pathv[0]);
    globfree(&g);
}

/* ---- unloading ------------------------------------------------------------------ */

typedef struct detached {
    realm_model *model;
    realm_engine *engine;
    realm_model *draft;
} detached;

/* Take a loaded, idle entry's model and engine out (the lock held); the
 * caller frees them with free_detached once the lock is dropped. */
static detached detach_locked(realm_registry *r, entry *e)
{
    detached d = {e->model, e->engine, e->draft};
    r->used -= e->mem_bytes;
    e->mem_bytes = 0;
    e->model = NULL;
    e->draft = NULL;
    e->m = NULL;
    e->engine = NULL;
    e->state = E_UNLOADED;
    e->expires_at = INFINITY;
    return d;
}

static void free_detached(detached d)
{
    realm_engine_free(d.engine);
    realm_model_free(d.model);
    realm_model_free(d.draft); /* after the engine drafting with it */
}

/* The keep-alive an idle entry gets. */
static double keep_alive_of(const realm_registry *r, const entry *e)
{
    return e->req_keep ? e->req_keep_s : e->cfg_keep ? e->cfg_keep_s : r->p.keep_alive_s;
}

static bool evictable(const entry *e)
{
    return e->state == E_LOADED && e->refs == 0 && !e->pinned && !e->external;
}

/* Unload idle models whose keep-alive ran out; sleep until the next one. */
static void *reaper_main(void *arg)
{
    realm_registry *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        const double now = realm__now();
        double next = INFINITY;
        entry *due = NULL;
        for (int32_t i = 0; i < r->n; i++) {
            entry *e = r->entries[i];
            if (!evictable(e))
                continue;
            if (e->expires_at <= now && !due)
                due = e;
            else if (e->expires_at < next)
                next = e->expires_at;
        }
        if (due) {
            realm__log(REALM_LOG_INFO, "model '%s' unloaded: idle for its keep-alive of %.0f s",
                       due->name, keep_alive_of(r, due));
            detached d = detach_locked(r, due);
            pthread_mutex_unlock(&r->mu);
            free_detached(d);
            pthread_mutex_lock(&r->mu);
            continue;
        }
        if (isinf(next)) {
            pthread_cond_wait(&r->reap, &r->mu);
        } else {
            double wake = next - now + 0.001;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            double s = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + wake;
            ts.tv_sec = (time_t)s;
            ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
            pthread_cond_timedwait(&r->reap, &r->mu, &ts);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- making and freeing ----------------------------------------------------------- */

static char *default_models_dir(void)
{
    const char *env = getenv("REALM_MODELS_DIR");
    char buf[PATH_MAX];
    if (env && *env)
        snprintf(buf, sizeof buf, "%s", env);
    else if ((env = getenv("XDG_CACHE_HOME")) && *env)
        snprintf(buf, sizeof buf, "%s/realm/models", env);
    else if ((env = getenv("HOME")) && *env)
        snprintf(buf, sizeof buf, "%s/.cache/realm/models", env);
    else
        snprintf(buf, sizeof buf, "/tmp/realm-models-%d", (int)geteuid());
    return strdup(buf);
}

int realm_registry_new(const realm_registry_params *p, realm_registry **out)
{
    *out = NULL;
    realm_registry *r = calloc(1, sizeof *r);
    if (!r)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    if (p)
        r->p = *p;
    else
        realm_registry_params_init(&r->p);
    r->models_dir = r->p.models_dir ? strdup(r->p.models_dir) : default_models_dir();
    r->p.models_dir = NULL;
    r->budget = r->p.mem_budget ? r->p.mem_budget : realm_registry_default_budget();
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->reap, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&r->loaded, NULL);
    int rc = r->models_dir ? realm_threadpool_new(r->p.n_threads, &r->pool)
                           : realm__error(REALM_ERR_NOMEM, "out of memory");
    if (rc == 0) {
        int err = pthread_create(&r->reaper, NULL, reaper_main, r);
        if (err != 0)
            rc = realm__error(REALM_ERR_NOMEM, "cannot start the registry's thread: errno %d", err);
        else
            r->reaper_started = true;
    }
    if (rc < 0) {
        realm_registry_free(r);
        return rc;
    }
    *out = r;
    return REALM_OK;
}

static void lora_entry_free(lora_entry *l)
{
    if (!l)
        return;
    realm_lora_free(l->lora);
    realm_registry_release(l->base_ref);
    free(l->name);
    free(l->path);
    free(l);
}

void realm_registry_free(realm_registry *r)
{
    if (!r)
        return;
    while (r->loras) { /* first: they hold references on their bases */
        lora_entry *l = r->loras;
        REALM_ASSERT(l->refs == 0);
        r->loras = l->next;
        r->used -= l->bytes;
        lora_entry_free(l);
    }
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->reap);
    pthread_mutex_unlock(&r->mu);
    if (r->reaper_started)
        pthread_join(r->reaper, NULL);
    for (int32_t i = 0; i < r->n; i++) {
        entry *e = r->entries[i];
        REALM_ASSERT(e->refs == 0);
        if (e->state == E_LOADED && !e->external)
            free_detached(detach_locked(r, e));
        entry_free(e);
    }
    free(r->entries);
    free(r->tenants);
    realm_threadpool_free(r->pool);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->loaded);
    pthread_cond_destroy(&r->reap);
    free(r->models_dir);
    free(r);
}

/* ---- registering -------------------------------------------------------------- */

static int new_entry(const char *name, const char *path, const realm_model_config *c, entry **out)
{
    entry *e = calloc(1, sizeof *e);
    if (!e)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    e->name = dup_str(name);
    e->path = dup_str(path);
    e->chat_tmpl_name = c ? dup_str(c->chat_template) : NULL;
    e->draft_path = c ? dup_str(c->draft) : NULL;
    e->pinned = c && c->pinned;
    e->cfg_keep = c && c->has_keep_alive;
    e->cfg_keep_s = c ? c->keep_alive_s : 0;
    e->expires_at = INFINITY;
    if (!e->name || (path && !e->path) || (c && c->chat_template && !e->chat_tmpl_name) ||
        (c && c->draft && !e->draft_path)) {
        entry_free(e);
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    }
    *out = e;
    return REALM_OK;
}

int realm_registry_add(realm_registry *r, const char *name, const char *path,
                       const realm_model_config *c)
{
    if (!r || !path)
        return realm__error(REALM_ERR_INVAL, "registry: a model needs a path");
    char real[PATH_MAX], derived[MAX_NAME + 64];
    if (!is_file(path) || !realpath(path, real))
        return realm__error(REALM_ERR_NOTFOUND, "model file %s: %s", path,
                            errno ? strerror(errno) : "not a regular file");
    if (!name) {
        name_of_path(real, derived, sizeof derived);
        name = derived;
    }
    if (!name_ok(name))
        return realm__error(REALM_ERR_INVAL,
                            "model name '%.140s' must be 1..%d characters of A-Z a-z 0-9 . _ : -",
                            name, MAX_NAME);
    if (c && c->chat_template) {
        realm_chat_template t;
        if (realm_chat_template_from_name(c->chat_template, &t) < 0)
            return realm__error(REALM_ERR_NOTFOUND, "model '%s': %s", name, realm_last_error());
    }
    entry *e;
    int rc = new_entry(name, real, c, &e);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&r->mu);
    if (find_locked(r, name) || find_lora_locked(r, name))
        rc = realm__error(REALM_ERR_EXISTS, "a model named '%s' is already registered", name);
    else
        rc = append_locked(r, e);
    pthread_mutex_unlock(&r->mu);
    if (rc < 0)
        entry_free(e);
    return rc;
}

/*
 * The chat template of a model: the operator's, else the one its
 * tokenizer.chat_template is recognised as; a model without one gets chatml,
 * as llama-server does, with one warning. A template present but not
 * recognised is an error naming the known ones.
 */
static int resolve_template(const char *name, const realm_model *m, const char *override,
                            realm_chat_template *out)
{
    if (override != NULL && *override != '\0')
        return realm_chat_template_from_name(override, out);
    const realm_gguf *g = realm_model_gguf(m);
    realm_gguf_str s;
    int rc = realm_gguf_get_str(g, "tokenizer.chat_template", &s);
    if (rc == REALM_ERR_NOTFOUND || (rc == REALM_OK && s.len == 0)) {
        realm__log(REALM_LOG_WARN,
                   "model '%s' has no chat template (tokenizer.chat_template); chat requests "
                   "use chatml (name another with --chat-template %s=NAME)",
                   name, name);
        *out = REALM_CHAT_TEMPLATE_CHATML;
        return REALM_OK;
    }
    rc = realm_chat_template_for_model(g, NULL, out);
    if (rc < 0) {
        char detail[600];
        snprintf(detail, sizeof detail, "%s", realm_last_error());
        return realm__error(rc, "model '%s': %s (or name one with --chat-template %s=NAME)", name,
                            detail, name);
    }
    return REALM_OK;
}

int realm_registry_add_loaded(realm_registry *r, const char *name, const realm_model *m,
                              realm_engine *eng, const realm_model_config *c)
{
    if (!r || !name || !*name || !m || !eng)
        return realm__error(REALM_ERR_INVAL, "registry: a model name, model and engine required");
    realm_chat_template t;
    int rc = resolve_template(name, m, c ? c->chat_template : NULL, &t);
    if (rc < 0)
        return rc;
    entry *e;
    if ((rc = new_entry(name, NULL, c, &e)) < 0)
        return rc;
    e->external = true;
    e->state = E_LOADED;
    e->m = m;
    e->engine = eng;
    e->tmpl = t;
    e->mem_bytes = realm_model_weight_bytes(m);
    pthread_mutex_lock(&r->mu);
    if (find_locked(r, name) || find_lora_locked(r, name))
        rc = realm__error(REALM_ERR_EXISTS, "sandbox: model '%s' already registered", name);
    else if ((rc = append_locked(r, e)) == 0)
        r->used += e->mem_bytes;
    pthread_mutex_unlock(&r->mu);
    if (rc < 0)
        entry_free(e);
    return rc;
}

/* ---- loading ---------------------------------------------------------------------- */

/* The engine parameters for model m: the registry's, with the KV pool sized
 * as realm/registry.h says. */
static realm_engine_params engine_params(const realm_registry *r, const realm_model *m)
{
    realm_engine_params p = r->p.engine;
    p.pool = r->pool;
    p.tokenizer = NULL;
    p.n_threads = realm_threadpool_size(r->pool);
    const int32_t train = realm_model_hparams(m)->n_ctx_train;
    if (p.n_ctx_seq <= 0)
        p.n_ctx_seq = train > 0 ? train : 4096;
    if (p.max_seqs <= 0)
        p.max_seqs = 16;
    if (p.n_batch > 0 && p.max_seqs > p.n_batch)
        p.max_seqs = p.n_batch;
    if (p.n_ctx <= 0) {
        const int64_t want = (int64_t)p.n_ctx_seq * p.max_seqs;
        p.n_ctx = want > INT32_MAX / 2 ? INT32_MAX / 2 : (int32_t)want;
        const uint64_t weights = realm_model_weight_bytes(m);
        while (p.n_ctx > p.n_ctx_seq && weights + realm_engine_bytes(m, &p) > r->budget) {
            int32_t half = p.n_ctx / 2;
            p.n_ctx = half > p.n_ctx_seq ? half : p.n_ctx_seq;
        }
    }
    if (p.n_ctx_seq > p.n_ctx)
        p.n_ctx_seq = p.n_ctx;
    return p;
}

static void mib(uint64_t b, char *buf, size_t cap)
{
    snprintf(buf, cap, "%.1f MiB", (double)b / (1024.0 * 1024.0));
}

/*
 * Load entry e (marked LOADING by the caller, lock not held): map the file,
 * resolve its chat template, size its engine, make room by unloading least
 * recently used idle models, then make the engine.
 */
static int load_entry(realm_registry *r, entry *e)
{
    realm_model *m = NULL;
    int rc = realm_model_load(e->path, &r->p.model, &m);
    if (rc < 0)
        return rc;
    realm_chat_template t;
    if ((rc = resolve_template(e->name, m, e->chat_tmpl_name, &t)) < 0) {
        realm_model_free(m);
        return rc;
    }
    realm_engine_params ep = engine_params(r, m);
    realm_model *dm = NULL;
    if (e->draft_path) { /* the draft model, loaded and freed with the model */
        if ((rc = realm_model_load(e->draft_path, &r->p.model, &dm)) < 0) {
            realm_model_free(m);
            return realm__error(rc, "model '%s': its draft model %s: %s", e->name, e->draft_path,
                                realm_last_error());
        }
        ep.draft = dm;
        ep.spec_mode = REALM_SPEC_DRAFT;
    }
    /* a KV cache type the model cannot take (a Q8_0 cache needs head sizes of whole blocks) */
    rc = realm_kv_params_check(m, &(realm_kv_params){.n_ctx = ep.n_ctx,
                                                     .block_size = ep.block_size,
                                                     .type_k = ep.type_k,
                                                     .type_v = ep.type_v});
    if (rc < 0) {
        realm_model_free(m);
        realm_model_free(dm);
        return realm__error(rc, "model '%s': %s", e->name, realm_last_error());
    }
    const uint64_t eng_bytes = realm_engine_bytes(m, &ep);
    const uint64_t need =
        realm_model_weight_bytes(m) + (dm ? realm_model_weight_bytes(dm) : 0) + eng_bytes;
    char s_need[32], s_budget[32], s_busy[32];
    mib(need, s_need, sizeof s_need);
    mib(r->budget, s_budget, sizeof s_budget);
    if (eng_bytes == 0 || need > r->budget) {
        realm_model_free(m);
        realm_model_free(dm);
        if (eng_bytes == 0)
            return realm__error(REALM_ERR_INVAL, "model '%s': %s", e->name, realm_last_error());
        return realm__error(REALM_ERR_OVERLOADED,
                            "model '%s' needs %s (weights and a KV pool of %d tokens), more than "
                            "the memory budget of %s",
                            e->name, s_need, ep.n_ctx, s_budget);
    }

    /* Make room: least recently used idle models go first. */
    detached gone[64];
    int n_gone = 0;
    pthread_mutex_lock(&r->mu);
    while (r->used + need > r->budget && n_gone < 64) {
        entry *lru = NULL;
        for (int32_t i = 0; i < r->n; i++)
            if (evictable(r->entries[i]) && (!lru || r->entries[i]->released_at < lru->released_at))
                lru = r->entries[i];
        if (!lru)
            break;
        realm__log(REALM_LOG_INFO, "model '%s' unloaded to make room for '%s'", lru->name, e->name);
        gone[n_gone++] = detach_locked(r, lru);
    }
    const bool fits = r->used + need <= r->budget;
    if (fits)
        r->used += need; /* reserved before the engine exists */
    mib(r->used, s_busy, sizeof s_busy);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < n_gone; i++)
        free_detached(gone[i]);
    if (!fits) {
        realm_model_free(m);
        realm_model_free(dm);
        return realm__error(REALM_ERR_OVERLOADED,
                            "model '%s' needs %s; %s of the %s budget is held by models in use "
                            "(try later, or unload one)",
                            e->name, s_need, s_busy, s_budget);
    }
    realm_engine *eng = NULL;
    if ((rc = realm_engine_new(m, &ep, &eng)) == 0) {
        pthread_mutex_lock(&r->mu);
        for (int32_t i = 0; i < r->n_tenants; i++)
            realm_engine_set_tenant(eng, r->tenants[i].tenant, &r->tenants[i].l);
        pthread_mutex_unlock(&r->mu);
    }
    if (rc < 0) {
        pthread_mutex_lock(&r->mu);
        r->used -= need;
        pthread_mutex_unlock(&r->mu);
        realm_model_free(m);
        realm_model_free(dm);
        return rc;
    }
    e->model = m;
    e->draft = dm;
    e->m = m;
    e->engine = eng;
    e->tmpl = t;
    e->mem_bytes = need;
    return REALM_OK;
}

/*
 * The entry for key (the lock held): an existing file's, a registered
 * name's, or a pulled model's; entries for files and pulled models are
 * made on first use. NULL with *rc set when there is none.
 */
static entry *resolve_locked(realm_registry *r, const char *key, bool paths, int *rc)
{
    char real[PATH_MAX], name[MAX_NAME + 64];
    if (paths && is_file(key) && realpath(key, real)) {
        entry *e = find_path_locked(r, real);
        if (e)
            return e;
        name_of_path(real, name, sizeof name);
        const char *use = name_ok(name) && !find_locked(r, name) ? name : real;
        if ((*rc = new_entry(use, real, NULL, &e)) < 0)
            return NULL;
        if ((*rc = append_locked(r, e)) < 0) {
            entry_free(e);
            return NULL;
        }
        return e;
    }
    entry *e = find_locked(r, key);
    if (e)
        return e;
    pulled_path(r, key, real, sizeof real);
    if (real[0]) {
        if ((*rc = new_entry(key, real, NULL, &e)) < 0)
            return NULL;
        e->pulled = true;
        if ((*rc = append_locked(r, e)) < 0) {
            entry_free(e);
            return NULL;
        }
        return e;
    }
    char known[512] = "";
    size_t at = 0;
    for (int32_t i = 0; i < r->n && at < sizeof known - 140; i++)
        at += (size_t)snprintf(known + at, sizeof known - at, "%s%s", at ? ", " : "",
                               r->entries[i]->name);
    *rc = realm__error(REALM_ERR_NOTFOUND,
                       "no model named '%.128s' (registered: %s; pulled "
                       "models are looked up in %s)",
                       key, at ? known : "none", r->models_dir);
    return NULL;
}

int realm_registry_acquire(realm_registry *r, const char *name_or_path, size_t len,
                           const realm_acquire_opts *o, realm_model_ref **out)
{
    *out = NULL;
    if (!r || (!name_or_path && len))
        return realm__error(REALM_ERR_INVAL, "registry: bad arguments");
    if (len == 0 || len >= PATH_MAX || memchr(name_or_path, '\0', len))
        return realm__error(REALM_ERR_NOTFOUND, "no model named '%.*s'",
                            (int)(len < 128 ? len : 128), name_or_path ? name_or_path : "");
    char key[PATH_MAX];
    memcpy(key, name_or_path, len);
    key[len] = '\0';
    realm_model_ref *ref = calloc(1, sizeof *ref);
    if (!ref)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    int rc = REALM_OK;
    pthread_mutex_lock(&r->mu);
    lora_entry *l = is_file(key) && !(o && o->names_only) ? NULL : find_lora_locked(r, key);
    if (l) { /* an adapter: a reference to its base (held loaded by the adapter) with it */
        l->refs++;
        l->requests++;
        l->base->refs++;
        l->base->expires_at = INFINITY;
        pthread_mutex_unlock(&r->mu);
        *ref = (realm_model_ref){.r = r,
                                 .e = l->base,
                                 .lora = l,
                                 .has_keep = o && o->has_keep_alive,
                                 .keep_s = o ? o->keep_alive_s : 0};
        *out = ref;
        return REALM_OK;
    }
    entry *e = resolve_locked(r, key, !(o && o->names_only), &rc);
    while (e) {
        if (e->state == E_LOADED) {
            e->refs++;
            e->expires_at = INFINITY;
            break;
        }
        if (e->state == E_LOADING) {
            const uint64_t seq = e->load_seq;
            while (e->state == E_LOADING && e->load_seq == seq)
                pthread_cond_wait(&r->loaded, &r->mu);
            if (e->state == E_UNLOADED && e->failed_seq == seq) { /* that load failed */
                rc = realm__error(e->load_rc, "%s", e->load_msg);
                e = NULL;
            }
            continue;
        }
        /* unloaded: this caller loads it, the others wait */
        e->state = E_LOADING;
        e->load_seq++;
        pthread_mutex_unlock(&r->mu);
        rc = load_entry(r, e);
        pthread_mutex_lock(&r->mu);
        if (rc < 0) {
            e->state = E_UNLOADED;
            e->failed_seq = e->load_seq;
            e->load_rc = rc;
            snprintf(e->load_msg, sizeof e->load_msg, "%s", realm_last_error());
            pthread_cond_broadcast(&r->loaded);
            e = NULL;
            break;
        }
        e->state = E_LOADED;
        e->refs++;
        e->expires_at = INFINITY;
        pthread_cond_broadcast(&r->loaded);
        break;
    }
    pthread_mutex_unlock(&r->mu);
    if (!e) {
        free(ref);
        return rc < 0 ? rc : realm__error(REALM_ERR_NOTFOUND, "no model '%s'", key);
    }
    ref->r = r;
    ref->e = e;
    if (o && o->has_keep_alive) {
        ref->has_keep = true;
        ref->keep_s = o->keep_alive_s;
    }
    *out = ref;
    return REALM_OK;
}

void realm_registry_release(realm_model_ref *ref)
{
    if (!ref)
        return;
    realm_registry *r = ref->r;
    entry *e = ref->e;
    detached d = {0};
    lora_entry *dead = NULL;
    pthread_mutex_lock(&r->mu);
    if (ref->lora && --ref->lora->refs == 0 && ref->lora->retired) {
        /* the last request of an unloaded adapter: free it now */
        dead = ref->lora;
        lora_entry **p = &r->loras;
        while (*p != dead)
            p = &(*p)->next;
        *p = dead->next;
        r->used -= dead->bytes;
    }
    if (ref->has_keep) {
        e->req_keep = true;
        e->req_keep_s = ref->keep_s;
    }
    if (--e->refs == 0 && !e->external) {
        const double now = realm__now(), ka = keep_alive_of(r, e);
        e->released_at = now;
        e->expires_at = e->pinned || ka < 0 ? INFINITY : now + ka;
        if (ka == 0 && !e->pinned)
            d = detach_locked(r, e);
        else
            pthread_cond_broadcast(&r->reap);
    } else if (e->refs == 0) {
        e->released_at = realm__now();
    }
    pthread_mutex_unlock(&r->mu);
    free_detached(d);
    free(ref);
    if (dead) {
        realm__log(REALM_LOG_INFO, "LoRA adapter '%s' freed: its last request ended", dead->name);
        lora_entry_free(dead);
    }
}

const char *realm_model_ref_name(const realm_model_ref *ref)
{
    return ref->lora ? ref->lora->name : ref->e->name;
}

const char *realm_model_ref_base_name(const realm_model_ref *ref)
{
    return ref->e->name;
}

const realm_lora *realm_model_ref_lora(const realm_model_ref *ref)
{
    return ref->lora ? ref->lora->lora : NULL;
}

const realm_model *realm_model_ref_model(const realm_model_ref *ref)
{
    return ref->e->m;
}

realm_engine *realm_model_ref_engine(const realm_model_ref *ref)
{
    return ref->e->engine;
}

realm_chat_template realm_model_ref_chat_template(const realm_model_ref *ref)
{
    return ref->e->tmpl;
}

void realm_model_ref_set_keep_alive(realm_model_ref *ref, double keep_alive_s)
{
    ref->has_keep = true;
    ref->keep_s = keep_alive_s;
}

/* ---- operator's controls and listing ------------------------------------------------ */

int realm_registry_set_tenant(realm_registry *r, uint32_t tenant, const realm_tenant_limits *l)
{
    int rc = REALM_OK;
    pthread_mutex_lock(&r->mu);
    int32_t i = 0;
    while (i < r->n_tenants && r->tenants[i].tenant != tenant)
        i++;
    if (i == r->n_tenants) {
        struct tenant_lim *v = realloc(r->tenants, (size_t)(r->n_tenants + 1) * sizeof *v);
        if (!v)
            rc = realm__error(REALM_ERR_NOMEM, "out of memory");
        else
            r->tenants = v, r->n_tenants++;
    }
    if (rc == 0) {
        r->tenants[i] = (struct tenant_lim){tenant, *l};
        for (int32_t k = 0; k < r->n && rc == 0; k++)
            if (r->entries[k]->state == E_LOADED && r->entries[k]->engine)
                rc = realm_engine_set_tenant(r->entries[k]->engine, tenant, l);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int realm_registry_pin(realm_registry *r, const char *name, bool pinned)
{
    pthread_mutex_lock(&r->mu);
    entry *e = find_locked(r, name);
    if (e) {
        e->pinned = pinned;
        if (!pinned && e->state == E_LOADED && e->refs == 0) {
            const double ka = keep_alive_of(r, e);
            e->expires_at = ka < 0 ? INFINITY : realm__now() + ka;
            pthread_cond_broadcast(&r->reap);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return e ? REALM_OK : realm__error(REALM_ERR_NOTFOUND, "no model named '%s'", name);
}

int realm_registry_unload(realm_registry *r, const char *name)
{
    int rc = REALM_OK;
    detached d = {0};
    pthread_mutex_lock(&r->mu);
    entry *e = find_locked(r, name);
    if (!e)
        rc = realm__error(REALM_ERR_NOTFOUND, "no model named '%s'", name);
    else if (e->external)
        rc = realm__error(REALM_ERR_INVAL, "model '%s' belongs to its caller", name);
    else if (e->state == E_LOADING || e->refs > 0) {
        char on[300] = "";
        size_t at = 0;
        for (lora_entry *l = r->loras; l && at < sizeof on - 140; l = l->next)
            if (l->base == e && !l->retired)
                at += (size_t)snprintf(on + at, sizeof on - at, "%s'%s'", at ? ", " : "", l->name);
        if (at)
            rc =
                realm__error(REALM_ERR_EXISTS,
                             "model '%s' is the base of the LoRA adapter%s %s: unload %s first",
                             name, strchr(on, ',') ? "s" : "", on, strchr(on, ',') ? "them" : "it");
        else
            rc = realm__error(REALM_ERR_EXISTS, "model '%s' is in use", name);
    } else if (e->state == E_LOADED) {
        e->pinned = false;
        d = detach_locked(r, e);
    }
    pthread_mutex_unlock(&r->mu);
    free_detached(d);
    return rc;
}

static uint64_t file_bytes(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static int cmp_status(const void *a, const void *b)
{
    return strcmp(((const realm_model_status *)a)->name, ((const realm_model_status *)b)->name);
}

int realm_registry_list(realm_registry *r, realm_model_status **out, int32_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    /* pulled models not registered yet: NAME.gguf in the directory */
    char **names = NULL;
    int32_t n_names = 0;
    DIR *d = opendir(r->models_dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        char nm[MAX_NAME + 64];
        if (l <= 5 || strcmp(de->d_name + l - 5, ".gguf") != 0)
            continue;
        name_of_path(de->d_name, nm, sizeof nm);
        bool dup = !name_ok(nm);
        for (int32_t i = 0; i < n_names && !dup; i++)
            dup = names[i] && strcmp(names[i], nm) == 0;
        if (dup)
            continue;
        char **v = realloc(names, (size_t)(n_names + 1) * sizeof *v);
        if (!v)
            break;
        names = v;
        names[n_names++] = strdup(nm);
    }
    if (d)
        closedir(d);
    pthread_mutex_lock(&r->mu);
    realm_model_status *s = calloc((size_t)(r->n + n_names) + 1, sizeof *s);
    int32_t n = 0;
    const double now = realm__now();
    for (int32_t i = 0; s && i < r->n; i++) {
        const entry *e = r->entries[i];
        realm_model_status *t = &s[n++];
        snprintf(t->name, sizeof t->name, "%s", e->name);
        snprintf(t->path, sizeof t->path, "%s", e->path ? e->path : "");
        t->loaded = e->state == E_LOADED;
        t->loading = e->state == E_LOADING;
        t->pinned = e->pinned;
        t->external = e->external;
        t->pulled = e->pulled;
        t->refs = e->refs;
        t->file_bytes = file_bytes(e->path);
        t->mem_bytes = e->mem_bytes;
        const bool idle = t->loaded && e->refs == 0;
        t->idle_s = idle ? now - e->released_at : 0;
        t->expires_in_s = idle && !isinf(e->expires_at) ? e->expires_at - now : -1;
    }
    for (int32_t i = 0; s && i < n_names; i++) {
        bool known = false;
        for (int32_t k = 0; k < r->n && !known; k++)
            known = strcmp(r->entries[k]->name, names[i] ? names[i] : "") == 0;
        if (known || !names[i])
            continue;
        realm_model_status *t = &s[n++];
        snprintf(t->name, sizeof t->name, "%s", names[i]);
        pulled_path(r, names[i], t->path, sizeof t->path);
        t->pulled = true;
        t->file_bytes = file_bytes(t->path);
        t->expires_in_s = -1;
    }
    pthread_mutex_unlock(&r->mu);
    for (int32_t i = 0; i < n_names; i++)
        free(names[i]);
    free(names);
    if (!s)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    qsort(s, (size_t)n, sizeof *s, cmp_status);
    *out = s;
    *n_out = n;
    return REALM_OK;
}

void realm_registry_foreach_loaded(realm_registry *r,
                                   void (*fn)(void *ud, const char *name,
                                              const realm_engine_stats *st, uint64_t mem_bytes),
                                   void *ud)
{
    pthread_mutex_lock(&r->mu);
    for (int32_t i = 0; i < r->n; i++) {
        const entry *e = r->entries[i];
        if (e->state != E_LOADED || !e->engine)
            continue;
        realm_engine_stats st;
        realm_engine_get_stats(e->engine, &st);
        fn(ud, e->name, &st, e->mem_bytes);
    }
    pthread_mutex_unlock(&r->mu);
}

uint64_t realm_registry_budget(const realm_registry *r)
{
    return r->budget;
}

uint64_t realm_registry_used(realm_registry *r)
{
    pthread_mutex_lock(&r->mu);
    uint64_t u = r->used;
    pthread_mutex_unlock(&r->mu);
    return u;
}

const char *realm_registry_models_dir(const realm_registry *r)
{
    return r->models_dir;
}

int realm_parse_duration(const char *text, double *seconds)
{
    if (!text || !*text)
        return realm__error(REALM_ERR_INVAL, "empty duration");
    const char *p = text;
    char *end;
    double total = 0;
    bool neg = *p == '-';
    if (neg)
        p++;
    double v = strtod(p, &end);
    if (end == p || v < 0)
        goto bad;
    if (*end == '\0') { /* a plain number of seconds */
        *seconds = neg ? -v : v;
        return REALM_OK;
    }
    for (;;) { /* NUMBER UNIT [NUMBER UNIT ...] */
        double unit;
        if (strncmp(end, "ms", 2) == 0)
            unit = 1e-3, end += 2;
        else if (*end == 's')
            unit = 1, end++;
        else if (*end == 'm')
            unit = 60, end++;
        else if (*end == 'h')
            unit = 3600, end++;
        else
            goto bad;
        total += v * unit;
        if (*end == '\0')
            break;
        p = end;
        v = strtod(p, &end);
        if (end == p || v < 0 || *p == '-' || *p == '+')
            goto bad;
    }
    *seconds = neg ? -total : total;
    return REALM_OK;
bad:
    return realm__error(REALM_ERR_INVAL,
                        "duration '%.40s' must be like 5m, 30s, 1h30m, 250ms, a number of "
                        "seconds, 0 or -1",
                        text);
}

int realm_parse_size(const char *text, uint64_t *bytes)
{
    char *end;
    if (!text || !*text || *text == '-')
        goto bad;
    double v = strtod(text, &end);
    if (end == text || !(v >= 0))
        goto bad;
    double unit = 1;
    switch (*end) {
    case 'k':
    case 'K':
        unit = 1024.0;
        break;
    case 'm':
    case 'M':
        unit = 1024.0 * 1024;
        break;
    case 'g':
    case 'G':
        unit = 1024.0 * 1024 * 1024;
        break;
    case 't':
    case 'T':
        unit = 1024.0 * 1024 * 1024 * 1024;
        break;
    case '\0':
        break;
    case 'b':
    case 'B':
        if (end[1] == '\0')
            break;
        goto bad;
    default:
        goto bad;
    }
    if (unit > 1) {
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
    } else if (*end) {
        end++;
    }
    if (*end != '\0' || v * unit > 4.6e18)
        goto bad;
    *bytes = (uint64_t)(v * unit);
    return REALM_OK;
bad:
    return realm__error(REALM_ERR_INVAL,
                        "size '%.40s' must be a number of bytes with an optional unit "
                        "(K, M, G, T: 512M, 6G, 1.5GiB)",
                        text ? text : "");
}

/* ---- LoRA adapters ------------------------------------------------------------------- */

/*
 * The registered model adapter path fits (architecture and shapes, as
 * realm_lora_load checks them), into base: each candidate is checked on its
 * loaded model, or on its file mapped for the check alone (no engine, no
 * KV pool). Exactly one must fit.
 */
static int find_base(realm_registry *r, const char *name, const char *path, char *base, size_t cap)
{
    pthread_mutex_lock(&r->mu);
    const int32_t n = r->n;
    char(*names)[MAX_NAME + 1] = calloc((size_t)n + 1, sizeof *names);
    for (int32_t i = 0; names && i < n; i++)
        snprintf(names[i], sizeof names[i], "%s", r->entries[i]->name);
    pthread_mutex_unlock(&r->mu);
    if (!names)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    char fits[400] = "", why[900] = "";
    size_t at_fits = 0, at_why = 0;
    int n_fit = 0, first_rc = REALM_ERR_NOTFOUND;
    for (int32_t i = 0; i < n; i++) {
        char mpath[PATH_MAX] = "";
        realm_model_ref *ref = NULL;
        pthread_mutex_lock(&r->mu);
        entry *e = find_locked(r, names[i]);
        const bool loaded = e && e->state == E_LOADED;
        if (e && !loaded && e->path)
            snprintf(mpath, sizeof mpath, "%s", e->path);
        pthread_mutex_unlock(&r->mu);
        realm_model *tmp = NULL;
        const realm_model *m = NULL;
        int rc = REALM_ERR_NOTFOUND;
        if (loaded &&
            (rc = realm_registry_acquire(r, names[i], strlen(names[i]),
                                         &(realm_acquire_opts){.names_only = true}, &ref)) == 0)
            m = realm_model_ref_model(ref);
        else if (mpath[0] && (rc = realm_model_load(mpath, &r->p.model, &tmp)) == 0)
            m = tmp;
        realm_lora *a = NULL;
        if (m)
            rc = realm_lora_load(m, path, &a);
        if (rc == 0) {
            n_fit++;
            if (at_fits < sizeof fits - MAX_NAME - 8)
                at_fits += (size_t)snprintf(fits + at_fits, sizeof fits - at_fits, "%s'%s'",
                                            at_fits ? ", " : "", names[i]);
            snprintf(base, cap, "%s", names[i]);
        } else {
            if (n_fit == 0 && first_rc == REALM_ERR_NOTFOUND)
                first_rc = rc;
            if (at_why < sizeof why - 8)
                at_why += (size_t)snprintf(why + at_why, sizeof why - at_why, "%s'%s': %s",
                                           at_why ? "; " : "", names[i], realm_last_error());
        }
        realm_lora_free(a);
        realm_model_free(tmp);
        realm_registry_release(ref);
    }
    free(names);
    if (n_fit == 1)
        return REALM_OK;
    if (n_fit > 1)
        return realm__error(REALM_ERR_INVAL,
                            "LoRA adapter '%s' fits several models (%s): name its base "
                            "(realm serve --lora-base %s=MODEL, or \"base\" in "
                            "/v1/load_lora_adapter)",
                            name, fits, name);
    if (n == 0)
        return realm__error(REALM_ERR_NOTFOUND,
                            "LoRA adapter '%s': no model is registered to be its base", name);
    if (first_rc == REALM_ERR_NOTFOUND)
        first_rc = REALM_ERR_FORMAT;
    return realm__error(first_rc, "LoRA adapter '%s' fits no registered model (%s)", name, why);
}

int realm_registry_add_lora(realm_registry *r, const char *name, const char *path, const char *base)
{
    if (!r || !name || !path)
        return realm__error(REALM_ERR_INVAL, "registry: an adapter needs a name and a path");
    if (!name_ok(name))
        return realm__error(REALM_ERR_INVAL,
                            "adapter name '%.140s' must be 1..%d characters of A-Z a-z 0-9 . _ : -",
                            name, MAX_NAME);
    char real[PATH_MAX];
    errno = 0;
    if (!is_file(path) || !realpath(path, real))
        return realm__error(REALM_ERR_NOTFOUND, "adapter file %s: %s", path,
                            errno ? strerror(errno) : "not a regular file");
    pthread_mutex_lock(&r->mu);
    bool taken = find_locked(r, name) || find_lora_locked(r, name);
    pthread_mutex_unlock(&r->mu);
    if (taken)
        return realm__error(REALM_ERR_EXISTS, "a model or adapter named '%s' is already registered",
                            name);
    char found[MAX_NAME + 1];
    int rc;
    if (!base) {
        if ((rc = find_base(r, name, real, found, sizeof found)) < 0)
            return rc;
        base = found;
    }
    realm_model_ref *bref = NULL;
    if ((rc = realm_registry_acquire(r, base, strlen(base),
                                     &(realm_acquire_opts){.names_only = true}, &bref)) < 0)
        return realm__error(rc, "LoRA adapter '%s': base: %s", name, realm_last_error());
    if (bref->lora) {
        realm_registry_release(bref);
        return realm__error(REALM_ERR_INVAL,
                            "LoRA adapter '%s': its base '%s' is an adapter, not a model", name,
                            base);
    }
    realm_lora *a = NULL;
    if ((rc = realm_lora_load(realm_model_ref_model(bref), real, &a)) < 0) {
        realm_registry_release(bref);
        return realm__error(rc, "LoRA adapter '%s' (base '%s'): %s", name, base,
                            realm_last_error());
    }
    lora_entry *l = calloc(1, sizeof *l);
    if (!l || !(l->name = strdup(name)) || !(l->path = strdup(real))) {
        if (l)
            free(l->name);
        free(l);
        realm_lora_free(a);
        realm_registry_release(bref);
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    }
    l->lora = a;
    l->base_ref = bref;
    l->base = bref->e;
    l->bytes = realm_lora_bytes(a);

    /* the budget: least recently used idle models make room, as for a model */
    detached gone[64];
    int n_gone = 0;
    char s_need[32], s_busy[32], s_budget[32];
    pthread_mutex_lock(&r->mu);
    while (r->used + l->bytes > r->budget && n_gone < 64) {
        entry *lru = NULL;
        for (int32_t i = 0; i < r->n; i++)
            if (evictable(r->entries[i]) && (!lru || r->entries[i]->released_at < lru->released_at))
                lru = r->entries[i];
        if (!lru)
            break;
        realm__log(REALM_LOG_INFO, "model '%s' unloaded to make room for the adapter '%s'",
                   lru->name, name);
        gone[n_gone++] = detach_locked(r, lru);
    }
    mib(l->bytes, s_need, sizeof s_need);
    mib(r->used, s_busy, sizeof s_busy);
    mib(r->budget, s_budget, sizeof s_budget);
    if (find_locked(r, name) || find_lora_locked(r, name))
        rc = realm__error(REALM_ERR_EXISTS, "a model or adapter named '%s' is already registered",
                          name);
    else if (r->used + l->bytes > r->budget)
        rc = realm__error(REALM_ERR_OVERLOADED,
                          "LoRA adapter '%s' needs %s; %s of the %s budget is held by models in "
                          "use",
                          name, s_need, s_busy, s_budget);
    else {
        l->id = r->next_lora_id++;
        l->next = NULL;
        lora_entry **p = &r->loras;
        while (*p)
            p = &(*p)->next;
        *p = l;
        r->used += l->bytes;
    }
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < n_gone; i++)
        free_detached(gone[i]);
    if (rc < 0) {
        lora_entry_free(l);
        return rc;
    }
    realm__log(REALM_LOG_INFO, "LoRA adapter '%s' (id %lld) loaded for '%s': %s, rank %d, %s", name,
               (long long)l->id, base, real, (int)realm_lora_rank(a), s_need);
    return REALM_OK;
}

int realm_registry_remove_lora(realm_registry *r, const char *name, int32_t *in_use)
{
    if (in_use)
        *in_use = 0;
    pthread_mutex_lock(&r->mu);
    lora_entry *l = find_lora_locked(r, name), *dead = NULL;
    /* l may be freed as soon as the lock is let go (its last request
     * releasing it), so what the log needs is read here */
    const int32_t refs = l ? l->refs : 0;
    if (l) {
        l->retired = true;
        if (in_use)
            *in_use = l->refs;
        if (l->refs == 0) {
            lora_entry **p = &r->loras;
            while (*p != l)
                p = &(*p)->next;
            *p = l->next;
            r->used -= l->bytes;
            dead = l;
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (!l)
        return realm__error(REALM_ERR_NOTFOUND, "no LoRA adapter named '%.128s'", name);
    if (!dead)
        realm__log(REALM_LOG_INFO, "LoRA adapter '%s' unloaded: freed when its %d request%s end",
                   name, (int)refs, refs == 1 ? "" : "s");
    lora_entry_free(dead);
    return REALM_OK;
}

int realm_registry_acquire_lora_id(realm_registry *r, int64_t id, realm_model_ref **out)
{
    *out = NULL;
    realm_model_ref *ref = calloc(1, sizeof *ref);
    if (!ref)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&r->mu);
    lora_entry *l = r->loras;
    while (l && (l->retired || l->id != id))
        l = l->next;
    if (l) {
        l->refs++;
        l->requests++;
        l->base->refs++;
        *ref = (realm_model_ref){.r = r, .e = l->base, .lora = l};
    }
    pthread_mutex_unlock(&r->mu);
    if (!l) {
        free(ref);
        return realm__error(REALM_ERR_NOTFOUND, "no LoRA adapter with id %lld", (long long)id);
    }
    *out = ref;
    return REALM_OK;
}

int realm_registry_list_lora(realm_registry *r, realm_lora_status **out, int32_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    pthread_mutex_lock(&r->mu);
    int32_t n = 0;
    for (lora_entry *l = r->loras; l; l = l->next)
        n++;
    realm_lora_status *s = calloc((size_t)n + 1, sizeof *s);
    n = 0;
    for (lora_entry *l = r->loras; s && l; l = l->next) {
        realm_lora_status *t = &s[n++];
        snprintf(t->name, sizeof t->name, "%s", l->name);
        snprintf(t->base, sizeof t->base, "%s", l->base->name);
        snprintf(t->path, sizeof t->path, "%s", l->path);
        t->id = l->id;
        t->refs = l->refs;
        t->unloading = l->retired;
        t->mem_bytes = l->bytes;
        t->rank = realm_lora_rank(l->lora);
        t->alpha = realm_lora_alpha(l->lora);
        t->n_weights = realm_lora_n_weights(l->lora);
        t->requests = l->requests;
    }
    pthread_mutex_unlock(&r->mu);
    if (!s)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    *out = s;
    *n_out = n;
    return REALM_OK;
}
