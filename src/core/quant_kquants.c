/*
 * K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K): scalar reference quantizers and
 * dequantizers over 256-value super-blocks.
 *
 * Each super-block has an fp16 scale d (and for the asymmetric types an fp16
 * dmin) and per-sub-block integer scales (and mins). Quantizing is two-level:
 * first a float scale (and min) is searched for each sub-block, then those
 * are themselves quantized against the super-block's d / dmin, and finally
 * every value is re-rounded against the sub-block scale it will really get.
 *
 * The searches are those llama.cpp's quantize_row_qX_K_ref use, which is
 * what `llama-quantize` runs when no importance matrix is given:
 *   Q2_K  min/scale least-squares sweep, weights |x|, minimising |error|
 *   Q3_K  symmetric, weights x^2, coordinate descent on the codes
 *   Q4_K  min/scale least-squares sweep, weights rms(x) + |x|, squared error
 *   Q5_K  as Q4_K with 32 levels
 *   Q6_K  symmetric, weights x^2, sweep of 19 candidate scales
 * Floating-point expressions keep ggml's operation order, so the results
 * match llama.cpp's bytes, not merely its error.
 *
 * Dequantization is bit-exact with ggml's to_float: each value is
 * (d * sub_scale) * q - (dmin * sub_min), the products formed in that order.
 */
#include <math.h>
#include <string.h>

#include "quant_internal.h"

/* The reference results (and byte-identity with llama.cpp's files) must not
 * depend on whether the compiler fuses a * b + c into an FMA. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define QK REALM_QK_K

/* Below this a group counts as all zero (ggml's GROUP_MAX_EPS). */
#define GROUP_EPS 1e-15f

static inline int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Pack 256 2-bit codes: byte l of 32-byte half h holds elements
 * 128h + l, +32, +64, +96 in bits 0-1, 2-3, 4-5, 6-7. */
static void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int h = 0; h < 2; h++) {
        for (int l = 0; l < 32; l++) {
            const uint8_t *p = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)(p[0] | p[32] << 2 | p[64] << 4 | p[96] << 6);
        }
    }
}

/* ---- scale searches --------------------------------------------------------- */

