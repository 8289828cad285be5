/* semisup_model.c: the M2 model of semisup.h: parameters, forward and
 * backward of the exact and Gumbel-Softmax objectives, evaluation. */
#include "semisup.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "gumbel.h"
#include "layers.h"
#include "util.h"

int ss_activation_parse(const char *s, ss_activation *out)
{
    if (!strcmp(s, "softplus"))
        *out = SS_ACT_SOFTPLUS;
    else if (!strcmp(s, "relu"))
        *out = SS_ACT_RELU;
    else
        return -1;
    return 0;
}

int ss_estimator_parse(const char *s, ss_estimator *out)
{
    if (!strcmp(s, "exact"))
        *out = SS_EXACT;
    else if (!strcmp(s, "gumbel"))
        *out = SS_GUMBEL;
    else if (!strcmp(s, "st-gumbel"))
        *out = SS_ST_GUMBEL;
    else
        return -1;
    return 0;
}

const char *ss_estimator_name(ss_estimator e)
{
    return e == SS_EXACT ? "exact" : e == SS_GUMBEL ? "gumbel" : "st-gumbel";
}

long ss_rows(const ss_config *c, int B_l, int B_u, ss_estimator est)
{
    return (long)B_l + (long)B_u * (est == SS_EXACT ? c->K : 1);
}

static size_t add_layer(ss_linear *l, int in, int out, size_t offset)
{
    l->in = in;
    l->out = out;
    l->w = offset;
    l->b = offset + (size_t)in * out;
    return l->b + (size_t)out;
}

int ss_init(ss_model *m, const ss_config *c, double init_std, rng_t *r, char *err)
{
    memset(m, 0, sizeof *m);
    if (c->nhidden < 1 || c->nhidden > SS_MAX_HIDDEN || c->D < 1 || c->K < 2 || c->Z < 1)
        return errf(err, "semisup model: bad shape (D %d, K %d, Z %d, %d hidden layers)", c->D,
                    c->K, c->Z, c->nhidden);
    m->cfg = *c;
    int nh = c->nhidden;
    m->nlayers = nh + 1;
    size_t off = 0;
    int in = c->D;
    for (int i = 0; i < nh; i++) {
        off = add_layer(&m->cls[i], in, c->hidden[i], off);
        in = c->hidden[i];
    }
    off = add_layer(&m->cls[nh], in, c->K, off);
    in = c->D + c->K;
    for (int i = 0; i < nh; i++) {
        off = add_layer(&m->enc[i], in, c->hidden[i], off);
        in = c->hidden[i];
    }
    off = add_layer(&m->enc[nh], in, 2 * c->Z, off);
    in = c->Z + c->K;
    for (int i = 0; i < nh; i++) {
        off = add_layer(&m->dec[i], in, c->hidden[nh - 1 - i], off);
        in = c->hidden[nh - 1 - i];
    }
    off = add_layer(&m->dec[nh], in, c->D, off);
    m->nparams = off;
    m->params = xcalloc(off, sizeof(float), err, "semisup parameters");
    m->grads = xcalloc(off, sizeof(float), err, "semisup gradients");
    if (!m->params || !m->grads) {
        ss_free(m);
        return -1;
    }
    /* Weights only; the biases stay at zero. */
    const ss_linear *nets[3] = {m->cls, m->enc, m->dec};
    for (int n = 0; n < 3; n++)
        for (int i = 0; i < m->nlayers; i++) {
            const ss_linear *l = &nets[n][i];
            for (size_t j = 0; j < (size_t)l->in * l->out; j++)
                m->params[l->w + j] = (float)(init_std * rng_normal(r));
        }
    return 0;
}

void ss_free(ss_model *m)
{
    free(m->params);
    free(m->grads);
    m->params = m->grads = NULL;
}

static int widest_layer(const ss_model *m)
{
    const ss_config *c = &m->cfg;
    int w = c->D;
    if (c->Z + c->K > w)
        w = c->Z + c->K;
    if (2 * c->Z > w)
        w = 2 * c->Z;
    if (c->K > w)
        w = c->K;
    for (int i = 0; i < c->nhidden; i++)
        if (c->hidden[i] > w)
            w = c->hidden[i];
    return w;
}

