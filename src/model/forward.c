/*
 * The forward pass of llama-family models over a batch of entries from any
 * number of sequences.
 *
 * Shapes (n = entries in the batch, E = n_embd, Hq = n_head * head_dim,
 * Hkv = n_head_kv * head_dim, F = n_ff, V = n_vocab):
 *
 *   x   (n, E)   residual stream             xn  (n, max(E, Hq))  normed input
 *   q   (n, Hq)  queries (roped)             k, v (n, Hkv)        new keys, values
 *   att (n, Hq)  attention output            g, u (n, F)          feed-forward
 *   act          x or h converted to the weights' activation type
 *
 * Per layer:  xn = rmsnorm(x) * attn_norm;  q,k,v = W{q,k,v} xn (+ bias);
 *             rope(q, k);  store k, v in the cache;  att = softmax(q K^T / sqrt(d)) V
 *             over each entry's own sequence up to its position;  x += Wo att;
 *             xn = rmsnorm(x) * ffn_norm;  x += Wdown (silu(Wgate xn) * Wup xn).
 * Then logits = Wout (rmsnorm(x) * output_norm) for the entries that want them.
 * With LoRA adapters (realm_forward_lora), each of the seven products above
 * gets its adapters' low-rank terms for the entries using them
 * (lora_forward.c), before biases, RoPE or SiLU: the shrink (A x) runs with
 * the conversion of the product's input, the expand (B t) with the matmul,
 * on the columns each thread has just computed.
 *
 * Matrix products read each weight row once per batch and multiply it with
 * every entry's activations while the row is in L1 (rows are split between
 * threads). Attention streams over the sequence's KV blocks with an online
 * softmax, so no score matrix is ever materialised; the query heads sharing a
 * KV head go together, and a long sequence's positions are split between
 * threads when the batch has too few (entry, KV head) pairs to keep them busy
 * (split-K; see realm__attention in model_internal.h). A prompt's tokens go
 * in tiles of up to 16 against each block of keys, loaded once per tile
 * (realm__attn_prefill), with the same bits as token by token; tiles and
 * single tokens are work items taken by free threads, costliest first.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "lora_internal.h"
#include "model_internal.h"

/* Split-K: one chunk of one (entry, KV head) pair, and a pair's chunks. */
typedef struct attn_unit {
    int32_t e, g, p0, p1; /* entry, KV head, positions [p0, p1) */
} attn_unit;
typedef struct attn_pair {
    int32_t e, g, u0, n; /* its units [u0, u0 + n) */
} attn_pair;
/* Otherwise a piece of work: entries [e, e + n) of one sequence (consecutive
 * in the batch and in position) with KV head g; n == 1 is one token's
 * attention (realm__attention), n > 1 a prefill tile (realm__attn_prefill). */
typedef struct attn_item {
    int32_t e, n, g;
    int64_t cost; /* positions times tokens: the order they are taken in */
} attn_item;

struct realm_ctx {
    const realm_model *m;
    realm_kv_cache *kv;
    const realm_kernels *k;
    const realm_ops *ops;
    realm_threadpool *tp;
    bool own_tp; /* tp is this context's; else shared, held per forward pass */
    int32_t n_batch;
    bool invariant;      /* realm_ctx_params.batch_invariant */
    int64_t act_row_max; /* bytes of one converted activation row, worst case */

    float *x, *xn, *q, *kk, *vv, *att, *g, *u;
    float *rope_cos, *rope_sin; /* (n, n_rot/2) for the batch's positions */
    uint8_t *act;
    realm_type act_type; /* what `act` currently holds */
    float *attn_scratch; /* per thread: REALM__ATTN_SCRATCH floats */
    int64_t attn_scratch_len;
    const int32_t **entry_blocks; /* per entry: its sequence's block list */

    /* Split-K plan of this pass (attn_plan): n_units > 0 when the batch's
     * attention runs as chunks side by side, then merges per pair. */
    attn_unit *attn_units;
    attn_pair *attn_pairs;
    int32_t n_units, n_pairs, units_cap;
    float *attn_parts; /* units_cap partials of REALM__ATTN_PART floats */
    /* Else the pass's work items, costliest first (n_batch * n_head_kv at most). */
    attn_item *attn_items;
    int32_t n_items;

    lora_pass *lora;  /* LoRA adapters' part of the pass (lora_forward.c) */
    bool lora_active; /* this pass's batch uses adapters */
};

/* LoRA terms of the group of weights being computed, riding on its runs:
 * the shrink with the conversion of its input, the expand with its matmul. */
enum { NO_LORA = -1 };

/* ---- scratch sizes -------------------------------------------------------- */

static int64_t max3(int64_t a, int64_t b, int64_t c)
{
    int64_t m = a > b ? a : b;
    return m > c ? m : c;
}

/* Most split-K units a pass may have: a few chunks per thread and pair. */
static int32_t attn_units_cap(int32_t n_threads)
{
    return n_threads < 2 ? 0 : n_threads > 32 ? 1024 : 32 * n_threads;
}

static int64_t attn_scratch_len(const realm_hparams *hp)
{
    const int nq = hp->n_head / hp->n_head_kv;
    const int64_t a = REALM__ATTN_SCRATCH(nq, hp->head_dim);
    const int64_t b = REALM__ATTN_PREFILL_SCRATCH(nq, hp->head_dim);
    return ((a > b ? a : b) + 15) & ~(int64_t)15;
}

