/*
 * LoRA adapters (realm/lora.h), applied unmerged:
 *  - the kernels: every ISA's lora_shrink / lora_expand against the scalar
 *    reference over odd lengths and ranks and the three weight types, and
 *    each row's result the same bits alone, among others, and for any column
 *    split (what batch invariance rests on);
 *  - the two shared adapters on quant/tiny-f32.gguf: logits at every
 *    position of reference/tiny-tokens.txt within the F32 tolerance (0.005)
 *    of llama.cpp's (scales 1.0 and 0.5), as one batch and one token at a
 *    time;
 *  - adapters on every quantized base of testdata/quant, and on a base
 *    mixing types whose Q/K/V and gate/up products run apart: the unmerged
 *    logits against those of the merged model (the base dequantized, plus
 *    alpha/rank * scale * B A computed in double, written as F32 weights)
 *    within the quantized types' tolerance;
 *  - F16 and BF16 adapters written with Realm's GGUF writer from the F32
 *    one: bitwise the logits of an F32 adapter holding the same rounded
 *    values, and within rounding of the F32 source;
 *  - sets: order-independent (bitwise), a repeated adapter counts once with
 *    the summed scale, scale 0 is no adapter, two adapters at once equal the
 *    merged sum;
 *  - four sequences with four different adapter sets (one with none) in one
 *    batch, prompts in chunks and decode steps: each bitwise its solo run
 *    in batch-invariant mode, within float rounding otherwise;
 *  - malformed adapters refused with a message naming the file and the
 *    tensor or key: not an adapter, another architecture, wrong shapes,
 *    lora_a/lora_b transposed, rank mismatch, rank over the limit, wrong
 *    tensor types, an unpaired tensor, a non-adaptable weight, a weight the
 *    base lacks, a truncated file; and bad batches (an adapter of another
 *    model, a set index out of range, too many adapters in a set).
 */
#include <errno.h>
#include <sys/stat.h>

#include "realm/error.h"
#include "realm/gguf.h"
#include "realm/kernels.h"
#include "realm/lora.h"
#include "realm/model.h"
#include "test_util.h"

#define MAX_TOKENS 64

static char tmpdir[256];

static const char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int slot;
    char *p = buf[slot++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static int read_tokens(const char *path, int32_t *out, int max)
{
    FILE *f = fopen(path, "r");
    int n = 0;
    while (f && n < max && fscanf(f, "%d", &out[n]) == 1)
        n++;
    if (f)
        fclose(f);
    return n;
}

static float *read_f32(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    float *v = malloc(n * sizeof *v);
    if (!f || !v || fread(v, sizeof *v, n, f) != n) {
        fprintf(stderr, "cannot read %zu floats from %s\n", n, path);
        exit(1);
    }
    fclose(f);
    return v;
}

static double max_diff(const float *a, const float *b, size_t n, double *mean)
{
    double mx = 0, sum = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        if (!(d <= mx))
            mx = isnan(d) ? INFINITY : d;
        sum += d;
    }
    if (mean)
        *mean = sum / (double)n;
    return mx;
}

/* ---- kernels ------------------------------------------------------------- */

static void fill(float *x, int64_t n, float amp)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = test_rand_normal() * amp;
}

/* n floats as type t into dst (F32: copied). */
static void to_type(realm_type t, const float *x, void *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (t == REALM_TYPE_F32)
            ((float *)dst)[i] = x[i];
        else if (t == REALM_TYPE_F16)
            ((uint16_t *)dst)[i] = realm_fp32_to_fp16(x[i]);
        else
            ((uint16_t *)dst)[i] = realm_fp32_to_bf16(x[i]);
    }
}

static void test_kernels(void)
{
    static const int64_t lens[] = {1, 3, 8, 15, 16, 17, 33, 64, 100, 255, 256, 1000};
    static const int64_t ranks[] = {1, 3, 4, 8, 16, 17, 64, 128};
    static const realm_type types[] = {REALM_TYPE_F32, REALM_TYPE_F16, REALM_TYPE_BF16};
    const realm_ops *ref = realm_ops_get(REALM_ISA_SCALAR);
    enum { NR = 6, LD = 1000 };
    float *x = malloc(sizeof(float) * NR * LD), *a = malloc(sizeof(float) * LD);
    uint8_t *aq = malloc(4 * LD);
    float *t = malloc(sizeof(float) * NR * 128), *bt = malloc(sizeof(float) * 128 * LD);
    uint8_t *btq = malloc((size_t)4 * 128 * LD);
    float *y0 = malloc(sizeof(float) * NR * LD), *y1 = malloc(sizeof(float) * NR * LD),
          *y2 = malloc(sizeof(float) * NR * LD);
    const int32_t rows[NR] = {4, 0, 5, 2, 1, 3};
    const float scale[NR] = {1, 0.5f, -2, 0.25f, 3, 1};
    for (int isa = 0; isa < REALM_ISA_COUNT; isa++) {
        const realm_ops *o = realm_ops_get((realm_isa)isa);
        if (o == NULL)
            continue;
        const char *name = realm_isa_name(o->isa);
        for (size_t ti = 0; ti < 3; ti++) {
            const realm_type ty = types[ti];
            int bad_ref = 0, bad_inv = 0;
            for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
                const int64_t n = lens[li];
                fill(x, NR * LD, 1);
                fill(a, n, 0.1f);
                to_type(ty, a, aq, n);
                float got[NR], want[NR], alone[NR];
                o->lora_shrink(ty, n, aq, NR, rows, x, LD, got, 1);
                ref->lora_shrink(ty, n, aq, NR, rows, x, LD, want, 1);
                for (int r = 0; r < NR; r++) {
                    double mag = 0;
                    for (int64_t k = 0; k < n; k++)
                        mag += fabs(0.1 * x[rows[r] * LD + k]);
                    bad_ref += !(fabs(got[r] - want[r]) <= 1e-5 * mag + 1e-6);
                    o->lora_shrink(ty, n, aq, 1, rows + r, x, LD, alone + r, 1);
                    bad_inv += memcmp(&alone[r], &got[r], sizeof(float)) != 0;
                }
                /* strided output, as the pass writes t */
                float strided[NR * 3];
                o->lora_shrink(ty, n, aq, NR, rows, x, LD, strided + 1, 3);
                for (int r = 0; r < NR; r++)
                    bad_inv += memcmp(&strided[1 + 3 * r], &got[r], sizeof(float)) != 0;
            }
            CHECK_MSG(bad_ref == 0, "%s lora_shrink %s: %d values off the reference", name,
                      realm_type_name(ty), bad_ref);
            CHECK_MSG(bad_inv == 0, "%s lora_shrink %s: %d rows differ alone and in a group", name,
                      realm_type_name(ty), bad_inv);

            bad_ref = bad_inv = 0;
            for (size_t ri = 0; ri < sizeof ranks / sizeof ranks[0]; ri++)
                for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
                    const int64_t rank = ranks[ri], n = lens[li];
                    fill(t, NR * rank, 1);
                    fill(bt, rank * n, 0.1f);
                    to_type(ty, bt, btq, rank * n);
                    fill(y0, NR * LD, 1);
                    memcpy(y1, y0, sizeof(float) * NR * LD);
                    memcpy(y2, y0, sizeof(float) * NR * LD);
                    o->lora_expand(ty, rank, btq, n, 0, n, NR, rows, t, rank, scale, 0.7f, y1, LD);
                    ref->lora_expand(ty, rank, btq, n, 0, n, NR, rows, t, rank, scale, 0.7f, y2,
                                     LD);
                    for (int r = 0; r < NR; r++)
                        for (int64_t c = 0; c < n; c++) {
                            double mag = fabs(y0[r * LD + c]);
                            for (int64_t j = 0; j < rank; j++)
                                mag += fabs(0.7 * 3 * t[j] * 0.1 * 4);
                            bad_ref += !(fabs(y1[r * LD + c] - y2[r * LD + c]) <= 1e-5 * mag);
                        }
                    /* any split of the columns, rows alone: the same bits */
                    memcpy(y2, y0, sizeof(float) * NR * LD);
                    for (int r = 0; r < NR; r++) {
                        int64_t c0 = 0;
                        while (c0 < n) {
                            int64_t c1 = c0 + 1 + (int64_t)(test_rand_u64() % 40);
                            c1 = c1 < n ? c1 : n;
                            o->lora_expand(ty, rank, btq, n, c0, c1, 1, rows + r, t + r * rank,
                                           rank, scale + r, 0.7f, y2, LD);
                            c0 = c1;
                        }
                    }
                    bad_inv += memcmp(y1, y2, sizeof(float) * NR * LD) != 0;
                }
            CHECK_MSG(bad_ref == 0, "%s lora_expand %s: %d values off the reference", name,
                      realm_type_name(ty), bad_ref);
            CHECK_MSG(bad_inv == 0, "%s lora_expand %s: %d cases differ split by columns", name,
                      realm_type_name(ty), bad_inv);
        }
    }
    free(x);
    free(a);
    free(aq);
    free(t);
    free(bt);
    free(btq);
    free(y0);
    free(y1);
    free(y2);
}

