/*
 * Rotary position embedding (RoPE): the cos/sin of each rotated pair's
 * angle at a position, and the rotation of a vector of heads by them.
 */
#include <math.h>

#include "model_internal.h"

/* cos/sin of every RoPE frequency at position pos (n_rot / 2 of each). */
void realm__rope_cache(const realm_hparams *hp, const float *freq_factors, int32_t pos,
                       float *cos_out, float *sin_out)
{
    const int half = hp->n_rot / 2;
    for (int i = 0; i < half; i++) {
        double theta = (double)pos * hp->rope_freq_scale *
                       pow((double)hp->rope_freq_base, -2.0 * i / hp->n_rot);
        if (freq_factors)
            theta /= freq_factors[i];
        cos_out[i] = (float)cos(theta);
        sin_out[i] = (float)sin(theta);
    }
}

/* Rotate the first n_rot dimensions of each of n_heads heads of one entry:
 * pairs (2i, 2i+1) for REALM_ROPE_NORM, (i, i + n_rot/2) for NEOX. */
void realm__rope_apply(const realm_hparams *hp, float *v, int n_heads, const float *cs,
                       const float *sn)
{
    const int half = hp->n_rot / 2;
    const bool neox = hp->rope_type == REALM_ROPE_NEOX;
    for (int h = 0; h < n_heads; h++) {
        float *p = v + (int64_t)h * hp->head_dim;
        for (int i = 0; i < half; i++) {
            const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
            const float a = p[i0], bb = p[i1];
            p[i0] = a * cs[i] - bb * sn[i];
            p[i1] = a * sn[i] + bb * cs[i];
        }
    }
}
