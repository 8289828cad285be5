/* model.h: the VAE of the paper: an MLP encoder from pixels to the logits of
 * the latent code, a mirrored MLP decoder from the code to pixel logits, and
 * a Bernoulli pixel likelihood.  The code is N categorical variables of K
 * classes (one-hot, N*K units) or N Bernoulli units.  With no hidden layers
 * the encoder and decoder are single affine maps (the paper's 784-200-784
 * and 784-(20x10)-784 models).
 *
 * The prior p(z) is uniform, or learned: logits eta (N*K: a softmax per
 * variable; N: a sigmoid per unit) that are parameters of the model,
 * trained on the ELBO through the analytic KL(q(z|x) || p(z)).  The
 * temperature of a relaxed code may be a parameter too (log tau).
 *
 * All parameters live in one buffer and all gradients in a twin buffer of
 * the same layout, so the optimizer is one loop over a flat array.
 * Activations live apart from the parameters (vae_acts) and are allocated
 * once for the largest batch, so training and a large-batch evaluation can
 * share one model. */
#ifndef GSVAE_MODEL_H
#define GSVAE_MODEL_H

#include <stddef.h>

#include "layers.h"
#include "rng.h"
#include "stochastic.h"

#define VAE_MAX_HIDDEN 4

/* The uniform prior is 0, so a zeroed vae_config has it. */
typedef enum { VAE_PRIOR_UNIFORM, VAE_PRIOR_LEARNED } vae_prior;

/* "uniform" or "learned" into *out; -1 (out untouched) otherwise. */
int vae_prior_parse(const char *s, vae_prior *out);
const char *vae_prior_name(vae_prior p);

typedef struct {
    latent_type latent;
    int N, K;                     /* K is 1 for Bernoulli latents */
    int D;                        /* pixels */
    int nhidden;                  /* 0: linear encoder and decoder */
    int hidden[VAE_MAX_HIDDEN];   /* encoder widths; the decoder mirrors them */
    vae_prior prior;
    /* > 0: the temperature of the relaxed sample is a trained parameter,
     * log tau (tau = exp of it, so it stays positive under any step),
     * starting at this tau; 0: the caller's (the schedule's). */
    float learned_tau0;
} vae_config;

/* The code as a stochastic layer (stochastic.h): one row per example. */
static inline stoch_layer vae_code(const vae_config *c)
{
    return (stoch_layer){c->latent, c->N, c->K};
}
/* Units of the latent code: N*K (categorical) or N (Bernoulli). */
int vae_zdim(const vae_config *c);
/* "20x10" for categorical, "200" for Bernoulli; fills N and K. */
int vae_parse_latent_spec(const char *spec, vae_config *c, char *err);
/* "512,256", or "none" for no hidden layer (nhidden 0). */
int vae_parse_hidden(const char *spec, vae_config *c, char *err);
/* Writes "20x10" or "200". */
void vae_format_latent(const vae_config *c, char *buf, size_t len);
/* Writes "512,256", or "none". */
void vae_format_hidden(const vae_config *c, char *buf, size_t len);

typedef struct {
    vae_config cfg;
    int nenc, ndec;                           /* layers */
    linear_layer enc[VAE_MAX_HIDDEN + 1];
    linear_layer dec[VAE_MAX_HIDDEN + 1];
    /* A learned prior's logits eta: vae_zdim floats at this offset of
     * params (after the decoder), initialised to 0, i.e. uniform.  Unused
     * (0) under the uniform prior, which has no parameters. */
    size_t prior;
    /* A learned temperature's log tau: one float at this offset of params
     * (after the prior's logits); 0 when the temperature is not learned. */
    size_t log_tau;
    size_t nparams;
    float *params;
    float *grads;
    /* The logits of q(z|x) are logit_scale times the encoder's top layer:
     * 1 but for slope-annealed ST in its posterior reading, where the
     * training loop sets it to 1/tau (--st-slope posterior). */
    float logit_scale;
} vae_model;

/* Allocate and initialise (uniform Glorot weights, zero biases and prior
 * logits) from r; a learned prior draws nothing from r. */
int vae_init(vae_model *m, const vae_config *c, rng_t *r, char *err);
void vae_free(vae_model *m);
void vae_zero_grads(vae_model *m);
/* The learned prior's logits eta (vae_zdim of them), NULL for the uniform
 * prior. */
const float *vae_prior_logits(const vae_model *m);

/* The temperature of the relaxed sample: exp(log tau) when the model
 * learns it (cfg.learned_tau0 > 0), else `scheduled`. */
float vae_tau(const vae_model *m, float scheduled);

/* log p(z) of one hard code z, in double: uniform, -N log K (-N log 2 for
 * bits); learned, the chosen classes' log softmax(eta) (a->prior_logp, set
 * by vae_encode) or per unit -softplus(-eta) for a 1, -softplus(eta) for
 * a 0. */
struct vae_acts;
double vae_log_prior(const vae_model *m, const struct vae_acts *a, const float *z);

