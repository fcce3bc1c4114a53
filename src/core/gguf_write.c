/*
 * GGUF writer (realm/gguf.h). Metadata values are kept already encoded, as
 * the bytes that follow the type id in the file, so writing is concatenation
 * and copying a value from a reader is one memcpy. Tensors are laid out in
 * add order, each at a multiple of the alignment and followed by zero
 * padding up to the next multiple, as llama.cpp writes them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error_internal.h"
#include "gguf_internal.h"
#include "strmap_internal.h"

#define GGUF_WRITE_VERSION 3u

struct wkv {
    uint64_t key_at; /* in the writer's names */
    realm_gguf_type type;
    uint8_t *val;  /* encoded value (after the type id) */
    uint64_t size; /* bytes in val */
};

struct wtensor {
    uint64_t name_at; /* in the writer's names */
    uint32_t n_dims;
    int64_t ne[REALM_GGUF_MAX_DIMS];
    realm_type type;
    const void *data; /* borrowed; NULL if it will be streamed */
    uint64_t nbytes;
    uint64_t offset; /* in the data section, set by begin */
};

struct realm_gguf_writer {
    struct wkv *kv;
    int64_t n_kv;
    int64_t cap_kv;
    realm__strmap kv_index; /* key -> entry of kv */

    struct wtensor *t;
    int64_t n_t;
    int64_t cap_t;
    realm__strmap t_index; /* name -> entry of t */

    /* Keys and tensor names, each NUL-terminated, back to back (a removed
     * key's bytes stay until the writer is freed). */
    char *names;
    uint64_t names_len, names_cap;

    /* Between begin and end: */
    FILE *f;            /* the caller's stream; NULL when no write is in progress */
    uint64_t alignment; /* in effect for this write */
    uint64_t pos;       /* bytes written so far */
    int64_t next;       /* next tensor put_tensor expects */
};

static void store_u32(uint8_t *p, uint32_t v)
{
    for (int b = 0; b < 4; b++)
        p[b] = (uint8_t)(v >> (8 * b));
}

static void store_u64(uint8_t *p, uint64_t v)
{
    for (int b = 0; b < 8; b++)
        p[b] = (uint8_t)(v >> (8 * b));
}

