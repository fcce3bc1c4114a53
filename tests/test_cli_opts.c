/*
 * The CLI option parser (src/cli/opts.h): every type, defaults, environment
 * over default, command line over environment, both spellings of a value,
 * repeated options, the exact error messages, and the help text. The parser
 * is not part of librealm, so its source is compiled into this test.
 */
#include "cli/opts.c"

#include <stddef.h>

#include "test_util.h"

typedef struct cfg {
    bool verbose, color;
    int mode, format;
    long long port, retries, slice;
    double temp, keep_alive;
    const char *data_dir;
    cli_strings models;
    cli_ints levels;
    uint64_t mem;
} cfg;

static const char *const formats[] = {"text", "json", NULL};

static const cli_opt opts[] = {
    {"model", 'm', CLI_OPT_STRING_LIST, "NAME=PATH", NULL, "a model to serve (repeatable)",
     offsetof(cfg, models), .env = true, .n_max = 3},
    {"port", 'p', CLI_OPT_INT, "N", "8080", "TCP port", offsetof(cfg, port), .env = true, .min = 1,
     .max = 65535},
    {"retries", 'r', CLI_OPT_INT, "N", NULL, "how often to retry", offsetof(cfg, retries),
     .env = false},
    {"slice", 0, CLI_OPT_INT, "MS", "0", "prefill slice; -1: off", offsetof(cfg, slice),
     .env = false, .min = -1, .max = 100},
    {"temp", 0, CLI_OPT_FLOAT, "T", "0.8", "sampling temperature", offsetof(cfg, temp), .env = true,
     .fmin = 0, .fmax = 2},
    {"data-dir", 'd', CLI_OPT_STRING, "DIR", "/var/lib/realm", "where the server keeps its state",
     offsetof(cfg, data_dir), .env = true},
    {"levels", 0, CLI_OPT_INT_LIST, "1,2,..", "1,2", "parallel levels", offsetof(cfg, levels),
     .env = false, .min = 1, .max = 64, .n_max = 4},
    {"mem-budget", 0, CLI_OPT_SIZE, "SIZE", NULL,
     "memory for all loaded models (512M, 6G); default 3/4 of available memory, which is a long "
     "sentence that has to be wrapped",
     offsetof(cfg, mem), .env = true, .min = 1 << 20, .max = 1LL << 40},
    {"keep-alive", 0, CLI_OPT_DURATION, "DUR", "5m", "how long an idle model stays loaded",
     offsetof(cfg, keep_alive), .env = true, .fmin = -1, .fmax = 86400},
    {"verbose", 'v', CLI_OPT_FLAG, NULL, NULL, "say more", offsetof(cfg, verbose), .env = true},
    {"color", 0, CLI_OPT_FLAG, NULL, "true", "colour the output", offsetof(cfg, color),
     .env = false},
    {"ids", 0, CLI_OPT_CONST, NULL, NULL, "print ids", offsetof(cfg, mode), .env = false,
     .value = 1},
    {"count", 0, CLI_OPT_CONST, NULL, NULL, "print the count", offsetof(cfg, mode), .env = false,
     .value = 2},
    {"format", 0, CLI_OPT_ENUM, NULL, "text", "output format", offsetof(cfg, format), .env = false,
     .choices = formats},
};
#define N_OPTS CLI_OPTS_N(opts)

static const char *const all_env[] = {"REALM_MODEL",    "REALM_PORT",       "REALM_TEMP",
                                      "REALM_DATA_DIR", "REALM_MEM_BUDGET", "REALM_KEEP_ALIVE",
                                      "REALM_VERBOSE",  "REALM_RETRIES",    "REALM_FORMAT",
                                      "REALM_COLOR",    "REALM_LEVELS",     NULL};

static void clear_env(void)
{
    for (int i = 0; all_env[i]; i++)
        unsetenv(all_env[i]);
}

/* What one parse did: its return value, stderr and stdout (trailing newline
 * of stderr removed). */
static int rc;
static char err[1024], out[4096];
static cli_args args;

