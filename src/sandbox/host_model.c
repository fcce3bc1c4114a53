/*
 * Host functions for models, tokens and weights: model_open, model_info,
 * tokenize, detokenize, tensor_read (docs/host-abi.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "host_internal.h"
#include "realm/gguf.h"
#include "realm/quant.h"
#include "realm/tokenizer.h"

/* ---- models ------------------------------------------------------------- */

/* A tenant's allowed names are models and adapters alike: an adapter needs
 * its own name listed (its base's does not do), and a listed adapter does
 * not need its base listed. */
int realm__host_allowed(const realm_instance *in, const char *name, size_t len)
{
    int allowed = in->pol.models == NULL;
    for (int32_t i = 0; i < in->pol.n_models && !allowed; i++)
        allowed = strlen(in->allowed[i]) == len && memcmp(in->allowed[i], name, len) == 0;
    return allowed;
}

uint32_t realm__host_model_open(void *c, uint32_t ptr, uint32_t len)
{
    HOST_BEGIN(c);
    const char *name = (const char *)realm__host_range(in, "model_open", ptr, len);
    int rc;
    char shown[64];
    snprintf(shown, sizeof shown, "%.*s", (int)(len < 60 ? len : 60), name);
    const int allowed = realm__host_allowed(in, name, len);
    rc = 0;
    for (int i = 0; i < in->n_models && !rc; i++) /* the same model twice: the same handle */
        if (strlen(in->models[i].name) == len && memcmp(in->models[i].name, name, len) == 0)
            rc = i + 1;
    realm_model_ref *ref = NULL;
    int err;
    if (rc)
        ;
    else if (!allowed)
        rc = realm__host_fail(in, REALM_ERR_DENIED,
                              "model_open: model '%s' is not allowed for this tenant", shown);
    else if (in->n_models == MAX_MODELS)
        rc = realm__host_fail(in, REALM_ERR_RANGE, "model_open: at most %d models per request",
                              MAX_MODELS);
    else if ((err = realm_registry_acquire(in->sb->reg, name, len,
                                           &(realm_acquire_opts){.names_only = true}, &ref)) < 0)
        rc = realm__host_fail(in, err, "model_open: %s", realm_last_error());
    else {
        in->models[in->n_models++] = (model_slot){.ref = ref,
                                                  .engine = realm_model_ref_engine(ref),
                                                  .model = realm_model_ref_model(ref),
                                                  .name = realm_model_ref_name(ref),
                                                  .tmpl = realm_model_ref_chat_template(ref)};
        rc = in->n_models;
    }
    HOST_RETURN(rc);
}

uint32_t realm__host_model_info(void *c, uint32_t h, uint32_t ptr, uint32_t cap)
{
    HOST_BEGIN(c);
    uint8_t *dst = realm__host_range(in, "model_info", ptr, cap);
    model_slot *s = realm__host_model(in, h);
    if (!s)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_INVAL, "model_info: bad model handle %u", h));
    const realm_hparams *hp = realm_model_hparams(s->model);
    const realm_tokenizer *tok = realm_engine_tokenizer(s->engine);
    json_t *j = json_pack(
        "{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "name", s->name, "architecture",
        realm_arch_name(hp->arch), "n_ctx_train", (json_int_t)hp->n_ctx_train, "n_vocab",
        (json_int_t)realm_tokenizer_n_vocab(tok), "n_embd", (json_int_t)hp->n_embd, "n_layer",
        (json_int_t)hp->n_layer, "n_head", (json_int_t)hp->n_head, "n_head_kv",
        (json_int_t)hp->n_head_kv, "bos", (json_int_t)realm_tokenizer_bos(tok), "eos",
        (json_int_t)realm_tokenizer_eos(tok));
    if (j && realm_model_ref_lora(s->ref)) /* opened by a LoRA adapter's name */
        json_object_set_new(j, "parent", json_string(realm_model_ref_base_name(s->ref)));
    HOST_RETURN(realm__host_put_json(dst, cap, j));
}

/* ---- tokens ------------------------------------------------------------- */

/* flags: bit 0 add BOS/EOS as the vocabulary says, bit 1 parse special
 * tokens (the tokenizer's REALM_TOKENIZE_* values). cap counts tokens. */
