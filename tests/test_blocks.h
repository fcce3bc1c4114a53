/*
 * Random quantized blocks for the kernel tests (test_kernels.c,
 * test_matmul.c): rows of random bytes cover every bit pattern of the codes;
 * patch_scales then gives every block sane scale fields, so sums stay finite.
 */
#ifndef REALM_TEST_BLOCKS_H
#define REALM_TEST_BLOCKS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "realm/quant.h"
#include "test_util.h"

/* A half-precision scale with magnitude in [1e-3, 0.1) and random sign. */
static uint16_t rand_half_scale(void)
{
    float v = 1e-3f + 0.099f * (test_rand_f32() * 0.5f + 0.5f);
    return realm_fp32_to_fp16(test_rand_u64() & 1 ? -v : v);
}

static void put_u16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

/* Overwrite the scale fields of every block with sane values. */
static void patch_scales(realm_type t, uint8_t *row, int64_t nb)
{
    const size_t bs = realm_type_get(t)->type_size;
    for (int64_t i = 0; i < nb; i++) {
        uint8_t *p = row + i * bs;
        switch (t) {
        case REALM_TYPE_Q4_0:
        case REALM_TYPE_Q5_0:
        case REALM_TYPE_Q8_0:
        case REALM_TYPE_IQ4_NL:
            put_u16(p + offsetof(realm_block_q4_0, d), rand_half_scale());
            break;
        case REALM_TYPE_Q4_1:
        case REALM_TYPE_Q5_1:
            put_u16(p + offsetof(realm_block_q4_1, d), rand_half_scale());
            put_u16(p + offsetof(realm_block_q4_1, m), rand_half_scale());
            break;
        case REALM_TYPE_Q2_K:
            put_u16(p + offsetof(realm_block_q2_K, d), rand_half_scale());
            put_u16(p + offsetof(realm_block_q2_K, dmin), rand_half_scale());
            break;
        case REALM_TYPE_Q3_K:
            put_u16(p + offsetof(realm_block_q3_K, d), rand_half_scale());
            break;
        case REALM_TYPE_Q4_K:
        case REALM_TYPE_Q5_K:
            put_u16(p + offsetof(realm_block_q4_K, d), rand_half_scale());
            put_u16(p + offsetof(realm_block_q4_K, dmin), rand_half_scale());
            break;
        case REALM_TYPE_Q6_K:
            put_u16(p + offsetof(realm_block_q6_K, d), rand_half_scale());
            break;
        case REALM_TYPE_IQ4_XS:
            put_u16(p + offsetof(realm_block_iq4_xs, d), rand_half_scale());
            break;
        case REALM_TYPE_Q8_K: {
            const float d = realm_fp16_to_fp32(rand_half_scale());
            memcpy(p + offsetof(realm_block_q8_K, d), &d, 4);
            break;
        }
        default:
            break;
        }
    }
}

#endif
