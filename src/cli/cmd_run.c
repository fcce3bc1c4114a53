/*
 * realm run — generate text from a prompt with one model, streaming it to
 * stdout as it is produced; timing goes to stderr. Without -p, an
 * interactive chat (run_chat.c). The model is a path or a pulled model's name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "core/clock_internal.h"
#include "lora_args.h"
#include "model_files.h"
#include "realm/engine.h"
#include "realm/error.h"
#include "realm/model.h"
#include "realm/registry.h"
#include "realm/sampler.h"
#include "realm/tokenizer.h"
#include "rope_opts.h"
#include "run_chat.h"

#define CMD "run"

typedef struct run_opts {
    const char *model, *prompt, *models_dir, *chat_template;
    long n_predict, n_threads, n_ctx, n_batch, top_k;
    uint64_t mem_budget; /* bytes; 0: no limit (one prompt) or the registry's default (chat) */
    realm_type type_k, type_v; /* KV cache types (--cache-type-k / -v) */
    float temp, top_p, min_p;
    unsigned long long seed;
    bool echo, mlock, repack, verbose, n_predict_set, seed_set;
    cli_rope rope;
    realm_rope_params rope_params;
    cli_lora_args lora; /* --lora, --lora-scaled */
    const char *draft;  /* --draft: a draft model's file or name */
    bool lookup;        /* --lookup: prompt lookup drafts */
    long draft_max, draft_min;
    float draft_p_min;
} run_opts;

static bool parse_float(const char *opt, const char *v, float lo, float hi, float *out)
{
    char *end;
    if (v == NULL)
        return cli_error(CMD, "option %s needs a value", opt), false;
    float f = strtof(v, &end);
    if (*v == '\0' || *end != '\0' || !(f >= lo && f <= hi))
        return cli_error(CMD, "option %s: '%s' is not a number in %g..%g", opt, v, lo, hi), false;
    *out = f;
    return true;
}