uint32_t realm__host_tokenize(void *c, uint32_t h, uint32_t text, uint32_t len, uint32_t flags,
                              uint32_t out, uint32_t cap)
{
    HOST_BEGIN(c);
    const char *t = (const char *)realm__host_range(in, "tokenize", text, len);
    uint8_t *dst = realm__host_range(in, "tokenize", out, (uint64_t)cap * 4);
    model_slot *s = realm__host_model(in, h);
    if (!s)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_INVAL, "tokenize: bad model handle %u", h));
    realm_token *ids = NULL;
    int32_t n = 0;
    int rc = realm_tokenize_alloc(realm_engine_tokenizer(s->engine), t, len, flags & 3u, &ids, &n);
    if (rc < 0)
        HOST_RETURN(realm__host_fail(in, rc, "tokenize: %s", realm_last_error()));
    if ((uint32_t)n <= cap)
        memcpy(dst, ids, (size_t)n * sizeof *ids);
    free(ids);
    HOST_RETURN(n);
}

/* flags: the tokenizer's REALM_DETOK_* values. cap counts bytes. */
uint32_t realm__host_detokenize(void *c, uint32_t h, uint32_t ids, uint32_t n, uint32_t flags,
                                uint32_t out, uint32_t cap)
{
    HOST_BEGIN(c);
    const uint8_t *src = realm__host_range(in, "detokenize", ids, (uint64_t)n * 4);
    uint8_t *dst = realm__host_range(in, "detokenize", out, cap);
    model_slot *s = realm__host_model(in, h);
    if (!s)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_INVAL, "detokenize: bad model handle %u", h));
    if (n > (1u << 24))
        HOST_RETURN(realm__host_fail(in, REALM_ERR_RANGE, "detokenize: %u tokens is too many", n));
    realm_token *tmp = malloc((size_t)n * sizeof *tmp + 1);
    if (!tmp)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_NOMEM, "detokenize: out of memory"));
    memcpy(tmp, src, (size_t)n * sizeof *tmp); /* guest memory is unaligned */
    const realm_tokenizer *tok = realm_engine_tokenizer(s->engine);
    int32_t need = realm_detokenize(tok, tmp, (int32_t)n, flags & 7u, NULL, 0);
    if (need >= 0 && (uint32_t)need <= cap)
        need = realm_detokenize(tok, tmp, (int32_t)n, flags & 7u, (char *)dst, cap);
    free(tmp);
    if (need < 0)
        HOST_RETURN(realm__host_fail(in, need, "detokenize: %s", realm_last_error()));
    HOST_RETURN(need);
}

/* tensor_read: rows [first_row, first_row + n_rows) of a weight tensor (rows
 * of ne[0] elements), dequantized to f32; cap counts floats (buffer rule). */
uint32_t realm__host_tensor_read(void *c, uint32_t h, uint32_t name, uint32_t name_len,
                                 uint32_t first_row, uint32_t n_rows, uint32_t out, uint32_t cap)
{
    HOST_BEGIN(c);
    const char *nm = (const char *)realm__host_range(in, "tensor_read", name, name_len);
    uint8_t *dst = realm__host_range(in, "tensor_read", out, (uint64_t)cap * 4);
    if (!in->pol.allow_tensor_read)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_DENIED,
                                     "tensor_read: not allowed by this tenant's policy"));
    model_slot *ms = realm__host_model(in, h);
    if (!ms)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_INVAL, "tensor_read: bad model handle %u", h));
    char key[256];
    if (name_len >= sizeof key)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_RANGE, "tensor_read: name too long"));
    memcpy(key, nm, name_len);
    key[name_len] = '\0';
    const realm_gguf_tensor *t = realm_model_find_tensor(ms->model, key);
    if (!t)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_NOTFOUND, "tensor_read: no tensor '%s'", key));
    int64_t row_len = t->ne[0], rows = realm_gguf_tensor_nelements(t) / (row_len ? row_len : 1);
    if ((int64_t)first_row + n_rows > rows || n_rows == 0)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_RANGE,
                                     "tensor_read: rows %u..%u of %lld in '%s'", first_row,
                                     first_row + n_rows, (long long)rows, key));
    int64_t need = (int64_t)n_rows * row_len;
    if (need > INT32_MAX)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_RANGE, "tensor_read: %lld floats is too many",
                                     (long long)need));
    if (need > (int64_t)cap)
        HOST_RETURN(need);
    float *row = malloc((size_t)row_len * sizeof *row);
    if (!row)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_NOMEM, "tensor_read: out of memory"));
    size_t rsz = realm_row_size(t->type, row_len);
    int rc = 0;
    for (uint32_t r = 0; r < n_rows && rc == 0; r++) {
        rc = realm_dequantize_row(t->type, (const uint8_t *)t->data + (first_row + r) * rsz, row,
                                  row_len);
        if (rc == 0) /* on failure, guest memory keeps what it held */
            memcpy(dst + (size_t)r * row_len * 4, row, (size_t)row_len * 4);
    }
    free(row);
    if (rc < 0)
        HOST_RETURN(realm__host_fail(in, rc, "tensor_read: %s", realm_last_error()));
    HOST_RETURN(need);
}
