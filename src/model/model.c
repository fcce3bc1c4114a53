/*
 * Model loading: map the GGUF file (or every part of a split one, checked
 * for consistency), read the hyper-parameters of a supported architecture,
 * and bind every tensor to its place in the model, checking names, shapes
 * and types. Weights stay in the mappings, locked in RAM if asked.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error_internal.h"
#include "core/gguf_internal.h"
#include "model_internal.h"
#include "realm/kernels.h"

static const char *const arch_names[REALM_ARCH_COUNT] = {
    [REALM_ARCH_LLAMA] = "llama",
    [REALM_ARCH_QWEN2] = "qwen2",
};

const char *realm_arch_name(realm_arch a)
{
    return (unsigned)a < REALM_ARCH_COUNT ? arch_names[a] : "unknown";
}

/* Integer hyper-parameter "{arch}.suffix"; REALM_ERR_NOTFOUND leaves *out. */
static int get_hp_int(const realm_gguf *g, const char *arch, const char *suffix, int64_t min,
                      int64_t max, bool required, int32_t *out)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    int rc = realm_gguf_get_int(g, key, &v);
    if (rc == REALM_ERR_NOTFOUND && !required)
        return REALM_OK;
    if (rc == REALM_ERR_NOTFOUND)
        return realm__error(REALM_ERR_FORMAT, "model metadata '%s' is missing", key);
    if (rc < 0)
        return realm__error(REALM_ERR_FORMAT, "model metadata '%s': %s", key, realm_last_error());
    if (v < min || v > max)
        return realm__error(REALM_ERR_FORMAT,
                            "model metadata '%s' = %lld is out of range %lld..%lld", key,
                            (long long)v, (long long)min, (long long)max);
    *out = (int32_t)v;
    return REALM_OK;
}

/* Float hyper-parameter "{arch}.suffix" (f32 or f64 in the file). */
static int get_hp_float(const realm_gguf *g, const char *arch, const char *suffix, float *out)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    float f;
    double d;
    if (realm_gguf_get_f32(g, key, &f) == REALM_OK) {
        *out = f;
        return REALM_OK;
    }
    if (realm_gguf_get_f64(g, key, &d) == REALM_OK) {
        *out = (float)d;
        return REALM_OK;
    }
    if (realm_gguf_find_kv(g, key) >= 0)
        return realm__error(
            REALM_ERR_FORMAT, "model metadata '%s' is %s, not a float", key,
            realm_gguf_type_name(realm_gguf_kv_type(g, realm_gguf_find_kv(g, key))));
    return REALM_ERR_NOTFOUND;
}

/*
 * RoPE metadata, read as llama.cpp reads it for these architectures:
 * rope.freq_base, rope.scaling.type (none, linear or yarn; linear when
 * absent), rope.scaling.factor (or the older rope.scale_linear; 0 or absent:
 * 1), rope.scaling.original_context_length and rope.scaling.attn_factor;
 * then the overrides applied. Other scaling types (longrope ...) are refused.
 */
