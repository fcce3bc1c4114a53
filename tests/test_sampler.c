/*
 * The sampler (realm/sampler.h) against reference computations on fixed
 * logits: for each filter, the distribution the test computes by hand is
 * compared with the frequencies of 40,000 seeded draws (deterministic: the
 * same seed gives the same draws), and tokens the reference excludes must
 * never be drawn. Also: temperature 0 is argmax, penalties and bias change
 * the argmax as computed, log-probabilities match log-softmax, and the same
 * seed reproduces the same sequence. Non-finite logits, bias and
 * temperatures; top-p after typical-p; a 4096-token vocabulary where the
 * sampler sorts only the head must draw exactly what a full sort keeps.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "realm/error.h"
#include "realm/sampler.h"
#include "test_util.h"

#define NV    8
#define DRAWS 40000

static const float L[NV] = {1.0f, 2.5f, 0.3f, 2.4f, -1.0f, 0.8f, 1.7f, -0.5f};

/* softmax(l / t) over the tokens with keep[i], in p. */
static void softmax_ref(const float *l, const bool *keep, float t, double *p)
{
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < NV; i++)
        if (keep[i] && l[i] > mx)
            mx = l[i];
    for (int i = 0; i < NV; i++) {
        p[i] = keep[i] ? exp((l[i] - mx) / t) : 0;
        sum += p[i];
    }
    for (int i = 0; i < NV; i++)
        p[i] /= sum;
}

/* Ids 0..n-1 sorted by descending value of v (ties: lower id first). */
static void order_desc_n(const double *v, int *idx, int n)
{
    for (int i = 0; i < n; i++)
        idx[i] = i;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[idx[j]] > v[idx[j - 1]]; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
}

static void order_desc(const double *v, int *idx)
{
    order_desc_n(v, idx, NV);
}

/* Draw DRAWS tokens and compare frequencies with ref (tolerance 0.012);
 * a token with ref 0 must never come. */
