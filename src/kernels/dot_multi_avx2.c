/*
 * AVX2 + FMA + F16C multi-vector dot products (matmul_internal.h), from
 * dot_multi_simd.h; nothing here runs unless cpu.c found those features.
 * Four tokens per pass: with the weight codes and scales of a block part,
 * their integer and float accumulators fill the 16 ymm registers.
 */
#define FN(name) dot_multi_##name##_avx2
#define MNR      4

#include "dot_multi_simd.h"

MULTI_ENTRY(q4_K)
MULTI_ENTRY(q6_K)
MULTI_ENTRY(q8_0)
MULTI_ENTRY(q4_0)

const realm__dot_multi_fn realm__dot_multi_avx2[REALM_TYPE_COUNT] = {
    [REALM_TYPE_Q4_0] = FN(q4_0),
    [REALM_TYPE_Q8_0] = FN(q8_0),
    [REALM_TYPE_Q4_K] = FN(q4_K),
    [REALM_TYPE_Q6_K] = FN(q6_K),
};
