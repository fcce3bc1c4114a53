/*
 * The multi-vector dot products (matmul_internal.h) compiled for AVX-512
 * machines, from dot_multi_simd.h: the same AVX2 code, but with AVX-512VL's
 * 32 vector registers eight tokens fit one pass. Nothing here runs unless
 * cpu.c found AVX-512.
 */
#define FN(name) dot_multi_##name##_avx512
#define TABLE    realm__dot_multi_avx512
#define MNR      8

#include "dot_multi_simd.h"
