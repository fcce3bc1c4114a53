/*
 * bench_serve — what `vllm bench serve` reports, for any OpenAI-compatible
 * server on this machine (realm serve, llama-server, vLLM), over plain
 * sockets: HTTP/1.1 keep-alive, chunked transfer decoding, SSE parsing.
 *
 *     bench_serve --url http://127.0.0.1:PORT --model NAME
 *                 [--concurrency 1,8,32] [--requests N] [--max-tokens 64]
 *                 [--prompt-tokens 128] [--endpoint completions|chat]
 *                 [--api-key K] [--warmup 1] [--unique] [--timeout 300]
 *                 [--duration 900] [--json]
 *
 * Each concurrency level C runs C client threads, each on its own keep-alive
 * connection sending streamed requests back to back ("stream": true,
 * "stream_options": {"include_usage": true}, "ignore_eos": true,
 * "temperature": 0) until the level's N requests (default 4 x C, at least 8)
 * are taken. Every client first sends --warmup short requests (4 tokens, not
 * counted) and all start the timed part together. The prompt is one fixed
 * text of about --prompt-tokens tokens (--unique puts the request's number
 * first, so no prefix cache can reuse an earlier prompt).
 *
 * Per request: TTFT is the time from sending the request to the first SSE
 * event with content; every later content event adds one inter-token gap
 * (ITL); E2E runs to the end of the response; TPOT = (E2E - TTFT) /
 * (tokens - 1). Output tokens are the server's usage.completion_tokens when
 * it sends them, else the content events. A request is ok when it answered
 * 200, streamed content and ended with [DONE]; anything else is an error
 * (HTTP 429 and 503 are also counted apart). Per level: the counts, output
 * tokens/s (every ok request's output tokens over the level's wall time, from
 * the clients' start to the last response's end), requests/s, and TTFT,
 * ITL, TPOT and E2E in ms as mean, p50, p90 and p99 (numpy's linear
 * percentiles, as vLLM reports them).
 *
 * Only loopback addresses are accepted. Everything is bounded: a connect
 * timeout of 10 s, --timeout seconds of silence per read (default 300: a
 * queued request may wait long for its first byte), and --duration seconds
 * per level after which no new request starts (default 900; the requests not
 * sent are reported).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock_internal.h"

#define MAX_LEVELS      16
#define MAX_CONCURRENCY 1024
#define CONN_BUF        65536
#define CONNECT_TIMEOUT 10.0
#define WARMUP_TOKENS   4

typedef struct opts {
    char host[256], port[16], hostport[280];
    const char *model, *api_key;
    int conc[MAX_LEVELS], n_conc;
    int requests; /* per level; 0: 4 x concurrency, at least 8 */
    int max_tokens, prompt_tokens, warmup;
    double timeout, duration;
    bool chat, json, unique;
    struct sockaddr_storage addr;
    socklen_t addr_len;
} opts;

static opts O;

/* ---- numbers ------------------------------------------------------------- */

typedef struct dvec {
    double *v;
    size_t n, cap;
} dvec;

static int dvec_push(dvec *d, double x)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        double *v = realloc(d->v, cap * sizeof *v);
        if (!v)
            return -1;
        d->v = v, d->cap = cap;
    }
    d->v[d->n++] = x;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct stats {
    size_t n;
    double mean, p50, p90, p99; /* ms */
} stats;

/* numpy.percentile's default (linear) over a sorted array */
static double percentile(const double *v, size_t n, double p)
{
    const double r = p / 100 * (double)(n - 1);
    const size_t i = (size_t)r;
    return i + 1 < n ? v[i] + (v[i + 1] - v[i]) * (r - (double)i) : v[n - 1];
}

static stats summarize(dvec *d)
{
    stats s = {.n = d->n};
    if (!d->n)
        return s;
    qsort(d->v, d->n, sizeof *d->v, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < d->n; i++)
        sum += d->v[i];
    s.mean = sum / (double)d->n * 1e3;
    s.p50 = percentile(d->v, d->n, 50) * 1e3;
    s.p90 = percentile(d->v, d->n, 90) * 1e3;
    s.p99 = percentile(d->v, d->n, 99) * 1e3;
    return s;
}

/* ---- the connection -------------------------------------------------------- */

typedef struct conn {
    int fd;          /* -1: not connected */
    int n_used;      /* requests answered on it */
    size_t off, len; /* unread bytes: buf[off, len) */
    double t_recv;   /* when the last bytes arrived */
    char buf[CONN_BUF];
} conn;

static void conn_close(conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1, c->off = c->len = 0, c->n_used = 0;
}

