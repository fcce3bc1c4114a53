/*
 * Pieces of the forward pass against straightforward implementations:
 * the realm_ops kernels of every ISA (fp16 dot/axpy, scale, fp16 store,
 * RMSNorm, SiLU, the exponential, the attention steps over F16 and Q8_0 keys
 * and values), RoPE (normal, NeoX, partial rotation, linear scaling,
 * frequency factors), and attention over a sequence spread across several
 * non-contiguous KV blocks for several GQA shapes and cache types, against a
 * softmax computed in double precision, with its split-K pieces merged
 * giving the same bits; and the prefill tiles over prompts of odd lengths
 * and chunks starting after cached positions, bitwise equal to each
 * token's attention alone and close to double.
 */
#include "model/model_internal.h"
#include "realm/error.h"
#include "test_util.h"

static const int lens[] = {1, 3, 8, 15, 16, 17, 33, 64, 100, 255, 256, 1000};
#define N_LENS (int)(sizeof lens / sizeof lens[0])

static void fill(float *x, int n, float amp)
{
    for (int i = 0; i < n; i++)
        x[i] = test_rand_normal() * amp;
}

static void test_ops_isa(const realm_ops *o)
{
    const char *isa = realm_isa_name(o->isa);
    float x[1000], y[1000], w[1000], out[1000], g[1000], u[1000];
    uint16_t h[1000], h2[1000];
    for (int li = 0; li < N_LENS; li++) {
        const int n = lens[li];
        fill(x, n, 2);
        fill(y, n, 1);
        fill(w, n, 1);
        for (int i = 0; i < n; i++)
            h[i] = realm_fp32_to_fp16(x[i]);
        double dot = 0, mag = 0;
        for (int i = 0; i < n; i++) {
            dot += (double)realm_fp16_to_fp32(h[i]) * y[i];
            mag += fabs((double)realm_fp16_to_fp32(h[i]) * y[i]);
        }
        CHECK_MSG(fabs(o->dot_f16_f32(n, h, y) - dot) <= 1e-5 * mag + 1e-6, "%s dot_f16_f32 n=%d",
                  isa, n);

        memcpy(out, y, (size_t)n * 4);
        o->axpy_f16(n, 0.37f, h, out);
        int bad = 0;
        for (int i = 0; i < n; i++)
            bad += fabsf(out[i] - (y[i] + 0.37f * realm_fp16_to_fp32(h[i]))) >
                   1e-6f * (1 + fabsf(out[i]));
        CHECK_MSG(bad == 0, "%s axpy_f16 n=%d: %d wrong", isa, n, bad);

        memcpy(out, y, (size_t)n * 4);
        o->scale_f32(n, -1.5f, out);
        bad = 0;
        for (int i = 0; i < n; i++)
            bad += out[i] != y[i] * -1.5f;
        CHECK_MSG(bad == 0, "%s scale n=%d", isa, n);

        o->fp32_to_fp16(x, h2, n); /* must round exactly like the reference */
        CHECK_MSG(memcmp(h, h2, (size_t)n * 2) == 0, "%s fp32_to_fp16 n=%d", isa, n);

        double ss = 0;
        for (int i = 0; i < n; i++)
            ss += (double)x[i] * x[i];
        const double sc = 1.0 / sqrt(ss / n + 1e-5);
        o->rmsnorm(out, x, w, n, 1e-5f);
        bad = 0;
        for (int i = 0; i < n; i++)
            bad += fabs(out[i] - x[i] * sc * w[i]) > 1e-5 * (1 + fabs(x[i] * sc * w[i]));
        CHECK_MSG(bad == 0, "%s rmsnorm n=%d: %d wrong", isa, n, bad);
        memcpy(out, x, (size_t)n * 4);
        o->rmsnorm(out, out, w, n, 1e-5f); /* in place */
        CHECK_MSG(fabs(out[n - 1] - x[n - 1] * sc * w[n - 1]) <= 1e-5 * (1 + fabs(out[n - 1])),
                  "%s rmsnorm in place", isa);

        for (int i = 0; i < n; i++) {
            g[i] = x[i] * 10; /* exercise the exp range */
            u[i] = y[i];
        }
        if (n > 3) {
            g[0] = -200;
            g[1] = 200;
            g[2] = 0;
            g[3] = -87.5f;
        }
        o->silu_mul(n, g, u);
        bad = 0;
        for (int i = 0; i < n; i++) {
            const double z = i == 0 && n > 3   ? -200
                             : i == 1 && n > 3 ? 200
                             : i == 2 && n > 3 ? 0
                             : i == 3 && n > 3 ? -87.5
                                               : (double)(x[i] * 10);
            const double want = z / (1 + exp(-z)) * u[i];
            bad += !(fabs(g[i] - want) <= 2e-6 * (1 + fabs(want)));
        }
        CHECK_MSG(bad == 0, "%s silu_mul n=%d: %d wrong", isa, n, bad);
    }
}

