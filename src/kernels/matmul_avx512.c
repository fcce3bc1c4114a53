/*
 * AVX-512 (VNNI) kernels of the blocked matrix product (matmul_internal.h).
 * Compiled with the AVX-512 flags: nothing here runs unless cpu.c found them.
 *
 * A panel is 16 weight rows, one per 32-bit lane of a zmm ("lanes are
 * rows"). pack_w transposes each row's codes four columns at a time into
 * 64-byte vectors q[t] = (row 0: columns 4t..4t+3, row 1: ..., row 15: ...),
 * unpacked to one unsigned byte per code, and lays each row's block scales
 * out the same way, one float per lane. A micro-kernel then multiplies a
 * panel with up to NR tokens: per four columns one load of q[t] and, per
 * token, one vpdpbusd against that token's four activation bytes broadcast
 * to every lane. Each lane accumulates its own row's (sub-)block sum, so the
 * block scales apply as one vector multiply per block and token for all 16
 * rows, and the result needs no horizontal sum: lane i is out[e, row i].
 *
 * Offsets of the codes (Q4_0's 8, Q6_K's 32, the +128 that makes Q8_0 and
 * the IQ4 code book unsigned) are subtracted in integers per block, as
 * z * sum(activation codes): Q8_K's bsums for the K-quants, sums made by
 * pack_act for Q8_0. So every block's integer sum is exact, as in
 * dot_ref.c. The mins of Q4_K, Q5_K, Q2_K, Q4_1 and Q5_1 are a second,
 * float, term through the same sums, as in the reference.
 *
 * Float weights use the same layout with one float per lane and vfmadd with
 * the token's activation broadcast; F16/BF16 activations are converted to
 * floats by pack_act.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels_internal.h"
#include "matmul_internal.h"
#include "simd_x86.h"
#include "simd_x86_512_bcast.h"

#define PR 16 /* rows per panel: one per 32-bit lane */
#define NR 8  /* most tokens per micro-kernel call: 8 to 24 accumulators */

/*
 * Tokens per tile: their activations (6 KiB per token for 5632 Q8_K
 * columns) stay in L2 while the panels pass; each panel is unpacked once
 * per tile. 128 measured 3% faster than 64 on a 2 MiB L2; 64 leaves room
 * for smaller ones.
 */
#define TILE 64

/* Columns per chunk: a chunk's panel (about 20 KiB) stays in L1 while the
 * tile's tokens pass over it. */
#define KC_K   1024 /* K-quants: 4 super-blocks */
#define KC_32  1024 /* 32-element blocks: 32 blocks */
#define KC_F32 256
#define KC_F16 128

/* ---- helpers -------------------------------------------------------------- */

#define INLINE static inline __attribute__((always_inline))

static inline __m512i load512(const void *p)
{
    return _mm512_loadu_si512(p);
}

static inline void store512(void *p, __m512i v)
{
    _mm512_store_si512(p, v);
}

/* Lane i: byte offset of row i; rows past `rows` repeat the last row, so
 * every gather stays inside the matrix (their lanes are never stored). */
static inline __m512i row_offsets(size_t row_size, int rows)
{
    const __m512i i =
        _mm512_min_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(rows - 1));
    return _mm512_mullo_epi32(i, _mm512_set1_epi32((int)row_size));
}

/* The 4 bytes at p + off[i] for every lane i. */
static inline __m512i gather(__m512i off, const uint8_t *p)
{
    return _mm512_i32gather_epi32(off, (const void *)p, 1);
}

/*
 * In place: a[r] holds 16 dwords of row r; afterwards a[i] holds dword i of
 * rows 0..15 (lane r). Interleaving dwords, then qwords, gives in 128-bit
 * lane L of register 4k + j dword 4L + j of rows 4k..4k+3; two rounds of
 * 128-bit lane shuffles then gather lane L of the four row groups. 64
 * shuffles for 16 vectors, against one vector gather (16 loads) per output.
 */
INLINE void transpose16(__m512i a[16])
{
    __m512i t[16];
    REALM__UNROLL(8)
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_epi32(a[2 * k], a[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_epi32(a[2 * k], a[2 * k + 1]);
    }
    REALM__UNROLL(4)
    for (int k = 0; k < 4; k++) {
        a[4 * k + 0] = _mm512_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
        a[4 * k + 1] = _mm512_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
        a[4 * k + 2] = _mm512_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
        a[4 * k + 3] = _mm512_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
    }
    REALM__UNROLL(4)
    for (int j = 0; j < 4; j++) {
        const __m512i v0 = _mm512_shuffle_i32x4(a[j], a[4 + j], 0x44);
        const __m512i v1 = _mm512_shuffle_i32x4(a[j], a[4 + j], 0xee);
        const __m512i v2 = _mm512_shuffle_i32x4(a[8 + j], a[12 + j], 0x44);
        const __m512i v3 = _mm512_shuffle_i32x4(a[8 + j], a[12 + j], 0xee);
        t[j] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        t[4 + j] = _mm512_shuffle_i32x4(v0, v2, 0xdd);
        t[8 + j] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        t[12 + j] = _mm512_shuffle_i32x4(v1, v3, 0xdd);
    }
    REALM__UNROLL(16)
    for (int i = 0; i < 16; i++)
        a[i] = t[i];
}

/* Row i of a panel (rows past `rows` repeat the last one). */
static inline const uint8_t *panel_row(const uint8_t *w, size_t row_size, int rows, int i)
{
    return w + (size_t)(i < rows ? i : rows - 1) * row_size;
}

/* a[i] = dword i of bytes [off, off + len) of every row, len <= 64 (the
 * masked-off bytes are not read, so len may end at the matrix's end). */
INLINE void load_t(__m512i a[16], const uint8_t *w, size_t row_size, int rows, size_t off, int len)
{
    const __mmask64 m = len == 64 ? ~(__mmask64)0 : ((__mmask64)1 << len) - 1;
    REALM__UNROLL(16)
    for (int i = 0; i < 16; i++)
        a[i] = _mm512_maskz_loadu_epi8(m, panel_row(w, row_size, rows, i) + off);
    transpose16(a);
}

/* fp16 in the low / high half of each lane, as floats. */
static inline __m512 half_lo(__m512i v)
{
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
}

static inline __m512 half_hi(__m512i v)
{
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16)));
}

