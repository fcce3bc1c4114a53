/*
 * GGUF reader and writer (realm/gguf.h).
 *
 * - Real files from ../shared/testdata: known values, and a read -> write ->
 *   read round trip that must reproduce every value, every tensor byte, and
 *   (these files being laid out the way the writer lays them out) the very
 *   same file.
 * - Every metadata type written and read back, and the streaming writer.
 * - Malformed images built in memory with a small byte builder: each must
 *   fail with the expected code and a message containing the expected
 *   phrase; every prefix of a valid file must fail; byte flips must never
 *   crash.
 *
 * - The string table both the reader and the tokenizer index names with.
 *
 * The tests assume a little-endian host (as does Realm).
 * Set GGUF_TEST_VERBOSE=1 to print every expected error message.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "core/strmap_internal.h"
#include "realm/error.h"
#include "realm/gguf.h"
#include "test_util.h"

static bool verbose;

/* ---- byte builder for hand-made images ----------------------------------- */

typedef struct bbuf {
    uint8_t *p;
    size_t len;
    size_t cap;
} bbuf;

static void b_bytes(bbuf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (b->p == NULL)
            abort();
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void b_u8(bbuf *b, uint8_t v)
{
    b_bytes(b, &v, 1);
}

static void b_u32(bbuf *b, uint32_t v)
{
    uint8_t x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    b_bytes(b, x, 4);
}

static void b_u64(bbuf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    b_bytes(b, x, 8);
}

static void b_str(bbuf *b, const char *s)
{
    b_u64(b, strlen(s));
    b_bytes(b, s, strlen(s));
}

static void b_hdr(bbuf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    b_bytes(b, "GGUF", 4);
    b_u32(b, version);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}

static void b_kv_u32(bbuf *b, const char *key, uint32_t v)
{
    b_str(b, key);
    b_u32(b, REALM_GGUF_UINT32);
    b_u32(b, v);
}

static void b_kv_str(bbuf *b, const char *key, const char *v)
{
    b_str(b, key);
    b_u32(b, REALM_GGUF_STRING);
    b_str(b, v);
}

static void b_tensor(bbuf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                     uint64_t offset)
{
    b_str(b, name);
    b_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        b_u64(b, ne[d]);
    b_u32(b, type);
    b_u64(b, offset);
}

static void b_fill(bbuf *b, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++)
        b_u8(b, (uint8_t)(v + i));
}

static void b_pad(bbuf *b, size_t align)
{
    while (b->len % align)
        b_u8(b, 0);
}

static void b_set_u32(bbuf *b, size_t off, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b->p[off + i] = (uint8_t)(v >> (8 * i));
}

static void b_set_u64(bbuf *b, size_t off, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b->p[off + i] = (uint8_t)(v >> (8 * i));
}

static void b_free(bbuf *b)
{
    free(b->p);
    *b = (bbuf){0};
}

/* ---- helpers ------------------------------------------------------------- */

/* Read every byte the handle exposes, so ASan sees any bad pointer. */
static uint64_t walk(const realm_gguf *g)
{
    uint64_t sum = realm_gguf_version(g) + realm_gguf_alignment(g) + realm_gguf_data_offset(g);
    for (int64_t i = 0; i < realm_gguf_n_kv(g); i++) {
        const char *k = realm_gguf_kv_key(g, i);
        sum += strlen(k) + (uint64_t)realm_gguf_find_kv(g, k);
        const realm_gguf_type t = realm_gguf_kv_type(g, i);
        if (t == REALM_GGUF_STRING) {
            realm_gguf_str s = realm_gguf_kv_str(g, i);
            for (uint64_t j = 0; j < s.len; j++)
                sum += (uint8_t)s.data[j];
        } else if (t == REALM_GGUF_ARRAY) {
            const realm_gguf_type et = realm_gguf_kv_arr_type(g, i);
            const uint64_t n = realm_gguf_kv_arr_n(g, i);
            if (et == REALM_GGUF_STRING) {
                for (uint64_t j = 0; j < n; j++) {
                    realm_gguf_str s = realm_gguf_kv_arr_str(g, i, j);
                    for (uint64_t c = 0; c < s.len; c++)
                        sum += (uint8_t)s.data[c];
                }
            } else {
                const uint8_t *d = realm_gguf_kv_arr_data(g, i);
                for (uint64_t j = 0; j < n * realm_gguf_type_size(et); j++)
                    sum += d[j];
            }
        } else {
            const uint8_t *d = realm_gguf_kv_scalar(g, i);
            for (size_t j = 0; j < realm_gguf_type_size(t); j++)
                sum += d[j];
        }
    }
    for (int64_t i = 0; i < realm_gguf_n_tensors(g); i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        sum += (uint64_t)(realm_gguf_find_tensor(g, t->name) == t);
        const uint8_t *d = t->data;
        for (uint64_t j = 0; j < t->nbytes; j++)
            sum += d[j];
    }
    return sum;
}

/* Open an exact-size heap copy of b (so ASan catches over-reads) and expect
 * failure with `code` and a message containing `phrase`. */
static void expect_fail_(const char *file, int line, const bbuf *b, int code, const char *phrase)
{
    uint8_t *copy = malloc(b->len ? b->len : 1);
    if (b->len)
        memcpy(copy, b->p, b->len);
    realm_gguf *g = (realm_gguf *)&g; /* must be reset to NULL */
    realm_clear_error();
    const int rc = realm_gguf_open_memory(copy, b->len, &g);
    test_checks++;
    if (rc != code || g != NULL || strstr(realm_last_error(), phrase) == NULL) {
        test_failures++;
        fprintf(stderr, "%s:%d: expected %s with \"%s\", got %s: \"%s\"\n", file, line,
                realm_err_name(code), phrase, realm_err_name(rc), realm_last_error());
    } else if (verbose) {
        printf("  ok %s: %s\n", realm_err_name(rc), realm_last_error());
    }
    if (rc == REALM_OK)
        realm_gguf_close(g);
    free(copy);
}
#define EXPECT_FAIL(b, code, phrase) expect_fail_(__FILE__, __LINE__, (b), (code), (phrase))

/* Same for a message produced by any call. */
#define CHECK_ERR(call, code, phrase)                                                              \
    do {                                                                                           \
        realm_clear_error();                                                                       \
        const int rc_ = (call);                                                                    \
        test_checks++;                                                                             \
        if (rc_ != (code) || strstr(realm_last_error(), (phrase)) == NULL) {                       \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: %s: expected %s with \"%s\", got %s: \"%s\"\n", __FILE__,      \
                    __LINE__, #call, realm_err_name(code), (phrase), realm_err_name(rc_),          \
                    realm_last_error());                                                           \
        } else if (verbose) {                                                                      \
            printf("  ok %s: %s\n", realm_err_name(rc_), realm_last_error());                      \
        }                                                                                          \
    } while (0)

static char *temp_path(const char *tag)
{
    const char *dir = getenv("TMPDIR");
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/realm-test-gguf-%s-XXXXXX", dir && dir[0] ? dir : "/tmp", tag);
    const int fd = mkstemp(p);
    if (fd < 0) {
        fprintf(stderr, "mkstemp %s: %s\n", p, strerror(errno));
        exit(1);
    }
    close(fd);
    return p;
}

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    if (fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return p;
}

static bool str_eq(realm_gguf_str s, const char *c)
{
    return s.data != NULL && s.len == strlen(c) && memcmp(s.data, c, s.len) == 0;
}

/* Every key, type, value and tensor of a equals that of b, in order. */
static void compare_gguf(const realm_gguf *a, const realm_gguf *b, const char *what)
{
    const int failures = test_failures;
    CHECK_EQ_INT(realm_gguf_alignment(a), realm_gguf_alignment(b));
    CHECK_EQ_INT(realm_gguf_n_kv(a), realm_gguf_n_kv(b));
    CHECK_EQ_INT(realm_gguf_n_tensors(a), realm_gguf_n_tensors(b));
    const int64_t n_kv =
        realm_gguf_n_kv(a) < realm_gguf_n_kv(b) ? realm_gguf_n_kv(a) : realm_gguf_n_kv(b);
    for (int64_t i = 0; i < n_kv; i++) {
        const char *key = realm_gguf_kv_key(a, i);
        CHECK_EQ_STR(key, realm_gguf_kv_key(b, i));
        CHECK_EQ_INT(realm_gguf_find_kv(b, key), i);
        const realm_gguf_type t = realm_gguf_kv_type(a, i);
        CHECK_EQ_INT(t, realm_gguf_kv_type(b, i));
        if (t != realm_gguf_kv_type(b, i))
            continue;
        if (t == REALM_GGUF_STRING) {
            realm_gguf_str x = realm_gguf_kv_str(a, i), y = realm_gguf_kv_str(b, i);
            CHECK(x.len == y.len && memcmp(x.data, y.data, x.len) == 0);
        } else if (t == REALM_GGUF_ARRAY) {
            const realm_gguf_type et = realm_gguf_kv_arr_type(a, i);
            const uint64_t n = realm_gguf_kv_arr_n(a, i);
            CHECK_EQ_INT(et, realm_gguf_kv_arr_type(b, i));
            CHECK_EQ_INT(n, realm_gguf_kv_arr_n(b, i));
            if (et != realm_gguf_kv_arr_type(b, i) || n != realm_gguf_kv_arr_n(b, i))
                continue;
            if (et == REALM_GGUF_STRING) {
                uint64_t bad = 0;
                for (uint64_t j = 0; j < n; j++) {
                    realm_gguf_str x = realm_gguf_kv_arr_str(a, i, j);
                    realm_gguf_str y = realm_gguf_kv_arr_str(b, i, j);
                    bad += x.len != y.len || memcmp(x.data, y.data, x.len) != 0;
                }
                CHECK_EQ_INT(bad, 0);
            } else {
                CHECK(memcmp(realm_gguf_kv_arr_data(a, i), realm_gguf_kv_arr_data(b, i),
                             n * realm_gguf_type_size(et)) == 0);
            }
        } else {
            CHECK(memcmp(realm_gguf_kv_scalar(a, i), realm_gguf_kv_scalar(b, i),
                         realm_gguf_type_size(t)) == 0);
        }
    }
    const int64_t n_t = realm_gguf_n_tensors(a) < realm_gguf_n_tensors(b) ? realm_gguf_n_tensors(a)
                                                                          : realm_gguf_n_tensors(b);
    for (int64_t i = 0; i < n_t; i++) {
        const realm_gguf_tensor *x = realm_gguf_tensor_at(a, i), *y = realm_gguf_tensor_at(b, i);
        CHECK_EQ_STR(x->name, y->name);
        CHECK(realm_gguf_find_tensor(b, x->name) == y);
        CHECK_EQ_INT(x->n_dims, y->n_dims);
        for (int d = 0; d < REALM_GGUF_MAX_DIMS; d++)
            CHECK_EQ_INT(x->ne[d], y->ne[d]);
        CHECK_EQ_INT(x->type, y->type);
        CHECK_EQ_INT(x->nbytes, y->nbytes);
        CHECK(x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes) == 0);
    }
    if (test_failures != failures)
        fprintf(stderr, "  (while comparing %s)\n", what);
}

