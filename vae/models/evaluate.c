#include "evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "estimator.h"
#include "layers.h"
#include "stochastic.h"
#include "util.h"

int eval_ws_init(eval_ws *w, const vae_model *m, int rows, char *err)
{
    memset(w, 0, sizeof *w);
    w->rows = rows;
    size_t R = (size_t)rows, n = R * vae_zdim(&m->cfg);
    if (vae_acts_init(&w->a, m, rows, err) != 0)
        return -1;
    ws_buf bufs[] = {
        WS_BUF(w->noise, n),  WS_BUF(w->z, n),        WS_BUF(w->logits_rep, n),
        WS_BUF(w->logw_max, R), WS_BUF(w->logw_sum, R),
    };
    if (!(w->block = ws_alloc(bufs, WS_COUNT(bufs), NULL, 0, err, "evaluation buffers"))) {
        eval_ws_free(w);
        return -1;
    }
    return 0;
}

void eval_ws_free(eval_ws *w)
{
    vae_acts_free(&w->a);
    free(w->block);
    memset(w, 0, sizeof *w);
}

/* tau > 0: the relaxed sample at temperature tau; else a hard sample. */
static void elbo_pass(const vae_model *m, eval_ws *w, const float *x, int n, float tau,
                      rng_t *r, elbo_result *out)
{
    const vae_config *c = &m->cfg;
    stoch_layer code = vae_code(c);
    int D = c->D;
    double recon = 0.0, kl = 0.0;
    for (int start = 0; start < n; start += w->rows) {
        int B = n - start < w->rows ? n - start : w->rows;
        const float *xb = x + (size_t)start * D;
        const float *logits = vae_logits(m, &w->a);
        vae_encode(m, &w->a, xb, B);
        vae_kl(m, &w->a, B);
        if (tau <= 0.0f)
            est_sample_hard(c, logits, B, w->noise, w->z, r);
        else
            stoch_relaxed_sample(&code, w->z, w->noise, logits, B, tau, r);
        vae_decode(m, &w->a, w->z, B);
        vae_recon_loss(m, &w->a, xb, B);
        for (int b = 0; b < B; b++) {
            recon += w->a.recon[b];
            kl += w->a.kl[b];
        }
    }
    out->recon = recon / n;
    out->kl = kl / n;
    out->neg_elbo = out->recon + out->kl;
}

void eval_elbo(const vae_model *m, eval_ws *w, const float *x, int n, rng_t *r,
               elbo_result *out)
{
    elbo_pass(m, w, x, n, 0.0f, r, out);
}

void eval_elbo_relaxed(const vae_model *m, eval_ws *w, const float *x, int n, float tau,
                       rng_t *r, elbo_result *out)
{
    elbo_pass(m, w, x, n, tau, r, out);
}

/* log q(z|x) - log p(z) of row z under the logits l (one example).  The
 * uniform prior is p(z) = K^-N (2^-N); a learned one is scored as q is,
 * log p(z) = sum over the chosen classes of log softmax(eta) (a->prior_logp
 * from vae_encode), or per unit log sigmoid(+-eta). */
static double log_ratio(const vae_model *m, const vae_acts *a, const float *l,
                        const float *logq, const float *z)
{
    const vae_config *c = &m->cfg;
    stoch_layer code = vae_code(c);
    double log_q = stoch_log_prob(&code, l, logq, z);
    if (c->prior == VAE_PRIOR_LEARNED)
        return log_q - stoch_log_prob(&code, vae_prior_logits(m), a->prior_logp, z);
    return log_q + c->N * log(c->latent == LATENT_CATEGORICAL ? (double)c->K : 2.0);
}

double eval_iw(const vae_model *m, eval_ws *w, const float *x, int n, int S, rng_t *r)
{
    const vae_config *c = &m->cfg;
    int D = c->D, zdim = vae_zdim(c);
    /* Images per chunk when all S samples of an image fit in one chunk;
     * otherwise one image at a time, its samples spread over chunks. */
    int per = S <= w->rows ? w->rows / S : 1;
    double total = 0.0;
    for (int start = 0; start < n; start += per) {
        int G = n - start < per ? n - start : per;
        const float *xb = x + (size_t)start * D;
        /* The decoder below leaves the encoder's outputs (logits, log q)
         * alone, so they are read in place. */
        vae_encode(m, &w->a, xb, G);
        const float *logits = vae_logits(m, &w->a);
        for (int g = 0; g < G; g++) {
            w->logw_max[g] = -INFINITY;
            w->logw_sum[g] = 0.0;
        }
        for (int done = 0; done < S;) {
            int chunk = S - done;
            if (chunk * G > w->rows)
                chunk = w->rows / G;
            int rows = chunk * G;
            for (int row = 0; row < rows; row++)
                memcpy(w->logits_rep + (size_t)row * zdim, logits + (size_t)(row / chunk) * zdim,
                       sizeof(float) * zdim);
            est_sample_hard(c, w->logits_rep, rows, w->noise, w->z, r);
            vae_decode(m, &w->a, w->z, rows);
            const float *xl = w->a.dec[m->ndec - 1];
            for (int row = 0; row < rows; row++) {
                int g = row / chunk;
                double rec;
                bce_logits_forward(&rec, xl + (size_t)row * D, xb + (size_t)g * D, 1, D);
                double lw = -rec - log_ratio(m, &w->a, logits + (size_t)g * zdim,
                                             w->a.logq + (size_t)g * zdim,
                                             w->z + (size_t)row * zdim);
                lse_push(&w->logw_max[g], &w->logw_sum[g], lw);
            }
            done += chunk;
        }
        for (int g = 0; g < G; g++)
            total -= w->logw_max[g] + log(w->logw_sum[g]) - log((double)S);
    }
    return total / n;
}
