/*
 * Tokenizer tests: llama.cpp's vocabulary test files (every input must give
 * exactly the listed ids), the stories260K reference, round trips, special
 * token injection, pre-tokenizer splits of the vocabularies too large to
 * ship, the streaming detokenizer, bad metadata, threads, long inputs.
 */
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "core/clock_internal.h"
#include "realm/error.h"
#include "realm/gguf.h"
#include "realm/tokenizer.h"
#include "test_util.h"
#include "tokenizer/tokenizer_internal.h"

/* ---- helpers ------------------------------------------------------------ */

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t k;
    while ((k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap)
            buf = realloc(buf, (cap *= 2) + 1);
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Print s quoted with escapes, for diffs. */
static void print_quoted(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void print_ids(FILE *f, const realm_token *ids, int32_t n)
{
    fputc('[', f);
    for (int32_t i = 0; i < n; i++)
        fprintf(f, "%s%d", i ? " " : "", ids[i]);
    fputc(']', f);
}

/* One vocabulary test case. */
struct vcase {
    char *text;
    size_t len;
    realm_token *ids;
    int32_t n_ids;
};

struct vcases {
    struct vcase *c;
    int n;
    char *inp_buf, *out_buf;
};

/* Read NAME.gguf.inp and .out (format: ../shared/testdata/README.md). */
static bool read_cases(const char *name, struct vcases *vc)
{
    char rel[256];
    size_t n_inp, n_out;
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf.inp", name);
    vc->inp_buf = read_all(test_data(rel), &n_inp);
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf.out", name);
    vc->out_buf = read_all(test_data(rel), &n_out);
    if (!vc->inp_buf || !vc->out_buf)
        return false;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    vc->c = calloc(256, sizeof *vc->c);
    vc->n = 0;
    char *p = vc->inp_buf, *end = vc->inp_buf + n_inp;
    while (p < end && vc->n < 256) {
        char *q = memmem(p, (size_t)(end - p), sep, sizeof sep - 1);
        size_t len = q ? (size_t)(q - p) : (size_t)(end - p);
        vc->c[vc->n].text = p;
        vc->c[vc->n].len = len;
        vc->n++;
        if (q == NULL)
            break;
        *q = '\0';
        p = q + sizeof sep - 1;
    }
    int line = 0;
    char *save = NULL;
    p = vc->out_buf;
    for (int i = 0; i < vc->n; i++) {
        char *nl = strchr(p, '\n');
        if (nl == NULL) {
            fprintf(stderr, "%s: .out has fewer lines than .inp has cases\n", name);
            return false;
        }
        *nl = '\0';
        vc->c[i].ids = malloc(((size_t)strlen(p) / 2 + 1) * sizeof(realm_token));
        int32_t k = 0;
        for (char *t = strtok_r(p, " ", &save); t; t = strtok_r(NULL, " ", &save))
            vc->c[i].ids[k++] = (realm_token)atoi(t);
        vc->c[i].n_ids = k;
        p = nl + 1;
        line++;
    }
    return true;
}

static void free_cases(struct vcases *vc)
{
    for (int i = 0; i < vc->n; i++)
        free(vc->c[i].ids);
    free(vc->c);
    free(vc->inp_buf);
    free(vc->out_buf);
}

static realm_tokenizer *load_vocab(const char *rel, realm_gguf **g_out)
{
    realm_gguf *g = NULL;
    int rc = realm_gguf_open(test_data(rel), &g);
    CHECK_MSG(rc == 0, "open %s: %s", rel, realm_last_error());
    if (rc < 0)
        return NULL;
    realm_tokenizer *tok = NULL;
    double t0 = realm__now();
    rc = realm_tokenizer_load(g, &tok);
    double dt = realm__now() - t0;
    CHECK_MSG(rc == 0, "load %s: %s", rel, realm_last_error());
    if (rc == 0)
        printf("  loaded %-40s n_vocab %6d in %6.1f ms\n", rel, realm_tokenizer_n_vocab(tok),
               dt * 1e3);
    if (g_out)
        *g_out = g;
    else
        realm_gguf_close(g);
    return tok;
}

/* detokenize(tokenize(text)) == want. */
static bool roundtrip_to(const realm_tokenizer *tok, const char *text, size_t len, const char *want,
                         size_t want_len, const char *what)
{
    realm_token *ids;
    int32_t n;
    if (realm_tokenize_alloc(tok, text, len, 0, &ids, &n) < 0) {
        fprintf(stderr, "%s: tokenize failed: %s\n", what, realm_last_error());
        return false;
    }
    int32_t m = realm_detokenize(tok, ids, n, 0, NULL, 0);
    char *back = malloc((size_t)(m > 0 ? m : 1));
    int32_t m2 = realm_detokenize(tok, ids, n, 0, back, (size_t)(m > 0 ? m : 1));
    bool ok = m >= 0 && m2 == m && (size_t)m == want_len && memcmp(back, want, want_len) == 0;
    if (!ok) {
        fprintf(stderr, "%s: round trip differs\n  input: ", what);
        print_quoted(stderr, text, len);
        fprintf(stderr, "\n  ids:   ");
        print_ids(stderr, ids, n);
        fprintf(stderr, "\n  back:  ");
        if (m2 >= 0)
            print_quoted(stderr, back, (size_t)m2);
        fputc('\n', stderr);
    }
    free(back);
    free(ids);
    return ok;
}

static bool roundtrip_ok(const realm_tokenizer *tok, const char *text, size_t len, const char *what)
{
    return roundtrip_to(tok, text, len, text, len, what);
}

/*
 * The text a byte-level BPE vocabulary gives back: bytes it has no token for
 * are lost (Falcon's lacks 0x0B, 0xF2, ...; StarCoder's 0xF1), as with
 * Hugging Face's tokenizer. Other vocabularies give back the text.
 */
static size_t representable(const realm_tokenizer *tok, const char *text, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char chr[4];
        int k = realm__utf8_encode(realm__byte_to_cp((uint8_t)text[i]), chr);
        if (realm_tokenizer_type(tok) != REALM_VOCAB_BPE ||
            realm_tokenizer_find(tok, chr, (size_t)k) >= 0)
            out[o++] = text[i];
    }
    return o;
}

/* ---- the vocabulary files ----------------------------------------------- */

static const struct {
    const char *name;
    bool roundtrip; /* WordPiece is lossy */
} vocabs[] = {
    {"llama-spm", true},      {"phi-3", true},     {"gpt-2", true}, {"deepseek-llm", true},
    {"deepseek-coder", true}, {"falcon", true},    {"mpt", true},   {"refact", true},
    {"starcoder", true},      {"bert-bge", false},
};
#define N_VOCABS (int)(sizeof vocabs / sizeof vocabs[0])

static realm_tokenizer *toks[N_VOCABS];

/* Random valid UTF-8: ASCII words and spaces, Latin, Cyrillic, CJK, emoji,
 * whitespace runs. `no_2581` leaves out U+2581 (SentencePiece's space). */
static size_t random_utf8(char *out, size_t max_cps, bool no_2581)
{
    static const uint32_t ranges[][2] = {
        {0x20, 0x7e},        {0x20, 0x7e},     {0x20, 0x7e},       {0x61, 0x7a},
        {0x09, 0x0d},        {0xa0, 0x24f},    {0x400, 0x4ff},     {0x3040, 0x30ff},
        {0x4e00, 0x9fff},    {0xac00, 0xd7a3}, {0x1f300, 0x1faff}, {0x2000, 0x206f},
        {0x0600, 0x06ff},    {0x0e00, 0x0e7f}, {0x1780, 0x17ff},   {0x2580, 0x259f},
        {0x10000, 0x10ffff},
    };
    const size_t n_ranges = sizeof ranges / sizeof ranges[0];
    size_t n_cp = 1 + test_rand_u64() % max_cps, o = 0;
    for (size_t i = 0; i < n_cp; i++) {
        const uint32_t *r = ranges[test_rand_u64() % n_ranges];
        uint32_t cp = r[0] + (uint32_t)(test_rand_u64() % (r[1] - r[0] + 1));
        if ((cp >= 0xd800 && cp <= 0xdfff) || (no_2581 && cp == 0x2581))
            cp = 'x';
        o += (size_t)realm__utf8_encode(cp, out + o);
    }
    return o;
}

static void test_vocab_files(void)
{
    int total_pass = 0, total = 0;
    for (int v = 0; v < N_VOCABS; v++) {
        char rel[256];
        snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", vocabs[v].name);
        toks[v] = load_vocab(rel, NULL);
        struct vcases vc = {0};
        bool ok = read_cases(vocabs[v].name, &vc);
        CHECK_MSG(ok, "reading the test files of %s", vocabs[v].name);
        if (!ok || toks[v] == NULL) {
            printf("vocab %-15s FAILED to load\n", vocabs[v].name);
            total += vc.n;
            free_cases(&vc);
            continue;
        }
        int pass = 0, rt_pass = 0;
        for (int i = 0; i < vc.n; i++) {
            realm_token *ids;
            int32_t n;
            int rc = realm_tokenize_alloc(toks[v], vc.c[i].text, vc.c[i].len, 0, &ids, &n);
            bool same = rc == 0 && n == vc.c[i].n_ids &&
                        memcmp(ids, vc.c[i].ids, (size_t)n * sizeof *ids) == 0;
            test_checks++;
            if (same) {
                pass++;
            } else {
                test_failures++;
                fprintf(stderr, "%s case %d: tokens differ\n  input:    ", vocabs[v].name, i);
                print_quoted(stderr, vc.c[i].text, vc.c[i].len);
                fprintf(stderr, "\n  expected: ");
                print_ids(stderr, vc.c[i].ids, vc.c[i].n_ids);
                fprintf(stderr, "\n  got:      ");
                if (rc == 0)
                    print_ids(stderr, ids, n);
                else
                    fprintf(stderr, "error %s: %s", realm_err_name(rc), realm_last_error());
                fputc('\n', stderr);
            }
            if (rc == 0)
                free(ids);
            if (vocabs[v].roundtrip) {
                char what[64];
                snprintf(what, sizeof what, "%s case %d", vocabs[v].name, i);
                bool r = roundtrip_ok(toks[v], vc.c[i].text, vc.c[i].len, what);
                CHECK(r);
                rt_pass += r;
            }
        }
        printf("vocab %-15s %2d/%2d inputs give the reference ids", vocabs[v].name, pass, vc.n);
        if (vocabs[v].roundtrip)
            printf(", %2d/%2d round trips", rt_pass, vc.n);
        printf("\n");
        total_pass += pass;
        total += vc.n;
        free_cases(&vc);
    }
    printf("vocab files: %d/%d inputs pass\n", total_pass, total);
}

static void test_random_roundtrips(void)
{
    char buf[64 * 4 + 4], want[sizeof buf];
    for (int v = 0; v < N_VOCABS; v++) {
        if (!vocabs[v].roundtrip || toks[v] == NULL)
            continue;
        const bool spm = realm_tokenizer_type(toks[v]) == REALM_VOCAB_SPM;
        int ok = 0, lossy = 0;
        const int n = 300;
        for (int i = 0; i < n; i++) {
            size_t len = random_utf8(buf, 64, spm);
            size_t want_len = representable(toks[v], buf, len, want);
            lossy += want_len != len;
            char what[64];
            snprintf(what, sizeof what, "%s random %d", vocabs[v].name, i);
            bool r = roundtrip_to(toks[v], buf, len, want, want_len, what);
            CHECK(r);
            ok += r;
        }
        printf("vocab %-15s %d/%d random UTF-8 round trips (%d with bytes the vocabulary "
               "lacks)\n",
               vocabs[v].name, ok, n, lossy);
    }
}

static int vocab_index(const char *name)
{
    for (int v = 0; v < N_VOCABS; v++)
        if (strcmp(vocabs[v].name, name) == 0)
            return v;
    return -1;
}

/* ---- the stories260K reference ------------------------------------------ */

static void test_stories260k(void)
{
    realm_tokenizer *tok = load_vocab("models/stories260K.gguf", NULL);
    if (tok == NULL)
        return;
    static const char text[] = "Once upon a time, there was a little girl named Lily.";
    static const realm_token want[] = {1,   403, 407, 261, 378, 432, 383, 286,
                                       261, 376, 298, 315, 421, 395, 317, 426};
    realm_token ids[64];
    int32_t n = realm_tokenize(tok, text, sizeof text - 1, REALM_TOKENIZE_ADD_SPECIAL, ids, 64);
    CHECK_EQ_INT(n, 16);
    CHECK(n == 16 && memcmp(ids, want, sizeof want) == 0);

    /* The reference output lists each token as "%6d -> 'piece'". */
    size_t ref_len;
    char *ref = read_all(test_data("reference/stories260K.tokenize.stdout.txt"), &ref_len);
    char mine[2048];
    size_t o = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t len;
        const char *p = realm_token_to_piece(tok, ids[i], REALM_DETOK_RENDER_SPECIAL, &len);
        o += (size_t)snprintf(mine + o, sizeof mine - o, "%6d -> '%.*s'\n", ids[i], (int)len, p);
    }
    CHECK(ref != NULL && o == ref_len && memcmp(mine, ref, o) == 0);
    free(ref);

    /* The greedy reference prompt: "Once upon a time" -> 1 403 407 261 378. */
    n = realm_tokenize(tok, "Once upon a time", 16, REALM_TOKENIZE_ADD_SPECIAL, ids, 64);
    CHECK(n == 5 && ids[0] == 1 && ids[1] == 403 && ids[2] == 407 && ids[3] == 261 &&
          ids[4] == 378);
    /* Detokenizing with BOS keeps the prefixed space (llama.cpp prints it). */
    char out[128];
    int32_t m = realm_detokenize(tok, ids, n, 0, out, sizeof out);
    CHECK(m == 17 && memcmp(out, " Once upon a time", 17) == 0);
    m = realm_detokenize(tok, ids + 1, n - 1, 0, out, sizeof out);
    CHECK(m == 16 && memcmp(out, "Once upon a time", 16) == 0);
    /* Removing the BOS keeps the space (llama.cpp does the same). */
    m = realm_detokenize(tok, ids, n, REALM_DETOK_REMOVE_SPECIAL, out, sizeof out);
    CHECK(m == 17 && memcmp(out, " Once upon a time", 17) == 0);
    m = realm_detokenize(tok, ids, n, REALM_DETOK_RENDER_SPECIAL, out, sizeof out);
    CHECK(m == 20 && memcmp(out, "<s> Once upon a time", 20) == 0);
    CHECK_EQ_INT(realm_tokenizer_bos(tok), 1);
    CHECK_EQ_INT(realm_tokenizer_eos(tok), 2);
    CHECK(realm_tokenizer_add_bos(tok) && !realm_tokenizer_add_eos(tok));
    CHECK(realm_tokenizer_is_eog(tok, 2) && !realm_tokenizer_is_eog(tok, 1));
    realm_tokenizer_free(tok);
}

