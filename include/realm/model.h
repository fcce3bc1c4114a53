/*
 * realm/model.h — llama-family models: loading, the paged KV cache, and the
 * forward pass over a batch of tokens from many sequences.
 *
 * Three objects, with separate lifetimes:
 *
 *   realm_model     the weights, memory-mapped from a GGUF file (or the
 *                   parts of a split one) and never copied: one loaded model
 *                   is shared, read-only, by every cache, context and thread.
 *   realm_kv_cache  a pool of fixed-size blocks holding keys and values
 *                   (F16, or Q8_0 at about half the size: the
 *                   realm_kv_params types). A sequence owns a list of blocks;
 *                   sequences can share prefix blocks (fork), copied only
 *                   when one of them writes into a shared block.
 *   realm_ctx       compute state for one caller: scratch buffers sized for a
 *                   maximum batch, and a thread pool. Allocated once; the
 *                   forward pass allocates nothing.
 *
 *     realm_model *m;
 *     realm_model_load("model.gguf", NULL, &m);
 *     realm_kv_cache *kv;
 *     realm_kv_cache_new(m, &(realm_kv_params){.n_ctx = 4096}, &kv);
 *     realm_ctx *ctx;
 *     realm_ctx_new(m, kv, &(realm_ctx_params){.n_batch = 512, .n_threads = 2}, &ctx);
 *     int32_t seq;
 *     realm_kv_seq_new(kv, &seq);
 *     realm_batch b = { n, tokens, positions, seqs, want_logits };
 *     realm_forward(ctx, &b, logits);     // logits: one n_vocab row per wanted entry
 *
 * Split models. llama.cpp's gguf-split writes one model as files
 * NAME-00001-of-0000N.gguf ... NAME-0000N-of-0000N.gguf (see "split models"
 * in realm/gguf.h). realm_model_load takes the path of any part: it finds the
 * others next to it by that pattern, opens each with the same checks as a
 * single file, and maps them all. The parts must agree: every one says the
 * same split.count, split.no matches the number in its name, no tensor is in
 * two parts, and together they hold split.tensors.count tensors. A missing or
 * unreadable part, or any disagreement, fails the load with a message naming
 * the file. Metadata is read from the first part only; tensors are found in
 * whichever part holds them (realm_model_find_tensor).
 *
 * Batches. An entry is (sequence, token, position, wants logits), and
 * with realm_forward_lora the LoRA adapters it uses. Entries of
 * one sequence must come in position order and continue that sequence:
 * positions len, len+1, ... where len is the sequence's current length. Any
 * number of sequences may appear in one batch (prompt chunks and single
 * decode tokens mixed), so the weights are read once per step for all.
 *
 * Thread safety: a realm_model is immutable after load and may be used by any
 * number of threads. A realm_kv_cache and the contexts using it must be used
 * by one thread at a time (the engine's scheduler thread).
 *
 * Errors: negative codes (realm/error.h) with a message: REALM_ERR_FORMAT /
 * REALM_ERR_UNSUPPORTED at load for a malformed or unsupported model (the
 * message names the file, and the architecture, tensor or key; a RoPE
 * scaling type other than none, linear and yarn is unsupported),
 * REALM_ERR_INVAL at load for a bad override (realm_rope_params),
 * REALM_ERR_IO when a file (or a part of a split model) cannot be read,
 * REALM_ERR_NOSPACE when the
 * KV cache has no free block, REALM_ERR_RANGE when a memory budget or the
 * context length is exceeded, REALM_ERR_INVAL for a malformed batch.
 */
#ifndef REALM_MODEL_H
#define REALM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "realm/gguf.h"
#include "realm/quant.h"
#include "realm/threads.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

typedef enum realm_arch {
    REALM_ARCH_LLAMA = 0, /* LLaMA 1/2/3, TinyLlama, Mistral, llama2.c models */
    REALM_ARCH_QWEN2 = 1, /* Qwen2: Q/K/V biases, NeoX RoPE */
    REALM_ARCH_COUNT
} realm_arch;

typedef enum realm_rope_type {
    REALM_ROPE_NORM = 0, /* rotate adjacent pairs (x[2i], x[2i+1]) */
    REALM_ROPE_NEOX = 1, /* rotate halves (x[i], x[i + n_rot/2]) */
} realm_rope_type;

/*
 * RoPE scaling: how a model trained on short contexts is stretched to longer
 * ones, as GGUF's {arch}.rope.scaling.type and llama.cpp's --rope-scaling
 * name them. LINEAR divides every position by the scaling factor (angle x
 * freq_scale). YARN (arXiv 2309.00071) interpolates the slow-turning pairs
 * like LINEAR but keeps the fast-turning ones as trained, blending the two
 * over a ramp of pairs set by beta_fast / beta_slow and the original
 * context, and scales the magnitude of cos/sin by 1 + 0.1 ln(factor).
 */