/*
 * Copy every key and tensor of the file at path into a writer, write it,
 * read it back and compare. The real files are laid out as the writer lays
 * files out, so the copy must also be byte-identical.
 */
static void round_trip(const char *path)
{
    realm_gguf *g = NULL, *h = NULL;
    CHECK_RC(realm_gguf_open(path, &g), REALM_OK);
    if (g == NULL)
        return;
    realm_gguf_writer *w = NULL;
    CHECK_RC(realm_gguf_writer_new(&w), REALM_OK);
    for (int64_t i = 0; i < realm_gguf_n_kv(g); i++)
        CHECK_RC(realm_gguf_copy_kv(w, g, i), REALM_OK);
    for (int64_t i = 0; i < realm_gguf_n_tensors(g); i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        CHECK_RC(realm_gguf_add_tensor(w, t->name, t->n_dims, t->ne, t->type, t->data), REALM_OK);
    }
    char *tmp = temp_path("rt");
    CHECK_RC(realm_gguf_writer_write(w, tmp), REALM_OK);
    CHECK_RC(realm_gguf_open(tmp, &h), REALM_OK);
    if (h != NULL) {
        compare_gguf(g, h, path);
        size_t na = 0, nb = 0;
        uint8_t *a = read_file(path, &na), *b = read_file(tmp, &nb);
        CHECK(a != NULL && b != NULL);
        CHECK_MSG(na == nb && a && b && memcmp(a, b, na) == 0,
                  "%s: rewritten file differs (%zu vs %zu bytes)", path, na, nb);
        free(a);
        free(b);
        realm_gguf_close(h);
    }
    unlink(tmp);
    free(tmp);
    realm_gguf_writer_free(w);
    realm_gguf_close(g);
}

/* ---- real files ---------------------------------------------------------- */

/*
 * Every token text and score of stories260K.gguf against tok512.bin, the
 * llama2.c tokenizer the GGUF was converted from (u32 max length, then per
 * token: f32 score, i32 length, bytes). The converter turned ids 1 and 2
 * into "<s>" / "</s>" and spaces into U+2581, so undo that first.
 */
static void check_tok512(const realm_gguf *g, int64_t tokens_kv, const void *scores)
{
    size_t size = 0;
    uint8_t *tok = read_file(test_data("models/tok512.bin"), &size);
    CHECK(tok != NULL && size == 6227);
    if (tok == NULL)
        return;
    size_t pos = 4;
    int bad_text = 0, bad_score = 0;
    for (uint64_t i = 0; i < 512 && pos + 8 <= size; i++) {
        float score;
        int32_t len;
        memcpy(&score, tok + pos, 4);
        memcpy(&len, tok + pos + 4, 4);
        pos += 8;
        if (len < 0 || pos + (size_t)len > size)
            break;
        realm_gguf_str s = realm_gguf_kv_arr_str(g, tokens_kv, i);
        char text[64];
        size_t n = 0;
        for (uint64_t c = 0; s.data && c < s.len && n < sizeof text; c++) {
            if (c + 2 < s.len && memcmp(s.data + c, "\xe2\x96\x81", 3) == 0) {
                text[n++] = ' ';
                c += 2;
            } else {
                text[n++] = s.data[c];
            }
        }
        if (i == 1 || i == 2) {
            n = (size_t)snprintf(text, sizeof text, "\n%.*s\n", (int)s.len, s.data);
        }
        if (n != (size_t)len || memcmp(text, tok + pos, n) != 0) {
            if (bad_text++ < 3)
                fprintf(stderr, "token %llu: gguf '%.*s' vs tok512 '%.*s'\n", (unsigned long long)i,
                        (int)s.len, s.data, (int)len, tok + pos);
        }
        float sc;
        memcpy(&sc, (const uint8_t *)scores + 4 * i, 4);
        bad_score += sc != score;
        pos += (size_t)len;
    }
    CHECK_EQ_INT(pos, size);
    CHECK_EQ_INT(bad_text, 0);
    CHECK_EQ_INT(bad_score, 0);
    free(tok);
}

static void test_stories(void)
{
    const char *path = test_data("models/stories260K.gguf");
    realm_gguf *g = NULL;
    CHECK_RC(realm_gguf_open(path, &g), REALM_OK);
    if (g == NULL)
        return;
    CHECK_EQ_INT(realm_gguf_version(g), 3);
    CHECK_EQ_INT(realm_gguf_alignment(g), 32);
    CHECK_EQ_INT(realm_gguf_file_size(g), 1185376);
    CHECK_EQ_INT(realm_gguf_data_offset(g) % 32, 0);
    CHECK_EQ_INT(realm_gguf_n_tensors(g), 48);

    uint32_t u = 0;
    CHECK_RC(realm_gguf_get_u32(g, "llama.block_count", &u), REALM_OK);
    CHECK_EQ_INT(u, 5);
    CHECK_RC(realm_gguf_get_u32(g, "llama.embedding_length", &u), REALM_OK);
    CHECK_EQ_INT(u, 64);
    CHECK_RC(realm_gguf_get_u32(g, "llama.feed_forward_length", &u), REALM_OK);
    CHECK_EQ_INT(u, 172);
    CHECK_RC(realm_gguf_get_u32(g, "llama.attention.head_count", &u), REALM_OK);
    CHECK_EQ_INT(u, 8);
    CHECK_RC(realm_gguf_get_u32(g, "llama.attention.head_count_kv", &u), REALM_OK);
    CHECK_EQ_INT(u, 4);
    CHECK_RC(realm_gguf_get_u32(g, "llama.rope.dimension_count", &u), REALM_OK);
    CHECK_EQ_INT(u, 8);
    CHECK_RC(realm_gguf_get_u32(g, "llama.context_length", &u), REALM_OK);
    CHECK_EQ_INT(u, 2048);
    CHECK_RC(realm_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u), REALM_OK);
    CHECK_EQ_INT(u, 1);
    CHECK_RC(realm_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u), REALM_OK);
    CHECK_EQ_INT(u, 2);
    CHECK_RC(realm_gguf_get_u32(g, "tokenizer.ggml.unknown_token_id", &u), REALM_OK);
    CHECK_EQ_INT(u, 0);
    int64_t iv = 0;
    CHECK_RC(realm_gguf_get_int(g, "llama.block_count", &iv), REALM_OK);
    CHECK_EQ_INT(iv, 5);
    float eps = 0;
    CHECK_RC(realm_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps), REALM_OK);
    CHECK_NEAR(eps, 1e-5, 1e-12);
    CHECK_EQ_INT(realm_gguf_find_kv(g, "llama.rope.freq_base"), -1);
    realm_gguf_str s = {0};
    CHECK_RC(realm_gguf_get_str(g, "general.architecture", &s), REALM_OK);
    CHECK(str_eq(s, "llama"));
    CHECK_RC(realm_gguf_get_str(g, "tokenizer.ggml.model", &s), REALM_OK);
    CHECK(str_eq(s, "llama"));

    int64_t ki = -1;
    uint64_t n = 0;
    CHECK_RC(realm_gguf_get_arr(g, "tokenizer.ggml.tokens", REALM_GGUF_STRING, &ki, &n), REALM_OK);
    CHECK_EQ_INT(n, 512);
    CHECK(str_eq(realm_gguf_kv_arr_str(g, ki, 0), "<unk>"));
    CHECK(str_eq(realm_gguf_kv_arr_str(g, ki, 1), "<s>"));
    CHECK(str_eq(realm_gguf_kv_arr_str(g, ki, 2), "</s>"));
    CHECK(str_eq(realm_gguf_kv_arr_str(g, ki, 3), "<0x00>"));
    CHECK(str_eq(realm_gguf_kv_arr_str(g, ki, 258), "<0xFF>"));
    CHECK(realm_gguf_kv_arr_str(g, ki, 512).data == NULL);
    CHECK(realm_gguf_kv_arr_data(g, ki) == NULL);
    const int64_t tokens_kv = ki;
    CHECK_RC(realm_gguf_get_arr(g, "tokenizer.ggml.scores", REALM_GGUF_FLOAT32, &ki, &n), REALM_OK);
    CHECK_EQ_INT(n, 512);
    CHECK(realm_gguf_kv_arr_data(g, ki) != NULL);
    if (n == 512)
        check_tok512(g, tokens_kv, realm_gguf_kv_arr_data(g, ki));
    CHECK_RC(realm_gguf_get_arr(g, "tokenizer.ggml.token_type", REALM_GGUF_INT32, &ki, &n),
             REALM_OK);
    CHECK_EQ_INT(n, 512);
    if (n == 512) {
        int32_t tt[4];
        memcpy(tt, realm_gguf_kv_arr_data(g, ki), sizeof tt);
        CHECK_EQ_INT(tt[0], 2); /* <unk>: unknown */
        CHECK_EQ_INT(tt[1], 3); /* <s>: control */
        CHECK_EQ_INT(tt[3], 6); /* <0x00>: byte */
    }

    /* Typed getter errors. */
    CHECK_ERR(realm_gguf_get_u32(g, "general.architecture", &u), REALM_ERR_TYPE,
              "metadata 'general.architecture' is string, not uint32");
    CHECK_ERR(realm_gguf_get_str(g, "llama.block_count", &s), REALM_ERR_TYPE,
              "metadata 'llama.block_count' is uint32, not string");
    CHECK_ERR(realm_gguf_get_u64(g, "llama.block_count", &(uint64_t){0}), REALM_ERR_TYPE,
              "is uint32, not uint64");
    CHECK_ERR(realm_gguf_get_arr(g, "tokenizer.ggml.tokens", REALM_GGUF_FLOAT32, &ki, &n),
              REALM_ERR_TYPE, "is array of string, not array of float32");
    CHECK_ERR(realm_gguf_get_arr(g, "llama.block_count", REALM_GGUF_UINT32, &ki, &n),
              REALM_ERR_TYPE, "is uint32, not array of uint32");
    CHECK_ERR(realm_gguf_get_int(g, "llama.attention.layer_norm_rms_epsilon", &iv), REALM_ERR_TYPE,
              "is float32, not an integer");
    CHECK_ERR(realm_gguf_get_u32(g, "llama.no_such_key", &u), REALM_ERR_NOTFOUND,
              "'llama.no_such_key' not found");
    CHECK_ERR(realm_gguf_get_arr(g, "no.such.array", REALM_GGUF_STRING, &ki, &n),
              REALM_ERR_NOTFOUND, "not found");

    /* Tensors: all F32; the data agrees with llama2.c's checkpoint, which
     * holds the same arrays after a 28-byte header. */
    int64_t n_f32 = 0;
    for (int64_t i = 0; i < realm_gguf_n_tensors(g); i++)
        n_f32 += realm_gguf_tensor_at(g, i)->type == REALM_TYPE_F32;
    CHECK_EQ_INT(n_f32, 48);
    CHECK(realm_gguf_tensor_at(g, 48) == NULL && realm_gguf_tensor_at(g, -1) == NULL);
    CHECK(realm_gguf_find_tensor(g, "nope.weight") == NULL);
    const realm_gguf_tensor *emb = realm_gguf_find_tensor(g, "token_embd.weight");
    const realm_gguf_tensor *norm0 = realm_gguf_find_tensor(g, "blk.0.attn_norm.weight");
    const realm_gguf_tensor *wq4 = realm_gguf_find_tensor(g, "blk.4.attn_q.weight");
    CHECK(emb && norm0 && wq4 && realm_gguf_find_tensor(g, "output.weight"));
    if (emb && norm0 && wq4) {
        CHECK_EQ_INT(emb->n_dims, 2);
        CHECK_EQ_INT(emb->ne[0], 64);
        CHECK_EQ_INT(emb->ne[1], 512);
        CHECK_EQ_INT(emb->ne[2], 1);
        CHECK_EQ_INT(realm_gguf_tensor_nelements(emb), 512 * 64);
        CHECK_EQ_INT(emb->nbytes, 512 * 64 * 4);
        CHECK_EQ_INT(norm0->n_dims, 1);
        CHECK_EQ_INT(norm0->ne[0], 64);
        CHECK_EQ_INT(wq4->ne[0], 64);
        CHECK_EQ_INT(wq4->ne[1], 64);
        CHECK_EQ_INT((uintptr_t)emb->data % 32, 0); /* the mapping is page-aligned */
        size_t nbin = 0;
        uint8_t *bin = read_file(test_data("models/stories260K.bin"), &nbin);
        CHECK(bin != NULL && nbin == 1056540);
        if (bin && nbin == 1056540) {
            /* token_embd, then rms_att for 5 layers, then wq for 5 layers */
            const size_t f = 4, emb_off = 28, att_off = emb_off + 512 * 64 * f;
            const size_t wq_off = att_off + 5 * 64 * f + 4 * 64 * 64 * f;
            CHECK(memcmp(emb->data, bin + emb_off, emb->nbytes) == 0);
            CHECK(memcmp(norm0->data, bin + att_off, norm0->nbytes) == 0);
            CHECK(memcmp(wq4->data, bin + wq_off, wq4->nbytes) == 0);
        }
        free(bin);
    }
    realm_gguf_close(g);
}

