/*
 * realm — command-line entry point. Each command lives in its own file
 * (cmd_*.c) and registers a cli_command; this file dispatches and prints help.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "realm/error.h"
#include "realm/kernels.h"

static const cli_command *const commands[] = {
    &cli_cmd_run,           &cli_cmd_bench,         &cli_cmd_info,     &cli_cmd_quantize,
    &cli_cmd_bench_kernels, &cli_cmd_chat_template, &cli_cmd_tokenize, &cli_cmd_module,
    &cli_cmd_pull, // one per line from here: the table stays clang-format stable
    &cli_cmd_models,        &cli_cmd_show,          &cli_cmd_rm,       &cli_cmd_ps,
    &cli_cmd_tenant,        &cli_cmd_key,           &cli_cmd_usage,    &cli_cmd_serve,
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

int cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "realm %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

bool cli_is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int cli_print_usage(const cli_command *cmd)
{
    fputs(cmd->usage, stdout);
    return 0;
}

const char *const cli_cache_types[] = {"f16", "q8_0", NULL};

realm_type cli_cache_type(int i)
{
    return i == 1 ? REALM_TYPE_Q8_0 : REALM_TYPE_F16;
}

bool cli_parse_cache_type(const char *cmd, const char *opt, const char *val, realm_type *out)
{
    if (val == NULL)
        return false;
    for (int i = 0; cli_cache_types[i]; i++)
        if (strcasecmp(val, cli_cache_types[i]) == 0) {
            *out = cli_cache_type(i);
            return true;
        }
    cli_error(cmd, "%s must be one of f16, q8_0, not '%s'", opt, val);
    return false;
}

bool cli_parse_int(const char *cmd, const char *opt, const char *val, long min, long max, long *out)
{
    char *end;
    if (val == NULL) {
        cli_error(cmd, "option %s needs a value", opt);
        return false;
    }
    long v = strtol(val, &end, 10);
    if (*val == '\0' || *end != '\0' || v < min || v > max) {
        cli_error(cmd, "option %s: '%s' is not an integer in %ld..%ld", opt, val, min, max);
        return false;
    }
    *out = v;
    return true;
}

const char *cli_format_bytes(uint64_t bytes, char *buf, int cap)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, (size_t)cap, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, (size_t)cap, "%.2f %s", v, units[u]);
    return buf;
}

static void print_help(FILE *f)
{
    fprintf(f,
            "realm %s — multi-tenant LLM inference server\n\n"
            "usage: realm COMMAND [ARGS...]\n\ncommands:\n",
            realm_version());
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-14s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(f, "  %-14s %s\n", "help COMMAND", "show the usage of a command");
    fprintf(f, "\noptions:\n  --version      print the version\n"
               "  --help         print this help\n");
}

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_help(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        const realm_kernels *k = realm_kernels_best();
        printf("realm %s (kernels: %s)\n", realm_version(), realm_isa_name(k->isa));
        return 0;
    }
    if (cli_is_help(name)) {
        print_help(stdout);
        return 0;
    }
    if (strcmp(name, "help") == 0) {
        if (argc < 3) {
            print_help(stdout);
            return 0;
        }
        const cli_command *cmd = find_command(argv[2]);
        if (cmd == NULL) {
            fprintf(stderr, "realm: no command '%s' (see 'realm --help')\n", argv[2]);
            return 2;
        }
        return cli_print_usage(cmd);
    }
    const cli_command *cmd = find_command(name);
    if (cmd == NULL) {
        fprintf(stderr, "realm: no command '%s' (see 'realm --help')\n", name);
        return 2;
    }
    for (int i = 2; i < argc; i++)
        if (cli_is_help(argv[i]))
            return cli_print_usage(cmd);
    return cmd->run(argc - 1, argv + 1);
}
