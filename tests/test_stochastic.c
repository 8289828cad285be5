/* test_stochastic.c: the stochastic layer of vae/core/stochastic.h.
 *
 * - The probabilities at temperature tau and the relaxed sample (fixed
 *   noise) against a double-precision reference, and their backward pass
 *   (stoch_probs_backward) against central differences of that reference:
 *   d/dl of <v, p(l)> for a random v, step 1e-5.  Both latent types, tau
 *   1, 0.5 and 2.5.  Bound per coordinate: |a - n| <= 1e-4 max_j |n_j| +
 *   1e-6 (float arithmetic against double differences).
 * - DARN's categorical form at K = 2 equals the Bernoulli form, and at
 *   another expansion point its formula; the score
 *   term against its formula with S rows per example.
 * - The hard samplers draw from the layer's law (chi-square at the 0.999
 *   quantile on fixed seeds), never pick a class of probability 0, and
 *   pass a NaN probability on; log q of a hard sample against its formula.
 * - NVIL's centring: the first batch left as it is and its mean and
 *   variance taken whole; later batches centred and scaled by the
 *   statistics of earlier ones only, then folded in with decay 0.8; frozen
 *   statistics never move; the running mean of batches drawn around a
 *   fixed mean converges to it.
 * - REBAR's conditional resample zt ~ z | b: its hard value is b; dzt and
 *   the Jacobian products (backward J^T g, tangent J tl) against central
 *   differences, both latent types; drawn after b ~ q, its law is z's
 *   (logistic for a unit; for a categorical variable, per class the mean,
 *   variance and CDF at the location of l + Gumbel, zero covariances).
 * - The estimator list: names parse back, each help is one line, and a
 *   refusal is one line that names the flag, the task and its choices. */
#include "rng.h"
#include "stochastic.h"
#include "util.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_STEP 1e-5
#define FD_REL 1e-4
#define FD_ABS 1e-6
#define CHI2_999_DF2 13.816
#define CHI2_999_DF4 18.467

enum { R = 3, MAXU = 12 };

/* The shapes under test: 2 variables of 4 classes, or 4 Bernoulli units. */
static stoch_layer layer_of(int categorical)
{
    return categorical ? (stoch_layer){LATENT_CATEGORICAL, 2, 4}
                       : (stoch_layer){LATENT_BERNOULLI, 4, 1};
}

static void random_fill(float *x, int n, double scale, rng_t *r)
{
    for (int i = 0; i < n; i++)
        x[i] = (float)(scale * (2.0 * rng_uniform_open(r) - 1.0));
}

/* softmax(a / tau) per variable or sigmoid(a / tau) per unit, one row, in
 * double. */
static void probs_ref(const stoch_layer *s, const double *a, double tau, double *p)
{
    if (s->type == LATENT_BERNOULLI) {
        for (int i = 0; i < s->N; i++)
            p[i] = 1.0 / (1.0 + exp(-a[i] / tau));
        return;
    }
    for (int g = 0; g < s->N; g++) {
        const double *ag = a + g * s->K;
        double m = -INFINITY, sum = 0.0;
        for (int k = 0; k < s->K; k++)
            m = fmax(m, ag[k] / tau);
        for (int k = 0; k < s->K; k++)
            sum += p[g * s->K + k] = exp(ag[k] / tau - m);
        for (int k = 0; k < s->K; k++)
            p[g * s->K + k] /= sum;
    }
}

/* <v, probs_ref(l + noise)> of one row. */
static double dot_ref(const stoch_layer *s, const double *l, const float *noise, const float *v,
                      double tau)
{
    double a[MAXU], p[MAXU], f = 0.0;
    int Z = stoch_dim(s);
    for (int j = 0; j < Z; j++)
        a[j] = l[j] + (noise ? noise[j] : 0.0);
    probs_ref(s, a, tau, p);
    for (int j = 0; j < Z; j++)
        f += v[j] * p[j];
    return f;
}

/* Checks forward (p) and backward (g = J^T v) of R rows against the
 * reference, with the noise of a relaxed sample or none. */
