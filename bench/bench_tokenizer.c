/*
 * bench_tokenizer — tokenizing throughput (MB/s of input text, one thread)
 * for every vocabulary in ../shared/testdata/vocab, and load times.
 *
 *     bench_tokenizer [TESTDATA_DIR] [MB]
 *
 * The text is a few MB of the llama.cpp tokenizer test strings (English,
 * code, whitespace runs, emoji, Cyrillic, Khmer, Chinese, ...) in a shuffled
 * order, cut into prompts of about 16 KiB, each tokenized by one call (no
 * special tokens added or parsed). Figures are the best of three passes; the
 * machine may be shared and noisy. The test strings repeat, so the per-call
 * cache of byte-level BPE pieces hits more often than on ordinary prose.
 * Last, the load time of a synthetic 150k-token vocabulary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock_internal.h"
#include "realm/error.h"
#include "realm/gguf.h"
#include "realm/tokenizer.h"

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/*
 * A 150k-token vocabulary, the size of Qwen2's or LLaMA 3's (whose GGUF files
 * are not in testdata): GPT-2's tokens and merges three times over, the
 * copies prefixed with "ĀĀ" / "āā" (bytes 00 00 / 01 01), merges "pA B" with
 * the prefix on the left part. Written to a temporary file; returns the best
 * load time of three in seconds, or a negative value.
 */
