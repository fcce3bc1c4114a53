/*
 * The store (realm/store.h): opening and migrating the database, tenants,
 * stored modules and change detection. Keys are in store_keys.c, usage in
 * store_usage.c, tenants' key-value data in store_kv.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error_internal.h"
#include "core/log_internal.h"
#include "store_internal.h"

/* ---- SQLite helpers ------------------------------------------------------------ */

static const char *const stmt_sql[STORE_STMT_COUNT] = {
#define XX(name, sql) [STORE_##name] = sql,
    STORE_STMT_MAP(XX)
#undef XX
};

int64_t realm__store_time(void)
{
    return (int64_t)time(NULL);
}

int realm__store_db_error(realm_store *s, const char *what)
{
    return realm__error(REALM_ERR_IO, "%s: %s: %s", s->db_path, what, sqlite3_errmsg(s->db));
}

int realm__store_exec(realm_store *s, const char *sql)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return realm__store_db_error(s, sql);
    return 0;
}

sqlite3_stmt *realm__store_stmt(realm_store *s, int which)
{
    if (s->stmts[which] == NULL &&
        sqlite3_prepare_v3(s->db, stmt_sql[which], -1, SQLITE_PREPARE_PERSISTENT, &s->stmts[which],
                           NULL) != SQLITE_OK) {
        realm__store_db_error(s, "preparing a statement");
        s->stmts[which] = NULL;
    }
    return s->stmts[which];
}

void realm__store_done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* ---- the data directory ---------------------------------------------------------- */

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

int realm_store_default_dir(char *buf, size_t cap)
{
    const char *dir = env_nonempty("REALM_DATA_DIR");
    const char *xdg = env_nonempty("XDG_DATA_HOME");
    int n;
    if (dir) {
        n = snprintf(buf, cap, "%s", dir);
    } else if (xdg && xdg[0] == '/') { /* a relative XDG path is invalid: ignored */
        n = snprintf(buf, cap, "%s/realm", xdg);
    } else {
        const char *home = env_nonempty("HOME");
        if (!home) {
            const struct passwd *pw = getpwuid(getuid());
            home = pw && pw->pw_dir && pw->pw_dir[0] ? pw->pw_dir : NULL;
        }
        if (!home)
            return realm__error(REALM_ERR_NOTFOUND, "no home directory for the data directory: "
                                                    "set REALM_DATA_DIR or pass --data-dir");
        n = snprintf(buf, cap, "%s/.local/share/realm", home);
    }
    if (n < 0 || (size_t)n >= cap)
        return realm__error(REALM_ERR_RANGE, "the data directory's path is too long");
    return 0;
}

/* mkdir -p with mode 0700 for what it creates; the result must be a directory. */
static int make_dirs(const char *dir)
{
    char path[STORE_PATH_MAX];
    size_t len = strlen(dir);
    if (len >= sizeof path)
        return realm__error(REALM_ERR_INVAL, "path too long: %s", dir);
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return realm__error(REALM_ERR_IO, "cannot create %s: %s", path, strerror(errno));
        path[i] = c;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return realm__error(REALM_ERR_IO, "%s is not a directory", dir);
    return 0;
}

/* ---- open, migrate, close --------------------------------------------------------- */

/*
 * migrations[v] takes the schema from version v to v + 1. Append only: a
 * released migration is never edited, a change is a new one.
 */