/* ---- special tokens ----------------------------------------------------- */

static void test_special(void)
{
    realm_tokenizer *phi = toks[vocab_index("phi-3")];
    realm_tokenizer *gpt2 = toks[vocab_index("gpt-2")];
    realm_tokenizer *spm = toks[vocab_index("llama-spm")];
    if (!phi || !gpt2 || !spm)
        return;
    realm_token ids[64];

    /* A control token's text is plain text unless parsing is allowed. */
    static const char chat[] = "<|user|>\nHello<|end|>";
    int32_t n = realm_tokenize(phi, chat, sizeof chat - 1, 0, ids, 64);
    CHECK(n > 3);
    for (int32_t i = 0; i < n; i++)
        CHECK(ids[i] != 32010 && ids[i] != 32007);
    n = realm_tokenize(phi, chat, sizeof chat - 1, REALM_TOKENIZE_PARSE_SPECIAL, ids, 64);
    /* Phi-3's special tokens swallow the whitespace after them (RSTRIP), and
     * text after a special token gets SentencePiece's space: "▁Hello". */
    CHECK(n == 3 && ids[0] == 32010 && ids[1] == 15043 && ids[2] == 32007);

    static const char eot[] = "a<|endoftext|>b";
    n = realm_tokenize(gpt2, eot, sizeof eot - 1, 0, ids, 64);
    CHECK(n > 3);
    for (int32_t i = 0; i < n; i++)
        CHECK(ids[i] != 50256);
    n = realm_tokenize(gpt2, eot, sizeof eot - 1, REALM_TOKENIZE_PARSE_SPECIAL, ids, 64);
    CHECK(n == 3 && ids[0] == 64 && ids[1] == 50256 && ids[2] == 65);

    /* llama-spm: "<s>" only with parsing; BOS/EOS from metadata. */
    n = realm_tokenize(spm, "<s>x", 4, REALM_TOKENIZE_PARSE_SPECIAL, ids, 64);
    CHECK(n >= 2 && ids[0] == 1);
    n = realm_tokenize(spm, "<s>x", 4, 0, ids, 64);
    CHECK(n >= 2 && ids[0] != 1);
    n = realm_tokenize(spm, "", 0, REALM_TOKENIZE_ADD_SPECIAL, ids, 64);
    CHECK(n == 1 && ids[0] == 1);

    /* Rendering control tokens is opt-in. */
    size_t len;
    const char *p = realm_token_to_piece(phi, 32007, 0, &len);
    CHECK(p != NULL && len == 0);
    p = realm_token_to_piece(phi, 32007, REALM_DETOK_RENDER_SPECIAL, &len);
    CHECK(p != NULL && len == 7 && memcmp(p, "<|end|>", 7) == 0);
    CHECK(realm_token_to_piece(phi, 99999, 0, &len) == NULL);

    /* End-of-generation sets. */
    realm_token eog[16];
    int32_t k = realm_tokenizer_eog(phi, eog, 16);
    CHECK(k == 3 && eog[0] == 2 && eog[1] == 32000 && eog[2] == 32007);
    CHECK_EQ_INT(realm_tokenizer_eot(phi), 32007);
    CHECK(realm_tokenizer_is_eog(phi, 32007) && !realm_tokenizer_is_eog(phi, 32010));
    k = realm_tokenizer_eog(gpt2, eog, 16);
    CHECK(k == 1 && eog[0] == 50256);
    CHECK_EQ_INT(realm_tokenizer_nl(gpt2), 198);
    CHECK_EQ_INT(realm_tokenizer_nl(spm), 13);
    CHECK(realm_token_get_type(spm, 5) == REALM_TOKEN_TYPE_BYTE);
    CHECK(realm_tokenizer_find(spm, "<0x0A>", 6) == 13);
    CHECK(strcmp(realm_tokenizer_pre(gpt2), "gpt-2") == 0);
    CHECK(strcmp(realm_tokenizer_model(spm), "llama") == 0);

    /* deepseek-coder adds BOS; EOS is not added. */
    realm_tokenizer *dsc = toks[vocab_index("deepseek-coder")];
    n = realm_tokenize(dsc, "Hello", 5, REALM_TOKENIZE_ADD_SPECIAL, ids, 64);
    CHECK(n == 2 && ids[0] == 32013 && ids[1] == 17535);
    /* WordPiece: [CLS] ... [SEP]. */
    realm_tokenizer *bert = toks[vocab_index("bert-bge")];
    n = realm_tokenize(bert, "Hello world", 11, REALM_TOKENIZE_ADD_SPECIAL, ids, 64);
    CHECK(n == 4 && ids[0] == 101 && ids[1] == 7592 && ids[2] == 2088 && ids[3] == 102);
}

