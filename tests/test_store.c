/*
 * The store (realm/store.h): migrations, tenants, API keys, usage, modules
 * and change detection, on temporary data directories. The database is also
 * opened directly with SQLite to check what is (and is not) in it.
 */
#include <dirent.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "realm/store.h"
#include "test_util.h"

static char root[256];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* A fresh directory under root (not created: the store makes it). */
static const char *new_dir(const char *name)
{
    static char buf[8][512];
    static int slot;
    char *p = buf[slot++ % 8];
    snprintf(p, 512, "%s/%s", root, name);
    return p;
}

static sqlite3 *raw_open(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/realm.db", dir);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int64_t raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return v;
}

static bool contains(const char *hay, const char *needle)
{
    return hay && needle && strstr(hay, needle) != NULL;
}

static int file_mode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int)(st.st_mode & 0777) : -1;
}

/* ---- opening and migrations -------------------------------------------------- */

static void test_open(void)
{
    const char *dir = new_dir("a/b/data");
    realm_store *s;
    CHECK_RC(realm_store_open(dir, &s), 0);
    CHECK_EQ_INT(file_mode(dir), 0700);
    char path[600];
    snprintf(path, sizeof path, "%s/realm.db", dir);
    CHECK_EQ_INT(file_mode(path), 0600);
    sqlite3 *db = raw_open(dir);
    CHECK_EQ_INT(raw_int(db, "PRAGMA user_version"), 2);
    CHECK_EQ_INT(raw_int(db, "SELECT count(*) FROM sqlite_master WHERE name IN "
                             "('tenants', 'api_keys', 'usage', 'api_keys_prefix', 'kv', "
                             "'kv_usage', 'kv_expires', 'kv_insert', 'kv_delete', 'kv_update')"),
                 10);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);

    realm_tenant t;
    CHECK_RC(realm_store_tenant_add(s, "kept", &t), 0);
    realm_store_close(s);
    CHECK_RC(realm_store_open(dir, &s), 0); /* reopen: no migration, data kept */
    realm_tenant t2;
    CHECK_RC(realm_store_tenant_get(s, "kept", &t2), 0);
    CHECK_EQ_INT(t2.id, t.id);
    realm_store_close(s);
    realm_store_close(NULL);

    /* A database of a newer schema is refused, untouched. */
    const char *newer = new_dir("newer");
    CHECK_RC(realm_store_open(newer, &s), 0);
    realm_store_close(s);
    db = raw_open(newer);
    sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL);
    sqlite3_close(db);
    s = (realm_store *)1;
    CHECK_RC(realm_store_open(newer, &s), REALM_ERR_UNSUPPORTED);
    CHECK(s == NULL);
    CHECK_MSG(contains(realm_last_error(), "made by a newer Realm (schema 99, this build knows 2)"),
              "%s", realm_last_error());
    CHECK_MSG(contains(realm_last_error(), "realm.db"), "%s", realm_last_error());

    /* Not a database: SQLite's message, with the file. */
    const char *junk = new_dir("junk");
    mkdir(junk, 0700);
    snprintf(path, sizeof path, "%s/realm.db", junk);
    FILE *f = fopen(path, "w");
    fputs("this is not a database, but it is long enough to look like a header......", f);
    fclose(f);
    CHECK_RC(realm_store_open(junk, &s), REALM_ERR_IO);
    CHECK_MSG(contains(realm_last_error(), path), "%s", realm_last_error());
    CHECK_MSG(contains(realm_last_error(), "not a database"), "%s", realm_last_error());
    CHECK_RC(realm_store_open("", &s), REALM_ERR_INVAL);

    /* The default directory. */
    char buf[512];
    setenv("REALM_DATA_DIR", "/srv/realm", 1);
    CHECK_RC(realm_store_default_dir(buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "/srv/realm");
    unsetenv("REALM_DATA_DIR");
    setenv("XDG_DATA_HOME", "/xdg", 1);
    CHECK_RC(realm_store_default_dir(buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "/xdg/realm");
    unsetenv("XDG_DATA_HOME");
    setenv("HOME", "/home/someone", 1);
    CHECK_RC(realm_store_default_dir(buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "/home/someone/.local/share/realm");
    CHECK_RC(realm_store_default_dir(buf, 8), REALM_ERR_RANGE);
}

/* ---- tenants ------------------------------------------------------------------ */

static void test_tenants(void)
{
    realm_store *s;
    CHECK_RC(realm_store_open(new_dir("tenants"), &s), 0);
    realm_tenant t;
    time_t before = time(NULL);
    CHECK_RC(realm_store_tenant_add(s, "acme", &t), 0);
    CHECK(t.id > 0);
    CHECK_EQ_STR(t.name, "acme");
    CHECK_EQ_STR(t.models, "");
    CHECK_EQ_STR(t.module_sha256, "");
    CHECK_EQ_INT(t.rpm + t.tpm + t.max_concurrent + t.max_tokens + t.quota, 0);
    CHECK_NEAR(t.weight, 1.0, 0);
    CHECK(t.created >= before && t.created <= time(NULL));
    CHECK_RC(realm_store_tenant_add(s, "acme", NULL), REALM_ERR_EXISTS);
    CHECK_MSG(contains(realm_last_error(), "acme"), "%s", realm_last_error());
    CHECK_RC(realm_store_tenant_add(s, "Beta_2.x-y", NULL), 0);

    static const char *const bad[] = {"", ".hidden", "a/b", "a b", "caf\xc3\xa9", "x;DROP"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RC(realm_store_tenant_add(s, bad[i], NULL), REALM_ERR_INVAL);
        CHECK_MSG(contains(realm_last_error(), "tenant name"), "%s", realm_last_error());
    }
    char longname[80];
    memset(longname, 'n', 65);
    longname[65] = '\0';
    CHECK_RC(realm_store_tenant_add(s, longname, NULL), REALM_ERR_INVAL);
    longname[64] = '\0';
    CHECK_RC(realm_store_tenant_add(s, longname, NULL), 0);

    realm_tenant *v;
    int32_t n;
    CHECK_RC(realm_store_tenant_list(s, &v, &n), 0);
    CHECK_EQ_INT(n, 3);
    if (n == 3) { /* by name (bytewise: uppercase first) */
        CHECK_EQ_STR(v[0].name, "Beta_2.x-y");
        CHECK_EQ_STR(v[1].name, "acme");
        CHECK_EQ_STR(v[2].name, longname);
    }
    free(v);

    /* Update and read back. */
    t.rpm = 60;
    t.tpm = 100000;
    t.max_concurrent = 4;
    t.max_tokens = 512;
    t.quota = 1000000;
    t.weight = 2.5;
    t.max_pages = 256;
    t.deadline_ms = 5000;
    snprintf(t.models, sizeof t.models, "llama3:8b,tiny,qwen2.5-0.5b");
    strcpy(t.name, "ignored");
    CHECK_RC(realm_store_tenant_update(s, &t), 0);
    realm_tenant g;
    CHECK_RC(realm_store_tenant_get(s, "acme", &g), 0);
    CHECK_EQ_INT(g.rpm, 60);
    CHECK_EQ_INT(g.tpm, 100000);
    CHECK_EQ_INT(g.max_concurrent, 4);
    CHECK_EQ_INT(g.max_tokens, 512);
    CHECK_EQ_INT(g.quota, 1000000);
    CHECK_NEAR(g.weight, 2.5, 0);
    CHECK_EQ_INT(g.max_pages, 256);
    CHECK_EQ_INT(g.deadline_ms, 5000);
    CHECK_EQ_STR(g.models, "llama3:8b,tiny,qwen2.5-0.5b");
    CHECK_EQ_STR(g.name, "acme");
    CHECK_EQ_INT(g.created, t.created);
    realm_tenant gi;
    CHECK_RC(realm_store_tenant_get_id(s, t.id, &gi), 0);
    CHECK_EQ_STR(gi.name, "acme");
    CHECK_RC(realm_store_tenant_get_id(s, 99999, &gi), REALM_ERR_NOTFOUND);
    CHECK_RC(realm_store_tenant_get(s, "nobody", &gi), REALM_ERR_NOTFOUND);
    CHECK_MSG(contains(realm_last_error(), "nobody"), "%s", realm_last_error());

    /* Bad values are refused naming the field, and change nothing. */
    realm_tenant b;
#define BAD(field, stmt)                                                                           \
    do {                                                                                           \
        b = g;                                                                                     \
        stmt;                                                                                      \
        CHECK_RC(realm_store_tenant_check(s, &b), REALM_ERR_INVAL);                                \
        CHECK_MSG(contains(realm_last_error(), field), "%s: %s", field, realm_last_error());       \
        CHECK_RC(realm_store_tenant_update(s, &b), REALM_ERR_INVAL);                               \
        CHECK_MSG(contains(realm_last_error(), field), "%s: %s", field, realm_last_error());       \
    } while (0)
    CHECK_RC(realm_store_tenant_check(s, &g), 0); /* what update checks, writing nothing */
    BAD("rpm", b.rpm = -1);
    BAD("tpm", b.tpm = -5);
    BAD("max_concurrent", b.max_concurrent = -1);
    BAD("max_tokens", b.max_tokens = (int64_t)1 << 40);
    BAD("quota", b.quota = -1);
    BAD("weight", b.weight = 5000);
    BAD("weight", b.weight = 1e-9);
    BAD("weight", b.weight = -1);
    BAD("weight", b.weight = 0.0 / 0.0);
    BAD("max_pages", b.max_pages = 70000);
    BAD("deadline_ms", b.deadline_ms = -1);
    BAD("models", strcpy(b.models, "a,,b"));
    BAD("models", strcpy(b.models, "a,"));
    BAD("models", strcpy(b.models, "a b"));
    BAD("models", strcpy(b.models, "../etc/passwd"));
    BAD("module_sha256", strcpy(b.module_sha256, "xyz"));
    BAD("module_sha256", memset(b.module_sha256, 'a', 64));
    BAD("models", {
        b.models[0] = '\0';
        for (int i = 0; i <= REALM_STORE_MAX_MODELS; i++)
            strcat(b.models, i ? ",m" : "m");
    });
    b = g;
    memset(b.models, 'm', sizeof b.models); /* not NUL-terminated */
    CHECK_RC(realm_store_tenant_update(s, &b), REALM_ERR_INVAL);
    realm_tenant after;
    CHECK_RC(realm_store_tenant_get(s, "acme", &after), 0);
    CHECK(memcmp(&after, &g, sizeof g) == 0);
    b = g;
    b.weight = 0; /* the default */
    CHECK_RC(realm_store_tenant_update(s, &b), 0);
    CHECK_RC(realm_store_tenant_get(s, "acme", &after), 0);
    CHECK_NEAR(after.weight, 1.0, 0);
    b.id = 123456;
    CHECK_RC(realm_store_tenant_update(s, &b), REALM_ERR_NOTFOUND);

    /* Remove; ids are never reused, not even the highest. */
    realm_tenant x, y, z;
    CHECK_RC(realm_store_tenant_add(s, "x", &x), 0);
    CHECK_RC(realm_store_tenant_add(s, "y", &y), 0);
    CHECK_RC(realm_store_tenant_remove(s, "y"), 0);
    CHECK_RC(realm_store_tenant_remove(s, "y"), REALM_ERR_NOTFOUND);
    CHECK_RC(realm_store_tenant_add(s, "z", &z), 0);
    CHECK(z.id > y.id && y.id > x.id);
    CHECK_RC(realm_store_tenant_add(s, "y", &y), 0); /* the name is free again, a new id */
    CHECK(y.id > z.id);
    CHECK_RC(realm_store_tenant_get(s, "x", &x), 0);
    CHECK_RC(realm_store_tenant_remove(s, "../x"), REALM_ERR_INVAL);
    realm_store_close(s);
}

/* ---- keys --------------------------------------------------------------------- */

/* No value of any column of any table contains needle. */
static void check_not_in_db(const char *dir, const char *needle)
{
    sqlite3 *db = raw_open(dir);
    sqlite3_stmt *tables;
    sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table'", -1, &tables,
                       NULL);
    int n_tables = 0, n_values = 0;
    while (sqlite3_step(tables) == SQLITE_ROW) {
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", sqlite3_column_text(tables, 0));
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
            continue;
        n_tables++;
        while (sqlite3_step(st) == SQLITE_ROW)
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const void *p = sqlite3_column_blob(st, c);
                int len = sqlite3_column_bytes(st, c);
                n_values++;
                CHECK_MSG(!p || !memmem(p, (size_t)len, needle, strlen(needle)), "the key is in %s",
                          sql);
            }
        sqlite3_finalize(st);
    }
    sqlite3_finalize(tables);
    sqlite3_close(db);
    CHECK(n_tables >= 3 && n_values > 10);
}

