/*
 * Models named on the command line, and what the commands that list, show
 * and remove them read from a model's files (model_files.c).
 *
 * A model argument is an existing file's path, else the name of a pulled
 * model: DIR/NAME.gguf, or the first part DIR/NAME-00001-of-0000N.gguf of a
 * split one, in the models directory (cli_models_dir), with its manifest
 * DIR/NAME.json beside it when `realm pull` put it there.
 */
#ifndef REALM_CLI_MODEL_FILES_H
#define REALM_CLI_MODEL_FILES_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "realm/quant.h"

/*
 * The file of the model `arg` into path[0..cap): arg itself if it exists,
 * else the pulled model named arg in the models directory (dir_opt as
 * --models-dir gives it, NULL for the default). False, with a message for
 * cmd naming arg and the directory, when there is neither.
 */
bool cli_model_resolve(const char *cmd, const char *dir_opt, const char *arg, char *path, int cap);

/* The manifest beside the model file path (DIR/NAME.json for DIR/NAME.gguf
 * or DIR/NAME-0000i-of-0000N.gguf), or NULL when there is none or it is not
 * a JSON object. The caller json_decref's it. */
json_t *cli_manifest_for(const char *path);

/* The name a model file goes by: its base name without ".gguf" and without
 * a split part's "-0000i-of-0000N", into buf. */
const char *cli_model_name_of_path(const char *path, char *buf, int cap);

/* What a model's tensors hold, over every part of a split model. */
typedef struct cli_model_summary {
    int32_t n_parts;
    uint64_t file_bytes;                   /* all parts */
    int64_t n_params;                      /* tensor elements */
    uint64_t tensor_bytes;                 /* tensor data */
    uint64_t type_bytes[REALM_TYPE_COUNT]; /* tensor data by type */
} cli_model_summary;

/* Open path (and, for a part of a split model, its sibling parts) and sum its
 * tensors. False with realm_last_error() set when a file cannot be read. */
bool cli_model_summarize(const char *path, cli_model_summary *out);

/* A parameter count as "293K", "1.1B", "70B" into buf. */
const char *cli_format_count(int64_t n, char *buf, int cap);

/* The type mix by bytes, largest first, "Q4_K 62%, F32 30%, Q6_K 8%": at
 * most three types, the rest as "other N%". */
const char *cli_format_type_mix(const cli_model_summary *s, char *buf, int cap);

/* realm info's output for the file at path (cmd_info.c): text, or with json
 * one object to which extra's members (if not NULL) are added. Returns the
 * exit status; errors are reported for cmd. */
int cli_info_print(const char *cmd, const char *path, bool json, bool full, json_t *extra);

#endif