/* ---- buffers, counts, errors, invalid input ---------------------------- */

static void test_buffers(void)
{
    realm_tokenizer *gpt2 = toks[vocab_index("gpt-2")];
    realm_tokenizer *spm = toks[vocab_index("llama-spm")];
    if (!gpt2 || !spm)
        return;
    realm_token ids[4];
    CHECK_EQ_INT(realm_tokenize(gpt2, "Hello, world!", 13, 0, NULL, 0), 4);
    CHECK_RC(realm_tokenize(gpt2, "Hello, world!", 13, 0, ids, 3), REALM_ERR_RANGE);
    CHECK(strstr(realm_last_error(), "4 tokens") != NULL);
    CHECK_EQ_INT(realm_tokenize(gpt2, "Hello, world!", 13, 0, ids, 4), 4);
    CHECK_RC(realm_tokenize(gpt2, NULL, 3, 0, ids, 4), REALM_ERR_INVAL);
    char out[8];
    CHECK_EQ_INT(realm_detokenize(gpt2, ids, 4, 0, NULL, 0), 13);
    CHECK_RC(realm_detokenize(gpt2, ids, 4, 0, out, sizeof out), REALM_ERR_RANGE);
    realm_token bad = 50257;
    CHECK_RC(realm_detokenize(gpt2, &bad, 1, 0, NULL, 0), REALM_ERR_INVAL);

    /* Clean-up of spaces, as Hugging Face's decode does by default. */
    static const char s[] = "Hello , world ! It 's";
    realm_token *v;
    int32_t n;
    CHECK_RC(realm_tokenize_alloc(gpt2, s, sizeof s - 1, 0, &v, &n), 0);
    char buf[64];
    int32_t m = realm_detokenize(gpt2, v, n, REALM_DETOK_CLEAN_SPACES, NULL, 0);
    CHECK_EQ_INT(m, 18);
    m = realm_detokenize(gpt2, v, n, REALM_DETOK_CLEAN_SPACES, buf, sizeof buf);
    CHECK(m == 18 && memcmp(buf, "Hello, world! It's", 18) == 0);
    free(v);

    /* Invalid UTF-8: byte-level BPE sees U+FFFD for each bad byte; SPM keeps
     * the bytes (byte fallback). */
    static const char bad_utf8[] = "\xff\xfe abc \xc3";
    CHECK_RC(realm_tokenize_alloc(gpt2, bad_utf8, sizeof bad_utf8 - 1, 0, &v, &n), 0);
    m = realm_detokenize(gpt2, v, n, 0, buf, sizeof buf);
    CHECK(m == 14 && memcmp(buf, "\xef\xbf\xbd\xef\xbf\xbd abc \xef\xbf\xbd", 14) == 0);
    free(v);
    static const char bad2[] = "\xc3(abc\xe2\x82x\x80\xff";
    CHECK(roundtrip_ok(spm, bad2, sizeof bad2 - 1, "spm invalid utf-8"));
    /* llama.cpp's quirk, kept: a bad lead byte takes the next 1-3 bytes into
     * its symbol, so a space there comes back as U+2581 (as byte tokens). */
    CHECK_RC(realm_tokenize_alloc(spm, "\xff a", 3, 0, &v, &n), 0);
    m = realm_detokenize(spm, v, n, 0, buf, sizeof buf);
    CHECK(m == 5 && memcmp(buf,
                           "\xff\xe2\x96\x81"
                           "a",
                           5) == 0);
    free(v);
    static const char nul[] = "a\0b";
    CHECK(roundtrip_ok(gpt2, nul, 3, "gpt-2 NUL"));
    CHECK(roundtrip_ok(spm, nul, 3, "spm NUL"));
    /* Every byte value through every vocabulary without a crash. */
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    for (int v2 = 0; v2 < N_VOCABS; v2++) {
        if (toks[v2] == NULL)
            continue;
        int rc = realm_tokenize_alloc(toks[v2], all, 256, REALM_TOKENIZE_PARSE_SPECIAL, &v, &n);
        CHECK_MSG(rc == 0, "%s: all bytes: %s", vocabs[v2].name, realm_last_error());
        if (rc == 0)
            free(v);
    }
    CHECK(roundtrip_ok(spm, all, 256, "spm all bytes"));
}