static void test_keys(void)
{
    const char *dir = new_dir("keys");
    realm_store *s;
    CHECK_RC(realm_store_open(dir, &s), 0);
    realm_tenant acme, other;
    CHECK_RC(realm_store_tenant_add(s, "acme", &acme), 0);
    CHECK_RC(realm_store_tenant_add(s, "other", &other), 0);

    char key[REALM_KEY_LEN + 1];
    realm_key_info info;
    CHECK_RC(realm_store_key_create(s, "acme", key, &info), 0);
    CHECK_EQ_INT(strlen(key), REALM_KEY_LEN);
    CHECK(strncmp(key, "rk-", 3) == 0);
    CHECK_EQ_INT(strspn(key + 3, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
                 32);
    CHECK(strncmp(info.prefix, key, REALM_KEY_PREFIX_LEN) == 0 &&
          strlen(info.prefix) == REALM_KEY_PREFIX_LEN);
    CHECK_EQ_INT(info.tenant, acme.id);
    CHECK_EQ_STR(info.tenant_name, "acme");
    CHECK(info.created > 0 && info.last_used == 0 && info.revoked == 0);
    CHECK_RC(realm_store_key_create(s, "nobody", key + 0, NULL), REALM_ERR_NOTFOUND);
    CHECK(strncmp(key, "rk-", 3) == 0); /* untouched on failure */

    int64_t tenant = 0;
    CHECK_RC(realm_store_key_lookup(s, key, &tenant), 0);
    CHECK_EQ_INT(tenant, acme.id);
    char wrong[REALM_KEY_LEN + 1];
    memcpy(wrong, key, sizeof wrong);
    wrong[20] = wrong[20] == 'a' ? 'b' : 'a';
    CHECK_RC(realm_store_key_lookup(s, wrong, &tenant), REALM_ERR_NOTFOUND);
    CHECK_RC(realm_store_key_lookup(s, "rk-short", &tenant), REALM_ERR_NOTFOUND);
    CHECK_RC(realm_store_key_lookup(s, "", &tenant), REALM_ERR_NOTFOUND);
    CHECK_RC(realm_store_key_lookup(s, NULL, &tenant), REALM_ERR_NOTFOUND);
    wrong[20] = '!';
    CHECK_RC(realm_store_key_lookup(s, wrong, &tenant), REALM_ERR_NOTFOUND);
    char longer[64];
    snprintf(longer, sizeof longer, "%sX", key);
    CHECK_RC(realm_store_key_lookup(s, longer, &tenant), REALM_ERR_NOTFOUND);

    /* Only the hash (and the display prefix) is stored. */
    unsigned char md[32];
    unsigned int mdlen;
    EVP_Digest(key, REALM_KEY_LEN, md, &mdlen, EVP_sha256(), NULL);
    sqlite3 *db = raw_open(dir);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT hash, prefix FROM api_keys", -1, &st, NULL);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK(sqlite3_column_bytes(st, 0) == 32 && memcmp(sqlite3_column_blob(st, 0), md, 32) == 0);
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 1), info.prefix);
    sqlite3_finalize(st);
    sqlite3_close(db);
    check_not_in_db(dir, key);
    check_not_in_db(dir, key + REALM_KEY_PREFIX_LEN); /* the secret part */

    /* last_used: written (through the queue) on the first use. */
    realm_key_info *v;
    int32_t n;
    CHECK_RC(realm_store_key_list(s, "acme", &v, &n), 0);
    CHECK_EQ_INT(n, 1);
    if (n == 1)
        CHECK(v[0].last_used >= info.created && v[0].revoked == 0);
    free(v);
    CHECK_RC(realm_store_key_list(s, "nobody", &v, &n), REALM_ERR_NOTFOUND);

    /* Revoke by the whole key: the key stops working; again is a no-op. */
    CHECK_EQ_INT(realm_store_key_count(s), 1);
    CHECK_RC(realm_store_key_revoke(s, key), 0);
    CHECK_RC(realm_store_key_lookup(s, key, &tenant), REALM_ERR_NOTFOUND);
    CHECK_RC(realm_store_key_revoke(s, key), 0);
    CHECK_EQ_INT(realm_store_key_count(s), 0);
    CHECK_RC(realm_store_key_list(s, NULL, &v, &n), 0);
    CHECK(n == 1 && v[0].revoked > 0);
    free(v);

    /* Revoke by prefix; an ambiguous prefix is refused naming the keys. With
     * 70 keys, two share their first character (pigeonhole over 62). */
    enum { N = 70 };
    static char keys[N][REALM_KEY_LEN + 1];
    realm_key_info infos[N];
    for (int i = 0; i < N; i++)
        CHECK_RC(realm_store_key_create(s, "other", keys[i], &infos[i]), 0);
    int a = -1, b = -1;
    for (int i = 0; i < N && a < 0; i++)
        for (int j = i + 1; j < N; j++)
            if (keys[i][3] == keys[j][3]) {
                a = i;
                b = j;
                break;
            }
    CHECK(a >= 0);
    if (a >= 0) {
        char pre[5] = {'r', 'k', '-', keys[a][3], 0};
        CHECK_RC(realm_store_key_revoke(s, pre), REALM_ERR_EXISTS);
        CHECK_MSG(contains(realm_last_error(), infos[a].prefix) &&
                      contains(realm_last_error(), infos[b].prefix),
                  "%s", realm_last_error());
        CHECK_RC(realm_store_key_lookup(s, keys[a], &tenant), 0);
        CHECK_RC(realm_store_key_revoke(s, infos[a].prefix), 0);
        CHECK_RC(realm_store_key_lookup(s, keys[a], &tenant), REALM_ERR_NOTFOUND);
        CHECK_RC(realm_store_key_lookup(s, keys[b], &tenant), 0);
        CHECK_EQ_INT(tenant, other.id);
    }
    CHECK_RC(realm_store_key_revoke(s, "rk-"), REALM_ERR_INVAL);
    CHECK_RC(realm_store_key_revoke(s, "nothing"), REALM_ERR_INVAL);
    CHECK_RC(realm_store_key_revoke(s, "rk-abc!"), REALM_ERR_INVAL);
    CHECK_RC(realm_store_key_revoke(s, "rk-1234567890"), REALM_ERR_INVAL); /* 13: too long */
    int nf = 0;
    for (char c = 'a'; c <= 'z' && !nf; c++) { /* some 9-character prefix that is no key */
        char pre[13];
        memset(pre, c, sizeof pre);
        memcpy(pre, "rk-", 3);
        pre[12] = '\0';
        if (realm_store_key_revoke(s, pre) == REALM_ERR_NOTFOUND)
            nf = 1;
    }
    CHECK(nf);
    CHECK_EQ_INT(realm_store_key_count(s), N - 1);

    /* Keys of a removed tenant stop working at once. */
    CHECK_RC(realm_store_tenant_remove(s, "other"), 0);
    CHECK_RC(realm_store_key_lookup(s, keys[b < 0 ? 0 : b], &tenant), REALM_ERR_NOTFOUND);
    CHECK_EQ_INT(realm_store_key_count(s), 0);
    CHECK_RC(realm_store_tenant_add(s, "other", &other), 0); /* a new "other": not its keys */
    CHECK_RC(realm_store_key_lookup(s, keys[b < 0 ? 0 : b], &tenant), REALM_ERR_NOTFOUND);
    realm_store_close(s);
}

