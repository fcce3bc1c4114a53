/*
 * The wasm2c runtime, host side: traps, linear memory, tables, the deadline.
 *
 * Per thread: a trap target (sigjmp_buf), an alternate signal stack and a
 * one-shot POSIX timer that signals this thread only (SIGEV_THREAD_ID). One
 * process-wide handler each for SIGSEGV/SIGBUS and the timer signal; both act
 * only when the faulting thread is running a guest, and otherwise pass the
 * signal on (to the previous handler, e.g. a sanitizer's, or the default).
 *
 * Linear memory: 8 GiB + one page are reserved PROT_NONE for every memory
 * (wasm2c adds a 32-bit address and a 32-bit offset in 64 bits, so no access
 * can land outside), and the first `size` bytes are made read-write. An access
 * beyond `size` faults inside the reservation and becomes an OOB trap.
 * Tables are malloc'ed arrays; their bytes and the memory's pages together
 * stay within the tenant's cap (max_pages * 64 KiB).
 *
 * in_guest says whether the thread runs guest code (the deadline signal may
 * unwind it at once) or host code (the signal only sets deadline_hit). Every
 * way back into guest code goes through rt_resume_guest, which sets in_guest
 * and then looks at deadline_hit, so a deadline is never lost; host code
 * (host functions and the runtime services below) finishes its bookkeeping
 * before it returns to the guest.
 *
 * Stacks: guest code is compiled with stack clash protection, so running out
 * of stack faults on the guard page (a trap). Host functions trap the guest
 * on entry when too little stack is left for them (HOST_STACK_MARGIN): a
 * fault in host code could not be unwound safely.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/clock_internal.h"
#include "core/error_internal.h"
#include "sandbox_internal.h"

#define WASM_PAGE         65536u
#define MEM_RESERVE       ((uint64_t)1 << 33)
#define MEM_GUARD         ((uint64_t)WASM_PAGE)
#define ALTSTACK_SIZE     (64u * 1024u)
#define TABLE_MAX_ELEMS   (1u << 20)
#define STACK_GUARD_SLACK (256u * 1024u) /* faults this far below the stack count as overflow */
#define HOST_STACK_MARGIN (256u * 1024u) /* stack a host function may need */

typedef struct rt_thread {
    sigjmp_buf *target;             /* set only while a guest runs */
    volatile sig_atomic_t in_guest; /* 1: guest code, 0: host code */
    volatile sig_atomic_t deadline_hit;
    realm__rt_call *call;
    timer_t timer;
    int timer_ok;
    void *altstack;     /* ours, or NULL when the thread already had one */
    uintptr_t stack_lo; /* lowest address of the thread's stack (0: unknown) */
    size_t stack_size;
} rt_thread;

static _Thread_local rt_thread tls;

static pthread_once_t rt_once = PTHREAD_ONCE_INIT;
static pthread_key_t rt_key; /* destructor releases the thread's timer and stack */
static struct sigaction old_segv, old_bus;
static int deadline_signo;

static pthread_mutex_t types_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    uint32_t n_params, n_results;
    wasm_rt_type_t *types; /* n_params + n_results */
} * func_types;
static uint32_t n_func_types, cap_func_types;

realm__rt_call *realm__rt_current(void)
{
    return tls.call;
}

/* Unwind to the host call site. Only ever reached on a thread that is inside
 * realm__rt_run (the guest object cannot run otherwise). */
static _Noreturn void rt_unwind(int code)
{
    tls.in_guest = 0;
    siglongjmp(*tls.target, code);
}

/* Pass a signal we do not own on to whoever handled it before us. */
static void chain(const struct sigaction *old, int sig, siginfo_t *si, void *uc)
{
    if (old->sa_flags & SA_SIGINFO) {
        if (old->sa_sigaction) {
            old->sa_sigaction(sig, si, uc);
            return;
        }
    } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
        return;
    }
    /* Default action: reinstate it and let the fault happen again. */
    signal(sig, SIG_DFL);
}