static int parse_args(int argc, char **argv, run_opts *o)
{
    *o = (run_opts){.n_predict = 128,
                    .n_ctx = 0,
                    .n_batch = 512,
                    .type_k = REALM_TYPE_F16,
                    .type_v = REALM_TYPE_F16,
                    .top_k = 40,
                    .temp = 0.8f,
                    .top_p = 0.95f,
                    .min_p = 0.05f,
                    .seed = 0,
                    .echo = true,
                    .repack = true,
                    .rope = CLI_ROPE_INIT,
                    .draft_max = 8,
                    .draft_p_min = 0.75f};
    long seed = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true, takes = true;
        int rope;
        if (a[0] != '-' || a[1] == '\0') {
            if (o->model != NULL)
                return cli_error(CMD, "unexpected argument '%s' (the model is %s)", a, o->model);
            o->model = a, takes = false;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            o->model = v, ok = v != NULL;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt"))
            o->prompt = v, ok = v != NULL;
        else if (!strcmp(a, "--models-dir"))
            o->models_dir = v, ok = v != NULL;
        else if (!strcmp(a, "--chat-template"))
            o->chat_template = v, ok = v != NULL;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict"))
            ok = o->n_predict_set = cli_parse_int(CMD, a, v, 0, 1 << 24, &o->n_predict);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            ok = cli_parse_int(CMD, a, v, 1, 1024, &o->n_threads);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size"))
            ok = cli_parse_int(CMD, a, v, 1, 1 << 24, &o->n_ctx);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size"))
            ok = cli_parse_int(CMD, a, v, 1, 1 << 16, &o->n_batch);
        else if (!strcmp(a, "--mem-budget") && v != NULL) {
            if (realm_parse_size(v, &o->mem_budget) < 0)
                return cli_error(CMD, "option --mem-budget: %s", realm_last_error());
        } else if (!strcmp(a, "--mem-budget"))
            ok = false;
        else if (!strcmp(a, "--cache-type-k"))
            ok = cli_parse_cache_type(CMD, a, v, &o->type_k);
        else if (!strcmp(a, "--cache-type-v"))
            ok = cli_parse_cache_type(CMD, a, v, &o->type_v);
        else if (!strcmp(a, "--top-k"))
            ok = cli_parse_int(CMD, a, v, 0, 1 << 24, &o->top_k);
        else if (!strcmp(a, "--seed"))
            ok = cli_parse_int(CMD, a, v, 0, 0x7fffffffL, &seed);
        else if (!strcmp(a, "--temp"))
            ok = parse_float(a, v, 0, 100, &o->temp);
        else if (!strcmp(a, "--top-p"))
            ok = parse_float(a, v, 0, 1, &o->top_p);
        else if (!strcmp(a, "--min-p"))
            ok = parse_float(a, v, 0, 1, &o->min_p);
        else if (!strcmp(a, "--lora")) {
            if (!cli_lora_parse_list(CMD, a, v, false, false, &o->lora))
                return 1;
        } else if (!strcmp(a, "--lora-scaled") && cli_lora_has_scale(v)) {
            if (!cli_lora_parse_list(CMD, a, v, true, false, &o->lora)) /* FILE:SCALE,... */
                return 1;
        } else if (!strcmp(a, "--lora-scaled")) { /* FILE SCALE */
            if (!cli_lora_add(CMD, a, v, v ? (i + 2 < argc ? argv[i + 2] : NULL) : NULL, &o->lora))
                return 1;
            i++;
        } else if (!strcmp(a, "--draft") || !strcmp(a, "-md") || !strcmp(a, "--model-draft"))
            o->draft = v, ok = v != NULL;
        else if (!strcmp(a, "--lookup"))
            o->lookup = true, takes = false;
        else if (!strcmp(a, "--draft-max"))
            ok = cli_parse_int(CMD, a, v, 1, REALM_SPEC_MAX_DRAFT, &o->draft_max);
        else if (!strcmp(a, "--draft-min"))
            ok = cli_parse_int(CMD, a, v, 0, REALM_SPEC_MAX_DRAFT, &o->draft_min);
        else if (!strcmp(a, "--draft-p-min"))
            ok = parse_float(a, v, 0, 1, &o->draft_p_min);
        else if (!strcmp(a, "--no-echo"))
            o->echo = false, takes = false;
        else if (!strcmp(a, "--mlock"))
            o->mlock = true, takes = false;
        else if (!strcmp(a, "--repack"))
            o->repack = true, takes = false;
        else if (!strcmp(a, "--no-repack"))
            o->repack = false, takes = false;
        else if (!strcmp(a, "--verbose"))
            o->verbose = true, takes = false;
        else if ((rope = cli_rope_arg(CMD, a, v, &o->rope)) < 0)
            return 1;
        else if (rope == 0)
            return cli_error(CMD, "unknown option '%s' (see 'realm help run')", a);
        if (!ok)
            return v == NULL ? cli_error(CMD, "option %s needs a value", a) : 1;
        if (takes)
            i++;
    }
    if (o->model == NULL)
        return cli_error(CMD, "missing -m MODEL (a pulled model's name or a GGUF file)");
    if (o->prompt != NULL && o->chat_template != NULL)
        return cli_error(CMD, "--chat-template is for the chat (without -p); -p takes the prompt "
                              "as it is");
    if (o->prompt == NULL && o->mlock)
        return cli_error(CMD, "--mlock works with -p only (the chat loads the model through a "
                              "registry)");
    if (o->draft != NULL && o->lookup)
        return cli_error(CMD, "--draft and --lookup: one way of drafting at a time");
    if (o->draft != NULL && o->prompt == NULL)
        return cli_error(CMD, "--draft works with -p only (the chat takes --lookup)");
    if (o->draft_min > o->draft_max)
        return cli_error(CMD, "--draft-min %ld is above --draft-max %ld", o->draft_min,
                         o->draft_max);
    if (cli_rope_params(CMD, &o->rope, &o->rope_params) != 0)
        return 1;
    o->seed_set = seed >= 0;
    o->seed = seed >= 0 ? (unsigned long long)seed : (unsigned long long)time(NULL);
    return 0;
}

