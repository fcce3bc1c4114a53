/* Internal helpers for setting the thread's error message (realm/error.h). */
#ifndef REALM_ERROR_INTERNAL_H
#define REALM_ERROR_INTERNAL_H

#include "realm/error.h"

/* Record a printf-style message for this thread and return `code`. */
int realm__error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Bug check: prints both the expression and location, then aborts. Only for
 * conditions that cannot happen unless Realm itself is wrong. */
#define REALM_ASSERT(x)                                                                            \
    do {                                                                                           \
        if (!(x))                                                                                  \
            realm__assert_fail(#x, __FILE__, __LINE__);                                            \
    } while (0)
_Noreturn void realm__assert_fail(const char *expr, const char *file, int line);

#endif
