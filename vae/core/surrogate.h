/* surrogate.h: RELAX's learned surrogate r(z), a scalar function of a code's
 * relaxed pre-activations z (Grathwohl et al. 2018, "Backpropagation
 * through the Void"): logistic (l + logit(u)) for Bernoulli units, Gumbel
 * perturbed logits (l + Gumbel) for categorical variables.
 *
 * r(z; x) = w2 . tanh(W1 s(z) + V x + b1) + b2, per row: Z = stoch_dim
 * code inputs, C context inputs x (the example's image: the control
 * variate may depend on anything but the code's randomness), H tanh units,
 * one output.  The code enters squashed, s(z) = the layer's probabilities
 * at temperature 1 (stoch_probs_forward): sigmoid(z) per Bernoulli unit,
 * softmax(z) per categorical variable, so that the large |z| of a confident
 * unit saturate instead of driving the tanh units, and so that a
 * categorical variable's r, like its relaxation softmax(z / lambda), does
 * not depend on a shift of its K pre-activations.  Parameters in one flat
 * buffer: W1 [H][Z], V [H][C], b1 [H], w2 [H], b2 [1].  Derivatives are
 * with respect to z only (x is held fixed).
 *
 * RELAX needs r's input gradient (its control variate enters the estimate
 * through d r(z) / dz) and, to train r on the variance of that estimate,
 * the gradient with respect to the parameters of a weighted sum of outputs
 * and of directional derivatives v . d r(z) / dz, derived here in closed
 * form (surr_param_grad). */
#ifndef GSVAE_SURROGATE_H
#define GSVAE_SURROGATE_H

#include <stddef.h>

#include "rng.h"
#include "stochastic.h"

/* H Z + H C + H + H + 1, Z = stoch_dim(code). */
size_t surr_nparams(const stoch_layer *code, int C, int H);

/* Glorot-uniform W1 and V (each as if it alone fed the H units) from r;
 * b1, w2 and b2 zero: r = 0 until trained. */
void surr_init(float *params, const stoch_layer *code, int C, int H, rng_t *r);

/* Rows z[B][Z] with contexts x[B][C] (NULL when C is 0) into s[B][Z] =
 * s(z), h[B][H] the tanh units and out[B] = r(z; x). */
void surr_forward(const float *params, const stoch_layer *code, int C, int H, const float *z,
                  const float *x, int B, float *s, float *h, float *out);

/* dz[B][Z] = d r(z_b) / d z_b per row, from surr_forward's s and h;
 * u[B][H] gets w2 (1 - h^2), which surr_param_grad reuses. */
void surr_input_grad(const float *params, const stoch_layer *code, int C, int H, const float *s,
                     const float *h, int B, float *u, float *dz);

/* grads[nparams] += d/dparams of sum_b (alpha[b] r(z_b) + v_b . d r(z_b) / dz_b)
 * at the rows of surr_forward (s, h, with contexts x) and surr_input_grad
 * (u); alpha NULL: no output term; v NULL: no directional term.  Scratch:
 * sv[B][Z], t[B][H], da[B][H].  The rows' z and x are held fixed (only the
 * parameters vary). */
void surr_param_grad(const float *params, const stoch_layer *code, int C, int H, const float *s,
                     const float *x, const float *h, const float *u, const float *alpha,
                     const float *v, int B, float *sv, float *t, float *da, float *grads);

#endif
