/*
 * realm/quant.h — GGUF tensor types: ids, block layouts, and the scalar
 * reference conversions between f32 rows and every type.
 *
 * Type ids are GGML's, so they can be read straight from a GGUF tensor info.
 * Every id GGML ever assigned has a traits entry (name, block size, bytes per
 * block), so a file with any known type can be parsed and sized; `supported`
 * says whether Realm can compute with it.
 *
 *     float row[4096];
 *     uint8_t q[realm_row_size(REALM_TYPE_Q4_K, 4096)];
 *     realm_quantize_row(REALM_TYPE_Q4_K, row, q, 4096);
 *     realm_dequantize_row(REALM_TYPE_Q4_K, q, row, 4096);
 *
 * The block structs below are bit-compatible with llama.cpp/ggml files: they
 * are the on-disk format. Half-precision fields are IEEE binary16 stored as
 * uint16_t, little-endian like every multi-byte field in GGUF.
 *
 * Thread safety: every function here is pure and may be called from any thread.
 */
#ifndef REALM_QUANT_H
#define REALM_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

/* GGML type ids (append-only; gaps are ids GGML retired). */
typedef enum realm_type {
    REALM_TYPE_F32 = 0,
    REALM_TYPE_F16 = 1,
    REALM_TYPE_Q4_0 = 2,
    REALM_TYPE_Q4_1 = 3,
    REALM_TYPE_Q5_0 = 6,
    REALM_TYPE_Q5_1 = 7,
    REALM_TYPE_Q8_0 = 8,
    REALM_TYPE_Q8_1 = 9,
    REALM_TYPE_Q2_K = 10,
    REALM_TYPE_Q3_K = 11,
    REALM_TYPE_Q4_K = 12,
    REALM_TYPE_Q5_K = 13,
    REALM_TYPE_Q6_K = 14,
    REALM_TYPE_Q8_K = 15,
    REALM_TYPE_IQ2_XXS = 16,
    REALM_TYPE_IQ2_XS = 17,
    REALM_TYPE_IQ3_XXS = 18,
    REALM_TYPE_IQ1_S = 19,
    REALM_TYPE_IQ4_NL = 20,
    REALM_TYPE_IQ3_S = 21,
    REALM_TYPE_IQ2_S = 22,
    REALM_TYPE_IQ4_XS = 23,
    REALM_TYPE_I8 = 24,
    REALM_TYPE_I16 = 25,
    REALM_TYPE_I32 = 26,
    REALM_TYPE_I64 = 27,
    REALM_TYPE_F64 = 28,
    REALM_TYPE_IQ1_M = 29,
    REALM_TYPE_BF16 = 30,
    REALM_TYPE_TQ1_0 = 34,
    REALM_TYPE_TQ2_0 = 35,
    REALM_TYPE_MXFP4 = 39,
    REALM_TYPE_COUNT = 40
} realm_type;

typedef struct realm_type_traits {
    const char *name;        /* "Q4_K" */
    int64_t block_size;      /* elements per block (1 for plain types) */
    size_t type_size;        /* bytes per block */
    bool supported;          /* Realm can dequantize, quantize and dot it */
    realm_type vec_dot_type; /* activation type its dot product takes */
} realm_type_traits;

/* Traits of type id `t`, or NULL if GGML never assigned that id. */
const realm_type_traits *realm_type_get(uint32_t t);
/* "Q4_K"; "unknown" for an id with no traits. */
const char *realm_type_name(uint32_t t);
/* Type for a case-insensitive name ("q4_k", "F16"); REALM_ERR_NOTFOUND if none. */
int realm_type_from_name(const char *name, realm_type *out);
/* REALM_OK if `t` is a known and supported type, else an error naming it. */
int realm_type_check_supported(uint32_t t);
/* Bytes of a row of n elements; n must be a multiple of the block size. */
size_t realm_row_size(realm_type t, int64_t n);

/* ---- half precision ---------------------------------------------------- */

static inline float realm_fp16_to_fp32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        uint32_t e = 113;
        while (!(mant & 0x400)) {
            mant <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((mant & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even, like F16C's vcvtps2ph with rounding mode 0. */
uint16_t realm_fp32_to_fp16(float f);

static inline float realm_bf16_to_fp32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even; NaN stays NaN (quiet). */
uint16_t realm_fp32_to_bf16(float f);

/* ---- block layouts (on-disk format) ------------------------------------ */

#define REALM_QK4_0        32
#define REALM_QK4_1        32
#define REALM_QK5_0        32
#define REALM_QK5_1        32
#define REALM_QK8_0        32
#define REALM_QK8_1        32
#define REALM_QK4_NL       32
#define REALM_QK_K         256
#define REALM_K_SCALE_SIZE 12

/* Q4_0: x = d * (q - 8); q in 0..15. qs[j] holds element j (low nibble) and
 * element j + 16 (high nibble). */
typedef struct {
    uint16_t d;
    uint8_t qs[REALM_QK4_0 / 2];
} realm_block_q4_0;
_Static_assert(sizeof(realm_block_q4_0) == 18, "q4_0 block size");

/* Q4_1: x = d * q + m; nibble order as Q4_0. */
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qs[REALM_QK4_1 / 2];
} realm_block_q4_1;
_Static_assert(sizeof(realm_block_q4_1) == 20, "q4_1 block size");

/* Q5_0: x = d * (q - 16); low 4 bits as Q4_0, bit 4 of element j is bit j of
 * the little-endian u32 qh. */
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[REALM_QK5_0 / 2];
} realm_block_q5_0;
_Static_assert(sizeof(realm_block_q5_0) == 22, "q5_0 block size");

/* Q5_1: x = d * q + m; bits as Q5_0. */
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[REALM_QK5_1 / 2];
} realm_block_q5_1;
_Static_assert(sizeof(realm_block_q5_1) == 24, "q5_1 block size");

