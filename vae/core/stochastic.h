/* stochastic.h: the stochastic layer that the three models share, and the
 * one list of gradient estimators.
 *
 * A layer is N categorical variables of K classes each (one-hot, N*K units
 * per row) or N Bernoulli units (K = 1), over R rows (examples, or
 * (example, sample) pairs), row-major.  From the layer's logits l:
 *
 *   probabilities   p = softmax(l / tau) per variable, sigmoid(l / tau) per
 *                   unit; at tau = 1 the layer's mean.  Their backward is
 *                   J^T v = (1/tau) p (v - <v, p>) or (1/tau) p (1 - p) v.
 *   relaxed sample  y = the probabilities of l + noise at tau: Gumbel-Softmax
 *                   (Concrete) with Gumbel noise, Binary Concrete with
 *                   logistic noise (Jang et al. 2017; Maddison et al. 2017).
 *                   Its backward is the probabilities' backward at y.
 *   hard sample     a true draw of the layer: one-hot per variable, a bit
 *                   per unit; also the argmax (threshold) of a relaxed one.
 *   score terms     d log q(z)/dl = z - p weighted by a learning signal, the
 *                   DARN signal, and NVIL's centring of a signal.
 *
 * Every function takes the layer's shape first; none allocates. */
#ifndef GSVAE_STOCHASTIC_H
#define GSVAE_STOCHASTIC_H

#include <stddef.h>

#include "rng.h"

typedef enum { LATENT_CATEGORICAL, LATENT_BERNOULLI } latent_type;

/* "categorical" or "bernoulli" into *out; -1 (out untouched) otherwise. */
int stoch_latent_parse(const char *s, latent_type *out);
/* The name stoch_latent_parse reads. */
const char *stoch_latent_name(latent_type t);

typedef struct {
    latent_type type;
    int N;  /* variables (categorical) or units (Bernoulli) per row */
    int K;  /* classes per variable; 1 for Bernoulli units */
} stoch_layer;

/* Units of one row: N*K (categorical) or N (Bernoulli). */
int stoch_dim(const stoch_layer *s);

/* ---- probabilities ---- */

/* p = softmax(l / tau) per variable (the max subtracted) or
 * sigmoid(l * (1/tau)) per unit, for R rows.  tau > 0; a NaN logit gives NaN
 * probabilities in its variable (its unit). */
void stoch_probs_forward(const stoch_layer *s, float *p, const float *logits, int R,
                         float tau);
/* dlogits = J^T dp (overwrites), J the Jacobian of stoch_probs_forward at
 * temperature tau and p its output.  Since a relaxed sample is the
 * probabilities of logits + noise, this is also the relaxed sample's
 * backward with p = y.  dlogits may be dp. */
void stoch_probs_backward(const stoch_layer *s, float *dlogits, const float *p, const float *dp,
                          int R, float tau);

/* ---- relaxed samples ---- */

/* The noise of a relaxed sample: Gumbel per class (categorical), logistic
 * per unit (Bernoulli), R rows of stoch_dim; always finite. */
void stoch_noise(const stoch_layer *s, float *noise, int R, rng_t *r);
/* y = the probabilities of logits + noise at tau (Gumbel-Softmax, Binary
 * Concrete), noise from stoch_noise or fixed by the caller.  Its backward:
 * stoch_probs_backward at p = y. */
void stoch_relaxed_forward(const stoch_layer *s, float *y, const float *logits,
                           const float *noise, int R, float tau);
/* stoch_noise into noise, then stoch_relaxed_forward into y. */
void stoch_relaxed_sample(const stoch_layer *s, float *y, float *noise, const float *logits,
                          int R, float tau, rng_t *r);

/* d loss / d log tau of a relaxed sample y = probs((logits + noise) / tau),
 * given dlogits = its backward (stoch_probs_backward at p = y, tau) of the
 * loss's gradient at y: y depends on l and tau through (l + noise) / tau,
 * so d/d log tau = -(l + noise) . dlogits over the R rows (in double). */
double stoch_relaxed_dlog_tau(const stoch_layer *s, const float *logits, const float *noise,
                              const float *dlogits, int R);

