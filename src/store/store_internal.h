/*
 * Inside the store (realm/store.h): the handle, the SQL it runs, and the
 * helpers store.c (database, tenants, modules), store_keys.c, store_usage.c
 * and store_kv.c share.
 *
 * Locking: db_mu guards the connection, its statements and the change
 * counters; q_mu guards the usage queue and the pending key touches. A
 * thread that needs both takes db_mu first (a flush holds db_mu from taking
 * the queue until its commit, so a reader holding db_mu sees every record
 * either in the database or in the queue, never in neither).
 */
#ifndef REALM_STORE_INTERNAL_H
#define REALM_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "realm/store.h"

#define STORE_PATH_MAX 4096
/* The data directory leaves room for what the store puts in it. */
#define STORE_DIR_MAX (STORE_PATH_MAX - 256)
/* The schema version this build writes (the number of migrations). */
#define STORE_SCHEMA_VERSION 2
/* A flush starts early when this many distinct records are queued. */
#define STORE_QUEUE_EAGER 1024
/* record refuses more distinct records than this (the database is not
 * being written): memory stays bounded. */
#define STORE_QUEUE_MAX (1 << 20)
/* A key's last use is written at most this often (seconds). */
#define STORE_TOUCH_INTERVAL 60

#define STORE_TENANT_COLS                                                                          \
    "id, name, module_sha256, models, rpm, tpm, max_concurrent, max_tokens, quota, weight, "       \
    "max_pages, deadline_ms, created, kv_quota"
#define STORE_KEY_COLS "k.prefix, k.tenant, t.name, k.created, k.last_used, k.revoked"

/* Every statement the store runs more than once, prepared on first use and
 * kept (SQLITE_PREPARE_PERSISTENT) until close. */
#define STORE_STMT_MAP(XX)                                                                         \
    XX(DATA_VERSION, "PRAGMA data_version")                                                        \
    XX(TENANT_ADD, "INSERT INTO tenants (name, created) VALUES (?1, ?2)")                          \
    XX(TENANT_BY_NAME, "SELECT " STORE_TENANT_COLS " FROM tenants WHERE name = ?1")                \
    XX(TENANT_BY_ID, "SELECT " STORE_TENANT_COLS " FROM tenants WHERE id = ?1")                    \
    XX(TENANT_LIST, "SELECT " STORE_TENANT_COLS " FROM tenants ORDER BY name")                     \
    XX(TENANT_UPDATE,                                                                              \
       "UPDATE tenants SET module_sha256 = ?2, models = ?3, rpm = ?4, tpm = ?5, "                  \
       "max_concurrent = ?6, max_tokens = ?7, quota = ?8, weight = ?9, max_pages = ?10, "          \
       "deadline_ms = ?11, kv_quota = ?12 WHERE id = ?1")                                          \
    XX(TENANT_REMOVE, "DELETE FROM tenants WHERE name = ?1")                                       \
    XX(KEY_ADD, "INSERT INTO api_keys (tenant, hash, prefix, created) VALUES (?1, ?2, ?3, ?4)")    \
    XX(KEY_LOOKUP, "SELECT k.id, k.tenant, k.hash, k.last_used FROM api_keys k "                   \
                   "JOIN tenants t ON t.id = k.tenant WHERE k.hash = ?1 AND k.revoked = 0")        \
    XX(KEY_LIST_ALL,                                                                               \
       "SELECT " STORE_KEY_COLS " FROM api_keys k JOIN tenants t ON t.id = k.tenant "              \
       "ORDER BY k.created, k.id")                                                                 \
    XX(KEY_LIST_TENANT,                                                                            \
       "SELECT " STORE_KEY_COLS " FROM api_keys k JOIN tenants t ON t.id = k.tenant "              \
       "WHERE t.name = ?1 ORDER BY k.created, k.id")                                               \
    XX(KEY_BY_HASH, "SELECT id, prefix, revoked FROM api_keys WHERE hash = ?1")                    \
    XX(KEY_BY_PREFIX, "SELECT id, prefix, revoked FROM api_keys "                                  \
                      "WHERE substr(prefix, 1, length(?1)) = ?1 ORDER BY created, id")             \
    XX(KEY_REVOKE, "UPDATE api_keys SET revoked = ?2 WHERE id = ?1 AND revoked = 0")               \
    XX(KEY_COUNT, "SELECT count(*) FROM api_keys k JOIN tenants t ON t.id = k.tenant "             \
                  "WHERE k.revoked = 0")                                                           \
    XX(KEY_TOUCH, "UPDATE api_keys SET last_used = max(last_used, ?2) WHERE id = ?1")              \
    XX(USAGE_ADD,                                                                                  \
       "INSERT INTO usage (tenant, model, user, hour, requests, prompt_tokens, cached_tokens, "    \
       "completion_tokens) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "                               \
       "ON CONFLICT (tenant, model, user, hour) DO UPDATE SET "                                    \
       "requests = requests + excluded.requests, "                                                 \
       "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "                                  \
       "cached_tokens = cached_tokens + excluded.cached_tokens, "                                  \
       "completion_tokens = completion_tokens + excluded.completion_tokens")                       \
    XX(USAGE_ALL, "SELECT tenant, model, user, hour, requests, prompt_tokens, cached_tokens, "     \
                  "completion_tokens FROM usage WHERE hour >= ?1 "                                 \
                  "ORDER BY hour, tenant, model, user")                                            \
    XX(USAGE_TENANT, "SELECT tenant, model, user, hour, requests, prompt_tokens, cached_tokens, "  \
                     "completion_tokens FROM usage WHERE tenant = ?2 AND hour >= ?1 "              \
                     "ORDER BY hour, tenant, model, user")                                         \
    XX(USAGE_TOKENS, "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM usage "      \
                     "WHERE tenant = ?1 AND hour >= ?2")                                           \
    XX(KV_QUOTA, "SELECT kv_quota FROM tenants WHERE id = ?1")                                     \
    XX(KV_USED, "SELECT bytes, keys FROM kv_usage WHERE tenant = ?1")                              \
    XX(KV_SIZE, "SELECT size FROM kv WHERE tenant = ?1 AND key = ?2")                              \
    XX(KV_PUT, "INSERT INTO kv (tenant, key, value, size, updated, expires_at) "                   \
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant, key) DO UPDATE SET "          \
               "value = excluded.value, size = excluded.size, updated = excluded.updated, "        \
               "expires_at = excluded.expires_at")                                                 \
    XX(KV_GET, "SELECT value, expires_at, updated FROM kv WHERE tenant = ?1 AND key = ?2")         \
    XX(KV_DELETE, "DELETE FROM kv WHERE tenant = ?1 AND key = ?2 RETURNING expires_at")            \
    XX(KV_LIST, "SELECT key FROM kv WHERE tenant = ?1 AND key >= ?2 AND key > ?3 "                 \
                "AND (expires_at = 0 OR expires_at > ?4) ORDER BY key")                            \
    XX(KV_PURGE_TENANT, "DELETE FROM kv WHERE tenant = ?1 AND expires_at > 0 "                     \
                        "AND expires_at <= ?2")                                                    \
    XX(KV_PURGE, "DELETE FROM kv WHERE rowid IN (SELECT rowid FROM kv WHERE expires_at > 0 "       \
                 "AND expires_at <= ?1 LIMIT ?2)")