static void test_rope(void)
{
    realm_hparams hp = {.head_dim = 8,
                        .n_rot = 8,
                        .rope_freq_base = 10000,
                        .rope_freq_scale = 1,
                        .rope_attn_factor = 1};
    const float ff[4] = {1, 2, 4, 8};
    for (int variant = 0; variant < 6; variant++) {
        hp.rope_type = variant & 1 ? REALM_ROPE_NEOX : REALM_ROPE_NORM;
        hp.n_rot = variant >= 2 ? 4 : 8;                  /* partial rotation */
        hp.rope_freq_scale = variant >= 4 ? 0.25f : 1.0f; /* linear scaling x4 */
        const float *factors = variant == 3 ? ff : NULL;
        for (int pos = 0; pos < 3000; pos += 97) {
            float cs[4], sn[4], v[16], ref[16];
            realm__rope_cache(&hp, factors, pos, cs, sn);
            fill(v, 16, 1);
            memcpy(ref, v, sizeof v);
            realm__rope_apply(&hp, v, 2, cs, sn);
            /* reference: rotate pair (a, b) by theta_i = pos * scale * base^(-2i/n_rot) / ff_i */
            for (int h = 0; h < 2; h++) {
                float *r = ref + h * 8;
                const int half = hp.n_rot / 2;
                for (int i = 0; i < half; i++) {
                    double th =
                        pos * (double)hp.rope_freq_scale * pow(10000.0, -2.0 * i / hp.n_rot);
                    if (factors)
                        th /= factors[i];
                    const int i0 = variant & 1 ? i : 2 * i, i1 = variant & 1 ? i + half : 2 * i + 1;
                    const double a = r[i0], b = r[i1];
                    r[i0] = (float)(a * cos(th) - b * sin(th));
                    r[i1] = (float)(a * sin(th) + b * cos(th));
                }
            }
            int bad = 0;
            for (int i = 0; i < 16; i++)
                bad += fabsf(v[i] - ref[i]) > 1e-5f;
            CHECK_MSG(bad == 0, "rope variant %d pos %d: %d wrong", variant, pos, bad);
        }
    }
    /* NORM rotates adjacent pairs: dims beyond n_rot are untouched */
    hp = (realm_hparams){.head_dim = 8,
                         .n_rot = 4,
                         .rope_freq_base = 10000,
                         .rope_freq_scale = 1,
                         .rope_attn_factor = 1};
    float cs[2], sn[2], v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    realm__rope_cache(&hp, NULL, 5, cs, sn);
    realm__rope_apply(&hp, v, 1, cs, sn);
    CHECK(v[4] == 5 && v[5] == 6 && v[6] == 7 && v[7] == 8);
    CHECK_NEAR(v[0], cos(5.0) - 2 * sin(5.0), 1e-5);
}

/* ---- exponential ------------------------------------------------------------ */

/* Distance from y to e in units in the last place of e (a float). */
static double ulps(float y, double e)
{
    int ex;
    frexp(e, &ex);
    return fabs((double)y - e) / ldexp(1.0, ex - 24);
}

/*
 * exp_f32 of every ISA against exp() in double over the range softmax uses
 * (scores minus their maximum: [-87.3, 0], where e^x is a normal float) and
 * the rest of its range, within 2 ulp; below it 0; every ISA the same bits
 * as the reference, at every position of a row (vector lanes and tails).
 */