int realm_gguf_writer_new(realm_gguf_writer **out)
{
    if (out == NULL)
        return realm__error(REALM_ERR_INVAL, "realm_gguf_writer_new: out is NULL");
    *out = calloc(1, sizeof **out);
    if (*out == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory for a GGUF writer");
    return REALM_OK;
}

void realm_gguf_writer_free(realm_gguf_writer *w)
{
    if (w == NULL)
        return;
    for (int64_t i = 0; i < w->n_kv; i++)
        free(w->kv[i].val);
    free(w->kv);
    realm__strmap_free(&w->kv_index);
    free(w->t);
    realm__strmap_free(&w->t_index);
    free(w->names);
    free(w);
}

/* Metadata and tensors are frozen while a streamed write is in progress. */
static int check_idle(const realm_gguf_writer *w, const char *what)
{
    if (w == NULL)
        return realm__error(REALM_ERR_INVAL, "%s: writer is NULL", what);
    if (w->f != NULL)
        return realm__error(REALM_ERR_INVAL,
                            "%s: a write is in progress (call "
                            "realm_gguf_writer_end first)",
                            what);
    return REALM_OK;
}

/* A key or tensor name: non-NULL and at most REALM__GGUF_MAX_NAME bytes. */
static int check_name(const char *name, const char *kind)
{
    if (name == NULL)
        return realm__error(REALM_ERR_INVAL, "%s is NULL", kind);
    const size_t len = strlen(name);
    if (len > REALM__GGUF_MAX_NAME)
        return realm__error(REALM_ERR_INVAL, "%s '%.64s...' is %zu bytes, longer than %u", kind,
                            name, len, REALM__GGUF_MAX_NAME);
    return REALM_OK;
}

/* The key or tensor name stored at `at` in the names. */
static const char *name_of(const realm_gguf_writer *w, uint64_t at)
{
    return w->names + at;
}

/* Append name[0..len) and a NUL to the names (len <= REALM__GGUF_MAX_NAME,
 * name not inside them); *at gets where it starts. */
static int names_add(realm_gguf_writer *w, const char *name, size_t len, uint64_t *at)
{
    const uint64_t want = w->names_len + len + 1;
    if (want > w->names_cap) {
        uint64_t cap = w->names_cap ? w->names_cap : 1024;
        while (cap < want)
            cap *= 2;
        char *names = cap <= SIZE_MAX ? realloc(w->names, (size_t)cap) : NULL;
        if (names == NULL)
            return realm__error(REALM_ERR_NOMEM, "out of memory for %" PRIu64 " bytes of names",
                                cap);
        w->names = names;
        w->names_cap = cap;
    }
    memcpy(w->names + w->names_len, name, len);
    w->names[w->names_len + len] = '\0';
    *at = w->names_len;
    w->names_len = want;
    return REALM_OK;
}

/*
 * Store key = (type, val). Takes ownership of val (size bytes, malloc'd)
 * whether or not it succeeds. An existing key keeps its position.
 */
static int set_value(realm_gguf_writer *w, const char *key, realm_gguf_type type, uint8_t *val,
                     uint64_t size)
{
    int rc = check_idle(w, "realm_gguf_set");
    if (rc == REALM_OK)
        rc = check_name(key, "metadata key");
    if (rc < 0) {
        free(val);
        return rc;
    }
    const size_t len = strlen(key);
    const int64_t i = realm__strmap_find(&w->kv_index, w->names, key, len);
    if (i >= 0) {
        free(w->kv[i].val);
        w->kv[i].type = type;
        w->kv[i].val = val;
        w->kv[i].size = size;
        return REALM_OK;
    }
    if (w->n_kv == w->cap_kv) {
        const int64_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        struct wkv *kv = realloc(w->kv, (size_t)cap * sizeof *kv);
        if (kv == NULL) {
            free(val);
            return realm__error(REALM_ERR_NOMEM, "out of memory for metadata");
        }
        w->kv = kv;
        w->cap_kv = cap;
    }
    uint64_t at;
    if ((rc = names_add(w, key, len, &at)) < 0) {
        free(val);
        return rc;
    }
    const int64_t got = realm__strmap_put(&w->kv_index, w->names, at, len, (int32_t)w->n_kv);
    if (got < 0) {
        w->names_len = at;
        free(val);
        return (int)got;
    }
    w->kv[w->n_kv++] = (struct wkv){at, type, val, size};
    return REALM_OK;
}

/* malloc(size) for an encoded value, with a message on failure. */
static uint8_t *alloc_value(uint64_t size, const char *key)
{
    uint8_t *p = size <= SIZE_MAX ? malloc(size ? (size_t)size : 1) : NULL;
    if (p == NULL)
        realm__error(REALM_ERR_NOMEM, "out of memory for the %" PRIu64 "-byte value of '%s'", size,
                     key ? key : "(null)");
    return p;
}

int realm_gguf_set_scalar(realm_gguf_writer *w, const char *key, realm_gguf_type t,
                          const void *value)
{
    const size_t sz = realm_gguf_type_size(t);
    if (sz == 0)
        return realm__error(REALM_ERR_INVAL, "metadata '%s': %s (id %d) is not a scalar type",
                            key ? key : "(null)", realm_gguf_type_name(t), (int)t);
    if (value == NULL)
        return realm__error(REALM_ERR_INVAL, "metadata '%s': value is NULL", key ? key : "(null)");
    uint8_t *val = alloc_value(sz, key);
    if (val == NULL)
        return REALM_ERR_NOMEM;
    memcpy(val, value, sz);
    return set_value(w, key, t, val, sz);
}

int realm_gguf_set_u32(realm_gguf_writer *w, const char *key, uint32_t v)
{
    uint8_t b[4];
    store_u32(b, v);
    return realm_gguf_set_scalar(w, key, REALM_GGUF_UINT32, b);
}

int realm_gguf_set_i32(realm_gguf_writer *w, const char *key, int32_t v)
{
    uint8_t b[4];
    store_u32(b, (uint32_t)v);
    return realm_gguf_set_scalar(w, key, REALM_GGUF_INT32, b);
}

int realm_gguf_set_u64(realm_gguf_writer *w, const char *key, uint64_t v)
{
    uint8_t b[8];
    store_u64(b, v);
    return realm_gguf_set_scalar(w, key, REALM_GGUF_UINT64, b);
}

int realm_gguf_set_f32(realm_gguf_writer *w, const char *key, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, 4);
    uint8_t b[4];
    store_u32(b, bits);
    return realm_gguf_set_scalar(w, key, REALM_GGUF_FLOAT32, b);
}