/* ---- running a model ------------------------------------------------------ */

typedef struct rig {
    realm_model *m;
    realm_kv_cache *kv;
    realm_ctx *ctx;
    int n_vocab;
} rig;

static bool rig_new(rig *r, const char *path, bool invariant, int threads)
{
    memset(r, 0, sizeof *r);
    CHECK_RC(realm_model_load(path, NULL, &r->m), REALM_OK);
    if (r->m == NULL)
        return false;
    r->n_vocab = realm_model_hparams(r->m)->n_vocab;
    CHECK_RC(realm_kv_cache_new(r->m, &(realm_kv_params){.n_ctx = 8 * MAX_TOKENS, .block_size = 16},
                                &r->kv),
             REALM_OK);
    CHECK_RC(realm_ctx_new(r->m, r->kv,
                           &(realm_ctx_params){.n_batch = 4 * MAX_TOKENS,
                                               .n_threads = threads,
                                               .batch_invariant = invariant},
                           &r->ctx),
             REALM_OK);
    return r->kv && r->ctx;
}

static void rig_free(rig *r)
{
    realm_ctx_free(r->ctx);
    realm_kv_cache_free(r->kv);
    realm_model_free(r->m);
}

/* One sequence through the model in chunks of `chunk`, with adapter set
 * `set` (NULL: none); every position's logits into out. */
static int run_seq(rig *r, const int32_t *tok, int n, const realm_lora_set *set, int chunk,
                   float *out)
{
    int32_t seq;
    if (realm_kv_seq_new(r->kv, &seq) < 0)
        return -1;
    int32_t pos[MAX_TOKENS], seqs[MAX_TOKENS], sets[MAX_TOKENS];
    bool want[MAX_TOKENS];
    for (int i = 0; i < n; i++) {
        pos[i] = i;
        seqs[i] = seq;
        want[i] = true;
        sets[i] = set ? 0 : -1;
    }
    int rc = 0;
    for (int at = 0; at < n && rc == 0; at += chunk) {
        const int len = n - at < chunk ? n - at : chunk;
        const realm_batch b = {len, tok + at, pos + at, seqs + at, want + at};
        const realm_batch_lora bl = {sets + at, set, set ? 1 : 0};
        rc = realm_forward_lora(r->ctx, &b, set ? &bl : NULL, out + (size_t)at * r->n_vocab);
        if (rc < 0)
            fprintf(stderr, "forward: %s\n", realm_last_error());
    }
    realm_kv_seq_free(r->kv, seq);
    return rc;
}

static realm_lora *load_lora(const realm_model *m, const char *path)
{
    realm_lora *a = NULL;
    CHECK_RC(realm_lora_load(m, path, &a), REALM_OK);
    return a;
}

/* ---- the shared adapters against llama.cpp -------------------------------- */

