/*
 * realm/store.h — the server's persistent state in SQLite: tenants, API keys,
 * usage, tenants' modules.
 *
 * One database file, DATA_DIR/realm.db (WAL mode), made and migrated by
 * realm_store_open: the schema has a version number (PRAGMA user_version)
 * and each migration takes it one step up in a transaction, so an older
 * database is brought forward and a newer one is refused. Tenant ids are
 * never reused (AUTOINCREMENT): a new tenant never inherits a deleted one's
 * usage or prefix-cache entries. Tenants' modules are stored by content in
 * DATA_DIR/modules/SHA256.wasm.
 *
 *     realm_store *s;
 *     realm_store_open("/var/lib/realm", &s);
 *     realm_tenant t;
 *     realm_store_tenant_add(s, "acme", &t);
 *     char key[REALM_KEY_LEN + 1];
 *     realm_store_key_create(s, "acme", key, NULL);      // shown to the user once
 *     int64_t tenant;
 *     if (realm_store_key_lookup(s, key, &tenant) == 0) ... // a request's tenant
 *     realm_store_usage_record(s, &(realm_usage){.tenant = tenant, ...});  // batched
 *     realm_store_close(s);                               // flushes usage
 *
 * API keys: "rk-" followed by 32 random base62 characters (getrandom). Only
 * their SHA-256 is stored, with the first 12 characters ("rk-" + 9) as the
 * display prefix, the creation time, the last use (updated at most once a
 * minute per key) and the revocation time. A lookup hashes the key and
 * compares hashes in constant time; a revoked key, or a key of a removed
 * tenant, is not found.
 *
 * Tenants' modules keep key-value data (realm_store_kv_*, below): values of
 * at most 1 MiB by default under keys of up to 512 bytes of UTF-8, counted
 * against a per-tenant quota, optionally expiring; a tenant sees only its
 * own keys, and its data goes with it when it is removed.
 *
 * Usage is counted per (tenant, model, user, hour): prompt, cached and
 * completion tokens and requests. realm_store_usage_record only queues the
 * record (no I/O on the request path); a background thread writes the queue
 * in one transaction at least every second, and realm_store_flush /
 * realm_store_close write what is left, so nothing is lost on a clean
 * shutdown.
 *
 * Changes by another process (the `realm tenant` CLI while a server runs)
 * are seen through realm_store_changed (PRAGMA data_version).
 *
 * Thread safety: every function may be called from any thread; the store
 * serialises its use of the connection (key-value calls included). Errors:
 * negative realm/error.h codes with a message: REALM_ERR_NOTFOUND (no such
 * tenant/key), REALM_ERR_EXISTS (a tenant name taken), REALM_ERR_INVAL (a
 * bad name or value, naming it), REALM_ERR_IO (SQLite's message, with the
 * file), REALM_ERR_UNSUPPORTED (a database of a newer schema than this build
 * knows).
 */
#ifndef REALM_STORE_H
#define REALM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "realm/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

#define REALM_KEY_LEN          35 /* "rk-" + 32 base62 characters */
#define REALM_KEY_PREFIX_LEN   12
#define REALM_TENANT_NAME_MAX  64
#define REALM_STORE_MAX_MODELS 64 /* models a tenant may be limited to */

typedef struct realm_store realm_store;

/* Open (creating DATA_DIR 0700 and the database if needed) and migrate. */
int realm_store_open(const char *data_dir, realm_store **out);
/* Flush queued usage and close. NULL is a no-op. */
void realm_store_close(realm_store *s);
/* The default data directory: $REALM_DATA_DIR, else $XDG_DATA_HOME/realm,
 * else ~/.local/share/realm (written to buf, NUL-terminated). */
int realm_store_default_dir(char *buf, size_t cap);

/* ---- tenants ----------------------------------------------------------------- */

/*
 * A tenant and its limits. 0 in a limit means "none" (weight: 1). models:
 * the names it may use, comma-separated; "" means every model.
 * module_sha256: the content hash of its module, "" for the default module.
 */
typedef struct realm_tenant {
    int64_t id;
    char name[REALM_TENANT_NAME_MAX + 1]; /* [A-Za-z0-9._-], 1..64, not starting with '.' */
    char module_sha256[65];
    char models[1024];
    int64_t rpm;            /* requests per minute */
    int64_t tpm;            /* tokens (prompt + completion) per minute */
    int64_t max_concurrent; /* requests at once */
    int64_t max_tokens;     /* per request: caps max_tokens */
    int64_t quota;          /* tokens per calendar month (UTC) */
    double weight;          /* fair-queuing share, 1e-3..1e3 */
    int64_t max_pages;      /* module memory cap, 64 KiB pages; 0: the default */
    int64_t deadline_ms;    /* module deadline; 0: the default */
    int64_t kv_quota;       /* bytes of key-value data; 0: the store's default (64 MiB) */
    int64_t created;        /* unix seconds */
} realm_tenant;