/* Q8_0: x = d * q. Also the activation type of the 32-element types. */
typedef struct {
    uint16_t d;
    int8_t qs[REALM_QK8_0];
} realm_block_q8_0;
_Static_assert(sizeof(realm_block_q8_0) == 34, "q8_0 block size");

/* Q8_1: x = d * q; s = d * sum(q). */
typedef struct {
    uint16_t d;
    uint16_t s;
    int8_t qs[REALM_QK8_1];
} realm_block_q8_1;
_Static_assert(sizeof(realm_block_q8_1) == 36, "q8_1 block size");

/* Q2_K: 16 sub-blocks of 16; scales[i] = scale (low 4 bits) | min (high 4);
 * x = d * scale * q - dmin * min; q 2 bits. */
typedef struct {
    uint8_t scales[REALM_QK_K / 16];
    uint8_t qs[REALM_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
} realm_block_q2_K;
_Static_assert(sizeof(realm_block_q2_K) == 84, "q2_K block size");

/* Q3_K: 16 sub-blocks of 16 with 6-bit signed scales (stored +32, packed in
 * 12 bytes); q = 2 low bits from qs, high bit from hmask (bit clear means
 * subtract 4); x = d * (scale - 32) * q. */
typedef struct {
    uint8_t hmask[REALM_QK_K / 8];
    uint8_t qs[REALM_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} realm_block_q3_K;
_Static_assert(sizeof(realm_block_q3_K) == 110, "q3_K block size");

/* Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes;
 * x = d * scale * q - dmin * min. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[REALM_K_SCALE_SIZE];
    uint8_t qs[REALM_QK_K / 2];
} realm_block_q4_K;
_Static_assert(sizeof(realm_block_q4_K) == 144, "q4_K block size");

/* Q5_K: as Q4_K with a fifth bit per element in qh. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[REALM_K_SCALE_SIZE];
    uint8_t qh[REALM_QK_K / 8];
    uint8_t qs[REALM_QK_K / 2];
} realm_block_q5_K;
_Static_assert(sizeof(realm_block_q5_K) == 176, "q5_K block size");

/* Q6_K: 16 sub-blocks of 16 with int8 scales; q = 4 low bits (ql) + 2 high
 * bits (qh) - 32; x = d * scale * q. */
typedef struct {
    uint8_t ql[REALM_QK_K / 2];
    uint8_t qh[REALM_QK_K / 4];
    int8_t scales[REALM_QK_K / 16];
    uint16_t d;
} realm_block_q6_K;
_Static_assert(sizeof(realm_block_q6_K) == 210, "q6_K block size");

/* Q8_K: activation type of the K-quants; float scale, bsums[i] = sum of the
 * 16 quants of group i. */
typedef struct {
    float d;
    int8_t qs[REALM_QK_K];
    int16_t bsums[REALM_QK_K / 16];
} realm_block_q8_K;
_Static_assert(sizeof(realm_block_q8_K) == 292, "q8_K block size");

/* IQ4_NL: x = d * kvalues[q] with the non-linear 16-entry table below. */
typedef struct {
    uint16_t d;
    uint8_t qs[REALM_QK4_NL / 2];
} realm_block_iq4_nl;
_Static_assert(sizeof(realm_block_iq4_nl) == 18, "iq4_nl block size");

/* IQ4_XS: 8 sub-blocks of 32 with 6-bit scales (low 4 bits in scales_l,
 * high 2 bits in scales_h), x = d * (scale - 32) * kvalues[q]. */
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[REALM_QK_K / 64];
    uint8_t qs[REALM_QK_K / 2];
} realm_block_iq4_xs;
_Static_assert(sizeof(realm_block_iq4_xs) == 136, "iq4_xs block size");

/* The IQ4_NL / IQ4_XS code book. */
extern const int8_t realm_iq4nl_values[16];

/* ---- scalar reference conversions -------------------------------------- */

/*
 * Dequantize n elements of type t at src into dst. n must be a multiple of
 * the type's block size. Bit-exact with ggml's to_float for every supported
 * type. Returns REALM_OK, or an error for an unsupported type or bad n.
 */
int realm_dequantize_row(realm_type t, const void *src, float *dst, int64_t n);

/*
 * Quantize n floats into dst (realm_row_size(t, n) bytes) with the reference
 * quantizer: for the K-quants and IQ4 types the same kind of scale search
 * llama.cpp's reference quantizers do. Returns REALM_OK or an error.
 */
int realm_quantize_row(realm_type t, const float *src, void *dst, int64_t n);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