static int conn_open(conn *c, char *err, size_t err_cap)
{
    conn_close(c);
    int fd = socket(O.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, err_cap, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)&O.addr, O.addr_len) < 0) {
        if (errno != EINPROGRESS) {
            snprintf(err, err_cap, "connect: %s", strerror(errno));
            close(fd);
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r = poll(&p, 1, (int)(CONNECT_TIMEOUT * 1e3));
        int e = 0;
        socklen_t el = sizeof e;
        if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e) {
            snprintf(err, err_cap, "connect: %s", r == 0 ? "timed out" : strerror(e ? e : errno));
            close(fd);
            return -1;
        }
    }
    c->fd = fd;
    return 0;
}

/* Wait for readable data until `deadline`; recv what there is. Returns the
 * number of new bytes, 0 at end of stream, -1 on error (errno; ETIMEDOUT). */
static ssize_t conn_fill(conn *c, double deadline)
{
    if (c->off == c->len)
        c->off = c->len = 0;
    else if (c->off > CONN_BUF / 2 || c->len == CONN_BUF) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off, c->off = 0;
    }
    if (c->len == CONN_BUF) {
        errno = EMSGSIZE;
        return -1;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, CONN_BUF - c->len, 0);
        if (n >= 0) {
            c->len += (size_t)n;
            c->t_recv = realm__now();
            return n;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        const double left = deadline - realm__now();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int r = poll(&p, 1, left > 1e6 ? 1000000000 : (int)(left * 1e3) + 1);
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

static int conn_send(conn *c, const char *p, size_t n, double deadline)
{
    while (n) {
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
        if (k > 0) {
            p += k, n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        const double left = deadline - realm__now();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pf = {.fd = c->fd, .events = POLLOUT};
        poll(&pf, 1, (int)(left * 1e3) + 1);
    }
    return 0;
}

/* One line ending in LF (CR stripped) from the connection: *line points into
 * the buffer, valid until the next read. Returns 0, or -1 (errno). */
static int conn_line(conn *c, double idle, const char **line, size_t *len)
{
    size_t scanned = c->off;
    for (;;) {
        char *nl = memchr(c->buf + scanned, '\n', c->len - scanned);
        if (nl) {
            *line = c->buf + c->off;
            *len = (size_t)(nl - (c->buf + c->off));
            if (*len && (*line)[*len - 1] == '\r')
                (*len)--;
            c->off = (size_t)(nl - c->buf) + 1;
            return 0;
        }
        const size_t done = c->len - c->off;
        ssize_t k = conn_fill(c, realm__now() + idle);
        if (k <= 0) {
            if (k == 0)
                errno = ECONNRESET;
            return -1;
        }
        scanned = c->off + done;
    }
}

/* ---- one streamed request ---------------------------------------------------- */

typedef struct result {
    int status; /* HTTP status; 0: no answer */
    bool ok;
    double ttft, e2e; /* seconds */
    int tokens, events, prompt_tokens;
    char err[200];
} result;

typedef struct stream {
    result *r;
    double t0, t_last;
    bool done, failed, usage;
    dvec *gaps; /* where the inter-token gaps go */
    char *line; /* the SSE line being assembled */
    size_t line_len, line_cap;
} stream;

static void stream_event(stream *s, const char *data, size_t n, double t)
{
    if (n == 6 && !memcmp(data, "[DONE]", 6)) {
        s->done = true;
        return;
    }
    json_error_t je;
    json_t *j = json_loadb(data, n, 0, &je);
    if (!json_is_object(j)) {
        if (!s->failed)
            snprintf(s->r->err, sizeof s->r->err, "bad SSE data: %.*s", (int)(n > 80 ? 80 : n),
                     data);
        s->failed = true;
        json_decref(j);
        return;
    }
    json_t *e = json_object_get(j, "error");
    if (e) {
        json_t *m = json_is_object(e) ? json_object_get(e, "message") : e;
        snprintf(s->r->err, sizeof s->r->err, "error event: %s",
                 json_is_string(m) ? json_string_value(m) : "(no message)");
        s->failed = true;
    }
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    json_t *text = O.chat ? json_object_get(json_object_get(ch, "delta"), "content")
                          : json_object_get(ch, "text");
    if (json_is_string(text) && json_string_length(text) > 0) {
        if (s->r->events == 0)
            s->r->ttft = t - s->t0;
        else
            dvec_push(s->gaps, t - s->t_last);
        s->t_last = t;
        s->r->events++;
    }
    json_t *u = json_object_get(j, "usage");
    if (json_is_object(u) && json_is_integer(json_object_get(u, "completion_tokens"))) {
        s->r->tokens = (int)json_integer_value(json_object_get(u, "completion_tokens"));
        s->r->prompt_tokens = (int)json_integer_value(json_object_get(u, "prompt_tokens"));
        s->usage = true;
    }
    json_decref(j);
}

/* Body bytes into SSE lines; every `data:` line is one event. */
static int stream_feed(stream *s, const char *p, size_t n, double t)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') {
            if (s->line_len == s->line_cap) {
                size_t cap = s->line_cap ? s->line_cap * 2 : 4096;
                char *l = realloc(s->line, cap);
                if (!l)
                    return -1;
                s->line = l, s->line_cap = cap;
            }
            s->line[s->line_len++] = p[i];
            continue;
        }
        size_t len = s->line_len;
        if (len && s->line[len - 1] == '\r')
            len--;
        if (len >= 5 && !memcmp(s->line, "data:", 5)) {
            size_t k = 5 + (len > 5 && s->line[5] == ' ');
            stream_event(s, s->line + k, len - k, t);
        }
        s->line_len = 0;
    }
    return 0;
}

