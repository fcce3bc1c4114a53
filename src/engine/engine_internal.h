/*
 * Internal shapes of the generation engine (realm/engine.h), shared by
 * engine.c (API, handles, scheduler thread), scheduler.c (one step) and
 * prefix_cache.c.
 *
 * Locking: e->mu guards the engine's queues, tenants, running list, prefix
 * cache and statistics; g->mu guards a request's output (pieces, result,
 * done, cancel, refs). Order: e->mu before g->mu. The KV cache and compute
 * context are touched only by the stepping thread (scheduler or manual
 * caller), under e->mu except during the forward pass.
 */
#ifndef REALM_ENGINE_INTERNAL_H
#define REALM_ENGINE_INTERNAL_H

#include <pthread.h>

#include "realm/engine.h"

/*
 * A request's adapter set as the prefix cache tells sets apart: canonical
 * (realm_lora_set_normalize), adapters by realm_lora_id rather than address
 * (a freed adapter's address may be reused by another), scales by value.
 */
typedef struct lora_key {
    int32_t n; /* 0: no adapter */
    uint64_t id[REALM_LORA_MAX_SET];
    float scale[REALM_LORA_MAX_SET];
} lora_key;

static inline bool lora_key_eq(const lora_key *a, const lora_key *b)
{
    if (a->n != b->n)
        return false;
    for (int32_t i = 0; i < a->n; i++)
        if (a->id[i] != b->id[i] || a->scale[i] != b->scale[i])
            return false;
    return true;
}

typedef struct piece_node {
    struct piece_node *next;
    realm_gen_piece piece; /* text points into `text` below */
    realm_token_prob probs[REALM_SAMPLER_MAX_PROBS];
    char text[];
} piece_node;

struct realm_gen {
    /* immutable after submit */
    uint32_t tenant;
    int32_t priority;
    uint64_t arrival;    /* submission order */
    realm_token *tokens; /* the prompt (own copy), then each token fed back; room for
                            min(n_prompt + max_tokens, n_ctx_seq) */
    int32_t n_prompt;
    int32_t max_tokens;
    bool unlimited;     /* the options set no max_tokens */
    int32_t max_blocks; /* KV blocks the request holds at most */
    bool ignore_eos, no_prefix_cache;
    realm_token *stop_tokens; /* (n_stop_tokens) own copy */
    int32_t n_stop_tokens;
    realm_gen_sink sink;
    bool has_sink;
    double t_submit;
    realm_lora_item lora[REALM_LORA_MAX_SET]; /* its adapters, canonical (lkey.n of them) */
    lora_key lkey;

    /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    realm_engine *e; /* NULL once the engine let go of it */
    int refs;        /* the caller's and the engine's */
    bool cancel, done;
    piece_node *head, *tail, *cur; /* queued pieces; cur: the one last returned */
    realm_gen_result res;

    /* the stepping thread only */
    realm_sampler *smp;
    realm_detok_stream *ds;
    int32_t seq;    /* KV sequence, -1 when none */
    int32_t n_past; /* tokens in the KV sequence */
    int32_t n_fill; /* tokens[0..n_fill) to compute before decoding: the prompt,
                       or after a preemption everything fed so far */
    int32_t n_gen;
    realm_token next_tok; /* sampled, to be fed next step */
    int32_t logit_row;    /* row of this step's logits, -1 if none */
    float *logits_out;    /* a logits-only request's output (realm_gen_request.logits) */
    /* n choices (realm_engine_submit_n): the leader computes the prompt;
     * its followers sit in the running set without a sequence until the
     * prompt is done, then fork its KV blocks and sample from its logits */
    struct realm_gen *followers[REALM_MAX_CHOICES - 1]; /* the leader's, still awaiting */
    int32_t n_followers;
    bool awaiting_fork;    /* a follower that has not forked yet */
    int32_t n_sched;       /* entries of this step */
    bool prompt_done;      /* tokens[0..n_fill) are in the KV sequence */
    bool resumed;          /* preempted after sampling: next_tok is waiting to be fed */
    bool filling;          /* this step's entries are part of the fill */
    bool prompt_just_done; /* this step computed the (first) prompt's end */
    bool stalled;          /* no KV room for a fill chunk this step */
    double t_first;
    double t_admit;   /* first admitted (0: not yet) */
    double t_last;    /* the last token sampled */
    realm_finish fin; /* decided this step, applied under e->mu */
    int fin_err;
    char fin_msg[200];

    /* speculative decoding (stepping thread; scheduler.c) */
    int32_t spec;                   /* REALM_SPEC_OFF, _LOOKUP or _DRAFT */
    int32_t spec_n_max, spec_n_min; /* the request's bounds of K */
    float spec_p_min;
    int32_t spec_k;              /* the current K, adapted from the acceptance rate */
    double spec_acc, spec_tried; /* decaying counts of drafted tokens accepted / tested */
    int32_t n_draft;             /* drafted tokens in this step's batch, after next_tok */
    realm_token spec_in[REALM_SPEC_MAX_DRAFT + 1]; /* this step's rows: next_tok, drafts */
    int32_t n_new;                                 /* tokens sampled this step */
    /* the draft model's view (mode draft): its KV sequence and length */
    int32_t dseq, d_past;
    int32_t d_budget;    /* drafts allowed this step (while the draft model runs) */
    bool d_run;          /* the draft model runs for it this step */
    bool d_hold;         /* sampling, its draft still catching up: no decode row this step */
    bool d_off;          /* the draft model cannot run for it (no room in its cache, a
                            failed pass): off for this request */
    realm_sampler *dsmp; /* the draft's sampler (the request's filters, no penalties) */
    /* sampling with the draft model: for this step's rows 0..n_q-1, the draft's
     * distribution q (row r of dq) and its draw from q (dx[r], = spec_in[1 + r]
     * for the drafts fed to the target); the token of row r is the speculative
     * sampling rule's over them (scheduler.c, spec_sample_rule) */
    float *dq; /* ((spec_n_max + 1) * n_vocab): K drafts and the bonus row's */
    realm_token dx[REALM_SPEC_MAX_DRAFT + 1];
    int32_t n_q; /* 0: plain draws (the draft model did not run for it) */
};