int ss_ws_init(ss_ws *w, const ss_model *m, int max_examples, long max_rows, char *err)
{
    memset(w, 0, sizeof *w);
    const ss_config *c = &m->cfg;
    size_t E = (size_t)max_examples, R = (size_t)max_rows, K = (size_t)c->K;
    size_t scratch_rows = R > E ? R : E;
    w->max_examples = max_examples;
    w->max_rows = max_rows;
    int ok = max_examples > 0 && max_rows > 0;
    for (int i = 0; ok && i < m->nlayers; i++) {
        ok = (w->cls_act[i] = xcalloc(E * m->cls[i].out, sizeof(float), err, "semisup activations")) &&
             (w->enc_act[i] = xcalloc(R * m->enc[i].out, sizeof(float), err, "semisup activations")) &&
             (w->dec_act[i] = xcalloc(R * m->dec[i].out, sizeof(float), err, "semisup activations"));
    }
    ok = ok && (w->logq = xcalloc(E * K, sizeof(float), err, "semisup workspace")) &&
         (w->yrel = xcalloc(E * K, sizeof(float), err, "semisup workspace")) &&
         (w->xy = xcalloc(R * (c->D + K), sizeof(float), err, "semisup workspace")) &&
         (w->zy = xcalloc(R * (c->Z + K), sizeof(float), err, "semisup workspace")) &&
         (w->eps = xcalloc(R * c->Z, sizeof(float), err, "semisup workspace")) &&
         (w->gnoise = xcalloc(E * K, sizeof(float), err, "semisup workspace")) &&
         (w->rec = xcalloc(R, sizeof(double), err, "semisup workspace")) &&
         (w->klz = xcalloc(R, sizeof(double), err, "semisup workspace")) &&
         (w->ex_loss = xcalloc(E, sizeof(double), err, "semisup workspace")) &&
         (w->klq = xcalloc(E, sizeof(double), err, "semisup workspace")) &&
         (w->coef = xcalloc(R, sizeof(float), err, "semisup workspace")) &&
         (w->grad_a = xcalloc(scratch_rows * widest_layer(m), sizeof(float), err, "semisup workspace")) &&
         (w->grad_b = xcalloc(scratch_rows * widest_layer(m), sizeof(float), err, "semisup workspace")) &&
         (w->dzy = xcalloc(R * (c->Z + K), sizeof(float), err, "semisup workspace")) &&
         (w->dy = xcalloc(E * K, sizeof(float), err, "semisup workspace")) &&
         (w->dlogits = xcalloc(E * K, sizeof(float), err, "semisup workspace"));
    if (!ok) {
        if (max_examples <= 0 || max_rows <= 0)
            errf(err, "semisup workspace: %d examples, %ld rows: both must be positive",
                 max_examples, max_rows);
        ss_ws_free(w);
        return -1;
    }
    return 0;
}

void ss_ws_free(ss_ws *w)
{
    for (int i = 0; i <= SS_MAX_HIDDEN; i++) {
        free(w->cls_act[i]);
        free(w->enc_act[i]);
        free(w->dec_act[i]);
    }
    float *fl[] = {w->logq, w->yrel, w->xy, w->zy, w->eps, w->gnoise,
                   w->coef, w->grad_a, w->grad_b, w->dzy, w->dy, w->dlogits};
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++)
        free(fl[i]);
    free(w->rec);
    free(w->klz);
    free(w->ex_loss);
    free(w->klq);
    memset(w, 0, sizeof *w);
}

/* ---- the MLPs ---- */

static void softplus_inplace(float *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h[i] = softplusf_stable(h[i]);
}

/* d *= softplus'(a) = sigmoid(a) = 1 - e^{-h}, from the output h =
 * softplus(a) >= 0, so the pre-activations need not be kept. */
static void softplus_backward_inplace(float *d, const float *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] *= 1.0f - exp_nonpos(-h[i]);
}

static void mlp_forward(const ss_model *m, const ss_linear *L, float *const *act, const float *in,
                        int B)
{
    int relu = m->cfg.act == SS_ACT_RELU;
    for (int i = 0; i < m->nlayers; i++) {
        int hidden = i < m->nlayers - 1;
        linear_forward(act[i], i ? act[i - 1] : in, m->params + L[i].w, m->params + L[i].b, B,
                       L[i].in, L[i].out, hidden && relu);
        if (hidden && !relu)
            softplus_inplace(act[i], (size_t)B * L[i].out);
    }
}

/* Backward of an MLP from dout, the gradient at its output, which must be
 * w->dlogits, scratch_a or scratch_b; the scratch buffers are overwritten.
 * din (may be NULL) receives the gradient at the input.  Returns the
 * gradient at the first layer's pre-activation (a scratch buffer or dout),
 * valid until the scratch is next used. */
