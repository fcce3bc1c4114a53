/*
 * AVX2 + FMA + F16C multi-vector dot products (matmul_internal.h), from
 * dot_multi_simd.h; nothing here runs unless cpu.c found those features.
 * All eight tokens in one pass: their float accumulators live in L1 (one
 * load and store per token and block), but each block is decoded once;
 * bench_matmul measured 5 tokens as one pass clearly faster than 3 + 2
 * (MNR 4), and 8 as one pass no slower than 4 + 4.
 */
#define FN(name) dot_multi_##name##_avx2
#define MNR      8

#include "dot_multi_simd.h"

MULTI_ENTRY(q4_K)
MULTI_ENTRY(q6_K)
MULTI_ENTRY(q8_0)
MULTI_ENTRY(q4_0)

const realm__dot_multi realm__dot_multi_avx2[REALM_TYPE_COUNT] = {
    [REALM_TYPE_Q4_0] = {.dot = FN(q4_0)},
    [REALM_TYPE_Q8_0] = {.dot = FN(q8_0)},
    [REALM_TYPE_Q4_K] = {.prep = q4_K_prep, .dot = FN(q4_K)},
    [REALM_TYPE_Q6_K] = {.prep = q6_K_prep, .dot = FN(q6_K)},
};
