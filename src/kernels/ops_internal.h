/* Internal declarations of the element-wise and attention ops (realm_ops). */
#ifndef REALM_OPS_INTERNAL_H
#define REALM_OPS_INTERNAL_H

#include "realm/kernels.h"

#define REALM__OPS_DECL(isa)                                                                       \
    float realm__dot_f16_f32_##isa(int64_t n, const uint16_t *x, const float *y);                  \
    void realm__axpy_f16_##isa(int64_t n, float a, const uint16_t *x, float *y);                   \
    void realm__scale_f32_##isa(int64_t n, float a, float *y);                                     \
    void realm__fp32_to_fp16_##isa(const float *x, uint16_t *y, int64_t n);                        \
    void realm__rmsnorm_##isa(float *out, const float *x, const float *w, int64_t n, float eps);   \
    void realm__silu_mul_##isa(int64_t n, float *g, const float *u);

REALM__OPS_DECL(ref)
REALM__OPS_DECL(avx2)
REALM__OPS_DECL(avx512)

#endif