static void test_reference(const int32_t *tok, int n)
{
    rig r;
    if (!rig_new(&r, test_data("quant/tiny-f32.gguf"), false, 2))
        return;
    realm_lora *r8 = load_lora(r.m, test_data("lora/tiny-lora-r8.gguf"));
    realm_lora *qv = load_lora(r.m, test_data("lora/tiny-lora-qv-r4.gguf"));
    if (!r8 || !qv)
        goto out;
    CHECK_EQ_INT(realm_lora_rank(r8), 8);
    CHECK_EQ_INT(realm_lora_n_weights(r8), 14);
    CHECK_NEAR(realm_lora_alpha(r8), 16, 0);
    CHECK_EQ_INT(realm_lora_rank(qv), 4);
    CHECK_EQ_INT(realm_lora_n_weights(qv), 4);
    CHECK_EQ_INT(realm_lora_bytes(r8), 311296); /* 2 layers x 8 x 4864 floats */
    CHECK(realm_lora_id(r8) != realm_lora_id(qv));
    CHECK(realm_lora_base(r8) == r.m);
    static const struct {
        const char *ref;
        int which;
        float scale;
    } cases[] = {
        {"reference/tiny-lora-r8-s1.0.logits.f32", 0, 1.0f},
        {"reference/tiny-lora-r8-s0.5.logits.f32", 0, 0.5f},
        {"reference/tiny-lora-qv-r4-s1.0.logits.f32", 1, 1.0f},
    };
    const size_t nv = (size_t)n * r.n_vocab;
    float *got = malloc(nv * sizeof *got), *base = malloc(nv * sizeof *base);
    float *base_ref = read_f32(test_data("reference/tiny-f32.logits.f32"), nv);
    CHECK_RC(run_seq(&r, tok, n, NULL, n, base), REALM_OK);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        float *ref = read_f32(test_data(cases[ci].ref), nv);
        const realm_lora_item item = {cases[ci].which ? qv : r8, cases[ci].scale};
        const realm_lora_set set = {1, &item};
        static const int chunks[] = {MAX_TOKENS, 1, 7};
        for (int k = 0; k < 3; k++) {
            CHECK_RC(run_seq(&r, tok, n, &set, chunks[k], got), REALM_OK);
            double mean, d = max_diff(got, ref, nv, &mean);
            printf("  %-40s chunks of %2d: max %.5f mean %.5f (the base model's is %.3f away)\n",
                   cases[ci].ref + 10, chunks[k], d, mean, max_diff(base_ref, ref, nv, NULL));
            CHECK_MSG(d <= 0.005, "%s chunks of %d: max diff %.5f", cases[ci].ref, chunks[k], d);
        }
        free(ref);
    }
    /* no set, an empty set and a set of scale 0 are the base model */
    float *none = malloc(nv * sizeof *none);
    const realm_lora_item zero = {r8, 0.0f};
    CHECK_RC(run_seq(&r, tok, n, &(realm_lora_set){1, &zero}, n, none), REALM_OK);
    CHECK(memcmp(none, base, nv * sizeof *none) == 0);
    CHECK_RC(run_seq(&r, tok, n, &(realm_lora_set){0, NULL}, n, none), REALM_OK);
    CHECK(memcmp(none, base, nv * sizeof *none) == 0);
    free(none);
    free(base_ref);
    free(got);
    free(base);
out:
    realm_lora_free(r8);
    realm_lora_free(qv);
    rig_free(&r);
}

/* ---- writing adapters and merged models ----------------------------------- */

/*
 * Rewrite the adapter at src to dst with its lora_a tensors as ta and its
 * lora_b as tb (F32, F16, BF16); with as_f32, the values are rounded to
 * those types but stored as F32.
 */
static bool convert_adapter(const char *src, const char *dst, realm_type ta, realm_type tb,
                            bool as_f32)
{
    realm_gguf *g;
    realm_gguf_writer *w;
    if (realm_gguf_open(src, &g) < 0 || realm_gguf_writer_new(&w) < 0)
        return false;
    for (int64_t i = 0; i < realm_gguf_n_kv(g); i++)
        realm_gguf_copy_kv(w, g, i);
    const int64_t nt = realm_gguf_n_tensors(g);
    void **bufs = calloc((size_t)nt, sizeof *bufs);
    for (int64_t i = 0; i < nt; i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        const int64_t ne = realm_gguf_tensor_nelements(t);
        const realm_type ty = strstr(t->name, ".lora_a") ? ta : tb;
        bufs[i] = malloc((size_t)ne * 4);
        to_type(ty, t->data, bufs[i], ne);
        if (as_f32) {
            float *f = bufs[i];
            const uint16_t *h = bufs[i];
            for (int64_t k = ne - 1; ty != REALM_TYPE_F32 && k >= 0; k--)
                f[k] = ty == REALM_TYPE_F16 ? realm_fp16_to_fp32(h[k]) : realm_bf16_to_fp32(h[k]);
        }
        realm_gguf_add_tensor(w, t->name, t->n_dims, t->ne, as_f32 ? REALM_TYPE_F32 : ty, bufs[i]);
    }
    const int rc = realm_gguf_writer_write(w, dst);
    for (int64_t i = 0; i < nt; i++)
        free(bufs[i]);
    free(bufs);
    realm_gguf_writer_free(w);
    realm_gguf_close(g);
    CHECK_MSG(rc == 0, "writing %s: %s", dst, realm_last_error());
    return rc == 0;
}

/*
 * The model at base_path with n adapters merged in: every adapted weight
 * dequantized and W += sum_a scale_a * alpha_a / rank * B_a A_a (in double),
 * stored as F32; other tensors copied as they are.
 */
static bool write_merged(const char *base_path, int n, const char *const *lora_paths,
                         const float *scales, const char *out)
{
    realm_gguf *g, *ad[4];
    realm_gguf_writer *w;
    if (realm_gguf_open(base_path, &g) < 0 || realm_gguf_writer_new(&w) < 0)
        return false;
    float alpha[4];
    for (int k = 0; k < n; k++) {
        CHECK_RC(realm_gguf_open(lora_paths[k], &ad[k]), REALM_OK);
        alpha[k] = 0;
        realm_gguf_get_f32(ad[k], "adapter.lora.alpha", &alpha[k]);
    }
    for (int64_t i = 0; i < realm_gguf_n_kv(g); i++)
        realm_gguf_copy_kv(w, g, i);
    const int64_t nt = realm_gguf_n_tensors(g);
    float **bufs = calloc((size_t)nt, sizeof *bufs);
    for (int64_t i = 0; i < nt; i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        char an[300], bn[300];
        snprintf(an, sizeof an, "%s.lora_a", t->name);
        snprintf(bn, sizeof bn, "%s.lora_b", t->name);
        bool adapted = false;
        for (int k = 0; k < n; k++)
            adapted |= realm_gguf_find_tensor(ad[k], an) != NULL;
        if (!adapted) {
            realm_gguf_add_tensor(w, t->name, t->n_dims, t->ne, t->type, t->data);
            continue;
        }
        const int64_t n_in = t->ne[0], n_out = t->ne[1];
        float *wf = bufs[i] = malloc((size_t)(n_in * n_out) * sizeof *wf);
        const size_t rs = realm_row_size(t->type, n_in);
        for (int64_t o = 0; o < n_out; o++)
            realm_dequantize_row(t->type, (const uint8_t *)t->data + (size_t)o * rs, wf + o * n_in,
                                 n_in);
        for (int k = 0; k < n; k++) {
            const realm_gguf_tensor *ta = realm_gguf_find_tensor(ad[k], an),
                                    *tb = realm_gguf_find_tensor(ad[k], bn);
            if (ta == NULL)
                continue;
            const int64_t rank = ta->ne[1];
            const float *A = ta->data, *B = tb->data; /* the shared adapters are F32 */
            const double s = (double)scales[k] * (alpha[k] != 0 ? alpha[k] / (double)rank : 1.0);
            for (int64_t o = 0; o < n_out; o++)
                for (int64_t c = 0; c < n_in; c++) {
                    double d = 0;
                    for (int64_t j = 0; j < rank; j++)
                        d += (double)B[o * rank + j] * A[j * n_in + c];
                    wf[o * n_in + c] = (float)(wf[o * n_in + c] + s * d);
                }
        }
        realm_gguf_add_tensor(w, t->name, t->n_dims, t->ne, REALM_TYPE_F32, wf);
    }
    const int rc = realm_gguf_writer_write(w, out);
    CHECK_MSG(rc == 0, "writing %s: %s", out, realm_last_error());
    for (int64_t i = 0; i < nt; i++)
        free(bufs[i]);
    free(bufs);
    realm_gguf_writer_free(w);
    for (int k = 0; k < n; k++)
        realm_gguf_close(ad[k]);
    realm_gguf_close(g);
    return rc == 0;
}

