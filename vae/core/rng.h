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

/* The draws below are inline: the samplers call them once per unit, tens of
 * millions of times per evaluation, where a call per draw cost more than
 * the draw.  Loops that draw many copy the state to a local rng_t and back,
 * so that it stays in registers (the stores of the samples could otherwise
 * alias it: the project compiles with -fno-strict-aliasing). */
static inline uint64_t rng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* The next 64 bits of xoshiro256**. */
static inline uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rng_rotl(s[3], 45);
    return result;
}

/* Uniform in the open interval (0,1): never 0, never 1, so log(u) and
 * log(-log(u)) stay finite.  Double: 52 random bits centred in their cell,
 * (k + 0.5) / 2^52.  Float: 23 bits, so that (k + 0.5) / 2^23 is exactly
 * representable and below 1. */
static inline double rng_uniform_open(rng_t *r)
{
    uint64_t k = rng_next(r) >> 12;
    return ((double)k + 0.5) * (1.0 / 4503599627370496.0);
}

static inline float rng_uniformf_open(rng_t *r)
{
    uint32_t k = (uint32_t)(rng_next(r) >> 41);
    return ((float)k + 0.5f) * (1.0f / 8388608.0f);
}
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint32_t rng_below(rng_t *r, uint32_t n);
/* Standard normal (Box-Muller on two open uniforms). */
double rng_normal(rng_t *r);
/* Independent stream for worker w derived from r without advancing r. */
void rng_fork(const rng_t *r, uint64_t w, rng_t *out);

#endif
