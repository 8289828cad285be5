/* test_sbn.c: the structured-output-prediction task (vae/models/sbn.h, vae/cli/task_sbn.c).
 *
 * On tiny networks (D_in = 3, D_out = 4; two Bernoulli units per stochastic
 * layer, or one categorical variable of 3 classes per layer; B = 3
 * examples), small enough that every configuration of (h1, h2), and every
 * S-tuple of them, can be written out, against double-precision references
 * written here:
 *
 * - gumbel, noise held fixed: the parameter gradient equals central
 *   differences (step 1e-6) of the reference relaxed S-sample loss, for S = 1
 *   and 3, tau = 1 and 0.5, both latent types.  Bound per coordinate:
 *   |g - n| <= 1e-4 max_j |n_j| + 1e-4 |n|; the loss itself within 1e-5
 *   relative.
 * - sf (baseline none, and a frozen constant baseline) and muprop (its
 *   mean-field Taylor point and the rollout's, sbn_ctx.rollout): the mean
 *   of 40000 draws of the gradient matches the exact gradient of the
 *   expected S-sample loss (S = 1 and 2), sum over tuples t of
 *   P(t) [dL(t) + L(t) dlog P(t)], per coordinate within 4.5 standard errors
 *   (from the sample variance of the draws) plus 1e-6.  A correct estimator
 *   fails one coordinate with probability 7e-6 (about 1e-4 over the ~30
 *   coordinates of a case); the generator is seeded, so the outcome is fixed.
 *   The same comparison rejects st (biased) by more than 10 SE, which shows
 *   the test has the power to see a bias.
 * - sf and muprop with a frozen learned baseline (sbn_learned: two
 *   networks of x_in with random weights, so that C_i(x) differs between
 *   the examples): unbiased, by the same comparison; trained on the tiny
 *   model's signal, it lowers sf's gradient variance below that of the
 *   moving average alone (to under 0.7 of it).
 * - muprop with variance normalisation (running variances frozen at 16):
 *   the mean gradient behind the stochastic layers is a quarter of the
 *   exact one, the output layer's the exact one, within the same bound; a
 *   normalisation of the residual alone is off by tens of SE.
 * - the S-sample bound: on one fixed network and input, the mean over 20000
 *   draws of -log (1/S) sum_j p(x_out | h^(j)) falls with S (1, 2, 4, 16,
 *   64) within 3 combined SE at each step, strictly by more than 10 SE from
 *   1 to 64, starts at the exact E[-log p(x_out | h)] (within 4 SE) and
 *   stays above the exact -log p(x_out | x_in) (by enumeration) minus 4 SE.
 * - evaluation bookkeeping: on a network whose layers are deterministic, the
 *   streamed log-sum-exp gives the exact NLL for every chunking of rows.
 *
 * End to end through GSVAE_BIN and GSVAE_DATA: train --task sbn --steps 300
 * lowers the test NLL below 0.6 of its step-0 value for gumbel and muprop,
 * both latent types; outputs and repeatability; bad flags; the NaN stop. */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "baseline.h"
#include "pngio.h"
#include "rng.h"
#include "sbn.h"
#include "testutil.h"
#include "util.h"

enum { B = 3, DIN = 3, DOUT = 4, MAXZ = 3, MAXS = 3, MAXP = 64 };

#define FD_STEP 1e-6
#define DRAWS 40000
#define SE_BOUND 4.5
#define SE_SLACK 1e-6

/* ---- tiny networks ---- */

static sbn_config tiny_config(int categorical)
{
    sbn_config c;
    memset(&c, 0, sizeof c);
    c.latent = categorical ? LATENT_CATEGORICAL : LATENT_BERNOULLI;
    c.N = categorical ? 1 : 2;
    c.K = categorical ? 3 : 1;
    c.D_in = DIN;
    c.D_out = DOUT;
    return c;
}

/* Parameters uniform in (-gain, gain), biases included, so that no layer
 * is near uniform or near deterministic. */
static void tiny_model(sbn_model *m, int categorical, uint64_t seed, float gain)
{
    char err[ERR_LEN];
    sbn_config c = tiny_config(categorical);
    rng_t r;
    rng_seed(&r, seed);
    ck_assert_msg(sbn_init(m, &c, &r, err) == 0, "%s", err);
    ck_assert_int_le((int)m->nparams, MAXP);
    for (size_t i = 0; i < m->nparams; i++)
        m->params[i] = gain * (2.0f * rng_uniformf_open(&r) - 1.0f);
}

/* B rows of DIN + DOUT binary pixels. */
static const float tiny_x[B * (DIN + DOUT)] = {
    1, 0, 1, /**/ 1, 1, 0, 0,
    0, 1, 1, /**/ 0, 1, 1, 0,
    1, 1, 0, /**/ 1, 0, 0, 1,
};

/* ---- the double-precision reference ---- */

