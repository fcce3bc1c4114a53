/*
 * Internals shared by the GGUF reader (gguf.c) and writer (gguf_write.c):
 * format limits, and raw access to a reader's metadata values so the writer
 * can copy them without re-encoding. Both index names with a realm__strmap
 * (strmap_internal.h).
 */
#ifndef REALM_GGUF_INTERNAL_H
#define REALM_GGUF_INTERNAL_H

#include <stdint.h>

#include "realm/gguf.h"

/* Longest key or tensor name accepted (bytes, excluding the terminator). */
#define REALM__GGUF_MAX_NAME 65535u
/* Fixed header: magic, version, tensor count, metadata count. */
#define REALM__GGUF_HEADER_SIZE 24u

/* The encoded value of metadata entry i exactly as stored in the file,
 * after its type id: the bytes a writer emits to reproduce it. */
void realm__gguf_kv_raw(const realm_gguf *g, int64_t i, const uint8_t **data, uint64_t *size);

/* The mapping realm_gguf_open made of the whole file (owned by g, unmapped
 * by realm_gguf_close): NULL and 0 when g reads memory it was given, or the
 * file is empty. Lets the model lock its weights in memory. */
void realm__gguf_mapping(const realm_gguf *g, void **base, size_t *size);

#endif