/* log p(y) - log q(y) of one row's relaxed sample y = probs((l + noise) /
 * tau), q the Concrete (Binary Concrete) law with logits l and p the one
 * with logits eta (prior; NULL: 0, the uniform prior's), both at tau
 * (Maddison et al. 2017, Eq. 9 and its binary form): the temperature and
 * the Jacobian of the map from the noise cancel, leaving, with
 * d = eta - l, per unit -softplus(-(L - d)) - softplus(L - d) +
 * softplus(-L) + softplus(L) (L the logistic noise), per variable
 * sum_k d_k - K lse(d - g) + K lse(-g) (g the Gumbel noise).  It depends
 * on l and eta only through eta - l, so d/deta = -d/dl; d/dl into dl (one
 * row of stoch_dim). */
double stoch_relaxed_log_ratio(const stoch_layer *s, const float *logits, const float *eta,
                               const float *noise, float *dl);

/* ---- hard samples ---- */

/* z = the one-hot argmax of each variable of y (ties: the first class), or
 * y > 1/2 per unit.  For a relaxed sample y this is a true sample of the
 * layer (the Gumbel-Max trick; the sign of l + logistic noise). */
void stoch_hard_from_relaxed(const stoch_layer *s, float *z, const float *y, int R);
/* A true sample z from the logits: Gumbel-Max per variable (K Gumbel draws
 * into noise, R rows of stoch_dim, left holding logits + noise), or one
 * uniform per unit, z = u < sigmoid(l).  noise is not touched for
 * Bernoulli units. */
void stoch_sample_logits(const stoch_layer *s, float *z, const float *logits, float *noise,
                         int R, rng_t *r);
/* A true sample z from the probabilities p (stoch_probs_forward at tau 1):
 * one uniform per variable through the cumulative sum (the same law as
 * Gumbel-Max with one draw instead of K; rounding never picks a class of
 * probability 0), or u < p per unit.  A NaN probability gives a NaN sample
 * (in its whole variable), so that a diverged layer reaches the loss. */
void stoch_sample_probs(const stoch_layer *s, float *z, const float *p, int R, rng_t *r);
/* What stoch_sample_index reads of R rows of probabilities p, computed
 * once for the many draws of one row: each categorical variable's running
 * sums p[0], p[0] + p[1], ... in the order stoch_sample_probs adds them,
 * the last its total (cum[R][zdim]); a Bernoulli layer's are p itself. */
void stoch_index_cum(const stoch_layer *s, float *cum, const float *p, int R);
/* The same draw as stoch_sample_probs for one row (the same uniforms, in
 * the same order), written as the units that are 1: their indices into
 * idx (categorical: N of them, variable i's class k as i*K + k, in
 * increasing i; Bernoulli: the units that are on, increasing), their
 * count returned.  p: the row's probabilities; cum: its stoch_index_cum.
 * A product with z is then a sum over idx (linear_gather_forward).
 * Returns -1 for a NaN probability of a categorical variable; a NaN
 * Bernoulli probability leaves its unit off. */
int stoch_sample_index(const stoch_layer *s, int *idx, const float *p, const float *cum,
                       rng_t *r);
/* log q(z) of one row's hard sample z, in double: the sum of logq over the
 * chosen classes (logq the log-softmax of the logits; logits unused), or
 * per unit -softplus(-l) for a 1 and -softplus(l) for a 0 (logq unused). */
double stoch_log_prob(const stoch_layer *s, const float *logits, const float *logq,
                      const float *z);

/* ---- the score-function family ---- */

/* dlogits += (u[r / S] / B) (z - p) on every row r < R: the score
 * d log q(z)/dl = z - p of the hard sample z with probabilities p,
 * weighted by the learning signal u of the row's example (S rows per
 * example) for a mean over B examples. */
void stoch_score_add(const stoch_layer *s, float *dlogits, const float *z, const float *p,
                     const double *u, int R, int S, int B);
/* dlogits[g] += scale * sum_{j < S} u[g S + j] (z[g S + j] - p[g]) for
 * G groups of S rows each: the scores of S hard samples z that share the
 * probabilities p of their group (one row of p per group), each weighted
 * by its own signal u (a multi-sample bound's K samples per example, or a
 * prior's B samples with G = 1). */
