/*
 * AVX2 + FMA + F16C kernels of the blocked matrix product
 * (matmul_internal.h). Compiled with the AVX2 flags: nothing here runs
 * unless cpu.c found them.
 *
 * The layout of matmul_avx512.c at half the width: a panel is 8 rows, one
 * per 32-bit lane of a ymm, q[t] holding columns 4t..4t+3 of each row as
 * unsigned bytes. Without VNNI the four products of a lane are vpmaddubsw
 * (u8 x s8, pairs summed to int16) then vpmaddwd with ones (to int32). The
 * int16 sums of up to G consecutive vpmaddubsw are added before widening,
 * G chosen per type so that G * 2 * max_code * 127 < 2^15 (activation codes
 * are never -128, see kernels_internal.h): 8 for 4-bit codes, 4 for 5-bit,
 * 2 for 6-bit. Q8_0's signed weights use the sign trick of dot_avx2.c,
 * |w| * (y * sign(w)), one product pair at a time.
 *
 * Code offsets and mins are handled as in the AVX-512 file: z * sum(y) in
 * integers per block (from Q8_K's bsums with vpmaddwd, or from pack_act),
 * mins as a float term.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels_internal.h"
#include "matmul_internal.h"
#include "simd_x86.h"

#define PR   8  /* rows per panel: one per 32-bit lane */
#define NR   4  /* most tokens per micro-kernel call (16 ymm registers) */
#define TILE 64 /* tokens per tile, as on AVX-512 */

#define KC_K   1024
#define KC_32  1024
#define KC_F32 512
#define KC_F16 256

#define INLINE static inline __attribute__((always_inline))

/* ---- helpers -------------------------------------------------------------- */

static inline void store256(void *p, __m256i v)
{
    _mm256_store_si256((__m256i *)p, v);
}

/* Four bytes at p in every lane: a broadcast load. */
static inline __m256i bcast32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* Lane i: byte offset of row i; rows past `rows` repeat the last one. */
static inline __m256i row_offsets(size_t row_size, int rows)
{
    const __m256i i =
        _mm256_min_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(rows - 1));
    return _mm256_mullo_epi32(i, _mm256_set1_epi32((int)row_size));
}

/* The 4 bytes at p + off[i] for every lane i. */
static inline __m256i gather(__m256i off, const uint8_t *p)
{
    return _mm256_i32gather_epi32((const int *)(const void *)p, off, 1);
}

/* fp16 in the low / high half of each lane, as floats. */
static inline __m256 half_lo(__m256i v)
{
    const __m256i w =
        _mm256_packus_epi32(_mm256_and_si256(v, _mm256_set1_epi32(0xffff)), _mm256_setzero_si256());
    return _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(w, 0x08)));
}

static inline __m256 half_hi(__m256i v)
{
    return half_lo(_mm256_srli_epi32(v, 16));
}

static inline __m256i byte_u(__m256i v, int b)
{
    return _mm256_and_si256(_mm256_srli_epi32(v, 8 * b), _mm256_set1_epi32(0xff));
}

static inline __m256 byte_f(__m256i v, int b)
{
    return _mm256_cvtepi32_ps(byte_u(v, b));
}

