/* test_estimators.c: every gradient estimator of the reconstruction term.
 *
 * On a tiny VAE (D = 10 pixels, one hidden layer of 6 units, a 2x3
 * categorical code or 3 Bernoulli units, B = 4 images) small enough that the
 * expectation over all 9 (or 8) codes can be written out:
 *
 * - exact: its d/dlogits, expected reconstruction and decoder gradient
 *   against a double-precision reference: the enumeration written out here,
 *   differentiated by central differences (step 1e-5).  Bound: per block,
 *   |a - n| <= 1e-4 max_j |n_j| + 1e-7.
 * - unbiased estimators (sf with baselines none, mean and learned; muprop
 *   with none, mean and learned; arm and disarm on the Bernoulli code;
 *   rebar, at its adapted and its starting eta and temperature; relax, at
 *   its adapted parameters and at a random surrogate, both on either
 *   code; vimco on
 *   K = 2 samples against the gradient of the 2-sample bound, enumerated
 *   over all pairs of codes and differentiated by central differences),
 *   with variance normalisation off and the
 *   baseline frozen after a warm-up: the mean of M = 20000 draws of
 *   d/dlogits matches exact per coordinate within 4 standard errors (from the
 *   sample variance) plus 1e-6.  At 4 SE a correct estimator fails a given
 *   coordinate with probability 6e-5; a sign or scale error in the score
 *   term, or a missing correction term, is off by tens of SE.
 * - biased estimators (st, annealed-st, darn, gumbel, st-gumbel) and the
 *   score-function ones on one fixed draw: d/dlogits equals its defining
 *   formula, evaluated here in double from the estimator's own sample or
 *   noise with a reference decoder and its hand-written backward.  Bound:
 *   |a - r| <= 1e-4 max_j |r_j| + 1e-6.
 * - the Gumbel-Softmax bias ||mean - exact|| falls from tau = 1 to tau = 0.3,
 *   by more than three of its own noise floors sqrt(total var / M).
 * - the learned baseline lowers the score-function variance below none's;
 *   disarm's variance is below arm's; rebar's adaptation lowers its own,
 *   and so does relax's (its surrogate alone, and all its parameters).
 * - relax: the gradient of sum g^2 it descends (in eta, log lambda and the
 *   surrogate's parameters) against central differences on one draw, on
 *   either code; at its start (r = 0) its draw is rebar's.
 * - gumbel on the 2-sample bound: d/dlogits of one draw against central
 *   differences of the relaxed bound written out with Concrete densities.
 * - a learned temperature: gumbel's and st-gumbel's d loss / d log tau
 *   against central differences (step 1e-4) of the loss (st-gumbel: of its
 *   straight-through surrogate) in double on the estimator's own noise.
 *
 * End to end, through GSVAE_BIN and GSVAE_DATA: every estimator trains a
 * small VAE on MNIST for 300 steps without a NaN and lowers the test -ELBO
 * below that of the model after one step; `exact` on a 2x4 code; a run
 * with a learned baseline resumed half-way ends exactly where the run in one
 * go ends, and so does one with a learned temperature (which moves and is
 * logged), and so does one with relax on either code (its surrogate and
 * both Adam states in the checkpoint); `exact` on a large code, arm on a
 * categorical one and bad
 * --tau / --samples values are refused at once, and rebar on the sbn task
 * too; `gsvae gradvar` prints finite figures for every estimator defined
 * for the code (rebar and relax on both). */
#include "ckpt.h"
#include "estimator.h"
#include "model.h"
#include "rng.h"
#include "surrogate.h"
#include "testutil.h"
#include "util.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 4, D = 10, H = 6, MAXZ = 8, MAXC = 16 };

#define FD_STEP 1e-5
#define DRAWS 20000
#define SE_BOUND 4.0
#define SE_SLACK 1e-6
#define FIXTURE_GAIN 1.0f
/* Where relax's surrogate starts in the fixture's persist (baseline none
 * or mean): the 4 header floats, then rebar's 7 (estimator.h). */
#define RELAX_OFF (4 + 7)

/* ---- the tiny model and its double-precision reference ---- */

static double sigmoid_ref(double x)
{
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

static double softplus_ref(double x)
{
    return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}

typedef struct {
    vae_model m;
    vae_acts a;
    est_state s;
    float x[B * D];
    rng_t r;
    int zdim;
} fixture;

/* The tiny model; learned_tau0 > 0: with a learned temperature; samples
 * K: room for a K-sample bound; relaxed_kl: gumbel on the relaxed bound
 * at K = 1 too. */
static void fixture_init_as(fixture *f, latent_type lt, est_baseline bl, float learned_tau0,
                            int samples, int relaxed_kl)
{
    char err[ERR_LEN] = "";
    vae_config cfg = {.latent = lt,
                      .N = lt == LATENT_CATEGORICAL ? 2 : 3,
                      .K = lt == LATENT_CATEGORICAL ? 3 : 1,
                      .D = D,
                      .nhidden = 1,
                      .hidden = {H},
                      .learned_tau0 = learned_tau0};
    memset(f, 0, sizeof *f);
    rng_t r;
    rng_seed(&r, 7);
    ck_assert_msg(vae_init(&f->m, &cfg, &r, err) == 0, "%s", err);
    /* Larger weights and nonzero biases than a fresh model's, so that q is
     * far from uniform and f varies between codes; not so large that a code
     * becomes too rare for DRAWS draws to see it (min q is printed below). */
    for (size_t i = 0; i < f->m.nparams; i++)
        f->m.params[i] = FIXTURE_GAIN * f->m.params[i] + 0.3f * (2.0f * rng_uniformf_open(&r) - 1.0f);
    for (int i = 0; i < B * D; i++)
        f->x[i] = rng_uniform_open(&r) < 0.4 ? 1.0f : 0.0f;
    ck_assert_msg(vae_acts_init(&f->a, &f->m, B * samples, err) == 0, "%s", err);
    est_options o;
    est_options_default(&o);
    o.samples = samples;
    o.relaxed_kl = relaxed_kl;
    /* rebar's eta and log lambda, then relax's surrogate, at the end of
     * persist */
    o.learns_cv = EST_CV_RELAX;
    o.baseline = bl;
    o.var_norm = 0;
    o.baseline_lr = 1e-2f;
    o.baseline_seed = 3;
    ck_assert_msg(est_state_init(&f->s, &f->m, B, &o, err) == 0, "%s", err);
    f->zdim = vae_zdim(&cfg);
    ck_assert_int_le(f->zdim, MAXZ);
    vae_zero_grads(&f->m);
    vae_encode(&f->m, &f->a, f->x, B);
    rng_seed(&f->r, 11);
    if (getenv("GSVAE_TEST_VERBOSE")) {
        double qmin = 1;
        const float *l = f->a.enc[f->m.nenc - 1];
        for (int i = 0; i < B * f->zdim; i++)
            qmin = fmin(qmin, lt == LATENT_CATEGORICAL ? exp(f->a.logq[i])
                                                       : fmin(sigmoid_ref(l[i]), sigmoid_ref(-l[i])));
        fprintf(stderr, "fixture %s: smallest probability %.3g\n", stoch_latent_name(lt), qmin);
    }
}

static void fixture_init(fixture *f, latent_type lt, est_baseline bl)
{
    fixture_init_as(f, lt, bl, 0.0f, 1, 0);
}

static void fixture_free(fixture *f)
{
    est_state_free(&f->s);
    vae_acts_free(&f->a);
    vae_free(&f->m);
}

static est_ctx fixture_ctx(fixture *f, float tau)
{
    est_ctx c = {.m = &f->m, .a = &f->a, .s = &f->s, .x = f->x, .B = B, .tau = tau, .r = &f->r};
    return c;
}

/* The decoder of m in double with parameters p (NULL: m->params): f(z) for
 * image x, and df/dz into dz when not NULL.  One hidden ReLU layer. */
static double ref_decode(const vae_model *m, const double *p, const double *z, const float *x,
                         double *dz)
{
    const linear_layer *l0 = &m->dec[0], *l1 = &m->dec[1];
    double pre[H], h[H], out[D], f = 0.0;
#define P(i) (p ? p[i] : (double)m->params[i])
    for (int o = 0; o < l0->out; o++) {
        double s = P(l0->b + o);
        for (int c = 0; c < l0->in; c++)
            s += P(l0->w + (size_t)o * l0->in + c) * z[c];
        pre[o] = s;
        h[o] = s > 0 ? s : 0;
    }
    for (int o = 0; o < l1->out; o++) {
        double s = P(l1->b + o);
        for (int c = 0; c < l1->in; c++)
            s += P(l1->w + (size_t)o * l1->in + c) * h[c];
        out[o] = s;
        f += softplus_ref(s) - x[o] * s;
    }
    if (dz) {
        double dh[H];
        for (int c = 0; c < l1->in; c++) {
            double s = 0.0;
            for (int o = 0; o < l1->out; o++)
                s += P(l1->w + (size_t)o * l1->in + c) * (sigmoid_ref(out[o]) - x[o]);
            dh[c] = pre[c] > 0 ? s : 0.0;
        }
        for (int c = 0; c < l0->in; c++) {
            double s = 0.0;
            for (int o = 0; o < l0->out; o++)
                s += P(l0->w + (size_t)o * l0->in + c) * dh[o];
            dz[c] = s;
        }
    }
#undef P
    return f;
}

/* Number of codes and code number `code` as a vector. */
static int ref_codes(const vae_config *c)
{
    int n = 1;
    for (int i = 0; i < c->N; i++)
        n *= c->latent == LATENT_CATEGORICAL ? c->K : 2;
    return n;
}

static void ref_code(const vae_config *c, int code, double *z)
{
    memset(z, 0, sizeof(double) * vae_zdim(c));
    for (int i = 0; i < c->N; i++) {
        if (c->latent == LATENT_CATEGORICAL) {
            z[i * c->K + code % c->K] = 1.0;
            code /= c->K;
        } else {
            z[i] = code & 1;
            code >>= 1;
        }
    }
}

/* log q(z|x) of a code under logits l (one example), in double. */
static double ref_logq(const vae_config *c, const double *l, const double *z)
{
    double s = 0.0;
    for (int i = 0; i < c->N; i++) {
        if (c->latent == LATENT_CATEGORICAL) {
            const double *li = l + i * c->K;
            double mx = li[0], se = 0.0;
            for (int k = 1; k < c->K; k++)
                mx = fmax(mx, li[k]);
            for (int k = 0; k < c->K; k++)
                se += exp(li[k] - mx);
            for (int k = 0; k < c->K; k++)
                if (z[i * c->K + k] > 0.5)
                    s += li[k] - mx - log(se);
        } else {
            s -= softplus_ref(z[i] > 0.5 ? -l[i] : l[i]);
        }
    }
    return s;
}

/* q = softmax(l / tau) per variable or sigmoid(l / tau) per unit. */
static void ref_probs(const vae_config *c, const double *l, double tau, double *q)
{
    if (c->latent == LATENT_BERNOULLI) {
        for (int i = 0; i < c->N; i++)
            q[i] = sigmoid_ref(l[i] / tau);
        return;
    }
    for (int i = 0; i < c->N; i++) {
        double mx = -INFINITY, s = 0.0;
        for (int k = 0; k < c->K; k++)
            mx = fmax(mx, l[i * c->K + k] / tau);
        for (int k = 0; k < c->K; k++)
            s += (q[i * c->K + k] = exp(l[i * c->K + k] / tau - mx));
        for (int k = 0; k < c->K; k++)
            q[i * c->K + k] /= s;
    }
}

/* out = J^T v, J = d probs(l / tau) / dl, q = probs(l / tau). */
static void ref_probs_backward(const vae_config *c, const double *q, const double *v,
                               double tau, double *out)
{
    if (c->latent == LATENT_BERNOULLI) {
        for (int i = 0; i < c->N; i++)
            out[i] = q[i] * (1 - q[i]) * v[i] / tau;
        return;
    }
    for (int i = 0; i < c->N; i++) {
        const double *qi = q + i * c->K, *vi = v + i * c->K;
        double dot = 0.0;
        for (int k = 0; k < c->K; k++)
            dot += qi[k] * vi[k];
        for (int k = 0; k < c->K; k++)
            out[i * c->K + k] = qi[k] * (vi[k] - dot) / tau;
    }
}

/* (1/B) sum_b E_q[f] with logits l (B x zdim) and decoder parameters p. */
static double ref_expected(const vae_model *m, const double *l, const double *p, const float *x,
                           double *per_example)
{
    const vae_config *c = &m->cfg;
    int zdim = vae_zdim(c), n = ref_codes(c);
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        double e = 0.0, z[MAXZ];
        for (int code = 0; code < n; code++) {
            ref_code(c, code, z);
            e += exp(ref_logq(c, l + b * zdim, z)) * ref_decode(m, p, z, x + b * D, NULL);
        }
        if (per_example)
            per_example[b] = e;
        total += e;
    }
    return total / B;
}