/* ---- long inputs: no quadratic blow-up ---------------------------------- */

/* This thread's CPU time in seconds: unlike the wall clock, it does not grow
 * while a loaded machine runs other work (quadratic work on 1 MiB would take
 * minutes of it; linear work takes well under a second). */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_long(void)
{
    const size_t n = 1 << 20;
    char *s = malloc(n);
    static const char *names[] = {"gpt-2", "llama-spm", "deepseek-llm", "bert-bge", "falcon"};
    for (int k = 0; k < 5; k++) {
        realm_tokenizer *tok = toks[vocab_index(names[k])];
        if (tok == NULL)
            continue;
        const char fill[] = {'a', ' ', '1'};
        for (int f = 0; f < 3; f++) {
            memset(s, fill[f], n);
            double t0 = cpu_now();
            int32_t cnt = realm_tokenize(tok, s, n, 0, NULL, 0);
            double dt = cpu_now() - t0;
            CHECK_MSG(cnt > 0 || (cnt == 0 && fill[f] == ' '), "%s: 1 MiB of '%c': %s", names[k],
                      fill[f], realm_last_error());
            CHECK_MSG(dt < 5.0, "%s: 1 MiB of '%c' took %.2f s of CPU time", names[k], fill[f], dt);
        }
    }
    /* One huge word: the merge queue keeps this O(n log n). */
    realm_tokenizer *gpt2 = toks[vocab_index("gpt-2")];
    if (gpt2) {
        for (size_t i = 0; i < n; i++)
            s[i] = "abcdefghij"[i % 10];
        double t0 = cpu_now();
        CHECK(roundtrip_ok(gpt2, s, n, "gpt-2 1 MiB word"));
        CHECK(cpu_now() - t0 < 5.0);
    }
    free(s);
}

