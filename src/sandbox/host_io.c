/*
 * Host functions for the request and the response: log, request_read,
 * emit, respond, last_error, last_error_param (docs/host-abi.md).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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