static void ctx_dims(const realm_model *m, const realm_ctx_params *p, int32_t *n_batch,
                     int32_t *n_threads, int64_t *width, int64_t *act_row)
{
    const realm_hparams *hp = &m->hp;
    *n_batch = p && p->n_batch > 0 ? p->n_batch : 512;
    *n_threads = p && p->pool            ? realm_threadpool_size(p->pool)
                 : p && p->n_threads > 0 ? p->n_threads
                                         : realm_cpu_count();
    *width = max3(hp->n_embd, (int64_t)hp->n_head * hp->head_dim, hp->n_ff);
    /* F32 activations are the largest conversion: 4 bytes per element. */
    *act_row = *width * 4 + 64;
}

uint64_t realm_ctx_bytes(const realm_model *m, const realm_ctx_params *p)
{
    const realm_hparams *hp = &m->hp;
    int32_t nb, nt;
    int64_t width, act_row;
    ctx_dims(m, p, &nb, &nt, &width, &act_row);
    const int64_t q_dim = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    const int32_t units = attn_units_cap(nt);
    const int64_t floats =
        (int64_t)nb *
            (hp->n_embd + width + 2 * q_dim + 2 * kv_dim + 2 * (int64_t)hp->n_ff + hp->n_rot) +
        (int64_t)nt * attn_scratch_len(hp) +
        (int64_t)units * REALM__ATTN_PART(hp->n_head / hp->n_head_kv, hp->head_dim);
    return (uint64_t)floats * 4 + (uint64_t)nb * (uint64_t)act_row + (uint64_t)nb * 8 +
           (uint64_t)units * (sizeof(attn_unit) + sizeof(attn_pair)) +
           (uint64_t)nb * (uint64_t)hp->n_head_kv * sizeof(attn_item) +
           realm__lora_pass_bytes(m, nb);
}