/* Add a tenant with no limits; *out (if not NULL) gets it. */
int realm_store_tenant_add(realm_store *s, const char *name, realm_tenant *out);
int realm_store_tenant_get(realm_store *s, const char *name, realm_tenant *out);
int realm_store_tenant_get_id(realm_store *s, int64_t id, realm_tenant *out);
/* Every tenant, by name, as a malloc'ed array (free it). */
int realm_store_tenant_list(realm_store *s, realm_tenant **out, int32_t *n);
/* Write t's settings (all fields but id, name and created) to tenant t->id. Values are
 * checked (negative limits, a weight out of range, a models list over
 * REALM_STORE_MAX_MODELS names or with a bad name, a module_sha256 not stored with
 * realm_store_module_put: REALM_ERR_INVAL naming the field). A weight of 0 is
 * stored as 1. */
int realm_store_tenant_update(realm_store *s, const realm_tenant *t);
/* The checks realm_store_tenant_update makes of t's settings, writing nothing: 0, or
 * REALM_ERR_INVAL naming the field. */
int realm_store_tenant_check(realm_store *s, const realm_tenant *t);
/* Remove a tenant: its keys stop working at once; its usage stays. */
int realm_store_tenant_remove(realm_store *s, const char *name);

/* ---- keys ----------------------------------------------------------------------- */

typedef struct realm_key_info {
    char prefix[REALM_KEY_PREFIX_LEN + 1];
    int64_t tenant;
    char tenant_name[REALM_TENANT_NAME_MAX + 1];
    int64_t created, last_used, revoked; /* unix seconds; 0: never */
} realm_key_info;

/* A new key for the tenant: key_out gets it (REALM_KEY_LEN + 1 bytes; it is
 * not stored and cannot be shown again), info (if not NULL) its record. */
int realm_store_key_create(realm_store *s, const char *tenant, char *key_out, realm_key_info *info);
/* The tenant of a key; REALM_ERR_NOTFOUND for an unknown, revoked or
 * malformed key, or one of a removed tenant. Fast: one indexed lookup. */
int realm_store_key_lookup(realm_store *s, const char *key, int64_t *tenant);
/* Keys (of tenant, or all when NULL), by creation, as a malloc'ed array
 * (last uses still queued are written first). */
int realm_store_key_list(realm_store *s, const char *tenant, realm_key_info **out, int32_t *n);
/* Revoke by the whole key or its prefix ("rk-" and 1..9 more characters;
 * REALM_ERR_EXISTS if a prefix matches several live keys — give the whole
 * key; REALM_ERR_NOTFOUND). Revoking a revoked key changes nothing (0). */
int realm_store_key_revoke(realm_store *s, const char *key_or_prefix);
/* How many keys are live (not revoked, tenant present), or a negative error. */
int64_t realm_store_key_count(realm_store *s);

/* ---- usage ----------------------------------------------------------------------- */

typedef struct realm_usage {
    int64_t tenant;
    char model[129];
    char user[129]; /* the request's "user", "" if none */
    int64_t hour;   /* unix seconds of the hour's start; 0 in a record: now */
    int64_t requests, prompt_tokens, cached_tokens, completion_tokens;
    /* cached_tokens: the part of prompt_tokens served from the prefix cache */
} realm_usage;

/* Queue one request's usage (never blocks on I/O). */
int realm_store_usage_record(realm_store *s, const realm_usage *u);
/* Write everything queued now. */
int realm_store_flush(realm_store *s);
/* Usage rows since `since` (unix seconds; 0: all; from the hour holding it)
 * of tenant (NULL: all), by hour then tenant, model, user; a malloc'ed
 * array. Queued records are written first. */
int realm_store_usage_query(realm_store *s, const char *tenant, int64_t since, realm_usage **out,
                            int32_t *n);
/* Tokens (prompt + completion) a tenant used since `since` (for quotas),
 * queued records included, or a negative error. */
int64_t realm_store_usage_tokens(realm_store *s, int64_t tenant, int64_t since);

/* ---- key-value data of tenants' modules ------------------------------------------------ */

/*
 * Each tenant has its own key space (the host ABI's realm.kv_* calls land
 * here, bound to the request's tenant). A key is 1..REALM_KV_KEY_MAX bytes
 * of valid UTF-8 without control characters (U+0000..U+001F, U+007F..U+009F);
 * keys sort by their bytes. An entry counts its key's and its value's bytes
 * against the tenant's quota: its kv_quota, or the store's default quota
 * when that is 0. An entry may expire (expires_at, unix seconds; 0 never):
 * once expired it is absent for get, delete and list, and it still counts
 * against the quota until it is purged (realm_store_kv_purge; a put that
 * would go over the quota first purges the tenant's expired entries).
 *
 * Errors: REALM_ERR_INVAL (a bad key, prefix, cursor or limit, naming it),
 * REALM_ERR_RANGE (a value over the store's maximum, or a put over the
 * quota: nothing is changed), REALM_ERR_NOTFOUND (no such key, or no such
 * tenant for a put), REALM_ERR_IO (the database).
 */
