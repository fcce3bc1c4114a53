/*
 * realm/server.h — the HTTP server: OpenAI-compatible endpoints run by each
 * tenant's WebAssembly module, tenants and keys from the store, limits,
 * metrics, disconnects and a graceful drain.
 *
 *     realm_server_params p;
 *     realm_server_params_init(&p);
 *     p.registry = reg;                  // the models (realm/registry.h)
 *     p.store = store;                   // tenants, keys, usage (realm/store.h)
 *     p.default_module = wasm; p.default_module_len = n;
 *     realm_server *s;
 *     if (realm_server_new(&p, &s) < 0) ... realm_last_error() ...
 *     printf("listening on port %d\n", realm_server_port(s));
 *     realm_server_run(s);               // until realm_server_stop
 *     realm_server_free(s);
 *
 * Requests. Generation endpoints (POST /v1/chat/completions,
 * /v1/completions) run in the tenant's module on a worker thread, never on
 * the network thread, so thousands of idle keep-alive connections cost no
 * thread and a slow client holds only its own buffer. The server itself
 * answers /health, /ready, /metrics, /v1/models, /tokenize, /detokenize and
 * the admin API. Every response carries x-request-id; every error has
 * OpenAI's shape {"error":{"message","type","param","code"}} and comes from
 * one reply path that counts it.
 *
 * Modules' data. A module's realm.kv_* calls reach its tenant's key-value
 * data in the store (realm/store.h); the housekeeping thread removes expired
 * entries every minute. Without a store they return UNSUPPORTED.
 *
 * Auth. A request's `Authorization: Bearer KEY` selects its tenant (keys from
 * the store, or the one `api_key`, which belongs to tenant "default").
 * Without any key (none in the store, no api_key) a server listening on a
 * loopback address serves everyone as tenant "default"; on any other
 * address it refuses to start unless no_auth is set. A keyless server is not
 * drivable from a web page: POST bodies must be application/json (415), CORS
 * is off unless origins are configured, and the Host header must name the
 * loopback address the server listens on.
 *
 * WebSocket. GET /v1/responses with an upgrade opens OpenAI's WebSocket mode
 * of the Responses API (docs/websocket.md): one event-loop thread holds every
 * such connection, each response.create runs like a streamed POST on a
 * worker, ws_max_connections bounds them.
 *
 * Disconnects. A client that goes away while its request waits, is
 * prefilled or decodes, streaming or not, cancels it: its sequence and KV
 * blocks are freed within one engine step.
 *
 * Stopping. realm_server_stop (safe from a signal handler) starts a drain:
 * no new connections, /ready answers 503, running requests get drain_timeout_s
 * to finish and are then cancelled with a clean end; usage is flushed and
 * realm_server_run returns 0. Calling it with immediate set ends at once.
 *
 * Thread safety: realm_server_run on one thread; realm_server_stop from any
 * thread or signal handler; the rest before run or after it returned.
 */
#ifndef REALM_SERVER_H
#define REALM_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "realm/registry.h"
#include "realm/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

typedef struct realm_server realm_server;

typedef struct realm_server_params {
    const char *host;           /* address to bind; default "127.0.0.1" ("::1", "0.0.0.0", "::") */
    int port;                   /* default 8080; 0: any free port (realm_server_port says which) */
    realm_registry *registry;   /* required, borrowed */
    realm_store *store;         /* tenants, keys, usage; NULL: only tenant "default" */
    const void *default_module; /* wasm bytes of the module for tenants without one */
    size_t default_module_len;
    const char *module_cache;        /* compiled modules (realm_sandbox_params.cache_dir) */
    const char *api_key;             /* one key for tenant "default" (llama-server's --api-key) */
    bool no_auth;                    /* serve without keys on a non-loopback address */
    const char *admin_key;           /* the admin API's key; NULL: the admin API answers 404 */
    const char *lora_dir;            /* the directory POST /v1/load_lora_adapter may read
                                        adapters from (lora_path inside it, symbolic links
                                        resolved); NULL: loading at run time is refused */
    const char *tls_cert, *tls_key;  /* PEM files: HTTPS */
    const char *const *cors_origins; /* allowed origins ("*" for any); NULL: CORS off */
    int32_t n_cors_origins;
    uint64_t max_body;            /* bytes; default 1 MiB */
    int32_t workers;              /* threads running modules; default 64 */
    int32_t max_queue;            /* requests waiting for a worker; default 1024 (then 503) */
    int32_t max_connections;      /* default 4096 */
    int32_t ws_max_connections;   /* WebSocket connections open at once; default 1024 */
    double read_timeout_s;        /* a request must arrive within this; default 30 */
    double drain_timeout_s;       /* running requests' time to finish at a stop; default 30 */
    int32_t metrics_tenants;      /* tenants labelled in /metrics, others "other"; default 32 */
    int64_t responses_ttl_s;      /* stored /v1/responses kept this long (request_info's
                                     "responses_ttl_s", the default module's ttl); default
                                     30 days */
    uint32_t sandbox_max_pages;   /* module memory cap when the tenant sets none */
    uint32_t sandbox_deadline_ms; /* module deadline when the tenant sets none; default 600000 */
} realm_server_params;

void realm_server_params_init(realm_server_params *p);

/* Bind and prepare (models are loaded on first use). Errors: REALM_ERR_INVAL
 * for bad parameters (the message names them, e.g. no keys on a public
 * address), REALM_ERR_IO when the address cannot be bound or TLS files not
 * read. */
int realm_server_new(const realm_server_params *p, realm_server **out);
/* The port bound. */
int realm_server_port(const realm_server *s);
/* Serve until stopped; 0 after a clean drain. */
int realm_server_run(realm_server *s);
/* Begin a drain (or end at once with immediate). Async-signal-safe. */
void realm_server_stop(realm_server *s, bool immediate);
void realm_server_free(realm_server *s);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