void stoch_score_sum(const stoch_layer *s, float *dlogits, const float *z, const float *p,
                     const double *u, int G, int S, double scale);
/* DARN (Gregor et al. 2014) at a hard sample z with probabilities p, from
 * dz, the loss's gradient at z: per unit dz (z - 1/2) (z - p), per variable
 * <dz, z - zbar> (z - p) (overwrites dlogits), zbar the expansion point of
 * every categorical entry: 1/K, the simplex's centre (STOCH_DARN_CENTRE),
 * or another value such as 1/2, the Bernoulli unit's point taken entry by
 * entry.  Exact for a quadratic loss, biased otherwise; for K = 2 and the
 * centre the categorical form is the Bernoulli one. */
#define STOCH_DARN_CENTRE (-1.0f)
void stoch_darn_backward(const stoch_layer *s, float *dlogits, const float *z, const float *p,
                         const float *dz, int R, float zbar);

/* ---- antithetic pairs of Bernoulli units (ARM, DisARM) ---- */

/* One uniform u per unit (R rows of N units, into u) and the antithetic
 * pair it gives: b = 1[u < p] and bt = 1[1 - u < p], both true samples of
 * the units with probabilities p (a NaN p gives NaN bits).  Bernoulli
 * layers only. */
void stoch_antithetic_pair(const stoch_layer *s, float *b, float *bt, float *u, const float *p,
                           int R, rng_t *r);
/* ARM (Yin & Zhou 2019, Theorem 1 and its multivariate form): with
 * df[r] = f(b) - f(bt) of row r's pair, dlogits = scale * df (1/2 - u) per
 * unit, i.e. (f(1[u > sigmoid(-l)]) - f(1[u < sigmoid(l)])) (u - 1/2)
 * (overwrites).  Unbiased for d E[f] / dl. */
void stoch_arm_backward(const stoch_layer *s, float *dlogits, const float *u, const double *df,
                        int R, float scale);
/* DisARM (Dong, Mnih & Tucker 2020, the DisARM estimator and its
 * multivariate form): ARM with u integrated out given the pair,
 * dlogits = scale * df / 2 * (-1)^bt 1[b != bt] sigmoid(|l|) per unit,
 * sigmoid(|l|) = max(p, 1 - p), df[r] = f(b) - f(bt) (overwrites).
 * Unbiased, with variance at most ARM's. */
void stoch_disarm_backward(const stoch_layer *s, float *dlogits, const float *b, const float *bt,
                           const float *p, const double *df, int R, float scale);

/* REBAR's conditional relaxed sample (Tucker et al. 2017, Sec. 3 and App.
 * A): given a hard sample b of the layer with logits l and fresh uniforms
 * v (one per unit), zt, a draw of the relaxed pre-activation z given that
 * its hard value H(z) is b, reparameterised through l with v and b fixed.
 *
 * Bernoulli units, z = l + logit(u): zt = l + logit(u') with u' = 1 -
 * p (1 - v) for a 1 and u' = v (1 - p) for a 0 (p = sigmoid(l)).
 *
 * Categorical variables, z = l + Gumbel noise and b its one-hot argmax k:
 * with e_i = -log v_i, theta = softmax(l) and Z = log sum exp(l), the
 * chosen class's zt_k = Z - log e_k (the maximum of the K perturbed
 * logits is Gumbel at Z, whichever class wins) and each other class's
 * zt_i = -log(e_i / exp(l_i) + e_k / exp(Z)), a Gumbel at l_i truncated
 * below zt_k (the paper's -log(-log v_i / theta_i - log v_k), shifted by
 * Z so that zt is a draw of l + Gumbel itself, not of log theta + Gumbel).
 *
 * dzt holds the Jacobian d zt / dl in a form per unit: Bernoulli, its
 * diagonal 1 + u'_l / (u' (1 - u')), u'_l = -(1 - v) p (1 - p) or
 * -v p (1 - p) (the whole Jacobian); categorical, a_i in [0, 1) with
 * d zt_i / dl_j = a_i [i = j] + (1 - a_i) theta_j per variable, a_i =
 * (e_i / theta_i) / (e_i / theta_i + e_k) and a_k = 0.  Products with it:
 * stoch_rebar_conditional_backward and _tangent. */
