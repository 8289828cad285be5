/* semisup.h: the M2 model of Kingma, Rezende, Mohamed & Welling (2014) for
 * semi-supervised classification, trained either by summing over the class
 * variable (exact) or with one Gumbel-Softmax sample of it (Jang et al. 2017).
 *
 *   classifier q(y|x):    MLP on x to K logits
 *   encoder    q(z|x,y):  MLP on [x, y] to the mean and log-variance of z
 *   decoder    p(x|y,z):  MLP on [z, y] to Bernoulli pixel logits
 *   priors:               p(y) uniform over K, p(z) = N(0, I)
 *
 * or, with SS_NET_CONV, the convolutional networks of
 * results/semisup/networks.md (net.h) on 28 x 28 images:
 *   classifier q(y|x):    conv 32, conv 64 (3 x 3, stride 2, ReLU), linear to K
 *   encoder    q(z|x,y):  the same two convolutions (own parameters) on x, then
 *                         one linear layer on [features, y] to 2Z; y enters after
 *                         the convolutions, so the exact sum runs them once per
 *                         image and K times only the linear layer
 *   decoder    p(x|y,z):  linear [z, y] to 32 x 7 x 7 (ReLU), convT 64, convT 32
 *                         (stride 2, ReLU), convT 1 to the pixel logits
 *
 * Per labelled pair (x, y):  L(x,y) = -log p(x|y,z) + KL(q(z|x,y) || N(0,I))
 *                                     + log K        (one z sample)
 * Per unlabelled x:          U(x) = sum_y q(y|x) [L(x,y) - log K]
 *                                   + KL(q(y|x) || uniform)
 *                                 = sum_y q(y|x) L(x,y) - H(q(y|x)),
 * with the sum over y exact (K rows per x) or replaced by one relaxed
 * sample y~ = softmax((logits + g) / tau) fed to the encoder and decoder (one
 * row per x), the KL of q(y|x) to uniform staying analytic; st-gumbel feeds
 * the one-hot argmax of y~ instead and backpropagates through y~.
 *
 * A step's loss over a batch of B_l labelled and B_u unlabelled examples is
 *   w.labelled / B_l * sum L  +  w.alpha / B_l * sum -log q(y|x)
 *     + w.unlabelled / B_u * sum U.
 *
 * Layout: the three networks' parameters live in one flat buffer with a
 * twin gradient buffer.  The encoder and decoder process "rows": rows
 * [0, B_l) are the labelled examples with their one-hot labels; then, per
 * unlabelled example b, K rows (exact: row B_l + b*K + j has y = e_j) or
 * one row (gumbel: row B_l + b has y = y~_b; st-gumbel: its one-hot argmax).
 * A workspace is allocated once for the largest batch; nothing is allocated
 * per step. */
#ifndef GSVAE_SEMISUP_H
#define GSVAE_SEMISUP_H

#include <stddef.h>
#include <stdint.h>

#include "adam.h"
#include "layers.h"
#include "net.h"
#include "rng.h"
#include "stochastic.h"

#define SS_MAX_HIDDEN 4

typedef enum { SS_ACT_SOFTPLUS, SS_ACT_RELU } ss_activation;
typedef enum { SS_NET_MLP, SS_NET_CONV } ss_net;

/* The estimators of stochastic.h's list that M2 runs: the exact sum over
 * the class, and one (straight-through) Gumbel-Softmax sample of it. */
#define SS_ESTIMATORS ((1u << STOCH_EXACT) | (1u << STOCH_GUMBEL) | (1u << STOCH_ST_GUMBEL))

/* "softplus"/"relu"; -1 if unknown. */
int ss_activation_parse(const char *s, ss_activation *out);
/* "mlp"/"conv"; -1 if unknown. */
int ss_net_parse(const char *s, ss_net *out);
/* An estimator name of SS_ESTIMATORS into *out; -1 (out untouched) if
 * unknown or not one of them (stoch_estimator_check words the refusal). */
int ss_estimator_parse(const char *s, stoch_estimator *out);
/* stoch_estimator_name. */
const char *ss_estimator_name(stoch_estimator e);

typedef struct {
    int D;                        /* pixels */
    int K;                        /* classes */
    int Z;                        /* Gaussian latent units */
    int nhidden;                  /* >= 1 (MLP only) */
    int hidden[SS_MAX_HIDDEN];    /* widths of every MLP; the decoder's reversed */
    ss_activation act;            /* MLP only; the conv networks use ReLU */
    ss_net net;                   /* SS_NET_MLP (0) or SS_NET_CONV (D must be 784) */
} ss_config;

typedef struct {
    ss_config cfg;
    int F;                                 /* encoder features of an image: MLP D, conv 2304 */
    /* MLP */
    int nlayers;                           /* per network: nhidden + 1 (conv: 0) */
    linear_layer cls[SS_MAX_HIDDEN + 1];   /* D -> ... -> K */
    linear_layer enc[SS_MAX_HIDDEN + 1];   /* D+K -> ... -> 2Z (mean, log-variance) */
    linear_layer dec[SS_MAX_HIDDEN + 1];   /* Z+K -> ... -> D */
    /* conv: each bound at its offset in params, in this order */
    net_t cls_net;                         /* 1x28x28 -> K */
    net_t enc_trunk;                       /* 1x28x28 -> 64x6x6 = F */
    net_t enc_head;                        /* F+K -> 2Z */
    net_t dec_net;                         /* Z+K -> 1x28x28 */
    size_t nparams;
    float *params, *grads;
} ss_model;

