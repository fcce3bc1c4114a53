/* Shared pieces of the realm command-line program. */
#ifndef REALM_CLI_H
#define REALM_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "realm/quant.h"

typedef struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
    const char *summary;               /* one line for `realm --help` */
    const char *usage;                 /* full text for `realm help NAME` */
} cli_command;

extern const cli_command cli_cmd_info;
extern const cli_command cli_cmd_run;
extern const cli_command cli_cmd_bench;
extern const cli_command cli_cmd_quantize;
extern const cli_command cli_cmd_bench_kernels;
extern const cli_command cli_cmd_chat_template;
extern const cli_command cli_cmd_tokenize;
extern const cli_command cli_cmd_module;
/* The registry's models by name: realm models, show, rm (model_files.h), ps. */
extern const cli_command cli_cmd_models;
extern const cli_command cli_cmd_show;
extern const cli_command cli_cmd_rm;
extern const cli_command cli_cmd_ps;
/* realm tenant, key, usage: the data directory (cmd_tenants.c, realm/store.h). */
extern const cli_command cli_cmd_tenant;
extern const cli_command cli_cmd_key;
extern const cli_command cli_cmd_usage;
extern const cli_command cli_cmd_serve;

/* realm pull, and the models directory it fills (models_dir.c): a pulled model
 * is DIR/NAME.gguf with its manifest DIR/NAME.json. */
extern const cli_command cli_cmd_pull;
#define CLI_MODEL_NAME_MAX 128
/* The models directory into buf: opt (a --models-dir value) if not NULL, else
 * $REALM_MODELS_DIR, else $XDG_CACHE_HOME/realm/models, else
 * ~/.cache/realm/models. False, with a message for cmd, if there is none. */
bool cli_models_dir(const char *cmd, const char *opt, char *buf, int cap);
/* Create dir and its missing parents with mode 0700; false with a message. */
bool cli_models_dir_create(const char *cmd, const char *dir);
/* NULL if name is a valid model name ([A-Za-z0-9._-], not starting with '.',
 * 1..CLI_MODEL_NAME_MAX bytes), else what is wrong with it. */
const char *cli_model_name_problem(const char *name);

/* Print "realm CMD: message" to stderr; returns the exit status 1. */
int cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True if arg is -h or --help. */
bool cli_is_help(const char *arg);
/* Print the usage of cmd to stdout and return 0. */
int cli_print_usage(const cli_command *cmd);
/* Parse a positive integer option value; false (with a message) if invalid. */
bool cli_parse_int(const char *cmd, const char *opt, const char *val, long min, long max,
                   long *out);
/* KV cache types as --cache-type-k / --cache-type-v take them, by llama.cpp's
 * names: "f16", "q8_0" (cli_cache_types, NULL-terminated, for an ENUM
 * option), type cli_cache_type(i) for name i. */
extern const char *const cli_cache_types[];
realm_type cli_cache_type(int i);
/* Parse such a value of option opt; false if invalid (with a message) or
 * NULL (without: the caller says the value is missing). */
bool cli_parse_cache_type(const char *cmd, const char *opt, const char *val, realm_type *out);
/* "1.50 GiB" etc. into buf. */
const char *cli_format_bytes(uint64_t bytes, char *buf, int cap);

#endif
