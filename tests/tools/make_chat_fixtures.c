/*
 * make_chat_fixtures — write the chat fixtures of tests/chat_fixtures.h to a
 * directory, for tools outside the tests (llama.cpp's llama-tokenize made
 * tests/data/chat_prompt_ids.txt from them; see tests/data/README.md):
 *
 *     make_chat_fixtures TESTDATA_DIR OUT_DIR
 *
 * writes, for each kind, OUT_DIR/KIND.vocab.gguf (vocabulary only) and
 * OUT_DIR/KIND.model.gguf (tiny random model), and for each conversation
 * OUT_DIR/conv-N.json, the messages as `realm chat-template` reads them.
 */
#include <stdio.h>
#include <string.h>

#include "chat_fixtures.h"

/* s as a JSON string: quotes, backslashes and control characters escaped,
 * other bytes (UTF-8) as they are. */
static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static int write_conversation(const char *dir, int index)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/conv-%d.json", dir, index);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    size_t n;
    const realm_chat_message *m = chat_fixture_conversation(index, &n);
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s{\"role\":", i ? "," : "");
        put_json_string(f, realm_chat_role_name(m[i].role));
        fputs(",\"content\":", f);
        put_json_string(f, m[i].content);
        fputc('}', f);
    }
    fputs("]\n", f);
    if (fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s TESTDATA_DIR OUT_DIR\n", argv[0]);
        return 2;
    }
    int status = 0;
    for (int i = 0; i < CHAT_FIXTURE_N_KINDS; i++) {
        const char *kind = chat_fixture_kind(i);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.vocab.gguf", argv[2], kind);
        if (chat_fixture_vocab(argv[1], kind, path) < 0) {
            fprintf(stderr, "%s: %s\n", path, realm_last_error());
            status = 1;
        }
        snprintf(path, sizeof path, "%s/%s.model.gguf", argv[2], kind);
        if (chat_fixture_model(argv[1], kind, path) < 0) {
            fprintf(stderr, "%s: %s\n", path, realm_last_error());
            status = 1;
        }
    }
    for (int c = 1; c <= CHAT_FIXTURE_N_CONVS; c++)
        status |= write_conversation(argv[2], c);
    return status;
}