int realm_ctx_new(const realm_model *m, realm_kv_cache *kv, const realm_ctx_params *p,
                  realm_ctx **out)
{
    *out = NULL;
    if (kv->model != m)
        return realm__error(REALM_ERR_INVAL, "the KV cache belongs to another model");
    const realm_hparams *hp = &m->hp;
    realm_ctx *c = calloc(1, sizeof *c);
    if (c == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory for a compute context");
    int32_t n_threads;
    int64_t width;
    ctx_dims(m, p, &c->n_batch, &n_threads, &width, &c->act_row_max);
    c->m = m;
    c->kv = kv;
    c->invariant = p && p->batch_invariant;
    c->k = realm_kernels_best();
    c->ops = realm_ops_best();
    int rc = REALM_OK;
    if (p && p->pool)
        c->tp = p->pool;
    else if ((rc = realm_threadpool_new(n_threads, &c->tp)) < 0) {
        free(c);
        return rc;
    } else
        c->own_tp = true;
    const size_t nb = (size_t)c->n_batch;
    const size_t q_dim = (size_t)hp->n_head * (size_t)hp->head_dim;
    const size_t kv_dim = (size_t)hp->n_head_kv * (size_t)hp->head_dim;
#define ALLOC(ptr, count) (ptr) = aligned_alloc(64, (((count) * sizeof *(ptr)) + 63) & ~(size_t)63)
    ALLOC(c->x, nb * (size_t)hp->n_embd);
    ALLOC(c->xn, nb * (size_t)width);
    ALLOC(c->q, nb * q_dim);
    ALLOC(c->kk, nb * kv_dim);
    ALLOC(c->vv, nb * kv_dim);
    ALLOC(c->att, nb * q_dim);
    ALLOC(c->g, nb * (size_t)hp->n_ff);
    ALLOC(c->u, nb * (size_t)hp->n_ff);
    ALLOC(c->rope_cos, nb * (size_t)hp->n_rot / 2 + 1);
    ALLOC(c->rope_sin, nb * (size_t)hp->n_rot / 2 + 1);
    ALLOC(c->act, nb * (size_t)c->act_row_max);
    c->attn_scratch_len = attn_scratch_len(hp);
    ALLOC(c->attn_scratch, (size_t)n_threads * (size_t)c->attn_scratch_len);
    ALLOC(c->entry_blocks, nb);
    c->units_cap = attn_units_cap(n_threads);
    const size_t cap = c->units_cap > 0 ? (size_t)c->units_cap : 1;
    ALLOC(c->attn_units, cap);
    ALLOC(c->attn_pairs, cap);
    ALLOC(c->attn_parts, cap * (size_t)REALM__ATTN_PART(hp->n_head / hp->n_head_kv, hp->head_dim));
    ALLOC(c->attn_items, nb * (size_t)hp->n_head_kv);
#undef ALLOC
    if (!c->x || !c->xn || !c->q || !c->kk || !c->vv || !c->att || !c->g || !c->u || !c->rope_cos ||
        !c->rope_sin || !c->act || !c->attn_scratch || !c->entry_blocks || !c->attn_units ||
        !c->attn_pairs || !c->attn_parts || !c->attn_items ||
        realm__lora_pass_new(m, c->n_batch, &c->lora) < 0) {
        realm_ctx_free(c);
        return realm__error(REALM_ERR_NOMEM, "out of memory for a compute context of %llu MiB",
                            (unsigned long long)(realm_ctx_bytes(m, p) >> 20));
    }
    *out = c;
    return REALM_OK;
}

void realm_ctx_free(realm_ctx *c)
{
    if (c == NULL)
        return;
    if (c->own_tp)
        realm_threadpool_free(c->tp);
    free(c->x);
    free(c->xn);
    free(c->q);
    free(c->kk);
    free(c->vv);
    free(c->att);
    free(c->g);
    free(c->u);
    free(c->rope_cos);
    free(c->rope_sin);
    free(c->act);
    free(c->attn_scratch);
    free((void *)c->entry_blocks);
    free(c->attn_units);
    free(c->attn_pairs);
    free(c->attn_parts);
    free(c->attn_items);
    realm__lora_pass_free(c->lora);
    free(c);
}

/* ---- parallel tasks ------------------------------------------------------- */

/* Convert n rows of floats (stride `ld`) to activation rows of `type`, and
 * with lora, each thread its share of the LoRA shrink. */
struct convert_task {
    const realm_kernels *k;
    realm_type type;
    const float *src;
    int64_t ld, cols;
    uint8_t *dst;
    size_t dst_row;
    int32_t n;
    lora_pass *lora;
    const realm_ops *ops;
};

static void convert_part(void *arg, int ith, int nth)
{
    struct convert_task *t = arg;
    for (int32_t e = ith; e < t->n; e += nth)
        t->k->from_float[t->type](t->src + e * t->ld, t->dst + (size_t)e * t->dst_row, t->cols);
    if (t->lora)
        realm__lora_shrink(t->lora, t->ops, ith, nth);
}

/* Convert the batch's rows of src for weight w, unless act already holds them;
 * with lora_shrink, also the shrink of the LoRA group set up for src. */
static void convert_act(realm_ctx *c, const float *src, int64_t ld, int64_t cols, int32_t n,
                        realm_type wtype, bool lora_shrink)
{
    const realm_type at = realm_type_get(wtype)->vec_dot_type;
    struct convert_task t = {
        c->k,  at, src, ld, cols, c->act, realm_row_size(at, cols), n, lora_shrink ? c->lora : NULL,
        c->ops};
    /* a small shrink (a few entries' decode) costs less here than a barrier */
    if (n >= 4 || (lora_shrink && realm__lora_shrink_macs(c->lora) >= (1 << 20)))
        realm_threadpool_run(c->tp, convert_part, &t);
    else
        convert_part(&t, 0, 1);
    c->act_type = at;
}

/*
 * out[e][r] (+)= W row r . act row e, for up to three matrices sharing the
 * same input (Q/K/V, gate/up): their rows are concatenated and split evenly
 * between threads. Each weight row is loaded once and used for all entries.
 */
#define MM_MAX 3
struct matmul_task {
    const realm_kernels *k;
    int n_mats;
    const weight *w[MM_MAX];
    float *out[MM_MAX];
    int64_t ld[MM_MAX]; /* row stride of out, in floats */
    bool accumulate;    /* out += instead of out = */
    bool invariant;     /* realm_matmul_rows_invariant */
    const uint8_t *act;
    size_t act_row;
    int32_t n;
    lora_pass *lora; /* then the LoRA expand of the group's weights [lora_k0, + n_mats) */
    int lora_k0;
    const realm_ops *ops;
    int64_t rows;      /* of all the weights, taken as one */
    int64_t chunk;     /* > 0: threads take chunks of this many panels in turn */
    atomic_llong next; /* the next chunk */
};

/* Products of up to MM_CHUNKED_TOKENS tokens are split into
 * MM_CHUNKS_PER_THREAD chunks per thread, taken in turn (matmul). Measured
 * on TinyLlama Q4_K_M decoding with 2 threads (perf, cpu-clock): the
 * threads' waits at the ends of products went from 7-9% of the CPU time to
 * 4.5-5%; token by token alternated with the equal split in one process
 * (six runs of 256 tokens), 3-6% less time per token. */
#define MM_CHUNKED_TOKENS    16
#define MM_CHUNKS_PER_THREAD 8

/* Rows [r0, r1) of the task's weights taken as one (r0 on a panel). */
static void matmul_range(const struct matmul_task *t, int64_t r0, int64_t r1, int64_t total)
{
    int64_t base = 0;
    for (int i = 0; i < t->n_mats; i++) {
        const weight *w = t->w[i];
        const int64_t lo = r0 > base ? r0 - base : 0;
        const int64_t hi = r1 - base < w->rows ? r1 - base : w->rows;
        if (lo < hi && w->packed) /* batch-invariant by itself */
            realm_matmul_packed_rows(t->k, w->type, w->data, w->ne0, lo, hi, t->act, t->act_row,
                                     t->n, t->out[i], t->ld[i], t->accumulate);
        else if (lo < hi)
            (t->invariant ? realm_matmul_rows_invariant : realm_matmul_rows)(
                t->k, w->type, w->data, w->ne0, lo, hi, t->act, t->act_row, t->n, t->out[i],
                t->ld[i], t->accumulate);
        base += w->rows;
    }
    /* the LoRA terms of the output columns just written */
    if (t->lora && r0 < total)
        realm__lora_expand(t->lora, t->ops, t->lora_k0, t->n_mats, r0, r1 < total ? r1 : total);
}

static void matmul_part(void *arg, int ith, int nth)
{
    struct matmul_task *t = arg;
    const int64_t total = t->rows;
    /* boundaries on multiples of 16 rows: the kernels' panel size */
    const int64_t panels = (total + 15) / 16;
    if (t->chunk > 0) {
        for (;;) {
            const int64_t c = atomic_fetch_add(&t->next, 1);
            const int64_t r0 = c * t->chunk * 16;
            if (r0 >= total)
                break;
            const int64_t r1 = r0 + t->chunk * 16;
            matmul_range(t, r0, r1 < total ? r1 : total, total);
        }
        return;
    }
    matmul_range(t, panels * ith / nth * 16, panels * (ith + 1) / nth * 16, total);
}

/* With lora_k0 >= 0, the weights are [lora_k0, + n_mats) of the LoRA group
 * set up (realm__lora_group), whose shrink has run: add their terms. */
static void matmul(realm_ctx *c, int n_mats, const weight *const *w, float *const *out,
                   const int64_t *ld, bool accumulate, int32_t n, int lora_k0)
{
    struct matmul_task t = {.k = c->k,
                            .n_mats = n_mats,
                            .accumulate = accumulate,
                            .invariant = c->invariant,
                            .act = c->act,
                            .n = n,
                            .lora = lora_k0 >= 0 ? c->lora : NULL,
                            .lora_k0 = lora_k0,
                            .ops = c->ops};
    for (int i = 0; i < n_mats; i++) {
        REALM_ASSERT(realm_type_get(w[i]->type)->vec_dot_type == c->act_type);
        t.w[i] = w[i];
        t.out[i] = out[i];
        t.ld[i] = ld[i];
        t.rows += w[i]->rows;
    }
    t.act_row = realm_row_size(c->act_type, w[0]->ne0);
    /* a few tokens: the product streams the weights from memory, and a
     * thread slowed by its neighbour would keep the other waiting at the
     * end of an equal split; chunks taken in turn even that out */
    const int nth = realm_threadpool_size(c->tp);
    atomic_init(&t.next, 0);
    if (nth > 1 && n <= MM_CHUNKED_TOKENS) {
        const int64_t chunk = (t.rows + 15) / 16 / ((int64_t)nth * MM_CHUNKS_PER_THREAD);
        t.chunk = chunk > 0 ? chunk : 1;
    }
    realm_threadpool_run(c->tp, matmul_part, &t);
}

/* ---- attention ------------------------------------------------------------ */

void realm__attn_block(const realm_ops *ops, const realm_kv_cache *kv, int l, int32_t block,
                       int32_t slot, int cnt, int g, const float *q, float scale, float *m,
                       float *lsum, float *acc, float *scratch)
{
    const int hd = kv->model->hp.head_dim;
    const int nq = kv->model->hp.n_head / kv->model->hp.n_head_kv;
    const uint8_t *v = kv__v_row(kv, l, block, slot, g);
    if (kv->type_k == REALM_TYPE_F16) { /* keys stored transposed */
        const uint16_t *k = kv__k_col(kv, l, block, slot, g);
        if (kv->type_v == REALM_TYPE_F16)
            ops->attn_f16(hd, nq, q, cnt, k, kv->block_size, (const uint16_t *)v,
                          (int64_t)(kv->head_bytes_v / sizeof(uint16_t)), scale, m, lsum, acc,
                          scratch);
        else
            ops->attn_f16_q8_0(hd, nq, q, cnt, k, (size_t)kv->block_size * sizeof(uint16_t), v,
                               kv->head_bytes_v, scale, m, lsum, acc, scratch);
        return;
    }
    const realm_attn_fn fn = kv->type_v == REALM_TYPE_F16 ? ops->attn_q8_0_f16 : ops->attn_q8_0;
    fn(hd, nq, q, cnt, kv__k_row(kv, l, block, slot, g), kv->head_bytes_k, v, kv->head_bytes_v,
       scale, m, lsum, acc, scratch);
}

void realm__attn_range(const realm_ops *ops, const realm_kv_cache *kv, int l, const int32_t *blocks,
                       int32_t p0, int32_t p1, int g, const float *q, float *scratch, float *part)
{
    const int hd = kv->model->hp.head_dim;
    const int nq = kv->model->hp.n_head / kv->model->hp.n_head_kv;
    const float scale = 1.0f / sqrtf((float)hd);
    float *m = part, *lsum = part + nq, *acc = part + 2 * nq;
    for (int r = 0; r < nq; r++) {
        m[r] = -INFINITY;
        lsum[r] = 0;
    }
    memset(acc, 0, (size_t)nq * (size_t)hd * sizeof *acc);
    /* tiles of up to TILE keys, never across a block */
    for (int32_t p = p0; p < p1;) {
        const int32_t slot = p % kv->block_size;
        int32_t cnt = kv->block_size - slot;
        cnt = cnt < p1 - p ? cnt : p1 - p;
        cnt = cnt < REALM__ATTN_TILE ? cnt : REALM__ATTN_TILE;
        realm__attn_block(ops, kv, l, blocks[p / kv->block_size], slot, cnt, g, q, scale, m, lsum,
                          acc, scratch);
        p += cnt;
    }
}

void realm__attn_merge(int nq, int hd, float *into, const float *part)
{
    for (int r = 0; r < nq; r++) {
        const float ma = into[r], mb = part[r];
        const float mx = ma > mb ? ma : mb;
        const float ca = expf(ma - mx), cb = expf(mb - mx);
        into[r] = mx;
        into[nq + r] = into[nq + r] * ca + part[nq + r] * cb;
        float *a = into + 2 * nq + (int64_t)r * hd;
        const float *b = part + 2 * nq + (int64_t)r * hd;
        for (int i = 0; i < hd; i++)
            a[i] = a[i] * ca + b[i] * cb;
    }
}

void realm__attn_finish(int nq, int hd, const float *part, float *out)
{
    for (int r = 0; r < nq; r++) {
        const float inv = 1.0f / part[nq + r];
        const float *a = part + 2 * nq + (int64_t)r * hd;
        for (int i = 0; i < hd; i++)
            out[(int64_t)r * hd + i] = a[i] * inv;
    }
}

void realm__attention(const realm_ops *ops, const realm_kv_cache *kv, int l, const int32_t *blocks,
                      int32_t n_pos, int g, const float *q, float *scratch, float *out)
{
    const int hd = kv->model->hp.head_dim;
    const int nq = kv->model->hp.n_head / kv->model->hp.n_head_kv;
    float *run = scratch, *part = run + REALM__ATTN_PART(nq, hd);
    float *ks = part + REALM__ATTN_PART(nq, hd);
    for (int32_t p0 = 0; p0 < n_pos; p0 += REALM__ATTN_CHUNK) {
        const int32_t p1 = n_pos - p0 < REALM__ATTN_CHUNK ? n_pos : p0 + REALM__ATTN_CHUNK;
        realm__attn_range(ops, kv, l, blocks, p0, p1, g, q, ks, p0 == 0 ? run : part);
        if (p0 > 0)
            realm__attn_merge(nq, hd, run, part);
    }
    realm__attn_finish(nq, hd, run, out);
}

void realm__attn_prefill(const realm_ops *ops, const realm_kv_cache *kv, int l,
                         const int32_t *blocks, int32_t pos0, int nt, int g, const float *q,
                         int64_t ldq, float *scratch, float *out, int64_t ld_out)
{
    REALM_ASSERT(nt >= 1 && nt <= REALM__ATTN_QTILE);
    const int hd = kv->model->hp.head_dim;
    const int nq = kv->model->hp.n_head / kv->model->hp.n_head_kv;
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t pf = REALM__ATTN_PART(nq, hd);
    const int32_t bs = kv->block_size, last = pos0 + nt - 1;
    float *run = scratch, *part = run + nt * pf, *ks = part + nt * pf;
    int32_t lim[REALM__ATTN_QTILE];
    for (int32_t c0 = 0; c0 <= last; c0 += REALM__ATTN_CHUNK) {
        const int32_t c1 = last + 1 - c0 < REALM__ATTN_CHUNK ? last + 1 : c0 + REALM__ATTN_CHUNK;
        /* tokens [a, nt) reach this chunk; the first chunk's partial is the run's start */
        const int a = c0 > pos0 ? c0 - pos0 : 0;
        float *st = c0 == 0 ? run : part;
        for (int t = a; t < nt; t++) {
            float *m = st + t * pf;
            for (int r = 0; r < nq; r++) {
                m[r] = -INFINITY;
                m[nq + r] = 0;
            }
            memset(m + 2 * nq, 0, (size_t)nq * (size_t)hd * sizeof *m);
        }
        /* the steps realm__attn_range takes: never across a block, at most TILE keys */
        for (int32_t p = c0; p < c1;) {
            const int32_t slot = p % bs;
            int32_t cnt = bs - slot;
            cnt = cnt < c1 - p ? cnt : c1 - p;
            cnt = cnt < REALM__ATTN_TILE ? cnt : REALM__ATTN_TILE;
            /* tokens [b, nt) see key p; each sees the step's keys up to its own position */
            const int b = p > pos0 ? p - pos0 : 0;
            for (int t = b; t < nt; t++)
                lim[t] = pos0 + t + 1 < p + cnt ? pos0 + t + 1 - p : cnt;
            const int32_t blk = blocks[p / bs];
            const bool kt = kv->type_k == REALM_TYPE_F16; /* keys stored transposed */
            ops->attn_tile(kv->type_k, kv->type_v, hd, nq, nt - b, q + b * ldq, ldq, cnt, lim + b,
                           kt ? (const void *)kv__k_col(kv, l, blk, slot, g)
                              : (const void *)kv__k_row(kv, l, blk, slot, g),
                           kt ? (size_t)bs * sizeof(uint16_t) : kv->head_bytes_k,
                           kv__v_row(kv, l, blk, slot, g), kv->head_bytes_v, scale, st + b * pf, pf,
                           ks);
            p += cnt;
        }
        if (c0 > 0)
            for (int t = a; t < nt; t++)
                realm__attn_merge(nq, hd, run + t * pf, part + t * pf);
    }
    for (int t = 0; t < nt; t++)
        realm__attn_finish(nq, hd, run + t * pf, out + t * ld_out);
}

struct attn_task {
    realm_ctx *c;
    const realm_batch *b;
    int layer;
    atomic_int next; /* the next work item to take */
};

/* The pass's work items, taken in turn by whichever thread is free. */
static void attn_part(void *arg, int ith, int nth)
{
    (void)nth;
    struct attn_task *t = arg;
    realm_ctx *c = t->c;
    const realm_hparams *hp = &c->m->hp;
    const int hd = hp->head_dim, nq = hp->n_head / hp->n_head_kv;
    const int64_t q_dim = (int64_t)hp->n_head * hd;
    float *scratch = c->attn_scratch + (size_t)ith * (size_t)c->attn_scratch_len;
    for (int i; (i = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed)) < c->n_items;) {
        const attn_item *it = &c->attn_items[i];
        const int64_t off = it->e * q_dim + (int64_t)it->g * nq * hd;
        if (it->n == 1)
            realm__attention(c->ops, c->kv, t->layer, c->entry_blocks[it->e], t->b->pos[it->e] + 1,
                             it->g, c->q + off, scratch, c->att + off);
        else
            realm__attn_prefill(c->ops, c->kv, t->layer, c->entry_blocks[it->e], t->b->pos[it->e],
                                it->n, it->g, c->q + off, q_dim, scratch, c->att + off, q_dim);
    }
}

