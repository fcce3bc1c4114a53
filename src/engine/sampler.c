/*
 * Token sampling (realm/sampler.h). Candidates are (id, logit) pairs; bias
 * and penalties adjust logits by id, then the filters shrink the candidate
 * list in place. Random numbers are not a running stream: the draw for a
 * position is a hash (splitmix64 finalisers) of the seed, the position and a
 * stream number, so a token's draw does not depend on how many draws came
 * before it (speculative decoding verifies several positions at once, and
 * rejected drafts must not shift later draws).
 */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "realm/sampler.h"

typedef struct cand {
    int32_t id;
    float logit;
    float p;
    float key; /* sort key of typical-p */
} cand;

struct realm_sampler {
    realm_sampler_params p; /* logit_bias points at `bias` below */
    int32_t n_vocab;
    cand *cands;                 /* (n_vocab) scratch, rebuilt per sample */
    uint64_t n_sampled;          /* realm_sampler_sample's position counter */
    realm_logit_bias *bias;      /* (n_logit_bias) own copy */
    int32_t *window;             /* (penalty_last_n) ring of accepted ids */
    int32_t n_window, window_at; /* entries filled, next slot */
    int32_t *counts;             /* (n_vocab) occurrences inside the window */
    int32_t n_probs;             /* pairs recorded by the last sample */
    float chosen_logprob;
    float lse; /* log-sum-exp of the last sample's adjusted logits (with n_probs) */
    realm_token_prob probs[REALM_SAMPLER_MAX_PROBS];
};

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A uniform double in [0, 1) from (seed, pos, stream): three rounds of the
 * splitmix64 finaliser over the inputs folded in one at a time. */
double realm_sampler_uniform(const realm_sampler *s, uint64_t pos, uint32_t stream)
{
    uint64_t z = mix64(s->p.seed + 0x9e3779b97f4a7c15ull);
    z = mix64(z ^ (pos + 0x632be59bd9b4e019ull));
    z = mix64(z ^ ((uint64_t)stream * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull));
    return (double)(z >> 11) / 9007199254740992.0;
}

/* Check the parameters, copy them (and the bias list), seed the generator. */
int realm_sampler_new(const realm_sampler_params *p, int32_t n_vocab, realm_sampler **out)
{
    *out = NULL;
    if (n_vocab < 1)
        return realm__error(REALM_ERR_INVAL, "sampler over %d tokens", n_vocab);
    if (!(p->temperature >= 0) || isinf(p->temperature))
        return realm__error(REALM_ERR_INVAL, "temperature %g must be >= 0", p->temperature);
    if (!(p->repeat_penalty >= 0) || isinf(p->repeat_penalty))
        return realm__error(REALM_ERR_INVAL, "repeat penalty %g must be > 0", p->repeat_penalty);
    if (isnan(p->top_p) || isnan(p->min_p) || isnan(p->typical_p) ||
        !isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
        return realm__error(REALM_ERR_INVAL, "a sampling parameter is not a number");
    if (p->n_probs < 0 || p->n_probs > REALM_SAMPLER_MAX_PROBS)
        return realm__error(REALM_ERR_INVAL, "n_probs %d is outside 0..%d", p->n_probs,
                            REALM_SAMPLER_MAX_PROBS);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && p->logit_bias == NULL))
        return realm__error(REALM_ERR_INVAL, "logit bias of %d entries", p->n_logit_bias);
    for (int32_t i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias[i].token < 0 || p->logit_bias[i].token >= n_vocab ||
            isnan(p->logit_bias[i].bias))
            return realm__error(REALM_ERR_INVAL, "logit bias for token %d (vocabulary of %d)",
                                p->logit_bias[i].token, n_vocab);
    const int32_t win =
        p->penalty_last_n > 0 ? p->penalty_last_n : REALM_SAMPLER_DEFAULT_PENALTY_WINDOW;
    if (win > (1 << 24))
        return realm__error(REALM_ERR_INVAL, "penalty window of %d tokens", win);
    realm_sampler *s = calloc(1, sizeof *s);
    if (s == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory for a sampler");
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    s->window = malloc((size_t)win * sizeof *s->window);
    s->bias = malloc((size_t)(p->n_logit_bias + 1) * sizeof *s->bias);
    if (!s->cands || !s->counts || !s->window || !s->bias) {
        realm_sampler_free(s);
        return realm__error(REALM_ERR_NOMEM, "out of memory for a sampler");
    }
    s->p = *p;
    s->p.penalty_last_n = win;
    if (p->n_logit_bias > 0)
        memcpy(s->bias, p->logit_bias, (size_t)p->n_logit_bias * sizeof *s->bias);
    s->p.logit_bias = s->bias;
    s->n_vocab = n_vocab;
    *out = s;
    return REALM_OK;
}