typedef struct resp_head {
    int status;
    bool chunked, close;
    long long length; /* -1: none given */
} resp_head;

static int read_head(conn *c, double idle, resp_head *h, char *err, size_t err_cap)
{
    const char *l;
    size_t n;
    *h = (resp_head){.length = -1};
    if (conn_line(c, idle, &l, &n) < 0) {
        snprintf(err, err_cap, "no response: %s", strerror(errno));
        return -1;
    }
    int minor = 1;
    if (n < 12 || sscanf(l, "HTTP/1.%d %d", &minor, &h->status) != 2) {
        snprintf(err, err_cap, "bad status line: %.*s", (int)(n > 60 ? 60 : n), l);
        return -1;
    }
    h->close = minor == 0;
    for (;;) {
        if (conn_line(c, idle, &l, &n) < 0) {
            snprintf(err, err_cap, "headers: %s", strerror(errno));
            return -1;
        }
        if (n == 0)
            return 0;
        char name[64], value[128];
        const char *colon = memchr(l, ':', n);
        if (!colon || (size_t)(colon - l) >= sizeof name)
            continue;
        memcpy(name, l, (size_t)(colon - l));
        name[colon - l] = '\0';
        const char *v = colon + 1, *end = l + n;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        size_t vn = (size_t)(end - v) < sizeof value - 1 ? (size_t)(end - v) : sizeof value - 1;
        memcpy(value, v, vn);
        value[vn] = '\0';
        if (!strcasecmp(name, "transfer-encoding"))
            h->chunked = strcasestr(value, "chunked") != NULL;
        else if (!strcasecmp(name, "content-length"))
            h->length = atoll(value);
        else if (!strcasecmp(name, "connection"))
            h->close = strcasestr(value, "close") != NULL;
    }
}

/* Up to `want` body bytes (want < 0: until the end of the stream) to the
 * stream, or to err when the status is not 200. */
static int read_bytes(conn *c, long long want, double idle, stream *s, size_t *err_len)
{
    while (want != 0) {
        if (c->off == c->len) {
            ssize_t k = conn_fill(c, realm__now() + idle);
            if (k < 0)
                return -1;
            if (k == 0) {
                if (want < 0)
                    return 0;
                errno = ECONNRESET;
                return -1;
            }
        }
        size_t n = c->len - c->off;
        if (want > 0 && (long long)n > want)
            n = (size_t)want;
        if (s->r->status == 200) {
            if (stream_feed(s, c->buf + c->off, n, c->t_recv) < 0)
                return -1;
        } else if (*err_len + 1 < sizeof s->r->err) { /* keep the error body's start */
            size_t k = sizeof s->r->err - 1 - *err_len;
            k = k < n ? k : n;
            memcpy(s->r->err + *err_len, c->buf + c->off, k);
            *err_len += k;
            s->r->err[*err_len] = '\0';
        }
        c->off += n;
        if (want > 0)
            want -= (long long)n;
    }
    return 0;
}

static int read_body(conn *c, const resp_head *h, double idle, stream *s)
{
    size_t err_len = 0;
    if (h->status != 200)
        s->r->err[0] = '\0';
    if (!h->chunked)
        return read_bytes(c, h->length, idle, s, &err_len);
    for (;;) {
        const char *l;
        size_t n;
        if (conn_line(c, idle, &l, &n) < 0)
            return -1;
        char *end;
        unsigned long long size = strtoull(l, &end, 16);
        if (end == l) {
            errno = EPROTO;
            return -1;
        }
        if (size == 0) { /* trailers, then the empty line */
            do {
                if (conn_line(c, idle, &l, &n) < 0)
                    return -1;
            } while (n);
            return 0;
        }
        if (read_bytes(c, (long long)size, idle, s, &err_len) < 0 || conn_line(c, idle, &l, &n) < 0)
            return -1;
    }
}

