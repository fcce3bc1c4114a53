/*
 * One scheduler step (realm/engine.h, "the scheduler runs steps"):
 * retire cancelled requests, admit waiting ones by weighted fair queuing,
 * make KV room for every decoding sequence, build one batch of decode tokens
 * and prompt chunks within the token budget, run the forward pass, sample,
 * deliver, retire finished requests.
 *
 * KV accounting, as in vLLM: a request takes blocks as its sequence grows,
 * not its whole prompt + max_tokens up front. Admission needs room for the
 * new prompt (what is not cached) beyond what the running prompts still need
 * and one spare block per running sequence; prefix-cache entries are evicted
 * (least recently used first) to get there. When decoding sequences need
 * more blocks than are free, the cache is evicted first, then a running
 * request is preempted: the most-served tenant's lowest-priority, latest
 * request gives up its KV sequence and goes back to the waiting queue with
 * everything fed so far as its new prompt; re-admitted, it recomputes that
 * and continues with the token it had sampled (its sampler state is kept, so
 * the output is the same as without the preemption up to float rounding of
 * the recomputed keys and values). A tenant's block limit is enforced the
 * same way against its own requests.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock_internal.h"
#include "core/error_internal.h"
#include "engine_internal.h"

static int32_t blocks_of(const realm_engine *e, int32_t n_tokens)
{
    return (n_tokens + e->bs - 1) / e->bs;
}

/* Blocks that running requests still need to finish their fill. */
static int32_t pending_fill(const realm_engine *e)
{
    int32_t sum = 0;
    for (int32_t i = 0; i < e->n_running; i++) {
        const realm_gen *g = e->running[i];
        if (!g->prompt_done && !g->awaiting_fork)
            sum += blocks_of(e, g->n_fill) - blocks_of(e, g->n_past);
    }
    return sum;
}

/* Blocks the running requests of tenant t hold, or will hold when their
 * fills are done (shared prefix blocks counted once per request). */
static int32_t tenant_committed(const realm_engine *e, const tenant_state *t)
{
    int32_t sum = 0;
    for (int32_t i = 0; i < e->n_running; i++) {
        const realm_gen *g = e->running[i];
        if (g->tenant == t->id && !g->awaiting_fork)
            sum += blocks_of(e, g->prompt_done ? g->n_past : g->n_fill);
    }
    return sum;
}

static bool gen_cancelled(realm_gen *g)
{
    pthread_mutex_lock(&g->mu);
    const bool c = g->cancel;
    pthread_mutex_unlock(&g->mu);
    return c;
}

/* Take running[i] out of the running set and free its KV sequence. */
static realm_gen *unrun(realm_engine *e, int32_t i)
{
    realm_gen *g = e->running[i];
    memmove(&e->running[i], &e->running[i + 1],
            (size_t)(e->n_running - i - 1) * sizeof *e->running);
    e->n_running--;
    if (g->seq >= 0) {
        realm_kv_seq_free(e->kv, g->seq);
        g->seq = -1;
    }
    g->n_draft = 0;
    realm__gen_draft_free(e, g);
    realm__engine_tenant(e, g->tenant)->n_running--;
    return g;
}

static int32_t unlink_choices(realm_engine *e, int32_t i);

/* End running[i] with reason f and queue it for on_done and unref. */
static void retire(realm_engine *e, int32_t i, realm_finish f, int err, const char *msg,
                   int32_t *n_fin)
{
    i = unlink_choices(e, i);
    realm_gen *g = unrun(e, i);
    realm__gen_finish(g, f, err, msg);
    e->finished[(*n_fin)++] = g;
}

/* Send running[i] back to the waiting queue (which has room for every
 * running request beyond max_waiting); it keeps its arrival, so it comes
 * back before its tenant's later requests. */
static void preempt(realm_engine *e, int32_t i);

/* The index of g in the running set, or -1. */
static int32_t running_index(const realm_engine *e, const realm_gen *g)
{
    for (int32_t i = 0; i < e->n_running; i++)
        if (e->running[i] == g)
            return i;
    return -1;
}

/* Send the followers still awaiting leader's fork back to wait as requests
 * of their own (each then computes its prompt, mostly from the prefix
 * cache): the leader leaves before its prompt is done. */
static void release_followers(realm_engine *e, realm_gen *leader)
{
    const int32_t n = leader->n_followers;
    leader->n_followers = 0;
    for (int32_t k = 0; k < n; k++) {
        realm_gen *f = leader->followers[k];
        f->awaiting_fork = false;
        const int32_t i = running_index(e, f);
        if (i >= 0) {
            preempt(e, i);
            e->stats.preemptions--; /* not a preemption for KV blocks */
        }
    }
}

/* Forget follower f in its leader's list (f leaves on its own). */
static void drop_follower(realm_engine *e, realm_gen *f)
{
    f->awaiting_fork = false;
    for (int32_t i = 0; i < e->n_running; i++) {
        realm_gen *l = e->running[i];
        for (int32_t k = 0; k < l->n_followers; k++)
            if (l->followers[k] == f) {
                l->followers[k] = l->followers[--l->n_followers];
                return;
            }
    }
}

/* Undo running[i]'s n-choice links before it leaves the running set;
 * returns its index again (releasing followers shifts the set). */
static int32_t unlink_choices(realm_engine *e, int32_t i)
{
    realm_gen *g = e->running[i];
    if (g->awaiting_fork)
        drop_follower(e, g);
    else if (g->n_followers)
        release_followers(e, g);
    return running_index(e, g);
}

static void preempt(realm_engine *e, int32_t i)
{
    i = unlink_choices(e, i);
    realm_gen *g = unrun(e, i);
    if (g->prompt_done) {
        g->n_fill = g->n_past;
        g->resumed = true;
    }
    g->n_past = 0;
    g->prompt_done = false;
    realm__engine_tenant(e, g->tenant)->n_waiting++;
    e->waiting[e->n_waiting++] = g;
    e->stats.preemptions++;
}

/*
 * The request to preempt: the running one (of tenant `only` if given) whose
 * tenant has received the most service per weight, then the lowest
 * priority, then the latest arrival. -1 if there is none.
 */
static int32_t victim(realm_engine *e, const tenant_state *only)
{
    int32_t best = -1;
    double best_v = 0;
    for (int32_t i = 0; i < e->n_running; i++) {
        const realm_gen *g = e->running[i];
        if (only && g->tenant != only->id)
            continue;
        const double v = realm__engine_tenant(e, g->tenant)->vtime;
        const realm_gen *b = best >= 0 ? e->running[best] : NULL;
        if (!b || v > best_v ||
            (v == best_v && (g->priority < b->priority ||
                             (g->priority == b->priority && g->arrival > b->arrival)))) {
            best = i;
            best_v = v;
        }
    }
    return best;
}

