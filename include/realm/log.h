/*
 * realm/log.h — the operator's log: where the library's own warnings go
 * (a model that falls back to a default chat template, ...).
 *
 * By default lines go to stderr as "realm: warning: ...". A program that
 * keeps its own log (the server) installs a handler; it is called from
 * whichever thread logs, so it must be thread-safe.
 *
 *     static void to_syslog(void *ud, realm_log_level lv, const char *msg) { ... }
 *     realm_log_set_handler(to_syslog, NULL);
 */
#ifndef REALM_LOG_H
#define REALM_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

typedef enum realm_log_level {
    REALM_LOG_ERROR,
    REALM_LOG_WARN,
    REALM_LOG_INFO,
    REALM_LOG_DEBUG,
    REALM_LOG_LEVEL_COUNT
} realm_log_level;

/* msg is one line without a trailing newline, valid during the call. */
typedef void (*realm_log_fn)(void *ud, realm_log_level level, const char *msg);

/* Install a handler (NULL: back to stderr). Lines above max_level (set
 * with realm_log_set_level, default REALM_LOG_INFO) are not produced. */
void realm_log_set_handler(realm_log_fn fn, void *ud);
void realm_log_set_level(realm_log_level max_level);

/* "error", "warning", "info", "debug". */
const char *realm_log_level_name(realm_log_level level);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