static void check_against_reference(const stoch_layer *s, const float *logits,
                                    const float *noise, const float *v, const float *p,
                                    const float *g, double tau, const char *what)
{
    int Z = stoch_dim(s);
    for (int r = 0; r < R; r++) {
        double l[MAXU], a[MAXU], pr[MAXU], fd[MAXU], scale = 0.0;
        const float *nr = noise ? noise + r * Z : NULL;
        for (int j = 0; j < Z; j++) {
            l[j] = logits[r * Z + j];
            a[j] = l[j] + (nr ? nr[j] : 0.0);
        }
        probs_ref(s, a, tau, pr);
        for (int j = 0; j < Z; j++) {
            ck_assert_msg(fabs(p[r * Z + j] - pr[j]) <= 1e-6 * (1.0 + pr[j]),
                          "%s tau %g row %d: forward %d: %.9g, reference %.9g", what, tau, r, j,
                          (double)p[r * Z + j], pr[j]);
            double keep = l[j];
            l[j] = keep + FD_STEP;
            double up = dot_ref(s, l, nr, v + r * Z, tau);
            l[j] = keep - FD_STEP;
            double down = dot_ref(s, l, nr, v + r * Z, tau);
            l[j] = keep;
            fd[j] = (up - down) / (2 * FD_STEP);
            scale = fmax(scale, fabs(fd[j]));
        }
        for (int j = 0; j < Z; j++)
            ck_assert_msg(fabs(g[r * Z + j] - fd[j]) <= FD_REL * scale + FD_ABS,
                          "%s tau %g row %d: backward %d: %.9g, central difference %.9g", what,
                          tau, r, j, (double)g[r * Z + j], fd[j]);
    }
}

static const double taus[] = {1.0, 0.5, 2.5};

START_TEST(probs_backward_matches_finite_differences)
{
    stoch_layer s = layer_of(_i);
    int n = R * stoch_dim(&s);
    rng_t r;
    rng_seed(&r, 1 + _i);
    for (size_t t = 0; t < sizeof taus / sizeof taus[0]; t++) {
        float l[R * MAXU], v[R * MAXU], p[R * MAXU], g[R * MAXU];
        random_fill(l, n, 3.0, &r);
        random_fill(v, n, 1.0, &r);
        stoch_probs_forward(&s, p, l, R, (float)taus[t]);
        stoch_probs_backward(&s, g, p, v, R, (float)taus[t]);
        check_against_reference(&s, l, NULL, v, p, g, taus[t], "probabilities");
    }
}
END_TEST

START_TEST(relaxed_backward_matches_finite_differences)
{
    stoch_layer s = layer_of(_i);
    int n = R * stoch_dim(&s);
    rng_t r;
    rng_seed(&r, 3 + _i);
    for (size_t t = 0; t < sizeof taus / sizeof taus[0]; t++) {
        float l[R * MAXU], v[R * MAXU], y[R * MAXU], g[R * MAXU], noise[R * MAXU];
        random_fill(l, n, 2.0, &r);
        random_fill(v, n, 1.0, &r);
        stoch_relaxed_sample(&s, y, noise, l, R, (float)taus[t], &r);
        for (int i = 0; i < n; i++)
            ck_assert(isfinite(noise[i]));
        stoch_probs_backward(&s, g, y, v, R, (float)taus[t]);
        check_against_reference(&s, l, noise, v, y, g, taus[t], "relaxed sample");
    }
}
END_TEST

/* ---- the score-function pieces ---- */

START_TEST(darn_categorical_k2_is_bernoulli)
{
    /* Two classes (a, b) are one unit of logit a - b: the code (1, 0) is
     * the bit 1, and f'(bit) = dz0 - dz1. */
    stoch_layer cat = {LATENT_CATEGORICAL, 3, 2}, bern = {LATENT_BERNOULLI, 3, 1};
    const float z2[6] = {1, 0, 0, 1, 1, 0}, p2[6] = {0.3f, 0.7f, 0.9f, 0.1f, 0.55f, 0.45f};
    const float dz2[6] = {0.4f, -1.2f, 2.0f, 0.5f, -0.3f, -0.1f};
    float z1[3], p1[3], dz1[3], dl2[6], dl1[3];
    for (int i = 0; i < 3; i++) {
        z1[i] = z2[2 * i];
        p1[i] = p2[2 * i];
        dz1[i] = dz2[2 * i] - dz2[2 * i + 1];
    }
    stoch_darn_backward(&cat, dl2, z2, p2, dz2, 1, STOCH_DARN_CENTRE);
    stoch_darn_backward(&bern, dl1, z1, p1, dz1, 1, STOCH_DARN_CENTRE);
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(fabsf(dl2[2 * i] - dl1[i]) <= 1e-6f, "unit %d: %g vs %g", i,
                      (double)dl2[2 * i], (double)dl1[i]);
        ck_assert(fabsf(dl2[2 * i] + dl2[2 * i + 1]) <= 1e-6f);
    }
}
END_TEST