typedef enum realm_rope_scaling {
    REALM_ROPE_SCALING_DEFAULT = 0, /* realm_rope_params: keep the model's own */
    REALM_ROPE_SCALING_NONE = 1,
    REALM_ROPE_SCALING_LINEAR = 2,
    REALM_ROPE_SCALING_YARN = 3,
    REALM_ROPE_SCALING_COUNT
} realm_rope_scaling;

/* "none", "linear", "yarn" ("default" for DEFAULT, "unknown" out of range). */
const char *realm_rope_scaling_name(realm_rope_scaling s);

typedef struct realm_hparams {
    realm_arch arch;
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim; /* per head, for Q, K and V */
    int32_t n_ff;
    int32_t n_rot; /* dimensions rotated by RoPE (<= head_dim) */
    realm_rope_type rope_type;
    /*
     * RoPE as computed: the model's metadata with realm_rope_params applied,
     * resolved as llama.cpp resolves its context parameters; the angle of
     * pair i at position p is p * freq_base^(-2i/n_rot) / rope_freqs[i]
     * (Llama 3.1 factors, when the model has them) and then scaled (see
     * realm_rope_scaling). These are the operands of ggml's rope operator.
     */
    realm_rope_scaling rope_scaling; /* NONE, LINEAR or YARN */
    float rope_freq_base;
    float rope_freq_scale;   /* 1 / scaling factor; 1 under NONE */
    int32_t rope_n_ctx_orig; /* YaRN: the context the model was trained on before
                                scaling (rope.scaling.original_context_length) */
    float rope_ext_factor;   /* YaRN: extrapolation mix, 1 under YARN, else 0 */
    float rope_attn_factor;  /* scale of cos/sin, times 1 + 0.1 ln(1 / freq_scale)
                                where rope_ext_factor is not 0 */
    float rope_beta_fast;    /* YaRN ramp: pairs turning more than beta_fast times */
    float rope_beta_slow;    /* over n_ctx_orig keep their angle; fewer than
                                beta_slow times are interpolated */
    float norm_eps;
    bool tied_output;    /* no output.weight: logits use token_embd */
    bool has_rope_freqs; /* LLaMA-3.1 rope_freqs factors */
} realm_hparams;

typedef struct realm_model realm_model;

/*
 * Overrides of a model's RoPE, as llama.cpp's context parameters of the same
 * names (--rope-scaling, --rope-freq-base, --rope-freq-scale, --yarn-*). Zero
 * keeps what the model's metadata says (or the default below). Negative
 * values, or a scaling out of range, fail the load with REALM_ERR_INVAL.
 * Resolved as llama.cpp does: under NONE the scale is 1 whatever freq_scale
 * says; with YaRN's extrapolation on (ext factor not 0), the cos/sin
 * magnitude is 1 + 0.1 ln(1 / freq_scale) times rope.scaling.attn_factor and
 * yarn_attn_factor is not used.
 */
typedef struct realm_rope_params {
    realm_rope_scaling scaling; /* DEFAULT: rope.scaling.type (linear without one) */
    float freq_base;            /* 0: rope.freq_base (10000 without one) */
    float freq_scale;           /* 0: 1 / rope.scaling.factor (1 without one) */
    int32_t yarn_orig_ctx;      /* 0: rope.scaling.original_context_length, else
                                   the model's context length */
    bool has_yarn_ext_factor;   /* false: 1 under YARN, else 0 */
    float yarn_ext_factor;
    float yarn_attn_factor; /* 0: 1 */
    float yarn_beta_fast;   /* 0: 32 */
    float yarn_beta_slow;   /* 0: 1 */
} realm_rope_params;

/* Options of realm_model_load; NULL params mean all defaults (zero). */
typedef struct realm_model_params {
    /*
     * Lock the mapped file (weights and metadata; every part of a split
     * model) in RAM once the model is
     * loaded, so that memory pressure can never page weights out and stall a
     * forward pass on disk reads. Locked pages count against RLIMIT_MEMLOCK
     * (`ulimit -l`) unless the process has CAP_IPC_LOCK. When the kernel
     * refuses (limit too low, or not enough free RAM), realm_model_load fails
     * with REALM_ERR_NOMEM and a message giving the size asked, the current
     * RLIMIT_MEMLOCK soft limit and the fix. realm_model_free unlocks.
     */
    bool mlock;
    /*
     * Repack the weight matrices that have a packed layout on this CPU
     * (realm_repack_fast: Q4_K, Q5_K, Q6_K, Q8_0, Q4_0 with AVX-512, Q4_K with AVX2)
     * once, at load, into anonymous memory (16 rows interleaved,
     * realm/kernels.h), and compute with that copy: decode, speculative
     * verification and batched decode spend half to a third of the
     * arithmetic per weight (bench/README). The file's pages of those
     * matrices are then released from the mapping (they stay in the page
     * cache, reclaimable); with mlock, the packed copy is locked and the
     * mappings but those pages. Still one copy for every tenant; results
     * equal the unpacked product's up to float summation order. The load
     * takes longer (the new pages' first touch: 0.2-2 s for 615 MiB here).
     * The realm program sets it unless --no-repack.
     */
    bool repack;
    realm_rope_params rope; /* overrides of the model's RoPE; zero: none */
} realm_model_params;

