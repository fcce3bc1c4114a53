/*
 * realm/sampler.h — choosing the next token from a row of logits.
 *
 * The pipeline, in order, over a copy of the logits (the caller's row is
 * never written):
 *
 *   1. logit bias: logit[id] += bias for each (id, bias) pair; a bias of
 *      -INFINITY bans the token.
 *   2. penalties over the last `penalty_last_n` accepted tokens (see
 *      realm_sampler_accept): a token seen c > 0 times has its logit divided
 *      by repeat_penalty when positive, multiplied when negative, then
 *      lowered by c * frequency_penalty + presence_penalty.
 *      A NaN logit is never chosen (it counts as -INFINITY); +INFINITY (say
 *      a bias forcing a token) ranks above every finite logit.
 *   3. temperature 0 is greedy: the highest logit (the lowest id on a tie);
 *      if every token is banned, the lowest id.
 *   4. otherwise: top-k; softmax at the temperature over the survivors;
 *      typical-p (locally typical sampling: keep the tokens whose surprisal
 *      is closest to the entropy, up to a mass of typical_p); top-p
 *      (nucleus, over the survivors' renormalised probabilities); min-p
 *      (relative to the most likely survivor); then a draw by inverse CDF
 *      over the survivors with a uniform number that is a hash of (seed,
 *      position), not a running stream: the same seed, logits, accepted
 *      history and position give the same token on every machine, however
 *      many draws came before (speculative decoding verifies several
 *      positions in one step and throws some away). Only the
 *      head of the distribution that top-p and min-p can keep is sorted, so
 *      a sample costs about one pass over the vocabulary.
 *
 * Log-probabilities: with n_probs > 0, each realm_sampler_sample also records
 * the n_probs most likely tokens of log-softmax(logits after steps 1-2), and
 * the chosen token's log-probability under the same distribution
 * (realm_sampler_last_probs).
 *
 *     realm_sampler *s;
 *     realm_sampler_new(&(realm_sampler_params){.temperature = 0.8f, .top_k = 40,
 *                                                .top_p = 0.95f, .seed = 42},
 *                       n_vocab, &s);
 *     realm_token next = realm_sampler_sample(s, logits);
 *     realm_sampler_accept(s, next);      // only needed for penalties
 *     realm_sampler_free(s);
 *
 * Ownership: realm_sampler_new copies everything in the params, including
 * the logit_bias array. Thread safety: a sampler belongs to one sequence and
 * one thread at a time; distinct samplers are independent.
 *
 * Errors: realm_sampler_new returns REALM_ERR_INVAL for out-of-range params
 * (negative temperature, a bias id outside the vocabulary, n_probs over
 * REALM_SAMPLER_MAX_PROBS, ...) and REALM_ERR_NOMEM.
 */
#ifndef REALM_SAMPLER_H
#define REALM_SAMPLER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

#define REALM_SAMPLER_MAX_PROBS              20
#define REALM_SAMPLER_DEFAULT_PENALTY_WINDOW 64

typedef struct realm_logit_bias {
    int32_t token;
    float bias;
} realm_logit_bias;

typedef struct realm_token_prob {
    int32_t token;
    float logprob;
} realm_token_prob;

typedef struct realm_sampler_params {
    float temperature; /* 0: greedy */
    int32_t top_k;     /* <= 0: off */
    float top_p;       /* >= 1 or <= 0: off */
    float min_p;       /* <= 0: off */
    uint64_t seed;
    float typical_p;                    /* >= 1 or <= 0: off */
    float repeat_penalty;               /* 0 or 1: off; > 0 otherwise */
    float presence_penalty;             /* 0: off; may be negative */
    float frequency_penalty;            /* 0: off; may be negative */
    int32_t penalty_last_n;             /* window of accepted tokens; <= 0 means 64 */
    const realm_logit_bias *logit_bias; /* copied; may be NULL */
    int32_t n_logit_bias;
    int32_t n_probs; /* top log-probabilities to record, 0..20 */
} realm_sampler_params;

typedef struct realm_sampler realm_sampler;

int realm_sampler_new(const realm_sampler_params *p, int32_t n_vocab, realm_sampler **out);
void realm_sampler_free(realm_sampler *s);
/* The next token for logits[0..n_vocab): realm_sampler_sample_at at a
 * position counting this sampler's realm_sampler_sample calls (0, 1, ...). */
int32_t realm_sampler_sample(realm_sampler *s, const float *logits);
/* The token for logits at position pos (any number naming the draw, e.g. the
 * index of the token in the output): the random number is
 * realm_sampler_uniform(s, pos, 0). */
int32_t realm_sampler_sample_at(realm_sampler *s, const float *logits, uint64_t pos);
/* The uniform number in [0, 1) of (seed, pos, stream): stream 0 is the
 * sample's draw; other streams are free for callers (the engine's
 * speculative acceptance tests). Depends on nothing else. */
double realm_sampler_uniform(const realm_sampler *s, uint64_t pos, uint32_t stream);
/* The distribution a sample would draw from, after every step of the
 * pipeline (bias, penalties, temperature, top-k, typical-p, top-p, min-p):
 * p[0..n_vocab) sums to 1, zero for the filtered tokens; greedy is one-hot
 * on its choice. Returns the most likely token (the lowest id on a tie).
 * Records log-probabilities as a sample does. */
int32_t realm_sampler_probs(realm_sampler *s, const float *logits, float *p);
/* After realm_sampler_probs, record token as the choice made from that
 * distribution by the caller: realm_sampler_last_probs then reports its
 * log-probability as after a sample. */
void realm_sampler_choose(realm_sampler *s, int32_t token);
/* Append a token to the penalty window (prompt tokens and generated ones);
 * ids outside the vocabulary are ignored. */
void realm_sampler_accept(realm_sampler *s, int32_t token);
/* After a sample with n_probs > 0: the chosen token's log-probability in
 * *chosen (may be NULL) and the n_probs best (token, log-probability) pairs,
 * most likely first, in out[0..n) (n <= n_probs). Returns n (0 when n_probs
 * is 0). */
int32_t realm_sampler_last_probs(const realm_sampler *s, float *chosen, realm_token_prob *out);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
