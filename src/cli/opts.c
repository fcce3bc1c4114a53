/*
 * The command-line option parser of opts.h: defaults, then REALM_* environment
 * variables, then argv, all through one function that turns text into a
 * field's value, so the three sources accept and refuse exactly the same.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "opts.h"
#include "realm/registry.h"

#define HELP_WIDTH   80     /* columns of the help output */
#define HELP_COL_MAX 32     /* the help column when the option names are longer */
#define NBSP         '\x01' /* a space the help text is not wrapped at */

static int fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    if (cmd)
        fprintf(stderr, "realm %s: ", cmd);
    else
        fputs("realm: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* printf at the end of the string in buf (cap bytes), truncating. */
static void append(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void append(char *buf, size_t cap, const char *fmt, ...)
{
    size_t k = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + k, cap - k, fmt, ap);
    va_end(ap);
}

static void *field(void *cfg, const cli_opt *o)
{
    return (char *)cfg + o->offset;
}

const char *cli_opt_env_name(const cli_opt *o, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "REALM_");
    for (const char *p = o->name; *p && k + 1 < cap; p++)
        buf[k++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    if (k < cap)
        buf[k] = '\0';
    return buf;
}

/* ---- values ----------------------------------------------------------- */

/* "512M" for a whole number of a unit, else the bytes. */
static const char *fmt_size(unsigned long long v, char *buf, size_t cap)
{
    static const char units[] = "KMGT";
    int u = -1;
    while (u < 3 && v != 0 && v % 1024 == 0)
        v /= 1024, u++;
    if (u < 0)
        snprintf(buf, cap, "%llu", v);
    else
        snprintf(buf, cap, "%llu%c", v, units[u]);
    return buf;
}

/* "30s", "5m", "1h", "250ms" for a whole number of a unit; else seconds. */
static const char *fmt_duration(double s, char *buf, size_t cap)
{
    if (s <= 0)
        snprintf(buf, cap, "%.15g", s);
    else if (fmod(s, 3600) == 0)
        snprintf(buf, cap, "%.15gh", s / 3600);
    else if (fmod(s, 60) == 0)
        snprintf(buf, cap, "%.15gm", s / 60);
    else if (s >= 1 || fmod(s * 1000, 1) != 0)
        snprintf(buf, cap, "%.15gs", s);
    else
        snprintf(buf, cap, "%.15gms", s * 1000);
    return buf;
}

static bool has_bounds(long long lo, long long hi)
{
    return lo != 0 || hi != 0;
}

static bool has_fbounds(double lo, double hi)
{
    return lo != 0 || hi != 0;
}

/* "an integer between 1 and 65535": what a value of o must be, for errors. */
static const char *describe(const cli_opt *o, char *buf, size_t cap)
{
    char a[32], b[32];
    const char *what =
        o->type == CLI_OPT_INT_LIST ? "a comma-separated list of integers" : "an integer";
    switch (o->type) {
    case CLI_OPT_INT:
    case CLI_OPT_INT_LIST:
        if (!has_bounds(o->min, o->max))
            snprintf(buf, cap, "%s", what);
        else if (o->max == LLONG_MAX)
            snprintf(buf, cap, "%s of at least %lld", what, o->min);
        else if (o->min == LLONG_MIN)
            snprintf(buf, cap, "%s of at most %lld", what, o->max);
        else
            snprintf(buf, cap, "%s between %lld and %lld", what, o->min, o->max);
        break;
    case CLI_OPT_FLOAT:
        if (has_fbounds(o->fmin, o->fmax))
            snprintf(buf, cap, "a number between %.15g and %.15g", o->fmin, o->fmax);
        else
            snprintf(buf, cap, "a number");
        break;
    case CLI_OPT_SIZE:
        if (has_bounds(o->min, o->max))
            snprintf(buf, cap, "a size between %s and %s",
                     fmt_size((unsigned long long)o->min, a, sizeof a),
                     fmt_size((unsigned long long)o->max, b, sizeof b));
        else
            snprintf(buf, cap, "a size such as 512M, 6G or 1.5GiB");
        break;
    case CLI_OPT_DURATION:
        if (has_fbounds(o->fmin, o->fmax))
            snprintf(buf, cap, "a duration between %s and %s", fmt_duration(o->fmin, a, sizeof a),
                     fmt_duration(o->fmax, b, sizeof b));
        else
            snprintf(buf, cap, "a duration such as 5m, 30s, 1h30m, 250ms or -1");
        break;
    case CLI_OPT_ENUM:
        snprintf(buf, cap, "one of");
        for (int i = 0; o->choices[i]; i++)
            append(buf, cap, "%s %s", i ? "," : "", o->choices[i]);
        break;
    case CLI_OPT_FLAG:
        snprintf(buf, cap, "true or false (1/0, yes/no, on/off)");
        break;
    default:
        snprintf(buf, cap, "a value");
        break;
    }
    return buf;
}

static bool parse_ll(const char *s, long long *out)
{
    char *end;
    if (*s == '\0' || (*s != '-' && *s != '+' && (*s < '0' || *s > '9')))
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return false;
    *out = v;
    return true;
}

static bool in_bounds(const cli_opt *o, long long v)
{
    return !has_bounds(o->min, o->max) || (v >= o->min && v <= o->max);
}

static bool in_fbounds(const cli_opt *o, double v)
{
    return !has_fbounds(o->fmin, o->fmax) || (v >= o->fmin && v <= o->fmax);
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = true, true;
        if (strcasecmp(s, no[i]) == 0)
            return *out = false, true;
    }
    return false;
}