/* Byte b of each lane, zero-extended. */
static inline __m512i byte_u(__m512i v, int b)
{
    return _mm512_and_si512(_mm512_srli_epi32(v, 8 * b), _mm512_set1_epi32(0xff));
}

static inline __m512 byte_f(__m512i v, int b)
{
    return _mm512_cvtepi32_ps(byte_u(v, b));
}

static inline __m512i nib_lo(__m512i v)
{
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0f));
}

static inline __m512i nib_hi(__m512i v)
{
    return _mm512_and_si512(_mm512_srli_epi32(v, 4), _mm512_set1_epi8(0x0f));
}

/* Bit `from` of every byte moved to bit `to` (others cleared); the 32-bit
 * shifts move bits across bytes only below `to`, which the mask drops. */
static inline __m512i bit_move(__m512i v, int from, int to)
{
    const __m512i s = from > to ? _mm512_srli_epi32(v, from - to) : _mm512_slli_epi32(v, to - from);
    return _mm512_and_si512(s, _mm512_set1_epi8((char)(1 << to)));
}

/* The IQ4 code book + 128 in every 128-bit lane (vpshufb table). */
static inline __m512i iq4_table_u8(void)
{
    return _mm512_broadcast_i32x4(
        _mm_xor_si128(load128(realm_iq4nl_values), _mm_set1_epi8((char)0x80)));
}

static inline __mmask16 row_mask(int rows)
{
    return (__mmask16)((1u << rows) - 1);
}

/* out[j] (+)= acc[j] over the panel's valid rows. */
static inline void store_out(const realm__mm_run *r, int j, __m512 acc)
{
    float *o = r->out + (int64_t)j * r->ld;
    const __mmask16 m = row_mask(r->rows);
    if (r->add)
        acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, o));
    _mm512_mask_storeu_ps(o, m, acc);
}

/*
 * A micro-kernel over the r->nr <= NR tokens of a call, with the token count
 * a constant in each inlined copy, so that the per-token accumulators live
 * in registers and every loop over tokens is unrolled.
 */
/* clang-format off */
#define FOR_TOKEN_COUNT(r, kernel, ...)                                                            \
    do {                                                                                           \
        switch ((r)->nr) {                                                                         \
        case 8: kernel(r, __VA_ARGS__, 8); break;                                                  \
        case 7: kernel(r, __VA_ARGS__, 7); break;                                                  \
        case 6: kernel(r, __VA_ARGS__, 6); break;                                                  \
        case 5: kernel(r, __VA_ARGS__, 5); break;                                                  \
        case 4: kernel(r, __VA_ARGS__, 4); break;                                                  \
        case 3: kernel(r, __VA_ARGS__, 3); break;                                                  \
        case 2: kernel(r, __VA_ARGS__, 2); break;                                                  \
        default: kernel(r, __VA_ARGS__, 1); break;                                                 \
        }                                                                                          \
    } while (0)
/* clang-format on */

/* ---- K-quants · Q8_K --------------------------------------------------------- */

/*
 * One super-block of a panel. Sub-blocks are S = 16 or 32 columns; codes are
 * unsigned. Row i's super-block sum is
 *     sum_s a[s][i] * (q_s . y_s - z * sum(y_s)) - dmin[i] * sum_g c_g[i] * bsums[g]
 * times the activations' d, for a code offset z (0 if none) and, for the
 * types with mins, c_g (m below, two words per lane paired with two bsums
 * by vpdpwssd). sum(y_s) is one or two of Q8_K's bsums: the offset enters
 * the integer sum as one vpdpwssd of (-z, 0), (0, -z) or (-z, -z) with the
 * pair of bsums around it, read from the activations themselves.
 */
typedef struct {
    uint8_t q[64][64];
    float a[16][16];
    int16_t m[8][32];
    float dmin[16];
} kpanel;
_Static_assert(sizeof(kpanel) % 64 == 0, "kpanel keeps 64-byte alignment");
_Static_assert(sizeof(kpanel) * KC_K / REALM_QK_K <= REALM__MM_PANEL_MAX, "K panel fits");

INLINE void k_run(const realm__mm_run *r, const int S, const int z, const bool mins, const int nt)
{
    const kpanel *P = r->panel;
    const int nsub = REALM_QK_K / S;
    /* words of -z for the bsum at the even / odd position of a pair */
    const uint32_t mz = (uint16_t)-z;
    const __m512i z_even = _mm512_set1_epi32((int)(S == 32 ? mz * 0x10001u : mz));
    const __m512i z_odd = _mm512_set1_epi32((int)(mz << 16));
    const realm_block_q8_K *y[NR];
    __m512 acc[NR];
    REALM__UNROLL(8)
    for (int j = 0; j < nt; j++) {
        y[j] = (const realm_block_q8_K *)(r->x + (size_t)j * r->x_stride);
        acc[j] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < r->kc / REALM_QK_K; b++) {
        const kpanel *p = &P[b];
        __m512 fs[NR];
        REALM__UNROLL(8)
        for (int j = 0; j < nt; j++)
            fs[j] = _mm512_setzero_ps();
        for (int s = 0; s < nsub; s++) {
            __m512i is[NR];
            REALM__UNROLL(8)
            for (int j = 0; j < nt; j++)
                is[j] = _mm512_setzero_si512();
            REALM__UNROLL(8)
            for (int t = 0; t < S / 4; t++) {
                const int qi = s * (S / 4) + t;
                const __m512i w = _mm512_load_si512(p->q[qi]);
                REALM__UNROLL(8)
                for (int j = 0; j < nt; j++)
                    is[j] = dpbusd_bcast(is[j], w, y[j][b].qs + 4 * qi);
            }
            if (z != 0) {
                const __m512i zw = S == 16 && (s & 1) ? z_odd : z_even;
                const int g = S == 16 ? s & ~1 : 2 * s; /* first bsum of the pair */
                REALM__UNROLL(8)
                for (int j = 0; j < nt; j++)
                    is[j] = dpwssd_bcast(is[j], zw, y[j][b].bsums + g);
            }
            const __m512 a = _mm512_load_ps(p->a[s]);
            REALM__UNROLL(8)
            for (int j = 0; j < nt; j++)
                fs[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[j]), a, fs[j]);
        }
        if (mins) {
            __m512i ms[NR];
            REALM__UNROLL(8)
            for (int j = 0; j < nt; j++)
                ms[j] = _mm512_setzero_si512();
            REALM__UNROLL(8)
            for (int t = 0; t < 8; t++) {
                const __m512i w = _mm512_load_si512(p->m[t]);
                REALM__UNROLL(8)
                for (int j = 0; j < nt; j++)
                    ms[j] = dpwssd_bcast(ms[j], w, y[j][b].bsums + 2 * t);
            }
            const __m512 dmin = _mm512_load_ps(p->dmin);
            REALM__UNROLL(8)
            for (int j = 0; j < nt; j++)
                fs[j] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms[j]), dmin, fs[j]);
        }
        REALM__UNROLL(8)
        for (int j = 0; j < nt; j++)
            acc[j] = _mm512_fmadd_ps(fs[j], _mm512_set1_ps(y[j][b].d), acc[j]);
    }
    REALM__UNROLL(8)
    for (int j = 0; j < nt; j++)
        store_out(r, j, acc[j]);
}