/* Another expansion point for every categorical entry: the signal
 * <dz, z - zbar> with zbar = 1/2 here, against the formula written out. */
START_TEST(darn_categorical_point)
{
    stoch_layer cat = {LATENT_CATEGORICAL, 2, 3};
    const float z[6] = {0, 1, 0, 1, 0, 0}, p[6] = {0.2f, 0.5f, 0.3f, 0.6f, 0.1f, 0.3f};
    const float dz[6] = {0.4f, -1.2f, 2.0f, 0.5f, -0.3f, -0.1f};
    float dl[6], centre[6];
    stoch_darn_backward(&cat, dl, z, p, dz, 1, 0.5f);
    stoch_darn_backward(&cat, centre, z, p, dz, 1, STOCH_DARN_CENTRE);
    for (int g = 0; g < 2; g++) {
        double half = 0.0, third = 0.0;
        for (int k = 0; k < 3; k++) {
            half += dz[3 * g + k] * (z[3 * g + k] - 0.5);
            third += dz[3 * g + k] * (z[3 * g + k] - 1.0 / 3);
        }
        for (int k = 0; k < 3; k++) {
            int i = 3 * g + k;
            ck_assert_msg(fabs(dl[i] - half * (z[i] - p[i])) <= 1e-6, "entry %d: %g", i, (double)dl[i]);
            ck_assert_msg(fabs(centre[i] - third * (z[i] - p[i])) <= 1e-6, "entry %d: %g", i,
                          (double)centre[i]);
        }
    }
}
END_TEST

START_TEST(score_add_formula)
{
    /* dl += (u[r / S] / B) (z - p), onto what dl held. */
    enum { B = 2, S = 2 };
    stoch_layer s = {LATENT_CATEGORICAL, 1, 3};
    const float z[B * S * 3] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0};
    const float p[B * S * 3] = {.2f, .3f, .5f, .2f, .3f, .5f, .6f, .3f, .1f, .6f, .3f, .1f};
    const double u[B] = {2.0, -4.0};
    float dl[B * S * 3];
    for (int i = 0; i < B * S * 3; i++)
        dl[i] = 0.25f * i;
    stoch_score_add(&s, dl, z, p, u, B * S, S, B);
    for (int i = 0; i < B * S * 3; i++) {
        double want = 0.25 * i + u[i / (S * 3)] / B * (z[i] - p[i]);
        ck_assert_msg(fabs(dl[i] - want) <= 1e-6, "%d: %g, want %g", i, (double)dl[i], want);
    }
}
END_TEST

/* ---- hard samples ---- */

static double chi_square(const long *count, const double *p, int K, long n)
{
    double s = 0;
    for (int k = 0; k < K; k++) {
        double e = (double)n * p[k];
        s += (count[k] - e) * (count[k] - e) / e;
    }
    return s;
}

START_TEST(sample_probs_law)
{
    /* One variable of 4 classes, one of them impossible, by the cumulative
     * sum: the others at their probabilities, the impossible one never. */
    enum { K = 4, DRAWS = 200000 };
    stoch_layer s = {LATENT_CATEGORICAL, 1, K};
    const float p[K] = {0.1f, 0.0f, 0.6f, 0.3f};
    long count[K] = {0};
    rng_t r;
    rng_seed(&r, 17);
    for (int d = 0; d < DRAWS; d++) {
        float z[K];
        stoch_sample_probs(&s, z, p, 1, &r);
        int ones = 0;
        for (int k = 0; k < K; k++) {
            ck_assert(z[k] == 0.0f || z[k] == 1.0f);
            ones += z[k] == 1.0f;
            count[k] += z[k] == 1.0f;
        }
        ck_assert_int_eq(ones, 1);
    }
    ck_assert_int_eq(count[1], 0);
    const long seen[3] = {count[0], count[2], count[3]};
    const double want[3] = {0.1, 0.6, 0.3};
    double stat = chi_square(seen, want, 3, DRAWS);
    ck_assert_msg(stat < CHI2_999_DF2, "chi-square %.2f", stat);

    /* Bernoulli units: u < p. */
    stoch_layer b = {LATENT_BERNOULLI, 4, 1};
    const float q[4] = {0.05f, 0.5f, 0.8f, 0.99f};
    long ones[4] = {0};
    for (int d = 0; d < DRAWS / 4; d++) {
        float z[4];
        stoch_sample_probs(&b, z, q, 1, &r);
        for (int i = 0; i < 4; i++)
            ones[i] += z[i] == 1.0f;
    }
    double sb = 0;
    for (int i = 0; i < 4; i++) {
        double e = (double)DRAWS / 4 * q[i];
        sb += (ones[i] - e) * (ones[i] - e) / (e * (1 - q[i]));
    }
    ck_assert_msg(sb < CHI2_999_DF4, "Bernoulli chi-square %.2f", sb);
}
END_TEST

