/* Internal layout of realm_model, realm_kv_cache and realm_ctx (src/model). */
#ifndef REALM_MODEL_INTERNAL_H
#define REALM_MODEL_INTERNAL_H

#include "realm/kernels.h"
#include "realm/model.h"
#include "realm/threads.h"

/* A weight matrix: rows of ne0 elements of `type`, row-major in the mapping,
 * or packed (realm_repack_rows) in the model's packed buffer. */
typedef struct weight {
    const void *data;
    bool packed;
    realm_type type;
    int64_t ne0;  /* row length (input features) */
    int64_t rows; /* output features */
    size_t row_size;
} weight;

typedef struct layer {
    const float *attn_norm; /* n_embd */
    weight wq, wk, wv, wo;
    const float *bq, *bk, *bv; /* qwen2 biases, else NULL */
    const float *ffn_norm;
    weight w_gate, w_up, w_down;
} layer;

struct realm_model {
    realm_gguf **parts; /* n_parts files in split.no order; parts[0] has the metadata */
    char **part_paths;  /* their paths, for messages */
    int32_t n_parts;
    int32_t n_locked; /* parts [0, n_locked) are mlock()ed (params->mlock) */
    realm_hparams hp;
    weight tok_embd;
    const float *output_norm;
    weight output;
    const float *rope_freqs; /* n_rot / 2 factors, or NULL */
    layer *layers;
    uint64_t weight_bytes;
    void *packed; /* the packed matrices (realm_model_params.repack), or NULL */
    size_t packed_bytes;
    bool packed_locked;
    /* Whole pages of the mappings holding only repacked matrices: released,
     * and left out when the mappings are locked. Sorted by address. */
    struct page_range {
        uintptr_t a, b;
    } * released;
    int32_t n_released;
};

/* Sequence bookkeeping of the paged cache. */
typedef struct kv_seq {
    bool used;
    int32_t len;      /* tokens */
    int32_t n_blocks; /* blocks in use: ceil(len / block_size) */
    int32_t cap;      /* capacity of `blocks` */
    int32_t *blocks;
} kv_seq;

struct realm_kv_cache {
    const realm_model *model;
    realm_type type_k, type_v; /* F16 or Q8_0 */
    int32_t block_size;
    int32_t n_blocks;
    int64_t kv_dim;                      /* n_head_kv * head_dim */
    size_t row_bytes_k, row_bytes_v;     /* bytes of one token's K (V) for one layer */
    size_t head_bytes_k, head_bytes_v;   /* bytes of one token's K (V) for one KV head */
    size_t block_bytes_k, block_bytes_v; /* bytes of one block of one layer's K (V) */
    /* Per layer: n_blocks * block_bytes_k (_v), head-major over the whole
     * pool, [n_head_kv][n_blocks][block_size][head_dim] (kv__k_row): one
     * head's keys in a block are contiguous, and so are its keys in blocks
     * of consecutive ids, which the allocator hands a growing sequence where
     * it can. Decode attention reads a head's rows in order, and a run longer
     * than a page streams from memory: with each block's heads side by side,
     * every 4 KiB run started the hardware prefetcher afresh and the reads
     * waited on memory latency (twice the attention time at 2048 tokens).
     * F16 keys are stored transposed within each (head, block):
     * [head_dim][block_size], element i of the key in slot j at
     * kv__k_col(...)[i * block_size + j] (written so by the forward
     * pass's kv_store), so that the kernels
     * score a vector of keys without horizontal sums (realm_ops.attn_f16).
     * Q8_0 keys, quantized along the head, stay rows. */
    uint8_t **k, **v;
    int32_t *refs;      /* per block: sequences using it (0 = free) */
    int32_t *free_list; /* free block ids, taken from the top or by id (free_pos) */
    int32_t *free_pos;  /* per block: its index in free_list, -1 when in use */
    int32_t n_free;
    kv_seq *seqs;
    int32_t n_seqs; /* slots in seqs */
};

