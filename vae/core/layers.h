/* layers.h: forward/backward pairs over plain float arrays.
 *
 * Shapes are in the argument names: B rows (examples), C input features, OC
 * output features; a weight matrix is row-major [OC][C] and a bias [OC].
 * Backward passes ADD into the parameter gradients (dw, db), so several
 * passes through one layer in a step (e.g. the extra decoder passes of some
 * estimators) accumulate; input gradients (din) are overwritten. */
#ifndef GSVAE_LAYERS_H
#define GSVAE_LAYERS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rng.h"

/* Where one linear layer lives in a model's flat parameter buffer (and, at
 * the same offsets, in its twin gradient buffer). */
typedef struct {
    int in, out;   /* C and OC */
    size_t w, b;   /* offsets of the weight [out][in] and the bias [out] */
} linear_layer;

/* Lay a layer of in -> out features out at `offset` (weight, then bias);
 * returns the offset just after it, where the next layer goes. */
size_t linear_place(linear_layer *l, int in, int out, size_t offset);

/* A model's n parameters and their twin gradients, zeroed, in one
 * allocation that *params leads; -1 with err naming `what` on failure
 * (both pointers then NULL).  params_free frees it once and sets both to
 * NULL; it accepts NULL pointers. */
int params_alloc(float **params, float **grads, size_t n, char *err, const char *what);
void params_free(float **params, float **grads);

/* out[B][OC] = in[B][C] w^T + b, then max(0, .) when relu is set. */
void linear_forward(float *out, const float *in, const float *w, const float *b,
                    int B, int C, int OC, int relu);
/* dout is the gradient at the layer's output; when relu was set, out is the
 * layer's (post-ReLU) output and dout is masked in place first.  din may be
 * NULL (first layer). */
void linear_backward(float *din, float *dw, float *db, float *dout, const float *out,
                     const float *in, const float *w, int B, int C, int OC, int relu);

/* The first lines of linear_backward: dout masked where the ReLU's output
 * is 0 (when relu is set), then db += its sum over the rows. */
void linear_backward_bias(float *db, float *dout, const float *out, int B, int OC, int relu);

/* din[B][C] = dout[B][OC] w[OC][C]: the input gradient alone (the third
 * line of linear_backward), for passes whose parameter gradients must not
 * count. */
void linear_backward_input(float *din, const float *dout, const float *w, int B, int C, int OC);

/* An MLP: n linear layers L[0..n-1] with parameters at their offsets in
 * params, the hidden activation after every layer but the last (which stays
 * affine).  outs[i] holds layer i's output, [B][L[i].out]. */
typedef enum { MLP_RELU, MLP_SOFTPLUS } mlp_act;

/* outs[i] = act(L_i(outs[i-1])), outs[-1] being in. */
void mlp_forward(const linear_layer *L, int n, mlp_act act, const float *params,
                 float *const *outs, const float *in, int B);
/* Undoes mlp_forward's layers from the last to the first: dout (clobbered)
 * is the gradient at outs[n-1]; parameter gradients add into grads (laid out
 * like params); din (NULL: not wanted) receives the gradient at in.
 * scratch_a and scratch_b, each [B][widest layer], carry the gradients
 * between layers; dout may be one of them.  Returns the gradient at the
 * first layer's output (its pre-activation's, for a ReLU), one of dout,
 * scratch_a or scratch_b, valid until they are next written. */
float *mlp_backward(const linear_layer *L, int n, mlp_act act, const float *params,
                    float *grads, float *const *outs, const float *in, float *dout, float *din,
                    float *scratch_a, float *scratch_b, int B);

/* Glorot-uniform weights w[OC][C] ~ U(-a, a), a = sqrt(6 / (C + OC)). */
void linear_init_glorot(float *w, int C, int OC, rng_t *r);

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

/* The same KLs to a learned prior p, one for all B rows: for categorical
 * variables p = softmax(eta) per group (logp[N*K] its log_softmax_forward),
 * for Bernoulli units p = sigmoid(eta) per unit (eta[N], the prior's
 * logits).  The uniform prior is the special case eta = 0; the functions
 * above keep its own arithmetic.
 *
 * Backward: dlogits += scale * dKL_b/dlogits per row (dlogits NULL:
 * skipped) and dprior += prior_scale * sum_b dKL_b/deta (dprior NULL:
 * skipped).  Two scales because the two halves go to different places: q's
 * logits to the encoder, eta to the prior's own parameters. */
void kl_categorical_prior_forward(double *kl, const float *logq, const float *logp, int B,
                                  int N, int K);
void kl_categorical_prior_backward(float *dlogits, float *dprior, const float *logq,
                                   const float *logp, int B, int N, int K, float scale,
                                   float prior_scale);
void kl_bernoulli_prior_forward(double *kl, const float *logits, const float *eta, int B, int N);
void kl_bernoulli_prior_backward(float *dlogits, float *dprior, const float *logits,
                                 const float *eta, int B, int N, float scale, float prior_scale);

