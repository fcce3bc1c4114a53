/*
 * bench_sampler — milliseconds per sampled token for a vocabulary size,
 * over a row of random (normal, sd 3) logits, with the engine's default
 * options (temperature 0.8, top-p 0.95, min-p 0.05), with top-k 40, and
 * with temperature alone (no filter):
 *
 *     bench_sampler [N_VOCAB] [DRAWS]      (defaults 32000, 200)
 *
 * The sampler runs on the scheduler thread once per sequence per step, so
 * at 16 sequences its cost is paid 16 times per forward pass.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/clock_internal.h"
#include "realm/sampler.h"

int main(int argc, char **argv)
{
    const int nv = argc > 1 ? atoi(argv[1]) : 32000, draws = argc > 2 ? atoi(argv[2]) : 200;
    if (nv < 2 || draws < 1) {
        fprintf(stderr, "usage: bench_sampler [N_VOCAB >= 2] [DRAWS >= 1]\n");
        return 2;
    }
    float *l = malloc(sizeof *l * (size_t)nv);
    if (!l)
        return 1;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < nv; i++) { /* Box-Muller from a xorshift */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const double u = ((double)(x >> 11) + 1) / 9007199254740993.0;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const double v = (double)(x >> 11) / 9007199254740992.0;
        l[i] = (float)(3.0 * sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
    }
    const struct {
        const char *name;
        realm_sampler_params p;
    } cases[] = {
        {"defaults (T 0.8, top-p 0.95, min-p 0.05)",
         {.temperature = 0.8f, .top_p = 0.95f, .min_p = 0.05f, .seed = 1}},
        {"top-k 40, top-p 0.95", {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 1}},
        {"temperature 1 alone", {.temperature = 1, .seed = 1}},
    };
    printf("vocabulary of %d, %d draws each\n\n| options | ms per token |\n| --- | ---: |\n", nv,
           draws);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        realm_sampler *s;
        if (realm_sampler_new(&cases[c].p, nv, &s) < 0)
            return 1;
        long sum = 0;
        const double t0 = realm__now();
        for (int i = 0; i < draws; i++)
            sum += realm_sampler_sample(s, l);
        printf("| %s | %.3f |\n", cases[c].name, (realm__now() - t0) / draws * 1e3);
        realm_sampler_free(s);
        if (sum < 0)
            return 1;
    }
    free(l);
    return 0;
}