#define REALM_KV_KEY_MAX           512
#define REALM_KV_VALUE_MAX_DEFAULT ((int64_t)1 << 20)  /* 1 MiB */
#define REALM_KV_VALUE_MAX_LIMIT   ((int64_t)1 << 28)  /* 256 MiB: what max_value may be */
#define REALM_KV_QUOTA_DEFAULT     ((int64_t)64 << 20) /* 64 MiB */
#define REALM_KV_QUOTA_MAX         ((int64_t)1 << 40)  /* 1 TiB: what kv_quota may be */
#define REALM_KV_LIST_MAX          1000                /* keys per realm_store_kv_list call */

typedef struct realm_kv_limits {
    int64_t max_value;     /* bytes of one value; 0: REALM_KV_VALUE_MAX_DEFAULT */
    int64_t default_quota; /* bytes of a tenant whose kv_quota is 0; 0: REALM_KV_QUOTA_DEFAULT */
} realm_kv_limits;

/* Set this store's limits (REALM_ERR_INVAL for a negative one, a max_value over
 * REALM_KV_VALUE_MAX_LIMIT or a default_quota over REALM_KV_QUOTA_MAX); get
 * them (0s resolved to the defaults). */
int realm_store_kv_set_limits(realm_store *s, const realm_kv_limits *l);
void realm_store_kv_get_limits(realm_store *s, realm_kv_limits *out);

/* Store value[0..len) under key for tenant, replacing any value (and its
 * expiry); expires_at: unix seconds, 0 never (a time already past stores an
 * entry that reads as absent). Over the quota: REALM_ERR_RANGE, nothing
 * changed. */
int realm_store_kv_put(realm_store *s, int64_t tenant, const char *key, const void *value,
                       size_t len, int64_t expires_at);
/* The value's length, or a negative error (REALM_ERR_NOTFOUND when absent
 * or expired). Written to buf only if it fits cap (cap 0 measures; buf may
 * then be NULL). */
int64_t realm_store_kv_get(realm_store *s, int64_t tenant, const char *key, void *buf, size_t cap);
/* The same into *value, malloc'ed (free it) with a NUL after its *len bytes. */
int realm_store_kv_get_alloc(realm_store *s, int64_t tenant, const char *key, void **value,
                             size_t *len);
/* Remove key; REALM_ERR_NOTFOUND when absent or expired (an expired entry is
 * removed all the same). */
int realm_store_kv_delete(realm_store *s, int64_t tenant, const char *key);
/*
 * The tenant's live keys that start with prefix ("" or NULL: all), in byte
 * order, those after `after` only ("" or NULL: from the first), at most
 * limit (1..REALM_KV_LIST_MAX). *keys is one malloc'ed block (free(*keys)
 * frees it all): *n pointers to NUL-terminated keys. *more (if not NULL):
 * whether further keys match — pass the last key as `after` for the next
 * page. prefix and after may be any bytes without NUL, at most
 * REALM_KV_KEY_MAX.
 */
int realm_store_kv_list(realm_store *s, int64_t tenant, const char *prefix, const char *after,
                        int32_t limit, char ***keys, int32_t *n, bool *more);
/* What the tenant's entries use: bytes (keys and values) and number of
 * entries, expired ones not yet purged included (0s for a tenant with none). */
int realm_store_kv_usage(realm_store *s, int64_t tenant, int64_t *bytes, int64_t *n_keys);
/* Remove every entry that expired at or before `now` (unix seconds; 0: the
 * current time), of every tenant, a batch per transaction so that other
 * callers are not held up. Returns how many were removed, or a negative
 * error. */
int64_t realm_store_kv_purge(realm_store *s, int64_t now);

/* ---- modules and changes ------------------------------------------------------------- */

/* Store a module's bytes as DATA_DIR/modules/SHA256.wasm (atomically; no-op
 * if present); sha_out gets the hex hash (65 bytes). */
int realm_store_module_put(realm_store *s, const void *wasm, size_t len, char *sha_out);
/* The path of a stored module (buf, NUL-terminated); REALM_ERR_NOTFOUND. */
int realm_store_module_path(realm_store *s, const char *sha256, char *buf, size_t cap);

/* True when the database changed (in this process or another) since the last
 * call (PRAGMA data_version; the first call returns true). Changes through
 * this store count when they touch tenants or keys (not its own usage
 * writes); any commit by another connection counts. True on an error. */
bool realm_store_changed(realm_store *s);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
