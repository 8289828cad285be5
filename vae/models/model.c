#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "util.h"

int vae_zdim(const vae_config *c)
{
    return c->latent == LATENT_CATEGORICAL ? c->N * c->K : c->N;
}

int vae_latent_parse(const char *s, latent_type *out)
{
    if (!strcmp(s, "categorical"))
        *out = LATENT_CATEGORICAL;
    else if (!strcmp(s, "bernoulli"))
        *out = LATENT_BERNOULLI;
    else
        return -1;
    return 0;
}

const char *vae_latent_name(latent_type t)
{
    return t == LATENT_CATEGORICAL ? "categorical" : "bernoulli";
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
    for (;;) {
        char *end;
        long v;
        if (n == VAE_MAX_HIDDEN)
            return errf(err, "--hidden '%s': at most %d layers", spec, VAE_MAX_HIDDEN);
        if (parse_int(s, &end, 1, 65536, &v) != 0) {
            if (*s >= '0' && *s <= '9')
                return errf(err, "--hidden '%s': width %.*s is outside 1..65536", spec,
                            (int)strspn(s, "0123456789"), s);
            return errf(err, "--hidden '%s': expected widths separated by commas, e.g. 512,256",
                        spec);
        }
        c->hidden[n++] = (int)v;
        if (*end == '\0')
            break;
        if (*end != ',')
            return errf(err, "--hidden '%s': expected widths separated by commas, e.g. 512,256",
                        spec);
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
    for (int i = 0; i < c->nhidden && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ",%d" : "%d", c->hidden[i]);
}

size_t vae_linear_place(vae_linear *l, int in, int out, size_t offset)
{
    l->in = in;
    l->out = out;
    l->w = offset;
    l->b = offset + (size_t)in * out;
    return l->b + (size_t)out;
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
        off = vae_linear_place(&m->enc[i], in, c->hidden[i], off);
        in = c->hidden[i];
    }
    off = vae_linear_place(&m->enc[c->nhidden], in, zdim, off);
    m->nenc = c->nhidden + 1;
    in = zdim;
    for (int i = c->nhidden - 1; i >= 0; i--) {
        off = vae_linear_place(&m->dec[c->nhidden - 1 - i], in, c->hidden[i], off);
        in = c->hidden[i];
    }
    off = vae_linear_place(&m->dec[c->nhidden], in, c->D, off);
    m->ndec = c->nhidden + 1;
    m->nparams = off;
    m->params = xcalloc(off, sizeof(float), err, "model parameters");
    m->grads = xcalloc(off, sizeof(float), err, "model gradients");
    if (!m->params || !m->grads) {
        vae_free(m);
        return -1;
    }
    /* Glorot-uniform weights, zero biases. */
    for (int pass = 0; pass < 2; pass++) {
        vae_linear *ls = pass ? m->dec : m->enc;
        int nl = pass ? m->ndec : m->nenc;
        for (int i = 0; i < nl; i++)
            linear_init_glorot(m->params + ls[i].w, ls[i].in, ls[i].out, r);
    }
    return 0;
}

void vae_free(vae_model *m)
{
    free(m->params);
    free(m->grads);
    m->params = m->grads = NULL;
}

void vae_zero_grads(vae_model *m)
{
    memset(m->grads, 0, m->nparams * sizeof(float));
}

int vae_acts_init(vae_acts *a, const vae_model *m, int max_batch, char *err)
{
    memset(a, 0, sizeof *a);
    a->max_batch = max_batch;
    size_t B = (size_t)max_batch;
    int zdim = vae_zdim(&m->cfg);
    int widest = m->cfg.D > zdim ? m->cfg.D : zdim;
    int ok = 1;
    for (int i = 0; i < m->nenc; i++) {
        ok &= (a->enc[i] = xcalloc(B * m->enc[i].out, sizeof(float), err, "activations")) != NULL;
        if (m->enc[i].out > widest)
            widest = m->enc[i].out;
    }
    for (int i = 0; i < m->ndec; i++)
        ok &= (a->dec[i] = xcalloc(B * m->dec[i].out, sizeof(float), err, "activations")) != NULL;
    ok &= (a->logq = xcalloc(B * zdim, sizeof(float), err, "activations")) != NULL;
    ok &= (a->z = xcalloc(B * zdim, sizeof(float), err, "activations")) != NULL;
    ok &= (a->dz = xcalloc(B * zdim, sizeof(float), err, "activations")) != NULL;
    ok &= (a->dlogits = xcalloc(B * zdim, sizeof(float), err, "activations")) != NULL;
    ok &= (a->grad_a = xcalloc(B * widest, sizeof(float), err, "activations")) != NULL;
    ok &= (a->grad_b = xcalloc(B * widest, sizeof(float), err, "activations")) != NULL;
    ok &= (a->recon = xcalloc(B, sizeof(double), err, "activations")) != NULL;
    ok &= (a->kl = xcalloc(B, sizeof(double), err, "activations")) != NULL;
    if (!ok) {
        vae_acts_free(a);
        return -1;
    }
    return 0;
}