/* SIGSEGV / SIGBUS: an access by guest code inside its memory reservation is
 * an out-of-bounds trap; one just below the thread's stack (the guard page)
 * is stack exhaustion (deep guest recursion that the call-depth budget did
 * not catch first); anything else is not ours. The handler runs on the
 * alternate stack, so an exhausted stack does not stop it. */
static void on_fault(int sig, siginfo_t *si, void *uc)
{
    realm__rt_call *c = tls.call;
    uint8_t *a = si->si_addr;
    if (tls.in_guest && c && c->mem_lo && a >= c->mem_lo && a < c->mem_hi)
        rt_unwind(WASM_RT_TRAP_OOB);
    uintptr_t ua = (uintptr_t)a;
    if (tls.in_guest && c && tls.stack_lo && ua < tls.stack_lo + 4096 &&
        ua + STACK_GUARD_SLACK >= tls.stack_lo)
        rt_unwind(WASM_RT_TRAP_EXHAUSTION);
    chain(sig == SIGBUS ? &old_bus : &old_segv, sig, si, uc);
}

/* The deadline timer: unwind now if the thread is in guest code, else leave a
 * note that realm__rt_host_leave turns into a trap. */
static void on_deadline(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    if (!tls.call)
        return;
    if (tls.in_guest)
        rt_unwind(REALM__TRAP_DEADLINE);
    tls.deadline_hit = 1;
}

/* Thread exit: release the timer and our alternate stack (if still ours). */
static void thread_exit(void *p)
{
    (void)p;
    if (tls.timer_ok) {
        timer_delete(tls.timer);
        tls.timer_ok = 0;
    }
    if (tls.altstack) {
        stack_t cur;
        if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == tls.altstack) {
            stack_t off = {.ss_flags = SS_DISABLE};
            sigaltstack(&off, NULL);
        }
        munmap(tls.altstack, ALTSTACK_SIZE);
        tls.altstack = NULL;
    }
}

static void rt_global_init(void)
{
    pthread_key_create(&rt_key, thread_exit);
    deadline_signo = SIGRTMIN + 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sa.sa_sigaction = on_fault;
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sa.sa_sigaction = on_deadline;
    sigaction(deadline_signo, &sa, NULL);
}

/* First guest call on this thread: alternate signal stack (unless the thread
 * has one, e.g. from a sanitizer) and the thread's deadline timer. */
static int thread_init(void)
{
    pthread_once(&rt_once, rt_global_init);
    if (tls.timer_ok)
        return 0;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
        void *st =
            mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (st == MAP_FAILED)
            return realm__error(REALM_ERR_NOMEM, "sandbox: no memory for a signal stack");
        stack_t ss = {.ss_sp = st, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
        if (sigaltstack(&ss, NULL) != 0) {
            munmap(st, ALTSTACK_SIZE);
            return realm__error(REALM_ERR_IO, "sandbox: sigaltstack: %s", strerror(errno));
        }
        tls.altstack = st;
    }
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = deadline_signo;
    ev._sigev_un._tid = gettid(); /* glibc has no name for the field */
    if (timer_create(CLOCK_MONOTONIC, &ev, &tls.timer) != 0)
        return realm__error(REALM_ERR_IO, "sandbox: timer_create: %s", strerror(errno));
    tls.timer_ok = 1;
    pthread_setspecific(rt_key, &tls); /* non-NULL so the destructor runs */
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void *lo;
        size_t size;
        if (pthread_attr_getstack(&attr, &lo, &size) == 0) {
            tls.stack_lo = (uintptr_t)lo;
            tls.stack_size = size;
        }
        pthread_attr_destroy(&attr);
    }
    return 0;
}

static void arm(uint32_t ms)
{
    struct itimerspec it;
    memset(&it, 0, sizeof it);
    it.it_value.tv_sec = ms / 1000;
    it.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
    timer_settime(tls.timer, 0, &it, NULL);
}

