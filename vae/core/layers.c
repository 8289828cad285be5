#include "layers.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"
#include "util.h"

size_t linear_place(linear_layer *l, int in, int out, size_t offset)
{
    l->in = in;
    l->out = out;
    l->w = offset;
    l->b = offset + (size_t)in * out;
    return l->b + (size_t)out;
}

int params_alloc(float **params, float **grads, size_t n, char *err, const char *what)
{
    *params = *grads = NULL;
    ws_buf bufs[] = {WS_BUF(*params, n), WS_BUF(*grads, n)};
    void *block = ws_alloc(bufs, WS_COUNT(bufs), NULL, 0, err, what);
    assert(!block || block == (void *)*params);
    return block ? 0 : -1;
}

void params_free(float **params, float **grads)
{
    free(*params); /* the block */
    *params = *grads = NULL;
}

void linear_forward(float *out, const float *in, const float *w, const float *b,
                    int B, int C, int OC, int relu)
{
    /* Broadcast the bias into out, then let sgemm add the product (beta = 1):
     * one pass over out instead of two. */
    for (int r = 0; r < B; r++)
        memcpy(out + (size_t)r * OC, b, sizeof(float) * OC);
    par_sgemm(0, 1, B, OC, C, 1.0f, in, C, w, C, 1.0f,
                out, OC);
    if (relu) {
        size_t n = (size_t)B * OC;
        /* Written so that a NaN passes through: a ReLU must not hide a
         * diverged layer from the NaN check of the training loop. */
        for (size_t i = 0; i < n; i++)
            out[i] = out[i] < 0.0f ? 0.0f : out[i];
    }
}

void linear_backward(float *din, float *dw, float *db, float *dout, const float *out,
                     const float *in, const float *w, int B, int C, int OC, int relu)
{
    linear_backward_bias(db, dout, out, B, OC, relu);
    /* dw[OC][C] += dout^T[OC][B] in[B][C] */
    par_sgemm(1, 0, OC, C, B, 1.0f, dout, OC, in, C, 1.0f,
                dw, C);
    if (din)
        linear_backward_input(din, dout, w, B, C, OC);
}

void linear_backward_bias(float *db, float *dout, const float *out, int B, int OC, int relu)
{
    if (relu) {
        size_t n = (size_t)B * OC;
        for (size_t i = 0; i < n; i++)
            if (!(out[i] > 0.0f))
                dout[i] = 0.0f;
    }
    for (int r = 0; r < B; r++) {
        const float *g = dout + (size_t)r * OC;
        for (int o = 0; o < OC; o++)
            db[o] += g[o];
    }
}

void linear_backward_input(float *din, const float *dout, const float *w, int B, int C, int OC)
{
    par_sgemm(0, 0, B, C, OC, 1.0f, dout, OC, w, C, 0.0f,
                din, C);
}

static void softplus_inplace(float *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h[i] = softplusf_stable(h[i]);
}

/* d *= softplus'(a) = sigmoid(a) = 1 - e^{-h}, from the output h =
 * softplus(a) >= 0, so the pre-activations need not be kept. */
static void softplus_backward_inplace(float *d, const float *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] *= 1.0f - exp_nonpos(-h[i]);
}

void mlp_forward(const linear_layer *L, int n, mlp_act act, const float *params,
                 float *const *outs, const float *in, int B)
{
    for (int i = 0; i < n; i++) {
        int hidden = i < n - 1;
        linear_forward(outs[i], i ? outs[i - 1] : in, params + L[i].w, params + L[i].b, B,
                       L[i].in, L[i].out, hidden && act == MLP_RELU);
        if (hidden && act == MLP_SOFTPLUS)
            softplus_inplace(outs[i], (size_t)B * L[i].out);
    }
}

float *mlp_backward(const linear_layer *L, int n, mlp_act act, const float *params,
                    float *grads, float *const *outs, const float *in, float *dout, float *din,
                    float *scratch_a, float *scratch_b, int B)
{
    assert(n >= 1 && scratch_a != scratch_b);
    for (int i = n - 1;; i--) {
        int hidden = i < n - 1;
        /* Undoes the softplus_inplace of mlp_forward's layer i. */
        if (hidden && act == MLP_SOFTPLUS)
            softplus_backward_inplace(dout, outs[i], (size_t)B * L[i].out);
        float *dnext = i ? (dout == scratch_a ? scratch_b : scratch_a) : din;
        /* Undoes layer i's linear_forward (and its ReLU). */
        linear_backward(dnext, grads + L[i].w, grads + L[i].b, dout, outs[i],
                        i ? outs[i - 1] : in, params + L[i].w, B, L[i].in, L[i].out,
                        hidden && act == MLP_RELU);
        if (i == 0)
            return dout;
        dout = dnext;
    }
}