static int list_max(const cli_opt *o)
{
    return o->n_max > 0 && o->n_max < CLI_LIST_MAX ? o->n_max : CLI_LIST_MAX;
}

/* "1,2,4" into *out: 1, or 0 if an item is bad, -1 if there are too many
 * (and *out unchanged). */
static int parse_int_list(const cli_opt *o, const char *s, cli_ints *out)
{
    cli_ints l = {0};
    for (const char *p = s;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[32];
        if (len == 0 || len >= sizeof item)
            return 0;
        memcpy(item, p, len);
        item[len] = '\0';
        if (l.n == list_max(o))
            return -1;
        if (!parse_ll(item, &l.v[l.n]) || !in_bounds(o, l.v[l.n]))
            return 0;
        l.n++;
        if (end == NULL)
            break;
        p = end + 1;
    }
    *out = l;
    return 1;
}

/* Replace a string list's items with the comma-separated items of s (an
 * environment variable or a default), copied into l->owned. */
static int set_string_list(const char *cmd, const cli_opt *o, const char *who, const char *s,
                           cli_strings *l)
{
    free(l->owned);
    l->owned = NULL;
    l->n = 0;
    char *copy = strdup(s);
    if (copy == NULL)
        return fail(cmd, "out of memory");
    l->owned = copy;
    for (char *p = copy;;) {
        char *end = strchr(p, ',');
        if (end)
            *end = '\0';
        if (*p) {
            if (l->n == list_max(o))
                return fail(cmd, "%s takes at most %d values", who, list_max(o));
            l->v[l->n++] = p;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    return 0;
}

enum source { FROM_DEFAULT, FROM_ENV, FROM_ARGV };

/*
 * Store the text s as o's value; who names where it came from in errors
 * ("--port", "-p", "REALM_PORT", "the default of --port"). For a FLAG or
 * CONST given on the command line s is NULL (FLAG: "true"/"false" comes in
 * instead). Returns 0, or 1 after printing the error.
 */
static int set_value(const char *cmd, const cli_opt *o, const char *who, const char *s,
                     enum source src, void *cfg)
{
    char must[256];
    void *dst = field(cfg, o);
    switch (o->type) {
    case CLI_OPT_FLAG: {
        bool v;
        if (!parse_bool(s, &v))
            break;
        *(bool *)dst = v;
        return 0;
    }
    case CLI_OPT_CONST:
        *(int *)dst = o->value;
        return 0;
    case CLI_OPT_INT: {
        long long v;
        if (!parse_ll(s, &v) || !in_bounds(o, v))
            break;
        *(long long *)dst = v;
        return 0;
    }
    case CLI_OPT_FLOAT: {
        char *end;
        double v = *s ? strtod(s, &end) : NAN;
        if (*s == '\0' || *end != '\0' || !isfinite(v) || !in_fbounds(o, v))
            break;
        *(double *)dst = v;
        return 0;
    }
    case CLI_OPT_STRING:
        *(const char **)dst = s;
        return 0;
    case CLI_OPT_STRING_LIST: {
        cli_strings *l = dst;
        if (src != FROM_ARGV)
            return set_string_list(cmd, o, who, s, l);
        if (l->n == list_max(o))
            return fail(cmd, "%s takes at most %d values", who, list_max(o));
        l->v[l->n++] = s;
        return 0;
    }
    case CLI_OPT_INT_LIST: {
        int ok = parse_int_list(o, s, dst);
        if (ok < 0)
            return fail(cmd, "%s takes at most %d values", who, list_max(o));
        if (ok == 0)
            break;
        return 0;
    }
    case CLI_OPT_SIZE: {
        uint64_t v;
        if (realm_parse_size(s, &v) < 0 ||
            (has_bounds(o->min, o->max) && (v < (uint64_t)o->min || v > (uint64_t)o->max)))
            break;
        *(uint64_t *)dst = v;
        return 0;
    }
    case CLI_OPT_DURATION: {
        double v;
        if (realm_parse_duration(s, &v) < 0 || !in_fbounds(o, v))
            break;
        *(double *)dst = v;
        return 0;
    }
    case CLI_OPT_ENUM:
        for (int i = 0; o->choices[i]; i++)
            if (strcasecmp(s, o->choices[i]) == 0) {
                *(int *)dst = i;
                return 0;
            }
        break;
    default:
        return fail(cmd, "%s: bad option type %d", who, (int)o->type);
    }
    return fail(cmd, "%s must be %s, not '%s'", who, describe(o, must, sizeof must), s);
}

/* ---- the command line ------------------------------------------------- */

/* The option called name[0..len) ("port", or "no-port" for a FLAG). */
static const cli_opt *find_long(const cli_opt *t, size_t n, const char *name, size_t len,
                                bool *negated)
{
    *negated = false;
    for (size_t i = 0; i < n; i++)
        if (strlen(t[i].name) == len && memcmp(t[i].name, name, len) == 0)
            return &t[i];
    if (len > 3 && memcmp(name, "no-", 3) == 0)
        for (size_t i = 0; i < n; i++)
            if (t[i].type == CLI_OPT_FLAG && strncmp(t[i].name, "no-", 3) != 0 &&
                strlen(t[i].name) == len - 3 && memcmp(t[i].name, name + 3, len - 3) == 0)
                return *negated = true, &t[i];
    return NULL;
}

/* Edit distance between a[0..la) and b, for suggestions; capped at 9. */
static int distance(const char *a, size_t la, const char *b)
{
    size_t lb = strlen(b);
    if (la > 40 || lb > 40)
        return 9;
    int d[41][41];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            d[i][j] = best;
        }
    return d[la][lb] < 9 ? d[la][lb] : 9;
}

/* The long name closest to name[0..len): one it starts (when only one), or
 * one at most 2 edits away; NULL if none is close. */
static const char *suggest(const cli_opt *t, size_t n, const char *name, size_t len)
{
    const char *prefix_of = NULL, *best = NULL;
    int n_prefix = 0, best_d = 3;
    for (size_t i = 0; i < n; i++) {
        if (len >= 2 && strncmp(t[i].name, name, len) == 0)
            prefix_of = t[i].name, n_prefix++;
        int d = distance(name, len, t[i].name);
        if (d < best_d && (size_t)d < len)
            best = t[i].name, best_d = d;
    }
    return n_prefix == 1 ? prefix_of : best;
}

static int unknown(const char *cmd, const cli_opt *t, size_t n, const char *arg)
{
    const char *near = NULL;
    if (arg[1] == '-') {
        const char *eq = strchr(arg + 2, '=');
        near = suggest(t, n, arg + 2, eq ? (size_t)(eq - arg - 2) : strlen(arg + 2));
    }
    if (near)
        return fail(cmd, "unknown option '%s' (did you mean --%s?)", arg, near);
    return fail(cmd, "unknown option '%s' (see 'realm help %s')", arg, cmd ? cmd : "");
}

/*
 * The command line: options in order, positional arguments collected. With
 * dry set, only marks in given[] which options it names and prints nothing,
 * returning 1 at an unknown option or a missing value and 2 at -h (the real
 * pass reports them); else stores every value, seen[] marking the list
 * options met so far, and returns 0, 1 or 2 as cli_opts_parse.
 */
static int parse_argv(const char *cmd, const cli_opt *table, size_t n, int argc, char **argv,
                      void *cfg, cli_args *positional, bool *given, bool *seen, bool dry)
{
    char who[96];
    int rc = 0;
    bool options_end = false;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (options_end || a[0] != '-' || a[1] == '\0') {
            if (dry)
                continue;
            if (positional == NULL)
                rc = fail(cmd, "unexpected argument '%s'", a);
            else if (positional->n == CLI_ARGS_MAX)
                rc = fail(cmd, "too many arguments (at most %d)", CLI_ARGS_MAX);
            else
                positional->v[positional->n++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            options_end = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            if (dry)
                return 2;
            fputs("options:\n", stdout);
            cli_opts_help(stdout, table, n);
            return 2;
        }
        const cli_opt *o = NULL;
        const char *val = NULL;
        bool negated = false;
        if (a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            o = find_long(table, n, name, len, &negated);
            val = eq ? eq + 1 : NULL;
            snprintf(who, sizeof who, "--%.*s", (int)(len < 80 ? len : 80), name);
        } else if (a[2] == '\0') {
            for (size_t k = 0; k < n && o == NULL; k++)
                if (table[k].short_name == a[1])
                    o = &table[k];
            snprintf(who, sizeof who, "%s", a);
        }
        if (o == NULL)
            return dry ? 1 : unknown(cmd, table, n, a);
        given[o - table] = true;
        if (o->type == CLI_OPT_FLAG || o->type == CLI_OPT_CONST) {
            if (dry)
                continue;
            if (val && (negated || o->type == CLI_OPT_CONST))
                rc = fail(cmd, "%s takes no value", who);
            else if (o->type == CLI_OPT_CONST)
                rc = set_value(cmd, o, who, NULL, FROM_ARGV, cfg);
            else
                rc = set_value(cmd, o, who, val ? val : negated ? "false" : "true", FROM_ARGV, cfg);
            continue;
        }
        if (val == NULL) {
            if (i + 1 >= argc)
                return dry ? 1 : fail(cmd, "option %s needs a value", who);
            val = argv[++i];
        }
        if (dry)
            continue;
        if (o->type == CLI_OPT_STRING_LIST && !seen[o - table]) {
            cli_strings *l = field(cfg, o); /* the first -m drops the default's items */
            free(l->owned);
            *l = (cli_strings){0};
        }
        seen[o - table] = true;
        rc = set_value(cmd, o, who, val, FROM_ARGV, cfg);
    }
    return rc;
}

int cli_opts_parse(const char *cmd, const cli_opt *table, size_t n, int argc, char **argv,
                   void *cfg, cli_args *positional)
{
    char who[96];
    if (positional)
        positional->n = 0;
    /* given[i]: the command line names option i, so its environment variable
     * does not matter (not even when it is malformed); seen[i]: the same, as
     * far as the real pass has come. */
    bool *flags = calloc(2 * n + 1, sizeof *flags), *given = flags, *seen = flags + n;
    if (flags == NULL)
        return fail(cmd, "out of memory");
    /* A malformed command line or -h is answered before the environment. */
    const bool argv_ok = parse_argv(cmd, table, n, argc, argv, cfg, NULL, given, seen, true) == 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const cli_opt *o = &table[i];
        if (o->def == NULL || o->type == CLI_OPT_CONST)
            continue;
        snprintf(who, sizeof who, "the default of --%s", o->name);
        rc = set_value(cmd, o, who, o->def, FROM_DEFAULT, cfg);
    }
    for (size_t i = 0; i < n && rc == 0 && argv_ok; i++) {
        const cli_opt *o = &table[i];
        if (!o->env || o->type == CLI_OPT_CONST || given[i])
            continue;
        const char *v = getenv(cli_opt_env_name(o, who, sizeof who));
        if (v != NULL && *v != '\0')
            rc = set_value(cmd, o, who, v, FROM_ENV, cfg);
    }
    if (rc == 0)
        rc = parse_argv(cmd, table, n, argc, argv, cfg, positional, given, seen, false);
    free(flags);
    return rc;
}

