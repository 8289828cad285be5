/* net.h: a sequential network of linear, conv and convT layers (layers.h,
 * conv.h), each with an optional ReLU, over a batch of examples.
 *
 * A caller describes the layers in a table of net_layer_spec; net_init works
 * out every layer's shape and the place of its weight and bias in one flat
 * parameter array of n->nparams floats, with a twin gradient array laid out
 * alike, so that one optimizer loop (adam.h) covers the whole network.  The
 * arrays belong either to the network (net_alloc: one allocation for both) or
 * to the caller (net_bind: a model that keeps several networks in its own
 * flat buffer places each at an offset).
 *
 * Shapes: an example is a C x H x W tensor in NCHW order (a flat vector of
 * features is C x 1 x 1).  A linear layer reads its input as a flat vector
 * of C*H*W features and writes out*out_h*out_w features, which the next
 * layer sees as out channels of out_h x out_w (so "linear to 32 x 7 x 7, then
 * convT" needs no reshape layer).  conv and convT are those of conv.h.
 *
 * Activations live in a workspace (net_ws) allocated once for the largest
 * batch; forward and backward allocate nothing. */
#ifndef GSVAE_NET_H
#define GSVAE_NET_H

#include <stddef.h>

#include "rng.h"

#define NET_MAX_LAYERS 8

typedef enum { NET_LINEAR, NET_CONV, NET_CONVT } net_kind;

/* One layer as the caller writes it. */
typedef struct {
    net_kind kind;
    int out;              /* linear: output features (channels with out_h, out_w);
                             conv, convT: output channels */
    int out_h, out_w;     /* linear only: the output's height and width (0 means 1) */
    int ks, stride, pad;  /* conv, convT: square kernel, stride (0 means 1), zero padding */
    int out_pad;          /* convT only: extra output rows and columns, < stride */
    int relu;             /* max(0, .) on the output */
} net_layer_spec;

/* One layer as net_init placed it. */
typedef struct {
    net_layer_spec spec;
    int C, H, W;          /* input of one example */
    int OC, OH, OW;       /* output of one example */
    size_t in_size, out_size; /* C*H*W and OC*OH*OW */
    size_t w, b;          /* offsets of the weight and bias in params (and grads) */
    size_t nw;            /* weight floats: linear [out_size][in_size],
                             conv [OC][C][ks][ks], convT [C][OC][ks][ks] */
    size_t nb;            /* bias floats: OC (linear: out_size) */
    size_t scratch;       /* floats of conv.h scratch (0 for linear) */
} net_layer;

typedef struct {
    int nlayers;
    net_layer layer[NET_MAX_LAYERS];
    size_t in_size, out_size; /* floats per example at the input and the output */
    size_t nparams;
    float *params, *grads;    /* nparams each, laid out alike; NULL until bound */
    float *owned;             /* net_alloc's allocation (params and grads), else NULL */
} net_t;

/* Shape the network: an input of C x H x W per example, then nlayers layers
 * (1 to NET_MAX_LAYERS) from spec, placed in params from offset 0 in order,
 * each weight followed by its bias.  Allocates nothing; n->params and
 * n->grads are NULL until net_bind or net_alloc.  Fails (returning -1 with
 * err naming the layer and the reason) on a count out of range, an unknown
 * kind, a size below 1, a negative padding, out_pad outside [0, stride), a
 * kernel larger than the padded input, a layer whose output would be empty,
 * or sizes beyond what one cblas call can index. */
int net_init(net_t *n, int C, int H, int W, const net_layer_spec *spec, int nlayers, char *err);

/* Point the network at a caller's arrays of at least n->nparams floats each
 * (typically an offset into a model's flat buffers); the caller keeps
 * ownership.  Not for a network that net_alloc gave its own arrays. */
void net_bind(net_t *n, float *params, float *grads);

/* Give the network its own zeroed params and grads, in one allocation that
 * net_free releases.  Returns -1 with err when out of memory. */
int net_alloc(net_t *n, char *err);
/* Release what net_alloc allocated (nothing for a bound network); the shape
 * stays, params and grads become NULL.  Safe on a zeroed net_t. */
void net_free(net_t *n);

/* Glorot-uniform weights, U(-a, a) with a = sqrt(6 / (fan_in + fan_out)),
 * fan_in + fan_out = in_size + out_size for a linear layer and (C + OC) ks^2
 * for conv and convT (Keras' and PyTorch's receptive-field convention);
 * biases 0.  Draws the layers' weights in order from r. */
void net_init_glorot(net_t *n, rng_t *r);

/* Activations and scratch for batches of up to max_B examples. */
typedef struct {
    int max_B;
    float *act[NET_MAX_LAYERS];  /* [max_B][layer i's out_size] */
    float *grad_a, *grad_b;      /* [max_B][widest hidden out_size]: backward ping-pong */
    float *scratch;              /* the largest layer's conv.h scratch */
    float *mem;                  /* the one allocation behind all of them */
} net_ws;

/* Allocate a workspace for n with max_B >= 1.  Returns -1 with err on a bad
 * max_B or when out of memory. */
int net_ws_init(net_ws *w, const net_t *n, int max_B, char *err);
/* Safe on a zeroed net_ws and twice in a row. */
void net_ws_free(net_ws *w);

/* Forward of B examples in[B][in_size], 0 <= B <= w->max_B, n bound.
 * Returns the output, w->act[last] [B][out_size], which stays valid until
 * the next forward on w. */
const float *net_forward(const net_t *n, net_ws *w,
                         const float *in, /* [B][in_size] */
                         int B);

/* Backward of the last net_forward on w, with the same in and B.  dout
 * [B][out_size] is the gradient at the output (masked in place where the
 * output is 0 when the last layer has a ReLU).  Adds into n->grads;
 * overwrites din[B][in_size], which may be NULL (the input is data).  The
 * activations stay valid, so a second backward with another dout adds the
 * second gradient. */
void net_backward(net_t *n, net_ws *w,
                  float *din,      /* [B][in_size] or NULL */
                  const float *in, /* [B][in_size], the forward's */
                  float *dout,     /* [B][out_size] */
                  int B);

#endif