/* Write whatever the stream can release to stdout. */
static void drain(realm_detok_stream *ds)
{
    char buf[256];
    size_t n;
    while ((n = realm_detok_stream_take(ds, buf, sizeof buf)) > 0)
        fwrite(buf, 1, n, stdout);
    fflush(stdout);
}

/* The RoPE in effect, when it stretches the context or was overridden. */
static void print_rope(const run_opts *o, const realm_hparams *hp)
{
    const realm_rope_params *r = &o->rope_params;
    const bool overridden = r->scaling != REALM_ROPE_SCALING_DEFAULT || r->freq_base > 0 ||
                            r->freq_scale > 0 || r->yarn_orig_ctx > 0 || r->has_yarn_ext_factor ||
                            r->yarn_attn_factor > 0 || r->yarn_beta_fast > 0 ||
                            r->yarn_beta_slow > 0;
    if (!overridden && hp->rope_freq_scale == 1 && hp->rope_ext_factor == 0 && !hp->has_rope_freqs)
        return;
    fprintf(stderr, "rope: %s", realm_rope_scaling_name(hp->rope_scaling));
    if (hp->rope_freq_scale != 1)
        fprintf(stderr, " x%g", 1.0 / hp->rope_freq_scale);
    if (hp->rope_ext_factor != 0)
        fprintf(stderr, " (YaRN over an original context of %d, extrapolation mix %g)",
                (int)hp->rope_n_ctx_orig, hp->rope_ext_factor);
    if (hp->has_rope_freqs)
        fprintf(stderr, ", rope_freqs factors");
    fprintf(stderr, ", base %g, trained context %d%s\n", hp->rope_freq_base, (int)hp->n_ctx_train,
            overridden ? " (overridden)" : "");
}

static int run_chat(const run_opts *o)
{
    const run_chat_opts c = {
        .model = o->model,
        .models_dir = o->models_dir,
        .chat_template = o->chat_template,
        .n_threads = (int32_t)o->n_threads,
        .n_ctx = (int32_t)o->n_ctx,
        .n_batch = (int32_t)o->n_batch,
        .max_tokens = o->n_predict_set ? (int32_t)o->n_predict : 0,
        .mem_budget = o->mem_budget,
        .type_k = o->type_k,
        .type_v = o->type_v,
        .sampling = {.temperature = o->temp,
                     .top_k = (int32_t)o->top_k,
                     .top_p = o->top_p,
                     .min_p = o->min_p,
                     .seed = o->seed_set ? o->seed : REALM_SEED_RANDOM},
        .verbose = o->verbose,
        .rope = o->rope_params,
        .repack = o->repack,
        .lora = &o->lora,
        .spec = {.mode = o->lookup ? REALM_SPEC_LOOKUP : REALM_SPEC_DEFAULT,
                 .n_max = (int32_t)o->draft_max,
                 .n_min = (int32_t)o->draft_min,
                 .p_min = o->draft_p_min},
    };
    return cli_run_chat(&c);
}

/*
 * -p with --draft or --lookup: the generation goes through the engine, which
 * does the speculative decoding (the same tokens as the direct loop for a
 * greedy run, and for a seeded one with prompt lookup: the draw of each
 * token is a function of the seed and its position). Prints the acceptance
 * with the timing.
 */
