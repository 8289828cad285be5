/* test_gumbel.c: the samplers.  Gumbel-max and u < sigmoid(l) draw from the
 * right distributions (chi-square goodness of fit on fixed seeds), the noise
 * is finite even at the extreme uniforms the generator can return, the
 * generator is reproducible and unbiased, and the Gumbel-Softmax relaxation
 * behaves at the temperatures training uses and far below them.
 *
 * Chi-square critical values are the 0.999 quantiles (upper tail 0.001)
 * from NIST/SEMATECH e-Handbook of Statistical Methods, section 1.3.6.7.4,
 * "Critical Values of the Chi-Square Distribution".  With fixed seeds each
 * test either passes or fails for good; a correct sampler fails one with
 * probability 0.001 over the choice of seed. */
#include "estimator.h"
#include "gumbel.h"
#include "layers.h"
#include "model.h"
#include "rng.h"

#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHI2_999_DF2 13.816
#define CHI2_999_DF5 20.515
#define CHI2_999_DF6 22.458

#define EULER_GAMMA 0.5772156649015329
#define PI 3.141592653589793

/* Statistics for the record, with GSVAE_TEST_VERBOSE set. */
static void note(const char *fmt, ...)
{
    if (!getenv("GSVAE_TEST_VERBOSE"))
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

/* sum (observed - expected)^2 / expected over K cells. */
static double chi_square(const long *count, const double *p, int K, long n)
{
    double s = 0;
    for (int k = 0; k < K; k++) {
        double e = (double)n * p[k];
        s += (count[k] - e) * (count[k] - e) / e;
    }
    return s;
}

static void softmax_ref(double *p, const float *l, int K, double tau)
{
    double m = -INFINITY, s = 0;
    for (int k = 0; k < K; k++)
        m = fmax(m, l[k] / tau);
    for (int k = 0; k < K; k++)
        s += p[k] = exp(l[k] / tau - m);
    for (int k = 0; k < K; k++)
        p[k] /= s;
}

/* ---- Gumbel-max ---- */

enum { K6 = 6 };
static const float uneven[K6] = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, -2.5f};

START_TEST(gumbel_max_matches_softmax)
{
    /* argmax(l + g), g ~ Gumbel(0,1), is a draw from softmax(l). */
    enum { ROWS = 1000, CHUNKS = 200 };
    const long n = (long)ROWS * CHUNKS;
    float *l = malloc(sizeof(float) * ROWS * K6), *g = malloc(sizeof(float) * ROWS * K6);
    int idx[ROWS];
    ck_assert(l && g);
    rng_t r;
    rng_seed(&r, 2017);
    long count[K6] = {0};
    for (int c = 0; c < CHUNKS; c++) {
        gumbel_noise(g, (size_t)ROWS * K6, &r);
        for (int i = 0; i < ROWS * K6; i++)
            l[i] = uneven[i % K6] + g[i];
        argmax_rows(idx, l, ROWS, K6);
        for (int i = 0; i < ROWS; i++)
            count[idx[i]]++;
    }
    double p[K6];
    softmax_ref(p, uneven, K6, 1.0);
    double stat = chi_square(count, p, K6, n);
    ck_assert_msg(stat < CHI2_999_DF5, "Gumbel-max: chi-square %.2f >= %.3f (5 dof)", stat,
                  CHI2_999_DF5);
    /* The test has power: the same counts reject softmax(l / 1.05). */
    double p_off[K6];
    softmax_ref(p_off, uneven, K6, 1.05);
    double stat_off = chi_square(count, p_off, K6, n);
    note("Gumbel-max chi-square %.2f (wrong tau: %.1f)\n", stat, stat_off);
    ck_assert_msg(stat_off > CHI2_999_DF5, "chi-square against a 5%% wrong temperature %.2f",
                  stat_off);
    free(l);
    free(g);
}
END_TEST

