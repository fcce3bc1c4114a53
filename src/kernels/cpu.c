/*
 * CPU feature detection and the choice of kernel table (realm/kernels.h).
 *
 * An instruction set is usable only if the CPU implements it (cpuid) and the
 * OS saves its register state on context switches (XCR0, read with xgetbv
 * once cpuid reports OSXSAVE): YMM state for AVX2, and opmask plus the upper
 * ZMM halves plus ZMM16-31 for AVX-512. A hypervisor or kernel may disable
 * the latter even on a CPU that has AVX-512.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <strings.h>

#include "kernels_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* cpuid leaf 1, ecx */
#define CPUID1_FMA     (1u << 12)
#define CPUID1_OSXSAVE (1u << 27)
#define CPUID1_AVX     (1u << 28)
#define CPUID1_F16C    (1u << 29)
/* cpuid leaf 7 subleaf 0, ebx / ecx */
#define CPUID7_AVX2        (1u << 5)
#define CPUID7_AVX512F     (1u << 16)
#define CPUID7_AVX512DQ    (1u << 17)
#define CPUID7_AVX512BW    (1u << 30)
#define CPUID7_AVX512VL    (1u << 31)
#define CPUID7C_AVX512VNNI (1u << 11)
/* XCR0 state components */
#define XCR0_SSE       (1u << 1)
#define XCR0_YMM       (1u << 2)
#define XCR0_OPMASK    (1u << 5)
#define XCR0_ZMM_HI256 (1u << 6)
#define XCR0_HI16_ZMM  (1u << 7)

static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

/* The best ISA this CPU and OS can run. */
static realm_isa detect_isa(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return REALM_ISA_SCALAR;
    const unsigned need1 = CPUID1_FMA | CPUID1_OSXSAVE | CPUID1_AVX | CPUID1_F16C;
    if ((c & need1) != need1)
        return REALM_ISA_SCALAR;
    const uint64_t xcr0 = read_xcr0();
    if ((xcr0 & (XCR0_SSE | XCR0_YMM)) != (XCR0_SSE | XCR0_YMM))
        return REALM_ISA_SCALAR;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & CPUID7_AVX2))
        return REALM_ISA_SCALAR;

    const unsigned need7 = CPUID7_AVX512F | CPUID7_AVX512DQ | CPUID7_AVX512BW | CPUID7_AVX512VL;
    const uint64_t zmm_state = XCR0_OPMASK | XCR0_ZMM_HI256 | XCR0_HI16_ZMM;
    if ((b & need7) == need7 && (c & CPUID7C_AVX512VNNI) && (xcr0 & zmm_state) == zmm_state)
        return REALM_ISA_AVX512;
    return REALM_ISA_AVX2;
}
#else
static realm_isa detect_isa(void)
{
    return REALM_ISA_SCALAR;
}
#endif

/* Detected once; -1 until then. Racing first calls compute the same value. */
static _Atomic int cpu_isa = -1;

static realm_isa cpu_best_isa(void)
{
    int isa = atomic_load_explicit(&cpu_isa, memory_order_relaxed);
    if (isa < 0) {
        isa = (int)detect_isa();
        atomic_store_explicit(&cpu_isa, isa, memory_order_relaxed);
    }
    return (realm_isa)isa;
}

static const char *const isa_names[REALM_ISA_COUNT] = {
    [REALM_ISA_SCALAR] = "scalar",
    [REALM_ISA_AVX2] = "avx2",
    [REALM_ISA_AVX512] = "avx512",
};

const char *realm_isa_name(realm_isa isa)
{
    if ((unsigned)isa >= REALM_ISA_COUNT)
        return "unknown";
    return isa_names[isa];
}

bool realm_cpu_supports(realm_isa isa)
{
    if ((unsigned)isa >= REALM_ISA_COUNT)
        return false;
    /* Each ISA's requirements include those of the ones below it. */
    return isa <= cpu_best_isa();
}

realm_isa realm__isa_select(const char *cap)
{
    realm_isa isa = cpu_best_isa();
    if (cap == NULL || cap[0] == '\0')
        return isa;
    for (int i = 0; i < REALM_ISA_COUNT; i++) {
        if (strcasecmp(cap, isa_names[i]) == 0)
            return (realm_isa)i < isa ? (realm_isa)i : isa;
    }
    return isa; /* unknown names cap nothing */
}

const realm_kernels *realm_kernels_best(void)
{
    return realm_kernels_get(realm__isa_select(getenv("REALM_ISA")));
}
