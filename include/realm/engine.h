/*
 * realm/engine.h — the generation engine: many requests, from many tenants,
 * sharing each forward pass of one loaded model.
 *
 * A realm_engine owns, for one realm_model, a KV-cache pool, a compute
 * context and a scheduler thread. Any thread submits a request and gets a
 * realm_gen handle; the scheduler runs steps, and each step
 *
 *   1. retires cancelled requests (their KV blocks are freed at once),
 *   2. admits waiting requests while sequence slots, KV blocks and per-tenant
 *      limits allow, choosing among tenants by weighted fair queuing (the
 *      tenant with the least service per weight goes first; service is
 *      counted in tokens), and within a tenant by priority then arrival,
 *   3. builds one batch: a decode token of every running sequence, then
 *      chunks of prompts (fair-queued between tenants too) up to the per-step
 *      token budget, so a long prompt never stalls running streams,
 *   4. runs the forward pass, samples every sequence that has logits, hands
 *      the tokens out, and retires finished sequences.
 *
 * KV blocks are taken as sequences grow, not reserved for max_tokens up
 * front. When the pool runs out, prefix-cache entries are evicted, then a
 * running request is preempted: the most-served tenant's lowest-priority,
 * latest request frees its blocks and waits again; re-admitted, it recomputes
 * what it had and continues where it was (same sampler state; the tokens
 * equal those of an uninterrupted run up to float rounding, exactly with
 * batch_invariant). A tenant's
 * block limit is enforced the same way against its own requests.
 *
 * Prefix cache: after a request's prompt has been computed, its whole KV
 * blocks are kept (per tenant), and when a request ends (stop or length)
 * every token of its prompt and output; a later request of the same tenant
 * forks the longest common prefix, to the token (a shared, partly filled
 * block is copied on its first write), instead of recomputing it: the same
 * prompt again computes only its last token, the next turn of a
 * conversation only its new part.
 * Entries are evicted least-recently-used when blocks are needed. A tenant
 * never hits another tenant's entries, and a request never hits an entry
 * computed under other LoRA adapters (or other scales, or none): entries
 * are keyed by tenant and adapter set.
 *
 * LoRA: a request may name adapters (options.lora, realm/lora.h); requests
 * with different adapters, or none, share each step's forward pass (the
 * base model's products once for all, each adapter's low-rank part over its
 * own entries).
 *
 * Speculative decoding (options.speculative, params.spec_*): a decoding
 * sequence may put, after its next token, K drafted tokens in the step's
 * batch, all with logits, so the one forward pass that decodes every
 * sequence also verifies every sequence's drafts. Drafts come from prompt
 * lookup (REALM_SPEC_LOOKUP: the last 4, 3 or 2 tokens found earlier in the
 * prompt and output, most recent match first, and the tokens that followed
 * them) or from params.draft (REALM_SPEC_DRAFT: a smaller model with the
 * same vocabulary, checked at realm_engine_new, with its own KV cache of
 * n_ctx tokens, unshared, which a request finding it full stops using;
 * every drafting sequence's tokens in one draft pass, then one pass per
 * further draft with a row per sequence still drafting; a sequence stops
 * drafting when the draft's probability of its token is below p_min).
 * Verification walks the rows in order and takes at each position the
 * token a run without speculation takes there (greedy: the argmax;
 * sampling: the draw of (seed, position)), continuing while it equals the
 * draft; the first difference, or the token after the last accepted draft,
 * ends the walk. For prompt lookup's point-mass drafts this is exactly the
 * standard rule (accept with p(draft), else a draw from the residual), so
 * greedy and seeded output is the same as without speculation (bitwise
 * with batch_invariant, log-probabilities included). A draft model's
 * sampled drafts (temperature > 0) follow the standard rule with q the
 * draft's filtered distribution (the request's filters, without penalties):
 * accept with min(1, p/q), else draw from max(0, p - q) normalised; the
 * output is distributed as the target's, but it is not token for token the
 * run without speculation. Every output position after the first (which is
 * a plain draw from the prompt's logits, as for every request) takes its
 * token by this rule, the row after the last draft included, and a step
 * with no draft (K = 0) too (the draft model runs one row for its q), with
 * random numbers drawn from (seed, position): a seed gives the same tokens
 * whatever K, n_min, p_min, the acceptance history and the batch were (the
 * back-off; bitwise with batch_invariant), at the cost of one draft row
 * more per step. Such a request whose draft model has not caught up with
 * its prompt (longer than n_batch) sits out the step rather than draw
 * without q. Only when the draft model cannot run for the request (no room
 * in its cache, a failed draft pass) does it fall back to plain draws for
 * the rest of the request. Rejected drafts' KV is truncated in both caches. Stop
 * strings, stop tokens, max_tokens, the context, log-probabilities,
 * penalties, cancellation (no token of a step's run after it), preemption,
 * LoRA and n choices work as for one token per step.
 * K adapts per sequence: from a decaying acceptance rate a per drafted
 * token, the longest run whose last draft is still accepted with
 * probability 0.2 (K = log 0.2 / log a), within max(1, n_min)..n_max. The
 * back-off: a step's decode rows (decoding sequences plus drafts) are
 * bounded by params.spec_max_rows (default 32; past that a CPU pass stops
 * being bound by reading the weights, and every row costs compute); drafts
 * are cut evenly to fit, down to none when the decoding sequences alone
 * fill the bound. Drafts never cause an eviction or a preemption: without
 * KV room, the step drops them. Results count draft_tokens and
 * accepted_tokens; realm_engine_stats the totals.
 *
 *     realm_engine *e;
 *     realm_engine_new(model, &(realm_engine_params){.n_ctx = 8192}, &e);
 *     realm_gen_options o;
 *     realm_gen_options_init(&o);
 *     o.max_tokens = 128;
 *     o.sampling.temperature = 0.7f;
 *     realm_gen *g;
 *     int rc = realm_engine_submit(e, &(realm_gen_request){.prompt = ids, .n_prompt = n,
 *                                                          .tenant = 7, .options = &o}, &g);
 *     if (rc == REALM_ERR_OVERLOADED) ...          // answer 429 / 503
 *     realm_gen_piece piece;
 *     while ((rc = realm_gen_next(g, &piece, -1)) > 0)
 *         fwrite(piece.text, 1, piece.len, stdout);
 *     realm_gen_result res;
 *     realm_gen_result_get(g, &res);           // finish reason, counts, timings
 *     realm_gen_free(g);
 *     realm_engine_free(e);
 *
 * Sampling: each request has its own realm_sampler, seeded from its options,
 * so the same seed, prompt and options give the same tokens alone or
 * batched as long as the logits do. The draw for the token at output
 * position i is a function of (seed, i) (realm_sampler_sample_at), not of
 * how many draws came before. By default a row's logits equal, up to
 * float rounding, what it gets in any other batch (a pass of one entry and a
 * pass of several sum in different orders), which in rare near-ties can
 * change a token; with params.batch_invariant they are bitwise the same, and
 * so are the tokens and log-probabilities, at some cost to single-stream
 * decoding. The penalty window sees the prompt, then the generated tokens.
 *
 * Output. Every sampled token that is part of the output yields one piece:
 * its id and the text that became safe to send (whole UTF-8 characters;
 * text that may still turn into a stop string is held back, and a stop
 * string itself is never sent), so a piece's text may be empty. A final
 * piece with token REALM_TOKEN_NULL may carry text released at the end. An
 * end-of-generation token (unless ignore_eos) and a stop token id end the
 * request without a piece.
 *
 * Two ways to take output: pull (realm_gen_next, blocking with a timeout or
 * polling) or push (a sink callback given at submit, called on the scheduler
 * thread; it must not block and must not call realm_engine_* or
 * realm_gen_free; with a sink, realm_gen_next returns no pieces, only the
 * end).
 *
 * Ownership: realm_engine_new does not take the model: it must outlive the
 * engine. The engine copies the request (prompt, options, stop strings,
 * logit bias). A realm_gen belongs to the caller until realm_gen_free, which
 * also cancels it if still running; the engine keeps its own reference while
 * it works on the request. realm_engine_free cancels and finishes every
 * request (finish reason cancelled) and joins the scheduler; handles not yet
 * freed stay valid for realm_gen_next / result / free afterwards.
 *
 * Thread safety: every function may be called from any thread, concurrently,
 * except realm_engine_free (once, when no other call on the engine or on one
 * of its requests is in progress) and realm_engine_step (manual mode only,
 * one thread at a time).
 * Nothing busy-waits: waiting callers sleep on condition variables.
 *
 * Deterministic mode: with params.manual_step, no thread is started; the
 * caller runs steps with realm_engine_step. Tests use it to count steps.
 *
 * Errors (negative codes, realm/error.h, with a message):
 *   REALM_ERR_OVERLOADED  submit: the waiting queue is full (bounded by
 *                         params.max_waiting); nothing was queued.
 *   REALM_ERR_RANGE       submit: the prompt is longer than the context, or
 *                         the request could never fit the KV pool or its
 *                         tenant's block limit.
 *   REALM_ERR_INVAL       malformed request or options.
 *   REALM_ERR_TIMEOUT     realm_gen_next: nothing arrived within the timeout.
 *   REALM_ERR_NOMEM       allocation failure.
 * A request that fails while running ends with finish reason
 * REALM_FINISH_ERROR and the message in its result.
 */
