/*
 * realm models — the models a registry knows: those pulled into the models
 * directory, and those named on the command line, one line each with their
 * size, parameters, tensor type mix and where they came from.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_files.h"
#include "realm/error.h"
#include "realm/registry.h"

#define CMD "models"

/* One model's columns. */
typedef struct models_row {
    char size[32], params[16], types[96];
    const char *source; /* borrowed from manifest */
    json_t *manifest;
    cli_model_summary sum;
    bool readable;
    char error[160];
} models_row;

static json_t *row_json(const realm_model_status *st, const models_row *row)
{
    json_t *types = json_array();
    for (int t = 0; t < REALM_TYPE_COUNT; t++)
        if (row->sum.type_bytes[t] > 0)
            json_array_append_new(types,
                                  json_pack("{s:s, s:I}", "type", realm_type_name((uint32_t)t),
                                            "bytes", (json_int_t)row->sum.type_bytes[t]));
    json_t *j =
        json_pack("{s:s, s:s, s:I, s:b, s:b, s:b}", "name", st->name, "path", st->path, "size",
                  (json_int_t)(row->readable ? row->sum.file_bytes : st->file_bytes), "pulled",
                  st->pulled, "loaded", st->loaded, "pinned", st->pinned);
    if (row->readable) {
        json_object_set_new(j, "parts", json_integer(row->sum.n_parts));
        json_object_set_new(j, "parameters", json_integer(row->sum.n_params));
        json_object_set_new(j, "tensor_bytes", json_integer((json_int_t)row->sum.tensor_bytes));
        json_object_set_new(j, "types", types);
    } else {
        json_decref(types);
        json_object_set_new(j, "error", json_string(row->error));
    }
    if (row->manifest != NULL) {
        const char *keys[] = {"source", "url", "sha256", "pulled_at"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            json_t *v = json_object_get(row->manifest, keys[k]);
            if (json_is_string(v))
                json_object_set(j, keys[k], v);
        }
    }
    return j;
}

static void print_table(const realm_model_status *st, const models_row *rows, int32_t n)
{
    int w_name = 4, w_size = 4, w_params = 6, w_types = 5;
    for (int32_t i = 0; i < n; i++) {
        int l = (int)strlen(st[i].name);
        w_name = l > w_name ? l : w_name;
        l = (int)strlen(rows[i].size);
        w_size = l > w_size ? l : w_size;
        l = (int)strlen(rows[i].params);
        w_params = l > w_params ? l : w_params;
        l = (int)strlen(rows[i].types);
        w_types = l > w_types ? l : w_types;
    }
    printf("%-*s  %-*s  %-*s  %-*s  %s\n", w_name, "NAME", w_size, "SIZE", w_params, "PARAMS",
           w_types, "TYPES", "SOURCE");
    for (int32_t i = 0; i < n; i++) {
        const models_row *r = &rows[i];
        const char *source = r->source ? r->source : st[i].pulled ? "-" : st[i].path;
        printf("%-*s  %-*s  %-*s  %-*s  %s\n", w_name, st[i].name, w_size, r->size, w_params,
               r->params, w_types, r->types, r->readable ? source : r->error);
    }
}