START_TEST(sample_hard_categorical)
{
    /* est_sample_hard, the sampler of evaluation, on two groups with
     * different logits; every output row one-hot. */
    enum { N = 2, BATCH = 1000, REPS = 100 };
    const float other[K6] = {-1.0f, 3.0f, 0.0f, 0.1f, 1.0f, -4.0f};
    vae_config cfg = {.latent = LATENT_CATEGORICAL, .N = N, .K = K6, .D = 1};
    float *logits = malloc(sizeof(float) * BATCH * N * K6);
    float *noise = malloc(sizeof(float) * BATCH * N * K6), *z = malloc(sizeof(float) * BATCH * N * K6);
    ck_assert(logits && noise && z);
    for (int b = 0; b < BATCH; b++) {
        memcpy(logits + (b * N + 0) * K6, uneven, sizeof uneven);
        memcpy(logits + (b * N + 1) * K6, other, sizeof other);
    }
    rng_t r;
    rng_seed(&r, 7);
    long count[N][K6] = {{0}};
    for (int rep = 0; rep < REPS; rep++) {
        est_sample_hard(&cfg, logits, BATCH, noise, z, &r);
        for (int g = 0; g < BATCH * N; g++) {
            int ones = 0, at = -1;
            for (int k = 0; k < K6; k++) {
                float v = z[g * K6 + k];
                ck_assert_msg(v == 0.0f || v == 1.0f, "z = %g", (double)v);
                if (v == 1.0f) {
                    ones++;
                    at = k;
                }
            }
            ck_assert_int_eq(ones, 1);
            count[g % N][at]++;
        }
    }
    for (int i = 0; i < N; i++) {
        double p[K6];
        softmax_ref(p, i ? other : uneven, K6, 1.0);
        double stat = chi_square(count[i], p, K6, (long)BATCH * REPS);
        note("est_sample_hard group %d chi-square %.2f\n", i, stat);
        ck_assert_msg(stat < CHI2_999_DF5, "group %d: chi-square %.2f >= %.3f", i, stat,
                      CHI2_999_DF5);
    }
    free(logits);
    free(noise);
    free(z);
}
END_TEST

/* ---- Bernoulli units ---- */

enum { NB = 5 };
static const float bern_logits[NB] = {-3.0f, -1.0f, 0.0f, 0.7f, 2.5f};

/* sum over units of (c - n p)^2 / (n p (1 - p)): chi-square with NB dof. */
static double bernoulli_chi_square(const long *ones, long n)
{
    double s = 0;
    for (int i = 0; i < NB; i++) {
        double p = 1 / (1 + exp(-(double)bern_logits[i])), e = n * p;
        s += (ones[i] - e) * (ones[i] - e) / (e * (1 - p));
    }
    return s;
}

START_TEST(sample_hard_bernoulli)
{
    enum { BATCH = 1000, REPS = 200 };
    vae_config cfg = {.latent = LATENT_BERNOULLI, .N = NB, .K = 1, .D = 1};
    float logits[BATCH * NB], noise[BATCH * NB], z[BATCH * NB];
    for (int b = 0; b < BATCH; b++)
        memcpy(logits + b * NB, bern_logits, sizeof bern_logits);
    rng_t r;
    rng_seed(&r, 8);
    long ones[NB] = {0};
    for (int rep = 0; rep < REPS; rep++) {
        est_sample_hard(&cfg, logits, BATCH, noise, z, &r);
        for (int j = 0; j < BATCH * NB; j++) {
            ck_assert(z[j] == 0.0f || z[j] == 1.0f);
            ones[j % NB] += z[j] == 1.0f;
        }
    }
    double stat = bernoulli_chi_square(ones, (long)BATCH * REPS);
    note("est_sample_hard Bernoulli chi-square %.2f\n", stat);
    ck_assert_msg(stat < CHI2_999_DF5, "u < sigmoid(l): chi-square %.2f >= %.3f", stat,
                  CHI2_999_DF5);
}
END_TEST

