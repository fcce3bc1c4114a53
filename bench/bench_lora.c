/*
 * bench_lora — the cost of LoRA adapters in batched decoding, measured A/B
 * interleaved so that a shared, noisy machine slows every configuration
 * alike:
 *
 *     build/bench_lora MODEL.gguf ADAPTER.gguf... [--par 8] [--steps 40] [--npp 32]
 *                      [-t THREADS] [--json]
 *
 * P sequences get an npp-token prompt; then decode passes of one token of
 * every sequence run in rounds, each round one pass per configuration in
 * turn: no adapter, then 1, 2, 4, ... distinct adapters (sequence i uses
 * adapter i mod count; up to the number of adapters given, at most P). The
 * sequences grow by one token per pass whatever the configuration, so
 * attention costs the same for all; only the adapters differ. (Their keys
 * and values mix configurations: the output is meaningless, the timing is
 * not.) Reported per configuration: the median pass time, the aggregate
 * tokens/s it means, and its ratio to no adapter.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock_internal.h"
#include "realm/error.h"
#include "realm/lora.h"
#include "realm/model.h"

#define MAX_AD  16
#define MAX_CFG 8

static int cmp_d(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv)
{
    const char *model = NULL, *paths[MAX_AD];
    int n_ad = 0, par = 8, steps = 40, npp = 32, threads = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--par") && v)
            par = atoi(v), i++;
        else if (!strcmp(a, "--steps") && v)
            steps = atoi(v), i++;
        else if (!strcmp(a, "--npp") && v)
            npp = atoi(v), i++;
        else if (!strcmp(a, "-t") && v)
            threads = atoi(v), i++;
        else if (!strcmp(a, "--json"))
            json = true;
        else if (a[0] == '-') {
            fprintf(stderr, "bench_lora: unknown option %s\n", a);
            return 2;
        } else if (model == NULL)
            model = a;
        else if (n_ad < MAX_AD)
            paths[n_ad++] = a;
    }
    if (model == NULL || n_ad == 0 || par < 1 || par > 64 || steps < 1 || npp < 1) {
        fprintf(stderr, "usage: bench_lora MODEL.gguf ADAPTER.gguf... [--par 8] [--steps 40] "
                        "[--npp 32] [-t THREADS] [--json]\n");
        return 2;
    }
    realm_model *m;
    if (realm_model_load(model, NULL, &m) < 0) {
        fprintf(stderr, "bench_lora: %s\n", realm_last_error());
        return 1;
    }
    realm_lora *ad[MAX_AD] = {0};
    for (int i = 0; i < n_ad; i++)
        if (realm_lora_load(m, paths[i], &ad[i]) < 0) {
            fprintf(stderr, "bench_lora: %s\n", realm_last_error());
            return 1;
        }
    /* configurations: 0, 1, 2, 4, ... distinct adapters */
    int cfg[MAX_CFG], n_cfg = 0;
    cfg[n_cfg++] = 0;
    for (int k = 1; k <= n_ad && k <= par && n_cfg < MAX_CFG; k *= 2)
        cfg[n_cfg++] = k;
    const int n_ctx = par * (npp + n_cfg * steps + 32);
    realm_kv_cache *kv;
    realm_ctx *ctx;
    if (realm_kv_cache_new(m, &(realm_kv_params){.n_ctx = n_ctx}, &kv) < 0 ||
        realm_ctx_new(m, kv,
                      &(realm_ctx_params){.n_batch = npp > par ? npp : par, .n_threads = threads},
                      &ctx) < 0) {
        fprintf(stderr, "bench_lora: %s\n", realm_last_error());
        return 1;
    }
    const int nv = realm_model_hparams(m)->n_vocab;
    float *logits = malloc(sizeof(float) * (size_t)nv * (size_t)par);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(npp > par ? npp : par));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)(npp > par ? npp : par));
    int32_t *sq = malloc(sizeof(int32_t) * (size_t)(npp > par ? npp : par));
    int32_t *set = malloc(sizeof(int32_t) * (size_t)(npp > par ? npp : par));
    int32_t *seqs = malloc(sizeof(int32_t) * (size_t)par);
    double *t = malloc(sizeof(double) * (size_t)(n_cfg * steps));
    realm_lora_item items[MAX_AD];
    realm_lora_set sets[MAX_AD];
    for (int i = 0; i < n_ad; i++) {
        items[i] = (realm_lora_item){ad[i], 1.0f};
        sets[i] = (realm_lora_set){1, &items[i]};
    }
    uint64_t rng = 0x2545f4914f6cdd1dull;
    for (int s = 0; s < par; s++) { /* prompts, untimed, without adapters */
        realm_kv_seq_new(kv, &seqs[s]);
        for (int i = 0; i < npp; i++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            tok[i] = (int32_t)(rng % (uint64_t)nv);
            pos[i] = i;
            sq[i] = seqs[s];
        }
        if (realm_forward(ctx, &(realm_batch){npp, tok, pos, sq, NULL}, logits) < 0) {
            fprintf(stderr, "bench_lora: %s\n", realm_last_error());
            return 1;
        }
    }
    int len = npp;
    for (int r = -1; r < steps; r++) /* round -1: warm-up, untimed */
        for (int c = 0; c < n_cfg; c++) {
            for (int s = 0; s < par; s++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                tok[s] = (int32_t)(rng % (uint64_t)nv);
                pos[s] = len;
                sq[s] = seqs[s];
                set[s] = cfg[c] ? s % cfg[c] : -1;
            }
            const realm_batch_lora bl = {set, sets, cfg[c]};
            const double t0 = realm__now();
            if (realm_forward_lora(ctx, &(realm_batch){par, tok, pos, sq, NULL},
                                   cfg[c] ? &bl : NULL, logits) < 0) {
                fprintf(stderr, "bench_lora: %s\n", realm_last_error());
                return 1;
            }
            if (r >= 0)
                t[c * steps + r] = realm__now() - t0;
            len++;
        }
    double base = 0;
    if (!json)
        printf("%s, %d sequences, %d-token prompts, %d rounds of one pass per configuration; "
               "adapters: %s (rank %d, %.1f MiB each)\n\n"
               "| distinct adapters | median pass ms | tokens/s | vs none |\n"
               "| ---: | ---: | ---: | ---: |\n",
               model, par, npp, steps, paths[0], (int)realm_lora_rank(ad[0]),
               realm_lora_bytes(ad[0]) / 1048576.0);
    else
        printf("{\"model\": \"%s\", \"par\": %d, \"npp\": %d, \"rounds\": %d, \"results\": [",
               model, par, npp, steps);
    for (int c = 0; c < n_cfg; c++) {
        const double med = median(t + c * steps, steps);
        if (c == 0)
            base = med;
        if (json)
            printf(
                "%s{\"adapters\": %d, \"pass_ms\": %.3f, \"tokens_per_s\": %.3f, \"ratio\": %.4f}",
                c ? ", " : "", cfg[c], med * 1e3, par / med, base / med);
        else
            printf("| %d | %.1f | %.2f | %.3f |\n", cfg[c], med * 1e3, par / med, base / med);
    }
    if (json)
        printf("]}\n");
    free(logits);
    free(tok);
    free(pos);
    free(sq);
    free(set);
    free(seqs);
    free(t);
    realm_ctx_free(ctx);
    realm_kv_cache_free(kv);
    for (int i = 0; i < n_ad; i++)
        realm_lora_free(ad[i]);
    realm_model_free(m);
    return 0;
}