static void test_tiny_q4k(void)
{
    realm_gguf *g = NULL;
    CHECK_RC(realm_gguf_open(test_data("quant/tiny-q4_k_m.gguf"), &g), REALM_OK);
    if (g == NULL)
        return;
    CHECK_EQ_INT(realm_gguf_n_tensors(g), 21);
    uint32_t u = 0;
    CHECK_RC(realm_gguf_get_u32(g, "llama.block_count", &u), REALM_OK);
    CHECK_EQ_INT(u, 2);
    CHECK_RC(realm_gguf_get_u32(g, "general.file_type", &u), REALM_OK);
    CHECK_EQ_INT(u, 15); /* MOSTLY_Q4_K_M */
    float base = 0;
    CHECK_RC(realm_gguf_get_f32(g, "llama.rope.freq_base", &base), REALM_OK);
    CHECK_EQ_INT(base, 10000);
    int n_q4k = 0, n_f32 = 0;
    for (int64_t i = 0; i < realm_gguf_n_tensors(g); i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        if (t->n_dims == 2) {
            n_q4k += t->type == REALM_TYPE_Q4_K;
            CHECK_EQ_INT(t->nbytes, (uint64_t)t->ne[1] * (uint64_t)(t->ne[0] / 256) * 144);
        } else {
            n_f32 += t->type == REALM_TYPE_F32;
        }
        CHECK_EQ_INT((realm_gguf_data_offset(g) + t->offset) % 32, 0);
    }
    CHECK_EQ_INT(n_q4k, 16);
    CHECK_EQ_INT(n_f32, 5);
    const realm_gguf_tensor *t = realm_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t != NULL && t->type == REALM_TYPE_Q4_K && t->ne[0] == 256 && t->ne[1] == 512);
    t = realm_gguf_find_tensor(g, "blk.1.attn_k.weight");
    CHECK(t != NULL && t->type == REALM_TYPE_Q4_K && t->ne[0] == 256 && t->ne[1] == 128);
    realm_gguf_close(g);
}

static void test_vocabs(void)
{
    static const struct {
        const char *name, *model;
        uint64_t n_vocab;
    } vocabs[] = {
        {"baichuan", "llama", 64000},
        {"bert-bge", "bert", 30522},
        {"deepseek-coder", "gpt2", 32256},
        {"deepseek-llm", "gpt2", 102400},
        {"falcon", "gpt2", 65024},
        {"gpt-2", "gpt2", 50257},
        {"gpt-neox", "gpt2", 50432},
        {"llama-spm", "llama", 32000},
        {"mpt", "gpt2", 50432},
        {"phi-3", "llama", 32064},
        {"refact", "gpt2", 49216},
        {"starcoder", "gpt2", 49152},
    };
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        char rel[128];
        snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", vocabs[v].name);
        const char *path = test_data(rel);
        realm_gguf *g = NULL;
        CHECK_RC(realm_gguf_open(path, &g), REALM_OK);
        if (g == NULL)
            continue;
        CHECK_EQ_INT(realm_gguf_n_tensors(g), 0);
        realm_gguf_str s = {0};
        CHECK_RC(realm_gguf_get_str(g, "tokenizer.ggml.model", &s), REALM_OK);
        CHECK_MSG(str_eq(s, vocabs[v].model), "%s: model '%.*s'", vocabs[v].name, (int)s.len,
                  s.data);
        int64_t ki = -1;
        uint64_t n = 0;
        CHECK_RC(realm_gguf_get_arr(g, "tokenizer.ggml.tokens", REALM_GGUF_STRING, &ki, &n),
                 REALM_OK);
        CHECK_MSG(n == vocabs[v].n_vocab, "%s: %llu tokens", vocabs[v].name, (unsigned long long)n);
        /* Element access is O(1) and every element lies inside the file. */
        uint64_t total = 0;
        for (uint64_t j = 0; j < n; j++)
            total += realm_gguf_kv_arr_str(g, ki, j).len;
        CHECK(total > n / 2 && total < realm_gguf_file_size(g));
        if (strcmp(vocabs[v].model, "gpt2") == 0) {
            CHECK_RC(realm_gguf_get_arr(g, "tokenizer.ggml.merges", REALM_GGUF_STRING, &ki, &n),
                     REALM_OK);
            CHECK(n > 1000);
        }
        realm_gguf_close(g);
        round_trip(path);
    }
}

static void test_round_trips(void)
{
    round_trip(test_data("models/stories260K.gguf"));
    round_trip(test_data("quant/tiny-q4_k_m.gguf"));
    round_trip(test_data("quant/tiny-iq4_xs.gguf"));
    round_trip(test_data("lora/tiny-lora-qv-r4.gguf"));
}

static void test_open_errors(void)
{
    realm_gguf *g = (realm_gguf *)&g;
    CHECK_ERR(realm_gguf_open("/nonexistent/realm/x.gguf", &g), REALM_ERR_IO, "cannot open");
    CHECK(g == NULL);
    CHECK_ERR(realm_gguf_open("/", &g), REALM_ERR_IO, "not a regular file");
    char *tmp = temp_path("empty");
    CHECK_ERR(realm_gguf_open(tmp, &g), REALM_ERR_FORMAT, "file is 0 bytes, too small");
    CHECK(strstr(realm_last_error(), tmp) != NULL); /* the message names the file */
    FILE *f = fopen(tmp, "wb");
    fwrite("GGUF\3\0\0\0", 1, 8, f);
    fclose(f);
    CHECK_ERR(realm_gguf_open(tmp, &g), REALM_ERR_FORMAT, "file ends inside the tensor count");
    unlink(tmp);
    free(tmp);
    CHECK_ERR(realm_gguf_open_memory(NULL, 5, &g), REALM_ERR_INVAL, "NULL");
}

/* ---- writer -------------------------------------------------------------- */

static void fill_random(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)test_rand_u64();
}