static void check_dist(const char *what, const realm_sampler_params *p, const float *l,
                       const double *ref)
{
    realm_sampler *s;
    CHECK_RC(realm_sampler_new(p, NV, &s), REALM_OK);
    if (!s)
        return;
    long count[NV] = {0}, bad = 0;
    for (int i = 0; i < DRAWS; i++) {
        int32_t t = realm_sampler_sample(s, l);
        if (t >= 0 && t < NV)
            count[t]++;
        else
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    /* the filtered distribution itself (what speculative acceptance uses) */
    float pr[NV];
    const int32_t best = realm_sampler_probs(s, l, pr);
    int best_ref = 0;
    for (int i = 1; i < NV; i++)
        if (ref[i] > ref[best_ref])
            best_ref = i;
    CHECK_MSG(best == best_ref, "%s: probs' best %d vs %d", what, best, best_ref);
    for (int i = 0; i < NV; i++)
        CHECK_MSG(fabs(pr[i] - ref[i]) < 1e-5, "%s: p[%d] = %.6f vs %.6f", what, i, pr[i], ref[i]);
    for (int i = 0; i < NV; i++) {
        const double f = (double)count[i] / DRAWS;
        if (ref[i] == 0)
            CHECK_MSG(count[i] == 0, "%s: token %d drawn %ld times, excluded by the reference",
                      what, i, count[i]);
        else
            CHECK_MSG(fabs(f - ref[i]) < 0.012, "%s: token %d frequency %.4f vs %.4f", what, i, f,
                      ref[i]);
    }
    realm_sampler_free(s);
}

static void test_greedy(void)
{
    realm_sampler *s;
    CHECK_RC(realm_sampler_new(&(realm_sampler_params){.temperature = 0}, NV, &s), REALM_OK);
    CHECK_EQ_INT(realm_sampler_sample(s, L), 1);
    const float tie[NV] = {0, 3, 1, 3, 0, 0, 0, 0};
    CHECK_EQ_INT(realm_sampler_sample(s, tie), 1);
    realm_sampler_free(s);
    /* bias moves the argmax; -inf bans */
    const realm_logit_bias bias[2] = {{1, -INFINITY}, {6, 1.0f}};
    CHECK_RC(
        realm_sampler_new(&(realm_sampler_params){.logit_bias = bias, .n_logit_bias = 2}, NV, &s),
        REALM_OK);
    CHECK_EQ_INT(realm_sampler_sample(s, L), 6); /* 1.7 + 1 > 2.4 */
    realm_sampler_free(s);
    /* a very low temperature behaves as argmax */
    CHECK_RC(realm_sampler_new(&(realm_sampler_params){.temperature = 1e-3f, .seed = 3}, NV, &s),
             REALM_OK);
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(realm_sampler_sample(s, L), 1);
    realm_sampler_free(s);
}

static void test_temperature_and_topk(void)
{
    bool all[NV];
    double ref[NV];
    for (int i = 0; i < NV; i++)
        all[i] = true;
    softmax_ref(L, all, 1.0f, ref);
    check_dist("t=1", &(realm_sampler_params){.temperature = 1, .seed = 1}, L, ref);
    softmax_ref(L, all, 0.5f, ref);
    check_dist("t=0.5", &(realm_sampler_params){.temperature = 0.5f, .seed = 2}, L, ref);
    /* top-k 3: tokens 1, 3, 6 */
    bool keep[NV] = {0};
    keep[1] = keep[3] = keep[6] = true;
    softmax_ref(L, keep, 0.7f, ref);
    check_dist("top_k=3", &(realm_sampler_params){.temperature = 0.7f, .top_k = 3, .seed = 4}, L,
               ref);
}

/* Keep the shortest prefix of `order` whose mass under p reaches mass. */
static void keep_mass(const double *p, const int *order, double mass, bool *keep)
{
    double cum = 0;
    for (int i = 0; i < NV; i++)
        keep[i] = false;
    for (int i = 0; i < NV; i++) {
        keep[order[i]] = true;
        cum += p[order[i]];
        if (cum >= mass)
            break;
    }
}

static void test_top_p_min_p_typical(void)
{
    bool all[NV], keep[NV];
    double p[NV], ref[NV];
    int order[NV];
    for (int i = 0; i < NV; i++)
        all[i] = true;
    softmax_ref(L, all, 1.0f, p);
    order_desc(p, order);
    keep_mass(p, order, 0.8, keep);
    softmax_ref(L, keep, 1.0f, ref);
    check_dist("top_p=0.8", &(realm_sampler_params){.temperature = 1, .top_p = 0.8f, .seed = 5}, L,
               ref);

    for (int i = 0; i < NV; i++)
        keep[i] = p[i] >= p[order[0]] * 0.3;
    softmax_ref(L, keep, 1.0f, ref);
    check_dist("min_p=0.3", &(realm_sampler_params){.temperature = 1, .min_p = 0.3f, .seed = 6}, L,
               ref);

    /* typical: closeness of surprisal to the entropy */
    double h = 0, closeness[NV];
    for (int i = 0; i < NV; i++)
        h -= p[i] * log(p[i]);
    for (int i = 0; i < NV; i++)
        closeness[i] = -fabs(-log(p[i]) - h);
    order_desc(closeness, order);
    keep_mass(p, order, 0.5, keep);
    int n_keep = 0;
    for (int i = 0; i < NV; i++)
        n_keep += keep[i];
    CHECK(n_keep > 1 && n_keep < NV); /* the case is not trivial */
    softmax_ref(L, keep, 1.0f, ref);
    check_dist("typical_p=0.5",
               &(realm_sampler_params){.temperature = 1, .typical_p = 0.5f, .seed = 7}, L, ref);
}

/* Accept ids into a sampler made with p and compare the distribution with
 * the reference computed from adjusted logits adj. */
static void check_penalised(const char *what, realm_sampler_params p, const int32_t *hist,
                            int n_hist, const float *adj)
{
    bool all[NV];
    double ref[NV];
    for (int i = 0; i < NV; i++)
        all[i] = true;
    softmax_ref(adj, all, 1.0f, ref);
    realm_sampler *s;
    CHECK_RC(realm_sampler_new(&p, NV, &s), REALM_OK);
    if (!s)
        return;
    for (int i = 0; i < n_hist; i++)
        realm_sampler_accept(s, hist[i]);
    long count[NV] = {0};
    for (int i = 0; i < DRAWS; i++) {
        const int32_t t = realm_sampler_sample(s, L);
        count[t >= 0 && t < NV ? t : 0] += t >= 0 && t < NV;
    }
    for (int i = 0; i < NV; i++)
        CHECK_MSG(fabs((double)count[i] / DRAWS - ref[i]) < 0.012, "%s: token %d %.4f vs %.4f",
                  what, i, (double)count[i] / DRAWS, ref[i]);
    realm_sampler_free(s);
}

static void test_penalties_and_bias(void)
{
    const int32_t hist[] = {4, 1, 1, 3, 1};
    float adj[NV];
    /* repetition 1.5: positive logits divided, negative multiplied */
    memcpy(adj, L, sizeof adj);
    adj[1] /= 1.5f;
    adj[3] /= 1.5f;
    adj[4] *= 1.5f;
    check_penalised("repeat",
                    (realm_sampler_params){.temperature = 1, .repeat_penalty = 1.5f, .seed = 8},
                    hist, 5, adj);
    /* frequency 0.4 and presence 0.3 */
    memcpy(adj, L, sizeof adj);
    adj[1] -= 3 * 0.4f + 0.3f;
    adj[3] -= 1 * 0.4f + 0.3f;
    adj[4] -= 1 * 0.4f + 0.3f;
    check_penalised(
        "freq+presence",
        (realm_sampler_params){
            .temperature = 1, .frequency_penalty = 0.4f, .presence_penalty = 0.3f, .seed = 9},
        hist, 5, adj);
    /* a window of 2 sees only the last two ids (3, 1) */
    memcpy(adj, L, sizeof adj);
    adj[1] -= 1.0f;
    adj[3] -= 1.0f;
    check_penalised(
        "window",
        (realm_sampler_params){
            .temperature = 1, .presence_penalty = 1.0f, .penalty_last_n = 2, .seed = 10},
        hist, 5, adj);
    /* logit bias */
    const realm_logit_bias bias[2] = {{0, 1.5f}, {1, -INFINITY}};
    memcpy(adj, L, sizeof adj);
    adj[0] += 1.5f;
    adj[1] = -INFINITY;
    check_penalised(
        "bias",
        (realm_sampler_params){.temperature = 1, .logit_bias = bias, .n_logit_bias = 2, .seed = 11},
        NULL, 0, adj);
    /* greedy with a penalty: argmax of the adjusted logits */
    realm_sampler *s;
    CHECK_RC(realm_sampler_new(&(realm_sampler_params){.repeat_penalty = 2.0f}, NV, &s), REALM_OK);
    realm_sampler_accept(s, 1);
    CHECK_EQ_INT(realm_sampler_sample(s, L), 3);
    realm_sampler_accept(s, 3);
    CHECK_EQ_INT(realm_sampler_sample(s, L), 6);
    realm_sampler_free(s);
}

static void test_probs_and_seed(void)
{
    realm_sampler *s;
    CHECK_RC(realm_sampler_new(&(realm_sampler_params){.temperature = 0, .n_probs = 3}, NV, &s),
             REALM_OK);
    CHECK_EQ_INT(realm_sampler_sample(s, L), 1);
    realm_token_prob tp[REALM_SAMPLER_MAX_PROBS];
    float chosen;
    CHECK_EQ_INT(realm_sampler_last_probs(s, &chosen, tp), 3);
    double lse = 0;
    for (int i = 0; i < NV; i++)
        lse += exp(L[i]);
    lse = log(lse);
    CHECK_EQ_INT(tp[0].token, 1);
    CHECK_EQ_INT(tp[1].token, 3);
    CHECK_EQ_INT(tp[2].token, 6);
    CHECK_NEAR(tp[0].logprob, L[1] - lse, 1e-5);
    CHECK_NEAR(tp[2].logprob, L[6] - lse, 1e-5);
    CHECK_NEAR(chosen, L[1] - lse, 1e-5);
    realm_sampler_free(s);

    /* same seed, same sequence; another seed, another one */
    realm_sampler *a, *b, *c;
    realm_sampler_params p = {.temperature = 1, .top_k = 5, .top_p = 0.9f, .seed = 1234};
    realm_sampler_new(&p, NV, &a);
    realm_sampler_new(&p, NV, &b);
    p.seed = 99;
    realm_sampler_new(&p, NV, &c);
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < 200; i++) {
        int32_t x = realm_sampler_sample(a, L), y = realm_sampler_sample(b, L),
                z = realm_sampler_sample(c, L);
        same_ab += x == y;
        same_ac += x == z;
    }
    CHECK_EQ_INT(same_ab, 200);
    CHECK(same_ac < 200);
    realm_sampler_free(a);
    realm_sampler_free(b);
    realm_sampler_free(c);

    /* a draw depends on (seed, position) only, not on the draws before it:
     * positions visited backwards and skipping give the same tokens */
    p.seed = 1234;
    realm_sampler_new(&p, NV, &a);
    realm_sampler_new(&p, NV, &b);
    int32_t fwd[64];
    for (int i = 0; i < 64; i++)
        fwd[i] = realm_sampler_sample(a, L);
    int same_pos = 0;
    for (int i = 63; i >= 0; i -= 1 + (i % 3 == 0))
        same_pos += realm_sampler_sample_at(b, L, (uint64_t)i) == fwd[i];
    int visited = 0;
    for (int i = 63; i >= 0; i -= 1 + (i % 3 == 0))
        visited++;
    CHECK_EQ_INT(same_pos, visited);
    CHECK(realm_sampler_uniform(a, 5, 0) != realm_sampler_uniform(a, 5, 1));
    CHECK(realm_sampler_uniform(a, 5, 0) != realm_sampler_uniform(a, 6, 0));
    CHECK(realm_sampler_uniform(a, 5, 1) == realm_sampler_uniform(b, 5, 1));
    realm_sampler_free(a);
    realm_sampler_free(b);

    /* bad parameters */
    CHECK_RC(realm_sampler_new(&(realm_sampler_params){.temperature = -1}, NV, &s),
             REALM_ERR_INVAL);
    CHECK_RC(realm_sampler_new(&(realm_sampler_params){.n_probs = 21}, NV, &s), REALM_ERR_INVAL);
    const realm_logit_bias bad = {NV, 1};
    CHECK_RC(
        realm_sampler_new(&(realm_sampler_params){.logit_bias = &bad, .n_logit_bias = 1}, NV, &s),
        REALM_ERR_INVAL);
}