void cli_opts_free(const cli_opt *table, size_t n, void *cfg)
{
    for (size_t i = 0; i < n; i++)
        if (table[i].type == CLI_OPT_STRING_LIST) {
            cli_strings *l = field(cfg, &table[i]);
            free(l->owned);
            *l = (cli_strings){0};
        }
}

/* ---- help ------------------------------------------------------------- */

/* "  -m, --model NAME=PATH" into buf; its length. Without short options in
 * the table (any_short false) the long names start at column 2, not 6. */
static size_t left_part(const cli_opt *o, bool any_short, char *buf, size_t cap)
{
    if (o->short_name)
        snprintf(buf, cap, "  -%c, --%s", o->short_name, o->name);
    else
        snprintf(buf, cap, "%s--%s", any_short ? "      " : "  ", o->name);
    if (o->metavar)
        append(buf, cap, " %s", o->metavar);
    else if (o->type == CLI_OPT_ENUM)
        for (int i = 0; o->choices[i]; i++)
            append(buf, cap, "%c%s", i ? '|' : ' ', o->choices[i]);
    return strlen(buf);
}

/* text wrapped into the columns [col, HELP_WIDTH); the first line continues
 * the current one at column col. */
static void print_wrapped(FILE *f, const char *text, size_t col)
{
    const size_t width = HELP_WIDTH - col;
    size_t used = 0;
    for (const char *p = text; *p;) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, " ");
        if (len == 0)
            break;
        if (used > 0 && used + 1 + len > width) {
            fprintf(f, "\n%*s", (int)col, "");
            used = 0;
        } else if (used > 0) {
            fputc(' ', f);
            used++;
        }
        for (size_t i = 0; i < len; i++)
            fputc(p[i] == NBSP ? ' ' : p[i], f);
        used += len;
        p += len;
    }
    fputc('\n', f);
}