static void test_all_types(void)
{
    realm_gguf_writer *w = NULL;
    CHECK_RC(realm_gguf_writer_new(&w), REALM_OK);
    if (w == NULL)
        return;

    const uint8_t u8 = 200;
    const int8_t i8 = -100;
    const uint16_t u16 = 60000;
    const int16_t i16 = -30000;
    const uint32_t u32 = 4000000000u;
    const int32_t i32 = -2000000000;
    const float f32 = 3.25f;
    const uint8_t bl = 1;
    const uint64_t u64 = 18000000000000000000ull;
    const int64_t i64 = -9000000000000000000ll;
    const double f64 = -1.0 / 3.0;
    CHECK_RC(realm_gguf_set_u32(w, "t.replace", 1), REALM_OK);
    CHECK_RC(realm_gguf_set_scalar(w, "t.u8", REALM_GGUF_UINT8, &u8), REALM_OK);
    CHECK_RC(realm_gguf_set_scalar(w, "t.i8", REALM_GGUF_INT8, &i8), REALM_OK);
    CHECK_RC(realm_gguf_set_scalar(w, "t.u16", REALM_GGUF_UINT16, &u16), REALM_OK);
    CHECK_RC(realm_gguf_set_scalar(w, "t.i16", REALM_GGUF_INT16, &i16), REALM_OK);
    CHECK_RC(realm_gguf_set_scalar(w, "t.u32", REALM_GGUF_UINT32, &u32), REALM_OK);
    CHECK_RC(realm_gguf_set_scalar(w, "t.i32", REALM_GGUF_INT32, &i32), REALM_OK);
    CHECK_RC(realm_gguf_set_scalar(w, "t.f32", REALM_GGUF_FLOAT32, &f32), REALM_OK);
    CHECK_RC(realm_gguf_set_scalar(w, "t.bool", REALM_GGUF_BOOL, &bl), REALM_OK);
    CHECK_RC(realm_gguf_set_scalar(w, "t.u64", REALM_GGUF_UINT64, &u64), REALM_OK);
    CHECK_RC(realm_gguf_set_scalar(w, "t.i64", REALM_GGUF_INT64, &i64), REALM_OK);
    CHECK_RC(realm_gguf_set_scalar(w, "t.f64", REALM_GGUF_FLOAT64, &f64), REALM_OK);
    CHECK_RC(realm_gguf_set_i32(w, "t.set_i32", -7), REALM_OK);
    CHECK_RC(realm_gguf_set_u64(w, "t.set_u64", 1ull << 40), REALM_OK);
    CHECK_RC(realm_gguf_set_f32(w, "t.set_f32", -0.5f), REALM_OK);
    CHECK_RC(realm_gguf_set_bool(w, "t.set_bool", false), REALM_OK);
    CHECK_RC(realm_gguf_set_u64(w, "t.gone", 99), REALM_OK);
    CHECK_RC(realm_gguf_set_str(w, "t.str", "hello", 5), REALM_OK);
    CHECK_RC(realm_gguf_set_str(w, "t.empty", NULL, 0), REALM_OK);
    CHECK_RC(realm_gguf_set_str(w, "t.nul", "a\0b", 3), REALM_OK);
    CHECK_RC(realm_gguf_set_str(w, "", "empty key", 9), REALM_OK);

    /* One array of every scalar type, three elements each. */
    uint8_t elems[REALM_GGUF_TYPE_COUNT][3 * 8];
    char keys[REALM_GGUF_TYPE_COUNT][32];
    for (int t = 0; t < REALM_GGUF_TYPE_COUNT; t++) {
        if (realm_gguf_type_size((realm_gguf_type)t) == 0)
            continue;
        fill_random(elems[t], sizeof elems[t]);
        if (t == REALM_GGUF_BOOL)
            elems[t][0] = 1, elems[t][1] = 0, elems[t][2] = 1;
        snprintf(keys[t], sizeof keys[t], "t.arr.%s", realm_gguf_type_name((realm_gguf_type)t));
        CHECK_RC(realm_gguf_set_arr(w, keys[t], (realm_gguf_type)t, elems[t], 3), REALM_OK);
    }
    CHECK_RC(realm_gguf_set_arr(w, "t.arr.empty", REALM_GGUF_FLOAT64, NULL, 0), REALM_OK);
    const realm_gguf_str strs[] = {{"x", 1}, {"", 0}, {"longer string", 13}, {NULL, 0}};
    CHECK_RC(realm_gguf_set_arr_str(w, "t.arr.str", strs, 4), REALM_OK);
    CHECK_RC(realm_gguf_set_arr_str(w, "t.arr.str_empty", NULL, 0), REALM_OK);
    enum { NBIG = 300 };
    static char big_text[NBIG][40];
    realm_gguf_str big[NBIG];
    for (int i = 0; i < NBIG; i++) {
        const size_t len = (size_t)(test_rand_u64() % 40); /* 0..39, may hold NULs */
        fill_random((uint8_t *)big_text[i], len);
        big[i] = (realm_gguf_str){big_text[i], len};
    }
    CHECK_RC(realm_gguf_set_arr_str(w, "t.arr.str_big", big, NBIG), REALM_OK);
    CHECK_RC(realm_gguf_set_u32(w, "general.alignment", 64), REALM_OK);
    CHECK_RC(realm_gguf_set_u32(w, "t.replace", 2), REALM_OK); /* keeps position 0 */
    CHECK_RC(realm_gguf_remove_kv(w, "t.gone"), REALM_OK);
    CHECK_ERR(realm_gguf_remove_kv(w, "t.gone"), REALM_ERR_NOTFOUND, "'t.gone' not found");

    /* Tensors of several types and ranks, including a known type Realm
     * cannot compute with (IQ2_XXS). */
    static const struct {
        const char *name;
        uint32_t n_dims;
        int64_t ne[4];
        realm_type type;
    } ts[] = {
        {"f32", 2, {5, 3, 1, 1}, REALM_TYPE_F32},
        {"f16", 1, {7, 1, 1, 1}, REALM_TYPE_F16},
        {"q4k", 2, {256, 2, 1, 1}, REALM_TYPE_Q4_K},
        {"iq2", 1, {256, 1, 1, 1}, REALM_TYPE_IQ2_XXS},
        {"blk.0.q8_3d", 3, {32, 2, 3, 1}, REALM_TYPE_Q8_0},
        {"i8_4d", 4, {3, 2, 2, 2}, REALM_TYPE_I8},
    };
    enum { NT = sizeof ts / sizeof ts[0] };
    uint8_t *data[NT];
    for (int i = 0; i < NT; i++) {
        const size_t nb = realm_row_size(ts[i].type, ts[i].ne[0]) * (size_t)ts[i].ne[1] *
                          (size_t)ts[i].ne[2] * (size_t)ts[i].ne[3];
        data[i] = malloc(nb);
        fill_random(data[i], nb);
        CHECK_RC(realm_gguf_add_tensor(w, ts[i].name, ts[i].n_dims, ts[i].ne, ts[i].type, data[i]),
                 REALM_OK);
    }

    char *tmp = temp_path("types");
    CHECK_RC(realm_gguf_writer_write(w, tmp), REALM_OK);
    realm_gguf *g = NULL;
    CHECK_RC(realm_gguf_open(tmp, &g), REALM_OK);
    if (g != NULL) {
        CHECK_EQ_INT(realm_gguf_alignment(g), 64);
        CHECK_EQ_INT(realm_gguf_data_offset(g) % 64, 0);
        CHECK_EQ_STR(realm_gguf_kv_key(g, 0), "t.replace");
        CHECK_EQ_STR(realm_gguf_kv_key(g, 1), "t.u8");
        CHECK_EQ_INT(realm_gguf_find_kv(g, "t.gone"), -1);
        CHECK(realm_gguf_kv_key(g, -1) == NULL && realm_gguf_kv_key(g, 1000) == NULL);
        CHECK_EQ_INT(realm_gguf_kv_type(g, 1000), REALM_GGUF_TYPE_COUNT);

        uint8_t xu8 = 0;
        int8_t xi8 = 0;
        uint16_t xu16 = 0;
        int16_t xi16 = 0;
        uint32_t xu32 = 0;
        int32_t xi32 = 0;
        float xf32 = 0;
        bool xb = false;
        uint64_t xu64 = 0;
        int64_t xi64 = 0;
        double xf64 = 0;
        CHECK_RC(realm_gguf_get_u32(g, "t.replace", &xu32), REALM_OK);
        CHECK_EQ_INT(xu32, 2);
        CHECK_RC(realm_gguf_get_u8(g, "t.u8", &xu8), REALM_OK);
        CHECK_EQ_INT(xu8, u8);
        CHECK_RC(realm_gguf_get_i8(g, "t.i8", &xi8), REALM_OK);
        CHECK_EQ_INT(xi8, i8);
        CHECK_RC(realm_gguf_get_u16(g, "t.u16", &xu16), REALM_OK);
        CHECK_EQ_INT(xu16, u16);
        CHECK_RC(realm_gguf_get_i16(g, "t.i16", &xi16), REALM_OK);
        CHECK_EQ_INT(xi16, i16);
        CHECK_RC(realm_gguf_get_u32(g, "t.u32", &xu32), REALM_OK);
        CHECK_EQ_INT(xu32, u32);
        CHECK_RC(realm_gguf_get_i32(g, "t.i32", &xi32), REALM_OK);
        CHECK_EQ_INT(xi32, i32);
        CHECK_RC(realm_gguf_get_f32(g, "t.f32", &xf32), REALM_OK);
        CHECK(xf32 == f32);
        CHECK_RC(realm_gguf_get_bool(g, "t.bool", &xb), REALM_OK);
        CHECK(xb == true);
        CHECK_RC(realm_gguf_get_u64(g, "t.u64", &xu64), REALM_OK);
        CHECK(xu64 == u64);
        CHECK_RC(realm_gguf_get_i64(g, "t.i64", &xi64), REALM_OK);
        CHECK(xi64 == i64);
        CHECK_RC(realm_gguf_get_f64(g, "t.f64", &xf64), REALM_OK);
        CHECK(xf64 == f64);
        CHECK_RC(realm_gguf_get_i32(g, "t.set_i32", &xi32), REALM_OK);
        CHECK_EQ_INT(xi32, -7);
        CHECK_RC(realm_gguf_get_u64(g, "t.set_u64", &xu64), REALM_OK);
        CHECK(xu64 == 1ull << 40);
        CHECK_RC(realm_gguf_get_f32(g, "t.set_f32", &xf32), REALM_OK);
        CHECK(xf32 == -0.5f);
        CHECK_RC(realm_gguf_get_bool(g, "t.set_bool", &xb), REALM_OK);
        CHECK(xb == false);

        /* get_int widens every integer type; uint64 must fit. */
        int64_t v = 0;
        CHECK_RC(realm_gguf_get_int(g, "t.u8", &v), REALM_OK);
        CHECK_EQ_INT(v, 200);
        CHECK_RC(realm_gguf_get_int(g, "t.i8", &v), REALM_OK);
        CHECK_EQ_INT(v, -100);
        CHECK_RC(realm_gguf_get_int(g, "t.u16", &v), REALM_OK);
        CHECK_EQ_INT(v, 60000);
        CHECK_RC(realm_gguf_get_int(g, "t.i16", &v), REALM_OK);
        CHECK_EQ_INT(v, -30000);
        CHECK_RC(realm_gguf_get_int(g, "t.u32", &v), REALM_OK);
        CHECK_EQ_INT(v, 4000000000ll);
        CHECK_RC(realm_gguf_get_int(g, "t.i32", &v), REALM_OK);
        CHECK_EQ_INT(v, -2000000000ll);
        CHECK_RC(realm_gguf_get_int(g, "t.i64", &v), REALM_OK);
        CHECK(v == i64);
        CHECK_RC(realm_gguf_get_int(g, "t.set_u64", &v), REALM_OK);
        CHECK(v == 1ll << 40);
        CHECK_ERR(realm_gguf_get_int(g, "t.u64", &v), REALM_ERR_RANGE,
                  "18000000000000000000 does not fit in int64");
        CHECK_ERR(realm_gguf_get_int(g, "t.bool", &v), REALM_ERR_TYPE, "is bool, not an integer");
        CHECK_ERR(realm_gguf_get_bool(g, "t.u8", &xb), REALM_ERR_TYPE, "is uint8, not bool");
        CHECK_ERR(realm_gguf_get_f64(g, "t.f32", &xf64), REALM_ERR_TYPE,
                  "'t.f32' is float32, not float64");

        realm_gguf_str s = {0};
        CHECK_RC(realm_gguf_get_str(g, "t.str", &s), REALM_OK);
        CHECK(str_eq(s, "hello"));
        CHECK_RC(realm_gguf_get_str(g, "t.empty", &s), REALM_OK);
        CHECK(s.len == 0 && s.data != NULL);
        CHECK_RC(realm_gguf_get_str(g, "t.nul", &s), REALM_OK);
        CHECK(s.len == 3 && memcmp(s.data, "a\0b", 3) == 0);
        CHECK_RC(realm_gguf_get_str(g, "", &s), REALM_OK);
        CHECK(str_eq(s, "empty key"));

        int64_t ki = -1;
        uint64_t n = 0;
        for (int t = 0; t < REALM_GGUF_TYPE_COUNT; t++) {
            const size_t es = realm_gguf_type_size((realm_gguf_type)t);
            if (es == 0)
                continue;
            CHECK_RC(realm_gguf_get_arr(g, keys[t], (realm_gguf_type)t, &ki, &n), REALM_OK);
            CHECK_EQ_INT(n, 3);
            CHECK_EQ_INT(realm_gguf_kv_arr_type(g, ki), t);
            CHECK(realm_gguf_kv_scalar(g, ki) == NULL);
            CHECK(n == 3 && memcmp(realm_gguf_kv_arr_data(g, ki), elems[t], 3 * es) == 0);
        }
        CHECK_RC(realm_gguf_get_arr(g, "t.arr.empty", REALM_GGUF_FLOAT64, &ki, &n), REALM_OK);
        CHECK_EQ_INT(n, 0);
        CHECK_RC(realm_gguf_get_arr(g, "t.arr.str", REALM_GGUF_STRING, &ki, &n), REALM_OK);
        CHECK_EQ_INT(n, 4);
        CHECK(str_eq(realm_gguf_kv_arr_str(g, ki, 0), "x"));
        CHECK(str_eq(realm_gguf_kv_arr_str(g, ki, 1), ""));
        CHECK(str_eq(realm_gguf_kv_arr_str(g, ki, 2), "longer string"));
        CHECK(str_eq(realm_gguf_kv_arr_str(g, ki, 3), ""));
        CHECK(realm_gguf_kv_arr_str(g, ki, 4).data == NULL);
        CHECK_RC(realm_gguf_get_arr(g, "t.arr.str_empty", REALM_GGUF_STRING, &ki, &n), REALM_OK);
        CHECK_EQ_INT(n, 0);
        CHECK_RC(realm_gguf_get_arr(g, "t.arr.str_big", REALM_GGUF_STRING, &ki, &n), REALM_OK);
        CHECK_EQ_INT(n, NBIG);
        int bad = 0;
        for (uint64_t j = 0; j < n && j < NBIG; j++) {
            realm_gguf_str x = realm_gguf_kv_arr_str(g, ki, j);
            bad += x.len != big[j].len || memcmp(x.data, big[j].data, x.len) != 0;
        }
        CHECK_EQ_INT(bad, 0);

        CHECK_EQ_INT(realm_gguf_n_tensors(g), NT);
        for (int i = 0; i < NT && i < realm_gguf_n_tensors(g); i++) {
            const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
            CHECK_EQ_STR(t->name, ts[i].name);
            CHECK_EQ_INT(t->type, ts[i].type);
            CHECK_EQ_INT(t->n_dims, ts[i].n_dims);
            for (int d = 0; d < 4; d++)
                CHECK_EQ_INT(t->ne[d], ts[i].ne[d]);
            CHECK_EQ_INT(t->offset % 64, 0);
            CHECK(memcmp(t->data, data[i], t->nbytes) == 0);
        }
        /* The file ends with the last tensor's padding, all zero. */
        const realm_gguf_tensor *last = realm_gguf_tensor_at(g, NT - 1);
        const uint64_t end = realm_gguf_data_offset(g) + last->offset + last->nbytes;
        CHECK_EQ_INT(realm_gguf_file_size(g), (end + 63) / 64 * 64);
        const uint8_t *pad = (const uint8_t *)last->data + last->nbytes;
        int nonzero = 0;
        for (uint64_t j = end; j < realm_gguf_file_size(g); j++)
            nonzero += pad[j - end] != 0;
        CHECK_EQ_INT(nonzero, 0);
        walk(g);

        /* A copy made through copy_kv gives the same file. */
        realm_gguf_writer *w2 = NULL;
        CHECK_RC(realm_gguf_writer_new(&w2), REALM_OK);
        for (int64_t i = 0; i < realm_gguf_n_kv(g); i++)
            CHECK_RC(realm_gguf_copy_kv(w2, g, i), REALM_OK);
        for (int64_t i = 0; i < realm_gguf_n_tensors(g); i++) {
            const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
            CHECK_RC(realm_gguf_add_tensor(w2, t->name, t->n_dims, t->ne, t->type, t->data),
                     REALM_OK);
        }
        CHECK_ERR(realm_gguf_copy_kv(w2, g, realm_gguf_n_kv(g)), REALM_ERR_INVAL,
                  "no metadata entry");
        char *tmp2 = temp_path("types2");
        CHECK_RC(realm_gguf_writer_write(w2, tmp2), REALM_OK);
        size_t na = 0, nb = 0;
        uint8_t *a = read_file(tmp, &na), *b = read_file(tmp2, &nb);
        CHECK(a && b && na == nb && memcmp(a, b, na) == 0);
        free(a);
        free(b);
        unlink(tmp2);
        free(tmp2);
        realm_gguf_writer_free(w2);
        realm_gguf_close(g);
    }
    unlink(tmp);
    free(tmp);
    for (int i = 0; i < NT; i++)
        free(data[i]);
    realm_gguf_writer_free(w);
}

