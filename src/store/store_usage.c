/*
 * Usage (realm/store.h): records are summed in memory per (tenant, model,
 * user, hour) — a hash index over the queue array — and written in one
 * transaction by a background thread every second, earlier when many are
 * queued, and by realm_store_flush / realm_store_close. Keys' last uses
 * travel the same way.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error_internal.h"
#include "core/log_internal.h"
#include "store_internal.h"

/* ---- the queue (q_mu held) ------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static uint64_t usage_hash(const realm_usage *u)
{
    uint64_t h = 14695981039346656037ull;
    h = fnv(h, &u->tenant, sizeof u->tenant);
    h = fnv(h, &u->hour, sizeof u->hour);
    h = fnv(h, u->model, strlen(u->model) + 1);
    return fnv(h, u->user, strlen(u->user));
}

static bool same_bucket(const realm_usage *a, const realm_usage *b)
{
    return a->tenant == b->tenant && a->hour == b->hour && strcmp(a->model, b->model) == 0 &&
           strcmp(a->user, b->user) == 0;
}

/* Index q[i] in the slots (linear probing; the table is at most half full). */
static void slot_insert(realm_store *s, int32_t i)
{
    uint32_t mask = (uint32_t)s->q_n_slots - 1, h = (uint32_t)usage_hash(&s->q[i]) & mask;
    while (s->q_slots[h] >= 0)
        h = (h + 1) & mask;
    s->q_slots[h] = i;
}

/* Add u's counts to its bucket, making the bucket if needed. */
static int queue_add(realm_store *s, const realm_usage *u)
{
    if (s->q_n_slots) {
        uint32_t mask = (uint32_t)s->q_n_slots - 1, h = (uint32_t)usage_hash(u) & mask;
        for (int32_t i; (i = s->q_slots[h]) >= 0; h = (h + 1) & mask) {
            if (same_bucket(&s->q[i], u)) {
                s->q[i].requests += u->requests;
                s->q[i].prompt_tokens += u->prompt_tokens;
                s->q[i].cached_tokens += u->cached_tokens;
                s->q[i].completion_tokens += u->completion_tokens;
                return 0;
            }
        }
    }
    if (s->q_n >= STORE_QUEUE_MAX)
        return realm__error(REALM_ERR_OVERLOADED,
                            "%s: %d usage records are waiting to be written: the database is "
                            "not being written",
                            s->db_path, (int)s->q_n);
    if (s->q_n == s->q_cap) {
        int32_t cap = s->q_cap ? 2 * s->q_cap : 64;
        realm_usage *nq = realloc(s->q, (size_t)cap * sizeof *nq);
        if (!nq)
            return realm__error(REALM_ERR_NOMEM, "out of memory");
        s->q = nq;
        s->q_cap = cap;
    }
    if (2 * (s->q_n + 1) > s->q_n_slots) {
        int32_t n_slots = s->q_n_slots ? 2 * s->q_n_slots : 128;
        int32_t *slots = malloc((size_t)n_slots * sizeof *slots);
        if (!slots)
            return realm__error(REALM_ERR_NOMEM, "out of memory");
        free(s->q_slots);
        s->q_slots = slots;
        s->q_n_slots = n_slots;
        memset(slots, 0xff, (size_t)n_slots * sizeof *slots);
        for (int32_t i = 0; i < s->q_n; i++)
            slot_insert(s, i);
    }
    s->q[s->q_n] = *u;
    slot_insert(s, s->q_n++);
    return 0;
}

static void *flusher_main(void *arg);

/* Start the flusher on first need; if it cannot start, close still writes
 * everything. */
static void ensure_flusher(realm_store *s)
{
    if (!s->thread_started && !s->stopping)
        s->thread_started = pthread_create(&s->thread, NULL, flusher_main, s) == 0;
}

int realm_store_usage_record(realm_store *s, const realm_usage *u)
{
    if (!u || u->tenant <= 0)
        return realm__error(REALM_ERR_INVAL, "usage: tenant: %lld is not a tenant id",
                            u ? (long long)u->tenant : 0LL);
    if (!memchr(u->model, '\0', sizeof u->model) || !memchr(u->user, '\0', sizeof u->user))
        return realm__error(REALM_ERR_INVAL, "usage: model or user is not NUL-terminated");
    if (u->hour < 0 || u->requests < 0 || u->prompt_tokens < 0 || u->cached_tokens < 0 ||
        u->completion_tokens < 0)
        return realm__error(REALM_ERR_INVAL, "usage: a negative hour or count");
    realm_usage v = *u;
    if (v.hour == 0)
        v.hour = realm__store_time();
    v.hour -= v.hour % 3600;
    pthread_mutex_lock(&s->q_mu);
    int rc = queue_add(s, &v);
    ensure_flusher(s);
    if (s->q_n >= STORE_QUEUE_EAGER)
        pthread_cond_signal(&s->q_cv);
    pthread_mutex_unlock(&s->q_mu);
    return rc;
}