static void logits_double(const fixture *f, double *l)
{
    const float *lf = f->a.enc[f->m.nenc - 1];
    for (int i = 0; i < B * f->zdim; i++)
        l[i] = lf[i];
}

/* |a - r| <= rel * max|r| + abs over a block, with a message naming it. */
static void assert_close(const char *what, const float *a, const double *r, int n, double rel,
                         double abs_tol)
{
    double scale = 0.0;
    for (int i = 0; i < n; i++)
        scale = fmax(scale, fabs(r[i]));
    for (int i = 0; i < n; i++) {
        ck_assert_msg(isfinite(a[i]), "%s[%d] = %g", what, i, a[i]);
        ck_assert_msg(fabs(a[i] - r[i]) <= rel * scale + abs_tol,
                      "%s[%d]: got %.9g, reference %.9g (scale %.3g)", what, i, a[i], r[i],
                      scale);
    }
}

/* ---- exact ---- */

static void check_exact(latent_type lt)
{
    fixture f;
    fixture_init(&f, lt, EST_BASELINE_NONE);
    const vae_config *cfg = &f.m.cfg;
    int zdim = f.zdim, nz = B * zdim;
    est_ctx c = fixture_ctx(&f, 1.0f);
    estimator_find("exact")->run(&c);

    double l[B * MAXZ], per[B], dl[B * MAXZ];
    logits_double(&f, l);
    ref_expected(&f.m, l, NULL, f.x, per);
    for (int b = 0; b < B; b++)
        ck_assert_msg(fabs(f.a.recon[b] - per[b]) <= 1e-5 * fabs(per[b]),
                      "recon[%d] %.9g, reference %.9g", b, f.a.recon[b], per[b]);
    for (int i = 0; i < nz; i++) {
        double keep = l[i];
        l[i] = keep + FD_STEP;
        double up = ref_expected(&f.m, l, NULL, f.x, NULL);
        l[i] = keep - FD_STEP;
        double down = ref_expected(&f.m, l, NULL, f.x, NULL);
        l[i] = keep;
        dl[i] = (up - down) / (2 * FD_STEP);
    }
    assert_close("exact dlogits", f.a.dlogits, dl, nz, 1e-4, 1e-7);

    /* The decoder's gradient: every decoder parameter by central differences. */
    size_t d0 = f.m.dec[0].w, nd = f.m.nparams - d0;
    double *p = malloc(f.m.nparams * sizeof *p), *g = malloc(nd * sizeof *g);
    ck_assert(p && g);
    for (size_t i = 0; i < f.m.nparams; i++)
        p[i] = f.m.params[i];
    for (size_t i = 0; i < nd; i++) {
        double keep = p[d0 + i];
        p[d0 + i] = keep + FD_STEP;
        double up = ref_expected(&f.m, l, p, f.x, NULL);
        p[d0 + i] = keep - FD_STEP;
        double down = ref_expected(&f.m, l, p, f.x, NULL);
        p[d0 + i] = keep;
        g[i] = (up - down) / (2 * FD_STEP);
    }
    for (int i = 0; i < f.m.ndec; i++) {
        const linear_layer *ly = &f.m.dec[i];
        char what[64];
        snprintf(what, sizeof what, "exact dec[%d].w", i);
        assert_close(what, f.m.grads + ly->w, g + (ly->w - d0), ly->in * ly->out, 1e-4, 1e-7);
        snprintf(what, sizeof what, "exact dec[%d].b", i);
        assert_close(what, f.m.grads + ly->b, g + (ly->b - d0), ly->out, 1e-4, 1e-7);
    }
    /* The encoder's parameters are not the estimator's business. */
    for (size_t i = 0; i < d0; i++)
        ck_assert_msg(f.m.grads[i] == 0.0f, "encoder gradient %zu touched", i);
    (void)cfg;
    free(p);
    free(g);
    fixture_free(&f);
}

START_TEST(exact_categorical)
{
    check_exact(LATENT_CATEGORICAL);
}
END_TEST

START_TEST(exact_bernoulli)
{
    check_exact(LATENT_BERNOULLI);
}
END_TEST

START_TEST(exact_limits)
{
    char err[ERR_LEN] = "";
    vae_config c = {.latent = LATENT_CATEGORICAL, .N = 2, .K = 3, .D = D};
    ck_assert_int_eq(est_count_configs(&c), 9);
    c.N = 20;
    c.K = 10;
    ck_assert_int_eq(est_count_configs(&c), -1);
    const estimator *ex = estimator_find("exact");
    ck_assert_ptr_nonnull(ex);
    ck_assert_int_eq(est_check(ex, &c, err), -1);
    ck_assert_msg(strstr(err, "exact") && strstr(err, "20x10"), "message: %s", err);
    ck_assert_int_eq(est_check(estimator_find("sf"), &c, err), 0);
    vae_config bern = {.latent = LATENT_BERNOULLI, .N = 16, .K = 1, .D = D};
    ck_assert_int_eq(est_count_configs(&bern), 65536);
    bern.N = 17;
    ck_assert_int_eq(est_count_configs(&bern), -1);
}
END_TEST

/* ---- unbiasedness ---- */

/* Exact d/dlogits of the fixture into ex. */
static void exact_dlogits(fixture *f, double *ex)
{
    est_ctx c = fixture_ctx(f, 1.0f);
    estimator_find("exact")->run(&c);
    for (int i = 0; i < B * f->zdim; i++)
        ex[i] = f->a.dlogits[i];
}

/* Mean and per-coordinate variance of `draws` estimates of d/dlogits: of
 * the reconstruction term alone (e->run), or of the whole bound
 * (est_elbo_gradient: the analytic KL's gradient added). */
static void draw_stats_of(fixture *f, const estimator *e, float tau, int draws, int whole,
                          double *mean, double *var)
{
    est_ctx c = fixture_ctx(f, tau);
    int n = B * f->zdim;
    double m2[B * MAXZ];
    for (int i = 0; i < n; i++)
        mean[i] = m2[i] = 0.0;
    for (int d = 0; d < draws; d++) {
        if (whole)
            est_elbo_gradient(e, &c);
        else
            e->run(&c);
        for (int i = 0; i < n; i++) {
            double v = f->a.dlogits[i], delta = v - mean[i];
            mean[i] += delta / (d + 1);
            m2[i] += delta * (v - mean[i]);
        }
    }
    for (int i = 0; i < n; i++)
        var[i] = m2[i] / (draws - 1);
}

static void draw_stats(fixture *f, const estimator *e, float tau, int draws, double *mean,
                       double *var)
{
    draw_stats_of(f, e, tau, draws, 0, mean, var);
}

/* DRAWS draws of estimator name's d/dlogits on f: their mean == ex within
 * SE_BOUND standard errors per coordinate; returns the total variance. */
static double check_mean_is(fixture *f, const char *name, const char *what, const double *ex)
{
    const estimator *e = estimator_find(name);
    double mean[B * MAXZ], var[B * MAXZ];
    draw_stats(f, e, 1.0f, DRAWS, mean, var);
    double total = 0.0, worst = 0.0;
    for (int i = 0; i < B * f->zdim; i++) {
        double se = sqrt(var[i] / DRAWS), dev = fabs(mean[i] - ex[i]);
        total += var[i];
        worst = fmax(worst, dev / (se + 1e-30));
        ck_assert_msg(dev <= SE_BOUND * se + SE_SLACK,
                      "%s (%s, %s) dlogits[%d]: mean %.6g, exact %.6g, %.1f SE", name,
                      stoch_latent_name(f->m.cfg.latent), what, i, mean[i], ex[i], dev / se);
    }
    if (getenv("GSVAE_TEST_VERBOSE"))
        fprintf(stderr, "%-7s %-11s %-8s total var %.4e, worst %.2f SE\n", name,
                stoch_latent_name(f->m.cfg.latent), what, total, worst);
    return total;
}

/* Checks mean == exact within SE_BOUND standard errors; returns the total
 * variance.  learning: the baseline keeps adapting during the draws, as in
 * training (the centring uses only earlier batches, so the mean stays the
 * exact gradient; the draws are then weakly dependent). */
static double check_unbiased_as(latent_type lt, const char *name, est_baseline bl, int learning)
{
    fixture f;
    fixture_init(&f, lt, bl);
    const estimator *e = estimator_find(name);
    ck_assert_ptr_nonnull(e);
    double ex[B * MAXZ];
    exact_dlogits(&f, ex);
    /* Let the moving average and the baseline network adapt, then freeze
     * them so that the draws are independent. */
    est_ctx c = fixture_ctx(&f, 1.0f);
    for (int w = 0; w < 500; w++)
        e->run(&c);
    f.s.frozen = !learning;
    char what[64];
    snprintf(what, sizeof what, "baseline %s", est_baseline_name(bl));
    double total = check_mean_is(&f, name, what, ex);
    fixture_free(&f);
    return total;
}

