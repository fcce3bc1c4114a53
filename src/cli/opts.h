/*
 * Declarative command-line options: a command describes its settings in one
 * table of cli_opt, and cli_opts_parse fills a config struct from it; the same
 * table prints the option list of the command's help (cli_opts_help,
 * cli_opts_usage).
 *
 * Where a value comes from, the later winning:
 *   1. the table's default (text, parsed like a command-line value), or what
 *      the caller put in the struct when the default is NULL;
 *   2. the environment variable REALM_<NAME> (the long name upper-cased, '-'
 *      as '_': --data-dir -> REALM_DATA_DIR), only for options with .env set.
 *      An empty variable counts as unset; a variable whose option is on the
 *      command line is not read at all (a malformed one does not matter);
 *   3. the command line.
 * Lists (STRING_LIST, INT_LIST) are comma-separated in defaults and variables.
 *
 * Command-line syntax:
 *   --name VALUE, --name=VALUE, -x VALUE  an option that takes a value; the
 *                                         next argument is the value even if
 *                                         it starts with '-' (--slice -1)
 *   --name, -x                            FLAG sets true, CONST stores .value
 *   --no-name                             FLAG sets false (not shown in help;
 *                                         not offered for a name that starts
 *                                         with "no-" itself)
 *   --name=BOOL                           FLAG: 1/0, true/false, yes/no, on/off
 *   -h, --help                            print the option list, return 2
 *                                         (so no option may be -h)
 *   --                                    every later argument is positional
 *   -                                     a positional argument (stdin)
 * Options and positional arguments may be mixed. Short options are not
 * bundled (-qv is unknown) and take no attached value (-t4 is unknown). Long
 * names must be spelled out: a prefix is unknown, but suggested.
 *
 * Example:
 *
 *   typedef struct serve_cfg {
 *       long long port;
 *       uint64_t mem_budget;
 *       cli_strings models;
 *       bool no_auth;
 *   } serve_cfg;
 *
 *   static const cli_opt serve_opts[] = {
 *       {"model", 'm', CLI_OPT_STRING_LIST, "NAME=PATH", NULL, "a model to serve (repeatable)",
 *        offsetof(serve_cfg, models), .env = true},
 *       {"port", 0, CLI_OPT_INT, "N", "8080", "TCP port", offsetof(serve_cfg, port),
 *        .env = true, .min = 1, .max = 65535},
 *       {"mem-budget", 0, CLI_OPT_SIZE, "SIZE", NULL, "memory for all loaded models",
 *        offsetof(serve_cfg, mem_budget), .env = true},
 *       {"no-auth", 0, CLI_OPT_FLAG, NULL, NULL, "accept requests without a key",
 *        offsetof(serve_cfg, no_auth), .env = true},
 *   };
 *
 *   serve_cfg cfg = {0};
 *   cli_args args;
 *   int rc = cli_opts_parse("serve", serve_opts, CLI_OPTS_N(serve_opts), argc, argv, &cfg,
 *                           &args);
 *   if (rc == 0) {
 *       ... use cfg and args ...
 *   }
 *   cli_opts_free(serve_opts, CLI_OPTS_N(serve_opts), &cfg);
 *   return rc == 2 ? 0 : rc;
 *
 * cli_opts_parse reads the environment (getenv): call it before any thread
 * could change it. Strings in cfg point into argv, the environment or the
 * table, and live as long as those.
 */
#ifndef REALM_CLI_OPTS_H
#define REALM_CLI_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Most items a list option holds, and most positional arguments. */
#define CLI_LIST_MAX 16
#define CLI_ARGS_MAX 64

/* The value of a CLI_OPT_STRING_LIST option. v[i] point into argv, or into
 * `owned`, the copy of the default or environment variable split at its
 * commas, which cli_opts_free releases. */
typedef struct cli_strings {
    int n;
    const char *v[CLI_LIST_MAX];
    char *owned;
} cli_strings;

/* The value of a CLI_OPT_INT_LIST option. */
typedef struct cli_ints {
    int n;
    long long v[CLI_LIST_MAX];
} cli_ints;

/* The positional arguments, in order; v[i] point into argv. */
typedef struct cli_args {
    int n;
    const char *v[CLI_ARGS_MAX];
} cli_args;

/* The kinds of option, each with the C type of its destination field. */
typedef enum cli_opt_type {
    CLI_OPT_FLAG,        /* bool: no value; --no-NAME sets false */
    CLI_OPT_CONST,       /* int: no value; stores .value (several options may
                            share one field: --ids, --count; the last given wins) */
    CLI_OPT_INT,         /* long long in [.min, .max] */
    CLI_OPT_FLOAT,       /* double in [.fmin, .fmax] */
    CLI_OPT_STRING,      /* const char * (into argv, the environment or .def) */
    CLI_OPT_STRING_LIST, /* cli_strings: each occurrence adds one item; the first
                            occurrence on the command line drops the items from
                            the default or environment, which are comma-separated */
    CLI_OPT_INT_LIST,    /* cli_ints: "1,2,4", each item in [.min, .max]; a
                            later occurrence replaces an earlier one */
    CLI_OPT_SIZE,        /* uint64_t bytes, by realm_parse_size ("512M", "6G");
                            in [.min, .max] */
    CLI_OPT_DURATION,    /* double seconds, by realm_parse_duration ("5m", "250ms",
                            "-1"); in [.fmin, .fmax] */
    CLI_OPT_ENUM,        /* int: the index in .choices of the name given */
    CLI_OPT_TYPE_COUNT
} cli_opt_type;