static inline __m256i nib_lo(__m256i v)
{
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

static inline __m256i nib_hi(__m256i v)
{
    return _mm256_and_si256(_mm256_srli_epi32(v, 4), _mm256_set1_epi8(0x0f));
}

/* Bit `from` of every byte moved to bit `to` (see matmul_avx512.c). */
static inline __m256i bit_move(__m256i v, int from, int to)
{
    const __m256i s = from > to ? _mm256_srli_epi32(v, from - to) : _mm256_slli_epi32(v, to - from);
    return _mm256_and_si256(s, _mm256_set1_epi8((char)(1 << to)));
}

/*
 * In place: a[r] holds 8 dwords of row r; afterwards a[i] holds dword i of
 * rows 0..7. Dword and qword interleaves leave in 128-bit lane L of
 * register 4k + j dword 4L + j of rows 4k..4k+3; vperm2i128 joins the two
 * row groups.
 */
INLINE void transpose8(__m256i a[8])
{
    __m256i t[8];
    REALM__UNROLL(4)
    for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm256_unpacklo_epi32(a[2 * k], a[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_epi32(a[2 * k], a[2 * k + 1]);
    }
    REALM__UNROLL(2)
    for (int k = 0; k < 2; k++) {
        a[4 * k + 0] = _mm256_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
        a[4 * k + 1] = _mm256_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
        a[4 * k + 2] = _mm256_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
        a[4 * k + 3] = _mm256_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
    }
    REALM__UNROLL(4)
    for (int j = 0; j < 4; j++) {
        t[j] = _mm256_permute2x128_si256(a[j], a[4 + j], 0x20);
        t[4 + j] = _mm256_permute2x128_si256(a[j], a[4 + j], 0x31);
    }
    REALM__UNROLL(8)
    for (int i = 0; i < 8; i++)
        a[i] = t[i];
}

static inline const uint8_t *panel_row(const uint8_t *w, size_t row_size, int rows, int i)
{
    return w + (size_t)(i < rows ? i : rows - 1) * row_size;
}

/* a[i] = dword i of bytes [off, off + 32) of every row. */
INLINE void load_t(__m256i a[8], const uint8_t *w, size_t row_size, int rows, size_t off)
{
    REALM__UNROLL(8)
    for (int i = 0; i < 8; i++)
        a[i] = load256(panel_row(w, row_size, rows, i) + off);
    transpose8(a);
}

static inline void store_out(const realm__mm_run *r, int j, __m256 acc)
{
    float *o = r->out + (int64_t)j * r->ld;
    if (r->rows == PR) {
        if (r->add)
            acc = _mm256_add_ps(acc, _mm256_loadu_ps(o));
        _mm256_storeu_ps(o, acc);
        return;
    }
    float v[PR];
    _mm256_storeu_ps(v, acc);
    for (int i = 0; i < r->rows; i++)
        o[i] = r->add ? o[i] + v[i] : v[i];
}

/* See FOR_TOKEN_COUNT in matmul_avx512.c. */
/* clang-format off */
#define FOR_TOKEN_COUNT(r, kernel, ...)                                                            \
    do {                                                                                           \
        switch ((r)->nr) {                                                                         \
        case 4: kernel(r, __VA_ARGS__, 4); break;                                                  \
        case 3: kernel(r, __VA_ARGS__, 3); break;                                                  \
        case 2: kernel(r, __VA_ARGS__, 2); break;                                                  \
        default: kernel(r, __VA_ARGS__, 1); break;                                                 \
        }                                                                                          \
    } while (0)
/* clang-format on */

/* ---- K-quants · Q8_K --------------------------------------------------------- */

/* As kpanel in matmul_avx512.c, 8 rows. */
typedef struct {
    uint8_t q[64][32];
    float a[16][8];
    int16_t m[8][16];
    float dmin[8];
} kpanel;
_Static_assert(sizeof(kpanel) % 32 == 0, "kpanel keeps 32-byte alignment");
_Static_assert(sizeof(kpanel) * KC_K / REALM_QK_K <= REALM__MM_PANEL_MAX, "K panel fits");

/* Sub-blocks of S columns, code offset z, int16 groups of G vpmaddubsw. */
INLINE void k_run(const realm__mm_run *r, const int S, const int z, const bool mins, const int G,
                  const int nt)
{
    const kpanel *P = r->panel;
    const int nsub = REALM_QK_K / S;
    const __m256i ones = _mm256_set1_epi16(1);
    const uint32_t mz = (uint16_t)-z;
    const __m256i z_even = _mm256_set1_epi32((int)(S == 32 ? mz * 0x10001u : mz));
    const __m256i z_odd = _mm256_set1_epi32((int)(mz << 16));
    const realm_block_q8_K *y[NR];
    __m256 acc[NR];
    REALM__UNROLL(4)
    for (int j = 0; j < nt; j++) {
        y[j] = (const realm_block_q8_K *)(r->x + (size_t)j * r->x_stride);
        acc[j] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < r->kc / REALM_QK_K; b++) {
        const kpanel *p = &P[b];
        __m256 fs[NR];
        REALM__UNROLL(4)
        for (int j = 0; j < nt; j++)
            fs[j] = _mm256_setzero_ps();
        for (int s = 0; s < nsub; s++) {
            __m256i is[NR];
            REALM__UNROLL(8)
            for (int t0 = 0; t0 < S / 4; t0 += G) {
                __m256i h[NR];
                const int q0 = s * (S / 4) + t0;
                REALM__UNROLL(4)
                for (int j = 0; j < nt; j++)
                    h[j] = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)p->q[q0]),
                                                bcast32(y[j][b].qs + 4 * q0));
                /* rolled: unrolled, GCC hoists every vpmaddubsw and spills */
                REALM__UNROLL(1)
                for (int qi = q0 + 1; qi < q0 + G; qi++) {
                    const __m256i w = _mm256_load_si256((const __m256i *)p->q[qi]);
                    REALM__UNROLL(4)
                    for (int j = 0; j < nt; j++)
                        h[j] = _mm256_add_epi16(
                            h[j], _mm256_maddubs_epi16(w, bcast32(y[j][b].qs + 4 * qi)));
                }
                REALM__UNROLL(4)
                for (int j = 0; j < nt; j++) {
                    const __m256i v = _mm256_madd_epi16(h[j], ones);
                    is[j] = t0 == 0 ? v : _mm256_add_epi32(is[j], v);
                }
            }
            if (z != 0) {
                const __m256i zw = S == 16 && (s & 1) ? z_odd : z_even;
                const int g = S == 16 ? s & ~1 : 2 * s;
                REALM__UNROLL(4)
                for (int j = 0; j < nt; j++)
                    is[j] =
                        _mm256_add_epi32(is[j], _mm256_madd_epi16(zw, bcast32(y[j][b].bsums + g)));
            }
            const __m256 a = _mm256_load_ps(p->a[s]);
            REALM__UNROLL(4)
            for (int j = 0; j < nt; j++)
                fs[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[j]), a, fs[j]);
        }
        if (mins) {
            __m256i ms[NR];
            REALM__UNROLL(4)
            for (int j = 0; j < nt; j++)
                ms[j] = _mm256_setzero_si256();
            REALM__UNROLL(1)
            for (int t = 0; t < 8; t++) {
                const __m256i w = _mm256_load_si256((const __m256i *)p->m[t]);
                REALM__UNROLL(4)
                for (int j = 0; j < nt; j++)
                    ms[j] = _mm256_add_epi32(ms[j],
                                             _mm256_madd_epi16(w, bcast32(y[j][b].bsums + 2 * t)));
            }
            const __m256 dmin = _mm256_load_ps(p->dmin);
            REALM__UNROLL(4)
            for (int j = 0; j < nt; j++)
                fs[j] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms[j]), dmin, fs[j]);
        }
        REALM__UNROLL(4)
        for (int j = 0; j < nt; j++)
            acc[j] = _mm256_fmadd_ps(fs[j], _mm256_set1_ps(y[j][b].d), acc[j]);
    }
    REALM__UNROLL(4)
    for (int j = 0; j < nt; j++)
        store_out(r, j, acc[j]);
}

