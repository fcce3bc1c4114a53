/*
 * The WebSocket mode of /v1/responses (server_internal.h, docs/websocket.md).
 *
 * The handshake is an ordinary request: routes.c checks the Origin and the
 * key, realm__ws_handshake answers 101 with libmicrohttpd's upgrade response,
 * and the upgraded socket is handed to one event-loop thread (epoll) that
 * holds every WebSocket connection: an idle connection costs a socket and
 * a few hundred bytes, never a thread or a module instance. wslay does the
 * framing: fragmentation, control frames (a ping is answered by the loop
 * while the connection's module is busy), the close handshake, the message
 * size limit (--max-body: 1009).
 *
 * A text message {"type":"response.create",...} becomes a request (struct
 * req) for POST /v1/responses whose request_info says "transport":
 * "websocket"; a worker runs the tenant's module for it as for HTTP. The
 * module's emits come back through realm__ws_emit, each one text message,
 * and its final respond through realm__ws_respond (an error status: an
 * `error` event). One response is in flight per connection (conn->cur);
 * {"type":"response.cancel"} sets the request's stop flag, which the module's
 * waits see within 20 ms: its generations end "cancelled", it answers with
 * response.cancelled, and the engine frees the sequence at its next step.
 * A close or a dead socket cancels the response as an HTTP client leaving
 * does. A stop the module does not honour within WS_STOP_GRACE becomes that
 * hard cancel.
 *
 * Locks, in this order: the loop's list lock, a connection's (its wslay
 * context and socket), a request's (r->mu). Nothing holds r->mu while taking
 * a connection's lock, and no reference that may be the last is dropped
 * under a connection's lock (freeing takes it).
 *
 * Shutdown: realm__ws_close_all stops the loop and closes every socket
 * (libmicrohttpd needs every upgraded socket closed before it stops); a
 * handshake that completes after it is closed at once; realm__ws_free then
 * frees the rest once libmicrohttpd has stopped.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "core/clock_internal.h"
#include "core/error_internal.h"
#include "core/log_internal.h"
#include "server_internal.h"

#define WS_GUID           "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 */
#define WS_OUT_MAX        (64u << 20) /* a client this far behind is dropped */
#define WS_STOP_GRACE     2.0         /* s a module has to honour a stop */
#define WS_CLOSE_WAIT     3.0         /* s a peer has to answer our close */
#define WS_SHUTDOWN_FLUSH 1.0         /* s the last close frames get at a stop */

struct ws_conn {
    server *s;
    pthread_mutex_t mu; /* everything below */
    int refs;           /* the loop's, and each request's */
    int fd;             /* -1 once closed */
    struct MHD_UpgradeResponseHandle *urh;
    wslay_event_context_ptr ctx;
    tenant_rt *tenant;       /* a reference */
    char id[REQ_ID_LEN + 1]; /* the handshake's request id (logs) */
    char *info;              /* the handshake's request_info: each response's template */
    char *pre;               /* bytes libmicrohttpd read past the handshake */
    size_t pre_len, pre_off;
    req *cur;                 /* the response in flight (a reference), or NULL */
    double t_stop;            /* when cur was asked to stop (0: not) */
    double t_close;           /* when we asked to close (0: not) */
    uint16_t close_code;      /* our close frame, queued once what is before it is sent */
    const char *close_reason; /* (a static string) */
    bool closed;              /* the socket is gone: nothing more is read or written */
    bool in_list;             /* on the loop's list (holds the loop's reference) */
    ws_conn *prev, *next;
};

struct ws_loop {
    pthread_t th;
    bool started;
    int ep, wake;       /* epoll; an eventfd for commands */
    pthread_mutex_t mu; /* the list */
    ws_conn *head;
    atomic_int draining, stopping;
};

/* ---- connections ------------------------------------------------------------- */

