/*
 * The LoRA part of the forward pass, as Punica's SGMV splits it: the base
 * weights' product has run once for every entry of the batch; here each
 * adapter's low-rank term runs over only the entries that use it.
 *
 * Plan (once per pass, realm__lora_plan): the batch's sets in canonical form
 * (realm_lora_set_normalize), then the distinct adapters in id order, each with
 * its "pairs": the entries using it, in batch order, and their scales.
 *
 * Apply (per group of weights sharing an input, realm__lora_group):
 *
 *   shrink  t[pair][j] = A_j . x[entry]      units (weight, adapter, j) split
 *                                            between threads; each row of A is
 *                                            read once for all the adapter's
 *                                            entries
 *   expand  y[entry] += s B t[pair]          output columns split between
 *                                            threads; per column tile every
 *                                            entry adds its adapters' terms,
 *                                            adapter after adapter in id order
 *
 * The forward pass runs the shrink in the same pool run as the conversion of
 * the group's input, and the expand in the matmul's run, each thread on the
 * columns its matmul share has just written: LoRA adds no synchronisation
 * (on a busy machine every extra barrier waits for a descheduled thread).
 *
 * Both kernels compute an entry's values the same way whatever else is in
 * the batch (realm/kernels.h), and the order of the terms depends only on
 * the entry's own set, so the result is batch invariant.
 *
 * Scratch (allocated with the context): t holds, per weight of a group (at
 * most 3: Q/K/V), up to n_batch * REALM_LORA_MAX_SET_RANK floats, which the
 * set limits guarantee is enough.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "lora_internal.h"
#include "model_internal.h"

#define GROUP_MAX 3 /* weights sharing one input: Q, K, V */

/* One (weight of the group, adapter) with something to compute. */
typedef struct lora_job {
    int k;                /* index in the group */
    int32_t d;            /* adapter, index in the plan */
    const lora_weight *w; /* its weight */
    int64_t t_off;        /* its block of t: pairs x rank floats */
    int64_t u0;           /* its first shrink unit (one per row of A) */
} lora_job;

struct lora_pass {
    const realm_model *m;
    int32_t n_batch;
    int32_t max_pairs; /* n_batch * REALM_LORA_MAX_SET */
    /* the plan */
    int32_t n_ad;
    const realm_lora **ad; /* (max_pairs) distinct adapters, by id */
    int32_t *ad_p0;        /* (max_pairs + 1) pairs of adapter d: [ad_p0[d], ad_p0[d+1]) */
    int32_t *pair_row;     /* (max_pairs) the entry */
    float *pair_scale;     /* (max_pairs) the set's scale */
    int32_t n_pairs;
    /* planning scratch: each entry's canonical set */
    realm_lora_item *canon; /* (max_pairs) REALM_LORA_MAX_SET per entry */
    int32_t *n_canon;       /* (n_batch) */
    /* apply */
    /* the group being computed (realm__lora_group) */
    lora_job *jobs; /* (GROUP_MAX * max_pairs) */
    int32_t n_jobs;
    int64_t n_units;
    int64_t macs; /* of the shrink */
    const float *x;
    int64_t ld_x;
    float *y[GROUP_MAX];
    int64_t ld_y[GROUP_MAX], n_out[GROUP_MAX];
    float *t; /* GROUP_MAX * n_batch * REALM_LORA_MAX_SET_RANK */
};

uint64_t realm__lora_pass_bytes(const realm_model *m, int32_t n_batch)
{
    (void)m;
    const uint64_t pairs = (uint64_t)n_batch * REALM_LORA_MAX_SET;
    return sizeof(lora_pass) +
           pairs * (sizeof(realm_lora *) + 2 * sizeof(int32_t) + sizeof(float) +
                    sizeof(realm_lora_item) + GROUP_MAX * sizeof(lora_job)) +
           (uint64_t)n_batch * sizeof(int32_t) +
           (uint64_t)GROUP_MAX * (uint64_t)n_batch * REALM_LORA_MAX_SET_RANK * sizeof(float);
}