START_TEST(binary_concrete_rounds_to_bernoulli)
{
    /* P(sigmoid((l + L) / tau) > 1/2) = P(L > -l) = sigmoid(l) for logistic
     * L, at any tau: the hard sample of the binary straight-through. */
    enum { BATCH = 1000, REPS = 200 };
    float logits[BATCH * NB], noise[BATCH * NB], y[BATCH * NB], z[BATCH * NB];
    for (int b = 0; b < BATCH; b++)
        memcpy(logits + b * NB, bern_logits, sizeof bern_logits);
    rng_t r;
    rng_seed(&r, 9);
    long ones[NB] = {0};
    for (int rep = 0; rep < REPS; rep++) {
        logistic_noise(noise, BATCH * NB, &r);
        binary_concrete_forward(y, logits, noise, BATCH * NB, rep % 2 ? 0.5f : 2.0f);
        threshold_half(z, y, BATCH * NB);
        for (int j = 0; j < BATCH * NB; j++) {
            ck_assert(isfinite(y[j]) && y[j] >= 0 && y[j] <= 1);
            ck_assert(z[j] == (y[j] > 0.5f ? 1.0f : 0.0f));
            ones[j % NB] += z[j] == 1.0f;
        }
    }
    double stat = bernoulli_chi_square(ones, (long)BATCH * REPS);
    note("binary concrete chi-square %.2f\n", stat);
    ck_assert_msg(stat < CHI2_999_DF5, "binary concrete: chi-square %.2f >= %.3f", stat,
                  CHI2_999_DF5);
    float half = 0.5f, out;
    threshold_half(&out, &half, 1);
    ck_assert(out == 0.0f);
}
END_TEST

/* ---- noise ---- */

/* x^-1 mod 2^64 for odd x (Newton's iteration doubles the correct bits). */
static uint64_t inverse_mod64(uint64_t x)
{
    uint64_t y = x;
    for (int i = 0; i < 6; i++)
        y *= 2 - x * y;
    return y;
}

/* A generator whose next output is `want`: xoshiro256**'s output depends on
 * s[1] alone, result = rotl(s[1] * 5, 7) * 9. */
static void rng_forcing(rng_t *r, uint64_t want)
{
    uint64_t x = want * inverse_mod64(9);
    x = x >> 7 | x << 57; /* rotr 7 */
    r->s[0] = 0x0123456789abcdefULL;
    r->s[1] = x * inverse_mod64(5);
    r->s[2] = 0xfedcba9876543210ULL;
    r->s[3] = 1;
    rng_t probe = *r;
    ck_assert(rng_next(&probe) == want);
}

START_TEST(extreme_uniforms)
{
    /* The smallest and largest uniforms the generator can return. */
    rng_t r;
    rng_forcing(&r, 0);
    double lo = rng_uniform_open(&r);
    rng_forcing(&r, UINT64_MAX);
    double hi = rng_uniform_open(&r);
    ck_assert(lo > 0 && lo < 1e-15 && hi < 1 && hi > 1 - 1e-15);
    rng_forcing(&r, 0);
    float flo = rng_uniformf_open(&r);
    rng_forcing(&r, UINT64_MAX);
    float fhi = rng_uniformf_open(&r);
    ck_assert(flo > 0 && flo < 1e-6f && fhi < 1 && fhi > 1 - 1e-6f);

    /* The noise at both ends: finite, and where -log(-log u) puts it. */
    float g;
    rng_forcing(&r, 0);
    gumbel_noise(&g, 1, &r);
    ck_assert_msg(isfinite(g) && fabs(g - -log(-log(lo))) < 1e-5, "Gumbel at u min: %g",
                  (double)g);
    rng_forcing(&r, UINT64_MAX);
    gumbel_noise(&g, 1, &r);
    ck_assert_msg(isfinite(g) && g > 36 && fabs(g - -log(-log(hi))) < 1e-3,
                  "Gumbel at u max: %g", (double)g);
    rng_forcing(&r, 0);
    logistic_noise(&g, 1, &r);
    ck_assert_msg(isfinite(g) && g < -36, "logistic at u min: %g", (double)g);
    rng_forcing(&r, UINT64_MAX);
    logistic_noise(&g, 1, &r);
    ck_assert_msg(isfinite(g) && g > 36, "logistic at u max: %g", (double)g);
}
END_TEST