void realm__ws_conn_unref(ws_conn *c)
{
    pthread_mutex_lock(&c->mu);
    const int left = --c->refs;
    pthread_mutex_unlock(&c->mu);
    if (left > 0)
        return;
    if (c->ctx)
        wslay_event_context_free(c->ctx);
    if (c->tenant)
        realm__tenant_unref(c->s, c->tenant);
    free(c->info);
    free(c->pre);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* Interest in the socket: reading while wslay reads, writing while it has
 * frames queued (under c->mu). */
static void conn_arm(ws_conn *c)
{
    if (c->closed)
        return;
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.ptr = c};
    if (wslay_event_want_read(c->ctx))
        ev.events |= EPOLLIN;
    if (wslay_event_want_write(c->ctx))
        ev.events |= EPOLLOUT;
    epoll_ctl(c->s->ws->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Close the socket (under c->mu): the response in flight is cancelled as
 * when an HTTP client leaves. The caller then drops the loop's reference. */
static void conn_close(ws_conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    epoll_ctl(c->s->ws->ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->cur)
        atomic_store(&c->cur->cancelled, 1);
    MHD_upgrade_action(c->urh, MHD_UPGRADE_ACTION_CLOSE);
    c->fd = -1;
    atomic_fetch_sub(&c->s->n_ws, 1);
}

/* Close the connection after the messages already queued (under c->mu; the
 * next conn_send queues the frame): wslay sends control frames before
 * data, so a close queued at once could overtake a response's last event. */
static void conn_queue_close(ws_conn *c, uint16_t code, const char *reason)
{
    if (c->closed || c->t_close > 0)
        return;
    c->t_close = realm__now();
    c->close_code = code;
    c->close_reason = reason;
    if (c->cur) /* the peer will read nothing more: the response stops */
        atomic_store(&c->cur->cancelled, 1);
}

/* Send what the socket takes now, then a close asked for once nothing is
 * before it (under c->mu). Negative when the socket failed. */
static int conn_send(ws_conn *c)
{
    if (wslay_event_send(c->ctx) < 0)
        return -1;
    if (!c->close_code || wslay_event_want_write(c->ctx))
        return 0;
    const size_t n = strlen(c->close_reason); /* (a failure: wslay already sent one) */
    wslay_event_queue_close(c->ctx, c->close_code, (const uint8_t *)c->close_reason,
                            n > 120 ? 120 : n);
    c->close_code = 0;
    return wslay_event_send(c->ctx);
}

/* Queue one text message (under c->mu); false when it cannot be sent. */
static bool conn_queue_text(ws_conn *c, const char *data, size_t len)
{
    if (c->closed || !wslay_event_get_write_enabled(c->ctx))
        return false;
    if (wslay_event_get_queued_msg_length(c->ctx) + len > WS_OUT_MAX) {
        realm__log(REALM_LOG_WARN, "%s: the WebSocket client is %u MiB behind; dropping it", c->id,
                   WS_OUT_MAX >> 20);
        conn_queue_close(c, WSLAY_CODE_POLICY_VIOLATION, "the client does not read its messages");
        return false;
    }
    const struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)data, len};
    return wslay_event_queue_msg(c->ctx, &m) == 0;
}

/* Send what is queued now (under c->mu); the loop sends the rest when the
 * socket can take it. */
static void conn_flush(ws_conn *c)
{
    if (c->closed)
        return;
    if (conn_send(c) < 0)
        conn_close(c); /* the socket failed (the loop drops it) */
    else
        conn_arm(c);
}

/* An `error` event as OpenAI's WebSocket mode sends it:
 * {"type":"error","status":N,"error":{"type","code","message","param"}},
 * with "headers" when the reply has some (Retry-After, rate limits). */
static void conn_error(ws_conn *c, int status, const char *code, const char *param, const char *fmt,
                       ...) __attribute__((format(printf, 5, 6)));

