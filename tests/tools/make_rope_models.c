/*
 * make_rope_models — write the long-context test models of
 * tests/rope_models.h to a directory, for tools outside the tests (llama.cpp
 * made the reference files in tests/data/rope from them; see tests/data/rope/README.md):
 *
 *     make_rope_models TESTDATA_DIR OUT_DIR [N_TOKENS]
 *
 * writes OUT_DIR/NAME.gguf for each model and OUT_DIR/tokens.txt, the first
 * N_TOKENS (default 16384) tokens of rope_model_token, one per line.
 */
#include <stdio.h>
#include <stdlib.h>

#include "realm/error.h"
#include "rope_models.h"

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: make_rope_models TESTDATA_DIR OUT_DIR [N_TOKENS]\n");
        return 2;
    }
    const long n_tokens = argc == 4 ? strtol(argv[3], NULL, 10) : 16384;
    if (n_tokens < 1 || n_tokens > (1 << 20)) {
        fprintf(stderr, "make_rope_models: bad token count '%s'\n", argv[3]);
        return 2;
    }
    char vocab[4096], path[4096];
    snprintf(vocab, sizeof vocab, "%s/models/stories260K.gguf", argv[1]);
    for (size_t i = 0; i < ROPE_MODEL_COUNT; i++) {
        snprintf(path, sizeof path, "%s/%s.gguf", argv[2], rope_model_specs[i].name);
        if (rope_model_write(&rope_model_specs[i], vocab, path) < 0) {
            fprintf(stderr, "make_rope_models: %s: %s\n", path, realm_last_error());
            return 1;
        }
    }
    snprintf(path, sizeof path, "%s/tokens.txt", argv[2]);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    for (long i = 0; i < n_tokens; i++)
        fprintf(f, "%d\n", (int)rope_model_token((int32_t)i));
    if (fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}