/* The longest prefix of g's fill cached for its tenant,
 * leaving at least one token to compute (its logits start decoding). */
static int32_t cached_prefix(realm_engine *e, const realm_gen *g, int32_t *entry)
{
    *entry = -1;
    if (g->no_prefix_cache || e->p.prefix_cache_entries == 0)
        return 0;
    return realm__prefix_lookup(e, g->tenant, &g->lkey, g->tokens, g->n_fill - 1, entry);
}

/* Start g: a KV sequence (forked from a cached prefix when there is one),
 * fair-queuing charge for its uncached fill. */
static int start(realm_engine *e, realm_gen *g, int32_t entry, int32_t n_cached, tenant_state *t)
{
    int rc;
    if (entry >= 0) {
        rc = realm_kv_seq_fork(e->kv, e->prefix[entry].seq, &g->seq);
        if (rc == 0 && (rc = realm_kv_seq_truncate(e->kv, g->seq, n_cached)) < 0) {
            realm_kv_seq_free(e->kv, g->seq);
            g->seq = -1;
        }
        e->prefix[entry].last_used = ++e->clock;
    } else {
        rc = realm_kv_seq_new(e->kv, &g->seq);
    }
    if (rc < 0)
        return rc;
    g->n_past = n_cached;
    if (!g->resumed)
        g->res.n_cached = n_cached;
    if (g->t_admit == 0)
        g->t_admit = realm__now();
    e->stats.prefix_hit_tokens += (uint64_t)n_cached;
    t->n_running++;
    t->vtime += (double)(g->n_fill - n_cached) / t->l.weight;
    e->running[e->n_running++] = g;
    return REALM_OK;
}

/* Followers of a leader that will never run end with the same error. */
static void release_followers_waiting(realm_engine *e, realm_gen *leader, int32_t *n_fin)
{
    for (int32_t k = 0; k < leader->n_followers; k++) {
        realm_gen *f = leader->followers[k];
        f->awaiting_fork = false;
        realm__gen_finish(f, REALM_FINISH_ERROR, REALM_ERR_RANGE,
                          "more choices than sequences may run at once");
        e->finished[(*n_fin)++] = f;
    }
    e->n_waiting_followers -= leader->n_followers;
    leader->n_followers = 0;
}

/* Admit waiting requests while slots, blocks and tenant limits allow. The
 * tenant is chosen by least virtual time (service / weight), ties by the
 * arrival of its oldest waiting request; within the tenant by priority,
 * then arrival. */
static void admit(realm_engine *e, int32_t *n_fin)
{
    for (int32_t i = 0; i < e->n_tenants; i++)
        e->tenants[i].blocked = false;
    while (e->n_running < e->p.max_seqs && e->n_waiting > 0) {
        tenant_state *best = NULL;
        uint64_t best_arrival = 0;
        int32_t best_w = -1;
        for (int32_t i = 0; i < e->n_tenants; i++) {
            tenant_state *t = &e->tenants[i];
            if (t->n_waiting == 0 || t->blocked || (t->l.max_seqs && t->n_running >= t->l.max_seqs))
                continue;
            int32_t w = -1;
            for (int32_t j = 0; j < e->n_waiting; j++) {
                const realm_gen *g = e->waiting[j];
                if (g->tenant == t->id && (w < 0 || g->priority > e->waiting[w]->priority ||
                                           (g->priority == e->waiting[w]->priority &&
                                            g->arrival < e->waiting[w]->arrival)))
                    w = j;
            }
            const uint64_t arrival = e->waiting[w]->arrival;
            if (!best || t->vtime < best->vtime ||
                (t->vtime == best->vtime && arrival < best_arrival)) {
                best = t;
                best_arrival = arrival;
                best_w = w;
            }
        }
        if (best == NULL)
            return;
        realm_gen *g = e->waiting[best_w];
        if (best->l.max_kv_blocks && g->max_blocks > best->l.max_kv_blocks) {
            /* the tenant's limit was lowered below what it needs */
            memmove(&e->waiting[best_w], &e->waiting[best_w + 1],
                    (size_t)(e->n_waiting - best_w - 1) * sizeof *e->waiting);
            e->n_waiting--;
            best->n_waiting--;
            char msg[160];
            snprintf(msg, sizeof msg,
                     "the request needs %d KV blocks, over tenant %u's limit of %d", g->max_blocks,
                     best->id, best->l.max_kv_blocks);
            realm__gen_finish(g, REALM_FINISH_ERROR, REALM_ERR_RANGE, msg);
            e->finished[(*n_fin)++] = g;
            continue;
        }
        if (best->l.max_kv_blocks &&
            tenant_committed(e, best) + blocks_of(e, g->n_fill) > best->l.max_kv_blocks) {
            best->blocked = true;
            continue;
        }
        if (g->n_followers &&
            (e->n_running + 1 + g->n_followers > e->p.max_seqs ||
             (best->l.max_seqs && best->n_running + 1 + g->n_followers > best->l.max_seqs))) {
            if (e->n_running == 0) { /* could never run: as many choices as slots at most */
                memmove(&e->waiting[best_w], &e->waiting[best_w + 1],
                        (size_t)(e->n_waiting - best_w - 1) * sizeof *e->waiting);
                e->n_waiting--;
                best->n_waiting--;
                release_followers_waiting(e, g, n_fin);
                realm__gen_finish(g, REALM_FINISH_ERROR, REALM_ERR_RANGE,
                                  "more choices than sequences may run at once");
                e->finished[(*n_fin)++] = g;
                continue;
            }
            best->blocked = true; /* its choices need free sequence slots */
            continue;
        }
        int32_t entry;
        int32_t n_cached = cached_prefix(e, g, &entry);
        for (;;) {
            const int32_t need = blocks_of(e, g->n_fill) - n_cached / e->bs;
            const int32_t have = realm_kv_free_blocks(e->kv) - pending_fill(e) - e->n_running;
            if (have >= need)
                break;
            /* evict only if that makes room (or nothing runs that would
             * free blocks later): otherwise the cache would be emptied on
             * every step under load, for nothing */
            if ((e->n_running == 0 || have + realm__prefix_reclaimable(e, entry) >= need) &&
                realm__prefix_evict_lru(e, entry, e->n_running > 0))
                continue;
            if (entry < 0)
                return; /* wait for running requests to finish */
            /* last resort: give up the hit and evict its entry too */
            n_cached = 0;
            entry = -1;
        }
        memmove(&e->waiting[best_w], &e->waiting[best_w + 1],
                (size_t)(e->n_waiting - best_w - 1) * sizeof *e->waiting);
        e->n_waiting--;
        best->n_waiting--;
        int rc = start(e, g, entry, n_cached, best);
        if (rc == 0)
            e->n_waiting_followers -= g->n_followers;
        for (int32_t k = 0; rc == 0 && k < g->n_followers; k++) { /* they wait for the fork */
            realm_gen *f = g->followers[k];
            f->seq = -1;
            best->n_running++;
            e->running[e->n_running++] = f;
        }
        if (rc < 0) {
            /* out of sequence slots or memory: end this request only */
            best->n_running++;
            e->running[e->n_running++] = g;
            retire(e, e->n_running - 1, REALM_FINISH_ERROR, rc, realm_last_error(), n_fin);
        }
    }
}