static void conn_error(ws_conn *c, int status, const char *code, const char *param, const char *fmt,
                       ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    realm__utf8_scrub(msg);
    json_t *e =
        json_pack("{s:s, s:i, s:{s:s, s:s, s:s, s:o}}", "type", "error", "status", status, "error",
                  "type", status >= 500 ? "server_error" : "invalid_request_error", "code", code,
                  "message", msg, "param", param ? json_string(param) : json_null());
    char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    static const char oom[] = "{\"type\":\"error\",\"status\":500,\"error\":{\"type\":"
                              "\"server_error\",\"code\":null,\"message\":\"out of memory\","
                              "\"param\":null}}";
    conn_queue_text(c, text ? text : oom, text ? strlen(text) : sizeof oom - 1);
    free(text);
}

/* ---- messages from the client ------------------------------------------------ */

/* {"type":"response.create",...}: a request for the module, as a streamed
 * POST /v1/responses of the connection's tenant (under c->mu). */
static void on_create(ws_conn *c, json_t *msg)
{
    server *s = c->s;
    if (c->t_close > 0)
        return; /* closing: nothing more starts */
    if (c->cur) {
        conn_error(c, 400, "response_already_in_flight", NULL,
                   "a response is already in flight on this connection: wait for its last "
                   "event (or send response.cancel) before the next response.create");
        return;
    }
    if (atomic_load(&s->draining) || atomic_load(&s->ws->draining)) {
        conn_error(c, 503, "draining", NULL, "the server is shutting down");
        return;
    }
    json_object_del(msg, "type");
    req *r = realm__req_new(s, NULL, "/v1/responses", "POST");
    char *body = r ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_t *info = body && c->info ? json_loads(c->info, 0, NULL) : NULL;
    if (info) { /* the handshake's, with this response's method, path and id */
        json_object_set_new(info, "method", json_string("POST"));
        json_object_set_new(info, "request_id", json_string(r->id));
        json_object_set_new(info, "created", json_integer((json_int_t)time(NULL)));
        r->info = json_dumps(info, JSON_COMPACT);
        json_decref(info);
    }
    if (!r || !body || !r->info) {
        free(body);
        if (r)
            realm__req_unref(r);
        conn_error(c, 500, "server_error", NULL, "out of memory");
        return;
    }
    snprintf(r->route, sizeof r->route, "/v1/responses");
    r->body = body;
    r->body_len = r->body_cap = strlen(body);
    r->tenant = realm__tenant_get(s, c->tenant->id); /* NULL once the tenant is removed */
    if (!r->tenant) {
        realm__req_unref(r);
        conn_error(c, 401, "invalid_api_key", NULL, "the connection's tenant no longer exists");
        return;
    }
    c->refs++;
    r->ws = c;
    c->cur = r; /* our reference becomes the connection's */
    c->t_stop = 0;
    if (!realm__req_enqueue(r)) { /* detached first: freeing r must not take c->mu */
        c->cur = NULL;
        r->ws = NULL;
        c->refs--;
        realm__req_unref(r);
        realm__metrics_rejection(s->m, "queue_full");
        conn_error(c, 503, "overloaded", NULL,
                   "the server is overloaded (%d requests waiting); try again", s->p.max_queue);
    }
    /* a worker's output waits for c->mu, which is held until this message is handled */
}

