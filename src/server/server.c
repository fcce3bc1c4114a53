/*
 * The server's lifecycle and its libmicrohttpd glue (server_internal.h).
 *
 * One libmicrohttpd thread (epoll) owns every connection, so idle
 * keep-alive connections cost no thread. A request's body is collected on
 * that thread; the request is then answered there (cheap endpoints) or handed
 * to a worker and its connection suspended. A worker's output goes into the
 * request's buffer: the whole response, or — once the module emits — a
 * chunked response whose reader takes what is buffered and suspends the
 * connection when nothing is (the worker resumes it). A slow client so holds
 * a buffer, never a worker's module.
 *
 * libmicrohttpd does not see a suspended connection's client leave: a
 * watcher thread polls those sockets and marks the request cancelled when a
 * peer closed (the module's waits see it within 20 ms and the engine frees
 * the request's blocks at its next step), then resumes the connection so it
 * is torn down.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock_internal.h"
#include "core/error_internal.h"
#include "core/log_internal.h"
#include "server_internal.h"

#define STREAM_BUFFER_MAX (64u << 20) /* a client this far behind is dropped */

void realm_server_params_init(realm_server_params *p)
{
    memset(p, 0, sizeof *p);
    p->host = "127.0.0.1";
    p->port = 8080;
    p->max_body = 1u << 20;
    p->workers = 64;
    p->max_queue = 1024;
    p->max_connections = 4096;
    p->ws_max_connections = 1024;
    p->read_timeout_s = 30;
    p->drain_timeout_s = 30;
    p->metrics_tenants = 32;
    p->responses_ttl_s = 30 * 86400;
    p->sandbox_deadline_ms = 600000;
}

/* ---- requests ------------------------------------------------------------------ */

req *realm__req_new(server *s, struct MHD_Connection *c, const char *url, const char *method)
{
    req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->srv = s;
    r->conn = c;
    r->refs = 1;
    r->status = 200;
    r->t_start = realm__now();
    pthread_mutex_init(&r->mu, NULL);
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->path, sizeof r->path, "%s", url);
    snprintf(r->route, sizeof r->route, "other");
    static atomic_uint_fast64_t counter;
    unsigned char rnd[8] = {0};
    if (getentropy(rnd, sizeof rnd) != 0)
        memset(rnd, 0, sizeof rnd);
    snprintf(r->id, sizeof r->id, "req-%02x%02x%02x%02x%02x%02x%llx", rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5], (unsigned long long)atomic_fetch_add(&counter, 1) + 1);
    const union MHD_ConnectionInfo *ci =
        c ? MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD) : NULL;
    r->fd = ci ? ci->connect_fd : -1;
    atomic_init(&r->cancelled, 0);
    atomic_init(&r->stop, 0);
    atomic_fetch_add(&s->active, 1);
    r->counted_active = true;
    return r;
}

void realm__req_ref(req *r)
{
    pthread_mutex_lock(&r->mu);
    r->refs++;
    pthread_mutex_unlock(&r->mu);
}

void realm__req_unref(req *r)
{
    pthread_mutex_lock(&r->mu);
    const int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left > 0)
        return;
    if (r->ready)
        MHD_destroy_response(r->ready);
    for (int i = 0; i < r->n_headers; i++) {
        free(r->hname[i]);
        free(r->hvalue[i]);
    }
    if (r->tenant)
        realm__tenant_unref(r->srv, r->tenant);
    if (r->counted_active)
        atomic_fetch_sub(&r->srv->active, 1);
    if (r->ws_slot) /* a handshake answered but never upgraded */
        atomic_fetch_sub(&r->srv->n_ws, 1);
    if (r->ws)
        realm__ws_conn_unref(r->ws);
    free(r->body);
    free(r->info);
    free(r->out);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Stop watching r (under r->mu is not needed: the list has its own lock). */
static void unwatch(server *s, req *r)
{
    pthread_mutex_lock(&s->wmu);
    for (int32_t i = 0; i < s->n_watch; i++)
        if (s->watch[i] == r) {
            s->watch[i] = s->watch[--s->n_watch];
            r->watched = false;
            realm__req_unref(r);
            break;
        }
    pthread_mutex_unlock(&s->wmu);
}