/* The F32 model at src with each layer's weights quantized to types whose
 * activation types differ: Q F16, K Q8_0, V Q6_K, gate Q4_K, up F16. */
static bool write_mixed(const char *src, const char *out)
{
    static const struct {
        const char *kind;
        realm_type type;
    } mix[] = {{"attn_q", REALM_TYPE_F16},
               {"attn_k", REALM_TYPE_Q8_0},
               {"attn_v", REALM_TYPE_Q6_K},
               {"ffn_gate", REALM_TYPE_Q4_K},
               {"ffn_up", REALM_TYPE_F16}};
    realm_gguf *g;
    realm_gguf_writer *w;
    if (realm_gguf_open(src, &g) < 0 || realm_gguf_writer_new(&w) < 0)
        return false;
    for (int64_t i = 0; i < realm_gguf_n_kv(g); i++)
        realm_gguf_copy_kv(w, g, i);
    const int64_t nt = realm_gguf_n_tensors(g);
    void **bufs = calloc((size_t)nt, sizeof *bufs);
    for (int64_t i = 0; i < nt; i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        realm_type ty = t->type;
        for (size_t k = 0; k < sizeof mix / sizeof mix[0]; k++)
            if (strstr(t->name, mix[k].kind))
                ty = mix[k].type;
        if (ty == t->type) {
            realm_gguf_add_tensor(w, t->name, t->n_dims, t->ne, t->type, t->data);
            continue;
        }
        const size_t rs = realm_row_size(ty, t->ne[0]);
        bufs[i] = malloc(rs * (size_t)t->ne[1]);
        for (int64_t r = 0; r < t->ne[1]; r++)
            realm_quantize_row(ty, (const float *)t->data + r * t->ne[0],
                               (uint8_t *)bufs[i] + (size_t)r * rs, t->ne[0]);
        realm_gguf_add_tensor(w, t->name, t->n_dims, t->ne, ty, bufs[i]);
    }
    const int rc = realm_gguf_writer_write(w, out);
    CHECK_MSG(rc == 0, "writing %s: %s", out, realm_last_error());
    for (int64_t i = 0; i < nt; i++)
        free(bufs[i]);
    free(bufs);
    realm_gguf_writer_free(w);
    realm_gguf_close(g);
    return rc == 0;
}

/* Logits of path's model on tok with adapters (paths, scales), unmerged. */
static bool logits_with(const char *path, int n_ad, const char *const *lora_paths,
                        const float *scales, const int32_t *tok, int n, float *out)
{
    rig r;
    if (!rig_new(&r, path, false, 2))
        return false;
    realm_lora *ad[4] = {0};
    realm_lora_item items[4];
    bool ok = true;
    for (int k = 0; k < n_ad; k++) {
        ad[k] = load_lora(r.m, lora_paths[k]);
        ok &= ad[k] != NULL;
        items[k] = (realm_lora_item){ad[k], scales[k]};
    }
    const realm_lora_set set = {n_ad, items};
    ok = ok && run_seq(&r, tok, n, n_ad ? &set : NULL, 16, out) == 0;
    for (int k = 0; k < n_ad; k++)
        realm_lora_free(ad[k]);
    rig_free(&r);
    return ok;
}