/* Each tenant's held blocks and the blocks its decoding sequences take this
 * step (one token each, and their drafts); returns the total they take. */
static int32_t decode_growth(realm_engine *e)
{
    for (int32_t i = 0; i < e->n_tenants; i++)
        e->tenants[i].held = e->tenants[i].growth = 0;
    int32_t total = 0;
    for (int32_t i = 0; i < e->n_running; i++) {
        realm_gen *g = e->running[i];
        tenant_state *t = realm__engine_tenant(e, g->tenant);
        t->held += blocks_of(e, g->n_past);
        if (g->prompt_done && !g->d_hold) {
            const int32_t k = realm_kv_seq_blocks_needed(e->kv, g->seq, 1 + g->n_draft);
            t->growth += k;
            total += k;
        }
    }
    return total;
}

/* ---- speculative decoding: drafting ------------------------------------ */

static void drop_drafts(realm_engine *e, realm_gen *g);

/* Random streams of one output position (realm_sampler_uniform): 0 is the
 * plain sample's draw; a draft model's draw, its acceptance test and the
 * residual's draw take their own. */
enum { STREAM_DRAFT = 1, STREAM_ACCEPT = 2, STREAM_RESIDUAL = 3 };

/* Prompt lookup's n-gram lengths, longest tried first. */
#define LOOKUP_NGRAM_MAX 4
#define LOOKUP_NGRAM_MIN 2

/*
 * Prompt lookup: find the last m tokens of h[0..n) (m from LOOKUP_NGRAM_MAX
 * down to _MIN) earlier in h, most recent occurrence first, and draft the
 * up to k tokens that followed it. Returns how many were drafted (0: no
 * match). A pass over h per length: cheap beside a forward pass.
 */
static int32_t lookup_drafts(const realm_token *h, int32_t n, int32_t k, realm_token *out)
{
    for (int32_t m = LOOKUP_NGRAM_MAX; m >= LOOKUP_NGRAM_MIN; m--) {
        if (n <= m)
            continue;
        const realm_token *suf = h + n - m;
        for (int32_t i = n - m - 1; i >= 0; i--) {
            if (h[i + m - 1] != suf[m - 1] || memcmp(h + i, suf, (size_t)m * sizeof *h) != 0)
                continue;
            int32_t c = n - (i + m);
            c = c < k ? c : k;
            memcpy(out, h + i + m, (size_t)c * sizeof *out);
            return c;
        }
    }
    return 0;
}

/* The drafts g may have this step: its current K within what max_tokens and
 * the context leave (the fed token plus K drafts stay inside both, so the
 * KV blocks the request was sized for suffice). */
static int32_t draft_room(const realm_engine *e, const realm_gen *g)
{
    int32_t k = g->spec_k;
    const int32_t left_out = g->max_tokens - g->n_gen - 1;
    const int32_t left_ctx = e->p.n_ctx_seq - (g->n_past + 1);
    k = k < left_out ? k : left_out;
    k = k < left_ctx ? k : left_ctx;
    return k > 0 ? k : 0;
}

/* The draft model's probability of its argmax at temperature 1 (p_min's
 * test for greedy drafts), from raw logits. */
static float top_prob(const float *l, int32_t n, int32_t best)
{
    double sum = 0;
    for (int32_t i = 0; i < n; i++)
        sum += exp((double)l[i] - l[best]);
    return (float)(1 / sum);
}

/* A draw from the distribution q over n tokens with u in [0, 1): the first
 * token whose cumulative mass passes u (rounding at the top: the last token
 * with mass). */
static realm_token draw_from(const float *q, int32_t n, double u)
{
    double acc = 0;
    for (int32_t t = 0; t < n; t++) {
        acc += q[t];
        if (q[t] > 0 && u < acc)
            return t;
    }
    for (int32_t t = n - 1; t >= 0; t--)
        if (q[t] > 0)
            return t;
    return 0;
}

/*
 * The draft model's turn, for the sequences g->d_run (set by plan_drafts):
 * first one pass that feeds each its tokens the draft's cache lacks (its
 * whole prompt the first time) and gives the draft's next distribution,
 * then passes of one row per sequence still drafting, within its budget
 * g->n_draft. A sequence stops drafting early when the draft's probability
 * of its token is below p_min. Greedy requests draft the draft's argmax.
 *
 * Sampling requests draw from the draft's filtered distribution q, and the
 * token of every output position t they decode is the speculative sampling
 * rule's over (p_t, q_t, the draws of (seed, t)) — spec_sample_rule — so it
 * is a function of the prefix, the seed and t only, never of K or of which
 * pass verified it. Hence for them: q and a draw x for every row the target
 * computes, the bonus row's included: with K drafts fed to the target, the
 * draft is fed all K and draws x_K too (used by the rule, not fed to the
 * target); a p_min cut at j keeps x_j as the bonus row's; K = 0 (back-off,
 * n_min, max_tokens) is a pass of one row (the catch-up) for q_0. A sampling
 * request whose catch-up does not fit this step's draft batch (a long
 * prompt: n_batch tokens a pass) has no q for its position: it holds
 * (d_hold: no decode row this step) rather than take a plain draw, and
 * catches up over the next steps. Without room in the draft's cache, or when
 * a draft pass fails, a request stops using the draft model (d_off): plain
 * draws from then on.
 */
