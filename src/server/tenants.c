/*
 * Tenants as the server runs them (server_internal.h): loaded from the store
 * and reloaded when it changes (a `realm tenant` command or the admin API in
 * another process), each with its module, a pool of idle instances of it,
 * and the state of its limits (token buckets for requests and tokens per
 * minute, requests at once, the month's quota).
 *
 * A tenant is shared by reference: a request keeps the one it was admitted
 * with, so a module replaced meanwhile serves in-flight requests to the end.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock_internal.h"
#include "core/error_internal.h"
#include "core/log_internal.h"
#include "server_internal.h"

static void tenant_destroy(tenant_rt *t)
{
    for (int32_t i = 0; i < t->n_free; i++)
        realm_instance_free(t->free_inst[i]);
    free(t->free_inst);
    if (t->own_mod)
        realm_module_free(t->mod);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void realm__tenant_unref(server *s, tenant_rt *t)
{
    pthread_mutex_lock(&s->tmu);
    const int left = --t->refs;
    pthread_mutex_unlock(&s->tmu);
    if (left == 0)
        tenant_destroy(t);
}

/* The tenant's fair-queuing weight, for every model's engine. */
static void push_weight(server *s, const tenant_rt *t)
{
    const double w = t->rec.weight > 0 ? t->rec.weight : 1;
    if (realm_registry_set_tenant(s->p.registry, (uint32_t)t->id,
                                  &(realm_tenant_limits){.weight = (float)w}) < 0)
        realm__log(REALM_LOG_WARN, "tenant '%s': %s", t->rec.name, realm_last_error());
}

/* A runtime tenant for record rec, with its module loaded. */
static tenant_rt *tenant_make(server *s, const realm_tenant *rec)
{
    tenant_rt *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->id = rec->id;
    t->rec = *rec;
    t->refs = 1; /* the server's list */
    pthread_mutex_init(&t->mu, NULL);
    t->mod = s->default_mod;
    if (rec->module_sha256[0] && s->p.store) {
        char path[4096];
        realm_module *m = NULL;
        if (realm_store_module_path(s->p.store, rec->module_sha256, path, sizeof path) == 0 &&
            realm_module_load(s->sb, path, &m) == 0) {
            t->mod = m;
            t->own_mod = true;
        } else {
            realm__log(REALM_LOG_ERROR,
                       "tenant '%s': its module %.12s cannot be loaded (%s); it "
                       "is served by the default module",
                       rec->name, rec->module_sha256, realm_last_error());
        }
    }
    t->rpm_tokens = (double)rec->rpm;
    t->tpm_tokens = (double)rec->tpm;
    t->t_refill = realm__now();
    return t;
}

/* Did the record change in a way that needs a new runtime tenant? */
static bool same_module(const realm_tenant *a, const realm_tenant *b)
{
    return strcmp(a->module_sha256, b->module_sha256) == 0;
}

int realm__tenants_init(server *s)
{
    realm_tenant def = {.weight = 1};
    snprintf(def.name, sizeof def.name, "default");
    if (s->p.store) {
        int rc = realm_store_tenant_get(s->p.store, "default", &def);
        if (rc == REALM_ERR_NOTFOUND)
            rc = realm_store_tenant_add(s->p.store, "default", &def);
        if (rc < 0)
            return rc;
    } else {
        def.id = 1;
    }
    s->default_tenant = tenant_make(s, &def);
    if (!s->default_tenant)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    push_weight(s, s->default_tenant);
    pthread_mutex_lock(&s->tmu);
    s->tenants = calloc(16, sizeof *s->tenants);
    s->cap_tenants = s->tenants ? 16 : 0;
    if (s->tenants) {
        s->tenants[s->n_tenants++] = s->default_tenant;
        s->default_tenant->refs++; /* the default_tenant pointer */
    }
    pthread_mutex_unlock(&s->tmu);
    realm__tenants_sync(s);
    return s->tenants ? REALM_OK : realm__error(REALM_ERR_NOMEM, "out of memory");
}