/* Non-finite values: a +inf bias forces its token, NaN logits are never
 * drawn (nor chosen greedily), a denormal temperature is argmax, a ban of
 * every token gives the lowest id. */
static void test_non_finite(void)
{
    realm_sampler *s;
    const realm_logit_bias force = {4, INFINITY};
    CHECK_RC(
        realm_sampler_new(
            &(realm_sampler_params){
                .temperature = 1, .min_p = 0, .seed = 1, .logit_bias = &force, .n_logit_bias = 1},
            NV, &s),
        REALM_OK);
    for (int i = 0; i < 200; i++)
        CHECK_EQ_INT(realm_sampler_sample(s, L), 4);
    realm_sampler_free(s);
    const float inf_l[NV] = {1, 2, 3, 4, 5, 6, 7, INFINITY};
    CHECK_RC(
        realm_sampler_new(&(realm_sampler_params){.temperature = 1, .top_k = 3, .seed = 2}, NV, &s),
        REALM_OK);
    for (int i = 0; i < 200; i++)
        CHECK_EQ_INT(realm_sampler_sample(s, inf_l), 7);
    realm_sampler_free(s);
    float nan_l[NV];
    for (int i = 0; i < NV; i++)
        nan_l[i] = L[i];
    nan_l[0] = nan_l[1] = NAN;
    long drawn_nan = 0;
    CHECK_RC(realm_sampler_new(&(realm_sampler_params){.temperature = 1, .seed = 3}, NV, &s),
             REALM_OK);
    for (int i = 0; i < 2000; i++) {
        const int32_t t = realm_sampler_sample(s, nan_l);
        drawn_nan += t == 0 || t == 1;
    }
    CHECK_EQ_INT(drawn_nan, 0);
    realm_sampler_free(s);
    CHECK_RC(realm_sampler_new(&(realm_sampler_params){.temperature = 0}, NV, &s), REALM_OK);
    CHECK_EQ_INT(realm_sampler_sample(s, nan_l), 3); /* 2.4 once 2.5 is NaN */
    realm_sampler_free(s);
    CHECK_RC(realm_sampler_new(&(realm_sampler_params){.temperature = 1e-45f, .seed = 4}, NV, &s),
             REALM_OK);
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(realm_sampler_sample(s, L), 1);
    realm_sampler_free(s);
    realm_logit_bias ban[NV];
    for (int i = 0; i < NV; i++)
        ban[i] = (realm_logit_bias){i, -INFINITY};
    CHECK_RC(
        realm_sampler_new(
            &(realm_sampler_params){
                .temperature = 1, .top_p = 0.9f, .seed = 5, .logit_bias = ban, .n_logit_bias = NV},
            NV, &s),
        REALM_OK);
    CHECK_EQ_INT(realm_sampler_sample(s, L), 0);
    realm_sampler_free(s);
}

