/*
 * Write the seed corpus for fuzz_gguf: small valid GGUF files made with the
 * writer, covering every metadata type, string arrays (with empty strings),
 * empty arrays, a non-default alignment, version 2, and tensors of several
 * types and ranks. fuzz/corpus/ holds the output of this program.
 *
 *     gen_corpus OUTDIR
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "realm/error.h"
#include "realm/gguf.h"

static const char *outdir;
static int failures;

static void check(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "gen_corpus: %s: %s\n", what, realm_last_error());
        failures++;
    }
}

/* Deterministic filler, so the seeds are the same on every run. */
static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (uint8_t)(seed >> 24);
    }
}

static void write_seed(realm_gguf_writer *w, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", outdir, name);
    check(realm_gguf_writer_write(w, path), name);
    realm_gguf_writer_free(w);
}

static realm_gguf_writer *new_writer(void)
{
    realm_gguf_writer *w = NULL;
    if (realm_gguf_writer_new(&w) < 0) {
        fprintf(stderr, "gen_corpus: %s\n", realm_last_error());
        exit(1);
    }
    return w;
}

static uint8_t data[8192];

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus OUTDIR\n");
        return 2;
    }
    outdir = argv[1];
    if (mkdir(outdir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "gen_corpus: cannot create %s: %s\n", outdir, strerror(errno));
        return 1;
    }
    fill(data, sizeof data, 1);

    /* Every scalar type, strings, and arrays of every element type. */
    realm_gguf_writer *w = new_writer();
    for (int t = 0; t < REALM_GGUF_TYPE_COUNT; t++) {
        if (realm_gguf_type_size((realm_gguf_type)t) == 0)
            continue;
        char key[64];
        snprintf(key, sizeof key, "seed.%s", realm_gguf_type_name((realm_gguf_type)t));
        check(realm_gguf_set_scalar(w, key, (realm_gguf_type)t, data + 8 * t), key);
        snprintf(key, sizeof key, "seed.arr.%s", realm_gguf_type_name((realm_gguf_type)t));
        check(realm_gguf_set_arr(w, key, (realm_gguf_type)t, data + 64 * t, 3), key);
    }
    check(realm_gguf_set_str(w, "general.architecture", "llama", 5), "str");
    check(realm_gguf_set_str(w, "seed.empty", "", 0), "str");
    check(realm_gguf_set_arr(w, "seed.arr.empty", REALM_GGUF_UINT32, NULL, 0), "arr");
    const realm_gguf_str words[] = {{"<unk>", 5}, {"", 0}, {"hello", 5}, {" world", 6}};
    check(realm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", words, 4), "strs");
    check(realm_gguf_set_arr_str(w, "seed.arr.no_strings", NULL, 0), "strs");
    check(realm_gguf_add_tensor(w, "token_embd.weight", 2, (const int64_t[]){8, 4}, REALM_TYPE_F32,
                                data),
          "tensor");
    check(realm_gguf_add_tensor(w, "blk.0.attn_q.weight", 2, (const int64_t[]){32, 2},
                                REALM_TYPE_Q4_0, data),
          "tensor");
    check(realm_gguf_add_tensor(w, "blk.0.ffn_up.weight", 1, (const int64_t[]){256},
                                REALM_TYPE_Q4_K, data),
          "tensor");
    check(realm_gguf_add_tensor(w, "output_norm.weight", 1, (const int64_t[]){8}, REALM_TYPE_F16,
                                data),
          "tensor");
    write_seed(w, "all-types.gguf");

    /* Small model-like file. */
    w = new_writer();
    check(realm_gguf_set_u32(w, "llama.block_count", 1), "u32");
    check(realm_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f), "f32");
    check(realm_gguf_add_tensor(w, "w", 1, (const int64_t[]){4}, REALM_TYPE_F32, data), "t");
    write_seed(w, "small.gguf");

    /* Non-default alignment and higher ranks, including known types Realm
     * cannot compute with. */
    w = new_writer();
    check(realm_gguf_set_u32(w, "general.alignment", 8), "align");
    check(realm_gguf_set_bool(w, "seed.flag", true), "bool");
    check(realm_gguf_add_tensor(w, "t3", 3, (const int64_t[]){32, 2, 2}, REALM_TYPE_Q8_0, data),
          "t");
    check(realm_gguf_add_tensor(w, "t4", 4, (const int64_t[]){3, 2, 2, 2}, REALM_TYPE_I8, data),
          "t");
    check(realm_gguf_add_tensor(w, "iq", 1, (const int64_t[]){256}, REALM_TYPE_IQ2_XXS, data), "t");
    check(realm_gguf_add_tensor(w, "bf", 1, (const int64_t[]){5}, REALM_TYPE_BF16, data), "t");
    write_seed(w, "align8-ranks.gguf");

    /* Vocabulary-only file: no tensors, so no data section. */
    w = new_writer();
    realm_gguf_str toks[48];
    char text[48][8];
    float scores[48];
    int32_t types[48];
    for (int i = 0; i < 48; i++) {
        snprintf(text[i], sizeof text[i], i < 3 ? "<%d>" : "t%d", i);
        toks[i] = (realm_gguf_str){text[i], strlen(text[i])};
        scores[i] = -(float)i;
        types[i] = i < 3 ? 3 : 1;
    }
    check(realm_gguf_set_str(w, "tokenizer.ggml.model", "gpt2", 4), "str");
    check(realm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 48), "toks");
    check(realm_gguf_set_arr(w, "tokenizer.ggml.scores", REALM_GGUF_FLOAT32, scores, 48), "s");
    check(realm_gguf_set_arr(w, "tokenizer.ggml.token_type", REALM_GGUF_INT32, types, 48), "t");
    check(realm_gguf_set_arr_str(w, "tokenizer.ggml.merges", toks + 3, 10), "merges");
    check(realm_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1), "bos");
    write_seed(w, "vocab.gguf");

    /* Nothing at all. */
    w = new_writer();
    write_seed(w, "empty.gguf");

    /* Version 2: same layout, different version field. */
    w = new_writer();
    check(realm_gguf_set_u64(w, "seed.u64", 1ull << 40), "u64");
    check(realm_gguf_add_tensor(w, "v2", 2, (const int64_t[]){2, 2}, REALM_TYPE_F32, data), "t");
    write_seed(w, "v2.gguf");
    char path[4096];
    snprintf(path, sizeof path, "%s/v2.gguf", outdir);
    FILE *f = fopen(path, "r+b");
    if (f == NULL || fseek(f, 4, SEEK_SET) != 0 || fputc(2, f) == EOF || fclose(f) != 0) {
        fprintf(stderr, "gen_corpus: cannot patch %s\n", path);
        failures++;
    }
    return failures ? 1 : 0;
}
