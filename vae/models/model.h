/* model.h: the VAE of the paper: an MLP encoder from pixels to the logits of
 * the latent code, a mirrored MLP decoder from the code to pixel logits, and
 * a Bernoulli pixel likelihood.  The code is N categorical variables of K
 * classes (one-hot, N*K units) or N Bernoulli units.
 *
 * All parameters live in one buffer and all gradients in a twin buffer of
 * the same layout, so the optimizer is one loop over a flat array.
 * Activations live apart from the parameters (vae_acts) and are allocated
 * once for the largest batch, so training and a large-batch evaluation can
 * share one model. */
#ifndef GSVAE_MODEL_H
#define GSVAE_MODEL_H

#include <stddef.h>

#include "rng.h"

#define VAE_MAX_HIDDEN 4

typedef enum { LATENT_CATEGORICAL, LATENT_BERNOULLI } latent_type;

typedef struct {
    latent_type latent;
    int N, K;                     /* K is 1 for Bernoulli latents */
    int D;                        /* pixels */
    int nhidden;
    int hidden[VAE_MAX_HIDDEN];   /* encoder widths; the decoder mirrors them */
} vae_config;

/* Units of the latent code: N*K (categorical) or N (Bernoulli). */
int vae_zdim(const vae_config *c);
/* "categorical" or "bernoulli". */
int vae_latent_parse(const char *s, latent_type *out);
const char *vae_latent_name(latent_type t);
/* "20x10" for categorical, "200" for Bernoulli; fills N and K. */
int vae_parse_latent_spec(const char *spec, vae_config *c, char *err);
/* "512,256". */
int vae_parse_hidden(const char *spec, vae_config *c, char *err);
/* Writes "20x10" or "200". */
void vae_format_latent(const vae_config *c, char *buf, size_t len);
void vae_format_hidden(const vae_config *c, char *buf, size_t len);

typedef struct {
    int in, out;
    size_t w, b;   /* offsets of the weight [out][in] and bias [out] */
} vae_linear;

/* Lay a layer out at offset of a flat buffer (weight, then bias); returns
 * the offset after it. */
size_t vae_linear_place(vae_linear *l, int in, int out, size_t offset);

typedef struct {
    vae_config cfg;
    int nenc, ndec;                           /* layers */
    vae_linear enc[VAE_MAX_HIDDEN + 1];
    vae_linear dec[VAE_MAX_HIDDEN + 1];
    size_t nparams;
    float *params;
    float *grads;
    /* The logits of q(z|x) are logit_scale times the encoder's top layer:
     * 1 but for slope-annealed ST in its posterior reading, where the
     * training loop sets it to 1/tau (--st-slope posterior). */
    float logit_scale;
} vae_model;

/* Allocate and initialise (uniform Glorot weights, zero biases) from r. */
int vae_init(vae_model *m, const vae_config *c, rng_t *r, char *err);
void vae_free(vae_model *m);
void vae_zero_grads(vae_model *m);

typedef struct {
    int max_batch;
    float *enc[VAE_MAX_HIDDEN + 1];  /* encoder layer outputs; the last is the logits */
    float *logq;                     /* categorical: log-softmax of the logits */
    float *z;                        /* the code fed to the decoder */
    float *dec[VAE_MAX_HIDDEN + 1];  /* decoder layer outputs; the last is pixel logits */
    float *dz;                       /* gradient at the decoder's input */
    float *dlogits;                  /* gradient at the encoder's output */
    float *grad_a, *grad_b;          /* backward scratch, the widest layer */
    double *recon, *kl;              /* per example, nats */
} vae_acts;

int vae_acts_init(vae_acts *a, const vae_model *m, int max_batch, char *err);
void vae_acts_free(vae_acts *a);

/* Encoder: a->enc[...] (the last scaled by m->logit_scale) and, for
 * categorical latents, a->logq. */
void vae_encode(const vae_model *m, vae_acts *a, const float *x, int B);
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
/* KL(q(z|x) || uniform prior) per example into a->kl. */
void vae_kl(const vae_model *m, vae_acts *a, int B);
/* a->dlogits += scale * dKL/dlogits. */
void vae_kl_backward(const vae_model *m, vae_acts *a, int B, float scale);
/* Backward through the encoder from a->dlogits (weights' gradients
 * accumulate); a->dlogits is multiplied by m->logit_scale in place. */
void vae_encode_backward(vae_model *m, vae_acts *a, const float *x, int B);

#endif