static void test_streaming(void)
{
    realm_gguf_writer *w = NULL;
    CHECK_RC(realm_gguf_writer_new(&w), REALM_OK);
    CHECK_RC(realm_gguf_set_str(w, "general.name", "stream", 6), REALM_OK);
    const int64_t ne_a[] = {8}, ne_b[] = {32, 2};
    CHECK_RC(realm_gguf_add_tensor(w, "a", 1, ne_a, REALM_TYPE_F32, NULL), REALM_OK);
    CHECK_RC(realm_gguf_add_tensor(w, "b", 2, ne_b, REALM_TYPE_Q8_0, NULL), REALM_OK);
    uint8_t da[32], db[68];
    fill_random(da, sizeof da);
    fill_random(db, sizeof db);

    char *tmp = temp_path("stream");
    CHECK_ERR(realm_gguf_writer_write(w, tmp), REALM_ERR_INVAL, "tensor 'a' has no data");
    CHECK_ERR(realm_gguf_writer_put_tensor(w, da, 32), REALM_ERR_INVAL, "no write in progress");
    CHECK_ERR(realm_gguf_writer_end(w), REALM_ERR_INVAL, "no write in progress");
    FILE *f = fopen(tmp, "wb");
    CHECK_RC(realm_gguf_writer_begin(w, f), REALM_OK);
    CHECK_ERR(realm_gguf_writer_begin(w, f), REALM_ERR_INVAL, "in progress");
    CHECK_ERR(realm_gguf_set_u32(w, "x", 1), REALM_ERR_INVAL, "a write is in progress");
    CHECK_ERR(realm_gguf_add_tensor(w, "c", 1, ne_a, REALM_TYPE_F32, da), REALM_ERR_INVAL,
              "a write is in progress");
    CHECK_ERR(realm_gguf_writer_put_tensor(w, da, 31), REALM_ERR_INVAL,
              "tensor 'a' is 32 bytes, got 31");
    CHECK_RC(realm_gguf_writer_put_tensor(w, da, 32), REALM_OK);
    CHECK_ERR(realm_gguf_writer_end(w), REALM_ERR_INVAL, "only 1 of 2 tensors were written");
    CHECK_RC(realm_gguf_writer_put_tensor(w, db, 68), REALM_OK);
    CHECK_ERR(realm_gguf_writer_put_tensor(w, db, 68), REALM_ERR_INVAL,
              "all 2 tensors have already been written");
    CHECK_RC(realm_gguf_writer_end(w), REALM_OK);
    fclose(f);

    realm_gguf *g = NULL;
    CHECK_RC(realm_gguf_open(tmp, &g), REALM_OK);
    if (g) {
        const realm_gguf_tensor *a = realm_gguf_find_tensor(g, "a");
        const realm_gguf_tensor *b = realm_gguf_find_tensor(g, "b");
        CHECK(a && b && memcmp(a->data, da, 32) == 0 && memcmp(b->data, db, 68) == 0);
        CHECK(b && b->offset == 32);
        realm_gguf_close(g);
    }
    unlink(tmp);
    free(tmp);
    realm_gguf_writer_free(w);
}