/* Where token i of seq lives: block id and slot within the block. */
static inline void kv__locate(const realm_kv_cache *kv, const kv_seq *s, int32_t pos,
                              int32_t *block, int32_t *slot)
{
    *block = s->blocks[pos / kv->block_size];
    *slot = pos % kv->block_size;
}

/* The key (value) row of KV head g of the token in slot `slot` of block
 * `block`, layer l; the next slot's row of the same head follows it,
 * head_bytes_k (_v) on. For F16 keys (stored transposed), only the block's
 * start (slot 0) is meaningful: see kv__k_col. */
static inline uint8_t *kv__k_row(const realm_kv_cache *kv, int l, int32_t block, int32_t slot,
                                 int g)
{
    return kv->k[l] + (((size_t)g * (size_t)kv->n_blocks + (size_t)block) * (size_t)kv->block_size +
                       (size_t)slot) *
                          kv->head_bytes_k;
}
/* F16 keys (stored transposed): element 0 of the key in slot `slot` of block
 * `block`, KV head g, layer l; element i is block_size numbers on, the next
 * slot's key beside it. */
static inline uint16_t *kv__k_col(const realm_kv_cache *kv, int l, int32_t block, int32_t slot,
                                  int g)
{
    return (uint16_t *)kv__k_row(kv, l, block, 0, g) + slot;
}
static inline uint8_t *kv__v_row(const realm_kv_cache *kv, int l, int32_t block, int32_t slot,
                                 int g)
{
    return kv->v[l] + (((size_t)g * (size_t)kv->n_blocks + (size_t)block) * (size_t)kv->block_size +
                       (size_t)slot) *
                          kv->head_bytes_v;
}

/* Internal KV operations used by the forward pass. */
kv_seq *realm__kv_seq(realm_kv_cache *kv, int32_t seq);
/* Make room for n more tokens in seq: allocate blocks, and un-share (copy)
 * the last block if it is shared and will be written. All or nothing. */
int realm__kv_reserve(realm_kv_cache *kv, int32_t seq, int32_t n);
/* Blocks that reserving n more tokens in seq would take from the pool. */
int32_t realm__kv_blocks_needed(const realm_kv_cache *kv, int32_t seq, int32_t n);

/* RoPE as the model's metadata gives it, before overrides (rope.c). */
typedef struct realm__rope_train {
    realm_rope_scaling type; /* rope.scaling.type; LINEAR without one */
    float freq_base;         /* rope.freq_base; 10000 without one */
    float freq_scale;        /* 1 / rope.scaling.factor; 1 without one */
    int32_t n_ctx_orig;      /* rope.scaling.original_context_length, else n_ctx_train */
    float attn_factor;       /* rope.scaling.attn_factor; 1 without one */
} realm__rope_train;

/* Set hp's rope_* fields from t with the overrides o (NULL: none) applied,
 * as llama.cpp resolves them; REALM_ERR_INVAL for a bad override. */
int realm__rope_resolve(realm_hparams *hp, const realm__rope_train *t, const realm_rope_params *o);

/* RoPE, a piece of the forward pass exposed for unit tests (rope.c). */
void realm__rope_cache(const realm_hparams *hp, const float *freq_factors, int32_t pos,
                       float *cos_out, float *sin_out);
void realm__rope_apply(const realm_hparams *hp, float *v, int n_heads, const float *cs,
                       const float *sn);

/*
 * Attention over the paged cache, by KV head: the nq = n_head / n_head_kv
 * query heads sharing KV head g are computed together (their rows are
 * consecutive in an entry's q), reading each key and value once for all.
 *
 * A sequence's positions are cut into chunks of REALM__ATTN_CHUNK; each
 * chunk gives a partial state (per query row: maximum score m, sum of
 * weights l, weighted sum of values acc), and the partials are merged in
 * chunk order. Whether the chunks of one head group are computed in turn by
 * one thread or side by side by several (split-K), the same operations run
 * in the same order, so the result is bitwise the same either way: the
 * batch's size or make-up never changes a token's attention
 * (realm_ctx_params.batch_invariant).
 *
 * A partial of nq rows is REALM__ATTN_PART(nq, hd) floats: m[nq], l[nq],
 * acc[nq][hd].
 */
