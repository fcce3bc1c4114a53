/*
 * realm info — describe a GGUF file: header, which part of a split model it
 * is, metadata (long arrays and long strings abbreviated unless --full),
 * tensor table, totals. --json prints the same as one JSON object for
 * machines.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_files.h"
#include "opts.h"
#include "realm/error.h"
#include "realm/gguf.h"

#define ARRAY_HEAD  8   /* elements shown of a long array */
#define STRING_HEAD 120 /* bytes shown of a long string */

/* Print s (len bytes) quoted, escaping control bytes; at most `max` bytes. */
static void print_str(const char *s, uint64_t len, uint64_t max)
{
    uint64_t n = len < max ? len : max;
    putchar('"');
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
    if (n < len)
        printf("... (%" PRIu64 " bytes)", len);
}

/* Print one scalar of type t from its little-endian bytes. */
static void print_scalar(realm_gguf_type t, const void *p)
{
    realm_gguf_value v;
    memcpy(&v, p, realm_gguf_type_size(t));
    switch (t) {
    case REALM_GGUF_UINT8:
        printf("%u", v.u8);
        break;
    case REALM_GGUF_INT8:
        printf("%d", v.i8);
        break;
    case REALM_GGUF_UINT16:
        printf("%u", v.u16);
        break;
    case REALM_GGUF_INT16:
        printf("%d", v.i16);
        break;
    case REALM_GGUF_UINT32:
        printf("%" PRIu32, v.u32);
        break;
    case REALM_GGUF_INT32:
        printf("%" PRId32, v.i32);
        break;
    case REALM_GGUF_UINT64:
        printf("%" PRIu64, v.u64);
        break;
    case REALM_GGUF_INT64:
        printf("%" PRId64, v.i64);
        break;
    case REALM_GGUF_FLOAT32:
        printf("%.9g", v.f32);
        break;
    case REALM_GGUF_FLOAT64:
        printf("%.17g", v.f64);
        break;
    case REALM_GGUF_BOOL:
        fputs(v.u8 ? "true" : "false", stdout);
        break;
    default:
        fputs("?", stdout);
    }
}

/* A JSON value for one scalar. */
static json_t *json_scalar(realm_gguf_type t, const void *p)
{
    realm_gguf_value v;
    memcpy(&v, p, realm_gguf_type_size(t));
    switch (t) {
    case REALM_GGUF_UINT8:
        return json_integer(v.u8);
    case REALM_GGUF_INT8:
        return json_integer(v.i8);
    case REALM_GGUF_UINT16:
        return json_integer(v.u16);
    case REALM_GGUF_INT16:
        return json_integer(v.i16);
    case REALM_GGUF_UINT32:
        return json_integer(v.u32);
    case REALM_GGUF_INT32:
        return json_integer(v.i32);
    case REALM_GGUF_UINT64: /* beyond int64: as a decimal string */
        if (v.u64 > INT64_MAX) {
            char buf[32];
            snprintf(buf, sizeof buf, "%" PRIu64, v.u64);
            return json_string(buf);
        }
        return json_integer((json_int_t)v.u64);
    case REALM_GGUF_INT64:
        return json_integer(v.i64);
    case REALM_GGUF_FLOAT32:
        return json_real(v.f32);
    case REALM_GGUF_FLOAT64:
        return json_real(v.f64);
    case REALM_GGUF_BOOL:
        return json_boolean(v.u8);
    default:
        return json_null();
    }
}

/* A JSON string from file bytes; invalid UTF-8 bytes become U+FFFD. */
static json_t *json_bytes(realm_gguf_str s)
{
    json_t *j = json_stringn(s.data, s.len);
    if (j)
        return j;
    char *buf = malloc(s.len * 3 + 1);
    if (buf == NULL)
        return json_null();
    size_t o = 0;
    for (uint64_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.data[i];
        if (c < 0x80) {
            buf[o++] = (char)c;
            continue;
        }
        int n = c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
        json_t *probe = n && i + n <= s.len ? json_stringn(s.data + i, (size_t)n) : NULL;
        if (probe) {
            json_decref(probe);
            memcpy(buf + o, s.data + i, (size_t)n);
            o += (size_t)n;
            i += (uint64_t)n - 1;
        } else {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3;
        }
    }
    j = json_stringn(buf, o);
    free(buf);
    return j ? j : json_null();
}