static const char *const migrations[STORE_SCHEMA_VERSION] = {
    /* 1: tenants, their API keys (hashes only) and hourly usage. Tenant ids
     * are AUTOINCREMENT: never reused. Keys go with their tenant; usage
     * stays (no foreign key). */
    "CREATE TABLE tenants ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL UNIQUE,"
    " module_sha256 TEXT NOT NULL DEFAULT '',"
    " models TEXT NOT NULL DEFAULT '',"
    " rpm INTEGER NOT NULL DEFAULT 0,"
    " tpm INTEGER NOT NULL DEFAULT 0,"
    " max_concurrent INTEGER NOT NULL DEFAULT 0,"
    " max_tokens INTEGER NOT NULL DEFAULT 0,"
    " quota INTEGER NOT NULL DEFAULT 0,"
    " weight REAL NOT NULL DEFAULT 1,"
    " max_pages INTEGER NOT NULL DEFAULT 0,"
    " deadline_ms INTEGER NOT NULL DEFAULT 0,"
    " created INTEGER NOT NULL);"
    "CREATE TABLE api_keys ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " tenant INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,"
    " hash BLOB NOT NULL UNIQUE," /* SHA-256 of the whole key */
    " prefix TEXT NOT NULL,"      /* its first REALM_KEY_PREFIX_LEN characters */
    " created INTEGER NOT NULL,"
    " last_used INTEGER NOT NULL DEFAULT 0,"
    " revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX api_keys_prefix ON api_keys (prefix);"
    "CREATE INDEX api_keys_tenant ON api_keys (tenant);"
    "CREATE TABLE usage ("
    " tenant INTEGER NOT NULL,"
    " model TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " hour INTEGER NOT NULL,"
    " requests INTEGER NOT NULL DEFAULT 0,"
    " prompt_tokens INTEGER NOT NULL DEFAULT 0,"
    " cached_tokens INTEGER NOT NULL DEFAULT 0,"
    " completion_tokens INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (tenant, model, user, hour)) WITHOUT ROWID;"
    "CREATE INDEX usage_hour ON usage (hour);"
    "CREATE INDEX usage_tenant_hour ON usage (tenant, hour);",
    /* 2: tenants' key-value data (store_kv.c) and its quota. An entry goes
     * with its tenant. kv_usage sums each tenant's entries, kept by the
     * triggers through every insert, update and delete (cascades and purges
     * included), so a put checks the quota without reading the tenant's
     * rows. size is the key's bytes plus the value's: what the quota
     * counts. A rowid table: values are up to megabytes. */
    "ALTER TABLE tenants ADD COLUMN kv_quota INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE kv ("
    " tenant INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,"
    " key TEXT NOT NULL,"
    " value BLOB NOT NULL,"
    " size INTEGER NOT NULL,"
    " updated INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL DEFAULT 0," /* unix seconds; 0: never */
    " PRIMARY KEY (tenant, key));"
    "CREATE INDEX kv_expires ON kv (expires_at) WHERE expires_at > 0;"
    "CREATE TABLE kv_usage ("
    " tenant INTEGER PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,"
    " bytes INTEGER NOT NULL DEFAULT 0,"
    " keys INTEGER NOT NULL DEFAULT 0);"
    "CREATE TRIGGER kv_insert AFTER INSERT ON kv BEGIN"
    " INSERT INTO kv_usage (tenant, bytes, keys) VALUES (new.tenant, new.size, 1)"
    " ON CONFLICT (tenant) DO UPDATE SET bytes = bytes + excluded.bytes, keys = keys + 1;"
    " END;"
    "CREATE TRIGGER kv_delete AFTER DELETE ON kv BEGIN"
    " UPDATE kv_usage SET bytes = bytes - old.size, keys = keys - 1 WHERE tenant = old.tenant;"
    " END;"
    "CREATE TRIGGER kv_update AFTER UPDATE OF size ON kv BEGIN"
    " UPDATE kv_usage SET bytes = bytes - old.size + new.size WHERE tenant = new.tenant;"
    " END;",
};

static int user_version(realm_store *s, int *v)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return realm__store_db_error(s, "reading the schema version");
    int r = sqlite3_step(st);
    int rc = r == SQLITE_ROW ? 0 : realm__store_db_error(s, "reading the schema version");
    if (r == SQLITE_ROW)
        *v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc;
}

static int too_new(realm_store *s, int v)
{
    return realm__error(REALM_ERR_UNSUPPORTED,
                        "%s: made by a newer Realm (schema %d, this build knows %d)", s->db_path, v,
                        STORE_SCHEMA_VERSION);
}

/* Bring the schema up to STORE_SCHEMA_VERSION, one step per transaction.
 * The version is read again inside each write transaction, so two processes
 * opening a new database at once migrate it once. */
static int migrate(realm_store *s)
{
    int v, rc = user_version(s, &v);
    if (rc < 0)
        return rc;
    while (v < STORE_SCHEMA_VERSION) {
        if ((rc = realm__store_exec(s, "BEGIN IMMEDIATE")) < 0)
            return rc;
        if ((rc = user_version(s, &v)) == 0 && v < STORE_SCHEMA_VERSION) {
            char sql[64];
            snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
            if ((rc = realm__store_exec(s, migrations[v])) == 0 &&
                (rc = realm__store_exec(s, sql)) == 0)
                v++;
        }
        if (rc == 0)
            rc = realm__store_exec(s, "COMMIT");
        if (rc < 0) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
    }
    return v > STORE_SCHEMA_VERSION ? too_new(s, v) : 0;
}

