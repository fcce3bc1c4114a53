/*
 * realm tokenize -m MODEL.gguf [TEXT] — show how a model's tokenizer splits
 * text: token ids with their pieces (llama-tokenize's format), the ids only,
 * the pieces as JSON, or the count.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "opts.h"
#include "realm/error.h"
#include "realm/gguf.h"
#include "realm/tokenizer.h"

#define CMD "tokenize"

enum mode { MODE_TABLE, MODE_IDS, MODE_PIECES, MODE_COUNT };

/* All of standard input into a malloc'ed buffer. NULL on failure. */
static char *read_stdin(size_t *len)
{
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    while ((k = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += k;
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (nb == NULL) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
    }
    if (ferror(stdin)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* A JSON string: valid UTF-8 kept, controls escaped, bytes that are not
 * part of a valid character (a piece may be half a character) as U+FFFD. */
static void print_json_string(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    putchar('"');
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
            i++;
        } else if (c == '\n') {
            fputs("\\n", stdout);
            i++;
        } else if (c == '\t') {
            fputs("\\t", stdout);
            i++;
        } else if (c == '\r') {
            fputs("\\r", stdout);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            printf("\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            putchar(c);
            i++;
        } else {
            int k = c >= 0xc2 && c <= 0xdf   ? 2
                    : c >= 0xe0 && c <= 0xef ? 3
                    : c >= 0xf0 && c <= 0xf4 ? 4
                                             : 0;
            bool ok = k > 0 && i + (size_t)k <= n;
            for (int j = 1; ok && j < k; j++)
                ok = (u[i + (size_t)j] & 0xc0) == 0x80;
            if (ok && k == 3)
                ok = !(c == 0xe0 && u[i + 1] < 0xa0) && !(c == 0xed && u[i + 1] > 0x9f);
            if (ok && k == 4)
                ok = !(c == 0xf0 && u[i + 1] < 0x90) && !(c == 0xf4 && u[i + 1] > 0x8f);
            if (ok) {
                fwrite(s + i, 1, (size_t)k, stdout);
                i += (size_t)k;
            } else {
                fputs("\\ufffd", stdout);
                i++;
            }
        }
    }
    putchar('"');
}

typedef struct tokenize_cfg {
    const char *model;
    int mode; /* enum mode */
    bool no_special, parse_special;
} tokenize_cfg;

/* Per invocation: no environment variables. */
static const cli_opt tokenize_opts[] = {
    {"model", 'm', CLI_OPT_STRING, "FILE", NULL, "the GGUF file", offsetof(tokenize_cfg, model),
     .env = false},
    {"ids", 0, CLI_OPT_CONST, NULL, NULL, "print the ids only: [1, 2, 3]",
     offsetof(tokenize_cfg, mode), .env = false, .value = MODE_IDS},
    {"pieces", 0, CLI_OPT_CONST, NULL, NULL, "print the pieces as a JSON array of strings",
     offsetof(tokenize_cfg, mode), .env = false, .value = MODE_PIECES},
    {"count", 0, CLI_OPT_CONST, NULL, NULL, "print the number of tokens",
     offsetof(tokenize_cfg, mode), .env = false, .value = MODE_COUNT},
    {"no-special", 0, CLI_OPT_FLAG, NULL, NULL,
     "do not add BOS/EOS (by default added as the model says)", offsetof(tokenize_cfg, no_special),
     .env = false},
    {"parse-special", 0, CLI_OPT_FLAG, NULL, NULL,
     "recognise control tokens such as <|im_end|> in the text (by default their text is "
     "tokenized as plain text)",
     offsetof(tokenize_cfg, parse_special), .env = false},
};

static int run_tokenize(int argc, char **argv)
{
    tokenize_cfg cfg = {.mode = MODE_TABLE};
    cli_args args;
    int rc = cli_opts_parse(CMD, tokenize_opts, CLI_OPTS_N(tokenize_opts), argc, argv, &cfg, &args);
    if (rc != 0)
        return rc == 2 ? 0 : rc;
    if (args.n > 1)
        return cli_error(CMD, "unexpected argument '%s' (quote the text)", args.v[1]);
    if (cfg.model == NULL)
        return cli_error(CMD, "missing -m MODEL.gguf (see 'realm help tokenize')");
    const char *model = cfg.model, *text = args.n ? args.v[0] : NULL;
    const enum mode mode = (enum mode)cfg.mode;
    unsigned flags = 0;
    if (!cfg.no_special)
        flags |= REALM_TOKENIZE_ADD_SPECIAL;
    if (cfg.parse_special)
        flags |= REALM_TOKENIZE_PARSE_SPECIAL;

    size_t len;
    char *owned = NULL;
    if (text != NULL) {
        len = strlen(text);
    } else {
        owned = read_stdin(&len);
        if (owned == NULL)
            return cli_error(CMD, "cannot read standard input");
        text = owned;
    }

    realm_gguf *g;
    rc = realm_gguf_open(model, &g);
    if (rc < 0) {
        free(owned);
        return cli_error(CMD, "%s: %s", model, realm_last_error());
    }
    realm_tokenizer *tok;
    rc = realm_tokenizer_load(g, &tok);
    realm_gguf_close(g);
    if (rc < 0) {
        free(owned);
        return cli_error(CMD, "%s: %s", model, realm_last_error());
    }
    realm_token *ids;
    int32_t n;
    rc = realm_tokenize_alloc(tok, text, len, flags, &ids, &n);
    free(owned);
    if (rc < 0) {
        realm_tokenizer_free(tok);
        return cli_error(CMD, "%s", realm_last_error());
    }

    switch (mode) {
    case MODE_COUNT:
        printf("%d\n", n);
        break;
    case MODE_IDS:
        putchar('[');
        for (int32_t i = 0; i < n; i++)
            printf("%s%d", i ? ", " : "", ids[i]);
        puts("]");
        break;
    case MODE_PIECES:
        putchar('[');
        for (int32_t i = 0; i < n; i++) {
            size_t pl;
            const char *p = realm_token_to_piece(tok, ids[i], REALM_DETOK_RENDER_SPECIAL, &pl);
            if (i)
                fputs(", ", stdout);
            print_json_string(p, pl);
        }
        puts("]");
        break;
    case MODE_TABLE:
        for (int32_t i = 0; i < n; i++) {
            size_t pl;
            const char *p = realm_token_to_piece(tok, ids[i], REALM_DETOK_RENDER_SPECIAL, &pl);
            printf("%6d -> '", ids[i]);
            fwrite(p, 1, pl, stdout);
            fputs("'\n", stdout);
        }
        break;
    }
    free(ids);
    realm_tokenizer_free(tok);
    return ferror(stdout) ? cli_error(CMD, "error writing output") : 0;
}

static const char usage_head[] =
    "usage: realm tokenize -m MODEL.gguf [--ids|--pieces|--count]\n"
    "                      [--no-special] [--parse-special] [TEXT]\n"
    "\n"
    "Tokenizes TEXT, or all of standard input when TEXT is absent, with the\n"
    "tokenizer stored in MODEL.gguf (SentencePiece, byte-level BPE or WordPiece).\n"
    "By default prints one line per token, \"ID -> 'PIECE'\", as llama-tokenize\n"
    "does. A TEXT that starts with '-' goes after \"--\".\n";
static char usage[2048];

/* main prints the usage before any command runs: build it before main. */
__attribute__((constructor)) static void make_usage(void)
{
    cli_opts_usage(usage, sizeof usage, usage_head, tokenize_opts, CLI_OPTS_N(tokenize_opts));
}

const cli_command cli_cmd_tokenize = {
    "tokenize",
    run_tokenize,
    "split text into a model's tokens",
    usage,
};