static float *mlp_backward(ss_model *m, const ss_linear *L, float *const *act, const float *in,
                           float *dout, float *din, float *scratch_a, float *scratch_b, int B)
{
    int relu = m->cfg.act == SS_ACT_RELU;
    for (int i = m->nlayers - 1;; i--) {
        int hidden = i < m->nlayers - 1;
        if (hidden && !relu)
            softplus_backward_inplace(dout, act[i], (size_t)B * L[i].out);
        float *dnext = i ? (dout == scratch_a ? scratch_b : scratch_a) : din;
        linear_backward(dnext, m->grads + L[i].w, m->grads + L[i].b, dout, act[i],
                        i ? act[i - 1] : in, m->params + L[i].w, B, L[i].in, L[i].out,
                        hidden && relu);
        if (i == 0)
            return dout;
        dout = dnext;
    }
}

/* ---- the objective ---- */

static void set_row(float *row, const float *x, int D, const float *y, int onehot, int K)
{
    memcpy(row, x, sizeof(float) * D);
    if (y)
        memcpy(row + D, y, sizeof(float) * K);
    else {
        memset(row + D, 0, sizeof(float) * K);
        row[D + onehot] = 1.0f;
    }
}

double ss_forward(const ss_model *m, ss_ws *w, const float *x, const uint8_t *y, int B_l,
                  int B_u, ss_estimator est, float tau, const ss_weights *wt, ss_parts *parts)
{
    const ss_config *c = &m->cfg;
    const int D = c->D, K = c->K, Z = c->Z, E = B_l + B_u, ldxy = D + K, ldzy = Z + K;
    const long R = ss_rows(c, B_l, B_u, est);
    const double logK = log((double)K);
    float *logits = w->cls_act[m->nlayers - 1];

    mlp_forward(m, m->cls, w->cls_act, x, E);
    log_softmax_forward(w->logq, logits, E, K);
    kl_categorical_forward(w->klq, w->logq, E, 1, K);

    for (int b = 0; b < B_l; b++)
        set_row(w->xy + (size_t)b * ldxy, x + (size_t)b * D, D, NULL, y[b], K);
    if (est == SS_EXACT) {
        for (int b = 0; b < B_u; b++)
            for (int j = 0; j < K; j++)
                set_row(w->xy + (size_t)(B_l + (long)b * K + j) * ldxy, x + (size_t)(B_l + b) * D,
                        D, NULL, j, K);
    } else if (B_u > 0) {
        /* st-gumbel feeds the one-hot argmax of y~ (a sample of q(y|x), by
         * the Gumbel-Max trick) forward; y~ stays for the backward pass. */
        gumbel_softmax_forward(w->yrel, logits + (size_t)B_l * K, w->gnoise, B_u, K, tau);
        for (int b = 0; b < B_u; b++) {
            const float *yb = w->yrel + (size_t)b * K;
            int j = 0;
            if (est == SS_ST_GUMBEL)
                argmax_rows(&j, yb, 1, K);
            set_row(w->xy + (size_t)(B_l + b) * ldxy, x + (size_t)(B_l + b) * D, D,
                    est == SS_GUMBEL ? yb : NULL, j, K);
        }
    }

    /* z = mu + exp(lv / 2) eps, and the analytic KL to N(0, I). */
    mlp_forward(m, m->enc, w->enc_act, w->xy, (int)R);
    const float *mulv = w->enc_act[m->nlayers - 1];
    for (long r = 0; r < R; r++) {
        const float *mu = mulv + (size_t)r * 2 * Z, *lv = mu + Z, *e = w->eps + (size_t)r * Z;
        float *zr = w->zy + (size_t)r * ldzy;
        double kl = 0.0;
        for (int i = 0; i < Z; i++) {
            float ev = expf(lv[i]);
            zr[i] = mu[i] + sqrtf(ev) * e[i];
            kl += 0.5 * ((double)mu[i] * mu[i] + ev - 1.0 - lv[i]);
        }
        memcpy(zr + Z, w->xy + (size_t)r * ldxy + D, sizeof(float) * K);
        w->klz[r] = kl;
    }
    mlp_forward(m, m->dec, w->dec_act, w->zy, (int)R);
    const float *xl = w->dec_act[m->nlayers - 1];
    for (long r = 0; r < R; r++)
        bce_logits_forward(&w->rec[r], xl + (size_t)r * D, w->xy + (size_t)r * ldxy, 1, D);
    w->enc_rows = w->dec_rows = R;

    double lab = 0.0, nll = 0.0, unl = 0.0;
    for (int b = 0; b < B_l; b++) {
        w->ex_loss[b] = w->rec[b] + w->klz[b] + logK;
        lab += w->ex_loss[b];
        nll -= w->logq[(size_t)b * K + y[b]];
    }
    for (int b = 0; b < B_u; b++) {
        double u;
        if (est == SS_EXACT) {
            const float *lq = w->logq + (size_t)(B_l + b) * K;
            long r0 = B_l + (long)b * K;
            u = 0.0;
            for (int j = 0; j < K; j++)
                u += exp((double)lq[j]) * (w->rec[r0 + j] + w->klz[r0 + j]);
        } else {
            u = w->rec[B_l + b] + w->klz[B_l + b];
        }
        u += w->klq[B_l + b];
        w->ex_loss[B_l + b] = u;
        unl += u;
    }
    ss_parts p = {0.0, B_l ? lab / B_l : 0.0, B_l ? nll / B_l : 0.0, B_u ? unl / B_u : 0.0};
    p.loss = wt->labelled * p.lab_neg_elbo + wt->alpha * p.class_nll + wt->unlabelled * p.unl_loss;
    if (parts)
        *parts = p;
    return p.loss;
}