/* MLP: weights ~ N(0, init_std^2), biases 0 (Kingma et al.'s
 * initialisation).  Conv: Glorot-uniform weights, biases 0 (net.h;
 * init_std unused). */
int ss_init(ss_model *m, const ss_config *c, double init_std, rng_t *r, char *err);
void ss_free(ss_model *m);

/* Rows the encoder and decoder process for a batch. */
long ss_rows(const ss_config *c, int B_l, int B_u, stoch_estimator est);

typedef struct {
    double labelled;     /* weight of the mean labelled L(x,y) */
    double unlabelled;   /* weight of the mean unlabelled U(x) */
    double alpha;        /* weight of the mean labelled -log q(y|x) */
} ss_weights;

/* Workspace for up to max_examples classifier rows (E = B_l + B_u) and
 * max_rows encoder/decoder rows (R), every buffer in one block.  The fields
 * below are those a caller reads or sets; the activations and the backward
 * scratch are laid out by semisup_model.c. */
typedef struct ss_scratch ss_scratch;
typedef struct {
    int max_examples;
    long max_rows;
    float *logq;       /* [E][K] log q(y|x) of the last forward */
    /* noise: set by ss_draw_noise, or by a caller that wants it fixed */
    float *eps;        /* [R][Z] standard normal */
    float *gnoise;     /* [B_u][K] Gumbel, for y~ */
    double *ex_loss;   /* [E]: L(x,y) or U(x), see ss_forward */
    /* rows processed by the encoder and decoder in the last forward */
    long enc_rows, dec_rows;
    ss_scratch *ws;    /* the one block: scratch layout at its head, then the buffers */
} ss_ws;

/* -1 with err on failure (w then holds no buffer); ss_ws_free frees the
 * block once and empties w, and accepts a failed or zeroed w. */
int ss_ws_init(ss_ws *w, const ss_model *m, int max_examples, long max_rows, char *err);
void ss_ws_free(ss_ws *w);

/* Figures of one forward, means in nats. */
typedef struct {
    double loss;          /* the weighted objective */
    double lab_neg_elbo;  /* mean L(x,y) over the labelled examples */
    double class_nll;     /* mean -log q(y|x) over the labelled examples */
    double unl_loss;      /* mean U(x) over the unlabelled examples */
} ss_parts;

/* Fill w->eps (ss_rows x Z) and, for gumbel, w->gnoise (B_u x K) from r. */
void ss_draw_noise(const ss_model *m, ss_ws *w, int B_l, int B_u, stoch_estimator est, rng_t *r);

/* Forward of the loss with the noise in w.  x holds B_l labelled examples
 * (labels y, each < K) followed by B_u unlabelled ones.  Afterwards
 * w->ex_loss[b] is L(x_b, y_b) for a labelled b < B_l and U(x_b) for an
 * unlabelled one, and w->logq row b is log q(y|x_b).  Returns parts->loss. */
double ss_forward(const ss_model *m, ss_ws *w, const float *x, const uint8_t *y, int B_l,
                  int B_u, stoch_estimator est, float tau, const ss_weights *wt, ss_parts *parts);
/* Gradient of the loss of the last ss_forward (same arguments), added into
 * m->grads. */
void ss_backward(ss_model *m, ss_ws *w, const float *x, const uint8_t *y, int B_l, int B_u,
                 stoch_estimator est, float tau, const ss_weights *wt);

/* Zero the gradients, draw the noise, forward; when the loss is finite,
 * backward and one Adam step.  Returns the loss (NaN or Inf: the
 * parameters are untouched). */
double ss_train_step(ss_model *m, ss_ws *w, adam_state *adam, const float *x, const uint8_t *y,
                     int B_l, int B_u, stoch_estimator est, float tau, const ss_weights *wt,
                     float lr, rng_t *r, ss_parts *parts);

/* The mean of q(z|x, y = cls[b]) of n images x[n][D] into mu[n][Z]
 * (n <= w->max_examples and w->max_rows). */
void ss_encode_mean(const ss_model *m, ss_ws *w, const float *x, const int *cls, int n,
                    float *mu);
/* The pixel means of p(x|y = cls[r], z = z[r]) into mean[R][D]
 * (R <= w->max_rows). */
void ss_decode(const ss_model *m, ss_ws *w, const float *z, const int *cls, int R, float *mean);

typedef struct {
    double neg_elbo;     /* mean U(x): -ELBO with y summed out exactly */
    double accuracy;     /* argmax q(y|x) == label */
    double class_nll;    /* mean -log q(label|x) */
    double gen_accuracy; /* argmin_y L(x,y) == label: the class the generative
                            model explains x best with (one z sample per y) */
    double agreement;    /* argmin_y L(x,y) == argmax q(y|x) */
} ss_eval_result;

/* Test figures over n images (labels < K), in chunks the workspace holds
 * (at least one image of K rows).  r draws the z noise.  gen_accuracy is
 * what the unlabelled -ELBO can teach q(y|x): its gradient moves q toward the
 * classes with the lowest L(x,y), so a model whose decoder barely uses y
 * (gen_accuracy near 1/K) gives q no signal beyond the labels.  Ties (a
 * decoder that ignores y entirely) go to the lowest class. */
void ss_evaluate(const ss_model *m, ss_ws *w, const float *x, const uint8_t *labels, int n,
                 rng_t *r, ss_eval_result *out);

#endif