/*
 * Map the GGUF file at path (for a split model, the path of any part: all
 * parts are loaded) and bind the architecture's tensors. Every tensor of the
 * file(s) must be one the architecture uses, with the expected shape and a
 * supported type; every required tensor must be present. On failure *out is
 * NULL and the message starts with the file at fault (path, or the part that
 * holds a bad tensor) and names the problem.
 */
int realm_model_load(const char *path, const realm_model_params *params, realm_model **out);
/* Unmap every part (and unlock what params->mlock locked); NULL is a no-op. */
void realm_model_free(realm_model *m);
const realm_hparams *realm_model_hparams(const realm_model *m);
/*
 * The model's file, for metadata (tokenizer, chat template): for a split
 * model, the first part, which holds all the metadata but only its own share
 * of the tensors; look tensors up with realm_model_find_tensor. Owned by m.
 */
const realm_gguf *realm_model_gguf(const realm_model *m);
/* Files the model was loaded from: 1, or split.count of a split model. */
int32_t realm_model_n_parts(const realm_model *m);
/* Part i (0-based, in split.no order), or NULL if i is out of range. Owned by m. */
const realm_gguf *realm_model_part(const realm_model *m, int32_t i);
/*
 * The tensor of that name in whichever part holds it, or NULL. The info and
 * its data point into the mapping, owned by m, valid until realm_model_free.
 */
const realm_gguf_tensor *realm_model_find_tensor(const realm_model *m, const char *name);
/* Bytes of weight data in the mappings (all parts). */
uint64_t realm_model_weight_bytes(const realm_model *m);
/* Bytes of the packed copy of the matrices repacked at load
 * (realm_model_params.repack); 0 if none was. */
uint64_t realm_model_packed_bytes(const realm_model *m);
/* "llama", "qwen2". */
const char *realm_arch_name(realm_arch a);

/* ---- KV cache ------------------------------------------------------------ */

typedef struct realm_kv_cache realm_kv_cache;

/*
 * Types of the cached keys and of the values, as llama.cpp's --cache-type-k
 * and --cache-type-v, each chosen apart:
 *   REALM_TYPE_F16   (also 0, the default) 2 bytes a number;
 *   REALM_TYPE_Q8_0  blocks of 32 numbers as 8-bit codes with an F16 scale,
 *                    34 bytes a block (1.0625 bytes a number): about half the
 *                    memory and the bandwidth of attention, for a small
 *                    error (bench/README.md measures it). Keys and values
 *                    are quantized as they are stored, exactly as
 *                    realm_quantize_row rounds; a head's numbers are whole
 *                    blocks, so the model's head size must be a multiple of
 *                    32 (REALM_ERR_UNSUPPORTED otherwise, as llama.cpp
 *                    refuses it).
 * Anything else is REALM_ERR_UNSUPPORTED.
 */
typedef struct realm_kv_params {
    int32_t n_ctx;       /* total tokens the pool holds, over all sequences */
    int32_t block_size;  /* tokens per block; 0 means 32 */
    realm_type type_k;   /* keys: REALM_TYPE_F16 (0) or REALM_TYPE_Q8_0, see above */
    realm_type type_v;   /* values: likewise */
    uint64_t mem_budget; /* bytes the pool may take; 0 means no limit */
} realm_kv_params;

/* Bytes a cache with these parameters allocates for model m; 0 for
 * parameters realm_kv_cache_new refuses. */
uint64_t realm_kv_cache_bytes(const realm_model *m, const realm_kv_params *p);
/* REALM_ERR_RANGE (naming both numbers) if the pool exceeds p->mem_budget;
 * REALM_ERR_UNSUPPORTED for a type the cache or the model cannot take (the
 * message says which and why). */
int realm_kv_cache_new(const realm_model *m, const realm_kv_params *p, realm_kv_cache **out);
void realm_kv_cache_free(realm_kv_cache *kv);
/* REALM_OK if realm_kv_cache_new would take p's types and sizes for m (the
 * budget aside), else its error and message. */