static int run_models(int argc, char **argv)
{
    const char *dir_opt = NULL;
    bool json = false;
    const char **adds = calloc((size_t)argc, sizeof *adds); /* -m NAME=PATH and PATHs */
    int n_adds = 0;
    if (adds == NULL)
        return cli_error(CMD, "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--models-dir") || !strcmp(a, "-m")) {
            if (v == NULL) {
                free(adds);
                return cli_error(CMD, "option %s needs a value", a);
            }
            if (a[1] == 'm')
                adds[n_adds++] = v;
            else
                dir_opt = v;
            i++;
        } else if (a[0] == '-' && a[1] != '\0') {
            free(adds);
            return cli_error(CMD, "unknown option '%s' (see 'realm help models')", a);
        } else {
            adds[n_adds++] = a;
        }
    }
    char dir[4096];
    realm_registry *reg = NULL;
    realm_registry_params p;
    realm_registry_params_init(&p);
    p.n_threads = 1; /* nothing is loaded: the registry only lists */
    p.mem_budget = 1;
    p.models_dir = dir;
    if (!cli_models_dir(CMD, dir_opt, dir, sizeof dir)) {
        free(adds);
        return 1;
    }
    if (realm_registry_new(&p, &reg) < 0) {
        free(adds);
        return cli_error(CMD, "%s", realm_last_error());
    }
    int rc = 0;
    for (int i = 0; i < n_adds && rc == 0; i++) {
        /* NAME=PATH, or a PATH registered under its file's name */
        const char *eq = strchr(adds[i], '=');
        char name[CLI_MODEL_NAME_MAX + 1] = "";
        if (eq != NULL && eq - adds[i] <= CLI_MODEL_NAME_MAX)
            snprintf(name, sizeof name, "%.*s", (int)(eq - adds[i]), adds[i]);
        const char *path = eq != NULL ? eq + 1 : adds[i];
        if (realm_registry_add(reg, name[0] ? name : NULL, path, NULL) < 0)
            rc = cli_error(CMD, "%s: %s", adds[i], realm_last_error());
    }
    free(adds);
    realm_model_status *st = NULL;
    int32_t n = 0;
    if (rc == 0 && realm_registry_list(reg, &st, &n) < 0)
        rc = cli_error(CMD, "%s", realm_last_error());
    models_row *rows = rc == 0 ? calloc((size_t)n + 1, sizeof *rows) : NULL;
    if (rc == 0 && rows == NULL)
        rc = cli_error(CMD, "out of memory");
    for (int32_t i = 0; rc == 0 && i < n; i++) {
        models_row *r = &rows[i];
        r->readable = cli_model_summarize(st[i].path, &r->sum);
        if (r->readable) {
            cli_format_bytes(r->sum.file_bytes, r->size, sizeof r->size);
            cli_format_count(r->sum.n_params, r->params, sizeof r->params);
            cli_format_type_mix(&r->sum, r->types, sizeof r->types);
        } else {
            snprintf(r->error, sizeof r->error, "unreadable: %s", realm_last_error());
            cli_format_bytes(st[i].file_bytes, r->size, sizeof r->size);
            snprintf(r->params, sizeof r->params, "?");
            snprintf(r->types, sizeof r->types, "?");
        }
        r->manifest = cli_manifest_for(st[i].path);
        r->source = r->manifest ? json_string_value(json_object_get(r->manifest, "source")) : NULL;
    }
    if (rc == 0 && json) {
        json_t *list = json_array();
        for (int32_t i = 0; i < n; i++)
            json_array_append_new(list, row_json(&st[i], &rows[i]));
        json_t *j = json_pack("{s:s, s:o}", "models_dir", dir, "models", list);
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
        putchar('\n');
        json_decref(j);
    } else if (rc == 0 && n == 0) {
        printf("no models in %s (add one with 'realm pull')\n", dir);
    } else if (rc == 0) {
        print_table(st, rows, n);
    }
    for (int32_t i = 0; rows != NULL && i < n; i++)
        json_decref(rows[i].manifest);
    free(rows);
    free(st);
    realm_registry_free(reg);
    if (rc == 0 && ferror(stdout))
        rc = cli_error(CMD, "error writing output");
    return rc;
}

const cli_command cli_cmd_models = {
    "models",
    run_models,
    "list the models: pulled ones and those named",
    "usage: realm models [--models-dir DIR] [-m NAME=MODEL.gguf]... [MODEL.gguf...] [--json]\n"
    "\n"
    "One line per model: its name, size on disk (every part of a split model),\n"
    "parameters, the tensor types' share of its bytes, and the source `realm pull`\n"
    "recorded in its manifest (NAME.json beside the file). The models are those in\n"
    "the models directory and those given: -m NAME=PATH, or a PATH, which is named\n"
    "after its file. Any of these names works where a model is asked for (realm run,\n"
    "realm show, realm rm for pulled ones).\n"
    "\n"
    "  --models-dir DIR  the models directory (default: $REALM_MODELS_DIR, else\n"
    "                    $XDG_CACHE_HOME/realm/models, else ~/.cache/realm/models)\n"
    "  --json            {\"models_dir\", \"models\": [{\"name\", \"path\", \"size\", \"parts\",\n"
    "                    \"parameters\", \"tensor_bytes\", \"types\": [{\"type\", \"bytes\"}],\n"
    "                    \"pulled\", \"loaded\", \"pinned\", \"source\", \"url\", \"sha256\",\n"
    "                    \"pulled_at\"}]} (the last four from the manifest, when there is one)\n",
};
