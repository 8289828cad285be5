#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void rng_seed(rng_t *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform_open(rng_t *r)
{
    /* 52 random bits centred in their cell: (k + 0.5) / 2^52 lies in (0,1). */
    uint64_t k = rng_next(r) >> 12;
    return ((double)k + 0.5) * (1.0 / 4503599627370496.0);
}

float rng_uniformf_open(rng_t *r)
{
    /* 23 bits keep (k + 0.5) / 2^23 exactly representable and below 1. */
    uint32_t k = (uint32_t)(rng_next(r) >> 41);
    return ((float)k + 0.5f) * (1.0f / 8388608.0f);
}

uint32_t rng_below(rng_t *r, uint32_t n)
{
    /* Lemire's multiply-and-reject. */
    uint64_t m = (uint64_t)(uint32_t)(rng_next(r) >> 32) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)(uint32_t)(rng_next(r) >> 32) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

double rng_normal(rng_t *r)
{
    double u1 = rng_uniform_open(r), u2 = rng_uniform_open(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void rng_fork(const rng_t *r, uint64_t w, rng_t *out)
{
    uint64_t x = r->s[0] ^ rotl(r->s[1], 13) ^ rotl(r->s[2], 29) ^ rotl(r->s[3], 47);
    x ^= 0xd1b54a32d192ed03ULL * (w + 1);
    rng_seed(out, splitmix64(&x));
}
