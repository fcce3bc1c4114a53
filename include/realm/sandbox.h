/*
 * realm/sandbox.h — tenant modules: WebAssembly handlers run in-process,
 * isolated, driving the shared engines through the host ABI (docs/host-abi.md).
 *
 * A module is a wasm32 file that exports `memory` and `handle: () -> i32` and
 * imports only functions of module `realm`. Loading one validates it
 * (wasm-validate), translates it to C (wasm2c), compiles it with the system C
 * compiler into a cache directory keyed by SHA-256 of the file and the ABI
 * version, and dlopens the result. The guest runs on the calling thread, in
 * the same address space, but it can reach only its own linear memory: that
 * memory is a guard-page reservation (the MMU checks every access), and every
 * pointer the guest hands to the host is checked against it.
 *
 *     realm_sandbox *sb;
 *     realm_sandbox_new(&(realm_sandbox_params){0}, &sb);
 *     realm_sandbox_add_model(sb, "tiny", model, engine, NULL); // the operator's models
 *     realm_module *m;
 *     if (realm_module_load(sb, "handler.wasm", &m) < 0)
 *         fprintf(stderr, "%s\n", realm_last_error()); // e.g. "imports
 *                                                      // wasi_snapshot_preview1.fd_write ..."
 *     realm_tenant_policy pol;
 *     realm_tenant_policy_init(&pol);
 *     pol.deadline_ms = 2000;
 *     realm_instance *in;
 *     realm_instance_new(m, &pol, &in);
 *     realm_request_io io = {.body = json, .body_len = n, .emit = on_chunk,
 *                            .respond = on_response, .ud = client};
 *     int rc = realm_instance_handle(in, &io, &status);
 *     if (rc == REALM_ERR_TRAP) ... realm_last_error() says why ...
 *
 * Traps. Out-of-bounds access, unreachable, divide by zero, a bad pointer
 * passed to a host function, stack exhaustion (a per-call depth budget, the
 * guard page below the thread's stack, or too little stack left for a host
 * function), the per-call deadline and the memory cap (linear memory and
 * tables together) all end the current call with REALM_ERR_TRAP and a
 * message ("guest trapped: out-of-bounds memory access", "guest trapped:
 * realm.emit: range 0xfffffff0 + 64 outside guest memory of 131072 bytes",
 * ...). The instance is then rebuilt from the module at its next call, so
 * one bad request never poisons the next.
 *
 * Stacks: guest code runs on the calling thread's stack, which should have a
 * guard page below it (pthread stacks do) and at least 512 KiB; host
 * functions trap the guest when less than 256 KiB (or half the stack) is
 * left. Guests are compiled with -fstack-clash-protection, so a large guest
 * frame cannot step over the guard page into another thread's stack.
 *
 * The module cache: a compiled module is a shared object that the host
 * dlopens, so the cache root must belong to the effective user and not be
 * writable by group or others; otherwise loading fails with
 * REALM_ERR_DENIED naming the directory. Directories the sandbox creates are
 * 0700. Compiler runs are limited to 120 s each and do not inherit the
 * process's file descriptors. Several processes may share one cache.
 *
 * Signals: the first call on a thread installs process-wide handlers for
 * SIGSEGV, SIGBUS and SIGRTMIN+2 (the deadline timer), an alternate signal
 * stack for the thread (unless it has one) and a per-thread timer. Faults
 * that are not a guest's go to the handler installed before.
 *
 * Ownership and threads: a realm_sandbox outlives its modules, a module its
 * instances, registered engines the sandbox. Modules may be shared by any
 * number of threads; an instance is used by one thread at a time. Any number
 * of instances (of one or many modules) run on different threads at once.
 */
#ifndef REALM_SANDBOX_H
#define REALM_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "realm/engine.h"
#include "realm/error.h"
#include "realm/registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

typedef struct realm_sandbox realm_sandbox;
typedef struct realm_module realm_module;
typedef struct realm_instance realm_instance;

typedef struct realm_sandbox_params {
    const char *cache_dir;    /* NULL: $REALM_MODULE_CACHE, else $XDG_CACHE_HOME/realm/modules,
                                 else ~/.cache/realm/modules ($HOME), else
                                 /tmp/realm-modules-<euid>; created 0700 if missing,
                                 refused if another user's or group/world-writable */
    const char *cc;           /* C compiler; NULL: $REALM_CC, else "cc" */
    realm_registry *registry; /* where modules' models come from (borrowed; must outlive
                                 the sandbox); NULL: a registry of the sandbox's own */
} realm_sandbox_params;