static double check_unbiased(latent_type lt, const char *name, est_baseline bl)
{
    return check_unbiased_as(lt, name, bl, 0);
}

START_TEST(sf_unbiased)
{
    latent_type lt = _i ? LATENT_BERNOULLI : LATENT_CATEGORICAL;
    double none = check_unbiased(lt, "sf", EST_BASELINE_NONE);
    double mean = check_unbiased(lt, "sf", EST_BASELINE_MEAN);
    double learned = check_unbiased(lt, "sf", EST_BASELINE_LEARNED);
    ck_assert_msg(mean < none, "mean baseline variance %g >= none %g", mean, none);
    ck_assert_msg(learned < none, "learned baseline variance %g >= none %g", learned, none);
}
END_TEST

/* log of the Concrete (Binary Concrete) density at y of one row, logits l,
 * temperature tau (Maddison et al. 2017, Def. 1 and Eq. 20), in double. */
static double ref_concrete_logpdf(const vae_config *c, const double *l, const double *y,
                                  double tau)
{
    double s = 0.0;
    if (c->latent == LATENT_BERNOULLI) {
        for (int i = 0; i < c->N; i++)
            s += log(tau) + l[i] - (tau + 1) * (log(y[i]) + log1p(-y[i])) -
                 2 * log(exp(l[i] - tau * log(y[i])) + exp(-tau * log1p(-y[i])));
        return s;
    }
    int K = c->K;
    for (int v = 0; v < c->N; v++) {
        double se = 0.0;
        s += lgamma(K) + (K - 1) * log(tau);
        for (int k = 0; k < K; k++) {
            s += l[v * K + k] - (tau + 1) * log(y[v * K + k]);
            se += exp(l[v * K + k] - tau * log(y[v * K + k]));
        }
        s -= K * log(se);
    }
    return s;
}

/* The relaxed K-sample bound (K 1 or 2) of the fixture on fixed noise (K
 * rows per example), uniform prior, logits l: (1/B) sum_b log mean_k w_k,
 * log w = -f(y) + log p(y) - log q(y) with Concrete densities; per-example
 * values into per. */
static double ref_relaxed_bound(const fixture *f, const double *l, const float *noise,
                                double tau, int K, double *per)
{
    const vae_config *c = &f->m.cfg;
    int zdim = f->zdim;
    double total = 0.0, zero[MAXZ] = {0};
    for (int b = 0; b < B; b++) {
        double lw[2];
        for (int k = 0; k < K; k++) {
            double a[MAXZ], y[MAXZ];
            for (int j = 0; j < zdim; j++)
                a[j] = l[b * zdim + j] + noise[(b * K + k) * zdim + j];
            ref_probs(c, a, tau, y);
            lw[k] = -ref_decode(&f->m, NULL, y, f->x + b * D, NULL) +
                    ref_concrete_logpdf(c, zero, y, tau) -
                    ref_concrete_logpdf(c, l + b * zdim, y, tau);
        }
        double L = lw[0];
        if (K == 2) {
            double mx = fmax(lw[0], lw[1]);
            L = mx + log((exp(lw[0] - mx) + exp(lw[1] - mx)) / 2);
        }
        if (per)
            per[b] = L;
        total += L;
    }
    return total / B;
}

/* gumbel on the relaxed bound, 2 samples, and 1 (--kl relaxed: the ELBO
 * with Concrete densities in place of the analytic KL), through
 * est_elbo_gradient (so that no analytic KL is added on top): d/dlogits of
 * one draw equals central differences (step 1e-4) of the relaxed bound
 * written out with the Concrete densities, on the draw's own noise:
 * |a - n| <= 1e-3 max|n| + 1e-5; recon + kl per example is -its bound
 * (1e-4 relative). */
START_TEST(gumbel_bound_gradient)
{
    latent_type lt = _i ? LATENT_BERNOULLI : LATENT_CATEGORICAL;
    for (int t = 0; t < 4; t++) {
        float tau = t & 1 ? 0.5f : 1.0f;
        int K = t & 2 ? 1 : 2;
        fixture f;
        fixture_init_as(&f, lt, EST_BASELINE_NONE, 0.0f, K, K == 1);
        est_ctx c = fixture_ctx(&f, tau);
        est_elbo_gradient(estimator_find("gumbel"), &c);
        const float *noise = est_last_bound_noise(&f.s);
        double l[B * MAXZ], ex[B * MAXZ], per[B];
        logits_double(&f, l);
        ref_relaxed_bound(&f, l, noise, tau, K, per);
        for (int b = 0; b < B; b++)
            ck_assert_msg(fabs(f.a.recon[b] + f.a.kl[b] + per[b]) <= 1e-4 * fabs(per[b]),
                          "K %d, example %d: recon + kl %.9g, bound %.9g", K, b,
                          f.a.recon[b] + f.a.kl[b], per[b]);
        for (int i = 0; i < B * f.zdim; i++) {
            double keep = l[i], h = 1e-4;
            l[i] = keep + h;
            double up = ref_relaxed_bound(&f, l, noise, tau, K, NULL);
            l[i] = keep - h;
            double down = ref_relaxed_bound(&f, l, noise, tau, K, NULL);
            l[i] = keep;
            ex[i] = -(up - down) / (2 * h);
        }
        char what[64];
        snprintf(what, sizeof what, "gumbel %d-sample relaxed bound (%s, tau %g) dlogits", K,
                 stoch_latent_name(lt), tau);
        assert_close(what, f.a.dlogits, ex, B * f.zdim, 1e-3, 1e-5);
        fixture_free(&f);
    }
}
END_TEST

/* REBAR, on either code: unbiased at the eta and lambda its 500 adapting
 * warm-up draws reach (check_unbiased), and at its starting ones; the
 * adaptation lowers the total variance of d/dlogits (it descends sum g^2
 * on each draw). */
START_TEST(rebar_unbiased)
{
    latent_type lt = _i ? LATENT_BERNOULLI : LATENT_CATEGORICAL;
    double adapted = check_unbiased(lt, "rebar", EST_BASELINE_NONE);
    fixture f;
    fixture_init(&f, lt, EST_BASELINE_NONE);
    double ex[B * MAXZ];
    exact_dlogits(&f, ex);
    f.s.frozen = 1;
    double start = check_mean_is(&f, "rebar", "eta 1, lambda 0.5", ex);
    ck_assert_msg(adapted < start, "adapted variance %g >= starting %g", adapted, start);
    fixture_free(&f);
}
END_TEST

/* The fixture's relax surrogate set to uniform(-scale, scale) weights (its
 * output layer included, so that r is far from 0). */
static void relax_randomise(fixture *f, float scale, uint64_t seed)
{
    rng_t r;
    rng_seed(&r, seed);
    stoch_layer code = vae_code(&f->m.cfg);
    size_t nrx = surr_nparams(&code, D, EST_RELAX_HIDDEN);
    for (size_t i = 0; i < nrx; i++)
        f->s.persist[RELAX_OFF + i] = scale * (2.0f * rng_uniformf_open(&r) - 1.0f);
}

/* RELAX, on either code: unbiased at the parameters its 500 adapting
 * warm-up draws reach (check_unbiased), and at a random surrogate far from
 * its zero start (so that a wrong sign or a missing factor in any of r's
 * three terms shows); at its start (r = 0) each draw is REBAR's draw
 * exactly. */
START_TEST(relax_unbiased)
{
    latent_type lt = _i ? LATENT_BERNOULLI : LATENT_CATEGORICAL;
    check_unbiased(lt, "relax", EST_BASELINE_NONE);
    fixture f;
    fixture_init(&f, lt, EST_BASELINE_NONE);
    double ex[B * MAXZ];
    exact_dlogits(&f, ex);
    f.s.frozen = 1;
    est_ctx c = fixture_ctx(&f, 1.0f);
    rng_t r0 = f.r;
    float rebar[B * MAXZ];
    estimator_find("rebar")->run(&c);
    memcpy(rebar, f.a.dlogits, sizeof(float) * B * f.zdim);
    f.r = r0;
    estimator_find("relax")->run(&c);
    for (int i = 0; i < B * f.zdim; i++)
        ck_assert_msg(f.a.dlogits[i] == rebar[i], "[%d]: relax %.9g, rebar %.9g", i,
                      f.a.dlogits[i], rebar[i]);
    relax_randomise(&f, 0.3f, 5);
    check_mean_is(&f, "relax", "random surrogate", ex);
    fixture_free(&f);
}
END_TEST

/* The fixture's relax parameters (eta, log lambda, the surrogate's nrx) as
 * doubles, and sum g^2 of relax's estimate on one fixed draw at them. */
typedef struct {
    fixture *f;
    double phi[2 + 4096];
    size_t nrx;
    rng_t r0;
} relax_fd;

static double relax_sumsq(void *ctx)
{
    relax_fd *R = ctx;
    fixture *f = R->f;
    f->s.persist[4] = (float)R->phi[0];
    f->s.persist[5] = (float)R->phi[1];
    for (size_t i = 0; i < R->nrx; i++)
        f->s.persist[RELAX_OFF + i] = (float)R->phi[2 + i];
    f->r = R->r0;
    est_ctx c = fixture_ctx(f, 1.0f);
    estimator_find("relax")->run(&c);
    double ss = 0.0;
    for (int i = 0; i < B * f->zdim; i++)
        ss += (double)f->a.dlogits[i] * f->a.dlogits[i];
    return ss;
}

/* The gradient of sum g^2 that relax descends, on either code, against
 * central differences (step 1e-2: g is float, and smaller steps drown in
 * its rounding) of sum g^2 on the same draw: in eta and in every parameter
 * of a random surrogate (exact derivatives: bound 2e-3 relative, floor
 * 1e-2 of the largest; measured 3e-4), and in log lambda (itself a central
 * difference of step EST_REBAR_FD_STEP: 2e-2). */
START_TEST(relax_variance_gradient)
{
    latent_type lt = _i ? LATENT_BERNOULLI : LATENT_CATEGORICAL;
    fixture f;
    fixture_init(&f, lt, EST_BASELINE_NONE);
    relax_randomise(&f, 0.3f, 9);
    static relax_fd R;
    R.f = &f;
    stoch_layer code = vae_code(&f.m.cfg);
    R.nrx = surr_nparams(&code, D, EST_RELAX_HIDDEN);
    ck_assert_uint_le(R.nrx, 4096);
    size_t np = 2 + R.nrx;
    R.phi[0] = 0.7; /* off eta's start of 1, so that no term vanishes by chance */
    R.phi[1] = f.s.persist[5];
    for (size_t i = 0; i < R.nrx; i++)
        R.phi[2 + i] = f.s.persist[RELAX_OFF + i];
    R.r0 = f.r;
    f.s.frozen = 1;
    relax_sumsq(&R); /* a frozen draw, to set the parameters */
    f.s.frozen = 0;
    f.r = R.r0;
    est_ctx c = fixture_ctx(&f, 1.0f);
    estimator_find("relax")->run(&c);
    static double an[2 + 4096], nu[2 + 4096];
    const float *g = est_last_cv_grad(&f.s);
    for (size_t i = 0; i < np; i++)
        an[i] = g[i];
    f.s.frozen = 1;
    testutil_numeric_grad(nu, R.phi, np, 1e-2, relax_sumsq, &R);
    testutil_assert_grad_close("relax d sum g^2 / d eta", an, nu, 1, 2e-3, 1e-2);
    testutil_assert_grad_close("relax d sum g^2 / d log lambda", an + 1, nu + 1, 1, 2e-2, 1e-2);
    testutil_assert_grad_close("relax d sum g^2 / d surrogate", an + 2, nu + 2, R.nrx, 2e-3,
                               1e-2);
    fixture_free(&f);
}
END_TEST