static void test_writer_errors(void)
{
    realm_gguf_writer *w = NULL;
    CHECK_RC(realm_gguf_writer_new(&w), REALM_OK);
    const uint8_t d[4096] = {0};
    const int64_t ne4[] = {4}, ne100[] = {100}, ne0[] = {4, 0}, ne256[] = {256};
    const int64_t huge[] = {INT64_MAX / 2, 4};
    CHECK_RC(realm_gguf_add_tensor(w, "a", 1, ne4, REALM_TYPE_F32, d), REALM_OK);
    CHECK_ERR(realm_gguf_add_tensor(w, "a", 1, ne4, REALM_TYPE_F32, d), REALM_ERR_EXISTS,
              "duplicate tensor name 'a'");
    CHECK_ERR(realm_gguf_add_tensor(w, "q", 1, ne100, REALM_TYPE_Q4_K, d), REALM_ERR_INVAL,
              "tensor 'q': ne[0] = 100 is not a multiple of the Q4_K block size 256");
    CHECK_ERR(realm_gguf_add_tensor(w, "z", 2, ne0, REALM_TYPE_F32, d), REALM_ERR_INVAL,
              "dimension 1 is 0");
    CHECK_ERR(realm_gguf_add_tensor(w, "n", 5, ne4, REALM_TYPE_F32, d), REALM_ERR_INVAL,
              "dimension count 5 is not in 1..4");
    CHECK_ERR(realm_gguf_add_tensor(w, "n", 0, ne4, REALM_TYPE_F32, d), REALM_ERR_INVAL,
              "dimension count 0");
    CHECK_ERR(realm_gguf_add_tensor(w, "u", 1, ne256, (realm_type)77, d), REALM_ERR_INVAL,
              "unknown tensor type id 77");
    CHECK_ERR(realm_gguf_add_tensor(w, "h", 2, huge, REALM_TYPE_F32, d), REALM_ERR_RANGE,
              "more than 2^63 - 1 elements");
    CHECK_ERR(realm_gguf_set_scalar(w, "k", REALM_GGUF_STRING, d), REALM_ERR_INVAL,
              "string (id 8) is not a scalar type");
    CHECK_ERR(realm_gguf_set_arr(w, "k", REALM_GGUF_ARRAY, d, 1), REALM_ERR_INVAL,
              "nested arrays are not supported");
    CHECK_ERR(realm_gguf_set_str(w, NULL, "x", 1), REALM_ERR_INVAL, "metadata key is NULL");
    CHECK_EQ_INT(realm_gguf_writer_write(w, "/nonexistent/realm/dir/x.gguf"), REALM_ERR_IO);
    CHECK(strstr(realm_last_error(), "cannot create") != NULL);

    /* A full device: the error surfaces, and the device is not removed. */
    struct stat st;
    if (stat("/dev/full", &st) == 0 && S_ISCHR(st.st_mode)) {
        CHECK_ERR(realm_gguf_writer_write(w, "/dev/full"), REALM_ERR_IO, "/dev/full");
        CHECK(stat("/dev/full", &st) == 0);
    }

    /* general.alignment is checked when writing. */
    char *tmp = temp_path("bad-align");
    FILE *f = fopen(tmp, "wb");
    fputs("keep", f);
    fclose(f);
    CHECK_RC(realm_gguf_set_u32(w, "general.alignment", 48), REALM_OK);
    CHECK_ERR(realm_gguf_writer_write(w, tmp), REALM_ERR_INVAL,
              "general.alignment 48 is not a power of two");
    CHECK_RC(realm_gguf_set_u64(w, "general.alignment", 64), REALM_OK);
    CHECK_ERR(realm_gguf_writer_write(w, tmp), REALM_ERR_INVAL,
              "general.alignment must be uint32, not uint64");
    size_t kept_size = 0;
    uint8_t *kept = read_file(tmp, &kept_size); /* checked before touching the file */
    CHECK(kept && kept_size == 4 && memcmp(kept, "keep", 4) == 0);
    free(kept);
    CHECK_RC(realm_gguf_set_u32(w, "general.alignment", 1), REALM_OK);
    CHECK_RC(realm_gguf_writer_write(w, tmp), REALM_OK);
    realm_gguf *g = NULL;
    CHECK_RC(realm_gguf_open(tmp, &g), REALM_OK);
    if (g) {
        CHECK_EQ_INT(realm_gguf_alignment(g), 1);
        realm_gguf_close(g);
    }
    unlink(tmp);
    free(tmp);
    realm_gguf_writer_free(w);
}

/* ---- malformed images ---------------------------------------------------- */

/* Where the fields of the small file are, for patching. */
struct small {
    size_t n_tensors, n_kv; /* header counts */
    size_t count_type;      /* type id of "test.count" */
    size_t words_n;         /* element count of "test.words" */
    size_t t0_ndims, t0_ne, t0_type, t0_off;
    size_t t1_name, t1_type;
    size_t data, end;
};

/*
 * A small valid v3 file: three metadata entries (string, uint32, array of
 * three strings) and two tensors ("a", F32 [4, 2] at 0; "b", Q8_0 [32] at
 * 32). The last tensor ends the file, so every shorter prefix is invalid.
 */
static void build_small(bbuf *b, struct small *L, uint32_t version)
{
    *b = (bbuf){0};
    b_hdr(b, version, 2, 3);
    L->n_tensors = 8;
    L->n_kv = 16;
    b_kv_str(b, "general.architecture", "test");
    b_str(b, "test.count");
    L->count_type = b->len;
    b_u32(b, REALM_GGUF_UINT32);
    b_u32(b, 7);
    b_str(b, "test.words");
    b_u32(b, REALM_GGUF_ARRAY);
    b_u32(b, REALM_GGUF_STRING);
    L->words_n = b->len;
    b_u64(b, 3);
    b_str(b, "a");
    b_str(b, "bc");
    b_str(b, "");
    b_str(b, "a");
    L->t0_ndims = b->len;
    b_u32(b, 2);
    L->t0_ne = b->len;
    b_u64(b, 4);
    b_u64(b, 2);
    L->t0_type = b->len;
    b_u32(b, REALM_TYPE_F32);
    L->t0_off = b->len;
    b_u64(b, 0);
    L->t1_name = b->len;
    b_str(b, "b");
    b_u32(b, 1);
    b_u64(b, 32);
    L->t1_type = b->len;
    b_u32(b, REALM_TYPE_Q8_0);
    b_u64(b, 32);
    b_pad(b, 32);
    L->data = b->len;
    b_fill(b, 32 + 34, 1);
    L->end = b->len;
}

static void test_small_valid(void)
{
    for (uint32_t version = 2; version <= 3; version++) {
        bbuf b;
        struct small L;
        build_small(&b, &L, version);
        realm_gguf *g = NULL;
        CHECK_RC(realm_gguf_open_memory(b.p, b.len, &g), REALM_OK);
        if (g) {
            CHECK_EQ_INT(realm_gguf_version(g), version);
            CHECK_EQ_INT(realm_gguf_n_kv(g), 3);
            CHECK_EQ_INT(realm_gguf_data_offset(g), L.data);
            uint32_t c = 0;
            CHECK_RC(realm_gguf_get_u32(g, "test.count", &c), REALM_OK);
            CHECK_EQ_INT(c, 7);
            const realm_gguf_tensor *t = realm_gguf_find_tensor(g, "b");
            CHECK(t && t->type == REALM_TYPE_Q8_0 && t->nbytes == 34 &&
                  (const uint8_t *)t->data == b.p + L.data + 32);
            walk(g);
            realm_gguf_close(g);
        }
        b_free(&b);
    }

    /* A known type Realm cannot compute with still parses and is sized. */
    bbuf b = {0};
    b_hdr(&b, 3, 1, 0);
    b_tensor(&b, "iq", 2, (const uint64_t[]){256, 3}, REALM_TYPE_IQ2_XXS, 0);
    b_pad(&b, 32);
    b_fill(&b, 3 * 66, 0);
    realm_gguf *g = NULL;
    CHECK_RC(realm_gguf_open_memory(b.p, b.len, &g), REALM_OK);
    if (g) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, 0);
        CHECK(t->type == REALM_TYPE_IQ2_XXS && t->nbytes == 3 * 66);
        realm_gguf_close(g);
    }
    b_free(&b);

    /* A file without tensors may end before the (empty) aligned data section. */
    b_hdr(&b, 3, 0, 1);
    b_kv_u32(&b, "k", 1);
    CHECK_RC(realm_gguf_open_memory(b.p, b.len, &g), REALM_OK);
    if (g) {
        CHECK(realm_gguf_data_offset(g) > realm_gguf_file_size(g));
        realm_gguf_close(g);
    }
    b_free(&b);
}