int realm_sandbox_new(const realm_sandbox_params *p, realm_sandbox **out);
/* Frees the sandbox; every module must have been freed. NULL is a no-op. */
void realm_sandbox_free(realm_sandbox *sb);
/*
 * Make a model the caller loaded, and its engine, available to modules as
 * `name` (copied): realm_registry_add_loaded on the sandbox's registry. Both
 * must outlive the sandbox. The chat template its "messages" are rendered
 * with is fixed here: chat_template if not NULL (a name
 * realm_chat_template_from_name knows), else the one recognised from the
 * model's tokenizer.chat_template, else — the model has none — chatml, as
 * llama-server does, with a warning in the log (realm/log.h). Errors:
 * REALM_ERR_EXISTS if the name is taken; REALM_ERR_UNSUPPORTED for a template
 * that is present but not recognised, REALM_ERR_NOTFOUND for an unknown
 * chat_template name (both name the known templates).
 *
 * Modules open models by name from the registry (realm_registry_acquire,
 * names only, never file paths); a request's handles hold references until
 * it ends.
 */
int realm_sandbox_add_model(realm_sandbox *sb, const char *name, const realm_model *model,
                            realm_engine *engine, const char *chat_template);
/* The registry the sandbox's modules open models from. */
realm_registry *realm_sandbox_registry(const realm_sandbox *sb);

/* ---- modules ---------------------------------------------------------------- */

typedef struct realm_module_info {
    uint32_t n_imports, n_exports;
    char **imports; /* "module.name" each */
    char **exports; /* "name (func|memory|table|global)" each */
} realm_module_info;

/*
 * Check a .wasm image without compiling it: wasm-validate, then the import
 * and export rules above. On success fills *info (free with
 * realm_module_info_free); on failure REALM_ERR_FORMAT (malformed),
 * REALM_ERR_DENIED (forbidden import, naming it) or REALM_ERR_INVAL (a
 * required export missing or of the wrong type), with the detail in
 * realm_last_error(). info may be NULL.
 */
int realm_module_check(const void *wasm, size_t len, realm_module_info *info);
void realm_module_info_free(realm_module_info *info);

/* Check, then build (or take from the cache) and load a module. Loading a
 * cached module does not wait for other builds; a build waits for other
 * builds of the same sandbox. REALM_ERR_DENIED for an unsafe cache root. */
int realm_module_load(realm_sandbox *sb, const char *wasm_path, realm_module **out);
int realm_module_load_bytes(realm_sandbox *sb, const void *wasm, size_t len, realm_module **out);
/* Build into the cache without loading; *so_path (if not NULL) gets the
 * shared object's path (malloc'ed, caller frees). */
int realm_module_build(realm_sandbox *sb, const void *wasm, size_t len, char **so_path);
/* The hex SHA-256 cache key of the module (64 characters). */
const char *realm_module_key(const realm_module *m);
void realm_module_free(realm_module *m);

/* ---- instances -------------------------------------------------------------- */

/* What a tenant's module may do. Start from realm_tenant_policy_init. */
typedef struct realm_tenant_policy {
    uint32_t tenant;           /* passed to the engine for fair scheduling */
    uint32_t max_pages;        /* linear memory cap, 64 KiB pages; default 1024 (64 MiB) */
    uint32_t deadline_ms;      /* per call; 0: none; default 30000 */
    uint32_t max_call_depth;   /* guest call nesting; default 20000 */
    int32_t max_generations;   /* generations open at once; default 4 */
    int32_t max_tokens;        /* cap on a generation's max_tokens (also when the request
                                  sets none); 0: none (the default) */
    bool allow_tensor_read;    /* realm.tensor_read; default false */
    const char *const *models; /* names it may open; NULL: every registered model */
    int32_t n_models;
} realm_tenant_policy;

void realm_tenant_policy_init(realm_tenant_policy *p);

/* Instantiate (the policy is copied, its model names too). REALM_ERR_TRAP if
 * instantiation traps (e.g. initial memory over the cap). */
int realm_instance_new(realm_module *m, const realm_tenant_policy *p, realm_instance **out);
void realm_instance_free(realm_instance *in);

