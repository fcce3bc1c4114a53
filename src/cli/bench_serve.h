/* realm bench: the serving figures measured through the engine (bench_serve.c). */
#ifndef REALM_CLI_BENCH_SERVE_H
#define REALM_CLI_BENCH_SERVE_H

#include <jansson.h>

#include "cli.h"
#include "realm/lora.h"
#include "realm/model.h"

#define CLI_BENCH_MAX_REPS 100

typedef struct cli_serve_opts {
    const int *par; /* parallel levels */
    int n_par;
    int npp, ntg; /* prompt and generated tokens of each client */
    int threads;  /* 0: one per CPU */
    int n_batch;  /* the engine's step budget */
    int slice_ms; /* the engine's prefill slice (0: its default, < 0: off) */
    int prefix;   /* cached prefix for the prefix-cache test; 0: skip it */
    int reps;     /* repetitions, 1..CLI_BENCH_MAX_REPS */
    bool batch_invariant;
    realm_type type_k, type_v;  /* KV cache types */
    const realm_lora_set *sets; /* client i of a level uses sets[i % n_sets]; n_sets 0: none */
    int n_sets;
} cli_serve_opts;

/* Run the levels, then the prefix-cache test; print a table, or append
 * result objects to `results` when it is not NULL. Returns an exit status. */
int cli_bench_serve(const realm_model *m, const cli_serve_opts *o, json_t *results);

#endif