/* Total variance of relax's d/dlogits over DRAWS frozen draws, after
 * `train` adapting draws; hold_eta >= 0: eta is put back to it (and log
 * lambda to its start) after each adapting draw, so that only the
 * surrogate learns. */
static double relax_variance_after(fixture *f, int train, float hold_eta)
{
    const estimator *e = estimator_find("relax");
    float rebar_start[7];
    if (hold_eta >= 0.0f)
        f->s.persist[4] = hold_eta;
    memcpy(rebar_start, f->s.persist + 4, sizeof rebar_start);
    est_ctx c = fixture_ctx(f, 1.0f);
    f->s.frozen = 0;
    for (int w = 0; w < train; w++) {
        e->run(&c);
        if (hold_eta >= 0.0f)
            memcpy(f->s.persist + 4, rebar_start, sizeof rebar_start);
    }
    f->s.frozen = 1;
    double mean[B * MAXZ], var[B * MAXZ], total = 0.0;
    draw_stats(f, e, 1.0f, DRAWS, mean, var);
    for (int i = 0; i < B * f->zdim; i++)
        total += var[i];
    return total;
}

/* Training RELAX's parameters lowers its variance, against the same
 * parameters frozen at their start (the same draws: the generator is
 * reset):
 * - the surrogate alone, with eta held at 0 (so that r is the whole
 *   control variate and relax at the start is the score function without
 *   a baseline): 3000 adapting draws at the fixture's Adam step 1e-2 cut
 *   the total variance a hundredfold (measured: 8.9 to 5e-3, REBAR's
 *   adapted level);
 * - eta, lambda and the surrogate together at Adam step 1e-3 (the
 *   training default): 3000 draws end below the start (measured 4.7e-3
 *   against 5.3e-3; the REBAR term leaves the surrogate little to add on
 *   this model). */
START_TEST(relax_training_lowers_variance)
{
    fixture f;
    fixture_init(&f, LATENT_BERNOULLI, EST_BASELINE_NONE);
    rng_t r0 = f.r;
    double sf_start = relax_variance_after(&f, 0, 0.0f);
    f.r = r0;
    double sf_trained = relax_variance_after(&f, 3000, 0.0f);
    fixture_free(&f);

    char err[ERR_LEN] = "";
    fixture_init(&f, LATENT_BERNOULLI, EST_BASELINE_NONE);
    est_state_free(&f.s);
    est_options o;
    est_options_default(&o);
    o.baseline = EST_BASELINE_NONE;
    o.var_norm = 0;
    o.baseline_lr = 1e-3f;
    o.baseline_seed = 3;
    o.learns_cv = EST_CV_RELAX;
    ck_assert_msg(est_state_init(&f.s, &f.m, B, &o, err) == 0, "%s", err);
    r0 = f.r;
    double start = relax_variance_after(&f, 0, -1.0f);
    f.r = r0;
    double trained = relax_variance_after(&f, 3000, -1.0f);
    if (getenv("GSVAE_TEST_VERBOSE"))
        fprintf(stderr,
                "relax total variance: surrogate alone (eta 0) %.4e -> %.4e; all of eta, "
                "lambda, r %.4e -> %.4e\n",
                sf_start, sf_trained, start, trained);
    ck_assert_msg(sf_trained < 0.01 * sf_start, "surrogate alone: trained variance %g, start %g",
                  sf_trained, sf_start);
    ck_assert_msg(trained < start, "trained variance %g >= starting %g", trained, start);
    fixture_free(&f);
}
END_TEST

/* The K = 2 sample bound of the fixture, (1/B) sum_b sum_{z1, z2}
 * q(z1) q(z2) log((w1 + w2) / 2), w = p(x|z) p(z) / q(z|x) under the
 * uniform prior, with logits l; fz[b][code] = -log p(x_b|code). */
static double ref_bound2(const vae_config *c, const double *l, const double *fz)
{
    int zdim = vae_zdim(c), n = ref_codes(c);
    double logp = -c->N * log(c->latent == LATENT_CATEGORICAL ? (double)c->K : 2.0), total = 0.0;
    for (int b = 0; b < B; b++) {
        double lq[MAXC], z[MAXZ];
        for (int code = 0; code < n; code++) {
            ref_code(c, code, z);
            lq[code] = ref_logq(c, l + b * zdim, z);
        }
        for (int c1 = 0; c1 < n; c1++)
            for (int c2 = 0; c2 < n; c2++) {
                double a = -fz[b * MAXC + c1] + logp - lq[c1];
                double d = -fz[b * MAXC + c2] + logp - lq[c2];
                double mx = fmax(a, d);
                total += exp(lq[c1] + lq[c2]) * (mx + log((exp(a - mx) + exp(d - mx)) / 2));
            }
    }
    return total / B;
}

/* VIMCO on K = 2 samples: the mean of its d/dlogits is the gradient of
 * -(the 2-sample bound), enumerated over all pairs of codes and
 * differentiated by central differences (step 1e-5) in double. */
START_TEST(vimco_unbiased)
{
    latent_type lt = _i ? LATENT_BERNOULLI : LATENT_CATEGORICAL;
    fixture f;
    fixture_init_as(&f, lt, EST_BASELINE_NONE, 0.0f, 2, 0);
    const vae_config *cfg = &f.m.cfg;
    int n = ref_codes(cfg);
    ck_assert_int_le(n, MAXC);
    double fz[B * MAXC], l[B * MAXZ], ex[B * MAXZ];
    for (int b = 0; b < B; b++)
        for (int code = 0; code < n; code++) {
            double z[MAXZ];
            ref_code(cfg, code, z);
            fz[b * MAXC + code] = ref_decode(&f.m, NULL, z, f.x + b * D, NULL);
        }
    logits_double(&f, l);
    for (int i = 0; i < B * f.zdim; i++) {
        double keep = l[i];
        l[i] = keep + FD_STEP;
        double up = ref_bound2(cfg, l, fz);
        l[i] = keep - FD_STEP;
        double down = ref_bound2(cfg, l, fz);
        l[i] = keep;
        ex[i] = -(up - down) / (2 * FD_STEP);
    }
    check_mean_is(&f, "vimco", "K = 2", ex);
    fixture_free(&f);
}
END_TEST

/* ARM and DisARM (Bernoulli codes only): unbiased; DisARM, ARM with u
 * integrated out given the pair, has the smaller total variance (Dong et
 * al. 2020 prove it per coordinate). */
START_TEST(arm_disarm_unbiased)
{
    double arm = check_unbiased(LATENT_BERNOULLI, "arm", EST_BASELINE_NONE);
    double disarm = check_unbiased(LATENT_BERNOULLI, "disarm", EST_BASELINE_NONE);
    ck_assert_msg(disarm < arm, "disarm variance %g >= arm %g", disarm, arm);
}
END_TEST

/* ARM and DisARM are defined for Bernoulli codes only: est_check refuses
 * them on a categorical code with one line, and accepts them on bits;
 * REBAR and RELAX it accepts on both. */
START_TEST(arm_refused_on_categorical)
{
    char err[ERR_LEN] = "";
    vae_config cat = {.latent = LATENT_CATEGORICAL, .N = 2, .K = 3, .D = D, .nhidden = 1,
                      .hidden = {H}};
    vae_config bits = {.latent = LATENT_BERNOULLI, .N = 3, .K = 1, .D = D, .nhidden = 1,
                       .hidden = {H}};
    const char *names[] = {"arm", "disarm", "rebar", "relax"};
    for (int i = 0; i < 4; i++) {
        const estimator *e = estimator_find(names[i]);
        ck_assert_ptr_nonnull(e);
        ck_assert_int_eq(est_check(e, &bits, err), 0);
        ck_assert_int_eq(est_check(e, &cat, err), i < 2 ? -1 : 0);
        if (i >= 2)
            continue;
        char want[256];
        snprintf(want, sizeof want,
                 "--estimator '%s': for Bernoulli latents only, not categorical ones", names[i]);
        ck_assert_str_eq(err, want);
    }
    ck_assert_int_eq(est_check(estimator_find("sf"), &cat, err), 0);
}
END_TEST

START_TEST(muprop_unbiased)
{
    latent_type lt = _i ? LATENT_BERNOULLI : LATENT_CATEGORICAL;
    check_unbiased(lt, "muprop", EST_BASELINE_NONE);
    check_unbiased(lt, "muprop", EST_BASELINE_MEAN);
    check_unbiased(lt, "muprop", EST_BASELINE_LEARNED);
}
END_TEST

/* The same with the baselines learning during the draws, as in training:
 * the learned baseline's own update must leave the signal it centres as it
 * was (it once overwrote it with the residual, flipping the signal's sign). */
START_TEST(unbiased_while_learning)
{
    latent_type lt = _i ? LATENT_BERNOULLI : LATENT_CATEGORICAL;
    check_unbiased_as(lt, "sf", EST_BASELINE_MEAN, 1);
    check_unbiased_as(lt, "sf", EST_BASELINE_LEARNED, 1);
    check_unbiased_as(lt, "muprop", EST_BASELINE_LEARNED, 1);
}
END_TEST

/* Variance normalisation divides the whole encoder gradient, not only the
 * reconstruction's score term: with the running variance frozen at 16, the
 * mean of est_elbo_gradient's d/dlogits is (exact reconstruction term +
 * analytic KL) / 4 within SE_BOUND standard errors.  Dividing the score
 * term alone leaves 3/4 of the KL's gradient over, which outweighs the
 * reconstruction and collapses q(z|x) onto the prior in training. */