static void test_quant_bases(const int32_t *tok, int n)
{
    static const char *const types[] = {"f32",    "f16",    "bf16", "q8_0",   "q4_0",
                                        "q4_1",   "q5_0",   "q5_1", "q2_k",   "q3_k_m",
                                        "q4_k_m", "q5_k_m", "q6_k", "iq4_nl", "iq4_xs"};
    char r8_path[4096], qv_path[4096];
    snprintf(r8_path, sizeof r8_path, "%s", test_data("lora/tiny-lora-r8.gguf"));
    snprintf(qv_path, sizeof qv_path, "%s", test_data("lora/tiny-lora-qv-r4.gguf"));
    const char *r8 = r8_path;
    const size_t nv = (size_t)n * 512;
    float *unmerged = malloc(nv * 4), *merged = malloc(nv * 4);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char base[64];
        snprintf(base, sizeof base, "quant/tiny-%s.gguf", types[i]);
        const float scale = i % 2 ? 0.5f : 1.0f;
        const char *mpath = tmp_path("merged.gguf");
        if (!write_merged(test_data(base), 1, &r8, &scale, mpath) ||
            !logits_with(mpath, 0, NULL, NULL, tok, n, merged) ||
            !logits_with(test_data(base), 1, &r8, &scale, tok, n, unmerged)) {
            CHECK_MSG(0, "%s failed", base);
            continue;
        }
        double mean, d = max_diff(unmerged, merged, nv, &mean);
        const bool flt = i == 0; /* F16 and BF16 bases convert activations */
        printf("  r8 x %.1f on %-22s unmerged vs merged: max %.5f mean %.5f\n", scale, base, d,
               mean);
        CHECK_MSG(d <= (flt     ? 0.001
                        : i < 3 ? 0.01
                                : 0.05) &&
                      mean <= (i < 3 ? 0.002 : 0.008),
                  "%s: max %.5f mean %.5f", base, d, mean);
    }
    /* a base whose Q, K, V (and gate, up) need different activation types,
     * so their products run apart: the terms still land in the right columns */
    const char *mixed = tmp_path("mixed.gguf");
    if (write_mixed(test_data("quant/tiny-f32.gguf"), mixed)) {
        const float one = 1.0f;
        const char *mpath = tmp_path("merged.gguf");
        if (write_merged(mixed, 1, &r8, &one, mpath) &&
            logits_with(mpath, 0, NULL, NULL, tok, n, merged) &&
            logits_with(mixed, 1, &r8, &one, tok, n, unmerged)) {
            double mean, d = max_diff(unmerged, merged, nv, &mean);
            printf("  r8 x 1.0 on a mixed base (Q F16, K Q8_0, V Q6_K, gate Q4_K, up F16) unmerged "
                   "vs merged: max %.5f mean %.5f\n",
                   d, mean);
            CHECK_MSG(d <= 0.05 && mean <= 0.008, "mixed base: max %.5f mean %.5f", d, mean);
        } else {
            CHECK_MSG(0, "mixed base failed");
        }
    }
    /* two adapters at once on q4_k_m: the merged sum of both */
    const char *both[2] = {r8, qv_path};
    const float scales[2] = {0.5f, 1.0f};
    const char *mpath = tmp_path("merged2.gguf");
    if (write_merged(test_data("quant/tiny-q4_k_m.gguf"), 2, both, scales, mpath) &&
        logits_with(mpath, 0, NULL, NULL, tok, n, merged) &&
        logits_with(test_data("quant/tiny-q4_k_m.gguf"), 2, both, scales, tok, n, unmerged)) {
        double mean, d = max_diff(unmerged, merged, nv, &mean);
        printf("  r8 x 0.5 + qv-r4 x 1.0 on q4_k_m unmerged vs merged: max %.5f mean %.5f\n", d,
               mean);
        CHECK_MSG(d <= 0.05 && mean <= 0.008, "two adapters: max %.5f mean %.5f", d, mean);
    } else {
        CHECK_MSG(0, "two adapters on q4_k_m failed");
    }
    free(unmerged);
    free(merged);
}

/* ---- F16 and BF16 adapters -------------------------------------------------- */

static void test_half_types(const int32_t *tok, int n)
{
    char src_path[4096], base_path[4096];
    snprintf(src_path, sizeof src_path, "%s", test_data("lora/tiny-lora-r8.gguf"));
    snprintf(base_path, sizeof base_path, "%s", test_data("quant/tiny-f32.gguf"));
    const char *src = src_path, *base = base_path;
    const size_t nv = (size_t)n * 512;
    float *f32 = malloc(nv * 4), *half = malloc(nv * 4), *rounded = malloc(nv * 4);
    const float one = 1.0f;
    CHECK(logits_with(base, 1, &src, &one, tok, n, f32));
    static const struct {
        realm_type a, b;
        double tol;
    } cases[] = {
        {REALM_TYPE_F16, REALM_TYPE_F16, 0.01},
        {REALM_TYPE_BF16, REALM_TYPE_BF16, 0.05},
        {REALM_TYPE_F16, REALM_TYPE_BF16, 0.05},
        {REALM_TYPE_F32, REALM_TYPE_F16, 0.01},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *ph = tmp_path("half.gguf"), *pr = tmp_path("rounded.gguf");
        if (!convert_adapter(src, ph, cases[i].a, cases[i].b, false) ||
            !convert_adapter(src, pr, cases[i].a, cases[i].b, true) ||
            !logits_with(base, 1, &ph, &one, tok, n, half) ||
            !logits_with(base, 1, &pr, &one, tok, n, rounded)) {
            CHECK_MSG(0, "case %zu failed", i);
            continue;
        }
        realm_model *m;
        realm_lora *a = NULL;
        if (realm_model_load(base, NULL, &m) == 0) {
            CHECK_RC(realm_lora_load(m, ph, &a), REALM_OK);
            /* half the F32 adapter's bytes when both are 16-bit */
            if (a && cases[i].a != REALM_TYPE_F32)
                CHECK_EQ_INT(realm_lora_bytes(a), 311296 / 2);
            realm_lora_free(a);
            realm_model_free(m);
        }
        double mean, d = max_diff(half, f32, nv, &mean);
        printf("  adapter lora_a %s lora_b %s: max %.5f from the F32 source; %s the same values "
               "in F32\n",
               realm_type_name(cases[i].a), realm_type_name(cases[i].b), d,
               memcmp(half, rounded, nv * 4) ? "differs from" : "bitwise");
        CHECK_MSG(memcmp(half, rounded, nv * 4) == 0, "case %zu: not bitwise the rounded F32", i);
        CHECK_MSG(d <= cases[i].tol, "case %zu: %.5f from the F32 source", i, d);
        CHECK_MSG(d > 0, "case %zu: rounding changed nothing?", i);
    }
    free(f32);
    free(half);
    free(rounded);
}

/* ---- sets ------------------------------------------------------------------ */

static void test_sets(const int32_t *tok, int n)
{
    rig r;
    if (!rig_new(&r, test_data("quant/tiny-f32.gguf"), false, 2))
        return;
    realm_lora *r8 = load_lora(r.m, test_data("lora/tiny-lora-r8.gguf"));
    realm_lora *qv = load_lora(r.m, test_data("lora/tiny-lora-qv-r4.gguf"));
    const size_t nv = (size_t)n * r.n_vocab;
    float *a = malloc(nv * 4), *b = malloc(nv * 4);
    const realm_lora_item s1[] = {{r8, 1.0f}, {qv, 0.5f}};
    const realm_lora_item s2[] = {{qv, 0.5f}, {r8, 1.0f}};
    const realm_lora_item s3[] = {{r8, 0.25f}, {qv, 0.5f}, {r8, 0.75f}};
    const realm_lora_item s4[] = {{r8, 1.0f}, {qv, 0.5f}, {qv, 0.0f}};
    CHECK_RC(run_seq(&r, tok, n, &(realm_lora_set){2, s1}, 9, a), REALM_OK);
    CHECK_RC(run_seq(&r, tok, n, &(realm_lora_set){2, s2}, 9, b), REALM_OK);
    CHECK_MSG(memcmp(a, b, nv * 4) == 0, "a set's order changed the logits");
    CHECK_RC(run_seq(&r, tok, n, &(realm_lora_set){3, s3}, 9, b), REALM_OK);
    CHECK_MSG(memcmp(a, b, nv * 4) == 0, "a repeated adapter is not its summed scale");
    CHECK_RC(run_seq(&r, tok, n, &(realm_lora_set){3, s4}, 9, b), REALM_OK);
    CHECK_MSG(memcmp(a, b, nv * 4) == 0, "an item of scale 0 changed the logits");
    free(a);
    free(b);
    realm_lora_free(r8);
    realm_lora_free(qv);
    rig_free(&r);
}