static void watch(server *s, req *r)
{
    pthread_mutex_lock(&s->wmu);
    if (!r->watched && r->fd >= 0) {
        if (s->n_watch == s->cap_watch) {
            int32_t cap = s->cap_watch ? 2 * s->cap_watch : 64;
            req **v = realloc(s->watch, (size_t)cap * sizeof *v);
            if (v) {
                s->watch = v;
                s->cap_watch = cap;
            }
        }
        if (s->n_watch < s->cap_watch) {
            realm__req_ref(r);
            s->watch[s->n_watch++] = r;
            r->watched = true;
        }
    }
    pthread_mutex_unlock(&s->wmu);
}

/* Suspend r's connection (from a libmicrohttpd callback, under r->mu). */
static void suspend_locked(req *r)
{
    if (!r->suspended && r->conn) {
        r->suspended = true;
        MHD_suspend_connection(r->conn);
    }
}

/* Resume r's connection if suspended (any thread, under r->mu). */
static void resume_locked(req *r)
{
    if (r->suspended && r->conn) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
    }
}

static void add_headers(req *r, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "x-request-id", r->id);
    for (int i = 0; i < r->n_headers; i++)
        MHD_add_response_header(resp, r->hname[i], r->hvalue[i]);
}

bool realm__req_start(req *r, int status, const char *const *names, const char *const *values,
                      int n)
{
    pthread_mutex_lock(&r->mu);
    const bool ok = !r->started && !r->finished;
    if (ok) {
        r->status = status;
        for (int i = 0; i < n && r->n_headers < REQ_MAX_HEADERS; i++) {
            r->hname[r->n_headers] = strdup(names[i]);
            r->hvalue[r->n_headers] = strdup(values[i]);
            if (r->hname[r->n_headers] && r->hvalue[r->n_headers])
                r->n_headers++;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

/* The streamed response's reader: what is buffered, or suspend until the
 * worker emits more, or the end. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    req *r = cls;
    (void)pos;
    pthread_mutex_lock(&r->mu);
    ssize_t n;
    if (r->out_off < r->out_len) {
        size_t k = r->out_len - r->out_off;
        if (k > max)
            k = max;
        memcpy(buf, r->out + r->out_off, k);
        r->out_off += k;
        if (r->out_off == r->out_len)
            r->out_off = r->out_len = 0;
        n = (ssize_t)k;
    } else if (r->finished) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else if (atomic_load(&r->cancelled)) {
        n = MHD_CONTENT_READER_END_WITH_ERROR;
    } else {
        suspend_locked(r);
        n = 0;
    }
    const bool idle = n == 0;
    pthread_mutex_unlock(&r->mu);
    if (idle)
        watch(r->srv, r);
    return n;
}

static void stream_free(void *cls)
{
    realm__req_unref(cls);
}

/* Append to r's stream buffer (under r->mu). */
static bool buffer_locked(req *r, const char *data, size_t len)
{
    if (r->out_len + len > STREAM_BUFFER_MAX)
        return false;
    if (r->out_len + len > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap : 4096;
        while (cap < r->out_len + len)
            cap *= 2;
        char *o = realloc(r->out, cap);
        if (!o)
            return false;
        r->out = o;
        r->out_cap = cap;
    }
    memcpy(r->out + r->out_len, data, len);
    r->out_len += len;
    return true;
}

void realm__req_emit(req *r, const char *data, size_t len)
{
    if (r->ws) {
        realm__ws_emit(r, data, len);
        return;
    }
    pthread_mutex_lock(&r->mu);
    if (r->finished || atomic_load(&r->cancelled)) {
        pthread_mutex_unlock(&r->mu);
        return;
    }
    if (!r->streaming) {
        r->streaming = r->started = true;
        r->refs++; /* the response's reader */
        struct MHD_Response *resp = MHD_create_response_from_callback(
            MHD_SIZE_UNKNOWN, 16384, stream_reader, r, stream_free);
        if (resp) {
            add_headers(r, resp);
            if (!r->n_headers || !MHD_get_response_header(resp, "Content-Type"))
                MHD_add_response_header(resp, "Content-Type", "text/event-stream");
            if (!MHD_get_response_header(resp, "Cache-Control"))
                MHD_add_response_header(resp, "Cache-Control", "no-cache");
            r->ready = resp;
        } else {
            r->refs--;
            atomic_store(&r->cancelled, 1);
        }
    }
    if (len && !buffer_locked(r, data, len)) {
        realm__log(REALM_LOG_WARN, "%s: the client is %u MiB behind; dropping it", r->id,
                   STREAM_BUFFER_MAX >> 20);
        atomic_store(&r->cancelled, 1);
    }
    resume_locked(r);
    pthread_mutex_unlock(&r->mu);
}

void realm__req_respond(req *r, int status, const char *body, size_t len)
{
    if (r->ws) {
        realm__ws_respond(r, status, body, len);
        return;
    }
    pthread_mutex_lock(&r->mu);
    if (r->finished) {
        pthread_mutex_unlock(&r->mu);
        return;
    }
    if (r->streaming) { /* the end of a stream: the body is its last bytes */
        if (len)
            buffer_locked(r, body, len);
    } else {
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
        if (resp) {
            if (!r->started)
                r->status = status;
            add_headers(r, resp);
            if (!MHD_get_response_header(resp, "Content-Type"))
                MHD_add_response_header(resp, "Content-Type", "application/json");
            if (r->ready)
                MHD_destroy_response(r->ready);
            r->ready = resp;
        }
        r->started = true;
    }
    r->finished = true;
    resume_locked(r);
    pthread_mutex_unlock(&r->mu);
}

/* ---- workers ------------------------------------------------------------------------ */

bool realm__req_enqueue(req *r)
{
    server *s = r->srv;
    pthread_mutex_lock(&s->qmu);
    const bool ok = s->q_len < s->p.max_queue && !s->workers_stop;
    if (ok) {
        realm__req_ref(r);
        r->handed = true;
        s->queue[(s->q_head + s->q_len++) % s->p.max_queue] = r;
        pthread_cond_signal(&s->qcv);
    }
    pthread_mutex_unlock(&s->qmu);
    return ok;
}

static void *worker_main(void *arg)
{
    server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->qmu);
        while (s->q_len == 0 && !s->workers_stop)
            pthread_cond_wait(&s->qcv, &s->qmu);
        if (s->q_len == 0) {
            pthread_mutex_unlock(&s->qmu);
            return NULL;
        }
        req *r = s->queue[s->q_head];
        s->q_head = (s->q_head + 1) % s->p.max_queue;
        s->q_len--;
        pthread_mutex_unlock(&s->qmu);
        realm__run_module(r);
        unwatch(s, r);
        realm__req_unref(r);
    }
}

/* ---- the disconnect watcher and maintenance ----------------------------------------- */

/* True when r's peer closed its side (EOF on a peek; pipelined bytes are not
 * an EOF). */
static bool peer_closed(int fd, short revents)
{
    if (revents & (POLLHUP | POLLERR | POLLRDHUP))
        return true;
    if (!(revents & POLLIN))
        return false;
    char c;
    const ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void *watcher_main(void *arg)
{
    server *s = arg;
    struct pollfd *pfd = NULL;
    req **rs = NULL;
    int32_t cap = 0;
    while (!atomic_load(&s->stop_now) && !s->workers_stop) {
        pthread_mutex_lock(&s->wmu);
        int32_t n = s->n_watch;
        if (n > cap) {
            struct pollfd *p2 = realloc(pfd, (size_t)n * sizeof *p2);
            req **r2 = p2 ? realloc(rs, (size_t)n * sizeof *r2) : NULL;
            if (p2)
                pfd = p2;
            if (r2)
                rs = r2;
            if (p2 && r2)
                cap = n;
            else
                n = cap;
        }
        for (int32_t i = 0; i < n; i++) {
            rs[i] = s->watch[i];
            realm__req_ref(rs[i]);
            pfd[i] = (struct pollfd){.fd = rs[i]->fd, .events = POLLIN | POLLRDHUP};
        }
        pthread_mutex_unlock(&s->wmu);
        if (n == 0) {
            usleep(20000);
            continue;
        }
        if (n > 0 && poll(pfd, (nfds_t)n, 20) > 0)
            for (int32_t i = 0; i < n; i++) {
                req *r = rs[i];
                if (!pfd[i].revents || !peer_closed(pfd[i].fd, pfd[i].revents))
                    continue;
                atomic_store(&r->cancelled, 1);
                pthread_mutex_lock(&r->mu);
                resume_locked(r); /* libmicrohttpd sees the closed socket and tears down */
                pthread_mutex_unlock(&r->mu);
                unwatch(s, r);
            }
        for (int32_t i = 0; i < n; i++)
            realm__req_unref(rs[i]);
    }
    free(pfd);
    free(rs);
    return NULL;
}

/* How often expired key-value data is removed (seconds). */
#define KV_PURGE_INTERVAL 60.0

/* Housekeeping: tenants from the store every half second; expired key-value
 * data (realm.kv_put with a ttl) every KV_PURGE_INTERVAL. */
static void *maint_main(void *arg)
{
    server *s = arg;
    double t_purge = -KV_PURGE_INTERVAL; /* the first pass purges */
    while (!atomic_load(&s->stop_now) && !s->workers_stop) {
        realm__tenants_sync(s);
        if (s->p.store && realm__now() - t_purge >= KV_PURGE_INTERVAL) {
            t_purge = realm__now();
            const int64_t n = realm_store_kv_purge(s->p.store, 0);
            if (n < 0)
                realm__log(REALM_LOG_WARN, "expired key-value data not removed: %s",
                           realm_last_error());
            else if (n > 0)
                realm__log(REALM_LOG_DEBUG, "%lld expired key-value entries removed", (long long)n);
        }
        for (int i = 0; i < 25 && !s->workers_stop; i++)
            usleep(20000);
    }
    return NULL;
}

/* ---- libmicrohttpd callbacks ----------------------------------------------------------- */

static enum MHD_Result queue_ready(req *r, struct MHD_Connection *c)
{
    pthread_mutex_lock(&r->mu);
    struct MHD_Response *resp = r->ready;
    r->ready = NULL;
    const int status = r->status;
    const bool cancelled = atomic_load(&r->cancelled);
    if (!resp && !cancelled && !r->finished)
        suspend_locked(r); /* woken early: still waiting for the worker */
    pthread_mutex_unlock(&r->mu);
    if (resp) {
        realm__metrics_http(r->srv->m, r->route, status);
        enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, resp);
        MHD_destroy_response(resp);
        return ok;
    }
    if (cancelled)
        return MHD_NO; /* the client left: close */
    watch(r->srv, r);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    server *s = cls;
    (void)version;
    req *r = *con_cls;
    if (r == NULL) {
        r = realm__req_new(s, c, url, method);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        const uint64_t content_length = cl ? strtoull(cl, NULL, 10) : 0;
        if (realm__route_early(r, c, content_length))
            return queue_ready(r, c);
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (r->ready) { /* answered early (an error): ignore the body */
            *upload_size = 0;
            return MHD_YES;
        }
        if (r->body_len + *upload_size > s->p.max_body) {
            r->too_large = true;
        } else {
            if (r->body_len + *upload_size + 1 > r->body_cap) {
                size_t cap = r->body_cap ? r->body_cap : 4096;
                while (cap < r->body_len + *upload_size + 1)
                    cap *= 2;
                char *b = realloc(r->body, cap);
                if (!b)
                    return MHD_NO;
                r->body = b;
                r->body_cap = cap;
            }
            memcpy(r->body + r->body_len, upload, *upload_size);
            r->body_len += *upload_size;
            r->body[r->body_len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->ready || r->handed || r->finished || atomic_load(&r->cancelled))
        return queue_ready(r, c);
    /* the whole body is here */
    if (r->too_large)
        realm__reply_error(r, 413, NULL, NULL, "request_too_large",
                           "the request body is larger than the limit of %llu bytes",
                           (unsigned long long)s->p.max_body);
    else
        realm__route(r);
    return queue_ready(r, c);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c;
    req *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        atomic_store(&r->cancelled, 1);
    /* the access log: one line per request, with its id (probes at debug level) */
    const bool probe = strcmp(r->route, "/health") == 0 || strcmp(r->route, "/ready") == 0 ||
                       strcmp(r->route, "/metrics") == 0;
    realm__log(probe ? REALM_LOG_DEBUG : REALM_LOG_INFO, "%s %s %.200s %d %.1f ms tenant %s%s",
               r->id, r->method, r->path, r->status, (realm__now() - r->t_start) * 1e3,
               r->tenant ? r->tenant->rec.name : "-",
               toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection ended early)");
    pthread_mutex_lock(&r->mu);
    r->conn = NULL; /* never touch the connection again */
    r->suspended = false;
    /* a response made but never queued (the client left as it was made): a streamed one
     * holds its reader's reference to r, so it must go now, outside r->mu */
    struct MHD_Response *unqueued = r->ready;
    r->ready = NULL;
    pthread_mutex_unlock(&r->mu);
    if (unqueued)
        MHD_destroy_response(unqueued);
    unwatch(r->srv, r);
    realm__req_unref(r);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    realm__log(REALM_LOG_DEBUG, "http: %s", buf);
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, k;
    char tmp[4096];
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (len + k + 1 > cap) {
            cap = (len + k + 1) * 2;
            char *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        memcpy(buf + len, tmp, k);
        len += k;
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* Is host a loopback address? */
static bool is_loopback(const char *host)
{
    return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
           strcmp(host, "::1") == 0 || strcmp(host, "[::1]") == 0;
}

int realm_server_new(const realm_server_params *params, realm_server **out)
{
    *out = NULL;
    if (!params || !params->registry)
        return realm__error(REALM_ERR_INVAL, "server: a model registry is required");
    server *s = calloc(1, sizeof *s);
    if (!s)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    s->p = *params;
    realm_server_params def;
    realm_server_params_init(&def);
    if (!s->p.host || !*s->p.host)
        s->p.host = def.host;
    if (s->p.max_body == 0)
        s->p.max_body = def.max_body;
    if (s->p.workers <= 0)
        s->p.workers = def.workers;
    if (s->p.max_queue <= 0)
        s->p.max_queue = def.max_queue;
    if (s->p.max_connections <= 0)
        s->p.max_connections = def.max_connections;
    if (s->p.ws_max_connections <= 0)
        s->p.ws_max_connections = def.ws_max_connections;
    if (s->p.read_timeout_s <= 0)
        s->p.read_timeout_s = def.read_timeout_s;
    if (s->p.drain_timeout_s < 0)
        s->p.drain_timeout_s = def.drain_timeout_s;
    if (s->p.responses_ttl_s <= 0)
        s->p.responses_ttl_s = def.responses_ttl_s;
    if (s->p.metrics_tenants <= 0)
        s->p.metrics_tenants = def.metrics_tenants;
    if (s->p.sandbox_deadline_ms == 0)
        s->p.sandbox_deadline_ms = def.sandbox_deadline_ms;
    snprintf(s->host, sizeof s->host, "%s", s->p.host);
    s->p.host = s->host;
    s->loopback = is_loopback(s->host);
    s->stop_pipe[0] = s->stop_pipe[1] = -1;
    pthread_mutex_init(&s->tmu, NULL);
    pthread_mutex_init(&s->sync_mu, NULL);
    pthread_mutex_init(&s->qmu, NULL);
    pthread_cond_init(&s->qcv, NULL);
    pthread_mutex_init(&s->wmu, NULL);

    int rc = REALM_OK;
    const bool have_keys = (s->p.store && realm_store_key_count(s->p.store) > 0) || s->p.api_key;
    s->keyless = !have_keys;
    if (s->keyless && !s->loopback && !s->p.no_auth)
        rc = realm__error(REALM_ERR_INVAL,
                          "refusing to serve %s without API keys: create one (realm key create "
                          "default), give --api-key, or pass --no-auth to serve it open",
                          s->host);
    if (rc == 0 && (!s->p.default_module || !s->p.default_module_len))
        rc = realm__error(REALM_ERR_INVAL, "server: no default module");
    if (rc == 0 && (s->p.tls_cert != NULL) != (s->p.tls_key != NULL))
        rc = realm__error(REALM_ERR_INVAL, "TLS needs both a certificate and a key");
    if (rc == 0 && s->p.tls_cert) {
        s->tls_cert_pem = read_file(s->p.tls_cert);
        s->tls_key_pem = read_file(s->p.tls_key);
        if (!s->tls_cert_pem || !s->tls_key_pem)
            rc = realm__error(REALM_ERR_IO, "cannot read %s: %s",
                              !s->tls_cert_pem ? s->p.tls_cert : s->p.tls_key, strerror(errno));
        else if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
            rc = realm__error(REALM_ERR_UNSUPPORTED, "this libmicrohttpd has no TLS support");
        s->tls = true;
    }
    if (rc == 0)
        rc = realm_sandbox_new(
            &(realm_sandbox_params){.cache_dir = s->p.module_cache, .registry = s->p.registry},
            &s->sb);
    if (rc == 0 && (rc = realm_module_load_bytes(s->sb, s->p.default_module,
                                                 s->p.default_module_len, &s->default_mod)) < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", realm_last_error());
        rc = realm__error(rc, "the default module: %s", msg);
    }
    if (rc == 0 && !(s->m = realm__metrics_new(s->p.metrics_tenants)))
        rc = realm__error(REALM_ERR_NOMEM, "out of memory");
    if (rc == 0)
        rc = realm__tenants_init(s);
    if (rc == 0 && !(s->queue = calloc((size_t)s->p.max_queue, sizeof *s->queue)))
        rc = realm__error(REALM_ERR_NOMEM, "out of memory");
    if (rc == 0 && pipe2(s->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        rc = realm__error(REALM_ERR_IO, "pipe: %s", strerror(errno));
    if (rc == 0)
        rc = realm__ws_init(s);

    /* the listening socket */
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", s->p.port);
    char bare[256];
    snprintf(bare, sizeof bare, "%s", s->host);
    if (bare[0] == '[') { /* [::1] */
        memmove(bare, bare + 1, strlen(bare));
        char *e = strchr(bare, ']');
        if (e)
            *e = '\0';
    }
    int gai = rc == 0 ? getaddrinfo(bare, port, &hints, &ai) : 0;
    if (rc == 0 && gai != 0)
        rc = realm__error(REALM_ERR_INVAL, "cannot resolve %s: %s", s->host, gai_strerror(gai));
    if (rc == 0) {
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
        if (ai->ai_family == AF_INET6)
            flags |= MHD_USE_IPv6;
        if (s->tls)
            flags |= MHD_USE_TLS;
        struct MHD_OptionItem opts[16];
        int no = 0;
        opts[no++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr};
        opts[no++] =
            (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, NULL};
        opts[no++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                             (intptr_t)(s->p.read_timeout_s + 0.5), NULL};
        opts[no++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT,
                                             (intptr_t)s->p.max_connections, NULL};
        opts[no++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL};
        opts[no++] = (struct MHD_OptionItem){MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL};
        opts[no++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, 128 * 1024, NULL};
        if (s->tls) {
            opts[no++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert_pem};
            opts[no++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key_pem};
        }
        opts[no++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
        s->d = MHD_start_daemon(flags, (uint16_t)s->p.port, NULL, NULL, on_request, s,
                                MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
        if (!s->d)
            rc = realm__error(REALM_ERR_IO, "cannot listen on %s port %d%s", s->host, s->p.port,
                              s->tls ? " (or the TLS certificate and key are not usable)" : "");
    }
    if (ai)
        freeaddrinfo(ai);
    if (rc == 0) {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
        s->port = di ? di->port : s->p.port;
        s->n_workers = s->p.workers;
        s->workers = calloc((size_t)s->n_workers, sizeof *s->workers);
        if (!s->workers)
            rc = realm__error(REALM_ERR_NOMEM, "out of memory");
        for (int32_t i = 0; rc == 0 && i < s->n_workers; i++)
            if (pthread_create(&s->workers[i], NULL, worker_main, s) != 0) {
                s->n_workers = i;
                rc = realm__error(REALM_ERR_NOMEM, "cannot start worker threads");
            }
        if (rc == 0 && (pthread_create(&s->watcher, NULL, watcher_main, s) != 0 ||
                        pthread_create(&s->maint, NULL, maint_main, s) != 0))
            rc = realm__error(REALM_ERR_NOMEM, "cannot start the server's threads");
        else if (rc == 0)
            s->threads_started = true;
    }
    if (rc < 0) {
        realm_server_free(s);
        return rc;
    }
    *out = s;
    return REALM_OK;
}

int realm_server_port(const realm_server *s)
{
    return s->port;
}

void realm_server_stop(realm_server *s, bool immediate)
{
    const char c = immediate ? 'x' : 'd';
    if (s && s->stop_pipe[1] >= 0) {
        ssize_t w = write(s->stop_pipe[1], &c, 1);
        (void)w;
    }
}

/* Cancel every request still running and wake their connections. */
static void cancel_all(server *s)
{
    realm__ws_cancel_all(s);
    pthread_mutex_lock(&s->wmu);
    for (int32_t i = 0; i < s->n_watch; i++) {
        req *r = s->watch[i];
        atomic_store(&r->cancelled, 1);
    }
    pthread_mutex_unlock(&s->wmu);
}

int realm_server_run(realm_server *s)
{
    bool drain = false;
    double drain_until = 0;
    for (;;) {
        struct pollfd p = {.fd = s->stop_pipe[0], .events = POLLIN};
        poll(&p, 1, 100);
        char c;
        while (read(s->stop_pipe[0], &c, 1) == 1) {
            if (c == 'x' || drain) {
                atomic_store(&s->stop_now, 1);
            } else {
                drain = true;
                atomic_store(&s->draining, 1);
                realm__ws_drain(s);
                drain_until = realm__now() + s->p.drain_timeout_s;
                realm__log(REALM_LOG_INFO, "draining: %d requests running, %.0f s to finish",
                           atomic_load(&s->active), s->p.drain_timeout_s);
            }
        }
        if (atomic_load(&s->stop_now))
            break;
        if (drain && (atomic_load(&s->active) == 0 || realm__now() >= drain_until))
            break;
    }
    /* what is still running ends now, cleanly: modules see the cancellation */
    cancel_all(s);
    const double until = realm__now() + 5;
    while (atomic_load(&s->active) > 0 && realm__now() < until && !atomic_load(&s->stop_now)) {
        cancel_all(s);
        usleep(10000);
    }
    if (s->p.store)
        realm_store_flush(s->p.store);
    return 0;
}

void realm_server_free(realm_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->qmu);
    s->workers_stop = true;
    pthread_cond_broadcast(&s->qcv);
    pthread_mutex_unlock(&s->qmu);
    atomic_store(&s->stop_now, 1);
    /* libmicrohttpd needs every suspended connection resumed before it stops */
    pthread_mutex_lock(&s->wmu);
    for (int32_t i = 0; i < s->n_watch; i++) {
        req *r = s->watch[i];
        atomic_store(&r->cancelled, 1);
        pthread_mutex_lock(&r->mu);
        resume_locked(r);
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_unlock(&s->wmu);
    for (int32_t i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i], NULL);
    if (s->threads_started) {
        pthread_join(s->watcher, NULL);
        pthread_join(s->maint, NULL);
    }
    realm__ws_close_all(s); /* upgraded sockets closed before libmicrohttpd stops */
    if (s->d) {
        pthread_mutex_lock(&s->wmu);
        for (int32_t i = 0; i < s->n_watch; i++) {
            pthread_mutex_lock(&s->watch[i]->mu);
            resume_locked(s->watch[i]);
            pthread_mutex_unlock(&s->watch[i]->mu);
        }
        pthread_mutex_unlock(&s->wmu);
        MHD_stop_daemon(s->d);
    }
    pthread_mutex_lock(&s->wmu);
    for (int32_t i = 0; i < s->n_watch; i++)
        realm__req_unref(s->watch[i]);
    s->n_watch = 0;
    pthread_mutex_unlock(&s->wmu);
    for (int32_t i = 0; i < s->q_len; i++)
        realm__req_unref(s->queue[(s->q_head + i) % s->p.max_queue]);
    realm__ws_free(s);
    realm__tenants_free(s);
    realm_module_free(s->default_mod);
    realm_sandbox_free(s->sb);
    realm__metrics_free(s->m);
    if (s->p.store)
        realm_store_flush(s->p.store);
    free(s->queue);
    free(s->workers);
    free(s->watch);
    free(s->tls_cert_pem);
    free(s->tls_key_pem);
    if (s->stop_pipe[0] >= 0) {
        close(s->stop_pipe[0]);
        close(s->stop_pipe[1]);
    }
    pthread_mutex_destroy(&s->tmu);
    pthread_mutex_destroy(&s->sync_mu);
    pthread_mutex_destroy(&s->qmu);
    pthread_cond_destroy(&s->qcv);
    pthread_mutex_destroy(&s->wmu);
    free(s);
}