static void test_exp(void)
{
    enum { N = 4099 };
    static float x[N], y[N + 1], yr[N];
    const realm_ops *ref = realm_ops_get(REALM_ISA_SCALAR);
    for (int pass = 0; pass < 64; pass++) {
        for (int i = 0; i < N; i++) {
            const double u = (double)(test_rand_u64() >> 11) / 9007199254740992.0;
            x[i] = pass < 48 ? (float)(-87.3365 * u)           /* softmax: x <= 0 */
                             : (float)(-87.3365 + 175.71 * u); /* the whole range */
        }
        if (pass == 0) {
            const float special[] = {0.0f,      -0.0f,     -1e-30f, 1e-30f,    -0.5f,
                                     -0.34657f, 0.34658f,  -87.33f, -87.3365f, 88.37f,
                                     -88.0f,    -100.0f,   -1e30f,  -INFINITY, -103.97f,
                                     0x1p-20f,  -0x1p-20f, -1.0f,   -2.0f,     -10.0f};
            memcpy(x, special, sizeof special);
        }
        ref->exp_f32(N, x, yr);
        double worst = 0;
        int bad = 0;
        for (int i = 0; i < N; i++) {
            if (x[i] < -87.3365447505531f) {
                bad += yr[i] != 0.0f;
                continue;
            }
            const double u = ulps(yr[i], exp((double)x[i]));
            worst = u > worst ? u : worst;
            bad += !(u <= 2.0);
        }
        CHECK_MSG(bad == 0, "exp ref pass %d: %d outside 2 ulp or not 0 (worst %.2f ulp)", pass,
                  bad, worst);
        if (pass == 0)
            CHECK(yr[0] == 1.0f && yr[1] == 1.0f && yr[12] == 0.0f && yr[13] == 0.0f);
        for (int isa = REALM_ISA_SCALAR + 1; isa < REALM_ISA_COUNT; isa++) {
            const realm_ops *o = realm_ops_get((realm_isa)isa);
            if (o == NULL)
                continue;
            static const int lens_exp[] = {N, 1, 7, 17, 33};
            for (int k = 0; k < 5; k++) {
                const int n = lens_exp[k], at = k == 0 ? 0 : (int)(test_rand_u64() % 64);
                memset(y, 0x7f, sizeof y);
                o->exp_f32(n, x + at, y);
                uint32_t after;
                memcpy(&after, y + n, sizeof after);
                CHECK_MSG(memcmp(y, yr + at, (size_t)n * sizeof *y) == 0 && after == 0x7f7f7f7fu,
                          "%s exp_f32 n=%d at %d: not the reference's bits",
                          realm_isa_name((realm_isa)isa), n, at);
            }
        }
    }
    /* in place */
    for (int i = 0; i < 17; i++)
        x[i] = -0.25f * (float)i;
    ref->exp_f32(17, x, yr);
    for (int isa = 0; isa < REALM_ISA_COUNT; isa++) {
        const realm_ops *o = realm_ops_get((realm_isa)isa);
        if (o == NULL)
            continue;
        memcpy(y, x, 17 * sizeof *y);
        o->exp_f32(17, y, y);
        CHECK_MSG(memcmp(y, yr, 17 * sizeof *y) == 0, "%s exp_f32 in place",
                  realm_isa_name((realm_isa)isa));
    }
}

/* ---- the attention kernels ------------------------------------------------- */

/* Element i of a key or value row of type t (F16 or Q8_0), as the kernels read it. */
static double kv_elem(realm_type t, const uint8_t *row, int64_t i)
{
    if (t == REALM_TYPE_F16) {
        uint16_t h;
        memcpy(&h, row + 2 * i, 2);
        return realm_fp16_to_fp32(h);
    }
    const realm_block_q8_0 *b = (const realm_block_q8_0 *)row + i / 32;
    return (double)realm_fp16_to_fp32(b->d) * b->qs[i % 32];
}

/* Element i of key j: F16 keys are stored transposed (element i of every key
 * in a row, ks bytes apart), Q8_0 keys a row each, ks bytes apart. */
static double key_elem(realm_type t, const uint8_t *k, size_t ks, int j, int64_t i)
{
    return t == REALM_TYPE_F16 ? kv_elem(t, k + (size_t)i * ks, j)
                               : kv_elem(t, k + (size_t)j * ks, i);
}

/* Store n floats as a row of type t (Q8_0 by the reference quantizer). */
static void kv_put(realm_type t, const float *x, uint8_t *row, int64_t n)
{
    if (t == REALM_TYPE_F16)
        for (int64_t i = 0; i < n; i++) {
            const uint16_t h = realm_fp32_to_fp16(x[i]);
            memcpy(row + 2 * i, &h, 2);
        }
    else
        CHECK_RC(realm_quantize_row(REALM_TYPE_Q8_0, x, row, n), REALM_OK);
}

