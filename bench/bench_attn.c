/*
 * bench_attn — attention on one thread, by the forward pass's own functions,
 * for one KV head group (GROUP query heads sharing a KV head) in a paged
 * cache of blocks of 32 tokens and 4 KV heads (TinyLlama's shape):
 *
 *   decode   one query token attending to KEYS cached positions
 *            (realm__attention), in ns per key: with the cache warm, and
 *            from memory (the caches evicted first by reading 256 MiB, as
 *            the weights a forward pass streams between two visits of a
 *            layer do; best of 5 per rep);
 *   prefill  a prompt chunk of BATCH tokens at positions KEYS - BATCH ..
 *            KEYS - 1, each attending causally to everything before it:
 *            token by token (realm__attention per token, the path before the
 *            tiled kernel) and in tiles of up to REALM__ATTN_QTILE tokens
 *            (realm__attn_prefill), in ms per chunk and the ratio; the two
 *            outputs are checked to be the same bits.
 *
 *     bench_attn [KEYS] [HEAD_DIM] [GROUP] [BATCH] [REPS]   (defaults 2048 64 8 512 3)
 *
 * For F16 and Q8_0 keys and values. Best of REPS runs; the best ISA runs
 * (REALM_ISA=avx2 or scalar caps it). The cache is KEYS x 4 heads x 2 rows,
 * 2 MiB for the defaults in F16: warm, mostly in L2 and L3.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock_internal.h"
#include "model/model_internal.h"

enum { HEADS = 4, BLOCK = 32 };

/* Evicts the caches: reads EVICT_BYTES, more than any L3 here, as the
 * weights a forward pass streams between two visits of a layer's KV do. */
enum { EVICT_BYTES = 256 << 20 };
static volatile uint64_t evict_sink;
static void evict(const uint64_t *buf)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < EVICT_BYTES / sizeof *buf; i += 8)
        sum += buf[i];
    evict_sink = sum;
}

/* *best = min(*best, seconds since t0) */
static void keep_best(double *best, double t0)
{
    const double dt = realm__now() - t0;
    *best = dt < *best ? dt : *best;
}