static int run_speculative(const run_opts *o, const realm_model *m, const realm_tokenizer *tok,
                           const realm_token *ids, int32_t n_prompt, long n_ctx,
                           const realm_lora_item *items, int n_lora, double t_load)
{
    realm_model *dm = NULL;
    realm_engine *e = NULL;
    realm_gen *g = NULL;
    int rc = 1;
    if (o->draft) {
        char dpath[4096];
        if (!cli_model_resolve(CMD, o->models_dir, o->draft, dpath, sizeof dpath))
            return 1;
        if (realm_model_load(dpath, &(realm_model_params){.repack = o->repack}, &dm) < 0) {
            cli_error(CMD, "the draft model: %s", realm_last_error());
            return 1;
        }
    }
    const int32_t nb = (int32_t)(o->n_batch < n_ctx ? o->n_batch : n_ctx);
    const realm_engine_params ep = {.n_ctx = (int32_t)n_ctx,
                                    .n_ctx_seq = (int32_t)n_ctx,
                                    .type_k = o->type_k,
                                    .type_v = o->type_v,
                                    .n_batch = nb,
                                    .max_seqs = 1,
                                    .n_threads = (int32_t)o->n_threads,
                                    .prefix_cache_entries = -1,
                                    .kv_mem_budget = 0,
                                    .tokenizer = tok,
                                    .draft = dm};
    if (realm_engine_new(m, &ep, &e) < 0) {
        cli_error(CMD, "%s", realm_last_error());
        goto done;
    }
    realm_gen_options go;
    realm_gen_options_init(&go);
    go.max_tokens = (int32_t)o->n_predict;
    go.sampling = (realm_sampler_params){.temperature = o->temp,
                                         .top_k = (int32_t)o->top_k,
                                         .top_p = o->top_p,
                                         .min_p = o->min_p,
                                         .seed = o->seed};
    go.lora = items;
    go.n_lora = n_lora;
    go.speculative = (realm_spec_options){.mode = dm ? REALM_SPEC_DRAFT : REALM_SPEC_LOOKUP,
                                          .n_max = (int32_t)o->draft_max,
                                          .n_min = (int32_t)o->draft_min,
                                          .p_min = o->draft_p_min};
    if (o->echo) {
        realm_detok_stream *ds = NULL;
        if (realm_detok_stream_new(tok, 0, &ds) == 0) {
            for (int32_t i = 0; i < n_prompt; i++)
                realm_detok_stream_push(ds, ids[i]);
            realm_detok_stream_flush(ds);
            drain(ds);
            realm_detok_stream_free(ds);
        }
    }
    if (realm_engine_submit(
            e, &(realm_gen_request){.prompt = ids, .n_prompt = n_prompt, .options = &go}, &g) < 0) {
        cli_error(CMD, "%s", realm_last_error());
        goto done;
    }
    realm_gen_piece piece;
    while (realm_gen_next(g, &piece, -1) > 0) {
        fwrite(piece.text, 1, piece.len, stdout);
        fflush(stdout);
    }
    realm_gen_result res;
    realm_gen_result_get(g, &res);
    fputc('\n', stdout);
    fflush(stdout);
    if (res.finish == REALM_FINISH_ERROR) {
        cli_error(CMD, "%s", res.message);
        goto done;
    }
    const double t_prompt = res.time_to_first_token_ms;
    fprintf(stderr,
            "\nload %.0f ms | prompt %d tokens, %.1f tokens/s | generation %d tokens, %.1f "
            "tokens/s\n",
            t_load * 1e3, n_prompt, t_prompt > 0 ? n_prompt / (t_prompt / 1e3) : 0.0,
            res.n_completion, res.tokens_per_s);
    fprintf(stderr, "speculative (%s, K up to %ld): %d drafted, %d accepted (%.1f%%)\n",
            dm ? "draft model" : "prompt lookup", o->draft_max, res.draft_tokens,
            res.accepted_tokens,
            res.draft_tokens ? 100.0 * res.accepted_tokens / res.draft_tokens : 0.0);
    rc = 0;
done:
    realm_gen_free(g);
    realm_engine_free(e);
    realm_model_free(dm);
    return rc;
}

