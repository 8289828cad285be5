/* baseline.c: NVIL's input-dependent baseline network (baseline.h). */
#include "baseline.h"

#include <math.h>
#include <string.h>

#include "layers.h"

size_t bnet_nparams(int D, int H)
{
    return (size_t)H * D + (size_t)H + (size_t)H + 1;
}

void bnet_init(float *params, int D, int H, rng_t *r)
{
    memset(params, 0, bnet_nparams(D, H) * sizeof(float));
    linear_init_glorot(params, D, H, r);
}

void bnet_forward(const float *params, const float *x, int B, int D, int H, bnet_ws *ws)
{
    const float *W1 = params, *b1 = W1 + (size_t)H * D, *w2 = b1 + H, *b2 = w2 + H;
    linear_forward(ws->h, x, W1, b1, B, D, H, 0);
    for (size_t i = 0; i < (size_t)B * H; i++)
        ws->h[i] = tanhf(ws->h[i]);
    linear_forward(ws->out, ws->h, w2, b2, B, H, 1, 0);
}

void bnet_fit(float *params, adam_state *a, float *steps, float lr, const float *x,
              const double *u, double offset, int B, int D, int H, bnet_ws *ws)
{
    const float *W1 = params, *w2 = W1 + (size_t)H * D + H;
    float *gW1 = ws->grads, *gb1 = gW1 + (size_t)H * D, *gw2 = gb1 + H, *gb2 = gw2 + H;
    memset(ws->grads, 0, bnet_nparams(D, H) * sizeof(float));
    for (int b = 0; b < B; b++)
        ws->dout[b] = (float)((offset - u[b]) / B);
    /* Undoes bnet_forward's second linear_forward, then its tanh, then its
     * first linear_forward. */
    linear_backward(ws->dh, gw2, gb2, ws->dout, ws->out, ws->h, w2, B, H, 1, 0);
    for (size_t i = 0; i < (size_t)B * H; i++)
        ws->dh[i] *= 1.0f - ws->h[i] * ws->h[i];
    linear_backward(NULL, gW1, gb1, ws->dh, ws->h, x, W1, B, D, H, 0);
    adam_persist_step(a, params, ws->grads, lr, steps);
}