/* Q4_K/Q5_K scales and mins of 8 rows (see k4_scales16 in matmul_avx512.c). */
static inline void k4_scales8(__m256i off, const uint8_t *s, __m256i sc[2], __m256i mn[2])
{
    const __m256i a = gather(off, s), b = gather(off, s + 4), c = gather(off, s + 8);
    const __m256i k6 = _mm256_set1_epi8(0x3f), k4 = _mm256_set1_epi8(0x0f);
    const __m256i k2 = _mm256_set1_epi8(0x30);
    sc[0] = _mm256_and_si256(a, k6);
    sc[1] = _mm256_or_si256(_mm256_and_si256(c, k4), _mm256_and_si256(_mm256_srli_epi32(a, 2), k2));
    mn[0] = _mm256_and_si256(b, k6);
    mn[1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(c, 4), k4),
                            _mm256_and_si256(_mm256_srli_epi32(b, 2), k2));
}

static inline void k4_panel_scales(kpanel *p, __m256 d, __m256 dmin, const __m256i sc[2],
                                   const __m256i mn[2])
{
    REALM__UNROLL(8)
    for (int s = 0; s < 8; s++) {
        _mm256_store_ps(p->a[s], _mm256_mul_ps(byte_f(sc[s / 4], s % 4), d));
        const __m256i m = byte_u(mn[s / 4], s % 4);
        store256(p->m[s], _mm256_or_si256(m, _mm256_slli_epi32(m, 16)));
    }
    _mm256_store_ps(p->dmin, dmin);
}

static void pack_q4_K(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    kpanel *P = vp;
    const __m256i off = row_offsets(row_size, rows);
    for (int64_t b = 0; b < kc / REALM_QK_K; b++) {
        const size_t xo = (size_t)b * sizeof(realm_block_q4_K);
        kpanel *p = &P[b];
        const __m256i dd = gather(off, w + xo);
        __m256i sc[2], mn[2];
        k4_scales8(off, w + xo + offsetof(realm_block_q4_K, scales), sc, mn);
        k4_panel_scales(p, half_lo(dd), half_hi(dd), sc, mn);
        /* 32 bytes of qs are chunk j: low nibbles columns 64j + l, high 64j + 32 + l */
        REALM__UNROLL(4)
        for (int j = 0; j < 4; j++) {
            __m256i a[8];
            load_t(a, w, row_size, rows, xo + offsetof(realm_block_q4_K, qs) + 32 * j);
            REALM__UNROLL(8)
            for (int i = 0; i < 8; i++) {
                store256(p->q[16 * j + i], nib_lo(a[i]));
                store256(p->q[16 * j + 8 + i], nib_hi(a[i]));
            }
        }
    }
}

static void pack_q5_K(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    kpanel *P = vp;
    const __m256i off = row_offsets(row_size, rows);
    for (int64_t b = 0; b < kc / REALM_QK_K; b++) {
        const size_t xo = (size_t)b * sizeof(realm_block_q5_K);
        kpanel *p = &P[b];
        const __m256i dd = gather(off, w + xo);
        __m256i sc[2], mn[2];
        k4_scales8(off, w + xo + offsetof(realm_block_q5_K, scales), sc, mn);
        k4_panel_scales(p, half_lo(dd), half_hi(dd), sc, mn);
        __m256i hb[8];
        load_t(hb, w, row_size, rows, xo + offsetof(realm_block_q5_K, qh));
        REALM__UNROLL(4)
        for (int j = 0; j < 4; j++) {
            __m256i a[8];
            load_t(a, w, row_size, rows, xo + offsetof(realm_block_q5_K, qs) + 32 * j);
            REALM__UNROLL(8)
            for (int i = 0; i < 8; i++) {
                store256(p->q[16 * j + i],
                         _mm256_or_si256(nib_lo(a[i]), bit_move(hb[i], 2 * j, 4)));
                store256(p->q[16 * j + 8 + i],
                         _mm256_or_si256(nib_hi(a[i]), bit_move(hb[i], 2 * j + 1, 4)));
            }
        }
    }
}

