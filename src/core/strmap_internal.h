/*
 * String -> index hash table: metadata keys and tensor names in the GGUF
 * reader and writer, token texts in the tokenizer.
 *
 * Keys are byte strings (any bytes, no terminator needed) that the caller
 * keeps in an arena and names by (offset, length). The arena is passed to
 * every call, so it may grow and move while the table is built. Lookups
 * take any byte string. Values are int32 >= 0; -1 means "absent".
 *
 *     realm__strmap m = {0};        // or realm__strmap_init(&m, n) to presize
 *     int64_t v = realm__strmap_put(&m, arena, off, len, 7);  // 7, or an older value
 *     int32_t i = realm__strmap_find(&m, arena, "tok", 3);    // 7 or -1
 *     realm__strmap_free(&m);
 *
 * Keys come from untrusted files, so the hash is keyed with a secret drawn
 * per table from the kernel's random generator: a crafted file cannot choose
 * keys that collide, in the whole hash or in a bucket, without knowing it.
 * The hash is built so that no difference between two keys cancels out
 * independently of the secret (the key enters every multiply masked by it).
 * Open addressing with linear probing at a load of at most one half; a slot
 * holds (hash >> 32) << 32 | (entry + 1), so a probe compares key bytes
 * only when 32 more bits of the hash agree.
 *
 * Sizes are checked before anything is allocated: at most REALM__STRMAP_MAX
 * entries, keys at most UINT32_MAX bytes. Building is single-threaded;
 * lookups in a table nobody modifies may run on any number of threads.
 */
#ifndef REALM_STRMAP_INTERNAL_H
#define REALM_STRMAP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Most entries a table holds (slots are twice that, indexes 32-bit). */
#define REALM__STRMAP_MAX (UINT32_C(1) << 30)

typedef struct realm__strmap_entry {
    uint64_t off; /* the key: arena + off, len bytes */
    uint32_t len;
    int32_t val;
} realm__strmap_entry;

typedef struct realm__strmap {
    uint64_t *slots;          /* (mask + 1), 0: empty; NULL until the first insert */
    realm__strmap_entry *ent; /* (n_max) in insertion order */
    uint32_t mask;            /* capacity - 1, a power of two */
    uint32_t n, n_max;
    uint64_t key[3]; /* the hash secret */
} realm__strmap;

/*
 * Empty *m (its old contents are not freed) with room for n keys before it
 * grows. REALM_ERR_RANGE if n > REALM__STRMAP_MAX, REALM_ERR_NOMEM if
 * allocating fails; *m is then empty and needs no free. A zeroed table is
 * valid too: it allocates on its first insert.
 */
int realm__strmap_init(realm__strmap *m, uint64_t n);
void realm__strmap_free(realm__strmap *m);
/* Forget every key, keeping the memory and the secret: reinserting as many
 * keys as before cannot fail. */
void realm__strmap_clear(realm__strmap *m);

/*
 * Insert (arena + off, len) -> val (val >= 0) unless the key is present.
 * Returns the value now stored for the key (the older one if it was
 * present), or REALM_ERR_RANGE (table or key too large) or REALM_ERR_NOMEM.
 */
int64_t realm__strmap_put(realm__strmap *m, const char *arena, uint64_t off, size_t len,
                          int32_t val);

/* ---- hashing (inline: lookups are the tokenizers' inner loop) ------------ */

/* 64 x 64 -> 128-bit product folded to 64 bits (high ^ low). */
static inline uint64_t realm__strmap_mum(uint64_t a, uint64_t b)
{
#ifdef __SIZEOF_INT128__
    __extension__ typedef unsigned __int128 u128;
    const u128 r = (u128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
    const uint64_t al = (uint32_t)a, ah = a >> 32, bl = (uint32_t)b, bh = b >> 32;
    const uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    const uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
    const uint64_t lo = (mid << 32) | (uint32_t)ll;
    const uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return lo ^ hi;
#endif
}

static inline uint64_t realm__strmap_load32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t realm__strmap_load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/*
 * The keyed hash of p[0..n) under m's secret (also usable for other tables
 * that hash the same untrusted strings). Each 16-byte block is read as two
 * words a, b and folded into the state h as mum(a ^ key1, b ^ h); the last
 * block, or a short key, is read with overlapping loads that still cover
 * every byte once the length is known, and the length enters the last mix.
 */
static inline uint64_t realm__strmap_hash(const realm__strmap *m, const void *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    uint64_t a, b, h = m->key[0];
    if (n <= 16) {
        if (n >= 4) {
            const size_t q = (n >> 3) << 2; /* 0 below 8 bytes, else 4 */
            a = realm__strmap_load32(s) << 32 | realm__strmap_load32(s + q);
            b = realm__strmap_load32(s + n - 4) << 32 | realm__strmap_load32(s + n - 4 - q);
        } else if (n > 0) {
            a = (uint64_t)s[0] << 16 | (uint64_t)s[n >> 1] << 8 | s[n - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t left = n;
        do {
            h = realm__strmap_mum(realm__strmap_load64(s) ^ m->key[1],
                                  realm__strmap_load64(s + 8) ^ h);
            s += 16;
            left -= 16;
        } while (left > 16);
        a = realm__strmap_load64(s + left - 16);
        b = realm__strmap_load64(s + left - 8);
    }
    h = realm__strmap_mum(a ^ m->key[1], b ^ h);
    return realm__strmap_mum(h ^ m->key[2], (uint64_t)n ^ m->key[0]);
}

/* The value stored for the key s[0..len), or -1. */
static inline int32_t realm__strmap_find(const realm__strmap *m, const char *arena, const char *s,
                                         size_t len)
{
    if (m->slots == NULL)
        return -1;
    const uint64_t h = realm__strmap_hash(m, s, len);
    const uint32_t tag = (uint32_t)(h >> 32);
    for (uint32_t i = (uint32_t)h & m->mask;; i = (i + 1) & m->mask) {
        const uint64_t slot = m->slots[i];
        if (slot == 0)
            return -1;
        if ((uint32_t)(slot >> 32) != tag)
            continue;
        const realm__strmap_entry *e = &m->ent[(uint32_t)slot - 1];
        if (e->len == len && memcmp(arena + e->off, s, len) == 0)
            return e->val;
    }
}

#endif