static void run_draft_model(realm_engine *e)
{
    int32_t n = 0, rows = 0, n_chunk = 0;
    int32_t free_blocks = realm_kv_free_blocks(e->dkv);
    realm_gen **chunked = e->d_gen + e->p.max_seqs; /* catching up only, this step */
    /* from a place that moves every step: a request whose catch-up found the
     * draft batch full (d_hold) comes first within n_running steps, so it
     * cannot starve behind the others' rows */
    const int32_t at = (int32_t)(e->stats.steps % (uint64_t)e->n_running);
    for (int32_t i = 0; i < e->n_running; i++) {
        realm_gen *g = e->running[(at + i) % e->n_running];
        if (!g->d_run)
            continue;
        g->d_budget = g->n_draft;
        g->n_draft = 0;
        if (g->dseq < 0 && realm_kv_seq_new(e->dkv, &g->dseq) < 0) {
            g->dseq = -1;
            g->d_off = true;
            continue;
        }
        int32_t catchup = g->n_past + 1 - g->d_past; /* tokens[d_past .. n_past] */
        if (catchup < 1)
            continue; /* not expected: the draft's cache is never ahead of next_tok */
        if (n == e->p.n_batch) {
            g->d_hold = g->dq != NULL;
            continue;
        }
        const bool whole = n + catchup <= e->p.n_batch;
        if (!whole)
            catchup = e->p.n_batch - n; /* a long prompt: the rest on later steps */
        /* the tokens fed: the catch-up, then the drafts (a sampling request
         * feeds all K for the bonus row's q; greedy K - 1: one spare) */
        const int32_t need =
            realm_kv_seq_blocks_needed(e->dkv, g->dseq, catchup + (whole ? g->d_budget : 0));
        if (need > free_blocks) {
            realm__gen_draft_free(e, g);
            g->d_off = true;
            continue;
        }
        free_blocks -= need;
        for (int32_t j = 0; j < catchup; j++) {
            e->d_tok[n] = g->tokens[g->d_past + j];
            e->d_pos[n] = g->d_past + j;
            e->d_seq[n] = g->dseq;
            e->d_want[n++] = whole && j == catchup - 1;
        }
        if (whole) {
            e->d_gen[rows++] = g;
        } else {
            g->d_past += catchup;
            g->d_hold = g->dq != NULL;
            chunked[n_chunk++] = g;
        }
    }
    for (int32_t j = 0; n > 0; j++) {
        const realm_batch b = {n, e->d_tok, e->d_pos, e->d_seq, e->d_want};
        if (realm_forward(e->dctx, &b, e->d_logits) < 0) {
            /* drafts are optional: these requests go on without (plain
             * draws for the sampling ones, from this step on) */
            for (int32_t r = 0; r < rows; r++) {
                realm__gen_draft_free(e, e->d_gen[r]);
                e->d_gen[r]->n_draft = e->d_gen[r]->n_q = 0;
                e->d_gen[r]->d_off = true;
            }
            for (int32_t r = 0; j == 0 && r < n_chunk; r++) {
                realm__gen_draft_free(e, chunked[r]);
                chunked[r]->d_off = true;
                chunked[r]->d_hold = false;
            }
            return;
        }
        e->d_entries += n;
        int32_t next = 0;
        n = 0;
        for (int32_t r = 0; r < rows; r++) {
            realm_gen *g = e->d_gen[r];
            const float *l = e->d_logits + (size_t)r * (size_t)e->n_vocab;
            g->d_past = j == 0 ? g->n_past + 1 : g->d_past + 1;
            const uint64_t pos = (uint64_t)(g->n_gen + j);
            realm_token d;
            if (g->dq) { /* x_j drawn from q_j, both kept for the rule at row j */
                float *q = g->dq + (size_t)j * (size_t)e->n_vocab;
                realm_sampler_probs(g->dsmp, l, q);
                d = draw_from(q, e->n_vocab, realm_sampler_uniform(g->dsmp, pos, STREAM_DRAFT));
                g->dx[j] = d;
                g->n_q = j + 1;
                if (j == g->d_budget || q[d] < g->spec_p_min)
                    continue; /* the bonus row's draw, or the draft is unsure: not fed */
                g->spec_in[1 + g->n_draft++] = d;
            } else {
                d = realm_sampler_sample_at(g->dsmp, l, pos);
                if (top_prob(l, e->n_vocab, d) < g->spec_p_min)
                    continue; /* the draft is unsure: stop here */
                g->spec_in[1 + g->n_draft++] = d;
                if (g->n_draft == g->d_budget)
                    continue;
            }
            /* feed it for the next one */
            e->d_tok[n] = d;
            e->d_pos[n] = g->d_past;
            e->d_seq[n] = g->dseq;
            e->d_want[n++] = true;
            e->d_gen[next++] = g;
        }
        rows = next;
    }
}

/*
 * Decide this step's drafts (before make_room, which drops them all rather
 * than evict or preempt for them). Each decoding sequence that speculates
 * wants up to its K (draft_room); the step's decode rows are bounded by
 * spec_max_rows and n_batch: past that the pass stops being memory-bound
 * (every row costs compute, not just its share of one read of the
 * weights), so the drafts are cut, evenly, down to none once the decoding
 * sequences alone fill the bound. The bound counts the target's rows only:
 * a sampling request in draft mode has the draft model run for it whatever
 * its K (one draw more than K, a pass of one row at K = 0; see
 * run_draft_model), which is the draft's work and costs the target's pass
 * nothing. Then prompt lookup drafts, and the draft model runs its passes.
 * The caller holds no lock (the running set only changes on this thread).
 */
static void plan_drafts(realm_engine *e)
{
    int32_t n_dec = 0, n_spec = 0, want_total = 0;
    bool drafting = false;
    e->d_entries = 0;
    for (int32_t i = 0; i < e->n_running; i++) {
        realm_gen *g = e->running[i];
        g->n_draft = g->n_q = 0;
        g->d_run = g->d_hold = false;
        if (!g->prompt_done || g->awaiting_fork || g->seq < 0 || g->logits_out)
            continue;
        n_dec++;
        if (g->spec == REALM_SPEC_OFF || g->d_off)
            continue;
        /* sampling with the draft model: q for this step's rows, K or not */
        g->d_run = g->spec == REALM_SPEC_DRAFT && g->dq != NULL;
        drafting |= g->d_run;
        g->n_draft = draft_room(e, g);
        if (g->n_draft < (g->spec_n_min > 1 ? g->spec_n_min : 1))
            g->n_draft = 0;
        want_total += g->n_draft;
        n_spec += g->n_draft > 0;
    }
    if (n_spec == 0 && !drafting)
        return;
    const int32_t bound = e->p.spec_max_rows < e->p.n_batch ? e->p.spec_max_rows : e->p.n_batch;
    const int32_t budget = bound - n_dec;
    if (want_total > budget) {
        /* the largest level L with sum(min(want, L)) within the budget; what
         * is left goes one draft each to sequences wanting more, starting at
         * a place that moves every step (so no sequence is always last) */
        int32_t level = 0, sum = 0;
        for (;;) {
            int32_t next = 0;
            for (int32_t i = 0; i < e->n_running; i++) {
                const int32_t w = e->running[i]->n_draft;
                next += w < level + 1 ? w : level + 1;
            }
            if (next > budget)
                break;
            level++;
            sum = next;
        }
        int32_t left = budget > 0 ? budget - sum : 0;
        const int32_t at = (int32_t)(e->stats.steps % (uint64_t)e->n_running);
        for (int32_t j = 0; j < e->n_running; j++) {
            realm_gen *g = e->running[(at + j) % e->n_running];
            const bool extra = g->n_draft > level && left > 0;
            if (g->n_draft > level)
                g->n_draft = level + extra;
            left -= extra;
            if (budget <= 0 || g->n_draft < g->spec_n_min)
                g->n_draft = 0;
        }
    }
    for (int32_t i = 0; i < e->n_running; i++) {
        realm_gen *g = e->running[i];
        if (g->n_draft == 0)
            continue;
        if (g->spec == REALM_SPEC_LOOKUP)
            g->n_draft = lookup_drafts(g->tokens, g->n_past + 1, g->n_draft, g->spec_in + 1);
        else
            drafting = g->d_run = true;
    }
    if (drafting)
        run_draft_model(e);
    for (int32_t i = 0; i < e->n_running; i++) {
        realm_gen *g = e->running[i];
        if (g->n_draft > 0 && g->n_draft < g->spec_n_min)
            drop_drafts(e, g);
    }
}