static int run_run(int argc, char **argv)
{
    static run_opts o; /* (its adapters' paths are large) */
    if (parse_args(argc, argv, &o) != 0)
        return 1;
    if (o.prompt == NULL)
        return run_chat(&o);
    char path[4096];
    if (!cli_model_resolve(CMD, o.models_dir, o.model, path, sizeof path))
        return 1;
    double t_load = realm__now();
    realm_model *m = NULL;
    realm_tokenizer *tok = NULL;
    realm_kv_cache *kv = NULL;
    realm_ctx *ctx = NULL;
    realm_sampler *smp = NULL;
    realm_detok_stream *ds = NULL;
    realm_token *ids = NULL;
    float *logits = NULL;
    realm_lora *ads[CLI_LORA_MAX] = {0};
    realm_lora_item items[CLI_LORA_MAX];
    int rc = 1;

    if (realm_model_load(
            path,
            &(realm_model_params){.mlock = o.mlock, .repack = o.repack, .rope = o.rope_params},
            &m) < 0 ||
        realm_tokenizer_load(realm_model_gguf(m), &tok) < 0) {
        cli_error(CMD, "%s", realm_last_error());
        goto done;
    }
    if (!cli_lora_load(CMD, m, &o.lora, ads))
        goto done;
    for (int i = 0; i < o.lora.n; i++)
        items[i] = (realm_lora_item){ads[i], o.lora.scale[i]};
    const realm_lora_set set = {o.lora.n, items};
    const realm_hparams *hp = realm_model_hparams(m);
    if (realm_tokenizer_n_vocab(tok) > hp->n_vocab) {
        cli_error(CMD, "the tokenizer has %d tokens but the model only %d",
                  realm_tokenizer_n_vocab(tok), hp->n_vocab);
        goto done;
    }
    print_rope(&o, hp);
    int32_t n_prompt;
    if (realm_tokenize_alloc(tok, o.prompt, strlen(o.prompt), REALM_TOKENIZE_ADD_SPECIAL, &ids,
                             &n_prompt) < 0) {
        cli_error(CMD, "tokenizing the prompt: %s", realm_last_error());
        goto done;
    }
    if (n_prompt == 0) {
        cli_error(CMD, "the prompt is empty and the model adds no BOS token");
        goto done;
    }
    long n_ctx = o.n_ctx ? o.n_ctx
                         : (n_prompt + o.n_predict < hp->n_ctx_train ? n_prompt + o.n_predict
                                                                     : hp->n_ctx_train);
    if (n_prompt + o.n_predict > n_ctx) {
        if (n_prompt >= n_ctx) {
            cli_error(CMD, "the prompt has %d tokens, the context only %ld (-c)", n_prompt, n_ctx);
            goto done;
        }
        o.n_predict = n_ctx - n_prompt;
    }
    const realm_kv_params kvp = {.n_ctx = (int32_t)n_ctx, .type_k = o.type_k, .type_v = o.type_v};
    const realm_ctx_params cp = {.n_batch = (int32_t)(o.n_batch < n_ctx ? o.n_batch : n_ctx),
                                 .n_threads = (int32_t)o.n_threads};
    if (realm_kv_params_check(m, &kvp) < 0) {
        cli_error(CMD, "%s", realm_last_error());
        goto done;
    }
    const uint64_t weights = realm_model_weight_bytes(m), kv_bytes = realm_kv_cache_bytes(m, &kvp),
                   scratch = realm_ctx_bytes(m, &cp);
    char b1[32], b2[32], b3[32], b4[32], b5[32], types[64] = "";
    if (o.type_k != REALM_TYPE_F16 || o.type_v != REALM_TYPE_F16)
        snprintf(types, sizeof types, " (keys %s, values %s)",
                 cli_cache_types[o.type_k == REALM_TYPE_Q8_0],
                 cli_cache_types[o.type_v == REALM_TYPE_Q8_0]);
    fprintf(stderr,
            "memory: weights %s (mapped, shared), KV cache %s%s for %ld tokens, scratch %s\n",
            cli_format_bytes(weights, b1, sizeof b1), cli_format_bytes(kv_bytes, b2, sizeof b2),
            types, n_ctx, cli_format_bytes(scratch, b3, sizeof b3));
    if (o.lora.n > 0) {
        static char desc[8192];
        fprintf(stderr, "LoRA: %s\n", cli_lora_describe(&o.lora, ads, desc, sizeof desc));
    }
    if (o.mem_budget > 0 && weights + kv_bytes + scratch > o.mem_budget) {
        cli_error(CMD,
                  "the model needs %s (weights, KV cache and scratch), more than the memory "
                  "budget of %s (--mem-budget)",
                  cli_format_bytes(weights + kv_bytes + scratch, b4, sizeof b4),
                  cli_format_bytes(o.mem_budget, b5, sizeof b5));
        goto done;
    }
    if (realm_kv_cache_new(m, &kvp, &kv) < 0 || realm_ctx_new(m, kv, &cp, &ctx) < 0 ||
        realm_sampler_new(&(realm_sampler_params){.temperature = o.temp,
                                                  .top_k = (int32_t)o.top_k,
                                                  .top_p = o.top_p,
                                                  .min_p = o.min_p,
                                                  .seed = o.seed},
                          hp->n_vocab, &smp) < 0 ||
        realm_detok_stream_new(tok, 0, &ds) < 0) {
        cli_error(CMD, "%s", realm_last_error());
        goto done;
    }
    logits = malloc((size_t)hp->n_vocab * sizeof *logits);
    if (logits == NULL) {
        cli_error(CMD, "out of memory");
        goto done;
    }
    t_load = realm__now() - t_load;
    if (o.draft || o.lookup) {
        rc = run_speculative(&o, m, tok, ids, n_prompt, n_ctx, items, o.lora.n, t_load);
        goto done;
    }

    if (o.echo) {
        for (int32_t i = 0; i < n_prompt; i++)
            realm_detok_stream_push(ds, ids[i]);
        drain(ds);
    }

    /* Prompt, in chunks of the batch size. */
    int32_t seq;
    realm_kv_seq_new(kv, &seq);
    double t0 = realm__now();
    const int32_t nb = (int32_t)(o.n_batch < n_ctx ? o.n_batch : n_ctx);
    int32_t *pos = malloc((size_t)nb * sizeof *pos), *seqs = malloc((size_t)nb * sizeof *seqs);
    int32_t *sets = calloc((size_t)nb, sizeof *sets); /* every entry: set 0 */
    const realm_batch_lora bl = {sets, &set, 1};
    for (int32_t at = 0; at < n_prompt; at += nb) {
        const int32_t len = n_prompt - at < nb ? n_prompt - at : nb;
        for (int32_t i = 0; i < len; i++) {
            pos[i] = at + i;
            seqs[i] = seq;
        }
        realm_batch b = {len, ids + at, pos, seqs, NULL};
        if (realm_forward_lora(ctx, &b, o.lora.n ? &bl : NULL, logits) < 0) {
            free(pos);
            free(seqs);
            free(sets);
            cli_error(CMD, "%s", realm_last_error());
            goto done;
        }
    }
    free(pos);
    free(seqs);
    const double t_prompt = realm__now() - t0;

    /* Generation. */
    t0 = realm__now();
    int32_t n_gen = 0;
    for (; n_gen < o.n_predict; n_gen++) {
        realm_token next = realm_sampler_sample(smp, logits);
        if (realm_tokenizer_is_eog(tok, next))
            break;
        realm_detok_stream_push(ds, next);
        drain(ds);
        if (n_gen + 1 == o.n_predict)
            break;
        int32_t p = n_prompt + n_gen;
        realm_batch b = {1, &next, &p, &seq, NULL};
        if (realm_forward_lora(ctx, &b, o.lora.n ? &bl : NULL, logits) < 0) {
            free(sets);
            cli_error(CMD, "%s", realm_last_error());
            goto done;
        }
    }
    if (n_gen < o.n_predict)
        ; /* stopped at end of generation */
    else
        n_gen = (int32_t)o.n_predict;
    const double t_gen = realm__now() - t0;
    free(sets);
    realm_detok_stream_flush(ds);
    drain(ds);
    fputc('\n', stdout);
    fflush(stdout);
    fprintf(
        stderr,
        "\nload %.0f ms | prompt %d tokens, %.1f tokens/s | generation %d tokens, %.1f tokens/s\n",
        t_load * 1e3, n_prompt, n_prompt / t_prompt, n_gen, n_gen > 1 ? (n_gen - 1) / t_gen : 0.0);
    rc = 0;
done:
    free(logits);
    free(ids);
    realm_detok_stream_free(ds);
    realm_sampler_free(smp);
    realm_ctx_free(ctx);
    realm_kv_cache_free(kv);
    realm_tokenizer_free(tok);
    cli_lora_free(ads, o.lora.n);
    realm_model_free(m);
    return rc;
}