/* stoch_sample_index is stoch_sample_probs written as indices: the same
 * uniforms in the same order give the same code, row after row, for both
 * kinds of layer; a NaN probability of a categorical variable gives -1. */
START_TEST(sample_index_is_sample_probs)
{
    const stoch_layer layers[2] = {{LATENT_CATEGORICAL, 5, 4}, {LATENT_BERNOULLI, 9, 1}};
    for (int l = 0; l < 2; l++) {
        const stoch_layer *s = &layers[l];
        int Z = stoch_dim(s);
        float p[36], z[36], cum[36];
        int idx[36];
        rng_t r, ra, rb;
        rng_seed(&r, 40 + l);
        for (int row = 0; row < 300; row++) {
            /* Random probabilities (normalised per variable), some 0. */
            for (int j = 0; j < Z; j++)
                p[j] = rng_uniformf_open(&r) < 0.2f ? 0.0f : rng_uniformf_open(&r);
            if (s->type == LATENT_CATEGORICAL)
                for (int i = 0; i < s->N; i++) {
                    float t = 0;
                    p[i * s->K + i % s->K] += 0.1f;
                    for (int k = 0; k < s->K; k++)
                        t += p[i * s->K + k];
                    for (int k = 0; k < s->K; k++)
                        p[i * s->K + k] /= t;
                }
            rng_seed(&ra, 1000 + row);
            rng_seed(&rb, 1000 + row);
            stoch_sample_probs(s, z, p, 1, &ra);
            stoch_index_cum(s, cum, p, 1);
            int n = stoch_sample_index(s, idx, p, cum, &rb);
            ck_assert(memcmp(&ra, &rb, sizeof ra) == 0);
            int t = 0;
            for (int j = 0; j < Z; j++) {
                int on = t < n && idx[t] == j;
                ck_assert_msg(z[j] == (on ? 1.0f : 0.0f), "layer %d row %d unit %d", l, row, j);
                t += on;
            }
            ck_assert_int_eq(t, n);
            if (s->type == LATENT_CATEGORICAL)
                ck_assert_int_eq(n, s->N);
        }
    }
    stoch_layer cat = {LATENT_CATEGORICAL, 2, 3};
    const float pn[6] = {0.2f, 0.5f, 0.3f, 0.1f, NAN, 0.7f};
    float cn[6];
    int idx[2];
    rng_t r;
    rng_seed(&r, 3);
    stoch_index_cum(&cat, cn, pn, 1);
    ck_assert_int_eq(stoch_sample_index(&cat, idx, pn, cn, &r), -1);
}
END_TEST

START_TEST(samplers_pass_nan_on)
{
    stoch_layer cat = {LATENT_CATEGORICAL, 2, 3}, bern = {LATENT_BERNOULLI, 2, 1};
    const float p[6] = {0.2f, NAN, 0.3f, 0.1f, 0.2f, 0.7f};
    float z[6], noise[6];
    rng_t r;
    rng_seed(&r, 2);
    stoch_sample_probs(&cat, z, p, 1, &r);
    for (int k = 0; k < 3; k++)
        ck_assert(isnan(z[k]));
    ck_assert(z[3] + z[4] + z[5] == 1.0f);
    const float q[2] = {NAN, 0.5f}, l[2] = {NAN, 0.0f};
    stoch_sample_probs(&bern, z, q, 1, &r);
    ck_assert(isnan(z[0]) && (z[1] == 0.0f || z[1] == 1.0f));
    stoch_sample_logits(&bern, z, l, noise, 1, &r);
    ck_assert(isnan(z[0]) && (z[1] == 0.0f || z[1] == 1.0f));
}
END_TEST

