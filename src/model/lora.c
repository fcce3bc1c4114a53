/*
 * LoRA adapters (realm/lora.h): read a GGUF adapter as llama.cpp writes it,
 * check every tensor against the base model, and copy A and B (transposed)
 * out of the file into the layout the forward pass's kernels read.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "lora_internal.h"

static const char *const kind_names[LORA_KIND_COUNT] = {
    [LORA_Q] = "attn_q",      [LORA_K] = "attn_k",      [LORA_V] = "attn_v",
    [LORA_O] = "attn_output", [LORA_GATE] = "ffn_gate", [LORA_UP] = "ffn_up",
    [LORA_DOWN] = "ffn_down",
};

const char *realm__lora_kind_name(int kind)
{
    return kind >= 0 && kind < LORA_KIND_COUNT ? kind_names[kind] : "unknown";
}

static _Atomic uint64_t lora_ids;

/* The metadata string key is s ("adapter"), or an error saying what it is. */
static int expect_str(const realm_gguf *g, const char *key, const char *want, const char *what)
{
    realm_gguf_str s;
    const int rc = realm_gguf_get_str(g, key, &s);
    if (rc == REALM_ERR_NOTFOUND)
        return realm__error(REALM_ERR_FORMAT, "not a LoRA adapter: %s is missing%s", key, what);
    if (rc < 0)
        return realm__error(REALM_ERR_FORMAT, "not a LoRA adapter: %s is not a string", key);
    if (s.len != strlen(want) || memcmp(s.data, want, s.len) != 0)
        return realm__error(REALM_ERR_FORMAT, "not a LoRA adapter: %s is '%.*s', not '%s'%s", key,
                            (int)(s.len < 64 ? s.len : 64), s.data, want, what);
    return REALM_OK;
}

/* Check the adapter's metadata: its kind, architecture and alpha. */
static int read_meta(const realm_gguf *g, const realm_model *base, float *alpha)
{
    int rc;
    if ((rc = expect_str(g, "general.type", "adapter", " (a model file?)")) < 0 ||
        (rc = expect_str(g, "adapter.type", "lora", "")) < 0)
        return rc;
    const char *arch = realm_arch_name(realm_model_hparams(base)->arch);
    realm_gguf_str a;
    if (realm_gguf_get_str(g, "general.architecture", &a) < 0)
        return realm__error(REALM_ERR_FORMAT, "general.architecture is missing or not a string");
    if (a.len != strlen(arch) || memcmp(a.data, arch, a.len) != 0)
        return realm__error(REALM_ERR_UNSUPPORTED,
                            "the adapter is for architecture '%.*s', the base model is '%s'",
                            (int)(a.len < 64 ? a.len : 64), a.data, arch);
    *alpha = 0;
    double d;
    if (realm_gguf_get_f64(g, "adapter.lora.alpha", &d) == REALM_OK)
        *alpha = (float)d;
    else if ((rc = realm_gguf_get_f32(g, "adapter.lora.alpha", alpha)) < 0 &&
             rc != REALM_ERR_NOTFOUND)
        return realm__error(REALM_ERR_FORMAT, "adapter.lora.alpha is not a float");
    if (!isfinite(*alpha))
        return realm__error(REALM_ERR_FORMAT, "adapter.lora.alpha is %g", *alpha);
    return REALM_OK;
}

/* The layer and kind of base weight `name` (blk.N.KIND.weight), or -1. */
static int parse_weight(const realm_model *base, const char *name, int *layer)
{
    int il, n = 0;
    char rest[64];
    if (sscanf(name, "blk.%d.%63[a-z_].weight%n", &il, rest, &n) != 2 || name[n] != '\0' ||
        il < 0 || il >= realm_model_hparams(base)->n_layer)
        return -1;
    for (int k = 0; k < LORA_KIND_COUNT; k++)
        if (strcmp(rest, kind_names[k]) == 0) {
            *layer = il;
            return k;
        }
    return -1;
}

static size_t elem_size(realm_type t)
{
    return t == REALM_TYPE_F32 ? 4 : 2;
}

static int check_type(const realm_gguf_tensor *t)
{
    if (t->type != REALM_TYPE_F32 && t->type != REALM_TYPE_F16 && t->type != REALM_TYPE_BF16)
        return realm__error(REALM_ERR_UNSUPPORTED,
                            "tensor '%s' has type %s; LoRA tensors must be F32, F16 or BF16",
                            t->name, realm_type_name(t->type));
    return REALM_OK;
}

/*
 * Check the pair A (ta), B (tb) of base weight `wname` (GGUF shape [n_in,
 * n_out]) and copy it into w: A as it is (rank rows of n_in), B transposed
 * (rank rows of n_out).
 */