static int read_rope(const realm_gguf *g, const char *arch, realm_hparams *hp,
                     const realm_rope_params *rope)
{
    realm__rope_train t = {REALM_ROPE_SCALING_LINEAR, 10000.0f, 1.0f, hp->n_ctx_train, 1.0f};
    char key[160];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    realm_gguf_str st;
    int rc = realm_gguf_get_str(g, key, &st);
    if (rc == REALM_OK) {
        t.type = REALM_ROPE_SCALING_COUNT;
        for (int i = REALM_ROPE_SCALING_NONE; i < REALM_ROPE_SCALING_COUNT; i++) {
            const char *name = realm_rope_scaling_name((realm_rope_scaling)i);
            if (st.len == strlen(name) && memcmp(st.data, name, st.len) == 0)
                t.type = (realm_rope_scaling)i;
        }
        if (t.type == REALM_ROPE_SCALING_COUNT)
            return realm__error(REALM_ERR_UNSUPPORTED,
                                "RoPE scaling type '%.*s' (%s) is not supported "
                                "(supported: none, linear, yarn)",
                                (int)(st.len < 32 ? st.len : 32), st.data, key);
    } else if (rc != REALM_ERR_NOTFOUND) {
        return realm__error(REALM_ERR_FORMAT, "model metadata '%s' is not a string", key);
    }
    float factor = 0;
    const char *factor_key = "rope.scaling.factor";
    if ((rc = get_hp_float(g, arch, factor_key, &factor)) == REALM_ERR_NOTFOUND)
        rc = get_hp_float(g, arch, factor_key = "rope.scale_linear", &factor);
    if (rc < 0 && rc != REALM_ERR_NOTFOUND)
        return rc;
    if (!(factor >= 0) || !isfinite(factor))
        return realm__error(REALM_ERR_FORMAT, "model metadata '%s.%s' = %g is not a scaling factor",
                            arch, factor_key, factor);
    if (factor > 0)
        t.freq_scale = 1.0f / factor;
    if ((rc = get_hp_float(g, arch, "rope.freq_base", &t.freq_base)) < 0 &&
        rc != REALM_ERR_NOTFOUND)
        return rc;
    if (!(t.freq_base > 1) || !isfinite(t.freq_base))
        return realm__error(REALM_ERR_FORMAT,
                            "model metadata '%s.rope.freq_base' = %g is not a "
                            "RoPE base",
                            arch, t.freq_base);
    if ((rc = get_hp_int(g, arch, "rope.scaling.original_context_length", 1, 1 << 24, false,
                         &t.n_ctx_orig)) < 0)
        return rc;
    if ((rc = get_hp_float(g, arch, "rope.scaling.attn_factor", &t.attn_factor)) < 0 &&
        rc != REALM_ERR_NOTFOUND)
        return rc;
    if (!(t.attn_factor > 0) || !isfinite(t.attn_factor))
        return realm__error(REALM_ERR_FORMAT,
                            "model metadata '%s.rope.scaling.attn_factor' = %g is not positive",
                            arch, t.attn_factor);
    return realm__rope_resolve(hp, &t, rope);
}

static int read_hparams(const realm_gguf *g, const realm_rope_params *rope, realm_hparams *hp,
                        char *arch, size_t arch_cap)
{
    realm_gguf_str a;
    int rc = realm_gguf_get_str(g, "general.architecture", &a);
    if (rc < 0)
        return realm__error(REALM_ERR_FORMAT, "model metadata 'general.architecture' is %s",
                            rc == REALM_ERR_NOTFOUND ? "missing" : "not a string");
    snprintf(arch, arch_cap, "%.*s", (int)(a.len < 64 ? a.len : 64), a.data);
    hp->arch = REALM_ARCH_COUNT;
    for (int i = 0; i < REALM_ARCH_COUNT; i++)
        if (strlen(arch_names[i]) == a.len && memcmp(arch_names[i], a.data, a.len) == 0)
            hp->arch = (realm_arch)i;
    if (hp->arch == REALM_ARCH_COUNT)
        return realm__error(REALM_ERR_UNSUPPORTED,
                            "model architecture '%s' is not supported (supported: llama, qwen2)",
                            arch);

    int32_t n_expert = 0;
    if ((rc = get_hp_int(g, arch, "expert_count", 0, 1 << 16, false, &n_expert)) < 0)
        return rc;
    if (n_expert > 0)
        return realm__error(REALM_ERR_UNSUPPORTED,
                            "mixture-of-experts models (%s.expert_count = %d) are not supported",
                            arch, n_expert);

    hp->n_ctx_train = 2048;
    if ((rc = get_hp_int(g, arch, "context_length", 1, 1 << 24, false, &hp->n_ctx_train)) < 0 ||
        (rc = get_hp_int(g, arch, "embedding_length", 1, 1 << 17, true, &hp->n_embd)) < 0 ||
        (rc = get_hp_int(g, arch, "block_count", 1, 4096, true, &hp->n_layer)) < 0 ||
        (rc = get_hp_int(g, arch, "feed_forward_length", 1, 1 << 20, true, &hp->n_ff)) < 0 ||
        (rc = get_hp_int(g, arch, "attention.head_count", 1, 4096, true, &hp->n_head)) < 0)
        return rc;
    hp->n_head_kv = hp->n_head;
    if ((rc = get_hp_int(g, arch, "attention.head_count_kv", 1, 4096, false, &hp->n_head_kv)) < 0)
        return rc;
    if (hp->n_head % hp->n_head_kv != 0)
        return realm__error(REALM_ERR_FORMAT,
                            "attention.head_count %d is not a multiple of head_count_kv %d",
                            hp->n_head, hp->n_head_kv);
    hp->head_dim = hp->n_embd / hp->n_head;
    int32_t v_dim = -1;
    if ((rc = get_hp_int(g, arch, "attention.key_length", 1, 1 << 14, false, &hp->head_dim)) < 0 ||
        (rc = get_hp_int(g, arch, "attention.value_length", 1, 1 << 14, false, &v_dim)) < 0)
        return rc;
    if (v_dim >= 0 && v_dim != hp->head_dim)
        return realm__error(REALM_ERR_UNSUPPORTED,
                            "attention key length %d differs from value length %d", hp->head_dim,
                            v_dim);
    if (hp->head_dim % 2 != 0)
        return realm__error(REALM_ERR_UNSUPPORTED, "odd attention head size %d", hp->head_dim);
    hp->n_rot = hp->head_dim;
    if ((rc = get_hp_int(g, arch, "rope.dimension_count", 2, hp->head_dim, false, &hp->n_rot)) < 0)
        return rc;
    if (hp->n_rot % 2 != 0)
        return realm__error(REALM_ERR_FORMAT, "rope.dimension_count %d is odd", hp->n_rot);
    hp->rope_type = hp->arch == REALM_ARCH_QWEN2 ? REALM_ROPE_NEOX : REALM_ROPE_NORM;

    hp->norm_eps = 1e-5f;
    rc = get_hp_float(g, arch, "attention.layer_norm_rms_epsilon", &hp->norm_eps);
    if (rc < 0 && rc != REALM_ERR_NOTFOUND)
        return rc;
    if (!(hp->norm_eps >= 0))
        return realm__error(REALM_ERR_FORMAT, "bad rms epsilon %g", hp->norm_eps);
    return read_rope(g, arch, hp, rope);
}

