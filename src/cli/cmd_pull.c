/*
 * realm pull SOURCE — download a GGUF model into the models directory.
 *
 * SOURCE is hf:OWNER/REPO/FILE.gguf, hf:OWNER/REPO[:QUANT] (pull_hf.c picks
 * the file from the hub's listing) or an http(s) URL. Each file goes to
 * DIR/NAME.gguf.partial (0600, locked against a second pull), continued with
 * a Range request when it already exists, and is hashed with SHA-256 as it
 * arrives. A dropped connection is resumed up to MAX_RETRIES times. The
 * result must match the expected hash (--sha256, else the hub's listing or
 * its X-Linked-Etag) and open as GGUF (header and tensor table validated);
 * only then are the manifest DIR/NAME.json and the model renamed into place.
 * A failure deletes a download that is known bad and installs nothing.
 *
 * A split model (FILE-00001-of-0000N.gguf ...) is pulled part by part as
 * DIR/NAME-0000i-of-0000N.gguf, all verified before any is installed, with
 * one manifest listing the parts.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "pull_hf.h"
#include "realm/error.h"
#include "realm/gguf.h"

#define CMD               "pull"
#define MAX_RETRIES       3  /* resumptions after a dropped connection or a 5xx, per file */
#define MAX_RESTARTS      3  /* downloads started over from byte 0, per file */
#define DEFAULT_TIMEOUT_S 30 /* connect, and longest stall; $REALM_PULL_TIMEOUT_S */
#define ERROR_BODY_MAX    (64u << 10) /* bytes of an error response read before hanging up */

/* One file to download. */
typedef struct pull_part {
    char *url;                    /* what to GET */
    char *label;                  /* the remote file name, for messages */
    char *suffix;                 /* "" or a split part's "-00001-of-00003" */
    char sha256[PULL_SHA256_HEX]; /* expected; "" while unknown */
    const char *sha_origin;       /* where sha256 came from, for messages */
    uint64_t size;                /* expected; 0 if unknown */
    char *path;                   /* DIR/NAME<suffix>.gguf */
    char *partial;                /* path + ".partial" */
    int fd;                       /* the open, locked partial; -1 */
    /* the result */
    char got_sha256[PULL_SHA256_HEX];
    uint64_t got_size;
    char *final_url; /* after redirects */
} pull_part;

typedef struct pull_plan {
    const char *source; /* as given */
    char *name;         /* default from the file name; --name replaces it */
    bool from_hub;      /* the URLs are the hub's: its ETags carry the LFS hash */
    pull_part *parts;
    size_t n_parts;
} pull_plan;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

/* ---- curl ----------------------------------------------------------------- */

bool pull_url_on_hub(const pull_ctx *ctx, const char *url)
{
    static const CURLUPart origin[] = {CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT};
    CURLU *a = curl_url(), *b = curl_url();
    bool same = a != NULL && b != NULL &&
                curl_url_set(a, CURLUPART_URL, ctx->hub, 0) == CURLUE_OK &&
                curl_url_set(b, CURLUPART_URL, url, 0) == CURLUE_OK;
    for (int i = 0; same && i < 3; i++) {
        char *x = NULL, *y = NULL;
        curl_url_get(a, origin[i], &x, CURLU_DEFAULT_PORT);
        curl_url_get(b, origin[i], &y, CURLU_DEFAULT_PORT);
        same = x != NULL && y != NULL && strcasecmp(x, y) == 0;
        curl_free(x);
        curl_free(y);
    }
    curl_url_cleanup(a);
    curl_url_cleanup(b);
    return same;
}

CURL *pull_easy(pull_ctx *ctx, const char *url)
{
    CURL *h = curl_easy_init();
    if (h == NULL)
        return NULL;
    char agent[64];
    snprintf(agent, sizeof agent, "realm/%s", realm_version());
    ctx->errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ctx->errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, agent);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, ctx->timeout_s);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L); /* < 1 byte/s for timeout_s: stalled */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, ctx->timeout_s);
    /* The token goes to the first host only: curl drops it when a redirect
     * leads elsewhere (the hub's CDN) unless UNRESTRICTED_AUTH is set. */
    curl_easy_setopt(h, CURLOPT_UNRESTRICTED_AUTH, 0L);
    if (ctx->token != NULL && pull_url_on_hub(ctx, url)) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, ctx->token);
    }
    return h;
}

/* Headers of one response (of several, when redirected) worth keeping. */
typedef struct response {
    long status;
    bool from_hub;
    bool has_location;
    bool has_length;
    uint64_t length;
    char range[256];   /* Content-Range */
    char message[256]; /* X-Error-Message (the hub's reason for an error) */
} response;

/* Start a new response at its status line; false if line is not one. */
static bool response_begin(response *r, pull_ctx *ctx, CURL *h, const char *line, size_t n)
{
    if (n < 5 || strncmp(line, "HTTP/", 5) != 0)
        return false;
    memset(r, 0, sizeof *r);
    const char *sp = memchr(line, ' ', n);
    r->status = sp != NULL ? strtol(sp + 1, NULL, 10) : 0;
    /* The effective URL is the one this response answers. */
    char *url = NULL;
    curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &url);
    r->from_hub = url != NULL && pull_url_on_hub(ctx, url);
    return true;
}

/* A redirect curl follows (FOLLOWLOCATION): its body is not the file. */
static bool response_is_redirect(const response *r)
{
    long s = r->status;
    return r->has_location && (s == 301 || s == 302 || s == 303 || s == 307 || s == 308);
}

/* Record the header line if it is one response keeps. */
static void response_header(response *r, const char *line, size_t n)
{
    char v[256];
    if (pull_header_value(line, n, "Content-Length", v, sizeof v)) {
        char *end;
        unsigned long long x = strtoull(v, &end, 10);
        r->has_length = end != v && *end == '\0';
        r->length = x;
    } else if (pull_header_value(line, n, "Content-Range", v, sizeof v)) {
        snprintf(r->range, sizeof r->range, "%s", v);
    } else if (pull_header_value(line, n, "Location", v, sizeof v)) {
        r->has_location = v[0] != '\0';
    } else if (pull_header_value(line, n, "X-Error-Message", v, sizeof v)) {
        snprintf(r->message, sizeof r->message, "%s", v);
    }
}