/* Activations for up to max_batch rows (B), every buffer in one block. */
typedef struct vae_acts {
    int max_batch;
    float *enc[VAE_MAX_HIDDEN + 1];  /* [B][enc[i].out] layer outputs; the last is the logits */
    float *logq;                     /* [B][zdim] categorical: log-softmax of the logits */
    float *z;                        /* [B][zdim] the code fed to the decoder */
    float *dec[VAE_MAX_HIDDEN + 1];  /* [B][dec[i].out]; the last is pixel logits */
    float *prior_logp;               /* [zdim] learned categorical prior: log softmax(eta);
                                        NULL otherwise */
    float *dz;                       /* [B][zdim] gradient at the decoder's input */
    float *dlogits;                  /* [B][zdim] gradient at the encoder's output */
    float *grad_a, *grad_b;          /* [B][widest layer] backward scratch */
    double *recon, *kl;              /* [B] per example, nats */
    /* The encoder's first layer over the nonzero pixels (sparse.h), taken
     * when the batch's measured density makes it pay: */
    int in_sparse;                   /* whether the last vae_encode took it */
    int *in_idx, *in_nnz;            /* [B][D], [B]: the nonzero pixels of each row */
    float *in_val;                   /* [B][D] their values */
    float *enc_wt;                   /* [D][enc[0].out]: the weight transposed */
    int *in_start, *in_rows;         /* [D + 1], [B * D]: the nonzero pixels column by
                                        column (sparse_columns), for the weight gradient */
    float *in_cval;                  /* [B * D] their values */
    /* The decoder's first layer over a hard code's nonzero entries, taken
     * by the measured density of the code it is given (the same views): */
    int *z_idx, *z_nnz;              /* [B][zdim], [B] */
    float *z_val;                    /* [B][zdim] */
    float *dec_wt;                   /* [zdim][dec[0].out] the weight transposed */
    int *z_start, *z_rows;           /* [zdim + 1], [B * zdim] */
    float *z_cval;                   /* [B * zdim] */
    float *dec_dfirst;               /* [B][dec[0].out] gradient at the first layer's
                                        output (deep decoder) */
    float *enc_dfirst;               /* [B][enc[0].out] gradient at the first layer's output
                                        (deep encoder) */
    void *block;                     /* the one allocation behind every buffer */
} vae_acts;

/* Sizes and allocates a's buffers for m and max_batch rows (zeroed); -1
 * with err on failure (a then holds no buffer).  vae_acts_free frees the
 * block once and empties a; it accepts a failed or zeroed a. */
int vae_acts_init(vae_acts *a, const vae_model *m, int max_batch, char *err);
void vae_acts_free(vae_acts *a);

/* Encoder: a->enc[...] (the last scaled by m->logit_scale) and, for
 * categorical latents, a->logq; under a learned categorical prior also
 * a->prior_logp, so that whatever has encoded a batch can score log p(z). */
void vae_encode(const vae_model *m, vae_acts *a, const float *x, int B);
/* (The first layer runs over the pixels that are not 0 when at most
 * SPARSE_MAX_DENSITY of the batch's are: the same sums in another order,
 * sparse.h; its weight gradient in vae_encode_backward likewise.) */
static inline float *vae_logits(const vae_model *m, vae_acts *a)
{
    return a->enc[m->nenc - 1];
}
/* Decoder on z (B rows of vae_zdim), pixel logits in a->dec[ndec-1]; then
 * the reconstruction cross-entropy per example into a->recon. */
void vae_decode(const vae_model *m, vae_acts *a, const float *z, int B);
void vae_recon_loss(const vae_model *m, vae_acts *a, const float *x, int B);
/* Backward of sum_b scale * recon[b] through the decoder (weights' gradients
 * accumulate) and the gradient at the decoder's input into a->dz.  Needs the
 * activations of the last vae_decode on z. */
void vae_decode_backward(vae_model *m, vae_acts *a, const float *x, const float *z, int B,
                         float scale);
/* The general form: row b of the loss weighs scale * row_scale[b]
 * (row_scale NULL: 1), the parameter gradients add into grads (m->grads,
 * or a scratch buffer of the same layout for a pass that must not count),
 * and the input gradient goes to dz (NULL: not wanted). */
void vae_decode_backward_rows(const vae_model *m, vae_acts *a, const float *x, const float *z,
                              int B, const float *row_scale, float scale, float *grads,
                              float *dz);
/* KL(q(z|x) || p(z)) per example into a->kl, exact (a sum over classes or
 * units), against the uniform or the learned prior; needs vae_encode. */
void vae_kl(const vae_model *m, vae_acts *a, int B);
/* a->dlogits += scale * dKL/dlogits (every row); under a learned prior also
 * the prior's gradients, m->grads at m->prior += prior_scale * sum_b
 * dKL_b/deta.  A training step passes prior_scale = 1/B (the KL's exact
 * gradient, like the decoder's) and scale = 1/B times the estimator's
 * encoder scale. */
void vae_kl_backward(vae_model *m, vae_acts *a, int B, float scale, float prior_scale);
/* Backward through the encoder from a->dlogits (weights' gradients
 * accumulate); a->dlogits is multiplied by m->logit_scale in place. */
void vae_encode_backward(vae_model *m, vae_acts *a, const float *x, int B);

#endif