#define REALM__ATTN_CHUNK        256 /* positions per partial; fixed, see above */
#define REALM__ATTN_TILE         64  /* keys per kernel call, at most */
#define REALM__ATTN_PART(nq, hd) ((int64_t)(nq) * ((int64_t)(hd) + 2))
/* Scratch floats realm__attention needs: two partials and the kernel's (a
 * tile's scores and, for Q8_0 values, their blocks' scales). */
#define REALM__ATTN_SCRATCH(nq, hd)                                                                \
    (2 * REALM__ATTN_PART(nq, hd) + REALM_ATTN_SCRATCH(nq, REALM__ATTN_TILE, hd))

/* One online-softmax step (the state of realm_ops.attn_f16: m, lsum, acc of
 * nq rows) of KV head g's nq query rows q over the cnt tokens at slots
 * [slot, slot + cnt) of block `block`, layer l. The one place that picks the
 * kernel for the cache's key and value types (F16, Q8_0, or one of each).
 * scratch: nq * (cnt + 2) + cnt * head_dim / 32 floats. */
void realm__attn_block(const realm_ops *ops, const realm_kv_cache *kv, int l, int32_t block,
                       int32_t slot, int cnt, int g, const float *q, float scale, float *m,
                       float *lsum, float *acc, float *scratch);
/* The partial of KV head g's nq query rows q over positions [p0, p1) of the
 * sequence whose blocks are `blocks`, layer l. scratch: nq * (TILE + 2) +
 * TILE * head_dim / 32 floats. */
void realm__attn_range(const realm_ops *ops, const realm_kv_cache *kv, int l, const int32_t *blocks,
                       int32_t p0, int32_t p1, int g, const float *q, float *scratch, float *part);
/* into = the partial of into's positions followed by part's. */
void realm__attn_merge(int nq, int hd, float *into, const float *part);
/* out row r = acc[r] / l[r]. */
void realm__attn_finish(int nq, int hd, const float *part, float *out);
/* Attention of KV head g's nq query rows over positions [0, n_pos), chunk
 * after chunk, into out (nq rows of hd). scratch: REALM__ATTN_SCRATCH floats. */
void realm__attention(const realm_ops *ops, const realm_kv_cache *kv, int l, const int32_t *blocks,
                      int32_t n_pos, int g, const float *q, float *scratch, float *out);

/*
 * Prefill, tiled: nt <= REALM__ATTN_QTILE consecutive query tokens of one
 * sequence at positions pos0 .. pos0 + nt - 1 (token t's nq rows for KV head
 * g at q + t * ldq, its output at out + t * ld_out), each attending to
 * positions [0, its own]. The keys and values of each step are loaded and
 * converted once for the tile (realm_ops.attn_tile); steps wholly after a
 * token (above the diagonal) are never computed for it, and the diagonal
 * step is cut at each token's position. Every token goes through the same
 * chunks, steps and merges as realm__attention would take it alone, with
 * the same arithmetic, so its output is bitwise realm__attention's whatever
 * the tile: prompts computed whole, in pieces or token by token agree.
 * scratch: REALM__ATTN_PREFILL_SCRATCH(nq, hd) floats.
 */
#define REALM__ATTN_QTILE 16 /* query tokens per prefill tile, at most */
#define REALM__ATTN_PREFILL_SCRATCH(nq, hd)                                                        \
    (2 * REALM__ATTN_QTILE * REALM__ATTN_PART(nq, hd) +                                            \
     REALM_ATTN_TILE_SCRATCH(REALM__ATTN_QTILE, nq, REALM__ATTN_TILE, hd))
void realm__attn_prefill(const realm_ops *ops, const realm_kv_cache *kv, int l,
                         const int32_t *blocks, int32_t pos0, int nt, int g, const float *q,
                         int64_t ldq, float *scratch, float *out, int64_t ld_out);
/* Split-K units of ctx's last forward pass (0: split by whole pairs), for tests. */
int32_t realm__ctx_attn_units(const realm_ctx *c);

#endif