START_TEST(gumbel_noise_moments)
{
    /* 10^6 draws: all finite, inside [-log(-log u_min), -log(-log u_max)],
     * mean Euler's gamma and variance pi^2/6 to within 5 standard errors
     * (sd of the mean 1.3e-3; of the variance 3.5e-3, Gumbel kurtosis 5.4). */
    enum { CHUNK = 10000, CHUNKS = 100 };
    float g[CHUNK];
    rng_t r;
    rng_seed(&r, 31);
    double s = 0, s2 = 0, lo = INFINITY, hi = -INFINITY;
    const long n = (long)CHUNK * CHUNKS;
    for (int c = 0; c < CHUNKS; c++) {
        gumbel_noise(g, CHUNK, &r);
        for (int i = 0; i < CHUNK; i++) {
            ck_assert_msg(isfinite(g[i]), "draw %d: %g", c * CHUNK + i, (double)g[i]);
            s += g[i];
            s2 += (double)g[i] * g[i];
            lo = fmin(lo, g[i]);
            hi = fmax(hi, g[i]);
        }
    }
    double mean = s / n, var = s2 / n - mean * mean;
    note("Gumbel: min %.3f max %.3f mean %.5f var %.5f\n", lo, hi, mean, var);
    ck_assert(lo > -3.61 && hi < 36.8);
    ck_assert_msg(fabs(mean - EULER_GAMMA) < 5 * 1.3e-3, "Gumbel mean %.5f", mean);
    ck_assert_msg(fabs(var - PI * PI / 6) < 5 * 3.5e-3, "Gumbel variance %.5f", var);

    /* Logistic: mean 0, variance pi^2/3 (sd of the mean 1.8e-3, of the variance 5.9e-3,
     * kurtosis 4.2). */
    s = s2 = 0;
    for (int c = 0; c < CHUNKS; c++) {
        logistic_noise(g, CHUNK, &r);
        for (int i = 0; i < CHUNK; i++) {
            ck_assert(isfinite(g[i]));
            s += g[i];
            s2 += (double)g[i] * g[i];
        }
    }
    mean = s / n;
    var = s2 / n - mean * mean;
    note("logistic: mean %.5f var %.5f\n", mean, var);
    ck_assert_msg(fabs(mean) < 5 * 1.8e-3, "logistic mean %.5f", mean);
    ck_assert_msg(fabs(var - PI * PI / 3) < 5 * 5.9e-3, "logistic variance %.5f", var);
}
END_TEST

/* ---- the generator ---- */

START_TEST(uniform_open_interval)
{
    /* 10^6 draws each, never 0 or 1; mean 1/2 within 5 standard errors
     * (sd 1/sqrt(12 n) = 2.9e-4). */
    const long n = 1000000;
    rng_t r;
    rng_seed(&r, 41);
    double s = 0, sf = 0;
    for (long i = 0; i < n; i++) {
        double u = rng_uniform_open(&r);
        float uf = rng_uniformf_open(&r);
        ck_assert_msg(u > 0 && u < 1, "draw %ld: %.17g", i, u);
        ck_assert_msg(uf > 0 && uf < 1, "draw %ld: %.9g", i, (double)uf);
        s += u;
        sf += uf;
    }
    note("uniform means %.6f %.6f\n", s / n, sf / n);
    ck_assert_msg(fabs(s / n - 0.5) < 5 * 2.9e-4, "mean %.6f", s / n);
    ck_assert_msg(fabs(sf / n - 0.5) < 5 * 2.9e-4, "float mean %.6f", sf / n);
}
END_TEST

/* Lemire's multiply-and-reject as the paper states it. */
static uint32_t below_ref(rng_t *r, uint32_t n)
{
    uint32_t threshold = (uint32_t)(0u - n) % n;
    for (;;) {
        uint64_t m = (rng_next(r) >> 32) * (uint64_t)n;
        if ((uint32_t)m >= threshold)
            return (uint32_t)(m >> 32);
    }
}