int realm_kv_params_check(const realm_model *m, const realm_kv_params *p);

/* The types of the cache's keys and values (F16 or Q8_0, never 0). */
realm_type realm_kv_type_k(const realm_kv_cache *kv);
realm_type realm_kv_type_v(const realm_kv_cache *kv);
int32_t realm_kv_block_size(const realm_kv_cache *kv);
int32_t realm_kv_n_blocks(const realm_kv_cache *kv);
int32_t realm_kv_free_blocks(const realm_kv_cache *kv);

/* A new empty sequence; its id is >= 0. */
int realm_kv_seq_new(realm_kv_cache *kv, int32_t *seq);
/* A new sequence sharing all of src's tokens (copy-on-write blocks). */
int realm_kv_seq_fork(realm_kv_cache *kv, int32_t src, int32_t *seq);
/* Keep the first n_tokens of seq (n_tokens <= its length), freeing blocks. */
int realm_kv_seq_truncate(realm_kv_cache *kv, int32_t seq, int32_t n_tokens);
/* Free seq and its blocks (shared blocks stay while another sequence uses them). */
void realm_kv_seq_free(realm_kv_cache *kv, int32_t seq);
/* Tokens in seq, or a negative error for an unknown id. */
int32_t realm_kv_seq_len(const realm_kv_cache *kv, int32_t seq);
/* Free blocks that appending n_tokens to seq would take (new blocks, plus a
 * copy of a shared partly filled last block), or a negative error. */
int32_t realm_kv_seq_blocks_needed(const realm_kv_cache *kv, int32_t seq, int32_t n_tokens);
/* Blocks that freeing seq would return to the pool (those no other sequence
 * shares), or a negative error. */
int32_t realm_kv_seq_exclusive_blocks(const realm_kv_cache *kv, int32_t seq);

/* ---- compute context and forward pass ------------------------------------ */

typedef struct realm_ctx realm_ctx;

typedef struct realm_ctx_params {
    int32_t n_batch;        /* most entries per forward call; 0 means 512 */
    int32_t n_threads;      /* 0 means one per CPU */
    bool batch_invariant;   /* an entry's logits bitwise the same whatever else is in
                               the batch (realm_matmul_rows_invariant); slower when
                               a pass has one entry */
    realm_threadpool *pool; /* compute threads shared with other contexts (borrowed,
                               must outlive the context; n_threads is then its
                               size): each forward pass holds it (acquire/release);
                               NULL: a pool of its own */
} realm_ctx_params;

/* Bytes of scratch a context with these parameters allocates. */
uint64_t realm_ctx_bytes(const realm_model *m, const realm_ctx_params *p);
int realm_ctx_new(const realm_model *m, realm_kv_cache *kv, const realm_ctx_params *p,
                  realm_ctx **out);
void realm_ctx_free(realm_ctx *ctx);

typedef struct realm_batch {
    int32_t n;
    const int32_t *token;
    const int32_t *pos;
    const int32_t *seq;
    const bool *want_logits; /* NULL: logits for the last entry only */
} realm_batch;

/*
 * Run the model over batch b, appending each entry's key and value to its
 * sequence, and write logits (n_vocab floats per entry that wants them, in
 * batch order) to `logits`. On error nothing is appended: the batch is
 * checked (sequence ids, positions, token ids, free blocks) before any work.
 */
int realm_forward(realm_ctx *ctx, const realm_batch *b, float *logits);

struct realm_lora_set; /* realm/lora.h */

/*
 * The LoRA adapters of a batch's entries (realm/lora.h): sets[0 .. n_sets)
 * are the adapter sets the batch uses, and entry e uses sets[set[e]], or the
 * base model alone when set[e] is -1.
 */
typedef struct realm_batch_lora {
    const int32_t *set; /* per entry of the batch: an index into sets, or -1 */
    const struct realm_lora_set *sets;
    int32_t n_sets;
} realm_batch_lora;

/*
 * realm_forward with adapters: entries with different adapter sets, or
 * none, share the pass. The base weights' products run once for all of
 * them; each adapter's low-rank terms run only over the entries using it.
 * An entry's result depends only on its own set, never on the other
 * entries' (bitwise so with batch_invariant). Every adapter must have been
 * loaded for this context's model, and every set be within the limits of
 * realm/lora.h: else REALM_ERR_INVAL naming the entry and set, before any
 * work. lora NULL is realm_forward. A sequence's entries should keep one set
 * from pass to pass: the keys and values in its cache were computed with it.
 */
int realm_forward_lora(realm_ctx *ctx, const realm_batch *b, const realm_batch_lora *lora,
                       float *logits);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