/*
 * Q4_K/Q5_K scales and mins of 16 rows from their 12 packed bytes (see
 * k4_scale_min in dot_ref.c): bytes of sc[0] are sub-blocks 0-3, sc[1] 4-7.
 */
static inline void k4_scales16(__m512i off, const uint8_t *s, __m512i sc[2], __m512i mn[2])
{
    const __m512i a = gather(off, s), b = gather(off, s + 4), c = gather(off, s + 8);
    const __m512i k6 = _mm512_set1_epi8(0x3f), k4 = _mm512_set1_epi8(0x0f);
    const __m512i k2 = _mm512_set1_epi8(0x30);
    sc[0] = _mm512_and_si512(a, k6);
    sc[1] = _mm512_or_si512(_mm512_and_si512(c, k4), _mm512_and_si512(_mm512_srli_epi32(a, 2), k2));
    mn[0] = _mm512_and_si512(b, k6);
    mn[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(c, 4), k4),
                            _mm512_and_si512(_mm512_srli_epi32(b, 2), k2));
}

/* Scales (8 per row, bytes of sc[]) times d into a[], mins into m[] as the
 * word pair (m_t, m_t) for bsums 2t and 2t + 1. */
static inline void k4_panel_scales(kpanel *p, __m512 d, __m512 dmin, const __m512i sc[2],
                                   const __m512i mn[2])
{
    REALM__UNROLL(8)
    for (int s = 0; s < 8; s++) {
        _mm512_store_ps(p->a[s], _mm512_mul_ps(byte_f(sc[s / 4], s % 4), d));
        const __m512i m = byte_u(mn[s / 4], s % 4);
        store512(p->m[s], _mm512_or_si512(m, _mm512_slli_epi32(m, 16)));
    }
    _mm512_store_ps(p->dmin, dmin);
}

static void pack_q4_K(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    kpanel *P = vp;
    const __m512i off = row_offsets(row_size, rows);
    for (int64_t b = 0; b < kc / REALM_QK_K; b++) {
        const uint8_t *x = w + b * sizeof(realm_block_q4_K);
        kpanel *p = &P[b];
        const __m512i dd = gather(off, x + offsetof(realm_block_q4_K, d));
        __m512i sc[2], mn[2];
        k4_scales16(off, x + offsetof(realm_block_q4_K, scales), sc, mn);
        k4_panel_scales(p, half_lo(dd), half_hi(dd), sc, mn);
        /* dword i of qs is in chunk j = i / 8: its low nibbles are columns
         * 64j + 4(i % 8) + 0..3, its high ones 32 columns further */
        const size_t qs = (size_t)b * sizeof(realm_block_q4_K) + offsetof(realm_block_q4_K, qs);
        REALM__UNROLL(2)
        for (int h = 0; h < 2; h++) {
            __m512i a[16];
            load_t(a, w, row_size, rows, qs + 64 * h, 64);
            REALM__UNROLL(16)
            for (int i = 0; i < 16; i++) {
                const int j = (16 * h + i) / 8, k = i % 8;
                store512(p->q[16 * j + k], nib_lo(a[i]));
                store512(p->q[16 * j + 8 + k], nib_hi(a[i]));
            }
        }
    }
}

static void pack_q5_K(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    kpanel *P = vp;
    const __m512i off = row_offsets(row_size, rows);
    for (int64_t b = 0; b < kc / REALM_QK_K; b++) {
        const uint8_t *x = w + b * sizeof(realm_block_q5_K);
        kpanel *p = &P[b];
        const __m512i dd = gather(off, x + offsetof(realm_block_q5_K, d));
        __m512i sc[2], mn[2];
        k4_scales16(off, x + offsetof(realm_block_q5_K, scales), sc, mn);
        k4_panel_scales(p, half_lo(dd), half_hi(dd), sc, mn);
        /* as Q4_K; bit s of qh[l] is the fifth bit of column 32 s + l */
        const size_t xo = (size_t)b * sizeof(realm_block_q5_K);
        __m512i hb[16];
        load_t(hb, w, row_size, rows, xo + offsetof(realm_block_q5_K, qh), 32);
        REALM__UNROLL(2)
        for (int h = 0; h < 2; h++) {
            __m512i a[16];
            load_t(a, w, row_size, rows, xo + offsetof(realm_block_q5_K, qs) + 64 * h, 64);
            REALM__UNROLL(16)
            for (int i = 0; i < 16; i++) {
                const int j = (16 * h + i) / 8, k = i % 8;
                store512(p->q[16 * j + k],
                         _mm512_or_si512(nib_lo(a[i]), bit_move(hb[k], 2 * j, 4)));
                store512(p->q[16 * j + 8 + k],
                         _mm512_or_si512(nib_hi(a[i]), bit_move(hb[k], 2 * j + 1, 4)));
            }
        }
    }
}