void realm__tenants_free(server *s)
{
    for (int32_t i = 0; i < s->n_tenants; i++)
        realm__tenant_unref(s, s->tenants[i]);
    free(s->tenants);
    s->tenants = NULL;
    s->n_tenants = 0;
    if (s->default_tenant)
        realm__tenant_unref(s, s->default_tenant);
    s->default_tenant = NULL;
}

void realm__tenants_sync(server *s)
{
    if (!s->p.store)
        return;
    /* one sync at a time: whoever sees the change reloads while the others
     * wait for it, so a caller returns with the change applied */
    pthread_mutex_lock(&s->sync_mu);
    if (!realm_store_changed(s->p.store)) {
        pthread_mutex_unlock(&s->sync_mu);
        return;
    }
    /* keyless serving lasts only while no key exists */
    if (s->keyless && !s->p.no_auth && realm_store_key_count(s->p.store) > 0) {
        s->keyless = false;
        realm__log(REALM_LOG_INFO, "API keys exist now: requests need one");
    }
    realm_tenant *recs = NULL;
    int32_t n = 0;
    if (realm_store_tenant_list(s->p.store, &recs, &n) < 0) {
        realm__log(REALM_LOG_ERROR, "cannot read tenants: %s", realm_last_error());
        pthread_mutex_unlock(&s->sync_mu);
        return;
    }
    /* new runtime tenants for new records and changed modules, outside the lock */
    tenant_rt **fresh = calloc((size_t)n + 1, sizeof *fresh);
    for (int32_t i = 0; fresh && i < n; i++) {
        pthread_mutex_lock(&s->tmu);
        tenant_rt *old = NULL;
        for (int32_t k = 0; k < s->n_tenants && !old; k++)
            if (s->tenants[k]->id == recs[i].id)
                old = s->tenants[k];
        const bool keep = old && same_module(&old->rec, &recs[i]);
        if (keep) {
            pthread_mutex_lock(&old->mu);
            const bool rates = old->rec.rpm != recs[i].rpm || old->rec.tpm != recs[i].tpm;
            old->rec = recs[i];
            if (rates) {
                old->rpm_tokens = (double)recs[i].rpm;
                old->tpm_tokens = (double)recs[i].tpm;
            }
            pthread_mutex_unlock(&old->mu);
            old->refs++;
            fresh[i] = old;
        }
        pthread_mutex_unlock(&s->tmu);
        if (!keep)
            fresh[i] = tenant_make(s, &recs[i]);
        if (fresh[i])
            push_weight(s, fresh[i]);
    }
    if (!fresh) {
        free(recs);
        pthread_mutex_unlock(&s->sync_mu);
        return;
    }
    /* swap the list: tenants no longer listed are removed (their requests
     * finish; their keys already fail) */
    pthread_mutex_lock(&s->tmu);
    tenant_rt **old_list = s->tenants;
    const int32_t old_n = s->n_tenants;
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++)
        if (fresh[i])
            fresh[m++] = fresh[i];
    s->tenants = fresh;
    s->n_tenants = m;
    s->cap_tenants = n + 1;
    tenant_rt *old_default = NULL;
    for (int32_t i = 0; i < m; i++)
        if (fresh[i]->id == s->default_tenant->id && fresh[i] != s->default_tenant) {
            old_default = s->default_tenant;
            s->default_tenant = fresh[i];
            fresh[i]->refs++;
        }
    pthread_mutex_unlock(&s->tmu);
    if (old_default)
        realm__tenant_unref(s, old_default);
    for (int32_t i = 0; i < old_n; i++)
        realm__tenant_unref(s, old_list[i]);
    free(old_list);
    free(recs);
    pthread_mutex_unlock(&s->sync_mu);
}