/* Store key j of n floats in type tk as the kernels read keys (key_elem). */
static void key_put(realm_type t, const float *x, uint8_t *k, size_t ks, int j, int64_t n)
{
    if (t != REALM_TYPE_F16) {
        kv_put(t, x, k + (size_t)j * ks, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        const uint16_t h = realm_fp32_to_fp16(x[i]);
        memcpy(k + (size_t)i * ks + 2 * (size_t)j, &h, 2);
    }
}

/* The kernel of o for keys of type tk and values of type tv; strides in
 * bytes (ks: between a key's elements for F16 keys, between keys for Q8_0). */
static void attn_call(const realm_ops *o, realm_type tk, realm_type tv, int64_t d, int nq,
                      const float *q, int cnt, const uint8_t *k, size_t ks, const uint8_t *v,
                      size_t vs, float scale, float *m, float *l, float *acc, float *s)
{
    if (tk == REALM_TYPE_F16 && tv == REALM_TYPE_F16) {
        CHECK(ks % 2 == 0 && vs % 2 == 0);
        o->attn_f16(d, nq, q, cnt, (const uint16_t *)k, (int64_t)ks / 2, (const uint16_t *)v,
                    (int64_t)vs / 2, scale, m, l, acc, s);
    } else {
        const realm_attn_fn fn = tk == REALM_TYPE_F16   ? o->attn_f16_q8_0
                                 : tv == REALM_TYPE_F16 ? o->attn_q8_0_f16
                                                        : o->attn_q8_0;
        fn(d, nq, q, cnt, k, ks, v, vs, scale, m, l, acc, s);
    }
}

/*
 * An attention kernel of every ISA (attn_f16, attn_q8_0 and the mixed ones,
 * by the key and value types) over a run of calls (the keys of one query
 * group split into pieces of varying length, as the forward pass calls it),
 * then acc / l, against softmax(q K^T * scale) V in double over the keys and
 * values as stored (Q8_0 dequantized). Key and value rows are further apart
 * than d (the other KV heads between them, and an odd extra), and so are the
 * elements of transposed F16 keys (an odd number of keys more); later pieces
 * get larger scores so the running maximum grows and the state is rescaled.
 */
static void check_attn_kernel(const realm_ops *o, realm_type tk, realm_type tv, int d, int nq,
                              const int *pieces, int n_pieces)
{
    int total = 0;
    for (int i = 0; i < n_pieces; i++)
        total += pieces[i];
    /* three heads and a bit: F16 two halves more, Q8_0 one block more; F16
     * keys transposed, three keys more per element */
    const bool kt = tk == REALM_TYPE_F16;
    const size_t ks = kt ? 2 * (size_t)(total + 3) : realm_row_size(tk, 3 * d + 32);
    const size_t vs = realm_row_size(tv, tv == REALM_TYPE_F16 ? 3 * d + 2 : 3 * d + 32);
    uint8_t *k = calloc(kt ? (size_t)d : (size_t)total, ks), *v = calloc((size_t)total, vs);
    float *q = malloc(sizeof *q * (size_t)(nq * d)), *acc = malloc(sizeof *acc * (size_t)(nq * d));
    float *row = malloc(sizeof *row * (size_t)d);
    float m[64], l[64];
    float *s = malloc(sizeof *s * (size_t)REALM_ATTN_SCRATCH(nq, 64, d));
    double *ref = calloc((size_t)(nq * d), sizeof *ref), *sc = malloc(sizeof *sc * (size_t)total);
    for (int j = 0; j < total; j++) {
        const float boost = 1.0f + 2.0f * (float)j / (float)total;
        for (int i = 0; i < d; i++)
            row[i] = test_rand_normal() * boost;
        key_put(tk, row, k, ks, j, d);
        for (int i = 0; i < d; i++)
            row[i] = test_rand_normal();
        kv_put(tv, row, v + (size_t)j * vs, d);
    }
    fill(q, nq * d, 1.5f);
    const float scale = 1.0f / sqrtf((float)d);
    for (int r = 0; r < nq; r++) {
        m[r] = -INFINITY;
        l[r] = 0;
    }
    for (int i = 0; i < nq * d; i++)
        acc[i] = 0;
    for (int i = 0, at = 0; i < n_pieces; at += pieces[i++])
        attn_call(o, tk, tv, d, nq, q, pieces[i], k + (size_t)at * (kt ? 2 : ks), ks,
                  v + (size_t)at * vs, vs, scale, m, l, acc, s);
    int bad = 0;
    double worst = 0;
    for (int r = 0; r < nq; r++) {
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < total; j++) {
            double dot = 0;
            for (int i = 0; i < d; i++)
                dot += (double)q[r * d + i] * key_elem(tk, k, ks, j, i);
            sc[j] = dot / sqrt((double)d);
            mx = sc[j] > mx ? sc[j] : mx;
        }
        for (int j = 0; j < total; j++) {
            const double w = exp(sc[j] - mx);
            sum += w;
            for (int i = 0; i < d; i++)
                ref[r * d + i] += w * kv_elem(tv, v + (size_t)j * vs, i);
        }
        for (int i = 0; i < d; i++) {
            const double want = ref[r * d + i] / sum, got = acc[r * d + i] / l[r];
            const double err = fabs(got - want);
            worst = err > worst ? err : worst;
            bad += !(err <= 1e-5 * (1 + fabs(want)));
        }
        CHECK_MSG(fabs(m[r] - mx) <= 1e-5 * (1 + fabs(mx)),
                  "%s attn k %s v %s d %d nq %d: max %g vs %g", realm_isa_name(o->isa),
                  realm_type_name(tk), realm_type_name(tv), d, nq, m[r], mx);
    }
    CHECK_MSG(bad == 0, "%s attn k %s v %s d %d nq %d keys %d in %d pieces: %d wrong (worst %.3g)",
              realm_isa_name(o->isa), realm_type_name(tk), realm_type_name(tv), d, nq, total,
              n_pieces, bad, worst);
    free(k);
    free(v);
    free(q);
    free(acc);
    free(row);
    free(s);
    free(ref);
    free(sc);
}

