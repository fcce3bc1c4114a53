/*
 * Internal layout of realm_lora (lora.c) and the LoRA part of the forward
 * pass (lora_forward.c), which forward.c calls after each base matmul.
 */
#ifndef REALM_LORA_INTERNAL_H
#define REALM_LORA_INTERNAL_H

#include "realm/kernels.h"
#include "realm/lora.h"
#include "realm/threads.h"

/* The weights of a layer an adapter may adapt, in the order of the pass. */
typedef enum lora_kind {
    LORA_Q = 0,
    LORA_K,
    LORA_V,
    LORA_O,
    LORA_GATE,
    LORA_UP,
    LORA_DOWN,
    LORA_KIND_COUNT
} lora_kind;

/* One adapted weight: W (n_out x n_in) gets scale * B (A x). */
typedef struct lora_weight {
    int32_t rank; /* 0: not adapted */
    int64_t n_in, n_out;
    realm_type a_type, b_type; /* F32, F16 or BF16 */
    void *a;                   /* A: rank rows of n_in, as in the file */
    void *bt;                  /* B transposed: rank rows of n_out */
    float scale;               /* alpha / rank, or 1 without alpha */
} lora_weight;

struct realm_lora {
    const realm_model *base;
    uint64_t id;
    float alpha;
    int32_t rank_max;
    int32_t n_weights;
    int32_t n_layer;
    lora_weight *w; /* n_layer * LORA_KIND_COUNT, layer-major */
    uint64_t bytes;
};

static inline const lora_weight *lora__weight(const realm_lora *a, int layer, int kind)
{
    return &a->w[(size_t)layer * LORA_KIND_COUNT + (size_t)kind];
}

/* "attn_q" ... "ffn_down". */
const char *realm__lora_kind_name(int kind);

/* ---- the forward pass ---------------------------------------------------- */

/* Per-context state of the LoRA part of a pass (scratch sized for n_batch). */
typedef struct lora_pass lora_pass;

/* Bytes lora_pass_new allocates for this batch size. */
uint64_t realm__lora_pass_bytes(const realm_model *m, int32_t n_batch);
int realm__lora_pass_new(const realm_model *m, int32_t n_batch, lora_pass **out);
void realm__lora_pass_free(lora_pass *p);

/*
 * Plan the low-rank work of a batch of n entries with adapters bl (NULL:
 * none): which adapters it uses and, for each, its entries and their
 * scales. Checks the sets first (REALM_ERR_INVAL with a message naming the
 * entry and set). *active: whether any entry uses an adapter (then
 * realm__lora_apply has work).
 */
int realm__lora_plan(lora_pass *p, int32_t n, const realm_batch_lora *bl, bool *active);

/*
 * Set up the low-rank work of a group of weights of layer l sharing the input
 * x (rows of ld_x floats, one per batch entry): kinds[0..n_kinds), whose
 * outputs y_k (rows of ld_y[k] floats) have n_out[k] columns. Returns false
 * when no adapter of the pass adapts any of them (nothing to do). Then
 *
 *     y_k[e] += sum over the adapters a of entry e: s_{a,e} B_a (A_a x[e])
 *
 * in two halves that ride on the base product's own runs on the pool (no
 * run of their own): realm__lora_shrink (t = A x) with the conversion of x,
 * realm__lora_expand (y += s B t) with the matmul, each thread over the
 * output columns it has just computed. An entry's values never depend on
 * the rest of the batch nor on the split.
 */
bool realm__lora_group(lora_pass *p, int l, int n_kinds, const int *kinds, const int64_t *n_out,
                       const float *x, int64_t ld_x, float *const *y, const int64_t *ld_y);
/* Thread ith of nth's share of the group's shrink. */
void realm__lora_shrink(lora_pass *p, const realm_ops *ops, int ith, int nth);
/* Multiply-adds of the group's shrink (small ones are not worth a pool run). */
int64_t realm__lora_shrink_macs(const lora_pass *p);
/* The expand of the group's weights [k0, k0 + nk) over columns [c0, c1) of
 * their outputs side by side (weight k0's first, ...). Needs the whole
 * shrink done. */
void realm__lora_expand(lora_pass *p, const realm_ops *ops, int k0, int nk, int64_t c0, int64_t c1);

#endif