/*
 * Asymmetric fit x ~ scale * l + min, l in [0, nmax], min <= 0, minimising
 * sum w * err^2 (or sum w * |err| when use_mad). Start from the plain
 * [min(x, 0), max(x)] grid; then for nstep + 1 trial inverse scales
 * (nmax + rmin + rdelta * k) / (max - min) round the codes and solve the
 * weighted 2x2 least-squares problem for (scale, min) in closed form:
 *     D     = Sw * Sll - Sl^2
 *     scale = (Sw * Sxl - Sx * Sl) / D
 *     min   = (Sll * Sx - Sl * Sxl) / D
 * (if that min is positive, min = 0 and scale = Sxl / Sll), keeping the
 * trial with the lowest error. Writes the codes to L, -min to *neg_min, and
 * returns the scale. Laux is scratch for n codes.
 */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *neg_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                           int use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_err = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(realm__nearest_int(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_err += w[i] * diff;
    }
    for (int k = 0; k <= nstep; k++) {
        iscale = (rmin + rdelta * (float)k + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(realm__nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0))
            continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * (float)Laux[i] + this_min - x[i];
            diff = use_mad ? fabsf(diff) : diff * diff;
            err += w[i] * diff;
        }
        if (err < best_err) {
            memcpy(L, Laux, (size_t)n);
            best_err = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *neg_min = -min;
    return scale;
}

/*
 * Symmetric fit x ~ scale * l, l in [-nmax, nmax - 1], weights x^2 (Q6_K).
 * `max` is the value of largest magnitude with its sign; it is mapped to
 * -nmax. For the inverse scale -(nmax + 0.1 k) / max, k = 0, +-1 .. +-9,
 * the codes are rounded and the least-squares scale Slx / Sll computed;
 * the trial maximising Slx^2 / Sll (the error reduction) wins. Codes are
 * stored offset by nmax (0 .. 2 nmax - 1); returns the scale.
 */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = clampi(realm__nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int k = -9; k <= 9; k++) {
        if (k == 0)
            continue;
        iscale = -((float)nmax + 0.1f * (float)k) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(realm__nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + clampi(realm__nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/*
 * Symmetric fit for Q3_K: codes l in [-nmax, nmax - 1], weights x^2. Start
 * from the codes of the inverse scale -nmax / max, then up to 5 sweeps of
 * coordinate descent: for each element, the code that best fits it under
 * the least-squares scale of all the others, accepted when it raises the
 * error reduction Slx^2 / Sll. Codes stored offset by nmax; returns the
 * least-squares scale Slx / Sll.
 */
static float fit_scale_q3(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = clampi(realm__nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int sweep = 0; sweep < 5; sweep++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (!(slx > 0))
                continue;
            float sl2 = suml2 - w * (float)L[i] * (float)L[i];
            const int l = clampi(realm__nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
            if (l == L[i])
                continue;
            slx += w * x[i] * (float)l;
            sl2 += w * (float)l * (float)l;
            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (int8_t)l;
                sumlx = slx;
                suml2 = sl2;
                changed++;
            }
        }
        if (!changed)
            break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0 ? sumlx / suml2 : 0.0f;
}

/* ---- Q2_K -------------------------------------------------------------------- */

void realm__dequantize_q2_K(const void *src, float *dst, int64_t n)
{
    const realm_block_q2_K *b = src;
    for (int64_t i = 0; i < n / QK; i++, b++) {
        const float d = realm_fp16_to_fp32(b->d);
        const float dmin = realm_fp16_to_fp32(b->dmin);
        for (int e = 0; e < QK; e += 16) {
            const uint8_t sc = b->scales[e / 16];
            const float dl = d * (float)(sc & 0x0f);
            const float ml = dmin * (float)(sc >> 4);
            const int half = e / 128, shift = 2 * ((e % 128) / 32), l0 = e % 32;
            const uint8_t *q = b->qs + 32 * half + l0;
            for (int l = 0; l < 16; l++)
                *dst++ = dl * (float)((q[l] >> shift) & 3) - ml;
        }
    }
}

/*
 * Q2_K: 16 sub-blocks of 16. Each gets fit_scale_min with 4 levels, weights
 * |x| and least absolute error, trying the 16 inverse scales
 * (3 - 0.5 + 0.1 k) / range. Sub-block scales and mins are quantized to
 * 4 bits against d = max_scale / 15 and dmin = max_min / 15, then each value
 * is re-rounded: l = nearest_int((x + dmin * m) / (d * s)) in [0, 3]
 * (a sub-block whose stored scale is 0 keeps its first-stage codes).
 */
void realm__quantize_q2_K(const float *src, void *dst, int64_t n)
{
    realm_block_q2_K *b = dst;
    uint8_t L[QK], Laux[16];
    float w[16], scales[QK / 16], mins[QK / 16];
    for (int64_t i = 0; i < n / QK; i++, b++, src += QK) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK / 16; j++) {
            for (int l = 0; l < 16; l++)
                w[l] = fabsf(src[16 * j + l]);
            scales[j] = fit_scale_min(16, 3, src + 16 * j, w, L + 16 * j, &mins[j], Laux, -0.5f,
                                      0.1f, 15, 1);
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = 15.0f / max_scale;
            for (int j = 0; j < QK / 16; j++)
                b->scales[j] = (uint8_t)clampi(realm__nearest_int(iscale * scales[j]), 0, 15);
            b->d = realm_fp32_to_fp16(max_scale / 15.0f);
        } else {
            memset(b->scales, 0, sizeof b->scales);
            b->d = realm_fp32_to_fp16(0.0f);
        }
        if (max_min > 0) {
            const float iscale = 15.0f / max_min;
            for (int j = 0; j < QK / 16; j++) {
                const int l = clampi(realm__nearest_int(iscale * mins[j]), 0, 15);
                b->scales[j] |= (uint8_t)(l << 4);
            }
            b->dmin = realm_fp32_to_fp16(max_min / 15.0f);
        } else {
            b->dmin = realm_fp32_to_fp16(0.0f);
        }
        const float d = realm_fp16_to_fp32(b->d), dmin = realm_fp16_to_fp32(b->dmin);
        for (int j = 0; j < QK / 16; j++) {
            const float dl = d * (float)(b->scales[j] & 0x0f);
            if (dl == 0)
                continue;
            const float ml = dmin * (float)(b->scales[j] >> 4);
            for (int l = 0; l < 16; l++)
                L[16 * j + l] =
                    (uint8_t)clampi(realm__nearest_int((src[16 * j + l] + ml) / dl), 0, 3);
        }
        pack_2bit(L, b->qs);
    }
}

/* ---- Q3_K -------------------------------------------------------------------- */

/* Sub-block j's 6-bit scale: low 4 bits in scales[j % 8] (high nibble for
 * j >= 8), high 2 bits in scales[8 + j % 4] at bit 2 * (j / 4). */
static int q3_scale(const uint8_t *s, int j)
{
    const int lo = j < 8 ? s[j] & 0x0f : s[j - 8] >> 4;
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return lo | hi << 4;
}

void realm__dequantize_q3_K(const void *src, float *dst, int64_t n)
{
    const realm_block_q3_K *b = src;
    for (int64_t i = 0; i < n / QK; i++, b++) {
        const float d = realm_fp16_to_fp32(b->d);
        for (int e = 0; e < QK; e += 16) {
            const float dl = d * (float)(q3_scale(b->scales, e / 16) - 32);
            const int half = e / 128, sj = (e % 128) / 32, l0 = e % 32;
            const uint8_t *q = b->qs + 32 * half + l0;
            const uint8_t *hm = b->hmask + l0;
            const int hbit = 4 * half + sj;
            for (int l = 0; l < 16; l++) {
                const int v = ((q[l] >> (2 * sj)) & 3) - (((hm[l] >> hbit) & 1) ? 0 : 4);
                *dst++ = dl * (float)v;
            }
        }
    }
}

/*
 * Q3_K: 16 sub-blocks of 16, symmetric codes in [-4, 3]. Sub-block scales
 * come from fit_scale_q3; the one of largest magnitude, with its sign, maps
 * to -32: d = max / -32, stored scales l = nearest_int(-32 s / max) in
 * [-32, 31] as l + 32 (6 bits). Values are re-rounded against d * l. The
 * third code bit goes to hmask: element j at byte j % 32, bit j / 32.
 */
void realm__quantize_q3_K(const float *src, void *dst, int64_t n)
{
    realm_block_q3_K *b = dst;
    int8_t L[QK];
    float scales[QK / 16];
    for (int64_t i = 0; i < n / QK; i++, b++, src += QK) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK / 16; j++) {
            scales[j] = fit_scale_q3(16, 4, src + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(b->scales, 0, sizeof b->scales);
        if (max_scale != 0) {
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < QK / 16; j++) {
                const int l = clampi(realm__nearest_int(iscale * scales[j]), -32, 31) + 32;
                if (j < 8)
                    b->scales[j] = (uint8_t)(l & 0x0f);
                else
                    b->scales[j - 8] |= (uint8_t)((l & 0x0f) << 4);
                b->scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            b->d = realm_fp32_to_fp16(1 / iscale);
        } else {
            b->d = realm_fp32_to_fp16(0.0f);
        }
        const float d = realm_fp16_to_fp32(b->d);
        for (int j = 0; j < QK / 16; j++) {
            const float dl = d * (float)(q3_scale(b->scales, j) - 32);
            if (dl == 0)
                continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] =
                    (int8_t)(clampi(realm__nearest_int(src[16 * j + l] / dl), -4, 3) + 4);
        }
        memset(b->hmask, 0, sizeof b->hmask);
        uint8_t codes[QK];
        for (int j = 0; j < QK; j++) {
            int l = L[j];
            if (l > 3) {
                b->hmask[j % 32] |= (uint8_t)(1u << (j / 32));
                l -= 4;
            }
            codes[j] = (uint8_t)l;
        }
        pack_2bit(codes, b->qs);
    }
}

/* ---- Q4_K / Q5_K shared scale packing --------------------------------------- */

/* The 12-byte scale field of Q4_K / Q5_K: 8 6-bit scales and 8 6-bit mins.
 * Sub-blocks 0-3 sit in the low 6 bits of bytes 0-3 (scale) and 4-7 (min);
 * sub-blocks 4-7 keep their low 4 bits in bytes 8-11 (scale low nibble, min
 * high nibble) and their top 2 bits in bits 6-7 of bytes 0-3 / 4-7. */
static void k4_get_scale_min(const uint8_t *s, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

static void k4_set_scales(uint8_t *s, const int *ls, const int *lm)
{
    memset(s, 0, REALM_K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = (uint8_t)ls[j];
            s[j + 4] = (uint8_t)lm[j];
        } else {
            s[j + 4] = (uint8_t)((ls[j] & 0x0f) | (lm[j] & 0x0f) << 4);
            s[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            s[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/*
 * First stage shared by Q4_K and Q5_K: for each 32-value sub-block,
 * fit_scale_min with weights rms(sub-block) + |x| and squared error; then
 * 6-bit scales against d = max_scale / 63 and mins against
 * dmin = max_min / 63; finally every value re-rounded against the stored
 * d * sc and dmin * m: l = nearest_int((x + dmin m) / (d sc)) in [0, nmax].
 */
static void k4_quantize_block(const float *x, int nmax, float rmin, int nstep, uint8_t *L,
                              uint16_t *d_out, uint16_t *dmin_out, uint8_t *scale_bytes)
{
    uint8_t Laux[32];
    float w[32], scales[8], mins[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += xs[l] * xs[l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            w[l] = av_x + fabsf(xs[l]);
        scales[j] =
            fit_scale_min(32, nmax, xs, w, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, 0);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    int ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = clampi(realm__nearest_int(inv_scale * scales[j]), 0, 63);
        lm[j] = clampi(realm__nearest_int(inv_min * mins[j]), 0, 63);
    }
    k4_set_scales(scale_bytes, ls, lm);
    *d_out = realm_fp32_to_fp16(max_scale / 63.0f);
    *dmin_out = realm_fp32_to_fp16(max_min / 63.0f);
    const float d = realm_fp16_to_fp32(*d_out), dmin = realm_fp16_to_fp32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k4_get_scale_min(scale_bytes, j, &sc, &m);
        const float dl = d * (float)sc;
        if (dl == 0)
            continue;
        const float ml = dmin * (float)m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clampi(realm__nearest_int((x[32 * j + l] + ml) / dl), 0, nmax);
    }
}

/* ---- Q4_K -------------------------------------------------------------------- */

void realm__dequantize_q4_K(const void *src, float *dst, int64_t n)
{
    const realm_block_q4_K *b = src;
    for (int64_t i = 0; i < n / QK; i++, b++) {
        const float d = realm_fp16_to_fp32(b->d);
        const float dmin = realm_fp16_to_fp32(b->dmin);
        for (int p = 0; p < 4; p++) {
            const uint8_t *q = b->qs + 32 * p;
            int sc, m;
            k4_get_scale_min(b->scales, 2 * p, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            k4_get_scale_min(b->scales, 2 * p + 1, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                *dst++ = d1 * (float)(q[l] & 0x0f) - m1;
            for (int l = 0; l < 32; l++)
                *dst++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* Q4_K: k4_quantize_block with 16 levels (trial scales rmin -1, 21 steps);
 * sub-blocks 2p and 2p + 1 share bytes 32p..32p+31 (low / high nibble). */
void realm__quantize_q4_K(const float *src, void *dst, int64_t n)
{
    realm_block_q4_K *b = dst;
    uint8_t L[QK];
    for (int64_t i = 0; i < n / QK; i++, b++, src += QK) {
        k4_quantize_block(src, 15, -1.0f, 20, L, &b->d, &b->dmin, b->scales);
        for (int p = 0; p < 4; p++) {
            for (int l = 0; l < 32; l++)
                b->qs[32 * p + l] = (uint8_t)(L[64 * p + l] | L[64 * p + 32 + l] << 4);
        }
    }
}

/* ---- Q5_K -------------------------------------------------------------------- */

void realm__dequantize_q5_K(const void *src, float *dst, int64_t n)
{
    const realm_block_q5_K *b = src;
    for (int64_t i = 0; i < n / QK; i++, b++) {
        const float d = realm_fp16_to_fp32(b->d);
        const float dmin = realm_fp16_to_fp32(b->dmin);
        for (int p = 0; p < 4; p++) {
            const uint8_t *q = b->qs + 32 * p;
            const uint8_t u1 = (uint8_t)(1u << (2 * p)), u2 = (uint8_t)(2u << (2 * p));
            int sc, m;
            k4_get_scale_min(b->scales, 2 * p, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            k4_get_scale_min(b->scales, 2 * p + 1, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                *dst++ = d1 * (float)((q[l] & 0x0f) + ((b->qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *dst++ = d2 * (float)((q[l] >> 4) + ((b->qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

/* Q5_K: k4_quantize_block with 32 levels (trial scales rmin -0.5, 16
 * steps); low 4 bits as Q4_K, bit 4 of sub-block s's element l in qh[l]
 * bit s. */
void realm__quantize_q5_K(const float *src, void *dst, int64_t n)
{
    realm_block_q5_K *b = dst;
    uint8_t L[QK];
    for (int64_t i = 0; i < n / QK; i++, b++, src += QK) {
        k4_quantize_block(src, 31, -0.5f, 15, L, &b->d, &b->dmin, b->scales);
        memset(b->qh, 0, sizeof b->qh);
        for (int p = 0; p < 4; p++) {
            for (int l = 0; l < 32; l++) {
                const int l1 = L[64 * p + l], l2 = L[64 * p + 32 + l];
                b->qh[l] |= (uint8_t)((l1 >> 4) << (2 * p) | (l2 >> 4) << (2 * p + 1));
                b->qs[32 * p + l] = (uint8_t)((l1 & 0x0f) | (l2 & 0x0f) << 4);
            }
        }
    }
}

/* ---- Q6_K -------------------------------------------------------------------- */

void realm__dequantize_q6_K(const void *src, float *dst, int64_t n)
{
    const realm_block_q6_K *b = src;
    for (int64_t i = 0; i < n / QK; i++, b++) {
        const float d = realm_fp16_to_fp32(b->d);
        for (int h = 0; h < 2; h++, dst += 128) {
            const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
            const int8_t *sc = b->scales + 8 * h;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32;
                const int q2 = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
                const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                dst[l] = d * (float)sc[is] * (float)q1;
                dst[l + 32] = d * (float)sc[is + 2] * (float)q2;
                dst[l + 64] = d * (float)sc[is + 4] * (float)q3;
                dst[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

/*
 * Q6_K: 16 sub-blocks of 16, codes in [-32, 31]. Sub-block scales from
 * fit_scale_sym; the one of largest magnitude, with its sign, maps to -128:
 * d = max / -128, int8 scales nearest_int(-128 s / max) capped at 127.
 * Values re-rounded against d * scale. Layout per 128-value half: element
 * l + 32 k (k = 0..3) has its low nibble in ql[l + 32 (k & 1)] (high nibble
 * when k >= 2) and its top 2 bits in qh[l] at bit 2 k.
 */
void realm__quantize_q6_K(const float *src, void *dst, int64_t n)
{
    realm_block_q6_K *b = dst;
    int8_t L[QK];
    float scales[QK / 16];
    for (int64_t i = 0; i < n / QK; i++, b++, src += QK) {
        float max_scale = 0, max_abs = 0;
        for (int j = 0; j < QK / 16; j++) {
            scales[j] = fit_scale_sym(16, 32, src + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs) {
                max_abs = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (max_abs < GROUP_EPS) {
            memset(b, 0, sizeof *b);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        b->d = realm_fp32_to_fp16(1 / iscale);
        for (int j = 0; j < QK / 16; j++)
            b->scales[j] = (int8_t)clampi(realm__nearest_int(iscale * scales[j]), -128, 127);
        const float d = realm_fp16_to_fp32(b->d);
        for (int j = 0; j < QK / 16; j++) {
            const float dl = d * (float)b->scales[j];
            if (dl == 0)
                continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] =
                    (int8_t)(clampi(realm__nearest_int(src[16 * j + l] / dl), -32, 31) + 32);
        }
        for (int h = 0; h < 2; h++) {
            const int8_t *Lh = L + 128 * h;
            uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                const int c0 = Lh[l], c1 = Lh[l + 32], c2 = Lh[l + 64], c3 = Lh[l + 96];
                ql[l] = (uint8_t)((c0 & 0x0f) | (c2 & 0x0f) << 4);
                ql[l + 32] = (uint8_t)((c1 & 0x0f) | (c3 & 0x0f) << 4);
                qh[l] = (uint8_t)((c0 >> 4) | (c1 >> 4) << 2 | (c2 >> 4) << 4 | (c3 >> 4) << 6);
            }
        }
    }
}
