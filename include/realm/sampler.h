/*
 * realm/sampler.h — choosing the next token from a row of logits.
 *
 * Temperature 0 is greedy (the highest logit; the lowest id on a tie).
 * Otherwise the logits pass through top-k, then top-p (nucleus), then min-p,
 * are scaled by 1/temperature and softmaxed, and a token is drawn with the
 * sampler's own seeded generator, so the same seed and logits give the same
 * tokens on every machine.
 *
 *     realm_sampler *s;
 *     realm_sampler_new(&(realm_sampler_params){.temperature = 0.8f, .top_k = 40,
 *                                                .top_p = 0.95f, .seed = 42},
 *                       n_vocab, &s);
 *     realm_token next = realm_sampler_sample(s, logits);
 *     realm_sampler_free(s);
 *
 * A sampler belongs to one sequence and one thread at a time.
 */
#ifndef REALM_SAMPLER_H
#define REALM_SAMPLER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct realm_sampler_params {
    float temperature; /* 0: greedy */
    int32_t top_k;     /* <= 0: off */
    float top_p;       /* >= 1 or <= 0: off */
    float min_p;       /* <= 0: off */
    uint64_t seed;
} realm_sampler_params;

typedef struct realm_sampler realm_sampler;

int realm_sampler_new(const realm_sampler_params *p, int32_t n_vocab, realm_sampler **out);
void realm_sampler_free(realm_sampler *s);
/* The next token for logits[0..n_vocab). */
int32_t realm_sampler_sample(realm_sampler *s, const float *logits);

#ifdef __cplusplus
}
#endif
#endif
