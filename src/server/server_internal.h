/*
 * Internals of the server (realm/server.h), one file per concern:
 *   server.c   lifecycle, libmicrohttpd glue (bodies, suspended connections,
 *              streamed responses), the worker threads, the disconnect watcher
 *   routes.c   routing, auth, the endpoints the server answers itself, the
 *              module path (realm_request_io), usage
 *   tenants.c  tenants from the store: limits, modules and their instances
 *   reply.c    the one error path: OpenAI's error shape, counted
 *   metrics.c  Prometheus counters and histograms
 *   ws.c       WebSocket mode of /v1/responses: the handshake, one event-loop
 *              thread for every upgraded connection (wslay framing), each
 *              response.create run as a module request whose emits are frames
 *
 * A request (struct req) is shared by the network thread (libmicrohttpd's)
 * and at most one worker; its mutex guards the output side, and it is freed
 * when both have let go (refs).
 */
#ifndef REALM_SERVER_INTERNAL_H
#define REALM_SERVER_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "realm/sandbox.h"
#include "realm/server.h"

typedef struct metrics metrics;
typedef struct tenant_rt tenant_rt;
typedef struct realm_server server;
typedef struct ws_conn ws_conn;
typedef struct ws_loop ws_loop;

#define REQ_MAX_HEADERS 40
#define REQ_ID_LEN      32

typedef struct req {
    server *srv;
    struct MHD_Connection *conn; /* NULL once libmicrohttpd is done with it */
    pthread_mutex_t mu;
    int refs; /* the network side's and the worker's */

    /* the request (network thread until handed to a worker, then read-only) */
    char id[REQ_ID_LEN + 1];
    char method[16];
    char path[512];
    char route[48]; /* for metrics: "/v1/chat/completions", "other" */
    char *body;
    size_t body_len, body_cap;
    bool too_large, handed; /* handed: a worker has it */
    tenant_rt *tenant;      /* a reference */
    char *info;             /* the JSON realm.request_info gives */
    double t_start;
    int fd; /* the connection's socket (disconnect watch) */

    /* the response (under mu) */
    int status;
    int n_headers;
    char *hname[REQ_MAX_HEADERS], *hvalue[REQ_MAX_HEADERS];
    bool started;   /* status and headers decided */
    bool streaming; /* emit() was called: a streamed (chunked) response */
    char *out;      /* streamed bytes not yet taken by libmicrohttpd */
    size_t out_len, out_off, out_cap;
    bool finished;              /* nothing more will be emitted */
    struct MHD_Response *ready; /* to queue at the next access-handler call */
    bool suspended;             /* the connection is suspended */
    bool watched;               /* on the watcher's list */
    atomic_int cancelled;       /* the client went away */
    bool counted_active;

    /* a response.create over a WebSocket (ws.c): output becomes messages */
    ws_conn *ws;     /* a reference; NULL for HTTP */
    atomic_int stop; /* response.cancel: the generations end, the module answers */
    bool ws_slot;    /* a handshake holding a WebSocket connection slot */
} req;

struct realm_server {
    realm_server_params p;
    char host[256];
    struct MHD_Daemon *d;
    int port;
    bool tls, loopback;
    atomic_bool keyless; /* no key exists: everyone is tenant "default" */
    char *tls_cert_pem, *tls_key_pem;
    realm_sandbox *sb;
    realm_module *default_mod;
    metrics *m;

    /* tenants (tenants.c) */
    pthread_mutex_t tmu;
    pthread_mutex_t sync_mu; /* one tenants sync at a time */
    tenant_rt **tenants;
    int32_t n_tenants, cap_tenants;
    tenant_rt *default_tenant;

    /* workers */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    req **queue;
    int32_t q_head, q_len;
    pthread_t *workers;
    int32_t n_workers;
    bool workers_stop;

    /* suspended connections the watcher polls for a client that left */
    pthread_mutex_t wmu;
    req **watch;
    int32_t n_watch, cap_watch;
    pthread_t watcher, maint;
    bool threads_started;

    /* stopping */
    int stop_pipe[2];
    atomic_int draining, stop_now;
    atomic_int active; /* requests accepted and not finished */

    /* WebSocket connections (ws.c) */
    ws_loop *ws;
    atomic_int n_ws; /* open, and handshakes answered 101 */
};

/* ---- server.c ---------------------------------------------------------------- */

/* A request (c NULL: not from libmicrohttpd, e.g. a WebSocket message). */
req *realm__req_new(server *s, struct MHD_Connection *c, const char *url, const char *method);
/* Take / drop a reference to r (the last frees it). */
void realm__req_ref(req *r);
void realm__req_unref(req *r);
/* The response's status and headers (before any output; false if too late). */
bool realm__req_start(req *r, int status, const char *const *names, const char *const *values,
                      int n);
/* Append streamed bytes (the first call starts a chunked response). */
void realm__req_emit(req *r, const char *data, size_t len);
/* The whole response (after emits: their last bytes); ends the output. */
void realm__req_respond(req *r, int status, const char *body, size_t len);
/* Hand r to a worker; false when the queue is full. */
bool realm__req_enqueue(req *r);

/* ---- routes.c ---------------------------------------------------------------- */

/* Decide a request once its body has arrived; answers it now (builtin
 * endpoints, errors) or hands it to a worker. */
void realm__route(req *r);
/* Run a module request on the calling worker thread. */
void realm__run_module(req *r);
/* Checks before the body is read: route, method, content type, auth, size;
 * true when r was answered (an error). */