void stoch_rebar_conditional(const stoch_layer *s, float *zt, float *dzt, const float *b,
                             const float *logits, const float *v, int R);
/* dlogits = J^T dzt_grad, J = d zt / dl of stoch_rebar_conditional from
 * its dzt and the probabilities p = stoch_probs_forward(l) at tau 1 (unused
 * for Bernoulli units): per unit dzt dzt_grad (Bernoulli), per variable
 * a_j g_j + p_j sum_i (1 - a_i) g_i.  dlogits may be dzt_grad. */
void stoch_rebar_conditional_backward(const stoch_layer *s, float *dlogits, const float *dzt,
                                      const float *p, const float *dzt_grad, int R);
/* tzt = J tl, the change of zt along a change tl of the logits (J as
 * above): dzt tl per unit, a_i tl_i + (1 - a_i) <p, tl> per variable.
 * tzt may be tl. */
void stoch_rebar_conditional_tangent(const stoch_layer *s, float *tzt, const float *dzt,
                                     const float *p, const float *tl, int R);

/* NVIL's centring of a learning signal (Mnih & Gregor 2014, Sec. 3.3): the
 * running mean and variance of the signal's batch mean and variance, as
 * exponential moving averages with alpha = STOCH_NVIL_DECAY. */
#define STOCH_NVIL_DECAY 0.8
typedef struct {
    double mean, var;  /* the moving averages */
    int seen;          /* 1 once they hold a batch's statistics */
} stoch_nvil;

/* The centre the next batch gets: the running mean, 0 before any batch. */
double stoch_nvil_offset(const stoch_nvil *s);
/* Centres u[0..B) in place: (u - c) * scale, c = stoch_nvil_offset and
 * scale = 1 / max(1, sqrt(v)) with var_norm (1 without it, or before any
 * batch).  c and v come from earlier batches only and are updated after use
 * (NVIL's Algorithm 1 folds the current batch in first), so the centring
 * never depends on the sample it centres and an unbiased estimator stays
 * unbiased; the very first batch is left uncentred.  frozen: use the
 * statistics without updating them.  Returns scale, by which a caller
 * divides the rest of the layer's gradient too.  B >= 1. */
double stoch_nvil_centre(stoch_nvil *s, double *u, int B, int var_norm, int frozen);

/* ---- the one list of estimators ---- */

/* Every gradient estimator any model runs, in the order --help lists them.
 * A model says which it supports (a mask of 1u << id) and maps each to its
 * implementation. */
typedef enum {
    STOCH_GUMBEL,
    STOCH_ST_GUMBEL,
    STOCH_SF,
    STOCH_DARN,
    STOCH_MUPROP,
    STOCH_ST,
    STOCH_ANNEALED_ST,
    STOCH_EXACT,
    STOCH_ARM,
    STOCH_DISARM,
    STOCH_VIMCO,
    STOCH_REBAR,
    STOCH_RELAX,
    STOCH_NESTIMATORS
} stoch_estimator;

#define STOCH_ALL_ESTIMATORS ((1u << STOCH_NESTIMATORS) - 1)
/* The estimators of the list before ARM and DisARM (every latent type). */
#define STOCH_CLASSIC_ESTIMATORS ((1u << STOCH_ARM) - 1)

/* The --estimator name into *out; -1 (out untouched) if unknown. */
int stoch_estimator_parse(const char *name, stoch_estimator *out);
/* Its name and its one line of --help; e must be a listed estimator. */
const char *stoch_estimator_name(stoch_estimator e);
const char *stoch_estimator_help(stoch_estimator e);
/* Whether estimator e runs on latents of type t (ARM and DisARM are
 * defined for Bernoulli units only). */
int stoch_estimator_defined(stoch_estimator e, latent_type t);
/* 0 when e is defined for latents of type t and in `supported` (what the
 * task implements); else -1 and one line into err naming the flag, e.g.
 * "--estimator 'arm': for Bernoulli latents only, not categorical
 * ones" or "--estimator 'exact': not implemented for the sbn task (gumbel,
 * st-gumbel, sf, darn, muprop, st, annealed-st)". */
int stoch_estimator_check(stoch_estimator e, unsigned supported, const char *task,
                          latent_type t, char *err);

#endif
