/*
 * Rotary position embedding (RoPE): the parameters in effect (the model's
 * metadata with the caller's overrides, resolved as llama.cpp resolves its
 * context parameters), the cos/sin of each rotated pair's angle at a
 * position (linear scaling, YaRN, Llama 3.1 frequency factors), and the
 * rotation of a vector of heads by them.
 *
 * YaRN follows ggml's rope operator, the reference users compare against:
 * the ramp's end pairs are computed in float as ggml does (their floor and
 * ceil must land on the same pair), the cos/sin magnitude in float as
 * llama.cpp computes it; the angles themselves in double.
 */
#include <math.h>

#include "core/error_internal.h"
#include "model_internal.h"

static const char *const scaling_names[REALM_ROPE_SCALING_COUNT] = {
    [REALM_ROPE_SCALING_DEFAULT] = "default",
    [REALM_ROPE_SCALING_NONE] = "none",
    [REALM_ROPE_SCALING_LINEAR] = "linear",
    [REALM_ROPE_SCALING_YARN] = "yarn",
};

const char *realm_rope_scaling_name(realm_rope_scaling s)
{
    return (unsigned)s < REALM_ROPE_SCALING_COUNT ? scaling_names[s] : "unknown";
}

/* An override that must be 0 (unset) or positive and finite. */
static int check_override(const char *name, double v)
{
    if (v >= 0 && isfinite(v))
        return REALM_OK;
    return realm__error(REALM_ERR_INVAL, "RoPE override %s = %g: must be a positive number", name,
                        v);
}

static int check_overrides(const realm_rope_params *o)
{
    int rc;
    if ((unsigned)o->scaling >= REALM_ROPE_SCALING_COUNT)
        return realm__error(REALM_ERR_INVAL, "RoPE override: scaling %d is not a scaling type",
                            (int)o->scaling);
    if ((rc = check_override("freq_base", o->freq_base)) < 0 ||
        (rc = check_override("freq_scale", o->freq_scale)) < 0 ||
        (rc = check_override("yarn_orig_ctx", o->yarn_orig_ctx)) < 0 ||
        (rc = check_override("yarn_attn_factor", o->yarn_attn_factor)) < 0 ||
        (rc = check_override("yarn_beta_fast", o->yarn_beta_fast)) < 0 ||
        (rc = check_override("yarn_beta_slow", o->yarn_beta_slow)) < 0)
        return rc;
    if (o->freq_base > 0 && !(o->freq_base > 1))
        return realm__error(REALM_ERR_INVAL, "RoPE override freq_base = %g: must be above 1",
                            o->freq_base);
    if (o->has_yarn_ext_factor && (rc = check_override("yarn_ext_factor", o->yarn_ext_factor)) < 0)
        return rc;
    return REALM_OK;
}

int realm__rope_resolve(realm_hparams *hp, const realm__rope_train *t, const realm_rope_params *o)
{
    static const realm_rope_params none = {0};
    if (o == NULL)
        o = &none;
    int rc = check_overrides(o);
    if (rc < 0)
        return rc;
    const realm_rope_scaling type = o->scaling != REALM_ROPE_SCALING_DEFAULT ? o->scaling : t->type;
    hp->rope_scaling = type;
    hp->rope_freq_base = o->freq_base > 0 ? o->freq_base : t->freq_base;
    hp->rope_freq_scale = type == REALM_ROPE_SCALING_NONE ? 1.0f
                          : o->freq_scale > 0             ? o->freq_scale
                                                          : t->freq_scale;
    hp->rope_n_ctx_orig = o->yarn_orig_ctx > 0 ? o->yarn_orig_ctx : t->n_ctx_orig;
    hp->rope_ext_factor = o->has_yarn_ext_factor            ? o->yarn_ext_factor
                          : type == REALM_ROPE_SCALING_YARN ? 1.0f
                                                            : 0.0f;
    hp->rope_beta_fast = o->yarn_beta_fast > 0 ? o->yarn_beta_fast : 32.0f;
    hp->rope_beta_slow = o->yarn_beta_slow > 0 ? o->yarn_beta_slow : 1.0f;
    float attn = o->yarn_attn_factor > 0 ? o->yarn_attn_factor : 1.0f;
    if (hp->rope_ext_factor != 0) {
        /* YaRN's magnitude 1 + 0.1 ln(factor) (1 when not stretching), then
         * divided by what the rotation multiplies in itself (rope_cache): as
         * llama.cpp sets it, the caller's attention factor unused. */
        const float factor = 1.0f / hp->rope_freq_scale;
        attn = factor <= 1.0f ? 1.0f : 0.1f * logf(factor) + 1.0f;
        attn *= 1.0f / (1.0f + 0.1f * logf(factor));
    }
    hp->rope_attn_factor = attn * t->attn_factor;
    return REALM_OK;
}

/*
 * YaRN's correction pair for `turns`: the (fractional) pair index whose
 * wavelength fits `turns` times into the original context, in float as ggml
 * computes it.
 */
static float yarn_corr_pair(int n_rot, int32_t n_ctx_orig, float turns, float base)
{
    const float ratio = (float)n_ctx_orig / (turns * 2.0f * 3.14159265358979323846f);
    return (float)n_rot * logf(ratio) / (2.0f * logf(base));
}

/*
 * cos/sin of every RoPE pair at position pos (n_rot / 2 of each). Pair i
 * turns by theta_e = pos * base^(-2i/n_rot) / freq_factors[i] as trained
 * (extrapolation) or theta_i = freq_scale * theta_e stretched (interpolation).
 * Without YaRN the angle is theta_i. With it, pairs below the ramp [lo, hi]
 * (fast ones, many turns over the original context) keep theta_e, pairs above
 * it take theta_i, and those between blend linearly, the blend weighted by
 * ext_factor; cos/sin are scaled by the magnitude of realm_hparams.
 */
void realm__rope_cache(const realm_hparams *hp, const float *freq_factors, int32_t pos,
                       float *cos_out, float *sin_out)
{
    const int half = hp->n_rot / 2;
    const bool yarn = hp->rope_ext_factor != 0;
    float mscale = hp->rope_attn_factor, lo = 0, hi = 0;
    if (yarn) {
        mscale *= 1.0f + 0.1f * logf(1.0f / hp->rope_freq_scale);
        lo = floorf(
            yarn_corr_pair(hp->n_rot, hp->rope_n_ctx_orig, hp->rope_beta_fast, hp->rope_freq_base));
        hi = ceilf(
            yarn_corr_pair(hp->n_rot, hp->rope_n_ctx_orig, hp->rope_beta_slow, hp->rope_freq_base));
        lo = lo > 0 ? lo : 0;
        hi = hi < (float)(hp->n_rot - 1) ? hi : (float)(hp->n_rot - 1);
    }
    for (int i = 0; i < half; i++) {
        double theta_e = (double)pos * pow((double)hp->rope_freq_base, -2.0 * i / hp->n_rot);
        if (freq_factors)
            theta_e /= freq_factors[i];
        const double theta_i = hp->rope_freq_scale * theta_e;
        double theta = theta_i;
        if (yarn) {
            /* 0 below the ramp, 1 above it */
            float y = ((float)i - lo) / (hi - lo > 0.001f ? hi - lo : 0.001f);
            y = y < 0 ? 0 : y > 1 ? 1 : y;
            const double mix = (double)((1.0f - y) * hp->rope_ext_factor);
            theta = theta_i * (1 - mix) + theta_e * mix;
        }
        cos_out[i] = (float)cos(theta) * mscale;
        sin_out[i] = (float)sin(theta) * mscale;
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