/* Split-K, first half: each thread a contiguous range of chunks, each chunk's
 * partial to its own slot. */
static void attn_units_part(void *arg, int ith, int nth)
{
    struct attn_task *t = arg;
    realm_ctx *c = t->c;
    const realm_hparams *hp = &c->m->hp;
    const int hd = hp->head_dim, nq = hp->n_head / hp->n_head_kv;
    const int64_t q_dim = (int64_t)hp->n_head * hd, pf = REALM__ATTN_PART(nq, hd);
    float *scratch = c->attn_scratch + (size_t)ith * (size_t)c->attn_scratch_len;
    const int32_t u0 = (int32_t)((int64_t)c->n_units * ith / nth);
    const int32_t u1 = (int32_t)((int64_t)c->n_units * (ith + 1) / nth);
    for (int32_t u = u0; u < u1; u++) {
        const attn_unit *un = &c->attn_units[u];
        realm__attn_range(c->ops, c->kv, t->layer, c->entry_blocks[un->e], un->p0, un->p1, un->g,
                          c->q + un->e * q_dim + (int64_t)un->g * nq * hd, scratch,
                          c->attn_parts + u * pf);
    }
}

/* Split-K, second half: each pair's partials merged in chunk order. */
static void attn_merge_part(void *arg, int ith, int nth)
{
    struct attn_task *t = arg;
    realm_ctx *c = t->c;
    const realm_hparams *hp = &c->m->hp;
    const int hd = hp->head_dim, nq = hp->n_head / hp->n_head_kv;
    const int64_t q_dim = (int64_t)hp->n_head * hd, pf = REALM__ATTN_PART(nq, hd);
    for (int32_t pi = ith; pi < c->n_pairs; pi += nth) {
        const attn_pair *pr = &c->attn_pairs[pi];
        float *run = c->attn_parts + pr->u0 * pf;
        for (int32_t i = 1; i < pr->n; i++)
            realm__attn_merge(nq, hd, run, run + i * pf);
        realm__attn_finish(nq, hd, run, c->att + pr->e * q_dim + (int64_t)pr->g * nq * hd);
    }
}