/* Forget g's drafts of this step; the draft model's cache keeps only what
 * the target has, plus the token it will be fed. A sampling request keeps
 * q_0 and x_0 (n_q): they depend on that prefix only, and the rule takes
 * its token at row 0 from them. */
static void drop_drafts(realm_engine *e, realm_gen *g)
{
    g->n_draft = 0;
    if (g->dseq >= 0 && g->d_past > g->n_past + 1) {
        realm_kv_seq_truncate(e->dkv, g->dseq, g->n_past + 1);
        g->d_past = g->n_past + 1;
    }
}

/* Drop every sequence's drafts; false if there were none. */
static bool drop_all_drafts(realm_engine *e)
{
    bool any = false;
    for (int32_t i = 0; i < e->n_running; i++)
        if (e->running[i]->n_draft > 0) {
            drop_drafts(e, e->running[i]);
            any = true;
        }
    return any;
}

/*
 * Make room for one decode token of every decoding sequence, within its
 * tenant's block limit and the pool: evict prefix entries, then preempt
 * (see the top of the file). A tenant's single request is never preempted
 * for its own limit (it fits by the check at submit unless the limit was
 * lowered since); the last running request is never preempted for the pool
 * (it fits by the check at submit).
 */
static void make_room(realm_engine *e, int32_t *n_fin)
{
    for (;;) {
        const int32_t need = decode_growth(e);
        tenant_state *over = NULL;
        for (int32_t i = 0; i < e->n_tenants && !over; i++) {
            tenant_state *t = &e->tenants[i];
            if (t->l.max_kv_blocks && t->n_running > 1 && t->held + t->growth > t->l.max_kv_blocks)
                over = t;
        }
        if ((over || need > realm_kv_free_blocks(e->kv)) && drop_all_drafts(e))
            continue; /* speculation never costs a preemption or a cached prefix */
        if (over) {
            preempt(e, victim(e, over));
            continue;
        }
        if (need <= realm_kv_free_blocks(e->kv))
            return;
        if (realm__prefix_evict_lru(e, -1, true))
            continue;
        if (e->n_running > 1) {
            preempt(e, victim(e, NULL));
            continue;
        }
        /* not expected: one request that does not fit the empty pool */
        retire(e, 0, REALM_FINISH_ERROR, REALM_ERR_NOSPACE, "KV cache full", n_fin);
    }
}

/* Append n entries of g starting at its n_past to the batch (g's only
 * entries this step), with its adapter set if it has one. */
static int32_t add_entries(realm_engine *e, int32_t at, realm_gen *g, const realm_token *tok,
                           int32_t n, bool want_last, bool want_all, int32_t *n_rows)
{
    int32_t set = -1;
    if (g->lkey.n > 0) {
        REALM_ASSERT(e->n_sets < e->p.max_seqs);
        set = e->n_sets++;
        e->b_sets[set] = (realm_lora_set){g->lkey.n, g->lora};
    }
    for (int32_t i = 0; i < n; i++) {
        e->b_tok[at + i] = tok[i];
        e->b_pos[at + i] = g->n_past + i;
        e->b_seq[at + i] = g->seq;
        e->b_want[at + i] = false;
        e->b_set[at + i] = set;
    }
    g->n_sched = n;
    g->logit_row = -1;
    if (want_all) { /* a decode token and its drafts: rows logit_row .. + n - 1 */
        g->logit_row = *n_rows;
        for (int32_t i = 0; i < n; i++)
            e->b_want[at + i] = true;
        *n_rows += n;
    } else if (want_last) {
        e->b_want[at + n - 1] = true;
        g->logit_row = (*n_rows)++;
    }
    return at + n;
}

/* The most of g's next `want` fill tokens that `room` free blocks hold. */
static int32_t fit_chunk(realm_engine *e, const realm_gen *g, int32_t want, int32_t room)
{
    const int32_t cap = (blocks_of(e, g->n_past) + room) * e->bs - g->n_past;
    int32_t n = want < cap ? want : cap;
    if (n > 0 && realm_kv_seq_blocks_needed(e->kv, g->seq, n) > room)
        n = 0; /* a shared partial block to copy first: not made by the engine */
    return n;
}

/* Build this step's batch: every decoding sequence's next token (make_room
 * has made room for them), then fill chunks, least-served tenant first,
 * within the token budget and the free blocks. */
