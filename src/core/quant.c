/* Tensor type traits, names and half-precision conversions (realm/quant.h). */
#include <ctype.h>
#include <string.h>

#include "error_internal.h"
#include "realm/quant.h"

#define PLAIN(n, size, sup, dot)                                                                   \
    {                                                                                              \
        n, 1, size, sup, dot                                                                       \
    }
#define BLOCK(n, bs, size, sup, dot)                                                               \
    {                                                                                              \
        n, bs, size, sup, dot                                                                      \
    }

static const realm_type_traits traits[REALM_TYPE_COUNT] = {
    [REALM_TYPE_F32] = PLAIN("F32", 4, true, REALM_TYPE_F32),
    [REALM_TYPE_F16] = PLAIN("F16", 2, true, REALM_TYPE_F16),
    [REALM_TYPE_Q4_0] = BLOCK("Q4_0", 32, 18, true, REALM_TYPE_Q8_0),
    [REALM_TYPE_Q4_1] = BLOCK("Q4_1", 32, 20, true, REALM_TYPE_Q8_0),
    [REALM_TYPE_Q5_0] = BLOCK("Q5_0", 32, 22, true, REALM_TYPE_Q8_0),
    [REALM_TYPE_Q5_1] = BLOCK("Q5_1", 32, 24, true, REALM_TYPE_Q8_0),
    [REALM_TYPE_Q8_0] = BLOCK("Q8_0", 32, 34, true, REALM_TYPE_Q8_0),
    [REALM_TYPE_Q8_1] = BLOCK("Q8_1", 32, 36, false, REALM_TYPE_Q8_1),
    [REALM_TYPE_Q2_K] = BLOCK("Q2_K", 256, 84, true, REALM_TYPE_Q8_K),
    [REALM_TYPE_Q3_K] = BLOCK("Q3_K", 256, 110, true, REALM_TYPE_Q8_K),
    [REALM_TYPE_Q4_K] = BLOCK("Q4_K", 256, 144, true, REALM_TYPE_Q8_K),
    [REALM_TYPE_Q5_K] = BLOCK("Q5_K", 256, 176, true, REALM_TYPE_Q8_K),
    [REALM_TYPE_Q6_K] = BLOCK("Q6_K", 256, 210, true, REALM_TYPE_Q8_K),
    [REALM_TYPE_Q8_K] = BLOCK("Q8_K", 256, 292, true, REALM_TYPE_Q8_K),
    [REALM_TYPE_IQ2_XXS] = BLOCK("IQ2_XXS", 256, 66, false, REALM_TYPE_Q8_K),
    [REALM_TYPE_IQ2_XS] = BLOCK("IQ2_XS", 256, 74, false, REALM_TYPE_Q8_K),
    [REALM_TYPE_IQ3_XXS] = BLOCK("IQ3_XXS", 256, 98, false, REALM_TYPE_Q8_K),
    [REALM_TYPE_IQ1_S] = BLOCK("IQ1_S", 256, 50, false, REALM_TYPE_Q8_K),
    [REALM_TYPE_IQ4_NL] = BLOCK("IQ4_NL", 32, 18, true, REALM_TYPE_Q8_0),
    [REALM_TYPE_IQ3_S] = BLOCK("IQ3_S", 256, 110, false, REALM_TYPE_Q8_K),
    [REALM_TYPE_IQ2_S] = BLOCK("IQ2_S", 256, 82, false, REALM_TYPE_Q8_K),
    [REALM_TYPE_IQ4_XS] = BLOCK("IQ4_XS", 256, 136, true, REALM_TYPE_Q8_K),
    [REALM_TYPE_I8] = PLAIN("I8", 1, false, REALM_TYPE_I8),
    [REALM_TYPE_I16] = PLAIN("I16", 2, false, REALM_TYPE_I16),
    [REALM_TYPE_I32] = PLAIN("I32", 4, false, REALM_TYPE_I32),
    [REALM_TYPE_I64] = PLAIN("I64", 8, false, REALM_TYPE_I64),
    [REALM_TYPE_F64] = PLAIN("F64", 8, false, REALM_TYPE_F64),
    [REALM_TYPE_IQ1_M] = BLOCK("IQ1_M", 256, 56, false, REALM_TYPE_Q8_K),
    [REALM_TYPE_BF16] = PLAIN("BF16", 2, true, REALM_TYPE_BF16),
    [REALM_TYPE_TQ1_0] = BLOCK("TQ1_0", 256, 54, false, REALM_TYPE_Q8_K),
    [REALM_TYPE_TQ2_0] = BLOCK("TQ2_0", 256, 66, false, REALM_TYPE_Q8_K),
    [REALM_TYPE_MXFP4] = BLOCK("MXFP4", 32, 17, false, REALM_TYPE_Q8_0),
};

const int8_t realm_iq4nl_values[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

const realm_type_traits *realm_type_get(uint32_t t)
{
    if (t >= REALM_TYPE_COUNT || traits[t].name == NULL)
        return NULL;
    return &traits[t];
}

const char *realm_type_name(uint32_t t)
{
    const realm_type_traits *tr = realm_type_get(t);
    return tr ? tr->name : "unknown";
}

int realm_type_from_name(const char *name, realm_type *out)
{
    for (uint32_t t = 0; t < REALM_TYPE_COUNT; t++) {
        const char *n = traits[t].name;
        if (n == NULL)
            continue;
        size_t i = 0;
        while (n[i] && name[i] && toupper((unsigned char)name[i]) == n[i])
            i++;
        if (n[i] == '\0' && name[i] == '\0') {
            *out = (realm_type)t;
            return REALM_OK;
        }
    }
    return realm__error(REALM_ERR_NOTFOUND, "unknown tensor type name '%s'", name);
}

int realm_type_check_supported(uint32_t t)
{
    const realm_type_traits *tr = realm_type_get(t);
    if (tr == NULL)
        return realm__error(REALM_ERR_UNSUPPORTED, "unknown tensor type id %u", t);
    if (!tr->supported)
        return realm__error(REALM_ERR_UNSUPPORTED, "tensor type %s (id %u) is not supported",
                            tr->name, t);
    return REALM_OK;
}

size_t realm_row_size(realm_type t, int64_t n)
{
    const realm_type_traits *tr = realm_type_get(t);
    if (tr == NULL || n < 0)
        return 0;
    return (size_t)(n / tr->block_size) * tr->type_size;
}

uint16_t realm_fp32_to_fp16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or NaN; keep NaN quiet and non-zero */
        return (uint16_t)(sign | 0x7c00 |
                          (absx > 0x7f800000u ? 0x200 | ((absx >> 13) & 0x3ff) : 0));
    if (absx >= 0x477ff000u) /* rounds to >= 65536: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) {   /* below the smallest normal half: subnormal or 0 */
        if (absx < 0x33000000u) /* < 2^-25: rounds to zero */
            return (uint16_t)sign;
        const uint32_t e = absx >> 23;
        const uint32_t mant = (absx & 0x7fffff) | 0x800000;
        const uint32_t shift = 126 - e; /* 14..24 */
        uint32_t h = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    /* normal: rebias exponent, round mantissa to 10 bits, carry may bump exp */
    uint32_t h = ((absx - 0x38000000u) >> 13);
    const uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

uint16_t realm_fp32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: force quiet */
        return (uint16_t)((x >> 16) | 64);
    return (uint16_t)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}
