/*
 * realm chat-template — render an OpenAI-style conversation read from stdin
 * with a model's chat template (realm/chat.h) and print the prompt exactly,
 * with no newline added.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "opts.h"
#include "realm/chat.h"
#include "realm/error.h"
#include "realm/gguf.h"

#define CMD "chat-template"

/*
 * Turn the JSON input into messages: either an array of {"role", "content"}
 * or an object {"messages": [...], "add_generation_prompt": bool} (other keys
 * of the object and of each message are ignored, so a whole chat-completion
 * request can be piped in). add_generation_prompt defaults to true. Message
 * strings point into root. Returns false after printing an error naming the
 * offending field.
 */
static bool parse_messages(json_t *root, realm_chat_message **out, size_t *n, bool *gen)
{
    json_t *msgs = root;
    *gen = true;
    if (json_is_object(root)) {
        msgs = json_object_get(root, "messages");
        if (msgs == NULL) {
            cli_error(CMD, "input: missing \"messages\"");
            return false;
        }
        json_t *g = json_object_get(root, "add_generation_prompt");
        if (g != NULL && !json_is_boolean(g)) {
            cli_error(CMD, "input: \"add_generation_prompt\" must be true or false");
            return false;
        }
        if (g != NULL)
            *gen = json_is_true(g);
    } else if (!json_is_array(root)) {
        cli_error(CMD, "input must be a JSON array of messages or an object with \"messages\"");
        return false;
    }
    if (!json_is_array(msgs)) {
        cli_error(CMD, "input: \"messages\" must be an array");
        return false;
    }
    *n = json_array_size(msgs);
    *out = calloc(*n ? *n : 1, sizeof **out);
    if (*out == NULL) {
        cli_error(CMD, "out of memory");
        return false;
    }
    for (size_t i = 0; i < *n; i++) {
        json_t *m = json_array_get(msgs, i);
        if (!json_is_object(m)) {
            cli_error(CMD, "messages[%zu]: expected an object with \"role\" and \"content\"", i);
            return false;
        }
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_string(role)) {
            cli_error(CMD, "messages[%zu].role: %s", i, role ? "must be a string" : "missing");
            return false;
        }
        if (realm_chat_role_from_name(json_string_value(role), &(*out)[i].role) < 0) {
            cli_error(CMD, "messages[%zu].role: %s", i, realm_last_error());
            return false;
        }
        if (json_is_array(content)) {
            cli_error(CMD,
                      "messages[%zu].content: arrays of content parts are not supported; "
                      "pass a string",
                      i);
            return false;
        }
        if (!json_is_string(content)) {
            cli_error(CMD, "messages[%zu].content: %s", i,
                      content ? "must be a string" : "missing");
            return false;
        }
        const char *s = json_string_value(content);
        if (strlen(s) != json_string_length(content)) {
            cli_error(CMD, "messages[%zu].content: contains a NUL character", i);
            return false;
        }
        (*out)[i].content = s;
    }
    return true;
}

/* Choose the template (and the model's BOS/EOS texts, when there is a model).
 * bos/eos stay "" when unknown, which means the template's defaults. */
static bool choose_template(const char *model, const char *name, realm_chat_template *t, char *bos,
                            char *eos, size_t cap)
{
    bos[0] = eos[0] = '\0';
    if (model == NULL) {
        if (realm_chat_template_from_name(name, t) < 0) {
            cli_error(CMD, "%s", realm_last_error());
            return false;
        }
        return true;
    }
    realm_gguf *g;
    if (realm_gguf_open(model, &g) < 0) {
        cli_error(CMD, "%s: %s", model, realm_last_error());
        return false;
    }
    bool ok = true;
    if (realm_chat_template_for_model(g, name, t) < 0) {
        ok = false;
        if (name)
            cli_error(CMD, "%s", realm_last_error());
        else
            cli_error(CMD, "%s: %s (override with --template NAME)", model, realm_last_error());
    } else if (realm_chat_special_texts(g, bos, cap, eos, cap) < 0) {
        ok = false;
        cli_error(CMD, "%s: %s", model, realm_last_error());
    }
    realm_gguf_close(g);
    return ok;
}

typedef struct chat_template_cfg {
    const char *model, *name;
    bool detect, list;
} chat_template_cfg;