int realm_gguf_set_bool(realm_gguf_writer *w, const char *key, bool v)
{
    const uint8_t b = v ? 1 : 0;
    return realm_gguf_set_scalar(w, key, REALM_GGUF_BOOL, &b);
}

int realm_gguf_set_str(realm_gguf_writer *w, const char *key, const char *s, uint64_t len)
{
    if (s == NULL && len != 0)
        return realm__error(REALM_ERR_INVAL, "metadata '%s': string is NULL", key ? key : "(null)");
    if (len > UINT64_MAX - 8)
        return realm__error(REALM_ERR_RANGE, "metadata '%s': string too long",
                            key ? key : "(null)");
    uint8_t *val = alloc_value(8 + len, key);
    if (val == NULL)
        return REALM_ERR_NOMEM;
    store_u64(val, len);
    if (len)
        memcpy(val + 8, s, (size_t)len);
    return set_value(w, key, REALM_GGUF_STRING, val, 8 + len);
}

int realm_gguf_set_arr(realm_gguf_writer *w, const char *key, realm_gguf_type elem_type,
                       const void *data, uint64_t n)
{
    const char *k = key ? key : "(null)";
    const size_t es = realm_gguf_type_size(elem_type);
    if (es == 0)
        return realm__error(REALM_ERR_INVAL,
                            "metadata '%s': array element type %s (id %d) is not a scalar type "
                            "(string arrays: realm_gguf_set_arr_str; nested arrays are not "
                            "supported)",
                            k, realm_gguf_type_name(elem_type), (int)elem_type);
    if (data == NULL && n != 0)
        return realm__error(REALM_ERR_INVAL, "metadata '%s': array data is NULL", k);
    if (n > (UINT64_MAX - 12) / es)
        return realm__error(REALM_ERR_RANGE, "metadata '%s': array of %" PRIu64 " is too large", k,
                            n);
    const uint64_t size = 12 + n * es;
    uint8_t *val = alloc_value(size, key);
    if (val == NULL)
        return REALM_ERR_NOMEM;
    store_u32(val, (uint32_t)elem_type);
    store_u64(val + 4, n);
    if (n)
        memcpy(val + 12, data, (size_t)(n * es));
    return set_value(w, key, REALM_GGUF_ARRAY, val, size);
}

int realm_gguf_set_arr_str(realm_gguf_writer *w, const char *key, const realm_gguf_str *strs,
                           uint64_t n)
{
    const char *k = key ? key : "(null)";
    if (strs == NULL && n != 0)
        return realm__error(REALM_ERR_INVAL, "metadata '%s': string array is NULL", k);
    uint64_t size = 12;
    for (uint64_t j = 0; j < n; j++) {
        if (strs[j].data == NULL && strs[j].len != 0)
            return realm__error(REALM_ERR_INVAL, "metadata '%s': string %" PRIu64 " is NULL", k, j);
        if (strs[j].len > UINT64_MAX - 8 - size)
            return realm__error(REALM_ERR_RANGE, "metadata '%s': string array too large", k);
        size += 8 + strs[j].len;
    }
    uint8_t *val = alloc_value(size, key);
    if (val == NULL)
        return REALM_ERR_NOMEM;
    store_u32(val, REALM_GGUF_STRING);
    store_u64(val + 4, n);
    uint8_t *p = val + 12;
    for (uint64_t j = 0; j < n; j++) {
        store_u64(p, strs[j].len);
        if (strs[j].len)
            memcpy(p + 8, strs[j].data, (size_t)strs[j].len);
        p += 8 + strs[j].len;
    }
    return set_value(w, key, REALM_GGUF_ARRAY, val, size);
}

int realm_gguf_copy_kv(realm_gguf_writer *w, const realm_gguf *g, int64_t i)
{
    if (g == NULL || i < 0 || i >= realm_gguf_n_kv(g))
        return realm__error(REALM_ERR_INVAL, "realm_gguf_copy_kv: no metadata entry %" PRId64, i);
    const uint8_t *raw;
    uint64_t size;
    realm__gguf_kv_raw(g, i, &raw, &size);
    const char *key = realm_gguf_kv_key(g, i);
    uint8_t *val = alloc_value(size, key);
    if (val == NULL)
        return REALM_ERR_NOMEM;
    if (size)
        memcpy(val, raw, (size_t)size);
    return set_value(w, key, realm_gguf_kv_type(g, i), val, size);
}

