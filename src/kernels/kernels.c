/*
 * Kernel tables per instruction set and the row-parallel matrix-vector
 * product (realm/kernels.h).
 */
#include "core/error_internal.h"
#include "kernels_internal.h"
#include "matmul_internal.h"

/* clang-format off */

/* Every weight type Realm computes with: the vec_dot row of a table. */
#define DOT_ENTRIES(isa)                                                       \
    [REALM_TYPE_F32]    = realm__vec_dot_f32_##isa,                            \
    [REALM_TYPE_F16]    = realm__vec_dot_f16_##isa,                            \
    [REALM_TYPE_BF16]   = realm__vec_dot_bf16_##isa,                           \
    [REALM_TYPE_Q4_0]   = realm__vec_dot_q4_0_##isa,                           \
    [REALM_TYPE_Q4_1]   = realm__vec_dot_q4_1_##isa,                           \
    [REALM_TYPE_Q5_0]   = realm__vec_dot_q5_0_##isa,                           \
    [REALM_TYPE_Q5_1]   = realm__vec_dot_q5_1_##isa,                           \
    [REALM_TYPE_Q8_0]   = realm__vec_dot_q8_0_##isa,                           \
    [REALM_TYPE_IQ4_NL] = realm__vec_dot_iq4_nl_##isa,                         \
    [REALM_TYPE_Q2_K]   = realm__vec_dot_q2_K_##isa,                           \
    [REALM_TYPE_Q3_K]   = realm__vec_dot_q3_K_##isa,                           \
    [REALM_TYPE_Q4_K]   = realm__vec_dot_q4_K_##isa,                           \
    [REALM_TYPE_Q5_K]   = realm__vec_dot_q5_K_##isa,                           \
    [REALM_TYPE_Q6_K]   = realm__vec_dot_q6_K_##isa,                           \
    [REALM_TYPE_IQ4_XS] = realm__vec_dot_iq4_xs_##isa,                         \
    [REALM_TYPE_Q8_K]   = realm__vec_dot_q8_K_##isa,

static const realm_kernels tables[REALM_ISA_COUNT] = {
    [REALM_ISA_SCALAR] = {
        .isa = REALM_ISA_SCALAR,
        .vec_dot = {DOT_ENTRIES(ref)},
        .from_float = {
            [REALM_TYPE_F32]  = realm__from_float_f32_ref,
            [REALM_TYPE_F16]  = realm__from_float_f16_ref,
            [REALM_TYPE_BF16] = realm__from_float_bf16_ref,
            [REALM_TYPE_Q8_0] = realm__from_float_q8_0_ref,
            [REALM_TYPE_Q8_K] = realm__from_float_q8_K_ref,
        },
    },
    [REALM_ISA_AVX2] = {
        .isa = REALM_ISA_AVX2,
        .vec_dot = {DOT_ENTRIES(avx2)},
        .from_float = {
            [REALM_TYPE_F32]  = realm__from_float_f32_ref, /* a copy */
            [REALM_TYPE_F16]  = realm__from_float_f16_avx2,
            [REALM_TYPE_BF16] = realm__from_float_bf16_avx2,
            [REALM_TYPE_Q8_0] = realm__from_float_q8_0_avx2,
            [REALM_TYPE_Q8_K] = realm__from_float_q8_K_avx2,
        },
    },
    [REALM_ISA_AVX512] = {
        .isa = REALM_ISA_AVX512,
        .vec_dot = {DOT_ENTRIES(avx512)},
        .from_float = {
            [REALM_TYPE_F32]  = realm__from_float_f32_ref,
            [REALM_TYPE_F16]  = realm__from_float_f16_avx512,
            [REALM_TYPE_BF16] = realm__from_float_bf16_avx512,
            [REALM_TYPE_Q8_0] = realm__from_float_q8_0_avx512,
            [REALM_TYPE_Q8_K] = realm__from_float_q8_K_avx512,
        },
    },
};

/* clang-format on */

const realm_kernels *realm_kernels_get(realm_isa isa)
{
    if (!realm_cpu_supports(isa))
        return NULL;
    return &tables[isa];
}

/*
 * How far ahead of the row being computed realm_matvec asks for W. Measured
 * on a 1 GiB matrix (DRAM, 4 KiB pages) with one thread: without it the
 * quantized kernels reach 55-65% of the read bandwidth, as the hardware
 * prefetcher restarts at every page; prefetching 4 KiB ahead brings them to
 * 80-90%. 8 and 16 KiB gained nothing, and the T0 and T1 hints were within
 * the noise of each other.
 */
#define PREFETCH_DISTANCE 4096
#define CACHE_LINE        64

/*
 * The rows [r0, r1) of W times y, prefetching PREFETCH_DISTANCE bytes ahead
 * of the row being computed within the slab [r0, r1) (never past it).
 */
void realm__matvec_rows(const realm_kernels *k, realm_type t, const void *W, int64_t cols,
                        int64_t r0, int64_t r1, const void *y, float *out, bool accumulate)
{
    const realm_vec_dot_fn dot = k->vec_dot[t];
    REALM_ASSERT(dot != NULL); /* callers check realm_type_check_supported */
    const size_t row_size = realm_row_size(t, cols);
    const uint8_t *const slab = (const uint8_t *)W + (size_t)r0 * row_size;
    const size_t slab_size = (size_t)(r1 - r0) * row_size;
    size_t pf = 0; /* offset in the slab of the first line not yet prefetched */
    for (int64_t r = r0; r < r1; r++) {
        const size_t off = (size_t)(r - r0) * row_size;
        size_t pf_end = off + row_size + PREFETCH_DISTANCE;
        if (pf_end > slab_size)
            pf_end = slab_size;
        for (; pf < pf_end; pf += CACHE_LINE)
            __builtin_prefetch(slab + pf, 0, 3);
        const float s = dot(cols, slab + off, y);
        out[r] = accumulate ? out[r] + s : s;
    }
}

/*
 * Rows are split into nth nearly equal contiguous ranges, thread ith taking
 * [rows * ith / nth, rows * (ith + 1) / nth): every row exactly once, no
 * locks, and each thread streams one contiguous slab of W.
 */
void realm_matvec(const realm_kernels *k, realm_type t, const void *W, int64_t rows, int64_t cols,
                  const void *y, float *out, int ith, int nth)
{
    realm__matvec_rows(k, t, W, cols, rows * ith / nth, rows * (ith + 1) / nth, y, out, false);
}
