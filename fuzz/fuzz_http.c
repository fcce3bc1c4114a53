/*
 * libFuzzer target for the HTTP server, from the bytes of a request to the
 * tenant's module: libmicrohttpd's parsing, routing, the Host and content
 * type checks, the endpoints the server answers itself, and the module path
 * (the default module, the generation options it passes on, the chat
 * template, the tokenizer, a tiny model).
 *
 * One realm_server runs in the process for the whole session (started by
 * LLVMFuzzerInitialize, freed at exit): 127.0.0.1, a free port, no store
 * (tenant "default", keyless on loopback), the default module, the model
 * stories260K as "tiny" with a short context (REALM_FUZZ_HTTP_MODEL), small
 * limits. Every input is one connection over a real socket. Its first byte
 * picks how the rest becomes a request:
 *
 *   '0' raw: the bytes as they are, then a half-close
 *   '1' POST /v1/chat/completions with the bytes as its JSON body
 *   '2' POST /v1/completions, the same
 *   '3' POST /tokenize
 *   '4' POST /detokenize
 *   '5' GET of a path made of the bytes (non-printing bytes %-escaped)
 *   '6' "POST /v1/chat/completions" and a Host header, then the bytes as the
 *       rest of the headers and the body, then a half-close
 *   '7' as '1', but the client leaves after 0-7 ms (or at the first byte
 *       of the answer): the disconnect path
 *
 * (the mode is the byte mod 8, so the seeds in fuzz/corpus-http/ begin with
 * a digit and are readable). Only the malformed kinds half-close: a client
 * that closes its side is one that left (the server cancels its module
 * request), and a half-close is what ends an incomplete request quickly
 * (else it waits for the 1 s read timeout; RAW_IDLE_MS bounds the wait).
 * Every connection ends with a reset, so the server lets go of it at once.
 *
 * Properties; a broken one calls
 * __builtin_trap(), which libFuzzer reports as a crash:
 *   - whatever the server sends starts with "HTTP/1.1 " and a 3-digit status,
 *     and is well framed (Content-Length or chunked);
 *   - the requests of modes 1-5 are well formed: each gets a whole answer
 *     within ANSWER_SECONDS (the module deadline is 2 s). The others may
 *     get none, or one cut short, or 499 with no body: the server takes a
 *     client that half-closes for one that left, and cancels its request;
 *   - an answer from realm (it carries x-request-id) that is an error
 *     (4xx/5xx) is JSON {"error":{"message","type","param","code"}}; a 200
 *     JSON answer parses; every event of an event stream is JSON or [DONE].
 *     Answers without x-request-id come from libmicrohttpd itself (a
 *     malformed request) and must be errors;
 *   - every HEALTH_EVERY inputs, GET /health answers 200.
 */
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "realm/error.h"
#include "realm/log.h"
#include "realm/registry.h"
#include "realm/server.h"

extern const unsigned char fuzz_http_default_wasm[];
extern const size_t fuzz_http_default_wasm_len;

#define ANSWER_SECONDS 5.0 /* a well-formed request's whole answer */
#define RAW_SECONDS    2.0 /* at most, for a malformed one */
#define RAW_IDLE_MS    250 /* a malformed one: nothing more for this long ends it */
#define HEALTH_EVERY   64  /* inputs between liveness checks */
#define ANSWER_MAX     (8u << 20)
#define DRAIN_SECONDS  3.0 /* at exit, for what the last inputs started */

#define REQUIRE(x, ...)                                                                            \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_http: property failed: %s (line %d): ", #x, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            __builtin_trap();                                                                      \
        }                                                                                          \
    } while (0)

static realm_registry *registry;
static realm_server *server;
static pthread_t server_thread;
static int port;
static bool trace; /* REALM_FUZZ_HTTP_TRACE=1: print every answer's status and body */

/* ---- growing buffers ---------------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static void buf_put(buf *b, const void *d, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            fprintf(stderr, "fuzz_http: out of memory\n");
            abort();
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_put(b, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* ---- answers -------------------------------------------------------------------------- */

/* One HTTP answer as parsed from the bytes received so far. */
typedef struct answer {
    int status;      /* 0: none (yet) */
    bool complete;   /* status line, headers and the whole body */
    bool malformed;  /* not an HTTP/1.1 answer */
    bool closed;     /* the server closed the connection */
    bool has_id;     /* x-request-id: realm's own */
    char ctype[128]; /* Content-Type, "" if none */
    buf body;        /* de-chunked */
} answer;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The end of the header block starting at p (one past "\r\n\r\n"), or NULL. */
static const char *head_end(const char *p, size_t n)
{
    for (size_t i = 0; i + 3 < n; i++)
        if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n')
            return p + i + 4;
    return NULL;
}

