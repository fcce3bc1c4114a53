/*
 * Tenants' key-value data (realm/store.h): one row per (tenant, key) in
 * table kv, and per tenant the sum of its entries' sizes in kv_usage, which
 * SQLite's triggers keep (store.c, migration 2). A put checks the quota in
 * the same transaction as its write, so concurrent puts of one tenant (from
 * this process or another) never take it over. Expired entries are skipped
 * by every read and removed by realm_store_kv_purge, in batches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "store_internal.h"

/* Entries a purge removes per transaction. */
#define KV_PURGE_BATCH 256

/* ---- keys ----------------------------------------------------------------------- */

/* The length of the UTF-8 sequence at s[0..n), or 0 if it is not a valid
 * one (overlong forms, surrogates and code points above U+10FFFF are not);
 * *cp gets the code point. */
static size_t utf8_char(const unsigned char *s, size_t n, uint32_t *cp)
{
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t len;
    uint32_t c = s[0];
    if (c < 0x80)
        len = 1;
    else if ((c & 0xe0) == 0xc0)
        len = 2, c &= 0x1f;
    else if ((c & 0xf0) == 0xe0)
        len = 3, c &= 0x0f;
    else if ((c & 0xf8) == 0xf0)
        len = 4, c &= 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

/* REALM_ERR_INVAL unless key is 1..REALM_KV_KEY_MAX bytes of UTF-8 without
 * control characters. The message never quotes a bad key (it may not be
 * text). */
static int check_key(const char *key)
{
    if (!key)
        return realm__error(REALM_ERR_INVAL, "kv: no key");
    const size_t n = strnlen(key, REALM_KV_KEY_MAX + 1);
    if (n == 0)
        return realm__error(REALM_ERR_INVAL, "kv: the key is empty");
    if (n > REALM_KV_KEY_MAX)
        return realm__error(REALM_ERR_INVAL, "kv: the key is longer than %d bytes",
                            REALM_KV_KEY_MAX);
    const unsigned char *s = (const unsigned char *)key;
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        const size_t len = utf8_char(s + i, n - i, &cp);
        if (len == 0)
            return realm__error(REALM_ERR_INVAL, "kv: the key is not valid UTF-8 (at byte %zu)", i);
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return realm__error(REALM_ERR_INVAL,
                                "kv: the key has a control character (U+%04X at byte %zu)",
                                (unsigned)cp, i);
        i += len;
    }
    return 0;
}

/* A valid key for messages: at most 64 bytes, cut at a character boundary
 * ("..." after a cut one). */
typedef struct shown_key {
    char s[64 + 4];
} shown_key;

static shown_key show(const char *key)
{
    shown_key k;
    size_t n = strlen(key);
    if (n <= 64) {
        memcpy(k.s, key, n + 1);
        return k;
    }
    n = 64;
    while (n > 0 && ((unsigned char)key[n] & 0xc0) == 0x80)
        n--; /* key[n] continues a character: cut before it */
    memcpy(k.s, key, n);
    memcpy(k.s + n, "...", 4);
    return k;
}

static int check_tenant_id(int64_t tenant)
{
    return tenant > 0
               ? 0
               : realm__error(REALM_ERR_INVAL, "kv: %lld is not a tenant id", (long long)tenant);
}

/* ---- limits --------------------------------------------------------------------- */

int realm_store_kv_set_limits(realm_store *s, const realm_kv_limits *l)
{
    if (l->max_value < 0 || l->max_value > REALM_KV_VALUE_MAX_LIMIT)
        return realm__error(REALM_ERR_INVAL, "kv: max_value: %lld is not in 0..%lld (0: %lld)",
                            (long long)l->max_value, (long long)REALM_KV_VALUE_MAX_LIMIT,
                            (long long)REALM_KV_VALUE_MAX_DEFAULT);
    if (l->default_quota < 0 || l->default_quota > REALM_KV_QUOTA_MAX)
        return realm__error(REALM_ERR_INVAL, "kv: default_quota: %lld is not in 0..%lld (0: %lld)",
                            (long long)l->default_quota, (long long)REALM_KV_QUOTA_MAX,
                            (long long)REALM_KV_QUOTA_DEFAULT);
    pthread_mutex_lock(&s->db_mu);
    s->kv_max_value = l->max_value ? l->max_value : REALM_KV_VALUE_MAX_DEFAULT;
    s->kv_default_quota = l->default_quota ? l->default_quota : REALM_KV_QUOTA_DEFAULT;
    pthread_mutex_unlock(&s->db_mu);
    return 0;
}