static void print_shape(const realm_gguf_tensor *t, char *buf, size_t cap)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (uint32_t d = 0; d < t->n_dims && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, d ? ", " : "", t->ne[d]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

/*
 * For a part of a split model (realm/gguf.h, "split models"): which part it
 * is, and with --full every part's path, size and tensor count (a missing or
 * bad part says why). Nothing for a whole file.
 */
static void print_split(const realm_gguf *g, const char *path, bool full)
{
    realm_gguf_split s;
    if (realm_gguf_split_info(g, &s) < 0) {
        printf("split:    malformed split keys: %s\n", realm_last_error());
        return;
    }
    if (s.count == 1)
        return;
    printf("split:    part %d of %d of a split model", (int)s.no + 1, (int)s.count);
    if (s.n_tensors >= 0)
        printf(", %" PRId64 " tensors in all", s.n_tensors);
    int32_t name_no, name_count;
    const bool named = realm_gguf_split_parse_path(path, &name_no, &name_count) == REALM_OK &&
                       name_no == s.no && name_count == s.count;
    if (!named) {
        printf("; the file name does not end in -%05d-of-%05d.gguf, so the other parts "
               "cannot be found\n",
               (int)s.no + 1, (int)s.count);
        return;
    }
    printf("%s\n", full ? "" : " (--full lists the parts)");
    if (!full)
        return;
    const size_t cap = strlen(path) + 1;
    char *part = malloc(cap);
    for (int32_t i = 0; part != NULL && i < s.count; i++) {
        realm_gguf_split_path(path, i, part, cap);
        realm_gguf *pg = NULL;
        char b[32];
        if (i != s.no && realm_gguf_open(part, &pg) < 0) {
            printf("  part %d: %s (%s)\n", (int)i + 1, part, realm_last_error());
            continue;
        }
        const realm_gguf *pi = pg ? pg : g;
        printf("  part %d: %s (%s, %" PRId64 " tensor%s)\n", (int)i + 1, part,
               cli_format_bytes(realm_gguf_file_size(pi), b, sizeof b), realm_gguf_n_tensors(pi),
               realm_gguf_n_tensors(pi) == 1 ? "" : "s");
        realm_gguf_close(pg);
    }
    free(part);
}

static void print_text(const realm_gguf *g, const char *path, bool full)
{
    char b1[32], b2[32];
    printf("file:     %s (%s)\n", path, cli_format_bytes(realm_gguf_file_size(g), b1, sizeof b1));
    printf("format:   GGUF v%u, alignment %" PRIu64 ", tensor data at offset %" PRIu64 "\n",
           realm_gguf_version(g), realm_gguf_alignment(g), realm_gguf_data_offset(g));
    print_split(g, path, full);

    int64_t n_kv = realm_gguf_n_kv(g);
    printf("\nmetadata (%" PRId64 " entries):\n", n_kv);
    for (int64_t i = 0; i < n_kv; i++) {
        realm_gguf_type t = realm_gguf_kv_type(g, i);
        printf("  %-40s ", realm_gguf_kv_key(g, i));
        if (t == REALM_GGUF_ARRAY) {
            realm_gguf_type et = realm_gguf_kv_arr_type(g, i);
            uint64_t n = realm_gguf_kv_arr_n(g, i);
            char tn[48];
            snprintf(tn, sizeof tn, "[%s; %" PRIu64 "]", realm_gguf_type_name(et), n);
            printf("%-16s [", tn);
            uint64_t show = full || n <= ARRAY_HEAD ? n : ARRAY_HEAD;
            const uint8_t *data = realm_gguf_kv_arr_data(g, i);
            for (uint64_t j = 0; j < show; j++) {
                if (j)
                    fputs(", ", stdout);
                if (et == REALM_GGUF_STRING) {
                    realm_gguf_str s = realm_gguf_kv_arr_str(g, i, j);
                    print_str(s.data, s.len, full ? UINT64_MAX : STRING_HEAD);
                } else {
                    print_scalar(et, data + j * realm_gguf_type_size(et));
                }
            }
            printf("%s]\n", show < n ? ", ..." : "");
        } else if (t == REALM_GGUF_STRING) {
            realm_gguf_str s = realm_gguf_kv_str(g, i);
            printf("%-16s ", "string");
            print_str(s.data, s.len, full ? UINT64_MAX : STRING_HEAD);
            putchar('\n');
        } else {
            printf("%-16s ", realm_gguf_type_name(t));
            print_scalar(t, realm_gguf_kv_scalar(g, i));
            putchar('\n');
        }
    }

    int64_t n_t = realm_gguf_n_tensors(g);
    uint64_t bytes_by_type[REALM_TYPE_COUNT] = {0};
    int64_t count_by_type[REALM_TYPE_COUNT] = {0};
    uint64_t total_bytes = 0;
    int64_t total_params = 0;
    printf("\ntensors (%" PRId64 "):\n  %-36s %-22s %-8s %12s\n", n_t, "name", "shape", "type",
           "bytes");
    for (int64_t i = 0; i < n_t; i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        char shape[96];
        print_shape(t, shape, sizeof shape);
        printf("  %-36s %-22s %-8s %12" PRIu64 "\n", t->name, shape, realm_type_name(t->type),
               t->nbytes);
        bytes_by_type[t->type] += t->nbytes;
        count_by_type[t->type]++;
        total_bytes += t->nbytes;
        total_params += realm_gguf_tensor_nelements(t);
    }
    printf("\ntotals:   %" PRId64 " tensors, %" PRId64 " parameters (%.2f M), %s of tensor data\n",
           n_t, total_params, (double)total_params / 1e6,
           cli_format_bytes(total_bytes, b2, sizeof b2));
    printf("by type: ");
    for (int t = 0; t < REALM_TYPE_COUNT; t++)
        if (count_by_type[t])
            printf(" %s x%" PRId64 " (%s)", realm_type_name((uint32_t)t), count_by_type[t],
                   cli_format_bytes(bytes_by_type[t], b1, sizeof b1));
    putchar('\n');
}

static json_t *info_json(const realm_gguf *g, const char *path, bool full)
{
    json_t *meta = json_array();
    int64_t n_kv = realm_gguf_n_kv(g);
    for (int64_t i = 0; i < n_kv; i++) {
        realm_gguf_type t = realm_gguf_kv_type(g, i);
        json_t *kv = json_pack("{s:s, s:s}", "key", realm_gguf_kv_key(g, i), "type",
                               realm_gguf_type_name(t));
        if (t == REALM_GGUF_ARRAY) {
            realm_gguf_type et = realm_gguf_kv_arr_type(g, i);
            uint64_t n = realm_gguf_kv_arr_n(g, i);
            uint64_t show = full || n <= ARRAY_HEAD ? n : ARRAY_HEAD;
            const uint8_t *data = realm_gguf_kv_arr_data(g, i);
            json_t *arr = json_array();
            for (uint64_t j = 0; j < show; j++)
                json_array_append_new(arr,
                                      et == REALM_GGUF_STRING
                                          ? json_bytes(realm_gguf_kv_arr_str(g, i, j))
                                          : json_scalar(et, data + j * realm_gguf_type_size(et)));
            json_object_set_new(kv, "elem_type", json_string(realm_gguf_type_name(et)));
            json_object_set_new(kv, "n", json_integer((json_int_t)n));
            json_object_set_new(kv, "value", arr);
            json_object_set_new(kv, "truncated", json_boolean(show < n));
        } else if (t == REALM_GGUF_STRING) {
            json_object_set_new(kv, "value", json_bytes(realm_gguf_kv_str(g, i)));
        } else {
            json_object_set_new(kv, "value", json_scalar(t, realm_gguf_kv_scalar(g, i)));
        }
        json_array_append_new(meta, kv);
    }
    json_t *tensors = json_array();
    int64_t n_t = realm_gguf_n_tensors(g);
    uint64_t total_bytes = 0;
    int64_t total_params = 0;
    for (int64_t i = 0; i < n_t; i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        json_t *shape = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++)
            json_array_append_new(shape, json_integer(t->ne[d]));
        json_array_append_new(tensors,
                              json_pack("{s:s, s:o, s:s, s:I, s:I}", "name", t->name, "shape",
                                        shape, "type", realm_type_name(t->type), "offset",
                                        (json_int_t)t->offset, "bytes", (json_int_t)t->nbytes));
        total_bytes += t->nbytes;
        total_params += realm_gguf_tensor_nelements(t);
    }
    json_t *j =
        json_pack("{s:s, s:I, s:i, s:I, s:I, s:o, s:o, s:I, s:I}", "file", path, "file_size",
                  (json_int_t)realm_gguf_file_size(g), "version", (int)realm_gguf_version(g),
                  "alignment", (json_int_t)realm_gguf_alignment(g), "data_offset",
                  (json_int_t)realm_gguf_data_offset(g), "metadata", meta, "tensors", tensors,
                  "n_params", (json_int_t)total_params, "tensor_bytes", (json_int_t)total_bytes);
    /* A part of a split model: "split": {no (1-based), count, tensors, parts}. */
    realm_gguf_split s;
    if (j != NULL && realm_gguf_split_info(g, &s) == REALM_OK && s.count > 1) {
        json_t *parts = json_array();
        const size_t cap = strlen(path) + 1;
        char *part = malloc(cap);
        for (int32_t i = 0; part != NULL && i < s.count; i++)
            if (realm_gguf_split_path(path, i, part, cap) == REALM_OK)
                json_array_append_new(parts, json_string(part));
        free(part);
        json_object_set_new(
            j, "split",
            json_pack("{s:i, s:i, s:o, s:o}", "no", (int)s.no + 1, "count", (int)s.count, "tensors",
                      s.n_tensors >= 0 ? json_integer((json_int_t)s.n_tensors) : json_null(),
                      "parts", parts));
    }
    return j;
}