static void test_truncation(void)
{
    bbuf b;
    struct small L;
    build_small(&b, &L, 3);
    int wrong = 0;
    for (size_t n = 0; n < L.end; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, b.p, n);
        realm_gguf *g = NULL;
        const int rc = realm_gguf_open_memory(copy, n, &g);
        const char *msg = realm_last_error();
        if (rc != REALM_ERR_FORMAT || g != NULL ||
            (strstr(msg, "at offset") == NULL && strstr(msg, "ends past end of file") == NULL)) {
            if (wrong++ < 5)
                fprintf(stderr, "prefix %zu: %s: %s\n", n, realm_err_name(rc), realm_last_error());
            realm_gguf_close(g);
        }
        free(copy);
    }
    CHECK_EQ_INT(wrong, 0);

    /* Same for a file with every metadata type, made by the writer. */
    realm_gguf_writer *w = NULL;
    CHECK_RC(realm_gguf_writer_new(&w), REALM_OK);
    for (int t = 0; t < REALM_GGUF_TYPE_COUNT; t++) {
        const size_t es = realm_gguf_type_size((realm_gguf_type)t);
        if (es == 0)
            continue;
        const uint8_t v[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        char key[32];
        snprintf(key, sizeof key, "s.%d", t);
        CHECK_RC(realm_gguf_set_scalar(w, key, (realm_gguf_type)t, v), REALM_OK);
        snprintf(key, sizeof key, "a.%d", t);
        CHECK_RC(realm_gguf_set_arr(w, key, (realm_gguf_type)t, v, 2), REALM_OK);
    }
    const realm_gguf_str strs[] = {{"one", 3}, {"", 0}, {"three", 5}};
    CHECK_RC(realm_gguf_set_arr_str(w, "strs", strs, 3), REALM_OK);
    CHECK_RC(realm_gguf_set_str(w, "str", "value", 5), REALM_OK);
    uint8_t d[64] = {0};
    CHECK_RC(realm_gguf_add_tensor(w, "t", 1, (const int64_t[]){16}, REALM_TYPE_F32, d), REALM_OK);
    char *tmp = temp_path("trunc");
    CHECK_RC(realm_gguf_writer_write(w, tmp), REALM_OK);
    size_t size = 0;
    uint8_t *file = read_file(tmp, &size);
    CHECK(file != NULL && size > 64);
    wrong = 0;
    /* The tensor's 64 bytes end the file (64 is a multiple of 32). */
    for (size_t n = 0; file && n < size; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, file, n);
        realm_gguf *g = NULL;
        if (realm_gguf_open_memory(copy, n, &g) != REALM_ERR_FORMAT) {
            if (wrong++ < 5)
                fprintf(stderr, "writer file prefix %zu: %s\n", n, realm_last_error());
            realm_gguf_close(g);
        }
        free(copy);
    }
    CHECK_EQ_INT(wrong, 0);
    free(file);
    unlink(tmp);
    free(tmp);
    realm_gguf_writer_free(w);
    b_free(&b);
}

/* Flip bytes of the small file: any outcome but a crash or a bad read. */
static void test_mutations(void)
{
    bbuf b;
    struct small L;
    build_small(&b, &L, 3);
    static const uint8_t vals[] = {0x00, 0x01, 0x02, 0x05, 0x20, 0x7f, 0x80, 0xfe, 0xff};
    uint8_t *copy = malloc(b.len);
    int opened = 0;
    for (size_t i = 0; i < b.len; i++) {
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(copy, b.p, b.len);
            copy[i] = vals[v];
            realm_gguf *g = NULL;
            if (realm_gguf_open_memory(copy, b.len, &g) == REALM_OK) {
                walk(g);
                realm_gguf_close(g);
                opened++;
            } else {
                CHECK(g == NULL && realm_last_error()[0] != '\0');
            }
        }
    }
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(copy, b.p, b.len);
        const int flips = 1 + (int)(test_rand_u64() % 4);
        for (int k = 0; k < flips; k++)
            copy[test_rand_u64() % b.len] = (uint8_t)test_rand_u64();
        const size_t n = b.len - (size_t)(test_rand_u64() % 8);
        realm_gguf *g = NULL;
        if (realm_gguf_open_memory(copy, n, &g) == REALM_OK) {
            walk(g);
            realm_gguf_close(g);
        }
    }
    CHECK(opened > 0);
    free(copy);
    b_free(&b);
}

static void test_malformed(void)
{
    bbuf b = {0};
    struct small L;

    EXPECT_FAIL(&b, REALM_ERR_FORMAT, "at offset 0: file is 0 bytes, too small");

    build_small(&b, &L, 3);
    b.p[0] = 'X';
    EXPECT_FAIL(&b, REALM_ERR_FORMAT, "bad magic 58 47 55 46: not a GGUF file");
    b_free(&b);

    build_small(&b, &L, 1);
    EXPECT_FAIL(&b, REALM_ERR_UNSUPPORTED, "at offset 4: GGUF version 1 is not supported");
    b_free(&b);
    build_small(&b, &L, 4);
    EXPECT_FAIL(&b, REALM_ERR_UNSUPPORTED, "GGUF version 4 is not supported");
    b_free(&b);
    build_small(&b, &L, 0x03000000u); /* bytes 00 00 00 03 */
    EXPECT_FAIL(&b, REALM_ERR_UNSUPPORTED, "big-endian GGUF is not supported");
    b_free(&b);

    build_small(&b, &L, 3);
    b_set_u64(&b, L.n_kv, 1ull << 60);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT,
                "at offset 16: metadata count 1152921504606846976 exceeds what the file can hold");
    b_set_u64(&b, L.n_kv, 3);
    b_set_u64(&b, L.n_tensors, UINT64_MAX);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT,
                "at offset 8: tensor count 18446744073709551615 exceeds what the file can hold");
    b_set_u64(&b, L.n_tensors, 2);

    /* Counts inside values. */
    b_set_u64(&b, L.words_n, 1ull << 61);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT,
                "metadata 'test.words': array of 2305843009213693952 strings exceeds what the "
                "file can hold");
    b_set_u64(&b, L.words_n, 3);
    b_set_u32(&b, L.count_type, 13);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT, "metadata 'test.count': unknown value type id 13");
    b_set_u32(&b, L.count_type, REALM_GGUF_UINT32);
    b_free(&b);

    /* Key length limits and string lengths. */
    b_hdr(&b, 3, 0, 1);
    b_u64(&b, 1ull << 62);
    b_fill(&b, 64, 'a');
    EXPECT_FAIL(&b, REALM_ERR_FORMAT,
                "at offset 24: metadata entry 0: key length 4611686018427387904 exceeds the "
                "limit of 65535 bytes");
    b_free(&b);
    b_hdr(&b, 3, 0, 1);
    b_u64(&b, 70000);
    b_fill(&b, 70000, 'a');
    b_u32(&b, REALM_GGUF_UINT8);
    b_u8(&b, 1);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT, "exceeds the limit of 65535 bytes");
    b_free(&b);
    b_hdr(&b, 3, 0, 1);
    b_u64(&b, 40);
    b_fill(&b, 20, 'a');
    EXPECT_FAIL(&b, REALM_ERR_FORMAT, "key length 40 runs past end of file (20 bytes left)");
    b_free(&b);
    b_hdr(&b, 3, 0, 2);
    b_kv_u32(&b, "ok", 1);
    b_str(&b, "name");
    b_u32(&b, REALM_GGUF_STRING);
    b_u64(&b, UINT64_MAX);
    b_fill(&b, 16, 'x');
    EXPECT_FAIL(&b, REALM_ERR_FORMAT,
                "metadata 'name': string value length 18446744073709551615 runs past end of file");
    b_free(&b);
    b_hdr(&b, 3, 0, 1);
    b_u64(&b, 3);
    b_bytes(&b, "a\0b", 3);
    b_u32(&b, REALM_GGUF_UINT8);
    b_u8(&b, 1);
    b_fill(&b, 8, 0);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT, "at offset 33: metadata 'a?b': key contains a NUL byte");
    b_free(&b);

    /* Arrays. */
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "arr");
    b_u32(&b, REALM_GGUF_ARRAY);
    b_u32(&b, REALM_GGUF_ARRAY);
    b_u64(&b, 1);
    b_u32(&b, REALM_GGUF_UINT8);
    b_u64(&b, 1);
    b_u8(&b, 0);
    EXPECT_FAIL(&b, REALM_ERR_UNSUPPORTED, "metadata 'arr': nested arrays are not supported");
    b_free(&b);
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "arr");
    b_u32(&b, REALM_GGUF_ARRAY);
    b_u32(&b, 200);
    b_u64(&b, 1);
    b_fill(&b, 16, 0);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT, "metadata 'arr': unknown array element type id 200");
    b_free(&b);
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "arr");
    b_u32(&b, REALM_GGUF_ARRAY);
    b_u32(&b, REALM_GGUF_UINT64);
    b_u64(&b, 1ull << 61);
    b_fill(&b, 64, 0);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT,
                "array of 2305843009213693952 uint64 values runs past end of file");
    b_free(&b);
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "arr");
    b_u32(&b, REALM_GGUF_ARRAY);
    b_u32(&b, REALM_GGUF_STRING);
    b_u64(&b, 2);
    b_str(&b, "ok");
    b_u64(&b, 1000);
    b_fill(&b, 10, 'x');
    EXPECT_FAIL(&b, REALM_ERR_FORMAT, "array string 1 length 1000 runs past end of file");
    b_free(&b);

    /* Alignment. */
    static const struct {
        uint32_t type;
        uint64_t value;
        const char *phrase;
    } aligns[] = {
        {REALM_GGUF_UINT32, 48, "general.alignment': alignment 48 is not a power of two"},
        {REALM_GGUF_UINT32, 0, "alignment 0 is not a power of two"},
        {REALM_GGUF_UINT64, 32, "metadata 'general.alignment': must be uint32, not uint64"},
        {REALM_GGUF_INT32, 32, "must be uint32, not int32"},
    };
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        b_hdr(&b, 3, 0, 1);
        b_str(&b, "general.alignment");
        b_u32(&b, aligns[i].type);
        if (aligns[i].type == REALM_GGUF_UINT64)
            b_u64(&b, aligns[i].value);
        else
            b_u32(&b, (uint32_t)aligns[i].value);
        EXPECT_FAIL(&b, REALM_ERR_FORMAT, aligns[i].phrase);
        b_free(&b);
    }
    /* A valid non-default alignment moves the data section. */
    b_hdr(&b, 3, 1, 1);
    b_kv_u32(&b, "general.alignment", 256);
    b_tensor(&b, "t", 1, (const uint64_t[]){4}, REALM_TYPE_F32, 0);
    b_pad(&b, 256);
    const size_t data_at = b.len;
    b_fill(&b, 16, 0);
    realm_gguf *g = NULL;
    CHECK_RC(realm_gguf_open_memory(b.p, b.len, &g), REALM_OK);
    if (g) {
        CHECK_EQ_INT(realm_gguf_alignment(g), 256);
        CHECK_EQ_INT(realm_gguf_data_offset(g), data_at);
        realm_gguf_close(g);
    }
    b_free(&b);

    /* Duplicates. */
    b_hdr(&b, 3, 0, 3);
    b_kv_u32(&b, "k1", 1);
    b_kv_u32(&b, "k2", 2);
    const size_t dup_at = b.len;
    b_kv_str(&b, "k1", "again");
    char phrase[128];
    snprintf(phrase, sizeof phrase, "at offset %zu: duplicate metadata key 'k1' (entries 0 and 2)",
             dup_at);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT, phrase);
    b_free(&b);
    build_small(&b, &L, 3);
    b.p[L.t1_name + 8] = 'a'; /* rename "b" to "a" */
    EXPECT_FAIL(&b, REALM_ERR_FORMAT, "duplicate tensor name 'a' (tensors 0 and 1)");
    b_free(&b);

    /* Tensor shapes and types. */
    build_small(&b, &L, 3);
    b_set_u64(&b, L.t0_ne + 8, 0);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT, "tensor 'a': dimension 1 is zero");
    b_set_u64(&b, L.t0_ne + 8, 1ull << 63);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT, "tensor 'a': dimension 1 is 9223372036854775808, above");
    b_set_u64(&b, L.t0_ne + 8, 2);
    b_set_u32(&b, L.t0_ndims, 0);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT, "tensor 'a': dimension count 0 is not in 1..4");
    b_set_u32(&b, L.t0_ndims, 5);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT, "tensor 'a': dimension count 5 is not in 1..4");
    b_set_u32(&b, L.t0_ndims, 2);
    b_set_u32(&b, L.t0_type, 77);
    snprintf(phrase, sizeof phrase, "at offset %zu: tensor 'a': unknown tensor type id 77",
             L.t0_type);
    EXPECT_FAIL(&b, REALM_ERR_UNSUPPORTED, phrase);
    b_set_u32(&b, L.t0_type, 4); /* an id GGML retired */
    EXPECT_FAIL(&b, REALM_ERR_UNSUPPORTED, "unknown tensor type id 4");
    b_set_u32(&b, L.t0_type, REALM_TYPE_F32);
    b_set_u64(&b, L.t0_off, 4);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT,
                "tensor 'a': data offset 4 is not a multiple of the alignment 32");
    b_set_u64(&b, L.t0_off, 64);
    snprintf(phrase, sizeof phrase, "tensor 'a': data [%zu, %zu) ends past end of file (%zu bytes)",
             L.data + 64, L.data + 96, L.end);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT, phrase);
    b_set_u64(&b, L.t0_off, UINT64_MAX - 31);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT,
                "tensor 'a': data offset 18446744073709551584 + size 32 "
                "overflows");
    b_set_u64(&b, L.t0_off, 0);
    b_set_u64(&b, L.t0_ne, 1ull << 32);
    b_set_u64(&b, L.t0_ne + 8, 1ull << 32);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT,
                "tensor 'a': shape [4294967296, 4294967296, 1, 1] has more than 2^63 - 1 "
                "elements");
    b_set_u64(&b, L.t0_ne, 1ull << 62);
    b_set_u64(&b, L.t0_ne + 8, 1);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT,
                "tensor 'a': size of 4611686018427387904 F32 elements overflows 64 bits");
    b_set_u64(&b, L.t0_ne, 4);
    b_set_u64(&b, L.t0_ne + 8, 2);
    b_set_u32(&b, L.t1_type, REALM_TYPE_Q4_K);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT,
                "tensor 'b': ne[0] = 32 is not a multiple of the Q4_K block size 256");
    b_set_u32(&b, L.t1_type, REALM_TYPE_Q8_0);
    realm_gguf *ok = NULL;
    CHECK_RC(realm_gguf_open_memory(b.p, b.len, &ok), REALM_OK); /* all patches undone */
    realm_gguf_close(ok);
    b_free(&b);

    /* Tensor name problems. */
    b_hdr(&b, 3, 1, 0);
    b_u64(&b, 1ull << 20);
    b_fill(&b, 64, 'n');
    EXPECT_FAIL(&b, REALM_ERR_FORMAT,
                "tensor info 0: name length 1048576 exceeds the limit of 65535 bytes");
    b_free(&b);
    b_hdr(&b, 3, 2, 0);
    b_tensor(&b, "a-tensor-name-long-enough-for-two-infos", 1, (const uint64_t[]){4},
             REALM_TYPE_F32, 0);
    b_str(&b, "yz");
    b_fill(&b, 2, 1);
    EXPECT_FAIL(&b, REALM_ERR_FORMAT, "tensor 'yz': file ends inside a dimension count");
    b_free(&b);
}

