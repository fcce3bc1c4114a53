/*
 * The options of realm.generate: one declarative table (options.c) used to
 * parse them, to answer errors that name the option at fault, and to write
 * the options section of docs/host-abi.md (checked by a test).
 */
#ifndef REALM_SANDBOX_OPTIONS_INTERNAL_H
#define REALM_SANDBOX_OPTIONS_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "realm/chat.h"
#include "realm/engine.h"

#define REALM__MAX_STOP       8     /* stop strings per request */
#define REALM__MAX_LORA       8     /* entries of "lora" (REALM_LORA_MAX_SET) */
#define REALM__LORA_SCALE_MAX 100.0 /* |scale| of an adapter at most */

/* Parsed options. Strings point into `root`, which the struct keeps alive;
 * realm__gen_opts_free releases everything. */
typedef struct realm__gen_opts {
    json_t *root;
    realm_gen_options gen; /* engine options; gen.stop points at stops */
    const char *stops[REALM__MAX_STOP];
    realm_logit_bias *bias;
    realm_chat_message *msgs; /* NULL: a raw prompt */
    size_t n_msgs;
    char **joined; /* contents joined from text parts, one per message (or NULL) */
    const char *prompt;
    size_t prompt_len;
    const char *chat_template; /* NULL: the model's */
    bool parse_special;
    bool has_max_tokens; /* the request set a limit */
    int n_top;           /* alternatives per token; -1: no log-probabilities */
    int32_t n_choices;   /* OpenAI's "n", 1..8 */
    bool has_keep_alive; /* the request set how long the model stays loaded when idle */
    double keep_alive_s;
    const char *adapter; /* a LoRA adapter by name (NUL-terminated), or NULL */
    float adapter_scale; /* of `adapter`, else of the adapter the model was opened as */
    bool has_adapter_scale;
    int32_t n_lora; /* llama-server's "lora": adapters by id with their scales */
    int64_t lora_id[REALM__MAX_LORA];
    float lora_scale[REALM__MAX_LORA];
} realm__gen_opts;

/* Why options were refused: a realm/error.h code (REALM_ERR_INVAL for a
 * wrong type or value, REALM_ERR_UNSUPPORTED for what Realm does not do
 * yet), the option at fault as OpenAI's `param` field spells it
 * ("temperature", "messages[1].content"), and a message naming it. */
typedef struct realm__opt_error {
    int code;
    char param[64];
    char message[320];
} realm__opt_error;

/*
 * Parse json[0..len) (an object) against the table. n_vocab bounds
 * logit_bias ids. Unknown keys are ignored (an OpenAI body passes through);
 * a JSON null counts as absent. Returns 0, or a negative code with *err
 * filled (and *o left empty).
 */
int realm__gen_opts_parse(const char *json, size_t len, int32_t n_vocab, realm__gen_opts *o,
                          realm__opt_error *err);
void realm__gen_opts_free(realm__gen_opts *o);

/* The options table as the Markdown table of docs/host-abi.md (a malloc'ed
 * string the caller frees; NULL when out of memory). */
char *realm__gen_opts_markdown(void);

#endif
