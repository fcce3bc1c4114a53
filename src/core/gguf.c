/*
 * GGUF reader (realm/gguf.h). The file is untrusted: it is walked once, in
 * order, with a bounds-checked cursor, and every count is compared with the
 * bytes left in the file before anything proportional to it is allocated.
 * After open nothing is parsed again: accessors read the recorded offsets.
 *
 * Layout (all little-endian):
 *   header    "GGUF", u32 version, u64 n_tensors, u64 n_kv
 *   metadata  n_kv x { string key, u32 type, value }
 *   tensors   n_tensors x { string name, u32 n_dims, u64 ne[n_dims],
 *                           u32 type, u64 offset }
 *   padding   to general.alignment (default 32)
 *   data      tensor bytes; each offset is relative to the data start
 * A string is a u64 byte count and the bytes (no terminator). An array value
 * is a u32 element type, a u64 count, and the elements.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error_internal.h"
#include "gguf_internal.h"
#include "strmap_internal.h"

/* The smallest possible encodings, used to bound counts by the file size. */
#define MIN_KV_BYTES     13u /* key length, type id, one-byte value */
#define MIN_TENSOR_BYTES 32u /* name length, n_dims, one dim, type, offset */
#define MIN_STRING_BYTES 8u  /* length of an empty string */

/* Longest name shown in an error message before it is cut with "...". */
#define SHOW_NAME_MAX 64

struct gguf_kv {
    const char *key;   /* into g->keys, NUL-terminated */
    uint64_t key_at;   /* offset of the key in g->keys (until the fixup) */
    uint64_t file_off; /* where the entry starts, for messages */
    realm_gguf_type type;
    realm_gguf_type arr_type; /* element type of an ARRAY, else TYPE_COUNT */
    uint64_t raw_off;         /* the encoded value, after the type id ... */
    uint64_t raw_size;        /* ... and its size in bytes */
    uint64_t n;               /* string length, or array element count */
    uint64_t data_off;        /* scalar bytes, string bytes or first element */
    uint64_t str_first;       /* ARRAY of STRING: first index into g->str_offs */
};

/* A growable block of NUL-terminated names; pointers into it are made only
 * once it stops growing. */
struct name_arena {
    char *buf;
    uint64_t len;
    uint64_t cap;
};

struct realm_gguf {
    const uint8_t *base; /* the whole file */
    uint64_t size;
    void *map; /* non-NULL when the file was mapped by realm_gguf_open */
    size_t map_size;

    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;

    int64_t n_kv;
    struct gguf_kv *kv;
    struct name_arena keys;
    realm__strmap kv_index; /* key (in keys) -> entry */
    /* File offset of each string-array element's length field; a string
     * array's elements are consecutive, starting at its str_first. */
    uint64_t *str_offs;
    uint64_t n_str_offs;
    uint64_t str_offs_cap;

    int64_t n_tensors;
    realm_gguf_tensor *tensors;
    struct name_arena tensor_names;
    realm__strmap tensor_index; /* name (in tensor_names) -> tensor */
};

/* ---- small helpers ------------------------------------------------------ */

static uint32_t load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t load_u64(const uint8_t *p)
{
    return (uint64_t)load_u32(p) | (uint64_t)load_u32(p + 4) << 32;
}

static uint32_t bswap_u32(uint32_t x)
{
    return (x >> 24) | ((x >> 8) & 0xff00u) | ((x << 8) & 0xff0000u) | (x << 24);
}