/* Bind a tensor as a weight matrix of shape [ne0, rows]. */
static int bind_weight(const realm_gguf_tensor *t, int64_t ne0, int64_t rows, weight *w)
{
    if (t->n_dims != 2 || t->ne[0] != ne0 || t->ne[1] != rows)
        return realm__error(REALM_ERR_FORMAT,
                            "tensor '%s' has shape [%lld, %lld, %lld], expected [%lld, %lld]",
                            t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                            (long long)ne0, (long long)rows);
    if (realm_type_check_supported(t->type) < 0 || t->type == REALM_TYPE_Q8_K)
        return realm__error(REALM_ERR_UNSUPPORTED,
                            "tensor '%s' has type %s, which Realm cannot "
                            "compute with",
                            t->name, realm_type_name(t->type));
    w->data = t->data;
    w->type = t->type;
    w->ne0 = ne0;
    w->rows = rows;
    w->row_size = realm_row_size(t->type, ne0);
    return REALM_OK;
}

/* Bind a 1-D F32 vector of n elements. */
static int bind_vec(const realm_gguf_tensor *t, int64_t n, const float **out)
{
    if (realm_gguf_tensor_nelements(t) != n || t->ne[0] != n)
        return realm__error(REALM_ERR_FORMAT, "tensor '%s' has %lld elements, expected %lld",
                            t->name, (long long)realm_gguf_tensor_nelements(t), (long long)n);
    if (t->type != REALM_TYPE_F32)
        return realm__error(REALM_ERR_UNSUPPORTED, "tensor '%s' has type %s; vectors must be F32",
                            t->name, realm_type_name(t->type));
    *out = t->data;
    return REALM_OK;
}