static void test_attn_kernel(const realm_ops *o)
{
    static const int dims[] = {8, 16, 24, 64, 72, 128};
    static const int groups[] = {1, 2, 3, 4, 5, 7, 8, 12, 16, 32};
    static const int piece_sets[][5] = {
        {1}, {3}, {8, 9}, {17, 1, 64}, {33, 31, 2}, {64, 64, 64, 7, 1},
    };
    static const int n_piece[] = {1, 1, 2, 3, 3, 5};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++)
            for (int pi = 0; pi < 6; pi++)
                check_attn_kernel(o, REALM_TYPE_F16, REALM_TYPE_F16, dims[di], groups[gi],
                                  piece_sets[pi], n_piece[pi]);
    /* Q8_0 keys and values, and the mixed pairs: head sizes of whole blocks */
    static const int q8_dims[] = {32, 64, 96, 128, 256};
    static const realm_type pairs[][2] = {{REALM_TYPE_Q8_0, REALM_TYPE_Q8_0},
                                          {REALM_TYPE_F16, REALM_TYPE_Q8_0},
                                          {REALM_TYPE_Q8_0, REALM_TYPE_F16}};
    for (int t = 0; t < 3; t++)
        for (size_t di = 0; di < sizeof q8_dims / sizeof q8_dims[0]; di++)
            for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++)
                for (int pi = 0; pi < 6; pi++)
                    if (t == 0 || di < 3) /* the mixed pairs on fewer sizes */
                        check_attn_kernel(o, pairs[t][0], pairs[t][1], q8_dims[di], groups[gi],
                                          piece_sets[pi], n_piece[pi]);
}

/* ---- attention over the paged cache ----------------------------------------- */

/* Element i of the key in slot `slot` of block blk, KV head g, layer l, as
 * the cache holds it (F16 keys transposed, kv__k_col). */
static double cache_key_elem(const realm_kv_cache *kv, int l, int32_t blk, int32_t slot, int g,
                             int64_t i)
{
    if (kv->type_k == REALM_TYPE_F16)
        return realm_fp16_to_fp32(kv__k_col(kv, l, blk, slot, g)[i * kv->block_size]);
    return kv_elem(kv->type_k, kv__k_row(kv, l, blk, slot, g), i);
}

/*
 * The prefill tiles (realm__attn_prefill over realm_ops.attn_tile) for a
 * prompt chunk of n tokens at positions pos0 .. pos0 + n - 1 of the
 * sequence `s`, cut into tiles as the forward pass cuts a run (near-equal,
 * at most REALM__ATTN_QTILE tokens): every token's output bitwise the same
 * as realm__attention's for that token alone, and some tokens' (the first,
 * the last, every 41st) against attention in double.
 */
