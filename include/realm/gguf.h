/*
 * realm/gguf.h — read and write GGUF files (versions 2 and 3, little-endian).
 *
 * Reading memory-maps the file and validates everything before any accessor
 * sees it: counts, lengths and offsets are overflow-checked, every tensor's
 * data lies inside the file at the declared alignment, names are unique, dims
 * non-zero, and sizes agree with the tensor type's block size. A bad file is
 * an error whose message names the problem and the byte offset, e.g.
 *
 *     tensor 'blk.3.attn_q.weight': data [123456, 9999999) ends past end of
 *     file (4096000 bytes)
 *
 * Example:
 *
 *     realm_gguf *g;
 *     if (realm_gguf_open("model.gguf", &g) < 0) { puts(realm_last_error()); ... }
 *     uint32_t n_layer;
 *     if (realm_gguf_get_u32(g, "llama.block_count", &n_layer) < 0) ...
 *     const realm_gguf_tensor *t = realm_gguf_find_tensor(g, "output.weight");
 *     // t->data points into the mapping; valid until realm_gguf_close(g)
 *     realm_gguf_close(g);
 *
 * Ownership: every pointer returned by a reader accessor (keys, strings, array
 * data, tensor infos and data) points into memory owned by the realm_gguf and
 * is valid until realm_gguf_close. String values are NOT NUL-terminated: use
 * the length in realm_gguf_str. Array data is raw little-endian file bytes and
 * may be unaligned: read elements with memcpy.
 *
 * Thread safety: a realm_gguf is immutable after open; any number of threads
 * may read it at once. A writer belongs to one thread.
 */
#ifndef REALM_GGUF_H
#define REALM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "realm/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

#define REALM_GGUF_MAGIC             "GGUF"
#define REALM_GGUF_DEFAULT_ALIGNMENT 32
#define REALM_GGUF_MAX_DIMS          4

/* Metadata value types, as numbered in the file format. */
typedef enum realm_gguf_type {
    REALM_GGUF_UINT8 = 0,
    REALM_GGUF_INT8 = 1,
    REALM_GGUF_UINT16 = 2,
    REALM_GGUF_INT16 = 3,
    REALM_GGUF_UINT32 = 4,
    REALM_GGUF_INT32 = 5,
    REALM_GGUF_FLOAT32 = 6,
    REALM_GGUF_BOOL = 7,
    REALM_GGUF_STRING = 8,
    REALM_GGUF_ARRAY = 9,
    REALM_GGUF_UINT64 = 10,
    REALM_GGUF_INT64 = 11,
    REALM_GGUF_FLOAT64 = 12,
    REALM_GGUF_TYPE_COUNT
} realm_gguf_type;

/* "uint32", "string", "array", ...; "unknown" for an invalid id. */
const char *realm_gguf_type_name(realm_gguf_type t);
/* Bytes of one scalar value of type t (0 for STRING, ARRAY and invalid ids). */
size_t realm_gguf_type_size(realm_gguf_type t);

/* A string inside the file: not NUL-terminated. */
typedef struct realm_gguf_str {
    const char *data;
    uint64_t len;
} realm_gguf_str;

/* One value of any scalar type (or a string); a scalar's little-endian
 * bytes copied to the start give its member. */
typedef union realm_gguf_value {
    uint8_t u8;
    int8_t i8;
    uint16_t u16;
    int16_t i16;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool b;
    realm_gguf_str s;
} realm_gguf_value;

typedef struct realm_gguf_tensor {
    const char *name;                /* NUL-terminated */
    uint32_t n_dims;                 /* 1..4 */
    int64_t ne[REALM_GGUF_MAX_DIMS]; /* ne[0] is contiguous; unused dims are 1 */
    realm_type type;
    uint64_t offset; /* relative to the start of the data section */
    uint64_t nbytes;
    const void *data; /* inside the mapping, aligned as the file says */
} realm_gguf_tensor;

typedef struct realm_gguf realm_gguf;

/* ---- reading ----------------------------------------------------------- */

/*
 * Map and validate the file at path. On failure *out is NULL and the code is
 * REALM_ERR_IO (cannot open or map), REALM_ERR_FORMAT (malformed),
 * REALM_ERR_UNSUPPORTED (big-endian, a version other than 2 or 3, a nested
 * array, an unknown tensor type id) or REALM_ERR_NOMEM.
 */
int realm_gguf_open(const char *path, realm_gguf **out);
/* Validate a GGUF image already in memory; it is borrowed, not copied, and
 * must outlive the returned handle. */
int realm_gguf_open_memory(const void *data, size_t size, realm_gguf **out);
void realm_gguf_close(realm_gguf *g);

