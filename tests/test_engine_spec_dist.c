/*
 * Speculative decoding with sampling (realm/engine.h), stories260K as the
 * target (spec_util.h):
 *  - prompt lookup gives the seeded tokens of the run without speculation,
 *    whatever K (the draw is per position);
 *  - a draft model's sampled drafts keep the target's distribution: a
 *    two-sample chi-square test over 3000 seeded runs per side on the tokens
 *    at output positions 1..3, with a close draft (Q4_0, mostly accepted)
 *    and a far one (tiny-f32, mostly rejected: the residual's draws), for
 *    K up to 3 and 1 and with a p_min cut, so that positions are reached as
 *    drafted rows, bonus rows and rows of steps with K = 0; deterministic
 *    (fixed seeds); the bound is the 1 - 1e-4 quantile, which an acceptance
 *    test 1.5 times too lenient fails (tried by hand);
 *  - seeded runs with a draft model reproduce whatever K, n_min, p_min, the
 *    back-off in a batch of 8 and a step budget that splits the prompts
 *    (the token at a position is a function of the prefix, the seed and the
 *    position), both drafts, batch-invariant.
 */
#include <math.h>

#include "spec_util.h"

/* A batch-invariant engine (as spec_util.h's) with the draft, the sequences,
 * the back-off's bound and the step's token budget as given. */