/* The usage, in two literals (each under the 4095 characters C99 promises),
 * joined before main. */
static const char usage_a[] =
    "usage: realm run NAME|MODEL.gguf [-p PROMPT] [-n N] [-t THREADS] [-c CTX] [-b BATCH]\n"
    "                 [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S]\n"
    "                 [--mem-budget SIZE] [--cache-type-k TYPE] [--cache-type-v TYPE]\n"
    "                 [--models-dir DIR] [--chat-template NAME]\n"
    "                 [--lora FILE[:SCALE][,...]]... [--lora-scaled FILE:SCALE[,...]]...\n"
    "                 [--no-echo] [--mlock] [--no-repack] [--verbose]\n"
    "                 [--draft FILE | --lookup] [--draft-max K] [--draft-min N]\n"
    "                 [--draft-p-min P]\n"
    "                 [--rope-scaling none|linear|yarn] [--rope-freq-base N]\n"
    "                 [--rope-freq-scale N] [--rope-scale N] [--yarn-orig-ctx N]\n"
    "                 [--yarn-ext-factor N] [--yarn-attn-factor N]\n"
    "                 [--yarn-beta-fast N] [--yarn-beta-slow N]\n"
    "\n"
    "The model is a GGUF file (any part of a split one) or the name of a pulled model\n"
    "(see 'realm models'); -m NAME|MODEL.gguf works too.\n"
    "\n"
    "With -p: streams the prompt and then the generated text to stdout as it is\n"
    "produced, and prints timing (prompt and generation tokens/s) to stderr. Stops\n"
    "after N tokens (default 128) or at an end-of-generation token.\n"
    "\n"
    "Without -p: a chat. Each message (a line; or lines from one starting with \"\"\"\n"
    "to one ending with \"\"\") is added to the conversation, which is rendered with\n"
    "the model's chat template, and the reply is streamed. Earlier turns stay in the\n"
    "KV cache, so a turn computes only its new tokens. Commands: /set parameter NAME\n"
    "VALUE (temperature, top_p, top_k, min_p, repeat_penalty, seed, num_predict),\n"
    "/set system TEXT, /show, /clear, /help, /bye. Ctrl-C stops a reply; Ctrl-D or\n"
    "/bye exits. On a terminal it prompts with \">>> \"; otherwise it reads messages\n"
    "line by line without prompts, so it can be scripted.\n"
    "\n"
    "  -n N          -p: tokens to generate (default 128); chat: most tokens of a reply\n"
    "                (default: until the model stops)\n"
    "  -c CTX        context size (-p default: prompt + N, at most the trained context;\n"
    "                chat default: the trained context, at most 4096)\n"
    "  -b BATCH      prompt tokens per forward pass (default 512)\n";