/* ---- four adapter sets in one batch ----------------------------------------- */

enum { NSEQ = 4, NDEC = 6 };

typedef struct lane {
    realm_kv_cache *kv;
    realm_ctx *ctx;
} lane;

static bool lane_new(lane *l, const realm_model *m, bool invariant, int threads)
{
    CHECK_RC(realm_kv_cache_new(m, &(realm_kv_params){.n_ctx = 512, .block_size = 16}, &l->kv),
             REALM_OK);
    CHECK_RC(realm_ctx_new(m, l->kv,
                           &(realm_ctx_params){
                               .n_batch = 64, .n_threads = threads, .batch_invariant = invariant},
                           &l->ctx),
             REALM_OK);
    return l->kv && l->ctx;
}

/*
 * Sequence i: prompt tok[3i .. 3i + 16 + i), then NDEC decode tokens, with
 * adapter set i (set NSEQ - 1 is none). Solo: prompt in one pass, one entry
 * per decode pass, 2 threads. Batched: all four at once, prompts in chunks
 * of 7 side by side, decode passes of four entries, 1 thread. Every decode
 * step's logits compared.
 */
static void test_batch_mix(const int32_t *tok, const char *model, bool invariant)
{
    realm_model *m;
    CHECK_RC(realm_model_load(test_data(model), NULL, &m), REALM_OK);
    if (m == NULL)
        return;
    realm_lora *r8 = load_lora(m, test_data("lora/tiny-lora-r8.gguf"));
    realm_lora *qv = load_lora(m, test_data("lora/tiny-lora-qv-r4.gguf"));
    const realm_lora_item i0[] = {{r8, 1.0f}}, i1[] = {{qv, 1.0f}}, i2[] = {{r8, 0.5f}, {qv, 1.0f}};
    const realm_lora_set sets[3] = {{1, i0}, {1, i1}, {2, i2}};
    const int set_of[NSEQ] = {0, 1, 2, -1};
    lane solo, batch;
    if (!lane_new(&solo, m, invariant, 2) || !lane_new(&batch, m, invariant, 1))
        return;
    const int nv = realm_model_hparams(m)->n_vocab;
    float *want = malloc(sizeof(float) * NSEQ * (NDEC + 1) * nv);
    float *got = malloc(sizeof(float) * NSEQ * (NDEC + 1) * nv);
    float *out = malloc(sizeof(float) * 64 * nv);
    int32_t bt[64], bp[64], bs[64], bset[64];
    bool bw[64];
    for (int i = 0; i < NSEQ; i++) {
        const int np = 16 + i;
        int32_t seq;
        realm_kv_seq_new(solo.kv, &seq);
        for (int k = 0; k < np + NDEC; k++) {
            bt[k] = tok[3 * i + k];
            bp[k] = k;
            bs[k] = seq;
            bset[k] = set_of[i];
            bw[k] = false;
        }
        bw[np - 1] = true;
        CHECK_RC(realm_forward_lora(solo.ctx, &(realm_batch){np, bt, bp, bs, bw},
                                    &(realm_batch_lora){bset, sets, 3},
                                    want + (size_t)(i * (NDEC + 1)) * nv),
                 REALM_OK);
        for (int d = 0; d < NDEC; d++)
            CHECK_RC(realm_forward_lora(solo.ctx,
                                        &(realm_batch){1, bt + np + d, bp + np + d, bs, NULL},
                                        &(realm_batch_lora){bset, sets, 3},
                                        want + (size_t)(i * (NDEC + 1) + 1 + d) * nv),
                     REALM_OK);
        realm_kv_seq_free(solo.kv, seq);
    }
    int32_t seqs[NSEQ], done[NSEQ] = {0};
    for (int i = 0; i < NSEQ; i++)
        realm_kv_seq_new(batch.kv, &seqs[i]);
    for (bool left = true; left;) { /* prompts: chunks of 7 of every sequence per pass */
        int n = 0, rows = 0, row_of[NSEQ];
        left = false;
        for (int i = 0; i < NSEQ; i++) {
            const int np = 16 + i;
            row_of[i] = -1;
            for (int k = 0; k < 7 && done[i] < np; k++, done[i]++, n++) {
                bt[n] = tok[3 * i + done[i]];
                bp[n] = done[i];
                bs[n] = seqs[i];
                bset[n] = set_of[i];
                bw[n] = done[i] == np - 1;
                if (bw[n])
                    row_of[i] = rows++;
            }
            left |= done[i] < np;
        }
        CHECK_RC(realm_forward_lora(batch.ctx, &(realm_batch){n, bt, bp, bs, bw},
                                    &(realm_batch_lora){bset, sets, 3}, out),
                 REALM_OK);
        for (int i = 0; i < NSEQ; i++)
            if (row_of[i] >= 0)
                memcpy(got + (size_t)(i * (NDEC + 1)) * nv, out + (size_t)row_of[i] * nv,
                       sizeof(float) * nv);
    }
    for (int d = 0; d < NDEC; d++) {
        for (int i = 0; i < NSEQ; i++) {
            bt[i] = tok[3 * i + 16 + i + d];
            bp[i] = 16 + i + d;
            bs[i] = seqs[NSEQ - 1 - i]; /* another order than the sets' */
            bset[i] = set_of[NSEQ - 1 - i];
            bt[i] = tok[3 * (NSEQ - 1 - i) + 16 + (NSEQ - 1 - i) + d];
            bp[i] = 16 + (NSEQ - 1 - i) + d;
            bw[i] = true;
        }
        CHECK_RC(realm_forward_lora(batch.ctx, &(realm_batch){NSEQ, bt, bp, bs, bw},
                                    &(realm_batch_lora){bset, sets, 3}, out),
                 REALM_OK);
        for (int i = 0; i < NSEQ; i++)
            memcpy(got + (size_t)(i * (NDEC + 1) + 1 + d) * nv, out + (size_t)(NSEQ - 1 - i) * nv,
                   sizeof(float) * nv);
    }
    for (int i = 0; i < NSEQ; i++) {
        const float *w = want + (size_t)(i * (NDEC + 1)) * nv,
                    *g = got + (size_t)(i * (NDEC + 1)) * nv;
        const size_t cnt = (size_t)(NDEC + 1) * nv;
        const double d = max_diff(w, g, cnt, NULL);
        printf("  %s, %s: sequence %d (set %d) batched vs solo: max diff %.3g%s\n", model,
               invariant ? "batch-invariant" : "default", i, set_of[i], d,
               memcmp(w, g, cnt * 4) == 0 ? " (bitwise)" : "");
        if (invariant)
            CHECK_MSG(memcmp(w, g, cnt * 4) == 0, "sequence %d: batched differs from solo", i);
        else
            CHECK_MSG(d <= 1e-4, "sequence %d: batched differs from solo by %.3g", i, d);
    }
    /* the adapters matter: the sequences with sets differ from the base */
    free(want);
    free(got);
    free(out);
    realm_ctx_free(solo.ctx);
    realm_kv_cache_free(solo.kv);
    realm_ctx_free(batch.ctx);
    realm_kv_cache_free(batch.kv);
    realm_lora_free(r8);
    realm_lora_free(qv);
    realm_model_free(m);
}