START_TEST(below_unbiased)
{
    rng_t r;
    rng_seed(&r, 51);
    /* Seven values, 700000 draws. */
    {
        enum { n = 7 };
        long count[n] = {0};
        const long draws = 700000;
        for (long i = 0; i < draws; i++) {
            uint32_t v = rng_below(&r, n);
            ck_assert_uint_lt(v, n);
            count[v]++;
        }
        double p[n];
        for (int k = 0; k < n; k++)
            p[k] = 1.0 / n;
        double stat = chi_square(count, p, n, draws);
        note("rng_below(7) chi-square %.2f\n", stat);
        ck_assert_msg(stat < CHI2_999_DF6, "rng_below(7): chi-square %.2f", stat);
    }
    /* n = 3 * 2^30, where a plain (x >> 32) % n would give [0, 2^30) twice
     * the weight of the rest: three equal thirds. */
    {
        const uint32_t n = 3u << 30;
        long count[3] = {0};
        const long draws = 300000;
        for (long i = 0; i < draws; i++) {
            uint32_t v = rng_below(&r, n);
            ck_assert_uint_lt(v, n);
            count[v >> 30]++;
        }
        const double p[3] = {1.0 / 3, 1.0 / 3, 1.0 / 3};
        double stat = chi_square(count, p, 3, draws);
        note("rng_below(3 * 2^30) chi-square %.2f\n", stat);
        ck_assert_msg(stat < CHI2_999_DF2, "rng_below(3 * 2^30): chi-square %.2f", stat);
    }
    /* The rejection step, whose bias (2^-32) no sample size here could
     * see, against Lemire's method written plainly: same value, same
     * number of draws consumed.  Forced first draws hit the edges: for
     * n = 3 * 2^30 a top word 0 is rejected and 2^32 - 1 kept; for
     * n = 2^31 + 1 (threshold 2^31 - 1) low words just under and on the
     * threshold. */
    {
        const uint32_t n1 = 3u << 30, n2 = (1u << 31) + 1, t2 = (1u << 31) - 1;
        const uint32_t inv2 = (uint32_t)inverse_mod64(n2);
        const struct {
            uint32_t n;
            uint64_t first;
        } cases[] = {
            {n1, 0},
            {n1, UINT64_MAX},
            {n2, (uint64_t)((t2 - 1) * inv2) << 32}, /* low word t2 - 1: redrawn */
            {n2, (uint64_t)(t2 * inv2) << 32},       /* low word t2: kept */
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            rng_forcing(&r, cases[i].first);
            rng_t ref = r;
            uint32_t want = below_ref(&ref, cases[i].n), got = rng_below(&r, cases[i].n);
            ck_assert_msg(got == want && memcmp(&r, &ref, sizeof r) == 0,
                          "case %zu: rng_below %u, Lemire %u, or a different number of draws", i,
                          got, want);
        }
        rng_forcing(&r, UINT64_MAX);
        ck_assert_uint_eq(rng_below(&r, n1), n1 - 1);
        for (int i = 0; i < 10000; i++) {
            uint32_t n = (uint32_t)(rng_next(&r) >> 32) | 1;
            rng_t ref = r;
            ck_assert_uint_eq(rng_below(&r, n), below_ref(&ref, n));
            ck_assert(memcmp(&r, &ref, sizeof r) == 0);
        }
    }
    for (int i = 0; i < 1000; i++) {
        ck_assert_uint_eq(rng_below(&r, 1), 0);
        ck_assert_uint_lt(rng_below(&r, UINT32_MAX), UINT32_MAX);
    }
}
END_TEST

