/*
 * realm/error.h — error codes and the per-thread error message.
 *
 * Every fallible Realm function returns 0 (REALM_OK) or a negative code from
 * REALM_ERR_MAP, and leaves a human-readable detail in a thread-local buffer:
 *
 *     realm_gguf *g;
 *     int rc = realm_gguf_open("model.gguf", &g);
 *     if (rc < 0)
 *         fprintf(stderr, "%s: %s\n", realm_err_name(rc), realm_last_error());
 *
 * The message stays valid until the same thread's next failing Realm call.
 */
#ifndef REALM_ERROR_H
#define REALM_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

#define REALM_ERR_MAP(XX)                                                                          \
    XX(NOMEM, -1, "out of memory")                                                                 \
    XX(INVAL, -2, "invalid argument")                                                              \
    XX(IO, -3, "input/output error")                                                               \
    XX(FORMAT, -4, "malformed file")                                                               \
    XX(UNSUPPORTED, -5, "not supported")                                                           \
    XX(NOTFOUND, -6, "not found")                                                                  \
    XX(TYPE, -7, "wrong type")                                                                     \
    XX(RANGE, -8, "value out of range")                                                            \
    XX(EXISTS, -9, "already exists")                                                               \
    XX(INTERRUPTED, -10, "interrupted")                                                            \
    XX(NOSPACE, -11, "no space left in the KV cache")                                              \
    XX(OVERLOADED, -12, "server overloaded, try again later")                                      \
    XX(TIMEOUT, -13, "timed out")                                                                  \
    XX(TRAP, -14, "sandboxed module trapped")                                                      \
    XX(DENIED, -15, "not allowed by the tenant's policy")

enum {
    REALM_OK = 0,
#define XX(name, code, text) REALM_ERR_##name = (code),
    REALM_ERR_MAP(XX)
#undef XX
};

/* Short description of an error code ("malformed file"); never NULL. */
const char *realm_strerror(int code);
/* The code's name ("REALM_ERR_FORMAT"); never NULL. */
const char *realm_err_name(int code);
/* Detail of this thread's last failure; "" if none. */
const char *realm_last_error(void);
/* Forget this thread's last failure message. */
void realm_clear_error(void);

/* Library version, "MAJOR.MINOR.PATCH". */
const char *realm_version(void);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
