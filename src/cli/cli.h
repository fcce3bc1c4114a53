/* Shared pieces of the realm command-line program. */
#ifndef REALM_CLI_H
#define REALM_CLI_H

#include <stdbool.h>
#include <stdint.h>

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

/* Print "realm CMD: message" to stderr; returns the exit status 1. */
int cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True if arg is -h or --help. */
bool cli_is_help(const char *arg);
/* Print the usage of cmd to stdout and return 0. */
int cli_print_usage(const cli_command *cmd);
/* Parse a positive integer option value; false (with a message) if invalid. */
bool cli_parse_int(const char *cmd, const char *opt, const char *val, long min, long max,
                   long *out);
/* "1.50 GiB" etc. into buf. */
const char *cli_format_bytes(uint64_t bytes, char *buf, int cap);

#endif