/* An HTTP error status as a message for cmd; returns 1. */
static int http_error(const pull_ctx *ctx, const char *url, const response *r)
{
    const char *why = r->message[0] ? r->message : "";
    const char *sep = r->message[0] ? ": " : "";
    if (r->status == 404)
        return cli_error(CMD, "%s: not found (HTTP 404)%s%s", url, sep, why);
    if (r->status == 401 || r->status == 403)
        return cli_error(
            CMD, "%s: access denied (HTTP %ld)%s%s; %s", url, r->status, sep, why,
            ctx->token != NULL
                ? "does HF_TOKEN have access, and were the repository's terms accepted?"
                : "for a gated or private repository, set HF_TOKEN");
    return cli_error(CMD, "%s: HTTP %ld%s%s", url, r->status, sep, why);
}

/* ---- one file --------------------------------------------------------- */

/* What the last transfer of a file ended with, beyond curl's own result. */
enum {
    DL_BODY,        /* the body was written to the file (completely if curl says OK) */
    DL_COMPLETE,    /* 416 for a Range at the file's end: the partial is the whole file */
    DL_RESTART,     /* start over from byte 0 (a 416, or a Range answered at the wrong offset) */
    DL_HTTP_ERROR,  /* an error status */
    DL_NOT_GGUF,    /* the body does not start with "GGUF" */
    DL_WRITE_ERROR, /* writing the partial failed (errno in saved_errno) */
};

typedef struct download {
    pull_ctx *ctx;
    pull_part *part;
    CURL *h;
    EVP_MD_CTX *md;     /* SHA-256 of the file's first `have` bytes */
    uint64_t have;      /* bytes in the partial */
    uint64_t total;     /* the whole file's size, from the response; 0 if unknown */
    response r;         /* the response being received */
    bool body_to_file;  /* the current response's body is (the rest of) the file */
    uint64_t discarded; /* bytes of a non-file body read */
    int outcome;
    int saved_errno;
    char linked_etag[PULL_SHA256_HEX]; /* X-Linked-Etag, from the hub */
    char etag[PULL_SHA256_HEX];        /* ETag, from the hub */
    unsigned char head[16];            /* the file's first bytes */
    /* progress */
    double t0, t_last;
    uint64_t have0; /* `have` when the body started */
    int decile;     /* last tenth reported on a non-terminal */
    bool line_open; /* a terminal progress line waits for its newline */
} download;

static void hash_reset(download *d)
{
    EVP_DigestInit_ex(d->md, EVP_sha256(), NULL);
}

/* Empty the partial: the download starts over. */
static int start_over(download *d)
{
    if (ftruncate(d->part->fd, 0) != 0)
        return cli_error(CMD, "cannot truncate %s: %s", d->part->partial, strerror(errno));
    d->have = 0;
    hash_reset(d);
    return 0;
}

/* "'<!DOCTYPE'" for text, else the first bytes in hex. */
static void describe_head(const unsigned char *h, size_t n, char *out, size_t cap)
{
    size_t t = 0;
    while (t < n && isgraph(h[t]))
        t++;
    if (t >= 4 || (t == n && t > 0)) {
        snprintf(out, cap, "'%.*s'", (int)t, (const char *)h);
        return;
    }
    size_t len = (size_t)snprintf(out, cap, "the bytes");
    for (size_t i = 0; i < n && i < 8 && len + 4 < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, " %02x", h[i]);
}

static int not_gguf_error(download *d)
{
    char what[64];
    size_t n = d->have < sizeof d->head ? (size_t)d->have : sizeof d->head;
    describe_head(d->head, n, what, sizeof what);
    unlink(d->part->partial);
    return cli_error(CMD,
                     "%s: the download is not a GGUF file (it starts with %s); nothing was "
                     "installed",
                     d->part->url, what);
}

