/*
 * API keys (realm/store.h): "rk-" + 32 base62 characters from getrandom,
 * stored only as their SHA-256 with a display prefix. Messages never contain
 * a key, only prefixes.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/error_internal.h"
#include "store_internal.h"

static const char base62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static bool is_base62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* n uniform base62 characters. A byte is used only if it is below 248 =
 * 4 * 62, so byte % 62 has no bias (rejection sampling). */
static int random_base62(char *out, int n)
{
    unsigned char buf[64];
    int got = 0;
    while (got < n) {
        ssize_t k = getrandom(buf, sizeof buf, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return realm__error(REALM_ERR_IO, "getrandom: %s", strerror(errno));
        for (ssize_t i = 0; i < k && got < n; i++)
            if (buf[i] < 248)
                out[got++] = base62[buf[i] % 62];
    }
    OPENSSL_cleanse(buf, sizeof buf);
    return 0;
}

static void key_hash(const char *key, unsigned char md[32])
{
    unsigned int len = 0;
    EVP_Digest(key, REALM_KEY_LEN, md, &len, EVP_sha256(), NULL);
}

static bool key_well_formed(const char *key)
{
    if (strnlen(key, REALM_KEY_LEN + 1) != REALM_KEY_LEN || memcmp(key, "rk-", 3) != 0)
        return false;
    for (int i = 3; i < REALM_KEY_LEN; i++)
        if (!is_base62(key[i]))
            return false;
    return true;
}

int realm_store_key_create(realm_store *s, const char *tenant, char *key_out, realm_key_info *info)
{
    char key[REALM_KEY_LEN + 1];
    unsigned char md[32];
    memcpy(key, "rk-", 3);
    int rc = random_base62(key + 3, REALM_KEY_LEN - 3);
    if (rc < 0)
        return rc;
    key[REALM_KEY_LEN] = '\0';
    key_hash(key, md);
    realm_key_info ki = {.created = realm__store_time()};
    memcpy(ki.prefix, key, REALM_KEY_PREFIX_LEN);

    pthread_mutex_lock(&s->db_mu);
    rc = tenant ? realm__store_tenant_id(s, tenant, &ki.tenant)
                : realm__error(REALM_ERR_INVAL, "no tenant name");
    sqlite3_stmt *st = rc == 0 ? realm__store_stmt(s, STORE_KEY_ADD) : NULL;
    if (rc == 0 && !st)
        rc = REALM_ERR_IO;
    if (st) {
        sqlite3_bind_int64(st, 1, ki.tenant);
        sqlite3_bind_blob(st, 2, md, sizeof md, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, ki.prefix, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, ki.created);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = realm__store_db_error(s, "adding a key");
        else
            s->own_writes++;
    }
    realm__store_done(st);
    pthread_mutex_unlock(&s->db_mu);
    if (rc == 0) {
        snprintf(ki.tenant_name, sizeof ki.tenant_name, "%s", tenant);
        memcpy(key_out, key, sizeof key);
        if (info)
            *info = ki;
    }
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

int realm_store_key_lookup(realm_store *s, const char *key, int64_t *tenant)
{
    if (!key || !key_well_formed(key))
        return realm__error(REALM_ERR_NOTFOUND, "not a Realm API key (rk-...)");
    unsigned char md[32];
    key_hash(key, md);
    int64_t id = 0, last_used = 0;
    pthread_mutex_lock(&s->db_mu);
    sqlite3_stmt *st = realm__store_stmt(s, STORE_KEY_LOOKUP);
    int rc = st ? 0 : REALM_ERR_IO;
    if (st) {
        sqlite3_bind_blob(st, 1, md, sizeof md, SQLITE_STATIC);
        int r = sqlite3_step(st);
        /* The index found the row by hash; the hashes are compared again in
         * constant time so that no byte comparison's timing is observable. */
        if (r == SQLITE_ROW && sqlite3_column_bytes(st, 2) == (int)sizeof md &&
            CRYPTO_memcmp(sqlite3_column_blob(st, 2), md, sizeof md) == 0) {
            id = sqlite3_column_int64(st, 0);
            *tenant = sqlite3_column_int64(st, 1);
            last_used = sqlite3_column_int64(st, 3);
        } else if (r == SQLITE_ROW || r == SQLITE_DONE) {
            rc = realm__error(REALM_ERR_NOTFOUND, "unknown or revoked API key %.*s...",
                              REALM_KEY_PREFIX_LEN, key);
        } else {
            rc = realm__store_db_error(s, "looking up a key");
        }
    }
    realm__store_done(st);
    pthread_mutex_unlock(&s->db_mu);
    int64_t now = realm__store_time();
    if (rc == 0 && now - last_used >= STORE_TOUCH_INTERVAL)
        realm__store_touch(s, id, now);
    return rc;
}

int realm_store_key_list(realm_store *s, const char *tenant, realm_key_info **out, int32_t *n)
{
    *out = NULL;
    *n = 0;
    realm_key_info *v = NULL;
    int32_t len = 0, cap = 0;
    pthread_mutex_lock(&s->db_mu);
    /* Last uses still queued are written first; if that fails they are
     * shown later, and the list is still right. */
    realm__store_flush_locked(s);
    int64_t tid;
    int rc = tenant ? realm__store_tenant_id(s, tenant, &tid) : 0, r = SQLITE_DONE;
    sqlite3_stmt *st = NULL;
    if (rc == 0 &&
        !(st = realm__store_stmt(s, tenant ? STORE_KEY_LIST_TENANT : STORE_KEY_LIST_ALL)))
        rc = REALM_ERR_IO;
    if (st && tenant)
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? 2 * cap : 16;
            realm_key_info *nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) {
                rc = realm__error(REALM_ERR_NOMEM, "out of memory");
                break;
            }
            v = nv;
        }
        realm_key_info *k = &v[len++];
        memset(k, 0, sizeof *k);
        const unsigned char *prefix = sqlite3_column_text(st, 0);
        const unsigned char *name = sqlite3_column_text(st, 2);
        snprintf(k->prefix, sizeof k->prefix, "%s", prefix ? (const char *)prefix : "");
        k->tenant = sqlite3_column_int64(st, 1);
        snprintf(k->tenant_name, sizeof k->tenant_name, "%s", name ? (const char *)name : "");
        k->created = sqlite3_column_int64(st, 3);
        k->last_used = sqlite3_column_int64(st, 4);
        k->revoked = sqlite3_column_int64(st, 5);
    }
    if (rc == 0 && r != SQLITE_DONE)
        rc = realm__store_db_error(s, "listing keys");
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

