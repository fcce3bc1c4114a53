/*
 * AVX2 + FMA + F16C multi-vector dot products (matmul_internal.h), from
 * dot_multi_simd.h; nothing here runs unless cpu.c found those features.
 * Four tokens per pass: with the weight codes and scales of a block part,
 * their integer and float accumulators fill the 16 ymm registers.
 */
#define FN(name) dot_multi_##name##_avx2
#define TABLE    realm__dot_multi_avx2
#define MNR      4

#include "dot_multi_simd.h"