/* One request on the client's connection (opened or reopened as needed; a
 * reused connection the server closed meanwhile is reopened once). */
static void do_request(conn *c, const char *req, size_t req_len, dvec *gaps, result *r)
{
    *r = (result){.prompt_tokens = -1};
    const size_t gaps0 = gaps->n;
    stream s = {.r = r, .gaps = gaps};
    resp_head h;
    for (int attempt = 0;; attempt++) {
        const bool reused = c->fd >= 0 && c->n_used > 0;
        if (c->fd < 0 && conn_open(c, r->err, sizeof r->err) < 0)
            goto fail;
        s.t0 = realm__now();
        if (conn_send(c, req, req_len, s.t0 + O.timeout) < 0) {
            snprintf(r->err, sizeof r->err, "send: %s", strerror(errno));
            conn_close(c);
            if (reused && attempt == 0)
                continue;
            goto fail;
        }
        if (read_head(c, O.timeout, &h, r->err, sizeof r->err) == 0)
            break;
        const int e = errno;
        conn_close(c);
        if (!reused || attempt > 0 || e == ETIMEDOUT)
            goto fail;
    }
    r->status = h.status;
    if (read_body(c, &h, O.timeout, &s) < 0) {
        snprintf(r->err, sizeof r->err, "reading the body: %s", strerror(errno));
        conn_close(c);
        goto fail;
    }
    r->e2e = realm__now() - s.t0;
    if (h.close)
        conn_close(c);
    else
        c->n_used++;
    if (h.status != 200)
        goto fail;
    if (!s.failed && !s.done)
        snprintf(r->err, sizeof r->err, "the stream ended without [DONE]");
    else if (!s.failed && r->events == 0)
        snprintf(r->err, sizeof r->err, "no content");
    else if (!s.failed) {
        if (!s.usage)
            r->tokens = r->events;
        r->ok = true;
    }
    free(s.line);
    if (!r->ok)
        gaps->n = gaps0;
    return;
fail:
    free(s.line);
    gaps->n = gaps0;
}

/* ---- requests ------------------------------------------------------------------ */

static const char PROSE[] =
    "The old lighthouse keeper climbed the narrow stairs every evening to light the great lamp. "
    "Ships passing through the rocky strait depended on its steady beam to find their way home. "
    "One winter night a storm rolled in from the north, bringing rain, thunder and waves taller "
    "than the harbour wall. The keeper watched the horizon and counted the lights of the fishing "
    "boats as they returned one by one. When the last boat was safe, he wrote a short note in his "
    "logbook, made a cup of tea and listened to the wind until morning. ";

/* about `tokens` tokens of English for a Llama-style vocabulary */
static char *make_prompt(int tokens)
{
    const size_t words = (size_t)tokens * 79 / 100 + 1;
    size_t cap = words * 16 + 64, len = 0, w = 0;
    char *p = malloc(cap);
    if (!p)
        return NULL;
    for (size_t i = 0; w < words; i = PROSE[i + 1] ? i + 1 : 0) {
        if (PROSE[i] == ' ' && ++w == words)
            break;
        p[len++] = PROSE[i];
    }
    p[len] = '\0';
    return p;
}

/* The HTTP request, head and JSON body; `tag` >= 0 goes in front of the prompt. */
static char *make_request(const char *prompt, int max_tokens, int tag, size_t *len)
{
    char *text = NULL;
    if (tag >= 0) {
        size_t n = strlen(prompt) + 32;
        text = malloc(n);
        if (!text)
            return NULL;
        snprintf(text, n, "Request %d. %s", tag, prompt);
        prompt = text;
    }
    json_t *b = json_pack("{s:s, s:i, s:f, s:b, s:{s:b}, s:b}", "model", O.model, "max_tokens",
                          max_tokens, "temperature", 0.0, "stream", 1, "stream_options",
                          "include_usage", 1, "ignore_eos", 1);
    if (O.chat)
        json_object_set_new(b, "messages",
                            json_pack("[{s:s, s:s}]", "role", "user", "content", prompt));
    else
        json_object_set_new(b, "prompt", json_string(prompt));
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    free(text);
    if (!body)
        return NULL;
    char auth[600] = "";
    if (O.api_key)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", O.api_key);
    const size_t bl = strlen(body), cap = bl + sizeof auth + 512;
    char *req = malloc(cap);
    if (req) {
        int n = snprintf(req, cap,
                         "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: realm-bench-serve\r\n"
                         "Accept: text/event-stream\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\n%s\r\n%s",
                         O.chat ? "/v1/chat/completions" : "/v1/completions", O.hostport, bl, auth,
                         body);
        *len = (size_t)n;
    }
    free(body);
    return req;
}