/* Free everything; the flusher must not be running. */
static void store_free(realm_store *s)
{
    for (int i = 0; i < STORE_STMT_COUNT; i++)
        sqlite3_finalize(s->stmts[i]);
    if (s->db)
        sqlite3_close(s->db);
    realm__store_usage_free(s);
    pthread_cond_destroy(&s->q_cv);
    pthread_mutex_destroy(&s->q_mu);
    pthread_mutex_destroy(&s->db_mu);
    free(s);
}

int realm_store_open(const char *data_dir, realm_store **out)
{
    *out = NULL;
    if (!data_dir || !data_dir[0])
        return realm__error(REALM_ERR_INVAL, "the data directory is an empty path");
    size_t len = strlen(data_dir);
    while (len > 1 && data_dir[len - 1] == '/')
        len--;
    if (len >= STORE_DIR_MAX)
        return realm__error(REALM_ERR_INVAL, "the data directory's path is too long");
    realm_store *s = calloc(1, sizeof *s);
    if (!s)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    memcpy(s->dir, data_dir, len);
    s->kv_max_value = REALM_KV_VALUE_MAX_DEFAULT;
    s->kv_default_quota = REALM_KV_QUOTA_DEFAULT;
    snprintf(s->db_path, sizeof s->db_path, "%s/realm.db", s->dir);
    pthread_mutex_init(&s->db_mu, NULL);
    pthread_mutex_init(&s->q_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->q_cv, &ca);
    pthread_condattr_destroy(&ca);

    int rc = make_dirs(s->dir);
    if (rc < 0) {
        store_free(s);
        return rc;
    }
    /* Made here so that it is 0600 whatever the umask (SQLite gives the -wal
     * and -shm files the database's permissions). */
    int fd = open(s->db_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = realm__error(REALM_ERR_IO, "%s: %s", s->db_path, strerror(errno));
        store_free(s);
        return rc;
    }
    close(fd);
    if (sqlite3_open_v2(s->db_path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rc = s->db ? realm__store_db_error(s, "opening")
                   : realm__error(REALM_ERR_NOMEM, "out of memory");
        store_free(s);
        return rc;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000); /* the CLI and a server write concurrently */
    if ((rc = realm__store_exec(s, "PRAGMA foreign_keys = ON")) < 0 ||
        (rc = realm__store_exec(s, "PRAGMA journal_mode = WAL")) < 0 ||
        (rc = realm__store_exec(s, "PRAGMA synchronous = NORMAL")) < 0 || (rc = migrate(s)) < 0) {
        store_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void realm_store_close(realm_store *s)
{
    if (!s)
        return;
    realm__store_usage_stop(s);
    pthread_mutex_lock(&s->db_mu);
    int32_t n = s->q_n;
    if (realm__store_flush_locked(s) < 0)
        realm__log(REALM_LOG_ERROR, "%d usage records were not written: %s", (int)n,
                   realm_last_error());
    pthread_mutex_unlock(&s->db_mu);
    store_free(s);
}

/* ---- tenants -------------------------------------------------------------------- */

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

/* A row of STORE_TENANT_COLS. */
static void row_tenant(sqlite3_stmt *st, realm_tenant *t)
{
    memset(t, 0, sizeof *t);
    t->id = sqlite3_column_int64(st, 0);
    copy_text(t->name, sizeof t->name, sqlite3_column_text(st, 1));
    copy_text(t->module_sha256, sizeof t->module_sha256, sqlite3_column_text(st, 2));
    copy_text(t->models, sizeof t->models, sqlite3_column_text(st, 3));
    t->rpm = sqlite3_column_int64(st, 4);
    t->tpm = sqlite3_column_int64(st, 5);
    t->max_concurrent = sqlite3_column_int64(st, 6);
    t->max_tokens = sqlite3_column_int64(st, 7);
    t->quota = sqlite3_column_int64(st, 8);
    t->weight = sqlite3_column_double(st, 9);
    t->max_pages = sqlite3_column_int64(st, 10);
    t->deadline_ms = sqlite3_column_int64(st, 11);
    t->created = sqlite3_column_int64(st, 12);
    t->kv_quota = sqlite3_column_int64(st, 13);
}

/* NULL if name is a valid tenant name, else what is wrong with it. */
static const char *name_problem(const char *name, size_t max)
{
    size_t n = strnlen(name, max + 1);
    if (n == 0)
        return "it is empty";
    if (n > max)
        return max == REALM_TENANT_NAME_MAX ? "it is longer than 64 bytes"
                                            : "it is longer than 128 bytes";
    if (name[0] == '.')
        return "it starts with '.'";
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return "only letters, digits, '.', '_' and '-' are allowed";
    }
    return NULL;
}

static int check_name(const char *name)
{
    if (!name)
        return realm__error(REALM_ERR_INVAL, "no tenant name");
    const char *p = name_problem(name, REALM_TENANT_NAME_MAX);
    if (p)
        return realm__error(REALM_ERR_INVAL, "bad tenant name '%.80s': %s", name, p);
    return 0;
}

/* One statement, one row: the tenant (REALM_ERR_NOTFOUND, what naming it). */
static int get_tenant(realm_store *s, int which, const char *name, int64_t id, realm_tenant *out)
{
    pthread_mutex_lock(&s->db_mu);
    sqlite3_stmt *st = realm__store_stmt(s, which);
    int rc = st ? 0 : REALM_ERR_IO;
    if (st) {
        if (name)
            sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        else
            sqlite3_bind_int64(st, 1, id);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW)
            row_tenant(st, out);
        else if (r != SQLITE_DONE)
            rc = realm__store_db_error(s, "reading a tenant");
        else if (name)
            rc = realm__error(REALM_ERR_NOTFOUND, "no tenant '%s'", name);
        else
            rc = realm__error(REALM_ERR_NOTFOUND, "no tenant with id %lld", (long long)id);
    }
    realm__store_done(st);
    pthread_mutex_unlock(&s->db_mu);
    return rc;
}

int realm_store_tenant_get(realm_store *s, const char *name, realm_tenant *out)
{
    int rc = check_name(name);
    return rc < 0 ? rc : get_tenant(s, STORE_TENANT_BY_NAME, name, 0, out);
}

int realm_store_tenant_get_id(realm_store *s, int64_t id, realm_tenant *out)
{
    return get_tenant(s, STORE_TENANT_BY_ID, NULL, id, out);
}

int realm__store_tenant_id(realm_store *s, const char *name, int64_t *id)
{
    int rc = check_name(name);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st = realm__store_stmt(s, STORE_TENANT_BY_NAME);
    if (!st)
        return REALM_ERR_IO;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    else if (r == SQLITE_DONE)
        rc = realm__error(REALM_ERR_NOTFOUND, "no tenant '%s'", name);
    else
        rc = realm__store_db_error(s, "reading a tenant");
    realm__store_done(st);
    return rc;
}

int realm_store_tenant_add(realm_store *s, const char *name, realm_tenant *out)
{
    int rc = check_name(name);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->db_mu);
    sqlite3_stmt *st = realm__store_stmt(s, STORE_TENANT_ADD);
    rc = st ? 0 : REALM_ERR_IO;
    if (st) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, realm__store_time());
        int r = sqlite3_step(st);
        if (r == SQLITE_CONSTRAINT_UNIQUE)
            rc = realm__error(REALM_ERR_EXISTS, "a tenant '%s' exists", name);
        else if (r != SQLITE_DONE)
            rc = realm__store_db_error(s, "adding a tenant");
        else
            s->own_writes++;
    }
    realm__store_done(st);
    pthread_mutex_unlock(&s->db_mu);
    return rc == 0 && out ? realm_store_tenant_get(s, name, out) : rc;
}