static void check_normalised(latent_type lt, const char *name, int signal)
{
    fixture f;
    fixture_init(&f, lt, EST_BASELINE_MEAN);
    const estimator *e = estimator_find(name);
    ck_assert_ptr_nonnull(e);
    int n = B * f.zdim;
    double ex[B * MAXZ], mean[B * MAXZ], var[B * MAXZ], kl_size = 0.0;
    exact_dlogits(&f, ex);
    for (int i = 0; i < n; i++)
        f.a.dlogits[i] = 0.0f;
    vae_kl(&f.m, &f.a, B);
    vae_kl_backward(&f.m, &f.a, B, 1.0f / B, 1.0f / B);
    for (int i = 0; i < n; i++) {
        kl_size = fmax(kl_size, fabs(f.a.dlogits[i]));
        /* signal (sf): the score term divided, the analytic KL whole. */
        ex[i] = signal ? ex[i] / 4.0 + f.a.dlogits[i] : (ex[i] + f.a.dlogits[i]) / 4.0;
    }
    f.s.var_norm = 1;
    f.s.norm_signal = signal;
    est_ctx c = fixture_ctx(&f, 1.0f);
    for (int w = 0; w < 500; w++)
        est_elbo_gradient(e, &c);
    f.s.frozen = 1;
    f.s.persist[1] = 16.0f; /* the running variance: divisor 4 */
    draw_stats_of(&f, e, 1.0f, DRAWS, 1, mean, var);
    ck_assert_float_eq(f.s.enc_scale, signal ? 1.0f : 0.25f);
    double worst = 0.0, worst_kl = 0.0;
    for (int i = 0; i < n; i++) {
        double se = sqrt(var[i] / DRAWS), dev = fabs(mean[i] - ex[i]);
        worst = fmax(worst, dev / (se + 1e-30));
        worst_kl = fmax(worst_kl, kl_size / (se + 1e-30));
        ck_assert_msg(dev <= SE_BOUND * se + SE_SLACK,
                      "%s (%s) normalised dlogits[%d]: mean %.6g, expected %.6g, %.1f SE", name,
                      stoch_latent_name(lt), i, mean[i], ex[i], dev / se);
    }
    if (getenv("GSVAE_TEST_VERBOSE"))
        fprintf(stderr, "%-7s %-11s normalised: worst %.2f SE; largest KL term %.1f SE\n", name,
                stoch_latent_name(lt), worst, worst_kl);
    fixture_free(&f);
}

START_TEST(normalisation_scales_whole_gradient)
{
    latent_type lt = _i ? LATENT_BERNOULLI : LATENT_CATEGORICAL;
    check_normalised(lt, "sf", 0);
    check_normalised(lt, "muprop", 0);
}
END_TEST

/* --var-norm-scope signal: the divisor scales the score term alone; for sf
 * the mean is then the exact reconstruction term / 4 plus the whole
 * analytic KL. */
START_TEST(normalisation_of_the_signal_alone)
{
    check_normalised(_i ? LATENT_BERNOULLI : LATENT_CATEGORICAL, "sf", 1);
}
END_TEST

/* ---- the defining formulas on one draw ---- */

/* One draw of estimator `name`; then rebuild d/dlogits from its sample (or
 * noise) in double and compare. */
static void check_formula_draw(latent_type lt, const char *name, float tau, int draw)
{
    fixture f;
    fixture_init(&f, lt, EST_BASELINE_NONE);
    const vae_config *cfg = &f.m.cfg;
    int zdim = f.zdim, K = cfg->K;
    est_ctx c = fixture_ctx(&f, tau);
    for (int d = 0; d <= draw; d++)
        estimator_find(name)->run(&c);
    double l[B * MAXZ], want[B * MAXZ], recon[B];
    logits_double(&f, l);
    for (int b = 0; b < B; b++) {
        const double *lb = l + b * zdim;
        double *w = want + b * zdim;
        double q[MAXZ], z[MAXZ], dz[MAXZ], y[MAXZ];
        ref_probs(cfg, lb, 1.0, q);
        for (int j = 0; j < zdim; j++)
            z[j] = f.a.z[b * zdim + j];
        if (!strcmp(name, "gumbel") || !strcmp(name, "st-gumbel")) {
            /* The relaxed sample from the estimator's own noise. */
            double a[MAXZ];
            for (int j = 0; j < zdim; j++)
                a[j] = lb[j] + est_last_noise(&f.s)[b * zdim + j];
            ref_probs(cfg, a, tau, y);
            if (!strcmp(name, "gumbel")) {
                for (int j = 0; j < zdim; j++)
                    z[j] = y[j];
            } else {
                /* The hard sample is the argmax (threshold) of y. */
                for (int i = 0; i < cfg->N; i++) {
                    if (cfg->latent == LATENT_BERNOULLI) {
                        ck_assert(z[i] == (y[i] > 0.5 ? 1.0 : 0.0));
                        continue;
                    }
                    int best = 0;
                    for (int k = 1; k < K; k++)
                        if (y[i * K + k] > y[i * K + best])
                            best = k;
                    for (int k = 0; k < K; k++)
                        ck_assert(z[i * K + k] == (k == best ? 1.0 : 0.0));
                }
            }
        } else if (!strcmp(name, "arm") || !strcmp(name, "disarm")) {
            /* The pair from the estimator's own uniforms: z = 1[u < q]. */
            for (int j = 0; j < zdim; j++)
                ck_assert(z[j] == (est_last_noise(&f.s)[b * zdim + j] < (float)q[j] ? 1.0 : 0.0));
        } else {
            /* A hard code: one-hot per variable, or bits. */
            for (int i = 0; i < cfg->N; i++) {
                double s = 0.0;
                for (int k = 0; k < K; k++) {
                    double v = z[i * K + k];
                    ck_assert(v == 0.0 || v == 1.0);
                    s += v;
                }
                if (cfg->latent == LATENT_CATEGORICAL)
                    ck_assert(s == 1.0);
            }
        }
        recon[b] = ref_decode(&f.m, NULL, z, f.x + b * D, dz);
        for (int j = 0; j < zdim; j++)
            dz[j] /= B;
        if (!strcmp(name, "gumbel") || !strcmp(name, "st-gumbel")) {
            ref_probs_backward(cfg, y, dz, tau, w);
        } else if (!strcmp(name, "st")) {
            ref_probs_backward(cfg, q, dz, 1.0, w);
        } else if (!strcmp(name, "annealed-st")) {
            double qa[MAXZ];
            ref_probs(cfg, lb, tau, qa);
            ref_probs_backward(cfg, qa, dz, tau, w);
        } else if (!strcmp(name, "darn")) {
            for (int i = 0; i < cfg->N; i++) {
                if (cfg->latent == LATENT_BERNOULLI) {
                    w[i] = dz[i] * (z[i] - 0.5) * (z[i] - q[i]);
                    continue;
                }
                double sig = 0.0;
                for (int k = 0; k < K; k++)
                    sig += dz[i * K + k] * (z[i * K + k] - 1.0 / K);
                for (int k = 0; k < K; k++)
                    w[i * K + k] = sig * (z[i * K + k] - q[i * K + k]);
            }
        } else if (!strcmp(name, "sf")) {
            for (int j = 0; j < zdim; j++)
                w[j] = recon[b] / B * (z[j] - q[j]);
        } else if (!strcmp(name, "muprop")) {
            double dbar[MAXZ];
            double fbar = ref_decode(&f.m, NULL, q, f.x + b * D, dbar);
            double r = recon[b] - fbar;
            for (int j = 0; j < zdim; j++)
                r -= dbar[j] * (z[j] - q[j]);
            for (int j = 0; j < zdim; j++)
                dbar[j] /= B;
            ref_probs_backward(cfg, q, dbar, 1.0, w);
            for (int j = 0; j < zdim; j++)
                w[j] += r / B * (z[j] - q[j]);
        } else if (!strcmp(name, "arm") || !strcmp(name, "disarm")) {
            const float *u = est_last_noise(&f.s) + b * zdim;
            double zt[MAXZ];
            for (int j = 0; j < zdim; j++)
                zt[j] = 1.0f - u[j] < (float)q[j] ? 1.0 : 0.0;
            double df = recon[b] - ref_decode(&f.m, NULL, zt, f.x + b * D, NULL);
            for (int j = 0; j < zdim; j++) {
                if (!strcmp(name, "arm"))
                    /* (f(zt) - f(z)) (u - 1/2) */
                    w[j] = -df * (u[j] - 0.5) / B;
                else
                    /* (f(z) - f(zt))/2 (-1)^zt 1[z != zt] sigmoid(|l|) */
                    w[j] = z[j] == zt[j] ? 0.0
                                         : df / 2 * (zt[j] ? -1.0 : 1.0) *
                                               sigmoid_ref(fabs(lb[j])) / B;
            }
        } else {
            ck_abort_msg("no formula for %s", name);
        }
    }
    char what[64];
    snprintf(what, sizeof what, "%s (%s) dlogits", name, stoch_latent_name(lt));
    assert_close(what, f.a.dlogits, want, B * zdim, 1e-4, 1e-6);
    for (int b = 0; b < B; b++)
        ck_assert_msg(fabs(f.a.recon[b] - recon[b]) <= 1e-5 * fabs(recon[b]),
                      "%s recon[%d] %.9g, reference %.9g", name, b, f.a.recon[b], recon[b]);
    fixture_free(&f);
}

/* The first draw of a fresh fixture. */
static void check_formula(latent_type lt, const char *name, float tau)
{
    check_formula_draw(lt, name, tau, 0);
}

static const char *const formula_names[] = {"st", "annealed-st", "darn", "gumbel",
                                            "st-gumbel", "sf", "muprop"};

START_TEST(formulas_categorical)
{
    for (size_t i = 0; i < sizeof formula_names / sizeof *formula_names; i++)
        for (int t = 0; t < 2; t++)
            check_formula(LATENT_CATEGORICAL, formula_names[i], t ? 0.4f : 1.0f);
}
END_TEST

START_TEST(formulas_bernoulli)
{
    for (size_t i = 0; i < sizeof formula_names / sizeof *formula_names; i++)
        for (int t = 0; t < 2; t++)
            check_formula(LATENT_BERNOULLI, formula_names[i], t ? 0.4f : 1.0f);
    /* Several draws, so that pairs with and without differing bits occur. */
    for (int d = 0; d < 5; d++) {
        check_formula_draw(LATENT_BERNOULLI, "arm", 1.0f, d);
        check_formula_draw(LATENT_BERNOULLI, "disarm", 1.0f, d);
    }
}
END_TEST

/* st and annealed-st agree at slope 1 and differ at slope 1/tau != 1. */
START_TEST(annealed_st_slope)
{
    fixture f;
    fixture_init(&f, LATENT_CATEGORICAL, EST_BASELINE_NONE);
    int n = B * f.zdim;
    float st[B * MAXZ];
    rng_seed(&f.r, 5);
    est_ctx c = fixture_ctx(&f, 1.0f);
    estimator_find("st")->run(&c);
    memcpy(st, f.a.dlogits, n * sizeof(float));
    rng_seed(&f.r, 5);
    estimator_find("annealed-st")->run(&c);
    for (int i = 0; i < n; i++)
        ck_assert_msg(fabsf(st[i] - f.a.dlogits[i]) <= 1e-6f * (1 + fabsf(st[i])),
                      "annealed-st at tau 1 differs from st at %d", i);
    rng_seed(&f.r, 5);
    c.tau = 0.5f;
    estimator_find("annealed-st")->run(&c);
    double diff = 0;
    for (int i = 0; i < n; i++)
        diff += fabs(st[i] - f.a.dlogits[i]);
    ck_assert_msg(diff > 1e-3, "slope 2 left the gradient unchanged");
    fixture_free(&f);
}
END_TEST