int realm__lora_pass_new(const realm_model *m, int32_t n_batch, lora_pass **out)
{
    *out = NULL;
    lora_pass *p = calloc(1, sizeof *p);
    if (p == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory for LoRA scratch");
    p->m = m;
    p->n_batch = n_batch;
    p->max_pairs = n_batch * REALM_LORA_MAX_SET;
    const size_t mp = (size_t)p->max_pairs;
    p->ad = malloc(mp * sizeof *p->ad);
    p->ad_p0 = malloc((mp + 1) * sizeof *p->ad_p0);
    p->pair_row = malloc(mp * sizeof *p->pair_row);
    p->pair_scale = malloc(mp * sizeof *p->pair_scale);
    p->canon = malloc(mp * sizeof *p->canon);
    p->n_canon = malloc((size_t)n_batch * sizeof *p->n_canon);
    p->jobs = malloc(GROUP_MAX * mp * sizeof *p->jobs);
    p->t = aligned_alloc(64, (size_t)GROUP_MAX * (size_t)n_batch * REALM_LORA_MAX_SET_RANK *
                                 sizeof *p->t);
    if (!p->ad || !p->ad_p0 || !p->pair_row || !p->pair_scale || !p->canon || !p->n_canon ||
        !p->jobs || !p->t) {
        realm__lora_pass_free(p);
        return realm__error(REALM_ERR_NOMEM, "out of memory for LoRA scratch");
    }
    *out = p;
    return REALM_OK;
}

void realm__lora_pass_free(lora_pass *p)
{
    if (p == NULL)
        return;
    free((void *)p->ad);
    free(p->ad_p0);
    free(p->pair_row);
    free(p->pair_scale);
    free(p->canon);
    free(p->n_canon);
    free(p->jobs);
    free(p->t);
    free(p);
}

int realm__lora_plan(lora_pass *p, int32_t n, const realm_batch_lora *bl, bool *active)
{
    *active = false;
    p->n_ad = p->n_pairs = 0;
    if (bl == NULL || bl->set == NULL)
        return REALM_OK;
    if (bl->n_sets < 0 || (bl->n_sets > 0 && bl->sets == NULL))
        return realm__error(REALM_ERR_INVAL, "batch: %d adapter sets", bl->n_sets);
    /* each entry's set in canonical form (sets are checked where used) */
    for (int32_t e = 0; e < n; e++) {
        const int32_t s = bl->set[e];
        p->n_canon[e] = 0;
        if (s == -1)
            continue;
        if (s < 0 || s >= bl->n_sets)
            return realm__error(REALM_ERR_INVAL,
                                "batch entry %d: adapter set %d (the batch has %d; -1: none)", e, s,
                                bl->n_sets);
        realm_lora_item *c = p->canon + (size_t)e * REALM_LORA_MAX_SET;
        int rc = realm_lora_set_normalize(p->m, &bl->sets[s], c, &p->n_canon[e]);
        if (rc < 0) {
            char msg[300];
            snprintf(msg, sizeof msg, "%s", realm_last_error());
            return realm__error(rc, "batch entry %d, adapter set %d: %s", e, s, msg);
        }
    }
    /* distinct adapters, in id order */
    for (int32_t e = 0; e < n; e++)
        for (int32_t i = 0; i < p->n_canon[e]; i++) {
            const realm_lora *a = p->canon[(size_t)e * REALM_LORA_MAX_SET + i].lora;
            int32_t d = 0;
            while (d < p->n_ad && p->ad[d] != a)
                d++;
            if (d < p->n_ad)
                continue;
            d = p->n_ad++;
            while (d > 0 && p->ad[d - 1]->id > a->id) {
                p->ad[d] = p->ad[d - 1];
                d--;
            }
            p->ad[d] = a;
        }
    /* each adapter's pairs, entries in batch order */
    for (int32_t d = 0; d < p->n_ad; d++) {
        p->ad_p0[d] = p->n_pairs;
        for (int32_t e = 0; e < n; e++)
            for (int32_t i = 0; i < p->n_canon[e]; i++) {
                const realm_lora_item *it = &p->canon[(size_t)e * REALM_LORA_MAX_SET + i];
                if (it->lora == p->ad[d]) {
                    p->pair_row[p->n_pairs] = e;
                    p->pair_scale[p->n_pairs++] = it->scale;
                }
            }
    }
    p->ad_p0[p->n_ad] = p->n_pairs;
    *active = p->n_pairs > 0;
    return REALM_OK;
}

/* Shrink units [u0, u1) of the thread: unit u is row j of job J's A. */
void realm__lora_shrink(lora_pass *p, const realm_ops *ops, int ith, int nth)
{
    const int64_t u0 = p->n_units * ith / nth, u1 = p->n_units * (ith + 1) / nth;
    int32_t J = 0;
    for (int64_t u = u0; u < u1; u++) {
        while (J + 1 < p->n_jobs && p->jobs[J + 1].u0 <= u)
            J++;
        const lora_job *jb = &p->jobs[J];
        const lora_weight *w = jb->w;
        const int64_t j = u - jb->u0;
        const size_t es = w->a_type == REALM_TYPE_F32 ? 4 : 2;
        const int32_t p0 = p->ad_p0[jb->d], np = p->ad_p0[jb->d + 1] - p0;
        ops->lora_shrink(w->a_type, w->n_in, (const uint8_t *)w->a + (size_t)j * w->n_in * es, np,
                         p->pair_row + p0, p->x, p->ld_x, p->t + jb->t_off + j, w->rank);
    }
}

int64_t realm__lora_shrink_macs(const lora_pass *p)
{
    return p->macs;
}

/* Per weight of the range, adapters in id order (the jobs' order). */
void realm__lora_expand(lora_pass *p, const realm_ops *ops, int k0, int nk, int64_t c0, int64_t c1)
{
    int64_t base = 0;
    for (int k = k0; k < k0 + nk; k++) {
        const int64_t lo = c0 > base ? c0 - base : 0;
        const int64_t hi = c1 - base < p->n_out[k] ? c1 - base : p->n_out[k];
        base += p->n_out[k];
        if (lo >= hi)
            continue;
        for (int32_t J = 0; J < p->n_jobs; J++) {
            const lora_job *jb = &p->jobs[J];
            if (jb->k != k)
                continue;
            const int32_t p0 = p->ad_p0[jb->d], np = p->ad_p0[jb->d + 1] - p0;
            ops->lora_expand(jb->w->b_type, jb->w->rank, jb->w->bt, jb->w->n_out, lo, hi, np,
                             p->pair_row + p0, p->t + jb->t_off, jb->w->rank, p->pair_scale + p0,
                             jb->w->scale, p->y[k], p->ld_y[k]);
        }
    }
}

bool realm__lora_group(lora_pass *p, int l, int n_kinds, const int *kinds, const int64_t *n_out,
                       const float *x, int64_t ld_x, float *const *y, const int64_t *ld_y)
{
    REALM_ASSERT(n_kinds >= 1 && n_kinds <= GROUP_MAX);
    int64_t t_off = 0, units = 0;
    p->n_jobs = 0;
    p->macs = 0;
    for (int k = 0; k < n_kinds; k++) {
        p->n_out[k] = n_out[k];
        p->y[k] = y[k];
        p->ld_y[k] = ld_y[k];
        for (int32_t d = 0; d < p->n_ad; d++) {
            const lora_weight *w = lora__weight(p->ad[d], l, kinds[k]);
            if (w->rank == 0)
                continue;
            REALM_ASSERT(w->n_out == n_out[k]);
            p->jobs[p->n_jobs++] = (lora_job){k, d, w, t_off, units};
            t_off += (int64_t)(p->ad_p0[d + 1] - p->ad_p0[d]) * w->rank;
            units += w->rank;
            p->macs += (int64_t)(p->ad_p0[d + 1] - p->ad_p0[d]) * w->rank * w->n_in;
        }
    }
    REALM_ASSERT(t_off <= (int64_t)GROUP_MAX * p->n_batch * REALM_LORA_MAX_SET_RANK);
    p->n_units = units;
    p->x = x;
    p->ld_x = ld_x;
    return p->n_jobs > 0;
}