void linear_init_glorot(float *w, int C, int OC, rng_t *r)
{
    float limit = sqrtf(6.0f / (float)(C + OC));
    for (size_t j = 0; j < (size_t)C * OC; j++)
        w[j] = limit * (2.0f * rng_uniformf_open(r) - 1.0f);
}

void bce_logits_forward(double *loss, const float *logits, const float *x, int B, int D)
{
    for (int r = 0; r < B; r++) {
        const float *l = logits + (size_t)r * D, *t = x + (size_t)r * D;
        float lane[BCE_LANES] = {0};
        int d = 0;
        for (; d + BCE_LANES <= D; d += BCE_LANES)
            bce_lanes_add(lane, l + d, t + d);
        loss[r] = bce_lanes_total(lane, l + d, t + d, D - d);
    }
}

void bce_logits_backward(float *dlogits, const float *logits, const float *x, int B, int D,
                         float scale)
{
    size_t n = (size_t)B * D;
    for (size_t i = 0; i < n; i++)
        dlogits[i] = scale * (sigmoidf_stable(logits[i]) - x[i]);
}

void log_softmax_forward(float *logq, const float *logits, int R, int K)
{
    for (int r = 0; r < R; r++) {
        const float *l = logits + (size_t)r * K;
        float *o = logq + (size_t)r * K;
        float m = l[0];
        for (int k = 1; k < K; k++)
            m = fmaxf(m, l[k]);
        float s = 0.0f;
        for (int k = 0; k < K; k++)
            s += exp_nonpos(l[k] - m);
        float log_s = logf(s);
        for (int k = 0; k < K; k++)
            o[k] = (l[k] - m) - log_s; /* m + log_s would round to the ulp of m */
    }
}

void kl_categorical_forward(double *kl, const float *logq, int B, int N, int K)
{
    double logK = log((double)K);
    for (int b = 0; b < B; b++) {
        const float *lq = logq + (size_t)b * N * K;
        double total = 0.0;
        for (int i = 0; i < N * K; i++)
            total += exp((double)lq[i]) * ((double)lq[i] + logK);
        kl[b] = total;
    }
}

/* The backward passes and log_softmax_forward take their exponentials of
 * log-probabilities (all <= 0) from exp_nonpos (layers.h), which the
 * compiler inlines and vectorises, where expf is a call per element; the
 * forward KLs keep double exp. */
void kl_categorical_backward(float *dlogits, const float *logq, int B, int N, int K,
                             float scale)
{
    /* d/dl_j sum_k q_k (log q_k + log K) = q_j (log q_j + log K - KL_group) */
    float logK = logf((float)K);
    for (int g = 0; g < B * N; g++) {
        const float *lq = logq + (size_t)g * K;
        float *d = dlogits + (size_t)g * K;
        float klg = 0.0f;
        for (int k = 0; k < K; k++)
            klg += exp_nonpos(lq[k]) * (lq[k] + logK);
        for (int k = 0; k < K; k++)
            d[k] += scale * exp_nonpos(lq[k]) * (lq[k] + logK - klg);
    }
}

/* The Bernoulli KL of each row of N units against the prior sigmoid(eta)
 * per unit, or against 1/2 when eta is NULL; every log from a softplus:
 * log s(x) = -softplus(-x), log(1 - s(x)) = -softplus(x).  The terms of a
 * block of units first (a loop the compiler vectorises), then their sum
 * in unit order (a chain it may not reorder): the same figure as one loop
 * doing both, faster. */
static void kl_bernoulli_rows(double *kl, const float *logits, const float *eta, int B, int N)
{
    enum { KB = 64 };
    for (int b = 0; b < B; b++) {
        const float *l = logits + (size_t)b * N;
        double total = 0.0;
        for (int i0 = 0; i0 < N; i0 += KB) {
            int n = N - i0 < KB ? N - i0 : KB;
            double term[KB];
            /* Two loops, not a branch in one: each vectorises. */
            if (eta)
                for (int j = 0; j < n; j++) {
                    float li = l[i0 + j], ei = eta[i0 + j];
                    double q = sigmoidf_stable(li);
                    double logq = -(double)softplusf_stable(-li);
                    double log1mq = -(double)softplusf_stable(li);
                    double logp = -(double)softplusf_stable(-ei);
                    double log1mp = -(double)softplusf_stable(ei);
                    term[j] = q * (logq - logp) + (1.0 - q) * (log1mq - log1mp);
                }
            else
                for (int j = 0; j < n; j++) {
                    float li = l[i0 + j];
                    double q = sigmoidf_stable(li);
                    double logq = -(double)softplusf_stable(-li);
                    double log1mq = -(double)softplusf_stable(li);
                    term[j] = q * logq + (1.0 - q) * log1mq + 0.6931471805599453;
                }
            for (int j = 0; j < n; j++)
                total += term[j];
        }
        kl[b] = total;
    }
}

