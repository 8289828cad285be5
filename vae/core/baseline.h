/* baseline.h: NVIL's input-dependent baseline (Mnih & Gregor 2014, Sec.
 * 3.3), C(x) = w2 . tanh(W1 x + b1) + b2: a network of D inputs, H tanh
 * units and one output that predicts a score-function estimator's
 * learning signal from the example's input alone, so that subtracting it
 * leaves the estimator unbiased.  Its user fits it by squared error to
 * the signal it centres (bnet_backward's dout is that error's gradient).
 *
 * Parameters in one flat buffer of bnet_nparams(D, H) floats:
 *   W1 [H][D], b1 [H], w2 [H], b2 [1].
 * The buffer usually lives in a task's persistent state, so that a
 * checkpoint resumes it; the functions keep no state of their own. */
#ifndef GSVAE_BASELINE_H
#define GSVAE_BASELINE_H

#include <stddef.h>

#include "rng.h"

/* H D + H + H + 1. */
size_t bnet_nparams(int D, int H);

/* Glorot-uniform W1 from r; b1, w2 and b2 zero, so that C(x) = 0 until the
 * network has learned something. */
void bnet_init(float *params, int D, int H, rng_t *r);

/* h[B][H] = tanh(W1 x_b + b1) and out[B] = C(x_b) for the rows x[B][D]. */
void bnet_forward(const float *params, const float *x, int B, int D, int H, float *h,
                  float *out);

/* grads[nparams] = d/dparams of sum_b dout[b] C(x_b) (overwritten, not
 * added), at bnet_forward's h and out of the same rows; dh[B][H] scratch. */
void bnet_backward(const float *params, const float *x, const float *h, const float *out,
                   float *dout, int B, int D, int H, float *dh, float *grads);

#endif