/* ---- a level ------------------------------------------------------------------- */

typedef struct level {
    int conc, n;
    atomic_int next, not_sent;
    const char *prompt;
    char *req, *warm; /* the fixed requests (not --unique) */
    size_t req_len, warm_len;
    pthread_barrier_t start;
} level;

typedef struct client {
    level *lv;
    pthread_t th;
    result *res; /* the timed requests, in order */
    int n_res, warm_failed;
    char warm_err[220];
    dvec gaps;
    double t_start, t_end;
} client;

static void *client_main(void *arg)
{
    client *cl = arg;
    level *lv = cl->lv;
    conn *c = malloc(sizeof *c);
    if (c)
        c->fd = -1, conn_close(c);
    dvec junk = {0};
    for (int w = 0; c && w < O.warmup; w++) {
        result r;
        do_request(c, lv->warm, lv->warm_len, &junk, &r);
        if (!r.ok && !cl->warm_failed++)
            snprintf(cl->warm_err, sizeof cl->warm_err, "HTTP %d: %s", r.status, r.err);
    }
    free(junk.v);
    pthread_barrier_wait(&lv->start);
    cl->t_start = cl->t_end = realm__now();
    const double cap = cl->t_start + O.duration;
    for (int i; c && (i = atomic_fetch_add(&lv->next, 1)) < lv->n;) {
        if (realm__now() >= cap) {
            atomic_fetch_add(&lv->not_sent, 1);
            continue;
        }
        size_t len = lv->req_len;
        char *req = O.unique ? make_request(lv->prompt, O.max_tokens, i, &len) : lv->req;
        result *r = &cl->res[cl->n_res++];
        if (!req) {
            *r = (result){.err = "out of memory"};
            continue;
        }
        do_request(c, req, len, &cl->gaps, r);
        cl->t_end = realm__now();
        if (O.unique)
            free(req);
    }
    if (c)
        conn_close(c);
    free(c);
    return NULL;
}

typedef struct level_result {
    int conc, n, ok, errors, n429, n503, not_sent, warm_failed;
    long long tokens, prompt_tokens_sum;
    long long failed_events; /* content events of the requests that failed */
    int prompt_tokens_n;
    double wall, tok_s, req_s;
    stats ttft, itl, tpot, e2e;
    char first_err[240];
} level_result;

