#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "sparse.h"
#include "util.h"

int vae_prior_parse(const char *s, vae_prior *out)
{
    if (!strcmp(s, "uniform"))
        *out = VAE_PRIOR_UNIFORM;
    else if (!strcmp(s, "learned"))
        *out = VAE_PRIOR_LEARNED;
    else
        return -1;
    return 0;
}

const char *vae_prior_name(vae_prior p)
{
    return p == VAE_PRIOR_LEARNED ? "learned" : "uniform";
}

int vae_zdim(const vae_config *c)
{
    stoch_layer code = vae_code(c);
    return stoch_dim(&code);
}

/* Strict decimal in [lo, hi]; end receives the first unparsed character. */
static int parse_int(const char *s, char **end, long lo, long hi, long *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    long v = strtol(s, end, 10);
    if (errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int vae_parse_latent_spec(const char *spec, vae_config *c, char *err)
{
    char *end;
    long n, k = 1;
    if (parse_int(spec, &end, 1, 100000, &n) != 0)
        goto bad;
    if (c->latent == LATENT_CATEGORICAL) {
        if (*end != 'x' || parse_int(end + 1, &end, 2, 100000, &k) != 0 || *end)
            goto bad;
        if (n * k > 1000000)
            return errf(err, "--latent %s: N x K = %ld units is too large", spec, n * k);
    } else if (*end) {
        goto bad;
    }
    c->N = (int)n;
    c->K = (int)k;
    return 0;
bad:
    if (c->latent == LATENT_CATEGORICAL)
        return errf(err, "--latent '%s': expected NxK with N >= 1 and K >= 2, e.g. 20x10", spec);
    return errf(err, "--latent '%s': expected a number of Bernoulli units, e.g. 200", spec);
}

int vae_parse_hidden(const char *spec, vae_config *c, char *err)
{
    const char *s = spec;
    int n = 0;
    if (!strcmp(spec, "none")) {
        c->nhidden = 0;
        return 0;
    }
    for (;;) {
        char *end;
        long v;
        if (n == VAE_MAX_HIDDEN)
            return errf(err, "--hidden '%s': at most %d layers", spec, VAE_MAX_HIDDEN);
        if (parse_int(s, &end, 1, 65536, &v) != 0) {
            if (*s >= '0' && *s <= '9')
                return errf(err, "--hidden '%s': width %.*s is outside 1..65536", spec,
                            (int)strspn(s, "0123456789"), s);
            return errf(err, "--hidden '%s': expected widths separated by commas, e.g. 512,256, "
                             "or none", spec);
        }
        c->hidden[n++] = (int)v;
        if (*end == '\0')
            break;
        if (*end != ',')
            return errf(err, "--hidden '%s': expected widths separated by commas, e.g. 512,256, "
                             "or none", spec);
        s = end + 1;
    }
    c->nhidden = n;
    return 0;
}

void vae_format_latent(const vae_config *c, char *buf, size_t len)
{
    if (c->latent == LATENT_CATEGORICAL)
        snprintf(buf, len, "%dx%d", c->N, c->K);
    else
        snprintf(buf, len, "%d", c->N);
}

void vae_format_hidden(const vae_config *c, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    if (c->nhidden == 0) {
        snprintf(buf, len, "none");
        return;
    }
    for (int i = 0; i < c->nhidden && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ",%d" : "%d", c->hidden[i]);
}

int vae_init(vae_model *m, const vae_config *c, rng_t *r, char *err)
{
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    m->logit_scale = 1.0f;
    int zdim = vae_zdim(c);
    size_t off = 0;
    int in = c->D;
    for (int i = 0; i < c->nhidden; i++) {
        off = linear_place(&m->enc[i], in, c->hidden[i], off);
        in = c->hidden[i];
    }
    off = linear_place(&m->enc[c->nhidden], in, zdim, off);
    m->nenc = c->nhidden + 1;
    in = zdim;
    for (int i = c->nhidden - 1; i >= 0; i--) {
        off = linear_place(&m->dec[c->nhidden - 1 - i], in, c->hidden[i], off);
        in = c->hidden[i];
    }
    off = linear_place(&m->dec[c->nhidden], in, c->D, off);
    m->ndec = c->nhidden + 1;
    if (c->prior == VAE_PRIOR_LEARNED) {
        m->prior = off;
        off += (size_t)zdim;
    }
    if (c->learned_tau0 > 0)
        m->log_tau = off++;
    m->nparams = off;
    if (params_alloc(&m->params, &m->grads, off, err, "model parameters") != 0)
        return -1;
    /* Glorot-uniform weights; zero biases and prior logits (params_alloc
     * zeroes the buffer). */
    for (int pass = 0; pass < 2; pass++) {
        linear_layer *ls = pass ? m->dec : m->enc;
        int nl = pass ? m->ndec : m->nenc;
        for (int i = 0; i < nl; i++)
            linear_init_glorot(m->params + ls[i].w, ls[i].in, ls[i].out, r);
    }
    if (c->learned_tau0 > 0)
        m->params[m->log_tau] = logf(c->learned_tau0);
    return 0;
}

double vae_log_prior(const vae_model *m, const vae_acts *a, const float *z)
{
    const vae_config *c = &m->cfg;
    if (c->prior == VAE_PRIOR_UNIFORM)
        return -c->N * log(c->latent == LATENT_CATEGORICAL ? (double)c->K : 2.0);
    stoch_layer code = vae_code(c);
    return stoch_log_prob(&code, vae_prior_logits(m), a->prior_logp, z);
}

float vae_tau(const vae_model *m, float scheduled)
{
    return m->cfg.learned_tau0 > 0 ? expf(m->params[m->log_tau]) : scheduled;
}

void vae_free(vae_model *m)
{
    params_free(&m->params, &m->grads);
}

void vae_zero_grads(vae_model *m)
{
    memset(m->grads, 0, m->nparams * sizeof(float));
}

const float *vae_prior_logits(const vae_model *m)
{
    return m->cfg.prior == VAE_PRIOR_LEARNED ? m->params + m->prior : NULL;
}

int vae_acts_init(vae_acts *a, const vae_model *m, int max_batch, char *err)
{
    memset(a, 0, sizeof *a);
    a->max_batch = max_batch;
    size_t B = (size_t)max_batch;
    int zdim = vae_zdim(&m->cfg);
    int widest = m->cfg.D > zdim ? m->cfg.D : zdim;
    for (int i = 0; i < m->nenc; i++)
        widest = m->enc[i].out > widest ? m->enc[i].out : widest;
    int prior_logp = m->cfg.prior == VAE_PRIOR_LEARNED && m->cfg.latent == LATENT_CATEGORICAL;
    size_t D = (size_t)m->cfg.D, first = (size_t)m->enc[0].out, dfirst = (size_t)m->dec[0].out;
    enum { FIXED = 25 };
    ws_buf bufs[FIXED + 2 * (VAE_MAX_HIDDEN + 1)] = {
        WS_BUF(a->logq, B * zdim),     WS_BUF(a->z, B * zdim),
        WS_BUF(a->dz, B * zdim),       WS_BUF(a->dlogits, B * zdim),
        WS_BUF(a->grad_a, B * widest), WS_BUF(a->grad_b, B * widest),
        WS_BUF(a->recon, B),           WS_BUF(a->kl, B),
        WS_BUF(a->prior_logp, prior_logp ? (size_t)zdim : 0),
        WS_BUF(a->in_idx, B * D),      WS_BUF(a->in_nnz, B),
        WS_BUF(a->in_val, B * D),      WS_BUF(a->enc_wt, D * first),
        WS_BUF(a->in_start, D + 1),    WS_BUF(a->in_rows, B * D),
        WS_BUF(a->in_cval, B * D),
        WS_BUF(a->z_idx, B * zdim),    WS_BUF(a->z_nnz, B),
        WS_BUF(a->z_val, B * zdim),    WS_BUF(a->dec_wt, (size_t)zdim * dfirst),
        WS_BUF(a->z_start, zdim + 1),  WS_BUF(a->z_rows, B * zdim),
        WS_BUF(a->z_cval, B * zdim),
        WS_BUF(a->dec_dfirst, m->ndec > 1 ? B * dfirst : 0),
        WS_BUF(a->enc_dfirst, m->nenc > 1 ? B * first : 0),
    };
    /* Layers past nenc (ndec) get no buffer: their pointers stay NULL. */
    for (int i = 0; i <= VAE_MAX_HIDDEN; i++) {
        bufs[FIXED + 2 * i] = (ws_buf)WS_BUF(a->enc[i], i < m->nenc ? B * m->enc[i].out : 0);
        bufs[FIXED + 2 * i + 1] = (ws_buf)WS_BUF(a->dec[i], i < m->ndec ? B * m->dec[i].out : 0);
    }
    a->block = ws_alloc(bufs, WS_COUNT(bufs), NULL, 0, err, "activations");
    return a->block ? 0 : -1;
}

void vae_acts_free(vae_acts *a)
{
    free(a->block);
    memset(a, 0, sizeof *a);
}

void vae_encode(const vae_model *m, vae_acts *a, const float *x, int B)
{
    const linear_layer *L0 = &m->enc[0];
    size_t nnz = sparse_rows(a->in_idx, a->in_val, a->in_nnz, x, B, L0->in);
    a->in_sparse = sparse_pays(nnz, (size_t)B * L0->in) &&
                   sparse_all_finite(m->params + L0->w, (size_t)L0->in * L0->out);
    if (a->in_sparse) {
        sparse_transpose(a->enc_wt, m->params + L0->w, L0->in, L0->out);
        sparse_linear_forward(a->enc[0], a->enc_wt, m->params + L0->b, a->in_idx, a->in_val,
                              a->in_nnz, B, L0->in, L0->out, m->nenc > 1);
        mlp_forward(m->enc + 1, m->nenc - 1, MLP_RELU, m->params, a->enc + 1, a->enc[0], B);
    } else {
        mlp_forward(m->enc, m->nenc, MLP_RELU, m->params, a->enc, x, B);
    }
    float *logits = a->enc[m->nenc - 1];
    if (m->logit_scale != 1.0f)
        for (size_t i = 0; i < (size_t)B * vae_zdim(&m->cfg); i++)
            logits[i] *= m->logit_scale;
    if (m->cfg.latent == LATENT_CATEGORICAL) {
        log_softmax_forward(a->logq, logits, B * m->cfg.N, m->cfg.K);
        /* log p = log softmax(eta) per variable: the prior's own forward,
         * undone by vae_kl_backward's dprior half. */
        if (m->cfg.prior == VAE_PRIOR_LEARNED)
            log_softmax_forward(a->prior_logp, vae_prior_logits(m), m->cfg.N, m->cfg.K);
    }
}

/* Whether the decoder's first layer takes code z over its nonzero entries
 * (a hard code: one-hot variables, or 0/1 units), as the encoder takes the
 * pixels that are on: by the measured density of z, and only with finite
 * weights.  When it does, leaves z's nonzero entries in a->z_idx, z_val,
 * z_nnz. */
static int code_sparse(const vae_model *m, vae_acts *a, const float *z, int B)
{
    const linear_layer *L0 = &m->dec[0];
    size_t total = (size_t)B * L0->in;
    /* A relaxed code (every entry nonzero) stops at the count. */
    if (!sparse_code_pays(sparse_count(z, total), total) ||
        !sparse_all_finite(m->params + L0->w, (size_t)L0->in * L0->out))
        return 0;
    sparse_rows(a->z_idx, a->z_val, a->z_nnz, z, B, L0->in);
    return 1;
}

void vae_decode(const vae_model *m, vae_acts *a, const float *z, int B)
{
    const linear_layer *L0 = &m->dec[0];
    if (!code_sparse(m, a, z, B)) {
        mlp_forward(m->dec, m->ndec, MLP_RELU, m->params, a->dec, z, B);
        return;
    }
    /* mlp_forward's first layer over the chosen classes (units that are
     * on), then its other layers as it does them. */
    sparse_transpose(a->dec_wt, m->params + L0->w, L0->in, L0->out);
    sparse_linear_forward(a->dec[0], a->dec_wt, m->params + L0->b, a->z_idx, a->z_val, a->z_nnz,
                          B, L0->in, L0->out, m->ndec > 1);
    if (m->ndec > 1)
        mlp_forward(m->dec + 1, m->ndec - 1, MLP_RELU, m->params, a->dec + 1, a->dec[0], B);
}

void vae_recon_loss(const vae_model *m, vae_acts *a, const float *x, int B)
{
    bce_logits_forward(a->recon, a->dec[m->ndec - 1], x, B, m->cfg.D);
}

void vae_decode_backward(vae_model *m, vae_acts *a, const float *x, const float *z, int B,
                         float scale)
{
    vae_decode_backward_rows(m, a, x, z, B, NULL, scale, m->grads, a->dz);
}

void vae_decode_backward_rows(const vae_model *m, vae_acts *a, const float *x, const float *z,
                              int B, const float *row_scale, float scale, float *grads, float *dz)
{
    int D = m->cfg.D;
    float *dtop = a->grad_a;
    const float *logits = a->dec[m->ndec - 1];
    if (!row_scale)
        bce_logits_backward(dtop, logits, x, B, D, scale);
    else
        for (int r = 0; r < B; r++)
            bce_logits_backward(dtop + (size_t)r * D, logits + (size_t)r * D, x + (size_t)r * D,
                                1, D, scale * row_scale[r]);
    const linear_layer *L0 = &m->dec[0];
    if (!code_sparse(m, a, z, B)) {
        mlp_backward(m->dec, m->ndec, MLP_RELU, m->params, grads, a->dec, z, dtop, dz,
                     a->grad_a, a->grad_b, B);
        return;
    }
    /* Undoes vae_decode's sparse first layer: the layers above it as
     * mlp_backward does them, then its bias, its weight over z's nonzero
     * entries, and the gradient at z (dense: every class gets one). */
    float *d0 = dtop;
    if (m->ndec > 1) {
        d0 = a->dec_dfirst;
        mlp_backward(m->dec + 1, m->ndec - 1, MLP_RELU, m->params, grads, a->dec + 1, a->dec[0],
                     dtop, d0, a->grad_a, a->grad_b, B);
    }
    linear_backward_bias(grads + L0->b, d0, a->dec[0], B, L0->out, m->ndec > 1);
    sparse_columns(a->z_start, a->z_rows, a->z_cval, a->z_idx, a->z_val, a->z_nnz, B, L0->in);
    sparse_linear_backward_weights(grads + L0->w, d0, a->z_start, a->z_rows, a->z_cval, L0->in,
                                   L0->out);
    if (dz)
        linear_backward_input(dz, d0, m->params + L0->w, B, L0->in, L0->out);
}

void vae_kl(const vae_model *m, vae_acts *a, int B)
{
    const vae_config *c = &m->cfg;
    const float *logits = a->enc[m->nenc - 1];
    if (c->prior == VAE_PRIOR_LEARNED) {
        /* sum_k q_k (log q_k - log p_k) per variable, or
         * q (log q - log p) + (1-q) (log(1-q) - log(1-p)) per unit */
        if (c->latent == LATENT_CATEGORICAL)
            kl_categorical_prior_forward(a->kl, a->logq, a->prior_logp, B, c->N, c->K);
        else
            kl_bernoulli_prior_forward(a->kl, logits, vae_prior_logits(m), B, c->N);
        return;
    }
    if (c->latent == LATENT_CATEGORICAL)
        kl_categorical_forward(a->kl, a->logq, B, c->N, c->K);
    else
        kl_bernoulli_forward(a->kl, logits, B, c->N);
}

void vae_kl_backward(vae_model *m, vae_acts *a, int B, float scale, float prior_scale)
{
    const vae_config *c = &m->cfg;
    const float *logits = a->enc[m->nenc - 1];
    if (c->prior == VAE_PRIOR_LEARNED) {
        /* Undoes vae_kl's learned-prior line: dKL/dl = q (log q - log p - KL)
         * per variable, q (1-q) (l - eta) per unit, into a->dlogits; dKL/deta
         * = p - q, summed over the rows, into the prior's gradient.  The
         * categorical log p's own backward (of vae_encode's log softmax of
         * eta) is folded into that p - q. */
        float *dprior = m->grads + m->prior;
        if (c->latent == LATENT_CATEGORICAL)
            kl_categorical_prior_backward(a->dlogits, dprior, a->logq, a->prior_logp, B, c->N,
                                          c->K, scale, prior_scale);
        else
            kl_bernoulli_prior_backward(a->dlogits, dprior, logits, vae_prior_logits(m), B, c->N,
                                        scale, prior_scale);
        return;
    }
    if (c->latent == LATENT_CATEGORICAL)
        kl_categorical_backward(a->dlogits, a->logq, B, c->N, c->K, scale);
    else
        kl_bernoulli_backward(a->dlogits, logits, B, c->N, scale);
}

void vae_encode_backward(vae_model *m, vae_acts *a, const float *x, int B)
{
    if (m->logit_scale != 1.0f)
        for (size_t i = 0; i < (size_t)B * vae_zdim(&m->cfg); i++)
            a->dlogits[i] *= m->logit_scale;
    if (!a->in_sparse) {
        mlp_backward(m->enc, m->nenc, MLP_RELU, m->params, m->grads, a->enc, x, a->dlogits, NULL,
                     a->grad_a, a->grad_b, B);
        return;
    }
    /* The layers above the first as mlp_backward does them, then the
     * first's bias and, over the nonzero pixels, its weight. */
    const linear_layer *L0 = &m->enc[0];
    float *d0 = a->dlogits;
    if (m->nenc > 1) {
        d0 = a->enc_dfirst;
        mlp_backward(m->enc + 1, m->nenc - 1, MLP_RELU, m->params, m->grads, a->enc + 1,
                     a->enc[0], a->dlogits, d0, a->grad_a, a->grad_b, B);
    }
    linear_backward_bias(m->grads + L0->b, d0, a->enc[0], B, L0->out, m->nenc > 1);
    sparse_columns(a->in_start, a->in_rows, a->in_cval, a->in_idx, a->in_val, a->in_nnz, B,
                   L0->in);
    sparse_linear_backward_weights(m->grads + L0->w, d0, a->in_start, a->in_rows,
                                   a->in_cval, L0->in, L0->out);
}