/* Per invocation: no environment variables. */
static const cli_opt chat_template_opts[] = {
    {"model", 'm', CLI_OPT_STRING, "PATH", NULL, "the model (its template and BOS/EOS token texts)",
     offsetof(chat_template_cfg, model), .env = false},
    {"template", 't', CLI_OPT_STRING, "NAME", NULL,
     "use this template instead of the model's; without -m, the template's usual BOS/EOS "
     "texts are used",
     offsetof(chat_template_cfg, name), .env = false},
    {"detect", 0, CLI_OPT_FLAG, NULL, NULL, "print the template's name and exit",
     offsetof(chat_template_cfg, detect), .env = false},
    {"list", 0, CLI_OPT_FLAG, NULL, NULL, "print the names of the templates Realm knows",
     offsetof(chat_template_cfg, list), .env = false},
};

static int run_chat_template(int argc, char **argv)
{
    chat_template_cfg cfg = {0};
    int rc = cli_opts_parse(CMD, chat_template_opts, CLI_OPTS_N(chat_template_opts), argc, argv,
                            &cfg, NULL);
    if (rc != 0)
        return rc == 2 ? 0 : rc;
    if (cfg.list) {
        printf("%s\n", realm_chat_template_names());
        return 0;
    }
    const char *model = cfg.model, *name = cfg.name;
    const bool detect_only = cfg.detect;
    if (model == NULL && name == NULL)
        return cli_error(CMD, "need -m MODEL.gguf or --template NAME (see 'realm help " CMD "')");

    realm_chat_template t;
    char bos[256], eos[256];
    if (!choose_template(model, name, &t, bos, eos, sizeof bos))
        return 1;
    if (detect_only) {
        printf("%s\n", realm_chat_template_name(t));
        return 0;
    }

    json_error_t jerr;
    json_t *root = json_loadf(stdin, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root == NULL)
        return cli_error(CMD, "stdin:%d:%d (byte %d): invalid JSON: %s", jerr.line, jerr.column,
                         jerr.position, jerr.text);
    realm_chat_message *msgs = NULL;
    size_t n = 0;
    bool gen;
    int status = 1;
    if (parse_messages(root, &msgs, &n, &gen)) {
        char *prompt;
        size_t len;
        if (realm_chat_render_alloc(t, msgs, n, gen, bos[0] ? bos : NULL, eos[0] ? eos : NULL,
                                    &prompt, &len) < 0) {
            cli_error(CMD, "%s", realm_last_error());
        } else {
            fwrite(prompt, 1, len, stdout);
            free(prompt);
            status =
                fflush(stdout) != 0 || ferror(stdout) ? cli_error(CMD, "error writing output") : 0;
        }
    }
    free(msgs);
    json_decref(root);
    return status;
}

static const char usage_head[] =
    "usage: realm chat-template -m MODEL.gguf [--template NAME] < messages.json\n"
    "       realm chat-template --template NAME < messages.json\n"
    "       realm chat-template -m MODEL.gguf [--template NAME] --detect\n"
    "       realm chat-template --list\n"
    "\n"
    "Reads an OpenAI-style conversation from stdin, either an array of messages\n"
    "  [{\"role\": \"system\", \"content\": \"...\"}, {\"role\": \"user\", ...}]\n"
    "or an object {\"messages\": [...], \"add_generation_prompt\": true} (other keys\n"
    "are ignored), and prints the prompt the model's chat template makes of it,\n"
    "exactly, without a trailing newline. Roles are system, user and assistant;\n"
    "add_generation_prompt (default true) ends the prompt with the assistant's\n"
    "header. The template is recognised from the model's tokenizer.chat_template;\n"
    "the prompt does not start with BOS (the tokenizer adds it).\n";
static char usage[4096];

/* main prints the usage before any command runs: build it before main. */
__attribute__((constructor)) static void make_usage(void)
{
    cli_opts_usage(usage, sizeof usage, usage_head, chat_template_opts,
                   CLI_OPTS_N(chat_template_opts));
}

const cli_command cli_cmd_chat_template = {
    CMD,
    run_chat_template,
    "render a chat conversation (JSON on stdin) with a model's template",
    usage,
};