#ifndef REALM_ENGINE_H
#define REALM_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "realm/lora.h"
#include "realm/model.h"
#include "realm/sampler.h"
#include "realm/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

typedef struct realm_engine realm_engine;
typedef struct realm_gen realm_gen;

typedef struct realm_engine_params {
    int32_t n_ctx;                    /* tokens in the KV pool, over all sequences; 0: 4096 */
    int32_t n_ctx_seq;                /* longest sequence; 0: min(n_ctx, the model's n_ctx_train) */
    int32_t block_size;               /* KV block size; 0: 32 */
    realm_type type_k, type_v;        /* KV cache types of keys and values:
                                         REALM_TYPE_F16 (0) or REALM_TYPE_Q8_0,
                                         half the memory (realm_kv_params) */
    int32_t n_batch;                  /* token budget of one step; 0: 512 */
    int32_t max_seqs;                 /* running sequences; 0: 16 (at most n_batch) */
    int32_t max_waiting;              /* waiting queue bound; 0: 256 */
    int32_t max_chunk;                /* most prompt tokens of one sequence per step; 0: n_batch */
    int32_t prefill_slice_ms;         /* while sequences decode, a step takes at most about
                                         this long for prompt tokens (measured cost per
                                         token), so streams are not stalled; at least one
                                         block's worth. 0: 500; < 0: off. Off in manual mode
                                         (steps are counted, not timed). */
    int32_t n_threads;                /* compute threads; 0: one per CPU */
    realm_threadpool *pool;           /* compute threads shared with other engines
                                         (borrowed; realm_ctx_params.pool): their
                                         steps alternate. NULL: a pool of its own */
    int32_t prefix_cache_entries;     /* cached prompt prefixes; 0: 64; < 0: off */
    uint64_t kv_mem_budget;           /* bytes; 0: no limit */
    bool batch_invariant;             /* a request's tokens and log-probabilities bitwise
                                         the same alone or batched (realm_ctx_params);
                                         costs single-stream decode speed */
    const realm_tokenizer *tokenizer; /* NULL: loaded from the model's file */
    bool manual_step;                 /* no scheduler thread: the caller calls realm_engine_step */
    /* speculative decoding (see the overview) */
    int32_t spec_mode;        /* requests' default realm_spec_mode: 0 (REALM_SPEC_DEFAULT)
                                 or REALM_SPEC_OFF: off */
    int32_t spec_n_max;       /* requests' default most drafted tokens; 0: 8 */
    int32_t spec_n_min;       /* requests' default n_min (realm_spec_options); 0: 0 */
    float spec_p_min;         /* requests' default p_min; 0: 0.75, negative: 0 */
    int32_t spec_max_rows;    /* decode rows (decoding sequences + drafted tokens) a
                                 step verifies at most: drafts shrink as decoding
                                 sequences fill it (the back-off). 0: 32 */
    const realm_model *draft; /* a smaller model drafting for mode REALM_SPEC_DRAFT
                                 (borrowed; must outlive the engine); its vocabulary
                                 must equal the model's. NULL: none */
} realm_engine_params;