static int32_t build_batch(realm_engine *e)
{
    int32_t n = 0, rows = 0;
    int32_t limit = e->p.n_batch; /* where prompt tokens stop */
    int32_t room = realm_kv_free_blocks(e->kv) - decode_growth(e);
    e->n_sets = 0;
    for (int32_t i = 0; i < e->n_running; i++) {
        realm_gen *g = e->running[i];
        g->n_sched = 0;
        g->logit_row = -1;
        g->prompt_just_done = g->filling = g->stalled = false;
        if (g->prompt_done && !g->d_hold) {
            g->spec_in[0] = g->next_tok;
            n = add_entries(e, n, g, g->spec_in, 1 + g->n_draft, true, true, &rows);
            tenant_state *t = realm__engine_tenant(e, g->tenant);
            t->vtime += (1.0 + g->n_draft) / t->l.weight; /* rows are service too */
        }
    }
    if (n > 0 && e->p.prefill_slice_ms > 0 && e->ms_per_prompt_token > 0) {
        /* streams are decoding: bound the step's prompt work in time */
        double cap = e->p.prefill_slice_ms / e->ms_per_prompt_token;
        if (cap < e->bs)
            cap = e->bs;
        if (n + cap < limit)
            limit = n + (int32_t)cap;
    }
    while (n < limit) {
        realm_gen *pick = NULL;
        double pick_v = 0;
        for (int32_t i = 0; i < e->n_running; i++) {
            realm_gen *g = e->running[i];
            if (g->prompt_done || g->n_sched || g->stalled || g->awaiting_fork)
                continue;
            const double v = realm__engine_tenant(e, g->tenant)->vtime;
            if (!pick || v < pick_v || (v == pick_v && g->arrival < pick->arrival)) {
                pick = g;
                pick_v = v;
            }
        }
        if (pick == NULL)
            break;
        int32_t chunk = pick->n_fill - pick->n_past;
        if (chunk > e->p.max_chunk)
            chunk = e->p.max_chunk;
        if (chunk > limit - n)
            chunk = limit - n;
        tenant_state *t = realm__engine_tenant(e, pick->tenant);
        int32_t r = room;
        if (t->l.max_kv_blocks && t->l.max_kv_blocks - t->held - t->growth < r)
            r = t->l.max_kv_blocks - t->held - t->growth;
        const int32_t fit = fit_chunk(e, pick, chunk, r);
        if (fit < chunk && r == room) {
            const int32_t before = realm_kv_free_blocks(e->kv);
            if (realm__prefix_evict_lru(e, -1, true)) {
                room += realm_kv_free_blocks(e->kv) - before;
                continue; /* try again with the freed blocks */
            }
        }
        if (fit <= 0) {
            pick->stalled = true;
            continue;
        }
        const int32_t k = realm_kv_seq_blocks_needed(e->kv, pick->seq, fit);
        room -= k;
        t->growth += k;
        pick->filling = true;
        const bool last = pick->n_past + fit == pick->n_fill;
        n = add_entries(e, n, pick, pick->tokens + pick->n_past, fit, last && !pick->resumed, false,
                        &rows);
    }
    return n;
}

static bool is_stop_token(const realm_gen *g, realm_token t)
{
    for (int32_t i = 0; i < g->n_stop_tokens; i++)
        if (g->stop_tokens[i] == t)
            return true;
    return false;
}

/* Hand a piece to the request: to its sink, or onto its queue for
 * realm_gen_next. Takes ownership of node. */