/* Place tensor t of the file in the model; unknown names are an error. */
static int bind_tensor(realm_model *m, const realm_gguf_tensor *t, const char *arch)
{
    const realm_hparams *hp = &m->hp;
    const int64_t q_dim = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    const char *name = t->name;
    if (strcmp(name, "token_embd.weight") == 0)
        return bind_weight(t, hp->n_embd, hp->n_vocab, &m->tok_embd);
    if (strcmp(name, "output.weight") == 0)
        return bind_weight(t, hp->n_embd, hp->n_vocab, &m->output);
    if (strcmp(name, "output_norm.weight") == 0)
        return bind_vec(t, hp->n_embd, &m->output_norm);
    if (strcmp(name, "rope_freqs.weight") == 0)
        return bind_vec(t, hp->n_rot / 2, &m->rope_freqs);
    int il, n = 0;
    char rest[64];
    if (sscanf(name, "blk.%d.%63s%n", &il, rest, &n) == 2 && name[n] == '\0' && il >= 0 &&
        il < hp->n_layer) {
        layer *L = &m->layers[il];
        const bool qwen = hp->arch == REALM_ARCH_QWEN2;
        if (!strcmp(rest, "attn_norm.weight"))
            return bind_vec(t, hp->n_embd, &L->attn_norm);
        if (!strcmp(rest, "ffn_norm.weight"))
            return bind_vec(t, hp->n_embd, &L->ffn_norm);
        if (!strcmp(rest, "attn_q.weight"))
            return bind_weight(t, hp->n_embd, q_dim, &L->wq);
        if (!strcmp(rest, "attn_k.weight"))
            return bind_weight(t, hp->n_embd, kv_dim, &L->wk);
        if (!strcmp(rest, "attn_v.weight"))
            return bind_weight(t, hp->n_embd, kv_dim, &L->wv);
        if (!strcmp(rest, "attn_output.weight"))
            return bind_weight(t, q_dim, hp->n_embd, &L->wo);
        if (!strcmp(rest, "ffn_gate.weight"))
            return bind_weight(t, hp->n_embd, hp->n_ff, &L->w_gate);
        if (!strcmp(rest, "ffn_up.weight"))
            return bind_weight(t, hp->n_embd, hp->n_ff, &L->w_up);
        if (!strcmp(rest, "ffn_down.weight"))
            return bind_weight(t, hp->n_ff, hp->n_embd, &L->w_down);
        if (qwen && !strcmp(rest, "attn_q.bias"))
            return bind_vec(t, q_dim, &L->bq);
        if (qwen && !strcmp(rest, "attn_k.bias"))
            return bind_vec(t, kv_dim, &L->bk);
        if (qwen && !strcmp(rest, "attn_v.bias"))
            return bind_vec(t, kv_dim, &L->bv);
    }
    return realm__error(REALM_ERR_UNSUPPORTED,
                        "tensor '%s' is not part of a '%s' model as Realm implements it", name,
                        arch);
}

/* Every required tensor was bound. */
static int check_complete(const realm_model *m)
{
    const realm_hparams *hp = &m->hp;
    if (!m->tok_embd.data)
        return realm__error(REALM_ERR_FORMAT, "tensor 'token_embd.weight' is missing");
    if (!m->output_norm)
        return realm__error(REALM_ERR_FORMAT, "tensor 'output_norm.weight' is missing");
    for (int il = 0; il < hp->n_layer; il++) {
        const layer *L = &m->layers[il];
        const struct {
            const void *p;
            const char *name;
        } req[] = {
            {L->attn_norm, "attn_norm.weight"},  {L->wq.data, "attn_q.weight"},
            {L->wk.data, "attn_k.weight"},       {L->wv.data, "attn_v.weight"},
            {L->wo.data, "attn_output.weight"},  {L->ffn_norm, "ffn_norm.weight"},
            {L->w_gate.data, "ffn_gate.weight"}, {L->w_up.data, "ffn_up.weight"},
            {L->w_down.data, "ffn_down.weight"},
        };
        for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
            if (req[i].p == NULL)
                return realm__error(REALM_ERR_FORMAT, "tensor 'blk.%d.%s' is missing", il,
                                    req[i].name);
        if (hp->arch == REALM_ARCH_QWEN2 && (!L->bq || !L->bk || !L->bv))
            return realm__error(REALM_ERR_FORMAT, "qwen2 layer %d lacks its Q/K/V biases", il);
    }
    return REALM_OK;
}

/* "8.00 MiB" etc. into buf. */
static const char *format_bytes(uint64_t n, char *buf, size_t cap)
{
    static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%llu bytes", (unsigned long long)n);
    else
        snprintf(buf, cap, "%.2f %s", v, units[u]);
    return buf;
}

/*
 * Lock every part's file mapping in RAM (params->mlock), counting the parts
 * locked in m->n_locked so that realm_model_free unlocks exactly those. The
 * kernel refuses beyond RLIMIT_MEMLOCK without CAP_IPC_LOCK (ENOMEM; EPERM
 * where the limit is 0), or when free RAM is short (EAGAIN, ENOMEM):
 * REALM_ERR_NOMEM then, naming the part, the size asked, the current soft
 * limit and the fix.
 */
/* One matrix to repack: its row-major data and its place in the packed buffer. */
typedef struct repack_job {
    weight *w;
    size_t off; /* in the packed buffer */
    uint8_t *dst;
    struct page_range pages; /* the whole pages of the mapping it alone fills */
} repack_job;