static void pack_q6_K(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    kpanel *P = vp;
    const __m256i off = row_offsets(row_size, rows);
    const __m256i m30 = _mm256_set1_epi8(0x30);
    for (int64_t b = 0; b < kc / REALM_QK_K; b++) {
        const size_t xo = (size_t)b * sizeof(realm_block_q6_K);
        kpanel *p = &P[b];
        const __m256 d = half_hi(gather(off, w + xo + offsetof(realm_block_q6_K, d) - 2));
        REALM__UNROLL(4)
        for (int k = 0; k < 4; k++) {
            const __m256i g = gather(off, w + xo + offsetof(realm_block_q6_K, scales) + 4 * k);
            REALM__UNROLL(4)
            for (int i = 0; i < 4; i++) {
                const __m256i s = _mm256_srai_epi32(_mm256_slli_epi32(g, 24 - 8 * i), 24);
                _mm256_store_ps(p->a[4 * k + i], _mm256_mul_ps(_mm256_cvtepi32_ps(s), d));
            }
        }
        REALM__UNROLL(2)
        for (int h = 0; h < 2; h++) {
            __m256i l0[8], l1[8], hb[8];
            load_t(l0, w, row_size, rows, xo + offsetof(realm_block_q6_K, ql) + 64 * h);
            load_t(l1, w, row_size, rows, xo + offsetof(realm_block_q6_K, ql) + 64 * h + 32);
            load_t(hb, w, row_size, rows, xo + offsetof(realm_block_q6_K, qh) + 32 * h);
            REALM__UNROLL(8)
            for (int i = 0; i < 8; i++) {
                const int q = 32 * h + i;
                store256(p->q[q],
                         _mm256_or_si256(nib_lo(l0[i]),
                                         _mm256_and_si256(_mm256_slli_epi32(hb[i], 4), m30)));
                store256(p->q[q + 8],
                         _mm256_or_si256(nib_lo(l1[i]),
                                         _mm256_and_si256(_mm256_slli_epi32(hb[i], 2), m30)));
                store256(p->q[q + 16],
                         _mm256_or_si256(nib_hi(l0[i]), _mm256_and_si256(hb[i], m30)));
                store256(p->q[q + 24],
                         _mm256_or_si256(nib_hi(l1[i]),
                                         _mm256_and_si256(_mm256_srli_epi32(hb[i], 2), m30)));
            }
        }
    }
}

static void pack_q3_K(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    kpanel *P = vp;
    const __m256i off = row_offsets(row_size, rows);
    const __m256i k4 = _mm256_set1_epi8(0x0f), k2 = _mm256_set1_epi8(0x03);
    for (int64_t b = 0; b < kc / REALM_QK_K; b++) {
        const size_t xo = (size_t)b * sizeof(realm_block_q3_K);
        kpanel *p = &P[b];
        const __m256 d = half_hi(gather(off, w + xo + offsetof(realm_block_q3_K, d) - 2));
        const uint8_t *s = w + xo + offsetof(realm_block_q3_K, scales);
        const __m256i a0 = gather(off, s), a1 = gather(off, s + 4), t = gather(off, s + 8);
        __m256i sc[4];
        sc[0] = _mm256_or_si256(_mm256_and_si256(a0, k4),
                                _mm256_slli_epi32(_mm256_and_si256(t, k2), 4));
        sc[1] =
            _mm256_or_si256(_mm256_and_si256(a1, k4),
                            _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(t, 2), k2), 4));
        sc[2] =
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(a0, 4), k4),
                            _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(t, 4), k2), 4));
        sc[3] =
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(a1, 4), k4),
                            _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(t, 6), k2), 4));
        REALM__UNROLL(16)
        for (int i = 0; i < 16; i++) {
            const __m256i v = _mm256_sub_epi32(byte_u(sc[i / 4], i % 4), _mm256_set1_epi32(32));
            _mm256_store_ps(p->a[i], _mm256_mul_ps(_mm256_cvtepi32_ps(v), d));
        }
        __m256i hm[8];
        load_t(hm, w, row_size, rows, xo + offsetof(realm_block_q3_K, hmask));
        REALM__UNROLL(2)
        for (int h = 0; h < 2; h++) {
            __m256i q[8];
            load_t(q, w, row_size, rows, xo + offsetof(realm_block_q3_K, qs) + 32 * h);
            REALM__UNROLL(8)
            for (int i = 0; i < 8; i++) {
                REALM__UNROLL(4)
                for (int g = 0; g < 4; g++) {
                    const __m256i lo = _mm256_and_si256(_mm256_srli_epi32(q[i], 2 * g), k2);
                    store256(p->q[32 * h + 8 * g + i],
                             _mm256_or_si256(lo, bit_move(hm[i], 4 * h + g, 2)));
                }
            }
        }
    }
}