/*
 * One option. The first seven fields are positional in tables; the rest are
 * set by name, and every entry names .env (true or false): it is the decision
 * the table records for each option, and an entry with a designated field
 * keeps -Wmissing-field-initializers quiet about the fields it leaves out.
 * Bounds: when both of a pair are 0 there is none (so a range cannot be
 * exactly [0, 0]).
 */
typedef struct cli_opt {
    const char *name;           /* long name without "--", [a-z0-9-]; required */
    char short_name;            /* 'm' for -m, or 0 */
    cli_opt_type type;          /* what the value is, and the destination's C type */
    const char *metavar;        /* the value in help ("N", "PATH"); NULL for FLAG and
                                   CONST; for ENUM NULL shows the choices ("a|b|c") */
    const char *def;            /* default as text, parsed as a command-line value and
                                   shown in help; NULL: the caller's initial value stays */
    const char *help;           /* what it does; wrapped in the help output */
    size_t offset;              /* of the destination field in the config struct */
    bool env;                   /* REALM_<NAME> applies (not for CONST) */
    long long min, max;         /* INT, INT_LIST (each item), SIZE (bytes) */
    double fmin, fmax;          /* FLOAT, DURATION (seconds) */
    int n_max;                  /* STRING_LIST, INT_LIST: most items, 0 for CLI_LIST_MAX */
    const char *const *choices; /* ENUM: the names, NULL-terminated */
    int value;                  /* CONST: what the option stores */
} cli_opt;

#define CLI_OPTS_N(table) (sizeof(table) / sizeof((table)[0]))

/*
 * Fill cfg from table[0..n) as described at the top of this file, and collect
 * the positional arguments of argv[1..argc) into *positional (argv[0] is the
 * command or subcommand name and is skipped). positional NULL means the
 * command takes none: any is an error. Returns
 *   0  on success;
 *   1  after printing one error line to stderr, "realm CMD: ...", naming the
 *      option as typed or the environment variable and saying what the value
 *      must be: "realm serve: --port must be an integer between 1 and 65535,
 *      not 'abc'", "realm serve: REALM_PORT must be ...", "realm bench:
 *      --parallel takes at most 8 values", "realm bench: unknown option
 *      '--jsn' (did you mean --json?)", "realm chat-template: option
 *      --template needs a value", "realm info: unexpected argument 'x'". An
 *      unknown option or a missing value is reported before anything in the
 *      environment; a default that does not parse is reported like a bad
 *      value (it is a bug);
 *   2  after printing "options:" and the option list to stdout for -h or
 *      --help; the caller exits with status 0. (realm's main answers --help
 *      with the command's whole usage before the command runs; this is for
 *      other callers.)
 * cfg may hold parts of a parse that failed. When the table has a
 * STRING_LIST, call cli_opts_free afterwards whatever the result.
 */
int cli_opts_parse(const char *cmd, const cli_opt *table, size_t n, int argc, char **argv,
                   void *cfg, cli_args *positional);

/* Release what cli_opts_parse allocated in cfg (the copies behind list
 * options). Safe on a zeroed cfg and after a failed parse; idempotent. */
void cli_opts_free(const cli_opt *table, size_t n, void *cfg);

/*
 * Print the option list in table order, the help of each aligned in one
 * column and wrapped to 80 columns, followed by the default and the variable:
 *   "  -m, --model NAME=PATH  a model to serve (repeatable) [env REALM_MODEL]"
 *   "      --port N           TCP port (default: 8080) [env REALM_PORT]"
 * (long names start at column 2 when no option has a short one). An option
 * longer than the column has its help on the next line.
 */
void cli_opts_help(FILE *f, const cli_opt *table, size_t n);

/*
 * A command's whole usage text into buf (cap bytes, truncated if longer):
 * head (the usage lines and the description, ending in a newline), a blank
 * line, "options:" and the option list. realm's main prints a command's
 * cli_command.usage for `realm help NAME` and `realm NAME --help` before the
 * command runs, so a command whose options are in a table fills a static
 * buffer for it from a constructor:
 *
 *   static char usage[4096];
 *   __attribute__((constructor)) static void make_usage(void)
 *   {
 *       cli_opts_usage(usage, sizeof usage, USAGE_HEAD, opts, CLI_OPTS_N(opts));
 *   }
 *   const cli_command cli_cmd_x = {"x", run_x, "summary", usage};
 *
 * Returns buf.
 */
const char *cli_opts_usage(char *buf, size_t cap, const char *head, const cli_opt *table, size_t n);

/* The environment variable of an option into buf ("REALM_DATA_DIR"). */
const char *cli_opt_env_name(const cli_opt *o, char *buf, size_t cap);

#endif