/* A running log-sum-exp over a stream of values v: after each push,
 * log sum_v e^v = *mx + log(*sum).  Start from *mx = -INFINITY, *sum = 0;
 * the sum is rescaled whenever the maximum moves, so it stays in [1, n]. */
static inline void lse_push(double *mx, double *sum, double v)
{
    if (v > *mx) {
        *sum = *sum * exp(*mx - v) + 1.0;
        *mx = v;
    } else {
        *sum += exp(v - *mx);
    }
}

/* Numerically safe elementwise pieces, written as straight-line float
 * arithmetic (no libm calls, no branches) so that loops over them
 * vectorise.  Accuracy against double precision: a few float ulps
 * (tests/test_fastmath.c). */

/* e^x for x <= 0 (inputs below -87 give 0).  Cody-Waite reduction
 * x = n ln2 + r, |r| <= ln2/2, a degree-6 Taylor polynomial for e^r, and
 * 2^n built in the exponent bits. */
static inline float exp_nonpos(float xin)
{
    /* NaN takes the clamp too, so the integer conversion below stays
     * defined; the return restores it. */
    float x = xin >= -87.0f ? xin : -87.0f;
    /* rint (ties to even) is one instruction; round (ties away) is a call. */
    float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.66666667e-1f + r * (4.16666667e-2f +
                    r * (8.33333333e-3f + r * 1.38888889e-3f)))));
    union { float f; int i; } scale = {.i = ((int)n + 127) << 23};
    return xin >= -87.0f ? p * scale.f : xin < -87.0f ? 0.0f : xin;
}

/* log x for a positive normal double x, to about 1e-11 relative (far below
 * the float the noise samplers round it to): x = 2^e m with m in
 * [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <=
 * 0.172, by its series to s^13.  Exact in m - 1 near 1, so log x keeps its
 * relative precision there.  Zero, subnormal, negative, infinite and NaN
 * inputs are the caller's to exclude (the open uniforms of rng.h and their
 * logs are never such). */
static inline double log_pos(double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    int64_t e = (int64_t)(bits >> 52) - 1023;
    bits = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
    double m;
    memcpy(&m, &bits, sizeof m);
    int big = m > 1.4142135623730951;
    m = big ? 0.5 * m : m;
    e += big;
    double s = (m - 1.0) / (m + 1.0), s2 = s * s;
    double q = 1.0 + s2 * (1.0 / 3 + s2 * (1.0 / 5 + s2 * (1.0 / 7 + s2 * (1.0 / 9 +
               s2 * (1.0 / 11 + s2 * (1.0 / 13))))));
    return (double)e * 0.6931471805599453 + 2.0 * s * q;
}

/* log(1 + e) for e in [0, 1]: 2 atanh(s) with s = e / (2 + e) in [0, 1/3],
 * a series that is exact for small e (no 1 + e rounding). */
static inline float log1p_unit(float e)
{
    float s = e / (2.0f + e), s2 = s * s;
    float q = 1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9 +
              s2 * (1.0f / 11 + s2 * (1.0f / 13 + s2 * (1.0f / 15)))))));
    return 2.0f * s * q;
}

/* log(1 + e^x) = max(x, 0) + log1p(e^-|x|) */
static inline float softplusf_stable(float x)
{
    return (x > 0.0f ? x : 0.0f) + log1p_unit(exp_nonpos(-__builtin_fabsf(x)));
}

/* 1 / (1 + e^-x), from e^-|x| so that nothing overflows. */
static inline float sigmoidf_stable(float x)
{
    float e = exp_nonpos(-__builtin_fabsf(x));
    float inv = 1.0f / (1.0f + e);
    return x >= 0.0f ? inv : e * inv;
}

/* The Bernoulli likelihood's sum over pixels (bce_logits_forward, and the
 * fused kernels of sparse.h): sixteen independent float partial sums, one
 * per vector lane, keep the loop vectorised without reassociating a single
 * sum (which only -ffast-math would allow); the lanes are added in double.
 * Lane j takes the pixels d = j (mod 16) in increasing d: bce_lanes_add
 * adds the block of 16 pixels l[0..16), t[0..16); bce_lanes_total adds the
 * n pixels past the last whole block, then the lanes. */
enum { BCE_LANES = 16 };

static inline void bce_lanes_add(float *restrict lane, const float *restrict l,
                                 const float *restrict t)
{
    for (int j = 0; j < BCE_LANES; j++)
        lane[j] += softplusf_stable(l[j]) - t[j] * l[j];
}

static inline double bce_lanes_total(const float *lane, const float *l, const float *t, int n)
{
    double total = 0.0;
    for (int d = 0; d < n; d++)
        total += softplusf_stable(l[d]) - t[d] * l[d];
    for (int j = 0; j < BCE_LANES; j++)
        total += lane[j];
    return total;
}

#endif
