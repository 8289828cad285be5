/* estimator.h: gradient estimators for the discrete latent code.
 *
 * Every estimator handles the reconstruction term E_q[-log p(x|z)] of one
 * batch, between the encoder's forward pass and its backward pass: it draws
 * the code, runs the decoder (as often as it needs), accumulates the
 * decoder's parameter gradients, fills a->recon with the per-example
 * reconstruction loss of the sample it reports, and writes into a->dlogits
 * its estimate of d/dlogits of (1/B) sum_b recon[b].  The KL term is
 * analytic and handled by the caller for every estimator alike.
 *
 * Every estimator of stochastic.h's one list runs here (VAE_ESTIMATORS);
 * estimator.c's table maps each to its implementation.
 *
 * The score-function family (sf, muprop) centres its learning signal with a
 * baseline (est_options.baseline): none, a moving average, or a moving
 * average plus an input-dependent MLP baseline; with a baseline it also
 * divides the centred signal by max(1, running std) as NVIL does.  The
 * state that outlives a step (the running statistics, the baseline network
 * and its Adam moments) lives in one flat buffer, est_state.persist, which
 * the run checkpoint saves as its "estimator" section. */
#ifndef GSVAE_ESTIMATOR_H
#define GSVAE_ESTIMATOR_H

#include <stddef.h>
#include <stdint.h>

#include "adam.h"
#include "model.h"
#include "rng.h"
#include "stochastic.h"

/* REBAR's starting eta and temperature lambda (Tucker et al. 2017 start
 * at 1 and 0.5), and the step of log lambda in its central difference. */
#define EST_REBAR_ETA0 1.0f
#define EST_REBAR_LAMBDA0 0.5f
#define EST_REBAR_FD_STEP 0.05
/* RELAX's learned surrogate r(z; x) (surrogate.h): one hidden layer of 200
 * tanh units on the code's probabilities at z (sigmoid per unit, softmax per
 * variable) and the example's image x, added to REBAR's eta f(sigma_lambda(z)). */
#define EST_RELAX_HIDDEN 200

/* What an estimator's control variate trains as it runs (estimator.learns_cv,
 * est_options.learns_cv): nothing, REBAR's eta and log lambda, or those and
 * RELAX's surrogate network.  Each kind's state extends the one before it. */
enum { EST_CV_NONE, EST_CV_REBAR, EST_CV_RELAX };

/* Enumeration limit of `exact`: K^N (or 2^N) codes per example. */
#define EST_EXACT_MAX_CONFIGS 65536L
/* NVIL's input-dependent baseline: one hidden layer of 100 tanh units. */
#define EST_BASELINE_HIDDEN 100

typedef enum { EST_BASELINE_NONE, EST_BASELINE_MEAN, EST_BASELINE_LEARNED } est_baseline;

/* "none", "mean" or "learned"; -1 if unknown. */
int est_baseline_parse(const char *s, est_baseline *out);
const char *est_baseline_name(est_baseline b);

typedef struct {
    est_baseline baseline;
    int var_norm;           /* divide the centred signal by max(1, running std) */
    int norm_signal;        /* 1: that divisor scales the score term alone, the
                             * analytic terms (KL, MuProp's Taylor mean) kept at
                             * full size (biased); 0: the whole encoder gradient */
    float baseline_lr;      /* Adam step of the baseline network */
    uint64_t baseline_seed; /* its initial weights */
    int samples;            /* K of a K-sample bound (vimco); 1 otherwise */
    int relaxed_kl;         /* gumbel: the relaxed bound (Concrete densities)
                             * at K = 1 too, instead of the analytic KL */
    float darn_point;       /* darn: each categorical entry's expansion point
                             * (STOCH_DARN_CENTRE: 1/K) */
    int learns_cv;          /* EST_CV_*: room for what the control variate trains
                             * (estimator.learns_cv); a larger kind serves the smaller */
} est_options;

/* baseline mean, variance normalisation on, lr 1e-3, seed 0, 1 sample,
 * DARN at the simplex's centre. */
void est_options_default(est_options *o);

/* The estimators run on the VAE: all of stochastic.h's list. */
#define VAE_ESTIMATORS STOCH_ALL_ESTIMATORS

/* Per-run state of the estimators: the few fields callers read or set, and
 * one block holding the persistent state and every scratch buffer (its
 * layout is estimator.c's), sized once for the largest batch; nothing is
 * allocated per step. */
typedef struct est_scratch est_scratch;
typedef struct {
    int max_batch;
    /* K of a K-sample bound: its estimators decode max_batch * K rows, so
     * the vae_acts they run on hold that many. */
    int samples;
    int relaxed_kl;         /* as est_options */
    est_baseline baseline;
    int var_norm;           /* as est_options; may be changed between steps */
    int norm_signal;        /* as est_options */
    float darn_point;       /* as est_options */
    /* Set to use the persistent state without updating it, so that
     * repeated draws are independent (gradvar, tests). */
    int frozen;
    /* This step's variance normalisation, 1 / max(1, running std) of the
     * signal (1 without it): the score-function estimators divide the whole
     * encoder gradient by it, the analytic KL's included, so that it
     * changes the step's size and not its direction. */
    float enc_scale;
    /* Everything that must survive a checkpoint, npersist floats:
     *   [0] running mean c of the (network-centred) signal
     *   [1] running variance v
     *   [2] 1 once c and v hold statistics
     *   [3] Adam steps of the baseline network (exact in float to 2^24)
     *   then, for baseline learned, the network's parameters and their
     *   Adam first and second moments (nbl floats each);
     *   then, with est_options.learns_cv, REBAR's eta and log lambda, their
     *   Adam first and second moments (2 floats each) and its Adam steps;
     *   then, with EST_CV_RELAX, RELAX's surrogate network (nr =
     *   surr_nparams(&code, D, EST_RELAX_HIDDEN) floats, surrogate.h's layout),
     *   its Adam first and second moments (nr each) and its Adam steps. */
    float *persist;
    size_t npersist;
    est_scratch *ws;  /* the one block: scratch layout at its head, then the buffers */
} est_state;