uint32_t realm_gguf_version(const realm_gguf *g);
uint64_t realm_gguf_alignment(const realm_gguf *g);
/* Byte offset of the tensor data section in the file. */
uint64_t realm_gguf_data_offset(const realm_gguf *g);
uint64_t realm_gguf_file_size(const realm_gguf *g);

int64_t realm_gguf_n_kv(const realm_gguf *g);
/* Index of key, or -1. */
int64_t realm_gguf_find_kv(const realm_gguf *g, const char *key);
/* For 0 <= i < n_kv: the key (NUL-terminated) and its value type. */
const char *realm_gguf_kv_key(const realm_gguf *g, int64_t i);
realm_gguf_type realm_gguf_kv_type(const realm_gguf *g, int64_t i);
/* For an ARRAY value: element type and count. */
realm_gguf_type realm_gguf_kv_arr_type(const realm_gguf *g, int64_t i);
uint64_t realm_gguf_kv_arr_n(const realm_gguf *g, int64_t i);
/* For a scalar value: pointer to its little-endian bytes (unaligned). */
const void *realm_gguf_kv_scalar(const realm_gguf *g, int64_t i);
/* For a STRING value. */
realm_gguf_str realm_gguf_kv_str(const realm_gguf *g, int64_t i);
/* For an ARRAY of a scalar type: the packed elements (unaligned). */
const void *realm_gguf_kv_arr_data(const realm_gguf *g, int64_t i);
/* For an ARRAY of STRING: element j. */
realm_gguf_str realm_gguf_kv_arr_str(const realm_gguf *g, int64_t i, uint64_t j);

/*
 * Typed getters by key. Each returns REALM_OK, REALM_ERR_NOTFOUND if the key
 * is absent, or REALM_ERR_TYPE if it holds another type (the message names
 * both types). No conversion is done, except by realm_gguf_get_int, which
 * accepts any integer type whose value fits in int64_t.
 */
int realm_gguf_get_u8(const realm_gguf *g, const char *key, uint8_t *out);
int realm_gguf_get_i8(const realm_gguf *g, const char *key, int8_t *out);
int realm_gguf_get_u16(const realm_gguf *g, const char *key, uint16_t *out);
int realm_gguf_get_i16(const realm_gguf *g, const char *key, int16_t *out);
int realm_gguf_get_u32(const realm_gguf *g, const char *key, uint32_t *out);
int realm_gguf_get_i32(const realm_gguf *g, const char *key, int32_t *out);
int realm_gguf_get_u64(const realm_gguf *g, const char *key, uint64_t *out);
int realm_gguf_get_i64(const realm_gguf *g, const char *key, int64_t *out);
int realm_gguf_get_f32(const realm_gguf *g, const char *key, float *out);
int realm_gguf_get_f64(const realm_gguf *g, const char *key, double *out);
int realm_gguf_get_bool(const realm_gguf *g, const char *key, bool *out);
int realm_gguf_get_str(const realm_gguf *g, const char *key, realm_gguf_str *out);
int realm_gguf_get_int(const realm_gguf *g, const char *key, int64_t *out);
/* An array: REALM_ERR_TYPE unless the key holds an ARRAY of elem_type. On
 * success *kv_index is the key's index for the kv_arr_* accessors. */
int realm_gguf_get_arr(const realm_gguf *g, const char *key, realm_gguf_type elem_type,
                       int64_t *kv_index, uint64_t *n);

int64_t realm_gguf_n_tensors(const realm_gguf *g);
const realm_gguf_tensor *realm_gguf_tensor_at(const realm_gguf *g, int64_t i);
/* NULL if there is no tensor of that name. */
const realm_gguf_tensor *realm_gguf_find_tensor(const realm_gguf *g, const char *name);
/* Product of ne[0..n_dims). */
int64_t realm_gguf_tensor_nelements(const realm_gguf_tensor *t);

/* ---- split models ------------------------------------------------------ */

/*
 * llama.cpp's gguf-split writes one model as N complete GGUF files named
 * NAME-00001-of-0000N.gguf ... NAME-0000N-of-0000N.gguf. The first holds all
 * the metadata; every part holds split.no (u16, its 0-based place),
 * split.count (u16, N) and split.tensors.count (i32, the tensors of all
 * parts), and each tensor lives, with its data, in exactly one part.
 * realm_model_load (realm/model.h) loads such a model from any part's path;
 * these helpers read the keys and the file names.
 */
#define REALM_GGUF_KEY_SPLIT_NO            "split.no"
#define REALM_GGUF_KEY_SPLIT_COUNT         "split.count"
#define REALM_GGUF_KEY_SPLIT_TENSORS_COUNT "split.tensors.count"

