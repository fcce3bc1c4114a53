/*
 * Sandbox overheads:
 *   1. instantiate + call an empty handler (median µs),
 *   2. one host call from the guest (emit of 8 bytes, ns per call),
 *   3. generation through the default handler module vs the engine called
 *      directly, same greedy requests, one at a time (tokens/s and ratio),
 *   4. the per-piece cost of a guest's gen_next + emit loop over pieces
 *      already queued (the guest waits for the end with gen_result first)
 *      against realm_gen_next alone over the same pieces: the overhead the
 *      sandbox adds per piece, free of the generation's own noise.
 *
 *     bench_sandbox MODEL.gguf build/guest/default.wasm [N_TOKENS]
 *
 * Needs wat2wasm (wabt) for the small modules of 1, 2 and 4.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock_internal.h"
#include "realm/engine.h"
#include "realm/model.h"
#include "realm/sandbox.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Assemble WebAssembly text and load it as a module. */
static realm_module *wat_module(realm_sandbox *sb, const char *wat)
{
    char dir[] = "/tmp/realm-bench-XXXXXX", in[64], out[64], cmd[200];
    if (!mkdtemp(dir))
        return NULL;
    snprintf(in, sizeof in, "%s/m.wat", dir);
    snprintf(out, sizeof out, "%s/m.wasm", dir);
    FILE *f = fopen(in, "w");
    fputs(wat, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "wat2wasm %s -o %s", in, out);
    realm_module *m = NULL;
    if (system(cmd) == 0 && realm_module_load(sb, out, &m) < 0)
        fprintf(stderr, "load: %s\n", realm_last_error());
    unlink(in);
    unlink(out);
    rmdir(dir);
    return m;
}

static void sink_emit(void *ud, const char *d, size_t n)
{
    (void)d;
    *(size_t *)ud += n;
}

/* Times of the first and last emit of a request. */
typedef struct stamps {
    double first, last;
    int n;
} stamps;

