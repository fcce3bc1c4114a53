/*
 * wasm-rt.h - Realm's implementation of the wasm2c runtime interface, as seen
 * by the C code wasm2c generates for a tenant module.
 *
 * This file is compiled into every guest shared object (it is embedded in
 * librealm and written next to the generated code in the module cache), and
 * it is included by the host runtime (src/sandbox/wasm_rt.c), so the struct
 * layouts below are the one contract between the two sides.
 *
 * Differences from wabt's reference runtime, on purpose:
 *   - Linear memory is always checked by the MMU (a reservation of 8 GiB +
 *     guard, PROT_NONE beyond the current size), so loads and stores carry no
 *     bounds checks; a fault inside guest memory becomes an OOB trap.
 *   - The call-depth counter is thread-local, and the host sets the budget
 *     before each call, so any number of threads run guests at once.
 *   - Nothing here holds process-global mutable state: the guest object calls
 *     the runtime through a table the host hands over when it loads the
 *     object (see struct realm_wasm_rt_host), so the object needs no symbol
 *     from the host executable and can be loaded with RTLD_LOCAL.
 */
#ifndef WASM_RT_H_
#define WASM_RT_H_

#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define UNLIKELY(x)         __builtin_expect(!!(x), 0)
#define LIKELY(x)           __builtin_expect(!!(x), 1)
#define wasm_rt_memcpy      __builtin_memcpy
#define wasm_rt_unreachable __builtin_unreachable
#define WASM_RT_NO_RETURN   __attribute__((noreturn))
#else
#define UNLIKELY(x)         (x)
#define LIKELY(x)           (x)
#define wasm_rt_memcpy      memcpy
#define wasm_rt_unreachable abort
#define WASM_RT_NO_RETURN
#endif

/* Bounds of linear memory: guard pages, never explicit checks. */
#define WASM_RT_MEMCHECK_SIGNAL_HANDLER         1
#define WASM_RT_SIGNAL_RECOVERY_SUPPORTED       1
#define WASM_RT_SKIP_SIGNAL_RECOVERY            0
#define WASM_RT_MERGED_OOB_AND_EXHAUSTION_TRAPS 0

/* Stack exhaustion: a per-thread counter of guest call depth. The host sets
 * it to WASM_RT_MAX_CALL_STACK_DEPTH - budget before entering the guest. */
#define WASM_RT_USE_STACK_DEPTH_COUNT 1
#define WASM_RT_MAX_CALL_STACK_DEPTH  0x7fffffffu
extern _Thread_local uint32_t wasm_rt_call_stack_depth;

typedef enum {
    WASM_RT_TRAP_NONE,
    WASM_RT_TRAP_OOB,
    WASM_RT_TRAP_INT_OVERFLOW,
    WASM_RT_TRAP_DIV_BY_ZERO,
    WASM_RT_TRAP_INVALID_CONVERSION,
    WASM_RT_TRAP_UNREACHABLE,
    WASM_RT_TRAP_CALL_INDIRECT,
    WASM_RT_TRAP_UNCAUGHT_EXCEPTION,
    WASM_RT_TRAP_EXHAUSTION,
} wasm_rt_trap_t;

typedef enum {
    WASM_RT_I32,
    WASM_RT_I64,
    WASM_RT_F32,
    WASM_RT_F64,
    WASM_RT_FUNCREF,
    WASM_RT_EXTERNREF,
} wasm_rt_type_t;

typedef void (*wasm_rt_function_ptr_t)(void);

/* A table element: the function, its registered type, its instance. */
typedef struct {
    uint32_t func_type;
    wasm_rt_function_ptr_t func;
    void *module_instance;
} wasm_rt_funcref_t;
static const wasm_rt_funcref_t wasm_rt_funcref_null_value = {0, NULL, NULL};

typedef void *wasm_rt_externref_t;
static const wasm_rt_externref_t wasm_rt_externref_null_value = NULL;