/* Queue a key's last use (q_mu held); best effort: dropped if out of memory. */
static void touch_add(realm_store *s, int64_t key_id, int64_t at)
{
    int32_t i = 0;
    while (i < s->n_touch && s->touch[i].id != key_id)
        i++;
    if (i == s->n_touch && s->n_touch == s->cap_touch) {
        int32_t cap = s->cap_touch ? 2 * s->cap_touch : 16;
        store_touch *nt = realloc(s->touch, (size_t)cap * sizeof *nt);
        if (!nt)
            return;
        s->touch = nt;
        s->cap_touch = cap;
    }
    if (i == s->n_touch)
        s->touch[s->n_touch++] = (store_touch){key_id, at};
    else if (s->touch[i].at < at)
        s->touch[i].at = at;
}

void realm__store_touch(realm_store *s, int64_t key_id, int64_t at)
{
    pthread_mutex_lock(&s->q_mu);
    touch_add(s, key_id, at);
    ensure_flusher(s);
    pthread_mutex_unlock(&s->q_mu);
}

/* ---- writing --------------------------------------------------------------------- */

int realm__store_flush_locked(realm_store *s)
{
    pthread_mutex_lock(&s->q_mu);
    realm_usage *q = s->q;
    int32_t n = s->q_n, n_touch = s->n_touch;
    store_touch *touch = s->touch;
    s->q = NULL;
    s->q_n = s->q_cap = 0;
    if (s->q_slots)
        memset(s->q_slots, 0xff, (size_t)s->q_n_slots * sizeof *s->q_slots);
    s->touch = NULL;
    s->n_touch = s->cap_touch = 0;
    pthread_mutex_unlock(&s->q_mu);
    if (n == 0 && n_touch == 0)
        return 0;

    int rc = realm__store_exec(s, "BEGIN IMMEDIATE");
    sqlite3_stmt *st = rc == 0 ? realm__store_stmt(s, STORE_USAGE_ADD) : NULL;
    if (rc == 0 && !st)
        rc = REALM_ERR_IO;
    for (int32_t i = 0; rc == 0 && i < n; i++) {
        const realm_usage *u = &q[i];
        sqlite3_bind_int64(st, 1, u->tenant);
        sqlite3_bind_text(st, 2, u->model, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, u->user, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, u->hour);
        sqlite3_bind_int64(st, 5, u->requests);
        sqlite3_bind_int64(st, 6, u->prompt_tokens);
        sqlite3_bind_int64(st, 7, u->cached_tokens);
        sqlite3_bind_int64(st, 8, u->completion_tokens);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = realm__store_db_error(s, "writing usage");
        realm__store_done(st);
    }
    st = rc == 0 && n_touch ? realm__store_stmt(s, STORE_KEY_TOUCH) : NULL;
    if (rc == 0 && n_touch && !st)
        rc = REALM_ERR_IO;
    for (int32_t i = 0; rc == 0 && i < n_touch; i++) {
        sqlite3_bind_int64(st, 1, touch[i].id);
        sqlite3_bind_int64(st, 2, touch[i].at);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = realm__store_db_error(s, "writing a key's last use");
        realm__store_done(st);
    }
    if (rc == 0)
        rc = realm__store_exec(s, "COMMIT");
    if (rc < 0) {
        if (!sqlite3_get_autocommit(s->db))
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        /* Back into the queue (merged with what came meanwhile) for the
         * next attempt; the error message is the database's. */
        char why[512];
        snprintf(why, sizeof why, "%s", realm_last_error());
        pthread_mutex_lock(&s->q_mu);
        int32_t lost = 0;
        for (int32_t i = 0; i < n; i++)
            lost += queue_add(s, &q[i]) < 0;
        for (int32_t i = 0; i < n_touch; i++)
            touch_add(s, touch[i].id, touch[i].at);
        pthread_mutex_unlock(&s->q_mu);
        if (lost)
            realm__log(REALM_LOG_ERROR, "%s: %d usage records lost (the queue is full)", s->db_path,
                       (int)lost);
        rc = realm__error(REALM_ERR_IO, "%s", why);
    }
    free(q);
    free(touch);
    return rc;
}

int realm_store_flush(realm_store *s)
{
    pthread_mutex_lock(&s->db_mu);
    int rc = realm__store_flush_locked(s);
    pthread_mutex_unlock(&s->db_mu);
    return rc;
}

/* Every second, or as soon as STORE_QUEUE_EAGER records wait (unless the
 * last attempt failed: then once a second). */