START_TEST(log_prob_formula)
{
    stoch_layer cat = {LATENT_CATEGORICAL, 2, 3}, bern = {LATENT_BERNOULLI, 3, 1};
    const float logq[6] = {-0.5f, -1.5f, -2.0f, -0.1f, -3.0f, -2.5f};
    const float zc[6] = {0, 1, 0, 1, 0, 0};
    ck_assert(stoch_log_prob(&cat, NULL, logq, zc) == (double)-1.5f + (double)-0.1f);
    const float l[3] = {2.0f, -1.0f, 0.0f}, zb[3] = {1, 1, 0};
    double want = log(1 / (1 + exp(-2.0))) + log(1 / (1 + exp(1.0))) + log(0.5);
    ck_assert_msg(fabs(stoch_log_prob(&bern, l, NULL, zb) - want) <= 1e-6, "%.9g, want %.9g",
                  stoch_log_prob(&bern, l, NULL, zb), want);
}
END_TEST

/* ---- NVIL ---- */

START_TEST(nvil_statistics)
{
    const double a = STOCH_NVIL_DECAY;
    stoch_nvil s = {0};
    ck_assert(stoch_nvil_offset(&s) == 0.0);
    /* First batch: uncentred; its mean and (population) variance whole. */
    double u[4] = {1.0, 3.0, 5.0, 7.0};
    double scale = stoch_nvil_centre(&s, u, 4, 1, 0);
    ck_assert(scale == 1.0);
    ck_assert(u[0] == 1.0 && u[3] == 7.0);
    ck_assert(s.seen == 1 && s.mean == 4.0 && s.var == 5.0);
    /* Second batch: centred by 4 and scaled by 1 / sqrt(5) (earlier
     * batches only), then folded in. */
    double v[2] = {10.0, 14.0};
    scale = stoch_nvil_centre(&s, v, 2, 1, 0);
    ck_assert(fabs(scale - 1.0 / sqrt(5.0)) <= 1e-15);
    ck_assert(fabs(v[0] - 6.0 / sqrt(5.0)) <= 1e-12 && fabs(v[1] - 10.0 / sqrt(5.0)) <= 1e-12);
    ck_assert(fabs(s.mean - (a * 4.0 + (1 - a) * 12.0)) <= 1e-12);
    ck_assert(fabs(s.var - (a * 5.0 + (1 - a) * 4.0)) <= 1e-12);
    /* Frozen: the same centring, the statistics untouched. */
    stoch_nvil keep = s;
    double w[2] = {0.0, 100.0};
    scale = stoch_nvil_centre(&s, w, 2, 0, 1);
    ck_assert(scale == 1.0); /* no variance normalisation */
    ck_assert(w[0] == -keep.mean && w[1] == 100.0 - keep.mean);
    ck_assert(memcmp(&s, &keep, sizeof s) == 0);
    /* A variance under 1 never scales the signal up. */
    stoch_nvil small = {2.0, 0.25, 1};
    double x[1] = {3.0};
    ck_assert(stoch_nvil_centre(&small, x, 1, 1, 1) == 1.0 && x[0] == 1.0);
}
END_TEST

START_TEST(nvil_tracks_the_mean)
{
    /* Batches of 50 around 7 with unit spread: after 60 batches the running
     * mean is within a few standard errors of 7 (its noise is that of a
     * mean over about 50 * 9 draws) and the running variance near 1. */
    stoch_nvil s = {0};
    rng_t r;
    rng_seed(&r, 5);
    for (int t = 0; t < 60; t++) {
        double u[50];
        for (int b = 0; b < 50; b++)
            u[b] = 7.0 + rng_normal(&r);
        stoch_nvil_centre(&s, u, 50, 1, 0);
    }
    ck_assert_msg(fabs(s.mean - 7.0) < 0.25, "running mean %g", s.mean);
    ck_assert_msg(fabs(s.var - 1.0) < 0.35, "running variance %g", s.var);
}
END_TEST

/* ---- the estimator list ---- */

/* REBAR's conditional resample: H(zt) = b always; dzt matches central
 * differences of zt in the logit (b and v fixed; step 1e-2 on float
 * logits, bound 1e-3 relative + 1e-4); and over many draws the resample
 * has the logistic law of z: P(zt < t) = sigmoid(t - l) at t = l - 1, l,
 * l + 1 within 4 standard errors. */