/* A whole message from the client (under c->mu). */
static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *ud)
{
    ws_conn *c = ud;
    (void)ctx;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        if (c->cur) /* the client leaves: as an HTTP client closing its socket */
            atomic_store(&c->cur->cancelled, 1);
        return;
    }
    if (arg->opcode == WSLAY_BINARY_FRAME) {
        conn_queue_close(c, WSLAY_CODE_UNSUPPORTED_DATA,
                         "binary messages are not accepted: send JSON text messages");
        return;
    }
    if (arg->opcode != WSLAY_TEXT_FRAME)
        return; /* ping and pong: wslay answers pings */
    json_error_t err;
    json_t *msg = json_loadb((const char *)arg->msg, arg->msg_length, 0, &err);
    if (!msg && json_error_code(&err) == json_error_invalid_utf8) {
        conn_queue_close(c, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA, "a text message must be UTF-8");
        return;
    }
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (!msg)
        conn_error(c, 400, "invalid_json", NULL,
                   "the message is not valid JSON: %s (line %d, column %d)", err.text, err.line,
                   err.column);
    else if (!json_is_object(msg))
        conn_error(c, 400, "invalid_json", NULL, "the message must be a JSON object");
    else if (!type)
        conn_error(c, 400, "missing_required_parameter", "type",
                   "the message needs a string 'type' (response.create or response.cancel)");
    else if (strcmp(type, "response.create") == 0)
        on_create(c, msg);
    else if (strcmp(type, "response.cancel") == 0) {
        if (!c->cur)
            conn_error(c, 400, "response_cancel_not_active", NULL,
                       "there is no response in flight to cancel");
        else if (c->t_stop == 0) {
            c->t_stop = realm__now();
            atomic_store(&c->cur->stop, 1);
        }
    } else {
        conn_error(c, 400, "unknown_event_type", "type",
                   "unknown message type '%.100s' (response.create or response.cancel)", type);
    }
    json_decref(msg);
}

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    ws_conn *c = ud;
    (void)flags;
    if (c->pre_off < c->pre_len) { /* read by libmicrohttpd with the handshake */
        size_t k = c->pre_len - c->pre_off;
        if (k > len)
            k = len;
        memcpy(buf, c->pre + c->pre_off, k);
        c->pre_off += k;
        return (ssize_t)k;
    }
    const ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);
    if (n > 0)
        return n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    else
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE); /* EOF or an error */
    return -1;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    ws_conn *c = ud;
    const ssize_t n = send(c->fd, data, len,
                           MSG_DONTWAIT | MSG_NOSIGNAL | (flags & WSLAY_MSG_MORE ? MSG_MORE : 0));
    if (n >= 0)
        return n;
    wslay_event_set_error(ctx, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
                                   ? WSLAY_ERR_WOULDBLOCK
                                   : WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

/* Read and write what the socket allows (loop thread, under c->mu). */
static void conn_io(ws_conn *c, uint32_t events)
{
    if (c->closed)
        return;
    const bool hup = events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP);
    if ((events & EPOLLIN || hup || c->pre_off < c->pre_len) && wslay_event_want_read(c->ctx) &&
        wslay_event_recv(c->ctx) < 0) {
        conn_close(c); /* the peer is gone, or broke the protocol */
        return;
    }
    if (conn_send(c) < 0 || hup ||
        (!wslay_event_want_read(c->ctx) && !wslay_event_want_write(c->ctx))) {
        conn_close(c); /* the close handshake is done, the peer left, or the socket failed */
        return;
    }
    conn_arm(c);
}

/* ---- the module's output -------------------------------------------------------- */

void realm__ws_emit(req *r, const char *data, size_t len)
{
    if (!len)
        return;
    pthread_mutex_lock(&r->mu);
    const bool done = r->finished;
    r->streaming = r->started = true;
    pthread_mutex_unlock(&r->mu);
    ws_conn *c = r->ws;
    pthread_mutex_lock(&c->mu);
    if (!done && c->cur == r && !atomic_load(&r->cancelled) && conn_queue_text(c, data, len))
        conn_flush(c);
    pthread_mutex_unlock(&c->mu);
}

/* The event for a reply that is not a stream: an error status as an
 * `error` event (the module's OpenAI error object inside, its headers
 * beside it); a whole 2xx body as one message. A malloc'ed string or NULL. */
static char *reply_event(req *r, int status, const char *body, size_t len)
{
    if (status < 400)
        return len ? strndup(body, len) : NULL;
    json_t *j = json_loadb(body, len, 0, NULL);
    json_t *e = json_object_get(j, "error");
    json_t *ev = json_pack("{s:s, s:i}", "type", "error", "status", status);
    if (ev && json_is_object(e))
        json_object_set(ev, "error", e);
    else if (ev)
        json_object_set_new(ev, "error",
                            json_pack("{s:s, s:n, s:s%, s:n}", "type",
                                      status >= 500 ? "server_error" : "invalid_request_error",
                                      "code", "message", body, len, "param"));
    pthread_mutex_lock(&r->mu);
    if (ev && r->n_headers) {
        json_t *h = json_object();
        for (int i = 0; h && i < r->n_headers; i++) {
            char name[64];
            snprintf(name, sizeof name, "%s", r->hname[i]);
            for (char *p = name; *p; p++)
                *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
            if (strcmp(name, "content-type") != 0)
                json_object_set_new(h, name, json_string(r->hvalue[i]));
        }
        json_object_set_new(ev, "headers", h);
    }
    pthread_mutex_unlock(&r->mu);
    char *text = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    json_decref(j);
    return text;
}