/* ---- the string table (core/strmap_internal.h) --------------------------- */

/*
 * realm__strmap: keys of every length around the hash's block sizes, keys
 * that differ only in trailing zero bytes, lookups by unterminated strings,
 * growth while the arena moves, clear, the size limit, and keys that differ
 * the way a fixed-key multiply-xorshift hash cannot tell apart whatever its
 * seed: such a family of 1024 keys must not collide here.
 */
static void test_strmap(void)
{
    realm__strmap m = {0};
    CHECK_EQ_INT(realm__strmap_find(&m, NULL, "x", 1), -1);

    /* Keys "k<i>" padded with i % 41 zero bytes, in an arena that grows. */
    char *arena = NULL;
    size_t len = 0, cap = 0;
    uint64_t *off = malloc(5000 * sizeof *off);
    uint32_t *klen = malloc(5000 * sizeof *klen);
    for (int i = 0; i < 5000; i++) {
        char key[80];
        int n = snprintf(key, sizeof key, "k%d", i);
        memset(key + n, 0, (size_t)(i % 41));
        n += i % 41;
        if (len + (size_t)n > cap) {
            cap = cap ? 2 * cap : 64;
            arena = realloc(arena, cap);
        }
        memcpy(arena + len, key, (size_t)n);
        off[i] = len;
        klen[i] = (uint32_t)n;
        len += (size_t)n;
        CHECK_EQ_INT(realm__strmap_put(&m, arena, off[i], (size_t)n, i), i);
    }
    CHECK_EQ_INT(m.n, 5000);
    int found = 0;
    for (int i = 0; i < 5000; i++) {
        char *copy = malloc(klen[i] + 1); /* not in the arena, one byte more */
        memcpy(copy, arena + off[i], klen[i]);
        copy[klen[i]] = 'z';
        found += realm__strmap_find(&m, arena, copy, klen[i]) == i;
        CHECK_EQ_INT(realm__strmap_find(&m, arena, copy, klen[i] + 1), -1);
        free(copy);
    }
    CHECK_EQ_INT(found, 5000);
    CHECK_EQ_INT(realm__strmap_find(&m, arena, "k41", 3), 41);
    CHECK_EQ_INT(realm__strmap_find(&m, arena, "k41\0", 4), -1);
    CHECK_EQ_INT(realm__strmap_find(&m, arena, "k1\0", 3), 1);
    CHECK_EQ_INT(realm__strmap_find(&m, arena, "k1", 2), -1);
    CHECK_EQ_INT(realm__strmap_put(&m, arena, off[7], klen[7], 99), 7); /* the old value */

    realm__strmap_clear(&m);
    CHECK_EQ_INT(realm__strmap_find(&m, arena, "k41", 3), -1);
    CHECK_EQ_INT(realm__strmap_put(&m, arena, off[41], klen[41], 3), 3);
    CHECK_EQ_INT(realm__strmap_find(&m, arena, "k41", 3), 3);
    realm__strmap_free(&m);
    free(arena);
    free(off);
    free(klen);

    /* Sizes are checked before allocating; every table has its own secret. */
    realm__strmap big;
    CHECK_RC(realm__strmap_init(&big, (uint64_t)REALM__STRMAP_MAX + 1), REALM_ERR_RANGE);
    CHECK(big.slots == NULL && big.ent == NULL);
    realm__strmap a, b;
    CHECK_RC(realm__strmap_init(&a, 0), REALM_OK);
    CHECK_RC(realm__strmap_init(&b, 0), REALM_OK);
    CHECK(a.key[0] != b.key[0] && a.key[1] != b.key[1]);
    realm__strmap_free(&b);

    /* 160-byte keys, ten pairs of 8-byte words each either (x, y) or
     * (x ^ 2^63, y ^ (2^63 | 2^34)): one difference a hash that does
     * h = (h ^ w) * C; h ^= h >> 29 cancels for every seed. */
    enum { WORDS = 20, KEYS = 1 << (WORDS / 2) };
    uint64_t *fam = malloc(sizeof(uint64_t) * WORDS * KEYS);
    uint64_t *hashes = malloc(sizeof(uint64_t) * KEYS);
    for (int k = 0; k < KEYS; k++) {
        for (int w = 0; w < WORDS; w++)
            fam[k * WORDS + w] = 0x0101010101010101ull * (uint64_t)(w + 1);
        for (int pair = 0; pair < WORDS / 2; pair++)
            if (k >> pair & 1) {
                fam[k * WORDS + 2 * pair] ^= 1ull << 63;
                fam[k * WORDS + 2 * pair + 1] ^= 1ull << 63 | 1ull << 34;
            }
        hashes[k] = realm__strmap_hash(&a, &fam[k * WORDS], WORDS * 8);
    }
    int same = 0;
    for (int i = 0; i < KEYS; i++)
        for (int j = i + 1; j < KEYS; j++)
            same += hashes[i] == hashes[j];
    CHECK_EQ_INT(same, 0);
    free(fam);
    free(hashes);
    realm__strmap_free(&a);
}

int main(void)
{
    test_begin("gguf", 300);
    verbose = getenv("GGUF_TEST_VERBOSE") != NULL;
    CHECK_EQ_STR(realm_gguf_type_name(REALM_GGUF_FLOAT32), "float32");
    CHECK_EQ_STR(realm_gguf_type_name((realm_gguf_type)99), "unknown");
    CHECK_EQ_INT(realm_gguf_type_size(REALM_GGUF_UINT64), 8);
    CHECK_EQ_INT(realm_gguf_type_size(REALM_GGUF_BOOL), 1);
    CHECK_EQ_INT(realm_gguf_type_size(REALM_GGUF_STRING), 0);
    test_stories();
    test_tiny_q4k();
    test_vocabs();
    test_round_trips();
    test_open_errors();
    test_all_types();
    test_streaming();
    test_writer_errors();
    test_small_valid();
    test_truncation();
    test_mutations();
    test_malformed();
    test_strmap();
    return test_end();
}