typedef struct repack_work {
    repack_job *jobs;
    int32_t n_jobs;
    atomic_int next;
} repack_work;

/* Repack jobs taken in turn; each drops the file's pages of its matrix
 * from the mapping (they stay in the page cache). */
static void *repack_thread(void *arg)
{
    repack_work *rw = arg;
    for (int32_t i; (i = atomic_fetch_add(&rw->next, 1)) < rw->n_jobs;) {
        const repack_job *j = &rw->jobs[i];
        realm_repack_rows(j->w->type, j->w->data, j->w->ne0, 0, j->w->rows, j->dst);
        if (j->pages.a < j->pages.b)
            (void)madvise((void *)j->pages.a, j->pages.b - j->pages.a, MADV_DONTNEED);
    }
    return NULL;
}

static int cmp_range(const void *x, const void *y)
{
    const struct page_range *p = x, *q = y;
    return (p->a > q->a) - (p->a < q->a);
}

/* Threads repacking at load: the time goes mostly to the kernel's first
 * touch of the new pages (0.4-1.9 s for TinyLlama's 615 MiB on one
 * core here), which they share. */
#define REPACK_THREADS_MAX 8

/*
 * realm_model_params.repack: each layer's seven matrices and the output
 * projection unless it is the embeddings' (whose rows the forward pass
 * also reads), where the CPU has a packed kernel for the type, go to one
 * read-only anonymous mapping; the file's pages of them are dropped from
 * this process's mapping and recorded (m->released), so that locking the
 * mappings leaves them out.
 */
static int repack_weights(realm_model *m, bool lock)
{
    const realm_kernels *k = realm_kernels_best();
    const int32_t n = m->hp.n_layer * 7 + 1;
    repack_job *jobs = calloc((size_t)n, sizeof *jobs);
    if (jobs == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory repacking weights");
    repack_work rw = {.jobs = jobs};
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    size_t total = 0;
    for (int32_t l = 0; l <= m->hp.n_layer; l++) {
        weight *lw[7] = {&m->output};
        int nw = l == m->hp.n_layer ? !m->hp.tied_output : 7;
        if (l < m->hp.n_layer) {
            layer *L = &m->layers[l];
            weight *const all[7] = {&L->wq,     &L->wk,   &L->wv,    &L->wo,
                                    &L->w_gate, &L->w_up, &L->w_down};
            memcpy(lw, all, sizeof all);
        }
        for (int i = 0; i < nw; i++) {
            const size_t size = realm_repack_fast(k, lw[i]->type)
                                    ? realm_repack_size(lw[i]->type, lw[i]->rows, lw[i]->ne0)
                                    : 0;
            const uintptr_t from = (uintptr_t)lw[i]->data;
            const uintptr_t to = from + lw[i]->row_size * (size_t)lw[i]->rows;
            if (size > 0)
                jobs[rw.n_jobs++] =
                    (repack_job){.w = lw[i],
                                 .off = total,
                                 .pages = {(from + page - 1) & ~(page - 1), to & ~(page - 1)}};
            total += size;
        }
    }
    if (total == 0) {
        free(jobs);
        return REALM_OK;
    }
    uint8_t *buf = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        free(jobs);
        return realm__error(REALM_ERR_NOMEM, "cannot map %zu bytes for the repacked weights",
                            total);
    }
    (void)madvise(buf, total, MADV_HUGEPAGE); /* fewer TLB misses; advice only */
    for (int32_t i = 0; i < rw.n_jobs; i++)
        jobs[i].dst = buf + jobs[i].off;
    atomic_init(&rw.next, 0);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const int nth = cpus < 1 ? 1 : cpus > REPACK_THREADS_MAX ? REPACK_THREADS_MAX : (int)cpus;
    pthread_t th[REPACK_THREADS_MAX];
    int started = 0;
    while (started < nth - 1 && pthread_create(&th[started], NULL, repack_thread, &rw) == 0)
        started++;
    repack_thread(&rw); /* this thread too, and alone if none started */
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    m->released = calloc((size_t)rw.n_jobs, sizeof *m->released);
    for (int32_t i = 0; i < rw.n_jobs; i++) {
        jobs[i].w->data = jobs[i].dst;
        jobs[i].w->packed = true;
        if (m->released != NULL && jobs[i].pages.a < jobs[i].pages.b)
            m->released[m->n_released++] = jobs[i].pages;
    }
    if (m->released != NULL)
        qsort(m->released, (size_t)m->n_released, sizeof *m->released, cmp_range);
    free(jobs);
    m->packed = buf;
    m->packed_bytes = total;
    if (mprotect(buf, total, PROT_READ) != 0)
        return realm__error(REALM_ERR_IO, "mprotect of the repacked weights: %s", strerror(errno));
    if (lock) {
        if (mlock(buf, total) != 0)
            return realm__error(REALM_ERR_NOMEM,
                                "cannot lock the repacked weights (%zu bytes) in RAM: %s; raise "
                                "`ulimit -l` or run without mlock",
                                total, strerror(errno));
        m->packed_locked = true;
    }
    return REALM_OK;
}