void realm__ws_respond(req *r, int status, const char *body, size_t len)
{
    pthread_mutex_lock(&r->mu);
    const bool was_done = r->finished, streaming = r->streaming;
    r->finished = true;
    if (!r->started)
        r->status = status;
    r->started = true;
    pthread_mutex_unlock(&r->mu);
    if (was_done)
        return;
    char *ev = streaming ? (len ? strndup(body, len) : NULL) : reply_event(r, status, body, len);
    ws_conn *c = r->ws;
    server *s = c->s;
    req *cur = NULL;
    pthread_mutex_lock(&c->mu);
    const bool mine = c->cur == r;
    if (mine && ev && !atomic_load(&r->cancelled))
        conn_queue_text(c, ev, strlen(ev));
    if (mine) {
        cur = c->cur;
        c->cur = NULL;
        c->t_stop = 0;
    }
    if (!c->cur && (atomic_load(&s->ws->draining) || atomic_load(&s->ws->stopping)))
        conn_queue_close(c, WSLAY_CODE_GOING_AWAY, "the server is shutting down");
    conn_flush(c);
    pthread_mutex_unlock(&c->mu);
    free(ev);
    realm__metrics_http(s->m, r->route, r->status);
    realm__log(REALM_LOG_INFO, "%s WS response.create %s %d %.1f ms tenant %s%s", r->id, r->path,
               r->status, (realm__now() - r->t_start) * 1e3, r->tenant->rec.name,
               atomic_load(&r->cancelled) ? " (connection ended early)"
               : atomic_load(&r->stop)    ? " (cancelled by the client)"
                                          : "");
    if (cur)
        realm__req_unref(cur); /* the connection's reference */
}

/* ---- the handshake ---------------------------------------------------------------- */

bool realm__ws_wants_upgrade(struct MHD_Connection *c)
{
    const char *u = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Upgrade");
    return u && strcasecmp(u, "websocket") == 0;
}

/* Does the comma-separated header value list hold token (any case)? */
static bool has_token(const char *list, const char *token)
{
    const size_t n = strlen(token);
    while (list && *list) {
        list += strspn(list, ", \t");
        const size_t l = strcspn(list, ", \t");
        if (l == n && strncasecmp(list, token, n) == 0)
            return true;
        list += l;
    }
    return false;
}