void ss_backward(ss_model *m, ss_ws *w, const float *x, const uint8_t *y, int B_l, int B_u,
                 ss_estimator est, float tau, const ss_weights *wt)
{
    const ss_config *c = &m->cfg;
    const int D = c->D, K = c->K, Z = c->Z, E = B_l + B_u, ldxy = D + K, ldzy = Z + K;
    const long R = ss_rows(c, B_l, B_u, est);
    const float s_l = B_l ? (float)(wt->labelled / B_l) : 0.0f;
    const float s_u = B_u ? (float)(wt->unlabelled / B_u) : 0.0f;
    const float s_a = B_l ? (float)(wt->alpha / B_l) : 0.0f;

    /* Each row's (recon + KL_z) enters the loss with weight coef[r]. */
    for (int b = 0; b < B_l; b++)
        w->coef[b] = s_l;
    if (est == SS_EXACT)
        for (int b = 0; b < B_u; b++)
            for (int j = 0; j < K; j++)
                w->coef[B_l + (long)b * K + j] = s_u * expf(w->logq[(size_t)(B_l + b) * K + j]);
    else
        for (int b = 0; b < B_u; b++)
            w->coef[B_l + b] = s_u;

    /* Decoder, from the pixel logits to [z, y]. */
    const float *xl = w->dec_act[m->nlayers - 1];
    for (long r = 0; r < R; r++)
        bce_logits_backward(w->grad_a + (size_t)r * D, xl + (size_t)r * D,
                            w->xy + (size_t)r * ldxy, 1, D, w->coef[r]);
    mlp_backward(m, m->dec, w->dec_act, w->zy, w->grad_a, w->dzy, w->grad_a, w->grad_b, (int)R);

    /* Through z = mu + exp(lv/2) eps and KL_z to the encoder's outputs. */
    const float *mulv = w->enc_act[m->nlayers - 1];
    for (long r = 0; r < R; r++) {
        const float *mu = mulv + (size_t)r * 2 * Z, *lv = mu + Z, *e = w->eps + (size_t)r * Z;
        const float *dz = w->dzy + (size_t)r * ldzy;
        float *g = w->grad_a + (size_t)r * 2 * Z, cf = w->coef[r];
        for (int i = 0; i < Z; i++) {
            float ev = expf(lv[i]);
            g[i] = dz[i] + cf * mu[i];
            g[Z + i] = 0.5f * (dz[i] * e[i] * sqrtf(ev) + cf * (ev - 1.0f));
        }
    }
    /* The encoder's input gradient is wanted only at the relaxed y of the
     * gumbel rows: computed below from the first layer's gradient, not
     * over all D + K inputs of every row. */
    const float *d0 = mlp_backward(m, m->enc, w->enc_act, w->xy, w->grad_a, NULL, w->grad_a,
                                   w->grad_b, (int)R);

    /* Classifier logits. */
    for (int b = 0; b < B_l; b++) {
        const float *lq = w->logq + (size_t)b * K;
        float *d = w->dlogits + (size_t)b * K;
        for (int j = 0; j < K; j++)
            d[j] = s_a * (expf(lq[j]) - (j == y[b] ? 1.0f : 0.0f));
    }
    if (B_u > 0 && est == SS_EXACT) {
        /* d/dl_j sum_i q_i L_i = q_j (L_j - sum_i q_i L_i) */
        for (int b = 0; b < B_u; b++) {
            const float *lq = w->logq + (size_t)(B_l + b) * K;
            float *d = w->dlogits + (size_t)(B_l + b) * K;
            long r0 = B_l + (long)b * K;
            double mean = 0.0;
            for (int j = 0; j < K; j++)
                mean += exp((double)lq[j]) * (w->rec[r0 + j] + w->klz[r0 + j]);
            for (int j = 0; j < K; j++)
                d[j] = s_u * expf(lq[j]) * (float)(w->rec[r0 + j] + w->klz[r0 + j] - mean);
        }
    } else if (B_u > 0) {
        /* dL/dy~ = (encoder first layer's gradient) W0[:, D:] + decoder's. */
        const ss_linear *l0 = &m->enc[0];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B_u, K, l0->out, 1.0f,
                    d0 + (size_t)B_l * l0->out, l0->out, m->params + l0->w + D, ldxy, 0.0f,
                    w->dy, K);
        for (int b = 0; b < B_u; b++)
            for (int j = 0; j < K; j++)
                w->dy[(size_t)b * K + j] += w->dzy[(size_t)(B_l + b) * ldzy + Z + j];
        gumbel_softmax_backward(w->dlogits + (size_t)B_l * K, w->yrel, w->dy, B_u, K, tau);
    }
    if (B_u > 0)
        kl_categorical_backward(w->dlogits + (size_t)B_l * K, w->logq + (size_t)B_l * K, B_u, 1,
                                K, s_u);
    mlp_backward(m, m->cls, w->cls_act, x, w->dlogits, NULL, w->grad_a, w->grad_b, E);
}