/* Bytes an engine with these parameters allocates for m: its KV pool, compute
 * scratch and per-step buffers (the weights are m's). 0 for invalid
 * parameters (realm_engine_new says why). */
uint64_t realm_engine_bytes(const realm_model *m, const realm_engine_params *p);

/* Create an engine for m (which must outlive it). On failure *out is NULL. */
int realm_engine_new(const realm_model *m, const realm_engine_params *p, realm_engine **out);
void realm_engine_free(realm_engine *e);
/* The engine's tokenizer (owned by the engine or the caller, see params). */
const realm_tokenizer *realm_engine_tokenizer(const realm_engine *e);

/* Per-tenant scheduling. Tenants not configured get the defaults below. */
#define REALM_TENANT_WEIGHT_MIN 1e-3
#define REALM_TENANT_WEIGHT_MAX 1e3
typedef struct realm_tenant_limits {
    float weight;          /* share in fair queuing, 1e-3..1e3; 0: 1 */
    int32_t max_seqs;      /* running sequences at once; 0: no limit */
    int32_t max_kv_blocks; /* KV blocks its running sequences may hold; 0: no limit */
} realm_tenant_limits;

int realm_engine_set_tenant(realm_engine *e, uint32_t tenant, const realm_tenant_limits *l);

/* ---- requests ------------------------------------------------------------ */

