/*
 * realm/lora.h — LoRA adapters: low-rank updates of a base model's weights,
 * loaded once and applied unmerged, so one copy of the base serves requests
 * with different adapters (or none) in the same forward pass.
 *
 * For an adapted weight W (n_out x n_in) an adapter holds A (rank x n_in) and
 * B (n_out x rank), and an entry of the batch that uses the adapter at scale s
 * gets
 *
 *     y = W x + (alpha / rank) * s * B (A x)
 *
 * (just s when the adapter has no alpha, as llama.cpp does). Several adapters
 * may be combined for one entry, each with its scale: an adapter set. The
 * base product runs once for the whole batch; the low-rank part runs per
 * adapter over the entries using it (realm_forward_lora, realm/model.h).
 *
 *     realm_lora *a;
 *     if (realm_lora_load(model, "adapter.gguf", &a) < 0) puts(realm_last_error());
 *     realm_lora_item items[] = {{a, 1.0f}};
 *     realm_lora_set set = {1, items};
 *     int32_t set_of_entry[n] = {0, 0, -1, ...};    // -1: no adapter
 *     realm_batch b = {n, tok, pos, seq, want};
 *     realm_forward_lora(ctx, &b, &(realm_batch_lora){set_of_entry, &set, 1}, logits);
 *     realm_lora_free(a);                              // once nothing uses it
 *
 * File format: GGUF as llama.cpp writes and reads LoRA adapters
 * (convert_lora_to_gguf.py): general.type = "adapter", adapter.type = "lora",
 * general.architecture the base's, adapter.lora.alpha (a float; absent or 0:
 * no alpha), and for each adapted weight NAME (e.g. blk.3.attn_q.weight)
 * with GGUF shape [n_in, n_out] the tensors NAME.lora_a [n_in, rank] and
 * NAME.lora_b [rank, n_out], each F32, F16 or BF16. Any subset of the
 * attention (attn_q, attn_k, attn_v, attn_output) and feed-forward
 * (ffn_gate, ffn_up, ffn_down) weights of any layers may be adapted; the rank
 * may differ between weights (1..REALM_LORA_MAX_RANK).
 *
 * The file is untrusted: it is read with the GGUF reader's checks
 * (realm/gguf.h) and then checked against the base, every problem an error
 * naming the file and the tensor or key: REALM_ERR_FORMAT when it is not a
 * LoRA adapter (general.type, adapter.type), a tensor is unpaired, its shape
 * does not fit the base weight ("maybe lora_a and lora_b are swapped") or A's
 * rank differs from B's; REALM_ERR_UNSUPPORTED for another architecture than
 * the base's, a tensor type other than F32/F16/BF16, a weight that cannot be
 * adapted (embeddings, output, norms) or a rank above the limit; REALM_ERR_IO
 * when the file cannot be read.
 *
 * Memory: the adapter's tensors are copied out of the file (B transposed,
 * in its own type), so the file is not kept open; realm_lora_bytes says how
 * much. The base model is borrowed and must outlive the adapter.
 *
 * Thread safety: an adapter is immutable after load; any number of contexts
 * and threads may use it at once. It must not be freed while a forward pass
 * or an engine request uses it.
 */
#ifndef REALM_LORA_H
#define REALM_LORA_H

#include <stdint.h>

#include "realm/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

#define REALM_LORA_MAX_RANK     128 /* rank of one adapted weight */
#define REALM_LORA_MAX_SET      8   /* adapters in one set */
#define REALM_LORA_MAX_SET_RANK 256 /* sum of the (largest) ranks of a set's adapters */

typedef struct realm_lora realm_lora;

/*
 * Read the adapter at path and check it against base (architecture, every
 * tensor's name, shape and type). On failure *out is NULL and the message
 * starts with path.
 */
int realm_lora_load(const realm_model *base, const char *path, realm_lora **out);
/* NULL is a no-op. */
void realm_lora_free(realm_lora *a);

const realm_model *realm_lora_base(const realm_lora *a);
/* adapter.lora.alpha, 0 when the file has none. */
float realm_lora_alpha(const realm_lora *a);
/* The largest rank of its weights. */
int32_t realm_lora_rank(const realm_lora *a);
/* Adapted weight matrices (pairs of lora_a / lora_b). */
int32_t realm_lora_n_weights(const realm_lora *a);
/* Bytes the adapter's tensors take in memory. */
uint64_t realm_lora_bytes(const realm_lora *a);
/*
 * A number no other adapter loaded by this process has (ever, even after
 * this one is freed): what caches key on, since a freed adapter's address
 * may be reused by the next one.
 */
uint64_t realm_lora_id(const realm_lora *a);

/* One adapter of a set and its scale (llama.cpp's --lora-scaled FILE SCALE). */
typedef struct realm_lora_item {
    const realm_lora *lora;
    float scale;
} realm_lora_item;

/*
 * Adapters applied together to an entry: at most REALM_LORA_MAX_SET, their
 * ranks summing to at most REALM_LORA_MAX_SET_RANK, all of the same base.
 * Their order does not matter: the low-rank terms are added in the order of
 * realm_lora_id, so a set gives the same bits however it is written, and an
 * adapter listed twice counts once with the sum of its scales. Items of
 * scale 0 are ignored (a set of only those is no adapter).
 */
typedef struct realm_lora_set {
    int32_t n;
    const realm_lora_item *items;
} realm_lora_set;

/*
 * The canonical form of set: its adapters in realm_lora_id order, each once
 * with its summed scale, none of scale 0, into out (room for
 * REALM_LORA_MAX_SET items; *n_out of them, possibly 0). Two sets that act
 * alike have the same canonical form. REALM_ERR_INVAL, naming the item, for
 * a set over the limits, an item without an adapter, an adapter loaded for
 * another model than base, or a scale that is not finite.
 */
int realm_lora_set_normalize(const realm_model *base, const realm_lora_set *set,
                             realm_lora_item *out, int32_t *n_out);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
