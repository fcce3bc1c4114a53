/* Writing to the operator's log from inside the library (realm/log.h). */
#ifndef REALM_CORE_LOG_INTERNAL_H
#define REALM_CORE_LOG_INTERNAL_H

#include "realm/log.h"

/* Format one line and hand it to the handler (or stderr). Thread-safe. */
void realm__log(realm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