typedef enum realm_finish {
    REALM_FINISH_NONE = 0, /* still running */
    REALM_FINISH_STOP,     /* end-of-generation token, stop token or stop string */
    REALM_FINISH_LENGTH,   /* max_tokens or the context reached */
    REALM_FINISH_CANCELLED,
    REALM_FINISH_ERROR,
    REALM_FINISH_COUNT
} realm_finish;

/* "none", "stop", "length", "cancelled", "error". */
const char *realm_finish_name(realm_finish f);

#define REALM_GEN_OPTIONS_VERSION 3

/* Speculative decoding of a request (realm_gen_options.speculative). */
typedef enum realm_spec_mode {
    REALM_SPEC_DEFAULT = 0, /* the engine's params.spec_mode */
    REALM_SPEC_OFF,
    REALM_SPEC_LOOKUP, /* prompt lookup: n-gram matches in the prompt and output so far */
    REALM_SPEC_DRAFT,  /* the engine's draft model */
    REALM_SPEC_COUNT
} realm_spec_mode;

/* The most tokens drafted for one sequence in one step. */
#define REALM_SPEC_MAX_DRAFT 32

/* "default", "off", "lookup", "draft"; realm_spec_mode_parse is the inverse
 * (-1 for an unknown name). */
const char *realm_spec_mode_name(realm_spec_mode m);
int realm_spec_mode_parse(const char *name);

typedef struct realm_spec_options {
    int32_t mode;  /* realm_spec_mode */
    int32_t n_max; /* most drafted tokens per step, 0..REALM_SPEC_MAX_DRAFT; 0: the
                      engine's spec_n_max */
    int32_t n_min; /* fewer drafted tokens than this: do not speculate this step,
                      0..REALM_SPEC_MAX_DRAFT; -1 (the default): the engine's
                      spec_n_min (0 unless set) */
    float p_min;   /* draft model: stop drafting when the draft's probability of its
                      token falls below this; 0..1; -1 (the default): the engine's
                      spec_p_min (0.75 unless set) */
} realm_spec_options;