/* With db_mu held: the keys matching a whole key (by hash) or a prefix, at
 * most 8 ids (count gets them all), the live ones first. */
typedef struct key_match {
    int n_live, n_revoked;
    int64_t live[8];
    char prefixes[8][REALM_KEY_PREFIX_LEN + 1];
} key_match;

static int find_keys(realm_store *s, const char *key_or_prefix, bool whole, key_match *m)
{
    unsigned char md[32];
    sqlite3_stmt *st = realm__store_stmt(s, whole ? STORE_KEY_BY_HASH : STORE_KEY_BY_PREFIX);
    if (!st)
        return REALM_ERR_IO;
    if (whole) {
        key_hash(key_or_prefix, md);
        sqlite3_bind_blob(st, 1, md, sizeof md, SQLITE_STATIC);
    } else {
        sqlite3_bind_text(st, 1, key_or_prefix, -1, SQLITE_STATIC);
    }
    int r, rc = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_int64(st, 2) != 0) {
            m->n_revoked++;
            continue;
        }
        if (m->n_live < 8) {
            const unsigned char *p = sqlite3_column_text(st, 1);
            m->live[m->n_live] = sqlite3_column_int64(st, 0);
            snprintf(m->prefixes[m->n_live], sizeof m->prefixes[0], "%s", p ? (const char *)p : "");
        }
        m->n_live++;
    }
    if (r != SQLITE_DONE)
        rc = realm__store_db_error(s, "finding a key");
    realm__store_done(st);
    return rc;
}

int realm_store_key_revoke(realm_store *s, const char *key_or_prefix)
{
    const char *k = key_or_prefix ? key_or_prefix : "";
    size_t len = strnlen(k, REALM_KEY_LEN + 1);
    bool whole = key_well_formed(k);
    bool prefix = len > 3 && len <= REALM_KEY_PREFIX_LEN && memcmp(k, "rk-", 3) == 0;
    for (size_t i = 3; prefix && i < len; i++)
        prefix = is_base62(k[i]);
    if (!whole && !prefix)
        return realm__error(REALM_ERR_INVAL,
                            "'%.*s' is neither an API key nor a key prefix (rk- and 1 to %d "
                            "more characters)",
                            REALM_KEY_PREFIX_LEN, k, REALM_KEY_PREFIX_LEN - 3);
    const char *shown = k;
    char shown_buf[REALM_KEY_PREFIX_LEN + 4];
    if (whole) { /* never echo a whole key */
        snprintf(shown_buf, sizeof shown_buf, "%.*s...", REALM_KEY_PREFIX_LEN, k);
        shown = shown_buf;
    }
    key_match m = {0};
    pthread_mutex_lock(&s->db_mu);
    int rc = find_keys(s, k, whole, &m);
    if (rc == 0 && m.n_live > 1) {
        char list[8 * (REALM_KEY_PREFIX_LEN + 2) + 8] = "";
        for (int i = 0; i < m.n_live && i < 8; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                     m.prefixes[i]);
        rc = realm__error(REALM_ERR_EXISTS,
                          "'%s' matches %d keys (%s%s): give the whole key or more characters",
                          shown, m.n_live, list, m.n_live > 8 ? ", ..." : "");
    } else if (rc == 0 && m.n_live == 0 && m.n_revoked == 0) {
        rc = realm__error(REALM_ERR_NOTFOUND, "no key %s", shown);
    } else if (rc == 0 && m.n_live == 1) {
        sqlite3_stmt *st = realm__store_stmt(s, STORE_KEY_REVOKE);
        rc = st ? 0 : REALM_ERR_IO;
        if (st) {
            sqlite3_bind_int64(st, 1, m.live[0]);
            sqlite3_bind_int64(st, 2, realm__store_time());
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = realm__store_db_error(s, "revoking a key");
            else
                s->own_writes++;
        }
        realm__store_done(st);
    } /* else: only revoked keys match; revoking again changes nothing */
    pthread_mutex_unlock(&s->db_mu);
    return rc;
}

int64_t realm_store_key_count(realm_store *s)
{
    pthread_mutex_lock(&s->db_mu);
    sqlite3_stmt *st = realm__store_stmt(s, STORE_KEY_COUNT);
    int64_t n = st ? 0 : REALM_ERR_IO;
    if (st) {
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        else
            n = realm__store_db_error(s, "counting keys");
    }
    realm__store_done(st);
    pthread_mutex_unlock(&s->db_mu);
    return n;
}