/* ---- threads ------------------------------------------------------------- */

struct thread_arg {
    int v;
    struct vcases *vc;
    int errors;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    for (int rep = 0; rep < 5; rep++) {
        for (int i = 0; i < a->vc->n; i++) {
            realm_token *ids;
            int32_t n;
            if (realm_tokenize_alloc(toks[a->v], a->vc->c[i].text, a->vc->c[i].len, 0, &ids, &n) <
                0) {
                a->errors++;
                continue;
            }
            if (n != a->vc->c[i].n_ids || memcmp(ids, a->vc->c[i].ids, (size_t)n * 4) != 0)
                a->errors++;
            free(ids);
        }
    }
    return NULL;
}

static void test_threads(void)
{
    static const char *names[] = {"gpt-2", "llama-spm", "bert-bge", "deepseek-llm"};
    struct vcases vc[4] = {{0}};
    struct thread_arg args[8];
    pthread_t th[8];
    for (int i = 0; i < 4; i++)
        read_cases(names[i], &vc[i]);
    for (int t = 0; t < 8; t++) {
        args[t] = (struct thread_arg){vocab_index(names[t % 4]), &vc[t % 4], 0};
        pthread_create(&th[t], NULL, thread_main, &args[t]);
    }
    int errors = 0;
    for (int t = 0; t < 8; t++) {
        pthread_join(th[t], NULL);
        errors += args[t].errors;
    }
    CHECK_EQ_INT(errors, 0);
    for (int i = 0; i < 4; i++)
        free_cases(&vc[i]);
}

/* ---- pre-tokenizers of the vocabularies not shipped --------------------- */

/* Split text with the named pre-tokenizer; pieces joined by '|' into out. */
static int split_to(const char *pre, const char *text, size_t len, char *out, size_t cap,
                    int *n_pieces)
{
    realm__pretok *p;
    unsigned flags;
    int rc = realm__pretok_new(pre, &p, &flags);
    if (rc < 0)
        return rc;
    uint32_t *ends = NULL;
    size_t n_ends = 0, cap_ends = 0;
    rc = realm__pretok_split(p, text, len, &ends, &n_ends, &cap_ends);
    size_t o = 0, start = 0;
    bool contiguous = true;
    for (size_t k = 0; rc == 0 && k < n_ends; k++) {
        if (ends[k] <= start)
            contiguous = false;
        size_t pl = ends[k] - start;
        if (out && o + pl + 2 < cap) {
            if (k)
                out[o++] = '|';
            memcpy(out + o, text + start, pl);
            o += pl;
        }
        start = ends[k];
    }
    if (out)
        out[o] = '\0';
    if (rc == 0 && (!contiguous || start != len))
        rc = -1000; /* pieces do not cover the text exactly */
    *n_pieces = (int)n_ends;
    free(ends);
    realm__pretok_free(p);
    return rc;
}

static void check_split(const char *pre, const char *text, const char *want)
{
    char got[4096];
    int n;
    int rc = split_to(pre, text, strlen(text), got, sizeof got, &n);
    test_checks++;
    if (rc != 0 || strcmp(got, want) != 0) {
        test_failures++;
        fprintf(stderr, "%s split of ", pre);
        print_quoted(stderr, text, strlen(text));
        fprintf(stderr, "\n  expected: ");
        print_quoted(stderr, want, strlen(want));
        fprintf(stderr, "\n  got:      ");
        print_quoted(stderr, got, strlen(got));
        fprintf(stderr, " (rc %d)\n", rc);
    }
}