int realm_store_tenant_list(realm_store *s, realm_tenant **out, int32_t *n)
{
    *out = NULL;
    *n = 0;
    realm_tenant *v = NULL;
    int32_t len = 0, cap = 0;
    pthread_mutex_lock(&s->db_mu);
    sqlite3_stmt *st = realm__store_stmt(s, STORE_TENANT_LIST);
    int rc = st ? 0 : REALM_ERR_IO, r;
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? 2 * cap : 16;
            realm_tenant *nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) {
                rc = realm__error(REALM_ERR_NOMEM, "out of memory");
                break;
            }
            v = nv;
        }
        row_tenant(st, &v[len++]);
    }
    if (rc == 0 && r != SQLITE_DONE)
        rc = realm__store_db_error(s, "listing tenants");
    realm__store_done(st);
    pthread_mutex_unlock(&s->db_mu);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = len;
    return 0;
}

static bool is_hex64(const char *h)
{
    for (int i = 0; i < 64; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return false;
    return h[64] == '\0';
}

/* The models list: "" or 1..REALM_STORE_MAX_MODELS registry names
 * ([A-Za-z0-9._:-], 1..128 bytes) separated by commas. */
static int check_models(const char *models)
{
    if (!memchr(models, '\0', sizeof((realm_tenant *)0)->models))
        return realm__error(REALM_ERR_INVAL, "models: the list is longer than %zu bytes",
                            sizeof((realm_tenant *)0)->models - 1);
    if (!models[0])
        return 0;
    int count = 0;
    for (const char *p = models;; p++) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0)
            return realm__error(REALM_ERR_INVAL, "models: an empty name in '%.200s'", models);
        if (n > 128)
            return realm__error(REALM_ERR_INVAL, "models: '%.40s...' is longer than 128 bytes", p);
        for (size_t i = 0; i < n; i++) {
            char c = p[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-'))
                return realm__error(REALM_ERR_INVAL,
                                    "models: bad model name '%.*s' (letters, digits, '.', '_', "
                                    "':' and '-' only)",
                                    (int)(n > 128 ? 128 : n), p);
        }
        if (++count > REALM_STORE_MAX_MODELS)
            return realm__error(REALM_ERR_INVAL, "models: more than %d names",
                                REALM_STORE_MAX_MODELS);
        if (!e)
            return 0;
        p = e;
    }
}

