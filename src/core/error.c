/* Error codes, names and the per-thread error message. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"

#define REALM_ERROR_MSG_MAX 512

static _Thread_local char last_error[REALM_ERROR_MSG_MAX];

const char *realm_strerror(int code)
{
    switch (code) {
    case REALM_OK:
        return "success";
#define XX(name, c, text)                                                                          \
    case c:                                                                                        \
        return text;
        REALM_ERR_MAP(XX)
#undef XX
    }
    return "unknown error";
}

const char *realm_err_name(int code)
{
    switch (code) {
    case REALM_OK:
        return "REALM_OK";
#define XX(name, c, text)                                                                          \
    case c:                                                                                        \
        return "REALM_ERR_" #name;
        REALM_ERR_MAP(XX)
#undef XX
    }
    return "REALM_ERR_UNKNOWN";
}

const char *realm_last_error(void)
{
    return last_error;
}

void realm_clear_error(void)
{
    last_error[0] = '\0';
}

/* Formatted apart first: callers wrap the last message in a new one
 * (realm__error(rc, "model '%s': %s", name, realm_last_error())), and
 * vsnprintf may not read the buffer it writes. */
int realm__error(int code, const char *fmt, ...)
{
    char msg[REALM_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, sizeof msg);
    return code;
}

_Noreturn void realm__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "realm: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

const char *realm_version(void)
{
    return REALM_VERSION_STRING;
}
