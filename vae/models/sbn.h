/* sbn.h: structured output prediction with a stochastic binary network
 * (Jang et al. 2017, Sec. 4.1, after Raiko et al. 2015 and Gu et al. 2016):
 * predict the lower half of a binarized MNIST digit from its upper half
 * through two stochastic layers,
 *
 *   x_in --A1--> l1 ~> h1 --A2--> l2 ~> h2 --A3--> pixel logits of x_out
 *
 * where each A is affine (no deterministic hidden layers: the paper's
 * 392-200-200-392 names only stochastic layers, and Yin & Zhou's ARM paper,
 * App. on this benchmark, states the maps are linear "so the results are
 * directly comparable with those in Jang et al. (2017)").  Each h is N
 * Bernoulli units, h_i ~ Bernoulli(sigmoid(l_i)), or N one-hot categorical
 * variables of K classes, h ~ Cat(softmax(l)) per group.
 *
 * The loss of one example with S samples h^(j) = (h1^(j), h2^(j)) drawn
 * from p(h | x_in) is the S-sample estimate of -log p(x_out | x_in),
 *
 *   L = -log (1/S) sum_j p(x_out | h2^(j)),
 *
 * an upper bound whose expectation falls (weakly) as S grows.  A batch row
 * is one (example, sample) pair, example-major: row r = b * S + j.
 *
 * All parameters live in one buffer and all gradients in its twin (A1, A2,
 * A3 in order, each weight [out][in] then bias); activations live in
 * sbn_ws, allocated once for the largest batch, so a training step
 * allocates nothing.
 *
 * Estimators (one table, sbn_estimator_list; the same definitions as
 * estimator.h's for the VAE, applied at both stochastic layers):
 *   gumbel, st-gumbel   relaxed samples at both layers
 *   st, annealed-st     hard samples; backward through d mean / d logits
 *   darn                hard samples; the 1/2 estimator at each layer
 *   sf                  score function of both layers with the S-sample loss
 *   muprop              sf minus the Taylor control variate around the
 *                       mean-field pass through both layers */
#ifndef GSVAE_SBN_H
#define GSVAE_SBN_H

#include <stddef.h>

#include "model.h"
#include "rng.h"

typedef struct {
    latent_type latent;
    int N, K;         /* per stochastic layer; K is 1 for Bernoulli units */
    int D_in, D_out;  /* conditioning and predicted pixels (392 and 392) */
} sbn_config;

/* Units of one stochastic layer: N*K or N. */
int sbn_zdim(const sbn_config *c);

enum { SBN_A1, SBN_A2, SBN_A3, SBN_NLAYERS };

typedef struct {
    sbn_config cfg;
    vae_linear lay[SBN_NLAYERS];
    size_t nparams;
    float *params, *grads;
} sbn_model;

/* Glorot-uniform weights and zero biases from r. */
int sbn_init(sbn_model *m, const sbn_config *c, rng_t *r, char *err);
void sbn_free(sbn_model *m);

/* One stochastic layer's activations over the rows of a batch. */
typedef struct {
    float *logits;  /* rows x zdim */
    float *probs;   /* the mean: sigmoid or softmax of the logits */
    float *pt;      /* probs at slope 1/tau (annealed-st) */
    float *noise;   /* logistic or Gumbel noise of the relaxed sample */
    float *soft;    /* the relaxed sample */
    float *h;       /* what the next layer reads */
    float *dh, *dl; /* gradients at h and at the logits */
} sbn_layer;

/* Training workspace for up to max_batch examples of max_samples rows. */
typedef struct {
    int max_batch, max_samples;
    float *xin, *xout;       /* B x D_in, B x D_out */
    float *l1;               /* B x zdim: A1(x_in), before replication */
    float *dl1;              /* B x zdim: dl of layer 1 summed over samples */
    sbn_layer lay[2];
    float *out, *dout;       /* rows x D_out: pixel logits and their gradient */
    double *ell;             /* rows: -log p(x_out | h2) */
    double *weight;          /* rows: dL/d ell, softmax over the samples */
    double *loss;            /* B: L */
    double *signal[2];       /* B: learning signals of sf / muprop */
    /* The mean-field pass of muprop, B rows. */
    float *mf_x1, *mf_l2, *mf_x2, *mf_out, *mf_dout, *mf_g1, *mf_g2, *mf_dl2;
    double *mf_f;
} sbn_ws;

