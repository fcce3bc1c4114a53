/*
 * The operator's log (realm/log.h): one handler for the process, swapped
 * atomically with its user data under a lock.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "core/log_internal.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static realm_log_fn log_fn;
static void *log_ud;
static realm_log_level log_max = REALM_LOG_INFO;

void realm_log_set_handler(realm_log_fn fn, void *ud)
{
    pthread_mutex_lock(&log_lock);
    log_fn = fn;
    log_ud = ud;
    pthread_mutex_unlock(&log_lock);
}

void realm_log_set_level(realm_log_level max_level)
{
    pthread_mutex_lock(&log_lock);
    log_max = max_level;
    pthread_mutex_unlock(&log_lock);
}

const char *realm_log_level_name(realm_log_level level)
{
    static const char *const names[REALM_LOG_LEVEL_COUNT] = {"error", "warning", "info", "debug"};
    return (unsigned)level < REALM_LOG_LEVEL_COUNT ? names[level] : "unknown";
}

void realm__log(realm_log_level level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_lock);
    if (level <= log_max) {
        if (log_fn)
            log_fn(log_ud, level, msg);
        else
            fprintf(stderr, "realm: %s: %s\n", realm_log_level_name(level), msg);
    }
    pthread_mutex_unlock(&log_lock);
}