/* ---- usage -------------------------------------------------------------------- */

enum { N_THREADS = 8, N_RECORDS = 2000 };

typedef struct rec_arg {
    realm_store *s;
    int64_t tenants[2];
    int id;
    int failures; /* counted here, checked after join: CHECK is not thread-safe */
} rec_arg;

/* Record i of thread id: tenant, model, user, hour and counts all derived
 * from (id, i), so the sums are known. */
static void make_record(const rec_arg *a, int i, realm_usage *u)
{
    memset(u, 0, sizeof *u);
    u->tenant = a->tenants[i % 2];
    snprintf(u->model, sizeof u->model, "m%d", (i / 2) % 3);
    snprintf(u->user, sizeof u->user, "%s", i % 5 == 0 ? "" : (i % 5 == 1 ? "alice" : "bob"));
    u->hour = i % 7 == 0 ? 7200 + 1234 : 0; /* some in an old hour (not aligned) */
    u->requests = 1;
    u->prompt_tokens = 10 + i % 13;
    u->cached_tokens = i % 4;
    u->completion_tokens = 1 + a->id;
}

static void *record_thread(void *p)
{
    rec_arg *a = p;
    for (int i = 0; i < N_RECORDS; i++) {
        realm_usage u;
        make_record(a, i, &u);
        a->failures += realm_store_usage_record(a->s, &u) != 0;
    }
    return NULL;
}