/*
 * A tenant's key-value data for realm.kv_get / kv_put / kv_delete / kv_list
 * (docs/host-abi.md), which the embedder binds to the request's tenant (the
 * server: its store, realm/store.h, with the tenant's id). The sandbox
 * itself keeps nothing. Keys reach the callbacks NUL-terminated, 1 to
 * REALM_SANDBOX_KV_KEY_MAX bytes without NUL (the host checked that much;
 * what else a key must be is the callee's to check). Each callback returns
 * 0 (or a length) or a negative realm/error.h code with realm_last_error()
 * saying why, as the store's functions leave it: the guest gets both. They
 * run on the guest's thread, during the host call.
 */
/* The host ABI's version (docs/host-abi.md): 7 added the key-value calls, 8 the LoRA
 * options of generate (adapter, adapter_scale, lora) and model_info's parent. */
#define REALM_HOST_ABI_VERSION 8

#define REALM_SANDBOX_KV_KEY_MAX  512
#define REALM_SANDBOX_KV_LIST_MAX 1000 /* keys per kv_list */

typedef struct realm_kv_ops {
    /* The value's length; copied to buf only if it fits cap (the buffer
     * rule; cap 0 measures). REALM_ERR_NOTFOUND when absent or expired. */
    int64_t (*get)(void *ud, const char *key, void *buf, size_t cap);
    /* Store value[0..len) under key, replacing any; ttl_s > 0: it expires
     * that many seconds from now. */
    int (*put)(void *ud, const char *key, const void *value, size_t len, uint32_t ttl_s);
    /* REALM_ERR_NOTFOUND when absent. */
    int (*del)(void *ud, const char *key);
    /* Keys starting with prefix, after `after` ("": from the first), in byte
     * order, at most limit (1..REALM_SANDBOX_KV_LIST_MAX): *keys one
     * malloc'ed block the host frees with free(), *n pointers to strings;
     * *more when further keys match. */
    int (*list)(void *ud, const char *prefix, const char *after, int32_t limit, char ***keys,
                int32_t *n, bool *more);
    void *ud;
} realm_kv_ops;

/* realm_request_io.cancelled's answer when the client asked the request to
 * stop early but still reads its answer. */
#define REALM_IO_STOP 2

/* The request and where the output goes; callbacks run on the calling
 * thread, during realm_instance_handle. Any of them may be NULL. The data
 * (or line) pointer a callback gets points into the guest's memory and is
 * valid only during that callback: copy what you keep. */
typedef struct realm_request_io {
    const char *body;
    size_t body_len;
    void (*emit)(void *ud, const char *data, size_t len);
    void (*respond)(void *ud, int status, const char *data, size_t len);
    /* a guest's log line, level 0..3 (error, warn, info, debug), at most
     * 1024 bytes with no control character but tab: the embedder tags it
     * with tenant and request and writes it as one line */
    void (*log)(void *ud, int level, const char *line, size_t len);
    /* the request as realm.request_info gives it: a JSON object (method, path,
     * query, transport, tenant, request_id, created, headers ...); NULL: "{}" */
    const char *info;
    size_t info_len;
    /* realm.set_response: the status and headers (names and values checked:
     * tokens, no CR/LF) before the first emit or respond; returns 0, or a
     * negative error the guest gets (e.g. REALM_ERR_EXISTS: too late) */
    int (*set_response)(void *ud, int status, const char *const *names, const char *const *values,
                        int n);
    /* polled while the guest waits (every 20 ms at most): 0 to go on;
     * REALM_IO_STOP when the client asked to stop (a WebSocket client's
     * response.cancel): the request's open generations, and any it starts
     * later, are cancelled and end with finish reason "cancelled", and the
     * guest goes on to answer; any other nonzero value once the client has
     * gone away: the generations are cancelled, the guest is stopped and
     * realm_instance_handle returns REALM_ERR_INTERRUPTED */
    int (*cancelled)(void *ud);
    /* a generation of the request ended (or was cancelled with it): its
     * model's name and result, for usage and metrics */
    void (*on_generation)(void *ud, const char *model, const realm_gen_result *res);
    void *ud;
    /* the tenant's key-value data (borrowed for the call); NULL: the kv_*
     * host functions return REALM_ERR_UNSUPPORTED to the guest */
    const realm_kv_ops *kv;
} realm_request_io;

/*
 * Run the module's `handle` export for one request. Returns 0 with the
 * guest's return value in *ret (if not NULL), REALM_ERR_TRAP (message in
 * realm_last_error()), or REALM_ERR_INTERRUPTED when io->cancelled said the
 * client went away. Generations the guest left open are cancelled and
 * freed before returning.
 */
int realm_instance_handle(realm_instance *in, const realm_request_io *io, int32_t *ret);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