static double sigmoid_ref(double x)
{
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

static double softplus_ref(double x)
{
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

/* out = W in + b of layer `layer`, parameters p in double. */
static void affine_ref(const sbn_model *m, const double *p, int layer, const double *in,
                       double *out)
{
    const linear_layer *l = &m->lay[layer];
    /* Every input here is an array of DIN or MAXZ doubles. */
    ck_assert_int_le(l->in, DIN < MAXZ ? DIN : MAXZ);
    for (int o = 0; o < l->out; o++) {
        double s = p[l->b + o];
        for (int i = 0; i < l->in; i++)
            s += p[l->w + (size_t)o * l->in + i] * in[i];
        out[o] = s;
    }
}

/* sigmoid((l + noise) / tau) per unit, softmax((l + noise) / tau) per
 * group; noise NULL for none. */
static void probs_ref(const sbn_config *c, const double *l, const float *noise, double tau,
                      double *p)
{
    if (c->latent == LATENT_BERNOULLI) {
        for (int i = 0; i < c->N; i++)
            p[i] = sigmoid_ref((l[i] + (noise ? noise[i] : 0.0)) / tau);
        return;
    }
    for (int g = 0; g < c->N; g++) {
        double a[MAXZ], mx = -INFINITY, s = 0.0;
        for (int k = 0; k < c->K; k++) {
            a[k] = (l[g * c->K + k] + (noise ? noise[g * c->K + k] : 0.0)) / tau;
            mx = fmax(mx, a[k]);
        }
        for (int k = 0; k < c->K; k++)
            s += exp(a[k] - mx);
        for (int k = 0; k < c->K; k++)
            p[g * c->K + k] = exp(a[k] - mx) / s;
    }
}

static double bce_ref(const double *logits, const float *x, int D)
{
    double s = 0.0;
    for (int d = 0; d < D; d++)
        s += softplus_ref(logits[d]) - x[d] * logits[d];
    return s;
}

/* -log p(x_out | h2) for one example's x_out. */
static double ell_ref(const sbn_model *m, const double *p, const double *h2, const float *xout)
{
    double o[DOUT];
    affine_ref(m, p, SBN_A3, h2, o);
    return bce_ref(o, xout, DOUT);
}

/* The relaxed S-sample loss of the batch, mean over examples, with the
 * noise the library drew (rows of the workspace's noise arrays). */
static double relaxed_loss_ref(const sbn_model *m, const double *p, const float *noise1,
                               const float *noise2, int S, double tau)
{
    const sbn_config *c = &m->cfg;
    int Z = sbn_zdim(c);
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *xin = tiny_x + b * (DIN + DOUT), *xout = xin + DIN;
        double xd[DIN], l1[MAXZ], y1[MAXZ], l2[MAXZ], y2[MAXZ], ell[MAXS], mx = -INFINITY, s = 0;
        for (int i = 0; i < DIN; i++)
            xd[i] = xin[i];
        affine_ref(m, p, SBN_A1, xd, l1);
        for (int j = 0; j < S; j++) {
            int r = b * S + j;
            probs_ref(c, l1, noise1 + (size_t)r * Z, tau, y1);
            affine_ref(m, p, SBN_A2, y1, l2);
            probs_ref(c, l2, noise2 + (size_t)r * Z, tau, y2);
            ell[j] = ell_ref(m, p, y2, xout);
            mx = fmax(mx, -ell[j]);
        }
        for (int j = 0; j < S; j++)
            s += exp(-ell[j] - mx);
        total += -(mx + log(s / S));
    }
    return total / B;
}

/* Configuration `code` of one stochastic layer as a 0/1 vector. */
static void config_vector(const sbn_config *c, int code, double *h)
{
    int Z = sbn_zdim(c);
    for (int k = 0; k < Z; k++)
        h[k] = 0.0;
    for (int g = 0; g < c->N; g++) {
        if (c->latent == LATENT_BERNOULLI) {
            h[g] = code & 1;
            code >>= 1;
        } else {
            h[g * c->K + code % c->K] = 1.0;
            code /= c->K;
        }
    }
}

static int config_count(const sbn_config *c)
{
    int n = 1;
    for (int g = 0; g < c->N; g++)
        n *= c->latent == LATENT_BERNOULLI ? 2 : c->K;
    return n;
}

/* Everything about one joint configuration (h1, h2) of one example. */
typedef struct {
    double prob, ell;
    double h1[MAXZ], h2[MAXZ], q1[MAXZ], q2[MAXZ];
} joint;

static int joints_of(const sbn_model *m, const double *p, int b, joint *js)
{
    const sbn_config *c = &m->cfg;
    int Z = sbn_zdim(c), n = config_count(c), count = 0;
    const float *xin = tiny_x + b * (DIN + DOUT);
    double xd[DIN], l1[MAXZ], q1[MAXZ];
    for (int i = 0; i < DIN; i++)
        xd[i] = xin[i];
    affine_ref(m, p, SBN_A1, xd, l1);
    probs_ref(c, l1, NULL, 1.0, q1);
    for (int c1 = 0; c1 < n; c1++) {
        for (int c2 = 0; c2 < n; c2++) {
            joint *J = &js[count++];
            double l2[MAXZ];
            config_vector(c, c1, J->h1);
            config_vector(c, c2, J->h2);
            affine_ref(m, p, SBN_A2, J->h1, l2);
            probs_ref(c, l2, NULL, 1.0, J->q2);
            memcpy(J->q1, q1, sizeof q1);
            /* P(h) = prod over units (Bernoulli) or the chosen class (one-hot). */
            double prob = 1.0;
            for (int k = 0; k < Z; k++) {
                if (c->latent == LATENT_BERNOULLI)
                    prob *= (J->h1[k] ? q1[k] : 1 - q1[k]) * (J->h2[k] ? J->q2[k] : 1 - J->q2[k]);
                else
                    prob *= (J->h1[k] ? q1[k] : 1.0) * (J->h2[k] ? J->q2[k] : 1.0);
            }
            J->prob = prob;
            J->ell = ell_ref(m, p, J->h2, xin + DIN);
        }
    }
    return count;
}

/* The exact gradient of the batch's mean expected S-sample loss, summing
 * over every S-tuple of joint configurations:
 *   sum_t P(t) [sum_j w_j dell(t_j) + L(t) sum_j dlog P(t_j)]. */
static void exact_gradient(const sbn_model *m, int S, double *grad, double *expected_loss)
{
    const sbn_config *c = &m->cfg;
    int Z = sbn_zdim(c), np = (int)m->nparams;
    const linear_layer *a1 = &m->lay[SBN_A1], *a2 = &m->lay[SBN_A2], *a3 = &m->lay[SBN_A3];
    double p[MAXP];
    for (int i = 0; i < np; i++)
        p[i] = m->params[i];
    memset(grad, 0, (size_t)np * sizeof(double));
    *expected_loss = 0.0;
    joint js[256];
    for (int b = 0; b < B; b++) {
        const float *xin = tiny_x + b * (DIN + DOUT), *xout = xin + DIN;
        int nj = joints_of(m, p, b, js);
        long tuples = 1;
        for (int j = 0; j < S; j++)
            tuples *= nj;
        for (long t = 0; t < tuples; t++) {
            int idx[MAXS];
            long rest = t;
            double P = 1.0, mx = -INFINITY, s = 0.0, w[MAXS];
            for (int j = 0; j < S; j++) {
                idx[j] = (int)(rest % nj);
                rest /= nj;
                P *= js[idx[j]].prob;
                mx = fmax(mx, -js[idx[j]].ell);
            }
            for (int j = 0; j < S; j++)
                s += w[j] = exp(-js[idx[j]].ell - mx);
            double L = -(mx + log(s / S));
            *expected_loss += P * L / B;
            for (int j = 0; j < S; j++) {
                const joint *J = &js[idx[j]];
                double wj = w[j] / s, scale = P / B;
                /* dell/dA3: (sigmoid(o) - x) h2^T. */
                double o[DOUT];
                affine_ref(m, p, SBN_A3, J->h2, o);
                for (int d = 0; d < DOUT; d++) {
                    double g = scale * wj * (sigmoid_ref(o[d]) - xout[d]);
                    grad[a3->b + d] += g;
                    for (int k = 0; k < Z; k++)
                        grad[a3->w + (size_t)d * Z + k] += g * J->h2[k];
                }
                /* dlog P: (h1 - q1) x_in^T and (h2 - q2) h1^T. */
                for (int k = 0; k < Z; k++) {
                    double g1 = scale * L * (J->h1[k] - J->q1[k]);
                    double g2 = scale * L * (J->h2[k] - J->q2[k]);
                    grad[a1->b + k] += g1;
                    for (int i = 0; i < DIN; i++)
                        grad[a1->w + (size_t)k * DIN + i] += g1 * xin[i];
                    grad[a2->b + k] += g2;
                    for (int i = 0; i < Z; i++)
                        grad[a2->w + (size_t)k * Z + i] += g2 * J->h1[i];
                }
            }
        }
    }
}

/* ---- finite differences of the relaxed loss (gumbel, noise fixed) ---- */

static void check_gumbel_fd(int categorical, int S, float tau)
{
    char err[ERR_LEN];
    sbn_model m;
    sbn_ws w;
    tiny_model(&m, categorical, 11 + (uint64_t)categorical, 1.5f);
    ck_assert_msg(sbn_ws_init(&w, &m, B, S, err) == 0, "%s", err);
    rng_t r;
    rng_seed(&r, 5);
    sbn_ctx ctx = {&m, &w, NULL, sbn_estimator_find("gumbel"), tiny_x, B, S, tau, &r, NULL, 0, 0};
    double loss = sbn_gradient(&ctx);
    int np = (int)m.nparams;
    double p[MAXP] = {0}, fd[MAXP], scale = 0.0;
    for (int i = 0; i < np; i++)
        p[i] = m.params[i];
    const float *n1 = sbn_ws_noise(&w, 0), *n2 = sbn_ws_noise(&w, 1);
    double ref = relaxed_loss_ref(&m, p, n1, n2, S, tau);
    ck_assert_msg(fabs(loss - ref) <= 1e-5 * fabs(ref), "loss %.9g, reference %.9g", loss, ref);
    for (int i = 0; i < np; i++) {
        double keep = p[i];
        p[i] = keep + FD_STEP;
        double up = relaxed_loss_ref(&m, p, n1, n2, S, tau);
        p[i] = keep - FD_STEP;
        double down = relaxed_loss_ref(&m, p, n1, n2, S, tau);
        p[i] = keep;
        fd[i] = (up - down) / (2 * FD_STEP);
        scale = fmax(scale, fabs(fd[i]));
    }
    for (int i = 0; i < np; i++)
        ck_assert_msg(fabs(m.grads[i] - fd[i]) <= 1e-4 * scale + 1e-4 * fabs(fd[i]),
                      "%s S=%d tau=%g: param %d: gradient %.8g, central difference %.8g",
                      categorical ? "categorical" : "bernoulli", S, tau, i, m.grads[i], fd[i]);
    sbn_ws_free(&w);
    sbn_free(&m);
}

START_TEST(gumbel_matches_finite_differences)
{
    /* _i: bit 0 categorical, bit 1 S = 3, bit 2 tau = 0.5. */
    check_gumbel_fd(_i & 1, _i & 2 ? 3 : 1, _i & 4 ? 0.5f : 1.0f);
}
END_TEST

/* ---- unbiasedness by enumeration ---- */

typedef struct {
    double max_z;     /* largest |mean - exact| / SE over the coordinates */
    int worst;
    int failures;     /* coordinates past SE_BOUND SE + SE_SLACK */
    double mean[MAXP], exact[MAXP], se[MAXP];
} bias_report;

static void measure_bias(const char *name, int categorical, int S, sbn_baseline *bl,
                         sbn_learned *lb, int rollout, bias_report *rep)
{
    char err[ERR_LEN];
    sbn_model m;
    sbn_ws w;
    tiny_model(&m, categorical, 21 + (uint64_t)categorical, 1.5f);
    ck_assert_msg(sbn_ws_init(&w, &m, B, S, err) == 0, "%s", err);
    int np = (int)m.nparams;
    double sum[MAXP] = {0}, sumsq[MAXP] = {0}, expected_loss;
    rng_t r;
    rng_seed(&r, 99);
    sbn_ctx ctx = {&m, &w, bl, sbn_estimator_find(name), tiny_x, B, S, 1.0f, &r, lb, rollout, 0};
    ck_assert_ptr_nonnull(ctx.e);
    for (int d = 0; d < DRAWS; d++) {
        sbn_gradient(&ctx);
        for (int i = 0; i < np; i++) {
            sum[i] += m.grads[i];
            sumsq[i] += (double)m.grads[i] * m.grads[i];
        }
    }
    exact_gradient(&m, S, rep->exact, &expected_loss);
    rep->max_z = 0.0;
    rep->worst = 0;
    rep->failures = 0;
    for (int i = 0; i < np; i++) {
        rep->mean[i] = sum[i] / DRAWS;
        double var = fmax(0.0, sumsq[i] / DRAWS - rep->mean[i] * rep->mean[i]);
        rep->se[i] = sqrt(var / (DRAWS - 1));
        double dev = fabs(rep->mean[i] - rep->exact[i]);
        if (dev > SE_BOUND * rep->se[i] + SE_SLACK)
            rep->failures++;
        double z = dev / (rep->se[i] + 1e-12);
        if (z > rep->max_z) {
            rep->max_z = z;
            rep->worst = i;
        }
    }
    sbn_ws_free(&w);
    sbn_free(&m);
}

static void check_unbiased(const char *name, int categorical, int S, sbn_baseline *bl,
                           sbn_learned *lb, int rollout)
{
    bias_report rep;
    measure_bias(name, categorical, S, bl, lb, rollout, &rep);
    int i = rep.worst;
    ck_assert_msg(rep.failures == 0,
                  "%s%s %s S=%d: %d coordinates past %.1f SE; worst %d: mean %.6g exact %.6g SE %.3g",
                  name, rollout ? " (rollout)" : "", categorical ? "categorical" : "bernoulli", S,
                  rep.failures, SE_BOUND, i, rep.mean[i], rep.exact[i], rep.se[i]);
}

START_TEST(sf_unbiased)
{
    /* _i: bit 0 categorical, bit 1 S = 2, bit 2 a frozen constant baseline. */
    sbn_baseline bl = {.centre = 1, .frozen = 1, .stat = {{40.0, 0.0, 1}, {40.0, 0.0, 1}}};
    check_unbiased("sf", _i & 1, _i & 2 ? 2 : 1, _i & 4 ? &bl : NULL, NULL, 0);
}
END_TEST

START_TEST(muprop_unbiased)
{
    /* _i: bit 0 categorical, bit 1 S = 2, bit 2 a frozen constant
     * baseline, bit 3 the rollout's Taylor point. */
    sbn_baseline bl = {.centre = 1, .frozen = 1, .stat = {{3.0, 0.0, 1}, {-2.0, 0.0, 1}}};
    check_unbiased("muprop", _i & 1, _i & 2 ? 2 : 1, _i & 4 ? &bl : NULL, NULL, _i >> 3);
}
END_TEST

/* One muprop estimate of the tiny model's gradient, with the frozen
 * running statistics (mean 3, variance var: a divisor 1 / max(1,
 * sqrt(var))), the rng seeded by seed; into g. */
static void muprop_estimate(sbn_model *m, sbn_ws *w, double var, int norm_signal,
                            uint64_t seed, double *g)
{
    sbn_baseline bl = {.centre = 1, .var_norm = 1, .frozen = 1,
                       .stat = {{3.0, var, 1}, {-2.0, var, 1}}};
    rng_t r;
    rng_seed(&r, seed);
    sbn_ctx ctx = {m, w, &bl, sbn_estimator_find("muprop"), tiny_x, B, 1, 1.0f, &r, NULL, 0,
                   norm_signal};
    sbn_gradient(&ctx);
    for (size_t i = 0; i < m->nparams; i++)
        g[i] = m->grads[i];
}

/* --var-norm-scope signal: the variance normalisation divides the residual's
 * score term alone.  Without a divisor (variance <= 1) it is the unbiased
 * estimator to the bit; with one, the output layer's gradient is
 * untouched, and as the divisor grows the lower stochastic layer's
 * gradient tends to the analytic term, which the sample does not change
 * (its Taylor point and mean-field pass depend on x alone), where the whole
 * normalisation takes it to 0. */
START_TEST(muprop_norm_signal)
{
    char err[ERR_LEN];
    sbn_model m;
    sbn_ws w;
    tiny_model(&m, _i, 31 + (uint64_t)_i, 1.5f);
    ck_assert_msg(sbn_ws_init(&w, &m, B, 1, err) == 0, "%s", err);
    int np = (int)m.nparams;
    double whole[MAXP], resid[MAXP], resid2[MAXP];
    muprop_estimate(&m, &w, 1.0, 0, 7, whole);
    muprop_estimate(&m, &w, 1.0, 1, 7, resid);
    for (int i = 0; i < np; i++)
        ck_assert_msg(whole[i] == resid[i], "%d: %.9g against %.9g", i, whole[i], resid[i]);
    const linear_layer *out = &m.lay[SBN_A3], *low = &m.lay[SBN_A1];
    muprop_estimate(&m, &w, 1e16, 0, 7, whole);
    muprop_estimate(&m, &w, 1e16, 1, 7, resid);
    for (size_t i = out->w; i < out->b + (size_t)out->out; i++)
        ck_assert_msg(whole[i] == resid[i], "output %zu: %.9g against %.9g", i, whole[i],
                      resid[i]);
    double scale = 0.0;
    for (size_t i = low->w; i < low->b + (size_t)low->out; i++)
        scale = fmax(scale, fabs(resid[i]));
    ck_assert(scale > 1e-3);
    for (int seed = 8; seed < 12; seed++) {
        muprop_estimate(&m, &w, 1e16, 1, (uint64_t)seed, resid2);
        for (size_t i = low->w; i < low->b + (size_t)low->out; i++) {
            ck_assert_msg(fabs(resid2[i] - resid[i]) <= 1e-4 * scale,
                          "seed %d, lower layer %zu: %.9g against %.9g", seed, i, resid2[i],
                          resid[i]);
            ck_assert_msg(fabs(whole[i]) <= 1e-4 * scale, "whole %zu: %.9g", i, whole[i]);
        }
    }
    /* With the residual at full size the draws differ. */
    double spread = 0.0;
    muprop_estimate(&m, &w, 1.0, 1, 7, resid);
    muprop_estimate(&m, &w, 1.0, 1, 8, resid2);
    for (size_t i = low->w; i < low->b + (size_t)low->out; i++)
        spread = fmax(spread, fabs(resid2[i] - resid[i]));
    ck_assert_msg(spread > 1e-2 * scale, "spread %.3g", spread);
    sbn_ws_free(&w);
    sbn_free(&m);
}
END_TEST

/* A learned baseline of the tiny model's input: as sbn_learned_init
 * leaves it (gain 0), or every parameter of both networks uniform in
 * (-gain, gain) (the output layer too, so that C_i(x) is far from 0 and
 * differs between the three examples). */
static float *tiny_learned(sbn_learned *lb, int categorical, float gain)
{
    sbn_config c = tiny_config(categorical);
    size_t nf = sbn_learned_floats(&c);
    float *state = calloc(nf, sizeof(float));
    ck_assert_ptr_nonnull(state);
    rng_t r;
    rng_seed(&r, 77);
    sbn_learned_init(lb, &c, state, 1e-2f, &r);
    size_t n = bnet_nparams(DIN, lb->H);
    for (int i = 0; i < 2 && gain > 0.0f; i++)
        for (size_t k = 0; k < n; k++)
            state[(size_t)i * (3 * n + 1) + k] = gain * (2.0f * rng_uniformf_open(&r) - 1.0f);
    return state;
}

START_TEST(learned_baseline_unbiased)
{
    /* _i: bit 0 categorical, bit 1 muprop (else sf).  Frozen, so that the
     * networks stay the fixed functions of x_in drawn above. */
    sbn_learned lb;
    float *state = tiny_learned(&lb, _i & 1, 2.0f);
    sbn_baseline bl = {.centre = 1, .frozen = 1, .stat = {{1.0, 0.0, 1}, {-1.0, 0.0, 1}}};
    check_unbiased(_i & 2 ? "muprop" : "sf", _i & 1, 1, &bl, &lb, 0);
    free(state);
}
END_TEST

/* The total variance over the coordinates of n draws of the sf gradient. */
static double sf_variance(sbn_model *m, sbn_ws *w, sbn_baseline *bl, sbn_learned *lb, int n,
                          rng_t *r)
{
    double sum[MAXP] = {0}, sumsq[MAXP] = {0}, total = 0.0;
    sbn_ctx ctx = {m, w, bl, sbn_estimator_find("sf"), tiny_x, B, 1, 1.0f, r, lb, 0, 0};
    for (int d = 0; d < n; d++) {
        sbn_gradient(&ctx);
        for (size_t i = 0; i < m->nparams; i++) {
            sum[i] += m->grads[i];
            sumsq[i] += (double)m->grads[i] * m->grads[i];
        }
    }
    for (size_t i = 0; i < m->nparams; i++)
        total += sumsq[i] / n - (sum[i] / n) * (sum[i] / n);
    return total;
}

/* Trained (not frozen) on the model's own signal, the networks learn what
 * the moving average cannot: each example's expected loss.  On a tiny
 * model (gain 3) whose three examples differ in it, 4000 steps of fitting
 * lower the sf gradient's total variance below that of the moving average
 * alone: to 0.61 of it (Bernoulli) and 0.87 (categorical, whose loss
 * varies more within an example than between), asserted below 0.75 and
 * 0.95; both without variance normalisation, both measured over 20000
 * draws with the statistics then frozen (the total's sampling error is
 * about 2%, and networks that did not learn give 1). */
START_TEST(learned_baseline_lowers_variance)
{
    char err[ERR_LEN];
    int categorical = _i;
    sbn_model m;
    sbn_ws w;
    tiny_model(&m, categorical, 31 + (uint64_t)categorical, 3.0f);
    ck_assert_msg(sbn_ws_init(&w, &m, B, 1, err) == 0, "%s", err);
    sbn_learned lb;
    float *state = tiny_learned(&lb, categorical, 0.0f);
    double var[2];
    for (int learned = 0; learned < 2; learned++) {
        rng_t r;
        rng_seed(&r, 5);
        sbn_baseline bl = {.centre = 1};
        sf_variance(&m, &w, &bl, learned ? &lb : NULL, 4000, &r);
        bl.frozen = 1;
        var[learned] = sf_variance(&m, &w, &bl, learned ? &lb : NULL, 20000, &r);
    }
    double bound = categorical ? 0.95 : 0.75;
    ck_assert_msg(var[1] < bound * var[0], "%s: variance %.6g with the learned baseline, %.6g without",
                  categorical ? "categorical" : "bernoulli", var[1], var[0]);
    free(state);
    sbn_ws_free(&w);
    sbn_free(&m);
}
END_TEST

/* Variance normalisation divides a layer's whole gradient, MuProp's
 * analytic term with its residual: with both running variances frozen at
 * 16, the mean gradient of A1 and A2 (the parameters behind the stochastic
 * layers) is a quarter of the exact one and A3's is the exact one. */
START_TEST(muprop_normalised)
{
    int categorical = _i;
    sbn_baseline bl = {.centre = 1, .var_norm = 1, .frozen = 1,
                       .stat = {{3.0, 16.0, 1}, {-2.0, 16.0, 1}}};
    bias_report rep;
    measure_bias("muprop", categorical, 1, &bl, NULL, 0, &rep);
    sbn_model m;
    tiny_model(&m, categorical, 21 + (uint64_t)categorical, 1.5f);
    const linear_layer *top = &m.lay[SBN_A3];
    for (int i = 0; i < (int)m.nparams; i++) {
        size_t k = (size_t)i;
        int in_top = (k >= top->w && k < top->w + (size_t)top->out * top->in) ||
                     (k >= top->b && k < top->b + (size_t)top->out);
        double want = in_top ? rep.exact[i] : rep.exact[i] / 4.0;
        ck_assert_msg(fabs(rep.mean[i] - want) <= SE_BOUND * rep.se[i] + SE_SLACK,
                      "muprop %s normalised, param %d: mean %.6g, want %.6g, SE %.3g",
                      categorical ? "categorical" : "bernoulli", i, rep.mean[i], want, rep.se[i]);
    }
    sbn_free(&m);
}
END_TEST

START_TEST(test_sees_st_bias)
{
    bias_report rep;
    measure_bias("st", _i, 1, NULL, NULL, 0, &rep);
    ck_assert_msg(rep.max_z > 10.0, "st looks unbiased (max z %.2f): the test has no power",
                  rep.max_z);
}
END_TEST

/* ---- the S-sample bound ---- */

START_TEST(bound_falls_with_samples)
{
    enum { COPIES = 20000 };
    static const int Ms[] = {1, 2, 4, 16, 64};
    char err[ERR_LEN];
    int categorical = _i;
    sbn_model m;
    sbn_eval_ws ev;
    tiny_model(&m, categorical, 31 + (uint64_t)categorical, 3.0f);
    ck_assert_msg(sbn_eval_ws_init(&ev, &m, 2000, err) == 0, "%s", err);
    /* Example 0, repeated: one input, many independent draws of the bound. */
    float *x = malloc(sizeof(float) * COPIES * (DIN + DOUT));
    double *nll = malloc(sizeof(double) * COPIES);
    ck_assert(x && nll);
    for (int i = 0; i < COPIES; i++)
        memcpy(x + (size_t)i * (DIN + DOUT), tiny_x, sizeof(float) * (DIN + DOUT));
    /* Exact: E[ell] and -log sum_h P(h) exp(-ell(h)) for example 0. */
    double p[MAXP];
    for (size_t i = 0; i < m.nparams; i++)
        p[i] = m.params[i];
    joint js[256];
    int nj = joints_of(&m, p, 0, js);
    double mean_ell = 0.0, px = 0.0;
    for (int j = 0; j < nj; j++) {
        mean_ell += js[j].prob * js[j].ell;
        px += js[j].prob * exp(-js[j].ell);
    }
    double exact_nll = -log(px);
    double prev_mean = 0.0, prev_se = 0.0, first_mean = 0.0, first_se = 0.0;
    for (size_t k = 0; k < sizeof Ms / sizeof Ms[0]; k++) {
        rng_t r;
        rng_seed(&r, 1000 + k);
        double mean = sbn_eval_nll(&m, &ev, x, COPIES, Ms[k], &r, nll), var = 0.0;
        for (int i = 0; i < COPIES; i++)
            var += (nll[i] - mean) * (nll[i] - mean);
        double se = sqrt(var / (COPIES - 1) / COPIES);
        ck_assert_msg(mean >= exact_nll - 4 * se, "S=%d: mean bound %.5f below -log p %.5f",
                      Ms[k], mean, exact_nll);
        if (k == 0) {
            ck_assert_msg(fabs(mean - mean_ell) <= 4 * se, "S=1: mean %.5f, exact E[ell] %.5f (SE %.3g)",
                          mean, mean_ell, se);
            first_mean = mean;
            first_se = se;
        } else {
            ck_assert_msg(mean <= prev_mean + 3 * sqrt(se * se + prev_se * prev_se),
                          "S=%d: mean bound %.5f above S=%d's %.5f", Ms[k], mean, Ms[k - 1],
                          prev_mean);
        }
        prev_mean = mean;
        prev_se = se;
    }
    ck_assert_msg(first_mean - prev_mean > 10 * sqrt(first_se * first_se + prev_se * prev_se),
                  "the bound hardly moves from S=1 (%.4f) to S=64 (%.4f): no test", first_mean,
                  prev_mean);
    free(x);
    free(nll);
    sbn_eval_ws_free(&ev);
    sbn_free(&m);
}
END_TEST

START_TEST(eval_chunking_is_exact)
{
    /* Saturated layers: h1 and h2 are certain, so every sample gives the
     * same ell and the M-sample NLL is exactly ell, whatever the chunking. */
    char err[ERR_LEN];
    int categorical = _i;
    sbn_model m;
    tiny_model(&m, categorical, 41, 1.0f);
    const linear_layer *a1 = &m.lay[SBN_A1], *a2 = &m.lay[SBN_A2];
    int Z = sbn_zdim(&m.cfg);
    memset(m.params + a1->w, 0, sizeof(float) * (size_t)a1->in * a1->out);
    memset(m.params + a2->w, 0, sizeof(float) * (size_t)a2->in * a2->out);
    for (int k = 0; k < Z; k++) {
        m.params[a1->b + k] = k % 2 ? 60.0f : -60.0f;
        m.params[a2->b + k] = k % 3 ? -60.0f : 60.0f;
    }
    double p[MAXP], h2[MAXZ];
    for (size_t i = 0; i < m.nparams; i++)
        p[i] = m.params[i];
    for (int k = 0; k < Z; k++)
        h2[k] = m.params[a2->b + k] > 0;
    static const int rows[] = {1, 7, 10, 64};
    for (size_t t = 0; t < sizeof rows / sizeof rows[0]; t++) {
        sbn_eval_ws ev;
        ck_assert_msg(sbn_eval_ws_init(&ev, &m, rows[t], err) == 0, "%s", err);
        rng_t r;
        rng_seed(&r, 3);
        double nll[B];
        double mean = sbn_eval_nll(&m, &ev, tiny_x, B, 10, &r, nll), want_mean = 0.0;
        for (int b = 0; b < B; b++) {
            double want = ell_ref(&m, p, h2, tiny_x + b * (DIN + DOUT) + DIN);
            want_mean += want / B;
            ck_assert_msg(fabs(nll[b] - want) <= 1e-4, "rows %d, example %d: %.6f, want %.6f",
                          rows[t], b, nll[b], want);
        }
        ck_assert(fabs(mean - want_mean) <= 1e-4);
        sbn_eval_ws_free(&ev);
    }
    sbn_free(&m);
}
END_TEST

START_TEST(table_keys_off_the_list)
{
    /* One entry per estimator of SBN_ESTIMATORS, in the list's order. */
    const sbn_estimator *e = sbn_estimator_list();
    for (int id = 0; id < STOCH_NESTIMATORS; id++) {
        int supported = (SBN_ESTIMATORS >> id) & 1;
        const sbn_estimator *got = sbn_estimator_get((stoch_estimator)id);
        ck_assert_msg(!got == !supported, "%s", stoch_estimator_name((stoch_estimator)id));
        ck_assert_ptr_eq(sbn_estimator_find(stoch_estimator_name((stoch_estimator)id)), got);
        if (supported) {
            ck_assert_ptr_eq(got, e);
            ck_assert_int_eq(e->id, id);
            e++;
        }
    }
    ck_assert_ptr_null(e->layer_backward);
}
END_TEST

START_TEST(every_estimator_runs)
{
    /* Every table entry gives a finite gradient on both latent types. */
    char err[ERR_LEN];
    for (int categorical = 0; categorical < 2; categorical++) {
        for (const sbn_estimator *e = sbn_estimator_list(); e->layer_backward; e++) {
            const char *name = stoch_estimator_name(e->id);
            sbn_model m;
            sbn_ws w;
            tiny_model(&m, categorical, 51, 1.0f);
            ck_assert_msg(sbn_ws_init(&w, &m, B, 2, err) == 0, "%s", err);
            sbn_baseline bl = {.centre = 1, .var_norm = 1};
            rng_t r;
            rng_seed(&r, 1);
            sbn_ctx ctx = {&m, &w, &bl, e, tiny_x, B, 2, 0.7f, &r, NULL, 0, 0};
            for (int step = 0; step < 3; step++) {
                double loss = sbn_gradient(&ctx);
                ck_assert_msg(isfinite(loss), "%s: loss %g", name, loss);
                for (size_t i = 0; i < m.nparams; i++)
                    ck_assert_msg(isfinite(m.grads[i]), "%s: gradient %zu is %g", name, i,
                                  m.grads[i]);
            }
            sbn_ws_free(&w);
            sbn_free(&m);
        }
    }
}
END_TEST

/* ---- end to end ---- */

#define OUT_LEN 65536
static char out[OUT_LEN], errout[OUT_LEN];

/* Flags that keep a run small: evaluations on 1000 test images. */
#define E2E "train --task sbn --eval-images 1000 --eval-samples 20 --test-samples 20 --threads 1 --quiet"

#define gsvae(...) testutil_run_gsvae(out, sizeof out, errout, sizeof errout, __VA_ARGS__)
#define log_column(dir, col, vals, max)                                                    \
    testutil_log_column(dir, "step,epoch,tau,train_loss,test_nll,seconds\n", col, vals, max)

static double summary_number(const char *dir, const char *key)
{
    size_t len;
    char *text = (char *)testutil_read_file(testutil_path(dir, "summary.json"), &len);
    ck_assert_msg(text != NULL, "no summary.json in %s", dir);
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    char *p = strstr(text, pat);
    ck_assert_msg(p != NULL, "summary.json lacks %s", key);
    double v = strtod(p + strlen(pat), NULL);
    free(text);
    return v;
}

static void check_learns(const char *latent, const char *estimator)
{
    const char *dir = testutil_path(testutil_tmpdir(), "run");
    int rc = gsvae(E2E " --data %s --latent-type %s --estimator %s --steps 300 --eval-every 300 "
                       "--out %s",
                   testutil_data_dir(), latent, estimator, dir);
    ck_assert_msg(rc == 0, "rc %d: %s", rc, errout);
    double nll[16];
    int n = log_column(dir, 4, nll, 16);
    ck_assert_int_ge(n, 2);
    ck_assert_msg(isfinite(nll[0]) && isfinite(nll[n - 1]), "log lacks the test NLL");
    ck_assert_msg(nll[n - 1] < 0.6 * nll[0], "%s %s: test NLL %.2f at step 0, %.2f at step 300",
                  latent, estimator, nll[0], nll[n - 1]);
    double final = summary_number(dir, "test_nll");
    ck_assert_msg(isfinite(final) && final < 0.6 * nll[0], "summary test_nll %g", final);
}

START_TEST(e2e_learns)
{
    static const char *cases[][2] = {{"bernoulli", "gumbel"}, {"categorical", "gumbel"},
                                     {"bernoulli", "muprop"}, {"categorical", "muprop"}};
    check_learns(cases[_i][0], cases[_i][1]);
}
END_TEST

START_TEST(e2e_outputs_and_repeatability)
{
    const char *a = testutil_path(testutil_tmpdir(), "a");
    const char *b = testutil_path(testutil_tmpdir(), "b");
    for (int k = 0; k < 2; k++) {
        int rc = gsvae(E2E " --data %s --latent-type bernoulli --estimator sf --steps 40 "
                           "--eval-every 20 --log-every 10 --seed 7 --out %s",
                       testutil_data_dir(), k ? b : a);
        ck_assert_msg(rc == 0, "rc %d: %s", rc, errout);
    }
    /* The same seed gives the same numbers (seconds aside). */
    for (int col = 0; col <= 4; col++) {
        double va[16], vb[16];
        int na = log_column(a, col, va, 16), nb = log_column(b, col, vb, 16);
        ck_assert_int_eq(na, nb);
        ck_assert_int_eq(na, 5); /* steps 0, 10, 20, 30, 40 */
        for (int i = 0; i < na; i++)
            ck_assert_msg((isnan(va[i]) && isnan(vb[i])) || va[i] == vb[i],
                          "log.csv column %d row %d: %.6f vs %.6f", col, i, va[i], vb[i]);
    }
    ck_assert(summary_number(a, "test_nll") == summary_number(b, "test_nll"));
    ck_assert(summary_number(a, "seed") == 7);
    ck_assert(summary_number(a, "test_nll_samples") == 20);
    uint8_t *pix;
    int width, height;
    char err[ERR_LEN];
    ck_assert_msg(png_read_gray(testutil_path(a, "pred.png"), &pix, &width, &height, err) == 0,
                  "%s", err);
    /* 16 digits across, the true digits and 4 completions down, 28x28 at
     * scale 2 with a pad of 2. */
    ck_assert_int_eq(width, 16 * (56 + 2) + 2);
    ck_assert_int_eq(height, 5 * (56 + 2) + 2);
    free(pix);
}
END_TEST

START_TEST(e2e_bad_flags)
{
    static const char *bad[][2] = {
        {"--estimator bogus", "--estimator"},
        {"--estimator exact", "--estimator 'exact': not implemented for the sbn task"},
        {"--latent-type bernoulli --estimator arm",
         "--estimator 'arm': not implemented for the sbn task"},
        {"--latent-type categorical --latent 20x10 --estimator disarm",
         "--estimator 'disarm': for Bernoulli latents only, not categorical ones"},
        {"--samples 0", "--samples"},
        {"--latent-type categorical --latent 20", "--latent"},
        {"--latent-type bernoulli --latent 20x10", "--latent"},
        {"--optimizer sgd", "--optimizer"},
        {"--baseline bogus", "--baseline 'bogus': expected none, mean or learned"},
        {"--var-norm 2", "--var-norm"},
        {"--estimator muprop --muprop-rollout 2", "--muprop-rollout 2: expected 0 or 1"},
        {"--estimator st --muprop-rollout 1", "--muprop-rollout 1: only for --estimator muprop"},
        {"--estimator muprop --var-norm-scope half", "--var-norm-scope 'half': expected whole or signal"},
        {"--estimator sf --baseline-lr 1e-3", "--baseline-lr: only with --baseline learned"},
        {"--estimator st --var-norm-scope signal", "--var-norm-scope signal: only for --estimator sf or muprop"},
        {"--binarize none", "--binarize"},
        {"--anneal-rate -2", "--anneal-rate"},
        {"--test-samples -1", "--test-samples"},
        {"--lr 0", "--lr"},
        {"--steps 10 --bogus 1", "--bogus"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *dir = testutil_path(testutil_tmpdir(), "never");
        int rc = gsvae("train --task sbn --data %s %s --out %s", testutil_data_dir(), bad[i][0],
                       dir);
        ck_assert_msg(rc == 2, "%s: rc %d", bad[i][0], rc);
        ck_assert_msg(testutil_contains(errout, bad[i][1]), "%s: stderr %s", bad[i][0], errout);
        char *nl = strchr(errout, '\n');
        ck_assert_msg(nl && nl[1] == '\0', "%s: not one line: %s", bad[i][0], errout);
        ck_assert_msg(access(dir, F_OK) != 0, "%s: made %s", bad[i][0], dir);
    }
    int rc = gsvae("train --task sbn --help");
    ck_assert_int_eq(rc, 0);
    for (const sbn_estimator *e = sbn_estimator_list(); e->layer_backward; e++)
        ck_assert_msg(testutil_contains(out, stoch_estimator_name(e->id)), "--help lacks %s",
                      stoch_estimator_name(e->id));
    ck_assert(testutil_contains(out, "MuProp Sec. 5.1"));
}
END_TEST

START_TEST(e2e_nan_stops)
{
    /* A hard-sample estimator: the poisoned layer must still reach the loss. */
    static const char *est[] = {"st", "gumbel"};
    const char *dir = testutil_path(testutil_tmpdir(), "nan");
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "GSVAE_TEST_NAN_AT_STEP=5 %s " E2E " --data %s --estimator %s --steps 20 "
             "--eval-every 0 --out %s",
             testutil_hooks_bin(), testutil_data_dir(), est[_i], dir);
    int rc = run_capture(cmd, out, sizeof out, errout, sizeof errout);
    ck_assert_msg(rc == 1, "rc %d: %s", rc, errout);
    ck_assert_msg(testutil_contains(errout, "step 5") && testutil_contains(errout, "NaN"),
                  "stderr: %s", errout);
    ck_assert(access(testutil_path(dir, "summary.json"), F_OK) != 0);
}
END_TEST

static Suite *sbn_suite(void)
{
    Suite *s = suite_create("sbn");
    TCase *tc = tcase_create("unit");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, gumbel_matches_finite_differences, 0, 8);
    tcase_add_loop_test(tc, sf_unbiased, 0, 8);
    tcase_add_loop_test(tc, muprop_unbiased, 0, 16);
    tcase_add_loop_test(tc, muprop_norm_signal, 0, 2);
    tcase_add_loop_test(tc, muprop_normalised, 0, 2);
    tcase_add_loop_test(tc, learned_baseline_unbiased, 0, 4);
    tcase_add_loop_test(tc, learned_baseline_lowers_variance, 0, 2);
    tcase_add_loop_test(tc, test_sees_st_bias, 0, 2);
    tcase_add_loop_test(tc, bound_falls_with_samples, 0, 2);
    tcase_add_loop_test(tc, eval_chunking_is_exact, 0, 2);
    tcase_add_test(tc, table_keys_off_the_list);
    tcase_add_test(tc, every_estimator_runs);
    suite_add_tcase(s, tc);
    TCase *e2e = tcase_create("end-to-end");
    tcase_set_timeout(e2e, 600);
    tcase_add_loop_test(e2e, e2e_learns, 0, 4);
    tcase_add_test(e2e, e2e_outputs_and_repeatability);
    tcase_add_test(e2e, e2e_bad_flags);
    tcase_add_loop_test(e2e, e2e_nan_stops, 0, 2);
    suite_add_tcase(s, e2e);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sbn_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
