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
 * One table (estimators[] in estimator.c) maps each --estimator name to its
 * implementation:
 *
 *   gumbel, st-gumbel   relaxed sample (Jang et al. 2017; Maddison et al. 2017)
 *   sf                  score function with a baseline (NVIL, Mnih & Gregor 2014)
 *   darn                per-unit first-order Taylor signal (Gregor et al. 2014)
 *   muprop              Taylor control variate around the mean (Gu et al. 2016)
 *   st, annealed-st     straight-through (Bengio et al. 2013; Chung et al. 2016)
 *   exact               sum over all K^N codes (tiny models only)
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

/* Enumeration limit of `exact`: K^N (or 2^N) codes per example. */
#define EST_EXACT_MAX_CONFIGS 65536L
/* NVIL: exponential moving averages of the signal's mean and variance with
 * alpha = 0.8 (Mnih & Gregor 2014, Sec. 3.3 and Algorithm 1). */
#define EST_BASELINE_DECAY 0.8
/* NVIL's input-dependent baseline: one hidden layer of 100 tanh units. */
#define EST_BASELINE_HIDDEN 100

typedef enum { EST_BASELINE_NONE, EST_BASELINE_MEAN, EST_BASELINE_LEARNED } est_baseline;

/* "none", "mean" or "learned"; -1 if unknown. */
int est_baseline_parse(const char *s, est_baseline *out);
const char *est_baseline_name(est_baseline b);

typedef struct {
    est_baseline baseline;
    int var_norm;           /* divide the centred signal by max(1, running std) */
    float baseline_lr;      /* Adam step of the baseline network */
    uint64_t baseline_seed; /* its initial weights */
} est_options;

/* baseline mean, variance normalisation on, lr 1e-3, seed 0. */
void est_options_default(est_options *o);

/* Per-run state and scratch of the estimators.  Allocated once for the
 * largest batch; nothing is allocated per step. */
typedef struct {
    int max_batch;
    float *noise;  /* B x zdim */
    float *soft;   /* B x zdim: the relaxed sample */

    est_baseline baseline;
    int var_norm;
    /* Set to use the persistent state without updating it, so that
     * repeated draws are independent (gradvar, tests). */
    int frozen;
    /* This step's variance normalisation, 1 / max(1, running std) of the
     * signal (1 without it): the score-function estimators divide the whole
     * encoder gradient by it, the analytic KL's included, so that it
     * changes the step's size and not its direction. */
    float enc_scale;

    /* Everything that must survive a checkpoint, in one buffer:
     *   [0] running mean c of the (network-centred) signal
     *   [1] running variance v
     *   [2] 1 once c and v hold statistics
     *   [3] Adam steps of the baseline network (exact in float to 2^24)
     *   then, for baseline learned, the network's parameters and their
     *   Adam first and second moments (nbl floats each). */
    float *persist;
    size_t npersist;

    /* Scratch of the score-function family. */
    double *signal;   /* B: the learning signal per example */
    double *fbar;     /* B: f at the mean-field point (muprop) */
    float *zbar;      /* B x zdim: the mean-field point q */
    float *dzbar;     /* B x zdim: f'(zbar) per example */
    float *grad_discard; /* nparams: parameter gradients of passes that must not count */

    /* Baseline network x -> tanh(W1 x + b1) -> w2 . h + b2, params in persist. */
    int bl_hidden;
    size_t nbl;
    float *bl_h, *bl_dh, *bl_out, *bl_dout, *bl_grads;
    adam_state bl_adam;  /* m and v point into persist */
    float bl_lr;

    /* Enumeration scratch of `exact` (NULL when too many codes). */
    long exact_configs;
    float *rows_z, *rows_x, *row_scale;
    double *row_w;           /* q(code | x) of each row */
    double *acc_fz, *acc_f;  /* B x zdim and B */
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

typedef struct {
    const char *name;
    const char *help;   /* one line for gsvae train --help */
    void (*run)(est_ctx *c);
    int uses_baseline;  /* reads est_state's baseline (and so its persistent state) */
} estimator;

const estimator *estimator_find(const char *name);
/* The table, terminated by an entry with name NULL. */
const estimator *estimator_list(void);

/* Codes a model's latent space holds (K^N or 2^N), or -1 past
 * EST_EXACT_MAX_CONFIGS. */
long est_count_configs(const vae_config *c);
/* Whether estimator e can run on models of shape c: `exact` is refused, with
 * a one-line message, when the codes exceed EST_EXACT_MAX_CONFIGS. */
int est_check(const estimator *e, const vae_config *c, char *err);

/* opts NULL: est_options_default. */
int est_state_init(est_state *s, const vae_model *m, int max_batch, const est_options *opts,
                   char *err);
void est_state_free(est_state *s);

/* One full estimate of the gradient of the batch's mean negative ELBO
 * (reconstruction by e, analytic KL) into m->grads, which it zeroes first;
 * returns the mean loss.  train_step adds the optimizer step to this. */
double est_elbo_gradient(const estimator *e, est_ctx *c);

/* Hard discrete sample of the code from the logits of q(z|x) (Gumbel-max for categorical,
 * u < sigmoid(l) for Bernoulli) into z; used by evaluation and sampling. */
void est_sample_hard(const vae_config *cfg, const float *logits, int B, float *noise, float *z,
                     rng_t *r);

#endif