/* ---- malformed adapters and batches ----------------------------------------- */

typedef struct tspec {
    const char *name;
    int64_t ne0, ne1;
    realm_type type;
} tspec;

/* An adapter with the given metadata (NULL: key left out) and tensors
 * (small random values). */
static bool write_adapter(const char *path, const char *gtype, const char *atype, const char *arch,
                          const tspec *ts, int nt)
{
    realm_gguf_writer *w;
    if (realm_gguf_writer_new(&w) < 0)
        return false;
    if (arch)
        realm_gguf_set_str(w, "general.architecture", arch, strlen(arch));
    if (gtype)
        realm_gguf_set_str(w, "general.type", gtype, strlen(gtype));
    if (atype)
        realm_gguf_set_str(w, "adapter.type", atype, strlen(atype));
    realm_gguf_set_f32(w, "adapter.lora.alpha", 8.0f);
    void *bufs[8];
    for (int i = 0; i < nt; i++) {
        const size_t sz = realm_row_size(ts[i].type, ts[i].ne0) * (size_t)ts[i].ne1;
        bufs[i] = calloc(1, sz);
        if (ts[i].type == REALM_TYPE_F32)
            fill(bufs[i], ts[i].ne0 * ts[i].ne1, 0.01f);
        const int64_t ne[2] = {ts[i].ne0, ts[i].ne1};
        realm_gguf_add_tensor(w, ts[i].name, 2, ne, ts[i].type, bufs[i]);
    }
    const int rc = realm_gguf_writer_write(w, path);
    CHECK_MSG(rc == 0, "writing %s: %s", path, realm_last_error());
    for (int i = 0; i < nt; i++)
        free(bufs[i]);
    realm_gguf_writer_free(w);
    return rc == 0;
}

static void expect_refused(const realm_model *m, const char *path, int code, const char *part)
{
    realm_lora *a = (realm_lora *)1;
    const int rc = realm_lora_load(m, path, &a);
    const char *msg = realm_last_error();
    CHECK_MSG(rc == code && a == NULL, "%s: rc %d (want %d), msg %s", path, rc, code, msg);
    CHECK_MSG(strncmp(msg, path, strlen(path)) == 0, "message does not start with the path: %s",
              msg);
    CHECK_MSG(strstr(msg, part) != NULL, "message lacks '%s': %s", part, msg);
    printf("  refused: %s\n", msg + strlen(path) + 2);
    if (rc == 0)
        realm_lora_free(a);
}

#define F32 REALM_TYPE_F32
#define QA  "blk.0.attn_q.weight.lora_a"
#define QB  "blk.0.attn_q.weight.lora_b"