/* Every value of t that tenant_update writes; REALM_ERR_INVAL naming the
 * field. */
static int check_tenant(realm_store *s, const realm_tenant *t)
{
    static const struct {
        const char *name;
        size_t off;
        int64_t max;
        const char *zero; /* what 0 means */
    } limits[] = {
        {"rpm", offsetof(realm_tenant, rpm), INT64_MAX, "no limit"},
        {"tpm", offsetof(realm_tenant, tpm), INT64_MAX, "no limit"},
        {"max_concurrent", offsetof(realm_tenant, max_concurrent), INT32_MAX, "no limit"},
        {"max_tokens", offsetof(realm_tenant, max_tokens), INT32_MAX, "no limit"},
        {"quota", offsetof(realm_tenant, quota), INT64_MAX, "no limit"},
        {"max_pages", offsetof(realm_tenant, max_pages), 65536, "the default"}, /* 4 GiB: wasm32 */
        {"deadline_ms", offsetof(realm_tenant, deadline_ms), 86400000, "the default"}, /* a day */
        {"kv_quota", offsetof(realm_tenant, kv_quota), REALM_KV_QUOTA_MAX, "the default"},
    };
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        int64_t v;
        memcpy(&v, (const char *)t + limits[i].off, sizeof v);
        if (v < 0 || v > limits[i].max)
            return realm__error(REALM_ERR_INVAL, "%s: %lld is not in 0..%lld (0: %s)",
                                limits[i].name, (long long)v, (long long)limits[i].max,
                                limits[i].zero);
    }
    if (!(t->weight == 0 || (t->weight >= 1e-3 && t->weight <= 1e3)))
        return realm__error(REALM_ERR_INVAL, "weight: %g is not in 0.001..1000", t->weight);
    int rc = check_models(t->models);
    if (rc < 0)
        return rc;
    const char *m = t->module_sha256;
    if (!memchr(m, '\0', sizeof t->module_sha256) || (m[0] && !is_hex64(m)))
        return realm__error(REALM_ERR_INVAL,
                            "module_sha256: not a SHA-256 in lowercase hex (or \"\")");
    char path[STORE_PATH_MAX];
    if (m[0] && realm_store_module_path(s, m, path, sizeof path) < 0)
        return realm__error(REALM_ERR_INVAL,
                            "module_sha256: no module %s is stored (realm_store_module_put)", m);
    return 0;
}

int realm_store_tenant_check(realm_store *s, const realm_tenant *t)
{
    return check_tenant(s, t);
}