START_TEST(same_seed_same_stream)
{
    rng_t a, b, c;
    rng_seed(&a, 12345);
    rng_seed(&b, 12345);
    rng_seed(&c, 12346);
    int differ = 0;
    for (int i = 0; i < 10000; i++) {
        uint64_t x = rng_next(&a);
        ck_assert(x == rng_next(&b));
        differ += x != rng_next(&c);
    }
    ck_assert_int_gt(differ, 9990);

    /* The noise functions too: the same seed, the same floats. */
    float g1[100], g2[100];
    rng_seed(&a, 77);
    rng_seed(&b, 77);
    gumbel_noise(g1, 100, &a);
    gumbel_noise(g2, 100, &b);
    ck_assert(memcmp(g1, g2, sizeof g1) == 0);

    /* A fork leaves its parent alone, is reproducible, and differs by
     * worker and from the parent. */
    rng_seed(&a, 5);
    rng_t before = a, f0, f0again, f1;
    rng_fork(&a, 0, &f0);
    rng_fork(&a, 0, &f0again);
    rng_fork(&a, 1, &f1);
    ck_assert(memcmp(&a, &before, sizeof a) == 0);
    uint64_t x0 = rng_next(&f0), x1 = rng_next(&f1), xp = rng_next(&a);
    ck_assert(x0 == rng_next(&f0again));
    ck_assert(x0 != x1 && x0 != xp && x1 != xp);
}
END_TEST

/* ---- the relaxation ---- */

START_TEST(gumbel_softmax_temperatures)
{
    /* Rows sum to 1, keep the order of l + g, and approach one-hot as tau
     * falls: the mean largest entry rises with 1/tau, past 0.95 at 0.05. */
    enum { R = 2000, K = 10 };
    const float taus[] = {5.0f, 1.0f, 0.5f, 0.1f, 0.05f};
    float *l = malloc(sizeof(float) * R * K), *g = malloc(sizeof(float) * R * K);
    float *y = malloc(sizeof(float) * R * K), *lg = malloc(sizeof(float) * R * K);
    int *idx = malloc(sizeof(int) * R);
    ck_assert(l && g && y && lg && idx);
    rng_t r;
    rng_seed(&r, 61);
    for (int i = 0; i < R * K; i++)
        l[i] = (float)(4 * rng_uniform_open(&r) - 2);
    gumbel_noise(g, (size_t)R * K, &r);
    for (int i = 0; i < R * K; i++)
        lg[i] = l[i] + g[i];
    argmax_rows(idx, lg, R, K);
    double prev = 0;
    for (size_t t = 0; t < sizeof taus / sizeof taus[0]; t++) {
        gumbel_softmax_forward(y, l, g, R, K, taus[t]);
        double mean_max = 0;
        for (int row = 0; row < R; row++) {
            const float *yr = y + row * K;
            double s = 0;
            for (int k = 0; k < K; k++) {
                ck_assert(isfinite(yr[k]) && yr[k] >= 0 && yr[k] <= 1);
                s += yr[k];
                ck_assert_msg(yr[k] <= yr[idx[row]], "tau %g row %d: order of l + g lost",
                              (double)taus[t], row);
            }
            ck_assert_msg(fabs(s - 1) < 1e-5, "tau %g row %d sums to %.9g", (double)taus[t], row,
                          s);
            mean_max += yr[idx[row]];
        }
        mean_max /= R;
        note("Gumbel-Softmax tau %g: mean max entry %.4f\n", (double)taus[t], mean_max);
        ck_assert_msg(mean_max > prev, "tau %g: mean max %.4f not above %.4f", (double)taus[t],
                      mean_max, prev);
        prev = mean_max;
        if (taus[t] == 5.0f)
            ck_assert_msg(mean_max < 0.4, "tau 5: mean max %.4f", mean_max);
    }
    ck_assert_msg(prev > 0.95, "tau 0.05: mean max %.4f", prev);
    free(l);
    free(g);
    free(y);
    free(lg);
    free(idx);
}
END_TEST

