/* realm bench: speculative decoding measured through the engine (bench_spec.c). */
#ifndef REALM_CLI_BENCH_SPEC_H
#define REALM_CLI_BENCH_SPEC_H

#include <jansson.h>

#include "realm/model.h"

typedef struct cli_spec_opts {
    const realm_model *draft; /* the draft model, or NULL for prompt lookup */
    const char *prompt;       /* text, tokenized with the model's tokenizer */
    const int *streams;       /* stream counts */
    int n_streams;
    int ntg;           /* generated tokens of each stream */
    int draft_max;     /* K */
    float temperature; /* 0: greedy; else stream i samples with seed i + 1 */
    int threads;       /* 0: one per CPU */
    int reps;          /* repetitions of each figure */
    bool batch_invariant;
} cli_spec_opts;

/* For each stream count, generation (greedy, or seeded sampling) of ntg tokens by that many
 * streams at once, without and with speculation (alternating, reps times):
 * end-to-end tokens/s and the acceptance rate. Prints a table, or appends
 * result objects to `results` when it is not NULL. Returns an exit status. */
int cli_bench_spec(const realm_model *m, const cli_spec_opts *o, json_t *results);

#endif