static void deliver(realm_gen *g, piece_node *node)
{
    if (g->has_sink) {
        if (g->sink.on_piece)
            g->sink.on_piece(g->sink.ud, &node->piece);
        free(node);
        return;
    }
    pthread_mutex_lock(&g->mu);
    node->next = NULL;
    if (g->tail)
        g->tail->next = node;
    else
        g->head = node;
    g->tail = node;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* A piece holding token `tok` and all text the stream has released. */
static piece_node *take_piece(realm_gen *g, realm_token tok)
{
    const size_t ready = realm_detok_stream_ready(g->ds);
    piece_node *node = malloc(sizeof *node + ready + 1);
    if (node == NULL)
        return NULL;
    const size_t len = realm_detok_stream_take(g->ds, node->text, ready);
    node->text[len] = '\0';
    node->piece =
        (realm_gen_piece){.token = tok, .text = node->text, .len = len, .probs = node->probs};
    if (tok != REALM_TOKEN_NULL)
        node->piece.n_probs = realm_sampler_last_probs(g->smp, &node->piece.logprob, node->probs);
    return node;
}

static void set_fin(realm_gen *g, realm_finish f, int err, const char *msg)
{
    g->fin = f;
    g->fin_err = err;
    snprintf(g->fin_msg, sizeof g->fin_msg, "%s", msg ? msg : "");
}

/* Act on g's token `tok`, just chosen and accepted by its sampler: end of
 * generation, stop token, stop string, max_tokens, the context; else
 * deliver it and make it the token fed next (at tokens[n_past]). */
static void take_token(realm_engine *e, realm_gen *g, realm_token tok, uint64_t step)
{
    g->n_new++;
    const double now = realm__now();
    if (g->t_first == 0) {
        g->t_first = now;
        g->res.step_first_token = step;
    }
    realm__gen_note_token(g, now);
    if ((!g->ignore_eos && realm_tokenizer_is_eog(e->tok, tok)) || is_stop_token(g, tok)) {
        set_fin(g, REALM_FINISH_STOP, 0, NULL);
    } else {
        g->n_gen++;
        int rc = realm_detok_stream_push(g->ds, tok);
        if (rc < 0) {
            set_fin(g, REALM_FINISH_ERROR, rc, realm_last_error());
            return;
        }
        piece_node *node = take_piece(g, tok);
        if (node == NULL) {
            set_fin(g, REALM_FINISH_ERROR, REALM_ERR_NOMEM, "out of memory for output");
            return;
        }
        deliver(g, node);
        if (rc == REALM_DETOK_STOPPED) {
            set_fin(g, REALM_FINISH_STOP, 0, NULL);
            return; /* the stop string and what follows are dropped */
        }
        if (g->n_gen >= g->max_tokens || g->n_past >= e->p.n_ctx_seq)
            set_fin(g, REALM_FINISH_LENGTH, 0, NULL);
        else
            g->next_tok = g->tokens[g->n_past] = tok;
    }
    if (g->fin != REALM_FINISH_NONE) {
        realm_detok_stream_flush(g->ds);
        if (realm_detok_stream_ready(g->ds) > 0) {
            piece_node *node = take_piece(g, REALM_TOKEN_NULL);
            if (node)
                deliver(g, node);
        }
    }
}

/* g's logit row r of this step (r > 0: a draft's). */
static const float *logit_row(const realm_engine *e, const realm_gen *g, int32_t r)
{
    return e->logits + (size_t)(g->logit_row + r) * (size_t)e->n_vocab;
}

/* Sample g's next token from its logit row and act on it (take_token). The
 * draw is the one of the token's position in the output (n_gen), so it does
 * not depend on what was drafted or rejected before. */
static void sample_one(realm_engine *e, realm_gen *g, uint64_t step)
{
    const float *row = logit_row(e, g, 0);
    if (g->logits_out) { /* logits only: hand them over, generate nothing */
        memcpy(g->logits_out, row, (size_t)e->n_vocab * sizeof *row);
        g->res.step_first_token = step;
        set_fin(g, REALM_FINISH_STOP, 0, NULL);
        return;
    }
    const realm_token tok = realm_sampler_sample_at(g->smp, row, (uint64_t)g->n_gen);
    realm_sampler_accept(g->smp, tok);
    take_token(e, g, tok, step);
}

/*
 * The token at g's next position (row r) given the draft model's
 * distribution q there (row r of g->dq) and its draw d = dx[r] from q: the
 * standard speculative sampling rule over the target's filtered
 * distribution p: d with probability min(1, p(d) / q(d)), else a draw from
 * the residual max(0, p - q) normalised. The output is distributed as p.
 * Every random number is the position's (seed, n_gen, stream), p and q are
 * the prefix's: the token is the same whether d was fed to the target as a
 * draft or the row is the bonus row after the last draft.
 */
static realm_token spec_sample_rule(realm_engine *e, realm_gen *g, int32_t r)
{
    float *p = e->q_scratch;
    realm_sampler_probs(g->smp, logit_row(e, g, r), p);
    const float *q = g->dq + (size_t)r * (size_t)e->n_vocab;
    const realm_token d = g->dx[r];
    const uint64_t pos = (uint64_t)g->n_gen;
    realm_token tok = d;
    if (realm_sampler_uniform(g->smp, pos, STREAM_ACCEPT) * q[d] >= p[d]) {
        double total = 0;
        for (int32_t i = 0; i < e->n_vocab; i++)
            total += p[i] > q[i] ? p[i] - q[i] : 0;
        const double x = realm_sampler_uniform(g->smp, pos, STREAM_RESIDUAL) * total;
        double acc = 0;
        tok = -1;
        for (int32_t i = 0; i < e->n_vocab && tok < 0; i++) {
            const float w = p[i] > q[i] ? p[i] - q[i] : 0;
            acc += w;
            if (w > 0 && x < acc)
                tok = i;
        }
        if (tok < 0) /* rounding at the very top: the last token with residual mass */
            for (int32_t i = e->n_vocab - 1; i >= 0 && tok < 0; i--)
                if (p[i] > q[i])
                    tok = i;
        if (tok < 0) /* p == q to the last bit, yet d rejected: cannot happen */
            tok = d;
    }
    realm_sampler_choose(g->smp, tok);
    return tok;
}

/*
 * Verify g's drafts: its rows hold next_tok then drafts d_0..d_{k-1}; row r
 * gives the token after them. Walk the rows in order: the token at each
 * position is chosen exactly as without speculation (greedy: the argmax;
 * sampling: the draw of its position), or, for a sampling request with the
 * draft model (rows below n_q, the bonus row's included, and the one row
 * of a step with k = 0), by the speculative sampling rule; a token equal to
 * the draft lets the next row count, the first that differs (or the bonus
 * row's token after k accepted drafts) ends the walk. Either way the token
 * at a position is a function of (prefix, seed, position), which is why
 * the rows a step verifies (K, p_min, n_min, the back-off) change how many
 * tokens a step takes, never which. Prompt lookup's drafts are a point
 * mass, for which "the token drawn from p equals the draft" is the standard
 * rule (accept with p(d), else a draw from p without d, the residual), so
 * the tokens are those of a run without speculation, greedy or seeded. The
 * KV of the rejected drafts is rolled back, in the draft model's cache too
 * (fed up to d_{k-1} for a sampling request, maybe past what is accepted).
 */
static void verify(realm_engine *e, realm_gen *g, uint64_t step)
{
    const int32_t k = g->n_draft;
    const int32_t base = g->n_past - 1 - k; /* the position of next_tok */
    int32_t r = 0, accepted = 0;
    for (;; r++) {
        g->n_past = base + 1 + r; /* the fed tokens that are right so far */
        realm_token tok;
        if (r < g->n_q) {
            tok = spec_sample_rule(e, g, r);
        } else {
            tok = realm_sampler_sample_at(g->smp, logit_row(e, g, r), (uint64_t)g->n_gen);
        }
        realm_sampler_accept(g->smp, tok);
        take_token(e, g, tok, step);
        const bool hit = r < k && tok == g->spec_in[1 + r];
        accepted += hit;
        /* a cancelled request takes no more of the run: retired next step */
        if (!hit || g->fin != REALM_FINISH_NONE || gen_cancelled(g))
            break;
    }
    g->n_draft = g->n_q = 0;
    if (g->n_past < base + 1 + k && g->seq >= 0)
        realm_kv_seq_truncate(e->kv, g->seq, g->n_past);
    if (g->dseq >= 0 && g->d_past > g->n_past) {
        realm_kv_seq_truncate(e->dkv, g->dseq, g->n_past);
        g->d_past = g->n_past;
    }
    g->res.draft_tokens += k;
    g->res.accepted_tokens += accepted;
    e->stats.spec_draft_tokens += (uint64_t)k;
    e->stats.spec_accepted_tokens += (uint64_t)accepted;
    if (k == 0)
        return; /* a sampling request's one row: nothing learnt about K */
    /* the acceptance rate, decaying: K is the longest run whose last draft
     * is still accepted with probability 0.2 at that rate */
    g->spec_acc = 0.8 * g->spec_acc + accepted;
    g->spec_tried = 0.8 * g->spec_tried + (accepted < k ? accepted + 1 : k);
    const double rate = g->spec_acc / g->spec_tried;
    int32_t kk = rate >= 0.99 ? g->spec_n_max : rate <= 0.01 ? 1 : (int32_t)(log(0.2) / log(rate));
    const int32_t lo = g->spec_n_min > 1 ? g->spec_n_min : 1;
    g->spec_k = kk < lo ? lo : kk > g->spec_n_max ? g->spec_n_max : kk;
}

/*
 * The leader's prompt is done: each follower forks its KV sequence (blocks
 * shared copy-on-write) and samples its first token from the same logits
 * with its own sampler. A follower whose fork fails (no sequence slot)
 * ends with an error.
 */
static void fork_followers(realm_engine *e, realm_gen *leader, uint64_t step)
{
    const int32_t n = leader->n_followers;
    leader->n_followers = 0;
    for (int32_t k = 0; k < n; k++) {
        realm_gen *f = leader->followers[k];
        f->awaiting_fork = false;
        if (realm_kv_seq_fork(e->kv, leader->seq, &f->seq) < 0) {
            f->seq = -1;
            set_fin(f, REALM_FINISH_ERROR, REALM_ERR_NOSPACE, realm_last_error());
            continue;
        }
        f->n_past = leader->n_past;
        f->prompt_done = true;
        f->res.n_cached = leader->res.n_cached;
        if (f->t_admit == 0)
            f->t_admit = leader->t_admit;
        f->logit_row = leader->logit_row;
        f->n_sched = 0;
        sample_one(e, f, step);
    }
}

/* Learn the cost of a prompt token from steps that are mostly prompt
 * (a moving average over such steps), for the prefill slice. */
static void note_step_time(realm_engine *e, int32_t n, double seconds)
{
    int32_t n_fill = 0;
    for (int32_t i = 0; i < e->n_running; i++)
        if (e->running[i]->filling)
            n_fill += e->running[i]->n_sched;
    if (n_fill < 16 || 2 * n_fill < n)
        return;
    const double ms = seconds * 1e3 / n;
    e->ms_per_prompt_token =
        e->ms_per_prompt_token > 0 ? 0.8 * e->ms_per_prompt_token + 0.2 * ms : ms;
}

int realm__engine_step(realm_engine *e)
{
    int32_t n_fin = 0;
    pthread_mutex_lock(&e->mu);
    for (int32_t i = e->n_running - 1; i >= 0; i--)
        if (gen_cancelled(e->running[i]))
            retire(e, i, REALM_FINISH_CANCELLED, 0, NULL, &n_fin);
    for (int32_t i = e->n_waiting - 1; i >= 0; i--) {
        realm_gen *g = e->waiting[i];
        if (!gen_cancelled(g))
            continue;
        memmove(&e->waiting[i], &e->waiting[i + 1],
                (size_t)(e->n_waiting - i - 1) * sizeof *e->waiting);
        e->n_waiting--;
        realm__engine_tenant(e, g->tenant)->n_waiting--;
        for (int32_t k = 0; k < g->n_followers; k++) { /* its choices go with it */
            g->followers[k]->awaiting_fork = false;
            realm__gen_finish(g->followers[k], REALM_FINISH_CANCELLED, 0, NULL);
            e->finished[n_fin++] = g->followers[k];
        }
        e->n_waiting_followers -= g->n_followers;
        g->n_followers = 0;
        realm__gen_finish(g, REALM_FINISH_CANCELLED, 0, NULL);
        e->finished[n_fin++] = g;
    }
    admit(e, &n_fin);
    /* drafting runs the draft model's passes: outside the lock, like the
     * forward pass (the running set only changes on this thread) */
    pthread_mutex_unlock(&e->mu);
    plan_drafts(e);
    pthread_mutex_lock(&e->mu);
    int32_t n;
    for (;;) {
        make_room(e, &n_fin);
        n = build_batch(e);
        if (n > 0 || e->n_running == 0 || e->d_entries > 0)
            break; /* (or only draft models caught up this step, see d_hold) */
        /* every running request is a fill without KV room: free some */
        if (e->n_running > 1)
            preempt(e, victim(e, NULL));
        else
            retire(e, 0, REALM_FINISH_ERROR, REALM_ERR_NOSPACE,
                   "the request does not fit its tenant's KV block limit", &n_fin);
    }
    const uint64_t step = e->stats.steps + 1;
    if (n > 0)
        e->stats.steps = step;
    pthread_mutex_unlock(&e->mu);

    int rc = REALM_OK;
    if (n > 0) {
        const realm_batch b = {n, e->b_tok, e->b_pos, e->b_seq, e->b_want};
        const realm_batch_lora bl = {e->b_set, e->b_sets, e->n_sets};
        const double t0 = realm__now();
        rc = realm_forward_lora(e->ctx, &b, e->n_sets ? &bl : NULL, e->logits);
        note_step_time(e, n, realm__now() - t0);
        const char *msg = rc < 0 ? realm_last_error() : NULL;
        for (int32_t i = 0; i < e->n_running; i++) { /* (a fork below may set a follower's) */
            e->running[i]->fin = REALM_FINISH_NONE;
            e->running[i]->n_new = 0;
        }
        for (int32_t i = 0; i < e->n_running; i++) {
            realm_gen *g = e->running[i];
            if (g->n_sched == 0)
                continue;
            if (rc < 0) {
                set_fin(g, REALM_FINISH_ERROR, rc, msg);
                continue;
            }
            g->n_past += g->n_sched;
            if (!g->prompt_done && g->n_past == g->n_fill) {
                g->prompt_done = true;
                g->prompt_just_done = !g->resumed;
                g->resumed = false;
            }
            if (g->logit_row >= 0 && g->n_followers)
                fork_followers(e, g, step);
            if (g->logit_row >= 0 && (g->n_draft > 0 || g->n_q > 0))
                verify(e, g, step);
            else if (g->logit_row >= 0)
                sample_one(e, g, step);
        }
    }

    pthread_mutex_lock(&e->mu);
    int32_t n_gen_tokens = 0, n_prefill = 0;
    for (int32_t i = e->n_running - 1; i >= 0; i--) {
        realm_gen *g = e->running[i];
        if (rc == 0 && g->n_sched) {
            n_gen_tokens += g->n_new;
            if (g->filling)
                n_prefill += g->n_sched;
        }
        /* a prompt just computed: its whole blocks, for requests arriving with
         * it meanwhile (a partly filled block would be copied on g's next
         * write) */
        if (rc == 0 && g->prompt_just_done && !g->no_prefix_cache && e->p.prefix_cache_entries)
            realm__prefix_insert(e, g->tenant, &g->lkey, g->tokens, g->n_prompt / e->bs * e->bs,
                                 g->seq);
        g->prompt_just_done = false;
        g->n_sched = 0;
        /* a request that ended well leaves its prompt and output cached, so
         * the next turn of a conversation computes only what is new */
        if (rc == 0 && (g->fin == REALM_FINISH_STOP || g->fin == REALM_FINISH_LENGTH) &&
            g->prompt_done && g->seq >= 0 && !g->no_prefix_cache && e->p.prefix_cache_entries)
            realm__prefix_insert(e, g->tenant, &g->lkey, g->tokens, g->n_past, g->seq);
        if (g->fin != REALM_FINISH_NONE)
            retire(e, i, g->fin, g->fin_err, g->fin_msg[0] ? g->fin_msg : NULL, &n_fin);
    }
    e->stats.tokens_generated += (uint64_t)n_gen_tokens;
    e->stats.tokens_prefilled += (uint64_t)n_prefill;
    e->stats.kv_blocks_free = realm_kv_free_blocks(e->kv);
    e->stats.prefix_blocks = realm__prefix_reclaimable(e, -1);
    realm__engine_vclock(e);
    pthread_mutex_unlock(&e->mu);

    for (int32_t i = 0; i < n_fin; i++) {
        realm_gen *g = e->finished[i];
        if (g->has_sink && g->sink.on_done) {
            realm_gen_result res;
            realm_gen_result_get(g, &res);
            g->sink.on_done(g->sink.ud, &res);
        }
        pthread_mutex_lock(&g->mu);
        g->e = NULL;
        pthread_mutex_unlock(&g->mu);
        realm__gen_unref(g);
    }
    /* a step that only fed draft models (d_hold) did work too */
    return rc < 0 ? rc : n > 0 ? n : e->d_entries;
}