static void check_prefill(const realm_ops *o, const realm_kv_cache *kv, const kv_seq *s, int l,
                          int g, int32_t pos0, int n)
{
    const realm_hparams *hp = &kv->model->hp;
    const int nq = hp->n_head / hp->n_head_kv, hd = hp->head_dim;
    const int64_t qd = (int64_t)nq * hd;
    const realm_type tk = kv->type_k, tv = kv->type_v;
    float *q = malloc(sizeof *q * (size_t)(n * qd)), *out = malloc(sizeof *out * (size_t)(n * qd));
    float *one = malloc(sizeof *one * (size_t)qd);
    float *scratch = malloc(sizeof *scratch * (size_t)REALM__ATTN_PREFILL_SCRATCH(nq, hd));
    float *scratch1 = malloc(sizeof *scratch1 * (size_t)REALM__ATTN_SCRATCH(nq, hd));
    double *sc = malloc(sizeof *sc * (size_t)(pos0 + n)), *ref = malloc(sizeof *ref * (size_t)hd);
    fill(q, (int)(n * qd), 1.5f);
    const int tiles = (n + REALM__ATTN_QTILE - 1) / REALM__ATTN_QTILE;
    for (int i = 0; i < tiles; i++) {
        const int t0 = n * i / tiles, t1 = n * (i + 1) / tiles;
        realm__attn_prefill(o, kv, l, s->blocks, pos0 + t0, t1 - t0, g, q + t0 * qd, qd, scratch,
                            out + t0 * qd, qd);
    }
    int differ = 0, bad = 0;
    for (int t = 0; t < n; t++) {
        const int32_t n_pos = pos0 + t + 1;
        realm__attention(o, kv, l, s->blocks, n_pos, g, q + t * qd, scratch1, one);
        differ += memcmp(one, out + t * qd, sizeof *one * (size_t)qd) != 0;
        if (t != 0 && t != n - 1 && t % 41 != 0)
            continue;
        for (int r = 0; r < nq; r++) {
            const float *qr = q + t * qd + r * hd;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < n_pos; j++) {
                int32_t blk, slot;
                kv__locate(kv, s, j, &blk, &slot);
                double dot = 0;
                for (int i = 0; i < hd; i++)
                    dot += (double)qr[i] * cache_key_elem(kv, l, blk, slot, g, i);
                sc[j] = dot / sqrt((double)hd);
                mx = sc[j] > mx ? sc[j] : mx;
            }
            memset(ref, 0, sizeof *ref * (size_t)hd);
            for (int j = 0; j < n_pos; j++) {
                int32_t blk, slot;
                kv__locate(kv, s, j, &blk, &slot);
                const uint8_t *v = kv__v_row(kv, l, blk, slot, g);
                const double w = exp(sc[j] - mx);
                sum += w;
                for (int i = 0; i < hd; i++)
                    ref[i] += w * kv_elem(tv, v, i);
            }
            for (int i = 0; i < hd; i++) {
                const double want = ref[i] / sum, got = out[t * qd + r * hd + i];
                bad += !(fabs(got - want) <= 1e-5 * (1 + fabs(want)));
            }
        }
    }
    CHECK_MSG(differ == 0 && bad == 0,
              "%s prefill k %s v %s, %d/%d heads, hd %d, blocks of %d, %d tokens from %d, group "
              "%d: %d tokens differ from attention alone, %d numbers wrong",
              realm_isa_name(o->isa), realm_type_name(tk), realm_type_name(tv), hp->n_head,
              hp->n_head_kv, hd, kv->block_size, n, pos0, g, differ, bad);
    free(q);
    free(out);
    free(one);
    free(scratch);
    free(scratch1);
    free(sc);
    free(ref);
}

/*
 * realm__attention for one KV head group over a sequence spread across
 * non-contiguous blocks (two sequences filled in turn), against attention
 * in double, for models of several GQA shapes (a model struct with only
 * the hyperparameters the cache reads: no weights are needed). Lengths
 * cross block and chunk boundaries. The chunks computed apart and merged
 * (realm__attn_range / _merge / _finish, the split-K path) give the same
 * bits as realm__attention. Keys and values of type tk and tv (F16, Q8_0).
 * Then prompt chunks by the prefill tiles (check_prefill), those of 300
 * tokens or more only with long_prompts, and on the scalar ISA (where the
 * tile is the reference token by token, and slow) none of 100 or more.
 */
