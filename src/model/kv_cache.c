/*
 * Paged KV cache: a pool of blocks of `block_size` token slots. For each
 * layer, keys and values of the pool live in one array each, so a
 * sequence's keys for a layer are found through its block list. Blocks are
 * reference-counted: a fork shares its parent's blocks, and the first write
 * into a shared, partly filled block copies it (copy-on-write). Keys and
 * values each have their type (F16 or Q8_0), so their own row and block
 * sizes. The arrays are head-major: KV head 0's rows of every block and
 * slot, then head 1's, ... (kv__k_row), each head_dim numbers (for Q8_0,
 * head_dim / 32 blocks), and a growing sequence takes the block after its
 * last one when it is free (block_take), so attention, which reads one head
 * at a time, reads a run of contiguous memory that streams. F16 keys are
 * stored transposed within each head's block (kv__k_col), which the
 * forward pass writes and reads; a copy on write copies their block whole.
 */
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "model_internal.h"

#define DEFAULT_BLOCK_SIZE 32

/* The type of one side of the cache: 0 is F16; Q8_0 needs whole blocks per head. */
static int kv_type(const realm_model *m, realm_type t, const char *side, realm_type *out)
{
    *out = t == 0 ? REALM_TYPE_F16 : t;
    if (*out != REALM_TYPE_F16 && *out != REALM_TYPE_Q8_0)
        return realm__error(REALM_ERR_UNSUPPORTED,
                            "KV cache type %s for the %s is not supported (f16 or q8_0)",
                            realm_type_name(t), side);
    if (*out == REALM_TYPE_Q8_0 && m->hp.head_dim % REALM_QK8_0 != 0)
        return realm__error(REALM_ERR_UNSUPPORTED,
                            "a q8_0 KV cache for the %s needs a head size that is a multiple of "
                            "%d, and this model's is %d: use f16",
                            side, REALM_QK8_0, m->hp.head_dim);
    return REALM_OK;
}

/* Normalised parameters: block size, types, block count, bytes of a K and a V row. */
static int kv_shape(const realm_model *m, const realm_kv_params *p, int32_t *bs, realm_type *type_k,
                    realm_type *type_v, int32_t *n_blocks, size_t *row_bytes_k, size_t *row_bytes_v)
{
    *bs = p->block_size > 0 ? p->block_size : DEFAULT_BLOCK_SIZE;
    int rc = kv_type(m, p->type_k, "keys", type_k);
    if (rc == REALM_OK)
        rc = kv_type(m, p->type_v, "values", type_v);
    if (rc < 0)
        return rc;
    const int64_t kv_dim = (int64_t)m->hp.n_head_kv * m->hp.head_dim;
    if (p->n_ctx < 1 || p->n_ctx > (1 << 26) || *bs > 4096)
        return realm__error(REALM_ERR_INVAL,
                            "KV cache of %d tokens in blocks of %d is out of range", p->n_ctx, *bs);
    *n_blocks = (p->n_ctx + *bs - 1) / *bs;
    *row_bytes_k = realm_row_size(*type_k, kv_dim);
    *row_bytes_v = realm_row_size(*type_v, kv_dim);
    return REALM_OK;
}

int realm_kv_params_check(const realm_model *m, const realm_kv_params *p)
{
    int32_t bs, n_blocks;
    realm_type tk, tv;
    size_t rk, rv;
    return kv_shape(m, p, &bs, &tk, &tv, &n_blocks, &rk, &rv);
}

uint64_t realm_kv_cache_bytes(const realm_model *m, const realm_kv_params *p)
{
    int32_t bs, n_blocks;
    realm_type tk, tv;
    size_t rk, rv;
    if (kv_shape(m, p, &bs, &tk, &tv, &n_blocks, &rk, &rv) < 0)
        return 0;
    return (uint64_t)m->hp.n_layer * (uint64_t)n_blocks * (uint64_t)bs * (rk + rv) +
           (uint64_t)n_blocks * 3 * sizeof(int32_t); /* refs, free_list, free_pos */
}

