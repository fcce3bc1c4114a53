/*
 * The host function table, built from REALM__HOST_FN_MAP (host_internal.h):
 * the one list that import checking (realm_module_check), the guests' glue
 * and the calls themselves all come from. A function whose signature
 * disagrees with its parameter count in the list does not compile.
 */
#include "host_internal.h"

typedef uint32_t (*fn_1)(void *, uint32_t);
typedef uint32_t (*fn_2)(void *, uint32_t, uint32_t);
typedef uint32_t (*fn_3)(void *, uint32_t, uint32_t, uint32_t);
typedef uint32_t (*fn_4)(void *, uint32_t, uint32_t, uint32_t, uint32_t);
typedef uint32_t (*fn_5)(void *, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t);
typedef uint32_t (*fn_6)(void *, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t);
typedef uint32_t (*fn_7)(void *, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t,
                         uint32_t);

_Static_assert(REALM__HOST_FN_COUNT <= 64, "struct realm_wasm_rt_host holds 64 host functions");

/* The signature check: each function assigned to a pointer of the type its
 * parameter count gives (a mismatch is an error, not a warning). */
#pragma GCC diagnostic error "-Wincompatible-pointer-types"
#define XX(i, name, n)                                                                             \
    __attribute__((unused)) static const fn_##n check_##name = realm__host_##name;
REALM__HOST_FN_MAP(XX)
#undef XX

const realm__host_fn realm__host_fns[REALM__HOST_FN_COUNT] = {
#define XX(i, name, n) [i] = {#name, n, (wasm_rt_function_ptr_t)realm__host_##name},
    REALM__HOST_FN_MAP(XX)
#undef XX
};