static void stamp_emit(void *ud, const char *d, size_t n)
{
    (void)d;
    (void)n;
    stamps *s = ud;
    s->last = realm__now();
    if (s->n++ == 0)
        s->first = s->last;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_sandbox MODEL.gguf DEFAULT.wasm [N_TOKENS]\n");
        return 2;
    }
    int n_tokens = argc > 3 ? atoi(argv[3]) : 128;
    realm_sandbox *sb;
    realm_sandbox_new(NULL, &sb);

    /* 1. instantiate + empty call */
    realm_module *empty = wat_module(sb, "(module (memory (export \"memory\") 1)"
                                         " (func (export \"handle\") (result i32) i32.const 0))");
    if (!empty)
        return 1;
    enum { N_INST = 2000 };
    static double t[N_INST];
    for (int i = 0; i < N_INST; i++) {
        double t0 = realm__now();
        realm_instance *in;
        realm_instance_new(empty, NULL, &in);
        int32_t r;
        realm_instance_handle(in, &(realm_request_io){0}, &r);
        realm_instance_free(in);
        t[i] = realm__now() - t0;
    }
    qsort(t, N_INST, sizeof t[0], cmp_double);
    printf("instantiate + empty call: median %.1f us (p90 %.1f us)\n", t[N_INST / 2] * 1e6,
           t[N_INST * 9 / 10] * 1e6);

    /* 2. host call round trip */
    realm_module *emitter =
        wat_module(sb, "(module (import \"realm\" \"emit\" (func $e (param i32 i32) (result i32)))"
                       " (memory (export \"memory\") 1)"
                       " (func (export \"handle\") (result i32) (local $i i32)"
                       "  (loop $l (drop (call $e (i32.const 0) (i32.const 8)))"
                       "   (local.set $i (i32.add (local.get $i) (i32.const 1)))"
                       "   (br_if $l (i32.lt_u (local.get $i) (i32.const 1000000))))"
                       "  (i32.const 0)))");
    if (emitter) {
        realm_instance *in;
        realm_instance_new(emitter, NULL, &in);
        size_t bytes = 0;
        int32_t r;
        double t0 = realm__now();
        realm_instance_handle(in, &(realm_request_io){.emit = sink_emit, .ud = &bytes}, &r);
        printf("host call (emit, 8 bytes): %.1f ns\n", (realm__now() - t0) / 1e6 * 1e9);
        realm_instance_free(in);
        realm_module_free(emitter);
    }

    /* 3. generation: default module vs direct */
    realm_model *model;
    realm_engine *engine;
    if (realm_model_load(argv[1], NULL, &model) < 0 ||
        realm_engine_new(model, &(realm_engine_params){0}, &engine) < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], realm_last_error());
        return 1;
    }
    realm_token *prompt_ids;
    int32_t n_prompt_ids;
    if (realm_tokenize_alloc(realm_engine_tokenizer(engine), "Once upon a time", 16,
                             REALM_TOKENIZE_ADD_SPECIAL, &prompt_ids, &n_prompt_ids) < 0) {
        fprintf(stderr, "tokenize: %s\n", realm_last_error());
        return 1;
    }
    realm_sandbox_add_model(sb, "m", model, engine, NULL);
    realm_module *def;
    if (realm_module_load(sb, argv[2], &def) < 0) {
        fprintf(stderr, "%s: %s\n", argv[2], realm_last_error());
        return 1;
    }
    realm_instance *in;
    realm_instance_new(def, NULL, &in);
    char req[256];
    snprintf(req, sizeof req,
             "{\"model\":\"m\",\"prompt\":\"Once upon a time\",\"max_tokens\":%d,"
             "\"temperature\":0,\"ignore_eos\":true,\"stream\":true}",
             n_tokens);
    enum { ROUNDS = 5 };
    double t_direct = 0, t_module = 0;
    int pieces = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int k = 0; k < 2; k++) { /* alternate which goes first */
            if ((k + round) % 2 == 0) {
                realm_gen_options o;
                realm_gen_options_init(&o);
                o.max_tokens = n_tokens;
                o.sampling.temperature = 0;
                o.ignore_eos = true;
                double t0 = realm__now();
                realm_gen *g;
                realm_engine_submit(engine,
                                    &(realm_gen_request){.prompt = prompt_ids,
                                                         .n_prompt = n_prompt_ids,
                                                         .options = &o},
                                    &g);
                realm_gen_piece p;
                while (realm_gen_next(g, &p, -1) > 0)
                    pieces += round == 0;
                realm_gen_free(g);
                t_direct += realm__now() - t0;
            } else {
                size_t bytes = 0;
                int32_t r;
                double t0 = realm__now();
                realm_instance_handle(
                    in,
                    &(realm_request_io){
                        .body = req, .body_len = strlen(req), .emit = sink_emit, .ud = &bytes},
                    &r);
                t_module += realm__now() - t0;
            }
        }
    }
    double tps_direct = ROUNDS * n_tokens / t_direct, tps_module = ROUNDS * n_tokens / t_module;
    printf("generation, %d tokens x %d: direct %.1f tok/s, default module %.1f tok/s (%.1f%%)\n",
           n_tokens, ROUNDS, tps_direct, tps_module, 100.0 * tps_module / tps_direct);
    printf("difference per piece over the whole request (noise-bound on a large model): %.0f ns\n",
           (t_module - t_direct) / ROUNDS / (pieces ? pieces : 1) * 1e9);

    /* 4. per piece, with every piece already queued (the generation has
     * ended): a guest's gen_next + emit loop against realm_gen_next alone */
    char wat[2048], opts[160];
    /* the options, once as bytes and once escaped for the WebAssembly text */
    snprintf(opts, sizeof opts,
             "{\\\"prompt\\\":\\\"Once upon a time\\\",\\\"max_tokens\\\":%d,"
             "\\\"temperature\\\":0,\\\"ignore_eos\\\":true}",
             n_tokens);
    const char *plain = "{\"prompt\":\"Once upon a time\",\"max_tokens\":%d,"
                        "\"temperature\":0,\"ignore_eos\":true}";
    char plain_opts[160];
    const int opts_len = snprintf(plain_opts, sizeof plain_opts, plain, n_tokens);
    snprintf(wat, sizeof wat,
             "(module"
             " (import \"realm\" \"model_open\" (func $open (param i32 i32) (result i32)))"
             " (import \"realm\" \"generate\" (func $gen (param i32 i32 i32) (result i32)))"
             " (import \"realm\" \"gen_result\" (func $res (param i32 i32 i32) (result i32)))"
             " (import \"realm\" \"gen_next\" (func $next (param i32 i32 i32) (result i32)))"
             " (import \"realm\" \"emit\" (func $emit (param i32 i32) (result i32)))"
             " (memory (export \"memory\") 1)"
             " (data (i32.const 0) \"m\")"
             " (data (i32.const 16) \"%s\")"
             " (func (export \"handle\") (result i32) (local $g i32) (local $n i32)"
             "  (local.set $g (call $gen (call $open (i32.const 0) (i32.const 1))"
             "                           (i32.const 16) (i32.const %d)))"
             "  (drop (call $res (local.get $g) (i32.const 4096) (i32.const 1024)))"
             "  (block $done (loop $l"
             "   (local.set $n (call $next (local.get $g) (i32.const 8192) (i32.const 4096)))"
             "   (br_if $done (i32.le_s (local.get $n) (i32.const 0)))"
             "   (drop (call $emit (i32.const 8192) (local.get $n)))"
             "   (br $l)))"
             "  (i32.const 0)))",
             opts, opts_len);
    realm_module *drain = wat_module(sb, wat);
    if (drain) {
        enum { DRAIN_ROUNDS = 20 };
        double per_module[DRAIN_ROUNDS], per_direct[DRAIN_ROUNDS];
        for (int round = 0; round < DRAIN_ROUNDS; round++) {
            realm_instance *di;
            realm_instance_new(drain, NULL, &di);
            stamps st = {0};
            int32_t r;
            realm_instance_handle(di, &(realm_request_io){.emit = stamp_emit, .ud = &st}, &r);
            realm_instance_free(di);
            per_module[round] = st.n > 1 ? (st.last - st.first) / (st.n - 1) : 0;

            realm_gen_options o;
            realm_gen_options_init(&o);
            o.max_tokens = n_tokens;
            o.sampling.temperature = 0;
            o.ignore_eos = true;
            realm_gen *g;
            realm_engine_submit(
                engine,
                &(realm_gen_request){.prompt = prompt_ids, .n_prompt = n_prompt_ids, .options = &o},
                &g);
            realm_gen_wait(g);
            realm_gen_piece p;
            int n = 0;
            double t0 = realm__now();
            while (realm_gen_next(g, &p, -1) > 0)
                n++;
            per_direct[round] = n > 0 ? (realm__now() - t0) / n : 0;
            realm_gen_free(g);
        }
        qsort(per_module, DRAIN_ROUNDS, sizeof per_module[0], cmp_double);
        qsort(per_direct, DRAIN_ROUNDS, sizeof per_direct[0], cmp_double);
        printf("queued pieces: guest gen_next + emit %.0f ns per piece, realm_gen_next alone "
               "%.0f ns (medians of %d); overhead %.0f ns\n",
               per_module[DRAIN_ROUNDS / 2] * 1e9, per_direct[DRAIN_ROUNDS / 2] * 1e9, DRAIN_ROUNDS,
               (per_module[DRAIN_ROUNDS / 2] - per_direct[DRAIN_ROUNDS / 2]) * 1e9);
        realm_module_free(drain);
    }
    realm_instance_free(in);
    realm_module_free(def);
    realm_module_free(empty);
    realm_sandbox_free(sb);
    free(prompt_ids);
    realm_engine_free(engine);
    realm_model_free(model);
    return 0;
}