/* The upgraded socket: from libmicrohttpd's thread to the event loop. */
static void on_upgrade(void *cls, struct MHD_Connection *connection, void *con_cls,
                       const char *extra_in, size_t extra_in_size, MHD_socket sock,
                       struct MHD_UpgradeResponseHandle *urh)
{
    server *s = cls;
    req *r = con_cls;
    (void)connection;
    ws_conn *c = calloc(1, sizeof *c);
    static const struct wslay_event_callbacks cb = {
        .recv_callback = on_recv, .send_callback = on_send, .on_msg_recv_callback = on_msg};
    if (c) {
        c->s = s;
        c->fd = sock;
        c->urh = urh;
        c->refs = 1; /* the loop's */
        pthread_mutex_init(&c->mu, NULL);
        snprintf(c->id, sizeof c->id, "%s", r->id);
        c->info = r->info ? strdup(r->info) : NULL;
        c->tenant = realm__tenant_get(s, r->tenant->id);
        if (extra_in_size && (c->pre = malloc(extra_in_size))) {
            memcpy(c->pre, extra_in, extra_in_size);
            c->pre_len = extra_in_size;
        }
    }
    pthread_mutex_lock(&r->mu);
    const bool slot = r->ws_slot; /* the connection takes it */
    r->ws_slot = false;
    if (r->counted_active) { /* an open connection is no request: a drain does not wait for it */
        r->counted_active = false;
        atomic_fetch_sub(&s->active, 1);
    }
    pthread_mutex_unlock(&r->mu);
    if (!c || !c->info || !c->tenant || (extra_in_size && !c->pre) ||
        wslay_event_context_server_init(&c->ctx, &cb, c) != 0) {
        realm__log(REALM_LOG_WARN, "%s: out of memory for a WebSocket connection", r->id);
        if (c)
            realm__ws_conn_unref(c);
        if (slot)
            atomic_fetch_sub(&s->n_ws, 1);
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        return;
    }
    wslay_event_config_set_max_recv_msg_length(c->ctx, s->p.max_body);
    fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK);
    /* events go out as they come; a peer that vanished without a FIN (a cut
     * network) is found by TCP keep-alive within about a minute, and its
     * response cancelled (both fail harmlessly on the socket pair of TLS) */
    const int one = 1, idle = 30, intvl = 10, cnt = 3;
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(sock, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(sock, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(sock, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(sock, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    realm__log(REALM_LOG_DEBUG, "%s: WebSocket connection open (tenant %s)", c->id,
               c->tenant->rec.name);
    /* on the loop's list and in its epoll set; EPOLLOUT fires at once, so the
     * loop reads what came with the handshake (and may close and free c as
     * soon as the list lock is let go: c is not touched after that) */
    ws_loop *l = s->ws;
    pthread_mutex_lock(&l->mu);
    if (atomic_load(&l->stopping)) { /* too late: the server is stopping */
        pthread_mutex_unlock(&l->mu);
        atomic_fetch_sub(&s->n_ws, slot ? 1 : 0);
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        realm__ws_conn_unref(c);
        return;
    }
    c->in_list = true;
    c->next = l->head;
    if (l->head)
        l->head->prev = c;
    l->head = c;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.ptr = c};
    const bool ok = epoll_ctl(l->ep, EPOLL_CTL_ADD, sock, &ev) == 0;
    if (!slot)
        atomic_fetch_add(&s->n_ws, 1);
    if (!ok) { /* closed now; the loop drops it from its list */
        pthread_mutex_lock(&c->mu);
        conn_close(c);
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&l->mu);
}

void realm__ws_handshake(req *r, struct MHD_Connection *c, const char *protocol)
{
    server *s = r->srv;
    const char *version = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Version");
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Key");
    const char *conn = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Connection");
    unsigned char raw[32];
    if (!version || strcmp(version, "13") != 0) {
        realm__reply_header(r, "Sec-WebSocket-Version", "13");
        realm__reply_error(r, 426, NULL, NULL, "unsupported_websocket_version",
                           "this server speaks WebSocket version 13 (RFC 6455)");
        return;
    }
    if (!has_token(conn, "upgrade") || !key || strlen(key) != 24 ||
        EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18 || key[22] != '=' ||
        key[23] != '=') {
        realm__reply_error(r, 400, NULL, NULL, "invalid_websocket_handshake",
                           "a WebSocket handshake needs 'Connection: Upgrade' and a "
                           "Sec-WebSocket-Key of 16 bytes in base64");
        return;
    }
    if (atomic_load(&s->draining)) {
        realm__reply_header(r, "Retry-After", "5");
        realm__reply_error(r, 503, NULL, NULL, "draining", "the server is shutting down");
        return;
    }
    if (atomic_fetch_add(&s->n_ws, 1) >= s->p.ws_max_connections) {
        atomic_fetch_sub(&s->n_ws, 1);
        realm__metrics_rejection(s->m, "websocket_connections");
        realm__reply_header(r, "Retry-After", "1");
        realm__reply_error(r, 503, NULL, NULL, "websocket_connection_limit",
                           "the server holds its most WebSocket connections (%d); try again",
                           s->p.ws_max_connections);
        return;
    }
    /* Sec-WebSocket-Accept: base64(SHA-1(key + GUID)) */
    char cat[24 + sizeof WS_GUID];
    snprintf(cat, sizeof cat, "%s%s", key, WS_GUID);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    char accept[64];
    struct MHD_Response *resp = NULL;
    if (EVP_Digest(cat, strlen(cat), md, &md_len, EVP_sha1(), NULL) == 1 &&
        EVP_EncodeBlock((unsigned char *)accept, md, (int)md_len) > 0)
        resp = MHD_create_response_for_upgrade(on_upgrade, s);
    if (!resp) {
        atomic_fetch_sub(&s->n_ws, 1);
        realm__reply_error(r, 500, NULL, NULL, NULL, "cannot answer the WebSocket handshake");
        return;
    }
    MHD_add_response_header(resp, "Upgrade", "websocket");
    /* (libmicrohttpd adds Connection: Upgrade itself) */
    MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
    if (protocol && *protocol)
        MHD_add_response_header(resp, "Sec-WebSocket-Protocol", protocol);
    MHD_add_response_header(resp, "x-request-id", r->id);
    pthread_mutex_lock(&r->mu);
    r->ws_slot = true;
    r->status = 101;
    r->started = r->finished = true;
    if (r->ready)
        MHD_destroy_response(r->ready);
    r->ready = resp;
    pthread_mutex_unlock(&r->mu);
}

/* ---- the event loop ------------------------------------------------------------------- */

static void wake(ws_loop *l)
{
    const uint64_t one = 1;
    ssize_t w = write(l->wake, &one, sizeof one);
    (void)w;
}

/* Take c off the list and drop the loop's reference (loop thread). */
static void loop_drop(ws_loop *l, ws_conn *c)
{
    pthread_mutex_lock(&l->mu);
    if (!c->in_list) {
        pthread_mutex_unlock(&l->mu);
        return;
    }
    c->in_list = false;
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&l->mu);
    realm__ws_conn_unref(c);
}

/* Every quarter second: stops not honoured, closes not answered, a drain
 * closing idle connections; closed connections leave the list. */
static void loop_tick(ws_loop *l, double now)
{
    const bool draining = atomic_load(&l->draining) || atomic_load(&l->stopping);
    ws_conn *gone = NULL;
    pthread_mutex_lock(&l->mu);
    for (ws_conn *c = l->head, *next; c; c = next) {
        next = c->next;
        pthread_mutex_lock(&c->mu);
        if (c->cur && c->t_stop > 0 && now - c->t_stop > WS_STOP_GRACE)
            atomic_store(&c->cur->cancelled, 1);
        if (draining && !c->cur) {
            conn_queue_close(c, WSLAY_CODE_GOING_AWAY, "the server is shutting down");
            conn_flush(c);
        }
        if (!c->closed && c->t_close > 0 && now - c->t_close > WS_CLOSE_WAIT)
            conn_close(c);
        const bool dead = c->closed;
        pthread_mutex_unlock(&c->mu);
        if (!dead)
            continue;
        c->in_list = false; /* off the list; its reference dropped below */
        if (c->prev)
            c->prev->next = c->next;
        else
            l->head = c->next;
        if (c->next)
            c->next->prev = c->prev;
        c->next = gone;
        gone = c;
    }
    pthread_mutex_unlock(&l->mu);
    while (gone) {
        ws_conn *c = gone;
        gone = c->next;
        realm__ws_conn_unref(c);
    }
}

static void *loop_main(void *arg)
{
    server *s = arg;
    ws_loop *l = s->ws;
    struct epoll_event evs[64];
    double t_tick = 0;
    while (!atomic_load(&l->stopping)) {
        const int n = epoll_wait(l->ep, evs, 64, 250);
        for (int i = 0; i < n; i++) {
            ws_conn *c = evs[i].data.ptr;
            if (!c) {
                uint64_t v;
                ssize_t rd = read(l->wake, &v, sizeof v);
                (void)rd;
                continue;
            }
            pthread_mutex_lock(&c->mu);
            conn_io(c, evs[i].events);
            const bool dead = c->closed;
            pthread_mutex_unlock(&c->mu);
            if (dead)
                loop_drop(l, c);
        }
        const double now = realm__now();
        if (n == 0 || now - t_tick >= 0.25 || atomic_load(&l->draining)) {
            t_tick = now;
            loop_tick(l, now);
        }
    }
    return NULL;
}

int realm__ws_init(server *s)
{
    ws_loop *l = calloc(1, sizeof *l);
    if (!l)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&l->mu, NULL);
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    l->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->ws = l;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (l->ep < 0 || l->wake < 0 || epoll_ctl(l->ep, EPOLL_CTL_ADD, l->wake, &ev) != 0)
        return realm__error(REALM_ERR_IO, "epoll: %s", strerror(errno));
    if (pthread_create(&l->th, NULL, loop_main, s) != 0)
        return realm__error(REALM_ERR_NOMEM, "cannot start the WebSocket thread");
    l->started = true;
    return REALM_OK;
}