static const char *trap_text(int code)
{
    switch (code) {
    case WASM_RT_TRAP_OOB:
        return "out-of-bounds memory access";
    case WASM_RT_TRAP_INT_OVERFLOW:
        return "integer overflow";
    case WASM_RT_TRAP_DIV_BY_ZERO:
        return "integer divide by zero";
    case WASM_RT_TRAP_INVALID_CONVERSION:
        return "invalid conversion to integer";
    case WASM_RT_TRAP_UNREACHABLE:
        return "unreachable executed";
    case WASM_RT_TRAP_CALL_INDIRECT:
        return "invalid call_indirect";
    case WASM_RT_TRAP_UNCAUGHT_EXCEPTION:
        return "uncaught exception";
    case WASM_RT_TRAP_EXHAUSTION:
        return "call stack exhausted";
    case REALM__TRAP_DEADLINE:
        return "deadline exceeded";
    case REALM__TRAP_MEMORY:
        return "memory over the tenant's cap";
    }
    return "trap";
}

/* Back from host code to guest code: the guest may run only while its
 * deadline has not passed. in_guest is set first, so a timer signal either
 * sees it and unwinds at once, or arrived before and left deadline_hit. */
static void rt_resume_guest(void)
{
    tls.in_guest = 1;
    if (tls.deadline_hit)
        rt_unwind(REALM__TRAP_DEADLINE);
}

int realm__rt_run(realm__rt_call *c, void (*fn)(void *), void *arg)
{
    int rc = thread_init();
    if (rc < 0)
        return rc;
    sigjmp_buf jb;
    c->message[0] = '\0';
    c->note[0] = '\0';
    tls.call = c;
    tls.target = &jb;
    tls.deadline_hit = 0;
    if (c->depth)
        *c->depth = WASM_RT_MAX_CALL_STACK_DEPTH - c->call_depth;
    c->t_deadline = c->deadline_ms ? realm__now() + c->deadline_ms / 1000.0 : 0;
    int code = sigsetjmp(jb, 1);
    if (code == 0) {
        if (c->deadline_ms)
            arm(c->deadline_ms);
        rt_resume_guest(); /* a timer that fired already is not lost */
        fn(arg);
        tls.in_guest = 0;
    }
    if (c->deadline_ms)
        arm(0);
    tls.target = NULL;
    tls.call = NULL;
    tls.deadline_hit = 0;
    if (code == 0)
        return 0;
    if (code == REALM__TRAP_HOST) /* message already written */
        return realm__error(REALM_ERR_TRAP, "%s", c->message);
    if (code == REALM__TRAP_CANCELLED)
        return realm__error(REALM_ERR_INTERRUPTED, "%s", c->message + strlen("guest trapped: "));
    if (code == REALM__TRAP_DEADLINE)
        snprintf(c->message, sizeof c->message, "guest trapped: deadline of %u ms exceeded",
                 c->deadline_ms);
    else if (c->message[0] == '\0')
        snprintf(c->message, sizeof c->message, "guest trapped: %s%s%s%s", trap_text(code),
                 c->note[0] ? " (" : "", c->note, c->note[0] ? ")" : "");
    if (c->note[0] && code != REALM__TRAP_DEADLINE && strlen(c->message) + 4 < sizeof c->message &&
        !strstr(c->message, c->note)) {
        size_t n = strlen(c->message);
        snprintf(c->message + n, sizeof c->message - n, " (%s)", c->note);
    }
    return realm__error(REALM_ERR_TRAP, "%s", c->message);
}

/* Entering host code from the guest. A guest that has used up its stack (deep
 * recursion, then a host call) traps here rather than let host code run off
 * the end of the stack, where a fault could not be turned into a trap. The
 * margin is HOST_STACK_MARGIN, or half of a smaller stack. */
void realm__rt_host_enter(void)
{
    tls.in_guest = 0;
    if (!tls.stack_lo || !tls.target)
        return;
    size_t margin = HOST_STACK_MARGIN;
    if (tls.stack_size / 2 < margin)
        margin = tls.stack_size / 2;
    if ((uintptr_t)__builtin_frame_address(0) < tls.stack_lo + margin) {
        if (tls.call)
            snprintf(tls.call->note, sizeof tls.call->note,
                     "less than %zu KiB of stack left for a host call", margin / 1024);
        rt_unwind(WASM_RT_TRAP_EXHAUSTION);
    }
}