void ss_draw_noise(const ss_model *m, ss_ws *w, int B_l, int B_u, ss_estimator est, rng_t *r)
{
    size_t n = (size_t)ss_rows(&m->cfg, B_l, B_u, est) * m->cfg.Z;
    for (size_t i = 0; i < n; i++)
        w->eps[i] = (float)rng_normal(r);
    if (est != SS_EXACT)
        gumbel_noise(w->gnoise, (size_t)B_u * m->cfg.K, r);
}

double ss_train_step(ss_model *m, ss_ws *w, adam_state *adam, const float *x, const uint8_t *y,
                     int B_l, int B_u, ss_estimator est, float tau, const ss_weights *wt,
                     float lr, rng_t *r, ss_parts *parts)
{
    memset(m->grads, 0, sizeof(float) * m->nparams);
    ss_draw_noise(m, w, B_l, B_u, est, r);
    double loss = ss_forward(m, w, x, y, B_l, B_u, est, tau, wt, parts);
    if (!isfinite(loss))
        return loss;
    ss_backward(m, w, x, y, B_l, B_u, est, tau, wt);
    adam_update(adam, m->params, m->grads, lr);
    return loss;
}

void ss_evaluate(const ss_model *m, ss_ws *w, const float *x, const uint8_t *labels, int n,
                 rng_t *r, ss_eval_result *out)
{
    const int D = m->cfg.D, K = m->cfg.K;
    int chunk = (int)(w->max_rows / K);
    if (chunk > w->max_examples)
        chunk = w->max_examples;
    const ss_weights wt = {0.0, 1.0, 0.0};
    double neg_elbo = 0.0, nll = 0.0;
    long correct = 0;
    for (int i0 = 0; i0 < n; i0 += chunk) {
        int B = n - i0 < chunk ? n - i0 : chunk;
        ss_draw_noise(m, w, 0, B, SS_EXACT, r);
        ss_forward(m, w, x + (size_t)i0 * D, NULL, 0, B, SS_EXACT, 1.0f, &wt, NULL);
        for (int b = 0; b < B; b++) {
            const float *lq = w->logq + (size_t)b * K;
            int best = 0;
            for (int j = 1; j < K; j++)
                if (lq[j] > lq[best])
                    best = j;
            correct += best == labels[i0 + b];
            nll -= lq[labels[i0 + b]];
            neg_elbo += w->ex_loss[b];
        }
    }
    out->neg_elbo = n ? neg_elbo / n : NAN;
    out->class_nll = n ? nll / n : NAN;
    out->accuracy = n ? (double)correct / n : NAN;
}
