/* Internal interfaces of the sandbox: the runtime (wasm_rt.c), the module
 * pipeline (module.c), the sandbox itself (sandbox.c). The host ABI's
 * internals are in host_internal.h. */
#ifndef REALM_SANDBOX_INTERNAL_H
#define REALM_SANDBOX_INTERNAL_H

#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "realm/chat.h"
#include "realm/registry.h"
#include "realm/sandbox.h"
#include "wasm-rt.h"

/* Bumped whenever the glue, wasm-rt.h, the host table or the way guests are
 * compiled changes: cache entries built for another value are rebuilt.
 * 2: -fstack-clash-protection, full-width function types.
 * 3: gen_tokens (the host function table grew).
 * 4: last_error_param; the table moved out of the runtime.
 * 5: request_info, set_response.
 * 6: gen_choice; "n" choices.
 * 7: kv_get, kv_put, kv_delete, kv_list. */
#define REALM__SANDBOX_ABI ((unsigned)REALM_HOST_ABI_VERSION)

/* Extra trap codes beyond wasm_rt_trap_t, raised by the host. */
enum {
    REALM__TRAP_DEADLINE = 100,  /* the per-call deadline passed */
    REALM__TRAP_HOST = 101,      /* a host function rejected the guest (message set) */
    REALM__TRAP_MEMORY = 102,    /* initial memory over the tenant's cap */
    REALM__TRAP_CANCELLED = 103, /* the request was cancelled (its client went away) */
};

/* ---- runtime (wasm_rt.c) ------------------------------------------------ */

/* What the runtime needs to know about the call running on this thread. */
typedef struct realm__rt_call {
    uint32_t max_pages;       /* tenant cap on linear memory */
    uint32_t deadline_ms;     /* 0: none */
    uint32_t call_depth;      /* guest call-depth budget */
    uint32_t *depth;          /* the guest object's thread-local depth counter */
    double t_deadline;        /* monotonic seconds; set by realm__rt_run */
    uint8_t *mem_lo, *mem_hi; /* reservation of the instance's memory (fault check) */
    uint32_t mem_pages;       /* pages of linear memory the instance holds */
    uint64_t table_bytes;     /* bytes of tables it holds; with mem_pages, under max_pages */
    char note[160];           /* context for a later trap (e.g. a refused grow) */
    char message[512];        /* the trap's message, set when realm__rt_run fails */
} realm__rt_call;

/* The runtime table handed to every guest object. */
const struct realm_wasm_rt_host *realm__rt_host(void);

/*
 * Run fn(arg) as guest code on this thread under call c: arms the deadline,
 * sets the depth budget and the trap target. Returns 0, or REALM_ERR_TRAP with
 * c->message (and the thread's error) describing the trap. Not reentrant:
 * host functions never call back into a guest.
 */
int realm__rt_run(realm__rt_call *c, void (*fn)(void *), void *arg);

/* The call running on this thread (NULL outside realm__rt_run). */
realm__rt_call *realm__rt_current(void);

/* Bracket host code called from guest code: while inside, the deadline
 * signal only records that time ran out; leaving traps if it did. Entering
 * traps (call stack exhausted) when the thread has too little stack left for
 * host code. */
void realm__rt_host_enter(void);
void realm__rt_host_leave(void);

/* Trap the running guest with a message (from host code between
 * realm__rt_host_enter and _leave). */
_Noreturn void realm__rt_trap_msg(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- the loaded guest object (module.c) -------------------------------- */

typedef struct realm__guest_so {
    void *dl;
    size_t (*instance_size)(void);
    void (*instantiate)(void *inst, void *ctx);
    void (*free)(void *inst);
    uint32_t (*handle)(void *inst);
    wasm_rt_memory_t *(*memory)(void *inst);
    uint32_t *(*depth)(void);
} realm__guest_so;

/* Realm's rules on a wasm image (imports, exports), without wasm-validate:
 * the parser alone, for the fuzz target. Same results as realm_module_check
 * on images that wasm-validate accepts. */
int realm__module_rules(const void *wasm, size_t len, realm_module_info *info);

/* ---- the sandbox (sandbox.c) -------------------------------------------- */

struct realm_sandbox {
    char *cache_dir;
    bool cache_in_tmp; /* the /tmp fallback */
    char *cc;
    pthread_mutex_t build_lock; /* builds and installs into the cache */
    realm_registry *reg;        /* the models modules open */
    bool own_reg;
};

/* Module internals shared with the instances (instance.c, host_*.c). */
const realm__guest_so *realm__module_so(const realm_module *m);
realm_sandbox *realm__module_sandbox(const realm_module *m);
#endif
