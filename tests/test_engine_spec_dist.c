/*
 * Speculative decoding with sampling (realm/engine.h), stories260K as the
 * target (spec_util.h):
 *  - prompt lookup gives the seeded tokens of the run without speculation,
 *    whatever K (the draw is per position);
 *  - a draft model's sampled drafts keep the target's distribution: a
 *    two-sample chi-square test over 3000 seeded runs per side on the tokens
 *    at output positions 1..3, with a close draft (Q4_0, mostly accepted)
 *    and a far one (tiny-f32, mostly rejected: the residual's draws);
 *    deterministic (fixed seeds); the bound is the 1 - 1e-4 quantile, which
 *    an acceptance test 1.5 times too lenient fails (tried by hand);
 *  - seeded draft runs reproduce.
 */
#include <math.h>

#include "spec_util.h"

/* ---- sampling -------------------------------------------------------------- */

#define N_SEEDS 3000
#define N_POS   3 /* output positions 1..3 (position 0 is never drafted) */

/* Two-sample chi-square over token counts a, b (equal totals) of n_vocab
 * bins, bins with fewer than 10 together pooled into one; *df its degrees
 * of freedom. */
static double chi_square(const int *a, const int *b, int nv, int *df)
{
    double x = 0, pa = 0, pb = 0;
    int bins = 0;
    for (int i = 0; i < nv; i++) {
        if (a[i] + b[i] < 10) {
            pa += a[i];
            pb += b[i];
            continue;
        }
        x += (double)(a[i] - b[i]) * (a[i] - b[i]) / (a[i] + b[i]);
        bins++;
    }
    if (pa + pb > 0) {
        x += (pa - pb) * (pa - pb) / (pa + pb);
        bins++;
    }
    *df = bins - 1;
    return x;
}

/* The chi-square quantile of probability 1 - 1e-4 (Wilson-Hilferty). */
static double chi_crit(int df)
{
    const double z = 3.719, k = df;
    const double t = 1 - 2 / (9 * k) + z * sqrt(2 / (9 * k));
    return k * t * t * t;
}

/* Seeds 1..N_SEEDS, 16 at a time; counts[pos][token] of positions 1..N_POS. */
static void sample_counts(realm_engine *e, int32_t mode, int32_t n_max, int (*counts)[512],
                          uint64_t *drafted, uint64_t *accepted)
{
    for (int s0 = 0; s0 < N_SEEDS; s0 += 16) {
        realm_gen_options o[16];
        const realm_token *p[16];
        int np[16];
        for (int i = 0; i < 16; i++) {
            o[i] = opts(mode, n_max, 1.0f, (uint64_t)(s0 + i + 1), 1 + N_POS);
            o[i].sampling.top_p = 1;
            o[i].sampling.min_p = 0;
            o[i].speculative.p_min = 0;
            p[i] = case_prompt[2];
            np[i] = case_np[2];
        }
        out r[16];
        run_n(e, 16, p, np, o, r);
        for (int i = 0; i < 16; i++) {
            CHECK_EQ_INT(r[i].n, 1 + N_POS);
            for (int k = 0; k < N_POS && k + 1 < r[i].n; k++)
                if (r[i].ids[k + 1] >= 0 && r[i].ids[k + 1] < 512)
                    counts[k][r[i].ids[k + 1]]++;
            *drafted += (uint64_t)r[i].res.draft_tokens;
            *accepted += (uint64_t)r[i].res.accepted_tokens;
        }
    }
}

static void check_distribution(const realm_model *draft, const char *name)
{
    realm_engine *e = engine(draft, 4096, 16);
    static int c_off[N_POS][512], c_spec[N_POS][512];
    memset(c_off, 0, sizeof c_off);
    memset(c_spec, 0, sizeof c_spec);
    uint64_t dr = 0, ac = 0, dr0 = 0, ac0 = 0;
    sample_counts(e, REALM_SPEC_OFF, 0, c_off, &dr0, &ac0);
    sample_counts(e, REALM_SPEC_DRAFT, 3, c_spec, &dr, &ac);
    CHECK_EQ_INT((int)dr0, 0);
    CHECK_MSG(dr > 0 && ac > 0 && ac < dr, "drafted %llu, accepted %llu", (unsigned long long)dr,
              (unsigned long long)ac);
    for (int k = 0; k < N_POS; k++) {
        int df;
        const double x = chi_square(c_off[k], c_spec[k], 512, &df);
        printf("sampling, draft %s, position %d: chi-square %.1f, %d degrees of freedom, "
               "bound %.1f (drafted %llu, accepted %llu)\n",
               name, k + 1, x, df, chi_crit(df), (unsigned long long)dr, (unsigned long long)ac);
        CHECK_MSG(df >= 3 && x < chi_crit(df), "draft %s, position %d: chi-square %.1f over %d df",
                  name, k + 1, x, df);
    }
    realm_engine_free(e);
}

static void test_sampling(void)
{
    realm_engine *e = engine(draft_q4, 4096, 16);
    /* lookup: the seeded tokens of the run without speculation, any K */
    realm_gen_options o = opts(REALM_SPEC_OFF, 0, 0.9f, 77, 96);
    o.sampling.repeat_penalty = 1.1f;
    o.sampling.top_k = 40;
    out off, r;
    run1(e, case_prompt[0], case_np[0], &o, &off);
    CHECK_EQ_INT(off.n, 96);
    uint64_t lookup_drafted = 0;
    for (int32_t k = 1; k <= 16; k *= 2) {
        o.speculative.mode = REALM_SPEC_LOOKUP;
        o.speculative.n_max = k;
        run1(e, case_prompt[0], case_np[0], &o, &r);
        CHECK_MSG(same_tokens(&r, &off) && same_logprobs(&r, &off),
                  "seeded lookup with K %d differs from no speculation", k);
        lookup_drafted += (uint64_t)r.res.draft_tokens;
    }
    CHECK(lookup_drafted > 0);
    /* draft model, seeded: the same tokens again for the same options */
    o.speculative.mode = REALM_SPEC_DRAFT;
    o.speculative.n_max = 4;
    o.speculative.p_min = 0;
    out d1, d2;
    run1(e, case_prompt[0], case_np[0], &o, &d1);
    run1(e, case_prompt[0], case_np[0], &o, &d2);
    CHECK(same_tokens(&d1, &d2) && same_logprobs(&d1, &d2));
    CHECK(d1.res.accepted_tokens > 0);

    realm_engine_free(e);
    /* the distribution with a draft model's sampled drafts equals the target's:
     * a close draft (Q4_0, mostly accepted) and a far one (tiny-f32's random
     * weights, mostly rejected: the residual draws) */
    check_distribution(draft_q4, "q4_0");
    check_distribution(draft_tiny, "tiny-f32");
}

int main(void)
{
    test_begin("engine_spec_dist", 580);
    if (spec_setup())
        test_sampling();
    spec_teardown();
    return test_end();
}