static int attn_item_cmp(const void *pa, const void *pb)
{
    const attn_item *a = pa, *b = pb;
    return a->cost < b->cost ? 1 : a->cost > b->cost ? -1 : 0;
}

/* The pass's work items: runs of consecutive tokens of one sequence in
 * prefill tiles of up to QTILE tokens (near-equal sizes), other entries
 * alone, each with every KV head; costliest first, so the last ones taken
 * are short. */
static void attn_items_plan(realm_ctx *c, const realm_batch *b)
{
    const int n_kv = c->m->hp.n_head_kv;
    c->n_items = 0;
    for (int32_t e = 0, r; e < b->n; e += r) {
        for (r = 1; e + r < b->n && b->seq[e + r] == b->seq[e] && b->pos[e + r] == b->pos[e] + r;)
            r++;
        const int32_t tiles = (r + REALM__ATTN_QTILE - 1) / REALM__ATTN_QTILE;
        for (int32_t i = 0; i < tiles; i++) {
            const int32_t t0 = (int32_t)((int64_t)r * i / tiles);
            const int32_t t1 = (int32_t)((int64_t)r * (i + 1) / tiles);
            const int64_t cost = (int64_t)(t1 - t0) * (b->pos[e + t1 - 1] + 1);
            for (int g = 0; g < n_kv; g++)
                c->attn_items[c->n_items++] = (attn_item){e + t0, t1 - t0, g, cost};
        }
    }
    qsort(c->attn_items, (size_t)c->n_items, sizeof *c->attn_items, attn_item_cmp);
}