static const char usage_b[] =
    "  --mem-budget SIZE  memory for the model: weights, KV cache and scratch (e.g.\n"
    "                512M, 6G); -p fails (cleanly) if they need more; the chat's KV\n"
    "                cache is sized to fit (default: -p no limit, chat 3/4 of the\n"
    "                available memory)\n"
    "  --cache-type-k TYPE, --cache-type-v TYPE  KV cache type of the keys, of the\n"
    "                values: f16 (default) or q8_0, about half the memory and the\n"
    "                attention bandwidth for a small accuracy cost; q8_0 needs a head\n"
    "                size that is a multiple of 32 (as in llama.cpp)\n"
    "  --temp T      temperature (default 0.8); 0 is greedy\n"
    "  --top-k K     keep the K most likely tokens (default 40; 0 = off)\n"
    "  --top-p P     nucleus sampling (default 0.95; 1 = off)\n"
    "  --min-p P     drop tokens below P x the best one's probability (default 0.05)\n"
    "  --seed S      random seed (default: the time; in a chat, one per reply)\n"
    "  --models-dir DIR  where pulled models are (see 'realm help models')\n"
    "  --chat-template NAME  chat: this template instead of the model's own (see\n"
    "                'realm chat-template --list')\n"
    "  --lora FILE[:SCALE][,...]  apply the LoRA adapter in FILE (GGUF, as llama.cpp's\n"
    "                convert_lora_to_gguf.py writes it) at SCALE (default 1), unmerged;\n"
    "                repeatable or comma-separated: the adapters add up (at most 8,\n"
    "                total rank 256)\n"
    "  --lora-scaled FILE:SCALE[,...]  the same with the scale required, as llama.cpp\n"
    "                takes it (also --lora-scaled FILE SCALE, its older form)\n"
    "  --no-echo     -p: do not print the prompt\n"
    "  --mlock       -p: lock the model in RAM so it is never paged out; fails if the\n"
    "                locked-memory limit is too low (raise it with `ulimit -l`)\n"
    "  --no-repack   keep every weight matrix in the file's mapping; by default the\n"
    "                ones with a packed layout on this CPU (Q4_K, and Q5_K, Q6_K, Q8_0,\n"
    "                Q4_0 with AVX-512) are repacked once at load: faster decoding, the\n"
    "                same memory, a longer load (--repack: the default)\n"
    "  --verbose     chat: a line per turn on stderr with the prompt's tokens, how many\n"
    "                came from the cache, and the speed\n"
    "  --draft FILE  -p: speculative decoding with this draft model (a smaller GGUF\n"
    "                with the same vocabulary, or a pulled model's name; -md too)\n"
    "  --lookup      speculative decoding by prompt lookup (drafts copied from\n"
    "                n-gram matches in the prompt and output; no extra model)\n"
    "  --draft-max K  most drafted tokens per step (default 8, at most 32); K adapts\n"
    "                to the acceptance rate below it\n"
    "  --draft-min N  do not speculate on a step with fewer drafts (default 0)\n"
    "  --draft-p-min P  stop drafting when the draft model's probability of its token\n"
    "                is below P (default 0.75)\n"
    "                Greedy output is the same as without, and so is seeded sampling\n"
    "                with --lookup; a draft model's sampled drafts keep the output's\n"
    "                distribution, not its tokens (with --seed, the same tokens\n"
    "                whatever --draft-max, --draft-min, --draft-p-min). The drafted\n"
    "                and accepted counts go to stderr (the chat: with --verbose).\n"
    "\n"
    "RoPE overrides, as llama.cpp's options of the same names (default: what the\n"
    "model says: linear scaling, YaRN, Llama 3.1 frequency factors):\n" CLI_ROPE_USAGE;
static char usage[sizeof usage_a + sizeof usage_b];

__attribute__((constructor)) static void make_usage(void)
{
    snprintf(usage, sizeof usage, "%s%s", usage_a, usage_b);
}

const cli_command cli_cmd_run = {
    "run",
    run_run,
    "chat with a model, or generate text from a prompt",
    usage,
};