static int bind_pair(realm_lora *lo, const char *wname, const realm_gguf_tensor *wt,
                     const realm_gguf_tensor *ta, const realm_gguf_tensor *tb, lora_weight *w)
{
    int rc;
    if ((rc = check_type(ta)) < 0 || (rc = check_type(tb)) < 0)
        return rc;
    const int64_t n_in = wt->ne[0], n_out = wt->ne[1];
    if (ta->n_dims != 2 || tb->n_dims != 2 || ta->ne[0] != n_in || tb->ne[1] != n_out) {
        const bool swapped =
            ta->n_dims == 2 && tb->n_dims == 2 && ta->ne[1] == n_in && tb->ne[0] == n_out;
        return realm__error(REALM_ERR_FORMAT,
                            "tensors '%s' [%lld, %lld] and '%s' [%lld, %lld] do not fit '%s' "
                            "[%lld, %lld] of the base model: they must be [%lld, rank] and "
                            "[rank, %lld]%s",
                            ta->name, (long long)ta->ne[0], (long long)ta->ne[1], tb->name,
                            (long long)tb->ne[0], (long long)tb->ne[1], wname, (long long)n_in,
                            (long long)n_out, (long long)n_in, (long long)n_out,
                            swapped ? " (lora_a and lora_b look transposed)" : "");
    }
    if (ta->ne[1] != tb->ne[0])
        return realm__error(REALM_ERR_FORMAT,
                            "rank mismatch: '%s' has rank %lld, '%s' has rank %lld", ta->name,
                            (long long)ta->ne[1], tb->name, (long long)tb->ne[0]);
    const int64_t rank = ta->ne[1];
    if (rank < 1 || rank > REALM_LORA_MAX_RANK)
        return realm__error(REALM_ERR_UNSUPPORTED, "tensor '%s': rank %lld (Realm takes 1..%d)",
                            ta->name, (long long)rank, REALM_LORA_MAX_RANK);
    const size_t ea = elem_size(ta->type), eb = elem_size(tb->type);
    const size_t na = (size_t)rank * (size_t)n_in * ea, nb = (size_t)rank * (size_t)n_out * eb;
    w->a = aligned_alloc(64, (na + 63) & ~(size_t)63);
    w->bt = aligned_alloc(64, (nb + 63) & ~(size_t)63);
    if (w->a == NULL || w->bt == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory for LoRA tensor '%s'", ta->name);
    memcpy(w->a, ta->data, na);
    /* B's rows (one per output) are `rank` long; write them as columns */
    const uint8_t *src = tb->data;
    uint8_t *dst = w->bt;
    for (int64_t o = 0; o < n_out; o++)
        for (int64_t j = 0; j < rank; j++)
            memcpy(dst + ((size_t)j * (size_t)n_out + (size_t)o) * eb,
                   src + ((size_t)o * (size_t)rank + (size_t)j) * eb, eb);
    w->rank = (int32_t)rank;
    w->n_in = n_in;
    w->n_out = n_out;
    w->a_type = ta->type;
    w->b_type = tb->type;
    w->scale = lo->alpha != 0 ? lo->alpha / (float)rank : 1.0f;
    lo->bytes += na + nb;
    lo->n_weights++;
    if (rank > lo->rank_max)
        lo->rank_max = (int32_t)rank;
    return REALM_OK;
}

/* Check and bind every tensor of the adapter. */
static int bind_all(realm_lora *lo, const realm_gguf *g)
{
    const realm_model *base = lo->base;
    const int64_t nt = realm_gguf_n_tensors(g);
    char wname[256], other[272];
    for (int64_t i = 0; i < nt; i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        const size_t len = strlen(t->name);
        const bool is_a = len > 7 && strcmp(t->name + len - 7, ".lora_a") == 0;
        const bool is_b = len > 7 && strcmp(t->name + len - 7, ".lora_b") == 0;
        if (!is_a && !is_b)
            return realm__error(REALM_ERR_FORMAT,
                                "tensor '%s' is not a LoRA tensor (NAME.lora_a or NAME.lora_b)",
                                t->name);
        if (len - 7 >= sizeof wname)
            return realm__error(REALM_ERR_FORMAT, "tensor name '%.64s...' is too long", t->name);
        memcpy(wname, t->name, len - 7);
        wname[len - 7] = '\0';
        const realm_gguf_tensor *wt = realm_model_find_tensor(base, wname);
        int layer = -1;
        const int kind = parse_weight(base, wname, &layer);
        if (wt == NULL)
            return realm__error(REALM_ERR_FORMAT,
                                "tensor '%s' adapts '%s', which the base model does not have",
                                t->name, wname);
        if (kind < 0)
            return realm__error(REALM_ERR_UNSUPPORTED,
                                "tensor '%s': Realm adapts only attention and feed-forward "
                                "weights (attn_q/k/v/output, ffn_gate/up/down), not '%s'",
                                t->name, wname);
        snprintf(other, sizeof other, "%s.%s", wname, is_a ? "lora_b" : "lora_a");
        const realm_gguf_tensor *pair = realm_gguf_find_tensor(g, other);
        if (pair == NULL)
            return realm__error(REALM_ERR_FORMAT, "tensor '%s' has no '%s' beside it", t->name,
                                other);
        if (!is_a)
            continue; /* bound with its lora_a */
        if ((size_t)layer >= (size_t)lo->n_layer)
            return realm__error(REALM_ERR_FORMAT, "tensor '%s': layer out of range", t->name);
        int rc = bind_pair(lo, wname, wt, t, pair, &lo->w[(size_t)layer * LORA_KIND_COUNT + kind]);
        if (rc < 0)
            return rc;
    }
    if (lo->n_weights == 0)
        return realm__error(REALM_ERR_FORMAT, "the adapter has no LoRA tensors");
    return REALM_OK;
}

int realm_lora_load(const realm_model *base, const char *path, realm_lora **out)
{
    *out = NULL;
    realm_gguf *g = NULL;
    int rc = realm_gguf_open(path, &g);
    realm_lora *lo = NULL;
    if (rc < 0)
        goto fail;
    lo = calloc(1, sizeof *lo);
    if (lo == NULL) {
        rc = realm__error(REALM_ERR_NOMEM, "out of memory for an adapter");
        goto fail;
    }
    lo->base = base;
    lo->n_layer = realm_model_hparams(base)->n_layer;
    lo->w = calloc((size_t)lo->n_layer * LORA_KIND_COUNT, sizeof *lo->w);
    if (lo->w == NULL) {
        rc = realm__error(REALM_ERR_NOMEM, "out of memory for an adapter");
        goto fail;
    }
    if ((rc = read_meta(g, base, &lo->alpha)) < 0 || (rc = bind_all(lo, g)) < 0)
        goto fail;
    lo->id = atomic_fetch_add(&lora_ids, 1) + 1;
    realm_gguf_close(g);
    *out = lo;
    return REALM_OK;
fail:
    realm_gguf_close(g);
    realm_lora_free(lo);
    if (rc != REALM_ERR_NOMEM && strncmp(realm_last_error(), path, strlen(path)) != 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", realm_last_error());
        realm__error(rc, "%s: %s", path, msg);
    }
    return rc;
}

void realm_lora_free(realm_lora *a)
{
    if (a == NULL)
        return;
    if (a->w)
        for (size_t i = 0; i < (size_t)a->n_layer * LORA_KIND_COUNT; i++) {
            free(a->w[i].a);
            free(a->w[i].bt);
        }
    free(a->w);
    free(a);
}

const realm_model *realm_lora_base(const realm_lora *a)
{
    return a->base;
}
float realm_lora_alpha(const realm_lora *a)
{
    return a->alpha;
}
int32_t realm_lora_rank(const realm_lora *a)
{
    return a->rank_max;
}
int32_t realm_lora_n_weights(const realm_lora *a)
{
    return a->n_weights;
}
uint64_t realm_lora_bytes(const realm_lora *a)
{
    return a->bytes;
}
uint64_t realm_lora_id(const realm_lora *a)
{
    return a->id;
}

int realm_lora_set_normalize(const realm_model *base, const realm_lora_set *set,
                             realm_lora_item *out, int32_t *n_out)
{
    *n_out = 0;
    if (set->n < 0 || set->n > REALM_LORA_MAX_SET || (set->n > 0 && set->items == NULL))
        return realm__error(REALM_ERR_INVAL, "an adapter set has %d items (at most %d)", set->n,
                            REALM_LORA_MAX_SET);
    int32_t n = 0;
    for (int32_t i = 0; i < set->n; i++) {
        const realm_lora_item *it = &set->items[i];
        if (it->lora == NULL)
            return realm__error(REALM_ERR_INVAL, "item %d of an adapter set has no adapter", i);
        if (it->lora->base != base)
            return realm__error(REALM_ERR_INVAL,
                                "item %d of an adapter set: the adapter was loaded for another "
                                "model",
                                i);
        if (!isfinite(it->scale))
            return realm__error(REALM_ERR_INVAL, "item %d of an adapter set: scale %g", i,
                                it->scale);
        int32_t j = 0;
        while (j < n && out[j].lora != it->lora)
            j++;
        if (j < n) {
            out[j].scale += it->scale;
            continue;
        }
        /* insert in id order */
        j = n++;
        while (j > 0 && out[j - 1].lora->id > it->lora->id) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = *it;
    }
    int32_t kept = 0, rank = 0;
    for (int32_t i = 0; i < n; i++)
        if (out[i].scale != 0) {
            rank += out[i].lora->rank_max;
            out[kept++] = out[i];
        }
    if (rank > REALM_LORA_MAX_SET_RANK)
        return realm__error(REALM_ERR_INVAL,
                            "an adapter set of total rank %d (at most %d: fewer or smaller "
                            "adapters)",
                            rank, REALM_LORA_MAX_SET_RANK);
    *n_out = kept;
    return REALM_OK;
}