/* mlock [base, base + size) but the pages released after repacking. */
static int lock_part(const realm_model *m, void *base, size_t size)
{
    uintptr_t at = (uintptr_t)base;
    const uintptr_t end = at + size;
    for (int32_t i = 0; i < m->n_released; i++) {
        const struct page_range *r = &m->released[i];
        if (r->b <= at || r->a >= end)
            continue;
        if (r->a > at && mlock((void *)at, r->a - at) != 0)
            return -1;
        at = r->b;
    }
    return at < end ? mlock((void *)at, end - at) : 0;
}

static int lock_mappings(realm_model *m)
{
    uint64_t total = 0;
    for (int32_t p = 0; p < m->n_parts; p++) {
        void *base;
        size_t size;
        realm__gguf_mapping(m->parts[p], &base, &size);
        total += size;
    }
    void *base = NULL;
    size_t size = 0;
    for (; m->n_locked < m->n_parts; m->n_locked++) {
        realm__gguf_mapping(m->parts[m->n_locked], &base, &size);
        if (base != NULL && lock_part(m, base, size) != 0) /* an empty file maps nothing */
            break;
    }
    if (m->n_locked == m->n_parts)
        return REALM_OK;
    const int e = errno;
    char want[32], all[32], what[128], limit[64];
    format_bytes(size, want, sizeof want);
    if (m->n_parts > 1)
        snprintf(what, sizeof what, "part %d of %d, %s, %zu bytes, of %s in all",
                 (int)m->n_locked + 1, (int)m->n_parts, want, size,
                 format_bytes(total, all, sizeof all));
    else
        snprintf(what, sizeof what, "%s, %zu bytes", want, size);
    struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
    const bool known = getrlimit(RLIMIT_MEMLOCK, &rl) == 0;
    if (!known)
        snprintf(limit, sizeof limit, "unknown");
    else if (rl.rlim_cur == RLIM_INFINITY)
        snprintf(limit, sizeof limit, "unlimited");
    else {
        char h[32];
        snprintf(limit, sizeof limit, "%s (%llu bytes)", format_bytes(rl.rlim_cur, h, sizeof h),
                 (unsigned long long)rl.rlim_cur);
    }
    /* With no limit, only RAM can be short. */
    const bool by_limit = !known || rl.rlim_cur != RLIM_INFINITY;
    return realm__error(REALM_ERR_NOMEM,
                        "%s: cannot lock the model in memory (mlock of %s: %s); the "
                        "locked-memory limit RLIMIT_MEMLOCK is %s: %s",
                        m->part_paths[m->n_locked], what, strerror(e), limit,
                        by_limit ? "raise it (`ulimit -l`, memlock in limits.conf, LimitMEMLOCK= "
                                   "under systemd) or run with CAP_IPC_LOCK"
                                 : "the machine lacks the free memory; free some or load "
                                   "without mlock");
}