void realm_sampler_free(realm_sampler *s)
{
    if (s == NULL)
        return;
    free(s->cands);
    free(s->counts);
    free(s->window);
    free(s->bias);
    free(s);
}

/* Push a token into the penalty ring, dropping the oldest one when full. */
void realm_sampler_accept(realm_sampler *s, int32_t token)
{
    if (token < 0 || token >= s->n_vocab)
        return;
    const int32_t cap = s->p.penalty_last_n;
    if (s->n_window == cap)
        s->counts[s->window[s->window_at]]--;
    else
        s->n_window++;
    s->window[s->window_at] = token;
    s->counts[token]++;
    s->window_at = (s->window_at + 1) % cap;
}

static int cmp_cand_desc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit < y->logit ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

/* a ranks after b: lower logit, or equal logit and higher id. */
static bool worse(const cand *a, const cand *b)
{
    return cmp_cand_desc(a, b) > 0;
}

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

/* Move the k best candidates to the front, sorted best first (O(n log k)
 * selection); the rest of c is left in no particular order. */
static int32_t keep_top(cand *c, int32_t n, int32_t k)
{
    if (k <= 0 || k > n)
        k = n;
    if (k < n) {
        for (int32_t i = k / 2 - 1; i >= 0; i--)
            sift_down(c, k, i);
        for (int32_t j = k; j < n; j++)
            if (worse(&c[0], &c[j])) {
                cand t = c[0];
                c[0] = c[j];
                c[j] = t;
                sift_down(c, k, 0);
            }
    }
    qsort(c, (size_t)k, sizeof *c, cmp_cand_desc);
    return k;
}

/* Steps 1-2 of the pipeline: cands[i] = (i, logits[i] + bias - penalties). */
static void apply_penalties(realm_sampler *s);

/* A NaN (a broken model, inf - inf) is never chosen; +inf (a bias forcing a
 * token) becomes the largest finite logit, so differences stay numbers. */
static inline float sane(float l)
{
    return isnan(l) ? -INFINITY : l == INFINITY ? FLT_MAX : l;
}

static void adjusted_logits(realm_sampler *s, const float *logits)
{
    cand *c = s->cands;
    for (int32_t i = 0; i < s->n_vocab; i++)
        c[i] = (cand){i, sane(logits[i]), 0, 0};
    for (int32_t i = 0; i < s->p.n_logit_bias; i++) {
        cand *b = &c[s->bias[i].token];
        b->logit = sane(b->logit + s->bias[i].bias);
    }
    const bool rep = s->p.repeat_penalty > 0 && s->p.repeat_penalty != 1;
    if (rep || s->p.presence_penalty != 0 || s->p.frequency_penalty != 0)
        apply_penalties(s);
}

/* Step 2 of the pipeline over s->cands. */
static void apply_penalties(realm_sampler *s)
{
    cand *c = s->cands;
    const bool rep = s->p.repeat_penalty > 0 && s->p.repeat_penalty != 1;
    /* each distinct id of the window once: walk the ring, act on the first
     * sighting (counts > 0), mark it done by negating its count */
    for (int32_t j = 0; j < s->n_window; j++) {
        const int32_t id = s->window[j];
        const int32_t n = s->counts[id];
        if (n <= 0)
            continue;
        float l = c[id].logit;
        if (rep)
            l = l > 0 ? l / s->p.repeat_penalty : l * s->p.repeat_penalty;
        c[id].logit = sane(l - (float)n * s->p.frequency_penalty - s->p.presence_penalty);
        s->counts[id] = -n;
    }
    for (int32_t j = 0; j < s->n_window; j++)
        if (s->counts[s->window[j]] < 0)
            s->counts[s->window[j]] = -s->counts[s->window[j]];
}

/* Record the n_probs best log-probabilities of the adjusted logits (before
 * any filter) and the chosen token's. Runs before the filters reorder c. */