enum {
#define XX(name, sql) STORE_##name,
    STORE_STMT_MAP(XX)
#undef XX
        STORE_STMT_COUNT
};

/* A key whose last use is still to be written. */
typedef struct store_touch {
    int64_t id, at;
} store_touch;

struct realm_store {
    char dir[STORE_DIR_MAX];
    char db_path[STORE_PATH_MAX];

    pthread_mutex_t db_mu;
    sqlite3 *db;
    int64_t kv_max_value, kv_default_quota; /* realm_kv_limits, resolved (db_mu) */
    sqlite3_stmt *stmts[STORE_STMT_COUNT];
    uint64_t own_writes; /* tenant and key changes made through this store */
    bool seen_any;       /* realm_store_changed has been called */
    int64_t seen_version;
    uint64_t seen_writes;

    pthread_mutex_t q_mu;
    pthread_cond_t q_cv; /* CLOCK_MONOTONIC; wakes the flusher */
    realm_usage *q;      /* distinct (tenant, model, user, hour), summed */
    int32_t q_n, q_cap;
    int32_t *q_slots; /* open addressing over q: index or -1; q_n_slots a power of 2 */
    int32_t q_n_slots;
    store_touch *touch;
    int32_t n_touch, cap_touch;
    bool thread_started, stopping, flush_failing;
    pthread_t thread;
};

/* With db_mu held: the prepared statement (NULL with the error set). Give it
 * back with realm__store_done. */
sqlite3_stmt *realm__store_stmt(realm_store *s, int which);
/* Reset a statement and clear its bindings; NULL is a no-op. */
void realm__store_done(sqlite3_stmt *st);
/* With db_mu held: REALM_ERR_IO "FILE: what: SQLite's message". */
int realm__store_db_error(realm_store *s, const char *what);
/* With db_mu held: run SQL without results (BEGIN, COMMIT, ...). */
int realm__store_exec(realm_store *s, const char *sql);
/* Unix seconds now. */
int64_t realm__store_time(void);
/* A tenant's id by name: REALM_ERR_NOTFOUND naming it. db_mu held. */
int realm__store_tenant_id(realm_store *s, const char *name, int64_t *id);

/* store_usage.c: write the queue and the key touches (db_mu held); stop the
 * flusher thread and free the queue (at close, after the last flush). */
int realm__store_flush_locked(realm_store *s);
void realm__store_usage_stop(realm_store *s);
void realm__store_usage_free(realm_store *s);
/* store_usage.c: queue a key's last use (starts the flusher if needed). */
void realm__store_touch(realm_store *s, int64_t key_id, int64_t at);

#endif
