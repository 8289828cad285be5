/* rng.h: the one random generator of the program (xoshiro256**, seeded through
 * splitmix64).  Every function that draws takes the generator explicitly, so a
 * run is a pure function of its seed and flags. */
#ifndef GSVAE_RNG_H
#define GSVAE_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} rng_t;

void rng_seed(rng_t *r, uint64_t seed);
uint64_t rng_next(rng_t *r);
/* Uniform in the open interval (0,1): never 0, never 1, so log(u) and
 * log(-log(u)) stay finite. */
double rng_uniform_open(rng_t *r);
float rng_uniformf_open(rng_t *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint32_t rng_below(rng_t *r, uint32_t n);
/* Standard normal (Box-Muller on two open uniforms). */
double rng_normal(rng_t *r);
/* Independent stream for worker w derived from r without advancing r. */
void rng_fork(const rng_t *r, uint64_t w, rng_t *out);

#endif