/* ---- the Gumbel-Softmax bias and temperature ---- */

START_TEST(gumbel_bias_falls_with_tau)
{
    fixture f;
    fixture_init(&f, LATENT_CATEGORICAL, EST_BASELINE_NONE);
    int n = B * f.zdim;
    double ex[B * MAXZ], mean[B * MAXZ], var[B * MAXZ], bias[2], floor_[2];
    const float taus[2] = {1.0f, 0.3f};
    exact_dlogits(&f, ex);
    for (int t = 0; t < 2; t++) {
        draw_stats(&f, estimator_find("gumbel"), taus[t], DRAWS, mean, var);
        double b2 = 0, tv = 0;
        for (int i = 0; i < n; i++) {
            b2 += (mean[i] - ex[i]) * (mean[i] - ex[i]);
            tv += var[i];
        }
        bias[t] = sqrt(b2);
        floor_[t] = sqrt(tv / DRAWS);
        if (getenv("GSVAE_TEST_VERBOSE"))
            fprintf(stderr, "gumbel tau %.1f: bias %.4e, noise floor %.4e\n", taus[t], bias[t],
                    floor_[t]);
    }
    ck_assert_msg(bias[0] > 3 * floor_[0], "tau 1: bias %g is within noise %g", bias[0],
                  floor_[0]);
    ck_assert_msg(bias[1] + 3 * (floor_[0] + floor_[1]) < bias[0],
                  "bias at tau 0.3 (%g) not below bias at tau 1 (%g) by 3 noise floors", bias[1],
                  bias[0]);
    fixture_free(&f);
}
END_TEST

/* ---- a learned temperature ---- */

/* The training loss as a function of log tau on the draw of the last
 * run, in double: gumbel's (1/B) sum_b f(y_b), y_b the relaxed sample of
 * the estimator's own noise at tau = exp(s); for st-gumbel the surrogate
 * whose gradient the straight-through pass takes, (1/B) sum_b
 * f'(z_b) . y_b with z_b the hard sample (fixed). */
static double tau_loss(const fixture *f, const double *l, int st, const double *dzh, double s)
{
    const vae_config *cfg = &f->m.cfg;
    int zdim = f->zdim;
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        double a[MAXZ], y[MAXZ];
        for (int j = 0; j < zdim; j++)
            a[j] = l[b * zdim + j] + est_last_noise(&f->s)[b * zdim + j];
        ref_probs(cfg, a, exp(s), y);
        if (!st) {
            total += ref_decode(&f->m, NULL, y, f->x + b * D, NULL);
            continue;
        }
        for (int j = 0; j < zdim; j++)
            total += dzh[b * zdim + j] * y[j];
    }
    return total / B;
}

/* d loss / d log tau of gumbel and st-gumbel against central differences
 * of tau_loss in double (step 1e-4): |g - n| <= 1e-3 |n| + 1e-5.  The
 * temperature passed in is replaced by the model's; a model without a
 * learned temperature has no slot for it. */
static void check_tau_gradient(latent_type lt, const char *name, float tau0)
{
    fixture f;
    fixture_init_as(&f, lt, EST_BASELINE_NONE, tau0, 1, 0);
    ck_assert_uint_eq(f.m.log_tau, f.m.nparams - 1);
    est_ctx c = fixture_ctx(&f, 0.123f);
    est_elbo_gradient(estimator_find(name), &c);
    double tau = exp((double)f.m.params[f.m.log_tau]);
    ck_assert_msg(fabs(c.tau - tau) <= 1e-6 * tau, "ran at tau %g, the model's is %g", c.tau,
                  tau);
    double l[B * MAXZ], dzh[B * MAXZ];
    logits_double(&f, l);
    int st = !strcmp(name, "st-gumbel");
    for (int b = 0; b < B && st; b++) {
        double z[MAXZ];
        for (int j = 0; j < f.zdim; j++)
            z[j] = f.a.z[b * f.zdim + j];
        ref_decode(&f.m, NULL, z, f.x + b * D, dzh + b * f.zdim);
    }
    double s = log(tau), h = 1e-4;
    double num = (tau_loss(&f, l, st, dzh, s + h) - tau_loss(&f, l, st, dzh, s - h)) / (2 * h);
    double got = f.m.grads[f.m.log_tau];
    ck_assert_msg(fabs(got - num) <= 1e-3 * fabs(num) + 1e-5,
                  "%s (%s, tau %g): d loss/d log tau %.8g, central difference %.8g", name,
                  stoch_latent_name(lt), tau, got, num);
    ck_assert_msg(fabs(num) > 1e-4, "%s: a flat loss in tau tests nothing (%g)", name, num);
    fixture g;
    fixture_init(&g, lt, EST_BASELINE_NONE);
    ck_assert_uint_eq(g.m.log_tau, 0);
    ck_assert_uint_eq(g.m.nparams + 1, f.m.nparams);
    fixture_free(&g);
    fixture_free(&f);
}

START_TEST(learned_tau_gradient)
{
    latent_type lt = _i ? LATENT_BERNOULLI : LATENT_CATEGORICAL;
    check_tau_gradient(lt, "gumbel", 1.0f);
    check_tau_gradient(lt, "gumbel", 0.4f);
    check_tau_gradient(lt, "st-gumbel", 1.0f);
    check_tau_gradient(lt, "st-gumbel", 0.4f);
}
END_TEST

/* ---- the table ---- */

START_TEST(table_keys_off_the_list)
{
    /* Every estimator of the list, in its order, at its own index. */
    const estimator *e = estimator_list();
    for (int id = 0; id < STOCH_NESTIMATORS; id++, e++) {
        ck_assert_ptr_eq(estimator_get((stoch_estimator)id), e);
        ck_assert_int_eq(e->id, id);
        ck_assert_ptr_nonnull(e->run);
        ck_assert_ptr_eq(estimator_find(stoch_estimator_name((stoch_estimator)id)), e);
        ck_assert_int_eq(e->uses_baseline, id == STOCH_SF || id == STOCH_MUPROP);
        ck_assert_int_eq(e->k_sample, id == STOCH_VIMCO    ? EST_K_REQUIRED
                                      : id == STOCH_GUMBEL ? EST_K_OPTIONAL
                                                           : EST_K_NONE);
        ck_assert_int_eq(e->learns_cv, id == STOCH_REBAR   ? EST_CV_REBAR
                                       : id == STOCH_RELAX ? EST_CV_RELAX
                                                           : EST_CV_NONE);
    }
    ck_assert_ptr_null(e->run);
    ck_assert_ptr_null(estimator_find("nope"));
}
END_TEST

/* ---- persistent state ---- */

START_TEST(persist_layout)
{
    char err[ERR_LEN] = "";
    fixture f;
    fixture_init(&f, LATENT_CATEGORICAL, EST_BASELINE_MEAN);
    /* The header, rebar's eta, log lambda, their Adam moments and steps,
     * then relax's surrogate, its Adam moments and steps (the fixture
     * makes room for them); the surrogate starts with a zero output layer. */
    stoch_layer code = vae_code(&f.m.cfg);
    size_t nrx = surr_nparams(&code, D, EST_RELAX_HIDDEN);
    ck_assert_uint_eq(f.s.npersist, RELAX_OFF + 3 * nrx + 1);
    ck_assert(f.s.persist[4] == EST_REBAR_ETA0 && f.s.persist[5] == logf(EST_REBAR_LAMBDA0));
    for (size_t i = (size_t)EST_RELAX_HIDDEN * (f.zdim + D); i < 3 * nrx + 1; i++)
        ck_assert(f.s.persist[RELAX_OFF + i] == 0.0f);
    est_state rebar_only;
    est_options ro;
    est_options_default(&ro);
    ro.learns_cv = EST_CV_REBAR;
    ck_assert_msg(est_state_init(&rebar_only, &f.m, B, &ro, err) == 0, "%s", err);
    ck_assert_uint_eq(rebar_only.npersist, 4 + 7);
    est_state_free(&rebar_only);
    est_state learned;
    est_options o;
    est_options_default(&o);
    o.baseline = EST_BASELINE_LEARNED;
    ck_assert_msg(est_state_init(&learned, &f.m, B, &o, err) == 0, "%s", err);
    size_t nbl = (size_t)EST_BASELINE_HIDDEN * D + 2 * EST_BASELINE_HIDDEN + 1;
    ck_assert_uint_eq(learned.npersist, 4 + 3 * nbl);
    /* A frozen state is left exactly as it was. */
    f.s.frozen = 1;
    est_ctx c = fixture_ctx(&f, 1.0f);
    estimator_find("sf")->run(&c);
    ck_assert(f.s.persist[0] == 0.0f && f.s.persist[2] == 0.0f);
    f.s.frozen = 0;
    estimator_find("sf")->run(&c);
    ck_assert(f.s.persist[2] == 1.0f && f.s.persist[0] > 0.0f);
    est_state_free(&learned);
    fixture_free(&f);
}
END_TEST

/* ---- end to end ---- */

/* Run a command; on failure show its output. */
static void run_ok(const char *cmd)
{
    static char out[1 << 16], errb[1 << 16];
    int rc = run_capture(cmd, out, sizeof out, errb, sizeof errb);
    ck_assert_msg(rc == 0, "`%s` exited %d\nstdout: %s\nstderr: %s", cmd, rc, out, errb);
}

/* A whole file as a NUL-terminated string (caller frees), or NULL. */
static char *read_text(const char *path)
{
    size_t len;
    uint8_t *data = testutil_read_file(path, &len);
    if (!data)
        return NULL;
    char *text = malloc(len + 1);
    ck_assert_ptr_nonnull(text);
    memcpy(text, data, len);
    text[len] = '\0';
    free(data);
    return text;
}

/* A number from summary.json ("key": value). */
static double summary_value(const char *dir, const char *key)
{
    char *text = read_text(testutil_path(dir, "summary.json"));
    ck_assert_msg(text != NULL, "%s/summary.json missing", dir);
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    char *s = strstr(text, pat);
    ck_assert_msg(s != NULL, "%s: no %s in summary.json", dir, key);
    double v = strtod(s + strlen(pat), NULL);
    free(text);
    return v;
}

/* Every test -ELBO in log.csv is finite (the column after train_kl). */
static void assert_log_finite(const char *dir)
{
    char *text = read_text(testutil_path(dir, "log.csv"));
    ck_assert_msg(text != NULL, "%s/log.csv missing", dir);
    ck_assert_msg(!testutil_contains(text, "nan") && !testutil_contains(text, "inf"),
                  "%s/log.csv holds a non-finite value:\n%s", dir, text);
    free(text);
}

#define E2E_FLAGS "--steps 300 --eval-every 300 --eval-images 1000 --iw-samples 0 --hidden 64 --quiet"

/* The test -ELBO of the model after one step (the same initial weights as
 * every run below: the seed is the same and a baseline network draws from
 * its own generator). */