void cli_opts_help(FILE *f, const cli_opt *table, size_t n)
{
    char left[128], text[1024], env[96];
    bool any_short = false;
    for (size_t i = 0; i < n; i++)
        any_short |= table[i].short_name != 0;
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = left_part(&table[i], any_short, left, sizeof left) + 2;
        if (len > col && len <= HELP_COL_MAX)
            col = len;
    }
    if (col == 0)
        col = HELP_COL_MAX;
    for (size_t i = 0; i < n; i++) {
        const cli_opt *o = &table[i];
        size_t len = left_part(o, any_short, left, sizeof left);
        fputs(left, f);
        if (!o->help && !o->def && !o->env) {
            fputc('\n', f);
            continue;
        }
        if (len + 2 > col)
            fprintf(f, "\n%*s", (int)col, "");
        else
            fprintf(f, "%*s", (int)(col - len), "");
        snprintf(text, sizeof text, "%s", o->help ? o->help : "");
        if (o->def && o->type != CLI_OPT_CONST)
            append(text, sizeof text, " (default:%c%s)", NBSP, o->def);
        if (o->env && o->type != CLI_OPT_CONST)
            append(text, sizeof text, " [env%c%s]", NBSP, cli_opt_env_name(o, env, sizeof env));
        print_wrapped(f, text, col);
    }
}

const char *cli_opts_usage(char *buf, size_t cap, const char *head, const cli_opt *table, size_t n)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f != NULL) {
        fprintf(f, "%s\noptions:\n", head);
        cli_opts_help(f, table, n);
        fclose(f);
    }
    snprintf(buf, cap, "%s", text ? text : head);
    free(text);
    return buf;
}