typedef struct realm_gguf_split {
    int32_t no;        /* 0-based place of this part: 0 .. count-1 */
    int32_t count;     /* parts of the model; 1 for a file that is not split */
    int64_t n_tensors; /* split.tensors.count, or -1 when absent */
} realm_gguf_split;

/*
 * The split keys of g, of any integer type. Without split.count, or with
 * split.count 0 or 1, the file is the whole model: {0, 1, n_tensors}.
 * REALM_ERR_FORMAT (naming the key) if a key is not an integer or out of
 * range (count <= 65535, 0 <= no < count, n_tensors >= 0), or split.no is
 * missing when split.count > 1.
 */
int realm_gguf_split_info(const realm_gguf *g, realm_gguf_split *out);

/*
 * Parse a part's file name, PREFIX-NNNNN-of-MMMMM.gguf with exactly five
 * digits in each number and 1 <= NNNNN <= MMMMM: *no = NNNNN - 1 and
 * *count = MMMMM. REALM_ERR_NOTFOUND (no message) for any other name.
 */
int realm_gguf_split_parse_path(const char *path, int32_t *no, int32_t *count);

/*
 * The path of part `no` (0-based) of the split model that `path` is a part
 * of, by the name pattern above: same directory, prefix and count. It is as
 * long as path, and written NUL-terminated to buf (cap bytes).
 * REALM_ERR_INVAL if path is not named like a part or no is not below its
 * count; REALM_ERR_RANGE if buf is too small.
 */
int realm_gguf_split_path(const char *path, int32_t no, char *buf, size_t cap);

/* ---- writing ----------------------------------------------------------- */

/*
 * A writer collects metadata and tensor infos, then writes the file in one
 * pass: header, metadata, tensor infos, padding, tensor data (each tensor at
 * a multiple of general.alignment, 32 unless that key is set to a power of
 * two). Keys keep insertion order; setting an existing key replaces its
 * value in place. Strings and arrays are copied into the writer; tensor data
 * pointers are borrowed until the write.
 */
typedef struct realm_gguf_writer realm_gguf_writer;

int realm_gguf_writer_new(realm_gguf_writer **out);
void realm_gguf_writer_free(realm_gguf_writer *w);

/* A scalar of type t (not STRING or ARRAY) from its bytes. */
int realm_gguf_set_scalar(realm_gguf_writer *w, const char *key, realm_gguf_type t,
                          const void *value);
int realm_gguf_set_u32(realm_gguf_writer *w, const char *key, uint32_t v);
int realm_gguf_set_i32(realm_gguf_writer *w, const char *key, int32_t v);
int realm_gguf_set_u64(realm_gguf_writer *w, const char *key, uint64_t v);
int realm_gguf_set_f32(realm_gguf_writer *w, const char *key, float v);
int realm_gguf_set_bool(realm_gguf_writer *w, const char *key, bool v);
int realm_gguf_set_str(realm_gguf_writer *w, const char *key, const char *s, uint64_t len);
/* An array of a scalar type: n packed little-endian elements. */
int realm_gguf_set_arr(realm_gguf_writer *w, const char *key, realm_gguf_type elem_type,
                       const void *data, uint64_t n);
int realm_gguf_set_arr_str(realm_gguf_writer *w, const char *key, const realm_gguf_str *strs,
                           uint64_t n);
/* Copy metadata entry i of g (any type) under the same key. */
int realm_gguf_copy_kv(realm_gguf_writer *w, const realm_gguf *g, int64_t i);
/* Remove a key; REALM_ERR_NOTFOUND if absent. */
int realm_gguf_remove_kv(realm_gguf_writer *w, const char *key);

/*
 * Add a tensor. ne[0] must be a multiple of the type's block size. data is
 * borrowed (realm_row_size bytes per row) or NULL when the data will be
 * streamed with realm_gguf_writer_put_tensor. Duplicate names are an error.
 */
int realm_gguf_add_tensor(realm_gguf_writer *w, const char *name, uint32_t n_dims,
                          const int64_t *ne, realm_type type, const void *data);

/* Write the whole file; every tensor must have data. Writes path directly;
 * on failure a partly written regular file is removed. */
int realm_gguf_writer_write(realm_gguf_writer *w, const char *path);

/*
 * Streaming: begin writes everything before the tensor data; put_tensor
 * writes the next tensor's bytes (in add order, exactly its size); end checks
 * that all tensors were written and flushes. The FILE stays the caller's.
 * An I/O error (REALM_ERR_IO) abandons the write: later put_tensor and end
 * calls return REALM_ERR_INVAL until the next begin.
 */
int realm_gguf_writer_begin(realm_gguf_writer *w, FILE *f);
int realm_gguf_writer_put_tensor(realm_gguf_writer *w, const void *data, uint64_t nbytes);
int realm_gguf_writer_end(realm_gguf_writer *w);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