/* Decide what the final response's body is, once its headers are in. */
static void headers_done(download *d)
{
    response *r = &d->r;
    if (response_is_redirect(r))
        return;
    if (r->status == 206) {
        /* Content-Range: bytes FIRST-LAST/TOTAL (TOTAL may be '*') */
        unsigned long long first, last, total;
        int n = sscanf(r->range, "bytes %llu-%llu/%llu", &first, &last, &total);
        if (n < 2 || first != d->have) {
            fprintf(stderr,
                    "%s: the server answered the range request at another offset (%s); "
                    "starting over\n",
                    d->part->label, r->range);
            d->outcome = DL_RESTART;
            return;
        }
        d->total = n == 3 ? total : 0;
        d->body_to_file = true;
    } else if (r->status == 200) {
        if (d->have > 0) {
            fprintf(stderr, "%s: the server ignored the range request; starting over\n",
                    d->part->label);
            if (ftruncate(d->part->fd, 0) != 0) {
                d->saved_errno = errno;
                d->outcome = DL_WRITE_ERROR;
                return;
            }
            d->have = 0;
            hash_reset(d);
        }
        d->total = r->has_length ? r->length : 0;
        d->body_to_file = true;
    } else if (r->status == 416) {
        /* Content-Range: bytes * / TOTAL: complete if we have all of it. */
        unsigned long long total;
        bool whole = sscanf(r->range, "bytes */%llu", &total) == 1 && total == d->have;
        d->outcome = whole && d->have > 0 ? DL_COMPLETE : DL_RESTART;
        if (!whole)
            fprintf(stderr, "%s: the server cannot continue the partial download; starting over\n",
                    d->part->label);
    } else {
        d->outcome = DL_HTTP_ERROR;
    }
    if (d->body_to_file) {
        d->t0 = d->t_last = now_s();
        d->have0 = d->have;
        d->decile = d->total ? (int)(d->have * 10 / d->total) : 0;
    }
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *user)
{
    download *d = user;
    size_t n = size * nmemb;
    char v[256];
    if (response_begin(&d->r, d->ctx, d->h, line, n)) {
        d->body_to_file = false;
    } else if (n <= 2 && (line[0] == '\r' || line[0] == '\n')) {
        headers_done(d);
    } else if (d->r.from_hub && pull_header_value(line, n, "X-Linked-Etag", v, sizeof v)) {
        pull_sha256_from_etag(v, d->linked_etag);
    } else if (d->r.from_hub && pull_header_value(line, n, "ETag", v, sizeof v)) {
        pull_sha256_from_etag(v, d->etag);
    } else {
        response_header(&d->r, line, n);
    }
    return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
    download *d = user;
    size_t n = size * nmemb;
    if (!d->body_to_file) {
        /* A redirect's or an error's body: read a little, then hang up. */
        d->discarded += n;
        bool keep = d->outcome == DL_BODY || d->outcome == DL_HTTP_ERROR;
        return keep && d->discarded <= ERROR_BODY_MAX ? n : 0;
    }
    if (d->have < sizeof d->head) {
        size_t k = sizeof d->head - (size_t)d->have < n ? sizeof d->head - (size_t)d->have : n;
        memcpy(d->head + d->have, data, k);
        /* Refuse an HTML page (or anything else) before it fills the disk. */
        if (d->have + k >= 4 && memcmp(d->head, REALM_GGUF_MAGIC, 4) != 0) {
            d->have += k; /* for the message; the partial is deleted */
            d->outcome = DL_NOT_GGUF;
            d->body_to_file = false;
            return 0;
        }
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = pwrite(d->part->fd, data + off, n - off, (off_t)(d->have + off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            d->saved_errno = w < 0 ? errno : EIO;
            d->outcome = DL_WRITE_ERROR;
            return 0;
        }
        off += (size_t)w;
    }
    EVP_DigestUpdate(d->md, data, n);
    d->have += n;
    return n;
}

/* "1:05:09" or "3:07" */
static void format_duration(double s, char *out, size_t cap)
{
    long t = s < 0 ? 0 : s > 359999 ? 359999 : (long)(s + 0.5);
    if (t >= 3600)
        snprintf(out, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(out, cap, "%ld:%02ld", t / 60, t % 60);
}

/* One progress report: an updating line on a terminal, else a plain line. */
static void progress_print(download *d, double now, bool tty)
{
    char done[32], total[32], rate[32] = "", eta[48] = "";
    cli_format_bytes(d->have, done, sizeof done);
    double dt = now - d->t0;
    double bps = dt > 0.05 ? (double)(d->have - d->have0) / dt : 0;
    if (bps > 0)
        snprintf(rate, sizeof rate, ", %.1f MB/s", bps / 1e6);
    if (d->total > 0) {
        cli_format_bytes(d->total, total, sizeof total);
        if (bps > 0 && d->total > d->have) {
            char t[32];
            format_duration((double)(d->total - d->have) / bps, t, sizeof t);
            snprintf(eta, sizeof eta, ", %s left", t);
        }
        double pct = 100.0 * (double)d->have / (double)d->total;
        fprintf(stderr, "%s%s: %s of %s (%.0f%%)%s%s%s", tty ? "\r" : "", d->part->label, done,
                total, pct, rate, eta, tty ? "\033[K" : "\n");
    } else {
        fprintf(stderr, "%s%s: %s%s%s", tty ? "\r" : "", d->part->label, done, rate,
                tty ? "\033[K" : "\n");
    }
    d->line_open = tty;
    d->t_last = now;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    download *d = user;
    if (!d->body_to_file)
        return 0;
    double now = now_s();
    if (d->ctx->tty) {
        if (now - d->t_last >= 0.25)
            progress_print(d, now, true);
    } else {
        int decile = d->total ? (int)(d->have * 10 / d->total) : 0;
        if (decile > d->decile || now - d->t_last >= 5) {
            d->decile = decile;
            if (decile < 10) /* the last line is the summary */
                progress_print(d, now, false);
        }
    }
    return 0;
}

/* curl results after which a resumed request may succeed. */
static bool transient(CURLcode cc)
{
    switch (cc) {
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

/* Hash the partial's bytes already on disk and check that they start like GGUF. */
static int hash_existing(download *d)
{
    static unsigned char buf[1 << 20];
    uint64_t off = 0;
    while (off < d->have) {
        size_t want = d->have - off < sizeof buf ? (size_t)(d->have - off) : sizeof buf;
        ssize_t got = pread(d->part->fd, buf, want, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return cli_error(CMD, "cannot read %s: %s", d->part->partial,
                             got < 0 ? strerror(errno) : "unexpected end of file");
        if (off == 0)
            memcpy(d->head, buf, (size_t)got < sizeof d->head ? (size_t)got : sizeof d->head);
        EVP_DigestUpdate(d->md, buf, (size_t)got);
        off += (uint64_t)got;
    }
    if (d->have >= 4 && memcmp(d->head, REALM_GGUF_MAGIC, 4) != 0) {
        fprintf(stderr, "%s: the partial download %s is not GGUF; starting over\n", d->part->label,
                d->part->partial);
        return start_over(d);
    }
    return 0;
}

/*
 * Transfer until the partial holds the whole file (resuming after drops),
 * or fail with a message. The hash in d->md covers the partial throughout.
 */
static int transfer(download *d)
{
    pull_part *p = d->part;
    int retries = 0, restarts = 0;
    for (;;) {
        CURL *h = pull_easy(d->ctx, p->url);
        if (h == NULL)
            return cli_error(CMD, "cannot start curl");
        d->h = h;
        d->outcome = DL_BODY;
        d->body_to_file = false;
        d->discarded = 0;
        d->total = 0;
        memset(&d->r, 0, sizeof d->r);
        char range[32];
        if (d->have > 0) {
            snprintf(range, sizeof range, "%" PRIu64 "-", d->have);
            curl_easy_setopt(h, CURLOPT_RANGE, range);
        }
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, d);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, d);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, d);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        CURLcode cc = curl_easy_perform(h);
        char *eff = NULL;
        curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &eff);
        free(p->final_url);
        p->final_url = strdup(eff != NULL ? eff : p->url);
        curl_easy_cleanup(h);
        d->h = NULL;
        if (d->line_open) {
            fputc('\n', stderr);
            d->line_open = false;
        }
        if (p->final_url == NULL)
            return cli_error(CMD, "out of memory");

        switch (d->outcome) {
        case DL_NOT_GGUF:
            return not_gguf_error(d);
        case DL_WRITE_ERROR:
            return cli_error(CMD, "cannot write %s: %s", p->partial, strerror(d->saved_errno));
        case DL_COMPLETE:
            d->total = d->have;
            return 0;
        case DL_RESTART:
            if (++restarts > MAX_RESTARTS)
                return cli_error(CMD, "%s: the server keeps refusing to continue the download",
                                 p->url);
            if (start_over(d) != 0)
                return 1;
            continue;
        case DL_HTTP_ERROR:
            if (d->r.status >= 500 && retries < MAX_RETRIES) {
                retries++;
                fprintf(stderr, "%s: HTTP %ld; trying again (%d of %d)\n", p->label, d->r.status,
                        retries, MAX_RETRIES);
                sleep((unsigned)retries);
                continue;
            }
            return http_error(d->ctx, p->url, &d->r);
        default:
            break;
        }
        /* A body that ended short of its announced size counts as a drop. */
        bool short_body = cc == CURLE_OK && ((d->total > 0 && d->have < d->total) ||
                                             (p->size > 0 && d->have < p->size));
        if (cc == CURLE_OK && !short_body)
            return 0;
        if ((transient(cc) || short_body) && retries < MAX_RETRIES) {
            retries++;
            char got[32], want[32] = "?";
            cli_format_bytes(d->have, got, sizeof got);
            if (d->total > 0 || p->size > 0)
                cli_format_bytes(d->total > 0 ? d->total : p->size, want, sizeof want);
            fprintf(stderr,
                    "%s: the transfer broke off after %s of %s (%s); resuming (retry %d of %d)\n",
                    p->label, got, want,
                    short_body          ? "short response"
                    : d->ctx->errbuf[0] ? d->ctx->errbuf
                                        : curl_easy_strerror(cc),
                    retries, MAX_RETRIES);
            continue;
        }
        if (short_body)
            return cli_error(CMD, "%s: the response ended after %" PRIu64 " bytes", p->url,
                             d->have);
        return cli_error(CMD, "%s: %s%s", p->url,
                         d->ctx->errbuf[0] ? d->ctx->errbuf : curl_easy_strerror(cc),
                         retries ? " (after retrying)" : "");
    }
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/*
 * Download one part into its partial file and verify it: the SHA-256, the
 * size when known, and the GGUF structure. A verified partial stays open and
 * locked (p->fd) until it is installed.
 */
static int download_part(pull_ctx *ctx, const pull_plan *plan, pull_part *p)
{
    p->fd = open(p->partial, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (p->fd < 0)
        return cli_error(CMD, "cannot create %s: %s", p->partial, strerror(errno));
    if (flock(p->fd, LOCK_EX | LOCK_NB) != 0)
        return cli_error(CMD, "%s is being written by another 'realm pull'", p->partial);
    struct stat st;
    if (fstat(p->fd, &st) != 0 || !S_ISREG(st.st_mode))
        return cli_error(CMD, "%s is not a regular file", p->partial);

    download d = {.ctx = ctx, .part = p, .have = (uint64_t)st.st_size};
    if ((d.md = EVP_MD_CTX_new()) == NULL)
        return cli_error(CMD, "out of memory");
    hash_reset(&d);
    int rc = hash_existing(&d);
    bool resumed = d.have > 0;
    if (rc == 0 && resumed) {
        char b[32];
        fprintf(stderr, "%s: resuming the partial download at %s\n", p->label,
                cli_format_bytes(d.have, b, sizeof b));
    }
    for (int pass = 0; rc == 0; pass++) {
        if ((rc = transfer(&d)) != 0)
            break;
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        EVP_DigestFinal_ex(d.md, md, &md_len);
        hex(md, md_len, p->got_sha256);
        p->got_size = d.have;

        const char *want = p->sha256, *origin = p->sha_origin;
        if (want[0] == '\0' && plan->from_hub) {
            want = d.linked_etag[0] ? d.linked_etag : d.etag;
            origin = "the hub's LFS hash";
        }
        if (want[0] != '\0' && strcmp(want, p->got_sha256) != 0) {
            if (resumed && pass == 0) {
                /* The old partial may be of another version of the file. */
                fprintf(stderr,
                        "%s: the SHA-256 does not match after resuming an earlier "
                        "partial download; downloading it again from the start\n",
                        p->label);
                if ((rc = start_over(&d)) != 0)
                    break;
                continue;
            }
            unlink(p->partial);
            rc = cli_error(CMD,
                           "%s: SHA-256 mismatch: expected %s (from %s), got %s; the download "
                           "was deleted and nothing was installed",
                           p->label, want, origin, p->got_sha256);
            break;
        }
        if (want[0] != '\0' && p->sha256[0] == '\0') {
            memcpy(p->sha256, want, sizeof p->sha256);
            p->sha_origin = origin;
        }
        if (p->size > 0 && p->size != d.have) {
            unlink(p->partial);
            rc = cli_error(CMD,
                           "%s: the download has %" PRIu64 " bytes, the hub lists %" PRIu64
                           "; it was deleted and nothing was installed",
                           p->label, d.have, p->size);
            break;
        }
        if (fsync(p->fd) != 0) {
            rc = cli_error(CMD, "cannot write %s: %s", p->partial, strerror(errno));
            break;
        }
        realm_gguf *g = NULL;
        if (realm_gguf_open(p->partial, &g) < 0) {
            rc = cli_error(CMD,
                           "%s: the download is not a valid GGUF file: %s; it was deleted and "
                           "nothing was installed",
                           p->label, realm_last_error());
            unlink(p->partial);
            break;
        }
        realm_gguf_close(g);
        break;
    }
    EVP_MD_CTX_free(d.md);
    /* An empty partial (nothing came) is not worth keeping for a resume. */
    if (rc != 0 && fstat(p->fd, &st) == 0 && st.st_size == 0)
        unlink(p->partial);
    return rc;
}

/* ---- the plan ------------------------------------------------------------ */

static pull_part *plan_add(pull_plan *plan)
{
    pull_part *grown = realloc(plan->parts, (plan->n_parts + 1) * sizeof *grown);
    if (grown == NULL)
        return NULL;
    plan->parts = grown;
    pull_part *p = &grown[plan->n_parts++];
    memset(p, 0, sizeof *p);
    p->fd = -1;
    p->sha_origin = "";
    return p;
}

static void plan_free(pull_plan *plan)
{
    for (size_t i = 0; i < plan->n_parts; i++) {
        pull_part *p = &plan->parts[i];
        if (p->fd >= 0)
            close(p->fd);
        free(p->url);
        free(p->label);
        free(p->suffix);
        free(p->path);
        free(p->partial);
        free(p->final_url);
    }
    free(plan->parts);
    free(plan->name);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* A model name from a file name: without the split suffix and ".gguf". */
static char *name_from_file(const char *file)
{
    size_t len = strlen(file), at;
    unsigned idx, cnt;
    int w;
    if (pull_split_parse(file, &at, &idx, &cnt, &w))
        len = at;
    else if (len > 5 && strcasecmp(file + len - 5, ".gguf") == 0)
        len -= 5;
    return strndup(file, len);
}

/* The file name at the end of a URL's path, percent-decoded; NULL if none. */
static char *url_file_name(const char *url)
{
    CURLU *u = curl_url();
    char *path = NULL, *name = NULL;
    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PATH, &path, CURLU_URLDECODE) == CURLUE_OK) {
        const char *b = base_name(path);
        if (b[0] != '\0')
            name = strdup(b);
    }
    curl_free(path);
    curl_url_cleanup(u);
    return name;
}

/* s with a split part's index (the digits after s[at] == '-') set to i. */
static char *split_with_index(const char *s, size_t at, int width, unsigned i)
{
    char *r = strdup(s), digits[16];
    if (r != NULL) {
        snprintf(digits, sizeof digits, "%0*u", width, i);
        memcpy(r + at + 1, digits, (size_t)width);
    }
    return r;
}

/*
 * Add the parts of spec (a URL when hf is NULL, else a path in the hub
 * repository hf): every part when spec names one part of a split model.
 */
static int plan_files(pull_ctx *ctx, pull_plan *plan, const pull_hf_ref *hf, const char *spec)
{
    size_t at;
    unsigned idx, count = 1;
    int width = 0;
    bool split = pull_split_parse(spec, &at, &idx, &count, &width);
    for (unsigned i = 1; i <= count; i++) {
        pull_part *p = plan_add(plan);
        if (p == NULL)
            return cli_error(CMD, "out of memory");
        char *one = split ? split_with_index(spec, at, width, i) : strdup(spec);
        if (one == NULL)
            return cli_error(CMD, "out of memory");
        if (hf != NULL) {
            p->url = pull_hf_resolve_url(ctx, hf, one);
            p->label = strdup(base_name(one));
        } else {
            p->url = strdup(one);
            p->label = url_file_name(one);
            if (p->label == NULL)
                p->label = strdup(one);
        }
        free(one);
        p->suffix = split ? xasprintf("-%0*u-of-%0*u", width, i, width, count) : strdup("");
        if (p->url == NULL || p->label == NULL || p->suffix == NULL)
            return cli_error(CMD, "out of memory");
    }
    return 0;
}

/* The parts of hf:OWNER/REPO[:QUANT], picked from the repository's listing. */
static int plan_hf_quant(pull_ctx *ctx, pull_plan *plan, const pull_hf_ref *hf)
{
    pull_file *files;
    size_t n_files, *pick, n_pick;
    if (pull_hf_list(ctx, hf, &files, &n_files) != 0)
        return 1;
    int rc = pull_hf_pick(CMD, hf, files, n_files, &pick, &n_pick);
    for (size_t k = 0; rc == 0 && k < n_pick; k++) {
        const pull_file *f = &files[pick[k]];
        pull_part *p = plan_add(plan);
        if (p == NULL) {
            rc = cli_error(CMD, "out of memory");
            break;
        }
        size_t at;
        unsigned idx, cnt;
        int w;
        bool split = pull_split_parse(f->path, &at, &idx, &cnt, &w);
        p->url = pull_hf_resolve_url(ctx, hf, f->path);
        p->label = strdup(base_name(f->path));
        p->suffix = split ? xasprintf("-%0*u-of-%0*u", w, idx, w, cnt) : strdup("");
        if (p->url == NULL || p->label == NULL || p->suffix == NULL)
            rc = cli_error(CMD, "out of memory");
        memcpy(p->sha256, f->sha256, sizeof p->sha256);
        p->sha_origin = "the hub's file listing";
        p->size = f->size;
    }
    if (rc == 0 && n_pick > 0) {
        const char *first = base_name(files[pick[0]].path);
        if ((plan->name = name_from_file(first)) == NULL)
            rc = cli_error(CMD, "out of memory");
        fprintf(stderr, "%s/%s: picked %s%s\n", hf->owner, hf->repo, files[pick[0]].path,
                n_pick > 1 ? " and the other parts of the split model" : "");
    }
    free(pick);
    pull_files_free(files, n_files);
    return rc;
}

static bool starts_with_nocase(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* The parts of SOURCE and the model's default name. */
static int plan_source(pull_ctx *ctx, pull_plan *plan, const char *source)
{
    plan->source = source;
    if (strncmp(source, "hf:", 3) == 0) {
        pull_hf_ref hf;
        char err[256];
        if (!pull_hf_parse(source, &hf, err, sizeof err))
            return cli_error(CMD, "%s", err);
        plan->from_hub = true;
        if (hf.path[0] == '\0')
            return plan_hf_quant(ctx, plan, &hf);
        if (plan_files(ctx, plan, &hf, hf.path) != 0)
            return 1;
        plan->name = name_from_file(base_name(hf.path));
    } else if (starts_with_nocase(source, "https://") || starts_with_nocase(source, "http://")) {
        CURLU *u = curl_url();
        bool ok = u != NULL && curl_url_set(u, CURLUPART_URL, source, 0) == CURLUE_OK;
        curl_url_cleanup(u);
        if (!ok)
            return cli_error(CMD, "'%s' is not a valid URL", source);
        plan->from_hub = pull_url_on_hub(ctx, source);
        if (plan_files(ctx, plan, NULL, source) != 0)
            return 1;
        char *file = url_file_name(source);
        plan->name = file != NULL ? name_from_file(file) : strdup("");
        free(file);
    } else {
        return cli_error(CMD,
                         "'%s' is not a source: expected hf:OWNER/REPO/FILE.gguf, "
                         "hf:OWNER/REPO[:QUANT] or an http:// or https:// URL",
                         source);
    }
    return plan->name == NULL ? cli_error(CMD, "out of memory") : 0;
}

/* ---- already installed? --------------------------------------------------- */

/* The hub's hash of url from a HEAD request (not following the redirect). */
typedef struct head_state {
    pull_ctx *ctx;
    CURL *h;
    response r;
    char linked[PULL_SHA256_HEX], etag[PULL_SHA256_HEX];
} head_state;

static size_t head_header(char *line, size_t size, size_t nmemb, void *user)
{
    head_state *s = user;
    size_t n = size * nmemb;
    char v[256];
    if (response_begin(&s->r, s->ctx, s->h, line, n))
        s->linked[0] = s->etag[0] = '\0';
    else if (pull_header_value(line, n, "X-Linked-Etag", v, sizeof v))
        pull_sha256_from_etag(v, s->linked);
    else if (pull_header_value(line, n, "ETag", v, sizeof v))
        pull_sha256_from_etag(v, s->etag);
    return n;
}

static bool head_sha256(pull_ctx *ctx, const char *url, char out[PULL_SHA256_HEX])
{
    head_state s = {.ctx = ctx};
    if ((s.h = pull_easy(ctx, url)) == NULL)
        return false;
    curl_easy_setopt(s.h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(s.h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(s.h, CURLOPT_HEADERFUNCTION, head_header);
    curl_easy_setopt(s.h, CURLOPT_HEADERDATA, &s);
    curl_easy_setopt(s.h, CURLOPT_TIMEOUT, 2 * ctx->timeout_s);
    CURLcode cc = curl_easy_perform(s.h);
    curl_easy_cleanup(s.h);
    const char *sha = s.linked[0] ? s.linked : s.etag;
    if (cc != CURLE_OK || s.r.status < 200 || s.r.status >= 400 || sha[0] == '\0')
        return false;
    memcpy(out, sha, PULL_SHA256_HEX);
    return true;
}

/* The installed files of a manifest (file names in dir), or NULL if it lists
 * something that is not one of NAME's files. */
static const char *manifest_file(const json_t *entry, const char *name)
{
    const char *f = json_string_value(json_object_get(entry, "file"));
    size_t n = strlen(name);
    if (f == NULL || strchr(f, '/') != NULL || strncmp(f, name, n) != 0 || strlen(f) < 5 ||
        strcmp(f + strlen(f) - 5, ".gguf") != 0)
        return NULL;
    return f;
}

/* Files of the installed model: the manifest's parts, or its one file. */
static size_t manifest_files(const json_t *m, const char *name, const char **out, size_t cap)
{
    const json_t *parts = json_object_get(m, "parts");
    size_t n = 0;
    if (json_is_array(parts)) {
        for (size_t i = 0; i < json_array_size(parts) && n < cap; i++) {
            const char *f = manifest_file(json_array_get(parts, i), name);
            if (f == NULL)
                return 0;
            out[n++] = f;
        }
    } else if (cap > 0 && (out[0] = manifest_file(m, name)) != NULL) {
        n = 1;
    }
    return n;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/*
 * Whether NAME is already installed: 0 to download, 1 after an error, or 2
 * when it is present with the same content (a message printed). *old gets
 * the installed manifest (to remove files a replacement no longer has).
 */
static int check_installed(pull_ctx *ctx, pull_plan *plan, const char *dir, bool force,
                           json_t **old)
{
    char *mpath = xasprintf("%s/%s.json", dir, plan->name);
    if (mpath == NULL)
        return cli_error(CMD, "out of memory");
    json_t *m = json_load_file(mpath, 0, NULL);
    free(mpath);
    bool any = false;
    for (size_t i = 0; i < plan->n_parts; i++)
        any = any || file_exists(plan->parts[i].path);
    if (m == NULL) {
        if (any && !force)
            return cli_error(CMD,
                             "%s exists but has no manifest %s/%s.json; pass --force to replace "
                             "it, or --name to pull under another name",
                             plan->parts[0].path, dir, plan->name);
        return 0;
    }
    *old = m;
    const char *files[512];
    size_t n_files = manifest_files(m, plan->name, files, 512);
    bool installed = n_files > 0;
    for (size_t i = 0; i < n_files; i++) {
        char *p = xasprintf("%s/%s", dir, files[i]);
        installed = installed && p != NULL && file_exists(p);
        free(p);
    }
    if (!installed || force)
        return 0; /* a stale manifest, or a replacement asked for */

    /* The hashes the source has now, where they can be known without downloading. */
    bool known = true;
    for (size_t i = 0; i < plan->n_parts; i++) {
        pull_part *p = &plan->parts[i];
        if (p->sha256[0] == '\0' && plan->from_hub && head_sha256(ctx, p->url, p->sha256))
            p->sha_origin = "the hub's LFS hash";
        known = known && p->sha256[0] != '\0';
    }
    const char *source = json_string_value(json_object_get(m, "source"));
    const char *when = json_string_value(json_object_get(m, "pulled_at"));
    if (!known) {
        if (source != NULL && strcmp(source, plan->source) == 0) {
            printf("%s is already present in %s (pulled from the same source%s%s; its SHA-256 "
                   "cannot be checked before downloading: pass --force to download it again)\n",
                   plan->name, dir, when ? " at " : "", when ? when : "");
            return 2;
        }
        return cli_error(CMD,
                         "%s already exists in %s (pulled from %s); pass --force to replace it, "
                         "or --name to pull under another name",
                         plan->name, dir, source ? source : "an unknown source");
    }
    /* Compare part by part with the manifest. */
    const json_t *parts = json_object_get(m, "parts");
    bool same = json_is_array(parts) ? json_array_size(parts) == plan->n_parts : plan->n_parts == 1;
    for (size_t i = 0; same && i < plan->n_parts; i++) {
        const json_t *e = json_is_array(parts) ? json_array_get(parts, i) : m;
        const char *sha = json_string_value(json_object_get(e, "sha256"));
        same = sha != NULL && strcasecmp(sha, plan->parts[i].sha256) == 0;
    }
    if (same) {
        printf("%s is already present in %s (sha256 %s)\n", plan->name, dir, plan->parts[0].sha256);
        return 2;
    }
    const char *sha = json_string_value(json_object_get(m, "sha256"));
    return cli_error(CMD,
                     "%s already exists in %s with different contents (sha256 %s; %s has %s); "
                     "pass --force to replace it, or --name to pull under another name",
                     plan->name, dir, sha ? sha : "?", plan->source, plan->parts[0].sha256);
}

/* ---- installing ----------------------------------------------------------- */

/* The URL to record: a redirect's query (a CDN's time-limited signature) dropped. */
static char *recorded_url(const char *requested, const char *final)
{
    if (strcmp(requested, final) == 0)
        return strdup(final);
    CURLU *a = curl_url(), *b = curl_url();
    char *ha = NULL, *hb = NULL, *out = NULL;
    if (a && b && curl_url_set(a, CURLUPART_URL, requested, 0) == CURLUE_OK &&
        curl_url_set(b, CURLUPART_URL, final, 0) == CURLUE_OK &&
        curl_url_get(a, CURLUPART_HOST, &ha, 0) == CURLUE_OK &&
        curl_url_get(b, CURLUPART_HOST, &hb, 0) == CURLUE_OK && strcasecmp(ha, hb) != 0) {
        char *u = NULL;
        curl_url_set(b, CURLUPART_QUERY, NULL, 0);
        if (curl_url_get(b, CURLUPART_URL, &u, 0) == CURLUE_OK)
            out = strdup(u);
        curl_free(u);
    }
    curl_free(ha);
    curl_free(hb);
    curl_url_cleanup(a);
    curl_url_cleanup(b);
    return out != NULL ? out : strdup(final);
}

static json_t *manifest_new(const pull_plan *plan)
{
    char when[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    uint64_t total = 0;
    json_t *parts = json_array();
    char *url0 = NULL;
    for (size_t i = 0; i < plan->n_parts; i++) {
        const pull_part *p = &plan->parts[i];
        char *url = recorded_url(p->url, p->final_url ? p->final_url : p->url);
        json_array_append_new(parts, json_pack("{s:s, s:s?, s:s, s:I}", "file", base_name(p->path),
                                               "url", url, "sha256", p->got_sha256, "size",
                                               (json_int_t)p->got_size));
        if (i == 0)
            url0 = url;
        else
            free(url);
        total += p->got_size;
    }
    const pull_part *p0 = &plan->parts[0];
    json_t *m = json_pack("{s:s, s:s, s:s?, s:s, s:I, s:s, s:s}", "name", plan->name, "source",
                          plan->source, "url", url0, "sha256", p0->got_sha256, "size",
                          (json_int_t)total, "pulled_at", when, "file", base_name(p0->path));
    free(url0);
    if (m != NULL && plan->n_parts > 1 && parts != NULL)
        json_object_set(m, "parts", parts);
    json_decref(parts);
    return m;
}

/* Write the manifest (temporary file + rename), then rename every verified
 * partial to its name: the model appears whole or not at all. */
static int install(const pull_plan *plan, const char *dir, const json_t *old)
{
    json_t *m = manifest_new(plan);
    char *text = m ? json_dumps(m, JSON_INDENT(2) | JSON_ENSURE_ASCII) : NULL;
    json_decref(m);
    char *tmp = xasprintf("%s/%s.json.tmp", dir, plan->name);
    char *path = xasprintf("%s/%s.json", dir, plan->name);
    int rc = 0;
    if (text == NULL || tmp == NULL || path == NULL) {
        rc = cli_error(CMD, "out of memory");
        goto done;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    size_t len = strlen(text);
    bool ok = fd >= 0 && write(fd, text, len) == (ssize_t)len && write(fd, "\n", 1) == 1 &&
              fsync(fd) == 0;
    int err = errno;
    if (fd >= 0 && close(fd) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (!ok || rename(tmp, path) != 0) {
        if (ok)
            err = errno;
        unlink(tmp);
        rc = cli_error(CMD, "cannot write the manifest %s: %s", path, strerror(err));
        goto done;
    }
    for (size_t i = 0; i < plan->n_parts; i++) {
        const pull_part *p = &plan->parts[i];
        if (rename(p->partial, p->path) != 0) {
            rc = cli_error(CMD, "cannot rename %s to %s: %s", p->partial, p->path, strerror(errno));
            goto done;
        }
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    /* A replaced model's files that the new one does not have. */
    const char *files[512];
    size_t n_old = old ? manifest_files(old, plan->name, files, 512) : 0;
    for (size_t i = 0; i < n_old; i++) {
        bool kept = false;
        for (size_t k = 0; k < plan->n_parts; k++)
            kept = kept || strcmp(files[i], base_name(plan->parts[k].path)) == 0;
        char *f = kept ? NULL : xasprintf("%s/%s", dir, files[i]);
        if (f != NULL)
            unlink(f);
        free(f);
    }
done:
    free(text);
    free(tmp);
    free(path);
    return rc;
}

/* ---- the command ---------------------------------------------------------- */

static int ctx_init(pull_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->cmd = CMD;
    const char *hub = getenv("HF_ENDPOINT");
    if (hub == NULL || hub[0] == '\0')
        hub = PULL_HUB_DEFAULT;
    if (!starts_with_nocase(hub, "https://") && !starts_with_nocase(hub, "http://"))
        return cli_error(CMD, "HF_ENDPOINT='%s' is not an http:// or https:// URL", hub);
    int n = snprintf(ctx->hub, sizeof ctx->hub, "%s", hub);
    if (n < 0 || (size_t)n >= sizeof ctx->hub)
        return cli_error(CMD, "HF_ENDPOINT is too long");
    while (n > 0 && ctx->hub[n - 1] == '/')
        ctx->hub[--n] = '\0';
    const char *token = getenv("HF_TOKEN");
    ctx->token = token != NULL && token[0] != '\0' ? token : NULL;
    ctx->timeout_s = DEFAULT_TIMEOUT_S;
    const char *t = getenv("REALM_PULL_TIMEOUT_S");
    if (t != NULL && t[0] != '\0' &&
        !cli_parse_int(CMD, "REALM_PULL_TIMEOUT_S", t, 1, 86400, &ctx->timeout_s))
        return 1;
    ctx->tty = isatty(STDERR_FILENO);
    return 0;
}

static bool valid_sha256(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

static int pull(pull_ctx *ctx, const char *source, const char *name, const char *sha256,
                const char *models_dir, bool force)
{
    pull_plan plan = {0};
    json_t *old = NULL;
    char dir[4096];
    const char *problem = name != NULL ? cli_model_name_problem(name) : NULL;
    if (problem != NULL)
        return cli_error(CMD, "invalid model name '%s': %s", name, problem);
    int rc = plan_source(ctx, &plan, source);
    if (rc != 0)
        goto done;
    if (name != NULL) {
        free(plan.name);
        if ((plan.name = strdup(name)) == NULL) {
            rc = cli_error(CMD, "out of memory");
            goto done;
        }
    }
    if ((problem = cli_model_name_problem(plan.name)) != NULL) {
        rc = cli_error(CMD, "cannot name the model after '%s' (%s); pass --name NAME", plan.name,
                       problem);
        goto done;
    }
    if (sha256 != NULL) {
        if (plan.n_parts > 1) {
            rc = cli_error(CMD, "--sha256 names one file, and %s is a split model of %zu parts",
                           source, plan.n_parts);
            goto done;
        }
        for (int i = 0; i < 64; i++)
            plan.parts[0].sha256[i] = (char)tolower((unsigned char)sha256[i]);
        plan.parts[0].sha_origin = "--sha256";
    }
    if (!cli_models_dir(CMD, models_dir, dir, (int)sizeof dir) ||
        !cli_models_dir_create(CMD, dir)) {
        rc = 1;
        goto done;
    }
    for (size_t i = 0; i < plan.n_parts; i++) {
        pull_part *p = &plan.parts[i];
        p->path = xasprintf("%s/%s%s.gguf", dir, plan.name, p->suffix);
        p->partial = p->path ? xasprintf("%s.partial", p->path) : NULL;
        if (p->partial == NULL) {
            rc = cli_error(CMD, "out of memory");
            goto done;
        }
    }
    rc = check_installed(ctx, &plan, dir, force, &old);
    if (rc != 0) {
        rc = rc == 2 ? 0 : rc;
        goto done;
    }
    for (size_t i = 0; i < plan.n_parts && rc == 0; i++) {
        pull_part *p = &plan.parts[i];
        double t0 = now_s();
        fprintf(stderr, "pulling %s\n", p->url);
        if ((rc = download_part(ctx, &plan, p)) != 0)
            break;
        char b[32];
        double dt = now_s() - t0;
        fprintf(stderr, "%s: %s in %.1f s, sha256 %s%s%s%s\n", p->label,
                cli_format_bytes(p->got_size, b, sizeof b), dt, p->got_sha256,
                p->sha_origin[0] ? " (verified against " : " (not verified: no hash known)",
                p->sha_origin, p->sha_origin[0] ? ")" : "");
    }
    if (rc == 0 && (rc = install(&plan, dir, old)) == 0) {
        char b[32];
        uint64_t total = 0;
        for (size_t i = 0; i < plan.n_parts; i++)
            total += plan.parts[i].got_size;
        if (plan.n_parts == 1)
            printf("pulled %s: %s (%s, sha256 %s)\n", plan.name, plan.parts[0].path,
                   cli_format_bytes(total, b, sizeof b), plan.parts[0].got_sha256);
        else
            printf("pulled %s: %zu parts %s ... %s (%s)\n", plan.name, plan.n_parts,
                   plan.parts[0].path, base_name(plan.parts[plan.n_parts - 1].path),
                   cli_format_bytes(total, b, sizeof b));
    }
done:
    json_decref(old);
    plan_free(&plan);
    return rc;
}

static int run_pull(int argc, char **argv)
{
    const char *source = NULL, *name = NULL, *sha256 = NULL, *models_dir = NULL;
    bool force = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **value = strcmp(a, "--name") == 0         ? &name
                             : strcmp(a, "--sha256") == 0     ? &sha256
                             : strcmp(a, "--models-dir") == 0 ? &models_dir
                                                              : NULL;
        if (value != NULL) {
            if (i + 1 >= argc)
                return cli_error(CMD, "option %s needs a value", a);
            *value = argv[++i];
        } else if (strcmp(a, "--force") == 0) {
            force = true;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_error(CMD, "unknown option '%s' (see 'realm help pull')", a);
        } else if (source == NULL) {
            source = a;
        } else {
            return cli_error(CMD, "unexpected argument '%s'", a);
        }
    }
    if (source == NULL)
        return cli_error(CMD, "missing SOURCE (see 'realm help pull')");
    if (sha256 != NULL && !valid_sha256(sha256))
        return cli_error(CMD, "--sha256 '%s' is not 64 hexadecimal digits", sha256);
    pull_ctx ctx;
    if (ctx_init(&ctx) != 0)
        return 1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return cli_error(CMD, "cannot initialise curl");
    int rc = pull(&ctx, source, name, sha256, models_dir, force);
    curl_global_cleanup();
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli_error(CMD, "error writing output");
    return rc;
}

const cli_command cli_cmd_pull = {
    "pull",
    run_pull,
    "download a GGUF model (Hugging Face hub or URL) into the models directory",
    "usage: realm pull SOURCE [--name NAME] [--sha256 HEX] [--models-dir DIR] [--force]\n"
    "\n"
    "SOURCE is one of\n"
    "  hf:OWNER/REPO/FILE.gguf   a file of a Hugging Face repository\n"
    "  hf:OWNER/REPO:QUANT       the repository's file whose name carries QUANT (e.g.\n"
    "                            Q4_K_M; case-insensitive, not matching Q4_K_M_L or\n"
    "                            IQ4_K_M), from its file list; a single file is\n"
    "                            preferred to a split model\n"
    "  hf:OWNER/REPO             its Q4_K_M file, else its only GGUF model\n"
    "                            (mmproj* files, vision projectors, are never picked)\n"
    "  http://... or https://... any URL\n"
    "\n"
    "The model is installed as DIR/NAME.gguf with a manifest DIR/NAME.json (name,\n"
    "source, url, sha256, size, pulled_at). A split model (FILE-00001-of-0000N.gguf)\n"
    "is pulled whole: DIR/NAME-00001-of-0000N.gguf and the other parts, one manifest.\n"
    "The download goes to DIR/NAME.gguf.partial first; an interrupted pull continues\n"
    "from it, and a dropped connection is resumed up to 3 times. The file must\n"
    "match its SHA-256 (--sha256, else the one the hub publishes for it) and be a\n"
    "valid GGUF file (header and tensor table), or nothing is installed.\n"
    "If NAME exists with the same SHA-256, nothing is downloaded; with another one,\n"
    "the pull is refused unless --force.\n"
    "\n"
    "  --name NAME       install as NAME (default: the file's name without .gguf);\n"
    "                    letters, digits, '.', '_' and '-', not starting with '.',\n"
    "                    at most 128 bytes\n"
    "  --sha256 HEX      the SHA-256 the file must have\n"
    "  --models-dir DIR  the models directory (default $REALM_MODELS_DIR, else\n"
    "                    $XDG_CACHE_HOME/realm/models, else ~/.cache/realm/models)\n"
    "  --force           replace NAME even if it exists, and download again\n"
    "\n"
    "environment:\n"
    "  HF_TOKEN              access token for gated or private repositories; sent\n"
    "                        to the hub's host only, never to a host it redirects to\n"
    "  HF_ENDPOINT           the hub (default https://huggingface.co), e.g. a mirror\n"
    "  REALM_PULL_TIMEOUT_S  seconds to connect, and the longest stall (default 30)\n",
};