void realm_store_kv_get_limits(realm_store *s, realm_kv_limits *out)
{
    pthread_mutex_lock(&s->db_mu);
    out->max_value = s->kv_max_value;
    out->default_quota = s->kv_default_quota;
    pthread_mutex_unlock(&s->db_mu);
}

/* ---- reading helpers (db_mu held) ------------------------------------------------ */

/* Run a one-row query of (tenant[, key]): the row's first two integers (0 when
 * there is no row; *found says which). */
static int query_ints(realm_store *s, int which, int64_t tenant, const char *key, int64_t *a,
                      int64_t *b, bool *found)
{
    sqlite3_stmt *st = realm__store_stmt(s, which);
    if (!st)
        return REALM_ERR_IO;
    sqlite3_bind_int64(st, 1, tenant);
    if (key)
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    int rc = 0, r = sqlite3_step(st);
    *a = r == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    if (b)
        *b = r == SQLITE_ROW ? sqlite3_column_int64(st, 1) : 0;
    if (found)
        *found = r == SQLITE_ROW;
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        rc = realm__store_db_error(s, "reading key-value data");
    realm__store_done(st);
    return rc;
}

/* The tenant's quota in bytes (its own, or the default), what it uses, and
 * what key's entry takes now (0 if none). */
static int quota_state(realm_store *s, int64_t tenant, const char *key, int64_t *quota,
                       int64_t *used, int64_t *old)
{
    bool found;
    int rc = query_ints(s, STORE_KV_QUOTA, tenant, NULL, quota, NULL, &found);
    if (rc == 0 && !found)
        return realm__error(REALM_ERR_NOTFOUND, "kv: no tenant with id %lld", (long long)tenant);
    if (rc == 0 && *quota == 0)
        *quota = s->kv_default_quota;
    if (rc == 0)
        rc = query_ints(s, STORE_KV_USED, tenant, NULL, used, NULL, NULL);
    if (rc == 0)
        rc = query_ints(s, STORE_KV_SIZE, tenant, key, old, NULL, NULL);
    return rc;
}

/* ---- put, get, delete ------------------------------------------------------------ */

/* Inside the put's transaction: check the quota (purging the tenant's
 * expired entries if it would be exceeded), then write. */
static int put_locked(realm_store *s, int64_t tenant, const char *key, const void *value,
                      size_t len, int64_t expires_at)
{
    const int64_t size = (int64_t)strlen(key) + (int64_t)len, now = realm__store_time();
    int64_t quota = 0, used = 0, old = 0;
    int rc = quota_state(s, tenant, key, &quota, &used, &old);
    if (rc == 0 && used - old + size > quota) {
        sqlite3_stmt *st = realm__store_stmt(s, STORE_KV_PURGE_TENANT);
        if (!st)
            return REALM_ERR_IO;
        sqlite3_bind_int64(st, 1, tenant);
        sqlite3_bind_int64(st, 2, now);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = realm__store_db_error(s, "removing expired key-value data");
        realm__store_done(st);
        if (rc == 0)
            rc = quota_state(s, tenant, key, &quota, &used, &old);
        if (rc == 0 && used - old + size > quota)
            return realm__error(REALM_ERR_RANGE,
                                "kv: storing '%s' (%lld bytes with its key) would take the "
                                "tenant's key-value data to %lld bytes, over its quota of %lld",
                                show(key).s, (long long)size, (long long)(used - old + size),
                                (long long)quota);
    }
    if (rc < 0)
        return rc;
    sqlite3_stmt *st = realm__store_stmt(s, STORE_KV_PUT);
    if (!st)
        return REALM_ERR_IO;
    sqlite3_bind_int64(st, 1, tenant);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 3, len ? value : (const void *)"", len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, size);
    sqlite3_bind_int64(st, 5, now);
    sqlite3_bind_int64(st, 6, expires_at);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = realm__store_db_error(s, "writing key-value data");
    realm__store_done(st);
    return rc;
}

int realm_store_kv_put(realm_store *s, int64_t tenant, const char *key, const void *value,
                       size_t len, int64_t expires_at)
{
    int rc = check_tenant_id(tenant);
    if (rc == 0)
        rc = check_key(key);
    if (rc < 0)
        return rc;
    if (expires_at < 0)
        return realm__error(REALM_ERR_INVAL, "kv: expires_at %lld is negative (0: never)",
                            (long long)expires_at);
    if (len && !value)
        return realm__error(REALM_ERR_INVAL, "kv: no value");
    pthread_mutex_lock(&s->db_mu);
    if (len > (uint64_t)s->kv_max_value) {
        rc = realm__error(REALM_ERR_RANGE,
                          "kv: the value of '%s' is %zu bytes, over the %lld "
                          "a value may have",
                          show(key).s, len, (long long)s->kv_max_value);
    } else if ((rc = realm__store_exec(s, "BEGIN IMMEDIATE")) == 0) {
        if ((rc = put_locked(s, tenant, key, value, len, expires_at)) == 0)
            rc = realm__store_exec(s, "COMMIT");
        if (rc < 0 && !sqlite3_get_autocommit(s->db))
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&s->db_mu);
    return rc;
}

