/* gumbel.h: Gumbel noise, the Gumbel-Softmax (Concrete) relaxation of a
 * categorical sample, its binary analogue for Bernoulli latents, and the
 * straight-through hard sample.  R rows (groups) of K classes, row-major. */
#ifndef GSVAE_GUMBEL_H
#define GSVAE_GUMBEL_H

#include <stddef.h>

#include "rng.h"

/* g = -log(-log u), u ~ U(0,1) open: always finite. */
void gumbel_noise(float *g, size_t n, rng_t *r);
/* l = log u - log(1 - u): the difference of two Gumbels, for binary latents. */
void logistic_noise(float *l, size_t n, rng_t *r);

/* y = softmax((logits + g) / tau) per row, with the max subtracted; g NULL:
 * no noise, the tempered softmax(logits / tau) itself. */
void gumbel_softmax_forward(float *y, const float *logits, const float *g, int R, int K,
                            float tau);
/* dlogits = (1/tau) y (dy - <dy, y>) per row (overwrites). */
void gumbel_softmax_backward(float *dlogits, const float *y, const float *dy, int R, int K,
                             float tau);

/* z = one-hot(argmax y) per row (ties: the first). */
void onehot_argmax(float *z, const float *y, int R, int K);
/* Index of the largest entry of each row. */
void argmax_rows(int *idx, const float *x, int R, int K);

/* Binary Concrete: z = sigmoid((logits + noise) / tau). */
void binary_concrete_forward(float *z, const float *logits, const float *noise, size_t n,
                             float tau);
/* dlogits = dz z (1 - z) / tau (overwrites). */
void binary_concrete_backward(float *dlogits, const float *z, const float *dz, size_t n,
                              float tau);
/* z = 1 where y > 1/2 else 0. */
void threshold_half(float *z, const float *y, size_t n);

#endif