static void test_pretokenizers(void)
{
    /* Every input of the three vocabularies without a GGUF here: pieces are
     * non-empty and concatenate back to the input. */
    static const char *const unshipped[][2] = {
        {"llama-bpe", "llama-bpe"}, {"qwen2", "qwen2"}, {"command-r", "command-r"}};
    for (int u = 0; u < 3; u++) {
        struct vcases vc = {0};
        CHECK(read_cases(unshipped[u][0], &vc));
        int ok = 0;
        for (int i = 0; i < vc.n; i++) {
            int n;
            int rc = split_to(unshipped[u][1], vc.c[i].text, vc.c[i].len, NULL, 0, &n);
            CHECK_MSG(rc == 0, "%s case %d: split rc %d", unshipped[u][1], i, rc);
            ok += rc == 0;
        }
        printf("pre-tokenizer %-10s %d/%d inputs split into pieces that concatenate back\n",
               unshipped[u][1], ok, vc.n);
        free_cases(&vc);
    }

    /* Expected splits, worked out from the patterns (the token counts of the
     * .out files agree). */
    check_split("llama-bpe",
                "Hello, y'all! How are you \xf0\x9f\x98\x81 ?\xe6\x88\x91\xe6\x83\xb3"
                "\xe5\x9c\xa8"
                "apple\xe5\xb7\xa5\xe4\xbd\x9c"
                "1314151\xe5\xa4\xa9\xef\xbd\x9e",
                "Hello|,| y|'all|!| How| are| you| \xf0\x9f\x98\x81| ?|\xe6\x88\x91\xe6\x83\xb3"
                "\xe5\x9c\xa8"
                "apple\xe5\xb7\xa5\xe4\xbd\x9c|131|415|1|\xe5\xa4\xa9|\xef\xbd\x9e");
    check_split("llama-bpe", "    Hello\n    Hello", "   | Hello|\n|   | Hello");
    check_split("llama-bpe", "\n =", "\n| =");
    check_split("llama-bpe", "3333333", "333|333|3");
    check_split("llama-bpe", "I've been 'told he's there, 'RE you sure? 'M not",
                "I|'ve| been| '|told| he|'s| there|,| '|RE| you| sure|?| '|M| not");
    check_split("llama-bpe", "\n \n\n \t\t \t\n  \n", "\n \n\n \t\t \t\n  \n");
    check_split("llama-bpe", "a \n\n b", "a| \n\n| b");
    check_split("qwen2", "3333333", "3|3|3|3|3|3|3");
    check_split("qwen2", " Hello World!", " Hello| World|!");
    check_split("qwen2", "1314151\xe5\xa4\xa9", "1|3|1|4|1|5|1|\xe5\xa4\xa9");
    check_split("command-r", "w048 7tuijk dsdfhu", "w|0|4|8| |7|tuijk| dsdfhu");
    check_split("command-r", " Hello, world!", " Hello|,| world|!");
    check_split("command-r", "3333", "3|3|3|3");
    check_split("gpt-2", "  Hello", " | Hello");
    check_split("gpt-2", "'s 're 'RE", "'s| '|re| '|RE");
    check_split("gpt-4o", "HelloWorld isn't", "Hello|World| isn't");
    check_split("superbpe", "1234567 x", "1|234|567| x");
    check_split("deepseek-llm", "Hi\n\nthere  ", "Hi|\n|\n|there|  ");

    /* Every known name compiles; unknown ones are a clear error. */
    static const char *names[] = {
        "default",    "llama-bpe", "qwen2",      "gpt-2",       "deepseek-llm", "deepseek-coder",
        "falcon",     "starcoder", "refact",     "command-r",   "olmo",         "dbrx",
        "smaug-bpe",  "poro-chat", "jais",       "tekken",      "gpt-4o",       "mpt",
        "chameleon",  "tiny_aya",  "exaone-moe", "deepseek-v3", "youtu",        "bailingmoe",
        "seed-coder", "viking",    "jais-2",     "qwen35",      "superbpe"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        realm__pretok *p;
        int rc = realm__pretok_new(names[i], &p, NULL);
        CHECK_MSG(rc == 0, "%s: %s", names[i], realm_last_error());
        if (rc == 0) {
            /* A piece of every kind of text must split without error. */
            static const char mix[] = "Hello World 123 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x81"
                                      " it's\r\n\t x";
            uint32_t *ends = NULL;
            size_t n = 0, cap = 0;
            CHECK_RC(realm__pretok_split(p, mix, sizeof mix - 1, &ends, &n, &cap), 0);
            CHECK(n > 0 && ends[n - 1] == sizeof mix - 1);
            free(ends);
            realm__pretok_free(p);
        }
    }
    /* The patterns are llama.cpp's, byte for byte (guard against edits). */
    const char *const *pat = realm__pretok_patterns("llama-bpe");
    CHECK(pat != NULL && pat[1] == NULL &&
          strcmp(pat[0], "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|"
                         "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
                         "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+") == 0);
    pat = realm__pretok_patterns("gpt-2");
    CHECK(pat != NULL && pat[1] == NULL &&
          strcmp(pat[0], "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|"
                         "\\s+(?!\\S)") == 0);
    CHECK(realm__pretok_patterns("kimi-k2") == NULL);

    realm__pretok *p;
    CHECK_RC(realm__pretok_new("no-such-pre", &p, NULL), REALM_ERR_UNSUPPORTED);
    CHECK(strstr(realm_last_error(), "no-such-pre") != NULL);

    /* A long run of capitals through tekken's lookahead groups. */
    const size_t n = 200000;
    char *caps = malloc(n);
    memset(caps, 'A', n);
    int pieces;
    CHECK_RC(split_to("tekken", caps, n, NULL, 0, &pieces), 0);
    CHECK_RC(split_to("gpt-4o", caps, n, NULL, 0, &pieces), 0);
    free(caps);
    /* Beyond PCRE2's stack: a clean error, not a crash. */
    const size_t huge = 3u << 20;
    caps = malloc(huge);
    memset(caps, 'A', huge);
    int rc = split_to("gpt-4o", caps, huge, NULL, 0, &pieces);
    CHECK_MSG(rc == 0 || rc == REALM_ERR_RANGE, "rc %d", rc);
    free(caps);
}

/* ---- streaming detokenizer ---------------------------------------------- */

static size_t take_all(realm_detok_stream *s, char *out, size_t cap)
{
    size_t o = 0, k;
    while ((k = realm_detok_stream_take(s, out + o, cap - o)) > 0)
        o += k;
    return o;
}