/* Q6_K: column 128h + 32g + l has low bits from nibble g/2 of
 * ql[64h + 32(g&1) + l] and high bits 2g, 2g+1 of qh[32h + l]. */
static void pack_q6_K(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    kpanel *P = vp;
    const __m512i off = row_offsets(row_size, rows);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    for (int64_t b = 0; b < kc / REALM_QK_K; b++) {
        const uint8_t *x = w + b * sizeof(realm_block_q6_K);
        kpanel *p = &P[b];
        /* d is the block's last two bytes: gather the four ending there */
        const __m512 d = half_hi(gather(off, x + offsetof(realm_block_q6_K, d) - 2));
        REALM__UNROLL(4)
        for (int k = 0; k < 4; k++) {
            const __m512i g = gather(off, x + offsetof(realm_block_q6_K, scales) + 4 * k);
            REALM__UNROLL(4)
            for (int i = 0; i < 4; i++) {
                const __m512i s = _mm512_srai_epi32(_mm512_slli_epi32(g, 24 - 8 * i), 24);
                _mm512_store_ps(p->a[4 * k + i], _mm512_mul_ps(_mm512_cvtepi32_ps(s), d));
            }
        }
        const size_t xo = (size_t)b * sizeof(realm_block_q6_K);
        __m512i qh[16];
        load_t(qh, w, row_size, rows, xo + offsetof(realm_block_q6_K, qh), 64);
        REALM__UNROLL(2)
        for (int h = 0; h < 2; h++) {
            __m512i ql[16];
            load_t(ql, w, row_size, rows, xo + offsetof(realm_block_q6_K, ql) + 64 * h, 64);
            REALM__UNROLL(8)
            for (int i = 0; i < 8; i++) {
                const __m512i l0 = ql[i], l1 = ql[8 + i], hb = qh[8 * h + i];
                const int q = 32 * h + i;
                store512(p->q[q], _mm512_or_si512(nib_lo(l0),
                                                  _mm512_and_si512(_mm512_slli_epi32(hb, 4), m30)));
                store512(
                    p->q[q + 8],
                    _mm512_or_si512(nib_lo(l1), _mm512_and_si512(_mm512_slli_epi32(hb, 2), m30)));
                store512(p->q[q + 16], _mm512_or_si512(nib_hi(l0), _mm512_and_si512(hb, m30)));
                store512(
                    p->q[q + 24],
                    _mm512_or_si512(nib_hi(l1), _mm512_and_si512(_mm512_srli_epi32(hb, 2), m30)));
            }
        }
    }
}

/* Q3_K: codes q + 4 * hbit in 0..7 (offset 4); column 128h + 32g + l has
 * bits 2g of qs[32h + l] and bit 4h + g of hmask[l]. */
static void pack_q3_K(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    kpanel *P = vp;
    const __m512i off = row_offsets(row_size, rows);
    const __m512i k4 = _mm512_set1_epi8(0x0f), k2 = _mm512_set1_epi8(0x03);
    for (int64_t b = 0; b < kc / REALM_QK_K; b++) {
        const uint8_t *x = w + b * sizeof(realm_block_q3_K);
        kpanel *p = &P[b];
        const __m512 d = half_hi(gather(off, x + offsetof(realm_block_q3_K, d) - 2));
        const uint8_t *s = x + offsetof(realm_block_q3_K, scales);
        const __m512i a0 = gather(off, s), a1 = gather(off, s + 4), t = gather(off, s + 8);
        /* see q3_K_scales in simd_x86.h: bytes of sc[k] are sub-blocks 4k..4k+3 */
        __m512i sc[4];
        sc[0] = _mm512_or_si512(_mm512_and_si512(a0, k4),
                                _mm512_slli_epi32(_mm512_and_si512(t, k2), 4));
        sc[1] =
            _mm512_or_si512(_mm512_and_si512(a1, k4),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(t, 2), k2), 4));
        sc[2] =
            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(a0, 4), k4),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(t, 4), k2), 4));
        sc[3] =
            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(a1, 4), k4),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(t, 6), k2), 4));
        REALM__UNROLL(16)
        for (int i = 0; i < 16; i++) {
            const __m512i v = _mm512_sub_epi32(byte_u(sc[i / 4], i % 4), _mm512_set1_epi32(32));
            _mm512_store_ps(p->a[i], _mm512_mul_ps(_mm512_cvtepi32_ps(v), d));
        }
        /* t0: hmask (dwords 0-7) then qs[0..31]; t1: qs[32..63] */
        const size_t xo = (size_t)b * sizeof(realm_block_q3_K);
        __m512i t0[16], t1[16];
        load_t(t0, w, row_size, rows, xo, 64);
        load_t(t1, w, row_size, rows, xo + 64, 32);
        REALM__UNROLL(8)
        for (int i = 0; i < 8; i++) {
            const __m512i hb = t0[i];
            REALM__UNROLL(2)
            for (int h = 0; h < 2; h++) {
                const __m512i q = h == 0 ? t0[8 + i] : t1[i];
                REALM__UNROLL(4)
                for (int g = 0; g < 4; g++) {
                    const __m512i lo = _mm512_and_si512(_mm512_srli_epi32(q, 2 * g), k2);
                    store512(p->q[32 * h + 8 * g + i],
                             _mm512_or_si512(lo, bit_move(hb, 4 * h + g, 2)));
                }
            }
        }
    }
}