int realm_gguf_remove_kv(realm_gguf_writer *w, const char *key)
{
    int rc = check_idle(w, "realm_gguf_remove_kv");
    if (rc < 0)
        return rc;
    const int64_t i = key ? realm__strmap_find(&w->kv_index, w->names, key, strlen(key)) : -1;
    if (i < 0)
        return realm__error(REALM_ERR_NOTFOUND, "metadata key '%s' not found",
                            key ? key : "(null)");
    free(w->kv[i].val);
    memmove(&w->kv[i], &w->kv[i + 1], (size_t)(w->n_kv - i - 1) * sizeof *w->kv);
    w->n_kv--;
    /* Indexes after i moved down by one: rebuild (the table keeps its size,
     * so this cannot fail). */
    realm__strmap_clear(&w->kv_index);
    for (int64_t j = 0; j < w->n_kv; j++) {
        const uint64_t at = w->kv[j].key_at;
        realm__strmap_put(&w->kv_index, w->names, at, strlen(name_of(w, at)), (int32_t)j);
    }
    return REALM_OK;
}

/*
 * Validate and record a tensor: name length, 1..4 positive dims, a known
 * type whose block size divides ne[0], element count and byte size within
 * 64 bits, and a name not used before (REALM_ERR_EXISTS).
 */
int realm_gguf_add_tensor(realm_gguf_writer *w, const char *name, uint32_t n_dims,
                          const int64_t *ne, realm_type type, const void *data)
{
    int rc = check_idle(w, "realm_gguf_add_tensor");
    if (rc == REALM_OK)
        rc = check_name(name, "tensor name");
    if (rc < 0)
        return rc;
    if (n_dims < 1 || n_dims > REALM_GGUF_MAX_DIMS)
        return realm__error(REALM_ERR_INVAL,
                            "tensor '%s': dimension count %" PRIu32 " is not in 1..%d", name,
                            n_dims, REALM_GGUF_MAX_DIMS);
    if (ne == NULL)
        return realm__error(REALM_ERR_INVAL, "tensor '%s': shape is NULL", name);
    struct wtensor t = {.n_dims = n_dims, .type = type, .data = data};
    int64_t nel = 1;
    for (uint32_t d = 0; d < REALM_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 1)
            return realm__error(REALM_ERR_INVAL,
                                "tensor '%s': dimension %" PRIu32 " is %" PRId64
                                "; dimensions must be positive",
                                name, d, t.ne[d]);
        if (nel > INT64_MAX / t.ne[d])
            return realm__error(REALM_ERR_RANGE, "tensor '%s': more than 2^63 - 1 elements", name);
        nel *= t.ne[d];
    }
    const realm_type_traits *tr = realm_type_get((uint32_t)type);
    if (tr == NULL)
        return realm__error(REALM_ERR_INVAL, "tensor '%s': unknown tensor type id %u", name,
                            (unsigned)type);
    if (t.ne[0] % tr->block_size != 0)
        return realm__error(REALM_ERR_INVAL,
                            "tensor '%s': ne[0] = %" PRId64
                            " is not a multiple of the %s block size %" PRId64,
                            name, t.ne[0], tr->name, tr->block_size);
    const uint64_t blocks = (uint64_t)(t.ne[0] / tr->block_size);
    const uint64_t rows = (uint64_t)(nel / t.ne[0]);
    const uint64_t row = blocks * tr->type_size;
    if (blocks > UINT64_MAX / tr->type_size || row > UINT64_MAX / rows)
        return realm__error(REALM_ERR_RANGE, "tensor '%s': size in bytes overflows 64 bits", name);
    t.nbytes = row * rows;

    const size_t len = strlen(name);
    if (realm__strmap_find(&w->t_index, w->names, name, len) >= 0)
        return realm__error(REALM_ERR_EXISTS, "duplicate tensor name '%s'", name);
    if (w->n_t == w->cap_t) {
        const int64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        struct wtensor *ts = realloc(w->t, (size_t)cap * sizeof *ts);
        if (ts == NULL)
            return realm__error(REALM_ERR_NOMEM, "out of memory for tensor infos");
        w->t = ts;
        w->cap_t = cap;
    }
    if ((rc = names_add(w, name, len, &t.name_at)) < 0)
        return rc;
    const int64_t got = realm__strmap_put(&w->t_index, w->names, t.name_at, len, (int32_t)w->n_t);
    if (got < 0) {
        w->names_len = t.name_at;
        return (int)got;
    }
    w->t[w->n_t++] = t;
    return REALM_OK;
}