/* De-chunk [p, p+n) into a->body; true when the last chunk and the trailers
 * are there. */
static bool dechunk(answer *a, const char *p, size_t n)
{
    const char *e = p + n;
    a->body.n = 0;
    for (;;) {
        const char *eol = memchr(p, '\n', (size_t)(e - p));
        if (!eol)
            return false;
        char *end;
        errno = 0;
        const unsigned long long size = strtoull(p, &end, 16);
        if (end == p || errno) {
            a->malformed = true;
            return false;
        }
        p = eol + 1;
        if (size == 0) { /* trailers, then an empty line */
            for (;;) {
                eol = memchr(p, '\n', (size_t)(e - p));
                if (!eol)
                    return false;
                const bool empty = eol == p || (eol == p + 1 && *p == '\r');
                p = eol + 1;
                if (empty)
                    return true;
            }
        }
        if ((size_t)(e - p) < size + 2)
            return false;
        buf_put(&a->body, p, size);
        p += size + 2;
    }
}

/* Parse the bytes received (eof: the server closed). Interim 1xx answers
 * (100 Continue) are skipped. */
static void parse_answer(answer *a, const char *p, size_t n, bool eof, bool head)
{
    a->status = 0;
    a->complete = a->malformed = a->has_id = false;
    a->closed = eof;
    a->ctype[0] = '\0';
    a->body.n = 0;
    for (;;) {
        if (n == 0)
            return;
        const size_t k = n < 9 ? n : 9;
        if (memcmp(p, "HTTP/1.1 ", k) != 0) {
            a->malformed = true;
            return;
        }
        const char *he = head_end(p, n);
        if (!he)
            return;
        if (n < 13 || p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' ||
            p[11] > '9' || p[12] != ' ') {
            a->malformed = true;
            return;
        }
        a->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
        if (a->status >= 200)
            break;
        n -= (size_t)(he - p);
        p = he;
    }
    const char *he = head_end(p, n);
    long long length = -1;
    bool chunked = false;
    for (const char *l = (const char *)memchr(p, '\n', n) + 1; l < he - 2;) {
        const char *eol = memchr(l, '\n', (size_t)(he - l));
        const size_t ll = (size_t)(eol - l) - (eol > l && eol[-1] == '\r');
        const char *colon = memchr(l, ':', ll);
        if (colon) {
            const size_t nl = (size_t)(colon - l);
            const char *v = colon + 1;
            while (v < l + ll && (*v == ' ' || *v == '\t'))
                v++;
            const size_t vl = (size_t)(l + ll - v);
            if (nl == 14 && strncasecmp(l, "content-length", nl) == 0)
                length = strtoll(v, NULL, 10);
            else if (nl == 17 && strncasecmp(l, "transfer-encoding", nl) == 0)
                chunked = vl >= 7 && strncasecmp(v, "chunked", 7) == 0;
            else if (nl == 12 && strncasecmp(l, "content-type", nl) == 0)
                snprintf(a->ctype, sizeof a->ctype, "%.*s", (int)vl, v);
            else if (nl == 12 && strncasecmp(l, "x-request-id", nl) == 0)
                a->has_id = true;
        }
        l = eol + 1;
    }
    const char *b = he;
    const size_t have = n - (size_t)(he - p);
    if (head || a->status == 204 || a->status == 304) {
        a->complete = true;
    } else if (chunked) {
        a->complete = dechunk(a, b, have);
    } else if (length >= 0) {
        if (have >= (unsigned long long)length) {
            buf_put(&a->body, b, (size_t)length);
            a->complete = true;
        }
    } else { /* the body runs to the close */
        if (eof) {
            buf_put(&a->body, b, have);
            a->complete = true;
        }
    }
}

/* ---- the socket -------------------------------------------------------------------------- */

typedef struct exchange {
    bool half_close; /* shut our side after sending */
    bool head;       /* the request is a HEAD: the answer has no body */
    double total_s;  /* at most this long */
    int idle_ms;     /* give up when nothing arrives for this long (0: never) */
    int leave_ms;    /* leave after this long or at the first byte (-1: never) */
} exchange;

static int connect_server(void)
{
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int rc;
    while ((rc = connect(fd, (struct sockaddr *)&sa, sizeof sa)) != 0 && errno == EINTR)
        ;
    REQUIRE(rc == 0, "connect to 127.0.0.1:%d: %s", port, strerror(errno));
    return fd;
}