void kl_bernoulli_forward(double *kl, const float *logits, int B, int N)
{
    /* q log q + (1-q) log(1-q) + log 2 */
    kl_bernoulli_rows(kl, logits, NULL, B, N);
}

void kl_bernoulli_backward(float *dlogits, const float *logits, int B, int N, float scale)
{
    /* dKL/dl = q (1-q) (log q - log(1-q)) = q (1-q) l */
    size_t n = (size_t)B * N;
    for (size_t i = 0; i < n; i++) {
        float q = sigmoidf_stable(logits[i]);
        dlogits[i] += scale * q * (1.0f - q) * logits[i];
    }
}

void kl_categorical_prior_forward(double *kl, const float *logq, const float *logp, int B,
                                  int N, int K)
{
    /* KL_b = sum over the b's N groups of sum_k q_k (log q_k - log p_k) */
    for (int b = 0; b < B; b++) {
        const float *lq = logq + (size_t)b * N * K;
        double total = 0.0;
        for (int i = 0; i < N * K; i++)
            total += exp((double)lq[i]) * ((double)lq[i] - (double)logp[i]);
        kl[b] = total;
    }
}

/* The classes whose q kl_categorical_prior_backward keeps on the stack. */
enum { KL_Q_MAX = 64 };

void kl_categorical_prior_backward(float *dlogits, float *dprior, const float *logq,
                                   const float *logp, int B, int N, int K, float scale,
                                   float prior_scale)
{
    /* Per group, with q = softmax(l), p = softmax(eta) and
     * KL_g = sum_k q_k (log q_k - log p_k):
     *   dKL_g/dl_j   = q_j (log q_j - log p_j - KL_g)
     *     (dq_k/dl_j = q_k (delta_kj - q_j); the sum_k q_k dlog q_k/dl_j
     *     it also yields is sum_k (delta_kj - q_j) q_k = 0);
     *   dKL_g/deta_j = -sum_k q_k dlog p_k/deta_j = -sum_k q_k (delta_kj - p_j)
     *                = p_j - q_j. */
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < N; i++) {
            const float *lq = logq + ((size_t)b * N + i) * K, *lp = logp + (size_t)i * K;
            /* q = exp(log q) once per class for the K of a code (K up to
             * KL_Q_MAX); the same value the three uses below each took. */
            float q[KL_Q_MAX];
            int cached = K <= KL_Q_MAX;
            if (cached)
                for (int k = 0; k < K; k++)
                    q[k] = exp_nonpos(lq[k]);
            if (dlogits) {
                float *d = dlogits + ((size_t)b * N + i) * K;
                float klg = 0.0f;
                for (int k = 0; k < K; k++)
                    klg += (cached ? q[k] : exp_nonpos(lq[k])) * (lq[k] - lp[k]);
                for (int k = 0; k < K; k++)
                    d[k] += scale * (cached ? q[k] : exp_nonpos(lq[k])) * (lq[k] - lp[k] - klg);
            }
            if (dprior)
                for (int k = 0; k < K; k++)
                    dprior[(size_t)i * K + k] +=
                        prior_scale * (exp_nonpos(lp[k]) - (cached ? q[k] : exp_nonpos(lq[k])));
        }
    }
}

void kl_bernoulli_prior_forward(double *kl, const float *logits, const float *eta, int B, int N)
{
    /* Per unit q (log q - log p) + (1-q) (log(1-q) - log(1-p)), q = sigmoid(l),
     * p = sigmoid(eta). */
    kl_bernoulli_rows(kl, logits, eta, B, N);
}

void kl_bernoulli_prior_backward(float *dlogits, float *dprior, const float *logits,
                                 const float *eta, int B, int N, float scale, float prior_scale)
{
    /* With log q - log(1-q) = l and log p - log(1-p) = eta the KL of a unit
     * is q (l - eta) + softplus(eta) - softplus(l), so
     *   dKL/dl   = q (1-q) (l - eta) + q - sigmoid(l) = q (1-q) (l - eta),
     *   dKL/deta = -q + sigmoid(eta) = p - q. */
    for (int b = 0; b < B; b++) {
        const float *l = logits + (size_t)b * N;
        for (int i = 0; i < N; i++) {
            float q = sigmoidf_stable(l[i]);
            if (dlogits)
                dlogits[(size_t)b * N + i] += scale * q * (1.0f - q) * (l[i] - eta[i]);
            if (dprior)
                dprior[i] += prior_scale * (sigmoidf_stable(eta[i]) - q);
        }
    }
}