/* ---- output -------------------------------------------------------------- */

/* Write n bytes; a short write abandons the write in progress. */
static int emit(realm_gguf_writer *w, const void *p, size_t n)
{
    if (n != 0 && fwrite(p, 1, n, w->f) != n) {
        const int e = errno;
        w->f = NULL;
        return realm__error(REALM_ERR_IO, "GGUF write failed at offset %" PRIu64 ": %s", w->pos,
                            e ? strerror(e) : "short write");
    }
    w->pos += n;
    return REALM_OK;
}

static int emit_u32(realm_gguf_writer *w, uint32_t v)
{
    uint8_t b[4];
    store_u32(b, v);
    return emit(w, b, 4);
}

static int emit_u64(realm_gguf_writer *w, uint64_t v)
{
    uint8_t b[8];
    store_u64(b, v);
    return emit(w, b, 8);
}

static int emit_name(realm_gguf_writer *w, const char *s)
{
    const size_t len = strlen(s);
    int rc = emit_u64(w, len);
    return rc < 0 ? rc : emit(w, s, len);
}

/* Zero bytes up to the next multiple of the alignment. */
static int emit_pad(realm_gguf_writer *w)
{
    static const uint8_t zeros[256];
    uint64_t pad = (w->alignment - w->pos % w->alignment) % w->alignment;
    while (pad > 0) {
        const size_t n = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        int rc = emit(w, zeros, n);
        if (rc < 0)
            return rc;
        pad -= n;
    }
    return REALM_OK;
}

/* The alignment the file will declare: general.alignment if set (it must
 * then be a uint32 power of two), else the default. */
static int writer_alignment(const realm_gguf_writer *w, uint64_t *out)
{
    *out = REALM_GGUF_DEFAULT_ALIGNMENT;
    const int64_t i = realm__strmap_find(&w->kv_index, w->names, "general.alignment", 17);
    if (i < 0)
        return REALM_OK;
    const struct wkv *kv = &w->kv[i];
    if (kv->type != REALM_GGUF_UINT32)
        return realm__error(REALM_ERR_INVAL, "general.alignment must be uint32, not %s",
                            realm_gguf_type_name(kv->type));
    const uint32_t a = (uint32_t)kv->val[0] | (uint32_t)kv->val[1] << 8 |
                       (uint32_t)kv->val[2] << 16 | (uint32_t)kv->val[3] << 24;
    if (a == 0 || (a & (a - 1)) != 0)
        return realm__error(REALM_ERR_INVAL, "general.alignment %" PRIu32 " is not a power of two",
                            a);
    *out = a;
    return REALM_OK;
}

/*
 * Lay the tensors out and write everything before their data: header,
 * metadata, tensor infos and the padding that aligns the data section.
 */
int realm_gguf_writer_begin(realm_gguf_writer *w, FILE *f)
{
    int rc = check_idle(w, "realm_gguf_writer_begin");
    if (rc < 0)
        return rc;
    if (f == NULL)
        return realm__error(REALM_ERR_INVAL, "realm_gguf_writer_begin: FILE is NULL");
    uint64_t align;
    if ((rc = writer_alignment(w, &align)) < 0)
        return rc;
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_t; i++) {
        struct wtensor *t = &w->t[i];
        const uint64_t padded = t->nbytes + (align - t->nbytes % align) % align;
        if (padded < t->nbytes || off > UINT64_MAX - padded)
            return realm__error(REALM_ERR_RANGE, "tensor data exceeds 2^64 bytes at tensor '%s'",
                                name_of(w, t->name_at));
        t->offset = off;
        off += padded;
    }

    w->f = f;
    w->alignment = align;
    w->pos = 0;
    w->next = 0;
    if ((rc = emit(w, REALM_GGUF_MAGIC, 4)) < 0 || (rc = emit_u32(w, GGUF_WRITE_VERSION)) < 0 ||
        (rc = emit_u64(w, (uint64_t)w->n_t)) < 0 || (rc = emit_u64(w, (uint64_t)w->n_kv)) < 0)
        return rc;
    for (int64_t i = 0; i < w->n_kv; i++) {
        const struct wkv *kv = &w->kv[i];
        if ((rc = emit_name(w, name_of(w, kv->key_at))) < 0 ||
            (rc = emit_u32(w, (uint32_t)kv->type)) < 0 ||
            (rc = emit(w, kv->val, (size_t)kv->size)) < 0)
            return rc;
    }
    for (int64_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->t[i];
        if ((rc = emit_name(w, name_of(w, t->name_at))) < 0 || (rc = emit_u32(w, t->n_dims)) < 0)
            return rc;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if ((rc = emit_u64(w, (uint64_t)t->ne[d])) < 0)
                return rc;
        if ((rc = emit_u32(w, (uint32_t)t->type)) < 0 || (rc = emit_u64(w, t->offset)) < 0)
            return rc;
    }
    /* Without tensors the data section is empty and needs no alignment (the
     * vocabulary-only files llama.cpp ships end right after the metadata). */
    return w->n_t > 0 ? emit_pad(w) : REALM_OK;
}

