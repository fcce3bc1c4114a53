/*
 * Pieces of the forward pass against straightforward implementations:
 * the realm_ops kernels of every ISA (fp16 dot/axpy, scale, fp16 store,
 * RMSNorm, SiLU), RoPE (normal, NeoX, partial rotation, linear scaling,
 * frequency factors), and attention over a sequence spread across several
 * non-contiguous KV blocks, against a softmax computed in double precision.
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
    realm_hparams hp = {.head_dim = 8, .n_rot = 8, .rope_freq_base = 10000, .rope_freq_scale = 1};
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
    hp = (realm_hparams){.head_dim = 8, .n_rot = 4, .rope_freq_base = 10000, .rope_freq_scale = 1};
    float cs[2], sn[2], v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    realm__rope_cache(&hp, NULL, 5, cs, sn);
    realm__rope_apply(&hp, v, 1, cs, sn);
    CHECK(v[4] == 5 && v[5] == 6 && v[6] == 7 && v[7] == 8);
    CHECK_NEAR(v[0], cos(5.0) - 2 * sin(5.0), 1e-5);
}

static void test_attention(const realm_ops *o)
{
    realm_model *m;
    CHECK_RC(realm_model_load(test_data("models/stories260K.gguf"), NULL, &m), REALM_OK);
    if (!m)
        return;
    const realm_hparams *hp = realm_model_hparams(m);
    const int hd = hp->head_dim, n_kv = hp->n_head_kv;
    realm_kv_cache *kv;
    CHECK_RC(realm_kv_cache_new(m, &(realm_kv_params){.n_ctx = 256, .block_size = 8}, &kv),
             REALM_OK);
    /* interleave two sequences so each one's blocks are not contiguous */
    int32_t a, b;
    realm_kv_seq_new(kv, &a);
    realm_kv_seq_new(kv, &b);
    for (int i = 0; i < 6; i++) {
        realm__kv_reserve(kv, a, 8);
        realm__kv_seq(kv, a)->len += 8;
        realm__kv_reserve(kv, b, 8);
        realm__kv_seq(kv, b)->len += 8;
    }
    const kv_seq *s = realm__kv_seq(kv, a);
    CHECK(s->blocks[1] != s->blocks[0] + 1);
    for (int l = 0; l < hp->n_layer; l++)
        for (size_t i = 0; i < (size_t)kv->n_blocks * kv->block_bytes / 2; i++) {
            ((uint16_t *)kv->k[l])[i] = realm_fp32_to_fp16(test_rand_normal() * 2);
            ((uint16_t *)kv->v[l])[i] = realm_fp32_to_fp16(test_rand_normal());
        }
    float q[64], out[64], scratch[64 + 8];
    for (int n_pos = 1; n_pos <= 48; n_pos += 5)
        for (int g = 0; g < n_kv; g++) {
            fill(q, hd, 1.5f);
            const int l = n_pos % hp->n_layer;
            realm__attention(o, kv, l, s->blocks, n_pos, g, q, scratch, out);
            /* reference: scores, softmax and weighted sum in double */
            double sc[64], mx = -INFINITY, sum = 0, ref[64] = {0};
            for (int j = 0; j < n_pos; j++) {
                int32_t blk, slot;
                kv__locate(kv, s, j, &blk, &slot);
                const uint16_t *k = (const uint16_t *)(kv->k[l] + (size_t)blk * kv->block_bytes +
                                                       (size_t)slot * kv->row_bytes) +
                                    g * hd;
                sc[j] = 0;
                for (int i = 0; i < hd; i++)
                    sc[j] += (double)q[i] * realm_fp16_to_fp32(k[i]);
                sc[j] /= sqrt((double)hd);
                mx = sc[j] > mx ? sc[j] : mx;
            }
            for (int j = 0; j < n_pos; j++) {
                int32_t blk, slot;
                kv__locate(kv, s, j, &blk, &slot);
                const uint16_t *v = (const uint16_t *)(kv->v[l] + (size_t)blk * kv->block_bytes +
                                                       (size_t)slot * kv->row_bytes) +
                                    g * hd;
                const double w = exp(sc[j] - mx);
                sum += w;
                for (int i = 0; i < hd; i++)
                    ref[i] += w * realm_fp16_to_fp32(v[i]);
            }
            int bad = 0;
            for (int i = 0; i < hd; i++)
                bad += fabs(out[i] - ref[i] / sum) > 1e-5;
            CHECK_MSG(bad == 0, "%s attention n_pos %d head %d: %d wrong", realm_isa_name(o->isa),
                      n_pos, g, bad);
        }
    realm_kv_cache_free(kv);
    realm_model_free(m);
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
        test_attention(o);
    }
    CHECK(isas >= 1);
    CHECK(realm_ops_get(REALM_ISA_SCALAR) != NULL);
    test_rope();
    return test_end();
}