static void check_attention_shape(const realm_ops *o, realm_type tk, realm_type tv, int n_head,
                                  int n_kv, int hd, int bs, bool long_prompts)
{
    realm_model fake;
    memset(&fake, 0, sizeof fake);
    fake.hp = (realm_hparams){
        .n_layer = 2, .n_head = n_head, .n_head_kv = n_kv, .head_dim = hd, .n_embd = n_head * hd};
    const realm_hparams *hp = &fake.hp;
    const int nq = n_head / n_kv;
    enum { MAXPOS = 600 };
    realm_kv_cache *kv = NULL;
    CHECK_RC(realm_kv_cache_new(
                 &fake,
                 &(realm_kv_params){
                     .n_ctx = 2 * MAXPOS + 2 * bs, .block_size = bs, .type_k = tk, .type_v = tv},
                 &kv),
             REALM_OK);
    if (kv == NULL)
        return;
    int32_t a, b;
    realm_kv_seq_new(kv, &a);
    realm_kv_seq_new(kv, &b);
    for (int at = 0; at < MAXPOS; at += bs) {
        CHECK_RC(realm__kv_reserve(kv, a, bs), REALM_OK);
        realm__kv_seq(kv, a)->len += bs;
        CHECK_RC(realm__kv_reserve(kv, b, bs), REALM_OK);
        realm__kv_seq(kv, b)->len += bs;
    }
    const kv_seq *s = realm__kv_seq(kv, a);
    CHECK(s->blocks[1] != s->blocks[0] + 1);
    const int kv_dim = n_kv * hd;
    float *row = malloc(sizeof *row * (size_t)kv_dim);
    for (int l = 0; l < hp->n_layer; l++)
        for (int32_t t = 0; t < kv->n_blocks * bs; t++) {
            for (int i = 0; i < kv_dim; i++)
                row[i] = test_rand_normal() * 2;
            kv_put(tk, row, kv->k[l] + (size_t)t * kv->row_bytes_k, kv_dim);
            for (int i = 0; i < kv_dim; i++)
                row[i] = test_rand_normal();
            kv_put(tv, row, kv->v[l] + (size_t)t * kv->row_bytes_v, kv_dim);
        }
    free(row);
    float *q = malloc(sizeof *q * (size_t)(nq * hd)),
          *out = malloc(sizeof *out * (size_t)(nq * hd));
    float *out2 = malloc(sizeof *out2 * (size_t)(nq * hd));
    float *scratch = malloc(sizeof *scratch * (size_t)REALM__ATTN_SCRATCH(nq, hd));
    float *parts = malloc(sizeof *parts * (size_t)(3 * REALM__ATTN_PART(nq, hd)));
    double *sc = malloc(sizeof *sc * MAXPOS), *ref = malloc(sizeof *ref * (size_t)hd);
    static const int n_poss[] = {1, 2, 7, 31, 32, 33, 64, 255, 256, 257, 300, 511, 512, 513, 600};
    for (size_t pi = 0; pi < sizeof n_poss / sizeof n_poss[0]; pi++) {
        const int n_pos = n_poss[pi], g = (int)(pi % (size_t)n_kv), l = (int)(pi % 2);
        fill(q, nq * hd, 1.5f);
        realm__attention(o, kv, l, s->blocks, n_pos, g, q, scratch, out);
        int bad = 0;
        for (int r = 0; r < nq; r++) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < n_pos; j++) {
                int32_t blk, slot;
                kv__locate(kv, s, j, &blk, &slot);
                double dot = 0;
                for (int i = 0; i < hd; i++)
                    dot += (double)q[r * hd + i] * cache_key_elem(kv, l, blk, slot, g, i);
                sc[j] = dot / sqrt((double)hd);
                mx = sc[j] > mx ? sc[j] : mx;
            }
            memset(ref, 0, sizeof *ref * (size_t)hd);
            for (int j = 0; j < n_pos; j++) {
                int32_t blk, slot;
                kv__locate(kv, s, j, &blk, &slot);
                const uint8_t *v = kv__v_row(kv, l, blk, slot, g);
                const double w = exp(sc[j] - mx);
                sum += w;
                for (int i = 0; i < hd; i++)
                    ref[i] += w * kv_elem(tv, v, i);
            }
            for (int i = 0; i < hd; i++)
                bad += !(fabs(out[r * hd + i] - ref[i] / sum) <= 1e-5 * (1 + fabs(ref[i] / sum)));
        }
        CHECK_MSG(bad == 0,
                  "%s attention k %s v %s, %d/%d heads, hd %d, blocks of %d, n_pos %d, group "
                  "%d: %d wrong",
                  realm_isa_name(o->isa), realm_type_name(tk), realm_type_name(tv), n_head, n_kv,
                  hd, bs, n_pos, g, bad);

        /* split-K: the chunks apart (three partial slots in turn), merged in order */
        const int64_t pf = REALM__ATTN_PART(nq, hd);
        for (int32_t p0 = 0, u = 0; p0 < n_pos; p0 += REALM__ATTN_CHUNK, u++) {
            const int32_t p1 = n_pos - p0 < REALM__ATTN_CHUNK ? n_pos : p0 + REALM__ATTN_CHUNK;
            float *part = parts + (p0 == 0 ? 0 : 1 + u % 2) * pf;
            realm__attn_range(o, kv, l, s->blocks, p0, p1, g, q, scratch, part);
            if (p0 > 0)
                realm__attn_merge(nq, hd, parts, part);
        }
        realm__attn_finish(nq, hd, parts, out2);
        CHECK_MSG(memcmp(out, out2, sizeof *out * (size_t)(nq * hd)) == 0,
                  "%s attention k %s v %s, %d/%d heads n_pos %d: split-K gives other bits",
                  realm_isa_name(o->isa), realm_type_name(tk), realm_type_name(tv), n_head, n_kv,
                  n_pos);
    }
    /* prompts of odd lengths from the start, and chunks of prompts whose
     * earlier positions are cached (across block and chunk boundaries) */
    static const int32_t chunks[][2] = {{0, 1},   {0, 7},    {0, 31}, {0, 33},   {0, 257},
                                        {0, 600}, {5, 1},    {31, 2}, {250, 20}, {300, 300},
                                        {511, 3}, {200, 57}, {597, 3}};
    for (size_t ci = 0; ci < sizeof chunks / sizeof chunks[0]; ci++)
        if ((long_prompts || chunks[ci][1] < 300) &&
            (o->isa != REALM_ISA_SCALAR || chunks[ci][1] < 100))
            check_prefill(o, kv, s, (int)(ci % 2), (int)(ci % (size_t)n_kv), chunks[ci][0],
                          chunks[ci][1]);
    free(q);
    free(out);
    free(out2);
    free(scratch);
    free(parts);
    free(sc);
    free(ref);
    realm_kv_cache_free(kv);
}

