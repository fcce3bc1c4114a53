/*
 * The prefix cache (realm/engine.h, "Prefix cache"): per tenant and LoRA
 * adapter set (keys and values computed under other adapters differ), KV
 * sequences holding tokens already computed. A request forks the entry with
 * the longest common prefix, to the token (a partly shared last block is
 * copied on its first write), and computes only the rest. Slots of e->prefix
 * are stable (an empty slot has tokens == NULL), so an index found by a
 * lookup survives evicting other entries.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

static int32_t common_prefix(const realm_token *a, int32_t na, const realm_token *b, int32_t nb)
{
    const int32_t n = na < nb ? na : nb;
    int32_t i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

static void entry_drop(realm_engine *e, prefix_entry *pe)
{
    realm_kv_seq_free(e->kv, pe->seq);
    free(pe->tokens);
    *pe = (prefix_entry){0};
    e->n_prefix--;
}

/*
 * The longest prefix of t[0..n) cached for tenant under adapters `lora`:
 * returns its length in tokens (0: none) and the slot in *entry (-1: none).
 */
int32_t realm__prefix_lookup(realm_engine *e, uint32_t tenant, const lora_key *lora,
                             const realm_token *t, int32_t n, int32_t *entry)
{
    int32_t best = 0;
    *entry = -1;
    for (int32_t i = 0; i < e->p.prefix_cache_entries; i++) {
        const prefix_entry *pe = &e->prefix[i];
        if (pe->tokens == NULL || pe->tenant != tenant || !lora_key_eq(&pe->lora, lora))
            continue;
        const int32_t m = common_prefix(pe->tokens, pe->n, t, n);
        if (m > best) {
            best = m;
            *entry = i;
        }
    }
    return best;
}

/* Blocks evicting every entry but `keep` would free at least (blocks only
 * entries share are not counted). */
int32_t realm__prefix_reclaimable(realm_engine *e, int32_t keep)
{
    int32_t n = 0;
    for (int32_t i = 0; i < e->p.prefix_cache_entries; i++)
        if (e->prefix[i].tokens && i != keep)
            n += realm_kv_seq_exclusive_blocks(e->kv, e->prefix[i].seq);
    return n;
}

bool realm__prefix_evict_lru(realm_engine *e, int32_t keep, bool must_free)
{
    int32_t lru = -1;
    for (int32_t i = 0; i < e->p.prefix_cache_entries; i++)
        if (e->prefix[i].tokens && i != keep &&
            (!must_free || realm_kv_seq_exclusive_blocks(e->kv, e->prefix[i].seq) > 0) &&
            (lru < 0 || e->prefix[i].last_used < e->prefix[lru].last_used))
            lru = i;
    if (lru < 0)
        return false;
    entry_drop(e, &e->prefix[lru]);
    return true;
}

/*
 * Remember tokens t[0..n), computed in KV sequence seq under adapters
 * `lora`, for tenant. An entry already covering them is only touched;
 * entries that are a prefix of the new one are replaced by it. Failures (no
 * sequence slot, no memory) just leave the cache as it was.
 */
void realm__prefix_insert(realm_engine *e, uint32_t tenant, const lora_key *lora,
                          const realm_token *t, int32_t n, int32_t seq)
{
    if (n <= 0)
        return;
    int32_t slot = -1;
    for (int32_t i = 0; i < e->p.prefix_cache_entries; i++) {
        prefix_entry *pe = &e->prefix[i];
        if (pe->tokens == NULL) {
            if (slot < 0)
                slot = i;
            continue;
        }
        if (pe->tenant != tenant || !lora_key_eq(&pe->lora, lora))
            continue;
        const int32_t m = common_prefix(pe->tokens, pe->n, t, n);
        if (m == n) {
            pe->last_used = ++e->clock; /* already cached */
            return;
        }
        if (m == pe->n) {
            entry_drop(e, pe); /* the new entry extends this one */
            if (slot < 0)
                slot = i;
        }
    }
    if (slot < 0) {
        realm__prefix_evict_lru(e, -1, false);
        for (int32_t i = 0; i < e->p.prefix_cache_entries && slot < 0; i++)
            if (e->prefix[i].tokens == NULL)
                slot = i;
        if (slot < 0)
            return;
    }
    prefix_entry pe = {.tenant = tenant, .lora = *lora, .n = n, .last_used = ++e->clock};
    pe.tokens = malloc((size_t)n * sizeof *pe.tokens);
    if (pe.tokens == NULL)
        return;
    memcpy(pe.tokens, t, (size_t)n * sizeof *pe.tokens);
    if (realm_kv_seq_fork(e->kv, seq, &pe.seq) < 0) {
        free(pe.tokens);
        return;
    }
    if (realm_kv_seq_truncate(e->kv, pe.seq, n) < 0) {
        realm_kv_seq_free(e->kv, pe.seq);
        free(pe.tokens);
        return;
    }
    e->prefix[slot] = pe;
    e->n_prefix++;
}

void realm__prefix_clear(realm_engine *e)
{
    for (int32_t i = 0; i < e->p.prefix_cache_entries; i++)
        if (e->prefix[i].tokens)
            entry_drop(e, &e->prefix[i]);
}
