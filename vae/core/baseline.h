/* baseline.h: NVIL's input-dependent baseline (Mnih & Gregor 2014, Sec.
 * 3.3), C(x) = w2 . tanh(W1 x + b1) + b2: a network of D inputs, H tanh
 * units and one output that predicts a score-function estimator's
 * learning signal from the example's input alone, so that subtracting it
 * leaves the estimator unbiased.  Its user fits it by squared error to
 * the signal it centres (bnet_fit).
 *
 * Parameters in one flat buffer of bnet_nparams(D, H) floats:
 *   W1 [H][D], b1 [H], w2 [H], b2 [1].
 * The buffer usually lives in a task's persistent state, so that a
 * checkpoint resumes it; the functions keep no state of their own. */
#ifndef GSVAE_BASELINE_H
#define GSVAE_BASELINE_H

#include <stddef.h>

#include "adam.h"
#include "rng.h"

/* H D + H + H + 1. */
size_t bnet_nparams(int D, int H);

/* Glorot-uniform W1 from r; b1, w2 and b2 zero, so that C(x) = 0 until the
 * network has learned something. */
void bnet_init(float *params, int D, int H, rng_t *r);

/* The scratch of one batch of B rows: h[B][H] the tanh units, out[B] =
 * C(x_b), and for bnet_fit dh[B][H], dout[B] and grads[bnet_nparams]. */
typedef struct {
    float *h, *dh;
    float *out, *dout;
    float *grads;
} bnet_ws;

/* ws->h and ws->out for the rows x[B][D]. */
void bnet_forward(const float *params, const float *x, int B, int D, int H, bnet_ws *ws);

/* One Adam step (a over params, its step count in *steps, rate lr) on
 * (1/2B) sum_b (C(x_b) - (f_b - offset))^2, the fit to the signal f less
 * the running mean offset, given u[b] = f_b - C(x_b) (the signal once
 * bnet_forward's out of the same rows is subtracted): the residual is
 * offset - u_b. */
void bnet_fit(float *params, adam_state *a, float *steps, float lr, const float *x,
              const double *u, double offset, int B, int D, int H, bnet_ws *ws);

#endif
