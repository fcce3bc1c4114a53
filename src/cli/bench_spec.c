/*
 * realm bench --draft FILE | --lookup: speculative decoding through the
 * generation engine. Each stream count runs twice per repetition, without
 * then with speculation (alternating, so a shared machine's load drifts over
 * both alike): that many requests of the same text prompt, greedy or
 * sampled at a temperature (request i with seed i + 1, the same seeds
 * without and with speculation), ntg tokens each (end of generation
 * ignored), submitted at once and waited for.
 * Figures: end-to-end generated tokens/s over the wall time (prefill
 * included, as a client sees it), the median over repetitions, and the
 * acceptance rate (accepted / drafted tokens).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_spec.h"
#include "cli.h"
#include "core/clock_internal.h"
#include "realm/engine.h"
#include "realm/error.h"

#define CMD      "bench"
#define MAX_REPS 100
#define MAX_GENS 64

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One run: n streams at once; tokens/s over the wall time, and the
 * drafted/accepted counts added to *drafted, *accepted. */
static double run_streams(realm_engine *e, const realm_token *ids, int32_t n_prompt, int n,
                          const realm_gen_options *o, long *drafted, long *accepted)
{
    realm_gen *g[MAX_GENS] = {0};
    realm_gen_options oi[MAX_GENS];
    const double t0 = realm__now();
    for (int i = 0; i < n; i++) {
        oi[i] = *o;
        oi[i].sampling.seed = (uint64_t)i + 1;
        if (realm_engine_submit(
                e,
                &(realm_gen_request){
                    .prompt = ids, .n_prompt = n_prompt, .tenant = (uint32_t)i, .options = &oi[i]},
                &g[i]) < 0) {
            cli_error(CMD, "%s", realm_last_error());
            for (int j = 0; j < i; j++)
                realm_gen_free(g[j]);
            return -1;
        }
    }
    long tokens = 0;
    bool failed = false;
    for (int i = 0; i < n; i++) {
        realm_gen_wait(g[i]);
        realm_gen_result r;
        realm_gen_result_get(g[i], &r);
        if (r.finish == REALM_FINISH_ERROR && !failed) {
            cli_error(CMD, "%s", r.message);
            failed = true;
        }
        tokens += r.n_completion;
        *drafted += r.draft_tokens;
        *accepted += r.accepted_tokens;
        realm_gen_free(g[i]);
    }
    const double t = realm__now() - t0;
    return failed ? -1 : tokens / t;
}

int cli_bench_spec(const realm_model *m, const cli_spec_opts *o, json_t *results)
{
    realm_tokenizer *tok = NULL;
    realm_token *ids = NULL;
    int32_t n_prompt = 0;
    realm_engine *e = NULL;
    int rc = 1;
    int max_streams = 1;
    for (int i = 0; i < o->n_streams; i++)
        max_streams = o->streams[i] > max_streams ? o->streams[i] : max_streams;
    if (realm_tokenizer_load(realm_model_gguf(m), &tok) < 0 ||
        realm_tokenize_alloc(tok, o->prompt, strlen(o->prompt), REALM_TOKENIZE_ADD_SPECIAL, &ids,
                             &n_prompt) < 0) {
        cli_error(CMD, "%s", realm_last_error());
        goto done;
    }
    const int32_t per_seq = n_prompt + o->ntg + REALM_SPEC_MAX_DRAFT + 32;
    if (realm_engine_new(m,
                         &(realm_engine_params){.n_ctx = per_seq * max_streams,
                                                .n_ctx_seq = per_seq,
                                                .max_seqs = max_streams,
                                                .n_threads = o->threads,
                                                .prefix_cache_entries = -1,
                                                .batch_invariant = o->batch_invariant,
                                                .tokenizer = tok,
                                                .draft = o->draft},
                         &e) < 0) {
        cli_error(CMD, "%s", realm_last_error());
        goto done;
    }
    const char *mode = o->draft ? "draft" : "lookup";
    char sampled[48] = "greedy";
    if (o->temperature > 0)
        snprintf(sampled, sizeof sampled, "sampled (temperature %g)", (double)o->temperature);
    if (!results)
        printf("\nspeculative decoding (%s, K up to %d): %d-token prompt \"%.40s%s\", %d %s "
               "tokens per stream, end-to-end tokens/s (median of %d)\n\n"
               "| streams | tokens/s without | tokens/s with | speed-up | accepted / drafted |\n"
               "| ---: | ---: | ---: | ---: | ---: |\n",
               mode, o->draft_max, n_prompt, o->prompt, strlen(o->prompt) > 40 ? "..." : "", o->ntg,
               sampled, o->reps);
    realm_gen_options off, on;
    realm_gen_options_init(&off);
    off.max_tokens = o->ntg;
    off.ignore_eos = true;
    off.no_prefix_cache = true;
    off.sampling.temperature = o->temperature;
    off.speculative.mode = REALM_SPEC_OFF;
    on = off;
    on.speculative = (realm_spec_options){.mode = o->draft ? REALM_SPEC_DRAFT : REALM_SPEC_LOOKUP,
                                          .n_max = o->draft_max,
                                          .p_min = 0.75f};
    /* warm-up: page in the weights (both models), settle the threads */
    long d0 = 0, a0 = 0;
    if (run_streams(e, ids, n_prompt, 1, &on, &d0, &a0) < 0)
        goto done;
    for (int s = 0; s < o->n_streams; s++) {
        const int n = o->streams[s];
        double v_off[MAX_REPS], v_on[MAX_REPS];
        long drafted = 0, accepted = 0, d_off = 0, a_off = 0;
        for (int r = 0; r < o->reps; r++) {
            if ((v_off[r] = run_streams(e, ids, n_prompt, n, &off, &d_off, &a_off)) < 0 ||
                (v_on[r] = run_streams(e, ids, n_prompt, n, &on, &drafted, &accepted)) < 0)
                goto done;
        }
        const double t_off = median(v_off, o->reps), t_on = median(v_on, o->reps);
        const double rate = drafted ? (double)accepted / drafted : 0;
        if (results)
            json_array_append_new(
                results,
                json_pack("{s:s, s:s, s:i, s:i, s:f, s:i, s:f, s:f, s:f, s:I, s:I, s:f}", "test",
                          "speculative", "mode", mode, "streams", n, "draft_max", o->draft_max,
                          "temperature", (double)o->temperature, "ntg", o->ntg, "tokens_per_s_off",
                          t_off, "tokens_per_s", t_on, "speedup", t_off > 0 ? t_on / t_off : 0.0,
                          "drafted", (json_int_t)drafted, "accepted", (json_int_t)accepted,
                          "acceptance", rate));
        else
            printf("| %d | %.1f | %.1f | %.2fx | %.1f%% (%ld / %ld) |\n", n, t_off, t_on,
                   t_off > 0 ? t_on / t_off : 0.0, 100 * rate, accepted, drafted),
                fflush(stdout);
    }
    rc = 0;
done:
    realm_engine_free(e);
    free(ids);
    realm_tokenizer_free(tok);
    return rc;
}