int realm_store_tenant_update(realm_store *s, const realm_tenant *t)
{
    int rc = check_tenant(s, t);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->db_mu);
    sqlite3_stmt *st = realm__store_stmt(s, STORE_TENANT_UPDATE);
    rc = st ? 0 : REALM_ERR_IO;
    if (st) {
        sqlite3_bind_int64(st, 1, t->id);
        sqlite3_bind_text(st, 2, t->module_sha256, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, t->models, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, t->rpm);
        sqlite3_bind_int64(st, 5, t->tpm);
        sqlite3_bind_int64(st, 6, t->max_concurrent);
        sqlite3_bind_int64(st, 7, t->max_tokens);
        sqlite3_bind_int64(st, 8, t->quota);
        sqlite3_bind_double(st, 9, t->weight == 0 ? 1.0 : t->weight);
        sqlite3_bind_int64(st, 10, t->max_pages);
        sqlite3_bind_int64(st, 11, t->deadline_ms);
        sqlite3_bind_int64(st, 12, t->kv_quota);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = realm__store_db_error(s, "updating a tenant");
        else if (sqlite3_changes(s->db) == 0)
            rc = realm__error(REALM_ERR_NOTFOUND, "no tenant with id %lld", (long long)t->id);
        else
            s->own_writes++;
    }
    realm__store_done(st);
    pthread_mutex_unlock(&s->db_mu);
    return rc;
}

int realm_store_tenant_remove(realm_store *s, const char *name)
{
    int rc = check_name(name);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->db_mu);
    sqlite3_stmt *st = realm__store_stmt(s, STORE_TENANT_REMOVE);
    rc = st ? 0 : REALM_ERR_IO;
    if (st) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = realm__store_db_error(s, "removing a tenant");
        else if (sqlite3_changes(s->db) == 0)
            rc = realm__error(REALM_ERR_NOTFOUND, "no tenant '%s'", name);
        else
            s->own_writes++;
    }
    realm__store_done(st);
    pthread_mutex_unlock(&s->db_mu);
    return rc;
}

/* ---- modules ------------------------------------------------------------------- */

static void sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t k = write(fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

int realm_store_module_put(realm_store *s, const void *wasm, size_t len, char *sha_out)
{
    char sha[65], dir[STORE_PATH_MAX], path[STORE_PATH_MAX], tmp[STORE_PATH_MAX];
    sha256_hex(wasm, len, sha);
    snprintf(dir, sizeof dir, "%s/modules", s->dir);
    snprintf(path, sizeof path, "%s/modules/%s.wasm", s->dir, sha);
    snprintf(tmp, sizeof tmp, "%s/modules/.%s.XXXXXX", s->dir, sha);
    int rc = make_dirs(dir);
    if (rc < 0)
        return rc;
    /* The name is the content's hash, so a file of the right size is this
     * module (it was renamed into place whole). */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == len) {
        memcpy(sha_out, sha, sizeof sha);
        return 0;
    }
    int fd = mkstemp(tmp); /* 0600 */
    if (fd < 0)
        return realm__error(REALM_ERR_IO, "cannot create a file in %s: %s", dir, strerror(errno));
    if (write_all(fd, wasm, len) < 0 || fsync(fd) < 0) {
        rc = realm__error(REALM_ERR_IO, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return rc;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        rc = realm__error(REALM_ERR_IO, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return rc;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* make the rename durable */
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    memcpy(sha_out, sha, sizeof sha);
    return 0;
}

int realm_store_module_path(realm_store *s, const char *sha256, char *buf, size_t cap)
{
    if (!sha256 || strnlen(sha256, 65) != 64 || !is_hex64(sha256))
        return realm__error(REALM_ERR_INVAL, "'%.70s' is not a SHA-256 in lowercase hex",
                            sha256 ? sha256 : "(null)");
    int n = snprintf(buf, cap, "%s/modules/%s.wasm", s->dir, sha256);
    if (n < 0 || (size_t)n >= cap)
        return realm__error(REALM_ERR_RANGE, "the module's path is too long for the buffer");
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISREG(st.st_mode))
        return realm__error(REALM_ERR_NOTFOUND, "no module %s in %s/modules", sha256, s->dir);
    return 0;
}

/* ---- changes ------------------------------------------------------------------- */

bool realm_store_changed(realm_store *s)
{
    pthread_mutex_lock(&s->db_mu);
    bool changed = true; /* when in doubt: the caller reloads and sees the error */
    sqlite3_stmt *st = realm__store_stmt(s, STORE_DATA_VERSION);
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        int64_t version = sqlite3_column_int64(st, 0);
        changed = !s->seen_any || version != s->seen_version || s->own_writes != s->seen_writes;
        s->seen_any = true;
        s->seen_version = version;
        s->seen_writes = s->own_writes;
    }
    realm__store_done(st);
    pthread_mutex_unlock(&s->db_mu);
    return changed;
}