START_TEST(rebar_conditional)
{
    stoch_layer s = {LATENT_BERNOULLI, 1, 1};
    rng_t r;
    rng_seed(&r, 5);
    for (int t = 0; t < 200; t++) {
        float l = 6.0f * rng_uniformf_open(&r) - 3.0f, v = rng_uniformf_open(&r);
        float b = rng_uniformf_open(&r) < 0.5f ? 1.0f : 0.0f, zt, dzt, up, down, d;
        stoch_rebar_conditional(&s, &zt, &dzt, &b, &l, &v, 1);
        ck_assert_msg((zt > 0) == (b > 0.5f), "l %g b %g v %g: zt %g", l, b, v, zt);
        float lu = l + 1e-2f, ld = l - 1e-2f;
        stoch_rebar_conditional(&s, &up, &d, &b, &lu, &v, 1);
        stoch_rebar_conditional(&s, &down, &d, &b, &ld, &v, 1);
        double num = ((double)up - down) / ((double)lu - ld);
        ck_assert_msg(fabs(dzt - num) <= 1e-3 * fabs(num) + 1e-4, "l %g b %g v %g: %g vs %g", l, b,
                      v, dzt, num);
    }
    const float l = 0.7f;
    const int M = 200000;
    long below[3] = {0, 0, 0};
    for (int i = 0; i < M; i++) {
        float b = rng_uniformf_open(&r) < 1.0f / (1.0f + expf(-l)) ? 1.0f : 0.0f;
        float v = rng_uniformf_open(&r), zt, dzt;
        stoch_rebar_conditional(&s, &zt, &dzt, &b, &l, &v, 1);
        for (int k = 0; k < 3; k++)
            below[k] += zt < l + (k - 1);
    }
    for (int k = 0; k < 3; k++) {
        double p = 1.0 / (1.0 + exp(-(double)(k - 1))), got = (double)below[k] / M;
        ck_assert_msg(fabs(got - p) <= 4.0 * sqrt(p * (1 - p) / M), "P(zt < l%+d) %g, want %g",
                      k - 1, got, p);
    }
}
END_TEST

/* One row's class chosen by b (its one-hot) per variable of s. */
static int chosen_class(const float *b, int K)
{
    for (int k = 0; k < K; k++)
        if (b[k] > 0.5f)
            return k;
    return -1;
}

/* The Jacobian products of REBAR's conditional resample, both latent
 * types, R rows of random logits (scale 3), hard samples and uniforms:
 * stoch_rebar_conditional_tangent J tl and _backward J^T g against central
 * differences (step 1e-2 on float logits, b and v fixed) of tl . zt(l + h tl)
 * and of g . zt(l + h e_j); bound 1e-3 of the largest + 1e-4.  The hard
 * value of zt is b (its sign per unit, its argmax per variable). */