int realm_gguf_writer_put_tensor(realm_gguf_writer *w, const void *data, uint64_t nbytes)
{
    if (w == NULL || w->f == NULL)
        return realm__error(REALM_ERR_INVAL, "realm_gguf_writer_put_tensor: no write in progress");
    if (w->next >= w->n_t)
        return realm__error(REALM_ERR_INVAL,
                            "put_tensor: all %" PRId64 " tensors have already been written",
                            w->n_t);
    const struct wtensor *t = &w->t[w->next];
    if (nbytes != t->nbytes)
        return realm__error(REALM_ERR_INVAL,
                            "put_tensor: tensor '%s' is %" PRIu64 " bytes, got %" PRIu64,
                            name_of(w, t->name_at), t->nbytes, nbytes);
    if (data == NULL)
        return realm__error(REALM_ERR_INVAL, "put_tensor: tensor '%s': data is NULL",
                            name_of(w, t->name_at));
    int rc = emit(w, data, (size_t)nbytes);
    if (rc == REALM_OK)
        rc = emit_pad(w);
    if (rc == REALM_OK)
        w->next++;
    return rc;
}

int realm_gguf_writer_end(realm_gguf_writer *w)
{
    if (w == NULL || w->f == NULL)
        return realm__error(REALM_ERR_INVAL, "realm_gguf_writer_end: no write in progress");
    if (w->next < w->n_t)
        return realm__error(REALM_ERR_INVAL,
                            "writer_end: only %" PRId64 " of %" PRId64
                            " tensors were written (next: '%s')",
                            w->next, w->n_t, name_of(w, w->t[w->next].name_at));
    FILE *f = w->f;
    w->f = NULL;
    if (fflush(f) != 0 || ferror(f))
        return realm__error(REALM_ERR_IO, "GGUF write failed (flushing %" PRIu64 " bytes): %s",
                            w->pos, strerror(errno));
    return REALM_OK;
}

/* Write the whole file at path; a partial regular file is removed on error. */
int realm_gguf_writer_write(realm_gguf_writer *w, const char *path)
{
    int rc = check_idle(w, "realm_gguf_writer_write");
    if (rc < 0)
        return rc;
    if (path == NULL)
        return realm__error(REALM_ERR_INVAL, "realm_gguf_writer_write: path is NULL");
    for (int64_t i = 0; i < w->n_t; i++)
        if (w->t[i].data == NULL)
            return realm__error(REALM_ERR_INVAL,
                                "tensor '%s' has no data (stream it with "
                                "realm_gguf_writer_begin/put_tensor/end)",
                                name_of(w, w->t[i].name_at));
    uint64_t align; /* checked before the file is created or truncated */
    if ((rc = writer_alignment(w, &align)) < 0)
        return rc;
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return realm__error(REALM_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    rc = realm_gguf_writer_begin(w, f);
    for (int64_t i = 0; rc == REALM_OK && i < w->n_t; i++)
        rc = realm_gguf_writer_put_tensor(w, w->t[i].data, w->t[i].nbytes);
    if (rc == REALM_OK)
        rc = realm_gguf_writer_end(w);
    w->f = NULL;

    struct stat st;
    const bool regular = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode);
    if (fclose(f) != 0 && rc == REALM_OK)
        rc = realm__error(REALM_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    if (rc < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", realm_last_error());
        if (regular)
            unlink(path);
        return realm__error(rc, "%s: %s", path, msg);
    }
    return REALM_OK;
}