typedef struct tenant_state {
    uint32_t id;
    realm_tenant_limits l;
    double vtime; /* service received / weight (fair-queuing clock) */
    int32_t n_running, n_waiting;
    int32_t held, growth; /* KV blocks its running sequences hold and take this step */
    bool blocked;         /* at a limit during this step's admission */
} tenant_state;

typedef struct prefix_entry {
    uint32_t tenant;
    lora_key lora;       /* the adapters it was computed with */
    realm_token *tokens; /* (n) the cached tokens */
    int32_t n;
    int32_t seq; /* KV sequence holding it */
    uint64_t last_used;
} prefix_entry;

struct realm_engine {
    const realm_model *m;
    realm_tokenizer *own_tok;
    const realm_tokenizer *tok;
    realm_kv_cache *kv;
    realm_ctx *ctx;
    realm_engine_params p; /* normalised */
    int32_t n_vocab, bs, n_blocks;

    pthread_mutex_t mu;
    pthread_cond_t work; /* signalled on submit, cancel, stop */
    pthread_t thread;
    bool thread_started, stop;
    uint64_t events; /* submissions and cancellations so far */

    realm_gen **waiting; /* (max_waiting + max_seqs: preempted ones come back) */
    int32_t n_waiting;
    realm_gen **running; /* (max_seqs) */
    int32_t n_running;
    tenant_state *tenants;
    int32_t n_tenants, cap_tenants;
    uint64_t arrivals, clock;
    double vclock;              /* fair-queuing clock, see realm__engine_vclock */
    double ms_per_prompt_token; /* measured on prefill-heavy steps (moving average); 0: not yet */
    prefix_entry *prefix;       /* (prefix_cache_entries) */
    int32_t n_prefix;
    int32_t n_waiting_followers; /* choices attached to waiting leaders */
    realm_engine_stats stats;
    realm_gen **finished; /* (max_seqs + max_waiting) scratch of one step */

    /* batch scratch: n_batch entries, max_seqs logit rows */
    int32_t *b_tok, *b_pos, *b_seq;
    bool *b_want;
    int32_t *b_set;         /* (n_batch) each entry's adapter set in b_sets, or -1 */
    realm_lora_set *b_sets; /* (max_seqs) this step's sets: one per request with adapters */
    int32_t n_sets;
    float *logits; /* (max_seqs + spec_max_rows) rows */

    /* the draft model (params.draft), its cache, context and pass scratch */
    const realm_model *dm;
    realm_threadpool *own_pool; /* with a draft model and no params.pool: both contexts' */
    realm_kv_cache *dkv;
    realm_ctx *dctx;
    int32_t *d_tok, *d_pos, *d_seq; /* (n_batch) */
    bool *d_want;
    float *d_logits;   /* (max_seqs) rows */
    realm_gen **d_gen; /* (2 * max_seqs) the sequence of each logits row, then those
                          only catching up this step */
    float *q_scratch;  /* (n_vocab) */
    int32_t d_entries; /* entries the draft model's passes ran this step */
};

tenant_state *realm__engine_tenant(realm_engine *e, uint32_t id);
double realm__engine_vclock(realm_engine *e);
/* One step of the scheduler (scheduler.c); the caller holds no lock. */
int realm__engine_step(realm_engine *e);
/* End g with a finish reason (caller holds e->mu; g is not running). */
void realm__gen_finish(realm_gen *g, realm_finish f, int err, const char *msg);
/* Drop one reference; frees g at zero. Takes g->mu. */
void realm__gen_unref(realm_gen *g);

/* Free g's sequence in the draft model's cache, if any (stepping thread). */
void realm__gen_draft_free(realm_engine *e, realm_gen *g);

/* Count the gap since g's previous sampled token (stepping thread). */
void realm__gen_note_token(realm_gen *g, double now);

/* Prefix cache (prefix_cache.c); all under e->mu, on the stepping thread. */
int32_t realm__prefix_lookup(realm_engine *e, uint32_t tenant, const lora_key *lora,
                             const realm_token *t, int32_t n, int32_t *entry);
void realm__prefix_insert(realm_engine *e, uint32_t tenant, const lora_key *lora,
                          const realm_token *t, int32_t n, int32_t seq);
/* Evict the least recently used entry other than `keep` (with must_free,
 * only among entries whose eviction frees a block now); false if none. */
bool realm__prefix_evict_lru(realm_engine *e, int32_t keep, bool must_free);
/* Blocks that evicting every entry but `keep` frees, at least. */
int32_t realm__prefix_reclaimable(realm_engine *e, int32_t keep);
void realm__prefix_clear(realm_engine *e);

#endif