/* The live entry of key: its length, copied into buf when it fits cap, or
 * into a malloc'ed copy (NUL after it) when alloc is not NULL. */
static int64_t get_entry(realm_store *s, int64_t tenant, const char *key, void *buf, size_t cap,
                         void **alloc)
{
    int rc = check_tenant_id(tenant);
    if (rc == 0)
        rc = check_key(key);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->db_mu);
    sqlite3_stmt *st = realm__store_stmt(s, STORE_KV_GET);
    int64_t n = st ? 0 : REALM_ERR_IO;
    if (st) {
        sqlite3_bind_int64(st, 1, tenant);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        const int r = sqlite3_step(st);
        const int64_t expires_at = r == SQLITE_ROW ? sqlite3_column_int64(st, 1) : 0;
        if (r == SQLITE_ROW && (expires_at == 0 || expires_at > realm__store_time())) {
            const void *v = sqlite3_column_blob(st, 0); /* before _bytes, as SQLite asks */
            n = sqlite3_column_bytes(st, 0);
            if (alloc && !(*alloc = malloc((size_t)n + 1)))
                n = realm__error(REALM_ERR_NOMEM, "out of memory");
            else if (alloc) {
                if (n)
                    memcpy(*alloc, v, (size_t)n);
                ((char *)*alloc)[n] = '\0';
            } else if ((uint64_t)n <= cap && n) {
                memcpy(buf, v, (size_t)n);
            }
        } else if (r == SQLITE_ROW || r == SQLITE_DONE) {
            n = realm__error(REALM_ERR_NOTFOUND, "kv: no key '%s'", show(key).s);
        } else {
            n = realm__store_db_error(s, "reading key-value data");
        }
    }
    realm__store_done(st);
    pthread_mutex_unlock(&s->db_mu);
    return n;
}

int64_t realm_store_kv_get(realm_store *s, int64_t tenant, const char *key, void *buf, size_t cap)
{
    return get_entry(s, tenant, key, buf, cap, NULL);
}

int realm_store_kv_get_alloc(realm_store *s, int64_t tenant, const char *key, void **value,
                             size_t *len)
{
    *value = NULL;
    *len = 0;
    const int64_t n = get_entry(s, tenant, key, NULL, 0, value);
    if (n < 0)
        return (int)n;
    *len = (size_t)n;
    return 0;
}

int realm_store_kv_delete(realm_store *s, int64_t tenant, const char *key)
{
    int rc = check_tenant_id(tenant);
    if (rc == 0)
        rc = check_key(key);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->db_mu);
    sqlite3_stmt *st = realm__store_stmt(s, STORE_KV_DELETE);
    rc = st ? 0 : REALM_ERR_IO;
    if (st) {
        sqlite3_bind_int64(st, 1, tenant);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        int r = sqlite3_step(st); /* RETURNING: the row is gone once the first step returns */
        const int64_t expires_at = r == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        const bool live = r == SQLITE_ROW && (expires_at == 0 || expires_at > realm__store_time());
        while (r == SQLITE_ROW)
            r = sqlite3_step(st);
        if (r != SQLITE_DONE)
            rc = realm__store_db_error(s, "removing key-value data");
        else if (!live)
            rc = realm__error(REALM_ERR_NOTFOUND, "kv: no key '%s'", show(key).s);
    }
    realm__store_done(st);
    pthread_mutex_unlock(&s->db_mu);
    return rc;
}

/* ---- listing -------------------------------------------------------------------- */

/* Keys gathered for a list: NUL-terminated, one after another. */
typedef struct key_buf {
    char *data;
    size_t len, cap;
    int32_t n;
} key_buf;

static bool key_buf_add(key_buf *b, const char *key, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return false;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, key, n);
    b->data[b->len + n] = '\0';
    b->len += n + 1;
    b->n++;
    return true;
}