/* Open part i of the split model whose part `self` is at path into m. */
static int open_part(realm_model *m, const char *path, int32_t i, const realm_gguf_split *self)
{
    const size_t len = strlen(path);
    if ((m->part_paths[i] = malloc(len + 1)) == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory loading a model");
    const char *pp = m->part_paths[i];
    int rc = realm_gguf_split_path(path, i, m->part_paths[i], len + 1);
    if (rc < 0)
        return rc;
    struct stat st;
    if (stat(pp, &st) != 0 && errno == ENOENT)
        return realm__error(REALM_ERR_IO, "%s: part %d of %d of the split model, '%s', is missing",
                            path, (int)i + 1, (int)self->count, pp);
    char msg[400];
    if ((rc = realm_gguf_open(pp, &m->parts[i])) < 0) {
        snprintf(msg, sizeof msg, "%s", realm_last_error());
        return realm__error(rc, "%s: part %d of %d of the split model: %s", path, (int)i + 1,
                            (int)self->count, msg);
    }
    realm_gguf_split s;
    if ((rc = realm_gguf_split_info(m->parts[i], &s)) < 0) {
        snprintf(msg, sizeof msg, "%s", realm_last_error());
        return realm__error(rc, "%s: part %d of %d of the split model, '%s': %s", path, (int)i + 1,
                            (int)self->count, pp, msg);
    }
    if (s.count != self->count)
        return realm__error(REALM_ERR_FORMAT,
                            "%s: part %d of %d of the split model, '%s', has split.count %d; "
                            "every part must say %d",
                            path, (int)i + 1, (int)self->count, pp, (int)s.count, (int)self->count);
    if (s.no != i)
        return realm__error(REALM_ERR_FORMAT,
                            "%s: '%s' has split.no %d, which makes it part %d, not part %d as "
                            "its name says",
                            path, pp, (int)s.no, (int)s.no + 1, (int)i + 1);
    if (s.n_tensors >= 0 && self->n_tensors >= 0 && s.n_tensors != self->n_tensors)
        return realm__error(REALM_ERR_FORMAT,
                            "%s: part %d of %d of the split model, '%s', has "
                            "split.tensors.count %lld, but '%s' has %lld",
                            path, (int)i + 1, (int)self->count, pp, (long long)s.n_tensors, path,
                            (long long)self->n_tensors);
    return REALM_OK;
}

/*
 * Open the file at path into m->parts and, when its split.count says it is
 * one part of a split model, every other part, named like it in the same
 * directory (realm_gguf_split_path). The parts must agree (realm/model.h):
 * each failure is an error whose message starts with path and names the
 * part at fault.
 */
static int open_parts(realm_model *m, const char *path)
{
    realm_gguf *g;
    int rc = realm_gguf_open(path, &g);
    if (rc < 0)
        return rc;
    realm_gguf_split self;
    if ((rc = realm_gguf_split_info(g, &self)) < 0) {
        realm_gguf_close(g);
        return rc;
    }
    m->parts = calloc((size_t)self.count, sizeof *m->parts);
    m->part_paths = calloc((size_t)self.count, sizeof *m->part_paths);
    if (m->parts == NULL || m->part_paths == NULL) {
        realm_gguf_close(g);
        return realm__error(REALM_ERR_NOMEM, "out of memory loading a model");
    }
    m->n_parts = self.count;
    m->parts[self.no] = g;
    if ((m->part_paths[self.no] = strdup(path)) == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory loading a model");
    if (self.count == 1)
        return REALM_OK;

    int32_t name_no, name_count;
    if (realm_gguf_split_parse_path(path, &name_no, &name_count) < 0 || name_no != self.no ||
        name_count != self.count)
        return realm__error(REALM_ERR_FORMAT,
                            "%s: split.no %d and split.count %d make this part %d of %d of a "
                            "split model, but its name does not end in -%05d-of-%05d.gguf, so "
                            "the other parts cannot be found",
                            path, (int)self.no, (int)self.count, (int)self.no + 1, (int)self.count,
                            (int)self.no + 1, (int)self.count);
    for (int32_t i = 0; i < self.count; i++)
        if (i != self.no && (rc = open_part(m, path, i, &self)) < 0)
            return rc;

    /* Each tensor in one part only, and all of them there. */
    int64_t total = 0;
    for (int32_t i = 0; i < m->n_parts; i++) {
        for (int64_t t = 0; t < realm_gguf_n_tensors(m->parts[i]); t++) {
            const char *name = realm_gguf_tensor_at(m->parts[i], t)->name;
            for (int32_t j = 0; j < i; j++)
                if (realm_gguf_find_tensor(m->parts[j], name) != NULL)
                    return realm__error(REALM_ERR_FORMAT,
                                        "%s: tensor '%s' is in both part %d ('%s') and part %d "
                                        "('%s') of the split model",
                                        path, name, (int)j + 1, m->part_paths[j], (int)i + 1,
                                        m->part_paths[i]);
        }
        total += realm_gguf_n_tensors(m->parts[i]);
    }
    if (self.n_tensors >= 0 && total != self.n_tensors)
        return realm__error(REALM_ERR_FORMAT,
                            "%s: the %d parts of the split model hold %lld tensors, but "
                            "split.tensors.count says %lld",
                            path, (int)self.count, (long long)total, (long long)self.n_tensors);
    return REALM_OK;
}

int realm_model_load(const char *path, const realm_model_params *params, realm_model **out)
{
    *out = NULL;
    realm_model *m = calloc(1, sizeof *m);
    if (m == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory loading a model");
    const char *err_path = path; /* the file a message without one names */
    int rc = open_parts(m, path);
    if (rc < 0)
        goto fail;
    err_path = m->part_paths[0];
    char arch[72];
    if ((rc = read_hparams(m->parts[0], params ? &params->rope : NULL, &m->hp, arch, sizeof arch)) <
        0)
        goto fail;
    err_path = path;
    const realm_gguf_tensor *te = realm_model_find_tensor(m, "token_embd.weight");
    if (te == NULL) {
        rc = realm__error(REALM_ERR_FORMAT, "tensor 'token_embd.weight' is missing");
        goto fail;
    }
    if (te->n_dims != 2 || te->ne[1] < 1 || te->ne[1] > (1 << 24)) {
        rc = realm__error(REALM_ERR_FORMAT, "tensor 'token_embd.weight' has a bad shape");
        goto fail;
    }
    m->hp.n_vocab = (int32_t)te->ne[1];
    m->layers = calloc((size_t)m->hp.n_layer, sizeof *m->layers);
    if (m->layers == NULL) {
        rc = realm__error(REALM_ERR_NOMEM, "out of memory loading a model");
        goto fail;
    }
    for (int32_t p = 0; p < m->n_parts; p++)
        for (int64_t i = 0; i < realm_gguf_n_tensors(m->parts[p]); i++) {
            const realm_gguf_tensor *t = realm_gguf_tensor_at(m->parts[p], i);
            if ((rc = bind_tensor(m, t, arch)) < 0) {
                err_path = m->part_paths[p];
                goto fail;
            }
            m->weight_bytes += t->nbytes;
        }
    if ((rc = check_complete(m)) < 0)
        goto fail;
    m->hp.tied_output = m->output.data == NULL;
    if (m->hp.tied_output)
        m->output = m->tok_embd;
    m->hp.has_rope_freqs = m->rope_freqs != NULL;
    if (params != NULL && params->repack && (rc = repack_weights(m, params->mlock)) < 0)
        goto fail;
    if (params != NULL && params->mlock && (rc = lock_mappings(m)) < 0)
        goto fail;
    *out = m;
    return REALM_OK;
fail:
    if (rc != REALM_ERR_NOMEM && strncmp(realm_last_error(), err_path, strlen(err_path)) != 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", realm_last_error());
        realm__error(rc, "%s: %s", err_path, msg);
    }
    realm_model_free(m);
    return rc;
}

void realm_model_free(realm_model *m)
{
    if (m == NULL)
        return;
    for (int32_t p = 0; p < m->n_locked; p++) {
        void *base;
        size_t size;
        realm__gguf_mapping(m->parts[p], &base, &size);
        if (base != NULL)
            munlock(base, size);
    }
    if (m->packed != NULL) {
        if (m->packed_locked)
            munlock(m->packed, m->packed_bytes);
        munmap(m->packed, m->packed_bytes);
    }
    free(m->released);
    free(m->layers);
    for (int32_t p = 0; p < m->n_parts; p++) {
        realm_gguf_close(m->parts[p]);
        free(m->part_paths[p]);
    }
    free(m->parts);
    free(m->part_paths);
    free(m);
}

const realm_hparams *realm_model_hparams(const realm_model *m)
{
    return &m->hp;
}
const realm_gguf *realm_model_gguf(const realm_model *m)
{
    return m->parts[0];
}
int32_t realm_model_n_parts(const realm_model *m)
{
    return m->n_parts;
}
const realm_gguf *realm_model_part(const realm_model *m, int32_t i)
{
    return i >= 0 && i < m->n_parts ? m->parts[i] : NULL;
}
const realm_gguf_tensor *realm_model_find_tensor(const realm_model *m, const char *name)
{
    for (int32_t p = 0; p < m->n_parts; p++) {
        const realm_gguf_tensor *t = realm_gguf_find_tensor(m->parts[p], name);
        if (t != NULL)
            return t;
    }
    return NULL;
}
uint64_t realm_model_weight_bytes(const realm_model *m)
{
    return m->weight_bytes;
}
uint64_t realm_model_packed_bytes(const realm_model *m)
{
    return m->packed_bytes;
}
