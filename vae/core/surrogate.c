#include "surrogate.h"

#include <math.h>
#include <string.h>

#include "layers.h"
#include "parallel.h"

size_t surr_nparams(const stoch_layer *code, int C, int H)
{
    size_t Z = (size_t)stoch_dim(code);
    return (size_t)H * Z + (size_t)H * C + 2 * (size_t)H + 1;
}

/* The blocks of the flat buffer (surrogate.h's layout). */
typedef struct {
    float *W1, *V, *b1, *w2, *b2;
} surr_blocks;

static surr_blocks blocks(const float *params, int Z, int C, int H)
{
    float *p = (float *)params;
    surr_blocks k;
    k.W1 = p;
    k.V = k.W1 + (size_t)H * Z;
    k.b1 = k.V + (size_t)H * C;
    k.w2 = k.b1 + H;
    k.b2 = k.w2 + H;
    return k;
}

void surr_init(float *params, const stoch_layer *code, int C, int H, rng_t *r)
{
    int Z = stoch_dim(code);
    memset(params, 0, surr_nparams(code, C, H) * sizeof(float));
    surr_blocks k = blocks(params, Z, C, H);
    linear_init_glorot(k.W1, Z, H, r);
    if (C > 0)
        linear_init_glorot(k.V, C, H, r);
}

void surr_forward(const float *params, const stoch_layer *code, int C, int H, const float *z,
                  const float *x, int B, float *s, float *h, float *out)
{
    int Z = stoch_dim(code);
    surr_blocks k = blocks(params, Z, C, H);
    stoch_probs_forward(code, s, z, B, 1.0f);
    linear_forward(h, s, k.W1, k.b1, B, Z, H, 0);
    /* h[B][H] += x[B][C] V^T */
    if (C > 0)
        par_sgemm(0, 1, B, H, C, 1.0f, x, C, k.V, C, 1.0f,
                    h, H);
    for (size_t i = 0; i < (size_t)B * H; i++)
        h[i] = tanhf(h[i]);
    linear_forward(out, h, k.w2, k.b2, B, H, 1, 0);
}

void surr_input_grad(const float *params, const stoch_layer *code, int C, int H, const float *s,
                     const float *h, int B, float *u, float *dz)
{
    int Z = stoch_dim(code);
    surr_blocks k = blocks(params, Z, C, H);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) {
            float hj = h[(size_t)b * H + j];
            u[(size_t)b * H + j] = k.w2[j] * (1.0f - hj * hj);
        }
    /* d r / ds = u W1, then the squashing's Jacobian. */
    linear_backward_input(dz, u, k.W1, B, Z, H);
    stoch_probs_backward(code, dz, s, dz, B, 1.0f); /* symmetric: J^T = J */
}

/* Per row, with a = W1 s + V x + b1, h = tanh(a), sv = J v (J the
 * squashing's Jacobian, stoch_probs_backward's at tau 1, symmetric:
 * s (1 - s) v per unit, s (v - <s, v>) per variable) and t = W1 sv (the
 * directional derivative of a along v):
 *   alpha r + v . dr/dz = alpha (w2 . h + b2) + sum_k w2_k (1 - h_k^2) t_k,
 * so d/db2 = alpha, d/dw2_k = alpha h_k + (1 - h_k^2) t_k, the gradient at
 * a_k is da_k = w2_k (1 - h_k^2) (alpha - 2 h_k t_k) (tanh'' = -2 h tanh')
 * and at t_k it is u_k = w2_k (1 - h_k^2); W1 gets da s^T + u sv^T, V gets
 * da x^T and b1 gets da. */
void surr_param_grad(const float *params, const stoch_layer *code, int C, int H, const float *s,
                     const float *x, const float *h, const float *u, const float *alpha,
                     const float *v, int B, float *sv, float *t, float *da, float *grads)
{
    int Z = stoch_dim(code);
    surr_blocks k = blocks(params, Z, C, H), g = blocks(grads, Z, C, H);
    if (v) {
        stoch_probs_backward(code, sv, s, v, B, 1.0f);
        par_sgemm(0, 1, B, H, Z, 1.0f, sv, Z, k.W1, Z, 0.0f,
                    t, H);
    }
    for (int b = 0; b < B; b++) {
        float al = alpha ? alpha[b] : 0.0f;
        g.b2[0] += al;
        for (int j = 0; j < H; j++) {
            size_t o = (size_t)b * H + j;
            float hj = h[o], tj = v ? t[o] : 0.0f, d1 = 1.0f - hj * hj;
            g.w2[j] += al * hj + d1 * tj;
            da[o] = k.w2[j] * d1 * (al - 2.0f * hj * tj);
            g.b1[j] += da[o];
        }
    }
    /* gW1[H][Z] += da^T[H][B] s[B][Z] + u^T sv, gV[H][C] += da^T x */
    par_sgemm(1, 0, H, Z, B, 1.0f, da, H, s, Z, 1.0f, g.W1,
                Z);
    if (v)
        par_sgemm(1, 0, H, Z, B, 1.0f, u, H, sv, Z, 1.0f,
                    g.W1, Z);
    if (C > 0)
        par_sgemm(1, 0, H, C, B, 1.0f, da, H, x, C, 1.0f,
                    g.V, C);
}