int realm_kv_cache_new(const realm_model *m, const realm_kv_params *p, realm_kv_cache **out)
{
    *out = NULL;
    int32_t bs, n_blocks;
    realm_type tk, tv;
    size_t rk, rv;
    int rc = kv_shape(m, p, &bs, &tk, &tv, &n_blocks, &rk, &rv);
    if (rc < 0)
        return rc;
    const uint64_t bytes = realm_kv_cache_bytes(m, p);
    if (p->mem_budget && bytes > p->mem_budget)
        return realm__error(
            REALM_ERR_RANGE, "a KV cache for %d tokens needs %llu MiB, over the budget of %llu MiB",
            p->n_ctx, (unsigned long long)(bytes >> 20), (unsigned long long)(p->mem_budget >> 20));
    realm_kv_cache *kv = calloc(1, sizeof *kv);
    if (kv == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory for the KV cache");
    kv->model = m;
    kv->type_k = tk;
    kv->type_v = tv;
    kv->block_size = bs;
    kv->n_blocks = n_blocks;
    kv->kv_dim = (int64_t)m->hp.n_head_kv * m->hp.head_dim;
    kv->row_bytes_k = rk;
    kv->row_bytes_v = rv;
    kv->head_bytes_k = realm_row_size(tk, m->hp.head_dim);
    kv->head_bytes_v = realm_row_size(tv, m->hp.head_dim);
    kv->block_bytes_k = rk * (size_t)bs;
    kv->block_bytes_v = rv * (size_t)bs;
    const int n_layer = m->hp.n_layer;
    kv->k = calloc((size_t)n_layer, sizeof *kv->k);
    kv->v = calloc((size_t)n_layer, sizeof *kv->v);
    kv->refs = calloc((size_t)n_blocks, sizeof *kv->refs);
    kv->free_list = malloc((size_t)n_blocks * sizeof *kv->free_list);
    kv->free_pos = malloc((size_t)n_blocks * sizeof *kv->free_pos);
    if (!kv->k || !kv->v || !kv->refs || !kv->free_list || !kv->free_pos)
        goto nomem;
    const size_t layer_k = kv->block_bytes_k * (size_t)n_blocks;
    const size_t layer_v = kv->block_bytes_v * (size_t)n_blocks;
    for (int l = 0; l < n_layer; l++) {
        kv->k[l] = aligned_alloc(64, (layer_k + 63) & ~(size_t)63);
        kv->v[l] = aligned_alloc(64, (layer_v + 63) & ~(size_t)63);
        if (!kv->k[l] || !kv->v[l])
            goto nomem;
    }
    /* Pop order 0, 1, 2, ...: a fresh cache fills blocks in address order. */
    for (int32_t i = 0; i < n_blocks; i++) {
        kv->free_list[i] = n_blocks - 1 - i;
        kv->free_pos[n_blocks - 1 - i] = i;
    }
    kv->n_free = n_blocks;
    *out = kv;
    return REALM_OK;
nomem:
    realm_kv_cache_free(kv);
    return realm__error(REALM_ERR_NOMEM, "out of memory for a KV cache of %llu MiB",
                        (unsigned long long)(bytes >> 20));
}

void realm_kv_cache_free(realm_kv_cache *kv)
{
    if (kv == NULL)
        return;
    for (int l = 0; kv->k && l < kv->model->hp.n_layer; l++)
        free(kv->k[l]);
    for (int l = 0; kv->v && l < kv->model->hp.n_layer; l++)
        free(kv->v[l]);
    for (int32_t s = 0; s < kv->n_seqs; s++)
        free(kv->seqs[s].blocks);
    free(kv->seqs);
    free(kv->k);
    free(kv->v);
    free(kv->refs);
    free(kv->free_list);
    free(kv->free_pos);
    free(kv);
}

realm_type realm_kv_type_k(const realm_kv_cache *kv)
{
    return kv->type_k;
}
realm_type realm_kv_type_v(const realm_kv_cache *kv)
{
    return kv->type_v;
}
int32_t realm_kv_block_size(const realm_kv_cache *kv)
{
    return kv->block_size;
}
int32_t realm_kv_n_blocks(const realm_kv_cache *kv)
{
    return kv->n_blocks;
}
int32_t realm_kv_free_blocks(const realm_kv_cache *kv)
{
    return kv->n_free;
}

kv_seq *realm__kv_seq(realm_kv_cache *kv, int32_t seq)
{
    if (seq < 0 || seq >= kv->n_seqs || !kv->seqs[seq].used)
        return NULL;
    return &kv->seqs[seq];
}

int32_t realm_kv_seq_len(const realm_kv_cache *kv, int32_t seq)
{
    if (seq < 0 || seq >= kv->n_seqs || !kv->seqs[seq].used)
        return realm__error(REALM_ERR_INVAL, "unknown sequence %d", seq);
    return kv->seqs[seq].len;
}

/* A free sequence slot, growing the table; -1 on out of memory. */
static int32_t seq_slot(realm_kv_cache *kv)
{
    for (int32_t s = 0; s < kv->n_seqs; s++)
        if (!kv->seqs[s].used)
            return s;
    int32_t n = kv->n_seqs ? kv->n_seqs * 2 : 16;
    kv_seq *seqs = realloc(kv->seqs, (size_t)n * sizeof *seqs);
    if (seqs == NULL)
        return -1;
    memset(seqs + kv->n_seqs, 0, (size_t)(n - kv->n_seqs) * sizeof *seqs);
    kv->seqs = seqs;
    int32_t s = kv->n_seqs;
    kv->n_seqs = n;
    return s;
}

/* Ensure seq's block list can hold n blocks. */
static int seq_grow(kv_seq *s, int32_t n)
{
    if (n <= s->cap)
        return REALM_OK;
    int32_t cap = s->cap ? s->cap : 8;
    while (cap < n)
        cap *= 2;
    int32_t *b = realloc(s->blocks, (size_t)cap * sizeof *b);
    if (b == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory growing a sequence");
    s->blocks = b;
    s->cap = cap;
    return REALM_OK;
}

int realm_kv_seq_new(realm_kv_cache *kv, int32_t *seq)
{
    int32_t s = seq_slot(kv);
    if (s < 0)
        return realm__error(REALM_ERR_NOMEM, "out of memory creating a sequence");
    kv->seqs[s].used = true;
    kv->seqs[s].len = 0;
    kv->seqs[s].n_blocks = 0;
    *seq = s;
    return REALM_OK;
}

int realm_kv_seq_fork(realm_kv_cache *kv, int32_t src, int32_t *seq)
{
    if (realm__kv_seq(kv, src) == NULL)
        return realm__error(REALM_ERR_INVAL, "unknown sequence %d", src);
    int32_t d = seq_slot(kv); /* may move kv->seqs */
    if (d < 0)
        return realm__error(REALM_ERR_NOMEM, "out of memory creating a sequence");
    kv_seq *s = &kv->seqs[src], *t = &kv->seqs[d];
    if (seq_grow(t, s->n_blocks) < 0)
        return REALM_ERR_NOMEM;
    memcpy(t->blocks, s->blocks, (size_t)s->n_blocks * sizeof *t->blocks);
    for (int32_t i = 0; i < s->n_blocks; i++)
        kv->refs[s->blocks[i]]++;
    t->used = true;
    t->len = s->len;
    t->n_blocks = s->n_blocks;
    *seq = d;
    return REALM_OK;
}

static void block_release(realm_kv_cache *kv, int32_t b)
{
    REALM_ASSERT(kv->refs[b] > 0);
    if (--kv->refs[b] == 0) {
        kv->free_pos[b] = kv->n_free;
        kv->free_list[kv->n_free++] = b;
    }
}

/* Take a free block: `prefer` (the id after the sequence's last block) when
 * it is free, so that a sequence's blocks run on in memory (kv__k_row),
 * else the top of the free list. The caller has checked that one is free. */
static int32_t block_take(realm_kv_cache *kv, int32_t prefer)
{
    REALM_ASSERT(kv->n_free > 0);
    int32_t b = kv->free_list[kv->n_free - 1];
    if (prefer >= 0 && prefer < kv->n_blocks && kv->refs[prefer] == 0 && prefer != b) {
        /* the top fills the preferred block's place in the list */
        kv->free_list[kv->free_pos[prefer]] = b;
        kv->free_pos[b] = kv->free_pos[prefer];
        b = prefer;
    }
    kv->n_free--;
    kv->free_pos[b] = -1;
    kv->refs[b] = 1;
    return b;
}

int realm_kv_seq_truncate(realm_kv_cache *kv, int32_t seq, int32_t n_tokens)
{
    kv_seq *s = realm__kv_seq(kv, seq);
    if (s == NULL)
        return realm__error(REALM_ERR_INVAL, "unknown sequence %d", seq);
    if (n_tokens < 0 || n_tokens > s->len)
        return realm__error(REALM_ERR_INVAL, "cannot truncate sequence %d of %d tokens to %d", seq,
                            s->len, n_tokens);
    const int32_t keep = (n_tokens + kv->block_size - 1) / kv->block_size;
    for (int32_t i = s->n_blocks - 1; i >= keep; i--) /* last first: see realm_kv_seq_free */
        block_release(kv, s->blocks[i]);
    s->n_blocks = keep;
    s->len = n_tokens;
    return REALM_OK;
}

void realm_kv_seq_free(realm_kv_cache *kv, int32_t seq)
{
    kv_seq *s = realm__kv_seq(kv, seq);
    if (s == NULL)
        return;
    /* last first, so that the first is on top of the free list and a new
     * sequence takes the run again in order (block_take) */
    for (int32_t i = s->n_blocks - 1; i >= 0; i--)
        block_release(kv, s->blocks[i]);
    s->n_blocks = 0;
    s->len = 0;
    s->used = false;
}

/* The last block is partly filled and shared: the next write must copy it. */
static bool needs_cow(const realm_kv_cache *kv, const kv_seq *s)
{
    return s->len % kv->block_size != 0 && kv->refs[s->blocks[s->n_blocks - 1]] > 1;
}

int32_t realm_kv_seq_blocks_needed(const realm_kv_cache *kv, int32_t seq, int32_t n_tokens)
{
    if (seq < 0 || seq >= kv->n_seqs || !kv->seqs[seq].used)
        return realm__error(REALM_ERR_INVAL, "unknown sequence %d", seq);
    return realm__kv_blocks_needed(kv, seq, n_tokens);
}

int32_t realm_kv_seq_exclusive_blocks(const realm_kv_cache *kv, int32_t seq)
{
    if (seq < 0 || seq >= kv->n_seqs || !kv->seqs[seq].used)
        return realm__error(REALM_ERR_INVAL, "unknown sequence %d", seq);
    const kv_seq *s = &kv->seqs[seq];
    int32_t n = 0;
    for (int32_t i = 0; i < s->n_blocks; i++)
        n += kv->refs[s->blocks[i]] == 1;
    return n;
}

int32_t realm__kv_blocks_needed(const realm_kv_cache *kv, int32_t seq, int32_t n)
{
    const kv_seq *s = &kv->seqs[seq];
    if (n <= 0)
        return 0;
    const int32_t total = (s->len + n + kv->block_size - 1) / kv->block_size;
    return total - s->n_blocks + (needs_cow(kv, s) ? 1 : 0);
}

int realm__kv_reserve(realm_kv_cache *kv, int32_t seq, int32_t n)
{
    kv_seq *s = realm__kv_seq(kv, seq);
    REALM_ASSERT(s != NULL);
    if (n <= 0)
        return REALM_OK;
    const int32_t need = realm__kv_blocks_needed(kv, seq, n);
    if (need > kv->n_free)
        return realm__error(REALM_ERR_NOSPACE,
                            "KV cache full: sequence %d needs %d more blocks, %d of %d are free",
                            seq, need, kv->n_free, kv->n_blocks);
    const int32_t total = (s->len + n + kv->block_size - 1) / kv->block_size;
    if (seq_grow(s, total) < 0)
        return REALM_ERR_NOMEM;
    if (needs_cow(kv, s)) {
        const int32_t old = s->blocks[s->n_blocks - 1];
        const int32_t nb = block_take(kv, s->n_blocks > 1 ? s->blocks[s->n_blocks - 2] + 1 : -1);
        const size_t used = (size_t)(s->len % kv->block_size);
        /* F16 keys are stored transposed: their used slots are not one run */
        const size_t k_bytes =
            (kv->type_k == REALM_TYPE_F16 ? (size_t)kv->block_size : used) * kv->head_bytes_k;
        for (int l = 0; l < kv->model->hp.n_layer; l++)
            for (int g = 0; g < kv->model->hp.n_head_kv; g++) { /* each head's first rows */
                memcpy(kv__k_row(kv, l, nb, 0, g), kv__k_row(kv, l, old, 0, g), k_bytes);
                memcpy(kv__v_row(kv, l, nb, 0, g), kv__v_row(kv, l, old, 0, g),
                       used * kv->head_bytes_v);
            }
        block_release(kv, old);
        s->blocks[s->n_blocks - 1] = nb;
    }
    while (s->n_blocks < total) {
        const int32_t nb = block_take(kv, s->n_blocks > 0 ? s->blocks[s->n_blocks - 1] + 1 : -1);
        s->blocks[s->n_blocks++] = nb;
    }
    return REALM_OK;
}
