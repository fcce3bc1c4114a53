/*
 * Internals shared by the GGUF reader (gguf.c) and writer (gguf_write.c):
 * format limits, the name -> index hash table, and raw access to a reader's
 * metadata values so the writer can copy them without re-encoding.
 */
#ifndef REALM_GGUF_INTERNAL_H
#define REALM_GGUF_INTERNAL_H

#include <stdint.h>

#include "realm/gguf.h"

/* Longest key or tensor name accepted (bytes, excluding the terminator). */
#define REALM__GGUF_MAX_NAME 65535u
/* Fixed header: magic, version, tensor count, metadata count. */
#define REALM__GGUF_HEADER_SIZE 24u

/*
 * Open-addressing hash table mapping NUL-terminated names to indexes. The
 * table borrows the name pointers: they must stay valid while it is used.
 * Load is kept at most one half, so lookups are short; the hash is seeded
 * per table so a crafted file cannot choose its collisions in advance.
 */
typedef struct realm__name_slot {
    const char *name; /* NULL: empty slot */
    uint64_t hash;
    int64_t idx;
} realm__name_slot;

typedef struct realm__name_index {
    realm__name_slot *slots;
    uint64_t cap; /* power of two, or 0 before the first insert */
    uint64_t count;
    uint64_t seed;
} realm__name_index;

/* Make room for n names in total without rehashing. REALM_ERR_NOMEM on failure. */
int realm__index_reserve(realm__name_index *ix, uint64_t n);
/* Index stored for name, or -1. */
int64_t realm__index_find(const realm__name_index *ix, const char *name);
/* Insert name -> idx. REALM_ERR_EXISTS (no message set, *prev = its index)
 * if the name is already present; REALM_ERR_NOMEM if growing fails. */
int realm__index_put(realm__name_index *ix, const char *name, int64_t idx, int64_t *prev);
void realm__index_clear(realm__name_index *ix);
void realm__index_free(realm__name_index *ix);

/* The encoded value of metadata entry i exactly as stored in the file,
 * after its type id: the bytes a writer emits to reproduce it. */
void realm__gguf_kv_raw(const realm_gguf *g, int64_t i, const uint8_t **data, uint64_t *size);

#endif
