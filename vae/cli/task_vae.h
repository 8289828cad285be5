/* task_vae.h: the VAE task of `gsvae train` (the default --task), and what
 * the commands that read its checkpoints (eval, sample, recon, gradvar,
 * bench) share with it. */
#ifndef GSVAE_TASK_VAE_H
#define GSVAE_TASK_VAE_H

#include "driver.h"
#include "estimator.h"
#include "evaluate.h"
#include "model.h"
#include "sigopt.h"

/* The VAE task's flags and its run. */
typedef struct {
    const char *latent_type, *latent, *hidden, *baseline, *st_slope, *prior, *tau, *darn_point;
    sigopt sig;    /* --var-norm, --var-norm-scope, --baseline-lr */
    int hard, iw_samples, samples;
    int valid_iw_samples;       /* --valid-iw-samples: the validation bound at the end, 0: none */
    const char *kl;             /* --kl: analytic or relaxed; NULL: by --samples */
    /* Set by the checks. */
    vae_config cfg;
    const estimator *est;       /* --estimator (or --hard) */
    const estimator *step_est;  /* what a step runs: est, or st under --st-slope posterior */
    int slope_posterior;
    int relaxed_kl;             /* gumbel on the relaxed bound at K = 1 (--kl relaxed) */
    /* Set by setup. */
    vae_model m;
    vae_acts a;
    est_state es;
    eval_ws ev;
    float *x;                   /* the batch, B x D */
} vae_task;

/* Check the VAE's flags (and the estimator of o) and parse the model shape
 * into v->cfg; one-line error naming the flag. */
int vae_task_check(const run_opts *o, vae_task *v, char *err);

/* The estimator options of a run with flags o and v (checked): the
 * baseline, its seed and step, the samples of a K-sample bound, room for a
 * learned control variate. */
void vae_task_est_options(const run_opts *o, const vae_task *v, est_options *eo);

/* The model's logit scale after `step` steps of a run: 1/tau(step) under
 * --st-slope posterior, else 1. */
float vae_task_logit_scale(const run_opts *o, const vae_task *v, long step);

/* Open a VAE checkpoint and build its model, set to the posterior of its
 * last step.  *v (the stored VAE flags) and *text (the strings of o and
 * *v) are the caller's to free after their last use; on failure nothing
 * is left to free.  A checkpoint of another task is refused. */
int vae_task_load_model(const char *path, run_opts *o, vae_task **v, char **text, vae_model *m,
                        char *err);

/* One optimisation step on batch x (B examples): the estimator's gradient
 * of the mean negative ELBO, then Adam.  Returns the mean loss, or NaN
 * (parameters untouched) when the loss is not finite. */
double train_step(vae_model *m, vae_acts *a, est_state *es, const estimator *est,
                  adam_state *adam, const float *x, int B, float tau, float lr, rng_t *r,
                  double *recon_out, double *kl_out);

#endif