int sbn_ws_init(sbn_ws *w, const sbn_model *m, int max_batch, int max_samples, char *err);
void sbn_ws_free(sbn_ws *w);

/* Learning-signal centring of sf and muprop, one slot per stochastic layer,
 * as estimator.h's: u - c, divided by max(1, sqrt(v)) when var_norm is set,
 * with c and v exponential moving averages (decay 0.8, NVIL) of the signal's
 * batch mean and variance from earlier batches only; the first batch is
 * left uncentred.  frozen: use c and v without updating them (tests). */
typedef struct {
    int centre, var_norm, frozen;
    double mean[2], var[2];
    int seen[2];
    /* The divisor of this step's signal per layer, 1 / max(1, sqrt(v)) (1
     * without var_norm); MuProp's analytic term is divided by it too, so
     * that the normalisation rescales the layer's whole gradient. */
    double scale[2];
} sbn_baseline;

typedef struct sbn_ctx sbn_ctx;

typedef enum { SBN_SAMPLE_HARD, SBN_SAMPLE_RELAXED, SBN_SAMPLE_ST_RELAXED } sbn_sample_mode;

typedef struct {
    const char *name;
    const char *help;         /* one line for --help */
    sbn_sample_mode sample;   /* what the forward pass feeds forward */
    /* dl of stochastic layer i (0 or 1) from its dh (pathwise estimators) or
     * from the learning signal (score-function ones). */
    void (*layer_backward)(sbn_ctx *c, int i);
    int pathwise;             /* layer 1's dh is layer 2's dl backpropagated */
    int uses_baseline;
    int mean_field;           /* needs the mean-field pass (muprop) */
} sbn_estimator;

struct sbn_ctx {
    sbn_model *m;
    sbn_ws *w;
    sbn_baseline *bl;
    const sbn_estimator *e;
    const float *x;  /* B rows of D_in + D_out: x_in first, then x_out */
    int B, S;
    float tau;
    rng_t *r;
};

const sbn_estimator *sbn_estimator_find(const char *name);
/* The table, terminated by an entry with name NULL. */
const sbn_estimator *sbn_estimator_list(void);

/* One estimate of the gradient of the batch's mean S-sample loss into
 * m->grads (zeroed first); returns that mean loss (for the relaxed
 * estimators, the loss of the relaxed samples).  The samples stay in w. */
double sbn_gradient(sbn_ctx *c);

/* Evaluation workspace for `rows` (example, sample) rows per chunk. */
typedef struct {
    int rows;
    float *xin, *xout, *l1, *q1, *h1, *l2, *q2, *h2, *out;
    int *example;
} sbn_eval_ws;

int sbn_eval_ws_init(sbn_eval_ws *w, const sbn_model *m, int rows, char *err);
void sbn_eval_ws_free(sbn_eval_ws *w);

/* -log (1/M) sum_j p(x_out | h^(j)) with M hard samples per example of the
 * n examples x (rows of D_in + D_out), by a running log-sum-exp in double.
 * Returns the mean over the examples; per_example (n entries) may be NULL. */
double sbn_eval_nll(const sbn_model *m, sbn_eval_ws *w, const float *x, int n, int M,
                    rng_t *r, double *per_example);

/* Pixel means sigmoid(A3 h2) of the lower half for S hard samples of each
 * of the n examples into means (n*S rows of D_out, example-major). */
void sbn_predict(const sbn_model *m, sbn_eval_ws *w, const float *x, int n, int S, rng_t *r,
                 float *means);

#endif
