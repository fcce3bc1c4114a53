/*
 * Token sampling (realm/sampler.h). Candidates are (id, logit) pairs; the
 * filters shrink the candidate list in place. Random numbers come from a
 * splitmix64/xoshiro256** generator seeded per sampler, not from libc.
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/error_internal.h"
#include "realm/sampler.h"

typedef struct cand {
    int32_t id;
    float logit;
    float p;
} cand;

struct realm_sampler {
    realm_sampler_params p;
    int32_t n_vocab;
    cand *cands;
    uint64_t rng[4];
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** */
static uint64_t next_u64(uint64_t s[4])
{
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

int realm_sampler_new(const realm_sampler_params *p, int32_t n_vocab, realm_sampler **out)
{
    *out = NULL;
    if (n_vocab < 1)
        return realm__error(REALM_ERR_INVAL, "sampler over %d tokens", n_vocab);
    if (!(p->temperature >= 0) || isinf(p->temperature))
        return realm__error(REALM_ERR_INVAL, "temperature %g must be >= 0", p->temperature);
    realm_sampler *s = calloc(1, sizeof *s);
    if (s == NULL || (s->cands = malloc((size_t)n_vocab * sizeof *s->cands)) == NULL) {
        free(s);
        return realm__error(REALM_ERR_NOMEM, "out of memory for a sampler");
    }
    s->p = *p;
    s->n_vocab = n_vocab;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    *out = s;
    return REALM_OK;
}

void realm_sampler_free(realm_sampler *s)
{
    if (s == NULL)
        return;
    free(s->cands);
    free(s);
}

static int cmp_cand_desc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit < y->logit ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

/* a ranks after b: lower logit, or equal logit and higher id. */
static bool worse(const cand *a, const cand *b) { return cmp_cand_desc(a, b) > 0; }

/* Restore the heap (worst candidate at the root) below node i. */
static void sift_down(cand *h, int32_t n, int32_t i)
{
    for (;;) {
        int32_t w = i, l = 2 * i + 1, r = l + 1;
        if (l < n && worse(&h[l], &h[w]))
            w = l;
        if (r < n && worse(&h[r], &h[w]))
            w = r;
        if (w == i)
            return;
        cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Keep the k best candidates, sorted best first (O(n log k) selection). */
static int32_t keep_top(cand *c, int32_t n, int32_t k)
{
    if (k <= 0 || k > n)
        k = n;
    if (k < n) {
        for (int32_t i = k / 2 - 1; i >= 0; i--)
            sift_down(c, k, i);
        for (int32_t j = k; j < n; j++)
            if (worse(&c[0], &c[j])) {
                c[0] = c[j];
                sift_down(c, k, 0);
            }
    }
    qsort(c, (size_t)k, sizeof *c, cmp_cand_desc);
    return k;
}

int32_t realm_sampler_sample(realm_sampler *s, const float *logits)
{
    const int32_t nv = s->n_vocab;
    if (s->p.temperature == 0) {
        int32_t best = 0;
        for (int32_t i = 1; i < nv; i++)
            if (logits[i] > logits[best])
                best = i;
        return best;
    }
    cand *c = s->cands;
    for (int32_t i = 0; i < nv; i++)
        c[i] = (cand){i, logits[i], 0};
    int32_t n = keep_top(c, nv, s->p.top_k);
    /* softmax at temperature over the sorted survivors */
    const float inv_t = 1.0f / s->p.temperature;
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        c[i].p = expf((c[i].logit - c[0].logit) * inv_t);
        sum += c[i].p;
    }
    for (int32_t i = 0; i < n; i++)
        c[i].p = (float)(c[i].p / sum);
    if (s->p.top_p > 0 && s->p.top_p < 1) {
        double cum = 0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            cum += c[i].p;
            if (cum >= s->p.top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (s->p.min_p > 0) {
        const float floor_p = c[0].p * s->p.min_p;
        int32_t keep = 1;
        while (keep < n && c[keep].p >= floor_p)
            keep++;
        n = keep;
    }
    double total = 0;
    for (int32_t i = 0; i < n; i++)
        total += c[i].p;
    const double r = (double)(next_u64(s->rng) >> 11) / 9007199254740992.0 * total;
    double acc = 0;
    for (int32_t i = 0; i < n; i++) {
        acc += c[i].p;
        if (r < acc)
            return c[i].id;
    }
    return c[n - 1].id;
}
