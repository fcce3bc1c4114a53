/*
 * realm show — a model by name or path: where it came from (its manifest)
 * and what `realm info` says of its file.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "model_files.h"

#define CMD "show"

static void print_manifest(const char *name, const json_t *m)
{
    printf("model:    %s\n", name);
    if (m == NULL) {
        printf("manifest: none (not pulled with 'realm pull')\n\n");
        return;
    }
    static const char *const keys[][2] = {
        {"source", "source:   "}, {"url", "url:      "},       {"sha256", "sha256:   "},
        {"size", "size:     "},   {"pulled_at", "pulled:   "},
    };
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const json_t *v = json_object_get(m, keys[k][0]);
        if (json_is_string(v))
            printf("%s%s\n", keys[k][1], json_string_value(v));
        else if (json_is_integer(v))
            printf("%s%lld bytes\n", keys[k][1], (long long)json_integer_value(v));
    }
    const json_t *parts = json_object_get(m, "parts");
    if (json_is_array(parts))
        printf("parts:    %zu\n", json_array_size(parts));
    putchar('\n');
}

static int run_show(int argc, char **argv)
{
    const char *arg = NULL, *dir_opt = NULL;
    bool json = false, full = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "--full"))
            full = true;
        else if (!strcmp(argv[i], "--models-dir") && i + 1 < argc)
            dir_opt = argv[++i];
        else if (!strcmp(argv[i], "--models-dir"))
            return cli_error(CMD, "option --models-dir needs a value");
        else if (argv[i][0] == '-' && argv[i][1] != '\0')
            return cli_error(CMD, "unknown option '%s' (see 'realm help show')", argv[i]);
        else if (arg == NULL)
            arg = argv[i];
        else
            return cli_error(CMD, "unexpected argument '%s'", argv[i]);
    }
    if (arg == NULL)
        return cli_error(CMD, "missing NAME (see 'realm models') or MODEL.gguf");
    char path[4096], name[CLI_MODEL_NAME_MAX + 64];
    if (!cli_model_resolve(CMD, dir_opt, arg, path, sizeof path))
        return 1;
    cli_model_name_of_path(path, name, sizeof name);
    json_t *manifest = cli_manifest_for(path);
    int rc;
    if (json) {
        json_t *extra = json_pack("{s:s, s:O?}", "name", name, "manifest", manifest);
        rc = cli_info_print(CMD, path, true, full, extra);
        json_decref(extra);
    } else {
        print_manifest(name, manifest);
        rc = cli_info_print(CMD, path, false, full, NULL);
    }
    json_decref(manifest);
    return rc;
}

const cli_command cli_cmd_show = {
    "show",
    run_show,
    "describe a model by name: its manifest and `realm info`",
    "usage: realm show NAME|MODEL.gguf [--models-dir DIR] [--json] [--full]\n"
    "\n"
    "NAME is a pulled model (see 'realm models'); a path works too. Prints the\n"
    "model's name and, for a pulled model, its manifest (source, url, sha256, size,\n"
    "when it was pulled), then what 'realm info' prints for its file.\n"
    "\n"
    "  --models-dir DIR  the models directory (see 'realm help models')\n"
    "  --json            realm info's JSON object with \"name\" and \"manifest\" (null\n"
    "                    when there is none) added\n"
    "  --full            do not abbreviate long arrays and strings\n",
};
