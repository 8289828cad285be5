/* test_model.c: the gradient of the whole loss of a tiny VAE (two hidden
 * layers, or none; a uniform or a learned prior), the straight-through
 * estimator, train_step, Adam and the temperature schedule.
 *
 * The model's gradient is checked against a reference forward of the whole
 * model written here in double precision (weights copied from m->params):
 * central differences, step 1e-5, of the reference loss
 * mean_b(recon_b + KL_b) with the estimator's Gumbel (or logistic) noise held
 * fixed, against m->grads from vae_encode / est->run / vae_kl /
 * vae_kl_backward / vae_encode_backward.  Bound, per parameter block (one
 * layer's weights or biases):
 *     |a - n| / max(|a| + |n|, 1e-2 * max_j max(|a_j|, |n_j|)) < 1e-3,
 * the same as test_layers.c, for the same reasons (float rounding is
 * relative to the block's largest gradient, not to each entry).  Measured
 * errors stay near 1e-5 or below. */
#include "adam.h"
#include "estimator.h"
#include "evaluate.h"
#include "gumbel.h"
#include "model.h"
#include "rng.h"
#include "schedule.h"
#include "task_vae.h"
#include "testutil.h"
#include "util.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define FD_STEP 1e-5
#define GRAD_TOL 1e-3
#define REL_FLOOR 1e-2
/* Every ReLU pre-activation of the reference stays this far from 0, so no
 * finite-difference step crosses the kink. */
#define RELU_MARGIN 2e-3

enum { B = 3, D = 12, MAXW = 32 };

/* The model the fixtures build: hidden layers 5,4 or none, and the prior.
 * A test that wants another shape sets it first (Check runs every test in
 * its own process, so the change ends with the test). */
static struct {
    int nhidden;
    vae_prior prior;
} shape = {2, VAE_PRIOR_UNIFORM};

/* ---- helpers ---- */

static double softplus_ref(double x)
{
    return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}