static void test_usage(void)
{
    const char *dir = new_dir("usage");
    realm_store *s;
    CHECK_RC(realm_store_open(dir, &s), 0);
    realm_tenant t1, t2;
    CHECK_RC(realm_store_tenant_add(s, "t1", &t1), 0);
    CHECK_RC(realm_store_tenant_add(s, "t2", &t2), 0);

    realm_usage *v;
    int32_t n;
    CHECK_RC(realm_store_usage_query(s, NULL, 0, &v, &n), 0); /* empty */
    CHECK_EQ_INT(n, 0);
    free(v);

    pthread_t th[N_THREADS];
    rec_arg args[N_THREADS];
    int64_t want_req = 0, want_prompt = 0, want_cached = 0, want_compl = 0, want_t1 = 0,
            want_t1_recent = 0;
    time_t start = time(NULL);
    for (int k = 0; k < N_THREADS; k++) {
        args[k] = (rec_arg){s, {t1.id, t2.id}, k, 0};
        for (int i = 0; i < N_RECORDS; i++) {
            realm_usage u;
            make_record(&args[k], i, &u);
            want_req += u.requests;
            want_prompt += u.prompt_tokens;
            want_cached += u.cached_tokens;
            want_compl += u.completion_tokens;
            if (u.tenant == t1.id) {
                want_t1 += u.prompt_tokens + u.completion_tokens;
                if (u.hour == 0)
                    want_t1_recent += u.prompt_tokens + u.completion_tokens;
            }
        }
        pthread_create(&th[k], NULL, record_thread, &args[k]);
    }
    for (int k = 0; k < N_THREADS; k++) {
        pthread_join(th[k], NULL);
        CHECK_EQ_INT(args[k].failures, 0);
    }
    /* Queued or written, every record counts. */
    CHECK_EQ_INT(realm_store_usage_tokens(s, t1.id, 0), want_t1);
    CHECK_EQ_INT(realm_store_usage_tokens(s, t1.id, start), want_t1_recent);
    CHECK_RC(realm_store_flush(s), 0);
    CHECK_EQ_INT(realm_store_usage_tokens(s, t1.id, 0), want_t1);

    CHECK_RC(realm_store_usage_query(s, NULL, 0, &v, &n), 0);
    int64_t req = 0, prompt = 0, cached = 0, compl = 0;
    bool ordered = true;
    for (int32_t i = 0; i < n; i++) {
        req += v[i].requests;
        prompt += v[i].prompt_tokens;
        cached += v[i].cached_tokens;
        compl += v[i].completion_tokens;
        CHECK(v[i].hour % 3600 == 0);
        if (i > 0) {
            const realm_usage *p = &v[i - 1], *q = &v[i];
            int c = p->hour != q->hour           ? (p->hour < q->hour ? -1 : 1)
                    : p->tenant != q->tenant     ? (p->tenant < q->tenant ? -1 : 1)
                    : strcmp(p->model, q->model) ? strcmp(p->model, q->model)
                                                 : strcmp(p->user, q->user);
            ordered &= c < 0;
        }
    }
    CHECK(ordered);
    /* 2 tenants x 3 models x 3 users, in 2 hours (now and 7200), at most. */
    CHECK(n > 0 && n <= 2 * 3 * 3 * 2);
    CHECK_EQ_INT(req, want_req);
    CHECK_EQ_INT(prompt, want_prompt);
    CHECK_EQ_INT(cached, want_cached);
    CHECK_EQ_INT(compl, want_compl);
    if (n > 0)
        CHECK_EQ_INT(v[0].hour, 7200);
    free(v);
    CHECK_RC(realm_store_usage_query(s, "t1", start, &v, &n), 0);
    int64_t t1_recent = 0;
    for (int32_t i = 0; i < n; i++) {
        CHECK_EQ_INT(v[i].tenant, t1.id);
        t1_recent += v[i].prompt_tokens + v[i].completion_tokens;
    }
    CHECK_EQ_INT(t1_recent, want_t1_recent);
    free(v);
    CHECK_RC(realm_store_usage_query(s, "nobody", 0, &v, &n), REALM_ERR_NOTFOUND);

    realm_usage bad = {.tenant = 0, .requests = 1};
    CHECK_RC(realm_store_usage_record(s, &bad), REALM_ERR_INVAL);
    bad.tenant = t1.id;
    bad.prompt_tokens = -1;
    CHECK_RC(realm_store_usage_record(s, &bad), REALM_ERR_INVAL);

    /* While another connection holds the write lock, records stay queued and
     * still count; they are written once it is released. */
    int64_t base = realm_store_usage_tokens(s, t2.id, 3600 * 5);
    sqlite3 *db = raw_open(dir);
    CHECK(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    realm_usage u = {.tenant = t2.id, .requests = 1, .prompt_tokens = 1000, .hour = 3600 * 5};
    strcpy(u.model, "locked");
    CHECK_RC(realm_store_usage_record(s, &u), 0);
    CHECK_EQ_INT(realm_store_usage_tokens(s, t2.id, 3600 * 5), base + 1000);
    CHECK_EQ_INT(raw_int(db, "SELECT count(*) FROM usage WHERE model = 'locked'"), 0);
    /* A flush that cannot write (after the 5 s busy timeout) keeps them. */
    CHECK_RC(realm_store_flush(s), REALM_ERR_IO);
    CHECK_MSG(contains(realm_last_error(), "locked"), "%s", realm_last_error());
    CHECK_EQ_INT(realm_store_usage_tokens(s, t2.id, 3600 * 5), base + 1000);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    CHECK_RC(realm_store_flush(s), 0);
    CHECK_EQ_INT(raw_int(db, "SELECT sum(prompt_tokens) FROM usage WHERE model = 'locked'"), 1000);
    CHECK_EQ_INT(realm_store_usage_tokens(s, t2.id, 3600 * 5), base + 1000);

    /* Usage stays when its tenant goes. */
    CHECK_RC(realm_store_tenant_remove(s, "t2"), 0);
    CHECK_EQ_INT(raw_int(db, "SELECT count(*) FROM usage WHERE model = 'locked'"), 1);

    /* Close writes what is queued. */
    u.tenant = t1.id;
    u.hour = 0;
    strcpy(u.model, "at-close");
    strcpy(u.user, "carol");
    CHECK_RC(realm_store_usage_record(s, &u), 0);
    CHECK_RC(realm_store_usage_record(s, &u), 0);
    realm_store_close(s);
    CHECK_EQ_INT(raw_int(db, "SELECT sum(requests) FROM usage WHERE model = 'at-close' AND "
                             "user = 'carol'"),
                 2);
    sqlite3_close(db);
    CHECK_RC(realm_store_open(dir, &s), 0);
    CHECK_EQ_INT(realm_store_usage_tokens(s, t1.id, 0), want_t1 + 2000);
    realm_store_close(s);
}

/* ---- changes across connections ------------------------------------------------ */

static void test_changed(void)
{
    const char *dir = new_dir("changed");
    realm_store *a, *b;
    CHECK_RC(realm_store_open(dir, &a), 0);
    CHECK_RC(realm_store_open(dir, &b), 0);
    CHECK(realm_store_changed(a)); /* the first call */
    CHECK(!realm_store_changed(a));
    realm_tenant t;
    CHECK_RC(realm_store_tenant_add(a, "mine", &t), 0); /* through the same store */
    CHECK(realm_store_changed(a));
    CHECK(!realm_store_changed(a));
    CHECK(realm_store_changed(b));
    CHECK(!realm_store_changed(b));

    realm_tenant bt;
    CHECK_RC(realm_store_tenant_get(b, "mine", &bt), 0);
    bt.rpm = 7;
    CHECK_RC(realm_store_tenant_update(b, &bt), 0); /* another connection */
    CHECK(realm_store_changed(a));
    CHECK(!realm_store_changed(a));
    CHECK_RC(realm_store_tenant_get(a, "mine", &t), 0);
    CHECK_EQ_INT(t.rpm, 7);
    char key[REALM_KEY_LEN + 1];
    CHECK_RC(realm_store_key_create(b, "mine", key, NULL), 0);
    CHECK(realm_store_changed(a));
    int64_t id;
    CHECK_RC(realm_store_key_lookup(a, key, &id), 0);
    CHECK_RC(realm_store_key_revoke(b, key), 0);
    CHECK(realm_store_changed(a));
    CHECK_RC(realm_store_key_lookup(a, key, &id), REALM_ERR_NOTFOUND);
    CHECK_RC(realm_store_tenant_remove(b, "mine"), 0);
    CHECK(realm_store_changed(a));
    CHECK(!realm_store_changed(a));
    /* a's own usage writes are not changes of tenants or keys */
    realm_usage u = {.tenant = t.id, .requests = 1};
    CHECK_RC(realm_store_usage_record(a, &u), 0);
    CHECK_RC(realm_store_flush(a), 0);
    CHECK(!realm_store_changed(a));
    realm_store_close(b);
    realm_store_close(a);
}

/* ---- modules ------------------------------------------------------------------- */

typedef struct put_arg {
    realm_store *s;
    const unsigned char *data;
    size_t len;
    char sha[65];
    int failures;
} put_arg;

static void *put_thread(void *p)
{
    put_arg *a = p;
    for (int i = 0; i < 20; i++)
        a->failures += realm_store_module_put(a->s, a->data, a->len, a->sha) != 0;
    return NULL;
}

static void test_modules(void)
{
    const char *dir = new_dir("modules");
    realm_store *s;
    CHECK_RC(realm_store_open(dir, &s), 0);
    static unsigned char big[300000], small[] = "\0asm\1\0\0\0";
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(test_rand_u64() >> 56);
    char sha[65], path[1024];
    CHECK_RC(realm_store_module_put(s, big, sizeof big, sha), 0);
    unsigned char md[32];
    unsigned int mdlen;
    char hex[65];
    EVP_Digest(big, sizeof big, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    CHECK_EQ_STR(sha, hex);
    CHECK_RC(realm_store_module_path(s, sha, path, sizeof path), 0);
    char want[1024];
    snprintf(want, sizeof want, "%s/modules/%s.wasm", dir, sha);
    CHECK_EQ_STR(path, want);
    CHECK_EQ_INT(file_mode(path), 0600);
    snprintf(want, sizeof want, "%s/modules", dir);
    CHECK_EQ_INT(file_mode(want), 0700);
    struct stat st1, st2;
    stat(path, &st1);
    char sha2[65];
    CHECK_RC(realm_store_module_put(s, big, sizeof big, sha2), 0); /* idempotent: same file */
    CHECK_EQ_STR(sha2, sha);
    stat(path, &st2);
    CHECK(st1.st_ino == st2.st_ino);

    /* Several threads putting the same and other bytes at once: every file
     * is whole, no temporary file is left. */
    put_arg pa[4] = {{s, big, sizeof big, "", 0},
                     {s, big, sizeof big, "", 0},
                     {s, small, sizeof small - 1, "", 0},
                     {s, big, 1000, "", 0}};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, put_thread, &pa[i]);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(pa[i].failures, 0);
    }
    CHECK_EQ_STR(pa[0].sha, sha);
    CHECK_EQ_STR(pa[1].sha, sha);
    DIR *d = opendir(want);
    int files = 0, temps = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            temps++;
        else if (e->d_name[0] != '.')
            files++;
    }
    if (d)
        closedir(d);
    CHECK_EQ_INT(files, 3);
    CHECK_EQ_INT(temps, 0);
    for (int i = 2; i < 4; i++) {
        CHECK_RC(realm_store_module_path(s, pa[i].sha, path, sizeof path), 0);
        struct stat st;
        CHECK(stat(path, &st) == 0 && (size_t)st.st_size == pa[i].len);
        FILE *f = fopen(path, "rb");
        unsigned char buf[1000];
        size_t got = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f)
            fclose(f);
        CHECK(got == pa[i].len && memcmp(buf, pa[i].data, got) == 0);
    }

    char none[65];
    memset(none, '0', 64);
    none[64] = '\0';
    CHECK_RC(realm_store_module_path(s, none, path, sizeof path), REALM_ERR_NOTFOUND);
    CHECK_RC(realm_store_module_path(s, "../../etc/passwd", path, sizeof path), REALM_ERR_INVAL);
    CHECK_RC(realm_store_module_path(s, sha, path, 10), REALM_ERR_RANGE);

    /* A tenant's module: only a stored one. */
    realm_tenant t;
    CHECK_RC(realm_store_tenant_add(s, "wasm", &t), 0);
    strcpy(t.module_sha256, sha);
    CHECK_RC(realm_store_tenant_update(s, &t), 0);
    CHECK_RC(realm_store_tenant_get(s, "wasm", &t), 0);
    CHECK_EQ_STR(t.module_sha256, sha);
    strcpy(t.module_sha256, none);
    CHECK_RC(realm_store_tenant_update(s, &t), REALM_ERR_INVAL);
    CHECK_MSG(contains(realm_last_error(), "module_sha256"), "%s", realm_last_error());
    t.module_sha256[0] = '\0'; /* back to the default module */
    CHECK_RC(realm_store_tenant_update(s, &t), 0);
    realm_store_close(s);
}