static void record_probs(realm_sampler *s)
{
    const cand *c = s->cands;
    const int32_t nv = s->n_vocab;
    float mx = -INFINITY;
    for (int32_t i = 0; i < nv; i++)
        if (c[i].logit > mx)
            mx = c[i].logit;
    double sum = 0;
    for (int32_t i = 0; i < nv; i++)
        sum += exp((double)c[i].logit - mx);
    const double lse = mx + log(sum);
    /* insertion into a short sorted list: n_probs <= 20 */
    int32_t n = 0;
    for (int32_t i = 0; i < nv; i++) {
        const cand x = c[i];
        if (n == s->p.n_probs &&
            !worse(&(cand){s->probs[n - 1].token, s->probs[n - 1].logprob, 0, 0}, &x))
            continue;
        int32_t at = n < s->p.n_probs ? n++ : n - 1;
        while (at > 0 &&
               worse(&(cand){s->probs[at - 1].token, s->probs[at - 1].logprob, 0, 0}, &x)) {
            s->probs[at] = s->probs[at - 1];
            at--;
        }
        s->probs[at] = (realm_token_prob){x.id, x.logit};
    }
    for (int32_t i = 0; i < n; i++)
        s->probs[i].logprob = (float)(s->probs[i].logprob - lse);
    s->n_probs = n;
    s->lse = (float)lse;
    s->chosen_logprob = (float)lse; /* the chosen token's logit is subtracted later */
}

static int cmp_key_desc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Keep the candidates whose surprisal -log p is closest to the entropy H of
 * c[0..n) (probabilities already normalised): the smallest such set with
 * mass >= tau. c is left sorted by logit again. */
static int32_t typical_filter(cand *c, int32_t n, float tau)
{
    double h = 0;
    for (int32_t i = 0; i < n; i++)
        if (c[i].p > 0)
            h -= c[i].p * log(c[i].p);
    for (int32_t i = 0; i < n; i++)
        c[i].key = c[i].p > 0 ? (float)-fabs(-log(c[i].p) - h) : -INFINITY;
    qsort(c, (size_t)n, sizeof *c, cmp_key_desc);
    double cum = 0;
    int32_t keep = n;
    for (int32_t i = 0; i < n; i++) {
        cum += c[i].p;
        if (cum >= tau) {
            keep = i + 1;
            break;
        }
    }
    qsort(c, (size_t)keep, sizeof *c, cmp_cand_desc);
    return keep;
}

/*
 * Bring the candidates that top-p and min-p can keep to the front of
 * c[0..n), sorted best first, and return how many: those with p at or above
 * a threshold, which is min-p's floor when min-p is on (nothing below it
 * survives), else lowered until the head holds top_p of the mass. Sorting
 * only the head instead of the whole vocabulary is what makes sampling
 * with the default options cost a pass over the logits, not a sort.
 */
static int32_t sort_head(cand *c, int32_t n, float top_p, float min_p, double mass)
{
    float p_max = 0;
    for (int32_t i = 0; i < n; i++)
        p_max = c[i].p > p_max ? c[i].p : p_max;
    /* without min-p: start high and lower the bar tenfold until the head
     * has the mass, so the sort is over as few candidates as it can be */
    float theta = min_p > 0 ? p_max * min_p : p_max * 0.1f;
    int32_t k = n;
    for (;;) {
        k = 0;
        double head = 0;
        for (int32_t i = 0; i < n; i++)
            if (c[i].p >= theta) {
                const cand t = c[k];
                c[k] = c[i];
                c[i] = t;
                head += c[k++].p;
            }
        if (min_p > 0 || !(top_p > 0 && top_p < 1) || head >= (double)top_p * mass ||
            theta < 1e-30f || k == n)
            break;
        theta *= 0.1f;
    }
    qsort(c, (size_t)k, sizeof *c, cmp_cand_desc);
    return k;
}

/*
 * The pipeline of realm/sampler.h over s->cands, up to the draw: bias and
 * penalties, greedy or top-k, softmax at the temperature, typical-p, top-p,
 * min-p. Returns the survivors' count n, c[0..n) holding them with
 * probabilities p summing to *total, or 0 when the choice is certain (greedy,
 * or every token banned): then *only is the token. Filters keep candidates
 * sorted best first, so each cuts a prefix; with no filter at all the
 * survivors are in id order.
 */