static int run_level(int conc, const char *prompt, level_result *out)
{
    level lv = {.conc = conc, .prompt = prompt};
    lv.n = O.requests ? O.requests : (4 * conc > 8 ? 4 * conc : 8);
    lv.req = make_request(prompt, O.max_tokens, -1, &lv.req_len);
    lv.warm = make_request(prompt, O.max_tokens < WARMUP_TOKENS ? O.max_tokens : WARMUP_TOKENS, -1,
                           &lv.warm_len);
    client *cl = calloc((size_t)conc, sizeof *cl);
    if (!lv.req || !lv.warm || !cl)
        return -1;
    pthread_barrier_init(&lv.start, NULL, (unsigned)conc);
    int started = 0;
    for (int i = 0; i < conc; i++) {
        cl[i].lv = &lv;
        cl[i].res = calloc((size_t)lv.n, sizeof *cl[i].res);
        if (!cl[i].res)
            return -1;
    }
    for (; started < conc; started++)
        if (pthread_create(&cl[started].th, NULL, client_main, &cl[started]))
            break;
    if (started < conc) {
        fprintf(stderr, "bench_serve: cannot start %d client threads\n", conc);
        exit(1); /* the barrier would wait for ever */
    }
    for (int i = 0; i < conc; i++)
        pthread_join(cl[i].th, NULL);

    *out = (level_result){.conc = conc, .n = lv.n, .not_sent = atomic_load(&lv.not_sent)};
    dvec ttft = {0}, itl = {0}, tpot = {0}, e2e = {0};
    double t0 = INFINITY, t1 = -INFINITY;
    for (int i = 0; i < conc; i++) {
        client *k = &cl[i];
        t0 = k->t_start < t0 ? k->t_start : t0;
        t1 = k->t_end > t1 ? k->t_end : t1;
        out->warm_failed += k->warm_failed;
        if (k->warm_failed && !out->first_err[0])
            snprintf(out->first_err, sizeof out->first_err, "warm-up: %s", k->warm_err);
        for (size_t g = 0; g < k->gaps.n; g++)
            dvec_push(&itl, k->gaps.v[g]);
        for (int j = 0; j < k->n_res; j++) {
            const result *r = &k->res[j];
            if (!r->ok) {
                out->errors++;
                out->failed_events += r->events;
                out->n429 += r->status == 429;
                out->n503 += r->status == 503;
                if (!out->first_err[0] || !strncmp(out->first_err, "warm-up", 7))
                    snprintf(out->first_err, sizeof out->first_err, "HTTP %d: %s", r->status,
                             r->err);
                continue;
            }
            out->ok++;
            out->tokens += r->tokens;
            if (r->prompt_tokens >= 0)
                out->prompt_tokens_sum += r->prompt_tokens, out->prompt_tokens_n++;
            dvec_push(&ttft, r->ttft);
            dvec_push(&e2e, r->e2e);
            if (r->tokens > 1)
                dvec_push(&tpot, (r->e2e - r->ttft) / (r->tokens - 1));
        }
        free(k->gaps.v);
        free(k->res);
    }
    for (char *p = out->first_err; *p; p++) /* one line */
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    out->wall = t1 > t0 ? t1 - t0 : 0;
    out->tok_s = out->wall > 0 ? (double)out->tokens / out->wall : 0;
    out->req_s = out->wall > 0 ? out->ok / out->wall : 0;
    out->ttft = summarize(&ttft);
    out->itl = summarize(&itl);
    out->tpot = summarize(&tpot);
    out->e2e = summarize(&e2e);
    free(ttft.v), free(itl.v), free(tpot.v), free(e2e.v);
    pthread_barrier_destroy(&lv.start);
    free(cl), free(lv.req), free(lv.warm);
    return 0;
}

/* ---- output ---------------------------------------------------------------------- */