/* Linear memory: `size` bytes at `data` are readable and writable; the rest
 * of the reservation faults. max_pages is UINT32_MAX when unbounded. */
typedef struct {
    uint8_t *data;
    uint32_t pages, max_pages;
    uint32_t size;
} wasm_rt_memory_t;

typedef struct {
    wasm_rt_funcref_t *data;
    uint32_t max_size;
    uint32_t size;
} wasm_rt_funcref_table_t;

typedef struct {
    wasm_rt_externref_t *data;
    uint32_t max_size;
    uint32_t size;
} wasm_rt_externref_table_t;

/* The runtime services, provided by the host. */
struct realm_wasm_rt_host {
    uint32_t abi;
    WASM_RT_NO_RETURN void (*trap)(wasm_rt_trap_t);
    uint32_t (*register_func_type)(uint32_t n_params, uint32_t n_results,
                                   const wasm_rt_type_t *types);
    void (*allocate_memory)(wasm_rt_memory_t *, uint32_t initial, uint32_t max);
    uint32_t (*grow_memory)(wasm_rt_memory_t *, uint32_t delta);
    void (*free_memory)(wasm_rt_memory_t *);
    void (*allocate_funcref_table)(wasm_rt_funcref_table_t *, uint32_t n, uint32_t max);
    void (*free_funcref_table)(wasm_rt_funcref_table_t *);
    uint32_t (*grow_funcref_table)(wasm_rt_funcref_table_t *, uint32_t delta,
                                   wasm_rt_funcref_t init);
    void (*allocate_externref_table)(wasm_rt_externref_table_t *, uint32_t n, uint32_t max);
    void (*free_externref_table)(wasm_rt_externref_table_t *);
    uint32_t (*grow_externref_table)(wasm_rt_externref_table_t *, uint32_t delta,
                                     wasm_rt_externref_t init);
    /* Host functions of the `realm` import module, indexed by the ABI table
     * (REALM__HOST_FN_MAP, src/sandbox/host_internal.h); each takes the call
     * context first. */
    wasm_rt_function_ptr_t host_fn[64];
};

/* The interface wasm2c's output calls (implemented in the guest object's glue,
 * forwarding to struct realm_wasm_rt_host). */
void wasm_rt_init(void);
bool wasm_rt_is_initialized(void);
void wasm_rt_free(void);
WASM_RT_NO_RETURN void wasm_rt_trap(wasm_rt_trap_t);
const char *wasm_rt_strerror(wasm_rt_trap_t trap);
uint32_t wasm_rt_register_func_type(uint32_t params, uint32_t results, ...);
void wasm_rt_allocate_memory(wasm_rt_memory_t *, uint32_t initial_pages, uint32_t max_pages);
uint32_t wasm_rt_grow_memory(wasm_rt_memory_t *, uint32_t pages);
void wasm_rt_free_memory(wasm_rt_memory_t *);
void wasm_rt_allocate_funcref_table(wasm_rt_funcref_table_t *, uint32_t elements,
                                    uint32_t max_elements);
void wasm_rt_free_funcref_table(wasm_rt_funcref_table_t *);
void wasm_rt_allocate_externref_table(wasm_rt_externref_table_t *, uint32_t elements,
                                      uint32_t max_elements);
void wasm_rt_free_externref_table(wasm_rt_externref_table_t *);
uint32_t wasm_rt_grow_funcref_table(wasm_rt_funcref_table_t *, uint32_t delta,
                                    wasm_rt_funcref_t init);
uint32_t wasm_rt_grow_externref_table(wasm_rt_externref_table_t *, uint32_t delta,
                                      wasm_rt_externref_t init);

#define WASM_RT_UNWIND_TARGET jmp_buf
#define WASM_RT_SETJMP(buf)   sigsetjmp(buf, 1)
#define wasm_rt_try(target)   WASM_RT_SETJMP(target)

#endif /* WASM_RT_H_ */