static double sigmoid_ref(double x)
{
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

static void log_softmax_ref(double *o, const double *l, int K)
{
    double m = l[0], s = 0;
    for (int k = 1; k < K; k++)
        m = fmax(m, l[k]);
    for (int k = 0; k < K; k++)
        s += exp(l[k] - m);
    for (int k = 0; k < K; k++)
        o[k] = l[k] - m - log(s);
}

/* The check of every backward pass, shared by the suites (testutil.h). */
#define assert_grad_close(what, a, nu, n) \
    testutil_assert_grad_close(what, a, nu, n, GRAD_TOL, REL_FLOOR)

/* ---- the double-precision reference of the whole model ---- */

typedef struct {
    const vae_model *m; /* layout and config only */
    double *p;          /* parameters, a double copy of m->params */
    const float *x;     /* B x D */
    const float *noise; /* B x zdim, held fixed */
    double tau;
    double logit_scale; /* the logits are this times the top layer */
    /* Straight-through: the decoder sees zfix (B x zdim) instead of the
     * relaxed sample, and the encoder is scored by the surrogate
     * sum(c * logits), c the estimator's d/dlogits (B x zdim), + KL. */
    double *zfix;
    const double *c;
    /* Recorded by each evaluation. */
    double min_margin, recon, kl;
    int n_off, n_on;
    double logits[B * MAXW]; /* encoder output */
} ref_vae;

static void ref_linear(ref_vae *R, const linear_layer *l, const double *in, double *out, int relu)
{
    const double *w = R->p + l->w, *bias = R->p + l->b;
    for (int o = 0; o < l->out; o++) {
        double s = bias[o];
        for (int c = 0; c < l->in; c++)
            s += w[(size_t)o * l->in + c] * in[c];
        if (relu) {
            R->min_margin = fmin(R->min_margin, fabs(s));
            if (s > 0)
                R->n_on++;
            else
                R->n_off++;
            s = s > 0 ? s : 0;
        }
        out[o] = s;
    }
}

static double ref_loss(void *ctx)
{
    ref_vae *R = ctx;
    const vae_model *m = R->m;
    const vae_config *cfg = &m->cfg;
    int zdim = vae_zdim(cfg);
    R->min_margin = INFINITY;
    R->n_on = R->n_off = 0;
    double recon = 0, kl = 0, surrogate = 0;
    for (int b = 0; b < B; b++) {
        double h[MAXW], t[MAXW], z[MAXW];
        for (int d = 0; d < D; d++)
            h[d] = R->x[b * D + d];
        for (int i = 0; i < m->nenc; i++) {
            ref_linear(R, &m->enc[i], h, t, i < m->nenc - 1);
            memcpy(h, t, sizeof t);
        }
        double *logits = R->logits + b * zdim;
        for (int j = 0; j < zdim; j++)
            logits[j] = R->logit_scale * h[j];
        const float *g = R->noise + b * zdim;
        /* A learned prior's logits eta, from the double copy so that the
         * differences move them too. */
        const double *eta = cfg->prior == VAE_PRIOR_LEARNED ? R->p + m->prior : NULL;
        if (cfg->latent == LATENT_CATEGORICAL) {
            for (int i = 0; i < cfg->N; i++) {
                double lq[MAXW], lp[MAXW], a[MAXW];
                log_softmax_ref(lq, logits + i * cfg->K, cfg->K);
                for (int k = 0; k < cfg->K; k++)
                    lp[k] = -log((double)cfg->K);
                if (eta)
                    log_softmax_ref(lp, eta + i * cfg->K, cfg->K);
                for (int k = 0; k < cfg->K; k++) {
                    kl += exp(lq[k]) * (lq[k] - lp[k]);
                    a[k] = (logits[i * cfg->K + k] + g[i * cfg->K + k]) / R->tau;
                }
                log_softmax_ref(a, a, cfg->K);
                for (int k = 0; k < cfg->K; k++)
                    z[i * cfg->K + k] = exp(a[k]);
            }
        } else {
            for (int i = 0; i < cfg->N; i++) {
                double l = logits[i], q = sigmoid_ref(l), e = eta ? eta[i] : 0.0;
                kl += q * (-softplus_ref(-l) + softplus_ref(-e)) +
                      (1 - q) * (-softplus_ref(l) + softplus_ref(e));
                z[i] = sigmoid_ref((l + g[i]) / R->tau);
            }
        }
        if (R->zfix)
            for (int j = 0; j < zdim; j++)
                z[j] = R->zfix[b * zdim + j];
        if (R->c)
            for (int j = 0; j < zdim; j++)
                surrogate += R->c[b * zdim + j] * logits[j];
        memcpy(h, z, zdim * sizeof *z);
        for (int i = 0; i < m->ndec; i++) {
            ref_linear(R, &m->dec[i], h, t, i < m->ndec - 1);
            memcpy(h, t, sizeof t);
        }
        for (int d = 0; d < D; d++)
            recon += softplus_ref(h[d]) - R->x[b * D + d] * h[d];
    }
    R->recon = recon / B;
    R->kl = kl / B;
    return R->recon + R->kl + surrogate;
}

static void numeric_grad(double *grad, double *param, size_t n, ref_vae *R)
{
    testutil_numeric_grad(grad, param, n, FD_STEP, ref_loss, R);
    ref_loss(R); /* leave the recorded values at the unperturbed point */
}

/* Compare m->grads with central differences of R, one block per layer's
 * weights and biases so a failure names the layer. */
static void check_param_grads(const vae_model *m, ref_vae *R, const char *tag)
{
    double *nu = malloc(m->nparams * sizeof *nu), *an = malloc(m->nparams * sizeof *an);
    ck_assert(nu && an);
    numeric_grad(nu, R->p, m->nparams, R);
    for (size_t i = 0; i < m->nparams; i++)
        an[i] = m->grads[i];
    for (int pass = 0; pass < 2; pass++) {
        const linear_layer *ls = pass ? m->dec : m->enc;
        int n = pass ? m->ndec : m->nenc;
        for (int i = 0; i < n; i++) {
            char what[96];
            snprintf(what, sizeof what, "%s: %s[%d].w", tag, pass ? "dec" : "enc", i);
            assert_grad_close(what, an + ls[i].w, nu + ls[i].w, (size_t)ls[i].in * ls[i].out);
            snprintf(what, sizeof what, "%s: %s[%d].b", tag, pass ? "dec" : "enc", i);
            assert_grad_close(what, an + ls[i].b, nu + ls[i].b, (size_t)ls[i].out);
        }
    }
    if (m->cfg.prior == VAE_PRIOR_LEARNED) {
        char what[96];
        snprintf(what, sizeof what, "%s: prior logits", tag);
        assert_grad_close(what, an + m->prior, nu + m->prior, (size_t)vae_zdim(&m->cfg));
    }
    free(nu);
    free(an);
}

/* ---- a tiny model ---- */

typedef struct {
    vae_model m;
    vae_acts a;
    est_state es;
    float x[B * D];
    float est_dlogits[B * MAXW]; /* a->dlogits as the estimator left it */
} fixture;

static void fixture_init(fixture *f, latent_type lt, int N, int K, uint64_t seed)
{
    char err[ERR_LEN] = "";
    vae_config cfg = {.latent = lt, .N = N, .K = K, .D = D, .nhidden = shape.nhidden,
                      .hidden = {5, 4}, .prior = shape.prior};
    ck_assert_int_le(vae_zdim(&cfg), MAXW);
    rng_t r;
    rng_seed(&r, seed);
    memset(f, 0, sizeof *f);
    ck_assert_msg(vae_init(&f->m, &cfg, &r, err) == 0, "%s", err);
    ck_assert_msg(vae_acts_init(&f->a, &f->m, B, err) == 0, "%s", err);
    ck_assert_msg(est_state_init(&f->es, &f->m, B, NULL, err) == 0, "%s", err);
    /* Nonzero biases, so their gradients and the ReLU pattern are not
     * those of a freshly initialised net. */
    for (int pass = 0; pass < 2; pass++) {
        const linear_layer *ls = pass ? f->m.dec : f->m.enc;
        int n = pass ? f->m.ndec : f->m.nenc;
        for (int i = 0; i < n; i++)
            for (int o = 0; o < ls[i].out; o++)
                f->m.params[ls[i].b + o] = 0.4f * (float)rng_uniform_open(&r) - 0.2f;
    }
    for (int i = 0; i < B * D; i++)
        f->x[i] = rng_uniform_open(&r) < 0.5 ? 1.0f : 0.0f;
    /* A learned prior starts uniform (eta = 0); move it away, so that a
     * term that assumed the uniform prior shows. */
    if (shape.prior == VAE_PRIOR_LEARNED)
        for (int j = 0; j < vae_zdim(&cfg); j++)
            f->m.params[f->m.prior + j] = 3.0f * (float)rng_uniform_open(&r) - 1.5f;
}

static void fixture_free(fixture *f)
{
    est_state_free(&f->es);
    vae_acts_free(&f->a);
    vae_free(&f->m);
}

/* The gradient of one training step, without the optimizer: what
 * train_step computes before adam_update.  The noise comes from an rng
 * seeded with noise_seed, so every call draws the same noise. */
static void model_grad(fixture *f, const estimator *est, float tau, uint64_t noise_seed)
{
    rng_t r;
    rng_seed(&r, noise_seed);
    vae_zero_grads(&f->m);
    vae_encode(&f->m, &f->a, f->x, B);
    est_ctx c = {.m = &f->m, .a = &f->a, .s = &f->es, .x = f->x, .B = B, .tau = tau, .r = &r};
    est->run(&c);
    memcpy(f->est_dlogits, f->a.dlogits, (size_t)B * vae_zdim(&f->m.cfg) * sizeof(float));
    vae_kl(&f->m, &f->a, B);
    vae_kl_backward(&f->m, &f->a, B, 1.0f / (float)B, 1.0f / (float)B);
    vae_encode_backward(&f->m, &f->a, f->x, B);
}

static double *params_double(const vae_model *m)
{
    double *p = malloc(m->nparams * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < m->nparams; i++)
        p[i] = m->params[i];
    return p;
}

/* Build a fixture whose reference keeps every ReLU clear of its kink (at
 * the noise that noise_seed draws), trying successive model seeds.  With
 * hard set, the reference decoder sees the estimator's hard code a->z
 * (R->zfix, which the caller frees). */
static void fixture_for_fd(fixture *f, ref_vae *R, latent_type lt, int N, int K,
                           const estimator *est, float tau, uint64_t noise_seed, int hard,
                           float logit_scale)
{
    for (uint64_t seed = 1;; seed++) {
        ck_assert_msg(seed < 200, "no model seed keeps the ReLUs clear of 0");
        fixture_init(f, lt, N, K, seed);
        f->m.logit_scale = logit_scale;
        model_grad(f, est, tau, noise_seed);
        *R = (ref_vae){.m = &f->m, .p = params_double(&f->m), .x = f->x, .noise = est_last_noise(&f->es),
                       .tau = tau, .logit_scale = logit_scale};
        if (hard) {
            size_t nz = (size_t)B * vae_zdim(&f->m.cfg);
            R->zfix = malloc(nz * sizeof *R->zfix);
            ck_assert_ptr_nonnull(R->zfix);
            for (size_t j = 0; j < nz; j++)
                R->zfix[j] = f->a.z[j];
        }
        ref_loss(R);
        /* A linear model has no ReLU to keep clear. */
        if (f->m.cfg.nhidden == 0 ||
            (R->min_margin > RELU_MARGIN && R->n_off > 0 && R->n_on > 0))
            return;
        free(R->zfix);
        free(R->p);
        fixture_free(f);
    }
}

static void check_relaxed_gradient(latent_type lt, int N, int K, float tau, float logit_scale)
{
    const estimator *est = estimator_find("gumbel");
    ck_assert_ptr_nonnull(est);
    fixture f;
    ref_vae R;
    fixture_for_fd(&f, &R, lt, N, K, est, tau, 99, 0, logit_scale);
    int zdim = vae_zdim(&f.m.cfg);
    char tag[64];
    snprintf(tag, sizeof tag, "gumbel %s tau %g logit scale %g", stoch_latent_name(lt), (double)tau,
             (double)logit_scale);

    /* The forward values agree with the reference... */
    double recon = 0, kl = 0;
    for (int b = 0; b < B; b++) {
        recon += f.a.recon[b];
        kl += f.a.kl[b];
    }
    recon /= B;
    kl /= B;
    ck_assert_msg(fabs(recon - R.recon) <= 1e-5 * R.recon, "%s: recon %.9g, reference %.9g",
                  tag, recon, R.recon);
    ck_assert_msg(fabs(kl - R.kl) <= 1e-5 * (1 + R.kl), "%s: KL %.9g, reference %.9g", tag, kl,
                  R.kl);
    for (int i = 0; i < B * zdim; i++)
        ck_assert_msg(fabs(f.a.enc[f.m.nenc - 1][i] - R.logits[i]) <= 1e-5 * (1 + fabs(R.logits[i])),
                      "%s: logit %d: %.9g, reference %.9g", tag, i,
                      (double)f.a.enc[f.m.nenc - 1][i], R.logits[i]);

    /* ...the same seed draws the same noise and gives the same gradient
     * bit for bit, another seed does not... */
    float *g1 = malloc(f.m.nparams * sizeof *g1), *n1 = malloc(B * zdim * sizeof *n1);
    ck_assert(g1 && n1);
    memcpy(g1, f.m.grads, f.m.nparams * sizeof *g1);
    memcpy(n1, est_last_noise(&f.es), B * zdim * sizeof *n1);
    model_grad(&f, est, tau, 99);
    ck_assert(memcmp(g1, f.m.grads, f.m.nparams * sizeof *g1) == 0);
    ck_assert(memcmp(n1, est_last_noise(&f.es), B * zdim * sizeof *n1) == 0);
    model_grad(&f, est, tau, 100);
    ck_assert(memcmp(n1, est_last_noise(&f.es), B * zdim * sizeof *n1) != 0);
    /* est_elbo_gradient is that same sequence. */
    rng_t r;
    rng_seed(&r, 99);
    est_ctx c = {.m = &f.m, .a = &f.a, .s = &f.es, .x = f.x, .B = B, .tau = tau, .r = &r};
    double loss = est_elbo_gradient(est, &c);
    ck_assert(memcmp(g1, f.m.grads, f.m.nparams * sizeof *g1) == 0);
    ck_assert_msg(fabs(loss - (R.recon + R.kl)) <= 1e-5 * (R.recon + R.kl),
                  "%s: est_elbo_gradient loss %.9g, reference %.9g", tag, loss, R.recon + R.kl);
    model_grad(&f, est, tau, 99);

    /* ...and the gradient of every parameter is that of the loss. */
    check_param_grads(&f.m, &R, tag);

    free(g1);
    free(n1);
    free(R.p);
    fixture_free(&f);
}

START_TEST(gumbel_categorical_gradient)
{
    check_relaxed_gradient(LATENT_CATEGORICAL, 2, 3, 1.0f, 1.0f);
    check_relaxed_gradient(LATENT_CATEGORICAL, 2, 3, 0.5f, 1.0f);
}
END_TEST

START_TEST(gumbel_bernoulli_gradient)
{
    check_relaxed_gradient(LATENT_BERNOULLI, 3, 1, 1.0f, 1.0f);
    check_relaxed_gradient(LATENT_BERNOULLI, 3, 1, 0.5f, 1.0f);
}
END_TEST

/* The logits scaled (the posterior slope of annealed ST): forward values
 * and every gradient, the KL's included, through the scale. */
START_TEST(logit_scale_gradient)
{
    check_relaxed_gradient(LATENT_CATEGORICAL, 2, 3, 0.5f, 2.0f);
    check_relaxed_gradient(LATENT_BERNOULLI, 3, 1, 0.5f, 1.7f);
}
END_TEST

/* ---- straight-through ---- */

static void check_straight_through(latent_type lt, int N, int K, float tau)
{
    const estimator *est = estimator_find("st-gumbel");
    ck_assert_ptr_nonnull(est);
    fixture f;
    ref_vae R;
    fixture_for_fd(&f, &R, lt, N, K, est, tau, 7, 1, 1.0f);
    const vae_config *cfg = &f.m.cfg;
    int zdim = vae_zdim(cfg);
    size_t nz = (size_t)B * zdim;
    char tag[64];
    snprintf(tag, sizeof tag, "st-gumbel %s tau %g", stoch_latent_name(lt), (double)tau);

    /* The relaxed sample is the Gumbel-Softmax (Binary Concrete) of the
     * logits and the noise; the decoder saw its hard version. */
    const float *soft = est_last_relaxed(&f.es), *z = f.a.z, *logits = f.a.enc[f.m.nenc - 1];
    for (size_t j = 0; j < nz; j++)
        ck_assert_msg(z[j] == 0.0f || z[j] == 1.0f, "%s: z[%zu] = %g is not 0 or 1", tag, j,
                      (double)z[j]);
    if (lt == LATENT_CATEGORICAL) {
        for (int g = 0; g < B * N; g++) {
            double a[MAXW], ones = 0;
            int best = 0;
            for (int k = 0; k < K; k++) {
                a[k] = ((double)logits[g * K + k] + est_last_noise(&f.es)[g * K + k]) / tau;
                ones += z[g * K + k];
                if (soft[g * K + k] > soft[g * K + best])
                    best = k;
            }
            log_softmax_ref(a, a, K);
            for (int k = 0; k < K; k++)
                ck_assert_msg(fabs(soft[g * K + k] - exp(a[k])) < 1e-6, "%s: soft sample", tag);
            ck_assert_msg(ones == 1 && z[g * K + best] == 1.0f,
                          "%s: group %d of z is not the one-hot argmax of the soft sample", tag,
                          g);
        }
    } else {
        for (size_t j = 0; j < nz; j++) {
            double want = sigmoid_ref(((double)logits[j] + est_last_noise(&f.es)[j]) / tau);
            ck_assert_msg(fabs(soft[j] - want) < 1e-6, "%s: soft sample", tag);
            ck_assert_msg(z[j] == (soft[j] > 0.5f ? 1.0f : 0.0f), "%s: z[%zu] is not the "
                          "rounded soft sample", tag, j);
        }
    }

    /* The reported reconstruction is that of the hard sample. */
    double *zfix = R.zfix;
    double recon = 0;
    for (int b = 0; b < B; b++)
        recon += f.a.recon[b];
    recon /= B;
    ck_assert_msg(fabs(recon - R.recon) <= 1e-5 * R.recon, "%s: recon %.9g, reference %.9g", tag,
                  recon, R.recon);

    /* a->dz is the gradient of the mean reconstruction at the hard z. */
    double an[B * MAXW] = {0}, nu[B * MAXW] = {0};
    for (size_t j = 0; j < nz; j++) {
        double keep = zfix[j];
        zfix[j] = keep + FD_STEP;
        ref_loss(&R);
        double up = R.recon;
        zfix[j] = keep - FD_STEP;
        ref_loss(&R);
        nu[j] = (up - R.recon) / (2 * FD_STEP);
        zfix[j] = keep;
        an[j] = f.a.dz[j];
    }
    char what[96];
    snprintf(what, sizeof what, "%s: dz", tag);
    assert_grad_close(what, an, nu, nz);

    /* The estimator's d/dlogits is the relaxation's backward applied to
     * that dz: bit for bit the library's, and the formula in double. */
    float want[B * MAXW];
    if (lt == LATENT_CATEGORICAL)
        gumbel_softmax_backward(want, soft, f.a.dz, B * N, K, tau);
    else
        binary_concrete_backward(want, soft, f.a.dz, nz, tau);
    ck_assert_msg(memcmp(want, f.est_dlogits, nz * sizeof *want) == 0,
                  "%s: dlogits differ from the relaxation's backward of dz", tag);
    for (int g = 0; g < (lt == LATENT_CATEGORICAL ? B * N : (int)nz); g++) {
        int k0 = lt == LATENT_CATEGORICAL ? g * K : g, kn = lt == LATENT_CATEGORICAL ? K : 1;
        double dot = 0;
        for (int k = k0; k < k0 + kn; k++)
            dot += (double)f.a.dz[k] * soft[k];
        for (int k = k0; k < k0 + kn; k++) {
            double y = soft[k];
            nu[k] = lt == LATENT_CATEGORICAL ? y * (f.a.dz[k] - dot) / tau
                                             : f.a.dz[k] * y * (1 - y) / tau;
            an[k] = f.est_dlogits[k];
        }
    }
    snprintf(what, sizeof what, "%s: dlogits vs formula", tag);
    assert_grad_close(what, an, nu, nz);

    /* Every parameter's gradient is that of the surrogate
     * mean recon(hard z) + sum(c * logits) + mean KL, c the estimator's
     * dlogits: the decoder learns from the hard sample, the encoder
     * through the soft sample's backward and the KL. */
    double c[B * MAXW];
    for (size_t j = 0; j < nz; j++)
        c[j] = f.est_dlogits[j];
    R.c = c;
    check_param_grads(&f.m, &R, tag);

    free(zfix);
    free(R.p);
    fixture_free(&f);
}

START_TEST(st_gumbel_categorical)
{
    check_straight_through(LATENT_CATEGORICAL, 2, 3, 1.0f);
    check_straight_through(LATENT_CATEGORICAL, 2, 3, 0.5f);
}
END_TEST

START_TEST(st_gumbel_bernoulli)
{
    check_straight_through(LATENT_BERNOULLI, 3, 1, 1.0f);
    check_straight_through(LATENT_BERNOULLI, 3, 1, 0.5f);
}
END_TEST

/* ---- the linear model and the learned prior ---- */

/* --hidden none: one affine map each way, every gradient through it. */
START_TEST(linear_model_gradient)
{
    shape.nhidden = 0;
    check_relaxed_gradient(LATENT_CATEGORICAL, 2, 3, 0.5f, 1.0f);
    check_relaxed_gradient(LATENT_BERNOULLI, 3, 1, 0.5f, 1.0f);
    check_straight_through(LATENT_CATEGORICAL, 2, 3, 1.0f);
    check_straight_through(LATENT_BERNOULLI, 3, 1, 1.0f);
}
END_TEST

/* A learned prior away from uniform: the KL's forward against the
 * reference, its gradient to q's logits (through the encoder) and to the
 * prior's logits, with and without hidden layers. */
START_TEST(learned_prior_gradient)
{
    shape.prior = VAE_PRIOR_LEARNED;
    check_relaxed_gradient(LATENT_CATEGORICAL, 2, 3, 1.0f, 1.0f);
    check_relaxed_gradient(LATENT_BERNOULLI, 3, 1, 1.0f, 1.0f);
    check_relaxed_gradient(LATENT_CATEGORICAL, 2, 3, 0.5f, 1.7f);
    check_straight_through(LATENT_CATEGORICAL, 2, 3, 0.5f);
    check_straight_through(LATENT_BERNOULLI, 3, 1, 0.5f);
    shape.nhidden = 0;
    check_relaxed_gradient(LATENT_CATEGORICAL, 2, 3, 0.5f, 1.0f);
    check_relaxed_gradient(LATENT_BERNOULLI, 3, 1, 0.5f, 1.0f);
}
END_TEST

/* A learned prior as vae_init leaves it (eta = 0) is the uniform prior: the
 * same weights from the same generator, the same KL, the same gradient to
 * q's logits, the same importance-weighted bound; its own gradient is
 * mean_b (1/K - q_b) per class (1/2 - q_b per unit). */
static void check_zero_prior(latent_type lt, int N, int K)
{
    char err[ERR_LEN] = "";
    vae_model mu, ml;
    vae_acts au, al;
    vae_config cu = {.latent = lt, .N = N, .K = K, .D = D, .nhidden = 1, .hidden = {6}};
    vae_config cl = cu;
    cl.prior = VAE_PRIOR_LEARNED;
    rng_t r;
    rng_seed(&r, 5);
    ck_assert_msg(vae_init(&mu, &cu, &r, err) == 0, "%s", err);
    rng_seed(&r, 5);
    ck_assert_msg(vae_init(&ml, &cl, &r, err) == 0, "%s", err);
    int zdim = vae_zdim(&cu);
    ck_assert_uint_eq(ml.nparams, mu.nparams + (size_t)zdim);
    ck_assert_uint_eq(ml.prior, mu.nparams);
    ck_assert(vae_prior_logits(&mu) == NULL);
    ck_assert(memcmp(mu.params, ml.params, mu.nparams * sizeof(float)) == 0);
    for (int j = 0; j < zdim; j++)
        ck_assert(ml.params[ml.prior + j] == 0.0f);
    ck_assert_msg(vae_acts_init(&au, &mu, B, err) == 0, "%s", err);
    ck_assert_msg(vae_acts_init(&al, &ml, B, err) == 0, "%s", err);
    float x[B * D];
    for (int i = 0; i < B * D; i++)
        x[i] = rng_uniform_open(&r) < 0.5 ? 1.0f : 0.0f;
    vae_encode(&mu, &au, x, B);
    vae_encode(&ml, &al, x, B);
    vae_kl(&mu, &au, B);
    vae_kl(&ml, &al, B);
    vae_zero_grads(&mu);
    vae_zero_grads(&ml);
    memset(au.dlogits, 0, (size_t)B * zdim * sizeof(float));
    memset(al.dlogits, 0, (size_t)B * zdim * sizeof(float));
    vae_kl_backward(&mu, &au, B, 1.0f / B, 1.0f / B);
    vae_kl_backward(&ml, &al, B, 1.0f / B, 1.0f / B);
    for (int b = 0; b < B; b++)
        ck_assert_msg(au.kl[b] > 0.01 && fabs(al.kl[b] - au.kl[b]) <= 1e-6 * (1 + au.kl[b]),
                      "%s row %d: KL to eta = 0 %.9g, to uniform %.9g", stoch_latent_name(lt), b,
                      al.kl[b], au.kl[b]);
    for (int j = 0; j < B * zdim; j++)
        ck_assert_msg(fabsf(al.dlogits[j] - au.dlogits[j]) <= 1e-6f,
                      "%s dlogits[%d]: %.9g against %.9g", stoch_latent_name(lt), j,
                      (double)al.dlogits[j], (double)au.dlogits[j]);
    /* The uniform model has no prior to train. */
    for (size_t i = 0; i < mu.nparams; i++)
        ck_assert(mu.grads[i] == 0.0f && ml.grads[i] == 0.0f);
    const float *logits = vae_logits(&ml, &al);
    for (int j = 0; j < zdim; j++) {
        double want = 0;
        for (int b = 0; b < B; b++) {
            double l = logits[b * zdim + j];
            double q = lt == LATENT_CATEGORICAL ? exp((double)al.logq[b * zdim + j])
                                                : sigmoid_ref(l);
            want += ((lt == LATENT_CATEGORICAL ? 1.0 / K : 0.5) - q) / B;
        }
        ck_assert_msg(fabs(ml.grads[ml.prior + j] - want) <= 1e-6,
                      "%s prior gradient %d: %.9g, want %.9g", stoch_latent_name(lt), j,
                      (double)ml.grads[ml.prior + j], want);
    }
    eval_ws wu, wl;
    ck_assert_msg(eval_ws_init(&wu, &mu, 64, err) == 0, "%s", err);
    ck_assert_msg(eval_ws_init(&wl, &ml, 64, err) == 0, "%s", err);
    rng_t ru, rl;
    rng_seed(&ru, 11);
    rng_seed(&rl, 11);
    double iu = eval_iw(&mu, &wu, x, B, 50, &ru), il = eval_iw(&ml, &wl, x, B, 50, &rl);
    ck_assert_msg(fabs(iu - il) <= 1e-5 * (1 + fabs(iu)), "%s: bound %.9g (eta = 0), %.9g "
                  "(uniform)", stoch_latent_name(lt), il, iu);
    eval_ws_free(&wu);
    eval_ws_free(&wl);
    vae_acts_free(&au);
    vae_acts_free(&al);
    vae_free(&mu);
    vae_free(&ml);
}

START_TEST(zero_prior_is_uniform)
{
    check_zero_prior(LATENT_CATEGORICAL, 3, 4);
    check_zero_prior(LATENT_BERNOULLI, 5, 1);
}
END_TEST

/* --hidden none parses to nhidden 0 and prints back as none; the prior's
 * names. */
START_TEST(hidden_none_and_prior_names)
{
    char err[ERR_LEN] = "", buf[64];
    vae_config c = {.latent = LATENT_CATEGORICAL, .N = 20, .K = 10, .D = 784};
    ck_assert_msg(vae_parse_hidden("512,256", &c, err) == 0, "%s", err);
    ck_assert_int_eq(c.nhidden, 2);
    ck_assert_msg(vae_parse_hidden("none", &c, err) == 0, "%s", err);
    ck_assert_int_eq(c.nhidden, 0);
    vae_format_hidden(&c, buf, sizeof buf);
    ck_assert_str_eq(buf, "none");
    ck_assert(vae_parse_hidden("None", &c, err) != 0 && strstr(err, "or none"));
    ck_assert(vae_parse_hidden("none,8", &c, err) != 0);
    ck_assert(vae_parse_hidden("", &c, err) != 0);
    vae_prior p = VAE_PRIOR_LEARNED;
    ck_assert(vae_prior_parse("uniform", &p) == 0 && p == VAE_PRIOR_UNIFORM);
    ck_assert(vae_prior_parse("learned", &p) == 0 && p == VAE_PRIOR_LEARNED);
    ck_assert(vae_prior_parse("gumbel", &p) != 0 && p == VAE_PRIOR_LEARNED);
    ck_assert_str_eq(vae_prior_name(VAE_PRIOR_UNIFORM), "uniform");
    ck_assert_str_eq(vae_prior_name(VAE_PRIOR_LEARNED), "learned");
    /* 784-(20x10)-784 with a learned prior: two affine maps and 200 logits. */
    c.nhidden = 0;
    c.prior = VAE_PRIOR_LEARNED;
    vae_model m;
    rng_t r;
    rng_seed(&r, 1);
    ck_assert_msg(vae_init(&m, &c, &r, err) == 0, "%s", err);
    ck_assert_int_eq(m.nenc, 1);
    ck_assert_int_eq(m.ndec, 1);
    ck_assert_uint_eq(m.nparams, (size_t)(784 * 200 + 200) * 2 - 200 + 784 + 200);
    vae_free(&m);
}
END_TEST

/* ---- train_step ---- */

START_TEST(train_step_is_grad_then_adam)
{
    const estimator *est = estimator_find("gumbel");
    ck_assert_ptr_nonnull(est);
    fixture f;
    ref_vae R;
    const float tau = 0.8f;
    fixture_for_fd(&f, &R, LATENT_CATEGORICAL, 2, 3, est, tau, 5, 0, 1.0f);
    size_t np = f.m.nparams;
    float *grads = malloc(np * sizeof *grads), *p0 = malloc(np * sizeof *p0);
    ck_assert(grads && p0);
    memcpy(grads, f.m.grads, np * sizeof *grads);
    memcpy(p0, f.m.params, np * sizeof *p0);
    char err[ERR_LEN] = "";
    adam_state adam;
    ck_assert_msg(adam_init(&adam, np, err) == 0, "%s", err);

    /* lr = 0: the same gradient bit for bit, the parameters untouched, and
     * the loss of the reference. */
    rng_t r;
    rng_seed(&r, 5);
    double recon, kl;
    double loss = train_step(&f.m, &f.a, &f.es, est, &adam, f.x, B, tau, 0.0f, &r, &recon, &kl);
    ck_assert(memcmp(grads, f.m.grads, np * sizeof *grads) == 0);
    ck_assert(memcmp(p0, f.m.params, np * sizeof *p0) == 0);
    ck_assert_msg(fabs(recon - R.recon) <= 1e-5 * R.recon && fabs(kl - R.kl) <= 1e-5 * (1 + R.kl),
                  "train_step recon %.9g KL %.9g, reference %.9g %.9g", recon, kl, R.recon, R.kl);
    /* train_step returns (sum recon + sum KL) / B and reports each sum / B:
     * equal up to the rounding of the divisions (B = 3 is not a power of 2). */
    ck_assert_msg(fabs(loss - (recon + kl)) <= 4 * DBL_EPSILON * fabs(loss),
                  "loss %.17g, recon + KL %.17g", loss, recon + kl);

    /* A first Adam step moves each parameter by lr * g / (|g| + eps). */
    adam_free(&adam);
    ck_assert_msg(adam_init(&adam, np, err) == 0, "%s", err);
    const float lr = 1e-3f;
    rng_seed(&r, 5);
    train_step(&f.m, &f.a, &f.es, est, &adam, f.x, B, tau, lr, &r, &recon, &kl);
    ck_assert_int_eq(adam.t, 1);
    int moved = 0;
    for (size_t i = 0; i < np; i++) {
        double g = grads[i], want = -(double)lr * g / (fabs(g) + 1e-8);
        double got = (double)f.m.params[i] - p0[i];
        ck_assert_msg(fabs(got - want) <= 1e-7 + 1e-4 * lr,
                      "param %zu (grad %g): moved by %.9g, want %.9g", i, g, got, want);
        moved += got != 0;
    }
    ck_assert_int_gt(moved, (int)np / 2);

    /* A non-finite loss leaves the parameters and the optimizer alone. */
    adam_free(&adam);
    ck_assert_msg(adam_init(&adam, np, err) == 0, "%s", err);
    memcpy(f.m.params, p0, np * sizeof *p0);
    f.m.params[f.m.dec[f.m.ndec - 1].b] = NAN;
    memcpy(p0, f.m.params, np * sizeof *p0);
    rng_seed(&r, 5);
    loss = train_step(&f.m, &f.a, &f.es, est, &adam, f.x, B, tau, lr, &r, &recon, &kl);
    ck_assert(isnan(loss));
    ck_assert(memcmp(p0, f.m.params, np * sizeof *p0) == 0);
    ck_assert_int_eq(adam.t, 0);

    adam_free(&adam);
    free(grads);
    free(p0);
    free(R.p);
    fixture_free(&f);
}
END_TEST

/* ---- Adam ---- */

START_TEST(adam_three_steps)
{
    enum { n = 6 };
    const double g[3][n] = {
        {0.5, -2.0, 0.0, 1e-10, 1e3, -0.01},
        {0.4, 1.5, 0.0, -1e-10, 1e3, 0.03},
        {-0.7, -2.5, 0.0, 1e-10, -2e3, 0.02},
    };
    const double p_init[n] = {0.3, -0.8, 0.5, 0.1, -0.2, 0.9};
    /* The optimizer's constants are floats; the reference uses their
     * exact values (1 - 0.999f is 1.3e-5 away from 0.001). */
    const double lr = 0.01f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    char err[ERR_LEN] = "";
    adam_state s;
    ck_assert_msg(adam_init(&s, n, err) == 0, "%s", err);
    ck_assert(s.beta1 == 0.9f && s.beta2 == 0.999f && s.eps == 1e-8f);
    float p[n], gf[n];
    /* The moments are compared at the scale of the gradients that built
     * them: m can cancel to far below its terms (0.5, 0.4, -0.7 leave
     * 0.0065), and float rounding is relative to the terms. */
    double pr[n], m[n] = {0}, v[n] = {0}, gsum[n] = {0}, g2sum[n] = {0};
    for (int i = 0; i < n; i++)
        pr[i] = p[i] = (float)p_init[i];
    for (int t = 1; t <= 3; t++) {
        for (int i = 0; i < n; i++) {
            gf[i] = (float)g[t - 1][i];
            double gi = gf[i];
            gsum[i] += fabs(gi);
            g2sum[i] += gi * gi;
            /* Kingma & Ba, Algorithm 1. */
            m[i] = b1 * m[i] + (1 - b1) * gi;
            v[i] = b2 * v[i] + (1 - b2) * gi * gi;
            double mhat = m[i] / (1 - pow(b1, t)), vhat = v[i] / (1 - pow(b2, t));
            pr[i] -= lr * mhat / (sqrt(vhat) + eps);
        }
        adam_update(&s, p, gf, (float)lr);
        ck_assert_int_eq(s.t, t);
        for (int i = 0; i < n; i++) {
            ck_assert_msg(fabs(p[i] - pr[i]) <= 1e-6, "step %d param %d: %.9g, want %.9g", t, i,
                          (double)p[i], pr[i]);
            ck_assert_msg(fabs(s.m[i] - m[i]) <= 1e-6 * gsum[i] &&
                              fabs(s.v[i] - v[i]) <= 1e-6 * g2sum[i],
                          "step %d moments %d: m %.9g v %.9g, want %.9g %.9g", t, i,
                          (double)s.m[i], (double)s.v[i], m[i], v[i]);
        }
    }
    /* The cases that tell the formulas apart moved as they should: the
     * zero gradient not at all, the 1e-10 one by about lr/100 per step (eps
     * matters there), the large ones by about lr per step. */
    ck_assert(p[2] == (float)p_init[2]);
    ck_assert(fabs(p[3] - p_init[3]) > 1e-5 && fabs(p[3] - p_init[3]) < 1e-3);
    ck_assert(fabs(p[4] - p_init[4]) > 0.01);
    adam_free(&s);
}
END_TEST

/* ---- temperature schedule ---- */

START_TEST(schedule_values)
{
    tau_schedule s = {.tau0 = 1.0, .tau_min = 0.5, .rate = 3e-5, .every = 1000};
    /* exp(-0.03), exp(-0.69), from Python's math.exp. */
    const double e003 = 0.9704455335485082, e069 = 0.5015760690660555;
    ck_assert(schedule_tau(&s, 0) == 1.0);
    ck_assert(schedule_tau(&s, 999) == 1.0);
    ck_assert_msg(fabs(schedule_tau(&s, 1000) - e003) < 1e-15, "%.17g", schedule_tau(&s, 1000));
    ck_assert_msg(fabs(schedule_tau(&s, 1999) - e003) < 1e-15, "%.17g", schedule_tau(&s, 1999));
    ck_assert_msg(fabs(schedule_tau(&s, 23999) - e069) < 1e-15, "%.17g",
                  schedule_tau(&s, 23999));
    /* exp(-0.72) = 0.487 is under the floor. */
    ck_assert(schedule_tau(&s, 24000) == 0.5);
    ck_assert(schedule_tau(&s, 50000) == 0.5);
    ck_assert(schedule_tau(&s, 10000000) == 0.5);
    double prev = INFINITY;
    for (long step = 0; step <= 60000; step++) {
        double tau = schedule_tau(&s, step);
        ck_assert(tau <= prev && tau >= 0.5);
        if (step % 1000)
            ck_assert(tau == prev);
        prev = tau;
    }
    /* every = 1 anneals every step. */
    s.every = 1;
    ck_assert_msg(fabs(schedule_tau(&s, 1) - exp(-3e-5)) < 1e-15, "%.17g", schedule_tau(&s, 1));
    /* A floor above tau0 holds from the start. */
    s.tau_min = 2.0;
    ck_assert(schedule_tau(&s, 0) == 2.0);
}
END_TEST

static Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, gumbel_categorical_gradient);
    tcase_add_test(tc, gumbel_bernoulli_gradient);
    tcase_add_test(tc, logit_scale_gradient);
    tcase_add_test(tc, st_gumbel_categorical);
    tcase_add_test(tc, st_gumbel_bernoulli);
    tcase_add_test(tc, linear_model_gradient);
    tcase_add_test(tc, learned_prior_gradient);
    tcase_add_test(tc, zero_prior_is_uniform);
    tcase_add_test(tc, hidden_none_and_prior_names);
    tcase_add_test(tc, train_step_is_grad_then_adam);
    tcase_add_test(tc, adam_three_steps);
    tcase_add_test(tc, schedule_values);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(model_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
