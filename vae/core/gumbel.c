#include "gumbel.h"

#include <math.h>

#include "layers.h"

/* The noise in blocks: the uniforms first (the generator is sequential),
 * then their logs (log_pos, which vectorises where libm's log is a call per
 * element).  The same draws as one uniform per element, in order. */
enum { NOISE_BLOCK = 256 };

/* out[i] = -log(-log u) (gumbel set) or log u - log(1 - u), u the i-th
 * open uniform of r. */
static void noise(float *out, size_t n, rng_t *r, int gumbel)
{
    rng_t st = *r; /* in registers: rng.h */
    double u[NOISE_BLOCK];
    for (size_t i0 = 0; i0 < n; i0 += NOISE_BLOCK) {
        size_t m = n - i0 < NOISE_BLOCK ? n - i0 : NOISE_BLOCK;
        for (size_t i = 0; i < m; i++)
            u[i] = rng_uniform_open(&st);
        /* 1 - u is exact: u is a multiple of 2^-53 in (0, 1). */
        if (gumbel)
            for (size_t i = 0; i < m; i++)
                out[i0 + i] = (float)-log_pos(-log_pos(u[i]));
        else
            for (size_t i = 0; i < m; i++)
                out[i0 + i] = (float)(log_pos(u[i]) - log_pos(1.0 - u[i]));
    }
    *r = st;
}

void gumbel_noise(float *g, size_t n, rng_t *r)
{
    noise(g, n, r, 1);
}

void logistic_noise(float *l, size_t n, rng_t *r)
{
    noise(l, n, r, 0);
}

void gumbel_softmax_forward(float *y, const float *logits, const float *g, int R, int K,
                            float tau)
{
    float inv_tau = 1.0f / tau;
    for (int r = 0; r < R; r++) {
        const float *l = logits + (size_t)r * K, *n = g ? g + (size_t)r * K : NULL;
        float *o = y + (size_t)r * K;
        float m = -INFINITY;
        for (int k = 0; k < K; k++) {
            o[k] = (n ? l[k] + n[k] : l[k]) * inv_tau;
            m = fmaxf(m, o[k]);
        }
        /* exp_nonpos (layers.h): the argument is <= 0, and the loop
         * vectorises where expf is a call per class. */
        for (int k = 0; k < K; k++)
            o[k] = exp_nonpos(o[k] - m);
        float s = 0.0f;
        for (int k = 0; k < K; k++)
            s += o[k];
        float inv_s = 1.0f / s;
        for (int k = 0; k < K; k++)
            o[k] *= inv_s;
    }
}

void gumbel_softmax_backward(float *dlogits, const float *y, const float *dy, int R, int K,
                             float tau)
{
    float inv_tau = 1.0f / tau;
    for (int r = 0; r < R; r++) {
        const float *yr = y + (size_t)r * K, *dr = dy + (size_t)r * K;
        float *o = dlogits + (size_t)r * K;
        float dot = 0.0f;
        for (int k = 0; k < K; k++)
            dot += dr[k] * yr[k];
        for (int k = 0; k < K; k++)
            o[k] = inv_tau * yr[k] * (dr[k] - dot);
    }
}

/* Index of the largest of K entries; ties go to the first. */
static int argmax_row(const float *x, int K)
{
    int best = 0;
    for (int k = 1; k < K; k++)
        if (x[k] > x[best])
            best = k;
    return best;
}

void argmax_rows(int *idx, const float *x, int R, int K)
{
    for (int r = 0; r < R; r++)
        idx[r] = argmax_row(x + (size_t)r * K, K);
}

void onehot_argmax(float *z, const float *y, int R, int K)
{
    for (int r = 0; r < R; r++) {
        int best = argmax_row(y + (size_t)r * K, K);
        float *zr = z + (size_t)r * K;
        for (int k = 0; k < K; k++)
            zr[k] = k == best ? 1.0f : 0.0f;
    }
}

void binary_concrete_forward(float *z, const float *logits, const float *noise, size_t n,
                             float tau)
{
    float inv_tau = 1.0f / tau;
    for (size_t i = 0; i < n; i++) {
        z[i] = sigmoidf_stable((logits[i] + noise[i]) * inv_tau); /* layers.h */
    }
}

void binary_concrete_backward(float *dlogits, const float *z, const float *dz, size_t n,
                              float tau)
{
    float inv_tau = 1.0f / tau;
    for (size_t i = 0; i < n; i++)
        dlogits[i] = dz[i] * z[i] * (1.0f - z[i]) * inv_tau;
}

void threshold_half(float *z, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        z[i] = y[i] > 0.5f ? 1.0f : 0.0f;
}
