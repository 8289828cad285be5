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
 * Estimators: stochastic.h's list up to exact, exact excepted
 * (SBN_ESTIMATORS; ARM and DisARM are VAE-only so far),
 * with the VAE's definitions applied at both stochastic layers:
 *   gumbel, st-gumbel   relaxed samples at both layers
 *   st, annealed-st     hard samples; backward through d mean / d logits
 *   darn                hard samples; the 1/2 estimator at each layer
 *   sf                  score function of both layers with the S-sample loss
 *   muprop              sf minus the Taylor control variate around the
 *                       mean-field pass through both layers (or, with
 *                       sbn_ctx.rollout, the upper layer's around its
 *                       mean given the sampled lower one) */
#ifndef GSVAE_SBN_H
#define GSVAE_SBN_H

#include <stddef.h>

#include "layers.h"
#include "model.h"
#include "rng.h"
#include "stochastic.h"

typedef struct {
    latent_type latent;
    int N, K;         /* per stochastic layer; K is 1 for Bernoulli units */
    int D_in, D_out;  /* conditioning and predicted pixels (392 and 392) */
} sbn_config;

/* Units of one stochastic layer: N*K or N. */
int sbn_zdim(const sbn_config *c);

/* The estimators the SBN runs: those before ARM in the list, but exact. */
#define SBN_ESTIMATORS (STOCH_CLASSIC_ESTIMATORS & ~(1u << STOCH_EXACT))

enum { SBN_A1, SBN_A2, SBN_A3, SBN_NLAYERS };

typedef struct {
    sbn_config cfg;
    linear_layer lay[SBN_NLAYERS];
    size_t nparams;
    float *params, *grads;
} sbn_model;

/* Glorot-uniform weights and zero biases from r. */
int sbn_init(sbn_model *m, const sbn_config *c, rng_t *r, char *err);
void sbn_free(sbn_model *m);

/* Training workspace for up to max_batch examples of max_samples rows: the
 * activations of both stochastic layers, the output map and the mean-field
 * pass, in one block laid out by sbn_model.c. */
typedef struct sbn_scratch sbn_scratch;
typedef struct {
    int max_batch, max_samples;
    sbn_scratch *ws;  /* the one block: scratch layout at its head, then the buffers */
} sbn_ws;

/* -1 with err on failure (w then holds no buffer).  sbn_ws_free frees the
 * block once and empties w; it accepts a failed or zeroed w. */
int sbn_ws_init(sbn_ws *w, const sbn_model *m, int max_batch, int max_samples, char *err);
void sbn_ws_free(sbn_ws *w);
/* The noise of stochastic layer i's (0 or 1) last relaxed samples, B*S
 * rows of sbn_zdim; for tests that rebuild a draw. */
const float *sbn_ws_noise(const sbn_ws *w, int i);

/* Learning-signal centring of sf and muprop (centre set): NVIL's, as the
 * VAE's, by stoch_nvil_centre on each stochastic layer's signal with that
 * layer's running statistics.  frozen: use them without updating them. */
typedef struct {
    int centre, var_norm, frozen;
    stoch_nvil stat[2];  /* the running mean and variance per layer */
    /* The divisor of this step's signal per layer, 1 / max(1, sqrt(v)) (1
     * without var_norm); MuProp's analytic term is divided by it too, so
     * that the normalisation rescales the layer's whole gradient (unless
     * sbn_ctx.norm_signal). */
    double scale[2];
} sbn_baseline;

/* NVIL's input-dependent baseline of sf and muprop (--baseline learned;
 * Mnih & Gregor 2014, Sec. 3.3): per stochastic layer i a network C_i of
 * the example's upper half x_in (baseline.h, SBN_BASELINE_HIDDEN tanh
 * units), subtracted from layer i's signal before sbn_baseline's running
 * centring and fitted to the signal it leaves (less the running mean) by
 * squared error, one Adam step of rate lr per training step unless the
 * sbn_baseline is frozen.  C_i depends on neither layer's samples, so the
 * estimator stays unbiased.  Its state, sbn_learned_floats floats, is
 * per layer [params n][Adam's m n][v n][steps 1], n = bnet_nparams(D_in,
 * H): a task keeps it in its persistent state, so that a checkpoint
 * resumes it. */
#define SBN_BASELINE_HIDDEN 100
typedef struct {
    int H;         /* tanh units of each network */
    float lr;      /* Adam's rate */
    float *state;  /* sbn_learned_floats floats, not owned */
} sbn_learned;

size_t sbn_learned_floats(const sbn_config *c);
/* lb over state (sbn_learned_floats floats): each network's first layer
 * Glorot-uniform from r, the rest and Adam's state zero. */
void sbn_learned_init(sbn_learned *lb, const sbn_config *c, float *state, float lr, rng_t *r);

typedef struct sbn_ctx sbn_ctx;

typedef enum { SBN_SAMPLE_HARD, SBN_SAMPLE_RELAXED, SBN_SAMPLE_ST_RELAXED } sbn_sample_mode;

typedef struct {
    stoch_estimator id;       /* its name and help: stoch_estimator_name, _help */
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
    sbn_learned *lb;  /* NULL: no input-dependent baseline */
    /* muprop only: 1 expands the upper layer's signal around its mean
     * given the sampled lower layer, mu_2(h1), instead of the mean-field
     * point mu_2(mu_1(x)) (Gu et al. 2016's "MuProp with rollout", Fig.
     * 1): the control variate then follows each draw of h1.  Unbiased
     * either way; the lower layer's expansion is the same in both. */
    int rollout;
    /* muprop only: 1 divides the residual's score term alone by the
     * signal's variance normalisation and leaves the analytic term at full
     * size (biased: the two parts of the estimate no longer add up to the
     * gradient's direction); 0 divides both, the unbiased estimator's
     * gradient scaled.  Without normalisation the two agree. */
    int norm_signal;
};

/* The implementation of estimator id; NULL when SBN_ESTIMATORS lacks it
 * (stoch_estimator_check words the refusal). */
const sbn_estimator *sbn_estimator_get(stoch_estimator id);
/* sbn_estimator_get of the estimator named `name`; NULL if unknown or
 * unsupported. */
const sbn_estimator *sbn_estimator_find(const char *name);
/* The table in the list's order, terminated by an entry with
 * layer_backward NULL. */
const sbn_estimator *sbn_estimator_list(void);

/* One estimate of the gradient of the batch's mean S-sample loss into
 * m->grads (zeroed first); returns that mean loss (for the relaxed
 * estimators, the loss of the relaxed samples).  The samples stay in w. */
double sbn_gradient(sbn_ctx *c);

/* Evaluation workspace for `rows` (example, sample) rows per chunk, its
 * buffers in one block laid out by sbn_model.c. */
typedef struct sbn_eval_scratch sbn_eval_scratch;
typedef struct {
    int rows;
    sbn_eval_scratch *ws;
} sbn_eval_ws;

/* -1 with err on failure (w then holds no buffer); sbn_eval_ws_free frees
 * the block once and accepts a failed or zeroed w. */
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
