/*
 * LoRA adapters on the command line (lora_args.c): realm run's --lora
 * FILE[:SCALE] and --lora-scaled FILE SCALE (llama.cpp's spellings), and
 * realm bench's --lora and --lora-per-stream.
 */
#ifndef REALM_CLI_LORA_ARGS_H
#define REALM_CLI_LORA_ARGS_H

#include <stdbool.h>

#include "realm/lora.h"

#define CLI_LORA_MAX 16 /* adapters named on one command line */

typedef struct cli_lora_args {
    int n;
    char path[CLI_LORA_MAX][4096]; /* "" for none (--lora-per-stream's "none") */
    float scale[CLI_LORA_MAX];
} cli_lora_args;

/*
 * Add "FILE[:SCALE]" (the scale after the last ':' when it is a number,
 * else 1; "none" is no adapter when allow_none). False, after a message
 * "realm CMD: OPT ...", when it is malformed or there are too many.
 */
bool cli_lora_parse(const char *cmd, const char *opt, const char *val, bool allow_none,
                    cli_lora_args *a);
/* Add FILE with the scale given apart (--lora-scaled FILE SCALE). */
bool cli_lora_add(const char *cmd, const char *opt, const char *path, const char *scale,
                  cli_lora_args *a);
/*
 * Add a comma-separated list of FILE[:SCALE] (llama.cpp's --lora A,B and
 * --lora-scaled A:0.5,B:1); with need_scale every item must have one.
 */
bool cli_lora_parse_list(const char *cmd, const char *opt, const char *val, bool need_scale,
                         bool allow_none, cli_lora_args *a);
/* Whether val (the first item of a list) ends in ":NUMBER": FILE:SCALE. */
bool cli_lora_has_scale(const char *val);

/*
 * Load every adapter of a for m: out[i] is adapter i (NULL for "none").
 * False, after a message naming the file, with nothing left loaded.
 */
bool cli_lora_load(const char *cmd, const realm_model *m, const cli_lora_args *a, realm_lora **out);
void cli_lora_free(realm_lora **ls, int n);

/* "a.gguf x1, b.gguf x0.5 (rank 16, 12.3 MiB)" of adapters i in [0, n) into buf. */
const char *cli_lora_describe(const cli_lora_args *a, realm_lora *const *ls, char *buf, int cap);

#endif