/*
 * Choose how this pass's attention is split: by work items (prefill tiles
 * and whole (entry, KV head) pairs) when there are enough pairs for every
 * thread (prompts, batches of many streams), else (a few long streams) by
 * chunks of positions, so that one long sequence keeps every core busy.
 * Either way the result is the same bits (model_internal.h).
 */
static void attn_plan(realm_ctx *c, const realm_batch *b)
{
    const realm_hparams *hp = &c->m->hp;
    const int nth = realm_threadpool_size(c->tp);
    const int64_t pairs = (int64_t)b->n * hp->n_head_kv;
    c->n_units = c->n_pairs = 0;
    attn_items_plan(c, b);
    if (nth < 2 || pairs >= 4 * (int64_t)nth)
        return;
    int64_t units = 0;
    for (int32_t e = 0; e < b->n; e++)
        units += (int64_t)hp->n_head_kv * ((b->pos[e] + REALM__ATTN_CHUNK) / REALM__ATTN_CHUNK);
    if (units <= pairs || units > c->units_cap)
        return; /* nothing to split, or too much to hold */
    for (int32_t e = 0; e < b->n; e++) {
        const int32_t n_pos = b->pos[e] + 1;
        for (int g = 0; g < hp->n_head_kv; g++) {
            c->attn_pairs[c->n_pairs++] = (attn_pair){e, g, c->n_units, 0};
            for (int32_t p0 = 0; p0 < n_pos; p0 += REALM__ATTN_CHUNK) {
                const int32_t p1 = n_pos - p0 < REALM__ATTN_CHUNK ? n_pos : p0 + REALM__ATTN_CHUNK;
                c->attn_units[c->n_units++] = (attn_unit){e, g, p0, p1};
                c->attn_pairs[c->n_pairs - 1].n++;
            }
        }
    }
}

int32_t realm__ctx_attn_units(const realm_ctx *c)
{
    return c->n_units;
}

/* Attention of every entry of the batch over its sequence's cache, layer l. */
static void attention(realm_ctx *c, const realm_batch *b, int l)
{
    struct attn_task t = {.c = c, .b = b, .layer = l};
    atomic_init(&t.next, 0);
    if (c->n_units > 0) {
        realm_threadpool_run(c->tp, attn_units_part, &t);
        realm_threadpool_run(c->tp, attn_merge_part, &t);
    } else {
        realm_threadpool_run(c->tp, attn_part, &t);
    }
}

/* ---- the pass ------------------------------------------------------------- */