static void pack_q2_K(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    kpanel *P = vp;
    const __m256i off = row_offsets(row_size, rows);
    const __m256i k2 = _mm256_set1_epi8(0x03), k4 = _mm256_set1_epi32(0x0f);
    for (int64_t b = 0; b < kc / REALM_QK_K; b++) {
        const size_t xo = (size_t)b * sizeof(realm_block_q2_K);
        kpanel *p = &P[b];
        const __m256i dd = gather(off, w + xo + offsetof(realm_block_q2_K, d));
        const __m256 d = half_lo(dd);
        REALM__UNROLL(4)
        for (int k = 0; k < 4; k++) {
            const __m256i g = gather(off, w + xo + offsetof(realm_block_q2_K, scales) + 4 * k);
            REALM__UNROLL(4)
            for (int i = 0; i < 4; i++) {
                const __m256i sc = _mm256_and_si256(_mm256_srli_epi32(g, 8 * i), k4);
                _mm256_store_ps(p->a[4 * k + i], _mm256_mul_ps(_mm256_cvtepi32_ps(sc), d));
            }
            REALM__UNROLL(2)
            for (int i = 0; i < 2; i++) {
                const __m256i v = _mm256_srli_epi32(g, 16 * i);
                const __m256i m0 = _mm256_and_si256(_mm256_srli_epi32(v, 4), k4);
                const __m256i m1 = _mm256_and_si256(_mm256_srli_epi32(v, 12), k4);
                store256(p->m[2 * k + i], _mm256_or_si256(m0, _mm256_slli_epi32(m1, 16)));
            }
        }
        _mm256_store_ps(p->dmin, half_hi(dd));
        REALM__UNROLL(2)
        for (int h = 0; h < 2; h++) {
            __m256i q[8];
            load_t(q, w, row_size, rows, xo + offsetof(realm_block_q2_K, qs) + 32 * h);
            REALM__UNROLL(8)
            for (int i = 0; i < 8; i++) {
                REALM__UNROLL(4)
                for (int g = 0; g < 4; g++)
                    store256(p->q[32 * h + 8 * g + i],
                             _mm256_and_si256(_mm256_srli_epi32(q[i], 2 * g), k2));
            }
        }
    }
}

/* A K-quant's micro-kernel and table entry: sub-blocks of S, code offset z,
 * mins, int16 groups of G. */