bool realm__route_early(req *r, struct MHD_Connection *c, uint64_t content_length);

/* The request_info JSON of r (its tenant set): transport "http", "https"
 * or "websocket"; headers a JSON object (borrowed). A malloc'ed string. */
char *realm__request_info(const req *r, const char *query, const char *transport, void *headers);
/* The headers a module sees in request_info, from c (a new JSON object). */
void *realm__info_headers(struct MHD_Connection *c);
/* Is the request's key one of the tenant's? Sets r->tenant or answers 401;
 * key NULL: none was sent (keyless servers serve tenant "default"). */
bool realm__authenticate_key(req *r, const char *key);

/* ---- ws.c -------------------------------------------------------------------- */

int realm__ws_init(server *s);
/* Stop the event loop and close every connection (1001): before
 * libmicrohttpd stops (it needs every upgraded socket closed). */
void realm__ws_close_all(server *s);
/* The rest, once libmicrohttpd has stopped. */
void realm__ws_free(server *s);
/* Does c ask for a WebSocket upgrade (Upgrade: websocket)? */
bool realm__ws_wants_upgrade(struct MHD_Connection *c);
/* GET /v1/responses with an upgrade, its key already checked: answers r
 * with 101 (the connection then goes to the event loop) or an error. */
void realm__ws_handshake(req *r, struct MHD_Connection *c, const char *protocol);
/* A module's output for a WebSocket response: each emit one text message;
 * respond ends the response (an error status: an error event). */
void realm__ws_emit(req *r, const char *data, size_t len);
void realm__ws_respond(req *r, int status, const char *body, size_t len);
void realm__ws_conn_unref(ws_conn *c);
/* A drain began: idle connections are closed (1001), busy ones after their
 * response; new responses are refused. */
void realm__ws_drain(server *s);
/* Stop every response in flight (as response.cancel; hard after a grace). */
void realm__ws_cancel_all(server *s);

/* ---- admin.c ----------------------------------------------------------------- */

/* The admin API (/admin/v1/...), its key already checked: answers r. */
void realm__admin(req *r);
/* vLLM's POST /v1/load_lora_adapter (load) or /v1/unload_lora_adapter, the
 * admin key already checked: answers r. */
void realm__admin_lora(req *r, bool load);

/* ---- reply.c ----------------------------------------------------------------- */

/* An OpenAI-shaped error: {"error":{"message","type","param","code"}}.
 * type from the status (invalid_request_error, authentication_error, ...)
 * unless given. Extra headers (e.g. Retry-After) as name/value pairs. */
void realm__reply_error(req *r, int status, const char *type, const char *param, const char *code,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* A JSON body (compact) with status. Steals j. */
void realm__reply_json(req *r, int status, void *j);
/* Add a response header before the reply. */
void realm__reply_header(req *r, const char *name, const char *value);
/* Replace every byte that does not start or continue a well-formed UTF-8
 * sequence with '?': messages quote what the client sent (a path, a name)
 * and may cut it inside a character. */
void realm__utf8_scrub(char *s);

/* ---- tenants.c ---------------------------------------------------------------- */

struct tenant_rt {
    int64_t id;
    realm_tenant rec;
    realm_module *mod; /* its module, or the server's default */
    bool own_mod;
    pthread_mutex_t mu;
    realm_instance **free_inst; /* idle instances of mod */
    int32_t n_free, cap_free;
    int refs;
    bool removed;
    /* limits */
    double rpm_tokens, tpm_tokens, t_refill;
    int64_t concurrent;
    int64_t month_start, month_used; /* cached quota use */
};

int realm__tenants_init(server *s);
void realm__tenants_free(server *s);
/* Reload tenants from the store if it changed (as each request is
 * authenticated, and every ~500 ms by the housekeeping thread). */
void realm__tenants_sync(server *s);
/* The tenant by id (a reference to release with realm__tenant_unref). */
tenant_rt *realm__tenant_get(server *s, int64_t id);
tenant_rt *realm__tenant_by_name(server *s, const char *name);
void realm__tenant_unref(server *s, tenant_rt *t);
/* An instance of t's module (new or idle) / give it back. */
int realm__tenant_instance(server *s, tenant_rt *t, realm_instance **out);
void realm__tenant_instance_put(tenant_rt *t, realm_instance *in);
/* Admission: rpm, tpm, concurrency, quota. 0, or an HTTP status (429) with
 * the answer written (headers, error) into r. */
int realm__tenant_admit(server *s, tenant_rt *t, req *r);
/* The request ended: concurrency, and the tokens it used for tpm. */
void realm__tenant_done(tenant_rt *t, int64_t tokens);
/* The sandbox policy for t. */
void realm__tenant_policy(server *s, const tenant_rt *t, realm_tenant_policy *pol);

/* ---- metrics.c --------------------------------------------------------------- */

metrics *realm__metrics_new(int32_t max_tenants);
void realm__metrics_free(metrics *m);
void realm__metrics_http(metrics *m, const char *route, int status);
void realm__metrics_generation(metrics *m, const char *model, const char *tenant,
                               const realm_gen_result *res);
void realm__metrics_rejection(metrics *m, const char *reason);
void realm__metrics_trap(metrics *m, const char *tenant);
/* The exposition text (a malloc'ed string), engine gauges and the open
 * WebSocket connections included. */
char *realm__metrics_render(metrics *m, realm_registry *reg, int64_t ws_connections);

#endif