/* Close with a reset: the server lets go of the connection at once. */
static void close_reset(int fd)
{
    const struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* Send req, read what comes back into out and parse it into a, as x says. */
static void talk(const char *req, size_t len, const exchange *x, buf *out, answer *a)
{
    const int fd = connect_server();
    size_t off = 0;
    while (off < len) {
        const ssize_t k = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break; /* the server closed early (e.g. a header too large): read what it said */
        off += (size_t)k;
    }
    if (x->half_close)
        shutdown(fd, SHUT_WR);
    const double start = now_s(), end = start + x->total_s;
    double last = start;
    bool eof = false;
    out->n = 0;
    for (;;) {
        parse_answer(a, out->p ? out->p : "", out->n, eof, x->head);
        if (eof || a->complete || a->malformed)
            break;
        const double t = now_s();
        if (t >= end || (x->idle_ms > 0 && (t - last) * 1000 >= x->idle_ms))
            break;
        if (x->leave_ms >= 0 && (out->n > 0 || (t - start) * 1000 >= x->leave_ms))
            break;
        int wait_ms = (int)((end - t) * 1000) + 1;
        if (x->idle_ms > 0 && wait_ms > x->idle_ms)
            wait_ms = x->idle_ms;
        if (x->leave_ms >= 0 && wait_ms > x->leave_ms)
            wait_ms = x->leave_ms + 1;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        const int pr = poll(&pfd, 1, wait_ms);
        if (pr < 0 && errno != EINTR)
            break;
        if (pr <= 0)
            continue;
        char chunk[65536];
        const ssize_t k = recv(fd, chunk, sizeof chunk, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (k <= 0) {
            eof = true; /* closed (or reset) */
            continue;
        }
        last = now_s();
        REQUIRE(out->n + (size_t)k <= ANSWER_MAX, "an answer of more than %u bytes", ANSWER_MAX);
        buf_put(out, chunk, (size_t)k);
    }
    close_reset(fd);
}

/* ---- properties of an answer ----------------------------------------------------------- */

static bool is_json_type(const char *ctype)
{
    return strncasecmp(ctype, "application/json", 16) == 0;
}

static bool is_str_or_null(const json_t *v)
{
    return v && (json_is_string(v) || json_is_null(v));
}

/* {"error":{"message":"...","type":"...","param":...,"code":...}} */
static void check_error_body(const answer *a)
{
    json_error_t err;
    json_t *j = json_loadb(a->body.p ? a->body.p : "", a->body.n, 0, &err);
    REQUIRE(j != NULL, "status %d: the error body is not JSON (%s): %.300s", a->status, err.text,
            a->body.p ? a->body.p : "");
    const json_t *e = json_object_get(j, "error");
    REQUIRE(json_is_object(e) && json_is_string(json_object_get(e, "message")) &&
                json_is_string(json_object_get(e, "type")) &&
                is_str_or_null(json_object_get(e, "param")) &&
                is_str_or_null(json_object_get(e, "code")),
            "status %d: not an OpenAI error object: %.300s", a->status, a->body.p);
    json_decref(j);
}

/* Every "data: " line is [DONE] or a JSON object. */
static void check_event_stream(const answer *a)
{
    const char *p = a->body.p ? a->body.p : "", *e = p + a->body.n;
    while (p < e) {
        const char *eol = memchr(p, '\n', (size_t)(e - p));
        if (!eol)
            eol = e;
        if ((size_t)(eol - p) >= 6 && memcmp(p, "data: ", 6) == 0) {
            const char *d = p + 6;
            const size_t n = (size_t)(eol - d) - (eol > d && eol[-1] == '\r');
            if (!(n == 6 && memcmp(d, "[DONE]", 6) == 0)) {
                json_error_t err;
                json_t *j = json_loadb(d, n, 0, &err);
                REQUIRE(json_is_object(j), "an event that is not a JSON object (%s): %.300s",
                        j ? "not an object" : err.text, d);
                json_decref(j);
            }
        }
        p = eol + 1;
    }
}

/* well_formed: a request of modes 1-5, whose client waits for the answer;
 * the others' clients half-close or leave. */
static void check_answer(const answer *a, bool well_formed, bool head, const char *what)
{
    REQUIRE(!a->malformed, "%s: not a well-framed HTTP/1.1 answer", what);
    if (well_formed)
        REQUIRE(a->complete, "%s: no whole answer (status %d; %s)", what, a->status,
                a->closed ? "the server closed the connection" : "timed out");
    if (!a->complete)
        return;
    if (!a->has_id) { /* libmicrohttpd's own answer to a malformed request */
        REQUIRE(a->status >= 400, "%s: status %d without x-request-id", what, a->status);
        return;
    }
    if (head)
        return; /* no body */
    if (!well_formed && a->status == 499 && a->body.n == 0)
        return; /* cancelled: the server took the half-close for a client that left */
    if (a->status >= 400) {
        REQUIRE(is_json_type(a->ctype), "%s: status %d with Content-Type '%s'", what, a->status,
                a->ctype);
        check_error_body(a);
    } else if (a->status == 200 && is_json_type(a->ctype)) {
        json_error_t err;
        json_t *j = json_loadb(a->body.p ? a->body.p : "", a->body.n, 0, &err);
        REQUIRE(j != NULL, "%s: a 200 JSON answer that does not parse (%s): %.300s", what, err.text,
                a->body.p ? a->body.p : "");
        json_decref(j);
    } else if (a->status == 200 && strncasecmp(a->ctype, "text/event-stream", 17) == 0) {
        check_event_stream(a);
    }
}

/* ---- requests ------------------------------------------------------------------------------ */

static void post(buf *req, const char *path, const uint8_t *body, size_t n)
{
    buf_printf(req,
               "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
               "Content-Length: %zu\r\n\r\n",
               path, port, n);
    buf_put(req, body, n);
}

static void health(void)
{
    buf req = {0}, out = {0};
    answer a = {0};
    buf_printf(&req, "GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port);
    talk(req.p, req.n, &(exchange){.total_s = ANSWER_SECONDS, .leave_ms = -1}, &out, &a);
    REQUIRE(a.complete && a.status == 200, "GET /health: status %d (the server stopped serving?)",
            a.status);
    free(req.p);
    free(out.p);
    free(a.body.p);
}

/* ---- the server --------------------------------------------------------------------------------
 */

static void *serve_main(void *arg)
{
    realm_server_run(arg);
    return NULL;
}

/*
 * At exit: a drain, so that what the last inputs started ends (modules
 * within their 2 s deadline, unfinished requests at the 1 s read timeout);
 * a request still counted after that never lets go. Then free everything,
 * for the leak check at exit, which lists any request still held
 * (fuzz/regressions/http/leave-as-stream-starts was one).
 */
static void stop_server(void)
{
    if (!server)
        return;
    const double t0 = now_s();
    realm_server_stop(server, false);
    pthread_join(server_thread, NULL);
    const bool stuck = now_s() - t0 >= DRAIN_SECONDS;
    realm_server_free(server);
    server = NULL;
    realm_registry_free(registry);
    registry = NULL;
    if (stuck)
        fprintf(stderr, "fuzz_http: requests were still running %.0f s after the last input\n",
                DRAIN_SECONDS);
}

static void die(const char *what)
{
    fprintf(stderr, "fuzz_http: %s: %s\n", what, realm_last_error());
    exit(1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * No leak check after each input: clang 14's LeakSanitizer misreads the
 * dynamic TLS of the dlopened guest modules on this glibc ("DTLS 6 at
 * 0x0003000000cf-0x0007000011d1", then "Tracer caught signal 11") while a
 * worker that ran a guest is alive. The check at exit, after the server and
 * its threads are gone, still runs (ASAN_OPTIONS=detect_leaks=1). libFuzzer
 * reads its flags after this call, so one more argument is enough, unless
 * the command line sets -detect_leaks itself.
 */
static void no_leak_check_per_input(int *argc, char ***argv)
{
    static char *args[256];
    static char flag[] = "-detect_leaks=0";
    if (*argc < 1 || *argc + 2 > (int)(sizeof args / sizeof *args))
        return;
    for (int i = 1; i < *argc; i++)
        if (strncmp((*argv)[i], "-detect_leaks=", 14) == 0)
            return;
    memcpy(args, *argv, (size_t)*argc * sizeof *args);
    args[(*argc)++] = flag;
    args[*argc] = NULL;
    *argv = args;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    no_leak_check_per_input(argc, argv);
    trace = getenv("REALM_FUZZ_HTTP_TRACE") && strcmp(getenv("REALM_FUZZ_HTTP_TRACE"), "1") == 0;
    signal(SIGPIPE, SIG_IGN);
    realm_log_set_level(REALM_LOG_ERROR); /* traps and the like are answers, not news */
    mkdir(REALM_FUZZ_HTTP_MODELS, 0700);  /* no pulled models: the same listing everywhere */

    realm_registry_params rp;
    realm_registry_params_init(&rp);
    rp.models_dir = REALM_FUZZ_HTTP_MODELS;
    rp.mem_budget = 256u << 20;
    rp.keep_alive_s = -1; /* loaded once */
    rp.n_threads = 1;
    rp.engine.n_ctx_seq = 128; /* no generation runs long */
    rp.engine.max_seqs = 4;
    if (realm_registry_new(&rp, &registry) < 0)
        die("registry");
    if (realm_registry_add(registry, "tiny", REALM_FUZZ_HTTP_MODEL, NULL) < 0)
        die(REALM_FUZZ_HTTP_MODEL);

    realm_server_params sp;
    realm_server_params_init(&sp);
    sp.host = "127.0.0.1";
    sp.port = 0;
    sp.registry = registry;
    sp.default_module = fuzz_http_default_wasm;
    sp.default_module_len = fuzz_http_default_wasm_len;
    sp.module_cache = REALM_FUZZ_HTTP_CACHE;
    sp.max_body = 32u << 10;
    sp.workers = 4;
    sp.read_timeout_s = 1;
    sp.drain_timeout_s = DRAIN_SECONDS;
    sp.sandbox_deadline_ms = 2000;
    if (realm_server_new(&sp, &server) < 0)
        die("server");
    port = realm_server_port(server);
    if (pthread_create(&server_thread, NULL, serve_main, server) != 0) {
        fprintf(stderr, "fuzz_http: cannot start the server's thread\n");
        exit(1);
    }

    /* load the model now, and see the module path work once */
    static const char hello[] = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\","
                                "\"content\":\"Once upon a time\"}],\"max_tokens\":4}";
    buf req = {0}, out = {0};
    answer a = {0};
    post(&req, "/v1/chat/completions", (const uint8_t *)hello, sizeof hello - 1);
    talk(req.p, req.n, &(exchange){.total_s = 60, .leave_ms = -1}, &out, &a);
    if (!a.complete || a.status != 200) {
        fprintf(stderr, "fuzz_http: the first chat request got status %d: %.500s\n", a.status,
                out.p ? out.p : "(nothing)");
        exit(1);
    }
    atexit(stop_server); /* from here on, libFuzzer ends the process with exit(0) */
    fprintf(stderr, "fuzz_http: serving on 127.0.0.1:%d\n", port);
    free(req.p);
    free(out.p);
    free(a.body.p);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const body_paths[] = {"/v1/chat/completions", "/v1/completions", "/tokenize",
                                             "/detokenize"};
    static unsigned long n_inputs;
    if (size == 0)
        return 0;
    const int mode = data[0] % 8;
    const uint8_t *d = data + 1;
    const size_t n = size - 1;
    buf req = {0}, out = {0};
    answer a = {0};
    exchange x = {.total_s = ANSWER_SECONDS, .leave_ms = -1};
    bool well_formed = true;
    switch (mode) {
    case 0: /* raw */
        buf_put(&req, d, n);
        x = (exchange){.half_close = true,
                       .head = n >= 5 && memcmp(d, "HEAD ", 5) == 0,
                       .total_s = RAW_SECONDS,
                       .idle_ms = RAW_IDLE_MS,
                       .leave_ms = -1};
        well_formed = false;
        break;
    case 1:
    case 2:
    case 3:
    case 4:
        post(&req, body_paths[mode - 1], d, n);
        break;
    case 5: /* GET of a path */
        buf_put(&req, "GET /", 5);
        for (size_t i = 0; i < n; i++) {
            if (d[i] > 0x20 && d[i] < 0x7f)
                buf_put(&req, &d[i], 1);
            else
                buf_printf(&req, "%%%02X", d[i]);
        }
        buf_printf(&req, " HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port);
        break;
    case 6: /* the headers after the first and the body */
        buf_printf(&req, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n", port);
        buf_put(&req, d, n);
        x = (exchange){
            .half_close = true, .total_s = RAW_SECONDS, .idle_ms = RAW_IDLE_MS, .leave_ms = -1};
        well_formed = false;
        break;
    default: /* a chat request whose client leaves */
        post(&req, "/v1/chat/completions", d, n);
        x.leave_ms = (int)(n % 8);
        well_formed = false;
        break;
    }
    static const char *const names[] = {"raw",   "chat", "completion", "tokenize",
                                        "detok", "get",  "headers",    "leave"};
    talk(req.p, req.n, &x, &out, &a);
    if (trace)
        fprintf(stderr, "fuzz_http: %s: status %d%s, %zu bytes: %.160s\n", names[mode], a.status,
                a.complete ? "" : " (incomplete)", a.body.n, a.body.p ? a.body.p : "");
    check_answer(&a, well_formed, x.head, names[mode]);
    free(req.p);
    free(out.p);
    free(a.body.p);
    if (++n_inputs % HEALTH_EVERY == 0)
        health();
    return 0;
}