/* Check the batch and reserve cache space for it; nothing changes on error. */
static int prepare_batch(realm_ctx *c, const realm_batch *b)
{
    const realm_hparams *hp = &c->m->hp;
    realm_kv_cache *kv = c->kv;
    if (b->n < 1 || b->n > c->n_batch)
        return realm__error(REALM_ERR_INVAL, "batch of %d entries (this context takes 1..%d)", b->n,
                            c->n_batch);
    int32_t need = 0;
    for (int32_t e = 0; e < b->n; e++) {
        const kv_seq *s = realm__kv_seq(kv, b->seq[e]);
        if (s == NULL)
            return realm__error(REALM_ERR_INVAL, "batch entry %d: unknown sequence %d", e,
                                b->seq[e]);
        if (b->token[e] < 0 || b->token[e] >= hp->n_vocab)
            return realm__error(REALM_ERR_INVAL,
                                "batch entry %d: token %d is outside the vocabulary "
                                "(0..%d)",
                                e, b->token[e], hp->n_vocab - 1);
        int32_t prev = -1, count = 0;
        for (int32_t j = e - 1; j >= 0 && prev < 0; j--)
            if (b->seq[j] == b->seq[e])
                prev = j;
        const int32_t expect = prev >= 0 ? b->pos[prev] + 1 : s->len;
        if (b->pos[e] != expect)
            return realm__error(REALM_ERR_INVAL,
                                "batch entry %d: position %d of sequence %d, "
                                "expected %d",
                                e, b->pos[e], b->seq[e], expect);
        if (prev < 0) { /* first entry of its sequence: count them all */
            for (int32_t j = e; j < b->n; j++)
                count += b->seq[j] == b->seq[e];
            need += realm__kv_blocks_needed(kv, b->seq[e], count);
        }
    }
    if (need > kv->n_free)
        return realm__error(REALM_ERR_NOSPACE,
                            "KV cache full: the batch needs %d more blocks, "
                            "%d of %d are free",
                            need, kv->n_free, kv->n_blocks);
    for (int32_t e = 0; e < b->n; e++) {
        bool first = true;
        for (int32_t j = 0; j < e && first; j++)
            first = b->seq[j] != b->seq[e];
        if (!first)
            continue;
        int32_t count = 0;
        for (int32_t j = e; j < b->n; j++)
            count += b->seq[j] == b->seq[e];
        int rc = realm__kv_reserve(kv, b->seq[e], count);
        REALM_ASSERT(rc == REALM_OK); /* space was checked above */
    }
    for (int32_t e = 0; e < b->n; e++)
        c->entry_blocks[e] = realm__kv_seq(kv, b->seq[e])->blocks;
    return REALM_OK;
}

/* One token's row of n floats into the cache in type t: F16, or Q8_0 rounded
 * exactly as realm_quantize_row (from_float is bitwise the reference). */
static void kv_row_store(const realm_ctx *c, realm_type t, const float *x, uint8_t *dst, int64_t n)
{
    if (t == REALM_TYPE_F16)
        c->ops->fp32_to_fp16(x, (uint16_t *)dst, n);
    else
        c->k->from_float[REALM_TYPE_Q8_0](x, dst, n);
}

/* One token's F16 key of n floats into the cache's transposed layout: element
 * i at col[i * ld] (kv__k_col). */
static void kv_key_store_f16(const realm_ctx *c, const float *x, uint16_t *col, int64_t ld,
                             int64_t n)
{
    uint16_t h[64];
    for (int64_t i0 = 0; i0 < n; i0 += 64) {
        const int64_t m = n - i0 < 64 ? n - i0 : 64;
        c->ops->fp32_to_fp16(x + i0, h, m);
        for (int64_t i = 0; i < m; i++)
            col[(i0 + i) * ld] = h[i];
    }
}

/* Store entry e's new key and value for layer l at its position, head by
 * head (the cache is head-major, kv__k_row; F16 keys transposed, kv__k_col). */
static void kv_store(realm_ctx *c, const realm_batch *b, int l, int32_t e)
{
    const realm_kv_cache *kv = c->kv;
    const int32_t pos = b->pos[e], hd = c->m->hp.head_dim;
    const int32_t block = c->entry_blocks[e][pos / kv->block_size];
    const int32_t slot = pos % kv->block_size;
    for (int g = 0; g < c->m->hp.n_head_kv; g++) {
        const float *key = c->kk + e * kv->kv_dim + (int64_t)g * hd;
        if (kv->type_k == REALM_TYPE_F16)
            kv_key_store_f16(c, key, kv__k_col(kv, l, block, slot, g), kv->block_size, hd);
        else
            kv_row_store(c, kv->type_k, key, kv__k_row(kv, l, block, slot, g), hd);
        kv_row_store(c, kv->type_v, c->vv + e * kv->kv_dim + (int64_t)g * hd,
                     kv__v_row(kv, l, block, slot, g), hd);
    }
}

static void add_bias(float *x, const float *bias, int64_t n)
{
    if (bias)
        for (int64_t i = 0; i < n; i++)
            x[i] += bias[i];
}

/* Whether the batch's adapters adapt any of the weights kinds[0..n) of layer
 * l (sharing input x, outputs y of n_out columns); if so their terms are set
 * up for the next conversion and matmuls to add (lora_forward.c). */
static bool lora_group(realm_ctx *c, int l, int n, const int *kinds, const int64_t *n_out,
                       const float *x, int64_t ld_x, float *const *y, const int64_t *ld_y)
{
    return c->lora_active && realm__lora_group(c->lora, l, n, kinds, n_out, x, ld_x, y, ld_y);
}