/* Q2_K: 2-bit codes laid out as Q3_K's low bits; scale & 15, min >> 4. */
static void pack_q2_K(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    kpanel *P = vp;
    const __m512i off = row_offsets(row_size, rows);
    const __m512i k2 = _mm512_set1_epi8(0x03), k4 = _mm512_set1_epi32(0x0f);
    for (int64_t b = 0; b < kc / REALM_QK_K; b++) {
        const uint8_t *x = w + b * sizeof(realm_block_q2_K);
        kpanel *p = &P[b];
        const __m512i dd = gather(off, x + offsetof(realm_block_q2_K, d));
        const __m512 d = half_lo(dd);
        REALM__UNROLL(4)
        for (int k = 0; k < 4; k++) {
            const __m512i g = gather(off, x + offsetof(realm_block_q2_K, scales) + 4 * k);
            REALM__UNROLL(4)
            for (int i = 0; i < 4; i++) {
                const __m512i sc = _mm512_and_si512(_mm512_srli_epi32(g, 8 * i), k4);
                _mm512_store_ps(p->a[4 * k + i], _mm512_mul_ps(_mm512_cvtepi32_ps(sc), d));
            }
            /* mins of sub-blocks 4k..4k+3 as word pairs for bsums (4k, 4k+1), (4k+2, 4k+3) */
            REALM__UNROLL(2)
            for (int i = 0; i < 2; i++) {
                const __m512i v = _mm512_srli_epi32(g, 16 * i);
                const __m512i m0 = _mm512_and_si512(_mm512_srli_epi32(v, 4), k4);
                const __m512i m1 = _mm512_and_si512(_mm512_srli_epi32(v, 12), k4);
                store512(p->m[2 * k + i], _mm512_or_si512(m0, _mm512_slli_epi32(m1, 16)));
            }
        }
        _mm512_store_ps(p->dmin, half_hi(dd));
        __m512i qs[16];
        load_t(qs, w, row_size, rows, (size_t)b * sizeof(realm_block_q2_K) + 16, 64);
        REALM__UNROLL(2)
        for (int h = 0; h < 2; h++) {
            REALM__UNROLL(8)
            for (int i = 0; i < 8; i++) {
                const __m512i q = qs[8 * h + i];
                REALM__UNROLL(4)
                for (int g = 0; g < 4; g++)
                    store512(p->q[32 * h + 8 * g + i],
                             _mm512_and_si512(_mm512_srli_epi32(q, 2 * g), k2));
            }
        }
    }
}

/* IQ4_XS: code book + 128 (offset 128); sub-block s of 32 has qs[16s + j]
 * with column 32s + j in the low nibble, 32s + 16 + j in the high one. */
static void pack_iq4_xs(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    kpanel *P = vp;
    const __m512i off = row_offsets(row_size, rows);
    const __m512i table = iq4_table_u8();
    for (int64_t b = 0; b < kc / REALM_QK_K; b++) {
        const uint8_t *x = w + b * sizeof(realm_block_iq4_xs);
        kpanel *p = &P[b];
        const __m512i dh = gather(off, x); /* d | scales_h << 16 */
        const __m512 d = half_lo(dh);
        const __m512i sl = gather(off, x + offsetof(realm_block_iq4_xs, scales_l));
        REALM__UNROLL(8)
        for (int s = 0; s < 8; s++) {
            const __m512i lo =
                _mm512_and_si512(_mm512_srli_epi32(sl, 4 * s), _mm512_set1_epi32(15));
            const __m512i hi =
                _mm512_and_si512(_mm512_srli_epi32(dh, 16 + 2 * s), _mm512_set1_epi32(3));
            const __m512i ls = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 4));
            const __m512i v = _mm512_sub_epi32(ls, _mm512_set1_epi32(32));
            _mm512_store_ps(p->a[s], _mm512_mul_ps(_mm512_cvtepi32_ps(v), d));
        }
        REALM__UNROLL(2)
        for (int h = 0; h < 2; h++) {
            __m512i a[16];
            load_t(a, w, row_size, rows,
                   (size_t)b * sizeof(realm_block_iq4_xs) + offsetof(realm_block_iq4_xs, qs) +
                       64 * h,
                   64);
            /* dword i of qs: sub-block s = i / 4, columns 32s + 4(i % 4) (low nibbles) */
            REALM__UNROLL(16)
            for (int i = 0; i < 16; i++) {
                const int s = (16 * h + i) / 4, k = i % 4;
                store512(p->q[8 * s + k], _mm512_shuffle_epi8(table, nib_lo(a[i])));
                store512(p->q[8 * s + 4 + k], _mm512_shuffle_epi8(table, nib_hi(a[i])));
            }
        }
    }
}

/* A K-quant's micro-kernel and table entry: sub-blocks of S, code offset z. */
#define K_TYPE(name, S, z, mins)                                                                   \
    static void run_##name(const realm__mm_run *r)                                                 \
    {                                                                                              \
        FOR_TOKEN_COUNT(r, k_run, S, z, mins);                                                     \
    }                                                                                              \
    static const realm__mm_kernel mm_##name = {                                                    \
        .panel_rows = PR,                                                                          \
        .nr = NR,                                                                                  \
        .tile_tokens = TILE,                                                                       \
        .kc = KC_K,                                                                                \
        .panel_size = KC_K / REALM_QK_K * sizeof(kpanel),                                          \
        .act_size = 0,                                                                             \
        .pack_w = pack_##name,                                                                     \
        .pack_act = NULL,                                                                          \
        .run = run_##name,                                                                         \
    };

K_TYPE(q4_K, 32, 0, true)
K_TYPE(q5_K, 32, 0, true)
K_TYPE(q6_K, 16, 32, false)
K_TYPE(q3_K, 16, 4, false)
K_TYPE(q2_K, 16, 0, true)
K_TYPE(iq4_xs, 32, 128, false)

/* ---- 32-element blocks · Q8_0 -------------------------------------------------- */

/*
 * One block of a panel: codes, d per row, and for Q4_1/Q5_1 the min m per
 * row. Row i's block sum is d[i] * dy * (q . y - z * sum(y)) + m[i] * dy * sum(y).
 */
typedef struct {
    uint8_t q[8][64];
    float d[16];
    float m[16];
} bpanel;
_Static_assert(sizeof(bpanel) % 64 == 0, "bpanel keeps 64-byte alignment");
_Static_assert(sizeof(bpanel) * KC_32 / 32 <= REALM__MM_PANEL_MAX, "block panel fits");