static void test_malformed(void)
{
    realm_model *m, *m2, *stories;
    CHECK_RC(realm_model_load(test_data("quant/tiny-f32.gguf"), NULL, &m), REALM_OK);
    CHECK_RC(realm_model_load(test_data("quant/tiny-f32.gguf"), NULL, &m2), REALM_OK);
    CHECK_RC(realm_model_load(test_data("models/stories260K.gguf"), NULL, &stories), REALM_OK);
    if (!m || !m2 || !stories)
        return;
    const char *p = tmp_path("bad.gguf");
    const tspec good[] = {{QA, 256, 8, F32}, {QB, 8, 256, F32}};

    expect_refused(m, test_data("quant/tiny-f32.gguf"), REALM_ERR_FORMAT, "general.type");
    expect_refused(m, tmp_path("no-such-file.gguf"), REALM_ERR_IO, "");
    if (write_adapter(p, "adapter", "control_vector", "llama", good, 2))
        expect_refused(m, p, REALM_ERR_FORMAT, "adapter.type");
    if (write_adapter(p, "model", "lora", "llama", good, 2))
        expect_refused(m, p, REALM_ERR_FORMAT, "general.type is 'model'");
    if (write_adapter(p, "adapter", "lora", "qwen2", good, 2))
        expect_refused(m, p, REALM_ERR_UNSUPPORTED, "'qwen2'");
    if (write_adapter(p, "adapter", "lora", "llama",
                      (tspec[]){{"blk.0.attn_k.weight.lora_a", 256, 8, F32},
                                {"blk.0.attn_k.weight.lora_b", 8, 256, F32}},
                      2))
        expect_refused(m, p, REALM_ERR_FORMAT, "'blk.0.attn_k.weight.lora_b' [8, 256]");
    if (write_adapter(p, "adapter", "lora", "llama",
                      (tspec[]){{QA, 8, 256, F32}, {QB, 256, 8, F32}}, 2))
        expect_refused(m, p, REALM_ERR_FORMAT, "transposed");
    if (write_adapter(p, "adapter", "lora", "llama",
                      (tspec[]){{QA, 256, 8, F32}, {QB, 4, 256, F32}}, 2))
        expect_refused(m, p, REALM_ERR_FORMAT, "rank mismatch: '" QA "' has rank 8");
    if (write_adapter(p, "adapter", "lora", "llama",
                      (tspec[]){{QA, 256, 129, F32}, {QB, 129, 256, F32}}, 2))
        expect_refused(m, p, REALM_ERR_UNSUPPORTED, "rank 129");
    if (write_adapter(p, "adapter", "lora", "llama",
                      (tspec[]){{QA, 256, 8, REALM_TYPE_Q8_0}, {QB, 8, 256, F32}}, 2))
        expect_refused(m, p, REALM_ERR_UNSUPPORTED, "'" QA "' has type Q8_0");
    if (write_adapter(p, "adapter", "lora", "llama", good, 1))
        expect_refused(m, p, REALM_ERR_FORMAT, "no '" QB "'");
    if (write_adapter(p, "adapter", "lora", "llama",
                      (tspec[]){{"token_embd.weight.lora_a", 256, 8, F32},
                                {"token_embd.weight.lora_b", 8, 512, F32}},
                      2))
        expect_refused(m, p, REALM_ERR_UNSUPPORTED, "not 'token_embd.weight'");
    if (write_adapter(p, "adapter", "lora", "llama",
                      (tspec[]){{"blk.2.attn_q.weight.lora_a", 256, 8, F32},
                                {"blk.2.attn_q.weight.lora_b", 8, 256, F32}},
                      2))
        expect_refused(m, p, REALM_ERR_FORMAT, "the base model does not have");
    if (write_adapter(p, "adapter", "lora", "llama",
                      (tspec[]){{"blk.0.attn_q.weight", 256, 256, F32}}, 1))
        expect_refused(m, p, REALM_ERR_FORMAT, "not a LoRA tensor");
    if (write_adapter(p, "adapter", "lora", "llama", NULL, 0))
        expect_refused(m, p, REALM_ERR_FORMAT, "no LoRA tensors");
    /* the tiny model's adapter on stories260K (dim 64): every shape is off */
    expect_refused(stories, test_data("lora/tiny-lora-r8.gguf"), REALM_ERR_FORMAT,
                   "of the base model: they must be [64, rank]");

    /* truncated: the shared adapter cut at two thirds */
    FILE *in = fopen(test_data("lora/tiny-lora-r8.gguf"), "rb"), *out = fopen(p, "wb");
    if (in && out) {
        static char buf[400000];
        const size_t n = fread(buf, 1, sizeof buf, in);
        fwrite(buf, 1, n * 2 / 3, out);
    }
    if (in)
        fclose(in);
    if (out)
        fclose(out);
    expect_refused(m, p, REALM_ERR_FORMAT, "past end of file");

    /* batches: an adapter of another model, a set out of range, too much in a set */
    realm_lora *other = load_lora(m2, test_data("lora/tiny-lora-r8.gguf"));
    realm_lora *mine = load_lora(m, test_data("lora/tiny-lora-r8.gguf"));
    realm_lora *big[3] = {0};
    if (write_adapter(p, "adapter", "lora", "llama",
                      (tspec[]){{QA, 256, 128, F32}, {QB, 128, 256, F32}}, 2))
        for (int i = 0; i < 3; i++)
            big[i] = load_lora(m, p);
    realm_kv_cache *kv;
    realm_ctx *ctx;
    CHECK_RC(realm_kv_cache_new(m, &(realm_kv_params){.n_ctx = 64}, &kv), REALM_OK);
    CHECK_RC(realm_ctx_new(m, kv, &(realm_ctx_params){.n_batch = 8, .n_threads = 1}, &ctx),
             REALM_OK);
    int32_t seq, t = 1, pos = 0, set0 = 0, set1 = 1;
    realm_kv_seq_new(kv, &seq);
    const realm_batch b = {1, &t, &pos, &seq, NULL};
    float *logits = malloc(512 * 4);
    const realm_lora_item it_other[] = {{other, 1}};
    CHECK_RC(realm_forward_lora(
                 ctx, &b, &(realm_batch_lora){&set0, &(realm_lora_set){1, it_other}, 1}, logits),
             REALM_ERR_INVAL);
    CHECK_MSG(strstr(realm_last_error(), "another model"), "%s", realm_last_error());
    const realm_lora_item it_mine[] = {{mine, 1}};
    CHECK_RC(realm_forward_lora(
                 ctx, &b, &(realm_batch_lora){&set1, &(realm_lora_set){1, it_mine}, 1}, logits),
             REALM_ERR_INVAL);
    CHECK_MSG(strstr(realm_last_error(), "batch entry 0: adapter set 1"), "%s", realm_last_error());
    realm_lora_item nine[9];
    for (int i = 0; i < 9; i++)
        nine[i] = (realm_lora_item){mine, 0.1f};
    CHECK_RC(realm_forward_lora(ctx, &b, &(realm_batch_lora){&set0, &(realm_lora_set){9, nine}, 1},
                                logits),
             REALM_ERR_INVAL);
    const realm_lora_item it_big[] = {{big[0], 1}, {big[1], 1}, {big[2], 1}};
    if (big[2]) {
        CHECK_RC(realm_forward_lora(
                     ctx, &b, &(realm_batch_lora){&set0, &(realm_lora_set){3, it_big}, 1}, logits),
                 REALM_ERR_INVAL);
        CHECK_MSG(strstr(realm_last_error(), "total rank 384"), "%s", realm_last_error());
        /* two of them fit (256) */
        CHECK_RC(realm_forward_lora(
                     ctx, &b, &(realm_batch_lora){&set0, &(realm_lora_set){2, it_big}, 1}, logits),
                 REALM_OK);
        CHECK_EQ_INT(realm_kv_seq_len(kv, seq), 1); /* the refused ones appended nothing */
    }
    free(logits);
    realm_ctx_free(ctx);
    realm_kv_cache_free(kv);
    for (int i = 0; i < 3; i++)
        realm_lora_free(big[i]);
    realm_lora_free(other);
    realm_lora_free(mine);
    realm_model_free(stories);
    realm_model_free(m2);
    realm_model_free(m);
}

int main(void)
{
    test_begin("lora", 600);
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/realm-lora-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    int32_t tok[MAX_TOKENS];
    const int n = read_tokens(test_data("reference/tiny-tokens.txt"), tok, MAX_TOKENS);
    CHECK_EQ_INT(n, 59);
    test_kernels();
    test_reference(tok, n);
    test_sets(tok, n);
    test_half_types(tok, n);
    test_quant_bases(tok, n);
    test_batch_mix(tok, "quant/tiny-q4_k_m.gguf", true);
    test_batch_mix(tok, "quant/tiny-f32.gguf", true);
    /* without batch invariance, on F32 weights (on a quantized base a rounding
     * difference may flip an activation's quantization step) */
    test_batch_mix(tok, "quant/tiny-f32.gguf", false);
    test_malformed();
    static const char *const files[] = {"merged.gguf", "merged2.gguf", "half.gguf", "rounded.gguf",
                                        "bad.gguf"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink(tmp_path(files[i]));
    rmdir(tmpdir);
    return test_end();
}