void realm__ws_drain(server *s)
{
    if (s->ws) {
        atomic_store(&s->ws->draining, 1);
        wake(s->ws);
    }
}

void realm__ws_cancel_all(server *s)
{
    ws_loop *l = s->ws;
    if (!l)
        return;
    const double now = realm__now();
    pthread_mutex_lock(&l->mu);
    for (ws_conn *c = l->head; c; c = c->next) {
        pthread_mutex_lock(&c->mu);
        if (c->cur && c->t_stop == 0) {
            c->t_stop = now;
            atomic_store(&c->cur->stop, 1);
        }
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&l->mu);
}

void realm__ws_close_all(server *s)
{
    ws_loop *l = s->ws;
    if (!l)
        return;
    atomic_store(&l->stopping, 1);
    if (l->started) {
        wake(l);
        pthread_join(l->th, NULL);
        l->started = false;
    }
    /* every connection: a last close frame (1001), a moment to send it, closed */
    pthread_mutex_lock(&l->mu);
    for (ws_conn *c = l->head; c; c = c->next) {
        pthread_mutex_lock(&c->mu);
        if (c->cur)
            atomic_store(&c->cur->cancelled, 1);
        conn_queue_close(c, WSLAY_CODE_GOING_AWAY, "the server is shutting down");
        conn_flush(c);
        pthread_mutex_unlock(&c->mu);
    }
    const double until = realm__now() + WS_SHUTDOWN_FLUSH;
    for (bool pending = true; pending && realm__now() < until;) {
        pending = false;
        for (ws_conn *c = l->head; c; c = c->next) {
            pthread_mutex_lock(&c->mu);
            if (!c->closed && (wslay_event_want_write(c->ctx) || c->close_code)) {
                if (conn_send(c) < 0)
                    conn_close(c);
                else
                    pending |= wslay_event_want_write(c->ctx) != 0;
            }
            pthread_mutex_unlock(&c->mu);
        }
        if (pending)
            usleep(5000);
    }
    while (l->head) {
        ws_conn *c = l->head;
        pthread_mutex_lock(&c->mu);
        conn_close(c);
        req *cur = c->cur; /* the connection's reference: its request may never run */
        c->cur = NULL;
        pthread_mutex_unlock(&c->mu);
        l->head = c->next;
        if (l->head)
            l->head->prev = NULL;
        c->in_list = false;
        pthread_mutex_unlock(&l->mu);
        if (cur)
            realm__req_unref(cur);
        realm__ws_conn_unref(c);
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
}

void realm__ws_free(server *s)
{
    ws_loop *l = s->ws;
    if (!l)
        return;
    realm__ws_close_all(s);
    if (l->ep >= 0)
        close(l->ep);
    if (l->wake >= 0)
        close(l->wake);
    pthread_mutex_destroy(&l->mu);
    free(l);
    s->ws = NULL;
}