static int forward(realm_ctx *c, const realm_batch *b, const realm_batch_lora *bl, float *logits)
{
    int rc;
    if (b->n < 1 || b->n > c->n_batch)
        return realm__error(REALM_ERR_INVAL, "batch of %d entries (this context takes 1..%d)", b->n,
                            c->n_batch);
    if ((rc = realm__lora_plan(c->lora, b->n, bl, &c->lora_active)) < 0 ||
        (rc = prepare_batch(c, b)) < 0)
        return rc;
    const realm_model *m = c->m;
    const realm_hparams *hp = &m->hp;
    const int32_t n = b->n;
    const int64_t E = hp->n_embd, F = hp->n_ff;
    const int64_t q_dim = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    const int half = hp->n_rot / 2;

    for (int32_t e = 0; e < n; e++)
        realm_dequantize_row(m->tok_embd.type,
                             (const uint8_t *)m->tok_embd.data +
                                 (size_t)b->token[e] * m->tok_embd.row_size,
                             c->x + e * E, E);
    for (int32_t e = 0; e < n; e++)
        realm__rope_cache(hp, m->rope_freqs, b->pos[e], c->rope_cos + e * half,
                          c->rope_sin + e * half);
    attn_plan(c, b);

    for (int l = 0; l < hp->n_layer; l++) {
        const layer *L = &m->layers[l];
        for (int32_t e = 0; e < n; e++)
            c->ops->rmsnorm(c->xn + e * E, c->x + e * E, L->attn_norm, E, hp->norm_eps);

        /* Q, K, V share the input; they share one matmul when their
         * activation types agree (they do in practice). */
        const weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
        float *qkv_out[3] = {c->q, c->kk, c->vv};
        const int64_t qkv_ld[3] = {q_dim, kv_dim, kv_dim};
        const bool lqkv = lora_group(c, l, 3, (const int[]){LORA_Q, LORA_K, LORA_V}, qkv_ld, c->xn,
                                     E, qkv_out, qkv_ld);
        for (int i = 0; i < 3;) {
            int j = i + 1;
            const realm_type at = realm_type_get(qkv[i]->type)->vec_dot_type;
            while (j < 3 && realm_type_get(qkv[j]->type)->vec_dot_type == at)
                j++;
            convert_act(c, c->xn, E, E, n, qkv[i]->type, lqkv && i == 0);
            matmul(c, j - i, qkv + i, qkv_out + i, qkv_ld + i, false, n, lqkv ? i : NO_LORA);
            i = j;
        }
        for (int32_t e = 0; e < n; e++) {
            add_bias(c->q + e * q_dim, L->bq, q_dim);
            add_bias(c->kk + e * kv_dim, L->bk, kv_dim);
            add_bias(c->vv + e * kv_dim, L->bv, kv_dim);
            realm__rope_apply(hp, c->q + e * q_dim, hp->n_head, c->rope_cos + e * half,
                              c->rope_sin + e * half);
            realm__rope_apply(hp, c->kk + e * kv_dim, hp->n_head_kv, c->rope_cos + e * half,
                              c->rope_sin + e * half);
            kv_store(c, b, l, e);
        }
        attention(c, b, l);

        const bool lo = lora_group(c, l, 1, (const int[]){LORA_O}, &E, c->att, q_dim, &c->x, &E);
        convert_act(c, c->att, q_dim, q_dim, n, L->wo.type, lo);
        const weight *wo = &L->wo;
        matmul(c, 1, &wo, &c->x, &E, true, n, lo ? 0 : NO_LORA);

        for (int32_t e = 0; e < n; e++)
            c->ops->rmsnorm(c->xn + e * E, c->x + e * E, L->ffn_norm, E, hp->norm_eps);
        const weight *gu[2] = {&L->w_gate, &L->w_up};
        float *gu_out[2] = {c->g, c->u};
        const int64_t gu_ld[2] = {F, F};
        const bool lgu =
            lora_group(c, l, 2, (const int[]){LORA_GATE, LORA_UP}, gu_ld, c->xn, E, gu_out, gu_ld);
        if (realm_type_get(L->w_gate.type)->vec_dot_type ==
            realm_type_get(L->w_up.type)->vec_dot_type) {
            convert_act(c, c->xn, E, E, n, L->w_gate.type, lgu);
            matmul(c, 2, gu, gu_out, gu_ld, false, n, lgu ? 0 : NO_LORA);
        } else {
            for (int i = 0; i < 2; i++) {
                convert_act(c, c->xn, E, E, n, gu[i]->type, lgu && i == 0);
                matmul(c, 1, gu + i, gu_out + i, gu_ld + i, false, n, lgu ? i : NO_LORA);
            }
        }
        /* per row, so an entry's result never depends on its batch */
        for (int32_t e = 0; e < n; e++)
            c->ops->silu_mul(F, c->g + e * F, c->u + e * F);
        const bool ldn = lora_group(c, l, 1, (const int[]){LORA_DOWN}, &E, c->g, F, &c->x, &E);
        convert_act(c, c->g, F, F, n, L->w_down.type, ldn);
        const weight *wd = &L->w_down;
        matmul(c, 1, &wd, &c->x, &E, true, n, ldn ? 0 : NO_LORA);
    }

    /* Sequences now include the batch. */
    for (int32_t e = 0; e < n; e++) {
        kv_seq *s = realm__kv_seq(c->kv, b->seq[e]);
        if (b->pos[e] + 1 > s->len)
            s->len = b->pos[e] + 1;
    }

    /* Logits for the entries that want them, gathered into xn. */
    int32_t n_out = 0;
    for (int32_t e = 0; e < n; e++) {
        const bool want = b->want_logits ? b->want_logits[e] : e == n - 1;
        if (want)
            c->ops->rmsnorm(c->xn + (n_out++) * E, c->x + e * E, m->output_norm, E, hp->norm_eps);
    }
    if (n_out > 0) {
        convert_act(c, c->xn, E, E, n_out, m->output.type, false);
        const weight *wout = &m->output;
        const int64_t ld = hp->n_vocab;
        matmul(c, 1, &wout, &logits, &ld, false, n_out, NO_LORA);
    }
    return REALM_OK;
}

int realm_forward_lora(realm_ctx *c, const realm_batch *b, const realm_batch_lora *lora,
                       float *logits)
{
    if (c->own_tp)
        return forward(c, b, lora, logits);
    realm_threadpool_acquire(c->tp); /* a shared pool: one pass at a time, in turn */
    int rc = forward(c, b, lora, logits);
    realm_threadpool_release(c->tp);
    return rc;
}

int realm_forward(realm_ctx *c, const realm_batch *b, float *logits)
{
    return realm_forward_lora(c, b, NULL, logits);
}