typedef struct {
    vae_model *m;
    vae_acts *a;
    est_state *s;
    const float *x;  /* B x D */
    int B;
    float tau;
    rng_t *r;
} est_ctx;

enum { EST_K_NONE, EST_K_REQUIRED, EST_K_OPTIONAL };

typedef struct {
    stoch_estimator id;  /* its name and help: stoch_estimator_name, _help */
    void (*run)(est_ctx *c);
    int uses_baseline;   /* reads est_state's baseline (and so its persistent state) */
    /* Whether it trains the K-sample bound (est_state.samples K > 1
     * samples per example) instead of the ELBO: never (0), always
     * (EST_K_REQUIRED, K >= 2: vimco) or when K > 1 or relaxed_kl is set
     * (EST_K_OPTIONAL: gumbel, on the relaxed bound, whose K = 1 case is
     * the ELBO with the KL estimated by the Concrete densities).  On it, run estimates the whole
     * bound's gradient, the log p(z) - log q(z|x) of each sample included,
     * so no analytic KL is added; it fills a->recon with the bound's
     * weighted reconstruction sum_k w_k (-log p(x|z_k)) (w the normalised
     * importance weights) and a->kl with the rest of the bound, so that
     * recon + kl = -bound. */
    int k_sample;
    /* Trains parameters of its control variate as it runs, on the variance
     * of its own estimate (EST_CV_REBAR: eta and log lambda; EST_CV_RELAX:
     * those and the surrogate network): callers set est_options.learns_cv
     * to it, and warm it up before measuring. */
    int learns_cv;
} estimator;

/* The implementation of estimator id (every one of the list). */
const estimator *estimator_get(stoch_estimator id);
/* estimator_get of the estimator named `name`; NULL if no estimator has it. */
const estimator *estimator_find(const char *name);
/* The table in the list's order, terminated by an entry with run NULL. */
const estimator *estimator_list(void);

/* Codes a model's latent space holds (K^N or 2^N), or -1 past
 * EST_EXACT_MAX_CONFIGS. */
long est_count_configs(const vae_config *c);
/* Whether estimator e can run on models of shape c, with a one-line
 * message when not: an estimator not defined for the code's latent type
 * (arm and disarm on a categorical code), or `exact` when the codes exceed
 * EST_EXACT_MAX_CONFIGS. */
int est_check(const estimator *e, const vae_config *c, char *err);

/* Sizes and allocates s for m and batches of up to max_batch (one zeroed
 * block; the learned baseline's network initialised from its seed).  opts
 * NULL: est_options_default.  -1 with err on failure (s then holds no
 * buffer).  est_state_free frees the block once and empties s; it accepts a
 * failed or zeroed s. */
int est_state_init(est_state *s, const vae_model *m, int max_batch, const est_options *opts,
                   char *err);
void est_state_free(est_state *s);

/* The noise of the last relaxed or Gumbel-Max sample (max_batch x zdim),
 * and the last relaxed sample; for tests that rebuild a draw. */
const float *est_last_noise(const est_state *s);
const float *est_last_relaxed(const est_state *s);
/* The noise of the last K-sample bound's draw (max_batch K x zdim). */
const float *est_last_bound_noise(const est_state *s);
/* The gradient of sum g^2 (g the last estimate of d/dlogits) with respect
 * to the control variate's trained parameters, as the last step that was
 * not frozen computed it: [d eta, d log lambda], then with EST_CV_RELAX
 * the surrogate network's nr; for tests. */
const float *est_last_cv_grad(const est_state *s);

/* One full estimate of the gradient of the batch's mean negative ELBO
 * (reconstruction by e, analytic KL; with s->samples K > 1, or gumbel with
 * s->relaxed_kl, the K-sample bound, estimator.k_sample) into m->grads, which it zeroes first;
 * returns the mean loss.  train_step adds the optimizer step to this.  A
 * model that learns its temperature sets c->tau to it (vae_tau), and
 * gumbel and st-gumbel add d loss / d log tau to its gradient. */
double est_elbo_gradient(const estimator *e, est_ctx *c);

/* Hard discrete sample of the code from the logits of q(z|x) into z
 * (stoch_sample_logits: Gumbel-Max per variable with noise as scratch,
 * u < sigmoid(l) per unit); used by evaluation and sampling. */
void est_sample_hard(const vae_config *cfg, const float *logits, int B, float *noise, float *z,
                     rng_t *r);

#endif
