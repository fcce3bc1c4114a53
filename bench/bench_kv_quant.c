/*
 * bench_kv_quant — what a quantized KV cache costs in accuracy: the logits of
 * each model with Q8_0 keys and values (and the mixed pairs) against the F16
 * cache, at every position of one sequence, and greedy generation with each.
 *
 *     bench_kv_quant [--tokens N] [--ids FILE] [--greedy N] MODEL.gguf...
 *
 * The sequence is the ids in FILE (whitespace-separated, e.g. the shared
 * testdata's reference/tiny-tokens.txt), else N pseudo-random ids after BOS
 * (default 256), fed in passes of 64 tokens. Per model and cache pair: the
 * largest and the mean absolute logit difference from the F16 cache, with
 * the mean absolute deviation of the F16 logits from their row mean for
 * scale, how often the top-1 token is the same, and the largest margin the
 * F16 logits had between their top two tokens where it was not (a change
 * across a near-tie or a real one). A first row runs the F16 cache again one
 * token a pass: what a mere change of summation order moves, for
 * scale (random-weight models amplify any change layer after layer). Greedy:
 * from the
 * sequence's first 16 ids, --greedy tokens (default 64) with each cache;
 * the tokens equal before the first difference. A model whose head size is
 * not a multiple of 32 cannot take Q8_0 (stories260K's is 8): it says so.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "realm/error.h"
#include "realm/model.h"

enum { PASS = 64, GREEDY_PROMPT = 16 };

/* Logits of every position of ids with a KV cache of types tk, tv, fed in
 * passes of `pass` tokens; NULL if refused. */
static float *all_logits(const realm_model *m, const int32_t *ids, int n, realm_type tk,
                         realm_type tv, int pass)
{
    const int nv = realm_model_hparams(m)->n_vocab;
    realm_kv_cache *kv = NULL;
    realm_ctx *ctx = NULL;
    float *out = malloc(sizeof *out * (size_t)n * (size_t)nv);
    int32_t pos[PASS], seq[PASS], s = 0;
    bool want[PASS];
    if (!out ||
        realm_kv_cache_new(m, &(realm_kv_params){.n_ctx = n + 32, .type_k = tk, .type_v = tv},
                           &kv) < 0 ||
        realm_ctx_new(m, kv, &(realm_ctx_params){.n_batch = PASS}, &ctx) < 0 ||
        realm_kv_seq_new(kv, &s) < 0)
        goto fail;
    for (int at = 0; at < n; at += pass) {
        const int len = n - at < pass ? n - at : pass;
        for (int i = 0; i < len; i++)
            pos[i] = at + i, seq[i] = s, want[i] = true;
        realm_batch b = {len, ids + at, pos, seq, want};
        if (realm_forward(ctx, &b, out + (size_t)at * (size_t)nv) < 0)
            goto fail;
    }
    realm_ctx_free(ctx);
    realm_kv_cache_free(kv);
    return out;
fail:
    free(out);
    realm_ctx_free(ctx);
    realm_kv_cache_free(kv);
    return NULL;
}

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        b = v[i] > v[b] ? i : b;
    return b;
}

/* n greedy tokens after prompt[0..np) with a cache of tk, tv; 0 or -1. */
static int greedy(const realm_model *m, const int32_t *prompt, int np, int n, realm_type tk,
                  realm_type tv, int32_t *out)
{
    const int nv = realm_model_hparams(m)->n_vocab;
    realm_kv_cache *kv = NULL;
    realm_ctx *ctx = NULL;
    float *logits = malloc(sizeof *logits * (size_t)nv);
    int32_t pos[GREEDY_PROMPT], seq[GREEDY_PROMPT], s = 0;
    int rc = -1;
    if (!logits ||
        realm_kv_cache_new(m, &(realm_kv_params){.n_ctx = np + n + 32, .type_k = tk, .type_v = tv},
                           &kv) < 0 ||
        realm_ctx_new(m, kv, &(realm_ctx_params){.n_batch = GREEDY_PROMPT}, &ctx) < 0 ||
        realm_kv_seq_new(kv, &s) < 0)
        goto done;
    for (int i = 0; i < np; i++)
        pos[i] = i, seq[i] = s;
    realm_batch b = {np, prompt, pos, seq, NULL};
    if (realm_forward(ctx, &b, logits) < 0)
        goto done;
    for (int i = 0; i < n; i++) {
        int32_t t = argmax(logits, nv), p = np + i;
        out[i] = t;
        realm_batch d = {1, &t, &p, &s, NULL};
        if (realm_forward(ctx, &d, logits) < 0)
            goto done;
    }
    rc = 0;
done:
    free(logits);
    realm_ctx_free(ctx);
    realm_kv_cache_free(kv);
    return rc;
}

static int read_ids(const char *path, int32_t **ids)
{
    FILE *f = fopen(path, "r");
    int n = 0, cap = 0, v;
    *ids = NULL;
    while (f && fscanf(f, "%d", &v) == 1) {
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            int32_t *t = realloc(*ids, sizeof *t * (size_t)cap);
            if (!t)
                break;
            *ids = t;
        }
        (*ids)[n++] = v;
    }
    if (f)
        fclose(f);
    return n;
}