START_TEST(gumbel_softmax_extreme)
{
    /* tau = 0.01 with logits up to +-50: (l + g) / tau reaches 5000; the
     * max subtraction keeps every entry finite, the rows on the simplex and
     * the backward finite. */
    enum { R = 500, K = 8 };
    float *l = malloc(sizeof(float) * R * K), *g = malloc(sizeof(float) * R * K);
    float *y = malloc(sizeof(float) * R * K), *dy = malloc(sizeof(float) * R * K);
    float *dl = malloc(sizeof(float) * R * K);
    ck_assert(l && g && y && dy && dl);
    rng_t r;
    rng_seed(&r, 71);
    for (int i = 0; i < R * K; i++) {
        l[i] = (float)(100 * rng_uniform_open(&r) - 50);
        dy[i] = (float)(2 * rng_uniform_open(&r) - 1);
    }
    l[0] = 50;
    l[1] = -50;
    gumbel_noise(g, (size_t)R * K, &r);
    const float taus[] = {0.01f, 1.0f, 100.0f};
    for (size_t t = 0; t < sizeof taus / sizeof taus[0]; t++) {
        gumbel_softmax_forward(y, l, g, R, K, taus[t]);
        gumbel_softmax_backward(dl, y, dy, R, K, taus[t]);
        for (int row = 0; row < R; row++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                ck_assert(isfinite(y[row * K + k]) && isfinite(dl[row * K + k]));
                s += y[row * K + k];
            }
            ck_assert_msg(fabs(s - 1) < 1e-5, "tau %g row %d sums to %.9g", (double)taus[t], row,
                          s);
        }
    }
    /* Binary Concrete at the same extremes. */
    binary_concrete_forward(y, l, g, (size_t)R * K, 0.01f);
    binary_concrete_backward(dl, y, dy, (size_t)R * K, 0.01f);
    for (int i = 0; i < R * K; i++)
        ck_assert(isfinite(y[i]) && y[i] >= 0 && y[i] <= 1 && isfinite(dl[i]));
    free(l);
    free(g);
    free(y);
    free(dy);
    free(dl);
}
END_TEST

START_TEST(straight_through_forward_is_one_hot)
{
    enum { R = 1000, K = 7 };
    float *l = malloc(sizeof(float) * R * K), *g = malloc(sizeof(float) * R * K);
    float *y = malloc(sizeof(float) * R * K), *z = malloc(sizeof(float) * R * K);
    int *idx = malloc(sizeof(int) * R);
    ck_assert(l && g && y && z && idx);
    rng_t r;
    rng_seed(&r, 81);
    for (int i = 0; i < R * K; i++)
        l[i] = (float)(6 * rng_uniform_open(&r) - 3);
    gumbel_noise(g, (size_t)R * K, &r);
    const float taus[] = {0.1f, 1.0f, 10.0f};
    for (size_t t = 0; t < sizeof taus / sizeof taus[0]; t++) {
        gumbel_softmax_forward(y, l, g, R, K, taus[t]);
        onehot_argmax(z, y, R, K);
        argmax_rows(idx, y, R, K);
        for (int row = 0; row < R; row++)
            for (int k = 0; k < K; k++)
                ck_assert_msg(z[row * K + k] == (k == idx[row] ? 1.0f : 0.0f),
                              "tau %g row %d: z[%d] = %g, argmax %d", (double)taus[t], row, k,
                              (double)z[row * K + k], idx[row]);
    }
    /* Ties go to the first. */
    const float tie[3] = {0.2f, 0.4f, 0.4f};
    float zt[3];
    int it;
    onehot_argmax(zt, tie, 1, 3);
    argmax_rows(&it, tie, 1, 3);
    ck_assert(zt[0] == 0.0f && zt[1] == 1.0f && zt[2] == 0.0f && it == 1);
    free(l);
    free(g);
    free(y);
    free(z);
    free(idx);
}
END_TEST

static Suite *gumbel_suite(void)
{
    Suite *s = suite_create("gumbel");
    TCase *tc = tcase_create("gumbel");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, gumbel_max_matches_softmax);
    tcase_add_test(tc, sample_hard_categorical);
    tcase_add_test(tc, sample_hard_bernoulli);
    tcase_add_test(tc, binary_concrete_rounds_to_bernoulli);
    tcase_add_test(tc, extreme_uniforms);
    tcase_add_test(tc, gumbel_noise_moments);
    tcase_add_test(tc, uniform_open_interval);
    tcase_add_test(tc, below_unbiased);
    tcase_add_test(tc, same_seed_same_stream);
    tcase_add_test(tc, gumbel_softmax_temperatures);
    tcase_add_test(tc, gumbel_softmax_extreme);
    tcase_add_test(tc, straight_through_forward_is_one_hot);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(gumbel_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