/* pack_act per block: dy as a float and z * sum(y) (offset types) or
 * dy * sum(y) (types with a min). */
typedef struct {
    float d;
    union {
        int32_t corr;
        float dsum;
    } u;
} bact;
_Static_assert(sizeof(bact) * TILE * KC_32 / 32 <= REALM__MM_ACT_MAX, "block act scratch fits");

INLINE void b_run(const realm__mm_run *r, const bool mins, const int nt)
{
    const bpanel *P = r->panel;
    const realm_block_q8_0 *y[NR];
    const bact *c[NR];
    __m512 acc[NR];
    REALM__UNROLL(8)
    for (int j = 0; j < nt; j++) {
        y[j] = (const realm_block_q8_0 *)(r->x + (size_t)j * r->x_stride);
        c[j] = (const bact *)(r->xs + (size_t)j * r->xs_stride);
        acc[j] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < r->kc / 32; b++) {
        const bpanel *p = &P[b];
        __m512i is[NR];
        REALM__UNROLL(8)
        for (int j = 0; j < nt; j++)
            is[j] = _mm512_setzero_si512();
        REALM__UNROLL(8)
        for (int t = 0; t < 8; t++) {
            const __m512i w = _mm512_load_si512(p->q[t]);
            REALM__UNROLL(8)
            for (int j = 0; j < nt; j++)
                is[j] = dpbusd_bcast(is[j], w, y[j][b].qs + 4 * t);
        }
        const __m512 d = _mm512_load_ps(p->d);
        REALM__UNROLL(8)
        for (int j = 0; j < nt; j++) {
            __m512i v = is[j];
            if (!mins)
                v = _mm512_sub_epi32(v, _mm512_set1_epi32(c[j][b].u.corr));
            const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(c[j][b].d));
            acc[j] = _mm512_fmadd_ps(f, d, acc[j]);
        }
        if (mins) {
            const __m512 m = _mm512_load_ps(p->m);
            REALM__UNROLL(8)
            for (int j = 0; j < nt; j++)
                acc[j] = _mm512_fmadd_ps(m, _mm512_set1_ps(c[j][b].u.dsum), acc[j]);
        }
    }
    REALM__UNROLL(8)
    for (int j = 0; j < nt; j++)
        store_out(r, j, acc[j]);
}

/* dy and the sum of the codes of each Q8_0 block; zshift < 0: a min type. */
INLINE void b_pack_act(const uint8_t *x, int64_t kc, void *xs, const int zshift)
{
    const realm_block_q8_0 *y = (const realm_block_q8_0 *)x;
    bact *c = xs;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < kc / 32; b++) {
        /* sum of (y + 128) by vpsadbw, minus 32 * 128 */
        const __m256i s =
            _mm256_sad_epu8(_mm256_xor_si256(load256(y[b].qs), bias), _mm256_setzero_si256());
        const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        const int32_t sum = (int32_t)(_mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1)) - 32 * 128;
        c[b].d = h2f(y[b].d);
        if (zshift >= 0)
            c[b].u.corr = sum * (1 << zshift);
        else
            c[b].u.dsum = c[b].d * (float)sum;
    }
}

static void act_z3(const uint8_t *x, int64_t kc, void *xs)
{
    b_pack_act(x, kc, xs, 3);
}
static void act_z4(const uint8_t *x, int64_t kc, void *xs)
{
    b_pack_act(x, kc, xs, 4);
}
static void act_z7(const uint8_t *x, int64_t kc, void *xs)
{
    b_pack_act(x, kc, xs, 7);
}
static void act_min(const uint8_t *x, int64_t kc, void *xs)
{
    b_pack_act(x, kc, xs, -1);
}

/*
 * The nibbles of blocks [0, nb) of a panel (16 bytes at qs_off in each
 * block of bs bytes; low nibbles are columns j, high ones j + 16) into
 * p[b].q. Four blocks at a time: one 64-byte vector per row of 16 bytes of
 * each block, transposed; a last one to three by gathers.
 */
INLINE void nibbles_32(bpanel *p, const uint8_t *w, size_t row_size, int rows, int64_t nb,
                       size_t bs, size_t qs_off)
{
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        __m512i a[16];
        REALM__UNROLL(16)
        for (int i = 0; i < 16; i++) {
            const uint8_t *x = panel_row(w, row_size, rows, i) + (size_t)b * bs + qs_off;
            a[i] = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(load128(x)),
                                                               load128(x + bs), 1)),
                _mm256_inserti128_si256(_mm256_castsi128_si256(load128(x + 2 * bs)),
                                        load128(x + 3 * bs), 1),
                1);
        }
        transpose16(a);
        REALM__UNROLL(16)
        for (int i = 0; i < 16; i++) {
            store512(p[b + i / 4].q[i % 4], nib_lo(a[i]));
            store512(p[b + i / 4].q[4 + i % 4], nib_hi(a[i]));
        }
    }
    if (b < nb) {
        const __m512i off = row_offsets(row_size, rows);
        for (; b < nb; b++) {
            REALM__UNROLL(4)
            for (int i = 0; i < 4; i++) {
                const __m512i g = gather(off, w + (size_t)b * bs + qs_off + 4 * i);
                store512(p[b].q[i], nib_lo(g));
                store512(p[b].q[4 + i], nib_hi(g));
            }
        }
    }
}

/* Fifth bits: bit j of qh (little-endian u32 per lane) to bit 4 of the byte of
 * column j. Multiplying four bits by 0x00204081 puts bit b at bit 8b (the
 * partial products do not overlap), one per byte of the lane. */
static inline void fifth_bits_32(bpanel *p, __m512i qh)
{
    REALM__UNROLL(8)
    for (int t = 0; t < 8; t++) {
        const __m512i four = _mm512_and_si512(_mm512_srli_epi32(qh, 4 * t), _mm512_set1_epi32(15));
        const __m512i spread = _mm512_and_si512(
            _mm512_mullo_epi32(four, _mm512_set1_epi32(0x00204081)), _mm512_set1_epi32(0x01010101));
        store512(p->q[t], _mm512_or_si512(load512(p->q[t]), _mm512_slli_epi32(spread, 4)));
    }
}

