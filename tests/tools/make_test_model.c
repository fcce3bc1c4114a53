/*
 * make_test_model SRC.gguf OUT.gguf [N_EMBD N_LAYER N_HEAD N_HEAD_KV N_FF N_CTX]
 *
 * Not a test: writes a LLaMA-architecture model with pseudo-random F16
 * weights of the given shape (default 512 8 8 4 1536 2048: about 25 M
 * parameters) and SRC's tokenizer and other metadata. Tests that need a
 * forward pass slow enough to act during it (a client leaving while its
 * prompt is computed) make one with it at set-up; stories260K is too fast
 * for that, and the shared generator needs numpy.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "realm/error.h"
#include "realm/gguf.h"
#include "realm/quant.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

/* uniform in (-a, a) */
static float next_uniform(float a)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return a * (2.0f * (float)(rng >> 40) / (float)(1ull << 24) - 1.0f);
}

#define MAX_TENSORS 512

static void *bufs[MAX_TENSORS];
static int n_bufs;

static int add(realm_gguf_writer *w, const char *name, int64_t ne0, int64_t ne1)
{
    if (n_bufs == MAX_TENSORS) {
        fprintf(stderr, "make_test_model: too many tensors\n");
        return -1;
    }
    const int64_t ne[2] = {ne0, ne1};
    const int64_t n = ne0 * (ne1 ? ne1 : 1);
    void *data;
    realm_type type;
    if (ne1 == 0) { /* a norm: ones, F32 */
        float *f = malloc((size_t)n * sizeof *f);
        for (int64_t i = 0; f && i < n; i++)
            f[i] = 1.0f;
        data = f, type = REALM_TYPE_F32;
    } else { /* a matrix: std about 0.02, F16 */
        uint16_t *h = malloc((size_t)n * sizeof *h);
        for (int64_t i = 0; h && i < n; i++)
            h[i] = realm_fp32_to_fp16(next_uniform(0.0346f));
        data = h, type = REALM_TYPE_F16;
    }
    if (data == NULL) {
        fprintf(stderr, "make_test_model: out of memory\n");
        return -1;
    }
    bufs[n_bufs++] = data;
    if (realm_gguf_add_tensor(w, name, ne1 ? 2 : 1, ne, type, data) < 0) {
        fprintf(stderr, "make_test_model: %s: %s\n", name, realm_last_error());
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    long shape[6] = {512, 8, 8, 4, 1536, 2048};
    if (argc != 3 && argc != 9) {
        fprintf(stderr, "usage: make_test_model SRC.gguf OUT.gguf "
                        "[N_EMBD N_LAYER N_HEAD N_HEAD_KV N_FF N_CTX]\n");
        return 2;
    }
    for (int i = 0; argc == 9 && i < 6; i++) {
        char *end;
        shape[i] = strtol(argv[3 + i], &end, 10);
        if (*end || shape[i] < 1 || shape[i] > 65536) {
            fprintf(stderr, "make_test_model: bad number '%s'\n", argv[3 + i]);
            return 2;
        }
    }
    const long n_embd = shape[0], n_layer = shape[1], n_head = shape[2], n_head_kv = shape[3],
               n_ff = shape[4], n_ctx = shape[5];
    if (n_embd % n_head || n_head % n_head_kv || (n_embd / n_head) % 2 || n_embd % 32 ||
        n_ff % 32 || n_layer > (MAX_TENSORS - 3) / 9) {
        fprintf(stderr, "make_test_model: inconsistent shape\n");
        return 2;
    }
    const long head_dim = n_embd / n_head, n_embd_kv = head_dim * n_head_kv;

    realm_gguf *src;
    if (realm_gguf_open(argv[1], &src) < 0) {
        fprintf(stderr, "make_test_model: %s\n", realm_last_error());
        return 1;
    }
    int64_t kv;
    uint64_t n_tokens;
    if (realm_gguf_get_arr(src, "tokenizer.ggml.tokens", REALM_GGUF_STRING, &kv, &n_tokens) < 0) {
        fprintf(stderr, "make_test_model: %s: %s\n", argv[1], realm_last_error());
        return 1;
    }
    const int64_t n_vocab = (int64_t)n_tokens;
    realm_gguf_writer *w;
    if (realm_gguf_writer_new(&w) < 0)
        return 1;
    for (int64_t i = 0; i < realm_gguf_n_kv(src); i++)
        realm_gguf_copy_kv(w, src, i);
    realm_gguf_set_str(w, "general.architecture", "llama", 5);
    realm_gguf_set_str(w, "general.name", "realm-test-model", 16);
    realm_gguf_set_u32(w, "llama.context_length", (uint32_t)n_ctx);
    realm_gguf_set_u32(w, "llama.embedding_length", (uint32_t)n_embd);
    realm_gguf_set_u32(w, "llama.block_count", (uint32_t)n_layer);
    realm_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)n_ff);
    realm_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)n_head);
    realm_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)n_head_kv);
    realm_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)head_dim);

    int rc = add(w, "token_embd.weight", n_embd, n_vocab);
    for (long l = 0; rc == 0 && l < n_layer; l++) {
        static const struct {
            const char *name;
            int in, out; /* 0: n_embd, 1: n_embd_kv, 2: n_ff, -1: none (a norm) */
        } t[] = {{"attn_norm", 0, -1}, {"attn_q", 0, 0},      {"attn_k", 0, 1},
                 {"attn_v", 0, 1},     {"attn_output", 0, 0}, {"ffn_norm", 0, -1},
                 {"ffn_gate", 0, 2},   {"ffn_up", 0, 2},      {"ffn_down", 2, 0}};
        const long dims[3] = {n_embd, n_embd_kv, n_ff};
        for (size_t k = 0; rc == 0 && k < sizeof t / sizeof t[0]; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%ld.%s.weight", l, t[k].name);
            rc = add(w, name, dims[t[k].in], t[k].out < 0 ? 0 : dims[t[k].out]);
        }
    }
    if (rc == 0)
        rc = add(w, "output_norm.weight", n_embd, 0);
    if (rc == 0)
        rc = add(w, "output.weight", n_embd, n_vocab);
    if (rc == 0 && realm_gguf_writer_write(w, argv[2]) < 0) {
        fprintf(stderr, "make_test_model: %s: %s\n", argv[2], realm_last_error());
        rc = -1;
    }
    realm_gguf_writer_free(w);
    realm_gguf_close(src);
    for (int i = 0; i < n_bufs; i++)
        free(bufs[i]);
    return rc == 0 ? 0 : 1;
}
