/*
 * String -> index hash table (strmap_internal.h): building and growing.
 * Lookups are inline in the header.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include "clock_internal.h"
#include "error_internal.h"
#include "strmap_internal.h"

#define MIN_SLOTS 16u

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/*
 * A fresh secret for m: 64 random bits drawn once per process from the
 * kernel (or, should that fail, from the clock, the pid and an address),
 * stepped by a counter so that no two tables share a secret.
 */
static void strmap_seed(realm__strmap *m)
{
    static _Atomic uint64_t process_secret; /* 0 until the first table */
    static _Atomic uint64_t n_tables;
    uint64_t s = atomic_load_explicit(&process_secret, memory_order_relaxed);
    if (s == 0) {
        uint64_t v;
        if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
            v = (uint64_t)(realm__now() * 1e9) ^ (uint64_t)getpid() << 40;
            v ^= splitmix64(&(uint64_t){(uint64_t)(uintptr_t)m});
        }
        uint64_t expected = 0;
        atomic_compare_exchange_strong(&process_secret, &expected, v | 1);
        s = atomic_load(&process_secret);
    }
    uint64_t x = s ^ splitmix64(&(uint64_t){atomic_fetch_add(&n_tables, 1)});
    for (int i = 0; i < 3; i++)
        m->key[i] = splitmix64(&x);
}

/* Smallest power-of-two slot count holding n entries at half load. */
static uint32_t slots_for(uint64_t n)
{
    uint32_t cap = MIN_SLOTS;
    while (cap < 2 * n)
        cap <<= 1;
    return cap;
}

int realm__strmap_init(realm__strmap *m, uint64_t n)
{
    *m = (realm__strmap){0};
    if (n > REALM__STRMAP_MAX)
        return realm__error(REALM_ERR_RANGE,
                            "a table of %" PRIu64 " strings is too large (at most 2^30)", n);
    const uint32_t cap = slots_for(n);
    const uint32_t n_max = n > MIN_SLOTS / 2 ? (uint32_t)n : MIN_SLOTS / 2;
    m->slots = calloc(cap, sizeof *m->slots);
    m->ent = malloc((size_t)n_max * sizeof *m->ent);
    if (m->slots == NULL || m->ent == NULL) {
        realm__strmap_free(m);
        return realm__error(REALM_ERR_NOMEM, "out of memory for a table of %" PRIu64 " strings", n);
    }
    m->mask = cap - 1;
    m->n_max = n_max;
    strmap_seed(m);
    return REALM_OK;
}

void realm__strmap_free(realm__strmap *m)
{
    free(m->slots);
    free(m->ent);
    *m = (realm__strmap){0};
}

void realm__strmap_clear(realm__strmap *m)
{
    if (m->slots != NULL)
        memset(m->slots, 0, ((size_t)m->mask + 1) * sizeof *m->slots);
    m->n = 0;
}

/* Double the slots and re-insert every entry (keys read from arena). */
static int strmap_rehash(realm__strmap *m, const char *arena)
{
    const uint32_t cap = (m->mask + 1) * 2;
    uint64_t *slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory for a table of %" PRIu32 " strings",
                            m->n + 1);
    for (uint32_t e = 0; e < m->n; e++) {
        const uint64_t h = realm__strmap_hash(m, arena + m->ent[e].off, m->ent[e].len);
        uint32_t i = (uint32_t)h & (cap - 1);
        while (slots[i] != 0)
            i = (i + 1) & (cap - 1);
        slots[i] = (h >> 32 << 32) | (uint64_t)(e + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->mask = cap - 1;
    return REALM_OK;
}

/* Room for one more entry: slots at most half full, an entry free. */
static int strmap_grow(realm__strmap *m, const char *arena)
{
    if (m->n == REALM__STRMAP_MAX)
        return realm__error(REALM_ERR_RANGE, "a table of strings is full (2^30 entries)");
    int rc;
    if (2 * ((uint64_t)m->n + 1) > (uint64_t)m->mask + 1 && (rc = strmap_rehash(m, arena)) < 0)
        return rc;
    if (m->n == m->n_max) {
        const uint32_t n_max = m->n_max * 2 < REALM__STRMAP_MAX ? m->n_max * 2 : REALM__STRMAP_MAX;
        realm__strmap_entry *ent = realloc(m->ent, (size_t)n_max * sizeof *ent);
        if (ent == NULL)
            return realm__error(REALM_ERR_NOMEM, "out of memory for a table of %" PRIu32 " strings",
                                n_max);
        m->ent = ent;
        m->n_max = n_max;
    }
    return REALM_OK;
}

int64_t realm__strmap_put(realm__strmap *m, const char *arena, uint64_t off, size_t len,
                          int32_t val)
{
    REALM_ASSERT(val >= 0);
    if (len > UINT32_MAX)
        return realm__error(REALM_ERR_RANGE, "a %zu-byte string is too long for a table", len);
    int rc;
    if (m->slots == NULL && (rc = realm__strmap_init(m, 0)) < 0)
        return rc;
    const char *s = arena + off;
    const uint64_t h = realm__strmap_hash(m, s, len);
    const uint32_t tag = (uint32_t)(h >> 32);
    uint32_t i = (uint32_t)h & m->mask;
    for (;; i = (i + 1) & m->mask) {
        const uint64_t slot = m->slots[i];
        if (slot == 0)
            break;
        if ((uint32_t)(slot >> 32) != tag)
            continue;
        const realm__strmap_entry *e = &m->ent[(uint32_t)slot - 1];
        if (e->len == len && memcmp(arena + e->off, s, len) == 0)
            return e->val;
    }
    if (2 * ((uint64_t)m->n + 1) > (uint64_t)m->mask + 1 || m->n == m->n_max) {
        if ((rc = strmap_grow(m, arena)) < 0)
            return rc;
        for (i = (uint32_t)h & m->mask; m->slots[i] != 0; i = (i + 1) & m->mask)
            ;
    }
    const uint32_t e = m->n++;
    m->ent[e] = (realm__strmap_entry){off, (uint32_t)len, val};
    m->slots[i] = ((uint64_t)tag << 32) | (uint64_t)(e + 1);
    return val;
}