void vae_acts_free(vae_acts *a)
{
    for (int i = 0; i <= VAE_MAX_HIDDEN; i++) {
        free(a->enc[i]);
        free(a->dec[i]);
    }
    free(a->logq);
    free(a->z);
    free(a->dz);
    free(a->dlogits);
    free(a->grad_a);
    free(a->grad_b);
    free(a->recon);
    free(a->kl);
    memset(a, 0, sizeof *a);
}

void vae_encode(const vae_model *m, vae_acts *a, const float *x, int B)
{
    const float *in = x;
    for (int i = 0; i < m->nenc; i++) {
        const vae_linear *l = &m->enc[i];
        linear_forward(a->enc[i], in, m->params + l->w, m->params + l->b, B, l->in, l->out,
                       i < m->nenc - 1);
        in = a->enc[i];
    }
    if (m->logit_scale != 1.0f) {
        float *logits = a->enc[m->nenc - 1];
        for (size_t i = 0; i < (size_t)B * vae_zdim(&m->cfg); i++)
            logits[i] *= m->logit_scale;
    }
    if (m->cfg.latent == LATENT_CATEGORICAL)
        log_softmax_forward(a->logq, in, B * m->cfg.N, m->cfg.K);
}

void vae_decode(const vae_model *m, vae_acts *a, const float *z, int B)
{
    const float *in = z;
    for (int i = 0; i < m->ndec; i++) {
        const vae_linear *l = &m->dec[i];
        linear_forward(a->dec[i], in, m->params + l->w, m->params + l->b, B, l->in, l->out,
                       i < m->ndec - 1);
        in = a->dec[i];
    }
}

void vae_recon_loss(const vae_model *m, vae_acts *a, const float *x, int B)
{
    bce_logits_forward(a->recon, a->dec[m->ndec - 1], x, B, m->cfg.D);
}

/* Backward through a stack of layers whose outputs are outs[0..n-1], from
 * the gradient at the top (dtop, clobbered), to din (may be NULL); the
 * parameter gradients add into grads (laid out like m->params). */
static void stack_backward(const vae_model *m, float *grads, const vae_linear *ls,
                           float *const *outs, int n, const float *input, float *dtop,
                           float *din, vae_acts *a, int B)
{
    float *dout = dtop;
    for (int i = n - 1; i >= 0; i--) {
        const vae_linear *l = &ls[i];
        const float *in = i ? outs[i - 1] : input;
        float *dnext = i ? (dout == a->grad_a ? a->grad_b : a->grad_a) : din;
        linear_backward(dnext, grads + l->w, grads + l->b, dout, outs[i], in, m->params + l->w, B,
                        l->in, l->out, i < n - 1);
        dout = dnext;
    }
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
    stack_backward(m, grads, m->dec, a->dec, m->ndec, z, dtop, dz, a, B);
}

void vae_kl(const vae_model *m, vae_acts *a, int B)
{
    if (m->cfg.latent == LATENT_CATEGORICAL)
        kl_categorical_forward(a->kl, a->logq, B, m->cfg.N, m->cfg.K);
    else
        kl_bernoulli_forward(a->kl, a->enc[m->nenc - 1], B, m->cfg.N);
}

void vae_kl_backward(const vae_model *m, vae_acts *a, int B, float scale)
{
    if (m->cfg.latent == LATENT_CATEGORICAL)
        kl_categorical_backward(a->dlogits, a->logq, B, m->cfg.N, m->cfg.K, scale);
    else
        kl_bernoulli_backward(a->dlogits, a->enc[m->nenc - 1], B, m->cfg.N, scale);
}

void vae_encode_backward(vae_model *m, vae_acts *a, const float *x, int B)
{
    if (m->logit_scale != 1.0f)
        for (size_t i = 0; i < (size_t)B * vae_zdim(&m->cfg); i++)
            a->dlogits[i] *= m->logit_scale;
    stack_backward(m, m->grads, m->enc, a->enc, m->nenc, x, a->dlogits, NULL, a, B);
}