#define K_TYPE(name, S, z, mins, G)                                                                \
    static void run_##name(const realm__mm_run *r)                                                 \
    {                                                                                              \
        FOR_TOKEN_COUNT(r, k_run, S, z, mins, G);                                                  \
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

K_TYPE(q4_K, 32, 0, true, 8)
K_TYPE(q5_K, 32, 0, true, 4)
K_TYPE(q6_K, 16, 32, false, 2)
K_TYPE(q3_K, 16, 4, false, 4)
K_TYPE(q2_K, 16, 0, true, 4)

/* ---- 32-element blocks · Q8_0 -------------------------------------------------- */

/* As bpanel in matmul_avx512.c, 8 rows; Q8_0 keeps its signed codes. */
typedef struct {
    uint8_t q[8][32];
    float d[8];
    float m[8];
} bpanel;
_Static_assert(sizeof(bpanel) % 32 == 0, "bpanel keeps 32-byte alignment");
_Static_assert(sizeof(bpanel) * KC_32 / 32 <= REALM__MM_PANEL_MAX, "block panel fits");

typedef struct {
    float d;
    union {
        int32_t corr;
        float dsum;
    } u;
} bact;
_Static_assert(sizeof(bact) * TILE * KC_32 / 32 <= REALM__MM_ACT_MAX, "block act scratch fits");

/*
 * kind 0: unsigned codes with offset (corr), G vpmaddubsw per int16 sum;
 * kind 1: unsigned codes with a min; kind 2: signed codes (Q8_0).
 */
INLINE void b_run(const realm__mm_run *r, const int kind, const int G, const int nt)
{
    const bpanel *P = r->panel;
    const __m256i ones = _mm256_set1_epi16(1);
    const realm_block_q8_0 *y[NR];
    const bact *c[NR];
    __m256 acc[NR];
    REALM__UNROLL(4)
    for (int j = 0; j < nt; j++) {
        y[j] = (const realm_block_q8_0 *)(r->x + (size_t)j * r->x_stride);
        c[j] = (const bact *)(r->xs + (size_t)j * r->xs_stride);
        acc[j] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < r->kc / 32; b++) {
        const bpanel *p = &P[b];
        __m256i is[NR];
        if (kind == 2) {
            REALM__UNROLL(4)
            for (int j = 0; j < nt; j++)
                is[j] = _mm256_setzero_si256();
            REALM__UNROLL(1)
            for (int t = 0; t < 8; t++) {
                const __m256i w = _mm256_load_si256((const __m256i *)p->q[t]);
                const __m256i wa = _mm256_sign_epi8(w, w);
                REALM__UNROLL(4)
                for (int j = 0; j < nt; j++) {
                    const __m256i ys = _mm256_sign_epi8(bcast32(y[j][b].qs + 4 * t), w);
                    is[j] = _mm256_add_epi32(is[j],
                                             _mm256_madd_epi16(_mm256_maddubs_epi16(wa, ys), ones));
                }
            }
        } else {
            REALM__UNROLL(8)
            for (int t0 = 0; t0 < 8; t0 += G) {
                __m256i h[NR];
                REALM__UNROLL(4)
                for (int j = 0; j < nt; j++)
                    h[j] = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)p->q[t0]),
                                                bcast32(y[j][b].qs + 4 * t0));
                REALM__UNROLL(1)
                for (int t = t0 + 1; t < t0 + G; t++) {
                    const __m256i w = _mm256_load_si256((const __m256i *)p->q[t]);
                    REALM__UNROLL(4)
                    for (int j = 0; j < nt; j++)
                        h[j] = _mm256_add_epi16(
                            h[j], _mm256_maddubs_epi16(w, bcast32(y[j][b].qs + 4 * t)));
                }
                REALM__UNROLL(4)
                for (int j = 0; j < nt; j++) {
                    const __m256i v = _mm256_madd_epi16(h[j], ones);
                    is[j] = t0 == 0 ? v : _mm256_add_epi32(is[j], v);
                }
            }
        }
        const __m256 d = _mm256_load_ps(p->d);
        REALM__UNROLL(4)
        for (int j = 0; j < nt; j++) {
            __m256i v = is[j];
            if (kind == 0)
                v = _mm256_sub_epi32(v, _mm256_set1_epi32(c[j][b].u.corr));
            const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(c[j][b].d));
            acc[j] = _mm256_fmadd_ps(f, d, acc[j]);
        }
        if (kind == 1) {
            const __m256 m = _mm256_load_ps(p->m);
            REALM__UNROLL(4)
            for (int j = 0; j < nt; j++)
                acc[j] = _mm256_fmadd_ps(m, _mm256_set1_ps(c[j][b].u.dsum), acc[j]);
        }
    }
    REALM__UNROLL(4)
    for (int j = 0; j < nt; j++)
        store_out(r, j, acc[j]);
}

/* dy and z * sum(y) (zshift >= 0) or dy * sum(y) (zshift < 0) per block. */
INLINE void b_pack_act(const uint8_t *x, int64_t kc, void *xs, const int zshift)
{
    const realm_block_q8_0 *y = (const realm_block_q8_0 *)x;
    bact *c = xs;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < kc / 32; b++) {
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

static void act_min(const uint8_t *x, int64_t kc, void *xs)
{
    b_pack_act(x, kc, xs, -1);
}

/* Q8_0 needs only dy: its codes are signed (corr unused). */
static void act_d(const uint8_t *x, int64_t kc, void *xs)
{
    b_pack_act(x, kc, xs, 0);
}

/*
 * The 16 bytes at qs_off of blocks [0, nb) (low nibbles: columns j, high:
 * j + 16) into p[b].q: two blocks per row and vector, transposed; an odd
 * last one by gathers.
 */
INLINE void nibbles_32(bpanel *p, const uint8_t *w, size_t row_size, int rows, int64_t nb,
                       size_t bs, size_t qs_off)
{
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m256i a[8];
        REALM__UNROLL(8)
        for (int i = 0; i < 8; i++) {
            const uint8_t *x = panel_row(w, row_size, rows, i) + (size_t)b * bs + qs_off;
            a[i] = _mm256_inserti128_si256(_mm256_castsi128_si256(load128(x)), load128(x + bs), 1);
        }
        transpose8(a);
        REALM__UNROLL(8)
        for (int i = 0; i < 8; i++) {
            store256(p[b + i / 4].q[i % 4], nib_lo(a[i]));
            store256(p[b + i / 4].q[4 + i % 4], nib_hi(a[i]));
        }
    }
    if (b < nb) {
        const __m256i off = row_offsets(row_size, rows);
        REALM__UNROLL(4)
        for (int i = 0; i < 4; i++) {
            const __m256i g = gather(off, w + (size_t)b * bs + qs_off + 4 * i);
            store256(p[b].q[i], nib_lo(g));
            store256(p[b].q[4 + i], nib_hi(g));
        }
    }
}