void realm__rt_host_leave(void)
{
    rt_resume_guest();
}

_Noreturn void realm__rt_trap_msg(int code, const char *fmt, ...)
{
    realm__rt_call *c = tls.call;
    REALM_ASSERT(c && tls.target);
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(c->message, sizeof c->message, "guest trapped: ");
    vsnprintf(c->message + n, sizeof c->message - (size_t)n, fmt, ap);
    va_end(ap);
    rt_unwind(code == REALM__TRAP_HOST || code == REALM__TRAP_CANCELLED ? code : REALM__TRAP_HOST);
}

/* ---- the services wasm2c code calls ------------------------------------- */

static WASM_RT_NO_RETURN void rt_trap(wasm_rt_trap_t t)
{
    if (!tls.target) /* cannot happen: guest code runs only under realm__rt_run */
        realm__assert_fail("wasm trap outside a sandboxed call", __FILE__, __LINE__);
    rt_unwind((int)t);
}

/* Function types are interned process-wide so that equal signatures get equal
 * indices (call_indirect compares indices). Called when a guest object is
 * bound, outside guest code; the module checker bounds the width. */
static uint32_t rt_register_func_type(uint32_t np, uint32_t nr, const wasm_rt_type_t *types)
{
    size_t n = (size_t)np + nr;
    pthread_mutex_lock(&types_lock);
    uint32_t i;
    for (i = 0; i < n_func_types; i++)
        if (func_types[i].n_params == np && func_types[i].n_results == nr &&
            (n == 0 || memcmp(func_types[i].types, types, n * sizeof *types) == 0))
            break;
    if (i == n_func_types) {
        if (n_func_types == cap_func_types) {
            uint32_t cap = cap_func_types ? 2 * cap_func_types : 64;
            void *p = realloc(func_types, cap * sizeof *func_types);
            if (!p) {
                pthread_mutex_unlock(&types_lock);
                realm__assert_fail("out of memory interning function types", __FILE__, __LINE__);
            }
            func_types = p;
            cap_func_types = cap;
        }
        wasm_rt_type_t *copy = malloc(n ? n * sizeof *types : 1);
        if (!copy) {
            pthread_mutex_unlock(&types_lock);
            realm__assert_fail("out of memory interning function types", __FILE__, __LINE__);
        }
        if (n)
            memcpy(copy, types, n * sizeof *types);
        func_types[i].n_params = np;
        func_types[i].n_results = nr;
        func_types[i].types = copy;
        n_func_types++;
    }
    pthread_mutex_unlock(&types_lock);
    return i;
}

/* Bytes the instance may still take for memory and tables: the tenant's cap
 * (max_pages * 64 KiB) counts both. */
static uint64_t cap_bytes(const realm__rt_call *c)
{
    return c ? (uint64_t)c->max_pages * WASM_PAGE : (uint64_t)65536u * WASM_PAGE;
}

static uint64_t used_bytes(const realm__rt_call *c)
{
    return c ? (uint64_t)c->mem_pages * WASM_PAGE + c->table_bytes : 0;
}

/* Reserve the memory's address range and open its first `initial` pages.
 * Runs during instantiation, under realm__rt_run. */