START_TEST(rebar_conditional_jacobian)
{
    stoch_layer s = layer_of(_i);
    int Z = stoch_dim(&s), n = R * Z;
    rng_t r;
    rng_seed(&r, 41 + _i);
    for (int t = 0; t < 50; t++) {
        float l[R * MAXU], b[R * MAXU], v[R * MAXU], p[R * MAXU], zt[R * MAXU], dzt[R * MAXU];
        float tl[R * MAXU], g[R * MAXU], tan[R * MAXU], back[R * MAXU], hard[R * MAXU];
        float lp[R * MAXU], up[R * MAXU], down[R * MAXU], scratch[R * MAXU];
        random_fill(l, n, 3.0, &r);
        random_fill(tl, n, 1.0, &r);
        random_fill(g, n, 1.0, &r);
        for (int i = 0; i < n; i++)
            v[i] = rng_uniformf_open(&r);
        stoch_probs_forward(&s, p, l, R, 1.0f);
        stoch_sample_probs(&s, b, p, R, &r);
        stoch_rebar_conditional(&s, zt, dzt, b, l, v, R);
        if (s.type == LATENT_CATEGORICAL)
            stoch_hard_from_relaxed(&s, hard, zt, R); /* argmax */
        else
            for (int i = 0; i < n; i++)
                hard[i] = zt[i] > 0.0f ? 1.0f : 0.0f;
        for (int i = 0; i < n; i++)
            ck_assert_msg(hard[i] == b[i], "draw %d unit %d: hard value of zt %g, b %g", t, i,
                          hard[i], b[i]);
        stoch_rebar_conditional_tangent(&s, tan, dzt, p, tl, R);
        stoch_rebar_conditional_backward(&s, back, dzt, p, g, R);
        const float h = 1e-2f;
        double num_tan[R * MAXU], num_back[R * MAXU], st = 0.0, sb = 0.0;
        for (int i = 0; i < n; i++)
            lp[i] = l[i] + h * tl[i];
        stoch_rebar_conditional(&s, up, scratch, b, lp, v, R);
        for (int i = 0; i < n; i++)
            lp[i] = l[i] - h * tl[i];
        stoch_rebar_conditional(&s, down, scratch, b, lp, v, R);
        for (int i = 0; i < n; i++) {
            num_tan[i] = ((double)up[i] - down[i]) / (2.0 * h);
            st = fmax(st, fabs(num_tan[i]));
        }
        for (int j = 0; j < n; j++) {
            memcpy(lp, l, sizeof(float) * n);
            lp[j] = l[j] + h;
            stoch_rebar_conditional(&s, up, scratch, b, lp, v, R);
            lp[j] = l[j] - h;
            stoch_rebar_conditional(&s, down, scratch, b, lp, v, R);
            double d = 0.0;
            for (int i = 0; i < n; i++)
                d += (double)g[i] * ((double)up[i] - down[i]);
            num_back[j] = d / ((double)(l[j] + h) - (double)(l[j] - h));
            sb = fmax(sb, fabs(num_back[j]));
        }
        for (int i = 0; i < n; i++) {
            ck_assert_msg(fabs(tan[i] - num_tan[i]) <= 1e-3 * st + 1e-4,
                          "%s draw %d: tangent[%d] %.7g, central difference %.7g",
                          stoch_latent_name(s.type), t, i, tan[i], num_tan[i]);
            ck_assert_msg(fabs(back[i] - num_back[i]) <= 1e-3 * sb + 1e-4,
                          "%s draw %d: backward[%d] %.7g, central difference %.7g",
                          stoch_latent_name(s.type), t, i, back[i], num_back[i]);
        }
    }
}
END_TEST

/* REBAR's categorical conditional resample has the law of z = l + Gumbel
 * noise when b is drawn from softmax(l) first: over M draws of (b, v) for
 * one variable of K = 4 classes with logits that do not sum to 0 in
 * probability (log sum exp l = 1.86), per class the mean of zt is l_k +
 * Euler's gamma and its variance pi^2 / 6 (standard errors sqrt(var / M)
 * and var sqrt(4.4 / M), the Gumbel's excess kurtosis being 12/5), each
 * pair of classes is uncorrelated (standard error var / sqrt(M), that of
 * a product of two independent centred Gumbels), P(zt_k < l_k) = exp(-1)
 * (the Gumbel's CDF at its location), b's frequencies are softmax(l), and
 * the argmax of zt is b; all within 4 standard errors.  A resample without
 * the log-sum-exp shift, or with the unnormalised exp(l) for theta, fails
 * the means by tens of errors. */
