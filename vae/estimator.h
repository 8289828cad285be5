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
 * implementation. */
#ifndef GSVAE_ESTIMATOR_H
#define GSVAE_ESTIMATOR_H

#include "model.h"
#include "rng.h"

/* Per-run state and scratch of the estimators (noise, soft samples,
 * baselines).  Allocated once for the largest batch. */
typedef struct {
    int max_batch;
    float *noise;  /* B x zdim */
    float *soft;   /* B x zdim: the relaxed sample */
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
} estimator;

const estimator *estimator_find(const char *name);
/* The table, terminated by an entry with name NULL. */
const estimator *estimator_list(void);

int est_state_init(est_state *s, const vae_model *m, int max_batch, char *err);
void est_state_free(est_state *s);

/* Hard discrete sample of the code from the logits of q(z|x) (Gumbel-max for categorical,
 * u < sigmoid(l) for Bernoulli) into z; used by evaluation and sampling. */
void est_sample_hard(const vae_config *cfg, const float *logits, int B, float *noise, float *z,
                     rng_t *r);

#endif