static void rt_allocate_memory(wasm_rt_memory_t *m, uint32_t initial, uint32_t max)
{
    realm__rt_call *c = tls.call;
    tls.in_guest = 0;
    uint32_t cap = c ? c->max_pages : 65536u;
    if (initial > 65536u || (uint64_t)initial * WASM_PAGE + used_bytes(c) > cap_bytes(c))
        realm__rt_trap_msg(REALM__TRAP_HOST,
                           "initial memory of %u pages exceeds the tenant's cap of %u pages",
                           initial, cap);
    void *p = mmap(NULL, MEM_RESERVE + MEM_GUARD, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        realm__rt_trap_msg(REALM__TRAP_HOST, "cannot reserve linear memory: %s", strerror(errno));
    uint64_t bytes = (uint64_t)initial * WASM_PAGE;
    if (bytes && mprotect(p, bytes, PROT_READ | PROT_WRITE) != 0) {
        munmap(p, MEM_RESERVE + MEM_GUARD);
        realm__rt_trap_msg(REALM__TRAP_HOST, "cannot commit linear memory: %s", strerror(errno));
    }
    m->data = p;
    m->pages = initial;
    m->max_pages = max;
    m->size = initial == 65536u ? UINT32_MAX : (uint32_t)bytes; /* 4 GiB is beyond u32 */
    if (c) {
        c->mem_lo = p;
        c->mem_hi = (uint8_t *)p + MEM_RESERVE + MEM_GUARD;
        c->mem_pages = initial;
    }
    rt_resume_guest();
}

/* memory.grow: the new size must stay within the module's maximum and the
 * tenant's cap (which tables share); a refusal returns -1 to the guest (wasm
 * semantics) and leaves a note that explains a later trap. */
static uint32_t rt_grow_memory(wasm_rt_memory_t *m, uint32_t delta)
{
    realm__rt_call *c = tls.call;
    tls.in_guest = 0;
    uint32_t cap = c ? c->max_pages : 65536u;
    uint64_t want = (uint64_t)m->pages + delta;
    uint32_t old = m->pages, r = old;
    if (want > m->max_pages || want > 65536u ||
        (delta && used_bytes(c) + (uint64_t)delta * WASM_PAGE > cap_bytes(c))) {
        if (c && want <= m->max_pages && want <= 65536u)
            snprintf(c->note, sizeof c->note,
                     "memory.grow to %llu pages refused: tenant cap is %u pages%s",
                     (unsigned long long)want, cap, c->table_bytes ? " (tables included)" : "");
        r = UINT32_MAX;
    } else if (delta) {
        if (mprotect(m->data + (uint64_t)old * WASM_PAGE, (uint64_t)delta * WASM_PAGE,
                     PROT_READ | PROT_WRITE) != 0) {
            r = UINT32_MAX;
        } else {
            m->pages = (uint32_t)want;
            m->size = want == 65536u ? UINT32_MAX : (uint32_t)(want * WASM_PAGE);
            if (c)
                c->mem_pages += delta;
        }
    }
    rt_resume_guest();
    return r;
}

static void rt_free_memory(wasm_rt_memory_t *m)
{
    if (m->data)
        munmap(m->data, MEM_RESERVE + MEM_GUARD);
    m->data = NULL;
    m->pages = m->size = 0;
}

/*
 * Tables: a plain array, grown by realloc up to the declared maximum, at most
 * TABLE_MAX_ELEMS elements, and charged to the tenant's memory cap. The
 * bookkeeping is done in host mode (in_guest = 0): a deadline that fires
 * meanwhile is recorded and taken on the way back to the guest, when the
 * table is consistent again.
 */
static void *table_alloc(uint32_t n, size_t elem)
{
    realm__rt_call *c = tls.call;
    tls.in_guest = 0;
    uint64_t bytes = (uint64_t)n * elem;
    if (n > TABLE_MAX_ELEMS)
        realm__rt_trap_msg(REALM__TRAP_HOST, "table of %u elements is too large (limit %u)", n,
                           TABLE_MAX_ELEMS);
    if (used_bytes(c) + bytes > cap_bytes(c))
        realm__rt_trap_msg(REALM__TRAP_HOST,
                           "table of %u elements (%llu bytes) exceeds the tenant's memory cap of "
                           "%u pages",
                           n, (unsigned long long)bytes, c ? c->max_pages : 65536u);
    void *p = calloc(n ? n : 1, elem);
    if (!p)
        realm__rt_trap_msg(REALM__TRAP_HOST, "out of memory for a table of %u elements", n);
    if (c)
        c->table_bytes += bytes;
    return p; /* the caller stores it, then resumes the guest */
}

static void rt_allocate_funcref_table(wasm_rt_funcref_table_t *t, uint32_t n, uint32_t max)
{
    t->data = table_alloc(n, sizeof *t->data);
    t->size = n;
    t->max_size = max;
    rt_resume_guest();
}

static void rt_allocate_externref_table(wasm_rt_externref_table_t *t, uint32_t n, uint32_t max)
{
    t->data = table_alloc(n, sizeof *t->data);
    t->size = n;
    t->max_size = max;
    rt_resume_guest();
}

/* Freed when the instance is dropped, outside guest code; the instance
 * resets its table_bytes then. */
static void rt_free_funcref_table(wasm_rt_funcref_table_t *t)
{
    free(t->data);
    t->data = NULL;
    t->size = 0;
}

static void rt_free_externref_table(wasm_rt_externref_table_t *t)
{
    free(t->data);
    t->data = NULL;
    t->size = 0;
}

/* table.grow: realloc *data to size + delta elements of elem bytes within
 * the limits and the cap; returns the old size or UINT32_MAX (refused). Runs
 * in host mode; the caller fills the new elements and resumes the guest. */
static uint32_t table_grow(void **data, uint32_t size, uint32_t max, uint32_t delta, size_t elem)
{
    realm__rt_call *c = tls.call;
    uint64_t want = (uint64_t)size + delta;
    if (want > max || want > TABLE_MAX_ELEMS)
        return UINT32_MAX;
    uint64_t add = (uint64_t)delta * elem;
    if (used_bytes(c) + add > cap_bytes(c)) {
        if (c)
            snprintf(c->note, sizeof c->note,
                     "table.grow to %llu elements refused: tenant memory cap is %u pages",
                     (unsigned long long)want, c->max_pages);
        return UINT32_MAX;
    }
    void *p = realloc(*data, (size_t)(want ? want : 1) * elem);
    if (!p)
        return UINT32_MAX;
    *data = p;
    if (c)
        c->table_bytes += add;
    return size;
}

static uint32_t rt_grow_funcref_table(wasm_rt_funcref_table_t *t, uint32_t delta,
                                      wasm_rt_funcref_t init)
{
    tls.in_guest = 0;
    void *data = t->data;
    uint32_t old = table_grow(&data, t->size, t->max_size, delta, sizeof *t->data);
    t->data = data;
    if (old != UINT32_MAX) {
        for (uint64_t i = old; i < (uint64_t)old + delta; i++)
            t->data[i] = init;
        t->size = old + delta;
    }
    rt_resume_guest();
    return old;
}

static uint32_t rt_grow_externref_table(wasm_rt_externref_table_t *t, uint32_t delta,
                                        wasm_rt_externref_t init)
{
    tls.in_guest = 0;
    void *data = t->data;
    uint32_t old = table_grow(&data, t->size, t->max_size, delta, sizeof *t->data);
    t->data = data;
    if (old != UINT32_MAX) {
        for (uint64_t i = old; i < (uint64_t)old + delta; i++)
            t->data[i] = init;
        t->size = old + delta;
    }
    rt_resume_guest();
    return old;
}

static struct realm_wasm_rt_host rt_table;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
    rt_table.abi = REALM__SANDBOX_ABI;
    rt_table.trap = rt_trap;
    rt_table.register_func_type = rt_register_func_type;
    rt_table.allocate_memory = rt_allocate_memory;
    rt_table.grow_memory = rt_grow_memory;
    rt_table.free_memory = rt_free_memory;
    rt_table.allocate_funcref_table = rt_allocate_funcref_table;
    rt_table.free_funcref_table = rt_free_funcref_table;
    rt_table.grow_funcref_table = rt_grow_funcref_table;
    rt_table.allocate_externref_table = rt_allocate_externref_table;
    rt_table.free_externref_table = rt_free_externref_table;
    rt_table.grow_externref_table = rt_grow_externref_table;
}

const struct realm_wasm_rt_host *realm__rt_host(void)
{
    pthread_once(&table_once, table_init);
    return &rt_table;
}