typedef struct info_cfg {
    bool json, full;
} info_cfg;

/* Per invocation: no environment variables. */
static const cli_opt info_opts[] = {
    {"json", 0, CLI_OPT_FLAG, NULL, NULL,
     "one JSON object instead of text (with \"split\" for a part)", offsetof(info_cfg, json),
     .env = false},
    {"full", 0, CLI_OPT_FLAG, NULL, NULL,
     "do not abbreviate long arrays and strings; list a split's parts", offsetof(info_cfg, full),
     .env = false},
};

static int run_info(int argc, char **argv)
{
    info_cfg cfg = {0};
    cli_args args;
    int rc = cli_opts_parse("info", info_opts, CLI_OPTS_N(info_opts), argc, argv, &cfg, &args);
    if (rc != 0)
        return rc == 2 ? 0 : rc;
    if (args.n > 1)
        return cli_error("info", "unexpected argument '%s'", args.v[1]);
    if (args.n == 0)
        return cli_error("info", "missing MODEL.gguf (see 'realm help info')");
    return cli_info_print("info", args.v[0], cfg.json, cfg.full, NULL);
}

int cli_info_print(const char *cmd, const char *path, bool json, bool full, json_t *extra)
{
    realm_gguf *g;
    int rc = realm_gguf_open(path, &g);
    if (rc < 0)
        return cli_error(cmd, "%s", realm_last_error());
    if (json) {
        json_t *j = info_json(g, path, full);
        if (extra != NULL)
            json_object_update(j, extra);
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
        putchar('\n');
        json_decref(j);
    } else {
        print_text(g, path, full);
    }
    realm_gguf_close(g);
    return ferror(stdout) ? cli_error(cmd, "error writing output") : 0;
}

static const char usage_head[] =
    "usage: realm info MODEL.gguf [--json] [--full]\n"
    "\n"
    "Prints the file's GGUF version and alignment, every metadata entry (arrays\n"
    "longer than 8 elements and strings longer than 120 bytes abbreviated), a table\n"
    "of tensors (name, shape in GGUF order, type, bytes), and totals with the\n"
    "parameter count. For one part of a split model (NAME-00002-of-00003.gguf, as\n"
    "gguf-split writes) it says which part it is; the tensors are this part's.\n";
static char usage[2048];

/* main prints the usage before any command runs: build it before main. */
__attribute__((constructor)) static void make_usage(void)
{
    cli_opts_usage(usage, sizeof usage, usage_head, info_opts, CLI_OPTS_N(info_opts));
}

const cli_command cli_cmd_info = {
    "info",
    run_info,
    "describe a GGUF file: metadata, tensors, totals",
    usage,
};