static void test_stream(void)
{
    realm_tokenizer *spm = toks[vocab_index("llama-spm")];
    realm_tokenizer *gpt2 = toks[vocab_index("gpt-2")];
    if (!spm || !gpt2)
        return;
    realm_detok_stream *s;
    char out[256];

    /* "€" = E2 82 AC as three byte tokens: nothing until the last. */
    CHECK_RC(realm_detok_stream_new(spm, 0, &s), 0);
    realm_token e2 = realm_tokenizer_find(spm, "<0xE2>", 6);
    realm_token x82 = realm_tokenizer_find(spm, "<0x82>", 6);
    realm_token xac = realm_tokenizer_find(spm, "<0xAC>", 6);
    CHECK(e2 > 0 && x82 > 0 && xac > 0);
    CHECK_RC(realm_detok_stream_push(s, e2), 0);
    CHECK_EQ_INT(realm_detok_stream_ready(s), 0);
    CHECK_RC(realm_detok_stream_push(s, x82), 0);
    CHECK_EQ_INT(realm_detok_stream_take(s, out, sizeof out), 0);
    CHECK_RC(realm_detok_stream_push(s, xac), 0);
    CHECK_EQ_INT(realm_detok_stream_ready(s), 3);
    CHECK(realm_detok_stream_take(s, out, sizeof out) == 3 && memcmp(out, "\xe2\x82\xac", 3) == 0);
    /* A byte that can never start a character is released as U+FFFD; an
     * incomplete one at the end becomes U+FFFD on flush. */
    realm_token xff = realm_tokenizer_find(spm, "<0xFF>", 6);
    CHECK_RC(realm_detok_stream_push(s, xff), 0);
    CHECK_RC(realm_detok_stream_push(s, e2), 0);
    CHECK(take_all(s, out, sizeof out) == 3 && memcmp(out, "\xef\xbf\xbd", 3) == 0);
    realm_detok_stream_flush(s);
    CHECK(take_all(s, out, sizeof out) == 3 && memcmp(out, "\xef\xbf\xbd", 3) == 0);
    realm_detok_stream_free(s);

    /* Every split of a multi-byte text into byte tokens: released text is
     * always valid UTF-8 and adds up to the input. */
    static const char text[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x81z";
    CHECK_RC(realm_detok_stream_new(spm, 0, &s), 0);
    size_t got = 0;
    char all[64];
    for (size_t i = 0; i < sizeof text - 1; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", (unsigned char)text[i]);
        CHECK_RC(realm_detok_stream_push(s, realm_tokenizer_find(spm, name, 6)), 0);
        size_t k = take_all(s, all + got, sizeof all - got);
        for (size_t j = got; j < got + k;) {
            uint32_t cp;
            int c = realm__utf8_decode((const unsigned char *)all + j, got + k - j, &cp);
            CHECK(c > 0);
            j += c > 0 ? (size_t)c : 1;
        }
        got += k;
    }
    realm_detok_stream_flush(s);
    got += take_all(s, all + got, sizeof all - got);
    CHECK(got == sizeof text - 1 && memcmp(all, text, got) == 0);
    realm_detok_stream_free(s);

    /* Stop strings: a possible start is held back; a false start released;
     * a complete stop string cuts the output. */
    CHECK_RC(realm_detok_stream_new(gpt2, 0, &s), 0);
    CHECK_RC(realm_detok_stream_add_stop(s, "\nUser:", 6), 0);
    CHECK_RC(realm_detok_stream_add_stop(s, "###", 3), 0);
    CHECK_RC(realm_detok_stream_push_bytes(s, "Hi there\nUs", 11), 0);
    CHECK(take_all(s, out, sizeof out) == 8 && memcmp(out, "Hi there", 8) == 0);
    CHECK_RC(realm_detok_stream_push_bytes(s, "ually ##", 8), 0);
    CHECK(take_all(s, out, sizeof out) == 9 && memcmp(out, "\nUsually ", 9) == 0);
    CHECK_RC(realm_detok_stream_push_bytes(s, "# done", 6), REALM_DETOK_STOPPED);
    CHECK_EQ_INT(realm_detok_stream_stop_index(s), 1);
    CHECK_EQ_INT(take_all(s, out, sizeof out), 0);
    CHECK_RC(realm_detok_stream_push_bytes(s, "more", 4), REALM_DETOK_STOPPED);
    realm_detok_stream_flush(s);
    CHECK_EQ_INT(take_all(s, out, sizeof out), 0);
    CHECK_RC(realm_detok_stream_add_stop(s, "x", 1), REALM_ERR_INVAL);
    realm_detok_stream_free(s);

    /* Stop string across token boundaries, fed as real tokens. */
    CHECK_RC(realm_detok_stream_new(gpt2, 0, &s), 0);
    CHECK_RC(realm_detok_stream_add_stop(s, "world!", 6), 0);
    realm_token *ids;
    int32_t n;
    CHECK_RC(realm_tokenize_alloc(gpt2, "Hello, world! Bye", 17, 0, &ids, &n), 0);
    int rc = 0;
    size_t o = 0;
    for (int32_t i = 0; i < n && rc == 0; i++) {
        rc = realm_detok_stream_push(s, ids[i]);
        o += take_all(s, out + o, sizeof out - o);
    }
    CHECK_EQ_INT(rc, REALM_DETOK_STOPPED);
    CHECK(o == 7 && memcmp(out, "Hello, ", 7) == 0);
    free(ids);
    /* Held-back text is released at the end when no stop came. */
    realm_detok_stream_free(s);
    CHECK_RC(realm_detok_stream_new(gpt2, 0, &s), 0);
    CHECK_RC(realm_detok_stream_add_stop(s, "world!", 6), 0);
    CHECK_RC(realm_detok_stream_push_bytes(s, "Hello, wor", 10), 0);
    CHECK_EQ_INT(take_all(s, out, sizeof out), 7);
    realm_detok_stream_flush(s);
    CHECK(take_all(s, out, sizeof out) == 3 && memcmp(out, "wor", 3) == 0);
    CHECK_RC(realm_detok_stream_push(s, 99999), REALM_ERR_INVAL);
    realm_detok_stream_free(s);

    /* Small take() buffers never split a character. */
    CHECK_RC(realm_detok_stream_new(gpt2, 0, &s), 0);
    CHECK_RC(realm_detok_stream_push_bytes(s, "\xe2\x82\xac\xe2\x82\xac", 6), 0);
    CHECK_EQ_INT(realm_detok_stream_take(s, out, 2), 0);
    CHECK_EQ_INT(realm_detok_stream_take(s, out, 5), 3);
    CHECK_EQ_INT(realm_detok_stream_take(s, out, 5), 3);
    realm_detok_stream_free(s);
}

/* ---- bad metadata -------------------------------------------------------- */

struct kvspec {
    const char *model; /* NULL: no tokenizer.ggml.model */
    const char *pre;   /* NULL: none */
    int n_tokens;      /* -1: no tokens key */
    bool dup;          /* make tokens 0 and 1 equal */
    int n_scores;      /* -1: none */
    int n_types;       /* -1: none */
    bool merges;
    int64_t bos; /* -1: none */
    bool tokens_as_ints;
};

/* Write a small vocabulary GGUF to a temp file and try to load it. */
static int load_spec(const struct kvspec *k, realm_tokenizer **tok_out)
{
    realm_gguf_writer *w;
    realm_gguf_writer_new(&w);
    realm_gguf_set_str(w, "general.architecture", "llama", 5);
    if (k->model)
        realm_gguf_set_str(w, "tokenizer.ggml.model", k->model, strlen(k->model));
    if (k->pre)
        realm_gguf_set_str(w, "tokenizer.ggml.pre", k->pre, strlen(k->pre));
    static const char *texts[] = {"a", "b", "ab", "c", "abc", "<s>", "</s>", "d"};
    realm_gguf_str strs[8];
    for (int i = 0; i < 8; i++)
        strs[i] = (realm_gguf_str){texts[i], strlen(texts[i])};
    if (k->dup)
        strs[1] = strs[0];
    if (k->tokens_as_ints) {
        int32_t v[8] = {0};
        realm_gguf_set_arr(w, "tokenizer.ggml.tokens", REALM_GGUF_INT32, v, 8);
    } else if (k->n_tokens >= 0) {
        realm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, (uint64_t)k->n_tokens);
    }
    float scores[8] = {0, 0, -1, 0, -2, 0, 0, 0};
    if (k->n_scores >= 0)
        realm_gguf_set_arr(w, "tokenizer.ggml.scores", REALM_GGUF_FLOAT32, scores,
                           (uint64_t)k->n_scores);
    int32_t types[8] = {1, 1, 1, 1, 1, 3, 3, 1};
    if (k->n_types >= 0)
        realm_gguf_set_arr(w, "tokenizer.ggml.token_type", REALM_GGUF_INT32, types,
                           (uint64_t)k->n_types);
    if (k->merges) {
        realm_gguf_str m[2] = {{"a b", 3}, {"ab c", 4}};
        realm_gguf_set_arr_str(w, "tokenizer.ggml.merges", m, 2);
    }
    if (k->bos >= 0)
        realm_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)k->bos);
    char path[] = "/tmp/realm-test-tok-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    int rc = realm_gguf_writer_write(w, path);
    realm_gguf_writer_free(w);
    if (rc < 0) {
        unlink(path);
        return -1000;
    }
    realm_gguf *g;
    rc = realm_gguf_open(path, &g);
    if (rc < 0) {
        unlink(path);
        return -1001;
    }
    realm_tokenizer *tok = NULL;
    rc = realm_tokenizer_load(g, &tok);
    realm_gguf_close(g);
    unlink(path);
    if (tok_out)
        *tok_out = tok;
    else
        realm_tokenizer_free(tok);
    return rc;
}