tenant_rt *realm__tenant_get(server *s, int64_t id)
{
    tenant_rt *t = NULL;
    pthread_mutex_lock(&s->tmu);
    for (int32_t i = 0; i < s->n_tenants && !t; i++)
        if (s->tenants[i]->id == id)
            t = s->tenants[i];
    if (t)
        t->refs++;
    pthread_mutex_unlock(&s->tmu);
    if (!t && s->p.store) { /* added since the last sync */
        realm__tenants_sync(s);
        pthread_mutex_lock(&s->tmu);
        for (int32_t i = 0; i < s->n_tenants && !t; i++)
            if (s->tenants[i]->id == id)
                t = s->tenants[i];
        if (t)
            t->refs++;
        pthread_mutex_unlock(&s->tmu);
    }
    return t;
}

tenant_rt *realm__tenant_by_name(server *s, const char *name)
{
    tenant_rt *t = NULL;
    pthread_mutex_lock(&s->tmu);
    for (int32_t i = 0; i < s->n_tenants && !t; i++)
        if (strcmp(s->tenants[i]->rec.name, name) == 0)
            t = s->tenants[i];
    if (t)
        t->refs++;
    pthread_mutex_unlock(&s->tmu);
    return t;
}

void realm__tenant_policy(server *s, const tenant_rt *t, realm_tenant_policy *pol)
{
    realm_tenant_policy_init(pol);
    pol->tenant = (uint32_t)t->id;
    pol->deadline_ms =
        t->rec.deadline_ms > 0 ? (uint32_t)t->rec.deadline_ms : s->p.sandbox_deadline_ms;
    if (t->rec.max_pages > 0)
        pol->max_pages = (uint32_t)t->rec.max_pages;
    else if (s->p.sandbox_max_pages)
        pol->max_pages = s->p.sandbox_max_pages;
    pol->max_tokens = (int32_t)(t->rec.max_tokens > INT32_MAX ? INT32_MAX : t->rec.max_tokens);
}

int realm__tenant_instance(server *s, tenant_rt *t, realm_instance **out)
{
    pthread_mutex_lock(&t->mu);
    if (t->n_free > 0) {
        *out = t->free_inst[--t->n_free];
        pthread_mutex_unlock(&t->mu);
        return REALM_OK;
    }
    pthread_mutex_unlock(&t->mu);
    realm_tenant_policy pol;
    realm__tenant_policy(s, t, &pol);
    /* the allowed models: the policy copies them */
    const char *names[REALM_STORE_MAX_MODELS];
    char buf[sizeof t->rec.models];
    snprintf(buf, sizeof buf, "%s", t->rec.models);
    int32_t n = 0;
    for (char *p = buf, *save = NULL, *tok = strtok_r(p, ",", &save);
         tok && n < REALM_STORE_MAX_MODELS; tok = strtok_r(NULL, ",", &save))
        names[n++] = tok;
    if (n > 0) {
        pol.models = names;
        pol.n_models = n;
    }
    return realm_instance_new(t->mod, &pol, out);
}

void realm__tenant_instance_put(tenant_rt *t, realm_instance *in)
{
    pthread_mutex_lock(&t->mu);
    if (t->n_free == t->cap_free) {
        int32_t cap = t->cap_free ? 2 * t->cap_free : 8;
        realm_instance **v = realloc(t->free_inst, (size_t)cap * sizeof *v);
        if (v) {
            t->free_inst = v;
            t->cap_free = cap;
        }
    }
    if (t->n_free < t->cap_free && t->n_free < 64) {
        t->free_inst[t->n_free++] = in;
        in = NULL;
    }
    pthread_mutex_unlock(&t->mu);
    realm_instance_free(in);
}

/* Seconds until the next minute-bucket token, for Retry-After. */
static int retry_after(double tokens, double per_minute)
{
    if (per_minute <= 0)
        return 60;
    const double s = (1.0 - tokens) * 60.0 / per_minute;
    return s < 1 ? 1 : (int)ceil(s);
}

static int64_t month_start(void)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    return (int64_t)timegm(&tm);
}