static bool is_pow2(uint64_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

/*
 * Copy a name from the file into dst (cap >= SHOW_NAME_MAX + 4) for an error
 * message: control bytes become '?', and a long name is cut with "...".
 */
static const char *show_name(char *dst, const uint8_t *s, uint64_t len)
{
    uint64_t n = len < SHOW_NAME_MAX ? len : SHOW_NAME_MAX;
    for (uint64_t i = 0; i < n; i++)
        dst[i] = (s[i] < 0x20 || s[i] == 0x7f) ? '?' : (char)s[i];
    if (len > SHOW_NAME_MAX) {
        memcpy(dst + n, "...", 4);
    } else {
        dst[n] = '\0';
    }
    return dst;
}

static const char *type_name_or_unknown(uint32_t t)
{
    return realm_gguf_type_name((realm_gguf_type)t);
}

const char *realm_gguf_type_name(realm_gguf_type t)
{
    static const char *const names[REALM_GGUF_TYPE_COUNT] = {
        [REALM_GGUF_UINT8] = "uint8",     [REALM_GGUF_INT8] = "int8",
        [REALM_GGUF_UINT16] = "uint16",   [REALM_GGUF_INT16] = "int16",
        [REALM_GGUF_UINT32] = "uint32",   [REALM_GGUF_INT32] = "int32",
        [REALM_GGUF_FLOAT32] = "float32", [REALM_GGUF_BOOL] = "bool",
        [REALM_GGUF_STRING] = "string",   [REALM_GGUF_ARRAY] = "array",
        [REALM_GGUF_UINT64] = "uint64",   [REALM_GGUF_INT64] = "int64",
        [REALM_GGUF_FLOAT64] = "float64",
    };
    if ((unsigned)t >= REALM_GGUF_TYPE_COUNT)
        return "unknown";
    return names[t];
}

size_t realm_gguf_type_size(realm_gguf_type t)
{
    switch (t) {
    case REALM_GGUF_UINT8:
    case REALM_GGUF_INT8:
    case REALM_GGUF_BOOL:
        return 1;
    case REALM_GGUF_UINT16:
    case REALM_GGUF_INT16:
        return 2;
    case REALM_GGUF_UINT32:
    case REALM_GGUF_INT32:
    case REALM_GGUF_FLOAT32:
        return 4;
    case REALM_GGUF_UINT64:
    case REALM_GGUF_INT64:
    case REALM_GGUF_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

/* ---- the parser ---------------------------------------------------------- */

typedef struct parser {
    realm_gguf *g;
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    /* What is being parsed ("metadata 'general.name'"); "" in the header. */
    char ctx[SHOW_NAME_MAX + 32];
} parser;

/* Set the error message "at offset OFF: CTX: MSG" and return code. */
__attribute__((format(printf, 4, 5))) static int fail(const parser *ps, uint64_t off, int code,
                                                      const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ps->ctx[0] != '\0')
        return realm__error(code, "at offset %" PRIu64 ": %s: %s", off, ps->ctx, msg);
    return realm__error(code, "at offset %" PRIu64 ": %s", off, msg);
}

static uint64_t left(const parser *ps)
{
    return ps->size - ps->pos;
}

/* Check that n more bytes exist at the cursor. */
static int need(const parser *ps, uint64_t n, const char *what)
{
    if (n > left(ps))
        return fail(ps, ps->pos, REALM_ERR_FORMAT,
                    "file ends inside %s (needs %" PRIu64 " bytes, %" PRIu64 " left)", what, n,
                    left(ps));
    return REALM_OK;
}

static int read_u32(parser *ps, const char *what, uint32_t *v)
{
    int rc = need(ps, 4, what);
    if (rc < 0)
        return rc;
    *v = load_u32(ps->p + ps->pos);
    ps->pos += 4;
    return REALM_OK;
}

static int read_u64(parser *ps, const char *what, uint64_t *v)
{
    int rc = need(ps, 8, what);
    if (rc < 0)
        return rc;
    *v = load_u64(ps->p + ps->pos);
    ps->pos += 8;
    return REALM_OK;
}

/*
 * A length-prefixed string at the cursor. On success *off and *len locate its
 * bytes in the file and the cursor is past it. A length above max, or one
 * running past the end of the file, is an error naming what was read.
 */
static int read_str(parser *ps, const char *what, uint64_t max, uint64_t *off, uint64_t *len)
{
    const uint64_t at = ps->pos;
    uint64_t n;
    int rc = read_u64(ps, "a string length", &n);
    if (rc < 0)
        return rc;
    if (n > max)
        return fail(ps, at, REALM_ERR_FORMAT,
                    "%s length %" PRIu64 " exceeds the limit of %" PRIu64 " bytes", what, n, max);
    if (n > left(ps))
        return fail(ps, at, REALM_ERR_FORMAT,
                    "%s length %" PRIu64 " runs past end of file (%" PRIu64 " bytes left)", what, n,
                    left(ps));
    *off = ps->pos;
    *len = n;
    ps->pos += n;
    return REALM_OK;
}

/* Append a copy of the file bytes [off, off + len) and a NUL to the arena;
 * *at is where it starts. Names contain no NUL (checked by the caller). */
static int arena_add(struct name_arena *a, const uint8_t *s, uint64_t len, uint64_t *at)
{
    /* len <= file size, so len + 1 and the sum cannot wrap in practice;
     * still check, the arena must never be written past its end. */
    if (len >= UINT64_MAX - a->len)
        return realm__error(REALM_ERR_NOMEM, "name table too large");
    const uint64_t want = a->len + len + 1;
    if (want > a->cap) {
        uint64_t cap = a->cap ? a->cap : 256;
        while (cap < want)
            cap = cap > UINT64_MAX / 2 ? want : cap * 2;
        if (cap > SIZE_MAX)
            return realm__error(REALM_ERR_NOMEM, "name table too large");
        char *buf = realloc(a->buf, (size_t)cap);
        if (buf == NULL)
            return realm__error(REALM_ERR_NOMEM, "out of memory for %" PRIu64 " bytes of names",
                                cap);
        a->buf = buf;
        a->cap = cap;
    }
    memcpy(a->buf + a->len, s, (size_t)len);
    a->buf[a->len + len] = '\0';
    *at = a->len;
    a->len = want;
    return REALM_OK;
}

/* A name (key or tensor name) at the cursor: limited length, no NUL bytes.
 * Once read, ps->ctx names it ("<kind> 'name'"); `what` names the field. */
static int read_name(parser *ps, const char *kind, const char *what, struct name_arena *a,
                     uint64_t *at)
{
    uint64_t off, len;
    int rc = read_str(ps, what, REALM__GGUF_MAX_NAME, &off, &len);
    if (rc < 0)
        return rc;
    char shown[SHOW_NAME_MAX + 4];
    show_name(shown, ps->p + off, len);
    snprintf(ps->ctx, sizeof ps->ctx, "%s '%s'", kind, shown);
    const uint8_t *nul = memchr(ps->p + off, 0, (size_t)len);
    if (nul != NULL)
        return fail(ps, (uint64_t)(nul - ps->p), REALM_ERR_FORMAT, "%s contains a NUL byte", what);
    return arena_add(a, ps->p + off, len, at);
}

/* An array value at the cursor (after its ARRAY type id). */
static int parse_array(parser *ps, struct gguf_kv *kv)
{
    realm_gguf *g = ps->g;
    const uint64_t at = ps->pos;
    uint32_t et;
    uint64_t n;
    int rc = read_u32(ps, "an array element type", &et);
    if (rc < 0)
        return rc;
    if (et == REALM_GGUF_ARRAY)
        return fail(ps, at, REALM_ERR_UNSUPPORTED, "nested arrays are not supported");
    if (et >= REALM_GGUF_TYPE_COUNT)
        return fail(ps, at, REALM_ERR_FORMAT, "unknown array element type id %" PRIu32, et);
    if ((rc = read_u64(ps, "an array length", &n)) < 0)
        return rc;
    kv->arr_type = (realm_gguf_type)et;
    kv->n = n;
    kv->data_off = ps->pos;
    if (et != REALM_GGUF_STRING) {
        const uint64_t es = realm_gguf_type_size((realm_gguf_type)et);
        if (n > left(ps) / es)
            return fail(ps, at + 4, REALM_ERR_FORMAT,
                        "array of %" PRIu64 " %s values runs past end of file (%" PRIu64
                        " bytes left)",
                        n, type_name_or_unknown(et), left(ps));
        ps->pos += n * es;
        return REALM_OK;
    }
    /* Strings: bound the count first (each takes at least its length
     * field), then record where every element starts for O(1) access. */
    if (n > left(ps) / MIN_STRING_BYTES)
        return fail(ps, at + 4, REALM_ERR_FORMAT,
                    "array of %" PRIu64 " strings exceeds what the file can hold (%" PRIu64
                    " bytes left, each string needs at least %u)",
                    n, left(ps), MIN_STRING_BYTES);
    const uint64_t total = g->n_str_offs + n; /* both bounded by the file size */
    if (total > g->str_offs_cap) {
        /* Grow geometrically: a file may hold very many small arrays. */
        uint64_t cap = g->str_offs_cap ? 2 * g->str_offs_cap : 64;
        if (cap < total)
            cap = total;
        if (cap > SIZE_MAX / sizeof(uint64_t))
            return realm__error(REALM_ERR_NOMEM, "too many strings");
        uint64_t *offs = realloc(g->str_offs, (size_t)cap * sizeof(uint64_t));
        if (offs == NULL)
            return realm__error(REALM_ERR_NOMEM, "out of memory for %" PRIu64 " string offsets",
                                cap);
        g->str_offs = offs;
        g->str_offs_cap = cap;
    }
    kv->str_first = g->n_str_offs;
    for (uint64_t j = 0; j < n; j++) {
        uint64_t off, len;
        const uint64_t el = ps->pos;
        char what[48];
        snprintf(what, sizeof what, "array string %" PRIu64, j);
        if ((rc = read_str(ps, what, UINT64_MAX, &off, &len)) < 0)
            return rc;
        g->str_offs[g->n_str_offs++] = el;
    }
    return REALM_OK;
}

/* The value of kv, of type id `type`, at the cursor. */
static int parse_value(parser *ps, struct gguf_kv *kv, uint32_t type)
{
    kv->type = (realm_gguf_type)type;
    kv->arr_type = REALM_GGUF_TYPE_COUNT;
    switch (type) {
    case REALM_GGUF_STRING:
        return read_str(ps, "string value", UINT64_MAX, &kv->data_off, &kv->n);
    case REALM_GGUF_ARRAY:
        return parse_array(ps, kv);
    default: {
        const size_t sz = realm_gguf_type_size((realm_gguf_type)type);
        char what[32];
        snprintf(what, sizeof what, "a %s value", type_name_or_unknown(type));
        int rc = need(ps, sz, what);
        if (rc < 0)
            return rc;
        kv->data_off = ps->pos;
        ps->pos += sz;
        return REALM_OK;
    }
    }
}

/* general.alignment must be a non-zero power of two stored as uint32. */
static int check_alignment(parser *ps, const struct gguf_kv *kv)
{
    if (kv->type != REALM_GGUF_UINT32)
        return fail(ps, kv->raw_off - 4, REALM_ERR_FORMAT, "must be uint32, not %s",
                    type_name_or_unknown(kv->type));
    const uint32_t a = load_u32(ps->p + kv->data_off);
    if (!is_pow2(a))
        return fail(ps, kv->data_off, REALM_ERR_FORMAT,
                    "alignment %" PRIu32 " is not a power of two", a);
    ps->g->alignment = a;
    return REALM_OK;
}

/* Metadata entry i at the cursor. */
static int parse_kv(parser *ps, int64_t i)
{
    realm_gguf *g = ps->g;
    struct gguf_kv *kv = &g->kv[i];
    kv->file_off = ps->pos;
    snprintf(ps->ctx, sizeof ps->ctx, "metadata entry %" PRId64, i);
    int rc = read_name(ps, "metadata", "key", &g->keys, &kv->key_at);
    if (rc < 0)
        return rc;
    const uint64_t at = ps->pos;
    uint32_t type;
    if ((rc = read_u32(ps, "a value type", &type)) < 0)
        return rc;
    if (type >= REALM_GGUF_TYPE_COUNT)
        return fail(ps, at, REALM_ERR_FORMAT, "unknown value type id %" PRIu32, type);
    kv->raw_off = ps->pos;
    if ((rc = parse_value(ps, kv, type)) < 0)
        return rc;
    kv->raw_size = ps->pos - kv->raw_off;
    if (strcmp(g->keys.buf + kv->key_at, "general.alignment") == 0)
        return check_alignment(ps, kv);
    return REALM_OK;
}

/*
 * Tensor info i at the cursor: name, shape, type and offset, with the shape
 * checked (dims in 1..INT64_MAX, element count and byte size within 64 bits,
 * ne[0] a whole number of blocks) and the offset aligned. *name_at receives
 * the arena offset of its name.
 */
static int parse_tensor_info(parser *ps, int64_t i, uint64_t *name_at)
{
    realm_gguf *g = ps->g;
    realm_gguf_tensor *t = &g->tensors[i];
    snprintf(ps->ctx, sizeof ps->ctx, "tensor info %" PRId64, i);
    int rc = read_name(ps, "tensor", "name", &g->tensor_names, name_at);
    if (rc < 0)
        return rc;

    uint64_t at = ps->pos;
    if ((rc = read_u32(ps, "a dimension count", &t->n_dims)) < 0)
        return rc;
    if (t->n_dims < 1 || t->n_dims > REALM_GGUF_MAX_DIMS)
        return fail(ps, at, REALM_ERR_FORMAT, "dimension count %" PRIu32 " is not in 1..%d",
                    t->n_dims, REALM_GGUF_MAX_DIMS);
    const uint64_t dims_at = ps->pos;
    for (uint32_t d = 0; d < REALM_GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        at = ps->pos;
        if (d < t->n_dims && (rc = read_u64(ps, "a dimension", &ne)) < 0)
            return rc;
        if (ne == 0)
            return fail(ps, at, REALM_ERR_FORMAT, "dimension %" PRIu32 " is zero", d);
        if (ne > (uint64_t)INT64_MAX)
            return fail(ps, at, REALM_ERR_FORMAT,
                        "dimension %" PRIu32 " is %" PRIu64 ", above 2^63 - 1", d, ne);
        t->ne[d] = (int64_t)ne;
    }

    at = ps->pos;
    uint32_t type;
    if ((rc = read_u32(ps, "a tensor type", &type)) < 0)
        return rc;
    const realm_type_traits *tr = realm_type_get(type);
    if (tr == NULL)
        return fail(ps, at, REALM_ERR_UNSUPPORTED, "unknown tensor type id %" PRIu32, type);
    t->type = (realm_type)type;

    /* Element count: each partial product must stay within int64. */
    int64_t nel = t->ne[0];
    for (uint32_t d = 1; d < REALM_GGUF_MAX_DIMS; d++) {
        if (nel > INT64_MAX / t->ne[d])
            return fail(ps, dims_at, REALM_ERR_FORMAT,
                        "shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64
                        "] has more than 2^63 - 1 elements",
                        t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
        nel *= t->ne[d];
    }
    if (t->ne[0] % tr->block_size != 0)
        return fail(ps, dims_at, REALM_ERR_FORMAT,
                    "ne[0] = %" PRId64 " is not a multiple of the %s block size %" PRId64, t->ne[0],
                    tr->name, tr->block_size);
    const uint64_t blocks = (uint64_t)(t->ne[0] / tr->block_size);
    const uint64_t rows = (uint64_t)(nel / t->ne[0]);
    const uint64_t row = blocks * tr->type_size;
    if (blocks > UINT64_MAX / tr->type_size || row > UINT64_MAX / rows || row * rows > SIZE_MAX)
        return fail(ps, dims_at, REALM_ERR_FORMAT,
                    "size of %" PRId64 " %s elements overflows 64 bits", nel, tr->name);
    t->nbytes = row * rows;

    at = ps->pos;
    if ((rc = read_u64(ps, "a tensor data offset", &t->offset)) < 0)
        return rc;
    if (t->offset % g->alignment != 0)
        return fail(ps, at, REALM_ERR_FORMAT,
                    "data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                    t->offset, g->alignment);
    return REALM_OK;
}

/* The fixed header; on success the counts are bounded by the file size. */
static int parse_header(parser *ps, uint64_t *n_tensors, uint64_t *n_kv)
{
    if (ps->size < 4)
        return fail(ps, 0, REALM_ERR_FORMAT,
                    "file is %" PRIu64 " bytes, too small to be a GGUF file", ps->size);
    if (memcmp(ps->p, REALM_GGUF_MAGIC, 4) != 0)
        return fail(ps, 0, REALM_ERR_FORMAT,
                    "bad magic %02x %02x %02x %02x: not a GGUF file (expected \"GGUF\")", ps->p[0],
                    ps->p[1], ps->p[2], ps->p[3]);
    ps->pos = 4;
    int rc = read_u32(ps, "the version number", &ps->g->version);
    if (rc < 0)
        return rc;
    const uint32_t v = ps->g->version;
    if (v != 2 && v != 3) {
        const uint32_t sw = bswap_u32(v);
        if (sw >= 1 && sw <= 3)
            return fail(ps, 4, REALM_ERR_UNSUPPORTED,
                        "big-endian GGUF is not supported (version field 0x%08" PRIx32 ")", v);
        return fail(ps, 4, REALM_ERR_UNSUPPORTED,
                    "GGUF version %" PRIu32 " is not supported (only versions 2 and 3)", v);
    }
    if ((rc = read_u64(ps, "the tensor count", n_tensors)) < 0 ||
        (rc = read_u64(ps, "the metadata count", n_kv)) < 0)
        return rc;
    const uint64_t rest = left(ps);
    if (*n_tensors > rest / MIN_TENSOR_BYTES)
        return fail(ps, 8, REALM_ERR_FORMAT,
                    "tensor count %" PRIu64 " exceeds what the file can hold (%" PRIu64
                    " bytes after the header, at least %u per tensor)",
                    *n_tensors, rest, MIN_TENSOR_BYTES);
    if (*n_kv > rest / MIN_KV_BYTES)
        return fail(ps, 16, REALM_ERR_FORMAT,
                    "metadata count %" PRIu64 " exceeds what the file can hold (%" PRIu64
                    " bytes after the header, at least %u per entry)",
                    *n_kv, rest, MIN_KV_BYTES);
    if (*n_tensors * MIN_TENSOR_BYTES + *n_kv * MIN_KV_BYTES > rest)
        return fail(ps, 8, REALM_ERR_FORMAT,
                    "%" PRIu64 " tensors and %" PRIu64
                    " metadata entries exceed what the file can hold (%" PRIu64 " bytes left)",
                    *n_tensors, *n_kv, rest);
    return REALM_OK;
}

/* Index the keys once the key arena is final; duplicates are errors. */
static int index_keys(parser *ps)
{
    realm_gguf *g = ps->g;
    int rc = realm__strmap_init(&g->kv_index, (uint64_t)g->n_kv);
    if (rc < 0)
        return rc;
    for (int64_t i = 0; i < g->n_kv; i++) {
        struct gguf_kv *kv = &g->kv[i];
        kv->key = g->keys.buf + kv->key_at;
        const size_t len = strlen(kv->key);
        const int64_t prev =
            realm__strmap_put(&g->kv_index, g->keys.buf, kv->key_at, len, (int32_t)i);
        if (prev < 0)
            return (int)prev;
        if (prev != i) {
            char shown[SHOW_NAME_MAX + 4];
            ps->ctx[0] = '\0';
            return fail(ps, kv->file_off, REALM_ERR_FORMAT,
                        "duplicate metadata key '%s' (entries %" PRId64 " and %" PRId64 ")",
                        show_name(shown, (const uint8_t *)kv->key, len), prev, i);
        }
    }
    return REALM_OK;
}

/* Index the tensor names and check that every tensor's data is inside the
 * file; info_offs gives where each tensor info starts, for messages. */
static int check_tensors(parser *ps, const uint64_t *name_at, const uint64_t *info_offs)
{
    realm_gguf *g = ps->g;
    int rc = realm__strmap_init(&g->tensor_index, (uint64_t)g->n_tensors);
    if (rc < 0)
        return rc;
    ps->ctx[0] = '\0';
    for (int64_t i = 0; i < g->n_tensors; i++) {
        realm_gguf_tensor *t = &g->tensors[i];
        t->name = g->tensor_names.buf + name_at[i];
        char shown[SHOW_NAME_MAX + 4];
        const int64_t prev = realm__strmap_put(&g->tensor_index, g->tensor_names.buf, name_at[i],
                                               strlen(t->name), (int32_t)i);
        if (prev < 0)
            return (int)prev;
        if (prev != i)
            return fail(ps, info_offs[i], REALM_ERR_FORMAT,
                        "duplicate tensor name '%s' (tensors %" PRId64 " and %" PRId64 ")",
                        show_name(shown, (const uint8_t *)t->name, strlen(t->name)), prev, i);
        if (t->offset > UINT64_MAX - g->data_offset ||
            t->nbytes > UINT64_MAX - g->data_offset - t->offset)
            return realm__error(REALM_ERR_FORMAT,
                                "tensor '%s': data offset %" PRIu64 " + size %" PRIu64
                                " overflows (tensor info at offset %" PRIu64 ")",
                                show_name(shown, (const uint8_t *)t->name, strlen(t->name)),
                                t->offset, t->nbytes, info_offs[i]);
        const uint64_t start = g->data_offset + t->offset, end = start + t->nbytes;
        if (end > g->size)
            return realm__error(REALM_ERR_FORMAT,
                                "tensor '%s': data [%" PRIu64 ", %" PRIu64
                                ") ends past end of file (%" PRIu64 " bytes)",
                                show_name(shown, (const uint8_t *)t->name, strlen(t->name)), start,
                                end, g->size);
        t->data = g->base + start;
    }
    return REALM_OK;
}

/* Parse and validate the whole image into g (already zeroed, base/size set). */
static int parse(realm_gguf *g)
{
    parser ps = {.g = g, .p = g->base, .size = g->size, .pos = 0, .ctx = ""};
    uint64_t n_tensors, n_kv;
    int rc = parse_header(&ps, &n_tensors, &n_kv);
    if (rc < 0)
        return rc;
    g->alignment = REALM_GGUF_DEFAULT_ALIGNMENT;

    /* Counts are bounded by the file size now, so these are too. */
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    uint64_t *aux = calloc(n_tensors ? 2 * n_tensors : 1, sizeof *aux);
    if (g->kv == NULL || g->tensors == NULL || aux == NULL) {
        free(aux);
        return realm__error(REALM_ERR_NOMEM,
                            "out of memory for %" PRIu64 " metadata entries and %" PRIu64
                            " tensors",
                            n_kv, n_tensors);
    }
    uint64_t *name_at = aux, *info_offs = aux + n_tensors;

    g->n_kv = (int64_t)n_kv;
    for (int64_t i = 0; i < g->n_kv; i++)
        if ((rc = parse_kv(&ps, i)) < 0)
            goto out;
    if ((rc = index_keys(&ps)) < 0)
        goto out;

    g->n_tensors = (int64_t)n_tensors;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        info_offs[i] = ps.pos;
        if ((rc = parse_tensor_info(&ps, i, &name_at[i])) < 0)
            goto out;
    }

    /* The data section starts at the next multiple of the alignment. It may
     * lie past the end of a file without tensors. */
    const uint64_t pad = (g->alignment - ps.pos % g->alignment) % g->alignment;
    g->data_offset = ps.pos + pad;
    rc = check_tensors(&ps, name_at, info_offs);
out:
    free(aux);
    return rc;
}

/* ---- open / close -------------------------------------------------------- */

/* Build a handle over [base, base + size); map is unmapped by close. */
static int open_image(const void *base, uint64_t size, void *map, size_t map_size, realm_gguf **out)
{
    realm_gguf *g = calloc(1, sizeof *g);
    if (g == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    static const uint8_t empty[1];
    g->base = base ? base : empty;
    g->size = size;
    g->map = map;
    g->map_size = map_size;
    int rc = parse(g);
    if (rc < 0) {
        g->map = NULL; /* the caller owns the mapping until success */
        realm_gguf_close(g);
        return rc;
    }
    *out = g;
    return REALM_OK;
}

int realm_gguf_open_memory(const void *data, size_t size, realm_gguf **out)
{
    if (out == NULL)
        return realm__error(REALM_ERR_INVAL, "realm_gguf_open_memory: out is NULL");
    *out = NULL;
    if (data == NULL && size != 0)
        return realm__error(REALM_ERR_INVAL, "realm_gguf_open_memory: data is NULL");
    return open_image(data, size, NULL, 0, out);
}

int realm_gguf_open(const char *path, realm_gguf **out)
{
    if (out == NULL || path == NULL)
        return realm__error(REALM_ERR_INVAL, "realm_gguf_open: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return realm__error(REALM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return realm__error(REALM_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return realm__error(REALM_ERR_IO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return realm__error(REALM_ERR_UNSUPPORTED, "'%s' is too large to map", path);
    }
    const size_t size = (size_t)st.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return realm__error(REALM_ERR_IO, "cannot map '%s': %s", path, strerror(e));
        }
    }
    close(fd);
    int rc = open_image(map, size, map, size, out);
    if (rc < 0) {
        if (map)
            munmap(map, size);
        /* Prefix the parser's message with the file name. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", realm_last_error());
        return realm__error(rc, "%s: %s", path, msg);
    }
    return REALM_OK;
}

void realm_gguf_close(realm_gguf *g)
{
    if (g == NULL)
        return;
    if (g->map)
        munmap(g->map, g->map_size);
    free(g->kv);
    free(g->keys.buf);
    free(g->str_offs);
    realm__strmap_free(&g->kv_index);
    free(g->tensors);
    free(g->tensor_names.buf);
    realm__strmap_free(&g->tensor_index);
    free(g);
}

/* ---- accessors ----------------------------------------------------------- */

void realm__gguf_mapping(const realm_gguf *g, void **base, size_t *size)
{
    *base = g->map;
    *size = g->map ? g->map_size : 0;
}

uint32_t realm_gguf_version(const realm_gguf *g)
{
    return g->version;
}

uint64_t realm_gguf_alignment(const realm_gguf *g)
{
    return g->alignment;
}

uint64_t realm_gguf_data_offset(const realm_gguf *g)
{
    return g->data_offset;
}

uint64_t realm_gguf_file_size(const realm_gguf *g)
{
    return g->size;
}

int64_t realm_gguf_n_kv(const realm_gguf *g)
{
    return g->n_kv;
}

int64_t realm_gguf_find_kv(const realm_gguf *g, const char *key)
{
    if (key == NULL)
        return -1;
    return realm__strmap_find(&g->kv_index, g->keys.buf, key, strlen(key));
}

static const struct gguf_kv *kv_at(const realm_gguf *g, int64_t i)
{
    return (i >= 0 && i < g->n_kv) ? &g->kv[i] : NULL;
}

const char *realm_gguf_kv_key(const realm_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return kv ? kv->key : NULL;
}

realm_gguf_type realm_gguf_kv_type(const realm_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return kv ? kv->type : REALM_GGUF_TYPE_COUNT;
}

realm_gguf_type realm_gguf_kv_arr_type(const realm_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return kv ? kv->arr_type : REALM_GGUF_TYPE_COUNT;
}

uint64_t realm_gguf_kv_arr_n(const realm_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return (kv && kv->type == REALM_GGUF_ARRAY) ? kv->n : 0;
}

const void *realm_gguf_kv_scalar(const realm_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    if (kv == NULL || realm_gguf_type_size(kv->type) == 0)
        return NULL;
    return g->base + kv->data_off;
}

realm_gguf_str realm_gguf_kv_str(const realm_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    if (kv == NULL || kv->type != REALM_GGUF_STRING)
        return (realm_gguf_str){NULL, 0};
    return (realm_gguf_str){(const char *)g->base + kv->data_off, kv->n};
}

const void *realm_gguf_kv_arr_data(const realm_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    if (kv == NULL || kv->type != REALM_GGUF_ARRAY || kv->arr_type == REALM_GGUF_STRING)
        return NULL;
    return g->base + kv->data_off;
}

realm_gguf_str realm_gguf_kv_arr_str(const realm_gguf *g, int64_t i, uint64_t j)
{
    const struct gguf_kv *kv = kv_at(g, i);
    if (kv == NULL || kv->type != REALM_GGUF_ARRAY || kv->arr_type != REALM_GGUF_STRING ||
        j >= kv->n)
        return (realm_gguf_str){NULL, 0};
    const uint64_t off = g->str_offs[kv->str_first + j];
    return (realm_gguf_str){(const char *)g->base + off + 8, load_u64(g->base + off)};
}

void realm__gguf_kv_raw(const realm_gguf *g, int64_t i, const uint8_t **data, uint64_t *size)
{
    const struct gguf_kv *kv = kv_at(g, i);
    *data = kv ? g->base + kv->raw_off : NULL;
    *size = kv ? kv->raw_size : 0;
}

/* ---- typed getters ------------------------------------------------------- */

/* "uint32", or "array of string" for an array. */
static const char *describe(const struct gguf_kv *kv, char *buf, size_t cap)
{
    if (kv->type != REALM_GGUF_ARRAY)
        return realm_gguf_type_name(kv->type);
    snprintf(buf, cap, "array of %s", realm_gguf_type_name(kv->arr_type));
    return buf;
}

/* Find key; REALM_ERR_NOTFOUND if absent. */
static int lookup(const realm_gguf *g, const char *key, const struct gguf_kv **out)
{
    if (g == NULL || key == NULL)
        return realm__error(REALM_ERR_INVAL, "realm_gguf_get: NULL argument");
    const int64_t i = realm__strmap_find(&g->kv_index, g->keys.buf, key, strlen(key));
    if (i < 0)
        return realm__error(REALM_ERR_NOTFOUND, "metadata key '%s' not found", key);
    *out = &g->kv[i];
    return REALM_OK;
}

/* Copy the scalar under key into out if its type is exactly want. */
static int get_scalar(const realm_gguf *g, const char *key, realm_gguf_type want, void *out)
{
    const struct gguf_kv *kv;
    int rc = lookup(g, key, &kv);
    if (rc < 0)
        return rc;
    if (kv->type != want) {
        char buf[32];
        return realm__error(REALM_ERR_TYPE, "metadata '%s' is %s, not %s", key,
                            describe(kv, buf, sizeof buf), realm_gguf_type_name(want));
    }
    const size_t sz = realm_gguf_type_size(want);
    uint64_t v = 0;
    for (size_t b = 0; b < sz; b++) /* little-endian bytes -> host order */
        v |= (uint64_t)g->base[kv->data_off + b] << (8 * b);
    switch (sz) {
    case 1: {
        uint8_t x = (uint8_t)v;
        memcpy(out, &x, 1);
        break;
    }
    case 2: {
        uint16_t x = (uint16_t)v;
        memcpy(out, &x, 2);
        break;
    }
    case 4: {
        uint32_t x = (uint32_t)v;
        memcpy(out, &x, 4);
        break;
    }
    default:
        memcpy(out, &v, 8);
        break;
    }
    return REALM_OK;
}

int realm_gguf_get_u8(const realm_gguf *g, const char *key, uint8_t *out)
{
    return get_scalar(g, key, REALM_GGUF_UINT8, out);
}

int realm_gguf_get_i8(const realm_gguf *g, const char *key, int8_t *out)
{
    return get_scalar(g, key, REALM_GGUF_INT8, out);
}

int realm_gguf_get_u16(const realm_gguf *g, const char *key, uint16_t *out)
{
    return get_scalar(g, key, REALM_GGUF_UINT16, out);
}

int realm_gguf_get_i16(const realm_gguf *g, const char *key, int16_t *out)
{
    return get_scalar(g, key, REALM_GGUF_INT16, out);
}

int realm_gguf_get_u32(const realm_gguf *g, const char *key, uint32_t *out)
{
    return get_scalar(g, key, REALM_GGUF_UINT32, out);
}

int realm_gguf_get_i32(const realm_gguf *g, const char *key, int32_t *out)
{
    return get_scalar(g, key, REALM_GGUF_INT32, out);
}

int realm_gguf_get_u64(const realm_gguf *g, const char *key, uint64_t *out)
{
    return get_scalar(g, key, REALM_GGUF_UINT64, out);
}

int realm_gguf_get_i64(const realm_gguf *g, const char *key, int64_t *out)
{
    return get_scalar(g, key, REALM_GGUF_INT64, out);
}

int realm_gguf_get_f32(const realm_gguf *g, const char *key, float *out)
{
    return get_scalar(g, key, REALM_GGUF_FLOAT32, out);
}

int realm_gguf_get_f64(const realm_gguf *g, const char *key, double *out)
{
    return get_scalar(g, key, REALM_GGUF_FLOAT64, out);
}

int realm_gguf_get_bool(const realm_gguf *g, const char *key, bool *out)
{
    uint8_t b;
    int rc = get_scalar(g, key, REALM_GGUF_BOOL, &b);
    if (rc == REALM_OK)
        *out = b != 0;
    return rc;
}

int realm_gguf_get_str(const realm_gguf *g, const char *key, realm_gguf_str *out)
{
    const struct gguf_kv *kv;
    int rc = lookup(g, key, &kv);
    if (rc < 0)
        return rc;
    if (kv->type != REALM_GGUF_STRING) {
        char buf[32];
        return realm__error(REALM_ERR_TYPE, "metadata '%s' is %s, not string", key,
                            describe(kv, buf, sizeof buf));
    }
    *out = (realm_gguf_str){(const char *)g->base + kv->data_off, kv->n};
    return REALM_OK;
}

/*
 * Any integer type, widened to int64; a uint64 above INT64_MAX is
 * REALM_ERR_RANGE. Bool and floats are REALM_ERR_TYPE.
 */
int realm_gguf_get_int(const realm_gguf *g, const char *key, int64_t *out)
{
    const struct gguf_kv *kv;
    int rc = lookup(g, key, &kv);
    if (rc < 0)
        return rc;
    realm_gguf_value v;
    switch (kv->type) {
    case REALM_GGUF_UINT8:
    case REALM_GGUF_INT8:
    case REALM_GGUF_UINT16:
    case REALM_GGUF_INT16:
    case REALM_GGUF_UINT32:
    case REALM_GGUF_INT32:
    case REALM_GGUF_UINT64:
    case REALM_GGUF_INT64:
        get_scalar(g, key, kv->type, &v);
        break;
    default: {
        char buf[32];
        return realm__error(REALM_ERR_TYPE, "metadata '%s' is %s, not an integer", key,
                            describe(kv, buf, sizeof buf));
    }
    }
    switch (kv->type) {
    case REALM_GGUF_UINT8:
        *out = v.u8;
        break;
    case REALM_GGUF_INT8:
        *out = v.i8;
        break;
    case REALM_GGUF_UINT16:
        *out = v.u16;
        break;
    case REALM_GGUF_INT16:
        *out = v.i16;
        break;
    case REALM_GGUF_UINT32:
        *out = v.u32;
        break;
    case REALM_GGUF_INT32:
        *out = v.i32;
        break;
    case REALM_GGUF_UINT64:
        if (v.u64 > (uint64_t)INT64_MAX)
            return realm__error(REALM_ERR_RANGE,
                                "metadata '%s' = %" PRIu64 " does not fit in int64", key, v.u64);
        *out = (int64_t)v.u64;
        break;
    default:
        *out = v.i64;
        break;
    }
    return REALM_OK;
}

int realm_gguf_get_arr(const realm_gguf *g, const char *key, realm_gguf_type elem_type,
                       int64_t *kv_index, uint64_t *n)
{
    const struct gguf_kv *kv;
    int rc = lookup(g, key, &kv);
    if (rc < 0)
        return rc;
    if (kv->type != REALM_GGUF_ARRAY || kv->arr_type != elem_type) {
        char buf[32];
        return realm__error(REALM_ERR_TYPE, "metadata '%s' is %s, not array of %s", key,
                            describe(kv, buf, sizeof buf), realm_gguf_type_name(elem_type));
    }
    if (kv_index)
        *kv_index = kv - g->kv;
    if (n)
        *n = kv->n;
    return REALM_OK;
}

/* ---- tensors ------------------------------------------------------------- */

int64_t realm_gguf_n_tensors(const realm_gguf *g)
{
    return g->n_tensors;
}

const realm_gguf_tensor *realm_gguf_tensor_at(const realm_gguf *g, int64_t i)
{
    return (i >= 0 && i < g->n_tensors) ? &g->tensors[i] : NULL;
}

const realm_gguf_tensor *realm_gguf_find_tensor(const realm_gguf *g, const char *name)
{
    if (name == NULL)
        return NULL;
    const int64_t i = realm__strmap_find(&g->tensor_index, g->tensor_names.buf, name, strlen(name));
    return i < 0 ? NULL : &g->tensors[i];
}

int64_t realm_gguf_tensor_nelements(const realm_gguf_tensor *t)
{
    int64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims && d < REALM_GGUF_MAX_DIMS; d++)
        n *= t->ne[d];
    return n;
}

/* ---- split models -------------------------------------------------------- */

/* Integer split key in [min, max]: REALM_ERR_NOTFOUND (no message) when
 * absent, REALM_ERR_FORMAT when not an integer or out of range. */
static int get_split_key(const realm_gguf *g, const char *key, int64_t min, int64_t max,
                         int64_t *out)
{
    if (realm_gguf_find_kv(g, key) < 0)
        return REALM_ERR_NOTFOUND;
    int64_t v;
    if (realm_gguf_get_int(g, key, &v) < 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", realm_last_error());
        return realm__error(REALM_ERR_FORMAT, "%s", msg);
    }
    if (v < min || v > max)
        return realm__error(REALM_ERR_FORMAT,
                            "metadata '%s' = %" PRId64 " is out of range %" PRId64 "..%" PRId64,
                            key, v, min, max);
    *out = v;
    return REALM_OK;
}

int realm_gguf_split_info(const realm_gguf *g, realm_gguf_split *out)
{
    int64_t count = 1, no = -1, n = -1;
    int rc = get_split_key(g, REALM_GGUF_KEY_SPLIT_COUNT, 0, UINT16_MAX, &count);
    if (rc < 0 && rc != REALM_ERR_NOTFOUND)
        return rc;
    if (count < 1)
        count = 1;
    rc = get_split_key(g, REALM_GGUF_KEY_SPLIT_NO, 0, count - 1, &no);
    if (rc < 0 && rc != REALM_ERR_NOTFOUND)
        return rc;
    if (rc == REALM_ERR_NOTFOUND && count > 1)
        return realm__error(REALM_ERR_FORMAT,
                            "metadata '" REALM_GGUF_KEY_SPLIT_COUNT "' = %" PRId64
                            " but '" REALM_GGUF_KEY_SPLIT_NO "' is missing",
                            count);
    rc = get_split_key(g, REALM_GGUF_KEY_SPLIT_TENSORS_COUNT, 0, INT64_MAX, &n);
    if (rc < 0 && rc != REALM_ERR_NOTFOUND)
        return rc;
    out->no = no < 0 ? 0 : (int32_t)no;
    out->count = (int32_t)count;
    out->n_tensors = n;
    return REALM_OK;
}

/* "-NNNNN-of-MMMMM.gguf", the end of every part's name. */
#define SPLIT_SUFFIX_LEN 20u

/* The five decimal digits at s, or -1. */
static int32_t parse_5digits(const char *s)
{
    int32_t v = 0;
    for (int i = 0; i < 5; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int realm_gguf_split_parse_path(const char *path, int32_t *no, int32_t *count)
{
    const size_t len = path ? strlen(path) : 0;
    if (len < SPLIT_SUFFIX_LEN)
        return REALM_ERR_NOTFOUND;
    const char *s = path + len - SPLIT_SUFFIX_LEN;
    if (s[0] != '-' || memcmp(s + 6, "-of-", 4) != 0 || memcmp(s + 15, ".gguf", 5) != 0)
        return REALM_ERR_NOTFOUND;
    const int32_t i = parse_5digits(s + 1), n = parse_5digits(s + 10);
    if (i < 1 || n < 1 || i > n)
        return REALM_ERR_NOTFOUND;
    *no = i - 1;
    *count = n;
    return REALM_OK;
}

int realm_gguf_split_path(const char *path, int32_t no, char *buf, size_t cap)
{
    int32_t self, count;
    if (realm_gguf_split_parse_path(path, &self, &count) < 0)
        return realm__error(REALM_ERR_INVAL,
                            "'%s' is not named like a part of a split model "
                            "(NAME-00001-of-00003.gguf)",
                            path ? path : "(null)");
    if (no < 0 || no >= count)
        return realm__error(REALM_ERR_INVAL, "'%s': there is no part %d of %d", path, no + 1,
                            count);
    const size_t len = strlen(path);
    if (cap <= len)
        return realm__error(REALM_ERR_RANGE, "buffer of %zu bytes is too small for '%s'", cap,
                            path);
    /* Both numbers are at most 99999 (parsed from five digits): 20 bytes. */
    char tail[48];
    snprintf(tail, sizeof tail, "-%05d-of-%05d.gguf", (int)no + 1, (int)count);
    memcpy(buf, path, len - SPLIT_SUFFIX_LEN);
    memcpy(buf + len - SPLIT_SUFFIX_LEN, tail, SPLIT_SUFFIX_LEN + 1);
    return REALM_OK;
}