/* Fifth bits of Q5_0/Q5_1: see fifth_bits_32 in matmul_avx512.c. */
static inline void fifth_bits_32(bpanel *p, __m256i qh)
{
    REALM__UNROLL(8)
    for (int t = 0; t < 8; t++) {
        const __m256i four = _mm256_and_si256(_mm256_srli_epi32(qh, 4 * t), _mm256_set1_epi32(15));
        const __m256i spread = _mm256_and_si256(
            _mm256_mullo_epi32(four, _mm256_set1_epi32(0x00204081)), _mm256_set1_epi32(0x01010101));
        store256(p->q[t], _mm256_or_si256(load256(p->q[t]), _mm256_slli_epi32(spread, 4)));
    }
}

static void pack_q4_0(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    bpanel *P = vp;
    const __m256i off = row_offsets(row_size, rows);
    for (int64_t b = 0; b < kc / 32; b++)
        _mm256_store_ps(P[b].d, half_lo(gather(off, w + b * sizeof(realm_block_q4_0))));
    nibbles_32(P, w, row_size, rows, kc / 32, sizeof(realm_block_q4_0),
               offsetof(realm_block_q4_0, qs));
}

static void pack_q5_0(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    bpanel *P = vp;
    const __m256i off = row_offsets(row_size, rows);
    nibbles_32(P, w, row_size, rows, kc / 32, sizeof(realm_block_q5_0),
               offsetof(realm_block_q5_0, qs));
    for (int64_t b = 0; b < kc / 32; b++) {
        const uint8_t *x = w + b * sizeof(realm_block_q5_0);
        _mm256_store_ps(P[b].d, half_lo(gather(off, x)));
        fifth_bits_32(&P[b], gather(off, x + offsetof(realm_block_q5_0, qh)));
    }
}

static void pack_q4_1(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    bpanel *P = vp;
    const __m256i off = row_offsets(row_size, rows);
    nibbles_32(P, w, row_size, rows, kc / 32, sizeof(realm_block_q4_1),
               offsetof(realm_block_q4_1, qs));
    for (int64_t b = 0; b < kc / 32; b++) {
        const __m256i dm = gather(off, w + b * sizeof(realm_block_q4_1));
        _mm256_store_ps(P[b].d, half_lo(dm));
        _mm256_store_ps(P[b].m, half_hi(dm));
    }
}

static void pack_q5_1(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    bpanel *P = vp;
    const __m256i off = row_offsets(row_size, rows);
    nibbles_32(P, w, row_size, rows, kc / 32, sizeof(realm_block_q5_1),
               offsetof(realm_block_q5_1, qs));
    for (int64_t b = 0; b < kc / 32; b++) {
        const uint8_t *x = w + b * sizeof(realm_block_q5_1);
        const __m256i dm = gather(off, x);
        _mm256_store_ps(P[b].d, half_lo(dm));
        _mm256_store_ps(P[b].m, half_hi(dm));
        fifth_bits_32(&P[b], gather(off, x + offsetof(realm_block_q5_1, qh)));
    }
}

static void pack_q8_0(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    bpanel *P = vp;
    const __m256i off = row_offsets(row_size, rows);
    for (int64_t b = 0; b < kc / 32; b++) {
        const size_t xo = (size_t)b * sizeof(realm_block_q8_0);
        _mm256_store_ps(P[b].d, half_lo(gather(off, w + xo)));
        __m256i a[8];
        load_t(a, w, row_size, rows, xo + offsetof(realm_block_q8_0, qs));
        REALM__UNROLL(8)
        for (int i = 0; i < 8; i++)
            store256(P[b].q[i], a[i]);
    }
}

