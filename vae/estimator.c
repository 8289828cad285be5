#include "estimator.h"

#include <stdlib.h>
#include <string.h>

#include "gumbel.h"
#include "layers.h"
#include "util.h"

/* Draw the relaxed sample into s->soft: Gumbel-Softmax for categorical
 * codes, Binary Concrete for Bernoulli ones. */
static void relaxed_sample(est_ctx *c)
{
    const vae_config *cfg = &c->m->cfg;
    size_t n = (size_t)c->B * vae_zdim(cfg);
    const float *logits = vae_logits(c->m, c->a);
    if (cfg->latent == LATENT_CATEGORICAL) {
        gumbel_noise(c->s->noise, n, c->r);
        gumbel_softmax_forward(c->s->soft, logits, c->s->noise, c->B * cfg->N, cfg->K, c->tau);
    } else {
        logistic_noise(c->s->noise, n, c->r);
        binary_concrete_forward(c->s->soft, logits, c->s->noise, n, c->tau);
    }
}

/* d(soft)/d(logits) applied to dz: the relaxation's backward. */
static void relaxed_backward(est_ctx *c)
{
    const vae_config *cfg = &c->m->cfg;
    size_t n = (size_t)c->B * vae_zdim(cfg);
    if (cfg->latent == LATENT_CATEGORICAL)
        gumbel_softmax_backward(c->a->dlogits, c->s->soft, c->a->dz, c->B * cfg->N, cfg->K,
                                c->tau);
    else
        binary_concrete_backward(c->a->dlogits, c->s->soft, c->a->dz, n, c->tau);
}

/* Decode z, record the loss, backpropagate the mean loss to a->dz. */
static void decode_and_backward(est_ctx *c, const float *z)
{
    vae_decode(c->m, c->a, z, c->B);
    vae_recon_loss(c->m, c->a, c->x, c->B);
    vae_decode_backward(c->m, c->a, c->x, z, c->B, 1.0f / (float)c->B);
}

/* Gumbel-Softmax: the decoder sees the relaxed sample; the gradient flows
 * through the softmax. */
static void run_gumbel(est_ctx *c)
{
    relaxed_sample(c);
    decode_and_backward(c, c->s->soft);
    relaxed_backward(c);
}

/* Straight-through Gumbel-Softmax: the decoder sees the one-hot argmax of
 * the relaxed sample (a true categorical sample); the backward pass treats
 * it as the soft one. */
static void run_st_gumbel(est_ctx *c)
{
    const vae_config *cfg = &c->m->cfg;
    relaxed_sample(c);
    if (cfg->latent == LATENT_CATEGORICAL)
        onehot_argmax(c->a->z, c->s->soft, c->B * cfg->N, cfg->K);
    else
        threshold_half(c->a->z, c->s->soft, (size_t)c->B * cfg->N);
    decode_and_backward(c, c->a->z);
    relaxed_backward(c);
}

static const estimator table[] = {
    {"gumbel", "Gumbel-Softmax (Concrete) relaxation; reparameterised gradient through the "
               "soft sample at temperature tau",
     run_gumbel},
    {"st-gumbel", "straight-through Gumbel-Softmax: one-hot argmax forward, soft sample's "
                  "gradient backward (alias --hard)",
     run_st_gumbel},
    {NULL, NULL, NULL},
};

const estimator *estimator_list(void)
{
    return table;
}

const estimator *estimator_find(const char *name)
{
    for (const estimator *e = table; e->name; e++)
        if (!strcmp(e->name, name))
            return e;
    return NULL;
}

int est_state_init(est_state *s, const vae_model *m, int max_batch, char *err)
{
    memset(s, 0, sizeof *s);
    s->max_batch = max_batch;
    size_t n = (size_t)max_batch * vae_zdim(&m->cfg);
    s->noise = xcalloc(n, sizeof(float), err, "estimator noise");
    s->soft = xcalloc(n, sizeof(float), err, "estimator samples");
    if (!s->noise || !s->soft) {
        est_state_free(s);
        return -1;
    }
    return 0;
}

void est_state_free(est_state *s)
{
    free(s->noise);
    free(s->soft);
    memset(s, 0, sizeof *s);
}

void est_sample_hard(const vae_config *cfg, const float *logits, int B, float *noise, float *z,
                     rng_t *r)
{
    size_t n = (size_t)B * vae_zdim(cfg);
    if (cfg->latent == LATENT_CATEGORICAL) {
        gumbel_noise(noise, n, r);
        for (size_t i = 0; i < n; i++)
            noise[i] += logits[i];
        onehot_argmax(z, noise, B * cfg->N, cfg->K);
    } else {
        for (size_t i = 0; i < n; i++)
            z[i] = rng_uniformf_open(r) < sigmoidf_stable(logits[i]) ? 1.0f : 0.0f;
    }
}
