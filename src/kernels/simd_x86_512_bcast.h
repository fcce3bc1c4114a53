/*
 * vpdpbusd and vpdpwssd with a broadcast memory operand, for the panel
 * kernels (matmul_avx512.c, repack_avx512.c), whose lanes are weight rows
 * and whose activations are the same 4 bytes in every lane.
 */
#ifndef REALM_SIMD_X86_512_BCAST_H
#define REALM_SIMD_X86_512_BCAST_H

#include <immintrin.h>
#include <stdint.h>

/* The 4 bytes at p, unaligned and of any type. */
typedef struct {
    int32_t v;
} __attribute__((packed, may_alias)) u32_any;

/*
 * acc + vpdpbusd(u, the 4 bytes at p in every lane), with the broadcast as
 * the instruction's memory operand ({1to16}): GCC 12 emits a separate
 * vpbroadcastd for the intrinsic, one more uop per instruction in the
 * micro-kernels' innermost loops.
 */
static inline __m512i dpbusd_bcast(__m512i acc, __m512i u, const void *p)
{
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(((const u32_any *)p)->v));
    return acc;
}

/* acc + vpdpwssd(a, the two int16 at p in every lane), likewise. */
static inline __m512i dpwssd_bcast(__m512i acc, __m512i a, const void *p)
{
    __asm__("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(a), "m"(((const u32_any *)p)->v));
    return acc;
}

#endif