static void read_back(FILE *f, char *buf, size_t cap)
{
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Standard error and output go to temporary files between these two. */
static FILE *cap_err, *cap_out;
static int saved_err, saved_out;

static void capture_begin(void)
{
    fflush(stdout);
    fflush(stderr);
    cap_err = tmpfile();
    cap_out = tmpfile();
    saved_err = dup(2);
    saved_out = dup(1);
    dup2(fileno(cap_err), 2);
    dup2(fileno(cap_out), 1);
}

static void capture_end(void)
{
    fflush(stdout);
    fflush(stderr);
    dup2(saved_err, 2);
    dup2(saved_out, 1);
    close(saved_err);
    close(saved_out);
    read_back(cap_err, err, sizeof err);
    read_back(cap_out, out, sizeof out);
    size_t n = strlen(err);
    if (n > 0 && err[n - 1] == '\n')
        err[n - 1] = '\0';
}

/* Parse "test ARGS..." (NULL-terminated) into c with stderr and stdout
 * captured. c is zeroed first except for mem, which says what the caller
 * put there. */
static void parse(cfg *c, const char *const *argl, bool want_positional)
{
    char *argv[32] = {"test"};
    int argc = 1;
    while (argl && argl[argc - 1])
        argv[argc] = (char *)argl[argc - 1], argc++;
    cli_opts_free(opts, N_OPTS, c);
    *c = (cfg){.mem = 123};
    capture_begin();
    rc = cli_opts_parse("test", opts, N_OPTS, argc, argv, c, want_positional ? &args : NULL);
    capture_end();
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* A parse that must fail with exactly this message. */
#define CHECK_ERROR(c, argl, msg)                                                                  \
    do {                                                                                           \
        parse(c, argl, true);                                                                      \
        CHECK_EQ_INT(rc, 1);                                                                       \
        CHECK_EQ_STR(err, msg);                                                                    \
    } while (0)

static void test_defaults(void)
{
    cfg c = {0};
    clear_env();
    parse(&c, NULL, true);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(args.n, 0);
    CHECK_EQ_INT(c.port, 8080);
    CHECK_EQ_INT(c.retries, 0);
    CHECK_EQ_INT(c.slice, 0);
    CHECK_NEAR(c.temp, 0.8, 0);
    CHECK_EQ_STR(c.data_dir, "/var/lib/realm");
    CHECK_EQ_INT(c.models.n, 0);
    CHECK_EQ_INT(c.levels.n, 2);
    CHECK_EQ_INT(c.levels.v[0], 1);
    CHECK_EQ_INT(c.levels.v[1], 2);
    CHECK_EQ_INT(c.mem, 123); /* no default: the caller's value stays */
    CHECK_NEAR(c.keep_alive, 300, 0);
    CHECK_EQ_INT(c.verbose, false);
    CHECK_EQ_INT(c.color, true);
    CHECK_EQ_INT(c.mode, 0);
    CHECK_EQ_INT(c.format, 0);
    cli_opts_free(opts, N_OPTS, &c);
}

static void test_env(void)
{
    cfg c = {0};
    clear_env();
    setenv("REALM_PORT", "9000", 1);
    setenv("REALM_TEMP", "1.5", 1);
    setenv("REALM_DATA_DIR", "/tmp/d", 1);
    setenv("REALM_MODEL", "a=x.gguf,,b=y.gguf", 1);
    setenv("REALM_MEM_BUDGET", "6G", 1);
    setenv("REALM_KEEP_ALIVE", "1h30m", 1);
    setenv("REALM_VERBOSE", "yes", 1);
    setenv("REALM_FORMAT", "", 1);     /* empty: unset */
    setenv("REALM_RETRIES", "7", 1);   /* no .env: ignored */
    setenv("REALM_COLOR", "false", 1); /* no .env: ignored */
    parse(&c, NULL, true);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(c.port, 9000);
    CHECK_NEAR(c.temp, 1.5, 0);
    CHECK_EQ_STR(c.data_dir, "/tmp/d");
    CHECK_EQ_INT(c.models.n, 2);
    CHECK_EQ_STR(c.models.v[0], "a=x.gguf");
    CHECK_EQ_STR(c.models.v[1], "b=y.gguf");
    CHECK_EQ_INT(c.mem, 6ull << 30);
    CHECK_NEAR(c.keep_alive, 5400, 0);
    CHECK_EQ_INT(c.verbose, true);
    CHECK_EQ_INT(c.format, 0);
    CHECK_EQ_INT(c.retries, 0);
    CHECK_EQ_INT(c.color, true);

    /* The command line over the environment, in both spellings; the first
     * -m drops the environment's models. */
    parse(&c,
          ARGS("--port", "7000", "--temp=0.25", "-m", "c=z.gguf", "-d", "/srv", "--model=d=w.gguf",
               "--mem-budget", "512M", "--keep-alive=30s", "--no-verbose", "--format", "JSON"),
          true);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(c.port, 7000);
    CHECK_NEAR(c.temp, 0.25, 0);
    CHECK_EQ_STR(c.data_dir, "/srv");
    CHECK_EQ_INT(c.models.n, 2);
    CHECK_EQ_STR(c.models.v[0], "c=z.gguf");
    CHECK_EQ_STR(c.models.v[1], "d=w.gguf");
    CHECK_EQ_INT(c.mem, 512ull << 20);
    CHECK_NEAR(c.keep_alive, 30, 0);
    CHECK_EQ_INT(c.verbose, false);
    CHECK_EQ_INT(c.format, 1);

    /* Bad environment values name the variable. */
    setenv("REALM_PORT", "abc", 1);
    CHECK_ERROR(&c, NULL,
                "realm test: REALM_PORT must be an integer between 1 and 65535, not 'abc'");
    setenv("REALM_PORT", "80", 1);
    setenv("REALM_VERBOSE", "maybe", 1);
    CHECK_ERROR(
        &c, NULL,
        "realm test: REALM_VERBOSE must be true or false (1/0, yes/no, on/off), not 'maybe'");
    setenv("REALM_VERBOSE", "0", 1);
    setenv("REALM_MODEL", "a,b,c,d", 1);
    CHECK_ERROR(&c, NULL, "realm test: REALM_MODEL takes at most 3 values");
    /* A variable the command line overrides does not matter, even malformed. */
    setenv("REALM_PORT", "abc", 1);
    parse(&c, ARGS("-m", "x", "--port=1"), true);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(c.models.n, 1);
    CHECK_EQ_INT(c.port, 1);
    /* A bad command line is reported before a bad environment, and -h wins. */
    CHECK_ERROR(&c, ARGS("--port=1", "--bogus"),
                "realm test: unknown option '--bogus' (see 'realm help test')");
    CHECK_ERROR(&c, ARGS("--retries"), "realm test: option --retries needs a value");
    parse(&c, ARGS("-h"), true);
    CHECK_EQ_INT(rc, 2);
    CHECK_EQ_STR(err, "");
    clear_env();
    cli_opts_free(opts, N_OPTS, &c);
    cli_opts_free(opts, N_OPTS, &c); /* idempotent */
}

static void test_command_line(void)
{
    cfg c = {0};
    clear_env();
    /* Each type, options mixed with positional arguments, "-" positional. */
    parse(&c,
          ARGS("in.gguf", "-p", "1", "--retries=-3", "--slice", "-1", "-", "--levels", "4,8,16",
               "-v", "--color=off", "--ids", "--count", "--format=json", "--temp", "2",
               "--mem-budget=1T", "--keep-alive", "-1"),
          true);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(args.n, 2);
    CHECK_EQ_STR(args.v[0], "in.gguf");
    CHECK_EQ_STR(args.v[1], "-");
    CHECK_EQ_INT(c.port, 1);
    CHECK_EQ_INT(c.retries, -3);
    CHECK_EQ_INT(c.slice, -1);
    CHECK_EQ_INT(c.levels.n, 3);
    CHECK_EQ_INT(c.levels.v[2], 16);
    CHECK_EQ_INT(c.verbose, true);
    CHECK_EQ_INT(c.color, false);
    CHECK_EQ_INT(c.mode, 2); /* the last of --ids/--count */
    CHECK_EQ_INT(c.format, 1);
    CHECK_NEAR(c.temp, 2, 0);
    CHECK_EQ_INT(c.mem, 1ull << 40);
    CHECK_NEAR(c.keep_alive, -1, 0);

    /* Repeats: scalars and int lists take the last, string lists collect. */
    parse(&c,
          ARGS("--port", "1", "--port", "2", "--levels", "1,2,3", "--levels", "5", "-m", "a", "-m",
               "b", "-m", "c", "--no-color", "--color"),
          true);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(c.port, 2);
    CHECK_EQ_INT(c.levels.n, 1);
    CHECK_EQ_INT(c.levels.v[0], 5);
    CHECK_EQ_INT(c.models.n, 3);
    CHECK_EQ_STR(c.models.v[2], "c");
    CHECK_EQ_INT(c.color, true);

    /* "--" ends the options; values may start with '-'. */
    parse(&c, ARGS("a", "--", "--port", "-m", "--"), true);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(args.n, 4);
    CHECK_EQ_STR(args.v[1], "--port");
    CHECK_EQ_STR(args.v[3], "--");
    CHECK_EQ_INT(c.port, 8080);
    CHECK_EQ_INT(c.models.n, 0);
    parse(&c, ARGS("-d", "--port"), true);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(c.data_dir, "--port");
    parse(&c, ARGS("--data-dir="), true);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(c.data_dir, "");
    cli_opts_free(opts, N_OPTS, &c);
}

static void test_errors(void)
{
    cfg c = {0};
    clear_env();
    CHECK_ERROR(&c, ARGS("--port", "abc"),
                "realm test: --port must be an integer between 1 and 65535, not 'abc'");
    CHECK_ERROR(&c, ARGS("-p", "0"),
                "realm test: -p must be an integer between 1 and 65535, not '0'");
    CHECK_ERROR(&c, ARGS("--port=65536"),
                "realm test: --port must be an integer between 1 and 65535, not '65536'");
    CHECK_ERROR(&c, ARGS("--port", "12x"),
                "realm test: --port must be an integer between 1 and 65535, not '12x'");
    CHECK_ERROR(&c, ARGS("--port", " 12"),
                "realm test: --port must be an integer between 1 and 65535, not ' 12'");
    CHECK_ERROR(&c, ARGS("-r", "99999999999999999999"),
                "realm test: -r must be an integer, not '99999999999999999999'");
    CHECK_ERROR(&c, ARGS("--slice", "-2"),
                "realm test: --slice must be an integer between -1 and 100, not '-2'");
    CHECK_ERROR(&c, ARGS("--temp", "2.5"),
                "realm test: --temp must be a number between 0 and 2, not '2.5'");
    CHECK_ERROR(&c, ARGS("--temp=nan"),
                "realm test: --temp must be a number between 0 and 2, not 'nan'");
    CHECK_ERROR(&c, ARGS("--temp="), "realm test: --temp must be a number between 0 and 2, not ''");
    CHECK_ERROR(&c, ARGS("--levels", "1,0"),
                "realm test: --levels must be a comma-separated list of integers between 1 and "
                "64, not '1,0'");
    CHECK_ERROR(&c, ARGS("--levels", "1,,2"),
                "realm test: --levels must be a comma-separated list of integers between 1 and "
                "64, not '1,,2'");
    CHECK_ERROR(&c, ARGS("--levels", "1,2,3,4,5"), "realm test: --levels takes at most 4 values");
    CHECK_ERROR(&c, ARGS("-m", "a", "-m", "b", "--model", "c", "-m", "d"),
                "realm test: -m takes at most 3 values");
    CHECK_ERROR(&c, ARGS("--mem-budget", "12"),
                "realm test: --mem-budget must be a size between 1M and 1T, not '12'");
    CHECK_ERROR(&c, ARGS("--mem-budget", "lots"),
                "realm test: --mem-budget must be a size between 1M and 1T, not 'lots'");
    CHECK_ERROR(&c, ARGS("--keep-alive", "2d"),
                "realm test: --keep-alive must be a duration between -1 and 24h, not '2d'");
    CHECK_ERROR(&c, ARGS("--keep-alive", "1e6"),
                "realm test: --keep-alive must be a duration between -1 and 24h, not '1e6'");
    CHECK_ERROR(&c, ARGS("--format", "xml"),
                "realm test: --format must be one of text, json, not 'xml'");
    CHECK_ERROR(&c, ARGS("--verbose=maybe"),
                "realm test: --verbose must be true or false (1/0, yes/no, on/off), not 'maybe'");
    CHECK_ERROR(&c, ARGS("--no-verbose=1"), "realm test: --no-verbose takes no value");
    CHECK_ERROR(&c, ARGS("--ids=1"), "realm test: --ids takes no value");
    CHECK_ERROR(&c, ARGS("--port"), "realm test: option --port needs a value");
    CHECK_ERROR(&c, ARGS("-m"), "realm test: option -m needs a value");
    CHECK_ERROR(&c, ARGS("--bogus"),
                "realm test: unknown option '--bogus' (see 'realm help test')");
    CHECK_ERROR(&c, ARGS("--prot", "1"),
                "realm test: unknown option '--prot' (did you mean --port?)");
    CHECK_ERROR(&c, ARGS("--mem=1G"),
                "realm test: unknown option '--mem=1G' (did you mean --mem-budget?)");
    CHECK_ERROR(&c, ARGS("-x"), "realm test: unknown option '-x' (see 'realm help test')");
    CHECK_ERROR(&c, ARGS("-p8080"), "realm test: unknown option '-p8080' (see 'realm help test')");
    CHECK_ERROR(&c, ARGS("--no-port"),
                "realm test: unknown option '--no-port' (see 'realm help test')");
    CHECK_ERROR(&c, ARGS("---"), "realm test: unknown option '---' (see 'realm help test')");
    /* no positional arguments wanted */
    parse(&c, ARGS("--port", "1", "extra"), false);
    CHECK_EQ_INT(rc, 1);
    CHECK_EQ_STR(err, "realm test: unexpected argument 'extra'");
    parse(&c, ARGS("--port", "1"), false);
    CHECK_EQ_INT(rc, 0);

    /* A default that does not parse is a bug, reported like a bad value. */
    static const cli_opt bad[] = {
        {"n", 0, CLI_OPT_INT, "N", "ten", "a count", 0, .env = false, .min = 1, .max = 5},
    };
    long long v = 0;
    capture_begin();
    rc = cli_opts_parse("test", bad, 1, 1, (char *[]){"test", NULL}, &v, NULL);
    capture_end();
    CHECK_EQ_INT(rc, 1);
    CHECK_EQ_STR(err,
                 "realm test: the default of --n must be an integer between 1 and 5, not 'ten'");
    cli_opts_free(opts, N_OPTS, &c);
}

static void test_help(void)
{
    static const char want[] =
        "  -m, --model NAME=PATH   a model to serve (repeatable) [env REALM_MODEL]\n"
        "  -p, --port N            TCP port (default: 8080) [env REALM_PORT]\n"
        "  -r, --retries N         how often to retry\n"
        "      --slice MS          prefill slice; -1: off (default: 0)\n"
        "      --temp T            sampling temperature (default: 0.8) [env REALM_TEMP]\n"
        "  -d, --data-dir DIR      where the server keeps its state\n"
        "                          (default: /var/lib/realm) [env REALM_DATA_DIR]\n"
        "      --levels 1,2,..     parallel levels (default: 1,2)\n"
        "      --mem-budget SIZE   memory for all loaded models (512M, 6G); default 3/4\n"
        "                          of available memory, which is a long sentence that has\n"
        "                          to be wrapped [env REALM_MEM_BUDGET]\n"
        "      --keep-alive DUR    how long an idle model stays loaded (default: 5m)\n"
        "                          [env REALM_KEEP_ALIVE]\n"
        "  -v, --verbose           say more [env REALM_VERBOSE]\n"
        "      --color             colour the output (default: true)\n"
        "      --ids               print ids\n"
        "      --count             print the count\n"
        "      --format text|json  output format (default: text)\n";
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cli_opts_help(f, opts, N_OPTS);
    fclose(f);
    CHECK_EQ_STR(buf, want);
    free(buf);

    /* -h and --help print it under "options:" and return 2. */
    cfg c = {0};
    clear_env();
    parse(&c, ARGS("--port", "1", "--help", "--bogus"), true);
    CHECK_EQ_INT(rc, 2);
    CHECK_EQ_STR(err, "");
    CHECK(strncmp(out, "options:\n", 9) == 0);
    CHECK_EQ_STR(out + 9, want);
    parse(&c, ARGS("-h"), false);
    CHECK_EQ_INT(rc, 2);
    /* after "--" it is an argument */
    parse(&c, ARGS("--", "-h"), true);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(args.v[0], "-h");

    /* An option name longer than the help column puts its help below. */
    static const cli_opt wide[] = {
        {"a-very-long-option-name", 0, CLI_OPT_STRING, "SOME-VALUE", NULL, "help", 0, .env = false},
        {"x", 'x', CLI_OPT_FLAG, NULL, NULL, "the x", 0, .env = false},
    };
    f = open_memstream(&buf, &len);
    cli_opts_help(f, wide, 2);
    fclose(f);
    CHECK_EQ_STR(buf, "      --a-very-long-option-name SOME-VALUE\n"
                      "           help\n"
                      "  -x, --x  the x\n");
    free(buf);

    /* Without short options the long names need no room for them. */
    f = open_memstream(&buf, &len);
    cli_opts_help(f, wide, 1);
    fclose(f);
    CHECK_EQ_STR(buf, "  --a-very-long-option-name SOME-VALUE\n"
                      "                                help\n");
    free(buf);

    /* A command's usage: its text, then the list; truncated to the buffer. */
    char usage[256], tiny[16];
    CHECK_EQ_STR(
        cli_opts_usage(usage, sizeof usage, "usage: realm x [-x]\n\nDoes x.\n", wide + 1, 1),
        "usage: realm x [-x]\n\nDoes x.\n\noptions:\n  -x, --x  the x\n");
    CHECK_EQ_STR(cli_opts_usage(tiny, sizeof tiny, "usage: realm x [-x]\n", wide + 1, 1),
                 "usage: realm x ");

    /* Bounds in messages: whole units where they are whole. */
    char must[128], a[32];
    const cli_opt d = {"d",  0, CLI_OPT_DURATION, NULL,         NULL,
                       NULL, 0, .env = false,     .fmin = 0.25, .fmax = 1e9};
    CHECK_EQ_STR(describe(&d, must, sizeof must), "a duration between 250ms and 1000000000s");
    CHECK_EQ_STR(fmt_duration(90, a, sizeof a), "90s");
    CHECK_EQ_STR(fmt_duration(5400, a, sizeof a), "90m");
    CHECK_EQ_STR(fmt_duration(0.0005, a, sizeof a), "0.0005s");
    CHECK_EQ_STR(fmt_size(1536, a, sizeof a), "1536");
    CHECK_EQ_STR(fmt_size(3ull << 30, a, sizeof a), "3G");

    char name[64];
    CHECK_EQ_STR(cli_opt_env_name(&opts[8], name, sizeof name), "REALM_KEEP_ALIVE");
}

int main(void)
{
    test_begin("cli_opts", 60);
    test_defaults();
    test_env();
    test_command_line();
    test_errors();
    test_help();
    return test_end();
}