#define B_TYPE(name, kind, G, act)                                                                 \
    static void run_##name(const realm__mm_run *r)                                                 \
    {                                                                                              \
        FOR_TOKEN_COUNT(r, b_run, kind, G);                                                        \
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

B_TYPE(q4_0, 0, 8, act_z3)
B_TYPE(q5_0, 0, 4, act_z4)
B_TYPE(q4_1, 1, 8, act_min)
B_TYPE(q5_1, 1, 4, act_min)
B_TYPE(q8_0, 2, 1, act_d)

/* ---- plain floats ----------------------------------------------------------------- */

_Static_assert(sizeof(float) * KC_F32 * PR <= REALM__MM_PANEL_MAX, "f32 panel fits");
_Static_assert(sizeof(float) * KC_F16 * PR <= REALM__MM_PANEL_MAX, "f16 panel fits");
_Static_assert(sizeof(float) * TILE * KC_F16 <= REALM__MM_ACT_MAX, "f16 act scratch fits");

INLINE void f_run(const realm__mm_run *r, const bool packed, const int nt)
{
    const float *W = r->panel;
    const float *x[NR];
    __m256 acc[NR];
    REALM__UNROLL(4)
    for (int j = 0; j < nt; j++) {
        x[j] = packed ? (const float *)(r->xs + (size_t)j * r->xs_stride)
                      : (const float *)(r->x + (size_t)j * r->x_stride);
        acc[j] = _mm256_setzero_ps();
    }
    REALM__UNROLL(2)
    for (int64_t k = 0; k < r->kc; k++) {
        const __m256 w = _mm256_load_ps(W + 8 * k);
        REALM__UNROLL(4)
        for (int j = 0; j < nt; j++)
            acc[j] = _mm256_fmadd_ps(w, _mm256_broadcast_ss(x[j] + k), acc[j]);
    }
    REALM__UNROLL(4)
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

/* w[k] = column k of the 8 rows, as floats: 8 columns of 8 rows transposed. */
static void pack_f32(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)
{
    float *P = vp;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256i a[8];
        REALM__UNROLL(8)
        for (int i = 0; i < 8; i++)
            a[i] = load256(panel_row(w, row_size, rows, i) + 4 * k);
        transpose8(a);
        REALM__UNROLL(8)
        for (int i = 0; i < 8; i++)
            store256(P + 8 * (k + i), a[i]);
    }
    for (; k < kc; k++)
        for (int i = 0; i < PR; i++)
            memcpy(P + 8 * k + i, panel_row(w, row_size, rows, i) + 4 * k, 4);
}

/* 16-bit floats: 16 columns of 8 rows, widened and transposed. */
#define PACK_HALVES(name, widen, one)                                                              \
    static void pack_##name(const uint8_t *w, size_t row_size, int rows, int64_t kc, void *vp)     \
    {                                                                                              \
        float *P = vp;                                                                             \
        int64_t k = 0;                                                                             \
        for (; k + 16 <= kc; k += 16) {                                                            \
            __m256i lo[8], hi[8];                                                                  \
            REALM__UNROLL(8)                                                                       \
            for (int i = 0; i < 8; i++) {                                                          \
                const uint8_t *x = panel_row(w, row_size, rows, i) + 2 * k;                        \
                lo[i] = _mm256_castps_si256(widen(load128(x)));                                    \
                hi[i] = _mm256_castps_si256(widen(load128(x + 16)));                               \
            }                                                                                      \
            transpose8(lo);                                                                        \
            transpose8(hi);                                                                        \
            REALM__UNROLL(8)                                                                       \
            for (int i = 0; i < 8; i++) {                                                          \
                store256(P + 8 * (k + i), lo[i]);                                                  \
                store256(P + 8 * (k + 8 + i), hi[i]);                                              \
            }                                                                                      \
        }                                                                                          \
        for (; k < kc; k++) {                                                                      \
            for (int i = 0; i < PR; i++) {                                                         \
                uint16_t h;                                                                        \
                memcpy(&h, panel_row(w, row_size, rows, i) + 2 * k, 2);                            \
                P[8 * k + i] = one(h);                                                             \
            }                                                                                      \
        }                                                                                          \
    }

static inline __m256 widen_f16(__m128i h)
{
    return _mm256_cvtph_ps(h);
}

static inline __m256 widen_bf16(__m128i h)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

PACK_HALVES(f16, widen_f16, realm_fp16_to_fp32)
PACK_HALVES(bf16, widen_bf16, realm_bf16_to_fp32)

#define ACT_HALVES(name, widen, one)                                                               \
    static void act_##name(const uint8_t *x, int64_t kc, void *xs)                                 \
    {                                                                                              \
        float *y = xs;                                                                             \
        int64_t i = 0;                                                                             \
        for (; i + 8 <= kc; i += 8)                                                                \
            _mm256_store_ps(y + i, widen(load128(x + 2 * i)));                                     \
        for (; i < kc; i++) {                                                                      \
            uint16_t h;                                                                            \
            memcpy(&h, x + 2 * i, 2);                                                              \
            y[i] = one(h);                                                                         \
        }                                                                                          \
    }

ACT_HALVES(f16, widen_f16, realm_fp16_to_fp32)
ACT_HALVES(bf16, widen_bf16, realm_bf16_to_fp32)

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

/* IQ4_NL, IQ4_XS and Q8_K weights (signed codes wider than 4 bits) use the
 * vec_dot loop on AVX2. */
const realm__mm_kernel *const realm__mm_avx2[REALM_TYPE_COUNT] = {
    [REALM_TYPE_F32] = &mm_f32,   [REALM_TYPE_F16] = &mm_f16,   [REALM_TYPE_BF16] = &mm_bf16,
    [REALM_TYPE_Q4_0] = &mm_q4_0, [REALM_TYPE_Q4_1] = &mm_q4_1, [REALM_TYPE_Q5_0] = &mm_q5_0,
    [REALM_TYPE_Q5_1] = &mm_q5_1, [REALM_TYPE_Q8_0] = &mm_q8_0, [REALM_TYPE_Q2_K] = &mm_q2_K,
    [REALM_TYPE_Q3_K] = &mm_q3_K, [REALM_TYPE_Q4_K] = &mm_q4_K, [REALM_TYPE_Q5_K] = &mm_q5_K,
    [REALM_TYPE_Q6_K] = &mm_q6_K,
};