static void print_level(const level_result *l)
{
    printf("concurrency %d: %d requests, %d ok, %d errors (429: %d, 503: %d)", l->conc, l->n, l->ok,
           l->errors, l->n429, l->n503);
    if (l->not_sent)
        printf(", %d not sent (--duration)", l->not_sent);
    printf("\n  wall %.2f s, output %lld tokens (%.1f per request), %.2f tokens/s, %.3f requests/s",
           l->wall, l->tokens, l->ok ? (double)l->tokens / l->ok : 0.0, l->tok_s, l->req_s);
    if (l->prompt_tokens_n)
        printf(", prompt %.1f tokens", (double)l->prompt_tokens_sum / l->prompt_tokens_n);
    if (l->failed_events)
        printf("\n  the failed requests streamed %lld content events first (%.2f/s with them)",
               l->failed_events,
               l->wall > 0 ? (double)(l->tokens + l->failed_events) / l->wall : 0.0);
    printf("\n");
    const struct {
        const char *name;
        const stats *s;
    } rows[] = {{"TTFT", &l->ttft}, {"ITL", &l->itl}, {"TPOT", &l->tpot}, {"E2E", &l->e2e}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        printf("  %-5s ms  mean %9.2f  p50 %9.2f  p90 %9.2f  p99 %9.2f  (n %zu)\n", rows[i].name,
               rows[i].s->mean, rows[i].s->p50, rows[i].s->p90, rows[i].s->p99, rows[i].s->n);
    if (l->warm_failed)
        printf("  warm-up: %d requests failed\n", l->warm_failed);
    if (l->first_err[0])
        printf("  first error: %s\n", l->first_err);
    fflush(stdout);
}

static json_t *stats_json(const stats *s)
{
    return json_pack("{s:f, s:f, s:f, s:f, s:I}", "mean", s->mean, "p50", s->p50, "p90", s->p90,
                     "p99", s->p99, "n", (json_int_t)s->n);
}

static json_t *level_json(const level_result *l)
{
    json_t *j = json_pack(
        "{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:I, s:f, s:f, s:o, s:o, s:o, s:o}",
        "concurrency", l->conc, "requests", l->n, "ok", l->ok, "errors", l->errors, "http_429",
        l->n429, "http_503", l->n503, "not_sent", l->not_sent, "warmup_failed", l->warm_failed,
        "wall_s", l->wall, "output_tokens", (json_int_t)l->tokens, "output_tokens_per_s", l->tok_s,
        "requests_per_s", l->req_s, "ttft_ms", stats_json(&l->ttft), "itl_ms", stats_json(&l->itl),
        "tpot_ms", stats_json(&l->tpot), "e2e_ms", stats_json(&l->e2e));
    if (l->prompt_tokens_n)
        json_object_set_new(j, "prompt_tokens_mean",
                            json_real((double)l->prompt_tokens_sum / l->prompt_tokens_n));
    if (l->failed_events) {
        json_object_set_new(j, "failed_content_events", json_integer(l->failed_events));
        json_object_set_new(
            j, "output_tokens_per_s_with_failed",
            json_real(l->wall > 0 ? (double)(l->tokens + l->failed_events) / l->wall : 0.0));
    }
    if (l->first_err[0])
        json_object_set_new(j, "first_error", json_string(l->first_err));
    return j;
}

/* ---- options --------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_serve --url http://127.0.0.1:PORT --model NAME [options]\n\n"
               "Streams completions from an OpenAI-compatible server on this machine at each\n"
               "concurrency level and reports TTFT, ITL, TPOT and E2E latency (mean, p50, p90,\n"
               "p99 in ms), output tokens/s and the errors (429 and 503 apart).\n\n"
               "  --url URL              http://HOST:PORT, HOST a loopback address (required)\n"
               "  --model NAME           the model's name on the server (required)\n"
               "  --concurrency LIST     client counts, comma-separated (default 1,8,32)\n"
               "  --requests N           timed requests per level (default 4 x concurrency, at\n"
               "                         least 8)\n"
               "  --max-tokens N         output tokens per request (default 64)\n"
               "  --prompt-tokens N      about N tokens of fixed prompt text (default 128)\n"
               "  --endpoint E           completions or chat (default completions)\n"
               "  --api-key K            sent as Authorization: Bearer K\n"
               "  --warmup N             untimed 4-token requests per client first (default 1)\n"
               "  --unique               number each prompt (defeats prefix caches)\n"
               "  --timeout S            seconds of silence before a request fails (default 300)\n"
               "  --duration S           no new request after S seconds per level (default 900)\n"
               "  --json                 print a JSON array of the levels instead of text\n");
}

static int parse_url(const char *url)
{
    if (strncmp(url, "http://", 7)) {
        fprintf(stderr, "bench_serve: --url must start with http://\n");
        return -1;
    }
    const char *h = url + 7, *end = h + strcspn(h, "/");
    if (*end && strcmp(end, "/")) {
        fprintf(stderr, "bench_serve: --url takes no path (the endpoint is /v1/...)\n");
        return -1;
    }
    const char *hs = h, *he, *port;
    if (*h == '[') {
        hs = h + 1;
        he = memchr(hs, ']', (size_t)(end - hs));
        if (!he) {
            fprintf(stderr, "bench_serve: bad IPv6 address in --url\n");
            return -1;
        }
        port = he[1] == ':' ? he + 2 : NULL;
    } else {
        he = memchr(h, ':', (size_t)(end - h));
        port = he ? he + 1 : NULL;
        he = he ? he : end;
    }
    if ((size_t)(he - hs) >= sizeof O.host || (port && (size_t)(end - port) >= sizeof O.port) ||
        he == hs) {
        fprintf(stderr, "bench_serve: bad host or port in --url\n");
        return -1;
    }
    memcpy(O.host, hs, (size_t)(he - hs));
    O.host[he - hs] = '\0';
    if (port) {
        memcpy(O.port, port, (size_t)(end - port));
        O.port[end - port] = '\0';
    } else {
        strcpy(O.port, "80");
    }
    snprintf(O.hostport, sizeof O.hostport, "%.*s", (int)(end - h), h);

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int e = getaddrinfo(O.host, O.port, &hints, &ai);
    if (e) {
        fprintf(stderr, "bench_serve: %s:%s: %s\n", O.host, O.port, gai_strerror(e));
        return -1;
    }
    bool loopback = false;
    if (ai->ai_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ai->ai_addr;
        loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else if (ai->ai_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ai->ai_addr;
        loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    }
    memcpy(&O.addr, ai->ai_addr, ai->ai_addrlen);
    O.addr_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    if (!loopback) {
        fprintf(stderr,
                "bench_serve: %s is not a loopback address; this benchmark only runs "
                "against this machine\n",
                O.host);
        return -1;
    }
    return 0;
}

static int int_arg(const char *name, const char *v, int lo, int hi, int *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "bench_serve: %s must be an integer from %d to %d\n", name, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int seconds_arg(const char *name, const char *v, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !(x > 0) || x > 1e6) {
        fprintf(stderr, "bench_serve: %s must be a number of seconds above 0\n", name);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    O = (opts){.max_tokens = 64,
               .prompt_tokens = 128,
               .warmup = 1,
               .timeout = 300,
               .duration = 900,
               .conc = {1, 8, 32},
               .n_conc = 3};
    const char *url = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--json")) {
            O.json = true;
            continue;
        }
        if (!strcmp(a, "--unique")) {
            O.unique = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_serve: unknown option or missing value: %s\n", a);
            return -1;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (!strcmp(a, "--url"))
            url = v;
        else if (!strcmp(a, "--model"))
            O.model = v;
        else if (!strcmp(a, "--api-key"))
            O.api_key = v;
        else if (!strcmp(a, "--endpoint")) {
            if (strcmp(v, "completions") && strcmp(v, "chat")) {
                fprintf(stderr, "bench_serve: --endpoint must be completions or chat\n");
                return -1;
            }
            O.chat = !strcmp(v, "chat");
        } else if (!strcmp(a, "--concurrency")) {
            O.n_conc = 0;
            for (const char *p = v; *p;) {
                char num[16];
                size_t n = strcspn(p, ",");
                if (O.n_conc == MAX_LEVELS || n == 0 || n >= sizeof num) {
                    fprintf(stderr,
                            "bench_serve: --concurrency takes up to %d numbers, "
                            "comma-separated\n",
                            MAX_LEVELS);
                    return -1;
                }
                memcpy(num, p, n);
                num[n] = '\0';
                if (int_arg("--concurrency", num, 1, MAX_CONCURRENCY, &O.conc[O.n_conc++]) < 0)
                    return -1;
                p += n + (p[n] == ',');
            }
        } else if (!strcmp(a, "--requests"))
            rc = int_arg(a, v, 1, 1000000, &O.requests);
        else if (!strcmp(a, "--max-tokens"))
            rc = int_arg(a, v, 1, 1000000, &O.max_tokens);
        else if (!strcmp(a, "--prompt-tokens"))
            rc = int_arg(a, v, 1, 1000000, &O.prompt_tokens);
        else if (!strcmp(a, "--warmup"))
            rc = int_arg(a, v, 0, 100, &O.warmup);
        else if (!strcmp(a, "--timeout"))
            rc = seconds_arg(a, v, &O.timeout);
        else if (!strcmp(a, "--duration"))
            rc = seconds_arg(a, v, &O.duration);
        else {
            fprintf(stderr, "bench_serve: unknown option: %s\n", a);
            return -1;
        }
        if (rc < 0)
            return -1;
    }
    if (!url || !O.model) {
        usage(stderr);
        return -1;
    }
    return parse_url(url);
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) < 0)
        return 2;
    char *prompt = make_prompt(O.prompt_tokens);
    if (!prompt)
        return 1;
    if (!O.json)
        printf("bench_serve: %s, model %s, /v1/%s, prompt ~%d tokens, %d output tokens, "
               "streaming%s\n\n",
               O.hostport, O.model, O.chat ? "chat/completions" : "completions", O.prompt_tokens,
               O.max_tokens, O.unique ? ", numbered prompts" : "");
    level_result res[MAX_LEVELS];
    int rc = 0;
    for (int i = 0; i < O.n_conc; i++) {
        if (run_level(O.conc[i], prompt, &res[i]) < 0) {
            fprintf(stderr, "bench_serve: out of memory\n");
            return 1;
        }
        if (!O.json)
            print_level(&res[i]);
        if (res[i].errors || res[i].warm_failed || res[i].not_sent)
            rc = 1;
    }
    if (O.json) {
        json_t *a = json_array();
        for (int i = 0; i < O.n_conc; i++)
            json_array_append_new(a, level_json(&res[i]));
        json_dumpf(a, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(a);
    } else {
        printf("\n| conc | ok | err | 429 | 503 | out tok/s | TTFT p50 | TTFT p99 | ITL p50 | "
               "ITL p99 | TPOT p50 | E2E p50 |\n"
               "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
               "---: |\n");
        for (int i = 0; i < O.n_conc; i++) {
            const level_result *l = &res[i];
            printf("| %d | %d | %d | %d | %d | %.2f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n",
                   l->conc, l->ok, l->errors, l->n429, l->n503, l->tok_s, l->ttft.p50, l->ttft.p99,
                   l->itl.p50, l->itl.p99, l->tpot.p50, l->e2e.p50);
        }
    }
    free(prompt);
    return rc;
}