static void pack_q4_0(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    bpanel *P = vp;
    const __m512i off = row_offsets(row_size, rows);
    for (int64_t b = 0; b < kc / 32; b++)
        _mm512_store_ps(P[b].d, half_lo(gather(off, w + b * sizeof(realm_block_q4_0))));
    nibbles_32(P, w, row_size, rows, kc / 32, sizeof(realm_block_q4_0),
               offsetof(realm_block_q4_0, qs));
}

static void pack_iq4_nl(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    bpanel *P = vp;
    const __m512i off = row_offsets(row_size, rows);
    const __m512i table = iq4_table_u8();
    nibbles_32(P, w, row_size, rows, kc / 32, sizeof(realm_block_iq4_nl),
               offsetof(realm_block_iq4_nl, qs));
    for (int64_t b = 0; b < kc / 32; b++) {
        _mm512_store_ps(P[b].d, half_lo(gather(off, w + b * sizeof(realm_block_iq4_nl))));
        REALM__UNROLL(8)
        for (int t = 0; t < 8; t++)
            store512(P[b].q[t], _mm512_shuffle_epi8(table, load512(P[b].q[t])));
    }
}

static void pack_q5_0(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    bpanel *P = vp;
    const __m512i off = row_offsets(row_size, rows);
    nibbles_32(P, w, row_size, rows, kc / 32, sizeof(realm_block_q5_0),
               offsetof(realm_block_q5_0, qs));
    for (int64_t b = 0; b < kc / 32; b++) {
        const uint8_t *x = w + b * sizeof(realm_block_q5_0);
        _mm512_store_ps(P[b].d, half_lo(gather(off, x)));
        fifth_bits_32(&P[b], gather(off, x + offsetof(realm_block_q5_0, qh)));
    }
}

static void pack_q4_1(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    bpanel *P = vp;
    const __m512i off = row_offsets(row_size, rows);
    nibbles_32(P, w, row_size, rows, kc / 32, sizeof(realm_block_q4_1),
               offsetof(realm_block_q4_1, qs));
    for (int64_t b = 0; b < kc / 32; b++) {
        const __m512i dm = gather(off, w + b * sizeof(realm_block_q4_1));
        _mm512_store_ps(P[b].d, half_lo(dm));
        _mm512_store_ps(P[b].m, half_hi(dm));
    }
}

static void pack_q5_1(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    bpanel *P = vp;
    const __m512i off = row_offsets(row_size, rows);
    nibbles_32(P, w, row_size, rows, kc / 32, sizeof(realm_block_q5_1),
               offsetof(realm_block_q5_1, qs));
    for (int64_t b = 0; b < kc / 32; b++) {
        const uint8_t *x = w + b * sizeof(realm_block_q5_1);
        const __m512i dm = gather(off, x);
        _mm512_store_ps(P[b].d, half_lo(dm));
        _mm512_store_ps(P[b].m, half_hi(dm));
        fifth_bits_32(&P[b], gather(off, x + offsetof(realm_block_q5_1, qh)));
    }
}

static void pack_q8_0(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    bpanel *P = vp;
    const __m512i off = row_offsets(row_size, rows);
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    const int64_t nb = kc / 32;
    const size_t bs = sizeof(realm_block_q8_0), qs = offsetof(realm_block_q8_0, qs);
    for (int64_t b = 0; b < nb; b++)
        _mm512_store_ps(P[b].d, half_lo(gather(off, w + b * bs)));
    /* two blocks at a time: 32 code bytes of each per row, transposed */
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m512i a[16];
        REALM__UNROLL(16)
        for (int i = 0; i < 16; i++) {
            const uint8_t *x = panel_row(w, row_size, rows, i) + (size_t)b * bs + qs;
            a[i] = _mm512_inserti64x4(_mm512_castsi256_si512(load256(x)), load256(x + bs), 1);
        }
        transpose16(a);
        REALM__UNROLL(16)
        for (int i = 0; i < 16; i++)
            store512(P[b + i / 8].q[i % 8], _mm512_xor_si512(a[i], bias));
    }
    for (; b < nb; b++) {
        REALM__UNROLL(8)
        for (int t = 0; t < 8; t++)
            store512(P[b].q[t], _mm512_xor_si512(gather(off, w + b * bs + qs + 4 * t), bias));
    }
}

#define B_TYPE(name, mins, act)                                                                    \
    static void run_##name(const realm__mm_run *r)                                                 \
    {                                                                                              \
        FOR_TOKEN_COUNT(r, b_run, mins);                                                           \
    }                                                                                              \
    static const realm__mm_kernel mm_##name = {                                                    \
        .panel_rows = PR,                                                                          \
        .nr = NR,                                                                                  \
        .tile_tokens = TILE,                                                                       \
        .kc = KC_32,                                                                               \
        .panel_size = KC_32 / 32 * sizeof(bpanel),                                                 \
        .act_size = KC_32 / 32 * sizeof(bact),                                                     \
        .pack_w = pack_##name,                                                                     \
        .pack_act = act,                                                                           \
        .run = run_##name,                                                                         \
    };

B_TYPE(q4_0, false, act_z3)
B_TYPE(q5_0, false, act_z4)
B_TYPE(q8_0, false, act_z7)
B_TYPE(iq4_nl, false, act_z7)
B_TYPE(q4_1, true, act_min)
B_TYPE(q5_1, true, act_min)

/* ---- plain floats ----------------------------------------------------------------- */

/* A panel of float weights: w[k] holds column k of the 16 rows. */
_Static_assert(sizeof(float) * KC_F32 * PR <= REALM__MM_PANEL_MAX, "f32 panel fits");
_Static_assert(sizeof(float) * KC_F16 * PR <= REALM__MM_PANEL_MAX, "f16 panel fits");
_Static_assert(sizeof(float) * TILE * KC_F16 <= REALM__MM_ACT_MAX, "f16 act scratch fits");