/* Most choices of one request (realm_engine_submit_n). */
#define REALM_MAX_CHOICES 16

/* sampling.seed: draw a random seed for the request (the default). */
#define REALM_SEED_RANDOM UINT64_MAX

/*
 * Options of one request. Versioned: always start from realm_gen_options_init
 * (which sets `version` and the defaults), then change fields. The engine
 * reads only as many bytes as the caller's version had; fields added later
 * go at the end (a field added to realm_sampler_params changes this layout
 * too, so it also needs a new version), and keep their defaults for older
 * callers. An unknown version is REALM_ERR_INVAL.
 */
typedef struct realm_gen_options {
    int32_t version;
    int32_t max_tokens;             /* 0 (the default): no limit but the context (and the
                                       tenant's KV blocks); generation always ends at the
                                       context */
    realm_sampler_params sampling;  /* default: temperature 0.8, top_p 0.95,
                                       min_p 0.05, a random seed (REALM_SEED_RANDOM);
                                       all as in realm/sampler.h */
    const realm_token *stop_tokens; /* ids ending the request (not emitted) */
    int32_t n_stop_tokens;
    const char *const *stop; /* stop strings, NUL-terminated, non-empty, UTF-8 */
    int32_t n_stop;
    bool ignore_eos;      /* do not end at end-of-generation tokens */
    int32_t priority;     /* higher first, within the tenant; default 0 */
    bool no_prefix_cache; /* neither use nor fill the prefix cache */
    /* version 2 */
    const realm_lora_item *lora; /* LoRA adapters applied together, with their scales
                                    (realm_lora_set rules; copied at submit): each
                                    loaded for the engine's model, and kept loaded
                                    until the request has ended. Default none */
    int32_t n_lora;
    /* version 3 */
    realm_spec_options speculative; /* default: the engine's mode */
} realm_gen_options;

void realm_gen_options_init(realm_gen_options *o);

typedef struct realm_gen_piece {
    realm_token token; /* REALM_TOKEN_NULL for the final flush */
    const char *text;  /* valid until the next realm_gen_next / free */
    size_t len;
    float logprob; /* with sampling.n_probs > 0, else 0 */
    int32_t n_probs;
    const realm_token_prob *probs; /* top n_probs, most likely first */
} realm_gen_piece;

#define REALM_ITL_BUCKETS 19 /* vLLM's inter-token latency buckets */

typedef struct realm_gen_result {
    realm_finish finish;
    int error;                     /* the code behind REALM_FINISH_ERROR */
    char message[256];             /* its detail */
    int32_t n_prompt;              /* prompt tokens */
    int32_t n_cached;              /* of which were taken from the prefix cache */
    int32_t n_completion;          /* generated tokens (a stopping token not counted) */
    double time_to_first_token_ms; /* from submission */
    double tokens_per_s;           /* generation rate after the first token */
    uint64_t step_submitted;       /* engine step counter at submission ... */
    uint64_t step_first_token;     /* ... and at the step that sampled the first token */
    double queue_ms;               /* from submission until it first ran (0: never ran) */
    double e2e_ms;                 /* from submission to its end */
    /* gaps between consecutive sampled tokens, counted in the buckets of
     * realm_itl_bounds (the last counts gaps above every bound) */
    uint32_t itl_counts[REALM_ITL_BUCKETS + 1];
    double itl_sum_s;
    int32_t draft_tokens;    /* speculative decoding: tokens drafted and verified ... */
    int32_t accepted_tokens; /* ... and of those, the ones that became output */
} realm_gen_result;

/* The upper bounds, in seconds, of the inter-token latency buckets. */
const double *realm_itl_bounds(void);

/* Push-style output (see the overview): on_piece for each piece, then
 * on_done once with the result; both on the scheduler thread. */
