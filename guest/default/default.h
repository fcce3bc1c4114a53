/*
 * What the default module's files share (default.c: the handler and the
 * completions endpoints; responses.c: /v1/responses).
 */
#ifndef REALM_DEFAULT_H
#define REALM_DEFAULT_H

#include "realm_guest.h"

#define MODEL_CAP 128

/* The request as the server describes it (rg_request_info). */
typedef struct req_info {
    char method[16];
    char path[640]; /* without the query; "/too-long" when it did not fit */
    char query[512];
    char id[64];
    int64_t created;
    int64_t responses_ttl_s; /* 0: not given (then the module's default) */
    int websocket;           /* transport "websocket": each emit is one message */
} req_info;

/* OpenAI's error object as the response: type "invalid_request_error" for
 * 4xx, "server_error" for 5xx; param and code null when NULL or empty.
 * Returns status. */
int32_t reply_error(int32_t status, const char *message, size_t message_len, const char *param,
                    size_t param_len, const char *code);
/* reply_error with NUL-terminated message and param (NULL: none). */
int32_t bad_reply(int32_t status, const char *message, const char *param);
/* The reply for the host call that just failed: "what: <the host's
 * message>", param as the host names it. */
int32_t host_error(int32_t status, const char *what, const char *code);
/* The text of the host's last error (rg_last_error or
 * rg_last_error_param), rg_alloc'ed; *n its length, 0 when none. */
char *host_text(int32_t (*get)(char *, uint32_t), size_t *n);
/* The HTTP status for a failed host call's error code. */
int32_t status_for(int32_t err);
int streq(const char *a, const char *b);
/* The k-th element of the JSON array a[0..n): nth_object the k-th object
 * only, nth_value any value; its span in *v, *len; 0, or -1 when none. */
int nth_object(const char *a, size_t n, int k, const char **obj, size_t *len);
int nth_value(const char *a, size_t n, int k, const char **v, size_t *len);

/* POST /v1/responses, GET and DELETE /v1/responses/{id},
 * GET /v1/responses/{id}/input_items. Returns the status answered. */
int32_t responses_handle(const char *body, size_t len, const req_info *ri);

#endif