/* The gathered keys as one block: n pointers, then the strings. */
static char **key_buf_block(const key_buf *b)
{
    const size_t ptrs = (size_t)b->n * sizeof(char *);
    char **v = malloc(ptrs + b->len + 1);
    if (!v)
        return NULL;
    char *strings = (char *)v + ptrs;
    if (b->len)
        memcpy(strings, b->data, b->len);
    for (int32_t i = 0; i < b->n; i++) {
        v[i] = strings;
        strings += strlen(strings) + 1;
    }
    return v;
}

int realm_store_kv_list(realm_store *s, int64_t tenant, const char *prefix, const char *after,
                        int32_t limit, char ***keys, int32_t *n, bool *more)
{
    *keys = NULL;
    *n = 0;
    if (more)
        *more = false;
    prefix = prefix ? prefix : "";
    after = after ? after : "";
    const size_t n_prefix = strnlen(prefix, REALM_KV_KEY_MAX + 1);
    int rc = check_tenant_id(tenant);
    if (rc < 0)
        return rc;
    if (n_prefix > REALM_KV_KEY_MAX || strnlen(after, REALM_KV_KEY_MAX + 1) > REALM_KV_KEY_MAX)
        return realm__error(REALM_ERR_INVAL, "kv: the %s is longer than %d bytes",
                            n_prefix > REALM_KV_KEY_MAX ? "prefix" : "cursor ('after')",
                            REALM_KV_KEY_MAX);
    if (limit < 1 || limit > REALM_KV_LIST_MAX)
        return realm__error(REALM_ERR_INVAL, "kv: the limit %d is not in 1..%d", (int)limit,
                            REALM_KV_LIST_MAX);
    key_buf b = {0};
    bool has_more = false;
    pthread_mutex_lock(&s->db_mu);
    sqlite3_stmt *st = realm__store_stmt(s, STORE_KV_LIST);
    rc = st ? 0 : REALM_ERR_IO;
    int r = SQLITE_DONE;
    if (st) {
        sqlite3_bind_int64(st, 1, tenant);
        sqlite3_bind_text(st, 2, prefix, (int)n_prefix, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, after, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, realm__store_time());
    }
    /* In key order the keys with a prefix follow one another from the
     * prefix itself on: the first that lacks it ends the list. */
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        const size_t len = (size_t)sqlite3_column_bytes(st, 0);
        if (!k || len < n_prefix || memcmp(k, prefix, n_prefix) != 0) {
            r = SQLITE_DONE;
            break;
        }
        if (b.n == limit) {
            has_more = true;
            r = SQLITE_DONE;
            break;
        }
        if (!key_buf_add(&b, k, len))
            rc = realm__error(REALM_ERR_NOMEM, "out of memory");
    }
    if (rc == 0 && r != SQLITE_DONE)
        rc = realm__store_db_error(s, "listing key-value data");
    realm__store_done(st);
    pthread_mutex_unlock(&s->db_mu);
    char **v = rc == 0 ? key_buf_block(&b) : NULL;
    if (rc == 0 && !v)
        rc = realm__error(REALM_ERR_NOMEM, "out of memory");
    if (rc == 0) {
        *keys = v;
        *n = b.n;
        if (more)
            *more = has_more;
    }
    free(b.data);
    return rc;
}

/* ---- usage and expiry ----------------------------------------------------------- */

int realm_store_kv_usage(realm_store *s, int64_t tenant, int64_t *bytes, int64_t *n_keys)
{
    int64_t b = 0, k = 0;
    int rc = check_tenant_id(tenant);
    if (rc == 0) {
        pthread_mutex_lock(&s->db_mu);
        rc = query_ints(s, STORE_KV_USED, tenant, NULL, &b, &k, NULL);
        pthread_mutex_unlock(&s->db_mu);
    }
    if (bytes)
        *bytes = b;
    if (n_keys)
        *n_keys = k;
    return rc;
}

int64_t realm_store_kv_purge(realm_store *s, int64_t now)
{
    if (now <= 0)
        now = realm__store_time();
    int64_t total = 0;
    for (;;) {
        pthread_mutex_lock(&s->db_mu);
        sqlite3_stmt *st = realm__store_stmt(s, STORE_KV_PURGE);
        int64_t n = st ? 0 : REALM_ERR_IO;
        if (st) {
            sqlite3_bind_int64(st, 1, now);
            sqlite3_bind_int64(st, 2, KV_PURGE_BATCH);
            if (sqlite3_step(st) == SQLITE_DONE)
                n = sqlite3_changes(s->db);
            else
                n = realm__store_db_error(s, "removing expired key-value data");
        }
        realm__store_done(st);
        pthread_mutex_unlock(&s->db_mu);
        if (n < 0)
            return n;
        total += n;
        if (n < KV_PURGE_BATCH)
            return total;
    }
}
