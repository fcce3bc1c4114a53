/*
 * Host functions for the request and the response: log, request_read,
 * request_info, set_response, emit, respond, last_error, last_error_param
 * (docs/host-abi.md).
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/error_internal.h"
#include "host_internal.h"

/*
 * A guest's log line as one line of the operator's log: at most LOG_LINE_MAX
 * bytes ("..." when cut), control characters other than tab written as \xNN
 * (a newline could otherwise forge a line with another tenant's tags),
 * levels above 3 as 3 (debug).
 */
#define LOG_LINE_MAX 1024

uint32_t realm__host_log(void *c, uint32_t level, uint32_t ptr, uint32_t len)
{
    HOST_BEGIN(c);
    const uint8_t *s = realm__host_range(in, "log", ptr, len);
    if (in->io && in->io->log) {
        char line[LOG_LINE_MAX + 1];
        size_t n = 0;
        uint32_t i = 0;
        for (; i < len; i++) {
            const uint8_t ch = s[i];
            const bool ctl = (ch < 0x20 && ch != '\t') || ch == 0x7f;
            if (n + (ctl ? 4 : 1) > LOG_LINE_MAX - 3)
                break;
            if (ctl)
                n += (size_t)snprintf(line + n, 5, "\\x%02x", ch);
            else
                line[n++] = (char)ch;
        }
        if (i < len) {
            memcpy(line + n, "...", 3);
            n += 3;
        }
        in->io->log(in->io->ud, level > 3 ? 3 : (int)level, line, n);
    }
    HOST_RETURN(0);
}

uint32_t realm__host_request_read(void *c, uint32_t ptr, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = realm__host_range(in, "request_read", ptr, cap);
    size_t n = in->io ? in->io->body_len : 0;
    HOST_RETURN(realm__host_put(dst, cap, n ? in->io->body : "", n));
}

uint32_t realm__host_emit(void *c, uint32_t ptr, uint32_t len)
{
    HOST_BEGIN(c);
    const uint8_t *s = realm__host_range(in, "emit", ptr, len);
    in->resp_started = 1;
    if (in->io && in->io->emit)
        in->io->emit(in->io->ud, (const char *)s, len);
    HOST_RETURN(0);
}

uint32_t realm__host_respond(void *c, uint32_t status, uint32_t ptr, uint32_t len)
{
    HOST_BEGIN(c);
    const uint8_t *s = realm__host_range(in, "respond", ptr, len);
    int rc = 0;
    if (in->responded)
        rc = realm__host_fail(in, REALM_ERR_EXISTS, "respond: the response was already sent");
    else if (status < 100 || status > 599)
        rc = realm__host_fail(in, REALM_ERR_INVAL, "respond: status %u is not an HTTP status",
                              status);
    else {
        in->responded = 1;
        in->resp_started = 1;
        if (in->io && in->io->respond)
            in->io->respond(in->io->ud, (int)status, (const char *)s, len);
    }
    HOST_RETURN(rc);
}

uint32_t realm__host_last_error(void *c, uint32_t ptr, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = realm__host_range(in, "last_error", ptr, cap);
    HOST_RETURN(realm__host_put(dst, cap, in->last_error, strlen(in->last_error)));
}

/* The request option at fault in the last failure ("" when none). */
uint32_t realm__host_last_error_param(void *c, uint32_t ptr, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = realm__host_range(in, "last_error_param", ptr, cap);
    HOST_RETURN(realm__host_put(dst, cap, in->last_param, strlen(in->last_param)));
}

/* The request as the embedder describes it (JSON; "{}" when it gives none). */
uint32_t realm__host_request_info(void *c, uint32_t ptr, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = realm__host_range(in, "request_info", ptr, cap);
    const bool has = in->io && in->io->info;
    HOST_RETURN(realm__host_put(dst, cap, has ? in->io->info : "{}", has ? in->io->info_len : 2));
}

#define MAX_HEADERS 32

/* A header name: an HTTP token, not one the server sets itself. */
static bool header_name_ok(const char *n)
{
    static const char *const reserved[] = {
        "content-length", "transfer-encoding", "connection", "x-request-id",
        "keep-alive",     "upgrade",           "date",       "server"};
    if (!*n || strlen(n) > 64)
        return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *p)))
            return false;
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (strcasecmp(n, reserved[i]) == 0)
            return false;
    return true;
}

static bool header_value_ok(const char *v, size_t len)
{
    if (len > 4096)
        return false;
    for (size_t i = 0; i < len; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0')
            return false;
    return true;
}

/*
 * set_response(status, headers_json): the response's status and headers,
 * before the first emit or respond. headers is a JSON object of strings
 * ({"content-type": "text/event-stream", "retry-after": "3"}; len 0: none).
 */
uint32_t realm__host_set_response(void *c, uint32_t status, uint32_t ptr, uint32_t len)
{
    HOST_BEGIN(c);
    const char *src = (const char *)realm__host_range(in, "set_response", ptr, len);
    if (in->resp_started)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_EXISTS,
                                     "set_response: the response has already started"));
    if (status < 100 || status > 599)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_INVAL,
                                     "set_response: status %u is not an HTTP status", status));
    json_error_t jerr;
    json_t *h = len ? json_loadb(src, len, 0, &jerr) : json_object();
    if (!json_is_object(h) || json_object_size(h) > MAX_HEADERS) {
        json_decref(h);
        HOST_RETURN(realm__host_fail(in, REALM_ERR_INVAL,
                                     "set_response: headers must be a JSON object of at most %d "
                                     "strings",
                                     MAX_HEADERS));
    }
    const char *names[MAX_HEADERS], *values[MAX_HEADERS];
    int n = 0, rc = 0;
    const char *k;
    json_t *v;
    json_object_foreach(h, k, v)
    {
        if (!json_is_string(v) || !header_name_ok(k) ||
            !header_value_ok(json_string_value(v), json_string_length(v))) {
            rc = realm__host_fail(in, REALM_ERR_INVAL,
                                  "set_response: header '%.64s' is not allowed or its value is "
                                  "not a string without line breaks",
                                  k);
            break;
        }
        names[n] = k;
        values[n++] = json_string_value(v);
    }
    if (rc == 0 && in->io && in->io->set_response &&
        (rc = in->io->set_response(in->io->ud, (int)status, names, values, n)) < 0)
        rc = realm__host_fail(in, rc, "set_response: %s", realm_last_error());
    json_decref(h);
    HOST_RETURN(rc);
}