static void test_attention(const realm_ops *o)
{
    const realm_type F16 = REALM_TYPE_F16, Q8 = REALM_TYPE_Q8_0;
    check_attention_shape(o, F16, F16, 4, 4, 64, 32, false); /* MHA */
    check_attention_shape(o, F16, F16, 8, 2, 64, 16, false); /* 4 query heads per KV head */
    check_attention_shape(o, F16, F16, 32, 4, 64, 32, true); /* 8: TinyLlama */
    check_attention_shape(o, F16, F16, 8, 1, 128, 7, true);  /* MQA, odd block size */
    check_attention_shape(o, F16, F16, 6, 2, 24, 32,
                          false); /* 3 per KV head, hd not a multiple of 16 */
    check_attention_shape(o, F16, F16, 8, 4, 8, 8, false); /* stories260K's shape */
    /* blocks longer than a step (REALM__ATTN_TILE keys): steps from the
     * middle of a block, F16 keys transposed 128 apart */
    check_attention_shape(o, F16, F16, 8, 2, 64, 128, false);
    /* the decode kernel's register tiles with tails: 12 rows (a vector of 8
     * and 4 more), 5 rows (a tile of 4 and one), head sizes of 10 and 5
     * eight-float slices (the values' pairs of slices and one left over) */
    check_attention_shape(o, F16, F16, 12, 1, 80, 32, false);
    check_attention_shape(o, F16, F16, 10, 2, 40, 16, false);
    /* a Q8_0 cache: head sizes of whole blocks, GQA groups of 1, 2, 4, 8 */
    check_attention_shape(o, Q8, Q8, 4, 4, 64, 32, false);
    check_attention_shape(o, Q8, Q8, 8, 4, 32, 16, false);
    check_attention_shape(o, Q8, Q8, 8, 2, 64, 16, false);
    check_attention_shape(o, Q8, Q8, 32, 4, 64, 32, true);
    check_attention_shape(o, Q8, Q8, 8, 1, 128, 7, false);
    check_attention_shape(o, F16, Q8, 8, 2, 64, 16, false); /* mixed */
    check_attention_shape(o, Q8, F16, 32, 4, 64, 7, false);
    check_attention_shape(o, Q8, Q8, 12, 2, 96, 16, false); /* 6 rows, 12 slices */
}

int main(void)
{
    test_begin("ops", 120);
    int isas = 0;
    for (int isa = 0; isa < REALM_ISA_COUNT; isa++) {
        const realm_ops *o = realm_ops_get((realm_isa)isa);
        if (!o)
            continue;
        isas++;
        test_ops_isa(o);
        test_attn_kernel(o);
        test_attention(o);
    }
    CHECK(isas >= 1);
    CHECK(realm_ops_get(REALM_ISA_SCALAR) != NULL);
    test_rope();
    test_exp();
    return test_end();
}
