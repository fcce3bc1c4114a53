/*
 * realm ps — the models a running server has loaded. Models are loaded by a
 * process; without a server nothing is loaded anywhere but in a command that
 * is running, so this asks the server (GET URL/api/ps, Ollama's shape:
 * {"models": [{"name", "size", "size_vram", "expires_at"}]}, LoRA adapters
 * with their "parent").
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define CMD         "ps"
#define DEFAULT_URL "http://127.0.0.1:8080"
#define BODY_MAX    (4u << 20)

typedef struct body {
    char *data;
    size_t len;
    bool too_long;
} body;

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    body *b = ud;
    const size_t add = size * n;
    if (b->len + add > BODY_MAX) {
        b->too_long = true;
        return 0;
    }
    char *d = realloc(b->data, b->len + add + 1);
    if (d == NULL)
        return 0;
    memcpy(d + b->len, p, add);
    b->data = d;
    b->len += add;
    d[b->len] = '\0';
    return add;
}

/* Seconds from now until an RFC 3339 time ("2024-06-04T14:38:31.8Z",
 * "...+02:00"); false if it does not parse. */
static bool seconds_until(const char *when, double *out)
{
    struct tm tm = {0};
    const char *p = strptime(when, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL)
        return false;
    double frac = 0;
    if (*p == '.') {
        char *end;
        frac = strtod(p, &end);
        p = end;
    }
    long offset = 0;
    int hh, mm;
    if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d", &hh, &mm) == 2)
        offset = (*p == '-' ? -1 : 1) * (hh * 3600L + mm * 60L);
    else if (*p != 'Z' && *p != 'z')
        return false;
    *out = (double)(timegm(&tm) - offset) + frac - (double)time(NULL);
    return true;
}

static void format_until(const json_t *expires, char *buf, size_t cap)
{
    double s;
    if (!json_is_string(expires) || !seconds_until(json_string_value(expires), &s))
        snprintf(buf, cap, "-");
    else if (s > 50.0 * 365 * 86400) /* a keep-alive < 0 is reported far in the future */
        snprintf(buf, cap, "forever");
    else if (s <= 0)
        snprintf(buf, cap, "now");
    else if (s < 120)
        snprintf(buf, cap, "%.0f seconds from now", s);
    else if (s < 7200)
        snprintf(buf, cap, "%.0f minutes from now", s / 60);
    else
        snprintf(buf, cap, "%.0f hours from now", s / 3600);
}

static int run_ps(int argc, char **argv)
{
    const char *url = DEFAULT_URL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "--url") && i + 1 < argc)
            url = argv[++i];
        else if (!strcmp(argv[i], "--url"))
            return cli_error(CMD, "option --url needs a value");
        else
            return cli_error(CMD, "unknown argument '%s' (see 'realm help ps')", argv[i]);
    }
    size_t ul = strlen(url);
    while (ul > 0 && url[ul - 1] == '/')
        ul--;
    char endpoint[2048];
    if (snprintf(endpoint, sizeof endpoint, "%.*s/api/ps", (int)ul, url) >= (int)sizeof endpoint)
        return cli_error(CMD, "the URL is too long");

    CURL *c = curl_easy_init();
    if (c == NULL)
        return cli_error(CMD, "cannot start libcurl");
    body b = {0};
    char err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, endpoint);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 3L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    const CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    int rc = 0;
    json_t *j = NULL;
    if (cc != CURLE_OK)
        rc = cli_error(CMD, "no server at %.*s (%s)", (int)ul, url,
                       b.too_long ? "the answer is too long"
                       : err[0]   ? err
                                  : curl_easy_strerror(cc));
    else if (status != 200)
        rc = cli_error(CMD, "the server at %.*s answered %ld to GET /api/ps", (int)ul, url, status);
    else if ((j = json_loads(b.data ? b.data : "", 0, NULL)) == NULL ||
             !json_is_array(json_object_get(j, "models")))
        rc = cli_error(CMD, "the server at %.*s answered GET /api/ps with no \"models\" list",
                       (int)ul, url);
    free(b.data);
    if (rc == 0 && json) {
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
        putchar('\n');
    } else if (rc == 0) {
        const json_t *models = json_object_get(j, "models");
        printf("%-32s  %-12s  %s\n", "NAME", "SIZE", "UNTIL");
        for (size_t i = 0; i < json_array_size(models); i++) {
            const json_t *m = json_array_get(models, i);
            const char *name = json_string_value(json_object_get(m, "name"));
            const json_t *size = json_object_get(m, "size");
            char sz[32] = "-", until[200];
            if (json_is_integer(size) && json_integer_value(size) >= 0)
                cli_format_bytes((uint64_t)json_integer_value(size), sz, sizeof sz);
            const char *parent = json_string_value(json_object_get(m, "parent"));
            if (parent) /* a LoRA adapter: loaded as long as it is not unloaded */
                snprintf(until, sizeof until, "LoRA adapter of %s%s", parent,
                         json_is_true(json_object_get(m, "unloading"))
                             ? ", unloaded (freed when its requests end)"
                             : "");
            else
                format_until(json_object_get(m, "expires_at"), until, sizeof until);
            printf("%-32s  %-12s  %s\n", name ? name : "?", sz, until);
        }
    }
    json_decref(j);
    return rc;
}

const cli_command cli_cmd_ps = {
    "ps",
    run_ps,
    "the models a running server has loaded",
    "usage: realm ps [--url URL] [--json]\n"
    "\n"
    "Asks the server at URL (default " DEFAULT_URL ") which models it has loaded\n"
    "(GET URL/api/ps) and prints each one's name, memory and how long it stays\n"
    "loaded while idle (its keep-alive left); LoRA adapters with their base model.\n"
    "Models are loaded by a process: with no server running, none is loaded, and\n"
    "realm ps says there is no server (exit status 1).\n"
    "\n"
    "  --url URL   the server (default " DEFAULT_URL ")\n"
    "  --json      the server's answer as it is\n",
};
