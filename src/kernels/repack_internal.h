/*
 * Internal interface of the packed weights (realm_repack_rows and
 * realm_matmul_packed_rows in realm/kernels.h): the layouts and the
 * per-ISA panel kernels. repack.c owns the packing, the loops and the
 * scalar reference; a SIMD file contributes a kernel per type.
 */
#ifndef REALM_REPACK_INTERNAL_H
#define REALM_REPACK_INTERNAL_H

#include "realm/kernels.h"

#define REALM__PANEL_ROWS 16 /* rows per panel: one per 32-bit lane of a zmm */
#define REALM__PANEL_NR   8  /* most tokens per kernel call */

/*
 * Q4_K, one super-block (256 columns) of a panel's 16 rows. qs[i] holds
 * dword i of each row's 128 code bytes, row r in bytes 4r..4r+3: dword i is
 * in the 32-byte chunk c = i / 8, whose low nibbles are columns
 * 64c + 4(i % 8) .. + 3 (sub-block 2c) and high nibbles the same 32
 * columns further (sub-block 2c + 1). Scales and mins (6 bits, decoded from
 * the block's 12 bytes) are sc[s][r], mn[s][r]; d and dmin stay F16.
 * A panel is its super-blocks in column order; panel p (rows 16p..16p+15)
 * starts at p * (cols / 256) blocks.
 */
typedef struct {
    uint8_t qs[32][64];
    uint8_t sc[8][16];
    uint8_t mn[8][16];
    uint16_t d[16];
    uint16_t dmin[16];
} realm__q4_K_x16;
_Static_assert(sizeof(realm__q4_K_x16) == 2368, "q4_K panel block: 37 cache lines");

/*
 * Q5_K: the Q4_K block (the same fields, in the same place) followed by
 * qh[j], dword j of each row's qh: bit s of byte l is the fifth bit of
 * element 32s + l, so sub-block s's dword i (i % 8 = j) takes bit s of
 * dword j's bytes.
 */
typedef struct {
    realm__q4_K_x16 k4;
    uint8_t qh[8][64];
} realm__q5_K_x16;
_Static_assert(sizeof(realm__q5_K_x16) == 2880, "q5_K panel block: 45 cache lines");

/*
 * Q6_K, one super-block of a panel's 16 rows. ql[i] and qh[i] hold dword i
 * of each row's ql (128 bytes) and qh (64 bytes), row r in bytes 4r..4r+3.
 * Element 128h + 32g + l (h < 2, g < 4, l < 32) of a row has its low 4 bits
 * in byte 64h + 32(g % 2) + l of ql (shifted by 4 (g / 2)) and its high 2
 * in byte 32h + l of qh (shifted by 2g), its scale in sc[8h + 2g + l / 16]
 * (int8, [sub-block][row]); codes are 0..63 for q + 32. Padded to whole
 * cache lines.
 */
typedef struct {
    uint8_t ql[32][64];
    uint8_t qh[16][64];
    int8_t sc[16][16];
    uint16_t d[16];
    uint8_t pad[32];
} realm__q6_K_x16;
_Static_assert(sizeof(realm__q6_K_x16) == 3392, "q6_K panel block: 53 cache lines");

/*
 * Q8_0, two blocks (64 columns) of a panel's 16 rows: qs[i] holds dword i
 * of each row's 64 codes plus 128 (as unsigned bytes, for vpdpbusd; the
 * offset comes back out as 128 times the activations' block sums), row r
 * in bytes 4r..4r+3, dword i in block i / 8; d[k][r] is block k's scale.
 * Columns a multiple of 64.
 */
typedef struct {
    uint8_t qs[16][64];
    uint16_t d[2][16];
} realm__q8_0_x16;
_Static_assert(sizeof(realm__q8_0_x16) == 1088, "q8_0 panel unit: 17 cache lines");

/*
 * Q4_0, two blocks (64 columns) of a panel's 16 rows: qs[4k + i] holds dword
 * i of block k's 16 code bytes per row (row r in bytes 4r..4r+3), whose low
 * nibbles are the block's elements 4i..4i+3 and high nibbles 16 + 4i..; the
 * codes 0..15 stand for q + 8, the offset taken out as 8 times the block
 * sums (as Q8_0's). d[k][r] is block k's scale. Columns a multiple of 64.
 */
typedef struct {
    uint8_t qs[8][64];
    uint16_t d[2][16];
} realm__q4_0_x16;
_Static_assert(sizeof(realm__q4_0_x16) == 576, "q4_0 panel unit: 9 cache lines");

/*
 * One call: rows 16p..16p+15 of a packed matrix (its blocks at panel, nb
 * of them) times tokens 0..nt-1 (1 <= nt <= REALM__PANEL_NR, activation
 * rows x + e * x_stride in the type's vec_dot_type): for each row lane i
 * set in mask, out[e * ld + i] = (add ? out[e * ld + i] : 0) + the dot
 * product. Per (row, token) the sum runs over the blocks in order with
 * one accumulator, whatever nt: the batch-invariance of the packed product.
 * nb counts the layout's units (super-blocks; Q8_0's and Q4_0's pairs of
 * blocks). For Q8_0 and Q4_0, ys holds each token's sum of codes per activation block, token e's
 * at ys + e * 2 * nb (the driver computes them); NULL for the others.
 */
typedef void (*realm__panel_fn)(const void *panel, int64_t nb, const uint8_t *x, size_t x_stride,
                                const int32_t *ys, int nt, float *out, int64_t ld, uint16_t mask,
                                bool add);

/* Per-ISA kernels, indexed by weight type; NULL: the scalar reference. */
extern const realm__panel_fn realm__panel_avx2[REALM_TYPE_COUNT];
extern const realm__panel_fn realm__panel_avx512[REALM_TYPE_COUNT];

#endif