typedef struct realm_gen_sink {
    void (*on_piece)(void *ud, const realm_gen_piece *piece);
    void (*on_done)(void *ud, const realm_gen_result *result);
    void *ud;
} realm_gen_sink;

typedef struct realm_gen_request {
    const realm_token *prompt; /* prompt ids (realm_chat_prompt_tokenize makes them from
                                  text or messages); the engine never tokenizes */
    int32_t n_prompt;
    uint32_t tenant;
    const realm_gen_options *options; /* NULL: defaults */
    const realm_gen_sink *sink;       /* NULL: pull with realm_gen_next */
    float *logits; /* not NULL: a logits-only request: compute the prompt, write its last
                      token's logits (n_vocab floats) here, generate nothing (finish
                      reason stop, no pieces). Its tokens stay in the prefix cache,
                      so a longer prompt starting with it computes only the rest (the
                      host ABI's eval sessions). The buffer must live until the end. */
} realm_gen_request;

/* The longest sequence a request may have (prompt and output). */
int32_t realm_engine_n_ctx_seq(const realm_engine *e);

/* Queue a request. On success *out is a new handle; on failure NULL. */
int realm_engine_submit(realm_engine *e, const realm_gen_request *r, realm_gen **out);

/*
 * Queue one request for n choices (1..REALM_MAX_CHOICES; OpenAI's "n"): the
 * prompt is computed once, then its KV blocks are forked copy-on-write into
 * n sequences, each sampled from the same last logits with its own sampler
 * (seed + i when the options give a seed, else each random). outs[i] is
 * choice i's handle (free each). The choices wait and are admitted together
 * (n sequence slots at once, so n <= max_seqs); errors as
 * realm_engine_submit, nothing queued on failure. If the first choice is
 * cancelled or preempted before its prompt is done, the others go on as
 * requests of their own.
 */
int realm_engine_submit_n(realm_engine *e, const realm_gen_request *r, int32_t n, realm_gen **outs);

/*
 * The next piece: returns 1 and fills *piece, 0 when the request has ended
 * and every piece has been taken, REALM_ERR_TIMEOUT when nothing came within
 * timeout_ms (0 polls, < 0 waits without limit; in manual-step mode waiting
 * only makes sense from another thread than the stepping one).
 */
int realm_gen_next(realm_gen *g, realm_gen_piece *piece, int timeout_ms);
/* Ask the request to end (finish reason cancelled unless it already ended).
 * Its KV blocks are freed by the next step. Idempotent. */
void realm_gen_cancel(realm_gen *g);
/* Block until the request ends (pieces stay available). */
void realm_gen_wait(realm_gen *g);
/* The result: REALM_OK once ended, else REALM_ERR_INVAL (still running). */
int realm_gen_result_get(realm_gen *g, realm_gen_result *out);
/* Cancel if running and release the handle. NULL is a no-op. */
void realm_gen_free(realm_gen *g);

/* ---- stepping and statistics ----------------------------------------------- */

/* Manual mode: run one step. Returns the number of batch entries processed
 * (those of the draft model's passes on a step that ran only them; 0:
 * nothing to do) or a negative error. REALM_ERR_INVAL without manual_step. */
int realm_engine_step(realm_engine *e);

typedef struct realm_engine_stats {
    uint64_t steps; /* forward passes run */
    int32_t n_running, n_waiting;
    int32_t kv_blocks_total, kv_blocks_free;
    int32_t prefix_entries; /* cached prefixes */
    int32_t prefix_blocks;  /* KV blocks only cached prefixes hold (evicting them frees these) */
    uint64_t prefix_hit_tokens;
    uint64_t tokens_prefilled, tokens_generated;      /* prefilled counts recomputation too */
    uint64_t preemptions;                             /* requests sent back to wait for KV blocks */
    uint64_t spec_draft_tokens, spec_accepted_tokens; /* speculative decoding's totals */
} realm_engine_stats;

void realm_engine_get_stats(realm_engine *e, realm_engine_stats *out);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
