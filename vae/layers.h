/* layers.h: forward/backward pairs over plain float arrays.
 *
 * Shapes are in the argument names: B rows (examples), C input features, OC
 * output features; a weight matrix is row-major [OC][C] and a bias [OC].
 * Backward passes ADD into the parameter gradients (dw, db), so several
 * passes through one layer in a step (e.g. the extra decoder passes of some
 * estimators) accumulate; input gradients (din) are overwritten. */
#ifndef GSVAE_LAYERS_H
#define GSVAE_LAYERS_H

/* out[B][OC] = in[B][C] w^T + b, then max(0, .) when relu is set. */
void linear_forward(float *out, const float *in, const float *w, const float *b,
                    int B, int C, int OC, int relu);
/* dout is the gradient at the layer's output; when relu was set, out is the
 * layer's (post-ReLU) output and dout is masked in place first.  din may be
 * NULL (first layer). */
void linear_backward(float *din, float *dw, float *db, float *dout, const float *out,
                     const float *in, const float *w, int B, int C, int OC, int relu);

/* Bernoulli likelihood from logits: loss[b] = sum_d softplus(l) - x l, the
 * cross-entropy in nats; accumulated in double. */
void bce_logits_forward(double *loss, const float *logits, const float *x, int B, int D);
/* dlogits = scale * (sigmoid(l) - x). */
void bce_logits_backward(float *dlogits, const float *logits, const float *x, int B, int D,
                         float scale);

/* Row-wise log-softmax over groups of K: R = B*N groups. */
void log_softmax_forward(float *logq, const float *logits, int R, int K);

/* KL(q || uniform over K) per example, q = softmax(logits) over N groups of
 * K; logq from log_softmax_forward. */
void kl_categorical_forward(double *kl, const float *logq, int B, int N, int K);
/* dlogits += scale * dKL/dlogits. */
void kl_categorical_backward(float *dlogits, const float *logq, int B, int N, int K,
                             float scale);

/* KL(Bernoulli(sigmoid(l)) || Bernoulli(1/2)) summed over N units. */
void kl_bernoulli_forward(double *kl, const float *logits, int B, int N);
void kl_bernoulli_backward(float *dlogits, const float *logits, int B, int N, float scale);

/* Numerically safe elementwise pieces. */
float softplusf_stable(float x);
float sigmoidf_stable(float x);

#endif
