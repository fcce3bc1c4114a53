/*
 * Internal interface of the dot-product kernels (realm/kernels.h).
 *
 * Every kernel exists as a scalar reference (`_ref`, dot_ref.c), which is the
 * specification, and as SIMD variants with the same signature (`_avx2`,
 * dot_avx2.c; `_avx512`, dot_avx512.c). kernels.c gathers them into one table
 * per instruction set. A SIMD file is compiled for its instruction set only,
 * so nothing in it may run before the CPU check in cpu.c picked its table.
 *
 * Contract shared by all vec_dot kernels: n is a multiple of the weight
 * type's block size (any n for F32/F16/BF16); x and y may be unaligned
 * (aligned only to their block structs' natural alignment, or to 4/2 bytes
 * for F32/F16/BF16). The activation row y is what from_float produced: in
 * particular Q8_0 and Q8_K codes lie in [-127, 127], which the SIMD kernels
 * rely on (sign tricks); the reference accepts any codes. Integer partial
 * sums are exact; results differ between ISAs only by float rounding order.
 */
#ifndef REALM_KERNELS_INTERNAL_H
#define REALM_KERNELS_INTERNAL_H

#include "realm/kernels.h"

/* Fully unroll the next loop, so that loop indices used as shift counts,
 * shuffle selectors or array indices of vector registers become constants. */
#define REALM__PRAGMA(x) _Pragma(#x)
#define REALM__UNROLL(n) REALM__PRAGMA(GCC unroll n)

/* One prototype per (weight type, ISA). */
#define REALM__DOT_DECL(name, isa)                                                                 \
    float realm__vec_dot_##name##_##isa(int64_t n, const void *x, const void *y);
#define REALM__DOT_TYPES(XX, isa)                                                                  \
    XX(f32, isa)                                                                                   \
    XX(f16, isa)                                                                                   \
    XX(bf16, isa)                                                                                  \
    XX(q4_0, isa)                                                                                  \
    XX(q4_1, isa)                                                                                  \
    XX(q5_0, isa)                                                                                  \
    XX(q5_1, isa)                                                                                  \
    XX(q8_0, isa)                                                                                  \
    XX(iq4_nl, isa)                                                                                \
    XX(q2_K, isa)                                                                                  \
    XX(q3_K, isa)                                                                                  \
    XX(q4_K, isa)                                                                                  \
    XX(q5_K, isa)                                                                                  \
    XX(q6_K, isa)                                                                                  \
    XX(iq4_xs, isa)                                                                                \
    XX(q8_K, isa)

REALM__DOT_TYPES(REALM__DOT_DECL, ref)
REALM__DOT_TYPES(REALM__DOT_DECL, avx2)
REALM__DOT_TYPES(REALM__DOT_DECL, avx512)

/* Activation converters: n floats -> one row of the type. */
void realm__from_float_f32_ref(const float *x, void *y, int64_t n);
void realm__from_float_f16_ref(const float *x, void *y, int64_t n);
void realm__from_float_bf16_ref(const float *x, void *y, int64_t n);
void realm__from_float_q8_0_ref(const float *x, void *y, int64_t n);
void realm__from_float_q8_K_ref(const float *x, void *y, int64_t n);

void realm__from_float_f16_avx2(const float *x, void *y, int64_t n);
void realm__from_float_bf16_avx2(const float *x, void *y, int64_t n);
void realm__from_float_q8_0_avx2(const float *x, void *y, int64_t n);
void realm__from_float_q8_K_avx2(const float *x, void *y, int64_t n);

void realm__from_float_f16_avx512(const float *x, void *y, int64_t n);
void realm__from_float_bf16_avx512(const float *x, void *y, int64_t n);
void realm__from_float_q8_0_avx512(const float *x, void *y, int64_t n);
void realm__from_float_q8_K_avx512(const float *x, void *y, int64_t n);

/*
 * The ISA realm_kernels_best picks on this CPU when the cap is `cap`, the
 * value of REALM_ISA (NULL or "" for none; "scalar", "avx2", "avx512",
 * case-insensitive; anything else is ignored). Split out so tests can check
 * the capping without touching the environment.
 */
realm_isa realm__isa_select(const char *cap);

#endif