static double start_loss(const char *tmp, const char *ltype)
{
    char dir[512], cmd[2048];
    snprintf(dir, sizeof dir, "%s/start-%s", tmp, ltype);
    snprintf(cmd, sizeof cmd,
             "%s train --data %s --out %s --latent-type %s --steps 1 --eval-every 0 "
             "--eval-images 1000 --iw-samples 0 --hidden 64 --quiet",
             testutil_bin(), testutil_data_dir(), dir, ltype);
    run_ok(cmd);
    return summary_value(dir, "test_neg_elbo");
}

static void train_lowers_loss(const char *tmp, const char *ltype, const char *est,
                              const char *extra, double start)
{
    char dir[512], cmd[2048];
    /* A run with extra flags gets a directory of its own. */
    snprintf(dir, sizeof dir, "%s/%s-%s%s", tmp, est, ltype, *extra ? "-extra" : "");
    snprintf(cmd, sizeof cmd, "%s train --data %s --out %s --latent-type %s --estimator %s %s %s",
             testutil_bin(), testutil_data_dir(), dir, ltype, est, E2E_FLAGS, extra);
    run_ok(cmd);
    assert_log_finite(dir);
    double end = summary_value(dir, "test_neg_elbo");
    if (getenv("GSVAE_TEST_VERBOSE"))
        fprintf(stderr, "%-12s %-11s %s: test -ELBO %.2f -> %.2f\n", est, ltype, extra,
                start, end);
    ck_assert_msg(isfinite(end) && end < start, "%s (%s %s): test -ELBO %.3f, start %.3f", est,
                  ltype, extra, end, start);
}