int realm__tenant_admit(server *s, tenant_rt *t, req *r)
{
    char v[32];
    pthread_mutex_lock(&t->mu);
    const realm_tenant rec = t->rec;
    /* refill the buckets: rpm and tpm per minute, capped at one minute's worth */
    const double now = realm__now(), dt = now - t->t_refill;
    t->t_refill = now;
    if (rec.rpm > 0)
        t->rpm_tokens = fmin((double)rec.rpm, t->rpm_tokens + dt * (double)rec.rpm / 60.0);
    if (rec.tpm > 0)
        t->tpm_tokens = fmin((double)rec.tpm, t->tpm_tokens + dt * (double)rec.tpm / 60.0);
    int status = 0;
    const char *what = NULL;
    int retry = 0;
    if (rec.max_concurrent > 0 && t->concurrent >= rec.max_concurrent) {
        status = 429, what = "concurrent requests", retry = 1;
    } else if (rec.rpm > 0 && t->rpm_tokens < 1.0) {
        status = 429, what = "requests per minute", retry = retry_after(t->rpm_tokens, rec.rpm);
    } else if (rec.tpm > 0 && t->tpm_tokens < 1.0) {
        status = 429, what = "tokens per minute", retry = retry_after(t->tpm_tokens, rec.tpm);
    }
    if (!status) {
        if (rec.rpm > 0)
            t->rpm_tokens -= 1.0;
        t->concurrent++;
    }
    const double rpm_left = t->rpm_tokens, tpm_left = t->tpm_tokens;
    pthread_mutex_unlock(&t->mu);

    if (!status && rec.quota > 0 && s->p.store) {
        const int64_t since = month_start();
        if (realm_store_usage_tokens(s->p.store, t->id, since) >= rec.quota) {
            realm__tenant_done(t, 0);
            realm__metrics_rejection(s->m, "quota");
            realm__reply_header(r, "x-should-retry", "false");
            realm__reply_error(r, 429, "insufficient_quota", NULL, "insufficient_quota",
                               "tenant '%s' has used its monthly quota of %lld tokens", rec.name,
                               (long long)rec.quota);
            return 429;
        }
    }
    if (rec.rpm > 0) {
        snprintf(v, sizeof v, "%lld", (long long)rec.rpm);
        realm__reply_header(r, "x-ratelimit-limit-requests", v);
        snprintf(v, sizeof v, "%lld", (long long)(rpm_left > 0 ? rpm_left : 0));
        realm__reply_header(r, "x-ratelimit-remaining-requests", v);
        snprintf(v, sizeof v, "%ds", retry_after(rpm_left, rec.rpm));
        realm__reply_header(r, "x-ratelimit-reset-requests", v);
    }
    if (rec.tpm > 0) {
        snprintf(v, sizeof v, "%lld", (long long)rec.tpm);
        realm__reply_header(r, "x-ratelimit-limit-tokens", v);
        snprintf(v, sizeof v, "%lld", (long long)(tpm_left > 0 ? tpm_left : 0));
        realm__reply_header(r, "x-ratelimit-remaining-tokens", v);
        snprintf(v, sizeof v, "%ds", retry_after(tpm_left, rec.tpm));
        realm__reply_header(r, "x-ratelimit-reset-tokens", v);
    }
    if (status) {
        realm__metrics_rejection(s->m, "rate_limit");
        snprintf(v, sizeof v, "%d", retry);
        realm__reply_header(r, "Retry-After", v);
        realm__reply_error(r, status, "requests", NULL, "rate_limit_exceeded",
                           "tenant '%s' is over its limit of %s; retry after %d s", rec.name, what,
                           retry);
    }
    return status;
}

void realm__tenant_done(tenant_rt *t, int64_t tokens)
{
    pthread_mutex_lock(&t->mu);
    t->concurrent--;
    if (t->rec.tpm > 0)
        t->tpm_tokens -= (double)tokens; /* may go negative: a debt paid by waiting */
    pthread_mutex_unlock(&t->mu);
}