static void expect_load_error(const struct kvspec *k, int code, const char *needle)
{
    int rc = load_spec(k, NULL);
    test_checks++;
    if (rc != code || strstr(realm_last_error(), needle) == NULL) {
        test_failures++;
        fprintf(stderr, "bad metadata: got %d '%s', expected %d with '%s'\n", rc,
                realm_last_error(), code, needle);
    }
}

static void test_bad_metadata(void)
{
    const struct kvspec good_spm = {"llama", NULL, 8, false, 8, 8, false, -1, false};
    const struct kvspec good_bpe = {"gpt2", "gpt-2", 8, false, -1, 8, true, -1, false};
    realm_tokenizer *tok = NULL;
    CHECK_RC(load_spec(&good_spm, &tok), 0);
    if (tok) {
        realm_token ids[8];
        /* "abc" with scores: "ab" (-1) beats "bc" (absent), then "abc" (-2). */
        int32_t n = realm_tokenize(tok, "abc", 3, REALM_TOKENIZE_ADD_SPECIAL, ids, 8);
        /* No U+2581 in this vocabulary, and no byte tokens: the prefixed
         * space has no token and falls back to UNK (id 0 by default: "a"). */
        CHECK(n >= 2);
        realm_tokenizer_free(tok);
    }
    tok = NULL;
    CHECK_RC(load_spec(&good_bpe, &tok), 0);
    if (tok) {
        realm_token ids[8];
        int32_t n = realm_tokenize(tok, "abcab", 5, 0, ids, 8);
        CHECK(n == 2 && ids[0] == 4 && ids[1] == 2);
        realm_tokenizer_free(tok);
    }

    struct kvspec k;
    k = good_spm, k.model = NULL;
    expect_load_error(&k, REALM_ERR_FORMAT, "tokenizer.ggml.model");
    k = good_spm, k.n_tokens = -1, k.n_scores = -1, k.n_types = -1;
    expect_load_error(&k, REALM_ERR_FORMAT, "tokenizer.ggml.tokens");
    k = good_spm, k.n_tokens = 0, k.n_scores = -1, k.n_types = -1;
    expect_load_error(&k, REALM_ERR_FORMAT, "tokenizer.ggml.tokens is empty");
    k = good_spm, k.tokens_as_ints = true;
    expect_load_error(&k, REALM_ERR_FORMAT, "tokenizer.ggml.tokens");
    k = good_spm, k.n_scores = 7;
    expect_load_error(&k, REALM_ERR_FORMAT, "tokenizer.ggml.scores has 7 entries");
    k = good_spm, k.n_types = 5;
    expect_load_error(&k, REALM_ERR_FORMAT, "tokenizer.ggml.token_type has 5 entries");
    k = good_spm, k.model = "sentencepiece-v9";
    expect_load_error(&k, REALM_ERR_UNSUPPORTED, "unknown tokenizer model 'sentencepiece-v9'");
    k = good_spm, k.model = "t5";
    expect_load_error(&k, REALM_ERR_UNSUPPORTED, "'t5'");
    k = good_bpe, k.pre = "llama-9000";
    expect_load_error(&k, REALM_ERR_UNSUPPORTED, "unknown pre-tokenizer 'llama-9000'");
    k = good_bpe, k.merges = false;
    expect_load_error(&k, REALM_ERR_FORMAT, "tokenizer.ggml.merges");
    k = good_spm, k.dup = true;
    expect_load_error(&k, REALM_ERR_FORMAT, "same text");
    k = good_spm, k.bos = 8;
    expect_load_error(&k, REALM_ERR_FORMAT, "tokenizer.ggml.bos_token_id = 8");
    /* A gpt2 vocabulary without a pre name uses the default regexes. */
    k = good_bpe, k.pre = NULL;
    CHECK_RC(load_spec(&k, NULL), 0);
}

int main(void)
{
    test_begin("tokenizer", 300);
    test_vocab_files();
    test_random_roundtrips();
    test_stories260k();
    test_special();
    test_buffers();
    test_stream();
    test_pretokenizers();
    test_bad_metadata();
    test_threads();
    test_long();
    for (int v = 0; v < N_VOCABS; v++)
        realm_tokenizer_free(toks[v]);
    return test_end();
}
