/* train.h: the options of a training run, their flag table, and the run's
 * checkpoint (model, optimizer, generator, data order, log). */
#ifndef GSVAE_TRAIN_H
#define GSVAE_TRAIN_H

#include "adam.h"
#include "dataset.h"
#include "estimator.h"
#include "flags.h"
#include "model.h"
#include "rng.h"

#define GSVAE_VERSION "0.1.0"
#define TRAIN_MAX_FLAGS 40
/* Seed of the one-time binarization of the test set and of the evaluation
 * noise: fixed, so every run of every estimator is scored on the same
 * binary test images. */
#define EVAL_SEED 20170101u

typedef struct {
    const char *data_dir, *out_dir, *latent_type, *latent, *hidden, *estimator, *binarize;
    const char *baseline;    /* none, mean or learned (score-function estimators) */
    const char *st_slope;    /* annealed-st: backward or posterior */
    int resume, hard;
    double lr, lr_decay, tau0, tau_min, anneal_rate;
    long steps, lr_decay_every, anneal_every, seed, eval_every, log_every;
    int epochs, batch, iw_samples, eval_images, threads, quiet;
} train_opts;

void train_opts_default(train_opts *o);
/* Fill defs (TRAIN_MAX_FLAGS entries) with the flag table bound to o. */
void train_flag_table(train_opts *o, flag_def *defs);
/* Check ranges and parse the model shape into c; one-line error naming the
 * flag. */
int train_opts_check(const train_opts *o, vae_config *c, char *err);

/* Slope-annealed ST has two readings of "the slope 1/tau of the sigmoid":
 * backward (the default) keeps q(z|x) = softmax(l) and puts the slope in
 * the backward pass only; posterior tempers q itself, q = softmax(l / tau),
 * so the sample, the KL and every evaluation see the tempered posterior
 * and the gradient is plain ST's on it.  Sets *posterior (1 for posterior)
 * and returns 0, or -1 for any other word. */
int train_slope_in_posterior(const char *st_slope, int *posterior);
/* The model's logit scale for the step (0-based) of a run with options o:
 * 1/tau(step) under --st-slope posterior, else 1. */
float train_logit_scale(const train_opts *o, long step);

/* One optimisation step on batch x (B examples): the estimator's gradient
 * of the mean negative ELBO, then Adam.  Returns the mean loss, or NaN
 * (parameters untouched) when the loss is not finite. */
double train_step(vae_model *m, vae_acts *a, est_state *es, const estimator *est,
                  adam_state *adam, const float *x, int B, float tau, float lr, rng_t *r,
                  double *recon_out, double *kl_out);

/* Threads a run uses: --threads, or all online cores for 0. */
int train_threads(const train_opts *o);

/* One row of log.csv. */
typedef struct {
    long step;
    double epoch, tau, train_loss, train_recon, train_kl;
    double test_neg_elbo;          /* hard (discrete) code */
    double test_neg_elbo_relaxed;  /* relaxed code at the row's tau */
    double seconds;
} log_row;

/* Everything a checkpoint holds. */
typedef struct {
    long step;
    double seconds;          /* training wall time so far */
    rng_t rng;
    uint32_t *order;         /* batcher permutation (count entries) */
    uint32_t order_count, pos;
    uint64_t epoch;
    log_row *log;
    long nlog;
    float *est_persist;      /* the estimator's persistent state (est_npersist floats) */
    size_t est_npersist;
} run_state;

int run_ckpt_save(const char *path, const train_opts *o, const vae_model *m,
                  const adam_state *adam, const run_state *st, char *err);

struct ckpt_file;
/* Read the options stored in an open checkpoint into o (over the defaults).
 * The strings of o then point into *text, which the caller frees after its
 * last use of o. */
int run_ckpt_read_opts(const struct ckpt_file *f, const char *path, train_opts *o,
                       char **text, char *err);
/* Copy the parameters, and when adam / st are not NULL the optimizer and
 * the run state, into structures already set up from those options; every
 * size is checked.  st->order and st->log must point at order_count and
 * nlog-capacity buffers (st->nlog holds the capacity on entry). */
int run_ckpt_restore(const struct ckpt_file *f, const char *path, vae_model *m,
                     adam_state *adam, run_state *st, char *err);
/* Open a checkpoint and build its model (for eval, sample, recon). */
int run_ckpt_load_model(const char *path, train_opts *o, char **text, vae_model *m, char *err);

#endif