/* ---- key-value data --------------------------------------------------------------- */

/* A version 1 database (made by the previous build: no kv tables, no
 * kv_quota) is brought forward with its tenants. */
static void test_kv_migration(void)
{
    const char *dir = new_dir("kv-migrate");
    realm_store *s;
    CHECK_RC(realm_store_open(dir, &s), 0);
    realm_tenant t;
    CHECK_RC(realm_store_tenant_add(s, "old", &t), 0);
    t.rpm = 5;
    CHECK_RC(realm_store_tenant_update(s, &t), 0);
    realm_store_close(s);
    sqlite3 *db = raw_open(dir);
    CHECK_EQ_INT(sqlite3_exec(db,
                              "DROP TRIGGER kv_insert; DROP TRIGGER kv_delete; DROP TRIGGER "
                              "kv_update; DROP TABLE kv; DROP TABLE kv_usage; ALTER TABLE tenants "
                              "DROP COLUMN kv_quota; PRAGMA user_version = 1;",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    CHECK_RC(realm_store_open(dir, &s), 0);
    realm_tenant g;
    CHECK_RC(realm_store_tenant_get(s, "old", &g), 0);
    CHECK_EQ_INT(g.rpm, 5);
    CHECK_EQ_INT(g.kv_quota, 0);
    CHECK_RC(realm_store_kv_put(s, g.id, "k", "v", 1, 0), 0);
    CHECK_EQ_INT(realm_store_kv_get(s, g.id, "k", NULL, 0), 1);
    realm_store_close(s);
    db = raw_open(dir);
    CHECK_EQ_INT(raw_int(db, "PRAGMA user_version"), 2);
    sqlite3_close(db);
}

static void test_kv_crud(void)
{
    const char *dir = new_dir("kv");
    realm_store *s;
    CHECK_RC(realm_store_open(dir, &s), 0);
    realm_tenant a, b;
    CHECK_RC(realm_store_tenant_add(s, "a", &a), 0);
    CHECK_RC(realm_store_tenant_add(s, "b", &b), 0);
    CHECK_EQ_INT(a.kv_quota, 0);
    CHECK(realm_store_changed(s));

    char buf[64];
    memset(buf, '#', sizeof buf);
    CHECK_EQ_INT(realm_store_kv_get(s, a.id, "greeting", buf, sizeof buf), REALM_ERR_NOTFOUND);
    CHECK_MSG(contains(realm_last_error(), "no key 'greeting'"), "%s", realm_last_error());
    CHECK_RC(realm_store_kv_put(s, a.id, "greeting", "hello", 5, 0), 0);
    CHECK_EQ_INT(realm_store_kv_get(s, a.id, "greeting", buf, sizeof buf), 5);
    CHECK(memcmp(buf, "hello#", 6) == 0);
    /* the buffer rule: the length, and nothing written unless it fits */
    memset(buf, '#', sizeof buf);
    CHECK_EQ_INT(realm_store_kv_get(s, a.id, "greeting", buf, 4), 5);
    CHECK_EQ_INT(realm_store_kv_get(s, a.id, "greeting", NULL, 0), 5);
    CHECK(buf[0] == '#');
    CHECK_EQ_INT(realm_store_kv_get(s, a.id, "greeting", buf, 5), 5);
    CHECK(memcmp(buf, "hello#", 6) == 0);
    void *v = NULL;
    size_t n = 0;
    CHECK_RC(realm_store_kv_get_alloc(s, a.id, "greeting", &v, &n), 0);
    CHECK(n == 5 && v && strcmp(v, "hello") == 0);
    free(v);
    CHECK_RC(realm_store_kv_get_alloc(s, a.id, "nothing", &v, &n), REALM_ERR_NOTFOUND);
    CHECK(v == NULL && n == 0);

    /* replace: the new value, the size counted once */
    CHECK_RC(realm_store_kv_put(s, a.id, "greeting", "hi there", 8, 0), 0);
    CHECK_EQ_INT(realm_store_kv_get(s, a.id, "greeting", buf, sizeof buf), 8);
    CHECK(memcmp(buf, "hi there", 8) == 0);
    int64_t bytes = -1, keys = -1;
    CHECK_RC(realm_store_kv_usage(s, a.id, &bytes, &keys), 0);
    CHECK_EQ_INT(bytes, 8 + 8);
    CHECK_EQ_INT(keys, 1);
    /* binary and empty values */
    CHECK_RC(realm_store_kv_put(s, a.id, "bin", "\0\1\0", 3, 0), 0);
    CHECK_EQ_INT(realm_store_kv_get(s, a.id, "bin", buf, sizeof buf), 3);
    CHECK(memcmp(buf, "\0\1\0", 3) == 0);
    CHECK_RC(realm_store_kv_put(s, a.id, "empty", NULL, 0, 0), 0);
    CHECK_EQ_INT(realm_store_kv_get(s, a.id, "empty", buf, sizeof buf), 0);
    CHECK_RC(realm_store_kv_get_alloc(s, a.id, "empty", &v, &n), 0);
    CHECK(n == 0 && v && ((char *)v)[0] == '\0');
    free(v);
    CHECK_RC(realm_store_kv_usage(s, a.id, &bytes, &keys), 0);
    CHECK_EQ_INT(bytes, 16 + 6 + 5);
    CHECK_EQ_INT(keys, 3);
    /* key-value writes are not changes of tenants or keys */
    CHECK(!realm_store_changed(s));

    /* delete */
    CHECK_RC(realm_store_kv_delete(s, a.id, "greeting"), 0);
    CHECK_EQ_INT(realm_store_kv_get(s, a.id, "greeting", buf, sizeof buf), REALM_ERR_NOTFOUND);
    CHECK_RC(realm_store_kv_delete(s, a.id, "greeting"), REALM_ERR_NOTFOUND);
    CHECK_MSG(contains(realm_last_error(), "no key 'greeting'"), "%s", realm_last_error());
    CHECK_RC(realm_store_kv_usage(s, a.id, &bytes, &keys), 0);
    CHECK_EQ_INT(bytes, 6 + 5);
    CHECK_EQ_INT(keys, 2);

    /* isolation: b sees, lists, deletes and overwrites none of a's keys */
    CHECK_EQ_INT(realm_store_kv_get(s, b.id, "bin", buf, sizeof buf), REALM_ERR_NOTFOUND);
    CHECK_RC(realm_store_kv_delete(s, b.id, "bin"), REALM_ERR_NOTFOUND);
    char **list = NULL;
    int32_t nl = -1;
    bool more = true;
    CHECK_RC(realm_store_kv_list(s, b.id, NULL, NULL, 100, &list, &nl, &more), 0);
    CHECK_EQ_INT(nl, 0);
    CHECK(!more);
    free(list);
    CHECK_RC(realm_store_kv_put(s, b.id, "bin", "b's", 3, 0), 0);
    CHECK_EQ_INT(realm_store_kv_get(s, a.id, "bin", buf, sizeof buf), 3);
    CHECK(memcmp(buf, "\0\1\0", 3) == 0);
    CHECK_EQ_INT(realm_store_kv_get(s, b.id, "bin", buf, sizeof buf), 3);
    CHECK(memcmp(buf, "b's", 3) == 0);
    CHECK_RC(realm_store_kv_usage(s, b.id, &bytes, &keys), 0);
    CHECK_EQ_INT(bytes, 6);
    CHECK_RC(realm_store_kv_usage(s, a.id, &bytes, &keys), 0);
    CHECK_EQ_INT(bytes, 6 + 5);

    /* bad tenants; a removed tenant's data goes with it */
    CHECK_RC(realm_store_kv_put(s, 0, "k", "v", 1, 0), REALM_ERR_INVAL);
    CHECK_RC(realm_store_kv_put(s, 99999, "k", "v", 1, 0), REALM_ERR_NOTFOUND);
    CHECK_MSG(contains(realm_last_error(), "no tenant with id 99999"), "%s", realm_last_error());
    CHECK_RC(realm_store_tenant_remove(s, "b"), 0);
    CHECK_EQ_INT(realm_store_kv_get(s, b.id, "bin", buf, sizeof buf), REALM_ERR_NOTFOUND);
    CHECK_EQ_INT(realm_store_kv_get(s, a.id, "bin", buf, sizeof buf), 3);
    realm_store_close(s);
    sqlite3 *db = raw_open(dir);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM kv WHERE tenant = %lld", (long long)b.id);
    CHECK_EQ_INT(raw_int(db, sql), 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM kv_usage WHERE tenant = %lld", (long long)b.id);
    CHECK_EQ_INT(raw_int(db, sql), 0);
    snprintf(sql, sizeof sql, "SELECT bytes FROM kv_usage WHERE tenant = %lld", (long long)a.id);
    CHECK_EQ_INT(raw_int(db, sql), 11);
    sqlite3_close(db);
}

static void test_kv_limits(void)
{
    realm_store *s;
    CHECK_RC(realm_store_open(new_dir("kv-limits"), &s), 0);
    realm_tenant t;
    CHECK_RC(realm_store_tenant_add(s, "t", &t), 0);
    realm_kv_limits l;
    realm_store_kv_get_limits(s, &l);
    CHECK_EQ_INT(l.max_value, 1 << 20);
    CHECK_EQ_INT(l.default_quota, 64 << 20);

    /* keys: 1..512 bytes of UTF-8 without control characters */
    char key[600];
    memset(key, 'k', sizeof key);
    key[512] = '\0';
    CHECK_RC(realm_store_kv_put(s, t.id, key, "v", 1, 0), 0);
    CHECK_EQ_INT(realm_store_kv_get(s, t.id, key, NULL, 0), 1);
    key[512] = 'k';
    key[513] = '\0';
    CHECK_RC(realm_store_kv_put(s, t.id, key, "v", 1, 0), REALM_ERR_INVAL);
    CHECK_MSG(contains(realm_last_error(), "longer than 512 bytes"), "%s", realm_last_error());
    CHECK_EQ_INT(realm_store_kv_get(s, t.id, key, NULL, 0), REALM_ERR_INVAL);
    CHECK_RC(realm_store_kv_delete(s, t.id, key), REALM_ERR_INVAL);
    CHECK_RC(realm_store_kv_put(s, t.id, "", "v", 1, 0), REALM_ERR_INVAL);
    CHECK_MSG(contains(realm_last_error(), "empty"), "%s", realm_last_error());
    CHECK_RC(realm_store_kv_put(s, t.id, NULL, "v", 1, 0), REALM_ERR_INVAL);
    static const char *const bad[] = {
        "\xff",
        "a\xc3",
        "\xc0\x80" /* overlong NUL */,
        "\xed\xa0\x80" /* surrogate */,
        "\xf4\x90\x80\x80" /* > U+10FFFF */,
        "line\nbreak",
        "tab\t",
        "del\x7f",
        "c1\xc2\x85" /* NEL */,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_MSG(realm_store_kv_put(s, t.id, bad[i], "v", 1, 0) == REALM_ERR_INVAL, "key %zu", i);
        CHECK_MSG(contains(realm_last_error(), "kv: the key"), "%s", realm_last_error());
    }
    static const char *const good[] = {
        "a",       "caf\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x98\x80", "a b/c:d?e=f&g#h",
        "\xc2\xa0"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK_MSG(realm_store_kv_put(s, t.id, good[i], "v", 1, 0) == 0, "key %zu: %s", i,
                  realm_last_error());

    /* values: up to the store's maximum */
    const size_t max = (size_t)1 << 20;
    char *big = calloc(1, max + 1);
    CHECK_RC(realm_store_kv_put(s, t.id, "big", big, max, 0), 0);
    CHECK_EQ_INT(realm_store_kv_get(s, t.id, "big", NULL, 0), (int64_t)max);
    CHECK_RC(realm_store_kv_put(s, t.id, "big", big, max + 1, 0), REALM_ERR_RANGE);
    CHECK_MSG(contains(realm_last_error(), "1048577 bytes, over the 1048576"), "%s",
              realm_last_error());
    CHECK_EQ_INT(realm_store_kv_get(s, t.id, "big", NULL, 0), (int64_t)max); /* unchanged */
    free(big);
    CHECK_RC(realm_store_kv_set_limits(s, &(realm_kv_limits){.max_value = 10}), 0);
    CHECK_RC(realm_store_kv_put(s, t.id, "ten", "0123456789", 10, 0), 0);
    CHECK_RC(realm_store_kv_put(s, t.id, "ten", "0123456789a", 11, 0), REALM_ERR_RANGE);
    realm_store_kv_get_limits(s, &l);
    CHECK_EQ_INT(l.max_value, 10);
    CHECK_EQ_INT(l.default_quota, 64 << 20); /* 0: the default */
    CHECK_RC(realm_store_kv_set_limits(s, &(realm_kv_limits){.max_value = -1}), REALM_ERR_INVAL);
    CHECK_RC(
        realm_store_kv_set_limits(s, &(realm_kv_limits){.max_value = REALM_KV_VALUE_MAX_LIMIT + 1}),
        REALM_ERR_INVAL);
    CHECK_RC(
        realm_store_kv_set_limits(s, &(realm_kv_limits){.default_quota = REALM_KV_QUOTA_MAX + 1}),
        REALM_ERR_INVAL);
    CHECK_RC(realm_store_kv_put(s, t.id, "x", "v", 1, -1), REALM_ERR_INVAL);
    CHECK_RC(realm_store_kv_put(s, t.id, "x", NULL, 1, 0), REALM_ERR_INVAL);

    /* the tenant's kv_quota: round trip, checked like the other limits */
    t.kv_quota = 12345;
    CHECK_RC(realm_store_tenant_update(s, &t), 0);
    realm_tenant g;
    CHECK_RC(realm_store_tenant_get(s, "t", &g), 0);
    CHECK_EQ_INT(g.kv_quota, 12345);
    CHECK_RC(realm_store_tenant_get_id(s, t.id, &g), 0);
    CHECK_EQ_INT(g.kv_quota, 12345);
    realm_tenant *all;
    int32_t n_all;
    CHECK_RC(realm_store_tenant_list(s, &all, &n_all), 0);
    CHECK(n_all == 1 && all[0].kv_quota == 12345);
    free(all);
    g.kv_quota = -1;
    CHECK_RC(realm_store_tenant_update(s, &g), REALM_ERR_INVAL);
    CHECK_MSG(contains(realm_last_error(), "kv_quota: -1 is not in 0..1099511627776 (0: the "
                                           "default)"),
              "%s", realm_last_error());
    g.kv_quota = REALM_KV_QUOTA_MAX + 1;
    CHECK_RC(realm_store_tenant_update(s, &g), REALM_ERR_INVAL);
    g.kv_quota = REALM_KV_QUOTA_MAX;
    CHECK_RC(realm_store_tenant_update(s, &g), 0);
    realm_store_close(s);
}

/* The quota: exactly at it, one byte over, replacements, the default. */
static void test_kv_quota(void)
{
    realm_store *s;
    CHECK_RC(realm_store_open(new_dir("kv-quota"), &s), 0);
    realm_tenant t, d;
    CHECK_RC(realm_store_tenant_add(s, "q", &t), 0);
    CHECK_RC(realm_store_tenant_add(s, "d", &d), 0);
    t.kv_quota = 1000;
    CHECK_RC(realm_store_tenant_update(s, &t), 0);
    char v[1000];
    memset(v, 'v', sizeof v);
    CHECK_RC(realm_store_kv_put(s, t.id, "k1", v, 498, 0), 0); /* 500 with the key */
    CHECK_RC(realm_store_kv_put(s, t.id, "k2", v, 498, 0), 0); /* 1000: at the quota */
    int64_t bytes, keys;
    CHECK_RC(realm_store_kv_usage(s, t.id, &bytes, &keys), 0);
    CHECK_EQ_INT(bytes, 1000);
    CHECK_RC(realm_store_kv_put(s, t.id, "k", v, 0, 0), REALM_ERR_RANGE); /* 1001 */
    CHECK_MSG(contains(realm_last_error(), "to 1001 bytes, over its quota of 1000"), "%s",
              realm_last_error());
    CHECK_EQ_INT(realm_store_kv_get(s, t.id, "k", NULL, 0), REALM_ERR_NOTFOUND);
    /* a replacement counts the difference */
    CHECK_RC(realm_store_kv_put(s, t.id, "k2", v, 499, 0), REALM_ERR_RANGE);
    CHECK_EQ_INT(realm_store_kv_get(s, t.id, "k2", NULL, 0), 498); /* unchanged */
    CHECK_RC(realm_store_kv_put(s, t.id, "k2", v, 497, 0), 0);     /* 999 */
    CHECK_RC(realm_store_kv_put(s, t.id, "k", v, 0, 0), 0);        /* 1000 again */
    CHECK_RC(realm_store_kv_put(s, t.id, "k2", v, 497, 0), 0);     /* the same size: fine */
    CHECK_RC(realm_store_kv_usage(s, t.id, &bytes, &keys), 0);
    CHECK_EQ_INT(bytes, 1000);
    CHECK_EQ_INT(keys, 3);
    /* deleting frees room */
    CHECK_RC(realm_store_kv_delete(s, t.id, "k1"), 0);
    CHECK_RC(realm_store_kv_put(s, t.id, "k3", v, 498, 0), 0);
    /* raising the quota lets more in at once */
    t.kv_quota = 2000;
    CHECK_RC(realm_store_tenant_update(s, &t), 0);
    CHECK_RC(realm_store_kv_put(s, t.id, "k4", v, 998, 0), 0);
    CHECK_RC(realm_store_kv_put(s, t.id, "k5", v, 0, 0), REALM_ERR_RANGE);
    /* kv_quota 0: the store's default */
    CHECK_RC(realm_store_kv_set_limits(s, &(realm_kv_limits){.default_quota = 100}), 0);
    CHECK_RC(realm_store_kv_put(s, d.id, "a", v, 99, 0), 0);
    CHECK_RC(realm_store_kv_put(s, d.id, "b", v, 0, 0), REALM_ERR_RANGE);
    CHECK_MSG(contains(realm_last_error(), "over its quota of 100"), "%s", realm_last_error());
    realm_store_close(s);
}

static void test_kv_expiry(void)
{
    realm_store *s;
    CHECK_RC(realm_store_open(new_dir("kv-expiry"), &s), 0);
    realm_tenant t;
    CHECK_RC(realm_store_tenant_add(s, "e", &t), 0);
    const int64_t now = (int64_t)time(NULL);
    CHECK_RC(realm_store_kv_put(s, t.id, "forever", "f", 1, 0), 0);
    CHECK_RC(realm_store_kv_put(s, t.id, "soon", "s", 1, now + 2), 0);
    CHECK_RC(realm_store_kv_put(s, t.id, "later", "l", 1, now + 3600), 0);
    CHECK_RC(realm_store_kv_put(s, t.id, "past", "p", 1, now - 10), 0); /* stored, absent */
    CHECK_EQ_INT(realm_store_kv_get(s, t.id, "soon", NULL, 0), 1);
    CHECK_EQ_INT(realm_store_kv_get(s, t.id, "past", NULL, 0), REALM_ERR_NOTFOUND);
    char **keys;
    int32_t n;
    CHECK_RC(realm_store_kv_list(s, t.id, "", "", 10, &keys, &n, NULL), 0);
    CHECK(n == 3 && strcmp(keys[0], "forever") == 0 && strcmp(keys[1], "later") == 0 &&
          strcmp(keys[2], "soon") == 0);
    free(keys);
    int64_t bytes, count;
    CHECK_RC(realm_store_kv_usage(s, t.id, &bytes, &count), 0);
    CHECK_EQ_INT(count, 4); /* expired, not yet purged */
    CHECK_EQ_INT(realm_store_kv_purge(s, now), 1);
    CHECK_RC(realm_store_kv_usage(s, t.id, &bytes, &count), 0);
    CHECK_EQ_INT(count, 3);
    CHECK_EQ_INT(bytes, 7 + 1 + 4 + 1 + 5 + 1);
    /* a put replaces the expiry */
    CHECK_RC(realm_store_kv_put(s, t.id, "later", "l", 1, 0), 0);
    /* time passes: "soon" is gone for get, list and delete */
    while ((int64_t)time(NULL) < now + 2)
        usleep(50000);
    CHECK_EQ_INT(realm_store_kv_get(s, t.id, "soon", NULL, 0), REALM_ERR_NOTFOUND);
    CHECK_RC(realm_store_kv_list(s, t.id, "", "", 10, &keys, &n, NULL), 0);
    CHECK(n == 2 && strcmp(keys[0], "forever") == 0 && strcmp(keys[1], "later") == 0);
    free(keys);
    CHECK_RC(realm_store_kv_delete(s, t.id, "soon"), REALM_ERR_NOTFOUND); /* and removed */
    CHECK_RC(realm_store_kv_usage(s, t.id, &bytes, &count), 0);
    CHECK_EQ_INT(count, 2);
    CHECK_EQ_INT(realm_store_kv_purge(s, 0), 0);
    /* a purge at a later time takes what expires by then, of every tenant */
    realm_tenant u;
    CHECK_RC(realm_store_tenant_add(s, "u", &u), 0);
    for (int i = 0; i < 600; i++) { /* more than one batch */
        char k[16];
        snprintf(k, sizeof k, "t%d", i);
        CHECK_RC(realm_store_kv_put(s, i % 2 ? t.id : u.id, k, "x", 1, now + 100 + i), 0);
    }
    CHECK_EQ_INT(realm_store_kv_purge(s, now + 100 + 299), 300);
    CHECK_EQ_INT(realm_store_kv_purge(s, now + 100000), 300);
    CHECK_RC(realm_store_kv_usage(s, u.id, &bytes, &count), 0);
    CHECK_EQ_INT(count, 0);
    CHECK_EQ_INT(bytes, 0);
    /* over the quota, a put first drops the tenant's expired entries */
    t.kv_quota = 100;
    CHECK_RC(realm_store_tenant_update(s, &t), 0);
    CHECK_RC(realm_store_kv_delete(s, t.id, "forever"), 0);
    CHECK_RC(realm_store_kv_delete(s, t.id, "later"), 0);
    char v[100] = {0};
    CHECK_RC(realm_store_kv_put(s, t.id, "old", v, 90, now - 1), 0); /* 93, expired */
    CHECK_RC(realm_store_kv_put(s, t.id, "new", v, 50, 0), 0);
    CHECK_RC(realm_store_kv_usage(s, t.id, &bytes, &count), 0);
    CHECK_EQ_INT(bytes, 53);
    CHECK_EQ_INT(count, 1);
    realm_store_close(s);
}

/* Listing by prefix in key order, page by page, over many keys. */
static void test_kv_list(void)
{
    realm_store *s;
    CHECK_RC(realm_store_open(new_dir("kv-list"), &s), 0);
    realm_tenant t, o;
    CHECK_RC(realm_store_tenant_add(s, "l", &t), 0);
    CHECK_RC(realm_store_tenant_add(s, "o", &o), 0);
    enum { N = 2500 };
    char k[64];
    for (int i = N - 1; i >= 0; i--) { /* inserted backwards: the order is the store's */
        snprintf(k, sizeof k, "item/%05d", i);
        CHECK_RC(realm_store_kv_put(s, t.id, k, k, strlen(k), 0), 0);
    }
    static const char *const around[] = {"item", "item.", "iten", "itel", "item/", "\xc3\xa9", "z"};
    for (size_t i = 0; i < sizeof around / sizeof *around; i++)
        CHECK_RC(realm_store_kv_put(s, t.id, around[i], "x", 1, 0), 0);
    CHECK_RC(realm_store_kv_put(s, o.id, "item/other", "x", 1, 0), 0);
    CHECK_RC(realm_store_kv_put(s, t.id, "item/00500x", "x", 1, (int64_t)time(NULL) - 1), 0);

    /* "item/" itself and every item, pages of at most REALM_KV_LIST_MAX */
    char after[64] = "";
    int seen = 0, pages = 0;
    bool more = true;
    while (more && pages < 10) {
        char **keys;
        int32_t n;
        CHECK_RC(realm_store_kv_list(s, t.id, "item/", after, REALM_KV_LIST_MAX, &keys, &n, &more),
                 0);
        pages++;
        for (int32_t i = 0; i < n; i++) {
            if (seen == 0)
                snprintf(k, sizeof k, "item/");
            else
                snprintf(k, sizeof k, "item/%05d", seen - 1);
            CHECK_MSG(strcmp(keys[i], k) == 0, "page %d key %d: %s, want %s", pages, (int)i,
                      keys[i], k);
            seen++;
        }
        if (n)
            snprintf(after, sizeof after, "%s", keys[n - 1]);
        CHECK_EQ_INT(more, seen < N + 1);
        free(keys);
    }
    CHECK_EQ_INT(seen, N + 1);
    CHECK_EQ_INT(pages, 3);

    /* every key, in byte order (é, 0xc3 0xa9, after z) */
    char **keys;
    int32_t n;
    CHECK_RC(realm_store_kv_list(s, t.id, NULL, NULL, 4, &keys, &n, &more), 0);
    CHECK(n == 4 && more);
    if (n == 4) {
        CHECK_EQ_STR(keys[0], "itel");
        CHECK_EQ_STR(keys[1], "item");
        CHECK_EQ_STR(keys[2], "item.");
        CHECK_EQ_STR(keys[3], "item/");
    }
    free(keys);
    CHECK_RC(realm_store_kv_list(s, t.id, "", "item/02499", 10, &keys, &n, &more), 0);
    CHECK(n == 3 && !more);
    if (n == 3) {
        CHECK_EQ_STR(keys[0], "iten");
        CHECK_EQ_STR(keys[1], "z");
        CHECK_EQ_STR(keys[2], "\xc3\xa9");
    }
    free(keys);
    /* exactly the limit left: no more */
    CHECK_RC(realm_store_kv_list(s, t.id, "item/0249", "", 10, &keys, &n, &more), 0);
    CHECK(n == 10 && !more);
    free(keys);
    CHECK_RC(realm_store_kv_list(s, t.id, "item/0249", "", 9, &keys, &n, &more), 0);
    CHECK(n == 9 && more);
    free(keys);
    CHECK_RC(realm_store_kv_list(s, t.id, "nothing", "", 10, &keys, &n, &more), 0);
    CHECK(n == 0 && !more && keys != NULL);
    free(keys);
    /* the other tenant sees its own key only */
    CHECK_RC(realm_store_kv_list(s, o.id, "item/", "", 10, &keys, &n, &more), 0);
    CHECK(n == 1 && strcmp(keys[0], "item/other") == 0);
    free(keys);
    /* bad arguments */
    CHECK_RC(realm_store_kv_list(s, t.id, "", "", 0, &keys, &n, &more), REALM_ERR_INVAL);
    CHECK_RC(realm_store_kv_list(s, t.id, "", "", REALM_KV_LIST_MAX + 1, &keys, &n, &more),
             REALM_ERR_INVAL);
    char long_prefix[600];
    memset(long_prefix, 'p', 513);
    long_prefix[513] = '\0';
    CHECK_RC(realm_store_kv_list(s, t.id, long_prefix, "", 10, &keys, &n, &more), REALM_ERR_INVAL);
    CHECK_MSG(contains(realm_last_error(), "prefix"), "%s", realm_last_error());
    CHECK_RC(realm_store_kv_list(s, t.id, "", long_prefix, 10, &keys, &n, &more), REALM_ERR_INVAL);
    realm_store_close(s);
}

/* Puts of several threads over two connections never take a tenant past its
 * quota: exactly what fits is stored. */
typedef struct kv_arg {
    realm_store *s;
    int64_t tenant;
    int id, ok, over, other;
} kv_arg;

static void *kv_thread(void *p)
{
    kv_arg *a = p;
    char key[16], v[96];
    memset(v, 'x', sizeof v);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "%d-%02d", a->id, i); /* 4 bytes */
        int rc = realm_store_kv_put(a->s, a->tenant, key, v, sizeof v, 0);
        a->ok += rc == 0;
        a->over += rc == REALM_ERR_RANGE;
        a->other += rc != 0 && rc != REALM_ERR_RANGE;
    }
    return NULL;
}

static void test_kv_threads(void)
{
    const char *dir = new_dir("kv-threads");
    realm_store *s1, *s2;
    CHECK_RC(realm_store_open(dir, &s1), 0);
    CHECK_RC(realm_store_open(dir, &s2), 0);
    realm_tenant t;
    CHECK_RC(realm_store_tenant_add(s1, "busy", &t), 0);
    t.kv_quota = 100 * 100; /* 100 entries of 100 bytes */
    CHECK_RC(realm_store_tenant_update(s1, &t), 0);
    pthread_t th[4];
    kv_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (kv_arg){.s = i % 2 ? s2 : s1, .tenant = t.id, .id = i};
        pthread_create(&th[i], NULL, kv_thread, &args[i]);
    }
    int ok = 0, over = 0, other = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].ok;
        over += args[i].over;
        other += args[i].other;
    }
    CHECK_EQ_INT(ok, 100);
    CHECK_EQ_INT(over, 300);
    CHECK_EQ_INT(other, 0);
    int64_t bytes, keys;
    CHECK_RC(realm_store_kv_usage(s2, t.id, &bytes, &keys), 0);
    CHECK_EQ_INT(bytes, 10000);
    CHECK_EQ_INT(keys, 100);
    realm_store_close(s2);
    realm_store_close(s1);
}

int main(void)
{
    test_begin("store", 300);
    snprintf(root, sizeof root, "/tmp/realm-test-store-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_open();
    test_tenants();
    test_keys();
    test_usage();
    test_changed();
    test_modules();
    test_kv_migration();
    test_kv_crud();
    test_kv_limits();
    test_kv_quota();
    test_kv_expiry();
    test_kv_list();
    test_kv_threads();
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return test_end();
}