START_TEST(rebar_conditional_categorical_law)
{
    enum { K = 4 };
    const stoch_layer s = {LATENT_CATEGORICAL, 1, K};
    const float l[K] = {0.5f, -0.3f, 1.2f, -1.0f};
    const int M = 400000;
    const double gamma = 0.57721566490153286, var = 3.14159265358979324 * 3.14159265358979324 / 6.0;
    double p[K], se = 0.0, sum[K] = {0}, sq[K] = {0}, cross[K][K] = {{0}};
    long below[K] = {0}, chosen[K] = {0};
    for (int k = 0; k < K; k++)
        se += exp(l[k]);
    for (int k = 0; k < K; k++)
        p[k] = exp(l[k]) / se;
    rng_t r;
    rng_seed(&r, 77);
    for (int m = 0; m < M; m++) {
        float b[K] = {0}, v[K], zt[K], dzt[K], hard[K];
        double u = rng_uniform_open(&r), acc = 0.0;
        int pick = K - 1;
        for (int k = 0; k < K - 1; k++)
            if (u < (acc += p[k])) {
                pick = k;
                break;
            }
        b[pick] = 1.0f;
        chosen[pick]++;
        for (int k = 0; k < K; k++)
            v[k] = rng_uniformf_open(&r);
        stoch_rebar_conditional(&s, zt, dzt, b, l, v, 1);
        stoch_hard_from_relaxed(&s, hard, zt, 1);
        ck_assert_int_eq(chosen_class(hard, K), pick);
        for (int k = 0; k < K; k++) {
            double c = zt[k] - l[k] - gamma;
            sum[k] += c;
            sq[k] += c * c;
            below[k] += zt[k] < l[k];
            for (int j = 0; j < k; j++)
                cross[k][j] += c * ((double)zt[j] - l[j] - gamma);
        }
    }
    for (int k = 0; k < K; k++) {
        double mean = sum[k] / M, v2 = sq[k] / M - mean * mean, cdf = exp(-1.0);
        ck_assert_msg(fabs(mean) <= 4.0 * sqrt(var / M), "class %d: mean of zt - l - gamma %.5f",
                      k, mean);
        ck_assert_msg(fabs(v2 - var) <= 4.0 * var * sqrt(4.4 / M), "class %d: variance %.5f, "
                      "want %.5f", k, v2, var);
        double fb = (double)below[k] / M;
        ck_assert_msg(fabs(fb - cdf) <= 4.0 * sqrt(cdf * (1 - cdf) / M),
                      "class %d: P(zt < l) %.5f, want %.5f", k, fb, cdf);
        double fc = (double)chosen[k] / M;
        ck_assert_msg(fabs(fc - p[k]) <= 4.0 * sqrt(p[k] * (1 - p[k]) / M),
                      "class %d chosen %.5f, probability %.5f", k, fc, p[k]);
        for (int j = 0; j < k; j++) {
            double cov = cross[k][j] / M - (sum[k] / M) * (sum[j] / M);
            ck_assert_msg(fabs(cov) <= 4.0 * var / sqrt(M), "classes %d, %d: covariance %.5f",
                          k, j, cov);
        }
    }
}
END_TEST

START_TEST(estimator_list)
{
    for (int e = 0; e < STOCH_NESTIMATORS; e++) {
        stoch_estimator back;
        const char *name = stoch_estimator_name((stoch_estimator)e);
        ck_assert_int_eq(stoch_estimator_parse(name, &back), 0);
        ck_assert_int_eq(back, e);
        const char *help = stoch_estimator_help((stoch_estimator)e);
        ck_assert(help[0] && !strchr(help, '\n'));
        ck_assert_int_eq(stoch_estimator_check((stoch_estimator)e, STOCH_ALL_ESTIMATORS, "x", LATENT_BERNOULLI, NULL),
                         0);
    }
    stoch_estimator out = STOCH_SF;
    ck_assert_int_eq(stoch_estimator_parse("nope", &out), -1);
    ck_assert_int_eq(out, STOCH_SF);
    char err[ERR_LEN] = "";
    unsigned some = (1u << STOCH_GUMBEL) | (1u << STOCH_EXACT);
    ck_assert_int_eq(stoch_estimator_check(STOCH_SF, some, "semisup", LATENT_CATEGORICAL, err), -1);
    ck_assert_msg(!strcmp(err, "--estimator 'sf': not implemented for the semisup task (gumbel, "
                               "exact)"),
                  "%s", err);
}
END_TEST

static Suite *stochastic_suite(void)
{
    Suite *s = suite_create("stochastic");
    TCase *tc = tcase_create("stochastic");
    tcase_set_timeout(tc, 60);
    /* _i: 0 Bernoulli, 1 categorical */
    tcase_add_loop_test(tc, probs_backward_matches_finite_differences, 0, 2);
    tcase_add_loop_test(tc, relaxed_backward_matches_finite_differences, 0, 2);
    tcase_add_test(tc, darn_categorical_k2_is_bernoulli);
    tcase_add_test(tc, darn_categorical_point);
    tcase_add_test(tc, score_add_formula);
    tcase_add_test(tc, sample_probs_law);
    tcase_add_test(tc, sample_index_is_sample_probs);
    tcase_add_test(tc, samplers_pass_nan_on);
    tcase_add_test(tc, log_prob_formula);
    tcase_add_test(tc, nvil_statistics);
    tcase_add_test(tc, nvil_tracks_the_mean);
    tcase_add_test(tc, rebar_conditional);
    tcase_add_loop_test(tc, rebar_conditional_jacobian, 0, 2);
    tcase_add_test(tc, rebar_conditional_categorical_law);
    tcase_add_test(tc, estimator_list);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(stochastic_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