static double synthetic_150k_load(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-gpt-2.gguf", dir);
    realm_gguf *g;
    if (realm_gguf_open(path, &g) < 0)
        return -1;
    int64_t kt, km;
    uint64_t nt, nm;
    if (realm_gguf_get_arr(g, "tokenizer.ggml.tokens", REALM_GGUF_STRING, &kt, &nt) < 0 ||
        realm_gguf_get_arr(g, "tokenizer.ggml.merges", REALM_GGUF_STRING, &km, &nm) < 0) {
        realm_gguf_close(g);
        return -1;
    }
    static const char *prefix[3] = {"", "\xc4\x80\xc4\x80", "\xc4\x81\xc4\x81"};
    realm_gguf_str *toks = malloc(3 * nt * sizeof *toks), *merges = malloc(3 * nm * sizeof *merges);
    char *arena = malloc(3 * (size_t)(realm_gguf_file_size(g) + 8 * (nt + nm))), *a = arena;
    for (int c = 0; c < 3; c++) {
        size_t pl = strlen(prefix[c]);
        for (uint64_t i = 0; i < nt; i++) {
            realm_gguf_str t = realm_gguf_kv_arr_str(g, kt, i);
            memcpy(a, prefix[c], pl);
            memcpy(a + pl, t.data, t.len);
            toks[c * nt + i] = (realm_gguf_str){a, pl + t.len};
            a += pl + t.len;
        }
        for (uint64_t i = 0; i < nm; i++) {
            realm_gguf_str m = realm_gguf_kv_arr_str(g, km, i);
            memcpy(a, prefix[c], pl);
            memcpy(a + pl, m.data, m.len);
            merges[c * nm + i] = (realm_gguf_str){a, pl + m.len};
            a += pl + m.len;
        }
    }
    realm_gguf_close(g);
    realm_gguf_writer *w;
    realm_gguf_writer_new(&w);
    realm_gguf_set_str(w, "tokenizer.ggml.model", "gpt2", 4);
    realm_gguf_set_str(w, "tokenizer.ggml.pre", "qwen2", 5);
    realm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3 * nt);
    realm_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, 3 * nm);
    char tmp[] = "/tmp/realm-bench-vocab-XXXXXX";
    int fd = mkstemp(tmp);
    close(fd);
    int rc = realm_gguf_writer_write(w, tmp);
    realm_gguf_writer_free(w);
    free(toks);
    free(merges);
    free(arena);
    double best = -1;
    if (rc == 0 && realm_gguf_open(tmp, &g) == 0) {
        for (int pass = 0; pass < 3; pass++) {
            realm_tokenizer *tok;
            double t0 = realm__now();
            rc = realm_tokenizer_load(g, &tok);
            double dt = realm__now() - t0;
            if (rc < 0) {
                fprintf(stderr, "synthetic vocabulary: %s\n", realm_last_error());
                best = -1;
                break;
            }
            if (pass == 0)
                printf("synthetic vocabulary: %d tokens, %llu merges\n",
                       realm_tokenizer_n_vocab(tok), (unsigned long long)(3 * nm));
            realm_tokenizer_free(tok);
            if (best < 0 || dt < best)
                best = dt;
        }
        realm_gguf_close(g);
    }
    unlink(tmp);
    return best;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : getenv("REALM_TESTDATA");
    if (dir == NULL)
        dir = "../shared/testdata";
    const double mb = argc > 2 ? atof(argv[2]) : 4.0;
    char path[4096];

    /* The test strings, separated by "\n__ggml_vocab_test__\n". */
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-gpt-2.gguf.inp", dir);
    size_t inp_len;
    char *inp = read_all(path, &inp_len);
    if (inp == NULL) {
        fprintf(stderr, "bench_tokenizer: cannot read %s\n", path);
        return 1;
    }
    const char *cases[256];
    size_t case_len[256];
    int n_cases = 0;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    for (char *p = inp; p < inp + inp_len && n_cases < 256;) {
        char *q = strstr(p, sep);
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len > 0) {
            cases[n_cases] = p;
            case_len[n_cases++] = len;
        }
        if (q == NULL)
            break;
        p = q + sizeof sep - 1;
    }

    /* Shuffled strings joined by a space or a newline, cut into prompts. */
    const size_t total = (size_t)(mb * 1024 * 1024);
    char *text = malloc(total + 4096);
    size_t n = 0;
    size_t prompt_at[4096];
    int n_prompts = 0;
    prompt_at[n_prompts++] = 0;
    while (n < total) {
        int c = (int)(next_rand() % (uint64_t)n_cases);
        memcpy(text + n, cases[c], case_len[c]);
        n += case_len[c];
        text[n++] = next_rand() % 4 == 0 ? '\n' : ' ';
        if (n - prompt_at[n_prompts - 1] >= 16384 && n_prompts < 4095)
            prompt_at[n_prompts++] = n;
    }
    prompt_at[n_prompts] = n;
    printf("text: %.2f MB in %d prompts of ~16 KiB, %d distinct test strings\n", (double)n / 1e6,
           n_prompts, n_cases);

    static const char *vocabs[] = {"llama-spm", "phi-3", "gpt-2",  "deepseek-llm", "deepseek-coder",
                                   "falcon",    "mpt",   "refact", "starcoder",    "bert-bge"};
    realm_token *ids = malloc(sizeof *ids * 65536);
    printf("%-16s %-7s %8s %10s %10s %12s\n", "vocab", "model", "n_vocab", "load ms", "MB/s",
           "tokens");
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", dir, vocabs[v]);
        realm_gguf *g;
        if (realm_gguf_open(path, &g) < 0) {
            fprintf(stderr, "%s: %s\n", path, realm_last_error());
            return 1;
        }
        realm_tokenizer *tok;
        double t0 = realm__now();
        int rc = realm_tokenizer_load(g, &tok);
        double load = realm__now() - t0;
        realm_gguf_close(g);
        if (rc < 0) {
            fprintf(stderr, "%s: %s\n", path, realm_last_error());
            return 1;
        }
        double best = 1e30;
        long long n_tok = 0;
        for (int pass = 0; pass < 3; pass++) {
            n_tok = 0;
            t0 = realm__now();
            for (int p = 0; p < n_prompts; p++) {
                int32_t k = realm_tokenize(tok, text + prompt_at[p],
                                           prompt_at[p + 1] - prompt_at[p], 0, ids, 65536);
                if (k < 0) {
                    fprintf(stderr, "%s: %s\n", vocabs[v], realm_last_error());
                    return 1;
                }
                n_tok += k;
            }
            double dt = realm__now() - t0;
            if (dt < best)
                best = dt;
        }
        printf("%-16s %-7s %8d %10.1f %10.1f %12lld\n", vocabs[v], realm_tokenizer_model(tok),
               realm_tokenizer_n_vocab(tok), load * 1e3, (double)n / 1e6 / best, n_tok);
        realm_tokenizer_free(tok);
    }
    free(ids);
    free(text);
    free(inp);
    double load = synthetic_150k_load(dir);
    if (load < 0) {
        fprintf(stderr, "bench_tokenizer: could not build the synthetic vocabulary\n");
        return 1;
    }
    printf("synthetic vocabulary load: %.1f ms (best of 3)\n", load * 1e3);
    return 0;
}
