/*
 * The one path for replies the server writes itself: OpenAI's error shape
 * {"error":{"message","type","param","code"}}, JSON bodies, extra headers.
 * Every reply goes through realm__req_respond, which counts it by route and
 * status (metrics) when it is queued.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"

static const char *type_of(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 429:
        return "rate_limit_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

void realm__reply_header(req *r, const char *name, const char *value)
{
    pthread_mutex_lock(&r->mu);
    if (r->n_headers < REQ_MAX_HEADERS) {
        r->hname[r->n_headers] = strdup(name);
        r->hvalue[r->n_headers] = strdup(value);
        if (r->hname[r->n_headers] && r->hvalue[r->n_headers])
            r->n_headers++;
    }
    pthread_mutex_unlock(&r->mu);
}

void realm__reply_json(req *r, int status, void *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) {
        static const char oom[] =
            "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
            "\"param\":null,\"code\":null}}";
        realm__req_respond(r, 500, oom, sizeof oom - 1);
        return;
    }
    realm__req_respond(r, status, s, strlen(s));
    free(s);
}

void realm__utf8_scrub(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        const unsigned c = *p;
        int n = c < 0x80                 ? 0
                : c >= 0xc2 && c <= 0xdf ? 1
                : (c & 0xf0) == 0xe0     ? 2
                : c >= 0xf0 && c <= 0xf4 ? 3
                                         : -1;
        bool ok = n >= 0;
        for (int i = 1; ok && i <= n; i++)
            ok = (p[i] & 0xc0) == 0x80;
        if (ok && n == 2) /* no overlong forms, no surrogates */
            ok = !(c == 0xe0 && p[1] < 0xa0) && !(c == 0xed && p[1] > 0x9f);
        if (ok && n == 3)
            ok = !(c == 0xf0 && p[1] < 0x90) && !(c == 0xf4 && p[1] > 0x8f);
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n + 1;
    }
}

void realm__reply_error(req *r, int status, const char *type, const char *param, const char *code,
                        const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    realm__utf8_scrub(msg);
    json_t *e = json_pack(
        "{s:s, s:s, s:o, s:o}", "message", msg, "type", type ? type : type_of(status), "param",
        param ? json_string(param) : json_null(), "code", code ? json_string(code) : json_null());
    realm__reply_json(r, status, e ? json_pack("{s:o}", "error", e) : NULL);
}