static void *flusher_main(void *arg)
{
    realm_store *s = arg;
    bool failing = false;
    pthread_mutex_lock(&s->q_mu);
    while (!s->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += 1;
        while (!s->stopping && (failing || s->q_n < STORE_QUEUE_EAGER))
            if (pthread_cond_timedwait(&s->q_cv, &s->q_mu, &until) == ETIMEDOUT)
                break;
        if (s->stopping)
            break;
        pthread_mutex_unlock(&s->q_mu);
        pthread_mutex_lock(&s->db_mu);
        int rc = realm__store_flush_locked(s);
        pthread_mutex_unlock(&s->db_mu);
        if (rc < 0 && !failing)
            realm__log(REALM_LOG_WARN, "usage not written, will retry: %s", realm_last_error());
        else if (rc == 0 && failing)
            realm__log(REALM_LOG_INFO, "%s: usage written again", s->db_path);
        failing = rc < 0;
        pthread_mutex_lock(&s->q_mu);
    }
    pthread_mutex_unlock(&s->q_mu);
    return NULL;
}

void realm__store_usage_stop(realm_store *s)
{
    pthread_mutex_lock(&s->q_mu);
    s->stopping = true;
    bool started = s->thread_started;
    pthread_cond_signal(&s->q_cv);
    pthread_mutex_unlock(&s->q_mu);
    if (started)
        pthread_join(s->thread, NULL);
}

void realm__store_usage_free(realm_store *s)
{
    free(s->q);
    free(s->q_slots);
    free(s->touch);
}

/* ---- reading --------------------------------------------------------------------- */

/* The start of the hour holding t (0 for t <= 0): rows are whole hours. */
static int64_t hour_of(int64_t t)
{
    return t <= 0 ? 0 : t - t % 3600;
}

int realm_store_usage_query(realm_store *s, const char *tenant, int64_t since, realm_usage **out,
                            int32_t *n)
{
    *out = NULL;
    *n = 0;
    realm_usage *v = NULL;
    int32_t len = 0, cap = 0;
    pthread_mutex_lock(&s->db_mu);
    int rc = realm__store_flush_locked(s);
    int64_t tid = 0;
    if (rc == 0 && tenant)
        rc = realm__store_tenant_id(s, tenant, &tid);
    sqlite3_stmt *st = NULL;
    if (rc == 0 && !(st = realm__store_stmt(s, tenant ? STORE_USAGE_TENANT : STORE_USAGE_ALL)))
        rc = REALM_ERR_IO;
    int r = SQLITE_DONE;
    if (st) {
        sqlite3_bind_int64(st, 1, hour_of(since));
        if (tenant)
            sqlite3_bind_int64(st, 2, tid);
    }
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? 2 * cap : 64;
            realm_usage *nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) {
                rc = realm__error(REALM_ERR_NOMEM, "out of memory");
                break;
            }
            v = nv;
        }
        realm_usage *u = &v[len++];
        memset(u, 0, sizeof *u);
        const unsigned char *model = sqlite3_column_text(st, 1);
        const unsigned char *user = sqlite3_column_text(st, 2);
        u->tenant = sqlite3_column_int64(st, 0);
        snprintf(u->model, sizeof u->model, "%s", model ? (const char *)model : "");
        snprintf(u->user, sizeof u->user, "%s", user ? (const char *)user : "");
        u->hour = sqlite3_column_int64(st, 3);
        u->requests = sqlite3_column_int64(st, 4);
        u->prompt_tokens = sqlite3_column_int64(st, 5);
        u->cached_tokens = sqlite3_column_int64(st, 6);
        u->completion_tokens = sqlite3_column_int64(st, 7);
    }
    if (rc == 0 && r != SQLITE_DONE)
        rc = realm__store_db_error(s, "reading usage");
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

int64_t realm_store_usage_tokens(realm_store *s, int64_t tenant, int64_t since)
{
    int64_t hour = hour_of(since), total = 0;
    pthread_mutex_lock(&s->db_mu);
    sqlite3_stmt *st = realm__store_stmt(s, STORE_USAGE_TOKENS);
    if (!st) {
        pthread_mutex_unlock(&s->db_mu);
        return REALM_ERR_IO;
    }
    sqlite3_bind_int64(st, 1, tenant);
    sqlite3_bind_int64(st, 2, hour);
    if (sqlite3_step(st) == SQLITE_ROW)
        total = sqlite3_column_int64(st, 0);
    else
        total = realm__store_db_error(s, "reading usage");
    realm__store_done(st);
    /* db_mu held: records are either written or still queued, not between. */
    pthread_mutex_lock(&s->q_mu);
    for (int32_t i = 0; total >= 0 && i < s->q_n; i++)
        if (s->q[i].tenant == tenant && s->q[i].hour >= hour)
            total += s->q[i].prompt_tokens + s->q[i].completion_tokens;
    pthread_mutex_unlock(&s->q_mu);
    pthread_mutex_unlock(&s->db_mu);
    return total;
}