static int32_t filter(realm_sampler *s, const float *logits, double *total, int32_t *only)
{
    const int32_t nv = s->n_vocab;
    cand *c = s->cands;
    adjusted_logits(s, logits);
    if (s->p.n_probs > 0)
        record_probs(s);
    const double lse = s->chosen_logprob;
    int32_t n = nv, best = 0;
    bool sorted = false;
    if (s->p.temperature > 0 && s->p.top_k > 0 && s->p.top_k < nv) {
        n = keep_top(c, nv, s->p.top_k); /* best first */
        sorted = true;
    } else {
        for (int32_t i = 1; i < nv; i++)
            if (c[i].logit > c[best].logit)
                best = i;
    }
    const cand *b = &c[best]; /* c[0] when sorted */
    if (s->p.temperature == 0 || b->logit == -INFINITY) {
        /* greedy, or every token banned (then the lowest id) */
        if (s->p.n_probs > 0)
            s->chosen_logprob = (float)(b->logit - lse);
        *only = b->id;
        return 0;
    }
    const float top = b->logit;
    /* softmax at the temperature over the survivors; dividing (not
     * multiplying by 1/t) keeps a tiny temperature from making 0 * inf */
    const float t = s->p.temperature;
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        c[i].p = expf((c[i].logit - top) / t);
        sum += c[i].p;
    }
    for (int32_t i = 0; i < n; i++)
        c[i].p = (float)(c[i].p / sum);
    double mass = 1;
    if (s->p.typical_p > 0 && s->p.typical_p < 1) {
        n = typical_filter(c, n, s->p.typical_p);
        sorted = true;
        mass = 0;
        for (int32_t i = 0; i < n; i++)
            mass += c[i].p;
    }
    const bool top_p_on = s->p.top_p > 0 && s->p.top_p < 1;
    if ((top_p_on || s->p.min_p > 0) && !sorted) {
        n = sort_head(c, n, s->p.top_p, s->p.min_p, mass);
        sorted = true;
    }
    if (top_p_on) {
        /* over the survivors' renormalised probabilities */
        double cum = 0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            cum += c[i].p;
            if (cum >= s->p.top_p * mass) {
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
    double tot = 0;
    for (int32_t i = 0; i < n; i++)
        tot += c[i].p;
    *total = tot;
    return n;
}

/* The survivor that u in [0, 1) picks by inverse CDF over c[0..n), in
 * their order; for u at the very top, the last with p > 0. */
static const cand *draw(const cand *c, int32_t n, double total, double u)
{
    const double r = u * total;
    double acc = 0;
    for (int32_t i = 0; i < n; i++) {
        acc += c[i].p;
        if (r < acc)
            return &c[i];
    }
    int32_t last = n - 1;
    while (last > 0 && c[last].p == 0)
        last--;
    return &c[last];
}

int32_t realm_sampler_sample_at(realm_sampler *s, const float *logits, uint64_t pos)
{
    double total;
    int32_t only;
    const int32_t n = filter(s, logits, &total, &only);
    if (n == 0)
        return only;
    const cand *x = draw(s->cands, n, total, realm_sampler_uniform(s, pos, 0));
    if (s->p.n_probs > 0) /* record_probs left the log-sum-exp there */
        s->chosen_logprob = (float)((double)x->logit - (double)s->chosen_logprob);
    return x->id;
}

int32_t realm_sampler_sample(realm_sampler *s, const float *logits)
{
    return realm_sampler_sample_at(s, logits, s->n_sampled++);
}

int32_t realm_sampler_probs(realm_sampler *s, const float *logits, float *p)
{
    double total;
    int32_t only;
    const int32_t n = filter(s, logits, &total, &only);
    memset(p, 0, (size_t)s->n_vocab * sizeof *p);
    if (n == 0) {
        p[only] = 1;
        return only;
    }
    const cand *c = s->cands;
    int32_t best = c[0].id;
    float best_p = -1;
    for (int32_t i = 0; i < n; i++) {
        p[c[i].id] = (float)(c[i].p / total);
        if (c[i].p > best_p || (c[i].p == best_p && c[i].id < best)) {
            best_p = c[i].p;
            best = c[i].id;
        }
    }
    return best;
}

void realm_sampler_choose(realm_sampler *s, int32_t token)
{
    if (s->p.n_probs <= 0 || token < 0 || token >= s->n_vocab)
        return;
    /* the filters reorder the candidates but keep every one of them */
    for (int32_t i = 0; i < s->n_vocab; i++)
        if (s->cands[i].id == token) {
            s->chosen_logprob = (float)((double)s->cands[i].logit - (double)s->lse);
            return;
        }
}

int32_t realm_sampler_last_probs(const realm_sampler *s, float *chosen, realm_token_prob *out)
{
    if (s->p.n_probs <= 0)
        return 0;
    if (chosen)
        *chosen = s->chosen_logprob;
    for (int32_t i = 0; i < s->n_probs; i++)
        out[i] = s->probs[i];
    return s->n_probs;
}