static int run(const realm_ops *o, realm_type type, int n, int hd, int nq, int batch, int reps)
{
    realm_model fake;
    memset(&fake, 0, sizeof fake);
    fake.hp = (realm_hparams){.n_layer = 1,
                              .n_head = nq * HEADS,
                              .n_head_kv = HEADS,
                              .head_dim = hd,
                              .n_embd = nq * HEADS * hd};
    realm_kv_cache *kv = NULL;
    if (realm_kv_cache_new(
            &fake,
            &(realm_kv_params){
                .n_ctx = n + BLOCK, .block_size = BLOCK, .type_k = type, .type_v = type},
            &kv) < 0)
        return 1;
    int32_t seq;
    realm_kv_seq_new(kv, &seq);
    if (realm__kv_reserve(kv, seq, n) < 0)
        return 1;
    realm__kv_seq(kv, seq)->len = n;
    const int64_t row = (int64_t)HEADS * hd;
    float *x = malloc(sizeof *x * (size_t)row);
    for (int32_t t = 0; t < kv->n_blocks * BLOCK; t++)
        for (int side = 0; side < 2; side++) {
            for (int64_t i = 0; i < row; i++)
                x[i] = sinf((float)t * 0.37f + (float)i * 1.3f + (float)side);
            uint8_t *dst = side ? kv->v[0] + (size_t)t * kv->row_bytes_v
                                : kv->k[0] + (size_t)t * kv->row_bytes_k;
            if (type == REALM_TYPE_F16)
                for (int64_t i = 0; i < row; i++)
                    ((uint16_t *)dst)[i] = realm_fp32_to_fp16(x[i]);
            else
                realm_quantize_row(REALM_TYPE_Q8_0, x, dst, row);
        }
    free(x);
    const int64_t qd = (int64_t)nq * hd;
    float *q = malloc(sizeof *q * (size_t)(batch * qd));
    float *out = malloc(sizeof *out * (size_t)(batch * qd));
    float *out2 = malloc(sizeof *out2 * (size_t)(batch * qd));
    const int64_t sl = REALM__ATTN_SCRATCH(nq, hd) > REALM__ATTN_PREFILL_SCRATCH(nq, hd)
                           ? REALM__ATTN_SCRATCH(nq, hd)
                           : REALM__ATTN_PREFILL_SCRATCH(nq, hd);
    float *scratch = malloc(sizeof *scratch * (size_t)sl);
    for (int64_t i = 0; i < batch * qd; i++)
        q[i] = cosf((float)i) * 2;
    const int32_t *blocks = realm__kv_seq(kv, seq)->blocks;
    const int32_t pos0 = n - batch;

    double dec = INFINITY, cold = INFINITY, tok = INFINITY, til = INFINITY;
    /* written, so that its pages are its own: calloc's untouched pages all
     * map the one zero page, and reading them evicted nothing */
    uint64_t *ebuf = malloc(EVICT_BYTES);
    if (ebuf != NULL)
        for (size_t i = 0; i < EVICT_BYTES / sizeof *ebuf; i++)
            ebuf[i] = i;
    for (int r = 0; r < reps; r++) {
        double t0 = realm__now();
        realm__attention(o, kv, 0, blocks, n, 0, q, scratch, out);
        keep_best(&dec, t0);
        for (int c = 0; c < 5 && ebuf; c++) { /* from memory, as in a forward pass */
            evict(ebuf);
            t0 = realm__now();
            realm__attention(o, kv, 0, blocks, n, 0, q, scratch, out);
            keep_best(&cold, t0);
        }
        t0 = realm__now();
        for (int t = 0; t < batch; t++)
            realm__attention(o, kv, 0, blocks, pos0 + t + 1, 0, q + t * qd, scratch, out + t * qd);
        keep_best(&tok, t0);
        t0 = realm__now();
        for (int t = 0; t < batch; t += REALM__ATTN_QTILE) {
            const int nt = batch - t < REALM__ATTN_QTILE ? batch - t : REALM__ATTN_QTILE;
            realm__attn_prefill(o, kv, 0, blocks, pos0 + t, nt, 0, q + t * qd, qd, scratch,
                                out2 + t * qd, qd);
        }
        keep_best(&til, t0);
    }
    const bool same = memcmp(out, out2, sizeof *out * (size_t)(batch * qd)) == 0;
    printf("| %s | %.1f | %.1f | %.1f | %.1f | %.2f | %s |\n", realm_type_name(type), dec * 1e9 / n,
           cold * 1e9 / n, tok * 1e3, til * 1e3, tok / til, same ? "yes" : "NO");
    free(ebuf);
    free(q);
    free(out);
    free(out2);
    free(scratch);
    realm_kv_cache_free(kv);
    return same ? 0 : 1;
}

int main(int argc, char **argv)
{
    const int n = argc > 1 ? atoi(argv[1]) : 2048, hd = argc > 2 ? atoi(argv[2]) : 64;
    const int nq = argc > 3 ? atoi(argv[3]) : 8, batch = argc > 4 ? atoi(argv[4]) : 512;
    const int reps = argc > 5 ? atoi(argv[5]) : 3;
    if (n < 1 || hd < 32 || hd % 32 != 0 || nq < 1 || nq > 64 || batch < 1 || batch > n ||
        reps < 1) {
        fprintf(stderr, "usage: bench_attn [KEYS >= 1] [HEAD_DIM, a multiple of 32] "
                        "[GROUP 1..64] [BATCH 1..KEYS] [REPS >= 1]\n");
        return 2;
    }
    const realm_ops *o = realm_ops_best();
    printf("%s, %d keys, head size %d, %d query heads per KV head, prefill chunk of %d tokens "
           "at %d..%d, best of %d\n\n"
           "| cache | decode ns/key | decode from memory ns/key | prefill by token ms | "
           "prefill tiled ms | speed-up | same bits |\n"
           "| --- | ---: | ---: | ---: | ---: | ---: | --- |\n",
           realm_isa_name(o->isa), n, hd, nq, batch, n - batch, n - 1, reps);
    int rc = run(o, REALM_TYPE_F16, n, hd, nq, batch, reps);
    rc |= run(o, REALM_TYPE_Q8_0, n, hd, nq, batch, reps);
    return rc;
}