static void bench_model(const char *path, const char *ids_file, int n_tok, int n_greedy)
{
    realm_model *m = NULL;
    if (realm_model_load(path, NULL, &m) < 0) {
        fprintf(stderr, "%s: %s\n", path, realm_last_error());
        return;
    }
    const realm_hparams *hp = realm_model_hparams(m);
    const int nv = hp->n_vocab;
    int32_t *ids = NULL;
    int n = 0;
    if (ids_file) {
        n = read_ids(ids_file, &ids);
    } else {
        ids = malloc(sizeof *ids * (size_t)n_tok);
        uint64_t x = 0x2545f4914f6cdd1dull;
        for (n = 0; ids && n < n_tok; n++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            ids[n] = n == 0 ? 1 : 3 + (int32_t)(x % (uint64_t)(nv - 3));
        }
    }
    printf("\n%s: %d layers, head size %d, %d/%d heads; %d positions\n\n", path, hp->n_layer,
           hp->head_dim, hp->n_head, hp->n_head_kv, n);
    float *ref = n > 0 ? all_logits(m, ids, n, REALM_TYPE_F16, REALM_TYPE_F16, PASS) : NULL;
    if (!ref) {
        printf("(no F16 run: %s)\n", n > 0 ? realm_last_error() : "no ids");
        goto out;
    }
    double spread = 0; /* mean |logit - its row's mean| of the F16 run */
    for (int p = 0; p < n; p++) {
        const float *r = ref + (size_t)p * nv;
        double mean = 0;
        for (int i = 0; i < nv; i++)
            mean += r[i] / nv;
        for (int i = 0; i < nv; i++)
            spread += fabs(r[i] - mean) / ((double)nv * n);
    }
    printf("logit spread (mean |logit - row mean|, F16 cache): %.3f\n\n"
           "| K / V cache | max abs diff | mean abs diff | top-1 same | largest F16 top-2 gap "
           "where it changed |\n| --- | ---: | ---: | ---: | ---: |\n",
           spread);
    /* the first row is no cache change: F16 again one token a pass (the
     * matrix-vector loop instead of the blocked kernels), the
     * size of a mere change of summation order */
    static const realm_type pairs[][2] = {{REALM_TYPE_F16, REALM_TYPE_F16},
                                          {REALM_TYPE_Q8_0, REALM_TYPE_Q8_0},
                                          {REALM_TYPE_F16, REALM_TYPE_Q8_0},
                                          {REALM_TYPE_Q8_0, REALM_TYPE_F16}};
    for (int pi = 0; pi < 4; pi++) {
        const realm_type tk = pairs[pi][0], tv = pairs[pi][1];
        float *got = all_logits(m, ids, n, tk, tv, pi == 0 ? 1 : PASS);
        if (!got) {
            printf("| %s / %s | refused: %s | | | |\n", realm_type_name(tk), realm_type_name(tv),
                   realm_last_error());
            continue;
        }
        double mx = 0, sum = 0, flip_gap = 0;
        int same = 0;
        for (int p = 0; p < n; p++) {
            const float *a = ref + (size_t)p * nv, *b = got + (size_t)p * nv;
            for (int i = 0; i < nv; i++) {
                const double d = fabs((double)a[i] - b[i]);
                mx = d > mx ? d : mx;
                sum += d;
            }
            const int top = argmax(a, nv);
            if (top == argmax(b, nv)) {
                same++;
                continue;
            }
            float second = -INFINITY; /* F16's margin where the top token changed */
            for (int i = 0; i < nv; i++)
                second = i != top && a[i] > second ? a[i] : second;
            flip_gap = a[top] - second > flip_gap ? a[top] - second : flip_gap;
        }
        printf("| %s / %s%s | %.5f | %.6f | %d/%d | %.4f |\n", realm_type_name(tk),
               realm_type_name(tv), pi == 0 ? ", one token a pass" : "", mx, sum / ((double)n * nv),
               same, n, flip_gap);
        free(got);
    }
    if (n_greedy > 0 && n >= GREEDY_PROMPT) {
        int32_t *a = malloc(sizeof *a * (size_t)n_greedy),
                *b = malloc(sizeof *b * (size_t)n_greedy);
        if (a && b &&
            greedy(m, ids, GREEDY_PROMPT, n_greedy, REALM_TYPE_F16, REALM_TYPE_F16, a) == 0) {
            if (greedy(m, ids, GREEDY_PROMPT, n_greedy, REALM_TYPE_Q8_0, REALM_TYPE_Q8_0, b) == 0) {
                int first = 0, equal = 0;
                while (first < n_greedy && a[first] == b[first])
                    first++;
                for (int i = 0; i < n_greedy; i++)
                    equal += a[i] == b[i];
                printf("\ngreedy, %d tokens after %d: Q8_0 equal to F16 for the first %d "
                       "(%d of %d at the same place)\n",
                       n_greedy, GREEDY_PROMPT, first, equal, n_greedy);
            } else {
                printf("\ngreedy with Q8_0: %s\n", realm_last_error());
            }
        }
        free(a);
        free(b);
    }
    free(ref);
out:
    free(ids);
    realm_model_free(m);
}

int main(int argc, char **argv)
{
    int n_tok = 256, n_greedy = 64, n_models = 0;
    const char *ids_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc)
            n_tok = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--greedy") && i + 1 < argc)
            n_greedy = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ids") && i + 1 < argc)
            ids_file = argv[++i];
        else if (argv[i][0] == '-')
            n_tok = -1;
        else
            n_models++;
    }
    if (n_models == 0 || n_tok < 1 || n_greedy < 0) {
        fprintf(stderr,
                "usage: bench_kv_quant [--tokens N] [--ids FILE] [--greedy N] MODEL.gguf...\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            i++;
            continue;
        }
        bench_model(argv[i], ids_file, n_tok, n_greedy);
    }
    return 0;
}