START_TEST(e2e_categorical)
{
    const char *tmp = testutil_tmpdir();
    double start = start_loss(tmp, "categorical");
    ck_assert(isfinite(start));
    const char *names[] = {"gumbel", "st-gumbel", "sf", "darn", "muprop", "st", "annealed-st",
                           "rebar", "relax"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        train_lowers_loss(tmp, "categorical", names[i], "", start);
    train_lowers_loss(tmp, "categorical", "sf", "--baseline learned", start);
    train_lowers_loss(tmp, "categorical", "vimco", "--samples 3", start);
    train_lowers_loss(tmp, "categorical", "gumbel", "--samples 3", start);
}
END_TEST

START_TEST(e2e_bernoulli)
{
    const char *tmp = testutil_tmpdir();
    double start = start_loss(tmp, "bernoulli");
    const char *names[] = {"gumbel", "sf", "darn", "muprop", "annealed-st", "arm", "disarm",
                           "rebar", "relax"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        train_lowers_loss(tmp, "bernoulli", names[i], "", start);
    train_lowers_loss(tmp, "bernoulli", "vimco", "--samples 3", start);
    train_lowers_loss(tmp, "bernoulli", "gumbel", "--samples 3", start);
}
END_TEST

START_TEST(e2e_exact)
{
    const char *tmp = testutil_tmpdir();
    char dir[512], cmd[2048];
    snprintf(dir, sizeof dir, "%s/start-exact", tmp);
    snprintf(cmd, sizeof cmd,
             "%s train --data %s --out %s --latent 2x4 --steps 1 --eval-every 0 "
             "--eval-images 1000 --iw-samples 0 --hidden 64 --quiet",
             testutil_bin(), testutil_data_dir(), dir);
    run_ok(cmd);
    double start = summary_value(dir, "test_neg_elbo");
    train_lowers_loss(tmp, "categorical", "exact", "--latent 2x4 --steps 100 --eval-every 100",
                      start);
}
END_TEST

/* Train with flags for 40 steps in one go into a (tmp/<tag>once), and for
 * 20 then resumed to 40 into b (tmp/<tag>twice). */
static void train_once_and_resumed(const char *tag, const char *flags, char *a, char *b)
{
    const char *tmp = testutil_tmpdir();
    char cmd[2048];
    snprintf(a, 512, "%s/%sonce", tmp, tag);
    snprintf(b, 512, "%s/%stwice", tmp, tag);
    snprintf(cmd, sizeof cmd, "%s train --data %s --out %s --steps 40 %s", testutil_bin(),
             testutil_data_dir(), a, flags);
    run_ok(cmd);
    snprintf(cmd, sizeof cmd, "%s train --data %s --out %s --steps 20 %s", testutil_bin(),
             testutil_data_dir(), b, flags);
    run_ok(cmd);
    snprintf(cmd, sizeof cmd, "%s train --data %s --out %s --steps 40 --resume --iw-samples 0 --quiet",
             testutil_bin(), testutil_data_dir(), b);
    run_ok(cmd);
}

/* A run with flags stopped at step 20 and resumed to 40 ends where the run
 * in one go ends; its checkpoint's estimator section holds `floats`
 * floats, returned as a copy (the caller frees it). */
static float *resumed_estimator_section(const char *tag, const char *flags, size_t floats)
{
    char a[512], b[512];
    train_once_and_resumed(tag, flags, a, b);
    double ea = summary_value(a, "test_neg_elbo"), eb = summary_value(b, "test_neg_elbo");
    double ta = summary_value(a, "final_train_loss"), tb = summary_value(b, "final_train_loss");
    ck_assert_msg(ea == eb && ta == tb, "resumed run ends at %.9g / %.9g, one go at %.9g / %.9g",
                  eb, tb, ea, ta);
    char err[ERR_LEN];
    ckpt_file *f;
    ck_assert_msg(ckpt_read(testutil_path(b, "model.ckpt"), &f, err) == 0, "%s", err);
    const void *data;
    uint64_t len;
    ck_assert_msg(ckpt_get(f, "estimator", &data, &len, err) == 0, "%s", err);
    ck_assert_uint_eq(len, floats * sizeof(float));
    float *copy = malloc(len);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, data, len);
    ckpt_free(f);
    return copy;
}

/* A run with a learned baseline, stopped at step 20 and resumed to 40, ends
 * where the run in one go ends: the estimator's state is in the checkpoint,
 * whose section holds the network: 4 + 3 (100 * 784 + 201) floats. */
START_TEST(e2e_resume_exact)
{
    free(resumed_estimator_section("", "--latent-type bernoulli --latent 20 --hidden 32 "
                                       "--batch 50 --estimator sf --baseline learned "
                                       "--eval-every 20 --eval-images 500 --iw-samples 0 --quiet",
                                   4 + 3 * (100 * 784 + 201)));
}
END_TEST

/* relax, stopped at step 20 and resumed to 40 on a deep encoder, ends
 * where the run in one go ends: eta, lambda, the surrogate network and
 * both Adam states are in the checkpoint's estimator section, which holds
 * 4 + 7 + 3 nrx + 1 floats (nrx the surrogate's parameters for a 20-unit
 * code and 784 pixels): a code of 20 bits (_i 1), or of 4 variables of 5
 * classes (_i 0). */
START_TEST(e2e_resume_relax)
{
    stoch_layer code = _i ? (stoch_layer){LATENT_BERNOULLI, 20, 1}
                          : (stoch_layer){LATENT_CATEGORICAL, 4, 5};
    size_t nrx = surr_nparams(&code, 784, EST_RELAX_HIDDEN);
    float *p = resumed_estimator_section(_i ? "relax-" : "relax-cat-",
                                         _i ? "--latent-type bernoulli --latent 20 "
                                              "--hidden 32 --batch 50 --estimator relax "
                                              "--eval-every 20 --eval-images 500 "
                                              "--iw-samples 0 --quiet"
                                            : "--latent-type categorical --latent 4x5 "
                                              "--hidden 32 --batch 50 --estimator relax "
                                              "--eval-every 20 --eval-images 500 "
                                              "--iw-samples 0 --quiet",
                                         4 + 7 + 3 * nrx + 1);
    /* 40 Adam steps on the surrogate: its step count, and an output layer
     * that has left its zero start. */
    ck_assert(p[4 + 7 + 3 * nrx] == 40.0f);
    const float *w2 = p + 4 + 7 + (size_t)EST_RELAX_HIDDEN * (20 + 784) + EST_RELAX_HIDDEN;
    int moved = 0;
    for (int k = 0; k < EST_RELAX_HIDDEN; k++)
        moved += w2[k] != 0.0f;
    ck_assert_int_eq(moved, EST_RELAX_HIDDEN);
    free(p);
}
END_TEST

/* --tau learned: the temperature moves away from --tau0, log.csv's tau
 * column and summary.json's learned_tau and final_tau report it, and a run
 * resumed half-way ends where the run in one go ends (log tau is in the
 * checkpoint's parameters). */
START_TEST(e2e_learned_tau)
{
    char a[512], b[512];
    train_once_and_resumed("tau-", "--latent-type bernoulli --latent 20 --hidden 32 --batch 50 "
                                   "--estimator gumbel --tau learned --tau0 0.8 --lr 3e-3 "
                                   "--eval-every 20 --eval-images 500 --iw-samples 0 --quiet",
                           a, b);
    double la = summary_value(a, "learned_tau"), lb = summary_value(b, "learned_tau");
    double fa = summary_value(a, "final_tau");
    ck_assert_msg(la == lb, "resumed run's tau %.9g, one go's %.9g", lb, la);
    ck_assert_msg(fabs(fa - la) < 1e-6, "final_tau %.9g, learned_tau %.9g", fa, la);
    /* 40 Adam steps of 3e-3 on log tau: it has moved, by at most 0.12. */
    ck_assert_msg(fabs(log(la / 0.8)) > 1e-3 && fabs(log(la / 0.8)) <= 0.12 + 1e-6,
                  "tau %.6g after 40 steps from 0.8", la);
    /* The tau column: 0.8 at step 0, the learned value at step 40. */
    char *log_text = read_text(testutil_path(a, "log.csv"));
    ck_assert_ptr_nonnull(log_text);
    char row0[64], row40[64];
    snprintf(row0, sizeof row0, "\n0,0.0000,0.800000,");
    snprintf(row40, sizeof row40, ",%.6f,", la);
    ck_assert_msg(testutil_contains(log_text, row0) && testutil_contains(log_text, row40),
                  "log.csv lacks tau 0.8 at step 0 or %.6f:\n%s", la, log_text);
    free(log_text);
}
END_TEST

/* Every figure of gradvar's CSV is finite but vimco's bias and relative
 * bias, which it does not have (its bound is not the ELBO): "nan,nan". */
static void assert_gradvar_finite(const char *out)
{
    for (const char *line = out; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        size_t len = strcspn(line, "\n");
        char row[512];
        snprintf(row, sizeof row, "%.*s", (int)(len < sizeof row ? len : sizeof row - 1), line);
        if (!strncmp(row, "vimco,", 6)) {
            char *nan = strstr(row, ",nan,nan,");
            ck_assert_msg(nan != NULL, "vimco row: %s", row);
            memcpy(nan, ",0.0,0.0,", 9);
        }
        ck_assert_msg(!strstr(row, "nan") && !strstr(row, "inf"), "%s", row);
    }
}

START_TEST(e2e_refusals_and_gradvar)
{
    static char out[1 << 16], errb[1 << 16];
    char cmd[2048];
    const char *tmp = testutil_tmpdir();
    /* exact on the default 20x10 code: refused before any work. */
    snprintf(cmd, sizeof cmd, "%s train --data %s --out %s/never --estimator exact --quiet",
             testutil_bin(), testutil_data_dir(), tmp);
    int rc = run_capture(cmd, out, sizeof out, errb, sizeof errb);
    ck_assert_msg(rc == 2 && testutil_contains(errb, "exact") && testutil_contains(errb, "20x10"),
                  "rc %d, stderr: %s", rc, errb);
    ck_assert_ptr_null(read_text(testutil_path(tmp, "never/log.csv")));
    snprintf(cmd, sizeof cmd, "%s train --data %s --out %s/never --baseline median --quiet",
             testutil_bin(), testutil_data_dir(), tmp);
    rc = run_capture(cmd, out, sizeof out, errb, sizeof errb);
    ck_assert_msg(rc == 2 && testutil_contains(errb, "--baseline"), "rc %d, stderr: %s", rc, errb);
    /* train --help lists every estimator. */
    snprintf(cmd, sizeof cmd, "%s train --help", testutil_bin());
    rc = run_capture(cmd, out, sizeof out, errb, sizeof errb);
    ck_assert_int_eq(rc, 0);
    for (const estimator *e = estimator_list(); e->run; e++) {
        char line[64];
        const char *name = stoch_estimator_name(e->id);
        snprintf(line, sizeof line, "\n  %s ", name);
        ck_assert_msg(testutil_contains(out, line), "train --help lacks %s", name);
    }
    /* --tau: a mode that does not exist, and learned with an estimator that
     * has no temperature to learn. */
    const char *tau_bad[][2] = {
        {"--tau warm", "--tau 'warm': expected schedule or learned"},
        {"--tau learned --estimator sf",
         "--tau learned: only with --estimator gumbel or st-gumbel, not sf"},
        {"--tau learned --estimator annealed-st",
         "--tau learned: only with --estimator gumbel or st-gumbel, not annealed-st"},
        {"--samples 0", "--samples 0: must lie in 1..1000"},
        {"--samples 2 --tau learned", "--tau learned: not on a relaxed bound (--samples 2)"},
        {"--kl relaxed --tau learned",
         "--tau learned: not on a relaxed bound (--samples 1, --kl relaxed)"},
        /* --kl: a mode, gumbel's only, and analytic only on the ELBO. */
        {"--kl exact", "--kl 'exact': expected analytic or relaxed"},
        {"--kl relaxed --estimator st-gumbel", "--kl relaxed: only with --estimator gumbel, not st-gumbel"},
        {"--kl analytic --samples 5",
         "--kl analytic: the 5-sample bound's KL is the relaxed one (--samples 5)"},
        {"--samples 2 --estimator st-gumbel",
         "--samples 2: only with --estimator vimco or gumbel (a K-sample bound), not st-gumbel"},
        {"--estimator vimco --samples 1001", "--samples 1001: must lie in 1..1000"},
        {"--estimator vimco", "--samples 1: vimco trains the K-sample bound and needs K >= 2"},
        {"--samples 3 --estimator sf",
         "--samples 3: only with --estimator vimco or gumbel (a K-sample bound), not sf"},
        /* The validation bound: a count in range, and a split to take it on. */
        {"--valid-iw-samples -1 --validation 100", "--valid-iw-samples -1: must lie in 0..1000000"},
        {"--valid-iw-samples 10", "--valid-iw-samples 10: needs a validation split (--validation N)"},
    };
    for (size_t i = 0; i < sizeof tau_bad / sizeof *tau_bad; i++) {
        snprintf(cmd, sizeof cmd, "%s train --data %s --out %s/never %s --quiet",
                 testutil_bin(), testutil_data_dir(), tmp, tau_bad[i][0]);
        rc = run_capture(cmd, out, sizeof out, errb, sizeof errb);
        ck_assert_msg(rc == 2 && testutil_contains(errb, tau_bad[i][1]), "%s: rc %d, stderr: %s",
                      tau_bad[i][0], rc, errb);
    }
    /* arm on the default categorical code: refused before any work. */
    snprintf(cmd, sizeof cmd, "%s train --data %s --out %s/never --estimator arm --quiet",
             testutil_bin(), testutil_data_dir(), tmp);
    rc = run_capture(cmd, out, sizeof out, errb, sizeof errb);
    ck_assert_msg(rc == 2 && testutil_contains(errb, "--estimator 'arm': for Bernoulli "
                                                     "latents only, not categorical ones"),
                  "rc %d, stderr: %s", rc, errb);
    ck_assert_ptr_null(read_text(testutil_path(tmp, "never/log.csv")));
    /* rebar on the sbn task, which does not implement it: one line. */
    snprintf(cmd, sizeof cmd, "%s train --task sbn --data %s --out %s/never --estimator rebar --quiet",
             testutil_bin(), testutil_data_dir(), tmp);
    rc = run_capture(cmd, out, sizeof out, errb, sizeof errb);
    ck_assert_msg(rc == 2 && testutil_contains(errb, "--estimator 'rebar': not implemented for "
                                                     "the sbn task (") &&
                      !strchr(errb, '\n')[1],
                  "rc %d, stderr: %s", rc, errb);
    ck_assert_ptr_null(read_text(testutil_path(tmp, "never/log.csv")));
    /* gradvar on a tiny model: one finite CSV row per estimator defined for
     * its code. */
    snprintf(cmd, sizeof cmd,
             "%s gradvar --data %s --latent 2x3 --hidden 8 --batch 5 --samples 50 --warmup 20 --csv",
             testutil_bin(), testutil_data_dir());
    rc = run_capture(cmd, out, sizeof out, errb, sizeof errb);
    ck_assert_msg(rc == 0, "gradvar exited %d: %s", rc, errb);
    assert_gradvar_finite(out);
    for (const estimator *e = estimator_list(); e->run; e++) {
        char line[64];
        const char *name = stoch_estimator_name(e->id);
        snprintf(line, sizeof line, "\n%s,", name);
        int defined = stoch_estimator_defined(e->id, LATENT_CATEGORICAL);
        ck_assert_msg(!testutil_contains(out, line) == !defined, "gradvar %s %s:\n%s",
                      defined ? "lacks" : "runs", name, out);
    }
    ck_assert_msg(testutil_contains(out, "\nexact,categorical,2x3,8,5,50,encoder,"), "%s", out);
    /* The Bernoulli estimators on 3 bits, beside exact (rebar and
     * relax warm up their control variates first). */
    snprintf(cmd, sizeof cmd,
             "%s gradvar --data %s --latent-type bernoulli --latent 3 --hidden 8 --batch 5 "
             "--samples 50 --csv --estimators exact,arm,disarm,rebar,relax",
             testutil_bin(), testutil_data_dir());
    rc = run_capture(cmd, out, sizeof out, errb, sizeof errb);
    ck_assert_msg(rc == 0, "gradvar exited %d: %s", rc, errb);
    ck_assert_msg(!testutil_contains(out, "nan") && !testutil_contains(out, "inf"), "%s", out);
    ck_assert_msg(testutil_contains(out, "\narm,bernoulli,3,8,5,50,encoder,") &&
                      testutil_contains(out, "\ndisarm,bernoulli,3,8,5,50,encoder,") &&
                      testutil_contains(out, "\nrebar,bernoulli,3,8,5,50,encoder,") &&
                      testutil_contains(out, "\nrelax,bernoulli,3,8,5,50,encoder,"),
                  "%s", out);
    /* ... and refused by name on a categorical code. */
    snprintf(cmd, sizeof cmd,
             "%s gradvar --data %s --latent 2x3 --hidden 8 --batch 2 --samples 2 --estimators disarm",
             testutil_bin(), testutil_data_dir());
    rc = run_capture(cmd, out, sizeof out, errb, sizeof errb);
    ck_assert_msg(rc != 0 && testutil_contains(errb, "'disarm': for Bernoulli"),
                  "rc %d, stderr: %s", rc, errb);
    /* exact asked for on a code too large to enumerate. */
    snprintf(cmd, sizeof cmd,
             "%s gradvar --data %s --latent 20x10 --hidden 8 --batch 2 --samples 2 --estimators sf,exact",
             testutil_bin(), testutil_data_dir());
    rc = run_capture(cmd, out, sizeof out, errb, sizeof errb);
    ck_assert_msg(rc != 0 && testutil_contains(errb, "exact"), "rc %d, stderr: %s", rc, errb);
}
END_TEST

static Suite *estimators_suite(void)
{
    Suite *s = suite_create("estimators");
    TCase *tc = tcase_create("unit");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, exact_categorical);
    tcase_add_test(tc, exact_bernoulli);
    tcase_add_test(tc, exact_limits);
    tcase_add_loop_test(tc, sf_unbiased, 0, 2);
    tcase_add_loop_test(tc, muprop_unbiased, 0, 2);
    tcase_add_test(tc, arm_disarm_unbiased);
    tcase_add_loop_test(tc, vimco_unbiased, 0, 2);
    tcase_add_loop_test(tc, rebar_unbiased, 0, 2);
    tcase_add_loop_test(tc, relax_unbiased, 0, 2);
    tcase_add_loop_test(tc, relax_variance_gradient, 0, 2);
    tcase_add_test(tc, relax_training_lowers_variance);
    tcase_add_loop_test(tc, gumbel_bound_gradient, 0, 2);
    tcase_add_test(tc, arm_refused_on_categorical);
    tcase_add_loop_test(tc, normalisation_scales_whole_gradient, 0, 2);
    tcase_add_loop_test(tc, normalisation_of_the_signal_alone, 0, 2);
    tcase_add_loop_test(tc, unbiased_while_learning, 0, 2);
    tcase_add_test(tc, formulas_categorical);
    tcase_add_test(tc, formulas_bernoulli);
    tcase_add_test(tc, annealed_st_slope);
    tcase_add_test(tc, gumbel_bias_falls_with_tau);
    tcase_add_loop_test(tc, learned_tau_gradient, 0, 2);
    tcase_add_test(tc, table_keys_off_the_list);
    tcase_add_test(tc, persist_layout);
    suite_add_tcase(s, tc);
    TCase *e2e = tcase_create("end-to-end");
    tcase_set_timeout(e2e, 900);
    tcase_add_test(e2e, e2e_categorical);
    tcase_add_test(e2e, e2e_bernoulli);
    tcase_add_test(e2e, e2e_exact);
    tcase_add_test(e2e, e2e_resume_exact);
    tcase_add_loop_test(e2e, e2e_resume_relax, 0, 2);
    tcase_add_test(e2e, e2e_learned_tau);
    tcase_add_test(e2e, e2e_refusals_and_gradvar);
    suite_add_tcase(s, e2e);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(estimators_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