/* top-p after typical-p cuts the survivors' renormalised distribution. */
static void test_typical_then_top_p(void)
{
    static const float l[NV] = {5, 4.9f, 4.8f, 0, 0, 0, -30, -30};
    bool all[NV], keep[NV];
    double p[NV], ref[NV], closeness[NV], h = 0;
    int order[NV];
    for (int i = 0; i < NV; i++)
        all[i] = true;
    softmax_ref(l, all, 1.0f, p);
    for (int i = 0; i < NV; i++)
        if (p[i] > 0)
            h -= p[i] * log(p[i]);
    for (int i = 0; i < NV; i++)
        closeness[i] = p[i] > 0 ? -fabs(-log(p[i]) - h) : -INFINITY;
    order_desc(closeness, order);
    keep_mass(p, order, 0.5, keep);
    /* top-p 0.5 over the survivors renormalised, most likely first */
    double mass = 0, q[NV];
    for (int i = 0; i < NV; i++)
        mass += keep[i] ? p[i] : 0;
    for (int i = 0; i < NV; i++)
        q[i] = keep[i] ? p[i] / mass : 0;
    order_desc(q, order);
    keep_mass(q, order, 0.5, keep);
    int n_keep = 0;
    for (int i = 0; i < NV; i++)
        n_keep += keep[i];
    CHECK_EQ_INT(n_keep, 1);
    softmax_ref(l, keep, 1.0f, ref);
    check_dist(
        "typical 0.5 then top_p 0.5",
        &(realm_sampler_params){.temperature = 1, .typical_p = 0.5f, .top_p = 0.5f, .seed = 8}, l,
        ref);
}