static realm_engine *engine_with(const realm_model *draft, int32_t max_seqs, int32_t max_rows,
                                 int32_t n_batch)
{
    realm_engine *e = NULL;
    CHECK_RC(realm_engine_new(model,
                              &(realm_engine_params){.n_ctx = 4096,
                                                     .block_size = 16,
                                                     .max_seqs = max_seqs,
                                                     .n_batch = n_batch,
                                                     .n_threads = 1,
                                                     .manual_step = true,
                                                     .batch_invariant = true,
                                                     .spec_max_rows = max_rows,
                                                     .draft = draft},
                              &e),
             REALM_OK);
    return e;
}

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
static void sample_counts(realm_engine *e, int32_t mode, int32_t n_max, float p_min,
                          int (*counts)[512], uint64_t *drafted, uint64_t *accepted)
{
    for (int s0 = 0; s0 < N_SEEDS; s0 += 16) {
        realm_gen_options o[16];
        const realm_token *p[16];
        int np[16];
        for (int i = 0; i < 16; i++) {
            o[i] = opts(mode, n_max, 1.0f, (uint64_t)(s0 + i + 1), 1 + N_POS);
            o[i].sampling.top_p = 1;
            o[i].sampling.min_p = 0;
            o[i].speculative.p_min = p_min;
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

/*
 * The distribution with a draft model's sampled drafts against the run
 * without speculation, for K up to 3 (positions 1, 2 drafted, 3 the bonus
 * row when both are accepted), K up to 1 (position 2 the bonus row after an
 * accepted draft, position 3 a step with K = 0: max_tokens leaves no draft)
 * and K up to 2 with p_min 0.5 (bonus rows after a cut; every row a K = 0
 * one with tiny-f32, which is never that sure). The token at a position does
 * not depend on K: the three give the same counts, seed for seed.
 */
static void check_distribution(const realm_model *draft, const char *name)
{
    static const struct {
        int32_t n_max;
        float p_min;
    } spec[3] = {{3, 0}, {1, 0}, {2, 0.5f}};
    /* 16 sequences at once, and room for all their drafts (no back-off) */
    realm_engine *e = engine_with(draft, 16, 16 * 4, 512);
    static int c_off[N_POS][512], c_spec[3][N_POS][512];
    memset(c_off, 0, sizeof c_off);
    memset(c_spec, 0, sizeof c_spec);
    uint64_t dr0 = 0, ac0 = 0;
    sample_counts(e, REALM_SPEC_OFF, 0, 0, c_off, &dr0, &ac0);
    CHECK_EQ_INT((int)dr0, 0);
    for (int c = 0; c < 3; c++) {
        uint64_t dr = 0, ac = 0;
        sample_counts(e, REALM_SPEC_DRAFT, spec[c].n_max, spec[c].p_min, c_spec[c], &dr, &ac);
        if (spec[c].p_min == 0) /* (tiny-f32 never has p 0.5 for its draft: K = 0) */
            CHECK_MSG(dr > 0 && ac > 0 && ac < dr, "drafted %llu, accepted %llu",
                      (unsigned long long)dr, (unsigned long long)ac);
        for (int k = 0; k < N_POS; k++) {
            int df;
            const double x = chi_square(c_off[k], c_spec[c][k], 512, &df);
            printf("sampling, draft %s, K up to %d, p_min %.1f, position %d: chi-square %.1f, %d "
                   "degrees of freedom, bound %.1f (drafted %llu, accepted %llu)\n",
                   name, spec[c].n_max, spec[c].p_min, k + 1, x, df, chi_crit(df),
                   (unsigned long long)dr, (unsigned long long)ac);
            CHECK_MSG(df >= 3 && x < chi_crit(df),
                      "draft %s, K %d, position %d: chi-square %.1f over %d df", name,
                      spec[c].n_max, k + 1, x, df);
        }
        CHECK_MSG(memcmp(c_spec[c], c_spec[0], sizeof c_spec[0]) == 0,
                  "draft %s: other tokens with K up to %d, p_min %.1f than with K up to 3", name,
                  spec[c].n_max, spec[c].p_min);
    }
    realm_engine_free(e);
}

/* ---- seeded draft-model sampling reproduces whatever K ----------------------- */

/* The speculative options of the runs compared: K from 1 to 8, n_min cutting
 * short runs, p_min cutting drafts (the first is the reference). */
static const struct {
    int32_t n_max, n_min;
    float p_min;
} variant[8] = {{1, 0, 0}, {2, 0, 0},    {4, 0, 0},    {8, 0, 0},
                {8, 3, 0}, {4, 2, 0.5f}, {8, 0, 0.9f}, {6, 4, 0.3f}};

#define N_REPRO 64

/* Prompt setup s's seed, variant v's speculation. */
static realm_gen_options repro_opts(int s, int v)
{
    realm_gen_options o =
        opts(REALM_SPEC_DRAFT, variant[v].n_max, 0.9f, (uint64_t)(101 + s), N_REPRO);
    o.sampling.top_k = 40;
    o.sampling.repeat_penalty = 1.1f; /* p depends on the tokens so far; q has no penalty */
    o.speculative.n_min = variant[v].n_min;
    o.speculative.p_min = variant[v].p_min;
    return o;
}

/* Two prompt setups (each its seed), short and long: a prompt, then 40
 * tokens of its reference output, which a step of n_batch 32 neither
 * computes nor lets the draft model catch up with in one go (the request
 * holds while its draft catches up). */
static realm_token long_prompt[2][80];
static int long_np[2];

static void make_long_prompts(void)
{
    for (int s = 0; s < 2; s++) {
        memcpy(long_prompt[s], case_prompt[s], (size_t)case_np[s] * sizeof(realm_token));
        memcpy(long_prompt[s] + case_np[s], case_want[s], 40 * sizeof(realm_token));
        long_np[s] = case_np[s] + 40;
    }
}

/*
 * A seeded request with a draft model's sampled drafts gets the same tokens
 * whatever its K, n_min and p_min, alone or in a batch of 8 whose back-off
 * (spec_max_rows 12: four drafts a step for eight sequences) and step budget
 * (n_batch 32: prompts and the draft's catching up in pieces) change every
 * sequence's drafts: the token at each output position is a function of the
 * prefix, the seed and the position; the log-probabilities are bitwise the
 * same too. Batch-invariant engines: without, the logits of a row differ in
 * their last bits between passes of other shapes, and so, rarely, do the
 * tokens (seen with the tiny-f32 draft, 3 of these 64-token runs).
 */
static void check_reproducible(const realm_model *draft, const char *name)
{
    realm_engine *e1 = engine_with(draft, 8, 32, 512);
    out ref[2][2], r;
    int drafted_alone[2][8] = {{0}};
    for (int lp = 0; lp < 2; lp++)
        for (int s = 0; s < 2; s++) {
            const realm_token *prompt = lp ? long_prompt[s] : case_prompt[s];
            const int np = lp ? long_np[s] : case_np[s];
            for (int v = 0; v < 8; v++) {
                realm_gen_options o = repro_opts(s, v);
                out *x = v ? &r : &ref[lp][s];
                run1(e1, prompt, np, &o, x);
                CHECK_EQ_INT(x->n, N_REPRO);
                if (!lp)
                    drafted_alone[s][v] = x->res.draft_tokens;
                if (v > 0)
                    CHECK_MSG(same_tokens(&r, &ref[lp][s]) && same_logprobs(&r, &ref[lp][s]),
                              "draft %s, prompt %d%s, K %d n_min %d p_min %.1f: other tokens "
                              "than with K 1",
                              name, s, lp ? " (long)" : "", variant[v].n_max, variant[v].n_min,
                              variant[v].p_min);
            }
        }
    CHECK(ref[0][0].res.draft_tokens > 0);
    realm_engine_free(e1);

    /* batches of 8 (request i: prompt i % 2, variant i), short then long prompts */
    realm_engine *e8 = engine_with(draft, 8, 12, 32);
    for (int lp = 0; lp < 2; lp++) {
        realm_gen_options o[8];
        const realm_token *p[8];
        int np[8], batch_drafted = 0, alone_drafted = 0;
        for (int i = 0; i < 8; i++) {
            o[i] = repro_opts(i % 2, i);
            p[i] = lp ? long_prompt[i % 2] : case_prompt[i % 2];
            np[i] = lp ? long_np[i % 2] : case_np[i % 2];
        }
        out r8[8];
        run_n(e8, 8, p, np, o, r8);
        for (int i = 0; i < 8; i++) {
            CHECK_MSG(same_tokens(&r8[i], &ref[lp][i % 2]) &&
                          same_logprobs(&r8[i], &ref[lp][i % 2]),
                      "draft %s, batch of 8%s, request %d: other tokens than alone", name,
                      lp ? " (long prompts)" : "", i);
            batch_drafted += r8[i].res.draft_tokens;
            alone_drafted += drafted_alone[i % 2][i]; /* (the short prompts') */
        }
        /* the back-off cut the drafts (four a step at most for eight sequences) */
        CHECK(batch_drafted > 0);
        if (!lp)
            CHECK_MSG(batch_drafted < alone_drafted, "draft %s: %d drafts batched, %d alone", name,
                      batch_drafted, alone_drafted);
        if (lp)
            printf("reproducible, draft %s, batch of 8 (long prompts): %d drafts\n", name,
                   batch_drafted);
        else
            printf("reproducible, draft %s, batch of 8: %d drafts (alone %d)\n", name,
                   batch_drafted, alone_drafted);
    }
    realm_engine_free(e8);
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

    make_long_prompts();
    check_reproducible(draft_q4, "q4_0");
    check_reproducible(draft_tiny, "tiny-f32");
}

int main(void)
{
    test_begin("engine_spec_dist", 580);
    if (spec_setup())
        test_sampling();
    spec_teardown();
    return test_end();
}