/* x: the tokens' float activations, xs_stride (packed) or x_stride apart. */
INLINE void f_run(const realm__mm_run *r, const bool packed, const int nt)
{
    const float *W = r->panel;
    const float *x[NR];
    __m512 acc[NR];
    REALM__UNROLL(8)
    for (int j = 0; j < nt; j++) {
        x[j] = packed ? (const float *)(r->xs + (size_t)j * r->xs_stride)
                      : (const float *)(r->x + (size_t)j * r->x_stride);
        acc[j] = _mm512_setzero_ps();
    }
    REALM__UNROLL(2)
    for (int64_t k = 0; k < r->kc; k++) {
        const __m512 w = _mm512_load_ps(W + 16 * k);
        REALM__UNROLL(8)
        for (int j = 0; j < nt; j++)
            acc[j] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[j][k]), acc[j]);
    }
    REALM__UNROLL(8)
    for (int j = 0; j < nt; j++)
        store_out(r, j, acc[j]);
}

static void run_f32(const realm__mm_run *r)
{
    FOR_TOKEN_COUNT(r, f_run, false);
}

static void run_f16(const realm__mm_run *r)
{
    FOR_TOKEN_COUNT(r, f_run, true);
}

static void pack_f32(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    float *P = vp;
    const __m512i off = row_offsets(row_size, rows);
    for (int64_t k = 0; k < kc; k++)
        _mm512_store_ps(P + 16 * k, _mm512_i32gather_ps(off, (const void *)(w + 4 * k), 1));
}

/* Columns k and k + 1 of 16 rows of 16-bit floats; cvt16 turns the low
 * halves of a vector's lanes into floats. */
#define PACK_HALVES(name, lo, hi, one)                                                             \
    static void pack_##name(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)     \
    {                                                                                              \
        float *P = vp;                                                                             \
        const __m512i off = row_offsets(row_size, rows);                                           \
        int64_t k = 0;                                                                             \
        for (; k + 2 <= kc; k += 2) {                                                              \
            const __m512i g = gather(off, w + 2 * k);                                              \
            _mm512_store_ps(P + 16 * k, lo(g));                                                    \
            _mm512_store_ps(P + 16 * (k + 1), hi(g));                                              \
        }                                                                                          \
        if (k < kc) { /* an odd last column: a 4-byte gather would pass the row's end */           \
            for (int i = 0; i < PR; i++) {                                                         \
                uint16_t h;                                                                        \
                memcpy(&h, w + (size_t)(i < rows ? i : rows - 1) * row_size + 2 * k, 2);           \
                P[16 * k + i] = one(h);                                                            \
            }                                                                                      \
        }                                                                                          \
    }

static inline __m512 bf16_lo(__m512i v)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

static inline __m512 bf16_hi(__m512i v)
{
    return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xffff0000u)));
}

PACK_HALVES(f16, half_lo, half_hi, realm_fp16_to_fp32)
PACK_HALVES(bf16, bf16_lo, bf16_hi, realm_bf16_to_fp32)

static void act_f16(const uint8_t *x, int64_t kc, void *xs)
{
    float *y = xs;
    int64_t i = 0;
    for (; i + 16 <= kc; i += 16)
        _mm512_store_ps(y + i, _mm512_cvtph_ps(load256(x + 2 * i)));
    for (; i < kc; i++) {
        uint16_t h;
        memcpy(&h, x + 2 * i, 2);
        y[i] = realm_fp16_to_fp32(h);
    }
}

static void act_bf16(const uint8_t *x, int64_t kc, void *xs)
{
    float *y = xs;
    int64_t i = 0;
    for (; i + 16 <= kc; i += 16)
        _mm512_store_ps(y + i, _mm512_castsi512_ps(_mm512_slli_epi32(
                                   _mm512_cvtepu16_epi32(load256(x + 2 * i)), 16)));
    for (; i < kc; i++) {
        uint16_t h;
        memcpy(&h, x + 2 * i, 2);
        y[i] = realm_bf16_to_fp32(h);
    }
}

static const realm__mm_kernel mm_f32 = {
    .panel_rows = PR,
    .nr = NR,
    .tile_tokens = TILE,
    .kc = KC_F32,
    .panel_size = KC_F32 * PR * sizeof(float),
    .act_size = 0,
    .pack_w = pack_f32,
    .pack_act = NULL,
    .run = run_f32,
};

#define F16_TYPE(name)                                                                             \
    static const realm__mm_kernel mm_##name = {                                                    \
        .panel_rows = PR,                                                                          \
        .nr = NR,                                                                                  \
        .tile_tokens = TILE,                                                                       \
        .kc = KC_F16,                                                                              \
        .panel_size = KC_F16 * PR * sizeof(float),                                                 \
        .act_size = KC_F16 * sizeof(float),                                                        \
        .pack_w = pack_##name,                                                                     \
        .pack_act = act_##name,                                                                    \
        .run = run_f16,                                                                            \
    };

F16_TYPE(f16)
F16_TYPE(bf16)

/* ---- table --------------------------------------------------------------------------- */

const realm__mm_kernel *const realm__mm_avx512[REALM_TYPE_COUNT] = {
    [REALM_TYPE_F32] = &mm_f32,   [REALM_TYPE_F16] = &mm_f16,   [REALM_TYPE_BF16] = &mm_bf16,
    [REALM_TYPE_Q4_0] = &mm_q4_0, [REALM_TYPE_Q4_1] = &mm_q4_1, [REALM_TYPE_Q5_0] = &mm_q5_0,
    [REALM_TYPE_Q5_1] = &mm_q5_1, [REALM_TYPE_Q8_0] = &mm_q8_0, [REALM_TYPE_IQ4_NL] = &mm_iq4_nl,
    [REALM_TYPE_Q2_K] = &mm_q2_K, [REALM_TYPE_Q3_K] = &mm_q3_K, [REALM_TYPE_Q4_K] = &mm_q4_K,
    [REALM_TYPE_Q5_K] = &mm_q5_K, [REALM_TYPE_Q6_K] = &mm_q6_K, [REALM_TYPE_IQ4_XS] = &mm_iq4_xs,
};