/*
 * A vocabulary of 4096 random logits: the sampler sorts only the head of
 * the distribution; the tokens it draws must be exactly those a full sort
 * keeps (top-p, min-p, both), at the reference frequencies.
 */
static void test_large_vocab(void)
{
    enum { BIG = 4096, N_DRAW = 10000 };
    static float base[BIG], l[BIG];
    static double p[BIG], ref[BIG];
    static int order[BIG];
    static long count[BIG];
    static bool keep[BIG];
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < BIG; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        base[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 14.0 - 7.0);
    }
    /* spike: one token far above a flat rest (logits / 20), so the head
     * that top-p needs goes deep into the tail */
    const struct {
        float top_p, min_p, t;
        bool spike;
    } cases[] = {{0.9f, 0, 1, false},     {0, 0.05f, 0.8f, false}, {0.95f, 0.05f, 0.8f, false},
                 {0.5f, 0, 2, false},     {0, 0, 1, false},        {0.9f, 0, 1, true},
                 {0.97f, 0.001f, 1, true}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < BIG; i++)
            l[i] = cases[c].spike ? base[i] / 20 : base[i];
        if (cases[c].spike)
            l[17] = 10;
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < BIG; i++)
            mx = l[i] > mx ? l[i] : mx;
        for (int i = 0; i < BIG; i++)
            sum += p[i] = exp((l[i] - mx) / cases[c].t);
        for (int i = 0; i < BIG; i++) {
            p[i] /= sum;
            keep[i] = true;
        }
        order_desc_n(p, order, BIG);
        if (cases[c].top_p > 0) {
            double cum = 0;
            int i = 0;
            for (; i < BIG && cum < cases[c].top_p; i++)
                cum += p[order[i]];
            for (; i < BIG; i++)
                keep[order[i]] = false;
        }
        for (int i = 0; i < BIG; i++)
            if (cases[c].min_p > 0 && p[i] < p[order[0]] * cases[c].min_p)
                keep[i] = false;
        double kept = 0;
        for (int i = 0; i < BIG; i++)
            kept += keep[i] ? p[i] : 0;
        for (int i = 0; i < BIG; i++) {
            ref[i] = keep[i] ? p[i] / kept : 0;
            count[i] = 0;
        }
        realm_sampler *s;
        CHECK_RC(realm_sampler_new(&(realm_sampler_params){.temperature = cases[c].t,
                                                           .top_p = cases[c].top_p,
                                                           .min_p = cases[c].min_p,
                                                           .seed = 11 + c},
                                   BIG, &s),
                 REALM_OK);
        if (!s)
            return;
        for (int i = 0; i < N_DRAW; i++)
            count[realm_sampler_sample(s, l)]++;
        realm_sampler_free(s);
        long outside = 0;
        double worst = 0;
        for (int i = 0; i < BIG; i++) {
            if (ref[i] == 0)
                outside += count[i];
            const double d = fabs((double)count[i] / N_DRAW - ref[i]);
            worst = d > worst ? d : worst;
        }
        CHECK_MSG(outside == 0, "case %zu: %ld draws outside the reference set", c, outside);
        CHECK_MSG(worst < 0.012, "case %zu: a frequency off by %.4f", c, worst);
        /* the shape: mass by rank (1, 2-10, 11-100, 101-1000, the rest) */
        static const int edge[] = {0, 1, 10, 100, 1000, BIG};
        for (int b = 0; b < 5; b++) {
            double want = 0, got = 0;
            for (int r = edge[b]; r < edge[b + 1]; r++) {
                want += ref[order[r]];
                got += (double)count[order[r]] / N_DRAW;
            }
            CHECK_MSG(fabs(want - got) < 0.02, "case %zu: ranks %d..%d drawn %.4f, expected %.4f",
                      c, edge[b] + 1, edge[b + 1], got, want);
        }
    }
}

int main(void)
{
    test_begin("sampler", 120);
    test_greedy();
    test_temperature_and_topk();
    test_top_p_min_p_typical();
    test_penalties_and_bias();
    test_probs_and_seed();
    test_non_finite();
    test_typical_then_top_p();
    test_large_vocab();
    return test_end();
}
